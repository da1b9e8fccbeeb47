//! 2-D max and average pooling over NHWC images, as TFLite's reference kernels compute them.
//!
//! The window is a [`DwPlan`]: within one segment every pixel has the same taps inside the image
//! (padding taps are skipped, not read), so an average's divisor, the count of in-image taps, is
//! one number per segment. Taps are visited in filter order (rows, then columns), so float sums
//! round exactly as the reference's do.
//!
//! - Max: from the type's lowest value (`std::numeric_limits<float>::lowest()` for float),
//!   `max(acc, x)` keeping `acc` unless `acc < x` (a NaN input is skipped, as `std::max` does);
//! - float average: the sum divided by the count;
//! - integer average: the int32 sum, then `(sum ± count / 2) / count` with C++'s truncating
//!   division, rounding half away from zero (int8, int16; `reference_integer_ops`) or half up
//!   (uint8, whose sums are never negative; `reference_ops`);
//! - then the fused activation's clamp. Integer pools assume, as TFLite does, that input and
//!   output share their quantization.

use std::ops::Range;

use crate::frame::depthwise::DwPlan;
use crate::frame::gemm_f32::F32Clamp;
use crate::frame::window::PAD;
use crate::{Isa, LinalgError, generic};

/// Which reduction a pool applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    /// MAX_POOL_2D.
    Max,
    /// AVERAGE_POOL_2D.
    Average,
}

/// An integer element a pool works on: `i8`, `u8` or `i16`.
pub trait PoolElem: Copy + Send + Sync + 'static {
    /// The value a max pool starts from (the type's lowest).
    const LOWEST: i32;
    /// Whether the average rounds half away from zero (int8, int16) rather than half up (uint8).
    const SYMMETRIC: bool;
    /// The element's value.
    fn to_i32(self) -> i32;
    /// The element of a value within the type's range.
    fn from_i32(v: i32) -> Self;
    /// The elements as bytes, for 8-bit types.
    fn bytes(x: &[Self]) -> Option<&[u8]>;
    /// The elements as mutable bytes, for 8-bit types.
    fn bytes_mut(x: &mut [Self]) -> Option<&mut [u8]>;
}

impl PoolElem for i8 {
    const LOWEST: i32 = i8::MIN as i32;
    const SYMMETRIC: bool = true;
    fn to_i32(self) -> i32 {
        i32::from(self)
    }
    fn from_i32(v: i32) -> Self {
        v as i8
    }
    fn bytes(x: &[Self]) -> Option<&[u8]> {
        Some(bytemuck::cast_slice(x))
    }
    fn bytes_mut(x: &mut [Self]) -> Option<&mut [u8]> {
        Some(bytemuck::cast_slice_mut(x))
    }
}

impl PoolElem for u8 {
    const LOWEST: i32 = 0;
    const SYMMETRIC: bool = false;
    fn to_i32(self) -> i32 {
        i32::from(self)
    }
    fn from_i32(v: i32) -> Self {
        v as u8
    }
    fn bytes(x: &[Self]) -> Option<&[u8]> {
        Some(x)
    }
    fn bytes_mut(x: &mut [Self]) -> Option<&mut [u8]> {
        Some(x)
    }
}

impl PoolElem for i16 {
    const LOWEST: i32 = i16::MIN as i32;
    const SYMMETRIC: bool = true;
    fn to_i32(self) -> i32 {
        i32::from(self)
    }
    fn from_i32(v: i32) -> Self {
        v as i16
    }
    fn bytes(_: &[Self]) -> Option<&[u8]> {
        None
    }
    fn bytes_mut(_: &mut [Self]) -> Option<&mut [u8]> {
        None
    }
}

/// A prepared pool: the window plan and the reduction.
#[derive(Debug, Clone)]
pub struct Pool2d {
    plan: DwPlan,
    kind: PoolKind,
    isa: Isa,
}

impl Pool2d {
    /// A pool of `kind` over `plan`. An average pool refuses windows that lie entirely in the
    /// padding (TFLite fails on them at run time: the count would be 0).
    pub fn new(plan: DwPlan, kind: PoolKind) -> Result<Self, LinalgError> {
        Pool2d::with_isa(Isa::detect(), plan, kind)
    }

    /// [`Pool2d::new`] with kernels of at most `isa`.
    pub fn with_isa(isa: Isa, plan: DwPlan, kind: PoolKind) -> Result<Self, LinalgError> {
        if kind == PoolKind::Average {
            let empty = plan
                .segments(0..plan.rows())?
                .any(|(_, taps)| taps.iter().all(|&t| t == PAD));
            if empty {
                return Err(LinalgError::InvalidParameter(
                    "a pooling window lies entirely in the padding".into(),
                ));
            }
        }
        if plan.taps() > i32::MAX as usize {
            return Err(LinalgError::too_large("pool window"));
        }
        Ok(Pool2d { plan, kind, isa })
    }

    /// The plan.
    pub fn plan(&self) -> &DwPlan {
        &self.plan
    }

    /// The reduction.
    pub fn kind(&self) -> PoolKind {
        self.kind
    }

    /// Pools output rows `rows` of a float image into `out` (exactly those rows).
    pub fn run_f32(
        &self,
        input: &[f32],
        rows: Range<usize>,
        out: &mut [f32],
        clamp: F32Clamp,
    ) -> Result<(), LinalgError> {
        let base = self.check(input.len(), &rows, out.len())?;
        let c = self.plan.channels();
        for (segment, taps) in self.plan.segments(rows)? {
            let start = (segment.first - base) * c;
            let out = &mut out[start..start + segment.count * c];
            generic::pool::f32_segment(self.kind, input, taps, self.plan.step(), c, out, clamp);
        }
        Ok(())
    }

    /// Pools output rows `rows` of an integer image into `out`, clamping to `min..=max`.
    pub fn run_int<T: PoolElem>(
        &self,
        input: &[T],
        rows: Range<usize>,
        out: &mut [T],
        min: i32,
        max: i32,
    ) -> Result<(), LinalgError> {
        let base = self.check(input.len(), &rows, out.len())?;
        let c = self.plan.channels();
        if let Some(bytes) = self.byte_max(input, rows.clone(), out, min, max) {
            return bytes;
        }
        for (segment, taps) in self.plan.segments(rows)? {
            let start = (segment.first - base) * c;
            let out = &mut out[start..start + segment.count * c];
            generic::pool::int_segment(self.kind, input, taps, self.plan.step(), c, out, min, max);
        }
        Ok(())
    }

    /// An 8-bit max pool on the AVX-512 byte kernel, when this CPU has it and `isa` allows it
    /// (`None`: use the generic path). The caller checked the sizes.
    fn byte_max<T: PoolElem>(
        &self,
        input: &[T],
        rows: Range<usize>,
        out: &mut [T],
        min: i32,
        max: i32,
    ) -> Option<Result<(), LinalgError>> {
        #[cfg(target_arch = "x86_64")]
        {
            let (input, out) = (T::bytes(input)?, T::bytes_mut(out)?);
            if self.kind != PoolKind::Max || self.isa < Isa::Avx512 || !Isa::Avx512.is_supported() {
                return None;
            }
            let base = rows.start * self.plan.window().out_w;
            let c = self.plan.channels();
            let run = || -> Result<(), LinalgError> {
                for (segment, taps) in self.plan.segments(rows)? {
                    let start = (segment.first - base) * c;
                    let out = &mut out[start..start + segment.count * c];
                    crate::x86_64::pool_q8::max_pool8_avx512(
                        input,
                        taps,
                        self.plan.step(),
                        c,
                        segment.count,
                        out,
                        (min, max),
                        T::LOWEST < 0,
                    )?;
                }
                Ok(())
            };
            Some(run())
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (input, rows, out, min, max);
            None
        }
    }

    /// Checks sizes; returns the pixel `out` starts at. Every tap of every pixel then lies in
    /// the input (the plan was built for exactly this input size).
    fn check(&self, input: usize, rows: &Range<usize>, out: usize) -> Result<usize, LinalgError> {
        let plan = &self.plan;
        if input != plan.input_len()
            || rows.start > rows.end
            || rows.end > plan.rows()
            || out != (rows.end - rows.start) * plan.row_len()
        {
            return Err(LinalgError::mismatch(format!(
                "pool: {input} input and {out} output elements for rows {rows:?} of {} x {}",
                plan.rows(),
                plan.row_len()
            )));
        }
        Ok(rows.start * plan.window().out_w)
    }
}
