//! TFLite's `MultiplyByQuantizedMultiplier` (double rounding) on vectors of int32 accumulators,
//! bit for bit ([`ChannelRequant::apply`](crate::frame::depthwise::ChannelRequant::apply) is the
//! scalar form, tested against `octet_core::fixed_point`).
//!
//! Per lane, with a non-negative multiplier `m` (checked when the parameters are prepared):
//! `x << left` (wrapping; a shift of 32 gives 0, as `vpsllvd` does), then the high product
//! `(x * m + 2^30) >> 31` in 64 bits (`vpmuldq` on the even and odd lanes: for `m >= 0` this floor
//! shift equals gemmlowp's `SaturatingRoundingDoublingHighMul`, which never saturates there),
//! then the rounding division by `2^right`, ties away from zero.
//!
//! All functions here are `#[target_feature]` helpers with no memory access: the kernels call
//! them from their own `unsafe` bodies.

use std::arch::x86_64::*;

/// Requantizes 8 lanes: `acc` with per-lane `multiplier`, `left` and `right` shifts.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn requant_avx2(
    acc: __m256i,
    multiplier: __m256i,
    left: __m256i,
    right: __m256i,
) -> __m256i {
    let x = _mm256_sllv_epi32(acc, left);
    let rounding = _mm256_set1_epi64x(1 << 30);
    let even = _mm256_add_epi64(_mm256_mul_epi32(x, multiplier), rounding);
    let odd = _mm256_add_epi64(
        _mm256_mul_epi32(
            _mm256_srli_epi64::<32>(x),
            _mm256_srli_epi64::<32>(multiplier),
        ),
        rounding,
    );
    // Bits 31..62 of each 64-bit product: in the low half for even lanes, the high half for odd.
    let high = _mm256_blend_epi32::<0b1010_1010>(
        _mm256_srli_epi64::<31>(even),
        _mm256_slli_epi64::<1>(odd),
    );
    let one = _mm256_set1_epi32(1);
    let mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, right), one);
    let remainder = _mm256_and_si256(high, mask);
    // threshold = (mask >> 1) + (high < 0); srai(high, 31) is -1 for negative lanes.
    let threshold = _mm256_sub_epi32(_mm256_srai_epi32::<1>(mask), _mm256_srai_epi32::<31>(high));
    let quotient = _mm256_srav_epi32(high, right);
    // cmpgt is -1 where the remainder exceeds the threshold: subtracting it rounds up.
    _mm256_sub_epi32(quotient, _mm256_cmpgt_epi32(remainder, threshold))
}

/// Requantizes 16 lanes (see [`requant_avx2`]).
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) fn requant_avx512(
    acc: __m512i,
    multiplier: __m512i,
    left: __m512i,
    right: __m512i,
) -> __m512i {
    let x = _mm512_sllv_epi32(acc, left);
    let rounding = _mm512_set1_epi64(1 << 30);
    let even = _mm512_add_epi64(_mm512_mul_epi32(x, multiplier), rounding);
    let odd = _mm512_add_epi64(
        _mm512_mul_epi32(
            _mm512_srli_epi64::<32>(x),
            _mm512_srli_epi64::<32>(multiplier),
        ),
        rounding,
    );
    let high = _mm512_mask_blend_epi32(
        0b1010_1010_1010_1010,
        _mm512_srli_epi64::<31>(even),
        _mm512_slli_epi64::<1>(odd),
    );
    let one = _mm512_set1_epi32(1);
    let mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, right), one);
    let remainder = _mm512_and_si512(high, mask);
    let threshold = _mm512_sub_epi32(_mm512_srai_epi32::<1>(mask), _mm512_srai_epi32::<31>(high));
    let quotient = _mm512_srav_epi32(high, right);
    let round_up = _mm512_cmpgt_epi32_mask(remainder, threshold);
    _mm512_mask_add_epi32(quotient, round_up, quotient, one)
}

/// The checked float requantization of [`FastRequant`](crate::frame::requant::FastRequant) on
/// 16 accumulators: the requantized value plus the zero point (before the clamp), with the
/// lanes too close to a rounding boundary to be trusted added to `ambiguous` (their value is
/// then meaningless; the caller recomputes them with [`requant_avx512`]).
#[target_feature(enable = "avx512f,avx512dq")]
#[inline]
pub(super) fn fast_requant_avx512(
    acc: __m512i,
    scale: __m512,
    offset: __m512,
    offset_neg: __m512,
    threshold: __m512i,
    window: __m512,
    ambiguous: &mut __mmask16,
) -> __m512i {
    let negative = _mm512_cmplt_epi32_mask(acc, threshold);
    let c = _mm512_mask_blend_ps(negative, offset, offset_neg);
    let f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), scale, c);
    // f - floor(f) (imm: no fraction bits kept, round down, precision exception suppressed).
    let frac = _mm512_reduce_ps::<0b0000_1001>(f);
    *ambiguous |= _mm512_cmp_ps_mask::<_CMP_LT_OQ>(frac, window);
    _mm512_cvt_roundps_epi32::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(f)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code

    use super::*;
    use crate::Isa;
    use crate::frame::depthwise::ChannelRequant;
    use octet_core::fixed_point::{QuantizedMultiplier, multiply_by_quantized_multiplier};

    /// Values and multipliers at the edges: extreme accumulators, every shift, ties.
    fn cases() -> Vec<(i32, QuantizedMultiplier)> {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut out = Vec::new();
        let xs = [
            0,
            1,
            -1,
            i32::MAX,
            i32::MIN,
            i32::MIN + 1,
            1 << 30,
            -(1 << 30),
            12345,
            -12345,
        ];
        for shift in -31..=33 {
            for m in [0, 1, 1 << 30, i32::MAX, (1 << 30) + 12345, 1_518_500_250] {
                for &x in &xs {
                    out.push((
                        x,
                        QuantizedMultiplier {
                            multiplier: m,
                            shift,
                        },
                    ));
                }
                for _ in 0..20 {
                    let x = rng.i32(..) >> rng.u32(0..31);
                    out.push((
                        x,
                        QuantizedMultiplier {
                            multiplier: m,
                            shift,
                        },
                    ));
                }
            }
        }
        out
    }

    #[test]
    fn scalar_form_matches_tflite() {
        for (x, m) in cases() {
            let r = ChannelRequant::new(m).unwrap();
            assert_eq!(
                r.apply(x),
                multiply_by_quantized_multiplier(x, m),
                "{x} {m:?}"
            );
        }
    }

    #[test]
    fn vector_forms_match_scalar() {
        let cases = cases();
        for chunk in cases.chunks(16) {
            if chunk.len() < 16 {
                continue;
            }
            let r: Vec<ChannelRequant> = chunk
                .iter()
                .map(|&(_, m)| ChannelRequant::new(m).unwrap())
                .collect();
            let lanes = |f: fn(&ChannelRequant) -> i32| r.iter().map(f).collect::<Vec<i32>>();
            let x: Vec<i32> = chunk.iter().map(|c| c.0).collect();
            let (m, l, rs) = (
                lanes(|r| r.multiplier),
                lanes(|r| r.left),
                lanes(|r| r.right),
            );
            let expected: Vec<i32> = chunk
                .iter()
                .map(|&(x, m)| multiply_by_quantized_multiplier(x, m))
                .collect();
            let mut got = [0i32; 16];
            if Isa::Avx2.is_supported() {
                // SAFETY: AVX2 is supported; every load and store covers 8 elements of
                // 16-element arrays.
                unsafe {
                    let ld = |v: &[i32], o: usize| {
                        _mm256_loadu_si256(v.as_ptr().add(o).cast::<__m256i>())
                    };
                    for o in [0, 8] {
                        let y = requant_avx2(ld(&x, o), ld(&m, o), ld(&l, o), ld(&rs, o));
                        _mm256_storeu_si256(got.as_mut_ptr().add(o).cast::<__m256i>(), y);
                    }
                }
                assert_eq!(got.as_slice(), expected.as_slice(), "avx2");
            }
            if Isa::Avx512.is_supported() {
                // SAFETY: AVX-512 is supported; every load and store covers 16 elements of
                // 16-element arrays.
                unsafe {
                    let ld = |v: &[i32]| _mm512_loadu_si512(v.as_ptr().cast::<__m512i>());
                    let y = requant_avx512(ld(&x), ld(&m), ld(&l), ld(&rs));
                    _mm512_storeu_si512(got.as_mut_ptr().cast::<__m512i>(), y);
                }
                assert_eq!(got.as_slice(), expected.as_slice(), "avx512");
            }
        }
    }
}
