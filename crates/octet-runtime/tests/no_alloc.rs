//! Invoking a prepared model allocates nothing: every kernel's scratch space is sized when the
//! model is prepared. Checked with a counting allocator over every model we have that octet can
//! run (this file is its own test binary, so the counts are this test's alone).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::alloc::System;
use std::path::{Path, PathBuf};

use cap::Cap;
use octet_runtime::{Interpreter, InterpreterOptions};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

fn tflite_files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "tflite"))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

#[test]
fn invoke_allocates_nothing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let main_fixtures = tflite_files(&root);
    let all: Vec<PathBuf> = main_fixtures
        .iter()
        .chain(&tflite_files(&root.join("ops")))
        .cloned()
        .collect();
    check(&all, &main_fixtures, 1);

    // With two threads the kernels split their work over the pool: handing out and joining
    // jobs must not allocate either. The MediaPipe models (when `cargo xtask fetch-models` has
    // run) are big enough for every kind of split. (One test function: the allocator's count
    // is global, so a test running in parallel would be counted too.)
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut all = main_fixtures.clone();
    all.extend(tflite_files(&root.join("models/reference")));
    all.extend(tflite_files(&root.join(".cache/third_party/mediapipe")));
    check(&all, &main_fixtures, 2);
}

fn check(paths: &[PathBuf], main_fixtures: &[PathBuf], threads: usize) {
    let mut checked = Vec::new();
    let options = InterpreterOptions {
        threads,
        ..InterpreterOptions::default()
    };
    for path in paths {
        let model = octet_tflite::read_file(path).unwrap();
        let mut interpreter = match Interpreter::with_options(&model, options) {
            Ok(i) => i,
            Err(e) => {
                // The main fixtures must all run; op fixtures are checked by op_fixtures.rs.
                assert!(!main_fixtures.contains(path), "{}: {e}", path.display());
                continue;
            }
        };
        for i in 0..interpreter.num_inputs() {
            let len = interpreter.input_info(i).unwrap().byte_len();
            interpreter.set_input(i, &vec![0u8; len]).unwrap();
        }
        // Data-dependent failures (none expected on zeros) would allocate an error message;
        // the first run also shows that the model runs at all.
        interpreter.invoke().unwrap();
        let before = ALLOCATOR.total_allocated();
        for _ in 0..3 {
            interpreter.invoke().unwrap();
        }
        let allocated = ALLOCATOR.total_allocated() - before;
        assert_eq!(
            allocated,
            0,
            "{}: invoke allocated {allocated} bytes",
            path.display()
        );
        checked.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    eprintln!(
        "{} models invoke without allocating on {threads} thread(s): {checked:?}",
        checked.len()
    );
    assert!(checked.len() >= main_fixtures.len());
}
