//! `octet params` reproduces the conversion table of the background article.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::process::Command;

fn params(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_octet"))
        .arg("params")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1);
    serde_json::from_str(&text).unwrap()
}

fn close(v: &serde_json::Value, key: &str, want: f64) {
    let got = v[key].as_f64().unwrap();
    assert!((got - want).abs() < 1e-5, "{key}: {got} vs {want} in {v}");
}

#[test]
fn the_articles_table() {
    // range (0,255): mean 0, std 1.
    let v = params(&["--range=0,255"]);
    close(&v, "mean", 0.0);
    close(&v, "std_dev", 1.0);
    // range (-1,1): mean 127.5, std 127.5; the uint8 zero point is nudged to 128.
    let v = params(&["--range=-1,1"]);
    close(&v, "mean", 127.5);
    close(&v, "std_dev", 127.5);
    assert_eq!(v["zero_point"], 128);
    close(&v, "min", -128.0 / 127.5);
    close(&v, "max", 127.0 / 127.5);
    // range (0,1): mean 0, std 255.
    let v = params(&["--range=0,1"]);
    close(&v, "mean", 0.0);
    close(&v, "std_dev", 255.0);
    // mean 128 / std 127: scale 1/127, zero point 128, range [-1.00787, 1.0].
    let v = params(&["--mean", "128", "--std-dev", "127"]);
    close(&v, "scale", 1.0 / 127.0);
    assert_eq!(v["zero_point"], 128);
    close(&v, "min", -1.007_874);
    close(&v, "max", 1.0);
}

#[test]
fn scale_and_zero_point_and_int8() {
    let v = params(&["--scale", "0.5", "--zero-point", "-3", "--dtype", "int8"]);
    close(&v, "mean", -3.0);
    close(&v, "std_dev", 2.0);
    close(&v, "min", -62.5);
    close(&v, "max", 65.0);
}

#[test]
fn bad_values_exit_1_and_bad_usage_exit_2() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_octet"))
            .arg("params")
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--range=1,-1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: invalid range"));
    assert_eq!(
        run(&["--scale", "0.1", "--zero-point", "300"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(run(&["--mean", "1"]).status.code(), Some(2));
    assert_eq!(run(&[]).status.code(), Some(2));
}
