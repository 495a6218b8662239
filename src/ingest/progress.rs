//! Progress bar for ingest: bytes done with ETA, documents and chunks/s.
//! Drawn only when asked and stderr is a terminal.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    docs_total: usize,
    docs: usize,
    chunks: u64,
    bytes_total: u64,
    bytes: u64,
    started: Instant,
}

impl Progress {
    pub fn new(enabled: bool, docs_total: usize, bytes_total: u64) -> Self {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(bytes_total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        let p = Progress {
            bar,
            docs_total,
            docs: 0,
            chunks: 0,
            bytes_total,
            bytes: 0,
            started: Instant::now(),
        };
        p.refresh();
        p
    }

    fn refresh(&self) {
        if let Some(bar) = &self.bar {
            let secs = self.started.elapsed().as_secs_f64().max(1e-3);
            bar.set_message(format!(
                "{}/{} docs · {} chunks · {:.1} chunks/s",
                self.docs,
                self.docs_total,
                self.chunks,
                self.chunks as f64 / secs
            ));
        }
    }

    /// Some bytes of the current document were encoded into `chunks` chunks.
    pub fn advance(&mut self, bytes: u64, chunks: u64) {
        self.chunks += chunks;
        self.bytes += bytes;
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
        self.refresh();
    }

    /// A document is finished.
    pub fn doc_done(&mut self) {
        self.docs += 1;
        self.refresh();
    }

    /// A document of `bytes` bytes was passed over (unchanged or failed).
    pub fn skip(&mut self, bytes: u64) {
        self.bytes += bytes;
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
        self.doc_done();
    }

    /// Print a line without tearing the bar.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| crate::note!("{line}")),
            None => crate::note!("{line}"),
        }
    }

    /// Where the run stands, for an [`super::IngestOptions::watch`].
    pub fn tick(&self) -> super::Tick {
        super::Tick {
            bytes_done: self.bytes.min(self.bytes_total),
            bytes_total: self.bytes_total,
            docs_done: self.docs as u64,
            docs_total: self.docs_total as u64,
            chunks_done: self.chunks,
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
