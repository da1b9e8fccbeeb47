//! The accuracy table, as an insta snapshot (`tests/snapshots/accuracy__accuracy.snap`): for
//! every fixture × mode, the size ratio, each output's SQNR against the float model, and for the
//! digits models top-1 accuracy on the 450 test images, for octet and, where TensorFlow has the
//! mode (`models/reference/<model>_tf_<mode>.tflite`), for TensorFlow's converter side by side.
//!
//! Figures are rounded (SQNR to 0.1 dB, top-1 to 0.1 %, size to 0.01x) so that only real changes
//! show; a change that worsens accuracy shows as a snapshot diff. `cargo xtask accuracy` prints
//! the table; `INSTA_UPDATE=always cargo test -p octet-quant --test accuracy` accepts a change.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use octet_core::{DType, Model};
use octet_quant::metrics::ErrorAccumulator;
use octet_quant::{Calibration, Mode, QuantizeOptions, quantize};
use octet_runtime::Interpreter;

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

fn npy_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    let file = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = file.shape().iter().map(|&d| d as usize).collect();
    (shape, file.into_vec::<f32>().unwrap())
}

fn labels() -> Vec<usize> {
    let bytes = std::fs::read(models().join("digits_test_y.npy")).unwrap();
    let file = npyz::NpyFile::new(&bytes[..]).unwrap();
    file.into_vec::<i32>()
        .unwrap()
        .into_iter()
        .map(|l| l as usize)
        .collect()
}

/// Samples as per-input float vectors: `[N, ...]` arrays split along the first dimension.
fn samples(shape: &[usize], values: &[f32]) -> Vec<Vec<Vec<f32>>> {
    let per = shape[1..].iter().product::<usize>();
    values.chunks_exact(per).map(|s| vec![s.to_vec()]).collect()
}

/// Seeded uniform samples in [-1, 1] for every input of `model`.
fn random_samples(model: &Model, count: usize) -> Vec<Vec<Vec<f32>>> {
    let interpreter = Interpreter::new(model).unwrap();
    let mut state = 0x5eed_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 2001) as f32 / 1000.0 - 1.0
    };
    (0..count)
        .map(|_| {
            (0..interpreter.num_inputs())
                .map(|i| {
                    let n = interpreter.input_info(i).unwrap().num_elements();
                    (0..n).map(|_| next()).collect()
                })
                .collect()
        })
        .collect()
}

/// Runs `model` on `data`; returns every output of every sample as real values.
fn run(model: &Model, data: &[Vec<Vec<f32>>]) -> Vec<Vec<Vec<f32>>> {
    let mut interpreter = Interpreter::new(model).unwrap();
    data.iter()
        .map(|sample| {
            for (i, values) in sample.iter().enumerate() {
                let info = interpreter.input_info(i).unwrap().clone();
                let bytes: Vec<u8> = match info.dtype {
                    DType::Float32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                    dtype => {
                        let (s, z) = info.scale_zero_point().unwrap();
                        let (lo, hi) = match dtype {
                            DType::Int8 => (-128.0, 127.0),
                            DType::UInt8 => (0.0, 255.0),
                            _ => (-32768.0, 32767.0),
                        };
                        let q = values
                            .iter()
                            .map(|&x| ((x / s).round() + z as f32).clamp(lo, hi));
                        match dtype {
                            DType::Int8 => q.map(|v| v as i8 as u8).collect(),
                            DType::UInt8 => q.map(|v| v as u8).collect(),
                            _ => q.flat_map(|v| (v as i16).to_le_bytes()).collect(),
                        }
                    }
                };
                interpreter.set_input(i, &bytes).unwrap();
            }
            interpreter.invoke().unwrap();
            (0..interpreter.num_outputs())
                .map(|k| {
                    let info = interpreter.output_info(k).unwrap().clone();
                    let bytes = interpreter.output(k).unwrap();
                    let (s, z) = info.scale_zero_point().unwrap_or((1.0, 0));
                    match info.dtype {
                        DType::Float32 => bytes
                            .chunks_exact(4)
                            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                            .collect(),
                        DType::Int8 => bytes
                            .iter()
                            .map(|&b| s * (i32::from(b as i8) - z) as f32)
                            .collect(),
                        DType::UInt8 => bytes
                            .iter()
                            .map(|&b| s * (i32::from(b) - z) as f32)
                            .collect(),
                        other => panic!("{other} output"),
                    }
                })
                .collect()
        })
        .collect()
}

/// `size 3.42x | out0 34.3 dB | top-1 95.8%` for one model against the float results.
fn figures(
    float_bytes: usize,
    model: &Model,
    data: &[Vec<Vec<f32>>],
    float_outputs: &[Vec<Vec<f32>>],
    labels: Option<&[usize]>,
) -> String {
    let bytes = octet_tflite::write_model(model).unwrap().len();
    let outputs = run(model, data);
    let mut text = format!("size {:.2}x", float_bytes as f64 / bytes as f64);
    let count = float_outputs.first().map_or(0, Vec::len);
    for k in 0..count {
        let mut accumulator = ErrorAccumulator::default();
        for (r, q) in float_outputs.iter().zip(&outputs) {
            accumulator.add(&r[k], &q[k]);
        }
        let sqnr = accumulator.stats().sqnr_db;
        if sqnr.is_finite() {
            let _ = write!(text, " | out{k} {sqnr:.1} dB");
        } else {
            let _ = write!(text, " | out{k} exact");
        }
    }
    if let Some(labels) = labels {
        let correct = outputs
            .iter()
            .zip(labels)
            .filter(|(o, l)| {
                let best = o[0]
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .unwrap()
                    .0;
                best == **l
            })
            .count();
        let _ = write!(
            text,
            " | top-1 {:.1}%",
            100.0 * correct as f64 / labels.len() as f64
        );
    }
    text
}

const MODES: [Mode; 6] = [
    Mode::Int8,
    Mode::UInt8,
    Mode::Int16x8,
    Mode::Dynamic,
    Mode::Fp16,
    Mode::WeightInt8,
];

#[test]
fn accuracy() {
    let (calib_shape, calib_values) = npy_f32(&models().join("reference/digits_calib_x.npy"));
    let digits_calibration = Calibration {
        samples: samples(&calib_shape, &calib_values),
    };
    let (test_shape, test_values) = npy_f32(&models().join("digits_test_x.npy"));
    let digits_test = samples(&test_shape, &test_values);
    let digits_labels = labels();

    let mut table = String::from(
        "model / mode: octet | TensorFlow (where it has the mode); size = float bytes / quantized bytes\n",
    );
    for name in [
        "digits_cnn",
        "digits_mlp",
        "multi_io",
        "no_signature",
        "sparse_fc",
    ] {
        let path = models().join(format!("{name}.tflite"));
        let float_bytes = std::fs::read(&path).unwrap().len();
        let float = octet_tflite::read_model(&std::fs::read(&path).unwrap()).unwrap();
        let digits = name.starts_with("digits") || name == "sparse_fc";
        let (calibration, data, labels) = if digits {
            (
                digits_calibration.clone(),
                digits_test.clone(),
                Some(digits_labels.as_slice()),
            )
        } else {
            let calibration = Calibration {
                samples: random_samples(&float, 32),
            };
            let data = random_samples(&float, 64);
            (calibration, data, None)
        };
        let float_outputs = run(&float, &data);
        let _ = writeln!(
            table,
            "{name} / float: {}",
            figures(float_bytes, &float, &data, &float_outputs, labels)
        );
        for mode in MODES {
            let (quantized, _) =
                quantize(&float, &QuantizeOptions::new(mode), Some(&calibration)).unwrap();
            let octet = figures(float_bytes, &quantized, &data, &float_outputs, labels);
            let tf_path = models().join(format!("reference/{name}_tf_{}.tflite", mode.name()));
            let tf = if tf_path.exists() {
                let tf_model = octet_tflite::read_file(&tf_path).unwrap();
                figures(float_bytes, &tf_model, &data, &float_outputs, labels)
            } else {
                "-".to_owned()
            };
            let _ = writeln!(table, "{name} / {}: {octet} || TF: {tf}", mode.name());
        }
    }
    insta::assert_snapshot!(table);
}
