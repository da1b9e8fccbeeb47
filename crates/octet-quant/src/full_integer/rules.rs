//! Per-op quantization rules of the full-integer modes: which inputs are activations, weights or
//! bias, and where each output's parameters come from (after TFLite's
//! `operator_property.cc` and the integer kernels' Prepare checks).

use octet_core::{FullyConnectedOptions, Op, WeightsFormat};

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

/// The rule for `op` with `inputs` inputs, `None` if it stays float. `const_input(i)` says
/// whether input `i` is a constant (weights must be).
pub fn rule_for(op: &Op, inputs: usize, const_input: &dyn Fn(usize) -> bool) -> Option<Rule> {
    use InputRule::{Bias, Keep, SameAsOutput, Symmetric, Value, Weights};
    use OutputRule::{Fixed, OwnRange, SameAsInput};
    let values = |n: usize| vec![Value; n];
    let rule = match op {
        Op::Conv2D(_) | Op::DepthwiseConv2D(_) | Op::FullyConnected(_) => {
            if let Op::FullyConnected(FullyConnectedOptions { weights_format, .. }) = op
                && *weights_format != WeightsFormat::Default
            {
                return None;
            }
            if !const_input(1) {
                return None;
            }
            let axis = if matches!(op, Op::DepthwiseConv2D(_)) {
                3
            } else {
                0
            };
            Rule::new(
                vec![
                    Value,
                    Weights { axis },
                    Bias {
                        input: 0,
                        weights: 1,
                    },
                ],
                OwnRange,
            )
        }
        Op::TransposeConv(_) => {
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
                OwnRange,
            )
        }
        Op::BatchMatMul(_)
        | Op::Add(_)
        | Op::Sub(_)
        | Op::Mul { .. }
        | Op::Relu
        | Op::Relu6
        | Op::ReluN1To1
        | Op::LeakyRelu { .. }
        | Op::HardSwish => Rule::new(values(inputs), OwnRange),
        Op::Prelu => Rule::new(
            vec![Value, if const_input(1) { Symmetric } else { Value }],
            OwnRange,
        ),
        Op::Mean { .. } | Op::Sum { .. } => Rule::new(vec![Value, Keep], OwnRange),
        Op::AveragePool2D(_)
        | Op::MaxPool2D(_)
        | Op::Unpack(_)
        | Op::DepthToSpace { .. }
        | Op::SpaceToDepth { .. } => Rule::new(vec![Value], SameAsInput(0)),
        Op::ReduceMax { .. }
        | Op::Pad
        | Op::MirrorPad { .. }
        | Op::Reshape { .. }
        | Op::Squeeze { .. }
        | Op::ExpandDims
        | Op::Transpose
        | Op::StridedSlice(_)
        | Op::Slice
        | Op::SplitV { .. }
        | Op::Gather(_)
        | Op::ResizeBilinear(_)
        | Op::ResizeNearestNeighbor(_) => Rule::new(vec![Value], SameAsInput(0)),
        Op::PadV2 => Rule::new(vec![Value, Keep, SameAsOutput], SameAsInput(0)),
        Op::Split { .. } => Rule::new(vec![Keep, Value], SameAsInput(1)),
        Op::Softmax { .. } | Op::Logistic => {
            Rule::new(vec![Value], Fixed(FixedOutput::Probability))
        }
        Op::Tanh | Op::L2Normalization { .. } => {
            Rule::new(vec![Value], Fixed(FixedOutput::UnitSigned))
        }
        Op::LogSoftmax => Rule::new(vec![Value], Fixed(FixedOutput::LogProbability)),
        Op::ArgMax(_) => Rule::new(vec![Value, Keep], OutputRule::Keep),
        Op::Concatenation(_) | Op::Pack(_) | Op::Maximum | Op::Minimum => Rule {
            inputs: vec![SameAsOutput; inputs],
            output: OwnRange,
            unify: true,
        },
        _ => return None,
    };
    Some(rule)
}

/// Whether LiteRT's default CPU path runs `op` in int8 inside its XNNPACK delegate.
///
/// The ops listed here have an int8 kernel in LiteRT's builtin resolver, but the XNNPACK delegate
/// (LiteRT 2.3) takes them only in float. In an int8 file each one ends a delegated partition
/// and runs on TFLite's own int8 kernel: on face_landmark, 23 int8 PRELUs made the file run in
/// 6.8 ms where the float model takes 1.1 ms. Kept float between DEQUANTIZE and QUANTIZE, they
/// stay inside the one delegated partition. The list was measured with one-op models (an op
/// counts as delegated when QUANTIZE, the op and DEQUANTIZE form one partition): `cargo xtask
/// litert-ops` measures it again and fails where this list disagrees. Ops that XNNPACK does not take in float
/// either (MIRROR_PAD, STRIDED_SLICE with strides, L2_NORMALIZATION...) are not listed: keeping
/// them float would gain nothing.
pub fn litert_delegates_int8(op: &Op) -> bool {
    !matches!(
        op,
        Op::Prelu
            | Op::Relu
            | Op::Relu6
            | Op::ReluN1To1
            | Op::HardSwish
            | Op::Maximum
            | Op::Minimum
            | Op::AveragePool2D(_)
            | Op::Softmax { .. }
            | Op::BatchMatMul(_)
    )
}
