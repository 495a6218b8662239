//! The `c3` command line: global options and subcommand dispatch.

pub mod cache_cmd;
pub mod common;
pub mod input;
pub mod mcp_cmd;
pub mod merge_cmd;
pub mod model_cmds;
pub mod oneshot;
pub mod pull_cmd;
pub mod query_cmds;
pub mod recover_cmd;
pub mod search_cmd;
pub mod serve_cmd;
pub mod store_cmds;
pub mod store_show;
pub mod sync_cmd;
pub mod train_cmd;
pub mod tui_cmd;
pub mod warm_cmd;

use c3::options::GlobalOptions;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "c3",
    version,
    about = "Compressed long-context memory (Context Cascade Compression)"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOptions,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the token ids of a text as a JSON array.
    Tokenize(model_cmds::TokenizeArgs),
    /// Compress a text (one chunk) into latents, written as a .npy file.
    Encode(model_cmds::EncodeArgs),
    /// Compress a text and reconstruct it from its latents (the paper's task).
    Repeat(model_cmds::RepeatArgs),
    /// Chunk, compress and store files, directories or stdin.
    Ingest(store_cmds::IngestArgs),
    /// Make the store match files and folders: add new, replace changed,
    /// remove gone ones (--prune); prints the counts.
    Sync(sync_cmd::SyncArgs),
    /// List stored documents.
    Ls(store_cmds::LsArgs),
    /// Show a document or one of its chunks.
    Show(store_show::ShowArgs),
    /// Remove documents.
    Rm(store_cmds::RmArgs),
    /// Store totals: documents, chunks, tokens, compression ratio, bytes on disk.
    Stats(store_cmds::StatsArgs),
    /// Verify every record and index of the store, and that it holds what its manifest says.
    Check(store_cmds::CheckArgs),
    /// Repair a damaged store: keep what is intact, re-ingest lost documents
    /// from their sources (--model), or restore them from an export.
    Recover(recover_cmd::RecoverArgs),
    /// Write the store to a portable file.
    Export(store_cmds::ExportArgs),
    /// Read a file written by `c3 export`.
    Import(store_cmds::ImportArgs),
    /// Combine stores and exports of one model (e.g. ingest shards) into a new store.
    Merge(merge_cmd::MergeArgs),
    /// Answer a question from the stored chunks (latents, or text with --mode text).
    Ask(common::AskArgs),
    /// The chunks that match a query best (BM25), with a snippet each; no model needed.
    Search(search_cmd::SearchArgs),
    /// Fill the prefix cache for documents, so the first question over them is fast too.
    Warm(warm_cmd::WarmArgs),
    /// The prefix cache: `stats` (what it holds) or `clear` (empty it).
    Cache(cache_cmd::CacheArgs),
    /// Reconstruct stored chunks from their latents.
    Expand(query_cmds::ExpandArgs),
    /// Reconstruction fidelity table over the store or a directory of texts.
    Eval(query_cmds::EvalArgs),
    /// Browse the store in a terminal UI (starts the `c3-tui` binary).
    Tui(tui_cmd::TuiArgs),
    /// Serve the store and the model over HTTP (OpenAI-compatible chat, streaming).
    Serve(serve_cmd::ServeArgs),
    /// The store as a Model Context Protocol server for agents: stdio, or
    /// streamable HTTP with --http ADDR (also at /mcp under `c3 serve`).
    Mcp(mcp_cmd::McpArgs),
    /// Download a checkpoint from the Hugging Face hub into the local cache.
    Pull(pull_cmd::PullArgs),
    /// Train or fine-tune the C3 cascade of --model (upstream's recipe by default).
    Train(Box<train_cmd::TrainArgs>),
}

/// Runs the parsed command; the result is the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let store = cli.global.store_dir();
    let ctx = common::ModelCtx {
        model: cli.global.model,
        download: cli.global.download,
        resolved: Default::default(),
        dtype: cli.global.dtype.dtype(),
        decoder_quant: cli.global.decoder_quant,
        encoder_precision: cli.global.encoder_precision,
        device: cli.global.device,
        kv_cache: cli.global.kv_cache,
        kv_cache_size: cli.global.kv_cache_size,
        kv_cache_dtype: cli.global.kv_cache_dtype.kv_dtype(),
    };
    let result = match cli.command {
        Command::Tokenize(a) => model_cmds::tokenize(&ctx, &a),
        Command::Encode(a) => model_cmds::encode(&ctx, &a),
        Command::Repeat(a) => model_cmds::repeat(&ctx, &a),
        Command::Ingest(a) => store_cmds::run_ingest(&store, &ctx, &a),
        Command::Sync(a) => sync_cmd::run(&store, &ctx, &a),
        Command::Ls(a) => store_cmds::run_ls(&store, &a),
        Command::Show(a) => store_show::run_show(&store, &a),
        Command::Rm(a) => store_cmds::run_rm(&store, &a),
        Command::Stats(a) => store_cmds::run_stats(&store, &a),
        Command::Check(a) => store_cmds::run_check(&store, &a),
        Command::Recover(a) => recover_cmd::run(&store, &ctx, &a),
        Command::Export(a) => store_cmds::run_export(&store, &a),
        Command::Import(a) => store_cmds::run_import(&store, &a),
        Command::Merge(a) => merge_cmd::run(&a),
        Command::Ask(a) => query_cmds::run_ask(&store, &ctx, &a),
        Command::Search(a) => search_cmd::run(&store, &a),
        Command::Warm(a) => warm_cmd::run(&store, &ctx, &a),
        Command::Cache(a) => cache_cmd::run(&store, &ctx, &a),
        Command::Expand(a) => query_cmds::run_expand(&store, &ctx, &a),
        Command::Eval(a) => query_cmds::run_eval(&store, &ctx, &a),
        Command::Tui(a) => tui_cmd::run(&store, &ctx, &a),
        Command::Serve(a) => serve_cmd::run(&store, ctx, &a),
        Command::Mcp(a) => mcp_cmd::run(&store, ctx, &a),
        Command::Pull(a) => pull_cmd::run(&a),
        Command::Train(a) => train_cmd::run(&store, &ctx, &a),
    };
    result.map_err(|e| serve_cmd::explain_lock(&store, e))
}
