mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        // The reader of our output went away (`c3 ls | head`): nothing is
        // wrong, as for coreutils.
        Err(_) if cli::common::stdout_closed() => ExitCode::SUCCESS,
        Err(e) => {
            c3::note!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
