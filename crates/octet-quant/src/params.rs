//! From float ranges to quantization parameters and back: the arithmetic of
//! `real = scale * (q - zero_point)`, and of the legacy converter's `mean`/`std_dev` flags.

use octet_core::DType;

use crate::QuantError;

/// An integer type values are quantized to, with its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntRange {
    /// The dtype.
    pub dtype: DType,
    /// Smallest representable value.
    pub qmin: i32,
    /// Largest representable value.
    pub qmax: i32,
}

impl IntRange {
    /// The full range of int8, uint8 or int16.
    pub fn of(dtype: DType) -> Result<Self, QuantError> {
        let (qmin, qmax) = match dtype {
            DType::Int8 => (-128, 127),
            DType::UInt8 => (0, 255),
            DType::Int16 => (-32768, 32767),
            other => {
                return Err(QuantError::Unsupported(format!(
                    "cannot quantize to {other}"
                )));
            }
        };
        Ok(IntRange { dtype, qmin, qmax })
    }
}

/// Per-tensor affine parameters with the float range they represent exactly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AffineParams {
    /// Real value of one integer step.
    pub scale: f32,
    /// The integer that represents real 0 exactly.
    pub zero_point: i32,
    /// Real value of the smallest integer.
    pub min: f32,
    /// Real value of the largest integer.
    pub max: f32,
}

impl AffineParams {
    fn with_range(scale: f32, zero_point: i32, range: IntRange) -> Self {
        AffineParams {
            scale,
            zero_point,
            min: (range.qmin - zero_point) as f32 * scale,
            max: (range.qmax - zero_point) as f32 * scale,
        }
    }

    /// The legacy converter's `mean_values` for these parameters: the zero point.
    pub fn mean(&self) -> f32 {
        self.zero_point as f32
    }

    /// The legacy converter's `std_dev_values`: integer steps per unit, `1 / scale`.
    pub fn std_dev(&self) -> f32 {
        1.0 / self.scale
    }
}

/// All the numbers that describe one affine quantization, in full precision: what
/// `octet params` prints. `mean`/`std_dev` are the legacy converter's flags
/// (`real = (q - mean) / std_dev`); `min`/`max` the exactly representable range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamsTable {
    /// `--mean_values`: the zero point before nudging (a range's `qmin - min / scale`).
    pub mean: f64,
    /// `--std_dev_values`: `1 / scale`.
    pub std_dev: f64,
    /// Real value of one integer step.
    pub scale: f64,
    /// The nudged zero point.
    pub zero_point: i32,
    /// Real value of the smallest integer.
    pub min: f64,
    /// Real value of the largest integer.
    pub max: f64,
}

impl ParamsTable {
    fn new(mean: f64, scale: f64, zero_point: i32, range: IntRange) -> Self {
        ParamsTable {
            mean,
            std_dev: 1.0 / scale,
            scale,
            zero_point,
            min: f64::from(range.qmin - zero_point) * scale,
            max: f64::from(range.qmax - zero_point) * scale,
        }
    }

    /// From a float range, as [`from_range`] quantizes it.
    pub fn for_range(min: f64, max: f64, range: IntRange) -> Result<Self, QuantError> {
        if !min.is_finite() || !max.is_finite() || min > max {
            return Err(QuantError::BadRange {
                min: min as f32,
                max: max as f32,
            });
        }
        let (min, max) = (min.min(0.0), max.max(0.0));
        let (qmin, qmax) = (f64::from(range.qmin), f64::from(range.qmax));
        if min == max {
            // An all-zero tensor: any scale represents it; TensorFlow uses 1.
            let zero_point = range.qmin.max(0).min(range.qmax);
            return Ok(Self::new(f64::from(zero_point), 1.0, zero_point, range));
        }
        let scale = (max - min) / (qmax - qmin);
        let mean = qmin - min / scale;
        let zero_point = mean.round().clamp(qmin, qmax) as i32;
        Ok(Self::new(mean, scale, zero_point, range))
    }

    /// From the legacy converter's input statistics.
    pub fn for_mean_std(mean: f64, std_dev: f64, range: IntRange) -> Result<Self, QuantError> {
        if !mean.is_finite() || !std_dev.is_finite() || std_dev <= 0.0 {
            return Err(QuantError::BadStats {
                mean: mean as f32,
                std_dev: std_dev as f32,
            });
        }
        let zero_point = (mean.round() as i32).clamp(range.qmin, range.qmax);
        Ok(Self::new(mean, 1.0 / std_dev, zero_point, range))
    }

    /// From a scale and zero point, checked.
    pub fn for_scale_zero_point(
        scale: f64,
        zero_point: i32,
        range: IntRange,
    ) -> Result<Self, QuantError> {
        if !scale.is_finite() || scale <= 0.0 {
            return Err(QuantError::BadScale(scale as f32));
        }
        if zero_point < range.qmin || zero_point > range.qmax {
            return Err(QuantError::BadZeroPoint {
                zero_point,
                dtype: range.dtype,
            });
        }
        Ok(Self::new(f64::from(zero_point), scale, zero_point, range))
    }

    /// The parameters a model stores (scale as `f32`).
    pub fn affine(&self) -> AffineParams {
        AffineParams {
            scale: self.scale as f32,
            zero_point: self.zero_point,
            min: self.min as f32,
            max: self.max as f32,
        }
    }
}

/// Parameters for the float range `[min, max]`, the way TensorFlow's quantizer chooses them: the
/// range is first widened to contain 0 (zero must be exactly representable, or zero padding and
/// ReLU would be off), `scale = (max - min) / (qmax - qmin)`, and the zero point
/// `qmin - min / scale` is rounded half away from zero and clamped to the integer range (the
/// "nudge"). The representable range then shifts slightly: see [`AffineParams::min`]/`max`.
pub fn from_range(min: f32, max: f32, range: IntRange) -> Result<AffineParams, QuantError> {
    ParamsTable::for_range(f64::from(min), f64::from(max), range).map(|t| t.affine())
}

/// Symmetric parameters for `[-max_abs, max_abs]` (weights): zero point 0 and
/// `scale = max_abs / qmax`, so that the integer range used is `[-qmax, qmax]` (for int8,
/// [-127, 127], as the TFLite int8 specification requires).
pub fn symmetric(max_abs: f32, range: IntRange) -> Result<AffineParams, QuantError> {
    if !max_abs.is_finite() || max_abs < 0.0 {
        return Err(QuantError::BadRange {
            min: -max_abs,
            max: max_abs,
        });
    }
    let scale = if max_abs == 0.0 {
        1.0
    } else {
        max_abs / range.qmax as f32
    };
    Ok(AffineParams::with_range(scale, 0, range))
}

/// Parameters from the legacy converter's input statistics: `real = (q - mean) / std_dev`, that
/// is `zero_point = mean` (rounded half away from zero and clamped) and `scale = 1 / std_dev`.
pub fn from_mean_std(mean: f32, std_dev: f32, range: IntRange) -> Result<AffineParams, QuantError> {
    ParamsTable::for_mean_std(f64::from(mean), f64::from(std_dev), range).map(|t| t.affine())
}

/// Parameters given directly, checked.
pub fn from_scale_zero_point(
    scale: f32,
    zero_point: i32,
    range: IntRange,
) -> Result<AffineParams, QuantError> {
    ParamsTable::for_scale_zero_point(f64::from(scale), zero_point, range).map(|t| t.affine())
}

/// The unnudged `mean` the legacy converter's documentation derives from a float range:
/// `qmin - min / scale` (for uint8, `255 * min / (min - max)`), before rounding.
pub fn mean_for_range(min: f32, max: f32, range: IntRange) -> f32 {
    ParamsTable::for_range(f64::from(min), f64::from(max), range)
        .map_or(range.qmin as f32, |t| t.mean as f32)
}

/// `x.round() as i64` (half away from zero; NaN gives 0, out-of-range values saturate),
/// without the library call `f32::round` becomes on baseline x86-64: the truncating conversion
/// and one comparison of the (exact) fractional part. Quantizing weights rounds every value, so
/// this is the quantizer's inner loop.
#[inline]
pub fn round_to_i64(x: f32) -> i64 {
    // Below 2^23 in magnitude a float may have a fraction; from there on it is an integer.
    const FRACTIONAL_BELOW: f32 = 8_388_608.0;
    if x.abs() < FRACTIONAL_BELOW {
        let t = x as i64;
        // `x - t` is exact: both lie in the same binade or below.
        let fraction = x - t as f32;
        t + i64::from(fraction >= 0.5) - i64::from(fraction <= -0.5)
    } else {
        x as i64
    }
}

/// `out[i] = clamp(round(values[i] * inverse), -qmax, qmax)` as `i8` bytes (`qmax` at most
/// 127): symmetric weights, rounded half away from zero, NaN giving 0, as `f32::round` and
/// `as` do.
///
/// Only float and integer arithmetic that vectorises: the value is clamped first (the bounds
/// are integers, so this gives the same integers), then rounded to nearest-even by adding
/// 1.5 * 2^23 (whose bits then hold the integer), and ties are moved away from zero.
pub fn quantize_symmetric_i8(values: &[f32], inverse: f32, qmax: i32, out: &mut [u8]) {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    const MAGIC_BITS: i32 = 0x4b40_0000;
    let bound = qmax.clamp(0, 127) as f32;
    for (o, &v) in out.iter_mut().zip(values) {
        let x = v * inverse;
        let x = if x.is_nan() {
            0.0
        } else {
            x.clamp(-bound, bound)
        };
        let sum = x + MAGIC;
        let even = sum - MAGIC;
        let tie = x - even;
        let q = (sum.to_bits() as i32 - MAGIC_BITS) + i32::from(tie == 0.5 && x > 0.0)
            - i32::from(tie == -0.5 && x < 0.0);
        *o = q as i8 as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uint8() -> IntRange {
        IntRange::of(DType::UInt8).unwrap()
    }

    // The conversion table of the background article (mean = 255 * min / (min - max),
    // std_dev = 255 / (max - min)).
    #[test]
    fn range_0_255_is_mean_0_std_1() {
        let p = from_range(0.0, 255.0, uint8()).unwrap();
        assert_eq!((p.scale, p.zero_point), (1.0, 0));
        assert_eq!(p.std_dev(), 1.0);
        assert_eq!(mean_for_range(0.0, 255.0, uint8()), 0.0);
    }

    #[test]
    fn range_minus1_1_is_mean_127_5_std_127_5_with_zero_point_nudged_to_128() {
        let p = from_range(-1.0, 1.0, uint8()).unwrap();
        assert_eq!(mean_for_range(-1.0, 1.0, uint8()), 127.5);
        assert!((p.std_dev() - 127.5).abs() < 1e-4);
        assert_eq!(p.zero_point, 128);
        // After the nudge, -1 is no longer exact: the range is [-128/127.5, 127/127.5].
        assert!((p.min - -1.003_921_6).abs() < 1e-6, "{}", p.min);
        assert!((p.max - 0.996_078_4).abs() < 1e-6, "{}", p.max);
    }

    #[test]
    fn range_0_1_is_mean_0_std_255() {
        let p = from_range(0.0, 1.0, uint8()).unwrap();
        assert_eq!(p.zero_point, 0);
        assert!((p.std_dev() - 255.0).abs() < 1e-3);
        assert_eq!(mean_for_range(0.0, 1.0, uint8()), 0.0);
    }

    #[test]
    fn mean_128_std_127_is_scale_1_127_zero_point_128() {
        let p = from_mean_std(128.0, 127.0, uint8()).unwrap();
        assert_eq!(p.zero_point, 128);
        assert!((p.scale - 1.0 / 127.0).abs() < 1e-9);
        assert!((p.min - -1.007_874).abs() < 1e-5, "{}", p.min);
        assert!((p.max - 1.0).abs() < 1e-6, "{}", p.max);
    }

    #[test]
    fn ranges_are_widened_to_contain_zero() {
        let p = from_range(2.0, 6.0, uint8()).unwrap();
        assert_eq!(p.zero_point, 0);
        assert!((p.scale - 6.0 / 255.0).abs() < 1e-9);
        let int8 = IntRange::of(DType::Int8).unwrap();
        let p = from_range(-6.0, -2.0, int8).unwrap();
        assert_eq!(p.zero_point, 127);
    }

    #[test]
    fn symmetric_weights_use_minus_127_to_127() {
        let int8 = IntRange::of(DType::Int8).unwrap();
        let p = symmetric(0.5, int8).unwrap();
        assert_eq!(p.zero_point, 0);
        assert!((p.scale - 0.5 / 127.0).abs() < 1e-9);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(from_range(1.0, -1.0, uint8()).is_err());
        assert!(from_range(f32::NAN, 1.0, uint8()).is_err());
        assert!(from_mean_std(0.0, 0.0, uint8()).is_err());
        assert!(from_scale_zero_point(0.1, 300, uint8()).is_err());
        assert!(from_scale_zero_point(-0.1, 0, uint8()).is_err());
        assert!(IntRange::of(DType::Float32).is_err());
    }

    #[test]
    fn round_to_i64_is_round_then_cast() {
        let check = |x: f32| {
            assert_eq!(
                round_to_i64(x),
                x.round() as i64,
                "{x:e} ({:#x})",
                x.to_bits()
            )
        };
        for x in [
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.5,
            -1.5,
            2.5,
            -2.5,
            0.499_999_97,
            -0.499_999_97,
            8_388_607.5,
            -8_388_607.5,
            8_388_608.0,
            16_777_217.0,
            1e30,
            -1e30,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MIN_POSITIVE,
            f32::MAX,
            f32::MIN,
        ] {
            check(x);
        }
        // A spread of bit patterns over every exponent, both signs.
        let mut bits = 0u32;
        loop {
            check(f32::from_bits(bits));
            match bits.checked_add(65_537) {
                Some(b) => bits = b,
                None => break,
            }
        }
        // Densely around the halves, where the rounding decides.
        for i in -300_000..300_000 {
            let x = i as f32 / 1024.0;
            check(x);
            check(f32::from_bits(x.to_bits().wrapping_add(1)));
            check(f32::from_bits(x.to_bits().wrapping_sub(1)));
        }
    }

    #[test]
    fn symmetric_i8_is_round_then_clamp() {
        let mut values: Vec<f32> = (-70_000..70_000).map(|i| i as f32 / 256.0).collect();
        values.extend([
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1e30,
            -1e30,
            -0.0,
            126.5,
            -126.5,
        ]);
        let mut bits = 0u32;
        while let Some(b) = bits.checked_add(104_729) {
            values.push(f32::from_bits(bits));
            bits = b;
        }
        for inverse in [1.0, 0.37, 3.1, 127.0 / 0.023] {
            let mut out = vec![0u8; values.len()];
            quantize_symmetric_i8(&values, inverse, 127, &mut out);
            for (&v, &o) in values.iter().zip(&out) {
                let expected = ((v * inverse).round() as i32).clamp(-127, 127) as i8 as u8;
                assert_eq!(o, expected, "{v:e} * {inverse}");
            }
        }
    }
}
