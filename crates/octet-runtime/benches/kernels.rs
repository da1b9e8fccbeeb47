//! Criterion benchmarks of the heavy kernels: CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED in
//! float32 and int8, each as a one-operator model of MobileNet-like size built in code.
//!
//! Run with `cargo bench -p octet-runtime`; `cargo xtask bench` compares whole models with LiteRT.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // benchmark code

use criterion::{Criterion, criterion_group, criterion_main};
use octet_core::{
    ActivationFunction, Conv2DOptions, DType, DepthwiseConv2DOptions, FullyConnectedOptions, Model,
    Op, Operator, Padding, QuantParams, Shape, Subgraph, Tensor, TensorId,
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
    input: Vec<i32>,
    weights: Vec<i32>,
    output: Vec<i32>,
    /// Axis of per-channel weight scales.
    channel_axis: usize,
}

/// A one-operator model: input, constant weights and bias, output; int8 uses per-channel
/// weights and int32 bias as the TFLite int8 spec requires.
fn single_op_model(spec: &Spec, dtype: DType) -> Model {
    let mut model = Model {
        schema_version: 3,
        ..Model::default()
    };
    let elements = |s: &[i32]| s.iter().product::<i32>() as usize;
    let channels = spec.weights[spec.channel_axis] as usize;
    let out_channels = *spec.output.last().unwrap() as usize;
    let mut sg = Subgraph::default();
    let mut input = Tensor::new("input", dtype, Shape::new(spec.input.clone()));
    let mut weights = Tensor::new("weights", dtype, Shape::new(spec.weights.clone()));
    let mut bias = Tensor::new(
        "bias",
        if dtype == DType::Int8 {
            DType::Int32
        } else {
            DType::Float32
        },
        Shape::new(vec![out_channels as i32]),
    );
    let mut output = Tensor::new("output", dtype, Shape::new(spec.output.clone()));
    if dtype == DType::Int8 {
        input.quant = Some(QuantParams::per_tensor(0.02, -3));
        output.quant = Some(QuantParams::per_tensor(0.05, 5));
        let scales: Vec<f32> = (0..channels).map(|c| 0.001 + c as f32 * 1e-5).collect();
        weights.quant = Some(QuantParams::per_axis(
            scales.clone(),
            vec![0; channels],
            spec.channel_axis as i32,
        ));
        bias.quant = Some(QuantParams::per_axis(
            scales.iter().map(|s| s * 0.02).collect(),
            vec![0; channels],
            0,
        ));
        weights.buffer = model
            .add_buffer(
                pseudo_random_bytes(elements(&spec.weights), 1)
                    .iter()
                    .map(|b| if *b == 128 { 129 } else { *b })
                    .collect(),
            )
            .unwrap();
        bias.buffer = model
            .add_buffer(
                (0..out_channels)
                    .flat_map(|c| (c as i32 * 17 - 100).to_le_bytes())
                    .collect(),
            )
            .unwrap();
    } else {
        weights.buffer = model
            .add_buffer(floats(elements(&spec.weights), 1))
            .unwrap();
        bias.buffer = model.add_buffer(floats(out_channels, 2)).unwrap();
    }
    let ids: Vec<TensorId> = [input, weights, bias, output]
        .into_iter()
        .map(|t| sg.add_tensor(t).unwrap())
        .collect();
    sg.inputs = vec![ids[0]];
    sg.outputs = vec![ids[3]];
    sg.operators.push(Operator::new(
        spec.op.clone(),
        vec![Some(ids[0]), Some(ids[1]), Some(ids[2])],
        vec![ids[3]],
    ));
    model.subgraphs.push(sg);
    model
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
