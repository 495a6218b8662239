//! Keyboard handling: maps keys to changes of the [`App`], by mode (help
//! overlay, filter entry, ask entry, browsing).

use crate::app::{App, Ask, Focus};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

pub fn handle_key(app: &mut App, key: KeyEvent) {
    if key.kind == KeyEventKind::Release {
        return;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('q')) {
        app.quit = true;
        return;
    }
    if app.help {
        match key.code {
            KeyCode::Char('q') => app.quit = true,
            _ => app.help = false,
        }
        return;
    }
    if app.filter_editing {
        filter_key(app, key);
        return;
    }
    if app.ask.as_ref().is_some_and(|a| a.editing) {
        ask_key(app, key);
        return;
    }
    browse_key(app, key);
}

fn filter_key(app: &mut App, key: KeyEvent) {
    match key.code {
        KeyCode::Enter => app.filter_editing = false,
        KeyCode::Esc => {
            app.filter_editing = false;
            app.filter.clear();
            app.refilter();
        }
        KeyCode::Backspace => {
            app.filter.pop();
            app.refilter();
        }
        KeyCode::Char(c) => {
            app.filter.push(c);
            app.refilter();
        }
        _ => {}
    }
}

fn ask_key(app: &mut App, key: KeyEvent) {
    let Some(ask) = app.ask.as_mut() else { return };
    match key.code {
        KeyCode::Enter => app.submit_ask(),
        KeyCode::Esc => {
            if ask.answer.is_empty() && ask.job.is_none() {
                app.ask = None;
            } else {
                ask.editing = false;
            }
        }
        KeyCode::Backspace => {
            ask.input.pop();
        }
        KeyCode::Char(c) => ask.input.push(c),
        _ => {}
    }
}

fn browse_key(app: &mut App, key: KeyEvent) {
    let page = 10;
    match key.code {
        KeyCode::Char('q') => app.quit = true,
        KeyCode::Char('?') => app.help = true,
        KeyCode::Char('/') => {
            app.filter_editing = true;
            app.focus = Focus::Documents;
        }
        KeyCode::Char('r') => app.start_reconstruct(),
        KeyCode::Char('a') => {
            let ask = app.ask.get_or_insert_with(Ask::default);
            ask.editing = true;
        }
        KeyCode::Esc => app.escape(),
        KeyCode::Tab | KeyCode::Right | KeyCode::Char('l') => {
            app.focus = match app.focus {
                Focus::Documents => Focus::Chunks,
                Focus::Chunks => Focus::Text,
                Focus::Text if key.code == KeyCode::Tab => Focus::Documents,
                Focus::Text => Focus::Text,
            }
        }
        KeyCode::BackTab | KeyCode::Left | KeyCode::Char('h') => {
            app.focus = match app.focus {
                Focus::Documents if key.code == KeyCode::BackTab => Focus::Text,
                Focus::Documents => Focus::Documents,
                Focus::Chunks => Focus::Documents,
                Focus::Text => Focus::Chunks,
            }
        }
        KeyCode::Enter => {
            app.focus = match app.focus {
                Focus::Documents => Focus::Chunks,
                _ => Focus::Text,
            }
        }
        KeyCode::Down | KeyCode::Char('j') => app.move_by(1),
        KeyCode::Up | KeyCode::Char('k') => app.move_by(-1),
        KeyCode::PageDown => app.move_by(page),
        KeyCode::PageUp => app.move_by(-page),
        KeyCode::Home | KeyCode::Char('g') => app.move_to_end(false),
        KeyCode::End | KeyCode::Char('G') => app.move_to_end(true),
        _ => {}
    }
}

/// Every key, for the help overlay (key, what it does).
pub const KEYS: &[(&str, &str)] = &[
    ("↑ ↓  j k", "move in the focused pane (scroll the text)"),
    ("PgUp PgDn", "move by 10"),
    ("Home End  g G", "first / last"),
    ("Tab  Shift-Tab", "next / previous pane"),
    ("← →  h l", "previous / next pane"),
    ("Enter", "open: documents → chunks → text"),
    ("/", "filter documents (Enter keeps, Esc clears)"),
    (
        "r",
        "reconstruct the chunk from its latents (needs --model)",
    ),
    ("a", "ask a question about the document (needs --model)"),
    ("Esc", "cancel the running job, else close the open view"),
    ("?", "this help (any key closes)"),
    ("q  Ctrl-C", "quit"),
];
