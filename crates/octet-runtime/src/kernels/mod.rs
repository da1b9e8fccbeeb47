//! The kernels, one file per op family, float and integer flavours side by side.
//!
//! [`build`] is the one place that maps an op to its kernel builder; each builder inspects the
//! operator's dtypes and quantization, picks the flavour (float32, int8, uint8, int16x8, hybrid)
//! and returns an error naming the op when it has none.

pub mod activation;
pub mod binary;
pub mod broadcast;
pub mod common;
pub mod conv;
pub mod fully_connected;
mod gemm;
mod hybrid_input;
pub mod movement;
pub mod pooling;
pub mod quantize;
pub mod reduce;
pub mod resize;
pub mod shape;
pub mod softmax;
#[cfg(test)]
pub(crate) mod testing;

use octet_core::Op;

use crate::{Kernel, OpContext, RuntimeError};

/// Builds the kernel for one operator.
pub(crate) fn build(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    match &ctx.operator().op {
        Op::Conv2D(o) => conv::conv_2d(ctx, o),
        Op::DepthwiseConv2D(o) => conv::depthwise_conv_2d(ctx, o),
        Op::TransposeConv(o) => conv::transpose_conv(ctx, o),
        Op::FullyConnected(o) => fully_connected::fully_connected(ctx, o),
        Op::BatchMatMul(o) => fully_connected::batch_matmul(ctx, o),
        Op::Add(o) => binary::add(ctx, o),
        Op::Sub(o) => binary::sub(ctx, o),
        Op::Mul { activation } => binary::mul(ctx, *activation),
        Op::Maximum => binary::maximum(ctx),
        Op::Minimum => binary::minimum(ctx),
        Op::Prelu => binary::prelu(ctx),
        Op::Logistic => activation::logistic(ctx),
        Op::Tanh => activation::tanh(ctx),
        Op::Relu => activation::relu(ctx),
        Op::Relu6 => activation::relu6(ctx),
        Op::ReluN1To1 => activation::relu_n1_to_1(ctx),
        Op::LeakyRelu { alpha } => activation::leaky_relu(ctx, *alpha),
        Op::HardSwish => activation::hard_swish(ctx),
        Op::Elu => activation::elu(ctx),
        Op::Softmax { beta } => softmax::softmax(ctx, *beta),
        Op::LogSoftmax => softmax::log_softmax(ctx),
        Op::L2Normalization { activation } => softmax::l2_normalization(ctx, *activation),
        Op::AveragePool2D(o) => pooling::average_pool_2d(ctx, o),
        Op::MaxPool2D(o) => pooling::max_pool_2d(ctx, o),
        Op::Mean { keep_dims } => reduce::mean(ctx, *keep_dims),
        Op::Sum { keep_dims } => reduce::sum(ctx, *keep_dims),
        Op::ReduceMax { keep_dims } => reduce::reduce_max(ctx, *keep_dims),
        Op::ArgMax(o) => reduce::arg_max(ctx, o),
        Op::ResizeBilinear(o) => resize::resize_bilinear(ctx, o),
        Op::ResizeNearestNeighbor(o) => resize::resize_nearest_neighbor(ctx, o),
        Op::DepthToSpace { block_size } => resize::depth_to_space(ctx, *block_size),
        Op::SpaceToDepth { block_size } => resize::space_to_depth(ctx, *block_size),
        Op::Concatenation(o) => movement::concatenation(ctx, o),
        Op::Pad => movement::pad(ctx),
        Op::PadV2 => movement::pad_v2(ctx),
        Op::MirrorPad { mode } => movement::mirror_pad(ctx, *mode),
        Op::Reshape { .. } | Op::Squeeze { .. } | Op::ExpandDims => movement::reshape(ctx),
        Op::Transpose => movement::transpose(ctx),
        Op::StridedSlice(o) => movement::strided_slice(ctx, o),
        Op::Slice => movement::slice(ctx),
        Op::Split { num_splits } => movement::split(ctx, *num_splits),
        Op::SplitV { num_splits } => movement::split_v(ctx, *num_splits),
        Op::Pack(o) => movement::pack(ctx, o),
        Op::Unpack(o) => movement::unpack(ctx, o),
        Op::Gather(o) => movement::gather(ctx, o),
        Op::Quantize => quantize::quantize(ctx),
        Op::Dequantize => quantize::dequantize(ctx),
        Op::Cast(_) => quantize::cast(ctx),
        Op::Densify => quantize::densify(ctx),
        Op::Shape { out_type } => shape::shape(ctx, *out_type),
        Op::Other(_) => Err(ctx.unsupported("octet has no kernel for this op yet")),
        Op::Custom(_) => Err(ctx
            .unsupported("custom op: octet cannot run it (it needs the application's own kernel)")),
    }
}
