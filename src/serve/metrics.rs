//! Counters, gauges and histograms for `GET /metrics`, written in the
//! Prometheus text format (version 0.0.4) by hand.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Upper bounds (seconds) of the time-to-first-token buckets.
const TTFT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Upper bounds (seconds) of the per-token latency buckets.
const TOKEN_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A cumulative histogram.
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe_n(&mut self, v: f64, n: u64) {
        if !v.is_finite() || n == 0 {
            return;
        }
        for (b, c) in self.bounds.iter().zip(&mut self.counts) {
            if v <= *b {
                *c += n;
            }
        }
        self.sum += v * n as f64;
        self.count += n;
    }

    fn write(&self, out: &mut String, name: &str) {
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

/// When one generation's tokens came: the request's arrival, the first
/// token, and every gap after it (so the latency histogram holds each
/// token's own time, not a per-request mean).
pub struct TokenClock {
    received: Instant,
    first: Option<Instant>,
    last: Option<Instant>,
    gaps: Vec<f64>,
}

impl TokenClock {
    pub fn new(received: Instant) -> TokenClock {
        TokenClock {
            received,
            first: None,
            last: None,
            gaps: Vec::new(),
        }
    }

    /// A token (or printable piece) is out now.
    pub fn tick(&mut self) {
        self.tick_at(Instant::now());
    }

    fn tick_at(&mut self, now: Instant) {
        match self.last {
            None => self.first = Some(now),
            Some(l) => self.gaps.push((now - l).as_secs_f64()),
        }
        self.last = Some(now);
    }
}

/// Everything `/metrics` reports.
pub struct Metrics {
    /// (route, method, status) → count.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    pub queue_depth: AtomicU64,
    pub jobs_running: AtomicU64,
    pub tokens_generated: AtomicU64,
    pub chunks_ingested: AtomicU64,
    pub generations_cancelled: AtomicU64,
    pub rejected_busy: AtomicU64,
    ttft: Mutex<Histogram>,
    token: Mutex<Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            queue_depth: AtomicU64::new(0),
            jobs_running: AtomicU64::new(0),
            tokens_generated: AtomicU64::new(0),
            chunks_ingested: AtomicU64::new(0),
            generations_cancelled: AtomicU64::new(0),
            rejected_busy: AtomicU64::new(0),
            ttft: Mutex::new(Histogram::new(TTFT_BUCKETS)),
            token: Mutex::new(Histogram::new(TOKEN_BUCKETS)),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere never makes the numbers unreadable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Escapes a label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The `method` label: the methods HTTP defines by name, every other one
/// `other`, so made-up methods cannot add series without end. (Routes are
/// already bounded: the matched route pattern, or `unmatched`.)
pub fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method as M;
    match *m {
        M::GET => "GET",
        M::HEAD => "HEAD",
        M::POST => "POST",
        M::PUT => "PUT",
        M::DELETE => "DELETE",
        M::OPTIONS => "OPTIONS",
        M::PATCH => "PATCH",
        M::CONNECT => "CONNECT",
        M::TRACE => "TRACE",
        _ => "other",
    }
}

impl Metrics {
    pub fn request(&self, route: &str, method: &str, status: u16) {
        *lock(&self.requests)
            .entry((route.to_string(), method.to_string(), status))
            .or_insert(0) += 1;
    }

    /// One finished (or cut short) generation of `tokens` ids: its time
    /// from the request to the first token, and each gap between tokens.
    pub fn generation(&self, tokens: usize, clock: &TokenClock) {
        self.tokens_generated
            .fetch_add(tokens as u64, Ordering::Relaxed);
        let Some(first) = clock.first else {
            return;
        };
        lock(&self.ttft).observe_n((first - clock.received).as_secs_f64(), 1);
        let mut h = lock(&self.token);
        for &g in &clock.gaps {
            h.observe_n(g, 1);
        }
    }

    /// The Prometheus text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP c3_http_requests_total HTTP requests answered, by route, method and status.\n",
        );
        out.push_str("# TYPE c3_http_requests_total counter\n");
        for ((route, method, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "c3_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                label(route),
                label(method)
            );
        }
        let gauge = |out: &mut String, name: &str, help: &str, kind: &str, v: &AtomicU64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        };
        gauge(
            &mut out,
            "c3_queue_depth",
            "Model jobs waiting for the worker.",
            "gauge",
            &self.queue_depth,
        );
        gauge(
            &mut out,
            "c3_jobs_running",
            "Model jobs the worker is running (0 or 1).",
            "gauge",
            &self.jobs_running,
        );
        gauge(
            &mut out,
            "c3_tokens_generated_total",
            "Tokens generated by ask, expand and chat completions.",
            "counter",
            &self.tokens_generated,
        );
        gauge(
            &mut out,
            "c3_chunks_ingested_total",
            "Chunks encoded by ingest jobs.",
            "counter",
            &self.chunks_ingested,
        );
        gauge(
            &mut out,
            "c3_generations_cancelled_total",
            "Generations stopped early (client gone, job cancelled, shutdown).",
            "counter",
            &self.generations_cancelled,
        );
        gauge(
            &mut out,
            "c3_rejected_busy_total",
            "Requests answered 429 because the model queue was full.",
            "counter",
            &self.rejected_busy,
        );
        out.push_str("# HELP c3_time_to_first_token_seconds From the request to the first generated token.\n");
        out.push_str("# TYPE c3_time_to_first_token_seconds histogram\n");
        lock(&self.ttft).write(&mut out, "c3_time_to_first_token_seconds");
        out.push_str("# HELP c3_token_latency_seconds Time per generated token after the first.\n");
        out.push_str("# TYPE c3_token_latency_seconds histogram\n");
        lock(&self.token).write(&mut out, "c3_token_latency_seconds");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        let t0 = Instant::now();
        let ms = |n| std::time::Duration::from_millis(n);
        let mut c = TokenClock::new(t0);
        // First token at 20 ms, then gaps of 30 and 60 ms: each gap lands
        // in its own bucket (a mean would put both at 45 ms).
        c.tick_at(t0 + ms(20));
        c.tick_at(t0 + ms(50));
        c.tick_at(t0 + ms(110));
        m.generation(3, &c);
        let t = m.render();
        assert!(
            t.contains("c3_time_to_first_token_seconds_bucket{le=\"0.025\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("c3_time_to_first_token_seconds_bucket{le=\"0.01\"} 0"),
            "{t}"
        );
        assert!(
            t.contains("c3_token_latency_seconds_bucket{le=\"0.025\"} 0"),
            "{t}"
        );
        assert!(
            t.contains("c3_token_latency_seconds_bucket{le=\"0.05\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("c3_token_latency_seconds_bucket{le=\"0.1\"} 2"),
            "{t}"
        );
        assert!(t.contains("c3_token_latency_seconds_count 2"), "{t}");
        assert!(t.contains("c3_tokens_generated_total 3"), "{t}");
    }

    #[test]
    fn requests_by_label() {
        let m = Metrics::default();
        m.request("/v1/documents", "GET", 200);
        m.request("/v1/documents", "GET", 200);
        m.request("/a\"b", "GET", 404);
        let t = m.render();
        assert!(t.contains(
            "c3_http_requests_total{route=\"/v1/documents\",method=\"GET\",status=\"200\"} 2"
        ));
        assert!(t.contains("route=\"/a\\\"b\""));
    }

    #[test]
    fn made_up_methods_share_one_label() {
        use axum::http::Method;
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let long = "X".repeat(8192);
        for m in ["FOO", "get", long.as_str()] {
            assert_eq!(
                method_label(&Method::from_bytes(m.as_bytes()).unwrap()),
                "other"
            );
        }
    }
}
