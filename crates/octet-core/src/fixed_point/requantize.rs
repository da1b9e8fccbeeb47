//! Applying a [`QuantizedMultiplier`] to an integer accumulator, mirroring TFLite
//! `tensorflow/lite/kernels/internal/common.h` / `common.cc` (`MultiplyByQuantizedMultiplier*`).

use super::QuantizedMultiplier;
use super::primitives::{rounding_divide_by_pot_i32, saturating_rounding_doubling_high_mul_i32};

/// `x * 2^shift` modulo 2^32, the value of TFLite's `x * (1 << left_shift)` on two's-complement
/// hardware (signed overflow there is formally undefined, and TFLite marks these functions
/// `TFLITE_NO_SANITIZE_INTEGER_OVERFLOW` because it happens). Shifts of 32 or more give 0.
fn wrapping_left_shift(x: i32, shift: i32) -> i32 {
    if shift >= 32 {
        0
    } else {
        x.wrapping_shl(shift.max(0) as u32)
    }
}

/// `(product + 2^(total_shift - 1)) >> total_shift` computed exactly (a rounding right shift,
/// ties towards +infinity), or `product << -total_shift` when `total_shift <= 0`, truncated to 32
/// bits as TFLite's final `int64_t -> int32_t` conversion does.
fn round_shift_truncate(product: i128, total_shift: i64) -> i32 {
    // |product| < 2^79 for every caller, so shifts of 100 already round everything to 0 or -1 and
    // left shifts of 32 already clear the low 32 bits: clamping keeps the result exact.
    let result = if total_shift >= 1 {
        let total_shift = total_shift.min(100) as u32;
        (product + (1_i128 << (total_shift - 1))) >> total_shift
    } else {
        product << (-total_shift).min(32) as u32
    };
    result as i32
}

/// TFLite `MultiplyByQuantizedMultiplier(int32_t x, int32_t quantized_multiplier, int shift)` in the
/// default double-rounding build: `x * multiplier`, rounded, as used by every int8/uint8
/// conv / fully-connected / add / mul / pool requantization step.
///
/// Computes `RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x * 2^left, multiplier), right)`
/// with `left = max(shift, 0)`, `right = max(-shift, 0)`. That rounds twice: first ties towards
/// +infinity at bit 31, then ties away from zero at the shift, so e.g. `-0.5` becomes `0` when
/// `shift == 0` but `-1` when `shift < 0`. The left shift wraps on overflow exactly like TFLite's
/// `int32_t` multiplication does in practice; keep `x * 2^shift` within `i32` (TFLite's kernels
/// do). Right shifts beyond 31 (never produced by [`quantize_multiplier`](super::quantize_multiplier))
/// are the correctly rounded [`rounding_divide_by_pot_i32`] extension.
#[must_use]
#[inline]
pub fn multiply_by_quantized_multiplier(x: i32, m: QuantizedMultiplier) -> i32 {
    let left_shift = m.shift.max(0);
    let right_shift = if m.shift > 0 {
        0
    } else {
        m.shift.saturating_neg()
    };
    rounding_divide_by_pot_i32(
        saturating_rounding_doubling_high_mul_i32(wrapping_left_shift(x, left_shift), m.multiplier),
        right_shift,
    )
}

/// TFLite `MultiplyByQuantizedMultiplierSmallerThanOneExp` (double-rounding build):
/// `RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x, multiplier), -shift)`, for multipliers
/// from [`quantize_multiplier_smaller_than_one_exp`](super::quantize_multiplier_smaller_than_one_exp)
/// (`shift <= 0`). Used by the legacy uint8/int8 add/sub paths and L2 normalisation.
///
/// For `shift <= 0` this is operation-for-operation [`multiply_by_quantized_multiplier`] (whose left
/// shift is then 0), so it delegates to it; a positive shift, which TFLite would assert on, is
/// therefore applied as a left shift.
#[must_use]
#[inline]
pub fn multiply_by_quantized_multiplier_smaller_than_one_exp(
    x: i32,
    m: QuantizedMultiplier,
) -> i32 {
    multiply_by_quantized_multiplier(x, m)
}

/// TFLite `MultiplyByQuantizedMultiplierGreaterThanOne` (double-rounding build):
/// `SaturatingRoundingDoublingHighMul(x * 2^shift, multiplier)`, for multipliers from
/// [`quantize_multiplier_greater_than_one`](super::quantize_multiplier_greater_than_one)
/// (`shift >= 0`). Used by softmax's input scaling.
///
/// For `shift >= 0` this is operation-for-operation [`multiply_by_quantized_multiplier`] (whose
/// right shift is then 0, an identity), so it delegates to it; a negative shift, undefined in
/// TFLite, is therefore applied as a rounding right shift.
#[must_use]
#[inline]
pub fn multiply_by_quantized_multiplier_greater_than_one(x: i32, m: QuantizedMultiplier) -> i32 {
    multiply_by_quantized_multiplier(x, m)
}

/// TFLite `MultiplyByQuantizedMultiplier(int64_t x, int32_t quantized_multiplier, int shift)`, the
/// variant for 64-bit accumulators (int16x8 conv / fully-connected / transpose conv with int64
/// bias). It is the same code in the double- and single-rounding builds.
///
/// The multiplier is first reduced to 15 bits, `reduced = (multiplier + 2^15) >> 16` (or `0x7FFF`
/// when `multiplier >= 0x7FFF0000`), then `result = (x * reduced + 2^(14 - shift)) >> (15 - shift)`
/// (round to nearest, ties towards +infinity), truncated to `i32`. Note the precision loss: the
/// effective multiplier has only 15 significant bits.
///
/// TFLite's domain is `multiplier >= 0`, `-31 <= shift <= 7`, `-2^47 <= x < 2^47`, with the result
/// fitting in `i32`; there this is bit-identical. Outside it TFLite overflows `int64_t` or shifts
/// by a negative amount (undefined behaviour); octet computes the exact value in 128 bits, applies
/// a non-positive total shift as a left shift, and truncates to 32 bits.
#[must_use]
#[inline]
pub fn multiply_by_quantized_multiplier_i64(x: i64, m: QuantizedMultiplier) -> i32 {
    let reduced_multiplier: i64 = if m.multiplier < 0x7FFF_0000 {
        // No overflow: multiplier + 2^15 < 0x7FFF_8000.
        i64::from((m.multiplier + (1 << 15)) >> 16)
    } else {
        0x7FFF
    };
    let total_shift = 15 - i64::from(m.shift);
    round_shift_truncate(i128::from(x) * i128::from(reduced_multiplier), total_shift)
}

/// TFLite `MultiplyByQuantizedMultiplier(int32_t, int32_t, int)` as compiled with
/// `TFLITE_SINGLE_ROUNDING` (the TFLite Micro / some embedded builds, not the pip wheels):
/// `(x * multiplier + 2^(30 - shift)) >> (31 - shift)` in 64 bits, i.e. one rounding, ties towards
/// +infinity.
///
/// TFLite's domain is `multiplier >= 0` and `-31 <= shift <= 30` (use
/// [`quantize_multiplier_single_rounding`](super::quantize_multiplier_single_rounding), which caps
/// the shift), with the result fitting in `i32`. Outside it the exact value is computed in 128
/// bits, a non-positive total shift is applied as a left shift, and the result is truncated to
/// 32 bits. In that build `MultiplyByQuantizedMultiplierSmallerThanOneExp` and
/// `...GreaterThanOne` are this same function.
#[must_use]
#[inline]
pub fn multiply_by_quantized_multiplier_single_rounding(x: i32, m: QuantizedMultiplier) -> i32 {
    let total_shift = 31 - i64::from(m.shift);
    round_shift_truncate(i128::from(x) * i128::from(m.multiplier), total_shift)
}

/// The effective scale of TFLite's double-precision requantization, `input_scale *
/// filter_scale / output_scale` with each factor widened to `f64` first (TFLite's order).
#[inline]
pub fn double_effective_scale(input_scale: f32, filter_scale: f32, output_scale: f32) -> f64 {
    f64::from(input_scale) * f64::from(filter_scale) / f64::from(output_scale)
}

/// TFLite's double-precision requantization, used by the reference FULLY_CONNECTED overloads
/// that take float scales: `static_cast<int32_t>(round(static_cast<double>(acc) * scale))`,
/// rounding half away from zero. A result outside `i32` (undefined behaviour in C++) gives
/// `i32::MIN`, the value x86's `cvttsd2si` produces and so what LiteRT's x86 wheels compute.
#[inline]
pub fn requantize_double(acc: f64, effective_scale: f64) -> i32 {
    let r = (acc * effective_scale).round();
    if (-2_147_483_648.0..2_147_483_648.0).contains(&r) {
        r as i32
    } else {
        i32::MIN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixed_point::quantize_multiplier;
    use crate::fixed_point::test_util::{
        XorShift, round_half_away_div_pow2, round_half_up_div_pow2,
    };

    fn qm(multiplier: i32, shift: i32) -> QuantizedMultiplier {
        QuantizedMultiplier::new(multiplier, shift)
    }

    /// Exact i128 model of the double-rounding pipeline, written from its mathematical
    /// definition (floor divisions) rather than from gemmlowp's mask/threshold formulation.
    fn model_double_rounding(x: i32, m: QuantizedMultiplier) -> i128 {
        let left = m.shift.max(0) as u32;
        let right = (-m.shift).max(0) as u32;
        let shifted = i128::from(x) << left; // callers keep this within i32
        let high = if shifted == i128::from(i32::MIN) && m.multiplier == i32::MIN {
            i128::from(i32::MAX)
        } else {
            round_half_up_div_pow2(shifted * i128::from(m.multiplier), 31)
        };
        round_half_away_div_pow2(high, right)
    }

    fn nearest(v: f64) -> i64 {
        v.round() as i64
    }

    #[test]
    fn worked_requantization_example() {
        // acc = 1000, real multiplier 0.0123 -> (1690499128, -6) (see multiplier tests).
        // SRDHM: 1000 * 1690499128 / 2^31 = 787.2 -> 787; then 787 / 2^6 = 12.297 -> 12.
        // Float: 1000 * 0.0123 = 12.3 -> 12.
        let m = quantize_multiplier(0.0123).unwrap();
        assert_eq!(m, qm(1_690_499_128, -6));
        assert_eq!(multiply_by_quantized_multiplier(1000, m), 12);
        assert_eq!(multiply_by_quantized_multiplier(-1000, m), -12);
        // 20000 * 0.0123 = 246: SRDHM 15744.0 -> 15744; / 64 = 246.0 -> 246.
        assert_eq!(multiply_by_quantized_multiplier(20_000, m), 246);
        // 1220 * 0.0123 = 15.006; 1219 * 0.0123 = 14.9937 -> 15; 1179 * 0.0123 = 14.5017 -> 15;
        // 1178 * 0.0123 = 14.4894 -> 14.
        assert_eq!(multiply_by_quantized_multiplier(1220, m), 15);
        assert_eq!(multiply_by_quantized_multiplier(1179, m), 15);
        assert_eq!(multiply_by_quantized_multiplier(1178, m), 14);
        assert_eq!(multiply_by_quantized_multiplier(-1179, m), -15);
        assert_eq!(multiply_by_quantized_multiplier(-1178, m), -14);
    }

    #[test]
    fn double_rounding_tie_behaviour() {
        // real 0.5 = (2^30, 0): 1 * 0.5 -> SRDHM ties up -> 1; -1 * 0.5 -> 0 (not -1).
        assert_eq!(multiply_by_quantized_multiplier(1, qm(1 << 30, 0)), 1);
        assert_eq!(multiply_by_quantized_multiplier(-1, qm(1 << 30, 0)), 0);
        // real 0.25 = (2^30, -1): 2 * 0.25 = 0.5. SRDHM(2, 2^30) = 1 exactly, then 1 / 2 = 0.5
        // rounds away from zero -> 1. For -2: SRDHM(-2, 2^30) = -1, -1/2 -> -1. So -0.5 gives -1
        // here but 0 above: the tie direction depends on the shift.
        assert_eq!(multiply_by_quantized_multiplier(2, qm(1 << 30, -1)), 1);
        assert_eq!(multiply_by_quantized_multiplier(-2, qm(1 << 30, -1)), -1);
        // Genuine double rounding: real 0.375 = (3 * 2^29, -1), x = 1.
        // SRDHM(1, 3 * 2^29) = 0.75 -> 1; then 1 / 2 = 0.5 -> 1. Exact 0.375 would round to 0,
        // which is what single rounding gives.
        assert_eq!(multiply_by_quantized_multiplier(1, qm(3 << 29, -1)), 1);
        assert_eq!(
            multiply_by_quantized_multiplier_single_rounding(1, qm(3 << 29, -1)),
            0
        );
        // Single rounding ties go towards +infinity: 1 * 0.5 -> 1, -1 * 0.5 -> 0, -3 * 0.5 -> -1.
        assert_eq!(
            multiply_by_quantized_multiplier_single_rounding(1, qm(1 << 30, 0)),
            1
        );
        assert_eq!(
            multiply_by_quantized_multiplier_single_rounding(-1, qm(1 << 30, 0)),
            0
        );
        assert_eq!(
            multiply_by_quantized_multiplier_single_rounding(-3, qm(1 << 30, 0)),
            -1
        );
    }

    #[test]
    fn left_shift_and_saturation() {
        // real 3.0 = (3 * 2^29, 2): 7 * 3 = 21.
        assert_eq!(multiply_by_quantized_multiplier(7, qm(3 << 29, 2)), 21);
        assert_eq!(multiply_by_quantized_multiplier(-7, qm(3 << 29, 2)), -21);
        // i32::MIN * (just under 1.0) with multiplier i32::MIN-like saturation: SRDHM(MIN, MIN)
        // is the only saturating case; through the multiplier path it needs multiplier == MIN.
        assert_eq!(
            multiply_by_quantized_multiplier(i32::MIN, qm(i32::MIN, 0)),
            i32::MAX
        );
        // The left shift wraps (TFLite's int32 multiply): 2^30 * 2 = 2^31 wraps to i32::MIN, and
        // then * 0.5 gives -2^30.
        assert_eq!(
            multiply_by_quantized_multiplier(1 << 30, qm(1 << 30, 1)),
            -(1 << 30)
        );
        // Zero multiplier (flushed tiny scales) always gives 0.
        assert_eq!(
            multiply_by_quantized_multiplier(i32::MAX, QuantizedMultiplier::ZERO),
            0
        );
        assert_eq!(
            multiply_by_quantized_multiplier(i32::MIN, QuantizedMultiplier::ZERO),
            0
        );
        // Out-of-contract shifts never panic.
        assert_eq!(multiply_by_quantized_multiplier(5, qm(1 << 30, 40)), 0);
        assert_eq!(
            multiply_by_quantized_multiplier(5, qm(1 << 30, i32::MIN)),
            0
        );
        assert_eq!(
            multiply_by_quantized_multiplier(5, qm(1 << 30, i32::MAX)),
            0
        );
    }

    #[test]
    fn restricted_variants_match_their_tflite_definitions() {
        let mut rng = XorShift::new(0x0e5);
        for _ in 0..100_000 {
            let x = rng.next_i32_spread();
            let multiplier = (1 << 30) + (rng.next_u32() >> 2) as i32;
            // SmallerThanOneExp: RDBPOT(SRDHM(x, m), -left_shift), left_shift in [-31, 0].
            let shift = -((rng.next_u32() % 32) as i32);
            let m = qm(multiplier, shift);
            let literal = rounding_divide_by_pot_i32(
                saturating_rounding_doubling_high_mul_i32(x, multiplier),
                -shift,
            );
            assert_eq!(
                multiply_by_quantized_multiplier_smaller_than_one_exp(x, m),
                literal
            );
            // GreaterThanOne: SRDHM(x * 2^left_shift, m), left_shift >= 0 and no overflow.
            let shift = (rng.next_u32() % 8) as i32;
            let x = x >> 8;
            let m = qm(multiplier, shift);
            let literal = saturating_rounding_doubling_high_mul_i32(x * (1 << shift), multiplier);
            assert_eq!(
                multiply_by_quantized_multiplier_greater_than_one(x, m),
                literal
            );
        }
    }

    #[test]
    fn double_rounding_matches_exact_model() {
        let mut rng = XorShift::new(0xd0b1e);
        for i in 0..300_000 {
            let mut m = qm(
                (1 << 30) + (rng.next_u32() >> 2) as i32,
                (rng.next_u32() % 40) as i32 - 32,
            );
            if i % 5 == 0 {
                m.multiplier = rng.next_u32() as i32; // any multiplier, even negative
            }
            // Keep x * 2^left within i32 so the model needs no wrapping.
            let x = rng.next_i32_spread() >> m.shift.max(0);
            let got = multiply_by_quantized_multiplier(x, m);
            assert_eq!(
                i128::from(got),
                model_double_rounding(x, m),
                "x={x} m={m:?}"
            );
        }
    }

    #[test]
    fn requantization_is_within_one_of_float() {
        let mut rng = XorShift::new(0xf10a7);
        for _ in 0..300_000 {
            let real = rng.next_f64_log(1e-6, 100.0);
            let m = quantize_multiplier(real).unwrap();
            let x = rng.next_i32_spread() >> 8; // |x| < 2^23, so |x| * 2^7 fits
            let exact = f64::from(x) * real;
            let got = multiply_by_quantized_multiplier(x, m);
            assert!(
                (i64::from(got) - nearest(exact)).abs() <= 1,
                "x={x} real={real} got={got} exact={exact}"
            );
            // And within 0.5 + 2^-31 * |exact| + 0.5 of the unrounded product.
            assert!((f64::from(got) - exact).abs() <= 1.0 + exact.abs() * 2f64.powi(-30));
            let single = multiply_by_quantized_multiplier_single_rounding(x, m);
            // Single rounding is off by at most half a unit plus the multiplier's error.
            assert!(
                (f64::from(single) - exact).abs() <= 0.5 + exact.abs() * 2f64.powi(-30) + 1e-9,
                "x={x} real={real} single={single} exact={exact}"
            );
        }
    }

    #[test]
    fn single_rounding_matches_exact_model() {
        let mut rng = XorShift::new(0x5146);
        for _ in 0..200_000 {
            let m = qm(
                (rng.next_u32() >> 1) as i32,
                (rng.next_u32() % 62) as i32 - 31,
            );
            let x = rng.next_i32_spread();
            let ts = (31 - m.shift) as u32;
            let exact = round_half_up_div_pow2(i128::from(x) * i128::from(m.multiplier), ts);
            assert_eq!(
                multiply_by_quantized_multiplier_single_rounding(x, m),
                exact as i32,
                "x={x} m={m:?}"
            );
        }
    }

    #[test]
    fn int64_variant_hand_values() {
        // real 0.5 = (2^30, 0): reduced = (2^30 + 2^15) >> 16 = 2^14, total shift 15:
        // (x * 2^14 + 2^14) >> 15 = round_half_up(x / 2).
        let half = qm(1 << 30, 0);
        assert_eq!(multiply_by_quantized_multiplier_i64(3, half), 2);
        assert_eq!(multiply_by_quantized_multiplier_i64(-3, half), -1);
        assert_eq!(multiply_by_quantized_multiplier_i64(-4, half), -2);
        assert_eq!(
            multiply_by_quantized_multiplier_i64(1 << 40, qm(1 << 30, -10)),
            1 << 29
        );
        // Multiplier 0x7FFF_FFFF would reduce to 0x8000 but is clamped to 0x7FFF:
        // 2^16 * 0x7FFF / 2^15 = 65534 (not 65536).
        assert_eq!(
            multiply_by_quantized_multiplier_i64(1 << 16, qm(i32::MAX, 0)),
            65_534
        );
        // The 15-bit reduction loses precision: 0.0123 -> reduced = (1690499128 + 2^15) >> 16
        // = 25795, so 10^9 * 0.0123 comes out as round(10^9 * 25795 / 2^21) = 12300014
        // (12300014.4958...) instead of 12300000.
        let m = quantize_multiplier(0.0123).unwrap();
        assert_eq!(
            multiply_by_quantized_multiplier_i64(1_000_000_000, m),
            12_300_014
        );
        // Shift +7 (the largest TFLite allows): 3 * 0.5 * 2^7 = 192.
        assert_eq!(multiply_by_quantized_multiplier_i64(3, qm(1 << 30, 7)), 192);
        // Outside TFLite's domain nothing panics.
        let _ = multiply_by_quantized_multiplier_i64(i64::MAX, qm(i32::MAX, 7));
        let _ = multiply_by_quantized_multiplier_i64(i64::MIN, qm(i32::MIN, i32::MIN));
        let _ = multiply_by_quantized_multiplier_i64(i64::MIN, qm(i32::MAX, i32::MAX));
        assert_eq!(
            multiply_by_quantized_multiplier_i64(5, qm(1 << 30, 20)),
            5 << 19
        );
    }

    #[test]
    fn int64_variant_matches_model_and_float() {
        let mut rng = XorShift::new(0x64);
        for _ in 0..200_000 {
            let real = rng.next_f64_log(1e-7, 64.0);
            let m = quantize_multiplier(real).unwrap();
            if !(-31..=7).contains(&m.shift) {
                continue;
            }
            // |x| < 2^47 and result within i32.
            let limit = ((0.99 * f64::from(i32::MAX) / real).min(2f64.powi(47) - 1.0)) as i64;
            let x = (rng.next_u64() % (2 * limit as u64 + 1)) as i64 - limit;
            let got = multiply_by_quantized_multiplier_i64(x, m);
            // Model: reduce to 15 bits, then one round-half-up shift.
            let reduced = (i128::from(m.multiplier) + (1 << 15)) >> 16;
            let reduced = reduced.min(0x7FFF);
            let model = round_half_up_div_pow2(i128::from(x) * reduced, (15 - m.shift) as u32);
            assert_eq!(i128::from(got), model, "x={x} m={m:?}");
            // And close to the real product: the 15-bit multiplier has relative error <= 2^-15.
            let exact = x as f64 * real;
            assert!(
                (f64::from(got) - exact).abs() <= 0.5 + exact.abs() * 2f64.powi(-14) + 1e-6,
                "x={x} real={real} got={got} exact={exact}"
            );
        }
    }
}
