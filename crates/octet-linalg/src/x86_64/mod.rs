//! x86-64 micro-kernels: AVX2+FMA, AVX-512 and AVX-512 VNNI. The only place in octet with
//! `unsafe` code: `#[target_feature]` functions and raw-pointer loads and stores, each behind a
//! safe entry point that checks its tile first, and handed out only when the CPU supports the
//! instruction set (the registries below filter on [`Isa::is_supported`](crate::Isa)).

/// Marks the branch that calls it as unlikely (a call to a `#[cold]` function does; the
/// standard library's `cold_path` needs a newer compiler than our MSRV).
#[cold]
#[inline]
fn cold_path() {}

mod f32_gemm;
mod q_gemm_avx2;
mod q_gemm_avx512;

use crate::frame::gemm_f32::F32GemmUkernel;
use crate::frame::gemm_q::{QConvertKernels, QGemmUkernel};

/// The float GEMM kernels of this architecture.
pub(crate) fn f32_gemm_ukernels() -> Vec<F32GemmUkernel> {
    f32_gemm::UKERNELS.to_vec()
}

mod depthwise_f32;
mod depthwise_q8;
pub(crate) mod pool_q8;
mod requant;
#[cfg(test)]
pub(crate) use depthwise_q8::set_dot4_general;

/// The float depthwise kernels of this architecture.
pub(crate) fn f32_dw_ukernels() -> Vec<crate::frame::depthwise::F32DwUkernel> {
    depthwise_f32::UKERNELS.to_vec()
}

/// The 8-bit depthwise kernels of this architecture.
pub(crate) fn q8_dw_ukernels() -> Vec<crate::frame::depthwise::Q8DwUkernel> {
    depthwise_q8::UKERNELS.to_vec()
}
pub(crate) mod elementwise;
/// The quantized GEMM kernels of this architecture.
pub(crate) fn q_gemm_ukernels() -> Vec<QGemmUkernel> {
    let mut all = q_gemm_avx2::UKERNELS.to_vec();
    all.extend(q_gemm_avx512::UKERNELS);
    all
}

/// The quantized GEMM input conversions of this architecture.
pub(crate) fn q_convert_kernels() -> Vec<QConvertKernels> {
    vec![q_gemm_avx2::CONVERT, q_gemm_avx512::CONVERT]
}

/// [`offsets_end`](crate::frame::gemm) with AVX2 (`vpmaxud`), `None` without AVX2.
pub(crate) fn offsets_end(offsets: &[u32]) -> Option<u32> {
    if crate::Isa::Avx2.is_supported() {
        // SAFETY: AVX2 is supported (checked just above).
        Some(unsafe { q_gemm_avx2::offsets_end(offsets) })
    } else {
        None
    }
}
