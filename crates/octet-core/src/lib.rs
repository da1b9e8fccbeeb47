//! Core types of octet: the format-independent model IR and the numerics every other crate shares.
//!
//! - [`DType`], [`Shape`] and [`TensorData`]: what a tensor holds.
//! - [`QuantParams`]: the affine mapping `real = scale * (q - zero_point)`, per tensor or per axis.
//! - [`Model`], [`Subgraph`], [`Tensor`], [`Operator`] and [`Op`]: the graph IR. Ops octet knows carry
//!   typed options; everything else travels through untouched so that reading and writing a model
//!   is lossless.
//! - [`fixed_point`]: the one place that defines integer requantization arithmetic, bit-exact with
//!   TensorFlow Lite's reference kernels.

pub mod builder;
mod dtype;
mod error;
pub mod fixed_point;
pub mod fs;
mod graph;
mod ops;
mod quant;
mod shape;
mod tensor_data;

pub use dtype::DType;
pub use error::CoreError;
pub use graph::{
    Buffer, BufferId, DimensionMetadata, ExternalBuffer, ExternalBufferGroup, Metadata, Model,
    Operator, SignatureDef, SignatureTensor, SparseIndices, Sparsity, Subgraph, Tensor, TensorId,
    VariantSubType,
};
pub use ops::{
    ActivationFunction, AddOptions, ArgMaxOptions, BatchMatMulOptions, CastOptions,
    ConcatenationOptions, Conv2DOptions, CustomOp, DepthwiseConv2DOptions, FullyConnectedOptions,
    GatherOptions, MirrorPadMode, Op, OpaqueOptions, OtherOp, PackOptions, Padding, Pool2DOptions,
    ResizeOptions, StridedSliceOptions, TransposeConvOptions, UnpackOptions, WeightsFormat,
};
pub use quant::{QuantDetails, QuantParams};
pub use shape::Shape;
pub use tensor_data::TensorData;
