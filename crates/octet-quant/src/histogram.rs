//! Value histograms of calibrated tensors, and the clipping ranges chosen from them
//! (`--calibration minmax|percentile|mse`).
//!
//! A [`Histogram`] counts values by sign and magnitude: [`BINS`] bins for each sign, all of
//! width `2^exponent`, from zero outwards. A value beyond the last bin doubles the width (bins
//! merge pairwise), so the histogram is built in one pass over data of unknown range, and two
//! histograms (of two calibration threads) merge exactly: the one with narrower bins is brought
//! to the wider width first.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use octet_linalg::frame::elementwise::FiniteRange;

use crate::QuantError;
use crate::params::{self, IntRange};

/// Bins per sign.
pub const BINS: usize = 2048;

/// The most values of one tensor and sample that [`Histogram::add`] counts.
pub const SAMPLED: usize = 1 << 12;

/// Counts of a tensor's finite values by sign and magnitude, with the exact extremes.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Bin width is `2^exponent`.
    exponent: i32,
    /// `positive[i]` counts values in `[i, i + 1) * width`.
    positive: Vec<u64>,
    /// `negative[i]` counts values in `(-(i + 1), -i] * width`, zero excluded.
    negative: Vec<u64>,
    min: f32,
    max: f32,
    /// Every finite value offered (counted or not).
    seen: u64,
    /// The largest and smallest values seen, exactly, for percentiles.
    tails: Tails,
}

/// A float with the total order of [`f32::total_cmp`], for heaps.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ordered(f32);

impl Eq for Ordered {}

impl PartialOrd for Ordered {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ordered {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The `capacity` largest and `capacity` smallest values of a stream, exactly: a percentile
/// near 100 is one of them, whatever the histogram's sampling skipped.
#[derive(Debug, Clone, Default)]
struct Tails {
    capacity: usize,
    /// Min-heap of the largest values.
    high: BinaryHeap<Reverse<Ordered>>,
    /// Max-heap of the smallest values.
    low: BinaryHeap<Ordered>,
}

impl PartialEq for Tails {
    fn eq(&self, other: &Self) -> bool {
        let sorted = |t: &Tails| {
            let mut h: Vec<f32> = t.high.iter().map(|r| r.0.0).collect();
            let mut l: Vec<f32> = t.low.iter().map(|o| o.0).collect();
            h.sort_by(f32::total_cmp);
            l.sort_by(f32::total_cmp);
            (h, l)
        };
        self.capacity == other.capacity && sorted(self) == sorted(other)
    }
}

impl Tails {
    fn push_high(&mut self, v: f32) {
        self.high.push(Reverse(Ordered(v)));
        if self.high.len() > self.capacity {
            self.high.pop();
        }
    }

    fn push_low(&mut self, v: f32) {
        self.low.push(Ordered(v));
        if self.low.len() > self.capacity {
            self.low.pop();
        }
    }

    /// Offers every finite value of `values`; blocks whose finite extremes (found by the SIMD
    /// `range` kernel) cannot enter are skipped after that one pass.
    fn offer(&mut self, values: &[f32], range: &FiniteRange) {
        if self.capacity == 0 {
            return;
        }
        let mut high_bar = self.high_bar();
        let mut low_bar = self.low_bar();
        for block in values.chunks(256) {
            let Some((lo, hi)) = range.run(block) else {
                continue;
            };
            if hi > high_bar {
                for &v in block {
                    if v > high_bar && v.is_finite() {
                        self.push_high(v);
                        high_bar = self.high_bar();
                    }
                }
            }
            if lo < low_bar {
                for &v in block {
                    if v < low_bar && v.is_finite() {
                        self.push_low(v);
                        low_bar = self.low_bar();
                    }
                }
            }
        }
    }

    /// What a value must exceed to enter the high tail.
    fn high_bar(&self) -> f32 {
        match self.high.peek() {
            Some(r) if self.high.len() >= self.capacity => r.0.0,
            _ => f32::NEG_INFINITY,
        }
    }

    /// What a value must be below to enter the low tail.
    fn low_bar(&self) -> f32 {
        match self.low.peek() {
            Some(o) if self.low.len() >= self.capacity => o.0,
            _ => f32::INFINITY,
        }
    }

    fn merge(&mut self, other: Tails) {
        self.capacity = self.capacity.max(other.capacity);
        for Reverse(Ordered(v)) in other.high {
            self.push_high(v);
        }
        for Ordered(v) in other.low {
            self.push_low(v);
        }
    }

    /// The `k`-th largest (`k` = 1: the largest) and `k`-th smallest values, if kept.
    fn kth(&self, k: usize) -> Option<(f32, f32)> {
        if k == 0 || k > self.high.len() || k > self.low.len() {
            return None;
        }
        let mut high: Vec<f32> = self.high.iter().map(|r| r.0.0).collect();
        let mut low: Vec<f32> = self.low.iter().map(|o| o.0).collect();
        high.sort_by(|a, b| b.total_cmp(a));
        low.sort_by(f32::total_cmp);
        Some((*low.get(k - 1)?, *high.get(k - 1)?))
    }
}

impl Histogram {
    /// An empty histogram whose first bins are fine enough for values up to `max_abs`, keeping
    /// the `tail` largest and `tail` smallest values exactly.
    pub fn new(max_abs: f32, tail: usize) -> Self {
        Histogram {
            seen: 0,
            tails: Tails {
                capacity: tail,
                ..Tails::default()
            },
            exponent: exponent_for(max_abs),
            positive: vec![0; BINS],
            negative: vec![0; BINS],
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
        }
    }

    /// The smallest and largest value counted.
    pub fn extremes(&self) -> Option<(f32, f32)> {
        (self.min <= self.max).then_some((self.min, self.max))
    }

    fn width(&self) -> f32 {
        width_of(self.exponent)
    }

    /// Doubles the bin width until `max_abs` falls inside the last bin.
    fn cover(&mut self, max_abs: f32) {
        while self.exponent < 127 && self.width() * (BINS as f32) <= max_abs {
            self.widen();
        }
    }

    /// Doubles the bin width, merging bins pairwise.
    fn widen(&mut self) {
        for side in [&mut self.positive, &mut self.negative] {
            for i in 0..BINS / 2 {
                side[i] = side[2 * i] + side[2 * i + 1];
            }
            side[BINS / 2..].fill(0);
        }
        self.exponent += 1;
    }

    /// Counts the finite values of `values`, whose finite extremes are `(lo, hi)`. Of a long
    /// tensor, [`SAMPLED`] values spread over it are counted (the extremes are still exact): 4,096
    /// values per tensor and sample, 65,536 over 16 samples, put the 99.99th percentile on the
    /// 7th value of each tail, at a fraction of the cost of counting millions (counting 16,384
    /// per sample doubled octet's quantization time on iris_landmark).
    pub fn add(&mut self, values: &[f32], (lo, hi): (f32, f32), range: &FiniteRange) {
        if self.extremes().is_none() {
            self.exponent = exponent_for(lo.abs().max(hi.abs()));
        }
        self.cover(lo.abs().max(hi.abs()));
        self.min = self.min.min(lo);
        self.max = self.max.max(hi);
        // Non-finite values (a model that overflows) count as seen: they are too rare to move
        // a percentile's rank, and counting them would cost a pass over every value.
        self.seen += values.len() as u64;
        self.tails.offer(values, range);
        let inverse = 1.0 / self.width();
        let last = (BINS - 1) as f32;
        for v in sample(values) {
            // NaN fails the comparison and is skipped; infinities cannot occur (the extremes
            // are finite) but would land in the last bin.
            if v.abs() <= f32::MAX {
                let bin = (v.abs() * inverse).min(last) as usize;
                let side = if v.is_sign_negative() && v != 0.0 {
                    &mut self.negative
                } else {
                    &mut self.positive
                };
                if let Some(count) = side.get_mut(bin) {
                    *count += 1;
                }
            }
        }
    }

    /// Adds the counts of `other`.
    pub fn merge(&mut self, mut other: Histogram) {
        while other.exponent < self.exponent {
            other.widen();
        }
        while self.exponent < other.exponent {
            self.widen();
        }
        for (a, b) in self.positive.iter_mut().zip(&other.positive) {
            *a += b;
        }
        for (a, b) in self.negative.iter_mut().zip(&other.negative) {
            *a += b;
        }
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.seen += other.seen;
        self.tails.merge(other.tails);
    }

    /// `(bin centre, count)` of every non-empty bin, from the most negative up.
    fn centres(&self) -> Vec<(f32, f64)> {
        let w = self.width();
        let negative = self
            .negative
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, n)| **n > 0)
            .map(|(i, &n)| (-(i as f32 + 0.5) * w, n as f64));
        let positive = self
            .positive
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, &n)| ((i as f32 + 0.5) * w, n as f64));
        negative
            .chain(positive)
            .map(|(c, n)| (c.clamp(self.min, self.max), n))
            .collect()
    }

    /// The `[lo, hi]` that leaves out a fraction `(1 - keep) / 2` of the values on each side
    /// (`keep` = 0.9999 for the 99.99th percentile), never wider than the extremes.
    pub fn percentile_range(&self, keep: f64) -> Option<(f32, f32)> {
        let (min, max) = self.extremes()?;
        // Exactly, from the kept tails, when they reach that far.
        let tail = self.seen as f64 * (1.0 - keep.clamp(0.0, 1.0)) / 2.0;
        if let Some(exact) = self.tails.kth(tail.floor() as usize + 1) {
            return Some(exact);
        }
        let centres = self.centres();
        let total: f64 = centres.iter().map(|c| c.1).sum();
        let tail = total * (1.0 - keep.clamp(0.0, 1.0)) / 2.0;
        let w = self.width();
        let mut seen = 0.0;
        let mut lo = min;
        for &(c, n) in &centres {
            seen += n;
            if seen > tail {
                lo = (c - w / 2.0).max(min);
                break;
            }
        }
        let mut seen = 0.0;
        let mut hi = max;
        for &(c, n) in centres.iter().rev() {
            seen += n;
            if seen > tail {
                hi = (c + w / 2.0).min(max);
                break;
            }
        }
        Some((lo.min(hi), hi.max(lo)))
    }

    /// The clipping range by TensorRT's entropy method, on each side of zero: for the positive
    /// values, the threshold whose 128-level quantization of the histogram below it (values
    /// beyond it folded into the last bin) loses the least information, measured as the
    /// Kullback-Leibler divergence from the unquantized histogram; likewise for the negative
    /// values. Thresholds are tried every [`KL_STRIDE`] bins from 128 up.
    pub fn entropy_range(&self) -> Option<(f32, f32)> {
        let (min, max) = self.extremes()?;
        let w = self.width();
        let side = |counts: &[u64], extreme: f32| -> f32 {
            let total: u64 = counts.iter().sum();
            if total == 0 {
                return 0.0;
            }
            let last = counts.iter().rposition(|&c| c > 0).map_or(0, |i| i + 1);
            if last <= LEVELS {
                return extreme;
            }
            let mut best = (f64::INFINITY, last);
            let mut i = LEVELS;
            while i <= last {
                let kl = divergence(counts, i);
                if kl < best.0 {
                    best = (kl, i);
                }
                i += KL_STRIDE;
            }
            (best.1 as f32 * w).min(extreme.abs())
        };
        let hi = if max > 0.0 {
            side(&self.positive, max)
        } else {
            0.0
        };
        let lo = if min < 0.0 {
            -side(&self.negative, min)
        } else {
            0.0
        };
        Some((lo.min(0.0), hi.max(0.0)))
    }

    /// The clipping range whose quantization with `range`'s integers (TFLite's nudged scale and
    /// zero point) gives the smallest mean squared error over the counted values: the scale
    /// trades rounding error inside the range against clipping error outside it. Searched as a
    /// common shrink of `[min, max]`, then each end alone.
    pub fn mse_range(&self, range: IntRange) -> Result<Option<(f32, f32)>, QuantError> {
        let Some((min, max)) = self.extremes() else {
            return Ok(None);
        };
        // Every quantized range contains 0; shrinking keeps it there.
        let (min, max) = (min.min(0.0), max.max(0.0));
        if min == max {
            return Ok(Some((min, max)));
        }
        let centres = self.centres();
        let error = |lo: f32, hi: f32| -> Result<f64, QuantError> {
            let p = params::from_range(lo, hi, range)?;
            let inverse = 1.0 / p.scale;
            let (qmin, qmax) = (range.qmin as f32, range.qmax as f32);
            let zero = p.zero_point as f32;
            Ok(centres
                .iter()
                .map(|&(c, n)| {
                    let q = ((c * inverse).round() + zero).clamp(qmin, qmax);
                    let e = f64::from((q - zero) * p.scale - c);
                    e * e * n
                })
                .sum())
        };
        let steps: Vec<f32> = (0..=70).map(|k| 1.0 - k as f32 / 100.0).collect();
        let mut best = (error(min, max)?, min, max);
        for &t in &steps {
            let e = error(min * t, max * t)?;
            if e < best.0 {
                best = (e, min * t, max * t);
            }
        }
        let (_, lo, hi) = best;
        for &t in &steps {
            let e = error(lo, hi * t)?;
            if e < best.0 {
                best = (e, lo, hi * t);
            }
        }
        let (_, lo, hi) = best;
        for &t in &steps {
            let e = error(lo * t, hi)?;
            if e < best.0 {
                best = (e, lo * t, hi);
            }
        }
        Ok(Some((best.1, best.2)))
    }
}

/// All of `values`, or [`SAMPLED`] of them spread over the whole tensor. Not every `k`-th: in
/// an NHWC tensor a stride that is a multiple of the channel count would see one channel
/// only. Element `(j * step) mod len` for `j < SAMPLED`, with `step` near `len` times the
/// golden ratio and coprime with `len`, visits distinct elements spread evenly over every
/// axis (a Weyl sequence).
fn sample(values: &[f32]) -> impl Iterator<Item = f32> + '_ {
    let len = values.len();
    let (count, step) = if len <= SAMPLED {
        (len, 1)
    } else {
        let mut step = ((len as f64) * 0.618_033_988_749_895) as usize;
        while gcd(step, len) != 1 {
            step += 1;
        }
        (SAMPLED, step)
    };
    // step < len: one subtraction keeps the index in range (no division per element).
    let step = step % len.max(1);
    let mut index = 0usize;
    (0..count).filter_map(move |_| {
        let v = values.get(index).copied();
        index += step;
        if index >= len {
            index -= len;
        }
        v
    })
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Levels per side in [`Histogram::entropy_range`] (int8 has 128 on each side of zero).
const LEVELS: usize = 128;

/// Thresholds [`Histogram::entropy_range`] skips between tries.
pub const KL_STRIDE: usize = 16;

/// KL(P || Q) for threshold bin `i`: P is `counts[..i]` with the rest folded into bin `i - 1`;
/// Q merges `counts[..i]` into [`LEVELS`] levels and spreads each level's mass evenly over its
/// non-empty bins.
fn divergence(counts: &[u64], i: usize) -> f64 {
    let mut p: Vec<f64> = counts.iter().take(i).map(|&c| c as f64).collect();
    let outliers: f64 = counts.iter().skip(i).map(|&c| c as f64).sum();
    if let Some(last) = p.last_mut() {
        *last += outliers;
    }
    let total: f64 = p.iter().sum();
    if total == 0.0 {
        return 0.0;
    }
    let q_total: f64 = counts.iter().take(i).map(|&c| c as f64).sum();
    if q_total == 0.0 {
        return f64::INFINITY;
    }
    // Q quantizes the histogram below the threshold without the folded outliers, so that a
    // threshold which clips much is not mistaken for a faithful one.
    let below: Vec<f64> = counts.iter().take(i).map(|&c| c as f64).collect();
    let mut q = vec![0.0f64; i];
    for level in 0..LEVELS {
        let start = level * i / LEVELS;
        let end = ((level + 1) * i / LEVELS).max(start + 1).min(i);
        let bins = &below[start..end];
        let mass: f64 = bins.iter().sum();
        let nonzero = bins.iter().filter(|&&c| c > 0.0).count();
        if nonzero == 0 {
            continue;
        }
        for (k, &c) in bins.iter().enumerate() {
            if c > 0.0 {
                q[start + k] = mass / nonzero as f64;
            }
        }
    }
    p.iter()
        .zip(&q)
        .filter(|(pi, _)| **pi > 0.0)
        .map(|(&pi, &qi)| {
            let (pi, qi) = (pi / total, qi.max(1e-12) / q_total);
            pi * (pi / qi).ln()
        })
        .sum()
}

fn width_of(exponent: i32) -> f32 {
    2f32.powi(exponent)
}

/// The smallest bin-width exponent whose [`BINS`] bins hold `max_abs`.
fn exponent_for(max_abs: f32) -> i32 {
    let mut exponent = -126;
    while exponent < 127 && width_of(exponent) * (BINS as f32) <= max_abs {
        exponent += 1;
    }
    exponent
}

#[cfg(test)]
mod tests {
    use super::*;
    use octet_core::DType;
    use octet_linalg::Isa;

    fn kernel() -> FiniteRange {
        FiniteRange::new(Isa::detect())
    }

    /// The histogram of `values`, added in pieces short enough to be counted whole.
    fn histogram(values: &[f32]) -> Histogram {
        let mut h = Histogram::new(0.0, values.len() / 1000 + 1);
        for piece in values.chunks(SAMPLED) {
            let lo = piece.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = piece.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            h.add(piece, (lo, hi), &kernel());
        }
        h
    }

    #[test]
    fn long_tensors_are_sampled_with_exact_extremes() {
        let values = noise(4 * SAMPLED);
        let mut h = Histogram::new(0.0, 0);
        h.add(&values, (-1.0, 1.0), &kernel());
        let total: u64 = h.positive.iter().chain(&h.negative).sum();
        assert_eq!(total, SAMPLED as u64);
        assert_eq!(h.extremes(), Some((-1.0, 1.0)));
    }

    /// Deterministic values in [-1, 1).
    fn noise(n: usize) -> Vec<f32> {
        let mut state = 12345u32;
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1u32 << 23) as f32 - 1.0
            })
            .collect()
    }

    #[test]
    fn widening_and_merging_give_the_histogram_of_all_values() {
        let values: Vec<f32> = noise(10_000).iter().map(|v| v * 3.0).collect();
        let whole = histogram(&values);
        // Small values first, then large ones: the second part widens the first's bins.
        let (small, large): (Vec<f32>, Vec<f32>) = values.iter().partition(|v| v.abs() < 0.5);
        let mut parts = histogram(&small);
        parts.merge(histogram(&large));
        // The tails kept depend on the capacity; the counts must agree.
        assert_eq!(parts.positive, whole.positive);
        assert_eq!(parts.negative, whole.negative);
        assert_eq!(parts.extremes(), whole.extremes());
        let total: u64 = whole.positive.iter().chain(&whole.negative).sum();
        assert_eq!(total, 10_000);
    }

    #[test]
    fn percentiles_cut_the_tails() {
        let mut values = noise(100_000);
        values.push(50.0);
        values.push(-40.0);
        let h = histogram(&values);
        assert_eq!(h.percentile_range(1.0), Some((-40.0, 50.0)));
        let (lo, hi) = h.percentile_range(0.999).unwrap();
        assert!(
            (-1.05..-0.95).contains(&lo) && (0.95..1.05).contains(&hi),
            "{lo} {hi}"
        );
    }

    #[test]
    fn entropy_clips_a_long_thin_tail() {
        // Exponentially distributed values (mean 0.5, largest about 6): the sparse tail is
        // clipped, the bulk kept.
        let values: Vec<f32> = noise(100_000)
            .iter()
            .map(|v| -(0.5 * (v + 1.0)).max(1e-9).ln() * 0.5)
            .collect();
        let max = values.iter().copied().fold(0.0f32, f32::max);
        let (lo, hi) = histogram(&values).entropy_range().unwrap();
        assert!(
            lo == 0.0 && hi > 1.5 && hi < 0.9 * max,
            "{lo} {hi} (max {max})"
        );
        // A dense range is kept.
        let (lo, hi) = histogram(&noise(100_000)).entropy_range().unwrap();
        assert!(lo < -0.9 && hi > 0.9, "{lo} {hi}");
    }

    #[test]
    fn mse_weighs_clipping_against_step_size() {
        let int8 = IntRange::of(DType::Int8).unwrap();
        // Uniform values: nothing to gain by clipping.
        let h = histogram(&noise(100_000));
        let (lo, hi) = h.mse_range(int8).unwrap().unwrap();
        assert!(lo < -0.97 && hi > 0.97, "{lo} {hi}");
        // One outlier at 60 among 100,000 values in [-1, 1): clipping it to `hi` costs
        // (60 - hi)^2, the steps cost 100,000 * ((hi + 1) / 255)^2 / 12. The sum is smallest
        // near hi = 53: the outlier is worth most of the range, and the search finds that.
        let mut values = noise(100_000);
        values.push(60.0);
        let h = histogram(&values);
        let (lo, hi) = h.mse_range(int8).unwrap().unwrap();
        assert!((48.0..58.0).contains(&hi) && lo < -0.9, "{lo} {hi}");
        // Half the values in [-1, 1), half spread to 8: each half needs the other's steps.
        let mut values = noise(50_000);
        values.extend(noise(50_000).iter().map(|v| 4.5 + 3.5 * v));
        let h = histogram(&values);
        let (_, hi) = h.mse_range(int8).unwrap().unwrap();
        assert!(hi > 7.5, "{hi}");
    }
}
