//! QUANTIZE: float to a quantized type, and requantization between quantized types.

use octet_core::DType;
use octet_core::fixed_point::{
    QuantizedMultiplier, multiply_by_quantized_multiplier, quantize_multiplier,
};

use bytemuck::Pod;
use octet_linalg::Isa;
use octet_linalg::frame::elementwise::{Lut8, QuantElem, Quantize};

use super::{PerChannel, QuantInt, check_lengths, legacy_params};
use crate::kernels::activation::lut_kernel;
use crate::kernels::binary::split_map;
use crate::{Kernel, OpContext, OpIo, RuntimeError};

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
        let isa = ctx.isa();
        return match output.dtype {
            DType::Int8 => Ok(QuantizeTensor::<i8>::boxed(isa, scale, zero_point, n)),
            DType::UInt8 => Ok(QuantizeTensor::<u8>::boxed(isa, scale, zero_point, n)),
            DType::Int16 => Ok(QuantizeTensor::<i16>::boxed(isa, scale, zero_point, n)),
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
    if let Some(table) = requantize_table(&r, input.dtype, output.dtype) {
        return Ok(lut_kernel(Lut8::new(ctx.isa(), table)));
    }
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

/// Float32 to a per-tensor quantized integer type, on linalg.
struct QuantizeTensor<O: QuantElem> {
    kernel: Quantize<O>,
    n: usize,
}

impl<O: QuantElem + Pod> QuantizeTensor<O> {
    fn boxed(isa: Isa, scale: f32, zero_point: i32, n: usize) -> Box<dyn Kernel> {
        Box::new(QuantizeTensor {
            kernel: Quantize::<O>::new(isa, scale, zero_point),
            n,
        })
    }
}

impl<O: QuantElem + Pod> Kernel for QuantizeTensor<O> {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let parts = io.parts::<O>(0)?;
        let input = parts.inputs.get::<f32>(0)?;
        check_lengths(input.len(), parts.output.len(), self.n)?;
        let k = &self.kernel;
        split_map(parts.threads, input, parts.output, |x, o| k.run(x, o))
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

/// 8-bit to 8-bit requantization as a table of the exact function over the 256 inputs.
fn requantize_table(r: &Requant, input: DType, output: DType) -> Option<[u8; 256]> {
    let (in_min, in_max) = match input {
        DType::Int8 => (-128, 127),
        DType::UInt8 => (0, 255),
        _ => return None,
    };
    let (out_min, out_max) = match output {
        DType::Int8 => (-128, 127),
        DType::UInt8 => (0, 255),
        _ => return None,
    };
    let mut table = [0u8; 256];
    for v in in_min..=in_max {
        let out = r.requantize(r.accumulate(v), out_min, out_max);
        // Index and entry are the values' low bytes (two's complement for int8).
        table[(v & 0xff) as usize] = (out & 0xff) as u8;
    }
    Some(table)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{f32s, model, run, t};
    use octet_core::{Op, QuantParams};

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
}
