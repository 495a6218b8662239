//! The chunk list of the selected document: ordinal, byte range, tokens.

use super::util::{focused, name, pane};
use crate::app::{App, Focus};
use crate::data::short_source;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Cell, Row, Table, TableState};
use ratatui::Frame;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let title = match app.selected_doc() {
        Some(d) => format!(
            " Chunks of {} ({}) ",
            name(short_source(&d.source)),
            app.chunks.len()
        ),
        None => " Chunks ".into(),
    };
    let block = pane(title, focused(app, Focus::Chunks));
    let header = Row::new(["#", "bytes", "tokens"].map(Cell::from)).style(
        Style::default()
            .fg(Color::DarkGray)
            .add_modifier(Modifier::UNDERLINED),
    );
    let rows = app.chunks.iter().map(|c| {
        Row::new([
            Cell::from(format!("{:>4}", c.ordinal)),
            Cell::from(format!("{}..{}", c.start, c.end)),
            Cell::from(format!("{:>6}", c.tokens)),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(4),
            Constraint::Min(6),
            Constraint::Length(6),
        ],
    )
    .header(header)
    .block(block)
    .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let mut state =
        TableState::default().with_selected((!app.chunks.is_empty()).then_some(app.chunk_sel));
    frame.render_stateful_widget(table, area, &mut state);
}
