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
    /// How far LiteRT's default kernels are from its reference kernels on this output.
    #[serde(default)]
    litert_default_abs_diff: Option<f64>,
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

/// The tools a check needs: the venv, the octet binary, the LiteRT script.
pub struct Tools {
    venv: venv::Venv,
    /// The release `octet` binary.
    pub octet: PathBuf,
    script: PathBuf,
}

impl Tools {
    /// Ensures the venv and builds the release `octet` binary.
    pub fn prepare(workspace: &Workspace) -> Result<Self> {
        let venv = venv::ensure(workspace, Requirements::Check)?;
        Ok(Tools {
            venv,
            octet: workspace.build_octet()?,
            script: workspace.root().join("xtask/python/litert_reference.py"),
        })
    }
}

/// How one model fared.
pub enum Outcome {
    /// octet's outputs match LiteRT's (reference kernels, or default ones where the reference
    /// kernels cannot run the model).
    Match,
    /// They differ.
    Differs,
    /// octet or LiteRT cannot run it; the reason.
    NotCompared(String),
}

/// One model's check: what LiteRT's resolvers said, and the comparison.
pub struct ModelCheck {
    /// Where the seeded inputs (`input_k.npy`) and LiteRT's outputs (`ref_<RESOLVER>_k.npy`)
    /// were written.
    pub dir: PathBuf,
    /// `resolver: ok` or `resolver: cannot run: ...`, per resolver.
    pub litert: Vec<(String, String)>,
    /// The verdict.
    pub outcome: Outcome,
    /// One line per output with the figures.
    pub details: Vec<String>,
}

/// Runs `model` in LiteRT and with `octet run` on the same seeded inputs and compares.
pub fn check_model(
    workspace: &Workspace,
    tools: &Tools,
    model: &Path,
    samples: usize,
) -> Result<ModelCheck> {
    let stem = model
        .file_name()
        .context("model without a file name")?
        .to_string_lossy()
        .into_owned();
    let dir = workspace.cache_dir("runtime-check").join(&stem);
    let octet_dir = dir.join("octet");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let made = process::stdout_of(
        tools
            .venv
            .python_command()
            .arg(&tools.script)
            .arg("make")
            .arg(model)
            .arg(&dir)
            .args(["--samples", &samples.to_string()]),
    )?;
    let litert: Vec<(String, String)> =
        serde_json::from_str::<std::collections::BTreeMap<String, String>>(made.trim())
            .unwrap_or_default()
            .into_iter()
            .collect();
    let inputs = input_files(&dir)?;
    let mut run = Command::new(&tools.octet);
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
        return Ok(ModelCheck {
            dir,
            litert,
            outcome: Outcome::NotCompared(format!("octet cannot run it: {reason}")),
            details: Vec::new(),
        });
    }
    let json = process::stdout_of(
        tools
            .venv
            .python_command()
            .arg(&tools.script)
            .arg("compare")
            .arg(&dir)
            .arg(&octet_dir),
    )?;
    let comparison: Comparison = serde_json::from_str(json.trim())
        .with_context(|| format!("unexpected comparison output: {json}"))?;
    let Some(resolver) = comparison.resolver else {
        return Ok(ModelCheck {
            dir,
            litert,
            outcome: Outcome::NotCompared("LiteRT cannot run it".into()),
            details: Vec::new(),
        });
    };
    let ok = comparison.outputs.iter().all(|o| o.ok);
    let mut details = vec![format!(
        "{} against LiteRT {resolver}",
        if ok { "matches" } else { "DIFFERS" }
    )];
    for o in &comparison.outputs {
        let figure = match (o.max_abs_diff, o.rel_to_max, o.mismatches) {
            (Some(abs), Some(rel), _) => {
                let litert = o.litert_default_abs_diff.map_or(String::new(), |d| {
                    format!("; LiteRT's default kernels: {d:.3e}")
                });
                format!("max |diff| {abs:.3e} ({rel:.2e} of the largest value){litert}")
            }
            (_, _, Some(m)) => format!("{m} element(s) differ"),
            _ => o.detail.clone().unwrap_or_default(),
        };
        details.push(format!("output {} {:<8} {figure}", o.output, o.dtype));
    }
    Ok(ModelCheck {
        dir,
        litert,
        outcome: if ok { Outcome::Match } else { Outcome::Differs },
        details,
    })
}

/// Checks `paths` (default: fixtures and fetched third-party models); fails if any model octet
/// runs differs from LiteRT. Models octet cannot run are listed with the reason.
pub fn run(workspace: &Workspace, paths: &[PathBuf], samples: usize) -> Result<()> {
    let tools = Tools::prepare(workspace)?;
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
        let check = check_model(workspace, &tools, model, samples)?;
        match &check.outcome {
            Outcome::Match => matched += 1,
            Outcome::Differs => failed += 1,
            Outcome::NotCompared(reason) => {
                not_run += 1;
                println!("{name}: {reason}");
                continue;
            }
        }
        println!(
            "{name}: {}",
            check.details.first().map_or("", String::as_str)
        );
        for line in check.details.iter().skip(1) {
            println!("    {line}");
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
