//! Sliding windows over NHWC images, and the indirection buffers that let one GEMM or depthwise
//! micro-kernel serve every convolution and pooling shape without copying the input.

use crate::LinalgError;

/// Marks a tap that falls into the padding: the kernel reads its zero row instead of the input.
pub const PAD: u32 = u32::MAX;

/// The geometry of a 2-D sliding window over NHWC data (convolution, depthwise convolution,
/// pooling): sizes, strides, dilations and the padding before the first row and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Window2d {
    /// Images in the batch.
    pub batches: usize,
    /// Input height.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Output height.
    pub out_h: usize,
    /// Output width.
    pub out_w: usize,
    /// Filter (window) height.
    pub filter_h: usize,
    /// Filter (window) width.
    pub filter_w: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Vertical dilation.
    pub dilation_h: usize,
    /// Horizontal dilation.
    pub dilation_w: usize,
    /// Padding rows above the image.
    pub pad_top: usize,
    /// Padding columns left of the image.
    pub pad_left: usize,
}

impl Window2d {
    /// Taps per window (`filter_h * filter_w`).
    pub fn taps(&self) -> usize {
        self.filter_h * self.filter_w
    }

    /// Output pixels over the whole batch.
    pub fn output_pixels(&self) -> usize {
        self.batches * self.out_h * self.out_w
    }

    /// Input pixels over the whole batch.
    pub fn input_pixels(&self) -> usize {
        self.batches * self.in_h * self.in_w
    }

    /// True when every output pixel reads exactly the input pixel at the same position: a 1x1
    /// window with unit strides and no padding, where the input itself is the GEMM's A matrix.
    pub fn is_pointwise(&self) -> bool {
        self.filter_h == 1
            && self.filter_w == 1
            && self.stride_h == 1
            && self.stride_w == 1
            && self.pad_top == 0
            && self.pad_left == 0
            && self.out_h == self.in_h
            && self.out_w == self.in_w
    }

    /// The input coordinate of filter tap `f` for output coordinate `o`, `None` in the padding.
    fn tap(
        o: usize,
        stride: usize,
        pad: usize,
        f: usize,
        dilation: usize,
        size: usize,
    ) -> Option<usize> {
        (o * stride + f * dilation)
            .checked_sub(pad)
            .filter(|&i| i < size)
    }
}

/// For every output pixel of a window, the element offset of each tap's input pixel (or
/// [`PAD`]): `offsets[pixel * taps + tap]`, pixels in NHWC order, taps row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indirection {
    taps: usize,
    offsets: Vec<u32>,
}

impl Indirection {
    /// The indirection of `window` over an input whose pixels lie `pixel_stride` elements
    /// apart. Every offset plus `pixel_stride` fits in `u32` (checked).
    pub fn new(window: &Window2d, pixel_stride: usize) -> Result<Self, LinalgError> {
        let w = window;
        let input_elements = w
            .input_pixels()
            .checked_mul(pixel_stride)
            .filter(|&n| n < PAD as usize)
            .ok_or_else(|| {
                LinalgError::too_large("the input has too many elements for u32 offsets")
            })?;
        let _ = input_elements;
        let len = w
            .output_pixels()
            .checked_mul(w.taps())
            .ok_or_else(|| LinalgError::too_large("indirection buffer size"))?;
        // Each pixel's offsets are computed with checked arithmetic of usize values that were
        // just bounded above, so the casts below cannot truncate.
        let mut offsets = Vec::with_capacity(len);
        for b in 0..w.batches {
            for oy in 0..w.out_h {
                for ox in 0..w.out_w {
                    for fy in 0..w.filter_h {
                        let iy = Window2d::tap(oy, w.stride_h, w.pad_top, fy, w.dilation_h, w.in_h);
                        for fx in 0..w.filter_w {
                            let ix =
                                Window2d::tap(ox, w.stride_w, w.pad_left, fx, w.dilation_w, w.in_w);
                            offsets.push(match (iy, ix) {
                                (Some(iy), Some(ix)) => {
                                    (((b * w.in_h + iy) * w.in_w + ix) * pixel_stride) as u32
                                }
                                _ => PAD,
                            });
                        }
                    }
                }
            }
        }
        Ok(Indirection {
            taps: w.taps(),
            offsets,
        })
    }

    /// Taps per output pixel.
    pub fn taps(&self) -> usize {
        self.taps
    }

    /// Output pixels covered.
    pub fn pixels(&self) -> usize {
        self.offsets.len().checked_div(self.taps).unwrap_or(0)
    }

    /// The offsets of output pixels `pixels` (`taps` per pixel).
    pub fn rows(&self, pixels: std::ops::Range<usize>) -> Option<&[u32]> {
        self.offsets
            .get(pixels.start.checked_mul(self.taps)?..pixels.end.checked_mul(self.taps)?)
    }

    /// All offsets.
    pub fn offsets(&self) -> &[u32] {
        &self.offsets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_3x3_stride_2() {
        // 4x4 input, 3x3 filter, stride 2, SAME: 2x2 output, padding 0 above/left (total 1).
        let w = Window2d {
            batches: 1,
            in_h: 4,
            in_w: 4,
            out_h: 2,
            out_w: 2,
            filter_h: 3,
            filter_w: 3,
            stride_h: 2,
            stride_w: 2,
            dilation_h: 1,
            dilation_w: 1,
            pad_top: 0,
            pad_left: 0,
        };
        let ind = Indirection::new(&w, 2).unwrap();
        assert_eq!(ind.pixels(), 4);
        // Output (1, 1) reads input rows 2..5 and columns 2..5: row 4 and column 4 are padding.
        let last = ind.rows(3..4).unwrap();
        assert_eq!(last, &[20, 22, PAD, 28, 30, PAD, PAD, PAD, PAD]);
        // Output (0, 0) reads rows 0..3, columns 0..3.
        assert_eq!(ind.rows(0..1).unwrap(), &[0, 2, 4, 8, 10, 12, 16, 18, 20]);
    }

    #[test]
    fn pointwise() {
        let w = Window2d {
            batches: 2,
            in_h: 3,
            in_w: 3,
            out_h: 3,
            out_w: 3,
            filter_h: 1,
            filter_w: 1,
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            ..Window2d::default()
        };
        assert!(w.is_pointwise());
        let ind = Indirection::new(&w, 5).unwrap();
        assert_eq!(ind.offsets().len(), 18);
        assert_eq!(ind.offsets()[17], 85);
    }

    #[test]
    fn refuses_offsets_beyond_u32() {
        let w = Window2d {
            batches: 1,
            in_h: 1 << 16,
            in_w: 1 << 16,
            out_h: 1,
            out_w: 1,
            filter_h: 1,
            filter_w: 1,
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            ..Window2d::default()
        };
        assert!(Indirection::new(&w, 1).is_err());
    }
}
