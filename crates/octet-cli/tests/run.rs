//! `octet run` and `octet bench` end to end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::path::Path;

use common::{models as models_dir, octet, scratch};

/// Reads a float32 or int32 .npy written by octet or numpy: (shape, values as f64).
fn read_npy(path: &Path) -> (Vec<u64>, Vec<f64>) {
    let bytes = std::fs::read(path).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    let values = match npy.dtype() {
        npyz::DType::Plain(t) if t.to_string() == "<f4" => npy
            .into_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
        npyz::DType::Plain(t) if t.to_string() == "<i4" => npy
            .into_vec::<i32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
        other => panic!("unexpected dtype {other:?}"),
    };
    (shape, values)
}

#[test]
fn run_classifies_the_digits_test_split_like_litert() {
    let out = scratch("digits");
    let model = models_dir().join("digits_cnn.tflite");
    let x = models_dir().join("digits_test_x.npy");
    let result = octet(&[
        "run",
        model.to_str().unwrap(),
        "--input",
        x.to_str().unwrap(),
        "--output-dir",
        out.to_str().unwrap(),
    ]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let (shape, probabilities) = read_npy(&out.join("output_0.npy"));
    assert_eq!(shape, vec![450, 1, 10]);
    let (_, labels) = read_npy(&models_dir().join("digits_test_y.npy"));
    let correct = probabilities
        .chunks_exact(10)
        .zip(&labels)
        .filter(|(p, label)| {
            let best = p
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0;
            best as f64 == **label
        })
        .count();
    // models/README.md: LiteRT classifies 0.9578 of the 450 test images correctly (431).
    assert_eq!(correct, 431, "octet got {correct}/450 right");
}

#[test]
fn run_rejects_inputs_that_do_not_fit() {
    let out = scratch("bad");
    let model = models_dir().join("digits_cnn.tflite");
    // digits_test_y is int32 [450]: wrong shape and dtype for the image input.
    let y = models_dir().join("digits_test_y.npy");
    let result = octet(&[
        "run",
        model.to_str().unwrap(),
        "--input",
        y.to_str().unwrap(),
        "--output-dir",
        out.to_str().unwrap(),
    ]);
    assert_eq!(result.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("input 0") && stderr.contains("[1, 8, 8, 1]"),
        "{stderr}"
    );
    assert!(!out.join("output_0.npy").exists(), "no partial output");

    let result = octet(&[
        "run",
        model.to_str().unwrap(),
        "--output-dir",
        out.to_str().unwrap(),
    ]);
    assert_eq!(result.status.code(), Some(2), "--input is required");
}

#[test]
fn bench_json_is_one_line_with_median_and_runs() {
    let model = models_dir().join("digits_mlp.tflite");
    let result = octet(&[
        "bench",
        model.to_str().unwrap(),
        "--json",
        "--seconds",
        "0.05",
    ]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let stdout = String::from_utf8(result.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(json["median_ms"].as_f64().unwrap() > 0.0);
    assert!(json["runs"].as_u64().unwrap() >= 10);
}
