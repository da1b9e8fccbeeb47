//! One-operator models for the kernels' unit tests: the tensors of a hand-worked case, built
//! into a model with [`octet_core::builder`] and run through the interpreter.

use bytemuck::Pod;
use octet_core::builder::{ModelBuilder, TensorSpec};
use octet_core::{DType, Model, Op, QuantParams};

use crate::{Interpreter, InterpreterOptions, RuntimeError};

/// One tensor of a test operator: a graph input or output, or a constant when it has data.
pub(crate) struct T {
    spec: TensorSpec,
    data: Option<Vec<u8>>,
}

/// A tensor computed at run time (a graph input, or an output).
pub(crate) fn t(dtype: DType, shape: &[usize]) -> T {
    T {
        spec: TensorSpec::new(dtype, shape),
        data: None,
    }
}

impl T {
    /// With per-tensor quantization.
    pub(crate) fn q(mut self, scale: f32, zero_point: i64) -> T {
        self.spec = self.spec.per_tensor(scale, zero_point);
        self
    }

    /// Quantized per channel along `axis`, zero points 0.
    pub(crate) fn per_axis(mut self, scales: &[f32], axis: i32) -> T {
        self.spec = self.spec.per_axis(scales.to_vec(), axis);
        self
    }

    /// With these quantization parameters.
    pub(crate) fn quant(mut self, quant: QuantParams) -> T {
        self.spec = self.spec.quant(quant);
        self
    }

    /// With these quantization parameters, if any.
    pub(crate) fn maybe_quant(self, quant: Option<QuantParams>) -> T {
        match quant {
            Some(quant) => self.quant(quant),
            None => self,
        }
    }

    /// A constant holding these bytes.
    pub(crate) fn data(mut self, bytes: Vec<u8>) -> T {
        self.data = Some(bytes);
        self
    }

    /// A constant holding these values (in the machine's byte order, little-endian on every
    /// target octet runs on).
    pub(crate) fn values<P: Pod>(self, values: &[P]) -> T {
        self.data(bytemuck::cast_slice(values).to_vec())
    }
}

/// Little-endian bytes of `i32` values.
pub(crate) fn i32s(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Little-endian bytes of `f32` values.
pub(crate) fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A model running `op` on `inputs` (the ones without data become graph inputs, in order).
pub(crate) fn model(op: Op, inputs: Vec<T>, outputs: Vec<T>) -> Model {
    model_with_omitted(op, inputs.into_iter().map(Some).collect(), outputs)
}

/// [`model`] where `None` marks an omitted optional input.
pub(crate) fn model_with_omitted(op: Op, inputs: Vec<Option<T>>, outputs: Vec<T>) -> Model {
    let inputs = inputs
        .into_iter()
        .map(|input| input.map(|T { spec, data }| (spec, data)))
        .collect();
    let outputs = outputs.into_iter().map(|output| output.spec).collect();
    let built = ModelBuilder::one_op(op, inputs, outputs);
    built.unwrap_or_else(|e| panic!("the test model is invalid: {e}"))
}

/// Prepares `model`, feeds `inputs` (bytes per graph input) and returns every output's bytes.
pub(crate) fn run(model: &Model, inputs: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, RuntimeError> {
    run_with(model, inputs, InterpreterOptions::default())
}

/// [`run`] with interpreter options (instruction set, threads).
pub(crate) fn run_with(
    model: &Model,
    inputs: &[Vec<u8>],
    options: InterpreterOptions,
) -> Result<Vec<Vec<u8>>, RuntimeError> {
    let mut interpreter = Interpreter::with_options(model, options)?;
    for (i, bytes) in inputs.iter().enumerate() {
        interpreter.set_input(i, bytes)?;
    }
    interpreter.invoke()?;
    (0..interpreter.num_outputs())
        .map(|k| interpreter.output(k).map(<[u8]>::to_vec))
        .collect()
}
