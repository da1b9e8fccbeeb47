//! Work counts for profiles: the multiply-accumulates one run of an operator performs.

use octet_core::Op;

use crate::OpContext;

/// Multiply-accumulates of one run of the operator (0 for ops that do not multiply weights):
/// convolutions count every tap inside or outside the padding, as profilers usually do.
pub(crate) fn macs(ctx: &OpContext<'_>) -> u64 {
    let elements = |t: Option<&crate::TensorInfo>| t.map_or(0, |t| t.num_elements() as u64);
    let dim = |input: usize, axis: usize| {
        ctx.input(input)
            .ok()
            .and_then(|t| t.shape.get(axis).copied())
            .unwrap_or(0) as u64
    };
    let output = elements(ctx.output(0).ok());
    match &ctx.operator().op {
        // Filter [out, h, w, in].
        Op::Conv2D(_) => output * dim(1, 1) * dim(1, 2) * dim(1, 3),
        // Filter [1, h, w, out].
        Op::DepthwiseConv2D(_) => output * dim(1, 1) * dim(1, 2),
        // Weights [units, depth].
        Op::FullyConnected(_) => output * dim(1, 1),
        // Filter [out, h, w, in] scattered from every input element.
        Op::TransposeConv(_) => elements(ctx.input(2).ok()) * dim(1, 0) * dim(1, 1) * dim(1, 2),
        Op::BatchMatMul(o) => {
            let lhs = ctx.input(0).ok();
            let rank = lhs.map_or(0, |t| t.rank());
            let axis = if o.adj_x {
                rank.saturating_sub(2)
            } else {
                rank.saturating_sub(1)
            };
            output * dim(0, axis)
        }
        _ => 0,
    }
}
