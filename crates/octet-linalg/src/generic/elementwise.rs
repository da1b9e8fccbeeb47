//! The generic element-wise kernels. Every body is `#[inline(always)]` and written so that the
//! compiler can vectorise it (no branches it cannot turn into selects, uniform shifts, the
//! broadcast operand hoisted out of the loop): the x86-64 kernels are these same bodies compiled
//! with AVX2 or AVX-512 enabled.

use octet_core::fixed_point::QuantizedMultiplier;

use crate::LinalgError;
use crate::frame::elementwise::{
    BilinearRow, F32BinaryOp, F32UnaryOp, QuantBinaryOp, QuantBinaryParams, QuantBinaryPrepared,
    QuantElem, QuantPreluParams, QuantPreluPrepared,
};
use crate::frame::gemm_f32::F32Clamp;

// ---------------------------------------------------------------------------------------------
// Fixed-point primitives in a vectorisable form
// ---------------------------------------------------------------------------------------------

/// gemmlowp `SaturatingRoundingDoublingHighMul`: `(a * b + 2^30) >> 31` (the nudged truncating
/// division of gemmlowp rounds exactly like this floor division), saturating `MIN * MIN`.
#[inline(always)]
pub(crate) fn srdhm(a: i32, b: i32) -> i32 {
    let ab = i64::from(a) * i64::from(b);
    let r = ((ab + (1 << 30)) >> 31) as i32;
    if a == i32::MIN && b == i32::MIN {
        i32::MAX
    } else {
        r
    }
}

/// gemmlowp `RoundingDivideByPOT` for `exponent` in `0..=31`: rounds half away from zero.
#[inline(always)]
pub(crate) fn rdbp(x: i32, exponent: u32) -> i32 {
    let mask = ((1u32 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> exponent) + i32::from(remainder > threshold)
}

/// A [`QuantizedMultiplier`] split into the kernels' shifts (both in `0..=31`, validated by the
/// frame).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mult {
    multiplier: i32,
    left: u32,
    right: u32,
}

impl Mult {
    #[inline(always)]
    pub(crate) fn new(m: QuantizedMultiplier) -> Self {
        Mult {
            multiplier: m.multiplier,
            left: m.shift.clamp(0, 31) as u32,
            right: (-m.shift).clamp(0, 31) as u32,
        }
    }

    /// TFLite `MultiplyByQuantizedMultiplier` (double rounding).
    #[inline(always)]
    pub(crate) fn apply(self, x: i32) -> i32 {
        rdbp(
            srdhm(x.wrapping_shl(self.left), self.multiplier),
            self.right,
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Loops over a full and a cyclic operand
// ---------------------------------------------------------------------------------------------

/// `out[i] = f(x[i], g(y[i % y.len()]))`, with `g` applied once when `y` is a scalar.
#[inline(always)]
fn cyclic<X: Copy, Y: Copy, G: Copy, O>(
    x: &[X],
    y: &[Y],
    out: &mut [O],
    g: impl Fn(Y) -> G,
    f: impl Fn(X, G) -> O,
) {
    if let [b] = y {
        let b = g(*b);
        for (o, &a) in out.iter_mut().zip(x) {
            *o = f(a, b);
        }
    } else if !y.is_empty() {
        for (os, xs) in out.chunks_exact_mut(y.len()).zip(x.chunks_exact(y.len())) {
            for ((o, &a), &b) in os.iter_mut().zip(xs).zip(y) {
                *o = f(a, g(b));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Quantized binary ops
// ---------------------------------------------------------------------------------------------

/// `rescale_x` and `rescale_y` of ADD/SUB tabulated over the 256 values of an 8-bit `T`,
/// indexed by the value's byte.
pub(crate) fn rescale_tables<T: QuantElem>(p: &QuantBinaryParams) -> (Vec<i32>, Vec<i32>) {
    let shift = p.left_shift.clamp(0, 31) as u32;
    let table = |offset: i32, m: QuantizedMultiplier| {
        let mut t = vec![0; 256];
        for v in T::MIN..=T::MAX {
            t[(v & 0xff) as usize] = Mult::new(m).apply(v.wrapping_add(offset).wrapping_shl(shift));
        }
        t
    };
    (
        table(p.x_offset, p.x_multiplier),
        table(p.y_offset, p.y_multiplier),
    )
}

/// The generic quantized binary kernel.
pub(crate) fn quant_binary<T: QuantElem>(
    p: &QuantBinaryPrepared,
    x: &[T],
    y: &[T],
    out: &mut [T],
) -> Result<(), LinalgError> {
    quant_binary_body(p, x, y, out);
    Ok(())
}

#[inline(always)]
pub(crate) fn quant_binary_body<T: QuantElem>(
    prepared: &QuantBinaryPrepared,
    x: &[T],
    y: &[T],
    out: &mut [T],
) {
    let p = &prepared.params;
    let output = Mult::new(p.output_multiplier);
    let (zo, lo, hi) = (p.output_offset, p.act_min, p.act_max);
    let finish = move |raw: i32| T::from_i32(output.apply(raw).wrapping_add(zo).clamp(lo, hi));
    let (xo, yo) = (p.x_offset, p.y_offset);
    if p.op == QuantBinaryOp::Mul {
        cyclic(
            x,
            y,
            out,
            |b: T| b.to_i32().wrapping_add(yo),
            |a: T, b| finish(a.to_i32().wrapping_add(xo).wrapping_mul(b)),
        );
        return;
    }
    if let (Ok(xt), Ok(yt)) = (
        <&[i32; 256]>::try_from(prepared.x_table.as_slice()),
        <&[i32; 256]>::try_from(prepared.y_table.as_slice()),
    ) {
        let rescale_x = |a: T| xt[(a.to_i32() & 0xff) as usize];
        let rescale_y = |b: T| yt[(b.to_i32() & 0xff) as usize];
        match p.op {
            QuantBinaryOp::Add => cyclic(x, y, out, rescale_y, |a, b| {
                finish(rescale_x(a).wrapping_add(b))
            }),
            QuantBinaryOp::Sub => cyclic(x, y, out, rescale_y, |a, b| {
                finish(rescale_x(a).wrapping_sub(b))
            }),
            QuantBinaryOp::ReverseSub | QuantBinaryOp::Mul => {
                cyclic(x, y, out, rescale_y, |a, b| {
                    finish(b.wrapping_sub(rescale_x(a)))
                })
            }
        }
        return;
    }
    let shift = p.left_shift.clamp(0, 31) as u32;
    let (xm, ym) = (Mult::new(p.x_multiplier), Mult::new(p.y_multiplier));
    let rescale_x = move |a: T| xm.apply(a.to_i32().wrapping_add(xo).wrapping_shl(shift));
    let rescale_y = move |b: T| ym.apply(b.to_i32().wrapping_add(yo).wrapping_shl(shift));
    match p.op {
        QuantBinaryOp::Add => cyclic(x, y, out, rescale_y, |a, b| {
            finish(rescale_x(a).wrapping_add(b))
        }),
        QuantBinaryOp::Sub => cyclic(x, y, out, rescale_y, |a, b| {
            finish(rescale_x(a).wrapping_sub(b))
        }),
        QuantBinaryOp::ReverseSub | QuantBinaryOp::Mul => cyclic(x, y, out, rescale_y, |a, b| {
            finish(b.wrapping_sub(rescale_x(a)))
        }),
    }
}

/// One element of an 8-bit ADD or SUB through the rescaling tables (the fallback of the
/// checked float kernels).
#[inline]
pub(crate) fn quant_binary8_one<T: QuantElem>(prepared: &QuantBinaryPrepared, a: T, b: T) -> T {
    let p = &prepared.params;
    let (xt, yt) = (&prepared.x_table, &prepared.y_table);
    let ra = xt[(a.to_i32() & 0xff) as usize];
    let rb = yt[(b.to_i32() & 0xff) as usize];
    let raw = match p.op {
        QuantBinaryOp::Add => ra.wrapping_add(rb),
        QuantBinaryOp::Sub => ra.wrapping_sub(rb),
        QuantBinaryOp::ReverseSub | QuantBinaryOp::Mul => rb.wrapping_sub(ra),
    };
    T::from_i32(
        Mult::new(p.output_multiplier)
            .apply(raw)
            .wrapping_add(p.output_offset)
            .clamp(p.act_min, p.act_max),
    )
}

/// One element of PRELU with its alpha (the fallback of the checked float kernels).
#[inline]
pub(crate) fn quant_prelu_one<T: QuantElem>(p: &QuantPreluParams, q: T, a: i32) -> T {
    let v = q.to_i32().wrapping_add(p.input_offset);
    let r = if v >= 0 {
        Mult::new(p.identity_multiplier).apply(v)
    } else {
        Mult::new(p.alpha_multiplier).apply(v.wrapping_mul(a))
    };
    T::from_i32(r.wrapping_add(p.output_offset).clamp(p.min, p.max))
}

// ---------------------------------------------------------------------------------------------
// Quantized PRELU
// ---------------------------------------------------------------------------------------------

/// The non-negative branch of an 8-bit PRELU for every input byte (zeros for other types;
/// entries of negative inputs are computed but never used).
pub(crate) fn prelu_positive_table<T: QuantElem>(p: &QuantPreluParams) -> [u8; 256] {
    let mut table = [0u8; 256];
    if T::MAX - T::MIN == 255 {
        let identity = Mult::new(p.identity_multiplier);
        for v in T::MIN..=T::MAX {
            let r = identity.apply(v.wrapping_add(p.input_offset));
            table[(v & 0xff) as usize] =
                (r.wrapping_add(p.output_offset).clamp(p.min, p.max) & 0xff) as u8;
        }
    }
    table
}

/// The generic quantized PRELU kernel.
pub(crate) fn quant_prelu<T: QuantElem>(
    p: &QuantPreluPrepared,
    x: &[T],
    out: &mut [T],
) -> Result<(), LinalgError> {
    quant_prelu_body(&p.params, x, out);
    Ok(())
}

#[inline(always)]
pub(crate) fn quant_prelu_body<T: QuantElem>(p: &QuantPreluParams, x: &[T], out: &mut [T]) {
    let identity = Mult::new(p.identity_multiplier);
    let alpha = Mult::new(p.alpha_multiplier);
    let (xo, zo, lo, hi) = (p.input_offset, p.output_offset, p.min, p.max);
    cyclic(
        x,
        &p.alpha,
        out,
        |a: i32| a,
        |q: T, a| {
            let v = q.to_i32().wrapping_add(xo);
            // Both branches computed, one selected: no data-dependent control flow.
            let positive = identity.apply(v);
            let negative = alpha.apply(v.wrapping_mul(a));
            let r = if v >= 0 { positive } else { negative };
            T::from_i32(r.wrapping_add(zo).clamp(lo, hi))
        },
    );
}

// ---------------------------------------------------------------------------------------------
// 8-bit lookup tables
// ---------------------------------------------------------------------------------------------

/// The generic table lookup.
pub(crate) fn lut8(table: &[u8; 256], x: &[u8], out: &mut [u8]) -> Result<(), LinalgError> {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = table[usize::from(v)];
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Float binary ops
// ---------------------------------------------------------------------------------------------

/// The generic float binary kernel.
pub(crate) fn f32_binary(
    op: F32BinaryOp,
    clamp: F32Clamp,
    x: &[f32],
    y: &[f32],
    out: &mut [f32],
) -> Result<(), LinalgError> {
    f32_binary_body(op, clamp, x, y, out);
    Ok(())
}

#[inline(always)]
pub(crate) fn f32_binary_body(
    op: F32BinaryOp,
    clamp: F32Clamp,
    x: &[f32],
    y: &[f32],
    out: &mut [f32],
) {
    let id = |b: f32| b;
    let c = move |v: f32| clamp.apply(v);
    match op {
        F32BinaryOp::Add => cyclic(x, y, out, id, |a, b| c(a + b)),
        F32BinaryOp::Sub => cyclic(x, y, out, id, |a, b| c(a - b)),
        F32BinaryOp::ReverseSub => cyclic(x, y, out, id, |a, b| c(b - a)),
        F32BinaryOp::Mul => cyclic(x, y, out, id, |a, b| c(a * b)),
        F32BinaryOp::Max => cyclic(x, y, out, id, |a, b| c(if a > b { a } else { b })),
        F32BinaryOp::ReverseMax => cyclic(x, y, out, id, |a, b| c(if b > a { b } else { a })),
        F32BinaryOp::Min => cyclic(x, y, out, id, |a, b| c(if a < b { a } else { b })),
        F32BinaryOp::ReverseMin => cyclic(x, y, out, id, |a, b| c(if b < a { b } else { a })),
        F32BinaryOp::Prelu => cyclic(x, y, out, id, |a, b| c(if a >= 0.0 { a } else { a * b })),
    }
}

// ---------------------------------------------------------------------------------------------
// Float unary ops
// ---------------------------------------------------------------------------------------------

/// One element of a float activation, as TFLite's float kernels compute it.
#[inline(always)]
pub(crate) fn f32_unary_one(op: F32UnaryOp, x: f32) -> f32 {
    match op {
        F32UnaryOp::Relu => x.max(0.0),
        F32UnaryOp::Relu6 => x.clamp(0.0, 6.0),
        F32UnaryOp::ReluN1To1 => x.clamp(-1.0, 1.0),
        F32UnaryOp::LeakyRelu(alpha) => {
            if x > 0.0 {
                x
            } else {
                x * alpha
            }
        }
        F32UnaryOp::HardSwish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
        F32UnaryOp::Logistic => {
            let x = if x.is_nan() {
                x
            } else {
                x.clamp(-100.0, 100.0)
            };
            1.0 / (1.0 + (-x).exp())
        }
        F32UnaryOp::Tanh => x.tanh(),
        F32UnaryOp::Elu => {
            if x < 0.0 {
                x.exp_m1()
            } else {
                x
            }
        }
    }
}

/// The generic float unary kernel.
pub(crate) fn f32_unary(op: F32UnaryOp, x: &[f32], out: &mut [f32]) -> Result<(), LinalgError> {
    f32_unary_body(op, x, out);
    Ok(())
}

/// Each op gets its own loop so that the compiler vectorises the cheap ones.
#[inline(always)]
pub(crate) fn f32_unary_body(op: F32UnaryOp, x: &[f32], out: &mut [f32]) {
    macro_rules! map {
        ($op:expr) => {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = f32_unary_one($op, v);
            }
        };
    }
    match op {
        F32UnaryOp::Relu => map!(F32UnaryOp::Relu),
        F32UnaryOp::Relu6 => map!(F32UnaryOp::Relu6),
        F32UnaryOp::ReluN1To1 => map!(F32UnaryOp::ReluN1To1),
        F32UnaryOp::LeakyRelu(alpha) => map!(F32UnaryOp::LeakyRelu(alpha)),
        F32UnaryOp::HardSwish => map!(F32UnaryOp::HardSwish),
        F32UnaryOp::Logistic => map!(F32UnaryOp::Logistic),
        F32UnaryOp::Tanh => map!(F32UnaryOp::Tanh),
        F32UnaryOp::Elu => map!(F32UnaryOp::Elu),
    }
}

// ---------------------------------------------------------------------------------------------
// QUANTIZE and DEQUANTIZE
// ---------------------------------------------------------------------------------------------

/// `f32::round` (half away from zero) in a vectorisable form: the fraction `y - trunc(y)` is
/// exact, so comparing it with 0.5 decides the rounding exactly.
#[inline(always)]
fn round_half_away(y: f32) -> f32 {
    let t = y.trunc();
    if (y - t).abs() >= 0.5 {
        t + 1f32.copysign(y)
    } else {
        t
    }
}

/// One element of QUANTIZE (see [`Quantize`](crate::frame::elementwise::Quantize)).
#[inline(always)]
pub(crate) fn quantize_one<T: QuantElem>(scale: f32, zero_point: i32, x: f32) -> T {
    let r = round_half_away(x / scale);
    // cvttss2si: NaN and out-of-range values give i32::MIN (NaN fails both comparisons).
    let i = if (-2_147_483_648.0..2_147_483_648.0).contains(&r) {
        r as i32
    } else {
        i32::MIN
    };
    T::from_i32(i.wrapping_add(zero_point).clamp(T::MIN, T::MAX))
}

/// The generic quantize kernel.
pub(crate) fn quantize<T: QuantElem>(
    scale: f32,
    zero_point: i32,
    x: &[f32],
    out: &mut [T],
) -> Result<(), LinalgError> {
    quantize_body(scale, zero_point, x, out);
    Ok(())
}

#[inline(always)]
pub(crate) fn quantize_body<T: QuantElem>(scale: f32, zero_point: i32, x: &[f32], out: &mut [T]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = quantize_one(scale, zero_point, v);
    }
}

/// The generic dequantize kernel.
pub(crate) fn dequantize<T: QuantElem>(
    scale: f32,
    zero_point: i32,
    x: &[T],
    out: &mut [f32],
) -> Result<(), LinalgError> {
    dequantize_body(scale, zero_point, x, out);
    Ok(())
}

#[inline(always)]
pub(crate) fn dequantize_body<T: QuantElem>(scale: f32, zero_point: i32, x: &[T], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = scale * v.to_i32().wrapping_sub(zero_point) as f32;
    }
}

// ---------------------------------------------------------------------------------------------
// Bilinear resize rows
// ---------------------------------------------------------------------------------------------

/// The generic float bilinear row.
pub(crate) fn bilinear_f32(
    row: &BilinearRow<'_, f32, f32>,
    out: &mut [f32],
) -> Result<(), LinalgError> {
    bilinear_f32_body(row, out);
    Ok(())
}

#[inline(always)]
pub(crate) fn bilinear_f32_body(row: &BilinearRow<'_, f32, f32>, out: &mut [f32]) {
    let (depth, dy) = (row.depth, row.dy);
    if depth == 0 {
        return;
    }
    for (c, dst) in row.cols.iter().zip(out.chunks_exact_mut(depth)) {
        let dx = c.frac;
        let (l, u) = (c.lower * depth, c.upper * depth);
        let (Some(p00), Some(p10), Some(p01), Some(p11)) = (
            row.top.get(l..l + depth),
            row.bottom.get(l..l + depth),
            row.top.get(u..u + depth),
            row.bottom.get(u..u + depth),
        ) else {
            return;
        };
        let corners = p00.iter().zip(p10).zip(p01.iter().zip(p11));
        for (o, ((&v00, &v10), (&v01, &v11))) in dst.iter_mut().zip(corners) {
            *o = v00 * (1.0 - dy) * (1.0 - dx)
                + v10 * dy * (1.0 - dx)
                + v01 * (1.0 - dy) * dx
                + v11 * dy * dx;
        }
    }
}

/// The generic int8 bilinear row.
pub(crate) fn bilinear_i8(
    row: &BilinearRow<'_, i8, i32>,
    out: &mut [i8],
) -> Result<(), LinalgError> {
    bilinear_i8_body(row, out);
    Ok(())
}

/// With `|v| <= 128` and fractions in `[-512, 1024]`, every product and sum of TFLite's 64-bit
/// blend fits in `i32` (at most 128 * (1536 + 512)^2 < 2^30), so 32-bit arithmetic gives the
/// same values.
#[inline(always)]
pub(crate) fn bilinear_i8_body(row: &BilinearRow<'_, i8, i32>, out: &mut [i8]) {
    let (depth, dy) = (row.depth, row.dy);
    if depth == 0 {
        return;
    }
    let one = 1 << 10;
    for (c, dst) in row.cols.iter().zip(out.chunks_exact_mut(depth)) {
        let dx = c.frac;
        let w00 = (one - dy) * (one - dx);
        let w10 = dy * (one - dx);
        let w01 = (one - dy) * dx;
        let w11 = dy * dx;
        let (l, u) = (c.lower * depth, c.upper * depth);
        let (Some(p00), Some(p10), Some(p01), Some(p11)) = (
            row.top.get(l..l + depth),
            row.bottom.get(l..l + depth),
            row.top.get(u..u + depth),
            row.bottom.get(u..u + depth),
        ) else {
            return;
        };
        let corners = p00.iter().zip(p10).zip(p01.iter().zip(p11));
        for (o, ((&v00, &v10), (&v01, &v11))) in dst.iter_mut().zip(corners) {
            let acc = i32::from(v00) * w00
                + i32::from(v10) * w10
                + i32::from(v01) * w01
                + i32::from(v11) * w11;
            // Half away from zero, then C++'s truncating division by 2^20.
            let round = if acc > 0 { 1 << 19 } else { -(1 << 19) };
            *o = ((acc + round) / (1 << 20)) as i8;
        }
    }
}

/// Smallest and largest finite value of `x` (see [`FiniteRange`](crate::frame::elementwise::FiniteRange)).
pub(crate) fn finite_range(x: &[f32]) -> Option<(f32, f32)> {
    finite_range_body(x)
}

/// 16 independent minima and maxima, over integer keys that order like the floats (so the
/// compiler vectorises the loop with integer min/max, which have no NaN cases to handle): a
/// finite value's key is its bits with the magnitude bits flipped for negative values; a value
/// that is not finite gets the neutral key instead.
#[inline(always)]
pub(crate) fn finite_range_body(x: &[f32]) -> Option<(f32, f32)> {
    const LANES: usize = 16;
    let key = |v: f32| {
        let bits = v.to_bits() as i32;
        bits ^ ((bits >> 31) & 0x7fff_ffff)
    };
    let value = |k: i32| f32::from_bits((k ^ ((k >> 31) & 0x7fff_ffff)) as u32);
    let mut lo = [i32::MAX; LANES];
    let mut hi = [i32::MIN; LANES];
    let (blocks, rest) = x.as_chunks::<LANES>();
    for block in blocks {
        for i in 0..LANES {
            let v = block[i];
            // Finite: the exponent is not all ones (NaN and the infinities are skipped).
            let finite = v.to_bits() & 0x7f80_0000 != 0x7f80_0000;
            let k = key(v);
            lo[i] = lo[i].min(if finite { k } else { i32::MAX });
            hi[i] = hi[i].max(if finite { k } else { i32::MIN });
        }
    }
    for (i, &v) in rest.iter().enumerate() {
        if v.to_bits() & 0x7f80_0000 != 0x7f80_0000 {
            lo[i] = lo[i].min(key(v));
            hi[i] = hi[i].max(key(v));
        }
    }
    let lo = lo.into_iter().min().unwrap_or(i32::MAX);
    let hi = hi.into_iter().max().unwrap_or(i32::MIN);
    (lo <= hi).then(|| (value(lo), value(hi)))
}
