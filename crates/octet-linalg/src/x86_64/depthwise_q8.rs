//! 8-bit depthwise micro-kernels (int8 per-channel, legacy uint8): one vector of int32
//! accumulators per block of channels, `P` output pixels at a time.
//!
//! Each tap's input lanes are sign- or zero-extended straight from memory to 32 bits
//! (`vpmovsxbd`/`vpmovzxbd`) and multiplied with the packed weights by `vpmaddwd` (or AVX-512
//! VNNI's `vpdpwssd`, which also accumulates): the packed weight has a zero high half, so the
//! pair product is exactly `x * w`. The output stage is the exact requantization of
//! [`super::requant`], the zero point and the clamp, then a narrowing store.

use std::arch::x86_64::*;

use super::requant::{fast_requant_avx512, requant_avx2, requant_avx512};
use crate::frame::depthwise::{
    DOT4_MAX_TAPS, Dot4Pack, DwTile, DwUkernelInfo, Q8DwUkernel, Q8OutputStage,
};
use crate::frame::window::PAD;
use crate::{Isa, LinalgError, generic};

/// Test switch: run every segment through the general 4-tap path.
#[cfg(test)]
static DOT4_GENERAL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes the 4-tap kernels run every segment through their general path (tests).
#[cfg(test)]
pub(crate) fn set_dot4_general(on: bool) {
    DOT4_GENERAL.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether the test switch forces the general path.
fn dot4_general_only() -> bool {
    #[cfg(test)]
    {
        DOT4_GENERAL.load(std::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(not(test))]
    {
        false
    }
}

/// The most taps a kernel handles itself; larger filters go to the generic twin.
const MAX_TAPS: usize = 64;

/// The loop structure shared by every instruction set: `$lanes` channels per block, helpers
/// `$load_x(ptr, count) -> vec` (input lanes, extended; `count` valid when `TAIL`),
/// `$mac(acc, x, w) -> vec`, `$finish(acc, stage vectors, dst, count)`.
macro_rules! q8_dw_kernel {
    (
        $entry:ident, $body:ident, $block:ident, $feature:literal, $lanes:literal, $vec:ty,
        $load_w:ident, $load_x:ident, $mac:ident, $finish:ident, $stage:ident
    ) => {
        /// Safe entry point: checks the tile, then runs the SIMD body.
        fn $entry<const P: usize>(
            tile: &DwTile<'_, u8, i32, i32>,
            stage: &Q8OutputStage<'_>,
            out: &mut [u8],
        ) -> Result<(), LinalgError> {
            let ks = tile.taps.len();
            if ks > MAX_TAPS {
                return generic::depthwise::q8_dw_cr::<$lanes>(tile, stage, out);
            }
            tile.check($lanes, ks, out.len())?;
            let padded = tile.channels.next_multiple_of($lanes);
            if stage.multiplier.len() < padded
                || stage.left.len() < padded
                || stage.right.len() < padded
            {
                return Err(LinalgError::mismatch(
                    "depthwise tile: output stage too short",
                ));
            }
            // SAFETY: `check` proved that every tap of every pixel lies in `input`, the zero row
            // holds `channels` bytes, the packed weights, bias and output stage cover every
            // block, and `out` holds pixels * channels bytes; the kernel is only handed out when
            // the CPU supports its instruction set.
            unsafe {
                if stage.signed {
                    $body::<P, true>(tile, stage, out.as_mut_ptr())
                } else {
                    $body::<P, false>(tile, stage, out.as_mut_ptr())
                }
            }
            Ok(())
        }

        #[target_feature(enable = $feature)]
        unsafe fn $body<const P: usize, const S: bool>(
            tile: &DwTile<'_, u8, i32, i32>,
            stage: &Q8OutputStage<'_>,
            out: *mut u8,
        ) {
            const { assert!(P >= 1) };
            // SAFETY: see the entry point; every pointer below stays inside its checked slice.
            unsafe {
                // In-image taps advance with the pixels; padding taps read the zero row (the
                // input zero point) for every pixel of the segment, so their products are one
                // vector per block, added to the bias.
                let mut ptrs = [tile.input.as_ptr(); MAX_TAPS];
                let mut index = [0usize; MAX_TAPS];
                let mut pads = [0usize; MAX_TAPS];
                let (mut live, mut padding) = (0, 0);
                for (t, &offset) in tile.taps.iter().enumerate() {
                    if offset == PAD {
                        pads[padding] = t * $lanes;
                        padding += 1;
                    } else {
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
                    let taps = (&ptrs[..live], &index[..live], &pads[..padding]);
                    if block < full {
                        $block::<P, S, false>(tile, stage, taps, weights, out, first);
                    } else {
                        $block::<P, S, true>(tile, stage, taps, weights, out, first);
                    }
                }
            }
        }

        /// One block of channels from `first`, every pixel; `TAIL` for the last, partial one.
        #[target_feature(enable = $feature)]
        #[inline]
        unsafe fn $block<const P: usize, const S: bool, const TAIL: bool>(
            tile: &DwTile<'_, u8, i32, i32>,
            stage: &Q8OutputStage<'_>,
            (ptrs, index, pads): (&[*const u8], &[usize], &[usize]),
            weights: *const i32,
            out: *mut u8,
            first: usize,
        ) {
            // SAFETY: as in the body: loads of `count` lanes at checked addresses (masked or
            // copied when `TAIL`), stores of `count` bytes into the checked output.
            unsafe {
                let c = tile.channels;
                let step = tile.step;
                let count = (c - first).min($lanes);
                let mut bias = $load_w(tile.bias.as_ptr().add(first));
                if !pads.is_empty() {
                    let zero = $load_x::<S, TAIL>(tile.zero.as_ptr().add(first), count);
                    for &w in pads {
                        bias = $mac(bias, zero, $load_w(weights.add(w)));
                    }
                }
                let params = $stage(stage, first);
                let mut p = 0;
                while p + P <= tile.pixels {
                    let mut acc = [bias; P];
                    for (&ptr, &w) in ptrs.iter().zip(index) {
                        let w = $load_w(weights.add(w));
                        let mut x = ptr.add(first + p * step);
                        for acc in acc.iter_mut() {
                            *acc = $mac(*acc, $load_x::<S, TAIL>(x, count), w);
                            x = x.add(step);
                        }
                    }
                    for (j, &acc) in acc.iter().enumerate() {
                        $finish::<S, TAIL>(acc, &params, out.add((p + j) * c + first), count);
                    }
                    p += P;
                }
                while p < tile.pixels {
                    let mut acc = bias;
                    for (&ptr, &w) in ptrs.iter().zip(index) {
                        let x = $load_x::<S, TAIL>(ptr.add(first + p * step), count);
                        acc = $mac(acc, x, $load_w(weights.add(w)));
                    }
                    $finish::<S, TAIL>(acc, &params, out.add(p * c + first), count);
                    p += 1;
                }
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// AVX2: 8 channels per block.

/// The output stage's vectors for one block.
struct Stage256 {
    multiplier: __m256i,
    left: __m256i,
    right: __m256i,
    zero_point: __m256i,
    min: __m256i,
    max: __m256i,
}

#[target_feature(enable = "avx2")]
unsafe fn load_w_256(p: *const i32) -> __m256i {
    // SAFETY: the caller guarantees 8 readable elements.
    unsafe { _mm256_loadu_si256(p.cast::<__m256i>()) }
}

#[target_feature(enable = "avx2")]
unsafe fn stage_256(stage: &Q8OutputStage<'_>, first: usize) -> Stage256 {
    // SAFETY: the entry point checked that the stage arrays cover every block.
    unsafe {
        Stage256 {
            multiplier: load_w_256(stage.multiplier.as_ptr().add(first)),
            left: load_w_256(stage.left.as_ptr().add(first)),
            right: load_w_256(stage.right.as_ptr().add(first)),
            zero_point: _mm256_set1_epi32(stage.zero_point),
            min: _mm256_set1_epi32(stage.min),
            max: _mm256_set1_epi32(stage.max),
        }
    }
}

/// 8 input bytes (or `count` of them, through a stack copy), extended to 32 bits.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn load_x_256<const S: bool, const TAIL: bool>(p: *const u8, count: usize) -> __m256i {
    // SAFETY: the caller guarantees 8 readable bytes (`count` when `TAIL`).
    unsafe {
        let bytes = if TAIL {
            let mut buffer = [0u8; 16];
            std::ptr::copy_nonoverlapping(p, buffer.as_mut_ptr(), count);
            _mm_loadl_epi64(buffer.as_ptr().cast::<__m128i>())
        } else {
            _mm_loadl_epi64(p.cast::<__m128i>())
        };
        if S {
            _mm256_cvtepi8_epi32(bytes)
        } else {
            _mm256_cvtepu8_epi32(bytes)
        }
    }
}

#[target_feature(enable = "avx2")]
#[inline]
fn mac_256(acc: __m256i, x: __m256i, w: __m256i) -> __m256i {
    _mm256_add_epi32(acc, _mm256_madd_epi16(x, w))
}

/// Requantizes, offsets, clamps and stores 8 bytes (or `count`).
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn finish_256<const S: bool, const TAIL: bool>(
    acc: __m256i,
    s: &Stage256,
    dst: *mut u8,
    count: usize,
) {
    let y = requant_avx2(acc, s.multiplier, s.left, s.right);
    let y = _mm256_min_epi32(
        _mm256_max_epi32(_mm256_add_epi32(y, s.zero_point), s.min),
        s.max,
    );
    // Every lane is within the output type now, so the saturating packs only narrow.
    let words = _mm256_permute4x64_epi64::<0b00_00_10_00>(_mm256_packs_epi32(y, y));
    let words = _mm256_castsi256_si128(words);
    let bytes = if S {
        _mm_packs_epi16(words, words)
    } else {
        _mm_packus_epi16(words, words)
    };
    // SAFETY: the caller guarantees 8 writable bytes (`count` when `TAIL`).
    unsafe {
        if TAIL {
            let mut buffer = [0u8; 16];
            _mm_storeu_si128(buffer.as_mut_ptr().cast::<__m128i>(), bytes);
            std::ptr::copy_nonoverlapping(buffer.as_ptr(), dst, count);
        } else {
            _mm_storel_epi64(dst.cast::<__m128i>(), bytes);
        }
    }
}

q8_dw_kernel!(
    entry_avx2, body_avx2, block_avx2, "avx2", 8, __m256i, load_w_256, load_x_256, mac_256,
    finish_256, stage_256
);

// ---------------------------------------------------------------------------------------------
// AVX-512 (and VNNI): 16 channels per block.

struct Stage512 {
    multiplier: __m512i,
    left: __m512i,
    right: __m512i,
    zero_point: __m512i,
    min: __m512i,
    max: __m512i,
}

#[target_feature(enable = "avx512f")]
unsafe fn load_w_512(p: *const i32) -> __m512i {
    // SAFETY: the caller guarantees 16 readable elements.
    unsafe { _mm512_loadu_si512(p.cast::<__m512i>()) }
}

#[target_feature(enable = "avx512f")]
unsafe fn stage_512(stage: &Q8OutputStage<'_>, first: usize) -> Stage512 {
    // SAFETY: the entry point checked that the stage arrays cover every block.
    unsafe {
        Stage512 {
            multiplier: load_w_512(stage.multiplier.as_ptr().add(first)),
            left: load_w_512(stage.left.as_ptr().add(first)),
            right: load_w_512(stage.right.as_ptr().add(first)),
            zero_point: _mm512_set1_epi32(stage.zero_point),
            min: _mm512_set1_epi32(stage.min),
            max: _mm512_set1_epi32(stage.max),
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[inline]
fn mask_16(count: usize) -> __mmask16 {
    ((1u32 << count) - 1) as __mmask16
}

/// 16 input bytes (or `count`, masked), extended to 32 bits.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[inline]
unsafe fn load_x_512<const S: bool, const TAIL: bool>(p: *const u8, count: usize) -> __m512i {
    // SAFETY: the caller guarantees 16 readable bytes (`count` when `TAIL`; masked-off bytes
    // are not accessed).
    unsafe {
        let bytes = if TAIL {
            _mm_maskz_loadu_epi8(mask_16(count), p.cast::<i8>())
        } else {
            _mm_loadu_si128(p.cast::<__m128i>())
        };
        if S {
            _mm512_cvtepi8_epi32(bytes)
        } else {
            _mm512_cvtepu8_epi32(bytes)
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn mac_512(acc: __m512i, x: __m512i, w: __m512i) -> __m512i {
    _mm512_add_epi32(acc, _mm512_madd_epi16(x, w))
}

/// `vpdpwssd`: the multiply-add and the accumulation in one instruction. Only inlined into
/// bodies compiled with AVX-512 VNNI (a call per tap otherwise).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
fn mac_512_vnni(acc: __m512i, x: __m512i, w: __m512i) -> __m512i {
    _mm512_dpwssd_epi32(acc, x, w)
}

/// Requantizes, offsets, clamps and stores 16 bytes (or `count`, masked).
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[inline]
unsafe fn finish_512<const S: bool, const TAIL: bool>(
    acc: __m512i,
    s: &Stage512,
    dst: *mut u8,
    count: usize,
) {
    let y = requant_avx512(acc, s.multiplier, s.left, s.right);
    let y = _mm512_min_epi32(
        _mm512_max_epi32(_mm512_add_epi32(y, s.zero_point), s.min),
        s.max,
    );
    // SAFETY: the caller guarantees 16 writable bytes (`count` when `TAIL`; masked-off bytes
    // are not written). Every lane is within the output type, so truncation only narrows.
    unsafe {
        if TAIL {
            _mm512_mask_cvtepi32_storeu_epi8(dst.cast::<i8>(), mask_16(count), y);
        } else {
            _mm_storeu_si128(dst.cast::<__m128i>(), _mm512_cvtepi32_epi8(y));
        }
    }
}

q8_dw_kernel!(
    entry_avx512,
    body_avx512,
    block_avx512,
    "avx512f,avx512bw,avx512vl",
    16,
    __m512i,
    load_w_512,
    load_x_512,
    mac_512,
    finish_512,
    stage_512
);

q8_dw_kernel!(
    entry_vnni,
    body_vnni,
    block_vnni,
    "avx512f,avx512bw,avx512vl,avx512vnni",
    16,
    __m512i,
    load_w_512,
    load_x_512,
    mac_512_vnni,
    finish_512,
    stage_512
);

// ---------------------------------------------------------------------------------------------
// AVX-512 VNNI: four taps per `vpdpbusd` over chunks of 64 elements (see `Dot4Pack`).

/// Safe entry point of the 4-tap dot-product kernel: checks the segment and the packed
/// operands, then runs the SIMD body.
fn entry_dot4(
    tile: &DwTile<'_, u8, i32, i32>,
    pack: &Dot4Pack,
    out: &mut [u8],
) -> Result<(), LinalgError> {
    pack.check(tile, out.len())?;
    // SAFETY: `check` proved that every in-image tap of every pixel reads `channels` bytes
    // inside `input`, that the taps fit the packed groups, that the packed operands cover the
    // period, and that `out` holds `pixels * channels` bytes; the kernel is only handed out on
    // CPUs with AVX-512 F/BW/DQ/VL and VNNI.
    unsafe {
        match (pack.signed, pack.fast.is_some()) {
            (true, true) => dot4_body::<true, true>(tile, pack, out.as_mut_ptr()),
            (true, false) => dot4_body::<true, false>(tile, pack, out.as_mut_ptr()),
            (false, true) => dot4_body::<false, true>(tile, pack, out.as_mut_ptr()),
            (false, false) => dot4_body::<false, false>(tile, pack, out.as_mut_ptr()),
        }
    }
    Ok(())
}

#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
unsafe fn dot4_body<const S: bool, const FAST: bool>(
    tile: &DwTile<'_, u8, i32, i32>,
    pack: &Dot4Pack,
    out: *mut u8,
) {
    // SAFETY: see the entry point: a tap pointer plus any offset below `pixels * channels`
    // (run mode) or `p * step + channels` (pixel mode) stays inside `input`.
    unsafe {
        let mut ptrs = [std::ptr::null::<u8>(); DOT4_MAX_TAPS + 4];
        for (t, &offset) in tile.taps.iter().enumerate() {
            if offset != PAD {
                ptrs[t] = tile.input.as_ptr().add(offset as usize);
            }
        }
        let ptrs = &ptrs[..4 * pack.groups];
        let c = tile.channels;
        let ks = tile.taps.len();
        let live = tile.taps.iter().all(|&t| t != PAD) && !dot4_general_only();
        // One run over the segment when its pixels are contiguous, else one run per pixel
        // (strided windows); runs whose taps all lie in the image take the specialised path.
        let (runs, len, step) = if tile.step == c {
            (1, tile.pixels * c, 0)
        } else {
            (tile.pixels, c, tile.step)
        };
        for p in 0..runs {
            let (advance, out) = (p * step, out.add(p * len));
            match (live, ks / 4, ks % 4) {
                (true, 2, 1) => dot4_run_live::<S, FAST, 2, true>(pack, ptrs, advance, len, out),
                (true, 6, 1) => dot4_run_live::<S, FAST, 6, true>(pack, ptrs, advance, len, out),
                (true, 12, 1) => dot4_run_live::<S, FAST, 12, true>(pack, ptrs, advance, len, out),
                (true, 1, 0) => dot4_run_live::<S, FAST, 1, false>(pack, ptrs, advance, len, out),
                (true, 2, 0) => dot4_run_live::<S, FAST, 2, false>(pack, ptrs, advance, len, out),
                _ => dot4_run::<S, FAST>(pack, ptrs, advance, len, out),
            }
        }
    }
}

/// The exact output stage of one chunk's four accumulators (before the packs): the integer
/// requantization, the zero point and the clamp (the rare fallback of the checked float
/// form).
///
/// # Safety
/// `lanes + 64` must lie within the pack's period.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
#[inline]
unsafe fn dot4_exact(pack: &Dot4Pack, lanes: usize, acc: &[__m512i; 4]) -> [__m512i; 4] {
    let zp = _mm512_set1_epi32(pack.zero_point);
    let (lo, hi) = (_mm512_set1_epi32(pack.min), _mm512_set1_epi32(pack.max));
    let mut q = [_mm512_setzero_si512(); 4];
    // SAFETY: `lanes + 64 <= period` and every per-lane array holds `period` entries (checked
    // by the entry point).
    unsafe {
        for k in 0..4 {
            let o = lanes + 16 * k;
            let y = requant_avx512(
                acc[k],
                _mm512_loadu_si512(pack.multiplier.as_ptr().add(o).cast()),
                _mm512_loadu_si512(pack.left.as_ptr().add(o).cast()),
                _mm512_loadu_si512(pack.right.as_ptr().add(o).cast()),
            );
            q[k] = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(y, zp), lo), hi);
        }
    }
    q
}

/// The four accumulators of one group of four taps: the tap vectors' bytes interleaved so
/// that each dword holds the four taps of one element (see `Dot4Pack`), multiplied with the
/// group's packed weights at `w`.
///
/// # Safety
/// `w` must point at 256 readable weights.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
unsafe fn dot4_group(acc: &mut [__m512i; 4], t: [__m512i; 4], w: *const i8) {
    let a = _mm512_unpacklo_epi8(t[0], t[1]);
    let b = _mm512_unpackhi_epi8(t[0], t[1]);
    let c = _mm512_unpacklo_epi8(t[2], t[3]);
    let d = _mm512_unpackhi_epi8(t[2], t[3]);
    let x = [
        _mm512_unpacklo_epi16(a, c),
        _mm512_unpackhi_epi16(a, c),
        _mm512_unpacklo_epi16(b, d),
        _mm512_unpackhi_epi16(b, d),
    ];
    for k in 0..4 {
        // SAFETY: the caller guarantees 256 weights at `w`.
        let wk = unsafe { _mm512_loadu_si512(w.add(64 * k).cast()) };
        acc[k] = _mm512_dpbusd_epi32(acc[k], x[k], wk);
    }
}

/// The output stage of one chunk: requantizes the four accumulators of lanes `lanes..lanes +
/// 64` of the period (float form, exact on untrusted lanes), narrows them to bytes in element
/// order, clamps and stores the `mask`ed bytes at `dst`. A macro, not a function: the compiler
/// does not inline a function this size into the chunk loops, and the call spills the
/// accumulators. Expands to statements that need an `unsafe` context with `lanes + 64 <=
/// period` and the masked bytes writable at `dst`.
macro_rules! dot4_finish {
    ($s:ident, $fast:ident, $pack:expr, $lanes:expr, $acc:expr, $mask:expr, $dst:expr) => {{
        let pack: &Dot4Pack = $pack;
        let lanes: usize = $lanes;
        let acc: &[__m512i; 4] = $acc;
        let mut q = [_mm512_setzero_si512(); 4];
        let mut exact = !$fast;
        if let (true, Some(fast)) = ($fast, pack.fast.as_ref()) {
            let window = _mm512_set1_ps(fast.window);
            let mut ambiguous: __mmask16 = 0;
            for k in 0..4 {
                let o = lanes + 16 * k;
                q[k] = fast_requant_avx512(
                    acc[k],
                    _mm512_loadu_ps(fast.scale.as_ptr().add(o)),
                    _mm512_loadu_ps(fast.offset.as_ptr().add(o)),
                    _mm512_loadu_ps(fast.offset_neg.as_ptr().add(o)),
                    _mm512_loadu_si512(fast.threshold.as_ptr().add(o).cast()),
                    window,
                    &mut ambiguous,
                );
            }
            exact = ambiguous != 0;
        }
        if exact {
            super::cold_path();
            q = dot4_exact(pack, lanes, acc);
        }
        let (lo8, hi8) = (
            _mm512_set1_epi8(pack.min as i8),
            _mm512_set1_epi8(pack.max as i8),
        );
        let w01 = _mm512_packs_epi32(q[0], q[1]);
        let w23 = _mm512_packs_epi32(q[2], q[3]);
        let packed = if $s {
            _mm512_packs_epi16(w01, w23)
        } else {
            _mm512_packus_epi16(w01, w23)
        };
        let bytes = super::clamp_bytes_512(packed, lo8, hi8, $s);
        _mm512_mask_storeu_epi8($dst.cast(), $mask, bytes);
    }};
}

/// One run of `len` elements: tap `t` reads from `ptrs[t] + advance` (a null pointer: the
/// padding value), element `i` of the run is channel `i % channels`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
#[inline]
unsafe fn dot4_run<const S: bool, const FAST: bool>(
    pack: &Dot4Pack,
    ptrs: &[*const u8],
    advance: usize,
    len: usize,
    out: *mut u8,
) {
    // SAFETY: the loads read `count` bytes at `ptrs[t] + advance + i`, `i + count <= len`,
    // inside the input (see the entry point); the packed operands hold `groups * period * 4`
    // weights and `period` of everything else, and `block * 64 + 64 <= period`.
    unsafe {
        let blocks = pack.period / 64;
        let zero = _mm512_set1_epi8(pack.zero as i8);
        let flip = _mm512_set1_epi8(0x80u8 as i8);
        let group_stride = pack.period * 4;
        let mut block = 0;
        let mut i = 0;
        while i < len {
            let count = (len - i).min(64);
            let mask: __mmask64 = if count == 64 {
                u64::MAX
            } else {
                (1u64 << count) - 1
            };
            let lanes = block * 64;
            let bias = pack.bias.as_ptr().add(lanes);
            let mut acc = [
                _mm512_loadu_si512(bias.cast()),
                _mm512_loadu_si512(bias.add(16).cast()),
                _mm512_loadu_si512(bias.add(32).cast()),
                _mm512_loadu_si512(bias.add(48).cast()),
            ];
            let load = |t: usize| {
                let p = ptrs[t];
                if p.is_null() {
                    zero
                } else {
                    let v = _mm512_maskz_loadu_epi8(mask, p.add(advance + i).cast());
                    if S { _mm512_xor_si512(v, flip) } else { v }
                }
            };
            let mut w = pack.weights.as_ptr().add(lanes * 4);
            for g in 0..pack.groups {
                let t = 4 * g;
                dot4_group(
                    &mut acc,
                    [load(t), load(t + 1), load(t + 2), load(t + 3)],
                    w,
                );
                w = w.add(group_stride);
            }
            dot4_finish!(S, FAST, pack, lanes, &acc, mask, out.add(i));
            i += 64;
            block += 1;
            if block == blocks {
                block = 0;
            }
        }
    }
}

/// [`dot4_run`] for a run whose taps all lie in the image: `G` full groups of four taps and,
/// when `SINGLE`, one more tap (`4 G`) alone in the last group, whose bytes are spread to the
/// accumulators' dwords by one in-lane shuffle each (zero-extended: the other three taps of
/// the group have zero weights) instead of the eight unpacks of a group.
///
/// # Safety
/// As [`dot4_run`], with `4 G + SINGLE` non-null pointers and that many taps in the pack.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
#[inline]
unsafe fn dot4_run_live<const S: bool, const FAST: bool, const G: usize, const SINGLE: bool>(
    pack: &Dot4Pack,
    ptrs: &[*const u8],
    advance: usize,
    len: usize,
    out: *mut u8,
) {
    // SAFETY: as in `dot4_run`; the single tap's operands hold `period` entries.
    unsafe {
        let mut base = [std::ptr::null::<u8>(); 64];
        for (b, &p) in base.iter_mut().zip(ptrs).take(4 * G + usize::from(SINGLE)) {
            *b = p.add(advance);
        }
        let blocks = pack.period / 64;
        let flip = _mm512_set1_epi8(0x80u8 as i8);
        let group_stride = pack.period * 4;
        // Dword d of every 128-bit lane takes byte 4 k + d of the lane (accumulator k).
        let spread = |k: i32| {
            let b = |d: i32| (4 * k + d) | (-128 << 8);
            _mm512_broadcast_i32x4(_mm_setr_epi32(b(0), b(1), b(2), b(3)))
        };
        let spreads = [spread(0), spread(1), spread(2), spread(3)];
        let mut block = 0;
        let mut i = 0;
        while i < len {
            let count = (len - i).min(64);
            let full = count == 64;
            let mask: __mmask64 = if full { u64::MAX } else { (1u64 << count) - 1 };
            let lanes = block * 64;
            let bias = pack.bias.as_ptr().add(lanes);
            let mut acc = [
                _mm512_loadu_si512(bias.cast()),
                _mm512_loadu_si512(bias.add(16).cast()),
                _mm512_loadu_si512(bias.add(32).cast()),
                _mm512_loadu_si512(bias.add(48).cast()),
            ];
            let load = |t: usize| {
                let p = base[t].add(i);
                let v = if full {
                    _mm512_loadu_si512(p.cast())
                } else {
                    _mm512_maskz_loadu_epi8(mask, p.cast())
                };
                if S { _mm512_xor_si512(v, flip) } else { v }
            };
            let mut w = pack.weights.as_ptr().add(lanes * 4);
            for g in 0..G {
                let t = 4 * g;
                dot4_group(
                    &mut acc,
                    [load(t), load(t + 1), load(t + 2), load(t + 3)],
                    w,
                );
                w = w.add(group_stride);
            }
            if SINGLE {
                let t = load(4 * G);
                for (k, acc) in acc.iter_mut().enumerate() {
                    let x = _mm512_shuffle_epi8(t, spreads[k]);
                    let wk = _mm512_loadu_si512(w.add(64 * k).cast());
                    *acc = _mm512_dpbusd_epi32(*acc, x, wk);
                }
            }
            dot4_finish!(S, FAST, pack, lanes, &acc, mask, out.add(i));
            i += 64;
            block += 1;
            if block == blocks {
                block = 0;
            }
        }
    }
}

const fn info(isa: Isa, name: &'static str, cr: usize, taps: usize) -> DwUkernelInfo {
    DwUkernelInfo {
        isa,
        name,
        cr,
        taps,
    }
}

pub(super) const UKERNELS: [Q8DwUkernel; 4] = [
    Q8DwUkernel::new(info(Isa::Avx2, "q8 dw 8 avx2", 8, 0), entry_avx2::<8>),
    Q8DwUkernel::new(
        info(Isa::Avx512, "q8 dw 16 avx512", 16, 0),
        entry_avx512::<8>,
    ),
    Q8DwUkernel::new(
        info(Isa::Avx512Vnni, "q8 dw 16 avx512vnni", 16, 0),
        entry_vnni::<8>,
    ),
    Q8DwUkernel::new_dot4(
        info(Isa::Avx512Vnni, "q8 dw dot4 avx512vnni", 64, 0),
        entry_dot4,
    ),
];
