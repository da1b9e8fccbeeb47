//! octet's interpreter: runs a [`Model`](octet_core::Model) with float and integer kernels that
//! reproduce TensorFlow Lite's reference kernels.
//!
//! [`Interpreter::new`] prepares a model once: it checks shapes, chooses a kernel for every
//! operator (an op or dtype flavour it cannot run is an error naming it, here rather than at run
//! time), pre-processes weights, and plans one arena for all intermediate tensors from their
//! lifetimes so that memory is reused. [`Interpreter::invoke`] then runs the plan without
//! allocating. [`Interpreter::invoke_observed`] additionally shows every tensor's value to a
//! callback as soon as it is computed, which is how the quantizer calibrates.
//!
//! Kernels live in [`kernels`], one file per op family. Integer kernels keep the `int32`
//! accumulator computation apart from requantization, and all requantization goes through
//! [`octet_core::fixed_point`].

mod error;
mod fusion;
mod interpreter;
mod io;
pub mod kernels;
mod op_context;
mod plan;
mod profile;
mod shape_inference;
mod tensor;

pub use error::RuntimeError;
pub use fusion::{FusedOutput, SpatialPadding};
pub use interpreter::{Interpreter, InterpreterOptions, Observation, OperatorInfo};
pub use io::{Inputs, OpIo, OpParts};
pub use octet_linalg::Isa;
pub use op_context::{Kernel, OpContext};
pub use plan::{ArenaPlan, TensorLifetime, plan_arena};
pub use tensor::TensorInfo;
