//! TFLite's `MultiplyByQuantizedMultiplier` (double rounding) on vectors of int32 accumulators,
//! bit for bit, for every kernel family (GEMM output stages, depthwise, element-wise): the
//! exact integer form ([`Fixed512`], [`Fixed256`]) and the checked float form
//! ([`fast_requant_avx512`]). `crate::frame::requant` holds the scalar forms and the proofs;
//! the tests below check the vector forms against `octet_core::fixed_point`.
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

/// The exact requantization of 16 lanes with per-lane parameters, the derived vectors
/// computed once (a kernel loads it per block of columns or channels).
#[derive(Clone, Copy)]
pub(super) struct Fixed512 {
    multiplier: __m512i,
    multiplier_odd: __m512i,
    left: __m512i,
    right: __m512i,
    mask: __m512i,
    half: __m512i,
    any_left: bool,
}

impl Fixed512 {
    /// Per-lane Q0.31 `multiplier` (non-negative), `left` shift (0..=32) and `right` shift
    /// (0..=31); `any_left` false promises that every left shift is 0.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) fn new(multiplier: __m512i, left: __m512i, right: __m512i, any_left: bool) -> Self {
        let one = _mm512_set1_epi32(1);
        let mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, right), one);
        Fixed512 {
            multiplier,
            multiplier_odd: _mm512_srli_epi64::<32>(multiplier),
            left,
            right,
            mask,
            half: _mm512_srli_epi32::<1>(mask),
            any_left,
        }
    }

    /// One multiplier for every lane (shift within `-31..=32`).
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) fn splat(m: octet_core::fixed_point::QuantizedMultiplier) -> Self {
        Fixed512::new(
            _mm512_set1_epi32(m.multiplier),
            _mm512_set1_epi32(m.shift.clamp(0, 32)),
            _mm512_set1_epi32((-m.shift).clamp(0, 31)),
            m.shift > 0,
        )
    }

    /// Per lane: selects `other`'s parameters where `pick` is set.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) fn select(self, pick: __mmask16, other: Fixed512) -> Fixed512 {
        let b = |a: __m512i, o: __m512i| _mm512_mask_blend_epi32(pick, a, o);
        let multiplier = b(self.multiplier, other.multiplier);
        Fixed512 {
            multiplier,
            // Derived again: lane 2i + 1's multiplier sits in lane 2i here.
            multiplier_odd: _mm512_srli_epi64::<32>(multiplier),
            left: b(self.left, other.left),
            right: b(self.right, other.right),
            mask: b(self.mask, other.mask),
            half: b(self.half, other.half),
            any_left: self.any_left || other.any_left,
        }
    }

    /// `MultiplyByQuantizedMultiplier` of 16 accumulators.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) fn apply(&self, acc: __m512i) -> __m512i {
        let x = if self.any_left {
            _mm512_sllv_epi32(acc, self.left)
        } else {
            acc
        };
        // (x * m + 2^30) >> 31 per lane: even lanes in the low halves of the 64-bit products,
        // odd lanes in the high halves after the shift by 1.
        let round = _mm512_set1_epi64(1 << 30);
        let even = _mm512_add_epi64(_mm512_mul_epi32(x, self.multiplier), round);
        let odd = _mm512_add_epi64(
            _mm512_mul_epi32(_mm512_srli_epi64::<32>(x), self.multiplier_odd),
            round,
        );
        let high = _mm512_mask_blend_epi32(
            0xAAAA,
            _mm512_srli_epi64::<31>(even),
            _mm512_slli_epi64::<1>(odd),
        );
        // Rounding divide by 2^right, ties away from zero: the remainder against half the
        // divisor, plus one for negative values.
        let remainder = _mm512_and_si512(high, self.mask);
        let threshold = _mm512_add_epi32(self.half, _mm512_srli_epi32::<31>(high));
        let quotient = _mm512_srav_epi32(high, self.right);
        let up = _mm512_cmpgt_epi32_mask(remainder, threshold);
        _mm512_mask_add_epi32(quotient, up, quotient, _mm512_set1_epi32(1))
    }
}

/// [`Fixed512`] on 8 lanes (AVX2).
#[derive(Clone, Copy)]
pub(super) struct Fixed256 {
    multiplier: __m256i,
    multiplier_odd: __m256i,
    left: __m256i,
    right: __m256i,
    mask: __m256i,
    half: __m256i,
    any_left: bool,
}

impl Fixed256 {
    /// See [`Fixed512::new`].
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(super) fn new(multiplier: __m256i, left: __m256i, right: __m256i, any_left: bool) -> Self {
        let one = _mm256_set1_epi32(1);
        let mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, right), one);
        Fixed256 {
            multiplier,
            multiplier_odd: _mm256_srli_epi64::<32>(multiplier),
            left,
            right,
            mask,
            half: _mm256_srli_epi32::<1>(mask),
            any_left,
        }
    }

    /// See [`Fixed512::splat`].
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(super) fn splat(m: octet_core::fixed_point::QuantizedMultiplier) -> Self {
        Fixed256::new(
            _mm256_set1_epi32(m.multiplier),
            _mm256_set1_epi32(m.shift.clamp(0, 32)),
            _mm256_set1_epi32((-m.shift).clamp(0, 31)),
            m.shift > 0,
        )
    }

    /// See [`Fixed512::apply`].
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(super) fn apply(&self, acc: __m256i) -> __m256i {
        let x = if self.any_left {
            _mm256_sllv_epi32(acc, self.left)
        } else {
            acc
        };
        let round = _mm256_set1_epi64x(1 << 30);
        let even = _mm256_add_epi64(_mm256_mul_epi32(x, self.multiplier), round);
        let odd = _mm256_add_epi64(
            _mm256_mul_epi32(_mm256_srli_epi64::<32>(x), self.multiplier_odd),
            round,
        );
        // Bits 31..62 of each 64-bit product: in the low half for even lanes, the high half for
        // odd ones.
        let high = _mm256_blend_epi32::<0b1010_1010>(
            _mm256_srli_epi64::<31>(even),
            _mm256_slli_epi64::<1>(odd),
        );
        let remainder = _mm256_and_si256(high, self.mask);
        let threshold = _mm256_add_epi32(self.half, _mm256_srli_epi32::<31>(high));
        let quotient = _mm256_srav_epi32(high, self.right);
        // cmpgt is -1 where the remainder exceeds the threshold: subtracting it rounds up.
        _mm256_sub_epi32(quotient, _mm256_cmpgt_epi32(remainder, threshold))
    }
}

/// Requantizes 8 lanes: `acc` with per-lane `multiplier`, `left` and `right` shifts.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn requant_avx2(
    acc: __m256i,
    multiplier: __m256i,
    left: __m256i,
    right: __m256i,
) -> __m256i {
    Fixed256::new(multiplier, left, right, true).apply(acc)
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
    Fixed512::new(multiplier, left, right, true).apply(acc)
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
