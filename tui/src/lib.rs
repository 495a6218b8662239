//! c3-tui: a terminal UI over a c3 memory store.
//!
//! The pieces: [`data`] reads the store, [`app`] holds the state, [`input`]
//! maps keys to state changes, [`jobs`] runs the model on its own thread,
//! [`ui`] draws, [`terminal`] enters and restores the screen. [`run`] ties
//! them together in an event loop that never waits on the model.

pub mod app;
pub mod cli;
pub mod data;
pub mod diff;
pub mod heat;
pub mod input;
pub mod jobs;
pub mod metrics;
pub mod terminal;
pub mod ui;

use app::{App, ModelState};
use data::StoreView;
use jobs::Worker;
use ratatui::crossterm::event::{self, Event};
use std::time::Duration;

/// Builds the app for `args`: opens the store (never creating it) and starts
/// loading the model in the background when one is given.
pub fn build(args: &cli::Args) -> App {
    let dir = args.global.store_dir();
    let view = StoreView::open(&dir);
    let (model, worker) = match &args.global.model {
        None => (ModelState::Absent, None),
        Some(m) => (
            ModelState::Loading,
            Some(Worker::spawn(
                m.clone(),
                args.global.dtype.dtype(),
                args.global.decoder_quant,
                args.global.device,
                view.store.clone(),
            )),
        ),
    };
    let mut app = App::new(view, model, worker);
    app.max_new_tokens = args.max_new_tokens;
    app
}

/// With `C3_TUI_TEST_PANIC=1`, `!` panics: lets the tmux test check that
/// the terminal is restored after a panic.
fn test_panic_key(k: &event::KeyEvent) -> bool {
    k.code == event::KeyCode::Char('!')
        && std::env::var_os("C3_TUI_TEST_PANIC").is_some_and(|v| v == "1")
}

/// Runs the TUI until `q`.
pub fn run(args: &cli::Args) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        anyhow::bail!("c3-tui needs an interactive terminal (standard output is not one)");
    }
    // The library's one validation of generation settings, before the screen.
    if let Some(n) = args.max_new_tokens {
        c3::generate::GenRequest {
            max_new_tokens: Some(n),
            ..Default::default()
        }
        .options(n)
        .map_err(|e| match e {
            c3::Error::GenSetting {
                knob,
                value,
                expected,
            } => anyhow::anyhow!("{} {value}: {expected}", knob.flag()),
            e => e.into(),
        })?;
    }
    let mut app = build(args);
    let mut guard = terminal::Guard::enter()?;
    while !app.quit {
        app.poll_worker();
        guard.term.draw(|f| ui::draw(f, &mut app))?;
        let wait = if app.busy() {
            Duration::from_millis(80)
        } else {
            Duration::from_millis(250)
        };
        if event::poll(wait)? {
            // Handle everything queued before redrawing (fast key repeat).
            loop {
                match event::read()? {
                    Event::Key(k) if test_panic_key(&k) => panic!("test panic requested"),
                    Event::Key(k) => input::handle_key(&mut app, k),
                    Event::Resize(_, _) => {}
                    _ => {}
                }
                if app.quit || !event::poll(Duration::ZERO)? {
                    break;
                }
            }
        }
        app.tick = app.tick.wrapping_add(1);
    }
    // Stop a running job promptly; the worker thread ends with the process.
    app.escape();
    Ok(())
}
