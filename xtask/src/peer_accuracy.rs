//! `cargo xtask peer-accuracy`: octet's int8 files against AI Edge Quantizer's, made from the
//! same calibration samples and measured the same way: each output's SQNR against the float
//! model in LiteRT (its default CPU path), over held-out samples.
//!
//! The samples are seeded: for image inputs (NHWC float) 1/f noise, whose spectrum is that of
//! natural images, in `--input-range` (default [-1, 1]); uniform in [-1, 1] for other inputs. Calibration and evaluation
//! use different seeds. Each `--octet` option adds a column with those extra `octet quantize`
//! arguments, to compare octet's own choices in the same run.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::bench::{CalibFiles, aeq_ready_copy, failure_reason, json_line};
use crate::process;
use crate::roundtrip::default_models;
use crate::venv::{self, Requirements, Venv};
use crate::workspace::Workspace;

/// What `cargo xtask peer-accuracy` was asked to do.
pub struct PeerOptions {
    /// Models [default: the fixtures and the fetched third-party models].
    pub paths: Vec<PathBuf>,
    /// Calibration samples.
    pub samples: usize,
    /// Evaluation samples.
    pub eval: usize,
    /// Extra `octet quantize` arguments, one column each (the first column is always octet's
    /// defaults).
    pub octet: Vec<String>,
    /// The range of the image-like samples, `MIN,MAX`.
    pub input_range: String,
}

#[derive(Deserialize)]
struct SqnrFile {
    sqnr_db: Vec<Option<f64>>,
}

#[derive(Deserialize)]
struct Sqnr {
    files: Vec<SqnrFile>,
}

/// One model's row: per column (octet variants, then AEQ), each output's SQNR, or why not.
struct Row {
    name: String,
    columns: Vec<Result<Vec<Option<f64>>, String>>,
}

/// The mean over outputs of a column's SQNRs (an identical output counts as 100 dB).
fn mean(values: &[Option<f64>]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    Some(values.iter().map(|v| v.unwrap_or(100.0)).sum::<f64>() / values.len() as f64)
}

/// Runs the comparison and prints the table.
pub fn run(workspace: &Workspace, options: &PeerOptions) -> Result<()> {
    let table = compare(workspace, options)?;
    println!();
    print!("{table}");
    Ok(())
}

/// Where `cargo xtask accuracy --peers` keeps its accepted table.
const SNAPSHOT: &str = "models/reference/peer_accuracy.md";

/// The MediaPipe models of the snapshot (those `cargo xtask fetch-models` brings).
const MEDIAPIPE: [&str; 7] = [
    "face_landmark",
    "face_detection_full_range_sparse",
    "iris_landmark",
    "hand_landmark_full",
    "palm_detection_full",
    "face_detection_short_range",
    "pose_detection",
];

/// `cargo xtask accuracy --peers`: the peer table on the fixtures and the MediaPipe models
/// with octet's defaults, against the accepted copy in `models/reference/peer_accuracy.md`
/// (`update` accepts the new one). Fails when they differ.
pub fn snapshot(workspace: &Workspace, update: bool) -> Result<()> {
    let mut paths = Vec::new();
    for name in ["digits_cnn", "digits_mlp", "no_signature", "sparse_fc"] {
        paths.push(workspace.models_dir().join(format!("{name}.tflite")));
    }
    let mediapipe = workspace.cache_dir("third_party").join("mediapipe");
    for name in MEDIAPIPE {
        let path = mediapipe.join(format!("{name}.tflite"));
        if !path.is_file() {
            bail!(
                "{} is missing: run `cargo xtask fetch-models` first",
                path.display()
            );
        }
        paths.push(path);
    }
    let options = PeerOptions {
        paths,
        samples: 16,
        eval: 32,
        // octet's default file (`--target litert`) keeps the activation-heavy first layers
        // float; the all-integer file is the like-for-like comparison with AEQ's.
        octet: vec!["--target integer-only".into()],
        input_range: "-1,1".into(),
    };
    let measured = compare(workspace, &options)?;
    if measured.contains("- (") {
        bail!("some models could not be measured (the table says why):\n{measured}");
    }
    let table = format!(
        "<!-- `cargo xtask accuracy --peers` writes and checks this file; do not edit. -->\n\n{measured}"
    );
    let path = workspace.root().join(SNAPSHOT);
    let accepted = std::fs::read_to_string(&path).unwrap_or_default();
    println!();
    print!("{table}");
    if accepted == table {
        println!("\nsame as {SNAPSHOT}");
        return Ok(());
    }
    if update {
        std::fs::write(&path, &table)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("\nwrote {SNAPSHOT}");
        return Ok(());
    }
    bail!(
        "the table differs from {SNAPSHOT}; review it and run `cargo xtask accuracy --peers --update`"
    )
}

/// Measures every model and returns the Markdown table.
fn compare(workspace: &Workspace, options: &PeerOptions) -> Result<String> {
    if options.samples == 0 || options.eval == 0 {
        bail!("--samples and --eval take at least 1");
    }
    let venv = venv::ensure(workspace, Requirements::Peers)?;
    let octet = workspace.build_octet()?;
    let models = if options.paths.is_empty() {
        default_models(workspace)?
    } else {
        options.paths.clone()
    };
    let out_dir = workspace.cache_dir("peer-accuracy");
    let mut rows = Vec::new();
    for model in &models {
        let name = model
            .file_stem()
            .map_or_else(|| "model".to_owned(), |s| s.to_string_lossy().into_owned());
        let dir = out_dir.join(&name);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let row = match compare_model(workspace, &venv, &octet, model, &dir, options) {
            Ok(columns) => Row { name, columns },
            Err(e) => Row {
                name,
                columns: vec![Err(format!("{e:#}")
                    .lines()
                    .last()
                    .unwrap_or("")
                    .to_owned())],
            },
        };
        print_row(&row, options);
        rows.push(row);
    }
    Ok(table(&rows, options))
}

fn samples(
    workspace: &Workspace,
    venv: &Venv,
    model: &Path,
    out: &Path,
    count: usize,
    seed: u32,
    range: &str,
) -> Result<CalibFiles> {
    json_line(
        venv.python_command()
            .arg(workspace.python_script("peers.py"))
            .arg("calib")
            .arg(model)
            .arg(out)
            .args(["--kind", "smooth", "--samples", &count.to_string()])
            .args(["--seed", &seed.to_string()])
            // `=`: argparse would read "-1,1" as an option.
            .arg(format!("--range={range}")),
    )
}

fn compare_model(
    workspace: &Workspace,
    venv: &Venv,
    octet: &Path,
    model: &Path,
    dir: &Path,
    options: &PeerOptions,
) -> Result<Vec<Result<Vec<Option<f64>>, String>>> {
    let calib = samples(
        workspace,
        venv,
        model,
        &dir.join("calib.npy"),
        options.samples,
        1,
        &options.input_range,
    )?;
    let eval = samples(
        workspace,
        venv,
        model,
        &dir.join("eval.npy"),
        options.eval,
        2,
        &options.input_range,
    )?;
    let variants: Vec<Vec<String>> = std::iter::once(Vec::new())
        .chain(
            options
                .octet
                .iter()
                .map(|a| a.split_whitespace().map(str::to_owned).collect()),
        )
        .collect();
    // Each file that was made, and per column the file's index or the error.
    let mut files: Vec<PathBuf> = Vec::new();
    let mut slots: Vec<Result<usize, String>> = Vec::new();
    for (k, extra) in variants.iter().enumerate() {
        let out = dir.join(format!("octet_{k}.tflite"));
        let made = process::stdout_of(
            Command::new(octet)
                .arg("quantize")
                .arg(model)
                .arg("-o")
                .arg(&out)
                .arg("--calib")
                .arg(&calib.npz)
                .args(extra),
        );
        slots.push(match made {
            Ok(_) => {
                files.push(out);
                Ok(files.len() - 1)
            }
            Err(e) => Err(failure_reason(&e)),
        });
    }
    let aeq_input = dir.join("float_for_aeq.tflite");
    let aeq_out = dir.join("aeq_int8.tflite");
    let aeq = aeq_ready_copy(model, &aeq_input).and_then(|()| {
        process::stdout_of(
            venv.python_command()
                .arg(workspace.python_script("peers.py"))
                .arg("aeq")
                .arg(&aeq_input)
                .arg(&aeq_out)
                .args(&calib.inputs),
        )
    });
    slots.push(match aeq {
        Ok(_) => {
            files.push(aeq_out);
            Ok(files.len() - 1)
        }
        Err(e) => Err(failure_reason(&e)),
    });
    let sqnr: Sqnr = json_line(
        venv.python_command()
            .arg(workspace.python_script("peers.py"))
            .arg("sqnr")
            .arg(model)
            .arg(&eval.npz)
            .args(&files),
    )?;
    Ok(slots
        .into_iter()
        .map(|slot| {
            slot.and_then(|i| {
                sqnr.files
                    .get(i)
                    .map(|f| f.sqnr_db.clone())
                    .ok_or_else(|| "no SQNR measured".to_owned())
            })
        })
        .collect())
}

fn headers(options: &PeerOptions) -> Vec<String> {
    std::iter::once("octet".to_owned())
        .chain(options.octet.iter().map(|a| format!("octet {a}")))
        .chain(std::iter::once("AEQ".to_owned()))
        .collect()
}

fn cell(column: &Result<Vec<Option<f64>>, String>) -> String {
    match column {
        Ok(values) => {
            let each: Vec<String> = values
                .iter()
                .map(|v| v.map_or_else(|| "exact".to_owned(), |v| format!("{v:.1}")))
                .collect();
            match mean(values) {
                Some(m) => format!("{m:.1} ({})", each.join(" / ")),
                None => "-".to_owned(),
            }
        }
        Err(e) => format!("- ({e})"),
    }
}

fn print_row(row: &Row, options: &PeerOptions) {
    let parts: Vec<String> = headers(options)
        .iter()
        .zip(&row.columns)
        .map(|(h, c)| format!("{h} {}", cell(c)))
        .collect();
    eprintln!("{}: {}", row.name, parts.join("; "));
}

fn table(rows: &[Row], options: &PeerOptions) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "int8, {} calibration samples, SQNR in dB against the float model on {} other samples \
         (LiteRT default CPU path; image inputs in [{}]), mean over outputs (each output):",
        options.samples, options.eval, options.input_range
    );
    let _ = writeln!(out);
    let headers = headers(options);
    // One difference to AEQ per octet column.
    let octets = &headers[..headers.len().saturating_sub(1)];
    let differences: Vec<String> = octets.iter().map(|h| format!("{h} - AEQ")).collect();
    let _ = writeln!(
        out,
        "| model | {} | {} |",
        headers.join(" | "),
        differences.join(" | ")
    );
    let _ = writeln!(
        out,
        "|---|{}",
        "---:|".repeat(headers.len() + differences.len())
    );
    for row in rows {
        let cells: Vec<String> = row.columns.iter().map(cell).collect();
        let means: Vec<Option<f64>> = row
            .columns
            .iter()
            .map(|c| c.as_ref().ok().and_then(|v| mean(v)))
            .collect();
        let aeq = means.last().copied().flatten();
        let diffs: Vec<String> = means
            .iter()
            .take(octets.len())
            .map(|octet| match (octet, aeq) {
                (Some(o), Some(a)) => format!("{:+.1}", o - a),
                _ => "-".to_owned(),
            })
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            row.name,
            cells.join(" | "),
            diffs.join(" | ")
        );
    }
    out
}
