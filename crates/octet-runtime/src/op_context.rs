//! What a kernel sees: [`OpContext`] while it is prepared, [`OpIo`] while it runs.

use std::fmt::Display;

use octet_core::{Model, Operator, TensorData, TensorId};

use octet_linalg::Isa;

use crate::io::Slot;
use crate::{OpIo, RuntimeError, TensorInfo};

/// A prepared kernel for one operator.
///
/// Everything that depends only on the model (quantized multipliers, transposed or
/// pre-processed weights, scratch buffers) is computed when the kernel is built; `eval` only
/// computes, and must not allocate.
pub trait Kernel: Send {
    /// Runs the operator on its current inputs, writing its outputs.
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError>;

    /// Bytes of the interpreter's shared scratch memory `eval` needs ([`OpIo::parts`]).
    fn scratch_bytes(&self) -> usize {
        0
    }
}

/// One operator and its tensors, as the kernel builders see them at prepare time.
pub struct OpContext<'a> {
    pub(crate) model: &'a Model,
    pub(crate) operator: &'a Operator,
    pub(crate) index: usize,
    pub(crate) tensors: &'a [TensorInfo],
    pub(crate) subgraph: &'a octet_core::Subgraph,
    pub(crate) isa: Isa,
    /// The constant store and every tensor's slot, once operators that only turn constants
    /// into constants (fp16 weights' DEQUANTIZE) have been folded into it: their outputs are
    /// constants too.
    pub(crate) folded: Option<(&'a [Slot], &'a [u8])>,
    /// Padding a PAD fused into this operator adds around its input 0 (see `fusion`).
    pub(crate) padding: Option<crate::fusion::SpatialPadding>,
    /// The element-wise operator fused into this operator's output (see `fusion`).
    pub(crate) fused_output: Option<crate::fusion::FusedOutput>,
    /// The tensors the fused output stage passes through: the operator's own output first.
    pub(crate) intermediates: &'a [TensorId],
    /// The threads the interpreter runs kernels on.
    pub(crate) threads: usize,
}

impl<'a> OpContext<'a> {
    /// The instruction set whose micro-kernels the kernel should use.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Padding around input 0 that a PAD fused into this operator adds (the operator reads the
    /// PAD's input and pads it as the PAD did, as part of its own padding): only convolutions
    /// get one.
    pub fn fused_padding(&self) -> Option<crate::fusion::SpatialPadding> {
        self.padding
    }

    /// The element-wise operator fused into this operator's output stage, if any: its result
    /// is this operator's output 0, its other operand input 3. Run without input 3 (while
    /// observed), the operator computes its own output.
    pub fn fused_output(&self) -> Option<crate::fusion::FusedOutput> {
        self.fused_output
    }

    /// The operator.
    pub fn operator(&self) -> &'a Operator {
        self.operator
    }

    /// Its index in the subgraph.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Tensor `k` the fused output stage passes through: 0 is the operator's own output, 1 the
    /// sum of a fused ADD that a PRELU reads.
    pub fn fused_intermediate(&self, k: usize) -> Result<&'a TensorInfo, RuntimeError> {
        match self.intermediates.get(k) {
            Some(&id) => self.info(id),
            None => Err(self.invalid(format!("fused tensor {k} is missing"))),
        }
    }

    /// The output the operator computes itself: output 0, or with a fused output stage the
    /// tensor that stage reads (output 0 is then the stage's result).
    pub fn own_output(&self) -> Result<&'a TensorInfo, RuntimeError> {
        if self.intermediates.is_empty() {
            self.output(0)
        } else {
            self.fused_intermediate(0)
        }
    }

    /// How many threads the kernels run on (scratch memory may be needed per thread).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The op's TFLite name.
    pub fn op_name(&self) -> String {
        self.operator.op.name().into_owned()
    }

    /// Number of inputs, counting omitted optional ones.
    pub fn num_inputs(&self) -> usize {
        self.operator.inputs.len()
    }

    /// Number of outputs.
    pub fn num_outputs(&self) -> usize {
        self.operator.outputs.len()
    }

    fn info(&self, id: TensorId) -> Result<&'a TensorInfo, RuntimeError> {
        self.tensors
            .get(id.index())
            .ok_or_else(|| self.invalid(format!("tensor {} does not exist", id.0)))
    }

    /// Input `i`; an error if it is missing or omitted.
    pub fn input(&self, i: usize) -> Result<&'a TensorInfo, RuntimeError> {
        match self.operator.inputs.get(i) {
            Some(Some(id)) => self.info(*id),
            _ => Err(self.invalid(format!("input {i} is missing"))),
        }
    }

    /// Input `i` if present (optional inputs such as a bias may be omitted).
    pub fn optional_input(&self, i: usize) -> Option<&'a TensorInfo> {
        match self.operator.inputs.get(i) {
            Some(Some(id)) => self.tensors.get(id.index()),
            _ => None,
        }
    }

    /// Output `i`.
    pub fn output(&self, i: usize) -> Result<&'a TensorInfo, RuntimeError> {
        match self.operator.outputs.get(i) {
            Some(id) => self.info(*id),
            None => Err(self.invalid(format!("output {i} is missing"))),
        }
    }

    /// True when input `i` is a constant (its data is in the model, or was computed from
    /// constants when the model was prepared).
    pub fn is_constant(&self, i: usize) -> bool {
        self.constant_tensor(i).is_some() || self.folded_slot(i).is_some()
    }

    /// The constant-store slot of input `i` when it was folded at prepare time.
    fn folded_slot(&self, i: usize) -> Option<(usize, usize)> {
        let id = (*self.operator.inputs.get(i)?)?;
        match self.folded?.0.get(id.index())? {
            &Slot::Constant { offset, len } => Some((offset, len)),
            _ => None,
        }
    }

    fn constant_tensor(&self, i: usize) -> Option<&'a octet_core::Tensor> {
        let id = (*self.operator.inputs.get(i)?)?;
        let tensor = self.subgraph.tensor(id)?;
        self.model.tensor_bytes(tensor).map(|_| tensor)
    }

    /// The decoded data of constant input `i` (in the model, or computed from constants when
    /// the model was prepared), `None` if the input is computed at run time.
    pub fn constant(&self, i: usize) -> Result<Option<TensorData>, RuntimeError> {
        match self.constant_tensor(i) {
            None => self.folded_constant(i),
            Some(tensor) => self
                .model
                .tensor_data(tensor)
                .map_err(|e| self.invalid(format!("constant input {i}: {e}"))),
        }
    }

    /// Input `i` as the output of an operator folded at prepare time, if it is one.
    fn folded_constant(&self, i: usize) -> Result<Option<TensorData>, RuntimeError> {
        let (Some(Some(id)), Some((slots, store))) = (self.operator.inputs.get(i), self.folded)
        else {
            return Ok(None);
        };
        let (Some(&Slot::Constant { offset, len }), Some(info)) =
            (slots.get(id.index()), self.tensors.get(id.index()))
        else {
            return Ok(None);
        };
        let bytes = offset
            .checked_add(len)
            .and_then(|end| store.get(offset..end))
            .ok_or_else(|| self.invalid(format!("folded input {i} lies outside the store")))?;
        TensorData::decode(info.dtype, info.num_elements(), bytes)
            .map(Some)
            .map_err(|e| self.invalid(format!("folded input {i}: {e}")))
    }

    /// Constant integer input `i` (int32 or int64: shapes, axes, paddings, permutations) as
    /// `i64`; an error if it is not a constant integer tensor.
    pub fn constant_ints(&self, i: usize) -> Result<Vec<i64>, RuntimeError> {
        match self.constant(i)? {
            Some(TensorData::I32(v)) => Ok(v.into_iter().map(i64::from).collect()),
            Some(TensorData::I64(v)) => Ok(v),
            Some(_) => Err(self.invalid(format!("input {i} must be int32 or int64"))),
            None => Err(self.unsupported(format!(
                "input {i} is computed at run time; octet needs it to be a constant"
            ))),
        }
    }

    /// An "unsupported" error naming this operator.
    pub fn unsupported(&self, detail: impl Display) -> RuntimeError {
        RuntimeError::Unsupported {
            index: self.index,
            op: self.op_name(),
            detail: detail.to_string(),
        }
    }

    /// An "invalid model" error naming this operator.
    pub fn invalid(&self, detail: impl Display) -> RuntimeError {
        RuntimeError::InvalidOp {
            index: self.index,
            op: self.op_name(),
            detail: detail.to_string(),
        }
    }

    /// The standard "this dtype flavour is not supported" error.
    pub fn unsupported_types(&self) -> RuntimeError {
        let dtypes = |infos: Vec<Option<&TensorInfo>>| {
            infos
                .into_iter()
                .map(|t| t.map_or("-", |t| t.dtype.name()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let inputs = dtypes(
            (0..self.num_inputs())
                .map(|i| self.optional_input(i))
                .collect(),
        );
        let outputs = dtypes(
            (0..self.num_outputs())
                .map(|i| self.output(i).ok())
                .collect(),
        );
        self.unsupported(format!(
            "no kernel for inputs ({inputs}) and outputs ({outputs})"
        ))
    }
}
