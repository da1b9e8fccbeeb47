//! octet's quantizer: post-training quantization of float TFLite models to every TFLite scheme.
//!
//! [`quantize`] is the entry point: it takes a float [`Model`], the [`QuantizeOptions`] (mode,
//! integer input/output types, legacy input statistics and default ranges) and, for the modes
//! that quantize activations, [`Calibration`] data, and returns the quantized model with a
//! [`QuantizeReport`]. [`params`] holds the range/statistics arithmetic that every mode and
//! `octet params` share; [`metrics`] measures what quantization cost.

pub mod calibrate;
pub mod equalize;
mod error;
mod full_integer;
pub mod histogram;
pub mod metrics;
pub mod parallel;
pub mod params;
pub mod passes;
pub mod spec;
pub mod weight_modes;

use octet_core::{DType, Model};

pub use calibrate::RangeMethod;

pub use error::QuantError;
pub use spec::litert_delegates_int8;

/// The quantization schemes of TFLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Full integer by the TFLite int8 specification: int8 weights (symmetric, per channel),
    /// int32 bias, int8 activations (asymmetric, per tensor).
    Int8,
    /// The legacy `tflite_convert` path: uint8 weights and activations, asymmetric, per tensor.
    UInt8,
    /// int16 activations with int8 weights.
    Int16x8,
    /// Dynamic range: int8 weights, float activations, hybrid kernels.
    Dynamic,
    /// float16 weights with DEQUANTIZE to float32, float compute.
    Fp16,
    /// int8 weights with DEQUANTIZE to float32, float compute.
    WeightInt8,
}

impl Mode {
    /// The mode's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Int8 => "int8",
            Mode::UInt8 => "uint8",
            Mode::Int16x8 => "int16x8",
            Mode::Dynamic => "dynamic",
            Mode::Fp16 => "fp16",
            Mode::WeightInt8 => "weight-int8",
        }
    }

    /// True for the modes that quantize activations and so need ranges for them.
    pub fn needs_activation_ranges(self) -> bool {
        matches!(self, Mode::Int8 | Mode::UInt8 | Mode::Int16x8)
    }
}

/// How the full-integer modes choose each activation's range from the calibration data.
///
/// The default is [`RangeMethod::Percentile`] at 99.99: on the MediaPipe models, with 16
/// calibration samples, it gave the best or equal-best SQNR on held-out samples of every model
/// (`docs/quantization.md`), where `Auto`'s choice on so few samples was often not the best.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CalibrationMethod {
    /// One method for every tensor.
    Fixed(RangeMethod),
    /// Each of [`RangeMethod::MinMax`], [`RangeMethod::Percentile`] (99.99) and
    /// [`RangeMethod::Mse`] quantizes the model with ranges from the even-numbered calibration
    /// samples; the one whose outputs on the odd-numbered samples come closest to the float
    /// model's (mean SQNR over outputs) is kept, and applied with the ranges of all samples.
    Auto,
}

impl Default for CalibrationMethod {
    fn default() -> Self {
        CalibrationMethod::Fixed(RangeMethod::Percentile(99.99))
    }
}

impl CalibrationMethod {
    /// The method's name on the command line.
    pub fn name(self) -> String {
        match self {
            CalibrationMethod::Fixed(m) => m.name(),
            CalibrationMethod::Auto => "auto".into(),
        }
    }
}

/// Ops chosen by a regular expression: an op matches when the expression matches its name
/// (`PRELU`) or the name of one of its output tensors (`model/conv2d_3/Relu`).
#[derive(Debug, Clone)]
pub struct OpPattern(regex::Regex);

impl OpPattern {
    /// Compiles `pattern` (Rust `regex` syntax; unanchored, so `conv` matches any name that
    /// contains it).
    pub fn new(pattern: &str) -> Result<Self, QuantError> {
        regex::Regex::new(pattern)
            .map(OpPattern)
            .map_err(|e| QuantError::Unsupported(format!("bad pattern {pattern:?}: {e}")))
    }

    /// Whether the op named `op` with output tensors named `outputs` matches.
    pub fn matches<'a>(&self, op: &str, mut outputs: impl Iterator<Item = &'a str>) -> bool {
        self.0.is_match(op) || outputs.any(|name| self.0.is_match(name))
    }
}

impl PartialEq for OpPattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// Where the quantized file will run. The full-integer modes use it to decide which ops stay
/// float; the other modes ignore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Target {
    /// LiteRT's default CPU path (its XNNPACK delegate): an op that LiteRT has an int8 kernel
    /// for but XNNPACK runs only in float stays float, so that it does not split the delegated
    /// graph ([`FloatReason::LiteRtDelegate`]).
    #[default]
    Litert,
    /// Microcontrollers and NPUs: every op integer, as TensorFlow's converter makes them; an op
    /// without an integer kernel is an error naming it.
    IntegerOnly,
    /// octet's own runtime: every op with an integer kernel is integer.
    Octet,
}

impl Target {
    /// The target's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Target::Litert => "litert",
            Target::IntegerOnly => "integer-only",
            Target::Octet => "octet",
        }
    }
}

/// How to quantize.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizeOptions {
    /// The scheme.
    pub mode: Mode,
    /// Where the file will run.
    pub target: Target,
    /// How activation ranges are chosen from the calibration data.
    pub calibration: CalibrationMethod,
    /// Ops to keep float in the full-integer modes (with DEQUANTIZE/QUANTIZE around them).
    pub keep_float: Option<OpPattern>,
    /// Empirical bias correction in the modes with int8 weights and calibration data: each
    /// CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED bias absorbs the mean shift its quantized
    /// weights cause on the calibration data.
    pub bias_correction: bool,
    /// Equalize the channels of activations between pairs of convolutions ([`equalize`]).
    /// The equalized tensors then take their exact min/max range: their histograms describe
    /// them before scaling, and a second calibration pass would double its time.
    pub equalization: bool,
    /// Measure each layer's effect alone ([`QuantizeReport::sensitivity`]).
    pub sensitivity: bool,
    /// Keep float the fewest most damaging layers that bring the mean output SQNR on the
    /// calibration samples to this many dB.
    pub target_sqnr: Option<f64>,
    /// dtype of the model's inputs after quantization: `Float32` keeps float inputs with a
    /// QUANTIZE op after them; an integer type makes the inputs themselves quantized.
    pub input_type: DType,
    /// dtype of the model's outputs, likewise (DEQUANTIZE before float outputs).
    pub output_type: DType,
    /// Legacy input statistics (`--mean-values`, `--std-dev-values`), one pair per model input:
    /// `real = (q - mean) / std_dev`. They fix the inputs' quantization parameters.
    pub input_stats: Vec<(f32, f32)>,
    /// Legacy default range (`--default-ranges-min/max`) for every activation without a
    /// calibrated range.
    pub default_range: Option<(f32, f32)>,
    /// Threads for calibration (samples are shared among them); the result does not depend
    /// on it.
    pub threads: usize,
    /// Keep the float model's outputs on the first this many calibration samples
    /// ([`QuantizeReport::float_outputs`]), for a caller that then measures accuracy on them:
    /// calibration computes them anyway, so the float model need not run again.
    pub keep_float_outputs: usize,
}

impl QuantizeOptions {
    /// Options for `mode` with float inputs and outputs and nothing else set.
    pub fn new(mode: Mode) -> Self {
        QuantizeOptions {
            mode,
            target: Target::default(),
            calibration: CalibrationMethod::default(),
            keep_float: None,
            bias_correction: true,
            equalization: true,
            sensitivity: false,
            target_sqnr: None,
            input_type: DType::Float32,
            output_type: DType::Float32,
            input_stats: Vec::new(),
            default_range: None,
            threads: 1,
            keep_float_outputs: 0,
        }
    }
}

/// Calibration data: samples of the model's inputs, each sample one float32 array per input
/// (dense, in input order, shaped like the input).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Calibration {
    /// `samples[s][i]` is input `i` of sample `s`.
    pub samples: Vec<Vec<Vec<f32>>>,
}

/// What quantization did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuantizeReport {
    /// Tensors now integer (or float16) that were float before.
    pub tensors_quantized: usize,
    /// Float tensors left float.
    pub tensors_float: usize,
    /// Ops left in float, with DEQUANTIZE/QUANTIZE around them, and why.
    pub float_ops: Vec<FloatOp>,
    /// Standalone RELU, RELU6 and RELU_N1_TO_1 ops folded into the fused activation of the op
    /// that produces their input (exact in float; integer kernels then clamp for free, and
    /// LiteRT's XNNPACK delegate takes no standalone int8 RELU).
    pub activations_fused: usize,
    /// MUL/ADD/SUB by constants folded into the convolution before them
    /// ([`passes::fold_constant_affine`]).
    pub constants_folded: usize,
    /// Sparse constants made dense (LiteRT's int8 convolutions take no sparse weights, so a
    /// sparse model's quantized file can be larger than the float one).
    pub densified: usize,
    /// Pairs of convolutions whose activation channels were equalized.
    pub equalized: usize,
    /// The range method the full-integer modes used (with [`CalibrationMethod::Auto`], the one
    /// it chose); `None` without calibration data.
    pub calibration: Option<RangeMethod>,
    /// Per integer op, the mean output SQNR when it alone is quantized (with
    /// [`QuantizeOptions::sensitivity`] or when [`QuantizeOptions::target_sqnr`] needed it).
    pub sensitivity: Vec<LayerSensitivity>,
    /// Mean output SQNR (dB) of the result on up to 32 calibration samples, measured with
    /// sensitivity analysis or a target.
    pub calibration_sqnr_db: Option<f64>,
    /// With [`QuantizeOptions::target_sqnr`] where layers were kept float: the median latency
    /// (ms, octet's runtime, 1 thread) of the all-integer model and of the result.
    pub target_latency_ms: Option<(f64, f64)>,
    /// Bytes of constant data before.
    pub constant_bytes_before: usize,
    /// Bytes of constant data after.
    pub constant_bytes_after: usize,
    /// The float model's outputs on the first [`QuantizeOptions::keep_float_outputs`]
    /// calibration samples: `float_outputs[s][k]` holds the bytes of graph output `k` on
    /// sample `s` (as `octet_runtime::Interpreter::output` gives them). Empty for the modes
    /// that do not calibrate.
    pub float_outputs: Vec<calibrate::Outputs>,
}

/// One layer's effect on accuracy when it alone is quantized.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSensitivity {
    /// Operator index in the float model's main subgraph (after the float passes).
    pub index: usize,
    /// The op's name.
    pub op: String,
    /// Its first output tensor's name.
    pub output: String,
    /// Mean output SQNR (dB) of the model with only this op quantized (100 when exact).
    pub sqnr_db: f64,
}

/// An op that stayed float in a quantized model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloatOp {
    /// Its index in the float model's main subgraph (after the float passes).
    pub index: usize,
    /// The op's name (`PRELU`).
    pub op: String,
    /// Why it stayed float.
    pub reason: FloatReason,
}

/// Why an op stayed float.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatReason {
    /// TFLite has no integer kernel for it in this mode (or octet has no rule for it yet).
    NoIntegerKernel,
    /// [`Target::Litert`]: LiteRT's XNNPACK delegate runs it only in float.
    LiteRtDelegate,
    /// Asked for ([`QuantizeOptions::keep_float`]).
    Requested,
    /// Kept float to reach [`QuantizeOptions::target_sqnr`].
    TargetSqnr,
    /// [`Target::Litert`]: an activation-heavy layer (many outputs per weight), which LiteRT's
    /// XNNPACK runs faster in float and whose weights are few.
    LiteRtActivationHeavy,
}

impl FloatReason {
    /// A short explanation for reports.
    pub fn explain(self) -> &'static str {
        match self {
            FloatReason::NoIntegerKernel => "no integer kernel in TFLite",
            FloatReason::LiteRtDelegate => {
                "LiteRT's XNNPACK runs it only in float (--target litert)"
            }
            FloatReason::Requested => "--keep-float",
            FloatReason::TargetSqnr => "--target-sqnr",
            FloatReason::LiteRtActivationHeavy => {
                "activation-heavy layer, faster in float under LiteRT's XNNPACK (--target litert)"
            }
        }
    }
}

/// Quantizes `model` as `options` say. Modes that quantize activations need `calibration` or a
/// default range (or, for the legacy path, input statistics and a default range); the error says
/// which flags would do.
pub fn quantize(
    model: &Model,
    options: &QuantizeOptions,
    calibration: Option<&Calibration>,
) -> Result<(Model, QuantizeReport), QuantError> {
    quantize_with_progress(model, options, calibration, &mut |_, _| {})
}

/// [`quantize`], telling `progress` how calibration advances: `(samples done, samples in all)`.
pub fn quantize_with_progress(
    model: &Model,
    options: &QuantizeOptions,
    calibration: Option<&Calibration>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Model, QuantizeReport), QuantError> {
    if options.mode.needs_activation_ranges()
        && calibration.is_none()
        && options.default_range.is_none()
    {
        return Err(QuantError::NeedsRanges(options.mode.name()));
    }
    match options.mode {
        Mode::Dynamic | Mode::Fp16 | Mode::WeightInt8 => {
            weight_modes::quantize_weights(model, options.mode)
        }
        Mode::Int8 | Mode::UInt8 | Mode::Int16x8 => {
            full_integer::quantize(model, options, calibration, progress)
        }
    }
}
