//! TRANSPOSE, SLICE and STRIDED_SLICE: each output is a strided window of the input.

use std::marker::PhantomData;

use bytemuck::Pod;
use octet_core::StridedSliceOptions;

use super::{
    StridedView, check_output_len, check_output_shape, element_bytes, input_of_len, strides_of,
    with_element_type,
};
use crate::{Kernel, OpContext, OpIo, RuntimeError, TensorInfo};

/// Copies a [`StridedView`] of input 0 into output 0.
struct ViewCopy<T> {
    view: StridedView,
    in_len: usize,
    _t: PhantomData<T>,
}

impl<T: Pod + Send> Kernel for ViewCopy<T> {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (inputs, out) = io.single::<T>()?;
        let input = input_of_len::<T>(&inputs, 0, self.in_len)?;
        check_output_len(out, self.view.len())?;
        self.view.gather(input, out);
        Ok(())
    }
}

/// Builds the kernel copying `counts`/`strides`/`base` (in input elements) of input 0.
fn view_kernel(
    ctx: &OpContext<'_>,
    input: &TensorInfo,
    output: &TensorInfo,
    counts: &[usize],
    strides: &[isize],
    base: isize,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    if input.dtype != output.dtype {
        return Err(ctx.unsupported_types());
    }
    let in_len = input.num_elements();
    let view = StridedView::new(counts, strides, base, in_len)
        .ok_or_else(|| ctx.invalid("the slice reads outside the input"))?;
    if view.len() != output.num_elements() {
        return Err(ctx.invalid(format!(
            "the op produces {} elements but output '{}' {:?} holds {}",
            view.len(),
            output.name,
            output.shape,
            output.num_elements()
        )));
    }
    let bytes = element_bytes(ctx, input)?;
    with_element_type!(bytes, ctx, |T| Ok(Box::new(ViewCopy::<T> {
        view,
        in_len,
        _t: PhantomData
    }) as Box<dyn Kernel>))
}

fn as_isize(strides: &[usize]) -> Vec<isize> {
    strides.iter().map(|&s| s as isize).collect()
}

/// TRANSPOSE with the constant permutation of input 1 (negative entries count from the end).
pub fn transpose(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    let input = ctx.input(0)?;
    let output = ctx.output(0)?;
    let rank = input.rank();
    let perm = ctx.constant_ints(1)?;
    if perm.len() != rank {
        return Err(ctx.invalid(format!(
            "the permutation {perm:?} does not have rank {rank} entries"
        )));
    }
    let mut seen = vec![false; rank];
    let mut axes = Vec::with_capacity(rank);
    for &p in &perm {
        let axis = if p < 0 { p + rank as i64 } else { p };
        match usize::try_from(axis).ok().filter(|&a| a < rank) {
            Some(a) if !seen[a] => {
                seen[a] = true;
                axes.push(a);
            }
            _ => return Err(ctx.invalid(format!("{perm:?} is not a permutation"))),
        }
    }
    let in_strides = strides_of(&input.shape);
    let counts: Vec<usize> = axes.iter().map(|&a| input.shape[a]).collect();
    check_output_shape(ctx, output, &counts)?;
    let strides: Vec<isize> = axes.iter().map(|&a| in_strides[a] as isize).collect();
    view_kernel(ctx, input, output, &counts, &strides, 0)
}

/// SLICE with constant `begin` (input 1) and `size` (input 2; -1 means "to the end").
pub fn slice(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    let input = ctx.input(0)?;
    let output = ctx.output(0)?;
    let rank = input.rank();
    let begin = ctx.constant_ints(1)?;
    let size = ctx.constant_ints(2)?;
    if begin.len() != rank || size.len() != rank {
        return Err(ctx.invalid(format!(
            "begin {begin:?} and size {size:?} need {rank} entries"
        )));
    }
    let mut counts = Vec::with_capacity(rank);
    let mut base = 0usize;
    let in_strides = strides_of(&input.shape);
    for d in 0..rank {
        let dim = input.shape[d] as i64;
        let (b, s) = (begin[d], size[d]);
        let count = if s == -1 { dim - b } else { s };
        if b < 0 || b > dim || count < 0 || count > dim - b {
            return Err(ctx.invalid(format!(
                "begin {b} and size {s} do not fit dimension {d} of size {dim}"
            )));
        }
        counts.push(count as usize);
        base += b as usize * in_strides[d];
    }
    check_output_shape(ctx, output, &counts)?;
    view_kernel(
        ctx,
        input,
        output,
        &counts,
        &as_isize(&in_strides),
        base as isize,
    )
}

/// One bit of a TFLite mask (bits past 31 are clear).
fn bit(mask: u32, i: usize) -> bool {
    i < 32 && mask & (1u32 << i) != 0
}

/// What TFLite's `BuildStridedSliceParams` derives from the op's masks: the input shape with
/// new axes inserted and ellipses expanded, and per axis of it the begin, end, stride and masks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct SliceParams {
    shape: Vec<usize>,
    start: Vec<i64>,
    stop: Vec<i64>,
    stride: Vec<i64>,
    begin_mask: u32,
    end_mask: u32,
    shrink_axis_mask: u32,
    offset: bool,
}

/// TFLite `BuildStridedSliceParams` (strided_slice.cc): expands the ellipsis and new-axis masks
/// into an "effective" input shape and per-axis parameters. `None` if the masks and index
/// vectors do not fit the input.
fn build_params(
    o: &StridedSliceOptions,
    input_shape: &[usize],
    begin: &[i64],
    end: &[i64],
    strides: &[i64],
) -> Option<SliceParams> {
    let (ellipsis_mask, new_axis_mask) = (o.ellipsis_mask as u32, o.new_axis_mask as u32);
    let begin_count = begin.len();
    let input_dims = input_shape.len();
    let num_add_axis = (0..begin_count)
        .filter(|&i| !bit(ellipsis_mask, i) && bit(new_axis_mask, i))
        .count();
    let effective_dims = input_dims + num_add_axis;

    let mut effective_ellipsis = vec![false; effective_dims];
    let mut effective_new_axis = vec![false; effective_dims];
    let mut ellipsis_start = effective_dims;
    let mut expanded_ellipsis = 0usize;
    let mut i = 0;
    while i < effective_dims {
        if bit(ellipsis_mask, i) {
            ellipsis_start = i;
            let wanted = (i + 1 + num_add_axis + input_dims) as i64 - begin_count as i64;
            let end_index = (i + 1).max(wanted.clamp(0, effective_dims as i64) as usize);
            expanded_ellipsis = end_index - ellipsis_start - 1;
            while i < end_index {
                effective_ellipsis[i] = true;
                i += 1;
            }
            continue;
        }
        if bit(new_axis_mask, i.checked_sub(expanded_ellipsis)?) {
            effective_new_axis[i] = true;
        }
        i += 1;
    }

    let mut p = SliceParams {
        shape: vec![0; effective_dims],
        start: vec![0; effective_dims],
        stop: vec![0; effective_dims],
        stride: vec![1; effective_dims],
        offset: o.offset,
        ..SliceParams::default()
    };
    let (mut added_ellipsis, mut added_axes) = (0usize, 0usize);
    for i in 0..effective_dims {
        let set = 1u32.checked_shl(i as u32).unwrap_or(0);
        if effective_ellipsis[i] {
            added_ellipsis = i.saturating_sub(ellipsis_start);
            p.begin_mask |= set;
            p.end_mask |= set;
            p.shape[i] = *input_shape.get(i.checked_sub(added_axes)?)?;
        } else if effective_new_axis[i] {
            p.stop[i] = 1;
            p.shape[i] = 1;
            added_axes += 1;
        } else if i >= begin_count + expanded_ellipsis {
            p.begin_mask |= set;
            p.end_mask |= set;
            p.shape[i] = *input_shape.get(i.checked_sub(added_axes)?)?;
        } else {
            let orig = i.checked_sub(added_ellipsis)?;
            p.start[i] = *begin.get(orig)?;
            p.stop[i] = *end.get(orig)?;
            p.stride[i] = *strides.get(orig)?;
            if bit(o.begin_mask as u32, orig) {
                p.begin_mask |= set;
            }
            if bit(o.end_mask as u32, orig) {
                p.end_mask |= set;
            }
            if bit(o.shrink_axis_mask as u32, orig) {
                p.shrink_axis_mask |= set;
            }
            p.shape[i] = *input_shape.get(i.checked_sub(added_axes)?)?;
        }
    }
    Some(p)
}

/// TFLite `StartForAxis` (reference strided_slice.h): the first index read along `axis`.
fn start_for_axis(p: &SliceParams, axis: usize) -> i64 {
    let size = p.shape[axis] as i64;
    let stride = p.stride[axis];
    let mut start = p.start[axis];
    if start < 0 {
        start += size;
    }
    start = if stride > 0 {
        start.clamp(0, size)
    } else {
        start.clamp(-1, size - 1)
    };
    if bit(p.begin_mask, axis) {
        start = if stride > 0 { 0 } else { size - 1 };
    }
    start
}

/// TFLite `EndForAxis`: one past the last index read along `axis` (in the stride's direction).
fn end_for_axis(p: &SliceParams, axis: usize, start: i64) -> i64 {
    let size = p.shape[axis] as i64;
    if bit(p.shrink_axis_mask, axis) {
        return if start >= size { start } else { start + 1 };
    }
    let stride = p.stride[axis];
    let mut end = p.stop[axis];
    if p.offset {
        end += start;
    }
    if end < 0 {
        end += size;
    }
    end = if stride > 0 {
        end.clamp(0, size)
    } else {
        end.clamp(-1, size - 1)
    };
    if bit(p.end_mask, axis) {
        end = if stride > 0 { size } else { -1 };
    }
    end
}

/// Number of indices `start, start + stride, ...` before `end` (TFLite's output-size formula).
fn count_between(start: i64, end: i64, stride: i64) -> i64 {
    let span = end - start;
    if (span < 0) != (stride < 0) || span == 0 {
        0
    } else if stride < 0 {
        (span + 1) / stride + 1
    } else {
        (span - 1) / stride + 1
    }
}

/// STRIDED_SLICE with constant `begin`, `end` and `strides` (inputs 1, 2, 3), following TFLite's
/// handling of the begin/end/ellipsis/new-axis/shrink-axis masks, the `offset` flag and negative
/// strides.
pub fn strided_slice(
    ctx: &OpContext<'_>,
    o: &StridedSliceOptions,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    let input = ctx.input(0)?;
    let output = ctx.output(0)?;
    let begin = ctx.constant_ints(1)?;
    let end = ctx.constant_ints(2)?;
    let strides = ctx.constant_ints(3)?;
    if begin.len() != end.len() || begin.len() != strides.len() || begin.len() > 31 {
        return Err(ctx.invalid(format!(
            "begin {begin:?}, end {end:?} and strides {strides:?} must have the same length, at most 31"
        )));
    }
    if strides.iter().any(|&s| s == 0 || s <= i64::from(i32::MIN)) {
        return Err(ctx.invalid(format!("strides {strides:?} must be non-zero")));
    }
    let p = build_params(o, &input.shape, &begin, &end, &strides)
        .ok_or_else(|| ctx.invalid("the masks and indices do not fit the input's rank"))?;

    let effective_strides = strides_of(&p.shape);
    let mut counts = Vec::with_capacity(p.shape.len());
    let mut view_strides = Vec::with_capacity(p.shape.len());
    let mut out_shape = Vec::with_capacity(p.shape.len());
    let mut base = 0isize;
    for (axis, &effective_stride) in effective_strides.iter().enumerate() {
        let start = start_for_axis(&p, axis);
        let stop = end_for_axis(&p, axis, start);
        let count = count_between(start, stop, p.stride[axis]);
        let shrink = bit(p.shrink_axis_mask, axis);
        if !shrink {
            // With `offset` set, TFLite sizes the output from the raw `end` entry at this
            // (effective) axis, before any clamping.
            let declared = if p.offset {
                let raw_end = end.get(axis).copied().ok_or_else(|| {
                    ctx.unsupported("offset slices with ellipsis or implicit trailing axes")
                })?;
                count_between(0, raw_end, p.stride[axis])
            } else {
                count
            };
            if declared != count {
                return Err(ctx.unsupported(format!(
                    "offset slice along axis {axis} is clamped to {count} elements but TFLite \
                     sizes it {declared}"
                )));
            }
            out_shape.push(count as usize);
        }
        counts.push(count as usize);
        view_strides.push((p.stride[axis] as isize) * effective_stride as isize);
        if count > 0 {
            base += start as isize * effective_stride as isize;
        }
    }
    check_output_shape(ctx, output, &out_shape)?;
    view_kernel(ctx, input, output, &counts, &view_strides, base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{i32s, model, run, t};
    use octet_core::{DType, Op};

    #[test]
    fn transpose_with_a_negative_permutation_entry() {
        // perm [-1, 0] on [2, 3] is [1, 0]: the matrix transpose.
        let m = model(
            Op::Transpose,
            vec![
                t(DType::UInt8, &[2, 3]),
                t(DType::Int32, &[2]).data(i32s(&[-1, 0])),
            ],
            vec![t(DType::UInt8, &[3, 2])],
        );
        let out = run(&m, &[vec![1, 2, 3, 4, 5, 6]]).unwrap();
        assert_eq!(out[0], vec![1, 4, 2, 5, 3, 6]);
    }

    #[test]
    fn slice_with_size_minus_one_runs_to_the_end() {
        // x[1:, 1:3] of [[0 1 2 3] [4 5 6 7] [8 9 10 11]].
        let m = model(
            Op::Slice,
            vec![
                t(DType::Int32, &[3, 4]),
                t(DType::Int32, &[2]).data(i32s(&[1, 1])),
                t(DType::Int32, &[2]).data(i32s(&[-1, 2])),
            ],
            vec![t(DType::Int32, &[2, 2])],
        );
        let out = run(&m, &[i32s(&(0..12).collect::<Vec<_>>())]).unwrap();
        assert_eq!(out[0], i32s(&[5, 6, 9, 10]));
    }

    #[test]
    fn strided_slice_reverses_and_shrinks() {
        // x[1, ::-2] of [[0 1 2 3 4] [5 6 7 8 9]] = [9 7 5].
        let m = model(
            Op::StridedSlice(options(2, 2, 0, 0, 1)),
            vec![
                t(DType::Int32, &[2, 5]),
                t(DType::Int32, &[2]).data(i32s(&[1, 0])),
                t(DType::Int32, &[2]).data(i32s(&[2, 0])),
                t(DType::Int32, &[2]).data(i32s(&[1, -2])),
            ],
            vec![t(DType::Int32, &[3])],
        );
        let out = run(&m, &[i32s(&(0..10).collect::<Vec<_>>())]).unwrap();
        assert_eq!(out[0], i32s(&[9, 7, 5]));
    }

    fn options(
        begin: i32,
        end: i32,
        ellipsis: i32,
        new_axis: i32,
        shrink: i32,
    ) -> StridedSliceOptions {
        StridedSliceOptions {
            begin_mask: begin,
            end_mask: end,
            ellipsis_mask: ellipsis,
            new_axis_mask: new_axis,
            shrink_axis_mask: shrink,
            offset: false,
        }
    }

    /// (start, stop, count) per effective axis.
    fn ranges(p: &SliceParams) -> Vec<(i64, i64, i64)> {
        (0..p.shape.len())
            .map(|a| {
                let s = start_for_axis(p, a);
                let e = end_for_axis(p, a, s);
                (s, e, count_between(s, e, p.stride[a]))
            })
            .collect()
    }

    #[test]
    fn negative_stride_walks_backwards() {
        // x[::-2] on 7 elements: begin masked -> start 6, end masked -> stop -1: 6, 4, 2, 0.
        let p = build_params(&options(1, 1, 0, 0, 0), &[7], &[0], &[0], &[-2]).unwrap();
        assert_eq!(ranges(&p), vec![(6, -1, 4)]);
        // x[-2:1:-1] on 5: start 3, stop 1: 3, 2.
        let p = build_params(&options(0, 0, 0, 0, 0), &[5], &[-2], &[1], &[-1]).unwrap();
        assert_eq!(ranges(&p), vec![(3, 1, 2)]);
    }

    #[test]
    fn ellipsis_and_new_axis_expand_the_shape() {
        // x[..., None, 1] on [2, 3, 4]: the ellipsis covers dims 0 and 1, a new axis of size 1
        // follows, and dim 2 is shrunk to index 1.
        let p = build_params(
            &options(0, 0, 1, 2, 4),
            &[2, 3, 4],
            &[0, 0, 1],
            &[0, 0, 2],
            &[1, 1, 1],
        )
        .unwrap();
        assert_eq!(p.shape, vec![2, 3, 1, 4]);
        assert_eq!(ranges(&p), vec![(0, 2, 2), (0, 3, 3), (0, 1, 1), (1, 2, 1)]);
        assert!(bit(p.shrink_axis_mask, 3));
    }

    #[test]
    fn begin_past_the_end_gives_an_empty_axis() {
        // x[5:] on 3 elements: start clamps to 3, stop 3: nothing.
        let p = build_params(&options(0, 1, 0, 0, 0), &[3], &[5], &[0], &[1]).unwrap();
        assert_eq!(ranges(&p), vec![(3, 3, 0)]);
    }
}
