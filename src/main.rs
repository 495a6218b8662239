use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod cli;
use cli::store_cmds::{self as sc};

#[derive(Parser, Debug)]
#[command(name = "c3", version, about = "Compressed long-context memory (C3)")]
struct Cli {
    /// C3 checkpoint directory.
    #[arg(long, global = true, env = "C3_MODEL", value_name = "DIR")]
    model: Option<PathBuf>,
    /// Memory store directory [default: the platform data dir, e.g. ~/.local/share/c3/store].
    #[arg(long, global = true, env = "C3_STORE", value_name = "DIR")]
    store: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Chunk, compress and store files, directories or stdin.
    Ingest(sc::IngestArgs),
    /// List stored documents.
    Ls(sc::LsArgs),
    /// Show a document or one of its chunks.
    Show(sc::ShowArgs),
    /// Remove documents.
    Rm(sc::RmArgs),
    /// Store totals.
    Stats(sc::StatsArgs),
    /// Verify every record and index.
    Check(sc::CheckArgs),
    /// Write the store to a portable file.
    Export(sc::ExportArgs),
    /// Read a file written by `c3 export`.
    Import(sc::ImportArgs),
}

fn main() {
    let cli = Cli::parse();
    let store = cli.store.clone().unwrap_or_else(sc::default_store_dir);
    let model = cli.model.as_deref();
    let result = match &cli.command {
        Command::Ingest(a) => sc::run_ingest(&store, model, a),
        Command::Ls(a) => sc::run_ls(&store, a),
        Command::Show(a) => sc::run_show(&store, a),
        Command::Rm(a) => sc::run_rm(&store, a),
        Command::Stats(a) => sc::run_stats(&store, a),
        Command::Check(a) => sc::run_check(&store, a),
        Command::Export(a) => sc::run_export(&store, a),
        Command::Import(a) => sc::run_import(&store, a),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("c3: error: {e:#}");
            std::process::exit(1);
        }
    }
}
