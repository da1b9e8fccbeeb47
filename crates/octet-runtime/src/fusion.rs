//! Prepare-time fusion: operators whose work another operator does as it runs, so that their
//! outputs are never computed by [`Interpreter::invoke`](crate::Interpreter::invoke).
//!
//! A spatial PAD (or PADV2) whose only reader is a CONV_2D or DEPTHWISE_CONV_2D is folded into
//! that convolution's padding: TensorFlow writes asymmetric SAME padding as a PAD before a
//! VALID convolution, and MediaPipe's models have dozens. The convolution then reads the PAD's
//! input with an explicit padding (its window's `pad_top`/`pad_left`, the padded size for the
//! output's geometry), and its padding taps contribute exactly what the padded elements did:
//!
//! - float: the PAD writes +0.0; the GEMM's padding taps read a row of +0.0 (the same
//!   arithmetic), and the depthwise and scalar kernels skip them, which adds the same as adding
//!   `0 * w` when every weight is finite (a sum that starts at +0.0 is never -0.0, and adding
//!   ±0.0 to anything else changes nothing), so the weights must be constant and finite;
//! - quantized (int8, uint8, int16): the PAD writes the zero point `z`, its input and output
//!   share scale and zero point, and the convolution's padding taps contribute `(z - z) * w = 0`
//!   exactly as the skipped or zero-point taps of its integer kernels do.
//!
//! PADs of the batch or channel dimensions, PADs feeding anything else (pooling's padding
//! excludes taps rather than reading a value; hybrid convolutions quantize their input from its
//! range, which the padding changes), and PADs whose output is a graph output or read twice stay
//! as they are.
//!
//! [`Interpreter::invoke_observed`](crate::Interpreter::invoke_observed) still shows every
//! tensor: it runs the absorbed operators too, into memory of their own.

use octet_core::{ActivationFunction, DType, Op, Operator, Subgraph, TensorId};

use crate::TensorInfo;

/// Padding a fused PAD adds around a convolution's input, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpatialPadding {
    /// Rows above the image.
    pub top: usize,
    /// Rows below the image.
    pub bottom: usize,
    /// Columns left of the image.
    pub left: usize,
    /// Columns right of the image.
    pub right: usize,
}

/// An element-wise operator fused into a convolution's output stage: its result is the
/// convolution step's output, its other operand the step's extra input 3.
///
/// Float convolutions apply it to each tile as it leaves the micro-kernel. Integer (int8,
/// uint8) convolutions compute a block of rows of their own output, requantized as always,
/// and run the operators' own integer kernels on it while it is in cache: the same arithmetic
/// on the same values as the operators run one after the other, so bit-exact by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FusedOutput {
    /// PRELU with a constant slope per output channel (input 3).
    Prelu,
    /// ADD of input 3 (same shape), then the ADD's activation.
    Add(ActivationFunction),
    /// [`FusedOutput::Add`], then a PRELU of the sum with a constant slope per channel
    /// (input 4).
    AddPrelu(ActivationFunction),
}

/// How fusion changed one operator.
#[derive(Debug, Clone)]
pub(crate) struct Rewrite {
    /// The operator to build instead of the model's.
    pub(crate) op: Operator,
    /// The padding a fused PAD adds to input 0.
    pub(crate) padding: Option<SpatialPadding>,
    /// The element-wise operator fused into its output.
    pub(crate) output: Option<FusedOutput>,
    /// Inputs of the operator without its fused output stage (what it reads while observed,
    /// when the element-wise operator runs on its own)...
    pub(crate) plain_inputs: usize,
    /// ...and its outputs then.
    pub(crate) plain_outputs: Vec<TensorId>,
    /// The element-wise operators fused into its output, in order.
    pub(crate) fused: Vec<usize>,
    /// The tensors the fused chain computes on the way: the operator's own output, then (for
    /// ADD and PRELU) the sum.
    pub(crate) intermediates: Vec<TensorId>,
}

/// What fusion changed in a subgraph, per operator.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fusion {
    /// True when another operator does this one's work: it runs only for observers.
    pub(crate) absorbed: Vec<bool>,
    /// The operators built differently.
    pub(crate) rewritten: Vec<Option<Rewrite>>,
}

impl Fusion {
    /// The operator to build at `index`: the rewritten one, or the model's own.
    pub(crate) fn operator<'a>(&'a self, index: usize, original: &'a Operator) -> &'a Operator {
        match self.rewritten.get(index) {
            Some(Some(r)) => &r.op,
            _ => original,
        }
    }

    /// How operator `index` was rewritten, if it was.
    pub(crate) fn rewrite(&self, index: usize) -> Option<&Rewrite> {
        self.rewritten.get(index)?.as_ref()
    }

    /// The padding operator `index` adds to its input, if a PAD was fused into it.
    pub(crate) fn padding(&self, index: usize) -> Option<SpatialPadding> {
        self.rewrite(index)?.padding
    }

    /// The element-wise operator fused into operator `index`'s output, if any.
    pub(crate) fn output(&self, index: usize) -> Option<FusedOutput> {
        self.rewrite(index)?.output
    }

    /// The tensors operator `index`'s fused output stage passes through (see
    /// [`Rewrite::intermediates`]); empty without one.
    pub(crate) fn intermediates(&self, index: usize) -> &[TensorId] {
        self.rewrite(index)
            .map(|r| r.intermediates.as_slice())
            .unwrap_or_default()
    }

    /// True when operator `index` is done by another one.
    pub(crate) fn is_absorbed(&self, index: usize) -> bool {
        self.absorbed.get(index).copied().unwrap_or(false)
    }
}

/// Finds what can be fused in `sg`. `constant(id)` gives a constant tensor's bytes (in the
/// model or folded at prepare time); operators marked in `skip` (folded into constants) are
/// ignored.
pub(crate) fn plan<'c>(
    sg: &Subgraph,
    tensors: &[TensorInfo],
    skip: &[bool],
    constant: impl Fn(TensorId) -> Option<&'c [u8]>,
) -> Fusion {
    let count = sg.operators.len();
    let mut fusion = Fusion {
        absorbed: vec![false; count],
        rewritten: vec![None; count],
    };
    // Readers of every tensor, graph outputs counting as one.
    let mut readers = vec![0usize; sg.tensors.len()];
    let mut reader = vec![None; sg.tensors.len()];
    for (index, op) in sg.operators.iter().enumerate() {
        if skip.get(index).copied().unwrap_or(false) {
            continue;
        }
        for id in op.present_inputs() {
            if let Some(n) = readers.get_mut(id.index()) {
                *n += 1;
                reader[id.index()] = Some(index);
            }
        }
    }
    for id in &sg.outputs {
        if let Some(n) = readers.get_mut(id.index()) {
            *n += 1;
        }
    }
    for (index, op) in sg.operators.iter().enumerate() {
        if skip.get(index).copied().unwrap_or(false) || !matches!(op.op, Op::Pad | Op::PadV2) {
            continue;
        }
        let Some(&out) = op.outputs.first() else {
            continue;
        };
        let Some(consumer) = reader.get(out.index()).copied().flatten() else {
            continue;
        };
        if readers.get(out.index()) != Some(&1)
            || op.outputs.len() != 1
            || consumer <= index
            || fusion.rewritten[consumer].is_some()
        {
            continue;
        }
        let Some(conv) = sg.operators.get(consumer) else {
            continue;
        };
        if let Some(padding) = fusable_pad(op, conv, tensors, &constant) {
            let mut rewired = conv.clone();
            if let (Some(Some(first)), Some(Some(x))) =
                (rewired.inputs.first_mut(), op.inputs.first())
            {
                *first = *x;
                fusion.rewritten[consumer] = Some(Rewrite {
                    plain_inputs: rewired.inputs.len(),
                    plain_outputs: rewired.outputs.clone(),
                    op: rewired,
                    padding: Some(padding),
                    output: None,
                    fused: Vec::new(),
                    intermediates: Vec::new(),
                });
                fusion.absorbed[index] = true;
            }
        }
    }
    // Element-wise operators into the float convolution before them.
    let mut producer = vec![None; sg.tensors.len()];
    for (index, op) in sg.operators.iter().enumerate() {
        for id in &op.outputs {
            if let Some(p) = producer.get_mut(id.index()) {
                *p = Some(index);
            }
        }
    }
    for (index, conv) in sg.operators.iter().enumerate() {
        if skip.get(index).copied().unwrap_or(false) {
            continue;
        }
        let Some(&t) = conv.outputs.first() else {
            continue;
        };
        let Some(next) = reader.get(t.index()).copied().flatten() else {
            continue;
        };
        if readers.get(t.index()) != Some(&1) || conv.outputs.len() != 1 || next <= index {
            continue;
        }
        let Some(element_wise) = sg.operators.get(next) else {
            continue;
        };
        let absorbed = &fusion.absorbed;
        let available = |id: TensorId| match producer.get(id.index()).copied().flatten() {
            None => true,
            Some(p) => p < index && !absorbed[p],
        };
        let Some((output, extra)) =
            fusable_output(conv, element_wise, tensors, &constant, &available)
        else {
            continue;
        };
        let mut rewrite = fusion.rewritten[index].take().unwrap_or_else(|| Rewrite {
            op: conv.clone(),
            padding: None,
            output: None,
            plain_inputs: conv.inputs.len(),
            plain_outputs: conv.outputs.clone(),
            fused: Vec::new(),
            intermediates: Vec::new(),
        });
        while rewrite.op.inputs.len() < 3 {
            rewrite.op.inputs.push(None);
        }
        rewrite.plain_inputs = rewrite.op.inputs.len();
        rewrite.op.inputs.push(Some(extra));
        rewrite.intermediates = vec![t];
        rewrite.op.outputs = element_wise.outputs.clone();
        rewrite.output = Some(output);
        rewrite.fused.push(next);
        fusion.absorbed[next] = true;
        // An ADD's sum may go on into a PRELU.
        if let (FusedOutput::Add(activation), Some(&sum)) = (output, element_wise.outputs.first())
            && readers.get(sum.index()) == Some(&1)
            && let Some(last) = reader.get(sum.index()).copied().flatten()
            && let Some(prelu) = sg.operators.get(last)
            && let Some(alpha) = prelu_slopes(sum, prelu, tensors, &constant)
        {
            rewrite.op.inputs.push(Some(alpha));
            rewrite.intermediates.push(sum);
            rewrite.op.outputs = prelu.outputs.clone();
            rewrite.output = Some(FusedOutput::AddPrelu(activation));
            rewrite.fused.push(last);
            fusion.absorbed[last] = true;
        }
        // The fused step computes what the element-wise operators did.
        for id in &rewrite.op.outputs {
            if let Some(p) = producer.get_mut(id.index()) {
                *p = Some(index);
            }
        }
        fusion.rewritten[index] = Some(rewrite);
    }
    fusion
}

/// The constant slopes, one per channel, of `prelu` when it reads `x` and writes a tensor of
/// the same shape and kind ([`Kind`]).
fn prelu_slopes<'c>(
    x: TensorId,
    prelu: &Operator,
    tensors: &[TensorInfo],
    constant: &impl Fn(TensorId) -> Option<&'c [u8]>,
) -> Option<TensorId> {
    let info = |id: TensorId| tensors.get(id.index());
    let input = info(x)?;
    let result = info(*prelu.outputs.first()?)?;
    let channels = *input.shape.last()?;
    let operands: Vec<TensorId> = prelu.present_inputs().collect();
    match (&prelu.op, operands.as_slice()) {
        (Op::Prelu, &[first, alpha]) if first == x && alpha != x => {
            let slope = info(alpha)?;
            let fits = Kind::of(input).is_some()
                && Kind::of(result) == Kind::of(input)
                && Kind::of(slope) == Kind::of(input)
                && result.shape == input.shape
                && prelu.outputs.len() == 1
                && slope.num_elements() == channels
                && slope.shape.last() == Some(&channels)
                && slope.rank() <= input.rank();
            (fits && constant(alpha).is_some()).then_some(alpha)
        }
        _ => None,
    }
}

/// The kinds of tensor a fused chain may hold: all float, or all quantized per tensor in one
/// 8-bit type (the filter's per-channel scales aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Float,
    Quantized(DType),
}

impl Kind {
    fn of(t: &TensorInfo) -> Option<Kind> {
        match (t.dtype, &t.quant) {
            (DType::Float32, None) => Some(Kind::Float),
            (DType::Int8 | DType::UInt8, Some(q)) if q.scale.len() == 1 => {
                Some(Kind::Quantized(t.dtype))
            }
            _ => None,
        }
    }
}

/// The fused output stage when `element_wise` (the only reader of `conv`'s output) can run in
/// `conv`'s output stage, with its other operand: a CONV_2D of one group, constant weights
/// and bias, float or 8-bit quantized throughout, followed by a PRELU with a constant slope
/// per channel or an ADD of a tensor of the same shape computed before the convolution
/// (`available`).
fn fusable_output<'c>(
    conv: &Operator,
    element_wise: &Operator,
    tensors: &[TensorInfo],
    constant: &impl Fn(TensorId) -> Option<&'c [u8]>,
    available: &impl Fn(TensorId) -> bool,
) -> Option<(FusedOutput, TensorId)> {
    let t = *conv.outputs.first()?;
    let info = |id: TensorId| tensors.get(id.index());
    let input = info((*conv.inputs.first()?)?)?;
    let filter_id = (*conv.inputs.get(1)?)?;
    let filter = info(filter_id)?;
    let out = info(t)?;
    let result = info(*element_wise.outputs.first()?)?;
    let kind = Kind::of(out);
    let same_kind = kind.is_some()
        && [input, result].iter().all(|t| Kind::of(t) == kind)
        && match kind {
            Some(Kind::Quantized(dtype)) => filter.dtype == dtype && filter.quant.is_some(),
            _ => Kind::of(filter) == kind,
        };
    let bias_known = match conv.inputs.get(2).copied().flatten() {
        None => true,
        Some(b) => constant(b).is_some(),
    };
    // One group: the filter reads every input channel.
    if !matches!(conv.op, Op::Conv2D(_))
        || !same_kind
        || constant(filter_id).is_none()
        || !bias_known
        || filter.shape.last() != input.shape.last()
        || element_wise.outputs.len() != 1
        || result.shape != out.shape
    {
        return None;
    }
    let operands: Vec<TensorId> = element_wise.present_inputs().collect();
    match (&element_wise.op, operands.as_slice()) {
        (Op::Prelu, _) => {
            prelu_slopes(t, element_wise, tensors, constant).map(|a| (FusedOutput::Prelu, a))
        }
        (Op::Add(options), &[a, b]) if (a == t) != (b == t) => {
            let other = if a == t { b } else { a };
            let o = info(other)?;
            (Kind::of(o) == kind && o.shape == out.shape && available(other))
                .then_some((FusedOutput::Add(options.activation), other))
        }
        _ => None,
    }
}

/// The padding `pad` adds when `conv` can take it over (see the module documentation).
fn fusable_pad<'c>(
    pad: &Operator,
    conv: &Operator,
    tensors: &[TensorInfo],
    constant: &impl Fn(TensorId) -> Option<&'c [u8]>,
) -> Option<SpatialPadding> {
    let info = |i: Option<&Option<TensorId>>| tensors.get((*i?)?.index());
    let input_id = (*pad.inputs.first()?)?;
    let input = tensors.get(input_id.index())?;
    let output = tensors.get(pad.outputs.first()?.index())?;
    // The PAD's output is the convolution's input, and nothing else of it.
    let padded = *pad.outputs.first()?;
    if conv.inputs.first() != Some(&Some(padded))
        || conv.inputs.iter().skip(1).any(|i| *i == Some(padded))
        || !matches!(conv.op, Op::Conv2D(_) | Op::DepthwiseConv2D(_))
        || input.rank() != 4
        || input.dtype != output.dtype
    {
        return None;
    }
    let filter_id = (*conv.inputs.get(1)?)?;
    let filter = info(conv.inputs.get(1))?;
    match input.dtype {
        DType::Float32 => {
            // Skipped padding taps add what 0 * w adds only for finite weights.
            let bytes = constant(filter_id)?;
            let finite = filter.dtype == DType::Float32
                && bytes.len() == filter.byte_len()
                && bytes
                    .chunks_exact(4)
                    .all(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite());
            if !finite || !pad_value_is(pad, tensors, constant, 0.0f32.to_le_bytes().as_slice()) {
                return None;
            }
        }
        DType::Int8 | DType::UInt8 | DType::Int16 => {
            if !matches!(filter.dtype, DType::Int8 | DType::UInt8 | DType::Int4) {
                return None;
            }
            let (in_params, out_params) = (input.scale_zero_point()?, output.scale_zero_point()?);
            if in_params.0.to_bits() != out_params.0.to_bits() || in_params.1 != out_params.1 {
                return None;
            }
            let zero_point = in_params.1;
            let bytes: Vec<u8> = match input.dtype {
                DType::Int8 => vec![i8::try_from(zero_point).ok()? as u8],
                DType::UInt8 => vec![u8::try_from(zero_point).ok()?],
                _ => i16::try_from(zero_point).ok()?.to_le_bytes().to_vec(),
            };
            if !pad_value_is(pad, tensors, constant, &bytes) {
                return None;
            }
        }
        _ => return None,
    }
    // Paddings: [4, 2] constant integers, zero for the batch and channel dimensions.
    let paddings_id = (*pad.inputs.get(1)?)?;
    let paddings_info = tensors.get(paddings_id.index())?;
    let bytes = constant(paddings_id)?;
    let values: Vec<i64> = match paddings_info.dtype {
        DType::Int32 => bytes
            .chunks_exact(4)
            .map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            .collect(),
        DType::Int64 => bytes
            .chunks_exact(8)
            .map(|b| {
                let mut v = [0u8; 8];
                v.copy_from_slice(b);
                i64::from_le_bytes(v)
            })
            .collect(),
        _ => return None,
    };
    if paddings_info.shape.as_slice() != [4, 2] || values.len() != 8 {
        return None;
    }
    let size = |v: i64| usize::try_from(v).ok().filter(|&v| v <= i32::MAX as usize);
    let [b0, b1, top, bottom, left, right, c0, c1] = <[i64; 8]>::try_from(values).ok()?;
    if b0 != 0 || b1 != 0 || c0 != 0 || c1 != 0 {
        return None;
    }
    let padding = SpatialPadding {
        top: size(top)?,
        bottom: size(bottom)?,
        left: size(left)?,
        right: size(right)?,
    };
    // The output must be the padded input (the PAD kernel checks the same).
    let expected = [
        input.shape[0],
        input.shape[1] + padding.top + padding.bottom,
        input.shape[2] + padding.left + padding.right,
        input.shape[3],
    ];
    (output.shape.as_slice() == expected).then_some(padding)
}

/// True when the PAD pads with the element whose bytes are `value`: PAD's own (zero, or the
/// zero point, which the caller passes), or PADV2's constant input 2.
fn pad_value_is<'c>(
    pad: &Operator,
    tensors: &[TensorInfo],
    constant: &impl Fn(TensorId) -> Option<&'c [u8]>,
    value: &[u8],
) -> bool {
    match pad.inputs.get(2).copied().flatten() {
        None => true,
        Some(id) => {
            tensors
                .get(id.index())
                .is_some_and(|t| t.num_elements() == 1)
                && constant(id) == Some(value)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

    use octet_core::{
        ActivationFunction, Conv2DOptions, DType, DepthwiseConv2DOptions, Model, Op, Operator,
        Padding, QuantParams, Shape, Subgraph, Tensor,
    };

    use crate::{Interpreter, InterpreterOptions, Isa};

    /// A small xorshift generator: test data without a dependency.
    struct Rng(u64);

    impl Rng {
        fn with_seed(seed: u64) -> Self {
            Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
        }
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn f32(&mut self) -> f32 {
            (self.next() >> 40) as f32 / (1u64 << 24) as f32
        }
        fn u8(&mut self) -> u8 {
            (self.next() >> 56) as u8
        }
        fn i32(&mut self, span: i32) -> i32 {
            (self.next() % (2 * span as u64)) as i32 - span
        }
    }

    /// A PAD (paddings `pads`, value `value` for PADV2) feeding a convolution, as a model; when
    /// `expose` the PAD's output is a graph output too, which keeps it from being fused.
    struct Case {
        conv: Op,
        dtype: DType,
        input: [i32; 4],
        pads: [i32; 8],
        value: Option<Vec<u8>>,
        filter: (Vec<i32>, Vec<u8>),
        bias: Vec<u8>,
        out_shape: [i32; 4],
    }

    fn quant(dtype: DType) -> Option<QuantParams> {
        match dtype {
            DType::Int8 => Some(QuantParams::per_tensor(0.05, -3)),
            DType::UInt8 => Some(QuantParams::per_tensor(0.05, 131)),
            _ => None,
        }
    }

    fn model(case: &Case, expose: bool) -> Model {
        let mut model = Model {
            schema_version: 3,
            ..Model::default()
        };
        let mut sg = Subgraph::default();
        let mut add = |name: &str, dtype: DType, shape: &[i32], q, data: Option<Vec<u8>>| {
            let mut tensor = Tensor::new(name, dtype, Shape::new(shape.to_vec()));
            tensor.quant = q;
            if let Some(bytes) = data {
                tensor.buffer = model.add_buffer(bytes).unwrap();
            }
            sg.add_tensor(tensor).unwrap()
        };
        let [n, h, w, c] = case.input;
        let p = case.pads;
        let padded = [
            n + p[0] + p[1],
            h + p[2] + p[3],
            w + p[4] + p[5],
            c + p[6] + p[7],
        ];
        let x = add("x", case.dtype, &case.input, quant(case.dtype), None);
        let pads_bytes = p.iter().flat_map(|v| v.to_le_bytes()).collect();
        let pads = add("pads", DType::Int32, &[4, 2], None, Some(pads_bytes));
        let value = case
            .value
            .clone()
            .map(|v| add("value", case.dtype, &[], quant(case.dtype), Some(v)));
        let y = add("padded", case.dtype, &padded, quant(case.dtype), None);
        let filter_quant = quant(case.dtype).map(|_| match case.dtype {
            DType::Int8 => QuantParams::per_tensor(0.02, 0),
            _ => QuantParams::per_tensor(0.02, 120),
        });
        let filter = add(
            "filter",
            case.dtype,
            &case.filter.0,
            filter_quant,
            Some(case.filter.1.clone()),
        );
        let bias_dtype = match case.dtype {
            DType::Float32 => DType::Float32,
            _ => DType::Int32,
        };
        let bias_quant = quant(case.dtype).map(|_| QuantParams::per_tensor(0.001, 0));
        let channels = *case.filter.0.last().unwrap();
        let bias_shape = [match case.conv {
            Op::Conv2D(_) => case.filter.0[0],
            _ => channels,
        }];
        let bias = add(
            "bias",
            bias_dtype,
            &bias_shape,
            bias_quant,
            Some(case.bias.clone()),
        );
        let out_quant = quant(case.dtype).map(|_| QuantParams::per_tensor(0.1, 5));
        let out = add("out", case.dtype, &case.out_shape, out_quant, None);
        sg.inputs = vec![x];
        sg.outputs = if expose { vec![out, y] } else { vec![out] };
        let (op, inputs) = match &value {
            Some(v) => (Op::PadV2, vec![Some(x), Some(pads), Some(*v)]),
            None => (Op::Pad, vec![Some(x), Some(pads)]),
        };
        sg.operators.push(Operator::new(op, inputs, vec![y]));
        sg.operators.push(Operator::new(
            case.conv.clone(),
            vec![Some(y), Some(filter), Some(bias)],
            vec![out],
        ));
        model.subgraphs.push(sg);
        model
    }

    /// Runs the case fused and unfused on every instruction set and two thread counts: the
    /// outputs must be identical, and observing the fused model must show the PAD's output.
    fn check(case: &Case, fused: bool) {
        let mut rng = Rng::with_seed(7);
        let elements: i32 = case.input.iter().product();
        let input: Vec<u8> = match case.dtype {
            DType::Float32 => (0..elements)
                .flat_map(|_| (rng.f32() * 4.0 - 2.0).to_le_bytes())
                .collect(),
            _ => (0..elements).map(|_| rng.u8()).collect(),
        };
        for isa in Isa::supported() {
            for threads in [1, 2] {
                let options = InterpreterOptions {
                    threads,
                    isa: Some(isa),
                };
                let run = |expose: bool| {
                    let model = model(case, expose);
                    let mut interpreter = Interpreter::with_options(&model, options).unwrap();
                    interpreter.set_input(0, &input).unwrap();
                    interpreter.invoke().unwrap();
                    let out = interpreter.output(0).unwrap().to_vec();
                    let mut observed = Vec::new();
                    interpreter
                        .invoke_observed(&mut |obs| observed.push(obs.bytes.to_vec()))
                        .unwrap();
                    let names: Vec<String> = interpreter
                        .operators()
                        .iter()
                        .map(|o| o.op.clone())
                        .collect();
                    (out, observed, names)
                };
                let (out, observed, names) = run(false);
                let (reference, reference_observed, reference_names) = run(true);
                assert_eq!(out, reference, "{isa}, {threads} threads");
                assert_eq!(observed, reference_observed, "{isa}, {threads} threads");
                assert_eq!(reference_names.len(), 2);
                assert_eq!(names.len(), if fused { 1 } else { 2 }, "{names:?}");
                if fused {
                    assert!(names[0].starts_with("PAD+"), "{names:?}");
                }
            }
        }
    }

    fn conv(stride: i32, padding: Padding) -> Op {
        Op::Conv2D(Conv2DOptions {
            padding,
            stride_w: stride,
            stride_h: stride,
            activation: ActivationFunction::Relu6,
            dilation_w: 1,
            dilation_h: 1,
            ..Conv2DOptions::default()
        })
    }

    fn depthwise(stride: i32, padding: Padding) -> Op {
        Op::DepthwiseConv2D(DepthwiseConv2DOptions {
            padding,
            stride_w: stride,
            stride_h: stride,
            depth_multiplier: 1,
            activation: ActivationFunction::None,
            dilation_w: 1,
            dilation_h: 1,
        })
    }

    fn floats(n: i32, seed: u64) -> Vec<u8> {
        let mut rng = Rng::with_seed(seed);
        (0..n)
            .flat_map(|_| (rng.f32() - 0.5).to_le_bytes())
            .collect()
    }

    fn bytes(n: i32, seed: u64) -> Vec<u8> {
        let mut rng = Rng::with_seed(seed);
        (0..n).map(|_| rng.u8()).collect()
    }

    fn ints(n: i32, seed: u64) -> Vec<u8> {
        let mut rng = Rng::with_seed(seed);
        (0..n).flat_map(|_| rng.i32(3000).to_le_bytes()).collect()
    }

    #[test]
    fn spatial_pads_fold_into_convolutions_exactly() {
        for dtype in [DType::Float32, DType::Int8, DType::UInt8] {
            let weights = |n, seed| match dtype {
                DType::Float32 => floats(n, seed),
                _ => bytes(n, seed),
            };
            let bias = |n, seed| match dtype {
                DType::Float32 => floats(n, seed),
                _ => ints(n, seed),
            };
            // TensorFlow's asymmetric SAME before a stride-2 VALID depthwise (3 and 20
            // channels: partial blocks), and a padding on every side.
            for (channels, pads, stride) in [
                (3, [0, 0, 0, 1, 0, 1, 0, 0], 2),
                (20, [0, 0, 0, 1, 0, 1, 0, 0], 2),
                (20, [0, 0, 1, 2, 2, 1, 0, 0], 1),
            ] {
                let (h, w) = (9 + pads[2] + pads[3], 11 + pads[4] + pads[5]);
                let out = |s: i32| [1, (h - 3) / s + 1, (w - 3) / s + 1, channels];
                check(
                    &Case {
                        conv: depthwise(stride, Padding::Valid),
                        dtype,
                        input: [1, 9, 11, channels],
                        pads,
                        value: None,
                        filter: (vec![1, 3, 3, channels], weights(9 * channels, 1)),
                        bias: bias(channels, 2),
                        out_shape: out(stride),
                    },
                    true,
                );
                let out_c = 7;
                let mut shape = out(stride);
                shape[3] = out_c;
                check(
                    &Case {
                        conv: conv(stride, Padding::Valid),
                        dtype,
                        input: [1, 9, 11, channels],
                        pads,
                        value: None,
                        filter: (
                            vec![out_c, 3, 3, channels],
                            weights(9 * channels * out_c, 3),
                        ),
                        bias: bias(out_c, 4),
                        out_shape: shape,
                    },
                    true,
                );
            }
            // SAME on top of the PAD's padding.
            check(
                &Case {
                    conv: depthwise(1, Padding::Same),
                    dtype,
                    input: [1, 6, 5, 4],
                    pads: [0, 0, 1, 0, 0, 2, 0, 0],
                    value: None,
                    filter: (vec![1, 3, 3, 4], weights(36, 5)),
                    bias: bias(4, 6),
                    out_shape: [1, 7, 7, 4],
                },
                true,
            );
        }
    }

    #[test]
    fn other_pads_stay() {
        // Channel padding, a non-zero PADV2 value and non-finite weights are not fused (and
        // still computed right).
        let channel_pad = Case {
            conv: depthwise(1, Padding::Valid),
            dtype: DType::Float32,
            input: [1, 5, 5, 3],
            pads: [0, 0, 1, 1, 1, 1, 0, 1],
            value: None,
            filter: (vec![1, 3, 3, 4], floats(36, 1)),
            bias: floats(4, 2),
            out_shape: [1, 5, 5, 4],
        };
        check(&channel_pad, false);
        let nonzero = Case {
            pads: [0, 0, 1, 1, 1, 1, 0, 0],
            value: Some(1.5f32.to_le_bytes().to_vec()),
            filter: (vec![1, 3, 3, 3], floats(27, 1)),
            bias: floats(3, 2),
            out_shape: [1, 5, 5, 3],
            ..channel_pad
        };
        check(&nonzero, false);
        let mut weights = floats(27, 1);
        weights[..4].copy_from_slice(&f32::INFINITY.to_le_bytes());
        let infinite = Case {
            value: None,
            filter: (vec![1, 3, 3, 3], weights),
            ..nonzero
        };
        check(&infinite, false);
        let zero = Case {
            value: Some(0f32.to_le_bytes().to_vec()),
            filter: (vec![1, 3, 3, 3], floats(27, 1)),
            ..infinite
        };
        check(&zero, true);
    }

    /// Quantization of the element-wise test's tensor `name` in `dtype` (none for float): each
    /// tensor its own scale and zero point, so every requantization is a real one.
    fn element_wise_quant(dtype: DType, name: &str) -> Option<QuantParams> {
        let (scale, zero_point) = match name {
            "x" => (0.05, -3),
            "filter" => (0.02, 0),
            "bias" => (0.001, 0),
            "conv" => (0.1, 5),
            n if n.starts_with("add") => (0.12, -7),
            n if n.starts_with("alpha") => (0.01, 2),
            _ => (0.09, 1),
        };
        let zero_point = match (dtype, name) {
            (DType::Float32, _) => return None,
            (_, "bias") => 0,
            (DType::UInt8, "filter") => 120,
            (DType::UInt8, _) => zero_point + 128,
            _ => zero_point,
        };
        Some(QuantParams::per_tensor(scale, zero_point))
    }

    /// A CONV_2D of `c` channels (3x3 SAME, ReLU) over an `h` x `w` input in `dtype` (float32,
    /// int8 or uint8), then the element-wise operators `tail` ("add": ADD of the input,
    /// "prelu": PRELU), as a model; `expose` makes every intermediate a graph output, which
    /// keeps it from being fused.
    fn element_wise_model(dtype: DType, [h, w, c]: [i32; 3], tail: &[&str], expose: bool) -> Model {
        let mut model = Model {
            schema_version: 3,
            ..Model::default()
        };
        let mut sg = Subgraph::default();
        let mut add = |name: String, dtype: DType, shape: &[i32], data: Option<Vec<u8>>| {
            let mut tensor = Tensor::new(name.clone(), dtype, Shape::new(shape.to_vec()));
            tensor.quant = element_wise_quant(dtype, &name);
            if let Some(bytes) = data {
                tensor.buffer = model.add_buffer(bytes).unwrap();
            }
            sg.add_tensor(tensor).unwrap()
        };
        let float = dtype == DType::Float32;
        let values = |n: i32, seed: u64| {
            if float {
                floats(n, seed)
            } else {
                bytes(n, seed)
            }
        };
        let (bias_dtype, bias) = if float {
            (DType::Float32, floats(c, 12))
        } else {
            (DType::Int32, ints(c, 12))
        };
        let shape = [1, h, w, c];
        let x = add("x".into(), dtype, &shape, None);
        let filter = add(
            "filter".into(),
            dtype,
            &[c, 3, 3, c],
            Some(values(9 * c * c, 11)),
        );
        let bias = add("bias".into(), bias_dtype, &[c], Some(bias));
        let mut current = add("conv".into(), dtype, &shape, None);
        let mut outputs = vec![current];
        let mut operators = vec![Operator::new(
            Op::Conv2D(Conv2DOptions {
                padding: Padding::Same,
                stride_w: 1,
                stride_h: 1,
                activation: ActivationFunction::Relu,
                dilation_w: 1,
                dilation_h: 1,
                ..Conv2DOptions::default()
            }),
            vec![Some(x), Some(filter), Some(bias)],
            vec![current],
        )];
        for (i, op) in tail.iter().enumerate() {
            let next = add(format!("{op}{i}"), dtype, &shape, None);
            let operator = match *op {
                "add" => Operator::new(
                    Op::Add(octet_core::AddOptions {
                        activation: ActivationFunction::Relu6,
                        ..octet_core::AddOptions::default()
                    }),
                    vec![Some(x), Some(current)],
                    vec![next],
                ),
                _ => {
                    let alpha = add(format!("alpha{i}"), dtype, &[1, 1, c], Some(values(c, 13)));
                    Operator::new(Op::Prelu, vec![Some(current), Some(alpha)], vec![next])
                }
            };
            operators.push(operator);
            current = next;
            outputs.push(current);
        }
        sg.inputs = vec![x];
        sg.operators = operators;
        sg.outputs = if expose { outputs } else { vec![current] };
        model.subgraphs.push(sg);
        model
    }

    /// Float, int8 and uint8 convolutions with PRELU, ADD and ADD+PRELU fused into their output
    /// stage give what the operators give one by one, on every instruction set and thread
    /// count, also for outputs of many blocks of rows (the integer stage runs block by block).
    #[test]
    fn element_wise_operators_fuse_into_convolutions_exactly() {
        for dtype in [DType::Float32, DType::Int8, DType::UInt8] {
            element_wise_fusion_is_exact(dtype);
        }
    }

    fn element_wise_fusion_is_exact(dtype: DType) {
        for (hwc, tail, name) in [
            ([9, 13, 16], &["prelu"][..], "CONV_2D+PRELU"),
            ([9, 13, 20], &["add"][..], "CONV_2D+ADD"),
            ([9, 13, 40], &["add", "prelu"][..], "CONV_2D+ADD+PRELU"),
            ([9, 13, 7], &["add", "prelu"][..], "CONV_2D+ADD+PRELU"),
            ([9, 13, 64], &["prelu", "add"][..], "CONV_2D+PRELU"),
            ([33, 40, 24], &["add", "prelu"][..], "CONV_2D+ADD+PRELU"),
        ] {
            let [h, w, c] = hwc;
            let input: Vec<u8> = if dtype == DType::Float32 {
                floats(h * w * c, 14)
                    .chunks_exact(4)
                    .flat_map(|b| {
                        (f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * 6.0).to_le_bytes()
                    })
                    .collect()
            } else {
                bytes(h * w * c, 14)
            };
            for isa in Isa::supported() {
                for threads in [1, 2] {
                    let options = InterpreterOptions {
                        threads,
                        isa: Some(isa),
                    };
                    let run = |expose: bool| {
                        let model = element_wise_model(dtype, hwc, tail, expose);
                        let mut interpreter = Interpreter::with_options(&model, options).unwrap();
                        interpreter.set_input(0, &input).unwrap();
                        interpreter.invoke().unwrap();
                        let last = interpreter.num_outputs() - 1;
                        let out = interpreter.output(last).unwrap().to_vec();
                        let mut observed = Vec::new();
                        interpreter
                            .invoke_observed(&mut |obs| {
                                observed.push((obs.tensor, obs.bytes.to_vec()));
                            })
                            .unwrap();
                        let again = interpreter.output(last).unwrap().to_vec();
                        let names: Vec<String> = interpreter
                            .operators()
                            .iter()
                            .map(|o| o.op.clone())
                            .collect();
                        (out, again, observed, names)
                    };
                    let (out, again, observed, names) = run(false);
                    let (reference, _, reference_observed, _) = run(true);
                    let what = format!("{dtype}, {hwc:?}, {tail:?}, {isa}, {threads} threads");
                    assert_eq!(out, reference, "{what}");
                    assert_eq!(again, reference, "{what}: observed run");
                    assert_eq!(observed, reference_observed, "{what}");
                    assert_eq!(names.first().map(String::as_str), Some(name), "{what}");
                }
            }
        }
    }
}
