//! Merge progress on stderr: a bar on a terminal; elsewhere (a pod's log)
//! one line every 30 seconds.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

const LOG_EVERY: Duration = Duration::from_secs(30);

pub struct Progress {
    enabled: bool,
    bar: Option<ProgressBar>,
    total: u64,
    done: u64,
    resumed: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    /// `total` chunks, `done` of them already merged by an earlier run.
    pub fn new(enabled: bool, total: u64, done: u64) -> Self {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} chunks {msg} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_position(done);
            bar
        });
        if enabled && done > 0 {
            crate::note!("c3: merge resumes: {done} of {total} chunks already merged");
        }
        let now = Instant::now();
        Progress {
            enabled,
            bar,
            total,
            done,
            resumed: done,
            started: now,
            last_line: now,
        }
    }

    /// `chunks` more copied; `docs` of `docs_total` documents done.
    pub fn advance(&mut self, chunks: u64, docs: u64, docs_total: u64) {
        self.done += chunks;
        if let Some(bar) = &self.bar {
            bar.set_position(self.done);
            bar.set_message(format!("· {docs}/{docs_total} docs"));
        } else if self.enabled && self.last_line.elapsed() >= LOG_EVERY {
            self.last_line = Instant::now();
            let secs = self.started.elapsed().as_secs_f64().max(1e-3);
            crate::note!(
                "c3: merge: {}/{} chunks, {docs}/{docs_total} documents, {:.0} chunks/s",
                self.done,
                self.total,
                (self.done - self.resumed) as f64 / secs
            );
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
