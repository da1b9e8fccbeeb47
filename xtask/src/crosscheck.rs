//! `cargo xtask crosscheck`: quantize every model in every mode with octet, load each result in
//! LiteRT with both its default and its reference kernels, and compare octet-runtime with
//! LiteRT's reference kernels (integers exactly, floats within 1e-5 of the largest value).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::process;
use crate::roundtrip::default_models;
use crate::runtime_check::{Outcome, Tools, check_model};
use crate::workspace::Workspace;

/// Every mode of `octet quantize`.
/// Each mode, and int8 for octet's own runtime (`MODE@TARGET` means `--mode MODE --target
/// TARGET`), so that the integer kernels that `--target litert` keeps float stay checked.
const MODES: [&str; 7] = [
    "int8",
    "int8@octet",
    "uint8",
    "int16x8",
    "dynamic",
    "fp16",
    "weight-int8",
];

/// The `octet quantize` arguments of a mode spec (`int8`, `int8@octet`).
fn mode_args(spec: &str) -> Vec<&str> {
    match spec.split_once('@') {
        Some((mode, target)) => vec!["--mode", mode, "--target", target],
        None => vec!["--mode", spec],
    }
}

/// Quantizes and checks `paths` (default: fixtures and third-party models) in `modes` (default:
/// all). Fails when a quantized model octet wrote does not load in LiteRT, or octet-runtime
/// differs from LiteRT on it.
pub fn run(
    workspace: &Workspace,
    paths: &[PathBuf],
    modes: &[String],
    samples: usize,
    record: Option<&Path>,
) -> Result<()> {
    let tools = Tools::prepare(workspace)?;
    let models = if paths.is_empty() {
        default_models(workspace)?
    } else {
        paths.to_vec()
    };
    let modes: Vec<String> = if modes.is_empty() {
        MODES.iter().map(|m| (*m).to_owned()).collect()
    } else {
        modes.to_vec()
    };
    let out_dir = workspace.cache_dir("crosscheck");
    std::fs::create_dir_all(&out_dir)?;
    let (mut ok, mut failed, mut not_quantized) = (0, 0, 0);
    println!(
        "{:<48} {:<12} {:<34} octet vs LiteRT reference",
        "model", "mode", "LiteRT (default / reference)"
    );
    for model in &models {
        let name = model
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        for mode in &modes {
            let output = out_dir.join(format!("{name}.{mode}.tflite"));
            let quantized = process::stdout_of(
                Command::new(&tools.octet)
                    .arg("quantize")
                    .arg(model)
                    .arg("-o")
                    .arg(&output)
                    .args(mode_args(mode))
                    .args(["--calib", "random:-1,1", "--samples", "8"]),
            );
            if let Err(e) = quantized {
                let text = format!("{e:#}");
                let reason = text
                    .lines()
                    .find(|l| l.starts_with("error:"))
                    .unwrap_or("failed")
                    .to_owned();
                println!("{name:<48} {mode:<12} not quantized: {reason}");
                not_quantized += 1;
                continue;
            }
            let check = check_model(workspace, &tools, &output, samples)?;
            let status = |resolver: &str| {
                check
                    .litert
                    .iter()
                    .find(|(r, _)| r == resolver)
                    .map_or("?", |(_, s)| if s == "ok" { "runs" } else { "FAILS" })
            };
            let litert = format!("{} / {}", status("AUTO"), status("BUILTIN_REF"));
            let loads = status("AUTO") == "runs" && status("BUILTIN_REF") == "runs";
            let verdict = match &check.outcome {
                Outcome::Match => check.details.first().cloned().unwrap_or_default(),
                Outcome::Differs => check.details.join("; "),
                Outcome::NotCompared(reason) => reason.clone(),
            };
            println!("{name:<48} {mode:<12} {litert:<34} {verdict}");
            if loads && matches!(check.outcome, Outcome::Match) {
                ok += 1;
                if let Some(record) = record {
                    save_reference(&check.dir, &output, record)?;
                }
            } else {
                failed += 1;
            }
        }
    }
    println!("\n{ok} pass, {failed} fail, {not_quantized} not quantized");
    if failed > 0 {
        bail!("{failed} quantized model(s) fail in LiteRT or differ from it");
    }
    Ok(())
}

/// Keeps a passing quantized model with its seeded inputs and LiteRT's reference-kernel outputs
/// in `record` (`NAME.MODE.tflite`, `NAME.MODE.in0.npy`, `NAME.MODE.out0.npy`, ...), so that
/// `cargo test` can check octet against LiteRT on them without Python.
fn save_reference(check_dir: &Path, quantized: &Path, record: &Path) -> Result<()> {
    std::fs::create_dir_all(record)?;
    let file = quantized
        .file_name()
        .context("quantized model without a name")?;
    let stem = file
        .to_string_lossy()
        .trim_end_matches(".tflite")
        .to_owned();
    std::fs::copy(quantized, record.join(file))?;
    for k in 0.. {
        let input = check_dir.join(format!("input_{k}.npy"));
        if !input.exists() {
            break;
        }
        std::fs::copy(&input, record.join(format!("{stem}.in{k}.npy")))?;
    }
    for k in 0.. {
        let output = check_dir.join(format!("ref_BUILTIN_REF_{k}.npy"));
        if !output.exists() {
            break;
        }
        std::fs::copy(&output, record.join(format!("{stem}.out{k}.npy")))?;
    }
    Ok(())
}
