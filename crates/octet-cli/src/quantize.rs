//! `octet quantize MODEL -o OUT --mode M [...]`: post-training quantization with a report.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use octet_core::{DType, Model, QuantParams};
use octet_quant::metrics::{ErrorAccumulator, ErrorStats};
use octet_quant::{
    Calibration, CalibrationMethod, Mode, OpPattern, QuantizeOptions, QuantizeReport, RangeMethod,
    Target,
};
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

/// The `--target` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum TargetArg {
    /// LiteRT's default CPU path (XNNPACK): ops it runs only in float stay float.
    Litert,
    /// Every op integer (microcontrollers, NPUs); an op that cannot be is an error.
    IntegerOnly,
    /// octet's own runtime: every op that has an integer kernel is integer.
    Octet,
}

impl TargetArg {
    fn target(self) -> Target {
        match self {
            TargetArg::Litert => Target::Litert,
            TargetArg::IntegerOnly => Target::IntegerOnly,
            TargetArg::Octet => Target::Octet,
        }
    }
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
    /// Where the file will run, for the full-integer modes: `litert` keeps float the ops that
    /// LiteRT's XNNPACK delegate runs only in float (PRELU, standalone RELUs, HARD_SWISH,
    /// SOFTMAX...), so they do not split its graph; `integer-only` makes every op integer or
    /// fails naming the op; `octet` makes integer every op octet's runtime has a kernel for.
    #[arg(long, value_enum, default_value = "litert")]
    target: TargetArg,
    /// How each activation's range is chosen from the calibration data (8-bit modes): `minmax`
    /// (the extremes seen), `percentile[=P]` (clip the outer 100-P % of values, default
    /// 99.99), `mse` (the range whose quantization error over the values seen is smallest),
    /// `entropy` (TensorRT's KL-divergence thresholds, per side of zero), or
    /// `auto`: each of those quantizes the model and the one whose outputs on half the
    /// calibration samples are closest to the float model's, with ranges from the other half,
    /// is kept.
    #[arg(long, value_name = "METHOD", default_value = "percentile", value_parser = parse_calibration)]
    calibration: CalibrationMethod,
    /// Keep float the ops whose name (PRELU) or output tensor name matches this regular
    /// expression (full-integer modes), e.g. `--keep-float 'classificator|regressor'` for a
    /// detector's heads.
    #[arg(long, value_name = "REGEX")]
    keep_float: Option<String>,
    /// Quantize biases as they are. By default each CONV_2D, DEPTHWISE_CONV_2D and
    /// FULLY_CONNECTED bias absorbs the mean shift its int8 weights cause on the calibration
    /// data (empirical bias correction).
    #[arg(long)]
    no_bias_correction: bool,
    /// Leave activation channels as they are. By default, where a convolution (RELU or no
    /// activation) feeds only another convolution, the channels of the tensor between them are
    /// rescaled (the first layer's filters divided, the second's weights multiplied: the float
    /// model computes the same) so that one int8 scale fits all of them.
    #[arg(long)]
    no_equalization: bool,
    /// Measure each layer's effect alone: the mean output SQNR on the calibration samples of
    /// the model in which only that layer is quantized (one quantization and evaluation per
    /// layer: seconds for a MediaPipe model). Lists the 15 worst; --json lists all.
    #[arg(long)]
    sensitivity: bool,
    /// Keep float the fewest layers, most damaging first (as --sensitivity ranks them), that
    /// bring the mean output SQNR on the calibration samples to DB; the report says which and
    /// what it cost in size.
    #[arg(long, value_name = "DB")]
    target_sqnr: Option<f64>,
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
    /// Skip measuring accuracy against the float model (the report then has none).
    #[arg(long, conflicts_with_all = ["eval_data", "eval_labels"])]
    no_eval: bool,
    /// Print the report as one JSON document.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

fn parse_calibration(text: &str) -> Result<CalibrationMethod, String> {
    Ok(match text {
        "auto" => CalibrationMethod::Auto,
        "minmax" => CalibrationMethod::Fixed(RangeMethod::MinMax),
        "mse" => CalibrationMethod::Fixed(RangeMethod::Mse),
        "entropy" => CalibrationMethod::Fixed(RangeMethod::Entropy),
        "percentile" => CalibrationMethod::Fixed(RangeMethod::Percentile(99.99)),
        other => match other.strip_prefix("percentile=") {
            Some(p) => {
                let p: f32 = p
                    .parse()
                    .map_err(|_| format!("percentile={p}: not a number"))?;
                if !(p > 50.0 && p <= 100.0) {
                    return Err(format!("percentile={p}: give a percentage in (50, 100]"));
                }
                CalibrationMethod::Fixed(RangeMethod::Percentile(p))
            }
            None => {
                return Err(format!(
                    "{other}: expected minmax, percentile[=P], mse, entropy or auto"
                ));
            }
        },
    })
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

/// A progress bar on stderr for calibration or evaluation, shown only once it has taken more
/// than a moment (and, as indicatif does, only on a terminal).
struct Progress {
    /// What is being done ("calibrating", "evaluating").
    label: &'static str,
    start: std::time::Instant,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(label: &'static str) -> Self {
        Progress {
            label,
            start: std::time::Instant::now(),
            bar: None,
        }
    }

    fn update(&mut self, done: usize, total: usize) {
        if self.bar.is_none() && self.start.elapsed() > std::time::Duration::from_millis(500) {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(&format!(
                    "{} {{bar:40}} {{pos}}/{{len}} samples, {{eta}} left",
                    self.label
                ))
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

/// How activation ranges were chosen.
#[derive(Serialize)]
struct CalibrationReport {
    requested: String,
    used: String,
}

/// One layer's sensitivity.
#[derive(Serialize)]
struct SensitivityReport {
    operator: usize,
    op: String,
    output: String,
    sqnr_db: f64,
}

/// An op that stayed float.
#[derive(Serialize)]
struct FloatOpReport {
    operator: usize,
    op: String,
    reason: &'static str,
}

/// The report `octet quantize` prints.
#[derive(Serialize)]
struct Report {
    model: String,
    output: String,
    mode: &'static str,
    /// `--target`, for the full-integer modes.
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'static str>,
    tensors_quantized: usize,
    tensors_float: usize,
    /// Standalone RELU/RELU6/RELU_N1_TO_1 folded into their producers.
    activations_fused: usize,
    /// MUL/ADD/SUB by constants folded into the convolution before them.
    constants_folded: usize,
    /// Sparse weights made dense.
    densified: usize,
    /// Pairs of convolutions whose activation channels were equalized.
    equalized: usize,
    /// `--calibration` as given, and the range method used (what `auto` chose).
    #[serde(skip_serializing_if = "Option::is_none")]
    calibration: Option<CalibrationReport>,
    float_ops: Vec<FloatOpReport>,
    /// Per layer, the mean output SQNR with only it quantized (--sensitivity), worst first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sensitivity: Vec<SensitivityReport>,
    /// Mean output SQNR on the calibration samples, where measured (--sensitivity,
    /// --target-sqnr).
    #[serde(skip_serializing_if = "Option::is_none")]
    calibration_sqnr_db: Option<f64>,
    /// --target-sqnr: median latency (ms, octet's runtime, 1 thread) of the all-int8 model and
    /// of the written one.
    #[serde(skip_serializing_if = "Option::is_none")]
    target_latency_ms: Option<(f64, f64)>,
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
    let inputs = input_infos(&model)
        .with_context(|| format!("cannot run {} in octet", args.model.display()))?;

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
    options.target = args.target.target();
    options.calibration = args.calibration;
    options.bias_correction = !args.no_bias_correction;
    options.equalization = !args.no_equalization;
    options.sensitivity = args.sensitivity;
    if let Some(t) = args.target_sqnr
        && !t.is_finite()
    {
        bail!("--target-sqnr takes a finite number of dB, got {t}");
    }
    options.target_sqnr = args.target_sqnr;
    options.keep_float = args
        .keep_float
        .as_deref()
        .map(OpPattern::new)
        .transpose()
        .context("--keep-float")?;
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
    // Accuracy is measured on the calibration samples unless other data is given: keep the
    // float model's outputs on them from calibration rather than running it again.
    if args.eval_data.is_none() && !args.no_eval {
        options.keep_float_outputs = EVALUATION_SAMPLES;
    }
    for note in notes(args, mode, &model, !options.input_stats.is_empty()) {
        eprintln!("note: {note}");
    }

    let (quantized, summary) = {
        let mut progress = Progress::new("calibrating");
        let result = octet_quant::quantize_with_progress(
            &model,
            &options,
            calibration.as_ref(),
            &mut |done, total| progress.update(done, total),
        );
        progress.finish();
        match result {
            Ok(quantized) => quantized,
            // Calibration runs a folded copy of the model: when octet cannot run the model at
            // all, say so about the model as the user gave it.
            Err(e) => match Interpreter::new(&model) {
                Err(run) => {
                    return Err(anyhow::Error::new(run)
                        .context(format!("cannot run {} in octet", args.model.display())));
                }
                Ok(_) => return Err(e.into()),
            },
        }
    };
    let bytes = octet_tflite::write_model(&quantized)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    let report = std::thread::scope(|scope| -> Result<Report> {
        // The file is written, and synced to disk, while accuracy is measured.
        let writer = scope.spawn(|| octet_core::fs::write_atomic(&args.output, &bytes));
        let report = build_report(
            args,
            mode,
            &model,
            &quantized,
            &summary,
            calibration.as_ref(),
            bytes.len() as u64,
        );
        writer
            .join()
            .map_err(|_| anyhow::anyhow!("the thread writing the model panicked"))?
            .with_context(|| format!("cannot write {}", args.output.display()))?;
        report
    })?;
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

/// At most this many calibration samples measure accuracy when no evaluation data is given.
const EVALUATION_SAMPLES: usize = 200;

/// What the runtime knows about the main subgraph's graph inputs, read from the model (no
/// interpreter needed).
fn input_infos(model: &Model) -> Result<Vec<TensorInfo>> {
    let sg = model.main_subgraph().context("the model has no subgraph")?;
    sg.inputs
        .iter()
        .map(|&id| {
            let tensor = sg
                .tensor(id)
                .with_context(|| format!("input tensor {} does not exist", id.0))?;
            TensorInfo::from_tensor(tensor).with_context(|| format!("tensor '{}'", tensor.name))
        })
        .collect()
}

/// Name, dtype and quantization of the main subgraph's outputs, as an interpreter reports them
/// (the shape is left out: outputs may only get one by shape inference, and it is not needed
/// to read their values).
fn output_infos(model: &Model) -> Result<Vec<TensorInfo>> {
    let sg = model.main_subgraph().context("the model has no subgraph")?;
    sg.outputs
        .iter()
        .map(|&id| {
            let tensor = sg
                .tensor(id)
                .with_context(|| format!("output tensor {} does not exist", id.0))?;
            Ok(TensorInfo {
                name: tensor.name.clone(),
                dtype: tensor.dtype,
                shape: Vec::new(),
                quant: tensor.quant.clone().filter(QuantParams::is_affine),
            })
        })
        .collect()
}

/// One evaluation sample's outputs as real values: the float model's (unless they were known
/// already) and the quantized model's.
type SampleOutputs = (Option<Vec<Vec<f32>>>, Vec<Vec<f32>>);

/// Runs the quantized model (and the float model, unless `float_outputs` holds its outputs on
/// every sample already) on `samples` and compares outputs (integer outputs dequantized); with
/// `labels`, also counts correct top-1 predictions of output 0.
///
/// Samples are shared among `runtime.threads` workers, each with its own interpreters, and
/// compared in sample order, so the figures do not depend on the number of threads.
fn evaluate(
    float_model: &Model,
    quantized: &Model,
    samples: &[Vec<Vec<f32>>],
    float_outputs: Option<&[Vec<Vec<u8>>]>,
    labels: Option<&[i64]>,
    runtime: InterpreterOptions,
) -> Result<Evaluation> {
    let float_outputs = float_outputs.filter(|f| f.len() == samples.len());
    let float_infos = output_infos(float_model)?;
    let workers = runtime.threads.clamp(1, samples.len().max(1));
    let options = InterpreterOptions {
        threads: (runtime.threads / workers).max(1),
        isa: runtime.isa,
    };
    let mut accumulators = vec![ErrorAccumulator::default(); float_infos.len()];
    let (mut float_correct, mut quant_correct) = (0usize, 0usize);
    let mut progress = Progress::new("evaluating");
    let compare = |s: usize, (float, quant): SampleOutputs| -> Result<()> {
        progress.update(s + 1, samples.len());
        for (k, accumulator) in accumulators.iter_mut().enumerate() {
            let recorded;
            let reference: &[f32] = match (&float, float_outputs) {
                (Some(float), _) => float.get(k).map_or(&[], Vec::as_slice),
                (None, Some(known)) => {
                    let bytes = known
                        .get(s)
                        .and_then(|o| o.get(k))
                        .context("calibration kept no float output")?;
                    recorded = as_f32(bytes, &float_infos[k]);
                    &recorded
                }
                (None, None) => bail!("no float output for sample {s}"),
            };
            let approx = quant.get(k).map_or(&[][..], Vec::as_slice);
            accumulator.add(reference, approx);
            if k == 0
                && let Some(label) = labels.and_then(|l| l.get(s))
            {
                float_correct += usize::from(argmax(reference) as i64 == *label);
                quant_correct += usize::from(argmax(approx) as i64 == *label);
            }
        }
        Ok(())
    };
    octet_quant::parallel::in_order(
        workers,
        samples.len(),
        || -> Result<(Interpreter, Option<Interpreter>)> {
            let quant = Interpreter::with_options(quantized, options)
                .context("octet cannot run the quantized model to measure its accuracy")?;
            let float = match float_outputs {
                Some(_) => None,
                None => Some(
                    Interpreter::with_options(float_model, options)
                        .context("octet cannot run the float model to measure accuracy")?,
                ),
            };
            Ok((quant, float))
        },
        |(quant, float), s| -> Result<SampleOutputs> {
            let sample = &samples[s];
            for (i, values) in sample.iter().enumerate() {
                if let Some(float) = float.as_mut() {
                    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                    float.set_input(i, &bytes)?;
                }
                let info = quant.input_info(i)?.clone();
                quant.set_input(i, &to_dtype(values, &info)?)?;
            }
            let float = match float.as_mut() {
                Some(float) => {
                    float.invoke()?;
                    Some(
                        (0..float.num_outputs())
                            .map(|k| Ok(as_f32(float.output(k)?, float.output_info(k)?)))
                            .collect::<Result<Vec<_>>>()?,
                    )
                }
                None => None,
            };
            quant.invoke()?;
            let approx = (0..quant.num_outputs())
                .map(|k| Ok(as_f32(quant.output(k)?, quant.output_info(k)?)))
                .collect::<Result<Vec<_>>>()?;
            Ok((float, approx))
        },
        compare,
    )?;
    progress.finish();
    let outputs = accumulators
        .iter()
        .zip(&float_infos)
        .enumerate()
        .map(|(k, (accumulator, info))| {
            let ErrorStats {
                sqnr_db,
                cosine,
                max_abs_error,
                ..
            } = accumulator.stats();
            OutputAccuracy {
                index: k,
                name: info.name.clone(),
                sqnr_db,
                cosine,
                max_abs_error,
            }
        })
        .collect();
    let n = samples.len();
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

/// What the user should know about how their flags were read: flags the mode ignores, images
/// mapped with a default range, a model that is already quantized.
fn notes(args: &QuantizeArgs, mode: Mode, model: &Model, has_stats: bool) -> Vec<String> {
    let mut notes = Vec::new();
    if !mode.needs_activation_ranges() {
        let ignored: Vec<&str> = [
            (args.keep_float.is_some(), "--keep-float"),
            (args.sensitivity, "--sensitivity"),
            (args.target_sqnr.is_some(), "--target-sqnr"),
            (args.no_bias_correction, "--no-bias-correction"),
            (args.no_equalization, "--no-equalization"),
            (
                args.default_ranges_min.is_some(),
                "--default-ranges-min/max",
            ),
            (has_stats, "--mean-values/--std-dev-values"),
        ]
        .into_iter()
        .filter_map(|(given, flag)| given.then_some(flag))
        .collect();
        if !ignored.is_empty() {
            notes.push(format!(
                "--mode {} ignores {}: only the full-integer modes use it",
                mode.name(),
                ignored.join(", ")
            ));
        }
    }
    if let Some(text) = args.calib.as_deref()
        && let Ok(CalibSource::Dir(dir)) = CalibSource::parse(text)
        && !has_stats
        && crate::calib::holds_images(&dir)
    {
        notes.push(
            "calibration images are read as pixel / 255 (range [0, 1]); a model that expects \
             another range needs --mean-values and --std-dev-values (e.g. 127.5 and 127.5 for \
             [-1, 1])"
                .into(),
        );
    }
    if let Some(sg) = model.main_subgraph() {
        let quantized = sg
            .tensors
            .iter()
            .filter(|t| {
                t.quant.as_ref().is_some_and(QuantParams::is_affine)
                    && t.dtype.is_quantizable_integer()
                    && model.tensor_bytes(t).is_none()
            })
            .count();
        if quantized > 0 {
            notes.push(format!(
                "the model is already quantized ({quantized} integer activation tensors): \
                 only its float parts are quantized"
            ));
        }
    }
    notes
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

/// The report; `after` is the size of the quantized file.
fn build_report(
    args: &QuantizeArgs,
    mode: Mode,
    model: &Model,
    quantized: &Model,
    summary: &QuantizeReport,
    calibration: Option<&Calibration>,
    after: u64,
) -> Result<Report> {
    let before = std::fs::metadata(&args.model)?.len();
    let (evaluation, evaluated_on) = match &args.eval_data {
        _ if args.no_eval => (None, String::new()),
        Some(text) => {
            let source = CalibSource::parse(text)?;
            let data = crate::calib::load(
                &source,
                &input_infos(model)?,
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
                    &data.samples,
                    None,
                    labels.as_deref(),
                    args.runtime.options(all_cores())?,
                )?),
                text.clone(),
            )
        }
        None => match calibration {
            Some(c) => {
                // Accuracy on (at most EVALUATION_SAMPLES of) the calibration samples, whose
                // float outputs calibration kept.
                let some = &c.samples[..c.samples.len().min(EVALUATION_SAMPLES)];
                (
                    Some(evaluate(
                        model,
                        quantized,
                        some,
                        Some(&summary.float_outputs),
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
        target: mode
            .needs_activation_ranges()
            .then(|| args.target.target().name()),
        tensors_quantized: summary.tensors_quantized,
        tensors_float: summary.tensors_float,
        activations_fused: summary.activations_fused,
        constants_folded: summary.constants_folded,
        densified: summary.densified,
        equalized: summary.equalized,
        calibration: summary.calibration.map(|used| CalibrationReport {
            requested: args.calibration.name(),
            used: used.name(),
        }),
        sensitivity: {
            let mut layers: Vec<SensitivityReport> = summary
                .sensitivity
                .iter()
                .map(|l| SensitivityReport {
                    operator: l.index,
                    op: l.op.clone(),
                    output: l.output.clone(),
                    sqnr_db: l.sqnr_db,
                })
                .collect();
            layers.sort_by(|a, b| a.sqnr_db.total_cmp(&b.sqnr_db));
            if args.sensitivity { layers } else { Vec::new() }
        },
        calibration_sqnr_db: summary.calibration_sqnr_db,
        target_latency_ms: summary.target_latency_ms,
        float_ops: summary
            .float_ops
            .iter()
            .map(|f| FloatOpReport {
                operator: f.index,
                op: f.op.clone(),
                reason: f.reason.explain(),
            })
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

/// "4.00x smaller" or "1.19x larger": a ratio a reader does not have to invert.
fn size_change(before: u64, after: u64) -> String {
    if after <= before {
        format!("{:.2}x smaller", before as f64 / after.max(1) as f64)
    } else {
        format!("{:.2}x larger", after as f64 / before.max(1) as f64)
    }
}

fn print_report(r: &Report) {
    match r.target {
        Some(target) => println!("{} -> {} ({}, target {target})", r.model, r.output, r.mode),
        None => println!("{} -> {} ({})", r.model, r.output, r.mode),
    }
    println!(
        "  size        {} -> {} bytes ({})",
        r.file_bytes_before,
        r.file_bytes_after,
        size_change(r.file_bytes_before, r.file_bytes_after)
    );
    println!(
        "  weights     {} -> {} bytes ({})",
        r.constant_bytes_before,
        r.constant_bytes_after,
        size_change(
            r.constant_bytes_before as u64,
            r.constant_bytes_after as u64
        )
    );
    println!(
        "  tensors     {} quantized, {} left float",
        r.tensors_quantized, r.tensors_float
    );
    if r.equalized > 0 {
        println!(
            "  equalized   the activation channels between {} pair(s) of convolutions",
            r.equalized
        );
    }
    if r.densified > 0 {
        println!(
            "  densified   {} sparse weight tensor(s), stored dense: LiteRT's int8 convolutions \
             take no sparse weights",
            r.densified
        );
    }
    if let Some(c) = &r.calibration {
        if c.requested == c.used {
            println!("  ranges      {}", c.used);
        } else {
            println!(
                "  ranges      {} (chosen by {}: best on held-out calibration samples)",
                c.used, c.requested
            );
        }
    }
    if r.constants_folded > 0 {
        println!(
            "  folded      {} MUL/ADD/SUB by constants into the convolution before them",
            r.constants_folded
        );
    }
    if r.activations_fused > 0 {
        println!(
            "  fused       {} standalone RELU/RELU6/RELU_N1_TO_1 into the op before them",
            r.activations_fused
        );
    }
    if !r.sensitivity.is_empty() {
        println!("  sensitivity mean output SQNR with only this layer quantized, worst first:");
        for l in r.sensitivity.iter().take(15) {
            // Converted models name tensors after every op fused into them: the end says most.
            let name: String = l.output.escape_debug().collect();
            let chars: Vec<char> = name.chars().collect();
            let tail: String = chars[chars.len().saturating_sub(48)..].iter().collect();
            let shown = if chars.len() > 48 {
                format!("...{tail}")
            } else {
                tail
            };
            println!(
                "    {:>7.2} dB  {} (operator {}) -> {shown}",
                l.sqnr_db, l.op, l.operator
            );
        }
        if r.sensitivity.len() > 15 {
            println!(
                "    ... {} more (--json lists all)",
                r.sensitivity.len() - 15
            );
        }
    }
    if let Some(db) = r.calibration_sqnr_db {
        println!("  calibration mean output SQNR {db:.2} dB (up to 32 calibration samples)");
    }
    if let Some((all, kept)) = r.target_latency_ms {
        println!(
            "  latency     {all:.3} ms all int8 -> {kept:.3} ms with the float layers \
             (octet's runtime, 1 thread, median of 21)"
        );
    }
    if r.float_ops.is_empty() {
        println!("  float ops   none");
    } else {
        // Grouped by op and reason: "PRELU x23 (LiteRT's XNNPACK ...)".
        let mut groups: Vec<(&str, &str, usize)> = Vec::new();
        for f in &r.float_ops {
            match groups
                .iter_mut()
                .find(|g| g.0 == f.op.as_str() && g.1 == f.reason)
            {
                Some(g) => g.2 += 1,
                None => groups.push((f.op.as_str(), f.reason, 1)),
            }
        }
        for (k, (op, reason, n)) in groups.iter().enumerate() {
            let label = if k == 0 { "float ops" } else { "" };
            println!("  {label:<11} {op} x{n} ({reason})");
        }
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
    if r.outputs.is_empty() && r.evaluated_on.is_empty() && r.calibration_samples > 0 {
        println!("  accuracy    not measured (--no-eval)");
    } else if r.outputs.is_empty() {
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
