//! The generic depthwise micro-kernels: the plain-Rust twins every SIMD kernel is tested
//! against.

use crate::frame::depthwise::{
    DwTile, DwUkernelInfo, F32DwUkernel, Q8DwUkernel, Q8OutputStage, unpack_q8_weight,
};
use crate::frame::gemm_f32::F32Clamp;
use crate::frame::window::PAD;
use crate::{Isa, LinalgError};

const CR: usize = 8;

/// The generic float kernel (any tap count).
pub(crate) const F32_UKERNELS: [F32DwUkernel; 1] = [F32DwUkernel::new(
    DwUkernelInfo {
        isa: Isa::Generic,
        name: "f32 dw 8 generic",
        cr: CR,
        taps: 0,
    },
    f32_dw_cr::<CR>,
)];

/// The generic 8-bit kernel (any tap count).
pub(crate) const Q8_UKERNELS: [Q8DwUkernel; 1] = [Q8DwUkernel::new(
    DwUkernelInfo {
        isa: Isa::Generic,
        name: "q8 dw 8 generic",
        cr: CR,
        taps: 0,
    },
    q8_dw_cr::<CR>,
)];

/// The elements tap `t` of pixel `p` reads, starting at channel `first`.
fn tap_row<'a, T>(tile: &DwTile<'a, T, impl Sized, impl Sized>, t: usize, p: usize) -> &'a [T] {
    let offset = tile.taps[t];
    if offset == PAD {
        tile.zero
    } else {
        &tile.input[offset as usize + p * tile.step..]
    }
}

/// `out[p][c] = clamp(sum_t x(p, t)[c] * w[t][c] + bias[c])` over the in-image taps: summed
/// from zero in tap order with one fused multiply-add per tap (`f32::mul_add`), then the bias
/// (the SIMD kernels compute exactly this, so all instruction sets give the same bits; TFLite's
/// reference rounds each product instead, XNNPACK fuses as here). Weights packed in blocks of
/// `CR` channels (the SIMD kernels hand filters too large for them to this with their own block
/// size).
pub(crate) fn f32_dw_cr<const CR: usize>(
    tile: &DwTile<'_, f32, f32, f32>,
    clamp: F32Clamp,
    out: &mut [f32],
) -> Result<(), LinalgError> {
    let ks = tile.taps.len();
    tile.check(CR, ks, out.len())?;
    let c = tile.channels;
    for p in 0..tile.pixels {
        let dst = &mut out[p * c..(p + 1) * c];
        for (block, dst) in dst.chunks_mut(CR).enumerate() {
            let first = block * CR;
            let weights = &tile.weights[block * ks * CR..(block + 1) * ks * CR];
            let mut acc = [0f32; CR];
            for (t, w) in weights.chunks_exact(CR).enumerate() {
                if tile.taps[t] == PAD {
                    continue;
                }
                let x = &tap_row(tile, t, p)[first..first + dst.len()];
                for ((a, &x), &w) in acc.iter_mut().zip(x).zip(w) {
                    *a = x.mul_add(w, *a);
                }
            }
            for ((o, &a), &b) in dst.iter_mut().zip(&acc).zip(&tile.bias[first..]) {
                *o = clamp.apply(a + b);
            }
        }
    }
    Ok(())
}

/// `out[p][c] = stage(bias[c] + sum_t x(p, t)[c] * w[t][c])` with wrapping int32 arithmetic,
/// weights packed in blocks of `CR` channels.
pub(crate) fn q8_dw_cr<const CR: usize>(
    tile: &DwTile<'_, u8, i32, i32>,
    stage: &Q8OutputStage<'_>,
    out: &mut [u8],
) -> Result<(), LinalgError> {
    let ks = tile.taps.len();
    tile.check(CR, ks, out.len())?;
    let c = tile.channels;
    let value = |x: u8| {
        if stage.signed {
            i32::from(x as i8)
        } else {
            i32::from(x)
        }
    };
    for p in 0..tile.pixels {
        let dst = &mut out[p * c..(p + 1) * c];
        for (block, dst) in dst.chunks_mut(CR).enumerate() {
            let first = block * CR;
            let weights = &tile.weights[block * ks * CR..(block + 1) * ks * CR];
            let mut acc = [0i32; CR];
            acc.copy_from_slice(&tile.bias[first..first + CR]);
            for (t, w) in weights.chunks_exact(CR).enumerate() {
                let x = &tap_row(tile, t, p)[first..first + dst.len()];
                for ((a, &x), &w) in acc.iter_mut().zip(x).zip(w) {
                    *a = a.wrapping_add(value(x).wrapping_mul(unpack_q8_weight(w)));
                }
            }
            for (i, (o, &a)) in dst.iter_mut().zip(&acc).enumerate() {
                *o = stage.apply(a, first + i);
            }
        }
    }
    Ok(())
}
