//! octet's compute layer: the micro-kernels under octet-runtime's operators.
//!
//! Every kernel family (float and integer GEMM over packed weights with a fused output stage,
//! depthwise convolution over channel blocks, element-wise and lookup-table kernels, pooling,
//! conversions) has a generic implementation in plain Rust and per-architecture SIMD
//! implementations, chosen once, when a model is prepared, from what the CPU supports
//! ([`Isa::detect`]). The integer kernels reproduce TFLite's reference arithmetic bit for bit
//! (`octet_core::fixed_point` defines it; one test battery compares every implementation with
//! the generic one), so choosing a faster kernel never changes a result.
//!
//! The layout follows tract-linalg: [`frame`] holds the operand layouts, packing and drivers;
//! `generic` the plain-Rust twins; `x86_64` the SIMD kernels, the only `unsafe` code in octet.

mod error;
pub mod frame;
mod generic;
mod isa;
#[allow(unsafe_code)]
mod pool;
pub mod threads;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86_64;

pub use error::LinalgError;
pub use isa::Isa;
pub use threads::Threads;

#[cfg(test)]
mod battery;
#[cfg(test)]
mod battery_depthwise;
#[cfg(test)]
mod battery_elementwise;
#[cfg(test)]
mod battery_gemm_f32;
#[cfg(test)]
mod battery_gemm_q;
