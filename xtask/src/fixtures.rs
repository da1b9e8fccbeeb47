//! `cargo xtask fixtures`: the float test models in `models/` and the op-coverage fixtures in
//! `models/ops/`.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::process;
use crate::venv::{self, Requirements, Venv};
use crate::workspace::Workspace;

/// `models/` is committed; keep it small.
const MODELS_BUDGET_BYTES: u64 = 10 * 1024 * 1024;
/// `models/ops/` is committed too (make_op_fixtures.py checks the same budget).
const OPS_BUDGET_BYTES: u64 = 4 * 1024 * 1024;
/// `models/reference/` is committed too (make_reference_fixtures.py checks the same budget).
const REFERENCE_BUDGET_BYTES: u64 = 2 * 1024 * 1024;

/// Run `xtask/python/make_fixtures.py --out models/` and
/// `xtask/python/make_reference_fixtures.py --out models/reference/` (unless `ops_only`; the
/// second reads the first's models) and `xtask/python/make_op_fixtures.py --out models/ops/` in
/// the venv, checking each directory's size budget.
pub fn run(workspace: &Workspace, ops_only: bool) -> Result<()> {
    let venv = venv::ensure(workspace, Requirements::Fixtures)?;
    let models_dir = workspace.models_dir();
    if !ops_only {
        run_script(&venv, workspace, "make_fixtures.py", "models/")?;
        check_budget(workspace, &models_dir, MODELS_BUDGET_BYTES)?;
        run_script(
            &venv,
            workspace,
            "make_reference_fixtures.py",
            "models/reference/",
        )?;
        check_budget(
            workspace,
            &models_dir.join("reference"),
            REFERENCE_BUDGET_BYTES,
        )?;
    }
    run_script(&venv, workspace, "make_op_fixtures.py", "models/ops/")?;
    check_budget(workspace, &models_dir.join("ops"), OPS_BUDGET_BYTES)
}

/// Run `xtask/python/<script> --out <out>` in the venv from the workspace root.
fn run_script(venv: &Venv, workspace: &Workspace, script: &str, out: &str) -> Result<()> {
    let mut command = venv.python_command();
    command
        .arg(Path::new("xtask").join("python").join(script))
        .args(["--out", out])
        // Python's hash seed is fixed at startup, so it is set here rather than in the script.
        .env("PYTHONHASHSEED", "0")
        .current_dir(workspace.root());
    process::run(&mut command)
}

/// Fail if the files directly inside `dir` add up to more than `budget` bytes.
fn check_budget(workspace: &Workspace, dir: &Path, budget: u64) -> Result<()> {
    let total_bytes = directory_size(dir)?;
    let shown = format!("{}/", workspace.display(dir));
    println!("{shown} holds {total_bytes} bytes");
    if total_bytes > budget {
        bail!("{shown} holds {total_bytes} bytes, over the {budget}-byte budget");
    }
    Ok(())
}

/// Total size of the files directly inside `dir`.
fn directory_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let metadata = entry
            .metadata()
            .with_context(|| format!("cannot stat {}", entry.path().display()))?;
        if metadata.is_file() {
            total += metadata.len();
        }
    }
    Ok(total)
}
