//! Issue 21, point 3: damaged search-index files made tantivy panic (exit
//! 101) in `c3 check` and `c3 ask`. Every file of a real index is damaged
//! in turn, in process: checking the index must report it (never panic),
//! and opening it for a query must rebuild it from the store.

mod store_support;

use std::path::{Path, PathBuf};

use c3::chunk::Chunker;
use c3::ingest::{ingest, IngestOptions, Input};
use c3::retrieve::{index, ChunkIndex};
use c3::store::Store;
use store_support::{corpus, ByteSizer, FakeCompressor};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A store of three book excerpts ingested in two runs (two segments), with
/// its index built.
fn pristine(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let book = std::fs::read_to_string(corpus("alice-in-wonderland.txt")).unwrap();
    for i in 0..3 {
        let mut s = 3000 * i;
        while !book.is_char_boundary(s) {
            s += 1;
        }
        let mut e = s + 2500;
        while !book.is_char_boundary(e) {
            e += 1;
        }
        std::fs::write(src.join(format!("doc{i}.txt")), &book[s..e]).unwrap();
    }
    let store_dir = dir.join("store");
    let enc = FakeCompressor::new("index-fp");
    let chunker = Chunker::new(ByteSizer, 150).unwrap();
    for files in [vec!["doc0.txt", "doc1.txt"], vec!["doc2.txt"]] {
        let store = Store::open(&store_dir).unwrap();
        let inputs: Vec<Input> = files.iter().map(|f| Input::Path(src.join(f))).collect();
        let r = ingest(&store, &enc, &chunker, &inputs, &IngestOptions::default()).unwrap();
        assert!(r.ok());
        ChunkIndex::open_synced(&store, false).unwrap();
    }
    store_dir
}

/// The index's files, in an order that does not depend on segment ids.
fn index_files(store: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(store.join("bm25"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".tantivy-")
        })
        .collect();
    files.sort_by_key(|p| {
        let len = std::fs::metadata(p).unwrap().len();
        (p.extension().map(|e| e.to_os_string()), len)
    });
    files
}

#[test]
fn every_damaged_index_file_is_reported_and_rebuilt_never_a_panic() {
    let work = tempfile::tempdir().unwrap();
    let clean = pristine(work.path());
    let n_files = index_files(&clean).len();
    let mut variants = 0;
    let mut reported = 0;
    for f in 0..n_files {
        let len = std::fs::metadata(&index_files(&clean)[f]).unwrap().len() as usize;
        let mut offsets = vec![25, 50, 74, len / 2, len.saturating_sub(20)];
        offsets.retain(|&o| o < len);
        offsets.dedup();
        for &at in &offsets {
            for bit in [0u8, 5] {
                let dir = work.path().join(format!("v{variants}"));
                copy_dir(&clean, &dir);
                let target = &index_files(&dir)[f];
                let mut bytes = std::fs::read(target).unwrap();
                bytes[at] ^= 1 << bit;
                std::fs::write(target, &bytes).unwrap();
                let what = format!(
                    "{} byte {at} bit {bit}",
                    target.file_name().unwrap().to_string_lossy()
                );
                variants += 1;
                let store = Store::open_existing(&dir).unwrap();
                let r =
                    index::check(&store).unwrap_or_else(|e| panic!("{what}: check failed: {e}"));
                if !r.problems.is_empty() || r.status != "ok" {
                    reported += 1;
                }
                let (ix, _) = ChunkIndex::open_synced(&store, false)
                    .unwrap_or_else(|e| panic!("{what}: not rebuilt: {e}"));
                ix.search("Alice rabbit", &[], 5)
                    .unwrap_or_else(|e| panic!("{what}: search failed: {e}"));
                let after = index::check(&store).unwrap();
                assert!(
                    after.problems.is_empty(),
                    "{what}: still damaged: {:?}",
                    after.problems
                );
                drop(ix);
                drop(store);
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
    eprintln!("{variants} damaged indexes, {reported} reported by check");
    assert!(variants > 50, "{variants}");
}
