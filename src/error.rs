//! The library's error type: one variant per condition a caller acts on
//! (a status code, a hint, a retry), each with the typed fields that name
//! the file, store, document or model involved.
//!
//! Invariant: each cause is printed once. A variant that wraps another error
//! writes it into its own message and does not also hand it out as a
//! `source()`, so `{e:#}` at the edge never repeats it. Callers decide by
//! matching variants and fields, never by reading message text.
//!
//! Messages are fragments that read after `error: `: lower case, no final
//! period, the remedy after a colon or in parentheses.
use std::path::PathBuf;

/// Who made a store's latents, for messages: "a C3 model abc…" or "an LCLM
/// 4x model lclm/r4/…", with the latent shape where known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelLabel {
    pub fingerprint: String,
    /// Rows and width of a chunk's latents, when the caller knows them.
    pub latents: Option<(u32, u32)>,
}

impl std::fmt::Display for ModelLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // LCLM fingerprints start `lclm/r{N}/`; C3 ones are bare hex.
        let ratio = self
            .fingerprint
            .strip_prefix("lclm/r")
            .and_then(|r| r.split_once('/'))
            .and_then(|(n, _)| n.parse::<u32>().ok())
            .filter(|&n| n > 0);
        match ratio {
            Some(n) => write!(f, "an LCLM {n}x model {}", self.fingerprint)?,
            None => write!(f, "a C3 model {}", self.fingerprint)?,
        }
        if let Some((rows, width)) = self.latents {
            write!(f, " (latents {rows} x {width})")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
    #[error("tokenizer: {0}")]
    Tokenize(String),
    /// A checkpoint directory or one of its files is not what its family needs.
    #[error("checkpoint {}: {msg}", path.display())]
    Checkpoint { path: PathBuf, msg: String },
    /// Bad input from the user (a flag value, a request field, a document text).
    #[error("input: {0}")]
    Input(String),
    #[error("tensor: {0}")]
    Candle(candle_core::Error),
    /// A store's database reported an error, or a record failed to decode.
    #[error("store: {0}")]
    Store(String),
    /// No store at `dir` where one must already exist.
    #[error("no store at {} (run `c3 ingest` first, or pass --store DIR)", dir.display())]
    NoStore { dir: PathBuf },
    /// Opening or upgrading a store failed (locked by another process, a
    /// newer schema, a damaged database).
    #[error("{0}")]
    Migrate(c3_migrations::MigrateError),
    /// A document named by id, name or source path is not in the store.
    #[error("no document `{spec}` in store {}", store.display())]
    NoDocument { spec: String, store: PathBuf },
    /// A chunk ordinal past the end of its document.
    #[error(
        "document {doc} has {count} chunks (0..={}); there is no chunk {chunk}",
        count.saturating_sub(1)
    )]
    NoChunk { doc: u64, chunk: u32, count: u32 },
    /// A model whose latents are not the ones the store holds.
    #[error(
        "store {} holds latents of {stored}; the loaded model is {loaded}. Latents of different \
         models cannot be mixed: pass the --model the store was ingested with, or use another \
         --store",
        store.display()
    )]
    ModelMismatch {
        store: PathBuf,
        stored: ModelLabel,
        loaded: ModelLabel,
    },
    /// Reconstruction (`repeat`, `expand`, `eval`) asked of a family that
    /// was trained only to answer.
    #[error(
        "the {family} releases were trained to answer, not to reconstruct: there is no \
         documented reconstruction prompt for them. Use `c3 ask` (latent mode), or `c3 show DOC \
         --chunk N` for a chunk's stored text"
    )]
    NoReconstruction { family: &'static str },
    /// The Hugging Face hub or its cache (names the repo, revision, file).
    #[error("hub: {0}")]
    Hub(String),
    /// A training record that cannot be used: the file, the line its
    /// record starts on, the record's index in the file and the field.
    #[error("{}:{line}: record {index}: `{field}`: {msg}", path.display())]
    BadRecord {
        path: PathBuf,
        line: usize,
        index: usize,
        field: String,
        msg: String,
    },
    /// `c3 train --out DIR` where DIR already holds something a run would
    /// overwrite (another model, another run).
    #[error("{}: {holds}; choose another --out (or pass --resume to continue the run it holds)", dir.display())]
    OutputTaken { dir: PathBuf, holds: String },
    /// A generation setting outside its range (a flag, a request field),
    /// from [`GenRequest::options`](crate::generate::GenRequest::options).
    #[error("{knob} {value}: {expected}")]
    GenSetting {
        knob: crate::generate::Knob,
        value: String,
        expected: &'static str,
    },
    /// More new tokens asked for than the decoder's positions leave after
    /// the prompt ([`check_room`](crate::generate::check_room)).
    #[error(
        "no room for {asked} new tokens: the model has {positions} positions and the prompt \
         takes {prompt}, which leaves at most {} (ask for fewer)",
        positions.saturating_sub(*prompt)
    )]
    NoRoom {
        asked: usize,
        prompt: usize,
        positions: usize,
    },
    /// A stored value failed its checksum or its validation.
    #[error(
        "corrupt record in tree `{tree}` at key {key}: {what} (`c3 check` lists all damage, \
         `c3 recover` repairs the store)"
    )]
    CorruptRecord {
        tree: String,
        /// The key as messages show it (`doc 3 chunk 7`, `"next_doc_id"`).
        key: String,
        what: String,
    },
    /// The store does not hold what its manifest says it should (documents
    /// lost, a rolled-back database, a missing manifest): it is read-only
    /// until the user chooses how to repair it.
    #[error(
        "store {} is damaged: {summary}. It is refused for writing until you choose: `c3 --store \
         {} check` lists what is missing, `c3 --store {} recover --dry-run` says what recovery \
         would do",
        dir.display(), dir.display(), dir.display()
    )]
    Damaged { dir: PathBuf, summary: String },
    /// The store can be read but not written by this process.
    #[error("store {} is read-only: {why}", dir.display())]
    ReadOnly { dir: PathBuf, why: String },
    /// sled or tantivy panicked on damaged files (caught at the boundary).
    #[error(
        "store {}: {} is damaged ({what}); `c3 --store {} check` says what is affected, `c3 \
         --store {} recover` repairs the store",
        dir.display(), file.display(), dir.display(), dir.display()
    )]
    DatabaseDamaged {
        dir: PathBuf,
        file: PathBuf,
        what: String,
    },
    /// A document's metadata that breaks a rule (key syntax, a size, a
    /// control character, a value that is not a string, number or bool).
    /// `key` is empty when the whole object is wrong.
    #[error("metadata{}: {what}", if key.is_empty() { String::new() } else { format!(" key `{key}`") })]
    BadMetadata { key: String, what: String },
    /// A metadata filter (`--where`, a `where` object) that cannot be read.
    #[error("filter `{filter}`: {what}")]
    BadFilter { filter: String, what: String },
    /// A metadata filter that leaves no document to answer from.
    #[error("no document matches the filter `{filter}`{}", if why.is_empty() { String::new() } else { format!(": {why}") })]
    NoMatch { filter: String, why: String },
    /// A path an agent asked for outside the roots the operator allowed
    /// (`--allow-path`), or one that cannot be used.
    #[error("path {path}: {why}")]
    PathNotAllowed { path: String, why: String },
    /// Latents holding NaN or an infinity (a broken encoder, a damaged
    /// export): never stored.
    #[error("{what}: latents hold a non-finite value (NaN or infinity) at element {index}")]
    NonFinite { what: String, index: usize },
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Candle(e)
    }
}

impl From<c3_migrations::MigrateError> for Error {
    fn from(e: c3_migrations::MigrateError) -> Self {
        Error::Migrate(e)
    }
}

impl Error {
    /// Wraps an I/O failure on `path` (for `map_err`).
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |err| Error::Io { path, err }
    }

    /// The store refuses writes (damaged, or not writable by this user).
    pub fn is_store_read_only(&self) -> bool {
        matches!(self, Error::Damaged { .. } | Error::ReadOnly { .. })
    }

    /// The store is held by another process (the caller may say which).
    pub fn is_store_locked(&self) -> bool {
        matches!(
            self,
            Error::Migrate(c3_migrations::MigrateError::Locked { .. })
        )
    }
}

pub type Result<T> = std::result::Result<T, Error>;
