//! Convolutions: CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV.
//!
//! Every flavour of TFLite's reference kernels (`reference/conv.h`,
//! `reference/integer_ops/conv.h`, `depthwiseconv_*.h`, `transpose_conv.h`, as the `*_REF`
//! registrations of `conv.cc`, `depthwise_conv.cc` and `transpose_conv.cc` dispatch them):
//!
//! - float32;
//! - int8 activations, int8 weights quantized per channel (or per tensor), int32 bias;
//! - legacy uint8: uint8 weights per tensor with a zero point, int32 bias, one multiplier
//!   computed from the float product of the input and filter scales;
//! - int16x8: int16 activations (zero point 0), int8 weights, int64 bias accumulated in 64 bits
//!   (or an int32 bias accumulated in 32 bits, as TFLite does when the bias is int32);
//! - hybrid (dynamic range): float activations, int8 weights; the input is quantized on the fly
//!   per batch, symmetrically for per-tensor CONV_2D weights and asymmetrically otherwise.
//!
//! Multipliers, activation ranges, unpacked int4 weights and scratch buffers are prepared when
//! the kernel is built.
//!
//! CONV_2D and TRANSPOSE_CONV whose weights and bias are known at build time run on
//! octet-linalg's GEMMs (`kernels::gemm`): the weights are packed once, every output
//! pixel is a row reading its filter taps through an indirection buffer (or the input itself for
//! pointwise convolutions, or a padded copy of it for few input channels), and the fused output
//! stage requantizes exactly as the reference kernels do. The scalar kernels below remain for
//! weights computed at run time, 64-bit accumulators and the hybrid flavour; they compute the
//! accumulator of an output element (or, for TRANSPOSE_CONV, the whole scatter into an
//! accumulator buffer) separately from requantization.

mod conv2d;
mod depthwise;
mod transpose;

#[cfg(test)]
mod tests;

use std::marker::PhantomData;

use octet_core::fixed_point::{QuantizedMultiplier, quantize_multiplier};
use octet_core::{
    ActivationFunction, Conv2DOptions, DType, DepthwiseConv2DOptions, Padding, TensorData,
    TransposeConvOptions,
};
use octet_linalg::frame::window::Window2d;

use crate::kernels::common::{activation_range_quantized, per_tensor_quant};
use crate::kernels::gemm::{Accumulator, QElem, Requantize, Scales, Weights, check_len, clamp_f32};
use crate::{Kernel, OpContext, OpIo, RuntimeError, TensorInfo};

/// CONV_2D.
pub fn conv_2d(ctx: &OpContext<'_>, o: &Conv2DOptions) -> Result<Box<dyn Kernel>, RuntimeError> {
    conv2d::build(ctx, o)
}

/// DEPTHWISE_CONV_2D.
pub fn depthwise_conv_2d(
    ctx: &OpContext<'_>,
    o: &DepthwiseConv2DOptions,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    depthwise::build(ctx, o)
}

/// TRANSPOSE_CONV (inputs: output shape, weights, input, optional bias).
pub fn transpose_conv(
    ctx: &OpContext<'_>,
    o: &TransposeConvOptions,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    transpose::build(ctx, o)
}

// ---------------------------------------------------------------------------------------------
// Geometry.

/// TFLite's `ComputeOutSize` (`kernels/padding.h`): the output size of one spatial dimension,
/// `None` where TFLite's checked version fails.
fn out_size(padding: Padding, image: i64, filter: i64, stride: i64, dilation: i64) -> Option<i64> {
    if image < 0 || filter <= 0 || stride <= 0 || dilation <= 0 {
        return None;
    }
    let effective_filter = (filter - 1) * dilation + 1;
    // Integer division truncates towards zero, as in C++.
    let value = match padding {
        Padding::Same => (image + stride - 1) / stride,
        Padding::Valid => (image + stride - effective_filter) / stride,
    };
    (value >= 0).then_some(value)
}

/// TFLite's `ComputePaddingWithOffset`: the padding before the first element (the extra
/// `offset` of an odd total goes after the last one, which the reference kernels never read).
fn padding_before(stride: i64, dilation: i64, image: i64, filter: i64, out: i64) -> i64 {
    let effective_filter = (filter - 1) * dilation + 1;
    let total = ((out - 1) * stride + effective_filter - image).max(0);
    total / 2
}

/// The sliding window of a CONV_2D or DEPTHWISE_CONV_2D (or, read backwards, of a
/// TRANSPOSE_CONV): NHWC sizes, strides, dilations and the padding before the first row and
/// column. Every size fits in `i32`, so index arithmetic in `isize` cannot overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    batches: usize,
    in_h: usize,
    in_w: usize,
    in_c: usize,
    out_h: usize,
    out_w: usize,
    out_c: usize,
    filter_h: usize,
    filter_w: usize,
    stride_h: usize,
    stride_w: usize,
    dilation_h: usize,
    dilation_w: usize,
    pad_h: usize,
    pad_w: usize,
}

/// Strides, dilations and padding as the op options give them.
#[derive(Debug, Clone, Copy)]
struct Spatial {
    padding: Padding,
    stride_h: i32,
    stride_w: i32,
    dilation_h: i32,
    dilation_w: i32,
}

impl Window {
    /// The window of a convolution of `input` (NHWC) with a `filter_h` x `filter_w` filter
    /// producing `out_c` channels; checks that `output` has the shape TFLite computes.
    fn new(
        ctx: &OpContext<'_>,
        input: &TensorInfo,
        (filter_h, filter_w): (usize, usize),
        out_c: usize,
        output: &TensorInfo,
        s: Spatial,
    ) -> Result<Self, RuntimeError> {
        let [batches, in_h, in_w, in_c] = dims4(ctx, input, "input")?;
        // A fused PAD's padding: the geometry is that of the padded input, whose padding rows
        // and columns the window's own padding covers.
        let extra = ctx.fused_padding().unwrap_or_default();
        let (padded_h, padded_w) = (
            in_h + extra.top + extra.bottom,
            in_w + extra.left + extra.right,
        );
        for (what, v) in [
            ("stride_h", s.stride_h),
            ("stride_w", s.stride_w),
            ("dilation_h", s.dilation_h),
            ("dilation_w", s.dilation_w),
        ] {
            if v <= 0 {
                return Err(ctx.invalid(format!("{what} must be positive, is {v}")));
            }
        }
        let size = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        let dim = |image: usize, filter: usize, stride: i32, dilation: i32| {
            let (image, filter) = (size(image), size(filter));
            let (stride, dilation) = (i64::from(stride), i64::from(dilation));
            out_size(s.padding, image, filter, stride, dilation)
                .map(|out| (out, padding_before(stride, dilation, image, filter, out)))
        };
        // TFLite computes the width first and leaves every size it could not compute at 0 (an
        // empty output).
        let (out_w, pad_w, out_h, pad_h) = match dim(padded_w, filter_w, s.stride_w, s.dilation_w) {
            None => (0, 0, 0, 0),
            Some((out_w, pad_w)) => match dim(padded_h, filter_h, s.stride_h, s.dilation_h) {
                None => (out_w, 0, 0, 0),
                Some((out_h, pad_h)) => (
                    out_w,
                    pad_w + size(extra.left),
                    out_h,
                    pad_h + size(extra.top),
                ),
            },
        };
        let expected = [size(batches), out_h, out_w, size(out_c)];
        let actual = dims4(ctx, output, "output")?.map(size);
        if expected != actual {
            return Err(ctx.invalid(format!(
                "output shape {:?} differs from the computed {expected:?}",
                output.shape
            )));
        }
        let window = Window {
            batches,
            in_h,
            in_w,
            in_c,
            out_h: out_h as usize,
            out_w: out_w as usize,
            out_c,
            filter_h,
            filter_w,
            stride_h: s.stride_h as usize,
            stride_w: s.stride_w as usize,
            dilation_h: s.dilation_h as usize,
            dilation_w: s.dilation_w as usize,
            pad_h: pad_h as usize,
            pad_w: pad_w as usize,
        };
        window.check_bounds(ctx)?;
        Ok(window)
    }

    /// Rejects sizes whose index arithmetic would not fit in `i32` (TFLite's own limit).
    fn check_bounds(&self, ctx: &OpContext<'_>) -> Result<(), RuntimeError> {
        let limit = i32::MAX as u128;
        let span =
            |n: usize, stride: usize, extra: usize| (n as u128) * (stride as u128) + extra as u128;
        let largest = [
            (self.batches as u128)
                * (self.in_h as u128)
                * (self.in_w as u128)
                * (self.in_c as u128),
            (self.batches as u128)
                * (self.out_h as u128)
                * (self.out_w as u128)
                * (self.out_c as u128),
            span(self.out_h, self.stride_h, self.pad_h),
            span(self.out_w, self.stride_w, self.pad_w),
            span(self.in_h, self.stride_h, self.pad_h + self.filter_h),
            span(self.in_w, self.stride_w, self.pad_w + self.filter_w),
            span(self.filter_h, self.dilation_h, self.in_h),
            span(self.filter_w, self.dilation_w, self.in_w),
            (self.filter_h as u128) * (self.filter_w as u128) * (self.out_c.max(self.in_c) as u128),
        ];
        if largest.iter().any(|&v| v > limit) {
            return Err(ctx.unsupported("tensor or window sizes beyond TFLite's 32-bit limits"));
        }
        Ok(())
    }

    fn input_len(&self) -> usize {
        self.batches * self.in_h * self.in_w * self.in_c
    }

    /// The window as octet-linalg describes it (for indirection buffers).
    fn linalg(&self) -> Window2d {
        Window2d {
            batches: self.batches,
            in_h: self.in_h,
            in_w: self.in_w,
            out_h: self.out_h,
            out_w: self.out_w,
            filter_h: self.filter_h,
            filter_w: self.filter_w,
            stride_h: self.stride_h,
            stride_w: self.stride_w,
            dilation_h: self.dilation_h,
            dilation_w: self.dilation_w,
            pad_top: self.pad_h,
            pad_left: self.pad_w,
        }
    }

    fn output_len(&self) -> usize {
        self.batches * self.out_h * self.out_w * self.out_c
    }

    /// Index of element `(b, y, x, 0)` of the input.
    fn input_pixel(&self, b: usize, y: usize, x: usize) -> usize {
        ((b * self.in_h + y) * self.in_w + x) * self.in_c
    }

    /// Index of element `(b, y, x, 0)` of the output.
    fn output_pixel(&self, b: usize, y: usize, x: usize) -> usize {
        ((b * self.out_h + y) * self.out_w + x) * self.out_c
    }

    /// The input rows `(filter_y, in_y)` an output row reads, padding skipped.
    fn rows(&self, out_y: usize) -> impl Iterator<Item = (usize, usize)> + use<> {
        let origin = (out_y * self.stride_h) as isize - self.pad_h as isize;
        taps(origin, self.dilation_h, self.filter_h, self.in_h)
    }

    /// The input columns `(filter_x, in_x)` an output column reads, padding skipped.
    fn cols(&self, out_x: usize) -> impl Iterator<Item = (usize, usize)> + use<> {
        let origin = (out_x * self.stride_w) as isize - self.pad_w as isize;
        taps(origin, self.dilation_w, self.filter_w, self.in_w)
    }
}

/// The taps `(f, origin + dilation * f)` of a filter of `filter` taps that land in `0..size`.
fn taps(
    origin: isize,
    dilation: usize,
    filter: usize,
    size: usize,
) -> impl Iterator<Item = (usize, usize)> {
    (0..filter).filter_map(move |f| {
        let i = origin + (dilation * f) as isize;
        (i >= 0 && (i as usize) < size).then_some((f, i as usize))
    })
}

/// The four dimensions of a rank-4 tensor.
fn dims4(ctx: &OpContext<'_>, t: &TensorInfo, what: &str) -> Result<[usize; 4], RuntimeError> {
    <[usize; 4]>::try_from(t.shape.as_slice())
        .map_err(|_| ctx.invalid(format!("{what} must have rank 4, has shape {:?}", t.shape)))
}

// ---------------------------------------------------------------------------------------------
// Elements, accumulators, requantization.

// ---------------------------------------------------------------------------------------------
// Weights.

/// int8 weights from input `i`: read in place, or unpacked at build time from a constant int4
/// tensor (TFLite unpacks int4 weights before running its int8 kernels).
fn int8_weights(ctx: &OpContext<'_>, i: usize) -> Result<Weights<i8>, RuntimeError> {
    let info = ctx.input(i)?;
    match info.dtype {
        DType::Int8 => Ok(Weights::Input(i)),
        DType::Int4 => match ctx.constant(i)? {
            Some(TensorData::I8(v)) => Ok(Weights::Owned(v)),
            _ => Err(ctx.unsupported("int4 weights must be a constant tensor")),
        },
        other => Err(ctx.invalid(format!("weights are {other}, expected int8"))),
    }
}

/// The values of int8 weights when they are known at build time (constant or unpacked).
fn known_i8(ctx: &OpContext<'_>, weights: &Weights<i8>) -> Result<Option<Vec<i8>>, RuntimeError> {
    Ok(match weights {
        Weights::Owned(v) => Some(v.clone()),
        Weights::Input(i) => match ctx.constant(*i)? {
            Some(TensorData::I8(v)) => Some(v),
            _ => None,
        },
    })
}

/// The optional bias of a GEMM kernel: `Some(None)` when absent, `Some(Some(values))` when
/// constant, `None` when computed at run time (the GEMM cannot pack it then).
fn known_bias<T>(
    ctx: &OpContext<'_>,
    i: usize,
    take: impl FnOnce(TensorData) -> Option<Vec<T>>,
) -> Result<Option<Option<Vec<T>>>, RuntimeError> {
    if ctx.optional_input(i).is_none() {
        return Ok(Some(None));
    }
    Ok(ctx.constant(i)?.and_then(take).map(Some))
}

/// The optional bias: `Some(dtype)` when input `i` is present.
fn bias_dtype(
    ctx: &OpContext<'_>,
    i: usize,
    channels: usize,
) -> Result<Option<DType>, RuntimeError> {
    let Some(bias) = ctx.optional_input(i) else {
        return Ok(None);
    };
    if bias.num_elements() != channels {
        return Err(ctx.invalid(format!(
            "bias has {} elements, expected one per output channel ({channels})",
            bias.num_elements()
        )));
    }
    Ok(Some(bias.dtype))
}

/// Checks that a quantized bias has zero point 0 (TFLite's Prepare requires it).
fn check_bias_zero_point(ctx: &OpContext<'_>, i: usize) -> Result<(), RuntimeError> {
    let zero_point = ctx
        .optional_input(i)
        .and_then(|b| b.quant.as_ref())
        .and_then(|q| q.zero_point.first().copied())
        .unwrap_or(0);
    if zero_point != 0 {
        return Err(ctx.invalid(format!("bias zero point is {zero_point}, must be 0")));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Quantization parameters.

/// The filter's scales and zero points as TFLite reads them: `scale.len()` is 1 (per tensor)
/// or one per output channel along `quantized_dimension`.
struct FilterQuant {
    scales: Vec<f32>,
    zero_points: Vec<i64>,
    axis: usize,
}

impl FilterQuant {
    fn of(ctx: &OpContext<'_>, filter: &TensorInfo) -> Result<Self, RuntimeError> {
        let q = filter.quant.as_ref().ok_or_else(|| {
            ctx.invalid(format!(
                "filter '{}' is {} but has no quantization parameters",
                filter.name, filter.dtype
            ))
        })?;
        let axis = usize::try_from(q.quantized_dimension)
            .ok()
            .filter(|&a| a < filter.rank())
            .ok_or_else(|| {
                ctx.invalid(format!(
                    "filter quantized_dimension {} is out of range",
                    q.quantized_dimension
                ))
            })?;
        Ok(FilterQuant {
            scales: q.scale.clone(),
            zero_points: q.zero_point.clone(),
            axis,
        })
    }

    fn is_per_channel(&self) -> bool {
        self.scales.len() > 1
    }

    /// The scale of output channel `c` (the one scale broadcast when per tensor).
    fn scale(&self, c: usize) -> f32 {
        if self.is_per_channel() {
            self.scales.get(c).copied().unwrap_or(0.0)
        } else {
            self.scales.first().copied().unwrap_or(0.0)
        }
    }

    /// The per-tensor zero point (0 when none is recorded).
    fn zero_point(&self) -> i64 {
        self.zero_points.first().copied().unwrap_or(0)
    }

    fn all_zero_points_zero(&self) -> bool {
        self.zero_points.iter().all(|&z| z == 0)
    }

    /// Checks the scale count against `channels` output channels lying along `channel_axis`:
    /// one scale, or one per channel along that axis (`PopulateConvolutionQuantizationParams`).
    fn check_channels(
        &self,
        ctx: &OpContext<'_>,
        filter: &TensorInfo,
        channels: usize,
        channel_axis: usize,
    ) -> Result<(), RuntimeError> {
        if self.scales.is_empty() {
            return Err(ctx.invalid("filter has no scale"));
        }
        if self.is_per_channel()
            && (self.scales.len() != channels
                || self.axis != channel_axis
                || filter.shape.get(self.axis) != Some(&channels))
        {
            return Err(ctx.invalid(format!(
                "filter has {} scales along axis {}, expected 1 or {channels} along axis \
                 {channel_axis}",
                self.scales.len(),
                self.axis
            )));
        }
        Ok(())
    }
}

/// TFLite's per-channel multipliers (`PopulateConvolutionQuantizationParams`):
/// `input_scale * filter_scale[c] / output_scale`, in double precision.
fn per_channel_multipliers(
    ctx: &OpContext<'_>,
    input_scale: f32,
    filter: &FilterQuant,
    output_scale: f32,
    channels: usize,
) -> Result<Vec<QuantizedMultiplier>, RuntimeError> {
    (0..channels)
        .map(|c| {
            let real =
                f64::from(input_scale) * f64::from(filter.scale(c)) / f64::from(output_scale);
            quantize_multiplier(real)
                .map_err(|e| ctx.invalid(format!("output channel {c} multiplier: {e}")))
        })
        .collect()
}

/// TFLite's legacy uint8 multiplier (`GetQuantizedConvolutionMultipler`): the input and filter
/// scales multiplied in *single* precision, then divided by the output scale in double. Also
/// applies TFLite's check that the bias scale is close to `input_scale * filter_scale`.
fn legacy_multiplier(
    ctx: &OpContext<'_>,
    input_scale: f32,
    filter_scale: f32,
    output_scale: f32,
    bias_input: Option<usize>,
) -> Result<QuantizedMultiplier, RuntimeError> {
    if let Some(bias) = bias_input.and_then(|i| ctx.optional_input(i)) {
        let bias_scale = bias
            .quant
            .as_ref()
            .and_then(|q| q.scale.first().copied())
            .unwrap_or(0.0);
        let product = f64::from(input_scale) * f64::from(filter_scale);
        let diff = (product - f64::from(bias_scale)).abs();
        if diff / f64::from(output_scale) > 0.02 {
            return Err(ctx.invalid(format!(
                "bias scale {bias_scale} is too far from input scale * filter scale ({product})"
            )));
        }
    }
    let product = f64::from(input_scale * filter_scale);
    if product < 0.0 {
        return Err(ctx.invalid("negative input or filter scale"));
    }
    quantize_multiplier(product / f64::from(output_scale))
        .map_err(|e| ctx.invalid(format!("output multiplier: {e}")))
}

/// Output zero point and activation clamp of a quantized output (per tensor).
fn output_range(
    ctx: &OpContext<'_>,
    output: &TensorInfo,
    activation: ActivationFunction,
) -> Result<(f32, i32, i32, i32), RuntimeError> {
    let (scale, zero_point) = per_tensor_quant(ctx, output, "output")?;
    let (act_min, act_max) =
        activation_range_quantized(activation, output.dtype, scale, zero_point)
            .ok_or_else(|| ctx.unsupported_types())?;
    Ok((scale, zero_point, act_min, act_max))
}

/// Input, filter and bias positions of CONV_2D and DEPTHWISE_CONV_2D.
const INPUT: usize = 0;
const FILTER: usize = 1;
const BIAS: usize = 2;

impl Window {
    /// Calls `f(b, oy, ox, oc, output_index)` for every output element in memory order.
    fn for_each_output(&self, mut f: impl FnMut(usize, usize, usize, usize, usize)) {
        for b in 0..self.batches {
            for oy in 0..self.out_h {
                for ox in 0..self.out_w {
                    let pixel = self.output_pixel(b, oy, ox);
                    for oc in 0..self.out_c {
                        f(b, oy, ox, oc, pixel + oc);
                    }
                }
            }
        }
    }
}

/// A sliding-window op whose every output element is a dot product of an input window with a
/// filter slice (CONV_2D, DEPTHWISE_CONV_2D): the geometry the shared kernels below need.
trait DotWindow: Send {
    /// The window geometry.
    fn window(&self) -> &Window;

    /// Number of filter elements.
    fn filter_len(&self) -> usize;

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
    ) -> A;

    /// The float sum of output element `(b, oy, ox, oc)` without bias, in TFLite's order.
    fn accumulate_f32(
        &self,
        input: &[f32],
        filter: &[f32],
        b: usize,
        oy: usize,
        ox: usize,
        oc: usize,
    ) -> f32;

    /// Checks the operands' lengths against the geometry.
    fn check_operands(
        &self,
        input: usize,
        filter: usize,
        output: usize,
        bias: Option<usize>,
    ) -> Result<(), RuntimeError> {
        let w = self.window();
        check_len("input", input, w.input_len())?;
        check_len("filter", filter, self.filter_len())?;
        check_len("output", output, w.output_len())?;
        if let Some(bias) = bias {
            check_len("bias", bias, w.out_c)?;
        }
        Ok(())
    }
}

/// Float CONV_2D or DEPTHWISE_CONV_2D.
struct FloatDot<G> {
    shape: G,
    has_bias: bool,
    act_min: f32,
    act_max: f32,
}

impl<G: DotWindow> Kernel for FloatDot<G> {
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
        s.check_operands(input.len(), filter.len(), out.len(), bias.map(<[f32]>::len))?;
        s.window().for_each_output(|b, oy, ox, oc, i| {
            let total = s.accumulate_f32(input, filter, b, oy, ox, oc);
            let bias = bias.map_or(0.0, |bias| bias[oc]);
            out[i] = clamp_f32(total + bias, self.act_min, self.act_max);
        });
        Ok(())
    }
}

/// Integer CONV_2D or DEPTHWISE_CONV_2D: input and output `X`, weights `W`, accumulator `A`
/// (whose bias type the bias has).
struct QuantDot<G, X, W, A> {
    shape: G,
    weights: Weights<W>,
    input_offset: i32,
    filter_offset: i32,
    requantize: Requantize,
    has_bias: bool,
    types: PhantomData<fn() -> (X, A)>,
}

impl<G: DotWindow, X: QElem, W: QElem, A: Accumulator> Kernel for QuantDot<G, X, W, A> {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (inputs, out) = io.single::<X>()?;
        let input = inputs.get::<X>(INPUT)?;
        let filter = self.weights.get(&inputs)?;
        let bias = if self.has_bias {
            Some(inputs.get::<A::Bias>(BIAS)?)
        } else {
            None
        };
        let s = &self.shape;
        s.check_operands(
            input.len(),
            filter.len(),
            out.len(),
            bias.map(<[A::Bias]>::len),
        )?;
        s.window().for_each_output(|b, oy, ox, oc, i| {
            let mut acc: A = s.accumulate(
                input,
                filter,
                self.input_offset,
                self.filter_offset,
                b,
                oy,
                ox,
                oc,
            );
            if let Some(bias) = bias {
                acc = acc.add_bias(bias[oc]);
            }
            out[i] = X::from_clamped(self.requantize.apply(acc, oc));
        });
        Ok(())
    }
}

/// What the int8 / int16 kernels do with the filter's zero points.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FilterZeroPoints {
    /// They must all be 0 (CONV_2D).
    MustBeZero,
    /// TFLite ignores them: its weights offset is 0 (DEPTHWISE_CONV_2D, TRANSPOSE_CONV).
    Ignored,
}

/// Requantization and input offset of the int8 / int16 kernels: per-channel multipliers from
/// the input, filter (channels along `channel_axis`) and output scales, and the activation's
/// clamp on the output.
fn per_channel_requantize(
    ctx: &OpContext<'_>,
    input: usize,
    filter: usize,
    activation: ActivationFunction,
    out_c: usize,
    channel_axis: usize,
    zero_points: FilterZeroPoints,
) -> Result<(Requantize, i32), RuntimeError> {
    let input = ctx.input(input)?;
    let filter = ctx.input(filter)?;
    let output = ctx.own_output()?;
    let (input_scale, input_zero_point) = per_tensor_quant(ctx, input, "input")?;
    let fq = FilterQuant::of(ctx, filter)?;
    fq.check_channels(ctx, filter, out_c, channel_axis)?;
    if zero_points == FilterZeroPoints::MustBeZero && !fq.all_zero_points_zero() {
        return Err(ctx.invalid("the filter's zero points must be 0"));
    }
    let (output_scale, output_zero_point, act_min, act_max) =
        output_range(ctx, output, activation)?;
    let multipliers = per_channel_multipliers(ctx, input_scale, &fq, output_scale, out_c)?;
    Ok((
        Requantize {
            scales: Scales::Fixed(multipliers),
            output_offset: output_zero_point,
            act_min,
            act_max,
        },
        -input_zero_point,
    ))
}

/// Requantization, input offset and filter offset of the legacy uint8 kernels: per-tensor
/// uint8 weights with a zero point and one multiplier, computed as TFLite's legacy path does
/// (which also checks the bias scale, input `bias`).
fn legacy_requantize(
    ctx: &OpContext<'_>,
    [input, filter, bias]: [usize; 3],
    activation: ActivationFunction,
    out_c: usize,
    op: &str,
) -> Result<(Requantize, i32, i32), RuntimeError> {
    let (input_scale, input_zero_point) = per_tensor_quant(ctx, ctx.input(input)?, "input")?;
    let fq = FilterQuant::of(ctx, ctx.input(filter)?)?;
    if fq.is_per_channel() {
        return Err(ctx.invalid(format!("uint8 {op} needs per-tensor filter quantization")));
    }
    let (output_scale, output_zero_point, act_min, act_max) =
        output_range(ctx, ctx.own_output()?, activation)?;
    let multiplier = legacy_multiplier(ctx, input_scale, fq.scale(0), output_scale, Some(bias))?;
    Ok((
        Requantize {
            scales: Scales::Fixed(vec![multiplier; out_c]),
            output_offset: output_zero_point,
            act_min,
            act_max,
        },
        -input_zero_point,
        -(fq.zero_point() as i32),
    ))
}
