//! The hybrid ("dynamic range") matrix products: FULLY_CONNECTED and BATCH_MATMUL with float
//! activations and int8 weights. Each input row is quantized on the fly to int8
//! (symmetrically, or asymmetrically with a zero point), multiplied with the weights in `int32`,
//! and the sum scaled back to float with the row's and the weights' scales.
//!
//! The hybrid FULLY_CONNECTED goes through `tensor_utils`, which LiteRT's x86 wheel compiles to
//! its SSE versions; two of their integer quirks are reproduced ([`accumulate_hybrid_sse`],
//! [`row_sum_sse`]). The hybrid BATCH_MATMUL walks its batches in a peculiar way, also
//! reproduced ([`hybrid_blocks`]).

use octet_core::{
    ActivationFunction, BatchMatMulOptions, DType, FullyConnectedOptions, QuantParams, TensorData,
};

use super::batch_matmul::{MatmulDims, extended, transpose_lhs, transpose_rhs};
use super::{FcDims, filter_quant, int8_weights, prefix, prefix_mut};
use crate::kernels::gemm::Weights;
use crate::kernels::hybrid_input::{asymmetric_quantize, symmetric_quantize};
use crate::{Inputs, Kernel, OpContext, OpIo, RuntimeError, TensorInfo};

/// Int8 weights of a hybrid kernel: int8 or uint8 bytes read as int8 (as TFLite does), or
/// weights prepared at build time (unpacked int4 / int2, transposed constants).
enum HybridWeights {
    InputBytes,
    Owned(Vec<i8>),
}

impl HybridWeights {
    fn get<'a>(&'a self, inputs: &'a Inputs<'_>) -> Result<&'a [i8], RuntimeError> {
        match self {
            HybridWeights::InputBytes => Ok(bytemuck::cast_slice(inputs.bytes(1)?)),
            HybridWeights::Owned(w) => Ok(w),
        }
    }
}

/// `Σ w * q` over one row of int8 weights and int8 quantized inputs (hybrid BATCH_MATMUL).
pub(super) fn accumulate_hybrid(weights: &[i8], quantized: &[i8]) -> i32 {
    weights.iter().zip(quantized).fold(0i32, |acc, (&w, &q)| {
        acc.wrapping_add(i32::from(w) * i32::from(q))
    })
}

/// `Σ w * q` as the hybrid FULLY_CONNECTED computes it in LiteRT's x86 build, whose
/// `tensor_utils::MatrixBatchVectorMultiplyAccumulate` is the SSE one. Its blocks of 16 columns
/// move the input's sign onto the weight with `_mm_sign_epi8` before an unsigned-by-signed
/// multiply, and negating a weight of -128 wraps back to -128: for the columns in those blocks
/// a weight of -128 times a negative input contributes `128 * q` instead of `-128 * q`. (The
/// TFLite quantizer keeps weights in [-127, 127], where this never happens.)
pub(super) fn accumulate_hybrid_sse(weights: &[i8], quantized: &[i8]) -> i32 {
    let blocked = weights.len() & !15;
    weights
        .iter()
        .zip(quantized)
        .enumerate()
        .fold(0i32, |acc, (c, (&w, &q))| {
            let product = if c < blocked && w == i8::MIN && q < 0 {
                128 * i32::from(q)
            } else {
                i32::from(w) * i32::from(q)
            };
            acc.wrapping_add(product)
        })
}

/// The sum of one weight row as LiteRT's x86 `SseReductionSumVector` computes it: blocks of 16
/// columns add pairs into eight `int16` lanes (which wrap), an SSE4.1 postamble adds the next 8
/// columns one per lane, the lanes are summed in `int32`, then the rest column by column.
pub(super) fn row_sum_sse(row: &[i8]) -> i32 {
    let mut lanes = [0i16; 8];
    let blocked = row.len() & !15;
    let (blocks, rest) = row.split_at(blocked);
    for block in blocks.chunks_exact(16) {
        for (lane, pair) in lanes.iter_mut().zip(block.chunks_exact(2)) {
            *lane = lane.wrapping_add(i16::from(pair[0]) + i16::from(pair[1]));
        }
    }
    let rest = if rest.len() >= 8 {
        for (lane, &v) in lanes.iter_mut().zip(&rest[..8]) {
            *lane = lane.wrapping_add(i16::from(v));
        }
        &rest[8..]
    } else {
        rest
    };
    let sum = lanes
        .iter()
        .fold(0i32, |s, &l| s.wrapping_add(i32::from(l)));
    rest.iter().fold(sum, |s, &v| s.wrapping_add(i32::from(v)))
}

/// Quantizes `rows` rows of `depth` floats each, one scale (and zero point) per row, as TFLite's
/// `BatchQuantizeFloats` does.
fn batch_quantize(
    input: &[f32],
    depth: usize,
    asymmetric: bool,
    quantized: &mut [i8],
    scaling: &mut [f32],
    offsets: &mut [i32],
) {
    let rows = input
        .chunks_exact(depth)
        .zip(quantized.chunks_exact_mut(depth))
        .zip(scaling.iter_mut().zip(offsets.iter_mut()));
    for ((x, q), (scale, offset)) in rows {
        if asymmetric {
            (*scale, *offset) = asymmetric_quantize(x, q);
        } else {
            *scale = symmetric_quantize(x, q);
            *offset = 0;
        }
    }
}

/// TFLite `ApplyActivationToVector` (the hybrid kernels accept every fused activation).
fn apply_activation(activation: ActivationFunction, values: &mut [f32]) {
    // std::max(a, b) is `(a < b) ? b : a`, std::min(a, b) is `(b < a) ? b : a`.
    let max = |a: f32, b: f32| if a < b { b } else { a };
    let min = |a: f32, b: f32| if b < a { b } else { a };
    match activation {
        ActivationFunction::None => {}
        ActivationFunction::Relu => values.iter_mut().for_each(|v| *v = max(0.0, *v)),
        ActivationFunction::ReluN1To1 => {
            values.iter_mut().for_each(|v| *v = max(-1.0, min(*v, 1.0)));
        }
        ActivationFunction::Relu6 => values.iter_mut().for_each(|v| *v = max(0.0, min(*v, 6.0))),
        ActivationFunction::Tanh => values.iter_mut().for_each(|v| *v = v.tanh()),
        ActivationFunction::SignBit => values
            .iter_mut()
            .for_each(|v| *v = if v.is_sign_negative() { 1.0 } else { 0.0 }),
    }
}

/// The weights' scale of a hybrid kernel.
enum WeightScale {
    PerTensor(f32),
    PerChannel(Vec<f32>),
}

/// Int8 weights for a hybrid kernel: int8 and uint8 are read as stored (uint8 bytes as int8, as
/// TFLite does), int4 / int2 constants are unpacked now.
fn hybrid_weights(
    ctx: &OpContext<'_>,
    filter: &TensorInfo,
    q: &QuantParams,
) -> Result<HybridWeights, RuntimeError> {
    match int8_weights(ctx, filter, q)? {
        Weights::Owned(w) => Ok(HybridWeights::Owned(w)),
        Weights::Input(_) => Ok(HybridWeights::InputBytes),
    }
}

pub(super) fn hybrid_fc(
    ctx: &OpContext<'_>,
    o: &FullyConnectedOptions,
    dims: FcDims,
    filter: &TensorInfo,
    bias: Option<&TensorInfo>,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    if bias.is_some_and(|b| b.dtype != DType::Float32) {
        return Err(ctx.unsupported_types());
    }
    let q = filter_quant(ctx, filter, dims.units)?;
    let scale = if q.is_per_axis() {
        WeightScale::PerChannel(q.scale.clone())
    } else {
        WeightScale::PerTensor(q.scale.first().copied().unwrap_or(0.0))
    };
    Ok(Box::new(HybridFc {
        dims,
        weights: hybrid_weights(ctx, filter, q)?,
        scale,
        asymmetric: o.asymmetric_quantize_inputs,
        activation: o.activation,
        quantized: vec![0; dims.batches * dims.depth],
        scaling: vec![0.0; dims.batches],
        offsets: vec![0; dims.batches],
        row_sums: vec![0; dims.units],
        row_sums_ready: false,
    }))
}

/// Hybrid FULLY_CONNECTED (TFLite `EvalHybridDense` with the portable tensor utils).
struct HybridFc {
    dims: FcDims,
    weights: HybridWeights,
    scale: WeightScale,
    asymmetric: bool,
    activation: ActivationFunction,
    quantized: Vec<i8>,
    scaling: Vec<f32>,
    offsets: Vec<i32>,
    /// Row sums of the weights; like TFLite, computed on the first run and kept.
    row_sums: Vec<i32>,
    row_sums_ready: bool,
}

impl Kernel for HybridFc {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let FcDims {
            batches,
            depth,
            units,
        } = self.dims;
        let (inputs, out) = io.single::<f32>()?;
        let input = prefix(inputs.get::<f32>(0)?, batches * depth, "the input")?;
        let weights = prefix(self.weights.get(&inputs)?, units * depth, "the weights")?;
        let out = prefix_mut(out, batches * units, "the output")?;
        if inputs.is_present(2) {
            let bias = prefix(inputs.get::<f32>(2)?, units, "the bias")?;
            out.chunks_exact_mut(units)
                .for_each(|row| row.copy_from_slice(bias));
        } else {
            out.fill(0.0);
        }
        // TFLite skips the product when the whole input is zero.
        if input.iter().all(|&v| v == 0.0) {
            apply_activation(self.activation, out);
            return Ok(());
        }

        batch_quantize(
            input,
            depth,
            self.asymmetric,
            &mut self.quantized,
            &mut self.scaling,
            &mut self.offsets,
        );
        if let WeightScale::PerTensor(s) = self.scale {
            self.scaling.iter_mut().for_each(|f| *f *= s);
        }
        if !self.row_sums_ready {
            for (sum, w) in self.row_sums.iter_mut().zip(weights.chunks_exact(depth)) {
                *sum = row_sum_sse(w);
            }
            self.row_sums_ready = true;
        }

        let rows = self
            .quantized
            .chunks_exact(depth)
            .zip(self.scaling.iter().zip(&self.offsets))
            .zip(out.chunks_exact_mut(units));
        for ((q, (&batch_scale, &batch_offset)), out_row) in rows {
            let units = weights.chunks_exact(depth).zip(&self.row_sums);
            for (u, ((w, &row_sum), y)) in units.zip(out_row).enumerate() {
                let dot =
                    accumulate_hybrid_sse(w, q).wrapping_sub(row_sum.wrapping_mul(batch_offset));
                let scale = match &self.scale {
                    WeightScale::PerTensor(_) => batch_scale,
                    WeightScale::PerChannel(s) => batch_scale * s[u],
                };
                *y += dot as f32 * scale;
            }
        }
        apply_activation(self.activation, out);
        Ok(())
    }
}

/// One matrix product of the hybrid BATCH_MATMUL, with the offsets TFLite's reference kernel
/// computes for it.
#[derive(Debug, Clone, Copy)]
pub(super) struct HybridBlock {
    /// Start of the weights matrix (`[cols, depth]` layout).
    pub(super) weights: usize,
    /// Start of the quantized LHS matrix (`[rows, depth]` layout).
    pub(super) quantized: usize,
    /// First scale / zero point of its rows.
    pub(super) scales: usize,
    /// First row sum of its weights.
    pub(super) row_sums: usize,
    /// Start of the output matrix.
    pub(super) output: usize,
}

/// The hybrid BATCH_MATMUL's per-block offsets, exactly as `reference_ops::BatchMatMul` (the
/// hybrid overload) walks its three 5-D batch dimensions. TFLite advances the scale and row-sum
/// pointers by one matrix per batch dimension rather than by the flattened batch index, so with
/// two or more non-trivial batch dimensions it pairs some matrices with another matrix's
/// scales; this reproduces it.
pub(super) fn hybrid_blocks(
    lhs_batch: &[usize],
    rhs_batch: &[usize],
    d: &MatmulDims,
) -> Vec<HybridBlock> {
    // TFLite's view: "lhs" is the weights [rhs batch..., cols, depth], "rhs" the input with
    // shape [lhs batch..., depth, rows].
    let mut w_shape = rhs_batch.to_vec();
    w_shape.extend([d.cols, d.depth]);
    let mut x_shape = lhs_batch.to_vec();
    x_shape.extend([d.depth, d.rows]);
    let w5 = extended(&w_shape, 5);
    let x5 = extended(&x_shape, 5);
    let extent = |shape: &[usize], axis: usize| -> usize {
        if shape[axis] == 1 {
            0
        } else {
            shape[axis + 1..].iter().product()
        }
    };
    let broadcast = |a: usize, b: usize| if a == b || a != 1 { a } else { b };
    let bd: Vec<usize> = (0..3).map(|i| broadcast(w5[i], x5[i])).collect();
    let w_ext: Vec<usize> = (0..3).map(|i| extent(&w5, i)).collect();
    let x_ext: Vec<usize> = (0..3).map(|i| extent(&x5, i)).collect();
    let mut blocks = Vec::with_capacity(bd.iter().product());
    for b0 in 0..bd[0] {
        for b1 in 0..bd[1] {
            for b2 in 0..bd[2] {
                let b = [b0, b1, b2];
                let sum = |f: &dyn Fn(usize) -> usize| (0..3).map(|i| b[i] * f(i)).sum::<usize>();
                blocks.push(HybridBlock {
                    weights: sum(&|i| w_ext[i]),
                    quantized: sum(&|i| x_ext[i]),
                    scales: sum(&|i| if x_ext[i] == 0 { 0 } else { d.rows }),
                    row_sums: sum(&|i| if w_ext[i] == 0 { 0 } else { d.cols }),
                    output: ((b0 * bd[1] * bd[2]) + b1 * bd[2] + b2) * d.rows * d.cols,
                });
            }
        }
    }
    blocks
}

pub(super) fn hybrid_matmul(
    ctx: &OpContext<'_>,
    o: &BatchMatMulOptions,
    lhs: &TensorInfo,
    rhs: &TensorInfo,
    dims: MatmulDims,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    let q = rhs
        .quant
        .as_ref()
        .ok_or_else(|| ctx.invalid("the int8 RHS has no quantization parameters"))?;
    let scale = if q.is_per_axis() {
        let cols_axis = if o.adj_y {
            rhs.rank() - 2
        } else {
            rhs.rank() - 1
        };
        if q.scale.len() != dims.cols || usize::try_from(q.quantized_dimension) != Ok(cols_axis) {
            return Err(ctx.unsupported(format!(
                "per-channel RHS scales must run along the output columns (axis {cols_axis})"
            )));
        }
        WeightScale::PerChannel(q.scale.clone())
    } else {
        WeightScale::PerTensor(q.scale.first().copied().unwrap_or(0.0))
    };
    let mut lhs_batch = &lhs.shape[..lhs.rank() - 2];
    let mut rhs_batch = &rhs.shape[..rhs.rank() - 2];
    let lhs_matrices: usize = lhs_batch.iter().product();
    let rhs_matrices: usize = rhs_batch.iter().product();
    // TFLite "compresses" an RHS [..., 1, X, Y] against an LHS [..., Q, R, S] (not adjointed)
    // into [..., X, Y] and [..., Q * R, S]; this changes the batch walk below.
    let mut block_dims = dims.clone();
    if let (Some((&q, lhs_rest)), Some((&1, rhs_rest))) =
        (lhs_batch.split_last(), rhs_batch.split_last())
        && !o.adj_x
    {
        lhs_batch = lhs_rest;
        rhs_batch = rhs_rest;
        block_dims.rows *= q;
    }
    let blocks = hybrid_blocks(lhs_batch, rhs_batch, &block_dims);
    let quant_rows = lhs_matrices * dims.rows;
    // TFLite sums the rows of the matrices along extended dimensions 1 and 2 only; the others
    // it reads uninitialized.
    let w5 = extended(rhs_batch, 3);
    let summed_rows = w5[1] * w5[2] * dims.cols;
    let row_sums_len = rhs_matrices * dims.cols;
    if o.asymmetric_quantize_inputs && blocks.iter().any(|b| b.row_sums + dims.cols > summed_rows) {
        return Err(ctx.unsupported(format!(
            "asymmetric hybrid BATCH_MATMUL of {:?} by {:?}: TFLite reads weight row sums it \
             never computed",
            lhs.shape, rhs.shape
        )));
    }

    // Every offset must stay inside its buffer (they do for valid shapes; checked once here).
    let (m, n, k) = (dims.rows, dims.cols, dims.depth);
    let bm = block_dims.rows;
    let out_len = dims.pairs.len() * m * n;
    let fits = blocks.iter().all(|b| {
        b.weights + n * k <= rhs_matrices * n * k
            && b.quantized + bm * k <= lhs_matrices * m * k
            && b.scales + bm <= quant_rows
            && b.row_sums + n <= row_sums_len
            && b.output + bm * n <= out_len
    });
    if !fits {
        return Err(ctx.unsupported(format!(
            "hybrid BATCH_MATMUL of {:?} by {:?}: TFLite's batch indexing leaves the buffers",
            lhs.shape, rhs.shape
        )));
    }

    // The weights in [cols, depth] layout: transposed once now when constant.
    let weights = match ctx.constant(1)? {
        Some(TensorData::I8(w)) => {
            let mut t = vec![0i8; w.len()];
            transpose_rhs(&w, &mut t, &dims);
            HybridWeights::Owned(t)
        }
        _ => HybridWeights::InputBytes,
    };
    let rhs_scratch = match weights {
        HybridWeights::Owned(_) => Vec::new(),
        HybridWeights::InputBytes => vec![0; rhs_matrices * n * k],
    };
    Ok(Box::new(HybridMatmul {
        block_rows: block_dims.rows,
        lhs_scratch: if dims.adj_x {
            vec![0.0; lhs_matrices * m * k]
        } else {
            Vec::new()
        },
        dims,
        blocks,
        weights,
        rhs_scratch,
        scale,
        asymmetric: o.asymmetric_quantize_inputs,
        quantized: vec![0; lhs_matrices * m * k],
        scaling: vec![0.0; quant_rows],
        offsets: vec![0; quant_rows],
        row_sums: vec![0; row_sums_len],
        summed_rows,
        row_sums_ready: false,
    }))
}

/// Hybrid BATCH_MATMUL (TFLite `EvalHybrid` and the hybrid `reference_ops::BatchMatMul`).
struct HybridMatmul {
    dims: MatmulDims,
    /// Rows of one block (more than `dims.rows` when TFLite compressed the shapes).
    block_rows: usize,
    blocks: Vec<HybridBlock>,
    weights: HybridWeights,
    /// The computed RHS in `[cols, depth]` layout (when it is not a constant).
    rhs_scratch: Vec<i8>,
    /// The LHS in `[rows, depth]` layout (when `adj_x`).
    lhs_scratch: Vec<f32>,
    scale: WeightScale,
    asymmetric: bool,
    quantized: Vec<i8>,
    scaling: Vec<f32>,
    offsets: Vec<i32>,
    /// Row sums of the weights; like TFLite, computed on the first run and kept.
    row_sums: Vec<i32>,
    summed_rows: usize,
    row_sums_ready: bool,
}

impl Kernel for HybridMatmul {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let d = &self.dims;
        let (m, n, k) = (d.rows, d.cols, d.depth);
        let (inputs, out) = io.single::<f32>()?;
        let lhs = prefix(inputs.get::<f32>(0)?, self.quantized.len(), "the LHS")?;
        let lhs = if d.adj_x {
            transpose_lhs(lhs, &mut self.lhs_scratch, d);
            &self.lhs_scratch[..]
        } else {
            lhs
        };
        let weights: &[i8] = match &self.weights {
            HybridWeights::Owned(w) => w,
            HybridWeights::InputBytes => {
                let rhs: &[i8] = bytemuck::cast_slice(inputs.bytes(1)?);
                let rhs = prefix(rhs, self.rhs_scratch.len(), "the RHS")?;
                transpose_rhs(rhs, &mut self.rhs_scratch, d);
                &self.rhs_scratch
            }
        };
        if k > 0 {
            batch_quantize(
                lhs,
                k,
                self.asymmetric,
                &mut self.quantized,
                &mut self.scaling,
                &mut self.offsets,
            );
        }
        if let WeightScale::PerTensor(s) = self.scale {
            self.scaling.iter_mut().for_each(|f| *f *= s);
        }
        if !self.row_sums_ready {
            let rows = weights.chunks_exact(k.max(1)).take(self.summed_rows);
            for (sum, w) in self.row_sums.iter_mut().zip(rows) {
                *sum = row_sum_sse(w);
            }
            self.row_sums_ready = true;
        }

        let out = prefix_mut(out, d.pairs.len() * m * n, "the output")?;
        out.fill(0.0);
        for b in &self.blocks {
            for j in 0..self.block_rows {
                let batch_scale = self.scaling[b.scales + j];
                let batch_offset = self.offsets[b.scales + j] as f32;
                let q = &self.quantized[b.quantized + j * k..][..k];
                for i in 0..n {
                    let w = &weights[b.weights + i * k..][..k];
                    let total = accumulate_hybrid(w, q);
                    let row_sum = self.row_sums[b.row_sums + i];
                    // `total -= row_sum * batch_offset` with a float offset, truncated back.
                    let total = (total as f32 - row_sum as f32 * batch_offset) as i32;
                    let scale = match &self.scale {
                        WeightScale::PerTensor(_) => batch_scale,
                        WeightScale::PerChannel(s) => batch_scale * s[i],
                    };
                    out[b.output + n * j + i] += scale * total as f32;
                }
            }
        }
        Ok(())
    }
}
