//! What the convolution and matrix kernels (CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV,
//! FULLY_CONNECTED, BATCH_MATMUL) share: the one quantized element trait, the one weights
//! source, the one float clamp and the one requantization type, and the drivers that run
//! octet-linalg's packed GEMMs (float and quantized, grouped or not) with the work split over
//! the interpreter's threads.

use std::ops::Range;

use bytemuck::Pod;
use octet_core::fixed_point::{
    QuantizedMultiplier, multiply_by_quantized_multiplier, multiply_by_quantized_multiplier_i64,
    requantize_double,
};
use octet_linalg::frame::gemm::{ASource, PaddedImage, RowOffsets};
use octet_linalg::frame::gemm_f32::{F32Clamp, F32Epilogue, PackedF32Gemm};
use octet_linalg::frame::gemm_q::{
    PackedQGemm, QConverted, QElement, QGemmSpec, QInputFormat, QType, QWeights, Requant,
};
use octet_linalg::frame::window::{Indirection, PAD, Window2d};
use octet_linalg::threads::MAX_CHUNKS;
use octet_linalg::{Isa, LinalgError, Threads};

use crate::RuntimeError;
use crate::io::Inputs;

// ---------------------------------------------------------------------------------------------
// Elements, weights, clamps, requantization.

/// A quantized element type read as `i32` (activations and weights): `i8`, `u8`, `i16`.
pub(crate) trait QElem: Pod + Send + Sync + QElement {
    /// The value as `i32`.
    fn to_i32(self) -> i32;
    /// Converts a value already clamped to the type's range (truncating otherwise, as C++'s
    /// `static_cast` does).
    fn from_clamped(v: i32) -> Self;
}

impl QElem for i8 {
    fn to_i32(self) -> i32 {
        i32::from(self)
    }
    fn from_clamped(v: i32) -> Self {
        v as i8
    }
}

impl QElem for u8 {
    fn to_i32(self) -> i32 {
        i32::from(self)
    }
    fn from_clamped(v: i32) -> Self {
        v as u8
    }
}

impl QElem for i16 {
    fn to_i32(self) -> i32 {
        i32::from(self)
    }
    fn from_clamped(v: i32) -> Self {
        v as i16
    }
}

/// Where a kernel finds its weights: an operator input (constant or computed), or a copy
/// prepared at build time (int4 / int2 weights unpacked to one byte per element, transposed
/// constants).
pub(crate) enum Weights<W> {
    /// Input `i`, as stored.
    Input(usize),
    /// Prepared at build time.
    Owned(Vec<W>),
}

impl<W: Pod> Weights<W> {
    /// The weights while the kernel runs.
    pub(crate) fn get<'a>(&'a self, inputs: &'a Inputs<'_>) -> Result<&'a [W], RuntimeError> {
        match self {
            Weights::Input(i) => inputs.get::<W>(*i),
            Weights::Owned(v) => Ok(v),
        }
    }
}

/// `ActivationFunctionWithMinMax` for floats: `std::min(std::max(x, lo), hi)`, NaN passing
/// through as in C++.
pub(crate) fn clamp_f32(x: f32, lo: f32, hi: f32) -> f32 {
    let x = if x < lo { lo } else { x };
    if hi < x { hi } else { x }
}

/// How an accumulator is scaled back to the output's scale, one entry per output channel.
#[derive(Debug, Clone)]
pub(crate) enum Scales {
    /// TFLite's fixed-point `MultiplyByQuantizedMultiplier` (conv kernels, BATCH_MATMUL,
    /// int16-weight FULLY_CONNECTED).
    Fixed(Vec<QuantizedMultiplier>),
    /// The reference FULLY_CONNECTED kernels' double-precision rounding
    /// ([`requantize_double`]).
    Double(Vec<f64>),
}

/// How an integer accumulator becomes an output element: per-channel scaling, the output zero
/// point and the clamp of the fused activation.
#[derive(Debug, Clone)]
pub(crate) struct Requantize {
    /// One scale per output channel (the same one repeated for per-tensor scales).
    pub scales: Scales,
    /// Added after scaling.
    pub output_offset: i32,
    /// Lower clamp.
    pub act_min: i32,
    /// Upper clamp.
    pub act_max: i32,
}

impl Requantize {
    /// Requantizes the accumulator (bias included) of output channel `c`; `c` must be a valid
    /// channel (the scales are sized at build time).
    pub(crate) fn apply<A: Accumulator>(&self, acc: A, c: usize) -> i32 {
        self.scale(acc, c)
            .wrapping_add(self.output_offset)
            .max(self.act_min)
            .min(self.act_max)
    }

    /// The scaled accumulator of channel `c`, before the zero point and the clamp.
    pub(crate) fn scale<A: Accumulator>(&self, acc: A, c: usize) -> i32 {
        match &self.scales {
            Scales::Fixed(m) => acc.scale(m[c]),
            Scales::Double(s) => acc.scale_double(s[c]),
        }
    }

    /// The scales of channels `channels` as a linalg output stage reads them.
    fn linalg(&self, channels: Range<usize>) -> Requant<'_> {
        match &self.scales {
            Scales::Fixed(m) => Requant::Fixed(&m[channels]),
            Scales::Double(s) => Requant::Double(&s[channels]),
        }
    }

    /// The number of channels.
    fn channels(&self) -> usize {
        match &self.scales {
            Scales::Fixed(m) => m.len(),
            Scales::Double(s) => s.len(),
        }
    }
}

/// An integer accumulator: `int32_t` (8-bit kernels, and int16 kernels with an int32 bias) or
/// `int64_t` (int16 kernels with an int64 bias). Arithmetic wraps where TFLite's would be
/// undefined, so nothing panics.
pub(crate) trait Accumulator: Copy + Default + Send + Sync {
    /// The bias element type that goes with this accumulator.
    type Bias: Pod + Send + Sync;
    /// `self + a * b`.
    fn mac(self, a: i32, b: i32) -> Self;
    /// `self + bias`.
    fn add_bias(self, bias: Self::Bias) -> Self;
    /// TFLite's `MultiplyByQuantizedMultiplier` overload for this width.
    fn scale(self, m: QuantizedMultiplier) -> i32;
    /// The double-precision requantization of the reference FULLY_CONNECTED kernels.
    fn scale_double(self, scale: f64) -> i32;
}

impl Accumulator for i32 {
    type Bias = i32;
    fn mac(self, a: i32, b: i32) -> Self {
        self.wrapping_add(a.wrapping_mul(b))
    }
    fn add_bias(self, bias: i32) -> Self {
        self.wrapping_add(bias)
    }
    fn scale(self, m: QuantizedMultiplier) -> i32 {
        multiply_by_quantized_multiplier(self, m)
    }
    fn scale_double(self, scale: f64) -> i32 {
        requantize_double(f64::from(self), scale)
    }
}

impl Accumulator for i64 {
    type Bias = i64;
    fn mac(self, a: i32, b: i32) -> Self {
        self.wrapping_add(i64::from(a) * i64::from(b))
    }
    fn add_bias(self, bias: i64) -> Self {
        self.wrapping_add(bias)
    }
    fn scale(self, m: QuantizedMultiplier) -> i32 {
        multiply_by_quantized_multiplier_i64(self, m)
    }
    fn scale_double(self, scale: f64) -> i32 {
        requantize_double(self as f64, scale)
    }
}

// ---------------------------------------------------------------------------------------------
// GEMM drivers.

/// A linalg error while a kernel runs.
fn eval_error(e: LinalgError) -> RuntimeError {
    RuntimeError::eval(e.to_string())
}

/// Fewest multiply-adds worth handing to another thread: below this, waking a worker costs
/// more than the work.
const MIN_MACS_PER_CHUNK: usize = 1 << 16;

/// The shape of a (possibly grouped) GEMM over an NHWC input or a batch of rows:
/// `m` output rows, `groups` groups of `depth` input channels each producing `per_group`
/// output channels, every output row reading `taps` input pixels of `in_c` channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GemmShape {
    /// Output rows (pixels over the batch, or rows of a fully connected layer).
    pub m: usize,
    /// Input pixels (rows) over the batch.
    pub in_pixels: usize,
    /// Input channels per pixel (row length).
    pub in_c: usize,
    /// Groups.
    pub groups: usize,
    /// Input channels per group.
    pub depth: usize,
    /// Output channels per group.
    pub per_group: usize,
    /// Taps per output row.
    pub taps: usize,
}

impl GemmShape {
    /// A fully connected product: `m` rows of `depth` inputs, `units` outputs each.
    pub(crate) fn dense(m: usize, depth: usize, units: usize) -> Self {
        GemmShape {
            m,
            in_pixels: m,
            in_c: depth,
            groups: 1,
            depth,
            per_group: units,
            taps: 1,
        }
    }

    /// Output channels.
    pub(crate) fn out_c(&self) -> usize {
        self.groups * self.per_group
    }

    fn input_len(&self) -> usize {
        self.in_pixels * self.in_c
    }

    fn output_len(&self) -> usize {
        self.m * self.out_c()
    }
}

/// How a GEMM reads its input.
#[derive(Debug, Clone, Copy)]
pub(crate) enum InputLayout {
    /// Row `r` is input pixel (row) `r`: fully connected layers, pointwise convolutions.
    Dense,
    /// A convolution window: an indirection buffer gives every row's taps, padding taps read
    /// a zero row.
    Window(Window2d),
    /// A convolution window (one group, unit horizontal dilation) read from a copy of the
    /// input with its padding made explicit, each filter row one tap of `filter_w` pixels
    /// ([`PaddedImage`]): for convolutions with few input channels.
    MergedRows(Window2d),
    /// A transposed convolution (TRANSPOSE_CONV): `in_*` are the data input's sizes, `out_*`
    /// the output's, no dilation. Output pixel `(oy, ox)`'s tap `(fy, fx)` reads input pixel
    /// `((oy + pad_top - fy) / stride_h, (ox + pad_left - fx) / stride_w)` where both divisions
    /// are exact and land in the input, and a zero row otherwise: the gather form of TFLite's
    /// scatter.
    Transposed(Window2d),
}

impl InputLayout {
    /// The layout for a convolution over `window`: dense when pointwise, merged rows when
    /// `merge` and the window allows it, else an indirection.
    pub(crate) fn of_window(window: Window2d, merge: bool) -> Self {
        if window.is_pointwise() {
            InputLayout::Dense
        } else if merge && window.dilation_w == 1 && window.filter_w > 1 {
            InputLayout::MergedRows(window)
        } else {
            InputLayout::Window(window)
        }
    }
}

/// The padded image a merged-row GEMM reads, and the window of its taps (one per filter row,
/// never in the padding) over it.
fn merged_rows(w: &Window2d) -> (PaddedImage, Window2d) {
    let span = |out: usize, stride: usize, filter: usize, dilation: usize| {
        (out.max(1) - 1) * stride + (filter.max(1) - 1) * dilation + 1
    };
    let image = PaddedImage {
        batches: w.batches,
        height: w.in_h,
        width: w.in_w,
        top: w.pad_top,
        bottom: span(w.out_h, w.stride_h, w.filter_h, w.dilation_h)
            .saturating_sub(w.in_h + w.pad_top),
        left: w.pad_left,
        right: span(w.out_w, w.stride_w, w.filter_w, 1).saturating_sub(w.in_w + w.pad_left),
    };
    let taps = Window2d {
        in_h: image.padded_height(),
        in_w: image.padded_width(),
        filter_w: 1,
        dilation_w: 1,
        pad_top: 0,
        pad_left: 0,
        ..*w
    };
    (image, taps)
}

/// `[n][taps][filter_w][channels]` weights as `[n][taps][filter_w][stride]`, the padding
/// channels holding `fill`.
fn widen_channels<T: Copy>(weights: &[T], channels: usize, stride: usize, fill: T) -> Vec<T> {
    if stride == channels || channels == 0 {
        return weights.to_vec();
    }
    let mut out = Vec::with_capacity(weights.len() / channels * stride);
    for pixel in weights.chunks_exact(channels) {
        out.extend_from_slice(pixel);
        out.extend(std::iter::repeat_n(fill, stride - channels));
    }
    out
}

/// The offset table of a transposed convolution (see [`InputLayout::Transposed`]) over an
/// input whose pixels lie `pixel_stride` elements apart.
fn transposed_offsets(w: &Window2d, pixel_stride: usize) -> Result<Vec<u32>, LinalgError> {
    let too_large = || LinalgError::TooLarge("transposed convolution offsets".into());
    let len = w
        .output_pixels()
        .checked_mul(w.taps())
        .ok_or_else(too_large)?;
    w.input_pixels()
        .checked_mul(pixel_stride)
        .filter(|&n| n < PAD as usize)
        .ok_or_else(too_large)?;
    // The input coordinate tap `f` of output coordinate `o` reads, if any.
    let source = |o: usize, f: usize, pad: usize, stride: usize, size: usize| {
        (o + pad)
            .checked_sub(f)
            .filter(|t| t % stride.max(1) == 0)
            .map(|t| t / stride.max(1))
            .filter(|&i| i < size)
    };
    let mut offsets = Vec::with_capacity(len);
    for b in 0..w.batches {
        for oy in 0..w.out_h {
            for ox in 0..w.out_w {
                for fy in 0..w.filter_h {
                    let iy = source(oy, fy, w.pad_top, w.stride_h, w.in_h);
                    for fx in 0..w.filter_w {
                        let ix = source(ox, fx, w.pad_left, w.stride_w, w.in_w);
                        offsets.push(match (iy, ix) {
                            // Bounded by the input size checked above.
                            (Some(iy), Some(ix)) => {
                                (((b * w.in_h + iy) * w.in_w + ix) * pixel_stride) as u32
                            }
                            _ => PAD,
                        });
                    }
                }
            }
        }
    }
    Ok(offsets)
}

/// Where the A rows of a GEMM come from, as prepared.
enum GemmRows {
    /// Row `r` is input pixel `r`.
    Dense,
    /// Row `r` reads the taps the indirection gives.
    Indirect(Indirection),
    /// Rows read a padded copy of the input.
    Padded {
        image: PaddedImage,
        indirection: Indirection,
    },
    /// Row `r`'s taps start at `offsets[r * taps..]`.
    Table { taps: usize, offsets: Vec<u32> },
}

impl GemmRows {
    /// The rows of `layout` over an operand whose pixels lie `pixel_stride` elements apart.
    fn new(layout: &InputLayout, pixel_stride: usize) -> Result<Self, LinalgError> {
        Ok(match layout {
            InputLayout::Dense => GemmRows::Dense,
            InputLayout::Window(w) => GemmRows::Indirect(Indirection::new(w, pixel_stride)?),
            InputLayout::MergedRows(w) => {
                let (image, taps) = merged_rows(w);
                GemmRows::Padded {
                    image,
                    indirection: Indirection::new(&taps, pixel_stride)?,
                }
            }
            InputLayout::Transposed(w) => GemmRows::Table {
                taps: w.taps(),
                offsets: transposed_offsets(w, pixel_stride)?,
            },
        })
    }

    fn offsets(&self, pixel_stride: usize) -> RowOffsets<'_> {
        match self {
            GemmRows::Dense => RowOffsets::Dense {
                stride: pixel_stride,
            },
            GemmRows::Indirect(indirection) | GemmRows::Padded { indirection, .. } => {
                RowOffsets::Indirect(indirection)
            }
            GemmRows::Table { taps, offsets } => RowOffsets::Table {
                taps: *taps,
                offsets,
            },
        }
    }
}

/// Splits the output of a GEMM over the threads and calls `run(rows, columns, out)` for each
/// chunk: whole rows (a multiple of `mr`) when there are several rows, else blocks of `nr`
/// columns of the single row (`columns` is `None` for all columns). Every chunk holds at
/// least [`MIN_MACS_PER_CHUNK`] multiply-adds.
#[allow(clippy::too_many_arguments)]
fn split<T: Send>(
    threads: &Threads,
    shape: &GemmShape,
    mr: usize,
    nr: usize,
    out: &mut [T],
    run: impl Fn(Range<usize>, Option<Range<usize>>, &mut [T]) -> Result<(), LinalgError> + Sync + Send,
) -> Result<(), RuntimeError> {
    let out_c = shape.out_c();
    let macs_per_row = out_c
        .saturating_mul(shape.taps)
        .saturating_mul(shape.depth)
        .max(1);
    if shape.m == 1 && shape.groups == 1 && threads.count() > 1 {
        let blocks = out_c.div_ceil(nr);
        let macs_per_block = (nr * shape.taps * shape.depth).max(1);
        let min_blocks = MIN_MACS_PER_CHUNK.div_ceil(macs_per_block);
        let chunk = threads.chunk_units(blocks, min_blocks) * nr;
        return threads
            .for_each_chunk(out, chunk, |i, out| {
                let first = i * chunk;
                run(0..1, Some(first..first + out.len()), out)
            })
            .map_err(eval_error);
    }
    let min_rows = MIN_MACS_PER_CHUNK.div_ceil(macs_per_row).max(mr);
    let chunk_rows = threads
        .chunk_units(shape.m, min_rows)
        .next_multiple_of(mr.max(1));
    threads
        .for_each_chunk(out, chunk_rows * out_c, |i, out| {
            let first = i * chunk_rows;
            run(first..first + out.len() / out_c, None, out)
        })
        .map_err(eval_error)
}

/// The taps and elements per tap a GEMM packs its weights with for `layout`.
fn packed_taps(shape: &GemmShape, layout: &InputLayout, stride: usize) -> (usize, usize) {
    match layout {
        InputLayout::MergedRows(w) => (w.filter_h, w.filter_w * stride),
        _ => (shape.taps, shape.depth),
    }
}

/// A float GEMM, one packed operand per group: CONV_2D, FULLY_CONNECTED.
pub(crate) struct FloatGemm {
    shape: GemmShape,
    rows: GemmRows,
    gemms: Vec<PackedF32Gemm>,
    scratch_bytes: usize,
}

impl FloatGemm {
    /// Packs `weights` (`[out_c][taps][depth]`) and `bias` for the best kernels of `isa`.
    pub(crate) fn new(
        isa: Isa,
        shape: GemmShape,
        layout: InputLayout,
        weights: &[f32],
        bias: Option<&[f32]>,
        clamp: (f32, f32),
    ) -> Result<Self, LinalgError> {
        let per_weights = shape.per_group * shape.taps * shape.depth;
        let merged = matches!(layout, InputLayout::MergedRows(_));
        if weights.len() != per_weights * shape.groups
            || bias.is_some_and(|b| b.len() != shape.out_c())
            || (merged && (shape.groups != 1 || shape.depth != shape.in_c))
        {
            return Err(LinalgError::Mismatch("GEMM weights, bias or layout".into()));
        }
        let clamp = F32Clamp {
            min: clamp.0,
            max: clamp.1,
        };
        // Merged rows read [taps][filter_w * channels]: the same memory as the weights' layout.
        let (ks, kc) = packed_taps(&shape, &layout, shape.in_c);
        let gemms = (0..shape.groups)
            .map(|g| {
                let columns = g * shape.per_group..(g + 1) * shape.per_group;
                PackedF32Gemm::for_rows(
                    isa,
                    shape.m,
                    &weights[g * per_weights..(g + 1) * per_weights],
                    bias.map(|b| &b[columns]),
                    [shape.per_group, ks, kc],
                    clamp,
                )
            })
            .collect::<Result<_, _>>()?;
        let rows = GemmRows::new(&layout, shape.in_c)?;
        let scratch_bytes = match &rows {
            GemmRows::Padded { image, .. } => image
                .padded_pixels()
                .and_then(|p| p.checked_mul(shape.in_c * 4))
                .ok_or_else(|| LinalgError::TooLarge("padded image".into()))?,
            _ => 0,
        };
        Ok(FloatGemm {
            shape,
            rows,
            gemms,
            scratch_bytes,
        })
    }

    /// Scratch bytes [`FloatGemm::run`] needs (the padded copy of the input, if any).
    pub(crate) fn scratch_bytes(&self) -> usize {
        self.scratch_bytes
    }

    /// Computes the output of `input`.
    pub(crate) fn run(
        &self,
        input: &[f32],
        out: &mut [f32],
        scratch: &mut [u64],
        threads: &Threads,
    ) -> Result<(), RuntimeError> {
        self.run_fused(input, out, scratch, threads, F32Epilogue::None)
    }

    /// Computes the output of `input`, `epilogue` applied to it tile by tile (an
    /// [`F32Epilogue::Add`] operand covers the whole output; one group only).
    pub(crate) fn run_fused(
        &self,
        input: &[f32],
        out: &mut [f32],
        scratch: &mut [u64],
        threads: &Threads,
        epilogue: F32Epilogue<'_>,
    ) -> Result<(), RuntimeError> {
        if !matches!(epilogue, F32Epilogue::None) && self.gemms.len() != 1 {
            return Err(RuntimeError::eval("a fused output stage needs one group"));
        }
        if let F32Epilogue::Add { other, .. } | F32Epilogue::AddPrelu { other, .. } = epilogue {
            check_len("fused operand", other.len(), self.shape.output_len())?;
        }
        let s = &self.shape;
        check_len("input", input.len(), s.input_len())?;
        check_len("output", out.len(), s.output_len())?;
        let Some(first) = self.gemms.first() else {
            return Ok(());
        };
        let data = match &self.rows {
            GemmRows::Padded { image, .. } => {
                let padded: &mut [f32] = bytemuck::cast_slice_mut(scratch);
                let padded = padded
                    .get_mut(..self.scratch_bytes / 4)
                    .ok_or_else(|| RuntimeError::eval("scratch too short"))?;
                image
                    .fill(input, s.in_c, s.in_c, padded, 0.0, |x, y| {
                        y.copy_from_slice(x);
                        Ok(())
                    })
                    .map_err(eval_error)?;
                &*padded
            }
            _ => input,
        };
        let rows = self.rows.offsets(s.in_c);
        let out_c = s.out_c();
        split(
            threads,
            s,
            first.row_block(),
            first.column_block(),
            out,
            |range, columns, out| {
                for (g, gemm) in self.gemms.iter().enumerate() {
                    let a = ASource {
                        data: data
                            .get(g * s.depth..)
                            .ok_or_else(|| LinalgError::Mismatch("group".into()))?,
                        zero: gemm.zero(),
                        rows,
                    };
                    let out = out
                        .get_mut(g * s.per_group..)
                        .ok_or_else(|| LinalgError::Mismatch("group".into()))?;
                    let cols = columns.clone().unwrap_or(0..gemm.n());
                    // The fused operand of this chunk starts where its output does.
                    let epilogue = epilogue.offset(0, range.start * out_c + cols.start)?;
                    gemm.run_fused(&a, range.clone(), cols, out, out_c, epilogue)?;
                }
                Ok(())
            },
        )
    }
}

/// The operands of a quantized GEMM as a kernel builder has them.
pub(crate) struct QuantGemmSpec<'a> {
    /// The input's element type.
    pub input: QType,
    /// Added to every input element.
    pub input_offset: i32,
    /// `[out_c][taps][depth]`.
    pub weights: QWeights<'a>,
    /// Added to every weight.
    pub weight_offset: i32,
    /// One bias per output channel, or none.
    pub bias: Option<&'a [i32]>,
    /// Scaling, zero point and clamp.
    pub requantize: &'a Requantize,
    /// The output's element type.
    pub output: QType,
}

impl QuantGemmSpec<'_> {
    /// The linalg spec of group `g` of `shape`, its weights `weights` packed as `[ks][kc]`.
    fn group<'w>(
        &'w self,
        shape: &GemmShape,
        g: usize,
        weights: QWeights<'w>,
        (ks, kc): (usize, usize),
    ) -> QGemmSpec<'w> {
        let columns = g * shape.per_group..(g + 1) * shape.per_group;
        let r = self.requantize;
        QGemmSpec {
            input: self.input,
            input_offset: self.input_offset,
            weights,
            weight_offset: self.weight_offset,
            shape: [shape.per_group, ks, kc],
            bias: self.bias.map(|b| &b[columns.clone()]),
            requant: r.linalg(columns),
            output: self.output,
            output_zero_point: r.output_offset,
            clamp: (r.act_min, r.act_max),
        }
    }
}

/// Weights of one of the quantized GEMM's element types, owned.
enum OwnedQWeights {
    I8(Vec<i8>),
    U8(Vec<u8>),
}

impl OwnedQWeights {
    fn view(&self, range: Range<usize>) -> QWeights<'_> {
        match self {
            OwnedQWeights::I8(w) => QWeights::I8(&w[range]),
            OwnedQWeights::U8(w) => QWeights::U8(&w[range]),
        }
    }

    fn len(&self) -> usize {
        match self {
            OwnedQWeights::I8(w) => w.len(),
            OwnedQWeights::U8(w) => w.len(),
        }
    }
}

/// A quantized GEMM, one packed operand per group sharing one converted input: CONV_2D,
/// FULLY_CONNECTED.
pub(crate) struct QuantGemm {
    shape: GemmShape,
    rows: GemmRows,
    format: QInputFormat,
    gemms: Vec<PackedQGemm>,
    scratch_bytes: usize,
}

impl QuantGemm {
    /// Packs the GEMM for the best kernels of `isa`. An error when no kernel family can
    /// compute it (the caller keeps its scalar kernel then).
    pub(crate) fn new(
        isa: Isa,
        shape: GemmShape,
        layout: InputLayout,
        spec: &QuantGemmSpec<'_>,
    ) -> Result<Self, LinalgError> {
        let per_weights = shape.per_group * shape.taps * shape.depth;
        let weights_len = match spec.weights {
            QWeights::I8(w) => w.len(),
            QWeights::U8(w) => w.len(),
        };
        let merged = matches!(layout, InputLayout::MergedRows(_));
        if weights_len != per_weights * shape.groups
            || spec.bias.is_some_and(|b| b.len() != shape.out_c())
            || spec.requantize.channels() != shape.out_c()
            || (merged && (shape.groups != 1 || shape.depth != shape.in_c))
        {
            return Err(LinalgError::Mismatch("GEMM weights, bias or scales".into()));
        }
        let family = spec
            .group(&shape, 0, spec.weights.clone(), (shape.taps, shape.depth))
            .family(isa)
            .ok_or_else(|| LinalgError::InvalidParameter("no GEMM family fits".into()))?;
        let stride = shape.in_c.next_multiple_of(family.kr());
        let (ks, kc) = packed_taps(&shape, &layout, stride);
        // Merged rows read whole pixels: the padding channels get weights that vanish with the
        // weight offset.
        let fill = spec.weight_offset.wrapping_neg();
        let weights = match (merged, &spec.weights) {
            (false, QWeights::I8(w)) => OwnedQWeights::I8(w.to_vec()),
            (false, QWeights::U8(w)) => OwnedQWeights::U8(w.to_vec()),
            (true, QWeights::I8(w)) => OwnedQWeights::I8(widen_channels(
                w,
                shape.in_c,
                stride,
                i8::try_from(fill).map_err(|_| LinalgError::InvalidParameter("fill".into()))?,
            )),
            (true, QWeights::U8(w)) => OwnedQWeights::U8(widen_channels(
                w,
                shape.in_c,
                stride,
                u8::try_from(fill).map_err(|_| LinalgError::InvalidParameter("fill".into()))?,
            )),
        };
        let per_packed = weights.len() / shape.groups.max(1);
        let gemms: Vec<PackedQGemm> = (0..shape.groups)
            .map(|g| {
                let w = weights.view(g * per_packed..(g + 1) * per_packed);
                PackedQGemm::new(isa, &spec.group(&shape, g, w, (ks, kc)), shape.m)
            })
            .collect::<Result<_, _>>()?;
        let format = gemms
            .first()
            .map(PackedQGemm::input_format)
            .ok_or_else(|| LinalgError::Mismatch("no group".into()))?;
        if format.pixel_stride(shape.in_c) != stride {
            return Err(LinalgError::Mismatch("pixel stride".into()));
        }
        let rows = GemmRows::new(&layout, stride)?;
        let scratch_bytes = match &rows {
            GemmRows::Padded { image, .. } => format.padded_scratch_bytes(image, shape.in_c)?,
            // Converted chunk by chunk: every chunk's slack and alignment on top.
            GemmRows::Dense => format
                .scratch_bytes(0, shape.in_c)?
                .checked_add(8)
                .and_then(|per_chunk| per_chunk.checked_mul(MAX_CHUNKS))
                .and_then(|extra| {
                    format
                        .scratch_bytes(shape.in_pixels, shape.in_c)
                        .ok()?
                        .checked_add(extra)
                })
                .ok_or_else(|| LinalgError::TooLarge("converted input".into()))?,
            _ => format.scratch_bytes(shape.in_pixels, shape.in_c)?,
        };
        Ok(QuantGemm {
            shape,
            rows,
            format,
            gemms,
            scratch_bytes,
        })
    }

    /// Scratch bytes [`QuantGemm::run`] needs (the converted input).
    pub(crate) fn scratch_bytes(&self) -> usize {
        self.scratch_bytes
    }

    /// Computes the output of `input`, converting it into `scratch` first.
    pub(crate) fn run<X: QElem, O: QElem>(
        &self,
        input: &[X],
        out: &mut [O],
        scratch: &mut [u64],
        threads: &Threads,
    ) -> Result<(), RuntimeError> {
        let s = &self.shape;
        check_len("input", input.len(), s.input_len())?;
        check_len("output", out.len(), s.output_len())?;
        let Some(first) = self.gemms.first() else {
            return Ok(());
        };
        if matches!(self.rows, GemmRows::Dense) && (s.m > 1 || threads.count() == 1) {
            return self.run_dense_rows(input, out, scratch, threads, first.row_block(), None);
        }
        let converted = self.convert_whole(input, scratch)?;
        let rows = self.rows.offsets(converted.pixel_stride());
        split(
            threads,
            s,
            first.row_block(),
            first.column_block(),
            out,
            |range, columns, out| self.run_groups(&converted, rows, range, columns, out),
        )
    }

    /// Every group's GEMM on rows `range` (and `columns`, or all) of the converted input, into
    /// `out` (whose first row is row `range.start`).
    fn run_groups<O: QElem>(
        &self,
        converted: &QConverted<'_>,
        rows: RowOffsets<'_>,
        range: Range<usize>,
        columns: Option<Range<usize>>,
        out: &mut [O],
    ) -> Result<(), LinalgError> {
        let s = &self.shape;
        for (g, gemm) in self.gemms.iter().enumerate() {
            let a = converted.source(g * s.depth, rows)?;
            let out = out
                .get_mut(g * s.per_group..)
                .ok_or_else(|| LinalgError::Mismatch("group".into()))?;
            match &columns {
                None => gemm.run(&a, range.clone(), out, s.out_c())?,
                Some(c) => gemm.run_columns(&a, range.clone(), c.clone(), out, s.out_c())?,
            }
        }
        Ok(())
    }

    /// The whole input converted into `scratch` for the GEMMs (a padded copy for merged rows).
    fn convert_whole<'s, X: QElem>(
        &self,
        input: &[X],
        scratch: &'s mut [u64],
    ) -> Result<QConverted<'s>, RuntimeError> {
        let scratch: &mut [u8] = bytemuck::cast_slice_mut(scratch);
        let in_c = self.shape.in_c;
        match &self.rows {
            GemmRows::Padded { image, .. } => {
                self.format
                    .convert_padded(X::input(input), in_c, image, scratch)
            }
            _ => self.format.convert(X::input(input), in_c, scratch),
        }
        .map_err(eval_error)
    }

    /// Rows per thread's chunk when the output is split by whole rows (a multiple of `mr`):
    /// one chunk per thread, each at least [`MIN_MACS_PER_CHUNK`] multiply-adds, at most
    /// [`MAX_CHUNKS`] chunks.
    fn chunk_rows(&self, threads: &Threads, mr: usize) -> usize {
        let s = &self.shape;
        let macs_per_row = s
            .out_c()
            .saturating_mul(s.taps)
            .saturating_mul(s.depth)
            .max(1);
        let min_rows = MIN_MACS_PER_CHUNK.div_ceil(macs_per_row).max(mr);
        threads
            .chunk_units(s.m, min_rows)
            .max(s.m.div_ceil(MAX_CHUNKS))
            .next_multiple_of(mr)
            .max(1)
    }

    /// Rows of the blocks [`QuantGemm::run_finished`] computes and finishes at a time.
    fn stage_rows(&self) -> usize {
        let mr = self.gemms.first().map_or(1, PackedQGemm::row_block).max(1);
        (STAGE_ELEMENTS / self.shape.out_c().max(1))
            .max(mr)
            .next_multiple_of(mr)
    }

    /// Scratch bytes [`QuantGemm::run_finished`] needs on `threads` threads with `O` outputs:
    /// [`QuantGemm::scratch_bytes`], then two blocks of rows per thread.
    pub(crate) fn finished_scratch_bytes<O>(&self, threads: usize) -> Option<usize> {
        let staging = self
            .stage_rows()
            .checked_mul(self.shape.out_c())?
            .checked_mul(2 * size_of::<O>())?
            .checked_mul(threads.max(1))?;
        self.scratch_bytes
            .div_ceil(8)
            .checked_mul(8)?
            .checked_add(staging)
    }

    /// [`QuantGemm::run`], with `finish` turning each block of output rows into the final
    /// output while the block is in cache (a fused output stage). `scratch` holds
    /// [`QuantGemm::finished_scratch_bytes`] for the threads.
    pub(crate) fn run_finished<X: QElem, O: QElem>(
        &self,
        input: &[X],
        out: &mut [O],
        scratch: &mut [u64],
        threads: &Threads,
        finish: &RowFinish<'_, O>,
    ) -> Result<(), RuntimeError> {
        let s = &self.shape;
        check_len("input", input.len(), s.input_len())?;
        check_len("output", out.len(), s.output_len())?;
        let Some(first) = self.gemms.first() else {
            return Ok(());
        };
        let out_c = s.out_c().max(1);
        let mr = first.row_block().max(1);
        let (scratch, staging) = scratch
            .split_at_mut_checked(self.scratch_bytes.div_ceil(8))
            .ok_or_else(|| RuntimeError::eval("scratch too short"))?;
        let mut staging: &mut [O] = bytemuck::cast_slice_mut(staging);
        if matches!(self.rows, GemmRows::Dense) {
            return self.run_dense_rows(input, out, scratch, threads, mr, Some((finish, staging)));
        }
        let block_rows = self.stage_rows();
        let piece = 2 * block_rows * out_c;
        let chunk_rows = self.chunk_rows(threads, mr);
        let converted = self.convert_whole(input, scratch)?;
        let offsets = self.rows.offsets(converted.pixel_stride());
        let parts = out
            .chunks_mut(chunk_rows * out_c)
            .enumerate()
            .map(|(i, out)| Ok((i * chunk_rows, out, take_piece(&mut staging, piece)?)));
        threads
            .for_each_part(parts, |_, part: Result<_, LinalgError>| {
                let (first, out, staging) = part?;
                finish_blocks(
                    first,
                    out,
                    out_c,
                    block_rows,
                    staging,
                    finish,
                    |rows, dst| {
                        let rows = first + rows.start..first + rows.end;
                        self.run_groups(&converted, offsets, rows, None, dst)
                    },
                )
            })
            .map_err(eval_error)
    }

    /// [`QuantGemm::run`] for dense rows split by rows (whole blocks of `mr`): every chunk
    /// converts its own input rows into scratch of its own before its GEMM, so the conversion
    /// runs in parallel too and each thread reads the rows it (most likely) produced in the
    /// previous operator.
    fn run_dense_rows<X: QElem, O: QElem>(
        &self,
        input: &[X],
        out: &mut [O],
        scratch: &mut [u64],
        threads: &Threads,
        mr: usize,
        finish: Option<(&RowFinish<'_, O>, &mut [O])>,
    ) -> Result<(), RuntimeError> {
        let s = &self.shape;
        let out_c = s.out_c().max(1);
        let mr = mr.max(1);
        let chunk_rows = self.chunk_rows(threads, mr);
        let in_c = s.in_c;
        let block_rows = self.stage_rows();
        let (finish, mut staging) = match finish {
            Some((f, staging)) => (Some(f), staging),
            None => (None, &mut [][..]),
        };
        let piece = if finish.is_some() {
            2 * block_rows * out_c
        } else {
            0
        };
        let mut rest = scratch;
        let parts = out
            .chunks_mut(chunk_rows * out_c)
            .enumerate()
            .map(move |(i, out)| {
                let rows = out.len() / out_c;
                let words = self.format.scratch_bytes(rows, in_c)?.div_ceil(8);
                let mine = take_piece(&mut rest, words)?;
                Ok((i * chunk_rows, out, mine, take_piece(&mut staging, piece)?))
            });
        threads
            .for_each_part(parts, |_, part| {
                let (first, out, scratch, staging) = part?;
                let rows = out.len() / out_c;
                let x = input
                    .get(first * in_c..(first + rows) * in_c)
                    .ok_or_else(|| LinalgError::Mismatch("input shorter than the rows".into()))?;
                let converted =
                    self.format
                        .convert(X::input(x), in_c, bytemuck::cast_slice_mut(scratch))?;
                let offsets = RowOffsets::Dense {
                    stride: converted.pixel_stride(),
                };
                match finish {
                    None => self.run_groups(&converted, offsets, 0..rows, None, out),
                    Some(finish) => {
                        finish_blocks(first, out, out_c, block_rows, staging, finish, |r, dst| {
                            self.run_groups(&converted, offsets, r, None, dst)
                        })
                    }
                }
            })
            .map_err(eval_error)
    }
}

/// The first `len` elements of `rest`, which keeps the others: scratch memory handed out
/// piece by piece to the parts of a split.
fn take_piece<'a, T>(rest: &mut &'a mut [T], len: usize) -> Result<&'a mut [T], LinalgError> {
    if len > rest.len() {
        return Err(LinalgError::Mismatch("scratch too short".into()));
    }
    let (mine, others) = std::mem::take(rest).split_at_mut(len);
    *rest = others;
    Ok(mine)
}

/// Work done on each block of rows of a quantized GEMM's output while the block is in cache (a
/// convolution's fused output stage): `finish(first_row, computed, spare, out)` turns the
/// GEMM's rows `computed`, the first of them row `first_row`, into the output rows `out`;
/// `spare`, as long, is room for an intermediate result.
pub(crate) type RowFinish<'a, O> =
    dyn Fn(usize, &mut [O], &mut [O], &mut [O]) -> Result<(), LinalgError> + Sync + 'a;

/// Elements of each block of rows a finishing GEMM computes before finishing it: 8 KiB of 8-bit
/// values, twice per thread, stay in the first-level cache beside the weights' panel.
const STAGE_ELEMENTS: usize = 8 * 1024;

/// Computes the rows `out` (the first of them row `first`) block by block with `compute(rows,
/// dst)` (rows counted from `first`) into staging, and finishes each block into `out`.
fn finish_blocks<O: QElem>(
    first: usize,
    out: &mut [O],
    out_c: usize,
    block_rows: usize,
    staging: &mut [O],
    finish: &RowFinish<'_, O>,
    compute: impl Fn(Range<usize>, &mut [O]) -> Result<(), LinalgError>,
) -> Result<(), LinalgError> {
    let block = block_rows * out_c;
    let (computed, spare) = staging
        .split_at_mut_checked(block)
        .filter(|(_, spare)| spare.len() >= block)
        .ok_or_else(|| LinalgError::Mismatch("staging too short".into()))?;
    for (k, out) in out.chunks_mut(block).enumerate() {
        let len = out.len();
        let start = k * block_rows;
        let (computed, spare) = (&mut computed[..len], &mut spare[..len]);
        compute(start..start + len / out_c, computed)?;
        finish(first + start, computed, spare, out)?;
    }
    Ok(())
}

/// Runs one float GEMM over `input`'s rows of `depth` elements (a matrix product), split over
/// the threads: BATCH_MATMUL's matrix pairs.
pub(crate) fn run_dense_f32(
    gemm: &PackedF32Gemm,
    input: &[f32],
    depth: usize,
    out: &mut [f32],
    threads: &Threads,
) -> Result<(), RuntimeError> {
    let n = gemm.n();
    let shape = GemmShape::dense(input.len() / depth.max(1), depth, n);
    check_len("output", out.len(), shape.output_len())?;
    let a = ASource {
        data: input,
        zero: gemm.zero(),
        rows: RowOffsets::Dense { stride: depth },
    };
    split(
        threads,
        &shape,
        gemm.row_block(),
        gemm.column_block(),
        out,
        |rows, columns, out| match columns {
            None => gemm.run(&a, rows, out, n),
            Some(c) => gemm.run_columns(&a, rows, c, out, n),
        },
    )
}

/// Runs one quantized GEMM over `input`'s rows of `depth` elements, converted into `scratch`
/// (at least `gemm.input_format().scratch_bytes(rows, depth)`), split over the threads.
pub(crate) fn run_dense_q<X: QElem, O: QElem>(
    gemm: &PackedQGemm,
    input: &[X],
    depth: usize,
    out: &mut [O],
    scratch: &mut [u8],
    threads: &Threads,
) -> Result<(), RuntimeError> {
    let n = gemm.n();
    let shape = GemmShape::dense(input.len() / depth.max(1), depth, n);
    check_len("output", out.len(), shape.output_len())?;
    let converted = gemm
        .input_format()
        .convert(X::input(input), depth, scratch)
        .map_err(eval_error)?;
    let rows = RowOffsets::Dense {
        stride: converted.pixel_stride(),
    };
    let a = converted.source(0, rows).map_err(eval_error)?;
    split(
        threads,
        &shape,
        gemm.row_block(),
        gemm.column_block(),
        out,
        |rows, columns, out| match columns {
            None => gemm.run(&a, rows, out, n),
            Some(c) => gemm.run_columns(&a, rows, c, out, n),
        },
    )
}

/// Checks that an input or output length matches what was validated at build time.
pub(crate) fn check_len(what: &str, actual: usize, expected: usize) -> Result<(), RuntimeError> {
    if actual != expected {
        return Err(RuntimeError::eval(format!(
            "{what} has {actual} elements, expected {expected}"
        )));
    }
    Ok(())
}
