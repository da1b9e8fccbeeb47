//! The generic float GEMM micro-kernel: the plain-Rust twin every SIMD kernel is tested against.

use crate::frame::gemm::{Tile, UkernelInfo};
use crate::frame::gemm_f32::{F32Clamp, F32Epilogue, F32GemmUkernel, f16_to_f32};
use crate::frame::window::PAD;
use crate::{Isa, LinalgError};

/// The generic float kernels (one tile shape: the generic code gains nothing from others).
pub(crate) const UKERNELS: [F32GemmUkernel; 1] = [F32GemmUkernel::with_f16(
    UkernelInfo {
        isa: Isa::Generic,
        name: "f32 4x8 generic",
        mr: 4,
        nr: 8,
        kr: 1,
    },
    gemm::<f32, 4, 8>,
    gemm::<u16, 4, 8>,
)];

/// A packed weight: `f32`, or a binary16 bit pattern widened exactly.
trait Weight: Copy {
    fn value(self) -> f32;
}

impl Weight for f32 {
    fn value(self) -> f32 {
        self
    }
}

impl Weight for u16 {
    fn value(self) -> f32 {
        f16_to_f32(self)
    }
}

/// `out[r][c] = epilogue(clamp(sum_t sum_k a(r, t)[k] * w[c][t][k] + bias[c]))`: the sum starts at 0,
/// runs over taps then `k` with one fused multiply-add per term, and the bias comes last. Every
/// SIMD kernel computes each output in exactly this order with the same fused operations, so all
/// instruction sets give the same bits (and calibration, hence the quantizer's output, does not
/// depend on the machine). TFLite's reference kernels round the product and the sum separately,
/// so they differ in the last bits.
fn gemm<W: Weight, const MR: usize, const NR: usize>(
    tile: &Tile<'_, f32, W, f32>,
    clamp: F32Clamp,
    epilogue: F32Epilogue<'_>,
    out: &mut [f32],
    out_stride: usize,
) -> Result<(), LinalgError> {
    tile.check(NR, 1, out.len(), out_stride)?;
    epilogue.check(tile.m, tile.n, NR, out_stride)?;
    let (ks, kc) = (tile.ks, tile.kc);
    let block_len = ks * kc * NR;
    for row0 in (0..tile.m).step_by(MR) {
        let m = MR.min(tile.m - row0);
        for block in 0..tile.n.div_ceil(NR) {
            let weights = &tile.weights[block * block_len..(block + 1) * block_len];
            let bias = &tile.bias[block * NR..(block + 1) * NR];
            let mut acc = [[0f32; NR]; MR];
            for t in 0..ks {
                let taps = &weights[t * kc * NR..(t + 1) * kc * NR];
                for (r, row) in acc[..m].iter_mut().enumerate() {
                    let offset = tile.offsets[(row0 + r) * ks + t];
                    let a = if offset == PAD {
                        &tile.zero[..kc]
                    } else {
                        &tile.input[offset as usize..offset as usize + kc]
                    };
                    for (&x, w) in a.iter().zip(taps.chunks_exact(NR)) {
                        for (acc, &w) in row.iter_mut().zip(w) {
                            *acc = x.mul_add(w.value(), *acc);
                        }
                    }
                }
            }
            let first = block * NR;
            let cols = NR.min(tile.n - first);
            for (r, row) in acc[..m].iter().enumerate() {
                let start = (row0 + r) * out_stride + first;
                let outputs = out[start..start + cols].iter_mut().zip(row).zip(bias);
                for (c, ((o, &v), &b)) in outputs.enumerate() {
                    *o = epilogue.apply(clamp.apply(v + b), row0 + r, first + c, out_stride);
                }
            }
        }
    }
    Ok(())
}
