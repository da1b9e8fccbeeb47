//! octet's quantizer next to TensorFlow's on the same networks (references made by
//! `cargo xtask fixtures` in `models/reference/`):
//!
//! - the legacy uint8 path with the background article's flags (`--mean-values 128
//!   --std-dev-values 127 --default-ranges-min 0 --default-ranges-max 6`) gives the outputs of
//!   TensorFlow's TF1 converter, within one uint8 step, on a MobileNet-v1-style network;
//! - full int8 on the digits models, calibrated on the same 100 samples as TensorFlow's
//!   conversion, matches or beats TensorFlow's top-1 accuracy and output SQNR.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::{Path, PathBuf};

use octet_core::{DType, Model};
use octet_quant::{Calibration, Mode, QuantizeOptions, metrics::error_stats, quantize};
use octet_runtime::Interpreter;

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

/// A `.npy` as (shape, f32 values) for float32 files or (shape, raw bytes as f32) for uint8.
fn npy(path: &Path) -> (Vec<usize>, Vec<f32>, DType) {
    let bytes = std::fs::read(path).unwrap();
    let file = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = file.shape().iter().map(|&d| d as usize).collect();
    let npyz::DType::Plain(t) = file.dtype() else {
        panic!("structured array")
    };
    match t.to_string().as_str() {
        "<f4" => (shape, file.into_vec::<f32>().unwrap(), DType::Float32),
        "|u1" => (
            shape,
            file.into_vec::<u8>()
                .unwrap()
                .into_iter()
                .map(f32::from)
                .collect(),
            DType::UInt8,
        ),
        "<i4" => (
            shape,
            file.into_vec::<i32>()
                .unwrap()
                .into_iter()
                .map(|v| v as f32)
                .collect(),
            DType::Int32,
        ),
        other => panic!("{other}"),
    }
}

fn load(path: &Path) -> Model {
    octet_tflite::read_file(path).unwrap()
}

/// Runs `model` on `samples` (each a float32 sample; quantized with the input's parameters
/// when the input is integer) and returns the first output of each sample, dequantized.
fn run(model: &Model, samples: &[&[f32]]) -> Vec<Vec<f32>> {
    let mut interpreter = Interpreter::new(model).unwrap();
    let input = interpreter.input_info(0).unwrap().clone();
    let output = interpreter.output_info(0).unwrap().clone();
    samples
        .iter()
        .map(|sample| {
            let bytes: Vec<u8> = match input.dtype {
                DType::Float32 => sample.iter().flat_map(|v| v.to_le_bytes()).collect(),
                DType::UInt8 => {
                    let (s, z) = input.scale_zero_point().unwrap();
                    sample
                        .iter()
                        .map(|&x| ((x / s).round() + z as f32).clamp(0.0, 255.0) as u8)
                        .collect()
                }
                DType::Int8 => {
                    let (s, z) = input.scale_zero_point().unwrap();
                    sample
                        .iter()
                        .map(|&x| ((x / s).round() + z as f32).clamp(-128.0, 127.0) as i8 as u8)
                        .collect()
                }
                other => panic!("{other}"),
            };
            interpreter.set_input(0, &bytes).unwrap();
            interpreter.invoke().unwrap();
            let out = interpreter.output(0).unwrap();
            match output.dtype {
                DType::Float32 => out
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
                DType::UInt8 => out.iter().map(|&b| f32::from(b)).collect(),
                DType::Int8 => out.iter().map(|&b| f32::from(b as i8)).collect(),
                other => panic!("{other}"),
            }
        })
        .collect()
}

#[test]
fn uint8_with_the_articles_flags_matches_tensorflows_tf1_converter() {
    let dir = models().join("reference");
    let float = load(&dir.join("mobilenet_v1_tiny.tflite"));
    let mut options = QuantizeOptions::new(Mode::UInt8);
    options.input_type = DType::UInt8;
    options.output_type = DType::UInt8;
    options.input_stats = vec![(128.0, 127.0)];
    options.default_range = Some((0.0, 6.0));
    let (octet_uint8, _) = quantize(&float, &options, None).unwrap();

    let (shape, images, _) = npy(&dir.join("mobilenet_v1_tiny_input.npy"));
    let per_image = shape[1..].iter().product::<usize>();
    let samples: Vec<&[f32]> = images.chunks_exact(per_image).collect();
    let ours = run(&octet_uint8, &samples);
    let (_, theirs, dtype) = npy(&dir.join("mobilenet_v1_tiny_tf_uint8_output.npy"));
    assert_eq!(dtype, DType::UInt8);
    let ours: Vec<f32> = ours.concat();
    assert_eq!(ours.len(), theirs.len());
    let worst = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("octet vs TF1 converter, uint8 outputs: largest difference {worst} step(s)");
    assert!(worst <= 1.0, "outputs differ by {worst} uint8 steps");
}

/// Top-1 accuracy and output SQNR (against the float model) on the digits test split.
fn digits_figures(model: &Model, float_outputs: &[Vec<f32>]) -> (f64, f64) {
    let dir = models();
    let (shape, x, _) = npy(&dir.join("digits_test_x.npy"));
    let (_, y, _) = npy(&dir.join("digits_test_y.npy"));
    let per = shape[1..].iter().product::<usize>();
    let samples: Vec<&[f32]> = x.chunks_exact(per).collect();
    let outputs = run(model, &samples);
    let correct = outputs
        .iter()
        .zip(&y)
        .filter(|(o, label)| {
            let best = o
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0;
            best as f32 == **label
        })
        .count();
    let sqnr = error_stats(&float_outputs.concat(), &outputs.concat()).sqnr_db;
    (correct as f64 / outputs.len() as f64, sqnr)
}

#[test]
fn int8_on_digits_matches_or_beats_tensorflow() {
    let dir = models();
    let (shape, calib, _) = npy(&dir.join("reference/digits_calib_x.npy"));
    let per = shape[1..].iter().product::<usize>();
    let calibration = Calibration {
        samples: calib.chunks_exact(per).map(|s| vec![s.to_vec()]).collect(),
    };
    for name in ["digits_cnn", "digits_mlp"] {
        let float = load(&dir.join(format!("{name}.tflite")));
        let (test_shape, x, _) = npy(&dir.join("digits_test_x.npy"));
        let per_test = test_shape[1..].iter().product::<usize>();
        let float_outputs = run(&float, &x.chunks_exact(per_test).collect::<Vec<_>>());
        let (octet_int8, _) = quantize(
            &float,
            &QuantizeOptions::new(Mode::Int8),
            Some(&calibration),
        )
        .unwrap();
        let tf_int8 = load(&dir.join(format!("reference/{name}_tf_int8.tflite")));
        let (octet_top1, octet_sqnr) = digits_figures(&octet_int8, &float_outputs);
        let (tf_top1, tf_sqnr) = digits_figures(&tf_int8, &float_outputs);
        let (float_top1, _) = digits_figures(&float, &float_outputs);
        eprintln!(
            "{name}: float top-1 {float_top1:.4}; octet int8 top-1 {octet_top1:.4}, SQNR {octet_sqnr:.2} dB; \
             TensorFlow int8 top-1 {tf_top1:.4}, SQNR {tf_sqnr:.2} dB"
        );
        assert!(
            octet_top1 >= tf_top1,
            "{name}: top-1 {octet_top1} < TensorFlow's {tf_top1}"
        );
        // "Matches" allows for the last digits of a float sum taken in another order.
        assert!(
            octet_sqnr >= tf_sqnr - 0.01,
            "{name}: SQNR {octet_sqnr} dB < TensorFlow's {tf_sqnr} dB"
        );
    }
}
