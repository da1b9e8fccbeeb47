//! x86-64 micro-kernels: AVX2+FMA, AVX-512 and AVX-512 VNNI. The only place in octet with
//! `unsafe` code: `#[target_feature]` functions and raw-pointer loads and stores, each behind a
//! safe entry point that checks its tile first, and handed out only when the CPU supports the
//! instruction set (the registries below filter on [`Isa::is_supported`](crate::Isa)).

/// Marks the branch that calls it as unlikely (a call to a `#[cold]` function does; the
/// standard library's `cold_path` needs a newer compiler than our MSRV).
#[cold]
#[inline]
fn cold_path() {}

use std::arch::x86_64::{
    __m512i, _mm512_loadu_si512, _mm512_mask_blend_epi8, _mm512_max_epi8, _mm512_max_epu8,
    _mm512_min_epi8, _mm512_min_epu8, _mm512_movepi8_mask, _mm512_permutex2var_epi8,
};

/// Clamps 64 bytes to `[lo, hi]`, compared as int8 when `signed`, else as uint8.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn clamp_bytes_512(v: __m512i, lo: __m512i, hi: __m512i, signed: bool) -> __m512i {
    if signed {
        _mm512_min_epi8(_mm512_max_epi8(v, lo), hi)
    } else {
        _mm512_min_epu8(_mm512_max_epu8(v, lo), hi)
    }
}

/// A 256-entry byte table in four registers, for [`lookup_bytes_vbmi`].
#[inline]
#[target_feature(enable = "avx512f")]
fn load_table_512(table: &[u8; 256]) -> [__m512i; 4] {
    let t = table.as_ptr();
    // SAFETY: the table holds 256 bytes, read as four unaligned 64-byte vectors.
    unsafe {
        [
            _mm512_loadu_si512(t.cast()),
            _mm512_loadu_si512(t.add(64).cast()),
            _mm512_loadu_si512(t.add(128).cast()),
            _mm512_loadu_si512(t.add(192).cast()),
        ]
    }
}

/// Looks 64 bytes up in a 256-entry byte table held in four registers: `vpermi2b` looks up
/// either half (7 index bits) and the index's top bit picks the half.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
fn lookup_bytes_vbmi(table: &[__m512i; 4], index: __m512i) -> __m512i {
    let [t0, t1, t2, t3] = *table;
    let low = _mm512_permutex2var_epi8(t0, index, t1);
    let high = _mm512_permutex2var_epi8(t2, index, t3);
    _mm512_mask_blend_epi8(_mm512_movepi8_mask(index), low, high)
}

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
