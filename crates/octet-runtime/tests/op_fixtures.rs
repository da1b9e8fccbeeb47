//! Every op-coverage fixture in `models/ops/` (made by `cargo xtask fixtures`) runs in octet and
//! matches LiteRT's reference kernels: integer outputs exactly, float outputs within 1e-5 of the
//! output's largest magnitude.
//!
//! Fixtures that resize the model's inputs at run time are listed and not run: octet runs the
//! shapes stored in the model.
//!
//! `OCTET_FIXTURE_DIR` points the test at another folder with a `manifest.json` of the same form;
//! `OCTET_FIXTURE_FILTER` keeps only fixtures whose name contains the given text.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::{Path, PathBuf};

use octet_runtime::Interpreter;

#[derive(Debug)]
struct Entry {
    name: String,
    model: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
    /// The fixture feeds inputs of another shape than the model's stored one (TFLite's
    /// `resize_tensor_input`), which octet does not support yet.
    resize_inputs: bool,
}

fn fixture_dir() -> PathBuf {
    match std::env::var_os("OCTET_FIXTURE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/ops"),
    }
}

fn manifest(dir: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    json.as_array()
        .unwrap()
        .iter()
        .map(|e| Entry {
            name: e["name"].as_str().unwrap().to_owned(),
            model: e["model"].as_str().unwrap().to_owned(),
            inputs: strings(&e["inputs"]),
            outputs: strings(&e["outputs"]),
            resize_inputs: e["resize_inputs"].as_bool().unwrap_or(false),
        })
        .collect()
}

/// A `.npy` array: numpy dtype string (e.g. `<f4`), shape, raw little-endian bytes.
struct Npy {
    dtype: String,
    shape: Vec<u64>,
    bytes: Vec<u8>,
}

fn load_npy(path: &Path) -> Npy {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(std::io::BufReader::new(file)).unwrap();
    let dtype = npy.dtype().descr();
    let shape = npy.shape().to_vec();
    let typestr = match npy.dtype() {
        npyz::DType::Plain(t) => t.to_string(),
        other => panic!("{}: unsupported npy dtype {other:?}", path.display()),
    };
    let bytes = match typestr.as_str() {
        "<f4" => npy
            .into_vec::<f32>()
            .unwrap()
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        "<f2" => npy
            .into_vec::<half::f16>()
            .unwrap()
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        "<f8" => npy
            .into_vec::<f64>()
            .unwrap()
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        "|i1" => npy
            .into_vec::<i8>()
            .unwrap()
            .iter()
            .map(|&x| x as u8)
            .collect(),
        "|u1" => npy.into_vec::<u8>().unwrap(),
        "|b1" => npy
            .into_vec::<bool>()
            .unwrap()
            .iter()
            .map(|&x| u8::from(x))
            .collect(),
        "<i2" => npy
            .into_vec::<i16>()
            .unwrap()
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        "<i4" => npy
            .into_vec::<i32>()
            .unwrap()
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        "<i8" => npy
            .into_vec::<i64>()
            .unwrap()
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        other => panic!(
            "{}: unsupported npy dtype {other} ({dtype})",
            path.display()
        ),
    };
    Npy {
        dtype: typestr,
        shape,
        bytes,
    }
}

/// Compares one output; `Err` describes the first mismatch.
fn compare(got: &[u8], want: &Npy) -> Result<(), String> {
    if got.len() != want.bytes.len() {
        return Err(format!(
            "{} bytes, expected {}",
            got.len(),
            want.bytes.len()
        ));
    }
    if want.dtype == "<f4" {
        let got: Vec<f32> = got
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let want: Vec<f32> = want
            .bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let scale = want
            .iter()
            .fold(0f32, |m, x| m.max(x.abs()))
            .max(f32::MIN_POSITIVE);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let same = g == w || (g.is_nan() && w.is_nan()) || (g - w).abs() <= 1e-5 * scale;
            if !same {
                return Err(format!(
                    "element {i}: {g} vs LiteRT {w} (tolerance {})",
                    1e-5 * scale
                ));
            }
        }
        Ok(())
    } else if let Some(i) = got.iter().zip(&want.bytes).position(|(a, b)| a != b) {
        Err(format!(
            "byte {i} differs ({} vs LiteRT {})",
            got[i], want.bytes[i]
        ))
    } else {
        Ok(())
    }
}

fn run_entry(dir: &Path, entry: &Entry) -> Result<(), String> {
    let model = octet_tflite::read_file(&dir.join(&entry.model)).map_err(|e| e.to_string())?;
    let mut interpreter = Interpreter::new(&model).map_err(|e| format!("prepare: {e}"))?;
    for (i, file) in entry.inputs.iter().enumerate() {
        let npy = load_npy(&dir.join(file));
        let info = interpreter.input_info(i).map_err(|e| e.to_string())?;
        let shape: Vec<u64> = info.shape.iter().map(|&d| d as u64).collect();
        if shape != npy.shape {
            return Err(format!(
                "input {i}: npy shape {:?}, model {:?}",
                npy.shape, shape
            ));
        }
        interpreter
            .set_input(i, &npy.bytes)
            .map_err(|e| e.to_string())?;
    }
    interpreter.invoke().map_err(|e| format!("invoke: {e}"))?;
    for (k, file) in entry.outputs.iter().enumerate() {
        let want = load_npy(&dir.join(file));
        let got = interpreter.output(k).map_err(|e| e.to_string())?;
        compare(got, &want).map_err(|e| format!("output {k}: {e}"))?;
    }
    Ok(())
}

#[test]
fn op_fixtures_match_litert_reference_kernels() {
    let dir = fixture_dir();
    let filter = std::env::var("OCTET_FIXTURE_FILTER").unwrap_or_default();
    let entries: Vec<Entry> = manifest(&dir)
        .into_iter()
        .filter(|e| e.name.contains(&filter))
        .collect();
    assert!(
        !entries.is_empty(),
        "no fixtures selected in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    let (resized, entries): (Vec<Entry>, Vec<Entry>) =
        entries.into_iter().partition(|e| e.resize_inputs);
    if !resized.is_empty() {
        let names: Vec<&str> = resized.iter().map(|e| e.name.as_str()).collect();
        eprintln!(
            "not run (inputs resized at run time, which octet does not support yet): {names:?}"
        );
    }
    for entry in &entries {
        if let Err(e) = run_entry(&dir, entry) {
            failures.push(format!("{}: {e}", entry.name));
        }
    }
    eprintln!(
        "{} of {} fixtures match LiteRT",
        entries.len() - failures.len(),
        entries.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
