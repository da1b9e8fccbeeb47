//! CAST: conversions between element types.

use half::{bf16, f16};
use octet_core::DType;

use crate::{Kernel, OpContext, OpIo, RuntimeError};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{f32s, i32s, model, run, t};
    use octet_core::Op;

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
}
