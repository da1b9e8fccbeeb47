//! `cargo xtask accuracy`: the accuracy table (octet next to TensorFlow, per fixture and mode),
//! as kept in the insta snapshot `crates/octet-quant/tests/snapshots/accuracy__accuracy.snap`.
//!
//! Runs the snapshot test; with `--update` it accepts the new figures (review the diff before
//! committing: a change that worsens accuracy shows there). `--peers` adds the table against AI
//! Edge Quantizer (needs Python and the fetched MediaPipe models), kept in
//! `models/reference/peer_accuracy.md` the same way.

use std::process::Command;

use anyhow::Result;

use crate::process;
use crate::workspace::Workspace;

/// Runs the accuracy snapshot test and prints the table; with `peers`, also the table against AI
/// Edge Quantizer on the fixtures and the MediaPipe models (`models/reference/peer_accuracy.md`).
pub fn run(workspace: &Workspace, update: bool, peers: bool) -> Result<()> {
    let outcome = snapshot_test(workspace, update);
    if peers {
        crate::peer_accuracy::snapshot(workspace, update)?;
    }
    outcome
}

fn snapshot_test(workspace: &Workspace, update: bool) -> Result<()> {
    let mut test = Command::new("cargo");
    test.args([
        "test",
        "--release",
        "--quiet",
        "-p",
        "octet-quant",
        "--test",
        "accuracy",
    ])
    .current_dir(workspace.root());
    if update {
        test.env("INSTA_UPDATE", "always");
    }
    let outcome = process::run(&mut test);
    let snapshot = workspace
        .root()
        .join("crates/octet-quant/tests/snapshots/accuracy__accuracy.snap");
    let text = std::fs::read_to_string(&snapshot)?;
    for line in text
        .lines()
        .skip_while(|l| *l != "---")
        .skip(1)
        .skip_while(|l| *l != "---")
        .skip(1)
    {
        println!("{line}");
    }
    if outcome.is_err() {
        eprintln!(
            "the figures changed (table above is the accepted snapshot); see the test output, \
             and run `cargo xtask accuracy --update` to accept them"
        );
    }
    outcome
}
