//! TRANSPOSE_CONV: `reference_ops::TransposeConv` (float32, uint8),
//! `reference_integer_ops::TransposeConv` (int8, int16x8) and `HybridTransposeConv` (hybrid).
//!
//! Inputs are TFLite's: the output shape (int32), the weights `[out_c, h, w, in_c]`, the data
//! input and an optional bias. The kernels scatter every input element into the output window
//! it influences, then add the bias and (integer kernels) requantize, in TFLite's order.

use std::marker::PhantomData;

use octet_core::{DType, TensorData, TransposeConvOptions};
use octet_linalg::frame::gemm_q::{QType, QWeights};

use super::{
    Accumulator, FilterQuant, FilterZeroPoints, QElem, Requantize, Window, bias_dtype,
    check_bias_zero_point, check_len, clamp_f32, dims4, known_bias, legacy_requantize, out_size,
    padding_before, per_channel_requantize, taps,
};
use crate::io::Inputs;
use crate::kernels::common::activation_range_f32;
use crate::kernels::gemm::{FloatGemm, GemmShape, InputLayout, QuantGemm, QuantGemmSpec};
use crate::kernels::hybrid_input::QuantizedInput;
use crate::{Kernel, OpContext, OpIo, RuntimeError};

const OUTPUT_SHAPE: usize = 0;
const FILTER: usize = 1;
const INPUT: usize = 2;
const BIAS: usize = 3;

/// The geometry of a transposed convolution: `window` maps the *output* (as a convolution's
/// input) onto the data input, so `in_*` are the data input's sizes and `out_*` the output's.
#[derive(Debug, Clone, Copy)]
struct TransposeShape {
    window: Window,
}

impl TransposeShape {
    /// The gather form of the transposed convolution as a GEMM: one row per output pixel, one
    /// tap per filter position (most of them in the zero row when the stride exceeds 1).
    fn gemm_shape(&self) -> GemmShape {
        let w = &self.window;
        GemmShape {
            m: w.batches * w.out_h * w.out_w,
            in_pixels: w.batches * w.in_h * w.in_w,
            in_c: w.in_c,
            groups: 1,
            depth: w.in_c,
            per_group: w.out_c,
            taps: w.filter_h * w.filter_w,
        }
    }

    fn filter_len(&self) -> usize {
        let w = &self.window;
        w.out_c * w.filter_h * w.filter_w * w.in_c
    }

    /// Scatters `sum (input + input_offset) * (filter + filter_offset)` into `acc` (one
    /// accumulator per output element), in TFLite's loop order.
    fn scatter<A: Accumulator, X: QElem, W: QElem>(
        &self,
        input: &[X],
        filter: &[W],
        input_offset: i32,
        filter_offset: i32,
        acc: &mut [A],
    ) {
        acc.fill(A::default());
        self.for_each_product(|_, x, o, _, f| {
            acc[o] = acc[o].mac(
                input[x].to_i32() + input_offset,
                filter[f].to_i32() + filter_offset,
            );
        });
    }

    /// Checks the output-shape input (computed at run time in some models) against the static
    /// output shape the kernel was built for.
    fn check_output_shape(&self, inputs: &Inputs<'_>) -> Result<(), RuntimeError> {
        let w = &self.window;
        let expected = [w.batches, w.out_h, w.out_w, w.out_c];
        let values = inputs.get::<i32>(OUTPUT_SHAPE)?;
        let same = values.len() == 4
            && values
                .iter()
                .zip(expected)
                .all(|(&v, e)| usize::try_from(v).ok() == Some(e));
        if !same {
            return Err(RuntimeError::eval(format!(
                "output shape input {values:?} differs from the output tensor's {expected:?}"
            )));
        }
        Ok(())
    }

    /// Index of weight `(oc, fy, fx, ic)`.
    fn filter_index(&self, oc: usize, fy: usize, fx: usize, ic: usize) -> usize {
        let w = &self.window;
        ((oc * w.filter_h + fy) * w.filter_w + fx) * w.in_c + ic
    }

    /// Calls `f(batch, input_index, output_index, output_channel, filter_index)` for every
    /// product of the scatter, in TFLite's order (input pixel, input channel, filter row,
    /// filter column, output channel), skipping outputs outside the image.
    fn for_each_product(&self, mut f: impl FnMut(usize, usize, usize, usize, usize)) {
        let w = &self.window;
        for b in 0..w.batches {
            for iy in 0..w.in_h {
                let oy0 = (iy * w.stride_h) as isize - w.pad_h as isize;
                for ix in 0..w.in_w {
                    let ox0 = (ix * w.stride_w) as isize - w.pad_w as isize;
                    let pixel = w.input_pixel(b, iy, ix);
                    for ic in 0..w.in_c {
                        for (fy, oy) in taps(oy0, 1, w.filter_h, w.out_h) {
                            for (fx, ox) in taps(ox0, 1, w.filter_w, w.out_w) {
                                let o0 = w.output_pixel(b, oy, ox);
                                for oc in 0..w.out_c {
                                    f(
                                        b,
                                        pixel + ic,
                                        o0 + oc,
                                        oc,
                                        self.filter_index(oc, fy, fx, ic),
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub(super) fn build(
    ctx: &OpContext<'_>,
    o: &TransposeConvOptions,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    let output_shape = ctx.input(OUTPUT_SHAPE)?;
    let filter = ctx.input(FILTER)?;
    let input = ctx.input(INPUT)?;
    let output = ctx.output(0)?;
    if output_shape.dtype != DType::Int32 || output_shape.shape != [4] {
        return Err(ctx.invalid(format!(
            "the output shape input must be 4 int32 values, is {} {:?}",
            output_shape.dtype, output_shape.shape
        )));
    }
    let [batches, in_h, in_w, in_c] = dims4(ctx, input, "input")?;
    let [out_c, filter_h, filter_w, filter_in_c] = dims4(ctx, filter, "filter")?;
    let [out_b, out_h, out_w, out_c2] = dims4(ctx, output, "output")?;
    if filter_in_c != in_c || out_b != batches || out_c2 != out_c {
        return Err(ctx.invalid(format!(
            "shapes do not fit: input {:?}, filter {:?}, output {:?}",
            input.shape, filter.shape, output.shape
        )));
    }
    if ctx.is_constant(OUTPUT_SHAPE) {
        let values = ctx.constant_ints(OUTPUT_SHAPE)?;
        let static_shape: Vec<i64> = output.shape.iter().map(|&d| d as i64).collect();
        if values != static_shape {
            return Err(ctx.invalid(format!(
                "output shape input {values:?} differs from the output tensor's {:?}",
                output.shape
            )));
        }
    }
    if o.stride_h <= 0 || o.stride_w <= 0 {
        return Err(ctx.invalid("strides must be positive"));
    }
    // TFLite's padding: that of a convolution from the output back to the input size.
    let pad = |image: usize, filter: usize, stride: i32| {
        let (image, filter, stride) = (image as i64, filter as i64, i64::from(stride));
        let conv_out = out_size(o.padding, image, filter, stride, 1).unwrap_or(0);
        padding_before(stride, 1, image, filter, conv_out) as usize
    };
    let window = Window {
        batches,
        in_h,
        in_w,
        in_c,
        out_h,
        out_w,
        out_c,
        filter_h,
        filter_w,
        stride_h: o.stride_h as usize,
        stride_w: o.stride_w as usize,
        dilation_h: 1,
        dilation_w: 1,
        pad_h: pad(out_h, filter_h, o.stride_h),
        pad_w: pad(out_w, filter_w, o.stride_w),
    };
    window.check_bounds(ctx)?;
    let shape = TransposeShape { window };
    let bias = bias_dtype(ctx, BIAS, out_c)?;
    let scratch_len = window.output_len();

    match (input.dtype, filter.dtype, output.dtype) {
        (DType::Float32, DType::Float32, DType::Float32) => {
            if bias.is_some_and(|d| d != DType::Float32) {
                return Err(ctx.unsupported_types());
            }
            let (act_min, act_max) = activation_range_f32(o.activation);
            if let Some(kernel) = float_gemm(ctx, shape, (act_min, act_max))? {
                return Ok(kernel);
            }
            Ok(Box::new(FloatTranspose {
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
            let fq = FilterQuant::of(ctx, filter)?;
            if fq.is_per_channel() && (fq.scales.len() != out_c || fq.axis != 0) {
                return Err(ctx.invalid(format!(
                    "filter has {} scales, expected 1 or one per output channel",
                    fq.scales.len()
                )));
            }
            let (act_min, act_max) = activation_range_f32(o.activation);
            Ok(Box::new(HybridTranspose {
                shape,
                filter_scales: (0..out_c).map(|c| fq.scale(c)).collect(),
                has_bias: bias.is_some(),
                act_min,
                act_max,
                quantized: QuantizedInput::new(batches, in_h * in_w * in_c),
            }))
        }
        (DType::Int8, DType::Int8, DType::Int8) => {
            if bias.is_some_and(|d| d != DType::Int32) {
                return Err(ctx.invalid("int8 TRANSPOSE_CONV needs an int32 bias"));
            }
            check_bias_zero_point(ctx, BIAS)?;
            let (requantize, input_offset) = per_channel_requantize(
                ctx,
                INPUT,
                FILTER,
                o.activation,
                out_c,
                0,
                FilterZeroPoints::Ignored,
            )?;
            let operands = QuantOperands {
                input: QType::I8,
                input_offset,
                weight_offset: 0,
                requantize: &requantize,
            };
            if let Some(kernel) = quant_gemm::<i8>(ctx, shape, &operands)? {
                return Ok(kernel);
            }
            Ok(Box::new(QuantTranspose::<i8, i8, i32> {
                shape,
                input_offset,
                filter_offset: 0,
                requantize,
                has_bias: bias.is_some(),
                scratch: vec![0; scratch_len],
                types: PhantomData,
            }))
        }
        (DType::Int16, DType::Int8, DType::Int16) => {
            check_bias_zero_point(ctx, BIAS)?;
            let (requantize, input_offset) = per_channel_requantize(
                ctx,
                INPUT,
                FILTER,
                o.activation,
                out_c,
                0,
                FilterZeroPoints::Ignored,
            )?;
            if input_offset != 0 || requantize.output_offset != 0 {
                return Err(ctx.invalid("int16 TRANSPOSE_CONV needs zero points of 0"));
            }
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
                Some(_) => {
                    return Err(ctx.invalid("int16 TRANSPOSE_CONV needs an int32 or int64 bias"));
                }
                None => declared == DType::Int32,
            };
            let has_bias = bias.is_some();
            if narrow {
                let operands = QuantOperands {
                    input: QType::I16,
                    input_offset: 0,
                    weight_offset: 0,
                    requantize: &requantize,
                };
                if let Some(kernel) = quant_gemm::<i16>(ctx, shape, &operands)? {
                    return Ok(kernel);
                }
            }
            Ok(if narrow {
                Box::new(QuantTranspose::<i16, i8, i32> {
                    shape,
                    input_offset: 0,
                    filter_offset: 0,
                    requantize,
                    has_bias,
                    scratch: vec![0; scratch_len],
                    types: PhantomData,
                })
            } else {
                Box::new(QuantTranspose::<i16, i8, i64> {
                    shape,
                    input_offset: 0,
                    filter_offset: 0,
                    requantize,
                    has_bias,
                    scratch: vec![0; scratch_len],
                    types: PhantomData,
                })
            })
        }
        (DType::UInt8, DType::UInt8, DType::UInt8) => {
            if bias.is_some_and(|d| d != DType::Int32) {
                return Err(ctx.invalid("uint8 TRANSPOSE_CONV needs an int32 bias"));
            }
            let (requantize, input_offset, filter_offset) = legacy_requantize(
                ctx,
                [INPUT, FILTER, BIAS],
                o.activation,
                out_c,
                "TRANSPOSE_CONV",
            )?;
            let operands = QuantOperands {
                input: QType::U8,
                input_offset,
                weight_offset: filter_offset,
                requantize: &requantize,
            };
            if let Some(kernel) = quant_gemm::<u8>(ctx, shape, &operands)? {
                return Ok(kernel);
            }
            Ok(Box::new(QuantTranspose::<u8, u8, i32> {
                shape,
                input_offset,
                filter_offset,
                requantize,
                has_bias: bias.is_some(),
                scratch: vec![0; scratch_len],
                types: PhantomData,
            }))
        }
        _ => Err(ctx.unsupported_types()),
    }
}

/// Float TRANSPOSE_CONV with weights and bias known at build time, on a GEMM; `None`
/// otherwise.
fn float_gemm(
    ctx: &OpContext<'_>,
    shape: TransposeShape,
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
    let layout = InputLayout::Transposed(shape.window.linalg());
    let Ok(gemm) = FloatGemm::new(
        ctx.isa(),
        shape.gemm_shape(),
        layout,
        &weights,
        bias.as_deref(),
        clamp,
    ) else {
        return Ok(None);
    };
    Ok(Some(Box::new(FloatGemmTranspose { shape, gemm })))
}

/// Float TRANSPOSE_CONV on a GEMM.
struct FloatGemmTranspose {
    shape: TransposeShape,
    gemm: FloatGemm,
}

impl Kernel for FloatGemmTranspose {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let parts = io.parts::<f32>(0)?;
        self.shape.check_output_shape(&parts.inputs)?;
        let input = parts.inputs.get::<f32>(INPUT)?;
        self.gemm
            .run(input, parts.output, parts.scratch, parts.threads)
    }

    fn scratch_bytes(&self) -> usize {
        self.gemm.scratch_bytes()
    }
}

/// The operands of an integer TRANSPOSE_CONV as its builder has them.
struct QuantOperands<'a> {
    input: QType,
    input_offset: i32,
    weight_offset: i32,
    requantize: &'a Requantize,
}

/// Integer TRANSPOSE_CONV (input and output `X`, int32 bias) with weights and bias known at
/// build time, on a quantized GEMM; `None` otherwise or when no GEMM family fits.
fn quant_gemm<X: QElem>(
    ctx: &OpContext<'_>,
    shape: TransposeShape,
    operands: &QuantOperands<'_>,
) -> Result<Option<Box<dyn Kernel>>, RuntimeError> {
    let values = ctx.constant(FILTER)?;
    let weights = match &values {
        Some(TensorData::I8(w)) => QWeights::I8(w),
        Some(TensorData::U8(w)) => QWeights::U8(w),
        _ => return Ok(None),
    };
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
        weights,
        weight_offset: operands.weight_offset,
        bias: bias.as_deref(),
        requantize: operands.requantize,
        output: operands.input,
    };
    let layout = InputLayout::Transposed(shape.window.linalg());
    Ok(QuantGemm::new(ctx.isa(), shape.gemm_shape(), layout, &spec)
        .ok()
        .map(|gemm| {
            Box::new(QuantGemmTranspose::<X> {
                shape,
                gemm,
                types: PhantomData,
            }) as Box<dyn Kernel>
        }))
}

/// Integer TRANSPOSE_CONV on a quantized GEMM: input and output `X`.
struct QuantGemmTranspose<X> {
    shape: TransposeShape,
    gemm: QuantGemm,
    types: PhantomData<fn() -> X>,
}

impl<X: QElem> Kernel for QuantGemmTranspose<X> {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let parts = io.parts::<X>(0)?;
        self.shape.check_output_shape(&parts.inputs)?;
        let input = parts.inputs.get::<X>(INPUT)?;
        self.gemm
            .run::<X, X>(input, parts.output, parts.scratch, parts.threads)
    }

    fn scratch_bytes(&self) -> usize {
        self.gemm.scratch_bytes()
    }
}

/// Float TRANSPOSE_CONV.
struct FloatTranspose {
    shape: TransposeShape,
    has_bias: bool,
    act_min: f32,
    act_max: f32,
}

impl Kernel for FloatTranspose {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (inputs, out) = io.single::<f32>()?;
        let input = inputs.get::<f32>(INPUT)?;
        let filter = inputs.get::<f32>(FILTER)?;
        let bias = if self.has_bias {
            Some(inputs.get::<f32>(BIAS)?)
        } else {
            None
        };
        let s = &self.shape;
        let w = &s.window;
        s.check_output_shape(&inputs)?;
        check_len("input", input.len(), w.input_len())?;
        check_len("filter", filter.len(), s.filter_len())?;
        check_len("output", out.len(), w.output_len())?;
        if let Some(bias) = bias {
            check_len("bias", bias.len(), w.out_c)?;
        }
        out.fill(0.0);
        s.for_each_product(|_, x, o, _, f| out[o] += input[x] * filter[f]);
        finish_float(out, w.out_c, bias, self.act_min, self.act_max);
        Ok(())
    }
}

/// Adds the bias and applies the activation clamp to a float output.
fn finish_float(out: &mut [f32], channels: usize, bias: Option<&[f32]>, lo: f32, hi: f32) {
    if channels == 0 {
        return;
    }
    for pixel in out.chunks_exact_mut(channels) {
        for (c, v) in pixel.iter_mut().enumerate() {
            let value = match bias {
                Some(bias) => *v + bias[c],
                None => *v,
            };
            *v = clamp_f32(value, lo, hi);
        }
    }
}

/// Integer TRANSPOSE_CONV: input and output `X`, weights `W`, accumulator `A`.
struct QuantTranspose<X, W, A> {
    shape: TransposeShape,
    input_offset: i32,
    filter_offset: i32,
    requantize: Requantize,
    has_bias: bool,
    scratch: Vec<A>,
    types: PhantomData<fn() -> (X, W)>,
}

impl<X: QElem, W: QElem, A: Accumulator> Kernel for QuantTranspose<X, W, A> {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (inputs, out) = io.single::<X>()?;
        let input = inputs.get::<X>(INPUT)?;
        let filter = inputs.get::<W>(FILTER)?;
        let bias = if self.has_bias {
            Some(inputs.get::<A::Bias>(BIAS)?)
        } else {
            None
        };
        let s = &self.shape;
        let w = &s.window;
        s.check_output_shape(&inputs)?;
        check_len("input", input.len(), w.input_len())?;
        check_len("filter", filter.len(), s.filter_len())?;
        check_len("output", out.len(), w.output_len())?;
        if let Some(bias) = bias {
            check_len("bias", bias.len(), w.out_c)?;
        }
        s.scatter(
            input,
            filter,
            self.input_offset,
            self.filter_offset,
            &mut self.scratch,
        );
        if w.out_c == 0 {
            return Ok(());
        }
        let pixels = out
            .chunks_exact_mut(w.out_c)
            .zip(self.scratch.chunks_exact(w.out_c));
        for (out_pixel, acc_pixel) in pixels {
            for (c, (o, &acc)) in out_pixel.iter_mut().zip(acc_pixel).enumerate() {
                let acc = match bias {
                    Some(bias) => acc.add_bias(bias[c]),
                    None => acc,
                };
                *o = X::from_clamped(self.requantize.apply(acc, c));
            }
        }
        Ok(())
    }
}

/// Hybrid TRANSPOSE_CONV: float input quantized asymmetrically per batch, int8 weights; every
/// product is scaled to float as it is scattered.
struct HybridTranspose {
    shape: TransposeShape,
    filter_scales: Vec<f32>,
    has_bias: bool,
    act_min: f32,
    act_max: f32,
    quantized: QuantizedInput,
}

impl Kernel for HybridTranspose {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (inputs, out) = io.single::<f32>()?;
        let input = inputs.get::<f32>(INPUT)?;
        let filter = inputs.get::<i8>(FILTER)?;
        let bias = if self.has_bias {
            Some(inputs.get::<f32>(BIAS)?)
        } else {
            None
        };
        let s = &self.shape;
        let w = &s.window;
        s.check_output_shape(&inputs)?;
        check_len("input", input.len(), w.input_len())?;
        check_len("filter", filter.len(), s.filter_len())?;
        check_len("output", out.len(), w.output_len())?;
        if let Some(bias) = bias {
            check_len("bias", bias.len(), w.out_c)?;
        }
        self.quantized.quantize(input, true);
        let q = &self.quantized;
        let scales = &self.filter_scales;
        out.fill(0.0);
        s.for_each_product(|b, x, o, oc, f| {
            let x = i32::from(q.values[x]) - q.zero_points[b];
            let acc = x.wrapping_mul(i32::from(filter[f]));
            out[o] += acc as f32 * scales[oc] * q.scales[b];
        });
        finish_float(out, w.out_c, bias, self.act_min, self.act_max);
        Ok(())
    }
}
