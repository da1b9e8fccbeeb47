//! Helpers shared by the CLI's integration tests.

#![allow(dead_code, clippy::unwrap_used)] // each test binary uses some of these

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's `models/` folder.
pub fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

/// Runs the `octet` binary built for the tests.
pub fn octet<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_octet"))
        .args(args)
        .output()
        .unwrap()
}

/// An empty scratch folder for one test (per process, so parallel test runs do not collide).
pub fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("octet-cli-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
