//! The tools' arguments (their JSON Schemas come from these types) and the
//! tool list an agent sees.

use rmcp::handler::server::common::schema_for_type;
use rmcp::model::{Tool, ToolAnnotations};
use rmcp::schemars::{self, JsonSchema};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::serve::routes::DocSpec;

/// A document: its id (a number) or its name (the source it was stored
/// under).
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(untagged)]
pub enum DocRef {
    Id(u64),
    Name(String),
}

impl DocRef {
    pub fn spec(&self) -> DocSpec {
        match self {
            DocRef::Id(i) => DocSpec::Id(*i),
            DocRef::Name(n) => DocSpec::Name(n.clone()),
        }
    }
}

/// A metadata filter: one entry per key, all must hold. A value is
/// equality; an object holds operators: `{"year": {">": 2000}}`,
/// `{"kind": {"!=": "code"}}`, `{"kind": {"in": ["a", "b"]}}`.
pub type Where = Option<Map<String, Value>>;

/// A document's metadata: a flat object of string, number and bool values.
pub type Meta = Option<Map<String, Value>>;

#[derive(Deserialize, JsonSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct SearchArgs {
    /// Words to look for (BM25 over the stored chunk texts).
    pub query: String,
    /// How many chunks to return (default 8).
    #[schemars(range(min = 1))]
    pub top_k: Option<usize>,
    /// Only documents whose metadata matches.
    #[serde(rename = "where")]
    pub filter: Where,
}

#[derive(Deserialize, JsonSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct AskArgs {
    /// The question.
    pub question: String,
    /// Read only the best-scoring K chunks (BM25) instead of all.
    #[schemars(range(min = 1))]
    pub top_k: Option<usize>,
    /// Read every chunk of the selected documents (the default).
    pub all: Option<bool>,
    /// Only this document (id or name).
    pub doc: Option<DocRef>,
    /// Only documents whose metadata matches.
    #[serde(rename = "where")]
    pub filter: Where,
    /// `latent` (the compressed memory, default) or `text` (the chunks'
    /// stored text).
    pub mode: Option<String>,
    /// Most tokens of the answer (default 512, at most the server's limit).
    #[schemars(range(min = 1))]
    pub max_new_tokens: Option<usize>,
}

#[derive(Deserialize, JsonSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct ExpandArgs {
    /// The document (id or name).
    pub doc: DocRef,
    /// The chunk's index in the document (0 is the first).
    pub chunk: u32,
    /// `true`: the model's reconstruction of the chunk from its latents
    /// (C3 models only) instead of the stored text.
    pub reconstruct: Option<bool>,
    /// With `reconstruct`: most tokens to generate.
    #[schemars(range(min = 1))]
    pub max_new_tokens: Option<usize>,
}

#[derive(Deserialize, JsonSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct AddArgs {
    /// The document's name (a file name, e.g. `notes.md`; its extension
    /// chooses how it is chunked). A name already stored is replaced.
    pub name: String,
    /// The document's text.
    pub text: String,
    /// The document's metadata.
    pub metadata: Meta,
}

#[derive(Deserialize, JsonSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct AddPathArgs {
    /// A file or folder inside a root the operator allowed (`--allow-path`);
    /// a relative path is taken from the first root.
    pub path: String,
    /// The metadata of every document stored.
    pub metadata: Meta,
}

#[derive(Deserialize, JsonSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct SyncArgs {
    /// Files or folders inside the allowed roots (default: every root).
    pub paths: Option<Vec<String>>,
    /// Remove documents that came from under these paths and are gone.
    pub prune: Option<bool>,
    /// The metadata of every document stored or found unchanged.
    pub metadata: Meta,
}

#[derive(Deserialize, JsonSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    /// Only documents whose metadata matches.
    #[serde(rename = "where")]
    pub filter: Where,
}

#[derive(Deserialize, JsonSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct DeleteArgs {
    /// The document (id or name).
    pub doc: DocRef,
}

#[derive(Deserialize, JsonSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct StatsArgs {}

fn tool<T: JsonSchema + 'static>(name: &'static str, description: &'static str) -> Tool {
    Tool::new(name, description, schema_for_type::<T>())
}

fn hints(read_only: bool, destructive: bool) -> ToolAnnotations {
    ToolAnnotations::new()
        .read_only(read_only)
        .destructive(destructive)
        .open_world(false)
}

/// Every tool, in the order an agent usually needs them.
pub fn all() -> Vec<Tool> {
    vec![
        tool::<SearchArgs>(
            "search",
            "Find the chunks that match a query best (BM25, no model): doc id, source (the \
             document's name), chunk index, score and a short snippet each.",
        )
        .annotate(hints(true, false)),
        tool::<AskArgs>(
            "ask",
            "Answer a question from the compressed memory: the answer and the chunks it read \
             (doc, chunk, score). Use search first to find documents, expand to read a chunk \
             verbatim.",
        )
        .annotate(hints(true, false)),
        tool::<ExpandArgs>(
            "expand",
            "A chunk's stored text, verbatim; with reconstruct: true the model's reconstruction \
             from its latents (C3 models only).",
        )
        .annotate(hints(true, false)),
        tool::<AddArgs>(
            "add",
            "Store a text as a document (chunked and compressed on the server); reports \
             progress and can be cancelled.",
        )
        .annotate(hints(false, false)),
        tool::<AddPathArgs>(
            "add_path",
            "Store a file or a folder the server can read, inside the roots the operator \
             allowed (--allow-path); reports progress and can be cancelled.",
        )
        .annotate(hints(false, false)),
        tool::<SyncArgs>(
            "sync",
            "Make the store match files and folders inside the allowed roots: add new ones, \
             replace changed ones, with prune remove those gone; returns the counts.",
        )
        .annotate(hints(false, true)),
        tool::<ListArgs>(
            "list",
            "The stored documents (id, source, chunks, bytes, tokens, metadata, ...), \
             optionally filtered by metadata.",
        )
        .annotate(hints(true, false)),
        tool::<DeleteArgs>("delete", "Remove a document from the store.")
            .annotate(hints(false, true)),
        tool::<StatsArgs>(
            "stats",
            "What the store holds: documents, chunks, tokens, bytes, the model.",
        )
        .annotate(hints(true, false)),
    ]
}

/// The names of [`all`], for messages.
pub fn names() -> Vec<String> {
    all().into_iter().map(|t| t.name.into_owned()).collect()
}

/// Parses a tool's arguments, naming the argument that is wrong.
pub fn parse<T: serde::de::DeserializeOwned>(
    tool: &str,
    args: Option<Map<String, Value>>,
) -> Result<T, String> {
    let v = Value::Object(args.unwrap_or_default());
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            format!("tool `{tool}`: bad arguments: {inner}")
        } else {
            format!("tool `{tool}`: argument `{path}`: {inner}")
        }
    })
}
