//! Running external programs with useful errors.

use std::process::Command;

use anyhow::{Context, Result, bail};

/// The command line of `command`, for messages.
pub fn describe(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().into_owned()];
    words.extend(
        command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned()),
    );
    words.join(" ")
}

/// Run `command` with inherited stdio and fail unless it exits successfully.
pub fn run(command: &mut Command) -> Result<()> {
    let line = describe(command);
    eprintln!("> {line}");
    let status = command
        .status()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Run `command` and return its stdout if it exits successfully. Its stderr is captured and
/// shown (the last lines) only when it fails.
pub fn stdout_of(command: &mut Command) -> Result<String> {
    const STDERR_LINES_SHOWN: usize = 20;
    let line = describe(command);
    let output = command
        .output()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(STDERR_LINES_SHOWN)..].join("\n");
        bail!("`{line}` failed ({}):\n{tail}", output.status);
    }
    String::from_utf8(output.stdout).with_context(|| format!("`{line}` printed invalid UTF-8"))
}
