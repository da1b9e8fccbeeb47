//! `octet bench MODEL [--threads N] [--profile] [--json]`: latency of one inference, and where
//! it goes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use octet_core::DType;
use octet_runtime::Interpreter;
use serde_json::json;

use crate::run::{RuntimeArgs, load_interpreter};

/// Arguments of `octet bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// The .tflite model.
    model: PathBuf,
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// Also time every operator: a table of op, index, output shape, MACs, ms, share of the
    /// total and GMAC/s (like LiteRT's benchmark_model --enable_op_profiling).
    #[arg(long)]
    profile: bool,
    /// Print one JSON line: median_ms, min_ms, p90_ms, runs, prepare_ms, peak_memory_bytes,
    /// threads, isa, macs (and the operators with --profile).
    #[arg(long)]
    json: bool,
    /// Minimum time to spend measuring, in seconds.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
}

/// Deterministic pseudo-random bytes for inputs (xorshift), valid for every dtype.
fn fill_input(bytes: &mut [u8], dtype: DType, seed: u64) {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    match dtype {
        DType::Float32 => {
            for chunk in bytes.chunks_exact_mut(4) {
                let x = (next() % 2000) as f32 / 1000.0 - 1.0;
                chunk.copy_from_slice(&x.to_le_bytes());
            }
        }
        DType::Bool => bytes.iter_mut().for_each(|b| *b = (next() % 2) as u8),
        _ => bytes.iter_mut().for_each(|b| *b = next() as u8),
    }
}

/// The process's peak resident memory in bytes (Linux; `None` elsewhere).
fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `duration` in milliseconds, as the double nearest to the whole nanoseconds (so that JSON
/// shows `0.001363`, not `0.0013629999999999998`).
fn millis(duration: Duration) -> f64 {
    duration.as_nanos() as f64 / 1e6
}

/// Runs `octet bench`.
pub fn run(args: &BenchArgs) -> Result<()> {
    if !args.seconds.is_finite() || args.seconds < 0.0 || args.seconds > 3600.0 {
        bail!("--seconds must be between 0 and 3600");
    }
    let prepare_started = Instant::now();
    let mut interpreter = load_interpreter(&args.model, args.runtime.options(1)?)?;
    let prepare_ms = millis(prepare_started.elapsed());
    for i in 0..interpreter.num_inputs() {
        let info = interpreter.input_info(i)?.clone();
        let mut bytes = vec![0u8; info.byte_len()];
        fill_input(&mut bytes, info.dtype, 0x5eed + i as u64);
        interpreter.set_input(i, &bytes)?;
    }
    // Warm up: caches, branch predictors, page faults in the arena.
    let warm_until = Instant::now() + Duration::from_millis(200);
    let mut warmups = 0;
    while warmups < 3 || (Instant::now() < warm_until && warmups < 50) {
        interpreter.invoke()?;
        warmups += 1;
    }
    let budget = Duration::from_secs_f64(args.seconds);
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < 10 || (start.elapsed() < budget && times.len() < 100_000) {
        let t = Instant::now();
        interpreter.invoke()?;
        times.push(millis(t.elapsed()));
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let min = times[0];
    let p90 = times[(times.len() * 9 / 10).min(times.len() - 1)];
    let profile = if args.profile {
        Some(profile(&mut interpreter, times.len().min(200))?)
    } else {
        None
    };
    let macs: u64 = interpreter.operators().iter().map(|o| o.macs).sum();
    let peak = peak_memory_bytes();
    if args.json {
        let mut doc = json!({
            "median_ms": median,
            "min_ms": min,
            "p90_ms": p90,
            "runs": times.len(),
            "prepare_ms": prepare_ms,
            "peak_memory_bytes": peak,
            "threads": interpreter.threads(),
            "isa": interpreter.isa().name(),
            "macs": macs,
        });
        if let Some(rows) = &profile {
            doc["operators"] = rows
                .iter()
                .map(|r| {
                    json!({
                        "index": r.index,
                        "op": r.op,
                        "output_shape": r.output_shape,
                        "macs": r.macs,
                        "ms": r.ms,
                    })
                })
                .collect();
        }
        println!("{doc}");
        return Ok(());
    }
    println!(
        "{}: median {median:.4} ms over {} runs (min {min:.4} ms, p90 {p90:.4} ms), {} thread(s), {}",
        args.model.display(),
        times.len(),
        interpreter.threads(),
        interpreter.isa()
    );
    println!(
        "  {:.1} M MACs, {:.1} GMAC/s at the median; prepared in {prepare_ms:.1} ms{}",
        macs as f64 / 1e6,
        macs as f64 / (median * 1e6),
        peak.map_or(String::new(), |p| format!(
            "; peak memory {:.1} MiB",
            p as f64 / 1048576.0
        ))
    );
    if let Some(rows) = profile {
        print_profile(&rows);
    }
    Ok(())
}

/// One operator's line of the profile.
struct ProfileRow {
    index: usize,
    op: String,
    output_shape: Vec<usize>,
    macs: u64,
    /// Mean milliseconds per run.
    ms: f64,
}

/// Times every operator over `runs` more runs.
fn profile(interpreter: &mut Interpreter, runs: usize) -> Result<Vec<ProfileRow>> {
    let runs = runs.max(10);
    let mut seconds = vec![0f64; interpreter.operators().len()];
    for _ in 0..runs {
        interpreter.invoke_profiled(&mut seconds)?;
    }
    Ok(interpreter
        .operators()
        .iter()
        .zip(&seconds)
        .map(|(o, s)| ProfileRow {
            index: o.index,
            op: o.op.clone(),
            output_shape: o.output_shape.clone(),
            macs: o.macs,
            ms: s * 1e3 / runs as f64,
        })
        .collect())
}

fn print_profile(rows: &[ProfileRow]) {
    let total: f64 = rows.iter().map(|r| r.ms).sum();
    println!();
    println!(
        "  {:>5}  {:<22} {:<20} {:>10} {:>9} {:>6} {:>8}",
        "index", "op", "output", "MACs", "ms", "%", "GMAC/s"
    );
    for r in rows {
        let shape = format!("{:?}", r.output_shape);
        let rate = if r.macs > 0 && r.ms > 0.0 {
            format!("{:.1}", r.macs as f64 / (r.ms * 1e6))
        } else {
            String::new()
        };
        println!(
            "  {:>5}  {:<22} {:<20} {:>10} {:>9.4} {:>6.1} {:>8}",
            r.index,
            r.op,
            shape,
            r.macs,
            r.ms,
            100.0 * r.ms / total.max(f64::MIN_POSITIVE),
            rate
        );
    }
    // Totals by op type, largest first.
    let mut by_op: Vec<(String, f64, u64, usize)> = Vec::new();
    for r in rows {
        match by_op.iter_mut().find(|(op, ..)| *op == r.op) {
            Some(entry) => {
                entry.1 += r.ms;
                entry.2 += r.macs;
                entry.3 += 1;
            }
            None => by_op.push((r.op.clone(), r.ms, r.macs, 1)),
        }
    }
    by_op.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!();
    println!(
        "  {:<22} {:>5} {:>9} {:>6} {:>8}",
        "op", "count", "ms", "%", "GMAC/s"
    );
    for (op, ms, macs, count) in by_op {
        let rate = if macs > 0 && ms > 0.0 {
            format!("{:.1}", macs as f64 / (ms * 1e6))
        } else {
            String::new()
        };
        println!(
            "  {op:<22} {count:>5} {ms:>9.4} {:>6.1} {rate:>8}",
            100.0 * ms / total.max(f64::MIN_POSITIVE)
        );
    }
    println!("  {:<22} {:>5} {total:>9.4}", "total", rows.len());
}
