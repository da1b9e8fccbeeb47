//! Table-by-table comparison of two `.tflite` files, for proving that a rewrite kept everything.
//!
//! Both files are unpacked with the schema's object API and normalized so that only encodings
//! that mean the same thing to TFLite compare equal: operator codes are resolved per operator
//! (the table's order and the pre-3a byte field do not matter), buffers are compared by their
//! bytes wherever they were stored, an absent vector equals an empty one, an empty quantization
//! table equals none, and an op's field-less options table equals no options.

use crate::TfliteError;
use crate::fb;

/// Lists the differences between two models' tables (empty when they are equivalent). Each entry
/// names the table (e.g. `subgraph 0 tensor 12`) and shows both sides.
pub fn table_differences(original: &[u8], rewritten: &[u8]) -> Result<Vec<String>, TfliteError> {
    let a = normalized_tables(original)?;
    let b = normalized_tables(rewritten)?;
    let mut diffs = Vec::new();
    if a.len() != b.len() {
        diffs.push(format!("table count {} != {}", a.len(), b.len()));
    }
    for ((name_a, a), (name_b, b)) in a.iter().zip(&b) {
        if name_a != name_b || a != b {
            diffs.push(format!("{name_a}:\n  original:  {a}\n  rewritten: {b}"));
        }
    }
    Ok(diffs)
}

/// Every table of the model as (name, normalized debug text), in a fixed order.
fn normalized_tables(bytes: &[u8]) -> Result<Vec<(String, String)>, TfliteError> {
    let model = fb::root_as_model_with_opts(
        &flatbuffers::VerifierOptions {
            max_tables: 10_000_000,
            ..Default::default()
        },
        bytes,
    )
    .map_err(|e| TfliteError::Damaged(e.to_string()))?
    .unpack();
    let mut tables = Vec::new();
    let mut push = |name: String, debug: String| tables.push((name, normalize(&debug)));

    push("model version".into(), format!("{:?}", model.version));
    push("description".into(), format!("{:?}", model.description));
    push(
        "metadata_buffer".into(),
        format!("{:?}", model.metadata_buffer),
    );
    push("metadata".into(), format!("{:?}", model.metadata));
    push(
        "signature_defs".into(),
        format!("{:?}", model.signature_defs),
    );
    push(
        "external buffers".into(),
        format!(
            "{:?} {:?}",
            model.external_buffer_groups, model.external_buffers
        ),
    );
    let codes = model.operator_codes.unwrap_or_default();
    for (s, sg) in model.subgraphs.unwrap_or_default().into_iter().enumerate() {
        push(
            format!("subgraph {s}"),
            format!(
                "name {:?} inputs {:?} outputs {:?} debug {}",
                sg.name, sg.inputs, sg.outputs, sg.debug_metadata_index
            ),
        );
        for (t, mut tensor) in sg.tensors.unwrap_or_default().into_iter().enumerate() {
            if tensor.name.is_none() {
                tensor.name = Some(String::new());
            }
            if tensor
                .quantization
                .as_ref()
                .is_some_and(|q| **q == fb::QuantizationParametersT::default())
            {
                tensor.quantization = None;
            }
            push(format!("subgraph {s} tensor {t}"), format!("{tensor:?}"));
        }
        for (o, mut op) in sg.operators.unwrap_or_default().into_iter().enumerate() {
            let code = codes.get(op.opcode_index as usize).map(|c| {
                (
                    i32::from(c.deprecated_builtin_code).max(c.builtin_code.0),
                    c.custom_code.clone(),
                    c.version,
                )
            });
            if op.large_custom_options_offset > 1 {
                op.custom_options = usize::try_from(op.large_custom_options_offset)
                    .ok()
                    .zip(usize::try_from(op.large_custom_options_size).ok())
                    .and_then(|(start, len)| bytes.get(start..start.checked_add(len)?))
                    .map(<[u8]>::to_vec);
                op.large_custom_options_offset = 0;
                op.large_custom_options_size = 0;
            }
            op.opcode_index = 0;
            push(
                format!("subgraph {s} operator {o}"),
                format!("code {code:?} {op:?}"),
            );
        }
    }
    for (i, buffer) in model.buffers.unwrap_or_default().into_iter().enumerate() {
        let data = if buffer.offset > 1 {
            usize::try_from(buffer.offset)
                .ok()
                .zip(usize::try_from(buffer.size).ok())
                .and_then(|(start, len)| bytes.get(start..start.checked_add(len)?))
                .map(<[u8]>::to_vec)
        } else {
            buffer.data
        };
        push(
            format!("buffer {i}"),
            format!("{:?}", data.unwrap_or_default()),
        );
    }
    Ok(tables)
}

/// Folds encodings that mean the same into one spelling: `Some([])` into `None`, and a field-less
/// options table such as `PadOptions(PadOptionsT)` into `NONE`.
fn normalize(debug: &str) -> String {
    let folded = debug.replace("Some([])", "None");
    let mut out = String::with_capacity(folded.len());
    let mut rest = folded.as_str();
    while let Some(pos) = rest.find("builtin_options: ") {
        let (head, tail) = rest.split_at(pos + "builtin_options: ".len());
        out.push_str(head);
        rest = tail;
        let ident_len = rest
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .unwrap_or(rest.len());
        let (ident, after) = rest.split_at(ident_len);
        let empty_table = format!("({ident}T)");
        if !ident.is_empty() && after.starts_with(&empty_table) {
            out.push_str("NONE");
            rest = &after[empty_table.len()..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn field_less_options_and_empty_vectors_fold() {
        assert_eq!(
            normalize("x builtin_options: PadOptions(PadOptionsT), y: Some([])"),
            "x builtin_options: NONE, y: None"
        );
        assert_eq!(
            normalize("builtin_options: AddOptions(AddOptionsT { a: 1 })"),
            "builtin_options: AddOptions(AddOptionsT { a: 1 })"
        );
    }
}
