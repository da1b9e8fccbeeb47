//! CONCATENATION and PACK: each output row is the inputs' rows one after another.

use std::marker::PhantomData;

use bytemuck::Pod;
use octet_core::{ActivationFunction, ConcatenationOptions, DType, PackOptions};

use super::{
    check_output_len, check_output_shape, element_bytes, input_of_len, legacy_params,
    normalize_axis, with_element_type,
};
use crate::kernels::common::activation_range_f32;
use crate::{Kernel, OpContext, OpIo, RuntimeError, TensorInfo};

/// CONCATENATION along `axis` (negative counts from the end).
///
/// As in TFLite: all inputs share the output's dtype and rank; int8 inputs must share the
/// output's scale and zero point and int16 ones have zero point 0 (so both are plain copies);
/// uint8 inputs with other parameters than the output's are rescaled in float
/// (`ConcatenationWithScaling`). TFLite rejects fused activations; octet applies one on float32
/// (clamping after the copy) and rejects it on other dtypes.
pub fn concatenation(
    ctx: &OpContext<'_>,
    o: &ConcatenationOptions,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    let output = ctx.output(0)?;
    let inputs = (0..ctx.num_inputs())
        .map(|i| ctx.input(i))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = inputs.first() else {
        return Err(ctx.invalid("CONCATENATION needs at least one input"));
    };
    let rank = first.rank();
    if rank == 0 {
        return Err(ctx.unsupported("concatenating scalars"));
    }
    let axis = normalize_axis(ctx, i64::from(o.axis), rank)?;
    let mut out_shape = first.shape.clone();
    out_shape[axis] = 0;
    for t in &inputs {
        if t.dtype != output.dtype {
            return Err(ctx.invalid(format!(
                "input '{}' is {}, the output {}",
                t.name, t.dtype, output.dtype
            )));
        }
        let same_other_dims =
            t.rank() == rank && (0..rank).all(|d| d == axis || t.shape[d] == first.shape[d]);
        if !same_other_dims {
            return Err(ctx.invalid(format!(
                "input shapes {:?} and {:?} differ outside axis {axis}",
                first.shape, t.shape
            )));
        }
        out_shape[axis] += t.shape[axis];
    }
    check_output_shape(ctx, output, &out_shape)?;

    let outer: usize = out_shape[..axis].iter().product();
    let inner: usize = out_shape[axis + 1..].iter().product();
    let rows: Vec<usize> = inputs.iter().map(|t| t.shape[axis] * inner).collect();

    let activation = o.activation;
    if activation != ActivationFunction::None {
        let clamps = matches!(
            activation,
            ActivationFunction::Relu | ActivationFunction::Relu6 | ActivationFunction::ReluN1To1
        );
        if output.dtype != DType::Float32 || !clamps {
            return Err(ctx.unsupported(format!(
                "fused activation {activation:?} on {} (TFLite supports none)",
                output.dtype
            )));
        }
        let (lo, hi) = activation_range_f32(activation);
        return Ok(Box::new(ConcatClampF32 {
            concat: Concat::new(outer, rows),
            lo,
            hi,
        }));
    }

    let (out_scale, out_zp) = legacy_params(output);
    match output.dtype {
        DType::Int8 => {
            if let Some(t) = inputs
                .iter()
                .find(|t| legacy_params(t) != (out_scale, out_zp))
            {
                return Err(ctx.invalid(format!(
                    "int8 input '{}' has other quantization parameters than the output; \
                     TFLite only concatenates int8 tensors that share them",
                    t.name
                )));
            }
        }
        DType::Int16
            if inputs
                .iter()
                .chain([&output])
                .any(|t| legacy_params(t).1 != 0) =>
        {
            return Err(ctx.invalid("int16 CONCATENATION needs zero points of 0"));
        }
        DType::UInt8 => {
            let parts = inputs
                .iter()
                .zip(&rows)
                .map(|(t, &row)| {
                    let (scale, zp) = legacy_params(t);
                    let rescale = (scale != out_scale || zp != out_zp)
                        .then(|| Rescale::new(scale, zp, out_scale));
                    (row, rescale)
                })
                .collect();
            return Ok(Box::new(ConcatU8 {
                outer,
                parts,
                output_zero_point: out_zp,
            }));
        }
        _ => {}
    }
    check_concat_dtype(ctx, output)?;
    let bytes = element_bytes(ctx, output)?;
    with_element_type!(bytes, ctx, |T| Ok(
        Box::new(Concat::<T>::new(outer, rows)) as Box<dyn Kernel>
    ))
}

fn check_concat_dtype(ctx: &OpContext<'_>, output: &TensorInfo) -> Result<(), RuntimeError> {
    match output.dtype {
        DType::Float32
        | DType::Float16
        | DType::BFloat16
        | DType::UInt8
        | DType::Int8
        | DType::Int16
        | DType::Int32
        | DType::UInt32
        | DType::Int64
        | DType::Bool => Ok(()),
        _ => Err(ctx.unsupported_types()),
    }
}

/// PACK: stacks equally shaped inputs along a new axis (negative counts from the end of the
/// output's rank). The inputs must share the output's scale and zero point, as TFLite requires.
pub fn pack(ctx: &OpContext<'_>, o: &PackOptions) -> Result<Box<dyn Kernel>, RuntimeError> {
    let output = ctx.output(0)?;
    let inputs = (0..ctx.num_inputs())
        .map(|i| ctx.input(i))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = inputs.first() else {
        return Err(ctx.invalid("PACK needs at least one input"));
    };
    if usize::try_from(o.values_count).ok() != Some(inputs.len()) {
        return Err(ctx.invalid(format!(
            "values_count is {} but the op has {} inputs",
            o.values_count,
            inputs.len()
        )));
    }
    let axis = normalize_axis(ctx, i64::from(o.axis), first.rank() + 1)?;
    for t in &inputs {
        if t.dtype != output.dtype || t.shape != first.shape {
            return Err(ctx.invalid(format!(
                "input '{}' ({} {:?}) differs from input 0 ({} {:?}) or the output's dtype",
                t.name, t.dtype, t.shape, first.dtype, first.shape
            )));
        }
        if legacy_params(t) != legacy_params(output) {
            return Err(ctx.invalid(format!(
                "input '{}' has other quantization parameters than the output",
                t.name
            )));
        }
    }
    let mut out_shape = first.shape.clone();
    out_shape.insert(axis, inputs.len());
    check_output_shape(ctx, output, &out_shape)?;
    let outer: usize = first.shape[..axis].iter().product();
    let row: usize = first.shape[axis..].iter().product();
    let bytes = element_bytes(ctx, output)?;
    let rows = vec![row; inputs.len()];
    with_element_type!(bytes, ctx, |T| Ok(
        Box::new(Concat::<T>::new(outer, rows)) as Box<dyn Kernel>
    ))
}

/// Output row `k` is row `k` of input 0, then row `k` of input 1, ...; `rows[i]` is the length
/// of input `i`'s rows (its extent along the axis times the inner size).
struct Concat<T> {
    outer: usize,
    rows: Vec<usize>,
    total: usize,
    _t: PhantomData<T>,
}

impl<T: Pod> Concat<T> {
    fn new(outer: usize, rows: Vec<usize>) -> Self {
        let total = outer * rows.iter().sum::<usize>();
        Concat {
            outer,
            rows,
            total,
            _t: PhantomData,
        }
    }

    fn run(&self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (inputs, out) = io.single::<T>()?;
        check_output_len(out, self.total)?;
        if self.total == 0 {
            return Ok(());
        }
        let out_row = self.total / self.outer;
        let mut offset = 0;
        for (i, &row) in self.rows.iter().enumerate() {
            let input = input_of_len::<T>(&inputs, i, self.outer * row)?;
            if row > 0 {
                for (dst, src) in out.chunks_exact_mut(out_row).zip(input.chunks_exact(row)) {
                    dst[offset..offset + row].copy_from_slice(src);
                }
            }
            offset += row;
        }
        Ok(())
    }
}

impl<T: Pod + Send> Kernel for Concat<T> {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        self.run(io)
    }
}

/// Float32 concatenation followed by a fused activation's clamp.
struct ConcatClampF32 {
    concat: Concat<f32>,
    lo: f32,
    hi: f32,
}

impl Kernel for ConcatClampF32 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        self.concat.run(io)?;
        let (_, out) = io.single::<f32>()?;
        for x in out.iter_mut() {
            *x = x.max(self.lo).min(self.hi);
        }
        Ok(())
    }
}

/// TFLite `ConcatenationWithScaling`'s float mapping of one uint8 input onto the output's
/// parameters: `q_out = round(q_in * scale + bias) + zero_point_out`, in float32.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rescale {
    scale: f32,
    bias: f32,
}

impl Rescale {
    fn new(input_scale: f32, input_zero_point: i32, output_scale: f32) -> Self {
        let scale = input_scale * (1.0 / output_scale);
        Rescale {
            scale,
            bias: -(input_zero_point as f32) * scale,
        }
    }

    fn apply(self, q: u8, output_zero_point: i32) -> u8 {
        let value = (f32::from(q) * self.scale + self.bias).round() as i32 + output_zero_point;
        value.clamp(0, 255) as u8
    }
}

/// Legacy uint8 concatenation: inputs with the output's parameters are copied, the others
/// rescaled.
struct ConcatU8 {
    outer: usize,
    parts: Vec<(usize, Option<Rescale>)>,
    output_zero_point: i32,
}

impl Kernel for ConcatU8 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (inputs, out) = io.single::<u8>()?;
        let out_row = self.parts.iter().map(|p| p.0).sum::<usize>();
        check_output_len(out, self.outer * out_row)?;
        if out.is_empty() {
            return Ok(());
        }
        let mut offset = 0;
        for (i, &(row, rescale)) in self.parts.iter().enumerate() {
            let input = input_of_len::<u8>(&inputs, i, self.outer * row)?;
            if row > 0 {
                for (dst, src) in out.chunks_exact_mut(out_row).zip(input.chunks_exact(row)) {
                    let dst = &mut dst[offset..offset + row];
                    match rescale {
                        None => dst.copy_from_slice(src),
                        Some(r) => {
                            for (d, &q) in dst.iter_mut().zip(src) {
                                *d = r.apply(q, self.output_zero_point);
                            }
                        }
                    }
                }
            }
            offset += row;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{f32s, model, run, t};
    use octet_core::Op;

    fn concat(axis: i32, activation: ActivationFunction) -> Op {
        Op::Concatenation(ConcatenationOptions { axis, activation })
    }

    #[test]
    fn float_rows_interleave_along_the_last_axis() {
        // [2, 1] ++ [2, 2] along axis -1: each output row is a row of x then a row of y.
        let m = model(
            concat(-1, ActivationFunction::None),
            vec![t(DType::Float32, &[2, 1]), t(DType::Float32, &[2, 2])],
            vec![t(DType::Float32, &[2, 3])],
        );
        let out = run(&m, &[f32s(&[1.0, 2.0]), f32s(&[3.0, 4.0, 5.0, 6.0])]).unwrap();
        assert_eq!(out[0], f32s(&[1.0, 3.0, 4.0, 2.0, 5.0, 6.0]));
    }

    #[test]
    fn a_fused_relu_clamps_float_outputs() {
        let m = model(
            concat(0, ActivationFunction::Relu),
            vec![t(DType::Float32, &[1]), t(DType::Float32, &[2])],
            vec![t(DType::Float32, &[3])],
        );
        let out = run(&m, &[f32s(&[-1.0]), f32s(&[2.0, -3.0])]).unwrap();
        assert_eq!(out[0], f32s(&[0.0, 2.0, 0.0]));
    }

    #[test]
    fn uint8_inputs_with_other_parameters_are_rescaled() {
        // Input 0 shares the output's (0.5, 10) and is copied; input 1 has (1.0, 0): q = 3 is
        // real 3.0 -> 3 / 0.5 + 10 = 16.
        let m = model(
            concat(0, ActivationFunction::None),
            vec![
                t(DType::UInt8, &[2]).q(0.5, 10),
                t(DType::UInt8, &[1]).q(1.0, 0),
            ],
            vec![t(DType::UInt8, &[3]).q(0.5, 10)],
        );
        let out = run(&m, &[vec![7, 250], vec![3]]).unwrap();
        assert_eq!(out[0], vec![7, 250, 16]);
    }

    #[test]
    fn int8_inputs_must_share_the_output_parameters() {
        let m = model(
            concat(0, ActivationFunction::None),
            vec![
                t(DType::Int8, &[1]).q(0.5, 0),
                t(DType::Int8, &[1]).q(0.25, 0),
            ],
            vec![t(DType::Int8, &[2]).q(0.5, 0)],
        );
        assert!(matches!(
            run(&m, &[vec![1], vec![2]]),
            Err(RuntimeError::InvalidOp { .. })
        ));
    }

    #[test]
    fn pack_stacks_along_a_new_middle_axis() {
        // Two [2, 2] int16 tensors stacked at axis 1 -> [2, 2, 2]: out[i][k] = input k, row i.
        let m = model(
            Op::Pack(PackOptions {
                values_count: 2,
                axis: 1,
            }),
            vec![t(DType::Int16, &[2, 2]), t(DType::Int16, &[2, 2])],
            vec![t(DType::Int16, &[2, 2, 2])],
        );
        let a: Vec<u8> = [1i16, 2, 3, 4]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let b: Vec<u8> = [5i16, 6, 7, 8]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let out = run(&m, &[a, b]).unwrap();
        let want: Vec<u8> = [1i16, 2, 5, 6, 3, 4, 7, 8]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        assert_eq!(out[0], want);
    }

    #[test]
    fn uint8_rescaling_rounds_half_away_from_zero() {
        // Input scale 0.5, zero point 10 onto output scale 1, zero point 3:
        // q = 15 is real 2.5 -> round(2.5) = 3 -> 3 + 3 = 6.
        let r = Rescale::new(0.5, 10, 1.0);
        assert_eq!(r.apply(15, 3), 6);
        // q = 5 is real -2.5 -> -3 -> 0.
        assert_eq!(r.apply(5, 3), 0);
        // Saturates at 255: q = 255 is real 122.5 -> 123 + 200 = 323 -> 255.
        assert_eq!(r.apply(255, 200), 255);
    }
}
