//! The version a quantized operator records: the spec table's versions ([`crate::spec`], as
//! TFLite's `op_version.cc` assigns them, checked against what TensorFlow's converter writes
//! for the fixtures in `models/ops`), chosen for the activation type.

use octet_core::{DType, Op, Operator};

/// The version `operator` needs once quantized with activations of `act` (int8, uint8 or
/// int16): the larger of its float version (which records features such as half-pixel centers)
/// and the version that introduced the integer kernel.
pub fn quantized_version(operator: &Operator, act: DType, has_bias: bool) -> i32 {
    let versions = crate::spec::spec(&operator.op, has_bias).versions;
    let (v8, vu8, v16) = (versions.int8, versions.uint8, versions.int16);
    // TensorFlow's 16x8 quantizer writes the int8 versions for most ops (see the int16x8
    // fixtures in models/ops), which LiteRT accepts; `v16` is op_version.cc's int16 version.
    let v = match (act, &operator.op) {
        // Where TensorFlow's 16x8 output differs from its int8 versions.
        (DType::Int16, Op::LeakyRelu { .. }) => v16,
        (DType::Int16, Op::TransposeConv(_)) => 3,
        (DType::Int16, Op::Unpack(_)) => 1,
        (DType::Int8 | DType::Int16, _) => v8,
        _ => vu8,
    };
    operator.version.max(v)
}
