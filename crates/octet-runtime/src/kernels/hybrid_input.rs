//! On-the-fly input quantization of the hybrid (dynamic-range) kernels (CONV_2D,
//! DEPTHWISE_CONV_2D, FULLY_CONNECTED, BATCH_MATMUL), bit-exact with TFLite's
//! `PortableSymmetricQuantizeFloats` and `PortableAsymmetricQuantizeFloats`
//! (`reference/portable_tensor_utils.cc`), which the x86 builds use.

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

/// Symmetric int8 quantization to `[-127, 127]`; returns the scaling factor (`range / 127`, or
/// 1 for an all-zero input).
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
    for (q, &v) in quantized.iter_mut().zip(values) {
        let rounded = (v * inverse).round() as i32;
        *q = rounded.clamp(-SCALE, SCALE) as i8;
    }
    range / SCALE as f32
}

/// Asymmetric int8 quantization to `[-128, 127]` with TFLite's zero-point nudging; returns
/// `(scaling_factor, zero_point)`.
pub(crate) fn asymmetric_quantize(values: &[f32], quantized: &mut [i8]) -> (f32, i32) {
    const QMIN: i32 = -128;
    const QMAX: i32 = 127;
    let (min, max) = min_max(values).unwrap_or((0.0, 0.0));
    // std::min(0.0f, min) and std::max(0.0f, max).
    let rmin = f64::from(if min < 0.0 { min } else { 0.0 });
    let rmax = f64::from(if 0.0 < max { max } else { 0.0 });
    if rmin == rmax {
        quantized.fill(0);
        return (1.0, 0);
    }
    let (qmin, qmax) = (f64::from(QMIN), f64::from(QMAX));
    let scale = (rmax - rmin) / (qmax - qmin);
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
    let inverse = 1.0f32 / scaling_factor;
    for (q, &v) in quantized.iter_mut().zip(values) {
        // The zero point is added in double precision: rounding the f32 sum instead turns
        // e.g. -97.4999995 into -97.5 and then -98, where LiteRT gives -97.
        let rounded = (f64::from(nudged) + f64::from(v * inverse)).round() as i32;
        *q = rounded.clamp(QMIN, QMAX) as i8;
    }
    (scaling_factor, nudged)
}
