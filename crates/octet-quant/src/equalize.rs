//! Activation equalization across pairs of layers (after Nagel et al., "Data-Free Quantization
//! Through Weight Equalization and Bias Correction", 2019, with activation ranges from the
//! calibration data in place of weight ranges).
//!
//! An int8 activation has one scale for all its channels, so a channel whose values are 100x
//! smaller than its neighbours' keeps only a couple of integer steps. Where a convolution `A`
//! (RELU or no activation) feeds only a convolution `B`, channel `i` of the tensor between them
//! can be divided by `s_i > 0` (A's filter `i` and bias `i` divided, B's weights reading channel
//! `i` multiplied) without changing what the float model computes, since RELU commutes with a
//! positive scale. Into a DEPTHWISE_CONV_2D, whose weights are quantized per channel anyway,
//! every channel is brought to the largest channel's range (at most 100x up); into a CONV_2D,
//! whose weights share one scale per output channel across the input channels, the scale
//! balances both: `s_i = sqrt(range_i / weight_range_i)`, so that the activation's and B's
//! per-channel ranges end up alike.

use std::collections::HashMap;

use octet_core::{ActivationFunction, DType, Model, Op, TensorId};

use crate::QuantError;
use crate::passes;

/// One pair: `A` (operator index) produces `tensor`, read only by `B` (operator index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    /// The producing convolution.
    pub a: usize,
    /// The tensor between them.
    pub tensor: TensorId,
    /// The consuming convolution.
    pub b: usize,
}

/// The largest amplification of a channel.
const MAX_GAIN: f32 = 100.0;

fn weights_and_bias(op: &octet_core::Operator) -> Option<(TensorId, TensorId)> {
    Some((op.inputs.get(1).copied()??, op.inputs.get(2).copied()??))
}

fn depth_multiplier_one(op: &Op) -> bool {
    match op {
        Op::DepthwiseConv2D(o) => o.depth_multiplier <= 1,
        _ => true,
    }
}

/// The pairs of the main subgraph that can be equalized.
pub fn pairs(model: &Model) -> Vec<Pair> {
    let Some(sg) = model.subgraphs.first() else {
        return Vec::new();
    };
    let mut consumers: HashMap<TensorId, Vec<usize>> = HashMap::new();
    let mut uses: HashMap<TensorId, usize> = HashMap::new();
    for (o, op) in sg.operators.iter().enumerate() {
        for id in op.present_inputs() {
            consumers.entry(id).or_default().push(o);
            *uses.entry(id).or_default() += 1;
        }
    }
    let constant_float = |id: TensorId| {
        sg.tensor(id).is_some_and(|t| {
            t.dtype == DType::Float32 && passes::is_constant(model, t) && uses.get(&id) == Some(&1)
        })
    };
    let mut pairs = Vec::new();
    for (a, op) in sg.operators.iter().enumerate() {
        let activation = match &op.op {
            Op::Conv2D(o) => o.activation,
            Op::DepthwiseConv2D(o) => o.activation,
            _ => continue,
        };
        if !matches!(
            activation,
            ActivationFunction::None | ActivationFunction::Relu
        ) || !depth_multiplier_one(&op.op)
        {
            continue;
        }
        let Some((w, bias)) = weights_and_bias(op) else {
            continue;
        };
        let [t] = op.outputs.as_slice() else { continue };
        let Some([b]) = consumers.get(t).map(Vec::as_slice) else {
            continue;
        };
        let Some(next) = sg.operators.get(*b) else {
            continue;
        };
        if !matches!(next.op, Op::Conv2D(_) | Op::DepthwiseConv2D(_))
            || !depth_multiplier_one(&next.op)
            || next.inputs.first().copied().flatten() != Some(*t)
            || sg.outputs.contains(t)
            || passes::in_main_signature(model, *t)
            || sg.tensor(*t).is_none_or(|x| x.dtype != DType::Float32)
        {
            continue;
        }
        let Some(bw) = next.inputs.get(1).copied().flatten() else {
            continue;
        };
        if constant_float(w) && constant_float(bias) && constant_float(bw) {
            pairs.push(Pair {
                a,
                tensor: *t,
                b: *b,
            });
        }
    }
    pairs
}

/// Scales for a pair into a CONV_2D with weights `bw` ([O, KH, KW, I]): `s_i = (r_i /
/// w_i)^alpha` (r: the activation channel's range, w: the range of the weights reading it),
/// for the `alpha` in 0, 1/4, ..., 1 whose estimated quantization noise at B's output is
/// smallest. The estimate adds, per output channel, the activation's rounding noise (one step
/// for the whole tensor) through B's weights and the weights' rounding noise (one step per
/// output channel) on the activation's power. `None` when `alpha` = 0 (no change) wins.
fn conv_scales(bw: &[f32], channel_ranges: &[(f32, f32)], floor: f32) -> Option<Vec<f32>> {
    let channels = channel_ranges.len();
    let per_output = bw.len().checked_div(channels)?;
    if per_output == 0 || !bw.len().is_multiple_of(channels) {
        return None;
    }
    let mut weight_range = vec![0.0f32; channels];
    for (k, &w) in bw.iter().enumerate() {
        if let Some(r) = weight_range.get_mut(k % channels) {
            *r = r.max(w.abs());
        }
    }
    let outputs = bw.len() / per_output;
    let noise = |scales: &[f32]| -> f64 {
        let lo = channel_ranges
            .iter()
            .zip(scales)
            .map(|(r, s)| r.0 / s)
            .fold(0.0f32, f32::min);
        let hi = channel_ranges
            .iter()
            .zip(scales)
            .map(|(r, s)| r.1 / s)
            .fold(0.0f32, f32::max);
        let step_a = f64::from(hi - lo) / 255.0;
        let mut total = 0.0;
        for o in 0..outputs {
            let row = &bw[o * per_output..(o + 1) * per_output];
            let (mut weight_power, mut max_w, mut act_power) = (0.0f64, 0.0f32, 0.0f64);
            for (k, &w) in row.iter().enumerate() {
                let i = k % channels;
                let w = w * scales[i];
                weight_power += f64::from(w) * f64::from(w);
                max_w = max_w.max(w.abs());
                let (l, h) = channel_ranges[i];
                let r = f64::from(l.abs().max(h.abs()) / scales[i]);
                act_power += r * r / 3.0;
            }
            let step_w = f64::from(max_w) / 127.0;
            total += (step_a * step_a * weight_power + step_w * step_w * act_power) / 12.0;
        }
        total
    };
    let ones = vec![1.0f32; channels];
    let mut best = (noise(&ones), 0.0f32, ones);
    for alpha in [0.25f32, 0.5, 0.75, 1.0] {
        let raw: Vec<f32> = channel_ranges
            .iter()
            .zip(&weight_range)
            .map(|(&(l, h), &w)| {
                let r = l.abs().max(h.abs()).max(floor);
                if w > 0.0 { (r / w).powf(alpha) } else { 1.0 }
            })
            .collect();
        let top = raw.iter().copied().fold(0.0f32, f32::max);
        if !(top.is_finite() && top > 0.0) {
            continue;
        }
        let scales: Vec<f32> = raw.iter().map(|&s| (s / top).max(1.0 / MAX_GAIN)).collect();
        let n = noise(&scales);
        if n < best.0 {
            best = (n, alpha, scales);
        }
    }
    (best.1 > 0.0).then_some(best.2)
}

/// Equalizes `pair` given the per-channel `(min, max)` of its tensor. Returns the channel
/// scales `s_i` (the tensor's channel `i` is now divided by `s_i`), or `None` where the shapes
/// do not fit (nothing changed then).
pub fn equalize(
    model: &mut Model,
    pair: Pair,
    channel_ranges: &[(f32, f32)],
) -> Result<Option<Vec<f32>>, QuantError> {
    let Some(sg) = model.subgraphs.first() else {
        return Ok(None);
    };
    let (Some(a), Some(b)) = (sg.operators.get(pair.a), sg.operators.get(pair.b)) else {
        return Ok(None);
    };
    let (a_op, b_op) = (a.op.clone(), b.op.clone());
    let Some((aw_id, ab_id)) = weights_and_bias(a) else {
        return Ok(None);
    };
    let Some(bw_id) = b.inputs.get(1).copied().flatten() else {
        return Ok(None);
    };
    let (Some(mut aw), Some(mut ab), Some(mut bw)) = (
        passes::float_constant_values(model, aw_id)?,
        passes::float_constant_values(model, ab_id)?,
        passes::float_constant_values(model, bw_id)?,
    ) else {
        return Ok(None);
    };
    let channels = channel_ranges.len();
    if channels == 0 || ab.len() != channels || !bw.len().is_multiple_of(channels) {
        return Ok(None);
    }
    if !aw.len().is_multiple_of(channels) {
        return Ok(None);
    }
    let range: Vec<f32> = channel_ranges
        .iter()
        .map(|&(lo, hi)| lo.abs().max(hi.abs()))
        .collect();
    let largest = range.iter().copied().fold(0.0f32, f32::max);
    if !(largest.is_finite() && largest > 0.0) {
        return Ok(None);
    }
    let floor = largest / MAX_GAIN;
    let scales: Vec<f32> = match b_op {
        Op::DepthwiseConv2D(_) => range.iter().map(|&r| r.max(floor) / largest).collect(),
        Op::Conv2D(_) => match conv_scales(&bw, channel_ranges, floor) {
            Some(scales) => scales,
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    // A: filter i (axis 0 for CONV_2D, the last axis for DEPTHWISE_CONV_2D) and bias i.
    match a_op {
        Op::Conv2D(_) => {
            let per_filter = aw.len() / channels;
            for (k, w) in aw.iter_mut().enumerate() {
                *w /= scales[(k / per_filter).min(channels - 1)];
            }
        }
        Op::DepthwiseConv2D(_) => {
            for (k, w) in aw.iter_mut().enumerate() {
                *w /= scales[k % channels];
            }
        }
        _ => return Ok(None),
    }
    for (b, s) in ab.iter_mut().zip(&scales) {
        *b /= s;
    }
    // B: every weight reading channel i (the last axis for both kinds).
    for (k, w) in bw.iter_mut().enumerate() {
        *w *= scales[k % channels];
    }
    passes::store_floats(model, aw_id, &aw)?;
    passes::store_floats(model, ab_id, &ab)?;
    passes::store_floats(model, bw_id, &bw)?;
    Ok(Some(scales))
}
