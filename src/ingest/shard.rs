//! Deterministic partition of an ingest over N processes (`--shard I/N`).
//!
//! A document belongs to shard `xxh3_64(source) mod N`, where `source` is
//! the UTF-8 bytes of the source string the store records: the canonical
//! absolute path of the file (symlinks resolved). XXH3-64 with seed 0 is a
//! fixed, documented function, so every process, on every machine and
//! every c3 version, puts a path in the same shard, with no coordination.
//! The constraint that follows: the corpus must be visible at the *same
//! canonical path* in every process (e.g. the same mount path in every
//! pod), or a document hashes differently and its stored source differs.

use xxhash_rust::xxh3::xxh3_64;

use crate::{Error, Result};

/// Environment variable Kubernetes Indexed Jobs set to the pod's index.
pub const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// Shard `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Parse `I/N`, or `auto/N` with I read from `JOB_COMPLETION_INDEX`
    /// through `env` (a lookup, so tests need not touch the process
    /// environment).
    pub fn parse(spec: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let bad = |why: String| Error::Input(format!("--shard {spec}: {why}"));
        let (i, n) = spec
            .split_once('/')
            .ok_or_else(|| bad("expected I/N (e.g. 0/4) or auto/N".into()))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| bad(format!("shard count `{n}` is not a whole number")))?;
        if count == 0 {
            return Err(bad("the shard count must be at least 1".into()));
        }
        let index: u32 = if i.trim() == "auto" {
            let v = env(INDEX_ENV).ok_or_else(|| {
                bad(format!(
                    "`auto` reads the index from {INDEX_ENV}, which is not set \
                     (set by Kubernetes Indexed Jobs; otherwise give the index)"
                ))
            })?;
            v.trim()
                .parse()
                .map_err(|_| bad(format!("{INDEX_ENV}={v:?} is not a whole number")))?
        } else {
            i.trim()
                .parse()
                .map_err(|_| bad(format!("shard index `{i}` is not a whole number or `auto`")))?
        };
        if index >= count {
            return Err(bad(format!(
                "index {index} is not below the shard count {count} (indexes run from 0 to {})",
                count - 1
            )));
        }
        Ok(Shard { index, count })
    }

    /// The shard of `count` that `source` belongs to.
    pub fn of(source: &str, count: u32) -> u32 {
        (xxh3_64(source.as_bytes()) % u64::from(count.max(1))) as u32
    }

    /// Whether `source` falls into this shard.
    pub fn contains(&self, source: &str) -> bool {
        Self::of(source, self.count) == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn parses_index_and_count() {
        assert_eq!(
            Shard::parse("2/7", no_env).unwrap(),
            Shard { index: 2, count: 7 }
        );
        assert_eq!(
            Shard::parse("0/1", no_env).unwrap(),
            Shard { index: 0, count: 1 }
        );
    }

    #[test]
    fn auto_reads_the_job_completion_index() {
        let env = |k: &str| (k == INDEX_ENV).then(|| "5".to_string());
        assert_eq!(
            Shard::parse("auto/8", env).unwrap(),
            Shard { index: 5, count: 8 }
        );
        let e = Shard::parse("auto/8", no_env).unwrap_err().to_string();
        assert!(e.contains(INDEX_ENV) && e.contains("not set"), "{e}");
        let e = Shard::parse("auto/4", |_| Some("9".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("index 9 is not below the shard count 4"), "{e}");
        let e = Shard::parse("auto/4", |_| Some("x".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"x\" is not a whole number"), "{e}");
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        for (spec, why) in [
            ("3", "expected I/N"),
            ("3/3", "index 3 is not below the shard count 3"),
            ("0/0", "at least 1"),
            ("-1/4", "`-1` is not a whole number"),
            ("a/4", "`a` is not a whole number"),
            ("1/b", "count `b`"),
        ] {
            let e = Shard::parse(spec, no_env).unwrap_err().to_string();
            assert!(e.contains(spec) && e.contains(why), "{spec}: {e}");
        }
    }

    #[test]
    fn shards_partition_and_are_stable() {
        let sources: Vec<String> = (0..500)
            .map(|i| format!("/corpus/dir{}/f{i}.txt", i % 13))
            .collect();
        for n in [1u32, 2, 3, 7] {
            let mut seen = vec![0usize; n as usize];
            for s in &sources {
                let owners: Vec<u32> = (0..n)
                    .filter(|&i| Shard { index: i, count: n }.contains(s))
                    .collect();
                assert_eq!(owners.len(), 1, "{s} in {owners:?} of {n}");
                seen[owners[0] as usize] += 1;
            }
            // A hash, not a round robin: every shard gets a fair part.
            for (i, &c) in seen.iter().enumerate() {
                assert!(c * n as usize * 2 > sources.len(), "shard {i}/{n}: {c}");
            }
        }
        // The documented function: XXH3-64 (seed 0) of the path bytes, mod N.
        // These pin it, so a change of hash (which would move documents
        // between shards of running jobs) cannot go unnoticed.
        assert_eq!(xxh3_64(b""), 0x2d06800538d394c2);
        assert_eq!(Shard::of("", 1000), (0x2d06800538d394c2u64 % 1000) as u32);
    }
}
