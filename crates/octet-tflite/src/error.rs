use std::path::PathBuf;

use octet_core::CoreError;
use thiserror::Error;

/// Everything that can go wrong reading or writing a `.tflite` file.
#[derive(Debug, Error)]
pub enum TfliteError {
    /// The file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("cannot read", "cannot write").
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The bytes are not a TFLite flatbuffer at all.
    #[error("not a TFLite model: {0}")]
    NotTflite(String),
    /// The flatbuffer's structure is damaged (failed verification).
    #[error("damaged TFLite model: {0}")]
    Damaged(String),
    /// The flatbuffer is well formed but its contents are inconsistent (bad index, bad size, ...).
    #[error("invalid TFLite model: {0}")]
    Invalid(String),
    /// The model uses something octet cannot represent yet.
    #[error("unsupported TFLite model: {0}")]
    Unsupported(String),
    /// The IR failed its own consistency check.
    #[error("invalid model: {0}")]
    Core(#[from] CoreError),
}
