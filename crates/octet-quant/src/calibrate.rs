//! Calibration: running the float model over sample inputs and recording the range of every
//! float32 tensor it computes.

use std::collections::HashMap;

use octet_core::{DType, Model, TensorId};
use octet_runtime::{Interpreter, Observation};

use crate::{Calibration, QuantError};

/// Observed `[min, max]` of the float32 tensors of a model's main subgraph, by tensor id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TensorRanges {
    ranges: HashMap<TensorId, (f32, f32)>,
}

impl TensorRanges {
    /// The observed range of `tensor`, if it was observed with at least one finite value.
    pub fn get(&self, tensor: TensorId) -> Option<(f32, f32)> {
        self.ranges.get(&tensor).copied()
    }

    /// Records `[min, max]` for `tensor`, widening a range already recorded.
    pub fn insert(&mut self, tensor: TensorId, min: f32, max: f32) {
        self.ranges
            .entry(tensor)
            .and_modify(|r| {
                r.0 = r.0.min(min);
                r.1 = r.1.max(max);
            })
            .or_insert((min, max));
    }

    /// Number of tensors with a range.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// True when no tensor has a range.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    fn observe(&mut self, obs: Observation<'_>) {
        if obs.info.dtype != DType::Float32 {
            return;
        }
        let mut lo = f32::INFINITY;
        let mut hi = f32::NEG_INFINITY;
        for chunk in obs.bytes.chunks_exact(4) {
            let v = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            if v.is_finite() {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
        if lo <= hi {
            self.insert(obs.tensor, lo, hi);
        }
    }
}

/// Runs the float `model` (in octet-runtime) over every sample of `calibration` and returns the
/// range of every float32 tensor seen: graph inputs and operator outputs.
pub fn calibrate(
    model: &Model,
    calibration: &Calibration,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<TensorRanges, QuantError> {
    let mut interpreter = Interpreter::new(model)
        .map_err(|e| QuantError::Unsupported(format!("calibration: cannot run the model: {e}")))?;
    let mut ranges = TensorRanges::default();
    for (s, sample) in calibration.samples.iter().enumerate() {
        if sample.len() != interpreter.num_inputs() {
            return Err(QuantError::Unsupported(format!(
                "calibration sample {s} has {} arrays, the model has {} inputs",
                sample.len(),
                interpreter.num_inputs()
            )));
        }
        for (i, values) in sample.iter().enumerate() {
            let info = interpreter.input_info(i).map_err(|e| {
                QuantError::Unsupported(format!("calibration sample {s}, input {i}: {e}"))
            })?;
            let bytes = encode_input(values, info.dtype).ok_or_else(|| {
                QuantError::Unsupported(format!(
                    "calibration: input {i} ('{}') is {}, which octet cannot feed",
                    info.name, info.dtype
                ))
            })?;
            interpreter.set_input(i, &bytes).map_err(|e| {
                QuantError::Unsupported(format!("calibration sample {s}, input {i}: {e}"))
            })?;
        }
        interpreter
            .invoke_observed(&mut |obs| ranges.observe(obs))
            .map_err(|e| QuantError::Unsupported(format!("calibration sample {s}: {e}")))?;
        progress(s + 1, calibration.samples.len());
    }
    Ok(ranges)
}

/// Calibration values as bytes of the input's dtype (integer inputs such as indices are cast).
fn encode_input(values: &[f32], dtype: DType) -> Option<Vec<u8>> {
    Some(match dtype {
        DType::Float32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::Int32 => values
            .iter()
            .flat_map(|&v| (v as i32).to_le_bytes())
            .collect(),
        DType::Int64 => values
            .iter()
            .flat_map(|&v| (v as i64).to_le_bytes())
            .collect(),
        DType::Int8 => values.iter().map(|&v| v as i8 as u8).collect(),
        DType::UInt8 => values.iter().map(|&v| v as u8).collect(),
        DType::Bool => values.iter().map(|&v| u8::from(v != 0.0)).collect(),
        _ => return None,
    })
}
