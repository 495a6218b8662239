//! The in-memory tier `c3 serve` keeps over the directory: the payloads of
//! the most recently used blocks, within a byte bound, least recently used
//! (and, among equals, latest position) out first.

use std::collections::HashMap;
use std::sync::Arc;

use super::key::BlockKey;

struct Held {
    payload: Arc<[u8]>,
    start: u64,
    last: u64,
}

/// Block payloads by key, at most `cap` bytes of them.
pub struct Memory {
    cap: u64,
    used: u64,
    clock: u64,
    blocks: HashMap<BlockKey, Held>,
}

impl Memory {
    pub fn new(cap: u64) -> Self {
        Memory {
            cap,
            used: 0,
            clock: 0,
            blocks: HashMap::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.cap > 0
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.used
    }

    pub fn contains(&self, key: &BlockKey) -> bool {
        self.blocks.contains_key(key)
    }

    /// The payload of `key`, marked used.
    pub fn get(&mut self, key: &BlockKey) -> Option<Arc<[u8]>> {
        self.clock += 1;
        let h = self.blocks.get_mut(key)?;
        h.last = self.clock;
        Some(h.payload.clone())
    }

    /// Holds `payload` (a block starting at `start`); returns how many
    /// blocks were let go to stay within the bound. A payload larger than
    /// the whole bound is not held.
    pub fn put(&mut self, key: BlockKey, start: u64, payload: Arc<[u8]>) -> u64 {
        let len = payload.len() as u64;
        if len > self.cap {
            return 0;
        }
        self.clock += 1;
        let held = Held {
            payload,
            start,
            last: self.clock,
        };
        if let Some(old) = self.blocks.insert(key, held) {
            self.used -= old.payload.len() as u64;
        }
        self.used += len;
        let mut dropped = 0;
        while self.used > self.cap {
            let Some(victim) = self
                .blocks
                .iter()
                .filter(|(k, _)| **k != key)
                .min_by_key(|(_, h)| (h.last, std::cmp::Reverse(h.start)))
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some(h) = self.blocks.remove(&victim) {
                self.used -= h.payload.len() as u64;
                dropped += 1;
            }
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_its_bound_and_lets_the_least_recent_go() {
        let mut m = Memory::new(10);
        let k = |i: u8| BlockKey([i; 32]);
        assert_eq!(m.put(k(1), 0, vec![0; 4].into()), 0);
        assert_eq!(m.put(k(2), 4, vec![0; 4].into()), 0);
        assert!(m.get(&k(1)).is_some());
        // 12 bytes > 10: block 2 (least recently used) goes.
        assert_eq!(m.put(k(3), 8, vec![0; 4].into()), 1);
        assert!(m.get(&k(2)).is_none() && m.get(&k(1)).is_some());
        assert_eq!(m.bytes(), 8);
        // Larger than the bound: not held, nothing let go.
        assert_eq!(m.put(k(4), 0, vec![0; 11].into()), 0);
        assert_eq!(m.bytes(), 8);
    }
}
