//! The paper's fidelity table: rows by text-token bucket.

use serde::Serialize;

/// One reconstructed text.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Where it came from (`doc 3 chunk 5`, or a file name).
    pub label: String,
    pub text_tokens: usize,
    pub latent_tokens: usize,
    pub precision: f64,
    pub edit_similarity: f64,
}

impl Sample {
    pub fn compression(&self) -> f64 {
        if self.latent_tokens == 0 {
            0.0
        } else {
            self.text_tokens as f64 / self.latent_tokens as f64
        }
    }
}

/// One row: a token bucket and its means (None when it holds no sample).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    pub bucket: String,
    /// Inclusive lower and exclusive upper bound in text tokens (None: open).
    pub min_tokens: Option<usize>,
    pub max_tokens: Option<usize>,
    pub chunks: usize,
    pub precision: Option<f64>,
    pub edit_similarity: Option<f64>,
    pub compression: Option<f64>,
}

/// The paper's buckets: 600-700 … 1200-1300, plus below and above.
const EDGES: [usize; 8] = [600, 700, 800, 900, 1000, 1100, 1200, 1300];

fn bounds() -> Vec<(String, Option<usize>, Option<usize>)> {
    let mut b = vec![("<600".to_string(), None, Some(EDGES[0]))];
    for w in EDGES.windows(2) {
        b.push((format!("{}-{}", w[0], w[1]), Some(w[0]), Some(w[1])));
    }
    b.push((">=1300".to_string(), Some(EDGES[EDGES.len() - 1]), None));
    b
}

fn row(bucket: String, lo: Option<usize>, hi: Option<usize>, s: &[&Sample]) -> Row {
    let n = s.len();
    let mean = |f: &dyn Fn(&Sample) -> f64| {
        (n > 0).then(|| s.iter().map(|x| f(x)).sum::<f64>() / n as f64)
    };
    Row {
        bucket,
        min_tokens: lo,
        max_tokens: hi,
        chunks: n,
        precision: mean(&|x| x.precision),
        edit_similarity: mean(&|x| x.edit_similarity),
        compression: mean(&|x| x.compression()),
    }
}

/// Every bucket row (empty ones too, as in the paper), then an `all` row.
pub fn table(samples: &[Sample]) -> Vec<Row> {
    let mut rows: Vec<Row> = bounds()
        .into_iter()
        .map(|(name, lo, hi)| {
            let inside: Vec<&Sample> = samples
                .iter()
                .filter(|s| {
                    lo.is_none_or(|l| s.text_tokens >= l) && hi.is_none_or(|h| s.text_tokens < h)
                })
                .collect();
            row(name, lo, hi, &inside)
        })
        .collect();
    rows.push(row(
        "all".into(),
        None,
        None,
        &samples.iter().collect::<Vec<_>>(),
    ));
    rows
}

/// The table as aligned text.
pub fn render(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<10} {:>7} {:>10} {:>10} {:>12}\n",
        "TOKENS", "CHUNKS", "PRECISION", "EDIT SIM", "COMPRESSION"
    );
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}%", v * 100.0));
    for r in rows {
        out.push_str(&format!(
            "{:<10} {:>7} {:>10} {:>10} {:>12}\n",
            r.bucket,
            r.chunks,
            pct(r.precision),
            pct(r.edit_similarity),
            r.compression
                .map_or("-".to_string(), |c| format!("{c:.1}x")),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(tokens: usize, p: f64) -> Sample {
        Sample {
            label: String::new(),
            text_tokens: tokens,
            latent_tokens: 32,
            precision: p,
            edit_similarity: p / 2.0,
        }
    }

    #[test]
    fn buckets_and_means() {
        let rows = table(&[
            s(650, 1.0),
            s(699, 0.5),
            s(700, 0.2),
            s(100, 0.0),
            s(5000, 0.3),
        ]);
        assert_eq!(rows.len(), 10);
        assert_eq!(rows[0].bucket, "<600");
        assert_eq!(rows[0].chunks, 1);
        assert_eq!(rows[1].bucket, "600-700");
        assert_eq!(rows[1].chunks, 2);
        assert_eq!(rows[1].precision, Some(0.75));
        assert_eq!(rows[1].edit_similarity, Some(0.375));
        assert_eq!(
            rows[1].compression,
            Some((650.0 / 32.0 + 699.0 / 32.0) / 2.0)
        );
        assert_eq!(rows[2].chunks, 1, "700 opens the next bucket");
        assert_eq!(rows[3].chunks, 0);
        assert_eq!(rows[3].precision, None);
        assert_eq!(rows[8].bucket, ">=1300");
        assert_eq!(rows[8].chunks, 1);
        assert_eq!(rows[9].bucket, "all");
        assert_eq!(rows[9].chunks, 5);
        let text = render(&rows);
        assert!(text.contains("600-700"));
        assert!(text.lines().count() == 11);
    }
}
