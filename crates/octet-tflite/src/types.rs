//! Mapping between the schema's small enums and octet-core's types.

use octet_core::{ActivationFunction, DType, MirrorPadMode, Padding, WeightsFormat};

use crate::fb;

/// The core dtype of a schema tensor type, `None` for codes this schema does not define.
pub(crate) fn dtype_from_fb(t: fb::TensorType) -> Option<DType> {
    Some(match t {
        fb::TensorType::FLOAT32 => DType::Float32,
        fb::TensorType::FLOAT16 => DType::Float16,
        fb::TensorType::INT32 => DType::Int32,
        fb::TensorType::UINT8 => DType::UInt8,
        fb::TensorType::INT64 => DType::Int64,
        fb::TensorType::STRING => DType::String,
        fb::TensorType::BOOL => DType::Bool,
        fb::TensorType::INT16 => DType::Int16,
        fb::TensorType::COMPLEX64 => DType::Complex64,
        fb::TensorType::INT8 => DType::Int8,
        fb::TensorType::FLOAT64 => DType::Float64,
        fb::TensorType::COMPLEX128 => DType::Complex128,
        fb::TensorType::UINT64 => DType::UInt64,
        fb::TensorType::RESOURCE => DType::Resource,
        fb::TensorType::VARIANT => DType::Variant,
        fb::TensorType::UINT32 => DType::UInt32,
        fb::TensorType::UINT16 => DType::UInt16,
        fb::TensorType::INT4 => DType::Int4,
        fb::TensorType::BFLOAT16 => DType::BFloat16,
        fb::TensorType::INT2 => DType::Int2,
        fb::TensorType::UINT4 => DType::UInt4,
        fb::TensorType::FLOAT8_E4M3FN => DType::Float8E4M3FN,
        fb::TensorType::FLOAT8_E5M2 => DType::Float8E5M2,
        _ => return None,
    })
}

/// The schema tensor type of a core dtype.
pub(crate) fn dtype_to_fb(d: DType) -> fb::TensorType {
    match d {
        DType::Float32 => fb::TensorType::FLOAT32,
        DType::Float16 => fb::TensorType::FLOAT16,
        DType::Int32 => fb::TensorType::INT32,
        DType::UInt8 => fb::TensorType::UINT8,
        DType::Int64 => fb::TensorType::INT64,
        DType::String => fb::TensorType::STRING,
        DType::Bool => fb::TensorType::BOOL,
        DType::Int16 => fb::TensorType::INT16,
        DType::Complex64 => fb::TensorType::COMPLEX64,
        DType::Int8 => fb::TensorType::INT8,
        DType::Float64 => fb::TensorType::FLOAT64,
        DType::Complex128 => fb::TensorType::COMPLEX128,
        DType::UInt64 => fb::TensorType::UINT64,
        DType::Resource => fb::TensorType::RESOURCE,
        DType::Variant => fb::TensorType::VARIANT,
        DType::UInt32 => fb::TensorType::UINT32,
        DType::UInt16 => fb::TensorType::UINT16,
        DType::Int4 => fb::TensorType::INT4,
        DType::BFloat16 => fb::TensorType::BFLOAT16,
        DType::Int2 => fb::TensorType::INT2,
        DType::UInt4 => fb::TensorType::UINT4,
        DType::Float8E4M3FN => fb::TensorType::FLOAT8_E4M3FN,
        DType::Float8E5M2 => fb::TensorType::FLOAT8_E5M2,
    }
}

pub(crate) fn activation_from_fb(a: fb::ActivationFunctionType) -> Option<ActivationFunction> {
    Some(match a {
        fb::ActivationFunctionType::NONE => ActivationFunction::None,
        fb::ActivationFunctionType::RELU => ActivationFunction::Relu,
        fb::ActivationFunctionType::RELU_N1_TO_1 => ActivationFunction::ReluN1To1,
        fb::ActivationFunctionType::RELU6 => ActivationFunction::Relu6,
        fb::ActivationFunctionType::TANH => ActivationFunction::Tanh,
        fb::ActivationFunctionType::SIGN_BIT => ActivationFunction::SignBit,
        _ => return None,
    })
}

pub(crate) fn activation_to_fb(a: ActivationFunction) -> fb::ActivationFunctionType {
    match a {
        ActivationFunction::None => fb::ActivationFunctionType::NONE,
        ActivationFunction::Relu => fb::ActivationFunctionType::RELU,
        ActivationFunction::ReluN1To1 => fb::ActivationFunctionType::RELU_N1_TO_1,
        ActivationFunction::Relu6 => fb::ActivationFunctionType::RELU6,
        ActivationFunction::Tanh => fb::ActivationFunctionType::TANH,
        ActivationFunction::SignBit => fb::ActivationFunctionType::SIGN_BIT,
    }
}

pub(crate) fn padding_from_fb(p: fb::Padding) -> Option<Padding> {
    match p {
        fb::Padding::SAME => Some(Padding::Same),
        fb::Padding::VALID => Some(Padding::Valid),
        _ => None,
    }
}

pub(crate) fn padding_to_fb(p: Padding) -> fb::Padding {
    match p {
        Padding::Same => fb::Padding::SAME,
        Padding::Valid => fb::Padding::VALID,
    }
}

pub(crate) fn mirror_mode_from_fb(m: fb::MirrorPadMode) -> Option<MirrorPadMode> {
    match m {
        fb::MirrorPadMode::REFLECT => Some(MirrorPadMode::Reflect),
        fb::MirrorPadMode::SYMMETRIC => Some(MirrorPadMode::Symmetric),
        _ => None,
    }
}

pub(crate) fn mirror_mode_to_fb(m: MirrorPadMode) -> fb::MirrorPadMode {
    match m {
        MirrorPadMode::Reflect => fb::MirrorPadMode::REFLECT,
        MirrorPadMode::Symmetric => fb::MirrorPadMode::SYMMETRIC,
    }
}

pub(crate) fn weights_format_from_fb(
    w: fb::FullyConnectedOptionsWeightsFormat,
) -> Option<WeightsFormat> {
    match w {
        fb::FullyConnectedOptionsWeightsFormat::DEFAULT => Some(WeightsFormat::Default),
        fb::FullyConnectedOptionsWeightsFormat::SHUFFLED4x16INT8 => {
            Some(WeightsFormat::Shuffled4x16Int8)
        }
        _ => None,
    }
}

pub(crate) fn weights_format_to_fb(w: WeightsFormat) -> fb::FullyConnectedOptionsWeightsFormat {
    match w {
        WeightsFormat::Default => fb::FullyConnectedOptionsWeightsFormat::DEFAULT,
        WeightsFormat::Shuffled4x16Int8 => fb::FullyConnectedOptionsWeightsFormat::SHUFFLED4x16INT8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dtype_maps_both_ways() {
        for d in DType::ALL {
            assert_eq!(dtype_from_fb(dtype_to_fb(d)), Some(d));
        }
        assert_eq!(dtype_from_fb(fb::TensorType(99)), None);
    }
}
