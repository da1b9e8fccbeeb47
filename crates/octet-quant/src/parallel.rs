//! Samples spread over threads, results taken in sample order.
//!
//! Calibration and accuracy measurement run a model on many independent samples. On a few cores
//! it is cheaper to give each thread its own single-threaded interpreter and whole samples than
//! to split every operator over threads (no hand-over per operator, no idle spinning), but
//! what the samples give must still be combined in sample order, so that sums come out the same
//! whatever the number of threads. [`in_order`] does both with a bounded number of samples in
//! flight.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;

/// A worker thread panicked while it made its state or ran a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a worker thread panicked")]
pub struct WorkerPanicked;

/// Samples handed to each worker ahead of the one it is running, so that it never waits for
/// the caller between samples.
const AHEAD: usize = 2;

/// Runs `job(state, s)` for every sample `s` in `0..count` and gives each result to
/// `take(s, result)` in increasing `s`; returns the workers' states.
///
/// With `threads > 1` (and more than one sample), `threads` scoped threads each make their own
/// state with `make` (on that thread, so that preparing interpreters runs in parallel too) and
/// take samples as they become free; at most `AHEAD` samples per thread are given out
/// and not yet taken, so at most that many results wait to be taken. Otherwise everything runs
/// on the caller's thread with one state. The first error (from `make`, `job` or `take`) stops
/// the run and is returned; a panic in a worker becomes [`WorkerPanicked`].
pub fn in_order<W, R, E>(
    threads: usize,
    count: usize,
    make: impl Fn() -> Result<W, E> + Sync,
    job: impl Fn(&mut W, usize) -> Result<R, E> + Sync,
    mut take: impl FnMut(usize, R) -> Result<(), E>,
) -> Result<Vec<W>, E>
where
    W: Send,
    R: Send,
    E: Send + From<WorkerPanicked>,
{
    let threads = threads.clamp(1, count.max(1));
    if threads == 1 {
        let mut state = make()?;
        for s in 0..count {
            let result = job(&mut state, s)?;
            take(s, result)?;
        }
        return Ok(vec![state]);
    }
    /// What a worker reports: its index and, per sample, the sample and its result (`None`
    /// for a failure to make the worker's state).
    type Report<R, E> = (usize, Option<usize>, Result<R, E>);
    let (report, reports) = mpsc::channel::<Report<R, E>>();
    std::thread::scope(|scope| {
        let (make, job) = (&make, &job);
        let mut senders = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        for w in 0..threads {
            let (sender, samples) = mpsc::channel::<usize>();
            senders.push(Some(sender));
            let report = report.clone();
            handles.push(scope.spawn(move || -> Option<W> {
                let made = catch_unwind(AssertUnwindSafe(make))
                    .unwrap_or_else(|_| Err(E::from(WorkerPanicked)));
                let mut state = match made {
                    Ok(state) => state,
                    Err(e) => {
                        let _ = report.send((w, None, Err(e)));
                        return None;
                    }
                };
                for s in samples {
                    let result = catch_unwind(AssertUnwindSafe(|| job(&mut state, s)))
                        .unwrap_or_else(|_| Err(E::from(WorkerPanicked)));
                    if report.send((w, Some(s), result)).is_err() {
                        break;
                    }
                }
                Some(state)
            }));
        }
        drop(report);

        let mut next = 0;
        let mut outstanding = 0;
        for sender in senders.iter().flatten() {
            for _ in 0..AHEAD {
                if next < count && sender.send(next).is_ok() {
                    next += 1;
                    outstanding += 1;
                }
            }
        }
        let mut waiting: BTreeMap<usize, R> = BTreeMap::new();
        let mut taken = 0;
        let mut failure: Option<E> = None;
        while outstanding > 0 {
            // Every worker holds a sender until it returns, and a worker with samples
            // outstanding reports each of them (a panic included), so this only ends early if
            // all workers are gone.
            let Ok((w, sample, result)) = reports.recv() else {
                break;
            };
            let Some(s) = sample else {
                // The worker could not start: its samples were never run.
                if let Some(slot) = senders.get_mut(w) {
                    *slot = None;
                }
                failure.get_or_insert(match result {
                    Err(e) => e,
                    Ok(_) => E::from(WorkerPanicked),
                });
                break;
            };
            outstanding -= 1;
            match result {
                Ok(r) if failure.is_none() => {
                    waiting.insert(s, r);
                }
                Ok(_) => {}
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
            while failure.is_none()
                && let Some(r) = waiting.remove(&taken)
            {
                if let Err(e) = take(taken, r) {
                    failure = Some(e);
                }
                taken += 1;
            }
            if failure.is_none()
                && next < count
                && let Some(Some(sender)) = senders.get(w)
                && sender.send(next).is_ok()
            {
                next += 1;
                outstanding += 1;
            }
        }
        // Closing the sample channels ends the workers.
        senders.clear();
        let mut states = Vec::with_capacity(threads);
        for handle in handles {
            match handle.join() {
                Ok(Some(state)) => states.push(state),
                Ok(None) => {}
                Err(_) => {
                    failure.get_or_insert(E::from(WorkerPanicked));
                }
            }
        }
        // A worker that failed before it was given a sample is only heard of here.
        if failure.is_none() {
            failure = reports.try_iter().find_map(|(_, _, result)| result.err());
        }
        match failure {
            Some(e) => Err(e),
            None if taken == count => Ok(states),
            None => Err(E::from(WorkerPanicked)),
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)] // test code
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum TestError {
        Failed(usize),
        Panicked,
    }

    impl From<WorkerPanicked> for TestError {
        fn from(_: WorkerPanicked) -> Self {
            TestError::Panicked
        }
    }

    #[test]
    fn results_arrive_in_sample_order_whatever_the_threads() {
        for threads in [1, 2, 3, 8] {
            let mut seen = Vec::new();
            let states = in_order(
                threads,
                50,
                || Ok::<usize, TestError>(0),
                |count, s| {
                    *count += 1;
                    // Uneven work, so that workers finish out of order.
                    std::thread::sleep(std::time::Duration::from_micros(((s * 7) % 5) as u64 * 50));
                    Ok(s * s)
                },
                |s, r| {
                    seen.push((s, r));
                    Ok(())
                },
            )
            .unwrap();
            assert_eq!(seen, (0..50).map(|s| (s, s * s)).collect::<Vec<_>>());
            assert_eq!(states.len(), threads);
            assert_eq!(states.iter().sum::<usize>(), 50, "every sample ran once");
        }
    }

    #[test]
    fn errors_and_panics_stop_the_run() {
        for threads in [1, 2, 4] {
            let r = in_order(
                threads,
                20,
                || Ok::<(), TestError>(()),
                |(), s| {
                    if s == 7 {
                        Err(TestError::Failed(s))
                    } else {
                        Ok(s)
                    }
                },
                |_, _| Ok(()),
            );
            assert_eq!(r.unwrap_err(), TestError::Failed(7));
            if threads > 1 {
                // (On the caller's thread a panic is the caller's.)
                let r = in_order(
                    threads,
                    20,
                    || Ok::<(), TestError>(()),
                    |(), s| if s == 3 { panic!("boom") } else { Ok(s) },
                    |_, _| Ok(()),
                );
                assert_eq!(r.unwrap_err(), TestError::Panicked);
            }
            let r = in_order(
                threads,
                20,
                || Err::<(), TestError>(TestError::Failed(99)),
                |(), s| Ok(s),
                |_, _| Ok(()),
            );
            assert_eq!(r.unwrap_err(), TestError::Failed(99));
            let r = in_order(
                threads,
                20,
                || Ok::<(), TestError>(()),
                |(), s| Ok(s),
                |s, _| {
                    if s == 5 {
                        Err(TestError::Failed(s))
                    } else {
                        Ok(())
                    }
                },
            );
            assert_eq!(r.unwrap_err(), TestError::Failed(5));
        }
    }

    #[test]
    fn no_samples_still_makes_a_state() {
        let states = in_order(
            4,
            0,
            || Ok::<u8, TestError>(1),
            |_, _| Ok(()),
            |_, ()| Ok(()),
        )
        .unwrap();
        assert_eq!(states, vec![1]);
    }
}
