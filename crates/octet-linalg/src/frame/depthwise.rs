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

use octet_core::fixed_point::QuantizedMultiplier;

use crate::frame::gemm_f32::F32Clamp;
use crate::frame::requant::{FastChannel, FastLane, FastRequant};
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

impl DwUkernelInfo {
    /// Whether the kernel may run when `isa` is asked for, on a filter of `taps` taps.
    fn usable(&self, isa: Isa, taps: usize) -> bool {
        self.isa <= isa && (self.taps == 0 || self.taps == taps)
    }
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
    /// and `channels` channels: the widest SIMD kernel whose vectors divide the channels, if
    /// one does, else the best instruction set's. A last, masked block of channels costs more
    /// than the narrower vectors it saves (measured: 96x96x8 3x3, AVX2 30 µs against AVX-512
    /// 51 µs; 112x112x24, 111 µs against 137 µs; with 16 or 32 channels AVX-512 is faster).
    pub fn select(isa: Isa, taps: usize, channels: usize) -> F32DwUkernel {
        let all = F32DwUkernel::all();
        let exact = all
            .iter()
            .filter(|k| {
                let i = k.info;
                i.isa != Isa::Generic && i.usable(isa, taps) && channels.is_multiple_of(i.cr.max(1))
            })
            .max_by_key(|k| (k.info.cr, k.info.taps == taps, k.info.isa))
            .copied();
        exact
            .or_else(|| select(all, |k| k.info, isa, taps, channels))
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
        .filter(|k| info(k).usable(isa, taps))
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

pub use crate::frame::requant::ChannelRequant;

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

/// The signature of a 4-tap dot-product depthwise kernel: one segment (the tile's `weights`
/// and `bias` are unused, the packed operands are in the [`Dot4Pack`]).
pub(crate) type Q8Dot4Fn =
    fn(&DwTile<'_, u8, i32, i32>, &Dot4Pack, &mut [u8]) -> Result<(), LinalgError>;

/// How an 8-bit kernel wants its operands.
#[derive(Debug, Clone, Copy)]
enum Q8DwRun {
    /// Blocks of `cr` channels, [`pack_q8_weight`] weights, a [`Q8OutputStage`].
    Blocked(Q8DwFn),
    /// A [`Dot4Pack`]: four taps per `vpdpbusd`.
    Dot4(Q8Dot4Fn),
}

/// An 8-bit depthwise micro-kernel.
#[derive(Debug, Clone, Copy)]
pub struct Q8DwUkernel {
    info: DwUkernelInfo,
    run: Q8DwRun,
}

impl Q8DwUkernel {
    pub(crate) const fn new(info: DwUkernelInfo, run: Q8DwFn) -> Self {
        Q8DwUkernel {
            info,
            run: Q8DwRun::Blocked(run),
        }
    }

    pub(crate) const fn new_dot4(info: DwUkernelInfo, run: Q8Dot4Fn) -> Self {
        Q8DwUkernel {
            info,
            run: Q8DwRun::Dot4(run),
        }
    }

    /// Its instruction set, block and specialisation.
    pub fn info(&self) -> DwUkernelInfo {
        self.info
    }

    /// Whether it is a 4-tap dot-product kernel (int8 weights only; see [`Dot4Pack`]).
    pub fn is_dot4(&self) -> bool {
        matches!(self.run, Q8DwRun::Dot4(_))
    }

    /// Every 8-bit depthwise kernel this CPU can run, generic ones first.
    pub fn all() -> Vec<Q8DwUkernel> {
        let mut all = generic::depthwise::Q8_UKERNELS.to_vec();
        #[cfg(target_arch = "x86_64")]
        all.extend(crate::x86_64::q8_dw_ukernels());
        all.retain(|k| k.info.isa.is_supported());
        all
    }

    /// The channel-blocked kernel to use on `isa` for `taps` taps and `channels` channels.
    pub fn select(isa: Isa, taps: usize, channels: usize) -> Q8DwUkernel {
        let blocked = Q8DwUkernel::all()
            .into_iter()
            .filter(|k| !k.is_dot4())
            .collect();
        select(blocked, |k| k.info, isa, taps, channels)
            .unwrap_or(generic::depthwise::Q8_UKERNELS[0])
    }

    /// The kernel for a plan: a 4-tap dot-product kernel when `isa` has one and the plan suits
    /// it (consecutive output pixels read consecutive input pixels, or enough channels to fill
    /// its 64 lanes), else [`Q8DwUkernel::select`]'s.
    pub fn select_for(isa: Isa, plan: &DwPlan) -> Q8DwUkernel {
        let c = plan.channels();
        let runs = plan.step() == c;
        let dot4 = Q8DwUkernel::all()
            .into_iter()
            .filter(|k| k.is_dot4() && k.info.isa <= isa)
            .max_by_key(|k| k.info.isa);
        match dot4 {
            Some(k) if plan.taps() <= DOT4_MAX_TAPS && (runs || c >= 48) => k,
            _ => Q8DwUkernel::select(isa, plan.taps(), c),
        }
    }
}

/// The most taps the 4-tap dot-product kernels handle.
pub(crate) const DOT4_MAX_TAPS: usize = 64;

/// The operands of a 4-tap dot-product kernel (`vpdpbusd`: u8 inputs times i8 weights, four
/// taps summed per int32 lane).
///
/// Output elements are processed in chunks of 64 consecutive elements of a segment: when
/// consecutive pixels are one pixel apart in the input (`step == channels`), a segment's
/// elements form one run and every tap reads one run of the input; otherwise each pixel's
/// channels are a run of their own. Element `i` of a run is channel `i % channels`, so the
/// per-channel operands are laid out over `period = lcm(channels, 64)` elements and chunk `i /
/// 64` uses block `(i % period) / 64`.
///
/// A kernel loads the 64 input bytes of each of four taps and interleaves them with byte and word
/// unpacks: accumulator `k` (of 4) then holds, in dword `4 l + d`, the element `16 l + 4 k + d` of
/// the chunk, and the weights, bias and requantization parameters are stored in that order
/// ("accumulator order"); the saturating packs that narrow the four accumulators to bytes restore
/// the element order. int8 inputs are read as `x ^ 0x80` (`x + 128`, unsigned), which the packed
/// bias compensates exactly (modulo 2^32, as the reference's accumulator), together with the input
/// offset; a padding tap reads the input zero point, whose term that compensation cancels.
#[derive(Debug, Clone)]
pub struct Dot4Pack {
    /// `lcm(channels, 64)`.
    pub(crate) period: usize,
    /// Groups of four taps (`ceil(taps / 4)`); missing taps have zero weights.
    pub(crate) groups: usize,
    /// `[group][period / 64][4 accumulators][64]` int8 weights.
    pub(crate) weights: Vec<i8>,
    /// `[period]` biases in accumulator order, offsets folded in.
    pub(crate) bias: Vec<i32>,
    /// Exact requantization in accumulator order.
    pub(crate) multiplier: Vec<i32>,
    /// Left shifts.
    pub(crate) left: Vec<i32>,
    /// Right shifts.
    pub(crate) right: Vec<i32>,
    /// The checked float requantization in accumulator order, when it applies.
    pub(crate) fast: Option<Dot4Fast>,
    /// The byte a padding tap contributes (after the flip).
    pub(crate) zero: u8,
    /// Inputs and outputs are int8 (inputs flipped by `^ 0x80`); else uint8.
    pub(crate) signed: bool,
    /// The output zero point.
    pub(crate) zero_point: i32,
    /// Lower clamp.
    pub(crate) min: i32,
    /// Upper clamp.
    pub(crate) max: i32,
}

/// [`FastRequant`](crate::frame::requant::FastRequant) in accumulator order.
#[derive(Debug, Clone)]
pub(crate) struct Dot4Fast {
    pub(crate) scale: Vec<f32>,
    pub(crate) offset: Vec<f32>,
    pub(crate) offset_neg: Vec<f32>,
    pub(crate) threshold: Vec<i32>,
    pub(crate) window: f32,
}

/// The element of a 64-element chunk held by lane `lane` (0..64) of the accumulators taken in
/// order (accumulator `lane / 16`, dword `lane % 16`).
pub(crate) fn dot4_element(lane: usize) -> usize {
    let (k, dword) = (lane / 16, lane % 16);
    16 * (dword / 4) + 4 * k + dword % 4
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl Dot4Pack {
    /// Packs `weights` (`[taps][channels]`, already offset, each within `i8`), the bias and the
    /// requantization; `None` when a weight does not fit `i8`.
    #[allow(clippy::too_many_arguments)]
    fn new(
        ks: usize,
        c: usize,
        weights: &[i32],
        bias: &[i32],
        requant: &[ChannelRequant],
        multipliers: &[QuantizedMultiplier],
        params: &Q8DwParams<'_>,
    ) -> Result<Option<Self>, LinalgError> {
        if weights.iter().any(|&w| !(-128..=127).contains(&w)) || ks > DOT4_MAX_TAPS {
            return Ok(None);
        }
        let period = c / gcd(c, 64) * 64;
        let groups = ks.div_ceil(4);
        let blocks = period / 64;
        let len = groups
            .checked_mul(period)
            .and_then(|v| v.checked_mul(4))
            .ok_or_else(|| LinalgError::too_large("packed depthwise weights"))?;
        let mut packed = vec![0i8; len];
        for g in 0..groups {
            for j in 0..blocks {
                for lane in 0..64 {
                    let ch = (64 * j + dot4_element(lane)) % c;
                    for b in 0..4 {
                        let t = 4 * g + b;
                        if t < ks {
                            let (k, dword) = (lane / 16, lane % 16);
                            packed[((g * blocks + j) * 4 + k) * 64 + 4 * dword + b] =
                                weights[t * c + ch] as i8;
                        }
                    }
                }
            }
        }
        // acc = sum w (x' ) with x' = x + 128 (int8) or x (uint8); the reference is
        // sum w (x + input_offset) + bias.
        let flip = if params.signed { 128 } else { 0 };
        let per_lane = |f: &dyn Fn(usize) -> i32| -> Vec<i32> {
            (0..period)
                .map(|i| f((64 * (i / 64) + dot4_element(i % 64)) % c))
                .collect()
        };
        let folded: Vec<i32> = (0..c)
            .map(|ch| {
                let sum = (0..ks).fold(0i32, |s, t| s.wrapping_add(weights[t * c + ch]));
                bias[ch].wrapping_add(sum.wrapping_mul(params.input_offset - flip))
            })
            .collect();
        let bias_lanes = per_lane(&|ch| folded[ch]);
        let fast_channels: Vec<FastChannel> = (0..c)
            .map(|ch| {
                let reach: u64 = (0..ks)
                    .map(|t| u64::from(weights[t * c + ch].unsigned_abs()) * 255)
                    .sum();
                FastChannel {
                    multiplier: multipliers[ch],
                    acc_bound: reach + u64::from(bias[ch].unsigned_abs()),
                }
            })
            .collect();
        let fast = FastRequant::new(
            &fast_channels,
            params.output_zero_point,
            params.min,
            params.max,
        )
        .map(|f| {
            let lanes = |g: &dyn Fn(&FastLane) -> f32| -> Vec<f32> {
                (0..period)
                    .map(|i| g(&f.lanes[(64 * (i / 64) + dot4_element(i % 64)) % c]))
                    .collect()
            };
            Dot4Fast {
                scale: lanes(&|l| l.scale),
                offset: lanes(&|l| l.offset),
                offset_neg: lanes(&|l| l.offset_neg),
                threshold: per_lane(&|ch| f.lanes[ch].threshold),
                window: f.window,
            }
        });
        let zero_input = (-params.input_offset) as u8;
        Ok(Some(Dot4Pack {
            period,
            groups,
            weights: packed,
            bias: bias_lanes,
            multiplier: per_lane(&|ch| requant[ch].multiplier),
            left: per_lane(&|ch| requant[ch].left),
            right: per_lane(&|ch| requant[ch].right),
            fast,
            zero: if params.signed {
                zero_input ^ 0x80
            } else {
                zero_input
            },
            signed: params.signed,
            zero_point: params.output_zero_point,
            min: params.min,
            max: params.max,
        }))
    }

    /// Checks what a kernel relies on for a segment of `tile` (taps inside the input, at most
    /// `4 * groups` of them, `out` holding the segment) and for the packed operands.
    pub(crate) fn check(
        &self,
        tile: &DwTile<'_, u8, i32, i32>,
        out_len: usize,
    ) -> Result<(), LinalgError> {
        let bad = |what: &str| {
            Err(LinalgError::mismatch(format!(
                "depthwise dot4 tile: {what}"
            )))
        };
        let c = tile.channels;
        if tile.pixels == 0 || c == 0 || tile.taps.is_empty() {
            return bad("empty tile");
        }
        if tile.taps.len() > 4 * self.groups || tile.taps.len() > DOT4_MAX_TAPS {
            return bad("too many taps");
        }
        if self.period == 0 || !self.period.is_multiple_of(64) || !self.period.is_multiple_of(c) {
            return bad("period");
        }
        let Some(last) = (tile.pixels - 1).checked_mul(tile.step) else {
            return bad("pixel step overflows");
        };
        for &t in tile.taps {
            if t != PAD
                && (t as usize)
                    .checked_add(last)
                    .and_then(|v| v.checked_add(c))
                    .is_none_or(|end| end > tile.input.len())
            {
                return bad("a tap runs past the input");
            }
        }
        let p = self.period;
        if self.weights.len() < self.groups * p * 4
            || self.bias.len() < p
            || self.multiplier.len() < p
            || self.left.len() < p
            || self.right.len() < p
            || self.fast.as_ref().is_some_and(|f| {
                f.scale.len() < p
                    || f.offset.len() < p
                    || f.offset_neg.len() < p
                    || f.threshold.len() < p
            })
        {
            return bad("packed operands too short");
        }
        if tile.pixels.checked_mul(c).is_none_or(|n| n > out_len) {
            return bad("output too short");
        }
        Ok(())
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
    packed: Q8Packed,
}

/// The operands in the chosen kernel's layout.
#[derive(Debug, Clone)]
enum Q8Packed {
    Blocked {
        run: Q8DwFn,
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
    },
    Dot4 {
        run: Q8Dot4Fn,
        pack: Dot4Pack,
    },
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
        let ukernel = Q8DwUkernel::select_for(isa, &plan);
        PackedQ8Depthwise::with_ukernel(ukernel, plan, weights, bias, params)
    }

    /// As [`PackedQ8Depthwise::new`] with a given kernel. A 4-tap dot-product kernel whose
    /// weights do not fit `i8` (legacy uint8 weights with a zero point) is replaced by the
    /// channel-blocked kernel of its instruction set.
    pub fn with_ukernel(
        ukernel: Q8DwUkernel,
        plan: DwPlan,
        weights: &[u8],
        bias: Option<&[i32]>,
        params: &Q8DwParams<'_>,
    ) -> Result<Self, LinalgError> {
        let (c, ks) = (plan.channels(), plan.taps());
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
        if ks.checked_mul(c) != Some(weights.len()) {
            return Err(LinalgError::mismatch(format!(
                "{} depthwise weights for {ks} taps x {c} channels",
                weights.len()
            )));
        }
        let signed = params.signed;
        let offset_weights: Vec<i32> = weights
            .iter()
            .map(|&w| {
                let v = if signed {
                    i32::from(w as i8)
                } else {
                    i32::from(w)
                };
                v + params.weight_offset
            })
            .collect();
        let multipliers = match params.multipliers.len() {
            1 => vec![params.multipliers[0]; c],
            n if n == c => params.multipliers.to_vec(),
            n => {
                return Err(LinalgError::mismatch(format!(
                    "{n} multipliers for {c} channels"
                )));
            }
        };
        let requant = multipliers
            .iter()
            .map(|&m| ChannelRequant::new(m))
            .collect::<Result<Vec<_>, _>>()?;
        let raw_bias = padded_bias(bias, c, 1, |b| b)?;
        let mut ukernel = ukernel;
        if let Q8DwRun::Dot4(run) = ukernel.run {
            match Dot4Pack::new(
                ks,
                c,
                &offset_weights,
                &raw_bias,
                &requant,
                &multipliers,
                params,
            )? {
                Some(pack) => {
                    return Ok(PackedQ8Depthwise {
                        ukernel,
                        plan,
                        packed: Q8Packed::Dot4 { run, pack },
                    });
                }
                None => ukernel = Q8DwUkernel::select(ukernel.info.isa, ks, c),
            }
        }
        let Q8DwRun::Blocked(run) = ukernel.run else {
            return Err(LinalgError::mismatch("no channel-blocked kernel"));
        };
        let cr = ukernel.info.cr;
        let packed = pack_taps(&offset_weights, ks, c, cr, pack_q8_weight)?;
        let mut bias = padded_bias(bias, c, cr, |b| b)?;
        for (ch, b) in bias.iter_mut().enumerate().take(c) {
            let sum = (0..ks).fold(0i32, |s, t| s.wrapping_add(offset_weights[t * c + ch]));
            *b = b.wrapping_add(sum.wrapping_mul(params.input_offset));
        }
        let per_channel = |f: fn(&ChannelRequant) -> i32| {
            let mut v: Vec<i32> = requant.iter().map(f).collect();
            v.resize(c.next_multiple_of(cr), 0);
            v
        };
        Ok(PackedQ8Depthwise {
            ukernel,
            plan,
            packed: Q8Packed::Blocked {
                run,
                zero: vec![zero_input as u8; c],
                weights: packed,
                bias,
                multiplier: per_channel(|r| r.multiplier),
                left: per_channel(|r| r.left),
                right: per_channel(|r| r.right),
                zero_point: params.output_zero_point,
                min: params.min,
                max: params.max,
                signed,
            },
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

    /// Whether its output stage uses the checked float requantization
    /// ([`FastRequant`]) rather than only the integer one.
    pub fn fast_requant(&self) -> bool {
        matches!(&self.packed, Q8Packed::Dot4 { pack, .. } if pack.fast.is_some())
    }

    /// Computes output rows `rows` into `out` (exactly those rows); bytes are `i8` or `u8` as
    /// prepared.
    pub fn run(&self, input: &[u8], rows: Range<usize>, out: &mut [u8]) -> Result<(), LinalgError> {
        let base = self.plan.check_run(input.len(), &rows, out.len())?;
        let c = self.plan.channels;
        let no_zero: &[u8] = &[];
        let (zero, weights, bias): (&[u8], &[i32], &[i32]) = match &self.packed {
            Q8Packed::Blocked {
                zero,
                weights,
                bias,
                ..
            } => (zero, weights, bias),
            Q8Packed::Dot4 { .. } => (no_zero, &[], &[]),
        };
        let stage = match &self.packed {
            Q8Packed::Blocked {
                multiplier,
                left,
                right,
                zero_point,
                min,
                max,
                signed,
                ..
            } => Some(Q8OutputStage {
                multiplier,
                left,
                right,
                zero_point: *zero_point,
                min: *min,
                max: *max,
                signed: *signed,
            }),
            Q8Packed::Dot4 { .. } => None,
        };
        for (segment, taps) in self.plan.segments(rows)? {
            let start = (segment.first - base) * c;
            let tile = DwTile {
                input,
                zero,
                taps,
                step: self.plan.step,
                pixels: segment.count,
                channels: c,
                weights,
                bias,
            };
            let out = out
                .get_mut(start..start + segment.count * c)
                .ok_or_else(|| LinalgError::mismatch("output too short"))?;
            match (&self.packed, &stage) {
                (Q8Packed::Blocked { run, .. }, Some(stage)) => run(&tile, stage, out)?,
                (Q8Packed::Dot4 { run, pack }, _) => run(&tile, pack, out)?,
                _ => return Err(LinalgError::mismatch("depthwise output stage")),
            }
        }
        Ok(())
    }
}
