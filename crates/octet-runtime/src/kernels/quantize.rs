//! Type changes: QUANTIZE (including requantize), DEQUANTIZE, CAST, DENSIFY.

use crate::{Kernel, OpContext, RuntimeError};

/// QUANTIZE.
pub fn quantize(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// DEQUANTIZE.
pub fn dequantize(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// CAST.
pub fn cast(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// DENSIFY.
pub fn densify(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
