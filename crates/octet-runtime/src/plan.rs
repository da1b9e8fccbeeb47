//! Arena planning: place every intermediate tensor at an offset in one buffer so that tensors
//! whose lifetimes do not overlap share memory.

/// A tensor that needs arena space: its size and the steps during which it is live (the step
/// that produces it through the last step that reads it, both inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorLifetime {
    /// Bytes needed.
    pub size: usize,
    /// First step at which it is live.
    pub first: usize,
    /// Last step at which it is live.
    pub last: usize,
}

/// Where each tensor goes and how big the arena must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArenaPlan {
    /// Byte offset per tensor, parallel to the input of [`plan_arena`].
    pub offsets: Vec<usize>,
    /// Total arena size in bytes.
    pub size: usize,
}

/// Alignment of every tensor in the arena: enough for any element type and for SIMD loads.
pub const ARENA_ALIGNMENT: usize = 64;

fn align_up(x: usize) -> usize {
    x.div_ceil(ARENA_ALIGNMENT) * ARENA_ALIGNMENT
}

/// Greedy-by-size placement (the strategy of TFLite's arena planner): largest tensors first, each
/// at the lowest aligned offset that does not collide with an already placed tensor whose
/// lifetime overlaps.
pub fn plan_arena(tensors: &[TensorLifetime]) -> ArenaPlan {
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&a, &b| tensors[b].size.cmp(&tensors[a].size).then(a.cmp(&b)));
    let mut offsets = vec![0usize; tensors.len()];
    let mut placed: Vec<usize> = Vec::with_capacity(tensors.len());
    let mut size = 0;
    for &t in &order {
        let me = tensors[t];
        // Occupied ranges of live-overlapping tensors, sorted by offset.
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&p| tensors[p].first <= me.last && me.first <= tensors[p].last)
            .map(|&p| (offsets[p], offsets[p] + tensors[p].size))
            .collect();
        busy.sort_unstable();
        let mut candidate = 0;
        for (start, end) in busy {
            if candidate + me.size <= start {
                break;
            }
            candidate = candidate.max(align_up(end));
        }
        offsets[t] = candidate;
        size = size.max(candidate + me.size);
        placed.push(t);
    }
    ArenaPlan {
        offsets,
        size: align_up(size),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifetime(size: usize, first: usize, last: usize) -> TensorLifetime {
        TensorLifetime { size, first, last }
    }

    fn overlaps(a: (usize, usize), b: (usize, usize)) -> bool {
        a.0 < b.1 && b.0 < a.1
    }

    #[test]
    fn a_chain_reuses_memory() {
        // x -> op0 -> a -> op1 -> b -> op2 -> c: a and c can share.
        let tensors = [
            lifetime(100, 0, 0),
            lifetime(100, 0, 1),
            lifetime(100, 1, 2),
            lifetime(100, 2, 2),
        ];
        let plan = plan_arena(&tensors);
        assert_eq!(plan.size, 2 * 128);
    }

    #[test]
    fn live_tensors_never_overlap() {
        let mut rng = 0x1234_5678_u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..200 {
            let tensors: Vec<_> = (0..30)
                .map(|_| {
                    let first = (next() % 20) as usize;
                    lifetime(
                        (next() % 5000) as usize + 1,
                        first,
                        first + (next() % 6) as usize,
                    )
                })
                .collect();
            let plan = plan_arena(&tensors);
            for (i, a) in tensors.iter().enumerate() {
                assert_eq!(plan.offsets[i] % ARENA_ALIGNMENT, 0);
                assert!(plan.offsets[i] + a.size <= plan.size);
                for (j, b) in tensors.iter().enumerate().skip(i + 1) {
                    if a.first <= b.last && b.first <= a.last {
                        assert!(!overlaps(
                            (plan.offsets[i], plan.offsets[i] + a.size),
                            (plan.offsets[j], plan.offsets[j] + b.size)
                        ));
                    }
                }
            }
        }
    }
}
