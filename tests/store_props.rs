//! Issue 21: property tests over what a user (or a damaged disk) can feed
//! the store: its record codec (every tree's values) and the export file
//! reader. Arbitrary mutations of valid inputs give `Ok` or an error,
//! never a panic, and never allocate beyond a bound.
//!
//! Allocation is measured by a counting global allocator: the peak of live
//! bytes above what was live when the case started.

mod store_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use c3::store::{export, Store};
use proptest::prelude::*;
use store_support::{model, put_doc, FakeCompressor};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = System.realloc(p, l, new);
        if !q.is_null() {
            if new > l.size() {
                let now = LIVE.fetch_add(new - l.size(), Ordering::Relaxed) + new - l.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(l.size() - new, Ordering::Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Serializes the measured sections: the tests of this file run on several
/// threads, and the counter is process-wide.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Bytes allocated at the peak of `f`, above what was live before it.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

/// zstd's decoder context and window (the window is capped at 2^23 bytes),
/// safetensors and JSON bookkeeping.
const FIXED_ALLOWANCE: usize = 24 << 20;

/// A raw value: its tree, key and bytes.
type RawValue = (String, Vec<u8>, Vec<u8>);

/// A store with two documents, and every raw value of its trees.
fn sample_values() -> Vec<RawValue> {
    let dir = tempfile::tempdir().unwrap();
    let enc = FakeCompressor::new("prop-fp");
    {
        let store = Store::open(dir.path()).unwrap();
        store.bind_model(&model(&enc)).unwrap();
        put_doc(&store, &enc, "/a.txt", &["alpha beta ", "gamma delta"]);
        put_doc(&store, &enc, "stdin:notes", &["ünïcode notes"]);
    }
    let db = c3_migrations::open_db(dir.path()).unwrap();
    let mut out = Vec::new();
    for tree in ["meta", "docs", "sources", "chunks", "latents"] {
        for kv in db.open_tree(tree).unwrap().iter() {
            let (k, v) = kv.unwrap();
            // The schema version is a bare u32 outside any record format.
            if tree == "meta" && k.as_ref() != b"store" {
                continue;
            }
            out.push((tree.to_string(), k.to_vec(), v.to_vec()));
        }
    }
    out
}

/// A value whose body was changed and whose checksum was recomputed, so the
/// record decoding behind the checksum is exercised too.
fn resealed(mut v: Vec<u8>, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let n = v.len().saturating_sub(8);
    v.truncate(n);
    edit(&mut v);
    let sum = xxhash_rust::xxh3::xxh3_64(&v).to_le_bytes();
    v.extend_from_slice(&sum);
    v
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Zero { at: usize, len: usize },
    Truncate { at: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Set { at: usize, byte: u8 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Mutation::Zero { at, len }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
    ]
}

fn apply(v: &mut Vec<u8>, m: &Mutation) {
    if v.is_empty() {
        return;
    }
    let n = v.len();
    match m {
        Mutation::Flip { at, bit } => v[at % n] ^= 1 << bit,
        Mutation::Zero { at, len } => {
            let s = at % n;
            let e = (s + len).min(n);
            v[s..e].iter_mut().for_each(|b| *b = 0);
        }
        Mutation::Truncate { at } => v.truncate(at % n),
        Mutation::Insert { at, bytes } => {
            let s = at % (n + 1);
            v.splice(s..s, bytes.iter().copied());
        }
        Mutation::Set { at, byte } => v[at % n] = *byte,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    #[test]
    fn the_record_codec_never_panics_and_stays_bounded(
        pick in any::<usize>(),
        muts in proptest::collection::vec(mutation(), 1..4),
        reseal in any::<bool>(),
    ) {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let values = sample_values_cached();
        let (tree, key, value) = &values[pick % values.len()];
        let mutated = if reseal {
            resealed(value.clone(), |v| muts.iter().for_each(|m| apply(v, m)))
        } else {
            let mut v = value.clone();
            muts.iter().for_each(|m| apply(&mut v, m));
            v
        };
        let (r, peak) = peak_of(|| c3::store::verify_value(tree, key, &mutated));
        let bound = FIXED_ALLOWANCE + 8 * mutated.len();
        prop_assert!(peak <= bound, "{tree}: {peak} bytes allocated for a {}-byte value", mutated.len());
        if let Err(e) = r {
            let msg = e.to_string();
            prop_assert!(msg.contains(tree.as_str()), "error does not name the tree: {msg}");
        }
    }

    #[test]
    fn the_export_reader_never_panics_and_stays_bounded(
        muts in proptest::collection::vec(mutation(), 1..4),
    ) {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let (good, dir) = sample_export_cached();
        let mut bytes = good.clone();
        muts.iter().for_each(|m| apply(&mut bytes, m));
        let path = dir.join(format!("case-{}.c3x", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        let (r, peak) = peak_of(|| export::verify(&path).map(|f| f.docs().len()));
        let bound = FIXED_ALLOWANCE + 8 * bytes.len();
        prop_assert!(peak <= bound, "{peak} bytes allocated for a {}-byte export", bytes.len());
        if bytes == *good {
            prop_assert!(r.is_ok());
        }
    }
}

fn sample_values_cached() -> &'static [RawValue] {
    static V: std::sync::OnceLock<Vec<RawValue>> = std::sync::OnceLock::new();
    V.get_or_init(sample_values)
}

/// A valid export of a two-document store, and a directory for cases.
fn sample_export_cached() -> (&'static Vec<u8>, &'static std::path::Path) {
    static E: std::sync::OnceLock<(Vec<u8>, tempfile::TempDir)> = std::sync::OnceLock::new();
    let (b, d) = E.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let enc = FakeCompressor::new("prop-fp");
        let store = Store::open(&dir.path().join("s")).unwrap();
        store.bind_model(&model(&enc)).unwrap();
        put_doc(&store, &enc, "/a.txt", &["alpha beta ", "gamma delta"]);
        put_doc(&store, &enc, "stdin:notes", &["ünïcode notes"]);
        let f = dir.path().join("good.c3x");
        export::export(&store, &f).unwrap();
        (std::fs::read(&f).unwrap(), dir)
    });
    (b, d.path())
}

#[test]
fn an_unmutated_value_of_every_tree_verifies() {
    for (tree, key, value) in sample_values_cached() {
        c3::store::verify_value(tree, key, value).unwrap_or_else(|e| panic!("{tree} {key:?}: {e}"));
    }
}
