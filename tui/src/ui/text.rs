//! The chunk's text, and during `r` the original beside its reconstruction
//! with differing words highlighted.

use super::util::{focused, name, pane, spinner, text};
use crate::app::{App, Focus};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

/// Words of the original that the reconstruction lost.
pub const LOST: Style = Style::new()
    .fg(Color::White)
    .bg(Color::Rgb(120, 30, 30))
    .add_modifier(Modifier::UNDERLINED);
/// Words of the reconstruction that the original does not have there.
pub const ADDED: Style = Style::new()
    .fg(Color::Black)
    .bg(Color::Rgb(220, 180, 60))
    .add_modifier(Modifier::UNDERLINED);

pub fn draw_chunk(frame: &mut Frame, area: Rect, app: &App) {
    let title = match app.selected_chunk() {
        Some(c) => format!(
            " Chunk {} · bytes {}..{} · {} tokens ",
            c.ordinal, c.start, c.end, c.tokens
        ),
        None => " Chunk text ".into(),
    };
    let body = if app.selected_chunk().is_some() {
        styled_words(&app.chunk_text, None, Style::default())
    } else {
        Text::styled(
            "Select a chunk to see its text.",
            Style::default().fg(Color::DarkGray),
        )
    };
    let p = Paragraph::new(body)
        .wrap(Wrap { trim: false })
        .scroll((app.text_scroll, 0))
        .block(pane(title, focused(app, Focus::Text)));
    frame.render_widget(p, area);
}

pub fn draw_original(frame: &mut Frame, area: Rect, app: &App) {
    let Some(r) = &app.recon else { return };
    let flags = r.diff.as_ref().map(|d| d.original.as_slice());
    let title = match &r.diff {
        Some(d) => format!(
            " Original · chunk {} · {} words lost ",
            r.ordinal,
            d.changed_original()
        ),
        None => format!(" Original · chunk {} ", r.ordinal),
    };
    let p = Paragraph::new(styled_words(&r.original, flags, LOST))
        .wrap(Wrap { trim: false })
        .scroll((app.text_scroll, 0))
        .block(pane(title, focused(app, Focus::Text)));
    frame.render_widget(p, area);
}

pub fn draw_reconstruction(frame: &mut Frame, area: Rect, app: &App) {
    let Some(r) = &app.recon else { return };
    let title = if r.running {
        format!(
            " {} Reconstructing · {} chars · Esc cancels ",
            spinner(app.tick),
            r.text.chars().count()
        )
    } else if r.error.is_some() {
        " Reconstruction failed ".into()
    } else if r.cancelled {
        " Reconstruction cancelled (r restarts) ".into()
    } else if let Some(d) = &r.diff {
        format!(
            " Reconstruction · {} words added ",
            d.changed_reconstruction()
        )
    } else {
        " Reconstruction ".into()
    };
    let mut body = Text::default();
    if let Some(e) = &r.error {
        for l in text(e).lines() {
            body.push_line(Line::styled(l.to_string(), Style::default().fg(Color::Red)));
        }
    }
    if let Some(f) = &r.fidelity {
        body.push_line(Line::styled(
            format!(
                "precision {:.1}% · edit similarity {:.1}%",
                f.precision * 100.0,
                f.edit_similarity * 100.0
            ),
            Style::default().add_modifier(Modifier::BOLD),
        ));
    }
    let flags = r.diff.as_ref().map(|d| d.reconstruction.as_slice());
    body.extend(styled_words(&r.text, flags, ADDED));
    let block = pane(title, focused(app, Focus::Text));
    let inner = block.inner(area);
    let p = Paragraph::new(body).wrap(Wrap { trim: false });
    // While streaming, keep the newest text in view.
    let scroll = if r.running {
        let lines = p.line_count(inner.width);
        lines
            .saturating_sub(inner.height as usize)
            .min(u16::MAX as usize / 2) as u16
    } else {
        app.text_scroll
    };
    let p = p.scroll((scroll, 0)).block(block);
    frame.render_widget(p, area);
}

/// `text` as lines of spans, with whitespace-separated word `i` in `marked`
/// when `flags[i]` is set. Control characters are shown as `\u{…}` (a
/// document's text is data, never a command to the terminal).
pub fn styled_words<'a>(text: &'a str, flags: Option<&[bool]>, marked: Style) -> Text<'a> {
    let mut lines = Vec::new();
    let mut word = 0usize;
    for raw in text.split('\n') {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let mut spans = Vec::new();
        let mut rest = raw;
        while !rest.is_empty() {
            let ws_len = rest.len() - rest.trim_start().len();
            if ws_len > 0 {
                spans.push(Span::raw(name(&rest[..ws_len].replace('\t', "    "))));
                rest = &rest[ws_len..];
                continue;
            }
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let w = &rest[..end];
            let flagged = flags.is_some_and(|f| f.get(word).copied().unwrap_or(false));
            let w = c3::term::name(w);
            spans.push(if flagged {
                Span::styled(w, marked)
            } else {
                Span::raw(w)
            });
            word += 1;
            rest = &rest[end..];
        }
        lines.push(Line::from(spans));
    }
    Text::from(lines)
}
