//! Pooling: AVERAGE_POOL_2D, MAX_POOL_2D.

use octet_core::Pool2DOptions;

use crate::{Kernel, OpContext, RuntimeError};

/// AVERAGE_POOL_2D.
pub fn average_pool_2d(
    ctx: &OpContext<'_>,
    _o: &Pool2DOptions,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// MAX_POOL_2D.
pub fn max_pool_2d(
    ctx: &OpContext<'_>,
    _o: &Pool2DOptions,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
