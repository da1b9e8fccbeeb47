//! Matrix products over weights packed at prepare time: the frame that every GEMM micro-kernel
//! plugs into.
//!
//! A GEMM here computes `out[r][c] = stage(bias[c] + sum_t sum_k a(r, t)[k] * w[c][t][k])` for
//! rows `r` (output pixels, or batch rows of a fully connected layer), columns `c` (output
//! channels), `ks` taps `t` (filter positions; 1 for a plain matrix product) and `kc` elements
//! `k` per tap (input channels). Row `r`'s tap `t` is a run of `kc` consecutive elements of the
//! input at an offset given per row and tap ([`RowOffsets`]): dense rows for a pointwise
//! convolution or a fully connected layer, an [`Indirection`] for any other convolution, whose
//! padding taps read a zero row instead. So one micro-kernel serves every convolution shape
//! without an im2col copy, as XNNPACK's indirect GEMM does.
//!
//! Weights are packed once, at prepare time, in blocks of `nr` columns: for each block, for
//! each tap, `kc` rounded up to a multiple of `kr` elements, each a group of `kr` consecutive
//! `k` for each of the `nr` columns (`[tap][k / kr][column][k % kr]`), zero-padded. Bias and
//! per-column output parameters are padded to whole blocks. A micro-kernel computes up to `mr`
//! rows and all columns of the packed operand it is given ([`Tile`]), block by block, and
//! applies the output stage before storing: nothing is written twice.

use std::ops::Range;

use crate::frame::window::{Indirection, PAD};
use crate::{Isa, LinalgError};

/// The largest `mr` of any micro-kernel.
pub const MAX_MR: usize = 16;

/// The most rows the drivers hand a micro-kernel in one call (sizes their stack buffers): a
/// call checks its operands once, then computes its rows `mr` at a time, so that the checks
/// cost little next to the arithmetic even for the smallest layers.
pub const ROWS_PER_CALL: usize = 64;

/// Where the rows of the A operand are found in the input.
#[derive(Debug, Clone, Copy)]
pub enum RowOffsets<'a> {
    /// Row `r` starts at `r * stride` (one tap): fully connected layers, pointwise convolutions.
    Dense {
        /// Elements between the starts of consecutive rows.
        stride: usize,
    },
    /// Row `r`'s taps start at the offsets the indirection gives for output pixel `r`.
    Indirect(&'a Indirection),
    /// Row `r`'s taps start at `offsets[r * taps..(r + 1) * taps]` ([`PAD`] for a zero row): a
    /// table built by the caller, for windows an [`Indirection`] does not describe (transposed
    /// convolutions).
    Table {
        /// Taps per row.
        taps: usize,
        /// `taps` offsets per row.
        offsets: &'a [u32],
    },
}

/// The A operand of a GEMM: the input, a zero row for padding taps, and where rows start.
#[derive(Debug, Clone, Copy)]
pub struct ASource<'a, T> {
    /// The input elements (possibly converted to the kernel's A type).
    pub data: &'a [T],
    /// What a padding tap reads: at least `kc` (padded to `kr`) elements.
    pub zero: &'a [T],
    /// Where the rows start.
    pub rows: RowOffsets<'a>,
}

/// One micro-kernel call: rows `0..m` times all `n` columns of the packed operand, computed
/// `mr` rows at a time (the last rows in smaller groups).
///
/// Row `r`, tap `t` reads `kc` elements of `input` starting at `offsets[r * ks + t]`, or of
/// `zero` when that offset is [`PAD`]. `weights` and `bias` hold `ceil(n / nr)` packed blocks.
#[derive(Debug, Clone, Copy)]
pub struct Tile<'a, A, W, B> {
    /// The A elements.
    pub input: &'a [A],
    /// The row padding taps read.
    pub zero: &'a [A],
    /// `m * ks` offsets into `input`, or [`PAD`].
    pub offsets: &'a [u32],
    /// Rows to compute (at least 1).
    pub m: usize,
    /// Taps per row.
    pub ks: usize,
    /// Elements per tap, a multiple of the kernel's `kr`.
    pub kc: usize,
    /// Packed weights.
    pub weights: &'a [W],
    /// Per-column bias, padded to whole blocks.
    pub bias: &'a [B],
    /// Columns to compute.
    pub n: usize,
}

impl<A, W, B> Tile<'_, A, W, B> {
    /// Checks everything a micro-kernel with this `nr` and `kr` relies on before it reads or
    /// writes memory: every offset run inside `input`, the zero row long enough, whole packed
    /// blocks, and `m` rows of `n` columns at `out_stride` inside an output of `out_len`.
    pub fn check(
        &self,
        nr: usize,
        kr: usize,
        out_len: usize,
        out_stride: usize,
    ) -> Result<(), LinalgError> {
        let bad = |what: &str| Err(LinalgError::mismatch(format!("GEMM tile: {what}")));
        if self.m == 0 || self.ks == 0 || self.n == 0 {
            return bad("empty tile");
        }
        if kr == 0 || !self.kc.is_multiple_of(kr) || self.zero.len() < self.kc {
            return bad("kc is not a multiple of kr, or the zero row is short");
        }
        let Some(count) = self.m.checked_mul(self.ks) else {
            return bad("offset count overflows");
        };
        if self.offsets.len() < count {
            return bad("too few offsets");
        }
        let end = offsets_end(&self.offsets[..count]);
        if end > 0 && (end as usize - 1).saturating_add(self.kc) > self.input.len() {
            return bad("a row runs past the input");
        }
        let blocks = self.n.div_ceil(nr);
        let block_len = self.ks.checked_mul(self.kc).and_then(|k| k.checked_mul(nr));
        let packed_len = block_len.and_then(|b| b.checked_mul(blocks));
        if packed_len.is_none_or(|len| self.weights.len() < len) || self.bias.len() < blocks * nr {
            return bad("packed weights or bias too short");
        }
        let out_needed = (self.m - 1)
            .checked_mul(out_stride)
            .and_then(|s| s.checked_add(self.n));
        if out_stride < self.n || out_needed.is_none_or(|need| need > out_len) {
            return bad("output too short");
        }
        Ok(())
    }
}

/// The largest offset that is not [`PAD`], plus one (0 when all are `PAD`, which wraps to 0):
/// a branch-free maximum, vectorized with AVX2 where the CPU has it (baseline x86-64 has no
/// unsigned 32-bit maximum).
fn offsets_end(offsets: &[u32]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if let Some(end) = crate::x86_64::offsets_end(offsets) {
        return end;
    }
    offsets.iter().fold(0u32, |m, &o| m.max(o.wrapping_add(1)))
}

/// Packs weights laid out `[n][ks][kc]` (TFLite's OHWI filters, or `[units][depth]`) into
/// blocks of `nr` columns with `k` grouped by `kr` (see the module documentation), converting
/// each element with `convert`; missing columns and `k` are `W::default()` (zero).
pub fn pack_weights<S: Copy, W: Copy + Default>(
    weights: &[S],
    n: usize,
    ks: usize,
    kc: usize,
    nr: usize,
    kr: usize,
    convert: impl Fn(S) -> W,
) -> Result<Vec<W>, LinalgError> {
    let expected = n.checked_mul(ks).and_then(|v| v.checked_mul(kc));
    if expected != Some(weights.len()) {
        return Err(LinalgError::mismatch(format!(
            "{} weights for {n} x {ks} x {kc}",
            weights.len()
        )));
    }
    let len = packed_len(n, ks, kc, nr, kr)?;
    let mut packed = vec![W::default(); len];
    pack_weights_into(&mut packed, [n, ks, kc], nr, kr, |col, t, k| {
        convert(weights[(col * ks + t) * kc + k])
    })?;
    Ok(packed)
}

/// Elements of the packed form of `n` x `ks` x `kc` weights in blocks of `nr`, `k` grouped by
/// `kr`.
pub fn packed_len(
    n: usize,
    ks: usize,
    kc: usize,
    nr: usize,
    kr: usize,
) -> Result<usize, LinalgError> {
    n.div_ceil(nr.max(1))
        .checked_mul(nr)
        .and_then(|v| v.checked_mul(ks))
        .and_then(|v| v.checked_mul(kc.next_multiple_of(kr.max(1))))
        .ok_or_else(|| LinalgError::too_large("packed weights"))
}

/// Packs weights given element by element (`weight(column, tap, k)`) into `packed`, which must
/// hold exactly [`packed_len`] elements, in the layout of [`pack_weights`]: for operands
/// computed at run time, repacked without allocating.
pub fn pack_weights_into<W: Copy + Default>(
    packed: &mut [W],
    [n, ks, kc]: [usize; 3],
    nr: usize,
    kr: usize,
    weight: impl Fn(usize, usize, usize) -> W,
) -> Result<(), LinalgError> {
    if nr == 0 || kr == 0 || packed.len() != packed_len(n, ks, kc, nr, kr)? {
        return Err(LinalgError::mismatch("packed weights buffer size"));
    }
    let kc_padded = kc.next_multiple_of(kr);
    let mut out = packed.iter_mut();
    for block in 0..n.div_ceil(nr) {
        for t in 0..ks {
            for group in 0..kc_padded / kr {
                for col in block * nr..(block + 1) * nr {
                    for i in 0..kr {
                        let k = group * kr + i;
                        if let Some(slot) = out.next() {
                            *slot = if col < n && k < kc {
                                weight(col, t, k)
                            } else {
                                W::default()
                            };
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// A per-column vector padded with `fill` to whole blocks of `nr`.
pub fn pad_columns<T: Copy>(values: &[T], nr: usize, fill: T) -> Vec<T> {
    let mut padded = values.to_vec();
    padded.resize(values.len().next_multiple_of(nr.max(1)), fill);
    padded
}

/// A batch of NHWC images surrounded by a border of padding pixels, so that every tap of a
/// convolution window lies inside the padded image. With a unit horizontal dilation, the
/// `filter_w` taps of a filter row are then one contiguous run of `filter_w` pixels: a GEMM can
/// read them as one tap of `filter_w * pixel_stride` elements, with no padding taps at all
/// (fewer, longer taps for convolutions with few input channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PaddedImage {
    /// Images.
    pub batches: usize,
    /// Height of an image, without padding.
    pub height: usize,
    /// Width of an image, without padding.
    pub width: usize,
    /// Padding rows above.
    pub top: usize,
    /// Padding rows below.
    pub bottom: usize,
    /// Padding columns on the left.
    pub left: usize,
    /// Padding columns on the right.
    pub right: usize,
}

impl PaddedImage {
    /// Height with padding.
    pub fn padded_height(&self) -> usize {
        self.height + self.top + self.bottom
    }

    /// Width with padding.
    pub fn padded_width(&self) -> usize {
        self.width + self.left + self.right
    }

    /// Pixels of the padded batch.
    pub fn padded_pixels(&self) -> Option<usize> {
        self.batches
            .checked_mul(self.padded_height())?
            .checked_mul(self.padded_width())
    }

    /// Calls `row(padded_offset, source)` for every padded image row, in order: `source` is the
    /// pixel index of the row's first pixel in the unpadded input, `None` for a padding row.
    fn for_each_row(&self, mut row: impl FnMut(usize, Option<usize>)) {
        let (ph, pw) = (self.padded_height(), self.padded_width());
        for b in 0..self.batches {
            for y in 0..ph {
                let first = (b * ph + y) * pw;
                let source = y
                    .checked_sub(self.top)
                    .filter(|&y| y < self.height)
                    .map(|y| (b * self.height + y) * self.width);
                row(first, source);
            }
        }
    }

    /// Copies `input` (whole pixels of `channels` elements, `batches * height * width` of them)
    /// into `out` as a padded image of pixels `stride` elements apart: each pixel converted by
    /// `convert_row`, which converts one row of `width` pixels as [`ToU8Fn`]-like kernels do;
    /// padding pixels filled with `fill`.
    ///
    /// [`ToU8Fn`]: crate::frame::gemm_q::ToU8Fn
    pub fn fill<X, Y: Copy>(
        &self,
        input: &[X],
        channels: usize,
        stride: usize,
        out: &mut [Y],
        fill: Y,
        mut convert_row: impl FnMut(&[X], &mut [Y]) -> Result<(), LinalgError>,
    ) -> Result<(), LinalgError> {
        let pixels = self
            .batches
            .checked_mul(self.height)
            .and_then(|p| p.checked_mul(self.width))
            .ok_or_else(|| LinalgError::too_large("image"))?;
        let padded = self
            .padded_pixels()
            .and_then(|p| p.checked_mul(stride))
            .ok_or_else(|| LinalgError::too_large("padded image"))?;
        if pixels.checked_mul(channels) != Some(input.len())
            || out.len() < padded
            || stride < channels
        {
            return Err(LinalgError::mismatch("padded image: operand sizes"));
        }
        let (row_in, left, right) = (
            self.width * channels,
            self.left * stride,
            (self.left + self.width) * stride,
        );
        let row_out = self.padded_width() * stride;
        let mut result = Ok(());
        self.for_each_row(|first, source| {
            let dst = &mut out[first * stride..first * stride + row_out];
            match source {
                None => dst.fill(fill),
                Some(pixel) => {
                    dst[..left].fill(fill);
                    dst[right..].fill(fill);
                    let src = &input[pixel * channels..pixel * channels + row_in];
                    if result.is_ok() {
                        result = convert_row(src, &mut dst[left..right]);
                    }
                }
            }
        });
        out[padded..].fill(fill);
        result
    }
}

/// Identifies a micro-kernel: its instruction set, name and tile shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UkernelInfo {
    /// The instruction set it needs.
    pub isa: Isa,
    /// A name for profiles and test messages (`"f32 6x32 avx512"`).
    pub name: &'static str,
    /// Rows per call.
    pub mr: usize,
    /// Columns per packed block.
    pub nr: usize,
    /// `k` elements grouped per column in the packed weights.
    pub kr: usize,
}

impl UkernelInfo {
    /// Vectors of columns per packed block (`nr` over the instruction set's lanes of 32 bits).
    fn vectors(&self) -> usize {
        let lanes = match self.isa {
            Isa::Generic => self.nr,
            Isa::Avx2 => 8,
            Isa::Avx512 | Isa::Avx512Vnni => 16,
        };
        (self.nr / lanes.max(1)).max(1)
    }

    /// How well the kernel suits `m` rows (about; 1 for a matrix-vector product) of `n`
    /// columns: smaller is better. The work is the padded columns, a third dearer for kernels
    /// of one vector of columns (one broadcast per multiply-add); ties go to more rows per call
    /// for several rows (fewer passes over the weights), to wider blocks for one row.
    pub(crate) fn cost(&self, m: usize, n: usize) -> (usize, usize, usize) {
        let per_column = if self.vectors() == 1 { 13 } else { 10 };
        let work = n.next_multiple_of(self.nr.max(1)) * per_column;
        let rows = if m <= 1 { 0 } else { usize::MAX - self.mr };
        (work, rows, usize::MAX - self.nr)
    }
}

/// Computes the offsets of rows `rows` into `buffer` (dense), or borrows them from the
/// indirection; `ks` is the number of taps per row the GEMM expects.
pub(crate) fn tile_offsets<'a>(
    source: &RowOffsets<'a>,
    rows: Range<usize>,
    ks: usize,
    buffer: &'a mut [u32; ROWS_PER_CALL],
) -> Result<&'a [u32], LinalgError> {
    match *source {
        RowOffsets::Dense { stride } => {
            if ks != 1 || rows.len() > ROWS_PER_CALL {
                return Err(LinalgError::mismatch("dense rows need a single tap"));
            }
            for (slot, row) in buffer.iter_mut().zip(rows.clone()) {
                *slot = row
                    .checked_mul(stride)
                    .and_then(|o| u32::try_from(o).ok())
                    .filter(|&o| o != PAD)
                    .ok_or_else(|| LinalgError::too_large("row offset beyond u32"))?;
            }
            Ok(&buffer[..rows.len()])
        }
        RowOffsets::Indirect(indirection) => {
            if indirection.taps() != ks {
                return Err(LinalgError::mismatch(format!(
                    "indirection has {} taps, the weights {ks}",
                    indirection.taps()
                )));
            }
            indirection
                .rows(rows)
                .ok_or_else(|| LinalgError::mismatch("rows beyond the indirection buffer"))
        }
        RowOffsets::Table { taps, offsets } => {
            if taps != ks {
                return Err(LinalgError::mismatch(format!(
                    "offset table has {taps} taps, the weights {ks}"
                )));
            }
            let range = rows.start.checked_mul(taps).zip(rows.end.checked_mul(taps));
            range
                .and_then(|(start, end)| offsets.get(start..end))
                .ok_or_else(|| LinalgError::mismatch("rows beyond the offset table"))
        }
    }
}

/// Calls `tile(rows, out_offset)` for each micro-kernel call of `rows`: at most
/// [`ROWS_PER_CALL`] rows, a multiple of `mr` except at the end. `out_offset` is the call's first
/// element in an output slice that starts at `rows.start`.
pub(crate) fn for_each_row_tile(
    rows: Range<usize>,
    mr: usize,
    out_stride: usize,
    mut tile: impl FnMut(Range<usize>, usize) -> Result<(), LinalgError>,
) -> Result<(), LinalgError> {
    let per_call = (ROWS_PER_CALL / mr.max(1)).max(1) * mr.max(1);
    let per_call = per_call.min(ROWS_PER_CALL);
    let mut start = rows.start;
    while start < rows.end {
        let end = rows.end.min(start + per_call);
        let out_offset = (start - rows.start)
            .checked_mul(out_stride)
            .ok_or_else(|| LinalgError::too_large("output offset"))?;
        tile(start..end, out_offset)?;
        start = end;
    }
    Ok(())
}

/// The column blocks `cols` (a range of whole blocks of `nr`, the last possibly partial) as
/// element ranges of a packed operand: `(weights, per-column, columns)`.
pub(crate) fn block_ranges(
    cols: &Range<usize>,
    n: usize,
    nr: usize,
    block_len: usize,
) -> Result<(Range<usize>, Range<usize>, usize), LinalgError> {
    if !cols.start.is_multiple_of(nr) || cols.start >= cols.end || cols.end > n {
        return Err(LinalgError::mismatch(format!(
            "columns {cols:?} are not whole blocks of {nr} within {n}"
        )));
    }
    let first = cols.start / nr;
    let last = cols.end.div_ceil(nr);
    Ok((
        first * block_len..last * block_len,
        first * nr..last * nr,
        cols.end - cols.start,
    ))
}
