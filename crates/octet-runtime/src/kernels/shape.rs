//! SHAPE: the input's static shape as an int32 or int64 vector.

use octet_core::DType;

use crate::{Kernel, OpContext, OpIo, RuntimeError};

/// SHAPE. Shapes are static in octet, so the result is computed once at build time.
pub fn shape(ctx: &OpContext<'_>, out_type: DType) -> Result<Box<dyn Kernel>, RuntimeError> {
    let input = ctx.input(0)?;
    let output = ctx.output(0)?;
    if output.dtype != out_type || output.num_elements() != input.rank() {
        return Err(ctx.invalid(format!(
            "output must be {out_type}[{}], is {}{:?}",
            input.rank(),
            output.dtype,
            output.shape
        )));
    }
    let bytes = match out_type {
        DType::Int32 => input
            .shape
            .iter()
            .map(|&d| i32::try_from(d).map(i32::to_le_bytes).map(|b| b.to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| ctx.invalid("dimension exceeds int32"))?
            .concat(),
        DType::Int64 => input
            .shape
            .iter()
            .flat_map(|&d| (d as i64).to_le_bytes())
            .collect(),
        _ => return Err(ctx.unsupported_types()),
    };
    Ok(Box::new(ConstantOutput(bytes)))
}

/// Writes bytes fixed at build time.
struct ConstantOutput(Vec<u8>);

impl Kernel for ConstantOutput {
    fn eval(&mut self, io: &mut OpIo<'_>) -> Result<(), RuntimeError> {
        let (_, out) = io.split(0)?;
        out.copy_from_slice(&self.0);
        Ok(())
    }
}
