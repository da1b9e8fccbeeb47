//! `octet`: quantize, run and inspect TensorFlow Lite models without TensorFlow.
//!
//! Exit codes: 0 success, 1 bad input (unreadable or invalid model, bad data), 2 bad usage.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod inspect;

/// Quantize, run and inspect TensorFlow Lite models, natively.
#[derive(Parser)]
#[command(name = "octet", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a model's structure: inputs, outputs, operators, dtypes, weights, signatures.
    Inspect(inspect::InspectArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => inspect::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
