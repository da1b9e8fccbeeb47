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
    let (mut signal, mut noise, mut dot, mut norm_a, mut max_abs) = (0f64, 0f64, 0f64, 0f64, 0f64);
    let n = reference.len().min(approx.len());
    for (&r, &a) in reference.iter().zip(approx) {
        let (r, a) = (f64::from(r), f64::from(a));
        let e = r - a;
        signal += r * r;
        noise += e * e;
        dot += r * a;
        norm_a += a * a;
        max_abs = max_abs.max(e.abs());
    }
    let sqnr_db = if noise == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (signal / noise).log10()
    };
    let cosine = if signal == 0.0 || norm_a == 0.0 {
        if signal == norm_a { 1.0 } else { 0.0 }
    } else {
        dot / (signal.sqrt() * norm_a.sqrt())
    };
    ErrorStats {
        sqnr_db,
        cosine,
        max_abs_error: max_abs,
        mse: if n == 0 { 0.0 } else { noise / n as f64 },
    }
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
