//! `octet inspect MODEL [--json]`: what a person needs to know about a model at a glance.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use octet_core::{DType, Model, QuantParams, Subgraph, Tensor, TensorId};
use serde::Serialize;

/// Arguments of `octet inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// The .tflite model.
    model: PathBuf,
    /// Print one JSON document instead of the human summary.
    #[arg(long)]
    json: bool,
}

/// Everything `inspect` reports, in the shape of its JSON output.
#[derive(Serialize)]
struct Summary {
    file: String,
    file_bytes: u64,
    schema_version: u32,
    description: Option<String>,
    subgraphs: Vec<SubgraphSummary>,
    /// Operator name → number of uses, over all subgraphs.
    operators: BTreeMap<String, usize>,
    /// Custom op codes used, if any (TFLite needs the app to register these).
    custom_ops: Vec<String>,
    /// dtype → tensor counts and constant bytes, over all subgraphs.
    dtypes: BTreeMap<String, DTypeSummary>,
    weight_bytes: u64,
    sparse_constants: usize,
    signatures: Vec<SignatureSummary>,
    metadata: Vec<MetadataSummary>,
}

#[derive(Serialize)]
struct SubgraphSummary {
    index: usize,
    name: Option<String>,
    tensors: usize,
    operators: usize,
    inputs: Vec<TensorSummary>,
    outputs: Vec<TensorSummary>,
}

#[derive(Serialize)]
struct TensorSummary {
    index: u32,
    name: String,
    dtype: &'static str,
    shape: Vec<i32>,
    /// Shape with -1 for dimensions that may vary, when it differs from `shape`.
    #[serde(skip_serializing_if = "Option::is_none")]
    shape_signature: Option<Vec<i32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quantization: Option<QuantSummary>,
}

#[derive(Serialize)]
struct QuantSummary {
    scale: Vec<f32>,
    zero_point: Vec<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quantized_dimension: Option<i32>,
}

#[derive(Serialize, Default)]
struct DTypeSummary {
    tensors: usize,
    constant_tensors: usize,
    constant_bytes: u64,
}

#[derive(Serialize)]
struct SignatureSummary {
    key: String,
    subgraph: u32,
    inputs: Vec<(String, u32)>,
    outputs: Vec<(String, u32)>,
}

#[derive(Serialize)]
struct MetadataSummary {
    name: String,
    bytes: usize,
    /// The value, when it is short printable text (e.g. `min_runtime_version`).
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

/// Runs `octet inspect`.
pub fn run(args: &InspectArgs) -> Result<()> {
    let file_bytes = std::fs::metadata(&args.model)
        .with_context(|| format!("cannot read {}", args.model.display()))?
        .len();
    let model = octet_tflite::read_file(&args.model)
        .with_context(|| format!("cannot load {}", args.model.display()))?;
    let summary = summarize(&model, args.model.display().to_string(), file_bytes);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", render(&summary));
    }
    Ok(())
}

fn tensor_summary(sg: &Subgraph, id: TensorId) -> TensorSummary {
    // Indices were validated when the model was read; a missing tensor still prints, not panics.
    let fallback;
    let tensor = match sg.tensor(id) {
        Some(t) => t,
        None => {
            fallback = Tensor::new("?", DType::Float32, Default::default());
            &fallback
        }
    };
    TensorSummary {
        index: id.0,
        name: tensor.name.clone(),
        dtype: tensor.dtype.name(),
        shape: tensor.shape.dims().to_vec(),
        shape_signature: tensor
            .shape_signature
            .clone()
            .filter(|sig| sig.as_slice() != tensor.shape.dims()),
        quantization: tensor
            .quant
            .as_ref()
            .filter(|q| q.is_affine())
            .map(quant_summary),
    }
}

fn quant_summary(q: &QuantParams) -> QuantSummary {
    QuantSummary {
        scale: q.scale.clone(),
        zero_point: q.zero_point.clone(),
        quantized_dimension: q.is_per_axis().then_some(q.quantized_dimension),
    }
}

fn summarize(model: &Model, file: String, file_bytes: u64) -> Summary {
    let mut operators = BTreeMap::new();
    let mut custom_ops = Vec::new();
    let mut dtypes: BTreeMap<String, DTypeSummary> = BTreeMap::new();
    let mut weight_bytes = 0u64;
    let mut sparse_constants = 0;
    let mut subgraphs = Vec::new();
    for (index, sg) in model.subgraphs.iter().enumerate() {
        for op in &sg.operators {
            *operators.entry(op.op.name().into_owned()).or_insert(0) += 1;
            if let octet_core::Op::Custom(custom) = &op.op
                && !custom_ops.contains(&custom.code)
            {
                custom_ops.push(custom.code.clone());
            }
        }
        for tensor in &sg.tensors {
            let entry = dtypes.entry(tensor.dtype.name().to_owned()).or_default();
            entry.tensors += 1;
            if let Some(bytes) = model.tensor_bytes(tensor) {
                entry.constant_tensors += 1;
                entry.constant_bytes += bytes.len() as u64;
                weight_bytes += bytes.len() as u64;
                sparse_constants += usize::from(tensor.sparsity.is_some());
            }
        }
        subgraphs.push(SubgraphSummary {
            index,
            name: sg.name.clone(),
            tensors: sg.tensors.len(),
            operators: sg.operators.len(),
            inputs: sg.inputs.iter().map(|&id| tensor_summary(sg, id)).collect(),
            outputs: sg
                .outputs
                .iter()
                .map(|&id| tensor_summary(sg, id))
                .collect(),
        });
    }
    let signatures = model
        .signature_defs
        .iter()
        .map(|sig| SignatureSummary {
            key: sig.key.clone(),
            subgraph: sig.subgraph,
            inputs: sig
                .inputs
                .iter()
                .map(|t| (t.name.clone(), t.tensor.0))
                .collect(),
            outputs: sig
                .outputs
                .iter()
                .map(|t| (t.name.clone(), t.tensor.0))
                .collect(),
        })
        .collect();
    let metadata = model
        .metadata
        .iter()
        .map(|m| {
            let data = model
                .buffers
                .get(m.buffer.index())
                .map_or(&[][..], |b| b.data.as_slice());
            // Text metadata is often NUL-padded (min_runtime_version is "1.14.0\0\0...").
            let end = data.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
            let text = std::str::from_utf8(data.get(..end).unwrap_or_default())
                .ok()
                .filter(|t| !t.is_empty() && t.len() <= 64 && t.chars().all(|c| !c.is_control()))
                .map(str::to_owned);
            MetadataSummary {
                name: m.name.clone(),
                bytes: data.len(),
                text,
            }
        })
        .collect();
    Summary {
        file,
        file_bytes,
        schema_version: model.schema_version,
        description: model.description.clone(),
        subgraphs,
        operators,
        custom_ops,
        dtypes,
        weight_bytes,
        sparse_constants,
        signatures,
        metadata,
    }
}

/// Bytes as a person reads them: `812 B`, `23.4 KiB`, `5.2 MiB`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn shape_text(shape: &[i32]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|&d| if d < 0 { "?".to_owned() } else { d.to_string() })
        .collect();
    format!("[{}]", dims.join(", "))
}

fn quant_text(q: &QuantSummary) -> String {
    match (q.scale.as_slice(), q.quantized_dimension) {
        ([scale], _) => format!(
            "scale {scale:e}, zero point {}",
            q.zero_point.first().copied().unwrap_or(0)
        ),
        (scales, axis) => {
            let lo = scales.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = scales.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            format!(
                "per-axis (axis {}): {} scales in [{lo:e}, {hi:e}]",
                axis.unwrap_or(0),
                scales.len()
            )
        }
    }
}

fn tensor_line(t: &TensorSummary) -> String {
    let shape = t.shape_signature.as_deref().unwrap_or(&t.shape);
    let mut line = format!("{}{}  {}", t.dtype, shape_text(shape), t.name);
    if let Some(q) = &t.quantization {
        let _ = write!(line, "  ({})", quant_text(q));
    }
    line
}

fn render(s: &Summary) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "{}: {}, TFLite schema v{}{}",
        s.file,
        human_bytes(s.file_bytes),
        s.schema_version,
        s.description
            .as_deref()
            .map(|d| format!(", \"{d}\""))
            .unwrap_or_default()
    );
    let ops: usize = s.subgraphs.iter().map(|g| g.operators).sum();
    let tensors: usize = s.subgraphs.iter().map(|g| g.tensors).sum();
    let _ = writeln!(
        w,
        "{} subgraph(s), {ops} operators, {tensors} tensors, {} of constants{}",
        s.subgraphs.len(),
        human_bytes(s.weight_bytes),
        if s.sparse_constants > 0 {
            format!(" ({} sparse)", s.sparse_constants)
        } else {
            String::new()
        }
    );
    for g in &s.subgraphs {
        let _ = writeln!(
            w,
            "\nsubgraph {}{}: {} operators, {} tensors",
            g.index,
            g.name
                .as_deref()
                .map(|n| format!(" \"{n}\""))
                .unwrap_or_default(),
            g.operators,
            g.tensors
        );
        let _ = writeln!(w, "  inputs:");
        for t in &g.inputs {
            let _ = writeln!(w, "    {:>4}  {}", t.index, tensor_line(t));
        }
        let _ = writeln!(w, "  outputs:");
        for t in &g.outputs {
            let _ = writeln!(w, "    {:>4}  {}", t.index, tensor_line(t));
        }
    }
    let mut ops: Vec<_> = s.operators.iter().collect();
    ops.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let _ = writeln!(w, "\noperators:");
    for (name, count) in ops {
        let custom = if s.custom_ops.contains(name) {
            "  (custom)"
        } else {
            ""
        };
        let _ = writeln!(w, "  {name:<32} {count:>5}{custom}");
    }
    let _ = writeln!(
        w,
        "\ntensors by dtype:   tensors  constants  constant bytes"
    );
    for (dtype, d) in &s.dtypes {
        let _ = writeln!(
            w,
            "  {dtype:<16} {:>9}  {:>9}  {:>14}",
            d.tensors,
            d.constant_tensors,
            human_bytes(d.constant_bytes)
        );
    }
    if s.signatures.is_empty() {
        let _ = writeln!(w, "\nsignatures: none");
    } else {
        let _ = writeln!(w, "\nsignatures:");
        for sig in &s.signatures {
            let _ = writeln!(w, "  {} (subgraph {})", sig.key, sig.subgraph);
            let names = |list: &[(String, u32)]| {
                list.iter()
                    .map(|(n, t)| format!("{n} = tensor {t}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(w, "    inputs:  {}", names(&sig.inputs));
            let _ = writeln!(w, "    outputs: {}", names(&sig.outputs));
        }
    }
    if !s.metadata.is_empty() {
        let _ = writeln!(w, "\nmetadata:");
        for m in &s.metadata {
            match &m.text {
                Some(text) => {
                    let _ = writeln!(w, "  {:<32} \"{text}\"", m.name);
                }
                None => {
                    let _ = writeln!(w, "  {:<32} {}", m.name, human_bytes(m.bytes as u64));
                }
            }
        }
    }
    out
}
