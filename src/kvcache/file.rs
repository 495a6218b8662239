//! One block file: a fixed header, the keys and values, a checksum.
//!
//! ```text
//! offset  size  field
//!      0     8  magic `C3KVBLK\0`
//!      8     4  format version (u32, 1)
//!     12     4  dtype of the values: 1 f32, 2 f16, 3 bf16
//!     16    32  the block's chain key
//!     48     8  first position (u64)
//!     56     4  positions (u32)
//!     60     4  layers (u32)
//!     64     4  KV heads (u32)
//!     68     4  head width (u32)
//!     72     8  payload bytes (u64)
//!     80    48  zero
//!    128     …  payload: per layer, K then V, each [KV heads, positions,
//!               head width], little-endian
//!  end-16   16  xxh3-128 of every byte before it (little-endian u128)
//! ```
//!
//! All integers little-endian. A file is written whole under a temporary
//! name and renamed into place, so a reader sees a complete file or none; a
//! file that is short, long, of another version or geometry, or whose
//! checksum differs (a torn write after a power cut, a flipped bit) is
//! refused by [`read`].

use std::io::Write;
use std::path::Path;

use candle_core::DType;

use super::key::BlockKey;

const MAGIC: &[u8; 8] = b"C3KVBLK\0";
const VERSION: u32 = 1;
pub const HEADER: usize = 128;
const TRAILER: usize = 16;

/// What a block file says about itself; a reader compares it with what it
/// expects before using the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub key: BlockKey,
    pub start: u64,
    pub positions: u32,
    pub layers: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    pub dtype: DType,
}

impl Header {
    pub fn payload_bytes(&self) -> usize {
        self.layers as usize
            * 2
            * self.kv_heads as usize
            * self.positions as usize
            * self.head_dim as usize
            * self.dtype.size_in_bytes()
    }

    /// Size of the whole file.
    pub fn file_bytes(&self) -> u64 {
        (HEADER + self.payload_bytes() + TRAILER) as u64
    }

    fn encode(&self) -> [u8; HEADER] {
        let mut h = [0u8; HEADER];
        h[0..8].copy_from_slice(MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&dtype_code(self.dtype).to_le_bytes());
        h[16..48].copy_from_slice(&self.key.0);
        h[48..56].copy_from_slice(&self.start.to_le_bytes());
        h[56..60].copy_from_slice(&self.positions.to_le_bytes());
        h[60..64].copy_from_slice(&self.layers.to_le_bytes());
        h[64..68].copy_from_slice(&self.kv_heads.to_le_bytes());
        h[68..72].copy_from_slice(&self.head_dim.to_le_bytes());
        h[72..80].copy_from_slice(&(self.payload_bytes() as u64).to_le_bytes());
        h
    }
}

fn dtype_code(d: DType) -> u32 {
    match d {
        DType::F32 => 1,
        DType::F16 => 2,
        DType::BF16 => 3,
        // The cache stores only float keys and values (see `super::KvDtype`).
        _ => 0,
    }
}

fn checksum(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for p in parts {
        h.update(p);
    }
    h.digest128().to_le_bytes()
}

/// Writes the block (`payload` laid out as the header says) to `path`
/// through a temporary file `tmp` in the same directory, renamed into place.
/// Returns the bytes written.
pub fn write(path: &Path, tmp: &Path, header: &Header, payload: &[u8]) -> std::io::Result<u64> {
    if payload.len() != header.payload_bytes() {
        return Err(std::io::Error::other(format!(
            "block payload of {} bytes for a header that says {}",
            payload.len(),
            header.payload_bytes()
        )));
    }
    let head = header.encode();
    let sum = checksum(&[&head, payload]);
    let written = (|| {
        let mut f = std::fs::File::create(tmp)?;
        f.write_all(&head)?;
        f.write_all(payload)?;
        f.write_all(&sum)?;
        // No fsync: a block a power cut tears fails its checksum and is
        // recomputed, which costs less than syncing every block.
        drop(f);
        std::fs::rename(tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(tmp);
        return Err(e);
    }
    Ok(header.file_bytes())
}

/// Why a block file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bad {
    /// Not the size its header (or the expected block) needs.
    Size { found: u64, expected: u64 },
    /// Another magic, version or dtype code.
    Format,
    /// Another key or geometry than expected.
    Header,
    /// The checksum does not match the bytes.
    Checksum,
}

impl std::fmt::Display for Bad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bad::Size { found, expected } => {
                write!(f, "{found} bytes where the block needs {expected}")
            }
            Bad::Format => f.write_str("not a c3 KV block of this version"),
            Bad::Header => f.write_str("its header names another block"),
            Bad::Checksum => f.write_str("its checksum does not match its bytes"),
        }
    }
}

/// Checks `bytes` (a whole file) against `expected` and returns the payload.
pub fn check<'a>(bytes: &'a [u8], expected: &Header) -> Result<&'a [u8], Bad> {
    let need = expected.file_bytes();
    if bytes.len() as u64 != need {
        return Err(Bad::Size {
            found: bytes.len() as u64,
            expected: need,
        });
    }
    let head = &bytes[..HEADER];
    if &head[0..8] != MAGIC
        || head[8..12] != VERSION.to_le_bytes()
        || head[12..16] != dtype_code(expected.dtype).to_le_bytes()
    {
        return Err(Bad::Format);
    }
    if head != expected.encode() {
        return Err(Bad::Header);
    }
    let (body, sum) = bytes.split_at(bytes.len() - TRAILER);
    if checksum(&[body]) != sum {
        return Err(Bad::Checksum);
    }
    Ok(&body[HEADER..])
}

/// Checks a whole file on its own, against the header it carries (for a
/// scan of the directory, which knows no expected block): returns that
/// header.
pub fn check_standalone(bytes: &[u8]) -> Result<Header, Bad> {
    if bytes.len() < HEADER + TRAILER {
        return Err(Bad::Size {
            found: bytes.len() as u64,
            expected: (HEADER + TRAILER) as u64,
        });
    }
    let u32_at =
        |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[i..i + 8]);
        u64::from_le_bytes(b)
    };
    let dtype = match u32_at(12) {
        1 => DType::F32,
        2 => DType::F16,
        3 => DType::BF16,
        _ => return Err(Bad::Format),
    };
    let mut key = [0u8; 32];
    key.copy_from_slice(&bytes[16..48]);
    let h = Header {
        key: BlockKey(key),
        start: u64_at(48),
        positions: u32_at(56),
        layers: u32_at(60),
        kv_heads: u32_at(64),
        head_dim: u32_at(68),
        dtype,
    };
    check(bytes, &h).map(|_| h)
}

/// The payload of a whole file that passed [`check`].
pub fn payload_of(bytes: &[u8]) -> &[u8] {
    &bytes[HEADER..bytes.len() - TRAILER]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            key: BlockKey([7; 32]),
            start: 40,
            positions: 3,
            layers: 2,
            kv_heads: 1,
            head_dim: 4,
            dtype: DType::F32,
        }
    }

    #[test]
    fn a_written_block_reads_back_and_any_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let h = header();
        let payload: Vec<u8> = (0..h.payload_bytes()).map(|i| i as u8).collect();
        let path = dir.path().join("b.kvb");
        let n = write(&path, &dir.path().join(".tmp"), &h, &payload).unwrap();
        assert_eq!(n, std::fs::metadata(&path).unwrap().len());
        assert!(!dir.path().join(".tmp").exists());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(check(&bytes, &h).unwrap(), &payload[..]);
        assert_eq!(payload_of(&bytes), &payload[..]);
        // Every single flipped byte, header, payload or checksum, is caught.
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(check(&b, &h).is_err(), "byte {i}");
        }
        assert!(matches!(
            check(&bytes[..bytes.len() - 1], &h),
            Err(Bad::Size { .. })
        ));
        assert_eq!(check_standalone(&bytes), Ok(h));
        for i in [0, 20, 130, bytes.len() - 1] {
            let mut b = bytes.clone();
            b[i] ^= 1;
            assert!(check_standalone(&b).is_err(), "byte {i}");
        }
        // Another block's header (another key or start) is not this block.
        let other = Header { start: 41, ..h };
        assert_eq!(check(&bytes, &other), Err(Bad::Header));
    }
}
