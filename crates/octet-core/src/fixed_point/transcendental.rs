//! Fixed-point math functions: gemmlowp `fixedpoint.h` part 3 (`exp`, `1/(1+x)`, `logistic`,
//! `tanh`) and the TFLite `common.h` helpers built on them (`GetReciprocal`,
//! `GetInvSqrtQuantizedMultiplierExp`).
//!
//! Values are raw `i32`s in gemmlowp Q formats: Qm has `m` integer bits, `real = raw / 2^(31 - m)`.
//! gemmlowp's `+`/`-` on fixed-point values are plain (non-saturating) integer ops, reproduced
//! here with wrapping arithmetic; its `*` is
//! [`saturating_rounding_doubling_high_mul_i32`](super::saturating_rounding_doubling_high_mul_i32).

use super::QuantizedMultiplier;
use super::primitives::{
    rescale, rounding_divide_by_pot_i32, rounding_half_sum_i32,
    saturating_rounding_doubling_high_mul_i32 as fixed_mul,
    saturating_rounding_multiply_by_pot_i32,
};

/// gemmlowp `FixedPoint<int32_t, 0>::One()`: the largest Q0.31 value, standing in for 1.0.
const Q0_ONE: i32 = i32::MAX;
/// `FixedPoint<int32_t, 2>::One()`: 1.0 in Q2.29.
const Q2_ONE: i32 = 1 << 29;
/// `FixedPoint<int32_t, 3>::One()`: 1.0 in Q3.28.
const Q3_ONE: i32 = 1 << 28;

/// exp(-1/8) in Q0.31.
const EXP_MINUS_ONE_EIGHTH: i32 = 1_895_147_668;
/// 1/3 in Q0.31.
const ONE_THIRD: i32 = 715_827_883;
/// (exponent, exp(-2^exponent) in Q0.31) for gemmlowp's `exp_on_negative_values` barrel shifter.
const EXP_BARREL: [(i32, i32); 7] = [
    (-2, 1_672_461_947),
    (-1, 1_302_514_674),
    (0, 790_015_084),
    (1, 290_630_308),
    (2, 39_332_535),
    (3, 720_401),
    (4, 242),
];
/// 48/17 in Q2.29 (Newton-Raphson division's initial estimate).
const CONSTANT_48_OVER_17: i32 = 1_515_870_810;
/// -32/17 in Q2.29.
const CONSTANT_NEG_32_OVER_17: i32 = -1_010_580_540;
/// 1.5 in Q3.28.
const HALF_THREE_Q3: i32 = (1 << 28) + (1 << 27);
/// sqrt(2) / 2 in Q0.31.
const HALF_SQRT_2: i32 = 1_518_500_250;

/// gemmlowp `exp_on_interval_between_negative_one_quarter_and_0_excl`: `exp(a)` for a Q0.31 `a` in
/// `[-1/4, 0)`, as Q0.31, by a 4th-order Taylor expansion around `-1/8`. Building block of
/// [`exp_on_negative_values`].
#[must_use]
#[inline]
pub fn exp_on_interval_between_negative_one_quarter_and_0_excl(a: i32) -> i32 {
    // x = a + 1/8 (1/8 is 2^28 in Q0.31).
    let x = a.wrapping_add(1 << 28);
    let x2 = fixed_mul(x, x);
    let x3 = fixed_mul(x2, x);
    let x4 = fixed_mul(x2, x2);
    let x4_over_4 = rounding_divide_by_pot_i32(x4, 2);
    let x4_over_24_plus_x3_over_6_plus_x2_over_2 = rounding_divide_by_pot_i32(
        fixed_mul(x4_over_4.wrapping_add(x3), ONE_THIRD).wrapping_add(x2),
        1,
    );
    // AddSaturatingIf16Bit is a plain add for 32-bit values.
    EXP_MINUS_ONE_EIGHTH.wrapping_add(fixed_mul(
        EXP_MINUS_ONE_EIGHTH,
        x.wrapping_add(x4_over_24_plus_x3_over_6_plus_x2_over_2),
    ))
}

/// [`exp_on_negative_values`] with the input's integer bits as a run-time value (`<= 29`).
fn exp_on_negative_values_impl(a: i32, integer_bits: i32) -> i32 {
    let fractional_bits = 31 - integer_bits;
    let one_quarter = 1_i32 << (fractional_bits - 2);
    let mask = one_quarter - 1;
    // In [-1/4, 0): the input modulo 1/4, shifted down by 1/4.
    let a_mod_quarter_minus_one_quarter = (a & mask) - one_quarter;
    let mut result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        saturating_rounding_multiply_by_pot_i32(a_mod_quarter_minus_one_quarter, integer_bits),
    );
    // The rest of the input, a non-negative multiple of 1/4, is handled bit by bit.
    let remainder = a_mod_quarter_minus_one_quarter.wrapping_sub(a);
    for (exponent, multiplier) in EXP_BARREL {
        if integer_bits > exponent {
            let shift_amount = fractional_bits + exponent;
            if remainder & (1 << shift_amount) != 0 {
                result = fixed_mul(result, multiplier);
            }
        }
    }
    if integer_bits > 5 {
        // exp(x) for x < -32 is below the Q0.31 resolution: clamp to 0.
        let clamp = -(1_i32 << (36 - integer_bits));
        if a < clamp {
            result = 0;
        }
    }
    if a == 0 { Q0_ONE } else { result }
}

/// gemmlowp `exp_on_negative_values<int32_t, INTEGER_BITS>`: `exp(a)` for a Q`INTEGER_BITS` input
/// `a <= 0`, as Q0.31 (`exp(0)` gives `i32::MAX`). Used by the fixed-point softmax
/// (`INTEGER_BITS = 5`) and, through [`logistic`]/[`tanh`], by the uint8/int8 activations.
///
/// `INTEGER_BITS` must be at most 29 (checked at compile time), as gemmlowp's `ConstantPOT`
/// requires. Positive inputs are outside gemmlowp's contract and give meaningless (but defined)
/// values.
#[must_use]
#[inline]
pub fn exp_on_negative_values<const INTEGER_BITS: u32>(a: i32) -> i32 {
    const {
        assert!(
            INTEGER_BITS <= 29,
            "exp_on_negative_values needs INTEGER_BITS <= 29"
        )
    };
    exp_on_negative_values_impl(a, INTEGER_BITS as i32)
}

/// The shared Newton-Raphson loop of gemmlowp's `one_over_one_plus_x_for_x_in_0_1` and
/// `one_minus_x_over_one_plus_x_for_x_in_0_1`: returns `1 / ((1 + a) / 2)` as Q2.29.
fn two_over_one_plus_x(a: i32) -> i32 {
    let half_denominator = rounding_half_sum_i32(a, Q0_ONE);
    let mut x =
        CONSTANT_48_OVER_17.wrapping_add(fixed_mul(half_denominator, CONSTANT_NEG_32_OVER_17));
    for _ in 0..3 {
        let half_denominator_times_x = fixed_mul(half_denominator, x);
        let one_minus_half_denominator_times_x = Q2_ONE.wrapping_sub(half_denominator_times_x);
        x = x.wrapping_add(rescale::<4, 2>(fixed_mul(
            x,
            one_minus_half_denominator_times_x,
        )));
    }
    x
}

/// gemmlowp `one_over_one_plus_x_for_x_in_0_1`: `1 / (1 + a)` for a Q0.31 `a` in `[0, 1)`, as
/// Q0.31, by three Newton-Raphson steps. Used by [`logistic`] and [`get_reciprocal`].
#[must_use]
#[inline]
pub fn one_over_one_plus_x_for_x_in_0_1(a: i32) -> i32 {
    // ExactMulByPot<-1> (Q2 -> Q1, same raw value) then Rescale<0>.
    rescale::<1, 0>(two_over_one_plus_x(a))
}

/// gemmlowp `one_minus_x_over_one_plus_x_for_x_in_0_1`: `(1 - a) / (1 + a)` for a Q0.31 `a` in
/// `[0, 1)`, as Q0.31. Used by [`tanh`].
#[must_use]
#[inline]
pub fn one_minus_x_over_one_plus_x_for_x_in_0_1(a: i32) -> i32 {
    rescale::<2, 0>(two_over_one_plus_x(a).wrapping_sub(Q2_ONE))
}

/// gemmlowp `logistic<int32_t, INTEGER_BITS>`: `1 / (1 + exp(-a))` for a Q`INTEGER_BITS` input, as
/// Q0.31 (`logistic(0)` is exactly `2^30`). TFLite's uint8 logistic feeds it Q4.27 inputs.
///
/// `INTEGER_BITS` must be at most 29 (checked at compile time).
#[must_use]
#[inline]
pub fn logistic<const INTEGER_BITS: u32>(a: i32) -> i32 {
    const { assert!(INTEGER_BITS <= 29, "logistic needs INTEGER_BITS <= 29") };
    let positive = a > 0;
    let abs_input = if positive { a } else { a.wrapping_neg() };
    // logistic_on_positive_values(|a|) = 1 / (1 + exp(-|a|)).
    let result_if_positive = one_over_one_plus_x_for_x_in_0_1(exp_on_negative_values_impl(
        abs_input.wrapping_neg(),
        INTEGER_BITS as i32,
    ));
    let result_if_negative = Q0_ONE.wrapping_sub(result_if_positive);
    if a == 0 {
        1 << 30
    } else if positive {
        result_if_positive
    } else {
        result_if_negative
    }
}

/// gemmlowp `tanh<int32_t, INTEGER_BITS>`: `tanh(a)` for a Q`INTEGER_BITS` input, as Q0.31, via
/// `(1 - exp(-2|a|)) / (1 + exp(-2|a|))`. TFLite's uint8 tanh feeds it Q4.27 inputs.
///
/// `INTEGER_BITS` must be at most 28 (checked at compile time), since `2a` needs one more bit.
#[must_use]
#[inline]
pub fn tanh<const INTEGER_BITS: u32>(a: i32) -> i32 {
    const { assert!(INTEGER_BITS <= 28, "tanh needs INTEGER_BITS <= 28") };
    let negative = a < 0;
    let n = if negative { a } else { a.wrapping_neg() };
    // neg_tanh_on_negative_values(n): ExactMulByPot<1> reinterprets n as Q(INTEGER_BITS + 1).
    let t = one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values_impl(
        n,
        INTEGER_BITS as i32 + 1,
    ));
    if a == 0 {
        0
    } else if negative {
        t.wrapping_neg()
    } else {
        t
    }
}

/// TFLite `GetReciprocal`: `1 / x` for a positive Q`x_integer_digits` value `x`, returned as
/// `(reciprocal, num_bits_over_unit)` with `1 / x = reciprocal / 2^31 * 2^-num_bits_over_unit`
/// (`reciprocal` is Q0.31 in `(0.5, 1]`). The integer softmax uses it on the sum of exponentials.
///
/// `x` is normalised by its leading zeros so that `1 / (1 + f)` with `f` in `[0, 1)` is computed by
/// [`one_over_one_plus_x_for_x_in_0_1`]. `x <= 0` is outside TFLite's contract (and `x == 0` shifts
/// by 32 there, undefined); here such inputs give defined but meaningless results.
#[must_use]
#[inline]
pub fn get_reciprocal(x: i32, x_integer_digits: i32) -> (i32, i32) {
    let bits = x as u32;
    let headroom_plus_one = bits.leading_zeros();
    let num_bits_over_unit = x_integer_digits.wrapping_sub(headroom_plus_one as i32);
    let shifted_sum_minus_one = bits
        .checked_shl(headroom_plus_one)
        .unwrap_or(0)
        .wrapping_sub(1 << 31) as i32;
    (
        one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one),
        num_bits_over_unit,
    )
}

/// TFLite `GetInvSqrtQuantizedMultiplierExp(input, kReverseShift, ...)`: `1 / sqrt(input)` as a
/// [`QuantizedMultiplier`] with a non-positive shift, ready for
/// [`multiply_by_quantized_multiplier_smaller_than_one_exp`](super::multiply_by_quantized_multiplier_smaller_than_one_exp).
/// L2 normalisation computes it from the sum of squares.
///
/// TFLite's `reverse_shift` argument only flips the sign of the returned shift; every current
/// kernel passes `kReverseShift = -1`, which is what this returns (negate `shift` for the legacy
/// `reverse_shift = 1` convention). Inputs `<= 1` (including 0 and negatives, which TFLite only
/// `DCHECK`s against) give `(i32::MAX, 0)`, i.e. a multiplier of ~1, as in TFLite.
///
/// The value comes from five Newton-Raphson iterations in Q3.28 on the input normalised to
/// `[2^27, 2^29)`, then scaled by `sqrt(2) / 2`.
#[must_use]
#[inline]
pub fn inv_sqrt_quantized_multiplier_exp(input: i32) -> QuantizedMultiplier {
    if input <= 1 {
        return QuantizedMultiplier::new(i32::MAX, 0);
    }
    let mut input = input;
    let mut output_shift: i32 = 11;
    while input >= 1 << 29 {
        input /= 4;
        output_shift += 1;
    }
    // input is in [2, 2^29) here, so it has 3..=30 leading zeros.
    let max_left_shift_bits = (input as u32).leading_zeros().saturating_sub(1);
    let max_left_shift_bit_pairs = max_left_shift_bits / 2;
    let left_shift_bit_pairs = max_left_shift_bit_pairs.saturating_sub(1);
    output_shift -= left_shift_bit_pairs as i32;
    input <<= 2 * left_shift_bit_pairs;
    // Q3.28 arithmetic from here on.
    let fixedpoint_input = input >> 1;
    let fixedpoint_half_input = rounding_divide_by_pot_i32(fixedpoint_input, 1);
    let mut x = Q3_ONE;
    for _ in 0..5 {
        let x3 = rescale::<9, 3>(fixed_mul(fixed_mul(x, x), x));
        x = rescale::<6, 3>(
            fixed_mul(HALF_THREE_Q3, x).wrapping_sub(fixed_mul(fixedpoint_half_input, x3)),
        );
    }
    let mut output_inv_sqrt = fixed_mul(x, HALF_SQRT_2);
    if output_shift < 0 {
        // Only for inputs 2..=15, where output_shift is -1 or -2: no overflow.
        output_inv_sqrt = output_inv_sqrt.wrapping_shl(output_shift.unsigned_abs());
        output_shift = 0;
    }
    // kReverseShift: TFLite's right-shift count becomes a (negative) left shift.
    QuantizedMultiplier::new(output_inv_sqrt, -output_shift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixed_point::multiply_by_quantized_multiplier_smaller_than_one_exp;
    use crate::fixed_point::test_util::XorShift;

    const Q31: f64 = 2_147_483_648.0;
    /// gemmlowp's own accuracy bounds (`test/test_fixedpoint.cc`): |error| < 3e-7 for exp,
    /// 1.5e-7 for tanh, 6e-9 for (1 - x) / (1 + x). The last one only holds on gemmlowp's sample
    /// of inputs: a dense scan finds up to 6.32e-9 (e.g. at raw 89799917, x ~ 0.0418).
    const EXP_TOLERANCE: f64 = 3e-7;
    const TANH_TOLERANCE: f64 = 1.5e-7;
    const ONE_MINUS_X_TOLERANCE: f64 = 6.5e-9;

    fn to_real(raw: i32, integer_bits: i32) -> f64 {
        f64::from(raw) / 2f64.powi(31 - integer_bits)
    }

    /// gemmlowp's `FixedPoint::FromDouble`: round(x * 2^(31 - m)), what its
    /// `GEMMLOWP_CHECKED_FIXEDPOINT_CONSTANT` checks every constant against.
    fn from_double(x: f64, integer_bits: i32) -> i32 {
        (x * 2f64.powi(31 - integer_bits)).round() as i32
    }

    /// Each magic constant equals its defining real number, rounded (an independent check of the
    /// transcribed digits, which the float-tolerance tests below could not see).
    #[test]
    fn constants_match_their_definitions() {
        assert_eq!(EXP_MINUS_ONE_EIGHTH, from_double((-0.125f64).exp(), 0));
        assert_eq!(ONE_THIRD, from_double(1.0 / 3.0, 0));
        for (exponent, multiplier) in EXP_BARREL {
            assert_eq!(
                multiplier,
                from_double((-2f64.powi(exponent)).exp(), 0),
                "exp(-2^{exponent})"
            );
        }
        assert_eq!(CONSTANT_48_OVER_17, from_double(48.0 / 17.0, 2));
        assert_eq!(CONSTANT_NEG_32_OVER_17, from_double(-32.0 / 17.0, 2));
        assert_eq!(HALF_THREE_Q3, from_double(1.5, 3));
        assert_eq!(HALF_SQRT_2, from_double(2f64.sqrt() / 2.0, 0));
        assert_eq!(Q2_ONE, from_double(1.0, 2));
        assert_eq!(Q3_ONE, from_double(1.0, 3));
    }

    const GOLDEN_EXP5: [(i32, i32); 11] = [
        (0, 2147483647),
        (-1, 2147483124),
        (-16777216, 1672462419),
        (-33554432, 1302515042),
        (-67108864, 790015308),
        (-201326592, 106916946),
        (-335544320, 14469635),
        (-123456789, 341177383),
        (-2000000000, 0),
        (-2147483647, 0),
        (-2147483648, 0),
    ];
    const GOLDEN_LOGISTIC_TANH4: [(i32, i32, i32); 11] = [
        (0, 1073741824, 0),
        (1, 1073741948, 260),
        (-1, 1073741699, -260),
        (134217728, 1569936226, 1635510876),
        (-134217728, 577547421, -1635510876),
        (201326592, 1755727730, 1943791024),
        (-201326592, 391755917, -1943791024),
        (123456789, 1535464548, 1558674772),
        (-987654321, 1367271, -2147481900),
        (2147483647, 2147483406, 2147483647),
        (-2147483647, 241, -2147483647),
    ];
    const GOLDEN_INV_SQRT: [(i32, i32, i32); 10] = [
        (2, 1518498372, 0),
        (3, 1239850284, 0),
        (4, 1073741828, 0),
        (25, 429496726, 0),
        (1000, 271637587, -2),
        (268435456, 268435457, -11),
        (12345678, 312926508, -9),
        (536870911, 189812531, -11),
        (536870912, 379624593, -12),
        (2147483647, 189812531, -12),
    ];
    const GOLDEN_RECIPROCAL: [(i32, i32, i32, i32); 7] = [
        (655360, 12, 1717986914, 0),
        (1572864, 12, 1431655762, 1),
        (1, 0, 2147483647, -31),
        (2147483647, 0, 1073741820, -1),
        (123456789, 12, 1167333038, 7),
        (524288, 12, 2147483647, 0),
        (7, 30, 1227133516, 1),
    ];

    /// Golden outputs produced by compiling a C++ transcription of the gemmlowp/TFLite code (with
    /// UBSan) during development; the Rust port matched it on several million random inputs.
    #[test]
    fn golden_values_from_cpp_reference() {
        for (input, expected) in GOLDEN_EXP5 {
            assert_eq!(
                exp_on_negative_values::<5>(input),
                expected,
                "exp5({input})"
            );
        }
        for (input, logistic4, tanh4) in GOLDEN_LOGISTIC_TANH4 {
            assert_eq!(logistic::<4>(input), logistic4, "logistic4({input})");
            assert_eq!(tanh::<4>(input), tanh4, "tanh4({input})");
        }
        for (input, multiplier, shift) in GOLDEN_INV_SQRT {
            assert_eq!(
                inv_sqrt_quantized_multiplier_exp(input),
                QuantizedMultiplier::new(multiplier, shift),
                "inv_sqrt({input})"
            );
        }
        for (x, digits, reciprocal, bits) in GOLDEN_RECIPROCAL {
            assert_eq!(
                get_reciprocal(x, digits),
                (reciprocal, bits),
                "1/{x} (Q{digits})"
            );
        }
    }

    #[test]
    fn exp_hand_values() {
        // exp(0) is the Q0.31 "one".
        assert_eq!(exp_on_negative_values::<5>(0), i32::MAX);
        // exp(-1/8): x = a + 1/8 = 0, so every Taylor term vanishes and the result is exactly the
        // constant term exp(-1/8) = 1895147668 / 2^31.
        assert_eq!(
            exp_on_interval_between_negative_one_quarter_and_0_excl(-(1 << 28)),
            1_895_147_668
        );
        // Far below -32 clamps to 0 for inputs with more than 5 integer bits.
        assert_eq!(exp_on_negative_values::<6>(-(33 << 25)), 0);
        // exp(-1) in Q5: -1 is -(2^26). a mod 1/4 - 1/4 = -1/4 and the remainder 3/4 sets the
        // -2 and -1 barrel bits: exp(-1/4)^... = exp(-1/4) * exp(-1/4) * exp(-1/2).
        let e = to_real(exp_on_negative_values::<5>(-(1 << 26)), 0);
        assert!((e - (-1.0f64).exp()).abs() < EXP_TOLERANCE, "{e}");
    }

    #[test]
    fn exp_matches_float_closely() {
        let mut rng = XorShift::new(0xe4);
        let mut worst: f64 = 0.0;
        for _ in 0..200_000 {
            // Q5.26 inputs in [-32, 0), the softmax range.
            let a = -((rng.next_u32() >> 1) as i32);
            let got = to_real(exp_on_negative_values::<5>(a), 0);
            let want = to_real(a, 5).exp();
            worst = worst.max((got - want).abs());
        }
        assert!(worst < EXP_TOLERANCE, "worst abs error {worst:e}");
        // Not tautological: the error is clearly above a Q0.31 ulp, as in gemmlowp.
        assert!(worst > 1e-8, "worst abs error {worst:e}");
        // Q0 inputs (only [-1, 0)) and Q12 inputs.
        for _ in 0..50_000 {
            let a0 = -((rng.next_u32() >> 1) as i32);
            let got = to_real(exp_on_negative_values::<0>(a0), 0);
            assert!((got - to_real(a0, 0).exp()).abs() < EXP_TOLERANCE);
            let a12 = -((rng.next_u32() >> 1) as i32);
            let got = to_real(exp_on_negative_values::<12>(a12), 0);
            assert!(
                (got - to_real(a12, 12).exp()).abs() < EXP_TOLERANCE,
                "{a12}"
            );
        }
    }

    #[test]
    fn one_over_one_plus_x_matches_float() {
        // 1 / (1 + 0) ~ 1: the largest Q0.31 value or within a few ulps of it.
        assert!(one_over_one_plus_x_for_x_in_0_1(0) > i32::MAX - 8);
        // 1 / (1 + 0.5) = 2/3.
        let two_thirds = to_real(one_over_one_plus_x_for_x_in_0_1(1 << 30), 0);
        assert!((two_thirds - 2.0 / 3.0).abs() < 1e-8, "{two_thirds}");
        let mut rng = XorShift::new(0x1d1);
        for _ in 0..100_000 {
            let a = (rng.next_u32() >> 1) as i32;
            let x = to_real(a, 0);
            let got = to_real(one_over_one_plus_x_for_x_in_0_1(a), 0);
            assert!(
                (got - 1.0 / (1.0 + x)).abs() < ONE_MINUS_X_TOLERANCE / 2.0,
                "a={a} got={got}"
            );
            let got = to_real(one_minus_x_over_one_plus_x_for_x_in_0_1(a), 0);
            assert!(
                (got - (1.0 - x) / (1.0 + x)).abs() < ONE_MINUS_X_TOLERANCE,
                "a={a} got={got}"
            );
        }
    }

    #[test]
    fn logistic_and_tanh_match_float() {
        assert_eq!(logistic::<4>(0), 1 << 30);
        assert_eq!(tanh::<4>(0), 0);
        let mut rng = XorShift::new(0x7a4);
        for _ in 0..100_000 {
            let a = rng.next_u32() as i32; // all of Q4.27's [-16, 16)
            let x = to_real(a, 4);
            let got = to_real(logistic::<4>(a), 0);
            assert!(
                (got - 1.0 / (1.0 + (-x).exp())).abs() < EXP_TOLERANCE,
                "x={x} got={got}"
            );
            let got = to_real(tanh::<4>(a), 0);
            assert!((got - x.tanh()).abs() < TANH_TOLERANCE, "x={x} got={got}");
        }
        // Symmetry: logistic(-a) = 1 - logistic(a) up to the Q0.31 "one" = 2^31 - 1 convention,
        // and tanh is odd.
        for a in [1, 12_345, 1 << 27, i32::MAX] {
            assert_eq!(logistic::<4>(-a), i32::MAX - logistic::<4>(a));
            assert_eq!(tanh::<4>(-a), -tanh::<4>(a));
        }
        // Extremes never panic.
        let _ = (
            logistic::<4>(i32::MIN),
            tanh::<4>(i32::MIN),
            logistic::<0>(i32::MIN),
        );
    }

    #[test]
    fn get_reciprocal_matches_float() {
        // x = 1.25 in Q12 (the softmax accumulator format): 1.25 * 2^19 = 655360.
        // headroom_plus_one = 12, num_bits_over_unit = 0, 1/1.25 = 0.8.
        let (r, nbou) = get_reciprocal(655_360, 12);
        assert_eq!(nbou, 0);
        assert!((f64::from(r) / Q31 - 0.8).abs() < 1e-8);
        // x = 3.0 in Q12: 3 * 2^19; leading one at bit 20 -> headroom_plus_one 11, nbou 1:
        // 1/3 = (1/1.5) * 2^-1.
        let (r, nbou) = get_reciprocal(3 << 19, 12);
        assert_eq!(nbou, 1);
        assert!((f64::from(r) / Q31 - 2.0 / 3.0).abs() < 1e-8);
        let mut rng = XorShift::new(0x4ec1);
        for _ in 0..100_000 {
            let x = (rng.next_u32() >> 1) as i32 >> (rng.next_u32() % 31);
            if x <= 0 {
                continue;
            }
            let digits = (rng.next_u32() % 31) as i32;
            let (r, nbou) = get_reciprocal(x, digits);
            let product = f64::from(r) / Q31 * 2f64.powi(-nbou) * to_real(x, digits);
            assert!(
                (product - 1.0).abs() < 1e-8,
                "x={x} digits={digits} product={product}"
            );
        }
        let _ = (
            get_reciprocal(0, 12),
            get_reciprocal(-5, 12),
            get_reciprocal(i32::MIN, 0),
        );
    }

    #[test]
    fn inv_sqrt_hand_values() {
        // Inputs <= 1 (and invalid ones) give (i32::MAX, 0).
        for input in [1, 0, -7, i32::MIN] {
            assert_eq!(
                inv_sqrt_quantized_multiplier_exp(input),
                QuantizedMultiplier::new(i32::MAX, 0)
            );
        }
        // 2^28: already normalised, output_shift 11; the Newton iteration converges to
        // 1/sqrt(0.5) and the final sqrt(2)/2 scaling gives 1.0 in Q3 (2^28), within a few ulps.
        // So 1/sqrt(2^28) = 2^28 / 2^31 * 2^-11 = 2^-14.
        let m = inv_sqrt_quantized_multiplier_exp(1 << 28);
        assert_eq!(m.shift, -11);
        assert!((m.multiplier - (1 << 28)).abs() <= 4, "{m:?}");
        // 4: normalised by 13 bit pairs, shift 11 - 13 = -2 < 0, so the significand is
        // pre-shifted left by 2 and the shift becomes 0: 1/2 ~ multiplier / 2^31.
        let m = inv_sqrt_quantized_multiplier_exp(4);
        assert_eq!(m.shift, 0);
        assert!((f64::from(m.multiplier) / Q31 - 0.5).abs() < 1e-8, "{m:?}");
        // L2 normalisation of (3, 4): sum of squares 25, 128 * 3 / 5 = 76.8 -> 77,
        // 128 * 4 / 5 = 102.4 -> 102.
        let m = inv_sqrt_quantized_multiplier_exp(25);
        assert_eq!(
            multiply_by_quantized_multiplier_smaller_than_one_exp(128 * 3, m),
            77
        );
        assert_eq!(
            multiply_by_quantized_multiplier_smaller_than_one_exp(128 * 4, m),
            102
        );
    }

    #[test]
    fn inv_sqrt_matches_float() {
        let mut worst: f64 = 0.0;
        let mut rng = XorShift::new(0x15a7);
        for i in 0..100_000 {
            let input = if i < 1000 {
                i + 2
            } else {
                (rng.next_u32() >> 1) as i32 >> (rng.next_u32() % 30)
            };
            if input <= 1 {
                continue;
            }
            let m = inv_sqrt_quantized_multiplier_exp(input);
            assert!(m.shift <= 0, "{input}: {m:?}");
            let rel = m.to_f64() * f64::from(input).sqrt() - 1.0;
            // TFLite's five Newton steps from x = 1 are not fully converged for normalised
            // inputs near 2^27 (where 1/sqrt is 2): about 1.2e-6 relative error remains there.
            assert!(rel.abs() < 2e-6, "input={input} m={m:?} rel={rel:e}");
            worst = worst.max(rel.abs());
        }
        assert!(
            worst > 1e-6,
            "the known convergence error should show up: {worst:e}"
        );
        // i32::MAX: one division by 4 brings it to 2^29 - 1 (shift 12), which has 3 leading
        // zeros, so no further normalisation: shift -12.
        assert_eq!(inv_sqrt_quantized_multiplier_exp(i32::MAX).shift, -12);
    }
}
