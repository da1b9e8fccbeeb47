//! Element-wise activations: LOGISTIC, TANH, RELU, RELU6, RELU_N1_TO_1, LEAKY_RELU, HARD_SWISH, ELU.
//!
//! The flavours are those of TFLite's `kernels/activations.cc` as LiteRT's reference op resolver
//! registers them:
//!
//! - float32 for every op;
//! - int8/uint8 LOGISTIC and TANH, and int8 ELU: a 256-entry table built at prepare time by running
//!   the float function on every input value (`LUTPopulate`); the reference kernels use these
//!   tables, not gemmlowp's fixed-point `logistic`/`tanh`;
//! - int16 LOGISTIC and TANH: `reference_integer_ops::Logistic`/`Tanh`, an interpolated lookup in
//!   the 256-entry `sigmoid_table_uint16` (inputs with zero point 0, output scale 2^-15);
//! - RELU, RELU6, RELU_N1_TO_1 on int8/uint8 (RELU and RELU6 also on int16): requantize from the
//!   input's to the output's parameters with one multiplier, then clamp (`QuantizedReluX`);
//! - LEAKY_RELU on int8/uint8/int16: one multiplier for `x >= 0`, one for `alpha * x`;
//! - HARD_SWISH on int8/uint8: the 16-bit fixed-point `reference_ops::HardSwish`.
//!
//! On octet-linalg: float activations run its vectorised float kernels; every 8-bit flavour
//! (the `LUTPopulate` tables, and RELU*, LEAKY_RELU, HARD_SWISH tabulated by running their exact
//! per-element function on all 256 inputs) runs its table lookup (`vpermi2b` on AVX-512 VBMI).
//! Large tensors are split over the threads.
//!
//! ELU has no entry in LiteRT's reference resolver; its builtin kernel (which has no separate
//! reference variant) is the one reproduced here.

use std::marker::PhantomData;

use bytemuck::Pod;
use octet_core::fixed_point::{
    QuantizedMultiplier, checked_log2, multiply_by_quantized_multiplier, quantize_multiplier,
    rounding_divide_by_pot_i16, saturating_rounding_doubling_high_mul_i16,
};
use octet_core::{ActivationFunction, DType};

use octet_linalg::frame::elementwise::{F32Unary, F32UnaryOp, Lut8};

use super::binary::split_map;
use super::common::{activation_range_quantized, per_tensor_quant};
use crate::{Kernel, OpContext, OpIo, RuntimeError, TensorInfo};

/// LOGISTIC.
pub fn logistic(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    let (input, output) = unary_same_type(ctx)?;
    match input.dtype {
        DType::Float32 => Ok(float_map(ctx, F32UnaryOp::Logistic)),
        DType::Int8 | DType::UInt8 => {
            let (out_scale, _) = per_tensor_quant(ctx, output, "output")?;
            if f64::from(out_scale) != 1.0 / 256.0 {
                return Err(ctx.invalid(format!(
                    "output scale must be 1/256 for a {} LOGISTIC, got {out_scale}",
                    input.dtype
                )));
            }
            lut8_kernel(ctx, input, output, logistic_f32)
        }
        DType::Int16 => {
            let (out_scale, _) = per_tensor_quant(ctx, output, "output")?;
            if f64::from(out_scale) != 1.0 / 32768.0 {
                return Err(ctx.invalid(format!(
                    "output scale must be 1/32768 for an int16 LOGISTIC, got {out_scale}"
                )));
            }
            let (multiplier, left_shift) = sigmoid_int16_prepare(ctx, input, output, false)?;
            Ok(Box::new(LogisticInt16 {
                multiplier,
                left_shift,
            }))
        }
        _ => Err(ctx.unsupported_types()),
    }
}

/// TANH.
pub fn tanh(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    let (input, output) = unary_same_type(ctx)?;
    match input.dtype {
        DType::Float32 => Ok(float_map(ctx, F32UnaryOp::Tanh)),
        DType::Int8 | DType::UInt8 => lut8_kernel(ctx, input, output, f32::tanh),
        DType::Int16 => {
            let (multiplier, left_shift) = sigmoid_int16_prepare(ctx, input, output, true)?;
            Ok(Box::new(TanhInt16 {
                multiplier,
                left_shift,
            }))
        }
        _ => Err(ctx.unsupported_types()),
    }
}

/// RELU.
pub fn relu(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    relu_family(ctx, ActivationFunction::Relu, true)
}

/// RELU6.
pub fn relu6(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    relu_family(ctx, ActivationFunction::Relu6, true)
}

/// RELU_N1_TO_1.
pub fn relu_n1_to_1(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    relu_family(ctx, ActivationFunction::ReluN1To1, false)
}

/// LEAKY_RELU: `x` for `x > 0`, `alpha * x` otherwise.
pub fn leaky_relu(ctx: &OpContext<'_>, alpha: f32) -> Result<Box<dyn Kernel>, RuntimeError> {
    let (input, output) = unary_same_type(ctx)?;
    match input.dtype {
        DType::Float32 => Ok(float_map(ctx, F32UnaryOp::LeakyRelu(alpha))),
        DType::Int8 => leaky_relu_quantized::<i8>(ctx, input, output, alpha),
        DType::UInt8 => leaky_relu_quantized::<u8>(ctx, input, output, alpha),
        DType::Int16 => leaky_relu_quantized::<i16>(ctx, input, output, alpha),
        _ => Err(ctx.unsupported_types()),
    }
}

/// HARD_SWISH: `x * relu6(x + 3) / 6`.
pub fn hard_swish(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    let (input, output) = unary_same_type(ctx)?;
    match input.dtype {
        DType::Float32 => Ok(float_map(ctx, F32UnaryOp::HardSwish)),
        DType::Int8 => hard_swish_quantized::<i8>(ctx, input, output),
        DType::UInt8 => hard_swish_quantized::<u8>(ctx, input, output),
        _ => Err(ctx.unsupported_types()),
    }
}

/// ELU: `x` for `x >= 0`, `exp(x) - 1` otherwise.
pub fn elu(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    let (input, output) = unary_same_type(ctx)?;
    match input.dtype {
        DType::Float32 => Ok(float_map(ctx, F32UnaryOp::Elu)),
        DType::Int8 => lut8_kernel(ctx, input, output, elu_f32),
        _ => Err(ctx.unsupported_types()),
    }
}

// ---------------------------------------------------------------------------------------------
// Shared pieces (also used by the softmax family).

/// The integer element types of quantized activation tensors.
pub(crate) trait QuantInt: Pod + Send + Sync {
    /// Smallest value, as `i32`.
    const MIN: i32;
    /// Largest value, as `i32`.
    const MAX: i32;
    /// Width in bits.
    const BITS: i32;
    /// The value as `i32`.
    fn to_i32(self) -> i32;
    /// `value` clamped to the type's range.
    fn saturate(value: i32) -> Self;
}

macro_rules! quant_int {
    ($t:ty) => {
        impl QuantInt for $t {
            const MIN: i32 = <$t>::MIN as i32;
            const MAX: i32 = <$t>::MAX as i32;
            const BITS: i32 = <$t>::BITS as i32;
            fn to_i32(self) -> i32 {
                i32::from(self)
            }
            fn saturate(value: i32) -> Self {
                // The clamp makes the conversion exact.
                value.clamp(<Self as QuantInt>::MIN, <Self as QuantInt>::MAX) as $t
            }
        }
    };
}
quant_int!(i8);
quant_int!(u8);
quant_int!(i16);

/// Checks the one-input, one-output shape of an element-wise op with matching dtypes and returns
/// the input and output.
fn unary_same_type<'a>(
    ctx: &OpContext<'a>,
) -> Result<(&'a TensorInfo, &'a TensorInfo), RuntimeError> {
    if ctx.num_inputs() != 1 || ctx.num_outputs() != 1 {
        return Err(ctx.invalid(format!(
            "expected 1 input and 1 output, got {} and {}",
            ctx.num_inputs(),
            ctx.num_outputs()
        )));
    }
    let input = ctx.input(0)?;
    let output = ctx.output(0)?;
    if input.dtype != output.dtype {
        return Err(ctx.unsupported_types());
    }
    if input.num_elements() != output.num_elements() {
        return Err(ctx.invalid(format!(
            "input shape {:?} and output shape {:?} differ",
            input.shape, output.shape
        )));
    }
    Ok((input, output))
}

/// Applies `f` to every element of input 0, writing output 0.
pub(crate) fn map_elements<I: Pod, O: Pod>(
    io: &mut OpIo<'_>,
    mut f: impl FnMut(I) -> O,
) -> Result<(), RuntimeError> {
    let (inputs, out) = io.single::<O>()?;
    let input = inputs.get::<I>(0)?;
    if input.len() != out.len() {
        return Err(RuntimeError::eval(format!(
            "input has {} elements, output {}",
            input.len(),
            out.len()
        )));
    }
    for (o, &x) in out.iter_mut().zip(input) {
        *o = f(x);
    }
    Ok(())
}

/// A real multiplier as TFLite's `QuantizeMultiplier` decomposes it, or an "invalid model" error.
pub(crate) fn multiplier(
    ctx: &OpContext<'_>,
    real: f64,
    what: &str,
) -> Result<QuantizedMultiplier, RuntimeError> {
    quantize_multiplier(real).map_err(|e| ctx.invalid(format!("{what}: {e}")))
}

/// C++'s `static_cast<int32_t>(x)` as compiled for x86-64 (`cvttss2si`): truncation towards
/// zero, and `i32::MIN` for NaN and out-of-range values (undefined behaviour in C++, this in
/// practice).
fn truncate_to_i32(x: f64) -> i32 {
    if (-2_147_483_648.0..2_147_483_648.0).contains(&x) {
        x as i32
    } else {
        i32::MIN
    }
}

// ---------------------------------------------------------------------------------------------
// float32

/// `1 / (1 + exp(-x))` in float, as the reference kernel and `LUTPopulate` compute it.
fn logistic_f32(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `x < 0 ? expm1(x) : x` in float.
fn elu_f32(x: f32) -> f32 {
    if x < 0.0 { x.exp_m1() } else { x }
}

/// A float activation on linalg.
struct FloatMap(F32Unary);

fn float_map(ctx: &OpContext<'_>, op: F32UnaryOp) -> Box<dyn Kernel> {
    Box::new(FloatMap(F32Unary::new(ctx.isa(), op)))
}

impl Kernel for FloatMap {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let parts = io.parts::<f32>(0)?;
        let input = parts.inputs.get::<f32>(0)?;
        let f = &self.0;
        split_map(parts.threads, input, parts.output, |x, o| f.run(x, o))
    }
}

// ---------------------------------------------------------------------------------------------
// int8 / uint8 lookup tables

/// TFLite `LUTPopulate<int8_t / uint8_t>`: the quantized image of `f` for every input value,
/// indexed by the input's byte (for int8, the two's-complement byte), computed in float exactly
/// as TFLite does.
fn populate_lut8(
    signed: bool,
    input_scale: f32,
    input_zero_point: i32,
    output_scale: f32,
    output_zero_point: i32,
    f: fn(f32) -> f32,
) -> [u8; 256] {
    let (min, max) = if signed { (-128, 127) } else { (0, 255) };
    let inverse_scale = 1.0 / output_scale;
    let mut lut = [0_u8; 256];
    for val in min..=max {
        let dequantized = input_scale * (i64::from(val) - i64::from(input_zero_point)) as f32;
        let rescaled = (f(dequantized) * inverse_scale).round();
        // Out-of-range values (from an absurdly small output scale) are undefined behaviour in
        // C++; LiteRT's build saturates them for int8 and turns them into INT_MIN (x86
        // `cvttss2si`, then clamped to 0) for uint8.
        let shifted = f64::from(rescaled + output_zero_point as f32);
        let quantized = if signed {
            shifted as i32
        } else {
            truncate_to_i32(shifted)
        };
        // Both casts keep the low byte: the table is indexed and filled with raw bytes.
        lut[usize::from(val as u8)] = quantized.clamp(min, max) as u8;
    }
    lut
}

fn lut8_kernel(
    ctx: &OpContext<'_>,
    input: &TensorInfo,
    output: &TensorInfo,
    f: fn(f32) -> f32,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    let (in_scale, in_zp) = per_tensor_quant(ctx, input, "input")?;
    let (out_scale, out_zp) = per_tensor_quant(ctx, output, "output")?;
    let table = populate_lut8(
        input.dtype == DType::Int8,
        in_scale,
        in_zp,
        out_scale,
        out_zp,
        f,
    );
    Ok(Box::new(LutKernel(Lut8::new(ctx.isa(), table))))
}

/// An 8-bit to 8-bit table lookup (int8 and uint8 alike, on raw bytes) on linalg.
struct LutKernel(Lut8);

/// The kernel of an 8-bit op given as a lookup table (activations, 8-bit requantization).
pub(crate) fn lut_kernel(lut: Lut8) -> Box<dyn Kernel> {
    Box::new(LutKernel(lut))
}

impl Kernel for LutKernel {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let parts = io.parts::<u8>(0)?;
        let input = parts.inputs.get::<u8>(0)?;
        let lut = &self.0;
        split_map(parts.threads, input, parts.output, |x, o| lut.run(x, o))
    }
}

/// The exact per-element function of a quantized activation.
trait ElementMap<T>: Send + Sync + 'static {
    /// The output for one input.
    fn one(&self, x: T) -> T;
}

/// The kernel of a quantized activation: for 8-bit types a lookup table built by running the
/// exact function on all 256 inputs (so the table is exact by construction), for int16 the
/// function itself.
fn quantized_map<T: QuantInt, M: ElementMap<T>>(ctx: &OpContext<'_>, map: M) -> Box<dyn Kernel> {
    if T::BITS == 8 {
        let mut table = [0u8; 256];
        for v in <T as QuantInt>::MIN..=<T as QuantInt>::MAX {
            let out = map.one(T::saturate(v)).to_i32();
            // int8 and uint8 alike: index and entry are the values' low bytes.
            table[(v & 0xff) as usize] = (out & 0xff) as u8;
        }
        return Box::new(LutKernel(Lut8::new(ctx.isa(), table)));
    }
    Box::new(MapKernel {
        map,
        _element: PhantomData,
    })
}

/// A quantized activation applied element by element.
struct MapKernel<T, M> {
    map: M,
    _element: PhantomData<T>,
}

impl<T: QuantInt, M: ElementMap<T>> Kernel for MapKernel<T, M> {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let parts = io.parts::<T>(0)?;
        let input = parts.inputs.get::<T>(0)?;
        let map = &self.map;
        split_map(parts.threads, input, parts.output, |x, o| {
            for (o, &v) in o.iter_mut().zip(x) {
                *o = map.one(v);
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------------------------------------
// int16 LOGISTIC / TANH

/// TFLite's `sigmoid_table_uint16`: `sigmoid(i / 24)` in Q0.16 for `i` in `0..256` (shared by the
/// int16 logistic and tanh through `tanh(x) = 2 sigmoid(2x) - 1`).
const SIGMOID_TABLE_UINT16: [u16; 256] = [
    32768, 33451, 34133, 34813, 35493, 36169, 36843, 37513, 38180, 38841, 39498, 40149, 40794,
    41432, 42064, 42688, 43304, 43912, 44511, 45102, 45683, 46255, 46817, 47369, 47911, 48443,
    48964, 49475, 49975, 50464, 50942, 51409, 51865, 52311, 52745, 53169, 53581, 53983, 54374,
    54755, 55125, 55485, 55834, 56174, 56503, 56823, 57133, 57433, 57724, 58007, 58280, 58544,
    58800, 59048, 59288, 59519, 59743, 59959, 60168, 60370, 60565, 60753, 60935, 61110, 61279,
    61441, 61599, 61750, 61896, 62036, 62172, 62302, 62428, 62549, 62666, 62778, 62886, 62990,
    63090, 63186, 63279, 63368, 63454, 63536, 63615, 63691, 63765, 63835, 63903, 63968, 64030,
    64090, 64148, 64204, 64257, 64308, 64357, 64405, 64450, 64494, 64536, 64576, 64614, 64652,
    64687, 64721, 64754, 64786, 64816, 64845, 64873, 64900, 64926, 64950, 64974, 64997, 65019,
    65039, 65060, 65079, 65097, 65115, 65132, 65149, 65164, 65179, 65194, 65208, 65221, 65234,
    65246, 65258, 65269, 65280, 65291, 65301, 65310, 65319, 65328, 65337, 65345, 65352, 65360,
    65367, 65374, 65381, 65387, 65393, 65399, 65404, 65410, 65415, 65420, 65425, 65429, 65433,
    65438, 65442, 65445, 65449, 65453, 65456, 65459, 65462, 65465, 65468, 65471, 65474, 65476,
    65479, 65481, 65483, 65485, 65488, 65489, 65491, 65493, 65495, 65497, 65498, 65500, 65501,
    65503, 65504, 65505, 65507, 65508, 65509, 65510, 65511, 65512, 65513, 65514, 65515, 65516,
    65517, 65517, 65518, 65519, 65520, 65520, 65521, 65522, 65522, 65523, 65523, 65524, 65524,
    65525, 65525, 65526, 65526, 65526, 65527, 65527, 65528, 65528, 65528, 65529, 65529, 65529,
    65529, 65530, 65530, 65530, 65530, 65531, 65531, 65531, 65531, 65531, 65532, 65532, 65532,
    65532, 65532, 65532, 65533, 65533, 65533, 65533, 65533, 65533, 65533, 65533, 65534, 65534,
    65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65535,
];

/// The int16 part of TFLite's `SigmoidPrepare` / `TanhPrepare`: `(input_multiplier,
/// input_left_shift)`. A power-of-two input scale the kernel handles directly (2^-12, and for
/// tanh also 2^-11) leaves the multiplier at 0; any other scale becomes a multiplier to the
/// table's input scale 1/(3 * 4096), as an integer below 2^15 and a right shift.
fn sigmoid_int16_prepare(
    ctx: &OpContext<'_>,
    input: &TensorInfo,
    output: &TensorInfo,
    tanh: bool,
) -> Result<(i32, i32), RuntimeError> {
    let (in_scale, in_zp) = per_tensor_quant(ctx, input, "input")?;
    let (out_scale, out_zp) = per_tensor_quant(ctx, output, "output")?;
    if in_zp != 0 || out_zp != 0 {
        return Err(ctx.invalid(format!(
            "int16 input and output need zero point 0, got {in_zp} and {out_zp}"
        )));
    }
    let mut multiplier = 0;
    let mut left_shift = 0;
    let pot = match checked_log2(in_scale) {
        Some(log2) => {
            left_shift = 12 + log2;
            left_shift == 0 || (tanh && left_shift == 1)
        }
        None => false,
    };
    if !pot {
        let mut real = f64::from(in_scale) * 4096.0 * 3.0;
        left_shift = 0;
        while real <= 32767.0 / 2.0 && left_shift <= 30 {
            left_shift += 1;
            real *= 2.0;
        }
        multiplier = truncate_to_i32(real);
    }
    if checked_log2(out_scale) != Some(-15) {
        return Err(ctx.invalid(format!("int16 output scale must be 2^-15, got {out_scale}")));
    }
    if multiplier == 0 {
        // Power-of-two case: the kernels scale by 3 to map [-8, 8] onto the table's [-10.7, 10.7].
        multiplier = 3_i32.wrapping_shl(left_shift as u32);
        left_shift = 0;
    }
    Ok((multiplier, left_shift))
}

/// Rescales an int16 input to the table's scale: `(x * multiplier + round) >> left_shift`, in
/// TFLite's wrapping `int32` arithmetic.
fn sigmoid_int16_input(x: i16, multiplier: i32, left_shift: i32) -> i32 {
    let round = if left_shift > 0 {
        1 << (left_shift - 1)
    } else {
        0
    };
    i32::from(x)
        .wrapping_mul(multiplier)
        .wrapping_add(round)
        .wrapping_shr(left_shift as u32)
}

/// TFLite `reference_integer_ops::Logistic` for int16: interpolates `sigmoid_table_uint16` with
/// 9 fractional bits and returns Q0.15.
fn logistic_int16(x: i16, multiplier: i32, left_shift: i32) -> i16 {
    let input = sigmoid_int16_input(x, multiplier, left_shift);
    let abs_input = input.unsigned_abs();
    let uh = abs_input >> 9;
    let mut result: u32 = match (
        SIGMOID_TABLE_UINT16.get(uh as usize),
        SIGMOID_TABLE_UINT16.get(uh as usize + 1),
    ) {
        (Some(&ua), Some(&ub)) if uh < 255 => {
            let (ua, ub) = (u32::from(ua), u32::from(ub));
            (ua << 9).wrapping_add((abs_input & 0x1ff).wrapping_mul(ub.wrapping_sub(ua)))
        }
        _ => 0x7fff << 10,
    };
    result = if input >= 0 {
        result.wrapping_add(1 << 9)
    } else {
        (1_u32 << 25)
            .wrapping_sub(result)
            .wrapping_add(1 << 9)
            .wrapping_sub(1)
    };
    (result >> 10) as i16
}

/// TFLite `reference_integer_ops::Tanh` for int16: the same table read as
/// `tanh(x) = 2 sigmoid(2x) - 1`, with 8 fractional bits, returning Q0.15.
fn tanh_int16(x: i16, multiplier: i32, left_shift: i32) -> i16 {
    let input = sigmoid_int16_input(x, multiplier, left_shift);
    let abs_input = input.unsigned_abs();
    let uh = abs_input >> 8;
    let mut result: i32 = match (
        SIGMOID_TABLE_UINT16.get(uh as usize),
        SIGMOID_TABLE_UINT16.get(uh as usize + 1),
    ) {
        (Some(&ua), Some(&ub)) if uh < 255 => {
            let (ua, ub) = (u32::from(ua), u32::from(ub));
            (ua << 8).wrapping_add((abs_input & 0xff).wrapping_mul(ub.wrapping_sub(ua))) as i32
        }
        _ => 0xffff << 8,
    };
    result = if input >= 0 {
        result.wrapping_sub(1 << 23).wrapping_add(1 << 7)
    } else {
        result
            .wrapping_neg()
            .wrapping_add(1 << 23)
            .wrapping_add(1 << 7)
            .wrapping_sub(1)
    };
    (result >> 8) as i16
}

/// int16 LOGISTIC.
struct LogisticInt16 {
    multiplier: i32,
    left_shift: i32,
}

impl Kernel for LogisticInt16 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (m, s) = (self.multiplier, self.left_shift);
        map_elements::<i16, i16>(io, |x| logistic_int16(x, m, s))
    }
}

/// int16 TANH.
struct TanhInt16 {
    multiplier: i32,
    left_shift: i32,
}

impl Kernel for TanhInt16 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (m, s) = (self.multiplier, self.left_shift);
        map_elements::<i16, i16>(io, |x| tanh_int16(x, m, s))
    }
}

// ---------------------------------------------------------------------------------------------
// RELU, RELU6, RELU_N1_TO_1

fn relu_family(
    ctx: &OpContext<'_>,
    activation: ActivationFunction,
    int16_ok: bool,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    let (input, output) = unary_same_type(ctx)?;
    let float = match activation {
        ActivationFunction::Relu => F32UnaryOp::Relu,
        ActivationFunction::Relu6 => F32UnaryOp::Relu6,
        _ => F32UnaryOp::ReluN1To1,
    };
    match input.dtype {
        DType::Float32 => Ok(float_map(ctx, float)),
        DType::Int8 => relu_quantized::<i8>(ctx, input, output, activation),
        DType::UInt8 => relu_quantized::<u8>(ctx, input, output, activation),
        DType::Int16 if int16_ok => relu_quantized::<i16>(ctx, input, output, activation),
        _ => Err(ctx.unsupported_types()),
    }
}

/// TFLite `ReluPrepare` + `QuantizedReluX`: the multiplier `input_scale / output_scale` (divided
/// in float) and the clamp range of the activation on the output's parameters.
fn relu_quantized<T: QuantInt>(
    ctx: &OpContext<'_>,
    input: &TensorInfo,
    output: &TensorInfo,
    activation: ActivationFunction,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    let (in_scale, in_zp) = per_tensor_quant(ctx, input, "input")?;
    let (out_scale, out_zp) = per_tensor_quant(ctx, output, "output")?;
    if input.dtype == DType::Int16 && (in_zp != 0 || out_zp != 0) {
        return Err(ctx.invalid(format!(
            "int16 input and output need zero point 0, got {in_zp} and {out_zp}"
        )));
    }
    let multiplier = multiplier(ctx, f64::from(in_scale / out_scale), "input/output scale")?;
    let (min, max) = activation_range_quantized(activation, output.dtype, out_scale, out_zp)
        .ok_or_else(|| ctx.unsupported_types())?;
    Ok(quantized_map(
        ctx,
        ReluQuantized::<T> {
            input_zero_point: in_zp,
            output_zero_point: out_zp,
            multiplier,
            min,
            max,
            _element: PhantomData,
        },
    ))
}

/// Quantized RELU/RELU6/RELU_N1_TO_1: requantize, then clamp.
struct ReluQuantized<T> {
    input_zero_point: i32,
    output_zero_point: i32,
    multiplier: QuantizedMultiplier,
    min: i32,
    max: i32,
    _element: PhantomData<T>,
}

impl<T: QuantInt> ReluQuantized<T> {
    fn requantize(&self, centered: i32) -> i32 {
        self.output_zero_point
            .wrapping_add(multiply_by_quantized_multiplier(centered, self.multiplier))
            .clamp(self.min, self.max)
    }
}

impl<T: QuantInt> ElementMap<T> for ReluQuantized<T> {
    fn one(&self, x: T) -> T {
        T::saturate(self.requantize(x.to_i32().wrapping_sub(self.input_zero_point)))
    }
}

// ---------------------------------------------------------------------------------------------
// LEAKY_RELU

/// TFLite `LeakyReluPrepare`: the identity multiplier `input_scale / output_scale` and the alpha
/// multiplier `input_scale * alpha / output_scale`, both computed in float. A negative alpha
/// keeps its sign outside the multiplier (`QuantizeLeakyRelu` applies `-|m|`).
fn leaky_relu_quantized<T: QuantInt>(
    ctx: &OpContext<'_>,
    input: &TensorInfo,
    output: &TensorInfo,
    alpha: f32,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    let (in_scale, in_zp) = per_tensor_quant(ctx, input, "input")?;
    let (out_scale, out_zp) = per_tensor_quant(ctx, output, "output")?;
    if input.dtype == DType::Int16 && (in_zp != 0 || out_zp != 0) {
        return Err(ctx.invalid(format!(
            "int16 input and output need zero point 0, got {in_zp} and {out_zp}"
        )));
    }
    let alpha_real = in_scale * alpha / out_scale;
    let identity = multiplier(ctx, f64::from(in_scale / out_scale), "input/output scale")?;
    let alpha_multiplier = multiplier(ctx, f64::from(alpha_real.abs()), "alpha multiplier")?;
    Ok(quantized_map(
        ctx,
        LeakyReluQuantized::<T> {
            input_zero_point: in_zp,
            output_zero_point: out_zp,
            identity,
            alpha: alpha_multiplier,
            alpha_negative: alpha_real < 0.0 && alpha_multiplier.multiplier != 0,
            _element: PhantomData,
        },
    ))
}

/// Quantized LEAKY_RELU (`reference_ops::QuantizeLeakyRelu`).
struct LeakyReluQuantized<T> {
    input_zero_point: i32,
    output_zero_point: i32,
    identity: QuantizedMultiplier,
    alpha: QuantizedMultiplier,
    alpha_negative: bool,
    _element: PhantomData<T>,
}

impl<T: QuantInt> LeakyReluQuantized<T> {
    fn requantize(&self, centered: i32) -> i32 {
        let scaled = if centered >= 0 {
            multiply_by_quantized_multiplier(centered, self.identity)
        } else {
            let scaled = multiply_by_quantized_multiplier(centered, self.alpha);
            if self.alpha_negative {
                scaled.wrapping_neg()
            } else {
                scaled
            }
        };
        self.output_zero_point.wrapping_add(scaled)
    }
}

impl<T: QuantInt> ElementMap<T> for LeakyReluQuantized<T> {
    fn one(&self, x: T) -> T {
        T::saturate(self.requantize(x.to_i32().wrapping_sub(self.input_zero_point)))
    }
}

// ---------------------------------------------------------------------------------------------
// HARD_SWISH

/// TFLite `HardSwishParams`, computed by `HardSwishPrepare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HardSwishParams {
    input_zero_point: i16,
    output_zero_point: i16,
    /// Q0.15 multiplier from the "hi-res" input scale (`input_scale / 128`) to the output scale.
    output_multiplier: i16,
    /// Its exponent (never positive).
    output_exponent: i32,
    /// Q0.15 multiplier from the hi-res input scale to the scale where 3.0 is 32768.
    reluish_multiplier: i16,
    /// Its exponent.
    reluish_exponent: i32,
}

/// TFLite `DownScaleInt32ToInt16Multiplier`: a Q0.31 multiplier rounded to Q0.15.
fn downscale_multiplier_to_i16(multiplier: i32) -> i16 {
    const ROUNDING: i32 = 1 << 15;
    if multiplier >= i32::MAX - ROUNDING {
        i16::MAX
    } else {
        // multiplier is a non-negative Q0.31 value here, so the result is below 2^15.
        ((multiplier + ROUNDING) >> 16) as i16
    }
}

impl HardSwishParams {
    /// `HardSwishPrepare`, in float where TFLite computes in float.
    fn new(
        input_scale: f32,
        input_zero_point: i32,
        output_scale: f32,
        output_zero_point: i32,
    ) -> Result<Self, String> {
        let hires_input_scale = (1.0_f32 / 128.0) * input_scale;
        let reluish_scale = 3.0_f32 / 32768.0;
        let output = quantize_multiplier(f64::from(hires_input_scale / output_scale))
            .map_err(|e| format!("output multiplier: {e}"))?;
        if output.shift > 0 {
            return Err(format!(
                "the output multiplier input_scale / 128 / output_scale = {} must not exceed 1",
                hires_input_scale / output_scale
            ));
        }
        let reluish = quantize_multiplier(f64::from(hires_input_scale / reluish_scale))
            .map_err(|e| format!("reluish multiplier: {e}"))?;
        let zero_point =
            |zp: i32| i16::try_from(zp).map_err(|_| format!("zero point {zp} is out of range"));
        Ok(HardSwishParams {
            input_zero_point: zero_point(input_zero_point)?,
            output_zero_point: zero_point(output_zero_point)?,
            output_multiplier: downscale_multiplier_to_i16(output.multiplier),
            output_exponent: output.shift,
            reluish_multiplier: downscale_multiplier_to_i16(reluish.multiplier),
            reluish_exponent: reluish.shift,
        })
    }

    /// `reference_ops::HardSwish` for one element, before the clamp to the output type: the
    /// 16-bit fixed-point computation in TFLite's exact order of roundings and saturations.
    fn apply(&self, x: i32) -> i16 {
        let input_value = x.wrapping_sub(i32::from(self.input_zero_point)) as i16;
        let input_value_on_hires_input_scale = input_value.wrapping_mul(1 << 7);
        let input_value_on_preshift_output_scale = saturating_rounding_doubling_high_mul_i16(
            input_value_on_hires_input_scale,
            self.output_multiplier,
        );
        // The "relu-ish" value: the input rescaled so that [-3, 3] becomes [-1, 1] (saturating),
        // then mapped to [0, 1].
        let mut reluish = input_value_on_hires_input_scale;
        if self.reluish_exponent > 0 {
            reluish = saturating_left_shift_i16(reluish, self.reluish_exponent - 1);
        }
        reluish = saturating_rounding_doubling_high_mul_i16(reluish, self.reluish_multiplier);
        if self.reluish_exponent > 0 {
            reluish = saturating_left_shift_i16(reluish, 1);
        }
        if self.reluish_exponent < 0 {
            reluish = gemmlowp_rounding_divide_by_pot_i16(reluish, -self.reluish_exponent);
        }
        reluish = ((i32::from(reluish) + (1 << 15)) >> 1) as i16;
        let preshift_output =
            saturating_doubling_high_mul_i16(reluish, input_value_on_preshift_output_scale);
        let output = gemmlowp_rounding_divide_by_pot_i16(preshift_output, -self.output_exponent);
        // TFLite adds the zero point in int16_t, wrapping.
        output.wrapping_add(self.output_zero_point)
    }
}

fn hard_swish_quantized<T: QuantInt>(
    ctx: &OpContext<'_>,
    input: &TensorInfo,
    output: &TensorInfo,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    let (in_scale, in_zp) = per_tensor_quant(ctx, input, "input")?;
    let (out_scale, out_zp) = per_tensor_quant(ctx, output, "output")?;
    let params =
        HardSwishParams::new(in_scale, in_zp, out_scale, out_zp).map_err(|e| ctx.invalid(e))?;
    Ok(quantized_map(
        ctx,
        HardSwishQuantized::<T> {
            params,
            _element: PhantomData,
        },
    ))
}

/// Quantized HARD_SWISH.
struct HardSwishQuantized<T> {
    params: HardSwishParams,
    _element: PhantomData<T>,
}

impl<T: QuantInt> ElementMap<T> for HardSwishQuantized<T> {
    fn one(&self, x: T) -> T {
        T::saturate(i32::from(self.params.apply(x.to_i32())))
    }
}

// ---------------------------------------------------------------------------------------------
// int16 fixed-point helpers that `octet_core::fixed_point` does not have (private to HARD_SWISH).

/// TFLite `SaturatingLeftShift(int16_t, amount)`: `value * 2^amount` clamped to the int16 range.
fn saturating_left_shift_i16(value: i16, amount: i32) -> i16 {
    let shifted = i64::from(value) << amount.clamp(0, 48);
    shifted.clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16
}

/// TFLite `SaturatingDoublingHighMul(int16_t, int16_t)` (ARM `SQDMULH`): `a * b / 2^15`
/// truncated towards zero, saturating `-32768 * -32768` to 32767. Unlike gemmlowp's version it
/// does not round.
fn saturating_doubling_high_mul_i16(a: i16, b: i16) -> i16 {
    if a == i16::MIN && b == i16::MIN {
        return i16::MAX;
    }
    // |a * b| <= 2^30 - 2^15 here, so the quotient fits.
    ((i32::from(a) * i32::from(b)) / (1 << 15)) as i16
}

/// gemmlowp `RoundingDivideByPOT<int16_t>` for any exponent in `0..=31`. Up to 15 this is
/// [`rounding_divide_by_pot_i16`]; beyond, gemmlowp's mask `(1 << exponent) - 1` is truncated to
/// 16 bits (all ones), which this reproduces.
fn gemmlowp_rounding_divide_by_pot_i16(x: i16, exponent: i32) -> i16 {
    if exponent <= 15 {
        return rounding_divide_by_pot_i16(x, exponent);
    }
    let exponent = exponent.min(31) as u32;
    let mask: i16 = ((1_i64 << exponent) - 1) as i16;
    let remainder = x & mask;
    let threshold = (mask >> 1).wrapping_add(i16::from(x < 0));
    ((i32::from(x) >> exponent) as i16).wrapping_add(i16::from(remainder > threshold))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint8_logistic_table_hand_values() {
        // Input scale 1/16, zero point 128: byte 128 is 0.0 -> logistic 0.5 -> 0.5 * 256 = 128.
        // Byte 0 is -8.0 -> 0.000335 * 256 = 0.086 -> 0; byte 255 is 7.9375 -> 0.99964 * 256 =
        // 255.9 -> 256, clamped to 255.
        let lut = populate_lut8(false, 1.0 / 16.0, 128, 1.0 / 256.0, 0, logistic_f32);
        assert_eq!(lut[128], 128);
        assert_eq!(lut[0], 0);
        assert_eq!(lut[255], 255);
        // Byte 144 is 1.0 -> 0.731059 * 256 = 187.15 -> 187.
        assert_eq!(lut[144], 187);
    }

    #[test]
    fn int8_tanh_table_is_indexed_by_the_raw_byte() {
        // int8 with scale 1/32, zero point 0, output scale 1/128, zero point 0: the value -32
        // (-1.0, byte 0xE0) maps to round(tanh(-1) * 128) = round(-97.48) = -97.
        let lut = populate_lut8(true, 1.0 / 32.0, 0, 1.0 / 128.0, 0, f32::tanh);
        assert_eq!(lut[0xE0] as i8, -97);
        assert_eq!(lut[32] as i8, 97);
        assert_eq!(lut[0] as i8, 0);
        // -128 is -4.0 -> tanh = -0.99933 -> -127.9 -> -128.
        assert_eq!(lut[0x80] as i8, -128);
    }

    #[test]
    fn float_to_int_cast_matches_x86() {
        assert_eq!(truncate_to_i32(2.9), 2);
        assert_eq!(truncate_to_i32(-2.9), -2);
        assert_eq!(truncate_to_i32(f64::NAN), i32::MIN);
        assert_eq!(truncate_to_i32(3.0e9), i32::MIN);
    }

    #[test]
    fn int16_logistic_and_tanh_at_zero_and_extremes() {
        // Power-of-two input scale 2^-12: multiplier 3, no shift, so the table index is
        // 3x / 2^9 = x * 24 (in real units): entry i is sigmoid(i / 24).
        // logistic(0): table[0] = 32768 -> (32768 << 9 + 512) >> 10 = 16384 = 0.5 in Q0.15.
        assert_eq!(logistic_int16(0, 3, 0), 16384);
        // x = 32767 is 8.0: logistic(8) = 0.999665 -> 32757 in Q0.15 (the table is read at
        // index 191 with fraction 509/512 and lands on it); x = -32768 gives 32768 - 32757 = 11.
        assert_eq!(logistic_int16(i16::MAX, 3, 0), 32757);
        assert_eq!(logistic_int16(i16::MIN, 3, 0), 11);
        // tanh(0): (32768 << 8) - 2^23 + 2^7 = 128 -> >> 8 = 0.
        assert_eq!(tanh_int16(0, 3, 0), 0);
        // tanh reads the table at 3x / 2^8 = x * 48 = (2x) * 24: x = 8.0 is beyond the table
        // (index 383 >= 255) and saturates: (0xFFFF << 8) - 2^23 + 128 = 8388480 -> 32767; the
        // negative side is -(0xFFFF << 8) + 2^23 + 127 = -8388225 -> floor(-32766.5) = -32767.
        assert_eq!(tanh_int16(i16::MAX, 3, 0), 32767);
        assert_eq!(tanh_int16(i16::MIN, 3, 0), -32767);
    }

    #[test]
    fn int16_tanh_reads_the_sigmoid_table() {
        // x = 4096 at scale 2^-12 is 1.0; 3x = 12288, index 12288 >> 8 = 48, no fraction:
        // table[48] = sigmoid(2) in Q0.16 = 57724, and tanh(1) = 2 sigmoid(2) - 1:
        // (57724 << 8) - 2^23 + 128 = 6388864 -> >> 8 = 24956 = 0.76160 * 32768.
        assert_eq!(tanh_int16(4096, 3, 0), 24956);
        assert_eq!(tanh_int16(-4096, 3, 0), -24956);
    }

    #[test]
    fn hard_swish_params_and_values() {
        // uint8, input scale 6/255 around zero point 128 ([-3, 3]), output scale 4/255 with
        // zero point 42 (so output 0.0 is 42).
        let p = HardSwishParams::new(6.0 / 255.0, 128, 4.0 / 255.0, 42).unwrap();
        // hires scale = 6/255/128; output multiplier = (6/255/128) / (4/255) = 6/512 = 0.01171875
        // = 0.75 * 2^-6: Q0.31 0.75 -> Q0.15 24576, exponent -6.
        assert_eq!((p.output_multiplier, p.output_exponent), (24576, -6));
        // reluish multiplier = (6/255/128) / (3/32768) = 196608/97920 = 2.00784 = 0.50196 * 2^2.
        assert_eq!(p.reluish_exponent, 2);
        // Input 128 is 0.0: hard_swish(0) = 0 -> output zero point.
        assert_eq!(p.apply(128), 42);
        // Input 255 is 127 * 6/255 = 2.988: 2.988 * 5.988 / 6 = 2.982 -> 2.982 / (4/255) = 190.1
        // -> 42 + 190 = 232.
        assert_eq!(p.apply(255), 232);
        // Input 0 is -3.01: below -3, hard_swish = 0.
        assert_eq!(p.apply(0), 42);
    }

    #[test]
    fn gemmlowp_int16_divide_beyond_15_bits() {
        // Within 0..=15 it is the ordinary rounding shift.
        assert_eq!(gemmlowp_rounding_divide_by_pot_i16(5, 1), 3);
        assert_eq!(gemmlowp_rounding_divide_by_pot_i16(-5, 1), -3);
        // At 16 the mask is all ones and the threshold -1 (x >= 0) or 0 (x < 0): 0 -> 1,
        // positive -> 1, negative -> -1 + (x > 0) = -1.
        assert_eq!(gemmlowp_rounding_divide_by_pot_i16(0, 16), 1);
        assert_eq!(gemmlowp_rounding_divide_by_pot_i16(100, 16), 1);
        assert_eq!(gemmlowp_rounding_divide_by_pot_i16(-100, 16), -1);
    }

    #[test]
    fn int16_sigmoid_multiplier_for_a_general_scale() {
        // Scale 1e-3: 1e-3 * 12288 = 12.288, doubled until above 16383.5: 12.288 * 2^11 =
        // 25165.8 -> multiplier 25165, shift 11.
        let mut real = f64::from(1e-3_f32) * 4096.0 * 3.0;
        let mut shift = 0;
        while real <= 32767.0 / 2.0 && shift <= 30 {
            shift += 1;
            real *= 2.0;
        }
        assert_eq!((truncate_to_i32(real), shift), (25165, 11));
    }
}
