//! Full-integer post-training quantization: int8 (the TFLite int8 specification), uint8 (the
//! legacy `tflite_convert` path) and int16x8.
//!
//! The pass folds DEQUANTIZE/DENSIFY of constants and standalone RELUs first, calibrates the
//! float model (ranges, histograms with exact tails, per-channel statistics of convolution
//! inputs) or uses the default range, equalizes pairs of convolutions ([`crate::equalize`]),
//! chooses each activation's range ([`crate::calibrate::RangeMethod`]), then walks the main
//! subgraph in execution order. An op with an integer rule in the spec table ([`crate::spec`])
//! that the target keeps integer gets integer twins of its float inputs and outputs: QUANTIZE is
//! inserted after float producers, weights and bias (corrected for the weights' mean shift)
//! are quantized, and the op's outputs become new integer tensors. Any other op stays float,
//! with DEQUANTIZE inserted before it where its input became integer. Graph inputs and outputs
//! stay float unless the options ask for integer ones. `--sensitivity` and `--target-sqnr`
//! rebuild the model with chosen ops kept float. Unused tensors and buffers are dropped at the
//! end.

pub mod versions;

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};

use octet_core::{DType, Model, Op, Operator, QuantParams, Subgraph, Tensor, TensorData, TensorId};

use octet_runtime::{Interpreter, TensorInfo};

use crate::calibrate::{RangeMethod, TensorRanges, calibrate_keeping_outputs};
use crate::metrics::ErrorAccumulator;
use crate::params::{self, AffineParams, IntRange};
use crate::spec::{self, FixedOutput, InputRule, OutputRule, Rule};
use crate::{
    Calibration, CalibrationMethod, FloatOp, FloatReason, LayerSensitivity, Mode, QuantError,
    QuantizeOptions, QuantizeReport, Target,
};
use crate::{equalize, passes};

/// How a full-integer mode quantizes.
#[derive(Debug, Clone, Copy)]
struct Scheme {
    /// Activation dtype.
    act: DType,
    /// Weights dtype.
    weights: DType,
    /// Weights per channel and symmetric (int8 spec) rather than per tensor and asymmetric.
    per_channel: bool,
    /// Bias dtype of CONV/FC/TRANSPOSE_CONV.
    bias: DType,
}

impl Scheme {
    fn of(mode: Mode) -> Result<Self, QuantError> {
        Ok(match mode {
            Mode::Int8 => Scheme {
                act: DType::Int8,
                weights: DType::Int8,
                per_channel: true,
                bias: DType::Int32,
            },
            Mode::UInt8 => Scheme {
                act: DType::UInt8,
                weights: DType::UInt8,
                per_channel: false,
                bias: DType::Int32,
            },
            Mode::Int16x8 => Scheme {
                act: DType::Int16,
                weights: DType::Int8,
                per_channel: true,
                bias: DType::Int64,
            },
            other => {
                return Err(QuantError::Unsupported(format!(
                    "--mode {} is not a full-integer mode",
                    other.name()
                )));
            }
        })
    }

    fn symmetric_act(&self) -> bool {
        self.act == DType::Int16
    }

    /// Parameters of an activation with float range `[min, max]`.
    fn act_params(&self, min: f32, max: f32) -> Result<AffineParams, QuantError> {
        let range = IntRange::of(self.act)?;
        if self.symmetric_act() {
            params::symmetric(min.abs().max(max.abs()), range)
        } else {
            params::from_range(min, max, range)
        }
    }

    /// Fixed output parameters, `None` where the mode has no integer kernel for the op.
    fn fixed(&self, fixed: FixedOutput) -> Option<(f32, i64)> {
        Some(match (self.act, fixed) {
            (DType::Int8, FixedOutput::Probability) => (1.0 / 256.0, -128),
            (DType::Int8, FixedOutput::UnitSigned) => (1.0 / 128.0, 0),
            (DType::Int8, FixedOutput::LogProbability) => (16.0 / 256.0, 127),
            (DType::UInt8, FixedOutput::Probability) => (1.0 / 256.0, 0),
            (DType::UInt8, FixedOutput::UnitSigned) => (1.0 / 128.0, 128),
            (DType::UInt8, FixedOutput::LogProbability) => (16.0 / 256.0, 255),
            (DType::Int16, FixedOutput::Probability) => (1.0 / 32768.0, 0),
            (DType::Int16, FixedOutput::UnitSigned) => (1.0 / 32768.0, 0),
            _ => return None,
        })
    }
}

/// Quantizes `model` to a full-integer mode (int8, uint8 or int16x8); `progress` hears
/// `(samples done, samples in all)` during calibration.
pub fn quantize(
    model: &Model,
    options: &QuantizeOptions,
    calibration: Option<&Calibration>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Model, QuantizeReport), QuantError> {
    let scheme = Scheme::of(options.mode)?;
    if options.target_sqnr.is_some() && options.target == Target::IntegerOnly {
        return Err(QuantError::Unsupported(
            "--target-sqnr keeps layers float, which --target integer-only forbids".into(),
        ));
    }
    let mut model = model.clone();
    let constant_bytes_before = passes::constant_bytes(&model);
    let densified = passes::densify_constants(&mut model)?;
    passes::fold_to_float(&mut model)?;
    let constants_folded = passes::fold_constant_affine(&mut model)?;
    let activations_fused = passes::fuse_activations(&mut model)?;
    // Clipping is for 8-bit activations; int16 has steps to spare.
    let method = match (options.calibration, scheme.act) {
        (_, DType::Int16) => CalibrationMethod::Fixed(RangeMethod::MinMax),
        (m, _) => m,
    };
    let histograms = match method {
        CalibrationMethod::Fixed(m) => m.needs_histograms(),
        CalibrationMethod::Auto => true,
    };
    // Auto needs the float outputs of the samples it scores the methods on.
    let samples = calibration.map_or(0, |c| c.samples.len());
    let auto = matches!(method, CalibrationMethod::Auto) && samples > 0;
    if options.target_sqnr.is_some() && options.target == Target::IntegerOnly {
        return Err(QuantError::Unsupported(
            "--target-sqnr reaches its target by keeping layers float, which --target \
             integer-only forbids"
                .into(),
        ));
    }
    let mixed = options.sensitivity || options.target_sqnr.is_some();
    let keep = if auto || mixed {
        samples.min(2 * AUTO_SAMPLES)
    } else {
        0
    };
    let pairs = if options.equalization && scheme.per_channel && scheme.act != DType::Int16 {
        equalize::pairs(&model)
    } else {
        Vec::new()
    };
    let mut means = bias_correction_inputs(&model, options, scheme);
    means.extend(pairs.iter().map(|p| p.tensor));
    let (mut observed, float_outputs) = match calibration {
        Some(c) if !c.samples.is_empty() => calibrate_keeping_outputs(
            &model,
            c,
            options.threads,
            options.keep_float_outputs.max(keep),
            histograms,
            &means,
            progress,
        )?,
        _ => (TensorRanges::default(), Vec::new()),
    };
    if model.subgraphs.is_empty() {
        return Err(QuantError::Unsupported("the model has no subgraph".into()));
    }
    let mut equalized = 0;
    for pair in pairs {
        let Some(ranges) = observed.channel_ranges(pair.tensor).map(<[_]>::to_vec) else {
            continue;
        };
        if let Some(scales) = equalize::equalize(&mut model, pair, &ranges)? {
            observed.rescale(pair.tensor, &scales);
            equalized += 1;
        }
    }
    let int_range = IntRange::of(scheme.act)?;
    let chosen = match (method, calibration) {
        (CalibrationMethod::Auto, Some(c)) if auto => {
            choose_method(&model, c, &float_outputs, options, scheme, int_range)?
        }
        (CalibrationMethod::Auto, _) => RangeMethod::MinMax,
        (CalibrationMethod::Fixed(m), _) => m,
    };
    let ranges = observed.clipped(chosen, int_range)?;
    let none = BTreeSet::new();
    let (mut quantized, mut float_ops) = build(&model, &ranges, options, scheme, &none)?;
    let mut sensitivity = Vec::new();
    let mut calibration_sqnr_db = None;
    let mut target_latency_ms = None;
    if let (true, Some(c)) = (mixed, calibration) {
        let scored = Calibration {
            samples: c.samples.iter().take(AUTO_SAMPLES).cloned().collect(),
        };
        let references = &float_outputs[..scored.samples.len().min(float_outputs.len())];
        let mut score = mean_sqnr(&quantized, &scored, references)?;
        let needs_more = options.target_sqnr.is_some_and(|t| score < t);
        if options.sensitivity || needs_more {
            sensitivity = layer_sensitivity(
                &model, &ranges, options, scheme, &float_ops, &scored, references,
            )?;
        }
        if let Some(target) = options.target_sqnr {
            let all_integer = (score < target).then(|| quantized.clone());
            // Keep float the layers that do the most damage alone, one by one, until the
            // target is reached (or every layer is float).
            let mut kept = BTreeSet::new();
            let mut order: Vec<&LayerSensitivity> = sensitivity.iter().collect();
            order.sort_by(|a, b| a.sqnr_db.total_cmp(&b.sqnr_db));
            for layer in order {
                if score >= target {
                    break;
                }
                kept.insert(layer.index);
                let (q, ops) = build(&model, &ranges, options, scheme, &kept)?;
                score = mean_sqnr(&q, &scored, references)?;
                quantized = q;
                float_ops = ops;
            }
            // What keeping them float costs in time, measured in octet's runtime.
            if let (Some(before), Some(sample)) = (all_integer, scored.samples.first()) {
                target_latency_ms = Some((
                    latency_ms(&before, sample)?,
                    latency_ms(&quantized, sample)?,
                ));
            }
        }
        calibration_sqnr_db = Some(score);
    }
    let mut float_outputs = float_outputs;
    float_outputs.truncate(options.keep_float_outputs);
    let main = quantized
        .subgraphs
        .first()
        .ok_or_else(|| QuantError::Unsupported("the model has no subgraph".into()))?;
    let report = QuantizeReport {
        tensors_quantized: main
            .tensors
            .iter()
            .filter(|t| t.quant.as_ref().is_some_and(QuantParams::is_affine))
            .count(),
        tensors_float: main
            .tensors
            .iter()
            .filter(|t| t.dtype == DType::Float32)
            .count(),
        float_ops,
        activations_fused,
        constants_folded,
        densified,
        equalized,
        calibration: calibration
            .is_some_and(|c| !c.samples.is_empty())
            .then_some(chosen),
        sensitivity,
        calibration_sqnr_db,
        target_latency_ms,
        constant_bytes_before,
        constant_bytes_after: passes::constant_bytes(&quantized),
        float_outputs,
    };
    Ok((quantized, report))
}

/// The activation inputs of the ops whose bias [`Pass::bias_shift`] corrects: CONV_2D,
/// DEPTHWISE_CONV_2D and FULLY_CONNECTED with int8 weights (none when correction is off).
fn bias_correction_inputs(
    model: &Model,
    options: &QuantizeOptions,
    scheme: Scheme,
) -> Vec<TensorId> {
    if !options.bias_correction || scheme.weights != DType::Int8 {
        return Vec::new();
    }
    model.subgraphs.first().map_or_else(Vec::new, |sg| {
        sg.operators
            .iter()
            .filter(|o| {
                matches!(
                    o.op,
                    Op::Conv2D(_) | Op::DepthwiseConv2D(_) | Op::FullyConnected(_)
                )
            })
            .filter_map(|o| o.inputs.first().copied().flatten())
            .collect()
    })
}

/// Each integer op's effect alone: the mean output SQNR (dB, on `scored`) of the model in
/// which only that op is quantized and every other op that could be stays float. Ops that
/// stay float anyway (`float_ops`) are not listed.
fn layer_sensitivity(
    model: &Model,
    ranges: &TensorRanges,
    options: &QuantizeOptions,
    scheme: Scheme,
    float_ops: &[FloatOp],
    scored: &Calibration,
    references: &[crate::calibrate::Outputs],
) -> Result<Vec<LayerSensitivity>, QuantError> {
    let Some(sg) = model.subgraphs.first() else {
        return Ok(Vec::new());
    };
    let always_float: BTreeSet<usize> = float_ops.iter().map(|f| f.index).collect();
    let candidates: Vec<usize> = (0..sg.operators.len())
        .filter(|i| !always_float.contains(i))
        .filter(|&i| {
            sg.operators
                .get(i)
                .is_some_and(|o| !matches!(o.op, Op::Quantize | Op::Dequantize))
        })
        .collect();
    let all: BTreeSet<usize> = candidates.iter().copied().collect();
    // The measuring models keep every other layer float, which integer-only forbids: they are
    // built for octet's runtime, whose arithmetic is the same.
    let mut measuring = options.clone();
    if measuring.target == Target::IntegerOnly {
        measuring.target = Target::Octet;
    }
    let mut layers = Vec::with_capacity(candidates.len());
    for &i in &candidates {
        let mut others = all.clone();
        others.remove(&i);
        let (q, _) = build(model, ranges, &measuring, scheme, &others)?;
        let sqnr_db = mean_sqnr(&q, scored, references)?;
        let Some(op) = sg.operators.get(i) else {
            continue;
        };
        layers.push(LayerSensitivity {
            index: i,
            op: op.op.name().into_owned(),
            output: op
                .outputs
                .first()
                .and_then(|&t| sg.tensor(t))
                .map_or_else(String::new, |t| t.name.clone()),
            sqnr_db,
        });
    }
    Ok(layers)
}

/// The methods [`CalibrationMethod::Auto`] tries.
const AUTO_METHODS: [RangeMethod; 3] = [
    RangeMethod::MinMax,
    RangeMethod::Percentile(99.99),
    RangeMethod::Mse,
];

/// The most calibration samples [`CalibrationMethod::Auto`] compares the methods on.
const AUTO_SAMPLES: usize = 32;

/// [`CalibrationMethod::Auto`]'s choice: with 4 samples or more, ranges from the even-numbered
/// samples and the score (mean output SQNR) on the odd-numbered ones, so that a method is not
/// judged on the very values it fitted; with fewer, ranges and score on all. Ties and losses
/// go to the earlier method in [`AUTO_METHODS`].
fn choose_method(
    model: &Model,
    calibration: &Calibration,
    float_outputs: &[crate::calibrate::Outputs],
    options: &QuantizeOptions,
    scheme: Scheme,
    int_range: IntRange,
) -> Result<RangeMethod, QuantError> {
    let n = calibration.samples.len().min(float_outputs.len());
    let (fit, score): (Vec<usize>, Vec<usize>) = if n >= 4 {
        (
            (0..n).step_by(2).collect(),
            (1..n).step_by(2).take(AUTO_SAMPLES).collect(),
        )
    } else {
        ((0..n).collect(), (0..n).collect())
    };
    let subset = |indices: &[usize]| Calibration {
        samples: indices
            .iter()
            .filter_map(|&i| calibration.samples.get(i).cloned())
            .collect(),
    };
    let fitted = calibrate_keeping_outputs(
        model,
        &subset(&fit),
        options.threads,
        0,
        true,
        &bias_correction_inputs(model, options, scheme),
        &mut |_, _| {},
    )?
    .0;
    let scored = subset(&score);
    let references: Vec<crate::calibrate::Outputs> = score
        .iter()
        .filter_map(|&i| float_outputs.get(i).cloned())
        .collect();
    let mut best: Option<(f64, RangeMethod)> = None;
    for m in AUTO_METHODS {
        let (q, _) = build(
            model,
            &fitted.clipped(m, int_range)?,
            options,
            scheme,
            &BTreeSet::new(),
        )?;
        let sqnr = mean_sqnr(&q, &scored, &references)?;
        if best.is_none_or(|b| sqnr > b.0) {
            best = Some((sqnr, m));
        }
    }
    Ok(best.map_or(RangeMethod::MinMax, |b| b.1))
}

/// A convolution whose output has at least this many elements per weight is kept float for
/// [`Target::Litert`]: its int8 form saves little size (few weights) and, measured with
/// LiteRT 2.3 on an AVX-512 machine, XNNPACK runs such layers (high resolution, few
/// channels: the first layers of face_landmark and face_detection) slower in int8 than in
/// float. Keeping the layers above 32 float made face_landmark 1.8x faster in LiteRT (0.79 ms
/// against 1.46, and 0.90 for the float model) for 0.7 % more bytes (`docs/quantization.md`
/// §6 has the five MediaPipe models and the sweep of this threshold).
const ACTIVATIONS_PER_WEIGHT: usize = 32;

/// Weightless operators that stay float with an activation-heavy float producer (see
/// `Pass::activation_heavy`) rather than be quantized between float layers.
const FOLLOWS_FLOAT: &[&str] = &[
    "ADD",
    "SUB",
    "MUL",
    "PRELU",
    "PAD",
    "PADV2",
    "MAX_POOL_2D",
    "AVERAGE_POOL_2D",
    "RELU",
    "RELU6",
    "RELU_N1_TO_1",
    "LEAKY_RELU",
    "HARD_SWISH",
    "LOGISTIC",
    "TANH",
    "CONCATENATION",
    "RESIZE_BILINEAR",
    "RESIZE_NEAREST_NEIGHBOR",
    "RESHAPE",
    "DEPTH_TO_SPACE",
    "SPACE_TO_DEPTH",
];

/// The quantized model of float `model` (after the float passes) with activation `ranges`,
/// and the ops that stayed float.
fn build(
    model: &Model,
    ranges: &TensorRanges,
    options: &QuantizeOptions,
    scheme: Scheme,
    forced_float: &BTreeSet<usize>,
) -> Result<(Model, Vec<FloatOp>), QuantError> {
    let mut model = model.clone();
    let sg = std::mem::take(&mut model.subgraphs[0]);
    let mut pass = Pass {
        model,
        old: sg.clone(),
        sg: Subgraph {
            operators: Vec::new(),
            ..sg
        },
        scheme,
        ranges,
        options,
        forced_float,
        twin: HashMap::new(),
        replaced: HashSet::new(),
        in_place: HashMap::new(),
        dequantized: HashSet::new(),
        requant: HashMap::new(),
        consts: HashMap::new(),
        float_ops: Vec::new(),
    };
    pass.run()?;
    let Pass {
        mut model,
        sg,
        float_ops,
        ..
    } = pass;
    model.subgraphs[0] = sg;
    if options.target == Target::IntegerOnly && !float_ops.is_empty() {
        let ops: Vec<String> = float_ops
            .iter()
            .map(|f| format!("{} (operator {})", f.op, f.index))
            .collect();
        return Err(QuantError::Unsupported(format!(
            "--target integer-only: {} op(s) have no {} kernel in TFLite and would stay float: {}",
            ops.len(),
            scheme.act.name(),
            ops.join(", ")
        )));
    }
    passes::remove_unused_tensors(&mut model, 0)?;
    passes::remove_unused_buffers(&mut model);
    model
        .validate()
        .map_err(|e| QuantError::Unsupported(format!("the quantized model is invalid: {e}")))?;
    Ok((model, float_ops))
}

/// Mean over outputs of the SQNR (dB) of `quantized`'s outputs against the float model's
/// `float_outputs` on the first samples of `calibration`. An output that matches exactly
/// counts as 100 dB.
fn mean_sqnr(
    quantized: &Model,
    calibration: &Calibration,
    float_outputs: &[crate::calibrate::Outputs],
) -> Result<f64, QuantError> {
    let mut interpreter = Interpreter::new(quantized)
        .map_err(|e| QuantError::Unsupported(format!("cannot run the quantized model: {e}")))?;
    let outputs = interpreter.num_outputs();
    let mut errors = vec![ErrorAccumulator::default(); outputs];
    for (sample, reference) in calibration.samples.iter().zip(float_outputs) {
        set_sample(&mut interpreter, sample)?;
        interpreter
            .invoke()
            .map_err(|e| QuantError::Unsupported(e.to_string()))?;
        for (k, (errors, reference)) in errors.iter_mut().zip(reference).enumerate() {
            let info = interpreter
                .output_info(k)
                .map_err(|e| QuantError::Unsupported(e.to_string()))?;
            let got = interpreter
                .output(k)
                .map_err(|e| QuantError::Unsupported(e.to_string()))?;
            let got = decode_as(got, info);
            let reference: Vec<f32> = reference
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            errors.add(&reference, &got);
        }
    }
    let total: f64 = errors
        .iter()
        .map(|e| {
            let db = e.stats().sqnr_db;
            if db.is_finite() { db } else { 100.0 }
        })
        .sum();
    Ok(total / outputs.max(1) as f64)
}

/// Median time of one inference of `model` on `sample` in octet's runtime, 1 thread, after a
/// warm-up (milliseconds).
fn latency_ms(model: &Model, sample: &[Vec<f32>]) -> Result<f64, QuantError> {
    let mut interpreter = Interpreter::new(model)
        .map_err(|e| QuantError::Unsupported(format!("cannot run the quantized model: {e}")))?;
    set_sample(&mut interpreter, sample)?;
    let mut times = Vec::with_capacity(LATENCY_RUNS);
    for run in 0..LATENCY_RUNS + 3 {
        let start = std::time::Instant::now();
        interpreter
            .invoke()
            .map_err(|e| QuantError::Unsupported(e.to_string()))?;
        if run >= 3 {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times.get(times.len() / 2).copied().unwrap_or(0.0))
}

/// Timed inferences per model in [`latency_ms`].
const LATENCY_RUNS: usize = 21;

/// Sets every input of `interpreter` from a float calibration sample.
fn set_sample(interpreter: &mut Interpreter, sample: &[Vec<f32>]) -> Result<(), QuantError> {
    for (i, values) in sample.iter().enumerate() {
        let info = interpreter
            .input_info(i)
            .map_err(|e| QuantError::Unsupported(e.to_string()))?;
        let bytes = encode_as(values, info)?;
        interpreter
            .set_input(i, &bytes)
            .map_err(|e| QuantError::Unsupported(e.to_string()))?;
    }
    Ok(())
}

/// A float sample as the bytes of an input of `info`'s dtype (quantized with its parameters
/// when the input is integer).
fn encode_as(values: &[f32], info: &TensorInfo) -> Result<Vec<u8>, QuantError> {
    let (scale, zero) = info.scale_zero_point().unwrap_or((1.0, 0));
    let q = |v: f32| (v / scale).round() as i64 + i64::from(zero);
    Ok(match info.dtype {
        DType::Float32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::Int8 => values
            .iter()
            .map(|&v| q(v).clamp(-128, 127) as i8 as u8)
            .collect(),
        DType::UInt8 => values.iter().map(|&v| q(v).clamp(0, 255) as u8).collect(),
        other => {
            return Err(QuantError::Unsupported(format!(
                "calibration: cannot feed a {other} input"
            )));
        }
    })
}

/// An output's bytes as floats (dequantized when integer).
fn decode_as(bytes: &[u8], info: &TensorInfo) -> Vec<f32> {
    let (scale, zero) = info.scale_zero_point().unwrap_or((1.0, 0));
    let real = |q: i64| (q - i64::from(zero)) as f32 * scale;
    match info.dtype {
        DType::Int8 => bytes.iter().map(|&b| real(i64::from(b as i8))).collect(),
        DType::UInt8 => bytes.iter().map(|&b| real(i64::from(b))).collect(),
        DType::Int16 => bytes
            .chunks_exact(2)
            .map(|c| real(i64::from(i16::from_le_bytes([c[0], c[1]]))))
            .collect(),
        _ => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    }
}

fn quant_of(p: (f32, i64)) -> QuantParams {
    QuantParams::per_tensor(p.0, p.1)
}

fn same_params(a: (f32, i64), b: (f32, i64)) -> bool {
    a.1 == b.1 && (a.0 - b.0).abs() <= 1e-7 * a.0.abs().max(b.0.abs())
}

struct Pass<'a> {
    model: Model,
    /// The main subgraph as it was (after folding), for rules that look at the original graph.
    old: Subgraph,
    /// The subgraph being built: all tensors, the new operator list.
    sg: Subgraph,
    scheme: Scheme,
    ranges: &'a TensorRanges,
    options: &'a QuantizeOptions,
    /// Operator indices kept float for `--target-sqnr` or sensitivity analysis.
    forced_float: &'a BTreeSet<usize>,
    /// Float tensor -> its integer twin.
    twin: HashMap<TensorId, TensorId>,
    /// Float tensors whose producer was quantized (a DEQUANTIZE may produce them again).
    replaced: HashSet<TensorId>,
    /// Graph inputs that became integer themselves -> their float copy for float ops.
    in_place: HashMap<TensorId, Option<TensorId>>,
    /// Replaced tensors already produced again by a DEQUANTIZE.
    dequantized: HashSet<TensorId>,
    /// (integer tensor, scale bits, zero point) -> requantized tensor.
    requant: HashMap<(TensorId, u32, i64), TensorId>,
    /// (float constant, how) -> quantized constant.
    consts: HashMap<(TensorId, String), TensorId>,
    float_ops: Vec<FloatOp>,
}

impl Pass<'_> {
    fn tensor(&self, id: TensorId) -> Result<&Tensor, QuantError> {
        self.sg
            .tensor(id)
            .ok_or_else(|| QuantError::Unsupported(format!("tensor {} does not exist", id.0)))
    }

    fn name(&self, id: TensorId) -> String {
        self.sg
            .tensor(id)
            .map_or_else(|| format!("#{}", id.0), |t| t.name.clone())
    }

    fn is_constant(&self, id: TensorId) -> bool {
        self.sg
            .tensor(id)
            .is_some_and(|t| self.model.tensor_bytes(t).is_some())
    }

    fn params(&self, id: TensorId) -> Result<(f32, i64), QuantError> {
        self.tensor(id)?.single_quant().ok_or_else(|| {
            QuantError::Unsupported(format!(
                "internal: tensor '{}' has no per-tensor parameters",
                self.name(id)
            ))
        })
    }

    fn range_of(&self, id: TensorId) -> Result<(f32, f32), QuantError> {
        if let Some(r) = self.ranges.get(id) {
            return Ok(r);
        }
        self.options.default_range.ok_or_else(|| {
            QuantError::Unsupported(format!(
                "tensor '{}' has no calibrated range (it was never computed during calibration); \
                 give calibration data that reaches it or --default-ranges-min/max",
                self.name(id)
            ))
        })
    }

    fn act_params_of(&self, id: TensorId) -> Result<(f32, i64), QuantError> {
        let (min, max) = self.range_of(id)?;
        let p = self.scheme.act_params(min, max)?;
        Ok((p.scale, i64::from(p.zero_point)))
    }

    fn add_tensor(
        &mut self,
        like: TensorId,
        name: String,
        dtype: DType,
        quant: Option<QuantParams>,
    ) -> Result<TensorId, QuantError> {
        let base = self.tensor(like)?;
        let mut t = Tensor::new(name, dtype, base.shape.clone());
        t.shape_signature = base.shape_signature.clone();
        t.has_rank = base.has_rank;
        t.quant = quant;
        self.sg
            .add_tensor(t)
            .map_err(|e| QuantError::Unsupported(e.to_string()))
    }

    fn add_const(
        &mut self,
        like: TensorId,
        dtype: DType,
        data: Vec<u8>,
        quant: QuantParams,
    ) -> Result<TensorId, QuantError> {
        let name = self.name(like);
        let id = self.add_tensor(like, name, dtype, Some(quant))?;
        let buffer = self
            .model
            .add_buffer(data)
            .map_err(|e| QuantError::Unsupported(e.to_string()))?;
        if let Some(t) = self.sg.tensor_mut(id) {
            t.buffer = buffer;
        }
        Ok(id)
    }

    fn push(&mut self, op: Op, inputs: Vec<TensorId>, outputs: Vec<TensorId>) {
        let mut operator = Operator::new(op, inputs.into_iter().map(Some).collect(), outputs);
        let act = self.scheme.act;
        operator.version = versions::quantized_version(&operator, act, false);
        self.sg.operators.push(operator);
    }

    /// The values of float32 constant `id`: its bytes as they are when they can be viewed as
    /// floats (weights can be megabytes), else decoded.
    fn float_values(&self, id: TensorId) -> Result<Cow<'_, [f32]>, QuantError> {
        let t = self.tensor(id)?;
        if t.dtype == DType::Float32
            && cfg!(target_endian = "little")
            && let Some(bytes) = self.model.tensor_bytes(t)
            && let Ok(elements) = t.shape.num_elements()
            && elements.checked_mul(4) == Some(bytes.len())
            && let Ok(values) = bytemuck::try_cast_slice::<u8, f32>(bytes)
        {
            return Ok(Cow::Borrowed(values));
        }
        match self.model.tensor_data(t) {
            Ok(Some(TensorData::F32(v))) => Ok(Cow::Owned(v)),
            Ok(_) => Err(QuantError::Unsupported(format!(
                "constant '{}' is not float32 data",
                t.name
            ))),
            Err(e) => Err(QuantError::Unsupported(format!(
                "constant '{}': {e}",
                t.name
            ))),
        }
    }

    /// Integer bytes of `values` quantized with `(scale, zero_point)` to the activation dtype.
    fn encode(&self, values: &[f32], p: (f32, i64), dtype: DType) -> Result<Vec<u8>, QuantError> {
        self.encode_in(values, p, IntRange::of(dtype)?)
    }

    /// Like [`Self::encode`], clamped to `range`.
    fn encode_in(
        &self,
        values: &[f32],
        p: (f32, i64),
        range: IntRange,
    ) -> Result<Vec<u8>, QuantError> {
        let dtype = range.dtype;
        let inv = 1.0 / p.0;
        let q = values.iter().map(|&v| {
            // zero point added before rounding, as TensorFlow's quantizers do
            params::round_to_i64(p.1 as f32 + v * inv)
                .clamp(i64::from(range.qmin), i64::from(range.qmax))
        });
        Ok(match dtype {
            DType::Int8 => q.map(|x| x as i8 as u8).collect(),
            DType::UInt8 => q.map(|x| x as u8).collect(),
            _ => q.flat_map(|x| (x as i16).to_le_bytes()).collect(),
        })
    }

    /// A float constant used as a value: quantized per tensor with `required` parameters or from
    /// its own range.
    fn quantize_const_value(
        &mut self,
        id: TensorId,
        required: Option<(f32, i64)>,
        symmetric: bool,
    ) -> Result<TensorId, QuantError> {
        let values = self.float_values(id)?;
        let p = match required {
            Some(p) => p,
            None => {
                let min = values.iter().copied().fold(0.0f32, f32::min);
                let max = values.iter().copied().fold(0.0f32, f32::max);
                let a = if symmetric && self.scheme.act != DType::UInt8 {
                    params::symmetric(min.abs().max(max), IntRange::of(self.scheme.act)?)?
                } else {
                    self.scheme.act_params(min, max)?
                };
                (a.scale, i64::from(a.zero_point))
            }
        };
        let key = (id, format!("value {} {}", p.0.to_bits(), p.1));
        if let Some(&t) = self.consts.get(&key) {
            return Ok(t);
        }
        let data = self.encode(&values, p, self.scheme.act)?;
        let t = self.add_const(id, self.scheme.act, data, quant_of(p))?;
        self.consts.insert(key, t);
        Ok(t)
    }

    /// Weights: per channel along `axis`, symmetric (int8), or per tensor asymmetric (uint8).
    /// Returns the tensor and its scales.
    fn quantize_weights(
        &mut self,
        id: TensorId,
        axis: usize,
    ) -> Result<(TensorId, Vec<f32>), QuantError> {
        let key = (id, format!("weights {axis}"));
        if let Some(&t) = self.consts.get(&key) {
            let scales = self
                .tensor(t)?
                .quant
                .as_ref()
                .map(|q| q.scale.clone())
                .unwrap_or_default();
            return Ok((t, scales));
        }
        let values = self.float_values(id)?;
        let dims: Vec<usize> = self
            .tensor(id)?
            .shape
            .dims()
            .iter()
            .map(|&d| usize::try_from(d).unwrap_or(0))
            .collect();
        let (t, scales) = if self.scheme.per_channel {
            let channels = dims.get(axis).copied().unwrap_or(0);
            if channels == 0 {
                return Err(QuantError::Unsupported(format!(
                    "weights '{}' have no axis {axis}",
                    self.name(id)
                )));
            }
            // Runs of `inner` consecutive values share a channel; the runs cycle through the
            // channels.
            let inner = dims.iter().skip(axis + 1).product::<usize>().max(1);
            let mut max_abs = vec![0.0f32; channels];
            for (run, values) in values.chunks(inner).enumerate() {
                if let Some(m) = max_abs.get_mut(run % channels) {
                    *m = values.iter().fold(*m, |m, &v| m.max(v.abs()));
                }
            }
            let range = IntRange::of(self.scheme.weights)?;
            let mut scales = Vec::with_capacity(channels);
            for &m in &max_abs {
                scales.push(params::symmetric(m, range)?.scale);
            }
            let mut data = vec![0u8; values.len()];
            for (run, (values, out)) in values.chunks(inner).zip(data.chunks_mut(inner)).enumerate()
            {
                let inverse = 1.0 / scales.get(run % channels).copied().unwrap_or(1.0);
                params::quantize_symmetric_i8(values, inverse, range.qmax, out);
            }
            let quant = QuantParams::per_axis(
                scales.clone(),
                vec![0; channels],
                i32::try_from(axis).unwrap_or(0),
            );
            let t = self.add_const(id, self.scheme.weights, data, quant)?;
            (t, scales)
        } else {
            let min = values.iter().copied().fold(0.0f32, f32::min);
            let max = values.iter().copied().fold(0.0f32, f32::max);
            // The legacy converter quantizes weights to the narrow range [1, 255].
            let narrow = IntRange {
                qmin: 1,
                ..IntRange::of(self.scheme.weights)?
            };
            let p = params::from_range(min, max, narrow)?;
            let p = (p.scale, i64::from(p.zero_point));
            let data = self.encode_in(&values, p, narrow)?;
            let t = self.add_const(id, self.scheme.weights, data, quant_of(p))?;
            (t, vec![p.0])
        };
        self.consts.insert(key, t);
        Ok((t, scales))
    }

    /// Empirical bias correction: per output channel, how far the quantized weights move the
    /// op's mean output, `sum_k (w_q[o, k] - w[o, k]) * mean(x)[channel of k]`, with the
    /// per-channel means of input `x` recorded during calibration. Subtracted from the bias, it
    /// cancels the systematic part of the weights' rounding error, which matters most for
    /// depthwise convolutions (9 weights per channel). `None` where the op, the layout or the
    /// recorded means do not fit (then the bias is quantized as it is).
    fn bias_shift(
        &self,
        op: &Op,
        x: TensorId,
        weights: TensorId,
        quantized: TensorId,
        scales: &[f32],
    ) -> Result<Option<Vec<f32>>, QuantError> {
        let Some(means) = self.ranges.channel_means(x) else {
            return Ok(None);
        };
        let w = self.float_values(weights)?;
        let Some(q) = self
            .tensor(quantized)
            .ok()
            .and_then(|t| self.model.tensor_bytes(t))
        else {
            return Ok(None);
        };
        if q.len() != w.len() || self.scheme.weights != DType::Int8 || w.is_empty() {
            return Ok(None);
        }
        let error = |k: usize, o: usize| -> f64 {
            let s = scales.get(o).or(scales.first()).copied().unwrap_or(0.0);
            let qv = f32::from(q.get(k).copied().unwrap_or(0) as i8);
            f64::from(qv * s) - f64::from(w.get(k).copied().unwrap_or(0.0))
        };
        let inputs = means.len();
        let shift: Vec<f64> = match op {
            Op::Conv2D(_) | Op::FullyConnected(_) => {
                let outputs = scales.len().max(1);
                let per_output = w.len() / outputs;
                if per_output == 0 || !per_output.is_multiple_of(inputs) || scales.len() != outputs
                {
                    return Ok(None);
                }
                (0..outputs)
                    .map(|o| {
                        (0..per_output)
                            .map(|j| error(o * per_output + j, o) * means[j % inputs])
                            .sum()
                    })
                    .collect()
            }
            Op::DepthwiseConv2D(options) => {
                let outputs = scales.len();
                let multiplier = usize::try_from(options.depth_multiplier)
                    .unwrap_or(0)
                    .max(1);
                if outputs == 0 || w.len() % outputs != 0 || outputs != inputs * multiplier {
                    return Ok(None);
                }
                let mut shift = vec![0.0; outputs];
                for k in 0..w.len() {
                    let o = k % outputs;
                    shift[o] += error(k, o) * means[o / multiplier];
                }
                shift
            }
            _ => return Ok(None),
        };
        Ok(Some(shift.into_iter().map(|v| v as f32).collect()))
    }

    fn quantize_bias(
        &mut self,
        id: TensorId,
        input_scale: f32,
        weight_scales: &[f32],
        correction: Option<&[f32]>,
    ) -> Result<TensorId, QuantError> {
        let mut values = self.float_values(id)?.into_owned();
        if let Some(delta) = correction
            && delta.len() == values.len()
        {
            for (b, d) in values.iter_mut().zip(delta) {
                *b -= d;
            }
        }
        let scales: Vec<f32> = if weight_scales.len() == 1 {
            vec![bias_scale(
                input_scale,
                weight_scales.first().copied().unwrap_or(1.0),
            )]
        } else {
            weight_scales
                .iter()
                .map(|&w| bias_scale(input_scale, w))
                .collect()
        };
        if scales.len() > 1 && scales.len() != values.len() {
            return Err(QuantError::Unsupported(format!(
                "bias '{}' has {} values for {} channels",
                self.name(id),
                values.len(),
                scales.len()
            )));
        }
        let key = (
            id,
            format!(
                "bias {:?} {:?}",
                scales.iter().map(|s| s.to_bits()).collect::<Vec<_>>(),
                correction.map(|c| c.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
            ),
        );
        if let Some(&t) = self.consts.get(&key) {
            return Ok(t);
        }
        let q = values.iter().enumerate().map(|(i, &v)| {
            let s = scales.get(i).or(scales.first()).copied().unwrap_or(1.0);
            params::round_to_i64(v / s)
        });
        let data: Vec<u8> = match self.scheme.bias {
            DType::Int64 => q.flat_map(i64::to_le_bytes).collect(),
            _ => q
                .flat_map(|x| {
                    (x.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32).to_le_bytes()
                })
                .collect(),
        };
        let quant = if scales.len() > 1 {
            QuantParams::per_axis(scales.clone(), vec![0; scales.len()], 0)
        } else {
            QuantParams::per_tensor(scales.first().copied().unwrap_or(1.0), 0)
        };
        let t = self.add_const(id, self.scheme.bias, data, quant)?;
        self.consts.insert(key, t);
        Ok(t)
    }

    /// The integer form of float tensor `id` (activation or constant), with `required`
    /// parameters if given (requantizing with QUANTIZE when its own differ).
    fn integer_input(
        &mut self,
        id: TensorId,
        required: Option<(f32, i64)>,
        symmetric_const: bool,
    ) -> Result<TensorId, QuantError> {
        let base = if let Some(&t) = self.twin.get(&id) {
            t
        } else if self.is_constant(id) {
            return self.quantize_const_value(id, required, symmetric_const);
        } else {
            let p = match required {
                Some(p) => p,
                None => self.act_params_of(id)?,
            };
            let name = self.name(id);
            let t = self.add_tensor(id, name, self.scheme.act, Some(quant_of(p)))?;
            self.push(Op::Quantize, vec![id], vec![t]);
            self.twin.insert(id, t);
            t
        };
        let Some(req) = required else {
            return Ok(base);
        };
        let have = self.params(base)?;
        if same_params(have, req) {
            return Ok(base);
        }
        let key = (base, req.0.to_bits(), req.1);
        if let Some(&t) = self.requant.get(&key) {
            return Ok(t);
        }
        let name = format!("{}_requantized", self.name(id));
        let t = self.add_tensor(id, name, self.scheme.act, Some(quant_of(req)))?;
        self.push(Op::Quantize, vec![base], vec![t]);
        self.requant.insert(key, t);
        Ok(t)
    }

    /// The float form of tensor `id` for a float consumer.
    fn float_input(&mut self, id: TensorId) -> Result<TensorId, QuantError> {
        if let Some(copy) = self.in_place.get(&id).copied() {
            if let Some(c) = copy {
                return Ok(c);
            }
            let name = format!("{}_dequantized", self.name(id));
            let f = self.add_tensor(id, name, DType::Float32, None)?;
            let src = self.twin.get(&id).copied().unwrap_or(id);
            self.push(Op::Dequantize, vec![src], vec![f]);
            self.in_place.insert(id, Some(f));
            return Ok(f);
        }
        if self.replaced.contains(&id) && !self.dequantized.contains(&id) {
            let src = self.twin.get(&id).copied().unwrap_or(id);
            self.push(Op::Dequantize, vec![src], vec![id]);
            self.dequantized.insert(id);
        }
        Ok(id)
    }

    /// Parameters of graph input `i` (tensor `id`) in the activation dtype, from the legacy
    /// input statistics if given, else from its range.
    fn input_params(&self, i: usize, id: TensorId) -> Result<(f32, i64), QuantError> {
        if let Some(&(mean, std_dev)) = self.options.input_stats.get(i) {
            // Statistics describe the input's own integer type; uint8 for float inputs.
            let stats_dtype = if self.options.input_type.is_quantizable_integer() {
                self.options.input_type
            } else {
                DType::UInt8
            };
            let p = params::from_mean_std(mean, std_dev, IntRange::of(stats_dtype)?)?;
            let shift = zero_point_shift(stats_dtype, self.scheme.act);
            return Ok((p.scale, i64::from(p.zero_point) + shift));
        }
        self.act_params_of(id)
    }

    fn setup_inputs(&mut self) -> Result<(), QuantError> {
        let inputs = self.sg.inputs.clone();
        for (i, id) in inputs.into_iter().enumerate() {
            if self.tensor(id)?.dtype != DType::Float32 {
                continue;
            }
            let wanted = self.options.input_type;
            if !wanted.is_quantizable_integer() {
                if !self.options.input_stats.is_empty() {
                    let p = self.input_params(i, id)?;
                    self.integer_input(id, Some(p), false)?;
                }
                continue;
            }
            let p = self.input_params(i, id)?;
            let p_in = (p.0, p.1 - zero_point_shift(wanted, self.scheme.act));
            if let Some(t) = self.sg.tensor_mut(id) {
                t.dtype = wanted;
                t.quant = Some(quant_of(p_in));
            }
            if wanted == self.scheme.act {
                self.twin.insert(id, id);
            } else {
                let name = format!("{}_{}", self.name(id), self.scheme.act);
                let t = self.add_tensor(id, name, self.scheme.act, Some(quant_of(p)))?;
                self.push(Op::Quantize, vec![id], vec![t]);
                self.twin.insert(id, t);
            }
            self.in_place.insert(id, None);
        }
        Ok(())
    }

    fn finish_outputs(&mut self) -> Result<(), QuantError> {
        let outputs = self.sg.outputs.clone();
        let wanted = self.options.output_type;
        for (k, id) in outputs.into_iter().enumerate() {
            let tw = match self.twin.get(&id) {
                Some(&tw) => {
                    if !self.replaced.contains(&id) {
                        // A graph input passed straight through.
                        continue;
                    }
                    tw
                }
                // Produced by an op that stayed float: quantized for an integer output.
                None if wanted.is_quantizable_integer()
                    && self.tensor(id)?.dtype == DType::Float32
                    && !self.sg.inputs.contains(&id) =>
                {
                    self.integer_input(id, None, false)?
                }
                None => continue,
            };
            let new = if wanted == self.scheme.act {
                tw
            } else if wanted.is_quantizable_integer() {
                let p = self.params(tw)?;
                let shift = zero_point_shift(wanted, self.scheme.act);
                let name = self.name(id);
                let t = self.add_tensor(id, name, wanted, Some(quant_of((p.0, p.1 - shift))))?;
                self.push(Op::Quantize, vec![tw], vec![t]);
                t
            } else {
                self.float_input(id)?;
                continue;
            };
            if let Some(o) = self.sg.outputs.get_mut(k) {
                *o = new;
            }
            for sig in self
                .model
                .signature_defs
                .iter_mut()
                .filter(|s| s.subgraph == 0)
            {
                for t in sig.outputs.iter_mut().filter(|t| t.tensor == id) {
                    t.tensor = new;
                }
            }
        }
        Ok(())
    }

    /// [`Target::Litert`], int8: the operators of the activation-heavy layers, kept float (see
    /// [`ACTIVATIONS_PER_WEIGHT`]): each convolution whose output has that many elements per
    /// weight, and every other operator whose computed inputs all come from kept operators
    /// (or are graph inputs) and that only moves or combines values ([`FOLLOWS_FLOAT`]), so
    /// that the float region has as few edges as possible.
    fn activation_heavy(&self, ops: &[Operator]) -> BTreeSet<usize> {
        let mut kept = BTreeSet::new();
        if self.options.target != Target::Litert || self.scheme.act != DType::Int8 {
            return kept;
        }
        let elements = |id: TensorId| {
            self.old
                .tensor(id)
                .and_then(|t| t.shape.num_elements().ok())
                .unwrap_or(0)
        };
        let mut float_tensors: HashSet<TensorId> = HashSet::new();
        for (index, op) in ops.iter().enumerate() {
            let heavy = match (&op.op, op.inputs.get(1).copied().flatten()) {
                (Op::Conv2D(_) | Op::DepthwiseConv2D(_), Some(filter))
                    if self.is_constant(filter) =>
                {
                    let weights = elements(filter).max(1);
                    op.outputs
                        .first()
                        .is_some_and(|&o| elements(o) >= ACTIVATIONS_PER_WEIGHT * weights)
                }
                (Op::Conv2D(_) | Op::DepthwiseConv2D(_), _) => false,
                _ if !FOLLOWS_FLOAT.contains(&op.op.name().as_ref()) => false,
                _ => {
                    let mut computed = op
                        .present_inputs()
                        .filter(|&t| !self.is_constant(t))
                        .peekable();
                    computed.peek().is_some() && computed.all(|t| float_tensors.contains(&t))
                }
            };
            if heavy && !matches!(op.op, Op::Quantize | Op::Dequantize) {
                kept.insert(index);
                float_tensors.extend(op.outputs.iter().copied());
            }
        }
        // Backwards: a weightless operator between the float graph inputs (or kept operators)
        // and kept operators only (a PAD before the first convolution) stays float too.
        let inputs: HashSet<TensorId> = self.old.inputs.iter().copied().collect();
        let mut readers_of: HashMap<TensorId, Vec<usize>> = HashMap::new();
        for (index, op) in ops.iter().enumerate() {
            for t in op.present_inputs() {
                readers_of.entry(t).or_default().push(index);
            }
        }
        for (index, op) in ops.iter().enumerate().rev() {
            if kept.contains(&index) || !FOLLOWS_FLOAT.contains(&op.op.name().as_ref()) {
                continue;
            }
            let readers: Vec<usize> = op
                .outputs
                .iter()
                .filter_map(|t| readers_of.get(t))
                .flatten()
                .copied()
                .collect();
            let feeds_kept = !readers.is_empty()
                && readers.iter().all(|r| kept.contains(r))
                && !op.outputs.iter().any(|t| self.old.outputs.contains(t));
            let from_float = op
                .present_inputs()
                .filter(|&t| !self.is_constant(t))
                .all(|t| inputs.contains(&t) || float_tensors.contains(&t));
            if feeds_kept && from_float {
                kept.insert(index);
                float_tensors.extend(op.outputs.iter().copied());
            }
        }
        kept
    }

    fn run(&mut self) -> Result<(), QuantError> {
        self.setup_inputs()?;
        let ops = std::mem::take(&mut self.old.operators);
        let activation_heavy = self.activation_heavy(&ops);
        for (index, op) in ops.iter().enumerate() {
            let requested = self.options.keep_float.as_ref().is_some_and(|p| {
                p.matches(
                    &op.op.name(),
                    op.outputs
                        .iter()
                        .filter_map(|&o| self.old.tensor(o).map(|t| t.name.as_str())),
                )
            });
            let forced = self.forced_float.contains(&index);
            let heavy = activation_heavy.contains(&index);
            let kept_for_litert = self.options.target == Target::Litert
                && self.scheme.act == DType::Int8
                && !spec::spec(&op.op, false).xnnpack_int8;
            if forced || requested || heavy || kept_for_litert || !self.try_quantize(op)? {
                let has_float = op
                    .present_inputs()
                    .chain(op.outputs.iter().copied())
                    .any(|t| self.sg.tensor(t).is_some_and(|t| t.dtype == DType::Float32));
                // SHAPE reads only the shape: it takes the integer tensor as it is.
                let shape_only = matches!(op.op, Op::Shape { .. });
                if has_float && !shape_only && !matches!(op.op, Op::Quantize | Op::Dequantize) {
                    self.float_ops.push(FloatOp {
                        index,
                        op: op.op.name().into_owned(),
                        reason: if forced {
                            FloatReason::TargetSqnr
                        } else if requested {
                            FloatReason::Requested
                        } else if heavy {
                            FloatReason::LiteRtActivationHeavy
                        } else if kept_for_litert {
                            FloatReason::LiteRtDelegate
                        } else {
                            FloatReason::NoIntegerKernel
                        },
                    });
                }
                let mut op = op.clone();
                for input in op.inputs.iter_mut().flatten() {
                    if shape_only {
                        if let Some(&t) = self.twin.get(input) {
                            *input = t;
                        }
                    } else if self.twin.contains_key(input) {
                        *input = self.float_input(*input)?;
                    }
                }
                self.sg.operators.push(op);
            }
        }
        self.finish_outputs()?;
        self.rename_twins();
        Ok(())
    }

    /// Integer twins whose float original is still in the graph get a suffix, so names stay
    /// unique: the float tensor keeps the original name.
    fn rename_twins(&mut self) {
        let mut used = HashSet::new();
        for op in &self.sg.operators {
            used.extend(op.present_inputs());
            used.extend(op.outputs.iter().copied());
        }
        used.extend(self.sg.inputs.iter().copied());
        used.extend(self.sg.outputs.iter().copied());
        let suffix = self.scheme.act.name();
        for (&orig, &tw) in &self.twin {
            if orig != tw
                && used.contains(&orig)
                && let Some(t) = self.sg.tensor_mut(tw)
                && !t.name.ends_with(suffix)
            {
                t.name = format!("{}_{suffix}", t.name);
            }
        }
    }

    /// Quantizes `op` if it has a rule and its tensors fit it; false if it stays float.
    fn try_quantize(&mut self, op: &Operator) -> Result<bool, QuantError> {
        let consts: Vec<bool> = op
            .inputs
            .iter()
            .map(|i| i.is_some_and(|t| self.is_constant(t)))
            .collect();
        let const_input = |i: usize| consts.get(i).copied().unwrap_or(false);
        let Some(mut rule) = spec::spec(&op.op, false).rule(op.inputs.len(), &const_input) else {
            return Ok(false);
        };
        // The legacy converter: CONCATENATION's output covers all its inputs, which keep their
        // parameters (the uint8 kernel rescales); PACK's likewise, with the inputs requantized
        // to it (the uint8 kernel copies).
        if self.scheme.act == DType::UInt8 {
            if matches!(op.op, Op::Concatenation(_)) {
                rule.inputs = vec![InputRule::Value; op.inputs.len()];
                rule.output = OutputRule::UnionOfInputs;
                rule.unify = false;
            } else if matches!(op.op, Op::Pack(_)) {
                rule.output = OutputRule::UnionOfInputs;
            }
        }
        if !self.fits(op, &rule)? {
            return Ok(false);
        }
        // Value and weights inputs first.
        let mut new_inputs: Vec<Option<TensorId>> = op.inputs.clone();
        let mut weight_scales: HashMap<usize, Vec<f32>> = HashMap::new();
        for (i, input) in op.inputs.iter().enumerate() {
            let Some(id) = *input else { continue };
            match rule.input(i) {
                InputRule::Value => {
                    new_inputs[i] = Some(self.integer_input(id, None, false)?);
                }
                InputRule::Symmetric => {
                    new_inputs[i] = Some(self.integer_input(id, None, true)?);
                }
                InputRule::Weights { axis } => {
                    let (t, scales) = self.quantize_weights(id, axis)?;
                    new_inputs[i] = Some(t);
                    weight_scales.insert(i, scales);
                }
                _ => {}
            }
        }
        // Output parameters.
        let out_params = match rule.output {
            OutputRule::OwnRange => match op.outputs.first() {
                Some(&o) => Some(self.act_params_of(o)?),
                None => None,
            },
            OutputRule::SameAsInput(k) => match new_inputs.get(k).copied().flatten() {
                Some(t) => Some(self.params(t)?),
                None => None,
            },
            OutputRule::Fixed(f) => self.scheme.fixed(f),
            OutputRule::UnionOfInputs => Some(self.union_params(op)?),
            OutputRule::Keep => None,
        };
        // Inputs tied to the output, and bias.
        for (i, input) in op.inputs.iter().enumerate() {
            let Some(id) = *input else { continue };
            match rule.input(i) {
                InputRule::SameAsOutput => {
                    new_inputs[i] = Some(self.integer_input(id, out_params, false)?);
                }
                InputRule::Bias { input, weights } => {
                    let in_scale = match new_inputs.get(input).copied().flatten() {
                        Some(t) => self.params(t)?.0,
                        None => 1.0,
                    };
                    let scales = weight_scales.get(&weights).cloned().unwrap_or_default();
                    let correction = match (
                        op.inputs.get(input).copied().flatten(),
                        op.inputs.get(weights).copied().flatten(),
                        new_inputs.get(weights).copied().flatten(),
                    ) {
                        (Some(x), Some(w), Some(wq)) if self.options.bias_correction => {
                            self.bias_shift(&op.op, x, w, wq, &scales)?
                        }
                        _ => None,
                    };
                    new_inputs[i] =
                        Some(self.quantize_bias(id, in_scale, &scales, correction.as_deref())?);
                }
                _ => {}
            }
        }
        // Outputs.
        let mut new_outputs = op.outputs.clone();
        if rule.output != OutputRule::Keep {
            let Some(p) = out_params else {
                return Err(QuantError::Unsupported(format!(
                    "internal: no output parameters for {}",
                    op.op.name()
                )));
            };
            for o in &mut new_outputs {
                let name = self.name(*o);
                let t = self.add_tensor(*o, name, self.scheme.act, Some(quant_of(p)))?;
                self.twin.insert(*o, t);
                self.replaced.insert(*o);
                *o = t;
            }
        }
        let has_bias = rule.inputs.iter().enumerate().any(|(i, r)| {
            matches!(r, InputRule::Bias { .. }) && op.inputs.get(i).copied().flatten().is_some()
        });
        let mut operator = op.clone();
        operator.inputs = new_inputs;
        operator.outputs = new_outputs;
        operator.version = versions::quantized_version(op, self.scheme.act, has_bias);
        self.sg.operators.push(operator);
        Ok(true)
    }

    /// The legacy converter's CONCATENATION output: the union of the known ranges of the
    /// inputs (calibrated, or represented by their parameters) and of the output's calibrated
    /// range; the default range when none is known.
    fn union_params(&self, op: &Operator) -> Result<(f32, i64), QuantError> {
        let mut known: Vec<(f32, f32)> = Vec::new();
        for &orig in op.inputs.iter().flatten() {
            if let Some(r) = self.ranges.get(orig) {
                known.push(r);
            } else if let Some(&t) = self.twin.get(&orig) {
                let (s, z) = self.params(t)?;
                let range = IntRange::of(self.scheme.act)?;
                known.push((
                    (range.qmin as f32 - z as f32) * s,
                    (range.qmax as f32 - z as f32) * s,
                ));
            } else if self.is_constant(orig) {
                let values = self.float_values(orig)?;
                let min = values.iter().copied().fold(0.0f32, f32::min);
                let max = values.iter().copied().fold(0.0f32, f32::max);
                known.push((min, max));
            }
        }
        if let Some(r) = op.outputs.first().and_then(|&o| self.ranges.get(o)) {
            known.push(r);
        }
        let (min, max) = match known
            .into_iter()
            .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))
        {
            Some(r) => r,
            None => match op.outputs.first() {
                Some(&o) => self.range_of(o)?,
                None => (0.0, 0.0),
            },
        };
        let p = self.scheme.act_params(min, max)?;
        Ok((p.scale, i64::from(p.zero_point)))
    }

    /// Whether `op`'s tensors fit `rule`: float where the rule quantizes, constant weights and
    /// bias, non-float where the rule keeps, and a kernel for the mode.
    fn fits(&self, op: &Operator, rule: &Rule) -> Result<bool, QuantError> {
        if let OutputRule::Fixed(f) = rule.output
            && self.scheme.fixed(f).is_none()
        {
            return Ok(false);
        }
        let kernels = spec::spec(&op.op, false).kernels;
        let has_kernel = match self.scheme.act {
            DType::Int8 => kernels.int8,
            DType::UInt8 => kernels.uint8,
            DType::Int16 => kernels.int16,
            _ => false,
        };
        if !has_kernel {
            return Ok(false);
        }
        let mut any_float = false;
        for (i, input) in op.inputs.iter().enumerate() {
            let Some(id) = *input else { continue };
            let t = self.tensor(id)?;
            // A twin means the tensor was float originally.
            let float = t.dtype == DType::Float32 || self.twin.contains_key(&id);
            match rule.input(i) {
                InputRule::Keep => {
                    if float {
                        return Ok(false);
                    }
                }
                InputRule::Weights { .. } | InputRule::Bias { .. } => {
                    if t.dtype != DType::Float32 || !self.is_constant(id) {
                        return Ok(false);
                    }
                }
                _ => {
                    if !float {
                        return Ok(false);
                    }
                    any_float = true;
                }
            }
        }
        for &o in &op.outputs {
            let float = self.tensor(o)?.dtype == DType::Float32;
            if float == (rule.output == OutputRule::Keep) {
                return Ok(false);
            }
            if self.sg.inputs.contains(&o) {
                return Ok(false);
            }
        }
        Ok(any_float)
    }
}

/// The zero-point difference between the same scale in `from` and in `to` (int8 <-> uint8: 128).
fn zero_point_shift(from: DType, to: DType) -> i64 {
    match (from, to) {
        (DType::UInt8, DType::Int8) => -128,
        (DType::Int8, DType::UInt8) => 128,
        _ => 0,
    }
}

/// Ops TFLite has int16x8 kernels for.
/// Bias scale `input_scale * weight_scale`, multiplied in double precision as TensorFlow does.
fn bias_scale(input_scale: f32, weight_scale: f32) -> f32 {
    (f64::from(input_scale) * f64::from(weight_scale)) as f32
}
