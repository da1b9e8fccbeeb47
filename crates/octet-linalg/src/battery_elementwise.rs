//! The element-wise battery: the generic kernels against `octet_core::fixed_point` (TFLite's
//! arithmetic), and every kernel of every supported instruction set against the generic one,
//! bit for bit, on lengths off the vector grid, every broadcast period, extreme zero points and
//! every clamp.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use octet_core::fixed_point::{
    QuantizedMultiplier, multiply_by_quantized_multiplier, quantize_multiplier,
    quantize_multiplier_smaller_than_one_exp, rounding_divide_by_pot_i32,
    saturating_rounding_doubling_high_mul_i32,
};

use crate::Isa;
use crate::battery::Rng;
use crate::frame::elementwise::{
    Dequantize, F32Binary, F32BinaryOp, F32Unary, F32UnaryOp, Lut8, QuantBinary, QuantBinaryOp,
    QuantBinaryParams, QuantElem, QuantPrelu, QuantPreluParams, Quantize,
};
use crate::frame::gemm_f32::F32Clamp;
use crate::generic::elementwise::{Mult, rdbp, srdhm};

fn i32_in(rng: &mut Rng, lo: i32, hi: i32) -> i32 {
    lo + rng.usize(0..=(hi - lo) as usize) as i32
}

fn values<T: QuantElem>(rng: &mut Rng, len: usize) -> Vec<T> {
    (0..len)
        .map(|_| T::from_i32(i32_in(rng, T::MIN, T::MAX)))
        .collect()
}

/// A length off the vector grid, a multiple of `period`.
fn length(rng: &mut Rng, period: usize) -> usize {
    period * rng.usize(0..=(300 / period).max(1))
}

/// Scale factors from 2^-12 to 2^3 with random mantissas.
fn scale(rng: &mut Rng) -> f32 {
    (1.0 + rng.f32s(1)[0].abs()) * 2f32.powi(i32_in(rng, -12, 3))
}

#[test]
fn fixed_point_primitives_match_core() {
    let mut rng = Rng::new(1);
    let specials = [
        i32::MIN,
        i32::MIN + 1,
        -1,
        0,
        1,
        i32::MAX,
        1 << 30,
        -(1 << 30),
    ];
    let mut samples: Vec<i32> = specials.to_vec();
    samples.extend((0..2000).map(|_| {
        let bits = rng.usize(0..=31) as u32;
        let v = (rng.usize(0..=u32::MAX as usize) as u32 >> (31 - bits)) as i32;
        if rng.bool() { v.wrapping_neg() } else { v }
    }));
    for &a in &samples {
        for &b in samples.iter().step_by(97) {
            assert_eq!(
                srdhm(a, b),
                saturating_rounding_doubling_high_mul_i32(a, b),
                "{a} {b}"
            );
        }
        for e in 0..=31 {
            assert_eq!(
                rdbp(a, e),
                rounding_divide_by_pot_i32(a, e as i32),
                "{a} {e}"
            );
        }
    }
    for _ in 0..500 {
        let m = quantize_multiplier(f64::from(scale(&mut rng)) / 64.0).unwrap();
        for &x in samples.iter().step_by(13) {
            // TFLite keeps x * 2^shift within i32; the wrapping beyond it matches core too.
            assert_eq!(
                Mult::new(m).apply(x),
                multiply_by_quantized_multiplier(x, m),
                "{x} {m:?}"
            );
        }
    }
}

fn add_params<T: QuantElem>(rng: &mut Rng, op: QuantBinaryOp) -> QuantBinaryParams {
    let wide = T::MAX > 255;
    let zp = |rng: &mut Rng| {
        if wide {
            0
        } else {
            [T::MIN, T::MAX, i32_in(rng, T::MIN, T::MAX)][rng.usize(0..=2)]
        }
    };
    let (s1, s2) = (scale(rng), scale(rng));
    // Output scales from 2^-10 to 2^5 times the larger input scale (TFLite's multipliers
    // must stay below 1).
    let so = s1.max(s2) * scale(rng) * 4.0;
    let (act_min, act_max) = match rng.usize(0..=2) {
        0 => (T::MIN, T::MAX),
        1 => (zp(rng).max(T::MIN), T::MAX),
        _ => {
            let a = i32_in(rng, T::MIN, T::MAX);
            let b = i32_in(rng, T::MIN, T::MAX);
            (a.min(b), a.max(b))
        }
    };
    let left_shift = if wide { 15 } else { 20 };
    if op == QuantBinaryOp::Mul {
        let m = quantize_multiplier(f64::from(s1 * s2 / so)).unwrap();
        return QuantBinaryParams {
            op,
            left_shift: 0,
            x_offset: -zp(rng),
            x_multiplier: QuantizedMultiplier::ZERO,
            y_offset: -zp(rng),
            y_multiplier: QuantizedMultiplier::ZERO,
            output_offset: zp(rng),
            output_multiplier: m,
            act_min,
            act_max,
        };
    }
    let twice = 2.0 * f64::from(s1.max(s2));
    let q = |r: f64| quantize_multiplier_smaller_than_one_exp(r).unwrap();
    QuantBinaryParams {
        op,
        left_shift,
        x_offset: -zp(rng),
        x_multiplier: q(f64::from(s1) / twice),
        y_offset: -zp(rng),
        y_multiplier: q(f64::from(s2) / twice),
        output_offset: zp(rng),
        output_multiplier: q(twice / (f64::from(1 << left_shift) * f64::from(so))),
        act_min,
        act_max,
    }
}

/// TFLite's per-element arithmetic, written with `octet_core` only.
fn reference_binary(p: &QuantBinaryParams, a: i32, b: i32) -> i32 {
    let rescale = |q: i32, off: i32, m| {
        multiply_by_quantized_multiplier(q.wrapping_add(off).wrapping_mul(1 << p.left_shift), m)
    };
    let raw = match p.op {
        QuantBinaryOp::Mul => a.wrapping_add(p.x_offset).wrapping_mul(b + p.y_offset),
        QuantBinaryOp::Add => {
            rescale(a, p.x_offset, p.x_multiplier) + rescale(b, p.y_offset, p.y_multiplier)
        }
        QuantBinaryOp::Sub => {
            rescale(a, p.x_offset, p.x_multiplier) - rescale(b, p.y_offset, p.y_multiplier)
        }
        QuantBinaryOp::ReverseSub => {
            rescale(b, p.y_offset, p.y_multiplier) - rescale(a, p.x_offset, p.x_multiplier)
        }
    };
    (multiply_by_quantized_multiplier(raw, p.output_multiplier) + p.output_offset)
        .clamp(p.act_min, p.act_max)
}

fn quant_binary_case<T: QuantElem + PartialEq + std::fmt::Debug>(seed: u64) {
    let mut rng = Rng::new(seed);
    let ops = [
        QuantBinaryOp::Add,
        QuantBinaryOp::Sub,
        QuantBinaryOp::ReverseSub,
        QuantBinaryOp::Mul,
    ];
    let mut fast = 0;
    for case in 0..300 {
        let op = ops[case % 4];
        let p = add_params::<T>(&mut rng, op);
        let period = [1, rng.usize(1..=70), 16, 64][rng.usize(0..=3)];
        let len = if rng.bool() {
            period
        } else {
            length(&mut rng, period)
        };
        let x = values::<T>(&mut rng, len);
        let y = values::<T>(&mut rng, period);
        let generic = QuantBinary::<T>::new(Isa::Generic, p).unwrap();
        let mut expected = vec![T::from_i32(0); len];
        generic.run(&x, &y, &mut expected).unwrap();
        for (i, e) in expected.iter().enumerate() {
            let want = reference_binary(&p, x[i].to_i32(), y[i % period].to_i32());
            assert_eq!(e.to_i32(), want, "case {case} {op:?} element {i}");
        }
        for isa in Isa::supported() {
            let mut kernel = QuantBinary::<T>::new(isa, p).unwrap();
            let mut out = vec![T::from_i32(0); len];
            kernel.run(&x, &y, &mut out).unwrap();
            assert_eq!(out, expected, "{} case {case} {op:?}", kernel.isa());
            if kernel.widen_window() {
                fast += 1;
                kernel.run(&x, &y, &mut out).unwrap();
                assert_eq!(
                    out,
                    expected,
                    "{} fallback, case {case} {op:?}",
                    kernel.isa()
                );
            }
        }
    }
    if T::MAX - T::MIN == 255 {
        assert!(fast > 100, "the float form ran {fast} times");
    }
}

#[test]
fn quant_binary_kernels_agree() {
    quant_binary_case::<i8>(2);
    quant_binary_case::<u8>(3);
    quant_binary_case::<i16>(4);
}

#[test]
fn quant_binary_rejects_bad_operands() {
    let mut rng = Rng::new(5);
    let p = add_params::<i8>(&mut rng, QuantBinaryOp::Add);
    let k = QuantBinary::<i8>::new(Isa::detect(), p).unwrap();
    let mut out = [0i8; 6];
    assert!(k.run(&[0; 6], &[0; 4], &mut out).is_err());
    assert!(k.run(&[0; 6], &[], &mut out).is_err());
    assert!(k.run(&[0; 5], &[0; 1], &mut out).is_err());
    let bad = QuantBinaryParams { act_max: 300, ..p };
    assert!(QuantBinary::<i8>::new(Isa::Generic, bad).is_err());
}

fn quant_prelu_case<T: QuantElem + PartialEq + std::fmt::Debug>(seed: u64) {
    let mut rng = Rng::new(seed);
    let (mut fast, mut linear) = (0, 0);
    for case in 0..300 {
        let zp = |rng: &mut Rng| [T::MIN, T::MAX, i32_in(rng, T::MIN, T::MAX)][rng.usize(0..=2)];
        let channels = [1, rng.usize(1..=70), 16, 32][rng.usize(0..=3)];
        let alpha_zp = zp(&mut rng);
        let alpha: Vec<i32> = values::<T>(&mut rng, channels)
            .into_iter()
            .map(|a| a.to_i32() - alpha_zp)
            .collect();
        let (si, sa, so) = (scale(&mut rng), scale(&mut rng), scale(&mut rng));
        let p = QuantPreluParams {
            input_offset: -zp(&mut rng),
            alpha,
            output_offset: zp(&mut rng),
            identity_multiplier: quantize_multiplier(f64::from(si / so)).unwrap(),
            alpha_multiplier: quantize_multiplier(f64::from(si * sa / so)).unwrap(),
            min: T::MIN,
            max: T::MAX,
        };
        let len = length(&mut rng, channels);
        let x = values::<T>(&mut rng, len);
        let generic = QuantPrelu::<T>::new(Isa::Generic, p.clone()).unwrap();
        let mut expected = vec![T::from_i32(0); len];
        generic.run(&x, &mut expected).unwrap();
        for (i, e) in expected.iter().enumerate() {
            let v = x[i].to_i32() + p.input_offset;
            let raw = if v >= 0 {
                multiply_by_quantized_multiplier(v, p.identity_multiplier)
            } else {
                multiply_by_quantized_multiplier(v * p.alpha[i % channels], p.alpha_multiplier)
            };
            let want = (raw + p.output_offset).clamp(p.min, p.max);
            assert_eq!(e.to_i32(), want, "case {case} element {i}");
        }
        for isa in Isa::supported() {
            let mut kernel = QuantPrelu::<T>::new(isa, p.clone()).unwrap();
            let mut out = vec![T::from_i32(0); len];
            kernel.run(&x, &mut out).unwrap();
            assert_eq!(out, expected, "{} case {case}", kernel.isa());
            if kernel.take_linear() {
                linear += 1;
                kernel.run(&x, &mut out).unwrap();
                assert_eq!(
                    out,
                    expected,
                    "{} without the 16-bit form, case {case}",
                    kernel.isa()
                );
            }
            if kernel.widen_window() {
                fast += 1;
                kernel.run(&x, &mut out).unwrap();
                assert_eq!(out, expected, "{} fallback, case {case}", kernel.isa());
            }
        }
        // The AVX-512 kernel that CPUs without VBMI run (this one may have VBMI).
        #[cfg(target_arch = "x86_64")]
        if Isa::Avx512.is_supported() {
            let prepared = crate::frame::elementwise::QuantPreluPrepared::new::<T>(p.clone());
            let mut out = vec![T::from_i32(0); len];
            crate::x86_64::elementwise::quant_prelu_avx512(&prepared, &x, &mut out).unwrap();
            assert_eq!(out, expected, "avx512 without vbmi, case {case}");
        }
    }
    assert!(fast > 100, "the float form ran {fast} times");
    assert!(linear > 100, "the 16-bit form ran {linear} times");
}

/// The 16-bit PRELU form is not tried where it cannot hold (a zero point far outside the type,
/// whose offset inputs would wrap in 16 bits) or would cost too much memory (thousands of
/// channels); the other forms still give the exact results there.
#[test]
fn quant_prelu_16_bit_form_stays_within_its_bounds() {
    let m = quantize_multiplier(0.01).unwrap();
    let params = |input_offset: i32, channels: usize| QuantPreluParams {
        input_offset,
        alpha: (0..channels).map(|c| (c % 200) as i32 - 100).collect(),
        output_offset: -3,
        identity_multiplier: m,
        alpha_multiplier: m,
        min: -128,
        max: 127,
    };
    let prepared =
        |p: &QuantPreluParams| crate::frame::elementwise::QuantPreluPrepared::new::<i8>(p.clone());
    assert!(prepared(&params(5, 64)).linear.is_some());
    assert!(prepared(&params(-5000, 64)).linear.is_none());
    assert!(prepared(&params(5, 5000)).linear.is_none());
    let x: Vec<i8> = (0..5000 * 2).map(|i| (i % 256) as u8 as i8).collect();
    for p in [params(-5000, 64), params(5, 5000), params(5, 64)] {
        let len = x.len() / p.alpha.len() * p.alpha.len();
        let mut expected = vec![0i8; len];
        QuantPrelu::<i8>::new(Isa::Generic, p.clone())
            .unwrap()
            .run(&x[..len], &mut expected)
            .unwrap();
        let mut out = vec![0i8; len];
        QuantPrelu::<i8>::new(Isa::detect(), p.clone())
            .unwrap()
            .run(&x[..len], &mut out)
            .unwrap();
        assert_eq!(out, expected);
    }
}

#[test]
fn quant_prelu_kernels_agree() {
    quant_prelu_case::<i8>(6);
    quant_prelu_case::<u8>(7);
}

#[test]
fn lut8_kernels_agree() {
    let mut rng = Rng::new(8);
    for case in 0..200 {
        let mut table = [0u8; 256];
        for t in table.iter_mut() {
            *t = rng.usize(0..=255) as u8;
        }
        let len = rng.usize(0..=700);
        let x: Vec<u8> = (0..len).map(|_| rng.usize(0..=255) as u8).collect();
        let expected: Vec<u8> = x.iter().map(|&v| table[usize::from(v)]).collect();
        for isa in Isa::supported() {
            let lut = Lut8::new(isa, table);
            let mut out = vec![0u8; len];
            lut.run(&x, &mut out).unwrap();
            assert_eq!(out, expected, "{} case {case}", lut.isa());
        }
    }
    // from_fn stores the two's-complement byte of each value.
    let lut = Lut8::from_fn::<i8, i8>(Isa::Generic, |v| -v.max(-127)).unwrap();
    assert_eq!(lut.table()[0x80], 127);
    assert_eq!(lut.table()[0x01], 0xff);
    assert!(Lut8::from_fn::<i8, u8>(Isa::Generic, |v| v).is_err());
}

fn special_floats(rng: &mut Rng, len: usize) -> Vec<f32> {
    let specials = [
        0.0,
        -0.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.5,
        -0.5,
        2.5,
        -2.5,
        1e30,
        -1e30,
        6.0,
        -3.0,
    ];
    (0..len)
        .map(|_| {
            if rng.usize(0..=9) == 0 {
                specials[rng.usize(0..=specials.len() - 1)]
            } else {
                rng.f32s(1)[0] * 10.0
            }
        })
        .collect()
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

#[test]
fn f32_binary_kernels_agree() {
    let mut rng = Rng::new(9);
    let ops = [
        F32BinaryOp::Add,
        F32BinaryOp::Sub,
        F32BinaryOp::ReverseSub,
        F32BinaryOp::Mul,
        F32BinaryOp::Max,
        F32BinaryOp::ReverseMax,
        F32BinaryOp::Min,
        F32BinaryOp::ReverseMin,
        F32BinaryOp::Prelu,
    ];
    let clamps = [
        F32Clamp::NONE,
        F32Clamp { min: 0.0, max: 6.0 },
        F32Clamp {
            min: f32::NEG_INFINITY,
            max: f32::INFINITY,
        },
    ];
    for case in 0..400 {
        let op = ops[case % ops.len()];
        let clamp = clamps[rng.usize(0..=2)];
        let period = [1, rng.usize(1..=40), 16][rng.usize(0..=2)];
        let len = length(&mut rng, period);
        let x = special_floats(&mut rng, len);
        let y = special_floats(&mut rng, period);
        let reference: Vec<f32> = (0..len)
            .map(|i| {
                let (a, b) = (x[i], y[i % period]);
                let v = match op {
                    F32BinaryOp::Add => a + b,
                    F32BinaryOp::Sub => a - b,
                    F32BinaryOp::ReverseSub => b - a,
                    F32BinaryOp::Mul => a * b,
                    F32BinaryOp::Max => {
                        if a > b {
                            a
                        } else {
                            b
                        }
                    }
                    F32BinaryOp::ReverseMax => {
                        if b > a {
                            b
                        } else {
                            a
                        }
                    }
                    F32BinaryOp::Min => {
                        if a < b {
                            a
                        } else {
                            b
                        }
                    }
                    F32BinaryOp::ReverseMin => {
                        if b < a {
                            b
                        } else {
                            a
                        }
                    }
                    F32BinaryOp::Prelu => {
                        if a >= 0.0 {
                            a
                        } else {
                            a * b
                        }
                    }
                };
                clamp.apply(v)
            })
            .collect();
        for isa in Isa::supported() {
            let k = F32Binary::new(isa, op, clamp);
            let mut out = vec![0f32; len];
            k.run(&x, &y, &mut out).unwrap();
            assert!(
                same_bits(&out, &reference),
                "{} case {case} {op:?}",
                k.isa()
            );
        }
    }
}

#[test]
fn f32_unary_kernels_agree() {
    let mut rng = Rng::new(10);
    let ops = [
        F32UnaryOp::Relu,
        F32UnaryOp::Relu6,
        F32UnaryOp::ReluN1To1,
        F32UnaryOp::LeakyRelu(0.2),
        F32UnaryOp::HardSwish,
        F32UnaryOp::Logistic,
        F32UnaryOp::Tanh,
        F32UnaryOp::Elu,
    ];
    for case in 0..200 {
        let op = ops[case % ops.len()];
        let len = rng.usize(0..=300);
        let x = special_floats(&mut rng, len);
        let reference: Vec<f32> = x.iter().map(|&v| F32Unary::apply(op, v)).collect();
        for isa in Isa::supported() {
            let k = F32Unary::new(isa, op);
            let mut out = vec![0f32; len];
            k.run(&x, &mut out).unwrap();
            assert!(
                same_bits(&out, &reference),
                "{} case {case} {op:?}",
                k.isa()
            );
        }
    }
}

/// LiteRT's x86 `AffineQuantize`, written the obvious way.
fn reference_quantize(x: f32, scale: f32, zero_point: i32, min: i32, max: i32) -> i32 {
    let r = (x / scale).round();
    let i = if r.is_nan() || !(-2_147_483_648.0..2_147_483_648.0).contains(&r) {
        i32::MIN
    } else {
        r as i32
    };
    i.wrapping_add(zero_point).clamp(min, max)
}

fn quantize_case<T: QuantElem + PartialEq + std::fmt::Debug>(seed: u64) {
    let mut rng = Rng::new(seed);
    for case in 0..200 {
        let s = scale(&mut rng) / 16.0;
        let zp = i32_in(&mut rng, T::MIN, T::MAX);
        let len = rng.usize(0..=300);
        let mut x = special_floats(&mut rng, len);
        // Exact ties of the scale.
        for v in x.iter_mut().step_by(7) {
            *v = s * (i32_in(&mut rng, -300, 300) as f32 + 0.5);
        }
        let expected: Vec<T> = x
            .iter()
            .map(|&v| T::from_i32(reference_quantize(v, s, zp, T::MIN, T::MAX)))
            .collect();
        let q: Vec<i32> = values::<T>(&mut rng, len)
            .into_iter()
            .map(|v| v.to_i32())
            .collect();
        let q: Vec<T> = q.into_iter().map(T::from_i32).collect();
        let deq: Vec<f32> = q
            .iter()
            .map(|&v| (f64::from(s) * f64::from(v.to_i32() - zp)) as f32)
            .collect();
        for isa in Isa::supported() {
            let k = Quantize::<T>::new(isa, s, zp);
            let mut out = vec![T::from_i32(0); len];
            k.run(&x, &mut out).unwrap();
            assert_eq!(out, expected, "{} case {case}", k.isa());
            let k = Dequantize::<T>::new(isa, s, zp);
            let mut out = vec![0f32; len];
            k.run(&q, &mut out).unwrap();
            assert!(same_bits(&out, &deq), "{} case {case}", k.isa());
        }
    }
}

#[test]
fn quantize_kernels_agree() {
    quantize_case::<i8>(11);
    quantize_case::<u8>(12);
    quantize_case::<i16>(13);
}

#[test]
fn bilinear_rows_agree() {
    use crate::frame::elementwise::{Bilinear, BilinearColumn, BilinearRow};
    let mut rng = Rng::new(14);
    for case in 0..200 {
        let depth = rng.usize(1..=40);
        let in_w = rng.usize(1..=9);
        let out_w = rng.usize(1..=12);
        let column = |rng: &mut Rng| {
            let lower = rng.usize(0..=in_w - 1);
            let upper = (lower + rng.usize(0..=1)).min(in_w - 1);
            (lower, upper)
        };
        let cols_f: Vec<BilinearColumn<f32>> = (0..out_w)
            .map(|_| {
                let (lower, upper) = column(&mut rng);
                BilinearColumn {
                    lower,
                    upper,
                    frac: rng.f32s(1)[0].abs(),
                }
            })
            .collect();
        let cols_i: Vec<BilinearColumn<i32>> = cols_f
            .iter()
            .map(|c| BilinearColumn {
                lower: c.lower,
                upper: c.upper,
                frac: i32_in(&mut rng, -512, 1024),
            })
            .collect();
        let (top, bottom) = (rng.f32s(in_w * depth), rng.f32s(in_w * depth));
        let (top_i, bottom_i) = (
            values::<i8>(&mut rng, in_w * depth),
            values::<i8>(&mut rng, in_w * depth),
        );
        let (dy, dy_i) = (rng.f32s(1)[0].abs(), i32_in(&mut rng, -512, 1024));
        let row_f = BilinearRow {
            top: &top,
            bottom: &bottom,
            cols: &cols_f,
            depth,
            dy,
        };
        let row_i = BilinearRow {
            top: &top_i,
            bottom: &bottom_i,
            cols: &cols_i,
            depth,
            dy: dy_i,
        };
        // TFLite's int64 blend.
        let expected_i: Vec<i8> = (0..out_w * depth)
            .map(|i| {
                let (c, k) = (&cols_i[i / depth], i % depth);
                let v = |row: &[i8], x: usize| i64::from(row[x * depth + k]);
                let (dy, dx, one) = (i64::from(dy_i), i64::from(c.frac), 1024i64);
                let acc = v(&top_i, c.lower) * (one - dy) * (one - dx)
                    + v(&bottom_i, c.lower) * dy * (one - dx)
                    + v(&top_i, c.upper) * (one - dy) * dx
                    + v(&bottom_i, c.upper) * dy * dx;
                let round = if acc > 0 { 1 << 19 } else { -(1 << 19) };
                ((acc + round) / (1 << 20)) as i8
            })
            .collect();
        let generic = Bilinear::new(Isa::Generic);
        let mut expected_f = vec![0f32; out_w * depth];
        generic.row_f32(&row_f, &mut expected_f).unwrap();
        for isa in Isa::supported() {
            let k = Bilinear::new(isa);
            let mut out = vec![0f32; out_w * depth];
            k.row_f32(&row_f, &mut out).unwrap();
            assert!(same_bits(&out, &expected_f), "{} case {case}", k.isa());
            let mut out = vec![0i8; out_w * depth];
            k.row_i8(&row_i, &mut out).unwrap();
            assert_eq!(out, expected_i, "{} case {case}", k.isa());
        }
    }
    let k = Bilinear::new(Isa::detect());
    let cols = [BilinearColumn {
        lower: 3,
        upper: 3,
        frac: 0.5,
    }];
    let row = BilinearRow {
        top: &[0.0; 6],
        bottom: &[0.0; 6],
        cols: &cols,
        depth: 2,
        dy: 0.5,
    };
    assert!(k.row_f32(&row, &mut [0.0; 2]).is_err());
}

#[test]
fn finite_range_kernels_agree() {
    use crate::frame::elementwise::FiniteRange;
    let mut rng = fastrand::Rng::with_seed(0xf1);
    for case in 0..200 {
        let len = rng.usize(0..300);
        let mut values: Vec<f32> = (0..len).map(|_| rng.f32() * 200.0 - 100.0).collect();
        for _ in 0..rng.usize(0..4) {
            if len > 0 {
                let i = rng.usize(0..len);
                values[i] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][case % 3];
            }
        }
        let finite: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let expected = (!finite.is_empty()).then(|| {
            (
                finite.iter().copied().fold(f32::INFINITY, f32::min),
                finite.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            )
        });
        for isa in Isa::supported() {
            assert_eq!(
                FiniteRange::new(isa).run(&values),
                expected,
                "{isa}, case {case}"
            );
        }
    }
}
