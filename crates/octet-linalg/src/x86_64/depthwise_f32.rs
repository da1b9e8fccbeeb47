//! Float depthwise micro-kernels: one vector of channels per block, `P` output pixels at a time.
//!
//! Per block the tap weights are loaded once (kept in registers when they fit) and the segment's
//! pixels are walked `P` at a time, each pixel an independent chain over the taps, so the
//! latency is hidden and each tap costs one load (the input), a multiplication and an addition.
//! The arithmetic is TFLite's reference order exactly (products rounded, then summed from zero in
//! tap order, the bias added last; no fused multiply-add), so the results are bit for bit the
//! reference's and the generic kernel's (padding taps add `0 * w`). Taps are unrolled
//! for the specialised tap counts (`KS` > 0); `KS == 0` serves any filter. The last, partial
//! block of channels uses masked loads and stores.

use std::arch::x86_64::*;

use crate::frame::depthwise::{DwTile, DwUkernelInfo, F32DwUkernel};
use crate::frame::gemm_f32::F32Clamp;
use crate::frame::window::PAD;
use crate::{Isa, LinalgError};

/// The largest unrolled tap count.
const MAX_KS: usize = 25;

macro_rules! f32_dw_kernel {
    (
        $entry:ident, $body:ident, $block:ident, $feature:literal, $lanes:literal, $vec:ty,
        $mask:ty, $make_mask:ident, $load:ident, $load_mask:ident, $set1:ident, $mul:ident,
        $add:ident, $max:ident, $min:ident, $store:ident, $store_mask:ident
    ) => {
        /// Safe entry point: checks the tile, then runs the SIMD body.
        fn $entry<const KS: usize, const P: usize>(
            tile: &DwTile<'_, f32, f32, f32>,
            clamp: F32Clamp,
            out: &mut [f32],
        ) -> Result<(), LinalgError> {
            let ks = tile.taps.len();
            if (KS != 0 && ks != KS) || ks > u32::MAX as usize {
                return Err(LinalgError::mismatch("depthwise tile: wrong tap count"));
            }
            tile.check($lanes, ks, out.len())?;
            // SAFETY: `check` proved that every tap of every pixel (offset + (pixels - 1) * step
            // + channels) lies in `input`, the zero row holds `channels` elements, the packed
            // weights and bias cover every block, and `out` holds pixels * channels elements;
            // the kernel is only handed out when the CPU supports its instruction set.
            unsafe { $body::<KS, P>(tile, clamp, out.as_mut_ptr()) };
            Ok(())
        }

        #[target_feature(enable = $feature)]
        unsafe fn $body<const KS: usize, const P: usize>(
            tile: &DwTile<'_, f32, f32, f32>,
            clamp: F32Clamp,
            out: *mut f32,
        ) {
            const { assert!(P >= 1 && KS <= MAX_KS) };
            // SAFETY: see the entry point; every pointer below is derived from a checked slice
            // and stays inside it (channel offsets below `channels`, pixel offsets below
            // `pixels * step`, weights within `blocks * ks * lanes`).
            unsafe {
                let ks = tile.taps.len();
                let c = tile.channels;
                let mut ptrs = [tile.zero.as_ptr(); MAX_KS];
                let mut steps = [0usize; MAX_KS];
                if KS != 0 {
                    for t in 0..KS {
                        let offset = *tile.taps.get_unchecked(t);
                        if offset != PAD {
                            ptrs[t] = tile.input.as_ptr().add(offset as usize);
                            steps[t] = tile.step;
                        }
                    }
                }
                let full = c / $lanes;
                for block in 0..c.div_ceil($lanes) {
                    let first = block * $lanes;
                    let count = (c - first).min($lanes);
                    let weights = tile.weights.as_ptr().add(block * ks * $lanes);
                    let bias = $load(tile.bias.as_ptr().add(first));
                    if block < full {
                        $block::<KS, P, false>(
                            tile, &ptrs, &steps, weights, bias, clamp, out, first, count,
                        );
                    } else {
                        $block::<KS, P, true>(
                            tile, &ptrs, &steps, weights, bias, clamp, out, first, count,
                        );
                    }
                }
            }
        }

        /// One block of `count` channels from `first`, every pixel; `TAIL` uses masked loads
        /// and stores.
        #[target_feature(enable = $feature)]
        #[allow(clippy::too_many_arguments)]
        #[inline]
        unsafe fn $block<const KS: usize, const P: usize, const TAIL: bool>(
            tile: &DwTile<'_, f32, f32, f32>,
            ptrs: &[*const f32; MAX_KS],
            steps: &[usize; MAX_KS],
            weights: *const f32,
            bias: $vec,
            clamp: F32Clamp,
            out: *mut f32,
            first: usize,
            count: usize,
        ) {
            // SAFETY: as in the body; masked lanes beyond `count` are not accessed.
            unsafe {
                let mask: $mask = $make_mask(count);
                let load = |p: *const f32| {
                    if TAIL { $load_mask(p, mask) } else { $load(p) }
                };
                let vmin = $set1(clamp.min);
                let vmax = $set1(clamp.max);
                let c = tile.channels;
                let ks = tile.taps.len();
                let mut w = [$set1(0.0); MAX_KS];
                if KS != 0 {
                    for t in 0..KS {
                        w[t] = $load(weights.add(t * $lanes));
                    }
                }
                // The address tap `t` of pixel `p` reads (channel `first`).
                let tap = |t: usize, p: usize| -> *const f32 {
                    if KS != 0 {
                        ptrs[t].add(first + p * steps[t])
                    } else {
                        let offset = *tile.taps.get_unchecked(t);
                        if offset == PAD {
                            tile.zero.as_ptr().add(first)
                        } else {
                            tile.input
                                .as_ptr()
                                .add(offset as usize + p * tile.step + first)
                        }
                    }
                };
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
                    if KS != 0 {
                        for t in 0..KS {
                            for (j, acc) in acc.iter_mut().enumerate() {
                                *acc = $add(*acc, $mul(load(tap(t, p + j)), w[t]));
                            }
                        }
                    } else {
                        for t in 0..ks {
                            let wt = $load(weights.add(t * $lanes));
                            for (j, acc) in acc.iter_mut().enumerate() {
                                *acc = $add(*acc, $mul(load(tap(t, p + j)), wt));
                            }
                        }
                    }
                    for (j, &acc) in acc.iter().enumerate() {
                        finish(acc, p + j);
                    }
                    p += P;
                }
                while p < tile.pixels {
                    let mut acc = $set1(0.0);
                    if KS != 0 {
                        for t in 0..KS {
                            acc = $add(acc, $mul(load(tap(t, p)), w[t]));
                        }
                    } else {
                        for t in 0..ks {
                            acc = $add(acc, $mul(load(tap(t, p)), $load(weights.add(t * $lanes))));
                        }
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

pub(super) const UKERNELS: [F32DwUkernel; 6] = [
    F32DwUkernel::new(
        info(Isa::Avx2, "f32 dw 8 3x3 avx2", 8, 9),
        entry_avx2::<9, 4>,
    ),
    F32DwUkernel::new(
        info(Isa::Avx2, "f32 dw 8 5x5 avx2", 8, 25),
        entry_avx2::<25, 4>,
    ),
    F32DwUkernel::new(info(Isa::Avx2, "f32 dw 8 avx2", 8, 0), entry_avx2::<0, 4>),
    F32DwUkernel::new(
        info(Isa::Avx512, "f32 dw 16 3x3 avx512", 16, 9),
        entry_avx512::<9, 8>,
    ),
    F32DwUkernel::new(
        info(Isa::Avx512, "f32 dw 16 5x5 avx512", 16, 25),
        entry_avx512::<25, 8>,
    ),
    F32DwUkernel::new(
        info(Isa::Avx512, "f32 dw 16 avx512", 16, 0),
        entry_avx512::<0, 8>,
    ),
];
