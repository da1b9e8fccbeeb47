//! Broadcasting of element-wise binary ops (numpy rules, up to TFLite's 6 dimensions).
//!
//! # Rules
//!
//! Two shapes broadcast as in numpy (and TFLite's `CalculateShapeForBroadcast`): they are aligned
//! on their last dimension, the shorter one is padded with leading 1s, and in every dimension the
//! extents must be equal or one of them must be 1; the output takes the larger extent (an extent
//! 0 against 1 gives 0). A rank-0 tensor (a scalar) therefore broadcasts against anything.
//! Both inputs may be at most [`MAX_RANK`] dimensional, like TFLite's `*6DSlow` kernels.
//!
//! # Plan
//!
//! [`Broadcast::new`] does all the shape work once, when a kernel is built: it computes the
//! output shape and a compact loop nest over the output in row-major order. Dimensions of
//! extent 1 in the output are dropped, and neighbouring dimensions that broadcast the same way
//! (both inputs advance, only the first does, only the second does) are fused into one loop,
//! as TFLite's `BroadcastBinaryOpSimple` does. Each loop keeps one element stride per input,
//! 0 where that input is broadcast along it. For example `[1,5,7,3] + [3]` becomes the two loops
//! `35 x 3` with strides `(3, 1)` and `(0, 1)`, and `[1,5,7,3] + [1,1,7,1]` becomes `5 x 7 x 3`
//! with strides `(21, 3, 1)` and `(0, 1, 0)`.
//!
//! # Iteration
//!
//! [`Broadcast::zip_map`] walks that nest with a fixed-size odometer and applies a closure to
//! each pair of input elements, writing the output in order; [`Broadcast::for_each_offset`]
//! hands out the three element offsets instead, for kernels that need them. Neither allocates,
//! so both may be called from a kernel's `eval`. The innermost loop is always one of three
//! contiguous cases (both inputs advance, or one of them is a repeated scalar), which keeps the
//! hot loop simple enough for the compiler to vectorise.

use std::fmt;

/// The largest input rank a [`Broadcast`] accepts (TFLite's `kMaxBroadcastDim`).
pub const MAX_RANK: usize = 6;

/// Why two shapes cannot be broadcast, or why buffers do not fit a [`Broadcast`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BroadcastError {
    /// An input has more than [`MAX_RANK`] dimensions.
    TooManyDimensions {
        /// The offending rank.
        rank: usize,
    },
    /// In some dimension the extents differ and neither is 1.
    Incompatible {
        /// The first shape.
        lhs: Vec<usize>,
        /// The second shape.
        rhs: Vec<usize>,
    },
    /// The number of elements overflows `usize`.
    TooLarge,
    /// A buffer handed to [`Broadcast::zip_map`] does not have the planned number of elements.
    WrongLength {
        /// Which buffer: "first input", "second input" or "output".
        which: &'static str,
        /// Its length.
        len: usize,
        /// The length the plan expects.
        expected: usize,
    },
}

impl fmt::Display for BroadcastError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BroadcastError::TooManyDimensions { rank } => write!(
                f,
                "cannot broadcast a tensor of rank {rank} (at most {MAX_RANK} dimensions)"
            ),
            BroadcastError::Incompatible { lhs, rhs } => {
                write!(f, "shapes {lhs:?} and {rhs:?} cannot be broadcast together")
            }
            BroadcastError::TooLarge => write!(f, "broadcast shape has too many elements"),
            BroadcastError::WrongLength {
                which,
                len,
                expected,
            } => write!(
                f,
                "{which} has {len} elements, the broadcast expects {expected}"
            ),
        }
    }
}

impl std::error::Error for BroadcastError {}

/// A precomputed broadcast of two input shapes (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broadcast {
    /// The broadcast output shape, of rank `max(lhs rank, rhs rank)`.
    output_shape: Vec<usize>,
    lhs_len: usize,
    rhs_len: usize,
    output_len: usize,
    /// Number of loops in the fused nest; 0 when the output has at most one element.
    loops: usize,
    /// Extent of each loop, outermost first.
    extents: [usize; MAX_RANK],
    /// Element stride of the first input along each loop (0 where it is broadcast).
    lhs_strides: [usize; MAX_RANK],
    /// Element stride of the second input along each loop (0 where it is broadcast).
    rhs_strides: [usize; MAX_RANK],
}

/// How a (non-trivial) output dimension reads its inputs; neighbours of the same kind fuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Both inputs advance.
    Both,
    /// Only the second input advances (the first is broadcast).
    RhsOnly,
    /// Only the first input advances (the second is broadcast).
    LhsOnly,
}

fn checked_len(shape: &[usize]) -> Result<usize, BroadcastError> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or(BroadcastError::TooLarge)
}

impl Broadcast {
    /// Plans the broadcast of `lhs` against `rhs`.
    ///
    /// # Errors
    ///
    /// [`BroadcastError::TooManyDimensions`] for a rank above [`MAX_RANK`],
    /// [`BroadcastError::Incompatible`] when the shapes do not broadcast, and
    /// [`BroadcastError::TooLarge`] when an element count overflows.
    pub fn new(lhs: &[usize], rhs: &[usize]) -> Result<Self, BroadcastError> {
        for shape in [lhs, rhs] {
            if shape.len() > MAX_RANK {
                return Err(BroadcastError::TooManyDimensions { rank: shape.len() });
            }
        }
        let rank = lhs.len().max(rhs.len());
        // Both shapes padded with leading 1s to the common rank.
        let padded = |shape: &[usize]| -> [usize; MAX_RANK] {
            let mut out = [1; MAX_RANK];
            out[rank - shape.len()..rank].copy_from_slice(shape);
            out
        };
        let (a, b) = (padded(lhs), padded(rhs));
        let mut output_shape = Vec::with_capacity(rank);
        for d in 0..rank {
            let extent = if a[d] == b[d] || b[d] == 1 {
                a[d]
            } else if a[d] == 1 {
                b[d]
            } else {
                return Err(BroadcastError::Incompatible {
                    lhs: lhs.to_vec(),
                    rhs: rhs.to_vec(),
                });
            };
            output_shape.push(extent);
        }
        let lhs_len = checked_len(lhs)?;
        let rhs_len = checked_len(rhs)?;
        let output_len = checked_len(&output_shape)?;

        let mut plan = Broadcast {
            output_shape,
            lhs_len,
            rhs_len,
            output_len,
            loops: 0,
            extents: [0; MAX_RANK],
            lhs_strides: [0; MAX_RANK],
            rhs_strides: [0; MAX_RANK],
        };
        if output_len <= 1 {
            // Nothing to loop over: one element (or none) at offset 0 everywhere.
            return Ok(plan);
        }

        // Fuse the non-trivial output dimensions, outermost first.
        let mut kinds = [Kind::Both; MAX_RANK];
        for d in 0..rank {
            let extent = plan.output_shape[d];
            if extent == 1 {
                continue;
            }
            let kind = match (a[d] == 1, b[d] == 1) {
                (true, _) => Kind::RhsOnly,
                (_, true) => Kind::LhsOnly,
                _ => Kind::Both,
            };
            if plan.loops > 0 && kinds[plan.loops - 1] == kind {
                plan.extents[plan.loops - 1] *= extent;
            } else {
                kinds[plan.loops] = kind;
                plan.extents[plan.loops] = extent;
                plan.loops += 1;
            }
        }

        // Strides from the innermost loop outwards: an input that advances along a loop has
        // stride = product of its extents along the loops inside it (its broadcast loops have
        // extent 1 in that input).
        let (mut lhs_step, mut rhs_step) = (1usize, 1usize);
        for l in (0..plan.loops).rev() {
            let extent = plan.extents[l];
            if kinds[l] != Kind::RhsOnly {
                plan.lhs_strides[l] = lhs_step;
                lhs_step *= extent;
            }
            if kinds[l] != Kind::LhsOnly {
                plan.rhs_strides[l] = rhs_step;
                rhs_step *= extent;
            }
        }
        Ok(plan)
    }

    /// The broadcast output shape.
    pub fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    /// Number of output elements.
    pub fn output_len(&self) -> usize {
        self.output_len
    }

    /// Number of elements of the first input.
    pub fn lhs_len(&self) -> usize {
        self.lhs_len
    }

    /// Number of elements of the second input.
    pub fn rhs_len(&self) -> usize {
        self.rhs_len
    }

    /// True when no broadcasting happens: both inputs have as many elements as the output and
    /// are read in the same order (equal shapes up to leading 1s, TFLite's "non-broadcast" case).
    pub fn is_elementwise(&self) -> bool {
        self.lhs_len == self.output_len && self.rhs_len == self.output_len
    }

    fn check_lengths(&self, lhs: usize, rhs: usize, output: usize) -> Result<(), BroadcastError> {
        for (which, len, expected) in [
            ("first input", lhs, self.lhs_len),
            ("second input", rhs, self.rhs_len),
            ("output", output, self.output_len),
        ] {
            if len != expected {
                return Err(BroadcastError::WrongLength {
                    which,
                    len,
                    expected,
                });
            }
        }
        Ok(())
    }

    /// Writes `out[i] = op(lhs[j], rhs[k])` for every output element `i` in row-major order,
    /// `j` and `k` being the input elements that broadcast to it. Allocation free.
    ///
    /// # Errors
    ///
    /// [`BroadcastError::WrongLength`] when a buffer does not have the planned length.
    pub fn zip_map<A: Copy, B: Copy, O>(
        &self,
        lhs: &[A],
        rhs: &[B],
        out: &mut [O],
        mut op: impl FnMut(A, B) -> O,
    ) -> Result<(), BroadcastError> {
        self.check_lengths(lhs.len(), rhs.len(), out.len())?;
        if self.is_elementwise() {
            for ((o, &a), &b) in out.iter_mut().zip(lhs).zip(rhs) {
                *o = op(a, b);
            }
            return Ok(());
        }
        self.for_each_run(|run| {
            let out = &mut out[run.output..run.output + run.len];
            match (run.lhs_stride, run.rhs_stride) {
                (0, _) => {
                    let a = lhs[run.lhs];
                    for (o, &b) in out.iter_mut().zip(&rhs[run.rhs..run.rhs + run.len]) {
                        *o = op(a, b);
                    }
                }
                (_, 0) => {
                    let b = rhs[run.rhs];
                    for (o, &a) in out.iter_mut().zip(&lhs[run.lhs..run.lhs + run.len]) {
                        *o = op(a, b);
                    }
                }
                _ => {
                    let lhs = &lhs[run.lhs..run.lhs + run.len];
                    let rhs = &rhs[run.rhs..run.rhs + run.len];
                    for ((o, &a), &b) in out.iter_mut().zip(lhs).zip(rhs) {
                        *o = op(a, b);
                    }
                }
            }
        });
        Ok(())
    }

    /// Calls `f(output_offset, lhs_offset, rhs_offset)` for every output element in row-major
    /// order, with the element offsets of the two inputs that broadcast to it. Allocation free.
    pub fn for_each_offset(&self, mut f: impl FnMut(usize, usize, usize)) {
        self.for_each_run(|run| {
            for i in 0..run.len {
                f(
                    run.output + i,
                    run.lhs + i * run.lhs_stride,
                    run.rhs + i * run.rhs_stride,
                );
            }
        });
    }

    /// Visits the innermost loop's runs in output order.
    fn for_each_run(&self, mut f: impl FnMut(Run)) {
        if self.output_len == 0 {
            return;
        }
        if self.loops == 0 {
            f(Run {
                output: 0,
                lhs: 0,
                rhs: 0,
                len: 1,
                lhs_stride: 0,
                rhs_stride: 0,
            });
            return;
        }
        let inner = self.loops - 1;
        let len = self.extents[inner];
        let mut index = [0usize; MAX_RANK];
        let (mut output, mut lhs, mut rhs) = (0usize, 0usize, 0usize);
        loop {
            f(Run {
                output,
                lhs,
                rhs,
                len,
                lhs_stride: self.lhs_strides[inner],
                rhs_stride: self.rhs_strides[inner],
            });
            output += len;
            // Advance the odometer over the outer loops.
            let mut l = inner;
            loop {
                if l == 0 {
                    return;
                }
                l -= 1;
                index[l] += 1;
                lhs += self.lhs_strides[l];
                rhs += self.rhs_strides[l];
                if index[l] < self.extents[l] {
                    break;
                }
                index[l] = 0;
                lhs -= self.lhs_strides[l] * self.extents[l];
                rhs -= self.rhs_strides[l] * self.extents[l];
            }
        }
    }
}

/// One run of the innermost loop: `len` consecutive output elements starting at `output`,
/// reading the inputs from `lhs`/`rhs` with strides 0 or 1.
#[derive(Debug, Clone, Copy)]
struct Run {
    output: usize,
    lhs: usize,
    rhs: usize,
    len: usize,
    lhs_stride: usize,
    rhs_stride: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The obvious definition: unravel each output index and clamp broadcast coordinates to 0.
    fn naive(lhs: &[usize], rhs: &[usize]) -> Vec<(usize, usize)> {
        let rank = lhs.len().max(rhs.len());
        let pad = |s: &[usize]| {
            let mut v = vec![1; rank - s.len()];
            v.extend_from_slice(s);
            v
        };
        let (a, b) = (pad(lhs), pad(rhs));
        let out: Vec<usize> = a.iter().zip(&b).map(|(&x, &y)| x.max(y)).collect();
        let total: usize = out.iter().product();
        (0..total)
            .map(|mut i| {
                let (mut ja, mut jb, mut sa, mut sb) = (0, 0, 1, 1);
                for d in (0..rank).rev() {
                    let c = i % out[d];
                    i /= out[d];
                    ja += if a[d] == 1 { 0 } else { c * sa };
                    jb += if b[d] == 1 { 0 } else { c * sb };
                    sa *= a[d];
                    sb *= b[d];
                }
                (ja, jb)
            })
            .collect()
    }

    fn offsets(plan: &Broadcast) -> Vec<(usize, usize)> {
        let mut seen = Vec::new();
        plan.for_each_offset(|o, a, b| {
            assert_eq!(o, seen.len(), "output offsets are visited in order");
            seen.push((a, b));
        });
        seen
    }

    #[test]
    fn output_shapes_follow_numpy() {
        let shape = |a: &[usize], b: &[usize]| Broadcast::new(a, b).unwrap().output_shape;
        assert_eq!(shape(&[1, 5, 7, 3], &[3]), vec![1, 5, 7, 3]);
        assert_eq!(shape(&[1, 5, 7, 3], &[1, 1, 7, 1]), vec![1, 5, 7, 3]);
        assert_eq!(shape(&[2, 1, 4], &[3, 1]), vec![2, 3, 4]);
        assert_eq!(shape(&[], &[2, 3]), vec![2, 3]);
        assert_eq!(shape(&[], &[]), Vec::<usize>::new());
        assert_eq!(shape(&[0, 3], &[1, 3]), vec![0, 3]);
        assert!(matches!(
            Broadcast::new(&[2, 3], &[3, 2]),
            Err(BroadcastError::Incompatible { .. })
        ));
        assert!(matches!(
            Broadcast::new(&[0], &[2]),
            Err(BroadcastError::Incompatible { .. })
        ));
        assert!(matches!(
            Broadcast::new(&[1; 7], &[1]),
            Err(BroadcastError::TooManyDimensions { rank: 7 })
        ));
    }

    #[test]
    fn loops_are_fused() {
        // [1,5,7,3] + [3]: 35 rows of 3, the second input repeats.
        let plan = Broadcast::new(&[1, 5, 7, 3], &[3]).unwrap();
        assert_eq!(plan.loops, 2);
        assert_eq!(&plan.extents[..2], &[35, 3]);
        assert_eq!(&plan.lhs_strides[..2], &[3, 1]);
        assert_eq!(&plan.rhs_strides[..2], &[0, 1]);
        // [1,5,7,3] + [1,1,7,1]: the second input advances only along the 7.
        let plan = Broadcast::new(&[1, 5, 7, 3], &[1, 1, 7, 1]).unwrap();
        assert_eq!(plan.loops, 3);
        assert_eq!(&plan.extents[..3], &[5, 7, 3]);
        assert_eq!(&plan.lhs_strides[..3], &[21, 3, 1]);
        assert_eq!(&plan.rhs_strides[..3], &[0, 1, 0]);
        // Equal shapes are one flat loop.
        let plan = Broadcast::new(&[2, 3, 4], &[1, 2, 3, 4]).unwrap();
        assert!(plan.is_elementwise());
        assert_eq!(plan.loops, 1);
    }

    #[test]
    fn offsets_match_the_naive_definition() {
        let cases: &[(&[usize], &[usize])] = &[
            (&[1, 5, 7, 3], &[3]),
            (&[3], &[1, 5, 7, 3]),
            (&[1, 5, 7, 3], &[1, 1, 7, 1]),
            (&[2, 1, 4], &[3, 1]),
            (&[3, 1], &[2, 1, 4]),
            (&[2, 3, 4], &[2, 3, 4]),
            (&[], &[2, 3]),
            (&[2, 3], &[]),
            (&[1], &[1, 1]),
            (&[2, 1, 3, 1, 2, 1], &[1, 4, 1, 5, 1, 3]),
            (&[4, 1, 1, 3], &[1, 2, 5, 1]),
            (&[5, 1, 1], &[1, 1, 6]),
        ];
        for &(a, b) in cases {
            let plan = Broadcast::new(a, b).unwrap();
            assert_eq!(offsets(&plan), naive(a, b), "{a:?} + {b:?}");
        }
    }

    #[test]
    fn zip_map_broadcasts_values() {
        // [2,1,3] + [2,1]: out[i][j][k] = lhs[i][0][k] + rhs[j][0].
        let plan = Broadcast::new(&[2, 1, 3], &[2, 1]).unwrap();
        let lhs = [1, 2, 3, 4, 5, 6];
        let rhs = [10, 20];
        let mut out = [0; 12];
        plan.zip_map(&lhs, &rhs, &mut out, |a, b| a + b).unwrap();
        assert_eq!(out, [11, 12, 13, 21, 22, 23, 14, 15, 16, 24, 25, 26]);
        // Scalar first operand, to check the operand order is kept.
        let plan = Broadcast::new(&[], &[3]).unwrap();
        let mut out = [0; 3];
        plan.zip_map(&[10], &[1, 2, 3], &mut out, |a, b| a - b)
            .unwrap();
        assert_eq!(out, [9, 8, 7]);
        // Scalar by scalar.
        let plan = Broadcast::new(&[], &[1]).unwrap();
        let mut out = [0; 1];
        plan.zip_map(&[6], &[7], &mut out, |a, b| a * b).unwrap();
        assert_eq!(out, [42]);
    }

    #[test]
    fn zip_map_checks_lengths_and_handles_empty_outputs() {
        let plan = Broadcast::new(&[2, 3], &[3]).unwrap();
        let mut out = [0; 6];
        assert_eq!(
            plan.zip_map(&[0; 5], &[0; 3], &mut out, |a: i32, b: i32| a + b),
            Err(BroadcastError::WrongLength {
                which: "first input",
                len: 5,
                expected: 6
            })
        );
        let plan = Broadcast::new(&[0, 3], &[3]).unwrap();
        let mut out: [i32; 0] = [];
        plan.zip_map(&[], &[1, 2, 3], &mut out, |a: i32, b: i32| a + b)
            .unwrap();
    }
}
