//! octet's own quantized fixtures against LiteRT, without Python: `models/quantized/` holds every
//! fixture quantized by octet in every mode, with seeded inputs and LiteRT's reference-kernel
//! outputs (made by `cargo xtask crosscheck --record models/quantized`, which first checked that
//! LiteRT loads each file with both its resolvers). Here octet must (1) still write exactly those
//! files and (2) compute exactly LiteRT's outputs on them (floats within 1e-5 of the largest).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::path::{Path, PathBuf};

use common::{models, octet};

/// (numpy type string, shape, raw bytes) of a `.npy` file.
fn npy(path: &Path) -> (String, Vec<u64>, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let file = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = file.shape().to_vec();
    let npyz::DType::Plain(t) = file.dtype() else {
        panic!("{}: structured array", path.display())
    };
    let typestr = t.to_string();
    let item = t.size_field() as usize;
    let n: u64 = shape.iter().product();
    let data = bytes[bytes.len() - n as usize * item..].to_vec();
    (typestr, shape, data)
}

fn compare(got: &Path, want: &Path) -> Result<(), String> {
    let (gt, gs, gb) = npy(got);
    let (wt, ws, wb) = npy(want);
    if gt != wt || gs != ws {
        return Err(format!("octet wrote {gt}{gs:?}, LiteRT {wt}{ws:?}"));
    }
    if wt == "<f4" {
        let floats = |b: &[u8]| -> Vec<f32> {
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        };
        let (g, w) = (floats(&gb), floats(&wb));
        // Within 1e-5 of each value, and never looser than 1e-8 of the largest value.
        let scale = w.iter().fold(0f32, |m, x| m.max(x.abs()));
        for (i, (a, b)) in g.iter().zip(&w).enumerate() {
            let tolerance = 1e-5 * b.abs().max(1e-3 * scale);
            if a != b && (a - b).abs() > tolerance {
                return Err(format!("element {i}: {a} vs LiteRT {b}"));
            }
        }
        Ok(())
    } else if gb != wb {
        Err("integer outputs differ".into())
    } else {
        Ok(())
    }
}

#[test]
fn octet_writes_the_same_files_and_matches_litert_on_them() {
    let dir = models().join("quantized");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tflite"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 30,
        "expected every fixture in every mode in {}",
        dir.display()
    );
    let scratch = std::env::temp_dir().join(format!("octet-quantized-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let mut failures = Vec::new();
    for file in &files {
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        let (fixture, mode) = stem.rsplit_once('.').unwrap();
        // (1) The quantizer still writes exactly this file.
        let again = scratch.join(format!("{stem}.tflite"));
        let source = models().join(format!("{fixture}.tflite"));
        // `int8@octet`: --mode int8 --target octet.
        let (mode, target) = mode.split_once('@').unwrap_or((mode, "litert"));
        let q = octet(&[
            "quantize".as_ref(),
            source.as_os_str(),
            "-o".as_ref(),
            again.as_os_str(),
            "--mode".as_ref(),
            mode.as_ref(),
            "--target".as_ref(),
            target.as_ref(),
            "--calib".as_ref(),
            "random:-1,1".as_ref(),
            "--samples".as_ref(),
            "8".as_ref(),
        ]);
        if !q.status.success() {
            failures.push(format!("{stem}: {}", String::from_utf8_lossy(&q.stderr)));
            continue;
        }
        if std::fs::read(&again).unwrap() != std::fs::read(file).unwrap() {
            failures.push(format!(
                "{stem}: the quantizer's output changed; check it with `cargo xtask crosscheck \
                 --record models/quantized` and commit the new files"
            ));
        }
        // (2) octet-runtime computes LiteRT's reference outputs on it.
        let out = scratch.join(format!("{stem}-run"));
        let mut args: Vec<std::ffi::OsString> = vec!["run".into(), file.into()];
        for k in 0.. {
            let input = dir.join(format!("{stem}.in{k}.npy"));
            if !input.exists() {
                break;
            }
            args.push("--input".into());
            args.push(input.into());
        }
        args.push("--output-dir".into());
        args.push(out.clone().into());
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let r = octet(&refs);
        if !r.status.success() {
            failures.push(format!("{stem}: {}", String::from_utf8_lossy(&r.stderr)));
            continue;
        }
        for k in 0.. {
            let want = dir.join(format!("{stem}.out{k}.npy"));
            if !want.exists() {
                break;
            }
            if let Err(e) = compare(&out.join(format!("output_{k}.npy")), &want) {
                failures.push(format!("{stem}, output {k}: {e}"));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    eprintln!("{} quantized models checked against LiteRT", files.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
