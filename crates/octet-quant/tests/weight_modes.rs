//! The weight-only modes (fp16, weight-int8, dynamic) on the committed fixtures: the output is
//! valid, survives a write and re-read, runs in octet-runtime, has the properties each mode
//! promises, and (dynamic) has the layout TensorFlow's converter gives the same float model.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::{Path, PathBuf};

use octet_core::{DType, Model, Op, TensorId};
use octet_quant::weight_modes::{MIN_ELEMENTS, quantize_weights, quantize_weights_with};
use octet_quant::{Mode, QuantizeOptions, quantize};
use octet_runtime::Interpreter;

const MODES: [Mode; 3] = [Mode::Fp16, Mode::WeightInt8, Mode::Dynamic];

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

fn load(name: &str) -> Model {
    octet_tflite::read_file(&models_dir().join(name)).unwrap()
}

/// Writes, re-reads and runs `model` on zero inputs, returning the re-read model.
fn roundtrip_and_run(model: &Model) -> Model {
    model.validate().unwrap();
    let bytes = octet_tflite::write_model(model).unwrap();
    let back = octet_tflite::read_model(&bytes).unwrap();
    let mut interpreter = Interpreter::new(&back).unwrap();
    for i in 0..interpreter.num_inputs() {
        let n = interpreter.input_info(i).unwrap().byte_len();
        interpreter.set_input(i, &vec![0u8; n]).unwrap();
    }
    interpreter.invoke().unwrap();
    back
}

/// Float32 bytes of dense constants.
fn float_constant_bytes(model: &Model) -> usize {
    let sg = &model.subgraphs[0];
    sg.tensors
        .iter()
        .filter(|t| t.dtype == DType::Float32)
        .filter_map(|t| model.tensor_bytes(t))
        .map(<[u8]>::len)
        .sum()
}

const FIXTURES: [&str; 6] = [
    "digits_cnn.tflite",
    "digits_mlp.tflite",
    "digits_cnn_fp16.tflite",
    "multi_io.tflite",
    "no_signature.tflite",
    "sparse_fc.tflite",
];

#[test]
fn every_mode_gives_valid_runnable_models_for_the_fixtures() {
    for name in FIXTURES {
        let model = load(name);
        for mode in MODES {
            let (out, report) = quantize(&model, &QuantizeOptions::new(mode), None)
                .unwrap_or_else(|e| panic!("{name} {}: {e}", mode.name()));
            roundtrip_and_run(&out);
            assert_eq!(
                report.constant_bytes_after,
                octet_quant::passes::constant_bytes(&out)
            );
            // (Sparse or fp16 sources may grow: their weights are densified or, in dynamic mode,
            // small ones stay float32 as TensorFlow keeps them.)
            assert!(
                report.constant_bytes_after <= report.constant_bytes_before
                    || name.contains("fp16")
                    || name.contains("sparse"),
                "{name} {}: {report:?}",
                mode.name()
            );
            let sg = &out.subgraphs[0];
            assert!(
                !sg.operators.iter().any(|o| matches!(o.op, Op::Densify)),
                "{name}: sparse constants are densified"
            );
        }
    }
}

#[test]
fn fp16_halves_the_float_weights_and_leaves_no_float32_constant() {
    for name in ["digits_cnn.tflite", "digits_mlp.tflite", "multi_io.tflite"] {
        let model = load(name);
        let float_bytes = float_constant_bytes(&model);
        let (out, report) = quantize_weights(&model, Mode::Fp16).unwrap();
        let sg = &out.subgraphs[0];
        assert_eq!(float_constant_bytes(&out), 0, "{name}");
        for op in sg
            .operators
            .iter()
            .filter(|o| matches!(o.op, Op::Dequantize))
        {
            assert_eq!(op.version, 3);
            let input = sg.tensor(op.inputs[0].unwrap()).unwrap();
            assert_eq!(input.dtype, DType::Float16);
        }
        let f16_bytes: usize = sg
            .tensors
            .iter()
            .filter(|t| t.dtype == DType::Float16)
            .filter_map(|t| out.tensor_bytes(t))
            .map(<[u8]>::len)
            .sum();
        assert_eq!(f16_bytes * 2, float_bytes, "{name}");
        assert!(report.tensors_quantized > 0);
    }
}

#[test]
fn an_fp16_model_round_trips_to_the_same_fp16_weights() {
    // digits_cnn_fp16 is TensorFlow's fp16 conversion of digits_cnn: folding its DEQUANTIZE ops
    // and converting again must reproduce its float16 weights bit for bit.
    let tf = load("digits_cnn_fp16.tflite");
    let (out, _) = quantize_weights(&tf, Mode::Fp16).unwrap();
    let halves = |m: &Model| {
        let sg = &m.subgraphs[0];
        let mut v: Vec<(String, Vec<u8>)> = sg
            .tensors
            .iter()
            .filter(|t| t.dtype == DType::Float16)
            .map(|t| (t.shape.to_string(), m.tensor_bytes(t).unwrap().to_vec()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(halves(&out), halves(&tf));
    let dequantize = |m: &Model| {
        m.subgraphs[0]
            .operators
            .iter()
            .filter(|o| matches!(o.op, Op::Dequantize))
            .count()
    };
    assert_eq!(dequantize(&out), dequantize(&tf));
}

#[test]
fn weight_int8_stores_symmetric_int8_weights_per_channel() {
    for name in ["digits_cnn.tflite", "digits_mlp.tflite"] {
        let model = load(name);
        let float_bytes = float_constant_bytes(&model);
        let (out, report) = quantize_weights(&model, Mode::WeightInt8).unwrap();
        let sg = &out.subgraphs[0];
        let mut int8_bytes = 0;
        for op in &sg.operators {
            let weight_axis = match op.op {
                Op::Conv2D(_) | Op::FullyConnected(_) => 0,
                Op::DepthwiseConv2D(_) => 3,
                _ => continue,
            };
            let w = op.inputs[1].unwrap();
            let producer = &sg.operators[sg.producer(w).unwrap()];
            assert!(matches!(producer.op, Op::Dequantize));
            assert_eq!(producer.version, 5);
            let q = sg.tensor(producer.inputs[0].unwrap()).unwrap();
            assert_eq!(q.dtype, DType::Int8);
            let params = q.quant.as_ref().unwrap();
            assert_eq!(params.quantized_dimension, weight_axis);
            assert_eq!(
                params.scale.len(),
                q.shape.dims()[weight_axis as usize] as usize
            );
            assert!(params.zero_point.iter().all(|&z| z == 0));
            let data = out.tensor_bytes(q).unwrap();
            assert!(data.iter().all(|&b| b as i8 >= -127), "{name}");
            int8_bytes += data.len();
            // The bias stays float32.
            let bias = sg.tensor(op.inputs[2].unwrap()).unwrap();
            assert_eq!(bias.dtype, DType::Float32);
        }
        assert!(int8_bytes > 0);
        // Weights shrink to a quarter; biases stay.
        assert!(
            report.constant_bytes_after < float_bytes / 2,
            "{name}: {report:?}"
        );
    }
}

#[test]
fn weight_int8_dequantizes_close_to_the_float_weights() {
    let model = load("digits_mlp.tflite");
    let (out, _) = quantize_weights(&model, Mode::WeightInt8).unwrap();
    let sg = &out.subgraphs[0];
    let original = &model.subgraphs[0];
    for op in sg
        .operators
        .iter()
        .filter(|o| matches!(o.op, Op::Dequantize))
    {
        let q = sg.tensor(op.inputs[0].unwrap()).unwrap();
        let float_name = &sg.tensor(op.outputs[0]).unwrap().name;
        let f = original
            .tensors
            .iter()
            .find(|t| &t.name == float_name)
            .unwrap();
        let values = model.tensor_data(f).unwrap().unwrap().to_f32();
        let ints = out.tensor_data(q).unwrap().unwrap().to_f32();
        let params = q.quant.as_ref().unwrap();
        let channels = params.scale.len();
        let inner = values.len() / channels;
        for (i, (&v, &k)) in values.iter().zip(&ints).enumerate() {
            let scale = params.scale[(i / inner) % channels];
            assert!((v - k * scale).abs() <= scale / 2.0 + 1e-6);
        }
    }
}

/// The dynamic-range layout of `model`'s main subgraph: per tensor (name order), its dtype,
/// per-axis dimension and scale count; per op, name, version and the hybrid options.
fn dynamic_layout(model: &Model) -> Vec<String> {
    let sg = &model.subgraphs[0];
    let mut lines: Vec<String> = sg
        .operators
        .iter()
        .map(|o| {
            let asym = match &o.op {
                Op::FullyConnected(f) => f.asymmetric_quantize_inputs,
                Op::BatchMatMul(b) => b.asymmetric_quantize_inputs,
                _ => false,
            };
            let inputs: Vec<String> = o
                .inputs
                .iter()
                .map(|i| match i {
                    None => "-".into(),
                    Some(id) => {
                        let t = sg.tensor(*id).unwrap();
                        let q = t.quant.as_ref().filter(|q| !q.is_empty());
                        format!(
                            "{}{:?}{}",
                            t.dtype,
                            t.shape.dims(),
                            q.map(|q| format!(" q{}x{}", q.quantized_dimension, q.scale.len()))
                                .unwrap_or_default()
                        )
                    }
                })
                .collect();
            format!("{} v{} asym={asym} {inputs:?}", o.op.name(), o.version)
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn dynamic_matches_tensorflows_layout_on_the_hybrid_fixtures() {
    for op in [
        "fully_connected_hybrid",
        "conv_2d_3x3_hybrid",
        "depthwise_conv_2d_5x5_hybrid",
        "transpose_conv_3x3_hybrid",
        "batch_matmul_hybrid",
    ] {
        let float = load(&format!("ops/{op}-float.tflite"));
        let tf = load(&format!("ops/{op}-dynamic.tflite"));
        let (ours, report) = quantize_weights(&float, Mode::Dynamic).unwrap();
        roundtrip_and_run(&ours);
        assert_eq!(dynamic_layout(&ours), dynamic_layout(&tf), "{op}");
        assert_eq!(report.tensors_quantized, 1, "{op}");
        // Same scales as TensorFlow's and int8 values at most one step apart.
        let int8 = |m: &Model| {
            let sg = &m.subgraphs[0];
            let t = sg.tensors.iter().find(|t| t.dtype == DType::Int8).unwrap();
            (
                t.quant.clone().unwrap().scale,
                m.tensor_data(t).unwrap().unwrap().to_f32(),
            )
        };
        let (our_scales, our_q) = int8(&ours);
        let (tf_scales, tf_q) = int8(&tf);
        for (a, b) in our_scales.iter().zip(&tf_scales) {
            assert!((a - b).abs() <= 1e-6 * b.abs(), "{op}: scale {a} vs {b}");
        }
        assert!(
            our_q.iter().zip(&tf_q).all(|(a, b)| (a - b).abs() <= 1.0),
            "{op}"
        );
    }
}

#[test]
fn dynamic_keeps_small_weights_float_like_tensorflow() {
    // The digits models' weights all have fewer than 1024 elements.
    let model = load("digits_cnn.tflite");
    let (out, report) = quantize_weights(&model, Mode::Dynamic).unwrap();
    assert_eq!(report.tensors_quantized, 0);
    assert_eq!(out.subgraphs[0].operators, model.subgraphs[0].operators);
    // With no threshold every weight becomes int8 and every weight op hybrid.
    let (out, report) = quantize_weights_with(&model, Mode::Dynamic, 0).unwrap();
    assert!(report.tensors_quantized >= 3);
    let sg = &out.subgraphs[0];
    for op in &sg.operators {
        if let Op::Conv2D(_) | Op::DepthwiseConv2D(_) | Op::FullyConnected(_) = op.op {
            let w = sg.tensor(op.inputs[1].unwrap()).unwrap();
            assert_eq!(w.dtype, DType::Int8, "{}", op.op.name());
        }
    }
    roundtrip_and_run(&out);
    const { assert!(MIN_ELEMENTS == 1024) };
}

#[test]
fn orphaned_tensors_and_buffers_are_removed() {
    let model = load("digits_cnn_fp16.tflite");
    let (out, _) = quantize_weights(&model, Mode::WeightInt8).unwrap();
    let sg = &out.subgraphs[0];
    let mut used = vec![false; out.buffers.len()];
    used[0] = true;
    for t in &sg.tensors {
        used[t.buffer.index()] = true;
    }
    for m in &out.metadata {
        used[m.buffer.index()] = true;
    }
    assert!(used.iter().all(|&u| u), "every buffer is referenced");
    for (i, _) in sg.tensors.iter().enumerate() {
        let id = TensorId(i as u32);
        assert!(
            sg.inputs.contains(&id)
                || sg.outputs.contains(&id)
                || sg.producer(id).is_some()
                || !sg.consumers(id).is_empty(),
            "tensor {i} is referenced"
        );
    }
    assert!(
        !sg.tensors.iter().any(|t| t.dtype == DType::Float16),
        "the float16 weights were folded"
    );
}
