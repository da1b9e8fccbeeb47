//! Building models in code: one-operator models for tests and benchmarks, or small graphs for
//! experiments, without writing flatbuffers by hand.
//!
//! ```
//! use octet_core::builder::{ModelBuilder, TensorSpec};
//! use octet_core::{DType, Op, TensorData};
//!
//! # fn main() -> Result<(), octet_core::CoreError> {
//! let mut b = ModelBuilder::new();
//! let x = b.input(TensorSpec::new(DType::Float32, &[1, 4]))?;
//! let w = b.constant(
//!     TensorSpec::new(DType::Float32, &[2, 4]),
//!     TensorData::F32(vec![0.5; 8]),
//! )?;
//! let y = b.op(Op::FullyConnected(Default::default()), &[Some(x), Some(w), None],
//!     TensorSpec::new(DType::Float32, &[1, 2]))?;
//! b.output(y);
//! let model = b.finish()?;
//! assert_eq!(model.main_subgraph().map(|s| s.operators.len()), Some(1));
//! # Ok(()) }
//! ```

use crate::{
    CoreError, DType, Model, Op, Operator, QuantParams, Shape, Subgraph, Tensor, TensorData,
    TensorId,
};

/// A tensor to add: dtype, shape, optional name and quantization.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    /// Element type.
    pub dtype: DType,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Name (the builder numbers unnamed tensors `t0`, `t1`, ...).
    pub name: Option<String>,
    /// Quantization parameters.
    pub quant: Option<QuantParams>,
}

impl TensorSpec {
    /// A tensor of `dtype` and `shape`, unnamed and not quantized.
    pub fn new(dtype: DType, shape: &[usize]) -> Self {
        TensorSpec {
            dtype,
            shape: shape.to_vec(),
            name: None,
            quant: None,
        }
    }

    /// With a name.
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Quantized per tensor.
    #[must_use]
    pub fn per_tensor(mut self, scale: f32, zero_point: i64) -> Self {
        self.quant = Some(QuantParams::per_tensor(scale, zero_point));
        self
    }

    /// Quantized per channel along `axis` (zero points 0).
    #[must_use]
    pub fn per_axis(mut self, scales: Vec<f32>, axis: i32) -> Self {
        let zero_points = vec![0; scales.len()];
        self.quant = Some(QuantParams::per_axis(scales, zero_points, axis));
        self
    }

    /// With these quantization parameters.
    #[must_use]
    pub fn quant(mut self, quant: QuantParams) -> Self {
        self.quant = Some(quant);
        self
    }
}

/// Builds a model with one subgraph, operator by operator.
#[derive(Debug, Default)]
pub struct ModelBuilder {
    model: Model,
    subgraph: Subgraph,
}

impl ModelBuilder {
    /// An empty model (schema version 3).
    pub fn new() -> Self {
        ModelBuilder {
            model: Model {
                schema_version: 3,
                ..Model::default()
            },
            subgraph: Subgraph::default(),
        }
    }

    fn add(&mut self, spec: TensorSpec, data: Option<Vec<u8>>) -> Result<TensorId, CoreError> {
        let dims = spec
            .shape
            .iter()
            .map(|&d| {
                i32::try_from(d)
                    .map_err(|_| CoreError::IndefiniteShape(format!("{:?}", spec.shape)))
            })
            .collect::<Result<Vec<i32>, _>>()?;
        let name = spec
            .name
            .unwrap_or_else(|| format!("t{}", self.subgraph.tensors.len()));
        let mut tensor = Tensor::new(name, spec.dtype, Shape::new(dims));
        tensor.quant = spec.quant;
        tensor.has_rank = true;
        if let Some(bytes) = data {
            tensor.buffer = self.model.add_buffer(bytes)?;
        }
        self.subgraph.add_tensor(tensor)
    }

    /// Adds a graph input.
    pub fn input(&mut self, spec: TensorSpec) -> Result<TensorId, CoreError> {
        let id = self.add(spec, None)?;
        self.subgraph.inputs.push(id);
        Ok(id)
    }

    /// Adds a constant holding `data` (encoded little-endian; its length must fit the shape
    /// when the model is run, not here).
    pub fn constant(&mut self, spec: TensorSpec, data: TensorData) -> Result<TensorId, CoreError> {
        self.add(spec, Some(data.to_le_bytes()))
    }

    /// Adds a constant from raw little-endian bytes.
    pub fn constant_bytes(
        &mut self,
        spec: TensorSpec,
        bytes: Vec<u8>,
    ) -> Result<TensorId, CoreError> {
        self.add(spec, Some(bytes))
    }

    /// Adds an operator with one output and returns the output.
    pub fn op(
        &mut self,
        op: Op,
        inputs: &[Option<TensorId>],
        output: TensorSpec,
    ) -> Result<TensorId, CoreError> {
        Ok(self.op_multi(op, inputs, vec![output])?[0])
    }

    /// Adds an operator with several outputs and returns them.
    pub fn op_multi(
        &mut self,
        op: Op,
        inputs: &[Option<TensorId>],
        outputs: Vec<TensorSpec>,
    ) -> Result<Vec<TensorId>, CoreError> {
        let outputs = outputs
            .into_iter()
            .map(|spec| self.add(spec, None))
            .collect::<Result<Vec<_>, _>>()?;
        self.subgraph
            .operators
            .push(Operator::new(op, inputs.to_vec(), outputs.clone()));
        Ok(outputs)
    }

    /// Marks `tensor` as a graph output.
    pub fn output(&mut self, tensor: TensorId) {
        self.subgraph.outputs.push(tensor);
    }

    /// The model, validated.
    pub fn finish(mut self) -> Result<Model, CoreError> {
        self.model.subgraphs.push(self.subgraph);
        self.model.validate()?;
        Ok(self.model)
    }

    /// A model running `op` once: constants are the inputs given with data, the others become
    /// graph inputs in order; `None` marks an omitted optional input.
    pub fn one_op(
        op: Op,
        inputs: Vec<Option<(TensorSpec, Option<Vec<u8>>)>>,
        outputs: Vec<TensorSpec>,
    ) -> Result<Model, CoreError> {
        let mut b = ModelBuilder::new();
        let mut ids = Vec::with_capacity(inputs.len());
        for input in inputs {
            ids.push(match input {
                None => None,
                Some((spec, Some(bytes))) => Some(b.constant_bytes(spec, bytes)?),
                Some((spec, None)) => Some(b.input(spec)?),
            });
        }
        let outs = b.op_multi(op, &ids, outputs)?;
        for out in outs {
            b.output(out);
        }
        b.finish()
    }
}
