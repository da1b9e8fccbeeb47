//! The depthwise and pooling battery: every kernel of every supported instruction set against
//! the generic one on random windows (1x1 to 7x7 filters, strides, dilations, padding at every
//! border, channel counts off the vector width, batches), and the generic ones against a direct
//! scalar formula of TFLite's reference kernels (`octet_core::fixed_point` for integers).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use octet_core::fixed_point::{QuantizedMultiplier, multiply_by_quantized_multiplier};

use crate::battery::{Rng, random_window_of};
use crate::frame::depthwise::{
    DwPlan, F32DwUkernel, PackedF32Depthwise, PackedQ8Depthwise, Q8DwParams, Q8DwUkernel,
};
use crate::frame::gemm_f32::F32Clamp;
use crate::frame::pool::{Pool2d, PoolElem, PoolKind};
use crate::frame::window::Window2d;

/// A random window: 3x3 and 5x5 filters often, any filter up to 7x7, and now and then one of
/// more taps than the SIMD kernels handle themselves (they hand those to the generic code).
pub(crate) fn random_dw_window(rng: &mut Rng, case: usize) -> Window2d {
    let (filter_h, filter_w) = match case % 4 {
        _ if case % 29 == 28 => (9, 8),
        0 => (3, 3),
        1 => (5, 5),
        _ => (rng.usize(1..=7), rng.usize(1..=7)),
    };
    // Sometimes also pad after the image (SAME-style), up to the span.
    random_window_of(rng, (filter_h, filter_w), 3, (12, 14), |span, before| {
        (span - 1).saturating_sub(before)
    })
}

/// The input pixel index of tap (fy, fx) of output (b, oy, ox), `None` in the padding.
fn tap(w: &Window2d, b: usize, oy: usize, ox: usize, fy: usize, fx: usize) -> Option<usize> {
    let iy = (oy * w.stride_h + fy * w.dilation_h).checked_sub(w.pad_top)?;
    let ix = (ox * w.stride_w + fx * w.dilation_w).checked_sub(w.pad_left)?;
    (iy < w.in_h && ix < w.in_w).then(|| (b * w.in_h + iy) * w.in_w + ix)
}

fn for_each_output(w: &Window2d, mut f: impl FnMut(usize, usize, usize, usize)) {
    let mut pixel = 0;
    for b in 0..w.batches {
        for oy in 0..w.out_h {
            for ox in 0..w.out_w {
                f(b, oy, ox, pixel);
                pixel += 1;
            }
        }
    }
}

fn clamp_of(case: usize) -> F32Clamp {
    match case % 3 {
        0 => F32Clamp::NONE,
        1 => F32Clamp { min: 0.0, max: 6.0 },
        _ => F32Clamp {
            min: -0.5,
            max: f32::MAX,
        },
    }
}

#[test]
fn f32_depthwise_kernels_agree_with_generic_and_reference() {
    let kernels = F32DwUkernel::all();
    let mut rng = Rng::new(0xd3f);
    for case in 0..400 {
        let window = random_dw_window(&mut rng, case);
        // Now and then enough channels for every grouping of blocks the kernels make.
        let c = if case % 5 == 4 {
            rng.usize(100..=300)
        } else {
            rng.usize(1..=70)
        };
        let ks = window.taps();
        let input = rng.f32s(window.input_pixels() * c);
        let weights = rng.f32s(ks * c);
        let bias = rng.bool().then(|| rng.f32s(c));
        let clamp = clamp_of(case);
        let plan = DwPlan::new(&window, c).unwrap();
        let rows = plan.rows();
        // The direct formula: taps in order over the image, one fused multiply-add each, then
        // the bias.
        let mut expected = vec![0f32; window.output_pixels() * c];
        for_each_output(&window, |b, oy, ox, pixel| {
            for ch in 0..c {
                let mut total = 0f32;
                for fy in 0..window.filter_h {
                    for fx in 0..window.filter_w {
                        if let Some(i) = tap(&window, b, oy, ox, fy, fx) {
                            total = input[i * c + ch]
                                .mul_add(weights[(fy * window.filter_w + fx) * c + ch], total);
                        }
                    }
                }
                let total = total + bias.as_ref().map_or(0.0, |b| b[ch]);
                expected[pixel * c + ch] = clamp.apply(total);
            }
        });
        for &kernel in kernels
            .iter()
            .filter(|k| k.info().taps == 0 || k.info().taps == ks)
        {
            let dw = PackedF32Depthwise::with_ukernel(
                kernel,
                plan.clone(),
                &weights,
                bias.as_deref(),
                clamp,
            )
            .unwrap();
            let mut out = vec![f32::NAN; window.output_pixels() * c];
            // Split the rows unevenly, as threads would.
            let split = rows / 2;
            let (a, b) = out.split_at_mut(split * plan.row_len());
            dw.run(&input, 0..split, a).unwrap();
            dw.run(&input, split..rows, b).unwrap();
            // Every kernel sums in this order: the same values exactly.
            assert_eq!(out, expected, "{}, case {case}", kernel.info().name);
        }
    }
}

/// Random 8-bit quantization parameters, extremes included.
struct Q8Case {
    signed: bool,
    input_offset: i32,
    weight_offset: i32,
    multipliers: Vec<QuantizedMultiplier>,
    output_zero_point: i32,
    min: i32,
    max: i32,
}

fn random_q8(rng: &mut Rng, case: usize, c: usize) -> Q8Case {
    let signed = case % 3 != 2;
    let (lo, hi) = if signed { (-128i32, 127i32) } else { (0, 255) };
    let pick = |rng: &mut Rng| match rng.usize(0..=3) {
        0 => lo,
        1 => hi,
        _ => lo + rng.usize(0..=255) as i32,
    };
    let zero_point = pick(rng);
    let output_zero_point = pick(rng);
    let per_channel = signed && rng.bool();
    let count = if per_channel { c } else { 1 };
    let multipliers = (0..count)
        .map(|_| QuantizedMultiplier {
            multiplier: match rng.usize(0..=4) {
                0 => 0,
                1 => i32::MAX,
                _ => (1 << 30) + rng.usize(0..=(1 << 30) - 1) as i32,
            },
            shift: rng.usize(0..=35) as i32 - 31,
        })
        .collect();
    let (min, max) = match case % 4 {
        0 => (lo, hi),
        1 => (output_zero_point, hi),
        2 => (
            output_zero_point.max(lo + 10),
            (output_zero_point + 60).min(hi),
        ),
        _ => (lo, lo),
    };
    let (min, max) = (min.min(max), max);
    Q8Case {
        signed,
        input_offset: -zero_point,
        weight_offset: if signed {
            0
        } else {
            -(rng.usize(0..=255) as i32)
        },
        multipliers,
        output_zero_point,
        min,
        max,
    }
}

#[test]
fn q8_depthwise_kernels_agree_with_generic_and_reference() {
    let kernels = Q8DwUkernel::all();
    let mut rng = Rng::new(0x98d);
    for case in 0..600 {
        let window = random_dw_window(&mut rng, case);
        let c = rng.usize(1..=70);
        let ks = window.taps();
        let q = random_q8(&mut rng, case, c);
        let bytes = |rng: &mut Rng, n: usize| -> Vec<u8> {
            (0..n).map(|_| rng.usize(0..=255) as u8).collect()
        };
        let input = bytes(&mut rng, window.input_pixels() * c);
        let mut weights = bytes(&mut rng, ks * c);
        if q.signed && case % 5 == 0 {
            // Extreme weights: -128 and 127 (TFLite's int8 weights are in [-127, 127]).
            for (i, w) in weights.iter_mut().enumerate() {
                *w = if i % 2 == 0 { 0x80 } else { 0x7f };
            }
        }
        let bias: Option<Vec<i32>> = rng.bool().then(|| {
            (0..c)
                .map(|_| match rng.usize(0..=5) {
                    0 => i32::MAX,
                    1 => i32::MIN,
                    _ => rng.usize(0..=200_000) as i32 - 100_000,
                })
                .collect()
        });
        let value = |x: u8| {
            if q.signed {
                i32::from(x as i8)
            } else {
                i32::from(x)
            }
        };
        // TFLite's reference: in-image taps of (x + input_offset) * (w + weight_offset).
        let mut expected = vec![0u8; window.output_pixels() * c];
        for_each_output(&window, |b, oy, ox, pixel| {
            for ch in 0..c {
                let mut acc = 0i32;
                for fy in 0..window.filter_h {
                    for fx in 0..window.filter_w {
                        if let Some(i) = tap(&window, b, oy, ox, fy, fx) {
                            let x = value(input[i * c + ch]) + q.input_offset;
                            let w = value(weights[(fy * window.filter_w + fx) * c + ch])
                                + q.weight_offset;
                            acc = acc.wrapping_add(x.wrapping_mul(w));
                        }
                    }
                }
                if let Some(bias) = &bias {
                    acc = acc.wrapping_add(bias[ch]);
                }
                let m = q.multipliers[if q.multipliers.len() == 1 { 0 } else { ch }];
                let y = multiply_by_quantized_multiplier(acc, m)
                    .wrapping_add(q.output_zero_point)
                    .clamp(q.min, q.max);
                expected[pixel * c + ch] = y as u8;
            }
        });
        let plan = DwPlan::new(&window, c).unwrap();
        let rows = plan.rows();
        let params = Q8DwParams {
            signed: q.signed,
            input_offset: q.input_offset,
            weight_offset: q.weight_offset,
            multipliers: &q.multipliers,
            output_zero_point: q.output_zero_point,
            min: q.min,
            max: q.max,
        };
        for &kernel in kernels
            .iter()
            .filter(|k| k.info().taps == 0 || k.info().taps == ks)
        {
            let dw = PackedQ8Depthwise::with_ukernel(
                kernel,
                plan.clone(),
                &weights,
                bias.as_deref(),
                &params,
            )
            .unwrap();
            let mut out = vec![0xaa; window.output_pixels() * c];
            let split = rows / 3;
            let (a, b) = out.split_at_mut(split * plan.row_len());
            dw.run(&input, 0..split, a).unwrap();
            dw.run(&input, split..rows, b).unwrap();
            assert_eq!(
                out,
                expected,
                "{}, case {case}: {window:?} c {c}",
                kernel.info().name
            );
        }
    }
}

/// Model-like quantization (outputs spread over the whole range, many values near rounding
/// boundaries): every kernel against the generic one, on wide images (long runs) with the
/// channel counts of real models.
#[test]
fn q8_depthwise_kernels_agree_on_model_like_scales() {
    let kernels = Q8DwUkernel::all();
    let mut rng = Rng::new(0x5ca1e);
    let mut fast = 0;
    for case in 0..120 {
        let (f, stride) = match case % 4 {
            0 | 1 => (3, 1),
            2 => (5, 1),
            _ => (3, 2),
        };
        let c = [8, 16, 24, 32, 64, 144, 3, 70][case % 8];
        let size = rng.usize(5..=20);
        let pad = f / 2;
        let window = Window2d {
            batches: 1,
            in_h: size,
            in_w: size + 3,
            out_h: (size + 2 * pad - f) / stride + 1,
            out_w: (size + 3 + 2 * pad - f) / stride + 1,
            filter_h: f,
            filter_w: f,
            stride_h: stride,
            stride_w: stride,
            dilation_h: 1,
            dilation_w: 1,
            pad_top: pad,
            pad_left: pad,
        };
        let ks = window.taps();
        let signed = case % 5 != 4;
        let zero_point: i32 = if signed {
            rng.usize(0..=255) as i32 - 128
        } else {
            rng.usize(0..=255) as i32
        };
        let input: Vec<u8> = (0..window.input_pixels() * c)
            .map(|_| rng.usize(0..=255) as u8)
            .collect();
        let weights: Vec<u8> = (0..ks * c)
            .map(|_| (rng.usize(0..=254) as i32 - 127) as i8 as u8)
            .collect();
        let bias: Vec<i32> = (0..c)
            .map(|_| rng.usize(0..=40_000) as i32 - 20_000)
            .collect();
        let multipliers: Vec<QuantizedMultiplier> = (0..c)
            .map(|_| {
                let real =
                    (0.5 + rng.usize(0..=1000) as f64 / 1000.0) * 1e-3 * (case % 7 + 1) as f64;
                octet_core::fixed_point::quantize_multiplier(real).unwrap()
            })
            .collect();
        let (lo, hi) = if signed { (-128, 127) } else { (0, 255) };
        let output_zero_point = rng.usize(0..=255) as i32 + lo;
        let (min, max) = if case % 3 == 0 {
            (output_zero_point, hi)
        } else {
            (lo, hi)
        };
        let params = Q8DwParams {
            signed,
            input_offset: -zero_point,
            weight_offset: 0,
            multipliers: &multipliers,
            output_zero_point,
            min,
            max,
        };
        let plan = DwPlan::new(&window, c).unwrap();
        let generic = kernels[0];
        let reference =
            PackedQ8Depthwise::with_ukernel(generic, plan.clone(), &weights, Some(&bias), &params)
                .unwrap();
        let mut expected = vec![0u8; window.output_pixels() * c];
        reference
            .run(&input, 0..plan.rows(), &mut expected)
            .unwrap();
        for &kernel in &kernels[1..] {
            let dw = PackedQ8Depthwise::with_ukernel(
                kernel,
                plan.clone(),
                &weights,
                Some(&bias),
                &params,
            )
            .unwrap();
            fast += usize::from(dw.fast_requant());
            let mut out = vec![0xaa; expected.len()];
            let split = plan.rows() / 2;
            let (a, b) = out.split_at_mut(split * plan.row_len());
            dw.run(&input, 0..split, a).unwrap();
            dw.run(&input, split..plan.rows(), b).unwrap();
            assert_eq!(
                out,
                expected,
                "{}, case {case}: c {c}, {window:?}",
                kernel.info().name
            );
            #[cfg(target_arch = "x86_64")]
            if dw.ukernel().name.contains("dot4") {
                crate::x86_64::set_dot4_general(true);
                dw.run(&input, 0..plan.rows(), &mut out).unwrap();
                crate::x86_64::set_dot4_general(false);
                assert_eq!(out, expected, "general path, case {case}: c {c}");
            }
        }
    }
    if crate::Isa::Avx512Vnni.is_supported() {
        assert!(fast > 80, "the float requantization ran {fast} times");
    }
}

#[test]
fn plan_segments_cover_every_pixel_once() {
    let mut rng = Rng::new(5);
    for case in 0..200 {
        let window = random_dw_window(&mut rng, case);
        let plan = DwPlan::new(&window, 3).unwrap();
        let mut next = 0;
        for (segment, taps) in plan.segments(0..plan.rows()).unwrap() {
            assert_eq!(segment.first, next);
            assert_eq!(taps.len(), window.taps());
            next += segment.count;
        }
        assert_eq!(next, window.output_pixels());
    }
}

/// A pooling window: dilation 1, padding before at most filter - 1.
fn random_pool_window(rng: &mut Rng, case: usize) -> Window2d {
    let mut w = random_dw_window(rng, case);
    (w.dilation_h, w.dilation_w) = (1, 1);
    w.pad_top = w.pad_top.min(w.filter_h - 1);
    w.pad_left = w.pad_left.min(w.filter_w - 1);
    let out = |size: usize, pad: usize, filter: usize, stride: usize| {
        (size + pad + (filter - 1).saturating_sub(pad)).saturating_sub(filter) / stride + 1
    };
    w.out_h = out(w.in_h, w.pad_top, w.filter_h, w.stride_h);
    w.out_w = out(w.in_w, w.pad_left, w.filter_w, w.stride_w);
    w
}

/// The in-image taps of output (b, oy, ox), in filter order.
fn pool_taps(w: &Window2d, b: usize, oy: usize, ox: usize) -> Vec<usize> {
    let mut taps = Vec::new();
    for fy in 0..w.filter_h {
        for fx in 0..w.filter_w {
            if let Some(i) = tap(w, b, oy, ox, fy, fx) {
                taps.push(i);
            }
        }
    }
    taps
}

fn int_pool_reference<T: PoolElem>(
    w: &Window2d,
    c: usize,
    kind: PoolKind,
    input: &[T],
    min: i32,
    max: i32,
) -> Vec<i32> {
    let mut out = vec![0; w.output_pixels() * c];
    for_each_output(w, |b, oy, ox, pixel| {
        let taps = pool_taps(w, b, oy, ox);
        let count = taps.len() as i32;
        for ch in 0..c {
            let values = taps.iter().map(|&i| input[i * c + ch].to_i32());
            let v = match kind {
                PoolKind::Max => values.fold(T::LOWEST, i32::max),
                PoolKind::Average => {
                    let acc: i32 = values.sum();
                    if !T::SYMMETRIC || acc > 0 {
                        (acc + count / 2) / count
                    } else {
                        (acc - count / 2) / count
                    }
                }
            };
            out[pixel * c + ch] = v.clamp(min, max);
        }
    });
    out
}

#[test]
fn pools_match_the_reference_formulas() {
    let mut rng = Rng::new(0x9001);
    for case in 0..300 {
        let window = random_pool_window(&mut rng, case);
        let c = rng.usize(1..=70);
        let kind = if case % 2 == 0 {
            PoolKind::Max
        } else {
            PoolKind::Average
        };
        let plan = DwPlan::new(&window, c).unwrap();
        let pool = Pool2d::new(plan.clone(), kind).unwrap();
        let generic = Pool2d::with_isa(crate::Isa::Generic, plan.clone(), kind).unwrap();
        let rows = plan.rows();
        let split = rows / 2;
        let row_len = plan.row_len();
        let n_out = window.output_pixels() * c;

        let input = rng.f32s(window.input_pixels() * c);
        let clamp = clamp_of(case);
        let mut expected = vec![0f32; n_out];
        for_each_output(&window, |b, oy, ox, pixel| {
            let taps = pool_taps(&window, b, oy, ox);
            for ch in 0..c {
                let v = match kind {
                    PoolKind::Max => taps.iter().fold(f32::MIN, |a, &i| {
                        let x = input[i * c + ch];
                        if a < x { x } else { a }
                    }),
                    PoolKind::Average => {
                        let sum = taps.iter().fold(0f32, |a, &i| a + input[i * c + ch]);
                        sum / taps.len() as f32
                    }
                };
                expected[pixel * c + ch] = clamp.apply(v);
            }
        });
        let mut out = vec![f32::NAN; n_out];
        let (a, b) = out.split_at_mut(split * row_len);
        pool.run_f32(&input, 0..split, a, clamp).unwrap();
        pool.run_f32(&input, split..rows, b, clamp).unwrap();
        assert_eq!(out, expected, "f32 case {case}");

        let bytes: Vec<u8> = (0..window.input_pixels() * c)
            .map(|_| rng.usize(0..=255) as u8)
            .collect();
        let (min, max) = if case % 3 == 0 {
            (-128, 127)
        } else {
            (-5, 100)
        };
        let input: Vec<i8> = bytes.iter().map(|&b| b as i8).collect();
        let expected = int_pool_reference(&window, c, kind, &input, min, max);
        let mut out = vec![0i8; n_out];
        let (a, b) = out.split_at_mut(split * row_len);
        pool.run_int(&input, 0..split, a, min, max).unwrap();
        pool.run_int(&input, split..rows, b, min, max).unwrap();
        assert!(
            out.iter()
                .map(|&v| i32::from(v))
                .eq(expected.iter().copied()),
            "i8 case {case}"
        );
        let mut out = vec![0i8; n_out];
        generic
            .run_int(&input, 0..rows, &mut out, min, max)
            .unwrap();
        assert!(
            out.iter().map(|&v| i32::from(v)).eq(expected),
            "generic i8 case {case}"
        );

        let (min, max) = if case % 3 == 0 { (0, 255) } else { (3, 200) };
        let expected = int_pool_reference(&window, c, kind, &bytes, min, max);
        let mut out = vec![0u8; n_out];
        pool.run_int(&bytes, 0..rows, &mut out, min, max).unwrap();
        assert!(
            out.iter().map(|&v| i32::from(v)).eq(expected),
            "u8 case {case}"
        );

        let input: Vec<i16> = (0..window.input_pixels() * c)
            .map(|_| rng.usize(0..=65535) as u16 as i16)
            .collect();
        let (min, max) = if case % 3 == 0 {
            (-32768, 32767)
        } else {
            (-1000, 30000)
        };
        let expected = int_pool_reference(&window, c, kind, &input, min, max);
        let mut out = vec![0i16; n_out];
        pool.run_int(&input, 0..rows, &mut out, min, max).unwrap();
        assert!(
            out.iter().map(|&v| i32::from(v)).eq(expected),
            "i16 case {case}"
        );
    }
}
