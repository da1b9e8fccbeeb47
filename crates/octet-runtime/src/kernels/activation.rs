//! Element-wise activations: LOGISTIC, TANH, RELU, RELU6, RELU_N1_TO_1, LEAKY_RELU, HARD_SWISH, ELU.

use crate::{Kernel, OpContext, RuntimeError};

/// LOGISTIC.
pub fn logistic(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// TANH.
pub fn tanh(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// RELU.
pub fn relu(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// RELU6.
pub fn relu6(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// RELU_N1_TO_1.
pub fn relu_n1_to_1(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// LEAKY_RELU.
pub fn leaky_relu(ctx: &OpContext<'_>, _alpha: f32) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// HARD_SWISH.
pub fn hard_swish(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// ELU.
pub fn elu(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
