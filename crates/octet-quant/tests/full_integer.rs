//! Full-integer quantization (int8, uint8, int16x8) of the fixture models: the results validate,
//! survive a write/read round trip, run in octet-runtime, and keep the TFLite int8 rules.
//!
//! `OCTET_FI_OUT=DIR cargo test -p octet-quant --test full_integer -- --ignored export` also
//! writes every quantized model with seeded inputs and octet-runtime's outputs, for a LiteRT
//! cross-check script.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use octet_core::{DType, Model, Op, TensorData, TensorId};
use octet_quant::{Calibration, Mode, QuantizeOptions, QuantizeReport, Target, quantize};
use octet_runtime::Interpreter;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load(path: &Path) -> Model {
    octet_tflite::read_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A minimal .npy reader: little-endian f4/i4/i8, C order. Returns (shape, values as f32).
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    let descr = header
        .split("'descr': '")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let data = &bytes[10 + header_len..];
    let values = match descr {
        "<f4" => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        "<i4" => data
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f32)
            .collect(),
        "<i8" => data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32)
            .collect(),
        other => panic!("{}: unsupported dtype {other}", path.display()),
    };
    (shape, values)
}

/// Deterministic pseudo-random floats in [lo, hi).
fn random(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            lo + (hi - lo) * ((state >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect()
}

fn digits() -> (Vec<Vec<f32>>, Vec<i32>) {
    let (_, x) = read_npy(&root().join("models/digits_test_x.npy"));
    let (_, y) = read_npy(&root().join("models/digits_test_y.npy"));
    let images = x.chunks_exact(64).map(<[f32]>::to_vec).collect();
    (images, y.into_iter().map(|v| v as i32).collect())
}

fn digits_calibration(n: usize) -> Calibration {
    Calibration {
        samples: digits().0.into_iter().take(n).map(|x| vec![x]).collect(),
    }
}

/// Calibration samples for any model: the op fixtures' own inputs when they exist, random
/// values otherwise.
fn calibration_for(path: &Path, model: &Model, samples: usize) -> Calibration {
    let sg = model.main_subgraph().unwrap();
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    if name.starts_with("digits") {
        return digits_calibration(samples);
    }
    let stem = name.trim_end_matches(".tflite");
    let fixture: Vec<PathBuf> = (0..sg.inputs.len())
        .map(|i| path.with_file_name(format!("{stem}.in{i}.npy")))
        .collect();
    if fixture.iter().all(|p| p.exists()) {
        // A fixture array holds one sample or several stacked along a leading axis.
        let arrays: Vec<Vec<f32>> = fixture.iter().map(|p| read_npy(p).1).collect();
        let sizes: Vec<usize> = sg
            .inputs
            .iter()
            .map(|&id| sg.tensors[id.index()].shape.num_elements().unwrap().max(1))
            .collect();
        let count = arrays[0].len() / sizes[0];
        let samples = (0..count.max(1))
            .map(|s| {
                arrays
                    .iter()
                    .zip(&sizes)
                    .map(|(a, &n)| a.chunks_exact(n).nth(s).unwrap_or(&a[..n]).to_vec())
                    .collect()
            })
            .collect();
        return Calibration { samples };
    }
    let samples = (0..samples)
        .map(|s| {
            sg.inputs
                .iter()
                .enumerate()
                .map(|(i, &id)| {
                    let n = sg.tensors[id.index()].shape.num_elements().unwrap();
                    random(n, (s * 31 + i) as u64, 0.0, 1.0)
                })
                .collect()
        })
        .collect();
    Calibration { samples }
}

/// Checks what can be checked without LiteRT, returns the re-read model.
fn check(model: &Model, report: &QuantizeReport, mode: Mode) -> Model {
    model.validate().unwrap();
    let bytes = octet_tflite::write_model(model).unwrap();
    let reread = octet_tflite::read_model(&bytes).unwrap();
    let sg = reread.main_subgraph().unwrap();
    for op in &sg.operators {
        let (weights, bias) = match op.op {
            Op::Conv2D(_) | Op::DepthwiseConv2D(_) | Op::FullyConnected(_) => (1, 2),
            Op::TransposeConv(_) => (1, 3),
            _ => continue,
        };
        let input = if matches!(op.op, Op::TransposeConv(_)) {
            2
        } else {
            0
        };
        let t = |i: usize| {
            op.inputs
                .get(i)
                .copied()
                .flatten()
                .map(|id| &sg.tensors[id.index()])
        };
        let (Some(x), Some(w)) = (t(input), t(weights)) else {
            continue;
        };
        if x.dtype == DType::Float32 {
            continue;
        }
        let wq = w.quant.as_ref().unwrap();
        if mode != Mode::UInt8 {
            assert_eq!(w.dtype, DType::Int8, "{}", w.name);
            assert!(wq.zero_point.iter().all(|&z| z == 0));
            match reread.tensor_data(w).unwrap().unwrap() {
                TensorData::I8(v) => assert!(v.iter().all(|&q| q >= -127), "{}", w.name),
                other => panic!("{other:?}"),
            }
        }
        if let Some(b) = t(bias) {
            let (in_scale, _) = x.single_quant().unwrap();
            let bq = b.quant.as_ref().unwrap();
            for (c, &s) in bq.scale.iter().enumerate() {
                let ws = wq.scale.get(c).or(wq.scale.first()).unwrap();
                assert!(
                    (s - in_scale * ws).abs() <= 1e-6 * s.abs(),
                    "bias {}",
                    b.name
                );
            }
        }
    }
    assert!(report.constant_bytes_after <= report.constant_bytes_before);
    let mut interpreter = Interpreter::new(&reread).unwrap();
    for i in 0..interpreter.num_inputs() {
        let info = interpreter.input_info(i).unwrap().clone();
        let zeros = vec![0u8; info.byte_len()];
        interpreter.set_input(i, &zeros).unwrap();
    }
    interpreter.invoke().unwrap();
    reread
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b })
        .0
}

/// Top-1 accuracy on the digits test set, inputs and outputs float32 or quantized.
fn accuracy(model: &Model) -> f32 {
    let (images, labels) = digits();
    let mut interpreter = Interpreter::new(model).unwrap();
    let input = interpreter.input_info(0).unwrap().clone();
    let output = interpreter.output_info(0).unwrap().clone();
    let mut correct = 0;
    for (x, &y) in images.iter().zip(&labels) {
        let bytes: Vec<u8> = match input.dtype {
            DType::Float32 => x.iter().flat_map(|v| v.to_le_bytes()).collect(),
            dtype => {
                let (s, z) = input.quant.as_ref().unwrap().single().unwrap();
                x.iter()
                    .map(|v| {
                        let q = (v / s).round() as i64 + z;
                        if dtype == DType::Int8 {
                            q.clamp(-128, 127) as i8 as u8
                        } else {
                            q.clamp(0, 255) as u8
                        }
                    })
                    .collect()
            }
        };
        interpreter.set_input(0, &bytes).unwrap();
        interpreter.invoke().unwrap();
        let out = interpreter.output(0).unwrap();
        let scores: Vec<f32> = match output.dtype {
            DType::Float32 => out
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            DType::Int8 => out.iter().map(|&b| f32::from(b as i8)).collect(),
            _ => out.iter().map(|&b| f32::from(b)).collect(),
        };
        if argmax(&scores) == y as usize {
            correct += 1;
        }
    }
    correct as f32 / labels.len() as f32
}

fn file_size(model: &Model) -> usize {
    octet_tflite::write_model(model).unwrap().len()
}

#[test]
fn digits_int8_keeps_accuracy_and_shrinks() {
    for name in ["digits_cnn", "digits_mlp", "digits_cnn_fp16"] {
        let float = load(&root().join(format!("models/{name}.tflite")));
        // Integer-only: every op integer, as TensorFlow's converter makes these models.
        let mut options = QuantizeOptions::new(Mode::Int8);
        options.target = Target::IntegerOnly;
        let (q, report) = quantize(&float, &options, Some(&digits_calibration(100))).unwrap();
        let q = check(&q, &report, Mode::Int8);
        assert!(
            report.float_ops.is_empty(),
            "{name}: {:?}",
            report.float_ops
        );
        let (fa, qa) = (accuracy(&float), accuracy(&q));
        let (fs, qs) = (file_size(&float), file_size(&q));
        eprintln!("{name}: float top-1 {fa:.4} ({fs} B), int8 top-1 {qa:.4} ({qs} B)");
        assert!(qa >= fa - 0.03, "{name}: {qa} vs {fa}");
        if name != "digits_cnn_fp16" {
            assert!(
                report.constant_bytes_after * 3 < report.constant_bytes_before,
                "{name}: {report:?}"
            );
        }
    }
}

#[test]
fn integer_io_and_signatures() {
    let float = load(&root().join("models/multi_io.tflite"));
    let path = root().join("models/multi_io.tflite");
    let calibration = calibration_for(&path, &float, 4);
    for io in [DType::Int8, DType::UInt8] {
        let mut options = QuantizeOptions::new(Mode::Int8);
        options.input_type = io;
        options.output_type = io;
        let (q, report) = quantize(&float, &options, Some(&calibration)).unwrap();
        let q = check(&q, &report, Mode::Int8);
        let sg = q.main_subgraph().unwrap();
        let fsg = float.main_subgraph().unwrap();
        for (&a, &b) in sg.inputs.iter().zip(&fsg.inputs) {
            assert_eq!(sg.tensors[a.index()].dtype, io);
            assert_eq!(sg.tensors[a.index()].name, fsg.tensors[b.index()].name);
        }
        for &o in &sg.outputs {
            assert_eq!(sg.tensors[o.index()].dtype, io);
        }
        for (sig, fsig) in q.signature_defs.iter().zip(&float.signature_defs) {
            for (t, ft) in sig.inputs.iter().zip(&fsig.inputs) {
                assert_eq!(t.name, ft.name);
                let name =
                    |m: &Model, id: TensorId| m.subgraphs[0].tensors[id.index()].name.clone();
                assert_eq!(name(&q, t.tensor), name(&float, ft.tensor));
            }
            for t in &sig.outputs {
                assert!(sg.outputs.contains(&t.tensor));
            }
        }
    }
}

#[test]
fn uint8_legacy_needs_no_calibration() {
    let float = load(&root().join("models/digits_cnn.tflite"));
    let mut options = QuantizeOptions::new(Mode::UInt8);
    options.input_type = DType::UInt8;
    options.input_stats = vec![(0.0, 255.0)];
    options.default_range = Some((0.0, 6.0));
    let (q, report) = quantize(&float, &options, None).unwrap();
    let q = check(&q, &report, Mode::UInt8);
    let sg = q.main_subgraph().unwrap();
    let input = &sg.tensors[sg.inputs[0].index()];
    assert_eq!(input.dtype, DType::UInt8);
    assert_eq!(input.single_quant(), Some((1.0 / 255.0, 0)));
    // What TF1's converter does with --default_ranges_min=0 --default_ranges_max=6: weights
    // uint8 in the narrow range [1, 255], every activation without a range at 6/255 and 0,
    // SOFTMAX at 1/256 and 0.
    for op in &sg.operators {
        let out = &sg.tensors[op.outputs[0].index()];
        match op.op {
            Op::Conv2D(_) | Op::FullyConnected(_) | Op::DepthwiseConv2D(_) => {
                let w = &sg.tensors[op.inputs[1].unwrap().index()];
                assert_eq!(w.dtype, DType::UInt8);
                match q.tensor_data(w).unwrap().unwrap() {
                    TensorData::U8(v) => assert!(v.iter().all(|&x| x >= 1)),
                    other => panic!("{other:?}"),
                }
                assert_eq!(out.single_quant(), Some((6.0 / 255.0, 0)), "{}", out.name);
            }
            Op::Softmax { .. } => assert_eq!(out.single_quant(), Some((1.0 / 256.0, 0))),
            _ => {}
        }
    }
}

#[test]
fn sparse_and_small_fixtures_quantize_in_every_mode() {
    for name in ["sparse_fc", "multi_io", "no_signature", "digits_cnn"] {
        let path = root().join(format!("models/{name}.tflite"));
        let float = load(&path);
        let calibration = calibration_for(&path, &float, 3);
        for mode in [Mode::Int8, Mode::UInt8, Mode::Int16x8] {
            let options = QuantizeOptions::new(mode);
            let (q, report) = quantize(&float, &options, Some(&calibration))
                .unwrap_or_else(|e| panic!("{name} {}: {e}", mode.name()));
            check(&q, &report, mode);
        }
    }
}

#[test]
fn every_float_op_fixture_quantizes_to_int8() {
    let dir = root().join("models/ops");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("-float.tflite"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty());
    for path in paths {
        let float = load(&path);
        let calibration = calibration_for(&path, &float, 2);
        // For octet's runtime: every op with an int8 rule is quantized.
        let mut options = QuantizeOptions::new(Mode::Int8);
        options.target = Target::Octet;
        let (q, report) = quantize(&float, &options, Some(&calibration))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        check(&q, &report, Mode::Int8);
    }
}
