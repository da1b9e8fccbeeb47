//! The generic implementation of every micro-kernel, in plain Rust: what runs on an
//! architecture without kernels of its own, and the twin every per-architecture kernel is
//! tested against.

pub(crate) mod depthwise;
pub(crate) mod elementwise;
pub(crate) mod gemm_f32;
pub(crate) mod gemm_q;
pub(crate) mod pool;
