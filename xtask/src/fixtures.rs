//! `cargo xtask fixtures`: the float test models in `models/`.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::process;
use crate::venv::{self, Requirements};
use crate::workspace::Workspace;

/// `models/` is committed; keep it small.
const MODELS_BUDGET_BYTES: u64 = 10 * 1024 * 1024;

/// Run `xtask/python/make_fixtures.py --out models/` in the venv, then check the size budget.
pub fn run(workspace: &Workspace) -> Result<()> {
    let venv = venv::ensure(workspace, Requirements::Fixtures)?;
    let mut command = venv.python_command();
    command
        .arg(Path::new("xtask").join("python").join("make_fixtures.py"))
        .args(["--out", "models/"])
        // Python's hash seed is fixed at startup, so it is set here rather than in the script.
        .env("PYTHONHASHSEED", "0")
        .current_dir(workspace.root());
    process::run(&mut command)?;

    let models_dir = workspace.models_dir();
    let total_bytes = directory_size(&models_dir)?;
    println!("models/ holds {total_bytes} bytes");
    if total_bytes > MODELS_BUDGET_BYTES {
        bail!("models/ holds {total_bytes} bytes, over the {MODELS_BUDGET_BYTES}-byte budget");
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
