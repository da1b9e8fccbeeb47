//! `octet quantize MODEL -o OUT --mode M [...]`: post-training quantization with a report.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use octet_core::{DType, Model};
use octet_quant::metrics::{ErrorAccumulator, ErrorStats};
use octet_quant::{Calibration, Mode, QuantizeOptions, QuantizeReport};
use octet_runtime::{Interpreter, InterpreterOptions, TensorInfo};

use crate::run::{RuntimeArgs, all_cores};
use serde::Serialize;

use crate::calib::{CalibSource, ImageStats};

/// The `--mode` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum ModeArg {
    Int8,
    Uint8,
    Int16x8,
    Dynamic,
    Fp16,
    WeightInt8,
}

/// `--input-type` / `--output-type` values.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum IoType {
    Float32,
    Int8,
    Uint8,
}

/// Arguments of `octet quantize`.
#[derive(Args)]
pub struct QuantizeArgs {
    /// The float .tflite model.
    model: PathBuf,
    /// Where to write the quantized model (not the input file).
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
    /// The quantization scheme.
    #[arg(long, value_enum, default_value = "int8")]
    mode: ModeArg,
    /// The legacy converter's flag: QUANTIZED_UINT8 means --mode uint8.
    #[arg(long, value_name = "TYPE")]
    inference_type: Option<String>,
    /// Calibration data: FILE.npy, FILE.npz, a directory of .npy files or images, or
    /// random[:MIN,MAX].
    #[arg(long, value_name = "SOURCE")]
    calib: Option<String>,
    /// Use at most N calibration samples.
    #[arg(long, value_name = "N")]
    samples: Option<usize>,
    /// Legacy input statistics: mean per input (comma-separated), `real = (q - mean) / std`.
    /// Also maps image pixels to floats for --calib DIR.
    #[arg(long, value_name = "M[,M...]", allow_hyphen_values = true)]
    mean_values: Option<String>,
    /// Legacy input statistics: std_dev per input (comma-separated).
    #[arg(long, value_name = "S[,S...]")]
    std_dev_values: Option<String>,
    /// Range for every activation without a calibrated one (needs --default-ranges-max).
    #[arg(long, requires = "default_ranges_max", allow_hyphen_values = true)]
    default_ranges_min: Option<f32>,
    /// Upper end of the default range.
    #[arg(long, requires = "default_ranges_min", allow_hyphen_values = true)]
    default_ranges_max: Option<f32>,
    /// dtype of the quantized model's inputs [default: float32; uint8 for the legacy path
    /// with --mean-values/--std-dev-values, as tflite_convert makes it].
    #[arg(long, value_enum)]
    input_type: Option<IoType>,
    /// dtype of the quantized model's outputs [default: as for --input-type].
    #[arg(long, value_enum)]
    output_type: Option<IoType>,
    /// Data to measure accuracy on (same forms as --calib except random) [default: the
    /// calibration data].
    #[arg(long, value_name = "SOURCE")]
    eval_data: Option<String>,
    /// Integer class labels for --eval-data (a .npy with one label per sample): the report then
    /// gives top-1 accuracy of output 0 for the float and the quantized model.
    #[arg(long, value_name = "Y.npy", requires = "eval_data")]
    eval_labels: Option<PathBuf>,
    /// Print the report as one JSON document.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

fn dtype_of(t: IoType) -> DType {
    match t {
        IoType::Float32 => DType::Float32,
        IoType::Int8 => DType::Int8,
        IoType::Uint8 => DType::UInt8,
    }
}

fn parse_list(text: &str, flag: &str) -> Result<Vec<f32>> {
    text.split(',')
        .map(|v| {
            v.trim()
                .parse::<f32>()
                .with_context(|| format!("{flag} takes numbers separated by commas, got {text:?}"))
        })
        .collect()
}

/// True when `a` and `b` name the same file (the second may not exist yet).
fn same_file(a: &Path, b: &Path) -> bool {
    let resolve = |p: &Path| -> Option<PathBuf> {
        if let Ok(c) = p.canonicalize() {
            return Some(c);
        }
        let parent = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        Some(parent.canonicalize().ok()?.join(p.file_name()?))
    };
    resolve(a).is_some_and(|x| resolve(b).is_some_and(|y| x == y))
}

/// A progress bar on stderr for calibration, shown only once it has taken more than a moment
/// (and, as indicatif does, only on a terminal).
struct CalibrationProgress {
    start: std::time::Instant,
    bar: Option<indicatif::ProgressBar>,
}

impl CalibrationProgress {
    fn new() -> Self {
        CalibrationProgress {
            start: std::time::Instant::now(),
            bar: None,
        }
    }

    fn update(&mut self, done: usize, total: usize) {
        if self.bar.is_none() && self.start.elapsed() > std::time::Duration::from_millis(500) {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "calibrating {bar:40} {pos}/{len} samples, {eta} left",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// One output's accuracy against the float model.
#[derive(Serialize)]
struct OutputAccuracy {
    index: usize,
    name: String,
    /// Infinite (JSON `null`) when the outputs are identical.
    sqnr_db: f64,
    cosine: f64,
    max_abs_error: f64,
}

/// The report `octet quantize` prints.
#[derive(Serialize)]
struct Report {
    model: String,
    output: String,
    mode: &'static str,
    tensors_quantized: usize,
    tensors_float: usize,
    float_ops: Vec<String>,
    file_bytes_before: u64,
    file_bytes_after: u64,
    size_ratio: f64,
    /// Bytes of constant data (weights, biases) before and after.
    constant_bytes_before: usize,
    constant_bytes_after: usize,
    calibration_samples: usize,
    /// What the accuracy figures were measured on.
    evaluated_on: String,
    evaluation_samples: usize,
    outputs: Vec<OutputAccuracy>,
    /// Top-1 accuracy of output 0, float model, when labels were given.
    #[serde(skip_serializing_if = "Option::is_none")]
    top1_float: Option<f64>,
    /// Top-1 accuracy of output 0, quantized model, when labels were given.
    #[serde(skip_serializing_if = "Option::is_none")]
    top1_quantized: Option<f64>,
}

/// Runs `octet quantize`.
pub fn run(args: &QuantizeArgs) -> Result<()> {
    if same_file(&args.model, &args.output) {
        bail!(
            "-o {} is the input model; write the quantized model to another file",
            args.output.display()
        );
    }
    let mode = match args.inference_type.as_deref() {
        None => match args.mode {
            ModeArg::Int8 => Mode::Int8,
            ModeArg::Uint8 => Mode::UInt8,
            ModeArg::Int16x8 => Mode::Int16x8,
            ModeArg::Dynamic => Mode::Dynamic,
            ModeArg::Fp16 => Mode::Fp16,
            ModeArg::WeightInt8 => Mode::WeightInt8,
        },
        Some("QUANTIZED_UINT8") => Mode::UInt8,
        Some(other) => bail!("--inference-type {other} is not supported (QUANTIZED_UINT8 is)"),
    };
    let model = octet_tflite::read_file(&args.model)
        .with_context(|| format!("cannot load {}", args.model.display()))?;
    let float = Interpreter::new(&model)
        .with_context(|| format!("cannot run {} in octet", args.model.display()))?;
    let inputs: Vec<TensorInfo> = (0..float.num_inputs())
        .map(|i| float.input_info(i).cloned())
        .collect::<Result<_, _>>()?;

    let means = args
        .mean_values
        .as_deref()
        .map(|t| parse_list(t, "--mean-values"))
        .transpose()?;
    let stds = args
        .std_dev_values
        .as_deref()
        .map(|t| parse_list(t, "--std-dev-values"))
        .transpose()?;
    let input_stats: Vec<(f32, f32)> = match (&means, &stds) {
        (Some(m), Some(s)) if m.len() == s.len() => {
            m.iter().copied().zip(s.iter().copied()).collect()
        }
        (Some(_), Some(_)) => {
            bail!("--mean-values and --std-dev-values need one value per input each")
        }
        (None, None) => Vec::new(),
        _ => bail!("--mean-values and --std-dev-values go together"),
    };
    if !input_stats.is_empty() && input_stats.len() != inputs.len() {
        bail!(
            "the model has {} input(s); give that many --mean-values and --std-dev-values",
            inputs.len()
        );
    }

    let calibration = args
        .calib
        .as_deref()
        .map(|text| {
            let source = CalibSource::parse(text)?;
            let stats = input_stats.first().map_or(
                ImageStats {
                    mean: 0.0,
                    std_dev: 255.0,
                },
                |&(mean, std_dev)| ImageStats { mean, std_dev },
            );
            crate::calib::load(&source, &inputs, args.samples, stats)
                .with_context(|| format!("cannot load calibration data from {text}"))
        })
        .transpose()?;

    let mut options = QuantizeOptions::new(mode);
    // The legacy converter's input statistics describe a uint8 input: with them, tflite_convert
    // makes a model with uint8 input and output.
    let legacy_io = if mode == Mode::UInt8 && !input_stats.is_empty() {
        IoType::Uint8
    } else {
        IoType::Float32
    };
    options.input_type = dtype_of(args.input_type.unwrap_or(legacy_io));
    options.output_type = dtype_of(args.output_type.unwrap_or(legacy_io));
    options.input_stats = input_stats;
    options.threads = args.runtime.options(all_cores())?.threads;
    options.default_range = args.default_ranges_min.zip(args.default_ranges_max);

    let (quantized, summary) = {
        let mut progress = CalibrationProgress::new();
        let result = octet_quant::quantize_with_progress(
            &model,
            &options,
            calibration.as_ref(),
            &mut |done, total| progress.update(done, total),
        );
        progress.finish();
        result?
    };
    octet_tflite::write_file(&args.output, &quantized)
        .with_context(|| format!("cannot write {}", args.output.display()))?;

    let report = build_report(
        args,
        mode,
        &model,
        &quantized,
        &summary,
        calibration.as_ref(),
        &inputs,
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

/// What running both models on evaluation data showed.
struct Evaluation {
    outputs: Vec<OutputAccuracy>,
    samples: usize,
    /// `(float, quantized)` top-1 accuracy of output 0, when labels were given.
    top1: Option<(f64, f64)>,
}

/// Index of the largest value (the predicted class).
fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

/// Runs both models on `data` and compares outputs (integer outputs dequantized); with
/// `labels`, also counts correct top-1 predictions of output 0.
fn evaluate(
    float_model: &Model,
    quantized: &Model,
    data: &Calibration,
    labels: Option<&[i64]>,
    runtime: InterpreterOptions,
) -> Result<Evaluation> {
    let mut float = Interpreter::with_options(float_model, runtime)?;
    let mut quant = Interpreter::with_options(quantized, runtime)
        .context("octet cannot run the quantized model to measure its accuracy")?;
    let outputs = float.num_outputs();
    let mut accumulators = vec![ErrorAccumulator::default(); outputs];
    let (mut float_correct, mut quant_correct) = (0usize, 0usize);
    for (s, sample) in data.samples.iter().enumerate() {
        for (i, values) in sample.iter().enumerate() {
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            float.set_input(i, &bytes)?;
            let info = quant.input_info(i)?.clone();
            quant.set_input(i, &to_dtype(values, &info)?)?;
        }
        float.invoke()?;
        quant.invoke()?;
        for (k, accumulator) in accumulators.iter_mut().enumerate() {
            let reference = as_f32(float.output(k)?, float.output_info(k)?);
            let approx = as_f32(quant.output(k)?, quant.output_info(k)?);
            accumulator.add(&reference, &approx);
            if k == 0
                && let Some(label) = labels.and_then(|l| l.get(s))
            {
                float_correct += usize::from(argmax(&reference) as i64 == *label);
                quant_correct += usize::from(argmax(&approx) as i64 == *label);
            }
        }
    }
    let outputs = accumulators
        .iter()
        .enumerate()
        .map(|(k, accumulator)| {
            let ErrorStats {
                sqnr_db,
                cosine,
                max_abs_error,
                ..
            } = accumulator.stats();
            Ok(OutputAccuracy {
                index: k,
                name: float.output_info(k)?.name.clone(),
                sqnr_db,
                cosine,
                max_abs_error,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let n = data.samples.len();
    Ok(Evaluation {
        outputs,
        samples: n,
        top1: labels.map(|_| {
            (
                float_correct as f64 / n.max(1) as f64,
                quant_correct as f64 / n.max(1) as f64,
            )
        }),
    })
}

/// Reads integer class labels, one per sample.
fn read_labels(path: &Path, samples: usize) -> Result<Vec<i64>> {
    let array = crate::npy::read_npy(path)?;
    let labels: Vec<i64> = match array.dtype {
        DType::Int32 => array
            .bytes
            .chunks_exact(4)
            .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        DType::Int64 => array
            .bytes
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                i64::from_le_bytes(b)
            })
            .collect(),
        DType::UInt8 => array.bytes.iter().map(|&b| i64::from(b)).collect(),
        other => bail!("{}: labels must be integers, got {other}", path.display()),
    };
    if labels.len() != samples {
        bail!(
            "{}: {} labels for {samples} evaluation samples",
            path.display(),
            labels.len()
        );
    }
    Ok(labels)
}

/// Float values in the input's dtype (quantized with its parameters when integer).
fn to_dtype(values: &[f32], info: &TensorInfo) -> Result<Vec<u8>> {
    if info.dtype == DType::Float32 {
        return Ok(values.iter().flat_map(|v| v.to_le_bytes()).collect());
    }
    let (scale, zero_point) = info
        .scale_zero_point()
        .with_context(|| format!("input '{}' has no quantization parameters", info.name))?;
    let q = |x: f32, lo: f32, hi: f32| ((x / scale).round() + zero_point as f32).clamp(lo, hi);
    Ok(match info.dtype {
        DType::Int8 => values
            .iter()
            .map(|&x| q(x, -128.0, 127.0) as i8 as u8)
            .collect(),
        DType::UInt8 => values.iter().map(|&x| q(x, 0.0, 255.0) as u8).collect(),
        DType::Int16 => values
            .iter()
            .flat_map(|&x| (q(x, -32768.0, 32767.0) as i16).to_le_bytes())
            .collect(),
        other => bail!("input '{}' is {other}", info.name),
    })
}

/// Tensor bytes as real values (dequantized for integer tensors; empty for other dtypes).
pub(crate) fn as_f32(bytes: &[u8], info: &TensorInfo) -> Vec<f32> {
    let (scale, zero_point) = info.scale_zero_point().unwrap_or((1.0, 0));
    let deq = |q: i32| scale * (q - zero_point) as f32;
    match info.dtype {
        DType::Float32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        DType::Int8 => bytes.iter().map(|&b| deq(i32::from(b as i8))).collect(),
        DType::UInt8 => bytes.iter().map(|&b| deq(i32::from(b))).collect(),
        DType::Int16 => bytes
            .chunks_exact(2)
            .map(|c| deq(i32::from(i16::from_le_bytes([c[0], c[1]]))))
            .collect(),
        _ => Vec::new(),
    }
}

fn build_report(
    args: &QuantizeArgs,
    mode: Mode,
    model: &Model,
    quantized: &Model,
    summary: &QuantizeReport,
    calibration: Option<&Calibration>,
    inputs: &[TensorInfo],
) -> Result<Report> {
    let before = std::fs::metadata(&args.model)?.len();
    let after = std::fs::metadata(&args.output)?.len();
    let (evaluation, evaluated_on) = match &args.eval_data {
        Some(text) => {
            let source = CalibSource::parse(text)?;
            let data = crate::calib::load(
                &source,
                inputs,
                None,
                ImageStats {
                    mean: 0.0,
                    std_dev: 255.0,
                },
            )
            .with_context(|| format!("cannot load evaluation data from {text}"))?;
            let labels = args
                .eval_labels
                .as_deref()
                .map(|p| read_labels(p, data.samples.len()))
                .transpose()?;
            (
                Some(evaluate(
                    model,
                    quantized,
                    &data,
                    labels.as_deref(),
                    args.runtime.options(all_cores())?,
                )?),
                text.clone(),
            )
        }
        None => match calibration {
            Some(c) => {
                // Accuracy on (at most 200 of) the calibration samples.
                let some = Calibration {
                    samples: c.samples.iter().take(200).cloned().collect(),
                };
                (
                    Some(evaluate(
                        model,
                        quantized,
                        &some,
                        None,
                        args.runtime.options(all_cores())?,
                    )?),
                    "the calibration data".to_owned(),
                )
            }
            None => (None, String::new()),
        },
    };
    let (outputs, evaluation_samples, top1) = match evaluation {
        Some(e) => (e.outputs, e.samples, e.top1),
        None => (Vec::new(), 0, None),
    };
    Ok(Report {
        model: args.model.display().to_string(),
        output: args.output.display().to_string(),
        mode: mode.name(),
        tensors_quantized: summary.tensors_quantized,
        tensors_float: summary.tensors_float,
        float_ops: summary
            .float_ops
            .iter()
            .map(|(i, name)| format!("{name} (operator {i})"))
            .collect(),
        file_bytes_before: before,
        file_bytes_after: after,
        size_ratio: before as f64 / after.max(1) as f64,
        constant_bytes_before: summary.constant_bytes_before,
        constant_bytes_after: summary.constant_bytes_after,
        calibration_samples: calibration.map_or(0, |c| c.samples.len()),
        evaluated_on,
        evaluation_samples,
        outputs,
        top1_float: top1.map(|t| t.0),
        top1_quantized: top1.map(|t| t.1),
    })
}

fn print_report(r: &Report) {
    println!("{} -> {} ({})", r.model, r.output, r.mode);
    println!(
        "  size        {} -> {} bytes ({:.2}x smaller)",
        r.file_bytes_before, r.file_bytes_after, r.size_ratio
    );
    println!(
        "  weights     {} -> {} bytes ({:.2}x smaller)",
        r.constant_bytes_before,
        r.constant_bytes_after,
        r.constant_bytes_before as f64 / r.constant_bytes_after.max(1) as f64
    );
    println!(
        "  tensors     {} quantized, {} left float",
        r.tensors_quantized, r.tensors_float
    );
    if r.float_ops.is_empty() {
        println!("  float ops   none");
    } else {
        println!(
            "  float ops   {} (no integer kernel in TFLite)",
            r.float_ops.join(", ")
        );
    }
    if let (Some(f), Some(q)) = (r.top1_float, r.top1_quantized) {
        println!(
            "  top-1       float {:.2}%  ->  {} {:.2}%  ({} samples of {})",
            f * 100.0,
            r.mode,
            q * 100.0,
            r.evaluation_samples,
            r.evaluated_on
        );
    }
    if r.outputs.is_empty() {
        println!("  accuracy    not measured (no calibration or evaluation data)");
    } else {
        println!(
            "  accuracy against the float model on {} sample(s) of {}:",
            r.evaluation_samples, r.evaluated_on
        );
        for o in &r.outputs {
            println!(
                "    output {} {:<28} SQNR {:>6.2} dB  cosine {:.5}  max |error| {:.4}",
                o.index, o.name, o.sqnr_db, o.cosine, o.max_abs_error
            );
        }
    }
}
