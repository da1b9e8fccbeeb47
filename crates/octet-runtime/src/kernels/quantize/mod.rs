//! Type changes, one file per op: QUANTIZE (including requantization), DEQUANTIZE, CAST,
//! DENSIFY. The helpers they share (per-channel parameters, constant inputs, the integer types)
//! live here.

mod cast;
mod densify;
mod dequantize;
mod quantize_op;

pub use cast::cast;
pub use densify::densify;
pub use dequantize::dequantize;
pub use quantize_op::quantize;

use bytemuck::Pod;
use octet_core::QuantParams;

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

fn check_lengths(input: usize, output: usize, expected: usize) -> Result<(), RuntimeError> {
    if input != expected || output != expected {
        return Err(RuntimeError::eval(format!(
            "{input} input and {output} output elements, {expected} expected"
        )));
    }
    Ok(())
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
