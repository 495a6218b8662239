//! Version 2: every value c3 writes into sled carries its own checksum.
//!
//! Version 1 stored the `next_doc_id` and `generation` counters (tree
//! `meta`) and every `sources` entry (a doc id) as bare 8-byte big-endian
//! integers, so a flipped bit there read as another number. Version 2
//! stores each as the 8 bytes followed by their XXH3-64 (little-endian),
//! as the rkyv records already were. `schema_version` stays a bare
//! big-endian u32: every layout must be able to read it.
//!
//! The step is idempotent (an interrupted upgrade resumes): an 8-byte
//! value is sealed, a 16-byte one whose checksum holds is left alone, and
//! anything else is left for `c3 check` to report.

use crate::v1;

/// Length of a sealed integer: the value and its checksum.
pub const SEALED_LEN: usize = 16;

/// An integer as version 2 stores it.
pub fn seal_u64(value: u64) -> [u8; SEALED_LEN] {
    let mut out = [0u8; SEALED_LEN];
    out[..8].copy_from_slice(&value.to_be_bytes());
    let sum = xxhash_rust::xxh3::xxh3_64(&value.to_be_bytes());
    out[8..].copy_from_slice(&sum.to_le_bytes());
    out
}

/// The integer of a sealed value; `None` when its length or checksum is wrong.
pub fn unseal_u64(bytes: &[u8]) -> Option<u64> {
    if bytes.len() != SEALED_LEN {
        return None;
    }
    let (value, sum) = bytes.split_at(8);
    let want = xxhash_rust::xxh3::xxh3_64(value).to_le_bytes();
    (sum == want).then(|| u64::from_be_bytes(value.try_into().expect("8 bytes")))
}

/// The migration step: seal the counters and the `sources` entries.
pub fn checksum_raw_values(db: &sled::Db) -> sled::Result<()> {
    let meta = db.open_tree(v1::META)?;
    for key in [v1::NEXT_DOC_ID_KEY, v1::GENERATION_KEY] {
        if let Some(v) = meta.get(key)? {
            if let Ok(raw) = <[u8; 8]>::try_from(v.as_ref()) {
                meta.insert(key, &seal_u64(u64::from_be_bytes(raw))[..])?;
            }
        }
    }
    let sources = db.open_tree(v1::SOURCES)?;
    for item in sources.iter() {
        let (k, v) = item?;
        if let Ok(raw) = <[u8; 8]>::try_from(v.as_ref()) {
            sources.insert(k, &seal_u64(u64::from_be_bytes(raw))[..])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_round_trips_and_any_flip_is_caught() {
        let s = seal_u64(0x0102_0304_0506_0708);
        assert_eq!(unseal_u64(&s), Some(0x0102_0304_0506_0708));
        for bit in 0..SEALED_LEN * 8 {
            let mut b = s;
            b[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(unseal_u64(&b), None, "flip of bit {bit} not caught");
        }
        assert_eq!(unseal_u64(&s[..8]), None);
    }

    #[test]
    fn the_step_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let meta = db.open_tree(v1::META).unwrap();
        meta.insert(v1::GENERATION_KEY, &5u64.to_be_bytes()[..])
            .unwrap();
        let sources = db.open_tree(v1::SOURCES).unwrap();
        sources.insert("a", &3u64.to_be_bytes()[..]).unwrap();
        checksum_raw_values(&db).unwrap();
        checksum_raw_values(&db).unwrap();
        let g = meta.get(v1::GENERATION_KEY).unwrap().unwrap();
        assert_eq!(unseal_u64(&g), Some(5));
        assert_eq!(unseal_u64(&sources.get("a").unwrap().unwrap()), Some(3));
        assert!(meta.get(v1::NEXT_DOC_ID_KEY).unwrap().is_none());
    }
}
