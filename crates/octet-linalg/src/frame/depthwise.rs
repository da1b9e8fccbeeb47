//! Depthwise convolution over NHWC images: channels are the vector dimension.
//!
//! Output pixel `p`, channel `c` is `stage(bias[c] + sum_t x(p, t)[c] * w[t][c])` where `x(p, t)`
//! is the input pixel under tap `t` of `p`'s window (or a zero row in the padding). The window
//! is described once, at prepare time, by a [`DwPlan`]: each output row is cut into *segments*,
//! runs of consecutive output pixels whose taps all advance by the same step (`stride_w` input
//! pixels) from one pixel to the next, padding taps staying on the zero row. An image interior
//! row is one segment; each border pixel whose padding pattern differs from its neighbour's is a
//! segment of its own. A micro-kernel computes one segment ([`DwTile`]): it resolves the tap
//! addresses once and then walks the pixels, so no per-pixel indirection is read (a per-pixel
//! indirection buffer is larger than an int8 input for small channel counts).
//!
//! Weights are packed once per kernel in blocks of `cr` channels, `[block][tap][cr]`: `f32` for
//! float; for 8-bit integers an `i32` whose low 16 bits hold the (offset) weight and whose high
//! 16 bits are zero, so that `vpmaddwd`/`vpdpwssd` of a sign- or zero-extended input lane with it
//! is exactly `x * w` (the input's high half meets the zero). Bias and per-channel
//! requantization parameters are padded to whole blocks.
//!
//! Integer kernels compute TFLite's `DepthwiseConvPerChannel` (and the legacy uint8
//! `DepthwiseConv`) exactly: with `input_offset = -input_zero_point`, the reference
//! `sum_t (x + input_offset) * w'` over in-image taps equals `sum_t x * w' + input_offset *
//! sum_t w'` over all taps when padding taps read the input zero point, so the offset term is
//! folded into the bias at prepare and the kernels multiply raw inputs (exact modulo 2^32, as the
//! reference's int32 arithmetic is). `w' = w + weight_offset` (the legacy uint8 weight zero point)
//! is applied at packing.

use std::ops::Range;

use octet_core::fixed_point::{QuantizedMultiplier, multiply_by_quantized_multiplier};

use crate::frame::gemm_f32::F32Clamp;
use crate::frame::window::{PAD, Window2d};
use crate::{Isa, LinalgError, generic};

/// One run of output pixels whose taps advance together (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DwSegment {
    /// Index of its first output pixel (NHWC order over the whole batch).
    pub first: usize,
    /// Number of pixels.
    pub count: usize,
}

/// The window of a depthwise convolution (or pooling) cut into segments, with the tap offsets
/// of each segment's first pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DwPlan {
    window: Window2d,
    channels: usize,
    step: usize,
    segments: Vec<DwSegment>,
    /// `taps()` offsets (elements into the input, or [`PAD`]) per segment.
    taps: Vec<u32>,
    /// Segments of output row `r` (`b * out_h + oy`): `row_segments[r]..row_segments[r + 1]`.
    row_segments: Vec<usize>,
}

impl DwPlan {
    /// Plans `window` over an input of `channels` channels per pixel (NHWC, pixels `channels`
    /// elements apart). Every input offset fits in `u32` (checked).
    pub fn new(window: &Window2d, channels: usize) -> Result<Self, LinalgError> {
        let w = window;
        if channels == 0 || w.filter_h == 0 || w.filter_w == 0 {
            return Err(LinalgError::mismatch(
                "a depthwise window needs channels and taps",
            ));
        }
        if w.stride_h == 0 || w.stride_w == 0 || w.dilation_h == 0 || w.dilation_w == 0 {
            return Err(LinalgError::InvalidParameter(
                "strides and dilations must be positive".into(),
            ));
        }
        w.input_pixels()
            .checked_add(1)
            .and_then(|p| p.checked_mul(channels))
            .filter(|&n| n < PAD as usize)
            .ok_or_else(|| LinalgError::too_large("input elements beyond u32 offsets"))?;
        w.output_pixels()
            .checked_mul(channels)
            .ok_or_else(|| LinalgError::too_large("output elements"))?;
        let step = w
            .stride_w
            .checked_mul(channels)
            .filter(|&s| s < PAD as usize)
            .ok_or_else(|| LinalgError::too_large("pixel step"))?;
        // Every tap coordinate is bounded by the (checked) image size once it is inside the
        // image; the arithmetic below only forms coordinates through checked operations.
        let coord = |o: usize, stride: usize, pad: usize, f: usize, dil: usize, size: usize| {
            o.checked_mul(stride)
                .and_then(|v| v.checked_add(f.checked_mul(dil)?))
                .and_then(|v| v.checked_sub(pad))
                .filter(|&i| i < size)
        };
        let taps = w.taps();
        let mut segments = Vec::new();
        let mut offsets = Vec::new();
        let mut row_segments = Vec::with_capacity(w.batches * w.out_h + 1);
        let mut cols: Vec<Option<usize>> = vec![None; w.filter_w];
        let mut previous: Vec<bool> = vec![false; w.filter_w];
        for b in 0..w.batches {
            for oy in 0..w.out_h {
                row_segments.push(segments.len());
                let rows: Vec<Option<usize>> = (0..w.filter_h)
                    .map(|fy| coord(oy, w.stride_h, w.pad_top, fy, w.dilation_h, w.in_h))
                    .collect();
                for ox in 0..w.out_w {
                    for (fx, col) in cols.iter_mut().enumerate() {
                        *col = coord(ox, w.stride_w, w.pad_left, fx, w.dilation_w, w.in_w);
                    }
                    let pixel = (b * w.out_h + oy) * w.out_w + ox;
                    let same = ox > 0
                        && cols.iter().zip(&previous).all(|(c, &p)| c.is_some() == p)
                        && segments.last().is_some();
                    if same {
                        if let Some(last) = segments.last_mut() {
                            let last: &mut DwSegment = last;
                            last.count += 1;
                        }
                        continue;
                    }
                    for (p, c) in previous.iter_mut().zip(&cols) {
                        *p = c.is_some();
                    }
                    segments.push(DwSegment {
                        first: pixel,
                        count: 1,
                    });
                    for row in &rows {
                        for col in &cols {
                            offsets.push(match (row, col) {
                                (Some(iy), Some(ix)) => {
                                    (((b * w.in_h + iy) * w.in_w + ix) * channels) as u32
                                }
                                _ => PAD,
                            });
                        }
                    }
                }
            }
        }
        row_segments.push(segments.len());
        debug_assert_eq!(offsets.len(), segments.len() * taps);
        Ok(DwPlan {
            window: *w,
            channels,
            step,
            segments,
            taps: offsets,
            row_segments,
        })
    }

    /// The window.
    pub fn window(&self) -> &Window2d {
        &self.window
    }

    /// Channels per pixel.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Taps per window.
    pub fn taps(&self) -> usize {
        self.window.taps()
    }

    /// Output rows over the batch (`batches * out_h`): the unit work is split in.
    pub fn rows(&self) -> usize {
        self.row_segments.len() - 1
    }

    /// Elements of one output row (`out_w * channels`).
    pub fn row_len(&self) -> usize {
        self.window.out_w * self.channels
    }

    /// Input elements the plan reads from.
    pub fn input_len(&self) -> usize {
        self.window.input_pixels() * self.channels
    }

    /// Output elements it writes.
    pub fn output_len(&self) -> usize {
        self.window.output_pixels() * self.channels
    }

    /// Elements the taps advance by from one output pixel to the next within a segment.
    pub fn step(&self) -> usize {
        self.step
    }

    /// The segments of output rows `rows`, with their tap offsets.
    pub fn segments(
        &self,
        rows: Range<usize>,
    ) -> Result<impl Iterator<Item = (DwSegment, &[u32])>, LinalgError> {
        if rows.start > rows.end || rows.end > self.rows() {
            return Err(LinalgError::mismatch(format!(
                "rows {rows:?} beyond the {} output rows",
                self.rows()
            )));
        }
        let range = self.row_segments[rows.start]..self.row_segments[rows.end];
        let taps = self.taps();
        Ok(self.segments[range.clone()]
            .iter()
            .zip(self.taps[range.start * taps..range.end * taps].chunks_exact(taps))
            .map(|(s, t)| (*s, t)))
    }

    /// Checks that `rows` are valid and `input`/`out` have the planned sizes; returns the
    /// pixel the output slice starts at.
    fn check_run(
        &self,
        input: usize,
        rows: &Range<usize>,
        out: usize,
    ) -> Result<usize, LinalgError> {
        if input != self.input_len() {
            return Err(LinalgError::mismatch(format!(
                "depthwise input has {input} elements, expected {}",
                self.input_len()
            )));
        }
        if rows.start > rows.end || rows.end > self.rows() {
            return Err(LinalgError::mismatch("rows beyond the output"));
        }
        if out != (rows.end - rows.start) * self.row_len() {
            return Err(LinalgError::mismatch(format!(
                "depthwise output slice has {out} elements, expected {}",
                (rows.end - rows.start) * self.row_len()
            )));
        }
        Ok(rows.start * self.window.out_w)
    }
}

/// One micro-kernel call: `pixels` output pixels of one segment, every channel.
///
/// Pixel `p`, tap `t` reads `channels` elements of `input` from `taps[t] + p * step`, or of
/// `zero` when `taps[t]` is [`PAD`]. The output holds the pixels' channels consecutively.
#[derive(Debug, Clone, Copy)]
pub struct DwTile<'a, X, W, B> {
    /// The input elements.
    pub input: &'a [X],
    /// What padding taps read: at least `channels` elements.
    pub zero: &'a [X],
    /// Offsets of the first pixel's taps (or [`PAD`]).
    pub taps: &'a [u32],
    /// Elements the taps advance by per pixel.
    pub step: usize,
    /// Pixels to compute (at least 1).
    pub pixels: usize,
    /// Channels per pixel.
    pub channels: usize,
    /// Packed weights, every block.
    pub weights: &'a [W],
    /// Per-channel bias, padded to whole blocks.
    pub bias: &'a [B],
}

impl<X, W, B> DwTile<'_, X, W, B> {
    /// Checks everything a kernel with `cr` channels per block and `packed_taps` packed tap
    /// slots per block relies on: every tap of every
    /// pixel inside `input`, the zero row, the packed operands and `out_len` output elements.
    pub fn check(&self, cr: usize, packed_taps: usize, out_len: usize) -> Result<(), LinalgError> {
        let bad = |what: &str| Err(LinalgError::mismatch(format!("depthwise tile: {what}")));
        if self.pixels == 0 || self.channels == 0 || self.taps.is_empty() || cr == 0 {
            return bad("empty tile");
        }
        if self.zero.len() < self.channels {
            return bad("zero row too short");
        }
        let Some(last) = (self.pixels - 1).checked_mul(self.step) else {
            return bad("pixel step overflows");
        };
        for &t in self.taps {
            if t != PAD
                && (t as usize)
                    .checked_add(last)
                    .and_then(|v| v.checked_add(self.channels))
                    .is_none_or(|end| end > self.input.len())
            {
                return bad("a tap runs past the input");
            }
        }
        let blocks = self.channels.div_ceil(cr);
        let packed = blocks
            .checked_mul(cr)
            .and_then(|v| v.checked_mul(packed_taps));
        if packed.is_none_or(|len| self.weights.len() < len) || self.bias.len() < blocks * cr {
            return bad("packed weights or bias too short");
        }
        if self
            .pixels
            .checked_mul(self.channels)
            .is_none_or(|n| n > out_len)
        {
            return bad("output too short");
        }
        Ok(())
    }
}

/// Identifies a depthwise micro-kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DwUkernelInfo {
    /// The instruction set it needs.
    pub isa: Isa,
    /// A name for profiles and test messages.
    pub name: &'static str,
    /// Channels per packed block.
    pub cr: usize,
    /// The tap count it is specialised for (its taps are unrolled), 0 for any.
    pub taps: usize,
}

// ---------------------------------------------------------------------------------------------
// Float.

/// The signature of a float depthwise micro-kernel (checks the tile first).
pub type F32DwFn = fn(&DwTile<'_, f32, f32, f32>, F32Clamp, &mut [f32]) -> Result<(), LinalgError>;

/// A float depthwise micro-kernel; only this crate makes them, for instruction sets the CPU
/// supports.
#[derive(Debug, Clone, Copy)]
pub struct F32DwUkernel {
    info: DwUkernelInfo,
    run: F32DwFn,
}

impl F32DwUkernel {
    pub(crate) const fn new(info: DwUkernelInfo, run: F32DwFn) -> Self {
        F32DwUkernel { info, run }
    }

    /// Its instruction set, block and specialisation.
    pub fn info(&self) -> DwUkernelInfo {
        self.info
    }

    /// Every float depthwise kernel this CPU can run, generic ones first.
    pub fn all() -> Vec<F32DwUkernel> {
        let mut all = generic::depthwise::F32_UKERNELS.to_vec();
        #[cfg(target_arch = "x86_64")]
        all.extend(crate::x86_64::f32_dw_ukernels());
        all.retain(|k| k.info.isa.is_supported());
        all
    }

    /// The kernel to use on `isa` (or the best set below it this CPU supports) for `taps` taps
    /// and `channels` channels.
    pub fn select(isa: Isa, taps: usize, channels: usize) -> F32DwUkernel {
        select(F32DwUkernel::all(), |k| k.info, isa, taps, channels)
            .unwrap_or(generic::depthwise::F32_UKERNELS[0])
    }
}

/// Picks, among the best instruction set's kernels for `taps` (a specialised one first), the
/// one wasting the fewest padded channels, then the widest.
fn select<K: Copy>(
    all: Vec<K>,
    info: impl Fn(&K) -> DwUkernelInfo,
    isa: Isa,
    taps: usize,
    channels: usize,
) -> Option<K> {
    let usable: Vec<K> = all
        .into_iter()
        .filter(|k| {
            let i = info(k);
            i.isa <= isa && (i.taps == 0 || i.taps == taps)
        })
        .collect();
    let best = usable.iter().map(|k| info(k).isa).max()?;
    usable
        .into_iter()
        .filter(|k| info(k).isa == best)
        .min_by_key(|k| {
            let i = info(k);
            (
                i.taps != taps,
                channels.next_multiple_of(i.cr) - channels,
                usize::MAX - i.cr,
            )
        })
}

/// A float depthwise convolution (depth multiplier 1) with packed weights:
/// `out = clamp(bias + sum_t x_t * w_t)` per channel.
#[derive(Debug, Clone)]
pub struct PackedF32Depthwise {
    ukernel: F32DwUkernel,
    plan: DwPlan,
    weights: Vec<f32>,
    bias: Vec<f32>,
    zero: Vec<f32>,
    clamp: F32Clamp,
}

impl PackedF32Depthwise {
    /// Packs `weights` (`[taps][channels]`, TFLite's `[1, h, w, channels]` filter) and `bias`
    /// for the best kernel of `isa`.
    pub fn new(
        isa: Isa,
        plan: DwPlan,
        weights: &[f32],
        bias: Option<&[f32]>,
        clamp: F32Clamp,
    ) -> Result<Self, LinalgError> {
        let ukernel = F32DwUkernel::select(isa, plan.taps(), plan.channels());
        PackedF32Depthwise::with_ukernel(ukernel, plan, weights, bias, clamp)
    }

    /// As [`PackedF32Depthwise::new`] with a given kernel (tests and benchmarks).
    pub fn with_ukernel(
        ukernel: F32DwUkernel,
        plan: DwPlan,
        weights: &[f32],
        bias: Option<&[f32]>,
        clamp: F32Clamp,
    ) -> Result<Self, LinalgError> {
        let (c, ks, cr) = (plan.channels(), plan.taps(), ukernel.info.cr);
        if ukernel.info.taps != 0 && ukernel.info.taps != ks {
            return Err(LinalgError::mismatch(
                "kernel specialised for another tap count",
            ));
        }
        let packed = pack_taps(weights, ks, c, cr, |w| w)?;
        let bias = padded_bias(bias, c, cr, |b| b)?;
        Ok(PackedF32Depthwise {
            ukernel,
            zero: vec![0.0; c],
            plan,
            weights: packed,
            bias,
            clamp,
        })
    }

    /// The plan.
    pub fn plan(&self) -> &DwPlan {
        &self.plan
    }

    /// The micro-kernel it runs.
    pub fn ukernel(&self) -> DwUkernelInfo {
        self.ukernel.info
    }

    /// Computes output rows `rows` (see [`DwPlan::rows`]) into `out`, which holds exactly those
    /// rows.
    pub fn run(
        &self,
        input: &[f32],
        rows: Range<usize>,
        out: &mut [f32],
    ) -> Result<(), LinalgError> {
        let base = self.plan.check_run(input.len(), &rows, out.len())?;
        let c = self.plan.channels;
        for (segment, taps) in self.plan.segments(rows)? {
            let start = (segment.first - base) * c;
            let tile = DwTile {
                input,
                zero: &self.zero,
                taps,
                step: self.plan.step,
                pixels: segment.count,
                channels: c,
                weights: &self.weights,
                bias: &self.bias,
            };
            let out = out
                .get_mut(start..start + segment.count * c)
                .ok_or_else(|| LinalgError::mismatch("output too short"))?;
            (self.ukernel.run)(&tile, self.clamp, out)?;
        }
        Ok(())
    }
}

/// Packs `[ks][c]` weights into `[block][ks][cr]`, converting with `convert`; padding is zero.
fn pack_taps<S: Copy, W: Copy + Default>(
    weights: &[S],
    ks: usize,
    c: usize,
    cr: usize,
    convert: impl Fn(S) -> W,
) -> Result<Vec<W>, LinalgError> {
    if ks.checked_mul(c) != Some(weights.len()) {
        return Err(LinalgError::mismatch(format!(
            "{} depthwise weights for {ks} taps x {c} channels",
            weights.len()
        )));
    }
    let blocks = c.div_ceil(cr);
    let len = blocks
        .checked_mul(cr)
        .and_then(|v| v.checked_mul(ks))
        .ok_or_else(|| LinalgError::too_large("packed depthwise weights"))?;
    let mut packed = Vec::with_capacity(len);
    for block in 0..blocks {
        for t in 0..ks {
            for ch in block * cr..(block + 1) * cr {
                packed.push(if ch < c {
                    convert(weights[t * c + ch])
                } else {
                    W::default()
                });
            }
        }
    }
    Ok(packed)
}

/// The bias (zero when absent) converted and padded to whole blocks of `cr`.
fn padded_bias<S: Copy, B: Copy + Default>(
    bias: Option<&[S]>,
    c: usize,
    cr: usize,
    convert: impl Fn(S) -> B,
) -> Result<Vec<B>, LinalgError> {
    let mut out = match bias {
        Some(b) if b.len() == c => b.iter().map(|&v| convert(v)).collect(),
        Some(b) => {
            return Err(LinalgError::mismatch(format!(
                "{} bias values for {c} channels",
                b.len()
            )));
        }
        None => vec![B::default(); c],
    };
    out.resize(c.next_multiple_of(cr), B::default());
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// 8-bit integers.

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
        let shifted = if self.left >= 32 {
            0
        } else {
            x.wrapping_shl(self.left as u32)
        };
        let high = ((i64::from(shifted) * i64::from(self.multiplier) + (1 << 30)) >> 31) as i32;
        let mask = (1i32 << self.right).wrapping_sub(1);
        let remainder = high & mask;
        let threshold = (mask >> 1) + i32::from(high < 0);
        (high >> self.right) + i32::from(remainder > threshold)
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

/// The output stage of an 8-bit kernel, per channel padded to whole blocks: `clamp(requant(acc)
/// + zero_point, min, max)`, stored as `i8` (`signed`) or `u8`.
#[derive(Debug, Clone, Copy)]
pub struct Q8OutputStage<'a> {
    /// Multipliers.
    pub multiplier: &'a [i32],
    /// Left shifts.
    pub left: &'a [i32],
    /// Right shifts.
    pub right: &'a [i32],
    /// The output zero point.
    pub zero_point: i32,
    /// Lowest output value (the fused activation's, within the type's range).
    pub min: i32,
    /// Highest output value.
    pub max: i32,
    /// Input and output are `i8` (else `u8`).
    pub signed: bool,
}

impl Q8OutputStage<'_> {
    /// The output value of accumulator `acc` of channel `c` (`c` within the padded arrays).
    #[inline]
    pub fn apply(&self, acc: i32, c: usize) -> u8 {
        let r = ChannelRequant {
            multiplier: self.multiplier[c],
            left: self.left[c],
            right: self.right[c],
        };
        r.apply(acc)
            .wrapping_add(self.zero_point)
            .clamp(self.min, self.max) as u8
    }
}

/// The packed form of an 8-bit kernel's (offset) weight `w` (`|w| <= 510`): `w` in the low 16
/// bits, zero in the high 16 (see the module documentation).
pub fn pack_q8_weight(w: i32) -> i32 {
    i32::from(w as i16 as u16)
}

/// The weight a packed 8-bit weight holds.
pub fn unpack_q8_weight(packed: i32) -> i32 {
    i32::from(packed as i16)
}

/// The signature of an 8-bit depthwise micro-kernel: input and output as bytes (`i8` or `u8`
/// per [`Q8OutputStage::signed`]), packed weights (see [`pack_q8_weight`]), int32 bias.
pub type Q8DwFn =
    fn(&DwTile<'_, u8, i32, i32>, &Q8OutputStage<'_>, &mut [u8]) -> Result<(), LinalgError>;

/// An 8-bit depthwise micro-kernel.
#[derive(Debug, Clone, Copy)]
pub struct Q8DwUkernel {
    info: DwUkernelInfo,
    run: Q8DwFn,
}

impl Q8DwUkernel {
    pub(crate) const fn new(info: DwUkernelInfo, run: Q8DwFn) -> Self {
        Q8DwUkernel { info, run }
    }

    /// Its instruction set, block and specialisation.
    pub fn info(&self) -> DwUkernelInfo {
        self.info
    }

    /// Every 8-bit depthwise kernel this CPU can run, generic ones first.
    pub fn all() -> Vec<Q8DwUkernel> {
        let mut all = generic::depthwise::Q8_UKERNELS.to_vec();
        #[cfg(target_arch = "x86_64")]
        all.extend(crate::x86_64::q8_dw_ukernels());
        all.retain(|k| k.info.isa.is_supported());
        all
    }

    /// The kernel to use on `isa` for `taps` taps and `channels` channels.
    pub fn select(isa: Isa, taps: usize, channels: usize) -> Q8DwUkernel {
        select(Q8DwUkernel::all(), |k| k.info, isa, taps, channels)
            .unwrap_or(generic::depthwise::Q8_UKERNELS[0])
    }
}

/// The quantization of an 8-bit depthwise convolution.
#[derive(Debug, Clone)]
pub struct Q8DwParams<'a> {
    /// Input and output are `i8` (else `u8`).
    pub signed: bool,
    /// `-input_zero_point`.
    pub input_offset: i32,
    /// Added to every weight (`-weight_zero_point` for legacy uint8 weights, else 0).
    pub weight_offset: i32,
    /// One multiplier per channel (or one for all).
    pub multipliers: &'a [QuantizedMultiplier],
    /// The output zero point.
    pub output_zero_point: i32,
    /// The fused activation's range.
    pub min: i32,
    /// See `min`.
    pub max: i32,
}

/// An 8-bit depthwise convolution (depth multiplier 1) with packed weights, the input offset
/// folded into the bias and per-channel requantization.
#[derive(Debug, Clone)]
pub struct PackedQ8Depthwise {
    ukernel: Q8DwUkernel,
    plan: DwPlan,
    weights: Vec<i32>,
    bias: Vec<i32>,
    zero: Vec<u8>,
    multiplier: Vec<i32>,
    left: Vec<i32>,
    right: Vec<i32>,
    zero_point: i32,
    min: i32,
    max: i32,
    signed: bool,
}

impl PackedQ8Depthwise {
    /// Packs `weights` (`[taps][channels]` bytes, `i8` when `params.signed`, else `u8`) and
    /// `bias` for the best kernel of `isa`.
    pub fn new(
        isa: Isa,
        plan: DwPlan,
        weights: &[u8],
        bias: Option<&[i32]>,
        params: &Q8DwParams<'_>,
    ) -> Result<Self, LinalgError> {
        let ukernel = Q8DwUkernel::select(isa, plan.taps(), plan.channels());
        PackedQ8Depthwise::with_ukernel(ukernel, plan, weights, bias, params)
    }

    /// As [`PackedQ8Depthwise::new`] with a given kernel.
    pub fn with_ukernel(
        ukernel: Q8DwUkernel,
        plan: DwPlan,
        weights: &[u8],
        bias: Option<&[i32]>,
        params: &Q8DwParams<'_>,
    ) -> Result<Self, LinalgError> {
        let (c, ks, cr) = (plan.channels(), plan.taps(), ukernel.info.cr);
        if ukernel.info.taps != 0 && ukernel.info.taps != ks {
            return Err(LinalgError::mismatch(
                "kernel specialised for another tap count",
            ));
        }
        let (lo, hi) = if params.signed { (-128, 127) } else { (0, 255) };
        if params.min > params.max || params.min < lo || params.max > hi {
            return Err(LinalgError::InvalidParameter(format!(
                "output range {}..={} outside the type",
                params.min, params.max
            )));
        }
        let zero_input = -i64::from(params.input_offset);
        if !(i64::from(lo)..=i64::from(hi)).contains(&zero_input) {
            return Err(LinalgError::InvalidParameter(format!(
                "input zero point {zero_input} outside the type"
            )));
        }
        // |weight + offset| <= 510 fits the 16-bit half `vpmaddwd` multiplies.
        if !(-256..=256).contains(&params.weight_offset) {
            return Err(LinalgError::InvalidParameter(
                "weight offset beyond 256".into(),
            ));
        }
        let signed = params.signed;
        let weight = |w: u8| -> i32 {
            let v = if signed {
                i32::from(w as i8)
            } else {
                i32::from(w)
            };
            v + params.weight_offset
        };
        let packed = pack_taps(weights, ks, c, cr, |w| pack_q8_weight(weight(w)))?;
        let multipliers = match params.multipliers.len() {
            1 => vec![params.multipliers[0]; c],
            n if n == c => params.multipliers.to_vec(),
            n => {
                return Err(LinalgError::mismatch(format!(
                    "{n} multipliers for {c} channels"
                )));
            }
        };
        let mut bias = padded_bias(bias, c, cr, |b| b)?;
        for (ch, b) in bias.iter_mut().enumerate().take(c) {
            let sum = (0..ks).fold(0i32, |s, t| s.wrapping_add(weight(weights[t * c + ch])));
            *b = b.wrapping_add(sum.wrapping_mul(params.input_offset));
        }
        let requant = multipliers
            .iter()
            .map(|&m| ChannelRequant::new(m))
            .collect::<Result<Vec<_>, _>>()?;
        let per_channel = |f: fn(&ChannelRequant) -> i32| {
            let mut v: Vec<i32> = requant.iter().map(f).collect();
            v.resize(c.next_multiple_of(cr), 0);
            v
        };
        Ok(PackedQ8Depthwise {
            ukernel,
            zero: vec![zero_input as u8; c],
            plan,
            weights: packed,
            bias,
            multiplier: per_channel(|r| r.multiplier),
            left: per_channel(|r| r.left),
            right: per_channel(|r| r.right),
            zero_point: params.output_zero_point,
            min: params.min,
            max: params.max,
            signed,
        })
    }

    /// The plan.
    pub fn plan(&self) -> &DwPlan {
        &self.plan
    }

    /// The micro-kernel it runs.
    pub fn ukernel(&self) -> DwUkernelInfo {
        self.ukernel.info
    }

    /// Computes output rows `rows` into `out` (exactly those rows); bytes are `i8` or `u8` as
    /// prepared.
    pub fn run(&self, input: &[u8], rows: Range<usize>, out: &mut [u8]) -> Result<(), LinalgError> {
        let base = self.plan.check_run(input.len(), &rows, out.len())?;
        let c = self.plan.channels;
        let stage = Q8OutputStage {
            multiplier: &self.multiplier,
            left: &self.left,
            right: &self.right,
            zero_point: self.zero_point,
            min: self.min,
            max: self.max,
            signed: self.signed,
        };
        for (segment, taps) in self.plan.segments(rows)? {
            let start = (segment.first - base) * c;
            let tile = DwTile {
                input,
                zero: &self.zero,
                taps,
                step: self.plan.step,
                pixels: segment.count,
                channels: c,
                weights: &self.weights,
                bias: &self.bias,
            };
            let out = out
                .get_mut(start..start + segment.count * c)
                .ok_or_else(|| LinalgError::mismatch("output too short"))?;
            (self.ukernel.run)(&tile, &stage, out)?;
        }
        Ok(())
    }
}
