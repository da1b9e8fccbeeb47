//! BATCH_MATMUL: `output[..., i, j] = sum_k lhs'[..., i, k] * rhs'[..., k, j]` over broadcast
//! batches of matrix pairs, float and integer (the hybrid flavour is in [`super::hybrid`]).

use std::marker::PhantomData;

use octet_core::fixed_point::{
    QuantizedMultiplier, multiply_by_quantized_multiplier, multiply_by_quantized_multiplier_i64,
    quantize_multiplier,
};
use octet_core::{BatchMatMulOptions, DType, TensorData};
use octet_linalg::frame::gemm_f32::{F32Clamp, PackedF32Gemm};
use octet_linalg::frame::gemm_q::{PackedQGemm, QGemmSpec, QType, QWeights, Requant};

use super::hybrid::hybrid_matmul;
use super::{clamp_i32, prefix_mut};
use crate::kernels::common::per_tensor_quant;
use crate::kernels::gemm::{QElem, Requantize, Scales, run_dense_f32, run_dense_q};
use crate::{Kernel, OpContext, OpIo, RuntimeError, TensorInfo};

/// The shape of one BATCH_MATMUL: `rows x depth` times `depth x cols` matrices, with the
/// (broadcast) batch of matrix pairs as offsets into the operands.
#[derive(Debug, Clone)]
pub(super) struct MatmulDims {
    pub(super) rows: usize,
    pub(super) depth: usize,
    pub(super) cols: usize,
    pub(super) adj_x: bool,
    pub(super) adj_y: bool,
    /// For every output matrix, the index of its LHS and RHS matrices.
    pub(super) pairs: Vec<(usize, usize)>,
}

impl MatmulDims {
    fn lhs_len(&self) -> usize {
        self.rows * self.depth
    }
    fn rhs_len(&self) -> usize {
        self.depth * self.cols
    }
    /// Element `(i, k)` of the (adjointed) LHS matrix in its stored layout.
    fn lhs_index(&self, i: usize, k: usize) -> usize {
        if self.adj_x {
            k * self.rows + i
        } else {
            i * self.depth + k
        }
    }
    /// Element `(k, j)` of the (adjointed) RHS matrix in its stored layout.
    fn rhs_index(&self, k: usize, j: usize) -> usize {
        if self.adj_y {
            j * self.depth + k
        } else {
            k * self.cols + j
        }
    }
}

/// `shape` with leading 1s up to `rank`.
pub(super) fn extended(shape: &[usize], rank: usize) -> Vec<usize> {
    let mut v = vec![1; rank.saturating_sub(shape.len())];
    v.extend_from_slice(shape);
    v
}

/// Index of each broadcast output batch into an operand with batch dims `dims` (1 broadcasts).
fn batch_indices(out_dims: &[usize], dims: &[usize]) -> Vec<usize> {
    let total: usize = out_dims.iter().product();
    let mut indices = Vec::with_capacity(total);
    for flat in 0..total {
        let mut rest = flat;
        let mut index = 0;
        let mut stride = 1;
        for (&od, &d) in out_dims.iter().zip(dims).rev() {
            let coord = rest % od.max(1);
            rest /= od.max(1);
            if d != 1 {
                index += coord * stride;
            }
            stride *= d;
        }
        indices.push(index);
    }
    indices
}

/// BATCH_MATMUL: `output[..., i, j] = Σ_k lhs'[..., i, k] * rhs'[..., k, j]`, where `lhs'` is the
/// LHS or (with `adj_x`) its transpose over the last two dimensions, likewise `rhs'`, and the
/// leading (batch) dimensions broadcast. Ranks 2 to 5.
///
/// Flavours: float32; int8 with int8 output (fixed-point requantization) or int32 output (raw
/// products, zero points ignored as TFLite does); int16 (int64 accumulator); hybrid (float LHS,
/// int8 RHS with per-tensor or per-channel scales, LHS rows quantized on the fly).
pub fn batch_matmul(
    ctx: &OpContext<'_>,
    o: &BatchMatMulOptions,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    if ctx.num_inputs() != 2 || ctx.num_outputs() != 1 {
        return Err(ctx.invalid(format!(
            "expects 2 inputs and 1 output, has {} and {}",
            ctx.num_inputs(),
            ctx.num_outputs()
        )));
    }
    let lhs = ctx.input(0)?;
    let rhs = ctx.input(1)?;
    let output = ctx.output(0)?;
    let dims = matmul_dims(ctx, lhs, rhs, output, o)?;

    use DType::{Float32 as F32, Int8 as I8, Int16 as I16, Int32 as I32};
    match (lhs.dtype, rhs.dtype, output.dtype) {
        (F32, F32, F32) => match float_gemm_matmul(ctx, &dims)? {
            Some(kernel) => Ok(kernel),
            None => Ok(Box::new(FloatMatmul { dims })),
        },
        (I8, I8, I8) => quantized_matmul::<i8>(ctx, dims),
        (I8, I8, I32) => Ok(Box::new(Int8Int32Matmul { dims })),
        (I16, I16, I16) => quantized_matmul::<i16>(ctx, dims),
        (F32, I8, F32) => hybrid_matmul(ctx, o, lhs, rhs, dims),
        _ => Err(ctx.unsupported_types()),
    }
}

fn matmul_dims(
    ctx: &OpContext<'_>,
    lhs: &TensorInfo,
    rhs: &TensorInfo,
    output: &TensorInfo,
    o: &BatchMatMulOptions,
) -> Result<MatmulDims, RuntimeError> {
    for (what, t) in [("LHS", lhs), ("RHS", rhs)] {
        if !(2..=5).contains(&t.rank()) {
            return Err(ctx.invalid(format!(
                "the {what} must have rank 2 to 5, not {:?}",
                t.shape
            )));
        }
    }
    let rank = lhs.rank().max(rhs.rank());
    let l = extended(&lhs.shape, rank);
    let r = extended(&rhs.shape, rank);
    let batch = rank - 2;
    let mut out_batch = Vec::with_capacity(batch);
    for (&ld, &rd) in l[..batch].iter().zip(&r[..batch]) {
        if ld != rd && ld != 1 && rd != 1 {
            return Err(ctx.invalid(format!(
                "batch dimensions of {:?} and {:?} do not broadcast",
                lhs.shape, rhs.shape
            )));
        }
        out_batch.push(if ld != rd && ld == 1 { rd } else { ld });
    }
    let (rows, depth) = if o.adj_x {
        (l[rank - 1], l[rank - 2])
    } else {
        (l[rank - 2], l[rank - 1])
    };
    let (rhs_depth, cols) = if o.adj_y {
        (r[rank - 1], r[rank - 2])
    } else {
        (r[rank - 2], r[rank - 1])
    };
    if depth != rhs_depth {
        return Err(ctx.invalid(format!(
            "cannot multiply {:?} (adj_x {}) by {:?} (adj_y {})",
            lhs.shape, o.adj_x, rhs.shape, o.adj_y
        )));
    }
    let matrices: usize = out_batch.iter().product();
    if output.num_elements() != matrices * rows * cols {
        return Err(ctx.invalid(format!(
            "the output {:?} should hold {matrices} matrices of {rows} x {cols}",
            output.shape
        )));
    }
    let pairs = batch_indices(&out_batch, &l[..batch])
        .into_iter()
        .zip(batch_indices(&out_batch, &r[..batch]))
        .collect();
    Ok(MatmulDims {
        rows,
        depth,
        cols,
        adj_x: o.adj_x,
        adj_y: o.adj_y,
        pairs,
    })
}

/// Float BATCH_MATMUL (`reference_ops::BatchMatMul` for float).
struct FloatMatmul {
    dims: MatmulDims,
}

impl Kernel for FloatMatmul {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let d = &self.dims;
        let (inputs, out) = io.single::<f32>()?;
        let lhs = inputs.get::<f32>(0)?;
        let rhs = inputs.get::<f32>(1)?;
        for_each_matmul_element(d, lhs, rhs, out, |a, b, i, j| {
            (0..d.depth).fold(0f32, |t, k| t + a[d.lhs_index(i, k)] * b[d.rhs_index(k, j)])
        })
    }
}

/// The RHS matrices of a BATCH_MATMUL on GEMMs: known at build time (packed once) or
/// computed (repacked by every run into the same buffers).
fn rhs_matrices<T: Copy>(
    ctx: &OpContext<'_>,
    d: &MatmulDims,
    take: impl FnOnce(TensorData) -> Option<Vec<T>>,
) -> Result<Option<Vec<T>>, RuntimeError> {
    Ok(ctx
        .constant(1)?
        .and_then(take)
        .filter(|v| v.len() % d.rhs_len().max(1) == 0))
}

/// The number of RHS matrices.
fn rhs_count(ctx: &OpContext<'_>, d: &MatmulDims) -> Result<usize, RuntimeError> {
    Ok(ctx.input(1)?.num_elements() / d.rhs_len().max(1))
}

/// Float BATCH_MATMUL with neither empty dimension on GEMMs.
fn float_gemm_matmul(
    ctx: &OpContext<'_>,
    d: &MatmulDims,
) -> Result<Option<Box<dyn Kernel>>, RuntimeError> {
    if d.rows == 0 || d.cols == 0 || d.depth == 0 {
        return Ok(None);
    }
    let constant = rhs_matrices(ctx, d, |data| match data {
        TensorData::F32(v) => Some(v),
        _ => None,
    })?;
    let count = rhs_count(ctx, d)?;
    let zeros = vec![0f32; d.rhs_len()];
    let gemms = (0..count)
        .map(|r| {
            let b = match &constant {
                Some(v) => &v[r * d.rhs_len()..(r + 1) * d.rhs_len()],
                None => &zeros[..],
            };
            let weights: Vec<f32> = (0..d.cols)
                .flat_map(|j| (0..d.depth).map(move |k| b[d.rhs_index(k, j)]))
                .collect();
            PackedF32Gemm::for_rows(
                ctx.isa(),
                d.rows,
                &weights,
                None,
                [d.cols, 1, d.depth],
                F32Clamp::NONE,
            )
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ctx.invalid(e))?;
    Ok(Some(Box::new(FloatGemmMatmul {
        dims: d.clone(),
        gemms,
        repack: constant.is_none(),
    })))
}

/// Float BATCH_MATMUL on GEMMs: one packed RHS per RHS matrix.
struct FloatGemmMatmul {
    dims: MatmulDims,
    gemms: Vec<PackedF32Gemm>,
    /// The RHS is computed: repack it every run.
    repack: bool,
}

impl Kernel for FloatGemmMatmul {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let d = &self.dims;
        let parts = io.parts::<f32>(0)?;
        let lhs = parts.inputs.get::<f32>(0)?;
        if self.repack {
            let rhs = parts.inputs.get::<f32>(1)?;
            for (r, gemm) in self.gemms.iter_mut().enumerate() {
                let b = matrix(rhs, r, d.rhs_len(), "the RHS")?;
                gemm.repack(|j, _, k| b[d.rhs_index(k, j)])
                    .map_err(|e| RuntimeError::eval(e.to_string()))?;
            }
        }
        let scratch: &mut [f32] = bytemuck::cast_slice_mut(parts.scratch);
        for_each_matrix_pair(d, lhs, parts.output, scratch, |a, ri, out| {
            let gemm = self
                .gemms
                .get(ri)
                .ok_or_else(|| RuntimeError::eval("RHS matrix out of range"))?;
            run_dense_f32(gemm, a, d.depth, out, parts.threads)
        })?;
        Ok(())
    }

    fn scratch_bytes(&self) -> usize {
        if self.dims.adj_x {
            self.dims.lhs_len() * 4
        } else {
            0
        }
    }
}

/// The offsets and requantization of an int8 BATCH_MATMUL.
struct MatmulOperands<'a> {
    input_offset: i32,
    weight_offset: i32,
    requantize: &'a Requantize,
}

/// Int8 BATCH_MATMUL with neither empty dimension on quantized GEMMs, when a GEMM family fits.
fn quant_gemm_matmul(
    ctx: &OpContext<'_>,
    d: &MatmulDims,
    operands: &MatmulOperands<'_>,
) -> Result<Option<Box<dyn Kernel>>, RuntimeError> {
    if d.rows == 0 || d.cols == 0 || d.depth == 0 {
        return Ok(None);
    }
    let constant = rhs_matrices(ctx, d, |data| match data {
        TensorData::I8(v) => Some(v),
        _ => None,
    })?;
    let count = rhs_count(ctx, d)?;
    let zeros = vec![0i8; d.rhs_len()];
    let r = operands.requantize;
    let mut gemms = Vec::with_capacity(count);
    for m in 0..count {
        let b = match &constant {
            Some(v) => &v[m * d.rhs_len()..(m + 1) * d.rhs_len()],
            None => &zeros[..],
        };
        let weights: Vec<i8> = (0..d.cols)
            .flat_map(|j| (0..d.depth).map(move |k| b[d.rhs_index(k, j)]))
            .collect();
        let Scales::Fixed(multipliers) = &r.scales else {
            return Ok(None);
        };
        let spec = QGemmSpec {
            input: QType::I8,
            input_offset: operands.input_offset,
            weights: QWeights::I8(&weights),
            weight_offset: operands.weight_offset,
            shape: [d.cols, 1, d.depth],
            bias: None,
            requant: Requant::Fixed(multipliers),
            output: QType::I8,
            output_zero_point: r.output_offset,
            clamp: (r.act_min, r.act_max),
        };
        match PackedQGemm::new(ctx.isa(), &spec, d.rows) {
            Ok(gemm) => gemms.push(gemm),
            Err(_) => return Ok(None),
        }
    }
    let Some(first) = gemms.first() else {
        return Ok(None);
    };
    let converted = first
        .input_format()
        .scratch_bytes(d.rows, d.depth)
        .map_err(|e| ctx.invalid(e))?;
    let transposed = if d.adj_x {
        d.lhs_len().next_multiple_of(8)
    } else {
        0
    };
    Ok(Some(Box::new(QuantGemmMatmul {
        dims: d.clone(),
        gemms,
        repack: constant.is_none(),
        transposed,
        scratch_bytes: transposed + converted,
    })))
}

/// Int8 BATCH_MATMUL on quantized GEMMs: one packed RHS per RHS matrix.
struct QuantGemmMatmul {
    dims: MatmulDims,
    gemms: Vec<PackedQGemm>,
    /// The RHS is computed: repack it every run.
    repack: bool,
    /// Scratch bytes for the transposed LHS (`adj_x`), before the converted one.
    transposed: usize,
    scratch_bytes: usize,
}

impl Kernel for QuantGemmMatmul {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let d = &self.dims;
        let parts = io.parts::<i8>(0)?;
        let lhs = parts.inputs.get::<i8>(0)?;
        if self.repack {
            let rhs = parts.inputs.get::<i8>(1)?;
            for (r, gemm) in self.gemms.iter_mut().enumerate() {
                let b = matrix(rhs, r, d.rhs_len(), "the RHS")?;
                gemm.repack(|j, _, k| i32::from(b[d.rhs_index(k, j)]))
                    .map_err(|e| RuntimeError::eval(e.to_string()))?;
            }
        }
        let scratch: &mut [u8] = bytemuck::cast_slice_mut(parts.scratch);
        let (transposed, converted) = scratch
            .get_mut(..self.scratch_bytes)
            .ok_or_else(|| RuntimeError::eval("scratch too short"))?
            .split_at_mut(self.transposed);
        let transposed: &mut [i8] = bytemuck::cast_slice_mut(transposed);
        for_each_matrix_pair(d, lhs, parts.output, transposed, |a, ri, out| {
            let gemm = self
                .gemms
                .get(ri)
                .ok_or_else(|| RuntimeError::eval("RHS matrix out of range"))?;
            run_dense_q(gemm, a, d.depth, out, converted, parts.threads)
        })?;
        Ok(())
    }

    fn scratch_bytes(&self) -> usize {
        self.scratch_bytes
    }
}

/// Calls `run(a, rhs_index, out)` for each broadcast pair of matrices: `a` is the pair's LHS
/// matrix (transposed into `scratch` first when `adj_x`), `out` its part of `output`.
fn for_each_matrix_pair<L: Copy, O>(
    d: &MatmulDims,
    lhs: &[L],
    output: &mut [O],
    scratch: &mut [L],
    mut run: impl FnMut(&[L], usize, &mut [O]) -> Result<(), RuntimeError>,
) -> Result<(), RuntimeError> {
    let out_len = d.rows * d.cols;
    let out = prefix_mut(output, d.pairs.len() * out_len, "the output")?;
    for (&(li, ri), out) in d.pairs.iter().zip(out.chunks_exact_mut(out_len.max(1))) {
        let a = matrix(lhs, li, d.lhs_len(), "the LHS")?;
        let a = if d.adj_x {
            let t = scratch
                .get_mut(..d.lhs_len())
                .ok_or_else(|| RuntimeError::eval("scratch too short"))?;
            transpose_lhs(a, t, d);
            &*t
        } else {
            a
        };
        run(a, ri, out)?;
    }
    Ok(())
}

/// Matrix `index` of `len` elements in `data`.
fn matrix<'a, T>(
    data: &'a [T],
    index: usize,
    len: usize,
    what: &str,
) -> Result<&'a [T], RuntimeError> {
    data.get(index * len..(index + 1) * len)
        .ok_or_else(|| RuntimeError::eval(format!("{what} is too small")))
}

/// Computes every output element of a BATCH_MATMUL: for each pair of broadcast matrices and
/// each `(i, j)`, `element(a, b, i, j)` with `a`, `b` the pair's LHS and RHS matrices.
fn for_each_matmul_element<L, R, O>(
    d: &MatmulDims,
    lhs: &[L],
    rhs: &[R],
    out: &mut [O],
    mut element: impl FnMut(&[L], &[R], usize, usize) -> O,
) -> Result<(), RuntimeError> {
    let out_len = d.rows * d.cols;
    let out = prefix_mut(out, d.pairs.len() * out_len, "the output")?;
    for (&(li, ri), out) in d.pairs.iter().zip(out.chunks_exact_mut(out_len.max(1))) {
        let a = matrix(lhs, li, d.lhs_len(), "the LHS")?;
        let b = matrix(rhs, ri, d.rhs_len(), "the RHS")?;
        for i in 0..d.rows {
            for j in 0..d.cols {
                out[i * d.cols + j] = element(a, b, i, j);
            }
        }
    }
    Ok(())
}

/// `Σ_k (rhs'[k, j] + filter_offset) * (lhs'[i, k] + input_offset)` for one output element of
/// an integer BATCH_MATMUL, in `i64` (exact for int8 and int16 operands).
fn accumulate_matmul<T: QElem>(
    d: &MatmulDims,
    a: &[T],
    b: &[T],
    i: usize,
    j: usize,
    input_offset: i32,
    filter_offset: i32,
) -> i64 {
    (0..d.depth).fold(0i64, |acc, k| {
        let x = i64::from(a[d.lhs_index(i, k)].to_i32()) + i64::from(input_offset);
        let w = i64::from(b[d.rhs_index(k, j)].to_i32()) + i64::from(filter_offset);
        acc.wrapping_add(w * x)
    })
}

fn quantized_matmul<T: QElem>(
    ctx: &OpContext<'_>,
    dims: MatmulDims,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    let lhs = ctx.input(0)?;
    let rhs = ctx.input(1)?;
    let output = ctx.output(0)?;
    let (lhs_scale, lhs_zero_point) = per_tensor_quant(ctx, lhs, "the LHS")?;
    // TFLite reads the RHS's first scale and zero point even if it has several.
    let (rhs_scale, rhs_zero_point) = rhs
        .quant
        .as_ref()
        .and_then(|q| {
            let scale = *q.scale.first()?;
            let zero_point = i32::try_from(q.zero_point.first().copied().unwrap_or(0)).ok()?;
            Some((scale, zero_point))
        })
        .ok_or_else(|| ctx.invalid("the RHS has no quantization parameters"))?;
    let (output_scale, output_zero_point) = per_tensor_quant(ctx, output, "the output")?;
    let is_int16 = lhs.dtype == DType::Int16;
    if is_int16 && (lhs_zero_point != 0 || rhs_zero_point != 0 || output_zero_point != 0) {
        return Err(ctx.invalid("int16 operands must have zero points of 0"));
    }
    let product = f64::from(lhs_scale * rhs_scale);
    if product.is_nan() || product < 0.0 {
        return Err(ctx.invalid("LHS scale x RHS scale must be non-negative"));
    }
    let multiplier = quantize_multiplier(product / f64::from(output_scale))
        .map_err(|e| ctx.invalid(format!("output multiplier: {e}")))?;
    let (act_min, act_max) =
        crate::kernels::common::dtype_range(output.dtype).ok_or_else(|| ctx.unsupported_types())?;
    if !is_int16 {
        let requantize = Requantize {
            scales: Scales::Fixed(vec![multiplier; dims.cols]),
            output_offset: output_zero_point,
            act_min,
            act_max,
        };
        let operands = MatmulOperands {
            input_offset: lhs_zero_point.wrapping_neg(),
            weight_offset: rhs_zero_point.wrapping_neg(),
            requantize: &requantize,
        };
        if let Some(kernel) = quant_gemm_matmul(ctx, &dims, &operands)? {
            return Ok(kernel);
        }
    }
    Ok(Box::new(QuantizedMatmul::<T> {
        dims,
        input_offset: lhs_zero_point.wrapping_neg(),
        filter_offset: rhs_zero_point.wrapping_neg(),
        output_offset: output_zero_point,
        multiplier,
        act_min,
        act_max,
        int64_accumulator: is_int16,
        _type: PhantomData,
    }))
}

/// Integer BATCH_MATMUL with requantized output (`reference_ops::BatchMatMul` with
/// `FullyConnectedParams`): int8 with an `int32` accumulator, int16 with an `int64` one.
struct QuantizedMatmul<T> {
    dims: MatmulDims,
    input_offset: i32,
    filter_offset: i32,
    output_offset: i32,
    multiplier: QuantizedMultiplier,
    act_min: i32,
    act_max: i32,
    int64_accumulator: bool,
    _type: PhantomData<fn() -> T>,
}

impl<T: QElem> Kernel for QuantizedMatmul<T> {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let d = &self.dims;
        let (inputs, out) = io.single::<T>()?;
        let lhs = inputs.get::<T>(0)?;
        let rhs = inputs.get::<T>(1)?;
        for_each_matmul_element(d, lhs, rhs, out, |a, b, i, j| {
            let acc = accumulate_matmul(d, a, b, i, j, self.input_offset, self.filter_offset);
            let scaled = if self.int64_accumulator {
                multiply_by_quantized_multiplier_i64(acc, self.multiplier)
            } else {
                // TFLite's int32 accumulator wraps.
                multiply_by_quantized_multiplier(acc as i32, self.multiplier)
            };
            T::from_clamped(clamp_i32(
                scaled.wrapping_add(self.output_offset),
                self.act_min,
                self.act_max,
            ))
        })
    }
}

/// Int8 BATCH_MATMUL with int32 output: raw sums of products, no zero points, no rescaling
/// (`reference_ops::BatchMatMul<int8, int8, int32>`).
struct Int8Int32Matmul {
    dims: MatmulDims,
}

impl Kernel for Int8Int32Matmul {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let d = &self.dims;
        let (inputs, out) = io.single::<i32>()?;
        let lhs = inputs.get::<i8>(0)?;
        let rhs = inputs.get::<i8>(1)?;
        for_each_matmul_element(d, lhs, rhs, out, |a, b, i, j| {
            accumulate_matmul(d, a, b, i, j, 0, 0) as i32
        })
    }
}

/// Copies the RHS matrices into `[cols, depth]` layout (a transpose unless `adj_y`).
pub(super) fn transpose_rhs<T: Copy>(rhs: &[T], out: &mut [T], d: &MatmulDims) {
    let len = d.rhs_len().max(1);
    for (src, dst) in rhs.chunks_exact(len).zip(out.chunks_exact_mut(len)) {
        for j in 0..d.cols {
            for k in 0..d.depth {
                dst[j * d.depth + k] = src[d.rhs_index(k, j)];
            }
        }
    }
}

/// Copies the LHS matrices into `[rows, depth]` layout (a transpose when `adj_x`).
pub(super) fn transpose_lhs<T: Copy>(lhs: &[T], out: &mut [T], d: &MatmulDims) {
    let len = d.lhs_len().max(1);
    for (src, dst) in lhs.chunks_exact(len).zip(out.chunks_exact_mut(len)) {
        for i in 0..d.rows {
            for k in 0..d.depth {
                dst[i * d.depth + k] = src[d.lhs_index(i, k)];
            }
        }
    }
}
