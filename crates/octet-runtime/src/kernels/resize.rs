//! Spatial resampling: RESIZE_BILINEAR, RESIZE_NEAREST_NEIGHBOR, DEPTH_TO_SPACE, SPACE_TO_DEPTH.

use octet_core::ResizeOptions;

use crate::{Kernel, OpContext, RuntimeError};

/// RESIZE_BILINEAR.
pub fn resize_bilinear(
    ctx: &OpContext<'_>,
    _o: &ResizeOptions,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// RESIZE_NEAREST_NEIGHBOR.
pub fn resize_nearest_neighbor(
    ctx: &OpContext<'_>,
    _o: &ResizeOptions,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// DEPTH_TO_SPACE.
pub fn depth_to_space(
    ctx: &OpContext<'_>,
    _block_size: i32,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// SPACE_TO_DEPTH.
pub fn space_to_depth(
    ctx: &OpContext<'_>,
    _block_size: i32,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
