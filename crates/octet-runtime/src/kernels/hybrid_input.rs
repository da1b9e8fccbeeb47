//! On-the-fly input quantization of the hybrid (dynamic-range) kernels (CONV_2D,
//! DEPTHWISE_CONV_2D, FULLY_CONNECTED, BATCH_MATMUL), bit-exact with TFLite's
//! `NeonSymmetricQuantizeFloats` and `NeonAsymmetricQuantizeFloats`
//! (`optimized/neon_tensor_utils.cc`), which x86 builds run through the NEON_2_SSE translator
//! (`sse_tensor_utils.h` dispatches them with `NEON_OR_PORTABLE`).

/// The quantized copy of a float input, one scale (and zero point) per batch.
pub(crate) struct QuantizedInput {
    /// The int8 values, laid out like the input.
    pub values: Vec<i8>,
    /// One scaling factor per batch.
    pub scales: Vec<f32>,
    /// One zero point per batch (0 for symmetric quantization).
    pub zero_points: Vec<i32>,
}

impl QuantizedInput {
    /// Scratch space for an input of `batches` batches of `batch_len` elements each.
    pub fn new(batches: usize, batch_len: usize) -> Self {
        QuantizedInput {
            values: vec![0; batches * batch_len],
            scales: vec![0.0; batches],
            zero_points: vec![0; batches],
        }
    }

    /// Quantizes `input` batch by batch, symmetrically (`asymmetric == false`) or
    /// asymmetrically. `input` must have the length given to [`new`](Self::new).
    pub fn quantize(&mut self, input: &[f32], asymmetric: bool) {
        let batches = self.scales.len();
        if batches == 0 {
            return;
        }
        let batch_len = self.values.len() / batches;
        if batch_len == 0 {
            return;
        }
        let batches_in = input.chunks_exact(batch_len);
        let batches_out = self.values.chunks_exact_mut(batch_len);
        for (((x, q), scale), zero_point) in batches_in
            .zip(batches_out)
            .zip(&mut self.scales)
            .zip(&mut self.zero_points)
        {
            (*scale, *zero_point) = if asymmetric {
                asymmetric_quantize(x, q)
            } else {
                (symmetric_quantize(x, q), 0)
            };
        }
    }
}

/// `std::minmax_element`: the first smallest and the last largest element (`None` if empty).
fn min_max(values: &[f32]) -> Option<(f32, f32)> {
    let (&first, rest) = values.split_first()?;
    Some(rest.iter().fold((first, first), |(lo, hi), &v| {
        (if v < lo { v } else { lo }, if v < hi { hi } else { v })
    }))
}

/// TFLite quantizes in blocks of 8 values (`2 * kFloatValuesPerNeonVector`) and rounds the
/// remaining `len % 8` one at a time.
const NEON_BLOCK: usize = 8;

/// NEON's `RoundToNearest` as x86 builds run it (through NEON_2_SSE, without `vcvtaq`):
/// `x ± 0.5` in f32, then truncation. Unlike `round`, this turns ±0.49999997 into ±1.
fn neon_round(x: f32) -> i32 {
    let half = if x < 0.0 { -0.5f32 } else { 0.5 };
    (x + half) as i32
}

/// Rounds `values[i] * inverse` to an integer as TFLite's NEON quantizers do: [`neon_round`]
/// for the full blocks of [`NEON_BLOCK`] values, `std::round` for the rest.
fn quantize_rounded(values: &[f32], quantized: &mut [i8], inverse: f32, map: impl Fn(i32) -> i8) {
    let block_end = values.len() - values.len() % NEON_BLOCK;
    for (i, (q, &v)) in quantized.iter_mut().zip(values).enumerate() {
        let product = v * inverse;
        let rounded = if i < block_end {
            neon_round(product)
        } else {
            product.round() as i32
        };
        *q = map(rounded);
    }
}

/// Symmetric int8 quantization to `[-127, 127]` (`NeonSymmetricQuantizeFloats`, which x86
/// builds run through NEON_2_SSE); returns the scaling factor (`range / 127`, or 1 for an
/// all-zero input).
pub(crate) fn symmetric_quantize(values: &[f32], quantized: &mut [i8]) -> f32 {
    const SCALE: i32 = 127;
    let (min, max) = min_max(values).unwrap_or((0.0, 0.0));
    let range = {
        let (a, b) = (min.abs(), max.abs());
        if a < b { b } else { a }
    };
    if range == 0.0 {
        quantized.fill(0);
        return 1.0;
    }
    let inverse = SCALE as f32 / range;
    quantize_rounded(values, quantized, inverse, |r| r.clamp(-SCALE, SCALE) as i8);
    range / SCALE as f32
}

/// Asymmetric int8 quantization to `[-128, 127]` with TFLite's zero-point nudging
/// (`NeonAsymmetricQuantizeFloats`, which x86 builds run through NEON_2_SSE); returns
/// `(scaling_factor, zero_point)`.
///
/// Unlike `PortableAsymmetricQuantizeFloats`, the NEON kernel takes the range as an f32
/// difference, divides 1 by the f32 scaling factor in double precision, and rounds
/// `value / scale` *before* adding the zero point (so -128 + 68.5 gives -59, not -60).
pub(crate) fn asymmetric_quantize(values: &[f32], quantized: &mut [i8]) -> (f32, i32) {
    const QMIN: i32 = -128;
    const QMAX: i32 = 127;
    let (min, max) = min_max(values).unwrap_or((0.0, 0.0));
    // NeonMinMax starts from 0: rmin = min(0, min), rmax = max(0, max).
    let rmin = if 0.0 < min { 0.0 } else { min };
    let rmax = if 0.0 > max { 0.0 } else { max };
    if rmin == rmax {
        quantized.fill(0);
        return (1.0, 0);
    }
    let (qmin, qmax) = (f64::from(QMIN), f64::from(QMAX));
    let scale = f64::from(rmax - rmin) / (qmax - qmin);
    let (rmin, rmax) = (f64::from(rmin), f64::from(rmax));
    let zero_point_from_min = qmin - rmin / scale;
    let zero_point_from_max = qmax - rmax / scale;
    let zero_point_from_min_error = qmin.abs() + (rmin / scale).abs();
    let zero_point_from_max_error = qmax.abs() + (rmax / scale).abs();
    let zero_point = if zero_point_from_min_error < zero_point_from_max_error {
        zero_point_from_min
    } else {
        zero_point_from_max
    };
    let nudged = if zero_point <= qmin {
        QMIN
    } else if zero_point >= qmax {
        QMAX
    } else {
        zero_point.round() as i32
    };
    let scaling_factor = scale as f32;
    let inverse = if scaling_factor == 0.0 {
        0.0
    } else {
        (1.0 / f64::from(scaling_factor)) as f32
    };
    quantize_rounded(values, quantized, inverse, |r| {
        (r + nudged).clamp(QMIN, QMAX) as i8
    });
    (scaling_factor, nudged)
}
