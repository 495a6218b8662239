//! Library error type.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tokenizer: {0}")]
    Tokenize(String),
    #[error("checkpoint {path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    #[error("input: {0}")]
    Input(String),
    #[error("tensor: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("store: {0}")]
    Store(String),
    /// The Hugging Face hub or its cache (names the repo, revision, file).
    #[error("hub: {0}")]
    Hub(String),
}

pub type Result<T> = std::result::Result<T, Error>;
