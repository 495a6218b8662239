//! Hash tables for the rank lookups on the encode hot path.
//!
//! Profiling showed encode time going to cache misses in a 151k-entry map of
//! boxed byte strings (bucket, then key, then compare). Tokens of up to 15
//! bytes (nearly all of them) are stored packed into a `u128` key instead,
//! so a lookup touches one bucket and compares two words.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Multiply-rotate hash. The keys are a fixed vocabulary and lookups never
/// insert, so hash flooding is not a concern, while SipHash was a
/// measurable share of encode time.
#[derive(Default)]
pub struct RankHasher(u64);

impl RankHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for RankHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(w));
        }
    }
    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }
    #[inline]
    fn write_u128(&mut self, n: u128) {
        self.mix(n as u64);
        self.mix((n >> 64) as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        // The multiply leaves the low bits (the bucket index) depending only
        // on the low input bits; rotating brings the well-mixed high bits down.
        self.0.rotate_left(26)
    }
}

type FastMap<K> = HashMap<K, u32, BuildHasherDefault<RankHasher>>;

/// Longest token stored inline: 15 bytes plus a length byte fill a `u128`.
const INLINE_MAX: usize = 15;

/// Pack a short byte string with its length (so "a" and "a\0" differ).
#[inline]
fn pack(bytes: &[u8]) -> u128 {
    let mut buf = [0u8; 16];
    buf[..bytes.len()].copy_from_slice(bytes);
    buf[INLINE_MAX] = bytes.len() as u8;
    u128::from_le_bytes(buf)
}

/// Token bytes -> rank.
#[derive(Default)]
pub struct RankTable {
    short: FastMap<u128>,
    long: FastMap<Box<[u8]>>,
}

impl RankTable {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            short: FastMap::with_capacity_and_hasher(n, Default::default()),
            long: FastMap::default(),
        }
    }

    /// Insert; returns the rank previously stored for these bytes, if any.
    pub fn insert(&mut self, bytes: &[u8], rank: u32) -> Option<u32> {
        if bytes.len() <= INLINE_MAX {
            self.short.insert(pack(bytes), rank)
        } else {
            self.long.insert(bytes.into(), rank)
        }
    }

    #[inline]
    pub fn get(&self, bytes: &[u8]) -> Option<u32> {
        if bytes.len() <= INLINE_MAX {
            self.short.get(&pack(bytes)).copied()
        } else {
            self.long.get(bytes).copied()
        }
    }
}

/// Small direct-mapped cache in front of [`RankTable`] for one encode call.
///
/// Word frequencies are skewed, so a few thousand slots that fit in L2 answer
/// most lookups without touching the big table. A colliding piece simply
/// evicts the slot, so adversarial text can cost misses but never long probes.
pub struct HotCache {
    /// `(packed piece, rank)`; key 0 (the empty piece) marks a free slot.
    slots: Vec<(u128, u32)>,
    mask: usize,
}

impl HotCache {
    /// Sized for about `pieces` lookups, at most 4096 slots.
    pub fn new(pieces: usize) -> Self {
        let n = pieces.clamp(16, 4096).next_power_of_two();
        Self {
            slots: vec![(0, 0); n],
            mask: n - 1,
        }
    }

    /// Rank of a piece that is a whole token, consulting `table` on a miss.
    #[inline]
    pub fn rank(&mut self, table: &RankTable, piece: &[u8]) -> Option<u32> {
        if piece.is_empty() || piece.len() > INLINE_MAX {
            return table.get(piece);
        }
        let key = pack(piece);
        let mut h = RankHasher::default();
        h.write_u128(key);
        let slot = &mut self.slots[h.finish() as usize & self.mask];
        if slot.0 == key {
            return Some(slot.1);
        }
        let rank = table.short.get(&key).copied()?;
        *slot = (key, rank);
        Some(rank)
    }
}

/// `(left id, right id)` -> rank of the two tokens' concatenation.
#[derive(Default)]
pub struct PairTable(FastMap<u64>);

impl PairTable {
    pub fn with_capacity(n: usize) -> Self {
        Self(FastMap::with_capacity_and_hasher(n, Default::default()))
    }

    #[inline]
    fn key(left: u32, right: u32) -> u64 {
        (u64::from(left) << 32) | u64::from(right)
    }

    pub fn insert(&mut self, left: u32, right: u32, rank: u32) {
        self.0.insert(Self::key(left, right), rank);
    }

    #[inline]
    pub fn get(&self, left: u32, right: u32) -> Option<u32> {
        self.0.get(&Self::key(left, right)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_keys() {
        let mut t = RankTable::default();
        let long = [7u8; 40];
        assert_eq!(t.insert(b"a", 1), None);
        assert_eq!(t.insert(b"a\0", 2), None);
        assert_eq!(t.insert(b"", 3), None);
        assert_eq!(t.insert(&[0xFF; 15], 4), None);
        assert_eq!(t.insert(&[0xFF; 16], 5), None);
        assert_eq!(t.insert(&long, 6), None);
        assert_eq!(t.insert(b"a", 9), Some(1));
        assert_eq!(t.get(b"a"), Some(9));
        assert_eq!(t.get(b"a\0"), Some(2));
        assert_eq!(t.get(b""), Some(3));
        assert_eq!(t.get(&[0xFF; 15]), Some(4));
        assert_eq!(t.get(&[0xFF; 16]), Some(5));
        assert_eq!(t.get(&long), Some(6));
        assert_eq!(t.get(&long[1..]), None);
        assert_eq!(t.get(b"b"), None);
    }

    #[test]
    fn hot_cache_agrees_with_table() {
        let mut t = RankTable::default();
        for (i, w) in ["a", "bb", "ccc", "a long token over 15"]
            .iter()
            .enumerate()
        {
            t.insert(w.as_bytes(), i as u32);
        }
        let mut c = HotCache::new(0);
        for _ in 0..3 {
            for w in ["a", "bb", "ccc", "a long token over 15", "zz", ""] {
                assert_eq!(c.rank(&t, w.as_bytes()), t.get(w.as_bytes()), "{w}");
            }
        }
    }

    #[test]
    fn pairs_are_ordered() {
        let mut p = PairTable::default();
        p.insert(1, 2, 10);
        assert_eq!(p.get(1, 2), Some(10));
        assert_eq!(p.get(2, 1), None);
    }
}
