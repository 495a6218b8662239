//! The header: store path, model, and the store's totals.

use super::util::{human_bytes, name, spinner, thousands};
use crate::app::{App, ModelState};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let h = &app.view.header;
    let label = Style::default().fg(Color::DarkGray);
    let value = Style::default().add_modifier(Modifier::BOLD);
    // LCLM fingerprints lead with the family and ratio (`lclm/r4/w1024/…`);
    // C3 ones are bare hex.
    let (fp, family) = match &h.fingerprint {
        Some(f) => match f.rsplit_once('/') {
            Some((kind, hex)) => {
                let ratio = kind.trim_start_matches("lclm/r").split('/').next();
                (
                    name(super::util::head(hex, 12)),
                    format!(" LCLM {}x", name(ratio.unwrap_or("?"))),
                )
            }
            None => (name(super::util::head(f, 12)), " C3".to_string()),
        },
        None => ("none yet".into(), String::new()),
    };
    let model = match &app.model {
        ModelState::Absent => Span::styled(
            "browse only: no --model",
            Style::default().fg(Color::Yellow),
        ),
        ModelState::Loading => Span::raw(format!("{} loading", spinner(app.tick))),
        ModelState::Ready { fingerprint }
            if h.fingerprint.as_ref().is_some_and(|f| f != fingerprint) =>
        {
            Span::styled("loaded, MISMATCH", Style::default().fg(Color::Red))
        }
        ModelState::Ready { .. } => Span::styled("loaded", Style::default().fg(Color::Green)),
        ModelState::Failed(_) => Span::styled("failed to load", Style::default().fg(Color::Red)),
    };
    let line1 = Line::from(vec![
        Span::styled("store ", label),
        Span::styled(name(&h.store_dir.display().to_string()), value),
        Span::styled("  model ", label),
        Span::styled(fp, value),
        Span::styled(family, value),
        Span::styled(" (", label),
        model,
        Span::styled(")", label),
    ]);
    let line2 = if let Some(p) = &app.view.problem {
        Line::from(Span::styled(name(p), Style::default().fg(Color::Red)))
    } else {
        let s = &h.stats;
        let mut spans = Vec::new();
        for (i, (v, l)) in [
            (thousands(s.documents), "documents"),
            (thousands(s.chunks), "chunks"),
            (thousands(s.text_tokens), "text tokens"),
            (thousands(s.latent_tokens), "latent tokens"),
            (format!("{:.1}x", s.compression_ratio), "compression"),
            (human_bytes(s.bytes_on_disk), "on disk"),
        ]
        .into_iter()
        .enumerate()
        {
            if i > 0 {
                spans.push(Span::styled(" · ", label));
            }
            spans.push(Span::styled(v, value));
            spans.push(Span::styled(format!(" {l}"), label));
        }
        Line::from(spans)
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(Style::default().fg(Color::DarkGray))
        .title(" c3 memory ");
    frame.render_widget(Paragraph::new(vec![line1, line2]).block(block), area);
}
