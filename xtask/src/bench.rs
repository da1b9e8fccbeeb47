//! `cargo xtask bench`: octet's and LiteRT's single-thread latency per model, measured in one
//! run (the two are interleaved model by model, so both see the same machine state), and their
//! ratio. LiteRT runs with its default (optimized) kernels and, for reference, its reference
//! kernels.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::process;
use crate::roundtrip::default_models;
use crate::venv::{self, Requirements};
use crate::workspace::Workspace;

/// One JSON line of `octet bench --json` or `litert_bench.py`.
#[derive(Debug, Deserialize)]
struct Timing {
    median_ms: f64,
}

fn timing(command: &mut Command) -> Result<Timing> {
    let stdout = process::stdout_of(command)?;
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("unexpected timing output: {line}"))
}

/// Benchmarks `paths` (default: the fixtures and the fetched third-party models).
pub fn run(workspace: &Workspace, paths: &[PathBuf], seconds: f64) -> Result<()> {
    let venv = venv::ensure(workspace, Requirements::Check)?;
    process::run(
        Command::new("cargo")
            .args(["build", "--release", "--quiet", "-p", "octet-cli"])
            .current_dir(workspace.root()),
    )?;
    let octet = workspace.root().join("target/release/octet");
    let script = workspace.root().join("xtask/python/litert_bench.py");
    let models = if paths.is_empty() {
        default_models(workspace)?
    } else {
        paths.to_vec()
    };
    let seconds_arg = seconds.to_string();
    println!(
        "{:<58} | {:>10} | {:>12} | {:>12} | {:>14}",
        "model (1 thread, median of one inference)",
        "octet ms",
        "LiteRT ms",
        "octet/LiteRT",
        "LiteRT ref ms"
    );
    println!("{}", "-".repeat(118));
    for model in &models {
        let name = display_name(workspace.root(), model);
        let octet_timing = timing(Command::new(&octet).arg("bench").arg(model).args([
            "--json",
            "--threads",
            "1",
            "--seconds",
            &seconds_arg,
        ]));
        let litert = |resolver: &str| {
            timing(venv.python_command().arg(&script).arg(model).args([
                "--threads",
                "1",
                "--seconds",
                &seconds_arg,
                "--resolver",
                resolver,
            ]))
        };
        let litert_auto = litert("AUTO");
        let litert_ref = litert("BUILTIN_REF");
        let cell = |t: &Result<Timing>| match t {
            Ok(t) => format!("{:.4}", t.median_ms),
            Err(_) => "-".to_owned(),
        };
        let ratio = match (&octet_timing, &litert_auto) {
            (Ok(o), Ok(l)) if l.median_ms > 0.0 => format!("{:.2}x", o.median_ms / l.median_ms),
            _ => "-".to_owned(),
        };
        println!(
            "{name:<58} | {:>10} | {:>12} | {ratio:>12} | {:>14}",
            cell(&octet_timing),
            cell(&litert_auto),
            cell(&litert_ref)
        );
        if let Err(e) = &octet_timing {
            let first = format!("{e:#}");
            let reason = first
                .lines()
                .find(|l| l.contains("error:"))
                .unwrap_or("failed");
            println!("    octet: {}", reason.trim());
        }
    }
    Ok(())
}

/// Path relative to the workspace root, for the table.
fn display_name(root: &Path, model: &Path) -> String {
    model
        .strip_prefix(root)
        .unwrap_or(model)
        .display()
        .to_string()
}
