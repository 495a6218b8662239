use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = c3_tui::cli::Args::parse();
    match c3_tui::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            c3::note!("c3-tui: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
