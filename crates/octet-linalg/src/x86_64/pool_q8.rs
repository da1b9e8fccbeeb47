//! 8-bit max pooling on AVX-512: a byte-wise maximum over the window's in-image taps, 64
//! channels per vector (masked at the end of a pixel), then the fused activation's clamp.

use std::arch::x86_64::*;

use crate::LinalgError;
use crate::frame::window::PAD;

/// Max-pools `pixels` output pixels of one segment (taps advance by `step` elements per pixel;
/// padding taps are skipped) of `c` channels into `out`, clamped to `[min, max]`; bytes are
/// `i8` when `signed`, else `u8`. Safe entry point: checks every tap of every pixel.
#[allow(clippy::too_many_arguments)]
pub(crate) fn max_pool8_avx512(
    input: &[u8],
    taps: &[u32],
    step: usize,
    c: usize,
    pixels: usize,
    out: &mut [u8],
    (min, max): (i32, i32),
    signed: bool,
) -> Result<(), LinalgError> {
    let bad = |what: &str| Err(LinalgError::mismatch(format!("max pool: {what}")));
    if pixels == 0 || c == 0 {
        return Ok(());
    }
    let Some(last) = (pixels - 1).checked_mul(step) else {
        return bad("pixel step overflows");
    };
    for &t in taps {
        if t != PAD
            && (t as usize)
                .checked_add(last)
                .and_then(|v| v.checked_add(c))
                .is_none_or(|end| end > input.len())
        {
            return bad("a tap runs past the input");
        }
    }
    if pixels.checked_mul(c).is_none_or(|n| n > out.len()) {
        return bad("output too short");
    }
    // SAFETY: every in-image tap of every pixel reads `c` bytes inside `input` and `out` holds
    // `pixels * c` bytes (checked above); the frame hands this kernel out only on CPUs with
    // AVX-512 F and BW.
    unsafe {
        if signed {
            body::<true>(input, taps, step, c, pixels, out, min, max);
        } else {
            body::<false>(input, taps, step, c, pixels, out, min, max);
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn body<const S: bool>(
    input: &[u8],
    taps: &[u32],
    step: usize,
    c: usize,
    pixels: usize,
    out: &mut [u8],
    min: i32,
    max: i32,
) {
    let lowest = _mm512_set1_epi8(if S { i8::MIN } else { 0 });
    let lo = _mm512_set1_epi8(min as i8);
    let hi = _mm512_set1_epi8(max as i8);
    let src = input.as_ptr();
    let dst = out.as_mut_ptr();
    // SAFETY: loads of `tap + p * step + ch..+count` with `ch + count <= c`, inside `input`;
    // stores of `p * c + ch..+count` inside `out` (see the entry point).
    unsafe {
        for p in 0..pixels {
            let mut ch = 0;
            while ch < c {
                let count = (c - ch).min(64);
                let mask: __mmask64 = if count == 64 {
                    u64::MAX
                } else {
                    (1u64 << count) - 1
                };
                let mut acc = lowest;
                for &t in taps {
                    if t == PAD {
                        continue;
                    }
                    let t = t as usize;
                    let v = _mm512_maskz_loadu_epi8(mask, src.add(t + p * step + ch).cast());
                    acc = if S {
                        _mm512_max_epi8(acc, v)
                    } else {
                        _mm512_max_epu8(acc, v)
                    };
                }
                let acc = super::clamp_bytes_512(acc, lo, hi, S);
                _mm512_mask_storeu_epi8(dst.add(p * c + ch).cast(), mask, acc);
                ch += 64;
            }
        }
    }
}
