//! `cargo xtask bench`: octet against the peers, every figure from one run.
//!
//! For each model: seeded calibration data (16 samples); octet's int8 file (`octet quantize`,
//! whole-process wall time) and AI Edge Quantizer's (`static_wi8_ai8` on a copy octet rewrote
//! with float32 weights and a signature, which AEQ needs; its in-process time, imports
//! excluded), each made three times, alternately, and timed by the median; then the latency of
//! LiteRT's default CPU path (XNNPACK, 1 thread) on the float, octet-int8 and AEQ-int8 files
//! and of `octet bench` on the float and octet-int8 files with each thread count. The latencies
//! are taken in rounds (`--rounds`, 3 by default): every configuration once per round, in turn,
//! a share of `--seconds` each, and the tables give the median of its rounds' medians, so that
//! a machine whose speed drifts over minutes (a shared host) slows every configuration alike
//! instead of whichever ran during a slow spell. The tables are Markdown, ready for
//! `docs/performance.md`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::process;
use crate::roundtrip::default_models;
use crate::venv::{self, Requirements, Venv};
use crate::workspace::Workspace;

/// Calibration samples for both quantizers.
const CALIBRATION_SAMPLES: usize = 16;

/// Runs of each quantizer per model; the tables give the median.
const QUANTIZE_RUNS: usize = 3;

/// The median of `values` (the upper one of the middle two for an even count), `None` if empty.
fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// One JSON line of `octet bench --json` or `litert_bench.py`.
#[derive(Debug, Deserialize)]
struct Timing {
    median_ms: f64,
    #[serde(default)]
    macs: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CalibFiles {
    pub(crate) inputs: Vec<PathBuf>,
    pub(crate) npz: PathBuf,
}

#[derive(Debug, Deserialize)]
struct AeqRun {
    seconds: f64,
}

pub(crate) fn json_line<T: for<'de> Deserialize<'de>>(command: &mut Command) -> Result<T> {
    let stdout = process::stdout_of(command)?;
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("unexpected output: {line}"))
}

/// The line of a failed command's error that says why (the last one mentioning an error, else
/// the first), for a table's notes.
pub(crate) fn failure_reason(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    text.lines()
        .rev()
        .find(|l| l.contains("error") || l.contains("Error"))
        .unwrap_or_else(|| text.lines().next().unwrap_or("failed"))
        .trim()
        .to_owned()
}

/// What `cargo xtask bench` was asked to do.
pub struct BenchOptions {
    /// Models (default: the fixtures and the fetched third-party models).
    pub paths: Vec<PathBuf>,
    /// Seconds of measurement per model, runtime and file, over all rounds.
    pub seconds: f64,
    /// Rounds over all configurations of a model; the tables give the median round.
    pub rounds: usize,
    /// Thread counts for octet (LiteRT always runs 1 thread, its benchmark's default).
    pub threads: Vec<usize>,
    /// Skip the quantizers (latency of the float files only).
    pub no_quantize: bool,
}

/// Everything measured for one model.
#[derive(Default)]
struct Row {
    name: String,
    macs: Option<u64>,
    litert_float: Option<f64>,
    litert_octet: Option<f64>,
    litert_aeq: Option<f64>,
    /// Per thread count: (octet on the float file, octet on its int8 file).
    octet: Vec<(usize, Option<f64>, Option<f64>)>,
    octet_quantize_s: Option<f64>,
    aeq_quantize_s: Option<f64>,
    notes: Vec<String>,
}

impl Row {
    fn octet_at(&self, threads: usize) -> (Option<f64>, Option<f64>) {
        self.octet
            .iter()
            .find(|(t, ..)| *t == threads)
            .map_or((None, None), |&(_, f, q)| (f, q))
    }

    fn fastest_litert(&self) -> Option<f64> {
        [self.litert_float, self.litert_octet, self.litert_aeq]
            .into_iter()
            .flatten()
            .min_by(f64::total_cmp)
    }
}

/// Runs the benchmark.
pub fn run(workspace: &Workspace, options: &BenchOptions) -> Result<()> {
    if options.threads.is_empty() || options.threads.contains(&0) {
        bail!("--threads takes thread counts of at least 1");
    }
    if options.rounds == 0 || !(options.seconds.is_finite() && options.seconds > 0.0) {
        bail!("--rounds must be at least 1 and --seconds positive");
    }
    let venv = venv::ensure(
        workspace,
        if options.no_quantize {
            Requirements::Check
        } else {
            Requirements::Peers
        },
    )?;
    let octet = workspace.build_octet()?;
    let models = if options.paths.is_empty() {
        default_models(workspace)?
    } else {
        options.paths.clone()
    };
    // Each model's files go to a folder named after its file stem, which names it in the
    // tables too.
    let mut stems = std::collections::HashSet::new();
    for model in &models {
        if !stems.insert(model.file_stem()) {
            bail!(
                "two models are named {}: the tables and the output folders go by file name",
                model.display()
            );
        }
    }
    let out_dir = workspace.cache_dir("bench");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let mut rows = Vec::new();
    for model in &models {
        let row = bench_model(workspace, &venv, &octet, model, &out_dir, options);
        print_progress(&row);
        rows.push(row);
    }
    println!();
    print_tables(&rows, options);
    Ok(())
}

fn bench_model(
    workspace: &Workspace,
    venv: &Venv,
    octet: &Path,
    model: &Path,
    out_dir: &Path,
    options: &BenchOptions,
) -> Row {
    let stem = model
        .file_stem()
        .map_or_else(|| "model".to_owned(), |s| s.to_string_lossy().into_owned());
    let dir = out_dir.join(&stem);
    let mut row = Row {
        name: stem,
        ..Row::default()
    };
    let seconds = (options.seconds / options.rounds as f64).to_string();
    let litert = |file: &Path| -> Result<f64> {
        let timing: Timing = json_line(
            venv.python_command()
                .arg(workspace.python_script("litert_bench.py"))
                .arg(file)
                .args(["--threads", "1", "--seconds", &seconds]),
        )?;
        Ok(timing.median_ms)
    };
    let octet_bench = |file: &Path, threads: usize| -> Result<Timing> {
        json_line(
            Command::new(octet)
                .arg("bench")
                .arg(file)
                .args(["--json", "--seconds", &seconds, "--threads"])
                .arg(threads.to_string()),
        )
    };
    let note = |notes: &mut Vec<String>, what: &str, e: &anyhow::Error| {
        notes.push(format!("{what}: {}", failure_reason(e)));
    };

    let mut octet_int8: Option<PathBuf> = None;
    let mut octet_own: Option<PathBuf> = None;
    let mut aeq_int8: Option<PathBuf> = None;
    if !options.no_quantize {
        match quantize_both(workspace, venv, octet, model, &dir) {
            Ok(q) => {
                row.octet_quantize_s = q.octet_seconds;
                row.aeq_quantize_s = q.aeq_seconds;
                octet_int8 = q.octet_file;
                octet_own = q.octet_own_file;
                aeq_int8 = q.aeq_file;
                for (what, e) in q.errors {
                    note(&mut row.notes, what, &e);
                }
            }
            Err(e) => note(&mut row.notes, "calibration data", &e),
        }
    }
    // Every configuration once per round; one that fails is noted and not tried again.
    let mut float = Latency::new("LiteRT float");
    let mut litert_octet = Latency::new("LiteRT on octet int8");
    let mut litert_aeq = Latency::new("LiteRT on AEQ int8");
    let mut octet_runs: Vec<(usize, Latency, Latency)> = options
        .threads
        .iter()
        .map(|&t| (t, Latency::new("octet float"), Latency::new("octet int8")))
        .collect();
    for _ in 0..options.rounds {
        float.time(|| litert(model));
        if let Some(file) = &octet_int8 {
            litert_octet.time(|| litert(file));
        }
        if let Some(file) = &aeq_int8 {
            litert_aeq.time(|| litert(file));
        }
        for (threads, float, int8) in &mut octet_runs {
            float.time(|| {
                let t = octet_bench(model, *threads)?;
                row.macs = row.macs.or(t.macs);
                Ok(t.median_ms)
            });
            if let Some(file) = &octet_own {
                int8.time(|| Ok(octet_bench(file, *threads)?.median_ms));
            }
        }
    }
    row.litert_float = float.finish(&mut row.notes, &note);
    row.litert_octet = litert_octet.finish(&mut row.notes, &note);
    row.litert_aeq = litert_aeq.finish(&mut row.notes, &note);
    for (threads, mut float, mut int8) in octet_runs {
        let float = float.finish(&mut row.notes, &note);
        let int8 = int8.finish(&mut row.notes, &note);
        row.octet.push((threads, float, int8));
    }
    row
}

/// One configuration's latency over the rounds.
struct Latency {
    what: &'static str,
    medians: Vec<f64>,
    error: Option<anyhow::Error>,
}

impl Latency {
    fn new(what: &'static str) -> Self {
        Latency {
            what,
            medians: Vec::new(),
            error: None,
        }
    }

    /// Runs one round's measurement, unless an earlier round failed.
    fn time(&mut self, measure: impl FnOnce() -> Result<f64>) {
        if self.error.is_none() {
            match measure() {
                Ok(ms) => self.medians.push(ms),
                Err(e) => self.error = Some(e),
            }
        }
    }

    /// The median round, noting the error if a round failed.
    fn finish(
        &mut self,
        notes: &mut Vec<String>,
        note: &impl Fn(&mut Vec<String>, &str, &anyhow::Error),
    ) -> Option<f64> {
        if let Some(e) = &self.error {
            note(notes, self.what, e);
            return None;
        }
        median(&mut self.medians)
    }
}

/// The two quantizers' results for one model.
struct Quantized {
    /// octet's int8 file for LiteRT (the default `--target litert`).
    octet_file: Option<PathBuf>,
    /// octet's int8 file for its own runtime (`--target octet`).
    octet_own_file: Option<PathBuf>,
    octet_seconds: Option<f64>,
    aeq_file: Option<PathBuf>,
    aeq_seconds: Option<f64>,
    errors: Vec<(&'static str, anyhow::Error)>,
}

fn quantize_both(
    workspace: &Workspace,
    venv: &Venv,
    octet: &Path,
    model: &Path,
    dir: &Path,
) -> Result<Quantized> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let calib: CalibFiles = json_line(
        venv.python_command()
            .arg(workspace.python_script("peers.py"))
            .arg("calib")
            .arg(model)
            .arg(dir.join("calib.npy"))
            .args(["--samples", &CALIBRATION_SAMPLES.to_string()]),
    )?;
    let mut result = Quantized {
        octet_file: None,
        octet_seconds: None,
        octet_own_file: None,
        aeq_file: None,
        aeq_seconds: None,
        errors: Vec::new(),
    };

    // Both quantizers QUANTIZE_RUNS times, alternating so that both see the same machine
    // state, and the median of each: a single run of either varies by tens of percent.
    let octet_file = dir.join("octet_int8.tflite");
    let aeq_input = dir.join("float_for_aeq.tflite");
    let aeq_file = dir.join("aeq_int8.tflite");
    let mut aeq_ready = match aeq_ready_copy(model, &aeq_input) {
        Ok(()) => true,
        Err(e) => {
            result.errors.push(("AEQ", e));
            false
        }
    };
    let mut octet_ok = true;
    let (mut octet_runs, mut aeq_runs) = (Vec::new(), Vec::new());
    for _ in 0..QUANTIZE_RUNS {
        if octet_ok {
            // octet: the whole process, as a user would time it.
            let started = Instant::now();
            let status = process::stdout_of(
                Command::new(octet)
                    .arg("quantize")
                    .arg(model)
                    .arg("-o")
                    .arg(&octet_file)
                    .arg("--calib")
                    .arg(&calib.npz)
                    .args(["--samples", &CALIBRATION_SAMPLES.to_string()]),
            );
            let elapsed = started.elapsed().as_secs_f64();
            match status {
                Ok(_) => octet_runs.push(elapsed),
                Err(e) => {
                    result.errors.push(("octet quantize", e));
                    octet_ok = false;
                }
            }
        }
        if aeq_ready {
            // AI Edge Quantizer, on a float32 copy with a signature, in a fresh process each
            // time (its in-process time, imports excluded).
            let aeq = json_line::<AeqRun>(
                venv.python_command()
                    .arg(workspace.python_script("peers.py"))
                    .arg("aeq")
                    .arg(&aeq_input)
                    .arg(&aeq_file)
                    .args(&calib.inputs),
            );
            match aeq {
                Ok(run) => aeq_runs.push(run.seconds),
                Err(e) => {
                    result.errors.push(("AEQ", e));
                    aeq_ready = false;
                }
            }
        }
    }
    if octet_runs.len() == QUANTIZE_RUNS {
        result.octet_seconds = median(&mut octet_runs);
        result.octet_file = Some(octet_file);
        // The same job for octet's own runtime (`--target octet`: every op with an integer
        // kernel integer), untimed: the timed file is for LiteRT, the default target.
        let own_file = dir.join("octet_int8_own.tflite");
        let own = process::stdout_of(
            Command::new(octet)
                .arg("quantize")
                .arg(model)
                .arg("-o")
                .arg(&own_file)
                .args(["--target", "octet", "--calib"])
                .arg(&calib.npz)
                .args(["--samples", &CALIBRATION_SAMPLES.to_string()]),
        );
        match own {
            Ok(_) => result.octet_own_file = Some(own_file),
            Err(e) => result.errors.push(("octet quantize --target octet", e)),
        }
    }
    if aeq_runs.len() == QUANTIZE_RUNS {
        result.aeq_seconds = median(&mut aeq_runs);
        result.aeq_file = Some(aeq_file);
    }
    Ok(result)
}

/// Writes `model` with sparse and float16 weights turned into dense float32 and a
/// `serving_default` signature over its inputs and outputs, if it has none: AI Edge Quantizer
/// rejects models without these.
pub(crate) fn aeq_ready_copy(model: &Path, out: &Path) -> Result<()> {
    let mut m = octet_tflite::read_file(model)
        .with_context(|| format!("cannot read {}", model.display()))?;
    octet_quant::passes::fold_to_float(&mut m)?;
    if m.signature_defs.is_empty() {
        let sg = m.main_subgraph().context("no subgraph")?;
        let named = |ids: &[octet_core::TensorId], prefix: &str| {
            ids.iter()
                .enumerate()
                .map(|(i, &tensor)| octet_core::SignatureTensor {
                    name: format!("{prefix}_{i}"),
                    tensor,
                })
                .collect::<Vec<_>>()
        };
        let signature = octet_core::SignatureDef {
            key: "serving_default".into(),
            subgraph: 0,
            inputs: named(&sg.inputs, "input"),
            outputs: named(&sg.outputs, "output"),
        };
        m.signature_defs.push(signature);
    }
    octet_tflite::write_file(out, &m).with_context(|| format!("cannot write {}", out.display()))
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"))
}

fn ratio(num: Option<f64>, den: Option<f64>) -> String {
    match (num, den) {
        (Some(n), Some(d)) if d > 0.0 => format!("{:.2}x", n / d),
        _ => "-".to_owned(),
    }
}

fn print_progress(row: &Row) {
    let (float, int8) = row.octet_at(1);
    eprintln!(
        "{}: LiteRT float {} / octet-int8 {} / AEQ-int8 {} ms; octet float {} / int8 {} ms",
        row.name,
        ms(row.litert_float),
        ms(row.litert_octet),
        ms(row.litert_aeq),
        ms(float),
        ms(int8)
    );
    for n in &row.notes {
        eprintln!("    {n}");
    }
}

/// The machine's nominal clock in GHz, from /proc/cpuinfo (for the peak column).
fn clock_ghz() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = info
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    Some(mhz / 1000.0)
}

fn print_tables(rows: &[Row], options: &BenchOptions) {
    let ghz = clock_ghz();
    println!(
        "Latency, median of one inference in ms, median of {} rounds taken in turn (LiteRT: \
         default CPU path = XNNPACK, 1 thread):",
        options.rounds
    );
    println!();
    println!(
        "| model | MMACs | LiteRT float | LiteRT AEQ int8 | LiteRT octet int8 | octet float | octet int8 | octet float / LiteRT float | octet int8 / fastest LiteRT |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let (float, int8) = row.octet_at(1);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.name,
            row.macs
                .map_or("-".into(), |m| format!("{:.1}", m as f64 / 1e6)),
            ms(row.litert_float),
            ms(row.litert_aeq),
            ms(row.litert_octet),
            ms(float),
            ms(int8),
            ratio(float, row.litert_float),
            ratio(int8, row.fastest_litert()),
        );
    }
    if options.threads.len() > 1 {
        println!();
        println!("octet with more threads (speed-up over 1 thread):");
        println!();
        let header: Vec<String> = options
            .threads
            .iter()
            .filter(|&&t| t != 1)
            .flat_map(|t| [format!("float {t}T"), format!("int8 {t}T")])
            .collect();
        println!("| model | {} |", header.join(" | "));
        println!("|---|{}", "---:|".repeat(header.len()));
        for row in rows {
            let (f1, q1) = row.octet_at(1);
            let cells: Vec<String> = options
                .threads
                .iter()
                .filter(|&&t| t != 1)
                .flat_map(|&t| {
                    let (f, q) = row.octet_at(t);
                    [
                        format!("{} ({})", ms(f), ratio(f1, f)),
                        format!("{} ({})", ms(q), ratio(q1, q)),
                    ]
                })
                .collect();
            println!("| {} | {} |", row.name, cells.join(" | "));
        }
    }
    println!();
    println!(
        "Throughput at 1 thread against the int8 peak (64 int8 MAC/cycle/core with VNNI{}):",
        ghz.map_or(String::new(), |g| format!(", {g:.2} GHz nominal"))
    );
    println!();
    println!("| model | octet float GMAC/s | octet int8 GMAC/s | int8 % of peak |");
    println!("|---|---:|---:|---:|");
    for row in rows {
        let (float, int8) = row.octet_at(1);
        let rate = |t: Option<f64>| match (row.macs, t) {
            (Some(m), Some(t)) if t > 0.0 => Some(m as f64 / (t * 1e6)),
            _ => None,
        };
        let peak = ghz.map(|g| 64.0 * g);
        let percent = match (rate(int8), peak) {
            (Some(r), Some(p)) => format!("{:.1} %", 100.0 * r / p),
            _ => "-".into(),
        };
        let cell = |r: Option<f64>| r.map_or("-".into(), |r| format!("{r:.1}"));
        println!(
            "| {} | {} | {} | {percent} |",
            row.name,
            cell(rate(float)),
            cell(rate(int8))
        );
    }
    if !options.no_quantize {
        println!();
        println!(
            "Quantization to int8 with {CALIBRATION_SAMPLES} calibration samples, seconds, median of {QUANTIZE_RUNS} runs each, alternating (octet: whole process; AEQ: in-process, imports excluded):"
        );
        println!();
        println!("| model | octet quantize | AEQ static_wi8_ai8 | octet / AEQ |");
        println!("|---|---:|---:|---:|");
        for row in rows {
            println!(
                "| {} | {} | {} | {} |",
                row.name,
                row.octet_quantize_s
                    .map_or("-".into(), |s| format!("{s:.3}")),
                row.aeq_quantize_s.map_or("-".into(), |s| format!("{s:.3}")),
                ratio(row.octet_quantize_s, row.aeq_quantize_s)
            );
        }
    }
    let noted: Vec<&Row> = rows.iter().filter(|r| !r.notes.is_empty()).collect();
    if !noted.is_empty() {
        println!();
        println!("Not measured:");
        for row in noted {
            for n in &row.notes {
                println!("- {}: {n}", row.name);
            }
        }
    }
}
