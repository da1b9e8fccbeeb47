//! Real multiplier -> [`QuantizedMultiplier`] decomposition, mirroring TFLite
//! `tensorflow/lite/kernels/internal/quantization_util.cc`.

use super::{FixedPointError, QuantizedMultiplier};

/// `2^31` as the `i64` TFLite uses for `q_fixed`.
const TWO_POW_31: i64 = 1 << 31;

/// C's `frexp` for finite, non-zero `x`: returns `(q, e)` with `x == q * 2^e` and
/// `0.5 <= |q| < 1`. Exact (only the exponent field is changed), including for subnormals.
fn frexp(x: f64) -> (f64, i32) {
    const EXPONENT_MASK: u64 = 0x7ff << 52;
    let bits = x.to_bits();
    let biased = ((bits & EXPONENT_MASK) >> 52) as i32;
    if biased == 0 {
        // Subnormal: scale into the normal range by an exact power of two, then correct.
        let (q, e) = frexp(x * f64::from_bits((1023 + 64) << 52));
        return (q, e - 64);
    }
    // Replace the exponent by the one of [0.5, 1): biased 1022.
    let q = f64::from_bits((bits & !EXPONENT_MASK) | (1022 << 52));
    (q, biased - 1022)
}

/// Rejects inputs TFLite cannot handle meaningfully (NaN, infinities, negatives).
fn check_real(real: f64) -> Result<(), FixedPointError> {
    if !real.is_finite() {
        Err(FixedPointError::NonFiniteMultiplier(real))
    } else if real < 0.0 {
        Err(FixedPointError::NegativeMultiplier(real))
    } else {
        Ok(())
    }
}

/// TFLite `QuantizeMultiplier` (double-rounding build): decomposes a real multiplier into a Q0.31
/// significand and a power-of-two shift, the form every requantizing kernel consumes.
///
/// Exactly as TFLite: `q, shift = frexp(real)`, `multiplier = round_half_away(q * 2^31)`; if that
/// rounds up to `2^31` it becomes `2^30` with `shift + 1`; if `shift < -31` (roughly
/// `real < 2^-32`) the result is flushed to [`QuantizedMultiplier::ZERO`]; `0.0` gives `ZERO`.
/// Large multipliers keep their full shift (up to 1024), as TFLite's default build does.
///
/// # Errors
///
/// [`FixedPointError::NonFiniteMultiplier`] for NaN/infinity and
/// [`FixedPointError::NegativeMultiplier`] for `real < 0` (TFLite would produce a negative
/// significand that its single-rounding kernels reject; octet never needs one).
#[inline]
pub fn quantize_multiplier(real: f64) -> Result<QuantizedMultiplier, FixedPointError> {
    check_real(real)?;
    if real == 0.0 {
        return Ok(QuantizedMultiplier::ZERO);
    }
    let (q, mut shift) = frexp(real);
    // q is in [0.5, 1), so q * 2^31 is exact and its rounding lies in [2^30, 2^31].
    // `f64::round` rounds half away from zero, like std::round / TfLiteRound.
    let mut q_fixed = (q * TWO_POW_31 as f64).round() as i64;
    if q_fixed == TWO_POW_31 {
        q_fixed /= 2;
        shift += 1;
    }
    if shift < -31 {
        shift = 0;
        q_fixed = 0;
    }
    Ok(QuantizedMultiplier {
        // q_fixed is in [2^30, 2^31 - 1] or 0 here.
        multiplier: i32::try_from(q_fixed).unwrap_or(i32::MAX),
        shift,
    })
}

/// TFLite `QuantizeMultiplier` as compiled with `TFLITE_SINGLE_ROUNDING`: identical to
/// [`quantize_multiplier`] except that a shift above 30 is saturated to `(2^31 - 1, 30)`, because
/// [`multiply_by_quantized_multiplier_single_rounding`](super::multiply_by_quantized_multiplier_single_rounding)
/// cannot apply a larger left shift.
///
/// # Errors
///
/// As [`quantize_multiplier`].
#[inline]
pub fn quantize_multiplier_single_rounding(
    real: f64,
) -> Result<QuantizedMultiplier, FixedPointError> {
    let mut quantized = quantize_multiplier(real)?;
    if quantized.shift > 30 {
        quantized = QuantizedMultiplier::new(i32::MAX, 30);
    }
    Ok(quantized)
}

/// TFLite `QuantizeMultiplierSmallerThanOneExp`: [`quantize_multiplier`] restricted to
/// `0 < real < 1`, guaranteeing `shift <= 0` (what the legacy add/sub kernels and
/// [`multiply_by_quantized_multiplier_smaller_than_one_exp`](super::multiply_by_quantized_multiplier_smaller_than_one_exp)
/// expect). Note the name: TFLite calls the returned (non-positive) shift `left_shift`.
///
/// # Errors
///
/// Besides the [`quantize_multiplier`] errors, [`FixedPointError::MultiplierOutOfRange`] when
/// `real` is not in `(0, 1)`, or when it is so close to 1 (above `1 - 2^-32`) that its significand
/// rounds up to 1.0 and the shift becomes +1 (where TFLite's `TFLITE_CHECK_LE(shift, 0)` aborts).
#[inline]
pub fn quantize_multiplier_smaller_than_one_exp(
    real: f64,
) -> Result<QuantizedMultiplier, FixedPointError> {
    check_real(real)?;
    if !(real > 0.0 && real < 1.0) {
        return Err(FixedPointError::MultiplierOutOfRange {
            value: real,
            expected: "0 < multiplier < 1",
        });
    }
    let quantized = quantize_multiplier(real)?;
    if quantized.shift > 0 {
        return Err(FixedPointError::MultiplierOutOfRange {
            value: real,
            expected: "multiplier must stay below 1 after rounding to 31 bits",
        });
    }
    Ok(quantized)
}

/// TFLite `QuantizeMultiplierGreaterThanOne`: [`quantize_multiplier`] restricted to `real > 1`,
/// which guarantees `shift >= 1` (used by softmax's input scaling and
/// [`multiply_by_quantized_multiplier_greater_than_one`](super::multiply_by_quantized_multiplier_greater_than_one)).
///
/// # Errors
///
/// Besides the [`quantize_multiplier`] errors, [`FixedPointError::MultiplierOutOfRange`] when
/// `real <= 1` (where TFLite's `TFLITE_CHECK_GT` aborts).
#[inline]
pub fn quantize_multiplier_greater_than_one(
    real: f64,
) -> Result<QuantizedMultiplier, FixedPointError> {
    check_real(real)?;
    if real <= 1.0 {
        return Err(FixedPointError::MultiplierOutOfRange {
            value: real,
            expected: "multiplier > 1",
        });
    }
    quantize_multiplier(real)
}

/// TFLite `PreprocessSoftmaxScaling` (double-rounding build): the input multiplier of the
/// fixed-point softmax, `min(beta * input_scale * 2^(31 - input_integer_bits), 2^31 - 1)` as a
/// multiplier greater than one. Returns TFLite's `input_multiplier`/`input_left_shift` pair.
///
/// # Errors
///
/// [`FixedPointError::InvalidBitCount`] unless `1 <= input_integer_bits <= 31` (TFLite computes
/// `1 << (31 - input_integer_bits)` in `int`), and the [`quantize_multiplier_greater_than_one`]
/// errors when the scaled product is not a finite value above 1.
#[inline]
pub fn preprocess_softmax_scaling(
    beta: f64,
    input_scale: f64,
    input_integer_bits: i32,
) -> Result<QuantizedMultiplier, FixedPointError> {
    if !(1..=31).contains(&input_integer_bits) {
        return Err(FixedPointError::InvalidBitCount {
            what: "input_integer_bits",
            value: input_integer_bits,
            expected: "1..=31",
        });
    }
    let max_real_multiplier = (TWO_POW_31 - 1) as f64;
    let product = beta * input_scale * f64::from(1_i32 << (31 - input_integer_bits));
    // std::min<double>(product, max) returns `product` unless `max < product`, so a NaN product
    // stays NaN (and is then rejected) instead of being replaced by `max` as f64::min would do.
    let real = if max_real_multiplier < product {
        max_real_multiplier
    } else {
        product
    };
    quantize_multiplier_greater_than_one(real)
}

/// TFLite `PreprocessLogSoftmaxScalingExp`: [`preprocess_softmax_scaling`] plus the reverse scaling
/// divisor `2^(31 - input_left_shift) / input_multiplier` as a multiplier smaller than one. Returns
/// `(input_multiplier/input_left_shift, reverse_scaling_divisor/reverse_scaling_left_shift)`.
///
/// # Errors
///
/// As [`preprocess_softmax_scaling`], plus the [`quantize_multiplier_smaller_than_one_exp`] errors
/// for the reverse divisor.
#[inline]
pub fn preprocess_log_softmax_scaling_exp(
    beta: f64,
    input_scale: f64,
    input_integer_bits: i32,
) -> Result<(QuantizedMultiplier, QuantizedMultiplier), FixedPointError> {
    let input = preprocess_softmax_scaling(beta, input_scale, input_integer_bits)?;
    // input.shift is in 1..=31 here because the real multiplier is in (1, 2^31 - 1].
    let numerator = 2f64.powi(31 - input.shift);
    let reverse =
        quantize_multiplier_smaller_than_one_exp(numerator / f64::from(input.multiplier))?;
    Ok((input, reverse))
}

/// TFLite `CalculateInputRadius`: the largest input difference that, after the left shift applied
/// by [`multiply_by_quantized_multiplier_greater_than_one`](super::multiply_by_quantized_multiplier_greater_than_one),
/// still fits the fixed-point format, i.e. `floor((2^ib - 1) * 2^(total_signed_bits - ib) /
/// 2^input_left_shift)`. Softmax uses `-radius` as `diff_min`; int16 tanh/logistic use it with
/// `total_signed_bits = 15` (TFLite's default argument is 31).
///
/// # Errors
///
/// [`FixedPointError::InvalidBitCount`] unless `0 <= input_integer_bits <= 30`,
/// `input_integer_bits <= total_signed_bits <= 62` and `0 <= input_left_shift <= 62` (the ranges in
/// which TFLite's shifts are defined). A radius above `i32::MAX` (where TFLite's cast is undefined)
/// saturates.
#[inline]
pub fn calculate_input_radius(
    input_integer_bits: i32,
    input_left_shift: i32,
    total_signed_bits: i32,
) -> Result<i32, FixedPointError> {
    if !(0..=30).contains(&input_integer_bits) {
        return Err(FixedPointError::InvalidBitCount {
            what: "input_integer_bits",
            value: input_integer_bits,
            expected: "0..=30",
        });
    }
    if !(input_integer_bits..=62).contains(&total_signed_bits) {
        return Err(FixedPointError::InvalidBitCount {
            what: "total_signed_bits",
            value: total_signed_bits,
            expected: "input_integer_bits..=62",
        });
    }
    if !(0..=62).contains(&input_left_shift) {
        return Err(FixedPointError::InvalidBitCount {
            what: "input_left_shift",
            value: input_left_shift,
            expected: "0..=62",
        });
    }
    // TFLite evaluates this in double, but every intermediate is an integer below 2^53 times a
    // power of two, so the double computation is exact and equals this integer one.
    let max_input =
        ((1_i128 << input_integer_bits) - 1) << (total_signed_bits - input_integer_bits);
    let radius = max_input >> input_left_shift;
    Ok(i32::try_from(radius).unwrap_or(i32::MAX))
}

/// TFLite `CheckedLog2`: `Some(round(log2(x)))` when `x` is within 1e-3 (in the exponent) of a
/// power of two, computed in `f32` as TFLite does (`log(x) * (1 / log(2))`); kernels use it to
/// recognise power-of-two scales.
#[inline]
pub fn checked_log2(x: f32) -> Option<i32> {
    let log2 = x.ln() * (1.0f32 / 2.0f32.ln());
    let rounded = log2.round();
    ((log2 - rounded).abs() < 1e-3).then_some(rounded as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_log2_accepts_only_powers_of_two() {
        assert_eq!(checked_log2(1.0 / 32768.0), Some(-15));
        assert_eq!(checked_log2(4.0), Some(2));
        assert_eq!(checked_log2(0.3), None);
        assert_eq!(checked_log2(0.0), None);
        assert_eq!(checked_log2(-1.0), None);
    }
    use crate::fixed_point::test_util::XorShift;

    fn qm(multiplier: i32, shift: i32) -> QuantizedMultiplier {
        QuantizedMultiplier::new(multiplier, shift)
    }

    #[test]
    fn frexp_hand_values() {
        assert_eq!(frexp(1.0), (0.5, 1));
        assert_eq!(frexp(0.75), (0.75, 0));
        assert_eq!(frexp(0.5), (0.5, 0));
        assert_eq!(frexp(3.0), (0.75, 2));
        assert_eq!(frexp(-6.0), (-0.75, 3));
        assert_eq!(
            frexp(f64::MAX),
            (f64::MAX / 2f64.powi(1024 - 1) / 2.0, 1024)
        );
        // Smallest subnormal 2^-1074 = 0.5 * 2^-1073.
        assert_eq!(frexp(f64::from_bits(1)), (0.5, -1073));
        // Largest subnormal (1 - 2^-52) * 2^-1022.
        assert_eq!(
            frexp(f64::from_bits((1 << 52) - 1)),
            (1.0 - 2f64.powi(-52), -1022)
        );
    }

    #[test]
    fn frexp_round_trips() {
        let mut rng = XorShift::new(0xf4e0);
        for _ in 0..100_000 {
            // Any finite non-zero bit pattern.
            let x =
                f64::from_bits(rng.next_u64() & !(0x7ff << 52) | ((rng.next_u64() % 0x7ff) << 52));
            if x == 0.0 {
                continue;
            }
            let (q, e) = frexp(x);
            assert!((0.5..1.0).contains(&q.abs()), "x={x:e} q={q}");
            // Reassemble in two exact steps so neither overflows nor underflows prematurely.
            let half = e / 2;
            assert_eq!(q * 2f64.powi(half) * 2f64.powi(e - half), x, "x={x:e}");
        }
    }

    #[test]
    fn quantize_multiplier_hand_values() {
        // 0.5 = 0.5 * 2^0 -> significand 0.5 * 2^31 = 2^30, shift 0.
        assert_eq!(quantize_multiplier(0.5), Ok(qm(1 << 30, 0)));
        // 0.25 = 0.5 * 2^-1.
        assert_eq!(quantize_multiplier(0.25), Ok(qm(1 << 30, -1)));
        // 1.0 = 0.5 * 2^1.
        assert_eq!(quantize_multiplier(1.0), Ok(qm(1 << 30, 1)));
        // 0.75 = 0.75 * 2^0 -> 0.75 * 2^31 = 3 * 2^29.
        assert_eq!(quantize_multiplier(0.75), Ok(qm(3 << 29, 0)));
        // 3.0 = 0.75 * 2^2.
        assert_eq!(quantize_multiplier(3.0), Ok(qm(3 << 29, 2)));
        // 0.0123 = 0.7872 * 2^-6; 0.7872 * 2^31 = 1690499127.7056 -> 1690499128.
        assert_eq!(quantize_multiplier(0.0123), Ok(qm(1_690_499_128, -6)));
        // Zero (and negative zero) map to (0, 0).
        assert_eq!(quantize_multiplier(0.0), Ok(QuantizedMultiplier::ZERO));
        assert_eq!(quantize_multiplier(-0.0), Ok(QuantizedMultiplier::ZERO));
    }

    #[test]
    fn quantize_multiplier_rounds_half_away_from_zero() {
        // 0.5 + 2^-32: q * 2^31 = 2^30 + 0.5 exactly. Round-half-away gives 2^30 + 1
        // (banker's rounding would give 2^30).
        assert_eq!(
            quantize_multiplier(0.5 + 2f64.powi(-32)),
            Ok(qm((1 << 30) + 1, 0))
        );
        // 0.75 + 3 * 2^-33: 3 * 2^29 + 0.75 -> + 1.
        assert_eq!(
            quantize_multiplier(0.75 + 3.0 * 2f64.powi(-33)),
            Ok(qm((3 << 29) + 1, 0))
        );
        // 0.5 + 2^-33: 2^30 + 0.25 -> 2^30.
        assert_eq!(
            quantize_multiplier(0.5 + 2f64.powi(-33)),
            Ok(qm(1 << 30, 0))
        );
    }

    #[test]
    fn quantize_multiplier_significand_rounding_up_to_one() {
        // 1 - 2^-31: q * 2^31 = 2^31 - 1 exactly -> (i32::MAX, 0).
        assert_eq!(
            quantize_multiplier(1.0 - 2f64.powi(-31)),
            Ok(qm(i32::MAX, 0))
        );
        // 1 - 3 * 2^-33: q * 2^31 = 2^31 - 0.75 -> 2^31 - 1.
        assert_eq!(
            quantize_multiplier(1.0 - 3.0 * 2f64.powi(-33)),
            Ok(qm(i32::MAX, 0))
        );
        // 1 - 2^-32: q * 2^31 = 2^31 - 0.5, a tie, rounds away from zero to 2^31, which TFLite
        // renormalises to (2^30, shift + 1).
        assert_eq!(
            quantize_multiplier(1.0 - 2f64.powi(-32)),
            Ok(qm(1 << 30, 1))
        );
        // 1 - 2^-33: 2^31 - 0.25 -> 2^31 -> (2^30, 1) as well.
        assert_eq!(
            quantize_multiplier(1.0 - 2f64.powi(-33)),
            Ok(qm(1 << 30, 1))
        );
        // Same at another exponent: (1 - 2^-32) * 2^-5 -> (2^30, -4).
        assert_eq!(
            quantize_multiplier((1.0 - 2f64.powi(-32)) * 2f64.powi(-5)),
            Ok(qm(1 << 30, -4))
        );
    }

    #[test]
    fn quantize_multiplier_flushes_tiny_values_to_zero() {
        // 2^-32 = 0.5 * 2^-31: shift -31 is still allowed.
        assert_eq!(quantize_multiplier(2f64.powi(-32)), Ok(qm(1 << 30, -31)));
        // 0.75 * 2^-31 is also kept.
        assert_eq!(
            quantize_multiplier(0.75 * 2f64.powi(-31)),
            Ok(qm(3 << 29, -31))
        );
        // Just below 2^-32: frexp gives shift -32 -> flushed to zero...
        assert_eq!(
            quantize_multiplier(0.9 * 2f64.powi(-32)),
            Ok(QuantizedMultiplier::ZERO)
        );
        // ...unless the significand rounds up to 1.0 first: (1 - 2^-40) * 2^-32 has frexp shift
        // -32 but q * 2^31 rounds to 2^31, giving (2^30, -31), which survives the flush because
        // TFLite checks the shift after the round-up fix.
        assert_eq!(
            quantize_multiplier((1.0 - 2f64.powi(-40)) * 2f64.powi(-32)),
            Ok(qm(1 << 30, -31))
        );
        assert_eq!(
            quantize_multiplier(2f64.powi(-33)),
            Ok(QuantizedMultiplier::ZERO)
        );
        assert_eq!(quantize_multiplier(1e-300), Ok(QuantizedMultiplier::ZERO));
        assert_eq!(
            quantize_multiplier(f64::from_bits(1)),
            Ok(QuantizedMultiplier::ZERO)
        );
    }

    #[test]
    fn quantize_multiplier_huge_values_keep_their_shift() {
        // 2^40 = 0.5 * 2^41.
        assert_eq!(quantize_multiplier(2f64.powi(40)), Ok(qm(1 << 30, 41)));
        // f64::MAX = (1 - 2^-53) * 2^1024 -> significand rounds to 2^31 -> (2^30, 1025).
        assert_eq!(quantize_multiplier(f64::MAX), Ok(qm(1 << 30, 1025)));
        // Single rounding saturates shifts above 30.
        assert_eq!(
            quantize_multiplier_single_rounding(2f64.powi(40)),
            Ok(qm(i32::MAX, 30))
        );
        // 2^29 = 0.5 * 2^30 is still representable with shift 30.
        assert_eq!(
            quantize_multiplier_single_rounding(2f64.powi(29)),
            Ok(qm(1 << 30, 30))
        );
        assert_eq!(
            quantize_multiplier_single_rounding(0.0123),
            quantize_multiplier(0.0123)
        );
    }

    #[test]
    fn quantize_multiplier_rejects_bad_inputs() {
        assert_eq!(
            quantize_multiplier(-0.5),
            Err(FixedPointError::NegativeMultiplier(-0.5))
        );
        assert_eq!(
            quantize_multiplier(f64::INFINITY),
            Err(FixedPointError::NonFiniteMultiplier(f64::INFINITY))
        );
        assert!(matches!(
            quantize_multiplier(f64::NAN),
            Err(FixedPointError::NonFiniteMultiplier(_))
        ));
        assert!(matches!(
            quantize_multiplier_single_rounding(f64::NEG_INFINITY),
            Err(FixedPointError::NonFiniteMultiplier(_))
        ));
    }

    /// Independent check without frexp: for every positive normal input the result must satisfy
    /// `2^30 <= m < 2^31` and `m == round_half_away(real * 2^(31 - shift))`, which pins down both
    /// the shift and the significand uniquely (up to the documented round-up-to-2^31 case).
    #[test]
    fn quantize_multiplier_matches_definition() {
        let mut rng = XorShift::new(0x9a17);
        for _ in 0..200_000 {
            let real = rng.next_f64_log(2f64.powi(-31), 2f64.powi(60));
            let got = quantize_multiplier(real).unwrap_or_else(|e| panic!("{real}: {e}"));
            assert!(
                (1 << 30..=i32::MAX).contains(&got.multiplier),
                "{real}: {got:?}"
            );
            let scaled = real * 2f64.powi(31 - got.shift); // exact: power-of-two scaling
            let rounded = scaled.round();
            if rounded == TWO_POW_31 as f64 {
                unreachable!("{real}: the 2^31 case must have been renormalised");
            }
            if rounded == (1_i64 << 30) as f64 && scaled < (1_i64 << 30) as f64 {
                // The renormalised 2^31 case: real * 2^(31 - (shift - 1)) rounded to 2^31.
                assert_eq!(
                    (real * 2f64.powi(32 - got.shift)).round(),
                    TWO_POW_31 as f64
                );
            } else {
                assert_eq!(rounded, f64::from(got.multiplier), "{real}: {got:?}");
            }
            // And the reconstruction is within half a unit in the 31st bit.
            let rel = (got.to_f64() - real).abs() / real;
            assert!(rel <= 2f64.powi(-31), "{real}: rel err {rel:e}");
        }
    }

    #[test]
    fn smaller_than_one_exp_and_greater_than_one() {
        assert_eq!(
            quantize_multiplier_smaller_than_one_exp(0.25),
            Ok(qm(1 << 30, -1))
        );
        assert_eq!(
            quantize_multiplier_smaller_than_one_exp(0.75),
            Ok(qm(3 << 29, 0))
        );
        assert_eq!(
            quantize_multiplier_smaller_than_one_exp(2f64.powi(-40)),
            Ok(QuantizedMultiplier::ZERO)
        );
        for bad in [0.0, 1.0, 1.5, -0.25] {
            assert!(
                quantize_multiplier_smaller_than_one_exp(bad).is_err(),
                "{bad}"
            );
        }
        // Below 1 but rounds up to 1.0: TFLite would abort on its shift check.
        assert!(matches!(
            quantize_multiplier_smaller_than_one_exp(1.0 - 2f64.powi(-40)),
            Err(FixedPointError::MultiplierOutOfRange { .. })
        ));
        assert_eq!(
            quantize_multiplier_greater_than_one(3.0),
            Ok(qm(3 << 29, 2))
        );
        assert_eq!(
            quantize_multiplier_greater_than_one(1.0 + 2f64.powi(-40)),
            Ok(qm(1 << 30, 1))
        );
        for bad in [1.0, 0.5, 0.0, f64::NAN] {
            assert!(quantize_multiplier_greater_than_one(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn softmax_preprocessing() {
        // beta = 1, input_scale = 2^-4, 5 integer bits: 2^-4 * 2^26 = 2^22 = 0.5 * 2^23.
        assert_eq!(
            preprocess_softmax_scaling(1.0, 0.0625, 5),
            Ok(qm(1 << 30, 23))
        );
        // Huge products are capped at 2^31 - 1 = (1 - 2^-31) * 2^31, whose significand
        // (2^31 - 1) is exactly representable: (2^31 - 1, 31).
        assert_eq!(
            preprocess_softmax_scaling(1.0, 1e6, 5),
            Ok(qm(i32::MAX, 31))
        );
        assert!(preprocess_softmax_scaling(1.0, 1e-12, 5).is_err()); // product <= 1
        assert!(preprocess_softmax_scaling(f64::NAN, 1.0, 5).is_err());
        assert!(preprocess_softmax_scaling(1.0, 0.0625, 0).is_err());
        assert!(preprocess_softmax_scaling(1.0, 0.0625, 32).is_err());
        // Log-softmax: input (2^30, 23); reverse = 2^(31 - 23) / 2^30 = 2^-22 = 0.5 * 2^-21.
        assert_eq!(
            preprocess_log_softmax_scaling_exp(1.0, 0.0625, 5),
            Ok((qm(1 << 30, 23), qm(1 << 30, -21)))
        );
    }

    #[test]
    fn input_radius() {
        // Softmax: 5 integer bits, 31 total, left shift 26: (2^5 - 1) * 2^26 / 2^26 = 31.
        assert_eq!(calculate_input_radius(5, 26, 31), Ok(31));
        // Left shift 23: 31 * 2^26 / 2^23 = 248.
        assert_eq!(calculate_input_radius(5, 23, 31), Ok(248));
        // int16 tanh: 3 integer bits, 15 total, no shift: 7 * 2^12 = 28672.
        assert_eq!(calculate_input_radius(3, 0, 15), Ok(28_672));
        // Floors: 31 * 2^26 / 2^30 = 1.9375 -> 1.
        assert_eq!(calculate_input_radius(5, 30, 31), Ok(1));
        // Saturates where TFLite's cast would overflow: (2^5 - 1) * 2^26 * ... with 40 total bits.
        assert_eq!(calculate_input_radius(5, 0, 40), Ok(i32::MAX));
        assert!(calculate_input_radius(31, 0, 31).is_err());
        assert!(calculate_input_radius(5, -1, 31).is_err());
        assert!(calculate_input_radius(5, 0, 4).is_err());
    }
}
