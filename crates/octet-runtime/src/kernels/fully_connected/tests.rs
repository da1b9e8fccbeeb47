//! Hand-worked cases for FULLY_CONNECTED and BATCH_MATMUL: one-operator models run through the
//! interpreter, expected values worked out in the comments.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use octet_core::{
    ActivationFunction, BatchMatMulOptions, DType, FullyConnectedOptions, Model, Op, Operator,
    Shape, Subgraph, Tensor, TensorId,
};

use super::batch_matmul::MatmulDims;
use super::hybrid::{accumulate_hybrid, accumulate_hybrid_sse, hybrid_blocks, row_sum_sse};
use crate::Interpreter;
use crate::kernels::hybrid_input::{asymmetric_quantize, symmetric_quantize};
use crate::kernels::testing::{self, T, t};
use bytemuck::Pod;
use octet_core::WeightsFormat;
use octet_core::fixed_point::{double_effective_scale, requantize_double};

/// Builds a model with one operator over `tensors` (inputs: every tensor but the last that
/// is not constant and is used; output: the last tensor), runs it on `inputs` and returns
/// the output bytes.
fn run(op: Op, tensors: Vec<T>, op_inputs: &[Option<usize>], inputs: &[&[u8]]) -> Vec<u8> {
    let mut tensors: Vec<Option<T>> = tensors.into_iter().map(Some).collect();
    let output = tensors.pop().flatten().unwrap();
    let op_inputs = op_inputs
        .iter()
        .map(|i| i.map(|i| tensors[i].take().unwrap()))
        .collect();
    let model = testing::model_with_omitted(op, op_inputs, vec![output]);
    let feeds: Vec<Vec<u8>> = inputs.iter().map(|bytes| bytes.to_vec()).collect();
    testing::run(&model, &feeds).unwrap().swap_remove(0)
}

fn fc(activation: ActivationFunction) -> Op {
    Op::FullyConnected(FullyConnectedOptions {
        activation,
        ..FullyConnectedOptions::default()
    })
}

fn values<P: Pod>(bytes: &[u8]) -> Vec<P> {
    bytes
        .chunks_exact(size_of::<P>())
        .map(bytemuck::pod_read_unaligned)
        .collect()
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    values(bytes)
}

#[test]
fn double_requantization_rounds_half_away_from_zero() {
    assert_eq!(requantize_double(5.0, 0.5), 3);
    assert_eq!(requantize_double(-5.0, 0.5), -3);
    assert_eq!(requantize_double(-3.0, 0.5), -2);
    // Out of int32: what x86's conversion gives.
    assert_eq!(requantize_double(3e9, 1.0), i32::MIN);
    assert_eq!(requantize_double(-3e9, 1.0), i32::MIN);
    assert_eq!(double_effective_scale(0.5, 0.25, 2.0), 0.0625);
}

#[test]
fn float_fc_adds_bias_and_clamps() {
    // weights [[1, 2], [3, -4]], bias [0.5, 1]; x = [[2, 3], [1, 1]]:
    // row 0: 1*2 + 2*3 + 0.5 = 8.5, 3*2 - 4*3 + 1 = -5 -> relu 0
    // row 1: 1 + 2 + 0.5 = 3.5, 3 - 4 + 1 = 0.
    let out = run(
        fc(ActivationFunction::Relu),
        vec![
            t(DType::Float32, &[2, 2]),
            t(DType::Float32, &[2, 2]).values(&[1f32, 2.0, 3.0, -4.0]),
            t(DType::Float32, &[2]).values(&[0.5f32, 1.0]),
            t(DType::Float32, &[2, 2]),
        ],
        &[Some(0), Some(1), Some(2)],
        &[bytemuck::cast_slice(&[2f32, 3.0, 1.0, 1.0])],
    );
    assert_eq!(floats(&out), [8.5, 0.0, 3.5, 0.0]);
}

#[test]
fn int8_fc_requantizes_in_double_precision() {
    // Input scale 0.5 (zp 0), weights [[1, 2], [3, -4]] scale 0.25, bias [0, 8] (scale
    // 0.125), output scale 0.25 with zero point 1: the effective scale is 0.5.
    // x = [2, 3]: acc0 = 1*2 + 2*3 = 8 -> 4 -> 5; acc1 = 3*2 - 4*3 + 8 = 2 -> 1 -> 2.
    // x = [1, 1]: acc0 = 3 -> 1.5 -> 2 -> 3; acc1 = -1 + 8 = 7 -> 3.5 -> 4 -> 5.
    // x = [-1, -1]: acc0 = -3 -> -1.5 rounds away from zero to -2 -> -1 (the fixed-point
    // multiplier would give -1 -> 0); acc1 = 1 + 8 = 9 -> 4.5 -> 5 -> 6.
    let out = run(
        fc(ActivationFunction::None),
        vec![
            t(DType::Int8, &[3, 2]).q(0.5, 0),
            t(DType::Int8, &[2, 2]).q(0.25, 0).values(&[1i8, 2, 3, -4]),
            t(DType::Int32, &[2]).q(0.125, 0).values(&[0i32, 8]),
            t(DType::Int8, &[3, 2]).q(0.25, 1),
        ],
        &[Some(0), Some(1), Some(2)],
        &[bytemuck::cast_slice(&[2i8, 3, 1, 1, -1, -1])],
    );
    assert_eq!(bytemuck::cast_slice::<u8, i8>(&out), [5, 2, 3, 5, -1, 6]);
}

#[test]
fn per_channel_int8_fc_ignores_weight_zero_points_and_clamps_relu() {
    // Channel scales 0.5 and 1.0, input scale 1, output scale 1, zero point -3, ReLU
    // (clamp at the zero point -3). x = [1, -2]: acc0 = 4*1 + 1*(-2) = 2 -> 1 -> -2;
    // acc1 = -2*1 + 1*(-2) = -4 -> -4 -> -7 -> clamped to -3.
    let out = run(
        fc(ActivationFunction::Relu),
        vec![
            t(DType::Int8, &[1, 2]).q(1.0, 0),
            t(DType::Int8, &[2, 2])
                .per_axis(&[0.5, 1.0], 0)
                .values(&[4i8, 1, -2, 1]),
            t(DType::Int8, &[1, 2]).q(1.0, -3),
        ],
        &[Some(0), Some(1), None],
        &[bytemuck::cast_slice(&[1i8, -2])],
    );
    assert_eq!(bytemuck::cast_slice::<u8, i8>(&out), [-2, -3]);
}

#[test]
fn uint8_fc_applies_both_zero_points() {
    // Input zp 128 (scale 1), weights zp 100 (scale 0.5), output scale 1, zp 10.
    // x = [130, 127] -> [2, -1]; weights [[102, 99]] -> [2, -1]; acc = 4 + 1 = 5 -> 2.5 ->
    // 3 -> 13.
    let out = run(
        fc(ActivationFunction::None),
        vec![
            t(DType::UInt8, &[1, 2]).q(1.0, 128),
            t(DType::UInt8, &[1, 2]).q(0.5, 100).values(&[102u8, 99]),
            t(DType::UInt8, &[1, 1]).q(1.0, 10),
        ],
        &[Some(0), Some(1), None],
        &[&[130u8, 127]],
    );
    assert_eq!(out, [13]);
}

#[test]
fn int16x8_fc_uses_an_int64_bias() {
    // Input scale 1, weights [[100, 100]] scale 1, bias 2^32 (does not fit int32), output
    // scale 2^20: (30000 * 100 * 2 + 2^32) / 2^20 = 4101.73... -> 4102.
    let out = run(
        fc(ActivationFunction::None),
        vec![
            t(DType::Int16, &[1, 2]).q(1.0, 0),
            t(DType::Int8, &[1, 2]).q(1.0, 0).values(&[100i8, 100]),
            t(DType::Int64, &[1]).q(1.0, 0).values(&[1i64 << 32]),
            t(DType::Int16, &[1, 1]).q(1024.0 * 1024.0, 0),
        ],
        &[Some(0), Some(1), Some(2)],
        &[bytemuck::cast_slice(&[30000i16, 30000])],
    );
    let expected = ((30000.0 * 100.0 * 2.0 + 4294967296.0) / 1048576.0f64).round() as i16;
    assert_eq!(expected, 4102);
    assert_eq!(values::<i16>(&out), [expected]);
}

#[test]
fn symmetric_row_quantization() {
    // range 2: scale 2/127, values * 63.5: 63.5 -> 64, -127, 31.75 -> 32.
    let mut q = [0i8; 3];
    let scale = symmetric_quantize(&[1.0, -2.0, 0.5], &mut q);
    assert_eq!(q, [64, -127, 32]);
    assert_eq!(scale, 2.0 / 127.0);
    assert_eq!(symmetric_quantize(&[0.0, 0.0, 0.0], &mut q), 1.0);
    assert_eq!(q, [0, 0, 0]);
}

#[test]
fn asymmetric_row_quantization() {
    // [0, 2.55]: scale 0.01, the zero point from the minimum is -128, so 0 -> -128 and
    // 2.55 -> 127; 1.0 -> -28.
    let mut q = [0i8; 3];
    let (scale, zero_point) = asymmetric_quantize(&[0.0, 2.55, 1.0], &mut q);
    assert_eq!((scale, zero_point), (0.01, -128));
    assert_eq!(q, [-128, 127, -28]);
    // [-1, 1]: scale 2/255, zero points -0.5 from both ends (equal errors pick the max
    // end's), rounded half away from zero to -1.
    let (scale, zero_point) = asymmetric_quantize(&[-1.0, 1.0, 0.0], &mut q);
    assert_eq!((scale, zero_point), ((2.0f64 / 255.0) as f32, -1));
    assert_eq!(q, [-128, 126, -1]);
}

#[test]
fn sse_dot_product_quirk_for_minus_128_weights() {
    // Sixteen weights of -128 against inputs of -1 are in an SSE block: each contributes
    // 128 * -1 instead of +128. The 17th pair is outside the block and correct.
    let w = [-128i8; 17];
    let q = [-1i8; 17];
    assert_eq!(accumulate_hybrid_sse(&w, &q), -16 * 128 + 128);
    assert_eq!(accumulate_hybrid(&w, &q), 17 * 128);
    // Positive inputs are not affected.
    assert_eq!(accumulate_hybrid_sse(&w, &[1; 17]), -17 * 128);
}

#[test]
fn sse_row_sums_wrap_in_int16_lanes() {
    // 130 blocks of 16 values of 127: each of the 8 lanes gets 130 * 254 = 33020, which
    // wraps to 33020 - 65536 = -32516.
    let row = vec![127i8; 16 * 130];
    assert_eq!(row_sum_sse(&row), 8 * (33020 - 65536));
    // Short rows are exact: 16 + 8 + 3 values.
    let row: Vec<i8> = (0..27).map(|i| i as i8 - 13).collect();
    assert_eq!(row_sum_sse(&row), (0..27).map(|i| i - 13).sum::<i32>());
}

#[test]
fn hybrid_fc_quantizes_each_row() {
    // Weights [[2, -1]] scale 0.5, no bias. Row [1, -2]: symmetric scale 2/127, q =
    // [64, -127]; dot = 2*64 + (-1)(-127) = 255, scaled by (2/127) * 0.5: 2.0079 (the
    // unquantized result is (2*1 + (-1)(-2)) * 0.5 = 2).
    let out = run(
        fc(ActivationFunction::None),
        vec![
            t(DType::Float32, &[1, 2]),
            t(DType::Int8, &[1, 2]).q(0.5, 0).values(&[2i8, -1]),
            t(DType::Float32, &[1, 1]),
        ],
        &[Some(0), Some(1), None],
        &[bytemuck::cast_slice(&[1f32, -2.0])],
    );
    let scale = (2.0f32 / 127.0) * 0.5;
    assert_eq!(floats(&out), [255.0 * scale]);
}

#[test]
fn fc_rejects_shuffled_weights() {
    let model_op = Op::FullyConnected(FullyConnectedOptions {
        weights_format: WeightsFormat::Shuffled4x16Int8,
        ..FullyConnectedOptions::default()
    });
    let mut model = Model::default();
    let mut sg = Subgraph::default();
    for shape in [[1, 16], [4, 16], [1, 4]] {
        sg.add_tensor(Tensor::new("t", DType::UInt8, Shape::new(shape.to_vec())))
            .unwrap();
    }
    sg.inputs = vec![TensorId(0), TensorId(1)];
    sg.outputs = vec![TensorId(2)];
    sg.operators.push(Operator::new(
        model_op,
        vec![Some(TensorId(0)), Some(TensorId(1))],
        vec![TensorId(2)],
    ));
    model.subgraphs.push(sg);
    let err = Interpreter::new(&model).unwrap_err();
    assert!(err.to_string().contains("shuffled"), "{err}");
}

fn bmm(adj_x: bool, adj_y: bool) -> Op {
    Op::BatchMatMul(BatchMatMulOptions {
        adj_x,
        adj_y,
        asymmetric_quantize_inputs: false,
    })
}

#[test]
fn float_batch_matmul_with_adjoints_and_broadcasting() {
    // [[1, 2], [3, 4]] x [[5, 6], [7, 8]] = [[19, 22], [43, 50]]; the second LHS matrix
    // is the identity, so it reproduces the (broadcast) RHS.
    let lhs = [1f32, 2.0, 3.0, 4.0, 1.0, 0.0, 0.0, 1.0];
    let rhs = [5f32, 6.0, 7.0, 8.0];
    let expected = [19f32, 22.0, 43.0, 50.0, 5.0, 6.0, 7.0, 8.0];
    let transpose =
        |m: &[f32]| -> Vec<f32> { m.chunks(4).flat_map(|c| [c[0], c[2], c[1], c[3]]).collect() };
    for (adj_x, adj_y) in [(false, false), (true, false), (false, true), (true, true)] {
        let l = if adj_x { transpose(&lhs) } else { lhs.to_vec() };
        let r = if adj_y { transpose(&rhs) } else { rhs.to_vec() };
        let out = run(
            bmm(adj_x, adj_y),
            vec![
                t(DType::Float32, &[2, 2, 2]),
                t(DType::Float32, &[2, 2]),
                t(DType::Float32, &[2, 2, 2]),
            ],
            &[Some(0), Some(1)],
            &[bytemuck::cast_slice(&l), bytemuck::cast_slice(&r)],
        );
        assert_eq!(floats(&out), expected, "adj_x {adj_x}, adj_y {adj_y}");
    }
}

#[test]
fn int8_batch_matmul_uses_the_fixed_point_multiplier() {
    // Scales 1 x 1 / 2: multiplier 0.5. LHS zp 1, RHS zp 0, output zp 0.
    // [[0, 2]] - 1 = [[-1, 1]]; x [[1], [-2]]: -1 - 2 = -3 -> -1.5, which the fixed-point
    // multiplier rounds to -1 (the double-precision FULLY_CONNECTED would give -2).
    let out = run(
        bmm(false, false),
        vec![
            t(DType::Int8, &[1, 2]).q(1.0, 1),
            t(DType::Int8, &[2, 1]).q(1.0, 0),
            t(DType::Int8, &[1, 1]).q(2.0, 0),
        ],
        &[Some(0), Some(1)],
        &[
            bytemuck::cast_slice(&[0i8, 2]),
            bytemuck::cast_slice(&[1i8, -2]),
        ],
    );
    assert_eq!(bytemuck::cast_slice::<u8, i8>(&out), [-1]);
}

#[test]
fn int8_batch_matmul_to_int32_ignores_zero_points() {
    let out = run(
        bmm(false, false),
        vec![
            t(DType::Int8, &[1, 2]).q(1.0, 5),
            t(DType::Int8, &[2, 1]).q(1.0, 3),
            t(DType::Int32, &[1, 1]),
        ],
        &[Some(0), Some(1)],
        &[
            bytemuck::cast_slice(&[3i8, -4]),
            bytemuck::cast_slice(&[7i8, 2]),
        ],
    );
    assert_eq!(values::<i32>(&out), [13]);
}

#[test]
fn hybrid_batch_walk_reproduces_tflite_indexing() {
    // LHS and RHS with batch [2, 3]: TFLite advances the scales by one matrix per batch
    // dimension, so block (b1, b2) reads the scales of matrix b1 + b2, not 3 * b1 + b2.
    let dims = MatmulDims {
        rows: 4,
        depth: 5,
        cols: 6,
        adj_x: false,
        adj_y: false,
        pairs: vec![(0, 0); 6],
    };
    let blocks = hybrid_blocks(&[2, 3], &[2, 3], &dims);
    let scales: Vec<usize> = blocks.iter().map(|b| b.scales).collect();
    assert_eq!(scales, [0, 4, 8, 4, 8, 12]);
    let quantized: Vec<usize> = blocks.iter().map(|b| b.quantized).collect();
    assert_eq!(quantized, [0, 20, 40, 60, 80, 100]);
    let outputs: Vec<usize> = blocks.iter().map(|b| b.output).collect();
    assert_eq!(outputs, [0, 24, 48, 72, 96, 120]);
}

#[test]
fn hybrid_batch_matmul_per_tensor() {
    // LHS row [1, -2] (symmetric scale 2/127, q = [64, -127]); RHS [[2], [-1]] scale 0.5:
    // 64*2 + 127 = 255 -> 255 * (2/127 * 0.5).
    let out = run(
        bmm(false, false),
        vec![
            t(DType::Float32, &[1, 2]),
            t(DType::Int8, &[2, 1]).q(0.5, 0).values(&[2i8, -1]),
            t(DType::Float32, &[1, 1]),
        ],
        &[Some(0), Some(1)],
        &[bytemuck::cast_slice(&[1f32, -2.0])],
    );
    let scale = (2.0f32 / 127.0) * 0.5;
    assert_eq!(floats(&out), [scale * 255.0]);
}
