//! Calibration: running the float model over sample inputs and recording the range of every
//! float32 tensor it computes.

use std::collections::HashMap;

use octet_core::{DType, Model, TensorId};
use octet_linalg::frame::elementwise::FiniteRange;
use octet_runtime::{Interpreter, InterpreterOptions, Observation};

use crate::histogram::Histogram;
use crate::parallel::in_order;
use crate::params::IntRange;
use crate::{Calibration, QuantError};

/// Observed `[min, max]` of the float32 tensors of a model's main subgraph, by tensor id, and
/// (when asked for) a histogram of each tensor's values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TensorRanges {
    ranges: HashMap<TensorId, (f32, f32)>,
    /// Collect histograms too.
    histograms_wanted: bool,
    /// Calibration samples in all (sizes the exact tails of the histograms).
    samples: usize,
    histograms: HashMap<TensorId, Histogram>,
    /// Per-channel (last axis) sums and row counts of these tensors' values.
    means_wanted: std::collections::HashSet<TensorId>,
    means: HashMap<TensorId, (Vec<f64>, u64)>,
    /// Per-channel `(min, max)` of the same tensors.
    channel_ranges: HashMap<TensorId, Vec<(f32, f32)>>,
}

/// How the range of each activation is chosen from what calibration observed.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum RangeMethod {
    /// The smallest and largest value seen.
    #[default]
    MinMax,
    /// Clip the given percentage of the values symmetrically: `Percentile(99.99)` leaves out
    /// 0.005 % at each end.
    Percentile(f32),
    /// The range whose quantization has the smallest mean squared error over the values seen.
    Mse,
    /// TensorRT's entropy calibration: per side of zero, the threshold that minimises the
    /// Kullback-Leibler divergence between the values' histogram and its 128-level
    /// quantization.
    Entropy,
}

impl RangeMethod {
    /// Whether the method needs histograms.
    pub fn needs_histograms(self) -> bool {
        !matches!(self, RangeMethod::MinMax)
    }

    /// The method's name on the command line.
    pub fn name(self) -> String {
        match self {
            RangeMethod::MinMax => "minmax".into(),
            RangeMethod::Percentile(p) => format!("percentile={p}"),
            RangeMethod::Mse => "mse".into(),
            RangeMethod::Entropy => "entropy".into(),
        }
    }
}

impl TensorRanges {
    /// The observed range of `tensor`, if it was observed with at least one finite value.
    pub fn get(&self, tensor: TensorId) -> Option<(f32, f32)> {
        self.ranges.get(&tensor).copied()
    }

    /// Records `[min, max]` for `tensor`, widening a range already recorded.
    pub fn insert(&mut self, tensor: TensorId, min: f32, max: f32) {
        self.ranges
            .entry(tensor)
            .and_modify(|r| {
                r.0 = r.0.min(min);
                r.1 = r.1.max(max);
            })
            .or_insert((min, max));
    }

    /// Observed ranges with histograms of the values: what [`TensorRanges::clipped`] needs.
    pub fn with_histograms(samples: usize) -> Self {
        TensorRanges {
            histograms_wanted: true,
            samples,
            ..TensorRanges::default()
        }
    }

    /// The ranges `method` chooses for integers of `range`: each tensor with a histogram gets
    /// its clipped range (always containing 0, as every quantized range does); the others, and
    /// every tensor for [`RangeMethod::MinMax`], keep their observed range. Channel means are
    /// kept; histograms are not.
    pub fn clipped(
        &self,
        method: RangeMethod,
        range: IntRange,
    ) -> Result<TensorRanges, QuantError> {
        let mut out = TensorRanges {
            means: self.means.clone(),
            channel_ranges: self.channel_ranges.clone(),
            ..TensorRanges::default()
        };
        for (&tensor, &(lo, hi)) in &self.ranges {
            let chosen = match (method, self.histograms.get(&tensor)) {
                (RangeMethod::MinMax, _) | (_, None) => Some((lo, hi)),
                (RangeMethod::Percentile(p), Some(h)) => h.percentile_range(f64::from(p) / 100.0),
                (RangeMethod::Mse, Some(h)) => h.mse_range(range)?,
                (RangeMethod::Entropy, Some(h)) => h.entropy_range(),
            };
            // Within the observed range widened to 0, which every quantized range contains.
            let (a, b) = chosen.unwrap_or((lo, hi));
            let (a, b) = (a.min(0.0).max(lo.min(0.0)), b.max(0.0).min(hi.max(0.0)));
            out.ranges.insert(tensor, (a, b));
        }
        Ok(out)
    }

    /// Also records the per-channel mean (over the last axis) of `tensors`, for bias correction.
    pub fn with_channel_means(mut self, tensors: impl IntoIterator<Item = TensorId>) -> Self {
        self.means_wanted.extend(tensors);
        self
    }

    /// The mean of each channel (last axis) of `tensor` over the calibration samples, if it
    /// was recorded ([`TensorRanges::with_channel_means`]).
    pub fn channel_means(&self, tensor: TensorId) -> Option<Vec<f64>> {
        let (sums, rows) = self.means.get(&tensor)?;
        (*rows > 0).then(|| sums.iter().map(|s| s / *rows as f64).collect())
    }

    /// The `(min, max)` of each channel (last axis) of `tensor`, if recorded
    /// ([`TensorRanges::with_channel_means`]).
    pub fn channel_ranges(&self, tensor: TensorId) -> Option<&[(f32, f32)]> {
        self.channel_ranges.get(&tensor).map(Vec::as_slice)
    }

    /// Records that channel `i` of `tensor` is now divided by `scales[i]` (layer
    /// equalization): its range follows from the channel ranges, its means are divided, and
    /// its histogram, which no longer describes it, is dropped (the range is then the exact
    /// min/max, whatever the method).
    pub fn rescale(&mut self, tensor: TensorId, scales: &[f32]) {
        if let Some(ranges) = self.channel_ranges.get_mut(&tensor)
            && ranges.len() == scales.len()
        {
            for (r, s) in ranges.iter_mut().zip(scales) {
                *r = (r.0 / s, r.1 / s);
            }
            let lo = ranges.iter().map(|r| r.0).fold(f32::INFINITY, f32::min);
            let hi = ranges.iter().map(|r| r.1).fold(f32::NEG_INFINITY, f32::max);
            if lo <= hi {
                self.ranges.insert(tensor, (lo, hi));
            }
        }
        if let Some((sums, _)) = self.means.get_mut(&tensor)
            && sums.len() == scales.len()
        {
            for (m, s) in sums.iter_mut().zip(scales) {
                *m /= f64::from(*s);
            }
        }
        self.histograms.remove(&tensor);
    }

    /// Number of tensors with a range.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// True when no tensor has a range.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    fn observe(&mut self, obs: Observation<'_>, range: &FiniteRange) {
        if obs.info.dtype != DType::Float32 {
            return;
        }
        // The values as floats, decoded once (viewed in place where the bytes allow).
        let decoded: Vec<f32>;
        let values: &[f32] = match bytemuck::try_cast_slice::<u8, f32>(obs.bytes) {
            Ok(v) if cfg!(target_endian = "little") => v,
            _ => {
                decoded = obs
                    .bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                &decoded
            }
        };
        if self.means_wanted.contains(&obs.tensor)
            && let Some(&channels) = obs.info.shape.last()
            && channels > 0
        {
            self.add_channel_stats(obs.tensor, values, channels);
        }
        if let Some((lo, hi)) = range.run(values) {
            self.insert(obs.tensor, lo, hi);
            if self.histograms_wanted {
                // Tails of 0.005 % of all values on each side: exact percentiles from 99.99 up.
                let tail = (values.len() as f64 * self.samples as f64 * 0.000_05).ceil() as usize;
                self.histograms
                    .entry(obs.tensor)
                    .or_insert_with(|| Histogram::new(lo.abs().max(hi.abs()), tail))
                    .add(values, (lo, hi), range);
            }
        }
    }

    /// Adds the per-channel sums and extremes of `values` (rows of `channels` values) to
    /// `tensor`'s. Sums run in f32 lanes per observation (the compiler vectorizes the loop) and
    /// are added to the f64 totals once per observation.
    fn add_channel_stats(&mut self, tensor: TensorId, values: &[f32], channels: usize) {
        let mut sums = vec![0.0f32; channels];
        let mut mins = vec![f32::INFINITY; channels];
        let mut maxs = vec![f32::NEG_INFINITY; channels];
        let mut rows = 0u64;
        for row in values.chunks_exact(channels) {
            for (((s, lo), hi), &v) in sums
                .iter_mut()
                .zip(mins.iter_mut())
                .zip(maxs.iter_mut())
                .zip(row)
            {
                // NaN and infinities add nothing and fail both comparisons.
                *s += if v.abs() <= f32::MAX { v } else { 0.0 };
                *lo = if v < *lo { v } else { *lo };
                *hi = if v > *hi { v } else { *hi };
            }
            rows += 1;
        }
        let (totals, count) = self
            .means
            .entry(tensor)
            .or_insert_with(|| (vec![0.0; channels], 0));
        let extremes = self
            .channel_ranges
            .entry(tensor)
            .or_insert_with(|| vec![(f32::INFINITY, f32::NEG_INFINITY); channels]);
        if totals.len() != channels || extremes.len() != channels {
            return;
        }
        for (t, s) in totals.iter_mut().zip(&sums) {
            *t += f64::from(*s);
        }
        *count += rows;
        for ((e, &lo), &hi) in extremes.iter_mut().zip(&mins).zip(&maxs) {
            *e = (e.0.min(lo), e.1.max(hi));
        }
    }

    /// Widens every range by the ranges of `other`.
    fn merge(&mut self, other: TensorRanges) {
        for (tensor, (lo, hi)) in other.ranges {
            self.insert(tensor, lo, hi);
        }
        for (tensor, (sums, rows)) in other.means {
            let mine = self
                .means
                .entry(tensor)
                .or_insert_with(|| (vec![0.0; sums.len()], 0));
            if mine.0.len() == sums.len() {
                for (a, b) in mine.0.iter_mut().zip(sums) {
                    *a += b;
                }
                mine.1 += rows;
            }
        }
        for (tensor, extremes) in other.channel_ranges {
            let mine = self
                .channel_ranges
                .entry(tensor)
                .or_insert_with(|| vec![(f32::INFINITY, f32::NEG_INFINITY); extremes.len()]);
            if mine.len() == extremes.len() {
                for (a, b) in mine.iter_mut().zip(extremes) {
                    *a = (a.0.min(b.0), a.1.max(b.1));
                }
            }
        }
        for (tensor, h) in other.histograms {
            match self.histograms.get_mut(&tensor) {
                Some(mine) => mine.merge(h),
                None => {
                    self.histograms.insert(tensor, h);
                }
            }
        }
    }
}

/// A model's outputs on one sample: the bytes of each graph output, in output order.
pub type Outputs = Vec<Vec<u8>>;

/// Runs the float `model` (in octet-runtime) over every sample of `calibration` and returns the
/// range of every float32 tensor seen: graph inputs and operator outputs.
///
/// With `threads > 1` the samples are shared among that many single-threaded interpreters
/// running in parallel; the ranges are the same whatever the number of threads (minima and
/// maxima do not depend on order).
pub fn calibrate(
    model: &Model,
    calibration: &Calibration,
    threads: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<TensorRanges, QuantError> {
    calibrate_keeping_outputs(model, calibration, threads, 0, false, &[], progress)
        .map(|(ranges, _)| ranges)
}

/// [`calibrate`], also returning the model's outputs on the first `keep` samples:
/// `outputs[s][k]` holds the bytes of graph output `k` on sample `s`, as
/// [`Interpreter::output`] gives them. A caller that measures accuracy on the calibration
/// samples thereby need not run the float model again. With `histograms`, the ranges carry a
/// histogram of every tensor's values ([`TensorRanges::with_histograms`]); the tensors in
/// `means` get their per-channel means ([`TensorRanges::channel_means`]).
pub fn calibrate_keeping_outputs(
    model: &Model,
    calibration: &Calibration,
    threads: usize,
    keep: usize,
    histograms: bool,
    means: &[TensorId],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(TensorRanges, Vec<Outputs>), QuantError> {
    let total = calibration.samples.len();
    let keep = keep.min(total);
    let mut outputs = Vec::with_capacity(keep);
    // Whole samples per thread; with fewer samples than threads, the rest split operators.
    let workers = threads.clamp(1, total.max(1));
    let options = InterpreterOptions {
        threads: (threads / workers).max(1),
        isa: None,
    };
    let workers = in_order(
        workers,
        total,
        || {
            let interpreter = Interpreter::with_options(model, options).map_err(|e| {
                QuantError::Unsupported(format!("calibration: cannot run the model: {e}"))
            })?;
            let range = FiniteRange::new(interpreter.isa());
            let ranges = if histograms {
                TensorRanges::with_histograms(total)
            } else {
                TensorRanges::default()
            };
            Ok((
                interpreter,
                range,
                ranges.with_channel_means(means.iter().copied()),
            ))
        },
        |(interpreter, range, ranges), s| {
            run_sample(interpreter, &calibration.samples[s], s, range, ranges)?;
            if s >= keep {
                return Ok(None);
            }
            (0..interpreter.num_outputs())
                .map(|k| interpreter.output(k).map(<[u8]>::to_vec))
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
                .map_err(|e| QuantError::Unsupported(format!("calibration sample {s}: {e}")))
        },
        |s, kept| {
            outputs.extend(kept);
            progress(s + 1, total);
            Ok(())
        },
    )?;
    let mut ranges = if histograms {
        TensorRanges::with_histograms(total)
    } else {
        TensorRanges::default()
    };
    for (_, _, worker) in workers {
        ranges.merge(worker);
    }
    Ok((ranges, outputs))
}

/// Runs one calibration sample on `interpreter`, widening `ranges`.
fn run_sample(
    interpreter: &mut Interpreter,
    sample: &[Vec<f32>],
    s: usize,
    range: &FiniteRange,
    ranges: &mut TensorRanges,
) -> Result<(), QuantError> {
    if sample.len() != interpreter.num_inputs() {
        return Err(QuantError::Unsupported(format!(
            "calibration sample {s} has {} arrays, the model has {} inputs",
            sample.len(),
            interpreter.num_inputs()
        )));
    }
    for (i, values) in sample.iter().enumerate() {
        let info = interpreter.input_info(i).map_err(|e| {
            QuantError::Unsupported(format!("calibration sample {s}, input {i}: {e}"))
        })?;
        let bytes = encode_input(values, info.dtype).ok_or_else(|| {
            QuantError::Unsupported(format!(
                "calibration: input {i} ('{}') is {}, which octet cannot feed",
                info.name, info.dtype
            ))
        })?;
        interpreter.set_input(i, &bytes).map_err(|e| {
            QuantError::Unsupported(format!("calibration sample {s}, input {i}: {e}"))
        })?;
    }
    interpreter
        .invoke_observed(&mut |obs| ranges.observe(obs, range))
        .map_err(|e| QuantError::Unsupported(format!("calibration sample {s}: {e}")))
}

/// Calibration values as bytes of the input's dtype (integer inputs such as indices are cast).
fn encode_input(values: &[f32], dtype: DType) -> Option<Vec<u8>> {
    Some(match dtype {
        DType::Float32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::Int32 => values
            .iter()
            .flat_map(|&v| (v as i32).to_le_bytes())
            .collect(),
        DType::Int64 => values
            .iter()
            .flat_map(|&v| (v as i64).to_le_bytes())
            .collect(),
        DType::Int8 => values.iter().map(|&v| v as i8 as u8).collect(),
        DType::UInt8 => values.iter().map(|&v| v as u8).collect(),
        DType::Bool => values.iter().map(|&v| u8::from(v != 0.0)).collect(),
        _ => return None,
    })
}
