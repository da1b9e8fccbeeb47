//! `cargo xtask runtime-check`: run each model with `octet run` and with LiteRT on the same
//! seeded inputs, and compare: integer outputs must be identical, float outputs within 1e-5 of
//! the output's largest magnitude. LiteRT's reference kernels (BUILTIN_REF) are the reference;
//! where they cannot run a model (custom ops), LiteRT's default resolver is.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::process;
use crate::roundtrip::default_models;
use crate::venv::{self, Requirements};
use crate::workspace::Workspace;

#[derive(Debug, Deserialize)]
struct OutputComparison {
    output: usize,
    ok: bool,
    #[serde(default)]
    dtype: String,
    #[serde(default)]
    max_abs_diff: Option<f64>,
    #[serde(default)]
    rel_to_max: Option<f64>,
    #[serde(default)]
    mismatches: Option<u64>,
    #[serde(default)]
    detail: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Comparison {
    resolver: Option<String>,
    outputs: Vec<OutputComparison>,
}

/// Checks `paths` (default: fixtures and fetched third-party models); fails if any model octet
/// runs differs from LiteRT. Models octet cannot run are listed with the reason.
pub fn run(workspace: &Workspace, paths: &[PathBuf], samples: usize) -> Result<()> {
    let venv = venv::ensure(workspace, Requirements::Check)?;
    process::run(
        Command::new("cargo")
            .args(["build", "--release", "--quiet", "-p", "octet-cli"])
            .current_dir(workspace.root()),
    )?;
    let octet = workspace.root().join("target/release/octet");
    let script = workspace.root().join("xtask/python/litert_reference.py");
    let models = if paths.is_empty() {
        default_models(workspace)?
    } else {
        paths.to_vec()
    };
    let (mut matched, mut failed, mut not_run) = (0, 0, 0);
    for model in &models {
        let name = model
            .strip_prefix(workspace.root())
            .unwrap_or(model)
            .display()
            .to_string();
        let stem = model
            .file_stem()
            .context("model without a file name")?
            .to_string_lossy()
            .into_owned();
        let dir = workspace.cache_dir("runtime-check").join(&stem);
        let octet_dir = dir.join("octet");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        process::stdout_of(
            venv.python_command()
                .arg(&script)
                .arg("make")
                .arg(model)
                .arg(&dir)
                .args(["--samples", &samples.to_string()]),
        )?;
        let inputs = input_files(&dir)?;
        let mut run = Command::new(&octet);
        run.arg("run").arg(model);
        for input in &inputs {
            run.arg("--input").arg(input);
        }
        run.arg("--output-dir").arg(&octet_dir);
        if let Err(e) = process::stdout_of(&mut run) {
            let text = format!("{e:#}");
            let reason = text
                .lines()
                .find(|l| l.starts_with("error:"))
                .unwrap_or("octet failed")
                .to_owned();
            println!("{name}: octet cannot run it: {reason}");
            not_run += 1;
            continue;
        }
        let json = process::stdout_of(
            venv.python_command()
                .arg(&script)
                .arg("compare")
                .arg(&dir)
                .arg(&octet_dir),
        )?;
        let comparison: Comparison = serde_json::from_str(json.trim())
            .with_context(|| format!("unexpected comparison output: {json}"))?;
        let Some(resolver) = comparison.resolver else {
            println!("{name}: LiteRT cannot run it; nothing to compare");
            not_run += 1;
            continue;
        };
        let ok = comparison.outputs.iter().all(|o| o.ok);
        println!(
            "{name}: {} against LiteRT {resolver}",
            if ok { "matches" } else { "DIFFERS" }
        );
        for o in &comparison.outputs {
            let figure = match (o.max_abs_diff, o.rel_to_max, o.mismatches) {
                (Some(abs), Some(rel), _) => {
                    format!("max |diff| {abs:.3e} ({rel:.2e} of the largest value)")
                }
                (_, _, Some(m)) => format!("{m} element(s) differ"),
                _ => o.detail.clone().unwrap_or_default(),
            };
            println!("    output {} {:<8} {figure}", o.output, o.dtype);
        }
        if ok {
            matched += 1;
        } else {
            failed += 1;
        }
    }
    println!("\n{matched} match, {failed} differ, {not_run} not compared");
    if failed > 0 {
        bail!("{failed} model(s) differ from LiteRT");
    }
    Ok(())
}

/// `input_0.npy`, `input_1.npy`, ... in order.
fn input_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    while dir.join(format!("input_{}.npy", files.len())).exists() {
        files.push(dir.join(format!("input_{}.npy", files.len())));
    }
    if files.is_empty() {
        bail!("no inputs were written to {}", dir.display());
    }
    Ok(files)
}
