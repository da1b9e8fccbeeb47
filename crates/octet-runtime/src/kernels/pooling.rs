//! Pooling: AVERAGE_POOL_2D, MAX_POOL_2D.
//!
//! Float32, int8, uint8 and int16, as TFLite's reference kernels (`reference_ops::AveragePool` /
//! `MaxPool` for float32 and uint8, `reference_integer_ops` for int8 and int16). The quantized
//! kernels assume, as TFLite does, that input and output share scale and zero point: they work on
//! the raw integers and only clamp to the fused activation's range on the output.

use octet_core::{ActivationFunction, DType, Padding, Pool2DOptions};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PoolKind {
    Average,
    Max,
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

    /// Offset of pixel (b, y, x) (channel 0) in the input.
    fn input_offset(&self, b: usize, y: usize, x: usize) -> usize {
        ((b * self.in_h + y) * self.in_w + x) * self.depth
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
    Ok(Box::new(Pool2D {
        geometry,
        kind,
        flavour,
        acc_f32: vec![0.0; depth],
        acc_i32: vec![0; depth],
    }))
}

/// A prepared AVERAGE_POOL_2D or MAX_POOL_2D.
struct Pool2D {
    geometry: PoolGeometry,
    kind: PoolKind,
    flavour: Flavour,
    /// One float accumulator per channel (float average and max).
    acc_f32: Vec<f32>,
    /// One integer accumulator per channel (quantized average and max).
    acc_i32: Vec<i32>,
}

impl Kernel for Pool2D {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let g = &self.geometry;
        match (self.flavour, self.kind) {
            (Flavour::F32 { min, max }, kind) => {
                let (inputs, out) = io.single::<f32>()?;
                let input = inputs.get::<f32>(0)?;
                check_len(g, input.len(), out.len())?;
                match kind {
                    PoolKind::Average => {
                        average_pool_f32(g, input, out, &mut self.acc_f32, min, max)
                    }
                    PoolKind::Max => max_pool_f32(g, input, out, &mut self.acc_f32, min, max),
                }
            }
            (Flavour::I8 { min, max }, kind) => {
                let (inputs, out) = io.single::<i8>()?;
                let input = inputs.get::<i8>(0)?;
                check_len(g, input.len(), out.len())?;
                pool_quantized(
                    g,
                    kind,
                    input,
                    out,
                    &mut self.acc_i32,
                    min,
                    max,
                    round_div_symmetric,
                );
            }
            (Flavour::U8 { min, max }, kind) => {
                let (inputs, out) = io.single::<u8>()?;
                let input = inputs.get::<u8>(0)?;
                check_len(g, input.len(), out.len())?;
                pool_quantized(
                    g,
                    kind,
                    input,
                    out,
                    &mut self.acc_i32,
                    min,
                    max,
                    round_div_uint8,
                );
            }
            (Flavour::I16 { min, max }, kind) => {
                let (inputs, out) = io.single::<i16>()?;
                let input = inputs.get::<i16>(0)?;
                check_len(g, input.len(), out.len())?;
                pool_quantized(
                    g,
                    kind,
                    input,
                    out,
                    &mut self.acc_i32,
                    min,
                    max,
                    round_div_symmetric,
                );
            }
        }
        Ok(())
    }
}

fn check_len(g: &PoolGeometry, input: usize, output: usize) -> Result<(), RuntimeError> {
    if input != g.batches * g.in_h * g.in_w * g.depth
        || output != g.batches * g.out_h * g.out_w * g.depth
    {
        return Err(RuntimeError::eval(
            "pool: tensor sizes do not match the prepared shapes",
        ));
    }
    Ok(())
}

/// TFLite's `ActivationFunctionWithMinMax`: `min(max(x, lo), hi)` with `std::min`/`std::max`
/// semantics (a NaN passes through).
fn clamp_f32(x: f32, lo: f32, hi: f32) -> f32 {
    let y = if x < lo { lo } else { x };
    if hi < y { hi } else { y }
}

/// Visits every output pixel: `f(window rows, window columns, input batch offset, output pixel)`.
fn for_each_output_pixel(
    g: &PoolGeometry,
    mut f: impl FnMut((usize, usize), (usize, usize), usize, usize),
) {
    let mut pixel = 0;
    for b in 0..g.batches {
        for out_y in 0..g.out_h {
            let rows = g.rows(out_y);
            for out_x in 0..g.out_w {
                f(rows, g.cols(out_x), b, pixel);
                pixel += 1;
            }
        }
    }
}

/// Float average: the window's sum in filter order (rows, then columns) divided by the number of
/// input pixels it covers.
fn average_pool_f32(
    g: &PoolGeometry,
    input: &[f32],
    out: &mut [f32],
    acc: &mut [f32],
    min: f32,
    max: f32,
) {
    let depth = g.depth;
    for_each_output_pixel(g, |(y0, y1), (x0, x1), b, pixel| {
        acc.fill(0.0);
        let mut count = 0.0f32;
        for y in y0..y1 {
            for x in x0..x1 {
                let start = g.input_offset(b, y, x);
                for (a, &v) in acc.iter_mut().zip(&input[start..start + depth]) {
                    *a += v;
                }
                count += 1.0;
            }
        }
        let dst = &mut out[pixel * depth..(pixel + 1) * depth];
        for (o, &a) in dst.iter_mut().zip(acc.iter()) {
            *o = clamp_f32(a / count, min, max);
        }
    });
}

/// Float max, starting from the lowest finite float (`std::numeric_limits<float>::lowest()`).
fn max_pool_f32(
    g: &PoolGeometry,
    input: &[f32],
    out: &mut [f32],
    acc: &mut [f32],
    min: f32,
    max: f32,
) {
    let depth = g.depth;
    for_each_output_pixel(g, |(y0, y1), (x0, x1), b, pixel| {
        acc.fill(f32::MIN);
        for y in y0..y1 {
            for x in x0..x1 {
                let start = g.input_offset(b, y, x);
                for (a, &v) in acc.iter_mut().zip(&input[start..start + depth]) {
                    // std::max(a, v) keeps `a` unless a < v.
                    if *a < v {
                        *a = v;
                    }
                }
            }
        }
        let dst = &mut out[pixel * depth..(pixel + 1) * depth];
        for (o, &a) in dst.iter_mut().zip(acc.iter()) {
            *o = clamp_f32(a, min, max);
        }
    });
}

/// A quantized element: int8, uint8 or int16.
trait QuantElem: Copy {
    fn to_i32(self) -> i32;
    /// The value of a clamped `i32` (already within range).
    fn from_i32(v: i32) -> Self;
    /// TFLite's start value of a max pool: the type's lowest value.
    const LOWEST: i32;
}

impl QuantElem for i8 {
    fn to_i32(self) -> i32 {
        i32::from(self)
    }
    fn from_i32(v: i32) -> Self {
        v as i8
    }
    const LOWEST: i32 = i8::MIN as i32;
}

impl QuantElem for u8 {
    fn to_i32(self) -> i32 {
        i32::from(self)
    }
    fn from_i32(v: i32) -> Self {
        v as u8
    }
    const LOWEST: i32 = 0;
}

impl QuantElem for i16 {
    fn to_i32(self) -> i32 {
        i32::from(self)
    }
    fn from_i32(v: i32) -> Self {
        v as i16
    }
    const LOWEST: i32 = i16::MIN as i32;
}

/// `reference_integer_ops::AveragePool` (int8, int16): round half away from zero,
/// `(acc ± count/2) / count` with C++'s truncating division.
fn round_div_symmetric(acc: i32, count: i32) -> i32 {
    if acc > 0 {
        (acc + count / 2) / count
    } else {
        (acc - count / 2) / count
    }
}

/// `reference_ops::AveragePool` (uint8): `(acc + count/2) / count` (acc is never negative).
fn round_div_uint8(acc: i32, count: i32) -> i32 {
    (acc + count / 2) / count
}

/// Window sums (average) or maxima (max) per channel, in `acc`.
fn accumulate_window<T: QuantElem>(
    g: &PoolGeometry,
    kind: PoolKind,
    input: &[T],
    acc: &mut [i32],
    b: usize,
    (y0, y1): (usize, usize),
    (x0, x1): (usize, usize),
) {
    let depth = g.depth;
    acc.fill(match kind {
        PoolKind::Average => 0,
        PoolKind::Max => T::LOWEST,
    });
    for y in y0..y1 {
        for x in x0..x1 {
            let start = g.input_offset(b, y, x);
            let src = &input[start..start + depth];
            match kind {
                PoolKind::Average => {
                    for (a, &v) in acc.iter_mut().zip(src) {
                        *a = a.wrapping_add(v.to_i32());
                    }
                }
                PoolKind::Max => {
                    for (a, &v) in acc.iter_mut().zip(src) {
                        *a = (*a).max(v.to_i32());
                    }
                }
            }
        }
    }
}

/// Quantized pools: accumulate each window, then divide (average) and clamp to the activation
/// range.
#[allow(clippy::too_many_arguments)]
fn pool_quantized<T: QuantElem>(
    g: &PoolGeometry,
    kind: PoolKind,
    input: &[T],
    out: &mut [T],
    acc: &mut [i32],
    min: i32,
    max: i32,
    round_div: fn(i32, i32) -> i32,
) {
    let depth = g.depth;
    for_each_output_pixel(g, |rows, cols, b, pixel| {
        accumulate_window(g, kind, input, acc, b, rows, cols);
        let count = ((rows.1 - rows.0) * (cols.1 - cols.0)) as i32;
        let dst = &mut out[pixel * depth..(pixel + 1) * depth];
        for (o, &a) in dst.iter_mut().zip(acc.iter()) {
            let v = match kind {
                PoolKind::Average => round_div(a, count),
                PoolKind::Max => a,
            };
            *o = T::from_i32(v.clamp(min, max));
        }
    });
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

    #[test]
    fn quantized_average_rounds_half_away_from_zero() {
        // 5/2 = 2.5 -> 3 and -5/2 -> -3 (int8/int16); uint8 rounds half up.
        assert_eq!(round_div_symmetric(5, 2), 3);
        assert_eq!(round_div_symmetric(-5, 2), -3);
        assert_eq!(round_div_symmetric(-4, 3), -1); // -1.33 -> -1
        assert_eq!(round_div_symmetric(0, 4), 0);
        assert_eq!(round_div_uint8(5, 2), 3);
        assert_eq!(round_div_uint8(7, 4), 2); // 1.75 -> 2
    }

    #[test]
    fn int8_average_pool_with_border_windows() {
        // 1x3x3x1 input, 2x2 filter, stride 2, SAME: out 2x2, total padding 1 -> 0 before.
        // Windows: rows [0,2),[2,3); cols [0,2),[2,3).
        let g = geometry((3, 3), (2, 2), (2, 2), Padding::Same);
        assert_eq!((g.out_h, g.out_w, g.pad_h), (2, 2, 0));
        let input: [i8; 9] = [1, 2, 3, -4, -5, -6, 7, 8, 9];
        let mut out = [0i8; 4];
        let mut acc = [0i32; 1];
        pool_quantized(
            &g,
            PoolKind::Average,
            &input,
            &mut out,
            &mut acc,
            -128,
            127,
            round_div_symmetric,
        );
        // (1+2-4-5)/4 = -1.5 -> -2; (3-6)/2 = -1.5 -> -2; (7+8)/2 = 7.5 -> 8; 9.
        assert_eq!(out, [-2, -2, 8, 9]);
        pool_quantized(
            &g,
            PoolKind::Max,
            &input,
            &mut out,
            &mut acc,
            -128,
            5,
            round_div_symmetric,
        );
        // maxima 2, 3, 8, 9 clamped to 5.
        assert_eq!(out, [2, 3, 5, 5]);
    }

    #[test]
    fn float_pools_and_activation_clamp() {
        let g = geometry((2, 2), (2, 2), (1, 1), Padding::Valid);
        let input = [1.0f32, -2.0, 3.5, 0.5];
        let mut out = [0.0f32; 1];
        let mut acc = [0.0f32; 1];
        average_pool_f32(&g, &input, &mut out, &mut acc, f32::MIN, f32::MAX);
        assert_eq!(out, [0.75]);
        max_pool_f32(&g, &input, &mut out, &mut acc, 0.0, 3.0);
        assert_eq!(out, [3.0]);
        assert!(clamp_f32(f32::NAN, 0.0, 6.0).is_nan());
    }
}
