//! The loss curve as an SVG picture: training loss per step (a line) and
//! evaluation loss (points joined by a dashed line) against the step.

/// Draws the curves; `train` and `eval` are (step, loss) pairs, non-finite
/// losses left out.
pub fn loss_svg(title: &str, train: &[(f64, f64)], eval: &[(f64, f64)]) -> String {
    let (w, h) = (720.0, 420.0);
    let (l, r, t, b) = (64.0, 24.0, 40.0, 48.0);
    let finite = |v: &[(f64, f64)]| -> Vec<(f64, f64)> {
        v.iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect()
    };
    let (train, eval) = (finite(train), finite(eval));
    let all: Vec<(f64, f64)> = train.iter().chain(&eval).copied().collect();
    let xmax = all.iter().map(|p| p.0).fold(1.0, f64::max);
    let ymax = all.iter().map(|p| p.1).fold(f64::MIN, f64::max);
    let ymin = all.iter().map(|p| p.1).fold(f64::MAX, f64::min);
    let (ymin, ymax) = match all.is_empty() {
        true => (0.0, 1.0),
        false if ymax - ymin < 1e-9 => (ymin - 0.5, ymax + 0.5),
        false => (ymin - 0.05 * (ymax - ymin), ymax + 0.05 * (ymax - ymin)),
    };
    let sx = |x: f64| l + (w - l - r) * x / xmax;
    let sy = |y: f64| t + (h - t - b) * (1.0 - (y - ymin) / (ymax - ymin));
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
        w / 2.0,
        esc(title)
    );
    // Axes and ticks.
    s += &format!(
        "<path d=\"M{l} {t} V{} H{}\" stroke=\"black\" fill=\"none\"/>\n",
        h - b,
        w - r
    );
    for k in 0..=4 {
        let y = ymin + (ymax - ymin) * k as f64 / 4.0;
        s += &format!(
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{y:.3}</text>\
             <line x1=\"{l}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\n",
            l - 6.0,
            sy(y) + 4.0,
            w - r,
            sy(y),
            sy(y)
        );
        let x = xmax * k as f64 / 4.0;
        s += &format!(
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            sx(x),
            h - b + 16.0,
            x.round()
        );
    }
    s += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">step</text>\n\
         <text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">loss</text>\n",
        (l + w - r) / 2.0,
        h - 12.0,
        h / 2.0,
        h / 2.0
    );
    let path = |pts: &[(f64, f64)]| -> String {
        pts.iter()
            .enumerate()
            .map(|(i, &(x, y))| {
                format!(
                    "{}{:.1} {:.1}",
                    if i == 0 { "M" } else { " L" },
                    sx(x),
                    sy(y)
                )
            })
            .collect()
    };
    if !train.is_empty() {
        s += &format!(
            "<path d=\"{}\" stroke=\"#1f77b4\" stroke-width=\"1.5\" fill=\"none\"/>\n",
            path(&train)
        );
    }
    if !eval.is_empty() {
        s += &format!(
            "<path d=\"{}\" stroke=\"#d62728\" stroke-dasharray=\"4 3\" fill=\"none\"/>\n",
            path(&eval)
        );
        for &(x, y) in &eval {
            s += &format!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#d62728\"/>\n",
                sx(x),
                sy(y)
            );
        }
    }
    s += &format!(
        "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"3\" fill=\"#1f77b4\"/>\
         <text x=\"{}\" y=\"{}\">training loss</text>\n",
        w - r - 150.0,
        t + 4.0,
        w - r - 132.0,
        t + 9.0
    );
    if !eval.is_empty() {
        s += &format!(
            "<circle cx=\"{}\" cy=\"{}\" r=\"3\" fill=\"#d62728\"/>\
             <text x=\"{}\" y=\"{}\">evaluation loss</text>\n",
            w - r - 144.0,
            t + 22.0,
            w - r - 132.0,
            t + 26.0
        );
    }
    s + "</svg>\n"
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_picture_holds_both_curves_and_escapes_the_title() {
        let s = super::loss_svg(
            "a<b",
            &[(1.0, 3.0), (2.0, f64::NAN), (3.0, 2.0)],
            &[(0.0, 3.5), (3.0, 2.5)],
        );
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("a&lt;b") && s.contains("evaluation loss"));
        assert_eq!(s.matches("<circle").count(), 3);
    }
}
