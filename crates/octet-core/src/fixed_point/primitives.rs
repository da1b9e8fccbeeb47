//! gemmlowp's scalar fixed-point primitives (`fixedpoint/fixedpoint.h`, part 1), plus the two
//! TFLite additions to them in `common.h` that are not plain saturating integer ops.
//!
//! TFLite's `SaturatingAddNonGemmlowp` and `SaturatingSub` are exactly `i32::saturating_add` /
//! `i32::saturating_sub` (and `i16::saturating_sub`), so they have no wrapper here.

/// gemmlowp `SaturatingRoundingDoublingHighMul<int32_t>` (ARM NEON `VQRDMULH`): the product of two
/// Q0.31 numbers as a Q0.31 number, `a * b / 2^31` rounded to nearest with ties towards +infinity,
/// saturating the one overflowing case `i32::MIN * i32::MIN` to `i32::MAX`.
///
/// This is the workhorse of every requantization and of all gemmlowp fixed-point math.
#[must_use]
#[inline]
pub fn saturating_rounding_doubling_high_mul_i32(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = i64::from(a) * i64::from(b);
    // gemmlowp nudges by +2^30 or by 1 - 2^30 and then divides with C++'s truncating division,
    // which Rust's `/` on i64 reproduces. Net effect: round half towards +infinity.
    let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    // |ab| <= 2^62 - 2^31 here, so the quotient always fits in an i32.
    ((ab + nudge) / (1_i64 << 31)) as i32
}

/// gemmlowp `SaturatingRoundingDoublingHighMul<int16_t>`: the Q0.15 analogue of
/// [`saturating_rounding_doubling_high_mul_i32`] (ARM `VQRDMULH.S16`), used by int16 kernels.
#[must_use]
#[inline]
pub fn saturating_rounding_doubling_high_mul_i16(a: i16, b: i16) -> i16 {
    if a == i16::MIN && b == i16::MIN {
        return i16::MAX;
    }
    let ab = i32::from(a) * i32::from(b);
    let nudge: i32 = if ab >= 0 { 1 << 14 } else { 1 - (1 << 14) };
    // |ab| <= 2^30 - 2^15 here, so the quotient always fits in an i16.
    ((ab + nudge) / (1_i32 << 15)) as i16
}

/// gemmlowp `RoundingDivideByPOT<int32_t>`: `x / 2^exponent` rounded to nearest, ties away from
/// zero (a rounding arithmetic right shift). E.g. `5 -> 3`, `-5 -> -3`, `-4 -> -2` for exponent 1.
///
/// gemmlowp asserts `0 <= exponent <= 31`; inside that range this is bit-identical. Outside it
/// octet defines the result instead of asserting: a negative exponent is treated as 0 (the
/// identity) and an exponent above 31 gives the correctly rounded quotient (which is 0 for every
/// `x` except `rounding_divide_by_pot_i32(i32::MIN, 32) == -1`).
#[must_use]
#[inline]
pub fn rounding_divide_by_pot_i32(x: i32, exponent: i32) -> i32 {
    // The same mask/remainder/threshold formulation evaluated in i64: for exponents 0..=31 every
    // intermediate equals gemmlowp's i32 one, and for larger exponents (up to 62, beyond which
    // nothing changes) it is still the exactly rounded quotient.
    let exponent = exponent.clamp(0, 62);
    let x = i64::from(x);
    let mask = (1_i64 << exponent) - 1;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i64::from(x < 0);
    let quotient = (x >> exponent) + i64::from(remainder > threshold);
    // |quotient| <= 2^31 only for exponent 0 (where it is x itself); it always fits.
    quotient as i32
}

/// gemmlowp `RoundingDivideByPOT<int16_t>`: the int16 analogue of [`rounding_divide_by_pot_i32`]
/// (round to nearest, ties away from zero). gemmlowp's domain is `0 <= exponent <= 15`; outside it
/// the same extension as for the i32 version applies (negative means 0, larger is exact).
#[must_use]
#[inline]
pub fn rounding_divide_by_pot_i16(x: i16, exponent: i32) -> i16 {
    let exponent = exponent.clamp(0, 30);
    let x = i32::from(x);
    let mask = (1_i32 << exponent) - 1;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    let quotient = (x >> exponent) + i32::from(remainder > threshold);
    quotient as i16
}

/// gemmlowp `SaturatingRoundingMultiplyByPOT<Exponent>` on a raw `int32_t`, with the exponent as a
/// run-time value (TFLite's `SaturatingRoundingMultiplyByPOTParam` is the same thing for
/// `exponent >= 0`).
///
/// A positive exponent is a saturating left shift (`x * 2^exponent` clamped to the i32 range); a
/// negative one is [`rounding_divide_by_pot_i32`] by `-exponent`. gemmlowp only instantiates
/// exponents up to 30 in magnitude; larger positive exponents saturate every non-zero `x` to
/// `i32::MIN`/`i32::MAX`, which is what the clamped product is.
#[must_use]
#[inline]
pub fn saturating_rounding_multiply_by_pot_i32(x: i32, exponent: i32) -> i32 {
    if exponent == 0 {
        x
    } else if exponent < 0 {
        rounding_divide_by_pot_i32(x, exponent.saturating_neg())
    } else if exponent >= 31 {
        // gemmlowp's threshold (1 << (31 - exponent)) - 1 is 0 at exponent 31; beyond that the
        // shift would be undefined in C++, and the clamped product is the same sign saturation.
        match x {
            0 => 0,
            x if x > 0 => i32::MAX,
            _ => i32::MIN,
        }
    } else {
        let threshold = (1_i32 << (31 - exponent)) - 1;
        if x > threshold {
            i32::MAX
        } else if x < -threshold {
            i32::MIN
        } else {
            // |x| <= threshold, so x * 2^exponent <= 2^31 - 2^exponent: no overflow.
            x << exponent
        }
    }
}

/// gemmlowp `RoundingHalfSum<int32_t>` (ARM `VRHADD`): `(a + b) / 2` rounded to nearest, ties away
/// from zero, computed without overflow. Used by the Newton-Raphson divisions.
#[must_use]
#[inline]
pub fn rounding_half_sum_i32(a: i32, b: i32) -> i32 {
    let sum = i64::from(a) + i64::from(b);
    let sign: i64 = if sum >= 0 { 1 } else { -1 };
    // (sum + sign) / 2 with truncating division, as in gemmlowp; always within i32.
    ((sum + sign) / 2) as i32
}

/// gemmlowp `Rescale<DST>(FixedPoint<int32_t, SRC>)`: converts a raw Q`SRC` value to Q`DST`, i.e.
/// multiplies the raw value by `2^(SRC - DST)` with [`saturating_rounding_multiply_by_pot_i32`]
/// (saturating when gaining fractional bits would overflow, rounding when dropping them).
#[must_use]
#[inline]
pub fn rescale<const SRC_INTEGER_BITS: i32, const DST_INTEGER_BITS: i32>(raw: i32) -> i32 {
    saturating_rounding_multiply_by_pot_i32(raw, SRC_INTEGER_BITS - DST_INTEGER_BITS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixed_point::test_util::{XorShift, round_half_away_div_pow2};

    #[test]
    fn srdhm_hand_values() {
        // 0.5 * 0.5 = 0.25 in Q0.31: 2^30 * 2^30 / 2^31 = 2^29 exactly.
        assert_eq!(
            saturating_rounding_doubling_high_mul_i32(1 << 30, 1 << 30),
            1 << 29
        );
        // (-1) * (-1) = +1 is not representable in Q0.31: saturates to i32::MAX.
        assert_eq!(
            saturating_rounding_doubling_high_mul_i32(i32::MIN, i32::MIN),
            i32::MAX
        );
        // (-1) * (max) = -(2^31 - 1) / 2^31 * 2^31 -> exactly -(2^31 - 1).
        assert_eq!(
            saturating_rounding_doubling_high_mul_i32(i32::MIN, i32::MAX),
            -i32::MAX
        );
        // 1 * 2^30 / 2^31 = 0.5 -> ties go up: 1.
        assert_eq!(saturating_rounding_doubling_high_mul_i32(1, 1 << 30), 1);
        // -1 * 2^30 / 2^31 = -0.5 -> ties go up (towards +inf): 0, not -1.
        assert_eq!(saturating_rounding_doubling_high_mul_i32(-1, 1 << 30), 0);
        // -3 * 2^30 / 2^31 = -1.5 -> -1 (ties towards +inf).
        assert_eq!(saturating_rounding_doubling_high_mul_i32(-3, 1 << 30), -1);
        // 3 * 2^30 / 2^31 = 1.5 -> 2.
        assert_eq!(saturating_rounding_doubling_high_mul_i32(3, 1 << 30), 2);
        // 0.3 * 2^31 is not exact; 1000 * 644245094 / 2^31 = 299.99999... -> 300.
        assert_eq!(
            saturating_rounding_doubling_high_mul_i32(1000, 644_245_094),
            300
        );
    }

    #[test]
    fn srdhm_i16_hand_values() {
        assert_eq!(
            saturating_rounding_doubling_high_mul_i16(i16::MIN, i16::MIN),
            i16::MAX
        );
        // 0.5 * 0.5 in Q0.15: 2^14 * 2^14 / 2^15 = 2^13.
        assert_eq!(
            saturating_rounding_doubling_high_mul_i16(1 << 14, 1 << 14),
            1 << 13
        );
        // 1 * 2^14 / 2^15 = 0.5 -> 1; -1 * 2^14 / 2^15 = -0.5 -> 0.
        assert_eq!(saturating_rounding_doubling_high_mul_i16(1, 1 << 14), 1);
        assert_eq!(saturating_rounding_doubling_high_mul_i16(-1, 1 << 14), 0);
        assert_eq!(
            saturating_rounding_doubling_high_mul_i16(i16::MIN, i16::MAX),
            -i16::MAX
        );
    }

    /// Independent model: floor((a*b + 2^30) / 2^31) in i128 (round half up), saturating MIN*MIN.
    #[test]
    fn srdhm_matches_i128_floor_model() {
        let mut rng = XorShift::new(0x5eed_0001);
        for i in 0..200_000 {
            let (a, b) = match i {
                0 => (i32::MIN, i32::MIN),
                1 => (i32::MIN, i32::MAX),
                2 => (i32::MAX, i32::MAX),
                3 => (i32::MIN, 1),
                _ => (rng.next_i32_spread(), rng.next_i32_spread()),
            };
            let expected = if a == i32::MIN && b == i32::MIN {
                i128::from(i32::MAX)
            } else {
                (i128::from(a) * i128::from(b) + (1 << 30)).div_euclid(1 << 31)
            };
            assert_eq!(
                i128::from(saturating_rounding_doubling_high_mul_i32(a, b)),
                expected,
                "a={a} b={b}"
            );
        }
    }

    #[test]
    fn srdhm_i16_exhaustive_rows_match_model() {
        let mut rng = XorShift::new(0x5eed_0002);
        for _ in 0..64 {
            let a = rng.next_u32() as i16;
            for b in i16::MIN..=i16::MAX {
                let expected = if a == i16::MIN && b == i16::MIN {
                    i32::from(i16::MAX)
                } else {
                    (i32::from(a) * i32::from(b) + (1 << 14)).div_euclid(1 << 15)
                };
                assert_eq!(
                    i32::from(saturating_rounding_doubling_high_mul_i16(a, b)),
                    expected
                );
            }
        }
    }

    #[test]
    fn rounding_divide_by_pot_hand_values() {
        // Ties away from zero, in both directions.
        assert_eq!(rounding_divide_by_pot_i32(5, 1), 3); // 2.5 -> 3
        assert_eq!(rounding_divide_by_pot_i32(-5, 1), -3); // -2.5 -> -3
        assert_eq!(rounding_divide_by_pot_i32(-4, 1), -2); // exact
        assert_eq!(rounding_divide_by_pot_i32(-6, 2), -2); // -1.5 -> -2
        assert_eq!(rounding_divide_by_pot_i32(-5, 2), -1); // -1.25 -> -1
        assert_eq!(rounding_divide_by_pot_i32(-7, 2), -2); // -1.75 -> -2
        assert_eq!(rounding_divide_by_pot_i32(7, 0), 7);
        // Largest gemmlowp exponent: i32::MIN / 2^31 = -1 exactly; i32::MAX / 2^31 ~ 0.99999 -> 1.
        assert_eq!(rounding_divide_by_pot_i32(i32::MIN, 31), -1);
        assert_eq!(rounding_divide_by_pot_i32(i32::MAX, 31), 1);
        assert_eq!(rounding_divide_by_pot_i32(1 << 29, 31), 0); // 0.25 -> 0
        assert_eq!(rounding_divide_by_pot_i32(1 << 30, 31), 1); // 0.5 -> 1
        assert_eq!(rounding_divide_by_pot_i32(-(1 << 30), 31), -1); // -0.5 -> -1
        // Octet's extension outside gemmlowp's domain.
        assert_eq!(rounding_divide_by_pot_i32(-9, -3), -9);
        assert_eq!(rounding_divide_by_pot_i32(i32::MIN, 32), -1); // exactly -0.5 -> -1
        assert_eq!(rounding_divide_by_pot_i32(i32::MAX, 32), 0);
        assert_eq!(rounding_divide_by_pot_i32(i32::MIN, 33), 0); // -0.25 -> 0
        assert_eq!(rounding_divide_by_pot_i32(i32::MIN + 1, 32), 0); // just above -0.5 -> 0
        assert_eq!(rounding_divide_by_pot_i32(i32::MIN, i32::MAX), 0);
        assert_eq!(rounding_divide_by_pot_i32(i32::MIN, i32::MIN), i32::MIN);
        // i16.
        assert_eq!(rounding_divide_by_pot_i16(-5, 1), -3);
        assert_eq!(rounding_divide_by_pot_i16(5, 1), 3);
        assert_eq!(rounding_divide_by_pot_i16(i16::MIN, 15), -1);
        assert_eq!(rounding_divide_by_pot_i16(i16::MAX, 15), 1);
        assert_eq!(rounding_divide_by_pot_i16(i16::MIN, 16), -1);
        assert_eq!(rounding_divide_by_pot_i16(i16::MIN, 17), 0);
        assert_eq!(rounding_divide_by_pot_i16(i16::MIN, i32::MAX), 0);
    }

    #[test]
    fn rounding_divide_by_pot_matches_model() {
        let mut rng = XorShift::new(0x5eed_0003);
        for _ in 0..200_000 {
            let x = rng.next_i32_spread();
            let e = (rng.next_u32() % 40) as i32;
            let expected = round_half_away_div_pow2(i128::from(x), e.min(40) as u32);
            assert_eq!(
                i128::from(rounding_divide_by_pot_i32(x, e)),
                expected,
                "x={x} e={e}"
            );
            let x16 = x as i16;
            let e16 = e % 31;
            let expected16 = round_half_away_div_pow2(i128::from(x16), e16 as u32);
            assert_eq!(i128::from(rounding_divide_by_pot_i16(x16, e16)), expected16);
        }
    }

    #[test]
    fn saturating_multiply_by_pot_matches_model() {
        let mut rng = XorShift::new(0x5eed_0004);
        for i in 0..200_000 {
            let x = match i % 7 {
                0 => i32::MIN,
                1 => i32::MAX,
                2 => 0,
                _ => rng.next_i32_spread(),
            };
            let e = (rng.next_u32() % 81) as i32 - 40;
            let expected = if e >= 0 {
                (i128::from(x) << e.min(40)).clamp(i128::from(i32::MIN), i128::from(i32::MAX))
            } else {
                round_half_away_div_pow2(i128::from(x), (-e) as u32)
            };
            assert_eq!(
                i128::from(saturating_rounding_multiply_by_pot_i32(x, e)),
                expected,
                "x={x} e={e}"
            );
        }
        // Hand values: 2^29 * 4 = 2^31 saturates; -2^29 * 4 = -2^31 exactly fits.
        assert_eq!(
            saturating_rounding_multiply_by_pot_i32(1 << 29, 2),
            i32::MAX
        );
        assert_eq!(
            saturating_rounding_multiply_by_pot_i32(-(1 << 29), 2),
            i32::MIN
        );
        assert_eq!(
            saturating_rounding_multiply_by_pot_i32(-(1 << 29) + 1, 2),
            i32::MIN + 4
        );
        assert_eq!(saturating_rounding_multiply_by_pot_i32(3, -1), 2);
        assert_eq!(saturating_rounding_multiply_by_pot_i32(-1, 31), i32::MIN);
        assert_eq!(
            saturating_rounding_multiply_by_pot_i32(1, i32::MAX),
            i32::MAX
        );
        // -3 / 2^(huge) rounds to 0.
        assert_eq!(saturating_rounding_multiply_by_pot_i32(-3, i32::MIN), 0);
    }

    #[test]
    fn rounding_half_sum_hand_values_and_model() {
        assert_eq!(rounding_half_sum_i32(1, 2), 2); // 1.5 -> 2
        assert_eq!(rounding_half_sum_i32(-1, -2), -2); // -1.5 -> -2
        assert_eq!(rounding_half_sum_i32(i32::MAX, i32::MAX), i32::MAX);
        assert_eq!(rounding_half_sum_i32(i32::MIN, i32::MIN), i32::MIN);
        assert_eq!(rounding_half_sum_i32(i32::MIN, i32::MAX), -1); // -0.5 -> -1
        let mut rng = XorShift::new(0x5eed_0005);
        for _ in 0..100_000 {
            let (a, b) = (rng.next_i32_spread(), rng.next_i32_spread());
            let expected = round_half_away_div_pow2(i128::from(a) + i128::from(b), 1);
            assert_eq!(i128::from(rounding_half_sum_i32(a, b)), expected);
        }
    }

    #[test]
    fn rescale_hand_values() {
        // 1.0 in Q3 (raw 2^28) is 1.0 in Q2 (raw 2^29).
        assert_eq!(rescale::<3, 2>(1 << 28), 1 << 29);
        // 1.0 in Q3 does not fit Q0: saturates to the largest Q0.31 value.
        assert_eq!(rescale::<3, 0>(1 << 28), i32::MAX);
        // Dropping fractional bits rounds: raw 3 in Q0 -> Q1 is 1.5 -> 2.
        assert_eq!(rescale::<0, 1>(3), 2);
        assert_eq!(rescale::<5, 5>(-17), -17);
    }
}
