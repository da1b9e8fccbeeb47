//! Graph passes every quantization mode shares: folding constant DEQUANTIZE and DENSIFY ops into
//! plain float constants, finding the weight inputs of ops, and removing the tensors and buffers
//! a rewrite orphaned.
//!
//! The folding passes run the op once through octet-runtime's own kernel (on a one-op model), so
//! a folded constant holds exactly what LiteRT's DEQUANTIZE/DENSIFY would have computed at run
//! time.

use std::collections::HashMap;

use half::f16;
use half::slice::HalfFloatSliceExt;
use octet_core::{
    ActivationFunction, Buffer, BufferId, DType, Model, Op, Operator, QuantDetails, Subgraph,
    Tensor, TensorId,
};
use octet_runtime::Interpreter;

use crate::QuantError;

/// Where an op reads a constant weight, and how TFLite quantizes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightInput {
    /// Index of the input in the operator's input list.
    pub input: usize,
    /// What the input is.
    pub role: WeightRole,
}

/// The role of a weight input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightRole {
    /// A filter or weight matrix, quantized per channel along `axis` (`None`: per tensor).
    Weights {
        /// The per-channel axis TFLite's kernels expect, if they take per-channel weights.
        axis: Option<usize>,
    },
    /// A bias, added to the accumulator (int32 in full-integer modes).
    Bias,
}

/// The weight and bias inputs of `op`, by TFLite's input layout: CONV_2D, FULLY_CONNECTED and
/// TRANSPOSE_CONV weights per channel on axis 0, DEPTHWISE_CONV_2D on axis 3, BATCH_MATMUL's
/// right operand per tensor. Ops without weights give an empty list. Whether the inputs are
/// actually constant is for the caller to check ([`float_constant`]).
pub fn weight_inputs(op: &Op) -> Vec<WeightInput> {
    crate::spec::spec(op, false).weights
}

/// True when the tensor holds constant data (a non-empty buffer, not a variable).
pub fn is_constant(model: &Model, tensor: &Tensor) -> bool {
    !tensor.is_variable && model.tensor_bytes(tensor).is_some()
}

/// The values of a dense float32 constant, `Ok(None)` when the tensor is not one (not float32,
/// not constant, sparse or quantized); an error when its bytes do not fit its shape.
pub fn float_constant(model: &Model, tensor: &Tensor) -> Result<Option<Vec<f32>>, QuantError> {
    if tensor.dtype != DType::Float32
        || tensor.sparsity.is_some()
        || tensor.quant.as_ref().is_some_and(|q| !q.is_empty())
        || !is_constant(model, tensor)
    {
        return Ok(None);
    }
    match model.tensor_data(tensor) {
        Ok(Some(data)) => Ok(Some(data.to_f32())),
        Ok(None) => Ok(None),
        Err(e) => Err(QuantError::Unsupported(format!(
            "constant tensor '{}': {e}",
            tensor.name
        ))),
    }
}

/// Bytes of constant data the model's tensors refer to (every buffer counted once; metadata
/// buffers excluded).
pub fn constant_bytes(model: &Model) -> usize {
    let mut seen = vec![false; model.buffers.len()];
    let mut total = 0;
    for tensor in model.subgraphs.iter().flat_map(|sg| &sg.tensors) {
        let i = tensor.buffer.index();
        if let (Some(flag), Some(buffer)) = (seen.get_mut(i), model.buffers.get(i))
            && !*flag
        {
            *flag = true;
            total += buffer.data.len();
        }
    }
    total
}

/// Runs one operator whose inputs are all constants through octet-runtime and returns its
/// single output's bytes.
fn evaluate_constant_op(
    model: &Model,
    sg: &Subgraph,
    operator: &Operator,
) -> Result<Vec<u8>, QuantError> {
    let name = operator.op.name().into_owned();
    let err = |what: String| QuantError::Unsupported(format!("folding {name}: {what}"));
    let [out] = operator.outputs.as_slice() else {
        return Err(err("it has more than one output".into()));
    };
    let mut mini = Model {
        schema_version: 3,
        buffers: vec![Buffer::default()],
        ..Model::default()
    };
    let mut mini_sg = Subgraph::default();
    let mut inputs = Vec::new();
    for input in &operator.inputs {
        let Some(id) = input else {
            inputs.push(None);
            continue;
        };
        let tensor = sg
            .tensor(*id)
            .ok_or_else(|| err(format!("input tensor {} does not exist", id.0)))?;
        let bytes = model
            .tensor_bytes(tensor)
            .ok_or_else(|| err(format!("input '{}' is not a constant", tensor.name)))?;
        let mut copy = tensor.clone();
        copy.buffer = mini
            .add_buffer(bytes.to_vec())
            .map_err(|e| err(e.to_string()))?;
        copy.external_buffer = 0;
        inputs.push(Some(
            mini_sg.add_tensor(copy).map_err(|e| err(e.to_string()))?,
        ));
    }
    let mut out_tensor = sg
        .tensor(*out)
        .ok_or_else(|| err(format!("output tensor {} does not exist", out.0)))?
        .clone();
    out_tensor.buffer = BufferId(0);
    let out_id = mini_sg
        .add_tensor(out_tensor)
        .map_err(|e| err(e.to_string()))?;
    let mut op = Operator::new(operator.op.clone(), inputs, vec![out_id]);
    op.version = operator.version;
    mini_sg.operators.push(op);
    mini_sg.outputs = vec![out_id];
    mini.subgraphs.push(mini_sg);
    let mut interpreter = Interpreter::new(&mini).map_err(|e| err(e.to_string()))?;
    interpreter.invoke().map_err(|e| err(e.to_string()))?;
    Ok(interpreter
        .output(0)
        .map_err(|e| err(e.to_string()))?
        .to_vec())
}

/// The float32 values DEQUANTIZE computes from a dense float16 constant: octet-runtime's kernel
/// converts each value with `half`'s exact conversion, and so does this, without preparing an
/// interpreter for it. `None` when the op is not that case (other input types go through the
/// runtime's kernel).
fn dequantize_half(sg: &Subgraph, model: &Model, operator: &Operator) -> Option<Vec<u8>> {
    if !matches!(operator.op, Op::Dequantize) {
        return None;
    }
    let [Some(input)] = operator.inputs.as_slice() else {
        return None;
    };
    let [output] = operator.outputs.as_slice() else {
        return None;
    };
    let (input, output) = (sg.tensor(*input)?, sg.tensor(*output)?);
    if input.dtype != DType::Float16
        || output.dtype != DType::Float32
        || input.sparsity.is_some()
        || input.shape != output.shape
    {
        return None;
    }
    let elements = input.shape.num_elements().ok()?;
    let bytes = model.tensor_bytes(input)?;
    if bytes.len() != elements.checked_mul(2)? {
        return None;
    }
    // In blocks, with `half`'s slice conversion: the same conversion as `f16::to_f32` (the same
    // instruction where the CPU has one), vectorised.
    const BLOCK: usize = 1024;
    let mut halves = [f16::ZERO; BLOCK];
    let mut floats = [0.0f32; BLOCK];
    let mut out = vec![0u8; elements * 4];
    for (block, out) in bytes.chunks(BLOCK * 2).zip(out.chunks_mut(BLOCK * 4)) {
        let n = block.len() / 2;
        for (h, b) in halves.iter_mut().zip(block.chunks_exact(2)) {
            *h = f16::from_le_bytes([b[0], b[1]]);
        }
        halves[..n].convert_to_f32_slice(&mut floats[..n]);
        for (o, f) in out.chunks_exact_mut(4).zip(&floats[..n]) {
            o.copy_from_slice(&f.to_le_bytes());
        }
    }
    Some(out)
}

/// Replaces every operator matched by `fold` whose inputs are all constants (and whose output is
/// not a graph output) by a constant output tensor holding what the op computes. Returns how
/// many were folded. Orphaned inputs stay until [`remove_unused_tensors`].
fn fold_ops(model: &mut Model, fold: fn(&Op) -> bool) -> Result<usize, QuantError> {
    let mut folded = 0;
    for s in 0..model.subgraphs.len() {
        // One pass in execution order: an op folded makes its output constant for the ops
        // after it. Folded ops are dropped together at the end.
        let mut keep = Vec::new();
        for o in 0..model.subgraphs[s].operators.len() {
            let sg = &model.subgraphs[s];
            let operator = &sg.operators[o];
            let foldable = fold(&operator.op)
                && operator.outputs.len() == 1
                && !operator.inputs.is_empty()
                && operator.present_inputs().all(|id| {
                    sg.tensor(id)
                        .is_some_and(|t| is_constant(model, t) && !sg.outputs.contains(&id))
                })
                && !operator.outputs.iter().any(|id| sg.outputs.contains(id));
            keep.push(!foldable);
            if !foldable {
                continue;
            }
            let bytes = match dequantize_half(sg, model, operator) {
                Some(bytes) => bytes,
                None => evaluate_constant_op(model, sg, operator)?,
            };
            let out = operator.outputs[0];
            let buffer = model
                .add_buffer(bytes)
                .map_err(|e| QuantError::Unsupported(e.to_string()))?;
            if let Some(t) = model.subgraphs[s].tensor_mut(out) {
                t.buffer = buffer;
                t.sparsity = None;
                t.is_variable = false;
            }
            folded += 1;
        }
        let mut keep = keep.into_iter();
        model.subgraphs[s]
            .operators
            .retain(|_| keep.next().unwrap_or(true));
    }
    Ok(folded)
}

/// Folds DEQUANTIZE ops of constants (float16, int8 per tensor or per channel, uint8, int16, ...)
/// into float32 constants: the op's output tensor becomes the constant, so consumers need no
/// rewiring. Returns how many ops were folded. A DEQUANTIZE whose output is a graph output is
/// kept. Run [`remove_unused_tensors`] and [`remove_unused_buffers`] afterwards.
pub fn fold_constant_dequantize(model: &mut Model) -> Result<usize, QuantError> {
    fold_ops(model, |op| matches!(op, Op::Dequantize))
}

/// Turns DENSIFY ops of sparse constants into dense constants of the same dtype (expanded by
/// octet-runtime's DENSIFY kernel, TFLite's `FormatConverter::SparseToDense`), so later passes
/// see plain weights. Returns how many ops were folded.
pub fn densify_constants(model: &mut Model) -> Result<usize, QuantError> {
    fold_ops(model, |op| matches!(op, Op::Densify))
}

/// Densifies sparse constants and folds constant DEQUANTIZE ops (in that order, so a sparse
/// float16 weight becomes a dense float32 one), then drops what that orphaned. Returns how
/// many ops were folded.
pub fn fold_to_float(model: &mut Model) -> Result<usize, QuantError> {
    let mut folded = densify_constants(model)?;
    folded += fold_constant_dequantize(model)?;
    for s in 0..model.subgraphs.len() {
        remove_unused_tensors(model, s)?;
    }
    remove_unused_buffers(model);
    Ok(folded)
}

/// Whether a signature of the main subgraph names tensor `id` (a rewrite must keep it).
pub(crate) fn in_main_signature(model: &Model, id: TensorId) -> bool {
    model.signature_defs.iter().any(|s| {
        s.subgraph == 0
            && s.inputs
                .iter()
                .chain(s.outputs.iter())
                .any(|t| t.tensor == id)
    })
}

/// The fused activation a standalone activation op amounts to.
fn activation_of(op: &Op) -> Option<ActivationFunction> {
    match op {
        Op::Relu => Some(ActivationFunction::Relu),
        Op::Relu6 => Some(ActivationFunction::Relu6),
        Op::ReluN1To1 => Some(ActivationFunction::ReluN1To1),
        _ => None,
    }
}

/// The fused-activation slot of `op`, if it has one this pass may fill: the ops whose TFLite
/// kernels (float and integer) and LiteRT's XNNPACK delegate all apply it.
fn activation_slot(op: &mut Op) -> Option<&mut ActivationFunction> {
    match op {
        Op::Conv2D(o) => Some(&mut o.activation),
        Op::DepthwiseConv2D(o) => Some(&mut o.activation),
        Op::FullyConnected(o) => Some(&mut o.activation),
        Op::Add(o) | Op::Sub(o) => Some(&mut o.activation),
        Op::Mul { activation } => Some(activation),
        _ => None,
    }
}

/// Folds a MUL, ADD or SUB by a constant (one value, or one per output channel) that follows a
/// CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED into that op's weights and bias: MUL scales
/// filter `o` and bias `o` by `c_o`, ADD and SUB move bias `o` by `c_o` (batch normalisation and
/// rescaling layers that the converter left apart). The convolution must have no activation,
/// constant weights and bias used by no other op, and be the only reader of the tensor; the
/// MUL/ADD/SUB's own activation moves onto it. The float model's values change by rounding only;
/// the quantized one loses a requantization. Repeats until nothing folds (a MUL then an ADD both
/// fold). Returns how many ops were folded.
pub fn fold_constant_affine(model: &mut Model) -> Result<usize, QuantError> {
    let mut folded = 0;
    while let Some((p, m)) = next_affine_fold(model) {
        if !apply_affine_fold(model, p, m)? {
            break;
        }
        folded += 1;
    }
    if folded > 0 {
        remove_unused_tensors(model, 0)?;
        remove_unused_buffers(model);
    }
    Ok(folded)
}

/// The constant operand of a MUL/ADD/SUB (`x op c`, or `c op x` for MUL and ADD) reading `x`.
fn affine_constant(model: &Model, sg: &Subgraph, op: &Operator, x: TensorId) -> Option<TensorId> {
    let [Some(a), Some(b)] = op.inputs.as_slice() else {
        return None;
    };
    let other = if *a == x {
        *b
    } else if *b == x && !matches!(op.op, Op::Sub(_)) {
        *a
    } else {
        return None;
    };
    let t = sg.tensor(other)?;
    (t.dtype == DType::Float32 && is_constant(model, t)).then_some(other)
}

/// The next (producer, MUL/ADD/SUB) pair of operator indices that [`fold_constant_affine`] folds.
fn next_affine_fold(model: &Model) -> Option<(usize, usize)> {
    let sg = model.subgraphs.first()?;
    let mut uses: HashMap<TensorId, usize> = HashMap::new();
    for op in &sg.operators {
        for id in op.present_inputs() {
            *uses.entry(id).or_default() += 1;
        }
    }
    for (p, prod) in sg.operators.iter().enumerate() {
        let activation = match &prod.op {
            Op::Conv2D(o) => o.activation,
            Op::DepthwiseConv2D(o) => o.activation,
            Op::FullyConnected(o) if o.weights_format == octet_core::WeightsFormat::Default => {
                o.activation
            }
            _ => continue,
        };
        let (Some(Some(w)), Some(Some(b)), [x]) = (
            prod.inputs.get(1),
            prod.inputs.get(2),
            prod.outputs.as_slice(),
        ) else {
            continue;
        };
        let private_constant = |id: TensorId| {
            uses.get(&id) == Some(&1)
                && sg
                    .tensor(id)
                    .is_some_and(|t| t.dtype == DType::Float32 && is_constant(model, t))
        };
        if activation != ActivationFunction::None
            || !private_constant(*w)
            || !private_constant(*b)
            || uses.get(x) != Some(&1)
            || sg.outputs.contains(x)
            || in_main_signature(model, *x)
        {
            continue;
        }
        let Some(m) = sg
            .operators
            .iter()
            .position(|o| o.present_inputs().any(|i| i == *x))
        else {
            continue;
        };
        let Some(next) = sg.operators.get(m) else {
            continue;
        };
        if !matches!(next.op, Op::Mul { .. } | Op::Add(_) | Op::Sub(_)) {
            continue;
        }
        let Some(c) = affine_constant(model, sg, next, *x) else {
            continue;
        };
        let channels = sg.tensor(*b).and_then(|t| t.shape.num_elements().ok());
        let values = sg.tensor(c).and_then(|t| t.shape.num_elements().ok());
        // One value, or one per channel along the last axis (shape [.., 1, C]).
        let per_channel = sg
            .tensor(c)
            .is_some_and(|t| t.shape.dims().iter().rev().skip(1).all(|&d| d == 1));
        let fits = match (channels, values) {
            (Some(ch), Some(v)) => v == 1 || (v == ch && per_channel),
            _ => false,
        };
        // The result keeps the convolution's shape (no broadcast that grows it).
        let same_shape = next
            .outputs
            .first()
            .and_then(|&y| sg.tensor(y))
            .zip(sg.tensor(*x))
            .is_some_and(|(y, x)| y.shape == x.shape && y.dtype == DType::Float32);
        if fits && same_shape {
            return Some((p, m));
        }
    }
    None
}

/// Folds operator `m` (MUL/ADD/SUB by a constant) into operator `p`; false if it could not.
fn apply_affine_fold(model: &mut Model, p: usize, m: usize) -> Result<bool, QuantError> {
    let Some(sg) = model.subgraphs.first() else {
        return Ok(false);
    };
    let (Some(prod), Some(next)) = (sg.operators.get(p), sg.operators.get(m)) else {
        return Ok(false);
    };
    let (Some(Some(w_id)), Some(Some(b_id)), Some(&x)) =
        (prod.inputs.get(1), prod.inputs.get(2), prod.outputs.first())
    else {
        return Ok(false);
    };
    let (w_id, b_id) = (*w_id, *b_id);
    let Some(c_id) = affine_constant(model, sg, next, x) else {
        return Ok(false);
    };
    let (Some(mut w), Some(mut b), Some(c)) = (
        float_constant_values(model, w_id)?,
        float_constant_values(model, b_id)?,
        float_constant_values(model, c_id)?,
    ) else {
        return Ok(false);
    };
    let channels = b.len();
    if channels == 0 || w.len() % channels != 0 {
        return Ok(false);
    }
    let c_of = |o: usize| {
        if c.len() == 1 {
            c[0]
        } else {
            c.get(o).copied().unwrap_or(0.0)
        }
    };
    let depthwise = matches!(prod.op, Op::DepthwiseConv2D(_));
    let (next_op, y) = (next.op.clone(), next.outputs.first().copied());
    let Some(y) = y else { return Ok(false) };
    let activation = match &next_op {
        Op::Mul { activation } => {
            let per_filter = w.len() / channels;
            for (k, v) in w.iter_mut().enumerate() {
                let o = if depthwise {
                    k % channels
                } else {
                    k / per_filter
                };
                *v *= c_of(o);
            }
            for (o, v) in b.iter_mut().enumerate() {
                *v *= c_of(o);
            }
            *activation
        }
        Op::Add(o) => {
            for (ch, v) in b.iter_mut().enumerate() {
                *v += c_of(ch);
            }
            o.activation
        }
        Op::Sub(o) => {
            for (ch, v) in b.iter_mut().enumerate() {
                *v -= c_of(ch);
            }
            o.activation
        }
        _ => return Ok(false),
    };
    store_floats(model, w_id, &w)?;
    store_floats(model, b_id, &b)?;
    let Some(sg) = model.subgraphs.first_mut() else {
        return Ok(false);
    };
    if let Some(prod) = sg.operators.get_mut(p) {
        if let Some(slot) = activation_slot(&mut prod.op) {
            *slot = activation;
        }
        prod.outputs = vec![y];
    }
    sg.operators.remove(m);
    Ok(true)
}

/// The float32 values of constant `id` of the main subgraph.
pub(crate) fn float_constant_values(
    model: &Model,
    id: TensorId,
) -> Result<Option<Vec<f32>>, QuantError> {
    match model.subgraphs.first().and_then(|sg| sg.tensor(id)) {
        Some(t) => float_constant(model, t),
        None => Ok(None),
    }
}

/// Points tensor `id` of the main subgraph at a new buffer holding `values`.
pub(crate) fn store_floats(
    model: &mut Model,
    id: TensorId,
    values: &[f32],
) -> Result<(), QuantError> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let buffer = model
        .add_buffer(bytes)
        .map_err(|e| QuantError::Unsupported(e.to_string()))?;
    if let Some(t) = model.subgraphs.first_mut().and_then(|sg| sg.tensor_mut(id)) {
        t.buffer = buffer;
    }
    Ok(())
}

/// Folds each standalone RELU, RELU6 and RELU_N1_TO_1 of the main subgraph into the fused
/// activation of the op that produces its input, as TensorFlow's converter does: when that op
/// (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, SUB, MUL) has no activation yet, is the
/// input's only consumer, and the input is neither a graph output nor in a signature. Float
/// results do not change (the kernels clamp the same value); quantized, the op's output takes
/// the activation's range, and the clamp costs nothing. Returns how many ops were folded.
pub fn fuse_activations(model: &mut Model) -> Result<usize, QuantError> {
    let Some(sg) = model.subgraphs.first() else {
        return Ok(0);
    };
    let mut consumers: HashMap<TensorId, usize> = HashMap::new();
    let mut producer: HashMap<TensorId, usize> = HashMap::new();
    for (o, op) in sg.operators.iter().enumerate() {
        for id in op.present_inputs() {
            *consumers.entry(id).or_default() += 1;
        }
        for &id in &op.outputs {
            producer.insert(id, o);
        }
    }
    // (activation op, its producer, the activation)
    let mut folds: Vec<(usize, usize, ActivationFunction)> = Vec::new();
    for (o, op) in sg.operators.iter().enumerate() {
        let Some(activation) = activation_of(&op.op) else {
            continue;
        };
        let (Some(Some(x)), [y]) = (op.inputs.first(), op.outputs.as_slice()) else {
            continue;
        };
        let float = |id: TensorId| sg.tensor(id).is_some_and(|t| t.dtype == DType::Float32);
        let Some(&p) = producer.get(x) else { continue };
        let Some(prod) = sg.operators.get(p) else {
            continue;
        };
        let mut candidate = prod.op.clone();
        let free_slot =
            activation_slot(&mut candidate).is_some_and(|slot| *slot == ActivationFunction::None);
        if free_slot
            && prod.outputs.as_slice() == [*x]
            && consumers.get(x) == Some(&1)
            && float(*x)
            && float(*y)
            && !sg.outputs.contains(x)
            && !sg.inputs.contains(x)
            && !in_main_signature(model, *x)
        {
            folds.push((o, p, activation));
        }
    }
    if folds.is_empty() {
        return Ok(0);
    }
    let Some(sg) = model.subgraphs.first_mut() else {
        return Ok(0);
    };
    let mut drop = vec![false; sg.operators.len()];
    for &(o, p, activation) in &folds {
        let y = sg
            .operators
            .get(o)
            .and_then(|op| op.outputs.first().copied());
        if let (Some(y), Some(prod)) = (y, sg.operators.get_mut(p)) {
            if let Some(slot) = activation_slot(&mut prod.op) {
                *slot = activation;
            }
            prod.outputs = vec![y];
            if let Some(d) = drop.get_mut(o) {
                *d = true;
            }
        }
    }
    let mut drop = drop.into_iter();
    sg.operators.retain(|_| !drop.next().unwrap_or(false));
    remove_unused_tensors(model, 0)?;
    Ok(folds.len())
}

/// Removes the tensors of subgraph `subgraph` that no operator, graph input or output or
/// signature refers to, and renumbers the rest. Subgraphs whose quantization parameters refer to
/// tensors (block-wise schemes) are left alone. Returns how many tensors were removed.
pub fn remove_unused_tensors(model: &mut Model, subgraph: usize) -> Result<usize, QuantError> {
    let Some(sg) = model.subgraphs.get(subgraph) else {
        return Err(QuantError::Unsupported(format!(
            "subgraph {subgraph} does not exist"
        )));
    };
    if sg.tensors.iter().any(|t| {
        t.quant.as_ref().is_some_and(|q| {
            matches!(
                q.details,
                Some(QuantDetails::Blockwise { .. } | QuantDetails::MultiAxis { .. })
            )
        })
    }) {
        return Ok(0);
    }
    let mut used = vec![false; sg.tensors.len()];
    let mut mark = |id: TensorId| {
        if let Some(u) = used.get_mut(id.index()) {
            *u = true;
        }
    };
    sg.inputs
        .iter()
        .chain(&sg.outputs)
        .copied()
        .for_each(&mut mark);
    for op in &sg.operators {
        op.present_inputs()
            .chain(op.outputs.iter().copied())
            .chain(op.intermediates.iter().copied())
            .for_each(&mut mark);
    }
    for sig in model
        .signature_defs
        .iter()
        .filter(|s| s.subgraph as usize == subgraph)
    {
        sig.inputs
            .iter()
            .chain(&sig.outputs)
            .for_each(|st| mark(st.tensor));
    }
    let removed = used.iter().filter(|u| !**u).count();
    if removed == 0 {
        return Ok(0);
    }
    let mut new_id = vec![None; used.len()];
    let mut next = 0u32;
    for (i, &u) in used.iter().enumerate() {
        if u {
            new_id[i] = Some(TensorId(next));
            next += 1;
        }
    }
    let map = |id: TensorId| -> Result<TensorId, QuantError> {
        new_id.get(id.index()).copied().flatten().ok_or_else(|| {
            QuantError::Unsupported(format!("tensor {} vanished while renumbering", id.0))
        })
    };
    let sg = &mut model.subgraphs[subgraph];
    let old = std::mem::take(&mut sg.tensors);
    sg.tensors = old
        .into_iter()
        .zip(&used)
        .filter(|(_, u)| **u)
        .map(|(t, _)| t)
        .collect();
    for id in sg.inputs.iter_mut().chain(sg.outputs.iter_mut()) {
        *id = map(*id)?;
    }
    for op in &mut sg.operators {
        for id in op.inputs.iter_mut().flatten() {
            *id = map(*id)?;
        }
        for id in op.outputs.iter_mut().chain(op.intermediates.iter_mut()) {
            *id = map(*id)?;
        }
    }
    for sig in model
        .signature_defs
        .iter_mut()
        .filter(|s| s.subgraph as usize == subgraph)
    {
        for st in sig.inputs.iter_mut().chain(sig.outputs.iter_mut()) {
            st.tensor = map(st.tensor)?;
        }
    }
    Ok(removed)
}

/// Drops the buffers no tensor or metadata entry refers to and renumbers the rest, keeping
/// buffer 0 as the empty sentinel. Returns how many buffers were removed.
pub fn remove_unused_buffers(model: &mut Model) -> usize {
    if model.buffers.is_empty() {
        return 0;
    }
    let mut used = vec![false; model.buffers.len()];
    used[0] = true;
    let mut mark = |id: usize| {
        if let Some(u) = used.get_mut(id) {
            *u = true;
        }
    };
    for tensor in model.subgraphs.iter().flat_map(|sg| &sg.tensors) {
        mark(tensor.buffer.index());
    }
    for meta in &model.metadata {
        mark(meta.buffer.index());
    }
    for &b in model.metadata_buffer.iter().flatten() {
        if let Ok(b) = usize::try_from(b) {
            mark(b);
        }
    }
    let removed = used.iter().filter(|u| !**u).count();
    if removed == 0 {
        return 0;
    }
    let mut new_index: HashMap<usize, u32> = HashMap::new();
    let mut next = 0u32;
    for (i, &u) in used.iter().enumerate() {
        if u {
            new_index.insert(i, next);
            next += 1;
        }
    }
    let remap = |id: BufferId| BufferId(new_index.get(&id.index()).copied().unwrap_or(0));
    let old = std::mem::take(&mut model.buffers);
    model.buffers = old
        .into_iter()
        .zip(&used)
        .filter(|(_, u)| **u)
        .map(|(b, _)| b)
        .collect();
    for tensor in model.subgraphs.iter_mut().flat_map(|sg| &mut sg.tensors) {
        tensor.buffer = remap(tensor.buffer);
    }
    for meta in &mut model.metadata {
        meta.buffer = remap(meta.buffer);
    }
    for b in model.metadata_buffer.iter_mut().flatten() {
        if let Ok(i) = usize::try_from(*b)
            && let Some(&n) = new_index.get(&i)
        {
            *b = n as i32;
        }
    }
    removed
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
mod tests {
    use half::f16;
    use octet_core::{QuantParams, Shape};

    use super::*;

    /// x -> FULLY_CONNECTED(x, DEQUANTIZE(w16)) -> y, plus an unused buffer.
    fn fp16_fc_model() -> Model {
        let mut model = Model {
            schema_version: 3,
            ..Model::default()
        };
        let w: Vec<u8> = [1.5f32, -2.0, 0.25, 4.0, 0.0, 1.0]
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect();
        let wb = model.add_buffer(w).unwrap();
        model.add_buffer(vec![1, 2, 3]).unwrap();
        let mut sg = Subgraph::default();
        let x = sg
            .add_tensor(Tensor::new("x", DType::Float32, Shape::new(vec![1, 3])))
            .unwrap();
        let mut w16 = Tensor::new("w16", DType::Float16, Shape::new(vec![2, 3]));
        w16.buffer = wb;
        let w16 = sg.add_tensor(w16).unwrap();
        let w32 = sg
            .add_tensor(Tensor::new("w32", DType::Float32, Shape::new(vec![2, 3])))
            .unwrap();
        let y = sg
            .add_tensor(Tensor::new("y", DType::Float32, Shape::new(vec![1, 2])))
            .unwrap();
        sg.inputs = vec![x];
        sg.outputs = vec![y];
        sg.operators
            .push(Operator::new(Op::Dequantize, vec![Some(w16)], vec![w32]));
        sg.operators.push(Operator::new(
            Op::FullyConnected(Default::default()),
            vec![Some(x), Some(w32), None],
            vec![y],
        ));
        model.subgraphs.push(sg);
        model
    }

    #[test]
    fn folds_fp16_dequantize_and_drops_orphans() {
        let mut model = fp16_fc_model();
        assert_eq!(fold_to_float(&mut model).unwrap(), 1);
        model.validate().unwrap();
        let sg = &model.subgraphs[0];
        assert_eq!(sg.operators.len(), 1);
        assert_eq!(sg.tensors.len(), 3, "the float16 tensor is gone");
        let w = sg.operators[0].inputs[1].unwrap();
        let values = float_constant(&model, sg.tensor(w).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(values, vec![1.5, -2.0, 0.25, 4.0, 0.0, 1.0]);
        // Buffers: sentinel + the folded weights; the fp16 and the junk buffer are gone.
        assert_eq!(model.buffers.len(), 2);
        assert_eq!(constant_bytes(&model), 24);
    }

    #[test]
    fn float16_folding_matches_the_runtime_kernel_on_every_value() {
        // All 65536 bit patterns (NaNs and infinities included), through the direct conversion
        // and through octet-runtime's DEQUANTIZE.
        let mut model = fp16_fc_model();
        let halves: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_le_bytes).collect();
        let sg = &mut model.subgraphs[0];
        sg.tensor_mut(TensorId(1)).unwrap().shape = Shape::new(vec![256, 256]);
        sg.tensor_mut(TensorId(2)).unwrap().shape = Shape::new(vec![256, 256]);
        let b = sg.tensor(TensorId(1)).unwrap().buffer;
        model.buffers[b.index()].data = halves;
        let sg = &model.subgraphs[0];
        let direct = dequantize_half(sg, &model, &sg.operators[0]).unwrap();
        let runtime = evaluate_constant_op(&model, sg, &sg.operators[0]).unwrap();
        assert_eq!(direct, runtime);
    }

    #[test]
    fn folds_per_channel_int8_dequantize() {
        let mut model = fp16_fc_model();
        let sg = &mut model.subgraphs[0];
        let t = sg.tensor_mut(TensorId(1)).unwrap();
        t.dtype = DType::Int8;
        t.quant = Some(QuantParams::per_axis(vec![0.5, 2.0], vec![0, 0], 0));
        let b = t.buffer;
        model.buffers[b.index()].data = [1i8, -2, 3, 4, -5, 127].iter().map(|&v| v as u8).collect();
        fold_to_float(&mut model).unwrap();
        let sg = &model.subgraphs[0];
        let w = sg.operators[0].inputs[1].unwrap();
        let values = float_constant(&model, sg.tensor(w).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(values, vec![0.5, -1.0, 1.5, 8.0, -10.0, 254.0]);
    }

    #[test]
    fn weight_inputs_follow_tflite_layout() {
        let dw = weight_inputs(&Op::DepthwiseConv2D(Default::default()));
        assert_eq!(
            dw[0],
            WeightInput {
                input: 1,
                role: WeightRole::Weights { axis: Some(3) }
            }
        );
        assert_eq!(
            weight_inputs(&Op::TransposeConv(Default::default()))[1].input,
            3
        );
        assert!(weight_inputs(&Op::Relu).is_empty());
    }

    #[test]
    fn keeps_metadata_buffers() {
        let mut model = fp16_fc_model();
        let meta = model.add_buffer(b"1.5.0".to_vec()).unwrap();
        model.metadata.push(octet_core::Metadata {
            name: "min_runtime_version".into(),
            buffer: meta,
        });
        fold_to_float(&mut model).unwrap();
        let b = model.metadata[0].buffer;
        assert_eq!(model.buffers[b.index()].data, b"1.5.0");
    }
}
