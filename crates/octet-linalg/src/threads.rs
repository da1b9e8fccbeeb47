//! Threads for the kernels: a pool created once per interpreter, and work split over disjoint
//! chunks of an output.
//!
//! Operators here take microseconds, so what matters is the cost of handing out a job: the pool
//! ([`crate::pool`]) keeps its workers spinning between jobs for a moment, and splitting an
//! output allocates nothing.

use std::sync::Mutex;

use crate::LinalgError;
use crate::pool::{MAX_TASKS, Pool};

/// The most chunks one split makes (chunk lengths are raised to stay within it).
pub const MAX_CHUNKS: usize = MAX_TASKS;

/// How many threads the kernels may use, and the pool they run on.
pub struct Threads {
    pool: Option<Pool>,
}

impl std::fmt::Debug for Threads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Threads")
            .field("count", &self.count())
            .finish()
    }
}

impl Default for Threads {
    fn default() -> Self {
        Threads::single()
    }
}

impl Threads {
    /// One thread: everything runs on the caller's thread, no pool exists.
    pub fn single() -> Self {
        Threads { pool: None }
    }

    /// `count` threads: the caller's and `count - 1` workers (1 means [`Threads::single`]).
    pub fn new(count: usize) -> Result<Self, LinalgError> {
        if count <= 1 {
            return Ok(Threads::single());
        }
        let pool = Pool::new(count - 1).map_err(|e| {
            LinalgError::InvalidParameter(format!("cannot start {count} threads: {e}"))
        })?;
        Ok(Threads { pool: Some(pool) })
    }

    /// The number of threads the machine offers (at least 1).
    pub fn available() -> usize {
        std::thread::available_parallelism().map_or(1, usize::from)
    }

    /// Threads in use.
    pub fn count(&self) -> usize {
        self.pool.as_ref().map_or(1, Pool::threads)
    }

    /// Calls `f(index, chunk)` for each chunk of `chunk_len` elements of `data` (the last may be
    /// shorter), in parallel when there is more than one thread. At most [`MAX_CHUNKS`] chunks
    /// are made (longer chunks otherwise). The first error wins; a panic in `f` is re-raised.
    pub fn for_each_chunk<T: Send>(
        &self,
        data: &mut [T],
        chunk_len: usize,
        f: impl Fn(usize, &mut [T]) -> Result<(), LinalgError> + Sync,
    ) -> Result<(), LinalgError> {
        let chunk_len = chunk_len.max(1).max(data.len().div_ceil(MAX_CHUNKS));
        self.for_each_part(data.chunks_mut(chunk_len), f)
    }

    /// Calls `f(index, part)` for each of `parts` (disjoint pieces of the work, such as chunks of
    /// an output together with scratch of their own), in parallel when there is more than one
    /// thread: part `t` runs on thread `t` first. At most [`MAX_CHUNKS`] parts: more is an error
    /// (before anything runs). The first error wins; a panic in `f` is re-raised.
    pub fn for_each_part<P: Send>(
        &self,
        parts: impl ExactSizeIterator<Item = P>,
        f: impl Fn(usize, P) -> Result<(), LinalgError> + Sync,
    ) -> Result<(), LinalgError> {
        let count = parts.len();
        if count > MAX_CHUNKS {
            return Err(LinalgError::InvalidParameter(format!(
                "{count} parts, at most {MAX_CHUNKS}"
            )));
        }
        let pool = match &self.pool {
            Some(pool) if count > 1 => pool,
            _ => {
                return parts.enumerate().try_for_each(|(i, part)| f(i, part));
            }
        };
        let mut parts = parts;
        let slots: [Mutex<Option<P>>; MAX_CHUNKS] =
            std::array::from_fn(|_| Mutex::new(parts.next()));
        let error: Mutex<Option<LinalgError>> = Mutex::new(None);
        pool.run(count, &|i| {
            let part = slots
                .get(i)
                .and_then(|slot| slot.lock().ok().and_then(|mut s| s.take()));
            if let Some(part) = part
                && let Err(e) = f(i, part)
                && let Ok(mut first) = error.lock()
            {
                first.get_or_insert(e);
            }
        });
        match error.into_inner() {
            Ok(Some(e)) => Err(e),
            _ => Ok(()),
        }
    }

    /// How to cut `units` units of work (rows, blocks of columns) into chunks: one per thread,
    /// so that chunk `t` runs on thread `t` and consecutive operators split alike keep their data
    /// in the same core's cache, but never below `min_chunk` units per chunk. Always 1 chunk when
    /// single-threaded.
    pub fn chunk_units(&self, units: usize, min_chunk: usize) -> usize {
        let threads = self.count();
        if threads <= 1 {
            return units.max(1);
        }
        units.div_ceil(threads).max(min_chunk).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_everything_once() {
        for threads in [1, 2, 3] {
            let pool = Threads::new(threads).unwrap();
            assert_eq!(pool.count(), threads);
            for _ in 0..200 {
                let mut data = vec![0u32; 1000];
                pool.for_each_chunk(&mut data, 64, |i, chunk| {
                    for (j, v) in chunk.iter_mut().enumerate() {
                        *v += (i * 64 + j) as u32;
                    }
                    Ok(())
                })
                .unwrap();
                assert!(data.iter().enumerate().all(|(i, &v)| v == i as u32));
            }
            let mut data = vec![0u32; 1000];
            let err = pool.for_each_chunk(&mut data, 10, |i, _| {
                if i == 7 {
                    Err(LinalgError::mismatch("seven"))
                } else {
                    Ok(())
                }
            });
            assert!(err.is_err());
        }
    }

    #[test]
    fn jobs_survive_parked_and_withdrawn_workers() {
        for threads in [2, 4] {
            let pool = Threads::new(threads).unwrap();
            for round in 0..3000usize {
                if round % 1000 == 999 {
                    // Let the workers park.
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                let len = 1 + round % 97;
                let mut data = vec![0u32; len];
                pool.for_each_chunk(&mut data, 1 + round % 5, |_, chunk| {
                    chunk.iter_mut().for_each(|v| *v += 1);
                    Ok(())
                })
                .unwrap();
                assert!(data.iter().all(|&v| v == 1));
            }
        }
    }

    #[test]
    fn a_panicking_task_is_reraised_and_the_pool_survives() {
        let pool = Threads::new(2).unwrap();
        let mut data = vec![0u8; 100];
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.for_each_chunk(&mut data, 10, |i, _| {
                assert_ne!(i, 3, "task three fails");
                Ok(())
            })
        }));
        assert!(caught.is_err());
        let mut data = vec![1u8; 100];
        pool.for_each_chunk(&mut data, 10, |_, c| {
            c.iter_mut().for_each(|v| *v = 2);
            Ok(())
        })
        .unwrap();
        assert!(data.iter().all(|&v| v == 2));
    }
}
