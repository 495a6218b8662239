//! What the command-line's subcommands share: the model context (`--model`
//! and how it loads), opening the store, the `ask` and sampling arguments,
//! loading either family's encoder or decoder, and printing streamed text.
//!
//! Invariant: this file imports no other `cli` module, so every subcommand
//! file can use it without a circle.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};
use c3::cascade::{AnyDecoder, AnyEncoder, Compressor, Family};
use c3::generate::{GenOptions, GenRequest, StopReason};
use c3::kvcache::{CacheOptions, KvDtype, PrefixCache};
use c3::query::{WarmReport, WarmRequest};
use c3::retrieve::ChunkIndex;
use c3::store::{DocRecord, Store};
use candle_core::{DType, Device};
use clap::ValueEnum;

/// How `--model` is found and loaded, from the global options.
pub struct ModelCtx {
    /// `--model` as given: a directory or a hub repo id.
    pub model: Option<PathBuf>,
    /// `--download`: fetch a hub repo the cache lacks.
    pub download: bool,
    /// `model` resolved to a directory, once.
    pub resolved: std::sync::OnceLock<PathBuf>,
    pub dtype: DType,
    pub decoder_quant: Option<c3::model::Quant>,
    pub encoder_precision: c3::options::EncoderPrecision,
    pub device: c3::options::DeviceArg,
    /// `--kv-cache`: the prefix cache's directory (default: in the store's).
    pub kv_cache: Option<PathBuf>,
    /// `--kv-cache-size`: its cap in bytes (0: off).
    pub kv_cache_size: u64,
    pub kv_cache_dtype: KvDtype,
}

impl ModelCtx {
    /// `--model` as a directory (a hub repo id is looked up in the cache).
    pub fn model_dir(&self) -> Result<&Path> {
        if let Some(p) = self.resolved.get() {
            return Ok(p);
        }
        let arg = self.model.as_deref().context(
            "no model: pass --model DIR|ORG/NAME or set C3_MODEL (see README: Getting the real \
             weights)",
        )?;
        let dir = c3::hub::resolve_model(arg, self.download)?;
        Ok(self.resolved.get_or_init(|| dir))
    }

    /// `--answer-model` as a path (a hub repo id is looked up in the cache).
    pub fn answer_model_path(&self, arg: &Path) -> Result<PathBuf> {
        Ok(c3::hub::resolve_model(arg, self.download)?)
    }

    /// The cascade family of `--model` (from its layout).
    pub fn family(&self) -> Result<Family> {
        Ok(c3::cascade::detect(self.model_dir()?)?)
    }

    /// The device models load on (`--device`).
    pub fn device(&self) -> Result<Device> {
        Ok(self.device.device()?)
    }

    /// The encoder of `--model` (either family) in `--encoder-precision`.
    pub fn load_encoder(&self) -> Result<AnyEncoder> {
        let device = self.device()?;
        let quant = self.encoder_precision.quant(self.dtype, &device)?;
        Ok(AnyEncoder::load(
            self.model_dir()?,
            self.dtype,
            &device,
            quant,
        )?)
    }

    /// The prefix cache's options for a store at `store_dir`, with an
    /// in-memory tier of `memory_bytes` (0: none).
    pub fn kv_options(&self, store_dir: &Path, memory_bytes: u64) -> CacheOptions {
        CacheOptions {
            dir: self
                .kv_cache
                .clone()
                .unwrap_or_else(|| store_dir.join(c3::kvcache::STORE_SUBDIR)),
            max_bytes: self.kv_cache_size,
            memory_bytes,
            kv_dtype: self.kv_cache_dtype,
        }
    }

    /// The prefix cache of `dec` (reading latents of the model
    /// `fingerprint`, as [`load_decoder`] returns it) for the store at
    /// `store_dir`; `None` when it is off (`--kv-cache-size 0`). The
    /// decoder's files are digested once per version (remembered in the
    /// cache directory).
    pub fn open_kv_cache(
        &self,
        store_dir: &Path,
        dec: &AnyDecoder,
        fingerprint: &str,
        memory_bytes: u64,
    ) -> Result<Option<PrefixCache>> {
        let opts = self.kv_options(store_dir, memory_bytes);
        Ok(PrefixCache::for_decoder(
            &opts,
            self.model_dir()?,
            dec.reader(),
            fingerprint,
        )?)
    }

    /// Refuses `repeat`, `expand` and `eval` for a family that cannot
    /// reconstruct, before any model loads.
    pub fn check_reconstruct(&self) -> Result<()> {
        Ok(self.family()?.check_reconstruct()?)
    }
}

/// Default answer length for `ask` (reconstruction keeps the release's 4096).
pub const ASK_MAX_NEW_TOKENS: usize = 512;

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum ModeArg {
    /// The decoder reads the stored latents (32 per chunk).
    Latent,
    /// The model reads the chunks' stored text (RAG baseline).
    Text,
}

/// Sampling flags shared by the generating commands.
#[derive(clap::Args, Debug, Clone)]
pub struct SampleArgs {
    /// Sample with this temperature instead of greedy decoding.
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Nucleus mass kept when sampling.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Keep only the K most likely tokens when sampling (`--top-k` is the
    /// retrieval's chunk count).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    pub sample_top_k: Option<u64>,
    /// Seed for sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(clap::Args, Debug)]
pub struct AskArgs {
    /// The question (plain text).
    pub question: String,
    /// Answer over this file instead of the store: it is compressed whole
    /// (every chunk / window) and nothing is stored.
    #[arg(long, value_name = "FILE|-", conflicts_with_all = ["docs", "filters", "all", "top_k", "mode", "answer_model"])]
    pub text: Option<PathBuf>,
    /// Print the generated ids as a JSON array instead of the text.
    #[arg(long, conflicts_with = "json")]
    pub ids: bool,
    /// Only these documents (ids or source paths).
    #[arg(long = "doc", value_name = "ID", num_args = 1..)]
    pub docs: Vec<String>,
    /// Only documents whose metadata matches: `key=value`, `key!=value`,
    /// `key>n`, `key<n`, `key in [a,b]` (repeat: all must hold).
    #[arg(long = "where", value_name = "COND")]
    pub filters: Vec<String>,
    /// Every chunk of the selected documents (the default; the best-scoring
    /// chunks that fit when they do not all fit).
    #[arg(long, conflicts_with = "top_k")]
    pub all: bool,
    /// The K chunks that match the question best (BM25).
    #[arg(long, value_name = "K")]
    pub top_k: Option<usize>,
    /// What the model reads: latents (C3) or the stored text (baseline).
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// A plain Qwen2 / Qwen2.5 / Qwen3 chat model to answer in text mode:
    /// a checkpoint directory, a hub repo id in the cache, or a GGUF file
    /// (q4_k_m, q8_0, ...).
    #[arg(long, value_name = "DIR|ORG/NAME|FILE.gguf")]
    pub answer_model: Option<PathBuf>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = ASK_MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
    #[command(flatten)]
    pub sample: SampleArgs,
    /// transformers' repetition penalty over the generated ids [default:
    /// none for C3; 1.1 for LCLM, as LCLM's own CLI]. 1 turns it off.
    #[arg(long, value_name = "P")]
    pub repetition_penalty: Option<f32>,
    /// Print one JSON object at the end instead of streaming.
    #[arg(long)]
    pub json: bool,
}

/// The decoder of `--model`, whichever family; with a store, refuses a
/// model whose latents are not the store's.
pub fn load_reader(ctx: &ModelCtx, store: Option<&Store>) -> anyhow::Result<AnyDecoder> {
    Ok(load_decoder(ctx, store)?.0)
}

/// [`load_reader`], with the fingerprint of the latents the decoder reads.
pub fn load_decoder(ctx: &ModelCtx, store: Option<&Store>) -> anyhow::Result<(AnyDecoder, String)> {
    let (dec, fp) = c3::cascade::AnyDecoder::load(
        ctx.model_dir()?,
        ctx.dtype,
        &ctx.device()?,
        ctx.decoder_quant,
    )?;
    if let Some(store) = store {
        store.check_model(&fp)?;
    }
    Ok((dec, fp))
}

/// Brings the search index in line after a change (ingest, rm). A failure
/// only costs ranking until the next query rebuilds it, so it is a warning.
pub fn refresh_index(store: &Store, progress: bool) {
    if let Err(e) = ChunkIndex::open_synced(store, progress) {
        c3::note!("c3: warning: search index not updated ({e}); the next `c3 ask` rebuilds it");
    }
}

/// The generation options of a command: the library's one validation
/// ([`GenRequest::options`], as `c3 serve` and the TUI use), its refusals
/// worded with the flag.
pub fn gen_options(
    max_new_tokens: usize,
    s: &SampleArgs,
    repetition_penalty: Option<f32>,
) -> Result<GenOptions> {
    GenRequest {
        max_new_tokens: Some(max_new_tokens),
        temperature: s.temperature,
        top_p: Some(s.top_p),
        top_k: s.sample_top_k.map(|k| k as usize),
        seed: Some(s.seed),
        repetition_penalty,
    }
    .options(max_new_tokens)
    .map_err(|e| match e {
        c3::Error::GenSetting {
            knob,
            value,
            expected,
        } => anyhow::anyhow!("{} {value}: {expected}", knob.flag()),
        e => e.into(),
    })
}

/// Says on stderr when a generation ended because the prompt and the
/// generated ids filled the model's positions (`what` names it).
pub fn note_stop(what: &str, stop: StopReason) {
    if stop == StopReason::PositionLimit {
        c3::note!("c3: note: {what} stopped at the model's position limit (the prompt and the generated tokens fill its positions)");
    }
}

/// Writes a streamed piece and flushes so it shows at once.
pub fn print_piece(out: &mut Out, piece: &str) -> bool {
    let piece = out.text(piece);
    out.write_all(piece.as_bytes())
        .and_then(|_| out.flush())
        .is_ok()
}

/// Set when a write to standard output failed because its reader went
/// away (`c3 ls | head`): `main` then ends quietly with exit 0.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether standard output's reader went away.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// Standard output for a command's results. A write the reader refused
/// is recorded ([`stdout_closed`]) and returned as an error, which stops
/// the command. `text` escapes what goes to a terminal; a pipe or a file
/// gets the exact bytes.
pub struct Out {
    inner: std::io::StdoutLock<'static>,
    pub tty: bool,
}

impl Out {
    pub fn new() -> Self {
        let inner = std::io::stdout().lock();
        let tty = inner.is_terminal();
        Out { inner, tty }
    }

    /// A document's text or a generated answer: control characters
    /// escaped on a terminal (line feeds and tabs kept), exact elsewhere.
    pub fn text<'a>(&self, s: &'a str) -> std::borrow::Cow<'a, str> {
        if self.tty {
            c3::term::text(s)
        } else {
            std::borrow::Cow::Borrowed(s)
        }
    }
}

impl Default for Out {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let r = self.inner.write(buf);
        if let Err(e) = &r {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                STDOUT_CLOSED.store(true, Ordering::Relaxed);
            }
        }
        r
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let r = self.inner.flush();
        if let Err(e) = &r {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                STDOUT_CLOSED.store(true, Ordering::Relaxed);
            }
        }
        r
    }
}

/// Open an existing store (read, remove, export).
pub fn open(store_dir: &Path) -> anyhow::Result<Store> {
    Ok(warn_damaged(Store::open_existing(store_dir)?))
}

/// Open or create a store (ingest, import).
pub fn open_or_create(store_dir: &Path) -> anyhow::Result<Store> {
    Ok(warn_damaged(Store::open(store_dir)?))
}

/// A damaged store still serves what it holds; say so once, on stderr.
fn warn_damaged(store: Store) -> Store {
    if let Some(d) = store.damage() {
        c3::note!(
            "c3: warning: store {} is damaged: {}. It is read-only until repaired: `c3 --store {} \
             check` lists what is missing, `c3 --store {} recover` repairs it",
            store.dir().display(),
            d.summary(),
            store.dir().display(),
            store.dir().display()
        );
    }
    store
}

pub use c3::store::listing::rfc3339;

/// A document as `c3 ls --json` and `c3 show --json` give it (its metadata
/// included).
pub fn doc_json(store: &Store, d: &DocRecord) -> anyhow::Result<serde_json::Value> {
    Ok(c3::store::listing::doc_json(d, &store.metadata(d.id)?))
}

/// `--meta key=value` arguments (repeated); `None` when none were given.
pub fn meta_arg(args: &[String]) -> anyhow::Result<Option<c3::docmeta::Metadata>> {
    if args.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        c3::docmeta::Metadata::from_assignments(args).context("--meta")?,
    ))
}

/// `--where` arguments (repeated = and).
pub fn where_arg(args: &[String]) -> anyhow::Result<c3::docmeta::Filter> {
    c3::docmeta::Filter::parse_cli(args).context("--where")
}

/// The documents `--where` selects, with the note on stderr when it names
/// keys no document has.
pub fn select(store: &Store, filter: &c3::docmeta::Filter) -> anyhow::Result<c3::store::Selection> {
    let sel = store.select(filter)?;
    if let Some(n) = sel.note() {
        c3::note!("c3: {n}");
    }
    Ok(sel)
}

/// Chunks per encoder call when `--batch` is not given (docs/performance.md). On the CPU the dense f32 encoder ran 4 chunks per forward
/// at 1.10x the speed of one forward each, the i16 one at 0.97–0.99x, so it
/// takes one at a time; a GPU gains from 8.
pub fn default_batch(model: &dyn Compressor) -> usize {
    match (model.device().is_cpu(), model.quant()) {
        (true, Some(c3::model::Quant::I16)) => 1,
        (true, _) => 4,
        (false, _) => 8,
    }
}

/// The encoder of `--model` and the chunk size to use: `chunk_tokens` when
/// given (it must fit a C3 encoder's positions), else the family's default
/// (C3: 1000 tokens; LCLM: its encoder window, so a chunk is one window).
pub fn load_encoder(
    ctx: &ModelCtx,
    chunk_tokens: Option<usize>,
) -> anyhow::Result<(AnyEncoder, usize)> {
    let enc = ctx.load_encoder()?;
    if let (Some(n), Some(max)) = (chunk_tokens, enc.max_chunk_tokens()) {
        if n > max {
            bail!("--chunk-tokens {n} exceeds the encoder's limit of {max} tokens");
        }
    }
    let n = chunk_tokens.unwrap_or_else(|| enc.default_chunk_tokens());
    Ok((enc, n))
}

/// Fills the prefix cache for `docs` of the store at `store_dir` (all when
/// empty) as `ask --max-new-tokens max_new` would read them, loading the
/// decoder of `--model`; progress on stderr unless `quiet`.
pub fn warm_store(
    store_dir: &Path,
    ctx: &ModelCtx,
    docs: &[String],
    max_new: usize,
    quiet: bool,
) -> anyhow::Result<WarmReport> {
    if ctx.kv_cache_size == 0 {
        bail!("the prefix cache is off (--kv-cache-size 0): there is nothing to warm");
    }
    let store = open(store_dir)?;
    let ids = docs
        .iter()
        .map(|s| Ok(store.resolve(s)?.id))
        .collect::<anyhow::Result<Vec<u64>>>()?;
    let (dec, fp) = load_decoder(ctx, Some(&store))?;
    let cache = ctx
        .open_kv_cache(store_dir, &dec, &fp, 0)?
        .context("the prefix cache is off (--kv-cache-size 0)")?;
    let req = WarmRequest {
        docs: ids,
        max_new_tokens: max_new,
    };
    let mut progress = |done: usize, total: usize| {
        if !quiet {
            c3::note!("c3: warm: {done}/{total} blocks");
        }
        true
    };
    let report = c3::query::warm(&store, dec.reader(), &cache, &req, &mut progress)?;
    if !quiet {
        c3::note!(
            "c3: warm: {} chunks of {} documents, {} positions ({} were cached, {} prefilled), \
             {} blocks written ({:.1} MB) to {} in {:.1} s{}",
            report.chunks,
            report.documents,
            report.positions,
            report.cached_positions,
            report.prefilled_positions,
            report.blocks_written,
            report.bytes_written as f64 / 1e6,
            cache.dir().display(),
            report.ms / 1e3,
            if report.left_out > 0 {
                format!(
                    "; {} chunks left out (they do not fit the model's positions with \
                     --max-new-tokens {max_new})",
                    report.left_out
                )
            } else {
                String::new()
            }
        );
    }
    Ok(report)
}
