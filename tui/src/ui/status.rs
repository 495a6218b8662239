//! The bottom line: the running job or the last message, and key hints.

use super::util::{name, spinner};
use crate::app::{App, ModelState};
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let mut spans = Vec::new();
    if app.filter_editing {
        spans.push(Span::styled(
            format!("filter: {}▏", name(&app.filter)),
            Style::default().fg(Color::Yellow),
        ));
        spans.push(Span::raw("  (Enter keeps, Esc clears)"));
    } else if let Some(m) = &app.message {
        spans.push(Span::styled(name(m), Style::default().fg(Color::Yellow)));
    } else if app.recon.as_ref().is_some_and(|r| r.running) {
        spans.push(Span::raw(format!(
            "{} reconstructing… Esc cancels",
            spinner(app.tick)
        )));
    } else if app.ask.as_ref().is_some_and(|a| a.running) {
        spans.push(Span::raw(format!(
            "{} answering… Esc cancels",
            spinner(app.tick)
        )));
    } else if app.model == ModelState::Loading {
        spans.push(Span::raw(format!(
            "{} loading the model…",
            spinner(app.tick)
        )));
    } else {
        spans.push(Span::styled(
            "? help  / filter  r reconstruct  a ask  q quit",
            Style::default().fg(Color::DarkGray),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
