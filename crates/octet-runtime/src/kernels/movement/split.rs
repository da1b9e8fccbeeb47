//! SPLIT, SPLIT_V and UNPACK: each output takes a range of every input row.

use std::marker::PhantomData;

use bytemuck::Pod;
use octet_core::UnpackOptions;

use super::{
    check_output_len, check_output_shape, element_bytes, input_of_len, legacy_params,
    normalize_axis, with_element_type,
};
use crate::{Kernel, OpContext, OpIo, RuntimeError, TensorInfo};

/// The constant scalar axis of input `i`.
fn constant_axis(ctx: &OpContext<'_>, i: usize, rank: usize) -> Result<usize, RuntimeError> {
    match ctx.constant_ints(i)?.as_slice() {
        [axis] => normalize_axis(ctx, *axis, rank),
        other => Err(ctx.invalid(format!("the axis must be one value, got {other:?}"))),
    }
}

/// SPLIT into `num_splits` equal parts along the constant axis of input 0; the data is input 1.
pub fn split(ctx: &OpContext<'_>, num_splits: i32) -> Result<Box<dyn Kernel>, RuntimeError> {
    let input = ctx.input(1)?;
    let axis = constant_axis(ctx, 0, input.rank())?;
    let n = usize::try_from(num_splits)
        .ok()
        .filter(|&n| n > 0 && n == ctx.num_outputs())
        .ok_or_else(|| {
            ctx.invalid(format!(
                "num_splits {num_splits} does not match {} outputs",
                ctx.num_outputs()
            ))
        })?;
    let dim = input.shape[axis];
    if dim % n != 0 {
        return Err(ctx.invalid(format!(
            "dimension {axis} of size {dim} does not split evenly into {n}"
        )));
    }
    build_split(ctx, input, 1, axis, &vec![dim / n; n], false)
}

/// SPLIT_V into the sizes of constant input 1 (one of them may be -1: the rest) along the
/// constant axis of input 2.
pub fn split_v(ctx: &OpContext<'_>, num_splits: i32) -> Result<Box<dyn Kernel>, RuntimeError> {
    let input = ctx.input(0)?;
    let sizes = ctx.constant_ints(1)?;
    let axis = constant_axis(ctx, 2, input.rank())?;
    if usize::try_from(num_splits).ok() != Some(ctx.num_outputs())
        || sizes.len() != ctx.num_outputs()
    {
        return Err(ctx.invalid(format!(
            "num_splits {num_splits} and size_splits {sizes:?} do not match {} outputs",
            ctx.num_outputs()
        )));
    }
    let dim = input.shape[axis] as i64;
    let unknown: Vec<usize> = (0..sizes.len()).filter(|&i| sizes[i] == -1).collect();
    let known: i64 = sizes.iter().filter(|&&s| s != -1).sum();
    let mut sizes = sizes.clone();
    match unknown.as_slice() {
        [] if known == dim => {}
        [i] if known <= dim => sizes[*i] = dim - known,
        _ => {
            return Err(ctx.invalid(format!(
                "size_splits {sizes:?} do not add up to dimension {axis} of size {dim}"
            )));
        }
    }
    let sizes = sizes
        .iter()
        .map(|&s| usize::try_from(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| ctx.invalid(format!("size_splits {sizes:?} has negative entries")))?;
    build_split(ctx, input, 0, axis, &sizes, false)
}

/// UNPACK along `axis` (negative counts from the end) into `num` outputs of one rank less.
/// The outputs must share the input's scale and zero point, as TFLite requires.
pub fn unpack(ctx: &OpContext<'_>, o: &UnpackOptions) -> Result<Box<dyn Kernel>, RuntimeError> {
    let input = ctx.input(0)?;
    let axis = normalize_axis(ctx, i64::from(o.axis), input.rank())?;
    let dim = input.shape[axis];
    if usize::try_from(o.num).ok() != Some(dim) || ctx.num_outputs() != dim {
        return Err(ctx.invalid(format!(
            "num {} and {} outputs do not match dimension {axis} of size {dim}",
            o.num,
            ctx.num_outputs()
        )));
    }
    if input.num_elements() == 0 {
        return Err(ctx.invalid("UNPACK of an empty tensor"));
    }
    for k in 0..ctx.num_outputs() {
        if legacy_params(ctx.output(k)?) != legacy_params(input) {
            return Err(ctx.invalid(format!(
                "output {k} has other quantization parameters than the input"
            )));
        }
    }
    build_split(ctx, input, 0, axis, &vec![1; dim], true)
}

/// Builds the kernel giving output `k` the `sizes[k]` entries along `axis` that follow the
/// previous outputs'; `drop_axis` removes the axis from the output shapes (UNPACK).
fn build_split(
    ctx: &OpContext<'_>,
    input: &TensorInfo,
    data_input: usize,
    axis: usize,
    sizes: &[usize],
    drop_axis: bool,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    let outer: usize = input.shape[..axis].iter().product();
    let inner: usize = input.shape[axis + 1..].iter().product();
    let mut parts = Vec::with_capacity(sizes.len());
    let mut offset = 0;
    for (k, &size) in sizes.iter().enumerate() {
        let output = ctx.output(k)?;
        if output.dtype != input.dtype {
            return Err(ctx.unsupported_types());
        }
        let mut shape = input.shape.clone();
        if drop_axis {
            shape.remove(axis);
        } else {
            shape[axis] = size;
        }
        check_output_shape(ctx, output, &shape)?;
        parts.push(Part {
            offset,
            row: size * inner,
        });
        offset += size * inner;
    }
    let plan = SplitPlan {
        data_input,
        outer,
        in_row: input.shape[axis] * inner,
        parts,
    };
    let bytes = element_bytes(ctx, input)?;
    with_element_type!(bytes, ctx, |T| Ok(Box::new(Split::<T> {
        plan,
        _t: PhantomData
    }) as Box<dyn Kernel>))
}

/// Output `k` takes `row` elements at `offset` of every input row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Part {
    offset: usize,
    row: usize,
}

struct SplitPlan {
    data_input: usize,
    outer: usize,
    in_row: usize,
    parts: Vec<Part>,
}

struct Split<T> {
    plan: SplitPlan,
    _t: PhantomData<T>,
}

impl<T: Pod + Send> Kernel for Split<T> {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let p = &self.plan;
        for (k, part) in p.parts.iter().enumerate() {
            let (inputs, out) = io.split(k)?;
            let out = crate::io::typed_mut::<T>(out)?;
            let input = input_of_len::<T>(&inputs, p.data_input, p.outer * p.in_row)?;
            check_output_len(out, p.outer * part.row)?;
            if part.row == 0 {
                continue;
            }
            for (dst, src) in out
                .chunks_exact_mut(part.row)
                .zip(input.chunks_exact(p.in_row))
            {
                dst.copy_from_slice(&src[part.offset..part.offset + part.row]);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{i32s, model, run, t};
    use octet_core::{DType, Op};

    #[test]
    fn split_takes_the_axis_from_input_zero() {
        // [2, 4] split in two along axis -1: columns 0-1 and 2-3.
        let m = model(
            Op::Split { num_splits: 2 },
            vec![
                t(DType::Int32, &[]).data(i32s(&[-1])),
                t(DType::UInt8, &[2, 4]),
            ],
            vec![t(DType::UInt8, &[2, 2]), t(DType::UInt8, &[2, 2])],
        );
        let out = run(&m, &[vec![0, 1, 2, 3, 4, 5, 6, 7]]).unwrap();
        assert_eq!(out, vec![vec![0, 1, 4, 5], vec![2, 3, 6, 7]]);
    }

    #[test]
    fn split_v_fills_in_the_minus_one() {
        // Sizes [1, -1] of a dimension of 3: 1 and 2.
        let m = model(
            Op::SplitV { num_splits: 2 },
            vec![
                t(DType::Int8, &[3]),
                t(DType::Int32, &[2]).data(i32s(&[1, -1])),
                t(DType::Int32, &[]).data(i32s(&[0])),
            ],
            vec![t(DType::Int8, &[1]), t(DType::Int8, &[2])],
        );
        let out = run(&m, &[vec![10, 11, 12]]).unwrap();
        assert_eq!(out, vec![vec![10], vec![11, 12]]);
    }

    #[test]
    fn unpack_along_the_first_axis() {
        let m = model(
            Op::Unpack(UnpackOptions { num: 2, axis: -2 }),
            vec![t(DType::Int32, &[2, 2])],
            vec![t(DType::Int32, &[2]), t(DType::Int32, &[2])],
        );
        let out = run(&m, &[i32s(&[1, 2, 3, 4])]).unwrap();
        assert_eq!(out, vec![i32s(&[1, 2]), i32s(&[3, 4])]);
    }
}
