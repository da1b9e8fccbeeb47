//! The pooling kernels in plain Rust, written over whole channel runs so that the compiler
//! vectorises them: one segment (see [`crate::frame::pool`]) at a time, the output row itself
//! (float) or a block of int32 accumulators on the stack (integers) holding the running values.

use crate::frame::gemm_f32::F32Clamp;
use crate::frame::pool::{PoolElem, PoolKind};
use crate::frame::window::PAD;

/// Channels per integer accumulator block.
const BLOCK: usize = 64;

/// The in-image taps of a segment.
fn image_taps(taps: &[u32]) -> impl Iterator<Item = usize> + '_ {
    taps.iter().filter(|&&t| t != PAD).map(|&t| t as usize)
}

/// One float segment: `out` holds its pixels (`c` channels each), taps advance by `step`. The
/// caller checked that every tap of every pixel lies in `input`.
pub(crate) fn f32_segment(
    kind: PoolKind,
    input: &[f32],
    taps: &[u32],
    step: usize,
    c: usize,
    out: &mut [f32],
    clamp: F32Clamp,
) {
    let count = image_taps(taps).count() as f32;
    for (p, dst) in out.chunks_exact_mut(c).enumerate() {
        match kind {
            PoolKind::Max => {
                dst.fill(f32::MIN);
                for t in image_taps(taps) {
                    let src = &input[t + p * step..t + p * step + c];
                    for (a, &x) in dst.iter_mut().zip(src) {
                        *a = if *a < x { x } else { *a };
                    }
                }
                for a in dst.iter_mut() {
                    *a = clamp.apply(*a);
                }
            }
            PoolKind::Average => {
                dst.fill(0.0);
                for t in image_taps(taps) {
                    let src = &input[t + p * step..t + p * step + c];
                    for (a, &x) in dst.iter_mut().zip(src) {
                        *a += x;
                    }
                }
                for a in dst.iter_mut() {
                    *a = clamp.apply(*a / count);
                }
            }
        }
    }
}

/// One integer segment (see [`f32_segment`]), clamped to `min..=max`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn int_segment<T: PoolElem>(
    kind: PoolKind,
    input: &[T],
    taps: &[u32],
    step: usize,
    c: usize,
    out: &mut [T],
    min: i32,
    max: i32,
) {
    // At most `taps` (checked below i32::MAX at prepare).
    let count = image_taps(taps).count() as i32;
    let half = count / 2;
    for (p, dst) in out.chunks_exact_mut(c).enumerate() {
        for (block, dst) in dst.chunks_mut(BLOCK).enumerate() {
            let first = block * BLOCK;
            let n = dst.len();
            let mut acc = [0i32; BLOCK];
            let acc = &mut acc[..n];
            match kind {
                PoolKind::Max => {
                    acc.fill(T::LOWEST);
                    for t in image_taps(taps) {
                        let start = t + p * step + first;
                        for (a, &x) in acc.iter_mut().zip(&input[start..start + n]) {
                            *a = (*a).max(x.to_i32());
                        }
                    }
                }
                PoolKind::Average => {
                    for t in image_taps(taps) {
                        let start = t + p * step + first;
                        for (a, &x) in acc.iter_mut().zip(&input[start..start + n]) {
                            *a = a.wrapping_add(x.to_i32());
                        }
                    }
                    for a in acc.iter_mut() {
                        // C++'s truncating division; `count` is at least 1 for an average.
                        let biased = if T::SYMMETRIC && *a <= 0 {
                            a.wrapping_sub(half)
                        } else {
                            a.wrapping_add(half)
                        };
                        *a = biased.wrapping_div(count.max(1));
                    }
                }
            }
            for (o, &a) in dst.iter_mut().zip(acc.iter()) {
                *o = T::from_i32(a.clamp(min, max));
            }
        }
    }
}
