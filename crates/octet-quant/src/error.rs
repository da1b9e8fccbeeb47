use octet_core::DType;
use thiserror::Error;

/// Errors from quantization.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum QuantError {
    /// A float range that cannot be quantized.
    #[error("invalid range [{min}, {max}]: it must be finite with min <= max")]
    BadRange {
        /// Lower end.
        min: f32,
        /// Upper end.
        max: f32,
    },
    /// Legacy input statistics that cannot be quantized.
    #[error(
        "invalid input statistics mean {mean}, std_dev {std_dev}: std_dev must be positive and both finite"
    )]
    BadStats {
        /// The mean (zero point).
        mean: f32,
        /// The standard deviation (1 / scale).
        std_dev: f32,
    },
    /// A scale that is not a positive finite number.
    #[error("invalid scale {0}: it must be positive and finite")]
    BadScale(f32),
    /// A zero point outside the integer type.
    #[error("zero point {zero_point} is outside the range of {dtype}")]
    BadZeroPoint {
        /// The zero point.
        zero_point: i32,
        /// The integer type.
        dtype: DType,
    },
    /// A mode that quantizes activations got neither calibration data nor default ranges.
    #[error(
        "--mode {0} quantizes activations and needs their ranges: give calibration data with \
         --calib (a .npy/.npz file, a directory, or random) or a range for all of them with \
         --default-ranges-min/--default-ranges-max"
    )]
    NeedsRanges(&'static str),
    /// Something octet cannot quantize (yet).
    #[error("{0}")]
    Unsupported(String),
}

impl From<crate::parallel::WorkerPanicked> for QuantError {
    fn from(e: crate::parallel::WorkerPanicked) -> Self {
        QuantError::Unsupported(e.to_string())
    }
}
