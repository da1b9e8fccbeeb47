//! Errors of the compute layer.

use thiserror::Error;

/// Why a kernel could not be prepared or run.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LinalgError {
    /// Sizes whose products or offsets do not fit the kernel's index types.
    #[error("sizes too large: {0}")]
    TooLarge(String),
    /// Operands whose lengths do not match the prepared shapes.
    #[error("operand size mismatch: {0}")]
    Mismatch(String),
    /// Parameters the kernels cannot use (a negative multiplier, an empty range, ...).
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
}

impl LinalgError {
    pub(crate) fn mismatch(what: impl Into<String>) -> Self {
        LinalgError::Mismatch(what.into())
    }

    pub(crate) fn too_large(what: impl Into<String>) -> Self {
        LinalgError::TooLarge(what.into())
    }
}
