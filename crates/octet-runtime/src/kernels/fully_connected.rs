//! Matrix products: FULLY_CONNECTED, BATCH_MATMUL.

use octet_core::{BatchMatMulOptions, FullyConnectedOptions};

use crate::{Kernel, OpContext, RuntimeError};

/// FULLY_CONNECTED.
pub fn fully_connected(
    ctx: &OpContext<'_>,
    _o: &FullyConnectedOptions,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// BATCH_MATMUL.
pub fn batch_matmul(
    ctx: &OpContext<'_>,
    _o: &BatchMatMulOptions,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
