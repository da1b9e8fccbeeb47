//! TFLite's requantization (`MultiplyByQuantizedMultiplier`, double rounding) in the forms the
//! micro-kernels apply it, all tested against `octet_core::fixed_point`:
//!
//! - [`requantize_fixed`] / [`ChannelRequant`]: the integer form every SIMD output stage can
//!   reproduce lane for lane: `x = acc << left`, `(x * m + 2^30) >> 31` in 64 bits, then the
//!   rounding division by `2^right` (ties away from zero). `x86_64/requant.rs` holds its vector
//!   forms.
//! - [`FastRequant`]: a cheaper *checked* form for the 8-bit output stages. With a
//!   non-negative multiplier `m` and no left shift (or one that cannot wrap for the channel's
//!   accumulators: then `acc << left` is exact and the form is the `right = 0` one with `k = m
//!   2^(left - 31)`), the double rounding collapses to one floor
//!   (see below), `out = floor(acc * k + zero_point + 1/2 + e)` with `k = m / 2^(31 + right)`
//!   and `e = +-2^-(right + 1)` depending only on the sign of the high product. A kernel
//!   evaluates that in `f32` with one fused multiply-add and takes the floor, which is exact
//!   unless the value lies within the (proven) error bound of an integer: such lanes are
//!   flagged and the kernel recomputes them with the integer form. So results stay bit-exact;
//!   only the rare near-tie lane costs more.
//!
//! # The single-floor form
//!
//! For `m >= 0` gemmlowp's `SaturatingRoundingDoublingHighMul(x, m)` is `H = floor((x m +
//! 2^30) / 2^31)`, and `RoundingDivideByPOT(H, r)` for `r >= 1` is `floor((H + 2^(r-1) -
//! [H < 0]) / 2^r)` (the remainder exceeds the threshold exactly when adding the half carries).
//! Nested floors of integer divisions merge: the result is `floor((x m + 2^30 + 2^31 (2^(r-1) -
//! [H < 0])) / 2^(31 + r)) = floor(x k + 1/2 + 2^-(r+1) - [H < 0] 2^-r)`; for `r = 0` it is
//! `floor(x k + 1/2)`. `H < 0` exactly when `x m < -2^30`, that is when `x < t` with `t =
//! -floor(2^30 / m)` (and never for `m = 0`).
//!
//! # The error bound
//!
//! With `u = 2^-24`, `a` the accumulator, `T = a k + C` the exact value (`C` the exact offset),
//! the kernel computes `f = fl(fl(a) fl(k) + fl(C))` (one rounding for the fused multiply-add):
//! `|f - T| <= |a k| (3u + 3u^2 + u^3) + |C| (2u + u^2)`. Only accumulators whose value lands in
//! or next to the clamp range matter (`|a k| <= R`, the distance from the zero point to the
//! farther clamp bound plus 4): beyond it both the exact and the computed value saturate to the
//! same bound. `C` contains a margin `w >= E + s` (`E` the bound at `|a k| = R`, `s = 2^-23`
//! for the rounding of the fraction): a lane is trusted when `frac(f) >= 2w`, and then `floor(f)
//! = floor(T - w)`, the exact result.

use octet_core::fixed_point::{QuantizedMultiplier, multiply_by_quantized_multiplier};

use crate::LinalgError;

/// TFLite's double-rounding `MultiplyByQuantizedMultiplier` written the way the SIMD kernels
/// compute it: `x = acc << left` (wrapping; 0 for `left >= 32`), then the rounding doubling
/// high product `(x * m + 2^30) >> 31` in 64 bits (exact for `m >= 0`, where the saturating
/// case of `SaturatingRoundingDoublingHighMul` cannot occur), then `RoundingDivideByPOT` by
/// `right` (ties away from zero).
#[inline]
pub fn requantize_fixed(acc: i32, multiplier: i32, left: i32, right: i32) -> i32 {
    let x = if left >= 32 {
        0
    } else {
        acc.wrapping_shl(left.max(0) as u32)
    };
    let high = ((i64::from(x) * i64::from(multiplier) + (1 << 30)) >> 31) as i32;
    let right = right.clamp(0, 31);
    let mask = ((1i64 << right) - 1) as i32;
    let remainder = high & mask;
    let threshold = (mask >> 1) + i32::from(high < 0);
    (high >> right) + i32::from(remainder > threshold)
}

/// A per-channel requantization in the form the SIMD output stages apply it: TFLite's
/// `MultiplyByQuantizedMultiplier` (double rounding) for a non-negative multiplier, as
/// `rounding_divide_by_pot((x << left) * multiplier + 2^30 >> 31, right)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChannelRequant {
    /// The Q0.31 multiplier, non-negative.
    pub multiplier: i32,
    /// Left shift before the multiplication, 0..=32 (32 makes every value 0, as TFLite's
    /// wrapping shift does).
    pub left: i32,
    /// Rounding right shift after it, 0..=31.
    pub right: i32,
}

impl ChannelRequant {
    /// Splits a TFLite multiplier; refuses negative multipliers (the SIMD stages compute the
    /// high product as a floor shift, exact only for them) and right shifts beyond 31.
    pub fn new(m: QuantizedMultiplier) -> Result<Self, LinalgError> {
        if m.multiplier < 0 || m.shift < -31 {
            return Err(LinalgError::InvalidParameter(format!(
                "multiplier {} with shift {} (needs a non-negative multiplier, shift >= -31)",
                m.multiplier, m.shift
            )));
        }
        Ok(ChannelRequant {
            multiplier: m.multiplier,
            left: m.shift.clamp(0, 32),
            right: (-m.shift).max(0),
        })
    }

    /// Applies it to one accumulator: exactly [`multiply_by_quantized_multiplier`].
    #[inline]
    pub fn apply(self, x: i32) -> i32 {
        requantize_fixed(x, self.multiplier, self.left, self.right)
    }

    /// The TFLite multiplier it was made from (for tests).
    pub fn reference(self, x: i32) -> i32 {
        let shift = if self.left > 0 {
            self.left
        } else {
            -self.right
        };
        multiply_by_quantized_multiplier(
            x,
            QuantizedMultiplier {
                multiplier: self.multiplier,
                shift,
            },
        )
    }
}

/// `2^e` as an `f64` (exact for the exponents used here).
fn pow2(e: i32) -> f64 {
    f64::powi(2.0, e)
}

/// The unit roundoff of `f32`.
const U: f64 = 1.0 / 16_777_216.0;

/// The float form of one channel's requantization (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FastLane {
    /// `k = m / 2^(31 + right)`, rounded to `f32`.
    pub scale: f32,
    /// `zero_point + 1/2 + 2^-(right+1) + w` (the offset when the high product is
    /// non-negative).
    pub offset: f32,
    /// `zero_point + 1/2 - 2^-(right+1) + w` (when it is negative).
    pub offset_neg: f32,
    /// The high product is negative exactly when the accumulator is below this.
    pub threshold: i32,
}

/// What the float form needs to know about one channel: its multiplier, and a bound on the
/// magnitude of every accumulator it will see (so that `|acc * k|` stays far from `2^31`,
/// where the conversion back to integers would overflow).
#[derive(Debug, Clone, Copy)]
pub struct FastChannel {
    /// The channel's multiplier.
    pub multiplier: QuantizedMultiplier,
    /// `|acc| <= acc_bound` for every accumulator of the channel.
    pub acc_bound: u64,
}

/// The checked float requantization of a set of channels, all with one output zero point and
/// clamp range (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq)]
pub struct FastRequant {
    /// One entry per channel.
    pub lanes: Vec<FastLane>,
    /// A lane is trusted when the fraction of its value is at least this (`2w`).
    pub window: f32,
}

impl FastRequant {
    /// The float form for `channels` with output `zero_point` and clamp `[lo, hi]`, or `None`
    /// when some channel needs a left shift that could wrap (the float form does not wrap as
    /// `acc << left` does: the accumulator bound times `2^left` must fit `i32`), has a negative
    /// multiplier, a right shift beyond 31, or accumulators large enough to approach `2^30`
    /// after scaling.
    pub fn new(channels: &[FastChannel], zero_point: i32, lo: i32, hi: i32) -> Option<Self> {
        let reach = f64::from((i64::from(hi) - i64::from(zero_point)).unsigned_abs() as u32).max(
            f64::from((i64::from(zero_point) - i64::from(lo)).unsigned_abs() as u32),
        );
        let r = reach + 4.0;
        let c_max = f64::from(zero_point).abs() + 2.0;
        let e = r * (3.0 * U + 3.0 * U * U + U * U * U) + c_max * (2.0 * U + U * U);
        if 2.0 * e > MAX_WINDOW {
            return None;
        }
        let w = (e + 2.0 * U) as f32;
        // Round up so that `w >= e + s` holds for the f32 value too.
        let w = f32::from_bits(w.to_bits() + 1);
        let window = 2.0 * w;
        let mut lanes = Vec::with_capacity(channels.len());
        for ch in channels {
            let m = ch.multiplier;
            if m.multiplier < 0 || m.shift < -31 || m.shift > 30 {
                return None;
            }
            // A left shift is exact (no wrap) when every accumulator still fits `i32` after
            // it: then `acc << left` times `m` is the `right = 0` case with `k = m 2^(left -
            // 31)`.
            let left = m.shift.max(0);
            if ch.acc_bound > (i32::MAX as u64) >> left {
                return None;
            }
            let right = (-m.shift).max(0);
            let k = f64::from(m.multiplier) * pow2(left - 31 - right);
            // |acc * k| plus the offset must stay well inside i32 for the conversion.
            if (ch.acc_bound as f64) * k + c_max >= pow2(30) {
                return None;
            }
            let (eps, threshold) = if right == 0 {
                (0.0, i32::MIN)
            } else {
                let threshold = if m.multiplier == 0 {
                    i32::MIN
                } else {
                    -((1i64 << 30) / i64::from(m.multiplier)) as i32
                };
                (pow2(-right - 1), threshold)
            };
            let base = f64::from(zero_point) + 0.5 + f64::from(w);
            lanes.push(FastLane {
                scale: k as f32,
                offset: (base + eps) as f32,
                offset_neg: (base - eps) as f32,
                threshold,
            });
        }
        Some(FastRequant { lanes, window })
    }

    /// The float path on one accumulator of channel `lane`, as the SIMD kernels compute it:
    /// the requantized value plus the zero point (before the clamp), or `None` when it lies too
    /// close to a rounding boundary to be trusted.
    #[inline]
    pub fn apply(&self, acc: i32, lane: usize) -> Option<i32> {
        fast_lane(&self.lanes[lane], self.window, acc)
    }
}

/// [`FastRequant::apply`] for one lane's parameters.
#[inline]
pub fn fast_lane(l: &FastLane, window: f32, acc: i32) -> Option<i32> {
    let c = if acc < l.threshold {
        l.offset_neg
    } else {
        l.offset
    };
    let f = (acc as f32).mul_add(l.scale, c);
    let floor = f.floor();
    if f - floor < window {
        None
    } else {
        Some(floor as i32)
    }
}

/// `v * m / 2^(31 + right)` for an exact integer `v` and a non-negative multiplier, as `f64`
/// (relative error at most 2^-52).
fn scaled(v: i64, m: QuantizedMultiplier) -> f64 {
    (i128::from(v) * i128::from(m.multiplier)) as f64 * pow2(m.shift - 31)
}

/// `1 + 2^-40`, applied to computed error bounds to cover their own `f64` rounding.
const MARGIN: f64 = 1.0 + 1.0 / 1_099_511_627_776.0;

/// The largest window (`2w`) a float form is used with: beyond it too many lanes would need
/// the integer path.
const MAX_WINDOW: f64 = 1.0 / 1024.0;

/// The checked float form of an 8-bit ADD or SUB: the exact result is `clamp(zero_point +
/// MultiplyByQuantizedMultiplier(A[x] + B[y], m), ...)` with `A`, `B` the inputs' rescaling
/// tables (signs folded in); a kernel computes `f = fma(x, kx, fma(y, ky, offset))` in `f32`,
/// trusts `floor(f)` when `frac(f) >= window` and otherwise recomputes the element exactly.
///
/// The rescaled inputs are affine in the input values up to their own rounding (`A[x] =
/// MultiplyByQuantizedMultiplier((x + offset) << 20, ...)`), so `A` and `B` are fitted by lines
/// whose largest deviation is measured over all 256 values and added to the error bound, with
/// the single-floor offset `+-2^-(right+1)` (see the [module docs](self)), which for ADD is far
/// below the other terms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FastSum {
    /// Slope in the first input's values.
    pub kx: f32,
    /// Slope in the second input's values.
    pub ky: f32,
    /// `zero_point + 1/2 + w` plus both lines' intercepts.
    pub offset: f32,
    /// `2w`.
    pub window: f32,
}

/// A line through `points` (value, exact real), its intercept chosen to centre the deviation;
/// returns `(slope as f32, intercept, largest deviation)`.
fn fit(points: &[(i32, f64)]) -> Option<(f32, f64, f64)> {
    let (first, last) = (points.first()?, points.last()?);
    if last.0 == first.0 {
        return None;
    }
    let slope = ((last.1 - first.1) / f64::from(last.0 - first.0)) as f32;
    let (mut lo, mut hi, mut noise) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
    for &(v, h) in points {
        let d = h - f64::from(slope) * f64::from(v);
        lo = lo.min(d);
        hi = hi.max(d);
        noise = noise.max((h.abs() + d.abs()) * pow2(-50));
    }
    Some((slope, (lo + hi) / 2.0, ((hi - lo) / 2.0 + noise) * MARGIN))
}

impl FastSum {
    /// The float form of `clamp(zero_point + MBQM(a + b, m))` where the first input's value
    /// `x` contributes `a(x)` and the second's `y` contributes `b(y)` (`xs`, `ys`: every value
    /// with its exact contribution, in increasing value order). `None` when `m` has a left
    /// shift or a negative multiplier, when `a + b` could leave `i32` (the reference would
    /// wrap), or when the bound is too loose to be useful.
    pub fn new(
        xs: &[(i32, i32)],
        ys: &[(i32, i32)],
        m: QuantizedMultiplier,
        zero_point: i32,
    ) -> Option<Self> {
        if m.multiplier < 0 || m.shift > 0 || m.shift < -31 {
            return None;
        }
        let widest = |v: &[(i32, i32)]| v.iter().map(|p| i64::from(p.1).abs()).max();
        if widest(xs)? + widest(ys)? >= 1 << 31 {
            return None;
        }
        let exact = |v: &[(i32, i32)]| -> Vec<(i32, f64)> {
            v.iter()
                .map(|&(q, a)| (q, scaled(i64::from(a), m)))
                .collect()
        };
        let (kx, cx, ex) = fit(&exact(xs))?;
        let (ky, cy, ey) = fit(&exact(ys))?;
        let eps = if m.shift == 0 { 0.0 } else { pow2(m.shift - 1) };
        let span = |v: &[(i32, i32)], k: f32| {
            v.iter()
                .map(|&(q, _)| (f64::from(k) * f64::from(q)).abs())
                .fold(0.0, f64::max)
        };
        let base = cx + cy + f64::from(zero_point) + 0.5;
        let offset_bound = base.abs() + 1.0;
        let m1 = span(ys, ky) + offset_bound;
        let mx = span(xs, kx);
        // Model, single-floor offset, the two fused multiply-adds, the offset's rounding and
        // the fraction's.
        let e =
            (ex + ey + eps + U * m1 + U * (mx + m1) * 1.001 + U * offset_bound + 2.0 * U) * MARGIN;
        if 2.0 * e > MAX_WINDOW || mx + m1 >= pow2(30) {
            return None;
        }
        let w = f32::from_bits((e as f32).to_bits() + 1);
        Some(FastSum {
            kx,
            ky,
            offset: (base + f64::from(w)) as f32,
            window: 2.0 * w,
        })
    }

    /// The float path on one pair of input values, as the SIMD kernels compute it: the
    /// result before the clamp, or `None` when it cannot be trusted.
    #[inline]
    pub fn apply(&self, x: i32, y: i32) -> Option<i32> {
        let f = (x as f32).mul_add(self.kx, (y as f32).mul_add(self.ky, self.offset));
        let floor = f.floor();
        if f - floor < self.window {
            None
        } else {
            Some(floor as i32)
        }
    }
}

/// The checked float form of the negative branch of an 8-bit PRELU with per-channel alphas:
/// for an input `x` below the zero point `zx`, the exact result is `clamp(zero_point +
/// MBQM((x - zx) * alpha[c], m))`; a kernel computes `f = fma(x, scale[c], offset[c])` and
/// trusts `floor(f)` when `frac(f) >= window`.
#[derive(Debug, Clone, PartialEq)]
pub struct FastPrelu {
    /// `alpha[c] * m / 2^(31 + right)` per channel.
    pub scale: Vec<f32>,
    /// `zero_point + 1/2 + e[c] + w - zx * scale` per channel (`e[c]` the single-floor offset,
    /// one sign per channel).
    pub offset: Vec<f32>,
    /// `2w`.
    pub window: f32,
}

impl FastPrelu {
    /// The float form for inputs in `[min_input, zx)` (`zx = -input_offset`); `None` when `m`
    /// has a left shift or a negative multiplier, when a channel's products do not all give
    /// the high product the same sign, or when the bound is too loose.
    pub fn new(
        alpha: &[i32],
        input_offset: i32,
        min_input: i32,
        m: QuantizedMultiplier,
        zero_point: i32,
    ) -> Option<Self> {
        if m.multiplier < 0 || m.shift > 0 || m.shift < -31 {
            return None;
        }
        let zx = -i64::from(input_offset);
        let (v_lo, v_hi) = (i64::from(min_input) - zx, -1i64);
        let right = -m.shift;
        let mut scale = Vec::with_capacity(alpha.len());
        let mut offset = Vec::with_capacity(alpha.len());
        let mut eps = Vec::with_capacity(alpha.len());
        let mut worst = 0.0f64;
        for &a in alpha {
            let a = i64::from(a);
            // H < 0 exactly when p * m < -2^30 (no left shift); p is monotone in v.
            let negative = |v: i64| i128::from(v * a) * i128::from(m.multiplier) < -(1i128 << 30);
            if v_lo <= v_hi && negative(v_lo) != negative(v_hi) {
                return None;
            }
            let e = if right == 0 {
                0.0
            } else if v_lo <= v_hi && negative(v_hi) {
                -pow2(-right - 1)
            } else {
                pow2(-right - 1)
            };
            let k = scaled(a, m);
            let kf = k as f32;
            let c = f64::from(zero_point) + 0.5 + e - zx as f64 * k;
            // |x| <= 256 for 8-bit inputs.
            let bound = 256.0 * U * k.abs()
                + U * (c.abs() + 1.0)
                + U * (256.0 * f64::from(kf).abs() + c.abs() + 1.0) * 1.001
                + 2.0 * U;
            worst = worst.max(bound);
            scale.push(kf);
            eps.push(c);
        }
        let e = worst * MARGIN;
        if 2.0 * e > MAX_WINDOW {
            return None;
        }
        let w = f32::from_bits((e as f32).to_bits() + 1);
        for c in eps {
            if (c + f64::from(w)).abs() >= pow2(30) {
                return None;
            }
            offset.push((c + f64::from(w)) as f32);
        }
        Some(FastPrelu {
            scale,
            offset,
            window: 2.0 * w,
        })
    }

    /// The float path on one input value below the zero point in channel `c`.
    #[inline]
    pub fn apply(&self, x: i32, c: usize) -> Option<i32> {
        let f = (x as f32).mul_add(self.scale[c], self.offset[c]);
        let floor = f.floor();
        if f - floor < self.window {
            None
        } else {
            Some(floor as i32)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code

    use super::*;
    use octet_core::fixed_point::quantize_multiplier;

    fn exact(acc: i32, m: QuantizedMultiplier, zp: i32, lo: i32, hi: i32) -> i32 {
        multiply_by_quantized_multiplier(acc, m)
            .wrapping_add(zp)
            .clamp(lo, hi)
    }

    /// Accumulators that land exactly on and around every rounding boundary of the output
    /// range, plus random ones.
    fn probe(
        m: QuantizedMultiplier,
        zp: i32,
        lo: i32,
        hi: i32,
        rng: &mut fastrand::Rng,
    ) -> Vec<i32> {
        let k = f64::from(m.multiplier) * pow2(m.shift - 31);
        let mut out = Vec::new();
        if k > 0.0 {
            for q in (lo - 2)..=(hi + 2) {
                // The boundary of output q: acc k + zp + 1/2 = q.
                let centre = (f64::from(q - zp) - 0.5) / k;
                for d in -3i64..=3 {
                    let a = centre.round() as i64 + d;
                    if let Ok(a) = i32::try_from(a) {
                        out.push(a);
                    }
                }
            }
        }
        for _ in 0..500 {
            out.push(rng.i32(-(1 << 24)..(1 << 24)) >> rng.u32(0..24));
        }
        out
    }

    #[test]
    fn fast_requant_is_exact_when_it_trusts_a_lane() {
        let mut rng = fastrand::Rng::with_seed(11);
        let mut trusted = 0usize;
        let mut total = 0usize;
        let mut left_shifted = 0usize;
        for case in 0..4000 {
            let real = match case % 5 {
                0 => rng.f64() * 0.01,
                1 => rng.f64(),
                2 => pow2(-(rng.i32(1..40))),
                3 => 1.0 + rng.f64() * 40.0,
                _ => rng.f64() * pow2(-(rng.i32(0..31))),
            };
            let Ok(m) = quantize_multiplier(real) else {
                continue;
            };
            let (tlo, thi) = if case % 2 == 0 { (-128, 127) } else { (0, 255) };
            let zp = rng.i32(tlo..=thi);
            let (lo, hi) = if rng.bool() {
                (tlo, thi)
            } else {
                (zp.max(tlo), thi)
            };
            let acc_bound: u64 = 1 << rng.u32(8..=24);
            let channels = [FastChannel {
                multiplier: m,
                acc_bound,
            }];
            let Some(fast) = FastRequant::new(&channels, zp, lo, hi) else {
                assert!(
                    (m.shift > 0 && acc_bound << m.shift > i32::MAX as u64)
                        || m.multiplier < 0
                        || m.shift < -31,
                    "{m:?}"
                );
                continue;
            };
            if m.shift > 0 {
                left_shifted += 1;
            }
            let bound = acc_bound.min(i32::MAX as u64) as i64;
            for acc in probe(m, zp, lo, hi, &mut rng) {
                if i64::from(acc).abs() > bound {
                    continue;
                }
                let want = exact(acc, m, zp, lo, hi);
                total += 1;
                if let Some(v) = fast.apply(acc, 0) {
                    trusted += 1;
                    assert_eq!(
                        v.clamp(lo, hi),
                        want,
                        "acc {acc} {m:?} zp {zp} [{lo}, {hi}]"
                    );
                }
            }
        }
        // Nearly all lanes are trusted even though the probe aims at the boundaries.
        assert!(trusted * 10 > total * 8, "{trusted} of {total}");
        assert!(
            left_shifted > 100,
            "{left_shifted} left-shifted multipliers"
        );
    }

    #[test]
    fn scalar_forms_match_tflite() {
        let mut rng = fastrand::Rng::with_seed(5);
        for shift in -31..=31 {
            for m in [0, 1, 1 << 30, i32::MAX, (1 << 30) + 12345, 1_518_500_250] {
                let q = QuantizedMultiplier {
                    multiplier: m,
                    shift,
                };
                let r = ChannelRequant::new(q).unwrap();
                for _ in 0..50 {
                    let x = rng.i32(..) >> rng.u32(0..31);
                    assert_eq!(r.apply(x), multiply_by_quantized_multiplier(x, q));
                }
            }
        }
    }

    #[test]
    fn fast_sum_is_exact_when_it_trusts_a_pair() {
        use octet_core::fixed_point::quantize_multiplier_smaller_than_one_exp;
        let mut rng = fastrand::Rng::with_seed(3);
        let mut trusted = 0usize;
        let mut total = 0usize;
        let mut built = 0;
        for case in 0..300 {
            let (tlo, thi) = if case % 2 == 0 { (-128, 127) } else { (0, 255) };
            let s1 = 0.001 + rng.f64() * 0.1;
            let s2 = if case % 5 == 0 {
                s1
            } else {
                0.001 + rng.f64() * 0.1
            };
            let so = 0.001 + rng.f64() * 0.2;
            let twice_max = 2.0 * s1.max(s2);
            let real1 = s1 / twice_max;
            let real2 = s2 / twice_max;
            let realo = twice_max / ((1 << 20) as f64 * so);
            let m1 = quantize_multiplier_smaller_than_one_exp(real1).unwrap();
            let m2 = quantize_multiplier_smaller_than_one_exp(real2).unwrap();
            let mo = quantize_multiplier_smaller_than_one_exp(realo).unwrap();
            let (z1, z2, zo) = (rng.i32(tlo..=thi), rng.i32(tlo..=thi), rng.i32(tlo..=thi));
            let sign = if case % 3 == 0 { -1 } else { 1 };
            let table = |z: i32, m: QuantizedMultiplier, sgn: i32| -> Vec<(i32, i32)> {
                (tlo..=thi)
                    .map(|v| (v, sgn * multiply_by_quantized_multiplier((v - z) << 20, m)))
                    .collect()
            };
            let (a, b) = (table(z1, m1, 1), table(z2, m2, sign));
            let Some(fast) = FastSum::new(&a, &b, mo, zo) else {
                continue;
            };
            built += 1;
            for (x, ax) in &a {
                for (y, by) in &b {
                    let want = multiply_by_quantized_multiplier(ax + by, mo) + zo;
                    total += 1;
                    if let Some(v) = fast.apply(*x, *y) {
                        trusted += 1;
                        assert_eq!(
                            v.clamp(tlo, thi),
                            want.clamp(tlo, thi),
                            "{x} {y} case {case}"
                        );
                    }
                }
            }
        }
        assert!(built > 250, "{built}");
        assert!(trusted * 100 > total * 99, "{trusted} of {total}");
    }

    #[test]
    fn fast_prelu_is_exact_when_it_trusts_a_value() {
        let mut rng = fastrand::Rng::with_seed(4);
        let (mut trusted, mut total, mut built) = (0usize, 0usize, 0);
        for case in 0..400 {
            let (tlo, thi) = if case % 2 == 0 { (-128, 127) } else { (0, 255) };
            let zx = rng.i32(tlo..=thi);
            let zo = rng.i32(tlo..=thi);
            let real = (rng.f64() + 0.01) * pow2(-rng.i32(0..12));
            let Ok(m) = quantize_multiplier(real) else {
                continue;
            };
            let alpha: Vec<i32> = (0..7).map(|_| rng.i32(-255..=255)).collect();
            let Some(fast) = FastPrelu::new(&alpha, -zx, tlo, m, zo) else {
                continue;
            };
            built += 1;
            for (c, &a) in alpha.iter().enumerate() {
                for x in tlo..zx {
                    let want = multiply_by_quantized_multiplier((x - zx) * a, m) + zo;
                    total += 1;
                    if let Some(v) = fast.apply(x, c) {
                        trusted += 1;
                        assert_eq!(
                            v.clamp(tlo, thi),
                            want.clamp(tlo, thi),
                            "{x} alpha {a} {m:?}"
                        );
                    }
                }
            }
        }
        assert!(built > 250, "{built}");
        assert!(trusted * 100 > total * 99, "{trusted} of {total}");
    }
}
