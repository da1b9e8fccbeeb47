//! Reading and writing every model we have gives back the same IR and the same tables.
//!
//! The committed fixtures in `models/` always run; third-party models fetched by
//! `cargo xtask fetch-models` into `.cache/third_party/` run when present.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::{Path, PathBuf};

use octet_tflite::{read_model, table_differences, write_model};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tflite_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(tflite_files(&path));
        } else if path.extension().is_some_and(|e| e == "tflite") {
            found.push(path);
        }
    }
    found.sort();
    found
}

fn check_roundtrip(path: &Path) {
    let original = std::fs::read(path).unwrap();
    let model = read_model(&original).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let written = write_model(&model).unwrap();
    assert_eq!(&written[4..8], b"TFL3", "{}", path.display());
    let reread = read_model(&written).unwrap();
    assert!(
        reread == model,
        "{}: IR changed in the round trip",
        path.display()
    );
    let diffs = table_differences(&original, &written).unwrap();
    assert!(
        diffs.is_empty(),
        "{}: {} table(s) differ, first: {}",
        path.display(),
        diffs.len(),
        diffs[0]
    );
    // Writing is deterministic: the same model gives the same bytes.
    assert_eq!(write_model(&reread).unwrap(), written);
}

#[test]
fn committed_fixtures_round_trip() {
    let files = tflite_files(&workspace_root().join("models"));
    assert!(!files.is_empty(), "no fixtures found in models/");
    for path in files {
        check_roundtrip(&path);
    }
}

#[test]
fn third_party_models_round_trip_when_present() {
    let files = tflite_files(&workspace_root().join(".cache/third_party"));
    if files.is_empty() {
        eprintln!("no third-party models: run `cargo xtask fetch-models` to include them");
    }
    for path in files {
        check_roundtrip(&path);
    }
}
