//! Quantized GEMM: integer products over weights packed at prepare time, with a fused output
//! stage that reproduces TFLite's requantization bit for bit.
//!
//! The frame is the float GEMM's ([`crate::frame::gemm`]): [`Tile`], [`pack_weights`],
//! [`RowOffsets`] (dense rows or an [`Indirection`](crate::frame::window::Indirection)), a zero
//! row for padding taps, [`PackedQGemm::run`] and [`PackedQGemm::run_columns`] over row ranges.
//! What differs is the arithmetic. Two micro-kernel families compute the same `i32`
//! accumulator `bias[c] + sum (x + input_offset) * (w + weight_offset)` (wrapping, as TFLite's
//! `int32_t` accumulators do in practice):
//!
//! - [`QGemmFamily::Vnni`] (`vpdpbusd`, u8 x s8 -> i32, four products per lane): int8
//!   activations with int8 weights whose zero point is 0. The input is converted once per
//!   operator to `x ^ 0x80` (`x + 128` as u8) with the pixel stride padded to a multiple of 4;
//!   the weights are packed `[tap][k / 4][column][4]`; `(input_offset - 128) * sum(w)` is folded
//!   into the packed bias (exact modulo 2^32), and padding taps read a row of `zp ^ 0x80`, which
//!   with the folded term contributes exactly nothing, as the reference's skipped taps do.
//! - [`QGemmFamily::Madd16`] (`vpmaddwd`, i16 x i16 -> i32, two products per lane): everything
//!   else whose operands fit 16 bits (int8 without VNNI, legacy uint8 with weight zero points,
//!   int16 activations with 32-bit accumulation). The input is converted to `x + input_offset`
//!   as i16 (padding row 0), the weights to `w + weight_offset` as i16, packed `[tap][k / 2]
//!   [column][2]`.
//!
//! The output stage then requantizes each column ([`Requant`]): TFLite's double-rounding
//! `MultiplyByQuantizedMultiplier`, or the double-precision rounding of the reference
//! FULLY_CONNECTED kernels, adds the output zero point (wrapping), clamps with `max(min)` then
//! `min(max)`, and narrows (truncating) to i8, u8 or i16.

use std::ops::Range;

use octet_core::fixed_point::{QuantizedMultiplier, requantize_double};

use crate::frame::gemm::{
    PaddedImage, ROWS_PER_CALL, RowOffsets, Tile, UkernelInfo, block_ranges, for_each_row_tile,
    pack_weights, pack_weights_into, pad_columns, tile_offsets,
};
use crate::frame::window::PAD;
use crate::{Isa, LinalgError, generic};

// ---------------------------------------------------------------------------------------------
// Element types.

/// The integer type of a quantized operand (activations or weights).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QType {
    /// `i8`.
    I8,
    /// `u8`.
    U8,
    /// `i16`.
    I16,
}

impl QType {
    /// The smallest and largest value of the type.
    pub fn range(self) -> (i32, i32) {
        match self {
            QType::I8 => (i32::from(i8::MIN), i32::from(i8::MAX)),
            QType::U8 => (0, i32::from(u8::MAX)),
            QType::I16 => (i32::from(i16::MIN), i32::from(i16::MAX)),
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for i8 {}
    impl Sealed for u8 {}
    impl Sealed for i16 {}
}

/// An element type a quantized GEMM reads as input or writes as output: `i8`, `u8`, `i16`.
pub trait QElement: Copy + Default + Send + Sync + sealed::Sealed + 'static {
    /// Its [`QType`].
    const TYPE: QType;
    /// A slice of it as an output view.
    fn output(out: &mut [Self]) -> QOut<'_>;
    /// A slice of it as an input view.
    fn input(data: &[Self]) -> QIn<'_>;
}

impl QElement for i8 {
    const TYPE: QType = QType::I8;
    fn output(out: &mut [Self]) -> QOut<'_> {
        QOut::I8(out)
    }
    fn input(data: &[Self]) -> QIn<'_> {
        QIn::I8(data)
    }
}

impl QElement for u8 {
    const TYPE: QType = QType::U8;
    fn output(out: &mut [Self]) -> QOut<'_> {
        QOut::U8(out)
    }
    fn input(data: &[Self]) -> QIn<'_> {
        QIn::U8(data)
    }
}

impl QElement for i16 {
    const TYPE: QType = QType::I16;
    fn output(out: &mut [Self]) -> QOut<'_> {
        QOut::I16(out)
    }
    fn input(data: &[Self]) -> QIn<'_> {
        QIn::I16(data)
    }
}

/// The output of a quantized micro-kernel, one of its element types.
#[derive(Debug)]
pub enum QOut<'a> {
    /// int8 output.
    I8(&'a mut [i8]),
    /// uint8 output.
    U8(&'a mut [u8]),
    /// int16 output.
    I16(&'a mut [i16]),
}

impl QOut<'_> {
    /// Elements.
    pub fn len(&self) -> usize {
        match self {
            QOut::I8(o) => o.len(),
            QOut::U8(o) => o.len(),
            QOut::I16(o) => o.len(),
        }
    }

    /// True when it holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its element type.
    pub fn qtype(&self) -> QType {
        match self {
            QOut::I8(_) => QType::I8,
            QOut::U8(_) => QType::U8,
            QOut::I16(_) => QType::I16,
        }
    }
}

/// A quantized input tensor, one of its element types.
#[derive(Debug, Clone, Copy)]
pub enum QIn<'a> {
    /// int8 input.
    I8(&'a [i8]),
    /// uint8 input.
    U8(&'a [u8]),
    /// int16 input.
    I16(&'a [i16]),
}

impl QIn<'_> {
    /// Elements.
    pub fn len(&self) -> usize {
        match self {
            QIn::I8(o) => o.len(),
            QIn::U8(o) => o.len(),
            QIn::I16(o) => o.len(),
        }
    }

    /// True when it holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its element type.
    pub fn qtype(&self) -> QType {
        match self {
            QIn::I8(_) => QType::I8,
            QIn::U8(_) => QType::U8,
            QIn::I16(_) => QType::I16,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Output stage.

/// How an accumulator is brought back to the output's scale, per output column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Requant<'a> {
    /// TFLite's `MultiplyByQuantizedMultiplier` (double rounding): one multiplier, or one per
    /// column. Multipliers must be non-negative and shifts at least -31 (what
    /// [`quantize_multiplier`](octet_core::fixed_point::quantize_multiplier) gives).
    Fixed(&'a [QuantizedMultiplier]),
    /// `round_half_away(acc as f64 * scale)`, `i32::MIN` outside `i32`
    /// ([`requantize_double`]): the reference FULLY_CONNECTED kernels. One scale, or one per
    /// column.
    Double(&'a [f64]),
}

/// The per-column parameters of the output stage as a micro-kernel reads them: slices covering
/// the tile's packed blocks (`ceil(n / nr) * nr` columns).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StageRequant<'a> {
    /// Fixed-point multipliers: `left` shifts in `0..=32` (32 clears the value, as TFLite's
    /// wrapping `x * (1 << shift)` does for shifts of 32 or more), `right` shifts in `0..=31`.
    Fixed {
        /// Q0.31 multipliers, non-negative.
        multiplier: &'a [i32],
        /// Left shifts (`max(shift, 0)`, at most 32).
        left: &'a [i32],
        /// Right shifts (`max(-shift, 0)`, at most 31).
        right: &'a [i32],
        /// True when some left shift is non-zero (kernels skip the shift otherwise).
        any_left: bool,
        /// The checked float form of the same requantization (see
        /// [`FastRequant`](crate::frame::requant::FastRequant)), which kernels may use instead,
        /// falling back to the integer form on untrusted lanes.
        checked: Option<CheckedStage<'a>>,
    },
    /// Double-precision scales.
    Double {
        /// One scale per column.
        scale: &'a [f64],
    },
}

/// The per-column operands of the checked float requantization, including the output zero
/// point (see [`FastRequant`](crate::frame::requant::FastRequant)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckedStage<'a> {
    /// `k` per column.
    pub scale: &'a [f32],
    /// The offset when the high product is non-negative.
    pub offset: &'a [f32],
    /// The offset when it is negative.
    pub offset_neg: &'a [f32],
    /// The high product is negative below this accumulator.
    pub threshold: &'a [i32],
    /// Lanes whose fraction is below this are recomputed exactly.
    pub window: f32,
}

/// The fused output stage of a quantized micro-kernel: requantize, add the zero point, clamp.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutputStage<'a> {
    /// Per-column requantization.
    pub requant: StageRequant<'a>,
    /// Added after requantization (wrapping).
    pub zero_point: i32,
    /// Lower clamp (applied first, as `max`).
    pub min: i32,
    /// Upper clamp (applied second, as `min`).
    pub max: i32,
}

impl OutputStage<'_> {
    /// Checks that the per-column parameters cover `columns` columns (the SIMD kernels read
    /// them in whole blocks). Shifts outside their documented ranges are memory-safe but give
    /// unspecified values; [`PackedQGemm`] never produces them.
    pub fn check(&self, columns: usize) -> Result<(), LinalgError> {
        let ok = match self.requant {
            StageRequant::Fixed {
                multiplier,
                left,
                right,
                checked,
                ..
            } => {
                multiplier.len() >= columns
                    && left.len() >= columns
                    && right.len() >= columns
                    && checked.is_none_or(|c| {
                        c.scale.len() >= columns
                            && c.offset.len() >= columns
                            && c.offset_neg.len() >= columns
                            && c.threshold.len() >= columns
                    })
            }
            StageRequant::Double { scale } => scale.len() >= columns,
        };
        if ok {
            Ok(())
        } else {
            Err(LinalgError::mismatch(
                "output stage: too few per-column parameters",
            ))
        }
    }

    /// The output value of accumulator `acc` in column `c` (before narrowing), exactly as the
    /// SIMD kernels compute it.
    #[inline]
    pub fn apply(&self, acc: i32, c: usize) -> i32 {
        let scaled = match self.requant {
            StageRequant::Fixed {
                multiplier,
                left,
                right,
                ..
            } => requantize_fixed(acc, multiplier[c], left[c], right[c]),
            StageRequant::Double { scale } => requantize_double(f64::from(acc), scale[c]),
        };
        scaled
            .wrapping_add(self.zero_point)
            .max(self.min)
            .min(self.max)
    }
}

/// The offsets of dense rows `rows` (`row * stride`), like [`tile_offsets`] but checked once
/// for the call instead of once per row: the per-row checks cost a tenth of a GEMM with a
/// short `k` (a pointwise convolution of 16 channels).
fn dense_offsets(
    stride: usize,
    rows: Range<usize>,
    buffer: &mut [u32; ROWS_PER_CALL],
) -> Result<&[u32], LinalgError> {
    let len = rows.len();
    if len == 0 {
        return Ok(&buffer[..0]);
    }
    let last = rows.end.checked_sub(1).and_then(|r| r.checked_mul(stride));
    let (Some(last), true) = (last, len <= ROWS_PER_CALL) else {
        return Err(LinalgError::mismatch("dense rows beyond the call's buffer"));
    };
    // The largest offset fits `u32` below `PAD`, so every smaller one does too.
    if u32::try_from(last).is_err() || last >= PAD as usize {
        return Err(LinalgError::too_large("row offset beyond u32"));
    }
    let (first, stride) = ((rows.start * stride) as u32, stride as u32);
    for (i, slot) in (0u32..).zip(buffer[..len].iter_mut()) {
        *slot = first + i * stride;
    }
    Ok(&buffer[..len])
}

pub use crate::frame::requant::requantize_fixed;
use crate::frame::requant::{FastChannel, FastLane, FastRequant};

/// The longest depth (products per output) for which [`QGemmUkernel::select_for_depth`]
/// prefers the widest of equally costly kernels.
pub const WIDE_BELOW_DEPTH: usize = 32;

/// The per-column requantization of a packed GEMM, padded to whole blocks.
#[derive(Debug, Clone)]
enum PackedRequant {
    Fixed {
        multiplier: Vec<i32>,
        left: Vec<i32>,
        right: Vec<i32>,
        any_left: bool,
        checked: Option<CheckedArrays>,
    },
    Double(Vec<f64>),
}

/// The arrays behind a [`CheckedStage`], padded to whole blocks.
#[derive(Debug, Clone)]
struct CheckedArrays {
    scale: Vec<f32>,
    offset: Vec<f32>,
    offset_neg: Vec<f32>,
    threshold: Vec<i32>,
    window: f32,
}

impl PackedRequant {
    /// `acc_bound(c)` bounds the magnitude of column `c`'s accumulators; `output` is the zero
    /// point and clamp range (for the checked float form, used for 8-bit outputs).
    fn new(
        requant: Requant<'_>,
        n: usize,
        nr: usize,
        acc_bound: impl Fn(usize) -> u64,
        output: Option<(i32, i32, i32)>,
    ) -> Result<Self, LinalgError> {
        let per_column = |len: usize| -> Result<(), LinalgError> {
            if len == 1 || len == n {
                Ok(())
            } else {
                Err(LinalgError::mismatch(format!(
                    "{len} requantization parameters for {n} columns"
                )))
            }
        };
        let expand = |len: usize, i: usize| if len == 1 { 0 } else { i };
        Ok(match requant {
            Requant::Fixed(m) => {
                per_column(m.len())?;
                let mut multiplier = Vec::with_capacity(n);
                let mut left = Vec::with_capacity(n);
                let mut right = Vec::with_capacity(n);
                for c in 0..n {
                    let q = m[expand(m.len(), c)];
                    if q.multiplier < 0 || q.shift < -31 {
                        return Err(LinalgError::InvalidParameter(format!(
                            "multiplier {q:?}: negative, or a right shift beyond 31"
                        )));
                    }
                    multiplier.push(q.multiplier);
                    left.push(q.shift.clamp(0, 32));
                    right.push((-q.shift).max(0));
                }
                let any_left = left.iter().any(|&l| l != 0);
                let checked = output.and_then(|(zero_point, lo, hi)| {
                    let channels: Vec<FastChannel> = (0..n)
                        .map(|c| FastChannel {
                            multiplier: m[expand(m.len(), c)],
                            acc_bound: acc_bound(c),
                        })
                        .collect();
                    let fast = FastRequant::new(&channels, zero_point, lo, hi)?;
                    let lane = |f: fn(&FastLane) -> f32| {
                        pad_columns(&fast.lanes.iter().map(f).collect::<Vec<_>>(), nr, 0.0)
                    };
                    Some(CheckedArrays {
                        scale: lane(|l| l.scale),
                        offset: lane(|l| l.offset),
                        offset_neg: lane(|l| l.offset_neg),
                        threshold: pad_columns(
                            &fast.lanes.iter().map(|l| l.threshold).collect::<Vec<_>>(),
                            nr,
                            0,
                        ),
                        window: fast.window,
                    })
                });
                PackedRequant::Fixed {
                    multiplier: pad_columns(&multiplier, nr, 0),
                    left: pad_columns(&left, nr, 0),
                    right: pad_columns(&right, nr, 0),
                    any_left,
                    checked,
                }
            }
            Requant::Double(s) => {
                per_column(s.len())?;
                let scale: Vec<f64> = (0..n).map(|c| s[expand(s.len(), c)]).collect();
                PackedRequant::Double(pad_columns(&scale, nr, 0.0))
            }
        })
    }

    fn stage(&self, columns: Range<usize>) -> StageRequant<'_> {
        match self {
            PackedRequant::Fixed {
                multiplier,
                left,
                right,
                any_left,
                checked,
            } => StageRequant::Fixed {
                multiplier: &multiplier[columns.clone()],
                left: &left[columns.clone()],
                right: &right[columns.clone()],
                any_left: *any_left,
                checked: checked.as_ref().map(|c| CheckedStage {
                    scale: &c.scale[columns.clone()],
                    offset: &c.offset[columns.clone()],
                    offset_neg: &c.offset_neg[columns.clone()],
                    threshold: &c.threshold[columns],
                    window: c.window,
                }),
            },
            PackedRequant::Double(scale) => StageRequant::Double {
                scale: &scale[columns],
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Micro-kernels.

/// The two quantized micro-kernel families (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QGemmFamily {
    /// u8 x s8 with four-element groups (`vpdpbusd`): int8 activations and weights.
    Vnni,
    /// i16 x i16 with two-element groups (`vpmaddwd`): every operand that fits 16 bits.
    Madd16,
}

impl QGemmFamily {
    /// `k` elements grouped per column in the packed weights (and the pixel stride's multiple).
    pub fn kr(self) -> usize {
        match self {
            QGemmFamily::Vnni => 4,
            QGemmFamily::Madd16 => 2,
        }
    }
}

/// The signature of a [`QGemmFamily::Vnni`] micro-kernel: computes the tile into `out` (row
/// stride `out_stride`) through the output stage, checking both first.
pub type VnniGemmFn =
    fn(&Tile<'_, u8, i8, i32>, &OutputStage<'_>, QOut<'_>, usize) -> Result<(), LinalgError>;

/// The signature of a [`QGemmFamily::Madd16`] micro-kernel.
pub type Madd16GemmFn =
    fn(&Tile<'_, i16, i16, i32>, &OutputStage<'_>, QOut<'_>, usize) -> Result<(), LinalgError>;

#[derive(Debug, Clone, Copy)]
enum QGemmRun {
    Vnni(VnniGemmFn),
    Madd16(Madd16GemmFn),
}

/// A quantized GEMM micro-kernel. Only this crate makes them, and only for instruction sets
/// the CPU supports, so running one is always sound.
#[derive(Debug, Clone, Copy)]
pub struct QGemmUkernel {
    info: UkernelInfo,
    run: QGemmRun,
}

impl QGemmUkernel {
    /// Crate-internal: the caller guarantees `run` may be called on this CPU when `info.isa`
    /// is supported (checked by [`QGemmUkernel::all`]).
    pub(crate) const fn vnni(info: UkernelInfo, run: VnniGemmFn) -> Self {
        QGemmUkernel {
            info,
            run: QGemmRun::Vnni(run),
        }
    }

    /// Crate-internal, as [`QGemmUkernel::vnni`].
    pub(crate) const fn madd16(info: UkernelInfo, run: Madd16GemmFn) -> Self {
        QGemmUkernel {
            info,
            run: QGemmRun::Madd16(run),
        }
    }

    /// Its instruction set and tile shape.
    pub fn info(&self) -> UkernelInfo {
        self.info
    }

    /// Its family.
    pub fn family(&self) -> QGemmFamily {
        match self.run {
            QGemmRun::Vnni(_) => QGemmFamily::Vnni,
            QGemmRun::Madd16(_) => QGemmFamily::Madd16,
        }
    }

    /// Every quantized GEMM micro-kernel this CPU can run, generic ones first.
    pub fn all() -> Vec<QGemmUkernel> {
        let mut all = generic::gemm_q::UKERNELS.to_vec();
        #[cfg(target_arch = "x86_64")]
        all.extend(crate::x86_64::q_gemm_ukernels());
        all.retain(|k| k.info.isa.is_supported());
        all
    }

    /// The kernel of `family` to use on `isa` (or the best below it this CPU supports) for `n`
    /// columns and about `m` rows per call (`m = 1`: a matrix-vector product).
    pub fn select(isa: Isa, family: QGemmFamily, m: usize, n: usize) -> QGemmUkernel {
        QGemmUkernel::select_for_depth(isa, family, m, n, usize::MAX)
    }

    /// [`QGemmUkernel::select`] knowing the products per output (`depth`, taps times
    /// elements): among kernels doing the same padded work, a short depth (at most
    /// [`WIDE_BELOW_DEPTH`]) prefers the widest block, whose every broadcast of A feeds more
    /// columns and whose output stage stores whole rows (112x112x16->64: 6x64 takes 16% less
    /// time than 14x32); a longer one prefers more rows per call, as `select` does.
    pub fn select_for_depth(
        isa: Isa,
        family: QGemmFamily,
        m: usize,
        n: usize,
        depth: usize,
    ) -> QGemmUkernel {
        let candidates: Vec<QGemmUkernel> = QGemmUkernel::all()
            .into_iter()
            .filter(|k| k.info.isa <= isa && k.family() == family)
            .collect();
        let best_isa = candidates
            .iter()
            .map(|k| k.info.isa)
            .max()
            .unwrap_or(Isa::Generic);
        let generic = match family {
            QGemmFamily::Vnni => generic::gemm_q::UKERNELS[0],
            QGemmFamily::Madd16 => generic::gemm_q::UKERNELS[1],
        };
        candidates
            .into_iter()
            .filter(|k| k.info.isa == best_isa)
            .min_by_key(|k| {
                let (work, rows, width) = k.info.cost(m, n);
                if m > 1 && depth <= WIDE_BELOW_DEPTH {
                    (work, width, rows)
                } else {
                    (work, rows, width)
                }
            })
            .unwrap_or(generic)
    }
}

// ---------------------------------------------------------------------------------------------
// Input conversion.

/// Converts an int8 input to u8 (`x ^ 0x80`), pixel by pixel: `channels` values per pixel read
/// densely, written `stride` apart, the `stride - channels` gap and any tail of `out` beyond
/// the pixels zeroed.
pub type ToU8Fn = fn(&[i8], usize, usize, &mut [u8]) -> Result<(), LinalgError>;

/// Converts an input to i16 (`x + offset`, wrapping), laid out as [`ToU8Fn`] does.
pub type ToI16Fn = fn(QIn<'_>, i32, usize, usize, &mut [i16]) -> Result<(), LinalgError>;

/// The input conversion kernels of one instruction set.
#[derive(Debug, Clone, Copy)]
pub struct QConvertKernels {
    /// The instruction set they need.
    pub isa: Isa,
    to_u8: ToU8Fn,
    to_i16: ToI16Fn,
}

impl QConvertKernels {
    /// Crate-internal: the caller guarantees the functions may be called when `isa` is
    /// supported (checked by [`QConvertKernels::all`]).
    pub(crate) const fn new(isa: Isa, to_u8: ToU8Fn, to_i16: ToI16Fn) -> Self {
        QConvertKernels { isa, to_u8, to_i16 }
    }

    /// Every set of conversion kernels this CPU can run, generic first.
    pub fn all() -> Vec<QConvertKernels> {
        let mut all = vec![generic::gemm_q::CONVERT];
        #[cfg(target_arch = "x86_64")]
        all.extend(crate::x86_64::q_convert_kernels());
        all.retain(|k| k.isa.is_supported());
        all
    }

    /// The best set for `isa` this CPU supports.
    pub fn select(isa: Isa) -> QConvertKernels {
        QConvertKernels::all()
            .into_iter()
            .filter(|k| k.isa <= isa)
            .max_by_key(|k| k.isa)
            .unwrap_or(generic::gemm_q::CONVERT)
    }

    /// `x ^ 0x80` into `out` (see [`ToU8Fn`]).
    pub fn to_u8(
        &self,
        input: &[i8],
        channels: usize,
        stride: usize,
        out: &mut [u8],
    ) -> Result<(), LinalgError> {
        (self.to_u8)(input, channels, stride, out)
    }

    /// `x + offset` into `out` (see [`ToI16Fn`]).
    pub fn to_i16(
        &self,
        input: QIn<'_>,
        offset: i32,
        channels: usize,
        stride: usize,
        out: &mut [i16],
    ) -> Result<(), LinalgError> {
        (self.to_i16)(input, offset, channels, stride, out)
    }
}

/// Checks the common contract of the conversion kernels; returns the number of pixels.
pub(crate) fn check_convert(
    input_len: usize,
    channels: usize,
    stride: usize,
    out_len: usize,
) -> Result<usize, LinalgError> {
    if channels == 0 || stride < channels || !input_len.is_multiple_of(channels) {
        return Err(LinalgError::mismatch(
            "conversion: input not whole pixels, or stride below channels",
        ));
    }
    let pixels = input_len / channels;
    if pixels.checked_mul(stride).is_none_or(|len| len > out_len) {
        return Err(LinalgError::mismatch("conversion: output too short"));
    }
    Ok(pixels)
}

/// How a GEMM wants its input: the family's element type, the input's type and offset.
/// GEMMs built from the same input (the groups of a grouped convolution) share it, so the
/// input is converted once.
#[derive(Debug, Clone, Copy)]
pub struct QInputFormat {
    family: QGemmFamily,
    input: QType,
    input_offset: i32,
    convert: QConvertKernels,
}

impl PartialEq for QInputFormat {
    /// Formats are equal when they convert the same input the same way (whichever kernels
    /// do it: they all compute the same values).
    fn eq(&self, other: &Self) -> bool {
        (self.family, self.input, self.input_offset)
            == (other.family, other.input, other.input_offset)
    }
}

impl QInputFormat {
    /// The kernel family.
    pub fn family(&self) -> QGemmFamily {
        self.family
    }

    /// Elements between converted pixels of `channels` channels: `channels` rounded up to the
    /// family's `kr`.
    pub fn pixel_stride(&self, channels: usize) -> usize {
        channels.next_multiple_of(self.family.kr())
    }

    /// Elements of the converted input of `pixels` pixels: the padded pixels plus slack for a
    /// grouped convolution's last group, which reads up to `kr - 1` elements past its pixel.
    pub fn converted_len(&self, pixels: usize, channels: usize) -> Result<usize, LinalgError> {
        pixels
            .checked_mul(self.pixel_stride(channels))
            .and_then(|len| len.checked_add(self.family.kr()))
            .ok_or_else(|| LinalgError::too_large("converted input"))
    }

    /// Scratch bytes [`QInputFormat::convert`] needs for `pixels` pixels.
    pub fn scratch_bytes(&self, pixels: usize, channels: usize) -> Result<usize, LinalgError> {
        let elem = match self.family {
            QGemmFamily::Vnni => 1,
            QGemmFamily::Madd16 => 2,
        };
        self.converted_len(pixels, channels)?
            .checked_mul(elem)
            .ok_or_else(|| LinalgError::too_large("converted input"))
    }

    /// Converts `input` (whole pixels of `channels`) into `scratch` (at least
    /// [`QInputFormat::scratch_bytes`], 2-byte aligned) for the GEMMs of this format.
    pub fn convert<'s>(
        &self,
        input: QIn<'_>,
        channels: usize,
        scratch: &'s mut [u8],
    ) -> Result<QConverted<'s>, LinalgError> {
        if channels == 0 {
            return Err(LinalgError::mismatch("no channels"));
        }
        let pixels = input.len() / channels;
        let len = self.converted_len(pixels, channels)?;
        let stride = self.pixel_stride(channels);
        let kernels = self.convert;
        self.convert_with(input, scratch, len, stride, |input, out| {
            match (input, out) {
                (QIn::I8(x), QAOut::U8(out)) => kernels.to_u8(x, channels, stride, out),
                (input, QAOut::I16(out)) => {
                    kernels.to_i16(input, self.input_offset, channels, stride, out)
                }
                _ => Err(LinalgError::mismatch("VNNI GEMMs read int8 inputs")),
            }
        })
    }

    /// The value a converted padding element holds: what makes its products vanish (the
    /// input's zero point, as the family stores it).
    fn padding_value(&self) -> (u8, i16) {
        let zero_point = self.input_offset.wrapping_neg() as i8;
        ((zero_point as u8) ^ 0x80, 0)
    }

    /// Scratch bytes [`QInputFormat::convert_padded`] needs.
    pub fn padded_scratch_bytes(
        &self,
        image: &PaddedImage,
        channels: usize,
    ) -> Result<usize, LinalgError> {
        let pixels = image
            .padded_pixels()
            .ok_or_else(|| LinalgError::too_large("padded image"))?;
        self.scratch_bytes(pixels, channels)
    }

    /// Converts `input` (an NHWC batch of `image`'s unpadded size, `channels` per pixel) into
    /// `scratch` as the padded image, padding pixels holding the input's zero point, so that
    /// they contribute nothing to any product.
    pub fn convert_padded<'s>(
        &self,
        input: QIn<'_>,
        channels: usize,
        image: &PaddedImage,
        scratch: &'s mut [u8],
    ) -> Result<QConverted<'s>, LinalgError> {
        let pixels = image
            .padded_pixels()
            .ok_or_else(|| LinalgError::too_large("padded image"))?;
        let len = self.converted_len(pixels, channels)?;
        let stride = self.pixel_stride(channels);
        let kernels = self.convert;
        let (fill_u8, fill_i16) = self.padding_value();
        self.convert_with(input, scratch, len, stride, |input, out| {
            match (input, out) {
                (QIn::I8(x), QAOut::U8(out)) => {
                    image.fill(x, channels, stride, out, fill_u8, |x, y| {
                        kernels.to_u8(x, channels, stride, y)
                    })
                }
                (QIn::I8(x), QAOut::I16(out)) => {
                    image.fill(x, channels, stride, out, fill_i16, |x, y| {
                        kernels.to_i16(QIn::I8(x), self.input_offset, channels, stride, y)
                    })
                }
                (QIn::U8(x), QAOut::I16(out)) => {
                    image.fill(x, channels, stride, out, fill_i16, |x, y| {
                        kernels.to_i16(QIn::U8(x), self.input_offset, channels, stride, y)
                    })
                }
                (QIn::I16(x), QAOut::I16(out)) => {
                    image.fill(x, channels, stride, out, fill_i16, |x, y| {
                        kernels.to_i16(QIn::I16(x), self.input_offset, channels, stride, y)
                    })
                }
                _ => Err(LinalgError::mismatch("VNNI GEMMs read int8 inputs")),
            }
        })
    }

    /// Views `len` elements of `scratch` as the family's element type and fills them with
    /// `convert`.
    fn convert_with<'s>(
        &self,
        input: QIn<'_>,
        scratch: &'s mut [u8],
        len: usize,
        stride: usize,
        convert: impl FnOnce(QIn<'_>, QAOut<'_>) -> Result<(), LinalgError>,
    ) -> Result<QConverted<'s>, LinalgError> {
        if input.qtype() != self.input {
            return Err(LinalgError::mismatch("input type differs from the GEMM's"));
        }
        let data = match self.family {
            QGemmFamily::Vnni => {
                let out = scratch
                    .get_mut(..len)
                    .ok_or_else(|| LinalgError::mismatch("scratch too short"))?;
                convert(input, QAOut::U8(&mut *out))?;
                QAData::U8(out)
            }
            QGemmFamily::Madd16 => {
                let bytes = scratch
                    .get_mut(..len * 2)
                    .ok_or_else(|| LinalgError::mismatch("scratch too short"))?;
                let out: &mut [i16] = bytemuck::try_cast_slice_mut(bytes)
                    .map_err(|_| LinalgError::mismatch("scratch not 2-byte aligned"))?;
                convert(input, QAOut::I16(&mut *out))?;
                QAData::I16(out)
            }
        };
        Ok(QConverted {
            data,
            format: *self,
            stride,
        })
    }
}

/// Where a conversion writes.
enum QAOut<'a> {
    U8(&'a mut [u8]),
    I16(&'a mut [i16]),
}

#[derive(Debug, Clone, Copy)]
enum QAData<'a> {
    U8(&'a [u8]),
    I16(&'a [i16]),
}

/// An input converted for the GEMMs of one [`QInputFormat`].
#[derive(Debug, Clone, Copy)]
pub struct QConverted<'a> {
    data: QAData<'a>,
    format: QInputFormat,
    stride: usize,
}

impl<'a> QConverted<'a> {
    /// Elements between pixels (for dense rows and indirection buffers).
    pub fn pixel_stride(&self) -> usize {
        self.stride
    }

    /// The A operand whose rows start at `rows` offsets past element `first_channel` (a group's
    /// first input channel; 0 for an ungrouped GEMM).
    pub fn source(
        &self,
        first_channel: usize,
        rows: RowOffsets<'a>,
    ) -> Result<QASource<'a>, LinalgError> {
        let short = || LinalgError::mismatch("channel offset beyond the input");
        let data = match self.data {
            QAData::U8(d) => QAData::U8(d.get(first_channel..).ok_or_else(short)?),
            QAData::I16(d) => QAData::I16(d.get(first_channel..).ok_or_else(short)?),
        };
        Ok(QASource {
            data,
            format: self.format,
            rows,
        })
    }
}

/// The A operand of a quantized GEMM: converted input and where its rows start.
#[derive(Debug, Clone, Copy)]
pub struct QASource<'a> {
    data: QAData<'a>,
    format: QInputFormat,
    rows: RowOffsets<'a>,
}

// ---------------------------------------------------------------------------------------------
// Packed GEMM.

/// The packed weights of a quantized GEMM.
#[derive(Debug, Clone)]
pub enum QWeights<'a> {
    /// int8 weights.
    I8(&'a [i8]),
    /// uint8 weights.
    U8(&'a [u8]),
}

impl QWeights<'_> {
    fn len(&self) -> usize {
        match self {
            QWeights::I8(w) => w.len(),
            QWeights::U8(w) => w.len(),
        }
    }

    fn get(&self, i: usize) -> i32 {
        match self {
            QWeights::I8(w) => i32::from(w[i]),
            QWeights::U8(w) => i32::from(w[i]),
        }
    }

    fn qtype(&self) -> QType {
        match self {
            QWeights::I8(_) => QType::I8,
            QWeights::U8(_) => QType::U8,
        }
    }
}

/// Everything a quantized GEMM is built from: `out[r][c] = stage(bias[c] + sum_t sum_k
/// (a(r, t)[k] + input_offset) * (w[c][t][k] + weight_offset))`.
#[derive(Debug, Clone)]
pub struct QGemmSpec<'a> {
    /// The input's element type.
    pub input: QType,
    /// Added to every input element (TFLite's `input_offset`, minus the zero point).
    pub input_offset: i32,
    /// Weights laid out `[n][ks][kc]` (TFLite's OHWI filter or `[units][depth]` matrix).
    pub weights: QWeights<'a>,
    /// Added to every weight (minus the weights' zero point).
    pub weight_offset: i32,
    /// `[n, ks, kc]`: columns, taps, elements per tap.
    pub shape: [usize; 3],
    /// `n` biases, or none (zero).
    pub bias: Option<&'a [i32]>,
    /// Per-column (or one) requantization.
    pub requant: Requant<'a>,
    /// The output's element type.
    pub output: QType,
    /// Added after requantization.
    pub output_zero_point: i32,
    /// `(min, max)` clamp.
    pub clamp: (i32, i32),
}

impl QGemmSpec<'_> {
    /// True when the VNNI family can compute this GEMM: int8 input whose zero point is an int8
    /// value, int8 weights without offset.
    pub fn vnni_eligible(&self) -> bool {
        let zero_point = self.input_offset.checked_neg();
        self.input == QType::I8
            && self.weights.qtype() == QType::I8
            && self.weight_offset == 0
            && zero_point.is_some_and(|z| i8::try_from(z).is_ok())
    }

    /// True when the 16-bit family can compute it: every `x + input_offset` and every
    /// `w + weight_offset` fits i16.
    pub fn madd16_eligible(&self) -> bool {
        let fits = |(lo, hi): (i32, i32), offset: i32| {
            let lo = i64::from(lo) + i64::from(offset);
            let hi = i64::from(hi) + i64::from(offset);
            lo >= i64::from(i16::MIN) && hi <= i64::from(i16::MAX)
        };
        fits(self.input.range(), self.input_offset)
            && fits(self.weights.qtype().range(), self.weight_offset)
    }

    /// The family [`PackedQGemm::new`] picks on `isa`: VNNI where the CPU has it and the GEMM
    /// fits it, else 16 bits; `None` when neither can compute it.
    pub fn family(&self, isa: Isa) -> Option<QGemmFamily> {
        let vnni = self.vnni_eligible();
        if vnni && isa >= Isa::Avx512Vnni && Isa::Avx512Vnni.is_supported() {
            Some(QGemmFamily::Vnni)
        } else if self.madd16_eligible() {
            Some(QGemmFamily::Madd16)
        } else if vnni {
            Some(QGemmFamily::Vnni)
        } else {
            None
        }
    }
}

/// Folds `(input_offset - 128) * sum(w)` into each column's bias, modulo 2^32: what turns the
/// VNNI kernels' `x + 128` products back into `x + input_offset` ones.
fn fold_weight_sums(bias: &mut [i32], input_offset: i32, sum: impl Fn(usize) -> i32) {
    let fold = input_offset.wrapping_sub(128);
    for (c, b) in bias.iter_mut().enumerate() {
        *b = b.wrapping_add(fold.wrapping_mul(sum(c)));
    }
}

#[derive(Debug, Clone)]
enum PackedQWeights {
    I8(Vec<i8>),
    I16(Vec<i16>),
}

#[derive(Debug, Clone)]
enum ZeroRow {
    U8(Vec<u8>),
    I16(Vec<i16>),
}

/// A quantized GEMM with its weights packed for one micro-kernel and its output stage.
#[derive(Debug, Clone)]
pub struct PackedQGemm {
    ukernel: QGemmUkernel,
    format: QInputFormat,
    n: usize,
    ks: usize,
    kc: usize,
    /// `kc` before padding to the family's `kr`.
    kc_unpadded: usize,
    weight_offset: i32,
    weights: PackedQWeights,
    /// The bias as given (the packed one may hold folded weight sums).
    bias_given: Vec<i32>,
    bias: Vec<i32>,
    requant: PackedRequant,
    output: QType,
    zero_point: i32,
    min: i32,
    max: i32,
    zero: ZeroRow,
}

impl PackedQGemm {
    /// Packs the GEMM for the best kernel of `isa` for `m` rows per call (1 for a matrix-vector
    /// product, any larger number otherwise).
    pub fn new(isa: Isa, spec: &QGemmSpec<'_>, m: usize) -> Result<Self, LinalgError> {
        let family = spec.family(isa).ok_or_else(|| {
            LinalgError::InvalidParameter("operands do not fit a quantized GEMM".into())
        })?;
        let [n, ks, kc] = spec.shape;
        let ukernel = QGemmUkernel::select_for_depth(isa, family, m, n, ks.saturating_mul(kc));
        PackedQGemm::build(ukernel, spec, isa)
    }

    /// As [`PackedQGemm::new`] with a given micro-kernel (tests and benchmarks).
    pub fn with_ukernel(ukernel: QGemmUkernel, spec: &QGemmSpec<'_>) -> Result<Self, LinalgError> {
        PackedQGemm::build(ukernel, spec, ukernel.info.isa)
    }

    fn build(ukernel: QGemmUkernel, spec: &QGemmSpec<'_>, isa: Isa) -> Result<Self, LinalgError> {
        let [n, ks, kc] = spec.shape;
        if n == 0 || ks == 0 || kc == 0 {
            return Err(LinalgError::mismatch(
                "a GEMM needs at least one column, tap and element",
            ));
        }
        let family = ukernel.family();
        let eligible = match family {
            QGemmFamily::Vnni => spec.vnni_eligible(),
            QGemmFamily::Madd16 => spec.madd16_eligible(),
        };
        if !eligible {
            return Err(LinalgError::InvalidParameter(format!(
                "operands do not fit the {family:?} kernels"
            )));
        }
        let info = ukernel.info;
        let nr = info.nr;
        let kr = family.kr();
        if spec.weights.len() != n * ks * kc {
            return Err(LinalgError::mismatch(format!(
                "{} weights for {n} x {ks} x {kc}",
                spec.weights.len()
            )));
        }
        let mut bias: Vec<i32> = match spec.bias {
            Some(b) if b.len() == n => b.to_vec(),
            Some(b) => {
                return Err(LinalgError::mismatch(format!(
                    "{} bias values for {n} columns",
                    b.len()
                )));
            }
            None => vec![0; n],
        };
        let bias_given = bias.clone();
        // The largest |(x + input_offset) * (w + weight_offset)| for any values of the types
        // (weights may be repacked at run time), and the products per accumulator.
        let widest = |(lo, hi): (i32, i32), offset: i32| {
            (i64::from(lo) + i64::from(offset))
                .unsigned_abs()
                .max((i64::from(hi) + i64::from(offset)).unsigned_abs())
        };
        let magnitude = widest(spec.input.range(), spec.input_offset)
            .saturating_mul(widest(spec.weights.qtype().range(), spec.weight_offset));
        let products = (ks as u64).saturating_mul(kc as u64);
        let (weights, zero) = match family {
            QGemmFamily::Vnni => {
                fold_weight_sums(&mut bias, spec.input_offset, |c| {
                    (0..ks * kc).fold(0i32, |s, i| {
                        s.wrapping_add(spec.weights.get(c * ks * kc + i))
                    })
                });
                let packed = match spec.weights {
                    QWeights::I8(w) => pack_weights(w, n, ks, kc, nr, kr, |w| w)?,
                    QWeights::U8(_) => {
                        return Err(LinalgError::mismatch("VNNI kernels take int8 weights"));
                    }
                };
                let zero_point = spec.input_offset.wrapping_neg() as i8;
                let zero = vec![(zero_point as u8) ^ 0x80; kc.next_multiple_of(kr)];
                (PackedQWeights::I8(packed), ZeroRow::U8(zero))
            }
            QGemmFamily::Madd16 => {
                let offset = spec.weight_offset;
                let widen = |w: i32| w.wrapping_add(offset) as i16;
                let packed = match spec.weights {
                    QWeights::I8(w) => pack_weights(w, n, ks, kc, nr, kr, |w| widen(i32::from(w)))?,
                    QWeights::U8(w) => pack_weights(w, n, ks, kc, nr, kr, |w| widen(i32::from(w)))?,
                };
                (
                    PackedQWeights::I16(packed),
                    ZeroRow::I16(vec![0; kc.next_multiple_of(kr)]),
                )
            }
        };
        Ok(PackedQGemm {
            ukernel,
            format: QInputFormat {
                family,
                input: spec.input,
                input_offset: spec.input_offset,
                convert: QConvertKernels::select(isa),
            },
            n,
            ks,
            kc: kc.next_multiple_of(kr),
            kc_unpadded: kc,
            weight_offset: spec.weight_offset,
            weights,
            bias_given,
            bias: pad_columns(&bias, nr, 0),
            requant: PackedRequant::new(
                spec.requant,
                n,
                nr,
                |c| {
                    let bias = spec.bias.map_or(0, |b| u64::from(b[c].unsigned_abs()));
                    bias.saturating_add(products.saturating_mul(magnitude))
                },
                (spec.output != QType::I16).then_some((
                    spec.output_zero_point,
                    spec.clamp.0,
                    spec.clamp.1,
                )),
            )?,
            output: spec.output,
            zero_point: spec.output_zero_point,
            min: spec.clamp.0,
            max: spec.clamp.1,
            zero,
        })
    }

    /// Columns.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Replaces the weights by `weight(column, tap, k)` (same shape, values of the weights'
    /// type as `i32`), in place and without allocating: for a matrix product whose right-hand
    /// side is computed at run time. The weight offset, bias and output stage stay.
    pub fn repack(
        &mut self,
        weight: impl Fn(usize, usize, usize) -> i32,
    ) -> Result<(), LinalgError> {
        let nr = self.ukernel.info.nr;
        let shape = [self.n, self.ks, self.kc_unpadded];
        match &mut self.weights {
            PackedQWeights::I8(packed) => {
                pack_weights_into(packed, shape, nr, 4, |c, t, k| weight(c, t, k) as i8)?;
                // The folded sums change with the weights.
                let (ks, kc) = (self.ks, self.kc_unpadded);
                let bias = &mut self.bias[..self.n];
                bias.copy_from_slice(&self.bias_given);
                fold_weight_sums(bias, self.format.input_offset, |c| {
                    (0..ks * kc).fold(0i32, |s, i| s.wrapping_add(weight(c, i / kc, i % kc)))
                });
                Ok(())
            }
            PackedQWeights::I16(packed) => {
                let offset = self.weight_offset;
                pack_weights_into(packed, shape, nr, 2, |c, t, k| {
                    weight(c, t, k).wrapping_add(offset) as i16
                })
            }
        }
    }

    /// The micro-kernel it runs.
    pub fn ukernel(&self) -> UkernelInfo {
        self.ukernel.info
    }

    /// How it wants its input converted.
    pub fn input_format(&self) -> QInputFormat {
        self.format
    }

    /// Columns per packed block: column ranges for [`PackedQGemm::run_columns`] start at
    /// multiples of it.
    pub fn column_block(&self) -> usize {
        self.ukernel.info.nr
    }

    /// Rows per micro-kernel call: row ranges split at multiples of it waste nothing.
    pub fn row_block(&self) -> usize {
        self.ukernel.info.mr
    }

    /// Computes rows `rows` of the output, all columns, into `out` (which starts at row
    /// `rows.start`; row stride `out_stride`).
    pub fn run<O: QElement>(
        &self,
        a: &QASource<'_>,
        rows: Range<usize>,
        out: &mut [O],
        out_stride: usize,
    ) -> Result<(), LinalgError> {
        self.run_columns(a, rows, 0..self.n, out, out_stride)
    }

    /// Computes rows `rows` and columns `cols` (starting on a block boundary, see
    /// [`PackedQGemm::column_block`]) into `out`, which starts at (`rows.start`, `cols.start`).
    pub fn run_columns<O: QElement>(
        &self,
        a: &QASource<'_>,
        rows: Range<usize>,
        cols: Range<usize>,
        out: &mut [O],
        out_stride: usize,
    ) -> Result<(), LinalgError> {
        if a.format != self.format {
            return Err(LinalgError::mismatch(
                "the input was converted for another GEMM format",
            ));
        }
        if O::TYPE != self.output {
            return Err(LinalgError::mismatch("output type differs from the GEMM's"));
        }
        let info = self.ukernel.info;
        let block_len = self.ks * self.kc * info.nr;
        let (w, b, n) = block_ranges(&cols, self.n, info.nr, block_len)?;
        let stage = OutputStage {
            requant: self.requant.stage(b.clone()),
            zero_point: self.zero_point,
            min: self.min,
            max: self.max,
        };
        let bias = &self.bias[b];
        let mut buffer = [0u32; ROWS_PER_CALL];
        for_each_row_tile(rows, info.mr, out_stride, |tile_rows, out_offset| {
            let m = tile_rows.len();
            let offsets = match a.rows {
                RowOffsets::Dense { stride } if self.ks == 1 => {
                    dense_offsets(stride, tile_rows, &mut buffer)?
                }
                _ => tile_offsets(&a.rows, tile_rows, self.ks, &mut buffer)?,
            };
            let out = out
                .get_mut(out_offset..)
                .ok_or_else(|| LinalgError::mismatch("output too short"))?;
            match (&self.ukernel.run, &self.weights, &self.zero, a.data) {
                (
                    QGemmRun::Vnni(run),
                    PackedQWeights::I8(weights),
                    ZeroRow::U8(zero),
                    QAData::U8(input),
                ) => {
                    let tile = Tile {
                        input,
                        zero,
                        offsets,
                        m,
                        ks: self.ks,
                        kc: self.kc,
                        weights: &weights[w.clone()],
                        bias,
                        n,
                    };
                    run(&tile, &stage, O::output(out), out_stride)
                }
                (
                    QGemmRun::Madd16(run),
                    PackedQWeights::I16(weights),
                    ZeroRow::I16(zero),
                    QAData::I16(input),
                ) => {
                    let tile = Tile {
                        input,
                        zero,
                        offsets,
                        m,
                        ks: self.ks,
                        kc: self.kc,
                        weights: &weights[w.clone()],
                        bias,
                        n,
                    };
                    run(&tile, &stage, O::output(out), out_stride)
                }
                _ => Err(LinalgError::mismatch("kernel family and operands differ")),
            }
        })
    }
}
