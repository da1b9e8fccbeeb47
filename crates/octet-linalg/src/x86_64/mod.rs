//! x86-64 micro-kernels: AVX2+FMA, AVX-512 and AVX-512 VNNI. The only place in octet with
//! `unsafe` code: `#[target_feature]` functions and raw-pointer loads and stores, each behind a
//! safe entry point that checks its tile first, and handed out only when the CPU supports the
//! instruction set (the registries below filter on [`Isa::is_supported`](crate::Isa)).

mod f32_gemm;

use crate::frame::gemm_f32::F32GemmUkernel;

/// The float GEMM kernels of this architecture.
pub(crate) fn f32_gemm_ukernels() -> Vec<F32GemmUkernel> {
    f32_gemm::UKERNELS.to_vec()
}

mod depthwise_f32;
mod depthwise_q8;
mod requant;

/// The float depthwise kernels of this architecture.
pub(crate) fn f32_dw_ukernels() -> Vec<crate::frame::depthwise::F32DwUkernel> {
    depthwise_f32::UKERNELS.to_vec()
}

/// The 8-bit depthwise kernels of this architecture.
pub(crate) fn q8_dw_ukernels() -> Vec<crate::frame::depthwise::Q8DwUkernel> {
    depthwise_q8::UKERNELS.to_vec()
}
pub(crate) mod elementwise;
