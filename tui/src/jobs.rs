//! The background model worker: loads the decoder once, then runs
//! reconstruct and ask requests one at a time through the query API
//! (`c3::query::expand_chunk`, `c3::query::prepare` + `run`), streaming text
//! back. The UI thread only sends requests and drains events, so it never
//! blocks on the model. Every request carries a cancel flag checked at each
//! piece of text.

use c3::cascade::{AnyDecoder, LatentReader};
use c3::generate::GenRequest;
use c3::model::Quant;
use c3::options::DeviceArg;
use c3::query::{prepare, AskRequest, Mode, Reader};
use c3::retrieve::Pick;
use c3::store::Store;
use candle_core::DType;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

pub type JobId = u64;

/// New tokens an answer may take by default.
pub const ANSWER_TOKENS: usize = 512;

pub enum Request {
    /// Reconstruct one chunk from its stored latents.
    Reconstruct {
        id: JobId,
        doc: u64,
        ordinal: u32,
        max_new_tokens: usize,
        cancel: Arc<AtomicBool>,
    },
    /// Answer a question over the chunks of one document.
    Ask {
        id: JobId,
        doc: u64,
        question: String,
        max_new_tokens: usize,
        cancel: Arc<AtomicBool>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    ModelReady {
        fingerprint: String,
    },
    ModelFailed(String),
    Started {
        id: JobId,
    },
    /// The chunks (ordinals) an ask reads, and how many the position budget
    /// left out.
    ChunksUsed {
        id: JobId,
        ordinals: Vec<u32>,
        dropped: usize,
    },
    /// Newly generated text.
    Piece {
        id: JobId,
        text: String,
    },
    Done {
        id: JobId,
        text: String,
    },
    Cancelled {
        id: JobId,
    },
    Failed {
        id: JobId,
        error: String,
    },
}

/// The UI's handle on the worker.
pub struct Worker {
    pub requests: Sender<Request>,
    pub events: Receiver<Event>,
}

impl Worker {
    /// Starts the worker thread, which loads the model from `dir` first.
    pub fn spawn(
        dir: PathBuf,
        dtype: DType,
        quant: Option<Quant>,
        device: DeviceArg,
        store: Option<Arc<Store>>,
    ) -> Worker {
        let (req_tx, req_rx) = channel();
        let (ev_tx, ev_rx) = channel();
        std::thread::Builder::new()
            .name("c3-tui-model".into())
            .spawn(move || run(dir, dtype, quant, device, store, req_rx, ev_tx))
            .expect("spawn model thread");
        Worker {
            requests: req_tx,
            events: ev_rx,
        }
    }
}

fn load(
    dir: &std::path::Path,
    dtype: DType,
    quant: Option<Quant>,
    device: DeviceArg,
) -> c3::Result<(AnyDecoder, String)> {
    // `--model org/name`: the snapshot in the Hugging Face cache (no network).
    let dir = c3::hub::resolve_model(dir, false)?;
    c3::cascade::AnyDecoder::load(&dir, dtype, &device.device()?, quant)
}

fn run(
    dir: PathBuf,
    dtype: DType,
    quant: Option<Quant>,
    device: DeviceArg,
    store: Option<Arc<Store>>,
    requests: Receiver<Request>,
    events: Sender<Event>,
) {
    let dec = match load(&dir, dtype, quant, device) {
        Ok((dec, fingerprint)) => {
            let _ = events.send(Event::ModelReady { fingerprint });
            dec
        }
        Err(e) => {
            let _ = events.send(Event::ModelFailed(e.to_string()));
            return;
        }
    };
    for req in requests {
        let (id, cancel) = match &req {
            Request::Reconstruct { id, cancel, .. } | Request::Ask { id, cancel, .. } => {
                (*id, cancel.clone())
            }
        };
        if cancel.load(Ordering::Relaxed) {
            let _ = events.send(Event::Cancelled { id });
            continue;
        }
        let _ = events.send(Event::Started { id });
        let on_text = |piece: &str| {
            let _ = events.send(Event::Piece {
                id,
                text: piece.to_string(),
            });
            !cancel.load(Ordering::Relaxed)
        };
        let result = match &store {
            None => Err(c3::Error::Store("no store is open".into())),
            Some(store) => match req {
                Request::Reconstruct {
                    doc,
                    ordinal,
                    max_new_tokens,
                    ..
                } => gen_options(max_new_tokens).and_then(|opts| {
                    c3::query::expand_chunk(store, dec.reader(), doc, ordinal, &opts, on_text)
                        .map(|g| g.text)
                }),
                Request::Ask {
                    doc,
                    question,
                    max_new_tokens,
                    ..
                } => ask(
                    store,
                    dec.reader(),
                    doc,
                    question,
                    max_new_tokens,
                    id,
                    &events,
                    on_text,
                ),
            },
        };
        let ev = match result {
            _ if cancel.load(Ordering::Relaxed) => Event::Cancelled { id },
            Ok(text) => Event::Done { id, text },
            Err(e) => Event::Failed {
                id,
                error: e.to_string(),
            },
        };
        let _ = events.send(ev);
    }
}

/// Greedy generation of at most `max_new_tokens`, checked by the library's
/// one validation (as `c3` and `c3 serve` check theirs).
fn gen_options(max_new_tokens: usize) -> c3::Result<c3::generate::GenOptions> {
    GenRequest {
        max_new_tokens: Some(max_new_tokens),
        ..GenRequest::default()
    }
    .options(max_new_tokens)
}

/// `c3 ask` over one document's latents: every chunk when they fit the
/// decoder's positions, else the best-scoring ones.
#[allow(clippy::too_many_arguments)]
fn ask(
    store: &Store,
    dec: &dyn LatentReader,
    doc: u64,
    question: String,
    max_new_tokens: usize,
    id: JobId,
    events: &Sender<Event>,
    on_text: impl FnMut(&str) -> bool,
) -> c3::Result<String> {
    let req = AskRequest {
        question,
        docs: vec![doc],
        pick: Pick::All,
        mode: Mode::Latent,
        gen: gen_options(max_new_tokens)?,
        progress: false,
    };
    let reader = Reader::Latent(dec);
    let prepared = prepare(store, reader, &req)?;
    let mut ordinals: Vec<u32> = prepared.chunks.iter().map(|c| c.chunk).collect();
    ordinals.sort_unstable();
    let _ = events.send(Event::ChunksUsed {
        id,
        ordinals,
        dropped: prepared.dropped,
    });
    Ok(prepared.run(reader, &req.gen, on_text)?.answer)
}
