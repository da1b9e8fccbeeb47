//! Reading and writing TensorFlow Lite flatbuffers (`.tflite`) into and from octet's graph IR.
//!
//! [`read_model`] verifies the flatbuffer, checks every index before use and converts the model
//! into an [`octet_core::Model`]; [`write_model`] turns a model back into a valid file (identifier
//! `TFL3`, buffer data 16-byte aligned). The round trip is lossless: ops octet does not model, custom
//! ops, signature defs and metadata travel through untouched. Old files are understood too: the
//! pre-3a opcode field, fp16 weights, sparse tensors and buffers stored after the flatbuffer.

// The generated bindings name `alloc::` paths; they resolve through the crate root.
extern crate alloc;

mod compare;
mod error;
mod ops;
mod read;
mod types;
mod write;

#[rustfmt::skip]
#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unsafe_code,
    unused_qualifications,
    unused_imports,
    dead_code,
    deprecated,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    mismatched_lifetime_syntaxes
)]
#[path = "generated/schema_generated.rs"]
mod schema_generated;

pub(crate) use schema_generated::tflite as fb;

pub use compare::table_differences;
pub use error::TfliteError;
pub use ops::builtin_op_name;
pub use read::{read_file, read_model};
pub use write::{write_file, write_model};
