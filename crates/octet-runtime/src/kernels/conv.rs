//! Convolutions: CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV.

use octet_core::{Conv2DOptions, DepthwiseConv2DOptions, TransposeConvOptions};

use crate::{Kernel, OpContext, RuntimeError};

/// CONV_2D.
pub fn conv_2d(ctx: &OpContext<'_>, _o: &Conv2DOptions) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// DEPTHWISE_CONV_2D.
pub fn depthwise_conv_2d(
    ctx: &OpContext<'_>,
    _o: &DepthwiseConv2DOptions,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// TRANSPOSE_CONV.
pub fn transpose_conv(
    ctx: &OpContext<'_>,
    _o: &TransposeConvOptions,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
