//! Thousands of seeded mutations of the fixtures go through the reader: each must end in a model
//! or an error, never a panic, and memory must stay bounded by the input's size.
//!
//! This file is its own test binary with a single test, so the allocator statistics it reads
//! belong to this test alone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::alloc::System;
use std::path::Path;

use cap::Cap;
use octet_tflite::{read_model, write_model};

/// Counts every allocation; an allocation past the limit fails, which aborts the test.
#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, 1 << 30);

/// The `.tflite` files in `dir` whose names pass `wanted`, read into memory.
fn tflite_files_in(dir: &Path, wanted: impl Fn(&str) -> bool) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tflite"))
        .filter(|p| p.file_name().is_some_and(|n| wanted(&n.to_string_lossy())))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    found.sort();
    found
}

/// The committed fixtures, each with the number of mutations to try on it, then (when
/// `cargo xtask fetch-models` has fetched them) a few real-world models: a sparse one and one
/// with custom ops, fewer mutations each since they are larger.
fn inputs() -> Vec<(String, Vec<u8>, usize)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let fixtures = tflite_files_in(&root.join("models"), |_| true);
    assert!(!fixtures.is_empty(), "no fixtures in models/");
    let third_party = tflite_files_in(&root.join(".cache/third_party/mediapipe"), |name| {
        name == "face_detection_full_range_sparse.tflite" || name == "selfie_segmentation.tflite"
    });
    fixtures
        .into_iter()
        .map(|(n, b)| (n, b, 1000))
        .chain(third_party.into_iter().map(|(n, b)| (n, b, 150)))
        .collect()
}

/// Values that make offsets, lengths and indices absurd when written over a 32-bit word.
const EXTREME_WORDS: [u32; 6] = [0, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 0x0001_0000];

fn mutate(rng: &mut fastrand::Rng, original: &[u8]) -> (String, Vec<u8>) {
    let mut bytes = original.to_vec();
    let len = bytes.len();
    match rng.u8(0..6) {
        0 => {
            let flips = rng.usize(1..=8);
            for _ in 0..flips {
                let at = rng.usize(0..len);
                bytes[at] ^= 1 << rng.u8(0..8);
            }
            (format!("{flips} bit flip(s)"), bytes)
        }
        1 => {
            // Overwrite an aligned word: this is where offsets, lengths and indices live.
            let at = rng.usize(0..len / 4) * 4;
            let value = if rng.bool() {
                EXTREME_WORDS[rng.usize(0..EXTREME_WORDS.len())]
            } else {
                rng.u32(..)
            };
            bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
            (format!("word at {at} = {value:#x}"), bytes)
        }
        2 => {
            let keep = rng.usize(0..len);
            bytes.truncate(keep);
            (format!("truncated to {keep} bytes"), bytes)
        }
        3 => {
            let garbage_len = rng.usize(0..4096);
            let mut garbage: Vec<u8> = (0..garbage_len).map(|_| rng.u8(..)).collect();
            if garbage_len >= 8 && rng.bool() {
                garbage[4..8].copy_from_slice(b"TFL3");
            }
            (format!("{garbage_len} bytes of garbage"), garbage)
        }
        4 => {
            let from = rng.usize(0..len);
            let to = rng.usize(0..len);
            let chunk = rng.usize(1..=64).min(len - from.max(to));
            bytes.copy_within(from..from + chunk, to);
            (format!("{chunk} bytes copied from {from} to {to}"), bytes)
        }
        _ => {
            // Corrupt a byte in the first kilobyte, where the root table and vtables sit.
            let at = rng.usize(0..len.min(1024));
            let value = rng.u8(..);
            bytes[at] = value;
            (format!("byte at {at} = {value:#x}"), bytes)
        }
    }
}

#[test]
fn seeded_mutations_give_errors_not_panics() {
    let inputs = inputs();
    let largest = inputs.iter().map(|(_, b, _)| b.len()).max().unwrap_or(0);
    // The peak so far (reading the inputs) counts against the bound too, which only makes the
    // check stricter.
    let baseline = ALLOCATOR.allocated();
    let (mut parsed, mut rejected) = (0usize, 0usize);
    let mut messages = std::collections::BTreeSet::new();
    for (index, (name, original, mutations)) in inputs.iter().enumerate() {
        let mut rng = fastrand::Rng::with_seed(0x0c7e7 + index as u64);
        for i in 0..*mutations {
            let (what, bytes) = mutate(&mut rng, original);
            let outcome = std::panic::catch_unwind(|| match read_model(&bytes) {
                // Whatever reads successfully is consistent, so it must also write.
                Ok(model) => write_model(&model).map(|_| None).map_err(|e| e.to_string()),
                Err(e) => Ok(Some(e.to_string())),
            });
            match outcome {
                Ok(Ok(None)) => parsed += 1,
                Ok(Ok(Some(message))) => {
                    assert!(!message.is_empty());
                    messages.insert(message.split(':').next().unwrap_or("").to_owned());
                    rejected += 1;
                }
                Ok(Err(e)) => panic!("{name}, mutation {i} ({what}): read but cannot write: {e}"),
                Err(_) => panic!("{name}, mutation {i} ({what}): the reader panicked"),
            }
        }
    }
    let peak = ALLOCATOR.max_allocated() - baseline;
    eprintln!(
        "{} mutations: {parsed} still parse, {rejected} rejected; error kinds: {messages:?}; \
         peak heap {peak} bytes for inputs up to {largest} bytes",
        parsed + rejected
    );
    assert!(rejected > parsed, "most mutations should be caught");
    // The reader copies the file into the IR once or twice; nothing may scale with a size
    // field read from the file.
    assert!(
        peak < 8 * largest + (4 << 20),
        "peak heap {peak} bytes is out of proportion to {largest}-byte inputs"
    );
}
