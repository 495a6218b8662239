//! The latent view: a heatmap of the chunk's latent rows (two rows per
//! terminal line with half blocks, columns averaged down to the pane width),
//! a per-row norm sparkline and the colour legend.

use super::util::pane;
use crate::app::App;
use crate::heat::{bin, diverging, LatentMatrix};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
/// Width of the row-number gutter.
const GUTTER: u16 = 3;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let Some(m) = &app.latent else {
        let p = Paragraph::new("No chunk selected.")
            .style(Style::default().fg(Color::DarkGray))
            .wrap(Wrap { trim: true })
            .block(pane(" Latents ".into(), false));
        frame.render_widget(p, area);
        return;
    };
    let title = format!(
        " Latents · {} rows × {} dims · scale ±{:.3} ",
        m.rows, m.dims, m.scale
    );
    let block = pane(title, false);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let buf = frame.buffer_mut();
    let heat_h = inner.height.saturating_sub(2);
    let gutter = if inner.width > 4 * GUTTER { GUTTER } else { 0 };
    let heat = Rect {
        x: inner.x + gutter,
        y: inner.y,
        width: inner.width - gutter,
        height: heat_h,
    };
    heatmap(buf, heat, m);
    if gutter > 0 {
        row_labels(
            buf,
            Rect {
                x: inner.x,
                width: gutter,
                ..heat
            },
            m.rows,
        );
    }
    if inner.height >= 2 {
        let y = inner.y + heat_h;
        sparkline(
            buf,
            Rect {
                x: heat.x,
                y,
                width: heat.width,
                height: 1,
            },
            m,
        );
        if gutter > 0 {
            buf.set_string(inner.x, y, "‖n", Style::default().fg(Color::DarkGray));
        }
        legend(
            buf,
            Rect {
                x: inner.x,
                y: y + 1,
                width: inner.width,
                height: 1,
            },
            m.scale,
            &m.norms,
        );
    }
}

/// Latent row groups drawn on each pixel row (two pixel rows per line).
fn pixel_rows(rows: usize, height: u16) -> usize {
    rows.min(2 * height as usize)
}

pub fn heatmap(buf: &mut Buffer, area: Rect, m: &LatentMatrix) {
    if area.width == 0 || area.height == 0 || m.rows == 0 || m.dims == 0 {
        return;
    }
    let px = pixel_rows(m.rows, area.height);
    let w = area.width as usize;
    let value = |p: usize, x: usize| m.block_mean(bin(p, px, m.rows), bin(x, w, m.dims));
    for line in 0..px.div_ceil(2) {
        let (top, bottom) = (2 * line, 2 * line + 1);
        for x in 0..w {
            let cell = &mut buf[(area.x + x as u16, area.y + line as u16)];
            cell.set_char('▀');
            cell.set_fg(diverging(value(top, x), m.scale));
            cell.set_bg(if bottom < px {
                diverging(value(bottom, x), m.scale)
            } else {
                Color::Reset
            });
        }
    }
}

fn row_labels(buf: &mut Buffer, area: Rect, rows: usize) {
    let px = pixel_rows(rows, area.height);
    for line in 0..px.div_ceil(2) {
        if line % 2 == 0 {
            let first = bin(2 * line, px, rows).start;
            buf.set_stringn(
                area.x,
                area.y + line as u16,
                format!("{first:>2}"),
                area.width as usize,
                Style::default().fg(Color::DarkGray),
            );
        }
    }
}

/// One bar per latent row (stretched or averaged to the width), height ∝ norm.
fn sparkline(buf: &mut Buffer, area: Rect, m: &LatentMatrix) {
    let w = area.width as usize;
    if w == 0 || m.norms.is_empty() {
        return;
    }
    let max = m.norms.iter().cloned().fold(0.0f32, f32::max);
    for x in 0..w {
        let r = bin(x, w, m.norms.len());
        let v = r.clone().map(|i| m.norms[i]).sum::<f32>() / r.len().max(1) as f32;
        let level = if max > 0.0 {
            ((v / max) * (BARS.len() - 1) as f32).round() as usize
        } else {
            0
        };
        buf[(area.x + x as u16, area.y)]
            .set_char(BARS[level.min(BARS.len() - 1)])
            .set_fg(Color::Cyan);
    }
}

fn legend(buf: &mut Buffer, area: Rect, scale: f32, norms: &[f32]) {
    let lo = format!("-{scale:.2} ");
    let lo_n = norms.iter().cloned().fold(f32::INFINITY, f32::min);
    let hi_n = norms.iter().cloned().fold(0.0f32, f32::max);
    let hi = format!(" +{scale:.2}  blue < 0 < red · ‖n row norms {lo_n:.2}..{hi_n:.2}");
    let grad = (area.width as usize).saturating_sub(lo.len() + 8).min(24);
    let dim = Style::default().fg(Color::DarkGray);
    let (x, _) = buf.set_stringn(area.x, area.y, &lo, area.width as usize, dim);
    for i in 0..grad {
        let t = if grad > 1 {
            i as f32 / (grad - 1) as f32 * 2.0 - 1.0
        } else {
            0.0
        };
        let gx = x + i as u16;
        if gx < area.right() {
            buf[(gx, area.y)].set_char(' ').set_bg(diverging(t, 1.0));
        }
    }
    let x = x + grad as u16;
    if x < area.right() {
        buf.set_stringn(x, area.y, &hi, (area.right() - x) as usize, dim);
    }
}
