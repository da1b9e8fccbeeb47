//! The test battery: every micro-kernel of every instruction set this CPU supports against the
//! generic twin, on random shapes that include sizes off the tile grid, padding taps and every
//! clamp. Integer kernels must agree bit for bit, float kernels within rounding.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use crate::frame::gemm::{ASource, RowOffsets};
use crate::frame::gemm_f32::{F32Clamp, F32GemmUkernel, PackedF32Gemm};
use crate::frame::window::{Indirection, Window2d};

/// A seeded source of test shapes and values.
pub(crate) struct Rng(fastrand::Rng);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(fastrand::Rng::with_seed(seed))
    }
    pub(crate) fn usize(&mut self, range: std::ops::RangeInclusive<usize>) -> usize {
        self.0.usize(range)
    }
    pub(crate) fn f32s(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.0.f32() * 2.0 - 1.0).collect()
    }
    pub(crate) fn bool(&mut self) -> bool {
        self.0.bool()
    }
}

/// A random convolution window (with padding, strides and dilations) over a small image.
pub(crate) fn random_window(rng: &mut Rng) -> Window2d {
    let filter = (rng.usize(1..=5), rng.usize(1..=5));
    // As much padding after the image as before it.
    random_window_of(rng, filter, 2, (9, 9), |_, before| before)
}

/// A random window of a `filter` (height, width): strides up to `max_stride`, dilations up to
/// 2, an image up to `max_in` (height, width), padding before the image up to the dilated
/// filter's span and `pad_after(span, before)` after it.
pub(crate) fn random_window_of(
    rng: &mut Rng,
    (filter_h, filter_w): (usize, usize),
    max_stride: usize,
    (max_in_h, max_in_w): (usize, usize),
    pad_after: impl Fn(usize, usize) -> usize,
) -> Window2d {
    let stride_h = rng.usize(1..=max_stride);
    let stride_w = rng.usize(1..=max_stride);
    let dilation_h = rng.usize(1..=2);
    let dilation_w = rng.usize(1..=2);
    let in_h = rng.usize(1..=max_in_h);
    let in_w = rng.usize(1..=max_in_w);
    let pad_top = rng.usize(0..=(filter_h - 1) * dilation_h);
    let pad_left = rng.usize(0..=(filter_w - 1) * dilation_w);
    let out = |size: usize, pad: usize, filter: usize, dilation: usize, stride: usize| {
        let span = (filter - 1) * dilation + 1;
        (size + pad + pad_after(span, pad)).saturating_sub(span) / stride + 1
    };
    Window2d {
        batches: rng.usize(1..=2),
        in_h,
        in_w,
        out_h: out(in_h, pad_top, filter_h, dilation_h, stride_h),
        out_w: out(in_w, pad_left, filter_w, dilation_w, stride_w),
        filter_h,
        filter_w,
        stride_h,
        stride_w,
        dilation_h,
        dilation_w,
        pad_top,
        pad_left,
    }
}

/// Float kernels compute every output with the same fused operations in the same order as the
/// generic twin, so they must agree bit for bit.
fn assert_same_bits(kernel: &str, case: usize, actual: &[f32], expected: &[f32]) {
    assert_eq!(actual.len(), expected.len());
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            a.to_bits() == e.to_bits(),
            "{kernel}, case {case}: element {i} is {a}, generic {e}"
        );
    }
}

#[test]
fn f32_gemm_kernels_match_generic_bit_for_bit() {
    let kernels = F32GemmUkernel::all();
    let generic = kernels[0];
    let mut rng = Rng::new(0xf32);
    for case in 0..300 {
        let window = random_window(&mut rng);
        let channels = rng.usize(1..=37);
        let n = rng.usize(1..=70);
        let pointwise = case % 4 == 0;
        let (ks, window) = if pointwise {
            let mut w = window;
            (
                w.filter_h, w.filter_w, w.stride_h, w.stride_w, w.pad_top, w.pad_left,
            ) = (1, 1, 1, 1, 0, 0);
            (w.out_h, w.out_w) = (w.in_h, w.in_w);
            (1, w)
        } else {
            (window.taps(), window)
        };
        let input = rng.f32s(window.input_pixels() * channels);
        let weights = rng.f32s(n * ks * channels);
        let bias = rng.bool().then(|| rng.f32s(n));
        let clamp = match case % 3 {
            0 => F32Clamp::NONE,
            1 => F32Clamp { min: 0.0, max: 6.0 },
            _ => F32Clamp {
                min: -0.5,
                max: f32::MAX,
            },
        };
        let indirection = Indirection::new(&window, channels).unwrap();
        let rows = if pointwise {
            RowOffsets::Dense { stride: channels }
        } else {
            RowOffsets::Indirect(&indirection)
        };
        let m = window.output_pixels();
        let run = |kernel: F32GemmUkernel| {
            let gemm = PackedF32Gemm::with_ukernel(
                kernel,
                &weights,
                bias.as_deref(),
                [n, ks, channels],
                clamp,
            )
            .unwrap();
            let a = ASource {
                data: &input,
                zero: gemm.zero(),
                rows,
            };
            let mut out = vec![f32::NAN; m * n];
            gemm.run(&a, 0..m, &mut out, n).unwrap();
            out
        };
        let expected = run(generic);
        for &kernel in &kernels[1..] {
            assert_same_bits(kernel.info().name, case, &run(kernel), &expected);
        }
    }
}
