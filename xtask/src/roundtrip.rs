//! `cargo xtask roundtrip`: read each model with octet-tflite, write it back, and check in LiteRT
//! (`xtask/python/litert_compare.py`) that the rewritten file computes bit-identical outputs.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::process;
use crate::venv::{self, Requirements};
use crate::workspace::Workspace;

/// What `litert_compare.py` prints (one JSON line).
#[derive(Debug, Deserialize)]
struct CompareReport {
    /// False when LiteRT runs the original but the rewritten file differs or fails.
    ok: bool,
    /// True when LiteRT cannot run the original under any resolver.
    skipped: bool,
    /// `identical`, `skipped (...)` or `FAIL ...`.
    verdict: String,
    /// Outcome per op resolver, e.g. `"AUTO": "identical (1 output)"`.
    resolvers: BTreeMap<String, String>,
}

/// How one model fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// LiteRT ran it (under at least one resolver) and the outputs matched bit for bit.
    Identical,
    /// LiteRT cannot run the original under any resolver.
    Skipped,
    /// octet could not read or write it, or LiteRT saw different outputs or a broken rewrite.
    Failed,
}

/// One row of the printed table.
#[derive(Debug)]
struct Row {
    /// The original's path, relative to the workspace when inside it.
    model: String,
    /// `<original bytes> → <rewritten bytes>`.
    sizes: String,
    /// Status word per op resolver.
    resolvers: String,
    /// The comparison's verdict, or the error that stopped it.
    verdict: String,
    /// Which total the row counts toward.
    outcome: Outcome,
}

/// Round-trip `paths` (or every known model) and print a table; fail if any model failed.
pub fn run(workspace: &Workspace, paths: &[PathBuf]) -> Result<()> {
    let models = if paths.is_empty() {
        default_models(workspace)?
    } else {
        paths.to_vec()
    };
    if models.is_empty() {
        bail!("no .tflite models found; run `cargo xtask fixtures` or `cargo xtask fetch-models`");
    }
    let out_dir = workspace.cache_dir("roundtrip");
    let rewritten_paths = rewritten_paths(&models, &out_dir)?;
    fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let venv = venv::ensure(workspace, Requirements::Check)?;
    let compare_script = workspace.python_script("litert_compare.py");

    let mut rows = Vec::with_capacity(models.len());
    for (position, (original, rewritten)) in models.iter().zip(&rewritten_paths).enumerate() {
        eprintln!(
            "[{}/{}] {}",
            position + 1,
            models.len(),
            workspace.display(original)
        );
        let report = rewrite(original, rewritten).and_then(|()| {
            compare_in_litert(
                venv.python_command()
                    .arg(&compare_script)
                    .arg(original)
                    .arg(rewritten),
            )
        });
        let (resolvers, verdict, outcome) = match report {
            Ok(report) => summarize(&report),
            Err(error) => (
                String::from("-"),
                format!("FAIL {error:#}"),
                Outcome::Failed,
            ),
        };
        rows.push(Row {
            model: workspace.display(original).to_string(),
            sizes: format!("{} → {}", file_size(original), file_size(rewritten)),
            resolvers,
            verdict,
            outcome,
        });
    }

    print_table(&rows);
    let count = |outcome| rows.iter().filter(|row| row.outcome == outcome).count();
    let failed = count(Outcome::Failed);
    println!(
        "\n{} identical, {} skipped, {failed} failed",
        count(Outcome::Identical),
        count(Outcome::Skipped)
    );
    if failed > 0 {
        bail!(
            "{failed} of {} models did not survive the round trip",
            rows.len()
        );
    }
    Ok(())
}

/// Every `models/*.tflite` and `.cache/third_party/**/*.tflite`, each group sorted.
pub(crate) fn default_models(workspace: &Workspace) -> Result<Vec<PathBuf>> {
    let mut models = Vec::new();
    collect_tflite(&workspace.models_dir(), false, &mut models)?;
    let third_party = workspace.cache_dir("third_party");
    if third_party.is_dir() {
        collect_tflite(&third_party, true, &mut models)?;
    } else {
        eprintln!(
            "note: no .cache/third_party; `cargo xtask fetch-models` adds the MediaPipe and \
             tflite-micro models"
        );
    }
    Ok(models)
}

/// Append the .tflite files in `dir` (and its subdirectories if `recursive`), sorted.
fn collect_tflite(dir: &Path, recursive: bool, models: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("cannot list {}", dir.display()))?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if recursive {
                collect_tflite(&path, true, models)?;
            }
        } else if path
            .extension()
            .is_some_and(|extension| extension == "tflite")
        {
            models.push(path);
        }
    }
    Ok(())
}

/// `<out_dir>/<file name>` for each model; file names must be unique.
fn rewritten_paths(models: &[PathBuf], out_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut seen: HashMap<&std::ffi::OsStr, &Path> = HashMap::new();
    let mut paths = Vec::with_capacity(models.len());
    for model in models {
        let name = model
            .file_name()
            .with_context(|| format!("{} is not a file path", model.display()))?;
        if let Some(earlier) = seen.insert(name, model) {
            bail!(
                "{} and {} have the same file name; round-trip them separately",
                earlier.display(),
                model.display()
            );
        }
        paths.push(out_dir.join(name));
    }
    Ok(paths)
}

/// Read `original` into octet's IR and write it to `rewritten` (removing any older `rewritten`
/// first, so that a failure leaves no stale file behind).
fn rewrite(original: &Path, rewritten: &Path) -> Result<()> {
    match fs::remove_file(rewritten) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(error).with_context(|| format!("cannot remove {}", rewritten.display()));
        }
        _ => {}
    }
    let model: octet_core::Model = octet_tflite::read_file(original)
        .with_context(|| format!("octet cannot read {}", original.display()))?;
    octet_tflite::write_file(rewritten, &model)
        .with_context(|| format!("octet cannot write {}", rewritten.display()))?;
    Ok(())
}

/// Run `litert_compare.py` and parse the JSON line it prints.
fn compare_in_litert(command: &mut std::process::Command) -> Result<CompareReport> {
    let stdout = process::stdout_of(command)?;
    let line = stdout
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .with_context(|| format!("litert_compare.py printed no JSON line: {stdout:?}"))?;
    serde_json::from_str(line)
        .with_context(|| format!("cannot parse litert_compare.py output {line:?}"))
}

/// (resolver column, verdict column, outcome) for a comparison report.
fn summarize(report: &CompareReport) -> (String, String, Outcome) {
    let resolvers = report
        .resolvers
        .iter()
        .map(|(resolver, result)| {
            // Only the status word; details (reasons, differing outputs) are in the verdict.
            let status = result.split_whitespace().next().unwrap_or("?");
            format!("{resolver} {status}")
        })
        .collect::<Vec<_>>()
        .join(", ");
    let outcome = match (report.ok, report.skipped) {
        (false, _) => Outcome::Failed,
        (true, true) => Outcome::Skipped,
        (true, false) => Outcome::Identical,
    };
    (resolvers, report.verdict.clone(), outcome)
}

/// A file's size in bytes, or `-` if it does not exist.
fn file_size(path: &Path) -> String {
    fs::metadata(path).map_or_else(|_| String::from("-"), |metadata| metadata.len().to_string())
}

/// Print the rows as a `|`-separated table with aligned columns.
fn print_table(rows: &[Row]) {
    let header = [
        "model",
        "bytes orig → rewritten",
        "resolver results",
        "verdict",
    ];
    let cells: Vec<[&str; 4]> = rows
        .iter()
        .map(|row| [row.model.as_str(), &row.sizes, &row.resolvers, &row.verdict])
        .collect();
    let mut widths = header.map(|title| title.chars().count());
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let print_row = |row: &[&str; 4]| {
        let padded: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell}{}", " ".repeat(width - cell.chars().count())))
            .collect();
        println!("{}", padded.join(" | ").trim_end());
    };
    print_row(&header);
    let rule: Vec<String> = widths.iter().map(|width| "-".repeat(*width)).collect();
    println!("{}", rule.join("-|-"));
    for row in &cells {
        print_row(row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(ok: bool, skipped: bool, auto: &str, reference: &str) -> CompareReport {
        CompareReport {
            ok,
            skipped,
            verdict: String::from("v"),
            resolvers: BTreeMap::from([
                (String::from("AUTO"), String::from(auto)),
                (String::from("BUILTIN_REF"), String::from(reference)),
            ]),
        }
    }

    #[test]
    fn summary_keeps_status_words_and_maps_outcomes() {
        let (resolvers, _, outcome) = summarize(&report(
            true,
            false,
            "identical (1 output)",
            "skipped (LiteRT cannot run the original: custom op)",
        ));
        assert_eq!(resolvers, "AUTO identical, BUILTIN_REF skipped");
        assert_eq!(outcome, Outcome::Identical);
        assert_eq!(
            summarize(&report(true, true, "skipped", "skipped")).2,
            Outcome::Skipped
        );
        assert_eq!(
            summarize(&report(false, false, "different", "identical")).2,
            Outcome::Failed
        );
    }

    #[test]
    fn compare_report_parses_the_scripts_json() {
        let line = r#"{"original": "a", "rewritten": "b", "ok": true, "skipped": false, "verdict": "identical", "resolvers": {"AUTO": "identical (1 output)", "BUILTIN_REF": "identical (1 output)"}}"#;
        let parsed: CompareReport = serde_json::from_str(line).unwrap();
        assert!(parsed.ok && !parsed.skipped);
        assert_eq!(parsed.resolvers.len(), 2);
    }

    #[test]
    fn rewritten_paths_reject_duplicate_file_names() {
        let out = Path::new("/out");
        let unique = [
            PathBuf::from("models/a.tflite"),
            PathBuf::from("x/b.tflite"),
        ];
        assert_eq!(
            rewritten_paths(&unique, out).unwrap(),
            [
                PathBuf::from("/out/a.tflite"),
                PathBuf::from("/out/b.tflite")
            ]
        );
        let clash = [
            PathBuf::from("models/a.tflite"),
            PathBuf::from("x/a.tflite"),
        ];
        assert!(rewritten_paths(&clash, out).is_err());
    }
}
