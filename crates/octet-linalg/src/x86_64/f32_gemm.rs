//! Float GEMM micro-kernels: `MR` rows times `NV` vectors of columns, FMA with broadcast A.
//!
//! The accumulators (`MR * NV` vectors) stay in registers for a whole block of columns: per
//! `k`, `NV` weight vectors are loaded and each row's A element is broadcast into `NV` FMAs.

use std::arch::x86_64::*;

use crate::frame::gemm::{Tile, UkernelInfo};
use crate::frame::gemm_f32::{F32Clamp, F32Epilogue, F32GemmUkernel};
use crate::frame::window::PAD;
use crate::{Isa, LinalgError};

/// Generates a safe entry point, its row splitter and its `#[target_feature]` body for one
/// vector width.
macro_rules! f32_gemm_kernel {
    (
        $entry:ident, $rows:ident, $body:ident, $feature:literal, $lanes:literal, $vec:ty,
        $w:ty, $wload:ident, $load:ident, $set1:ident, $fmadd:ident, $add:ident, $max:ident,
        $min:ident, $store:ident, $store_partial:ident, $prelu:ident
    ) => {
        /// Safe entry point: checks the tile, then runs the SIMD body.
        fn $entry<const MR: usize, const NV: usize>(
            tile: &Tile<'_, f32, $w, f32>,
            clamp: F32Clamp,
            epilogue: F32Epilogue<'_>,
            out: &mut [f32],
            out_stride: usize,
        ) -> Result<(), LinalgError> {
            tile.check(NV * $lanes, 1, out.len(), out_stride)?;
            epilogue.check(tile.m, tile.n, NV * $lanes, out_stride)?;
            // SAFETY: `check` proved that every row run (offset + kc) lies in `input`, the zero
            // row holds kc elements, the packed blocks and bias cover ceil(n / nr) blocks, and
            // m rows of n columns at out_stride fit in `out`; the epilogue's check that its
            // slopes cover the padded blocks and its operand m rows of n columns at
            // out_stride; this kernel is only handed out when the CPU supports its instruction
            // set.
            unsafe { $rows::<MR, NV>(tile, clamp, &epilogue, out.as_mut_ptr(), out_stride) };
            Ok(())
        }

        /// Runs the tile's `m` rows `MR` at a time, the rest in calls of 4, 2 and 1 rows.
        ///
        /// # Safety
        /// The tile must have passed the entry point's checks.
        #[target_feature(enable = $feature)]
        unsafe fn $rows<const MR: usize, const NV: usize>(
            tile: &Tile<'_, f32, $w, f32>,
            clamp: F32Clamp,
            epilogue: &F32Epilogue<'_>,
            out: *mut f32,
            out_stride: usize,
        ) {
            // SAFETY: forwarded from the caller; every call covers rows below `m`.
            unsafe {
                let m = tile.m;
                let mut row = 0;
                while m - row >= MR {
                    $body::<MR, NV>(tile, row, clamp, epilogue, out, out_stride);
                    row += MR;
                }
                while m - row >= 4 {
                    $body::<4, NV>(tile, row, clamp, epilogue, out, out_stride);
                    row += 4;
                }
                if m - row >= 2 {
                    $body::<2, NV>(tile, row, clamp, epilogue, out, out_stride);
                    row += 2;
                }
                if m - row >= 1 {
                    $body::<1, NV>(tile, row, clamp, epilogue, out, out_stride);
                }
            }
        }

        /// Rows `row0..row0 + R` of the tile, every column block.
        ///
        /// # Safety
        /// The tile must have passed the entry point's checks, and `row0 + R <= tile.m`.
        #[target_feature(enable = $feature)]
        unsafe fn $body<const R: usize, const NV: usize>(
            tile: &Tile<'_, f32, $w, f32>,
            row0: usize,
            clamp: F32Clamp,
            epilogue: &F32Epilogue<'_>,
            out: *mut f32,
            out_stride: usize,
        ) {
            const { assert!(R >= 1 && NV >= 1) };
            // SAFETY: the entry point checked the tile (see there): every pointer formed below
            // stays inside the slice it was derived from.
            unsafe {
                let nr = NV * $lanes;
                let (ks, kc, n) = (tile.ks, tile.kc, tile.n);
                let vmin = $set1(clamp.min);
                let vmax = $set1(clamp.max);
                let mut weights = tile.weights.as_ptr();
                let mut first = 0;
                while first < n {
                    let bias = tile.bias.as_ptr().add(first);
                    // The sum starts at 0 and the bias comes last, as in TFLite's reference
                    // kernels (`total + bias`): the same order of additions.
                    let mut acc: [[$vec; NV]; R] = [[$set1(0.0); NV]; R];
                    for t in 0..ks {
                        let mut a = [tile.zero.as_ptr(); R];
                        for (r, a) in a.iter_mut().enumerate() {
                            let offset = *tile.offsets.get_unchecked((row0 + r) * ks + t);
                            if offset != PAD {
                                *a = tile.input.as_ptr().add(offset as usize);
                            }
                        }
                        for k in 0..kc {
                            let mut w = [$set1(0.0); NV];
                            for (v, w) in w.iter_mut().enumerate() {
                                *w = $wload(weights.add(v * $lanes));
                            }
                            for r in 0..R {
                                let x = $set1(*a[r].add(k));
                                for v in 0..NV {
                                    acc[r][v] = $fmadd(x, w[v], acc[r][v]);
                                }
                            }
                            weights = weights.add(nr);
                        }
                    }
                    // min(max(x, lo), hi) with NaN passing through: max/min return their second
                    // operand when either is NaN. Clamped in registers, then stored.
                    // Constant indices throughout, so that `acc` stays in registers.
                    for v in 0..NV {
                        let b = $load(bias.add(v * $lanes));
                        for r in 0..R {
                            acc[r][v] = $min(vmax, $max(vmin, $add(acc[r][v], b)));
                        }
                    }
                    let cols = nr.min(n - first);
                    // The fused epilogue, in registers (with an ADD, a partial block gets it after
                    // the store, element by element).
                    match *epilogue {
                        F32Epilogue::None => {}
                        F32Epilogue::Prelu { alpha } => {
                            for v in 0..NV {
                                let a = $load(alpha.as_ptr().add(first + v * $lanes));
                                for r in 0..R {
                                    acc[r][v] = $prelu(acc[r][v], a);
                                }
                            }
                        }
                        F32Epilogue::Add { other, clamp }
                        | F32Epilogue::AddPrelu { other, clamp, .. }
                            if cols == nr =>
                        {
                            let (lo, hi) = ($set1(clamp.min), $set1(clamp.max));
                            for r in 0..R {
                                let o = other.as_ptr().add((row0 + r) * out_stride + first);
                                for v in 0..NV {
                                    let y = $add(acc[r][v], $load(o.add(v * $lanes)));
                                    acc[r][v] = $min(hi, $max(lo, y));
                                }
                            }
                            if let F32Epilogue::AddPrelu { alpha, .. } = *epilogue {
                                for v in 0..NV {
                                    let a = $load(alpha.as_ptr().add(first + v * $lanes));
                                    for r in 0..R {
                                        acc[r][v] = $prelu(acc[r][v], a);
                                    }
                                }
                            }
                        }
                        F32Epilogue::Add { .. } | F32Epilogue::AddPrelu { .. } => {}
                    }
                    if cols == nr {
                        for r in 0..R {
                            let row = out.add((row0 + r) * out_stride + first);
                            for v in 0..NV {
                                $store(row.add(v * $lanes), acc[r][v]);
                            }
                        }
                    } else {
                        let mut spilled = [[$set1(0.0); NV]; R];
                        for r in 0..R {
                            for v in 0..NV {
                                spilled[r][v] = acc[r][v];
                            }
                        }
                        for (r, acc) in spilled.iter().enumerate() {
                            let row = out.add((row0 + r) * out_stride + first);
                            for (v, &y) in acc.iter().enumerate() {
                                let start = v * $lanes;
                                if start >= cols {
                                    break;
                                }
                                if cols - start >= $lanes {
                                    $store(row.add(start), y);
                                } else {
                                    $store_partial(row.add(start), y, cols - start);
                                }
                            }
                            if let F32Epilogue::Add { .. } | F32Epilogue::AddPrelu { .. } =
                                *epilogue
                            {
                                for c in 0..cols {
                                    let y = row.add(c);
                                    *y = epilogue.apply(*y, row0 + r, first + c, out_stride);
                                }
                            }
                        }
                    }
                    first += nr;
                }
            }
        }
    };
}

/// Loads 16 binary16 weights widened to `f32` (exactly).
///
/// # Safety
/// 16 elements must be readable at `src`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load_f16_512(src: *const u16) -> __m512 {
    // SAFETY: the caller guarantees 32 readable bytes.
    unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(src.cast())) }
}

/// PRELU of 16 lanes: `y >= 0 ? y : y * a`, as the scalar form computes it (the product
/// rounded once; NaN compares false and gives the product, NaN).
#[inline]
#[target_feature(enable = "avx512f")]
fn prelu_512(y: __m512, a: __m512) -> __m512 {
    let scaled = _mm512_mul_ps(y, a);
    let non_negative = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(y, _mm512_setzero_ps());
    _mm512_mask_blend_ps(non_negative, scaled, y)
}

/// PRELU of 8 lanes (see [`prelu_512`]).
#[inline]
#[target_feature(enable = "avx2")]
fn prelu_256(y: __m256, a: __m256) -> __m256 {
    let scaled = _mm256_mul_ps(y, a);
    let non_negative = _mm256_cmp_ps::<_CMP_GE_OQ>(y, _mm256_setzero_ps());
    _mm256_blendv_ps(scaled, y, non_negative)
}

/// Stores the first `count` (< 16) lanes.
#[target_feature(enable = "avx512f")]
unsafe fn store_partial_512(dst: *mut f32, v: __m512, count: usize) {
    let mask: __mmask16 = ((1u32 << count) - 1) as __mmask16;
    // SAFETY: the caller guarantees `count` writable elements at `dst`; masked-off lanes are
    // not accessed.
    unsafe { _mm512_mask_storeu_ps(dst, mask, v) };
}

/// Stores the first `count` (< 8) lanes.
#[target_feature(enable = "avx2")]
unsafe fn store_partial_256(dst: *mut f32, v: __m256, count: usize) {
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds 8 elements; the caller guarantees `count` (< 8) writable elements
    // at `dst`.
    unsafe {
        _mm256_storeu_ps(lanes.as_mut_ptr(), v);
        std::ptr::copy_nonoverlapping(lanes.as_ptr(), dst, count);
    }
}

f32_gemm_kernel!(
    entry_avx512,
    rows_avx512,
    body_avx512,
    "avx512f",
    16,
    __m512,
    f32,
    _mm512_loadu_ps,
    _mm512_loadu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_add_ps,
    _mm512_max_ps,
    _mm512_min_ps,
    _mm512_storeu_ps,
    store_partial_512,
    prelu_512
);

f32_gemm_kernel!(
    entry_avx512_f16,
    rows_avx512_f16,
    body_avx512_f16,
    "avx512f",
    16,
    __m512,
    u16,
    load_f16_512,
    _mm512_loadu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_add_ps,
    _mm512_max_ps,
    _mm512_min_ps,
    _mm512_storeu_ps,
    store_partial_512,
    prelu_512
);

f32_gemm_kernel!(
    entry_avx2,
    rows_avx2,
    body_avx2,
    "avx2,fma",
    8,
    __m256,
    f32,
    _mm256_loadu_ps,
    _mm256_loadu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_add_ps,
    _mm256_max_ps,
    _mm256_min_ps,
    _mm256_storeu_ps,
    store_partial_256,
    prelu_256
);

const fn info(isa: Isa, name: &'static str, mr: usize, nr: usize) -> UkernelInfo {
    UkernelInfo {
        isa,
        name,
        mr,
        nr,
        kr: 1,
    }
}

/// Tile shapes chosen with `benches/gemm_shapes.rs` (14x32 and 6x64 run AVX-512's two FMA
/// ports near their peak; 12x16 serves 16 columns; AVX2's 6x16 and 6x8 likewise).
pub(super) const UKERNELS: [F32GemmUkernel; 5] = [
    F32GemmUkernel::new(info(Isa::Avx2, "f32 6x16 avx2", 6, 16), entry_avx2::<6, 2>),
    F32GemmUkernel::new(info(Isa::Avx2, "f32 6x8 avx2", 6, 8), entry_avx2::<6, 1>),
    F32GemmUkernel::with_f16(
        info(Isa::Avx512, "f32 14x32 avx512", 14, 32),
        entry_avx512::<14, 2>,
        entry_avx512_f16::<14, 2>,
    ),
    F32GemmUkernel::with_f16(
        info(Isa::Avx512, "f32 6x64 avx512", 6, 64),
        entry_avx512::<6, 4>,
        entry_avx512_f16::<6, 4>,
    ),
    F32GemmUkernel::with_f16(
        info(Isa::Avx512, "f32 12x16 avx512", 12, 16),
        entry_avx512::<12, 1>,
        entry_avx512_f16::<12, 1>,
    ),
];
