//! Matrix products: FULLY_CONNECTED and BATCH_MATMUL, float and integer flavours side by side.
//!
//! The ground truth is TFLite's reference kernels as LiteRT 2.3.0 runs them with
//! `OpResolverType.BUILTIN_REF` (`kernels/fully_connected.cc`, `kernels/batch_matmul.cc`,
//! `internal/reference/fully_connected.h`, `internal/reference/integer_ops/fully_connected.h`,
//! `internal/reference/batch_matmul.h`, `internal/reference/portable_tensor_utils.cc`). Two facts
//! about them shape this file:
//!
//! - FULLY_CONNECTED's reference integer kernels with 8-bit weights (int8, legacy uint8,
//!   uint8 in / int16 out, int16x8; per-tensor and per-channel) do *not* requantize with a
//!   fixed-point multiplier: they compute `round(acc * (input_scale * filter_scale /
//!   output_scale))` in double precision (see `fixed_point::requantize_double`). Int16 weights and
//!   BATCH_MATMUL do use the fixed-point multiplier of [`octet_core::fixed_point`].
//! - The hybrid ("dynamic range") kernels quantize each input row on the fly to int8
//!   (symmetrically, or asymmetrically with a zero point), multiply with the int8 weights in
//!   `int32`, and scale the sum back to float with the row's and the weights' scales. The
//!   hybrid FULLY_CONNECTED goes through `tensor_utils`, which LiteRT's x86 wheel compiles to
//!   its SSE versions; two of their integer quirks are reproduced ([`accumulate_hybrid_sse`],
//!   [`row_sum_sse`]). The hybrid BATCH_MATMUL walks its batches in a peculiar way, also
//!   reproduced ([`hybrid_blocks`]).
//!
//! Integer kernels keep the accumulator (`accumulate_*`) apart from requantization, so that a
//! faster accumulator can replace the plain loops without changing a bit.

use std::marker::PhantomData;

use crate::kernels::hybrid_input::{asymmetric_quantize, symmetric_quantize};
use bytemuck::Pod;
use octet_core::fixed_point::{
    QuantizedMultiplier, double_effective_scale, multiply_by_quantized_multiplier,
    multiply_by_quantized_multiplier_i64, quantize_multiplier, requantize_double,
};
use octet_core::{
    ActivationFunction, BatchMatMulOptions, DType, FullyConnectedOptions, QuantParams, TensorData,
    WeightsFormat,
};

use super::common::{activation_range_f32, activation_range_quantized, per_tensor_quant};
use crate::{Inputs, Kernel, OpContext, OpIo, RuntimeError, TensorInfo};

// ---------------------------------------------------------------------------------------------
// Element types
// ---------------------------------------------------------------------------------------------

/// An integer element type that the quantized kernels read or write.
trait QInt: Pod + Send {
    /// The value as `i32`.
    fn widen(self) -> i32;
    /// `v`, already clamped to the type's range, as the type.
    fn narrow(v: i32) -> Self;
}

impl QInt for i8 {
    fn widen(self) -> i32 {
        i32::from(self)
    }
    fn narrow(v: i32) -> Self {
        v as i8
    }
}

impl QInt for u8 {
    fn widen(self) -> i32 {
        i32::from(self)
    }
    fn narrow(v: i32) -> Self {
        v as u8
    }
}

impl QInt for i16 {
    fn widen(self) -> i32 {
        i32::from(self)
    }
    fn narrow(v: i32) -> Self {
        v as i16
    }
}

/// Where a kernel finds its weights at run time.
enum Weights<W> {
    /// In input 1, as stored (constant or computed).
    Input,
    /// Unpacked at build time (int4 / int2 constants).
    Owned(Vec<W>),
}

impl<W: Pod> Weights<W> {
    fn get<'a>(&'a self, inputs: &'a Inputs<'_>, index: usize) -> Result<&'a [W], RuntimeError> {
        match self {
            Weights::Input => inputs.get::<W>(index),
            Weights::Owned(w) => Ok(w),
        }
    }
}

/// Int8 weights of a hybrid kernel: int8 or uint8 bytes read as int8 (as TFLite does), or
/// weights prepared at build time (unpacked int4 / int2, transposed constants).
enum HybridWeights {
    InputBytes,
    Owned(Vec<i8>),
}

impl HybridWeights {
    fn get<'a>(&'a self, inputs: &'a Inputs<'_>) -> Result<&'a [i8], RuntimeError> {
        match self {
            HybridWeights::InputBytes => Ok(bytemuck::cast_slice(inputs.bytes(1)?)),
            HybridWeights::Owned(w) => Ok(w),
        }
    }
}

/// The first `n` elements of `data`, or an evaluation error naming `what`.
fn prefix<'a, T>(data: &'a [T], n: usize, what: &str) -> Result<&'a [T], RuntimeError> {
    data.get(..n).ok_or_else(|| {
        RuntimeError::eval(format!(
            "{what} holds {} elements, {n} expected",
            data.len()
        ))
    })
}

/// The first `n` elements of an output buffer, or an evaluation error.
fn prefix_mut<'a, T>(data: &'a mut [T], n: usize, what: &str) -> Result<&'a mut [T], RuntimeError> {
    let len = data.len();
    data.get_mut(..n)
        .ok_or_else(|| RuntimeError::eval(format!("{what} holds {len} elements, {n} expected")))
}

/// TFLite's `ActivationFunctionWithMinMax` for floats: `min(max(x, lo), hi)` with the
/// comparisons of `std::max`/`std::min`, so a NaN passes through.
fn clamp_f32(x: f32, lo: f32, hi: f32) -> f32 {
    let y = if x < lo { lo } else { x };
    if hi < y { hi } else { y }
}

/// `max(x, lo)` then `min(.., hi)` on integers, as the reference kernels clamp (no panic when
/// `lo > hi`).
fn clamp_i32(x: i32, lo: i32, hi: i32) -> i32 {
    x.max(lo).min(hi)
}

// ---------------------------------------------------------------------------------------------
// Accumulators
// ---------------------------------------------------------------------------------------------

/// `Σ (w + filter_offset) * (x + input_offset)` over one row, in `i32` with the wrap-around
/// TFLite's `int32_t` accumulator has in practice.
fn accumulate_i32<I: QInt, W: QInt>(
    input: &[I],
    weights: &[W],
    input_offset: i32,
    filter_offset: i32,
) -> i32 {
    input.iter().zip(weights).fold(0i32, |acc, (&x, &w)| {
        let product = (w.widen().wrapping_add(filter_offset))
            .wrapping_mul(x.widen().wrapping_add(input_offset));
        acc.wrapping_add(product)
    })
}

/// [`accumulate_i32`] with `i64` products and sum (int16 activations with an int64 bias,
/// int16 weights).
fn accumulate_i64<I: QInt, W: QInt>(
    input: &[I],
    weights: &[W],
    input_offset: i32,
    filter_offset: i32,
) -> i64 {
    input.iter().zip(weights).fold(0i64, |acc, (&x, &w)| {
        let product = (i64::from(w.widen()) + i64::from(filter_offset))
            * (i64::from(x.widen()) + i64::from(input_offset));
        acc.wrapping_add(product)
    })
}

/// The legacy uint8-in / int16-out accumulator: each offset operand is truncated to `int16_t`
/// before the product, as `reference_ops::FullyConnected(..., int16_t* output)` does.
fn accumulate_i32_int16_operands<I: QInt, W: QInt>(
    input: &[I],
    weights: &[W],
    input_offset: i32,
    filter_offset: i32,
) -> i32 {
    input.iter().zip(weights).fold(0i32, |acc, (&x, &w)| {
        let x = x.widen().wrapping_add(input_offset) as i16;
        let w = w.widen().wrapping_add(filter_offset) as i16;
        acc.wrapping_add(i32::from(x) * i32::from(w))
    })
}

/// `Σ w * q` over one row of int8 weights and int8 quantized inputs (hybrid BATCH_MATMUL).
fn accumulate_hybrid(weights: &[i8], quantized: &[i8]) -> i32 {
    weights.iter().zip(quantized).fold(0i32, |acc, (&w, &q)| {
        acc.wrapping_add(i32::from(w) * i32::from(q))
    })
}

/// `Σ w * q` as the hybrid FULLY_CONNECTED computes it in LiteRT's x86 build, whose
/// `tensor_utils::MatrixBatchVectorMultiplyAccumulate` is the SSE one. Its blocks of 16 columns
/// move the input's sign onto the weight with `_mm_sign_epi8` before an unsigned-by-signed
/// multiply, and negating a weight of -128 wraps back to -128: for the columns in those blocks
/// a weight of -128 times a negative input contributes `128 * q` instead of `-128 * q`. (The
/// TFLite quantizer keeps weights in [-127, 127], where this never happens.)
fn accumulate_hybrid_sse(weights: &[i8], quantized: &[i8]) -> i32 {
    let blocked = weights.len() & !15;
    weights
        .iter()
        .zip(quantized)
        .enumerate()
        .fold(0i32, |acc, (c, (&w, &q))| {
            let product = if c < blocked && w == i8::MIN && q < 0 {
                128 * i32::from(q)
            } else {
                i32::from(w) * i32::from(q)
            };
            acc.wrapping_add(product)
        })
}

/// The sum of one weight row as LiteRT's x86 `SseReductionSumVector` computes it: blocks of 16
/// columns add pairs into eight `int16` lanes (which wrap), an SSE4.1 postamble adds the next 8
/// columns one per lane, the lanes are summed in `int32`, then the rest column by column.
fn row_sum_sse(row: &[i8]) -> i32 {
    let mut lanes = [0i16; 8];
    let blocked = row.len() & !15;
    let (blocks, rest) = row.split_at(blocked);
    for block in blocks.chunks_exact(16) {
        for (lane, pair) in lanes.iter_mut().zip(block.chunks_exact(2)) {
            *lane = lane.wrapping_add(i16::from(pair[0]) + i16::from(pair[1]));
        }
    }
    let rest = if rest.len() >= 8 {
        for (lane, &v) in lanes.iter_mut().zip(&rest[..8]) {
            *lane = lane.wrapping_add(i16::from(v));
        }
        &rest[8..]
    } else {
        rest
    };
    let sum = lanes
        .iter()
        .fold(0i32, |s, &l| s.wrapping_add(i32::from(l)));
    rest.iter().fold(sum, |s, &v| s.wrapping_add(i32::from(v)))
}

/// How a kernel turns its accumulator back into the output's scale, per output channel.
enum Requant {
    /// TFLite's float-scale reference overloads: `fixed_point::requantize_double`.
    Double(Vec<f64>),
    /// A fixed-point multiplier per channel.
    Fixed(Vec<QuantizedMultiplier>),
}

impl Requant {
    fn apply_i32(&self, acc: i32, channel: usize) -> i32 {
        match self {
            Requant::Double(s) => requantize_double(f64::from(acc), s[channel]),
            Requant::Fixed(m) => multiply_by_quantized_multiplier(acc, m[channel]),
        }
    }

    fn apply_i64(&self, acc: i64, channel: usize) -> i32 {
        match self {
            Requant::Double(s) => requantize_double(acc as f64, s[channel]),
            Requant::Fixed(m) => multiply_by_quantized_multiplier_i64(acc, m[channel]),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// FULLY_CONNECTED
// ---------------------------------------------------------------------------------------------

/// The shape of one FULLY_CONNECTED: `batches` rows of `depth` inputs, `units` outputs each.
#[derive(Debug, Clone, Copy)]
struct FcDims {
    batches: usize,
    depth: usize,
    units: usize,
}

/// FULLY_CONNECTED: `output[b, u] = Σ_d input[b, d] * weights[u, d] + bias[u]`, the input
/// flattened to `[batches, depth]` (`depth` = the weights' second dimension), the output
/// `[batches, units]` or, with `keep_num_dims`, the input's shape with its last dimension
/// replaced by `units`.
///
/// Flavours: float32; int8 (per-tensor or per-channel int8/int4/int2 weights, int32 bias);
/// legacy uint8 (uint8 weights with a zero point, uint8 or int16 output); int16x8 (int16
/// activations, int8/int4/int2 weights, int64 or int32 bias); int16 activations with int16
/// weights; hybrid (float activations, int8/uint8/int4/int2 weights with per-tensor or
/// per-channel scales, inputs quantized per row symmetrically or asymmetrically). The shuffled
/// 4x16 weights format and sparse weights are not supported.
pub fn fully_connected(
    ctx: &OpContext<'_>,
    o: &FullyConnectedOptions,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    if o.weights_format != WeightsFormat::Default {
        return Err(ctx.unsupported(
            "the shuffled 4x16 int8 weights format (an optimized kernel's layout) is not supported",
        ));
    }
    if !(2..=3).contains(&ctx.num_inputs()) || ctx.num_outputs() != 1 {
        return Err(ctx.invalid(format!(
            "expects 2 or 3 inputs and 1 output, has {} and {}",
            ctx.num_inputs(),
            ctx.num_outputs()
        )));
    }
    let input = ctx.input(0)?;
    let filter = ctx.input(1)?;
    let bias = ctx.optional_input(2);
    let output = ctx.output(0)?;
    if weights_are_sparse(ctx) {
        return Err(ctx.unsupported("sparse weights (densify them first)"));
    }
    let Some(dims) = fc_dims(ctx, input, filter, bias, output, o.keep_num_dims)? else {
        return Ok(Box::new(ZeroFill));
    };

    use DType::{Float32 as F32, Int2, Int4, Int8 as I8, Int16 as I16, UInt8 as U8};
    match (input.dtype, filter.dtype, output.dtype) {
        (F32, F32, F32) => float_fc(ctx, o, dims, bias),
        (F32, I8 | U8 | Int4 | Int2, F32) => hybrid_fc(ctx, o, dims, filter, bias),
        (I8, I8 | Int4 | Int2, I8) => quantized_fc::<i8, i8, i8>(ctx, o, dims, Flavour::Int8),
        (U8, U8, U8) => quantized_fc::<u8, u8, u8>(ctx, o, dims, Flavour::UInt8),
        (U8, U8, I16) => quantized_fc::<u8, u8, i16>(ctx, o, dims, Flavour::UInt8Int16),
        (I16, I8 | Int4 | Int2, I16) => {
            quantized_fc::<i16, i8, i16>(ctx, o, dims, Flavour::Int16x8)
        }
        (I16, I16, I16) => quantized_fc::<i16, i16, i16>(ctx, o, dims, Flavour::Int16x16),
        _ => Err(ctx.unsupported_types()),
    }
}

/// True when input 1 is stored sparse.
fn weights_are_sparse(ctx: &OpContext<'_>) -> bool {
    ctx.operator()
        .inputs
        .get(1)
        .copied()
        .flatten()
        .and_then(|id| ctx.subgraph.tensor(id))
        .is_some_and(|t| t.sparsity.is_some())
}

/// Checks the shapes and works out the dimensions; `None` when there is nothing to multiply (no
/// weight columns: TFLite fills the output with zero bytes; no rows or units: the output is
/// empty).
fn fc_dims(
    ctx: &OpContext<'_>,
    input: &TensorInfo,
    filter: &TensorInfo,
    bias: Option<&TensorInfo>,
    output: &TensorInfo,
    keep_num_dims: bool,
) -> Result<Option<FcDims>, RuntimeError> {
    let [units, depth] = filter.shape[..] else {
        return Err(ctx.invalid(format!(
            "the weights must be 2-D [units, depth], not {:?}",
            filter.shape
        )));
    };
    if let Some(bias) = bias
        && bias.num_elements() != units
    {
        return Err(ctx.invalid(format!(
            "the bias has {} elements for {units} output units",
            bias.num_elements()
        )));
    }
    if keep_num_dims && input.shape.last() != Some(&depth) {
        return Err(ctx.invalid(format!(
            "keep_num_dims needs the input's last dimension ({:?}) to be the weights' depth {depth}",
            input.shape
        )));
    }
    if depth == 0 || units == 0 {
        return Ok(None);
    }
    let total = input.num_elements();
    if !total.is_multiple_of(depth) {
        return Err(ctx.invalid(format!(
            "the input {:?} does not split into rows of the weights' depth {depth}",
            input.shape
        )));
    }
    let batches = total / depth;
    if output.num_elements() != batches * units {
        return Err(ctx.invalid(format!(
            "the output {:?} should hold {batches} x {units} elements",
            output.shape
        )));
    }
    if batches == 0 {
        return Ok(None);
    }
    Ok(Some(FcDims {
        batches,
        depth,
        units,
    }))
}

/// Writes zero bytes to output 0 (FULLY_CONNECTED with empty weight rows).
struct ZeroFill;

impl Kernel for ZeroFill {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (_, out) = io.split(0)?;
        out.fill(0);
        Ok(())
    }
}

/// Rejects the fused activations that do not clip (tanh, sign bit), as TFLite's Prepare does for
/// non-hybrid kernels.
fn clipping_activation(
    ctx: &OpContext<'_>,
    activation: ActivationFunction,
) -> Result<(), RuntimeError> {
    match activation {
        ActivationFunction::None
        | ActivationFunction::Relu
        | ActivationFunction::ReluN1To1
        | ActivationFunction::Relu6 => Ok(()),
        other => Err(ctx.invalid(format!(
            "fused activation {other:?} is only supported by hybrid kernels"
        ))),
    }
}

fn float_fc(
    ctx: &OpContext<'_>,
    o: &FullyConnectedOptions,
    dims: FcDims,
    bias: Option<&TensorInfo>,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    clipping_activation(ctx, o.activation)?;
    if bias.is_some_and(|b| b.dtype != DType::Float32) {
        return Err(ctx.unsupported_types());
    }
    let (act_min, act_max) = activation_range_f32(o.activation);
    Ok(Box::new(FloatFc {
        dims,
        act_min,
        act_max,
    }))
}

/// Float FULLY_CONNECTED (`reference_ops::FullyConnected` for float).
struct FloatFc {
    dims: FcDims,
    act_min: f32,
    act_max: f32,
}

impl Kernel for FloatFc {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let FcDims {
            batches,
            depth,
            units,
        } = self.dims;
        let (inputs, out) = io.single::<f32>()?;
        let input = prefix(inputs.get::<f32>(0)?, batches * depth, "the input")?;
        let weights = prefix(inputs.get::<f32>(1)?, units * depth, "the weights")?;
        let bias = if inputs.is_present(2) {
            Some(prefix(inputs.get::<f32>(2)?, units, "the bias")?)
        } else {
            None
        };
        let out = prefix_mut(out, batches * units, "the output")?;
        for (x, out_row) in input.chunks_exact(depth).zip(out.chunks_exact_mut(units)) {
            for (u, (w, y)) in weights.chunks_exact(depth).zip(out_row).enumerate() {
                let total = x.iter().zip(w).fold(0f32, |t, (&a, &b)| t + a * b);
                let bias_value = bias.map_or(0.0, |b| b[u]);
                *y = clamp_f32(total + bias_value, self.act_min, self.act_max);
            }
        }
        Ok(())
    }
}

/// The integer flavours of FULLY_CONNECTED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    /// int8 activations, int8 (or int4 / int2) weights, int32 bias.
    Int8,
    /// Legacy uint8 activations and weights, int32 bias.
    UInt8,
    /// uint8 activations and weights, int16 output.
    UInt8Int16,
    /// int16 activations, int8 (or int4 / int2) weights, int64 (or int32) bias.
    Int16x8,
    /// int16 activations and weights, int32 (or int64) bias, fixed-point requantization.
    Int16x16,
}

/// Which accumulator a quantized kernel uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accum {
    /// `int32`, bias `int32`.
    I32,
    /// `int32` with `int16` operands, bias `int32` (legacy uint8 -> int16).
    I32Int16Operands,
    /// `int64`, bias `int64`.
    I64BiasI64,
    /// `int64`, bias `int32`.
    I64BiasI32,
}

/// The filter's `(scales, zero points)`, checked against `units` when per-channel.
fn filter_quant<'a>(
    ctx: &OpContext<'_>,
    filter: &'a TensorInfo,
    units: usize,
) -> Result<&'a QuantParams, RuntimeError> {
    let q = filter.quant.as_ref().ok_or_else(|| {
        ctx.invalid(format!(
            "the weights ('{}') have no quantization parameters",
            filter.name
        ))
    })?;
    if q.is_per_axis() && (q.quantized_dimension != 0 || q.scale.len() != units) {
        return Err(ctx.unsupported(format!(
            "per-channel weights must have one scale per output unit along axis 0 \
             ({} scales along axis {})",
            q.scale.len(),
            q.quantized_dimension
        )));
    }
    Ok(q)
}

/// Unpacked weights for int4 / int2 constants, `Weights::Input` otherwise.
fn int8_weights(
    ctx: &OpContext<'_>,
    filter: &TensorInfo,
    q: &QuantParams,
) -> Result<Weights<i8>, RuntimeError> {
    if !matches!(filter.dtype, DType::Int4 | DType::Int2) {
        return Ok(Weights::Input);
    }
    if q.zero_point.iter().any(|&z| z != 0) {
        return Err(ctx.invalid("int4 / int2 weights must have zero points of 0"));
    }
    match ctx.constant(1)? {
        Some(TensorData::I8(w)) => Ok(Weights::Owned(w)),
        _ => Err(ctx.unsupported(format!("{} weights computed at run time", filter.dtype))),
    }
}

/// Reads packed weights for a kernel whose weight type is `W`: only int8 kernels unpack.
trait PackedWeights: Sized {
    fn weights(
        ctx: &OpContext<'_>,
        filter: &TensorInfo,
        q: &QuantParams,
    ) -> Result<Weights<Self>, RuntimeError>;
}

impl PackedWeights for i8 {
    fn weights(
        ctx: &OpContext<'_>,
        filter: &TensorInfo,
        q: &QuantParams,
    ) -> Result<Weights<Self>, RuntimeError> {
        int8_weights(ctx, filter, q)
    }
}

impl PackedWeights for u8 {
    fn weights(
        _: &OpContext<'_>,
        _: &TensorInfo,
        _: &QuantParams,
    ) -> Result<Weights<Self>, RuntimeError> {
        Ok(Weights::Input)
    }
}

impl PackedWeights for i16 {
    fn weights(
        _: &OpContext<'_>,
        _: &TensorInfo,
        _: &QuantParams,
    ) -> Result<Weights<Self>, RuntimeError> {
        Ok(Weights::Input)
    }
}

fn quantized_fc<I: QInt, W: QInt + PackedWeights, O: QInt>(
    ctx: &OpContext<'_>,
    o: &FullyConnectedOptions,
    dims: FcDims,
    flavour: Flavour,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    clipping_activation(ctx, o.activation)?;
    let input = ctx.input(0)?;
    let filter = ctx.input(1)?;
    let bias = ctx.optional_input(2);
    let output = ctx.output(0)?;
    let (input_scale, input_zero_point) = per_tensor_quant(ctx, input, "input 0")?;
    let (output_scale, output_zero_point) = per_tensor_quant(ctx, output, "the output")?;
    let q = filter_quant(ctx, filter, dims.units)?;
    let per_channel = q.is_per_axis();
    let filter_scales: Vec<f32> = if per_channel {
        q.scale.clone()
    } else {
        vec![q.scale.first().copied().unwrap_or(0.0); dims.units]
    };
    let filter_zero_point = i32::try_from(q.zero_point.first().copied().unwrap_or(0))
        .map_err(|_| ctx.invalid("the weights' zero point does not fit int32"))?;
    if per_channel
        && !matches!(
            flavour,
            Flavour::Int8 | Flavour::Int16x8 | Flavour::Int16x16
        )
    {
        return Err(ctx.invalid("per-channel weights need int8 or int16 activations"));
    }
    let is_int16 = matches!(flavour, Flavour::Int16x8 | Flavour::Int16x16);
    if is_int16 && (input_zero_point != 0 || output_zero_point != 0) {
        return Err(ctx.invalid("int16 activations must have zero points of 0"));
    }

    if !per_channel {
        // GetQuantizedConvolutionMultipler's checks (TFLite's Prepare fails on them).
        let product = f64::from(input_scale * filter_scales.first().copied().unwrap_or(0.0));
        if product.is_nan() || product < 0.0 {
            return Err(ctx.invalid("input scale x weights scale must be non-negative"));
        }
        if let Some(bias) = bias {
            let bias_scale = bias.scale_zero_point().map_or(0.0, |(s, _)| s);
            let diff = (f64::from(input_scale) * f64::from(filter_scales[0])
                - f64::from(bias_scale))
            .abs();
            let ratio = diff / f64::from(output_scale);
            if ratio.is_nan() || ratio > 0.02 {
                return Err(ctx.invalid(format!(
                    "the bias scale {bias_scale} is not input scale x weights scale \
                     ({input_scale} x {})",
                    filter_scales[0]
                )));
            }
        }
    }

    let accum = match (flavour, bias.map(|b| b.dtype)) {
        (Flavour::Int8 | Flavour::UInt8, None | Some(DType::Int32)) => Accum::I32,
        (Flavour::UInt8Int16, None | Some(DType::Int32)) => Accum::I32Int16Operands,
        // TFLite reads an int16x8 bias as int64 unless quantized_bias_type says int32.
        (Flavour::Int16x8, b) => match (o.quantized_bias_type, b) {
            (DType::Int32, None | Some(DType::Int32)) => Accum::I32,
            (DType::Float32 | DType::Int64, None | Some(DType::Int64)) => Accum::I64BiasI64,
            _ => return Err(ctx.unsupported_types()),
        },
        // ... and an int16x16 bias as int32 unless quantized_bias_type says int64.
        (Flavour::Int16x16, b) => match (o.quantized_bias_type, b) {
            (DType::Int64, None | Some(DType::Int64)) => Accum::I64BiasI64,
            (DType::Float32 | DType::Int32, None | Some(DType::Int32)) => Accum::I64BiasI32,
            _ => return Err(ctx.unsupported_types()),
        },
        _ => return Err(ctx.unsupported_types()),
    };

    let requant = if flavour == Flavour::Int16x16 {
        let reals: Vec<f64> = if per_channel {
            filter_scales
                .iter()
                .map(|&f| double_effective_scale(input_scale, f, output_scale))
                .collect()
        } else {
            let real = f64::from(input_scale * filter_scales[0]) / f64::from(output_scale);
            vec![real; dims.units]
        };
        let multipliers = reals
            .into_iter()
            .map(quantize_multiplier)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ctx.invalid(format!("output multiplier: {e}")))?;
        Requant::Fixed(multipliers)
    } else {
        Requant::Double(
            filter_scales
                .iter()
                .map(|&f| double_effective_scale(input_scale, f, output_scale))
                .collect(),
        )
    };
    let (act_min, act_max) =
        activation_range_quantized(o.activation, output.dtype, output_scale, output_zero_point)
            .ok_or_else(|| ctx.unsupported_types())?;

    Ok(Box::new(QuantizedFc::<I, W, O> {
        dims,
        weights: W::weights(ctx, filter, q)?,
        accum,
        input_offset: input_zero_point.wrapping_neg(),
        // Per-channel kernels assume symmetric weights and ignore the zero point.
        filter_offset: if per_channel {
            0
        } else {
            filter_zero_point.wrapping_neg()
        },
        output_offset: output_zero_point,
        act_min,
        act_max,
        requant,
        clamp_before_offset: flavour == Flavour::UInt8Int16,
        _types: PhantomData,
    }))
}

/// Integer FULLY_CONNECTED (`reference_integer_ops::FullyConnected[PerChannel]` and the legacy
/// uint8 `reference_ops::FullyConnected` overloads).
struct QuantizedFc<I, W, O> {
    dims: FcDims,
    weights: Weights<W>,
    accum: Accum,
    input_offset: i32,
    filter_offset: i32,
    output_offset: i32,
    act_min: i32,
    act_max: i32,
    requant: Requant,
    /// The uint8 -> int16 kernel clamps to `[min - offset, max - offset]` before adding the
    /// output offset.
    clamp_before_offset: bool,
    _types: PhantomData<fn() -> (I, O)>,
}

/// The bias of an integer kernel as read at run time.
enum BiasData<'a> {
    None,
    I32(&'a [i32]),
    I64(&'a [i64]),
}

impl<I: QInt, W: QInt, O: QInt> QuantizedFc<I, W, O> {
    /// The requantized value of output unit `u` for input row `x` (before the output offset).
    fn output_value(&self, x: &[I], w: &[W], bias: &BiasData<'_>, u: usize) -> i32 {
        let (io, fo) = (self.input_offset, self.filter_offset);
        match self.accum {
            Accum::I32 | Accum::I32Int16Operands => {
                let acc = if self.accum == Accum::I32 {
                    accumulate_i32(x, w, io, fo)
                } else {
                    accumulate_i32_int16_operands(x, w, io, fo)
                };
                let acc = match bias {
                    BiasData::I32(b) => acc.wrapping_add(b[u]),
                    _ => acc,
                };
                self.requant.apply_i32(acc, u)
            }
            Accum::I64BiasI64 | Accum::I64BiasI32 => {
                let acc = accumulate_i64(x, w, io, fo);
                let acc = match bias {
                    BiasData::I64(b) => acc.wrapping_add(b[u]),
                    BiasData::I32(b) => acc.wrapping_add(i64::from(b[u])),
                    BiasData::None => acc,
                };
                self.requant.apply_i64(acc, u)
            }
        }
    }

    fn finish(&self, scaled: i32) -> O {
        let v = if self.clamp_before_offset {
            clamp_i32(
                scaled,
                self.act_min.wrapping_sub(self.output_offset),
                self.act_max.wrapping_sub(self.output_offset),
            )
            .wrapping_add(self.output_offset)
        } else {
            clamp_i32(
                scaled.wrapping_add(self.output_offset),
                self.act_min,
                self.act_max,
            )
        };
        O::narrow(v)
    }
}

impl<I: QInt, W: QInt, O: QInt> Kernel for QuantizedFc<I, W, O> {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let FcDims {
            batches,
            depth,
            units,
        } = self.dims;
        let (inputs, out) = io.single::<O>()?;
        let input = prefix(inputs.get::<I>(0)?, batches * depth, "the input")?;
        let weights = prefix(self.weights.get(&inputs, 1)?, units * depth, "the weights")?;
        let bias = if !inputs.is_present(2) {
            BiasData::None
        } else if matches!(self.accum, Accum::I64BiasI64) {
            BiasData::I64(prefix(inputs.get::<i64>(2)?, units, "the bias")?)
        } else {
            BiasData::I32(prefix(inputs.get::<i32>(2)?, units, "the bias")?)
        };
        let out = prefix_mut(out, batches * units, "the output")?;
        for (x, out_row) in input.chunks_exact(depth).zip(out.chunks_exact_mut(units)) {
            for (u, (w, y)) in weights.chunks_exact(depth).zip(out_row).enumerate() {
                *y = self.finish(self.output_value(x, w, &bias, u));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Hybrid (dynamic-range) kernels: float activations quantized on the fly.
// ---------------------------------------------------------------------------------------------

/// Quantizes `rows` rows of `depth` floats each, one scale (and zero point) per row, as TFLite's
/// `BatchQuantizeFloats` does.
fn batch_quantize(
    input: &[f32],
    depth: usize,
    asymmetric: bool,
    quantized: &mut [i8],
    scaling: &mut [f32],
    offsets: &mut [i32],
) {
    let rows = input
        .chunks_exact(depth)
        .zip(quantized.chunks_exact_mut(depth))
        .zip(scaling.iter_mut().zip(offsets.iter_mut()));
    for ((x, q), (scale, offset)) in rows {
        if asymmetric {
            (*scale, *offset) = asymmetric_quantize(x, q);
        } else {
            *scale = symmetric_quantize(x, q);
            *offset = 0;
        }
    }
}

/// TFLite `ApplyActivationToVector` (the hybrid kernels accept every fused activation).
fn apply_activation(activation: ActivationFunction, values: &mut [f32]) {
    // std::max(a, b) is `(a < b) ? b : a`, std::min(a, b) is `(b < a) ? b : a`.
    let max = |a: f32, b: f32| if a < b { b } else { a };
    let min = |a: f32, b: f32| if b < a { b } else { a };
    match activation {
        ActivationFunction::None => {}
        ActivationFunction::Relu => values.iter_mut().for_each(|v| *v = max(0.0, *v)),
        ActivationFunction::ReluN1To1 => {
            values.iter_mut().for_each(|v| *v = max(-1.0, min(*v, 1.0)));
        }
        ActivationFunction::Relu6 => values.iter_mut().for_each(|v| *v = max(0.0, min(*v, 6.0))),
        ActivationFunction::Tanh => values.iter_mut().for_each(|v| *v = v.tanh()),
        ActivationFunction::SignBit => values
            .iter_mut()
            .for_each(|v| *v = if v.is_sign_negative() { 1.0 } else { 0.0 }),
    }
}

/// The weights' scale of a hybrid kernel.
enum WeightScale {
    PerTensor(f32),
    PerChannel(Vec<f32>),
}

/// Int8 weights for a hybrid kernel: int8 and uint8 are read as stored (uint8 bytes as int8, as
/// TFLite does), int4 / int2 constants are unpacked now.
fn hybrid_weights(
    ctx: &OpContext<'_>,
    filter: &TensorInfo,
    q: &QuantParams,
) -> Result<HybridWeights, RuntimeError> {
    match int8_weights(ctx, filter, q)? {
        Weights::Owned(w) => Ok(HybridWeights::Owned(w)),
        Weights::Input => Ok(HybridWeights::InputBytes),
    }
}

fn hybrid_fc(
    ctx: &OpContext<'_>,
    o: &FullyConnectedOptions,
    dims: FcDims,
    filter: &TensorInfo,
    bias: Option<&TensorInfo>,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    if bias.is_some_and(|b| b.dtype != DType::Float32) {
        return Err(ctx.unsupported_types());
    }
    let q = filter_quant(ctx, filter, dims.units)?;
    let scale = if q.is_per_axis() {
        WeightScale::PerChannel(q.scale.clone())
    } else {
        WeightScale::PerTensor(q.scale.first().copied().unwrap_or(0.0))
    };
    Ok(Box::new(HybridFc {
        dims,
        weights: hybrid_weights(ctx, filter, q)?,
        scale,
        asymmetric: o.asymmetric_quantize_inputs,
        activation: o.activation,
        quantized: vec![0; dims.batches * dims.depth],
        scaling: vec![0.0; dims.batches],
        offsets: vec![0; dims.batches],
        row_sums: vec![0; dims.units],
        row_sums_ready: false,
    }))
}

/// Hybrid FULLY_CONNECTED (TFLite `EvalHybridDense` with the portable tensor utils).
struct HybridFc {
    dims: FcDims,
    weights: HybridWeights,
    scale: WeightScale,
    asymmetric: bool,
    activation: ActivationFunction,
    quantized: Vec<i8>,
    scaling: Vec<f32>,
    offsets: Vec<i32>,
    /// Row sums of the weights; like TFLite, computed on the first run and kept.
    row_sums: Vec<i32>,
    row_sums_ready: bool,
}

impl Kernel for HybridFc {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let FcDims {
            batches,
            depth,
            units,
        } = self.dims;
        let (inputs, out) = io.single::<f32>()?;
        let input = prefix(inputs.get::<f32>(0)?, batches * depth, "the input")?;
        let weights = prefix(self.weights.get(&inputs)?, units * depth, "the weights")?;
        let out = prefix_mut(out, batches * units, "the output")?;
        if inputs.is_present(2) {
            let bias = prefix(inputs.get::<f32>(2)?, units, "the bias")?;
            out.chunks_exact_mut(units)
                .for_each(|row| row.copy_from_slice(bias));
        } else {
            out.fill(0.0);
        }
        // TFLite skips the product when the whole input is zero.
        if input.iter().all(|&v| v == 0.0) {
            apply_activation(self.activation, out);
            return Ok(());
        }

        batch_quantize(
            input,
            depth,
            self.asymmetric,
            &mut self.quantized,
            &mut self.scaling,
            &mut self.offsets,
        );
        if let WeightScale::PerTensor(s) = self.scale {
            self.scaling.iter_mut().for_each(|f| *f *= s);
        }
        if !self.row_sums_ready {
            for (sum, w) in self.row_sums.iter_mut().zip(weights.chunks_exact(depth)) {
                *sum = row_sum_sse(w);
            }
            self.row_sums_ready = true;
        }

        let rows = self
            .quantized
            .chunks_exact(depth)
            .zip(self.scaling.iter().zip(&self.offsets))
            .zip(out.chunks_exact_mut(units));
        for ((q, (&batch_scale, &batch_offset)), out_row) in rows {
            let units = weights.chunks_exact(depth).zip(&self.row_sums);
            for (u, ((w, &row_sum), y)) in units.zip(out_row).enumerate() {
                let dot =
                    accumulate_hybrid_sse(w, q).wrapping_sub(row_sum.wrapping_mul(batch_offset));
                let scale = match &self.scale {
                    WeightScale::PerTensor(_) => batch_scale,
                    WeightScale::PerChannel(s) => batch_scale * s[u],
                };
                *y += dot as f32 * scale;
            }
        }
        apply_activation(self.activation, out);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// BATCH_MATMUL
// ---------------------------------------------------------------------------------------------

/// The shape of one BATCH_MATMUL: `rows x depth` times `depth x cols` matrices, with the
/// (broadcast) batch of matrix pairs as offsets into the operands.
#[derive(Debug, Clone)]
struct MatmulDims {
    rows: usize,
    depth: usize,
    cols: usize,
    adj_x: bool,
    adj_y: bool,
    /// For every output matrix, the index of its LHS and RHS matrices.
    pairs: Vec<(usize, usize)>,
}

impl MatmulDims {
    fn lhs_len(&self) -> usize {
        self.rows * self.depth
    }
    fn rhs_len(&self) -> usize {
        self.depth * self.cols
    }
    /// Element `(i, k)` of the (adjointed) LHS matrix in its stored layout.
    fn lhs_index(&self, i: usize, k: usize) -> usize {
        if self.adj_x {
            k * self.rows + i
        } else {
            i * self.depth + k
        }
    }
    /// Element `(k, j)` of the (adjointed) RHS matrix in its stored layout.
    fn rhs_index(&self, k: usize, j: usize) -> usize {
        if self.adj_y {
            j * self.depth + k
        } else {
            k * self.cols + j
        }
    }
}

/// `shape` with leading 1s up to `rank`.
fn extended(shape: &[usize], rank: usize) -> Vec<usize> {
    let mut v = vec![1; rank.saturating_sub(shape.len())];
    v.extend_from_slice(shape);
    v
}

/// Index of each broadcast output batch into an operand with batch dims `dims` (1 broadcasts).
fn batch_indices(out_dims: &[usize], dims: &[usize]) -> Vec<usize> {
    let total: usize = out_dims.iter().product();
    let mut indices = Vec::with_capacity(total);
    for flat in 0..total {
        let mut rest = flat;
        let mut index = 0;
        let mut stride = 1;
        for (&od, &d) in out_dims.iter().zip(dims).rev() {
            let coord = rest % od.max(1);
            rest /= od.max(1);
            if d != 1 {
                index += coord * stride;
            }
            stride *= d;
        }
        indices.push(index);
    }
    indices
}

/// BATCH_MATMUL: `output[..., i, j] = Σ_k lhs'[..., i, k] * rhs'[..., k, j]`, where `lhs'` is the
/// LHS or (with `adj_x`) its transpose over the last two dimensions, likewise `rhs'`, and the
/// leading (batch) dimensions broadcast. Ranks 2 to 5.
///
/// Flavours: float32; int8 with int8 output (fixed-point requantization) or int32 output (raw
/// products, zero points ignored as TFLite does); int16 (int64 accumulator); hybrid (float LHS,
/// int8 RHS with per-tensor or per-channel scales, LHS rows quantized on the fly).
pub fn batch_matmul(
    ctx: &OpContext<'_>,
    o: &BatchMatMulOptions,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    if ctx.num_inputs() != 2 || ctx.num_outputs() != 1 {
        return Err(ctx.invalid(format!(
            "expects 2 inputs and 1 output, has {} and {}",
            ctx.num_inputs(),
            ctx.num_outputs()
        )));
    }
    let lhs = ctx.input(0)?;
    let rhs = ctx.input(1)?;
    let output = ctx.output(0)?;
    let dims = matmul_dims(ctx, lhs, rhs, output, o)?;

    use DType::{Float32 as F32, Int8 as I8, Int16 as I16, Int32 as I32};
    match (lhs.dtype, rhs.dtype, output.dtype) {
        (F32, F32, F32) => Ok(Box::new(FloatMatmul { dims })),
        (I8, I8, I8) => quantized_matmul::<i8>(ctx, dims),
        (I8, I8, I32) => Ok(Box::new(Int8Int32Matmul { dims })),
        (I16, I16, I16) => quantized_matmul::<i16>(ctx, dims),
        (F32, I8, F32) => hybrid_matmul(ctx, o, lhs, rhs, dims),
        _ => Err(ctx.unsupported_types()),
    }
}

fn matmul_dims(
    ctx: &OpContext<'_>,
    lhs: &TensorInfo,
    rhs: &TensorInfo,
    output: &TensorInfo,
    o: &BatchMatMulOptions,
) -> Result<MatmulDims, RuntimeError> {
    for (what, t) in [("LHS", lhs), ("RHS", rhs)] {
        if !(2..=5).contains(&t.rank()) {
            return Err(ctx.invalid(format!(
                "the {what} must have rank 2 to 5, not {:?}",
                t.shape
            )));
        }
    }
    let rank = lhs.rank().max(rhs.rank());
    let l = extended(&lhs.shape, rank);
    let r = extended(&rhs.shape, rank);
    let batch = rank - 2;
    let mut out_batch = Vec::with_capacity(batch);
    for (&ld, &rd) in l[..batch].iter().zip(&r[..batch]) {
        if ld != rd && ld != 1 && rd != 1 {
            return Err(ctx.invalid(format!(
                "batch dimensions of {:?} and {:?} do not broadcast",
                lhs.shape, rhs.shape
            )));
        }
        out_batch.push(if ld != rd && ld == 1 { rd } else { ld });
    }
    let (rows, depth) = if o.adj_x {
        (l[rank - 1], l[rank - 2])
    } else {
        (l[rank - 2], l[rank - 1])
    };
    let (rhs_depth, cols) = if o.adj_y {
        (r[rank - 1], r[rank - 2])
    } else {
        (r[rank - 2], r[rank - 1])
    };
    if depth != rhs_depth {
        return Err(ctx.invalid(format!(
            "cannot multiply {:?} (adj_x {}) by {:?} (adj_y {})",
            lhs.shape, o.adj_x, rhs.shape, o.adj_y
        )));
    }
    let matrices: usize = out_batch.iter().product();
    if output.num_elements() != matrices * rows * cols {
        return Err(ctx.invalid(format!(
            "the output {:?} should hold {matrices} matrices of {rows} x {cols}",
            output.shape
        )));
    }
    let pairs = batch_indices(&out_batch, &l[..batch])
        .into_iter()
        .zip(batch_indices(&out_batch, &r[..batch]))
        .collect();
    Ok(MatmulDims {
        rows,
        depth,
        cols,
        adj_x: o.adj_x,
        adj_y: o.adj_y,
        pairs,
    })
}

/// Float BATCH_MATMUL (`reference_ops::BatchMatMul` for float).
struct FloatMatmul {
    dims: MatmulDims,
}

impl Kernel for FloatMatmul {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let d = &self.dims;
        let (inputs, out) = io.single::<f32>()?;
        let lhs = inputs.get::<f32>(0)?;
        let rhs = inputs.get::<f32>(1)?;
        for_each_matmul_element(d, lhs, rhs, out, |a, b, i, j| {
            (0..d.depth).fold(0f32, |t, k| t + a[d.lhs_index(i, k)] * b[d.rhs_index(k, j)])
        })
    }
}

/// Matrix `index` of `len` elements in `data`.
fn matrix<'a, T>(
    data: &'a [T],
    index: usize,
    len: usize,
    what: &str,
) -> Result<&'a [T], RuntimeError> {
    data.get(index * len..(index + 1) * len)
        .ok_or_else(|| RuntimeError::eval(format!("{what} is too small")))
}

/// Computes every output element of a BATCH_MATMUL: for each pair of broadcast matrices and
/// each `(i, j)`, `element(a, b, i, j)` with `a`, `b` the pair's LHS and RHS matrices.
fn for_each_matmul_element<L, R, O>(
    d: &MatmulDims,
    lhs: &[L],
    rhs: &[R],
    out: &mut [O],
    mut element: impl FnMut(&[L], &[R], usize, usize) -> O,
) -> Result<(), RuntimeError> {
    let out_len = d.rows * d.cols;
    let out = prefix_mut(out, d.pairs.len() * out_len, "the output")?;
    for (&(li, ri), out) in d.pairs.iter().zip(out.chunks_exact_mut(out_len.max(1))) {
        let a = matrix(lhs, li, d.lhs_len(), "the LHS")?;
        let b = matrix(rhs, ri, d.rhs_len(), "the RHS")?;
        for i in 0..d.rows {
            for j in 0..d.cols {
                out[i * d.cols + j] = element(a, b, i, j);
            }
        }
    }
    Ok(())
}

/// `Σ_k (rhs'[k, j] + filter_offset) * (lhs'[i, k] + input_offset)` for one output element of
/// an integer BATCH_MATMUL, in `i64` (exact for int8 and int16 operands).
fn accumulate_matmul<T: QInt>(
    d: &MatmulDims,
    a: &[T],
    b: &[T],
    i: usize,
    j: usize,
    input_offset: i32,
    filter_offset: i32,
) -> i64 {
    (0..d.depth).fold(0i64, |acc, k| {
        let x = i64::from(a[d.lhs_index(i, k)].widen()) + i64::from(input_offset);
        let w = i64::from(b[d.rhs_index(k, j)].widen()) + i64::from(filter_offset);
        acc.wrapping_add(w * x)
    })
}

fn quantized_matmul<T: QInt>(
    ctx: &OpContext<'_>,
    dims: MatmulDims,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    let lhs = ctx.input(0)?;
    let rhs = ctx.input(1)?;
    let output = ctx.output(0)?;
    let (lhs_scale, lhs_zero_point) = per_tensor_quant(ctx, lhs, "the LHS")?;
    // TFLite reads the RHS's first scale and zero point even if it has several.
    let (rhs_scale, rhs_zero_point) = rhs
        .quant
        .as_ref()
        .and_then(|q| {
            let scale = *q.scale.first()?;
            let zero_point = i32::try_from(q.zero_point.first().copied().unwrap_or(0)).ok()?;
            Some((scale, zero_point))
        })
        .ok_or_else(|| ctx.invalid("the RHS has no quantization parameters"))?;
    let (output_scale, output_zero_point) = per_tensor_quant(ctx, output, "the output")?;
    let is_int16 = lhs.dtype == DType::Int16;
    if is_int16 && (lhs_zero_point != 0 || rhs_zero_point != 0 || output_zero_point != 0) {
        return Err(ctx.invalid("int16 operands must have zero points of 0"));
    }
    let product = f64::from(lhs_scale * rhs_scale);
    if product.is_nan() || product < 0.0 {
        return Err(ctx.invalid("LHS scale x RHS scale must be non-negative"));
    }
    let multiplier = quantize_multiplier(product / f64::from(output_scale))
        .map_err(|e| ctx.invalid(format!("output multiplier: {e}")))?;
    let (act_min, act_max) =
        super::common::dtype_range(output.dtype).ok_or_else(|| ctx.unsupported_types())?;
    Ok(Box::new(QuantizedMatmul::<T> {
        dims,
        input_offset: lhs_zero_point.wrapping_neg(),
        filter_offset: rhs_zero_point.wrapping_neg(),
        output_offset: output_zero_point,
        multiplier,
        act_min,
        act_max,
        int64_accumulator: is_int16,
        _type: PhantomData,
    }))
}

/// Integer BATCH_MATMUL with requantized output (`reference_ops::BatchMatMul` with
/// `FullyConnectedParams`): int8 with an `int32` accumulator, int16 with an `int64` one.
struct QuantizedMatmul<T> {
    dims: MatmulDims,
    input_offset: i32,
    filter_offset: i32,
    output_offset: i32,
    multiplier: QuantizedMultiplier,
    act_min: i32,
    act_max: i32,
    int64_accumulator: bool,
    _type: PhantomData<fn() -> T>,
}

impl<T: QInt> Kernel for QuantizedMatmul<T> {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let d = &self.dims;
        let (inputs, out) = io.single::<T>()?;
        let lhs = inputs.get::<T>(0)?;
        let rhs = inputs.get::<T>(1)?;
        for_each_matmul_element(d, lhs, rhs, out, |a, b, i, j| {
            let acc = accumulate_matmul(d, a, b, i, j, self.input_offset, self.filter_offset);
            let scaled = if self.int64_accumulator {
                multiply_by_quantized_multiplier_i64(acc, self.multiplier)
            } else {
                // TFLite's int32 accumulator wraps.
                multiply_by_quantized_multiplier(acc as i32, self.multiplier)
            };
            T::narrow(clamp_i32(
                scaled.wrapping_add(self.output_offset),
                self.act_min,
                self.act_max,
            ))
        })
    }
}

/// Int8 BATCH_MATMUL with int32 output: raw sums of products, no zero points, no rescaling
/// (`reference_ops::BatchMatMul<int8, int8, int32>`).
struct Int8Int32Matmul {
    dims: MatmulDims,
}

impl Kernel for Int8Int32Matmul {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let d = &self.dims;
        let (inputs, out) = io.single::<i32>()?;
        let lhs = inputs.get::<i8>(0)?;
        let rhs = inputs.get::<i8>(1)?;
        for_each_matmul_element(d, lhs, rhs, out, |a, b, i, j| {
            accumulate_matmul(d, a, b, i, j, 0, 0) as i32
        })
    }
}

/// One matrix product of the hybrid BATCH_MATMUL, with the offsets TFLite's reference kernel
/// computes for it.
#[derive(Debug, Clone, Copy)]
struct HybridBlock {
    /// Start of the weights matrix (`[cols, depth]` layout).
    weights: usize,
    /// Start of the quantized LHS matrix (`[rows, depth]` layout).
    quantized: usize,
    /// First scale / zero point of its rows.
    scales: usize,
    /// First row sum of its weights.
    row_sums: usize,
    /// Start of the output matrix.
    output: usize,
}

/// The hybrid BATCH_MATMUL's per-block offsets, exactly as `reference_ops::BatchMatMul` (the
/// hybrid overload) walks its three 5-D batch dimensions. TFLite advances the scale and row-sum
/// pointers by one matrix per batch dimension rather than by the flattened batch index, so with
/// two or more non-trivial batch dimensions it pairs some matrices with another matrix's
/// scales; this reproduces it.
fn hybrid_blocks(lhs_batch: &[usize], rhs_batch: &[usize], d: &MatmulDims) -> Vec<HybridBlock> {
    // TFLite's view: "lhs" is the weights [rhs batch..., cols, depth], "rhs" the input with
    // shape [lhs batch..., depth, rows].
    let mut w_shape = rhs_batch.to_vec();
    w_shape.extend([d.cols, d.depth]);
    let mut x_shape = lhs_batch.to_vec();
    x_shape.extend([d.depth, d.rows]);
    let w5 = extended(&w_shape, 5);
    let x5 = extended(&x_shape, 5);
    let extent = |shape: &[usize], axis: usize| -> usize {
        if shape[axis] == 1 {
            0
        } else {
            shape[axis + 1..].iter().product()
        }
    };
    let broadcast = |a: usize, b: usize| if a == b || a != 1 { a } else { b };
    let bd: Vec<usize> = (0..3).map(|i| broadcast(w5[i], x5[i])).collect();
    let w_ext: Vec<usize> = (0..3).map(|i| extent(&w5, i)).collect();
    let x_ext: Vec<usize> = (0..3).map(|i| extent(&x5, i)).collect();
    let mut blocks = Vec::with_capacity(bd.iter().product());
    for b0 in 0..bd[0] {
        for b1 in 0..bd[1] {
            for b2 in 0..bd[2] {
                let b = [b0, b1, b2];
                let sum = |f: &dyn Fn(usize) -> usize| (0..3).map(|i| b[i] * f(i)).sum::<usize>();
                blocks.push(HybridBlock {
                    weights: sum(&|i| w_ext[i]),
                    quantized: sum(&|i| x_ext[i]),
                    scales: sum(&|i| if x_ext[i] == 0 { 0 } else { d.rows }),
                    row_sums: sum(&|i| if w_ext[i] == 0 { 0 } else { d.cols }),
                    output: ((b0 * bd[1] * bd[2]) + b1 * bd[2] + b2) * d.rows * d.cols,
                });
            }
        }
    }
    blocks
}

fn hybrid_matmul(
    ctx: &OpContext<'_>,
    o: &BatchMatMulOptions,
    lhs: &TensorInfo,
    rhs: &TensorInfo,
    dims: MatmulDims,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    let q = rhs
        .quant
        .as_ref()
        .ok_or_else(|| ctx.invalid("the int8 RHS has no quantization parameters"))?;
    let scale = if q.is_per_axis() {
        let cols_axis = if o.adj_y {
            rhs.rank() - 2
        } else {
            rhs.rank() - 1
        };
        if q.scale.len() != dims.cols || usize::try_from(q.quantized_dimension) != Ok(cols_axis) {
            return Err(ctx.unsupported(format!(
                "per-channel RHS scales must run along the output columns (axis {cols_axis})"
            )));
        }
        WeightScale::PerChannel(q.scale.clone())
    } else {
        WeightScale::PerTensor(q.scale.first().copied().unwrap_or(0.0))
    };
    let mut lhs_batch = &lhs.shape[..lhs.rank() - 2];
    let mut rhs_batch = &rhs.shape[..rhs.rank() - 2];
    let lhs_matrices: usize = lhs_batch.iter().product();
    let rhs_matrices: usize = rhs_batch.iter().product();
    // TFLite "compresses" an RHS [..., 1, X, Y] against an LHS [..., Q, R, S] (not adjointed)
    // into [..., X, Y] and [..., Q * R, S]; this changes the batch walk below.
    let mut block_dims = dims.clone();
    if let (Some((&q, lhs_rest)), Some((&1, rhs_rest))) =
        (lhs_batch.split_last(), rhs_batch.split_last())
        && !o.adj_x
    {
        lhs_batch = lhs_rest;
        rhs_batch = rhs_rest;
        block_dims.rows *= q;
    }
    let blocks = hybrid_blocks(lhs_batch, rhs_batch, &block_dims);
    let quant_rows = lhs_matrices * dims.rows;
    // TFLite sums the rows of the matrices along extended dimensions 1 and 2 only; the others
    // it reads uninitialized.
    let w5 = extended(rhs_batch, 3);
    let summed_rows = w5[1] * w5[2] * dims.cols;
    let row_sums_len = rhs_matrices * dims.cols;
    if o.asymmetric_quantize_inputs && blocks.iter().any(|b| b.row_sums + dims.cols > summed_rows) {
        return Err(ctx.unsupported(format!(
            "asymmetric hybrid BATCH_MATMUL of {:?} by {:?}: TFLite reads weight row sums it \
             never computed",
            lhs.shape, rhs.shape
        )));
    }

    // Every offset must stay inside its buffer (they do for valid shapes; checked once here).
    let (m, n, k) = (dims.rows, dims.cols, dims.depth);
    let bm = block_dims.rows;
    let out_len = dims.pairs.len() * m * n;
    let fits = blocks.iter().all(|b| {
        b.weights + n * k <= rhs_matrices * n * k
            && b.quantized + bm * k <= lhs_matrices * m * k
            && b.scales + bm <= quant_rows
            && b.row_sums + n <= row_sums_len
            && b.output + bm * n <= out_len
    });
    if !fits {
        return Err(ctx.unsupported(format!(
            "hybrid BATCH_MATMUL of {:?} by {:?}: TFLite's batch indexing leaves the buffers",
            lhs.shape, rhs.shape
        )));
    }

    // The weights in [cols, depth] layout: transposed once now when constant.
    let weights = match ctx.constant(1)? {
        Some(TensorData::I8(w)) => {
            let mut t = vec![0i8; w.len()];
            transpose_rhs(&w, &mut t, &dims);
            HybridWeights::Owned(t)
        }
        _ => HybridWeights::InputBytes,
    };
    let rhs_scratch = match weights {
        HybridWeights::Owned(_) => Vec::new(),
        HybridWeights::InputBytes => vec![0; rhs_matrices * n * k],
    };
    Ok(Box::new(HybridMatmul {
        block_rows: block_dims.rows,
        lhs_scratch: if dims.adj_x {
            vec![0.0; lhs_matrices * m * k]
        } else {
            Vec::new()
        },
        dims,
        blocks,
        weights,
        rhs_scratch,
        scale,
        asymmetric: o.asymmetric_quantize_inputs,
        quantized: vec![0; lhs_matrices * m * k],
        scaling: vec![0.0; quant_rows],
        offsets: vec![0; quant_rows],
        row_sums: vec![0; row_sums_len],
        summed_rows,
        row_sums_ready: false,
    }))
}

/// Copies the RHS matrices into `[cols, depth]` layout (a transpose unless `adj_y`).
fn transpose_rhs<T: Copy>(rhs: &[T], out: &mut [T], d: &MatmulDims) {
    let len = d.rhs_len().max(1);
    for (src, dst) in rhs.chunks_exact(len).zip(out.chunks_exact_mut(len)) {
        for j in 0..d.cols {
            for k in 0..d.depth {
                dst[j * d.depth + k] = src[d.rhs_index(k, j)];
            }
        }
    }
}

/// Copies the LHS matrices into `[rows, depth]` layout (a transpose when `adj_x`).
fn transpose_lhs<T: Copy>(lhs: &[T], out: &mut [T], d: &MatmulDims) {
    let len = d.lhs_len().max(1);
    for (src, dst) in lhs.chunks_exact(len).zip(out.chunks_exact_mut(len)) {
        for i in 0..d.rows {
            for k in 0..d.depth {
                dst[i * d.depth + k] = src[d.lhs_index(i, k)];
            }
        }
    }
}

/// Hybrid BATCH_MATMUL (TFLite `EvalHybrid` and the hybrid `reference_ops::BatchMatMul`).
struct HybridMatmul {
    dims: MatmulDims,
    /// Rows of one block (more than `dims.rows` when TFLite compressed the shapes).
    block_rows: usize,
    blocks: Vec<HybridBlock>,
    weights: HybridWeights,
    /// The computed RHS in `[cols, depth]` layout (when it is not a constant).
    rhs_scratch: Vec<i8>,
    /// The LHS in `[rows, depth]` layout (when `adj_x`).
    lhs_scratch: Vec<f32>,
    scale: WeightScale,
    asymmetric: bool,
    quantized: Vec<i8>,
    scaling: Vec<f32>,
    offsets: Vec<i32>,
    /// Row sums of the weights; like TFLite, computed on the first run and kept.
    row_sums: Vec<i32>,
    summed_rows: usize,
    row_sums_ready: bool,
}

impl Kernel for HybridMatmul {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let d = &self.dims;
        let (m, n, k) = (d.rows, d.cols, d.depth);
        let (inputs, out) = io.single::<f32>()?;
        let lhs = prefix(inputs.get::<f32>(0)?, self.quantized.len(), "the LHS")?;
        let lhs = if d.adj_x {
            transpose_lhs(lhs, &mut self.lhs_scratch, d);
            &self.lhs_scratch[..]
        } else {
            lhs
        };
        let weights: &[i8] = match &self.weights {
            HybridWeights::Owned(w) => w,
            HybridWeights::InputBytes => {
                let rhs: &[i8] = bytemuck::cast_slice(inputs.bytes(1)?);
                let rhs = prefix(rhs, self.rhs_scratch.len(), "the RHS")?;
                transpose_rhs(rhs, &mut self.rhs_scratch, d);
                &self.rhs_scratch
            }
        };
        if k > 0 {
            batch_quantize(
                lhs,
                k,
                self.asymmetric,
                &mut self.quantized,
                &mut self.scaling,
                &mut self.offsets,
            );
        }
        if let WeightScale::PerTensor(s) = self.scale {
            self.scaling.iter_mut().for_each(|f| *f *= s);
        }
        if !self.row_sums_ready {
            let rows = weights.chunks_exact(k.max(1)).take(self.summed_rows);
            for (sum, w) in self.row_sums.iter_mut().zip(rows) {
                *sum = row_sum_sse(w);
            }
            self.row_sums_ready = true;
        }

        let out = prefix_mut(out, d.pairs.len() * m * n, "the output")?;
        out.fill(0.0);
        for b in &self.blocks {
            for j in 0..self.block_rows {
                let batch_scale = self.scaling[b.scales + j];
                let batch_offset = self.offsets[b.scales + j] as f32;
                let q = &self.quantized[b.quantized + j * k..][..k];
                for i in 0..n {
                    let w = &weights[b.weights + i * k..][..k];
                    let total = accumulate_hybrid(w, q);
                    let row_sum = self.row_sums[b.row_sums + i];
                    // `total -= row_sum * batch_offset` with a float offset, truncated back.
                    let total = (total as f32 - row_sum as f32 * batch_offset) as i32;
                    let scale = match &self.scale {
                        WeightScale::PerTensor(_) => batch_scale,
                        WeightScale::PerChannel(s) => batch_scale * s[i],
                    };
                    out[b.output + n * j + i] += scale * total as f32;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use octet_core::{
        ActivationFunction, BatchMatMulOptions, DType, FullyConnectedOptions, Model, Op, Operator,
        QuantParams, Shape, Subgraph, Tensor, TensorId,
    };

    use super::*;
    use crate::Interpreter;

    /// One tensor of a single-op test model: constant when `data` is set.
    struct T {
        dtype: DType,
        shape: Vec<i32>,
        quant: Option<QuantParams>,
        data: Option<Vec<u8>>,
    }

    fn t(dtype: DType, shape: &[i32]) -> T {
        T {
            dtype,
            shape: shape.to_vec(),
            quant: None,
            data: None,
        }
    }

    impl T {
        fn q(mut self, scale: f32, zero_point: i64) -> Self {
            self.quant = Some(QuantParams::per_tensor(scale, zero_point));
            self
        }
        fn per_channel(mut self, scales: &[f32], axis: i32) -> Self {
            self.quant = Some(QuantParams::per_axis(
                scales.to_vec(),
                vec![0; scales.len()],
                axis,
            ));
            self
        }
        fn data<P: Pod>(mut self, values: &[P]) -> Self {
            self.data = Some(bytemuck::cast_slice(values).to_vec());
            self
        }
    }

    /// Builds a model with one operator over `tensors` (inputs: every tensor but the last that
    /// is not constant and is used; output: the last tensor), runs it on `inputs` and returns
    /// the output bytes.
    fn run(op: Op, tensors: Vec<T>, op_inputs: &[Option<usize>], inputs: &[&[u8]]) -> Vec<u8> {
        let mut model = Model::default();
        let mut sg = Subgraph::default();
        for (i, spec) in tensors.into_iter().enumerate() {
            let mut tensor = Tensor::new(format!("t{i}"), spec.dtype, Shape::new(spec.shape));
            tensor.quant = spec.quant;
            if let Some(data) = spec.data {
                tensor.buffer = model.add_buffer(data).unwrap();
            }
            sg.add_tensor(tensor).unwrap();
        }
        let output = TensorId((sg.tensors.len() - 1) as u32);
        let ids: Vec<Option<TensorId>> = op_inputs
            .iter()
            .map(|i| i.map(|i| TensorId(i as u32)))
            .collect();
        sg.inputs = ids
            .iter()
            .flatten()
            .copied()
            .filter(|id| sg.tensors[id.index()].buffer.0 == 0)
            .collect();
        sg.outputs = vec![output];
        sg.operators.push(Operator::new(op, ids, vec![output]));
        if model.buffers.is_empty() {
            model.add_buffer(vec![1]).unwrap();
        }
        model.subgraphs.push(sg);
        let mut interpreter = Interpreter::new(&model).unwrap();
        for (i, bytes) in inputs.iter().enumerate() {
            interpreter.set_input(i, bytes).unwrap();
        }
        interpreter.invoke().unwrap();
        interpreter.output(0).unwrap().to_vec()
    }

    fn fc(activation: ActivationFunction) -> Op {
        Op::FullyConnected(FullyConnectedOptions {
            activation,
            ..FullyConnectedOptions::default()
        })
    }

    fn values<P: Pod>(bytes: &[u8]) -> Vec<P> {
        bytes
            .chunks_exact(size_of::<P>())
            .map(bytemuck::pod_read_unaligned)
            .collect()
    }

    fn floats(bytes: &[u8]) -> Vec<f32> {
        values(bytes)
    }

    #[test]
    fn double_requantization_rounds_half_away_from_zero() {
        assert_eq!(requantize_double(5.0, 0.5), 3);
        assert_eq!(requantize_double(-5.0, 0.5), -3);
        assert_eq!(requantize_double(-3.0, 0.5), -2);
        // Out of int32: what x86's conversion gives.
        assert_eq!(requantize_double(3e9, 1.0), i32::MIN);
        assert_eq!(requantize_double(-3e9, 1.0), i32::MIN);
        assert_eq!(double_effective_scale(0.5, 0.25, 2.0), 0.0625);
    }

    #[test]
    fn float_fc_adds_bias_and_clamps() {
        // weights [[1, 2], [3, -4]], bias [0.5, 1]; x = [[2, 3], [1, 1]]:
        // row 0: 1*2 + 2*3 + 0.5 = 8.5, 3*2 - 4*3 + 1 = -5 -> relu 0
        // row 1: 1 + 2 + 0.5 = 3.5, 3 - 4 + 1 = 0.
        let out = run(
            fc(ActivationFunction::Relu),
            vec![
                t(DType::Float32, &[2, 2]),
                t(DType::Float32, &[2, 2]).data(&[1f32, 2.0, 3.0, -4.0]),
                t(DType::Float32, &[2]).data(&[0.5f32, 1.0]),
                t(DType::Float32, &[2, 2]),
            ],
            &[Some(0), Some(1), Some(2)],
            &[bytemuck::cast_slice(&[2f32, 3.0, 1.0, 1.0])],
        );
        assert_eq!(floats(&out), [8.5, 0.0, 3.5, 0.0]);
    }

    #[test]
    fn int8_fc_requantizes_in_double_precision() {
        // Input scale 0.5 (zp 0), weights [[1, 2], [3, -4]] scale 0.25, bias [0, 8] (scale
        // 0.125), output scale 0.25 with zero point 1: the effective scale is 0.5.
        // x = [2, 3]: acc0 = 1*2 + 2*3 = 8 -> 4 -> 5; acc1 = 3*2 - 4*3 + 8 = 2 -> 1 -> 2.
        // x = [1, 1]: acc0 = 3 -> 1.5 -> 2 -> 3; acc1 = -1 + 8 = 7 -> 3.5 -> 4 -> 5.
        // x = [-1, -1]: acc0 = -3 -> -1.5 rounds away from zero to -2 -> -1 (the fixed-point
        // multiplier would give -1 -> 0); acc1 = 1 + 8 = 9 -> 4.5 -> 5 -> 6.
        let out = run(
            fc(ActivationFunction::None),
            vec![
                t(DType::Int8, &[3, 2]).q(0.5, 0),
                t(DType::Int8, &[2, 2]).q(0.25, 0).data(&[1i8, 2, 3, -4]),
                t(DType::Int32, &[2]).q(0.125, 0).data(&[0i32, 8]),
                t(DType::Int8, &[3, 2]).q(0.25, 1),
            ],
            &[Some(0), Some(1), Some(2)],
            &[bytemuck::cast_slice(&[2i8, 3, 1, 1, -1, -1])],
        );
        assert_eq!(bytemuck::cast_slice::<u8, i8>(&out), [5, 2, 3, 5, -1, 6]);
    }

    #[test]
    fn per_channel_int8_fc_ignores_weight_zero_points_and_clamps_relu() {
        // Channel scales 0.5 and 1.0, input scale 1, output scale 1, zero point -3, ReLU
        // (clamp at the zero point -3). x = [1, -2]: acc0 = 4*1 + 1*(-2) = 2 -> 1 -> -2;
        // acc1 = -2*1 + 1*(-2) = -4 -> -4 -> -7 -> clamped to -3.
        let out = run(
            fc(ActivationFunction::Relu),
            vec![
                t(DType::Int8, &[1, 2]).q(1.0, 0),
                t(DType::Int8, &[2, 2])
                    .per_channel(&[0.5, 1.0], 0)
                    .data(&[4i8, 1, -2, 1]),
                t(DType::Int8, &[1, 2]).q(1.0, -3),
            ],
            &[Some(0), Some(1), None],
            &[bytemuck::cast_slice(&[1i8, -2])],
        );
        assert_eq!(bytemuck::cast_slice::<u8, i8>(&out), [-2, -3]);
    }

    #[test]
    fn uint8_fc_applies_both_zero_points() {
        // Input zp 128 (scale 1), weights zp 100 (scale 0.5), output scale 1, zp 10.
        // x = [130, 127] -> [2, -1]; weights [[102, 99]] -> [2, -1]; acc = 4 + 1 = 5 -> 2.5 ->
        // 3 -> 13.
        let out = run(
            fc(ActivationFunction::None),
            vec![
                t(DType::UInt8, &[1, 2]).q(1.0, 128),
                t(DType::UInt8, &[1, 2]).q(0.5, 100).data(&[102u8, 99]),
                t(DType::UInt8, &[1, 1]).q(1.0, 10),
            ],
            &[Some(0), Some(1), None],
            &[&[130u8, 127]],
        );
        assert_eq!(out, [13]);
    }

    #[test]
    fn int16x8_fc_uses_an_int64_bias() {
        // Input scale 1, weights [[100, 100]] scale 1, bias 2^32 (does not fit int32), output
        // scale 2^20: (30000 * 100 * 2 + 2^32) / 2^20 = 4101.73... -> 4102.
        let out = run(
            fc(ActivationFunction::None),
            vec![
                t(DType::Int16, &[1, 2]).q(1.0, 0),
                t(DType::Int8, &[1, 2]).q(1.0, 0).data(&[100i8, 100]),
                t(DType::Int64, &[1]).q(1.0, 0).data(&[1i64 << 32]),
                t(DType::Int16, &[1, 1]).q(1024.0 * 1024.0, 0),
            ],
            &[Some(0), Some(1), Some(2)],
            &[bytemuck::cast_slice(&[30000i16, 30000])],
        );
        let expected = ((30000.0 * 100.0 * 2.0 + 4294967296.0) / 1048576.0f64).round() as i16;
        assert_eq!(expected, 4102);
        assert_eq!(values::<i16>(&out), [expected]);
    }

    #[test]
    fn symmetric_row_quantization() {
        // range 2: scale 2/127, values * 63.5: 63.5 -> 64, -127, 31.75 -> 32.
        let mut q = [0i8; 3];
        let scale = symmetric_quantize(&[1.0, -2.0, 0.5], &mut q);
        assert_eq!(q, [64, -127, 32]);
        assert_eq!(scale, 2.0 / 127.0);
        assert_eq!(symmetric_quantize(&[0.0, 0.0, 0.0], &mut q), 1.0);
        assert_eq!(q, [0, 0, 0]);
    }

    #[test]
    fn asymmetric_row_quantization() {
        // [0, 2.55]: scale 0.01, the zero point from the minimum is -128, so 0 -> -128 and
        // 2.55 -> 127; 1.0 -> -28.
        let mut q = [0i8; 3];
        let (scale, zero_point) = asymmetric_quantize(&[0.0, 2.55, 1.0], &mut q);
        assert_eq!((scale, zero_point), (0.01, -128));
        assert_eq!(q, [-128, 127, -28]);
        // [-1, 1]: scale 2/255, zero points -0.5 from both ends (equal errors pick the max
        // end's), rounded half away from zero to -1.
        let (scale, zero_point) = asymmetric_quantize(&[-1.0, 1.0, 0.0], &mut q);
        assert_eq!((scale, zero_point), ((2.0f64 / 255.0) as f32, -1));
        assert_eq!(q, [-128, 126, -1]);
    }

    #[test]
    fn sse_dot_product_quirk_for_minus_128_weights() {
        // Sixteen weights of -128 against inputs of -1 are in an SSE block: each contributes
        // 128 * -1 instead of +128. The 17th pair is outside the block and correct.
        let w = [-128i8; 17];
        let q = [-1i8; 17];
        assert_eq!(accumulate_hybrid_sse(&w, &q), -16 * 128 + 128);
        assert_eq!(accumulate_hybrid(&w, &q), 17 * 128);
        // Positive inputs are not affected.
        assert_eq!(accumulate_hybrid_sse(&w, &[1; 17]), -17 * 128);
    }

    #[test]
    fn sse_row_sums_wrap_in_int16_lanes() {
        // 130 blocks of 16 values of 127: each of the 8 lanes gets 130 * 254 = 33020, which
        // wraps to 33020 - 65536 = -32516.
        let row = vec![127i8; 16 * 130];
        assert_eq!(row_sum_sse(&row), 8 * (33020 - 65536));
        // Short rows are exact: 16 + 8 + 3 values.
        let row: Vec<i8> = (0..27).map(|i| i as i8 - 13).collect();
        assert_eq!(row_sum_sse(&row), (0..27).map(|i| i - 13).sum::<i32>());
    }

    #[test]
    fn hybrid_fc_quantizes_each_row() {
        // Weights [[2, -1]] scale 0.5, no bias. Row [1, -2]: symmetric scale 2/127, q =
        // [64, -127]; dot = 2*64 + (-1)(-127) = 255, scaled by (2/127) * 0.5: 2.0079 (the
        // unquantized result is (2*1 + (-1)(-2)) * 0.5 = 2).
        let out = run(
            fc(ActivationFunction::None),
            vec![
                t(DType::Float32, &[1, 2]),
                t(DType::Int8, &[1, 2]).q(0.5, 0).data(&[2i8, -1]),
                t(DType::Float32, &[1, 1]),
            ],
            &[Some(0), Some(1), None],
            &[bytemuck::cast_slice(&[1f32, -2.0])],
        );
        let scale = (2.0f32 / 127.0) * 0.5;
        assert_eq!(floats(&out), [255.0 * scale]);
    }

    #[test]
    fn fc_rejects_shuffled_weights() {
        let model_op = Op::FullyConnected(FullyConnectedOptions {
            weights_format: WeightsFormat::Shuffled4x16Int8,
            ..FullyConnectedOptions::default()
        });
        let mut model = Model::default();
        let mut sg = Subgraph::default();
        for shape in [[1, 16], [4, 16], [1, 4]] {
            sg.add_tensor(Tensor::new("t", DType::UInt8, Shape::new(shape.to_vec())))
                .unwrap();
        }
        sg.inputs = vec![TensorId(0), TensorId(1)];
        sg.outputs = vec![TensorId(2)];
        sg.operators.push(Operator::new(
            model_op,
            vec![Some(TensorId(0)), Some(TensorId(1))],
            vec![TensorId(2)],
        ));
        model.subgraphs.push(sg);
        let err = Interpreter::new(&model).unwrap_err();
        assert!(err.to_string().contains("shuffled"), "{err}");
    }

    fn bmm(adj_x: bool, adj_y: bool) -> Op {
        Op::BatchMatMul(BatchMatMulOptions {
            adj_x,
            adj_y,
            asymmetric_quantize_inputs: false,
        })
    }

    #[test]
    fn float_batch_matmul_with_adjoints_and_broadcasting() {
        // [[1, 2], [3, 4]] x [[5, 6], [7, 8]] = [[19, 22], [43, 50]]; the second LHS matrix
        // is the identity, so it reproduces the (broadcast) RHS.
        let lhs = [1f32, 2.0, 3.0, 4.0, 1.0, 0.0, 0.0, 1.0];
        let rhs = [5f32, 6.0, 7.0, 8.0];
        let expected = [19f32, 22.0, 43.0, 50.0, 5.0, 6.0, 7.0, 8.0];
        let transpose = |m: &[f32]| -> Vec<f32> {
            m.chunks(4).flat_map(|c| [c[0], c[2], c[1], c[3]]).collect()
        };
        for (adj_x, adj_y) in [(false, false), (true, false), (false, true), (true, true)] {
            let l = if adj_x { transpose(&lhs) } else { lhs.to_vec() };
            let r = if adj_y { transpose(&rhs) } else { rhs.to_vec() };
            let out = run(
                bmm(adj_x, adj_y),
                vec![
                    t(DType::Float32, &[2, 2, 2]),
                    t(DType::Float32, &[2, 2]),
                    t(DType::Float32, &[2, 2, 2]),
                ],
                &[Some(0), Some(1)],
                &[bytemuck::cast_slice(&l), bytemuck::cast_slice(&r)],
            );
            assert_eq!(floats(&out), expected, "adj_x {adj_x}, adj_y {adj_y}");
        }
    }

    #[test]
    fn int8_batch_matmul_uses_the_fixed_point_multiplier() {
        // Scales 1 x 1 / 2: multiplier 0.5. LHS zp 1, RHS zp 0, output zp 0.
        // [[0, 2]] - 1 = [[-1, 1]]; x [[1], [-2]]: -1 - 2 = -3 -> -1.5, which the fixed-point
        // multiplier rounds to -1 (the double-precision FULLY_CONNECTED would give -2).
        let out = run(
            bmm(false, false),
            vec![
                t(DType::Int8, &[1, 2]).q(1.0, 1),
                t(DType::Int8, &[2, 1]).q(1.0, 0),
                t(DType::Int8, &[1, 1]).q(2.0, 0),
            ],
            &[Some(0), Some(1)],
            &[
                bytemuck::cast_slice(&[0i8, 2]),
                bytemuck::cast_slice(&[1i8, -2]),
            ],
        );
        assert_eq!(bytemuck::cast_slice::<u8, i8>(&out), [-1]);
    }

    #[test]
    fn int8_batch_matmul_to_int32_ignores_zero_points() {
        let out = run(
            bmm(false, false),
            vec![
                t(DType::Int8, &[1, 2]).q(1.0, 5),
                t(DType::Int8, &[2, 1]).q(1.0, 3),
                t(DType::Int32, &[1, 1]),
            ],
            &[Some(0), Some(1)],
            &[
                bytemuck::cast_slice(&[3i8, -4]),
                bytemuck::cast_slice(&[7i8, 2]),
            ],
        );
        assert_eq!(values::<i32>(&out), [13]);
    }

    #[test]
    fn hybrid_batch_walk_reproduces_tflite_indexing() {
        // LHS and RHS with batch [2, 3]: TFLite advances the scales by one matrix per batch
        // dimension, so block (b1, b2) reads the scales of matrix b1 + b2, not 3 * b1 + b2.
        let dims = MatmulDims {
            rows: 4,
            depth: 5,
            cols: 6,
            adj_x: false,
            adj_y: false,
            pairs: vec![(0, 0); 6],
        };
        let blocks = hybrid_blocks(&[2, 3], &[2, 3], &dims);
        let scales: Vec<usize> = blocks.iter().map(|b| b.scales).collect();
        assert_eq!(scales, [0, 4, 8, 4, 8, 12]);
        let quantized: Vec<usize> = blocks.iter().map(|b| b.quantized).collect();
        assert_eq!(quantized, [0, 20, 40, 60, 80, 100]);
        let outputs: Vec<usize> = blocks.iter().map(|b| b.output).collect();
        assert_eq!(outputs, [0, 24, 48, 72, 96, 120]);
    }

    #[test]
    fn hybrid_batch_matmul_per_tensor() {
        // LHS row [1, -2] (symmetric scale 2/127, q = [64, -127]); RHS [[2], [-1]] scale 0.5:
        // 64*2 + 127 = 255 -> 255 * (2/127 * 0.5).
        let out = run(
            bmm(false, false),
            vec![
                t(DType::Float32, &[1, 2]),
                t(DType::Int8, &[2, 1]).q(0.5, 0).data(&[2i8, -1]),
                t(DType::Float32, &[1, 1]),
            ],
            &[Some(0), Some(1)],
            &[bytemuck::cast_slice(&[1f32, -2.0])],
        );
        let scale = (2.0f32 / 127.0) * 0.5;
        assert_eq!(floats(&out), [scale * 255.0]);
    }
}
