//! The document list (with the `/` filter in its title).

use super::util::{focused, name, pane, thousands};
use crate::app::{App, Focus};
use crate::data::short_source;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{List, ListItem, ListState, Paragraph, Wrap};
use ratatui::Frame;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let mut title = format!(" Documents {}/{} ", app.visible.len(), app.view.docs.len());
    if !app.filter.is_empty() || app.filter_editing {
        title.push_str(&format!("/{} ", name(&app.filter)));
    }
    let block = pane(title, focused(app, Focus::Documents));
    if app.visible.is_empty() {
        let msg = if app.view.problem.is_some() {
            "No store to browse.\nCreate one with: c3 ingest PATH (or pass --store DIR)"
        } else if app.view.docs.is_empty() {
            "The store is empty.\nAdd documents with: c3 ingest PATH"
        } else {
            "No document matches the filter (Esc clears it)."
        };
        let p = Paragraph::new(msg)
            .style(Style::default().fg(Color::DarkGray))
            .wrap(Wrap { trim: true })
            .block(block);
        frame.render_widget(p, area);
        return;
    }
    let items: Vec<ListItem> = app
        .visible
        .iter()
        .map(|&i| {
            let d = &app.view.docs[i];
            ListItem::new(Line::from(vec![
                Span::raw(name(short_source(&d.source))),
                Span::styled(
                    format!("  {} ch · {} tok", d.chunk_count, thousands(d.token_count)),
                    Style::default().fg(Color::DarkGray),
                ),
            ]))
        })
        .collect();
    let list = List::new(items)
        .block(block)
        .highlight_symbol("▶ ")
        .highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let mut state = ListState::default().with_selected(Some(app.doc_sel));
    frame.render_stateful_widget(list, area, &mut state);
}
