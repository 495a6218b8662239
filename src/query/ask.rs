//! `ask`: choose chunks, assemble the prompt, stream the answer.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::Tensor;
use serde::Serialize;

use super::stream::stream_generation;
use super::AnswerModel;
use crate::cascade::{text_budget, text_prompt, Frame, LatentReader, Prompt, C3_FRAME};
use crate::generate::{check_room, GenOptions, StopReason};
use crate::retrieve::select::{apply_scores, plan};
use crate::retrieve::{Candidate, ChunkIndex, Pick, SyncAction};
use crate::store::LatentLayout;
use crate::store::Store;
use crate::{Error, Result};

/// What the model reads in place of the chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The stored latents (C3's point: ~30x fewer positions).
    Latent,
    /// The chunks' stored text (RAG baseline, or for decoders without latents).
    Text,
}

/// The model that answers.
#[derive(Clone, Copy)]
pub enum Reader<'a> {
    /// A cascade's decoder (C3 or LCLM): latent or text mode.
    Latent(&'a dyn LatentReader),
    /// A plain Qwen chat model: text mode only.
    Plain(&'a AnswerModel),
}

/// One question.
#[derive(Debug, Clone)]
pub struct AskRequest {
    pub question: String,
    /// Documents to search (ids); empty: all documents.
    pub docs: Vec<u64>,
    pub pick: Pick,
    pub mode: Mode,
    pub gen: GenOptions,
    /// Report index builds on stderr.
    pub progress: bool,
}

/// A chunk that went into the prompt.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct ChunkUse {
    pub doc: u64,
    pub chunk: u32,
    /// BM25 score against the question (0 when no word matched).
    pub score: f32,
}

/// Where the time went (milliseconds).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// Index sync, search and chunk choice.
    pub retrieve_ms: f64,
    /// Reading latents (and projecting them) or chunk texts.
    pub load_ms: f64,
    /// From the start of generation to the first generated token (prefill).
    pub first_token_ms: f64,
    /// From the request (retrieval, loading included) to the first token.
    pub time_to_first_token_ms: f64,
    /// Whole generation.
    pub generate_ms: f64,
    pub total_ms: f64,
    pub generated_tokens: usize,
    /// Tokens after the first, per second of decoding after the first.
    pub tokens_per_s: f64,
}

/// The answer and how it was produced.
#[derive(Debug, Clone, Serialize)]
pub struct AskResult {
    pub answer: String,
    pub mode: Mode,
    /// The cascade family that read the prompt (`c3`, `lclm`; none for a
    /// plain answer model).
    pub family: Option<&'static str>,
    /// LCLM's tokens per latent.
    pub compression_ratio: Option<usize>,
    pub chunks: Vec<ChunkUse>,
    pub prompt_tokens: usize,
    /// Latent positions in the prompt.
    pub latent_tokens: usize,
    /// Text tokens of the chunks the latents stand in for (0 in text mode).
    pub text_tokens_replaced: u64,
    /// Chunks the selection wanted but the position budget left out.
    pub dropped: usize,
    /// Why the answer ended: `end`, `max_new_tokens`, `position_limit`
    /// or `cancelled`.
    pub stop: StopReason,
    pub timings: Timings,
    #[serde(skip)]
    pub ids: Vec<u32>,
}

/// A ready prompt: chunks chosen, latents or texts loaded.
pub struct Prepared {
    pub mode: Mode,
    pub chunks: Vec<ChunkUse>,
    /// Chunks wanted but left out by the position budget.
    pub dropped: usize,
    /// How the search index was brought up to date (None when unavailable).
    pub index: Option<SyncAction>,
    /// Something the user should know (e.g. ranking unavailable).
    pub warning: Option<String>,
    pub prompt: Prompt,
    latents: Vec<Tensor>,
    text_tokens_replaced: u64,
    timings: Timings,
    started: Instant,
}

impl Prepared {
    pub fn prompt_tokens(&self) -> usize {
        self.prompt.ids.len()
    }
}

/// Plain-text tokenizer of the reading model.
type Encode<'a> = Box<dyn Fn(&str) -> Result<Vec<u32>> + 'a>;

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Chooses chunks and builds the prompt for `req` (nothing is generated).
pub fn prepare(store: &Store, reader: Reader, req: &AskRequest) -> Result<Prepared> {
    let started = Instant::now();
    let question = req.question.trim();
    if question.is_empty() {
        return Err(Error::Input("the question is empty".into()));
    }
    if let (Mode::Latent, Reader::Plain(_)) = (req.mode, reader) {
        return Err(Error::Input(
            "a plain answer model cannot read latents: use text mode".into(),
        ));
    }
    let docs = selected_docs(store, &req.docs)?;
    let (max_positions, encode): (usize, Encode) = match reader {
        Reader::Latent(d) => (d.max_positions(), Box::new(|t| d.encode_text(t))),
        Reader::Plain(m) => (m.max_positions(), Box::new(|t| m.encode_text(t))),
    };
    // The prompt may take what the new tokens leave; a question that does
    // not fit even without chunks is refused below, naming the room.
    let limit = max_positions.saturating_sub(req.gen.max_new_tokens);

    // Candidates in document order, with what each block costs.
    let mut texts: HashMap<(u64, u32), Vec<u32>> = HashMap::new();
    let mut candidates = Vec::new();
    let layout = store.meta()?.model.map(|m| LatentLayout::of(&m));
    let (budget, latent_cost) = match (req.mode, reader, layout) {
        (Mode::Latent, Reader::Latent(d), Some(layout)) => {
            let (b, per_block) = d.latent_budget(question, limit)?;
            (b, Some((per_block, layout)))
        }
        (Mode::Latent, Reader::Latent(_), None) => {
            return Err(Error::Input(format!(
                "store {} holds no latents yet (run `c3 ingest` first)",
                store.dir().display()
            )))
        }
        (_, Reader::Latent(d), _) => (d.text_budget(question, limit)?, None),
        (_, r, _) => {
            let frame = text_frame(r);
            (text_budget(&*encode, frame, question, limit)?, None)
        }
    };
    check_room(req.gen.max_new_tokens, budget.base, max_positions)?;
    for d in &docs {
        for ord in 0..d.chunk_count {
            let cost = match latent_cost {
                Some((per_block, LatentLayout::Fixed { rows })) => per_block + rows as usize,
                Some((per_block, layout)) => {
                    per_block + layout.rows(store.chunk_record(d.id, ord)?.tokens) as usize
                }
                None => {
                    let rec = store.chunk_record(d.id, ord)?;
                    let ids = encode(&store.chunk_text(&rec)?)?;
                    let n = ids.len();
                    texts.insert((d.id, ord), ids);
                    n
                }
            };
            candidates.push(Candidate {
                doc: d.id,
                chunk: ord,
                score: 0.0,
                cost,
            });
        }
    }

    // Scores: needed for --top-k, and to choose when --all does not fit.
    let restrict: Vec<u64> = if req.docs.is_empty() {
        Vec::new()
    } else {
        docs.iter().map(|d| d.id).collect()
    };
    let (index, warning) = score(store, question, &restrict, req, &mut candidates)?;
    let chosen = plan(&candidates, req.pick, &budget)?;
    let mut timings = Timings {
        retrieve_ms: ms(started),
        ..Timings::default()
    };

    let loading = Instant::now();
    let (prompt, latents, text_tokens_replaced) = assemble(
        store,
        reader,
        req.mode,
        question,
        &chosen.chunks,
        &mut texts,
        &encode,
    )?;
    // Exact for C3 and text mode; LCLM's chunks of one document share a
    // span, so its prompt may be shorter than budgeted.
    debug_assert!(
        prompt.ids.len()
            <= budget.prompt_len(
                chosen.chunks.len(),
                chosen.chunks.iter().map(|c| c.cost).sum()
            )
    );
    timings.load_ms = ms(loading);
    Ok(Prepared {
        mode: req.mode,
        chunks: chosen
            .chunks
            .iter()
            .map(|c| ChunkUse {
                doc: c.doc,
                chunk: c.chunk,
                score: c.score,
            })
            .collect(),
        dropped: chosen.dropped,
        index,
        warning,
        prompt,
        latents,
        text_tokens_replaced,
        timings,
        started,
    })
}

/// Fills in BM25 scores. `--all` works without scores when it fits, so a
/// broken index only costs the ranking there: reported, not fatal.
fn score(
    store: &Store,
    question: &str,
    restrict: &[u64],
    req: &AskRequest,
    candidates: &mut [Candidate],
) -> Result<(Option<SyncAction>, Option<String>)> {
    let searched = ChunkIndex::open_synced(store, req.progress).and_then(|(ix, action)| {
        let hits = ix.search(question, restrict, candidates.len().max(1))?;
        Ok((hits, action))
    });
    match searched {
        Ok((hits, action)) => {
            apply_scores(candidates, &hits);
            Ok((Some(action), None))
        }
        Err(e) if req.pick == Pick::All => Ok((
            None,
            Some(format!(
                "search index unavailable, chunks are unranked: {e}"
            )),
        )),
        Err(e) => Err(e),
    }
}

/// Reads what goes into the chosen blocks and builds the prompt: projected
/// latents (latent mode) or the texts tokenized while budgeting (text mode).
/// Returns the prompt, the latents and the text tokens the latents replace.
fn assemble(
    store: &Store,
    reader: Reader,
    mode: Mode,
    question: &str,
    chosen: &[Candidate],
    texts: &mut HashMap<(u64, u32), Vec<u32>>,
    encode: &Encode,
) -> Result<(Prompt, Vec<Tensor>, u64)> {
    if let (Mode::Latent, Reader::Latent(d)) = (mode, reader) {
        let mut lat = Vec::with_capacity(chosen.len());
        let mut replaced = 0u64;
        // One group per document (chunks arrive in document order).
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut last_doc = None;
        for c in chosen {
            replaced += store.chunk_record(c.doc, c.chunk)?.tokens as u64;
            let l = d.adapt(&store.latent(c.doc, c.chunk)?)?;
            if last_doc != Some(c.doc) {
                groups.push(Vec::new());
                last_doc = Some(c.doc);
            }
            if let Some(g) = groups.last_mut() {
                g.push(l.dim(0)?);
            }
            lat.push(l);
        }
        let p = d.latent_prompt(&groups, question)?;
        return Ok((p, lat, replaced));
    }
    let blocks: Vec<Vec<u32>> = chosen
        .iter()
        .map(|c| texts.remove(&(c.doc, c.chunk)).unwrap_or_default())
        .collect();
    let ids = match reader {
        Reader::Latent(d) => d.text_prompt(&blocks, question)?,
        Reader::Plain(_) => text_prompt(&**encode, text_frame(reader), &blocks, question)?,
    };
    let prompt = Prompt {
        ids,
        latent_starts: Vec::new(),
        latent_lens: Vec::new(),
    };
    Ok((prompt, Vec::new(), 0))
}

fn text_frame(r: Reader) -> Frame {
    match r {
        Reader::Latent(_) => C3_FRAME,
        Reader::Plain(m) => Frame {
            im_start: m.im_start,
            im_end: m.im_end,
            empty_think: m.empty_think,
        },
    }
}

/// Documents named by `ids` (all when empty), in id order.
fn selected_docs(store: &Store, ids: &[u64]) -> Result<Vec<crate::store::DocRecord>> {
    let mut docs = if ids.is_empty() {
        store.documents().collect::<Result<Vec<_>>>()?
    } else {
        let mut v = Vec::new();
        for &id in ids {
            v.push(store.document(id)?.ok_or_else(|| Error::NoDocument {
                spec: id.to_string(),
                store: store.dir().to_path_buf(),
            })?);
        }
        v
    };
    if docs.is_empty() {
        return Err(Error::Input(format!(
            "store {} has no documents (run `c3 ingest` first)",
            store.dir().display()
        )));
    }
    docs.sort_by_key(|d| d.id);
    docs.dedup_by_key(|d| d.id);
    Ok(docs)
}

impl Prepared {
    /// Generates the answer, streaming printable pieces to `on_text`
    /// (returning `false` stops). Their concatenation equals `answer`.
    pub fn run(
        self,
        reader: Reader,
        opts: &GenOptions,
        on_text: impl FnMut(&str) -> bool,
    ) -> Result<AskResult> {
        self.run_until(reader, opts, || true, on_text)
    }

    /// [`Prepared::run`] that also stops as soon as `keep_going` says so,
    /// asked before every generated token of a cascade's decoder (a token
    /// may add no printable text yet) and before every piece of a plain
    /// answer model's.
    pub fn run_until(
        self,
        reader: Reader,
        opts: &GenOptions,
        mut keep_going: impl FnMut() -> bool,
        mut on_text: impl FnMut(&str) -> bool,
    ) -> Result<AskResult> {
        let mut timings = self.timings;
        let gen_start = Instant::now();
        let mut first: Option<f64> = None;
        let mut ttft: Option<f64> = None;
        let started = self.started;
        let mut count = 0usize;
        let gen = match reader {
            Reader::Latent(d) => stream_generation(
                d.token_bytes(),
                d.end_signal(),
                |_| {
                    first.get_or_insert_with(|| ms(gen_start));
                    ttft.get_or_insert_with(|| ms(started));
                    count += 1;
                    keep_going()
                },
                &mut on_text,
                |cb| d.generate(&self.prompt, &self.latents, opts, cb),
            )?,
            Reader::Plain(m) => {
                let gen = m.generate(&self.prompt.ids, opts, |piece| {
                    first.get_or_insert_with(|| ms(gen_start));
                    ttft.get_or_insert_with(|| ms(started));
                    keep_going() && on_text(piece)
                })?;
                count = gen.ids.len();
                gen
            }
        };
        timings.generate_ms = ms(gen_start);
        timings.first_token_ms = first.unwrap_or(timings.generate_ms);
        timings.time_to_first_token_ms = ttft.unwrap_or_else(|| ms(started));
        timings.generated_tokens = count.max(gen.ids.len());
        let decode_s = (timings.generate_ms - timings.first_token_ms) / 1e3;
        timings.tokens_per_s = if timings.generated_tokens > 1 && decode_s > 0.0 {
            (timings.generated_tokens - 1) as f64 / decode_s
        } else {
            0.0
        };
        timings.total_ms = ms(self.started);
        let latent_tokens = self.prompt.latent_positions();
        let (family, compression_ratio) = match reader {
            Reader::Latent(d) => (Some(d.family().name()), d.ratio()),
            Reader::Plain(_) => (None, None),
        };
        Ok(AskResult {
            answer: gen.text,
            mode: self.mode,
            family,
            compression_ratio,
            chunks: self.chunks,
            prompt_tokens: gen.prompt_tokens,
            latent_tokens,
            text_tokens_replaced: self.text_tokens_replaced,
            dropped: self.dropped,
            stop: gen.stop,
            timings,
            ids: gen.ids,
        })
    }
}

/// Answers `req` over the store: chooses chunks ([`Pick::All`] falls back to
/// the best-scoring chunks that fit), builds the spec's prompt with one block
/// per chunk and streams the answer to `on_text`.
pub fn ask(
    store: &Store,
    reader: Reader,
    req: &AskRequest,
    on_text: impl FnMut(&str) -> bool,
) -> Result<AskResult> {
    prepare(store, reader, req)?.run(reader, &req.gen, on_text)
}
