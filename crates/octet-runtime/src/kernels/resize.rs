//! Spatial resampling: RESIZE_BILINEAR, RESIZE_NEAREST_NEIGHBOR, DEPTH_TO_SPACE, SPACE_TO_DEPTH.
//!
//! All work on NHWC tensors, as TFLite's reference kernels:
//!
//! - RESIZE_BILINEAR: float32 and uint8 use `reference_ops::ResizeBilinear` (sample positions and
//!   weights in float; uint8 adds 0.5 and truncates), int8, int16 and uint16 use
//!   `reference_ops::ResizeBilinearInteger` (positions and weights in 1/1024ths, a 2^20-scaled
//!   `int64` blend rounded half away from zero). Quantized tensors keep their input's parameters,
//!   so raw values are interpolated.
//! - RESIZE_NEAREST_NEIGHBOR, DEPTH_TO_SPACE, SPACE_TO_DEPTH only move elements, so they run on
//!   any fixed-size dtype.

use octet_core::{DType, ResizeOptions};

use octet_linalg::frame::elementwise::{Bilinear, BilinearColumn, BilinearRow};
use octet_linalg::{LinalgError, Threads};

use super::binary::{SPLIT_BYTES, linalg_error};
use crate::{Kernel, OpContext, OpIo, RuntimeError, TensorInfo};

/// RESIZE_BILINEAR.
pub fn resize_bilinear(
    ctx: &OpContext<'_>,
    o: &ResizeOptions,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    let (input, _, (out_h, out_w)) = prepare_resize(ctx)?;
    if o.align_corners && o.half_pixel_centers {
        return Err(ctx.invalid("if half_pixel_centers is true, align_corners must be false"));
    }
    let (batches, in_h, in_w, depth) = nhwc(input);
    let shape = ResizeShape {
        batches,
        in_h,
        in_w,
        depth,
        out_h,
        out_w,
    };
    let to_i32 = |v: usize| i32::try_from(v).map_err(|_| ctx.invalid("dimension too large"));
    let (in_h32, in_w32, out_h32, out_w32) =
        (to_i32(in_h)?, to_i32(in_w)?, to_i32(out_h)?, to_i32(out_w)?);
    let kernel: Box<dyn Kernel> = match input.dtype {
        DType::Float32 | DType::UInt8 => {
            let rows = float_samples(in_h32, out_h32, o);
            let cols = float_samples(in_w32, out_w32, o);
            let flavour = if input.dtype == DType::Float32 {
                FloatFlavour::F32
            } else {
                FloatFlavour::U8
            };
            Box::new(BilinearFloat {
                shape,
                linalg_cols: linalg_columns(&cols, |f| f),
                rows,
                cols,
                flavour,
                kernels: Bilinear::new(ctx.isa()),
            })
        }
        DType::Int8 | DType::Int16 | DType::UInt16 => {
            if (1i64 << 10) * i64::from(in_h32.max(in_w32)) > i64::from(i32::MAX / 4) {
                return Err(ctx.unsupported("input too large for the 10-bit fixed-point resize"));
            }
            let rows = integer_samples(in_h32, out_h32, o);
            let cols = integer_samples(in_w32, out_w32, o);
            Box::new(BilinearInteger {
                shape,
                // The 10-bit fractions lie in [-512, 1024] (see `integer_samples`).
                linalg_cols: linalg_columns(&cols, |f| f as i32),
                rows,
                cols,
                dtype: input.dtype,
                kernels: Bilinear::new(ctx.isa()),
            })
        }
        _ => return Err(ctx.unsupported_types()),
    };
    Ok(kernel)
}

/// RESIZE_NEAREST_NEIGHBOR.
pub fn resize_nearest_neighbor(
    ctx: &OpContext<'_>,
    o: &ResizeOptions,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    let (input, _, (out_h, out_w)) = prepare_resize(ctx)?;
    let elem = element_size(ctx, input)?;
    let (batches, in_h, in_w, depth) = nhwc(input);
    let to_i32 = |v: usize| i32::try_from(v).map_err(|_| ctx.invalid("dimension too large"));
    let (in_h32, in_w32, out_h32, out_w32) =
        (to_i32(in_h)?, to_i32(in_w)?, to_i32(out_h)?, to_i32(out_w)?);
    let rows = (0..out_h32)
        .map(|y| nearest_neighbor(y, in_h32, out_h32, o) as usize)
        .collect();
    let cols = (0..out_w32)
        .map(|x| nearest_neighbor(x, in_w32, out_w32, o) as usize)
        .collect();
    Ok(Box::new(Nearest {
        shape: ResizeShape {
            batches,
            in_h,
            in_w,
            depth,
            out_h,
            out_w,
        },
        elem,
        rows,
        cols,
    }))
}

/// DEPTH_TO_SPACE.
pub fn depth_to_space(
    ctx: &OpContext<'_>,
    block_size: i32,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    let (input, output, elem, bs) = prepare_block(ctx, block_size)?;
    let (batches, in_h, in_w, in_d) = nhwc(input);
    if in_d % (bs * bs) != 0 {
        return Err(ctx.invalid(format!(
            "input depth {in_d} is not a multiple of block_size^2 = {}",
            bs * bs
        )));
    }
    let expected = [batches, in_h * bs, in_w * bs, in_d / (bs * bs)];
    if output.shape != expected {
        return Err(ctx.invalid(format!(
            "output shape {:?}, expected {expected:?}",
            output.shape
        )));
    }
    Ok(Box::new(BlockMove {
        direction: BlockDirection::DepthToSpace,
        batches,
        // The space side is the output.
        space_h: in_h * bs,
        space_w: in_w * bs,
        space_d: in_d / (bs * bs),
        block: bs,
        elem,
    }))
}

/// SPACE_TO_DEPTH.
pub fn space_to_depth(
    ctx: &OpContext<'_>,
    block_size: i32,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    let (input, output, elem, bs) = prepare_block(ctx, block_size)?;
    let (batches, in_h, in_w, in_d) = nhwc(input);
    if in_h % bs != 0 || in_w % bs != 0 {
        return Err(ctx.invalid(format!(
            "input height {in_h} and width {in_w} must be multiples of block_size {bs}"
        )));
    }
    let expected = [batches, in_h / bs, in_w / bs, in_d * bs * bs];
    if output.shape != expected {
        return Err(ctx.invalid(format!(
            "output shape {:?}, expected {expected:?}",
            output.shape
        )));
    }
    Ok(Box::new(BlockMove {
        direction: BlockDirection::SpaceToDepth,
        batches,
        space_h: in_h,
        space_w: in_w,
        space_d: in_d,
        block: bs,
        elem,
    }))
}

// ------------------------------------------------------------------------------------------------
// Shared preparation.

fn nhwc(t: &TensorInfo) -> (usize, usize, usize, usize) {
    (t.shape[0], t.shape[1], t.shape[2], t.shape[3])
}

/// Bytes per element of a dtype the data-movement kernels can copy.
fn element_size(ctx: &OpContext<'_>, t: &TensorInfo) -> Result<usize, RuntimeError> {
    match t.dtype.bit_width() {
        Some(bits) if bits >= 8 && bits % 8 == 0 => Ok(bits as usize / 8),
        _ => Err(ctx.unsupported_types()),
    }
}

/// Checks a resize's tensors and returns the output size (height, width): from the constant
/// `size` input, or the output's static shape when `size` is computed at run time.
fn prepare_resize<'a>(
    ctx: &OpContext<'a>,
) -> Result<(&'a TensorInfo, &'a TensorInfo, (usize, usize)), RuntimeError> {
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
    let size = if ctx.is_constant(1) {
        let size = ctx.constant_ints(1)?;
        let [h, w] = size.as_slice() else {
            return Err(ctx.invalid(format!("size must hold 2 values, got {}", size.len())));
        };
        match (usize::try_from(*h), usize::try_from(*w)) {
            (Ok(h), Ok(w)) if h > 0 && w > 0 => (h, w),
            _ => return Err(ctx.invalid(format!("size [{h}, {w}] must be positive"))),
        }
    } else {
        ctx.input(1)?;
        (output.shape[1], output.shape[2])
    };
    let expected = [input.shape[0], size.0, size.1, input.shape[3]];
    if output.shape != expected || size.0 == 0 || size.1 == 0 {
        return Err(ctx.invalid(format!(
            "output shape {:?}, expected {expected:?}",
            output.shape
        )));
    }
    Ok((input, output, size))
}

fn prepare_block<'a>(
    ctx: &OpContext<'a>,
    block_size: i32,
) -> Result<(&'a TensorInfo, &'a TensorInfo, usize, usize), RuntimeError> {
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
    let bs = usize::try_from(block_size)
        .ok()
        .filter(|&b| b > 0)
        .ok_or_else(|| ctx.invalid(format!("block_size must be positive, got {block_size}")))?;
    Ok((input, output, element_size(ctx, input)?, bs))
}

/// Batch, input and output spatial sizes, and depth of a resize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ResizeShape {
    batches: usize,
    in_h: usize,
    in_w: usize,
    depth: usize,
    out_h: usize,
    out_w: usize,
}

impl ResizeShape {
    fn check(&self, input: usize, output: usize) -> Result<(), RuntimeError> {
        if input != self.batches * self.in_h * self.in_w * self.depth
            || output != self.batches * self.out_h * self.out_w * self.depth
        {
            return Err(RuntimeError::eval(
                "resize: tensor sizes do not match the prepared shapes",
            ));
        }
        Ok(())
    }

    fn input_offset(&self, b: usize, y: usize, x: usize) -> usize {
        ((b * self.in_h + y) * self.in_w + x) * self.depth
    }
}

// ------------------------------------------------------------------------------------------------
// RESIZE_BILINEAR, float sampling (float32, uint8).

/// One output row or column of a bilinear resize: the two neighbouring input indices and the
/// fraction of the way from `lower` to `upper`, as a float (`input_pos - lower`; TFLite
/// recomputes `input_y - y0` in every product, the same float each time) or in 10-bit fixed point.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample<F> {
    lower: usize,
    upper: usize,
    frac: F,
}

/// A row or column of the float resize.
type FloatSample = Sample<f32>;

/// A row or column of the integer resize (fraction in units of 2^-10).
type IntegerSample = Sample<i64>;

/// Computes every output pixel of a bilinear resize: `pixel` gets the four input neighbours'
/// channels (top-left, bottom-left, top-right, bottom-right), the row and column samples and
/// the output pixel's channels. Output rows are split over the threads when the output is
/// large. The samples' indices were computed within the input at prepare time and
/// [`ResizeShape::check`] matched the buffers to the shape, so the slicing stays in bounds.
fn bilinear<F: Copy + Sync, T: Copy + Send + Sync>(
    threads: &Threads,
    s: &ResizeShape,
    rows: &[Sample<F>],
    cols: &[Sample<F>],
    input: &[T],
    out: &mut [T],
    pixel: impl Fn([&[T]; 4], &Sample<F>, &Sample<F>, &mut [T]) + Sync + Send,
) -> Result<(), RuntimeError> {
    let depth = s.depth;
    let row_len = s.out_w * depth;
    if row_len == 0 || depth == 0 {
        return Ok(());
    }
    let do_rows = |first_row: usize, chunk: &mut [T]| {
        for (r, out_row) in chunk.chunks_exact_mut(row_len).enumerate() {
            let row = first_row + r;
            let (b, ry) = (row / s.out_h, &rows[row % s.out_h]);
            for (cx, dst) in cols.iter().zip(out_row.chunks_exact_mut(depth)) {
                let at = |y: usize, x: usize| {
                    let p = s.input_offset(b, y, x);
                    &input[p..p + depth]
                };
                let corners = [
                    at(ry.lower, cx.lower),
                    at(ry.upper, cx.lower),
                    at(ry.lower, cx.upper),
                    at(ry.upper, cx.upper),
                ];
                pixel(corners, ry, cx, dst);
            }
        }
    };
    let total_rows = s.batches * s.out_h;
    if threads.count() <= 1 || size_of_val(out) < SPLIT_BYTES {
        do_rows(0, out);
        return Ok(());
    }
    let chunk_rows = threads.chunk_units(total_rows, 1);
    threads
        .for_each_chunk(out, chunk_rows * row_len, |i, chunk| {
            do_rows(i * chunk_rows, chunk);
            Ok(())
        })
        .map_err(linalg_error)
}

/// The columns of a resize in linalg's form.
fn linalg_columns<F: Copy, G>(cols: &[Sample<F>], frac: impl Fn(F) -> G) -> Vec<BilinearColumn<G>> {
    cols.iter()
        .map(|c| BilinearColumn {
            lower: c.lower,
            upper: c.upper,
            frac: frac(c.frac),
        })
        .collect()
}

/// Computes every output row of a bilinear resize with `row(top, bottom, row sample, out)`
/// (a linalg row kernel), `top` and `bottom` being the input rows at the sample's lower and
/// upper index. Rows are split over the threads when the output is large.
fn bilinear_rows<F: Sync, T: Copy + Send + Sync>(
    threads: &Threads,
    s: &ResizeShape,
    rows: &[Sample<F>],
    input: &[T],
    out: &mut [T],
    row: impl Fn(&[T], &[T], &Sample<F>, &mut [T]) -> Result<(), LinalgError> + Sync + Send,
) -> Result<(), RuntimeError> {
    let row_len = s.out_w * s.depth;
    let in_row = s.in_w * s.depth;
    if row_len == 0 || in_row == 0 {
        return Ok(());
    }
    let missing = || LinalgError::Mismatch("input row out of range".into());
    let do_rows = |first_row: usize, chunk: &mut [T]| -> Result<(), LinalgError> {
        for (r, out_row) in chunk.chunks_exact_mut(row_len).enumerate() {
            let index = first_row + r;
            let (b, ry) = (
                index / s.out_h,
                rows.get(index % s.out_h).ok_or_else(missing)?,
            );
            let at = |y: usize| {
                let start = (b * s.in_h + y) * in_row;
                input.get(start..start + in_row).ok_or_else(missing)
            };
            row(at(ry.lower)?, at(ry.upper)?, ry, out_row)?;
        }
        Ok(())
    };
    let total_rows = s.batches * s.out_h;
    if threads.count() <= 1 || size_of_val(out) < SPLIT_BYTES {
        return do_rows(0, out).map_err(linalg_error);
    }
    let chunk_rows = threads.chunk_units(total_rows, 1);
    threads
        .for_each_chunk(out, chunk_rows * row_len, |i, chunk| {
            do_rows(i * chunk_rows, chunk)
        })
        .map_err(linalg_error)
}

/// TFLite's float scale and `ComputeInterpolationValues` for every output index.
fn float_samples(input_size: i32, output_size: i32, o: &ResizeOptions) -> Vec<FloatSample> {
    let scale = if o.align_corners && output_size > 1 {
        (input_size - 1) as f32 / (output_size - 1) as f32
    } else {
        input_size as f32 / output_size as f32
    };
    (0..output_size)
        .map(|v| {
            let value = v as f32;
            let pos = if o.half_pixel_centers {
                (value + 0.5) * scale - 0.5
            } else {
                value * scale
            };
            let lower = (pos.floor() as i32).max(0);
            let upper = (pos.ceil() as i32).min(input_size - 1);
            FloatSample {
                lower: lower as usize,
                upper: upper.max(0) as usize,
                frac: pos - lower as f32,
            }
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FloatFlavour {
    F32,
    /// uint8 through the float kernel: `+ 0.5` then truncation.
    U8,
}

struct BilinearFloat {
    shape: ResizeShape,
    rows: Vec<FloatSample>,
    cols: Vec<FloatSample>,
    linalg_cols: Vec<BilinearColumn<f32>>,
    flavour: FloatFlavour,
    kernels: Bilinear,
}

/// TFLite's float blend, term by term and in its order:
/// `v00 (1-dy)(1-dx) + v10 dy (1-dx) + v01 (1-dy) dx + v11 dy dx`.
fn blend_f32(v00: f32, v10: f32, v01: f32, v11: f32, dy: f32, dx: f32) -> f32 {
    v00 * (1.0 - dy) * (1.0 - dx) + v10 * dy * (1.0 - dx) + v01 * (1.0 - dy) * dx + v11 * dy * dx
}

/// Runs the float bilinear resize, `convert` turning each blended value into an output element.
fn bilinear_float<T: Copy + Send + Sync>(
    threads: &Threads,
    s: &ResizeShape,
    rows: &[FloatSample],
    cols: &[FloatSample],
    input: &[T],
    out: &mut [T],
    (to_f32, convert): (
        impl Fn(T) -> f32 + Sync + Send,
        impl Fn(f32) -> T + Sync + Send,
    ),
) -> Result<(), RuntimeError> {
    bilinear(
        threads,
        s,
        rows,
        cols,
        input,
        out,
        |[p00, p10, p01, p11], ry, cx, dst| {
            let (dy, dx) = (ry.frac, cx.frac);
            let corners = p00.iter().zip(p10).zip(p01.iter().zip(p11));
            for (o, ((&v00, &v10), (&v01, &v11))) in dst.iter_mut().zip(corners) {
                *o = convert(blend_f32(
                    to_f32(v00),
                    to_f32(v10),
                    to_f32(v01),
                    to_f32(v11),
                    dy,
                    dx,
                ));
            }
        },
    )
}

impl Kernel for BilinearFloat {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (s, rows, cols) = (&self.shape, &self.rows, &self.cols);
        match self.flavour {
            FloatFlavour::F32 => {
                let parts = io.parts::<f32>(0)?;
                let input = parts.inputs.get::<f32>(0)?;
                s.check(input.len(), parts.output.len())?;
                let (k, cols) = (&self.kernels, &self.linalg_cols);
                bilinear_rows(
                    parts.threads,
                    s,
                    rows,
                    input,
                    parts.output,
                    |top, bottom, ry, out| {
                        let row = BilinearRow {
                            top,
                            bottom,
                            cols,
                            depth: s.depth,
                            dy: ry.frac,
                        };
                        k.row_f32(&row, out)
                    },
                )
            }
            FloatFlavour::U8 => {
                let parts = io.parts::<u8>(0)?;
                let input = parts.inputs.get::<u8>(0)?;
                s.check(input.len(), parts.output.len())?;
                bilinear_float(
                    parts.threads,
                    s,
                    rows,
                    cols,
                    input,
                    parts.output,
                    // static_cast<uint8_t>(v + 0.5f): truncation (v stays within [0, 255.5]).
                    (f32::from, |v| (v + 0.5) as u8),
                )
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// RESIZE_BILINEAR, integer sampling (int8, int16, uint16).

/// TFLite's 10-bit scale and `ComputeInterpolationValuesInteger` for every output index (C++'s
/// truncating division included).
fn integer_samples(input_size: i32, output_size: i32, o: &ResizeOptions) -> Vec<IntegerSample> {
    let scale_10 = if o.align_corners && output_size > 1 {
        ((1 << 10) * (input_size - 1) + (output_size - 1) / 2) / (output_size - 1)
    } else {
        ((1 << 10) * input_size + output_size / 2) / output_size
    };
    (0..output_size)
        .map(|v| {
            let pos = if o.half_pixel_centers {
                v * scale_10 + scale_10 / 2 - (1 << 9)
            } else {
                v * scale_10
            };
            let lower = (pos / (1 << 10)).max(0);
            let upper = ((pos + (1 << 10) - 1) / (1 << 10)).min(input_size - 1);
            Sample {
                lower: lower as usize,
                upper: upper.max(0) as usize,
                frac: i64::from(pos - (1 << 10) * lower),
            }
        })
        .collect()
}

/// The 2^20-scaled blend of `ResizeBilinearInteger` (the accumulator) ...
fn blend_20(v00: i64, v10: i64, v01: i64, v11: i64, dy: i64, dx: i64) -> i64 {
    let one = 1 << 10;
    v00 * (one - dy) * (one - dx) + v10 * dy * (one - dx) + v01 * (one - dy) * dx + v11 * dy * dx
}

/// ... and its rounding: half away from zero, C++ truncating division by 2^20.
fn round_20(output_20: i64) -> i64 {
    let round = if output_20 > 0 { 1 << 19 } else { -(1 << 19) };
    (output_20 + round) / (1 << 20)
}

struct BilinearInteger {
    shape: ResizeShape,
    rows: Vec<IntegerSample>,
    cols: Vec<IntegerSample>,
    linalg_cols: Vec<BilinearColumn<i32>>,
    dtype: DType,
    kernels: Bilinear,
}

/// Runs the 10-bit integer bilinear resize of int16 and uint16 in 64-bit arithmetic.
fn bilinear_integer<T: Copy + Send + Sync>(
    threads: &Threads,
    s: &ResizeShape,
    rows: &[IntegerSample],
    cols: &[IntegerSample],
    input: &[T],
    out: &mut [T],
    (to_i64, from_i64): (
        impl Fn(T) -> i64 + Sync + Send,
        impl Fn(i64) -> T + Sync + Send,
    ),
) -> Result<(), RuntimeError> {
    bilinear(
        threads,
        s,
        rows,
        cols,
        input,
        out,
        |[p00, p10, p01, p11], ry, cx, dst| {
            let (dy, dx) = (ry.frac, cx.frac);
            let corners = p00.iter().zip(p10).zip(p01.iter().zip(p11));
            for (o, ((&v00, &v10), (&v01, &v11))) in dst.iter_mut().zip(corners) {
                let blend = blend_20(to_i64(v00), to_i64(v10), to_i64(v01), to_i64(v11), dy, dx);
                *o = from_i64(round_20(blend));
            }
        },
    )
}

impl Kernel for BilinearInteger {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (s, rows, cols) = (&self.shape, &self.rows, &self.cols);
        // The blend of in-range values with weights summing to 1 stays in range; the casts are
        // TFLite's static_cast (wrapping) all the same.
        match self.dtype {
            DType::Int8 => {
                let parts = io.parts::<i8>(0)?;
                let input = parts.inputs.get::<i8>(0)?;
                s.check(input.len(), parts.output.len())?;
                let (k, cols) = (&self.kernels, &self.linalg_cols);
                bilinear_rows(
                    parts.threads,
                    s,
                    rows,
                    input,
                    parts.output,
                    |top, bottom, ry, out| {
                        let row = BilinearRow {
                            top,
                            bottom,
                            cols,
                            depth: s.depth,
                            dy: ry.frac as i32,
                        };
                        k.row_i8(&row, out)
                    },
                )
            }
            DType::Int16 => {
                let parts = io.parts::<i16>(0)?;
                let input = parts.inputs.get::<i16>(0)?;
                s.check(input.len(), parts.output.len())?;
                bilinear_integer(
                    parts.threads,
                    s,
                    rows,
                    cols,
                    input,
                    parts.output,
                    (i64::from, |v| v as i16),
                )
            }
            _ => {
                let parts = io.parts::<u16>(0)?;
                let input = parts.inputs.get::<u16>(0)?;
                s.check(input.len(), parts.output.len())?;
                bilinear_integer(
                    parts.threads,
                    s,
                    rows,
                    cols,
                    input,
                    parts.output,
                    (i64::from, |v| v as u16),
                )
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// RESIZE_NEAREST_NEIGHBOR.

/// TFLite `GetNearestNeighbor`: the input index sampled for output index `value`.
fn nearest_neighbor(value: i32, input_size: i32, output_size: i32, o: &ResizeOptions) -> i32 {
    let scale = if o.align_corners && output_size > 1 {
        (input_size - 1) as f32 / (output_size - 1) as f32
    } else {
        input_size as f32 / output_size as f32
    };
    let offset = if o.half_pixel_centers { 0.5 } else { 0.0 };
    let pos = (value as f32 + offset) * scale;
    // TfLiteRound is std::round: half away from zero, as f32::round.
    let index = if o.align_corners {
        pos.round() as i32
    } else {
        pos.floor() as i32
    };
    let index = index.min(input_size - 1);
    if o.half_pixel_centers {
        index.max(0)
    } else {
        index
    }
}

struct Nearest {
    shape: ResizeShape,
    elem: usize,
    rows: Vec<usize>,
    cols: Vec<usize>,
}

impl Kernel for Nearest {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (inputs, out) = io.split(0)?;
        let input = inputs.bytes(0)?;
        let s = &self.shape;
        let e = self.elem;
        s.check(input.len() / e, out.len() / e)?;
        let row = s.depth * e;
        let mut chunks = out.chunks_exact_mut(row.max(1));
        for b in 0..s.batches {
            for &y in &self.rows {
                for &x in &self.cols {
                    let start = s.input_offset(b, y, x) * e;
                    if let Some(dst) = chunks.next() {
                        dst.copy_from_slice(&input[start..start + row]);
                    }
                }
            }
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------------
// DEPTH_TO_SPACE and SPACE_TO_DEPTH.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockDirection {
    DepthToSpace,
    SpaceToDepth,
}

/// Moves `block x block` spatial tiles to and from depth. In the "space" tensor
/// `[batches, space_h, space_w, space_d]`, pixel `(y, x)` holds depth slice
/// `((y % block) * block + x % block)` of pixel `(y / block, x / block)` of the "depth" tensor
/// `[batches, space_h / block, space_w / block, space_d * block^2]` (TensorFlow's NHWC / DCR
/// order).
struct BlockMove {
    direction: BlockDirection,
    batches: usize,
    space_h: usize,
    space_w: usize,
    space_d: usize,
    block: usize,
    elem: usize,
}

impl BlockMove {
    /// Byte offsets of every contiguous run of `block * space_d` elements (the `block`
    /// neighbouring space pixels of one block row are one run of depth channels): `f(space
    /// offset, depth offset)`.
    fn for_each_run(&self, mut f: impl FnMut(usize, usize)) {
        let (bs, e) = (self.block, self.elem);
        let run = bs * self.space_d * e;
        let depth_w = self.space_w / bs;
        let depth_h = self.space_h / bs;
        let depth_d = self.space_d * bs * bs;
        let mut space = 0;
        for b in 0..self.batches {
            for y in 0..self.space_h {
                let slice = (y % bs) * bs;
                for xb in 0..depth_w {
                    let depth_pixel = (b * depth_h + y / bs) * depth_w + xb;
                    f(space, (depth_pixel * depth_d + slice * self.space_d) * e);
                    space += run;
                }
            }
        }
    }

    /// Bytes per run of [`BlockMove::for_each_run`].
    fn run_bytes(&self) -> usize {
        self.block * self.space_d * self.elem
    }
}

impl Kernel for BlockMove {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (inputs, out) = io.split(0)?;
        let input = inputs.bytes(0)?;
        let total = self.batches * self.space_h * self.space_w * self.space_d * self.elem;
        if input.len() != total || out.len() != total {
            return Err(RuntimeError::eval(
                "depth/space: tensor sizes do not match the prepared shapes",
            ));
        }
        let run = self.run_bytes();
        match self.direction {
            BlockDirection::DepthToSpace => self.for_each_run(|space, depth| {
                out[space..space + run].copy_from_slice(&input[depth..depth + run]);
            }),
            BlockDirection::SpaceToDepth => self.for_each_run(|space, depth| {
                out[depth..depth + run].copy_from_slice(&input[space..space + run]);
            }),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(align_corners: bool, half_pixel_centers: bool) -> ResizeOptions {
        ResizeOptions {
            align_corners,
            half_pixel_centers,
        }
    }

    #[test]
    fn nearest_neighbor_indices() {
        // 2 -> 4, plain: scale 0.5, floor(0, .5, 1, 1.5) = 0, 0, 1, 1.
        let idx: Vec<i32> = (0..4)
            .map(|v| nearest_neighbor(v, 2, 4, &opts(false, false)))
            .collect();
        assert_eq!(idx, [0, 0, 1, 1]);
        // 3 -> 5 with align_corners: scale 0.5, round(0, .5, 1, 1.5, 2) half away = 0, 1, 1, 2, 2.
        let idx: Vec<i32> = (0..5)
            .map(|v| nearest_neighbor(v, 3, 5, &opts(true, false)))
            .collect();
        assert_eq!(idx, [0, 1, 1, 2, 2]);
        // 4 -> 2 half-pixel: scale 2, floor((v + .5) * 2) = 1, 3.
        let idx: Vec<i32> = (0..2)
            .map(|v| nearest_neighbor(v, 4, 2, &opts(false, true)))
            .collect();
        assert_eq!(idx, [1, 3]);
    }

    #[test]
    fn integer_bilinear_matches_hand_computation() {
        // 2 -> 4, plain: scale_10 = 512; positions 0, 512, 1024, 1536 -> (0,0,0), (0,1,512),
        // (1,1,0), (1,1,512) [upper clamped to 1].
        let s = integer_samples(2, 4, &opts(false, false));
        let got: Vec<(usize, usize, i64)> = s.iter().map(|s| (s.lower, s.upper, s.frac)).collect();
        assert_eq!(got, [(0, 0, 0), (0, 1, 512), (1, 1, 0), (1, 1, 512)]);
        // Blend of 10 and 15 half-way in y: (10 * 512 + 15 * 512) * 1024 = 12.5 * 2^20 -> 13;
        // negative -12.5 -> -13 (half away from zero).
        assert_eq!(round_20(blend_20(10, 15, 10, 15, 512, 0)), 13);
        assert_eq!(round_20(blend_20(-10, -15, -10, -15, 512, 0)), -13);
        // Half-pixel centres upsampling 2 -> 4: scale 512, pos = v*512 + 256 - 512 = -256, 256,
        // 768, 1280: the first truncates to lower 0 with a negative fraction.
        let s = integer_samples(2, 4, &opts(false, true));
        let got: Vec<(usize, usize, i64)> = s.iter().map(|s| (s.lower, s.upper, s.frac)).collect();
        assert_eq!(got, [(0, 0, -256), (0, 1, 256), (0, 1, 768), (1, 1, 256)]);
    }

    #[test]
    fn float_bilinear_samples() {
        // 4 -> 2 plain: scale 2, positions 0 and 2.
        let s = float_samples(4, 2, &opts(false, false));
        assert_eq!(
            s,
            [
                FloatSample {
                    lower: 0,
                    upper: 0,
                    frac: 0.0
                },
                FloatSample {
                    lower: 2,
                    upper: 2,
                    frac: 0.0
                }
            ]
        );
        // 2 -> 3 aligned: scale 0.5, positions 0, 0.5, 1.
        let s = float_samples(2, 3, &opts(true, false));
        assert_eq!(
            s[1],
            FloatSample {
                lower: 0,
                upper: 1,
                frac: 0.5
            }
        );
        assert_eq!(blend_f32(1.0, 3.0, 1.0, 3.0, 0.5, 0.25), 2.0);
    }

    #[test]
    fn depth_to_space_order() {
        // Depth tensor [1, 1, 1, 4] holding 0..4 with block 2 -> space [1, 2, 2, 1] = 0, 1, 2, 3
        // (row-major tiles).
        let m = BlockMove {
            direction: BlockDirection::DepthToSpace,
            batches: 1,
            space_h: 2,
            space_w: 2,
            space_d: 1,
            block: 2,
            elem: 1,
        };
        // Runs cover the `block` space pixels of one block row: 2 elements each.
        assert_eq!(m.run_bytes(), 2);
        let mut runs = Vec::new();
        m.for_each_run(|space, depth| runs.push((space, depth)));
        assert_eq!(runs, [(0, 0), (2, 2)]);
        // Space [1, 2, 4, 1], block 2: depth [1, 1, 2, 4]; space pixels (0, 2..4) -> depth
        // pixel 1 slices 0, 1 = bytes 4, 5; (1, 0..2) -> pixel 0 slices 2, 3.
        let m = BlockMove { space_w: 4, ..m };
        let mut runs = Vec::new();
        m.for_each_run(|space, depth| runs.push((space, depth)));
        assert_eq!(runs, [(0, 0), (2, 4), (4, 2), (6, 6)]);
    }
}
