//! What the micro-kernels plug into: operand layouts, packing, tile descriptions and the
//! drivers that walk an operation tile by tile. Architecture-independent and free of `unsafe`.

pub mod depthwise;
pub mod elementwise;
pub mod gemm;
pub mod gemm_f32;
pub mod gemm_q;
pub mod pool;
pub mod requant;
pub mod window;
