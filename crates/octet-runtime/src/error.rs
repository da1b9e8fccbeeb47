use octet_core::CoreError;
use thiserror::Error;

/// Errors from preparing or running a model.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// The model uses an op, or a dtype flavour of an op, that octet cannot run yet.
    #[error("operator {index} ({op}): {detail}")]
    Unsupported {
        /// Operator index in the subgraph.
        index: usize,
        /// TFLite op name.
        op: String,
        /// What exactly is unsupported.
        detail: String,
    },
    /// The model is inconsistent in a way that stops an op from running (wrong shapes, missing
    /// quantization parameters, ...).
    #[error("operator {index} ({op}): invalid model: {detail}")]
    InvalidOp {
        /// Operator index in the subgraph.
        index: usize,
        /// TFLite op name.
        op: String,
        /// What is wrong.
        detail: String,
    },
    /// A failure that depends on the data, found while running (e.g. a gather index out of range).
    #[error("operator {index} ({op}) failed: {detail}")]
    Eval {
        /// Operator index in the subgraph.
        index: usize,
        /// TFLite op name.
        op: String,
        /// What went wrong.
        detail: String,
    },
    /// The caller's input does not fit the model.
    #[error("{0}")]
    BadInput(String),
    /// The model as a whole cannot be run (no subgraph, control flow, ...).
    #[error("cannot run this model: {0}")]
    Model(String),
    /// An error from core types (bad constant data, indefinite shapes).
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl RuntimeError {
    /// An evaluation failure with no operator context yet; the interpreter fills it in.
    pub fn eval(detail: impl Into<String>) -> Self {
        RuntimeError::Eval {
            index: usize::MAX,
            op: String::new(),
            detail: detail.into(),
        }
    }
}
