//! Op versions for the integer flavours, as TFLite's `op_version.cc` assigns them (checked
//! against what TensorFlow's converter writes for the fixtures in `models/ops`).

use octet_core::{DType, Op, Operator};

/// The version `operator` needs once quantized with activations of `act` (int8, uint8 or
/// int16): the larger of its float version (which records features such as half-pixel centers)
/// and the version that introduced the integer kernel.
pub fn quantized_version(operator: &Operator, act: DType, has_bias: bool) -> i32 {
    // (int8, uint8, int16) versions.
    let (v8, vu8, v16) = match &operator.op {
        Op::Conv2D(_) => (3, 1, 4),
        Op::DepthwiseConv2D(_) => (3, 1, 5),
        Op::FullyConnected(o) if o.keep_num_dims => (5, 5, 5),
        Op::FullyConnected(_) => (4, 1, 7),
        Op::TransposeConv(_) if has_bias => (3, 3, 3),
        Op::TransposeConv(_) => (2, 1, 2),
        Op::Add(_) | Op::Sub(_) => (2, 1, 3),
        Op::Mul { .. } => (2, 1, 4),
        Op::Relu | Op::Unpack(_) => (2, 2, 3),
        Op::LeakyRelu { .. } | Op::ReluN1To1 | Op::HardSwish | Op::Prelu => (1, 1, 2),
        Op::Logistic | Op::Tanh | Op::Softmax { .. } => (2, 1, 3),
        Op::Reshape { .. } | Op::Squeeze { .. } | Op::ExpandDims => (1, 1, 1),
        // op_version.cc says 2 for int8, but LiteRT's BUILTIN_REF resolver registers only
        // version 1 (whose kernel runs int8 all the same), and the default resolver accepts 1.
        Op::DepthToSpace { .. } => (1, 1, 1),
        Op::Quantize => (1, 1, 2),
        Op::Dequantize => (2, 1, 3),
        Op::Concatenation(_) | Op::Pad | Op::PadV2 | Op::MirrorPad { .. } => (2, 1, 3),
        Op::ResizeBilinear(o) | Op::ResizeNearestNeighbor(o) if o.half_pixel_centers => (3, 3, 3),
        Op::ResizeBilinear(_) | Op::ResizeNearestNeighbor(_) => (2, 1, 2),
        Op::BatchMatMul(_)
        | Op::AveragePool2D(_)
        | Op::MaxPool2D(_)
        | Op::Mean { .. }
        | Op::Sum { .. }
        | Op::ReduceMax { .. }
        | Op::LogSoftmax
        | Op::Relu6
        | Op::Transpose
        | Op::StridedSlice(_)
        | Op::Slice
        | Op::Split { .. }
        | Op::SplitV { .. }
        | Op::Pack(_)
        | Op::Gather(_)
        | Op::SpaceToDepth { .. }
        | Op::Maximum
        | Op::Minimum
        | Op::ArgMax(_)
        | Op::L2Normalization { .. } => (2, 1, 2),
        _ => (1, 1, 1),
    };
    // TensorFlow's 16x8 quantizer writes the int8 versions for most ops (see the int16x8
    // fixtures in models/ops), which LiteRT accepts; `v16` is op_version.cc's int16 version.
    let v = match (act, &operator.op) {
        // Where TensorFlow's 16x8 output differs from its int8 versions.
        (DType::Int16, Op::LeakyRelu { .. }) => v16,
        (DType::Int16, Op::TransposeConv(_)) => 3,
        (DType::Int16, Op::Unpack(_)) => 1,
        (DType::Int8 | DType::Int16, _) => v8,
        _ => vu8,
    };
    operator.version.max(v)
}
