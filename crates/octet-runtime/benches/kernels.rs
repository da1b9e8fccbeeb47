//! Criterion benchmarks of the heavy kernels: CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED in
//! float32 and int8, each as a one-operator model of MobileNet-like size built in code.
//!
//! Run with `cargo bench -p octet-runtime`; `cargo xtask bench` compares whole models with LiteRT.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // benchmark code

use criterion::{Criterion, criterion_group, criterion_main};
use octet_core::builder::{ModelBuilder, TensorSpec};
use octet_core::{
    ActivationFunction, Conv2DOptions, DType, DepthwiseConv2DOptions, FullyConnectedOptions, Model,
    Op, Padding,
};
use octet_runtime::Interpreter;

/// Deterministic bytes for weights and inputs.
fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn floats(len: usize, seed: u64) -> Vec<u8> {
    pseudo_random_bytes(len, seed)
        .iter()
        .flat_map(|&b| (f32::from(b) / 128.0 - 1.0).to_le_bytes())
        .collect()
}

struct Spec {
    op: Op,
    input: Vec<usize>,
    weights: Vec<usize>,
    output: Vec<usize>,
    /// Axis of per-channel weight scales.
    channel_axis: usize,
}

/// A one-operator model: input, constant weights and bias, output; int8 uses per-channel
/// weights and int32 bias as the TFLite int8 spec requires.
fn single_op_model(spec: &Spec, dtype: DType) -> Model {
    let elements = |s: &[usize]| s.iter().product::<usize>();
    let channels = spec.weights[spec.channel_axis];
    let out_channels = *spec.output.last().unwrap();
    let mut input = TensorSpec::new(dtype, &spec.input);
    let mut weights = TensorSpec::new(dtype, &spec.weights);
    let mut output = TensorSpec::new(dtype, &spec.output);
    let (bias, weight_bytes, bias_bytes) = if dtype == DType::Int8 {
        input = input.per_tensor(0.02, -3);
        output = output.per_tensor(0.05, 5);
        let scales: Vec<f32> = (0..channels).map(|c| 0.001 + c as f32 * 1e-5).collect();
        weights = weights.per_axis(scales.clone(), spec.channel_axis as i32);
        let bias = TensorSpec::new(DType::Int32, &[out_channels])
            .per_axis(scales.iter().map(|s| s * 0.02).collect(), 0);
        let weight_bytes = pseudo_random_bytes(elements(&spec.weights), 1)
            .iter()
            .map(|b| if *b == 128 { 129 } else { *b })
            .collect();
        let bias_bytes = (0..out_channels)
            .flat_map(|c| (c as i32 * 17 - 100).to_le_bytes())
            .collect();
        (bias, weight_bytes, bias_bytes)
    } else {
        let bias = TensorSpec::new(DType::Float32, &[out_channels]);
        (
            bias,
            floats(elements(&spec.weights), 1),
            floats(out_channels, 2),
        )
    };
    ModelBuilder::one_op(
        spec.op.clone(),
        vec![
            Some((input, None)),
            Some((weights, Some(weight_bytes))),
            Some((bias, Some(bias_bytes))),
        ],
        vec![output],
    )
    .unwrap()
}

fn specs() -> Vec<(&'static str, Spec)> {
    vec![
        (
            "conv_3x3_56x56x32",
            Spec {
                op: Op::Conv2D(Conv2DOptions {
                    padding: Padding::Same,
                    stride_w: 1,
                    stride_h: 1,
                    activation: ActivationFunction::Relu6,
                    dilation_w: 1,
                    dilation_h: 1,
                    quantized_bias_type: DType::Float32,
                }),
                input: vec![1, 56, 56, 32],
                weights: vec![32, 3, 3, 32],
                output: vec![1, 56, 56, 32],
                channel_axis: 0,
            },
        ),
        (
            "depthwise_3x3_112x112x32",
            Spec {
                op: Op::DepthwiseConv2D(DepthwiseConv2DOptions {
                    padding: Padding::Same,
                    stride_w: 1,
                    stride_h: 1,
                    depth_multiplier: 1,
                    activation: ActivationFunction::Relu6,
                    dilation_w: 1,
                    dilation_h: 1,
                }),
                input: vec![1, 112, 112, 32],
                weights: vec![1, 3, 3, 32],
                output: vec![1, 112, 112, 32],
                channel_axis: 3,
            },
        ),
        (
            "fully_connected_1024x1000",
            Spec {
                op: Op::FullyConnected(FullyConnectedOptions::default()),
                input: vec![1, 1024],
                weights: vec![1000, 1024],
                output: vec![1, 1000],
                channel_axis: 0,
            },
        ),
    ]
}

fn bench_kernels(c: &mut Criterion) {
    for (name, spec) in specs() {
        for dtype in [DType::Float32, DType::Int8] {
            let model = single_op_model(&spec, dtype);
            let mut interpreter = match Interpreter::new(&model) {
                Ok(i) => i,
                Err(e) => {
                    eprintln!("skipping {name}/{dtype}: {e}");
                    continue;
                }
            };
            let len = interpreter.input_info(0).unwrap().byte_len();
            let input = if dtype == DType::Float32 {
                floats(len / 4, 3)
            } else {
                pseudo_random_bytes(len, 3)
            };
            interpreter.set_input(0, &input).unwrap();
            c.bench_function(&format!("{name}/{dtype}"), |b| {
                b.iter(|| interpreter.invoke().unwrap());
            });
        }
    }
}

criterion_group!(benches, bench_kernels);
criterion_main!(benches);
