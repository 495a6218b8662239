//! The TUI over a store made with the tiny LCLM model: the header names
//! the family and counts each chunk's own latents, and the heatmap shows as
//! many rows as the chunk has latents.

mod support;

use c3::cascade::lclm::{LclmCheckpoint, LclmEncoder};
use c3::chunk::Chunker;
use c3::ingest::{ingest, IngestOptions, Input};
use c3::store::Store;
use c3_tui::app::{App, ModelState};
use c3_tui::data::StoreView;
use candle_core::{DType, Device};
use std::sync::Arc;
use support::*;

#[test]
fn header_and_heatmap_of_an_lclm_store() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    let files = write_docs(&docs);
    let ckpt = LclmCheckpoint::open(&fixtures().join("golden-lclm/lclm-tiny-4x")).unwrap();
    let enc = LclmEncoder::load(&ckpt, DType::F32, &Device::Cpu, None).unwrap();
    let chunker = Chunker::new(enc.tokenizer(), CHUNK_TOKENS).unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let inputs: Vec<Input> = files.into_iter().map(Input::Path).collect();
    let report = ingest(&store, &enc, &chunker, &inputs, &IngestOptions::default()).unwrap();
    assert!(report.ok(), "{:?}", report.failed);
    let mut want_rows = 0u64;
    for d in store.documents() {
        let d = d.unwrap();
        for ord in 0..d.chunk_count {
            want_rows += (store.chunk_record(d.id, ord).unwrap().tokens as u64).div_ceil(4);
        }
    }

    let mut app = App::new(
        StoreView::from_store(Arc::new(store)),
        ModelState::Absent,
        None,
    );
    select_doc(&mut app, "english.txt");
    let s = screen(&render(&mut app, 140, 44));
    assert!(s.contains("LCLM 4x"), "{s}");
    let st = &app.view.header.stats;
    assert_eq!(st.latent_tokens, want_rows);
    assert!(
        s.contains(&format!("{} latent tokens", st.latent_tokens)),
        "{s}"
    );
    assert!(st.latent_tokens < st.chunks * 256, "rows follow the tokens");
    let chunk = app.selected_chunk().unwrap().clone();
    let m = app.latent.clone().expect("latents of the chunk");
    assert_eq!(m.rows, (chunk.tokens as usize).div_ceil(4));
    assert!(
        s.contains(&format!("Latents · {} rows × 16 dims", m.rows)),
        "{s}"
    );
}
