//! Output shapes that TFLite computes when it prepares a model, for models that leave them out.
//!
//! Converters store an output without a shape (no rank, no dimensions) when it depended on an
//! input dimension that was dynamic at conversion time. octet runs static shapes, so it derives
//! such shapes from the operator's inputs in execution order, as TFLite's Prepare does.

use octet_core::Op;

use crate::OpContext;

/// The output shape of an operator whose output tensor was stored without a shape, for the ops
/// where converters do that (reshapes and the element-wise ops after them); `None` for other ops
/// or when it cannot be known.
pub(crate) fn inferred_output_shape(ctx: &OpContext<'_>) -> Option<Vec<usize>> {
    let input = ctx.input(0).ok()?;
    let rank = input.rank() as i64;
    let axis = |a: i64, rank: i64| usize::try_from(if a < 0 { a + rank } else { a }).ok();
    match &ctx.operator().op {
        Op::Squeeze { squeeze_dims } => {
            let squeezed: Vec<usize> = squeeze_dims
                .iter()
                .map(|&d| axis(i64::from(d), rank))
                .collect::<Option<_>>()?;
            Some(
                input
                    .shape
                    .iter()
                    .enumerate()
                    .filter(|&(i, &d)| d != 1 || !(squeezed.is_empty() || squeezed.contains(&i)))
                    .map(|(_, &d)| d)
                    .collect(),
            )
        }
        Op::ExpandDims => {
            let at = axis(*ctx.constant_ints(1).ok()?.first()?, rank + 1)?;
            let mut shape = input.shape.clone();
            (at <= shape.len()).then(|| shape.insert(at, 1))?;
            Some(shape)
        }
        Op::Reshape { new_shape } => {
            let target: Vec<i64> = match ctx.constant_ints(1) {
                Ok(v) => v,
                Err(_) => new_shape.as_ref()?.iter().map(|&d| i64::from(d)).collect(),
            };
            let known: i64 = target.iter().filter(|&&d| d >= 0).product();
            let total = i64::try_from(input.num_elements()).ok()?;
            target
                .iter()
                .map(|&d| {
                    let d = if d == -1 {
                        total.checked_div(known)?
                    } else {
                        d
                    };
                    usize::try_from(d).ok()
                })
                .collect()
        }
        Op::Quantize
        | Op::Dequantize
        | Op::Cast(_)
        | Op::Logistic
        | Op::Tanh
        | Op::Relu
        | Op::Relu6
        | Op::ReluN1To1
        | Op::LeakyRelu { .. }
        | Op::HardSwish
        | Op::Elu
        | Op::Softmax { .. }
        | Op::LogSoftmax
        | Op::L2Normalization { .. } => Some(input.shape.clone()),
        _ => None,
    }
}
