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
//!
//! A fully connected layer, `out = clamp(bias + x * W^T)`, on the best kernel of this CPU:
//!
//! ```
//! use octet_linalg::Isa;
//! use octet_linalg::frame::gemm::{ASource, RowOffsets};
//! use octet_linalg::frame::gemm_f32::{F32Clamp, PackedF32Gemm};
//!
//! # fn main() -> Result<(), octet_linalg::LinalgError> {
//! // Two output units over three inputs, packed once (at prepare time in the runtime).
//! let weights = [1.0, 2.0, 3.0, -1.0, 0.5, 0.0];
//! let bias = [0.5, -1.0];
//! let gemm = PackedF32Gemm::new(Isa::detect(), &weights, Some(&bias), [2, 1, 3], F32Clamp::NONE)?;
//!
//! // Two rows of input, each a run of three values.
//! let x = [1.0, 1.0, 1.0, 2.0, 0.0, -2.0];
//! let a = ASource { data: &x, zero: gemm.zero(), rows: RowOffsets::Dense { stride: 3 } };
//! let mut out = [0.0f32; 4];
//! gemm.run(&a, 0..2, &mut out, 2)?;
//! assert_eq!(out, [6.5, -1.5, -3.5, -3.0]);
//! # Ok(()) }
//! ```

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
