//! Drawing: the layout of the main screen and its overlays. Each pane has
//! its own module; all of them read the [`App`] and never change it (apart
//! from list scroll offsets).

mod ask;
mod chunks;
mod docs;
mod header;
mod help;
mod latent;
mod status;
pub mod text;
pub mod util;

use crate::app::App;
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::Frame;

/// Rows the latent pane wants: 16 heatmap lines (two latent rows each), the
/// norm sparkline, the legend and the borders.
const LATENT_HEIGHT: u16 = 16 + 2 + 2;

pub fn draw(frame: &mut Frame, app: &mut App) {
    let area = frame.area();
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    header::draw(frame, head, app);
    status::draw(frame, foot, app);
    draw_body(frame, body, app);
    if app.ask.is_some() {
        ask::draw(frame, util::centered(area, 80, 70), app);
    }
    if app.help {
        help::draw(frame, util::centered(area, 70, 80), app);
    }
}

fn draw_body(frame: &mut Frame, body: Rect, app: &mut App) {
    let left_w = (body.width / 3).clamp(body.width.min(24), 44);
    let [left, right] =
        Layout::horizontal([Constraint::Length(left_w), Constraint::Min(0)]).areas(body);
    let [doc_area, chunk_area] =
        Layout::vertical([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(left);
    docs::draw(frame, doc_area, app);
    chunks::draw(frame, chunk_area, app);

    // Full height while the text keeps a dozen lines, else half the body.
    let latent_h = if body.height >= LATENT_HEIGHT + 12 {
        LATENT_HEIGHT
    } else {
        body.height / 2
    };
    let [text_area, latent_area] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(latent_h)]).areas(right);
    if app.recon.is_some() {
        let halves = Layout::default()
            .direction(Direction::Horizontal)
            .constraints([Constraint::Percentage(50), Constraint::Percentage(50)])
            .split(text_area);
        text::draw_original(frame, halves[0], app);
        text::draw_reconstruction(frame, halves[1], app);
    } else {
        text::draw_chunk(frame, text_area, app);
    }
    latent::draw(frame, latent_area, app);
}
