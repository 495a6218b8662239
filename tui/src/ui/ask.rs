//! The `a` box: the question being typed, then the streamed answer and the
//! chunks it read.

use super::util::{name, spinner, text};
use crate::app::App;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let Some(ask) = &app.ask else { return };
    frame.render_widget(Clear, area);
    let title = if ask.running {
        format!(" {} Ask · answering · Esc cancels ", spinner(app.tick))
    } else {
        " Ask · Enter sends · Esc closes ".into()
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Rounded)
        .border_style(Style::default().fg(Color::Cyan))
        .title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [input, used, answer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(2),
        Constraint::Min(0),
    ])
    .areas(inner);
    let prompt = if ask.editing {
        Line::styled(
            format!("? {}▏", name(&ask.input)),
            Style::default().fg(Color::Yellow),
        )
    } else {
        Line::raw(format!("? {}   (a asks again)", name(&ask.question)))
    };
    frame.render_widget(Paragraph::new(prompt), input);
    let used_text = if ask.chunks.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = ask.chunks.iter().map(|c| format!("#{c}")).collect();
        {
            let left_out = if ask.dropped > 0 {
                format!(", {} left out by the position budget", ask.dropped)
            } else {
                String::new()
            };
            format!(
                "chunks used ({} of {}{left_out}): {}",
                ask.chunks.len(),
                name(&ask.doc_label),
                list.join(" ")
            )
        }
    };
    frame.render_widget(
        Paragraph::new(used_text)
            .style(Style::default().fg(Color::DarkGray))
            .wrap(Wrap { trim: true }),
        used,
    );
    let body = if let Some(e) = &ask.error {
        ratatui::text::Text::styled(
            format!("failed: {}", text(e)),
            Style::default().fg(Color::Red),
        )
    } else if ask.cancelled {
        ratatui::text::Text::from(format!("{}\n[cancelled]", text(&ask.answer)))
    } else {
        ratatui::text::Text::from(text(&ask.answer))
    };
    frame.render_widget(Paragraph::new(body).wrap(Wrap { trim: false }), answer);
}
