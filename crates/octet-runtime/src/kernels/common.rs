//! Helpers shared by kernels: activation clamping ranges, integer ranges of dtypes, quantization
//! parameter lookup. Integer arithmetic itself lives in [`octet_core::fixed_point`].

use octet_core::{ActivationFunction, DType};

use crate::{OpContext, RuntimeError, TensorInfo};

/// The float clamp of a fused activation (TFLite `CalculateActivationRange`).
pub fn activation_range_f32(activation: ActivationFunction) -> (f32, f32) {
    match activation {
        ActivationFunction::Relu => (0.0, f32::MAX),
        ActivationFunction::Relu6 => (0.0, 6.0),
        ActivationFunction::ReluN1To1 => (-1.0, 1.0),
        _ => (f32::MIN, f32::MAX),
    }
}

/// The representable range of an integer dtype, as `i32` (int8, uint8, int16, int32).
pub fn dtype_range(dtype: DType) -> Option<(i32, i32)> {
    Some(match dtype {
        DType::Int8 => (i32::from(i8::MIN), i32::from(i8::MAX)),
        DType::UInt8 => (0, i32::from(u8::MAX)),
        DType::Int16 => (i32::from(i16::MIN), i32::from(i16::MAX)),
        DType::Int32 => (i32::MIN, i32::MAX),
        _ => return None,
    })
}

/// The quantized clamp of a fused activation on an output with `scale` and `zero_point`
/// (TFLite `CalculateActivationRangeQuantized`): the dtype's range, narrowed to the quantized
/// images of 0, 6, -1 and 1 as the activation requires.
pub fn activation_range_quantized(
    activation: ActivationFunction,
    dtype: DType,
    scale: f32,
    zero_point: i32,
) -> Option<(i32, i32)> {
    let (qmin, qmax) = dtype_range(dtype)?;
    let quantize = |x: f32| -> i32 {
        // TFLite: zero_point + static_cast<int32_t>(TfLiteRound(x / scale)).
        let q = (x / scale).round();
        zero_point.saturating_add(q as i32)
    };
    Some(match activation {
        ActivationFunction::Relu => (qmin.max(quantize(0.0)), qmax),
        ActivationFunction::Relu6 => (qmin.max(quantize(0.0)), qmax.min(quantize(6.0))),
        ActivationFunction::ReluN1To1 => (qmin.max(quantize(-1.0)), qmax.min(quantize(1.0))),
        _ => (qmin, qmax),
    })
}

/// The per-tensor `(scale, zero_point)` of `tensor`, or an error naming `what` (e.g. "input 0").
pub fn per_tensor_quant(
    ctx: &OpContext<'_>,
    tensor: &TensorInfo,
    what: &str,
) -> Result<(f32, i32), RuntimeError> {
    tensor.scale_zero_point().ok_or_else(|| {
        ctx.invalid(format!(
            "{what} ('{}') is {} but has no per-tensor quantization parameters",
            tensor.name, tensor.dtype
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantized_relu6_range_on_uint8() {
        // scale 6/255, zero point 0: 0 -> 0, 6 -> 255.
        assert_eq!(
            activation_range_quantized(ActivationFunction::Relu6, DType::UInt8, 6.0 / 255.0, 0),
            Some((0, 255))
        );
        // int8 with zero point -128 and scale 0.1: 0 -> -128, 6 -> -68.
        assert_eq!(
            activation_range_quantized(ActivationFunction::Relu6, DType::Int8, 0.1, -128),
            Some((-128, -68))
        );
        assert_eq!(
            activation_range_quantized(ActivationFunction::None, DType::Int16, 0.1, 0),
            Some((-32768, 32767))
        );
    }
}
