//! Ops that only move data: CONCATENATION, PAD, PADV2, MIRROR_PAD, RESHAPE (also SQUEEZE and
//! EXPAND_DIMS), TRANSPOSE, STRIDED_SLICE, SLICE, SPLIT, SPLIT_V, PACK, UNPACK, GATHER.
//!
//! Quantized tensors keep their input's parameters through these ops, so most kernels here work
//! on elements of any width (1, 2, 4 or 8 bytes) without looking at the dtype's meaning. The
//! exceptions follow TFLite: uint8 CONCATENATION rescales inputs whose parameters differ from the
//! output's, and PAD fills quantized tensors with the output's zero point.
//!
//! Index arithmetic is done once when the kernel is built: every kernel here validates that the
//! positions it will read and write lie inside the tensors' static shapes, so `eval` only copies.

mod concat;
mod gather;
mod pad;
mod slice;
mod split;

pub use concat::{concatenation, pack};
pub use gather::gather;
pub use pad::{mirror_pad, pad, pad_v2};
pub use slice::{slice, strided_slice, transpose};
pub use split::{split, split_v, unpack};

use crate::{Kernel, OpContext, OpIo, RuntimeError, TensorInfo};

/// RESHAPE, SQUEEZE and EXPAND_DIMS: the bytes stay as they are; only the static shape changes.
pub fn reshape(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    let input = ctx.input(0)?;
    let output = ctx.output(0)?;
    if input.dtype != output.dtype || input.num_elements() != output.num_elements() {
        return Err(ctx.invalid(format!(
            "cannot reshape {} {:?} into {} {:?}",
            input.dtype, input.shape, output.dtype, output.shape
        )));
    }
    Ok(Box::new(CopyBytes))
}

/// Copies input 0 to output 0 unchanged.
struct CopyBytes;

impl Kernel for CopyBytes {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (inputs, out) = io.split(0)?;
        out.copy_from_slice(inputs.bytes(0)?);
        Ok(())
    }
}

/// Runs `$body` with `$T` bound to the unsigned integer type as wide as `$bytes` (1, 2, 4 or 8):
/// the byte-moving kernels are generic over the element width only.
macro_rules! with_element_type {
    ($bytes:expr, $ctx:expr, |$T:ident| $body:expr) => {
        match $bytes {
            1 => {
                type $T = u8;
                $body
            }
            2 => {
                type $T = u16;
                $body
            }
            4 => {
                type $T = u32;
                $body
            }
            8 => {
                type $T = u64;
                $body
            }
            other => Err($ctx.unsupported(format!("{other}-byte elements"))),
        }
    };
}
pub(crate) use with_element_type;

/// Bytes per element of `tensor` for the byte-moving kernels (1, 2, 4 or 8); an "unsupported"
/// error for packed sub-byte types, strings and other variable-size or 16-byte types.
pub(super) fn element_bytes(
    ctx: &OpContext<'_>,
    tensor: &TensorInfo,
) -> Result<usize, RuntimeError> {
    match tensor.dtype.bit_width() {
        Some(bits @ (8 | 16 | 32 | 64)) => Ok(bits as usize / 8),
        _ => Err(ctx.unsupported(format!(
            "{} tensors ('{}') are not supported",
            tensor.dtype, tensor.name
        ))),
    }
}

/// The per-tensor `(scale, zero_point)` TFLite keeps in `TfLiteTensor::params`: the single
/// scale and zero point of a per-tensor quantized tensor, `(0, 0)` for anything else. TFLite's
/// "same quantization" checks compare these.
pub(super) fn legacy_params(tensor: &TensorInfo) -> (f32, i32) {
    tensor.scale_zero_point().unwrap_or((0.0, 0))
}

/// Checks that `output` has the shape an op computes; TFLite resizes the output to it.
pub(super) fn check_output_shape(
    ctx: &OpContext<'_>,
    output: &TensorInfo,
    expected: &[usize],
) -> Result<(), RuntimeError> {
    if output.shape != expected {
        return Err(ctx.invalid(format!(
            "output '{}' has shape {:?}, but the op produces {:?}",
            output.name, output.shape, expected
        )));
    }
    Ok(())
}

/// `axis` counted from the end when negative, checked against `rank`.
pub(super) fn normalize_axis(
    ctx: &OpContext<'_>,
    axis: i64,
    rank: usize,
) -> Result<usize, RuntimeError> {
    let rank_i = rank as i64;
    let normalized = if axis < 0 { axis + rank_i } else { axis };
    if (0..rank_i).contains(&normalized) {
        Ok(normalized as usize)
    } else {
        Err(ctx.invalid(format!("axis {axis} is out of range for rank {rank}")))
    }
}

/// Row-major strides (in elements) of `shape`.
pub(super) fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        strides[k] = strides[k + 1] * shape[k + 1];
    }
    strides
}

/// Checks that input `i` holds `len` elements of `T` and returns it.
pub(super) fn input_of_len<'a, T: bytemuck::Pod>(
    inputs: &'a crate::Inputs<'_>,
    i: usize,
    len: usize,
) -> Result<&'a [T], RuntimeError> {
    let data = inputs.get::<T>(i)?;
    if data.len() != len {
        return Err(RuntimeError::eval(format!(
            "input {i} holds {} elements, {len} expected",
            data.len()
        )));
    }
    Ok(data)
}

/// Checks that an output holds `len` elements.
pub(super) fn check_output_len<T>(out: &[T], len: usize) -> Result<(), RuntimeError> {
    if out.len() != len {
        return Err(RuntimeError::eval(format!(
            "output holds {} elements, {len} expected",
            out.len()
        )));
    }
    Ok(())
}

/// A strided window over a tensor: output element `(i_0, ..., i_n)` (row-major over `counts`)
/// is input element `base + Σ i_k * strides[k]`. TRANSPOSE, SLICE and STRIDED_SLICE are all such
/// windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StridedView {
    counts: Vec<usize>,
    strides: Vec<isize>,
    base: isize,
    len: usize,
}

impl StridedView {
    /// The window, simplified (axes of size 1 dropped, contiguous axes merged); `None` when it
    /// would read outside an input of `input_len` elements.
    pub(super) fn new(
        counts: &[usize],
        strides: &[isize],
        base: isize,
        input_len: usize,
    ) -> Option<Self> {
        let len = counts.iter().product::<usize>();
        if len == 0 {
            return Some(StridedView {
                counts: vec![0],
                strides: vec![0],
                base: 0,
                len: 0,
            });
        }
        let (mut lo, mut hi) = (base, base);
        for (&n, &s) in counts.iter().zip(strides) {
            let reach = (n as isize - 1).checked_mul(s)?;
            if reach < 0 {
                lo = lo.checked_add(reach)?;
            } else {
                hi = hi.checked_add(reach)?;
            }
        }
        if lo < 0 || hi >= input_len as isize {
            return None;
        }
        let mut merged_counts: Vec<usize> = Vec::with_capacity(counts.len());
        let mut merged_strides: Vec<isize> = Vec::with_capacity(counts.len());
        for (&n, &s) in counts.iter().zip(strides) {
            if n == 1 {
                continue;
            }
            match (merged_counts.last_mut(), merged_strides.last_mut()) {
                (Some(last_n), Some(last_s)) if *last_s == s * n as isize => {
                    *last_n *= n;
                    *last_s = s;
                }
                _ => {
                    merged_counts.push(n);
                    merged_strides.push(s);
                }
            }
        }
        Some(StridedView {
            counts: merged_counts,
            strides: merged_strides,
            base,
            len,
        })
    }

    /// Number of elements in the window.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Copies the window of `input` into `out` (which holds [`len`](Self::len) elements).
    pub(super) fn gather<T: Copy>(&self, input: &[T], out: &mut [T]) {
        if self.len == 0 {
            return;
        }
        gather_rec(input, out, self.base, &self.counts, &self.strides);
    }
}

fn gather_rec<T: Copy>(
    input: &[T],
    out: &mut [T],
    base: isize,
    counts: &[usize],
    strides: &[isize],
) {
    let (Some((&n, inner_counts)), Some((&s, inner_strides))) =
        (counts.split_first(), strides.split_first())
    else {
        // A single element.
        if let Some(o) = out.first_mut() {
            *o = input[base as usize];
        }
        return;
    };
    if inner_counts.is_empty() {
        if s == 1 {
            let start = base as usize;
            out.copy_from_slice(&input[start..start + n]);
        } else {
            for (k, o) in out.iter_mut().enumerate() {
                *o = input[(base + k as isize * s) as usize];
            }
        }
        return;
    }
    let chunk = out.len() / n;
    for (k, part) in out.chunks_exact_mut(chunk).enumerate() {
        gather_rec(
            input,
            part,
            base + k as isize * s,
            inner_counts,
            inner_strides,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_are_row_major() {
        assert_eq!(strides_of(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(strides_of(&[5]), vec![1]);
        assert!(strides_of(&[]).is_empty());
    }

    #[test]
    fn views_merge_contiguous_axes_and_check_bounds() {
        // A [2, 3] window at the start of a [2, 3] tensor is one contiguous run of 6.
        let v = StridedView::new(&[2, 3], &[3, 1], 0, 6).unwrap();
        assert_eq!(v.counts, vec![6]);
        assert_eq!(v.strides, vec![1]);
        // Reading element 6 of a 6-element tensor is refused.
        assert!(StridedView::new(&[2, 3], &[3, 1], 1, 6).is_none());
        // Negative strides walk backwards: elements 5, 3, 1.
        let v = StridedView::new(&[3], &[-2], 5, 6).unwrap();
        let input: Vec<u8> = (0..6).collect();
        let mut out = [0u8; 3];
        v.gather(&input, &mut out);
        assert_eq!(out, [5, 3, 1]);
        assert!(StridedView::new(&[4], &[-2], 5, 6).is_none());
    }

    #[test]
    fn a_transposing_view_gathers_columns() {
        // [2, 3] -> [3, 2]: output (i, j) = input (j, i) = input[3 j + i].
        let input = [1u16, 2, 3, 4, 5, 6];
        let v = StridedView::new(&[3, 2], &[1, 3], 0, 6).unwrap();
        let mut out = [0u16; 6];
        v.gather(&input, &mut out);
        assert_eq!(out, [1, 4, 2, 5, 3, 6]);
    }
}
