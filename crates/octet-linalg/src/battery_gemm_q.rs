//! The quantized GEMM battery: the generic kernels against a direct scalar formula built on
//! `octet_core::fixed_point`, and every kernel of every supported instruction set against the
//! generic one of its family, bit for bit, on random convolutions (padding taps, strides,
//! dilations, groups, `kc` off the grouping, `n` off the blocks, `m` below `mr`), extreme zero
//! points, per-channel and per-tensor multipliers with shifts from -31 to +10, both
//! requantizations, every clamp and every output type. Also the input conversions.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use octet_core::fixed_point::{
    QuantizedMultiplier, multiply_by_quantized_multiplier, requantize_double,
};

use crate::battery::random_window;
use crate::frame::gemm::{PaddedImage, RowOffsets};
use crate::frame::gemm_q::{
    PackedQGemm, QConvertKernels, QElement, QGemmFamily, QGemmSpec, QGemmUkernel, QIn, QType,
    QWeights, Requant, requantize_fixed,
};
use crate::frame::window::{Indirection, PAD, Window2d};

/// A seeded source of test values.
struct Rng(fastrand::Rng);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(fastrand::Rng::with_seed(seed))
    }
    fn usize(&mut self, range: std::ops::RangeInclusive<usize>) -> usize {
        self.0.usize(range)
    }
    fn bool(&mut self) -> bool {
        self.0.bool()
    }
    fn i32_in(&mut self, lo: i32, hi: i32) -> i32 {
        self.0.i32(lo..=hi)
    }
    fn u64(&mut self) -> u64 {
        self.0.u64(..)
    }
}

#[test]
fn fixed_requantization_matches_tflite() {
    let mut rng = Rng::new(0x4e9);
    for i in 0..400_000 {
        let acc = match i % 4 {
            0 => rng.u64() as i32,
            1 => rng.i32_in(-70_000, 70_000),
            2 => [i32::MIN, i32::MAX, 0, -1, 1][i % 5],
            _ => (rng.u64() as i32) >> rng.usize(0..=31),
        };
        let shift = rng.i32_in(-31, 40);
        let multiplier = match i % 7 {
            0 => 0,
            1 => i32::MAX,
            2 => 1 << 30,
            _ => rng.i32_in(1 << 30, i32::MAX),
        };
        let m = QuantizedMultiplier::new(multiplier, shift);
        let expected = multiply_by_quantized_multiplier(acc, m);
        let got = requantize_fixed(acc, multiplier, shift.clamp(0, 32), (-shift).max(0));
        assert_eq!(got, expected, "acc {acc}, {m:?}");
    }
}

/// A random convolution for the GEMM: the quantities the formula and the kernels need.
struct Case {
    window: Window2d,
    pointwise: bool,
    groups: usize,
    depth: usize,
    /// Output channels per group.
    per_group: usize,
    input: QType,
    input_offset: i32,
    input_data: Vec<i32>,
    weights_type: QType,
    weight_offset: i32,
    weights: Vec<i32>,
    bias: Option<Vec<i32>>,
    fixed: Vec<QuantizedMultiplier>,
    double: Vec<f64>,
    use_double: bool,
    output: QType,
    zero_point: i32,
    clamp: (i32, i32),
}

fn pick<T: Copy>(rng: &mut Rng, values: &[T]) -> T {
    values[rng.usize(0..=values.len() - 1)]
}

impl Case {
    fn random(rng: &mut Rng, case: usize) -> Case {
        let mut window = random_window(&mut crate::battery::Rng::new(rng.u64()));
        let pointwise = case.is_multiple_of(4);
        if pointwise {
            let w = &mut window;
            (
                w.filter_h, w.filter_w, w.stride_h, w.stride_w, w.pad_top, w.pad_left,
            ) = (1, 1, 1, 1, 0, 0);
            (w.out_h, w.out_w) = (w.in_h, w.in_w);
        }
        let groups = if case % 5 == 1 { rng.usize(2..=3) } else { 1 };
        let depth = rng.usize(1..=37);
        let per_group = rng.usize(1..=70 / groups);
        let input = pick(rng, &[QType::I8, QType::I8, QType::U8, QType::I16]);
        let (lo, hi) = input.range();
        let zero_point = match input {
            QType::I8 => {
                let r = rng.i32_in(-128, 127);
                pick(rng, &[-128, 127, 0, r])
            }
            QType::U8 => {
                let r = rng.i32_in(0, 255);
                pick(rng, &[0, 255, 128, r])
            }
            QType::I16 => {
                let r = rng.i32_in(-300, 300);
                pick(rng, &[0, 0, r])
            }
        };
        let in_c = groups * depth;
        let input_data = (0..window.input_pixels() * in_c)
            .map(|_| rng.i32_in(lo, hi))
            .collect();
        let weights_type = match input {
            QType::U8 => QType::U8,
            _ => QType::I8,
        };
        let weight_offset = match weights_type {
            QType::U8 => -{
                let r = rng.i32_in(0, 255);
                pick(rng, &[0, 255, 128, r])
            },
            _ if case % 6 == 5 => -rng.i32_in(-128, 127),
            _ => 0,
        };
        let (wlo, whi) = weights_type.range();
        let n = groups * per_group;
        let ks = window.taps();
        let weights = (0..n * ks * depth).map(|_| rng.i32_in(wlo, whi)).collect();
        let bias = rng
            .bool()
            .then(|| (0..n).map(|_| rng.i32_in(-100_000, 100_000)).collect());
        let per_channel = rng.bool();
        let channels = if per_channel { n } else { 1 };
        let fixed = (0..channels)
            .map(|i| {
                if i % 11 == 3 {
                    QuantizedMultiplier::ZERO
                } else {
                    QuantizedMultiplier::new(rng.i32_in(1 << 30, i32::MAX), rng.i32_in(-31, 10))
                }
            })
            .collect();
        let double = (0..channels)
            .map(|i| match i % 13 {
                7 => 1e9,
                8 => 0.5,
                _ => (rng.0.f64() * 2.0).powi(rng.i32_in(1, 12)) * 1e-3,
            })
            .collect();
        let output = pick(rng, &[QType::I8, QType::U8, QType::I16]);
        let (olo, ohi) = output.range();
        let zero_point_out = rng.i32_in(olo, ohi);
        let clamp = match case % 5 {
            0 => (olo, ohi),
            1 => (zero_point_out.max(olo), ohi),
            2 => {
                let a = rng.i32_in(olo, ohi);
                let b = rng.i32_in(olo, ohi);
                (a.min(b), a.max(b))
            }
            3 => (rng.i32_in(olo, ohi), rng.i32_in(olo, ohi)),
            _ => (olo - 1000, ohi + 1000),
        };
        Case {
            window,
            pointwise,
            groups,
            depth,
            per_group,
            input,
            input_offset: -zero_point,
            input_data,
            weights_type,
            weight_offset,
            weights,
            bias,
            fixed,
            double,
            use_double: case % 3 == 2,
            output,
            zero_point: zero_point_out,
            clamp,
        }
    }

    fn in_c(&self) -> usize {
        self.groups * self.depth
    }

    fn n(&self) -> usize {
        self.groups * self.per_group
    }

    /// The reference: TFLite's loops over the taps inside the image, `octet_core` requantization.
    fn expected(&self) -> Vec<i32> {
        let w = &self.window;
        let ks = w.taps();
        let in_c = self.in_c();
        let n = self.n();
        let indirection = Indirection::new(w, in_c).unwrap();
        let mut out = Vec::with_capacity(w.output_pixels() * n);
        for p in 0..w.output_pixels() {
            let taps = indirection.rows(p..p + 1).unwrap();
            for c in 0..n {
                let g = c / self.per_group;
                let mut acc = self.bias.as_ref().map_or(0, |b| b[c]);
                for (t, &offset) in taps.iter().enumerate() {
                    if offset == PAD {
                        continue;
                    }
                    for k in 0..self.depth {
                        let x = self.input_data[offset as usize + g * self.depth + k];
                        let wt = self.weights[(c * ks + t) * self.depth + k];
                        acc = acc.wrapping_add(
                            (x + self.input_offset).wrapping_mul(wt + self.weight_offset),
                        );
                    }
                }
                let ch = if self.fixed.len() == 1 { 0 } else { c };
                let scaled = if self.use_double {
                    requantize_double(f64::from(acc), self.double[ch])
                } else {
                    multiply_by_quantized_multiplier(acc, self.fixed[ch])
                };
                let v = scaled
                    .wrapping_add(self.zero_point)
                    .max(self.clamp.0)
                    .min(self.clamp.1);
                out.push(match self.output {
                    QType::I8 => i32::from(v as i8),
                    QType::U8 => i32::from(v as u8),
                    QType::I16 => i32::from(v as i16),
                });
            }
        }
        out
    }

    /// The GEMM spec of group `g`.
    fn spec<'a>(&'a self, g: usize, w8: &'a [i8], wu8: &'a [u8]) -> QGemmSpec<'a> {
        let per_weights = self.per_group * self.window.taps() * self.depth;
        let cols = g * self.per_group..(g + 1) * self.per_group;
        let per_col = |len: usize| if len == 1 { 0..1 } else { cols.clone() };
        QGemmSpec {
            input: self.input,
            input_offset: self.input_offset,
            weights: match self.weights_type {
                QType::U8 => QWeights::U8(&wu8[g * per_weights..(g + 1) * per_weights]),
                _ => QWeights::I8(&w8[g * per_weights..(g + 1) * per_weights]),
            },
            weight_offset: self.weight_offset,
            shape: [self.per_group, self.window.taps(), self.depth],
            bias: self.bias.as_ref().map(|b| &b[cols.clone()]),
            requant: if self.use_double {
                Requant::Double(&self.double[per_col(self.double.len())])
            } else {
                Requant::Fixed(&self.fixed[per_col(self.fixed.len())])
            },
            output: self.output,
            output_zero_point: self.zero_point,
            clamp: self.clamp,
        }
    }

    /// Runs every group with `kernel` (rows split at `split`, columns in blocks when
    /// `by_columns`), returning the output as i32, or `None` if the kernel's family cannot
    /// compute this case.
    fn run(&self, kernel: QGemmUkernel, split: usize, by_columns: bool) -> Option<Vec<i32>> {
        match self.output {
            QType::I8 => self.run_typed::<i8>(kernel, split, by_columns),
            QType::U8 => self.run_typed::<u8>(kernel, split, by_columns),
            QType::I16 => self.run_typed::<i16>(kernel, split, by_columns),
        }
    }

    fn run_typed<O: QElement + Into<i32>>(
        &self,
        kernel: QGemmUkernel,
        split: usize,
        by_columns: bool,
    ) -> Option<Vec<i32>> {
        let w8: Vec<i8> = self.weights.iter().map(|&w| w as i8).collect();
        let wu8: Vec<u8> = self.weights.iter().map(|&w| w as u8).collect();
        let gemms: Vec<PackedQGemm> = (0..self.groups)
            .map(|g| PackedQGemm::with_ukernel(kernel, &self.spec(g, &w8, &wu8)))
            .collect::<Result<_, _>>()
            .ok()?;
        let format = gemms[0].input_format();
        let in_c = self.in_c();
        let x8: Vec<i8> = self.input_data.iter().map(|&x| x as i8).collect();
        let xu8: Vec<u8> = self.input_data.iter().map(|&x| x as u8).collect();
        let x16: Vec<i16> = self.input_data.iter().map(|&x| x as i16).collect();
        let input = match self.input {
            QType::I8 => QIn::I8(&x8),
            QType::U8 => QIn::U8(&xu8),
            QType::I16 => QIn::I16(&x16),
        };
        let pixels = self.window.input_pixels();
        let mut scratch = vec![0xa5u8; format.scratch_bytes(pixels, in_c).unwrap() + 7];
        let converted = format.convert(input, in_c, &mut scratch).unwrap();
        let stride = converted.pixel_stride();
        let indirection = Indirection::new(&self.window, stride).unwrap();
        let rows = if self.pointwise {
            RowOffsets::Dense { stride }
        } else {
            RowOffsets::Indirect(&indirection)
        };
        let m = self.window.output_pixels();
        let n = self.n();
        let mut out = vec![O::default(); m * n];
        let split = split.min(m);
        for (g, gemm) in gemms.iter().enumerate() {
            let a = converted.source(g * self.depth, rows).unwrap();
            let first = g * self.per_group;
            for range in [0..split, split..m] {
                if range.is_empty() {
                    continue;
                }
                let start = range.start * n + first;
                if by_columns {
                    let block = gemm.column_block();
                    let mut c = 0;
                    while c < self.per_group {
                        let end = (c + 2 * block).min(self.per_group);
                        gemm.run_columns(&a, range.clone(), c..end, &mut out[start + c..], n)
                            .unwrap();
                        c = end;
                    }
                } else {
                    gemm.run(&a, range, &mut out[start..], n).unwrap();
                }
            }
        }
        Some(out.into_iter().map(Into::into).collect())
    }
}

/// Asserts equal outputs, naming the first differing element.
fn assert_same(what: &str, case: usize, actual: &[i32], expected: &[i32]) {
    assert_eq!(actual.len(), expected.len(), "{what}, case {case}: lengths");
    if let Some(i) = actual.iter().zip(expected).position(|(a, e)| a != e) {
        panic!(
            "{what}, case {case}: element {i} is {}, expected {}",
            actual[i], expected[i]
        );
    }
}

#[test]
fn q_gemm_kernels_agree_with_the_formula_and_generic() {
    let kernels = QGemmUkernel::all();
    let generic_vnni = kernels[0];
    let generic_madd = kernels[1];
    assert_eq!(generic_vnni.family(), QGemmFamily::Vnni);
    assert_eq!(generic_madd.family(), QGemmFamily::Madd16);
    let mut rng = Rng::new(0x9e33);
    let mut ran = vec![0usize; kernels.len()];
    for case in 0..500 {
        let c = Case::random(&mut rng, case);
        let expected = c.expected();
        let m = c.window.output_pixels();
        let split = rng.usize(0..=m);
        let by_columns = case % 7 == 3;
        let generic: Vec<Option<Vec<i32>>> = [generic_vnni, generic_madd]
            .iter()
            .map(|&k| c.run(k, split, by_columns))
            .collect();
        for (k, out) in [generic_vnni, generic_madd].iter().zip(&generic) {
            if let Some(out) = out {
                assert_same(k.info().name, case, out, &expected);
            }
        }
        for (i, &kernel) in kernels.iter().enumerate() {
            let twin = match kernel.family() {
                QGemmFamily::Vnni => &generic[0],
                QGemmFamily::Madd16 => &generic[1],
            };
            let Some(out) = c.run(kernel, split, by_columns) else {
                assert!(twin.is_none(), "{} refused case {case}", kernel.info().name);
                continue;
            };
            ran[i] += 1;
            let twin = twin.as_ref().expect("the generic twin ran");
            assert_same(kernel.info().name, case, &out, twin);
        }
    }
    for (kernel, count) in kernels.iter().zip(ran) {
        assert!(
            count >= 50,
            "{} ran on {count} cases only",
            kernel.info().name
        );
    }
}

impl Case {
    /// The padded image a merged-row GEMM reads, and the window of its taps (one per filter
    /// row) over it.
    fn merged(&self) -> (PaddedImage, Window2d) {
        let w = &self.window;
        let span = |out: usize, stride: usize, filter: usize, dilation: usize| {
            (out - 1) * stride + (filter - 1) * dilation + 1
        };
        let image = PaddedImage {
            batches: w.batches,
            height: w.in_h,
            width: w.in_w,
            top: w.pad_top,
            bottom: span(w.out_h, w.stride_h, w.filter_h, w.dilation_h)
                .saturating_sub(w.in_h + w.pad_top),
            left: w.pad_left,
            right: span(w.out_w, w.stride_w, w.filter_w, w.dilation_w)
                .saturating_sub(w.in_w + w.pad_left),
        };
        let taps = Window2d {
            batches: w.batches,
            in_h: image.padded_height(),
            in_w: image.padded_width(),
            out_h: w.out_h,
            out_w: w.out_w,
            filter_h: w.filter_h,
            filter_w: 1,
            stride_h: w.stride_h,
            stride_w: w.stride_w,
            dilation_h: w.dilation_h,
            dilation_w: 1,
            pad_top: 0,
            pad_left: 0,
        };
        (image, taps)
    }

    /// Runs the case (ungrouped, unit horizontal dilation) as a merged-row GEMM over the
    /// padded image: one tap per filter row of `filter_w * stride` elements.
    fn run_merged<O: QElement + Into<i32>>(&self, kernel: QGemmUkernel) -> Option<Vec<i32>> {
        let w = &self.window;
        let (kh, kw, c) = (w.filter_h, w.filter_w, self.depth);
        let n = self.n();
        let stride = kernel.family().kr() * c.div_ceil(kernel.family().kr());
        // [n][kh][kw][c] -> [n][kh][kw][stride], zeros in the padding channels.
        let mut weights = vec![0i32; n * kh * kw * stride];
        for (i, &v) in self.weights.iter().enumerate() {
            let (pixel, ch) = (i / c, i % c);
            weights[pixel * stride + ch] = v;
        }
        let w8: Vec<i8> = weights.iter().map(|&w| w as i8).collect();
        let wu8: Vec<u8> = weights.iter().map(|&w| w as u8).collect();
        let mut spec = self.spec(0, &w8, &wu8);
        spec.shape = [n, kh, kw * stride];
        spec.weights = match self.weights_type {
            QType::U8 => QWeights::U8(&wu8),
            _ => QWeights::I8(&w8),
        };
        let gemm = PackedQGemm::with_ukernel(kernel, &spec).ok()?;
        let format = gemm.input_format();
        assert_eq!(format.pixel_stride(c), stride);
        let x8: Vec<i8> = self.input_data.iter().map(|&x| x as i8).collect();
        let xu8: Vec<u8> = self.input_data.iter().map(|&x| x as u8).collect();
        let x16: Vec<i16> = self.input_data.iter().map(|&x| x as i16).collect();
        let input = match self.input {
            QType::I8 => QIn::I8(&x8),
            QType::U8 => QIn::U8(&xu8),
            QType::I16 => QIn::I16(&x16),
        };
        let (image, taps) = self.merged();
        let mut scratch = vec![0x5au8; format.padded_scratch_bytes(&image, c).unwrap() + 3];
        let converted = format
            .convert_padded(input, c, &image, &mut scratch)
            .unwrap();
        let indirection = Indirection::new(&taps, stride).unwrap();
        assert!(indirection.offsets().iter().all(|&o| o != PAD));
        let a = converted
            .source(0, RowOffsets::Indirect(&indirection))
            .unwrap();
        let m = w.output_pixels();
        let mut out = vec![O::default(); m * n];
        gemm.run(&a, 0..m, &mut out, n).unwrap();
        Some(out.into_iter().map(Into::into).collect())
    }
}

#[test]
fn merged_row_gemms_over_padded_images_agree_with_the_formula() {
    let kernels = QGemmUkernel::all();
    let mut rng = Rng::new(0x9add);
    let mut ran = vec![0usize; kernels.len()];
    for case in 0..300 {
        let mut c = Case::random(&mut rng, case);
        // One group, unit horizontal dilation, and weights whose zero point is 0 (padding
        // channels then hold zero weights, whatever the offset).
        c.groups = 1;
        c.window.dilation_w = 1;
        let w = &mut c.window;
        w.pad_left = w.pad_left.min(w.filter_w - 1);
        let span = (w.filter_w - 1) + 1;
        w.out_w = (w.in_w + 2 * w.pad_left).saturating_sub(span) / w.stride_w + 1;
        let n = c.per_group;
        let ks = w.taps();
        c.input_data.truncate(w.input_pixels() * c.depth);
        c.weights.truncate(n * ks * c.depth);
        c.weight_offset = 0;
        if let Some(b) = &mut c.bias {
            b.truncate(n);
        }
        if c.fixed.len() > 1 {
            c.fixed.truncate(n);
        }
        if c.double.len() > 1 {
            c.double.truncate(n);
        }
        let expected = c.expected();
        for (i, &kernel) in kernels.iter().enumerate() {
            let out = match c.output {
                QType::I8 => c.run_merged::<i8>(kernel),
                QType::U8 => c.run_merged::<u8>(kernel),
                QType::I16 => c.run_merged::<i16>(kernel),
            };
            if let Some(out) = out {
                ran[i] += 1;
                assert_same(kernel.info().name, case, &out, &expected);
            }
        }
    }
    for (kernel, count) in kernels.iter().zip(ran) {
        assert!(
            count >= 30,
            "{} ran on {count} cases only",
            kernel.info().name
        );
    }
}

#[test]
fn q_convert_kernels_agree_with_generic() {
    let all = QConvertKernels::all();
    let generic = all[0];
    let mut rng = Rng::new(0xc0);
    for case in 0..300 {
        let channels = rng.usize(1..=70);
        let stride = channels + rng.usize(0..=5);
        let pixels = rng.usize(0..=9);
        let slack = rng.usize(0..=8);
        let len = pixels * channels;
        let x: Vec<i32> = (0..len).map(|_| rng.u64() as i32).collect();
        let x8: Vec<i8> = x.iter().map(|&v| v as i8).collect();
        let xu8: Vec<u8> = x.iter().map(|&v| v as u8).collect();
        let x16: Vec<i16> = x.iter().map(|&v| v as i16).collect();
        let offset = {
            let r = rng.i32_in(-40_000, 40_000);
            pick(&mut rng, &[0, 128, -127, 255, r])
        };
        let out_len = pixels * stride + slack;
        let mut expected = vec![0x5au8; out_len];
        generic.to_u8(&x8, channels, stride, &mut expected).unwrap();
        for (p, px) in x8.chunks(channels).enumerate() {
            for (c, &v) in px.iter().enumerate() {
                assert_eq!(expected[p * stride + c], (v as u8).wrapping_add(128));
            }
        }
        for kernels in &all {
            let mut out = vec![0x33u8; out_len];
            kernels.to_u8(&x8, channels, stride, &mut out).unwrap();
            assert_eq!(out, expected, "{} to_u8 case {case}", kernels.isa);
            for input in [QIn::I8(&x8), QIn::U8(&xu8), QIn::I16(&x16)] {
                let mut expected = vec![0x77i16; out_len];
                generic
                    .to_i16(input, offset, channels, stride, &mut expected)
                    .unwrap();
                let mut out = vec![-3i16; out_len];
                kernels
                    .to_i16(input, offset, channels, stride, &mut out)
                    .unwrap();
                assert_eq!(out, expected, "{} to_i16 case {case}", kernels.isa);
            }
        }
    }
}

#[test]
fn repacked_weights_give_what_fresh_ones_give() {
    use crate::frame::gemm::ASource;
    use crate::frame::gemm_f32::{F32Clamp, F32GemmUkernel, PackedF32Gemm};
    let mut rng = Rng::new(0x4e9a);
    for case in 0..100 {
        let c = Case::random(&mut rng, case * 4); // pointwise, ungrouped or grouped
        let w8: Vec<i8> = c.weights.iter().map(|&w| w as i8).collect();
        let wu8: Vec<u8> = c.weights.iter().map(|&w| w as u8).collect();
        let (n, ks, kc) = (c.per_group, c.window.taps(), c.depth);
        let other: Vec<i32> = c.weights.iter().rev().copied().collect();
        let o8: Vec<i8> = other.iter().map(|&w| w as i8).collect();
        let ou8: Vec<u8> = other.iter().map(|&w| w as u8).collect();
        for kernel in QGemmUkernel::all() {
            let Ok(mut gemm) = PackedQGemm::with_ukernel(kernel, &c.spec(0, &w8, &wu8)) else {
                continue;
            };
            let fresh = PackedQGemm::with_ukernel(kernel, &c.spec(0, &o8, &ou8)).unwrap();
            gemm.repack(|col, t, k| other[(col * ks + t) * kc + k])
                .unwrap();
            let x8: Vec<i8> = c.input_data.iter().map(|&x| x as i8).collect();
            let xu8: Vec<u8> = c.input_data.iter().map(|&x| x as u8).collect();
            let x16: Vec<i16> = c.input_data.iter().map(|&x| x as i16).collect();
            let input = match c.input {
                QType::I8 => QIn::I8(&x8),
                QType::U8 => QIn::U8(&xu8),
                QType::I16 => QIn::I16(&x16),
            };
            let in_c = c.in_c();
            let format = gemm.input_format();
            let pixels = c.window.input_pixels();
            let mut scratch = vec![0u8; format.scratch_bytes(pixels, in_c).unwrap()];
            let converted = format.convert(input, in_c, &mut scratch).unwrap();
            let rows = RowOffsets::Dense {
                stride: converted.pixel_stride(),
            };
            let a = converted.source(0, rows).unwrap();
            let m = pixels;
            let run = |g: &PackedQGemm| -> Vec<i32> {
                match c.output {
                    QType::I8 => {
                        let mut out = vec![0i8; m * n];
                        g.run(&a, 0..m, &mut out, n).unwrap();
                        out.into_iter().map(i32::from).collect()
                    }
                    QType::U8 => {
                        let mut out = vec![0u8; m * n];
                        g.run(&a, 0..m, &mut out, n).unwrap();
                        out.into_iter().map(i32::from).collect()
                    }
                    QType::I16 => {
                        let mut out = vec![0i16; m * n];
                        g.run(&a, 0..m, &mut out, n).unwrap();
                        out.into_iter().map(i32::from).collect()
                    }
                }
            };
            assert_same(kernel.info().name, case, &run(&gemm), &run(&fresh));
        }
        // Float: the same through PackedF32Gemm.
        let wf: Vec<f32> = c.weights[..n * ks * kc].iter().map(|&w| w as f32).collect();
        let of: Vec<f32> = other[..n * ks * kc].iter().map(|&w| w as f32).collect();
        let xf: Vec<f32> = c.input_data.iter().map(|&x| x as f32 * 0.01).collect();
        for kernel in F32GemmUkernel::all() {
            let shape = [n, ks, kc];
            let mut gemm =
                PackedF32Gemm::with_ukernel(kernel, &wf, None, shape, F32Clamp::NONE).unwrap();
            let fresh =
                PackedF32Gemm::with_ukernel(kernel, &of, None, shape, F32Clamp::NONE).unwrap();
            gemm.repack(|col, t, k| of[(col * ks + t) * kc + k])
                .unwrap();
            let in_c = c.in_c();
            let m = c.window.input_pixels();
            let a = ASource {
                data: &xf,
                zero: gemm.zero(),
                rows: RowOffsets::Dense { stride: in_c },
            };
            let mut x = vec![0f32; m * n];
            let mut y = vec![0f32; m * n];
            gemm.run(&a, 0..m, &mut x, n).unwrap();
            fresh.run(&a, 0..m, &mut y, n).unwrap();
            assert_eq!(x, y, "{} case {case}", kernel.info().name);
        }
    }
}

#[test]
fn binary16_conversions_are_exact() {
    use crate::frame::gemm_f32::{f16_to_f32, f32_to_f16_exact};
    for h in 0..=u16::MAX {
        let x = f16_to_f32(h);
        if x.is_nan() {
            assert_eq!(f32_to_f16_exact(x), None);
        } else {
            assert_eq!(f32_to_f16_exact(x), Some(h), "{h:#06x} -> {x:e}");
        }
    }
    for x in [
        1.0f32 + f32::EPSILON,
        65520.0,
        1e-9,
        3.0e-8,
        0.1,
        f32::MAX,
        f32::MIN_POSITIVE,
    ] {
        assert_eq!(f32_to_f16_exact(x), None, "{x:e}");
    }
    assert_eq!(f32_to_f16_exact(65504.0), Some(0x7bff));
    assert_eq!(f32_to_f16_exact(-0.0), Some(0x8000));
    assert_eq!(f32_to_f16_exact(5.960_464_5e-8), Some(1));
}

#[test]
fn f32_gemm_with_binary16_weights_gives_the_same_bits() {
    use crate::frame::gemm::ASource;
    use crate::frame::gemm_f32::{F32Clamp, F32GemmUkernel, PackedF32Gemm, f16_to_f32};
    let mut rng = Rng::new(0xf16);
    for case in 0..200 {
        let window = random_window(&mut crate::battery::Rng::new(rng.u64()));
        let channels = rng.usize(1..=37);
        let n = rng.usize(1..=70);
        let ks = window.taps();
        // Weights that are binary16 values (normal, subnormal, zero, both signs).
        let weights: Vec<f32> = (0..n * ks * channels)
            .map(|_| f16_to_f32((rng.u64() as u16) & 0x7bff | (rng.u64() as u16 & 0x8000)))
            .collect();
        let input: Vec<f32> = (0..window.input_pixels() * channels)
            .map(|_| rng.0.f32() * 2.0 - 1.0)
            .collect();
        let bias: Vec<f32> = (0..n).map(|_| rng.0.f32()).collect();
        let indirection = Indirection::new(&window, channels).unwrap();
        let m = window.output_pixels();
        let clamp = if case % 2 == 0 {
            F32Clamp::NONE
        } else {
            F32Clamp {
                min: -3.0,
                max: 3.0,
            }
        };
        for kernel in F32GemmUkernel::all() {
            if !kernel.has_f16_weights() {
                continue;
            }
            let run = |f16: bool| {
                let mut gemm = PackedF32Gemm::with_ukernel(
                    kernel,
                    &weights,
                    Some(&bias),
                    [n, ks, channels],
                    clamp,
                )
                .unwrap();
                if f16 {
                    assert!(gemm.store_f16());
                }
                let a = ASource {
                    data: &input,
                    zero: gemm.zero(),
                    rows: RowOffsets::Indirect(&indirection),
                };
                let mut out = vec![f32::NAN; m * n];
                gemm.run(&a, 0..m, &mut out, n).unwrap();
                out
            };
            let (f32_out, f16_out) = (run(false), run(true));
            let same = f32_out
                .iter()
                .zip(&f16_out)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{} case {case}", kernel.info().name);
        }
    }
}

/// Model-like convolutions (small and large `k`, 8-bit outputs, realistic per-channel
/// multipliers, so that outputs spread over the range and many accumulators sit near rounding
/// boundaries): every kernel against the generic one of its family, whole-row outputs included
/// (where the SIMD stage packs several rows into one store).
#[test]
fn q_gemm_kernels_agree_on_model_like_scales() {
    let kernels = QGemmUkernel::all();
    let mut rng = Rng::new(0x51ab);
    for case in 0..80 {
        let (cin, cout, size) = [
            (16, 16, 1),
            (16, 64, 1),
            (24, 144, 1),
            (24, 16, 1),
            (3, 24, 3),
            (32, 32, 1),
            (64, 24, 1),
            (16, 32, 3),
        ][case % 8];
        let hw = rng.usize(3..=12);
        let window = Window2d {
            batches: 1,
            in_h: hw,
            in_w: hw + 1,
            out_h: hw,
            out_w: hw + 1,
            filter_h: size,
            filter_w: size,
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            pad_top: size / 2,
            pad_left: size / 2,
        };
        let taps = window.taps();
        let signed_out = case % 3 != 2;
        // Every fourth case: inputs near their zero point and tiny weights, so that the
        // multipliers exceed 1 (left shifts) while the outputs still spread over the range.
        let tiny = case % 4 == 3;
        let input_zero_point = rng.i32_in(-128, 127);
        let input: Vec<i8> = (0..window.input_pixels() * cin)
            .map(|_| {
                if tiny {
                    (input_zero_point + rng.i32_in(-8, 8)).clamp(-128, 127) as i8
                } else {
                    rng.i32_in(-128, 127) as i8
                }
            })
            .collect();
        let w_max = if tiny { 2 } else { 127 };
        let weights: Vec<i8> = (0..cout * taps * cin)
            .map(|_| rng.i32_in(-w_max, w_max) as i8)
            .collect();
        let b_max = if tiny { 50 } else { 20_000 };
        let bias: Vec<i32> = (0..cout).map(|_| rng.i32_in(-b_max, b_max)).collect();
        let spread = ((taps * cin) as f64).sqrt() * if tiny { 10.0 } else { 5000.0 };
        let multipliers: Vec<QuantizedMultiplier> = (0..cout)
            .map(|_| {
                let real = (0.5 + rng.0.f64()) * 100.0 / spread;
                octet_core::fixed_point::quantize_multiplier(real).unwrap()
            })
            .collect();
        let (olo, ohi) = if signed_out { (-128, 127) } else { (0, 255) };
        let zero_point = rng.i32_in(olo, ohi);
        let clamp = if case % 2 == 0 {
            (olo, ohi)
        } else {
            (zero_point, ohi)
        };
        let spec = QGemmSpec {
            input: QType::I8,
            input_offset: -input_zero_point,
            weights: QWeights::I8(&weights),
            weight_offset: 0,
            shape: [cout, taps, cin],
            bias: Some(&bias),
            requant: Requant::Fixed(&multipliers),
            output: if signed_out { QType::I8 } else { QType::U8 },
            output_zero_point: zero_point,
            clamp,
        };
        let m = window.output_pixels();
        let run = |kernel: QGemmUkernel| -> Option<Vec<u8>> {
            let gemm = PackedQGemm::with_ukernel(kernel, &spec).ok()?;
            let format = gemm.input_format();
            let mut scratch = vec![0u8; format.scratch_bytes(window.input_pixels(), cin).unwrap()];
            let converted = format.convert(QIn::I8(&input), cin, &mut scratch).unwrap();
            let indirection = Indirection::new(&window, converted.pixel_stride()).unwrap();
            let rows = if size == 1 {
                RowOffsets::Dense {
                    stride: converted.pixel_stride(),
                }
            } else {
                RowOffsets::Indirect(&indirection)
            };
            let a = converted.source(0, rows).unwrap();
            let mut out = vec![0u8; m * cout];
            if signed_out {
                let out8: &mut [i8] = bytemuck::cast_slice_mut(&mut out);
                gemm.run(&a, 0..m, out8, cout).unwrap();
            } else {
                gemm.run(&a, 0..m, &mut out, cout).unwrap();
            }
            Some(out)
        };
        let generic: Vec<Option<Vec<u8>>> = [kernels[0], kernels[1]].map(run).into();
        assert_eq!(generic[0], generic[1], "generic families, case {case}");
        for &kernel in &kernels[2..] {
            let twin = match kernel.family() {
                QGemmFamily::Vnni => &generic[0],
                QGemmFamily::Madd16 => &generic[1],
            };
            let (Some(out), Some(twin)) = (run(kernel), twin) else {
                continue;
            };
            assert!(
                out == *twin,
                "{}, case {case}: {cin}->{cout} {size}x{size}",
                kernel.info().name
            );
        }
    }
}
