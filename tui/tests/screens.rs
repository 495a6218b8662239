//! Snapshot tests: each screen rendered with ratatui's `TestBackend` from a
//! store built with the golden model, asserting on the rendered cells.

mod support;

use c3_tui::app::{App, Focus, ModelState, Recon, NEEDS_MODEL};
use c3_tui::data::StoreView;
use c3_tui::heat::{bin, diverging};
use c3_tui::ui::text::{ADDED, LOST};
use ratatui::crossterm::event::KeyCode;
use ratatui::style::Color;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use support::*;

#[test]
fn documents_list_and_header() {
    let mut app = browse_app();
    let buf = render(&mut app, 140, 44);
    let s = screen(&buf);
    let st = &app.view.header.stats;
    assert_eq!(st.documents, 3);
    assert!(s.contains("3 documents"), "{s}");
    assert!(s.contains(&format!("{} chunks", st.chunks)), "{s}");
    assert!(
        s.contains(&format!("{} latent tokens", st.chunks * 32)),
        "{s}"
    );
    assert!(
        s.contains(&format!("{:.1}x compression", st.compression_ratio)),
        "{s}"
    );
    assert!(s.contains("on disk"), "{s}");
    let fp = app.view.header.fingerprint.clone().unwrap();
    assert!(s.contains(&format!("model {}", &fp[..12])), "{s}");
    assert!(s.contains("browse only: no --model"), "{s}");
    assert!(s.contains("Documents 3/3"), "{s}");
    // sorted by source; the first is selected and marked
    let (x, y) = find(&buf, "▶ alice.txt").expect("selected alice");
    assert!(buf[(x + 2, y)]
        .modifier
        .contains(ratatui::style::Modifier::REVERSED));
    assert!(find(&buf, "code.txt").is_some() && find(&buf, "english.txt").is_some());
    // chunk table of the selected document
    assert!(s.contains("Chunks of alice.txt"), "{s}");
    let first = &app.chunks[0];
    let row = format!("{:>4} {}..{}", first.ordinal, first.start, first.end);
    assert!(s.contains(&row), "missing {row:?} in\n{s}");
    assert!(app.chunks.len() > 1, "alice must span several chunks");
    assert!(app.chunks.iter().all(|c| c.tokens as usize <= CHUNK_TOKENS));
}

#[test]
fn filter_narrows_the_document_list() {
    let mut app = browse_app();
    key(&mut app, KeyCode::Char('/'));
    type_str(&mut app, "ENGL");
    let s = screen(&render(&mut app, 120, 40));
    assert!(s.contains("Documents 1/3 /ENGL"), "{s}");
    assert!(s.contains("english.txt") && !s.contains("alice.txt"), "{s}");
    assert!(s.contains("filter: ENGL"), "{s}");
    key(&mut app, KeyCode::Enter);
    assert!(!app.filter_editing);
    // no match, then Esc clears
    key(&mut app, KeyCode::Char('/'));
    type_str(&mut app, "zzz");
    let s = screen(&render(&mut app, 120, 40));
    assert!(s.contains("No document matches"), "{s}");
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.visible.len(), 3);
}

#[test]
fn chunk_text_of_the_selected_chunk() {
    let mut app = browse_app();
    select_doc(&mut app, "alice.txt");
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.focus, Focus::Chunks);
    key(&mut app, KeyCode::Down);
    let ch = app.selected_chunk().unwrap().clone();
    assert_eq!(ch.ordinal, 1);
    let doc = std::fs::read_to_string(fixtures().join("corpus/alice-in-wonderland.txt")).unwrap();
    let expected = &doc[ch.start as usize..ch.end as usize];
    assert_eq!(app.chunk_text, expected);
    let buf = render(&mut app, 140, 44);
    let s = screen(&buf);
    let title = format!(
        "Chunk 1 · bytes {}..{} · {} tokens",
        ch.start, ch.end, ch.tokens
    );
    assert!(s.contains(&title), "{s}");
    // the first words of the chunk are on screen
    let first_words: Vec<&str> = expected.split_whitespace().take(3).collect();
    assert!(
        s.contains(&first_words.join(" ")),
        "{first_words:?} not in\n{s}"
    );
    // the selected chunk row is highlighted
    let (x, y) = find(&buf, &format!("{:>4} {}..", 1, ch.start)).unwrap();
    assert!(buf[(x, y)]
        .modifier
        .contains(ratatui::style::Modifier::REVERSED));
}

#[test]
fn latent_heatmap_cells_follow_the_latents() {
    let mut app = browse_app();
    select_doc(&mut app, "english.txt");
    let m = app.latent.clone().expect("latents of the first chunk");
    assert_eq!((m.rows, m.dims), (32, 16));
    let (w, h) = (140u16, 44u16);
    let buf = render(&mut app, w, h);
    let s = screen(&buf);
    assert!(s.contains("Latents · 32 rows × 16 dims"), "{s}");
    let lo = m.norms.iter().cloned().fold(f32::INFINITY, f32::min);
    let hi = m.norms.iter().cloned().fold(0.0f32, f32::max);
    let legend = format!("blue < 0 < red · ‖n row norms {lo:.2}..{hi:.2}");
    assert!(s.contains(&legend), "{legend} not in\n{s}");
    // locate the heatmap: the line labelled " 0" right after the gutter
    let (title_x, title_y) = find(&buf, "Latents ·").unwrap();
    let inner_x = title_x - 2 + 1; // title starts after "┌ "
    let heat_x = inner_x + 3;
    let heat_y = title_y + 1;
    let heat_w = {
        let mut x = heat_x;
        while buf[(x, heat_y)].symbol() == "▀" {
            x += 1;
        }
        x - heat_x
    };
    assert!(heat_w > 16, "heatmap spans the pane (got {heat_w})");
    // 32 rows in 16 half-block lines, each cell coloured by its block means
    for line in 0..16u16 {
        for x in [0, heat_w / 2, heat_w - 1] {
            let cell = &buf[(heat_x + x, heat_y + line)];
            assert_eq!(cell.symbol(), "▀");
            let cols = bin(x as usize, heat_w as usize, m.dims);
            let top = m.block_mean(2 * line as usize..2 * line as usize + 1, cols.clone());
            let bottom = m.block_mean(2 * line as usize + 1..2 * line as usize + 2, cols);
            assert_eq!(cell.fg, diverging(top, m.scale), "line {line} x {x}");
            assert_eq!(cell.bg, diverging(bottom, m.scale), "line {line} x {x}");
        }
    }
    // row labels, the sparkline (one bar per row, tallest for the largest norm)
    assert_eq!(buf[(inner_x + 1, heat_y)].symbol(), "0");
    let spark_y = heat_y + 16;
    let bars: String = (0..heat_w)
        .map(|x| buf[(heat_x + x, spark_y)].symbol())
        .collect();
    assert!(bars.chars().all(|c| "▁▂▃▄▅▆▇█".contains(c)), "{bars}");
    let argmax = m
        .norms
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0;
    let x = (0..heat_w as usize)
        .find(|&x| bin(x, heat_w as usize, 32).contains(&argmax))
        .unwrap();
    assert_eq!(buf[(heat_x + x as u16, spark_y)].symbol(), "█");
    // the legend's gradient runs from blue to red
    let (lx, ly) = find(&buf, &format!("-{:.2} ", m.scale)).unwrap();
    let start = lx + format!("-{:.2} ", m.scale).chars().count() as u16;
    assert_eq!(buf[(start, ly)].bg, diverging(-1.0, 1.0));
    assert!(matches!(buf[(start + 12, ly)].bg, Color::Rgb(..)));
}

fn finished_recon(app: &mut App, text: &str) {
    let doc = app.selected_doc().unwrap().id;
    let ch = app.selected_chunk().unwrap().ordinal;
    let mut r = Recon {
        job: 99,
        doc,
        ordinal: ch,
        original: app.chunk_text.clone(),
        text: String::new(),
        running: false,
        cancel: Arc::new(AtomicBool::new(false)),
        cancelled: false,
        error: None,
        fidelity: None,
        diff: None,
    };
    r.finish(text.to_string());
    app.recon = Some(r);
}

#[test]
fn reconstruction_view_beside_the_original() {
    let mut app = browse_app();
    select_doc(&mut app, "english.txt");
    // A reconstruction that loses one word and swaps another.
    let original = app.chunk_text.clone();
    let mut words: Vec<&str> = original.split_whitespace().collect();
    let lost = words.remove(1).to_string();
    words[3] = "ZEBRA";
    let pred = words.join(" ");
    finished_recon(&mut app, &pred);
    let f = app.recon.as_ref().unwrap().fidelity.unwrap();
    assert!(f.precision < 1.0 && f.precision > 0.8, "{f:?}");
    let buf = render(&mut app, 160, 44);
    let s = screen(&buf);
    assert!(s.contains("Original · chunk 0 · 2 words lost"), "{s}");
    let numbers = format!(
        "precision {:.1}% · edit similarity {:.1}%",
        f.precision * 100.0,
        f.edit_similarity * 100.0
    );
    assert!(s.contains(&numbers), "{numbers} not in\n{s}");
    assert!(s.contains("Reconstruction · 1 words added"), "{s}");
    // the lost word is marked in the original, the new word in the reconstruction
    let (ox, _) = find(&buf, "Original ·").unwrap();
    let (rx, _) = find(&buf, "Reconstruction").unwrap();
    let mut lost_marked = false;
    let mut added_marked = false;
    for (y, line) in lines(&buf).iter().enumerate() {
        if let Some(i) = line.find(&lost) {
            let x = ratatui::text::Span::raw(&line[..i]).width() as u16;
            if x > ox && x < rx && buf[(x, y as u16)].bg == LOST.bg.unwrap() {
                lost_marked = true;
            }
        }
        if let Some(i) = line.find("ZEBRA") {
            let x = ratatui::text::Span::raw(&line[..i]).width() as u16;
            assert!(x > rx, "ZEBRA only in the reconstruction pane");
            assert_eq!(buf[(x, y as u16)].bg, ADDED.bg.unwrap());
            added_marked = true;
        }
    }
    assert!(lost_marked && added_marked, "{s}");
    // an unchanged word is not marked
    let (x, y) = find(&buf, original.split_whitespace().next().unwrap()).unwrap();
    assert_ne!(buf[(x, y)].bg, LOST.bg.unwrap());
    // Esc closes the comparison
    key(&mut app, KeyCode::Esc);
    assert!(app.recon.is_none());
}

#[test]
fn help_overlay_lists_every_key() {
    let mut app = browse_app();
    key(&mut app, KeyCode::Char('?'));
    let s = screen(&render(&mut app, 140, 44));
    assert!(s.contains("Help · any key closes"), "{s}");
    for (k, what) in c3_tui::input::KEYS {
        assert!(s.contains(k), "{k} missing\n{s}");
        assert!(s.contains(what), "{what} missing\n{s}");
    }
    assert!(s.contains(NEEDS_MODEL), "{s}");
    key(&mut app, KeyCode::Char('x'));
    assert!(!app.help);
}

#[test]
fn without_a_model_r_and_a_say_they_need_one() {
    let mut app = browse_app();
    key(&mut app, KeyCode::Char('r'));
    assert!(app.recon.is_none());
    let s = screen(&render(&mut app, 140, 44));
    assert!(s.contains(NEEDS_MODEL), "{s}");
    key(&mut app, KeyCode::Char('a'));
    type_str(&mut app, "who?");
    key(&mut app, KeyCode::Enter);
    let ask = app.ask.as_ref().unwrap();
    assert!(!ask.running && ask.job.is_none());
}

#[test]
fn empty_store() {
    let dir = tempfile::tempdir().unwrap();
    c3::store::Store::open(dir.path()).unwrap();
    let mut app = App::new(StoreView::open(dir.path()), ModelState::Absent, None);
    let s = screen(&render(&mut app, 100, 30));
    assert!(s.contains("The store is empty"), "{s}");
    assert!(s.contains("0 documents · 0 chunks"), "{s}");
    assert!(s.contains("model none yet"), "{s}");
    for k in [
        KeyCode::Down,
        KeyCode::Tab,
        KeyCode::Enter,
        KeyCode::Char('r'),
        KeyCode::End,
    ] {
        key(&mut app, k);
    }
    render(&mut app, 100, 30);
}

#[test]
fn missing_store_is_reported_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let mut app = App::new(StoreView::open(&missing), ModelState::Absent, None);
    let s = screen(&render(&mut app, 120, 30));
    assert!(s.contains("No store to browse"), "{s}");
    assert!(s.contains("no store at"), "{s}");
    assert!(!missing.exists());
}

#[test]
fn tiny_terminals_and_resizes_do_not_crash() {
    let mut app = browse_app();
    select_doc(&mut app, "alice.txt");
    let mut term = ratatui::Terminal::new(ratatui::backend::TestBackend::new(1, 1)).unwrap();
    let sizes = [
        (1, 1),
        (1, 40),
        (40, 1),
        (2, 2),
        (7, 5),
        (30, 12),
        (200, 3),
        (3, 200),
        (140, 44),
    ];
    let text = app.chunk_text.clone();
    for mode in 0..5 {
        app.help = mode == 1;
        app.ask = (mode == 2).then(|| c3_tui::app::Ask {
            editing: true,
            input: "why?".into(),
            answer: "because".into(),
            chunks: vec![0, 1],
            ..Default::default()
        });
        if mode == 3 {
            finished_recon(&mut app, &text);
        }
        app.filter_editing = mode == 4;
        for &(w, h) in &sizes {
            term.backend_mut().resize(w, h);
            term.autoresize().unwrap();
            term.draw(|f| c3_tui::ui::draw(f, &mut app)).unwrap();
        }
    }
}

#[test]
fn a_streaming_reconstruction_keeps_its_newest_text_in_view() {
    let mut app = browse_app();
    select_doc(&mut app, "english.txt");
    finished_recon(&mut app, "");
    let r = app.recon.as_mut().unwrap();
    r.running = true;
    r.fidelity = None;
    r.diff = None;
    r.text = (0..300).map(|i| format!("piece{i}\n")).collect();
    let s = screen(&render(&mut app, 140, 44));
    assert!(s.contains("Reconstructing · "), "{s}");
    assert!(s.contains("piece299"), "{s}");
    assert!(!s.contains("piece0\n") && !s.contains("piece0 "), "{s}");
    // once finished, the pane is back at the top
    let text = app.recon.as_ref().unwrap().text.clone();
    app.recon.as_mut().unwrap().finish(text);
    let s = screen(&render(&mut app, 140, 44));
    assert!(s.contains("piece0 ") && !s.contains("piece299"), "{s}");
}

#[test]
fn a_model_other_than_the_stores_is_refused() {
    let mut app = browse_app();
    app.model = ModelState::Loading;
    app.apply(c3_tui::jobs::Event::ModelReady {
        fingerprint: "0123456789abcdef".into(),
    });
    let s = screen(&render(&mut app, 140, 44));
    assert!(s.contains("loaded, MISMATCH"), "{s}");
    assert!(s.contains("not the one the store was built with"), "{s}");
    app.message = None;
    key(&mut app, KeyCode::Char('r'));
    assert!(app.recon.is_none());
    assert!(app.message.as_deref().unwrap().contains("not the one"));
}

// Issue 21, point 9: a document whose name held an escape sequence cleared
// and garbled the screen. Before the fix the ESC characters reached the
// rendered cells (and from there the terminal).
#[test]
fn control_characters_in_names_and_texts_never_reach_the_terminal() {
    use c3::cascade::c3::{C3Checkpoint, C3Encoder};
    use c3::chunk::Chunker;
    use c3::ingest::{ingest, IngestOptions, Input};
    use candle_core::{DType, Device};

    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("evil\x1b[2J\x1b]0;pwned\x07.txt");
    std::fs::write(
        &file,
        "A line \x1b[31min red\x1b[0m and a \x1b[2J screen clear.\n",
    )
    .unwrap();
    let ckpt = C3Checkpoint::open(&golden_model()).unwrap();
    let enc = C3Encoder::load(&ckpt, DType::F32, &Device::Cpu).unwrap();
    let chunker = Chunker::new(enc.tokenizer(), CHUNK_TOKENS).unwrap();
    let store = c3::store::Store::open(&tmp.path().join("store")).unwrap();
    let report = ingest(
        &store,
        &enc,
        &chunker,
        &[Input::Path(file)],
        &IngestOptions::default(),
    )
    .unwrap();
    assert!(report.ok(), "{:?}", report.failed);
    let mut app = App::new(
        StoreView::from_store(Arc::new(store)),
        ModelState::Absent,
        None,
    );
    app.select_doc(0);
    key(&mut app, KeyCode::Enter);
    let buf = render(&mut app, 140, 44);
    let a = buf.area;
    for y in a.y..a.bottom() {
        for x in a.x..a.right() {
            let sym = buf[(x, y)].symbol();
            assert!(
                !sym.chars().any(char::is_control),
                "cell ({x}, {y}) holds {sym:?}"
            );
        }
    }
    let s = screen(&buf);
    assert!(s.contains("evil\\u{1b}[2J\\u{1b}]0;pwned\\u{7}.txt"), "{s}");
    assert!(s.contains("\\u{1b}[31min"), "{s}");
}
