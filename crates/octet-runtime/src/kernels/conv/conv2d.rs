//! CONV_2D: `reference_ops::Conv` (float32, uint8), `reference_integer_ops::ConvPerChannel`
//! (int8, int16x8), `reference_ops::HybridConvPerChannel` and `optimized_ops::HybridConv`
//! (hybrid; TFLite's reference registration runs the latter for per-tensor weights). Grouped
//! convolutions (filter depth a divisor of the input depth) are supported as TFLite does.

use std::marker::PhantomData;

use octet_core::{Conv2DOptions, DType, TensorData};
use octet_linalg::frame::gemm_f32::{F32Clamp, F32Epilogue};
use octet_linalg::frame::gemm_q::{QType, QWeights};

use super::{
    Accumulator, BIAS, DotWindow, FILTER, FilterQuant, FilterZeroPoints, FloatDot, INPUT, QElem,
    QuantDot, Requantize, Spatial, Weights, Window, bias_dtype, check_bias_zero_point, check_len,
    clamp_f32, dims4, int8_weights, known_bias, known_i8, legacy_requantize,
    per_channel_requantize,
};
use crate::kernels::binary::{fused_add, fused_prelu};
use crate::kernels::common::activation_range_f32;
use crate::kernels::gemm::{FloatGemm, GemmShape, InputLayout, QuantGemm, QuantGemmSpec};
use octet_linalg::LinalgError;
use octet_linalg::frame::elementwise::{QuantBinary, QuantElem, QuantPrelu};

/// Float convolutions with fewer input channels than this read a padded copy of their input,
/// each filter row as one tap ([`InputLayout::MergedRows`]): fewer, longer taps.
const MERGE_BELOW_F32: usize = 16;

/// The same for integer convolutions (whose input is copied anyway, converted).
const MERGE_BELOW_Q: usize = 16;
use crate::fusion::FusedOutput;
use crate::kernels::hybrid_input::QuantizedInput;
use crate::{Kernel, OpContext, OpIo, RuntimeError, TensorInfo};

/// The window plus how output channels map to groups of input channels.
#[derive(Debug, Clone, Copy)]
struct ConvShape {
    window: Window,
    /// Input channels each filter reads (`filter.shape[3]`).
    filter_depth: usize,
    /// Output channels per group.
    filters_per_group: usize,
}

impl ConvShape {
    /// Index of the first weight of output channel `oc` at filter position `(fy, fx)`.
    fn filter_tap(&self, oc: usize, fy: usize, fx: usize) -> usize {
        ((oc * self.window.filter_h + fy) * self.window.filter_w + fx) * self.filter_depth
    }

    /// The first input channel output channel `oc` reads.
    fn group_start(&self, oc: usize) -> usize {
        (oc / self.filters_per_group) * self.filter_depth
    }

    /// The convolution as a (grouped) GEMM: one row per output pixel, one tap per filter
    /// position.
    fn gemm_shape(&self) -> GemmShape {
        let w = &self.window;
        GemmShape {
            m: w.batches * w.out_h * w.out_w,
            in_pixels: w.batches * w.in_h * w.in_w,
            in_c: w.in_c,
            groups: w.out_c / self.filters_per_group,
            depth: self.filter_depth,
            per_group: self.filters_per_group,
            taps: w.filter_h * w.filter_w,
        }
    }
}

impl DotWindow for ConvShape {
    fn window(&self) -> &Window {
        &self.window
    }

    fn filter_len(&self) -> usize {
        self.window.out_c * self.window.filter_h * self.window.filter_w * self.filter_depth
    }

    /// The integer accumulator of output element `(b, oy, ox, oc)` without bias:
    /// `sum (filter + filter_offset) * (input + input_offset)` over the taps inside the image.
    #[allow(clippy::too_many_arguments)]
    fn accumulate<A: Accumulator, X: QElem, W: QElem>(
        &self,
        input: &[X],
        filter: &[W],
        input_offset: i32,
        filter_offset: i32,
        b: usize,
        oy: usize,
        ox: usize,
        oc: usize,
    ) -> A {
        let w = &self.window;
        let depth = self.filter_depth;
        let group_start = self.group_start(oc);
        let mut acc = A::default();
        for (fy, iy) in w.rows(oy) {
            for (fx, ix) in w.cols(ox) {
                let x0 = w.input_pixel(b, iy, ix) + group_start;
                let f0 = self.filter_tap(oc, fy, fx);
                let xs = &input[x0..x0 + depth];
                let fs = &filter[f0..f0 + depth];
                for (&x, &f) in xs.iter().zip(fs) {
                    acc = acc.mac(f.to_i32() + filter_offset, x.to_i32() + input_offset);
                }
            }
        }
        acc
    }

    /// The float sum of output element `(b, oy, ox, oc)` without bias, in TFLite's order.
    fn accumulate_f32(
        &self,
        input: &[f32],
        filter: &[f32],
        b: usize,
        oy: usize,
        ox: usize,
        oc: usize,
    ) -> f32 {
        let w = &self.window;
        let depth = self.filter_depth;
        let group_start = self.group_start(oc);
        let mut total = 0.0f32;
        for (fy, iy) in w.rows(oy) {
            for (fx, ix) in w.cols(ox) {
                let x0 = w.input_pixel(b, iy, ix) + group_start;
                let f0 = self.filter_tap(oc, fy, fx);
                let xs = &input[x0..x0 + depth];
                let fs = &filter[f0..f0 + depth];
                for (&x, &f) in xs.iter().zip(fs) {
                    total += x * f;
                }
            }
        }
        total
    }
}

pub(super) fn build(
    ctx: &OpContext<'_>,
    o: &Conv2DOptions,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    let input = ctx.input(INPUT)?;
    let filter = ctx.input(FILTER)?;
    let output = ctx.own_output()?;
    let [out_c, filter_h, filter_w, filter_depth] = dims4(ctx, filter, "filter")?;
    let in_c = dims4(ctx, input, "input")?[3];
    if filter_depth == 0 || in_c % filter_depth != 0 {
        return Err(ctx.invalid(format!(
            "input depth {in_c} is not a multiple of the filter depth {filter_depth}"
        )));
    }
    let groups = in_c / filter_depth;
    if groups == 0 || out_c % groups != 0 {
        return Err(ctx.invalid(format!(
            "{out_c} output channels cannot be split into {groups} groups"
        )));
    }
    let spatial = Spatial {
        padding: o.padding,
        stride_h: o.stride_h,
        stride_w: o.stride_w,
        dilation_h: o.dilation_h,
        dilation_w: o.dilation_w,
    };
    let window = Window::new(ctx, input, (filter_h, filter_w), out_c, output, spatial)?;
    let shape = ConvShape {
        window,
        filter_depth,
        filters_per_group: (out_c / groups).max(1),
    };
    let bias = bias_dtype(ctx, BIAS, out_c)?;

    match (input.dtype, filter.dtype, output.dtype) {
        (DType::Float32, DType::Float32, DType::Float32) => {
            if bias.is_some_and(|d| d != DType::Float32) {
                return Err(ctx.unsupported_types());
            }
            let (act_min, act_max) = activation_range_f32(o.activation);
            if let Some(gemm) = float_gemm(ctx, &shape, (act_min, act_max))? {
                return Ok(gemm);
            }
            no_fused_output(ctx)?;
            Ok(Box::new(FloatConv {
                shape,
                has_bias: bias.is_some(),
                act_min,
                act_max,
            }))
        }
        (DType::Float32, DType::Int8 | DType::Int4, DType::Float32) => {
            no_fused_output(ctx)?;
            if bias.is_some_and(|d| d != DType::Float32) {
                return Err(ctx.unsupported_types());
            }
            build_hybrid(ctx, o, shape, groups, bias.is_some())
        }
        (DType::Int8, DType::Int8 | DType::Int4, DType::Int8) => {
            if bias.is_some_and(|d| d != DType::Int32) {
                return Err(ctx.invalid("int8 CONV_2D needs an int32 bias"));
            }
            check_bias_zero_point(ctx, BIAS)?;
            let (requantize, input_offset) = per_channel_requantize(
                ctx,
                INPUT,
                FILTER,
                o.activation,
                out_c,
                0,
                FilterZeroPoints::MustBeZero,
            )?;
            let weights = int8_weights(ctx, FILTER)?;
            if let Some(values) = known_i8(ctx, &weights)? {
                let operands = QuantOperands {
                    input: QType::I8,
                    input_offset,
                    weights: QWeights::I8(&values),
                    weight_offset: 0,
                    requantize: &requantize,
                };
                if let Some(gemm) = quant_gemm::<i8>(ctx, &shape, &operands)? {
                    return Ok(gemm);
                }
            }
            no_fused_output(ctx)?;
            Ok(Box::new(QuantConv::<i8, i8, i32> {
                shape,
                weights,
                input_offset,
                filter_offset: 0,
                requantize,
                has_bias: bias.is_some(),
                types: PhantomData,
            }))
        }
        (DType::Int16, DType::Int8 | DType::Int4, DType::Int16) => {
            no_fused_output(ctx)?;
            check_bias_zero_point(ctx, BIAS)?;
            let (requantize, input_offset) = per_channel_requantize(
                ctx,
                INPUT,
                FILTER,
                o.activation,
                out_c,
                0,
                FilterZeroPoints::MustBeZero,
            )?;
            let weights = int8_weights(ctx, FILTER)?;
            if input_offset != 0 || requantize.output_offset != 0 {
                return Err(ctx.invalid("int16 CONV_2D needs zero points of 0"));
            }
            // TFLite accumulates in 32 bits when the bias is (declared) int32, else in 64.
            let declared = o.quantized_bias_type;
            if !matches!(declared, DType::Float32 | DType::Int32 | DType::Int64)
                || bias.is_some_and(|d| declared != DType::Float32 && d != declared)
            {
                return Err(ctx.invalid(format!(
                    "quantized_bias_type {declared} does not match the bias"
                )));
            }
            let narrow = match bias {
                Some(DType::Int32) => true,
                Some(DType::Int64) => false,
                Some(_) => return Err(ctx.invalid("int16 CONV_2D needs an int32 or int64 bias")),
                None => declared == DType::Int32,
            };
            let has_bias = bias.is_some();
            if narrow && let Some(values) = known_i8(ctx, &weights)? {
                let operands = QuantOperands {
                    input: QType::I16,
                    input_offset,
                    weights: QWeights::I8(&values),
                    weight_offset: 0,
                    requantize: &requantize,
                };
                if let Some(gemm) = quant_gemm::<i16>(ctx, &shape, &operands)? {
                    return Ok(gemm);
                }
            }
            Ok(if narrow {
                Box::new(QuantConv::<i16, i8, i32> {
                    shape,
                    weights,
                    input_offset,
                    filter_offset: 0,
                    requantize,
                    has_bias,
                    types: PhantomData,
                })
            } else {
                Box::new(QuantConv::<i16, i8, i64> {
                    shape,
                    weights,
                    input_offset,
                    filter_offset: 0,
                    requantize,
                    has_bias,
                    types: PhantomData,
                })
            })
        }
        (DType::UInt8, DType::UInt8, DType::UInt8) => {
            if bias.is_some_and(|d| d != DType::Int32) {
                return Err(ctx.invalid("uint8 CONV_2D needs an int32 bias"));
            }
            check_bias_zero_point(ctx, BIAS)?;
            let (requantize, input_offset, filter_offset) =
                legacy_requantize(ctx, [INPUT, FILTER, BIAS], o.activation, out_c, "CONV_2D")?;
            if let Some(TensorData::U8(values)) = ctx.constant(FILTER)? {
                let operands = QuantOperands {
                    input: QType::U8,
                    input_offset,
                    weights: QWeights::U8(&values),
                    weight_offset: filter_offset,
                    requantize: &requantize,
                };
                if let Some(gemm) = quant_gemm::<u8>(ctx, &shape, &operands)? {
                    return Ok(gemm);
                }
            }
            no_fused_output(ctx)?;
            Ok(Box::new(QuantConv::<u8, u8, i32> {
                shape,
                weights: Weights::Input(FILTER),
                input_offset,
                filter_offset,
                requantize,
                has_bias: bias.is_some(),
                types: PhantomData,
            }))
        }
        _ => Err(ctx.unsupported_types()),
    }
}

/// Float CONV_2D with constant weights and bias on octet-linalg's GEMM; `None` when the weights
/// or the bias are computed at run time (the scalar kernel runs those).
fn float_gemm(
    ctx: &OpContext<'_>,
    shape: &ConvShape,
    clamp: (f32, f32),
) -> Result<Option<Box<dyn Kernel>>, RuntimeError> {
    let Some(TensorData::F32(weights)) = ctx.constant(FILTER)? else {
        return Ok(None);
    };
    let Some(bias) = known_bias(ctx, BIAS, |d| match d {
        TensorData::F32(b) => Some(b),
        _ => None,
    })?
    else {
        return Ok(None);
    };
    let gemm_shape = shape.gemm_shape();
    let merge = gemm_shape.groups == 1 && shape.window.in_c < MERGE_BELOW_F32;
    let layout = InputLayout::of_window(shape.window.linalg(), merge);
    let Ok(gemm) = FloatGemm::new(
        ctx.isa(),
        gemm_shape,
        layout,
        &weights,
        bias.as_deref(),
        clamp,
    ) else {
        return Ok(None);
    };
    // The slopes of a fused PRELU (input `i`), padded for the micro-kernels' whole blocks of
    // columns (64 at most).
    let slopes = |i: usize| match ctx.constant(i)? {
        Some(TensorData::F32(mut alpha)) if alpha.len() == shape.window.out_c => {
            alpha.resize(alpha.len() + 64, 0.0);
            Ok(alpha)
        }
        _ => Err(ctx.invalid("a fused PRELU needs one constant slope per channel")),
    };
    let clamp = |activation| {
        let (min, max) = activation_range_f32(activation);
        F32Clamp { min, max }
    };
    let output = match ctx.fused_output() {
        None => None,
        Some(FusedOutput::Prelu) => Some(FloatOutputStage::Prelu(slopes(FUSED)?)),
        Some(FusedOutput::Add(activation)) => Some(FloatOutputStage::Add(clamp(activation))),
        Some(FusedOutput::AddPrelu(activation)) => Some(FloatOutputStage::AddPrelu(
            clamp(activation),
            slopes(FUSED + 1)?,
        )),
    };
    Ok(Some(Box::new(FloatGemmConv { gemm, output })))
}

/// The extra input of a convolution with a fused output stage: the PRELU's slopes or the
/// ADD's other operand.
const FUSED: usize = 3;

/// An element-wise operator fused into a float convolution's output stage.
enum FloatOutputStage {
    /// PRELU with these slopes, one per output channel.
    Prelu(Vec<f32>),
    /// ADD of input [`FUSED`], then this clamp.
    Add(F32Clamp),
    /// ADD of input [`FUSED`] and this clamp, then PRELU with these slopes (input `FUSED + 1`).
    AddPrelu(F32Clamp, Vec<f32>),
}

/// Float CONV_2D on a GEMM.
struct FloatGemmConv {
    gemm: FloatGemm,
    output: Option<FloatOutputStage>,
}

impl Kernel for FloatGemmConv {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let parts = io.parts::<f32>(0)?;
        let input = parts.inputs.get::<f32>(INPUT)?;
        // Run without its extra input (while observed), the convolution computes its own
        // output; the element-wise operator runs on its own then.
        let epilogue = match &self.output {
            Some(stage) if parts.inputs.is_present(FUSED) => match stage {
                FloatOutputStage::Prelu(alpha) => F32Epilogue::Prelu { alpha },
                FloatOutputStage::Add(clamp) => F32Epilogue::Add {
                    other: parts.inputs.get::<f32>(FUSED)?,
                    clamp: *clamp,
                },
                FloatOutputStage::AddPrelu(clamp, alpha) => F32Epilogue::AddPrelu {
                    other: parts.inputs.get::<f32>(FUSED)?,
                    clamp: *clamp,
                    alpha,
                },
            },
            _ => F32Epilogue::None,
        };
        self.gemm
            .run_fused(input, parts.output, parts.scratch, parts.threads, epilogue)
    }

    fn scratch_bytes(&self) -> usize {
        self.gemm.scratch_bytes()
    }
}

/// The operands of an integer CONV_2D as its builder has them.
struct QuantOperands<'a> {
    input: QType,
    input_offset: i32,
    weights: QWeights<'a>,
    weight_offset: i32,
    requantize: &'a Requantize,
}

/// Integer CONV_2D (input and output `X`, int32 bias) with known weights and bias on
/// octet-linalg's quantized GEMM; `None` when the bias is computed at run time or no GEMM
/// family fits the operands (the scalar kernel runs those).
fn quant_gemm<X: QElem + QuantElem>(
    ctx: &OpContext<'_>,
    shape: &ConvShape,
    operands: &QuantOperands<'_>,
) -> Result<Option<Box<dyn Kernel>>, RuntimeError> {
    let Some(bias) = known_bias(ctx, BIAS, |d| match d {
        TensorData::I32(b) => Some(b),
        _ => None,
    })?
    else {
        return Ok(None);
    };
    let spec = QuantGemmSpec {
        input: operands.input,
        input_offset: operands.input_offset,
        weights: operands.weights.clone(),
        weight_offset: operands.weight_offset,
        bias: bias.as_deref(),
        requantize: operands.requantize,
        output: operands.input,
    };
    let gemm_shape = shape.gemm_shape();
    let merge = gemm_shape.groups == 1 && shape.window.in_c < MERGE_BELOW_Q;
    let layout = InputLayout::of_window(shape.window.linalg(), merge);
    let Ok(gemm) = QuantGemm::new(ctx.isa(), gemm_shape, layout, &spec) else {
        return Ok(None);
    };
    let stage = QuantOutputStage::<X>::new(ctx, shape.window.out_c)?;
    let scratch_bytes = match stage {
        None => gemm.scratch_bytes(),
        Some(_) => gemm
            .finished_scratch_bytes::<X>(ctx.threads())
            .ok_or_else(|| ctx.invalid("the fused output stage's scratch is too large"))?,
    };
    Ok(Some(Box::new(QuantGemmConv::<X> {
        gemm,
        stage,
        out_c: shape.window.out_c,
        scratch_bytes,
    })))
}

/// An error when the operator has a fused output stage: only the GEMM kernels run one.
fn no_fused_output(ctx: &OpContext<'_>) -> Result<(), RuntimeError> {
    match ctx.fused_output() {
        None => Ok(()),
        Some(_) => Err(ctx.invalid(
            "a fused output stage needs a GEMM convolution with constant weights and bias",
        )),
    }
}

/// Element-wise operators fused into an integer convolution's output stage, as their own
/// kernels: run on each block of the convolution's rows while it is in cache.
enum QuantOutputStage<X: QuantElem> {
    /// PRELU.
    Prelu(QuantPrelu<X>),
    /// ADD of input [`FUSED`].
    Add(QuantBinary<X>),
    /// ADD of input [`FUSED`], then PRELU.
    AddPrelu(QuantBinary<X>, QuantPrelu<X>),
}

impl<X: QuantElem> QuantOutputStage<X> {
    /// The stage of `ctx`'s fused output, if it has one.
    fn new(ctx: &OpContext<'_>, out_c: usize) -> Result<Option<Self>, RuntimeError> {
        let Some(fused) = ctx.fused_output() else {
            return Ok(None);
        };
        let conv_out = ctx.own_output()?;
        let prelu = |i: usize, x: &TensorInfo| {
            let slopes: Vec<i32> = match ctx.constant(i)? {
                Some(TensorData::I8(a)) if a.len() == out_c => {
                    a.into_iter().map(i32::from).collect()
                }
                Some(TensorData::U8(a)) if a.len() == out_c => {
                    a.into_iter().map(i32::from).collect()
                }
                _ => return Err(ctx.invalid("a fused PRELU needs one constant slope per channel")),
            };
            fused_prelu::<X>(ctx, [x, ctx.input(i)?, ctx.output(0)?], slopes)
        };
        let add = |out: &TensorInfo, activation| {
            fused_add::<X>(ctx, [conv_out, ctx.input(FUSED)?, out], activation)
        };
        Ok(Some(match fused {
            FusedOutput::Prelu => QuantOutputStage::Prelu(prelu(FUSED, conv_out)?),
            FusedOutput::Add(activation) => QuantOutputStage::Add(add(ctx.output(0)?, activation)?),
            FusedOutput::AddPrelu(activation) => {
                let sum = ctx.fused_intermediate(1)?;
                QuantOutputStage::AddPrelu(add(sum, activation)?, prelu(FUSED + 1, sum)?)
            }
        }))
    }
}

/// Integer CONV_2D on a quantized GEMM: input and output `X`, maybe with a fused output stage.
struct QuantGemmConv<X: QuantElem> {
    gemm: QuantGemm,
    stage: Option<QuantOutputStage<X>>,
    /// Output channels (elements per row).
    out_c: usize,
    scratch_bytes: usize,
}

impl<X: QElem + QuantElem> Kernel for QuantGemmConv<X> {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let parts = io.parts::<X>(0)?;
        let input = parts.inputs.get::<X>(INPUT)?;
        // Run without its extra input (while observed), the convolution computes its own
        // output; the element-wise operators run on their own then.
        let stage = match &self.stage {
            Some(stage) if parts.inputs.is_present(FUSED) => stage,
            _ => {
                return self
                    .gemm
                    .run::<X, X>(input, parts.output, parts.scratch, parts.threads);
            }
        };
        let out_c = self.out_c;
        let other = match stage {
            QuantOutputStage::Prelu(_) => &[][..],
            _ => parts.inputs.get::<X>(FUSED)?,
        };
        let finish = |first: usize, computed: &mut [X], spare: &mut [X], out: &mut [X]| {
            let start = first * out_c;
            let rows = || {
                other
                    .get(start..start + out.len())
                    .ok_or_else(|| LinalgError::Mismatch("fused ADD operand too short".into()))
            };
            match stage {
                QuantOutputStage::Prelu(prelu) => prelu.run(computed, out),
                QuantOutputStage::Add(add) => add.run(computed, rows()?, out),
                QuantOutputStage::AddPrelu(add, prelu) => {
                    add.run(computed, rows()?, spare)?;
                    prelu.run(spare, out)
                }
            }
        };
        self.gemm
            .run_finished(input, parts.output, parts.scratch, parts.threads, &finish)
    }

    fn scratch_bytes(&self) -> usize {
        self.scratch_bytes
    }
}

/// Float CONV_2D.
type FloatConv = FloatDot<ConvShape>;

/// Integer CONV_2D: input and output `X`, weights `W`, accumulator `A` (whose bias type the
/// bias has).
type QuantConv<X, W, A> = QuantDot<ConvShape, X, W, A>;

/// Hybrid CONV_2D: builds the per-channel (asymmetric input) or per-tensor (symmetric input)
/// kernel as TFLite chooses between them.
fn build_hybrid(
    ctx: &OpContext<'_>,
    o: &Conv2DOptions,
    shape: ConvShape,
    groups: usize,
    has_bias: bool,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    let filter = ctx.input(FILTER)?;
    let fq = FilterQuant::of(ctx, filter)?;
    let out_c = shape.window.out_c;
    // TFLite takes the per-channel path when the scales differ, and for grouped convolutions.
    let per_channel =
        (fq.is_per_channel() && fq.scales.iter().any(|&s| s != fq.scales[0])) || groups != 1;
    if per_channel && (fq.scales.len() != out_c || fq.axis != 0) {
        return Err(ctx.invalid(format!(
            "hybrid CONV_2D needs one filter scale per output channel along axis 0, has {}",
            fq.scales.len()
        )));
    }
    let (act_min, act_max) = activation_range_f32(o.activation);
    let w = &shape.window;
    let batch_len = w.in_h * w.in_w * w.in_c;
    Ok(Box::new(HybridConv {
        shape,
        weights: int8_weights(ctx, FILTER)?,
        filter_scales: (0..out_c).map(|c| fq.scale(c)).collect(),
        per_channel,
        has_bias,
        act_min,
        act_max,
        quantized: QuantizedInput::new(w.batches, batch_len),
    }))
}

/// Hybrid CONV_2D: float input quantized per batch, int8 weights, float output.
///
/// Per channel (`HybridConvPerChannel`): asymmetric input, `acc * filter_scale[c] *
/// input_scale[b] + bias`. Per tensor (`HybridConv`): symmetric input,
/// `acc * (input_scale[b] * filter_scale) + bias`.
struct HybridConv {
    shape: ConvShape,
    weights: Weights<i8>,
    filter_scales: Vec<f32>,
    per_channel: bool,
    has_bias: bool,
    act_min: f32,
    act_max: f32,
    quantized: QuantizedInput,
}

impl Kernel for HybridConv {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (inputs, out) = io.single::<f32>()?;
        let input = inputs.get::<f32>(INPUT)?;
        let filter = self.weights.get(&inputs)?;
        let bias = if self.has_bias {
            Some(inputs.get::<f32>(BIAS)?)
        } else {
            None
        };
        let s = &self.shape;
        check_len("input", input.len(), s.window.input_len())?;
        check_len("filter", filter.len(), s.filter_len())?;
        check_len("output", out.len(), s.window.output_len())?;
        if let Some(bias) = bias {
            check_len("bias", bias.len(), s.window.out_c)?;
        }
        self.quantized.quantize(input, self.per_channel);
        if !self.per_channel {
            let filter_scale = self.filter_scales.first().copied().unwrap_or(0.0);
            for scale in &mut self.quantized.scales {
                *scale *= filter_scale;
            }
        }
        let q = &self.quantized;
        s.window.for_each_output(|b, oy, ox, oc, i| {
            let acc: i32 = s.accumulate(&q.values, filter, -q.zero_points[b], 0, b, oy, ox, oc);
            let mut value = if self.per_channel {
                acc as f32 * self.filter_scales[oc] * q.scales[b]
            } else {
                acc as f32 * q.scales[b]
            };
            if let Some(bias) = bias {
                value += bias[oc];
            }
            out[i] = clamp_f32(value, self.act_min, self.act_max);
        });
        Ok(())
    }
}
