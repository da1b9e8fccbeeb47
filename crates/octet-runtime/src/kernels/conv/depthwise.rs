//! DEPTHWISE_CONV_2D: `reference_ops::DepthwiseConv` (float32, uint8),
//! `reference_integer_ops::DepthwiseConvPerChannel` (int8, int16x8) and
//! `DepthwiseConvHybridPerChannel` (hybrid). Output channel `oc` reads input channel
//! `oc / depth_multiplier`; the filter is `[1, height, width, output channels]`.
//!
//! Float32, int8 (int8 or int4 weights) and uint8 with a depth multiplier of 1 and constant
//! weights and bias run on octet-linalg's depthwise kernels, packed when the kernel is built and
//! split by output rows over the threads. The other flavours (depth multiplier above 1, weights
//! computed at run time, int16x8, hybrid) keep the scalar reference code below.

use std::marker::PhantomData;
use std::ops::Range;

use octet_core::{DType, DepthwiseConv2DOptions, TensorData};
use octet_linalg::frame::depthwise::{DwPlan, PackedF32Depthwise, PackedQ8Depthwise, Q8DwParams};
use octet_linalg::frame::gemm_f32::F32Clamp;
use octet_linalg::frame::window::Window2d;
use octet_linalg::{LinalgError, Threads};

use super::{
    Accumulator, BIAS, DotWindow, FILTER, FilterQuant, FilterZeroPoints, FloatDot, INPUT, QElem,
    QuantDot, Requantize, Scales, Spatial, Weights, Window, bias_dtype, check_bias_zero_point,
    check_len, clamp_f32, dims4, int8_weights, legacy_requantize, per_channel_requantize,
};
use crate::kernels::common::activation_range_f32;
use crate::kernels::hybrid_input::QuantizedInput;
use crate::{Kernel, OpContext, OpIo, RuntimeError};

#[derive(Debug, Clone, Copy)]
struct DepthwiseShape {
    window: Window,
    depth_multiplier: usize,
}

impl DepthwiseShape {}

impl DotWindow for DepthwiseShape {
    fn window(&self) -> &Window {
        &self.window
    }

    fn filter_len(&self) -> usize {
        self.window.filter_h * self.window.filter_w * self.window.out_c
    }

    /// The integer accumulator of output element `(b, oy, ox, oc)` without bias.
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
        let ic = oc / self.depth_multiplier;
        let mut acc = A::default();
        for (fy, iy) in w.rows(oy) {
            for (fx, ix) in w.cols(ox) {
                let x = input[w.input_pixel(b, iy, ix) + ic].to_i32();
                let f = filter[(fy * w.filter_w + fx) * w.out_c + oc].to_i32();
                acc = acc.mac(f + filter_offset, x + input_offset);
            }
        }
        acc
    }

    /// The float sum of output element `(b, oy, ox, oc)` without bias.
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
        let ic = oc / self.depth_multiplier;
        let mut total = 0.0f32;
        for (fy, iy) in w.rows(oy) {
            for (fx, ix) in w.cols(ox) {
                total += input[w.input_pixel(b, iy, ix) + ic]
                    * filter[(fy * w.filter_w + fx) * w.out_c + oc];
            }
        }
        total
    }
}

pub(super) fn build(
    ctx: &OpContext<'_>,
    o: &DepthwiseConv2DOptions,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    let input = ctx.input(INPUT)?;
    let filter = ctx.input(FILTER)?;
    let output = ctx.output(0)?;
    let [one, filter_h, filter_w, out_c] = dims4(ctx, filter, "filter")?;
    if one != 1 {
        return Err(ctx.invalid(format!(
            "filter must have shape [1, h, w, channels], has {:?}",
            filter.shape
        )));
    }
    let in_c = dims4(ctx, input, "input")?[3];
    if in_c == 0 || out_c % in_c != 0 {
        return Err(ctx.invalid(format!(
            "{out_c} output channels are not a multiple of {in_c} input channels"
        )));
    }
    // TFLite derives the multiplier from the shapes, except in its int16 and hybrid kernels,
    // which take the option as given (and misbehave when it disagrees with the shapes).
    let depth_multiplier = out_c / in_c;
    let spatial = Spatial {
        padding: o.padding,
        stride_h: o.stride_h,
        stride_w: o.stride_w,
        dilation_h: o.dilation_h,
        dilation_w: o.dilation_w,
    };
    let window = Window::new(ctx, input, (filter_h, filter_w), out_c, output, spatial)?;
    let shape = DepthwiseShape {
        window,
        depth_multiplier: depth_multiplier.max(1),
    };
    let bias = bias_dtype(ctx, BIAS, out_c)?;
    let option_matches = usize::try_from(o.depth_multiplier).ok() == Some(depth_multiplier);
    let check_option = || {
        if option_matches {
            Ok(())
        } else {
            Err(ctx.unsupported(format!(
                "depth_multiplier option {} disagrees with the shapes ({depth_multiplier}); \
                 TFLite's kernel for this flavour would read out of bounds",
                o.depth_multiplier
            )))
        }
    };

    match (input.dtype, filter.dtype, output.dtype) {
        (DType::Float32, DType::Float32, DType::Float32) => {
            if bias.is_some_and(|d| d != DType::Float32) {
                return Err(ctx.unsupported_types());
            }
            let (act_min, act_max) = activation_range_f32(o.activation);
            if let Some(kernel) = linalg_f32(ctx, &shape, act_min, act_max)? {
                return Ok(kernel);
            }
            Ok(Box::new(FloatDepthwise {
                shape,
                has_bias: bias.is_some(),
                act_min,
                act_max,
            }))
        }
        (DType::Float32, DType::Int8, DType::Float32) => {
            if bias.is_some_and(|d| d != DType::Float32) {
                return Err(ctx.unsupported_types());
            }
            check_option()?;
            let fq = FilterQuant::of(ctx, filter)?;
            if filter.shape.get(fq.axis) != Some(&fq.scales.len()) {
                return Err(ctx.invalid(format!(
                    "filter has {} scales, expected one per element of axis {}",
                    fq.scales.len(),
                    fq.axis
                )));
            }
            let (act_min, act_max) = activation_range_f32(o.activation);
            let w = &shape.window;
            Ok(Box::new(HybridDepthwise {
                shape,
                weights: Weights::Input(FILTER),
                // One scale per tensor (axis 0 of length 1) is broadcast; TFLite would read
                // past its one-element array there.
                filter_scales: (0..out_c).map(|c| fq.scale(c)).collect(),
                has_bias: bias.is_some(),
                act_min,
                act_max,
                quantized: QuantizedInput::new(w.batches, w.in_h * w.in_w * w.in_c),
            }))
        }
        (DType::Int8, DType::Int8 | DType::Int4, DType::Int8) => {
            if bias.is_some_and(|d| d != DType::Int32) {
                return Err(ctx.invalid("int8 DEPTHWISE_CONV_2D needs an int32 bias"));
            }
            check_bias_zero_point(ctx, BIAS)?;
            let (requantize, input_offset) = per_channel_requantize(
                ctx,
                INPUT,
                FILTER,
                o.activation,
                out_c,
                3,
                FilterZeroPoints::Ignored,
            )?;
            if let Some(kernel) = linalg_q8(ctx, &shape, &requantize, input_offset, 0, true)? {
                return Ok(kernel);
            }
            Ok(Box::new(QuantDepthwise::<i8, i8, i32> {
                shape,
                weights: int8_weights(ctx, FILTER)?,
                input_offset,
                filter_offset: 0,
                requantize,
                has_bias: bias.is_some(),
                types: PhantomData,
            }))
        }
        (DType::Int16, DType::Int8, DType::Int16) => {
            if bias.is_some_and(|d| d != DType::Int64) {
                return Err(ctx.invalid("int16 DEPTHWISE_CONV_2D needs an int64 bias"));
            }
            check_bias_zero_point(ctx, BIAS)?;
            check_option()?;
            let (requantize, input_offset) = per_channel_requantize(
                ctx,
                INPUT,
                FILTER,
                o.activation,
                out_c,
                3,
                FilterZeroPoints::Ignored,
            )?;
            if input_offset != 0 || requantize.output_offset != 0 {
                return Err(ctx.invalid("int16 DEPTHWISE_CONV_2D needs zero points of 0"));
            }
            Ok(Box::new(QuantDepthwise::<i16, i8, i64> {
                shape,
                weights: Weights::Input(FILTER),
                input_offset: 0,
                filter_offset: 0,
                requantize,
                has_bias: bias.is_some(),
                types: PhantomData,
            }))
        }
        (DType::UInt8, DType::UInt8, DType::UInt8) => {
            if bias.is_some_and(|d| d != DType::Int32) {
                return Err(ctx.invalid("uint8 DEPTHWISE_CONV_2D needs an int32 bias"));
            }
            check_bias_zero_point(ctx, BIAS)?;
            let (requantize, input_offset, filter_offset) = legacy_requantize(
                ctx,
                [INPUT, FILTER, BIAS],
                o.activation,
                out_c,
                "DEPTHWISE_CONV_2D",
            )?;
            if let Some(kernel) =
                linalg_q8(ctx, &shape, &requantize, input_offset, filter_offset, false)?
            {
                return Ok(kernel);
            }
            Ok(Box::new(QuantDepthwise::<u8, u8, i32> {
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

// ---------------------------------------------------------------------------------------------
// octet-linalg kernels.

/// The depthwise plan of a window with a depth multiplier of 1, `None` otherwise.
fn plan(shape: &DepthwiseShape) -> Result<Option<DwPlan>, LinalgError> {
    let w = &shape.window;
    if shape.depth_multiplier != 1 || w.in_c != w.out_c || w.output_len() == 0 {
        return Ok(None);
    }
    let window = Window2d {
        batches: w.batches,
        in_h: w.in_h,
        in_w: w.in_w,
        out_h: w.out_h,
        out_w: w.out_w,
        filter_h: w.filter_h,
        filter_w: w.filter_w,
        stride_h: w.stride_h,
        stride_w: w.stride_w,
        dilation_h: w.dilation_h,
        dilation_w: w.dilation_w,
        pad_top: w.pad_h,
        pad_left: w.pad_w,
    };
    DwPlan::new(&window, w.out_c).map(Some)
}

/// A linalg error met while building, reported against this operator.
fn linalg_error(ctx: &OpContext<'_>, e: LinalgError) -> RuntimeError {
    ctx.invalid(format!("depthwise kernel: {e}"))
}

/// The float kernel on octet-linalg, when the weights and bias are constants.
fn linalg_f32(
    ctx: &OpContext<'_>,
    shape: &DepthwiseShape,
    act_min: f32,
    act_max: f32,
) -> Result<Option<Box<dyn Kernel>>, RuntimeError> {
    let Some(plan) = plan(shape).map_err(|e| linalg_error(ctx, e))? else {
        return Ok(None);
    };
    let Some(TensorData::F32(weights)) = ctx.constant(FILTER)? else {
        return Ok(None);
    };
    let bias = match ctx.optional_input(BIAS) {
        None => None,
        Some(_) => match ctx.constant(BIAS)? {
            Some(TensorData::F32(b)) => Some(b),
            _ => return Ok(None),
        },
    };
    let clamp = F32Clamp {
        min: act_min,
        max: act_max,
    };
    let dw = PackedF32Depthwise::new(ctx.isa(), plan, &weights, bias.as_deref(), clamp)
        .map_err(|e| linalg_error(ctx, e))?;
    Ok(Some(Box::new(LinalgF32Depthwise { dw })))
}

/// The int8 (`signed`) or legacy uint8 kernel on octet-linalg, when the weights and bias are
/// constants and every multiplier is non-negative.
fn linalg_q8(
    ctx: &OpContext<'_>,
    shape: &DepthwiseShape,
    requantize: &Requantize,
    input_offset: i32,
    filter_offset: i32,
    signed: bool,
) -> Result<Option<Box<dyn Kernel>>, RuntimeError> {
    let Some(plan) = plan(shape).map_err(|e| linalg_error(ctx, e))? else {
        return Ok(None);
    };
    let weights: Vec<u8> = match ctx.constant(FILTER)? {
        Some(TensorData::I8(w)) if signed => bytemuck::cast_slice::<i8, u8>(&w).to_vec(),
        Some(TensorData::U8(w)) if !signed => w,
        _ => return Ok(None),
    };
    let bias = match ctx.optional_input(BIAS) {
        None => None,
        Some(_) => match ctx.constant(BIAS)? {
            Some(TensorData::I32(b)) => Some(b),
            _ => return Ok(None),
        },
    };
    let Scales::Fixed(multipliers) = &requantize.scales else {
        return Ok(None);
    };
    if multipliers.iter().any(|m| m.multiplier < 0) {
        return Ok(None);
    }
    let params = Q8DwParams {
        signed,
        input_offset,
        weight_offset: filter_offset,
        multipliers,
        output_zero_point: requantize.output_offset,
        min: requantize.act_min,
        max: requantize.act_max,
    };
    let dw = PackedQ8Depthwise::new(ctx.isa(), plan, &weights, bias.as_deref(), &params)
        .map_err(|e| linalg_error(ctx, e))?;
    Ok(Some(Box::new(LinalgQ8Depthwise { dw })))
}

/// Fewest multiply-adds worth a chunk of a depthwise convolution of its own: about a
/// microsecond and a half of work, which is more than handing a chunk to another thread costs
/// (the smallest layers of the MediaPipe models took four times longer split over two threads).
const MIN_MACS_PER_CHUNK: usize = 1 << 15;

/// Runs `f(rows, out_rows)` over chunks of whole output rows, in parallel when each chunk gets
/// at least [`MIN_MACS_PER_CHUNK`] multiply-adds.
fn run_rows<T: Send>(
    threads: &Threads,
    plan: &DwPlan,
    out: &mut [T],
    f: impl Fn(Range<usize>, &mut [T]) -> Result<(), LinalgError> + Sync + Send,
) -> Result<(), RuntimeError> {
    check_len("output", out.len(), plan.output_len())?;
    let row_len = plan.row_len();
    let macs_per_row = row_len.saturating_mul(plan.taps()).max(1);
    let per_chunk = threads.chunk_units(plan.rows(), MIN_MACS_PER_CHUNK.div_ceil(macs_per_row));
    threads
        .for_each_chunk(out, per_chunk * row_len, |i, chunk| {
            let start = i * per_chunk;
            f(start..start + chunk.len() / row_len, chunk)
        })
        .map_err(|e| RuntimeError::eval(e.to_string()))
}

/// Float DEPTHWISE_CONV_2D on octet-linalg.
struct LinalgF32Depthwise {
    dw: PackedF32Depthwise,
}

impl Kernel for LinalgF32Depthwise {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let parts = io.parts::<f32>(0)?;
        let input = parts.inputs.get::<f32>(INPUT)?;
        let dw = &self.dw;
        run_rows(parts.threads, dw.plan(), parts.output, |rows, out| {
            dw.run(input, rows, out)
        })
    }
}

/// int8 or uint8 DEPTHWISE_CONV_2D on octet-linalg (bytes either way).
struct LinalgQ8Depthwise {
    dw: PackedQ8Depthwise,
}

impl Kernel for LinalgQ8Depthwise {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let parts = io.parts::<u8>(0)?;
        let input = parts.inputs.get::<u8>(INPUT)?;
        let dw = &self.dw;
        run_rows(parts.threads, dw.plan(), parts.output, |rows, out| {
            dw.run(input, rows, out)
        })
    }
}

/// Float DEPTHWISE_CONV_2D.
type FloatDepthwise = FloatDot<DepthwiseShape>;

/// Integer DEPTHWISE_CONV_2D: input and output `X`, weights `W`, accumulator `A`.
type QuantDepthwise<X, W, A> = QuantDot<DepthwiseShape, X, W, A>;

/// Hybrid DEPTHWISE_CONV_2D: float input quantized asymmetrically per batch, int8 weights,
/// `acc * (filter_scale[c] * input_scale[b]) + bias`.
struct HybridDepthwise {
    shape: DepthwiseShape,
    weights: Weights<i8>,
    filter_scales: Vec<f32>,
    has_bias: bool,
    act_min: f32,
    act_max: f32,
    quantized: QuantizedInput,
}

impl Kernel for HybridDepthwise {
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
        self.quantized.quantize(input, true);
        let q = &self.quantized;
        s.window.for_each_output(|b, oy, ox, oc, i| {
            let acc: i32 = s.accumulate(&q.values, filter, -q.zero_points[b], 0, b, oy, ox, oc);
            let mut value = acc as f32;
            value *= self.filter_scales[oc] * q.scales[b];
            if let Some(bias) = bias {
                value += bias[oc];
            }
            out[i] = clamp_f32(value, self.act_min, self.act_max);
        });
        Ok(())
    }
}
