//! `r` and `a` with the golden tiny model on the background worker: the UI
//! keeps drawing while the model works, text streams in, Esc cancels.

mod support;

use c3::kvcache::{CacheOptions, KvDtype};
use c3::options::DeviceArg;
use c3_tui::app::{App, ModelState};
use c3_tui::data::StoreView;
use c3_tui::jobs::Worker;
use candle_core::DType;
use ratatui::crossterm::event::KeyCode;
use std::time::{Duration, Instant};
use support::*;

fn model_app() -> App {
    let store = shared_store();
    // Asks go through a prefix cache of their own (it outlives the test).
    let kv = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let worker = Worker::spawn(
        golden_model(),
        DType::F32,
        None,
        DeviceArg::Cpu,
        Some(store.clone()),
        CacheOptions {
            dir: kv.path().to_path_buf(),
            max_bytes: 1 << 30,
            memory_bytes: 0,
            kv_dtype: KvDtype::Compute,
        },
    );
    let mut app = App::new(
        StoreView::from_store(store),
        ModelState::Loading,
        Some(worker),
    );
    app.max_new_tokens = Some(40);
    app
}

/// Polls the worker (rendering each round, as the event loop does) until
/// `done` holds; panics after a minute.
fn pump(app: &mut App, done: impl Fn(&App) -> bool) {
    let start = Instant::now();
    while !done(app) {
        assert!(start.elapsed() < Duration::from_secs(60), "timed out");
        app.poll_worker();
        render(app, 120, 40);
        app.tick += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn reconstruct_streams_then_scores() {
    let mut app = model_app();
    pump(&mut app, |a| a.model != ModelState::Loading);
    let ModelState::Ready { fingerprint } = &app.model else {
        panic!("{:?}", app.model)
    };
    assert_eq!(Some(fingerprint), app.view.header.fingerprint.as_ref());
    select_doc(&mut app, "english.txt");
    key(&mut app, KeyCode::Char('r'));
    assert!(app.recon.as_ref().unwrap().running);
    let s = screen(&render(&mut app, 120, 40));
    assert!(s.contains("Reconstructing"), "{s}");
    assert!(s.contains("reconstructing… Esc cancels"), "{s}");
    pump(&mut app, |a| !a.recon.as_ref().unwrap().running);
    let r = app.recon.as_ref().unwrap();
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(!r.text.is_empty());
    let f = r.fidelity.unwrap();
    // The tiny random model reconstructs nothing of the text.
    assert!(f.precision < 0.5, "{f:?}");
    let buf = render(&mut app, 160, 44);
    let s = screen(&buf);
    let numbers = format!(
        "precision {:.1}% · edit similarity {:.1}%",
        f.precision * 100.0,
        f.edit_similarity * 100.0
    );
    assert!(s.contains(&numbers), "{s}");
    assert!(s.contains("Original · chunk 0"), "{s}");
}

#[test]
fn escape_cancels_a_running_reconstruction() {
    let mut app = model_app();
    app.max_new_tokens = Some(4000);
    select_doc(&mut app, "alice.txt");
    key(&mut app, KeyCode::Char('r'));
    pump(&mut app, |a| !a.recon.as_ref().unwrap().text.is_empty());
    key(&mut app, KeyCode::Esc);
    let r = app.recon.as_ref().unwrap();
    assert!(r.cancelled && !r.running);
    let s = screen(&render(&mut app, 140, 40));
    assert!(s.contains("Reconstruction cancelled"), "{s}");
    assert!(s.contains("reconstruction cancelled"), "{s}");
    // the worker stops at the next token and takes the next job
    app.max_new_tokens = Some(8);
    key(&mut app, KeyCode::Char('r'));
    pump(&mut app, |a| !a.recon.as_ref().unwrap().running);
    assert!(app.recon.as_ref().unwrap().fidelity.is_some());
}

#[test]
fn ask_streams_an_answer_with_the_chunks_used() {
    let mut app = model_app();
    select_doc(&mut app, "alice.txt");
    let n = app.chunks.len() as u32;
    key(&mut app, KeyCode::Char('a'));
    type_str(&mut app, "Who is late?");
    let s = screen(&render(&mut app, 120, 40));
    assert!(s.contains("? Who is late?"), "{s}");
    key(&mut app, KeyCode::Enter);
    pump(&mut app, |a| !a.ask.as_ref().unwrap().running);
    let ask = app.ask.as_ref().unwrap();
    assert!(ask.error.is_none(), "{:?}", ask.error);
    assert_eq!(ask.chunks, (0..n).collect::<Vec<_>>());
    let s = screen(&render(&mut app, 120, 40));
    assert!(
        s.contains(&format!("chunks used ({n} of alice.txt): #0 #1")),
        "{s}"
    );
    assert!(s.contains("? Who is late?   (a asks again)"), "{s}");
    key(&mut app, KeyCode::Esc);
    assert!(app.ask.is_none());
}

#[test]
fn a_quantized_decoder_reconstructs_too() {
    let store = shared_store();
    let worker = Worker::spawn(
        golden_model(),
        DType::F32,
        Some(c3::model::Quant::Q8_0),
        DeviceArg::Cpu,
        Some(store.clone()),
        CacheOptions {
            dir: std::env::temp_dir().join("c3-tui-unused-kv"),
            max_bytes: 0,
            memory_bytes: 0,
            kv_dtype: KvDtype::Compute,
        },
    );
    let mut app = App::new(
        StoreView::from_store(store),
        ModelState::Loading,
        Some(worker),
    );
    app.max_new_tokens = Some(8);
    pump(&mut app, |a| a.model != ModelState::Loading);
    assert!(
        matches!(app.model, ModelState::Ready { .. }),
        "{:?}",
        app.model
    );
    key(&mut app, KeyCode::Char('r'));
    pump(&mut app, |a| !a.recon.as_ref().unwrap().running);
    let r = app.recon.as_ref().unwrap();
    assert!(r.error.is_none() && r.fidelity.is_some(), "{:?}", r.error);
}
