//! Ops that only move data: CONCATENATION, PAD, PADV2, MIRROR_PAD, RESHAPE (also SQUEEZE and
//! EXPAND_DIMS), TRANSPOSE, STRIDED_SLICE, SLICE, SPLIT, SPLIT_V, PACK, UNPACK, GATHER.
//!
//! Quantized tensors keep their input's parameters through these ops, so most kernels here work
//! on elements of any width without looking at the dtype's meaning.

use octet_core::{
    ConcatenationOptions, GatherOptions, MirrorPadMode, PackOptions, StridedSliceOptions,
    UnpackOptions,
};

use crate::{Kernel, OpContext, OpIo, RuntimeError};

/// RESHAPE, SQUEEZE and EXPAND_DIMS: the bytes stay as they are; only the static shape changes.
pub fn reshape(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    let input = ctx.input(0)?;
    let output = ctx.output(0)?;
    if input.dtype != output.dtype || input.num_elements() != output.num_elements() {
        return Err(ctx.invalid(format!(
            "cannot reshape {} {:?} into {} {:?}",
            input.dtype, input.shape, output.dtype, output.shape
        )));
    }
    Ok(Box::new(CopyBytes))
}

/// Copies input 0 to output 0 unchanged.
struct CopyBytes;

impl Kernel for CopyBytes {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (inputs, out) = io.split(0)?;
        out.copy_from_slice(inputs.bytes(0)?);
        Ok(())
    }
}

/// CONCATENATION.
pub fn concatenation(
    ctx: &OpContext<'_>,
    _o: &ConcatenationOptions,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// PAD.
pub fn pad(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// PADV2.
pub fn pad_v2(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// MIRROR_PAD.
pub fn mirror_pad(
    ctx: &OpContext<'_>,
    _mode: MirrorPadMode,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// TRANSPOSE.
pub fn transpose(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// STRIDED_SLICE.
pub fn strided_slice(
    ctx: &OpContext<'_>,
    _o: &StridedSliceOptions,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// SLICE.
pub fn slice(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// SPLIT.
pub fn split(ctx: &OpContext<'_>, _num_splits: i32) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// SPLIT_V.
pub fn split_v(ctx: &OpContext<'_>, _num_splits: i32) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// PACK.
pub fn pack(ctx: &OpContext<'_>, _o: &PackOptions) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// UNPACK.
pub fn unpack(ctx: &OpContext<'_>, _o: &UnpackOptions) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
/// GATHER.
pub fn gather(ctx: &OpContext<'_>, _o: &GatherOptions) -> Result<Box<dyn Kernel>, RuntimeError> {
    Err(ctx.unsupported("not implemented yet"))
}
