//! Type changes: QUANTIZE (including requantize), DEQUANTIZE, CAST, DENSIFY.

use bytemuck::Pod;
use half::{bf16, f16};
use octet_core::fixed_point::{
    QuantizedMultiplier, multiply_by_quantized_multiplier, quantize_multiplier,
};
use octet_core::{DType, QuantParams, Sparsity};

use crate::{Kernel, OpContext, OpIo, RuntimeError, TensorInfo};

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// The raw bytes of constant input `i`, if it is a constant (read straight from the model, so
/// packed and sparse tensors come as stored).
fn constant_bytes<'a>(ctx: &OpContext<'a>, i: usize) -> Option<&'a [u8]> {
    let id = (*ctx.operator.inputs.get(i)?)?;
    let tensor = ctx.subgraph.tensor(id)?;
    ctx.model.tensor_bytes(tensor)
}

/// Per-channel parameters as TFLite's kernels use them: one scale and one zero point per index
/// of `axis` (a single zero point is repeated), and the size of the dimensions after `axis`.
#[derive(Debug, Clone, PartialEq)]
struct PerChannel {
    scales: Vec<f32>,
    zero_points: Vec<i32>,
    inner: usize,
}

impl PerChannel {
    fn new(ctx: &OpContext<'_>, q: &QuantParams, shape: &[usize]) -> Result<Self, RuntimeError> {
        let axis = usize::try_from(q.quantized_dimension)
            .ok()
            .filter(|&a| a < shape.len())
            .ok_or_else(|| {
                ctx.invalid(format!(
                    "quantized dimension {} is outside rank {}",
                    q.quantized_dimension,
                    shape.len()
                ))
            })?;
        if q.scale.len() != shape[axis] {
            return Err(ctx.invalid(format!(
                "{} scales for dimension {axis} of size {}",
                q.scale.len(),
                shape[axis]
            )));
        }
        let zero_points: Vec<i32> = if q.zero_point.len() == q.scale.len() {
            q.zero_point.iter().map(|&z| z as i32).collect()
        } else {
            let z = q.zero_point.first().copied().unwrap_or(0) as i32;
            vec![z; q.scale.len()]
        };
        Ok(PerChannel {
            scales: q.scale.clone(),
            zero_points,
            inner: shape[axis + 1..].iter().product(),
        })
    }

    /// The channel of flat element `i`.
    fn channel(&self, i: usize) -> usize {
        (i / self.inner.max(1)) % self.scales.len()
    }
}

/// The quantization of `t` if it has more than one scale.
fn per_channel_quant(t: &TensorInfo) -> Option<&QuantParams> {
    t.quant.as_ref().filter(|q| q.is_per_axis())
}

/// `(scale, zero_point)` of a per-tensor quantized `t`, `(0, 0)` otherwise: what TFLite keeps in
/// `TfLiteTensor::params` and uses for per-tensor kernels.
fn legacy_params(t: &TensorInfo) -> (f32, i32) {
    t.scale_zero_point().unwrap_or((0.0, 0))
}

/// An integer element type TFLite quantizes to or from.
trait QuantInt: Pod + Send {
    const MIN: i32;
    const MAX: i32;
    /// The value, widened.
    fn to_i32(self) -> i32;
    /// `v`, which the caller has clamped to `[MIN, MAX]`.
    fn from_i32(v: i32) -> Self;
}

macro_rules! quant_int {
    ($($t:ty),*) => {$(
        impl QuantInt for $t {
            const MIN: i32 = <$t>::MIN as i32;
            const MAX: i32 = <$t>::MAX as i32;
            fn to_i32(self) -> i32 {
                self as i32
            }
            fn from_i32(v: i32) -> Self {
                v as $t
            }
        }
    )*};
}
quant_int!(i8, u8, i16, i32);

// ---------------------------------------------------------------------------------------------
// QUANTIZE
// ---------------------------------------------------------------------------------------------

/// `static_cast<int32_t>(x)` as x86 executes it (`cvttss2si`): truncation toward zero, and
/// `i32::MIN` (the "integer indefinite" value) for NaN and values outside the `i32` range.
fn x86_f32_to_i32(x: f32) -> i32 {
    if x.is_nan() || !(-2_147_483_648.0..2_147_483_648.0).contains(&x) {
        i32::MIN
    } else {
        x as i32
    }
}

/// TFLite's reference `AffineQuantize` of one value, as LiteRT's x86 build computes it:
/// `clamp(int32(round(x / scale)) + zero_point)` with the conversion of
/// [`x86_f32_to_i32`] and a wrapping addition (so NaN and huge values land on a range end that
/// depends on the zero point's sign, exactly as in LiteRT).
fn affine_quantize(x: f32, scale: f32, zero_point: i32, min: i32, max: i32) -> i32 {
    x86_f32_to_i32((x / scale).round())
        .wrapping_add(zero_point)
        .clamp(min, max)
}

/// QUANTIZE: float32 to int8, uint8 or int16 (per tensor or per channel) or int4 (per
/// tensor); or requantization int8/uint8 to int8/uint8, int16 to int8/int16/int32 and int32 to
/// int8/int16 through the integer multiplier path of TFLite's `Requantize`.
pub fn quantize(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    let input = ctx.input(0)?;
    let output = ctx.output(0)?;
    if input.shape != output.shape {
        return Err(ctx.invalid(format!(
            "input shape {:?} and output shape {:?} differ",
            input.shape, output.shape
        )));
    }
    let Some(out_q) = output.quant.as_ref() else {
        return Err(ctx.invalid(format!(
            "output '{}' has no quantization parameters",
            output.name
        )));
    };
    let n = input.num_elements();
    if input.dtype == DType::Float32 {
        if out_q.is_per_axis() {
            let pc = PerChannel::new(ctx, out_q, &output.shape)?;
            return match output.dtype {
                DType::Int8 => Ok(Box::new(QuantizePerChannel::<i8>::new(pc, n))),
                DType::UInt8 => Ok(Box::new(QuantizePerChannel::<u8>::new(pc, n))),
                DType::Int16 => Ok(Box::new(QuantizePerChannel::<i16>::new(pc, n))),
                _ => Err(ctx.unsupported_types()),
            };
        }
        let (scale, zero_point) = legacy_params(output);
        return match output.dtype {
            DType::Int8 => Ok(Box::new(QuantizeTensor::<i8>::new(scale, zero_point, n))),
            DType::UInt8 => Ok(Box::new(QuantizeTensor::<u8>::new(scale, zero_point, n))),
            DType::Int16 => Ok(Box::new(QuantizeTensor::<i16>::new(scale, zero_point, n))),
            DType::Int4 => Ok(Box::new(QuantizeInt4 {
                scale,
                zero_point,
                n,
            })),
            _ => Err(ctx.unsupported_types()),
        };
    }

    // Requantization: TFLite's Prepare derives one multiplier from the per-tensor scales.
    let (in_scale, in_zp) = legacy_params(input);
    let (out_scale, out_zp) = legacy_params(output);
    if input.dtype == DType::Int16 && output.dtype == DType::Int16 && (in_zp != 0 || out_zp != 0) {
        return Err(ctx.invalid("int16 requantization needs zero points of 0"));
    }
    let multiplier = quantize_multiplier(f64::from(in_scale) / f64::from(out_scale))
        .map_err(|e| ctx.invalid(format!("requantization multiplier: {e}")))?;
    let r = Requant {
        multiplier,
        input_zero_point: in_zp,
        output_zero_point: out_zp,
        n,
    };
    macro_rules! requant {
        ($i:ty, $o:ty) => {
            Ok(Box::new(Requantize::<$i, $o> {
                r,
                _t: Default::default(),
            }) as Box<dyn Kernel>)
        };
    }
    match (input.dtype, output.dtype) {
        (DType::Int8, DType::Int8) => requant!(i8, i8),
        (DType::Int8, DType::UInt8) => requant!(i8, u8),
        (DType::UInt8, DType::Int8) => requant!(u8, i8),
        (DType::UInt8, DType::UInt8) => requant!(u8, u8),
        (DType::Int16, DType::Int8) => requant!(i16, i8),
        (DType::Int16, DType::Int16) => requant!(i16, i16),
        (DType::Int16, DType::Int32) => requant!(i16, i32),
        (DType::Int32, DType::Int8) => requant!(i32, i8),
        (DType::Int32, DType::Int16) => requant!(i32, i16),
        _ => Err(ctx.unsupported_types()),
    }
}

/// Float32 to a per-tensor quantized integer type.
struct QuantizeTensor<O> {
    scale: f32,
    zero_point: i32,
    n: usize,
    _t: std::marker::PhantomData<O>,
}

impl<O: QuantInt> QuantizeTensor<O> {
    fn new(scale: f32, zero_point: i32, n: usize) -> Self {
        QuantizeTensor {
            scale,
            zero_point,
            n,
            _t: Default::default(),
        }
    }
}

impl<O: QuantInt> Kernel for QuantizeTensor<O> {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (inputs, out) = io.single::<O>()?;
        let input = inputs.get::<f32>(0)?;
        check_lengths(input.len(), out.len(), self.n)?;
        for (o, &x) in out.iter_mut().zip(input) {
            *o = O::from_i32(affine_quantize(
                x,
                self.scale,
                self.zero_point,
                O::MIN,
                O::MAX,
            ));
        }
        Ok(())
    }
}

/// Float32 to a per-channel quantized integer type.
struct QuantizePerChannel<O> {
    pc: PerChannel,
    n: usize,
    _t: std::marker::PhantomData<O>,
}

impl<O: QuantInt> QuantizePerChannel<O> {
    fn new(pc: PerChannel, n: usize) -> Self {
        QuantizePerChannel {
            pc,
            n,
            _t: Default::default(),
        }
    }
}

impl<O: QuantInt> Kernel for QuantizePerChannel<O> {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (inputs, out) = io.single::<O>()?;
        let input = inputs.get::<f32>(0)?;
        check_lengths(input.len(), out.len(), self.n)?;
        for (i, (o, &x)) in out.iter_mut().zip(input).enumerate() {
            let c = self.pc.channel(i);
            let q = affine_quantize(x, self.pc.scales[c], self.pc.zero_points[c], O::MIN, O::MAX);
            *o = O::from_i32(q);
        }
        Ok(())
    }
}

/// Float32 to int4, packed two to a byte, low nibble first (TFLite `AffineQuantizeToInt4`).
struct QuantizeInt4 {
    scale: f32,
    zero_point: i32,
    n: usize,
}

impl Kernel for QuantizeInt4 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (inputs, out) = io.single::<u8>()?;
        let input = inputs.get::<f32>(0)?;
        check_lengths(input.len(), self.n, self.n)?;
        check_lengths(out.len(), self.n.div_ceil(2), self.n.div_ceil(2))?;
        let nibble = |x: f32| (affine_quantize(x, self.scale, self.zero_point, -8, 7) & 0x0F) as u8;
        for (o, pair) in out.iter_mut().zip(input.chunks(2)) {
            let low = nibble(pair[0]);
            let high = pair.get(1).map_or(0, |&x| nibble(x));
            *o = low | (high << 4);
        }
        Ok(())
    }
}

/// Parameters of TFLite's integer `Requantize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Requant {
    multiplier: QuantizedMultiplier,
    input_zero_point: i32,
    output_zero_point: i32,
    n: usize,
}

impl Requant {
    /// The "accumulator" of one element: the input relative to its zero point.
    fn accumulate(&self, q: i32) -> i32 {
        q.wrapping_sub(self.input_zero_point)
    }

    /// Rescales an accumulator onto the output's parameters and clamps it to `[min, max]`.
    fn requantize(&self, acc: i32, min: i32, max: i32) -> i32 {
        multiply_by_quantized_multiplier(acc, self.multiplier)
            .wrapping_add(self.output_zero_point)
            .clamp(min, max)
    }
}

/// Integer to integer requantization. (TFLite's shortcut for int8 <-> uint8 with equal scales,
/// an XOR with 0x80, gives the same values as this general path.)
struct Requantize<I, O> {
    r: Requant,
    _t: std::marker::PhantomData<(I, O)>,
}

impl<I: QuantInt, O: QuantInt> Kernel for Requantize<I, O> {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (inputs, out) = io.single::<O>()?;
        let input = inputs.get::<I>(0)?;
        check_lengths(input.len(), out.len(), self.r.n)?;
        for (o, &q) in out.iter_mut().zip(input) {
            let acc = self.r.accumulate(q.to_i32());
            *o = O::from_i32(self.r.requantize(acc, O::MIN, O::MAX));
        }
        Ok(())
    }
}

fn check_lengths(input: usize, output: usize, expected: usize) -> Result<(), RuntimeError> {
    if input != expected || output != expected {
        return Err(RuntimeError::eval(format!(
            "{input} input and {output} output elements, {expected} expected"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// DEQUANTIZE
// ---------------------------------------------------------------------------------------------

/// How DEQUANTIZE reads its input's integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Storage {
    I8,
    U8,
    I16,
    U16,
    /// Packed sub-byte integers, low bits first: (bits per element, signed).
    Packed(u32, bool),
}

/// One input's integers, viewed by [`Storage`].
enum Ints<'a> {
    I8(&'a [i8]),
    U8(&'a [u8]),
    I16(&'a [i16]),
    U16(&'a [u16]),
    Packed(&'a [u8], u32, bool),
}

impl<'a> Ints<'a> {
    fn view(storage: Storage, bytes: &'a [u8]) -> Result<Self, RuntimeError> {
        let cast = |e: bytemuck::PodCastError| RuntimeError::eval(format!("input bytes: {e}"));
        Ok(match storage {
            Storage::I8 => Ints::I8(bytemuck::cast_slice(bytes)),
            Storage::U8 => Ints::U8(bytes),
            Storage::I16 => Ints::I16(bytemuck::try_cast_slice(bytes).map_err(cast)?),
            Storage::U16 => Ints::U16(bytemuck::try_cast_slice(bytes).map_err(cast)?),
            Storage::Packed(bits, signed) => Ints::Packed(bytes, bits, signed),
        })
    }

    /// Number of elements available.
    fn len(&self) -> usize {
        match self {
            Ints::I8(v) => v.len(),
            Ints::U8(v) => v.len(),
            Ints::I16(v) => v.len(),
            Ints::U16(v) => v.len(),
            Ints::Packed(v, bits, _) => v.len() * (8 / *bits as usize),
        }
    }

    /// Element `i` (which the caller has checked against [`len`](Self::len)).
    fn get(&self, i: usize) -> i32 {
        match self {
            Ints::I8(v) => i32::from(v[i]),
            Ints::U8(v) => i32::from(v[i]),
            Ints::I16(v) => i32::from(v[i]),
            Ints::U16(v) => i32::from(v[i]),
            Ints::Packed(v, bits, signed) => {
                let per_byte = 8 / *bits as usize;
                let shift = (i % per_byte) as u32 * bits;
                let raw = i32::from((v[i / per_byte] >> shift) & ((1u8 << bits) - 1));
                if *signed && raw >= 1 << (bits - 1) {
                    raw - (1 << bits)
                } else {
                    raw
                }
            }
        }
    }
}

/// What DEQUANTIZE computes.
#[derive(Debug, Clone, PartialEq)]
enum Dequant {
    /// float16 to float32.
    Half,
    /// `scale * (q - zero_point)` with one scale (TFLite computes it in double and rounds to
    /// float, which for these operands equals the float product).
    PerTensor {
        storage: Storage,
        scale: f32,
        zero_point: i32,
    },
    /// `scale[c] * (q - zero_point[c])` per channel.
    PerChannel { storage: Storage, pc: PerChannel },
}

impl Dequant {
    fn run(&self, bytes: &[u8], out: &mut [f32]) -> Result<(), RuntimeError> {
        let n = out.len();
        let short = || RuntimeError::eval(format!("the input holds fewer than {n} elements"));
        match self {
            Dequant::Half => {
                let halves: &[u16] = bytemuck::try_cast_slice(bytes)
                    .map_err(|e| RuntimeError::eval(format!("input bytes: {e}")))?;
                if halves.len() != n {
                    return Err(short());
                }
                for (o, &h) in out.iter_mut().zip(halves) {
                    *o = f16::from_bits(h).to_f32();
                }
            }
            Dequant::PerTensor {
                storage,
                scale,
                zero_point,
            } => {
                let ints = Ints::view(*storage, bytes)?;
                if ints.len() < n {
                    return Err(short());
                }
                let scale = f64::from(*scale);
                for (i, o) in out.iter_mut().enumerate() {
                    *o = (scale * f64::from(ints.get(i) - zero_point)) as f32;
                }
            }
            Dequant::PerChannel { storage, pc } => {
                let ints = Ints::view(*storage, bytes)?;
                if ints.len() < n {
                    return Err(short());
                }
                for (i, o) in out.iter_mut().enumerate() {
                    let c = pc.channel(i);
                    *o = pc.scales[c] * (ints.get(i) - pc.zero_points[c]) as f32;
                }
            }
        }
        Ok(())
    }
}

/// DEQUANTIZE: int8, uint8 (per tensor or per channel), int16, uint16 (per tensor), int4,
/// uint4, int2 (packed, per tensor or per channel) and float16 to float32. A constant input is
/// dequantized once, when the kernel is built.
pub fn dequantize(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    let input = ctx.input(0)?;
    let output = ctx.output(0)?;
    if output.dtype != DType::Float32 || input.shape != output.shape {
        return Err(ctx.unsupported_types());
    }
    let storage = match input.dtype {
        DType::Float16 => None,
        DType::Int8 => Some(Storage::I8),
        DType::UInt8 => Some(Storage::U8),
        DType::Int16 => Some(Storage::I16),
        DType::UInt16 => Some(Storage::U16),
        DType::Int4 => Some(Storage::Packed(4, true)),
        DType::UInt4 => Some(Storage::Packed(4, false)),
        DType::Int2 => Some(Storage::Packed(2, true)),
        _ => return Err(ctx.unsupported_types()),
    };
    let plan = match (storage, per_channel_quant(input)) {
        (None, _) => Dequant::Half,
        (Some(Storage::I16 | Storage::U16), Some(_)) => {
            return Err(ctx.unsupported(format!(
                "per-channel {} dequantization (TFLite has none)",
                input.dtype
            )));
        }
        (Some(storage), Some(q)) => Dequant::PerChannel {
            storage,
            pc: PerChannel::new(ctx, q, &input.shape)?,
        },
        (Some(storage), None) => {
            let (scale, zero_point) = legacy_params(input);
            Dequant::PerTensor {
                storage,
                scale,
                zero_point,
            }
        }
    };
    let n = output.num_elements();
    if let Some(bytes) = constant_bytes(ctx, 0) {
        let mut values = vec![0f32; n];
        plan.run(bytes, &mut values)
            .map_err(|e| ctx.invalid(format!("constant input: {e}")))?;
        return Ok(Box::new(ConstantOutput {
            bytes: bytemuck::cast_slice(&values).to_vec(),
        }));
    }
    Ok(Box::new(Dequantize { plan, n }))
}

struct Dequantize {
    plan: Dequant,
    n: usize,
}

impl Kernel for Dequantize {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (inputs, out) = io.single::<f32>()?;
        if out.len() != self.n {
            return Err(RuntimeError::eval("output size differs from the plan"));
        }
        self.plan.run(inputs.bytes(0)?, out)
    }
}

/// Writes bytes computed when the kernel was built (a dequantized or densified constant).
struct ConstantOutput {
    bytes: Vec<u8>,
}

impl Kernel for ConstantOutput {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (_, out) = io.split(0)?;
        if out.len() != self.bytes.len() {
            return Err(RuntimeError::eval(format!(
                "output holds {} bytes, {} expected",
                out.len(),
                self.bytes.len()
            )));
        }
        out.copy_from_slice(&self.bytes);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// CAST
// ---------------------------------------------------------------------------------------------

/// A value in transit through CAST: integers (and bools) widened to `i64`, floats to `f64`
/// (both exact for every type CAST reads).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    Int(i64),
    Float(f64),
}

type Load = fn(&[u8]) -> Num;
type Store = fn(Num, &mut [u8]);

fn le<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

fn loader(dtype: DType) -> Option<(Load, usize)> {
    Some(match dtype {
        DType::Float32 => (|b| Num::Float(f64::from(f32::from_le_bytes(le(b)))), 4),
        DType::Float64 => (|b| Num::Float(f64::from_le_bytes(le(b))), 8),
        DType::Float16 => (
            |b| Num::Float(f64::from(f16::from_le_bytes(le(b)).to_f32())),
            2,
        ),
        DType::BFloat16 => (
            |b| Num::Float(f64::from(bf16::from_le_bytes(le(b)).to_f32())),
            2,
        ),
        DType::Int64 => (|b| Num::Int(i64::from_le_bytes(le(b))), 8),
        DType::Int32 => (|b| Num::Int(i64::from(i32::from_le_bytes(le(b)))), 4),
        DType::UInt32 => (|b| Num::Int(i64::from(u32::from_le_bytes(le(b)))), 4),
        DType::Int16 => (|b| Num::Int(i64::from(i16::from_le_bytes(le(b)))), 2),
        DType::UInt16 => (|b| Num::Int(i64::from(u16::from_le_bytes(le(b)))), 2),
        DType::Int8 => (|b| Num::Int(i64::from(b[0] as i8)), 1),
        DType::UInt8 => (|b| Num::Int(i64::from(b[0])), 1),
        DType::Bool => (|b| Num::Int(i64::from(b[0] != 0)), 1),
        _ => return None,
    })
}

/// TFLite's float to integer conversion in CAST: saturating, truncating toward zero, NaN to the
/// type's maximum (`SaturatingCastFloatingToInteger`). Integers convert by two's-complement
/// truncation (`static_cast`).
macro_rules! store_int {
    ($t:ty) => {
        |n: Num, out: &mut [u8]| {
            let v: $t = match n {
                Num::Int(i) => i as $t,
                Num::Float(f) if f.is_nan() => <$t>::MAX,
                Num::Float(f) => f as $t,
            };
            out.copy_from_slice(&v.to_le_bytes());
        }
    };
}

/// The float32 value TFLite's `static_cast<float>` gives (integers round to nearest once).
fn to_f32(n: Num) -> f32 {
    match n {
        Num::Int(i) => i as f32,
        Num::Float(f) => f as f32,
    }
}

fn storer(dtype: DType) -> Option<(Store, usize)> {
    Some(match dtype {
        DType::Float32 => (|n, out| out.copy_from_slice(&to_f32(n).to_le_bytes()), 4),
        DType::Float64 => (
            |n, out| {
                let v = match n {
                    Num::Int(i) => i as f64,
                    Num::Float(f) => f,
                };
                out.copy_from_slice(&v.to_le_bytes());
            },
            8,
        ),
        // Through float32 first, as TFLite's `fp16_ieee_from_fp32_value(static_cast<float>(x))`.
        DType::Float16 => (
            |n, out| out.copy_from_slice(&f16::from_f32(to_f32(n)).to_le_bytes()),
            2,
        ),
        DType::BFloat16 => (
            |n, out| out.copy_from_slice(&bf16::from_f32(to_f32(n)).to_le_bytes()),
            2,
        ),
        DType::Int64 => (store_int!(i64), 8),
        DType::Int32 => (store_int!(i32), 4),
        DType::UInt32 => (store_int!(u32), 4),
        DType::Int16 => (store_int!(i16), 2),
        DType::UInt16 => (store_int!(u16), 2),
        DType::Int8 => (store_int!(i8), 1),
        DType::UInt8 => (store_int!(u8), 1),
        DType::Bool => (
            |n, out| {
                out[0] = u8::from(match n {
                    Num::Int(i) => i != 0,
                    Num::Float(f) => f != 0.0,
                })
            },
            1,
        ),
        _ => return None,
    })
}

/// CAST between float32, float16, bfloat16, float64, int64, int32, uint32, int16, uint16, int8,
/// uint8 and bool, with TFLite's conversions: float to integer saturates (NaN becomes the
/// maximum), integers wrap, anything to bool is "non-zero", anything to float16 rounds through
/// float32.
pub fn cast(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    let input = ctx.input(0)?;
    let output = ctx.output(0)?;
    if input.num_elements() != output.num_elements() {
        return Err(ctx.invalid(format!(
            "input {:?} and output {:?} hold different numbers of elements",
            input.shape, output.shape
        )));
    }
    let (Some((load, in_size)), Some((store, out_size))) =
        (loader(input.dtype), storer(output.dtype))
    else {
        return Err(ctx.unsupported_types());
    };
    Ok(Box::new(Cast {
        load,
        store,
        in_size,
        out_size,
        n: input.num_elements(),
    }))
}

struct Cast {
    load: Load,
    store: Store,
    in_size: usize,
    out_size: usize,
    n: usize,
}

impl Kernel for Cast {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (inputs, out) = io.split(0)?;
        let input = inputs.bytes(0)?;
        if input.len() != self.n * self.in_size || out.len() != self.n * self.out_size {
            return Err(RuntimeError::eval("tensor sizes differ from the plan"));
        }
        for (src, dst) in input
            .chunks_exact(self.in_size)
            .zip(out.chunks_exact_mut(self.out_size))
        {
            (self.store)((self.load)(src), dst);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// DENSIFY
// ---------------------------------------------------------------------------------------------

/// DENSIFY: expands a sparse constant (float32, float16 or int8, TFLite's TACO-like format with
/// optional block sparsity) once, when the kernel is built; running it copies the dense values.
pub fn densify(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    let input = ctx.input(0)?;
    let output = ctx.output(0)?;
    if input.dtype != output.dtype || input.shape != output.shape {
        return Err(ctx.invalid(format!(
            "input {} {:?} and output {} {:?} differ",
            input.dtype, input.shape, output.dtype, output.shape
        )));
    }
    let element = match input.dtype {
        DType::Float32 => 4,
        DType::Float16 => 2,
        DType::Int8 => 1,
        _ => return Err(ctx.unsupported_types()),
    };
    let tensor = ctx
        .operator
        .inputs
        .first()
        .copied()
        .flatten()
        .and_then(|id| ctx.subgraph.tensor(id))
        .ok_or_else(|| ctx.invalid("input 0 is missing"))?;
    let Some(sparsity) = tensor.sparsity.as_ref() else {
        return Err(ctx.invalid("the input is not a sparse tensor"));
    };
    let Some(values) = ctx.model.tensor_bytes(tensor) else {
        return Err(ctx.invalid("the sparse input is not a constant"));
    };
    let bytes = densify_bytes(sparsity, &input.shape, values, element)
        .map_err(|e| ctx.invalid(format!("sparse tensor '{}': {e}", input.name)))?;
    Ok(Box::new(ConstantOutput { bytes }))
}

/// The dense row-major bytes of a sparse tensor of `shape` whose stored values (`element` bytes
/// each, in traversal order) are `values`: TFLite's `FormatConverter::SparseToDense`.
fn densify_bytes(
    sparsity: &Sparsity,
    shape: &[usize],
    values: &[u8],
    element: usize,
) -> Result<Vec<u8>, String> {
    let rank = shape.len();
    let levels = sparsity.traversal_order.len();
    if sparsity.dim_metadata.len() != levels || levels < rank {
        return Err(format!(
            "{} dimension metadata entries for a traversal order of {levels} and rank {rank}",
            sparsity.dim_metadata.len()
        ));
    }
    let order = sparsity
        .traversal_order
        .iter()
        .map(|&d| usize::try_from(d).ok().filter(|&d| d < levels))
        .collect::<Option<Vec<_>>>()
        .ok_or("traversal order out of range")?;
    let block_map = sparsity
        .block_map
        .iter()
        .map(|&d| usize::try_from(d).ok().filter(|&d| d < rank))
        .collect::<Option<Vec<_>>>()
        .ok_or("block map out of range")?;
    if sparsity.dim_metadata[rank..].iter().any(|m| m.sparse) {
        return Err("block dimensions must be dense (TFLite supports no other)".into());
    }
    if levels != rank + block_map.len() {
        return Err(format!(
            "traversal order of {levels} levels for rank {rank} and {} block dimensions",
            block_map.len()
        ));
    }
    let dims: Vec<Level> = sparsity
        .dim_metadata
        .iter()
        .map(|m| {
            if m.sparse {
                Level::Sparse {
                    segments: m.array_segments.to_i64(),
                    indices: m.array_indices.to_i64(),
                }
            } else {
                Level::Dense(i64::from(m.dense_size))
            }
        })
        .collect();
    // Block sizes as TFLite's `InitSparseToDenseConverter` reads them: the dense size at the
    // level whose index is the block dimension's traversal entry.
    let dense_size = |level: usize| match sparsity.dim_metadata.get(level) {
        Some(m) => i64::from(m.dense_size),
        None => 0,
    };
    // Like TFLite, this walks the dimensions in order, so only a sorted block map gets all its
    // sizes (the others stay 0).
    let mut block_sizes = vec![0i64; block_map.len()];
    let mut b = 0;
    for d in 0..rank {
        if block_map.get(b) == Some(&d) {
            block_sizes[b] = dense_size(order[rank + b]);
            b += 1;
        }
    }

    let dense_len: usize = shape.iter().product();
    let mut out = vec![0u8; dense_len * element];
    let mut walk = Walk {
        order: &order,
        block_map: &block_map,
        block_sizes: &block_sizes,
        shape,
        dims: &dims,
        values,
        element,
        next_value: 0,
        indices: vec![0; levels],
        out: &mut out,
    };
    walk.populate(0, 0)?;
    Ok(out)
}

/// One traversal level of a sparse tensor.
enum Level {
    Dense(i64),
    Sparse {
        segments: Vec<i64>,
        indices: Vec<i64>,
    },
}

/// State of TFLite's recursive `Populate`.
struct Walk<'a> {
    order: &'a [usize],
    block_map: &'a [usize],
    block_sizes: &'a [i64],
    shape: &'a [usize],
    dims: &'a [Level],
    values: &'a [u8],
    element: usize,
    next_value: usize,
    indices: Vec<i64>,
    out: &'a mut [u8],
}

impl Walk<'_> {
    fn populate(&mut self, level: usize, prev: i64) -> Result<(), String> {
        let Some(dim) = self.dims.get(level) else {
            return self.store();
        };
        match dim {
            Level::Dense(size) => {
                for i in 0..*size {
                    self.indices[level] = i;
                    self.populate(level + 1, prev * size + i)?;
                }
            }
            Level::Sparse { segments, indices } => {
                let at = |k: i64| {
                    usize::try_from(k)
                        .ok()
                        .and_then(|k| segments.get(k).copied())
                };
                if let (Some(from), Some(to)) = (at(prev), at(prev + 1)) {
                    for i in from..to {
                        let Some(&index) = usize::try_from(i).ok().and_then(|i| indices.get(i))
                        else {
                            continue;
                        };
                        self.indices[level] = index;
                        self.populate(level + 1, i)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes the next stored value at the dense position of the current indices.
    fn store(&mut self) -> Result<(), String> {
        let rank = self.shape.len();
        let mut dense = vec![0i64; rank];
        for (level, &index) in self.indices.iter().enumerate().take(rank) {
            *dense
                .get_mut(self.order[level])
                .ok_or("a block dimension is traversed before a dense one")? = index;
        }
        for level in rank..self.indices.len() {
            let block = self.order[level]
                .checked_sub(rank)
                .filter(|&b| b < self.block_map.len())
                .ok_or("block level out of range")?;
            let d = self.block_map[block];
            dense[d] = dense[d] * self.block_sizes[block] + self.indices[level];
        }
        let mut flat = 0usize;
        for (&index, &size) in dense.iter().zip(self.shape) {
            let index = usize::try_from(index)
                .ok()
                .filter(|&i| i < size)
                .ok_or_else(|| format!("index {index} outside dimension of size {size}"))?;
            flat = flat * size + index;
        }
        let src = self.next_value * self.element;
        let value = self
            .values
            .get(src..src + self.element)
            .ok_or("more positions than stored values")?;
        self.out[flat * self.element..(flat + 1) * self.element].copy_from_slice(value);
        self.next_value += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::movement::testing::{f32s, i32s, model, run, t};
    use octet_core::{DimensionMetadata, Op, SparseIndices};

    #[test]
    fn affine_quantize_rounds_half_away_and_wraps_like_litert() {
        // 0.25 / 0.1 = 2.5 -> 3; -0.25 -> -3; with zero point 1.
        assert_eq!(affine_quantize(0.25, 0.1, 1, -128, 127), 4);
        assert_eq!(affine_quantize(-0.25, 0.1, 1, -128, 127), -2);
        // Out of the int32 range, x86 gives i32::MIN; adding zero point -128 wraps to a large
        // positive number, so LiteRT outputs 127 for NaN and for -1e10 alike.
        assert_eq!(affine_quantize(f32::NAN, 0.1, -128, -128, 127), 127);
        assert_eq!(affine_quantize(-1e10, 0.1, -128, -128, 127), 127);
        // With a non-negative zero point it stays at i32::MIN + zp and clamps to the minimum.
        assert_eq!(affine_quantize(1e10, 0.1, 3, -128, 127), -128);
        assert_eq!(affine_quantize(300.0, 0.1, 3, -128, 127), 127);
    }

    #[test]
    fn quantize_per_channel_uses_each_channels_parameters() {
        // [2, 2] quantized along axis 1 with scales (0.5, 0.25) and zero points (0, 10).
        let q = QuantParams::per_axis(vec![0.5, 0.25], vec![0, 10], 1);
        let m = model(
            Op::Quantize,
            vec![t(DType::Float32, &[2, 2])],
            vec![t(DType::Int8, &[2, 2]).quant(q)],
        );
        let out = run(&m, &[f32s(&[1.0, 1.0, -1.0, 0.125])]).unwrap();
        // 1/0.5 = 2; 1/0.25 + 10 = 14; -1/0.5 = -2; 0.125/0.25 = 0.5 -> 1 (+10) = 11.
        assert_eq!(out[0], vec![2, 14, (-2i8) as u8, 11]);
    }

    #[test]
    fn requantize_int8_to_uint8() {
        // Same scale, zero points -128 and 0: the XOR-0x80 case, q + 128.
        let m = model(
            Op::Quantize,
            vec![t(DType::Int8, &[3]).q(0.5, -128)],
            vec![t(DType::UInt8, &[3]).q(0.5, 0)],
        );
        let out = run(&m, &[vec![(-128i8) as u8, 0, 127]]).unwrap();
        assert_eq!(out[0], vec![0, 128, 255]);
        // Halving the scale doubles the values: (q - 0) * 2 + 5, clamped.
        let m = model(
            Op::Quantize,
            vec![t(DType::Int8, &[3]).q(0.5, 0)],
            vec![t(DType::UInt8, &[3]).q(0.25, 5)],
        );
        let out = run(&m, &[vec![(-3i8) as u8, 10, 127]]).unwrap();
        assert_eq!(out[0], vec![0, 25, 255]);
    }

    #[test]
    fn dequantize_per_channel_and_half() {
        let q = QuantParams::per_axis(vec![0.5, 2.0], vec![1, -1], 0);
        let m = model(
            Op::Dequantize,
            vec![t(DType::Int8, &[2, 2]).quant(q)],
            vec![t(DType::Float32, &[2, 2])],
        );
        let out = run(&m, &[vec![3, 1, 0, (-1i8) as u8]]).unwrap();
        assert_eq!(out[0], f32s(&[1.0, 0.0, 2.0, 0.0]));
        // A constant float16 input: 1.5 and -2 are exact in binary16.
        let halves: Vec<u8> = [f16::from_f32(1.5), f16::from_f32(-2.0)]
            .iter()
            .flat_map(|h| h.to_le_bytes())
            .collect();
        let m = model(
            Op::Dequantize,
            vec![t(DType::Float16, &[2]).data(halves)],
            vec![t(DType::Float32, &[2])],
        );
        assert_eq!(run(&m, &[]).unwrap()[0], f32s(&[1.5, -2.0]));
    }

    #[test]
    fn cast_saturates_floats_and_wraps_integers() {
        let cast = Op::Cast(None);
        let m = model(
            cast.clone(),
            vec![t(DType::Float32, &[4])],
            vec![t(DType::Int8, &[4])],
        );
        let out = run(&m, &[f32s(&[f32::NAN, -300.0, 1.9, -1.9])]).unwrap();
        assert_eq!(out[0], vec![127, (-128i8) as u8, 1, (-1i8) as u8]);
        let m = model(
            cast.clone(),
            vec![t(DType::Int32, &[2])],
            vec![t(DType::Int8, &[2])],
        );
        let out = run(&m, &[i32s(&[300, -129])]).unwrap();
        assert_eq!(out[0], vec![44, 127]);
        let m = model(
            cast,
            vec![t(DType::Float32, &[3])],
            vec![t(DType::Bool, &[3])],
        );
        let out = run(&m, &[f32s(&[0.0, -0.0, f32::NAN])]).unwrap();
        assert_eq!(out[0], vec![0, 0, 1]);
    }

    fn csr(dense_size: i32) -> DimensionMetadata {
        DimensionMetadata {
            sparse: false,
            dense_size,
            array_segments: SparseIndices::Absent,
            array_indices: SparseIndices::Absent,
        }
    }

    #[test]
    fn densify_a_csr_matrix() {
        // [[0 5 0] [7 0 8]]: row 0 holds column 1, row 1 columns 0 and 2.
        let sparsity = Sparsity {
            traversal_order: vec![0, 1],
            block_map: vec![],
            dim_metadata: vec![
                csr(2),
                DimensionMetadata {
                    sparse: true,
                    dense_size: 0,
                    array_segments: SparseIndices::I32(vec![0, 1, 3]),
                    array_indices: SparseIndices::U8(vec![1, 0, 2]),
                },
            ],
        };
        let dense = densify_bytes(&sparsity, &[2, 3], &[5, 7, 8], 1).unwrap();
        assert_eq!(dense, vec![0, 5, 0, 7, 0, 8]);
        // Fewer stored values than positions is an error, not a panic.
        assert!(densify_bytes(&sparsity, &[2, 3], &[5, 7], 1).is_err());
    }

    #[test]
    fn densify_blocks() {
        // A [2, 4] matrix in 1x2 blocks: block rows 0..2, block columns 0..2 (sparse), then
        // the dense 1x2 block. Row 0 keeps block column 1, row 1 block column 0:
        // [[0 0 1 2] [3 4 0 0]].
        let sparsity = Sparsity {
            traversal_order: vec![0, 1, 2, 3],
            block_map: vec![0, 1],
            dim_metadata: vec![
                csr(2),
                DimensionMetadata {
                    sparse: true,
                    dense_size: 0,
                    array_segments: SparseIndices::I32(vec![0, 1, 2]),
                    array_indices: SparseIndices::I32(vec![1, 0]),
                },
                csr(1),
                csr(2),
            ],
        };
        let values = f32s(&[1.0, 2.0, 3.0, 4.0]);
        let dense = densify_bytes(&sparsity, &[2, 4], &values, 4).unwrap();
        assert_eq!(dense, f32s(&[0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 0.0, 0.0]));
    }

    #[test]
    fn densify_the_sparse_fixture_model() {
        // models/sparse_fc.tflite: a [32, 64] float kernel with 410 stored values feeding
        // DENSIFY. The dense tensor must hold exactly those values, each once.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/sparse_fc.tflite");
        let model = octet_tflite::read_file(std::path::Path::new(path)).unwrap();
        let sg = model.main_subgraph().unwrap();
        let op = sg
            .operators
            .iter()
            .find(|o| matches!(o.op, Op::Densify))
            .unwrap();
        let tensor = sg.tensor(op.inputs[0].unwrap()).unwrap();
        let values = model.tensor_bytes(tensor).unwrap();
        let dense = densify_bytes(tensor.sparsity.as_ref().unwrap(), &[32, 64], values, 4).unwrap();
        let mut stored: Vec<u32> = bytemuck::cast_slice::<u8, u32>(values).to_vec();
        let mut nonzero: Vec<u32> = bytemuck::cast_slice::<u8, u32>(&dense)
            .iter()
            .copied()
            .filter(|&b| b != 0)
            .collect();
        stored.retain(|&b| b != 0);
        stored.sort_unstable();
        nonzero.sort_unstable();
        assert_eq!(stored.len(), 410);
        assert_eq!(nonzero, stored);
    }
}
