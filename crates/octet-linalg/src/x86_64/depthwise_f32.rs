//! Float depthwise micro-kernels: one vector of channels per block, `P` output pixels at a time.
//!
//! Per segment the in-image taps are listed once (padding taps add nothing and are skipped, as
//! the reference skips them); per block of channels the pixels are walked `P` at a time, each
//! pixel an independent chain over the taps (hiding the latency), each tap's weight loaded once
//! per `P` pixels and its input pointer advanced by the pixel step: one input load, a
//! multiplication and an addition per tap and pixel. The arithmetic is TFLite's reference order
//! exactly (products rounded, then summed from zero in tap order, the bias added last; no fused
//! multiply-add), so the results are bit for bit the reference's and the generic kernel's.
//!
//! The last, partial block of channels uses masked loads and stores. (Kernels specialised for
//! 3x3 and 5x5 with unrolled taps and register-resident weights measured slower: the weights
//! spilled and the unrolled addressing cost more than a weight load per `P` pixels.)

use std::arch::x86_64::*;

use crate::frame::depthwise::{DwTile, DwUkernelInfo, F32DwUkernel};
use crate::frame::gemm_f32::F32Clamp;
use crate::frame::window::PAD;
use crate::{Isa, LinalgError, generic};

/// The most taps a kernel handles itself; larger filters go to the generic twin.
const MAX_TAPS: usize = 64;

macro_rules! f32_dw_kernel {
    (
        $entry:ident, $body:ident, $block:ident, $feature:literal, $lanes:literal, $vec:ty,
        $mask:ty, $make_mask:ident, $load:ident, $load_mask:ident, $set1:ident, $mul:ident,
        $add:ident, $max:ident, $min:ident, $store:ident, $store_mask:ident
    ) => {
        /// Safe entry point: checks the tile, then runs the SIMD body.
        fn $entry<const P: usize>(
            tile: &DwTile<'_, f32, f32, f32>,
            clamp: F32Clamp,
            out: &mut [f32],
        ) -> Result<(), LinalgError> {
            let ks = tile.taps.len();
            if ks > MAX_TAPS {
                return generic::depthwise::f32_dw_cr::<$lanes>(tile, clamp, out);
            }
            tile.check($lanes, ks, out.len())?;
            // SAFETY: `check` proved that every in-image tap of every pixel (offset + (pixels -
            // 1) * step + channels) lies in `input`, the packed weights and bias cover every
            // block, and `out` holds pixels * channels elements; the kernel is only handed out
            // when the CPU supports its instruction set.
            unsafe { $body::<P>(tile, clamp, out.as_mut_ptr()) };
            Ok(())
        }

        #[target_feature(enable = $feature)]
        unsafe fn $body<const P: usize>(
            tile: &DwTile<'_, f32, f32, f32>,
            clamp: F32Clamp,
            out: *mut f32,
        ) {
            const { assert!(P >= 1) };
            // SAFETY: see the entry point; every pointer below is derived from a checked slice
            // and stays inside it (channel offsets below `channels`, pixel offsets below
            // `pixels * step`, weights within `blocks * ks * lanes`).
            unsafe {
                // The in-image taps: padding taps add nothing (the reference skips them).
                let mut ptrs = [tile.input.as_ptr(); MAX_TAPS];
                let mut index = [0usize; MAX_TAPS];
                let mut live = 0;
                for (t, &offset) in tile.taps.iter().enumerate() {
                    if offset != PAD {
                        ptrs[live] = tile.input.as_ptr().add(offset as usize);
                        index[live] = t * $lanes;
                        live += 1;
                    }
                }
                let ks = tile.taps.len();
                let c = tile.channels;
                let full = c / $lanes;
                for block in 0..c.div_ceil($lanes) {
                    let first = block * $lanes;
                    let weights = tile.weights.as_ptr().add(block * ks * $lanes);
                    let bias = $load(tile.bias.as_ptr().add(first));
                    let taps = (&ptrs[..live], &index[..live]);
                    if block < full {
                        $block::<P, false>(tile, taps, weights, bias, clamp, out, first);
                    } else {
                        $block::<P, true>(tile, taps, weights, bias, clamp, out, first);
                    }
                }
            }
        }

        /// One block of channels from `first`, every pixel; `TAIL` (the last, partial block)
        /// uses masked loads and stores.
        #[target_feature(enable = $feature)]
        #[inline]
        unsafe fn $block<const P: usize, const TAIL: bool>(
            tile: &DwTile<'_, f32, f32, f32>,
            (ptrs, index): (&[*const f32], &[usize]),
            weights: *const f32,
            bias: $vec,
            clamp: F32Clamp,
            out: *mut f32,
            first: usize,
        ) {
            // SAFETY: as in the body; masked lanes beyond the channels are not accessed.
            unsafe {
                let c = tile.channels;
                let step = tile.step;
                let mask: $mask = $make_mask((c - first).min($lanes));
                let load = |p: *const f32| {
                    if TAIL { $load_mask(p, mask) } else { $load(p) }
                };
                let vmin = $set1(clamp.min);
                let vmax = $set1(clamp.max);
                let finish = |acc: $vec, p: usize| {
                    let y = $min(vmax, $max(vmin, $add(acc, bias)));
                    let dst = out.add(p * c + first);
                    if TAIL {
                        $store_mask(dst, mask, y)
                    } else {
                        $store(dst, y)
                    }
                };
                let mut p = 0;
                while p + P <= tile.pixels {
                    let mut acc = [$set1(0.0); P];
                    for (&ptr, &w) in ptrs.iter().zip(index) {
                        let w = $load(weights.add(w));
                        let mut x = ptr.add(first + p * step);
                        for acc in acc.iter_mut() {
                            *acc = $add(*acc, $mul(load(x), w));
                            x = x.add(step);
                        }
                    }
                    for (j, &acc) in acc.iter().enumerate() {
                        finish(acc, p + j);
                    }
                    p += P;
                }
                while p < tile.pixels {
                    let mut acc = $set1(0.0);
                    for (&ptr, &w) in ptrs.iter().zip(index) {
                        acc = $add(
                            acc,
                            $mul(load(ptr.add(first + p * step)), $load(weights.add(w))),
                        );
                    }
                    finish(acc, p);
                    p += 1;
                }
            }
        }
    };
}

#[target_feature(enable = "avx512f")]
fn mask_512(count: usize) -> __mmask16 {
    ((1u32 << count) - 1) as __mmask16
}

#[target_feature(enable = "avx512f")]
unsafe fn load_mask_512(p: *const f32, mask: __mmask16) -> __m512 {
    // SAFETY: the caller guarantees the unmasked lanes are readable; masked lanes are not
    // accessed.
    unsafe { _mm512_maskz_loadu_ps(mask, p) }
}

#[target_feature(enable = "avx512f")]
unsafe fn store_mask_512(p: *mut f32, mask: __mmask16, v: __m512) {
    // SAFETY: the caller guarantees the unmasked lanes are writable.
    unsafe { _mm512_mask_storeu_ps(p, mask, v) }
}

#[target_feature(enable = "avx2")]
fn mask_256(count: usize) -> __m256i {
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_cmpgt_epi32(_mm256_set1_epi32(count as i32), lane)
}

#[target_feature(enable = "avx2")]
unsafe fn load_mask_256(p: *const f32, mask: __m256i) -> __m256 {
    // SAFETY: the caller guarantees the unmasked lanes are readable; `vmaskmovps` does not
    // access masked lanes.
    unsafe { _mm256_maskload_ps(p, mask) }
}

#[target_feature(enable = "avx2")]
unsafe fn store_mask_256(p: *mut f32, mask: __m256i, v: __m256) {
    // SAFETY: the caller guarantees the unmasked lanes are writable.
    unsafe { _mm256_maskstore_ps(p, mask, v) }
}

f32_dw_kernel!(
    entry_avx512,
    body_avx512,
    block_avx512,
    "avx512f",
    16,
    __m512,
    __mmask16,
    mask_512,
    _mm512_loadu_ps,
    load_mask_512,
    _mm512_set1_ps,
    _mm512_mul_ps,
    _mm512_add_ps,
    _mm512_max_ps,
    _mm512_min_ps,
    _mm512_storeu_ps,
    store_mask_512
);

f32_dw_kernel!(
    entry_avx2,
    body_avx2,
    block_avx2,
    "avx2,fma",
    8,
    __m256,
    __m256i,
    mask_256,
    _mm256_loadu_ps,
    load_mask_256,
    _mm256_set1_ps,
    _mm256_mul_ps,
    _mm256_add_ps,
    _mm256_max_ps,
    _mm256_min_ps,
    _mm256_storeu_ps,
    store_mask_256
);

const fn info(isa: Isa, name: &'static str, cr: usize, taps: usize) -> DwUkernelInfo {
    DwUkernelInfo {
        isa,
        name,
        cr,
        taps,
    }
}

pub(super) const UKERNELS: [F32DwUkernel; 2] = [
    F32DwUkernel::new(info(Isa::Avx2, "f32 dw 8 avx2", 8, 0), entry_avx2::<8>),
    F32DwUkernel::new(
        info(Isa::Avx512, "f32 dw 16 avx512", 16, 0),
        entry_avx512::<8>,
    ),
];
