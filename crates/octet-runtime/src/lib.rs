//! octet's interpreter: execution plan, arena memory planning, float and integer kernels
//! bit-exact with TensorFlow Lite's reference kernels, and a hook to observe every tensor.
//!
//! Not built yet: this crate holds its place in the workspace (see `docs/architecture.md`) and
//! exports nothing until the runtime lands. Nothing here pretends to run a model.
