//! Reductions: MEAN, SUM, REDUCE_MAX, ARG_MAX.
//!
//! These follow TFLite's reference kernels (`tflite/kernels/reduce.cc` with the `kReference`
//! kernel type, `reference_ops::Mean`, `QuantizedMeanOrSum`, `ReduceGeneric`, and
//! `arg_min_max.cc`):
//!
//! - Every reduction walks the input once in row-major order, adding each element into its
//!   output's accumulator, so float sums are formed in exactly TFLite's order.
//! - Quantized MEAN and SUM (int8, uint8, int16) accumulate `int32` sums of the raw values, then
//!   requantize `sum - input_zero_point * count` with the multiplier `input_scale / output_scale`
//!   (for MEAN first folded with `1 / count` the way `QuantizedMeanOrSum` does it), add the output
//!   zero point and saturate.
//! - REDUCE_MAX works on raw values (input and output share their quantization).
//! - ARG_MAX returns the first index of the maximum (ties go to the lowest index; a NaN is never
//!   chosen unless it comes first).

use octet_core::fixed_point::{
    QuantizedMultiplier, multiply_by_quantized_multiplier, quantize_multiplier,
};
use octet_core::{ArgMaxOptions, DType};

use crate::io::typed_mut;
use crate::kernels::common::{dtype_range, per_tensor_quant};
use crate::{Kernel, OpContext, OpIo, RuntimeError, TensorInfo};

/// MEAN.
pub fn mean(ctx: &OpContext<'_>, keep_dims: bool) -> Result<Box<dyn Kernel>, RuntimeError> {
    let (input, output, geometry) = prepare_reduction(ctx, keep_dims)?;
    let flavour = match input.dtype {
        DType::Float32 => Flavour::F32,
        DType::Int32 => Flavour::I32,
        DType::Int64 => Flavour::I64,
        DType::Int8 | DType::UInt8 | DType::Int16 => Flavour::Quantized(quantized_reduce(
            ctx,
            input,
            output,
            geometry.count,
            QuantizedOp::Mean,
        )?),
        _ => return Err(ctx.unsupported_types()),
    };
    Ok(Box::new(Reduce {
        op: ReduceOp::Mean,
        dtype: input.dtype,
        flavour,
        scratch: Scratch::new(&geometry),
        geometry,
    }))
}

/// SUM.
pub fn sum(ctx: &OpContext<'_>, keep_dims: bool) -> Result<Box<dyn Kernel>, RuntimeError> {
    let (input, output, geometry) = prepare_reduction(ctx, keep_dims)?;
    let flavour = match input.dtype {
        DType::Float32 => Flavour::F32,
        DType::Int32 => Flavour::I32,
        DType::Int64 => Flavour::I64,
        DType::Int8 | DType::UInt8 | DType::Int16 => Flavour::Quantized(quantized_reduce(
            ctx,
            input,
            output,
            geometry.count,
            QuantizedOp::Sum,
        )?),
        _ => return Err(ctx.unsupported_types()),
    };
    Ok(Box::new(Reduce {
        op: ReduceOp::Sum,
        dtype: input.dtype,
        flavour,
        scratch: Scratch::new(&geometry),
        geometry,
    }))
}

/// REDUCE_MAX.
pub fn reduce_max(ctx: &OpContext<'_>, keep_dims: bool) -> Result<Box<dyn Kernel>, RuntimeError> {
    let (input, output, geometry) = prepare_reduction(ctx, keep_dims)?;
    match input.dtype {
        DType::Float32 | DType::Int32 | DType::Int64 => {}
        DType::Int8 | DType::UInt8 | DType::Int16 => {
            // TFLite (EvalType) insists that a quantized max keeps its parameters.
            if input.quant.is_some() || output.quant.is_some() {
                let a = per_tensor_quant(ctx, input, "input 0")?;
                let b = per_tensor_quant(ctx, output, "output 0")?;
                if a != b {
                    return Err(ctx.invalid(format!(
                        "input and output quantization differ ({a:?} vs {b:?})"
                    )));
                }
                if input.dtype == DType::Int16 && a.1 != 0 {
                    return Err(ctx.invalid("int16 REDUCE_MAX needs a zero point of 0"));
                }
            }
        }
        _ => return Err(ctx.unsupported_types()),
    }
    Ok(Box::new(Reduce {
        op: ReduceOp::Max,
        dtype: input.dtype,
        flavour: Flavour::Raw,
        scratch: Scratch::new(&geometry),
        geometry,
    }))
}

/// ARG_MAX.
pub fn arg_max(ctx: &OpContext<'_>, o: &ArgMaxOptions) -> Result<Box<dyn Kernel>, RuntimeError> {
    let input = ctx.input(0)?;
    let output = ctx.output(0)?;
    if !matches!(output.dtype, DType::Int32 | DType::Int64) || output.dtype != o.output_type {
        return Err(ctx.unsupported_types());
    }
    if !matches!(
        input.dtype,
        DType::Float32 | DType::Int8 | DType::UInt8 | DType::Int16 | DType::Int32 | DType::Bool
    ) {
        return Err(ctx.unsupported_types());
    }
    let axes = ctx.constant_ints(1)?;
    let [axis] = axes.as_slice() else {
        return Err(ctx.invalid(format!("axis must hold one value, got {}", axes.len())));
    };
    let rank = input.rank() as i64;
    let axis = if *axis < 0 { axis + rank } else { *axis };
    if !(0..rank).contains(&axis) {
        return Err(ctx.invalid(format!("axis {axis} is out of range for rank {rank}")));
    }
    let axis = axis as usize;
    let axis_size = input.shape[axis];
    if axis_size == 0 {
        return Err(ctx.invalid("cannot compute ARG_MAX over an empty axis"));
    }
    let outer: usize = input.shape[..axis].iter().product();
    let inner: usize = input.shape[axis + 1..].iter().product();
    let expected: Vec<usize> = input
        .shape
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != axis)
        .map(|(_, &d)| d)
        .collect();
    if output.shape != expected {
        return Err(ctx.invalid(format!(
            "output shape {:?}, expected {expected:?}",
            output.shape
        )));
    }
    Ok(Box::new(ArgMax {
        input: input.dtype,
        output: output.dtype,
        outer,
        axis_size,
        inner,
    }))
}

// ------------------------------------------------------------------------------------------------
// Geometry shared by MEAN, SUM and REDUCE_MAX.

/// How the input maps onto the output of a reduction.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ReduceGeometry {
    /// Input dimensions.
    dims: Vec<usize>,
    /// For each input dimension, the output offset step (0 along reduced dimensions).
    out_strides: Vec<usize>,
    /// Number of input elements.
    num_inputs: usize,
    /// Number of output elements.
    num_outputs: usize,
    /// Input elements per output element (the product of the reduced dimensions).
    count: usize,
    /// Every dimension is reduced (TFLite then takes its `ReduceAllDims` path for SUM and MAX).
    all_reduced: bool,
    /// `(outer, reduced, inner)` when the reduced dimensions are contiguous (ignoring
    /// dimensions of extent 1), as in a global average pool over H and W: the input is then
    /// `outer x reduced x inner` and the output `outer x inner`, walked without an odometer.
    blocks: Option<(usize, usize, usize)>,
}

impl ReduceGeometry {
    /// `axes` are TFLite's axis values (negative ones count from the end, duplicates allowed).
    fn new(dims: &[usize], axes: &[i64], keep_dims: bool) -> Result<(Self, Vec<usize>), String> {
        let rank = dims.len();
        let mut reduced = vec![false; rank];
        for &axis in axes {
            let a = if axis < 0 { axis + rank as i64 } else { axis };
            if rank > 0 && !(0..rank as i64).contains(&a) {
                return Err(format!("axis {axis} is out of range for rank {rank}"));
            }
            if let Some(r) = reduced.get_mut(a as usize) {
                *r = true;
            }
        }
        let mut out_strides = vec![0; rank];
        let mut stride = 1;
        for d in (0..rank).rev() {
            if !reduced[d] {
                out_strides[d] = stride;
                stride *= dims[d];
            }
        }
        let output_shape: Vec<usize> = (0..rank)
            .filter_map(|d| match (reduced[d], keep_dims) {
                (false, _) => Some(dims[d]),
                (true, true) => Some(1),
                (true, false) => None,
            })
            .collect();
        let count = (0..rank).filter(|&d| reduced[d]).map(|d| dims[d]).product();
        // Extent-1 dimensions do not change the order of the walk: drop them, then look for
        // kept* reduced* kept*.
        let significant: Vec<(usize, bool)> = (0..rank)
            .filter(|&d| dims[d] != 1)
            .map(|d| (dims[d], reduced[d]))
            .collect();
        let first = significant.iter().position(|&(_, r)| r);
        let blocks = match first {
            None => Some((stride, 1, 1)),
            Some(first) => {
                let last = significant.iter().rposition(|&(_, r)| r).unwrap_or(first);
                let contiguous = significant[first..=last].iter().all(|&(_, r)| r);
                let product = |part: &[(usize, bool)]| part.iter().map(|&(n, _)| n).product();
                contiguous.then(|| {
                    (
                        product(&significant[..first]),
                        product(&significant[first..=last]),
                        product(&significant[last + 1..]),
                    )
                })
            }
        };
        let geometry = ReduceGeometry {
            dims: dims.to_vec(),
            out_strides,
            num_inputs: dims.iter().product(),
            num_outputs: stride,
            count,
            all_reduced: reduced.iter().all(|&r| r),
            blocks,
        };
        Ok((geometry, output_shape))
    }

    /// Calls `f(input offset, output offset)` for every input element in row-major order, using
    /// `index` (one entry per dimension) as the odometer.
    fn for_each(&self, index: &mut [usize], mut f: impl FnMut(usize, usize)) {
        if let Some((outer, reduced, inner)) = self.blocks {
            let mut i = 0;
            for ob in 0..outer {
                for _ in 0..reduced {
                    for k in 0..inner {
                        f(i, ob * inner + k);
                        i += 1;
                    }
                }
            }
            return;
        }
        index.fill(0);
        let mut out = 0;
        for i in 0..self.num_inputs {
            f(i, out);
            for d in (0..self.dims.len()).rev() {
                index[d] += 1;
                out += self.out_strides[d];
                if index[d] < self.dims[d] {
                    break;
                }
                out -= self.out_strides[d] * self.dims[d];
                index[d] = 0;
            }
        }
    }
}

/// Reads the constant axes and checks the output shape.
fn prepare_reduction<'a>(
    ctx: &OpContext<'a>,
    keep_dims: bool,
) -> Result<(&'a TensorInfo, &'a TensorInfo, ReduceGeometry), RuntimeError> {
    let input = ctx.input(0)?;
    let output = ctx.output(0)?;
    if input.dtype != output.dtype {
        return Err(ctx.unsupported_types());
    }
    let axes = ctx.constant_ints(1)?;
    let (geometry, expected) =
        ReduceGeometry::new(&input.shape, &axes, keep_dims).map_err(|e| ctx.invalid(e))?;
    if output.shape != expected {
        return Err(ctx.invalid(format!(
            "output shape {:?}, expected {expected:?}",
            output.shape
        )));
    }
    Ok((input, output, geometry))
}

// ------------------------------------------------------------------------------------------------
// Quantized MEAN / SUM parameters.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuantizedOp {
    Mean,
    Sum,
}

/// Everything the requantization of one quantized MEAN/SUM output needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct QuantizedReduce {
    multiplier: QuantizedMultiplier,
    input_zero_point: i32,
    output_zero_point: i32,
    /// Input elements per output element.
    count: i64,
    qmin: i32,
    qmax: i32,
}

impl QuantizedReduce {
    /// `QuantizedMeanOrSum`'s output step for one `int32` sum of raw input values.
    fn requantize(&self, sum: i32) -> i32 {
        let shifted = (i64::from(sum) - i64::from(self.input_zero_point) * self.count) as i32;
        multiply_by_quantized_multiplier(shifted, self.multiplier)
            .wrapping_add(self.output_zero_point)
            .clamp(self.qmin, self.qmax)
    }
}

/// TFLite `PrepareMeanOrSum` and the start of `QuantizedMeanOrSum`: the multiplier
/// `input_scale / output_scale` and, for MEAN, the division by `count` folded into it.
fn quantized_reduce(
    ctx: &OpContext<'_>,
    input: &TensorInfo,
    output: &TensorInfo,
    count: usize,
    op: QuantizedOp,
) -> Result<QuantizedReduce, RuntimeError> {
    let (input_scale, input_zero_point) = per_tensor_quant(ctx, input, "input 0")?;
    let (output_scale, output_zero_point) = per_tensor_quant(ctx, output, "output 0")?;
    if input.dtype == DType::Int16 && (input_zero_point != 0 || output_zero_point != 0) {
        return Err(ctx.invalid("int16 MEAN/SUM needs zero points of 0"));
    }
    let real = f64::from(input_scale) / f64::from(output_scale);
    let mut multiplier = quantize_multiplier(real)
        .map_err(|e| ctx.invalid(format!("input/output scale ratio: {e}")))?;
    let count = i64::try_from(count).map_err(|_| ctx.invalid("too many elements"))?;
    if op == QuantizedOp::Mean && count > 0 {
        multiplier = fold_mean_divisor(multiplier, count);
    }
    let (qmin, qmax) = dtype_range(input.dtype).ok_or_else(|| ctx.unsupported_types())?;
    Ok(QuantizedReduce {
        multiplier,
        input_zero_point,
        output_zero_point,
        count,
        qmin,
        qmax,
    })
}

/// `QuantizedMeanOrSum` (compute_sum = false): multiplies `m` by `1 / count` keeping 31 bits,
/// `multiplier' = (multiplier << s) / count` and `shift' = shift - s` with `s = floor(log2(count))`
/// capped at 32 and at `31 + shift`.
fn fold_mean_divisor(m: QuantizedMultiplier, count: i64) -> QuantizedMultiplier {
    let log2 = 63 - count.leading_zeros() as i32;
    let s = log2.min(32).min(31 + m.shift).max(0);
    let multiplier = ((i64::from(m.multiplier) << s) / count) as i32;
    QuantizedMultiplier::new(multiplier, m.shift - s)
}

// ------------------------------------------------------------------------------------------------
// The MEAN / SUM / REDUCE_MAX kernel.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReduceOp {
    Mean,
    Sum,
    Max,
}

/// How the accumulated values become outputs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Flavour {
    /// float32 (sum or mean in float).
    F32,
    /// Plain int32 (sums wrap; mean via an int64 sum).
    I32,
    /// Plain int64.
    I64,
    /// int8 / uint8 / int16 with requantization.
    Quantized(QuantizedReduce),
    /// Values taken as they are (REDUCE_MAX).
    Raw,
}

/// Buffers owned by the kernel so that `eval` does not allocate.
struct Scratch {
    index: Vec<usize>,
    sums_i32: Vec<i32>,
    sums_i64: Vec<i64>,
}

impl Scratch {
    fn new(g: &ReduceGeometry) -> Self {
        Scratch {
            index: vec![0; g.dims.len()],
            sums_i32: vec![0; g.num_outputs],
            sums_i64: vec![0; g.num_outputs],
        }
    }
}

struct Reduce {
    op: ReduceOp,
    dtype: DType,
    flavour: Flavour,
    geometry: ReduceGeometry,
    scratch: Scratch,
}

impl Kernel for Reduce {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (inputs, out) = io.split(0)?;
        let g = &self.geometry;
        let s = &mut self.scratch;
        if g.num_inputs == 0 && self.op != ReduceOp::Max {
            // An empty input: EvalMean writes quiet NaN (0 for integer types), the quantized sum
            // leaves its zero-initialised output.
            if self.dtype == DType::Float32 && self.op == ReduceOp::Mean {
                typed_mut::<f32>(out)?.fill(f32::NAN);
            } else {
                out.fill(0);
            }
            return Ok(());
        }
        match (self.op, self.flavour) {
            (ReduceOp::Max, _) => match self.dtype {
                DType::Float32 => reduce_max_typed::<f32>(g, s, inputs.get(0)?, typed_mut(out)?),
                DType::Int8 => reduce_max_typed::<i8>(g, s, inputs.get(0)?, typed_mut(out)?),
                DType::UInt8 => reduce_max_typed::<u8>(g, s, inputs.get(0)?, typed_mut(out)?),
                DType::Int16 => reduce_max_typed::<i16>(g, s, inputs.get(0)?, typed_mut(out)?),
                DType::Int32 => reduce_max_typed::<i32>(g, s, inputs.get(0)?, typed_mut(out)?),
                DType::Int64 => reduce_max_typed::<i64>(g, s, inputs.get(0)?, typed_mut(out)?),
                _ => Err(RuntimeError::eval("REDUCE_MAX: unexpected dtype")),
            },
            (op, Flavour::F32) => {
                let input = inputs.get::<f32>(0)?;
                let out = typed_mut::<f32>(out)?;
                check_sizes(g, input.len(), out.len())?;
                if op == ReduceOp::Mean {
                    mean_f32(g, &mut s.index, input, out);
                } else {
                    sum_f32(g, &mut s.index, input, out);
                }
                Ok(())
            }
            (op, Flavour::I32) => {
                let input = inputs.get::<i32>(0)?;
                let out = typed_mut::<i32>(out)?;
                check_sizes(g, input.len(), out.len())?;
                if op == ReduceOp::Mean {
                    // reference_ops::Mean<int, int64_t>: int64 sum, truncating division.
                    sum_i64(g, &mut s.index, input, &mut s.sums_i64);
                    let count = g.count as i64;
                    for (o, &sum) in out.iter_mut().zip(&s.sums_i64) {
                        *o = if count > 0 { (sum / count) as i32 } else { 0 };
                    }
                } else {
                    sum_wrapping_i32(g, &mut s.index, input, out);
                }
                Ok(())
            }
            (op, Flavour::I64) => {
                let input = inputs.get::<i64>(0)?;
                let out = typed_mut::<i64>(out)?;
                check_sizes(g, input.len(), out.len())?;
                sum_i64(g, &mut s.index, input, out);
                if op == ReduceOp::Mean {
                    let count = g.count as i64;
                    for o in out.iter_mut() {
                        *o = if count > 0 { o.wrapping_div(count) } else { 0 };
                    }
                }
                Ok(())
            }
            (_, Flavour::Quantized(q)) => match self.dtype {
                DType::Int8 => quantized_typed::<i8>(g, s, &q, inputs.get(0)?, typed_mut(out)?),
                DType::UInt8 => quantized_typed::<u8>(g, s, &q, inputs.get(0)?, typed_mut(out)?),
                DType::Int16 => quantized_typed::<i16>(g, s, &q, inputs.get(0)?, typed_mut(out)?),
                _ => Err(RuntimeError::eval("MEAN/SUM: unexpected dtype")),
            },
            (_, Flavour::Raw) => Err(RuntimeError::eval("reduction: unexpected flavour")),
        }
    }
}

fn check_sizes(g: &ReduceGeometry, input: usize, output: usize) -> Result<(), RuntimeError> {
    if input != g.num_inputs || output != g.num_outputs {
        return Err(RuntimeError::eval(
            "reduction: tensor sizes do not match the prepared shapes",
        ));
    }
    Ok(())
}

/// `reference_ops::Mean<float, float>`: float sums in input order, divided by the count.
fn mean_f32(g: &ReduceGeometry, index: &mut [usize], input: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    g.for_each(index, |i, o| out[o] += input[i]);
    let count = g.count as f32;
    if g.count > 0 {
        for o in out.iter_mut() {
            *o /= count;
        }
    }
}

/// Float SUM: `ReduceAllDims` (start from the first element) when every dimension is reduced,
/// `ReduceGeneric` (start from 0) otherwise.
fn sum_f32(g: &ReduceGeometry, index: &mut [usize], input: &[f32], out: &mut [f32]) {
    if g.all_reduced
        && let (Some(o), Some((&first, rest))) = (out.first_mut(), input.split_first())
    {
        *o = rest.iter().fold(first, |acc, &v| v + acc);
        return;
    }
    out.fill(0.0);
    g.for_each(index, |i, o| out[o] += input[i]);
}

/// int32 SUM with two's-complement wrap-around (TFLite's `AddTensorValuesWithExpectedOverflow`).
fn sum_wrapping_i32(g: &ReduceGeometry, index: &mut [usize], input: &[i32], out: &mut [i32]) {
    out.fill(0);
    g.for_each(index, |i, o| out[o] = out[o].wrapping_add(input[i]));
}

/// int64 sums (wrapping) of int32 or int64 inputs.
fn sum_i64<T: Copy + Into<i64>>(
    g: &ReduceGeometry,
    index: &mut [usize],
    input: &[T],
    out: &mut [i64],
) {
    out.fill(0);
    g.for_each(index, |i, o| out[o] = out[o].wrapping_add(input[i].into()));
}

/// A raw quantized value.
trait QuantElem: Copy {
    fn to_i32(self) -> i32;
    fn from_clamped(v: i32) -> Self;
}

impl QuantElem for i8 {
    fn to_i32(self) -> i32 {
        i32::from(self)
    }
    fn from_clamped(v: i32) -> Self {
        v as i8
    }
}

impl QuantElem for u8 {
    fn to_i32(self) -> i32 {
        i32::from(self)
    }
    fn from_clamped(v: i32) -> Self {
        v as u8
    }
}

impl QuantElem for i16 {
    fn to_i32(self) -> i32 {
        i32::from(self)
    }
    fn from_clamped(v: i32) -> Self {
        v as i16
    }
}

/// The `int32` accumulator step of quantized MEAN/SUM: wrapping sums of the raw values.
fn accumulate_quantized<T: QuantElem>(
    g: &ReduceGeometry,
    index: &mut [usize],
    input: &[T],
    sums: &mut [i32],
) {
    sums.fill(0);
    g.for_each(index, |i, o| {
        sums[o] = sums[o].wrapping_add(input[i].to_i32())
    });
}

fn quantized_typed<T: QuantElem + bytemuck::Pod>(
    g: &ReduceGeometry,
    s: &mut Scratch,
    q: &QuantizedReduce,
    input: &[T],
    out: &mut [T],
) -> Result<(), RuntimeError> {
    check_sizes(g, input.len(), out.len())?;
    accumulate_quantized(g, &mut s.index, input, &mut s.sums_i32);
    for (o, &sum) in out.iter_mut().zip(&s.sums_i32) {
        *o = T::from_clamped(q.requantize(sum));
    }
    Ok(())
}

/// A value REDUCE_MAX can compare.
trait MaxElem: Copy + PartialOrd + bytemuck::Pod {
    /// `std::numeric_limits<T>::lowest()`.
    const LOWEST: Self;
}

impl MaxElem for f32 {
    const LOWEST: Self = f32::MIN;
}
impl MaxElem for i8 {
    const LOWEST: Self = i8::MIN;
}
impl MaxElem for u8 {
    const LOWEST: Self = u8::MIN;
}
impl MaxElem for i16 {
    const LOWEST: Self = i16::MIN;
}
impl MaxElem for i32 {
    const LOWEST: Self = i32::MIN;
}
impl MaxElem for i64 {
    const LOWEST: Self = i64::MIN;
}

/// REDUCE_MAX with TFLite's reducer `(in > current) ? in : current`, starting from the first
/// element when every dimension is reduced (`ReduceAllDims`) and from the type's lowest value
/// otherwise (`ReduceGeneric`); the two differ only for float inputs holding NaN or -inf.
fn reduce_max_typed<T: MaxElem>(
    g: &ReduceGeometry,
    s: &mut Scratch,
    input: &[T],
    out: &mut [T],
) -> Result<(), RuntimeError> {
    check_sizes(g, input.len(), out.len())?;
    if g.all_reduced
        && let (Some(o), Some((&first, rest))) = (out.first_mut(), input.split_first())
    {
        *o = rest
            .iter()
            .fold(first, |acc, &v| if v > acc { v } else { acc });
        return Ok(());
    }
    out.fill(T::LOWEST);
    g.for_each(&mut s.index, |i, o| {
        if input[i] > out[o] {
            out[o] = input[i];
        }
    });
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// ARG_MAX.

struct ArgMax {
    input: DType,
    output: DType,
    outer: usize,
    axis_size: usize,
    inner: usize,
}

/// Index of the maximum along the middle dimension of an `[outer, axis, inner]` view: the first
/// index wins ties (TFLite compares with `>`), so a NaN is only chosen when it comes first.
fn arg_max_into<T: Copy + PartialOrd>(
    input: &[T],
    outer: usize,
    axis_size: usize,
    inner: usize,
    mut write: impl FnMut(usize, usize),
) {
    for o in 0..outer {
        let base = o * axis_size * inner;
        for i in 0..inner {
            let mut best = input[base + i];
            let mut best_index = 0;
            for a in 1..axis_size {
                let v = input[base + a * inner + i];
                if v > best {
                    best = v;
                    best_index = a;
                }
            }
            write(o * inner + i, best_index);
        }
    }
}

impl ArgMax {
    fn run<T: Copy + PartialOrd + bytemuck::Pod>(
        &self,
        input: &[T],
        out: &mut [u8],
    ) -> Result<(), RuntimeError> {
        let n = self.outer * self.inner;
        if input.len() != self.outer * self.axis_size * self.inner {
            return Err(RuntimeError::eval("ARG_MAX: input size does not match"));
        }
        match self.output {
            DType::Int32 => {
                let out = typed_mut::<i32>(out)?;
                if out.len() != n {
                    return Err(RuntimeError::eval("ARG_MAX: output size does not match"));
                }
                arg_max_into(input, self.outer, self.axis_size, self.inner, |k, idx| {
                    out[k] = idx as i32;
                });
            }
            _ => {
                let out = typed_mut::<i64>(out)?;
                if out.len() != n {
                    return Err(RuntimeError::eval("ARG_MAX: output size does not match"));
                }
                arg_max_into(input, self.outer, self.axis_size, self.inner, |k, idx| {
                    out[k] = idx as i64;
                });
            }
        }
        Ok(())
    }
}

impl Kernel for ArgMax {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (inputs, out) = io.split(0)?;
        match self.input {
            DType::Float32 => self.run::<f32>(inputs.get(0)?, out),
            DType::Int8 => self.run::<i8>(inputs.get(0)?, out),
            // bool is one byte, 0 or 1: it compares like uint8.
            DType::UInt8 | DType::Bool => self.run::<u8>(inputs.get(0)?, out),
            DType::Int16 => self.run::<i16>(inputs.get(0)?, out),
            DType::Int32 => self.run::<i32>(inputs.get(0)?, out),
            _ => Err(RuntimeError::eval("ARG_MAX: unexpected dtype")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_maps_inputs_to_outputs() {
        // [2, 3, 2] reduced over axis 1 (given as -2): output [2, 2] (or [2, 1, 2]).
        let (g, shape) = ReduceGeometry::new(&[2, 3, 2], &[-2], false).unwrap();
        assert_eq!(shape, [2, 2]);
        assert_eq!((g.num_outputs, g.count, g.all_reduced), (4, 3, false));
        let (_, kept) = ReduceGeometry::new(&[2, 3, 2], &[1, 1], true).unwrap();
        assert_eq!(kept, [2, 1, 2]);
        let mut index = [0; 3];
        let mut map = Vec::new();
        g.for_each(&mut index, |i, o| map.push((i, o)));
        // Input (b, r, c) -> output (b, c).
        let outs: Vec<usize> = map.iter().map(|&(_, o)| o).collect();
        assert_eq!(outs, [0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3]);
        assert!(ReduceGeometry::new(&[2, 3], &[2], false).is_err());
    }

    #[test]
    fn mean_divisor_folding() {
        // Multiplier 0.5 (2^30, shift 0), count 3: s = 1, multiplier' = 2^31 / 3 = 715827882,
        // shift' = -1, i.e. 0.5/3 = 0.1666.
        let m = fold_mean_divisor(QuantizedMultiplier::new(1 << 30, 0), 3);
        assert_eq!(m, QuantizedMultiplier::new(715_827_882, -1));
        // Count 1 leaves the multiplier alone.
        let m = fold_mean_divisor(QuantizedMultiplier::new(1 << 30, 2), 1);
        assert_eq!(m, QuantizedMultiplier::new(1 << 30, 2));
    }

    #[test]
    fn quantized_mean_requantizes_the_zero_point_corrected_sum() {
        // int8, same scales, zero point -10 in and out, 4 elements: values 0, 1, 2, 7 (raw)
        // -> sum 10, corrected 10 + 40 = 50, mean 12.5 -> 13 (round half up in the high mul),
        // + (-10) = 3.
        let q = QuantizedReduce {
            multiplier: fold_mean_divisor(quantize_multiplier(1.0).unwrap(), 4),
            input_zero_point: -10,
            output_zero_point: -10,
            count: 4,
            qmin: -128,
            qmax: 127,
        };
        assert_eq!(q.requantize(10), 3);
        // Saturation at the top of the range.
        assert_eq!(q.requantize(4 * 127 + 200), 127);
    }

    #[test]
    fn max_starts_from_lowest_unless_all_dims_are_reduced() {
        let (g, _) = ReduceGeometry::new(&[1, 2], &[1], false).unwrap();
        let mut s = Scratch::new(&g);
        let mut out = [0.0f32];
        // All dims are not reduced here (dim 0 is kept): -inf never beats f32::MIN.
        reduce_max_typed(&g, &mut s, &[f32::NEG_INFINITY; 2], &mut out).unwrap();
        assert_eq!(out, [f32::MIN]);
        let (g, _) = ReduceGeometry::new(&[1, 2], &[0, 1], false).unwrap();
        let mut s = Scratch::new(&g);
        reduce_max_typed(&g, &mut s, &[f32::NEG_INFINITY; 2], &mut out).unwrap();
        assert_eq!(out, [f32::NEG_INFINITY]);
    }

    #[test]
    fn arg_max_takes_the_first_maximum() {
        // [2, 3] over axis 1: rows [1, 5, 5] -> 1 and [7, 7, 0] -> 0.
        let mut got = [9usize; 2];
        arg_max_into(&[1i8, 5, 5, 7, 7, 0], 2, 3, 1, |k, i| got[k] = i);
        assert_eq!(got, [1, 0]);
        // Over axis 0 ([2, 3] -> 3 outputs): column maxima at rows 1, 1, 0.
        let mut got = [9usize; 3];
        arg_max_into(&[1i8, 5, 5, 7, 7, 0], 1, 2, 3, |k, i| got[k] = i);
        assert_eq!(got, [1, 1, 0]);
        // A NaN in the middle is skipped.
        let mut got = [9usize; 1];
        arg_max_into(&[1.0f32, f32::NAN, 2.0], 1, 3, 1, |k, i| got[k] = i);
        assert_eq!(got, [2]);
    }
}
