//! Normalizations: SOFTMAX, LOG_SOFTMAX, L2_NORMALIZATION.

use octet_core::ActivationFunction;

use crate::{Kernel, OpContext, RuntimeError};

/// SOFTMAX.
pub fn softmax(ctx: &OpContext<'_>, _beta: f32) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// LOG_SOFTMAX.
pub fn log_softmax(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// L2_NORMALIZATION.
pub fn l2_normalization(
    ctx: &OpContext<'_>,
    _activation: ActivationFunction,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
