//! Numbers behind the latent view: the chunk's latent matrix, its colour
//! scale, downsampling to a pane and per-row norms.

use ratatui::style::Color;

/// One chunk's raw latent states, `rows x dims`, as f32.
#[derive(Debug, Clone, PartialEq)]
pub struct LatentMatrix {
    pub rows: usize,
    pub dims: usize,
    pub values: Vec<f32>,
    /// Symmetric colour scale: the 99th percentile of |v| (never 0).
    pub scale: f32,
    pub norms: Vec<f32>,
}

impl LatentMatrix {
    pub fn new(rows: usize, dims: usize, values: Vec<f32>) -> Self {
        assert_eq!(rows * dims, values.len(), "latent matrix shape");
        let mut mags: Vec<f32> = values
            .iter()
            .map(|v| v.abs())
            .filter(|v| v.is_finite())
            .collect();
        mags.sort_by(f32::total_cmp);
        let scale = if mags.is_empty() {
            1.0
        } else {
            let at = ((mags.len() - 1) as f64 * 0.99).round() as usize;
            mags[at]
        };
        let scale = if scale > 0.0 { scale } else { 1.0 };
        let norms = (0..rows)
            .map(|r| {
                values[r * dims..(r + 1) * dims]
                    .iter()
                    .map(|v| v * v)
                    .sum::<f32>()
                    .sqrt()
            })
            .collect();
        LatentMatrix {
            rows,
            dims,
            values,
            scale,
            norms,
        }
    }

    pub fn get(&self, row: usize, dim: usize) -> f32 {
        self.values[row * self.dims + dim]
    }

    /// Mean over the block of rows `rows` and dims `dims` (half-open ranges).
    pub fn block_mean(&self, rows: std::ops::Range<usize>, dims: std::ops::Range<usize>) -> f32 {
        let mut sum = 0.0f64;
        let mut n = 0usize;
        for r in rows {
            for d in dims.clone() {
                let v = self.get(r, d);
                if v.is_finite() {
                    sum += v as f64;
                    n += 1;
                }
            }
        }
        if n == 0 {
            0.0
        } else {
            (sum / n as f64) as f32
        }
    }
}

/// The half-open source range that output cell `i` of `n` covers in `len`
/// source items (never empty while `len > 0`): downsampling averages, and
/// upsampling repeats items.
pub fn bin(i: usize, n: usize, len: usize) -> std::ops::Range<usize> {
    if n == 0 || len == 0 {
        return 0..0;
    }
    let start = i * len / n;
    let end = ((i + 1) * len / n).max(start + 1).min(len);
    start.min(len - 1)..end
}

const NEG: (f32, f32, f32) = (40.0, 110.0, 255.0);
const MID: (f32, f32, f32) = (28.0, 28.0, 28.0);
const POS: (f32, f32, f32) = (255.0, 70.0, 50.0);

/// Diverging colour for `v / scale` clamped to [-1, 1]: blue below zero,
/// dark grey at zero, red above.
pub fn diverging(v: f32, scale: f32) -> Color {
    let t = if scale > 0.0 && v.is_finite() {
        (v / scale).clamp(-1.0, 1.0)
    } else {
        0.0
    };
    let (end, t) = if t < 0.0 { (NEG, -t) } else { (POS, t) };
    let mix = |a: f32, b: f32| (a + (b - a) * t).round() as u8;
    Color::Rgb(mix(MID.0, end.0), mix(MID.1, end.1), mix(MID.2, end.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_cover_the_source() {
        // downsampling 10 -> 3
        let b: Vec<_> = (0..3).map(|i| bin(i, 3, 10)).collect();
        assert_eq!(b, vec![0..3, 3..6, 6..10]);
        // upsampling 2 -> 4 repeats
        let b: Vec<_> = (0..4).map(|i| bin(i, 4, 2)).collect();
        assert_eq!(b, vec![0..1, 0..1, 1..2, 1..2]);
        assert_eq!(bin(0, 0, 5), 0..0);
    }

    #[test]
    fn colour_scale_is_diverging() {
        assert_eq!(diverging(0.0, 1.0), Color::Rgb(28, 28, 28));
        assert_eq!(diverging(-5.0, 1.0), Color::Rgb(40, 110, 255));
        assert_eq!(diverging(1.0, 1.0), Color::Rgb(255, 70, 50));
        assert_eq!(diverging(f32::NAN, 1.0), Color::Rgb(28, 28, 28));
    }

    #[test]
    fn norms_and_scale() {
        let m = LatentMatrix::new(2, 2, vec![3.0, 4.0, 0.0, 0.0]);
        assert_eq!(m.norms, vec![5.0, 0.0]);
        assert_eq!(m.scale, 4.0);
        assert_eq!(m.block_mean(0..1, 0..2), 3.5);
        let z = LatentMatrix::new(1, 1, vec![0.0]);
        assert_eq!(z.scale, 1.0);
    }
}
