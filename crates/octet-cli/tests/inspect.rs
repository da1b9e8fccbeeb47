//! `octet inspect` end to end: useful output on real models, clean errors on bad ones.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::process::Output;

use common::{models as models_dir, octet, scratch};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts the exit code and that stderr is a one-line `error: ...`, not a panic.
fn assert_clean_failure(out: &Output, code: i32, mentions: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(stderr.starts_with("error: "), "stderr: {stderr}");
    assert!(
        stderr.contains(mentions),
        "stderr should mention {mentions:?}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout on failure");
}

#[test]
fn inspect_describes_the_digits_cnn() {
    let model = models_dir().join("digits_cnn.tflite");
    let out = octet(&["inspect", model.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for expected in [
        "TFLite schema v3",
        "inputs:",
        "float32[1, 8, 8, 1]",
        "outputs:",
        "float32[1, 10]",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "SOFTMAX",
        "tensors by dtype:",
        "serving_default",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}

#[test]
fn inspect_json_is_one_parseable_document() {
    let model = models_dir().join("digits_cnn.tflite");
    let out = octet(&["inspect", model.to_str().unwrap(), "--json"]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["schema_version"], 3);
    let input = &json["subgraphs"][0]["inputs"][0];
    assert_eq!(input["dtype"], "float32");
    assert_eq!(input["shape"], serde_json::json!([1, 8, 8, 1]));
    assert!(json["operators"]["CONV_2D"].as_u64().unwrap() >= 1);
    assert!(
        json["dtypes"]["float32"]["constant_bytes"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(json["signatures"][0]["key"], "serving_default");
}

#[test]
fn damaged_models_fail_with_exit_code_1() {
    let original = std::fs::read(models_dir().join("digits_cnn.tflite")).unwrap();
    let dir = scratch("damaged");

    let truncated = dir.join("truncated.tflite");
    std::fs::write(&truncated, &original[..original.len() / 3]).unwrap();
    assert_clean_failure(
        &octet(&["inspect", truncated.to_str().unwrap()]),
        1,
        "damaged",
    );

    let garbage = dir.join("garbage.tflite");
    std::fs::write(&garbage, b"this is not a model at all").unwrap();
    assert_clean_failure(
        &octet(&["inspect", garbage.to_str().unwrap()]),
        1,
        "not a TFLite model",
    );

    let empty = dir.join("empty.tflite");
    std::fs::write(&empty, b"").unwrap();
    assert_clean_failure(
        &octet(&["inspect", empty.to_str().unwrap()]),
        1,
        "too short",
    );

    assert_clean_failure(
        &octet(&["inspect", "/no/such/model.tflite"]),
        1,
        "cannot read",
    );

    let dir = dir.join("a_directory");
    std::fs::create_dir_all(&dir).unwrap();
    assert_clean_failure(
        &octet(&["inspect", dir.to_str().unwrap()]),
        1,
        "cannot read",
    );
}

#[test]
fn bad_usage_fails_with_exit_code_2() {
    let out = octet(&["inspect"]);
    assert_eq!(out.status.code(), Some(2));
    let out = octet(&["inspect", "x.tflite", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
}
