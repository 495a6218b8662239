//! Application state: what is selected, what is shown, and the running jobs.
//! Everything the screens draw comes from here; input and worker events
//! change it.

use crate::data::{short_source, ChunkRow, StoreView};
use crate::diff::WordDiff;
use crate::heat::LatentMatrix;
use crate::jobs::{Event, JobId, Request, Worker};
use crate::metrics::Fidelity;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Documents,
    Chunks,
    Text,
}

/// The model behind `r` and `a`.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelState {
    /// No `--model`: browsing only.
    Absent,
    Loading,
    Ready {
        fingerprint: String,
    },
    Failed(String),
}

/// One reconstruction of a chunk, streaming or finished.
#[derive(Debug, Clone)]
pub struct Recon {
    pub job: JobId,
    pub doc: u64,
    pub ordinal: u32,
    pub original: String,
    pub text: String,
    pub running: bool,
    pub cancel: Arc<AtomicBool>,
    pub cancelled: bool,
    pub error: Option<String>,
    pub fidelity: Option<Fidelity>,
    pub diff: Option<WordDiff>,
}

impl Recon {
    /// Final text arrived: score it and mark the differences.
    pub fn finish(&mut self, text: String) {
        self.running = false;
        self.fidelity = Some(Fidelity::of(&text, &self.original));
        self.diff = Some(WordDiff::of(&self.original, &text));
        self.text = text;
    }
}

/// The ask box: a question being typed, or an answer streaming in.
#[derive(Debug, Clone, Default)]
pub struct Ask {
    pub input: String,
    pub editing: bool,
    pub job: Option<JobId>,
    pub question: String,
    pub doc_label: String,
    pub answer: String,
    pub chunks: Vec<u32>,
    /// Chunks the position budget left out.
    pub dropped: usize,
    pub running: bool,
    pub cancel: Option<Arc<AtomicBool>>,
    pub error: Option<String>,
    pub cancelled: bool,
}

pub struct App {
    pub view: StoreView,
    pub model: ModelState,
    pub worker: Option<Worker>,
    pub focus: Focus,
    pub filter: String,
    pub filter_editing: bool,
    /// Indices into `view.docs` that pass the filter.
    pub visible: Vec<usize>,
    pub doc_sel: usize,
    pub chunks: Vec<ChunkRow>,
    pub chunk_sel: usize,
    pub chunk_text: String,
    pub latent: Option<LatentMatrix>,
    pub text_scroll: u16,
    pub help: bool,
    pub recon: Option<Recon>,
    pub ask: Option<Ask>,
    /// One-line message for the status bar.
    pub message: Option<String>,
    pub tick: u64,
    pub quit: bool,
    /// Cap on generated tokens (`None`: a reconstruction from the chunk's
    /// length, an answer [`crate::jobs::ANSWER_TOKENS`]).
    pub max_new_tokens: Option<usize>,
    next_job: JobId,
}

pub const NEEDS_MODEL: &str = "r and a need a model: start with --model DIR (or set C3_MODEL)";

impl App {
    pub fn new(view: StoreView, model: ModelState, worker: Option<Worker>) -> App {
        let mut app = App {
            view,
            model,
            worker,
            focus: Focus::Documents,
            filter: String::new(),
            filter_editing: false,
            visible: Vec::new(),
            doc_sel: 0,
            chunks: Vec::new(),
            chunk_sel: 0,
            chunk_text: String::new(),
            latent: None,
            text_scroll: 0,
            help: false,
            recon: None,
            ask: None,
            message: None,
            tick: 0,
            quit: false,
            max_new_tokens: None,
            next_job: 1,
        };
        app.refilter();
        app
    }

    pub fn selected_doc(&self) -> Option<&c3::store::DocRecord> {
        self.visible
            .get(self.doc_sel)
            .and_then(|&i| self.view.docs.get(i))
    }

    pub fn selected_chunk(&self) -> Option<&ChunkRow> {
        self.chunks.get(self.chunk_sel)
    }

    /// Recomputes the visible documents after the filter changed.
    pub fn refilter(&mut self) {
        let needle = self.filter.to_lowercase();
        let before = self.selected_doc().map(|d| d.id);
        self.visible = (0..self.view.docs.len())
            .filter(|&i| {
                needle.is_empty() || self.view.docs[i].source.to_lowercase().contains(&needle)
            })
            .collect();
        self.doc_sel = before
            .and_then(|id| {
                self.visible
                    .iter()
                    .position(|&i| self.view.docs[i].id == id)
            })
            .unwrap_or(0);
        self.load_doc();
    }

    /// Loads the chunk list of the selected document.
    pub fn load_doc(&mut self) {
        self.chunks.clear();
        self.chunk_sel = 0;
        if let Some(doc) = self.selected_doc().cloned() {
            match self.view.chunks(&doc) {
                Ok(c) => self.chunks = c,
                Err(e) => self.message = Some(format!("cannot read chunks: {e}")),
            }
        }
        self.load_chunk();
    }

    /// Loads text and latents of the selected chunk.
    pub fn load_chunk(&mut self) {
        self.chunk_text.clear();
        self.latent = None;
        self.text_scroll = 0;
        let (Some(doc), Some(ch)) = (self.selected_doc(), self.selected_chunk()) else {
            return;
        };
        let (doc, ord) = (doc.id, ch.ordinal);
        match self.view.chunk_text(doc, ord) {
            Ok(t) => self.chunk_text = t,
            Err(e) => self.message = Some(format!("cannot read chunk text: {e}")),
        }
        match self.view.latent(doc, ord) {
            Ok(l) => self.latent = l,
            Err(e) => self.message = Some(format!("cannot read latents: {e}")),
        }
    }

    pub fn select_doc(&mut self, index: usize) {
        let index = index.min(self.visible.len().saturating_sub(1));
        if index != self.doc_sel {
            self.doc_sel = index;
            self.load_doc();
        }
    }

    pub fn select_chunk(&mut self, index: usize) {
        let index = index.min(self.chunks.len().saturating_sub(1));
        if index != self.chunk_sel {
            self.chunk_sel = index;
            self.load_chunk();
        }
    }

    /// Moves the selection of the focused pane by `delta` (or scrolls text).
    pub fn move_by(&mut self, delta: i64) {
        let step = |cur: usize| (cur as i64 + delta).max(0) as usize;
        match self.focus {
            Focus::Documents => self.select_doc(step(self.doc_sel)),
            Focus::Chunks => self.select_chunk(step(self.chunk_sel)),
            Focus::Text => {
                let max = self.text_lines().saturating_sub(1) as i64;
                self.text_scroll = (self.text_scroll as i64 + delta).clamp(0, max) as u16
            }
        }
    }

    /// Lines of the longest text shown (before wrapping), capped to fit a u16
    /// scroll offset with room to spare.
    pub fn text_lines(&self) -> usize {
        let count = |t: &str| t.lines().count() + t.len() / 40;
        let recon = self.recon.as_ref().map_or(0, |r| count(&r.text));
        count(&self.chunk_text)
            .max(recon)
            .min(u16::MAX as usize / 2)
    }

    pub fn move_to_end(&mut self, end: bool) {
        let far = if end { i64::MAX / 4 } else { -(i64::MAX / 4) };
        self.move_by(far);
    }

    /// Whether `r`/`a` can run now; sets a message when not.
    fn model_usable(&mut self) -> bool {
        match &self.model {
            ModelState::Absent => {
                self.message = Some(NEEDS_MODEL.into());
                false
            }
            ModelState::Failed(e) => {
                self.message = Some(format!("the model failed to load: {e}"));
                false
            }
            ModelState::Ready { fingerprint } => {
                if let Some(store_fp) = &self.view.header.fingerprint {
                    if store_fp != fingerprint {
                        self.message = Some(
                            "this model is not the one the store was built with: its latents cannot be read"
                                .into(),
                        );
                        return false;
                    }
                }
                self.worker.is_some()
            }
            ModelState::Loading => self.worker.is_some(),
        }
    }

    fn new_job(&mut self) -> JobId {
        let id = self.next_job;
        self.next_job += 1;
        id
    }

    /// `r`: reconstruct the selected chunk in the background.
    pub fn start_reconstruct(&mut self) {
        let (Some(doc), Some(ch)) = (self.selected_doc(), self.selected_chunk()) else {
            self.message = Some("select a chunk to reconstruct".into());
            return;
        };
        let (doc, ch) = (doc.id, ch.clone());
        if !self.model_usable() {
            return;
        }
        self.cancel_recon();
        let id = self.new_job();
        let cancel = Arc::new(AtomicBool::new(false));
        // A faithful reconstruction is about as long as the chunk.
        let max_new_tokens = self
            .max_new_tokens
            .unwrap_or(ch.tokens as usize * 5 / 4 + 64);
        let sent = self.worker.as_ref().map(|w| {
            w.requests.send(Request::Reconstruct {
                id,
                doc,
                ordinal: ch.ordinal,
                max_new_tokens,
                cancel: cancel.clone(),
            })
        });
        if !matches!(sent, Some(Ok(()))) {
            self.message = Some("the model worker has stopped".into());
            return;
        }
        self.recon = Some(Recon {
            job: id,
            doc,
            ordinal: ch.ordinal,
            original: self.chunk_text.clone(),
            text: String::new(),
            running: true,
            cancel,
            cancelled: false,
            error: None,
            fidelity: None,
            diff: None,
        });
        self.message = None;
    }

    fn cancel_recon(&mut self) {
        if let Some(r) = &mut self.recon {
            if r.running {
                r.cancel.store(true, Ordering::Relaxed);
                r.running = false;
                r.cancelled = true;
            }
        }
    }

    /// `a` + Enter: send the typed question.
    pub fn submit_ask(&mut self) {
        let Some(ask) = &self.ask else { return };
        let question = ask.input.trim().to_string();
        if question.is_empty() {
            return;
        }
        let Some(doc) = self.selected_doc().cloned() else {
            self.message = Some("select a document to ask about".into());
            return;
        };
        if !self.model_usable() {
            return;
        }
        self.cancel_ask();
        let id = self.new_job();
        let cancel = Arc::new(AtomicBool::new(false));
        let sent = self.worker.as_ref().map(|w| {
            w.requests.send(Request::Ask {
                id,
                doc: doc.id,
                question: question.clone(),
                max_new_tokens: self.max_new_tokens.unwrap_or(crate::jobs::ANSWER_TOKENS),
                cancel: cancel.clone(),
            })
        });
        if !matches!(sent, Some(Ok(()))) {
            self.message = Some("the model worker has stopped".into());
            return;
        }
        self.ask = Some(Ask {
            input: String::new(),
            editing: false,
            job: Some(id),
            question,
            doc_label: short_source(&doc.source).to_string(),
            running: true,
            cancel: Some(cancel),
            ..Ask::default()
        });
    }

    fn cancel_ask(&mut self) {
        if let Some(a) = &mut self.ask {
            if a.running {
                if let Some(c) = &a.cancel {
                    c.store(true, Ordering::Relaxed);
                }
                a.running = false;
                a.cancelled = true;
            }
        }
    }

    /// Esc outside text entry: cancel what runs, else close what is open.
    pub fn escape(&mut self) {
        if self.recon.as_ref().is_some_and(|r| r.running) {
            self.cancel_recon();
            self.message = Some("reconstruction cancelled".into());
        } else if self.ask.is_some() {
            if self.ask.as_ref().is_some_and(|a| a.running) {
                self.cancel_ask();
            } else {
                self.ask = None;
            }
        } else if self.recon.is_some() {
            self.recon = None;
        } else if !self.filter.is_empty() {
            self.filter.clear();
            self.refilter();
        } else {
            self.message = None;
        }
    }

    pub fn busy(&self) -> bool {
        self.model == ModelState::Loading
            || self.recon.as_ref().is_some_and(|r| r.running)
            || self.ask.as_ref().is_some_and(|a| a.running)
    }

    /// Drains the worker's events without blocking.
    pub fn poll_worker(&mut self) {
        let mut got = Vec::new();
        if let Some(w) = &self.worker {
            while let Ok(ev) = w.events.try_recv() {
                got.push(ev);
            }
        }
        for ev in got {
            self.apply(ev);
        }
    }

    /// Applies one worker event (also how tests drive the screens).
    pub fn apply(&mut self, ev: Event) {
        match ev {
            Event::ModelReady { fingerprint } => {
                self.model = ModelState::Ready { fingerprint };
                self.model_usable();
            }
            Event::ModelFailed(e) => {
                self.message = Some(format!("the model failed to load: {e}"));
                self.model = ModelState::Failed(e);
                if let Some(r) = &mut self.recon {
                    r.running = false;
                    r.error = Some("the model failed to load".into());
                }
                if let Some(a) = &mut self.ask {
                    a.running = false;
                    a.error = Some("the model failed to load".into());
                }
            }
            Event::Started { .. } => {}
            Event::ChunksUsed {
                id,
                ordinals,
                dropped,
            } => {
                if let Some(a) = self.ask_for(id) {
                    a.chunks = ordinals;
                    a.dropped = dropped;
                }
            }
            Event::Piece { id, text } => {
                if let Some(r) = self.recon_for(id) {
                    r.text.push_str(&text);
                } else if let Some(a) = self.ask_for(id) {
                    a.answer.push_str(&text);
                }
            }
            Event::Done { id, text } => {
                if let Some(r) = self.recon_for(id) {
                    r.finish(text);
                } else if let Some(a) = self.ask_for(id) {
                    a.running = false;
                    a.answer = text;
                }
            }
            Event::Cancelled { id } => {
                if let Some(r) = self.recon_for(id) {
                    r.running = false;
                    r.cancelled = true;
                } else if let Some(a) = self.ask_for(id) {
                    a.running = false;
                    a.cancelled = true;
                }
            }
            Event::Failed { id, error } => {
                if let Some(r) = self.recon_for(id) {
                    r.running = false;
                    r.error = Some(error);
                } else if let Some(a) = self.ask_for(id) {
                    a.running = false;
                    a.error = Some(error);
                }
            }
        }
    }

    /// The current reconstruction if it belongs to job `id` and still listens.
    fn recon_for(&mut self, id: JobId) -> Option<&mut Recon> {
        self.recon.as_mut().filter(|r| r.job == id && !r.cancelled)
    }

    fn ask_for(&mut self, id: JobId) -> Option<&mut Ask> {
        self.ask
            .as_mut()
            .filter(|a| a.job == Some(id) && !a.cancelled)
    }
}
