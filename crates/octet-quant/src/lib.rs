//! octet's quantizer: calibration observers, range to scale/zero point with TensorFlow's nudging,
//! weight quantizers, graph passes and accuracy metrics.
//!
//! Not built yet: this crate holds its place in the workspace (see `docs/architecture.md`) and
//! exports nothing until the quantizer lands. Nothing here pretends to quantize a model.
