//! What an operator computes: the ops octet knows, with typed options, and a lossless carrier for
//! every other op.
//!
//! Option structs hold every field the TFLite schema defines for that op, so writing a model back
//! reproduces it. Where the schema's numbering matters (op codes, enum codes) the format crate
//! owns the mapping.

use crate::DType;

/// A fused activation applied to an op's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ActivationFunction {
    /// No activation.
    #[default]
    None,
    /// max(x, 0).
    Relu,
    /// clamp(x, -1, 1).
    ReluN1To1,
    /// clamp(x, 0, 6).
    Relu6,
    /// tanh(x).
    Tanh,
    /// Sign bit (legacy; no builtin kernel uses it).
    SignBit,
}

/// Spatial padding of convolutions and pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Padding {
    /// Pad so that output size = ceil(input / stride).
    #[default]
    Same,
    /// No padding.
    Valid,
}

/// MIRROR_PAD's reflection mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MirrorPadMode {
    /// Mirror without repeating the border element.
    #[default]
    Reflect,
    /// Mirror including the border element.
    Symmetric,
}

/// FULLY_CONNECTED weight layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WeightsFormat {
    /// Row-major `[out, in]`.
    #[default]
    Default,
    /// TFLite's shuffled 4x16 int8 layout (an optimized kernel's format).
    Shuffled4x16Int8,
}

/// CONV_2D options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Conv2DOptions {
    /// Spatial padding.
    pub padding: Padding,
    /// Horizontal stride.
    pub stride_w: i32,
    /// Vertical stride.
    pub stride_h: i32,
    /// Fused activation.
    pub activation: ActivationFunction,
    /// Horizontal dilation (1: none).
    pub dilation_w: i32,
    /// Vertical dilation (1: none).
    pub dilation_h: i32,
    /// Bias dtype for quantized models, `Float32` meaning "unset" as in the schema.
    pub quantized_bias_type: DType,
}

/// DEPTHWISE_CONV_2D options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DepthwiseConv2DOptions {
    /// Spatial padding.
    pub padding: Padding,
    /// Horizontal stride.
    pub stride_w: i32,
    /// Vertical stride.
    pub stride_h: i32,
    /// Output channels per input channel.
    pub depth_multiplier: i32,
    /// Fused activation.
    pub activation: ActivationFunction,
    /// Horizontal dilation (1: none).
    pub dilation_w: i32,
    /// Vertical dilation (1: none).
    pub dilation_h: i32,
}

/// FULLY_CONNECTED options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FullyConnectedOptions {
    /// Fused activation.
    pub activation: ActivationFunction,
    /// Weight layout.
    pub weights_format: WeightsFormat,
    /// Keep the input's leading dimensions instead of flattening to 2-D.
    pub keep_num_dims: bool,
    /// Dynamic-range kernels quantize inputs asymmetrically.
    pub asymmetric_quantize_inputs: bool,
    /// Bias dtype for quantized models, `Float32` meaning "unset".
    pub quantized_bias_type: DType,
}

/// TRANSPOSE_CONV options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TransposeConvOptions {
    /// Spatial padding.
    pub padding: Padding,
    /// Horizontal stride.
    pub stride_w: i32,
    /// Vertical stride.
    pub stride_h: i32,
    /// Fused activation.
    pub activation: ActivationFunction,
    /// Bias dtype for quantized models, `Float32` meaning "unset".
    pub quantized_bias_type: DType,
}

/// Pooling options (AVERAGE_POOL_2D, MAX_POOL_2D).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pool2DOptions {
    /// Spatial padding.
    pub padding: Padding,
    /// Horizontal stride.
    pub stride_w: i32,
    /// Vertical stride.
    pub stride_h: i32,
    /// Window width.
    pub filter_width: i32,
    /// Window height.
    pub filter_height: i32,
    /// Fused activation.
    pub activation: ActivationFunction,
}

/// ADD and SUB options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddOptions {
    /// Fused activation.
    pub activation: ActivationFunction,
    /// int16 kernels require power-of-two scales (schema default true).
    pub pot_scale_int16: bool,
}

impl Default for AddOptions {
    fn default() -> Self {
        AddOptions {
            activation: ActivationFunction::None,
            pot_scale_int16: true,
        }
    }
}

/// BATCH_MATMUL options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchMatMulOptions {
    /// Transpose (adjoint) the left operand.
    pub adj_x: bool,
    /// Transpose (adjoint) the right operand.
    pub adj_y: bool,
    /// Dynamic-range kernels quantize inputs asymmetrically.
    pub asymmetric_quantize_inputs: bool,
}

/// CONCATENATION options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConcatenationOptions {
    /// Axis to concatenate along (negative counts from the end).
    pub axis: i32,
    /// Fused activation.
    pub activation: ActivationFunction,
}

/// STRIDED_SLICE options (bit masks over dimensions).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StridedSliceOptions {
    /// Ignore `begin` for these dimensions.
    pub begin_mask: i32,
    /// Ignore `end` for these dimensions.
    pub end_mask: i32,
    /// Ellipsis position.
    pub ellipsis_mask: i32,
    /// Insert new axes here.
    pub new_axis_mask: i32,
    /// Remove these dimensions from the output.
    pub shrink_axis_mask: i32,
    /// `end` is an offset from `begin`.
    pub offset: bool,
}

/// PACK options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PackOptions {
    /// Number of inputs.
    pub values_count: i32,
    /// Axis of the new dimension.
    pub axis: i32,
}

/// UNPACK options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnpackOptions {
    /// Number of outputs.
    pub num: i32,
    /// Axis to unpack along.
    pub axis: i32,
}

/// GATHER options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GatherOptions {
    /// Axis to gather along.
    pub axis: i32,
    /// Number of leading batch dimensions.
    pub batch_dims: i32,
}

/// RESIZE_BILINEAR and RESIZE_NEAREST_NEIGHBOR options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResizeOptions {
    /// Align the corner pixels of input and output.
    pub align_corners: bool,
    /// Sample at pixel centres (TF2 behaviour).
    pub half_pixel_centers: bool,
}

/// ARG_MAX options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgMaxOptions {
    /// Index dtype (int32 or int64).
    pub output_type: DType,
}

/// CAST options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CastOptions {
    /// Input dtype.
    pub in_data_type: DType,
    /// Output dtype.
    pub out_data_type: DType,
}

/// A custom op: named by a string, configured by opaque bytes (usually a flexbuffer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomOp {
    /// The custom code, e.g. `Convolution2DTransposeBias`.
    pub code: String,
    /// The custom options, verbatim.
    pub options: Vec<u8>,
    /// The options' format code (0: flexbuffers).
    pub options_format: i8,
}

/// Options of an op octet does not model, in the file format's own encoding.
///
/// Only the format crate reads or writes these bytes; everyone else treats them as a sealed box
/// that makes the op survive a read and write unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpaqueOptions(pub Vec<u8>);

/// A builtin op octet does not model (or one whose stored options do not fit its typed form),
/// carried through losslessly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherOp {
    /// The builtin operator code.
    pub builtin_code: i32,
    /// The op's TFLite name (e.g. `WHILE`), as the format crate knows it.
    pub name: String,
    /// Its options, sealed.
    pub options: OpaqueOptions,
}

/// What an operator computes.
///
/// Variants without a payload have no options in the schema. `Reshape` and `Cast` carry an
/// `Option` because models commonly omit their options table and TFLite then reads the shape or
/// types from the tensors.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)] // the variant names are the TFLite op names
pub enum Op {
    Add(AddOptions),
    Sub(AddOptions),
    Mul {
        activation: ActivationFunction,
    },
    Conv2D(Conv2DOptions),
    DepthwiseConv2D(DepthwiseConv2DOptions),
    FullyConnected(FullyConnectedOptions),
    TransposeConv(TransposeConvOptions),
    BatchMatMul(BatchMatMulOptions),
    AveragePool2D(Pool2DOptions),
    MaxPool2D(Pool2DOptions),
    Mean {
        keep_dims: bool,
    },
    Sum {
        keep_dims: bool,
    },
    ReduceMax {
        keep_dims: bool,
    },
    Softmax {
        beta: f32,
    },
    LogSoftmax,
    Logistic,
    Tanh,
    Relu,
    Relu6,
    ReluN1To1,
    LeakyRelu {
        alpha: f32,
    },
    Prelu,
    HardSwish,
    Elu,
    Concatenation(ConcatenationOptions),
    Pad,
    PadV2,
    MirrorPad {
        mode: MirrorPadMode,
    },
    Reshape {
        new_shape: Option<Vec<i32>>,
    },
    Squeeze {
        squeeze_dims: Vec<i32>,
    },
    ExpandDims,
    Transpose,
    StridedSlice(StridedSliceOptions),
    Slice,
    Split {
        num_splits: i32,
    },
    SplitV {
        num_splits: i32,
    },
    Pack(PackOptions),
    Unpack(UnpackOptions),
    Gather(GatherOptions),
    ResizeBilinear(ResizeOptions),
    ResizeNearestNeighbor(ResizeOptions),
    DepthToSpace {
        block_size: i32,
    },
    SpaceToDepth {
        block_size: i32,
    },
    Quantize,
    Dequantize,
    Densify,
    Maximum,
    Minimum,
    ArgMax(ArgMaxOptions),
    Cast(Option<CastOptions>),
    L2Normalization {
        activation: ActivationFunction,
    },
    Shape {
        out_type: DType,
    },
    /// A builtin op octet does not model.
    Other(OtherOp),
    /// A custom op.
    Custom(CustomOp),
}

impl Op {
    /// The op's name as TFLite spells it (`CONV_2D`), or the custom code for custom ops.
    pub fn name(&self) -> std::borrow::Cow<'_, str> {
        use std::borrow::Cow::Borrowed;
        Borrowed(match self {
            Op::Add(_) => "ADD",
            Op::Sub(_) => "SUB",
            Op::Mul { .. } => "MUL",
            Op::Conv2D(_) => "CONV_2D",
            Op::DepthwiseConv2D(_) => "DEPTHWISE_CONV_2D",
            Op::FullyConnected(_) => "FULLY_CONNECTED",
            Op::TransposeConv(_) => "TRANSPOSE_CONV",
            Op::BatchMatMul(_) => "BATCH_MATMUL",
            Op::AveragePool2D(_) => "AVERAGE_POOL_2D",
            Op::MaxPool2D(_) => "MAX_POOL_2D",
            Op::Mean { .. } => "MEAN",
            Op::Sum { .. } => "SUM",
            Op::ReduceMax { .. } => "REDUCE_MAX",
            Op::Softmax { .. } => "SOFTMAX",
            Op::LogSoftmax => "LOG_SOFTMAX",
            Op::Logistic => "LOGISTIC",
            Op::Tanh => "TANH",
            Op::Relu => "RELU",
            Op::Relu6 => "RELU6",
            Op::ReluN1To1 => "RELU_N1_TO_1",
            Op::LeakyRelu { .. } => "LEAKY_RELU",
            Op::Prelu => "PRELU",
            Op::HardSwish => "HARD_SWISH",
            Op::Elu => "ELU",
            Op::Concatenation(_) => "CONCATENATION",
            Op::Pad => "PAD",
            Op::PadV2 => "PADV2",
            Op::MirrorPad { .. } => "MIRROR_PAD",
            Op::Reshape { .. } => "RESHAPE",
            Op::Squeeze { .. } => "SQUEEZE",
            Op::ExpandDims => "EXPAND_DIMS",
            Op::Transpose => "TRANSPOSE",
            Op::StridedSlice(_) => "STRIDED_SLICE",
            Op::Slice => "SLICE",
            Op::Split { .. } => "SPLIT",
            Op::SplitV { .. } => "SPLIT_V",
            Op::Pack(_) => "PACK",
            Op::Unpack(_) => "UNPACK",
            Op::Gather(_) => "GATHER",
            Op::ResizeBilinear(_) => "RESIZE_BILINEAR",
            Op::ResizeNearestNeighbor(_) => "RESIZE_NEAREST_NEIGHBOR",
            Op::DepthToSpace { .. } => "DEPTH_TO_SPACE",
            Op::SpaceToDepth { .. } => "SPACE_TO_DEPTH",
            Op::Quantize => "QUANTIZE",
            Op::Dequantize => "DEQUANTIZE",
            Op::Densify => "DENSIFY",
            Op::Maximum => "MAXIMUM",
            Op::Minimum => "MINIMUM",
            Op::ArgMax(_) => "ARG_MAX",
            Op::Cast(_) => "CAST",
            Op::L2Normalization { .. } => "L2_NORMALIZATION",
            Op::Shape { .. } => "SHAPE",
            Op::Other(other) => return Borrowed(other.name.as_str()),
            Op::Custom(custom) => return Borrowed(custom.code.as_str()),
        })
    }

    /// True for custom ops.
    pub fn is_custom(&self) -> bool {
        matches!(self, Op::Custom(_))
    }
}
