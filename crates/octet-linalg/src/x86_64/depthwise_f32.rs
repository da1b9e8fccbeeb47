//! Float depthwise micro-kernels: register tiles of `P` output pixels times `B` blocks of
//! channels (one vector each).
//!
//! Per segment the in-image taps are listed once (padding taps add nothing and are skipped, as
//! the reference skips them). The segment's pixels are taken 8 at a time, then in groups of 4,
//! 2 and 1; each group is computed over `B` blocks of channels at once, `B` chosen so that
//! every group keeps 8 independent sums in flight (8 x 1, 4 x 2, 2 x 4, 1 x 8 on AVX-512): the
//! short segments at image borders and narrow images are not bound by the latency of one chain
//! of additions. Each tap's `B` weight vectors are loaded once per group; per tap and pixel
//! there is one input load and one fused multiply-add. The sum starts at zero, runs over the
//! in-image taps in order with one fused multiply-add each, and the bias comes last: the
//! generic kernel's order exactly (`f32::mul_add`), so every instruction set gives the same
//! bits. (TFLite's reference rounds each product; XNNPACK fuses, as here.)
//!
//! The last, partial block of channels uses masked loads and stores. (Kernels specialised for
//! 3x3 and 5x5 with unrolled taps and register-resident weights measured slower: the weights
//! spilled and the unrolled addressing cost more than a weight load per group. Slabs of
//! channels sized for the level-1 cache, all rows per slab, measured slower too: the strided
//! reads defeat the prefetchers.)

use std::arch::x86_64::*;

use crate::frame::depthwise::{DwTile, DwUkernelInfo, F32DwUkernel};
use crate::frame::gemm_f32::F32Clamp;
use crate::frame::window::PAD;
use crate::{Isa, LinalgError, generic};

/// The most taps a kernel handles itself; larger filters go to the generic twin.
const MAX_TAPS: usize = 64;

macro_rules! f32_dw_kernel {
    (
        $entry:ident, $body:ident, $group:ident, $tile:ident, $feature:literal, $lanes:literal,
        $vec:ty, $mask:ty, $make_mask:ident, $load:ident, $load_mask:ident, $set1:ident,
        $fmadd:ident, $add:ident, $max:ident, $min:ident, $store:ident, $store_mask:ident,
        [$b8:literal, $b4:literal, $b2:literal, $b1:literal]
    ) => {
        /// Safe entry point: checks the tile, then runs the SIMD body.
        fn $entry(
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
            unsafe { $body(tile, clamp, out.as_mut_ptr()) };
            Ok(())
        }

        /// Splits the segment's pixels into groups of 8, 4, 2 and 1, each group computed over
        /// as many channel blocks at once as keep 8 independent sums in flight.
        ///
        /// # Safety
        /// The tile must have passed the entry point's checks.
        #[target_feature(enable = $feature)]
        unsafe fn $body(tile: &DwTile<'_, f32, f32, f32>, clamp: F32Clamp, out: *mut f32) {
            // SAFETY: see the entry point; every group covers pixels below `pixels`.
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
                let taps = Taps {
                    ptrs: &ptrs[..live],
                    index: &index[..live],
                };
                let n = tile.pixels;
                let mut p = 0;
                while n - p >= 8 {
                    $group::<8, $b8>(tile, &taps, clamp, out, p);
                    p += 8;
                }
                if n - p >= 4 {
                    $group::<4, $b4>(tile, &taps, clamp, out, p);
                    p += 4;
                }
                if n - p >= 2 {
                    $group::<2, $b2>(tile, &taps, clamp, out, p);
                    p += 2;
                }
                if n - p >= 1 {
                    $group::<1, $b1>(tile, &taps, clamp, out, p);
                }
            }
        }

        /// Pixels `p0..p0 + P`, every channel: full blocks `B` at a time (the rest in smaller
        /// groups), the last, partial block on its own with masked loads and stores.
        ///
        /// # Safety
        /// The tile must have passed the entry point's checks, and `p0 + P <= pixels`.
        #[target_feature(enable = $feature)]
        unsafe fn $group<const P: usize, const B: usize>(
            tile: &DwTile<'_, f32, f32, f32>,
            taps: &Taps<'_>,
            clamp: F32Clamp,
            out: *mut f32,
            p0: usize,
        ) {
            // SAFETY: forwarded; every call covers blocks below `channels / lanes` (or the
            // partial one).
            unsafe {
                let full = tile.channels / $lanes;
                let mut b = 0;
                while b + B <= full {
                    $tile::<P, B, false>(tile, taps, clamp, out, p0, b);
                    b += B;
                }
                if B > 4 && b + 4 <= full {
                    $tile::<P, 4, false>(tile, taps, clamp, out, p0, b);
                    b += 4;
                }
                if B > 2 && b + 2 <= full {
                    $tile::<P, 2, false>(tile, taps, clamp, out, p0, b);
                    b += 2;
                }
                if B > 1 && b < full {
                    $tile::<P, 1, false>(tile, taps, clamp, out, p0, b);
                }
                if tile.channels % $lanes != 0 {
                    $tile::<P, 1, true>(tile, taps, clamp, out, p0, full);
                }
            }
        }

        /// Pixels `p0..p0 + P` times blocks `block0..block0 + B`: `P * B` independent sums,
        /// each tap's `B` weight vectors loaded once. `TAIL` (the last, partial block, with
        /// `B == 1`) uses masked loads and stores.
        ///
        /// # Safety
        /// The tile must have passed the entry point's checks, `p0 + P <= pixels` and the
        /// blocks must exist.
        #[target_feature(enable = $feature)]
        #[inline]
        unsafe fn $tile<const P: usize, const B: usize, const TAIL: bool>(
            tile: &DwTile<'_, f32, f32, f32>,
            taps: &Taps<'_>,
            clamp: F32Clamp,
            out: *mut f32,
            p0: usize,
            block0: usize,
        ) {
            const { assert!(P >= 1 && B >= 1 && (!TAIL || B == 1)) };
            // SAFETY: as in the body; channel offsets stay below `channels` (masked lanes
            // beyond them are not accessed), pixel offsets below `pixels * step`, weights
            // within `blocks * ks * lanes`.
            unsafe {
                let c = tile.channels;
                let step = tile.step;
                let ks = tile.taps.len();
                let first = block0 * $lanes;
                let mask: $mask = $make_mask(if TAIL { c - first } else { $lanes });
                let weights = tile.weights.as_ptr().add(block0 * ks * $lanes);
                let mut acc = [[$set1(0.0); B]; P];
                for (&ptr, &t) in taps.ptrs.iter().zip(taps.index) {
                    let mut w = [$set1(0.0); B];
                    for (j, w) in w.iter_mut().enumerate() {
                        *w = $load(weights.add(j * ks * $lanes + t));
                    }
                    let x0 = ptr.add(first + p0 * step);
                    for p in 0..P {
                        let x = x0.add(p * step);
                        for j in 0..B {
                            let x = if TAIL {
                                $load_mask(x, mask)
                            } else {
                                $load(x.add(j * $lanes))
                            };
                            acc[p][j] = $fmadd(x, w[j], acc[p][j]);
                        }
                    }
                }
                let vmin = $set1(clamp.min);
                let vmax = $set1(clamp.max);
                for j in 0..B {
                    let bias = $load(tile.bias.as_ptr().add(first + j * $lanes));
                    for p in 0..P {
                        let y = $min(vmax, $max(vmin, $add(acc[p][j], bias)));
                        let dst = out.add((p0 + p) * c + first + j * $lanes);
                        if TAIL {
                            $store_mask(dst, mask, y)
                        } else {
                            $store(dst, y)
                        }
                    }
                }
            }
        }
    };
}

/// The in-image taps of a segment: their first pixel's input pointers and their offsets in a
/// block of packed weights.
struct Taps<'a> {
    ptrs: &'a [*const f32],
    index: &'a [usize],
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
    group_avx512,
    tile_avx512,
    "avx512f",
    16,
    __m512,
    __mmask16,
    mask_512,
    _mm512_loadu_ps,
    load_mask_512,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_add_ps,
    _mm512_max_ps,
    _mm512_min_ps,
    _mm512_storeu_ps,
    store_mask_512,
    [1, 2, 4, 8]
);

f32_dw_kernel!(
    entry_avx2,
    body_avx2,
    group_avx2,
    tile_avx2,
    "avx2,fma",
    8,
    __m256,
    __m256i,
    mask_256,
    _mm256_loadu_ps,
    load_mask_256,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_add_ps,
    _mm256_max_ps,
    _mm256_min_ps,
    _mm256_storeu_ps,
    store_mask_256,
    [1, 2, 4, 4]
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
    F32DwUkernel::new(info(Isa::Avx2, "f32 dw 8 avx2", 8, 0), entry_avx2),
    F32DwUkernel::new(info(Isa::Avx512, "f32 dw 16 avx512", 16, 0), entry_avx512),
];
