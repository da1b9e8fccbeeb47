//! Element-wise binary ops with broadcasting: ADD, SUB, MUL, MAXIMUM, MINIMUM, PRELU.
//!
//! Every flavour reproduces the kernel TFLite's `BUILTIN_REF` resolver runs (`add.cc`, `sub.cc`,
//! `mul.cc`, `maximum_minimum.cc`, `activations.cc` and `reference/{add,sub,mul,prelu}.h`,
//! `reference/integer_ops/{add,mul}.h`). In the reference kernels the broadcast and the
//! non-broadcast variants of an op compute the same per-element function (only the loops over
//! the tensors differ), so octet has one per-element function per flavour and lets
//! [`Broadcast`] walk the shapes (numpy rules, up to 6 dimensions).
//!
//! Flavours:
//!
//! - ADD: float32; int32, int64 and unquantized int16 (wrapping, clamped to the fused
//!   activation); int8, uint8 and int16 with the general rescaling (`left_shift` 20, or 15 for
//!   int16); int16 with power-of-two scales (`pot_scale_int16`).
//! - SUB: float32; int32, int64; int8, uint8 and int16 general; int16 power-of-two.
//! - MUL: float32; int32, int64, uint32 and unquantized int16; int8, uint8 and int16 (zero
//!   points 0); int16 inputs with an int8 or uint8 output (equal shapes only, as in TFLite).
//! - MAXIMUM, MINIMUM: float32, int8, uint8, int16, int32, int64; no requantization, TFLite
//!   compares the stored integers.
//! - PRELU: float32; int8 and uint8 (two output multipliers); alpha broadcasts into the input.
//!
//! Where TFLite has no kernel for a case octet still gives the natural result instead of an
//! abort: a broadcasting power-of-two int16 ADD (TFLite's `MatchingElementsSize` check fails)
//! applies the same per-element arithmetic as the non-broadcasting one.
//!
//! Integer flavours keep the integer arithmetic that produces a raw result (the rescaled sum
//! or difference, the product of offset inputs) apart from the requantization of that result
//! to the output, so that a vectorised accumulation can replace the former and stay bit-exact.
//!
//! Fast paths: when one input has the output's shape and the other is a scalar or a
//! trailing-dimensions vector (a per-channel bias or alpha) or has the same shape, float
//! ADD/SUB/MUL/MAXIMUM/MINIMUM/PRELU, quantized ADD/SUB (int8, uint8, int16) and MUL, and
//! quantized PRELU with a constant alpha run on octet-linalg's element-wise kernels (SIMD,
//! bit-exact with the per-element functions here, which remain the specification and the path
//! of every other broadcast), split over the threads when the output exceeds [`SPLIT_BYTES`].

use std::marker::PhantomData;

use bytemuck::Pod;
use octet_core::fixed_point::{
    QuantizedMultiplier, checked_log2, multiply_by_quantized_multiplier,
    multiply_by_quantized_multiplier_smaller_than_one_exp, quantize_multiplier,
    quantize_multiplier_smaller_than_one_exp, rounding_divide_by_pot_i16,
    saturating_rounding_doubling_high_mul_i16,
};
use octet_core::{ActivationFunction, AddOptions, DType};
use octet_linalg::frame::elementwise::{
    F32Binary, F32BinaryOp, QuantBinary, QuantBinaryOp, QuantBinaryParams, QuantElem, QuantPrelu,
    QuantPreluParams,
};
use octet_linalg::frame::gemm_f32::F32Clamp;
use octet_linalg::{LinalgError, Threads};

use super::broadcast::Broadcast;
use super::common::{
    activation_range_f32, activation_range_quantized, dtype_range, per_tensor_quant,
};
use crate::{Kernel, OpContext, OpIo, RuntimeError, TensorInfo};

// ---------------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------------

/// ADD.
pub fn add(ctx: &OpContext<'_>, options: &AddOptions) -> Result<Box<dyn Kernel>, RuntimeError> {
    add_or_sub(ctx, options, AddSub::Add)
}

/// SUB.
pub fn sub(ctx: &OpContext<'_>, options: &AddOptions) -> Result<Box<dyn Kernel>, RuntimeError> {
    add_or_sub(ctx, options, AddSub::Sub)
}

/// MUL.
pub fn mul(
    ctx: &OpContext<'_>,
    activation: ActivationFunction,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    let ops = operands(ctx)?;
    let (lhs, output) = (ops.lhs, ops.output);
    match (lhs.dtype, output.dtype) {
        (DType::Float32, DType::Float32) => {
            let (lo, hi) = activation_range_f32(activation);
            if let Some(fast) = fast_f32(ctx, &ops, F32BinaryOp::Mul, F32BinaryOp::Mul, (lo, hi)) {
                return Ok(fast);
            }
            Ok(elementwise(ops.broadcast, move |a: f32, b: f32| {
                clamp(a * b, lo, hi)
            }))
        }
        (DType::Int32, DType::Int32) => Ok(plain_mul::<i32>(ops.broadcast, activation)),
        (DType::Int64, DType::Int64) => Ok(plain_mul::<i64>(ops.broadcast, activation)),
        (DType::UInt32, DType::UInt32) => Ok(plain_mul::<u32>(ops.broadcast, activation)),
        (DType::Int16, DType::Int16) if output.quant.is_none() => {
            Ok(plain_mul::<i16>(ops.broadcast, activation))
        }
        (DType::Int8, DType::Int8) => quantized_mul::<i8>(ctx, &ops, activation),
        (DType::UInt8, DType::UInt8) => quantized_mul::<u8>(ctx, &ops, activation),
        (DType::Int16, DType::Int16) => quantized_mul::<i16>(ctx, &ops, activation),
        (DType::Int16, DType::Int8) => int16_mul_to_8bit::<i8>(ctx, &ops, activation),
        (DType::Int16, DType::UInt8) => int16_mul_to_8bit::<u8>(ctx, &ops, activation),
        _ => Err(ctx.unsupported_types()),
    }
}

/// MAXIMUM.
pub fn maximum(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    max_or_min(ctx, MaxMin::Max)
}

/// MINIMUM.
pub fn minimum(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    max_or_min(ctx, MaxMin::Min)
}

/// PRELU.
pub fn prelu(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    let ops = operands(ctx)?;
    // TFLite resizes the output to the broadcast shape and then insists that it equals the
    // input's shape: alpha may only broadcast into the input, never widen it.
    if strip_leading_ones(ops.broadcast.output_shape()) != strip_leading_ones(&ops.lhs.shape) {
        return Err(ctx.invalid(format!(
            "alpha {:?} does not broadcast into input {:?}",
            ops.rhs.shape, ops.lhs.shape
        )));
    }
    if ops.output.dtype != ops.lhs.dtype {
        return Err(ctx.unsupported_types());
    }
    match ops.lhs.dtype {
        DType::Float32 => {
            let none = (f32::NEG_INFINITY, f32::INFINITY);
            if let Some(fast) = fast_f32(ctx, &ops, F32BinaryOp::Prelu, F32BinaryOp::Prelu, none)
                .filter(|_| layout(&ops).is_some_and(|l| !l.swapped))
            {
                return Ok(fast);
            }
            Ok(elementwise(ops.broadcast, |x: f32, alpha: f32| {
                if x >= 0.0 { x } else { x * alpha }
            }))
        }
        DType::Int8 => quantized_prelu::<i8>(ctx, &ops),
        DType::UInt8 => quantized_prelu::<u8>(ctx, &ops),
        _ => Err(ctx.unsupported_types()),
    }
}

// ---------------------------------------------------------------------------------------------
// Shared preparation
// ---------------------------------------------------------------------------------------------

/// The two inputs and the output of a binary op, with their broadcast planned.
struct Operands<'a> {
    lhs: &'a TensorInfo,
    rhs: &'a TensorInfo,
    output: &'a TensorInfo,
    broadcast: Broadcast,
}

fn strip_leading_ones(shape: &[usize]) -> &[usize] {
    let first = shape.iter().position(|&d| d != 1).unwrap_or(shape.len());
    &shape[first..]
}

/// Checks the operand count, that both inputs have one dtype (TFLite's
/// `TF_LITE_ENSURE_TYPES_EQ`), and that the output has the broadcast shape.
fn operands<'a>(ctx: &OpContext<'a>) -> Result<Operands<'a>, RuntimeError> {
    if ctx.num_inputs() != 2 || ctx.num_outputs() != 1 {
        return Err(ctx.invalid(format!(
            "expected 2 inputs and 1 output, found {} and {}",
            ctx.num_inputs(),
            ctx.num_outputs()
        )));
    }
    let (lhs, rhs, output) = (ctx.input(0)?, ctx.input(1)?, ctx.output(0)?);
    if lhs.dtype != rhs.dtype {
        return Err(ctx.invalid(format!(
            "inputs have different types ({} and {})",
            lhs.dtype, rhs.dtype
        )));
    }
    let broadcast = Broadcast::new(&lhs.shape, &rhs.shape).map_err(|e| ctx.invalid(e))?;
    // The output is written in the broadcast shape's row-major order; a static output shape
    // that differs only by leading 1s describes the same buffer.
    if strip_leading_ones(broadcast.output_shape()) != strip_leading_ones(&output.shape) {
        return Err(ctx.invalid(format!(
            "output shape {:?} is not the broadcast shape {:?} of {:?} and {:?}",
            output.shape,
            broadcast.output_shape(),
            lhs.shape,
            rhs.shape
        )));
    }
    Ok(Operands {
        lhs,
        rhs,
        output,
        broadcast,
    })
}

/// The per-tensor quantization of all three operands: `[(scale, zero_point); 3]`.
fn quant_params(ctx: &OpContext<'_>, ops: &Operands<'_>) -> Result<[(f32, i32); 3], RuntimeError> {
    Ok([
        per_tensor_quant(ctx, ops.lhs, "input 0")?,
        per_tensor_quant(ctx, ops.rhs, "input 1")?,
        per_tensor_quant(ctx, ops.output, "output")?,
    ])
}

/// TFLite `CalculateActivationRangeQuantized` on the output, as an error when the dtype has no
/// integer range.
fn quantized_activation_range(
    ctx: &OpContext<'_>,
    activation: ActivationFunction,
    output: &TensorInfo,
    (scale, zero_point): (f32, i32),
) -> Result<(i32, i32), RuntimeError> {
    activation_range_quantized(activation, output.dtype, scale, zero_point)
        .ok_or_else(|| ctx.unsupported_types())
}

fn multiplier_error(ctx: &OpContext<'_>, what: &str, e: impl std::fmt::Display) -> RuntimeError {
    ctx.invalid(format!("{what}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// The generic kernel: a broadcast plan and a per-element function
// ---------------------------------------------------------------------------------------------

/// Applies `op` to every pair of broadcast input elements: the kernel of every flavour here.
struct Elementwise<A, B, O, F> {
    broadcast: Broadcast,
    op: F,
    _types: PhantomData<fn(A, B) -> O>,
}

fn elementwise<A, B, O, F>(broadcast: Broadcast, op: F) -> Box<dyn Kernel>
where
    A: Pod,
    B: Pod,
    O: Pod,
    F: Fn(A, B) -> O + Send + 'static,
{
    Box::new(Elementwise {
        broadcast,
        op,
        _types: PhantomData,
    })
}

impl<A, B, O, F> Kernel for Elementwise<A, B, O, F>
where
    A: Pod,
    B: Pod,
    O: Pod,
    F: Fn(A, B) -> O + Send,
{
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (inputs, out) = io.single::<O>()?;
        let lhs = inputs.get::<A>(0)?;
        let rhs = inputs.get::<B>(1)?;
        self.broadcast
            .zip_map(lhs, rhs, out, &self.op)
            .map_err(|e| RuntimeError::eval(e.to_string()))
    }
}

/// TFLite `ActivationFunctionWithMinMax`: `std::min(std::max(x, lo), hi)`, written with the same
/// comparisons so that NaN and signed zeros come out as in C++ (and nothing panics when
/// `lo > hi`).
fn clamp<T: PartialOrd>(x: T, lo: T, hi: T) -> T {
    let x = if x < lo { lo } else { x };
    if hi < x { hi } else { x }
}

// ---------------------------------------------------------------------------------------------
// Unquantized integers: wrapping arithmetic, clamped to the fused activation
// ---------------------------------------------------------------------------------------------

/// The integer element types TFLite runs unquantized arithmetic on.
trait PlainInt: Pod + PartialOrd + Send {
    const LOWEST: i64;
    const HIGHEST: i64;
    /// C++'s conversion to this type (two's-complement truncation).
    fn from_i64(x: i64) -> Self;
    fn wrapping_add(self, other: Self) -> Self;
    fn wrapping_sub(self, other: Self) -> Self;
    fn wrapping_mul(self, other: Self) -> Self;
}

macro_rules! plain_int {
    ($($t:ty),*) => {$(
        impl PlainInt for $t {
            const LOWEST: i64 = <$t>::MIN as i64;
            const HIGHEST: i64 = <$t>::MAX as i64;
            fn from_i64(x: i64) -> Self {
                x as $t
            }
            fn wrapping_add(self, other: Self) -> Self {
                <$t>::wrapping_add(self, other)
            }
            fn wrapping_sub(self, other: Self) -> Self {
                <$t>::wrapping_sub(self, other)
            }
            fn wrapping_mul(self, other: Self) -> Self {
                <$t>::wrapping_mul(self, other)
            }
        }
    )*};
}
plain_int!(i16, i32, i64, u32);

/// TFLite `CalculateActivationRange<T>` for an integer `T`: Relu `[0, max]`, Relu6 `[0, 6]`,
/// ReluN1To1 `[-1, 1]` (for an unsigned `T` the -1 wraps, as in C++), anything else the whole
/// range.
fn plain_activation_range<T: PlainInt>(activation: ActivationFunction) -> (T, T) {
    let (lo, hi) = match activation {
        ActivationFunction::Relu => (0, T::HIGHEST),
        ActivationFunction::Relu6 => (0, 6),
        ActivationFunction::ReluN1To1 => (-1, 1),
        _ => (T::LOWEST, T::HIGHEST),
    };
    (T::from_i64(lo), T::from_i64(hi))
}

fn plain_add_sub<T: PlainInt>(
    broadcast: Broadcast,
    activation: ActivationFunction,
    kind: AddSub,
) -> Box<dyn Kernel> {
    let (lo, hi) = plain_activation_range::<T>(activation);
    match kind {
        AddSub::Add => elementwise(broadcast, move |a: T, b: T| {
            clamp(a.wrapping_add(b), lo, hi)
        }),
        AddSub::Sub => elementwise(broadcast, move |a: T, b: T| {
            clamp(a.wrapping_sub(b), lo, hi)
        }),
    }
}

fn plain_mul<T: PlainInt>(broadcast: Broadcast, activation: ActivationFunction) -> Box<dyn Kernel> {
    let (lo, hi) = plain_activation_range::<T>(activation);
    elementwise(broadcast, move |a: T, b: T| {
        clamp(a.wrapping_mul(b), lo, hi)
    })
}

// ---------------------------------------------------------------------------------------------
// Quantized element types
// ---------------------------------------------------------------------------------------------

// The quantized storage types (int8, uint8, int16) are linalg's `QuantElem`.

/// The 8-bit quantized types, whose 256 values are few enough to tabulate.
trait QuantByte: QuantElem + Pod {
    /// Position of the value in a 256-entry table.
    fn index(self) -> usize;
    /// The value at a table position (inverse of [`index`](Self::index)), widened.
    fn value_at(index: u8) -> i32;
}

impl QuantByte for i8 {
    fn index(self) -> usize {
        usize::from(self as u8)
    }
    fn value_at(index: u8) -> i32 {
        i32::from(index as i8)
    }
}

impl QuantByte for u8 {
    fn index(self) -> usize {
        usize::from(self)
    }
    fn value_at(index: u8) -> i32 {
        i32::from(index)
    }
}

// ---------------------------------------------------------------------------------------------
// ADD and SUB
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddSub {
    Add,
    Sub,
}

fn add_or_sub(
    ctx: &OpContext<'_>,
    options: &AddOptions,
    kind: AddSub,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    let ops = operands(ctx)?;
    let activation = options.activation;
    if ops.output.dtype != ops.lhs.dtype {
        return Err(ctx.unsupported_types());
    }
    match ops.lhs.dtype {
        DType::Float32 => {
            let (lo, hi) = activation_range_f32(activation);
            let (op, mirrored) = match kind {
                AddSub::Add => (F32BinaryOp::Add, F32BinaryOp::Add),
                AddSub::Sub => (F32BinaryOp::Sub, F32BinaryOp::ReverseSub),
            };
            if let Some(fast) = fast_f32(ctx, &ops, op, mirrored, (lo, hi)) {
                return Ok(fast);
            }
            Ok(match kind {
                AddSub::Add => {
                    elementwise(ops.broadcast, move |a: f32, b: f32| clamp(a + b, lo, hi))
                }
                AddSub::Sub => {
                    elementwise(ops.broadcast, move |a: f32, b: f32| clamp(a - b, lo, hi))
                }
            })
        }
        DType::Int32 => Ok(plain_add_sub::<i32>(ops.broadcast, activation, kind)),
        DType::Int64 => Ok(plain_add_sub::<i64>(ops.broadcast, activation, kind)),
        // ADD on int16 without quantization parameters is plain (wrapping) arithmetic; SUB
        // has no such flavour in TFLite.
        DType::Int16 if ops.output.quant.is_none() => match kind {
            AddSub::Add => Ok(plain_add_sub::<i16>(ops.broadcast, activation, kind)),
            AddSub::Sub => Err(ctx.unsupported(
                "int16 SUB without quantization parameters (TFLite has no such kernel)",
            )),
        },
        DType::Int16 => {
            let quant = quant_params(ctx, &ops)?;
            if options.pot_scale_int16
                && let Some(pot) = PotAddSub::new(ctx, &ops, quant, activation)?
            {
                return Ok(match kind {
                    AddSub::Add => elementwise(ops.broadcast, move |a: i16, b: i16| pot.add(a, b)),
                    AddSub::Sub => elementwise(ops.broadcast, move |a: i16, b: i16| pot.sub(a, b)),
                });
            }
            general_add_sub_int16(ctx, &ops, quant, activation, kind)
        }
        DType::Int8 => {
            let quant = quant_params(ctx, &ops)?;
            general_add_sub_8bit::<i8>(ctx, &ops, quant, activation, kind)
        }
        DType::UInt8 => {
            let quant = quant_params(ctx, &ops)?;
            general_add_sub_8bit::<u8>(ctx, &ops, quant, activation, kind)
        }
        _ => Err(ctx.unsupported_types()),
    }
}

/// TFLite's general quantized ADD/SUB (`AddFunc`, `AddElementwise`, `BroadcastAdd6DSlow`,
/// `SubElementwise`, `BroadcastQuantSubSlow`): both inputs are brought to a common fixed-point
/// scale with `left_shift` bits of headroom (20 for 8-bit, 15 for int16), added or subtracted
/// in `int32`, and the result is requantized to the output.
#[derive(Debug, Clone, Copy)]
struct GeneralAddSub {
    left_shift: i32,
    lhs_offset: i32,
    lhs_multiplier: QuantizedMultiplier,
    rhs_offset: i32,
    rhs_multiplier: QuantizedMultiplier,
    output_offset: i32,
    output_multiplier: QuantizedMultiplier,
    act_min: i32,
    act_max: i32,
}

impl GeneralAddSub {
    /// As `add.cc`/`sub.cc` Prepare: with `twice_max = 2 * max(s1, s2)`, the input multipliers
    /// are `s_i / twice_max` (at most 1/2) and the output multiplier is
    /// `twice_max / (2^left_shift * s_out)`, all via `QuantizeMultiplierSmallerThanOneExp`.
    fn new(
        ctx: &OpContext<'_>,
        output: &TensorInfo,
        [(s1, z1), (s2, z2), (so, zo)]: [(f32, i32); 3],
        activation: ActivationFunction,
        int16: bool,
        kind: AddSub,
    ) -> Result<Self, RuntimeError> {
        let left_shift = if int16 { 15 } else { 20 };
        let twice_max_input_scale = 2.0 * f64::from(if s1 < s2 { s2 } else { s1 });
        let real_lhs = f64::from(s1) / twice_max_input_scale;
        let real_rhs = f64::from(s2) / twice_max_input_scale;
        let real_output = twice_max_input_scale / (f64::from(1 << left_shift) * f64::from(so));
        let lhs_multiplier = quantize_multiplier_smaller_than_one_exp(real_lhs)
            .map_err(|e| multiplier_error(ctx, "input 0 multiplier", e))?;
        let rhs_multiplier = quantize_multiplier_smaller_than_one_exp(real_rhs)
            .map_err(|e| multiplier_error(ctx, "input 1 multiplier", e))?;
        if kind == AddSub::Sub && real_output > 1.0 {
            // sub.cc then takes QuantizeMultiplierGreaterThanOne, and the reference kernel
            // applies its positive shift as gemmlowp RoundingDivideByPOT by a negative exponent,
            // which is undefined behaviour in C++: there is no defined result to reproduce.
            return Err(ctx.unsupported(format!(
                "output scale {so} is so small against the input scales that TFLite's output \
                 multiplier {real_output} exceeds 1 (undefined behaviour in its reference kernel)"
            )));
        }
        let output_multiplier = quantize_multiplier_smaller_than_one_exp(real_output)
            .map_err(|e| multiplier_error(ctx, "output multiplier", e))?;
        let (act_min, act_max) = quantized_activation_range(ctx, activation, output, (so, zo))?;
        Ok(GeneralAddSub {
            left_shift,
            lhs_offset: z1.wrapping_neg(),
            lhs_multiplier,
            rhs_offset: z2.wrapping_neg(),
            rhs_multiplier,
            output_offset: zo,
            output_multiplier,
            act_min,
            act_max,
        })
    }

    /// linalg's parameters for the op.
    fn linalg(&self, kind: AddSub) -> QuantBinaryParams {
        QuantBinaryParams {
            op: match kind {
                AddSub::Add => QuantBinaryOp::Add,
                AddSub::Sub => QuantBinaryOp::Sub,
            },
            left_shift: self.left_shift,
            x_offset: self.lhs_offset,
            x_multiplier: self.lhs_multiplier,
            y_offset: self.rhs_offset,
            y_multiplier: self.rhs_multiplier,
            output_offset: self.output_offset,
            output_multiplier: self.output_multiplier,
            act_min: self.act_min,
            act_max: self.act_max,
        }
    }

    /// The first input on the common scale: `((q + offset) << left_shift) * multiplier`.
    fn rescale_lhs(&self, q: i32) -> i32 {
        let shifted = q
            .wrapping_add(self.lhs_offset)
            .wrapping_mul(1 << self.left_shift);
        multiply_by_quantized_multiplier_smaller_than_one_exp(shifted, self.lhs_multiplier)
    }

    /// The second input on the common scale.
    fn rescale_rhs(&self, q: i32) -> i32 {
        let shifted = q
            .wrapping_add(self.rhs_offset)
            .wrapping_mul(1 << self.left_shift);
        multiply_by_quantized_multiplier_smaller_than_one_exp(shifted, self.rhs_multiplier)
    }

    /// The raw sum on the common scale (`raw_sum` in TFLite).
    fn raw_sum(&self, a: i32, b: i32) -> i32 {
        self.rescale_lhs(a).wrapping_add(self.rescale_rhs(b))
    }

    /// The raw difference on the common scale (`raw_sub` in TFLite).
    fn raw_difference(&self, a: i32, b: i32) -> i32 {
        self.rescale_lhs(a).wrapping_sub(self.rescale_rhs(b))
    }

    /// Requantizes a raw sum or difference to the output, clamped to the activation range.
    fn requantize(&self, raw: i32) -> i32 {
        multiply_by_quantized_multiplier_smaller_than_one_exp(raw, self.output_multiplier)
            .wrapping_add(self.output_offset)
            .max(self.act_min)
            .min(self.act_max)
    }
}

/// General int16 ADD/SUB: both inputs rescaled per element.
fn general_add_sub_int16(
    ctx: &OpContext<'_>,
    ops: &Operands<'_>,
    quant: [(f32, i32); 3],
    activation: ActivationFunction,
    kind: AddSub,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    let p = GeneralAddSub::new(ctx, ops.output, quant, activation, true, kind)?;
    if let Some(fast) = fast_add_sub::<i16>(ctx, ops, &p, kind) {
        return Ok(fast);
    }
    let broadcast = ops.broadcast.clone();
    Ok(match kind {
        AddSub::Add => elementwise(broadcast, move |a: i16, b: i16| {
            p.requantize(p.raw_sum(a.into(), b.into())) as i16
        }),
        AddSub::Sub => elementwise(broadcast, move |a: i16, b: i16| {
            p.requantize(p.raw_difference(a.into(), b.into())) as i16
        }),
    })
}

/// General 8-bit ADD/SUB. An input's rescaled value depends on that input alone, so both
/// rescalings are tabulated for all 256 values when the kernel is built; per element only the
/// sum (or difference) of two table entries is requantized. Bit-identical to rescaling each
/// element, and several times faster.
fn general_add_sub_8bit<T: QuantByte + FastQuant>(
    ctx: &OpContext<'_>,
    ops: &Operands<'_>,
    quant: [(f32, i32); 3],
    activation: ActivationFunction,
    kind: AddSub,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    let p = GeneralAddSub::new(ctx, ops.output, quant, activation, false, kind)?;
    if let Some(fast) = fast_add_sub::<T>(ctx, ops, &p, kind) {
        return Ok(fast);
    }
    let mut lhs = [0i32; 256];
    let mut rhs = [0i32; 256];
    for index in 0..=u8::MAX {
        let value = T::value_at(index);
        lhs[usize::from(index)] = p.rescale_lhs(value);
        rhs[usize::from(index)] = p.rescale_rhs(value);
    }
    let broadcast = ops.broadcast.clone();
    Ok(match kind {
        AddSub::Add => elementwise(broadcast, move |a: T, b: T| {
            T::from_i32(p.requantize(lhs[a.index()].wrapping_add(rhs[b.index()])))
        }),
        AddSub::Sub => elementwise(broadcast, move |a: T, b: T| {
            T::from_i32(p.requantize(lhs[a.index()].wrapping_sub(rhs[b.index()])))
        }),
    })
}

/// TFLite's int16 ADD/SUB for power-of-two scales and zero points 0 (the LSTM path:
/// `reference_ops::Add(..., pot_scale = true)`, `Sub16`, `BroadcastSub16POTSlow`): the input
/// whose scale is finer than the output's is rounding-shifted right onto the output scale, the
/// other one must already be on it, and the two are added or subtracted with int16 saturation.
#[derive(Debug, Clone, Copy)]
struct PotAddSub {
    /// Right shift of each input onto the output scale (at least one of them is 0).
    lhs_right_shift: i32,
    rhs_right_shift: i32,
    act_min: i32,
    act_max: i32,
}

impl PotAddSub {
    /// `Some` when the power-of-two path applies: all three scales powers of two (TFLite's
    /// `CheckedLog2`) and all zero points 0; `None` sends the op to the general int16 path.
    /// Newer TFLite refuses nonzero int16 zero points outright; octet keeps the older choice of
    /// the general path for them.
    fn new(
        ctx: &OpContext<'_>,
        ops: &Operands<'_>,
        [(s1, z1), (s2, z2), (so, zo)]: [(f32, i32); 3],
        activation: ActivationFunction,
    ) -> Result<Option<Self>, RuntimeError> {
        let (Some(log1), Some(log2), Some(log_out)) =
            (checked_log2(s1), checked_log2(s2), checked_log2(so))
        else {
            return Ok(None);
        };
        if z1 != 0 || z2 != 0 || zo != 0 {
            return Ok(None);
        }
        let (shift1, shift2) = (log1 - log_out, log2 - log_out);
        // Shifting one input is supported; the quantizer ensures the other matches the output.
        if !((shift1 == 0 || shift2 == 0) && shift1 <= 0 && shift2 <= 0) {
            return Err(ctx.invalid(format!(
                "power-of-two int16 scales {s1}, {s2} -> {so}: one input must have the output's \
                 scale and the other a finer one"
            )));
        }
        let (act_min, act_max) = quantized_activation_range(ctx, activation, ops.output, (so, 0))?;
        Ok(Some(PotAddSub {
            lhs_right_shift: -shift1,
            rhs_right_shift: -shift2,
            act_min,
            act_max,
        }))
    }

    fn clamp_output(&self, raw: i32) -> i16 {
        // The activation range lies within int16, so the cast is exact.
        raw.max(self.act_min).min(self.act_max) as i16
    }

    /// `SaturatingAdd(RoundingDivideByPOT(shifted input), other input)` in int16, clamped.
    fn add(&self, a: i16, b: i16) -> i16 {
        let a = rounding_divide_by_pot_i16(a, self.lhs_right_shift);
        let b = rounding_divide_by_pot_i16(b, self.rhs_right_shift);
        self.clamp_output(i32::from(a.saturating_add(b)))
    }

    /// The difference of the inputs on the output scale, clamped (`BroadcastSub16POTSlow`
    /// subtracts in int32, `Sub16` saturates in int16; within the clamp both agree).
    fn sub(&self, a: i16, b: i16) -> i16 {
        let a = rounding_divide_by_pot_i16(a, self.lhs_right_shift);
        let b = rounding_divide_by_pot_i16(b, self.rhs_right_shift);
        self.clamp_output(i32::from(a) - i32::from(b))
    }
}

// ---------------------------------------------------------------------------------------------
// MUL
// ---------------------------------------------------------------------------------------------

/// TFLite's quantized MUL (`MulElementwise`, `BroadcastMul6DSlow`): the product of the offset
/// inputs, requantized with one multiplier `s1 * s2 / s_out`.
#[derive(Debug, Clone, Copy)]
struct QuantMul {
    lhs_offset: i32,
    rhs_offset: i32,
    output_offset: i32,
    multiplier: QuantizedMultiplier,
    act_min: i32,
    act_max: i32,
}

impl QuantMul {
    /// The raw product `(a - z1) * (b - z2)`.
    fn accumulate(&self, a: i32, b: i32) -> i32 {
        a.wrapping_add(self.lhs_offset)
            .wrapping_mul(b.wrapping_add(self.rhs_offset))
    }

    /// Requantizes a raw product to the output, clamped to the activation range.
    fn requantize(&self, acc: i32) -> i32 {
        self.output_offset
            .wrapping_add(multiply_by_quantized_multiplier(acc, self.multiplier))
            .max(self.act_min)
            .min(self.act_max)
    }
}

/// `mul.cc` Prepare computes `input1 scale * input2 scale / output scale` in `float` and only
/// then widens it to `double`; the rounding of the float product matters for bit-exactness.
fn mul_real_multiplier(s1: f32, s2: f32, so: f32) -> f64 {
    f64::from(s1 * s2 / so)
}

fn quantized_mul<T: FastQuant>(
    ctx: &OpContext<'_>,
    ops: &Operands<'_>,
    activation: ActivationFunction,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    let [(s1, z1), (s2, z2), (so, zo)] = quant_params(ctx, ops)?;
    if ops.output.dtype == DType::Int16 && (z1 != 0 || z2 != 0 || zo != 0) {
        // The int16 product of offset inputs could overflow int32; TFLite requires symmetry.
        return Err(ctx.invalid("int16 MUL needs zero points 0 on all tensors"));
    }
    let multiplier = quantize_multiplier(mul_real_multiplier(s1, s2, so))
        .map_err(|e| multiplier_error(ctx, "output multiplier", e))?;
    let (act_min, act_max) = quantized_activation_range(ctx, activation, ops.output, (so, zo))?;
    let p = QuantMul {
        lhs_offset: z1.wrapping_neg(),
        rhs_offset: z2.wrapping_neg(),
        output_offset: zo,
        multiplier,
        act_min,
        act_max,
    };
    if let Some(fast) = fast_mul::<T>(ctx, ops, &p) {
        return Ok(fast);
    }
    Ok(elementwise(ops.broadcast.clone(), move |a: T, b: T| {
        T::from_i32(p.requantize(p.accumulate(a.to_i32(), b.to_i32())))
    }))
}

/// TFLite's legacy MUL of two int16 Q0.15 inputs into an 8-bit output (`Mul(int16, int16 ->
/// int8/uint8)`): the Q0.15 product, rounding-shifted right by 8, offset by the output zero
/// point and clamped. The input scales are ignored, as in TFLite. TFLite has no broadcasting
/// variant of it.
fn int16_mul_to_8bit<T: QuantElem + Pod>(
    ctx: &OpContext<'_>,
    ops: &Operands<'_>,
    activation: ActivationFunction,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    if !ops.broadcast.is_elementwise() {
        return Err(ctx.unsupported(
            "int16 MUL with an 8-bit output needs inputs of one shape (TFLite cannot broadcast it)",
        ));
    }
    let (so, zo) = per_tensor_quant(ctx, ops.output, "output")?;
    let (act_min, act_max) = quantized_activation_range(ctx, activation, ops.output, (so, zo))?;
    // std::min<int16_t> / std::max<int16_t> convert their bounds to int16 first.
    let upper = act_max.wrapping_sub(zo) as i16;
    let lower = act_min.wrapping_sub(zo) as i16;
    Ok(elementwise(ops.broadcast.clone(), move |a: i16, b: i16| {
        let product = saturating_rounding_doubling_high_mul_i16(a, b);
        let rescaled = rounding_divide_by_pot_i16(product, 8);
        let clamped = rescaled.min(upper).max(lower);
        T::from_i32(zo.wrapping_add(i32::from(clamped)))
    }))
}

// ---------------------------------------------------------------------------------------------
// MAXIMUM and MINIMUM
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MaxMin {
    Max,
    Min,
}

/// `el1 > el2 ? el1 : el2` (or `<`), exactly as `maximum_minimum.cc` writes it: with a NaN the
/// second operand wins unless it is the NaN, and of two zeros the second is returned.
fn max_min_kernel<T: Pod + PartialOrd + Send>(
    broadcast: Broadcast,
    kind: MaxMin,
) -> Box<dyn Kernel> {
    match kind {
        MaxMin::Max => elementwise(broadcast, |a: T, b: T| if a > b { a } else { b }),
        MaxMin::Min => elementwise(broadcast, |a: T, b: T| if a < b { a } else { b }),
    }
}

fn max_or_min(ctx: &OpContext<'_>, kind: MaxMin) -> Result<Box<dyn Kernel>, RuntimeError> {
    let ops = operands(ctx)?;
    if ops.output.dtype != ops.lhs.dtype {
        return Err(ctx.unsupported_types());
    }
    // Quantized tensors are compared as stored: TFLite assumes (and its quantizer ensures) that
    // inputs and output share their quantization parameters.
    if ops.lhs.dtype == DType::Float32 {
        let (op, mirrored) = match kind {
            MaxMin::Max => (F32BinaryOp::Max, F32BinaryOp::ReverseMax),
            MaxMin::Min => (F32BinaryOp::Min, F32BinaryOp::ReverseMin),
        };
        let none = (f32::NEG_INFINITY, f32::INFINITY);
        if let Some(fast) = fast_f32(ctx, &ops, op, mirrored, none) {
            return Ok(fast);
        }
    }
    let broadcast = ops.broadcast;
    Ok(match ops.lhs.dtype {
        DType::Float32 => max_min_kernel::<f32>(broadcast, kind),
        DType::Int8 => max_min_kernel::<i8>(broadcast, kind),
        DType::UInt8 => max_min_kernel::<u8>(broadcast, kind),
        DType::Int16 => max_min_kernel::<i16>(broadcast, kind),
        DType::Int32 => max_min_kernel::<i32>(broadcast, kind),
        DType::Int64 => max_min_kernel::<i64>(broadcast, kind),
        _ => return Err(ctx.unsupported_types()),
    })
}

// ---------------------------------------------------------------------------------------------
// PRELU
// ---------------------------------------------------------------------------------------------

/// TFLite's quantized PRELU (`reference_ops::Prelu`, `BroadcastPrelu4DSlow`): a non-negative
/// offset input is requantized with `s_in / s_out`, a negative one is multiplied by the offset
/// alpha and requantized with `s_in * s_alpha / s_out`; the result is clamped to the dtype's
/// range (PRELU has no fused activation).
#[derive(Debug, Clone, Copy)]
struct QuantPreluOp {
    input_offset: i32,
    alpha_offset: i32,
    output_offset: i32,
    identity_multiplier: QuantizedMultiplier,
    alpha_multiplier: QuantizedMultiplier,
    qmin: i32,
    qmax: i32,
}

impl QuantPreluOp {
    /// As `activations.cc` PreluPrepare, from the input's, alpha's and output's quantization.
    fn new(
        ctx: &OpContext<'_>,
        [(si, zi), (sa, za), (so, zo)]: [(f32, i32); 3],
        output: &TensorInfo,
    ) -> Result<Self, RuntimeError> {
        let (qmin, qmax) = dtype_range(output.dtype).ok_or_else(|| ctx.unsupported_types())?;
        // activations.cc computes both real multipliers in float before widening them to
        // double.
        let identity_multiplier = quantize_multiplier(f64::from(si / so))
            .map_err(|e| multiplier_error(ctx, "identity multiplier", e))?;
        let alpha_multiplier = quantize_multiplier(f64::from(si * sa / so))
            .map_err(|e| multiplier_error(ctx, "alpha multiplier", e))?;
        Ok(QuantPreluOp {
            input_offset: zi.wrapping_neg(),
            alpha_offset: za.wrapping_neg(),
            output_offset: zo,
            identity_multiplier,
            alpha_multiplier,
            qmin,
            qmax,
        })
    }

    /// linalg's parameters for these slopes (raw, before the alpha offset).
    fn linalg(&self, alpha: impl IntoIterator<Item = i32>) -> QuantPreluParams {
        QuantPreluParams {
            input_offset: self.input_offset,
            alpha: alpha
                .into_iter()
                .map(|a| a.wrapping_add(self.alpha_offset))
                .collect(),
            output_offset: self.output_offset,
            identity_multiplier: self.identity_multiplier,
            alpha_multiplier: self.alpha_multiplier,
            min: self.qmin,
            max: self.qmax,
        }
    }

    /// The raw value before requantization and whether it is on the alpha (negative) branch.
    fn accumulate(&self, x: i32, alpha: i32) -> (i32, bool) {
        let input = x.wrapping_add(self.input_offset);
        if input >= 0 {
            (input, false)
        } else {
            (
                input.wrapping_mul(alpha.wrapping_add(self.alpha_offset)),
                true,
            )
        }
    }

    /// Requantizes the raw value with the multiplier of its branch, clamped to the dtype.
    fn requantize(&self, (acc, negative): (i32, bool)) -> i32 {
        let multiplier = if negative {
            self.alpha_multiplier
        } else {
            self.identity_multiplier
        };
        multiply_by_quantized_multiplier(acc, multiplier)
            .wrapping_add(self.output_offset)
            .max(self.qmin)
            .min(self.qmax)
    }
}

fn quantized_prelu<T: FastQuant>(
    ctx: &OpContext<'_>,
    ops: &Operands<'_>,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    let p = QuantPreluOp::new(ctx, quant_params(ctx, ops)?, ops.output)?;
    if let Some(fast) = fast_prelu::<T>(ctx, ops, &p)? {
        return Ok(fast);
    }
    Ok(elementwise(ops.broadcast.clone(), move |x: T, alpha: T| {
        T::from_i32(p.requantize(p.accumulate(x.to_i32(), alpha.to_i32())))
    }))
}

// ---------------------------------------------------------------------------------------------
// Fast paths: octet-linalg's element-wise kernels
// ---------------------------------------------------------------------------------------------

/// Element-wise and resize outputs smaller than this are computed on one thread. The pool hands
/// out a job in well under a microsecond and gives chunk `t` to thread `t`, so consecutive
/// operators split alike find their data in the same core's cache; measured on the MediaPipe
/// models, 16 KiB splits beat 64 KiB and larger ones (with rayon, before, only splits above
/// 1 MiB paid).
pub(crate) const SPLIT_BYTES: usize = 16 * 1024;

/// How the inputs map onto a linalg kernel's full operand and cyclic operand (one whose
/// element `i % period` meets element `i` of the output): equal shapes, a scalar, or a
/// trailing-dimensions vector such as a per-channel bias against an NHWC tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    /// The first input is the cyclic one (the kernel runs the mirrored op).
    swapped: bool,
}

fn layout(ops: &Operands<'_>) -> Option<Layout> {
    if ops.broadcast.output_len() == 0 {
        return None;
    }
    let out = strip_leading_ones(ops.broadcast.output_shape());
    let full = |shape: &[usize]| strip_leading_ones(shape) == out;
    let cyclic = |shape: &[usize]| out.ends_with(strip_leading_ones(shape));
    if full(&ops.lhs.shape) && cyclic(&ops.rhs.shape) {
        Some(Layout { swapped: false })
    } else if full(&ops.rhs.shape) && cyclic(&ops.lhs.shape) {
        Some(Layout { swapped: true })
    } else {
        None
    }
}

/// A binary op on linalg: the kernel and the operand order.
struct FastBinary {
    op: FastOp,
    swapped: bool,
}

enum FastOp {
    F32(F32Binary),
    I8(QuantBinary<i8>),
    U8(QuantBinary<u8>),
    I16(QuantBinary<i16>),
    PreluI8(QuantPrelu<i8>),
    PreluU8(QuantPrelu<u8>),
}

/// The quantized element types with a linalg fast path.
trait FastQuant: QuantElem + Pod {
    fn binary(kernel: QuantBinary<Self>) -> Option<FastOp>;
    fn prelu(kernel: QuantPrelu<Self>) -> Option<FastOp>;
}

impl FastQuant for i8 {
    fn binary(kernel: QuantBinary<Self>) -> Option<FastOp> {
        Some(FastOp::I8(kernel))
    }
    fn prelu(kernel: QuantPrelu<Self>) -> Option<FastOp> {
        Some(FastOp::PreluI8(kernel))
    }
}

impl FastQuant for u8 {
    fn binary(kernel: QuantBinary<Self>) -> Option<FastOp> {
        Some(FastOp::U8(kernel))
    }
    fn prelu(kernel: QuantPrelu<Self>) -> Option<FastOp> {
        Some(FastOp::PreluU8(kernel))
    }
}

impl FastQuant for i16 {
    fn binary(kernel: QuantBinary<Self>) -> Option<FastOp> {
        Some(FastOp::I16(kernel))
    }
    fn prelu(_: QuantPrelu<Self>) -> Option<FastOp> {
        None
    }
}

fn fast_kernel(op: Option<FastOp>, swapped: bool) -> Option<Box<dyn Kernel>> {
    op.map(|op| Box::new(FastBinary { op, swapped }) as Box<dyn Kernel>)
}

/// Float ADD, SUB, MUL, MAXIMUM, MINIMUM and PRELU (`mirrored` is the op with its operands
/// exchanged).
fn fast_f32(
    ctx: &OpContext<'_>,
    ops: &Operands<'_>,
    op: F32BinaryOp,
    mirrored: F32BinaryOp,
    (min, max): (f32, f32),
) -> Option<Box<dyn Kernel>> {
    let l = layout(ops)?;
    let op = if l.swapped { mirrored } else { op };
    let kernel = F32Binary::new(ctx.isa(), op, F32Clamp { min, max });
    fast_kernel(Some(FastOp::F32(kernel)), l.swapped)
}

/// General quantized ADD/SUB.
fn fast_add_sub<T: FastQuant>(
    ctx: &OpContext<'_>,
    ops: &Operands<'_>,
    p: &GeneralAddSub,
    kind: AddSub,
) -> Option<Box<dyn Kernel>> {
    let l = layout(ops)?;
    let mut params = p.linalg(kind);
    if l.swapped {
        std::mem::swap(&mut params.x_offset, &mut params.y_offset);
        std::mem::swap(&mut params.x_multiplier, &mut params.y_multiplier);
        if kind == AddSub::Sub {
            params.op = QuantBinaryOp::ReverseSub;
        }
    }
    let kernel = QuantBinary::<T>::new(ctx.isa(), params).ok()?;
    fast_kernel(T::binary(kernel), l.swapped)
}

/// Quantized MUL.
fn fast_mul<T: FastQuant>(
    ctx: &OpContext<'_>,
    ops: &Operands<'_>,
    p: &QuantMul,
) -> Option<Box<dyn Kernel>> {
    let l = layout(ops)?;
    let (x_offset, y_offset) = if l.swapped {
        (p.rhs_offset, p.lhs_offset)
    } else {
        (p.lhs_offset, p.rhs_offset)
    };
    let params = QuantBinaryParams {
        op: QuantBinaryOp::Mul,
        left_shift: 0,
        x_offset,
        x_multiplier: QuantizedMultiplier::ZERO,
        y_offset,
        y_multiplier: QuantizedMultiplier::ZERO,
        output_offset: p.output_offset,
        output_multiplier: p.multiplier,
        act_min: p.act_min,
        act_max: p.act_max,
    };
    let kernel = QuantBinary::<T>::new(ctx.isa(), params).ok()?;
    fast_kernel(T::binary(kernel), l.swapped)
}

/// Quantized PRELU with a constant alpha that is a scalar or a trailing-dimensions vector.
fn fast_prelu<T: FastQuant>(
    ctx: &OpContext<'_>,
    ops: &Operands<'_>,
    p: &QuantPreluOp,
) -> Result<Option<Box<dyn Kernel>>, RuntimeError> {
    let Some(l) = layout(ops).filter(|l| !l.swapped) else {
        return Ok(None);
    };
    let alpha: Vec<i32> = match ctx.constant(1)? {
        Some(octet_core::TensorData::I8(v)) => v.into_iter().map(i32::from).collect(),
        Some(octet_core::TensorData::U8(v)) => v.into_iter().map(i32::from).collect(),
        _ => return Ok(None),
    };
    if alpha.len() != ops.broadcast.rhs_len() {
        return Ok(None);
    }
    let Ok(kernel) = QuantPrelu::<T>::new(ctx.isa(), p.linalg(alpha)) else {
        return Ok(None);
    };
    Ok(fast_kernel(T::prelu(kernel), l.swapped))
}

// ---------------------------------------------------------------------------------------------
// Fused output stages: the same kernels, run by a convolution on its own output
// ---------------------------------------------------------------------------------------------

/// The integer ADD a quantized convolution runs in its fused output stage (see `fusion`): `x`
/// (the convolution's own output) plus `y` (same shape) into `out`, with the parameters ADD
/// prepares itself. The raw sum adds each input rescaled with its own parameters, so which
/// operand of the model's ADD the convolution's output was makes no difference.
pub(crate) fn fused_add<T: QuantElem>(
    ctx: &OpContext<'_>,
    [x, y, out]: [&TensorInfo; 3],
    activation: ActivationFunction,
) -> Result<QuantBinary<T>, RuntimeError> {
    let quant = [
        per_tensor_quant(ctx, x, "the fused ADD's input")?,
        per_tensor_quant(ctx, y, "the fused ADD's other input")?,
        per_tensor_quant(ctx, out, "the fused ADD's output")?,
    ];
    let p = GeneralAddSub::new(ctx, out, quant, activation, false, AddSub::Add)?;
    QuantBinary::new(ctx.isa(), p.linalg(AddSub::Add)).map_err(|e| ctx.invalid(e))
}

/// The integer PRELU a quantized convolution runs in its fused output stage: `x` into `out`
/// with the constant slopes `alpha` (one per channel, raw), as PRELU prepares itself.
pub(crate) fn fused_prelu<T: QuantElem>(
    ctx: &OpContext<'_>,
    [x, alpha, out]: [&TensorInfo; 3],
    slopes: impl IntoIterator<Item = i32>,
) -> Result<QuantPrelu<T>, RuntimeError> {
    let quant = [
        per_tensor_quant(ctx, x, "the fused PRELU's input")?,
        per_tensor_quant(ctx, alpha, "the fused PRELU's slopes")?,
        per_tensor_quant(ctx, out, "the fused PRELU's output")?,
    ];
    let p = QuantPreluOp::new(ctx, quant, out)?;
    QuantPrelu::new(ctx.isa(), p.linalg(slopes)).map_err(|e| ctx.invalid(e))
}

impl Kernel for FastBinary {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let swapped = self.swapped;
        match &self.op {
            FastOp::F32(k) => eval_fast::<f32>(io, swapped, true, |x, y, o| k.run(x, y, o)),
            FastOp::I8(k) => eval_fast::<i8>(io, swapped, true, |x, y, o| k.run(x, y, o)),
            FastOp::U8(k) => eval_fast::<u8>(io, swapped, true, |x, y, o| k.run(x, y, o)),
            FastOp::I16(k) => eval_fast::<i16>(io, swapped, true, |x, y, o| k.run(x, y, o)),
            FastOp::PreluI8(k) => eval_fast::<i8>(io, false, false, |x, _, o| k.run(x, o)),
            FastOp::PreluU8(k) => eval_fast::<u8>(io, false, false, |x, _, o| k.run(x, o)),
        }
    }
}

/// A linalg error met while a kernel runs.
pub(crate) fn linalg_error(e: LinalgError) -> RuntimeError {
    RuntimeError::eval(e.to_string())
}

/// Runs `f` over `x` and `out` (equally long), split into ranges over the threads when the
/// output is larger than [`SPLIT_BYTES`]: the element-wise maps of activations, QUANTIZE and
/// DEQUANTIZE.
pub(crate) fn split_map<T: Sync, U: Send>(
    threads: &Threads,
    x: &[T],
    out: &mut [U],
    f: impl Fn(&[T], &mut [U]) -> Result<(), LinalgError> + Sync + Send,
) -> Result<(), RuntimeError> {
    let len = out.len();
    if threads.count() <= 1 || size_of_val(out) < SPLIT_BYTES || x.len() != len {
        return f(x, out).map_err(linalg_error);
    }
    let chunk = threads.chunk_units(len, 4096);
    threads
        .for_each_chunk(out, chunk, |i, o| {
            let xs = x
                .get(i * chunk..i * chunk + o.len())
                .ok_or_else(|| LinalgError::Mismatch("input shorter than the output".into()))?;
            f(xs, o)
        })
        .map_err(linalg_error)
}

/// Runs `f(x, y, out)` with `x`/`y` the (possibly swapped) inputs, split over the threads when
/// the output is large: into ranges of whole periods of `y`, or into any ranges of all three
/// when `y` is as long as the output and `split_elementwise` allows it.
fn eval_fast<T: Pod + Send + Sync>(
    io: &mut OpIo<'_>,
    swapped: bool,
    split_elementwise: bool,
    f: impl Fn(&[T], &[T], &mut [T]) -> Result<(), LinalgError> + Sync + Send,
) -> Result<(), RuntimeError> {
    let parts = io.parts::<T>(0)?;
    let (a, b) = (parts.inputs.get::<T>(0)?, parts.inputs.get::<T>(1)?);
    let (x, y) = if swapped { (b, a) } else { (a, b) };
    run_split(parts.threads, x, y, parts.output, split_elementwise, f)
}

fn run_split<T: Pod + Send + Sync, U: Pod + Send + Sync>(
    threads: &Threads,
    x: &[T],
    y: &[T],
    out: &mut [U],
    split_elementwise: bool,
    f: impl Fn(&[T], &[T], &mut [U]) -> Result<(), LinalgError> + Sync + Send,
) -> Result<(), RuntimeError> {
    let len = out.len();
    let period = y.len();
    if threads.count() <= 1
        || size_of_val(out) < SPLIT_BYTES
        || x.len() != len
        || period == 0
        || (period == len && !split_elementwise)
    {
        return f(x, y, out).map_err(linalg_error);
    }
    let short = || LinalgError::Mismatch("operand shorter than the output".into());
    if period == len {
        let chunk = threads.chunk_units(len, 4096);
        threads
            .for_each_chunk(out, chunk, |i, o| {
                let range = i * chunk..i * chunk + o.len();
                let xs = x.get(range.clone()).ok_or_else(short)?;
                let ys = y.get(range).ok_or_else(short)?;
                f(xs, ys, o)
            })
            .map_err(linalg_error)
    } else {
        let rows = threads.chunk_units(len / period, 4096usize.div_ceil(period));
        let chunk = rows * period;
        threads
            .for_each_chunk(out, chunk, |i, o| {
                let xs = x.get(i * chunk..i * chunk + o.len()).ok_or_else(short)?;
                f(xs, y, o)
            })
            .map_err(linalg_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Quantizes `real` with `(scale, zero_point)` into `[lo, hi]`.
    fn q(real: f64, scale: f64, zero_point: i32, lo: i32, hi: i32) -> i32 {
        ((real / scale).round() as i32 + zero_point).clamp(lo, hi)
    }

    fn int8_add_params(quant: [(f32, i32); 3]) -> GeneralAddSub {
        let [(s1, z1), (s2, z2), (so, zo)] = quant;
        let twice = 2.0 * f64::from(s1.max(s2));
        GeneralAddSub {
            left_shift: 20,
            lhs_offset: -z1,
            lhs_multiplier: quantize_multiplier_smaller_than_one_exp(f64::from(s1) / twice)
                .unwrap(),
            rhs_offset: -z2,
            rhs_multiplier: quantize_multiplier_smaller_than_one_exp(f64::from(s2) / twice)
                .unwrap(),
            output_offset: zo,
            output_multiplier: quantize_multiplier_smaller_than_one_exp(
                twice / (f64::from(1 << 20) * f64::from(so)),
            )
            .unwrap(),
            act_min: -128,
            act_max: 127,
        }
    }

    #[test]
    fn clamp_follows_std_min_max() {
        assert_eq!(clamp(5, 0, 3), 3);
        assert_eq!(clamp(-5, 0, 3), 0);
        assert!(clamp(f32::NAN, 0.0, 6.0).is_nan());
        // lo > hi does not panic: std::min(std::max(x, lo), hi) gives hi.
        assert_eq!(clamp(1, 5, 3), 3);
    }

    #[test]
    fn plain_activation_ranges() {
        assert_eq!(
            plain_activation_range::<i32>(ActivationFunction::Relu6),
            (0, 6)
        );
        assert_eq!(
            plain_activation_range::<i16>(ActivationFunction::None),
            (i16::MIN, i16::MAX)
        );
        // ReluN1To1 on uint32: the -1 wraps to u32::MAX, as in C++.
        assert_eq!(
            plain_activation_range::<u32>(ActivationFunction::ReluN1To1),
            (u32::MAX, 1)
        );
    }

    #[test]
    fn quantized_add_rounds_to_the_nearest_output_step() {
        // Inputs 0.5/q and 0.25/q, output 1/q, zero points 0: the real sum of a and b steps is
        // 0.5 a + 0.25 b output steps. With a = 3, b = 2: 1.5 + 0.5 = 2.0 -> 2; a = 1, b = 2:
        // 1.0; a = 1, b = 1: 0.75 -> 1; a = -1, b = -1: -0.75 -> -1.
        let p = int8_add_params([(0.5, 0), (0.25, 0), (1.0, 0)]);
        let add = |a: i32, b: i32| p.requantize(p.raw_sum(a, b));
        assert_eq!(add(3, 2), 2);
        assert_eq!(add(1, 2), 1);
        assert_eq!(add(1, 1), 1);
        assert_eq!(add(-1, -1), -1);
        // 127 * 0.5 + 127 * 0.25 = 95.25 -> 95.
        assert_eq!(add(127, 127), 95);
        // Saturation at the int8 range: 100 + 100 = 200 halves of an output step -> 400 > 127.
        let p = int8_add_params([(1.0, 0), (1.0, 0), (0.5, 0)]);
        assert_eq!(p.requantize(p.raw_sum(100, 100)), 127);
    }

    #[test]
    fn quantized_add_matches_real_arithmetic_with_offsets() {
        // Asymmetric parameters: the integer result must be the rounded real sum, give or take
        // one step (the fixed-point rescaling is not exact rounding).
        let quant = [(0.02_f32, -3), (0.035_f32, 17), (0.05_f32, -10)];
        let s = int8_add_params(quant);
        for a in (-128..=127).step_by(7) {
            for b in (-128..=127).step_by(5) {
                let real = 0.02 * f64::from(a + 3) + 0.035 * f64::from(b - 17);
                let want = q(real, 0.05, -10, -128, 127);
                let got = s.requantize(s.raw_sum(a, b));
                assert!((got - want).abs() <= 1, "{a} + {b}: {got} vs {want}");
            }
        }
        let p = int8_add_params(quant);
        for a in (-128..=127).step_by(7) {
            for b in (-128..=127).step_by(5) {
                let real = 0.02 * f64::from(a + 3) - 0.035 * f64::from(b - 17);
                let want = q(real, 0.05, -10, -128, 127);
                let got = p.requantize(p.raw_difference(a, b));
                assert!((got - want).abs() <= 1, "{a} - {b}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn quantized_mul_multiplier_is_computed_in_float() {
        // 0.1f * 0.2f / 0.3f in float differs from the double computation in the last bits,
        // which can change the 31-bit multiplier.
        let float = mul_real_multiplier(0.1, 0.2, 0.3);
        assert_eq!(float, f64::from(0.1f32 * 0.2f32 / 0.3f32));
        // Hand-worked product: scales 0.5, 0.5 -> 0.25, zero points 1, 2, 3; a = 5, b = 6:
        // (5 - 1) * (6 - 2) = 16 raw steps of 0.25 = 16 output steps of 0.25, + 3 = 19.
        let p = QuantMul {
            lhs_offset: -1,
            rhs_offset: -2,
            output_offset: 3,
            multiplier: quantize_multiplier(mul_real_multiplier(0.5, 0.5, 0.25)).unwrap(),
            act_min: -128,
            act_max: 127,
        };
        assert_eq!(p.requantize(p.accumulate(5, 6)), 19);
        // The multiplier 0.5 is 2^30 with shift 0, so only the doubling high multiply rounds,
        // ties towards +infinity: 1.5 -> 2 but -1.5 -> -1.
        let p = QuantMul {
            multiplier: quantize_multiplier(0.5).unwrap(),
            output_offset: 0,
            lhs_offset: 0,
            rhs_offset: 0,
            ..p
        };
        assert_eq!(p.requantize(p.accumulate(3, 1)), 2);
        assert_eq!(p.requantize(p.accumulate(-3, 1)), -1);
    }

    #[test]
    fn pot_add_and_sub_shift_the_finer_input() {
        // Input 0 on the output scale 2^-10, input 1 on 2^-12: input 1 is divided by 4 with
        // rounding half away from zero before the saturating int16 add.
        let p = PotAddSub {
            lhs_right_shift: 0,
            rhs_right_shift: 2,
            act_min: -32768,
            act_max: 32767,
        };
        assert_eq!(p.add(100, 6), 102); // 6 / 4 = 1.5 -> 2
        assert_eq!(p.add(100, -6), 98); // -1.5 -> -2
        assert_eq!(p.add(32000, 4000), 32767); // saturates
        assert_eq!(p.sub(100, 6), 98);
        assert_eq!(p.sub(-32768, 4), -32768);
        let p = PotAddSub {
            lhs_right_shift: 1,
            rhs_right_shift: 0,
            act_min: 0,
            act_max: 32767,
        };
        assert_eq!(p.sub(5, 10), 0); // 3 - 10 clamped by Relu
        assert_eq!(p.sub(-5, -10), 7); // -3 + 10
    }

    #[test]
    fn split_runs_match_one_thread() {
        // Outputs above SPLIT_BYTES are split over the threads: whole periods of a cyclic
        // operand, or any ranges of equally long operands.
        let n = SPLIT_BYTES / 4 * 3 + 96;
        let x: Vec<f32> = (0..n).map(|i| (i % 1000) as f32 * 0.25 - 100.0).collect();
        let add = F32Binary::new(
            octet_linalg::Isa::detect(),
            F32BinaryOp::Sub,
            F32Clamp::NONE,
        );
        let two = Threads::new(2).unwrap();
        for period in [n, 32, 1] {
            let y: Vec<f32> = x[..period].iter().map(|v| v * 0.5 + 1.0).collect();
            let mut one_thread = vec![0f32; n];
            let mut split = vec![0f32; n];
            run_split(
                &Threads::single(),
                &x,
                &y,
                &mut one_thread,
                true,
                |x, y, o| add.run(x, y, o),
            )
            .unwrap();
            run_split(&two, &x, &y, &mut split, true, |x, y, o| add.run(x, y, o)).unwrap();
            assert_eq!(one_thread, split, "period {period}");
            assert_eq!(split[n - 1], x[n - 1] - y[(n - 1) % period]);
        }
        let mut one_thread = vec![0f32; n];
        let mut split = vec![0f32; n];
        let neg = |x: &[f32], o: &mut [f32]| {
            for (o, v) in o.iter_mut().zip(x) {
                *o = -v;
            }
            Ok(())
        };
        split_map(&Threads::single(), &x, &mut one_thread, neg).unwrap();
        split_map(&two, &x, &mut split, neg).unwrap();
        assert_eq!(one_thread, split);
    }

    #[test]
    fn byte_table_positions_cover_every_value_once() {
        for v in i8::MIN..=i8::MAX {
            assert_eq!(i8::value_at(v.index() as u8), i32::from(v));
        }
        for v in u8::MIN..=u8::MAX {
            assert_eq!(u8::value_at(v.index() as u8), i32::from(v));
        }
    }

    #[test]
    fn quantized_prelu_uses_two_multipliers() {
        // Input scale 0.1 (zp 0), alpha scale 0.01 (zp 0), output scale 0.1 (zp 0):
        // x = 20 (2.0) stays 20; x = -20 (-2.0) with alpha 25 (0.25) gives -0.5 = -5 steps.
        let p = QuantPreluOp {
            input_offset: 0,
            alpha_offset: 0,
            output_offset: 0,
            identity_multiplier: quantize_multiplier(f64::from(0.1f32 / 0.1f32)).unwrap(),
            alpha_multiplier: quantize_multiplier(f64::from(0.1f32 * 0.01f32 / 0.1f32)).unwrap(),
            qmin: -128,
            qmax: 127,
        };
        assert_eq!(p.requantize(p.accumulate(20, 25)), 20);
        assert_eq!(p.requantize(p.accumulate(-20, 25)), -5);
        // The zero point decides the branch: x = 3 with input zero point 5 is negative.
        let p = QuantPreluOp {
            input_offset: -5,
            ..p
        };
        assert_eq!(p.requantize(p.accumulate(3, 100)), -2);
    }

    /// One-op models run through the interpreter, to exercise the builders.
    mod end_to_end {
        use octet_core::{Model, Op, Operator, QuantParams, Shape, Subgraph, Tensor};

        use super::*;
        use crate::Interpreter;

        /// An input: shape, dtype, quantization, constant data (little-endian bytes).
        struct Spec {
            shape: Vec<i32>,
            dtype: DType,
            quant: Option<(f32, i64)>,
            data: Option<Vec<u8>>,
        }

        fn spec(shape: &[i32], dtype: DType) -> Spec {
            Spec {
                shape: shape.to_vec(),
                dtype,
                quant: None,
                data: None,
            }
        }

        fn model(op: Op, inputs: Vec<Spec>, output: Spec) -> Model {
            let mut model = Model {
                schema_version: 3,
                ..Model::default()
            };
            let mut sg = Subgraph::default();
            let mut input_ids = Vec::new();
            for (i, s) in inputs.into_iter().chain([output]).enumerate() {
                let mut t = Tensor::new(format!("t{i}"), s.dtype, Shape::new(s.shape));
                t.has_rank = true;
                t.quant = s
                    .quant
                    .map(|(scale, zp)| QuantParams::per_tensor(scale, zp));
                let constant = s.data.is_some();
                if let Some(data) = s.data {
                    t.buffer = model.add_buffer(data).unwrap();
                }
                let id = sg.add_tensor(t).unwrap();
                if !constant {
                    sg.inputs.push(id);
                }
                input_ids.push(id);
            }
            // The last tensor is the output, not an input.
            let output_id = input_ids.pop().unwrap();
            sg.inputs.retain(|&id| id != output_id);
            sg.outputs = vec![output_id];
            sg.operators = vec![Operator::new(
                op,
                input_ids.into_iter().map(Some).collect(),
                vec![output_id],
            )];
            model.subgraphs = vec![sg];
            model
        }

        fn run(model: &Model, inputs: &[&[u8]]) -> Result<Vec<u8>, RuntimeError> {
            let mut interpreter = Interpreter::new(model)?;
            for (i, bytes) in inputs.iter().enumerate() {
                interpreter.set_input(i, bytes)?;
            }
            interpreter.invoke()?;
            Ok(interpreter.output(0)?.to_vec())
        }

        fn f32_bytes(v: &[f32]) -> Vec<u8> {
            v.iter().flat_map(|x| x.to_le_bytes()).collect()
        }

        fn i16_bytes(v: &[i16]) -> Vec<u8> {
            v.iter().flat_map(|x| x.to_le_bytes()).collect()
        }

        fn add_op(activation: ActivationFunction) -> Op {
            Op::Add(AddOptions {
                activation,
                pot_scale_int16: true,
            })
        }

        #[test]
        fn float_add_broadcasts_and_applies_relu() {
            // [2,1,3] + [2,1] -> [2,2,3]; out[i][j][k] = relu(a[i][k] + b[j]).
            let m = model(
                add_op(ActivationFunction::Relu),
                vec![
                    spec(&[2, 1, 3], DType::Float32),
                    spec(&[2, 1], DType::Float32),
                ],
                spec(&[2, 2, 3], DType::Float32),
            );
            let a = f32_bytes(&[1.0, -2.0, 3.0, 4.0, 5.0, -6.0]);
            let b = f32_bytes(&[0.5, -10.0]);
            let out = run(&m, &[&a, &b]).unwrap();
            let want = [1.5, 0.0, 3.5, 0.0, 0.0, 0.0, 4.5, 5.5, 0.0, 0.0, 0.0, 0.0];
            assert_eq!(out, f32_bytes(&want));
        }

        #[test]
        fn int8_mul_by_a_constant_scalar() {
            // x (scale 0.5, zp -1) * c (scale 0.25, zp 0, value 8 = 2.0) -> scale 1, zp 3:
            // x = 5 is 3.0, times 2.0 = 6.0 -> 6 + 3 = 9; x = -3 is -1.0 -> -2 + 3 = 1.
            let mut x = spec(&[1, 3], DType::Int8);
            x.quant = Some((0.5, -1));
            let mut c = spec(&[], DType::Int8);
            c.quant = Some((0.25, 0));
            c.data = Some(vec![8]);
            let mut out = spec(&[1, 3], DType::Int8);
            out.quant = Some((1.0, 3));
            let m = model(
                Op::Mul {
                    activation: ActivationFunction::None,
                },
                vec![x, c],
                out,
            );
            let got = run(&m, &[&[5u8, (-3i8) as u8, 127]]).unwrap();
            // 127 is 64.0 * 2 = 128 -> 131, saturated to 127.
            assert_eq!(got, vec![9, 1, 127]);
        }

        #[test]
        fn int16_pot_add_also_broadcasts() {
            // TFLite aborts on a broadcasting power-of-two int16 ADD; octet applies the same
            // per-element arithmetic. Input 1 has scale 2^-12 against the output's 2^-10.
            let q = |log2: i32| Some((2f32.powi(log2), 0));
            let mut a = spec(&[2, 2], DType::Int16);
            a.quant = q(-10);
            let mut b = spec(&[2], DType::Int16);
            b.quant = q(-12);
            let mut out = spec(&[2, 2], DType::Int16);
            out.quant = q(-10);
            let m = model(add_op(ActivationFunction::None), vec![a, b], out);
            let got = run(
                &m,
                &[&i16_bytes(&[100, 200, 32767, -5]), &i16_bytes(&[6, -6])],
            )
            .unwrap();
            assert_eq!(got, i16_bytes(&[102, 198, 32767, -7]));
        }

        #[test]
        fn builders_reject_bad_shapes_and_types() {
            let invalid = |m: &Model| match Interpreter::new(m) {
                Err(RuntimeError::InvalidOp { .. }) => {}
                other => panic!("expected an invalid-op error, got {:?}", other.err()),
            };
            // Incompatible shapes.
            invalid(&model(
                add_op(ActivationFunction::None),
                vec![spec(&[2, 3], DType::Float32), spec(&[3, 2], DType::Float32)],
                spec(&[2, 3], DType::Float32),
            ));
            // Output not of the broadcast shape.
            invalid(&model(
                Op::Maximum,
                vec![spec(&[2, 3], DType::Int32), spec(&[3], DType::Int32)],
                spec(&[3, 2], DType::Int32),
            ));
            // Mixed input types.
            invalid(&model(
                Op::Minimum,
                vec![spec(&[3], DType::Int32), spec(&[3], DType::Int64)],
                spec(&[3], DType::Int32),
            ));
            // Alpha that would widen the PRELU input.
            invalid(&model(
                Op::Prelu,
                vec![spec(&[3], DType::Float32), spec(&[2, 3], DType::Float32)],
                spec(&[2, 3], DType::Float32),
            ));
            // Rank 7.
            invalid(&model(
                add_op(ActivationFunction::None),
                vec![spec(&[1; 7], DType::Float32), spec(&[1], DType::Float32)],
                spec(&[1; 7], DType::Float32),
            ));
            // Quantized ADD without quantization parameters.
            invalid(&model(
                add_op(ActivationFunction::None),
                vec![spec(&[3], DType::Int8), spec(&[3], DType::Int8)],
                spec(&[3], DType::Int8),
            ));
            // A flavour TFLite does not have.
            assert!(matches!(
                Interpreter::new(&model(
                    Op::Sub(AddOptions::default()),
                    vec![spec(&[3], DType::Int16), spec(&[3], DType::Int16)],
                    spec(&[3], DType::Int16),
                )),
                Err(RuntimeError::Unsupported { .. })
            ));
        }

        #[test]
        fn maximum_keeps_the_second_operand_on_ties_and_nan() {
            // el1 > el2 ? el1 : el2 with [NaN, 0.0, -0.0, 1.0] against the scalar -0.0.
            let m = model(
                Op::Maximum,
                vec![spec(&[4], DType::Float32), spec(&[], DType::Float32)],
                spec(&[4], DType::Float32),
            );
            let got = run(
                &m,
                &[&f32_bytes(&[f32::NAN, 0.0, -0.0, 1.0]), &f32_bytes(&[-0.0])],
            )
            .unwrap();
            // 0.0 > -0.0 is false, so even max(0.0, -0.0) is -0.0 (LiteRT agrees).
            assert_eq!(got, f32_bytes(&[-0.0, -0.0, -0.0, 1.0]));
            let m = model(
                Op::Minimum,
                vec![spec(&[2], DType::Float32), spec(&[2], DType::Float32)],
                spec(&[2], DType::Float32),
            );
            let got = run(
                &m,
                &[
                    &f32_bytes(&[1.0, f32::NEG_INFINITY]),
                    &f32_bytes(&[f32::NAN, 2.0]),
                ],
            )
            .unwrap();
            assert!(f32::from_le_bytes(got[..4].try_into().unwrap()).is_nan());
            assert_eq!(&got[4..], &f32_bytes(&[f32::NEG_INFINITY])[..]);
        }
    }

    #[test]
    fn int16_mul_to_8bit_rounds_the_q15_product() {
        // 0.5 * 0.5 = 0.25 in Q0.15 = 8192; >> 8 = 32 output steps.
        let product = saturating_rounding_doubling_high_mul_i16(16384, 16384);
        assert_eq!(rounding_divide_by_pot_i16(product, 8), 32);
    }
}
