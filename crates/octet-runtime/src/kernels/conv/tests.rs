//! Hand-worked cases for the convolution kernels. Each builds a one-operator model and runs it
//! through the interpreter; the expected values are worked out in the comments.

use octet_core::fixed_point::QuantizedMultiplier;
use octet_core::{
    ActivationFunction, Conv2DOptions, DType, DepthwiseConv2DOptions, FullyConnectedOptions, Op,
    Padding, QuantParams, TransposeConvOptions,
};
use octet_linalg::Isa;

use super::{out_size, padding_before, taps};
use crate::kernels::gemm::{Requantize, Scales};
use crate::kernels::hybrid_input::{asymmetric_quantize, symmetric_quantize};
use crate::kernels::testing::{self, T, f32s, i32s, t};
use crate::{InterpreterOptions, RuntimeError};

fn i64s(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn i16s(v: &[i16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn i8s(v: &[i8]) -> Vec<u8> {
    v.iter().map(|&x| x as u8).collect()
}
fn to_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
fn to_i8(b: &[u8]) -> Vec<i8> {
    b.iter().map(|&x| x as i8).collect()
}
fn to_i16(b: &[u8]) -> Vec<i16> {
    b.chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// Builds a model with one operator and runs it, feeding `feeds` to the non-constant inputs in
/// order; returns the output bytes.
fn run(
    op: Op,
    inputs: Vec<Option<T>>,
    output: T,
    feeds: &[Vec<u8>],
) -> Result<Vec<u8>, RuntimeError> {
    run_with(op, inputs, output, feeds, InterpreterOptions::default())
}

/// [`run`] with interpreter options (instruction set, threads).
fn run_with(
    op: Op,
    inputs: Vec<Option<T>>,
    output: T,
    feeds: &[Vec<u8>],
    options: InterpreterOptions,
) -> Result<Vec<u8>, RuntimeError> {
    let model = testing::model_with_omitted(op, inputs, vec![output]);
    Ok(testing::run_with(&model, feeds, options)?.swap_remove(0))
}

fn conv_options(padding: Padding, stride: i32, activation: ActivationFunction) -> Conv2DOptions {
    Conv2DOptions {
        padding,
        stride_w: stride,
        stride_h: stride,
        activation,
        dilation_w: 1,
        dilation_h: 1,
        ..Conv2DOptions::default()
    }
}

#[test]
fn same_padding_puts_the_odd_pixel_after() {
    // 7 wide, filter 3, stride 2: out = ceil(7 / 2) = 4, total padding 3*2 + 3 - 7 = 2, 1 before.
    assert_eq!(out_size(Padding::Same, 7, 3, 2, 1), Some(4));
    assert_eq!(padding_before(2, 1, 7, 3, 4), 1);
    // Filter 4, stride 3, 10 wide: out 4, total 3*3 + 4 - 10 = 3: 1 before, 2 after.
    assert_eq!(out_size(Padding::Same, 10, 4, 3, 1), Some(4));
    assert_eq!(padding_before(3, 1, 10, 4, 4), 1);
    // VALID with dilation 2: effective filter (3 - 1) * 2 + 1 = 5, out (9 + 1 - 5) / 1 = 5.
    assert_eq!(out_size(Padding::Valid, 9, 3, 1, 2), Some(5));
    assert_eq!(padding_before(1, 2, 9, 3, 5), 0);
    // A filter larger than a VALID image: (1 + 2 - 4) / 2 = -1/2 truncates to 0 as in C++, but
    // (2 + 1 - 4) / 1 = -1 is an error (TFLite then leaves the size at 0).
    assert_eq!(out_size(Padding::Valid, 1, 4, 2, 1), Some(0));
    assert_eq!(out_size(Padding::Valid, 2, 4, 1, 1), None);
    // Taps of a window starting one pixel before the image with dilation 2 over 4 pixels:
    // positions -1, 1, 3, 5 -> filter taps 1 (pixel 1) and 2 (pixel 3).
    assert_eq!(taps(-1, 2, 4, 4).collect::<Vec<_>>(), [(1, 1), (2, 3)]);
}

#[test]
fn float_conv_valid_with_bias_and_relu6() {
    // Input 3x3 [1..9], 2x2 filter of ones: window sums 1+2+4+5 = 12, 16, 24, 28; bias -10
    // gives 2, 6, 14, 18, clamped by RELU6 to 2, 6, 6, 6.
    let out = run(
        Op::Conv2D(conv_options(Padding::Valid, 1, ActivationFunction::Relu6)),
        vec![
            Some(t(DType::Float32, &[1, 3, 3, 1])),
            Some(t(DType::Float32, &[1, 2, 2, 1]).data(f32s(&[1.0; 4]))),
            Some(t(DType::Float32, &[1]).data(f32s(&[-10.0]))),
        ],
        t(DType::Float32, &[1, 2, 2, 1]),
        &[f32s(&[1., 2., 3., 4., 5., 6., 7., 8., 9.])],
    )
    .unwrap();
    assert_eq!(to_f32(&out), [2.0, 6.0, 6.0, 6.0]);
}

#[test]
fn float_conv_same_stride_2_skips_the_padding() {
    // 1x3x3x1 input, 3x3 filter of ones, stride 2, SAME: out 2x2, total padding 2*1+3-3 = 2,
    // 1 before. Output (0,0) sums rows/cols 0..=1: 1+2+4+5 = 12; (0,1) rows 0..=1, cols 1..=2:
    // 2+3+5+6 = 16; (1,0): 4+5+7+8 = 24; (1,1): 5+6+8+9 = 28. No bias input at all.
    let out = run(
        Op::Conv2D(conv_options(Padding::Same, 2, ActivationFunction::None)),
        vec![
            Some(t(DType::Float32, &[1, 3, 3, 1])),
            Some(t(DType::Float32, &[1, 3, 3, 1]).data(f32s(&[1.0; 9]))),
            None,
        ],
        t(DType::Float32, &[1, 2, 2, 1]),
        &[f32s(&[1., 2., 3., 4., 5., 6., 7., 8., 9.])],
    )
    .unwrap();
    assert_eq!(to_f32(&out), [12.0, 16.0, 24.0, 28.0]);
}

#[test]
fn grouped_float_conv_reads_its_group_only() {
    // Input depth 4, filter depth 2: 2 groups, one output channel each. Channel 0 = [1, 1] .
    // [x0, x1] = 1 + 2 = 3; channel 1 = [1, -1] . [x2, x3] = 3 - 4 = -1.
    let out = run(
        Op::Conv2D(conv_options(Padding::Valid, 1, ActivationFunction::None)),
        vec![
            Some(t(DType::Float32, &[1, 1, 1, 4])),
            Some(t(DType::Float32, &[2, 1, 1, 2]).data(f32s(&[1., 1., 1., -1.]))),
            Some(t(DType::Float32, &[2]).data(f32s(&[0., 0.]))),
        ],
        t(DType::Float32, &[1, 1, 1, 2]),
        &[f32s(&[1., 2., 3., 4.])],
    )
    .unwrap();
    assert_eq!(to_f32(&out), [3.0, -1.0]);
}

/// The int8 1x1 convolution worked below, with `weights` in any int8-compatible encoding.
fn int8_conv(weights: T, activation: ActivationFunction) -> Vec<i8> {
    // Input scale 1, zero point 1: x = [3, -2 | 5, 1] reads as [2, -3 | 4, 0] (two pixels of two
    // channels). Weights [[1, 2], [-3, 4]] with scales [0.5, 0.25], bias [4, -7], output scale
    // 1 and zero point -1:
    //   pixel 0, channel 0: 1*2 + 2*-3 + 4 = 0    -> 0 * 0.5     = 0     -> -1
    //   pixel 0, channel 1: -3*2 + 4*-3 - 7 = -25 -> -25 * 0.25  = -6.25 -> -6 -> -7
    //   pixel 1, channel 0: 1*4 + 0 + 4 = 8       -> 4                   -> 3
    //   pixel 1, channel 1: -3*4 + 0 - 7 = -19    -> -4.75 -> -5         -> -6
    let out = run(
        Op::Conv2D(conv_options(Padding::Valid, 1, activation)),
        vec![
            Some(t(DType::Int8, &[1, 1, 2, 2]).q(1.0, 1)),
            Some(weights),
            Some(
                t(DType::Int32, &[2])
                    .per_axis(&[0.5, 0.25], 0)
                    .data(i32s(&[4, -7])),
            ),
        ],
        t(DType::Int8, &[1, 1, 2, 2]).q(1.0, -1),
        &[i8s(&[3, -2, 5, 1])],
    )
    .unwrap();
    to_i8(&out)
}

#[test]
fn int8_conv_per_channel() {
    let weights = || {
        t(DType::Int8, &[2, 1, 1, 2])
            .per_axis(&[0.5, 0.25], 0)
            .data(i8s(&[1, 2, -3, 4]))
    };
    assert_eq!(
        int8_conv(weights(), ActivationFunction::None),
        [-1, -7, 3, -6]
    );
    // RELU: the quantized zero (the zero point, -1) is the floor.
    assert_eq!(
        int8_conv(weights(), ActivationFunction::Relu),
        [-1, -1, 3, -1]
    );
}

#[test]
fn int4_weights_are_unpacked_low_nibble_first() {
    // The same weights packed two to a byte: (1, 2) -> 0x21, (-3, 4) -> 0x4d.
    let weights = t(DType::Int4, &[2, 1, 1, 2])
        .per_axis(&[0.5, 0.25], 0)
        .data(vec![0x21, 0x4d]);
    assert_eq!(
        int8_conv(weights, ActivationFunction::None),
        [-1, -7, 3, -6]
    );
}

#[test]
fn uint8_conv_uses_the_filter_zero_point() {
    // Input zero point 128, filter zero point 120, scales 0.5 * 0.5 / 0.25 = 1: the single
    // output is (130-128)*(122-120) + (126-128)*(121-120) + bias 3 = 4 - 2 + 3 = 5, plus output
    // zero point 10 = 15.
    let out = run(
        Op::Conv2D(conv_options(Padding::Valid, 1, ActivationFunction::None)),
        vec![
            Some(t(DType::UInt8, &[1, 1, 1, 2]).q(0.5, 128)),
            Some(
                t(DType::UInt8, &[1, 1, 1, 2])
                    .q(0.5, 120)
                    .data(vec![122, 121]),
            ),
            Some(t(DType::Int32, &[1]).q(0.25, 0).data(i32s(&[3]))),
        ],
        t(DType::UInt8, &[1, 1, 1, 1]).q(0.25, 10),
        &[vec![130, 126]],
    )
    .unwrap();
    assert_eq!(out, [15]);
}

#[test]
fn int16_conv_accumulates_in_64_bits() {
    // 32767 * 127 * 4 = 16_645_636, plus a bias of 2^40, overflows 32 bits; the 64-bit
    // accumulator keeps it. Multiplier 2^-30 (scales 2^-15 * 2^-15 / 1): (2^40 + 16_645_636) *
    // 2^-30 = 1024.0155 -> 1024.
    let out = run(
        Op::Conv2D(conv_options(Padding::Valid, 1, ActivationFunction::None)),
        vec![
            Some(t(DType::Int16, &[1, 1, 1, 4]).q(1.0 / 32768.0, 0)),
            Some(
                t(DType::Int8, &[1, 1, 1, 4])
                    .q(1.0 / 32768.0, 0)
                    .data(i8s(&[127; 4])),
            ),
            Some(t(DType::Int64, &[1]).data(i64s(&[1 << 40]))),
        ],
        t(DType::Int16, &[1, 1, 1, 1]).q(1.0, 0),
        &[i16s(&[32767; 4])],
    )
    .unwrap();
    assert_eq!(to_i16(&out), [1024]);
}

#[test]
fn int16_depthwise_with_multiplier_2() {
    // One input channel, depth multiplier 2, 1x2 filter [[1, -1], [2, 3]] (taps x channels),
    // input [100, 7]: channel 0 = 100 - 7 = 93, channel 1 = 200 + 21 = 221; bias [0, -21];
    // scales 1 * 0.5 / 1: 46.5 -> 47 (halves round up), 100.
    let options = DepthwiseConv2DOptions {
        padding: Padding::Valid,
        stride_w: 1,
        stride_h: 1,
        depth_multiplier: 2,
        dilation_w: 1,
        dilation_h: 1,
        ..DepthwiseConv2DOptions::default()
    };
    let inputs = || {
        vec![
            Some(t(DType::Int16, &[1, 1, 2, 1]).q(1.0, 0)),
            Some(
                t(DType::Int8, &[1, 1, 2, 2])
                    .per_axis(&[0.5, 0.5], 3)
                    .data(i8s(&[1, 2, -1, 3])),
            ),
            Some(t(DType::Int64, &[2]).data(i64s(&[0, -21]))),
        ]
    };
    let out = run(
        Op::DepthwiseConv2D(options.clone()),
        inputs(),
        t(DType::Int16, &[1, 1, 1, 2]).q(1.0, 0),
        &[i16s(&[100, 7])],
    )
    .unwrap();
    assert_eq!(to_i16(&out), [47, 100]);
    // The int16 kernel takes the option's multiplier, so a wrong one is refused.
    let wrong = DepthwiseConv2DOptions {
        depth_multiplier: 1,
        ..options
    };
    let err = run(
        Op::DepthwiseConv2D(wrong),
        inputs(),
        t(DType::Int16, &[1, 1, 1, 2]).q(1.0, 0),
        &[i16s(&[100, 7])],
    )
    .unwrap_err();
    assert!(matches!(err, RuntimeError::Unsupported { .. }), "{err}");
}

#[test]
fn float_transpose_conv_scatters_each_input() {
    // Input 2x2 [1, 2, 3, 4], 2x2 filter of ones. Stride 1 VALID, output 3x3: each input adds
    // itself to a 2x2 block: [[1, 3, 2], [4, 10, 6], [3, 7, 4]]; bias 1 on top.
    let options = TransposeConvOptions {
        padding: Padding::Valid,
        stride_w: 1,
        stride_h: 1,
        ..TransposeConvOptions::default()
    };
    let out = run(
        Op::TransposeConv(options),
        vec![
            Some(t(DType::Int32, &[4]).data(i32s(&[1, 3, 3, 1]))),
            Some(t(DType::Float32, &[1, 2, 2, 1]).data(f32s(&[1.0; 4]))),
            Some(t(DType::Float32, &[1, 2, 2, 1])),
            Some(t(DType::Float32, &[1]).data(f32s(&[1.0]))),
        ],
        t(DType::Float32, &[1, 3, 3, 1]),
        &[f32s(&[1., 2., 3., 4.])],
    )
    .unwrap();
    assert_eq!(to_f32(&out), [2., 4., 3., 5., 11., 7., 4., 8., 5.]);
}

#[test]
fn int8_transpose_conv_stride_2_same() {
    // Input 1x2x1x1 [10, -4] (zero point 0), filter 1x3x1x1 [1, 2, 3], stride 2 SAME, output
    // height 4: the convolution from 4 back to ceil(4 / 2) = 2 has total padding
    // (2-1)*2 + 3 - 4 = 1, 0 before. Input 0 lands on rows 0..=2 (10, 20, 30), input 1 on rows
    // 2..=4 (row 4 is cut): -4, -8. Rows: 10, 20, 26, -8; scale 1 * 0.5 / 1 = 0.5: 5, 10, 13,
    // -4; output zero point 2: 7, 12, 15, -2.
    let options = TransposeConvOptions {
        padding: Padding::Same,
        stride_w: 1,
        stride_h: 2,
        ..TransposeConvOptions::default()
    };
    let out = run(
        Op::TransposeConv(options),
        vec![
            Some(t(DType::Int32, &[4]).data(i32s(&[1, 4, 1, 1]))),
            Some(
                t(DType::Int8, &[1, 3, 1, 1])
                    .per_axis(&[0.5], 0)
                    .data(i8s(&[1, 2, 3])),
            ),
            Some(t(DType::Int8, &[1, 2, 1, 1]).q(1.0, 0)),
            None,
        ],
        t(DType::Int8, &[1, 4, 1, 1]).q(1.0, 2),
        &[i8s(&[10, -4])],
    )
    .unwrap();
    assert_eq!(to_i8(&out), [7, 12, 15, -2]);
}

#[test]
fn hybrid_input_quantization_matches_tflite() {
    // Symmetric: range 1 -> scale 1/127; 0.5 * 127 = 63.5 rounds away from zero to 64.
    let mut q = [0i8; 3];
    let scale = symmetric_quantize(&[0.5, -1.0, 0.25], &mut q);
    assert_eq!(q, [64, -127, 32]);
    assert_eq!(scale, 1.0 / 127.0);
    // All zeros: scale 1, values 0.
    assert_eq!(symmetric_quantize(&[0.0, 0.0], &mut q[..2]), 1.0);
    // Asymmetric over [-1, 1]: scale 2/255, both zero-point candidates are -0.5 (the one from
    // the max has the smaller error), which rounds away from zero to -1. In float,
    // 1 / scale = 127.49999: -1 -> round(-127.49999) - 1 = -128, 1 -> round(127.49999) - 1 = 126.
    let mut q = [0i8; 2];
    let (scale, zero_point) = asymmetric_quantize(&[-1.0, 1.0], &mut q);
    assert_eq!((scale, zero_point), ((2.0f64 / 255.0) as f32, -1));
    assert_eq!(q, [-128, 126]);
    // Only non-negative values: rmin = 0, zero point -128.
    let (_, zero_point) = asymmetric_quantize(&[0.0, 1.0], &mut q);
    assert_eq!((zero_point, q), (-128, [-128, 127]));
}

#[test]
fn hybrid_input_quantization_rounds_like_tflite_neon_kernels() {
    // Over [0, 6] (scale 6/255, zero point -128), 1.6117648 / scale is 68.5 in f32: TFLite
    // rounds it before adding the zero point (-128 + 69 = -59), not after (round(-59.5) = -60).
    let mut q = [0i8; 2];
    let (_, zero_point) = asymmetric_quantize(&[6.0, 1.611_764_8], &mut q);
    assert_eq!((zero_point, q), (-128, [127, -59]));
    // In full blocks of 8, x +- 0.5 is truncated in f32, so 0.49999997 becomes 1 there but 0 in
    // the remainder, which `std::round`s.
    let tiny = 0.5f32 - f32::EPSILON / 4.0;
    let mut values = [0.0f32; 10];
    values[0] = 127.0;
    values[1] = tiny;
    values[2] = -tiny;
    values[9] = tiny;
    let mut q = [0i8; 10];
    assert_eq!(symmetric_quantize(&values, &mut q), 1.0);
    assert_eq!(q, [127, 1, -1, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn hybrid_conv_per_tensor_scales_the_int_accumulator() {
    // Input [0.5, -1.0, 0.25] quantizes to [64, -127, 32] with scale 1/127; weights [2, 1, -1]
    // with scale 0.1: acc = 128 - 127 - 32 = -31, output -31 * (1/127 * 0.1) + bias 1.
    let out = run(
        Op::Conv2D(conv_options(Padding::Valid, 1, ActivationFunction::None)),
        vec![
            Some(t(DType::Float32, &[1, 1, 1, 3])),
            Some(
                t(DType::Int8, &[1, 1, 1, 3])
                    .q(0.1, 0)
                    .data(i8s(&[2, 1, -1])),
            ),
            Some(t(DType::Float32, &[1]).data(f32s(&[1.0]))),
        ],
        t(DType::Float32, &[1, 1, 1, 1]),
        &[f32s(&[0.5, -1.0, 0.25])],
    )
    .unwrap();
    let expected = -31.0f32 * (1.0f32 / 127.0 * 0.1) + 1.0;
    assert_eq!(to_f32(&out), [expected]);
}

#[test]
fn requantize_clamps_to_the_activation_range() {
    let r = Requantize {
        scales: Scales::Fixed(vec![QuantizedMultiplier::new(1 << 30, 1)]), // 0.5 * 2 = 1.0
        output_offset: 5,
        act_min: -10,
        act_max: 10,
    };
    assert_eq!(r.apply(3i32, 0), 8);
    assert_eq!(r.apply(100i32, 0), 10);
    assert_eq!(r.apply(-100i64, 0), -10);
}

#[test]
fn mismatched_output_shape_is_an_invalid_model() {
    let err = run(
        Op::Conv2D(conv_options(Padding::Same, 2, ActivationFunction::None)),
        vec![
            Some(t(DType::Float32, &[1, 3, 3, 1])),
            Some(t(DType::Float32, &[1, 3, 3, 1]).data(f32s(&[1.0; 9]))),
            None,
        ],
        t(DType::Float32, &[1, 3, 3, 1]),
        &[f32s(&[0.0; 9])],
    )
    .unwrap_err();
    assert!(matches!(err, RuntimeError::InvalidOp { .. }), "{err}");
}

#[test]
fn int8_conv_with_nonzero_filter_zero_point_is_refused() {
    let err = run(
        Op::Conv2D(conv_options(Padding::Valid, 1, ActivationFunction::None)),
        vec![
            Some(t(DType::Int8, &[1, 1, 1, 1]).q(1.0, 0)),
            Some(t(DType::Int8, &[1, 1, 1, 1]).q(1.0, 3).data(i8s(&[1]))),
            None,
        ],
        t(DType::Int8, &[1, 1, 1, 1]).q(1.0, 0),
        &[i8s(&[1])],
    )
    .unwrap_err();
    assert!(matches!(err, RuntimeError::InvalidOp { .. }), "{err}");
}

// ---------------------------------------------------------------------------------------------
// The GEMM kernels (weights known at build time) against the scalar kernels (the same weights
// fed as inputs) on random shapes, every instruction set, one and two threads.

/// A small xorshift generator for the randomized tests.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// A value in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    fn size(&mut self, lo: usize, hi: usize) -> usize {
        self.range(lo as i64, hi as i64) as usize
    }
    fn unit(&mut self) -> f32 {
        (self.next() % 20001) as f32 / 10000.0 - 1.0
    }
}

/// The flavours of the randomized comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Flavour {
    Float,
    Int8,
    UInt8,
    Int16,
}

/// A tensor spec and its bytes: the constant or fed form of one operand.
struct Operand {
    dtype: DType,
    shape: Vec<i32>,
    quant: Option<QuantParams>,
    bytes: Vec<u8>,
}

impl Operand {
    fn spec(&self, constant: bool) -> T {
        let spec = t(self.dtype, &dims(&self.shape)).maybe_quant(self.quant.clone());
        if constant {
            spec.data(self.bytes.clone())
        } else {
            spec
        }
    }
}

/// A shape given as TFLite's `i32` dimensions.
fn dims(shape: &[i32]) -> Vec<usize> {
    shape.iter().map(|&d| d as usize).collect()
}

/// Random operands of `flavour`: the data input, the weights (`channels` output channels along
/// axis 0, `per_channel_axis` for per-channel scales), the bias, and the output's dtype and
/// quantization; `input_scale` sets the scale of the bias.
fn operands(
    rng: &mut XorShift,
    flavour: Flavour,
    input_shape: &[i32],
    weights_shape: &[i32],
    channels: usize,
) -> (Operand, Operand, Operand, (DType, Option<QuantParams>)) {
    let count = |shape: &[i32]| shape.iter().product::<i32>() as usize;
    let (n_in, n_w) = (count(input_shape), count(weights_shape));
    let weight_scales: Vec<f32> = (0..channels)
        .map(|_| 0.01 + 0.04 * rng.unit().abs())
        .collect();
    let (input, weights, bias, output) = match flavour {
        Flavour::Float => {
            let f = |rng: &mut XorShift, n: usize| {
                f32s(&(0..n).map(|_| rng.unit()).collect::<Vec<_>>())
            };
            (
                (DType::Float32, None, f(rng, n_in)),
                (DType::Float32, None, f(rng, n_w)),
                (DType::Float32, None, f(rng, channels)),
                (DType::Float32, None),
            )
        }
        Flavour::Int8 | Flavour::Int16 => {
            let int16 = flavour == Flavour::Int16;
            let input_scale = if int16 { 0.0005 } else { 0.05 };
            let zp = if int16 { 0 } else { rng.range(-128, 127) };
            let input = if int16 {
                i16s(
                    &(0..n_in)
                        .map(|_| rng.range(-32768, 32767) as i16)
                        .collect::<Vec<_>>(),
                )
            } else {
                i8s(&(0..n_in)
                    .map(|_| rng.range(-128, 127) as i8)
                    .collect::<Vec<_>>())
            };
            let weights = i8s(&(0..n_w)
                .map(|_| rng.range(-127, 127) as i8)
                .collect::<Vec<_>>());
            let bias_scales: Vec<f32> = weight_scales.iter().map(|s| s * input_scale).collect();
            let bias = i32s(
                &(0..channels)
                    .map(|_| rng.range(-5000, 5000) as i32)
                    .collect::<Vec<_>>(),
            );
            let out_scale = if int16 {
                0.002
            } else {
                0.05 + 0.5 * rng.unit().abs()
            };
            let out_zp = if int16 { 0 } else { rng.range(-128, 127) };
            (
                (
                    if int16 { DType::Int16 } else { DType::Int8 },
                    Some(QuantParams::per_tensor(input_scale, zp)),
                    input,
                ),
                (
                    DType::Int8,
                    Some(QuantParams::per_axis(
                        weight_scales.clone(),
                        vec![0; channels],
                        0,
                    )),
                    weights,
                ),
                (
                    DType::Int32,
                    Some(QuantParams::per_axis(bias_scales, vec![0; channels], 0)),
                    bias,
                ),
                (
                    if int16 { DType::Int16 } else { DType::Int8 },
                    Some(QuantParams::per_tensor(out_scale, out_zp)),
                ),
            )
        }
        Flavour::UInt8 => {
            let (input_scale, weight_scale) = (0.05f32, 0.02f32);
            let input = (0..n_in).map(|_| rng.range(0, 255) as u8).collect();
            let weights = (0..n_w).map(|_| rng.range(0, 255) as u8).collect();
            let bias = i32s(
                &(0..channels)
                    .map(|_| rng.range(-5000, 5000) as i32)
                    .collect::<Vec<_>>(),
            );
            (
                (
                    DType::UInt8,
                    Some(QuantParams::per_tensor(input_scale, rng.range(0, 255))),
                    input,
                ),
                (
                    DType::UInt8,
                    Some(QuantParams::per_tensor(weight_scale, rng.range(0, 255))),
                    weights,
                ),
                (
                    DType::Int32,
                    Some(QuantParams::per_tensor(input_scale * weight_scale, 0)),
                    bias,
                ),
                (
                    DType::UInt8,
                    Some(QuantParams::per_tensor(
                        0.5 + rng.unit().abs(),
                        rng.range(0, 255),
                    )),
                ),
            )
        }
    };
    let operand =
        |(dtype, quant, bytes): (DType, Option<QuantParams>, Vec<u8>), shape: &[i32]| Operand {
            dtype,
            shape: shape.to_vec(),
            quant,
            bytes,
        };
    (
        operand(input, input_shape),
        operand(weights, weights_shape),
        operand(bias, &[channels as i32]),
        output,
    )
}

/// Runs `op` with the weights and bias fed (the scalar kernels) and as constants (the GEMM
/// kernels) on every instruction set with one and two threads, and compares.
#[allow(clippy::too_many_arguments)]
fn compare_gemm_with_scalar(
    case: usize,
    op: Op,
    flavour: Flavour,
    prefix: Vec<Option<Operand>>,
    input: Operand,
    weights: Operand,
    bias: Operand,
    output: (DType, Option<QuantParams>, Vec<i32>),
    input_position: usize,
) {
    let out_spec = || t(output.0, &dims(&output.2)).maybe_quant(output.1.clone());
    // Operand order: the prefix (constants), then input, weights, bias in their op positions.
    let specs = |constant: bool| -> Vec<Option<T>> {
        let mut specs: Vec<Option<T>> = prefix
            .iter()
            .map(|p| p.as_ref().map(|p| p.spec(true)))
            .collect();
        let (a, b, c) = (
            Some(input.spec(false)),
            Some(weights.spec(constant)),
            Some(bias.spec(constant)),
        );
        if input_position == 0 {
            specs.extend([a, b, c]);
        } else {
            // TRANSPOSE_CONV: weights, input, bias.
            specs.extend([b, a, c]);
        }
        specs
    };
    let fed: Vec<Vec<u8>> = if input_position == 0 {
        vec![
            input.bytes.clone(),
            weights.bytes.clone(),
            bias.bytes.clone(),
        ]
    } else {
        vec![
            weights.bytes.clone(),
            input.bytes.clone(),
            bias.bytes.clone(),
        ]
    };
    let scalar = run(op.clone(), specs(false), out_spec(), &fed).unwrap();
    for isa in Isa::supported() {
        for threads in [1, 2] {
            let options = InterpreterOptions {
                threads,
                isa: Some(isa),
            };
            let got = run_with(
                op.clone(),
                specs(true),
                out_spec(),
                std::slice::from_ref(&input.bytes),
                options,
            )
            .unwrap();
            let what = format!("case {case} {flavour:?} {isa} x{threads}: {op:?}");
            if flavour == Flavour::Float {
                let (got, want) = (to_f32(&got), to_f32(&scalar));
                let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-5 * scale,
                        "{what}: element {i}: {g} vs {w}"
                    );
                }
            } else if let Some(i) = got.iter().zip(&scalar).position(|(g, w)| g != w) {
                panic!("{what}: byte {i}: {} vs {}", got[i], scalar[i]);
            }
        }
    }
}

fn random_activation(rng: &mut XorShift) -> ActivationFunction {
    [
        ActivationFunction::None,
        ActivationFunction::Relu,
        ActivationFunction::Relu6,
        ActivationFunction::ReluN1To1,
    ][rng.size(0, 3)]
}

const FLAVOURS: [Flavour; 4] = [
    Flavour::Float,
    Flavour::Int8,
    Flavour::UInt8,
    Flavour::Int16,
];

#[test]
fn gemm_conv_2d_matches_the_scalar_kernel() {
    let mut rng = XorShift(0x5eed_c0de);
    for case in 0..40 {
        let flavour = FLAVOURS[case % 4];
        let groups = if flavour == Flavour::UInt8 || case % 3 != 0 {
            1
        } else {
            rng.size(2, 3)
        };
        let depth = rng.size(1, 12);
        let in_c = groups * depth;
        let out_c = groups * rng.size(1, 9);
        let (batches, in_h, in_w) = (rng.size(1, 2), rng.size(1, 9), rng.size(1, 9));
        let (fh, fw) = (rng.size(1, 4), rng.size(1, 4));
        let padding = if rng.size(0, 1) == 0 {
            Padding::Same
        } else {
            Padding::Valid
        };
        let (sh, sw) = (rng.size(1, 2) as i32, rng.size(1, 2) as i32);
        let (dh, dw) = (rng.size(1, 2) as i32, rng.size(1, 2) as i32);
        let out = |image: usize, filter: usize, stride: i32, dilation: i32| {
            out_size(
                padding,
                image as i64,
                filter as i64,
                stride.into(),
                dilation.into(),
            )
        };
        let (Some(oh), Some(ow)) = (out(in_h, fh, sh, dh), out(in_w, fw, sw, dw)) else {
            continue;
        };
        if oh == 0 || ow == 0 {
            continue;
        }
        let shape = |v: &[usize]| v.iter().map(|&d| d as i32).collect::<Vec<_>>();
        let (input, weights, bias, (odt, oq)) = operands(
            &mut rng,
            flavour,
            &shape(&[batches, in_h, in_w, in_c]),
            &shape(&[out_c, fh, fw, depth]),
            out_c,
        );
        let op = Op::Conv2D(Conv2DOptions {
            padding,
            stride_h: sh,
            stride_w: sw,
            dilation_h: dh,
            dilation_w: dw,
            activation: random_activation(&mut rng),
            quantized_bias_type: if flavour == Flavour::Int16 {
                DType::Int32
            } else {
                DType::Float32
            },
        });
        let out_shape = vec![batches as i32, oh as i32, ow as i32, out_c as i32];
        compare_gemm_with_scalar(
            case,
            op,
            flavour,
            vec![],
            input,
            weights,
            bias,
            (odt, oq, out_shape),
            0,
        );
    }
}

#[test]
fn gemm_transpose_conv_matches_the_scalar_kernel() {
    let mut rng = XorShift(0x7a5e);
    for case in 0..24 {
        let flavour = FLAVOURS[case % 4];
        let (in_c, out_c) = (rng.size(1, 10), rng.size(1, 10));
        let (batches, in_h, in_w) = (rng.size(1, 2), rng.size(1, 6), rng.size(1, 6));
        let (fh, fw) = (rng.size(1, 4), rng.size(1, 4));
        let (sh, sw) = (rng.size(1, 3), rng.size(1, 3));
        let padding = if rng.size(0, 1) == 0 {
            Padding::Same
        } else {
            Padding::Valid
        };
        let out = |image: usize, filter: usize, stride: usize| match padding {
            Padding::Same => image * stride,
            Padding::Valid => (image - 1) * stride + filter,
        };
        let (oh, ow) = (out(in_h, fh, sh), out(in_w, fw, sw));
        let shape = |v: &[usize]| v.iter().map(|&d| d as i32).collect::<Vec<_>>();
        let (input, weights, bias, (odt, oq)) = operands(
            &mut rng,
            flavour,
            &shape(&[batches, in_h, in_w, in_c]),
            &shape(&[out_c, fh, fw, in_c]),
            out_c,
        );
        let out_shape = vec![batches as i32, oh as i32, ow as i32, out_c as i32];
        let output_shape = Operand {
            dtype: DType::Int32,
            shape: vec![4],
            quant: None,
            bytes: i32s(&out_shape),
        };
        let op = Op::TransposeConv(TransposeConvOptions {
            padding,
            stride_h: sh as i32,
            stride_w: sw as i32,
            activation: random_activation(&mut rng),
            quantized_bias_type: if flavour == Flavour::Int16 {
                DType::Int32
            } else {
                DType::Float32
            },
        });
        compare_gemm_with_scalar(
            case,
            op,
            flavour,
            vec![Some(output_shape)],
            input,
            weights,
            bias,
            (odt, oq, out_shape),
            1,
        );
    }
}

#[test]
fn gemm_fully_connected_matches_the_scalar_kernel() {
    let mut rng = XorShift(0xfc);
    for case in 0..24 {
        let flavour = FLAVOURS[case % 4];
        let (batches, depth, units) = (rng.size(1, 5), rng.size(1, 70), rng.size(1, 70));
        let (input, weights, bias, (odt, oq)) = operands(
            &mut rng,
            flavour,
            &[batches as i32, depth as i32],
            &[units as i32, depth as i32],
            units,
        );
        // Every other integer case with per-tensor weights (one scale, possibly a zero point).
        let weights = match (&weights.quant, case % 8 < 4) {
            (Some(q), true) if flavour != Flavour::Float && flavour != Flavour::UInt8 => Operand {
                quant: Some(QuantParams::per_tensor(q.scale[0], 0)),
                ..weights
            },
            _ => weights,
        };
        let bias = match (&weights.quant, &input.quant, &bias.quant) {
            (Some(w), Some(i), Some(_)) if w.scale.len() == 1 => Operand {
                quant: Some(QuantParams::per_tensor(w.scale[0] * i.scale[0], 0)),
                ..bias
            },
            _ => bias,
        };
        let op = Op::FullyConnected(FullyConnectedOptions {
            activation: random_activation(&mut rng),
            quantized_bias_type: if flavour == Flavour::Int16 {
                DType::Int32
            } else {
                DType::Float32
            },
            ..FullyConnectedOptions::default()
        });
        let out_shape = vec![batches as i32, units as i32];
        compare_gemm_with_scalar(
            case,
            op,
            flavour,
            vec![],
            input,
            weights,
            bias,
            (odt, oq, out_shape),
            0,
        );
    }
}
