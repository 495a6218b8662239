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
    Error::Store(format!(
        "corrupt record in tree `{tree}` at key {}: {what}",
        describe(tree, key)
    ))
}
