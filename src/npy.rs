//! Minimal `.npy` (format 1.0) reader/writer for little-endian f32 matrices.

use crate::{Error, Result};
use std::path::Path;

/// Serialises a row-major f32 array of `shape` as `.npy` bytes.
pub fn to_npy_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // Magic (6) + version (2) + header length (2) + header, padded to 64 bytes.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    std::fs::write(path, to_npy_bytes(shape, data)).map_err(Error::io(path))
}

/// Reads a little-endian f32 C-order `.npy`: (shape, data).
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).map_err(Error::io(path))?;
    parse_f32(&bytes).map_err(|msg| Error::Input(format!("{}: {msg}", path.display())))
}

/// Parses `.npy` bytes. The header's numbers are checked against the bytes
/// there are before anything is allocated: a shape whose element count
/// overflows or disagrees with the data is an error, not an allocation.
pub fn parse_f32(bytes: &[u8]) -> std::result::Result<(Vec<usize>, Vec<f32>), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not an .npy file".into());
    }
    let (hlen, hstart): (usize, usize) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = bytes
        .get(hstart..hstart.saturating_add(hlen))
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated header")?;
    if !header.contains("'descr': '<f4'") {
        return Err(format!(
            "only little-endian f32 is supported, header {header}"
        ));
    }
    if header.contains("'fortran_order': True") {
        return Err("Fortran order is not supported".into());
    }
    let s = header.find("'shape': (").ok_or("no shape")? + "'shape': (".len();
    let e = s + header[s..].find(')').ok_or("bad shape")?;
    let shape: Vec<usize> = header[s..e]
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            d.parse::<usize>()
                .map_err(|_| format!("bad dimension {d:?}"))
        })
        .collect::<std::result::Result<_, _>>()?;
    let n = shape
        .iter()
        .try_fold(4usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} is too large"))?;
    let body = &bytes[hstart + hlen..];
    if body.len() != n {
        return Err(format!(
            "shape {shape:?} needs {n} data bytes, found {}",
            body.len()
        ));
    }
    let data = body
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((shape, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_alignment() {
        let data: Vec<f32> = (0..6).map(|i| i as f32 * 0.5 - 1.0).collect();
        let bytes = to_npy_bytes(&[2, 3], &data);
        let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        assert_eq!(parse_f32(&bytes).unwrap(), (vec![2, 3], data));
    }

    // Issue 21: a shape whose element count overflows panicked (in a
    // build with overflow checks) instead of being refused.
    #[test]
    fn an_overflowing_shape_is_refused() {
        let mut bytes = to_npy_bytes(&[1], &[1.0]);
        let pos = bytes.windows(4).position(|w| w == b"(1,)").unwrap();
        let huge = b"(4611686018427387904, 8)";
        bytes.splice(pos..pos + 4, huge.iter().copied());
        let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize + huge.len() - 4;
        bytes[8..10].copy_from_slice(&(hlen as u16).to_le_bytes());
        let e = parse_f32(&bytes).unwrap_err();
        assert!(e.contains("too large"), "{e}");
    }

    #[test]
    fn rejects_other_dtypes() {
        let mut bytes = to_npy_bytes(&[1], &[1.0]);
        let pos = bytes.windows(3).position(|w| w == b"<f4").unwrap();
        bytes[pos + 2] = b'8';
        assert!(parse_f32(&bytes).is_err());
    }
}
