//! Shared helpers for the fixed-point tests: a tiny seeded PRNG and exact reference models.

/// Marsaglia xorshift64*: deterministic, dependency-free, good enough to spread test inputs.
pub(crate) struct XorShift(u64);

impl XorShift {
    /// A generator with the given (non-zero) seed.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// An i32 whose magnitude is spread over all scales (uniform bits shifted right by 0..=31), so
    /// that small values, large values and the extremes all show up often.
    pub(crate) fn next_i32_spread(&mut self) -> i32 {
        let bits = self.next_u32() as i32;
        let shift = self.next_u32() % 32;
        bits >> shift
    }

    /// Uniform in `[lo, hi)`.
    pub(crate) fn next_f64_in(&mut self, lo: f64, hi: f64) -> f64 {
        let unit = (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64;
        lo + (hi - lo) * unit
    }

    /// Log-uniform in `[lo, hi)` (both positive).
    pub(crate) fn next_f64_log(&mut self, lo: f64, hi: f64) -> f64 {
        self.next_f64_in(lo.ln(), hi.ln()).exp()
    }
}

/// Exact `x / 2^e` rounded to nearest with ties away from zero.
pub(crate) fn round_half_away_div_pow2(x: i128, e: u32) -> i128 {
    if e == 0 {
        return x;
    }
    let half = 1_i128 << (e - 1);
    if x >= 0 {
        (x + half) >> e
    } else {
        -((-x + half) >> e)
    }
}

/// Exact `x / 2^e` rounded to nearest with ties towards +infinity.
pub(crate) fn round_half_up_div_pow2(x: i128, e: u32) -> i128 {
    if e == 0 {
        return x;
    }
    (x + (1_i128 << (e - 1))) >> e
}
