//! Store records, transactions, corruption detection and export/import.

mod store_support;

use c3::cascade::Compressor;
use c3::store::{export, Store};
use candle_core::Tensor;
use store_support::{model, put_doc, FakeCompressor};

fn same(a: &Tensor, b: &Tensor) -> bool {
    a.dtype() == b.dtype()
        && a.dims() == b.dims()
        && a.to_dtype(candle_core::DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            == b.to_dtype(candle_core::DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
}

#[test]
fn records_round_trip_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let enc = FakeCompressor::new("fp-a");
    let pieces = ["Hello, ", "wörld\r\n", "and the rest."];
    {
        let store = Store::open(dir.path()).unwrap();
        store.bind_model(&model(&enc)).unwrap();
        let d = put_doc(&store, &enc, "/tmp/a.txt", &pieces);
        assert_eq!(d.id, 0);
        assert_eq!(d.chunk_count, 3);
    }
    let store = Store::open(dir.path()).unwrap();
    let d = store
        .find_source("/tmp/a.txt")
        .unwrap()
        .expect("document kept");
    assert_eq!(d.size as usize, pieces.concat().len());
    let lat = enc.compress(&pieces).unwrap();
    for (i, p) in pieces.iter().enumerate() {
        let c = store.chunk_record(d.id, i as u32).unwrap();
        assert_eq!(store.chunk_text(&c).unwrap(), *p);
        assert!(same(&store.latent(d.id, i as u32).unwrap(), &lat[i]));
    }
    let all = store.doc_latents(d.id).unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.iter().zip(&lat).all(|(a, b)| same(a, b)));
    assert!(store.check().unwrap().ok());
    assert_eq!(store.stats().unwrap().chunks, 3);
}

#[test]
fn foreign_model_is_refused_with_owner_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .bind_model(&model(&FakeCompressor::new("owner-fp")))
        .unwrap();
    let err = store
        .bind_model(&model(&FakeCompressor::new("other-fp")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("owner-fp") && err.contains("other-fp"),
        "{err}"
    );
    // Same model again is fine.
    store
        .bind_model(&model(&FakeCompressor::new("owner-fp")))
        .unwrap();
}

#[test]
fn uncommitted_document_is_invisible_and_swept() {
    let dir = tempfile::tempdir().unwrap();
    let enc = FakeCompressor::new("fp");
    {
        let store = Store::open(dir.path()).unwrap();
        store.bind_model(&model(&enc)).unwrap();
        put_doc(&store, &enc, "keep", &["kept text"]);
        let mut w = store.begin(None).unwrap();
        let l = enc.compress(&["lost"]).unwrap();
        w.put_chunk(0, 1, "lost", &l[0]).unwrap();
        store.flush().unwrap();
        // Simulate a crash: the writer never commits and its drop never runs.
        std::mem::forget(w);
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.documents().count(), 1);
    let r = store.check().unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.chunks, 1);
    // The next document reuses the id the crashed one had reserved.
    let d = put_doc(&store, &enc, "next", &["next text"]);
    assert_eq!(d.id, 1);
}

#[test]
fn replacing_a_document_removes_old_chunks_in_one_step() {
    let dir = tempfile::tempdir().unwrap();
    let enc = FakeCompressor::new("fp");
    let store = Store::open(dir.path()).unwrap();
    store.bind_model(&model(&enc)).unwrap();
    let g0 = store.generation().unwrap();
    let a = put_doc(&store, &enc, "src", &["one ", "two ", "three"]);
    let b = put_doc(&store, &enc, "src", &["uno"]);
    assert_ne!(a.id, b.id);
    assert!(store.document(a.id).unwrap().is_none());
    assert_eq!(store.find_source("src").unwrap().unwrap().id, b.id);
    assert!(store.chunk_record(a.id, 0).is_err());
    assert_eq!(store.generation().unwrap(), g0 + 2);
    let r = store.check().unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!((r.documents, r.chunks), (1, 1));
    assert!(store.remove(b.id).unwrap());
    assert!(!store.remove(b.id).unwrap());
    assert_eq!(store.stats().unwrap().documents, 0);
    assert!(store.check().unwrap().ok());
}

#[test]
fn writer_rejects_gaps_and_wrong_latent_shape() {
    let dir = tempfile::tempdir().unwrap();
    let enc = FakeCompressor::new("fp");
    let store = Store::open(dir.path()).unwrap();
    store.bind_model(&model(&enc)).unwrap();
    let l = enc.compress(&["abc"]).unwrap();
    let mut w = store.begin(None).unwrap();
    assert!(
        w.put_chunk(5, 1, "abc", &l[0]).is_err(),
        "gap before first chunk"
    );
    let mut other = FakeCompressor::new("fp");
    other.hidden = 8;
    let bad = other.compress(&["abc"]).unwrap();
    let err = w.put_chunk(0, 1, "abc", &bad[0]).unwrap_err().to_string();
    assert!(err.contains("latent"), "{err}");
}

/// Flip one byte in a raw sled value of `tree` under `key`.
fn flip(dir: &std::path::Path, tree: &str, key: &[u8], at: usize) {
    let db = c3_migrations::open_db(dir).unwrap();
    let t = db.open_tree(tree).unwrap();
    let mut v = t.get(key).unwrap().expect("key present").to_vec();
    let i = at.min(v.len() - 1);
    v[i] ^= 0x5a;
    t.insert(key, v).unwrap();
    db.flush().unwrap();
}

fn chunk_key(doc: u64, ord: u32) -> Vec<u8> {
    let mut k = doc.to_be_bytes().to_vec();
    k.extend_from_slice(&ord.to_be_bytes());
    k
}

#[test]
fn flipped_bytes_are_reported_by_tree_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let enc = FakeCompressor::new("fp");
    {
        let store = Store::open(dir.path()).unwrap();
        store.bind_model(&model(&enc)).unwrap();
        put_doc(&store, &enc, "a", &["first chunk ", "second chunk"]);
        put_doc(&store, &enc, "b", &["other doc"]);
    }
    flip(dir.path(), "chunks", &chunk_key(0, 1), 20);
    flip(dir.path(), "latents", &chunk_key(1, 0), 300);
    flip(dir.path(), "docs", &1u64.to_be_bytes(), 3);
    let store = Store::open(dir.path()).unwrap();
    let r = store.check().unwrap();
    assert!(!r.ok());
    let all = r.problems.join("\n");
    assert!(all.contains("tree `chunks` at key doc 0 chunk 1"), "{all}");
    assert!(all.contains("tree `latents` at key doc 1 chunk 0"), "{all}");
    assert!(all.contains("tree `docs` at key doc 1"), "{all}");
    // Reads of the damaged records fail with the key, intact ones still work.
    let e = store.chunk_record(0, 1).unwrap_err().to_string();
    assert!(e.contains("doc 0 chunk 1"), "{e}");
    let e = store.latent(1, 0).unwrap_err().to_string();
    assert!(e.contains("doc 1 chunk 0"), "{e}");
    assert!(store.document(1).is_err());
    assert_eq!(
        store
            .chunk_text(&store.chunk_record(0, 0).unwrap())
            .unwrap(),
        "first chunk "
    );
}

#[test]
fn truncated_and_garbage_values_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let enc = FakeCompressor::new("fp");
    {
        let store = Store::open(dir.path()).unwrap();
        store.bind_model(&model(&enc)).unwrap();
        put_doc(&store, &enc, "a", &["some text"]);
    }
    {
        let db = c3_migrations::open_db(dir.path()).unwrap();
        db.open_tree("chunks")
            .unwrap()
            .insert(chunk_key(0, 0), &[1u8, 2, 3][..])
            .unwrap();
        db.open_tree("latents")
            .unwrap()
            .insert(chunk_key(0, 0), &[][..])
            .unwrap();
        db.open_tree("sources")
            .unwrap()
            .insert("ghost", &7u64.to_be_bytes()[..])
            .unwrap();
        db.flush().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let r = store.check().unwrap();
    let all = r.problems.join("\n");
    assert!(all.contains("doc 0 chunk 0"), "{all}");
    assert!(all.contains("\"ghost\""), "{all}");
    assert!(store.latent(0, 0).is_err());
}

#[test]
fn export_import_round_trips_exactly() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let enc = FakeCompressor::new("fp");
    let store = Store::open(src.path()).unwrap();
    store.bind_model(&model(&enc)).unwrap();
    put_doc(&store, &enc, "a", &["alpha ", "beta ", "gamma"]);
    let gone = put_doc(&store, &enc, "tmp", &["removed"]);
    store.remove(gone.id).unwrap();
    put_doc(&store, &enc, "stdin:notes", &["ünïcode\r\nline"]);
    let f1 = files.path().join("one.c3");
    let t = export::export(&store, &f1).unwrap();
    assert_eq!((t.documents, t.chunks), (2, 4));

    // A plain safetensors reader sees the latents with their dtype and shape.
    let bytes = std::fs::read(&f1).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let lat = st.tensor("doc.0.latents").unwrap();
    assert_eq!(lat.dtype(), safetensors::Dtype::BF16);
    assert_eq!(lat.shape(), &[3, 32, 16]);
    assert_eq!(
        st.tensor("doc.2.text").unwrap().data(),
        "ünïcode\r\nline".as_bytes()
    );

    let store2 = Store::open(dst.path()).unwrap();
    let t2 = export::import(&store2, &f1).unwrap();
    assert_eq!(t2.documents, 2);
    assert!(store2.check().unwrap().ok());
    let f2 = files.path().join("two.c3");
    export::export(&store2, &f2).unwrap();
    assert_eq!(
        std::fs::read(&f2).unwrap(),
        bytes,
        "export -> import -> export differs"
    );
    // Importing again changes nothing.
    let g = store2.generation().unwrap();
    let t3 = export::import(&store2, &f1).unwrap();
    assert_eq!((t3.documents, t3.skipped_unchanged), (0, 2));
    assert_eq!(store2.generation().unwrap(), g);

    // Another model's store refuses the export.
    let other = tempfile::tempdir().unwrap();
    let store3 = Store::open(other.path()).unwrap();
    store3
        .bind_model(&model(&FakeCompressor::new("other")))
        .unwrap();
    assert!(export::import(&store3, &f1).is_err());
}

#[test]
fn import_rejects_damaged_exports() {
    let src = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let enc = FakeCompressor::new("fp");
    let store = Store::open(src.path()).unwrap();
    store.bind_model(&model(&enc)).unwrap();
    put_doc(&store, &enc, "a", &["alpha ", "beta"]);
    let f = files.path().join("x.c3");
    export::export(&store, &f).unwrap();
    let good = std::fs::read(&f).unwrap();
    // Flip a byte of the document text (last tensor before the latents).
    let mut bad = good.clone();
    let n = bad.len();
    let at = n - 2 * 32 * 16 * 2 - 2;
    bad[at] ^= 1;
    std::fs::write(&f, &bad).unwrap();
    let dst = tempfile::tempdir().unwrap();
    let s2 = Store::open(dst.path()).unwrap();
    let e = export::import(&s2, &f).unwrap_err().to_string();
    assert!(e.contains("content hash"), "{e}");
    assert_eq!(s2.documents().count(), 0);
    std::fs::write(&f, b"not an export").unwrap();
    assert!(export::import(&s2, &f).is_err());
}

// Issue 21, point 6: non-finite latents are refused at ingest, import and
// merge (all write through `DocWriter::put_raw`), and reported by `check`.
#[test]
fn non_finite_latents_are_refused_by_the_writer_and_reported_by_check() {
    use c3::chunk::Chunker;
    use c3::ingest::{ingest, IngestOptions, Input};
    let dir = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let enc = FakeCompressor::new("fp");
    let store = Store::open(dir.path()).unwrap();
    // Ingest: the file whose latents are NaN fails, the others are stored.
    std::fs::write(src.path().join("bad.txt"), "NAN_LATENT here").unwrap();
    std::fs::write(src.path().join("good.txt"), "plain text").unwrap();
    let chunker = Chunker::new(store_support::ByteSizer, 100).unwrap();
    let r = ingest(
        &store,
        &enc,
        &chunker,
        &[Input::Path(src.path().to_path_buf())],
        &IngestOptions::default(),
    )
    .unwrap();
    assert_eq!(r.failed.len(), 1, "{:?}", r.failed);
    assert!(r.failed[0].error.contains("non-finite"), "{:?}", r.failed);
    assert_eq!(store.documents().count(), 1);
    // The writer itself (import and merge copy records through it).
    let mut rec = c3::store::latent::to_record(&enc.compress(&["x"]).unwrap()[0]).unwrap();
    rec.data[4..6].copy_from_slice(&half::bf16::INFINITY.to_le_bytes());
    let chunk = c3::store::ChunkRecord {
        doc_id: 9,
        ordinal: 0,
        start: 0,
        end: 1,
        tokens: 1,
        text_zstd: c3::store::compress_text("x").unwrap(),
    };
    let mut w = store.begin(None).unwrap();
    let e = w.put_raw(&chunk, &rec).unwrap_err();
    assert!(matches!(e, c3::Error::NonFinite { index: 2, .. }), "{e}");
    drop(w);
    assert!(store.check().unwrap().ok());
    drop(store);
    // A NaN that got into the database some other way: check names it.
    {
        let db = c3_migrations::open_db(dir.path()).unwrap();
        let t = db.open_tree("latents").unwrap();
        let (k, v) = t.iter().next().unwrap().unwrap();
        let mut bad: c3::store::LatentRecord =
            rkyv::from_bytes::<_, rkyv::rancor::Error>(&aligned(&v[..v.len() - 8])).unwrap();
        bad.data[0..2].copy_from_slice(&half::bf16::NAN.to_le_bytes());
        let mut value = rkyv::to_bytes::<rkyv::rancor::Error>(&bad)
            .unwrap()
            .to_vec();
        let sum = xxhash_rust::xxh3::xxh3_64(&value).to_le_bytes();
        value.extend_from_slice(&sum);
        t.insert(k, value).unwrap();
        db.flush().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let r = store.check().unwrap();
    assert!(
        r.problems.iter().any(|p| p.contains("non-finite")),
        "{:?}",
        r.problems
    );
    assert!(store.doc_latents(0).is_err());
}

fn aligned(b: &[u8]) -> rkyv::util::AlignedVec {
    let mut v = rkyv::util::AlignedVec::<16>::new();
    v.extend_from_slice(b);
    v
}
