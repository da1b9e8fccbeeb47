//! The pinned Python environment at `<workspace>/.venv`.
//!
//! Requirements live in `xtask/python/requirements-*.txt`. After a successful `pip install` a copy
//! of each file is kept in `.venv/octet-requirements/`; while those copies match the files, pip is
//! not run again, so tasks can call [`ensure`] every time at no cost. Each file is stamped on its
//! own, so the sets can be installed in any order and combination (`Codegen` after `Fixtures`
//! installs only what `requirements-codegen.txt` adds). pip never uninstalls: a package removed
//! from a file stays in an existing venv until `.venv` is deleted.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::process;
use crate::workspace::Workspace;

/// The Python interpreter used to create the venv.
const SYSTEM_PYTHON: &str = "python3";
/// Directory inside the venv holding copies of the installed requirement files.
const STAMP_DIR: &str = "octet-requirements";

/// Which pinned requirement sets a task needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirements {
    /// `requirements-check.txt`: LiteRT and NumPy, enough to run and compare models.
    Check,
    /// `requirements-check.txt` and `requirements-codegen.txt`: also flatc.
    Codegen,
    /// `requirements-check.txt` and `requirements-fixtures.txt`: also TensorFlow, Keras and
    /// scikit-learn.
    Fixtures,
    /// `requirements-check.txt` and `requirements-peers.txt`: also AI Edge Quantizer.
    Peers,
}

impl Requirements {
    /// The requirement files (in `xtask/python/`) this set consists of.
    fn files(self) -> &'static [&'static str] {
        match self {
            Self::Check => &["requirements-check.txt"],
            Self::Codegen => &["requirements-check.txt", "requirements-codegen.txt"],
            Self::Fixtures => &["requirements-check.txt", "requirements-fixtures.txt"],
            Self::Peers => &["requirements-check.txt", "requirements-peers.txt"],
        }
    }
}

/// A ready virtual environment.
#[derive(Debug)]
pub struct Venv {
    dir: PathBuf,
}

impl Venv {
    /// The venv directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// An executable installed in the venv (`bin/<name>`, `Scripts\<name>.exe` on Windows).
    pub fn executable(&self, name: &str) -> PathBuf {
        if cfg!(windows) {
            self.dir.join("Scripts").join(format!("{name}.exe"))
        } else {
            self.dir.join("bin").join(name)
        }
    }

    /// The venv's Python interpreter.
    pub fn python(&self) -> PathBuf {
        self.executable("python")
    }

    /// A command running the venv's Python interpreter.
    pub fn python_command(&self) -> Command {
        Command::new(self.python())
    }
}

/// Create `<workspace>/.venv` if missing and install `requirements` unless already installed.
pub fn ensure(workspace: &Workspace, requirements: Requirements) -> Result<Venv> {
    let venv = Venv {
        dir: workspace.join(".venv"),
    };
    if !venv.python().is_file() {
        if venv.dir.exists() {
            bail!(
                "{} exists but has no {}; remove it and run `cargo xtask venv` again",
                venv.dir.display(),
                venv.python().display()
            );
        }
        process::run(
            Command::new(SYSTEM_PYTHON)
                .args(["-m", "venv"])
                .arg(&venv.dir),
        )
        .context("cannot create the Python venv (is python3 with the venv module installed?)")?;
    }

    let requirement_files: Vec<(PathBuf, String)> = requirements
        .files()
        .iter()
        .map(|name| {
            let path = workspace.python_script(name);
            let content = fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Ok((path, content))
        })
        .collect::<Result<_>>()?;

    let stamp_dir = venv.dir.join(STAMP_DIR);
    let up_to_date = requirement_files
        .iter()
        .all(|(path, content)| stamp_matches(&stamp_dir, path, content));
    if up_to_date {
        return Ok(venv);
    }

    let mut pip = venv.python_command();
    pip.args(["-m", "pip", "install"]);
    for (path, _) in &requirement_files {
        pip.arg("-r").arg(path);
    }
    process::run(&mut pip).context("cannot install the pinned Python requirements")?;

    fs::create_dir_all(&stamp_dir)
        .with_context(|| format!("cannot create {}", stamp_dir.display()))?;
    for (path, content) in &requirement_files {
        let stamp = stamp_path(&stamp_dir, path);
        fs::write(&stamp, content).with_context(|| format!("cannot write {}", stamp.display()))?;
    }
    Ok(venv)
}

/// Where the installed copy of a requirement file is kept.
fn stamp_path(stamp_dir: &Path, requirement_file: &Path) -> PathBuf {
    stamp_dir.join(
        requirement_file
            .file_name()
            .unwrap_or(requirement_file.as_os_str()),
    )
}

/// Whether the venv was last installed from exactly this requirement file content.
fn stamp_matches(stamp_dir: &Path, requirement_file: &Path, content: &str) -> bool {
    fs::read_to_string(stamp_path(stamp_dir, requirement_file)).is_ok_and(|stamp| stamp == content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_matches_only_the_recorded_content() {
        let stamp_dir =
            std::env::temp_dir().join(format!("octet-xtask-stamp-{}", std::process::id()));
        fs::create_dir_all(&stamp_dir).unwrap();
        let requirements = Path::new("xtask/python/requirements-check.txt");
        assert!(!stamp_matches(&stamp_dir, requirements, "numpy==1\n"));
        fs::write(stamp_path(&stamp_dir, requirements), "numpy==1\n").unwrap();
        assert!(stamp_matches(&stamp_dir, requirements, "numpy==1\n"));
        assert!(!stamp_matches(&stamp_dir, requirements, "numpy==2\n"));
        fs::remove_dir_all(&stamp_dir).unwrap();
    }

    #[test]
    fn every_set_includes_the_check_requirements() {
        for requirements in [
            Requirements::Check,
            Requirements::Codegen,
            Requirements::Fixtures,
        ] {
            assert!(
                requirements
                    .files()
                    .starts_with(Requirements::Check.files())
            );
        }
    }

    #[test]
    fn codegen_does_not_install_tensorflow() {
        assert!(
            !Requirements::Codegen
                .files()
                .contains(&"requirements-fixtures.txt")
        );
    }

    #[test]
    fn every_requirement_file_exists() {
        let workspace = Workspace::locate().unwrap();
        for requirements in [
            Requirements::Check,
            Requirements::Codegen,
            Requirements::Fixtures,
        ] {
            for name in requirements.files() {
                assert!(workspace.python_script(name).is_file(), "{name} is missing");
            }
        }
    }
}
