//! The per-op quantization spec table, in the spirit of TFLite's `operator_property.cc`:
//! everything octet's quantizer knows about an op in one entry of [`spec`] — how its inputs
//! and outputs are quantized (weights and bias, their channel axis, inputs that share the
//! output's parameters, outputs the kernels fix), which integer flavours LiteRT has kernels
//! for, the op versions those kernels need, whether LiteRT's XNNPACK delegate runs it in int8,
//! and where the weight-only modes find its weights. Adding an op's quantization is one arm of
//! the match in [`spec`].

use octet_core::{FullyConnectedOptions, Op, ResizeOptions, WeightsFormat};

use crate::passes::{WeightInput, WeightRole};

/// How one input of a quantized op is quantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputRule {
    /// A value (activation, or a constant quantized asymmetric per tensor from its own range).
    Value,
    /// A value that must share the output's parameters (requantized if it does not).
    SameAsOutput,
    /// Constant weights, quantized along `axis` (per channel in int8 / int16x8 modes).
    Weights {
        /// The channel axis.
        axis: usize,
    },
    /// Bias: scale = input scale x weights scale, of the given inputs.
    Bias {
        /// Index of the activation input.
        input: usize,
        /// Index of the weights input.
        weights: usize,
    },
    /// A constant quantized symmetric per tensor (PRELU's alpha).
    Symmetric,
    /// A non-float input (shape, axis, indices...): left alone.
    Keep,
}

/// Where an output's parameters come from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OutputRule {
    /// From its own calibrated (or default) range.
    OwnRange,
    /// The parameters of the (quantized) input with this index: ops that only move data.
    SameAsInput(usize),
    /// Fixed by the kernel.
    Fixed(FixedOutput),
    /// The union of the inputs' ranges and the output's calibrated range (the legacy
    /// converter's CONCATENATION: uint8 inputs keep their parameters, the kernel rescales).
    UnionOfInputs,
    /// Not quantized (integer output such as ARG_MAX's indices).
    Keep,
}

/// The outputs whose parameters TFLite's kernels fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixedOutput {
    /// SOFTMAX and LOGISTIC: [0, 1).
    Probability,
    /// TANH and L2_NORMALIZATION: [-1, 1).
    UnitSigned,
    /// LOG_SOFTMAX: [-16, 0].
    LogProbability,
}

/// The quantization rule of one op.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Rule for input `i` (missing entries: [`InputRule::Keep`]).
    pub inputs: Vec<InputRule>,
    /// Rule for every output.
    pub output: OutputRule,
    /// All value inputs and the output share parameters, taken from the output's own range
    /// (CONCATENATION, PACK, MAXIMUM, MINIMUM).
    pub unify: bool,
}

impl Rule {
    fn new(inputs: Vec<InputRule>, output: OutputRule) -> Self {
        Rule {
            inputs,
            output,
            unify: false,
        }
    }

    /// The rule for input `i`.
    pub fn input(&self, i: usize) -> InputRule {
        self.inputs.get(i).copied().unwrap_or(InputRule::Keep)
    }
}

/// The shape of an op's full-integer rule; [`OpSpec::rule`] makes the [`Rule`] for a given
/// operator (its input count, which inputs are constant).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    /// No integer kernel: the op stays float.
    Float,
    /// CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED: activation, constant weights per channel
    /// along `axis`, bias; own output range.
    Weighted { axis: usize },
    /// TRANSPOSE_CONV: output shape, constant weights, activation, bias.
    TransposeConv,
    /// Every input a value; own output range.
    Values,
    /// PRELU: activation and alpha (symmetric when constant).
    Prelu,
    /// A value and a kept input (axes); own output range.
    Reduce,
    /// A value that the output copies: the output takes input `input`'s parameters.
    Moves { input: usize },
    /// PAD_V2: value, paddings, constant value sharing the output's parameters.
    PadV2,
    /// Output parameters fixed by the kernel.
    Fixed(FixedOutput),
    /// ARG_MAX: a value in, indices out.
    ArgMax,
    /// Inputs and output share the output's own range.
    Unify,
}

/// Which integer flavours LiteRT has kernels for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernels {
    /// int8 activations, int8 weights.
    pub int8: bool,
    /// uint8 (the legacy path).
    pub uint8: bool,
    /// int16 activations, int8 weights.
    pub int16: bool,
}

/// Op versions the integer kernels need, as TFLite's `op_version.cc` assigns them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    /// With int8 activations (TensorFlow's 16x8 quantizer writes these for most ops too).
    pub int8: i32,
    /// With uint8 activations.
    pub uint8: i32,
    /// With int16 activations, per `op_version.cc`.
    pub int16: i32,
}

/// Everything the quantizer knows about one op.
#[derive(Debug, Clone, PartialEq)]
pub struct OpSpec {
    shape: Shape,
    /// Integer flavours LiteRT has kernels for (all false for ops that stay float).
    pub kernels: Kernels,
    /// Versions of the integer kernels.
    pub versions: Versions,
    /// LiteRT's XNNPACK delegate runs the op in int8. An op it runs only in float ends the
    /// delegated partition when int8 and runs on TFLite's own kernel; `--target litert` keeps
    /// it float. Measured with one-op models by `cargo xtask litert-ops` (LiteRT 2.3); ops that
    /// XNNPACK runs in neither form are marked true: keeping them float would gain nothing.
    pub xnnpack_int8: bool,
    /// Constant weight and bias inputs, for the weight-only and dynamic-range modes.
    pub weights: Vec<WeightInput>,
}

impl OpSpec {
    /// An op with an integer rule of `shape`, kernels in every flavour, version 1, run by
    /// XNNPACK in int8, without weights.
    fn new(shape: Shape) -> Self {
        let integer = shape != Shape::Float;
        OpSpec {
            shape,
            kernels: Kernels {
                int8: integer,
                uint8: integer,
                int16: integer,
            },
            versions: Versions {
                int8: 1,
                uint8: 1,
                int16: 1,
            },
            xnnpack_int8: true,
            weights: Vec::new(),
        }
    }

    fn versions(mut self, int8: i32, uint8: i32, int16: i32) -> Self {
        self.versions = Versions { int8, uint8, int16 };
        self
    }

    fn no_int8(mut self) -> Self {
        self.kernels.int8 = false;
        self
    }

    fn no_uint8(mut self) -> Self {
        self.kernels.uint8 = false;
        self
    }

    fn no_int16(mut self) -> Self {
        self.kernels.int16 = false;
        self
    }

    fn float_in_xnnpack(mut self) -> Self {
        self.xnnpack_int8 = false;
        self
    }

    fn weights(mut self, weights: Vec<WeightInput>) -> Self {
        self.weights = weights;
        self
    }

    /// The full-integer rule for an operator of this op with `inputs` inputs, `None` if it
    /// stays float. `const_input(i)` says whether input `i` is a constant (weights must be).
    pub fn rule(&self, inputs: usize, const_input: &dyn Fn(usize) -> bool) -> Option<Rule> {
        use InputRule::{Bias, Keep, SameAsOutput, Symmetric, Value, Weights};
        Some(match self.shape {
            Shape::Float => return None,
            Shape::Weighted { axis } => {
                if !const_input(1) {
                    return None;
                }
                Rule::new(
                    vec![
                        Value,
                        Weights { axis },
                        Bias {
                            input: 0,
                            weights: 1,
                        },
                    ],
                    OutputRule::OwnRange,
                )
            }
            Shape::TransposeConv => {
                if !const_input(1) {
                    return None;
                }
                Rule::new(
                    vec![
                        Keep,
                        Weights { axis: 0 },
                        Value,
                        Bias {
                            input: 2,
                            weights: 1,
                        },
                    ],
                    OutputRule::OwnRange,
                )
            }
            Shape::Values => Rule::new(vec![Value; inputs], OutputRule::OwnRange),
            Shape::Prelu => Rule::new(
                vec![Value, if const_input(1) { Symmetric } else { Value }],
                OutputRule::OwnRange,
            ),
            Shape::Reduce => Rule::new(vec![Value, Keep], OutputRule::OwnRange),
            Shape::Moves { input } => {
                let mut rules = vec![Keep; input + 1];
                if let Some(r) = rules.get_mut(input) {
                    *r = Value;
                }
                Rule::new(rules, OutputRule::SameAsInput(input))
            }
            Shape::PadV2 => Rule::new(vec![Value, Keep, SameAsOutput], OutputRule::SameAsInput(0)),
            Shape::Fixed(f) => Rule::new(vec![Value], OutputRule::Fixed(f)),
            Shape::ArgMax => Rule::new(vec![Value, Keep], OutputRule::Keep),
            Shape::Unify => Rule {
                inputs: vec![SameAsOutput; inputs],
                output: OutputRule::OwnRange,
                unify: true,
            },
        })
    }
}

fn weight(input: usize, axis: Option<usize>) -> WeightInput {
    WeightInput {
        input,
        role: WeightRole::Weights { axis },
    }
}

fn bias(input: usize) -> WeightInput {
    WeightInput {
        input,
        role: WeightRole::Bias,
    }
}

/// Versions of resizing ops: half-pixel centers need version 3 in every flavour.
fn resize_versions(spec: OpSpec, options: &ResizeOptions) -> OpSpec {
    if options.half_pixel_centers {
        spec.versions(3, 3, 3)
    } else {
        spec.versions(2, 1, 2)
    }
}

/// The spec of `op`. `has_bias` matters only for TRANSPOSE_CONV, whose int8 kernel with a bias
/// needs a later version.
pub fn spec(op: &Op, has_bias: bool) -> OpSpec {
    use Shape::{Fixed, Moves, Reduce, Unify, Values, Weighted};
    let moves = Moves { input: 0 };
    match op {
        Op::Conv2D(_) => OpSpec::new(Weighted { axis: 0 })
            .versions(3, 1, 4)
            .weights(vec![weight(1, Some(0)), bias(2)]),
        Op::DepthwiseConv2D(_) => OpSpec::new(Weighted { axis: 3 })
            .versions(3, 1, 5)
            .weights(vec![weight(1, Some(3)), bias(2)]),
        Op::FullyConnected(FullyConnectedOptions {
            weights_format,
            keep_num_dims,
            ..
        }) => {
            let shape = if *weights_format == WeightsFormat::Default {
                Weighted { axis: 0 }
            } else {
                Shape::Float
            };
            let spec = OpSpec::new(shape).weights(vec![weight(1, Some(0)), bias(2)]);
            if *keep_num_dims {
                spec.versions(5, 5, 5)
            } else {
                spec.versions(4, 1, 7)
            }
        }
        Op::TransposeConv(_) => {
            let spec = OpSpec::new(Shape::TransposeConv).weights(vec![weight(1, Some(0)), bias(3)]);
            if has_bias {
                spec.versions(3, 3, 3)
            } else {
                spec.versions(2, 1, 2)
            }
        }
        // LiteRT has no uint8 BATCH_MATMUL.
        Op::BatchMatMul(_) => OpSpec::new(Values)
            .versions(2, 1, 2)
            .no_uint8()
            .float_in_xnnpack()
            .weights(vec![weight(1, None)]),
        Op::Add(_) | Op::Sub(_) => OpSpec::new(Values).versions(2, 1, 3),
        Op::Mul { .. } => OpSpec::new(Values).versions(2, 1, 4),
        Op::Relu => OpSpec::new(Values).versions(2, 2, 3).float_in_xnnpack(),
        Op::Relu6 => OpSpec::new(Values).versions(2, 1, 2).float_in_xnnpack(),
        Op::ReluN1To1 => OpSpec::new(Values)
            .versions(1, 1, 2)
            .no_int16()
            .float_in_xnnpack(),
        Op::LeakyRelu { .. } => OpSpec::new(Values).versions(1, 1, 2),
        Op::HardSwish => OpSpec::new(Values)
            .versions(1, 1, 2)
            .no_int16()
            .float_in_xnnpack(),
        Op::Prelu => OpSpec::new(Shape::Prelu)
            .versions(1, 1, 2)
            .no_int16()
            .float_in_xnnpack(),
        Op::Mean { .. } => OpSpec::new(Reduce).versions(2, 1, 2),
        // LiteRT's BUILTIN_REF int8 SUM is far off the float result (models/ops/README.md):
        // TensorFlow quantizes it, octet keeps it float.
        Op::Sum { .. } => OpSpec::new(Reduce).versions(2, 1, 2).no_int8().no_int16(),
        Op::AveragePool2D(_) => OpSpec::new(moves).versions(2, 1, 2).float_in_xnnpack(),
        Op::MaxPool2D(_) => OpSpec::new(moves).versions(2, 1, 2),
        Op::Unpack(_) => OpSpec::new(moves).versions(2, 2, 3),
        // op_version.cc says 2 for int8, but LiteRT's BUILTIN_REF resolver registers only
        // version 1 (whose kernel runs int8 all the same), and the default resolver accepts 1.
        Op::DepthToSpace { .. } => OpSpec::new(moves).no_int16(),
        Op::SpaceToDepth { .. } => OpSpec::new(moves).versions(2, 1, 2).no_int16(),
        Op::ReduceMax { .. }
        | Op::Transpose
        | Op::StridedSlice(_)
        | Op::Slice
        | Op::SplitV { .. }
        | Op::Gather(_) => OpSpec::new(moves).versions(2, 1, 2),
        Op::Reshape { .. } | Op::Squeeze { .. } | Op::ExpandDims => OpSpec::new(moves),
        Op::Pad | Op::MirrorPad { .. } => OpSpec::new(moves).versions(2, 1, 3),
        Op::ResizeBilinear(o) | Op::ResizeNearestNeighbor(o) => {
            resize_versions(OpSpec::new(moves), o)
        }
        Op::PadV2 => OpSpec::new(Shape::PadV2).versions(2, 1, 3).no_int16(),
        Op::Split { .. } => OpSpec::new(Moves { input: 1 }).versions(2, 1, 2),
        Op::Softmax { .. } => OpSpec::new(Fixed(FixedOutput::Probability))
            .versions(2, 1, 3)
            .float_in_xnnpack(),
        Op::Logistic => OpSpec::new(Fixed(FixedOutput::Probability)).versions(2, 1, 3),
        Op::Tanh => OpSpec::new(Fixed(FixedOutput::UnitSigned)).versions(2, 1, 3),
        Op::L2Normalization { .. } => OpSpec::new(Fixed(FixedOutput::UnitSigned))
            .versions(2, 1, 2)
            .no_int16(),
        Op::LogSoftmax => OpSpec::new(Fixed(FixedOutput::LogProbability))
            .versions(2, 1, 2)
            .no_int16(),
        Op::ArgMax(_) => OpSpec::new(Shape::ArgMax).versions(2, 1, 2).no_int16(),
        Op::Concatenation(_) => OpSpec::new(Unify).versions(2, 1, 3),
        Op::Pack(_) => OpSpec::new(Unify).versions(2, 1, 2),
        Op::Maximum | Op::Minimum => OpSpec::new(Unify).versions(2, 1, 2).float_in_xnnpack(),
        Op::Quantize => OpSpec::new(Shape::Float).versions(1, 1, 2),
        Op::Dequantize => OpSpec::new(Shape::Float).versions(2, 1, 3),
        _ => OpSpec::new(Shape::Float),
    }
}

/// Whether LiteRT's default CPU path runs `op` in int8 inside its XNNPACK delegate
/// ([`OpSpec::xnnpack_int8`]).
pub fn litert_delegates_int8(op: &Op) -> bool {
    spec(op, false).xnnpack_int8
}
