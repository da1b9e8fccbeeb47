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

/// The signature of a float GEMM micro-kernel: computes the tile into `out` (row stride
/// `out_stride`), checking the tile first.
pub type F32GemmFn =
    fn(&Tile<'_, f32, f32, f32>, F32Clamp, &mut [f32], usize) -> Result<(), LinalgError>;

/// A float GEMM micro-kernel. Only this crate makes them, and only for instruction sets the
/// CPU supports, so running one is always sound.
#[derive(Debug, Clone, Copy)]
pub struct F32GemmUkernel {
    info: UkernelInfo,
    run: F32GemmFn,
}

impl F32GemmUkernel {
    /// Crate-internal: the caller guarantees `run` may be called on this CPU when `info.isa`
    /// is supported (checked by [`F32GemmUkernel::all`]).
    pub(crate) const fn new(info: UkernelInfo, run: F32GemmFn) -> Self {
        F32GemmUkernel { info, run }
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
        (self.run)(tile, clamp, out, out_stride)
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

/// A float GEMM with its weights packed for one micro-kernel: `out = clamp(bias + A * W^T)`.
#[derive(Debug, Clone)]
pub struct PackedF32Gemm {
    ukernel: F32GemmUkernel,
    n: usize,
    ks: usize,
    kc: usize,
    weights: Vec<f32>,
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
        PackedF32Gemm::with_ukernel(
            F32GemmUkernel::select_for(isa, m, n),
            weights,
            bias,
            [n, ks, kc],
            clamp,
        )
    }

    /// As [`PackedF32Gemm::new`] with a given micro-kernel (tests and benchmarks).
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
            weights: packed,
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
        pack_weights_into(&mut self.weights, [self.n, self.ks, self.kc], nr, 1, weight)
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
        let info = self.ukernel.info;
        let block_len = self.ks * self.kc * info.nr;
        let (w, b, n) = block_ranges(&cols, self.n, info.nr, block_len)?;
        let weights = &self.weights[w];
        let bias = &self.bias[b];
        let mut buffer = [0u32; ROWS_PER_CALL];
        for_each_row_tile(rows, info.mr, out_stride, |tile_rows, out_offset| {
            let m = tile_rows.len();
            let offsets = tile_offsets(&a.rows, tile_rows, self.ks, &mut buffer)?;
            let tile = Tile {
                input: a.data,
                zero: a.zero,
                offsets,
                m,
                ks: self.ks,
                kc: self.kc,
                weights,
                bias,
                n,
            };
            let out = out
                .get_mut(out_offset..)
                .ok_or_else(|| LinalgError::mismatch("output too short"))?;
            self.ukernel.run(&tile, self.clamp, out, out_stride)
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
