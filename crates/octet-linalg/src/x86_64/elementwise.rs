//! x86-64 element-wise kernels.
//!
//! Most are the generic bodies compiled with AVX2+FMA or AVX-512 enabled: the bodies are
//! written for the vectoriser, and compiling them inside a `#[target_feature]` function lets it
//! use the wide registers (`vpmuldq` for the fixed-point products, masked blends for the
//! selects). They are therefore bit-identical to the generic twin by construction; the battery
//! checks it anyway. The 8-bit table lookup is written with AVX-512 VBMI intrinsics.

use std::arch::x86_64::*;

use super::requant::{Fixed256, Fixed512};
use super::{clamp_bytes_512, load_table_512, lookup_bytes_vbmi};
use crate::LinalgError;
use crate::frame::elementwise::{
    BilinearRow, F32BinaryOp, F32UnaryOp, FastPreluExpanded, PRELU_FIXES, PreluLinear16,
    QuantBinaryPrepared, QuantElem, QuantPreluParams, QuantPreluPrepared, check_cyclic, check_same,
};
use crate::frame::gemm_f32::F32Clamp;
use crate::frame::requant::FastSum;
use crate::generic::elementwise as body;

/// Generates the safe entry points of every auto-vectorised family for one instruction set.
macro_rules! vectorised_kernels {
    (
        $feature:literal,
        $quant_binary:ident, $quant_prelu:ident, $f32_binary:ident, $f32_unary:ident,
        $dequantize:ident, $bilinear_f32:ident, $bilinear_i8:ident
    ) => {
        /// Quantized binary op (safe entry point: checks the operands, then runs the body
        /// compiled for this instruction set).
        pub(crate) fn $quant_binary<T: QuantElem>(
            p: &QuantBinaryPrepared,
            x: &[T],
            y: &[T],
            out: &mut [T],
        ) -> Result<(), LinalgError> {
            check_cyclic(x.len(), y.len(), out.len())?;
            #[target_feature(enable = $feature)]
            fn run<T: QuantElem>(p: &QuantBinaryPrepared, x: &[T], y: &[T], out: &mut [T]) {
                body::quant_binary_body(p, x, y, out)
            }
            // SAFETY: the frame hands this kernel out only when `Isa::is_supported` confirmed
            // the CPU has every feature `run` is compiled with; `run` itself is safe code.
            unsafe { run(p, x, y, out) };
            Ok(())
        }

        /// Quantized PRELU (safe entry point).
        pub(crate) fn $quant_prelu<T: QuantElem>(
            p: &QuantPreluPrepared,
            x: &[T],
            out: &mut [T],
        ) -> Result<(), LinalgError> {
            check_cyclic(x.len(), p.params.alpha.len(), out.len())?;
            #[target_feature(enable = $feature)]
            fn run<T: QuantElem>(p: &QuantPreluParams, x: &[T], out: &mut [T]) {
                body::quant_prelu_body(p, x, out)
            }
            // SAFETY: as above, the CPU supports the features `run` is compiled with.
            unsafe { run(&p.params, x, out) };
            Ok(())
        }

        /// Float binary op (safe entry point).
        pub(crate) fn $f32_binary(
            op: F32BinaryOp,
            clamp: F32Clamp,
            x: &[f32],
            y: &[f32],
            out: &mut [f32],
        ) -> Result<(), LinalgError> {
            check_cyclic(x.len(), y.len(), out.len())?;
            #[target_feature(enable = $feature)]
            fn run(op: F32BinaryOp, clamp: F32Clamp, x: &[f32], y: &[f32], out: &mut [f32]) {
                body::f32_binary_body(op, clamp, x, y, out)
            }
            // SAFETY: as above, the CPU supports the features `run` is compiled with.
            unsafe { run(op, clamp, x, y, out) };
            Ok(())
        }

        /// Float activation (safe entry point).
        pub(crate) fn $f32_unary(
            op: F32UnaryOp,
            x: &[f32],
            out: &mut [f32],
        ) -> Result<(), LinalgError> {
            check_same(x.len(), out.len())?;
            #[target_feature(enable = $feature)]
            fn run(op: F32UnaryOp, x: &[f32], out: &mut [f32]) {
                body::f32_unary_body(op, x, out)
            }
            // SAFETY: as above, the CPU supports the features `run` is compiled with.
            unsafe { run(op, x, out) };
            Ok(())
        }

        /// Float bilinear resize row (safe entry point).
        pub(crate) fn $bilinear_f32(
            row: &BilinearRow<'_, f32, f32>,
            out: &mut [f32],
        ) -> Result<(), LinalgError> {
            row.check(out.len())?;
            #[target_feature(enable = $feature)]
            fn run(row: &BilinearRow<'_, f32, f32>, out: &mut [f32]) {
                body::bilinear_f32_body(row, out)
            }
            // SAFETY: as above, the CPU supports the features `run` is compiled with.
            unsafe { run(row, out) };
            Ok(())
        }

        /// Int8 bilinear resize row (safe entry point).
        pub(crate) fn $bilinear_i8(
            row: &BilinearRow<'_, i8, i32>,
            out: &mut [i8],
        ) -> Result<(), LinalgError> {
            row.check(out.len())?;
            #[target_feature(enable = $feature)]
            fn run(row: &BilinearRow<'_, i8, i32>, out: &mut [i8]) {
                body::bilinear_i8_body(row, out)
            }
            // SAFETY: as above, the CPU supports the features `run` is compiled with.
            unsafe { run(row, out) };
            Ok(())
        }

        /// DEQUANTIZE (safe entry point).
        pub(crate) fn $dequantize<T: QuantElem>(
            scale: f32,
            zero_point: i32,
            x: &[T],
            out: &mut [f32],
        ) -> Result<(), LinalgError> {
            check_same(x.len(), out.len())?;
            #[target_feature(enable = $feature)]
            fn run<T: QuantElem>(scale: f32, zero_point: i32, x: &[T], out: &mut [f32]) {
                body::dequantize_body(scale, zero_point, x, out)
            }
            // SAFETY: as above, the CPU supports the features `run` is compiled with.
            unsafe { run(scale, zero_point, x, out) };
            Ok(())
        }
    };
}

vectorised_kernels!(
    "avx2,fma",
    quant_binary_avx2_auto,
    quant_prelu_avx2,
    f32_binary_avx2,
    f32_unary_avx2,
    dequantize_avx2,
    bilinear_f32_avx2,
    bilinear_i8_avx2
);

vectorised_kernels!(
    "avx2,fma,avx512f,avx512bw,avx512dq,avx512vl",
    quant_binary_avx512_auto,
    quant_prelu_avx512_auto,
    f32_binary_avx512,
    f32_unary_avx512,
    dequantize_avx512,
    bilinear_f32_avx512,
    bilinear_i8_avx512
);

/// Finite range with AVX2 (the generic body compiled for it).
pub(crate) fn finite_range_avx2(x: &[f32]) -> Option<(f32, f32)> {
    #[target_feature(enable = "avx2,fma")]
    fn run(x: &[f32]) -> Option<(f32, f32)> {
        body::finite_range_body(x)
    }
    // SAFETY: handed out only when the CPU supports AVX2 and FMA; `run` is safe code.
    unsafe { run(x) }
}

/// Finite range with AVX-512 (the generic body compiled for it).
pub(crate) fn finite_range_avx512(x: &[f32]) -> Option<(f32, f32)> {
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512dq,avx512vl")]
    fn run(x: &[f32]) -> Option<(f32, f32)> {
        body::finite_range_body(x)
    }
    // SAFETY: handed out only when the CPU supports AVX-512 F/BW/DQ/VL; `run` is safe code.
    unsafe { run(x) }
}

/// 8-bit table lookup with AVX-512 VBMI (safe entry point: checks the lengths). Handed out
/// only when [`Isa::has_vbmi`](crate::Isa::has_vbmi) is true.
pub(crate) fn lut8_vbmi(table: &[u8; 256], x: &[u8], out: &mut [u8]) -> Result<(), LinalgError> {
    check_same(x.len(), out.len())?;
    // SAFETY: `x` and `out` have the same length (checked above); the CPU has AVX-512 F, BW and
    // VBMI (the frame checks `has_vbmi` before handing this kernel out).
    unsafe { lut8_vbmi_body(table, x, out) };
    Ok(())
}

/// The table sits in four registers; `vpermi2b` looks 64 bytes up in either half (7 index
/// bits) and the index's top bit selects the half.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
unsafe fn lut8_vbmi_body(table: &[u8; 256], x: &[u8], out: &mut [u8]) {
    let n = x.len().min(out.len());
    let src = x.as_ptr();
    let dst = out.as_mut_ptr();
    let table = load_table_512(table);
    let lookup = |idx: __m512i| lookup_bytes_vbmi(&table, idx);
    // SAFETY: every full-vector access below covers `i..i + 64` with `i + 64 <= n`, and the
    // tail is masked to the `n - i` valid bytes, so nothing outside `x` and `out` is read or
    // written.
    unsafe {
        let mut i = 0;
        while i + 128 <= n {
            let a = _mm512_loadu_si512(src.add(i).cast());
            let b = _mm512_loadu_si512(src.add(i + 64).cast());
            _mm512_storeu_si512(dst.add(i).cast(), lookup(a));
            _mm512_storeu_si512(dst.add(i + 64).cast(), lookup(b));
            i += 128;
        }
        while i < n {
            let left = n - i;
            let mask: __mmask64 = if left >= 64 {
                u64::MAX
            } else {
                (1u64 << left) - 1
            };
            let a = _mm512_maskz_loadu_epi8(mask, src.add(i).cast());
            _mm512_mask_storeu_epi8(dst.add(i).cast(), mask, lookup(a));
            i += 64;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// AVX-512 8-bit ADD/SUB and PRELU, written with intrinsics
// ---------------------------------------------------------------------------------------------

/// Loads `count` (at most 16) 8-bit values at `src` widened to `i32` lanes (sign- or
/// zero-extended as `T` is signed or not).
///
/// # Safety
/// `count` bytes must be readable at `src`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
unsafe fn load_widen<T: QuantElem>(src: *const T, count: usize) -> __m512i {
    let mask: __mmask16 = if count >= 16 {
        0xffff
    } else {
        ((1u32 << count) - 1) as __mmask16
    };
    // SAFETY: the masked load touches only the `count` valid bytes.
    let bytes = unsafe { _mm_maskz_loadu_epi8(mask, src.cast()) };
    if T::MIN < 0 {
        _mm512_cvtepi8_epi32(bytes)
    } else {
        _mm512_cvtepu8_epi32(bytes)
    }
}

/// Adds the zero point, clamps to `[lo, hi]` and stores `count` (at most 16) bytes at `dst`.
///
/// # Safety
/// `count` bytes must be writable at `dst`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
unsafe fn store_narrow<T: QuantElem>(
    dst: *mut T,
    count: usize,
    v: __m512i,
    zo: __m512i,
    lo: __m512i,
    hi: __m512i,
) {
    let v = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(v, zo), lo), hi);
    let mask: __mmask16 = if count >= 16 {
        0xffff
    } else {
        ((1u32 << count) - 1) as __mmask16
    };
    // SAFETY: the masked store writes only the `count` valid bytes; the clamp makes the
    // truncation to 8 bits exact.
    unsafe { _mm512_mask_cvtepi32_storeu_epi8(dst.cast(), mask, v) };
}

/// Quantized binary op on AVX-512: 8-bit ADD/SUB with the rescaling tables looked up by
/// `vpgatherdd`; other cases run the auto-vectorised body.
pub(crate) fn quant_binary_avx512<T: QuantElem>(
    p: &QuantBinaryPrepared,
    x: &[T],
    y: &[T],
    out: &mut [T],
) -> Result<(), LinalgError> {
    check_cyclic(x.len(), y.len(), out.len())?;
    if T::MAX - T::MIN != 255 || p.x_table.len() != 256 || p.y_table.len() != 256 {
        return quant_binary_avx512_auto(p, x, y, out);
    }
    if let Some(fast) = &p.fast {
        // SAFETY: as below; the float form needs nothing else.
        unsafe { quant_binary8_fast(p, fast, x, y, out) };
        return Ok(());
    }
    // SAFETY: the operands were checked (`y` tiles `x`, `out` as long as `x`), both tables hold
    // 256 entries and `T` is an 8-bit type; the frame hands this kernel out only on CPUs with
    // AVX-512 F, BW, DQ and VL.
    unsafe { quant_binary8_avx512(p, x, y, out) };
    Ok(())
}

/// Looks the low bytes of `v`'s lanes up in a 256-entry table.
///
/// # Safety
/// `table` must hold 256 `i32`s.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
unsafe fn lookup(table: *const i32, v: __m512i, byte: __m512i) -> __m512i {
    // SAFETY: the indices are masked to 0..=255.
    unsafe { _mm512_i32gather_epi32::<4>(_mm512_and_si512(v, byte), table.cast()) }
}

/// The raw sum or difference of two rescaled operands.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
fn combine(op: crate::frame::elementwise::QuantBinaryOp, a: __m512i, b: __m512i) -> __m512i {
    use crate::frame::elementwise::QuantBinaryOp;
    match op {
        QuantBinaryOp::Add => _mm512_add_epi32(a, b),
        QuantBinaryOp::Sub => _mm512_sub_epi32(a, b),
        _ => _mm512_sub_epi32(b, a),
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
unsafe fn quant_binary8_avx512<T: QuantElem>(
    p: &QuantBinaryPrepared,
    x: &[T],
    y: &[T],
    out: &mut [T],
) {
    let params = &p.params;
    let output = Fixed512::splat(params.output_multiplier);
    let zo = _mm512_set1_epi32(params.output_offset);
    let lo = _mm512_set1_epi32(params.act_min);
    let hi = _mm512_set1_epi32(params.act_max);
    let byte = _mm512_set1_epi32(0xff);
    let (xt, yt) = (p.x_table.as_ptr(), p.y_table.as_ptr());
    let op = params.op;
    let period = y.len();
    // SAFETY (whole body): every index into a table is masked to 0..=255 and both tables hold
    // 256 entries; every load and store covers `start..start + count` within one row of
    // `period` elements, rows lie inside `x`/`out` (period divides their common length) and
    // `y` holds `period` elements.
    unsafe {
        if period == 1 {
            let b = _mm512_set1_epi32(*yt.add((y[0].to_i32() & 0xff) as usize));
            let mut i = 0;
            while i < x.len() {
                let count = (x.len() - i).min(16);
                let a = lookup(xt, load_widen(x.as_ptr().add(i), count), byte);
                let r = output.apply(combine(op, a, b));
                store_narrow(out.as_mut_ptr().add(i), count, r, zo, lo, hi);
                i += 16;
            }
            return;
        }
        let mut row = 0;
        while row < x.len() {
            let mut c = 0;
            while c < period {
                let count = (period - c).min(16);
                let a = lookup(xt, load_widen(x.as_ptr().add(row + c), count), byte);
                let b = lookup(yt, load_widen(y.as_ptr().add(c), count), byte);
                let r = output.apply(combine(op, a, b));
                store_narrow(out.as_mut_ptr().add(row + c), count, r, zo, lo, hi);
                c += 16;
            }
            row += period;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Checked float forms of 8-bit ADD/SUB and PRELU (see `frame::requant`)
// ---------------------------------------------------------------------------------------------

/// The mask of the first `count` (at most 64) lanes of 64.
#[inline]
fn mask64(count: usize) -> __mmask64 {
    if count >= 64 {
        u64::MAX
    } else {
        (1u64 << count) - 1
    }
}

/// 16 bytes at `src` (masked to `mask`) widened to floats, sign- or zero-extended as `T`.
///
/// # Safety
/// The bytes selected by `mask` must be readable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
unsafe fn load_f32x16<T: QuantElem>(src: *const T, mask: __mmask16, full: bool) -> __m512 {
    // SAFETY: a full load reads 16 bytes (the caller's `mask` is then all ones), a masked one
    // only the selected bytes.
    let bytes = unsafe {
        if full {
            _mm_loadu_si128(src.cast())
        } else {
            _mm_maskz_loadu_epi8(mask, src.cast())
        }
    };
    let v = if T::MIN < 0 {
        _mm512_cvtepi8_epi32(bytes)
    } else {
        _mm512_cvtepu8_epi32(bytes)
    };
    _mm512_cvtepi32_ps(v)
}

/// `floor(f)` with the lanes whose fraction is below `window` (among `valid`) added to
/// `ambiguous`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
fn checked_floor(
    f: __m512,
    window: __m512,
    valid: __mmask16,
    ambiguous: &mut u64,
    q: usize,
) -> __m512i {
    let frac = _mm512_reduce_ps::<0b0000_1001>(f);
    let flags = _mm512_mask_cmp_ps_mask::<_CMP_LT_OQ>(valid, frac, window);
    *ambiguous |= u64::from(flags) << (16 * q);
    _mm512_cvt_roundps_epi32::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(f)
}

/// Four vectors of 16 results (elements `16 q..16 q + 16`) as 64 bytes in order, saturated to
/// `T` and clamped to `[lo, hi]`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
fn narrow_clamp<T: QuantElem>(q: [__m512i; 4], lo: __m512i, hi: __m512i) -> __m512i {
    clamp_bytes_512(pack_bytes::<T>(q), lo, hi, T::MIN < 0)
}

/// 8-bit ADD/SUB by the checked float form: `floor(fma(x, kx, fma(y, ky, offset)))` on 16
/// lanes at a time; a chunk of 64 with an untrusted lane is recomputed exactly, element by
/// element.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
unsafe fn quant_binary8_fast<T: QuantElem>(
    p: &QuantBinaryPrepared,
    fast: &FastSum,
    x: &[T],
    y: &[T],
    out: &mut [T],
) {
    let kx = _mm512_set1_ps(fast.kx);
    let ky = _mm512_set1_ps(fast.ky);
    let offset = _mm512_set1_ps(fast.offset);
    let window = _mm512_set1_ps(fast.window);
    let lo = _mm512_set1_epi8(p.params.act_min as i8);
    let hi = _mm512_set1_epi8(p.params.act_max as i8);
    let period = y.len();
    // `count` elements of `x` at `xs` with `y` at `ys` (or the scalar `y`'s term), into `dst`.
    // SAFETY (whole body): every chunk covers `start..start + count` (count <= 64) inside `x`
    // and `out`, and inside `y` or one row of it (the period divides their common length).
    unsafe {
        let chunk =
            |xs: *const T, ys: Option<*const T>, scalar: __m512, dst: *mut T, count: usize| {
                let full = count == 64;
                let mut ambiguous = 0u64;
                let mut q = [_mm512_setzero_si512(); 4];
                for (k, q) in q.iter_mut().enumerate() {
                    let lanes = count.saturating_sub(16 * k).min(16);
                    let valid = if lanes >= 16 {
                        0xffff
                    } else {
                        ((1u32 << lanes) - 1) as __mmask16
                    };
                    let xf = load_f32x16(xs.add(16 * k), valid, full);
                    let g = match ys {
                        Some(ys) => {
                            _mm512_fmadd_ps(load_f32x16(ys.add(16 * k), valid, full), ky, offset)
                        }
                        None => scalar,
                    };
                    *q =
                        checked_floor(_mm512_fmadd_ps(xf, kx, g), window, valid, &mut ambiguous, k);
                }
                let bytes = narrow_clamp::<T>(q, lo, hi);
                _mm512_mask_storeu_epi8(dst.cast(), mask64(count), bytes);
                if ambiguous != 0 {
                    for e in 0..count {
                        let b = match ys {
                            Some(ys) => *ys.add(e),
                            None => y[0],
                        };
                        *dst.add(e) = body::quant_binary8_one(p, *xs.add(e), b);
                    }
                }
            };
        if period == 1 {
            let scalar = _mm512_set1_ps((y[0].to_i32() as f32).mul_add(fast.ky, fast.offset));
            let mut i = 0;
            while i < x.len() {
                let count = (x.len() - i).min(64);
                chunk(
                    x.as_ptr().add(i),
                    None,
                    scalar,
                    out.as_mut_ptr().add(i),
                    count,
                );
                i += 64;
            }
            return;
        }
        let mut row = 0;
        while row < x.len() {
            let mut c = 0;
            while c < period {
                let count = (period - c).min(64);
                chunk(
                    x.as_ptr().add(row + c),
                    Some(y.as_ptr().add(c)),
                    offset,
                    out.as_mut_ptr().add(row + c),
                    count,
                );
                c += 64;
            }
            row += period;
        }
    }
}

/// 8-bit PRELU by the checked float form on AVX-512 VBMI: the non-negative branch from the
/// table (`vpermi2b`), the negative one as `floor(fma(x, scale[c], offset[c]))`; a chunk of 64
/// with an untrusted negative lane is recomputed exactly, element by element.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vbmi")]
unsafe fn quant_prelu8_fast<T: QuantElem>(
    prepared: &QuantPreluPrepared,
    fast: &FastPreluExpanded,
    x: &[T],
    out: &mut [T],
) {
    let p = &prepared.params;
    let period = fast.scale.len();
    let window = _mm512_set1_ps(fast.window);
    let lo = _mm512_set1_epi8(p.min as i8);
    let hi = _mm512_set1_epi8(p.max as i8);
    let channels = p.alpha.len();
    // SAFETY (whole body): the table holds 256 bytes; every chunk covers `i..i + count`
    // (count <= 64) inside `x` and `out`; its per-channel operands `i % period..+64` lie
    // inside the expanded arrays (`period` is a multiple of 64, `i` of 64).
    unsafe {
        let k = PreluVbmi::new(prepared);
        let mut i = 0;
        let mut j = 0;
        while i < x.len() {
            let count = (x.len() - i).min(64);
            let full = count == 64;
            let mask = mask64(count);
            let src = x.as_ptr().add(i);
            let bytes = _mm512_maskz_loadu_epi8(mask, src.cast());
            let positive = lookup_bytes_vbmi(&k.table, bytes);
            let below = k.below::<T>(bytes) & mask;
            let mut ambiguous = 0u64;
            let mut q = [_mm512_setzero_si512(); 4];
            if below != 0 {
                for (n, q) in q.iter_mut().enumerate() {
                    let valid = (below >> (16 * n)) as __mmask16;
                    let xf = load_f32x16(src.add(16 * n), (mask >> (16 * n)) as __mmask16, full);
                    let f = _mm512_fmadd_ps(
                        xf,
                        _mm512_loadu_ps(fast.scale.as_ptr().add(j + 16 * n)),
                        _mm512_loadu_ps(fast.offset.as_ptr().add(j + 16 * n)),
                    );
                    *q = checked_floor(f, window, valid, &mut ambiguous, n);
                }
            }
            let negative = narrow_clamp::<T>(q, lo, hi);
            let result = _mm512_mask_blend_epi8(below, positive, negative);
            let dst = out.as_mut_ptr().add(i);
            _mm512_mask_storeu_epi8(dst.cast(), mask, result);
            if ambiguous != 0 {
                for e in 0..count {
                    let alpha = p.alpha[(i + e) % channels];
                    *dst.add(e) = body::quant_prelu_one(p, *src.add(e), alpha);
                }
            }
            i += 64;
            j += 64;
            if j == period {
                j = 0;
            }
        }
    }
}

/// Quantized PRELU on AVX-512 for 8-bit types (16 lanes, per-lane choice of the branch's
/// multiplier); int16 runs the auto-vectorised body.
pub(crate) fn quant_prelu_avx512<T: QuantElem>(
    p: &QuantPreluPrepared,
    x: &[T],
    out: &mut [T],
) -> Result<(), LinalgError> {
    check_cyclic(x.len(), p.params.alpha.len(), out.len())?;
    if T::MAX - T::MIN != 255 {
        return quant_prelu_avx512_auto(p, x, out);
    }
    // SAFETY: the operands were checked (the alpha period tiles `x`, `out` as long as `x`) and
    // `T` is an 8-bit type; the frame hands this kernel out only on CPUs with AVX-512 F, BW,
    // DQ and VL.
    unsafe { quant_prelu8_avx512(&p.params, x, out) };
    Ok(())
}

/// The two branches' multipliers of PRELU.
#[derive(Clone, Copy)]
struct Prelu16 {
    identity: Fixed512,
    alpha: Fixed512,
    zero: __m512i,
}

impl Prelu16 {
    /// PRELU of 16 offset inputs `v` with their alphas, before the output offset.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
    fn apply(self, v: __m512i, alpha: __m512i) -> __m512i {
        let negative = _mm512_cmplt_epi32_mask(v, self.zero);
        let acc = _mm512_mask_mullo_epi32(v, negative, v, alpha);
        self.identity.select(negative, self.alpha).apply(acc)
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
unsafe fn quant_prelu8_avx512<T: QuantElem>(p: &QuantPreluParams, x: &[T], out: &mut [T]) {
    let identity = Fixed512::splat(p.identity_multiplier);
    let alpha_mult = Fixed512::splat(p.alpha_multiplier);
    let xo = _mm512_set1_epi32(p.input_offset);
    let zo = _mm512_set1_epi32(p.output_offset);
    let lo = _mm512_set1_epi32(p.min);
    let hi = _mm512_set1_epi32(p.max);
    let zero = _mm512_setzero_si512();
    let period = p.alpha.len();
    let one = Prelu16 {
        identity,
        alpha: alpha_mult,
        zero,
    };
    // SAFETY (whole body): every load and store covers `start..start + count` within one row of
    // `period` elements; rows lie inside `x`/`out` (period divides their common length) and
    // `alpha` holds `period` values.
    unsafe {
        if period == 1 {
            let alpha = _mm512_set1_epi32(p.alpha[0]);
            let mut i = 0;
            while i < x.len() {
                let count = (x.len() - i).min(16);
                let v = _mm512_add_epi32(load_widen(x.as_ptr().add(i), count), xo);
                store_narrow(
                    out.as_mut_ptr().add(i),
                    count,
                    one.apply(v, alpha),
                    zo,
                    lo,
                    hi,
                );
                i += 16;
            }
            return;
        }
        let mut row = 0;
        while row < x.len() {
            let mut c = 0;
            while c < period {
                let count = (period - c).min(16);
                let mask: __mmask16 = if count >= 16 {
                    0xffff
                } else {
                    ((1u32 << count) - 1) as __mmask16
                };
                let alpha = _mm512_maskz_loadu_epi32(mask, p.alpha.as_ptr().add(c));
                let v = _mm512_add_epi32(load_widen(x.as_ptr().add(row + c), count), xo);
                store_narrow(
                    out.as_mut_ptr().add(row + c),
                    count,
                    one.apply(v, alpha),
                    zo,
                    lo,
                    hi,
                );
                c += 16;
            }
            row += period;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// QUANTIZE with intrinsics: `cvttps2dq` is exactly the conversion LiteRT's x86 build performs
// (NaN and out-of-range values become i32::MIN), which the vectoriser cannot emit for Rust's
// saturating `as`.
// ---------------------------------------------------------------------------------------------

/// QUANTIZE on AVX2 (safe entry point).
pub(crate) fn quantize_avx2<T: QuantElem>(
    scale: f32,
    zero_point: i32,
    x: &[f32],
    out: &mut [T],
) -> Result<(), LinalgError> {
    check_same(x.len(), out.len())?;
    // SAFETY: `x` and `out` have the same length; the frame hands this kernel out only on CPUs
    // with AVX2 and FMA.
    unsafe { quantize_avx2_body(scale, zero_point, x, out) };
    Ok(())
}

#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_avx2_body<T: QuantElem>(scale: f32, zero_point: i32, x: &[f32], out: &mut [T]) {
    let vscale = _mm256_set1_ps(scale);
    let half = _mm256_set1_ps(0.5);
    let one = _mm256_set1_ps(1.0);
    let sign = _mm256_set1_ps(-0.0);
    let zp = _mm256_set1_epi32(zero_point);
    let lo = _mm256_set1_epi32(T::MIN);
    let hi = _mm256_set1_epi32(T::MAX);
    let mut xs = x.chunks_exact(8);
    let mut os = out.chunks_exact_mut(8);
    for (xc, oc) in (&mut xs).zip(&mut os) {
        // SAFETY: `xc` holds 8 floats.
        let v = unsafe { _mm256_loadu_ps(xc.as_ptr()) };
        let y = _mm256_div_ps(v, vscale);
        let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(y);
        let frac = _mm256_andnot_ps(sign, _mm256_sub_ps(y, t));
        let away = _mm256_cmp_ps::<_CMP_GE_OQ>(frac, half);
        let step = _mm256_or_ps(one, _mm256_and_ps(y, sign));
        let r = _mm256_add_ps(t, _mm256_and_ps(away, step));
        let i = _mm256_add_epi32(_mm256_cvttps_epi32(r), zp);
        let i = _mm256_min_epi32(_mm256_max_epi32(i, lo), hi);
        let mut lanes = [0i32; 8];
        // SAFETY: `lanes` holds 8 integers.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), i) };
        for (o, &l) in oc.iter_mut().zip(&lanes) {
            *o = T::from_i32(l);
        }
    }
    body::quantize_body(scale, zero_point, xs.remainder(), os.into_remainder());
}

/// QUANTIZE on AVX-512 (safe entry point).
pub(crate) fn quantize_avx512<T: QuantElem>(
    scale: f32,
    zero_point: i32,
    x: &[f32],
    out: &mut [T],
) -> Result<(), LinalgError> {
    check_same(x.len(), out.len())?;
    // SAFETY: `x` and `out` have the same length; the frame hands this kernel out only on CPUs
    // with AVX-512 F, BW, DQ and VL.
    unsafe { quantize_avx512_body(scale, zero_point, x, out) };
    Ok(())
}

#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
unsafe fn quantize_avx512_body<T: QuantElem>(
    scale: f32,
    zero_point: i32,
    x: &[f32],
    out: &mut [T],
) {
    let vscale = _mm512_set1_ps(scale);
    let half = _mm512_set1_ps(0.5);
    let one = _mm512_set1_ps(1.0);
    let sign = _mm512_set1_ps(-0.0);
    let zp = _mm512_set1_epi32(zero_point);
    let lo = _mm512_set1_epi32(T::MIN);
    let hi = _mm512_set1_epi32(T::MAX);
    let wide = T::MAX > 255;
    let n = x.len().min(out.len());
    let mut i = 0;
    // SAFETY: every access covers lanes `i..i + count` with `i + count <= n`, masked to the
    // `count` valid lanes.
    unsafe {
        while i < n {
            let count = (n - i).min(16);
            let mask: __mmask16 = if count >= 16 {
                0xffff
            } else {
                ((1u32 << count) - 1) as __mmask16
            };
            let v = _mm512_maskz_loadu_ps(mask, x.as_ptr().add(i));
            let y = _mm512_div_ps(v, vscale);
            let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(y);
            let frac = _mm512_andnot_ps(sign, _mm512_sub_ps(y, t));
            let away = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(frac, half);
            let step = _mm512_or_ps(one, _mm512_and_ps(y, sign));
            let r = _mm512_mask_add_ps(t, away, t, step);
            let q = _mm512_add_epi32(_mm512_cvttps_epi32(r), zp);
            let q = _mm512_min_epi32(_mm512_max_epi32(q, lo), hi);
            if wide {
                _mm512_mask_cvtepi32_storeu_epi16(out.as_mut_ptr().add(i).cast(), mask, q);
            } else {
                _mm512_mask_cvtepi32_storeu_epi8(out.as_mut_ptr().add(i).cast(), mask, q);
            }
            i += 16;
        }
    }
}

/// Quantized PRELU on AVX-512 VBMI for 8-bit types (safe entry point): the non-negative branch
/// is a table lookup (`vpermi2b`, 64 bytes at a time), the alpha branch is computed on 16-lane
/// vectors with one multiplier, and the byte comparison with the input zero point picks.
/// Handed out only when [`Isa::has_vbmi`](crate::Isa::has_vbmi) is true; other types run the
/// AVX-512 kernel.
pub(crate) fn quant_prelu_vbmi<T: QuantElem>(
    p: &QuantPreluPrepared,
    x: &[T],
    out: &mut [T],
) -> Result<(), LinalgError> {
    if T::MAX - T::MIN != 255 {
        return quant_prelu_avx512(p, x, out);
    }
    check_cyclic(x.len(), p.params.alpha.len(), out.len())?;
    if let Some(linear) = &p.linear
        && linear.slope.len().is_multiple_of(64)
        && linear.slope.len().is_multiple_of(p.params.alpha.len())
        && linear.offset.len() == linear.slope.len()
        && linear
            .fix_input
            .iter()
            .chain(&linear.fix_delta)
            .chain([&linear.whole])
            .all(|f| f.len() == linear.slope.len())
    {
        // SAFETY: as below; the slopes and offsets cover whole 64-element chunks of a period
        // of the channels.
        unsafe { quant_prelu8_linear(p, linear, x, out) };
        return Ok(());
    }
    if let Some(fast) = &p.fast
        && fast.scale.len().is_multiple_of(64)
        && fast.scale.len().is_multiple_of(p.params.alpha.len())
        && fast.offset.len() == fast.scale.len()
    {
        // SAFETY: as below; the expanded operands cover whole 64-element chunks of a period
        // of the channels.
        unsafe { quant_prelu8_fast(p, fast, x, out) };
        return Ok(());
    }
    // SAFETY: the operands were checked (the alpha period tiles `x`, `out` as long as `x`), `T`
    // is an 8-bit type, and the CPU has AVX-512 F, BW, DQ, VL and VBMI (checked by the frame).
    unsafe { quant_prelu8_vbmi(p, x, out) };
    Ok(())
}

/// [`quant_prelu8_fast`] with the negative branch in its 16-bit form ([`PreluLinear16`]):
/// 32 lanes per rounding multiply, exact by construction.
///
/// # Safety
/// `T` must be an 8-bit type, `x` and `out` equally long and a multiple of the channels, the
/// slopes and offsets a whole number of 64-element chunks of a period of the channels, and the
/// CPU must have AVX-512 F, BW, DQ, VL and VBMI.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vbmi")]
unsafe fn quant_prelu8_linear<T: QuantElem>(
    prepared: &QuantPreluPrepared,
    linear: &PreluLinear16,
    x: &[T],
    out: &mut [T],
) {
    let p = &prepared.params;
    let period = linear.slope.len();
    let lo = _mm512_set1_epi8(p.min as i8);
    let hi = _mm512_set1_epi8(p.max as i8);
    let zero_point = _mm512_set1_epi16(linear.zero_point);
    // Within each 128-bit lane the pack puts 8 bytes of the low half before 8 of the high
    // half; put the quadwords back in element order.
    let order = _mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7);
    // SAFETY (whole body): the table holds 256 bytes; every chunk covers `i..i + count`
    // (count <= 64) inside `x` and `out`; its per-channel operands `j..j + 64` lie inside the
    // slopes and offsets (`period` is a multiple of 64, `j` of 64 and below `period`).
    unsafe {
        let k = PreluVbmi::new(prepared);
        let slope = linear.slope.as_ptr();
        let offset = linear.offset.as_ptr();
        let mut i = 0;
        let mut j = 0;
        while i < x.len() {
            let count = (x.len() - i).min(64);
            let mask = mask64(count);
            let bytes = _mm512_maskz_loadu_epi8(mask, x.as_ptr().add(i).cast());
            let positive = lookup_bytes_vbmi(&k.table, bytes);
            let below = k.below::<T>(bytes) & mask;
            let result = if below != 0 {
                let halves = [
                    _mm512_castsi512_si256(bytes),
                    _mm512_extracti64x4_epi64::<1>(bytes),
                ];
                let [low, high] = halves.map(|half| {
                    if T::MIN < 0 {
                        _mm512_cvtepi8_epi16(half)
                    } else {
                        _mm512_cvtepu8_epi16(half)
                    }
                });
                let negative = |x: __m512i, o: usize| {
                    let v = _mm512_sub_epi16(x, zero_point);
                    let mut scaled =
                        _mm512_mulhrs_epi16(v, _mm512_loadu_si512(slope.add(j + o).cast()));
                    if linear.steep {
                        let whole = _mm512_loadu_si512(linear.whole.as_ptr().add(j + o).cast());
                        scaled = _mm512_add_epi16(scaled, _mm512_mullo_epi16(v, whole));
                    }
                    for e in 0..linear.fixes.min(PRELU_FIXES) {
                        let at = linear.fix_input[e].as_ptr().add(j + o);
                        let hit = _mm512_cmpeq_epi16_mask(v, _mm512_loadu_si512(at.cast()));
                        let delta = linear.fix_delta[e].as_ptr().add(j + o);
                        scaled = _mm512_mask_add_epi16(
                            scaled,
                            hit,
                            scaled,
                            _mm512_loadu_si512(delta.cast()),
                        );
                    }
                    _mm512_adds_epi16(scaled, _mm512_loadu_si512(offset.add(j + o).cast()))
                };
                let (low, high) = (negative(low, 0), negative(high, 32));
                let packed = if T::MIN < 0 {
                    _mm512_packs_epi16(low, high)
                } else {
                    _mm512_packus_epi16(low, high)
                };
                let ordered = _mm512_permutexvar_epi64(order, packed);
                let clamped = clamp_bytes_512(ordered, lo, hi, T::MIN < 0);
                _mm512_mask_blend_epi8(below, positive, clamped)
            } else {
                positive
            };
            _mm512_mask_storeu_epi8(out.as_mut_ptr().add(i).cast(), mask, result);
            i += 64;
            j += 64;
            if j == period {
                j = 0;
            }
        }
    }
}

/// Packs four vectors of 16 `i32` (in range for `T`) into 64 bytes in lane order, saturating
/// to `T`'s range.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
fn pack_bytes<T: QuantElem>(v: [__m512i; 4]) -> __m512i {
    let ab = _mm512_packs_epi32(v[0], v[1]);
    let cd = _mm512_packs_epi32(v[2], v[3]);
    let bytes = if T::MIN < 0 {
        _mm512_packs_epi16(ab, cd)
    } else {
        _mm512_packus_epi16(ab, cd)
    };
    // Within each 128-bit lane the packs interleave the four sources' dwords; gather dword
    // 4 * (m % 4) + m / 4 into position m.
    let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_permutexvar_epi32(order, bytes)
}

/// The loop-invariant state of [`quant_prelu8_vbmi`].
#[derive(Clone, Copy)]
struct PreluVbmi {
    table: [__m512i; 4],
    alpha_mult: Fixed512,
    xo: __m512i,
    zo: __m512i,
    scalar_alpha: __m512i,
    /// The input zero point: inputs below it take the alpha branch.
    zero_point: i32,
}

impl PreluVbmi {
    /// The registers of `prepared`: its 256-byte positive table and its parameters.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vbmi")]
    fn new(prepared: &QuantPreluPrepared) -> Self {
        let p = &prepared.params;
        PreluVbmi {
            table: load_table_512(&prepared.positive),
            alpha_mult: Fixed512::splat(p.alpha_multiplier),
            xo: _mm512_set1_epi32(p.input_offset),
            zo: _mm512_set1_epi32(p.output_offset),
            scalar_alpha: _mm512_set1_epi32(p.alpha.first().copied().unwrap_or(0)),
            zero_point: p.input_offset.wrapping_neg(),
        }
    }

    /// Which of the 64 bytes lie below the input zero point.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vbmi")]
    fn below<T: QuantElem>(&self, bytes: __m512i) -> __mmask64 {
        if self.zero_point > T::MAX {
            u64::MAX
        } else if self.zero_point <= T::MIN {
            0
        } else if T::MIN < 0 {
            _mm512_cmplt_epi8_mask(bytes, _mm512_set1_epi8(self.zero_point as i8))
        } else {
            _mm512_cmplt_epu8_mask(bytes, _mm512_set1_epi8(self.zero_point as u8 as i8))
        }
    }

    /// PRELU of `count` (at most 64) elements at `src` into `dst`, with the alphas at `alpha`
    /// (`None`: the scalar alpha).
    ///
    /// # Safety
    /// `count` elements must be readable at `src` (and at `alpha` when given) and writable at
    /// `dst`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vbmi")]
    unsafe fn block<T: QuantElem>(
        &self,
        src: *const T,
        dst: *mut T,
        alpha: Option<*const i32>,
        count: usize,
    ) {
        let mask: __mmask64 = if count >= 64 {
            u64::MAX
        } else {
            (1u64 << count) - 1
        };
        // SAFETY: the loads and the store are masked to the `count` valid elements.
        unsafe {
            let bytes = _mm512_maskz_loadu_epi8(mask, src.cast());
            let positive = lookup_bytes_vbmi(&self.table, bytes);
            let quarters = [
                _mm512_castsi512_si128(bytes),
                _mm512_extracti32x4_epi32::<1>(bytes),
                _mm512_extracti32x4_epi32::<2>(bytes),
                _mm512_extracti32x4_epi32::<3>(bytes),
            ];
            let mut negative = [_mm512_setzero_si512(); 4];
            for (q, (n, quarter)) in negative.iter_mut().zip(quarters).enumerate() {
                let v = if T::MIN < 0 {
                    _mm512_cvtepi8_epi32(quarter)
                } else {
                    _mm512_cvtepu8_epi32(quarter)
                };
                let v = _mm512_add_epi32(v, self.xo);
                let a = match alpha {
                    None => self.scalar_alpha,
                    Some(ptr) => {
                        let lanes = count.saturating_sub(16 * q).min(16);
                        let m: __mmask16 = if lanes >= 16 {
                            0xffff
                        } else {
                            ((1u32 << lanes) - 1) as __mmask16
                        };
                        _mm512_maskz_loadu_epi32(m, ptr.wrapping_add(16 * q))
                    }
                };
                let product = _mm512_mullo_epi32(v, a);
                *n = _mm512_add_epi32(self.alpha_mult.apply(product), self.zo);
            }
            let negative = pack_bytes::<T>(negative);
            let result = _mm512_mask_blend_epi8(self.below::<T>(bytes), positive, negative);
            _mm512_mask_storeu_epi8(dst.cast(), mask, result);
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vbmi")]
unsafe fn quant_prelu8_vbmi<T: QuantElem>(prepared: &QuantPreluPrepared, x: &[T], out: &mut [T]) {
    let p = &prepared.params;
    let period = p.alpha.len();
    // SAFETY (whole body): the table holds 256 bytes; every block covers `start..start +
    // count` (count <= 64) inside `x`/`out`, and its alphas lie inside `alpha` (one row of
    // `period` elements: rows lie inside `x`/`out` as the period divides their common length)
    // or inside the expanded alphas (blocks start at multiples of 64 of it, a multiple of 64).
    unsafe {
        let k = PreluVbmi::new(prepared);
        if period == 1 {
            let mut i = 0;
            while i < x.len() {
                let count = (x.len() - i).min(64);
                k.block(x.as_ptr().add(i), out.as_mut_ptr().add(i), None, count);
                i += 64;
            }
            return;
        }
        let expanded = &prepared.expanded_alpha;
        if !expanded.is_empty()
            && expanded.len().is_multiple_of(64)
            && expanded.len().is_multiple_of(period)
        {
            // Few channels: blocks of 64 across rows; block i starts at channel i % period,
            // where the expanded alphas (a multiple of both 64 and the period) also start.
            let mut i = 0;
            while i < x.len() {
                let count = (x.len() - i).min(64);
                let alpha = Some(expanded.as_ptr().add(i % expanded.len()));
                k.block(x.as_ptr().add(i), out.as_mut_ptr().add(i), alpha, count);
                i += 64;
            }
            return;
        }
        let mut row = 0;
        while row < x.len() {
            let mut c = 0;
            while c < period {
                let count = (period - c).min(64);
                let alpha = Some(p.alpha.as_ptr().add(c));
                k.block(
                    x.as_ptr().add(row + c),
                    out.as_mut_ptr().add(row + c),
                    alpha,
                    count,
                );
                c += 64;
            }
            row += period;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// AVX2 8-bit ADD/SUB with intrinsics (8 lanes, table lookups by `vpgatherdd`)
// ---------------------------------------------------------------------------------------------

/// Quantized binary op on AVX2: 8-bit ADD/SUB with intrinsics; other cases run the
/// auto-vectorised body.
pub(crate) fn quant_binary_avx2<T: QuantElem>(
    p: &QuantBinaryPrepared,
    x: &[T],
    y: &[T],
    out: &mut [T],
) -> Result<(), LinalgError> {
    check_cyclic(x.len(), y.len(), out.len())?;
    if T::MAX - T::MIN != 255 || p.x_table.len() != 256 || p.y_table.len() != 256 {
        return quant_binary_avx2_auto(p, x, y, out);
    }
    // SAFETY: the operands were checked (`y` tiles `x`, `out` as long as `x`), both tables hold
    // 256 entries and `T` is an 8-bit type; the frame hands this kernel out only on CPUs with
    // AVX2 and FMA.
    unsafe { quant_binary8_avx2(p, x, y, out) };
    Ok(())
}

/// Loads 8 bytes at `src` (or `count` < 8 of them through a copy) widened to `i32` lanes as
/// bytes (zero-extended: the table index).
///
/// # Safety
/// `count` bytes must be readable at `src`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn load_index8<T: QuantElem>(src: *const T, count: usize) -> __m256i {
    // SAFETY: reads `count` (at most 8) bytes at `src`.
    unsafe {
        let v = if count >= 8 {
            _mm_loadl_epi64(src.cast())
        } else {
            let mut bytes = [0u8; 8];
            std::ptr::copy_nonoverlapping(src.cast::<u8>(), bytes.as_mut_ptr(), count);
            _mm_loadl_epi64(bytes.as_ptr().cast())
        };
        _mm256_cvtepu8_epi32(v)
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn quant_binary8_avx2<T: QuantElem>(
    p: &QuantBinaryPrepared,
    x: &[T],
    y: &[T],
    out: &mut [T],
) {
    use crate::frame::elementwise::QuantBinaryOp;
    let params = &p.params;
    let output = Fixed256::splat(params.output_multiplier);
    let zo = _mm256_set1_epi32(params.output_offset);
    let lo = _mm256_set1_epi32(params.act_min);
    let hi = _mm256_set1_epi32(params.act_max);
    let (xt, yt) = (p.x_table.as_ptr(), p.y_table.as_ptr());
    let op = params.op;
    let period = y.len();
    // 8 results for `count` elements of `x` at `xs` and rescaled `b`, stored at `dst`.
    // SAFETY (whole body): table indices are bytes (0..=255) into 256-entry tables; every
    // access covers `start..start + count` (count <= 8) inside one row of `period` elements (or
    // inside `x` when `y` is a scalar); rows lie inside `x`/`out` (the period divides their
    // common length) and `y` holds `period` elements.
    unsafe {
        let finish = |a: __m256i, b: __m256i, dst: *mut T, count: usize| {
            let raw = match op {
                QuantBinaryOp::Add => _mm256_add_epi32(a, b),
                QuantBinaryOp::Sub => _mm256_sub_epi32(a, b),
                _ => _mm256_sub_epi32(b, a),
            };
            let r = _mm256_add_epi32(output.apply(raw), zo);
            let r = _mm256_min_epi32(_mm256_max_epi32(r, lo), hi);
            let mut lanes = [0i32; 8];
            _mm256_storeu_si256(lanes.as_mut_ptr().cast(), r);
            for (k, &l) in lanes.iter().enumerate().take(count) {
                *dst.add(k) = T::from_i32(l);
            }
        };
        if period == 1 {
            let b = _mm256_set1_epi32(*yt.add((y[0].to_i32() & 0xff) as usize));
            let mut i = 0;
            while i < x.len() {
                let count = (x.len() - i).min(8);
                let a = _mm256_i32gather_epi32::<4>(xt, load_index8(x.as_ptr().add(i), count));
                finish(a, b, out.as_mut_ptr().add(i), count);
                i += 8;
            }
            return;
        }
        let mut row = 0;
        while row < x.len() {
            let mut c = 0;
            while c < period {
                let count = (period - c).min(8);
                let a =
                    _mm256_i32gather_epi32::<4>(xt, load_index8(x.as_ptr().add(row + c), count));
                let b = _mm256_i32gather_epi32::<4>(yt, load_index8(y.as_ptr().add(c), count));
                finish(a, b, out.as_mut_ptr().add(row + c), count);
                c += 8;
            }
            row += period;
        }
    }
}
