use std::fmt;

/// Element type of a tensor: every type a TFLite model can declare.
///
/// The variants follow the TFLite `TensorType` enum one to one; the mapping to the file's numeric
/// codes lives in the format crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum DType {
    /// IEEE 754 binary32 (the schema's default type).
    #[default]
    Float32,
    /// IEEE 754 binary16 (stored weights, usually dequantized to float32 before use).
    Float16,
    /// bfloat16: the top half of a binary32.
    BFloat16,
    /// IEEE 754 binary64.
    Float64,
    /// 8-bit float, 4 exponent bits, 3 mantissa bits, no infinities.
    Float8E4M3FN,
    /// 8-bit float, 5 exponent bits, 2 mantissa bits.
    Float8E5M2,
    /// Signed 2-bit integers, packed four to a byte.
    Int2,
    /// Signed 4-bit integers, packed two to a byte (low nibble first).
    Int4,
    /// Unsigned 4-bit integers, packed two to a byte (low nibble first).
    UInt4,
    /// Signed 8-bit integer.
    Int8,
    /// Unsigned 8-bit integer.
    UInt8,
    /// Signed 16-bit integer.
    Int16,
    /// Unsigned 16-bit integer.
    UInt16,
    /// Signed 32-bit integer.
    Int32,
    /// Unsigned 32-bit integer.
    UInt32,
    /// Signed 64-bit integer.
    Int64,
    /// Unsigned 64-bit integer.
    UInt64,
    /// One byte per element, 0 or 1.
    Bool,
    /// Variable-length strings in TFLite's packed string format.
    String,
    /// Two float32 (real, imaginary).
    Complex64,
    /// Two float64 (real, imaginary).
    Complex128,
    /// A handle to a resource (variables, hash tables).
    Resource,
    /// A handle to a variant value (tensor lists).
    Variant,
}

impl DType {
    /// Every dtype, in a fixed order (useful for tables and counts).
    pub const ALL: [DType; 23] = [
        DType::Float32,
        DType::Float16,
        DType::BFloat16,
        DType::Float64,
        DType::Float8E4M3FN,
        DType::Float8E5M2,
        DType::Int2,
        DType::Int4,
        DType::UInt4,
        DType::Int8,
        DType::UInt8,
        DType::Int16,
        DType::UInt16,
        DType::Int32,
        DType::UInt32,
        DType::Int64,
        DType::UInt64,
        DType::Bool,
        DType::String,
        DType::Complex64,
        DType::Complex128,
        DType::Resource,
        DType::Variant,
    ];

    /// Lower-case name as numpy and the CLI spell it (`float32`, `int8`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::Float32 => "float32",
            DType::Float16 => "float16",
            DType::BFloat16 => "bfloat16",
            DType::Float64 => "float64",
            DType::Float8E4M3FN => "float8_e4m3fn",
            DType::Float8E5M2 => "float8_e5m2",
            DType::Int2 => "int2",
            DType::Int4 => "int4",
            DType::UInt4 => "uint4",
            DType::Int8 => "int8",
            DType::UInt8 => "uint8",
            DType::Int16 => "int16",
            DType::UInt16 => "uint16",
            DType::Int32 => "int32",
            DType::UInt32 => "uint32",
            DType::Int64 => "int64",
            DType::UInt64 => "uint64",
            DType::Bool => "bool",
            DType::String => "string",
            DType::Complex64 => "complex64",
            DType::Complex128 => "complex128",
            DType::Resource => "resource",
            DType::Variant => "variant",
        }
    }

    /// Bits one element occupies in a dense buffer, or `None` where elements have no fixed size
    /// (strings, resources, variants).
    pub fn bit_width(self) -> Option<u32> {
        Some(match self {
            DType::Int2 => 2,
            DType::Int4 | DType::UInt4 => 4,
            DType::Int8 | DType::UInt8 | DType::Bool => 8,
            DType::Float8E4M3FN | DType::Float8E5M2 => 8,
            DType::Float16 | DType::BFloat16 | DType::Int16 | DType::UInt16 => 16,
            DType::Float32 | DType::Int32 | DType::UInt32 => 32,
            DType::Float64 | DType::Int64 | DType::UInt64 | DType::Complex64 => 64,
            DType::Complex128 => 128,
            DType::String | DType::Resource | DType::Variant => return None,
        })
    }

    /// Bytes a dense buffer of `elements` elements takes (sub-byte types are packed and rounded
    /// up to whole bytes), or `None` for variable-size types or on overflow.
    pub fn dense_byte_len(self, elements: usize) -> Option<usize> {
        let bits = elements.checked_mul(self.bit_width()? as usize)?;
        Some(bits.div_ceil(8))
    }

    /// True for the floating-point types.
    pub fn is_float(self) -> bool {
        matches!(
            self,
            DType::Float32
                | DType::Float16
                | DType::BFloat16
                | DType::Float64
                | DType::Float8E4M3FN
                | DType::Float8E5M2
        )
    }

    /// True for the integer types a quantized tensor can use (`q` in `scale * (q - zero_point)`).
    pub fn is_quantizable_integer(self) -> bool {
        matches!(
            self,
            DType::Int2
                | DType::Int4
                | DType::UInt4
                | DType::Int8
                | DType::UInt8
                | DType::Int16
                | DType::UInt16
                | DType::Int32
                | DType::Int64
        )
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_byte_len_packs_sub_byte_types() {
        assert_eq!(DType::Int4.dense_byte_len(3), Some(2));
        assert_eq!(DType::Int2.dense_byte_len(5), Some(2));
        assert_eq!(DType::Float32.dense_byte_len(10), Some(40));
        assert_eq!(DType::String.dense_byte_len(1), None);
        assert_eq!(DType::Float64.dense_byte_len(usize::MAX), None);
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = DType::ALL.iter().map(|d| d.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DType::ALL.len());
    }
}
