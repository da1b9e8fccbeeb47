//! `octet compare FLOAT_MODEL QUANT_MODEL --data X.npy [--json]`: where quantization lost
//! accuracy, output by output and layer by layer.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use octet_quant::metrics::ErrorAccumulator;
use octet_runtime::Interpreter;
use serde::Serialize;

use crate::npy::read_npy;
use crate::quantize::as_f32;
use crate::run::{Feed, RuntimeArgs, all_cores, feed, load_interpreter};

/// Arguments of `octet compare`.
#[derive(Args)]
pub struct CompareArgs {
    /// The float model.
    float_model: PathBuf,
    /// The quantized model.
    quant_model: PathBuf,
    /// One float .npy per model input (optionally with a leading sample dimension).
    #[arg(long = "data", value_name = "X.npy", required = true)]
    data: Vec<PathBuf>,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// SQNR treated as "exact" when ranking losses.
const SQNR_CAP_DB: f64 = 100.0;

/// Accuracy of one tensor of the quantized model against its float counterpart.
#[derive(Serialize)]
struct TensorAccuracy {
    name: String,
    /// The op that computes it in the float model.
    op: String,
    sqnr_db: f64,
    cosine: f64,
    max_abs_error: f64,
    /// How much SQNR this op lost: its inputs' lowest SQNR minus its output's.
    sqnr_drop_db: f64,
}

#[derive(Serialize)]
struct CompareReport {
    samples: usize,
    outputs: Vec<TensorAccuracy>,
    /// Every float tensor that has a counterpart in the quantized model, in execution order.
    tensors: Vec<TensorAccuracy>,
    /// The layers that lose the most, largest SQNR drop first.
    worst_layers: Vec<String>,
}

/// The float tensor's name a quantized tensor stands for: the quantizer keeps names, adding a
/// dtype suffix where the float tensor survives beside its integer copy.
fn float_name(name: &str) -> &str {
    ["_int8", "_uint8", "_int16"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

/// Runs `interpreter` on one sample and returns every observed tensor as real values by name.
fn observe(interpreter: &mut Interpreter, sample: &[&[u8]]) -> Result<HashMap<String, Vec<f32>>> {
    for (i, bytes) in sample.iter().enumerate() {
        interpreter.set_input(i, bytes)?;
    }
    let mut values = HashMap::new();
    interpreter.invoke_observed(&mut |obs| {
        let real = as_f32(obs.bytes, obs.info);
        if !real.is_empty() {
            values.insert(obs.info.name.clone(), real);
        }
    })?;
    Ok(values)
}

/// Runs `octet compare`.
pub fn run(args: &CompareArgs) -> Result<()> {
    let float_model = octet_tflite::read_file(&args.float_model)
        .with_context(|| format!("cannot load {}", args.float_model.display()))?;
    let options = args.runtime.options(all_cores())?;
    let mut float = load_interpreter(&args.float_model, options)?;
    let mut quant = load_interpreter(&args.quant_model, options)?;
    if args.data.len() != float.num_inputs() || quant.num_inputs() != float.num_inputs() {
        bail!(
            "the float model has {} input(s), the quantized model {}, and {} --data given",
            float.num_inputs(),
            quant.num_inputs(),
            args.data.len()
        );
    }
    let mut float_feeds: Vec<Feed> = Vec::new();
    let mut quant_feeds: Vec<Feed> = Vec::new();
    for (i, file) in args.data.iter().enumerate() {
        let array = read_npy(file)?;
        float_feeds.push(feed(array.clone(), float.input_info(i)?, i, file)?);
        quant_feeds.push(feed(array, quant.input_info(i)?, i, file)?);
    }
    let samples = float_feeds[0].samples;
    if float_feeds.iter().any(|f| f.samples != samples) {
        bail!("all --data arrays must have the same leading sample dimension (or none)");
    }
    let count = samples.unwrap_or(1);

    let sg = float_model
        .main_subgraph()
        .context("the float model has no subgraph")?;
    let mut accumulators: HashMap<String, ErrorAccumulator> = HashMap::new();
    for s in 0..count {
        let slice = |f: &Feed| -> Vec<u8> {
            f.bytes[s * f.sample_bytes..(s + 1) * f.sample_bytes].to_vec()
        };
        let float_sample: Vec<Vec<u8>> = float_feeds.iter().map(slice).collect();
        let quant_sample: Vec<Vec<u8>> = quant_feeds.iter().map(slice).collect();
        let reference = observe(
            &mut float,
            &float_sample.iter().map(Vec::as_slice).collect::<Vec<_>>(),
        )?;
        let approx = observe(
            &mut quant,
            &quant_sample.iter().map(Vec::as_slice).collect::<Vec<_>>(),
        )?;
        for (name, values) in &approx {
            let key = if reference.contains_key(name) {
                name.as_str()
            } else {
                float_name(name)
            };
            if let Some(r) = reference.get(key)
                && r.len() == values.len()
            {
                accumulators
                    .entry(key.to_owned())
                    .or_default()
                    .add(r, values);
            }
        }
    }

    let sqnr_of = |name: &str| accumulators.get(name).map(|a| a.stats().sqnr_db);
    let mut tensors = Vec::new();
    for op in &sg.operators {
        let input_sqnr = op
            .present_inputs()
            .filter_map(|id| sg.tensor(id))
            .filter_map(|t| sqnr_of(&t.name))
            .fold(f64::INFINITY, f64::min);
        for id in &op.outputs {
            let Some(tensor) = sg.tensor(*id) else {
                continue;
            };
            let Some(acc) = accumulators.get(&tensor.name) else {
                continue;
            };
            let stats = acc.stats();
            // Exact tensors (the float inputs) have infinite SQNR; cap both sides so the first
            // quantized layers get a finite loss.
            let drop = input_sqnr.min(SQNR_CAP_DB) - stats.sqnr_db.min(SQNR_CAP_DB);
            tensors.push(TensorAccuracy {
                name: tensor.name.clone(),
                op: op.op.name().into_owned(),
                sqnr_db: stats.sqnr_db,
                cosine: stats.cosine,
                max_abs_error: stats.max_abs_error,
                sqnr_drop_db: drop,
            });
        }
    }
    let outputs = sg
        .outputs
        .iter()
        .filter_map(|id| sg.tensor(*id))
        .filter_map(|t| tensors.iter().find(|a| a.name == t.name))
        .map(|a| TensorAccuracy {
            name: a.name.clone(),
            op: a.op.clone(),
            sqnr_db: a.sqnr_db,
            cosine: a.cosine,
            max_abs_error: a.max_abs_error,
            sqnr_drop_db: a.sqnr_drop_db,
        })
        .collect();
    let mut ranked: Vec<&TensorAccuracy> = tensors.iter().collect();
    ranked.sort_by(|a, b| b.sqnr_drop_db.total_cmp(&a.sqnr_drop_db));
    let worst_layers = ranked
        .iter()
        .take(5)
        .filter(|t| t.sqnr_drop_db > 0.0)
        .map(|t| format!("{} ({}): -{:.1} dB", t.name, t.op, t.sqnr_drop_db))
        .collect();
    let report = CompareReport {
        samples: count,
        outputs,
        tensors,
        worst_layers,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn print_report(r: &CompareReport) {
    let row = |t: &TensorAccuracy| {
        format!(
            "  {:<40} {:<22} SQNR {:>7.2} dB  cosine {:.5}  max |error| {:.4}",
            t.name, t.op, t.sqnr_db, t.cosine, t.max_abs_error
        )
    };
    println!("outputs ({} sample(s)):", r.samples);
    for t in &r.outputs {
        println!("{}", row(t));
    }
    println!("\nlayers (float model order, matched by name):");
    for t in &r.tensors {
        println!("{}", row(t));
    }
    if !r.worst_layers.is_empty() {
        println!("\nlayers that lose the most:");
        for w in &r.worst_layers {
            println!("  {w}");
        }
    }
}
