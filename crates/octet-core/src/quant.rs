/// Quantization parameters of a tensor: `real = scale * (q - zero_point)`.
///
/// One `scale`/`zero_point` pair means per-tensor quantization; several mean per-axis
/// quantization along `quantized_dimension` (TFLite's per-channel weights). `min`/`max` are the
/// float range a converter recorded, kept for tools that read them back. `details` holds the
/// schema's other quantization schemes, which octet carries through but does not compute with.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QuantParams {
    /// Scales, one per tensor or one per slice along `quantized_dimension`.
    pub scale: Vec<f32>,
    /// Zero points, parallel to `scale`.
    pub zero_point: Vec<i64>,
    /// The axis that per-axis parameters run along.
    pub quantized_dimension: i32,
    /// Recorded float minimum(s).
    pub min: Vec<f32>,
    /// Recorded float maximum(s).
    pub max: Vec<f32>,
    /// Another quantization scheme, if the tensor uses one.
    pub details: Option<QuantDetails>,
}

/// The schema's alternative quantization schemes (`QuantizationDetails`).
#[derive(Debug, Clone, PartialEq)]
pub enum QuantDetails {
    /// Opaque parameters for an experimental scheme.
    Custom(Vec<u8>),
    /// Block-wise quantization with scale and zero-point tensors.
    Blockwise {
        /// Tensor index of the scales.
        scales: i32,
        /// Tensor index of the zero points (-1: all zero).
        zero_points: i32,
        /// Elements per block.
        block_size: i32,
    },
    /// Quantization along several dimensions at once.
    MultiAxis {
        /// Tensor index of the scales.
        scales: i32,
        /// Tensor index of the zero points (-1: all zero).
        zero_points: i32,
        /// Elements per block (0 for plain per-channel).
        block_size: i32,
        /// The quantized dimensions.
        quantized_dimensions: Vec<i32>,
    },
}

impl QuantParams {
    /// Per-tensor parameters.
    pub fn per_tensor(scale: f32, zero_point: i64) -> Self {
        QuantParams {
            scale: vec![scale],
            zero_point: vec![zero_point],
            ..QuantParams::default()
        }
    }

    /// Per-axis parameters along `axis`.
    pub fn per_axis(scales: Vec<f32>, zero_points: Vec<i64>, axis: i32) -> Self {
        QuantParams {
            scale: scales,
            zero_point: zero_points,
            quantized_dimension: axis,
            ..QuantParams::default()
        }
    }

    /// True when nothing at all is recorded (such parameters mean "not quantized").
    pub fn is_empty(&self) -> bool {
        self.scale.is_empty()
            && self.zero_point.is_empty()
            && self.min.is_empty()
            && self.max.is_empty()
            && self.details.is_none()
            && self.quantized_dimension == 0
    }

    /// True when the tensor has an affine mapping (at least one scale).
    pub fn is_affine(&self) -> bool {
        !self.scale.is_empty()
    }

    /// True for more than one scale (per-axis quantization).
    pub fn is_per_axis(&self) -> bool {
        self.scale.len() > 1
    }

    /// The single `(scale, zero_point)` of per-tensor parameters, `None` otherwise. A missing zero
    /// point reads as 0, as TFLite reads it.
    pub fn single(&self) -> Option<(f32, i64)> {
        match self.scale.as_slice() {
            [scale] => Some((*scale, self.zero_point.first().copied().unwrap_or(0))),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_tensor_and_per_axis_are_told_apart() {
        let t = QuantParams::per_tensor(0.5, -3);
        assert_eq!(t.single(), Some((0.5, -3)));
        assert!(!t.is_per_axis());
        let a = QuantParams::per_axis(vec![0.1, 0.2], vec![0, 0], 3);
        assert_eq!(a.single(), None);
        assert!(a.is_per_axis());
        assert!(QuantParams::default().is_empty());
        assert!(!t.is_empty());
    }
}
