//! Shared by the TUI tests: a store built with the golden tiny model, and
//! helpers to render the app into a `TestBackend` and read cells back.
#![allow(dead_code)]

use c3::cascade::c3::C3Checkpoint;
use c3::cascade::c3::C3Encoder;
use c3::chunk::Chunker;
use c3::ingest::{ingest, IngestOptions, Input};
use c3::store::Store;
use c3_tui::app::{App, ModelState};
use c3_tui::data::StoreView;
use candle_core::{DType, Device};
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

pub fn golden_model() -> PathBuf {
    fixtures().join("golden/c3-tiny")
}

/// The first `n` bytes of Alice (cut at a line end), as a document.
pub const ALICE_BYTES: usize = 6000;
pub const CHUNK_TOKENS: usize = 300;

/// Writes the test documents into `dir`: a slice of Alice and two golden texts.
pub fn write_docs(dir: &Path) -> Vec<PathBuf> {
    let alice = std::fs::read_to_string(fixtures().join("corpus/alice-in-wonderland.txt")).unwrap();
    let cut = alice[..ALICE_BYTES].rfind('\n').unwrap();
    let mut out = vec![dir.join("alice.txt")];
    std::fs::write(&out[0], &alice[..cut]).unwrap();
    for name in ["english.txt", "code.txt"] {
        let p = dir.join(name);
        std::fs::copy(fixtures().join("golden/texts").join(name), &p).unwrap();
        out.push(p);
    }
    out
}

/// Ingests the test documents into a new store in `dir` with the golden model.
pub fn build_store(dir: &Path) -> Store {
    let docs = dir.join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    let files = write_docs(&docs);
    let ckpt = C3Checkpoint::open(&golden_model()).unwrap();
    let enc = C3Encoder::load(&ckpt, DType::F32, &Device::Cpu).unwrap();
    let chunker = Chunker::new(enc.tokenizer(), CHUNK_TOKENS).unwrap();
    let store = Store::open(&dir.join("store")).unwrap();
    let inputs: Vec<Input> = files.into_iter().map(Input::Path).collect();
    let report = ingest(&store, &enc, &chunker, &inputs, &IngestOptions::default()).unwrap();
    assert!(report.ok(), "{:?}", report.failed);
    assert_eq!(report.added, 3);
    store
}

/// One store for all tests of a test binary (sled allows one opener).
pub fn shared_store() -> Arc<Store> {
    static STORE: OnceLock<(tempfile::TempDir, Arc<Store>)> = OnceLock::new();
    STORE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let store = Arc::new(build_store(dir.path()));
            (dir, store)
        })
        .1
        .clone()
}

/// A browsing app (no model) over the shared store.
pub fn browse_app() -> App {
    App::new(
        StoreView::from_store(shared_store()),
        ModelState::Absent,
        None,
    )
}

pub fn render(app: &mut App, w: u16, h: u16) -> Buffer {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| c3_tui::ui::draw(f, app)).unwrap();
    term.backend().buffer().clone()
}

/// The rendered screen as lines of text.
pub fn lines(buf: &Buffer) -> Vec<String> {
    let a = buf.area;
    (a.y..a.bottom())
        .map(|y| {
            let mut s = String::new();
            let mut skip = 0;
            for x in a.x..a.right() {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                let sym = buf[(x, y)].symbol();
                s.push_str(sym);
                skip = unicode_width(sym).saturating_sub(1);
            }
            s
        })
        .collect()
}

fn unicode_width(s: &str) -> usize {
    use ratatui::text::Span;
    Span::raw(s).width().max(1)
}

pub fn screen(buf: &Buffer) -> String {
    lines(buf).join("\n")
}

/// Position of the first occurrence of `needle` on screen (column in cells).
pub fn find(buf: &Buffer, needle: &str) -> Option<(u16, u16)> {
    for (y, line) in lines(buf).iter().enumerate() {
        if let Some(i) = line.find(needle) {
            let col = ratatui::text::Span::raw(&line[..i]).width();
            return Some((buf.area.x + col as u16, buf.area.y + y as u16));
        }
    }
    None
}

pub fn key(app: &mut App, code: KeyCode) {
    c3_tui::input::handle_key(app, KeyEvent::new(code, KeyModifiers::NONE));
}

pub fn type_str(app: &mut App, s: &str) {
    for c in s.chars() {
        key(app, KeyCode::Char(c));
    }
}

/// Selects the document whose source ends with `name`.
pub fn select_doc(app: &mut App, name: &str) {
    let i = app
        .visible
        .iter()
        .position(|&i| app.view.docs[i].source.ends_with(name))
        .unwrap_or_else(|| panic!("no document {name}"));
    app.select_doc(i);
}
