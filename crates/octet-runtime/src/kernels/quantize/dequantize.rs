//! DEQUANTIZE: quantized integers and float16 to float32.

use half::f16;
use octet_core::DType;

use bytemuck::Pod;
use octet_linalg::Isa;
use octet_linalg::frame::elementwise::{Dequantize as LinalgDequantize, QuantElem};

use super::{
    ConstantOutput, PerChannel, check_lengths, constant_bytes, legacy_params, per_channel_quant,
};
use crate::kernels::binary::split_map;
use crate::{Kernel, OpContext, OpIo, RuntimeError};

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
    if let Dequant::PerTensor {
        storage,
        scale,
        zero_point,
    } = plan
    {
        let isa = ctx.isa();
        match storage {
            Storage::I8 => return Ok(FastDequantize::<i8>::boxed(isa, scale, zero_point, n)),
            Storage::U8 => return Ok(FastDequantize::<u8>::boxed(isa, scale, zero_point, n)),
            Storage::I16 => return Ok(FastDequantize::<i16>::boxed(isa, scale, zero_point, n)),
            _ => {}
        }
    }
    Ok(Box::new(Dequantize { plan, n }))
}

/// Per-tensor DEQUANTIZE of int8, uint8 and int16 on linalg.
struct FastDequantize<T: QuantElem> {
    kernel: LinalgDequantize<T>,
    n: usize,
}

impl<T: QuantElem + Pod> FastDequantize<T> {
    fn boxed(isa: Isa, scale: f32, zero_point: i32, n: usize) -> Box<dyn Kernel> {
        Box::new(FastDequantize {
            kernel: LinalgDequantize::<T>::new(isa, scale, zero_point),
            n,
        })
    }
}

impl<T: QuantElem + Pod> Kernel for FastDequantize<T> {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let parts = io.parts::<f32>(0)?;
        let input = parts.inputs.get::<T>(0)?;
        check_lengths(input.len(), parts.output.len(), self.n)?;
        let k = &self.kernel;
        split_map(parts.threads, input, parts.output, |x, o| k.run(x, o))
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{f32s, model, run, t};
    use octet_core::{Op, QuantParams};

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
}
