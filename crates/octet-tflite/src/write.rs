//! [`Model`] → `.tflite` bytes.

use std::path::Path;

use flatbuffers::FlatBufferBuilder;
use octet_core::{
    Model, Operator, QuantDetails, QuantParams, SparseIndices, Sparsity, Subgraph, Tensor,
};

use crate::TfliteError;
use crate::fb;
use crate::ops::op_to_file;
use crate::types::dtype_to_fb;

/// Alignment of constant data in the written file: enough for any SIMD load and for mmap users.
const BUFFER_ALIGNMENT: usize = 16;

/// flatbuffers cannot address more than 2 GiB; leave room for everything but the weights.
const MAX_INLINE_BYTES: usize = (2 << 30) - (64 << 20);

/// Writes a model to `path` atomically: the file appears complete or not at all, and an existing
/// file is only replaced once the new one is fully written.
pub fn write_file(path: &Path, model: &Model) -> Result<(), TfliteError> {
    let bytes = write_model(model)?;
    octet_core::fs::write_atomic(path, &bytes).map_err(|source| TfliteError::Io {
        action: "cannot write",
        path: path.to_owned(),
        source,
    })
}

/// Serializes a model into `.tflite` bytes (identifier `TFL3`, constant data 16-byte aligned).
///
/// The model is validated first, so a graph pass that left a dangling index is caught here rather
/// than by whoever loads the file.
pub fn write_model(model: &Model) -> Result<Vec<u8>, TfliteError> {
    model.validate()?;
    let weight_bytes: usize = model.buffers.iter().map(|b| b.data.len()).sum();
    if weight_bytes > MAX_INLINE_BYTES {
        return Err(TfliteError::Unsupported(format!(
            "{weight_bytes} bytes of constants: writing models over 2 GiB is not supported yet"
        )));
    }

    // Operator codes, deduplicated in order of first use.
    let mut opcodes: Vec<fb::OperatorCodeT> = Vec::new();
    let mut subgraphs = Vec::with_capacity(model.subgraphs.len());
    for sg in &model.subgraphs {
        subgraphs.push(subgraph_to_file(sg, &mut opcodes)?);
    }

    let mut fbb = FlatBufferBuilder::with_capacity(weight_bytes + (1 << 16));
    // Constant data goes first (it ends up at the end of the file), each vector padded so that
    // its first byte sits on a 16-byte boundary counted from the end of the buffer.
    let buffers: Vec<_> = model
        .buffers
        .iter()
        .map(|b| {
            let data = (!b.data.is_empty()).then(|| {
                let used = fbb.unfinished_data().len();
                let pad = (BUFFER_ALIGNMENT - (used + b.data.len()) % BUFFER_ALIGNMENT)
                    % BUFFER_ALIGNMENT;
                for _ in 0..pad {
                    fbb.push(0u8);
                }
                fbb.create_vector(&b.data)
            });
            fb::Buffer::create(
                &mut fbb,
                &fb::BufferArgs {
                    data,
                    offset: 0,
                    size: 0,
                },
            )
        })
        .collect();
    let buffers = fbb.create_vector(&buffers);

    let opcodes: Vec<_> = opcodes.iter().map(|c| c.pack(&mut fbb)).collect();
    let operator_codes = fbb.create_vector(&opcodes);
    let subgraphs: Vec<_> = subgraphs.iter().map(|s| s.pack(&mut fbb)).collect();
    let subgraphs = fbb.create_vector(&subgraphs);
    let description = model.description.as_deref().map(|d| fbb.create_string(d));
    let metadata_buffer = model.metadata_buffer.as_ref().map(|m| fbb.create_vector(m));
    let metadata: Vec<_> = model
        .metadata
        .iter()
        .map(|m| {
            fb::MetadataT {
                name: Some(m.name.clone()),
                buffer: m.buffer.0,
            }
            .pack(&mut fbb)
        })
        .collect();
    let metadata = (!metadata.is_empty()).then(|| fbb.create_vector(&metadata));
    let signature_defs: Vec<_> = model
        .signature_defs
        .iter()
        .map(|sig| {
            let maps = |list: &[octet_core::SignatureTensor]| {
                Some(
                    list.iter()
                        .map(|st| fb::TensorMapT {
                            name: Some(st.name.clone()),
                            tensor_index: st.tensor.0,
                        })
                        .collect(),
                )
            };
            fb::SignatureDefT {
                inputs: maps(&sig.inputs),
                outputs: maps(&sig.outputs),
                signature_key: Some(sig.key.clone()),
                subgraph_index: sig.subgraph,
            }
            .pack(&mut fbb)
        })
        .collect();
    let signature_defs = (!signature_defs.is_empty()).then(|| fbb.create_vector(&signature_defs));
    let groups: Vec<_> = model
        .external_buffer_groups
        .iter()
        .map(|g| {
            fb::ExternalBufferGroupT {
                name: g.name.clone(),
            }
            .pack(&mut fbb)
        })
        .collect();
    let external_buffer_groups = (!groups.is_empty()).then(|| fbb.create_vector(&groups));
    let externals: Vec<_> = model
        .external_buffers
        .iter()
        .map(|b| {
            fb::ExternalBufferT {
                id: b.id,
                group: b.group,
                offset: b.offset,
                length: b.length,
                packing: b.packing.clone(),
            }
            .pack(&mut fbb)
        })
        .collect();
    let external_buffers = (!externals.is_empty()).then(|| fbb.create_vector(&externals));

    let root = fb::Model::create(
        &mut fbb,
        &fb::ModelArgs {
            version: model.schema_version,
            operator_codes: Some(operator_codes),
            subgraphs: Some(subgraphs),
            description,
            buffers: Some(buffers),
            metadata_buffer,
            metadata,
            signature_defs,
            external_buffer_groups,
            external_buffers,
        },
    );
    fb::finish_model_buffer(&mut fbb, root);
    Ok(align_whole_file(fbb.finished_data()))
}

/// Pads the finished buffer right after its 8-byte header (root offset and identifier) so that
/// its length is a multiple of 16. Everything in a flatbuffer is aligned relative to its end, so
/// this makes the constant data aligned relative to the start of the file too; only the root
/// offset, the one offset that crosses the padding, needs adjusting.
fn align_whole_file(finished: &[u8]) -> Vec<u8> {
    let pad = (BUFFER_ALIGNMENT - finished.len() % BUFFER_ALIGNMENT) % BUFFER_ALIGNMENT;
    let (Some(root), Some(identifier), Some(rest)) =
        (finished.get(0..4), finished.get(4..8), finished.get(8..))
    else {
        return finished.to_vec();
    };
    let mut root_offset = [0u8; 4];
    root_offset.copy_from_slice(root);
    let root_offset = u32::from_le_bytes(root_offset) + pad as u32;
    let mut out = Vec::with_capacity(finished.len() + pad);
    out.extend_from_slice(&root_offset.to_le_bytes());
    out.extend_from_slice(identifier);
    out.resize(8 + pad, 0);
    out.extend_from_slice(rest);
    out
}

fn index_i32(id: u32, what: &str) -> Result<i32, TfliteError> {
    i32::try_from(id)
        .map_err(|_| TfliteError::Unsupported(format!("{what} index {id} exceeds i32")))
}

fn subgraph_to_file(
    sg: &Subgraph,
    opcodes: &mut Vec<fb::OperatorCodeT>,
) -> Result<fb::SubGraphT, TfliteError> {
    let ids = |list: &[octet_core::TensorId]| {
        list.iter()
            .map(|t| index_i32(t.0, "tensor"))
            .collect::<Result<Vec<_>, _>>()
    };
    let operators = sg
        .operators
        .iter()
        .map(|op| operator_to_file(op, opcodes))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(fb::SubGraphT {
        tensors: Some(sg.tensors.iter().map(tensor_to_file).collect()),
        inputs: Some(ids(&sg.inputs)?),
        outputs: Some(ids(&sg.outputs)?),
        operators: Some(operators),
        name: sg.name.clone(),
        debug_metadata_index: sg.debug_metadata_index,
    })
}

fn operator_to_file(
    op: &Operator,
    opcodes: &mut Vec<fb::OperatorCodeT>,
) -> Result<fb::OperatorT, TfliteError> {
    let file = op_to_file(&op.op)?;
    let code = fb::OperatorCodeT {
        // Old readers look only at the byte-sized field; codes past it saturate at 127.
        deprecated_builtin_code: i8::try_from(file.code.0.min(127)).unwrap_or(127),
        custom_code: file.custom_code,
        version: op.version,
        builtin_code: file.code,
    };
    let opcode_index = match opcodes.iter().position(|c| *c == code) {
        Some(i) => i,
        None => {
            opcodes.push(code);
            opcodes.len() - 1
        }
    };
    let inputs = op
        .inputs
        .iter()
        .map(|i| match i {
            Some(t) => index_i32(t.0, "tensor"),
            None => Ok(-1),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ids = |list: &[octet_core::TensorId]| {
        list.iter()
            .map(|t| index_i32(t.0, "tensor"))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(fb::OperatorT {
        opcode_index: u32::try_from(opcode_index)
            .map_err(|_| TfliteError::Unsupported("too many operator codes".into()))?,
        inputs: Some(inputs),
        outputs: Some(ids(&op.outputs)?),
        builtin_options: file.builtin_options,
        custom_options: file.custom_options,
        custom_options_format: file.custom_options_format,
        mutating_variable_inputs: (!op.mutating_variable_inputs.is_empty())
            .then(|| op.mutating_variable_inputs.clone()),
        intermediates: (!op.intermediates.is_empty())
            .then(|| ids(&op.intermediates))
            .transpose()?,
        large_custom_options_offset: 0,
        large_custom_options_size: 0,
        builtin_options_2: file.builtin_options_2,
        debug_metadata_index: op.debug_metadata_index,
    })
}

fn tensor_to_file(t: &Tensor) -> fb::TensorT {
    fb::TensorT {
        shape: Some(t.shape.dims().to_vec()),
        type_: dtype_to_fb(t.dtype),
        buffer: t.buffer.0,
        name: Some(t.name.clone()),
        quantization: t.quant.as_ref().map(|q| Box::new(quant_to_file(q))),
        is_variable: t.is_variable,
        sparsity: t.sparsity.as_ref().map(|s| Box::new(sparsity_to_file(s))),
        shape_signature: t.shape_signature.clone(),
        has_rank: t.has_rank,
        variant_tensors: t.variant_tensors.as_ref().map(|list| {
            list.iter()
                .map(|v| fb::VariantSubTypeT {
                    shape: Some(v.shape.clone()),
                    type_: dtype_to_fb(v.dtype),
                    has_rank: v.has_rank,
                })
                .collect()
        }),
        external_buffer: t.external_buffer,
    }
}

fn quant_to_file(q: &QuantParams) -> fb::QuantizationParametersT {
    let some = |v: &[f32]| (!v.is_empty()).then(|| v.to_vec());
    fb::QuantizationParametersT {
        min: some(&q.min),
        max: some(&q.max),
        scale: some(&q.scale),
        zero_point: (!q.zero_point.is_empty()).then(|| q.zero_point.clone()),
        details: match &q.details {
            None => fb::QuantizationDetailsT::NONE,
            Some(QuantDetails::Custom(bytes)) => {
                fb::QuantizationDetailsT::CustomQuantization(Box::new(fb::CustomQuantizationT {
                    custom: Some(bytes.clone()),
                }))
            }
            Some(QuantDetails::Blockwise {
                scales,
                zero_points,
                block_size,
            }) => fb::QuantizationDetailsT::BlockwiseQuantization(Box::new(
                fb::BlockwiseQuantizationT {
                    scales: *scales,
                    zero_points: *zero_points,
                    block_size: *block_size,
                },
            )),
            Some(QuantDetails::MultiAxis {
                scales,
                zero_points,
                block_size,
                quantized_dimensions,
            }) => fb::QuantizationDetailsT::MultiAxisQuantization(Box::new(
                fb::MultiAxisQuantizationT {
                    scales: *scales,
                    zero_points: *zero_points,
                    block_size: *block_size,
                    quantized_dimensions: Some(quantized_dimensions.clone()),
                },
            )),
        },
        quantized_dimension: q.quantized_dimension,
    }
}

fn indices_to_file(v: &SparseIndices) -> fb::SparseIndexVectorT {
    match v {
        SparseIndices::Absent => fb::SparseIndexVectorT::NONE,
        SparseIndices::I32(v) => fb::SparseIndexVectorT::Int32Vector(Box::new(fb::Int32VectorT {
            values: Some(v.clone()),
        })),
        SparseIndices::U16(v) => {
            fb::SparseIndexVectorT::Uint16Vector(Box::new(fb::Uint16VectorT {
                values: Some(v.clone()),
            }))
        }
        SparseIndices::U8(v) => fb::SparseIndexVectorT::Uint8Vector(Box::new(fb::Uint8VectorT {
            values: Some(v.clone()),
        })),
    }
}

fn sparsity_to_file(s: &Sparsity) -> fb::SparsityParametersT {
    fb::SparsityParametersT {
        traversal_order: Some(s.traversal_order.clone()),
        block_map: (!s.block_map.is_empty()).then(|| s.block_map.clone()),
        dim_metadata: Some(
            s.dim_metadata
                .iter()
                .map(|d| fb::DimensionMetadataT {
                    format: if d.sparse {
                        fb::DimensionType::SPARSE_CSR
                    } else {
                        fb::DimensionType::DENSE
                    },
                    dense_size: d.dense_size,
                    array_segments: indices_to_file(&d.array_segments),
                    array_indices: indices_to_file(&d.array_indices),
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use octet_core::{DType, Op, Operator, Shape, Subgraph, Tensor, TensorId};

    use super::*;

    /// A model with constants of awkward sizes, so padding is needed between them.
    fn model_with_odd_buffers() -> Model {
        let mut model = Model {
            schema_version: 3,
            ..Model::default()
        };
        let mut sg = Subgraph::default();
        for (i, len) in [3usize, 17, 1, 40, 5].into_iter().enumerate() {
            let buffer = model.add_buffer((0..len as u8).collect()).unwrap();
            let mut t = Tensor::new(format!("c{i}"), DType::Int8, Shape::new(vec![len as i32]));
            t.buffer = buffer;
            sg.add_tensor(t).unwrap();
        }
        let x = sg
            .add_tensor(Tensor::new("x", DType::Int8, Shape::new(vec![3])))
            .unwrap();
        let y = sg
            .add_tensor(Tensor::new("y", DType::Int8, Shape::new(vec![3])))
            .unwrap();
        sg.inputs = vec![x];
        sg.outputs = vec![y];
        sg.operators.push(Operator::new(
            Op::Add(Default::default()),
            vec![Some(x), Some(TensorId(0))],
            vec![y],
        ));
        model.subgraphs.push(sg);
        model
    }

    #[test]
    fn constant_data_is_16_byte_aligned_in_the_file() {
        let model = model_with_odd_buffers();
        let bytes = write_model(&model).unwrap();
        assert_eq!(bytes.len() % 16, 0);
        let root = fb::root_as_model(&bytes).unwrap();
        let buffers = root.buffers().unwrap();
        let mut checked = 0;
        for buffer in buffers.iter() {
            if let Some(data) = buffer.data() {
                let offset = data.bytes().as_ptr() as usize - bytes.as_ptr() as usize;
                assert_eq!(offset % 16, 0, "data of {} bytes at {offset}", data.len());
                checked += 1;
            }
        }
        assert_eq!(checked, 5);
        assert_eq!(crate::read_model(&bytes).unwrap(), model);
    }

    #[test]
    fn dangling_indices_are_refused_before_writing() {
        let mut model = model_with_odd_buffers();
        model.subgraphs[0].outputs.push(TensorId(99));
        assert!(matches!(write_model(&model), Err(TfliteError::Core(_))));
    }

    #[test]
    fn atomic_write_leaves_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("octet-write-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.tflite");
        write_file(&path, &model_with_odd_buffers()).unwrap();
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("m.tflite")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
