use thiserror::Error;

/// Errors from building, checking or decoding core IR values.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CoreError {
    /// An index in the graph points past the end of the table it indexes.
    #[error("{what} index {index} is out of range (there are {len})")]
    IndexOutOfRange {
        /// What kind of index this is and where it was found, e.g. "tensor (subgraph 0, operator 3 input)".
        what: String,
        /// The offending index.
        index: i64,
        /// The length of the indexed table.
        len: usize,
    },
    /// A buffer's byte length does not fit the dtype and shape it is read as.
    #[error(
        "buffer of {actual} bytes does not hold {elements} element(s) of {dtype} ({expected} bytes expected)"
    )]
    BufferSizeMismatch {
        /// The dtype being decoded.
        dtype: &'static str,
        /// Number of elements the shape asks for.
        elements: usize,
        /// Bytes that many elements need.
        expected: usize,
        /// Bytes present.
        actual: usize,
    },
    /// A dtype that has no typed in-memory representation in octet (strings, resources, ...).
    #[error("tensor data of dtype {0} cannot be decoded")]
    UndecodableDType(&'static str),
    /// A shape with a negative (unknown) dimension or an element count that overflows.
    #[error("shape {0} has no definite element count")]
    IndefiniteShape(String),
    /// Anything else that makes a model structurally invalid.
    #[error("invalid model: {0}")]
    Invalid(String),
}
