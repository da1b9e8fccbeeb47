//! `octet quantize` end to end: every mode writes a model octet can run, the report is honest,
//! and bad input fails cleanly without touching files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::{models, octet, scratch};

#[test]
fn every_mode_writes_a_runnable_model_and_reports_it() {
    let dir = scratch("modes");
    let model = models().join("digits_cnn.tflite");
    let calib = models().join("reference/digits_calib_x.npy");
    for mode in ["int8", "uint8", "int16x8", "dynamic", "fp16", "weight-int8"] {
        let out = dir.join(format!("{mode}.tflite"));
        let result = octet(&[
            "quantize",
            model.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--mode",
            mode,
            "--calib",
            calib.to_str().unwrap(),
            "--samples",
            "20",
            "--json",
        ]);
        assert!(
            result.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&result.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
        assert_eq!(report["mode"], mode);
        assert_eq!(report["calibration_samples"], 20);
        // null: the outputs are identical (infinite SQNR has no JSON number).
        let sqnr = report["outputs"][0]["sqnr_db"]
            .as_f64()
            .unwrap_or(f64::INFINITY);
        assert!(sqnr > 20.0, "{mode}: output SQNR {sqnr} dB");
        // The written model runs.
        let run_dir = dir.join(format!("{mode}-run"));
        let x = models().join("digits_test_x.npy");
        let run = octet(&[
            "run",
            out.to_str().unwrap(),
            "--input",
            x.to_str().unwrap(),
            "--output-dir",
            run_dir.to_str().unwrap(),
        ]);
        assert!(
            run.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
}

#[test]
fn int8_weights_take_a_quarter_of_the_float_bytes() {
    let dir = scratch("size");
    let model = models().join("digits_mlp.tflite");
    let out = dir.join("int8.tflite");
    let result = octet(&[
        "quantize",
        model.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--calib",
        "random:0,1",
    ]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let float_model = octet_tflite::read_file(&model).unwrap();
    let int8_model = octet_tflite::read_file(&out).unwrap();
    let constants = |m: &octet_core::Model| m.buffers.iter().map(|b| b.data.len()).sum::<usize>();
    let (before, after) = (constants(&float_model), constants(&int8_model));
    assert!(
        after * 10 <= before * 3,
        "constants {before} -> {after} bytes: no orphaned float buffers may remain"
    );
}

#[test]
fn bad_requests_fail_cleanly() {
    let dir = scratch("bad");
    let model = models().join("digits_cnn.tflite");
    let copy = dir.join("model.tflite");
    std::fs::copy(&model, &copy).unwrap();
    let original = std::fs::read(&copy).unwrap();

    // -o naming the input is refused, and the input is untouched.
    let r = octet(&[
        "quantize",
        copy.to_str().unwrap(),
        "-o",
        copy.to_str().unwrap(),
        "--mode",
        "fp16",
    ]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("is the input model"));
    assert_eq!(std::fs::read(&copy).unwrap(), original);

    // A mode that needs ranges names the flags that would give them.
    let out = dir.join("out.tflite");
    let r = octet(&[
        "quantize",
        copy.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(
        stderr.contains("--calib") && stderr.contains("--default-ranges-min"),
        "{stderr}"
    );
    assert!(!out.exists(), "no output on failure");

    // Calibration data of the wrong shape names the input and the expected shape.
    let y = models().join("digits_test_y.npy");
    let r = octet(&[
        "quantize",
        copy.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--calib",
        y.to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(
        stderr.contains("input 0") && stderr.contains("[1, 8, 8, 1]"),
        "{stderr}"
    );
    assert!(!out.exists());

    // Unknown mode: usage error.
    let r = octet(&[
        "quantize",
        copy.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--mode",
        "int3",
    ]);
    assert_eq!(r.status.code(), Some(2));
}

#[test]
fn a_directory_of_images_calibrates_an_image_model() {
    let dir = scratch("images");
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    // 16x16 grey gradients: resized to the model's 8x8 input and mapped to [0, 1] by the
    // default image statistics (mean 0, std_dev 255).
    for i in 0..3u32 {
        let img = image::GrayImage::from_fn(16, 16, |x, y| {
            image::Luma([((x * 16 + y * 3 + i * 40) % 256) as u8])
        });
        img.save(images.join(format!("{i}.png"))).unwrap();
    }
    std::fs::write(images.join("notes.txt"), "not an image").unwrap();
    let out = dir.join("int8.tflite");
    let model = models().join("digits_cnn.tflite");
    let result = octet(&[
        "quantize",
        model.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--calib",
        images.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(report["calibration_samples"], 3);
    assert!(out.exists());
}

#[test]
fn compare_reports_outputs_layers_and_the_worst_losses() {
    let dir = scratch("compare");
    let model = models().join("digits_cnn.tflite");
    let quant = dir.join("int8.tflite");
    let calib = models().join("reference/digits_calib_x.npy");
    let q = octet(&[
        "quantize",
        model.to_str().unwrap(),
        "-o",
        quant.to_str().unwrap(),
        "--calib",
        calib.to_str().unwrap(),
    ]);
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    let x = models().join("digits_test_x.npy");
    let c = octet(&[
        "compare",
        model.to_str().unwrap(),
        quant.to_str().unwrap(),
        "--data",
        x.to_str().unwrap(),
        "--json",
    ]);
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    let report: serde_json::Value = serde_json::from_slice(&c.stdout).unwrap();
    assert_eq!(report["samples"], 450);
    let output = &report["outputs"][0];
    assert_eq!(output["op"], "SOFTMAX");
    let sqnr = output["sqnr_db"].as_f64().unwrap();
    assert!((20.0..60.0).contains(&sqnr), "output SQNR {sqnr}");
    let layers = report["tensors"].as_array().unwrap();
    assert!(layers.iter().any(|t| t["op"] == "CONV_2D"));
    assert!(layers.iter().any(|t| t["op"] == "DEPTHWISE_CONV_2D"));
    assert!(!report["worst_layers"].as_array().unwrap().is_empty());

    // The same model against itself loses nothing.
    let same = octet(&[
        "compare",
        model.to_str().unwrap(),
        model.to_str().unwrap(),
        "--data",
        x.to_str().unwrap(),
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&same.stdout).unwrap();
    assert!(
        report["outputs"][0]["sqnr_db"].is_null(),
        "identical: infinite SQNR"
    );
    assert!(report["worst_layers"].as_array().unwrap().is_empty());
}

#[test]
fn evaluation_data_with_labels_reports_top1_of_both_models() {
    let dir = scratch("eval");
    let model = models().join("digits_cnn.tflite");
    let out = dir.join("int8.tflite");
    let calib = models().join("reference/digits_calib_x.npy");
    let x = models().join("digits_test_x.npy");
    let y = models().join("digits_test_y.npy");
    // Quantizes with `data` as evaluation data and the test labels.
    let run = |data: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "quantize",
            model.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--calib",
            calib.to_str().unwrap(),
            "--eval-data",
            data.to_str().unwrap(),
            "--eval-labels",
            y.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        octet(&args)
    };
    let r = run(&x, &["--json"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let report: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(report["evaluation_samples"], 450);
    // models/README.md: the float CNN classifies 431 of the 450 test images correctly.
    assert!((report["top1_float"].as_f64().unwrap() - 431.0 / 450.0).abs() < 1e-9);
    assert!(report["top1_quantized"].as_f64().unwrap() >= 0.95);
    // Labels that do not fit the data are refused.
    let r = run(&calib, &[]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("450 labels for 100"));
}

#[test]
fn targets_calibration_methods_sensitivity_and_notes() {
    let dir = scratch("targets");
    let model = models().join("digits_cnn.tflite");
    let calib = models().join("reference/digits_calib_x.npy");
    let run = |extra: &[&str]| {
        let out = dir.join("out.tflite");
        let mut args = vec![
            "quantize",
            model.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--calib",
            calib.to_str().unwrap(),
            "--samples",
            "20",
        ];
        args.extend_from_slice(extra);
        octet(&args)
    };
    // The digits CNN's AVERAGE_POOL_2D and SOFTMAX stay float for LiteRT, and say why.
    let r = run(&["--json"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let report: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(report["target"], "litert");
    assert_eq!(report["calibration"]["used"], "percentile=99.99");
    let float: Vec<&str> = report["float_ops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["op"].as_str().unwrap())
        .collect();
    assert_eq!(float, ["AVERAGE_POOL_2D", "SOFTMAX"]);
    // Integer-only and octet targets keep nothing float; every calibration method runs.
    for extra in [
        ["--target", "integer-only", "--calibration", "minmax"],
        ["--target", "octet", "--calibration", "mse"],
        ["--target", "octet", "--calibration", "entropy"],
        ["--target", "octet", "--calibration", "auto"],
        ["--target", "octet", "--calibration", "percentile=99.9"],
    ] {
        let r = run(&[&extra[..], &["--json"]].concat());
        assert!(
            r.status.success(),
            "{extra:?}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
        assert!(
            report["float_ops"].as_array().unwrap().is_empty(),
            "{extra:?}"
        );
    }
    // Sensitivity lists layers; --no-eval measures nothing.
    let r = run(&["--sensitivity", "--no-eval"]);
    let text = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success());
    assert!(
        text.contains("sensitivity") && text.contains("CONV_2D (operator"),
        "{text}"
    );
    assert!(text.contains("not measured (--no-eval)"), "{text}");
    // Bad values are usage errors.
    for bad in [
        &["--calibration", "median"][..],
        &["--calibration", "percentile=40"],
        &["--target", "gpu"],
    ] {
        let r = run(bad);
        assert_eq!(r.status.code(), Some(2), "{bad:?}");
    }
    let r = run(&["--keep-float", "("]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("--keep-float"));
    // A flag the mode ignores is said.
    let r = run(&["--mode", "fp16", "--keep-float", "CONV", "--no-eval"]);
    assert!(r.status.success());
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("--mode fp16 ignores --keep-float"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
}
