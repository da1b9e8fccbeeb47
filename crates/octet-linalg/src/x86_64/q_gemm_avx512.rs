//! Quantized GEMM micro-kernels on AVX-512: `MR` rows times `NV` vectors of 16 columns.
//!
//! Both families read a 4-byte group of A per row and `k` step (four u8 for VNNI, two i16 for
//! the 16-bit kernels), broadcast it to every lane, and combine it with `NV` vectors of packed
//! weights (16 columns x 4 bytes each): `vpdpbusd` (u8 x s8), `vpmaddwd` + `vpaddd` (i16 x i16,
//! AVX-512BW) or `vpdpwssd` (i16 x i16, AVX-512 VNNI). The accumulators stay in registers for a
//! whole block of columns, then go through the output stage and a truncating, masked narrowing
//! store. A tile of fewer than `MR` rows runs as calls of 4, 2 and 1 rows, so no row is
//! computed twice or in vain.

use std::arch::x86_64::*;

use super::requant::{Fixed512, fast_requant_avx512};
use crate::frame::gemm::{Tile, UkernelInfo};
use crate::frame::gemm_q::{
    CheckedStage, OutputStage, QConvertKernels, QGemmUkernel, QIn, QOut, StageRequant,
    check_convert,
};
use crate::frame::window::PAD;
use crate::{Isa, LinalgError};

/// Where a kernel stores its output: a raw pointer of the output's element type.
#[derive(Debug, Clone, Copy)]
pub(super) enum OutPtr {
    I8(*mut i8),
    U8(*mut u8),
    I16(*mut i16),
}

impl OutPtr {
    pub(super) fn new(out: &mut QOut<'_>) -> OutPtr {
        match out {
            QOut::I8(o) => OutPtr::I8(o.as_mut_ptr()),
            QOut::U8(o) => OutPtr::U8(o.as_mut_ptr()),
            QOut::I16(o) => OutPtr::I16(o.as_mut_ptr()),
        }
    }
}

/// The checked float form's operands for 16 columns.
#[derive(Clone, Copy)]
struct Checked512 {
    scale: __m512,
    offset: __m512,
    offset_neg: __m512,
    threshold: __m512i,
    window: __m512,
}

/// The output-stage parameters of one vector of 16 columns, loaded once per block (on the
/// stack: the size difference of the variants costs nothing).
#[derive(Clone, Copy)]
#[allow(clippy::large_enum_variant)]
enum Params512 {
    Fixed {
        fixed: Fixed512,
        checked: Option<Checked512>,
    },
    Double {
        low: __m512d,
        high: __m512d,
    },
}

impl Params512 {
    /// Loads the parameters of columns `first..first + 16`.
    ///
    /// # Safety
    /// The stage's per-column slices must hold at least `first + 16` elements.
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn load(stage: &OutputStage<'_>, first: usize) -> Params512 {
        // SAFETY: the caller guarantees 16 elements from `first` in every slice.
        unsafe {
            let ld = |v: &[i32]| _mm512_loadu_si512(v.as_ptr().add(first).cast());
            match stage.requant {
                StageRequant::Fixed {
                    multiplier,
                    left,
                    right,
                    any_left,
                    checked,
                } => Params512::Fixed {
                    fixed: Fixed512::new(ld(multiplier), ld(left), ld(right), any_left),
                    checked: checked.map(|c| Checked512 {
                        scale: _mm512_loadu_ps(c.scale.as_ptr().add(first)),
                        offset: _mm512_loadu_ps(c.offset.as_ptr().add(first)),
                        offset_neg: _mm512_loadu_ps(c.offset_neg.as_ptr().add(first)),
                        threshold: ld(c.threshold),
                        window: _mm512_set1_ps(c.window),
                    }),
                },
                StageRequant::Double { scale } => Params512::Double {
                    low: _mm512_loadu_pd(scale.as_ptr().add(first)),
                    high: _mm512_loadu_pd(scale.as_ptr().add(first + 8)),
                },
            }
        }
    }
}

/// `round_half_away(p)` in f64 lanes, exactly as `f64::round`.
#[inline]
#[target_feature(enable = "avx512f")]
fn round_half_away_512(p: __m512d) -> __m512d {
    let t = _mm512_roundscale_pd::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(p);
    let d = _mm512_sub_pd(p, t);
    let one = _mm512_set1_pd(1.0);
    let up = _mm512_cmp_pd_mask::<_CMP_GE_OQ>(d, _mm512_set1_pd(0.5));
    let down = _mm512_cmp_pd_mask::<_CMP_LE_OQ>(d, _mm512_set1_pd(-0.5));
    let t = _mm512_mask_add_pd(t, up, t, one);
    _mm512_mask_sub_pd(t, down, t, one)
}

/// The output stage on 16 accumulators: requantize, add the zero point, clamp.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq")]
fn finish_512(
    acc: __m512i,
    p: &Params512,
    zero_point: __m512i,
    lo: __m512i,
    hi: __m512i,
) -> __m512i {
    let scaled = match *p {
        Params512::Fixed { fixed, checked } => {
            if let Some(c) = checked {
                let mut ambiguous = 0;
                let q = fast_requant_avx512(
                    acc,
                    c.scale,
                    c.offset,
                    c.offset_neg,
                    c.threshold,
                    c.window,
                    &mut ambiguous,
                );
                let q = if ambiguous == 0 {
                    // The float form includes the zero point.
                    q
                } else {
                    super::cold_path();
                    _mm512_add_epi32(fixed.apply(acc), zero_point)
                };
                return _mm512_min_epi32(_mm512_max_epi32(q, lo), hi);
            }
            fixed.apply(acc)
        }
        Params512::Double { low, high } => {
            let lo_acc = _mm512_cvtepi32_pd(_mm512_castsi512_si256(acc));
            let hi_acc = _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64::<1>(acc));
            // Out of i32 (and NaN) converts to 0x80000000, as `requantize_double` defines.
            let lo_q = _mm512_cvttpd_epi32(round_half_away_512(_mm512_mul_pd(lo_acc, low)));
            let hi_q = _mm512_cvttpd_epi32(round_half_away_512(_mm512_mul_pd(hi_acc, high)));
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo_q), hi_q)
        }
    };
    _mm512_min_epi32(
        _mm512_max_epi32(_mm512_add_epi32(scaled, zero_point), lo),
        hi,
    )
}

/// Stores the first `count` lanes (at most 16) of `v`, narrowed by truncation, at element
/// `index` of `out`.
///
/// # Safety
/// `count` elements from `index` must be writable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn store_512(out: OutPtr, index: usize, v: __m512i, count: usize) {
    let mask: __mmask16 = if count >= 16 {
        0xFFFF
    } else {
        ((1u32 << count) - 1) as __mmask16
    };
    // SAFETY: the caller guarantees `count` writable elements at `index`; masked-off lanes are
    // not accessed.
    unsafe {
        match out {
            OutPtr::I8(p) => _mm512_mask_cvtepi32_storeu_epi8(p.add(index), mask, v),
            OutPtr::U8(p) => _mm512_mask_cvtepi32_storeu_epi8(p.add(index).cast(), mask, v),
            OutPtr::I16(p) => _mm512_mask_cvtepi32_storeu_epi16(p.add(index), mask, v),
        }
    }
}

/// The checked float output stage of `R` rows of `NV` vectors for 8-bit outputs: each row's
/// vectors requantized by the float form (a row with an untrusted lane recomputed exactly),
/// narrowed with saturating packs into bytes in column order, clamped and stored with one
/// masked store of `cols` bytes.
///
/// A macro, not a function: the compiler does not inline a function this size into the
/// kernel bodies, and the call (with its parameter loads) cost a tenth of a pointwise GEMM with
/// a short `k`. Expands, inside a body generic over `R` and `NV`, to statements that need an
/// `unsafe` context where `cols <= NV * 16` bytes are writable at `out + (row0 + r) *
/// out_stride + first` for every `r < R`, and the stage's per-column slices hold `first + NV *
/// 16` elements.
macro_rules! checked_rows {
    (
        $signed:expr, $acc:expr, $stage:expr, $c:expr, $first:expr, $cols:expr, $out:expr,
        $row0:expr, $out_stride:expr
    ) => {{
        const SIGNED: bool = $signed;
        let acc: &[[__m512i; NV]; R] = $acc;
        let stage: &OutputStage<'_> = $stage;
        let c: &CheckedStage<'_> = $c;
        let (first, cols, out, row0, out_stride): (usize, usize, *mut u8, usize, usize) =
            ($first, $cols, $out, $row0, $out_stride);
        // Expanded inside the body's `unsafe` block (see above): loads of 16 parameters at
        // `first + 16 v`, stores of `cols` bytes.
        {
            let window = _mm512_set1_ps(c.window);
            let lo = _mm512_set1_epi8(stage.min as i8);
            let hi = _mm512_set1_epi8(stage.max as i8);
            let mask: __mmask64 = if cols >= 64 {
                u64::MAX
            } else {
                (1u64 << cols) - 1
            };
            // Rows whose outputs are contiguous (the block is the whole, narrow, output row) are
            // packed `4 / NV` at a time into one 64-byte vector.
            let per = if NV < 4 && cols == NV * 16 && out_stride == cols {
                4 / NV
            } else {
                1
            };
            let mut r = 0;
            while r < R {
                let rows = per.min(R - r);
                let mut q = [_mm512_setzero_si512(); 4];
                for j in 0..rows {
                    let acc = &acc[r + j];
                    let mut ambiguous: __mmask16 = 0;
                    for v in 0..NV {
                        let o = first + 16 * v;
                        q[j * NV + v] = fast_requant_avx512(
                            acc[v],
                            _mm512_loadu_ps(c.scale.as_ptr().add(o)),
                            _mm512_loadu_ps(c.offset.as_ptr().add(o)),
                            _mm512_loadu_ps(c.offset_neg.as_ptr().add(o)),
                            _mm512_loadu_si512(c.threshold.as_ptr().add(o).cast()),
                            window,
                            &mut ambiguous,
                        );
                    }
                    if ambiguous != 0 {
                        super::cold_path();
                        for v in 0..NV {
                            let p = Params512::load(stage, first + 16 * v);
                            if let Params512::Fixed { fixed, .. } = p {
                                q[j * NV + v] = _mm512_min_epi32(
                                    _mm512_max_epi32(
                                        _mm512_add_epi32(
                                            fixed.apply(acc[v]),
                                            _mm512_set1_epi32(stage.zero_point),
                                        ),
                                        _mm512_set1_epi32(stage.min),
                                    ),
                                    _mm512_set1_epi32(stage.max),
                                );
                            }
                        }
                    }
                }
                // Saturating packs interleave 128-bit lanes: dword 4 l + j of the packed vector
                // holds elements 16 j + 4 l ..; gather them back into order.
                let used = rows * NV;
                let words_lo = _mm512_packs_epi32(q[0], if used > 1 { q[1] } else { q[0] });
                let words_hi = if used > 2 {
                    _mm512_packs_epi32(q[2], q[3])
                } else {
                    words_lo
                };
                let bytes = if SIGNED {
                    _mm512_packs_epi16(words_lo, words_hi)
                } else {
                    _mm512_packus_epi16(words_lo, words_hi)
                };
                let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
                let bytes = _mm512_permutexvar_epi32(order, bytes);
                let bytes = super::clamp_bytes_512(bytes, lo, hi, SIGNED);
                let dst = out.add((row0 + r) * out_stride + first);
                let mask = if per > 1 {
                    if rows * cols >= 64 {
                        u64::MAX
                    } else {
                        (1u64 << (rows * cols)) - 1
                    }
                } else {
                    mask
                };
                _mm512_mask_storeu_epi8(dst.cast(), mask, bytes);
                r += rows;
            }
        }
    }};
}

/// Generates a safe entry point, its row splitter and its `#[target_feature]` body for one
/// family: `$dot(acc, a, w)` adds the products of a broadcast 4-byte group of A and a vector of
/// packed weights to the accumulators.
macro_rules! q_gemm_512 {
    (
        $entry:ident, $rows:ident, $body:ident, $feature:literal, $a:ty, $w:ty, $kr:literal,
        $dot:path
    ) => {
        /// Safe entry point: checks the tile and the output stage, then runs the SIMD body.
        fn $entry<const MR: usize, const NV: usize>(
            tile: &Tile<'_, $a, $w, i32>,
            stage: &OutputStage<'_>,
            mut out: QOut<'_>,
            out_stride: usize,
        ) -> Result<(), LinalgError> {
            tile.check(NV * 16, $kr, out.len(), out_stride)?;
            stage.check(tile.n.div_ceil(NV * 16) * NV * 16)?;
            let out = OutPtr::new(&mut out);
            // SAFETY: `check` proved that every row run (offset + kc elements) lies in `input`,
            // the zero row holds kc elements, the packed blocks, bias and per-column stage
            // parameters cover ceil(n / nr) blocks, and m rows of n columns at out_stride fit
            // in `out`; this kernel is only handed out when the CPU supports its features.
            unsafe { $rows::<MR, NV>(tile, stage, out, out_stride) };
            Ok(())
        }

        /// Runs the tile's `m` rows `MR` at a time, the rest in calls of 4, 2 and 1 rows.
        ///
        /// # Safety
        /// The tile and stage must have passed the entry point's checks.
        #[target_feature(enable = $feature)]
        unsafe fn $rows<const MR: usize, const NV: usize>(
            tile: &Tile<'_, $a, $w, i32>,
            stage: &OutputStage<'_>,
            out: OutPtr,
            out_stride: usize,
        ) {
            // SAFETY: forwarded from the caller; every call covers rows below `m`.
            unsafe {
                let m = tile.m;
                let mut row = 0;
                while m - row >= MR {
                    $body::<MR, NV>(tile, row, stage, out, out_stride);
                    row += MR;
                }
                while m - row >= 4 {
                    $body::<4, NV>(tile, row, stage, out, out_stride);
                    row += 4;
                }
                if m - row >= 2 {
                    $body::<2, NV>(tile, row, stage, out, out_stride);
                    row += 2;
                }
                if m - row >= 1 {
                    $body::<1, NV>(tile, row, stage, out, out_stride);
                }
            }
        }

        /// Rows `row0..row0 + R` of the tile, every column block.
        ///
        /// # Safety
        /// The tile and stage must have passed the entry point's checks, and
        /// `row0 + R <= tile.m`.
        #[target_feature(enable = $feature)]
        unsafe fn $body<const R: usize, const NV: usize>(
            tile: &Tile<'_, $a, $w, i32>,
            row0: usize,
            stage: &OutputStage<'_>,
            out: OutPtr,
            out_stride: usize,
        ) {
            const { assert!(R >= 1 && NV >= 1) };
            // SAFETY: the entry point checked the tile (see there): every pointer formed below
            // stays inside the slice it was derived from.
            unsafe {
                let nr = NV * 16;
                let (ks, n) = (tile.ks, tile.n);
                let groups = tile.kc / $kr;
                let zero_point = _mm512_set1_epi32(stage.zero_point);
                let lo = _mm512_set1_epi32(stage.min);
                let hi = _mm512_set1_epi32(stage.max);
                let mut weights = tile.weights.as_ptr().cast::<u8>();
                let mut first = 0;
                while first < n {
                    let bias = tile.bias.as_ptr().add(first);
                    let mut acc = [[_mm512_setzero_si512(); NV]; R];
                    for v in 0..NV {
                        let b = _mm512_loadu_si512(bias.add(v * 16).cast());
                        for row in acc.iter_mut() {
                            row[v] = b;
                        }
                    }
                    for t in 0..ks {
                        let mut a = [tile.zero.as_ptr().cast::<u8>(); R];
                        for (r, a) in a.iter_mut().enumerate() {
                            let offset = *tile.offsets.get_unchecked((row0 + r) * ks + t);
                            if offset != PAD {
                                *a = tile.input.as_ptr().add(offset as usize).cast::<u8>();
                            }
                        }
                        for g in 0..groups {
                            let mut w = [_mm512_setzero_si512(); NV];
                            for (v, w) in w.iter_mut().enumerate() {
                                *w = _mm512_loadu_si512(weights.add(v * 64).cast());
                            }
                            for r in 0..R {
                                let x = _mm512_set1_epi32(
                                    a[r].add(g * 4).cast::<i32>().read_unaligned(),
                                );
                                for v in 0..NV {
                                    acc[r][v] = $dot(acc[r][v], x, w[v]);
                                }
                            }
                            weights = weights.add(NV * 64);
                        }
                    }
                    let cols = nr.min(n - first);
                    // The accumulators go to memory once here: indexing `acc` itself in the
                    // loops below (not unrolled) would keep a memory copy of it updated in the
                    // dot loop above.
                    let mut spilled = [[_mm512_setzero_si512(); NV]; R];
                    for (dst, acc) in spilled.iter_mut().zip(&acc) {
                        for (dst, &acc) in dst.iter_mut().zip(acc) {
                            _mm512_storeu_si512(dst, acc);
                        }
                    }
                    // Bytes clamp like the reference only when the clamp lies in the type
                    // (the reference truncates values clamped beyond it).
                    let in_type = |(tlo, thi): (i32, i32)| {
                        tlo <= stage.min && stage.min <= thi && tlo <= stage.max && stage.max <= thi
                    };
                    let done = match (stage.requant, out) {
                        (
                            StageRequant::Fixed {
                                checked: Some(c), ..
                            },
                            OutPtr::I8(p),
                        ) if in_type((-128, 127)) => {
                            checked_rows!(
                                true,
                                &spilled,
                                stage,
                                &c,
                                first,
                                cols,
                                p.cast(),
                                row0,
                                out_stride
                            );
                            true
                        }
                        (
                            StageRequant::Fixed {
                                checked: Some(c), ..
                            },
                            OutPtr::U8(p),
                        ) if in_type((0, 255)) => {
                            checked_rows!(
                                false, &spilled, stage, &c, first, cols, p, row0, out_stride
                            );
                            true
                        }
                        _ => false,
                    };
                    if !done {
                        let mut params = [Params512::Double {
                            low: _mm512_setzero_pd(),
                            high: _mm512_setzero_pd(),
                        }; NV];
                        for (v, p) in params.iter_mut().enumerate() {
                            *p = Params512::load(stage, first + v * 16);
                        }
                        for (r, acc) in spilled.iter().enumerate() {
                            let row = (row0 + r) * out_stride + first;
                            for v in 0..NV {
                                let start = v * 16;
                                if start >= cols {
                                    break;
                                }
                                let y = finish_512(acc[v], &params[v], zero_point, lo, hi);
                                store_512(out, row + start, y, cols - start);
                            }
                        }
                    }
                    first += nr;
                }
            }
        }
    };
}

/// `acc + dot4(u8 a, s8 w)` per lane.
#[inline]
#[target_feature(enable = "avx512f,avx512vnni")]
fn dot_vnni(acc: __m512i, a: __m512i, w: __m512i) -> __m512i {
    _mm512_dpbusd_epi32(acc, a, w)
}

/// `acc + dot2(i16 a, i16 w)` per lane, with `vpmaddwd`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn dot_madd(acc: __m512i, a: __m512i, w: __m512i) -> __m512i {
    _mm512_add_epi32(acc, _mm512_madd_epi16(a, w))
}

/// `acc + dot2(i16 a, i16 w)` per lane, with `vpdpwssd` (no saturation: wraps as `vpmaddwd`
/// followed by `vpaddd` does).
#[inline]
#[target_feature(enable = "avx512f,avx512vnni")]
fn dot_wssd(acc: __m512i, a: __m512i, w: __m512i) -> __m512i {
    _mm512_dpwssd_epi32(acc, a, w)
}

q_gemm_512!(
    entry_vnni,
    rows_vnni,
    body_vnni,
    "avx512f,avx512bw,avx512dq,avx512vnni",
    u8,
    i8,
    4,
    dot_vnni
);

q_gemm_512!(
    entry_madd,
    rows_madd,
    body_madd,
    "avx512f,avx512bw,avx512dq",
    i16,
    i16,
    2,
    dot_madd
);

q_gemm_512!(
    entry_wssd,
    rows_wssd,
    body_wssd,
    "avx512f,avx512bw,avx512dq,avx512vnni",
    i16,
    i16,
    2,
    dot_wssd
);

const fn info(isa: Isa, name: &'static str, mr: usize, nr: usize, kr: usize) -> UkernelInfo {
    UkernelInfo {
        isa,
        name,
        mr,
        nr,
        kr,
    }
}

pub(super) const UKERNELS: [QGemmUkernel; 9] = [
    QGemmUkernel::vnni(
        info(Isa::Avx512Vnni, "q vnni 12x16 avx512vnni", 12, 16, 4),
        entry_vnni::<12, 1>,
    ),
    QGemmUkernel::vnni(
        info(Isa::Avx512Vnni, "q vnni 14x32 avx512vnni", 14, 32, 4),
        entry_vnni::<14, 2>,
    ),
    QGemmUkernel::vnni(
        info(Isa::Avx512Vnni, "q vnni 6x64 avx512vnni", 6, 64, 4),
        entry_vnni::<6, 4>,
    ),
    QGemmUkernel::madd16(
        info(Isa::Avx512, "q madd16 12x16 avx512", 12, 16, 2),
        entry_madd::<12, 1>,
    ),
    QGemmUkernel::madd16(
        info(Isa::Avx512, "q madd16 14x32 avx512", 14, 32, 2),
        entry_madd::<14, 2>,
    ),
    QGemmUkernel::madd16(
        info(Isa::Avx512, "q madd16 6x64 avx512", 6, 64, 2),
        entry_madd::<6, 4>,
    ),
    QGemmUkernel::madd16(
        info(Isa::Avx512Vnni, "q wssd 12x16 avx512vnni", 12, 16, 2),
        entry_wssd::<12, 1>,
    ),
    QGemmUkernel::madd16(
        info(Isa::Avx512Vnni, "q wssd 14x32 avx512vnni", 14, 32, 2),
        entry_wssd::<14, 2>,
    ),
    QGemmUkernel::madd16(
        info(Isa::Avx512Vnni, "q wssd 6x64 avx512vnni", 6, 64, 2),
        entry_wssd::<6, 4>,
    ),
];

// ---------------------------------------------------------------------------------------------
// Input conversion.

/// A mask of the first `count` (at most 64) lanes.
fn mask64(count: usize) -> __mmask64 {
    if count >= 64 {
        u64::MAX
    } else {
        (1u64 << count) - 1
    }
}

/// A mask of the first `count` (at most 32) lanes.
fn mask32(count: usize) -> __mmask32 {
    if count >= 32 {
        u32::MAX
    } else {
        (1u32 << count) - 1
    }
}

/// Safe entry point of the int8 -> u8 conversion.
fn to_u8(input: &[i8], channels: usize, stride: usize, out: &mut [u8]) -> Result<(), LinalgError> {
    let pixels = check_convert(input.len(), channels, stride, out.len())?;
    // SAFETY: `check_convert` proved `pixels * channels == input.len()` and
    // `pixels * stride <= out.len()`; the kernel is only handed out when AVX-512BW is
    // supported.
    unsafe { to_u8_body(input, pixels, channels, stride, out) };
    Ok(())
}

/// # Safety
/// `input` holds `pixels * channels` elements, `out` at least `pixels * stride`.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn to_u8_body(input: &[i8], pixels: usize, channels: usize, stride: usize, out: &mut [u8]) {
    let flip = _mm512_set1_epi8(i8::MIN);
    let done = if stride != channels && channels < stride && matches!(stride, 4 | 8 | 16) {
        // SAFETY: forwarded from the caller.
        unsafe { super::q_gemm_avx2::to_u8_shuffled(input, pixels, channels, stride, out) }
    } else {
        0
    };
    let src = input.as_ptr();
    let dst = out.as_mut_ptr();
    // SAFETY: every masked load reads below `pixels * channels` elements of `input`, every
    // masked store writes below `pixels * stride` elements of `out` (the caller's bounds).
    unsafe {
        if stride == channels {
            let len = pixels * channels;
            let mut i = 0;
            while i < len {
                let mask = mask64(len - i);
                let x = _mm512_maskz_loadu_epi8(mask, src.add(i));
                _mm512_mask_storeu_epi8(dst.add(i).cast(), mask, _mm512_xor_si512(x, flip));
                i += 64;
            }
        } else {
            for p in done..pixels {
                let mut c = 0;
                while c < stride {
                    let load = mask64(channels.saturating_sub(c));
                    let x = _mm512_maskz_loadu_epi8(load, src.add(p * channels + c));
                    let y = _mm512_maskz_mov_epi8(load, _mm512_xor_si512(x, flip));
                    _mm512_mask_storeu_epi8(dst.add(p * stride + c).cast(), mask64(stride - c), y);
                    c += 64;
                }
            }
        }
    }
    out[pixels * stride..].fill(0);
}

/// Safe entry point of the conversion to i16.
fn to_i16(
    input: QIn<'_>,
    offset: i32,
    channels: usize,
    stride: usize,
    out: &mut [i16],
) -> Result<(), LinalgError> {
    let pixels = check_convert(input.len(), channels, stride, out.len())?;
    // SAFETY: as in `to_u8`.
    unsafe { to_i16_body(input, offset as i16, pixels, channels, stride, out) };
    Ok(())
}

/// Loads the first `count` (at most 32) elements at `src` widened to i16.
///
/// # Safety
/// `count` elements must be readable at `src`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn load_i16(input: QIn<'_>, src: usize, count: usize) -> __m512i {
    let mask = mask32(count);
    // SAFETY: masked-off lanes are not read; the caller guarantees the others.
    unsafe {
        match input {
            QIn::I8(x) => _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(mask, x.as_ptr().add(src))),
            QIn::U8(x) => {
                _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(mask, x.as_ptr().add(src).cast()))
            }
            QIn::I16(x) => _mm512_maskz_loadu_epi16(mask, x.as_ptr().add(src)),
        }
    }
}

/// # Safety
/// `input` holds `pixels * channels` elements, `out` at least `pixels * stride`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn to_i16_body(
    input: QIn<'_>,
    offset: i16,
    pixels: usize,
    channels: usize,
    stride: usize,
    out: &mut [i16],
) {
    let add = _mm512_set1_epi16(offset);
    let dst = out.as_mut_ptr();
    // SAFETY: as in `to_u8_body`.
    unsafe {
        if stride == channels {
            let len = pixels * channels;
            let mut i = 0;
            while i < len {
                let count = (len - i).min(32);
                let x = _mm512_add_epi16(load_i16(input, i, count), add);
                _mm512_mask_storeu_epi16(dst.add(i), mask32(count), x);
                i += 32;
            }
        } else {
            for p in 0..pixels {
                let mut c = 0;
                while c < stride {
                    let count = channels.saturating_sub(c).min(32);
                    let x = _mm512_add_epi16(load_i16(input, p * channels + c, count), add);
                    let y = _mm512_maskz_mov_epi16(mask32(count), x);
                    _mm512_mask_storeu_epi16(dst.add(p * stride + c), mask32(stride - c), y);
                    c += 32;
                }
            }
        }
    }
    out[pixels * stride..].fill(0);
}

pub(super) const CONVERT: QConvertKernels = QConvertKernels::new(Isa::Avx512, to_u8, to_i16);
