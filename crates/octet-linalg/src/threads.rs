//! Threads for the kernels: a pool created once per interpreter, and work split over disjoint
//! chunks of an output.
//!
//! The pool is rayon's (its work stealing keeps both cores busy when chunks take unequal time,
//! and its `join` allocates nothing). [`Threads::install`] runs a whole inference on the pool,
//! so each operator's split costs a work-stealing handshake, not a thread wake-up from outside.

use rayon::prelude::*;

use crate::LinalgError;

/// How many threads the kernels may use, and the pool they run on.
#[derive(Debug)]
pub struct Threads {
    pool: Option<rayon::ThreadPool>,
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

    /// `count` threads (1 means [`Threads::single`]).
    pub fn new(count: usize) -> Result<Self, LinalgError> {
        if count <= 1 {
            return Ok(Threads::single());
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(count)
            .thread_name(|i| format!("octet-worker-{i}"))
            .build()
            .map_err(|e| {
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
        self.pool
            .as_ref()
            .map_or(1, rayon::ThreadPool::current_num_threads)
    }

    /// Runs `f` on the pool (on the caller's thread when single), so that the splits inside it
    /// are cheap.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }

    /// Calls `f(index, chunk)` for each chunk of `chunk_len` elements of `data` (the last may be
    /// shorter), in parallel when there is more than one thread; the first error wins.
    pub fn for_each_chunk<T: Send>(
        &self,
        data: &mut [T],
        chunk_len: usize,
        f: impl Fn(usize, &mut [T]) -> Result<(), LinalgError> + Sync + Send,
    ) -> Result<(), LinalgError> {
        let chunk_len = chunk_len.max(1);
        if self.pool.is_none() || data.len() <= chunk_len {
            return data
                .chunks_mut(chunk_len)
                .enumerate()
                .try_for_each(|(i, chunk)| f(i, chunk));
        }
        self.install(|| {
            data.par_chunks_mut(chunk_len)
                .enumerate()
                .try_for_each(|(i, chunk)| f(i, chunk))
        })
    }

    /// How to cut `units` units of work (rows, blocks of columns) into chunks: about four per
    /// thread, so that work stealing can even out uneven chunks, but never below `min_chunk`
    /// units per chunk. Always 1 chunk when single-threaded.
    pub fn chunk_units(&self, units: usize, min_chunk: usize) -> usize {
        let threads = self.count();
        if threads <= 1 {
            return units.max(1);
        }
        units.div_ceil(threads * 4).max(min_chunk).max(1)
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
            let mut data = vec![0u32; 1000];
            pool.for_each_chunk(&mut data, 64, |i, chunk| {
                for (j, v) in chunk.iter_mut().enumerate() {
                    *v += (i * 64 + j) as u32;
                }
                Ok(())
            })
            .unwrap();
            assert!(data.iter().enumerate().all(|(i, &v)| v == i as u32));
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
}
