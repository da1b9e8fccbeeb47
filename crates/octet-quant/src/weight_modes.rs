//! The weight-only modes: activations and compute stay float32, only constants change.
//!
//! - [`Mode::Fp16`] (TFLiteConverter with `target_spec.supported_types = [tf.float16]`): every
//!   float32 constant an operator reads (weights, biases and every other constant, as TensorFlow
//!   does) becomes a float16 constant feeding a DEQUANTIZE (version 3) whose float32 output the
//!   consumers read. Values beyond float16's range are clamped to its largest finite value.
//! - [`Mode::WeightInt8`] (octet's own): the weights of CONV_2D, FULLY_CONNECTED,
//!   TRANSPOSE_CONV (per channel, axis 0), DEPTHWISE_CONV_2D (axis 3) and BATCH_MATMUL (per
//!   tensor) become symmetric int8 in [-127, 127] feeding a DEQUANTIZE (version 5 per channel, 2
//!   per tensor); other float constants with at least [`MIN_ELEMENTS`] elements become per-tensor
//!   int8 the same way. Biases, and constants that also feed a bias, stay float32.
//! - [`Mode::Dynamic`] (TFLiteConverter with `optimizations = [DEFAULT]` and no representative
//!   dataset): the weights of FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV (per
//!   channel) and BATCH_MATMUL (per tensor) become int8 that the op reads directly, so LiteRT runs
//!   its hybrid kernel (activations quantized on the fly). Like TensorFlow, only weights with at
//!   least [`MIN_ELEMENTS`] elements are quantized (smaller ones, biases and every other constant
//!   stay float32, without DEQUANTIZE), FULLY_CONNECTED and BATCH_MATMUL get
//!   `asymmetric_quantize_inputs`, and op versions follow TensorFlow's `op_version.cc` (hybrid
//!   per-channel FULLY_CONNECTED 12, CONV_2D 5, DEPTHWISE_CONV_2D 6, TRANSPOSE_CONV 3 with bias,
//!   BATCH_MATMUL 4).
//!
//! Every mode first densifies sparse constants and folds existing constant DEQUANTIZE ops (so an
//! already float16 model starts from its float32 weights), and finally drops orphaned tensors and
//! buffers.

use half::f16;
use octet_core::{DType, Model, Op, Operator, QuantParams, Tensor, TensorId};

use crate::params::{IntRange, symmetric};
use crate::passes::{
    WeightRole, constant_bytes, float_constant, fold_to_float, remove_unused_buffers,
    remove_unused_tensors, weight_inputs,
};
use crate::{Mode, QuantError, QuantizeReport};

/// TensorFlow's size threshold for dynamic-range quantization (`min_elements_for_weights`):
/// weights with fewer elements stay float32. [`Mode::WeightInt8`] uses it for constants that are
/// not op weights.
pub const MIN_ELEMENTS: usize = 1024;

/// Quantizes `model` in one of the weight-only modes ([`Mode::Fp16`], [`Mode::WeightInt8`],
/// [`Mode::Dynamic`]), with TensorFlow's [`MIN_ELEMENTS`] threshold.
pub fn quantize_weights(model: &Model, mode: Mode) -> Result<(Model, QuantizeReport), QuantError> {
    quantize_weights_with(model, mode, MIN_ELEMENTS)
}

/// [`quantize_weights`] with an explicit size threshold: weights of fewer than `min_elements`
/// elements stay float32 in [`Mode::Dynamic`] (0 quantizes all of them); in
/// [`Mode::WeightInt8`] it applies to constants that are not op weights.
pub fn quantize_weights_with(
    model: &Model,
    mode: Mode,
    min_elements: usize,
) -> Result<(Model, QuantizeReport), QuantError> {
    let before = constant_bytes(model);
    let mut out = model.clone();
    fold_to_float(&mut out)?;
    let mut quantized = 0;
    for s in 0..out.subgraphs.len() {
        let q = match mode {
            Mode::Fp16 => fp16_subgraph(&mut out, s)?.0,
            Mode::WeightInt8 => weight_int8_subgraph(&mut out, s, min_elements)?.0,
            Mode::Dynamic => dynamic_subgraph(&mut out, s, min_elements)?,
            other => {
                return Err(QuantError::Unsupported(format!(
                    "--mode {} is not a weight-only mode",
                    other.name()
                )));
            }
        };
        quantized += q;
    }
    for s in 0..out.subgraphs.len() {
        remove_unused_tensors(&mut out, s)?;
    }
    remove_unused_buffers(&mut out);
    out.validate()
        .map_err(|e| QuantError::Unsupported(format!("the quantized model is invalid: {e}")))?;
    // Float tensors left float: float32 tensors except the outputs of DEQUANTIZE ops of
    // constants (the weights this mode stored in a smaller type).
    let tensors_float = out
        .subgraphs
        .iter()
        .map(|sg| {
            let floats = sg
                .tensors
                .iter()
                .filter(|t| t.dtype == DType::Float32)
                .count();
            let dequantized = sg
                .operators
                .iter()
                .filter(|o| matches!(o.op, Op::Dequantize))
                .filter(|o| {
                    o.present_inputs()
                        .all(|i| sg.tensor(i).is_some_and(|t| out.tensor_bytes(t).is_some()))
                })
                .count();
            floats.saturating_sub(dequantized)
        })
        .sum();
    let report = QuantizeReport {
        tensors_quantized: quantized,
        tensors_float,
        float_ops: Vec::new(),
        activations_fused: 0,
        constants_folded: 0,
        densified: 0,
        equalized: 0,
        calibration: None,
        sensitivity: Vec::new(),
        calibration_sqnr_db: None,
        target_latency_ms: None,
        constant_bytes_before: before,
        constant_bytes_after: constant_bytes(&out),
        float_outputs: Vec::new(),
    };
    Ok((out, report))
}

/// One use of a tensor by an operator.
#[derive(Debug, Clone, Copy)]
struct Use {
    /// The operator index.
    op: usize,
    /// Its role at that input: `None` for an input that is not a weight or bias.
    role: Option<WeightRole>,
}

/// A float32 constant: its id, values and uses.
type FloatConstant = (TensorId, Vec<f32>, Vec<Use>);

/// Every dense float32 constant of subgraph `s` that operators read (and that is not a graph
/// input or output), with its values and its uses.
fn float_constants(model: &Model, s: usize) -> Result<Vec<FloatConstant>, QuantError> {
    let Some(sg) = model.subgraphs.get(s) else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for (i, tensor) in sg.tensors.iter().enumerate() {
        let id = TensorId(i as u32);
        if sg.inputs.contains(&id) || sg.outputs.contains(&id) {
            continue;
        }
        let Some(values) = float_constant(model, tensor)? else {
            continue;
        };
        let mut uses = Vec::new();
        for (o, op) in sg.operators.iter().enumerate() {
            let slots = weight_inputs(&op.op);
            for (k, input) in op.inputs.iter().enumerate() {
                if *input == Some(id) {
                    let role = slots.iter().find(|w| w.input == k).map(|w| w.role);
                    uses.push(Use { op: o, role });
                }
            }
        }
        if !uses.is_empty() {
            found.push((id, values, uses));
        }
    }
    Ok(found)
}

/// Symmetric int8 quantization of `values` shaped `dims`, per channel along `axis` or per tensor:
/// `scale = max|w| / 127` (1 for an all-zero channel), `q = round(w / scale)` in [-127, 127].
pub fn quantize_symmetric_int8(
    values: &[f32],
    dims: &[i32],
    axis: Option<usize>,
) -> Result<(Vec<i8>, QuantParams), QuantError> {
    let range = IntRange::of(DType::Int8)?;
    let (channels, inner) = match axis {
        Some(a) => {
            let channels = dims
                .get(a)
                .and_then(|&d| usize::try_from(d).ok())
                .filter(|&d| d > 0)
                .ok_or_else(|| {
                    QuantError::Unsupported(format!(
                        "cannot quantize a {dims:?} weight per channel along axis {a}"
                    ))
                })?;
            let inner: usize = dims
                .get(a + 1..)
                .unwrap_or(&[])
                .iter()
                .map(|&d| usize::try_from(d).unwrap_or(0))
                .product();
            (channels, inner)
        }
        None => (1, values.len().max(1)),
    };
    if inner == 0 || !values.len().is_multiple_of(channels * inner) {
        return Err(QuantError::Unsupported(format!(
            "{} values do not fit the shape {dims:?}",
            values.len()
        )));
    }
    let channel = |i: usize| (i / inner) % channels;
    let mut max_abs = vec![0f32; channels];
    for (i, &v) in values.iter().enumerate() {
        if !v.is_finite() {
            return Err(QuantError::Unsupported(format!(
                "a weight holds the non-finite value {v}"
            )));
        }
        let m = &mut max_abs[channel(i)];
        *m = m.max(v.abs());
    }
    let scales = max_abs
        .iter()
        .map(|&m| symmetric(m, range).map(|p| p.scale))
        .collect::<Result<Vec<_>, _>>()?;
    let q = values
        .iter()
        .enumerate()
        .map(|(i, &v)| (v / scales[channel(i)]).round().clamp(-127.0, 127.0) as i8)
        .collect();
    let params = match axis {
        Some(a) => QuantParams::per_axis(scales, vec![0; channels], a as i32),
        None => QuantParams::per_tensor(scales[0], 0),
    };
    Ok((q, params))
}

/// A constant's new storage: dtype, bytes, quantization and the DEQUANTIZE version it needs.
struct Stored {
    dtype: DType,
    bytes: Vec<u8>,
    quant: Option<QuantParams>,
    version: i32,
}

/// Makes constant `id` of subgraph `s` the float32 output of a new DEQUANTIZE (inserted at
/// `position`) whose input is a new constant of `dtype` holding `bytes` with `quant`. Consumers
/// keep reading `id`. Returns the new constant's name.
fn dequantize_from(
    model: &mut Model,
    s: usize,
    id: TensorId,
    position: usize,
    stored: Stored,
) -> Result<String, QuantError> {
    let Stored {
        dtype,
        bytes,
        quant,
        version,
    } = stored;
    let core = |e: octet_core::CoreError| QuantError::Unsupported(e.to_string());
    let buffer = model.add_buffer(bytes).map_err(core)?;
    let sg = &mut model.subgraphs[s];
    let original = sg
        .tensor(id)
        .ok_or_else(|| QuantError::Unsupported(format!("tensor {} does not exist", id.0)))?
        .clone();
    let suffix = match dtype {
        DType::Float16 => "fp16",
        _ => "int8",
    };
    let mut constant = Tensor::new(
        format!("{}/{suffix}", original.name),
        dtype,
        original.shape.clone(),
    );
    constant.shape_signature = original.shape_signature.clone();
    constant.has_rank = original.has_rank;
    constant.buffer = buffer;
    constant.quant = quant;
    let name = original.name.clone();
    let constant = sg.add_tensor(constant).map_err(core)?;
    if let Some(t) = sg.tensor_mut(id) {
        t.buffer = octet_core::BufferId(0);
    }
    let mut op = Operator::new(Op::Dequantize, vec![Some(constant)], vec![id]);
    op.version = version;
    sg.insert_operator(position, op);
    Ok(name)
}

fn fp16_subgraph(model: &mut Model, s: usize) -> Result<(usize, Vec<String>), QuantError> {
    let constants = float_constants(model, s)?;
    let mut names = Vec::new();
    for (position, (id, values, _)) in constants.into_iter().enumerate() {
        let bytes = values
            .iter()
            .flat_map(|&v| {
                f16::from_f32(v.clamp(f16::MIN.to_f32(), f16::MAX.to_f32())).to_le_bytes()
            })
            .collect();
        names.push(dequantize_from(
            model,
            s,
            id,
            position,
            Stored {
                dtype: DType::Float16,
                bytes,
                quant: None,
                version: 3,
            },
        )?);
    }
    Ok((names.len(), names))
}

fn weight_int8_subgraph(
    model: &mut Model,
    s: usize,
    min_elements: usize,
) -> Result<(usize, Vec<String>), QuantError> {
    let constants = float_constants(model, s)?;
    let mut names = Vec::new();
    for (id, values, uses) in constants {
        if uses.iter().any(|u| u.role == Some(WeightRole::Bias)) {
            continue;
        }
        let axes: Vec<Option<usize>> = uses
            .iter()
            .filter_map(|u| match u.role {
                Some(WeightRole::Weights { axis }) => Some(axis),
                _ => None,
            })
            .collect();
        let is_weight = !axes.is_empty();
        if !is_weight && values.len() < min_elements {
            continue;
        }
        let dims = model.subgraphs[s]
            .tensor(id)
            .map(|t| t.shape.dims().to_vec())
            .unwrap_or_default();
        // Per channel only when every use is a weight use along the same, existing axis.
        let axis = match axes.first() {
            Some(&Some(a))
                if axes.len() == uses.len()
                    && axes.iter().all(|&x| x == Some(a))
                    && a < dims.len() =>
            {
                Some(a)
            }
            _ => None,
        };
        let (q, params) = quantize_symmetric_int8(&values, &dims, axis)
            .map_err(|e| name_error(model, s, id, e))?;
        let version = if axis.is_some() { 5 } else { 2 };
        let bytes = q.iter().map(|&v| v as u8).collect();
        names.push(dequantize_from(
            model,
            s,
            id,
            names.len(),
            Stored {
                dtype: DType::Int8,
                bytes,
                quant: Some(params),
                version,
            },
        )?);
    }
    Ok((names.len(), names))
}

fn name_error(model: &Model, s: usize, id: TensorId, e: QuantError) -> QuantError {
    let name = model.subgraphs[s]
        .tensor(id)
        .map(|t| t.name.clone())
        .unwrap_or_default();
    QuantError::Unsupported(format!("tensor '{name}': {e}"))
}

/// True when operator `op` can run as a hybrid kernel: float32 activation in and out.
fn hybrid_capable(model: &Model, s: usize, op: &Operator) -> bool {
    let sg = &model.subgraphs[s];
    let activation = match op.op {
        Op::TransposeConv(_) => 2,
        Op::Conv2D(_) | Op::DepthwiseConv2D(_) | Op::FullyConnected(_) | Op::BatchMatMul(_) => 0,
        _ => return false,
    };
    let float = |id: Option<&Option<TensorId>>| {
        id.copied()
            .flatten()
            .and_then(|id| sg.tensor(id))
            .is_some_and(|t| t.dtype == DType::Float32)
    };
    float(op.inputs.get(activation))
        && op.outputs.len() == 1
        && float(op.outputs.first().map(|o| Some(*o)).as_ref())
}

fn dynamic_subgraph(model: &mut Model, s: usize, min_elements: usize) -> Result<usize, QuantError> {
    let constants = float_constants(model, s)?;
    let mut quantized = 0;
    for (id, values, uses) in constants {
        if values.len() < min_elements {
            continue;
        }
        let sg = &model.subgraphs[s];
        let mut axis = None;
        let mut ok = true;
        for (k, u) in uses.iter().enumerate() {
            let Some(WeightRole::Weights { axis: a }) = u.role else {
                ok = false;
                break;
            };
            if !hybrid_capable(model, s, &sg.operators[u.op]) || (k > 0 && a != axis) {
                ok = false;
                break;
            }
            axis = a;
        }
        let dims = sg
            .tensor(id)
            .map(|t| t.shape.dims().to_vec())
            .unwrap_or_default();
        if !ok || axis.is_some_and(|a| a >= dims.len()) {
            continue;
        }
        let (q, params) = quantize_symmetric_int8(&values, &dims, axis)
            .map_err(|e| name_error(model, s, id, e))?;
        let buffer = model
            .add_buffer(q.iter().map(|&v| v as u8).collect())
            .map_err(|e| QuantError::Unsupported(e.to_string()))?;
        let sg = &mut model.subgraphs[s];
        if let Some(t) = sg.tensor_mut(id) {
            t.dtype = DType::Int8;
            t.buffer = buffer;
            t.quant = Some(params);
        }
        for u in &uses {
            let op = &mut sg.operators[u.op];
            let has_bias = |i: usize| op.inputs.get(i).copied().flatten().is_some();
            let version = match &mut op.op {
                Op::FullyConnected(o) => {
                    o.asymmetric_quantize_inputs = true;
                    if axis.is_some() { 12 } else { 9 }
                }
                Op::Conv2D(_) => {
                    if axis.is_some() {
                        5
                    } else {
                        2
                    }
                }
                Op::DepthwiseConv2D(_) => {
                    if axis.is_some() {
                        6
                    } else {
                        4
                    }
                }
                Op::TransposeConv(o) => {
                    if o.activation != octet_core::ActivationFunction::None {
                        4
                    } else if has_bias(3) {
                        3
                    } else {
                        2
                    }
                }
                Op::BatchMatMul(o) => {
                    o.asymmetric_quantize_inputs = true;
                    4
                }
                _ => op.version,
            };
            op.version = op.version.max(version);
        }
        quantized += 1;
    }
    Ok(quantized)
}
