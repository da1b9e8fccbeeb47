//! PAD, PADV2 and MIRROR_PAD.

use std::marker::PhantomData;

use bytemuck::Pod;
use octet_core::{DType, MirrorPadMode, TensorData};

use super::{
    check_output_len, check_output_shape, element_bytes, input_of_len, legacy_params, strides_of,
    with_element_type,
};
use crate::{Kernel, OpContext, OpIo, RuntimeError};

/// PAD: pads with zero, or with the output's zero point for quantized tensors.
pub fn pad(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    build_pad(ctx)
}

/// PADV2: pads with the scalar input 2 (a quantized value must share the output's parameters).
pub fn pad_v2(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    build_pad(ctx)
}

/// The `[rank, 2]` paddings of constant input 1 as `(before, after)` pairs, checked to be
/// non-negative. TFLite accepts int32, int64, int8 and int16 paddings.
fn paddings(ctx: &OpContext<'_>, rank: usize) -> Result<Vec<(usize, usize)>, RuntimeError> {
    let values: Vec<i64> = match ctx.constant(1)? {
        Some(TensorData::I32(v)) => v.into_iter().map(i64::from).collect(),
        Some(TensorData::I64(v)) => v,
        Some(TensorData::I8(v)) => v.into_iter().map(i64::from).collect(),
        Some(TensorData::I16(v)) => v.into_iter().map(i64::from).collect(),
        Some(_) => return Err(ctx.invalid("paddings must be an integer tensor")),
        None => {
            return Err(
                ctx.unsupported("paddings computed at run time; octet needs them to be a constant")
            );
        }
    };
    let shape = &ctx.input(1)?.shape;
    if shape.as_slice() != [rank, 2] {
        return Err(ctx.invalid(format!(
            "paddings have shape {shape:?}, [{rank}, 2] expected"
        )));
    }
    values
        .chunks_exact(2)
        .map(|p| match (usize::try_from(p[0]), usize::try_from(p[1])) {
            (Ok(before), Ok(after))
                if p[0] <= i64::from(i32::MAX) && p[1] <= i64::from(i32::MAX) =>
            {
                Ok((before, after))
            }
            _ => Err(ctx.invalid(format!("padding {p:?} is negative or too large"))),
        })
        .collect()
}

/// Where the pad value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PadValue<T> {
    /// A value known when the kernel is built (zero or the output zero point).
    Fixed(T),
    /// Element 0 of input 2, read at run time.
    Input,
}

fn build_pad(ctx: &OpContext<'_>) -> Result<Box<dyn Kernel>, RuntimeError> {
    let input = ctx.input(0)?;
    let output = ctx.output(0)?;
    if input.dtype != output.dtype {
        return Err(ctx.unsupported_types());
    }
    let constant_values = ctx.optional_input(2);
    if let Some(c) = constant_values
        && (c.dtype != input.dtype || c.num_elements() != 1)
    {
        return Err(ctx.invalid(format!(
            "the pad value must be one {} element, got {} {:?}",
            input.dtype, c.dtype, c.shape
        )));
    }
    let rank = input.rank();
    let pads = paddings(ctx, rank)?;
    let out_shape: Vec<usize> = input
        .shape
        .iter()
        .zip(&pads)
        .map(|(&d, &(before, after))| d + before + after)
        .collect();
    check_output_shape(ctx, output, &out_shape)?;

    // TFLite pads quantized uint8 (always), int8 and int16 tensors with the output zero point,
    // and requires a PADV2 value to share the output's scale and zero point.
    let quantized_pad = match input.dtype {
        DType::UInt8 => true,
        DType::Int8 | DType::Int16 => input.quant.is_some(),
        DType::Float32
        | DType::Float16
        | DType::BFloat16
        | DType::Int32
        | DType::Int64
        | DType::Bool => false,
        _ => return Err(ctx.unsupported_types()),
    };
    let zero_point = legacy_params(output).1;
    if quantized_pad
        && let Some(c) = constant_values
        && legacy_params(c) != legacy_params(output)
    {
        return Err(ctx.invalid("the pad value has other quantization parameters than the output"));
    }
    let plan = PadPlan::new(&input.shape, &out_shape, &pads);
    let bytes = element_bytes(ctx, input)?;
    if constant_values.is_some() {
        return with_element_type!(bytes, ctx, |T| Ok(
            Box::new(Pad::<T>::new(plan, PadValue::Input)) as Box<dyn Kernel>
        ));
    }
    if !quantized_pad {
        // Zero of every dtype here is all-zero bytes.
        return with_element_type!(bytes, ctx, |T| Ok(Box::new(Pad::<T>::new(
            plan,
            PadValue::Fixed(T::default())
        )) as Box<dyn Kernel>));
    }
    let out_of_range = || {
        ctx.invalid(format!(
            "output zero point {zero_point} does not fit in {}",
            input.dtype
        ))
    };
    Ok(match input.dtype {
        DType::UInt8 => Box::new(Pad::new(
            plan,
            PadValue::Fixed(u8::try_from(zero_point).map_err(|_| out_of_range())?),
        )),
        DType::Int8 => Box::new(Pad::new(
            plan,
            PadValue::Fixed(i8::try_from(zero_point).map_err(|_| out_of_range())?),
        )),
        _ => Box::new(Pad::new(
            plan,
            PadValue::Fixed(i16::try_from(zero_point).map_err(|_| out_of_range())?),
        )),
    })
}

/// A constant-padding copy, with every unpadded dimension merged into the one outside it
/// (so that padding only the spatial dimensions of NHWC copies whole rows of `W * C`
/// elements): per remaining dimension, outermost first, its input extent and the padding
/// before and after it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PadPlan {
    dims: Vec<PadDim>,
    in_len: usize,
    out_len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PadDim {
    extent: usize,
    before: usize,
    after: usize,
    /// Output elements per index of this dimension (the product of the inner output extents).
    out_stride: usize,
}

impl PadPlan {
    fn new(in_shape: &[usize], out_shape: &[usize], pads: &[(usize, usize)]) -> Self {
        let mut dims: Vec<PadDim> = Vec::new();
        for (&extent, &(before, after)) in in_shape.iter().zip(pads) {
            dims.push(PadDim {
                extent,
                before,
                after,
                out_stride: 0,
            });
        }
        // Merge an unpadded dimension into its outer neighbour: index (i, j) of the pair is
        // i * extent + j of the merged dimension, in the input and in the output alike.
        let mut k = dims.len();
        while k > 1 {
            k -= 1;
            let inner = dims[k];
            if inner.before == 0 && inner.after == 0 {
                let outer = &mut dims[k - 1];
                outer.extent *= inner.extent;
                outer.before *= inner.extent;
                outer.after *= inner.extent;
                dims.remove(k);
            }
        }
        let mut stride = 1;
        for d in dims.iter_mut().rev() {
            d.out_stride = stride;
            stride *= d.extent + d.before + d.after;
        }
        PadPlan {
            dims,
            in_len: in_shape.iter().product(),
            out_len: out_shape.iter().product(),
        }
    }
}

struct Pad<T> {
    plan: PadPlan,
    value: PadValue<T>,
    _t: PhantomData<T>,
}

impl<T: Pod> Pad<T> {
    fn new(plan: PadPlan, value: PadValue<T>) -> Self {
        Pad {
            plan,
            value,
            _t: PhantomData,
        }
    }
}

impl<T: Pod + Send> Kernel for Pad<T> {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (inputs, out) = io.single::<T>()?;
        let p = &self.plan;
        let input = input_of_len::<T>(&inputs, 0, p.in_len)?;
        check_output_len(out, p.out_len)?;
        let value = match self.value {
            PadValue::Fixed(v) => v,
            PadValue::Input => *inputs
                .get::<T>(2)?
                .first()
                .ok_or_else(|| RuntimeError::eval("the pad value is empty"))?,
        };
        if p.in_len == 0 || p.dims.is_empty() {
            out.fill(value);
        } else {
            pad_rec(input, out, &p.dims, value);
        }
        Ok(())
    }
}

/// Output rows up to this size are padded by filling the whole block first.
const SHORT_ROW_BYTES: usize = 64;

/// Writes the padded `input` into `out` (the output block of `dims[0]`): the padding before,
/// each input slab (recursively), the padding after, so every output element is written once.
/// The plan's sizes were checked against the buffers (`in_len`, `out_len`), so the slicing
/// below stays in bounds.
fn pad_rec<T: Copy>(input: &[T], out: &mut [T], dims: &[PadDim], value: T) {
    let Some((d, inner)) = dims.split_first() else {
        return;
    };
    let s = d.out_stride;
    let (head, rest) = out.split_at_mut(d.before * s);
    head.fill(value);
    let (body, tail) = rest.split_at_mut(d.extent * s);
    tail.fill(value);
    if inner.is_empty() {
        body.copy_from_slice(input);
        return;
    }
    // The innermost padded dimension (channels, mostly: residual blocks widen their input
    // with a channel PAD) without a call per row. Short rows: one fill of the block, then the
    // rows copied in (fewer, larger writes); long rows: each byte written once.
    if let [last] = inner
        && last.out_stride == 1
    {
        let row = last.extent;
        if s * size_of::<T>() <= SHORT_ROW_BYTES {
            body.fill(value);
            for (part, o) in input.chunks_exact(row.max(1)).zip(body.chunks_exact_mut(s)) {
                o[last.before..last.before + row].copy_from_slice(part);
            }
            return;
        }
        for (part, o) in input.chunks_exact(row.max(1)).zip(body.chunks_exact_mut(s)) {
            let (head, rest) = o.split_at_mut(last.before);
            let (middle, tail) = rest.split_at_mut(row);
            head.fill(value);
            middle.copy_from_slice(part);
            tail.fill(value);
        }
        return;
    }
    let slab = input.len() / d.extent.max(1);
    for (part, o) in input
        .chunks_exact(slab.max(1))
        .zip(body.chunks_exact_mut(s))
    {
        pad_rec(part, o, inner, value);
    }
}

/// MIRROR_PAD in REFLECT (the border element is not repeated) or SYMMETRIC mode.
pub fn mirror_pad(
    ctx: &OpContext<'_>,
    mode: MirrorPadMode,
) -> Result<Box<dyn Kernel>, RuntimeError> {
    let input = ctx.input(0)?;
    let output = ctx.output(0)?;
    if input.dtype != output.dtype {
        return Err(ctx.unsupported_types());
    }
    if matches!(input.dtype, DType::UInt8 | DType::Int8 | DType::Int16)
        && legacy_params(input) != legacy_params(output)
    {
        return Err(ctx.invalid("input and output quantization parameters differ"));
    }
    if input.dtype == DType::Int16 && legacy_params(input).1 != 0 {
        return Err(ctx.invalid("int16 MIRROR_PAD needs zero point 0"));
    }
    let pads = paddings(ctx, input.rank())?;
    let out_shape: Vec<usize> = input
        .shape
        .iter()
        .zip(&pads)
        .map(|(&d, &(before, after))| d + before + after)
        .collect();
    check_output_shape(ctx, output, &out_shape)?;
    let offset = match mode {
        MirrorPadMode::Reflect => 1,
        MirrorPadMode::Symmetric => 0,
    };
    let in_strides = strides_of(&input.shape);
    let mut maps = Vec::with_capacity(input.rank());
    for (d, (&size, &(before, after))) in input.shape.iter().zip(&pads).enumerate() {
        let map = (0..size + before + after)
            .map(|o| {
                mirror_index(o, before, size, offset)
                    .filter(|&i| i < size)
                    .map(|i| i * in_strides[d])
            })
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| {
                ctx.invalid(format!(
                    "paddings ({before}, {after}) are too large for dimension {d} of size {size}"
                ))
            })?;
        maps.push(map);
    }
    let bytes = element_bytes(ctx, input)?;
    let plan = MirrorPlan {
        maps,
        in_len: input.num_elements(),
        out_len: output.num_elements(),
    };
    with_element_type!(bytes, ctx, |T| Ok(Box::new(MirrorPad::<T> {
        plan,
        _t: PhantomData
    }) as Box<dyn Kernel>))
}

/// TFLite `GetInputDimension`: the input index that output index `o` of a mirror-padded
/// dimension reads (`offset` 1 for REFLECT, 0 for SYMMETRIC); `None` where TFLite would compute
/// a negative index.
fn mirror_index(o: usize, before: usize, size: usize, offset: usize) -> Option<usize> {
    let (o, before, size, offset) = (o as i64, before as i64, size as i64, offset as i64);
    let index = if o < before {
        let original = before + offset - 1;
        original - o.min(original - offset)
    } else if o - before >= size {
        let past = o - before - size;
        let original = size - (1 + offset);
        original - past.min(original)
    } else {
        o - before
    };
    usize::try_from(index).ok()
}

/// Per output dimension, the (stride-multiplied) input offset each output index reads.
struct MirrorPlan {
    maps: Vec<Vec<usize>>,
    in_len: usize,
    out_len: usize,
}

struct MirrorPad<T> {
    plan: MirrorPlan,
    _t: PhantomData<T>,
}

impl<T: Pod + Send> Kernel for MirrorPad<T> {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (inputs, out) = io.single::<T>()?;
        let input = input_of_len::<T>(&inputs, 0, self.plan.in_len)?;
        check_output_len(out, self.plan.out_len)?;
        if self.plan.out_len > 0 {
            mirror_rec(input, out, 0, &self.plan.maps);
        }
        Ok(())
    }
}

fn mirror_rec<T: Copy>(input: &[T], out: &mut [T], base: usize, maps: &[Vec<usize>]) {
    let Some((map, inner_maps)) = maps.split_first() else {
        if let Some(o) = out.first_mut() {
            *o = input[base];
        }
        return;
    };
    if inner_maps.is_empty() {
        for (o, &offset) in out.iter_mut().zip(map) {
            *o = input[base + offset];
        }
        return;
    }
    let chunk = out.len() / map.len();
    for (part, &offset) in out.chunks_exact_mut(chunk).zip(map) {
        mirror_rec(input, part, base + offset, inner_maps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{f32s, i32s, model, run, t};
    use octet_core::Op;

    #[test]
    fn quantized_pad_fills_with_the_output_zero_point() {
        // int8 [2] padded by (1, 2) with zero point -5: -5 x y -5 -5.
        let m = model(
            Op::Pad,
            vec![
                t(DType::Int8, &[2]).q(0.1, -5),
                t(DType::Int32, &[1, 2]).data(i32s(&[1, 2])),
            ],
            vec![t(DType::Int8, &[5]).q(0.1, -5)],
        );
        let out = run(&m, &[vec![7, 9]]).unwrap();
        assert_eq!(out[0], vec![(-5i8) as u8, 7, 9, (-5i8) as u8, (-5i8) as u8]);
    }

    #[test]
    fn padv2_fills_with_its_value_input() {
        // [1, 2] padded by ((1, 0), (0, 1)) with 9: 9 9 9 / 1 2 9.
        let m = model(
            Op::PadV2,
            vec![
                t(DType::Float32, &[1, 2]),
                t(DType::Int64, &[2, 2]).data(
                    [1i64, 0, 0, 1]
                        .iter()
                        .flat_map(|x| x.to_le_bytes())
                        .collect(),
                ),
                t(DType::Float32, &[]).data(f32s(&[9.0])),
            ],
            vec![t(DType::Float32, &[2, 3])],
        );
        let out = run(&m, &[f32s(&[1.0, 2.0])]).unwrap();
        assert_eq!(out[0], f32s(&[9.0, 9.0, 9.0, 1.0, 2.0, 9.0]));
    }

    #[test]
    fn mirror_pad_reflects_rows_and_columns() {
        // [[1 2 3] [4 5 6]] reflect-padded by ((1, 0), (0, 2)):
        // row 1 is mirrored above, columns 1 and 0 are mirrored to the right.
        let m = model(
            Op::MirrorPad {
                mode: MirrorPadMode::Reflect,
            },
            vec![
                t(DType::Int32, &[2, 3]),
                t(DType::Int32, &[2, 2]).data(i32s(&[1, 0, 0, 2])),
            ],
            vec![t(DType::Int32, &[3, 5])],
        );
        let out = run(&m, &[i32s(&[1, 2, 3, 4, 5, 6])]).unwrap();
        assert_eq!(out[0], i32s(&[4, 5, 6, 5, 4, 1, 2, 3, 2, 1, 4, 5, 6, 5, 4]));
    }

    #[test]
    fn reflecting_more_than_the_dimension_allows_is_refused() {
        let m = model(
            Op::MirrorPad {
                mode: MirrorPadMode::Reflect,
            },
            vec![
                t(DType::Int32, &[2]),
                t(DType::Int32, &[1, 2]).data(i32s(&[2, 0])),
            ],
            vec![t(DType::Int32, &[4])],
        );
        assert!(matches!(
            run(&m, &[i32s(&[1, 2])]),
            Err(RuntimeError::InvalidOp { .. })
        ));
    }

    #[test]
    fn mirror_indices_reflect_and_symmetric() {
        // Input [a b c] padded by 2 on both sides.
        // REFLECT: c b | a b c | b a
        let reflect: Vec<_> = (0..7).map(|o| mirror_index(o, 2, 3, 1).unwrap()).collect();
        assert_eq!(reflect, vec![2, 1, 0, 1, 2, 1, 0]);
        // SYMMETRIC: b a | a b c | c b
        let symmetric: Vec<_> = (0..7).map(|o| mirror_index(o, 2, 3, 0).unwrap()).collect();
        assert_eq!(symmetric, vec![1, 0, 0, 1, 2, 2, 1]);
    }

    #[test]
    fn channel_padding_matches_the_index_arithmetic() {
        // Short output rows (filled first) and long ones (each element written once), with
        // padding before and after the channels and around the image.
        for (channels, before, after) in [(3, 1, 2), (16, 0, 16), (40, 5, 35), (70, 0, 1)] {
            let (h, w) = (3, 5);
            let out_c = before + channels + after;
            let plan = PadPlan::new(
                &[1, h, w, channels],
                &[1, h + 1, w, out_c],
                &[(0, 0), (1, 0), (0, 0), (before, after)],
            );
            let input: Vec<u16> = (1..=(h * w * channels) as u16).collect();
            let mut out = vec![9u16; (h + 1) * w * out_c];
            pad_rec(&input, &mut out, &plan.dims, 0);
            for (i, &v) in out.iter().enumerate() {
                let (y, x, c) = (i / (w * out_c), i / out_c % w, i % out_c);
                let want = if y == 0 || c < before || c >= before + channels {
                    0
                } else {
                    input[((y - 1) * w + x) * channels + c - before]
                };
                assert_eq!(v, want, "{channels} channels, element {i}");
            }
        }
    }

    #[test]
    fn constant_padding_places_the_input_box() {
        // [2, 2] input padded by ((1, 0), (0, 1)) into [3, 3]:
        // 0 0 0 / 1 2 0 / 3 4 0
        let plan = PadPlan::new(&[2, 2], &[3, 3], &[(1, 0), (0, 1)]);
        let mut out = [9u8; 9];
        pad_rec(&[1, 2, 3, 4], &mut out, &plan.dims, 0);
        assert_eq!(out, [0, 0, 0, 1, 2, 0, 3, 4, 0]);
        // NHWC padded in H and W only: the channels merge into rows of W * C.
        let plan = PadPlan::new(
            &[1, 2, 2, 3],
            &[1, 4, 3, 3],
            &[(0, 0), (1, 1), (0, 1), (0, 0)],
        );
        assert_eq!(plan.dims.len(), 3);
        assert_eq!(plan.dims[2].extent, 6);
        let input: Vec<u8> = (1..=12).collect();
        let mut out = [9u8; 36];
        pad_rec(&input, &mut out, &plan.dims, 0);
        let mut want = [0u8; 36];
        want[9..15].copy_from_slice(&input[..6]);
        want[18..24].copy_from_slice(&input[6..]);
        assert_eq!(out, want);
    }
}
