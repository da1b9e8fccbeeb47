//! The graph IR: a model holds buffers and subgraphs; a subgraph holds tensors and operators that
//! refer to tensors by index.
//!
//! Indices mirror the file format so that reading and writing keep every table as it was; the
//! editing helpers ([`Model::add_buffer`], [`Subgraph::add_tensor`], [`Subgraph::insert_operator`],
//! [`Subgraph::replace_input_uses`]) keep them consistent when passes rewrite a graph, and
//! [`Model::validate`] checks them all.

use crate::{CoreError, DType, Op, QuantParams, Shape, TensorData};

/// Index of a buffer in [`Model::buffers`]. Buffer 0 is, by convention, the empty buffer that
/// tensors without constant data point to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct BufferId(pub u32);

/// Index of a tensor in [`Subgraph::tensors`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(pub u32);

impl BufferId {
    /// The buffer index as a `usize`.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl TensorId {
    /// The tensor index as a `usize`.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Raw constant data, little-endian, as the file stores it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Buffer {
    /// The bytes (empty for tensors computed at run time).
    pub data: Vec<u8>,
}

/// A named pointer from the model to a buffer holding metadata (e.g. `min_runtime_version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// The metadata's name.
    pub name: String,
    /// The buffer that holds it.
    pub buffer: BufferId,
}

/// One named input or output of a signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureTensor {
    /// The name callers use.
    pub name: String,
    /// The tensor in the signature's subgraph.
    pub tensor: TensorId,
}

/// A named entry point into a subgraph (TensorFlow's SignatureDef).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureDef {
    /// The signature's key, e.g. `serving_default`.
    pub key: String,
    /// The subgraph it runs.
    pub subgraph: u32,
    /// Named inputs.
    pub inputs: Vec<SignatureTensor>,
    /// Named outputs.
    pub outputs: Vec<SignatureTensor>,
}

/// A group of weight buffers stored in a file next to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalBufferGroup {
    /// The group's file or URI.
    pub name: Option<String>,
}

/// A slice of an external file that holds one tensor's constant data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalBuffer {
    /// Unique id, referenced by [`Tensor::external_buffer`].
    pub id: u32,
    /// Index into [`Model::external_buffer_groups`].
    pub group: u32,
    /// Byte offset in the group's file.
    pub offset: u64,
    /// Byte length.
    pub length: u64,
    /// How the bytes are packed, if specially.
    pub packing: Option<String>,
}

/// Index metadata of one dimension of a sparse tensor, in traversal order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DimensionMetadata {
    /// True for a compressed (CSR) dimension, false for a dense one.
    pub sparse: bool,
    /// Size of a dense dimension.
    pub dense_size: i32,
    /// For a sparse dimension: segment boundaries into `array_indices`, one segment per element
    /// of the previous dimension.
    pub array_segments: SparseIndices,
    /// For a sparse dimension: the coordinates present.
    pub array_indices: SparseIndices,
}

/// A vector of sparse indices with the integer width the file chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SparseIndices {
    /// No vector stored.
    Absent,
    /// int32 entries.
    I32(Vec<i32>),
    /// uint16 entries.
    U16(Vec<u16>),
    /// uint8 entries.
    U8(Vec<u8>),
}

impl SparseIndices {
    /// The entries widened to `i64`.
    pub fn to_i64(&self) -> Vec<i64> {
        match self {
            SparseIndices::Absent => Vec::new(),
            SparseIndices::I32(v) => v.iter().map(|&x| i64::from(x)).collect(),
            SparseIndices::U16(v) => v.iter().map(|&x| i64::from(x)).collect(),
            SparseIndices::U8(v) => v.iter().map(|&x| i64::from(x)).collect(),
        }
    }
}

/// How a sparse constant tensor is encoded (TFLite's variant of the TACO format).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sparsity {
    /// Order in which the dense dimensions (then block dimensions) are traversed.
    pub traversal_order: Vec<i32>,
    /// For each block dimension, the dense dimension it subdivides.
    pub block_map: Vec<i32>,
    /// Per traversed dimension, its format and indices.
    pub dim_metadata: Vec<DimensionMetadata>,
}

/// The element type of a tensor nested in a VARIANT tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantSubType {
    /// Its shape.
    pub shape: Vec<i32>,
    /// Its dtype.
    pub dtype: DType,
    /// Whether the rank is known.
    pub has_rank: bool,
}

/// A tensor: a typed, shaped value, constant when its buffer holds data.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Name (for people and for matching tensors across models).
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Static shape.
    pub shape: Shape,
    /// Shape with -1 for dimensions unknown at conversion time, if recorded.
    pub shape_signature: Option<Vec<i32>>,
    /// Buffer holding constant data (buffer 0 or an empty buffer: none).
    pub buffer: BufferId,
    /// Quantization parameters, if the tensor has any.
    pub quant: Option<QuantParams>,
    /// A variable (state that persists across invocations).
    pub is_variable: bool,
    /// Sparse encoding of the constant data, if sparse.
    pub sparsity: Option<Sparsity>,
    /// Whether the rank is known (distinguishes scalars from unknown rank).
    pub has_rank: bool,
    /// Nested types of a VARIANT tensor.
    pub variant_tensors: Option<Vec<VariantSubType>>,
    /// Id of an [`ExternalBuffer`] holding the data, 0 for none.
    pub external_buffer: u32,
}

impl Tensor {
    /// A plain tensor with no data, quantization or other extras.
    pub fn new(name: impl Into<String>, dtype: DType, shape: Shape) -> Self {
        Tensor {
            name: name.into(),
            dtype,
            shape,
            shape_signature: None,
            buffer: BufferId(0),
            quant: None,
            is_variable: false,
            sparsity: None,
            has_rank: false,
            variant_tensors: None,
            external_buffer: 0,
        }
    }

    /// The tensor's per-tensor `(scale, zero_point)`, if it is quantized per tensor.
    pub fn single_quant(&self) -> Option<(f32, i64)> {
        self.quant.as_ref().and_then(QuantParams::single)
    }
}

/// One operator: an op applied to input tensors, producing output tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct Operator {
    /// What it computes, with options.
    pub op: Op,
    /// The op version (which kernel features it needs), as recorded in the model.
    pub version: i32,
    /// Input tensors; `None` marks an omitted optional input (-1 in the file).
    pub inputs: Vec<Option<TensorId>>,
    /// Output tensors.
    pub outputs: Vec<TensorId>,
    /// Tensors internal to the op (e.g. LSTM gate intermediates).
    pub intermediates: Vec<TensorId>,
    /// Which inputs the op mutates (empty: none).
    pub mutating_variable_inputs: Vec<bool>,
    /// Index into debug metadata, -1 for none.
    pub debug_metadata_index: i32,
}

impl Operator {
    /// An operator with version 1 and no extras.
    pub fn new(op: Op, inputs: Vec<Option<TensorId>>, outputs: Vec<TensorId>) -> Self {
        Operator {
            op,
            version: 1,
            inputs,
            outputs,
            intermediates: Vec::new(),
            mutating_variable_inputs: Vec::new(),
            debug_metadata_index: -1,
        }
    }

    /// The present input tensors, skipping omitted optional inputs.
    pub fn present_inputs(&self) -> impl Iterator<Item = TensorId> + '_ {
        self.inputs.iter().flatten().copied()
    }
}

/// A graph of operators over tensors; subgraph 0 is the main model.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Subgraph {
    /// Name, if any.
    pub name: Option<String>,
    /// All tensors of the subgraph.
    pub tensors: Vec<Tensor>,
    /// Graph inputs.
    pub inputs: Vec<TensorId>,
    /// Graph outputs.
    pub outputs: Vec<TensorId>,
    /// Operators in execution order.
    pub operators: Vec<Operator>,
    /// Index into debug metadata, -1 for none.
    pub debug_metadata_index: i32,
}

impl Subgraph {
    /// The tensor with this id, if it exists.
    pub fn tensor(&self, id: TensorId) -> Option<&Tensor> {
        self.tensors.get(id.index())
    }

    /// The tensor with this id, mutably, if it exists.
    pub fn tensor_mut(&mut self, id: TensorId) -> Option<&mut Tensor> {
        self.tensors.get_mut(id.index())
    }

    /// Appends a tensor and returns its id.
    pub fn add_tensor(&mut self, tensor: Tensor) -> Result<TensorId, CoreError> {
        let id = u32::try_from(self.tensors.len())
            .map_err(|_| CoreError::Invalid("too many tensors".into()))?;
        self.tensors.push(tensor);
        Ok(TensorId(id))
    }

    /// Inserts an operator at `position` in execution order (clamped to the end).
    pub fn insert_operator(&mut self, position: usize, operator: Operator) {
        let position = position.min(self.operators.len());
        self.operators.insert(position, operator);
    }

    /// Index of the operator that produces `tensor`, if one does.
    pub fn producer(&self, tensor: TensorId) -> Option<usize> {
        self.operators
            .iter()
            .position(|op| op.outputs.contains(&tensor))
    }

    /// Indices of the operators that read `tensor`.
    pub fn consumers(&self, tensor: TensorId) -> Vec<usize> {
        self.operators
            .iter()
            .enumerate()
            .filter(|(_, op)| op.inputs.contains(&Some(tensor)))
            .map(|(i, _)| i)
            .collect()
    }

    /// Makes every operator input (from operator index `from_operator` on) and every graph
    /// output that reads `old` read `new` instead. Returns how many uses changed.
    pub fn replace_input_uses(
        &mut self,
        old: TensorId,
        new: TensorId,
        from_operator: usize,
    ) -> usize {
        let mut changed = 0;
        for op in self.operators.iter_mut().skip(from_operator) {
            for input in op.inputs.iter_mut().filter(|i| **i == Some(old)) {
                *input = Some(new);
                changed += 1;
            }
        }
        for output in self.outputs.iter_mut().filter(|o| **o == old) {
            *output = new;
            changed += 1;
        }
        changed
    }
}

/// A whole model: buffers, subgraphs, signatures and metadata.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Model {
    /// Schema version the model declares (3 for current TFLite files).
    pub schema_version: u32,
    /// Free-text description (converters write their name here).
    pub description: Option<String>,
    /// Constant data; tensors and metadata refer to it by [`BufferId`].
    pub buffers: Vec<Buffer>,
    /// Subgraphs; 0 is the main one.
    pub subgraphs: Vec<Subgraph>,
    /// Named metadata entries.
    pub metadata: Vec<Metadata>,
    /// The deprecated list of metadata buffer indices, if present.
    pub metadata_buffer: Option<Vec<i32>>,
    /// Signature definitions (named entry points).
    pub signature_defs: Vec<SignatureDef>,
    /// Groups of weight files stored next to the model.
    pub external_buffer_groups: Vec<ExternalBufferGroup>,
    /// Slices of those files.
    pub external_buffers: Vec<ExternalBuffer>,
}

impl Model {
    /// The main subgraph, if the model has one.
    pub fn main_subgraph(&self) -> Option<&Subgraph> {
        self.subgraphs.first()
    }

    /// Appends a buffer and returns its id.
    pub fn add_buffer(&mut self, data: Vec<u8>) -> Result<BufferId, CoreError> {
        if self.buffers.is_empty() {
            // Keep the convention that buffer 0 is the empty sentinel.
            self.buffers.push(Buffer::default());
        }
        let id = u32::try_from(self.buffers.len())
            .map_err(|_| CoreError::Invalid("too many buffers".into()))?;
        self.buffers.push(Buffer { data });
        Ok(BufferId(id))
    }

    /// The constant bytes of a tensor, `None` if it has none.
    pub fn tensor_bytes(&self, tensor: &Tensor) -> Option<&[u8]> {
        self.buffers
            .get(tensor.buffer.index())
            .map(|b| b.data.as_slice())
            .filter(|d| !d.is_empty())
    }

    /// The constant data of a dense tensor decoded by its dtype and shape, `Ok(None)` if it has
    /// none, an error if the bytes do not fit the shape.
    pub fn tensor_data(&self, tensor: &Tensor) -> Result<Option<TensorData>, CoreError> {
        let Some(bytes) = self.tensor_bytes(tensor) else {
            return Ok(None);
        };
        let elements = tensor.shape.num_elements()?;
        TensorData::decode(tensor.dtype, elements, bytes).map(Some)
    }

    /// Checks every index in the model: tensors, buffers, subgraphs, signature tensors.
    /// Readers call this before handing out a model and writers before writing one.
    pub fn validate(&self) -> Result<(), CoreError> {
        let buffers = self.buffers.len();
        let check_buffer = |what: &dyn Fn() -> String, id: BufferId| {
            if id.index() < buffers || (id.0 == 0) {
                Ok(())
            } else {
                Err(CoreError::IndexOutOfRange {
                    what: what(),
                    index: i64::from(id.0),
                    len: buffers,
                })
            }
        };
        for (m, meta) in self.metadata.iter().enumerate() {
            check_buffer(
                &|| format!("buffer (metadata {m} '{}')", meta.name),
                meta.buffer,
            )?;
        }
        for (s, sg) in self.subgraphs.iter().enumerate() {
            let tensors = sg.tensors.len();
            let check_tensor = |what: &dyn Fn() -> String, id: TensorId| {
                if id.index() < tensors {
                    Ok(())
                } else {
                    Err(CoreError::IndexOutOfRange {
                        what: what(),
                        index: i64::from(id.0),
                        len: tensors,
                    })
                }
            };
            for (t, tensor) in sg.tensors.iter().enumerate() {
                check_buffer(
                    &|| format!("buffer (subgraph {s}, tensor {t})"),
                    tensor.buffer,
                )?;
            }
            for &id in &sg.inputs {
                check_tensor(&|| format!("tensor (subgraph {s} input)"), id)?;
            }
            for &id in &sg.outputs {
                check_tensor(&|| format!("tensor (subgraph {s} output)"), id)?;
            }
            for (o, op) in sg.operators.iter().enumerate() {
                let all = op
                    .present_inputs()
                    .chain(op.outputs.iter().copied())
                    .chain(op.intermediates.iter().copied());
                for id in all {
                    check_tensor(&|| format!("tensor (subgraph {s}, operator {o})"), id)?;
                }
            }
        }
        for sig in &self.signature_defs {
            let Some(sg) = self.subgraphs.get(sig.subgraph as usize) else {
                return Err(CoreError::IndexOutOfRange {
                    what: format!("subgraph (signature '{}')", sig.key),
                    index: i64::from(sig.subgraph),
                    len: self.subgraphs.len(),
                });
            };
            for st in sig.inputs.iter().chain(&sig.outputs) {
                if st.tensor.index() >= sg.tensors.len() {
                    return Err(CoreError::IndexOutOfRange {
                        what: format!("tensor (signature '{}', '{}')", sig.key, st.name),
                        index: i64::from(st.tensor.0),
                        len: sg.tensors.len(),
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_op_model() -> Model {
        let mut model = Model {
            schema_version: 3,
            ..Model::default()
        };
        let mut sg = Subgraph::default();
        let x = sg
            .add_tensor(Tensor::new("x", DType::Float32, Shape::new(vec![1, 4])))
            .unwrap();
        let y = sg
            .add_tensor(Tensor::new("y", DType::Float32, Shape::new(vec![1, 4])))
            .unwrap();
        let z = sg
            .add_tensor(Tensor::new("z", DType::Float32, Shape::new(vec![1, 4])))
            .unwrap();
        sg.inputs = vec![x];
        sg.outputs = vec![z];
        sg.operators
            .push(Operator::new(Op::Relu, vec![Some(x)], vec![y]));
        sg.operators
            .push(Operator::new(Op::Tanh, vec![Some(y)], vec![z]));
        model.subgraphs.push(sg);
        model
    }

    #[test]
    fn inserting_an_op_and_rewiring_keeps_the_graph_valid() {
        let mut model = two_op_model();
        let weights = model.add_buffer(vec![0; 16]).unwrap();
        assert_eq!(weights, BufferId(1), "buffer 0 stays the empty sentinel");
        let sg = &mut model.subgraphs[0];
        let y = TensorId(1);
        let mut q = Tensor::new("y_q", DType::Int8, Shape::new(vec![1, 4]));
        q.quant = Some(QuantParams::per_tensor(0.1, -3));
        let yq = sg.add_tensor(q).unwrap();
        assert_eq!(sg.consumers(y), vec![1]);
        sg.insert_operator(1, Operator::new(Op::Quantize, vec![Some(y)], vec![yq]));
        assert_eq!(sg.replace_input_uses(y, yq, 2), 1);
        assert_eq!(sg.consumers(yq), vec![2]);
        assert_eq!(sg.producer(yq), Some(1));
        model.validate().unwrap();
    }

    #[test]
    fn validate_names_the_bad_index() {
        let mut model = two_op_model();
        model.subgraphs[0].operators[1].inputs[0] = Some(TensorId(7));
        let err = model.validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "tensor (subgraph 0, operator 1) index 7 is out of range (there are 3)"
        );
        let mut model = two_op_model();
        model.subgraphs[0].tensors[0].buffer = BufferId(3);
        assert!(model.validate().is_err());
    }

    #[test]
    fn tensor_data_decodes_constants() {
        let mut model = two_op_model();
        let bytes: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let id = model.add_buffer(bytes).unwrap();
        let mut t = Tensor::new("w", DType::Float32, Shape::new(vec![2, 2]));
        t.buffer = id;
        assert_eq!(
            model.tensor_data(&t).unwrap(),
            Some(TensorData::F32(vec![1.0, 2.0, 3.0, 4.0]))
        );
        t.shape = Shape::new(vec![3, 2]);
        assert!(model.tensor_data(&t).is_err());
    }
}
