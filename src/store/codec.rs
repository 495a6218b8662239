//! Value envelope: rkyv archive followed by an 8-byte XXH3-64 checksum.
//!
//! rkyv validation catches structural damage; the checksum also catches a
//! flipped byte inside text or latent payloads, which validation cannot see.
//! XXH3 runs at memory speed, so checking 1000 latents (96 MB) stays cheap.

use rkyv::api::high::{HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use super::keys::describe;
use crate::{Error, Result};

const SUM_LEN: usize = 8;

fn checksum(bytes: &[u8]) -> [u8; SUM_LEN] {
    xxhash_rust::xxh3::xxh3_64(bytes).to_le_bytes()
}

/// Serialize `value` into a store value.
pub fn encode<T>(value: &T) -> Result<Vec<u8>>
where
    T: for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>,
{
    let archived = rkyv::to_bytes::<rancor::Error>(value)
        .map_err(|e| Error::Store(format!("serialize: {e}")))?;
    let mut out = Vec::with_capacity(archived.len() + SUM_LEN);
    out.extend_from_slice(&archived);
    out.extend_from_slice(&checksum(&archived));
    Ok(out)
}

/// An archive ready for [`rkyv::access`]: the stored bytes themselves when
/// sled hands them out suitably aligned, else an aligned copy.
pub enum Archived<'a> {
    Borrowed(&'a [u8]),
    Owned(AlignedVec),
}

impl std::ops::Deref for Archived<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Archived::Borrowed(b) => b,
            Archived::Owned(v) => v,
        }
    }
}

/// Verify a stored value's checksum and prepare its archive for access.
/// Errors name the tree and key.
pub fn aligned<'a>(tree: &str, key: &[u8], value: &'a [u8]) -> Result<Archived<'a>> {
    if value.len() < SUM_LEN {
        return Err(corrupt(tree, key, "value shorter than its checksum"));
    }
    let (body, sum) = value.split_at(value.len() - SUM_LEN);
    if checksum(body) != sum {
        return Err(corrupt(tree, key, "checksum mismatch"));
    }
    // Large values (latents) usually come aligned: skip a 96 KiB copy.
    if (body.as_ptr() as usize).is_multiple_of(AlignedVec::<16>::ALIGNMENT) {
        return Ok(Archived::Borrowed(body));
    }
    let mut buf = AlignedVec::<16>::with_capacity(body.len());
    buf.extend_from_slice(body);
    Ok(Archived::Owned(buf))
}

/// Validate and access an archived value in place.
pub fn access<'a, T>(tree: &str, key: &[u8], buf: &'a [u8]) -> Result<&'a T::Archived>
where
    T: Archive,
    T::Archived: for<'b> CheckBytes<HighValidator<'b, rancor::Error>>,
{
    rkyv::access::<T::Archived, rancor::Error>(buf)
        .map_err(|e| corrupt(tree, key, &format!("invalid record: {e}")))
}

/// Verify, validate and deserialize a stored value.
pub fn decode<T>(tree: &str, key: &[u8], value: &[u8]) -> Result<T>
where
    T: Archive,
    T::Archived: for<'b> CheckBytes<HighValidator<'b, rancor::Error>>
        + Deserialize<T, rancor::Strategy<rkyv::de::Pool, rancor::Error>>,
{
    let buf = aligned(tree, key, value)?;
    rkyv::from_bytes::<T, rancor::Error>(&buf)
        .map_err(|e| corrupt(tree, key, &format!("invalid record: {e}")))
}

/// Error for a damaged value.
pub fn corrupt(tree: &str, key: &[u8], what: &str) -> Error {
    Error::CorruptRecord {
        tree: tree.to_string(),
        key: describe(tree, key),
        what: what.to_string(),
    }
}

/// A problem line for `c3 check`: the error without the remedy every
/// line would otherwise repeat.
pub fn problem(e: &Error) -> String {
    match e {
        Error::CorruptRecord { tree, key, what } => {
            format!("corrupt record in tree `{tree}` at key {key}: {what}")
        }
        other => other.to_string(),
    }
}

/// An integer as the store keeps it: 8 bytes big-endian and their XXH3-64
/// (schema version 2; `c3_migrations::v2`).
pub fn encode_u64(value: u64) -> [u8; 16] {
    c3_migrations::v2::seal_u64(value)
}

/// Read an integer written by [`encode_u64`]. `legacy`: the database is
/// still at schema version 1 (a damaged store opened without migrating),
/// whose integers are bare 8 bytes.
pub fn decode_u64(tree: &str, key: &[u8], value: &[u8], legacy: bool) -> Result<u64> {
    if let Some(v) = c3_migrations::v2::unseal_u64(value) {
        return Ok(v);
    }
    if legacy {
        if let Ok(b) = <[u8; 8]>::try_from(value) {
            return Ok(u64::from_be_bytes(b));
        }
    }
    Err(corrupt(
        tree,
        key,
        if value.len() == c3_migrations::v2::SEALED_LEN {
            "checksum mismatch"
        } else {
            "not a checksummed integer (16 bytes)"
        },
    ))
}

/// Bytes followed by their checksum (the manifest id in `meta`).
pub fn seal(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out.extend_from_slice(&checksum(bytes));
    out
}

/// The bytes of a value written by [`seal`].
pub fn unseal<'a>(tree: &str, key: &[u8], value: &'a [u8]) -> Result<&'a [u8]> {
    if value.len() < SUM_LEN {
        return Err(corrupt(tree, key, "value shorter than its checksum"));
    }
    let (body, sum) = value.split_at(value.len() - SUM_LEN);
    if checksum(body) != sum {
        return Err(corrupt(tree, key, "checksum mismatch"));
    }
    Ok(body)
}

/// Decompress a chunk's zstd frame, which must give exactly `len` bytes.
/// Reads at most `len + 1` bytes of output, so a damaged frame (or a
/// damaged length) never makes it allocate more than the record declares.
pub fn unzstd(tree: &str, key: &[u8], frame: &[u8], len: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    const MAX_CHUNK_BYTES: u64 = 1 << 30;
    if len > MAX_CHUNK_BYTES {
        return Err(corrupt(
            tree,
            key,
            "byte range longer than any chunk c3 writes",
        ));
    }
    let mut dec = zstd::stream::read::Decoder::new(frame)
        .map_err(|e| corrupt(tree, key, &format!("zstd: {e}")))?;
    // Level 3 writes windows of at most 2^21 bytes: a frame asking for more
    // is damaged, and would make the decoder allocate it.
    dec.window_log_max(23)
        .map_err(|e| corrupt(tree, key, &format!("zstd: {e}")))?;
    let mut out = Vec::new();
    dec.take(len + 1)
        .read_to_end(&mut out)
        .map_err(|e| corrupt(tree, key, &format!("zstd: {e}")))?;
    if out.len() as u64 != len {
        return Err(corrupt(
            tree,
            key,
            "text length differs from its byte range",
        ));
    }
    Ok(out)
}
