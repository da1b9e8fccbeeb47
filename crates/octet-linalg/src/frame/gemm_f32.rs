//! Float GEMM: packed `f32` weights, FMA micro-kernels, a fused bias and clamp.

use std::ops::Range;

use crate::frame::gemm::{
    ASource, ROWS_PER_CALL, Tile, UkernelInfo, block_ranges, for_each_row_tile, pack_weights,
    pack_weights_into, pad_columns, tile_offsets,
};
use crate::{Isa, LinalgError, generic};

/// The fused activation of a float kernel: `min(max(x, min), max)`, NaN passing through as in
/// TFLite's `ActivationFunctionWithMinMax`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct F32Clamp {
    /// Lower bound (`f32::MIN` for none).
    pub min: f32,
    /// Upper bound (`f32::MAX` for none).
    pub max: f32,
}

impl F32Clamp {
    /// No clamping.
    pub const NONE: F32Clamp = F32Clamp {
        min: f32::MIN,
        max: f32::MAX,
    };

    /// Applies the clamp to one value, exactly as the SIMD kernels do.
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        let x = if x < self.min { self.min } else { x };
        if self.max < x { self.max } else { x }
    }
}

/// An element-wise operation fused into a float GEMM's output stage: applied by the
/// micro-kernel to its sums in registers, after the bias and clamp and before the store, so
/// that the operation costs no pass of its own over memory. Each is computed exactly as the
/// runtime's own kernel for the operation computes it (all instruction sets alike).
#[derive(Debug, Clone, Copy)]
pub enum F32Epilogue<'a> {
    /// Nothing.
    None,
    /// PRELU: `y >= 0 ? y : y * alpha[column]`.
    Prelu {
        /// One slope per column, starting at the tile's (GEMM's) first column, padded with
        /// anything to whole blocks of the kernel's `nr` columns.
        alpha: &'a [f32],
    },
    /// ADD of another operand laid out like the output (starting at the same element, the same
    /// row stride), then a clamp: `clamp(y + other)`.
    Add {
        /// The other operand.
        other: &'a [f32],
        /// The ADD's activation.
        clamp: F32Clamp,
    },
    /// [`F32Epilogue::Add`], then [`F32Epilogue::Prelu`] of the sum.
    AddPrelu {
        /// The ADD's other operand.
        other: &'a [f32],
        /// The ADD's activation.
        clamp: F32Clamp,
        /// The PRELU's slopes.
        alpha: &'a [f32],
    },
}

impl F32Epilogue<'_> {
    /// Checks the epilogue's operand against a tile of `m` rows and `n` columns (packed in
    /// blocks of `nr`) stored at row stride `out_stride`.
    pub fn check(
        &self,
        m: usize,
        n: usize,
        nr: usize,
        out_stride: usize,
    ) -> Result<(), LinalgError> {
        let slopes = |alpha: &[f32]| alpha.len() >= n.next_multiple_of(nr.max(1));
        let operand = |other: &[f32]| {
            m.checked_sub(1)
                .and_then(|r| r.checked_mul(out_stride))
                .and_then(|v| v.checked_add(n))
                .is_some_and(|need| need <= other.len())
        };
        let ok = match *self {
            F32Epilogue::None => true,
            F32Epilogue::Prelu { alpha } => slopes(alpha),
            F32Epilogue::Add { other, .. } => operand(other),
            F32Epilogue::AddPrelu { other, alpha, .. } => operand(other) && slopes(alpha),
        };
        if ok {
            Ok(())
        } else {
            Err(LinalgError::mismatch(
                "GEMM tile: epilogue operand too short",
            ))
        }
    }

    /// The epilogue of one output element: `y` at row `r`, column `c` of a tile stored at row
    /// stride `out_stride` (the generic kernels' form, and the SIMD kernels' for partial
    /// blocks).
    #[inline]
    pub fn apply(&self, y: f32, r: usize, c: usize, out_stride: usize) -> f32 {
        let prelu = |y: f32, a: f32| {
            let scaled = y * a;
            if y >= 0.0 { y } else { scaled }
        };
        match *self {
            F32Epilogue::None => y,
            F32Epilogue::Prelu { alpha } => prelu(y, alpha[c]),
            F32Epilogue::Add { other, clamp } => clamp.apply(y + other[r * out_stride + c]),
            F32Epilogue::AddPrelu {
                other,
                clamp,
                alpha,
            } => prelu(clamp.apply(y + other[r * out_stride + c]), alpha[c]),
        }
    }

    /// The same epilogue for a tile whose columns start `columns` after this one's and whose
    /// rows start `elements` later in the output.
    pub fn offset(&self, columns: usize, elements: usize) -> Result<Self, LinalgError> {
        let bad = || LinalgError::mismatch("epilogue operand too short");
        Ok(match *self {
            F32Epilogue::None => F32Epilogue::None,
            F32Epilogue::Prelu { alpha } => F32Epilogue::Prelu {
                alpha: alpha.get(columns..).ok_or_else(bad)?,
            },
            F32Epilogue::Add { other, clamp } => F32Epilogue::Add {
                other: other.get(elements..).ok_or_else(bad)?,
                clamp,
            },
            F32Epilogue::AddPrelu {
                other,
                clamp,
                alpha,
            } => F32Epilogue::AddPrelu {
                other: other.get(elements..).ok_or_else(bad)?,
                clamp,
                alpha: alpha.get(columns..).ok_or_else(bad)?,
            },
        })
    }
}

/// The signature of a float GEMM micro-kernel: computes the tile into `out` (row stride
/// `out_stride`), checking the tile first.
pub type F32GemmFn = fn(
    &Tile<'_, f32, f32, f32>,
    F32Clamp,
    F32Epilogue<'_>,
    &mut [f32],
    usize,
) -> Result<(), LinalgError>;

/// The signature of a float GEMM micro-kernel whose packed weights are binary16 bit patterns
/// (widened exactly to `f32` as they are loaded): the same arithmetic as [`F32GemmFn`] on half
/// the weight bytes.
pub type F32GemmF16Fn = fn(
    &Tile<'_, f32, u16, f32>,
    F32Clamp,
    F32Epilogue<'_>,
    &mut [f32],
    usize,
) -> Result<(), LinalgError>;

/// A float GEMM micro-kernel. Only this crate makes them, and only for instruction sets the
/// CPU supports, so running one is always sound.
#[derive(Debug, Clone, Copy)]
pub struct F32GemmUkernel {
    info: UkernelInfo,
    run: F32GemmFn,
    run_f16: Option<F32GemmF16Fn>,
}

impl F32GemmUkernel {
    /// Crate-internal: the caller guarantees `run` may be called on this CPU when `info.isa`
    /// is supported (checked by [`F32GemmUkernel::all`]).
    pub(crate) const fn new(info: UkernelInfo, run: F32GemmFn) -> Self {
        F32GemmUkernel {
            info,
            run,
            run_f16: None,
        }
    }

    /// As [`F32GemmUkernel::new`], with a twin reading binary16 weights (same tile shape).
    pub(crate) const fn with_f16(info: UkernelInfo, run: F32GemmFn, run_f16: F32GemmF16Fn) -> Self {
        F32GemmUkernel {
            info,
            run,
            run_f16: Some(run_f16),
        }
    }

    /// True when the kernel has a binary16-weights twin.
    pub fn has_f16_weights(&self) -> bool {
        self.run_f16.is_some()
    }

    /// Its instruction set and tile shape.
    pub fn info(&self) -> UkernelInfo {
        self.info
    }

    /// Runs one tile.
    pub fn run(
        &self,
        tile: &Tile<'_, f32, f32, f32>,
        clamp: F32Clamp,
        out: &mut [f32],
        out_stride: usize,
    ) -> Result<(), LinalgError> {
        self.run_fused(tile, clamp, F32Epilogue::None, out, out_stride)
    }

    /// Runs one tile with a fused epilogue.
    pub fn run_fused(
        &self,
        tile: &Tile<'_, f32, f32, f32>,
        clamp: F32Clamp,
        epilogue: F32Epilogue<'_>,
        out: &mut [f32],
        out_stride: usize,
    ) -> Result<(), LinalgError> {
        (self.run)(tile, clamp, epilogue, out, out_stride)
    }

    /// Runs one tile of binary16 weights with a fused epilogue; an error if the kernel has no
    /// such twin.
    pub fn run_f16(
        &self,
        tile: &Tile<'_, f32, u16, f32>,
        clamp: F32Clamp,
        epilogue: F32Epilogue<'_>,
        out: &mut [f32],
        out_stride: usize,
    ) -> Result<(), LinalgError> {
        let run = self
            .run_f16
            .ok_or_else(|| LinalgError::mismatch("the kernel reads f32 weights only"))?;
        run(tile, clamp, epilogue, out, out_stride)
    }

    /// Every float GEMM micro-kernel this CPU can run, generic ones first.
    pub fn all() -> Vec<F32GemmUkernel> {
        let mut all = generic::gemm_f32::UKERNELS.to_vec();
        #[cfg(target_arch = "x86_64")]
        all.extend(crate::x86_64::f32_gemm_ukernels());
        all.retain(|k| k.info.isa.is_supported());
        all
    }

    /// The kernel to use on `isa` (or the best below it this CPU supports) for `n` columns.
    pub fn select(isa: Isa, n: usize) -> F32GemmUkernel {
        F32GemmUkernel::select_for(isa, 2, n)
    }

    /// The kernel to use on `isa` (or the best below it this CPU supports) for about `m` rows
    /// per call (1: a matrix-vector product) and `n` columns.
    pub fn select_for(isa: Isa, m: usize, n: usize) -> F32GemmUkernel {
        let candidates: Vec<F32GemmUkernel> = F32GemmUkernel::all()
            .into_iter()
            .filter(|k| k.info.isa <= isa)
            .collect();
        let best_isa = candidates
            .iter()
            .map(|k| k.info.isa)
            .max()
            .unwrap_or(Isa::Generic);
        candidates
            .into_iter()
            .filter(|k| k.info.isa == best_isa)
            .min_by_key(|k| k.info.cost(m, n))
            .unwrap_or(generic::gemm_f32::UKERNELS[0])
    }
}

/// The `f32` value of a binary16 bit pattern (exact: every binary16 value is an `f32`).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exponent = u32::from((h >> 10) & 0x1f);
    let mantissa = u32::from(h & 0x3ff);
    match exponent {
        0 => {
            // Zero or subnormal: mantissa * 2^-24, exact in f32.
            let magnitude = mantissa as f32 * f32::from_bits(0x3380_0000);
            if sign == 0 { magnitude } else { -magnitude }
        }
        31 => f32::from_bits(sign | 0x7f80_0000 | (mantissa << 13)),
        _ => f32::from_bits(sign | ((exponent + 112) << 23) | (mantissa << 13)),
    }
}

/// The binary16 bit pattern of `x` when `x` is exactly a binary16 value (NaN never is: its
/// payload need not survive).
pub fn f32_to_f16_exact(x: f32) -> Option<u16> {
    if x.is_nan() {
        return None;
    }
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let magnitude = x.abs();
    let candidate = if magnitude == 0.0 {
        0
    } else if magnitude.is_infinite() {
        0x7c00
    } else if magnitude < f32::from_bits(0x3880_0000) {
        // Below 2^-14: a subnormal binary16, mantissa = x / 2^-24.
        let mantissa = magnitude * f32::from_bits(0x4b80_0000);
        if mantissa >= 1024.0 {
            return None;
        }
        mantissa as u16
    } else {
        let exponent = ((bits >> 23) & 0xff) as i32 - 127 + 15;
        if !(1..=30).contains(&exponent) {
            return None;
        }
        ((exponent as u16) << 10) | (((bits >> 13) & 0x3ff) as u16)
    };
    let h = sign | candidate;
    (f16_to_f32(h).to_bits() == bits).then_some(h)
}

/// Packed weights of a float GEMM: `f32`, or binary16 when every weight is exactly one (fp16
/// models) and the kernel reads them, halving the bytes a memory-bound layer streams.
#[derive(Debug, Clone)]
enum PackedF32Weights {
    F32(Vec<f32>),
    F16(Vec<u16>),
}

/// Packed weights of at least this many bytes (as `f32`) are stored as binary16 when they can
/// be: smaller ones stay in the caches anyway, where the widening would only cost time.
const F16_WEIGHTS_FROM_BYTES: usize = 64 << 10;

/// A float GEMM with its weights packed for one micro-kernel: `out = clamp(bias + A * W^T)`.
#[derive(Debug, Clone)]
pub struct PackedF32Gemm {
    ukernel: F32GemmUkernel,
    n: usize,
    ks: usize,
    kc: usize,
    weights: PackedF32Weights,
    bias: Vec<f32>,
    zero: Vec<f32>,
    clamp: F32Clamp,
}

impl PackedF32Gemm {
    /// Packs `weights` (`[n][ks][kc]`, TFLite's OHWI filter or `[units][depth]` matrix) and
    /// `bias` (`n` values, zero when absent) for the best kernel of `isa` (for several rows; see
    /// [`PackedF32Gemm::for_rows`]).
    pub fn new(
        isa: Isa,
        weights: &[f32],
        bias: Option<&[f32]>,
        shape: [usize; 3],
        clamp: F32Clamp,
    ) -> Result<Self, LinalgError> {
        PackedF32Gemm::for_rows(isa, 2, weights, bias, shape, clamp)
    }

    /// As [`PackedF32Gemm::new`], the kernel chosen for about `m` rows per run (1: a
    /// matrix-vector product, which wants the widest blocks).
    pub fn for_rows(
        isa: Isa,
        m: usize,
        weights: &[f32],
        bias: Option<&[f32]>,
        [n, ks, kc]: [usize; 3],
        clamp: F32Clamp,
    ) -> Result<Self, LinalgError> {
        let mut gemm = PackedF32Gemm::with_ukernel(
            F32GemmUkernel::select_for(isa, m, n),
            weights,
            bias,
            [n, ks, kc],
            clamp,
        )?;
        // The generic kernel widens in software, in its inner loop: binary16 only pays off where
        // an instruction widens them.
        if let PackedF32Weights::F32(packed) = &gemm.weights
            && packed.len() * 4 >= F16_WEIGHTS_FROM_BYTES
            && gemm.ukernel.info.isa != Isa::Generic
        {
            gemm.store_f16();
        }
        Ok(gemm)
    }

    /// Stores the packed weights as binary16 if the kernel reads them and every weight is
    /// exactly a binary16 value; otherwise leaves them. Returns whether they are binary16.
    pub(crate) fn store_f16(&mut self) -> bool {
        if let PackedF32Weights::F32(packed) = &self.weights
            && self.ukernel.has_f16_weights()
            && let Some(halves) = packed
                .iter()
                .map(|&w| f32_to_f16_exact(w))
                .collect::<Option<Vec<u16>>>()
        {
            self.weights = PackedF32Weights::F16(halves);
        }
        self.has_f16_weights()
    }

    /// As [`PackedF32Gemm::new`] with a given micro-kernel, the weights stored as `f32` (tests,
    /// benchmarks, and weights [`PackedF32Gemm::repack`] replaces).
    pub fn with_ukernel(
        ukernel: F32GemmUkernel,
        weights: &[f32],
        bias: Option<&[f32]>,
        [n, ks, kc]: [usize; 3],
        clamp: F32Clamp,
    ) -> Result<Self, LinalgError> {
        if n == 0 || ks == 0 || kc == 0 {
            return Err(LinalgError::mismatch(
                "a GEMM needs at least one column, tap and element",
            ));
        }
        let nr = ukernel.info.nr;
        let packed = pack_weights(weights, n, ks, kc, nr, 1, |w| w)?;
        let bias = match bias {
            Some(b) if b.len() == n => pad_columns(b, nr, 0.0),
            Some(b) => {
                return Err(LinalgError::mismatch(format!(
                    "{} bias values for {n} columns",
                    b.len()
                )));
            }
            None => vec![0.0; n.next_multiple_of(nr)],
        };
        Ok(PackedF32Gemm {
            ukernel,
            n,
            ks,
            kc,
            weights: PackedF32Weights::F32(packed),
            bias,
            zero: vec![0.0; kc],
            clamp,
        })
    }

    /// Columns.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Replaces the weights by `weight(column, tap, k)` (same shape), in place and without
    /// allocating: for a matrix product whose right-hand side is computed at run time. The
    /// bias and clamp stay.
    pub fn repack(
        &mut self,
        weight: impl Fn(usize, usize, usize) -> f32,
    ) -> Result<(), LinalgError> {
        let nr = self.ukernel.info.nr;
        match &mut self.weights {
            PackedF32Weights::F32(packed) => {
                pack_weights_into(packed, [self.n, self.ks, self.kc], nr, 1, weight)
            }
            PackedF32Weights::F16(_) => Err(LinalgError::mismatch(
                "weights stored as binary16 cannot be repacked",
            )),
        }
    }

    /// True when the packed weights are stored as binary16.
    pub fn has_f16_weights(&self) -> bool {
        matches!(self.weights, PackedF32Weights::F16(_))
    }

    /// The micro-kernel it runs.
    pub fn ukernel(&self) -> UkernelInfo {
        self.ukernel.info
    }

    /// The zero row padding taps read (`kc` zeros).
    pub fn zero(&self) -> &[f32] {
        &self.zero
    }

    /// Computes rows `rows` of the output, all columns, into `out` (which starts at row
    /// `rows.start`; row stride `out_stride`). `a.zero` may be [`PackedF32Gemm::zero`].
    pub fn run(
        &self,
        a: &ASource<'_, f32>,
        rows: Range<usize>,
        out: &mut [f32],
        out_stride: usize,
    ) -> Result<(), LinalgError> {
        self.run_columns(a, rows, 0..self.n, out, out_stride)
    }

    /// Computes rows `rows` and columns `cols` (starting on a block boundary, see
    /// [`PackedF32Gemm::column_block`]) into `out`, which starts at (`rows.start`,
    /// `cols.start`).
    pub fn run_columns(
        &self,
        a: &ASource<'_, f32>,
        rows: Range<usize>,
        cols: Range<usize>,
        out: &mut [f32],
        out_stride: usize,
    ) -> Result<(), LinalgError> {
        self.run_fused(a, rows, cols, out, out_stride, F32Epilogue::None)
    }

    /// As [`PackedF32Gemm::run_columns`], with `epilogue` fused into the micro-kernels' output
    /// stage (an [`F32Epilogue::Add`] operand starts where `out` starts; PRELU's slopes cover
    /// every column, padded to whole blocks of [`PackedF32Gemm::column_block`]).
    pub fn run_fused(
        &self,
        a: &ASource<'_, f32>,
        rows: Range<usize>,
        cols: Range<usize>,
        out: &mut [f32],
        out_stride: usize,
        epilogue: F32Epilogue<'_>,
    ) -> Result<(), LinalgError> {
        let info = self.ukernel.info;
        // PRELU's slopes from this call's first column.
        let epilogue = epilogue.offset(cols.start, 0)?;
        let block_len = self.ks * self.kc * info.nr;
        let (w, b, n) = block_ranges(&cols, self.n, info.nr, block_len)?;
        let bias = &self.bias[b];
        let mut buffer = [0u32; ROWS_PER_CALL];
        for_each_row_tile(rows, info.mr, out_stride, |tile_rows, out_offset| {
            let m = tile_rows.len();
            let offsets = tile_offsets(&a.rows, tile_rows, self.ks, &mut buffer)?;
            let out = out
                .get_mut(out_offset..)
                .ok_or_else(|| LinalgError::mismatch("output too short"))?;
            // The epilogue of this call: its operand from this call's first element.
            let epilogue = epilogue.offset(0, out_offset)?;
            match &self.weights {
                PackedF32Weights::F32(weights) => {
                    let tile = Tile {
                        input: a.data,
                        zero: a.zero,
                        offsets,
                        m,
                        ks: self.ks,
                        kc: self.kc,
                        weights: &weights[w.clone()],
                        bias,
                        n,
                    };
                    self.ukernel
                        .run_fused(&tile, self.clamp, epilogue, out, out_stride)
                }
                PackedF32Weights::F16(weights) => {
                    let tile = Tile {
                        input: a.data,
                        zero: a.zero,
                        offsets,
                        m,
                        ks: self.ks,
                        kc: self.kc,
                        weights: &weights[w.clone()],
                        bias,
                        n,
                    };
                    self.ukernel
                        .run_f16(&tile, self.clamp, epilogue, out, out_stride)
                }
            }
        })
    }

    /// Columns per packed block: column ranges for [`PackedF32Gemm::run_columns`] start at
    /// multiples of it.
    pub fn column_block(&self) -> usize {
        self.ukernel.info.nr
    }

    /// Rows per micro-kernel call: row ranges split at multiples of it waste nothing.
    pub fn row_block(&self) -> usize {
        self.ukernel.info.mr
    }
}
