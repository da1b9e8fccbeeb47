//! Integer fixed-point arithmetic, bit-exact with TensorFlow Lite's reference kernels.
//!
//! Every integer kernel and every piece of quantization code in octet goes through this module, so
//! that there is exactly one definition of how a real-valued scale becomes an integer multiplier and
//! how an `int32` accumulator is rescaled. The functions mirror, operation for operation:
//!
//! - TFLite `tensorflow/lite/kernels/internal/quantization_util.cc` ([`quantize_multiplier`] and
//!   friends, the softmax preprocessing helpers),
//! - TFLite `tensorflow/lite/kernels/internal/common.h` / `common.cc`
//!   ([`multiply_by_quantized_multiplier`] and friends, [`inv_sqrt_quantized_multiplier_exp`],
//!   [`get_reciprocal`]),
//! - gemmlowp `fixedpoint/fixedpoint.h` (the scalar `int32`/`int16` primitives such as
//!   [`saturating_rounding_doubling_high_mul_i32`] and [`rounding_divide_by_pot_i32`], and the
//!   fixed-point `exp`, `1/(1+x)`, `logistic` and `tanh`).
//!
//! The default build of TFLite (the one shipped in the LiteRT / `tflite-runtime` pip wheels) uses
//! *double rounding* (`TFLITE_SINGLE_ROUNDING` off); the plain names here follow that build. The
//! single-rounding variants carry `_single_rounding` in their names.
//!
//! # Conventions
//!
//! - A [`QuantizedMultiplier`] represents the real number `multiplier * 2^shift / 2^31`, with
//!   `multiplier` a Q0.31 value (normally in `[2^30, 2^31)`) and `shift` a *left* shift when positive,
//!   a right shift when negative (TFLite's convention).
//! - Raw fixed-point values are plain `i32`s. "Qm" (gemmlowp's `FixedPoint<int32_t, m>`) means `m`
//!   integer bits and `31 - m` fractional bits, i.e. `real = raw / 2^(31 - m)`.
//! - Nothing here panics. Where TFLite's C++ would have undefined behaviour (signed overflow, a shift
//!   wider than the type) or would abort on a `TFLITE_CHECK`, the function documents the
//!   well-defined result it returns instead; inside TFLite's documented input domain the result is
//!   bit-identical to TFLite.

mod multiplier;
mod primitives;
mod requantize;
mod transcendental;

#[cfg(test)]
mod test_util;

use thiserror::Error;

pub use multiplier::{
    calculate_input_radius, checked_log2, preprocess_log_softmax_scaling_exp,
    preprocess_softmax_scaling, quantize_multiplier, quantize_multiplier_greater_than_one,
    quantize_multiplier_single_rounding, quantize_multiplier_smaller_than_one_exp,
};
pub use primitives::{
    rescale, rounding_divide_by_pot_i16, rounding_divide_by_pot_i32, rounding_half_sum_i32,
    saturating_rounding_doubling_high_mul_i16, saturating_rounding_doubling_high_mul_i32,
    saturating_rounding_multiply_by_pot_i32,
};
pub use requantize::{
    double_effective_scale, multiply_by_quantized_multiplier,
    multiply_by_quantized_multiplier_greater_than_one, multiply_by_quantized_multiplier_i64,
    multiply_by_quantized_multiplier_single_rounding,
    multiply_by_quantized_multiplier_smaller_than_one_exp, requantize_double,
};
pub use transcendental::{
    exp_on_interval_between_negative_one_quarter_and_0_excl, exp_on_negative_values,
    get_reciprocal, inv_sqrt_quantized_multiplier_exp, logistic,
    one_minus_x_over_one_plus_x_for_x_in_0_1, one_over_one_plus_x_for_x_in_0_1, tanh,
};

/// A real multiplier decomposed into a Q0.31 significand and a power-of-two exponent, the form in
/// which TFLite's integer kernels apply every rescaling (`output_multiplier`/`output_shift`).
///
/// It stands for the real value `multiplier * 2^shift / 2^31`. `shift > 0` is a left shift and
/// `shift < 0` a right shift, as in TFLite's `QuantizeMultiplier` output. Values produced by
/// [`quantize_multiplier`] have `multiplier` in `[2^30, 2^31)` and `shift >= -31`, or are exactly
/// [`QuantizedMultiplier::ZERO`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct QuantizedMultiplier {
    /// The Q0.31 significand (`int32_t quantized_multiplier` in TFLite).
    pub multiplier: i32,
    /// The power-of-two exponent: positive means shift left, negative means shift right.
    pub shift: i32,
}

impl QuantizedMultiplier {
    /// The multiplier that maps everything to zero: what TFLite produces for a real multiplier of
    /// `0.0` and for multipliers so small (below about `2^-32`) that they are flushed to zero.
    pub const ZERO: Self = Self {
        multiplier: 0,
        shift: 0,
    };

    /// Builds a multiplier from raw parts, e.g. per-channel `multiplier[c]`/`shift[c]` arrays read
    /// back from a kernel's prepared data. No normalisation is applied.
    #[must_use]
    pub const fn new(multiplier: i32, shift: i32) -> Self {
        Self { multiplier, shift }
    }

    /// The real number this multiplier stands for, `multiplier * 2^(shift - 31)`, for diagnostics and
    /// for comparing against a floating-point reference. Exact whenever `2^(shift - 31)` is a normal
    /// `f64` (always the case for multipliers from [`quantize_multiplier`]).
    #[must_use]
    pub fn to_f64(self) -> f64 {
        f64::from(self.multiplier) * 2f64.powi(self.shift.saturating_sub(31))
    }
}

/// Why a real number could not be turned into a [`QuantizedMultiplier`] (or a related parameter).
///
/// TFLite aborts with `TFLITE_CHECK` (or silently computes garbage) in these cases; octet reports
/// them instead.
#[derive(Debug, Clone, Copy, PartialEq, Error)]
pub enum FixedPointError {
    /// The real multiplier is negative. TFLite's scales are never negative, and its single-rounding
    /// kernels reject negative multipliers, so octet rejects them everywhere.
    #[error("real multiplier {0} is negative")]
    NegativeMultiplier(f64),
    /// The real multiplier is NaN or infinite (TFLite would hit undefined behaviour converting it).
    #[error("real multiplier {0} is not finite")]
    NonFiniteMultiplier(f64),
    /// The real multiplier is outside the range a restricted variant accepts (where TFLite would
    /// fail a `TFLITE_CHECK`).
    #[error("real multiplier {value} is out of range: {expected}")]
    MultiplierOutOfRange {
        /// The rejected real multiplier.
        value: f64,
        /// The requirement it failed, in words.
        expected: &'static str,
    },
    /// A bit-count parameter (integer bits, total bits, a shift) is outside the range for which the
    /// TFLite computation is defined.
    #[error("{what} = {value} is out of range: {expected}")]
    InvalidBitCount {
        /// Which parameter.
        what: &'static str,
        /// Its value.
        value: i32,
        /// The accepted range, in words.
        expected: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_util::XorShift;

    /// Every public function must be total: no overflow panics (tests run with overflow checks),
    /// no shift-amount panics, whatever the inputs, including far outside TFLite's contracts.
    #[test]
    fn public_functions_never_panic() {
        let edges = [
            i32::MIN,
            i32::MIN + 1,
            -(1 << 30),
            -65_536,
            -33,
            -32,
            -31,
            -1,
            0,
            1,
            2,
            7,
            8,
            15,
            16,
            30,
            31,
            32,
            33,
            64,
            1 << 29,
            1 << 30,
            i32::MAX - 1,
            i32::MAX,
        ];
        let mut rng = XorShift::new(0xa11);
        let mut values: Vec<i32> = edges.to_vec();
        values.extend((0..40).map(|_| rng.next_i32_spread()));
        let mut sink = 0_i64;
        for &a in &values {
            for &b in &values {
                let m = QuantizedMultiplier::new(a, b);
                sink += i64::from(saturating_rounding_doubling_high_mul_i32(a, b));
                sink += i64::from(saturating_rounding_doubling_high_mul_i16(
                    a as i16, b as i16,
                ));
                sink += i64::from(rounding_divide_by_pot_i32(a, b));
                sink += i64::from(rounding_divide_by_pot_i16(a as i16, b));
                sink += i64::from(saturating_rounding_multiply_by_pot_i32(a, b));
                sink += i64::from(rounding_half_sum_i32(a, b));
                sink += i64::from(multiply_by_quantized_multiplier(a, m));
                sink += i64::from(multiply_by_quantized_multiplier(b, m));
                sink += i64::from(multiply_by_quantized_multiplier_smaller_than_one_exp(a, m));
                sink += i64::from(multiply_by_quantized_multiplier_greater_than_one(a, m));
                sink += i64::from(multiply_by_quantized_multiplier_single_rounding(a, m));
                for x in [i64::MIN, i64::from(a) << 20, i64::from(a), i64::MAX] {
                    sink += i64::from(multiply_by_quantized_multiplier_i64(x, m));
                }
                let (r, n) = get_reciprocal(a, b);
                sink += i64::from(r) + i64::from(n);
                let _ = calculate_input_radius(a, b, a);
                let _ = preprocess_softmax_scaling(f64::from(a), f64::from(b), b);
                sink += i64::from(QuantizedMultiplier::new(a, b).to_f64().is_finite());
            }
            sink += i64::from(inv_sqrt_quantized_multiplier_exp(a).multiplier);
            sink += i64::from(exp_on_negative_values::<0>(a));
            sink += i64::from(exp_on_negative_values::<5>(a));
            sink += i64::from(exp_on_negative_values::<29>(a));
            sink += i64::from(exp_on_interval_between_negative_one_quarter_and_0_excl(a));
            sink += i64::from(one_over_one_plus_x_for_x_in_0_1(a));
            sink += i64::from(one_minus_x_over_one_plus_x_for_x_in_0_1(a));
            sink += i64::from(logistic::<0>(a)) + i64::from(logistic::<29>(a));
            sink += i64::from(tanh::<0>(a)) + i64::from(tanh::<28>(a));
            sink += i64::from(rescale::<0, 31>(a)) + i64::from(rescale::<31, 0>(a));
        }
        for real in [
            f64::MIN_POSITIVE,
            f64::from_bits(1),
            f64::MAX,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -f64::MIN_POSITIVE,
            -0.0,
            0.0,
            1.0,
        ] {
            let _ = quantize_multiplier(real);
            let _ = quantize_multiplier_single_rounding(real);
            let _ = quantize_multiplier_smaller_than_one_exp(real);
            let _ = quantize_multiplier_greater_than_one(real);
            let _ = preprocess_softmax_scaling(real, real, 5);
            let _ = preprocess_log_softmax_scaling_exp(real, 1.0, 5);
        }
        // Keep the optimiser from discarding the calls (and make the test depend on them).
        assert_ne!(sink, i64::MIN);
    }

    #[test]
    fn quantized_multiplier_to_f64() {
        assert_eq!(QuantizedMultiplier::new(1 << 30, 0).to_f64(), 0.5);
        assert_eq!(QuantizedMultiplier::new(3 << 29, 2).to_f64(), 3.0);
        assert_eq!(QuantizedMultiplier::ZERO.to_f64(), 0.0);
        assert_eq!(
            QuantizedMultiplier::new(1 << 30, -31).to_f64(),
            2f64.powi(-32)
        );
    }

    #[test]
    fn errors_render() {
        assert_eq!(
            FixedPointError::NegativeMultiplier(-1.5).to_string(),
            "real multiplier -1.5 is negative"
        );
        let e = quantize_multiplier_greater_than_one(0.5).unwrap_err();
        assert_eq!(
            e.to_string(),
            "real multiplier 0.5 is out of range: multiplier > 1"
        );
    }
}
