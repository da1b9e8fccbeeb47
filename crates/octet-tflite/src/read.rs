//! `.tflite` bytes → [`Model`], verified and index-checked.

use std::path::Path;

use octet_core::{
    Buffer, BufferId, DimensionMetadata, ExternalBuffer, ExternalBufferGroup, Metadata, Model,
    Operator, QuantDetails, QuantParams, Shape, SignatureDef, SignatureTensor, SparseIndices,
    Sparsity, Subgraph, Tensor, TensorId, VariantSubType,
};

use crate::TfliteError;
use crate::fb;
use crate::ops::{FileOp, op_from_file};
use crate::types::dtype_from_fb;

/// The largest file octet reads: flatbuffer offsets are 32-bit, and files over 2 GiB keep their
/// weights after the flatbuffer, addressed by 64-bit offsets; 64 GiB is far past any real model.
const MAX_FILE_BYTES: u64 = 64 << 30;

/// Reads and parses a `.tflite` file.
pub fn read_file(path: &Path) -> Result<Model, TfliteError> {
    let io = |source| TfliteError::Io {
        action: "cannot read",
        path: path.to_owned(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_FILE_BYTES {
        return Err(TfliteError::Unsupported(format!(
            "{} is {len} bytes, more than the {MAX_FILE_BYTES} octet reads",
            path.display()
        )));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    read_model(&bytes)
}

/// Parses a `.tflite` model held in memory.
///
/// The flatbuffer is verified before anything is read from it, and every index it holds
/// (operator codes, tensors, buffers, subgraphs) is checked, so damaged input gives an error,
/// never a panic or an unbounded allocation.
pub fn read_model(bytes: &[u8]) -> Result<Model, TfliteError> {
    let Some(identifier) = bytes.get(4..8) else {
        return Err(TfliteError::NotTflite(format!(
            "{} bytes is too short for a flatbuffer",
            bytes.len()
        )));
    };
    if identifier != fb::MODEL_IDENTIFIER.as_bytes() {
        return Err(TfliteError::NotTflite(format!(
            "file identifier is {:?}, expected \"TFL3\"",
            String::from_utf8_lossy(identifier)
        )));
    }
    let options = flatbuffers::VerifierOptions {
        max_depth: 64,
        max_tables: 10_000_000,
        // Bytes the verifier may visit, counting every visit: a damaged file whose offsets point
        // many times at the same large object would otherwise unpack into far more memory than
        // the file holds. A sound file visits each byte about once.
        max_apparent_size: bytes.len().saturating_mul(2).saturating_add(1 << 16),
        ..flatbuffers::VerifierOptions::default()
    };
    let root = fb::root_as_model_with_opts(&options, bytes)
        .map_err(|e| TfliteError::Damaged(e.to_string()))?;
    let file = unpack_model(&root);
    convert_model(file, bytes)
}

/// `root.unpack()`, except that buffer contents are copied as slices: the generated code copies
/// them one byte at a time, which for a model's weights is most of the time reading takes.
fn unpack_model(root: &fb::Model<'_>) -> fb::ModelT {
    fb::ModelT {
        version: root.version(),
        operator_codes: root
            .operator_codes()
            .map(|x| x.iter().map(|t| t.unpack()).collect()),
        subgraphs: root
            .subgraphs()
            .map(|x| x.iter().map(|t| t.unpack()).collect()),
        description: root.description().map(str::to_owned),
        buffers: root.buffers().map(|x| {
            x.iter()
                .map(|b| fb::BufferT {
                    data: b.data().map(|d| d.bytes().to_vec()),
                    offset: b.offset(),
                    size: b.size(),
                })
                .collect()
        }),
        metadata_buffer: root.metadata_buffer().map(|x| x.into_iter().collect()),
        metadata: root
            .metadata()
            .map(|x| x.iter().map(|t| t.unpack()).collect()),
        signature_defs: root
            .signature_defs()
            .map(|x| x.iter().map(|t| t.unpack()).collect()),
        external_buffer_groups: root
            .external_buffer_groups()
            .map(|x| x.iter().map(|t| t.unpack()).collect()),
        external_buffers: root
            .external_buffers()
            .map(|x| x.iter().map(|t| t.unpack()).collect()),
    }
}

/// Bytes stored after the flatbuffer at an absolute file offset (schema 3c), checked.
fn external_slice<'a>(
    bytes: &'a [u8],
    offset: u64,
    size: u64,
    what: &dyn Fn() -> String,
) -> Result<&'a [u8], TfliteError> {
    let range = usize::try_from(offset)
        .ok()
        .zip(usize::try_from(size).ok())
        .and_then(|(start, len)| Some(start..start.checked_add(len)?));
    range.and_then(|r| bytes.get(r)).ok_or_else(|| {
        TfliteError::Invalid(format!(
            "{} is stored at offset {offset} with size {size}, outside the {}-byte file",
            what(),
            bytes.len()
        ))
    })
}

fn tensor_id(index: i32, what: &dyn Fn() -> String) -> Result<TensorId, TfliteError> {
    u32::try_from(index)
        .map(TensorId)
        .map_err(|_| TfliteError::Invalid(format!("{} has negative tensor index {index}", what())))
}

fn tensor_ids(
    indices: Option<Vec<i32>>,
    what: &dyn Fn() -> String,
) -> Result<Vec<TensorId>, TfliteError> {
    indices
        .unwrap_or_default()
        .into_iter()
        .map(|i| tensor_id(i, what))
        .collect()
}

/// The resolved identity of an operator code.
struct OpCode {
    builtin: fb::BuiltinOperator,
    custom: Option<String>,
    version: i32,
}

fn convert_model(file: fb::ModelT, bytes: &[u8]) -> Result<Model, TfliteError> {
    let opcodes: Vec<OpCode> = file
        .operator_codes
        .unwrap_or_default()
        .into_iter()
        .map(|c| OpCode {
            // Files from before schema 3a only fill the byte-sized field; newer ones fill both
            // (the byte one saturated at 127). The real op is the larger of the two.
            builtin: fb::BuiltinOperator(
                i32::from(c.deprecated_builtin_code).max(c.builtin_code.0),
            ),
            custom: c.custom_code,
            version: c.version,
        })
        .collect();

    let buffers = file
        .buffers
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            let data = if b.offset > 1 {
                external_slice(bytes, b.offset, b.size, &|| format!("buffer {i}"))?.to_vec()
            } else {
                b.data.unwrap_or_default()
            };
            Ok(Buffer { data })
        })
        .collect::<Result<Vec<_>, TfliteError>>()?;

    let subgraphs = file
        .subgraphs
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(s, sg)| convert_subgraph(s, sg, &opcodes, bytes))
        .collect::<Result<Vec<_>, _>>()?;

    let metadata = file
        .metadata
        .unwrap_or_default()
        .into_iter()
        .map(|m| Metadata {
            name: m.name.unwrap_or_default(),
            buffer: BufferId(m.buffer),
        })
        .collect();

    let signature_defs = file
        .signature_defs
        .unwrap_or_default()
        .into_iter()
        .map(|sig| {
            let key = sig.signature_key.unwrap_or_default();
            let maps = |list: Option<Vec<fb::TensorMapT>>| {
                list.unwrap_or_default()
                    .into_iter()
                    .map(|m| SignatureTensor {
                        name: m.name.unwrap_or_default(),
                        tensor: TensorId(m.tensor_index),
                    })
                    .collect()
            };
            SignatureDef {
                inputs: maps(sig.inputs),
                outputs: maps(sig.outputs),
                subgraph: sig.subgraph_index,
                key,
            }
        })
        .collect();

    let model = Model {
        schema_version: file.version,
        description: file.description,
        buffers,
        subgraphs,
        metadata,
        metadata_buffer: file.metadata_buffer,
        signature_defs,
        external_buffer_groups: file
            .external_buffer_groups
            .unwrap_or_default()
            .into_iter()
            .map(|g| ExternalBufferGroup { name: g.name })
            .collect(),
        external_buffers: file
            .external_buffers
            .unwrap_or_default()
            .into_iter()
            .map(|b| ExternalBuffer {
                id: b.id,
                group: b.group,
                offset: b.offset,
                length: b.length,
                packing: b.packing,
            })
            .collect(),
    };
    model.validate()?;
    Ok(model)
}

fn convert_subgraph(
    s: usize,
    sg: fb::SubGraphT,
    opcodes: &[OpCode],
    bytes: &[u8],
) -> Result<Subgraph, TfliteError> {
    let tensors = sg
        .tensors
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(t, tensor)| convert_tensor(s, t, tensor))
        .collect::<Result<Vec<_>, _>>()?;
    let operators = sg
        .operators
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(o, op)| convert_operator(s, o, op, opcodes, bytes))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Subgraph {
        name: sg.name,
        inputs: tensor_ids(sg.inputs, &|| format!("subgraph {s} input"))?,
        outputs: tensor_ids(sg.outputs, &|| format!("subgraph {s} output"))?,
        tensors,
        operators,
        debug_metadata_index: sg.debug_metadata_index,
    })
}

fn convert_operator(
    s: usize,
    o: usize,
    op: fb::OperatorT,
    opcodes: &[OpCode],
    bytes: &[u8],
) -> Result<Operator, TfliteError> {
    let what = || format!("subgraph {s}, operator {o}");
    let code = opcodes.get(op.opcode_index as usize).ok_or_else(|| {
        TfliteError::Invalid(format!(
            "{} uses operator code {}, but the model has {}",
            what(),
            op.opcode_index,
            opcodes.len()
        ))
    })?;
    let inputs = op
        .inputs
        .unwrap_or_default()
        .into_iter()
        .map(|i| match i {
            -1 => Ok(None),
            i => tensor_id(i, &what).map(Some),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let custom_options = if op.large_custom_options_offset > 1 {
        let slice = external_slice(
            bytes,
            op.large_custom_options_offset,
            op.large_custom_options_size,
            &|| format!("custom options of {}", what()),
        )?;
        Some(slice.to_vec())
    } else {
        op.custom_options
    };
    let kind = op_from_file(FileOp {
        code: code.builtin,
        custom_code: code.custom.clone(),
        builtin_options: op.builtin_options,
        builtin_options_2: op.builtin_options_2,
        custom_options,
        custom_options_format: op.custom_options_format,
    });
    Ok(Operator {
        op: kind,
        version: code.version,
        inputs,
        outputs: tensor_ids(op.outputs, &what)?,
        intermediates: tensor_ids(op.intermediates, &what)?,
        mutating_variable_inputs: op.mutating_variable_inputs.unwrap_or_default(),
        debug_metadata_index: op.debug_metadata_index,
    })
}

fn convert_tensor(s: usize, t: usize, tensor: fb::TensorT) -> Result<Tensor, TfliteError> {
    let dtype = dtype_from_fb(tensor.type_).ok_or_else(|| {
        TfliteError::Unsupported(format!(
            "subgraph {s}, tensor {t} has unknown type code {}",
            tensor.type_.0
        ))
    })?;
    let quant = tensor
        .quantization
        .map(|q| convert_quant(*q))
        .filter(|q| !q.is_empty());
    let variant_tensors = tensor
        .variant_tensors
        .map(|list| {
            list.into_iter()
                .map(|v| {
                    Ok(VariantSubType {
                        shape: v.shape.unwrap_or_default(),
                        dtype: dtype_from_fb(v.type_).ok_or_else(|| {
                            TfliteError::Unsupported(format!(
                                "subgraph {s}, tensor {t} has a variant subtype of unknown type code {}",
                                v.type_.0
                            ))
                        })?,
                        has_rank: v.has_rank,
                    })
                })
                .collect::<Result<Vec<_>, TfliteError>>()
        })
        .transpose()?;
    Ok(Tensor {
        name: tensor.name.unwrap_or_default(),
        dtype,
        shape: Shape::new(tensor.shape.unwrap_or_default()),
        shape_signature: tensor.shape_signature,
        buffer: BufferId(tensor.buffer),
        quant,
        is_variable: tensor.is_variable,
        sparsity: tensor.sparsity.map(|sp| convert_sparsity(*sp)),
        has_rank: tensor.has_rank,
        variant_tensors,
        external_buffer: tensor.external_buffer,
    })
}

fn convert_quant(q: fb::QuantizationParametersT) -> QuantParams {
    let details = match q.details {
        fb::QuantizationDetailsT::NONE => None,
        fb::QuantizationDetailsT::CustomQuantization(c) => {
            Some(QuantDetails::Custom(c.custom.unwrap_or_default()))
        }
        fb::QuantizationDetailsT::BlockwiseQuantization(b) => Some(QuantDetails::Blockwise {
            scales: b.scales,
            zero_points: b.zero_points,
            block_size: b.block_size,
        }),
        fb::QuantizationDetailsT::MultiAxisQuantization(m) => Some(QuantDetails::MultiAxis {
            scales: m.scales,
            zero_points: m.zero_points,
            block_size: m.block_size,
            quantized_dimensions: m.quantized_dimensions.unwrap_or_default(),
        }),
    };
    QuantParams {
        scale: q.scale.unwrap_or_default(),
        zero_point: q.zero_point.unwrap_or_default(),
        quantized_dimension: q.quantized_dimension,
        min: q.min.unwrap_or_default(),
        max: q.max.unwrap_or_default(),
        details,
    }
}

fn convert_indices(v: fb::SparseIndexVectorT) -> SparseIndices {
    match v {
        fb::SparseIndexVectorT::NONE => SparseIndices::Absent,
        fb::SparseIndexVectorT::Int32Vector(v) => SparseIndices::I32(v.values.unwrap_or_default()),
        fb::SparseIndexVectorT::Uint16Vector(v) => SparseIndices::U16(v.values.unwrap_or_default()),
        fb::SparseIndexVectorT::Uint8Vector(v) => SparseIndices::U8(v.values.unwrap_or_default()),
    }
}

fn convert_sparsity(sp: fb::SparsityParametersT) -> Sparsity {
    Sparsity {
        traversal_order: sp.traversal_order.unwrap_or_default(),
        block_map: sp.block_map.unwrap_or_default(),
        dim_metadata: sp
            .dim_metadata
            .unwrap_or_default()
            .into_iter()
            .map(|d| DimensionMetadata {
                sparse: d.format == fb::DimensionType::SPARSE_CSR,
                dense_size: d.dense_size,
                array_segments: convert_indices(d.array_segments),
                array_indices: convert_indices(d.array_indices),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use octet_core::{DType, Op, Operator, Shape, Subgraph, Tensor, TensorId};

    use super::*;
    use crate::write_model;

    /// A valid two-tensor model, as the schema's object tree, for targeted damage.
    fn valid_tables() -> fb::ModelT {
        let mut model = Model {
            schema_version: 3,
            ..Model::default()
        };
        let weights = model.add_buffer(vec![1, 2, 3, 4]).unwrap();
        let mut sg = Subgraph::default();
        let mut w = Tensor::new("w", DType::Int8, Shape::new(vec![4]));
        w.buffer = weights;
        let w = sg.add_tensor(w).unwrap();
        let x = sg
            .add_tensor(Tensor::new("x", DType::Int8, Shape::new(vec![4])))
            .unwrap();
        let y = sg
            .add_tensor(Tensor::new("y", DType::Int8, Shape::new(vec![4])))
            .unwrap();
        sg.inputs = vec![x];
        sg.outputs = vec![y];
        sg.operators.push(Operator::new(
            Op::Add(Default::default()),
            vec![Some(x), Some(w)],
            vec![y],
        ));
        model.subgraphs.push(sg);
        model.signature_defs.push(SignatureDef {
            key: "serving_default".into(),
            subgraph: 0,
            inputs: vec![SignatureTensor {
                name: "x".into(),
                tensor: TensorId(1),
            }],
            outputs: vec![],
        });
        let bytes = write_model(&model).unwrap();
        fb::root_as_model(&bytes).unwrap().unpack()
    }

    fn pack(tables: &fb::ModelT) -> Vec<u8> {
        let mut fbb = flatbuffers::FlatBufferBuilder::new();
        let root = tables.pack(&mut fbb);
        fb::finish_model_buffer(&mut fbb, root);
        fbb.finished_data().to_vec()
    }

    fn error_of(tables: &fb::ModelT) -> String {
        read_model(&pack(tables)).unwrap_err().to_string()
    }

    fn subgraph(t: &mut fb::ModelT) -> &mut fb::SubGraphT {
        &mut t.subgraphs.as_mut().unwrap()[0]
    }

    #[test]
    fn unpacking_copies_buffers_like_the_generated_code() {
        let mut tables = valid_tables();
        tables.buffers = Some(vec![
            fb::BufferT::default(),
            fb::BufferT {
                data: Some((0..=255u8).collect()),
                ..fb::BufferT::default()
            },
        ]);
        tables.description = Some("d".into());
        tables.metadata_buffer = Some(vec![1]);
        let bytes = pack(&tables);
        let root = fb::root_as_model(&bytes).unwrap();
        assert_eq!(unpack_model(&root), root.unpack());
    }

    #[test]
    fn the_valid_tables_read() {
        assert!(read_model(&pack(&valid_tables())).is_ok());
    }

    #[test]
    fn out_of_range_indices_are_named() {
        let mut t = valid_tables();
        subgraph(&mut t).operators.as_mut().unwrap()[0].opcode_index = 7;
        assert_eq!(
            error_of(&t),
            "invalid TFLite model: subgraph 0, operator 0 uses operator code 7, but the model has 1"
        );

        let mut t = valid_tables();
        subgraph(&mut t).operators.as_mut().unwrap()[0].inputs = Some(vec![1, 4000]);
        assert_eq!(
            error_of(&t),
            "invalid model: tensor (subgraph 0, operator 0) index 4000 is out of range (there are 3)"
        );

        let mut t = valid_tables();
        subgraph(&mut t).outputs = Some(vec![-7]);
        assert_eq!(
            error_of(&t),
            "invalid TFLite model: subgraph 0 output has negative tensor index -7"
        );

        let mut t = valid_tables();
        subgraph(&mut t).tensors.as_mut().unwrap()[0].buffer = u32::MAX;
        assert!(error_of(&t).contains("buffer (subgraph 0, tensor 0) index 4294967295"));

        let mut t = valid_tables();
        t.signature_defs.as_mut().unwrap()[0].subgraph_index = 3;
        assert!(error_of(&t).contains("subgraph (signature 'serving_default') index 3"));

        let mut t = valid_tables();
        t.signature_defs.as_mut().unwrap()[0]
            .inputs
            .as_mut()
            .unwrap()[0]
            .tensor_index = 99;
        assert!(error_of(&t).contains("tensor (signature 'serving_default', 'x') index 99"));
    }

    #[test]
    fn absurd_external_offsets_and_sizes_are_refused() {
        let mut t = valid_tables();
        let buffer = &mut t.buffers.as_mut().unwrap()[1];
        buffer.offset = u64::MAX - 3;
        buffer.size = 1 << 40;
        assert!(error_of(&t).contains("buffer 1 is stored at offset"));

        let mut t = valid_tables();
        let op = &mut subgraph(&mut t).operators.as_mut().unwrap()[0];
        op.large_custom_options_offset = 16;
        op.large_custom_options_size = u64::MAX;
        assert!(error_of(&t).contains("custom options of subgraph 0, operator 0"));
    }

    #[test]
    fn unknown_tensor_types_are_unsupported_not_guessed() {
        let mut t = valid_tables();
        subgraph(&mut t).tensors.as_mut().unwrap()[2].type_ = fb::TensorType(77);
        assert_eq!(
            error_of(&t),
            "unsupported TFLite model: subgraph 0, tensor 2 has unknown type code 77"
        );
    }

    #[test]
    fn absurd_shapes_read_but_have_no_element_count() {
        let mut t = valid_tables();
        subgraph(&mut t).tensors.as_mut().unwrap()[2].shape = Some(vec![i32::MAX; 4]);
        let model = read_model(&pack(&t)).unwrap();
        let y = &model.subgraphs[0].tensors[2];
        assert!(y.shape.num_elements().is_err());
    }

    #[test]
    fn pre_3a_opcodes_use_the_larger_field() {
        // A pre-3a file stores the op only in the byte-sized field.
        let mut t = valid_tables();
        let code = &mut t.operator_codes.as_mut().unwrap()[0];
        code.builtin_code = fb::BuiltinOperator(0);
        code.deprecated_builtin_code = fb::BuiltinOperator::MUL.0 as i8;
        let mut sg = subgraph(&mut t);
        sg.operators.as_mut().unwrap()[0].builtin_options =
            fb::BuiltinOptionsT::MulOptions(Box::default());
        let model = read_model(&pack(&t)).unwrap();
        assert_eq!(
            model.subgraphs[0].operators[0].op,
            Op::Mul {
                activation: octet_core::ActivationFunction::None
            }
        );
        // An op past 127 lives in the wide field, with the byte field saturated.
        let mut t = valid_tables();
        let code = &mut t.operator_codes.as_mut().unwrap()[0];
        code.builtin_code = fb::BuiltinOperator::DILATE;
        code.deprecated_builtin_code = 127;
        sg = subgraph(&mut t);
        sg.operators.as_mut().unwrap()[0].builtin_options = fb::BuiltinOptionsT::NONE;
        let model = read_model(&pack(&t)).unwrap();
        assert!(matches!(
            &model.subgraphs[0].operators[0].op,
            Op::Other(o) if o.builtin_code == fb::BuiltinOperator::DILATE.0
        ));
    }

    #[test]
    fn buffers_stored_after_the_flatbuffer_are_read() {
        // Schema 3c: a model over 2 GiB keeps its weights after the flatbuffer, addressed by
        // absolute offset and size. Build one small enough to test.
        let weights = [9u8, 8, 7, 6];
        let mut t = valid_tables();
        let buffer = &mut t.buffers.as_mut().unwrap()[1];
        buffer.data = None;
        buffer.offset = 2; // placeholder; the field's presence fixes the layout
        buffer.size = weights.len() as u64;
        let flatbuffer_len = pack(&t).len();
        t.buffers.as_mut().unwrap()[1].offset = flatbuffer_len as u64;
        let mut bytes = pack(&t);
        assert_eq!(bytes.len(), flatbuffer_len);
        bytes.extend_from_slice(&weights);

        let model = read_model(&bytes).unwrap();
        assert_eq!(model.buffers[1].data, weights);
        // Written back inline, the tables still compare equal.
        let written = write_model(&model).unwrap();
        assert!(
            crate::table_differences(&bytes, &written)
                .unwrap()
                .is_empty()
        );
        assert_eq!(read_model(&written).unwrap(), model);
    }

    #[test]
    fn not_a_model_is_told_apart_from_a_damaged_one() {
        assert!(matches!(read_model(b"TFL"), Err(TfliteError::NotTflite(_))));
        assert!(matches!(
            read_model(b"\0\0\0\0PK\x03\x04garbage"),
            Err(TfliteError::NotTflite(_))
        ));
        let mut bytes = pack(&valid_tables());
        bytes.truncate(bytes.len() / 2);
        assert!(matches!(read_model(&bytes), Err(TfliteError::Damaged(_))));
    }
}
