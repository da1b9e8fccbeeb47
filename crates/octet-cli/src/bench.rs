//! `octet bench MODEL [--threads N] [--json]`: median latency of one inference.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use octet_core::DType;

use crate::run::load_interpreter;

/// Arguments of `octet bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// The .tflite model.
    model: PathBuf,
    /// Threads to use. The runtime is single-threaded for now; other values are accepted and
    /// reported, so scripts written for later versions keep working.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print one JSON line `{"median_ms": ..., "runs": ...}`.
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

/// Runs `octet bench`.
pub fn run(args: &BenchArgs) -> Result<()> {
    let mut interpreter = load_interpreter(&args.model)?;
    for i in 0..interpreter.num_inputs() {
        let info = interpreter.input_info(i)?.clone();
        let mut bytes = vec![0u8; info.byte_len()];
        fill_input(&mut bytes, info.dtype, 0x5eed + i as u64);
        interpreter.set_input(i, &bytes)?;
    }
    if args.threads != 1 {
        eprintln!("note: octet's runtime is single-threaded for now; running with 1 thread");
    }
    // Warm up: caches, branch predictors, page faults in the arena.
    let warm_until = Instant::now() + Duration::from_millis(200);
    let mut warmups = 0;
    while warmups < 3 || (Instant::now() < warm_until && warmups < 50) {
        interpreter.invoke()?;
        warmups += 1;
    }
    let budget = Duration::from_secs_f64(args.seconds.max(0.0));
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < 10 || (start.elapsed() < budget && times.len() < 100_000) {
        let t = Instant::now();
        interpreter.invoke()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    if args.json {
        println!("{{\"median_ms\": {median:.6}, \"runs\": {}}}", times.len());
    } else {
        println!(
            "{}: median {median:.4} ms over {} runs (min {:.4} ms, p90 {:.4} ms), 1 thread",
            args.model.display(),
            times.len(),
            times[0],
            times[times.len() * 9 / 10]
        );
    }
    Ok(())
}
