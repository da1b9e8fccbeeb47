//! The observation hook shows every tensor as it is computed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::Path;

use octet_runtime::Interpreter;

#[test]
fn observer_sees_inputs_and_every_operator_output() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/digits_cnn.tflite");
    let model = octet_tflite::read_file(&path).unwrap();
    let sg = model.main_subgraph().unwrap();
    let mut interpreter = Interpreter::new(&model).unwrap();
    let len = interpreter.input_info(0).unwrap().byte_len();
    interpreter.set_input(0, &vec![0u8; len]).unwrap();
    let mut seen = Vec::new();
    interpreter
        .invoke_observed(&mut |obs| {
            assert_eq!(obs.bytes.len(), obs.info.byte_len());
            seen.push(obs.tensor);
        })
        .unwrap();
    let mut expected: Vec<_> = sg.inputs.clone();
    for op in &sg.operators {
        expected.extend(op.outputs.iter().copied());
    }
    assert_eq!(seen, expected);
    // The last observation of the output equals what output() returns afterwards.
    assert_eq!(seen.last(), sg.outputs.first());
}

#[test]
fn invoking_again_without_new_inputs_gives_the_same_outputs() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/digits_cnn.tflite");
    let model = octet_tflite::read_file(&path).unwrap();
    let mut interpreter = Interpreter::new(&model).unwrap();
    let len = interpreter.input_info(0).unwrap().byte_len();
    let input: Vec<u8> = (0..len / 4)
        .flat_map(|i| (i as f32 / 64.0).to_le_bytes())
        .collect();
    interpreter.set_input(0, &input).unwrap();
    interpreter.invoke().unwrap();
    let first = interpreter.output(0).unwrap().to_vec();
    interpreter.invoke().unwrap();
    assert_eq!(interpreter.output(0).unwrap(), first.as_slice());
}
