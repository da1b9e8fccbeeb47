//! What quantization cost, measured on outputs: signal-to-quantization-noise ratio, cosine
//! similarity, largest absolute error.

/// Errors of `approx` against `reference`, element by element.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorStats {
    /// `10 log10(sum(ref^2) / sum((ref - approx)^2))` in dB; infinite when identical.
    pub sqnr_db: f64,
    /// Cosine of the angle between the two as vectors (1 when parallel).
    pub cosine: f64,
    /// Largest `|ref - approx|`.
    pub max_abs_error: f64,
    /// Mean of `(ref - approx)^2`.
    pub mse: f64,
}

/// Compares two equally long float sequences (a mismatch in length compares the common prefix).
pub fn error_stats(reference: &[f32], approx: &[f32]) -> ErrorStats {
    let mut accumulator = ErrorAccumulator::default();
    accumulator.add(reference, approx);
    accumulator.stats()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqnr_of_a_known_error() {
        // Signal power 1 + 1 = 2, noise power 0.01 + 0.01 = 0.02: ratio 100 = 20 dB.
        let s = error_stats(&[1.0, -1.0], &[0.9, -0.9]);
        assert!((s.sqnr_db - 20.0).abs() < 1e-5, "{}", s.sqnr_db);
        assert!((s.cosine - 1.0).abs() < 1e-12);
        assert!((s.max_abs_error - 0.1).abs() < 1e-6);
        assert_eq!(error_stats(&[1.0, 2.0], &[1.0, 2.0]).sqnr_db, f64::INFINITY);
        assert!(error_stats(&[1.0, 0.0], &[0.0, 1.0]).cosine.abs() < 1e-12);
    }
}

/// Accumulates [`ErrorStats`] over many pairs of arrays (e.g. one per calibration sample)
/// without keeping them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ErrorAccumulator {
    signal: f64,
    noise: f64,
    dot: f64,
    approx_power: f64,
    max_abs: f64,
    count: usize,
}

impl ErrorAccumulator {
    /// Adds one pair (the common prefix if lengths differ).
    pub fn add(&mut self, reference: &[f32], approx: &[f32]) {
        for (&r, &a) in reference.iter().zip(approx) {
            let (r, a) = (f64::from(r), f64::from(a));
            let e = r - a;
            self.signal += r * r;
            self.noise += e * e;
            self.dot += r * a;
            self.approx_power += a * a;
            self.max_abs = self.max_abs.max(e.abs());
            self.count += 1;
        }
    }

    /// The statistics over everything added.
    pub fn stats(&self) -> ErrorStats {
        let sqnr_db = if self.noise == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (self.signal / self.noise).log10()
        };
        let cosine = if self.signal == 0.0 || self.approx_power == 0.0 {
            if self.signal == self.approx_power {
                1.0
            } else {
                0.0
            }
        } else {
            self.dot / (self.signal.sqrt() * self.approx_power.sqrt())
        };
        ErrorStats {
            sqnr_db,
            cosine,
            max_abs_error: self.max_abs,
            mse: if self.count == 0 {
                0.0
            } else {
                self.noise / self.count as f64
            },
        }
    }
}
