//! `octet`: quantize, run and inspect TensorFlow Lite models without TensorFlow.
//!
//! Exit codes: 0 success, 1 bad input (unreadable or invalid model, bad data), 2 bad usage.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod calib;
mod compare;
mod inspect;
mod npy;
mod params;
mod quantize;
mod run;

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
    /// Run a model on .npy inputs and write its outputs as .npy.
    Run(run::RunArgs),
    /// Compare a quantized model with its float original, output by output and layer by layer.
    Compare(compare::CompareArgs),
    /// Measure a model's median inference latency.
    Bench(bench::BenchArgs),
    /// Quantize a float model (int8, uint8, int16x8, dynamic range, fp16, int8 weights).
    Quantize(quantize::QuantizeArgs),
    /// Convert between mean/std_dev, scale/zero point and float ranges.
    Params(params::ParamsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => inspect::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Compare(args) => compare::run(&args),
        Command::Params(args) => params::run(&args),
        Command::Quantize(args) => quantize::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
