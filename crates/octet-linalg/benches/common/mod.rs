//! What the benchmarks share: deterministic pseudo-random operands and convolution windows.

#![allow(dead_code)] // each benchmark uses a part

use octet_linalg::frame::window::Window2d;

/// An endless xorshift32 sequence from `seed` (0 is made 1).
pub fn xorshift(seed: u32) -> impl Iterator<Item = u32> {
    let mut state = seed | 1;
    std::iter::repeat_with(move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    })
}

/// `len` floats in [-1, 1), in steps of 0.001.
pub fn values(len: usize, seed: u32) -> Vec<f32> {
    xorshift(seed)
        .take(len)
        .map(|s| (s % 2000) as f32 / 1000.0 - 1.0)
        .collect()
}

/// `len` bytes spread over the whole int8 range.
pub fn bytes(len: usize, seed: u32) -> Vec<i8> {
    xorshift(seed).take(len).map(|s| (s >> 8) as i8).collect()
}

/// The window of a `size` x `size` filter moving by `stride` over an `h` x `w` image: SAME
/// padding (TensorFlow's: the extra row or column at the bottom and right), or VALID.
pub fn window(h: usize, w: usize, size: usize, stride: usize, same: bool) -> Window2d {
    let out = |n: usize| {
        if same {
            n.div_ceil(stride)
        } else {
            (n - size) / stride + 1
        }
    };
    let pad = |n: usize| {
        if same {
            ((out(n) - 1) * stride + size).saturating_sub(n) / 2
        } else {
            0
        }
    };
    Window2d {
        batches: 1,
        in_h: h,
        in_w: w,
        out_h: out(h),
        out_w: out(w),
        filter_h: size,
        filter_w: size,
        stride_h: stride,
        stride_w: stride,
        dilation_h: 1,
        dilation_w: 1,
        pad_top: pad(h),
        pad_left: pad(w),
    }
}
