//! The generic quantized GEMM micro-kernels and input conversions: the plain-Rust twins every
//! SIMD kernel is tested against.

use crate::frame::gemm::{Tile, UkernelInfo};
use crate::frame::gemm_q::{OutputStage, QConvertKernels, QGemmUkernel, QIn, QOut, check_convert};
use crate::frame::window::PAD;
use crate::{Isa, LinalgError};

/// The generic kernels: index 0 is the VNNI twin, index 1 the 16-bit twin.
pub(crate) const UKERNELS: [QGemmUkernel; 2] = [
    QGemmUkernel::vnni(
        UkernelInfo {
            isa: Isa::Generic,
            name: "q vnni 4x8 generic",
            mr: 4,
            nr: 8,
            kr: 4,
        },
        gemm::<u8, i8, 4, 8, 4>,
    ),
    QGemmUkernel::madd16(
        UkernelInfo {
            isa: Isa::Generic,
            name: "q madd16 4x8 generic",
            mr: 4,
            nr: 8,
            kr: 2,
        },
        gemm::<i16, i16, 4, 8, 2>,
    ),
];

/// The generic conversions.
pub(crate) const CONVERT: QConvertKernels = QConvertKernels::new(Isa::Generic, to_u8, to_i16);

/// An operand element widened to `i32`.
trait Widen: Copy {
    fn widen(self) -> i32;
}

impl Widen for u8 {
    fn widen(self) -> i32 {
        i32::from(self)
    }
}

impl Widen for i8 {
    fn widen(self) -> i32 {
        i32::from(self)
    }
}

impl Widen for i16 {
    fn widen(self) -> i32 {
        i32::from(self)
    }
}

/// `out[r][c] = stage(bias[c] + sum_t sum_k a(r, t)[k] * w[c][t][k])` with wrapping `i32`
/// arithmetic, `KR` elements of `k` grouped per packed column.
fn gemm<A: Widen, W: Widen, const MR: usize, const NR: usize, const KR: usize>(
    tile: &Tile<'_, A, W, i32>,
    stage: &OutputStage<'_>,
    mut out: QOut<'_>,
    out_stride: usize,
) -> Result<(), LinalgError> {
    tile.check(NR, KR, out.len(), out_stride)?;
    let blocks = tile.n.div_ceil(NR);
    stage.check(blocks * NR)?;
    let (ks, kc) = (tile.ks, tile.kc);
    let block_len = ks * kc * NR;
    for row0 in (0..tile.m).step_by(MR) {
        let m = MR.min(tile.m - row0);
        for block in 0..blocks {
            let weights = &tile.weights[block * block_len..(block + 1) * block_len];
            let bias = &tile.bias[block * NR..(block + 1) * NR];
            let mut acc = [[0i32; NR]; MR];
            for row in &mut acc[..m] {
                row.copy_from_slice(bias);
            }
            for t in 0..ks {
                let taps = &weights[t * kc * NR..(t + 1) * kc * NR];
                for (r, row) in acc[..m].iter_mut().enumerate() {
                    let offset = tile.offsets[(row0 + r) * ks + t];
                    let a = if offset == PAD {
                        &tile.zero[..kc]
                    } else {
                        &tile.input[offset as usize..offset as usize + kc]
                    };
                    for (a, w) in a.chunks_exact(KR).zip(taps.chunks_exact(NR * KR)) {
                        for (acc, w) in row.iter_mut().zip(w.chunks_exact(KR)) {
                            for (&x, &w) in a.iter().zip(w) {
                                *acc = acc.wrapping_add(x.widen().wrapping_mul(w.widen()));
                            }
                        }
                    }
                }
            }
            let first = block * NR;
            let cols = NR.min(tile.n - first);
            for (r, row) in acc[..m].iter().enumerate() {
                let start = (row0 + r) * out_stride + first;
                for (c, &v) in row[..cols].iter().enumerate() {
                    let y = stage.apply(v, first + c);
                    let i = start + c;
                    // Truncating narrowing, as TFLite's `static_cast` of the clamped value.
                    match &mut out {
                        QOut::I8(o) => o[i] = y as i8,
                        QOut::U8(o) => o[i] = y as u8,
                        QOut::I16(o) => o[i] = y as i16,
                    }
                }
            }
        }
    }
    Ok(())
}

/// Copies pixels of `channels` elements to `stride` apart, converted with `f`, zeroing the gaps
/// and the tail of `out`.
fn convert<X: Copy, Y: Copy + Default>(
    input: &[X],
    channels: usize,
    stride: usize,
    out: &mut [Y],
    f: impl Fn(X) -> Y,
) -> Result<(), LinalgError> {
    let pixels = check_convert(input.len(), channels, stride, out.len())?;
    let (body, tail) = out.split_at_mut(pixels * stride);
    for (x, y) in input
        .chunks_exact(channels)
        .zip(body.chunks_exact_mut(stride))
    {
        let (values, gap) = y.split_at_mut(channels);
        for (y, &x) in values.iter_mut().zip(x) {
            *y = f(x);
        }
        gap.fill(Y::default());
    }
    tail.fill(Y::default());
    Ok(())
}

/// `x ^ 0x80`: int8 to the VNNI kernels' u8 (`x + 128`).
fn to_u8(input: &[i8], channels: usize, stride: usize, out: &mut [u8]) -> Result<(), LinalgError> {
    convert(input, channels, stride, out, |x| (x as u8) ^ 0x80)
}

/// `x + offset` as i16, wrapping.
fn to_i16(
    input: QIn<'_>,
    offset: i32,
    channels: usize,
    stride: usize,
    out: &mut [i16],
) -> Result<(), LinalgError> {
    let offset = offset as i16;
    match input {
        QIn::I8(x) => convert(x, channels, stride, out, |x| {
            i16::from(x).wrapping_add(offset)
        }),
        QIn::U8(x) => convert(x, channels, stride, out, |x| {
            i16::from(x).wrapping_add(offset)
        }),
        QIn::I16(x) => convert(x, channels, stride, out, |x| x.wrapping_add(offset)),
    }
}
