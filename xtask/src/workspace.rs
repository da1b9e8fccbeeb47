//! Where things live in the workspace.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The octet workspace checkout that xtask works on.
#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    /// The workspace root: the parent of xtask's manifest directory.
    pub fn locate() -> Result<Self> {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir
            .parent()
            .with_context(|| format!("{} has no parent directory", manifest_dir.display()))?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// The workspace root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A path relative to the workspace root.
    pub fn join(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.root.join(relative)
    }

    /// `xtask/python/<script>`: the Python helpers xtask runs.
    pub fn python_script(&self, script: &str) -> PathBuf {
        self.root.join("xtask").join("python").join(script)
    }

    /// `models/`: the committed test models.
    pub fn models_dir(&self) -> PathBuf {
        self.root.join("models")
    }

    /// `.cache/<sub>`: downloads and other regenerable files (gitignored).
    pub fn cache_dir(&self, sub: &str) -> PathBuf {
        self.root.join(".cache").join(sub)
    }

    /// Builds the release `octet` binary and returns its path (in `CARGO_TARGET_DIR` when that
    /// is set, as cargo itself does).
    pub fn build_octet(&self) -> Result<PathBuf> {
        crate::process::run(
            std::process::Command::new("cargo")
                .args(["build", "--release", "--quiet", "-p", "octet-cli"])
                .current_dir(&self.root),
        )?;
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if !dir.is_empty() => self.root.join(PathBuf::from(dir)),
            _ => self.root.join("target"),
        };
        Ok(target.join("release").join("octet"))
    }

    /// A path shown relative to the workspace root when it lies inside it.
    pub fn display<'a>(&self, path: &'a Path) -> std::path::Display<'a> {
        path.strip_prefix(&self.root).unwrap_or(path).display()
    }
}
