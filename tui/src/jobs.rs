//! The background model worker: loads the decoder once, then runs
//! reconstruct and ask requests one at a time, streaming text back. The UI
//! thread only sends requests and drains events, so it never blocks on the
//! model. Every request carries a cancel flag checked at each token.

use crate::ask;
use c3::decode::{C3Decoder, GenOptions};
use c3::model::C3Checkpoint;
use c3::store::Store;
use c3::tokenize::StreamDecoder;
use candle_core::{DType, Device, Tensor};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

pub type JobId = u64;

pub enum Request {
    /// Reconstruct one chunk from its raw latent states.
    Reconstruct {
        id: JobId,
        raw: Tensor,
        max_new_tokens: usize,
        cancel: Arc<AtomicBool>,
    },
    /// Answer a question over the chunks of one document.
    Ask {
        id: JobId,
        doc: u64,
        chunk_count: u32,
        around: u32,
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
    /// The chunks (ordinals) an ask reads.
    ChunksUsed {
        id: JobId,
        ordinals: Vec<u32>,
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
    pub fn spawn(dir: PathBuf, dtype: DType, store: Option<Arc<Store>>) -> Worker {
        let (req_tx, req_rx) = channel();
        let (ev_tx, ev_rx) = channel();
        std::thread::Builder::new()
            .name("c3-tui-model".into())
            .spawn(move || run(dir, dtype, store, req_rx, ev_tx))
            .expect("spawn model thread");
        Worker {
            requests: req_tx,
            events: ev_rx,
        }
    }
}

fn load(dir: &std::path::Path, dtype: DType) -> c3::Result<(C3Decoder, String)> {
    let ckpt = C3Checkpoint::open(dir)?;
    let device = Device::Cpu;
    let weights = ckpt.decoder_weights(dtype, &device)?;
    let fingerprint = ckpt.fingerprint(&weights)?;
    let dec = C3Decoder::from_weights(
        &ckpt.config.llm,
        ckpt.latent_len(),
        ckpt.encoder_config.hidden_size,
        &weights,
        ckpt.tokenizer()?,
    )?;
    Ok((dec, fingerprint))
}

fn run(
    dir: PathBuf,
    dtype: DType,
    store: Option<Arc<Store>>,
    requests: Receiver<Request>,
    events: Sender<Event>,
) {
    let dec = match load(&dir, dtype) {
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
        let mut stream = StreamDecoder::new(dec.tokenizer());
        let mut on_token = |tok: u32| {
            let text = stream.push(tok);
            if !text.is_empty() {
                let _ = events.send(Event::Piece { id, text });
            }
            !cancel.load(Ordering::Relaxed)
        };
        let result = match req {
            Request::Reconstruct {
                raw,
                max_new_tokens,
                ..
            } => {
                let opts = GenOptions {
                    max_new_tokens,
                    ..GenOptions::default()
                };
                dec.repeat(&raw, &opts, &mut on_token).map(|g| g.text)
            }
            Request::Ask {
                doc,
                chunk_count,
                around,
                question,
                max_new_tokens,
                ..
            } => match &store {
                None => Err(c3::Error::Store("no store is open".into())),
                Some(store) => {
                    let ev = events.clone();
                    ask::answer(
                        &dec,
                        store,
                        ask::Scope {
                            doc,
                            chunk_count,
                            around,
                            max_new_tokens,
                        },
                        &question,
                        |ordinals| {
                            let _ = ev.send(Event::ChunksUsed { id, ordinals });
                        },
                        &mut on_token,
                    )
                }
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
