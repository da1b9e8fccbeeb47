//! Element-wise kernels: quantized binary ops (ADD, SUB, MUL) and PRELU with TFLite's exact
//! requantization, float binary ops and activations, QUANTIZE and DEQUANTIZE.
//!
//! # Operands
//!
//! A binary kernel combines a *full* operand `x` (one value per output element) with a
//! *cyclic* operand `y` of period `p = y.len()`: output element `i` combines `x[i]` with
//! `y[i % p]`. That covers the three broadcasts that matter in practice: equal shapes
//! (`p == x.len()`), a scalar (`p == 1`) and a per-channel vector against an NHWC tensor
//! (`p == channels`). When the broadcast operand is the first input of the op, the caller swaps
//! the operands and picks the mirrored op ([`QuantBinaryOp::ReverseSub`],
//! [`F32BinaryOp::ReverseSub`], ...), so the result is the op's, operand order included.
//! Other broadcasts stay with the caller's general loop.
//!
//! # Exactness
//!
//! Integer kernels reproduce `octet_core::fixed_point` bit for bit (the generic twin is tested
//! against it, every SIMD kernel against the generic twin). Float kernels compute each element
//! with the same IEEE operations in the same order as the scalar definition, so vectorising
//! them changes no bit either.
//!
//! # Instruction sets
//!
//! Every kernel has a generic body in plain Rust; the x86-64 kernels compile the same body for
//! AVX2 and AVX-512 (the compiler vectorises it with the wider registers), and 8-bit table
//! lookups have an AVX-512 VBMI kernel (`vpermi2b` over a table held in four registers).

use octet_core::fixed_point::QuantizedMultiplier;

use crate::frame::gemm_f32::F32Clamp;
use crate::frame::requant::{FastPrelu, FastSum};
use crate::{Isa, LinalgError, generic};

/// A kernel function together with the instruction set it was compiled for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Selected<F> {
    pub(crate) isa: Isa,
    pub(crate) run: F,
}

/// Picks the kernel of the most capable instruction set that is at most `isa` and supported
/// by this CPU (the generic one when nothing else is).
fn select<F: Copy>(isa: Isa, generic: F, avx2: Option<F>, avx512: Option<F>) -> Selected<F> {
    for (level, run) in [(Isa::Avx512, avx512), (Isa::Avx2, avx2)] {
        if let Some(run) = run
            && level <= isa
            && level.is_supported()
        {
            return Selected { isa: level, run };
        }
    }
    Selected {
        isa: Isa::Generic,
        run: generic,
    }
}

/// x86-64 variants of a kernel family, `None` elsewhere.
macro_rules! x86_variants {
    ($avx2:expr, $avx512:expr) => {{
        #[cfg(target_arch = "x86_64")]
        let v = (Some($avx2), Some($avx512));
        #[cfg(not(target_arch = "x86_64"))]
        let v = (None, None);
        v
    }};
}

pub(crate) fn check_cyclic(x: usize, y: usize, out: usize) -> Result<(), LinalgError> {
    if out != x {
        return Err(LinalgError::mismatch(format!(
            "output has {out} elements, input {x}"
        )));
    }
    if y == 0 || !x.is_multiple_of(y) {
        return Err(LinalgError::mismatch(format!(
            "a cyclic operand of {y} elements does not tile {x} elements"
        )));
    }
    Ok(())
}

pub(crate) fn check_same(x: usize, out: usize) -> Result<(), LinalgError> {
    if x == out {
        Ok(())
    } else {
        Err(LinalgError::mismatch(format!(
            "output has {out} elements, input {x}"
        )))
    }
}

/// The right shift of a multiplier must stay within what the kernels' 32-bit rounding shift
/// handles, and its left shift within 31 bits.
fn check_multiplier(m: QuantizedMultiplier, what: &str) -> Result<(), LinalgError> {
    if (-31..=31).contains(&m.shift) && m.multiplier >= 0 {
        Ok(())
    } else {
        Err(LinalgError::InvalidParameter(format!(
            "{what} {m:?}: the kernels need a non-negative multiplier and a shift within 31 bits"
        )))
    }
}

// ---------------------------------------------------------------------------------------------
// Quantized element types
// ---------------------------------------------------------------------------------------------

mod sealed {
    pub trait Sealed {}
    impl Sealed for i8 {}
    impl Sealed for u8 {}
    impl Sealed for i16 {}
}

/// The quantized storage types the integer kernels run on: int8, uint8 and int16.
pub trait QuantElem: Copy + Send + Sync + sealed::Sealed + 'static {
    /// Smallest value, widened.
    const MIN: i32;
    /// Largest value, widened.
    const MAX: i32;
    /// The value widened to `i32`.
    fn to_i32(self) -> i32;
    /// `static_cast` of a value already clamped into the type's range.
    fn from_i32(v: i32) -> Self;
}

macro_rules! quant_elem {
    ($($t:ty),*) => {$(
        impl QuantElem for $t {
            const MIN: i32 = <$t>::MIN as i32;
            const MAX: i32 = <$t>::MAX as i32;
            #[inline(always)]
            fn to_i32(self) -> i32 {
                i32::from(self)
            }
            #[inline(always)]
            fn from_i32(v: i32) -> Self {
                v as $t
            }
        }
    )*};
}
quant_elem!(i8, u8, i16);

fn check_range<T: QuantElem>(min: i32, max: i32) -> Result<(), LinalgError> {
    if T::MIN <= min && min <= max && max <= T::MAX {
        Ok(())
    } else {
        Err(LinalgError::InvalidParameter(format!(
            "clamp range [{min}, {max}] is not within [{}, {}]",
            T::MIN,
            T::MAX
        )))
    }
}

// ---------------------------------------------------------------------------------------------
// Quantized ADD, SUB, MUL
// ---------------------------------------------------------------------------------------------

/// The arithmetic of a quantized binary kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantBinaryOp {
    /// `raw = rescale_x(x) + rescale_y(y)` (TFLite `AddElementwise`).
    Add,
    /// `raw = rescale_x(x) - rescale_y(y)` (TFLite `SubElementwise`).
    Sub,
    /// `raw = rescale_y(y) - rescale_x(x)`: SUB whose first input is the cyclic operand.
    ReverseSub,
    /// `raw = (x + x_offset) * (y + y_offset)` (TFLite `MulElementwise`).
    Mul,
}

/// Parameters of a quantized binary kernel, as TFLite's `ArithmeticParams` holds them.
///
/// For ADD and SUB an input is brought onto the common scale as
/// `rescale(q) = MultiplyByQuantizedMultiplierSmallerThanOneExp((q + offset) << left_shift,
/// multiplier)`; the raw result of every op is requantized as `clamp(output_offset +
/// MultiplyByQuantizedMultiplier(raw, output_multiplier), act_min, act_max)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantBinaryParams {
    /// The arithmetic.
    pub op: QuantBinaryOp,
    /// Headroom bits of ADD/SUB (20 for 8-bit, 15 for int16; unused by MUL).
    pub left_shift: i32,
    /// Added to the full operand (minus its zero point).
    pub x_offset: i32,
    /// Rescales the full operand (ADD/SUB).
    pub x_multiplier: QuantizedMultiplier,
    /// Added to the cyclic operand.
    pub y_offset: i32,
    /// Rescales the cyclic operand (ADD/SUB).
    pub y_multiplier: QuantizedMultiplier,
    /// The output zero point.
    pub output_offset: i32,
    /// Requantizes the raw result.
    pub output_multiplier: QuantizedMultiplier,
    /// Lower end of the fused activation (in the output type's range).
    pub act_min: i32,
    /// Upper end of the fused activation.
    pub act_max: i32,
}

/// What a quantized binary kernel runs with: the parameters and, for 8-bit ADD and SUB, each
/// input's rescaling tabulated over its 256 values (index: the value's byte).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QuantBinaryPrepared {
    pub(crate) params: QuantBinaryParams,
    /// `rescale_x` of every byte, or empty.
    pub(crate) x_table: Vec<i32>,
    /// `rescale_y` of every byte, or empty.
    pub(crate) y_table: Vec<i32>,
    /// The checked float form of 8-bit ADD/SUB, when it applies.
    pub(crate) fast: Option<FastSum>,
}

/// The signature of a quantized binary kernel.
pub(crate) type QuantBinaryFn<T> =
    fn(&QuantBinaryPrepared, &[T], &[T], &mut [T]) -> Result<(), LinalgError>;

/// A quantized ADD, SUB or MUL of a full and a cyclic operand (see the [module docs](self)),
/// with its kernel chosen for an instruction set.
#[derive(Debug, Clone)]
pub struct QuantBinary<T: QuantElem> {
    prepared: QuantBinaryPrepared,
    kernel: Selected<QuantBinaryFn<T>>,
}

impl<T: QuantElem> QuantBinary<T> {
    /// Checks the parameters and picks the kernel for `isa` (or the best below it).
    pub fn new(isa: Isa, params: QuantBinaryParams) -> Result<Self, LinalgError> {
        check_range::<T>(params.act_min, params.act_max)?;
        check_multiplier(params.output_multiplier, "output multiplier")?;
        if params.op != QuantBinaryOp::Mul {
            check_multiplier(params.x_multiplier, "first multiplier")?;
            check_multiplier(params.y_multiplier, "second multiplier")?;
            if !(0..=24).contains(&params.left_shift) {
                return Err(LinalgError::InvalidParameter(format!(
                    "left shift {} (TFLite uses 15 or 20)",
                    params.left_shift
                )));
            }
        }
        let (avx2, avx512) = x86_variants!(
            crate::x86_64::elementwise::quant_binary_avx2::<T> as QuantBinaryFn<T>,
            crate::x86_64::elementwise::quant_binary_avx512::<T> as QuantBinaryFn<T>
        );
        let kernel = select(
            isa,
            generic::elementwise::quant_binary::<T> as QuantBinaryFn<T>,
            avx2,
            avx512,
        );
        let (x_table, y_table) = if T::MAX - T::MIN == 255 && params.op != QuantBinaryOp::Mul {
            generic::elementwise::rescale_tables::<T>(&params)
        } else {
            (Vec::new(), Vec::new())
        };
        let fast = fast_sum::<T>(&params, &x_table, &y_table);
        Ok(QuantBinary {
            prepared: QuantBinaryPrepared {
                params,
                x_table,
                y_table,
                fast,
            },
            kernel,
        })
    }

    /// The instruction set of the chosen kernel.
    pub fn isa(&self) -> Isa {
        self.kernel.isa
    }

    /// The parameters.
    pub fn params(&self) -> &QuantBinaryParams {
        &self.prepared.params
    }

    /// Widens the checked float form's window so that most lanes take the exact fallback
    /// (tests of that path; results do not change).
    #[cfg(test)]
    pub(crate) fn widen_window(&mut self) -> bool {
        self.prepared
            .fast
            .as_mut()
            .map(|f| f.window = 0.75)
            .is_some()
    }

    /// `out[i] = op(x[i], y[i % y.len()])`.
    pub fn run(&self, x: &[T], y: &[T], out: &mut [T]) -> Result<(), LinalgError> {
        check_cyclic(x.len(), y.len(), out.len())?;
        (self.kernel.run)(&self.prepared, x, y, out)
    }
}

/// The checked float form of an 8-bit ADD/SUB from its rescaling tables (signs folded in as
/// the op combines them).
fn fast_sum<T: QuantElem>(
    params: &QuantBinaryParams,
    x_table: &[i32],
    y_table: &[i32],
) -> Option<FastSum> {
    if x_table.len() != 256 || y_table.len() != 256 {
        return None;
    }
    let (sx, sy) = match params.op {
        QuantBinaryOp::Add => (1, 1),
        QuantBinaryOp::Sub => (1, -1),
        QuantBinaryOp::ReverseSub => (-1, 1),
        QuantBinaryOp::Mul => return None,
    };
    let points = |table: &[i32], sign: i32| -> Option<Vec<(i32, i32)>> {
        (T::MIN..=T::MAX)
            .map(|v| Some((v, table[(v & 0xff) as usize].checked_mul(sign)?)))
            .collect()
    };
    FastSum::new(
        &points(x_table, sx)?,
        &points(y_table, sy)?,
        params.output_multiplier,
        params.output_offset,
    )
}

/// The elements of a run over which per-channel operands repeat in whole 64-element chunks:
/// `lcm(channels, 64)`.
pub(crate) fn chunk_period(channels: usize) -> usize {
    let (mut a, mut b) = (channels, 64);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    channels / a * 64
}

// ---------------------------------------------------------------------------------------------
// Quantized PRELU
// ---------------------------------------------------------------------------------------------

/// Parameters of TFLite's quantized PRELU with a per-channel (cyclic) alpha: with `v = x +
/// input_offset`, `raw = v` requantized by `identity_multiplier` when `v >= 0`, else
/// `v * alpha[c]` requantized by `alpha_multiplier`; then `output_offset` is added and the
/// result clamped to `[min, max]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantPreluParams {
    /// Minus the input zero point.
    pub input_offset: i32,
    /// Each channel's alpha, already offset by minus alpha's zero point.
    pub alpha: Vec<i32>,
    /// The output zero point.
    pub output_offset: i32,
    /// Requantizes non-negative inputs.
    pub identity_multiplier: QuantizedMultiplier,
    /// Requantizes the alpha products.
    pub alpha_multiplier: QuantizedMultiplier,
    /// Lower clamp.
    pub min: i32,
    /// Upper clamp.
    pub max: i32,
}

/// What a quantized PRELU kernel runs with: the parameters and, for 8-bit types, the
/// non-negative branch tabulated over the input's 256 bytes (entries for negative inputs are
/// unused).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QuantPreluPrepared {
    pub(crate) params: QuantPreluParams,
    pub(crate) positive: [u8; 256],
    /// For fewer than 64 channels, the alphas repeated over `lcm(channels, 64)` elements, so
    /// that a kernel can walk the data in blocks of 64 whatever the channel count (empty
    /// otherwise).
    pub(crate) expanded_alpha: Vec<i32>,
    /// The checked float form of the negative branch (8-bit types), when it applies.
    pub(crate) fast: Option<FastPreluExpanded>,
    /// The 16-bit form of the negative branch (8-bit types), when one was found.
    pub(crate) linear: Option<PreluLinear16>,
}

/// The negative branch of an 8-bit PRELU as one 16-bit rounding multiply and a saturating add
/// per element, `vpmulhrsw` and `vpaddsw` (32 lanes per AVX-512 register, against the 16 of
/// the float form and its checks): for an input `x` below the zero point `z` of channel `c`
/// and `v = x - z`, `clamp(sat16(v * whole[c] + mulhrs(v, slope[c]) + fix + offset[c]))` with
/// `mulhrs(v, a) = (v * a + 2^14) >> 15` (a slope of `whole + slope / 2^15` output steps per
/// input step, 16-bit wrapping arithmetic), where `fix` corrects the few inputs per channel
/// whose result TFLite rounds differently.
///
/// TFLite's result is `z_out + round(round(v * alpha_c * m'), k)` (the multiplier's fixed
/// point, then its shift, each rounded), which a slope near `alpha_c * m * 2^15` and an offset
/// near `z_out` reproduce except where the double rounding lands on the other side of a tie.
/// The slope, offset and corrections are chosen at prepare time by computing every input byte
/// below the zero point both ways ([`PreluLinear16::linear`] against the exact integer
/// arithmetic), so the form is exact by construction, and absent when some channel needs more
/// than [`PRELU_FIXES`] corrections.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PreluLinear16 {
    /// Per element of a [`chunk_period`] of the channels: the channel's whole slope...
    pub(crate) whole: Vec<i16>,
    /// ...its fractional slope (in 2^-15)...
    pub(crate) slope: Vec<i16>,
    /// ...its offset...
    pub(crate) offset: Vec<i16>,
    /// ...and per correction, the offset input `v` it applies to (`i16::MIN`: none)...
    pub(crate) fix_input: [Vec<i16>; PRELU_FIXES],
    /// ...and what it adds to the rounded product.
    pub(crate) fix_delta: [Vec<i16>; PRELU_FIXES],
    /// Corrections in use (the kernel skips the others).
    pub(crate) fixes: usize,
    /// Whether some whole slope is not 0.
    pub(crate) steep: bool,
    /// The input zero point.
    pub(crate) zero_point: i16,
}

/// Corrections per channel of [`PreluLinear16`].
pub(crate) const PRELU_FIXES: usize = 2;

/// Channels up to which [`PreluLinear16`] is tried: its per-element arrays span a period of
/// `lcm(channels, 64)` elements.
const PRELU_LINEAR_MAX_CHANNELS: usize = 4096;

/// One channel's slope, offset and corrections in [`PreluLinear16`].
#[derive(Debug, Clone, Copy, PartialEq)]
struct PreluLine {
    whole: i16,
    slope: i16,
    offset: i16,
    fixes: [(i16, i16); PRELU_FIXES],
}

impl PreluLinear16 {
    /// The form's result for `v = x - z` (below zero) with one channel's slope, offset and
    /// corrections `(input, delta)`, in `T`'s range and then `[min, max]`: exactly what the
    /// SIMD kernel computes.
    pub(crate) fn linear<T: QuantElem>(
        v: i32,
        (whole, slope): (i16, i16),
        offset: i16,
        fixes: &[(i16, i16)],
        (min, max): (i32, i32),
    ) -> i32 {
        let mut rounded = PreluLinear16::rounded(v, (whole, slope));
        for &(input, delta) in fixes {
            if v == i32::from(input) {
                rounded = rounded.wrapping_add(delta);
            }
        }
        let rounded = i32::from(rounded);
        let sum = (rounded + i32::from(offset)).clamp(i32::from(i16::MIN), i32::from(i16::MAX));
        sum.clamp(T::MIN, T::MAX).clamp(min, max)
    }

    /// `v * whole + mulhrs(v, slope)` in 16-bit wrapping arithmetic, as `vpmullw`,
    /// `vpmulhrsw` and `vpaddw` compute it (`v` is an 8-bit input minus a zero point, within
    /// 16 bits).
    fn rounded(v: i32, (whole, slope): (i16, i16)) -> i16 {
        let fraction = (((v * i32::from(slope)) >> 14) + 1) >> 1;
        (v as i16).wrapping_mul(whole).wrapping_add(fraction as i16)
    }

    /// Finds a slope, offset and corrections per channel that reproduce the exact negative
    /// branch for every input byte below the zero point (`None` when a channel needs more
    /// corrections than there are).
    fn new<T: QuantElem>(p: &QuantPreluParams) -> Option<Self> {
        if T::MAX - T::MIN != 255 || p.alpha.len() > PRELU_LINEAR_MAX_CHANNELS {
            return None;
        }
        // `x - z` must not wrap in 16 bits (the kernel subtracts in 16-bit lanes).
        let zero_point = i16::try_from(p.input_offset.checked_neg()?)
            .ok()
            .filter(|z| (-1024..=1024).contains(z))?;
        let z = i32::from(zero_point);
        let below: Vec<i32> = (T::MIN..=T::MAX).filter(|&x| x < z).collect();
        let multiplier = p.alpha_multiplier.to_f64();
        let exact = generic::elementwise::quant_prelu_one::<T>;
        // Channels share alphas (8-bit values): each distinct one is fitted once, so the work
        // is bounded whatever the channel count.
        let mut fitted: std::collections::HashMap<i32, (usize, PreluLine)> =
            std::collections::HashMap::new();
        let mut lines = Vec::with_capacity(p.alpha.len());
        for &alpha in &p.alpha {
            if let Some(&line) = fitted.get(&alpha) {
                lines.push(line);
                continue;
            }
            let want: Vec<i32> = below
                .iter()
                .map(|&x| exact(p, T::from_i32(x), alpha).to_i32())
                .collect();
            let ideal = (f64::from(alpha) * multiplier * 32768.0).round();
            if !ideal.is_finite() || ideal.abs() > 100.0 * 32768.0 {
                return None;
            }
            let ideal = ideal as i32;
            let fit = |(a, b): (i32, i32)| {
                let line = PreluLine::fit::<T>(
                    (
                        i16::try_from(a.div_euclid(32768)).ok()?,
                        i16::try_from(a.rem_euclid(32768)).ok()?,
                    ),
                    i16::try_from(b).ok()?,
                    (&below, &want),
                    z,
                    (p.min, p.max),
                )?;
                let count = line.fixes.iter().filter(|f| f.0 != i16::MIN).count();
                Some((count, line))
            };
            // The nearest slope and offset first; else the candidate with the fewest
            // corrections.
            let nearest = fit((ideal, p.output_offset));
            let line = match nearest {
                Some((0, _)) => nearest,
                _ => (-1..=1)
                    .flat_map(|dz| (-3..=3).map(move |ds| (ideal + ds, p.output_offset + dz)))
                    .filter_map(fit)
                    .min_by_key(|(count, _)| *count),
            }?;
            fitted.insert(alpha, line);
            lines.push(line);
        }
        let fixes = lines.iter().map(|(count, _)| *count).max().unwrap_or(0);
        let period = chunk_period(p.alpha.len());
        let per_element = |f: &dyn Fn(&PreluLine) -> i16| -> Vec<i16> {
            (0..period).map(|i| f(&lines[i % lines.len()].1)).collect()
        };
        Some(PreluLinear16 {
            whole: per_element(&|l| l.whole),
            slope: per_element(&|l| l.slope),
            offset: per_element(&|l| l.offset),
            fix_input: [
                per_element(&|l| l.fixes[0].0),
                per_element(&|l| l.fixes[1].0),
            ],
            fix_delta: [
                per_element(&|l| l.fixes[0].1),
                per_element(&|l| l.fixes[1].1),
            ],
            fixes,
            steep: lines.iter().any(|(_, l)| l.whole != 0),
            zero_point,
        })
    }
}

impl PreluLine {
    /// `slope` and `offset` with the corrections that make them reproduce `results` for
    /// `inputs`, or `None` when that takes more than [`PRELU_FIXES`].
    fn fit<T: QuantElem>(
        (whole, slope): (i16, i16),
        offset: i16,
        (inputs, results): (&[i32], &[i32]),
        z: i32,
        clamp: (i32, i32),
    ) -> Option<Self> {
        let mut fixes = [(i16::MIN, 0i16); PRELU_FIXES];
        let mut used = 0;
        for (&x, &w) in inputs.iter().zip(results) {
            let v = x - z;
            if PreluLinear16::linear::<T>(v, (whole, slope), offset, &[], clamp) == w {
                continue;
            }
            let rounded = i32::from(PreluLinear16::rounded(v, (whole, slope)));
            let fix = (
                i16::try_from(v).ok()?,
                i16::try_from(w - i32::from(offset) - rounded).ok()?,
            );
            *fixes.get_mut(used)? = fix;
            used += 1;
            if PreluLinear16::linear::<T>(v, (whole, slope), offset, &fixes[..used], clamp) != w {
                return None;
            }
        }
        Some(PreluLine {
            whole,
            slope,
            offset,
            fixes,
        })
    }
}

/// [`FastPrelu`] with its per-channel operands repeated over [`chunk_period`] elements, so
/// that a kernel walks the data in chunks of 64 whatever the channel count.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FastPreluExpanded {
    pub(crate) scale: Vec<f32>,
    pub(crate) offset: Vec<f32>,
    pub(crate) window: f32,
}

impl QuantPreluPrepared {
    pub(crate) fn new<T: QuantElem>(params: QuantPreluParams) -> Self {
        let positive = generic::elementwise::prelu_positive_table::<T>(&params);
        let channels = params.alpha.len();
        let expanded_alpha = if (2..64).contains(&channels) {
            let mut period = channels;
            while !period.is_multiple_of(64) {
                period += channels;
            }
            (0..period).map(|i| params.alpha[i % channels]).collect()
        } else {
            Vec::new()
        };
        let fast = if T::MAX - T::MIN == 255 {
            FastPrelu::new(
                &params.alpha,
                params.input_offset,
                T::MIN,
                params.alpha_multiplier,
                params.output_offset,
            )
        } else {
            None
        };
        let fast = fast.map(|f| {
            let period = chunk_period(channels);
            FastPreluExpanded {
                scale: (0..period).map(|i| f.scale[i % channels]).collect(),
                offset: (0..period).map(|i| f.offset[i % channels]).collect(),
                window: f.window,
            }
        });
        let linear = PreluLinear16::new::<T>(&params);
        QuantPreluPrepared {
            params,
            positive,
            expanded_alpha,
            fast,
            linear,
        }
    }
}

/// The signature of a quantized PRELU kernel.
pub(crate) type QuantPreluFn<T> =
    fn(&QuantPreluPrepared, &[T], &mut [T]) -> Result<(), LinalgError>;

/// Quantized PRELU over channels-last data: element `i` uses `alpha[i % alpha.len()]`.
#[derive(Debug, Clone)]
pub struct QuantPrelu<T: QuantElem> {
    prepared: QuantPreluPrepared,
    kernel: Selected<QuantPreluFn<T>>,
}

impl<T: QuantElem> QuantPrelu<T> {
    /// Checks the parameters and picks the kernel for `isa`.
    pub fn new(isa: Isa, params: QuantPreluParams) -> Result<Self, LinalgError> {
        check_range::<T>(params.min, params.max)?;
        check_multiplier(params.identity_multiplier, "identity multiplier")?;
        check_multiplier(params.alpha_multiplier, "alpha multiplier")?;
        if params.alpha.is_empty() {
            return Err(LinalgError::mismatch("PRELU needs at least one alpha"));
        }
        let (avx2, avx512) = x86_variants!(
            crate::x86_64::elementwise::quant_prelu_avx2::<T> as QuantPreluFn<T>,
            crate::x86_64::elementwise::quant_prelu_avx512::<T> as QuantPreluFn<T>
        );
        #[allow(unused_mut)]
        let mut kernel = select(
            isa,
            generic::elementwise::quant_prelu::<T> as QuantPreluFn<T>,
            avx2,
            avx512,
        );
        #[cfg(target_arch = "x86_64")]
        if T::MAX - T::MIN == 255 && isa >= Isa::Avx512 && Isa::Avx512.has_vbmi() {
            kernel = Selected {
                isa: Isa::Avx512,
                run: crate::x86_64::elementwise::quant_prelu_vbmi::<T> as QuantPreluFn<T>,
            };
        }
        Ok(QuantPrelu {
            prepared: QuantPreluPrepared::new::<T>(params),
            kernel,
        })
    }

    /// The instruction set of the chosen kernel.
    pub fn isa(&self) -> Isa {
        self.kernel.isa
    }

    /// Number of channels (the alpha period).
    pub fn channels(&self) -> usize {
        self.prepared.params.alpha.len()
    }

    /// Whether the negative branch runs in its 16-bit form, and then drops it (tests: the
    /// other forms run next).
    #[cfg(test)]
    pub(crate) fn take_linear(&mut self) -> bool {
        self.prepared.linear.take().is_some()
    }

    /// Widens the checked float form's window (see [`QuantBinary::widen_window`]).
    #[cfg(test)]
    pub(crate) fn widen_window(&mut self) -> bool {
        self.prepared
            .fast
            .as_mut()
            .map(|f| f.window = 0.75)
            .is_some()
    }

    /// Applies PRELU to `x` (a multiple of the channel count) into `out`.
    pub fn run(&self, x: &[T], out: &mut [T]) -> Result<(), LinalgError> {
        check_cyclic(x.len(), self.prepared.params.alpha.len(), out.len())?;
        (self.kernel.run)(&self.prepared, x, out)
    }
}

// ---------------------------------------------------------------------------------------------
// 8-bit lookup tables
// ---------------------------------------------------------------------------------------------

/// The signature of a table lookup kernel.
pub(crate) type Lut8Fn = fn(&[u8; 256], &[u8], &mut [u8]) -> Result<(), LinalgError>;

/// A unary op on 8-bit values as a 256-entry table, indexed by the input's byte (an int8's
/// two's-complement byte) and holding the output's byte. Built from the op's exact scalar
/// function, so the lookup is exact by construction.
#[derive(Debug, Clone)]
pub struct Lut8 {
    table: [u8; 256],
    kernel: Selected<Lut8Fn>,
}

impl Lut8 {
    /// A lookup kernel for `table` on `isa`: AVX-512 VBMI when the CPU has it and `isa` is at
    /// least [`Isa::Avx512`], else a scalar loop.
    pub fn new(isa: Isa, table: [u8; 256]) -> Self {
        #[allow(unused_mut)] // only x86-64 has a faster kernel
        let mut kernel = Selected {
            isa: Isa::Generic,
            run: generic::elementwise::lut8 as Lut8Fn,
        };
        #[cfg(target_arch = "x86_64")]
        if isa >= Isa::Avx512 && Isa::Avx512.has_vbmi() {
            kernel = Selected {
                isa: Isa::Avx512,
                run: crate::x86_64::elementwise::lut8_vbmi as Lut8Fn,
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = isa;
        Lut8 { table, kernel }
    }

    /// Tabulates `f` over every value of `T` (an 8-bit type): `f` gets the value widened and
    /// returns the output value, which must lie in `U`'s range (clamp inside `f`).
    pub fn from_fn<T: QuantElem, U: QuantElem>(
        isa: Isa,
        f: impl Fn(i32) -> i32,
    ) -> Result<Self, LinalgError> {
        if T::MAX - T::MIN != 255 || U::MAX - U::MIN != 255 {
            return Err(LinalgError::InvalidParameter(
                "lookup tables map 8-bit types to 8-bit types".into(),
            ));
        }
        let mut table = [0u8; 256];
        for v in T::MIN..=T::MAX {
            let out = f(v);
            if !(U::MIN..=U::MAX).contains(&out) {
                return Err(LinalgError::InvalidParameter(format!(
                    "table value {out} (for input {v}) is outside the output type"
                )));
            }
            // The low byte of the two's-complement value is the stored byte for both types.
            table[(v & 0xff) as usize] = (out & 0xff) as u8;
        }
        Ok(Lut8::new(isa, table))
    }

    /// The table.
    pub fn table(&self) -> &[u8; 256] {
        &self.table
    }

    /// The instruction set of the chosen kernel.
    pub fn isa(&self) -> Isa {
        self.kernel.isa
    }

    /// `out[i] = table[x[i]]` on raw bytes.
    pub fn run(&self, x: &[u8], out: &mut [u8]) -> Result<(), LinalgError> {
        check_same(x.len(), out.len())?;
        (self.kernel.run)(&self.table, x, out)
    }
}

// ---------------------------------------------------------------------------------------------
// Float binary ops
// ---------------------------------------------------------------------------------------------

/// The arithmetic of a float binary kernel (then clamped by the fused activation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum F32BinaryOp {
    /// `x + y`.
    Add,
    /// `x - y`.
    Sub,
    /// `y - x`.
    ReverseSub,
    /// `x * y`.
    Mul,
    /// `x > y ? x : y` (TFLite MAXIMUM; NaN and signed zeros as in C++).
    Max,
    /// `y > x ? y : x`: MAXIMUM whose first input is the cyclic operand.
    ReverseMax,
    /// `x < y ? x : y` (TFLite MINIMUM).
    Min,
    /// `y < x ? y : x`.
    ReverseMin,
    /// `x >= 0 ? x : x * y` (float PRELU with a cyclic alpha).
    Prelu,
}

/// The signature of a float binary kernel.
pub(crate) type F32BinaryFn =
    fn(F32BinaryOp, F32Clamp, &[f32], &[f32], &mut [f32]) -> Result<(), LinalgError>;

/// A float binary op of a full and a cyclic operand, clamped (see the [module docs](self)).
#[derive(Debug, Clone, Copy)]
pub struct F32Binary {
    op: F32BinaryOp,
    clamp: F32Clamp,
    kernel: Selected<F32BinaryFn>,
}

impl F32Binary {
    /// Picks the kernel for `isa`.
    pub fn new(isa: Isa, op: F32BinaryOp, clamp: F32Clamp) -> Self {
        let (avx2, avx512) = x86_variants!(
            crate::x86_64::elementwise::f32_binary_avx2 as F32BinaryFn,
            crate::x86_64::elementwise::f32_binary_avx512 as F32BinaryFn
        );
        let kernel = select(
            isa,
            generic::elementwise::f32_binary as F32BinaryFn,
            avx2,
            avx512,
        );
        F32Binary { op, clamp, kernel }
    }

    /// The instruction set of the chosen kernel.
    pub fn isa(&self) -> Isa {
        self.kernel.isa
    }

    /// `out[i] = clamp(op(x[i], y[i % y.len()]))`.
    pub fn run(&self, x: &[f32], y: &[f32], out: &mut [f32]) -> Result<(), LinalgError> {
        check_cyclic(x.len(), y.len(), out.len())?;
        (self.kernel.run)(self.op, self.clamp, x, y, out)
    }
}

// ---------------------------------------------------------------------------------------------
// Float unary ops
// ---------------------------------------------------------------------------------------------

/// A float activation, computed as TFLite's float kernels compute it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum F32UnaryOp {
    /// `max(x, 0)`.
    Relu,
    /// `clamp(x, 0, 6)`.
    Relu6,
    /// `clamp(x, -1, 1)`.
    ReluN1To1,
    /// `x > 0 ? x : alpha * x`.
    LeakyRelu(f32),
    /// `x * clamp(x + 3, 0, 6) / 6`.
    HardSwish,
    /// `1 / (1 + exp(-x))` on `x` clamped to `[-100, 100]` (NaN passes).
    Logistic,
    /// `tanh(x)`.
    Tanh,
    /// `x < 0 ? expm1(x) : x`.
    Elu,
}

/// The signature of a float unary kernel.
pub(crate) type F32UnaryFn = fn(F32UnaryOp, &[f32], &mut [f32]) -> Result<(), LinalgError>;

/// A float activation kernel.
#[derive(Debug, Clone, Copy)]
pub struct F32Unary {
    op: F32UnaryOp,
    kernel: Selected<F32UnaryFn>,
}

impl F32Unary {
    /// Picks the kernel for `isa`.
    pub fn new(isa: Isa, op: F32UnaryOp) -> Self {
        let (avx2, avx512) = x86_variants!(
            crate::x86_64::elementwise::f32_unary_avx2 as F32UnaryFn,
            crate::x86_64::elementwise::f32_unary_avx512 as F32UnaryFn
        );
        let kernel = select(
            isa,
            generic::elementwise::f32_unary as F32UnaryFn,
            avx2,
            avx512,
        );
        F32Unary { op, kernel }
    }

    /// The instruction set of the chosen kernel.
    pub fn isa(&self) -> Isa {
        self.kernel.isa
    }

    /// The scalar definition of the op (what every kernel computes per element).
    pub fn apply(op: F32UnaryOp, x: f32) -> f32 {
        generic::elementwise::f32_unary_one(op, x)
    }

    /// `out[i] = op(x[i])`.
    pub fn run(&self, x: &[f32], out: &mut [f32]) -> Result<(), LinalgError> {
        check_same(x.len(), out.len())?;
        (self.kernel.run)(self.op, x, out)
    }
}

/// The smallest and largest finite value of a float tensor (NaN and infinities skipped), what
/// calibration records for every tensor of every sample.
#[derive(Debug, Clone, Copy)]
pub struct FiniteRange {
    kernel: Selected<FiniteRangeFn>,
}

pub(crate) type FiniteRangeFn = fn(&[f32]) -> Option<(f32, f32)>;

impl FiniteRange {
    /// Picks the kernel for `isa`.
    pub fn new(isa: Isa) -> Self {
        let (avx2, avx512) = x86_variants!(
            crate::x86_64::elementwise::finite_range_avx2 as FiniteRangeFn,
            crate::x86_64::elementwise::finite_range_avx512 as FiniteRangeFn
        );
        FiniteRange {
            kernel: select(
                isa,
                generic::elementwise::finite_range as FiniteRangeFn,
                avx2,
                avx512,
            ),
        }
    }

    /// `(min, max)` over the finite values of `x`, `None` when it has none.
    pub fn run(&self, x: &[f32]) -> Option<(f32, f32)> {
        (self.kernel.run)(x)
    }
}

// ---------------------------------------------------------------------------------------------
// QUANTIZE and DEQUANTIZE
// ---------------------------------------------------------------------------------------------

/// The signature of a quantize kernel.
pub(crate) type QuantizeFn<T> = fn(f32, i32, &[f32], &mut [T]) -> Result<(), LinalgError>;

/// Float to a per-tensor quantized type, as LiteRT's x86 build of TFLite's `AffineQuantize`:
/// `clamp(int32(round(x / scale)) + zero_point)`, with `round` half away from zero, the
/// conversion of `cvttss2si` (NaN and out-of-range values become `i32::MIN`) and a wrapping
/// addition.
#[derive(Debug, Clone, Copy)]
pub struct Quantize<T: QuantElem> {
    scale: f32,
    zero_point: i32,
    kernel: Selected<QuantizeFn<T>>,
}

impl<T: QuantElem> Quantize<T> {
    /// Picks the kernel for `isa`.
    pub fn new(isa: Isa, scale: f32, zero_point: i32) -> Self {
        let (avx2, avx512) = x86_variants!(
            crate::x86_64::elementwise::quantize_avx2::<T> as QuantizeFn<T>,
            crate::x86_64::elementwise::quantize_avx512::<T> as QuantizeFn<T>
        );
        let kernel = select(
            isa,
            generic::elementwise::quantize::<T> as QuantizeFn<T>,
            avx2,
            avx512,
        );
        Quantize {
            scale,
            zero_point,
            kernel,
        }
    }

    /// The scalar definition (what every kernel computes per element).
    pub fn apply(scale: f32, zero_point: i32, x: f32) -> T {
        generic::elementwise::quantize_one::<T>(scale, zero_point, x)
    }

    /// The instruction set of the chosen kernel.
    pub fn isa(&self) -> Isa {
        self.kernel.isa
    }

    /// Quantizes `x` into `out`.
    pub fn run(&self, x: &[f32], out: &mut [T]) -> Result<(), LinalgError> {
        check_same(x.len(), out.len())?;
        (self.kernel.run)(self.scale, self.zero_point, x, out)
    }
}

/// The signature of a dequantize kernel.
pub(crate) type DequantizeFn<T> = fn(f32, i32, &[T], &mut [f32]) -> Result<(), LinalgError>;

/// A per-tensor quantized type to float: `scale * (q - zero_point)` in float (equal to
/// TFLite's double computation rounded to float: the double product is exact).
#[derive(Debug, Clone, Copy)]
pub struct Dequantize<T: QuantElem> {
    scale: f32,
    zero_point: i32,
    kernel: Selected<DequantizeFn<T>>,
}

impl<T: QuantElem> Dequantize<T> {
    /// Picks the kernel for `isa`.
    pub fn new(isa: Isa, scale: f32, zero_point: i32) -> Self {
        let (avx2, avx512) = x86_variants!(
            crate::x86_64::elementwise::dequantize_avx2::<T> as DequantizeFn<T>,
            crate::x86_64::elementwise::dequantize_avx512::<T> as DequantizeFn<T>
        );
        let kernel = select(
            isa,
            generic::elementwise::dequantize::<T> as DequantizeFn<T>,
            avx2,
            avx512,
        );
        Dequantize {
            scale,
            zero_point,
            kernel,
        }
    }

    /// The instruction set of the chosen kernel.
    pub fn isa(&self) -> Isa {
        self.kernel.isa
    }

    /// Dequantizes `x` into `out`.
    pub fn run(&self, x: &[T], out: &mut [f32]) -> Result<(), LinalgError> {
        check_same(x.len(), out.len())?;
        (self.kernel.run)(self.scale, self.zero_point, x, out)
    }
}

// ---------------------------------------------------------------------------------------------
// Bilinear resize rows
// ---------------------------------------------------------------------------------------------

/// One output column of a bilinear resize: the two neighbouring input columns and the fraction
/// of the way from `lower` to `upper` (a float, or for the integer resize in units of 2^-10).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BilinearColumn<F> {
    /// Left neighbour (input column index).
    pub lower: usize,
    /// Right neighbour.
    pub upper: usize,
    /// Fraction towards `upper`.
    pub frac: F,
}

/// The signature of a float bilinear row kernel.
pub(crate) type BilinearF32Fn =
    fn(&BilinearRow<'_, f32, f32>, &mut [f32]) -> Result<(), LinalgError>;
/// The signature of an int8 bilinear row kernel.
pub(crate) type BilinearI8Fn = fn(&BilinearRow<'_, i8, i32>, &mut [i8]) -> Result<(), LinalgError>;

/// One output row of a bilinear resize: the input rows above and below it (each `in_w *
/// depth` NHWC elements), the output columns, the depth and the row fraction `dy`.
#[derive(Debug, Clone, Copy)]
pub struct BilinearRow<'a, T, F> {
    /// The input row at the lower row index.
    pub top: &'a [T],
    /// The input row at the upper row index.
    pub bottom: &'a [T],
    /// The output columns.
    pub cols: &'a [BilinearColumn<F>],
    /// Channels per pixel.
    pub depth: usize,
    /// Fraction towards `bottom` (float, or units of 2^-10 in `[-512, 1024]`).
    pub dy: F,
}

impl<T, F> BilinearRow<'_, T, F> {
    /// Checks that every column's neighbours lie in both rows and that `out` holds the row.
    pub(crate) fn check(&self, out: usize) -> Result<(), LinalgError> {
        let len = self.top.len().min(self.bottom.len());
        let fits = |c: usize| {
            c.checked_add(1)
                .and_then(|n| n.checked_mul(self.depth))
                .is_some_and(|end| end <= len)
        };
        if out != self.cols.len() * self.depth {
            return Err(LinalgError::mismatch(format!(
                "output row of {out} elements for {} columns of {}",
                self.cols.len(),
                self.depth
            )));
        }
        if !self.cols.iter().all(|c| fits(c.lower) && fits(c.upper)) {
            return Err(LinalgError::mismatch(
                "a column lies outside the input rows",
            ));
        }
        Ok(())
    }
}

/// Bilinear resize rows: TFLite's float blend `v00 (1-dy)(1-dx) + v10 dy (1-dx) + v01 (1-dy)
/// dx + v11 dy dx` (term by term, in that order) and the int8 blend of
/// `ResizeBilinearInteger` (weights in 2^-10, rounded half away from zero at 2^20), vectorised
/// over the channels of each pixel.
#[derive(Debug, Clone, Copy)]
pub struct Bilinear {
    f32_kernel: Selected<BilinearF32Fn>,
    i8_kernel: Selected<BilinearI8Fn>,
}

impl Bilinear {
    /// Picks the kernels for `isa`.
    pub fn new(isa: Isa) -> Self {
        let (avx2, avx512) = x86_variants!(
            crate::x86_64::elementwise::bilinear_f32_avx2 as BilinearF32Fn,
            crate::x86_64::elementwise::bilinear_f32_avx512 as BilinearF32Fn
        );
        let f32_kernel = select(
            isa,
            generic::elementwise::bilinear_f32 as BilinearF32Fn,
            avx2,
            avx512,
        );
        let (avx2, avx512) = x86_variants!(
            crate::x86_64::elementwise::bilinear_i8_avx2 as BilinearI8Fn,
            crate::x86_64::elementwise::bilinear_i8_avx512 as BilinearI8Fn
        );
        let i8_kernel = select(
            isa,
            generic::elementwise::bilinear_i8 as BilinearI8Fn,
            avx2,
            avx512,
        );
        Bilinear {
            f32_kernel,
            i8_kernel,
        }
    }

    /// The instruction set of the chosen kernels.
    pub fn isa(&self) -> Isa {
        self.f32_kernel.isa
    }

    /// One float output row.
    pub fn row_f32(
        &self,
        row: &BilinearRow<'_, f32, f32>,
        out: &mut [f32],
    ) -> Result<(), LinalgError> {
        row.check(out.len())?;
        (self.f32_kernel.run)(row, out)
    }

    /// One int8 output row (`dy` and the columns' fractions in units of 2^-10, within
    /// `[-512, 1024]` as TFLite's sampling produces them).
    pub fn row_i8(
        &self,
        row: &BilinearRow<'_, i8, i32>,
        out: &mut [i8],
    ) -> Result<(), LinalgError> {
        row.check(out.len())?;
        let in_range = |f: i32| (-512..=1024).contains(&f);
        if !in_range(row.dy) || !row.cols.iter().all(|c| in_range(c.frac)) {
            return Err(LinalgError::InvalidParameter(
                "bilinear fractions must lie in [-512, 1024] (units of 2^-10)".into(),
            ));
        }
        (self.i8_kernel.run)(row, out)
    }
}
