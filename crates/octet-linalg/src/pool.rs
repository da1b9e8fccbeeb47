//! A small thread pool for operator-sized jobs: workers spin briefly between jobs, so handing a
//! job to them costs a few hundred nanoseconds instead of a wake-up through the operating
//! system, and park after a while so an idle interpreter costs nothing.
//!
//! This is the one place outside the per-architecture kernels with `unsafe` code: a job is a
//! borrowed closure, and the workers reach it through a lifetime-erased pointer. [`Pool::run`]
//! does not return before every worker has stopped using it (the invariant is argued at each
//! `unsafe` block). rayon, measured first, costs more than a 10 µs operator saves: its idle
//! workers sleep within microseconds, and a futex wake-up in a virtual machine takes longer.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The most indices one job may have.
pub(crate) const MAX_TASKS: usize = 64;

/// How long an idle worker spins before it parks.
const SPIN: Duration = Duration::from_millis(2);

/// Spins (`spin_loop` hints) before a waiting thread starts yielding its processor between
/// checks: a few microseconds. When the machine has more runnable threads than processors (other
/// programs, or more threads than cores), a thread that only spins keeps the very thread it
/// waits for off the processor until the scheduler preempts it, which costs milliseconds;
/// yielding costs a system call when nothing else wants to run.
const SPINS_BEFORE_YIELD: u32 = 2048;

/// One step of a wait loop: a spin hint first, a yield of the processor after
/// [`SPINS_BEFORE_YIELD`] steps.
fn wait_step(spins: &mut u32) {
    *spins = spins.wrapping_add(1);
    if *spins < SPINS_BEFORE_YIELD {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// The task a job runs: called once with every index below the job's count.
type Task = dyn Fn(usize) + Sync;

/// A job as the workers see it. `task` points to a closure on the stack of the thread inside
/// [`Pool::run`], which outlives every use (see there).
#[derive(Clone, Copy)]
struct Job {
    task: *const Task,
    count: usize,
}

// SAFETY: `Job` only carries a pointer to a `Sync` closure between threads; it is dereferenced
// while `Pool::run` keeps the closure alive (see the invariant there).
unsafe impl Send for Job {}

struct Shared {
    /// The current job; `None` once its submitter stopped accepting helpers.
    job: Mutex<Option<Job>>,
    /// Bumped for every job, so workers notice new work without taking the lock.
    epoch: AtomicUsize,
    /// Which indices of the current job have been taken.
    claimed: [AtomicBool; MAX_TASKS],
    /// Workers inside the current job.
    active: AtomicUsize,
    /// A task panicked.
    panicked: AtomicBool,
    shutdown: AtomicBool,
    /// Parked workers wait here for a new epoch.
    sleep: Mutex<()>,
    wake: Condvar,
    sleepers: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// Runs indices of `job` until none are left: first this thread's own (`me`, `me +
    /// threads`, ...), so that consecutive operators split the same way find their data in this
    /// core's cache, then any another thread has not started yet.
    fn work(&self, job: Job, me: usize, threads: usize) {
        // SAFETY: the caller holds a place in `active` (workers) or is the submitter, so
        // `Pool::run` has not returned and the closure behind `job.task` is alive.
        let task = unsafe { &*job.task };
        let count = job.count.min(MAX_TASKS);
        let own = (me..count).step_by(threads.max(1));
        for i in own.chain(0..count) {
            if !self.claimed[i].swap(true, Ordering::AcqRel)
                && catch_unwind(AssertUnwindSafe(|| task(i))).is_err()
            {
                self.panicked.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Worker threads that run jobs together with the thread that submits them.
pub(crate) struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Serialises submitters (a pool runs one job at a time).
    submit: Mutex<()>,
}

impl Pool {
    /// A pool with `workers` threads besides the submitting one.
    pub(crate) fn new(workers: usize) -> std::io::Result<Pool> {
        let shared = Arc::new(Shared {
            job: Mutex::new(None),
            epoch: AtomicUsize::new(0),
            claimed: std::array::from_fn(|_| AtomicBool::new(true)),
            active: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
            sleepers: AtomicUsize::new(0),
        });
        let mut pool = Pool {
            shared: Arc::clone(&shared),
            workers: Vec::with_capacity(workers),
            submit: Mutex::new(()),
        };
        // Every worker is running before the pool is handed out, so that nothing a starting
        // thread does happens later, during a job.
        let started = Arc::new(std::sync::Barrier::new(workers + 1));
        for i in 0..workers {
            let shared = Arc::clone(&shared);
            let started = Arc::clone(&started);
            let handle = std::thread::Builder::new()
                .name(format!("octet-worker-{i}"))
                .spawn(move || {
                    started.wait();
                    worker(&shared, i + 1, workers + 1);
                })?;
            pool.workers.push(handle);
        }
        started.wait();
        Ok(pool)
    }

    /// Threads that run a job: the workers and the submitter.
    pub(crate) fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Calls `task(i)` for every `i` in `0..count` (at most [`MAX_TASKS`]), spread over the
    /// workers and the calling thread (thread `t` takes `t`, `t + threads`, ... first, the
    /// caller being thread 0), and returns when all calls have returned. A panic in a task is
    /// re-raised here after every worker has let go of the job.
    pub(crate) fn run<'a>(&self, count: usize, task: &'a (dyn Fn(usize) + Sync + 'a)) {
        let _one_job_at_a_time = lock(&self.submit);
        let shared = &*self.shared;
        // SAFETY: erases the closure's lifetime so the workers can reach it. Invariant: this
        // function does not return (normally or by unwinding) before the job is withdrawn from
        // `shared.job` and `shared.active` is back to 0, and a worker only dereferences the
        // pointer while it holds a place in `active`, taken under the `job` lock while the job
        // is still published. So every dereference happens while `task` is alive.
        let task: &'static Task =
            unsafe { std::mem::transmute::<&'a (dyn Fn(usize) + Sync + 'a), &'static Task>(task) };
        let count = count.min(MAX_TASKS);
        let job = Job { task, count };
        for (i, claimed) in shared.claimed.iter().enumerate() {
            claimed.store(i >= count, Ordering::Relaxed);
        }
        shared.panicked.store(false, Ordering::Relaxed);
        *lock(&shared.job) = Some(job);
        shared.epoch.fetch_add(1, Ordering::Release);
        if shared.sleepers.load(Ordering::Acquire) > 0 {
            let _guard = lock(&shared.sleep);
            shared.wake.notify_all();
        }
        shared.work(job, 0, self.threads());
        // Withdraw the job, then wait for the workers inside it.
        *lock(&shared.job) = None;
        let mut spins = 0;
        while shared.active.load(Ordering::Acquire) != 0 {
            wait_step(&mut spins);
        }
        if shared.panicked.load(Ordering::Relaxed) {
            resume_unwind(Box::new("a task of an octet-linalg job panicked"));
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        {
            let _guard = lock(&self.shared.sleep);
            self.shared.wake.notify_all();
        }
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn worker(shared: &Shared, me: usize, threads: usize) {
    let mut seen = shared.epoch.load(Ordering::Acquire);
    loop {
        // Wait for a new epoch: spin, then park.
        let idle_since = Instant::now();
        let mut spins = 0u32;
        loop {
            if shared.shutdown.load(Ordering::Acquire) {
                return;
            }
            let epoch = shared.epoch.load(Ordering::Acquire);
            if epoch != seen {
                seen = epoch;
                break;
            }
            if !spins.is_multiple_of(1024) || idle_since.elapsed() < SPIN {
                wait_step(&mut spins);
                continue;
            }
            let mut guard = lock(&shared.sleep);
            shared.sleepers.fetch_add(1, Ordering::AcqRel);
            while shared.epoch.load(Ordering::Acquire) == seen
                && !shared.shutdown.load(Ordering::Acquire)
            {
                guard = shared
                    .wake
                    .wait(guard)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            shared.sleepers.fetch_sub(1, Ordering::AcqRel);
        }
        // Join the job if it is still published.
        let job = {
            let slot = lock(&shared.job);
            let job = *slot;
            if job.is_some() {
                shared.active.fetch_add(1, Ordering::AcqRel);
            }
            job
        };
        if let Some(job) = job {
            shared.work(job, me, threads);
            shared.active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
