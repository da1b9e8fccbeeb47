//! Element-wise binary ops with broadcasting: ADD, SUB, MUL, MAXIMUM, MINIMUM, PRELU.

use octet_core::{ActivationFunction, AddOptions};

use crate::{Kernel, OpContext, RuntimeError};

/// ADD.
pub fn add(ctx: &OpContext<'_>, _options: &AddOptions) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// SUB.
pub fn sub(ctx: &OpContext<'_>, _options: &AddOptions) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// MUL.
pub fn mul(
    ctx: &OpContext<'_>,
    _activation: ActivationFunction,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// MAXIMUM.
pub fn maximum(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// MINIMUM.
pub fn minimum(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// PRELU.
pub fn prelu(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
