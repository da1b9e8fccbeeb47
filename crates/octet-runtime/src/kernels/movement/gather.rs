//! GATHER: copies the rows of the input chosen by an index tensor.

use std::marker::PhantomData;

use bytemuck::Pod;
use octet_core::{DType, GatherOptions};

use super::{check_output_len, check_output_shape, element_bytes, input_of_len, with_element_type};
use crate::{Kernel, OpContext, OpIo, RuntimeError};

/// GATHER along `axis` with `batch_dims` leading batch dimensions (both may be negative), with
/// int16, int32 or int64 indices. An index outside `[0, dim)` fails at run time, as in TFLite.
pub fn gather(ctx: &OpContext<'_>, o: &GatherOptions) -> Result<Box<dyn Kernel>, RuntimeError> {
    let input = ctx.input(0)?;
    let positions = ctx.input(1)?;
    let output = ctx.output(0)?;
    if input.dtype != output.dtype {
        return Err(ctx.unsupported_types());
    }
    let rank = input.rank() as i64;
    let axis = if o.axis < 0 {
        i64::from(o.axis) + rank
    } else {
        i64::from(o.axis)
    };
    if !(0..rank).contains(&axis) {
        return Err(ctx.invalid(format!("axis {} is out of range for rank {rank}", o.axis)));
    }
    let positions_rank = positions.rank() as i64;
    let batch_dims = if o.batch_dims < 0 {
        i64::from(o.batch_dims) + positions_rank
    } else {
        i64::from(o.batch_dims)
    };
    if batch_dims < 0 || batch_dims > axis || batch_dims >= rank || batch_dims > positions_rank {
        return Err(ctx.invalid(format!(
            "batch_dims {} does not fit axis {axis}, input rank {rank} and indices rank \
             {positions_rank}",
            o.batch_dims
        )));
    }
    let (axis, batch_dims) = (axis as usize, batch_dims as usize);
    if input.shape[..batch_dims] != positions.shape[..batch_dims] {
        return Err(ctx.invalid(format!(
            "the batch dimensions of input {:?} and indices {:?} differ",
            input.shape, positions.shape
        )));
    }
    let mut out_shape = input.shape[..axis].to_vec();
    out_shape.extend_from_slice(&positions.shape[batch_dims..]);
    out_shape.extend_from_slice(&input.shape[axis + 1..]);
    check_output_shape(ctx, output, &out_shape)?;

    let plan = GatherPlan {
        batch: input.shape[..batch_dims].iter().product(),
        outer: input.shape[batch_dims..axis].iter().product(),
        axis_size: input.shape[axis],
        inner: input.shape[axis + 1..].iter().product(),
        coords: positions.shape[batch_dims..].iter().product(),
        in_len: input.num_elements(),
        out_len: output.num_elements(),
    };
    let bytes = element_bytes(ctx, input)?;
    macro_rules! with_index {
        ($I:ty) => {
            with_element_type!(bytes, ctx, |T| Ok(Box::new(Gather::<T, $I> {
                plan,
                _t: PhantomData
            }) as Box<dyn Kernel>))
        };
    }
    match positions.dtype {
        DType::Int16 => with_index!(i16),
        DType::Int32 => with_index!(i32),
        DType::Int64 => with_index!(i64),
        _ => Err(ctx.unsupported(format!(
            "{} indices (TFLite takes int16, int32 or int64)",
            positions.dtype
        ))),
    }
}

/// The loop bounds of TFLite's reference `Gather`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GatherPlan {
    batch: usize,
    outer: usize,
    axis_size: usize,
    inner: usize,
    coords: usize,
    in_len: usize,
    out_len: usize,
}

struct Gather<T, I> {
    plan: GatherPlan,
    _t: PhantomData<(T, I)>,
}

impl<T: Pod + Send, I: Pod + Send + Into<i64>> Kernel for Gather<T, I> {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let p = self.plan;
        let (inputs, out) = io.single::<T>()?;
        let input = input_of_len::<T>(&inputs, 0, p.in_len)?;
        let indices = input_of_len::<I>(&inputs, 1, p.batch * p.coords)?;
        check_output_len(out, p.out_len)?;
        // TFLite rejects a negative index anywhere before copying anything.
        if let Some(&bad) = indices.iter().find(|&&c| c.into() < 0) {
            return Err(RuntimeError::eval(format!(
                "gather index {} is negative",
                bad.into()
            )));
        }
        let mut to = 0;
        for b in 0..p.batch {
            let batch_indices = &indices[b * p.coords..(b + 1) * p.coords];
            for outer in 0..p.outer {
                let block = (b * p.outer + outer) * p.axis_size;
                for &index in batch_indices {
                    let index: i64 = index.into();
                    let Some(coord) = usize::try_from(index).ok().filter(|&c| c < p.axis_size)
                    else {
                        return Err(RuntimeError::eval(format!(
                            "gather index {index} is out of range [0, {})",
                            p.axis_size
                        )));
                    };
                    let from = (block + coord) * p.inner;
                    out[to..to + p.inner].copy_from_slice(&input[from..from + p.inner]);
                    to += p.inner;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{i32s, model, run, t};
    use octet_core::Op;

    fn gather_model(axis: i32, batch_dims: i32) -> octet_core::Model {
        model(
            Op::Gather(GatherOptions { axis, batch_dims }),
            vec![t(DType::Int32, &[2, 3]), t(DType::Int32, &[2])],
            vec![t(DType::Int32, &[2, 2])],
        )
    }

    #[test]
    fn gathers_columns() {
        // Columns 2 and 0 of [[0 1 2] [3 4 5]].
        let out = run(
            &gather_model(1, 0),
            &[i32s(&[0, 1, 2, 3, 4, 5]), i32s(&[2, 0])],
        )
        .unwrap();
        assert_eq!(out[0], i32s(&[2, 0, 5, 3]));
    }

    #[test]
    fn out_of_range_indices_fail_at_run_time() {
        let m = gather_model(1, 0);
        for bad in [3, -1] {
            let err = run(&m, &[i32s(&[0; 6]), i32s(&[0, bad])]).unwrap_err();
            assert!(matches!(err, RuntimeError::Eval { index: 0, .. }), "{err}");
        }
    }

    #[test]
    fn batch_dims_pick_one_index_per_row() {
        // batch_dims 1, indices [2, 1] of shape [2]: row 0 takes column 2, row 1 column 1.
        let m = model(
            Op::Gather(GatherOptions {
                axis: 1,
                batch_dims: 1,
            }),
            vec![t(DType::Int32, &[2, 3]), t(DType::Int64, &[2])],
            vec![t(DType::Int32, &[2])],
        );
        let idx: Vec<u8> = [2i64, 1].iter().flat_map(|x| x.to_le_bytes()).collect();
        let out = run(&m, &[i32s(&[0, 1, 2, 3, 4, 5]), idx]).unwrap();
        assert_eq!(out[0], i32s(&[2, 4]));
    }
}
