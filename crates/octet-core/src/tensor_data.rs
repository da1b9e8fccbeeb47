use half::{bf16, f16};

use crate::{CoreError, DType};

/// Tensor elements decoded from a little-endian buffer into a typed vector.
///
/// Sub-byte integers (int2, int4, uint4) are unpacked to one `i8`/`u8` per element.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// float32 elements.
    F32(Vec<f32>),
    /// float16 elements.
    F16(Vec<f16>),
    /// bfloat16 elements.
    BF16(Vec<bf16>),
    /// float64 elements.
    F64(Vec<f64>),
    /// int8 elements (also unpacked int4 and int2).
    I8(Vec<i8>),
    /// uint8 elements (also unpacked uint4).
    U8(Vec<u8>),
    /// int16 elements.
    I16(Vec<i16>),
    /// uint16 elements.
    U16(Vec<u16>),
    /// int32 elements.
    I32(Vec<i32>),
    /// uint32 elements.
    U32(Vec<u32>),
    /// int64 elements.
    I64(Vec<i64>),
    /// uint64 elements.
    U64(Vec<u64>),
    /// bool elements.
    Bool(Vec<bool>),
}

fn chunks<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    bytes.chunks_exact(N).map(|c| {
        let mut a = [0u8; N];
        a.copy_from_slice(c);
        a
    })
}

impl TensorData {
    /// Decodes `elements` elements of `dtype` from `bytes`, checking the length first.
    pub fn decode(dtype: DType, elements: usize, bytes: &[u8]) -> Result<Self, CoreError> {
        let expected = dtype
            .dense_byte_len(elements)
            .ok_or(CoreError::UndecodableDType(dtype.name()))?;
        if bytes.len() != expected {
            return Err(CoreError::BufferSizeMismatch {
                dtype: dtype.name(),
                elements,
                expected,
                actual: bytes.len(),
            });
        }
        Ok(match dtype {
            DType::Float32 => TensorData::F32(chunks(bytes).map(f32::from_le_bytes).collect()),
            DType::Float16 => TensorData::F16(chunks(bytes).map(f16::from_le_bytes).collect()),
            DType::BFloat16 => TensorData::BF16(chunks(bytes).map(bf16::from_le_bytes).collect()),
            DType::Float64 => TensorData::F64(chunks(bytes).map(f64::from_le_bytes).collect()),
            DType::Int8 => TensorData::I8(bytes.iter().map(|&b| b as i8).collect()),
            DType::UInt8 => TensorData::U8(bytes.to_vec()),
            DType::Bool => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
            DType::Int16 => TensorData::I16(chunks(bytes).map(i16::from_le_bytes).collect()),
            DType::UInt16 => TensorData::U16(chunks(bytes).map(u16::from_le_bytes).collect()),
            DType::Int32 => TensorData::I32(chunks(bytes).map(i32::from_le_bytes).collect()),
            DType::UInt32 => TensorData::U32(chunks(bytes).map(u32::from_le_bytes).collect()),
            DType::Int64 => TensorData::I64(chunks(bytes).map(i64::from_le_bytes).collect()),
            DType::UInt64 => TensorData::U64(chunks(bytes).map(u64::from_le_bytes).collect()),
            DType::Int4 => TensorData::I8(unpack_sub_byte(bytes, 4, elements, true)),
            DType::Int2 => TensorData::I8(unpack_sub_byte(bytes, 2, elements, true)),
            DType::UInt4 => TensorData::U8(
                unpack_sub_byte(bytes, 4, elements, false)
                    .into_iter()
                    .map(|v| v as u8)
                    .collect(),
            ),
            DType::Float8E4M3FN
            | DType::Float8E5M2
            | DType::String
            | DType::Complex64
            | DType::Complex128
            | DType::Resource
            | DType::Variant => return Err(CoreError::UndecodableDType(dtype.name())),
        })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F16(v) => v.len(),
            TensorData::BF16(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::U8(v) => v.len(),
            TensorData::I16(v) => v.len(),
            TensorData::U16(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::U32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::U64(v) => v.len(),
            TensorData::Bool(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Encodes to little-endian bytes in the natural dtype of the variant (unpacked sub-byte
    /// values are written one per byte; pack them with the format crate if the tensor is int4).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::F16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::BF16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I8(v) => v.iter().map(|&x| x as u8).collect(),
            TensorData::U8(v) => v.clone(),
            TensorData::I16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::U16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::U64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| u8::from(x)).collect(),
        }
    }

    /// The elements as float32: floats converted, integers cast (no dequantization).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            TensorData::F32(v) => v.clone(),
            TensorData::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            TensorData::BF16(v) => v.iter().map(|x| x.to_f32()).collect(),
            TensorData::F64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I8(v) => v.iter().map(|&x| f32::from(x)).collect(),
            TensorData::U8(v) => v.iter().map(|&x| f32::from(x)).collect(),
            TensorData::I16(v) => v.iter().map(|&x| f32::from(x)).collect(),
            TensorData::U16(v) => v.iter().map(|&x| f32::from(x)).collect(),
            TensorData::I32(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::U32(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::U64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| f32::from(u8::from(x))).collect(),
        }
    }
}

/// Unpacks `count` values of `bits` bits each, least significant bits first, sign-extending when
/// `signed`.
fn unpack_sub_byte(bytes: &[u8], bits: u32, count: usize, signed: bool) -> Vec<i8> {
    let per_byte = (8 / bits) as usize;
    let mask = (1u8 << bits) - 1;
    (0..count)
        .map(|i| {
            let byte = bytes.get(i / per_byte).copied().unwrap_or(0);
            let raw = (byte >> ((i % per_byte) as u32 * bits)) & mask;
            if signed && raw & (1 << (bits - 1)) != 0 {
                (raw as i8) - (1i8 << bits)
            } else {
                raw as i8
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_little_endian_and_checks_length() {
        let bytes = [0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0];
        assert_eq!(
            TensorData::decode(DType::Float32, 2, &bytes),
            Ok(TensorData::F32(vec![1.0, -2.0]))
        );
        assert!(matches!(
            TensorData::decode(DType::Float32, 3, &bytes),
            Err(CoreError::BufferSizeMismatch { expected: 12, .. })
        ));
        let back = TensorData::F32(vec![1.0, -2.0]).to_le_bytes();
        assert_eq!(back, bytes);
    }

    #[test]
    fn unpacks_int4_low_nibble_first_with_sign() {
        // 0x7F: low nibble 0xF = -1, high nibble 0x7 = 7; 0x08: low 8 = -8.
        assert_eq!(
            TensorData::decode(DType::Int4, 3, &[0x7f, 0x08]),
            Ok(TensorData::I8(vec![-1, 7, -8]))
        );
        assert_eq!(
            TensorData::decode(DType::UInt4, 2, &[0x7f]),
            Ok(TensorData::U8(vec![15, 7]))
        );
    }

    #[test]
    fn float16_converts_to_f32() {
        let one = f16::from_f32(1.5).to_le_bytes();
        let data = TensorData::decode(DType::Float16, 1, &one).unwrap();
        assert_eq!(data.to_f32(), vec![1.5]);
    }
}
