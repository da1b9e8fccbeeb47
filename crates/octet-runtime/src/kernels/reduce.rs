//! Reductions: MEAN, SUM, REDUCE_MAX, ARG_MAX.

use octet_core::ArgMaxOptions;

use crate::{Kernel, OpContext, RuntimeError};

/// MEAN.
pub fn mean(ctx: &OpContext<'_>, _keep_dims: bool) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// SUM.
pub fn sum(ctx: &OpContext<'_>, _keep_dims: bool) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// REDUCE_MAX.
pub fn reduce_max(ctx: &OpContext<'_>, _keep_dims: bool) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// ARG_MAX.
pub fn arg_max(ctx: &OpContext<'_>, _o: &ArgMaxOptions) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
