//! Pooling: AVERAGE_POOL_2D, MAX_POOL_2D.
//!
//! Float32, int8, uint8 and int16, as TFLite's reference kernels (`reference_ops::AveragePool` /
//! `MaxPool` for float32 and uint8, `reference_integer_ops` for int8 and int16). The quantized
//! kernels assume, as TFLite does, that input and output share scale and zero point: they work on
//! the raw integers and only clamp to the fused activation's range on the output.

use std::ops::Range;

use bytemuck::Pod;
use octet_core::{ActivationFunction, DType, Padding, Pool2DOptions};
use octet_linalg::frame::depthwise::DwPlan;
use octet_linalg::frame::gemm_f32::F32Clamp;
use octet_linalg::frame::pool::{Pool2d, PoolKind};
use octet_linalg::frame::window::Window2d;
use octet_linalg::{Isa, LinalgError};

use crate::kernels::binary::SPLIT_BYTES;
use crate::kernels::common::{activation_range_f32, activation_range_quantized, dtype_range};
use crate::{Kernel, OpContext, OpIo, RuntimeError};

/// AVERAGE_POOL_2D.
pub fn average_pool_2d(
    ctx: &OpContext<'_>,
    o: &Pool2DOptions,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    build(ctx, o, PoolKind::Average)
}

/// MAX_POOL_2D.
pub fn max_pool_2d(
    ctx: &OpContext<'_>,
    o: &Pool2DOptions,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    build(ctx, o, PoolKind::Max)
}

/// TFLite `ComputeOutSize` (dilation 1).
fn out_size(padding: Padding, image: usize, filter: usize, stride: usize) -> usize {
    match padding {
        Padding::Same => image.div_ceil(stride),
        Padding::Valid => (image + stride).saturating_sub(filter) / stride,
    }
}

/// TFLite `ComputePaddingWithOffset`: the padding before the first row/column (the odd extra
/// pixel, if any, goes after the last one).
fn padding_before(stride: usize, image: usize, filter: usize, out: usize) -> usize {
    let total = (out.saturating_sub(1) * stride + filter).saturating_sub(image);
    total / 2
}

/// The geometry of a 2-D pool over an NHWC tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PoolGeometry {
    batches: usize,
    in_h: usize,
    in_w: usize,
    depth: usize,
    out_h: usize,
    out_w: usize,
    stride_h: usize,
    stride_w: usize,
    filter_h: usize,
    filter_w: usize,
    pad_h: usize,
    pad_w: usize,
}

impl PoolGeometry {
    /// The input rows (or columns) covered by output position `out`: the filter window clamped
    /// to the image, as TFLite's `filter_*_start`/`filter_*_end`.
    fn window(
        out: usize,
        stride: usize,
        pad: usize,
        filter: usize,
        image: usize,
    ) -> (usize, usize) {
        let origin = (out * stride) as isize - pad as isize;
        let start = origin.max(0) as usize;
        let end = (origin + filter as isize).clamp(0, image as isize) as usize;
        (start, end.max(start))
    }

    fn rows(&self, out_y: usize) -> (usize, usize) {
        Self::window(out_y, self.stride_h, self.pad_h, self.filter_h, self.in_h)
    }

    fn cols(&self, out_x: usize) -> (usize, usize) {
        Self::window(out_x, self.stride_w, self.pad_w, self.filter_w, self.in_w)
    }
}

/// Element type specific parts of a flavour: how the window is reduced and clamped.
#[derive(Debug, Clone, Copy)]
enum Flavour {
    F32 { min: f32, max: f32 },
    I8 { min: i32, max: i32 },
    U8 { min: i32, max: i32 },
    I16 { min: i32, max: i32 },
}

fn build(
    ctx: &OpContext<'_>,
    o: &Pool2DOptions,
    kind: PoolKind,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    let input = ctx.input(0)?;
    let output = ctx.output(0)?;
    if input.rank() != 4 || output.rank() != 4 {
        return Err(ctx.invalid(format!(
            "input and output must be 4-D, got {:?} and {:?}",
            input.shape, output.shape
        )));
    }
    if input.dtype != output.dtype {
        return Err(ctx.unsupported_types());
    }
    let positive = |v: i32, what: &str| -> Result<usize, RuntimeError> {
        usize::try_from(v)
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| ctx.invalid(format!("{what} must be positive, got {v}")))
    };
    let stride_h = positive(o.stride_h, "stride_h")?;
    let stride_w = positive(o.stride_w, "stride_w")?;
    let filter_h = positive(o.filter_height, "filter_height")?;
    let filter_w = positive(o.filter_width, "filter_width")?;
    let (batches, in_h, in_w, depth) = (
        input.shape[0],
        input.shape[1],
        input.shape[2],
        input.shape[3],
    );
    let out_h = out_size(o.padding, in_h, filter_h, stride_h);
    let out_w = out_size(o.padding, in_w, filter_w, stride_w);
    if output.shape != [batches, out_h, out_w, depth] {
        return Err(ctx.invalid(format!(
            "output shape {:?} does not match the pooled shape {:?}",
            output.shape,
            [batches, out_h, out_w, depth]
        )));
    }
    let geometry = PoolGeometry {
        batches,
        in_h,
        in_w,
        depth,
        out_h,
        out_w,
        stride_h,
        stride_w,
        filter_h,
        filter_w,
        pad_h: padding_before(stride_h, in_h, filter_h, out_h),
        pad_w: padding_before(stride_w, in_w, filter_w, out_w),
    };
    // TFLite's average pools fail at run time on a window that lies entirely in the padding;
    // report it here instead.
    let empty_rows = (0..out_h).any(|y| {
        let (s, e) = geometry.rows(y);
        s == e
    });
    let empty_cols = (0..out_w).any(|x| {
        let (s, e) = geometry.cols(x);
        s == e
    });
    if (empty_rows || empty_cols) && batches * depth > 0 {
        return Err(ctx.invalid("a pooling window lies entirely in the padding"));
    }

    let quantized_range = |dtype: DType| -> Result<(i32, i32), RuntimeError> {
        match output.scale_zero_point() {
            Some((scale, zero_point)) => {
                activation_range_quantized(o.activation, dtype, scale, zero_point)
                    .ok_or_else(|| ctx.unsupported_types())
            }
            None if o.activation == ActivationFunction::None => {
                dtype_range(dtype).ok_or_else(|| ctx.unsupported_types())
            }
            None => Err(ctx.invalid(format!(
                "output ('{}') has a fused activation but no per-tensor quantization",
                output.name
            ))),
        }
    };
    let flavour = match input.dtype {
        DType::Float32 => {
            let (min, max) = activation_range_f32(o.activation);
            Flavour::F32 { min, max }
        }
        DType::Int8 => {
            let (min, max) = quantized_range(DType::Int8)?;
            Flavour::I8 { min, max }
        }
        DType::UInt8 => {
            let (min, max) = quantized_range(DType::UInt8)?;
            Flavour::U8 { min, max }
        }
        DType::Int16 => {
            let (min, max) = quantized_range(DType::Int16)?;
            Flavour::I16 { min, max }
        }
        _ => return Err(ctx.unsupported_types()),
    };
    if matches!(
        o.activation,
        ActivationFunction::Tanh | ActivationFunction::SignBit
    ) {
        return Err(ctx.unsupported(format!("fused activation {:?} on a pool", o.activation)));
    }
    if geometry.out_h * geometry.out_w * batches * depth == 0 {
        return Ok(Box::new(EmptyPool));
    }
    let pool = linalg_pool(&geometry, kind, ctx.isa())
        .map_err(|e| ctx.invalid(format!("pooling window: {e}")))?;
    Ok(Box::new(Pool2D { pool, flavour }))
}

/// A pool with an empty output: nothing to compute.
struct EmptyPool;

impl Kernel for EmptyPool {
    fn eval(&mut self, _io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        Ok(())
    }
}

/// A prepared AVERAGE_POOL_2D or MAX_POOL_2D on octet-linalg's pools, split by output rows over
/// the threads.
struct Pool2D {
    pool: Pool2d,
    flavour: Flavour,
}

/// The linalg pool of a geometry.
fn linalg_pool(g: &PoolGeometry, kind: PoolKind, isa: Isa) -> Result<Pool2d, LinalgError> {
    let window = Window2d {
        batches: g.batches,
        in_h: g.in_h,
        in_w: g.in_w,
        out_h: g.out_h,
        out_w: g.out_w,
        filter_h: g.filter_h,
        filter_w: g.filter_w,
        stride_h: g.stride_h,
        stride_w: g.stride_w,
        dilation_h: 1,
        dilation_w: 1,
        pad_top: g.pad_h,
        pad_left: g.pad_w,
    };
    Pool2d::with_isa(isa, DwPlan::new(&window, g.depth)?, kind)
}

impl Kernel for Pool2D {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let pool = &self.pool;
        match self.flavour {
            Flavour::F32 { min, max } => {
                let clamp = F32Clamp { min, max };
                run_rows::<f32>(io, pool, |input, rows, out| {
                    pool.run_f32(input, rows, out, clamp)
                })
            }
            Flavour::I8 { min, max } => run_rows::<i8>(io, pool, |input, rows, out| {
                pool.run_int(input, rows, out, min, max)
            }),
            Flavour::U8 { min, max } => run_rows::<u8>(io, pool, |input, rows, out| {
                pool.run_int(input, rows, out, min, max)
            }),
            Flavour::I16 { min, max } => run_rows::<i16>(io, pool, |input, rows, out| {
                pool.run_int(input, rows, out, min, max)
            }),
        }
    }
}

/// Runs `f(input, rows, out_rows)` over chunks of whole output rows, in parallel.
fn run_rows<T: Pod + Send + Sync>(
    io: &mut OpIo<'_>,
    pool: &Pool2d,
    f: impl Fn(&[T], Range<usize>, &mut [T]) -> Result<(), LinalgError> + Sync + Send,
) -> Result<(), RuntimeError> {
    let parts = io.parts::<T>(0)?;
    let input = parts.inputs.get::<T>(0)?;
    let plan = pool.plan();
    if input.len() != plan.input_len() || parts.output.len() != plan.output_len() {
        return Err(RuntimeError::eval(
            "pool: tensor sizes do not match the prepared shapes",
        ));
    }
    if parts.output.is_empty() {
        return Ok(());
    }
    let row_len = plan.row_len();
    // Chunks of at least SPLIT_BYTES of output, like the element-wise operators: smaller ones
    // cost more to hand to another thread than they save.
    let row_bytes = (row_len * size_of::<T>()).max(1);
    let per_chunk = parts
        .threads
        .chunk_units(plan.rows(), SPLIT_BYTES.div_ceil(row_bytes));
    parts
        .threads
        .for_each_chunk(parts.output, per_chunk * row_len, |i, chunk| {
            let start = i * per_chunk;
            f(input, start..start + chunk.len() / row_len, chunk)
        })
        .map_err(|e| RuntimeError::eval(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(
        in_hw: (usize, usize),
        filter: (usize, usize),
        stride: (usize, usize),
        padding: Padding,
    ) -> PoolGeometry {
        let out_h = out_size(padding, in_hw.0, filter.0, stride.0);
        let out_w = out_size(padding, in_hw.1, filter.1, stride.1);
        PoolGeometry {
            batches: 1,
            in_h: in_hw.0,
            in_w: in_hw.1,
            depth: 1,
            out_h,
            out_w,
            stride_h: stride.0,
            stride_w: stride.1,
            filter_h: filter.0,
            filter_w: filter.1,
            pad_h: padding_before(stride.0, in_hw.0, filter.0, out_h),
            pad_w: padding_before(stride.1, in_hw.1, filter.1, out_w),
        }
    }

    #[test]
    fn same_padding_puts_the_odd_pixel_after() {
        // 7 wide, filter 3, stride 2, SAME: out = ceil(7/2) = 4, total padding = 3*2+3-7 = 2,
        // 1 before. Windows: [-1,2) -> [0,2), [1,4), [3,6), [5,8) -> [5,7).
        let g = geometry((7, 7), (3, 3), (2, 2), Padding::Same);
        assert_eq!((g.out_w, g.pad_w), (4, 1));
        let windows: Vec<_> = (0..4).map(|x| g.cols(x)).collect();
        assert_eq!(windows, [(0, 2), (1, 4), (3, 6), (5, 7)]);
        // VALID: out = (7 + 2 - 3) / 2 = 3, no padding.
        let g = geometry((7, 7), (3, 3), (2, 2), Padding::Valid);
        assert_eq!((g.out_w, g.pad_w), (3, 0));
    }

    /// Runs a pool of `g` (depth 1) on `input` through the linalg kernel.
    fn pool_int(g: &PoolGeometry, kind: PoolKind, input: &[i8], min: i32, max: i32) -> Vec<i8> {
        let pool = linalg_pool(g, kind, Isa::detect()).unwrap();
        let mut out = vec![0i8; g.out_h * g.out_w];
        pool.run_int(input, 0..g.out_h, &mut out, min, max).unwrap();
        out
    }

    #[test]
    fn int8_average_pool_with_border_windows() {
        // 1x3x3x1 input, 2x2 filter, stride 2, SAME: out 2x2, total padding 1 -> 0 before.
        // Windows: rows [0,2),[2,3); cols [0,2),[2,3).
        let g = geometry((3, 3), (2, 2), (2, 2), Padding::Same);
        assert_eq!((g.out_h, g.out_w, g.pad_h), (2, 2, 0));
        let input: [i8; 9] = [1, 2, 3, -4, -5, -6, 7, 8, 9];
        // (1+2-4-5)/4 = -1.5 -> -2; (3-6)/2 = -1.5 -> -2; (7+8)/2 = 7.5 -> 8; 9.
        assert_eq!(
            pool_int(&g, PoolKind::Average, &input, -128, 127),
            [-2, -2, 8, 9]
        );
        // maxima 2, 3, 8, 9 clamped to 5.
        assert_eq!(pool_int(&g, PoolKind::Max, &input, -128, 5), [2, 3, 5, 5]);
    }

    #[test]
    fn float_pools_and_activation_clamp() {
        let g = geometry((2, 2), (2, 2), (1, 1), Padding::Valid);
        let input = [1.0f32, -2.0, 3.5, 0.5];
        let mut out = [0.0f32; 1];
        let average = linalg_pool(&g, PoolKind::Average, Isa::detect()).unwrap();
        average
            .run_f32(&input, 0..1, &mut out, F32Clamp::NONE)
            .unwrap();
        assert_eq!(out, [0.75]);
        let max = linalg_pool(&g, PoolKind::Max, Isa::detect()).unwrap();
        max.run_f32(&input, 0..1, &mut out, F32Clamp { min: 0.0, max: 3.0 })
            .unwrap();
        assert_eq!(out, [3.0]);
    }
}
