//! Matrix products: FULLY_CONNECTED (here), BATCH_MATMUL ([`batch_matmul`]) and their hybrid
//! flavours (`hybrid`), float and integer side by side.
//!
//! The ground truth is TFLite's reference kernels as LiteRT 2.3.0 runs them with
//! `OpResolverType.BUILTIN_REF` (`kernels/fully_connected.cc`, `kernels/batch_matmul.cc`,
//! `internal/reference/fully_connected.h`, `internal/reference/integer_ops/fully_connected.h`,
//! `internal/reference/batch_matmul.h`, `internal/reference/portable_tensor_utils.cc`). Two facts
//! about them shape these files:
//!
//! - FULLY_CONNECTED's reference integer kernels with 8-bit weights (int8, legacy uint8,
//!   uint8 in / int16 out, int16x8; per-tensor and per-channel) do *not* requantize with a
//!   fixed-point multiplier: they compute `round(acc * (input_scale * filter_scale /
//!   output_scale))` in double precision (see `fixed_point::requantize_double`). Int16 weights and
//!   BATCH_MATMUL do use the fixed-point multiplier of [`octet_core::fixed_point`].
//! - The hybrid ("dynamic range") kernels quantize each input row on the fly to int8
//!   (symmetrically, or asymmetrically with a zero point), multiply with the int8 weights in
//!   `int32`, and scale the sum back to float with the row's and the weights' scales, with the
//!   integer quirks of LiteRT's x86 build (see `hybrid`).
//!
//! Float FULLY_CONNECTED and the integer flavours with 32-bit accumulators run on octet-linalg's
//! GEMMs when their weights and bias are known at prepare time; the others (int64 accumulators,
//! uint8 in / int16 out, weights computed at run time) keep plain loops that keep the
//! accumulator (`accumulate_*`) apart from requantization.

mod batch_matmul;
mod hybrid;
#[cfg(test)]
mod tests;

use std::marker::PhantomData;

use octet_core::fixed_point::{double_effective_scale, quantize_multiplier};
use octet_core::{
    ActivationFunction, DType, FullyConnectedOptions, QuantParams, TensorData, WeightsFormat,
};
use octet_linalg::frame::gemm_q::QWeights;

pub use batch_matmul::batch_matmul;
use hybrid::hybrid_fc;

use super::common::{activation_range_f32, activation_range_quantized, per_tensor_quant};
use super::gemm::{
    FloatGemm, GemmShape, InputLayout, QElem, QuantGemm, QuantGemmSpec, Requantize, Scales,
    Weights, clamp_f32,
};
use crate::{Kernel, OpContext, OpIo, RuntimeError, TensorInfo};

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

/// `max(x, lo)` then `min(.., hi)` on integers, as the reference kernels clamp (no panic when
/// `lo > hi`).
fn clamp_i32(x: i32, lo: i32, hi: i32) -> i32 {
    x.max(lo).min(hi)
}

/// `Σ (w + filter_offset) * (x + input_offset)` over one row, in `i32` with the wrap-around
/// TFLite's `int32_t` accumulator has in practice.
fn accumulate_i32<I: QElem, W: QElem>(
    input: &[I],
    weights: &[W],
    input_offset: i32,
    filter_offset: i32,
) -> i32 {
    input.iter().zip(weights).fold(0i32, |acc, (&x, &w)| {
        let product = (w.to_i32().wrapping_add(filter_offset))
            .wrapping_mul(x.to_i32().wrapping_add(input_offset));
        acc.wrapping_add(product)
    })
}

/// [`accumulate_i32`] with `i64` products and sum (int16 activations with an int64 bias,
/// int16 weights).
fn accumulate_i64<I: QElem, W: QElem>(
    input: &[I],
    weights: &[W],
    input_offset: i32,
    filter_offset: i32,
) -> i64 {
    input.iter().zip(weights).fold(0i64, |acc, (&x, &w)| {
        let product = (i64::from(w.to_i32()) + i64::from(filter_offset))
            * (i64::from(x.to_i32()) + i64::from(input_offset));
        acc.wrapping_add(product)
    })
}

/// The legacy uint8-in / int16-out accumulator: each offset operand is truncated to `int16_t`
/// before the product, as `reference_ops::FullyConnected(..., int16_t* output)` does.
fn accumulate_i32_int16_operands<I: QElem, W: QElem>(
    input: &[I],
    weights: &[W],
    input_offset: i32,
    filter_offset: i32,
) -> i32 {
    input.iter().zip(weights).fold(0i32, |acc, (&x, &w)| {
        let x = x.to_i32().wrapping_add(input_offset) as i16;
        let w = w.to_i32().wrapping_add(filter_offset) as i16;
        acc.wrapping_add(i32::from(x) * i32::from(w))
    })
}

/// The shape of one FULLY_CONNECTED: `batches` rows of `depth` inputs, `units` outputs each.
#[derive(Debug, Clone, Copy)]
struct FcDims {
    batches: usize,
    depth: usize,
    units: usize,
}

impl FcDims {
    fn gemm_shape(&self) -> GemmShape {
        GemmShape::dense(self.batches, self.depth, self.units)
    }
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
    if let Some(TensorData::F32(weights)) = ctx.constant(1)? {
        let bias = match bias {
            None => Some(None),
            Some(_) => match ctx.constant(2)? {
                Some(TensorData::F32(b)) => Some(Some(b)),
                _ => None,
            },
        };
        if let Some(bias) = bias {
            let gemm = FloatGemm::new(
                ctx.isa(),
                dims.gemm_shape(),
                InputLayout::Dense,
                &weights,
                bias.as_deref(),
                (act_min, act_max),
            )
            .map_err(|e| ctx.invalid(e))?;
            return Ok(Box::new(FloatGemmFc { gemm }));
        }
    }
    Ok(Box::new(FloatFc {
        dims,
        act_min,
        act_max,
    }))
}

/// Float FULLY_CONNECTED with weights and bias known at prepare time, on a GEMM.
struct FloatGemmFc {
    gemm: FloatGemm,
}

impl Kernel for FloatGemmFc {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let parts = io.parts::<f32>(0)?;
        let input = parts.inputs.get::<f32>(0)?;
        self.gemm
            .run(input, parts.output, parts.scratch, parts.threads)
    }
}

/// Integer FULLY_CONNECTED with a 32-bit accumulator and weights and bias known at prepare
/// time, on a quantized GEMM: input `I`, output `O`.
struct QuantGemmFc<I, O> {
    gemm: QuantGemm,
    types: PhantomData<fn() -> (I, O)>,
}

impl<I: QElem, O: QElem> Kernel for QuantGemmFc<I, O> {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let parts = io.parts::<O>(0)?;
        let input = parts.inputs.get::<I>(0)?;
        self.gemm
            .run::<I, O>(input, parts.output, parts.scratch, parts.threads)
    }

    fn scratch_bytes(&self) -> usize {
        self.gemm.scratch_bytes()
    }
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
        return Ok(Weights::Input(1));
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

    /// The values of a constant of this type.
    fn from_data(data: TensorData) -> Option<Vec<Self>>;

    /// The values as a quantized GEMM reads them (`None`: no GEMM takes this type).
    fn gemm_weights(values: &[Self]) -> Option<QWeights<'_>>;
}

impl PackedWeights for i8 {
    fn weights(
        ctx: &OpContext<'_>,
        filter: &TensorInfo,
        q: &QuantParams,
    ) -> Result<Weights<Self>, RuntimeError> {
        int8_weights(ctx, filter, q)
    }
    fn from_data(data: TensorData) -> Option<Vec<Self>> {
        match data {
            TensorData::I8(v) => Some(v),
            _ => None,
        }
    }
    fn gemm_weights(values: &[Self]) -> Option<QWeights<'_>> {
        Some(QWeights::I8(values))
    }
}

impl PackedWeights for u8 {
    fn weights(
        _: &OpContext<'_>,
        _: &TensorInfo,
        _: &QuantParams,
    ) -> Result<Weights<Self>, RuntimeError> {
        Ok(Weights::Input(1))
    }
    fn from_data(data: TensorData) -> Option<Vec<Self>> {
        match data {
            TensorData::U8(v) => Some(v),
            _ => None,
        }
    }
    fn gemm_weights(values: &[Self]) -> Option<QWeights<'_>> {
        Some(QWeights::U8(values))
    }
}

impl PackedWeights for i16 {
    fn weights(
        _: &OpContext<'_>,
        _: &TensorInfo,
        _: &QuantParams,
    ) -> Result<Weights<Self>, RuntimeError> {
        Ok(Weights::Input(1))
    }
    fn from_data(data: TensorData) -> Option<Vec<Self>> {
        match data {
            TensorData::I16(v) => Some(v),
            _ => None,
        }
    }
    fn gemm_weights(_: &[Self]) -> Option<QWeights<'_>> {
        None
    }
}

fn quantized_fc<I: QElem, W: QElem + PackedWeights, O: QElem>(
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

    let scales = if flavour == Flavour::Int16x16 {
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
        Scales::Fixed(multipliers)
    } else {
        Scales::Double(
            filter_scales
                .iter()
                .map(|&f| double_effective_scale(input_scale, f, output_scale))
                .collect(),
        )
    };
    let (act_min, act_max) =
        activation_range_quantized(o.activation, output.dtype, output_scale, output_zero_point)
            .ok_or_else(|| ctx.unsupported_types())?;

    let requantize = Requantize {
        scales,
        output_offset: output_zero_point,
        act_min,
        act_max,
    };
    let weights = W::weights(ctx, filter, q)?;
    let input_offset = input_zero_point.wrapping_neg();
    // Per-channel kernels assume symmetric weights and ignore the zero point.
    let filter_offset = if per_channel {
        0
    } else {
        filter_zero_point.wrapping_neg()
    };
    if accum == Accum::I32 {
        let operands = FcOperands {
            input_offset,
            filter_offset,
            requantize: &requantize,
        };
        if let Some(gemm) = quant_gemm_fc::<I, W, O>(ctx, dims, &weights, &operands)? {
            return Ok(gemm);
        }
    }
    Ok(Box::new(QuantizedFc::<I, W, O> {
        dims,
        weights,
        accum,
        input_offset,
        filter_offset,
        requantize,
        clamp_before_offset: flavour == Flavour::UInt8Int16,
        _types: PhantomData,
    }))
}

/// The offsets and requantization of an integer FULLY_CONNECTED.
struct FcOperands<'a> {
    input_offset: i32,
    filter_offset: i32,
    requantize: &'a Requantize,
}

/// An integer FULLY_CONNECTED with a 32-bit accumulator on a quantized GEMM, when its weights
/// and bias are known and some GEMM family fits its operands.
fn quant_gemm_fc<I: QElem, W: QElem + PackedWeights, O: QElem>(
    ctx: &OpContext<'_>,
    dims: FcDims,
    weights: &Weights<W>,
    operands: &FcOperands<'_>,
) -> Result<Option<Box<dyn Kernel>>, RuntimeError> {
    let values = match weights {
        Weights::Owned(v) => v.clone(),
        Weights::Input(i) => match ctx.constant(*i)?.and_then(W::from_data) {
            Some(v) => v,
            None => return Ok(None),
        },
    };
    let Some(gemm_weights) = W::gemm_weights(&values) else {
        return Ok(None);
    };
    let bias = if ctx.optional_input(2).is_none() {
        None
    } else {
        match ctx.constant(2)? {
            Some(TensorData::I32(b)) => Some(b),
            _ => return Ok(None),
        }
    };
    let spec = QuantGemmSpec {
        input: I::TYPE,
        input_offset: operands.input_offset,
        weights: gemm_weights,
        weight_offset: operands.filter_offset,
        bias: bias.as_deref(),
        requantize: operands.requantize,
        output: O::TYPE,
    };
    let gemm = QuantGemm::new(ctx.isa(), dims.gemm_shape(), InputLayout::Dense, &spec);
    Ok(gemm.ok().map(|gemm| {
        Box::new(QuantGemmFc::<I, O> {
            gemm,
            types: PhantomData,
        }) as Box<dyn Kernel>
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
    requantize: Requantize,
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

impl<I: QElem, W: QElem, O: QElem> QuantizedFc<I, W, O> {
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
                self.requantize.scale(acc, u)
            }
            Accum::I64BiasI64 | Accum::I64BiasI32 => {
                let acc = accumulate_i64(x, w, io, fo);
                let acc = match bias {
                    BiasData::I64(b) => acc.wrapping_add(b[u]),
                    BiasData::I32(b) => acc.wrapping_add(i64::from(b[u])),
                    BiasData::None => acc,
                };
                self.requantize.scale(acc, u)
            }
        }
    }

    fn finish(&self, scaled: i32) -> O {
        let r = &self.requantize;
        let v = if self.clamp_before_offset {
            clamp_i32(
                scaled,
                r.act_min.wrapping_sub(r.output_offset),
                r.act_max.wrapping_sub(r.output_offset),
            )
            .wrapping_add(r.output_offset)
        } else {
            clamp_i32(scaled.wrapping_add(r.output_offset), r.act_min, r.act_max)
        };
        O::from_clamped(v)
    }
}

impl<I: QElem, W: QElem, O: QElem> Kernel for QuantizedFc<I, W, O> {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let FcDims {
            batches,
            depth,
            units,
        } = self.dims;
        let (inputs, out) = io.single::<O>()?;
        let input = prefix(inputs.get::<I>(0)?, batches * depth, "the input")?;
        let weights = prefix(self.weights.get(&inputs)?, units * depth, "the weights")?;
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
