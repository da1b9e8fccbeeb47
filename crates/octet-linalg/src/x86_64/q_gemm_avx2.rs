//! Quantized GEMM micro-kernels on AVX2: the 16-bit family (`vpmaddwd` + `vpaddd`), `MR` rows
//! times `NV` vectors of 8 columns, with the same output stage as the AVX-512 kernels (see
//! there) on 8 lanes.

use std::arch::x86_64::*;

use super::q_gemm_avx512::OutPtr;
use super::requant::Fixed256;
use crate::frame::gemm::{Tile, UkernelInfo};
use crate::frame::gemm_q::{
    OutputStage, QConvertKernels, QGemmUkernel, QIn, QOut, StageRequant, check_convert,
};
use crate::frame::window::PAD;
use crate::{Isa, LinalgError};

/// The output-stage parameters of one vector of 8 columns, loaded once per block (on the
/// stack: the size difference of the variants costs nothing).
#[derive(Clone, Copy)]
#[allow(clippy::large_enum_variant)]
enum Params256 {
    Fixed(Fixed256),
    Double { low: __m256d, high: __m256d },
}

impl Params256 {
    /// Loads the parameters of columns `first..first + 8`.
    ///
    /// # Safety
    /// The stage's per-column slices must hold at least `first + 8` elements.
    #[target_feature(enable = "avx2")]
    unsafe fn load(stage: &OutputStage<'_>, first: usize) -> Params256 {
        // SAFETY: the caller guarantees 8 elements from `first` in every slice.
        unsafe {
            match stage.requant {
                StageRequant::Fixed {
                    multiplier,
                    left,
                    right,
                    any_left,
                    ..
                } => {
                    let ld = |v: &[i32]| _mm256_loadu_si256(v.as_ptr().add(first).cast());
                    Params256::Fixed(Fixed256::new(ld(multiplier), ld(left), ld(right), any_left))
                }
                StageRequant::Double { scale } => Params256::Double {
                    low: _mm256_loadu_pd(scale.as_ptr().add(first)),
                    high: _mm256_loadu_pd(scale.as_ptr().add(first + 4)),
                },
            }
        }
    }
}

/// `round_half_away(p)` in f64 lanes, exactly as `f64::round`.
#[inline]
#[target_feature(enable = "avx2")]
fn round_half_away_256(p: __m256d) -> __m256d {
    let t = _mm256_round_pd::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(p);
    let d = _mm256_sub_pd(p, t);
    let one = _mm256_set1_pd(1.0);
    let up = _mm256_cmp_pd::<_CMP_GE_OQ>(d, _mm256_set1_pd(0.5));
    let down = _mm256_cmp_pd::<_CMP_LE_OQ>(d, _mm256_set1_pd(-0.5));
    let t = _mm256_add_pd(t, _mm256_and_pd(up, one));
    _mm256_sub_pd(t, _mm256_and_pd(down, one))
}

/// The output stage on 8 accumulators: requantize, add the zero point, clamp.
#[inline]
#[target_feature(enable = "avx2")]
fn finish_256(
    acc: __m256i,
    p: &Params256,
    zero_point: __m256i,
    lo: __m256i,
    hi: __m256i,
) -> __m256i {
    let scaled = match *p {
        Params256::Fixed(fixed) => fixed.apply(acc),
        Params256::Double { low, high } => {
            let lo_acc = _mm256_cvtepi32_pd(_mm256_castsi256_si128(acc));
            let hi_acc = _mm256_cvtepi32_pd(_mm256_extracti128_si256::<1>(acc));
            let lo_q = _mm256_cvttpd_epi32(round_half_away_256(_mm256_mul_pd(lo_acc, low)));
            let hi_q = _mm256_cvttpd_epi32(round_half_away_256(_mm256_mul_pd(hi_acc, high)));
            _mm256_set_m128i(hi_q, lo_q)
        }
    };
    _mm256_min_epi32(
        _mm256_max_epi32(_mm256_add_epi32(scaled, zero_point), lo),
        hi,
    )
}

/// Stores the first `count` lanes (at most 8) of `v`, narrowed by truncation, at element
/// `index` of `out`.
///
/// # Safety
/// `count` elements from `index` must be writable.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn store_256(out: OutPtr, index: usize, v: __m256i, count: usize) {
    let count = count.min(8);
    // SAFETY: full stores write 8 elements (`count == 8`); partial ones go through a stack
    // buffer and copy `count` elements, which the caller guarantees writable.
    unsafe {
        match out {
            OutPtr::I8(_) | OutPtr::U8(_) => {
                // Keep the low byte of each lane (truncation), then gather the 8 bytes.
                let bytes = _mm256_and_si256(v, _mm256_set1_epi32(0xFF));
                let words = _mm256_packus_epi32(bytes, bytes);
                let bytes = _mm256_packus_epi16(words, words);
                let low = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(
                    bytes,
                    _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4),
                ));
                let dst: *mut u8 = match out {
                    OutPtr::I8(p) => p.add(index).cast(),
                    OutPtr::U8(p) => p.add(index),
                    OutPtr::I16(_) => return,
                };
                if count == 8 {
                    _mm_storel_epi64(dst.cast(), low);
                } else {
                    let mut lanes = [0u8; 16];
                    _mm_storeu_si128(lanes.as_mut_ptr().cast(), low);
                    std::ptr::copy_nonoverlapping(lanes.as_ptr(), dst, count);
                }
            }
            OutPtr::I16(p) => {
                let words = _mm256_and_si256(v, _mm256_set1_epi32(0xFFFF));
                let packed = _mm256_packus_epi32(words, words);
                let low = _mm256_castsi256_si128(_mm256_permute4x64_epi64::<0b1000>(packed));
                if count == 8 {
                    _mm_storeu_si128(p.add(index).cast(), low);
                } else {
                    let mut lanes = [0i16; 8];
                    _mm_storeu_si128(lanes.as_mut_ptr().cast(), low);
                    std::ptr::copy_nonoverlapping(lanes.as_ptr(), p.add(index), count);
                }
            }
        }
    }
}

/// Safe entry point: checks the tile and the output stage, then runs the SIMD body.
fn entry<const MR: usize, const NV: usize>(
    tile: &Tile<'_, i16, i16, i32>,
    stage: &OutputStage<'_>,
    mut out: QOut<'_>,
    out_stride: usize,
) -> Result<(), LinalgError> {
    tile.check(NV * 8, 2, out.len(), out_stride)?;
    stage.check(tile.n.div_ceil(NV * 8) * NV * 8)?;
    let out = OutPtr::new(&mut out);
    // SAFETY: `check` proved that every row run lies in `input`, the zero row holds kc
    // elements, the packed blocks, bias and stage parameters cover ceil(n / nr) blocks, and m
    // rows of n columns at out_stride fit in `out`; this kernel is only handed out when the CPU
    // supports AVX2.
    unsafe { rows::<MR, NV>(tile, stage, out, out_stride) };
    Ok(())
}

/// Runs the tile's `m` rows `MR` at a time, the rest in calls of 4, 2 and 1 rows.
///
/// # Safety
/// The tile and stage must have passed the entry point's checks.
#[target_feature(enable = "avx2")]
unsafe fn rows<const MR: usize, const NV: usize>(
    tile: &Tile<'_, i16, i16, i32>,
    stage: &OutputStage<'_>,
    out: OutPtr,
    out_stride: usize,
) {
    // SAFETY: forwarded from the caller; every call covers rows below `m`.
    unsafe {
        let m = tile.m;
        let mut row = 0;
        while m - row >= MR {
            body::<MR, NV>(tile, row, stage, out, out_stride);
            row += MR;
        }
        while m - row >= 4 {
            body::<4, NV>(tile, row, stage, out, out_stride);
            row += 4;
        }
        if m - row >= 2 {
            body::<2, NV>(tile, row, stage, out, out_stride);
            row += 2;
        }
        if m - row >= 1 {
            body::<1, NV>(tile, row, stage, out, out_stride);
        }
    }
}

/// Rows `row0..row0 + R` of the tile, every column block.
///
/// # Safety
/// The tile and stage must have passed the entry point's checks, and `row0 + R <= tile.m`.
#[target_feature(enable = "avx2")]
unsafe fn body<const R: usize, const NV: usize>(
    tile: &Tile<'_, i16, i16, i32>,
    row0: usize,
    stage: &OutputStage<'_>,
    out: OutPtr,
    out_stride: usize,
) {
    const { assert!(R >= 1 && NV >= 1) };
    // SAFETY: the entry point checked the tile (see there): every pointer formed below stays
    // inside the slice it was derived from.
    unsafe {
        let nr = NV * 8;
        let (ks, n) = (tile.ks, tile.n);
        let groups = tile.kc / 2;
        let zero_point = _mm256_set1_epi32(stage.zero_point);
        let lo = _mm256_set1_epi32(stage.min);
        let hi = _mm256_set1_epi32(stage.max);
        let mut weights = tile.weights.as_ptr().cast::<u8>();
        let mut first = 0;
        while first < n {
            let bias = tile.bias.as_ptr().add(first);
            let mut acc = [[_mm256_setzero_si256(); NV]; R];
            for v in 0..NV {
                let b = _mm256_loadu_si256(bias.add(v * 8).cast());
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
                    let mut w = [_mm256_setzero_si256(); NV];
                    for (v, w) in w.iter_mut().enumerate() {
                        *w = _mm256_loadu_si256(weights.add(v * 32).cast());
                    }
                    for r in 0..R {
                        let x = _mm256_set1_epi32(a[r].add(g * 4).cast::<i32>().read_unaligned());
                        for v in 0..NV {
                            acc[r][v] = _mm256_add_epi32(acc[r][v], _mm256_madd_epi16(x, w[v]));
                        }
                    }
                    weights = weights.add(NV * 32);
                }
            }
            let cols = nr.min(n - first);
            let mut params = [Params256::Double {
                low: _mm256_setzero_pd(),
                high: _mm256_setzero_pd(),
            }; NV];
            for (v, p) in params.iter_mut().enumerate() {
                *p = Params256::load(stage, first + v * 8);
            }
            // The accumulators go to memory once here: indexing `acc` itself in the
            // loop below (not unrolled) would keep a memory copy of it updated in
            // the dot loop above.
            let mut spilled = [[_mm256_setzero_si256(); NV]; R];
            for (dst, acc) in spilled.iter_mut().zip(&acc) {
                for (dst, &acc) in dst.iter_mut().zip(acc) {
                    _mm256_storeu_si256(dst, acc);
                }
            }
            for (r, acc) in spilled.iter().enumerate() {
                let row = (row0 + r) * out_stride + first;
                for v in 0..NV {
                    let start = v * 8;
                    if start >= cols {
                        break;
                    }
                    let y = finish_256(acc[v], &params[v], zero_point, lo, hi);
                    store_256(out, row + start, y, cols - start);
                }
            }
            first += nr;
        }
    }
}

const fn info(name: &'static str, mr: usize, nr: usize) -> UkernelInfo {
    UkernelInfo {
        isa: Isa::Avx2,
        name,
        mr,
        nr,
        kr: 2,
    }
}

pub(super) const UKERNELS: [QGemmUkernel; 3] = [
    QGemmUkernel::madd16(info("q madd16 12x8 avx2", 12, 8), entry::<12, 1>),
    QGemmUkernel::madd16(info("q madd16 6x16 avx2", 6, 16), entry::<6, 2>),
    QGemmUkernel::madd16(info("q madd16 3x32 avx2", 3, 32), entry::<3, 4>),
];

/// The largest offset that is not `PAD`, plus one: compiled with AVX2, whose `vpmaxud` makes
/// the fold a few instructions per eight offsets.
#[target_feature(enable = "avx2")]
pub(super) fn offsets_end(offsets: &[u32]) -> u32 {
    offsets.iter().fold(0u32, |m, &o| m.max(o.wrapping_add(1)))
}

// ---------------------------------------------------------------------------------------------
// Input conversion.

/// Safe entry point of the int8 -> u8 conversion.
fn to_u8(input: &[i8], channels: usize, stride: usize, out: &mut [u8]) -> Result<(), LinalgError> {
    let pixels = check_convert(input.len(), channels, stride, out.len())?;
    // SAFETY: `check_convert` proved `pixels * channels == input.len()` and
    // `pixels * stride <= out.len()`; the kernel is only handed out when AVX2 is supported.
    unsafe { to_u8_body(input, pixels, channels, stride, out) };
    Ok(())
}

/// Converts pixels of fewer channels than their stride of 4, 8 or 16 (`stride / channels`
/// pixels per 16 bytes) with one byte shuffle per 16 output bytes; returns the pixels done
/// (the rest, near the end of `input`, is left to the caller).
///
/// # Safety
/// `input` holds `pixels * channels` elements, `out` at least `pixels * stride`, and
/// `channels < stride`, `stride` one of 4, 8, 16.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn to_u8_shuffled(
    input: &[i8],
    pixels: usize,
    channels: usize,
    stride: usize,
    out: &mut [u8],
) -> usize {
    let per_chunk = 16 / stride;
    let in_bytes = per_chunk * channels;
    let mut shuffle = [0u8; 16];
    let mut flip = [0u8; 16];
    for (j, (s, f)) in shuffle.iter_mut().zip(&mut flip).enumerate() {
        let (p, c) = (j / stride, j % stride);
        (*s, *f) = if c < channels {
            ((p * channels + c) as u8, 0x80)
        } else {
            (0x80, 0)
        };
    }
    // SAFETY: the masks are 16-byte arrays; each load reads 16 bytes at `chunk * in_bytes`,
    // which the loop bound keeps inside `input`; each store writes 16 bytes at `chunk * 16`,
    // inside the `pixels * stride` bytes of `out` since `chunk * per_chunk < pixels`.
    unsafe {
        let shuffle = _mm_loadu_si128(shuffle.as_ptr().cast());
        let flip = _mm_loadu_si128(flip.as_ptr().cast());
        let chunks = if input.len() >= 16 {
            ((input.len() - 16) / in_bytes + 1).min(pixels / per_chunk)
        } else {
            0
        };
        for chunk in 0..chunks {
            let x = _mm_loadu_si128(input.as_ptr().add(chunk * in_bytes).cast());
            let y = _mm_xor_si128(_mm_shuffle_epi8(x, shuffle), flip);
            _mm_storeu_si128(out.as_mut_ptr().add(chunk * 16).cast(), y);
        }
        chunks * per_chunk
    }
}

/// # Safety
/// `input` holds `pixels * channels` elements, `out` at least `pixels * stride`.
#[target_feature(enable = "avx2")]
unsafe fn to_u8_body(input: &[i8], pixels: usize, channels: usize, stride: usize, out: &mut [u8]) {
    let flip = _mm256_set1_epi8(i8::MIN);
    let done = if channels < stride && matches!(stride, 4 | 8 | 16) {
        // SAFETY: forwarded from the caller.
        unsafe { to_u8_shuffled(input, pixels, channels, stride, out) }
    } else {
        0
    };
    for p in done..pixels {
        let src = &input[p * channels..(p + 1) * channels];
        let dst = &mut out[p * stride..(p + 1) * stride];
        let full = channels / 32 * 32;
        // SAFETY: each 32-byte load and store lies below `full <= channels <= stride`.
        unsafe {
            let mut c = 0;
            while c < full {
                let x = _mm256_loadu_si256(src.as_ptr().add(c).cast());
                _mm256_storeu_si256(dst.as_mut_ptr().add(c).cast(), _mm256_xor_si256(x, flip));
                c += 32;
            }
        }
        for (y, &x) in dst[full..channels].iter_mut().zip(&src[full..]) {
            *y = (x as u8) ^ 0x80;
        }
        dst[channels..].fill(0);
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

/// # Safety
/// `input` holds `pixels * channels` elements, `out` at least `pixels * stride`.
#[target_feature(enable = "avx2")]
unsafe fn to_i16_body(
    input: QIn<'_>,
    offset: i16,
    pixels: usize,
    channels: usize,
    stride: usize,
    out: &mut [i16],
) {
    let add = _mm256_set1_epi16(offset);
    let full = channels / 16 * 16;
    for p in 0..pixels {
        let src = p * channels;
        let dst = &mut out[p * stride..(p + 1) * stride];
        // SAFETY: each 16-element load reads below `src + full <= (p + 1) * channels`, each
        // store writes below `full <= stride` elements of `dst`.
        unsafe {
            let mut c = 0;
            while c < full {
                let x = match input {
                    QIn::I8(x) => {
                        _mm256_cvtepi8_epi16(_mm_loadu_si128(x.as_ptr().add(src + c).cast()))
                    }
                    QIn::U8(x) => {
                        _mm256_cvtepu8_epi16(_mm_loadu_si128(x.as_ptr().add(src + c).cast()))
                    }
                    QIn::I16(x) => _mm256_loadu_si256(x.as_ptr().add(src + c).cast()),
                };
                _mm256_storeu_si256(dst.as_mut_ptr().add(c).cast(), _mm256_add_epi16(x, add));
                c += 16;
            }
        }
        for c in full..channels {
            let x = match input {
                QIn::I8(x) => i16::from(x[src + c]),
                QIn::U8(x) => i16::from(x[src + c]),
                QIn::I16(x) => x[src + c],
            };
            dst[c] = x.wrapping_add(offset);
        }
        dst[channels..].fill(0);
    }
    out[pixels * stride..].fill(0);
}

pub(super) const CONVERT: QConvertKernels = QConvertKernels::new(Isa::Avx2, to_u8, to_i16);
