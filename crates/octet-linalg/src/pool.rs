//! A small thread pool for operator-sized jobs: workers spin briefly between jobs, so handing a
//! job to them costs a few hundred nanoseconds instead of a wake-up through the operating
//! system, and park after a while so an idle interpreter costs nothing.
//!
//! Handing out and collecting a job touches no line that every thread writes: each worker has
//! its own mailbox (the job and a state word on a cache line of their own) that the submitter
//! posts the job to and the worker reports back on, and thread `t` runs indices `t`,
//! `t + threads`, ... of the job with no further coordination. A worker that has not picked up
//! its job by the time the submitter finished its own indices is withdrawn from it (the
//! submitter runs its indices), so the submitter only ever waits for workers inside the job.
//!
//! This is the one place outside the per-architecture kernels with `unsafe` code: a job is a
//! borrowed closure, and the workers reach it through a lifetime-erased pointer. [`Pool::run`]
//! does not return before every worker has stopped using it (the invariant is argued at each
//! `unsafe` block). rayon, measured first, costs more than a 10 µs operator saves: its idle
//! workers sleep within microseconds, and a futex wake-up in a virtual machine takes longer.

use std::cell::UnsafeCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The most indices one job may have (a split keeps its parts in an array of this size).
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

/// The job before the first one.
const NOTHING: &Task = &|_| {};

/// A mailbox state is a post number (the how-manieth job posted to this mailbox) shifted left
/// by two, and one of these tags. Posted and not picked up yet:
const POSTED: usize = 1;
/// The worker is inside the job.
const RUNNING: usize = 2;
/// The worker has left the job.
const DONE: usize = 3;
/// The submitter withdrew the job before the worker picked it up.
const WITHDRAWN: usize = 0;

/// One worker's mailbox: the state word and the job, on a line (pair) of their own, so that a
/// worker picking a job up fetches everything with one transfer between cores, and the spinning
/// worker disturbs no other thread. A transfer costs a few hundred nanoseconds in a virtual
/// machine, and operators last a few microseconds: the protocol makes as few as it can (the
/// submitter's post, the worker's exchange, the worker's report).
#[repr(align(128))]
struct Mailbox {
    state: AtomicUsize,
    /// Written only by the submitter before it posts (no worker reads it then: the previous post
    /// is withdrawn or DONE), read only by the worker after its POSTED→RUNNING exchange.
    job: UnsafeCell<Job>,
}

struct Shared {
    mailboxes: Box<[Mailbox]>,
    /// A task panicked.
    panicked: AtomicBool,
    shutdown: AtomicBool,
    /// Parked workers wait here for their mailbox to change.
    sleep: Mutex<()>,
    wake: Condvar,
    sleepers: AtomicUsize,
}

// SAFETY: every field but the mailboxes' `job` is a thread-safe type. A `job` holds a pointer to
// a `Sync` closure; it is written only while its worker cannot read it and read only between the
// worker's POSTED→RUNNING exchange (which acquires the submitter's release of POSTED, made after
// the write) and its release of DONE, which the submitter acquires before it writes again (see
// `Pool::run`).
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw pointers are only used under that protocol.
unsafe impl Send for Shared {}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// Runs the indices of thread `me`: `me`, `me + threads`, ... below `count`.
    fn work(&self, task: &(dyn Fn(usize) + Sync + '_), count: usize, me: usize, threads: usize) {
        for i in (me..count.min(MAX_TASKS)).step_by(threads.max(1)) {
            if catch_unwind(AssertUnwindSafe(|| task(i))).is_err() {
                self.panicked.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Worker threads that run jobs together with the thread that submits them.
pub(crate) struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Serialises submitters (a pool runs one job at a time) and counts the posts to each
    /// mailbox.
    submit: Mutex<Vec<usize>>,
}

impl Pool {
    /// A pool with `workers` threads besides the submitting one.
    pub(crate) fn new(workers: usize) -> std::io::Result<Pool> {
        let shared = Arc::new(Shared {
            mailboxes: (0..workers)
                .map(|_| Mailbox {
                    state: AtomicUsize::new(DONE),
                    job: UnsafeCell::new(Job {
                        task: NOTHING,
                        count: 0,
                    }),
                })
                .collect(),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
            sleepers: AtomicUsize::new(0),
        });
        let mut pool = Pool {
            shared: Arc::clone(&shared),
            workers: Vec::with_capacity(workers),
            submit: Mutex::new(vec![0; workers]),
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
                    worker(&shared, i, workers + 1);
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
    /// workers and the calling thread (thread `t` takes `t`, `t + threads`, ..., the caller
    /// being thread 0; the caller also takes the indices of a worker that has not picked the job
    /// up by the time it finished its own), and returns when all calls have returned. A panic
    /// in a task is re-raised here after every worker has let go of the job.
    pub(crate) fn run<'a>(&self, count: usize, task: &'a (dyn Fn(usize) + Sync + 'a)) {
        let mut posts = lock(&self.submit);
        let shared = &*self.shared;
        let threads = self.threads();
        let count = count.min(MAX_TASKS);
        // Only the workers that have an index are asked to join.
        let helpers = count.saturating_sub(1).min(shared.mailboxes.len());
        shared.panicked.store(false, Ordering::Relaxed);
        if helpers > 0 {
            // SAFETY: erases the closure's lifetime so the workers can reach it. Invariant: a
            // worker dereferences the pointer only while its mailbox is RUNNING for this post,
            // and this function does not return (normally or by unwinding: nothing below
            // panics, task panics are caught) before every mailbox posted to is WITHDRAWN or
            // DONE for its post. So every dereference happens while `task` is alive.
            let erased: &'static Task = unsafe {
                std::mem::transmute::<&'a (dyn Fn(usize) + Sync + 'a), &'static Task>(task)
            };
            for (mailbox, post) in shared.mailboxes.iter().zip(posts.iter_mut()).take(helpers) {
                // SAFETY: the previous post to this mailbox ended WITHDRAWN or DONE (acquired
                // below before the previous `run` returned), so its worker does not read `job`
                // until it exchanges the POSTED state stored next, which releases this write.
                unsafe {
                    *mailbox.job.get() = Job {
                        task: erased,
                        count,
                    };
                }
                *post = post.wrapping_add(1);
                // A release store: the submitter goes on while the line travels to the worker.
                mailbox.state.store(*post << 2 | POSTED, Ordering::Release);
            }
            // Without a full fence here a worker that parks at this very moment may miss the
            // post: it then only misses this job (the submitter takes back a job nobody picked
            // up and never waits for it), and the next post wakes it.
            if shared.sleepers.load(Ordering::Relaxed) > 0 {
                let _guard = lock(&shared.sleep);
                shared.wake.notify_all();
            }
        }
        shared.work(task, count, 0, threads);
        // Take back the jobs the workers have not picked up; wait for the others.
        for (w, (mailbox, &post)) in shared.mailboxes.iter().zip(posts.iter()).enumerate() {
            if w >= helpers {
                break;
            }
            let mut spins = 0;
            loop {
                let state = mailbox.state.load(Ordering::Acquire);
                if state == post << 2 | DONE {
                    break;
                }
                if state == post << 2 | POSTED
                    && mailbox
                        .state
                        .compare_exchange(
                            state,
                            post << 2 | WITHDRAWN,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        )
                        .is_ok()
                {
                    shared.work(task, count, w + 1, threads);
                    break;
                }
                wait_step(&mut spins);
            }
        }
        drop(posts);
        if shared.panicked.load(Ordering::Relaxed) {
            resume_unwind(Box::new("a task of an octet-linalg job panicked"));
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _guard = lock(&self.shared.sleep);
            self.shared.wake.notify_all();
        }
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn worker(shared: &Shared, index: usize, threads: usize) {
    let Some(mailbox) = shared.mailboxes.get(index) else {
        return;
    };
    loop {
        // Wait for a post (the submitter may have posted and withdrawn several meanwhile):
        // spin, then park.
        let mut idle_since = Instant::now();
        let mut spins = 0u32;
        let post = loop {
            let state = mailbox.state.load(Ordering::Relaxed);
            if state & 3 == POSTED
                && mailbox
                    .state
                    .compare_exchange(
                        state,
                        (state & !3) | RUNNING,
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                break state & !3;
            }
            if shared.shutdown.load(Ordering::Acquire) {
                return;
            }
            if !spins.is_multiple_of(1024) || idle_since.elapsed() < SPIN {
                wait_step(&mut spins);
                continue;
            }
            // Park until the mailbox changes (a post, even one withdrawn before this worker
            // woke up: it then spins again, ready for the next job).
            let mut guard = lock(&shared.sleep);
            shared.sleepers.fetch_add(1, Ordering::SeqCst);
            let seen = mailbox.state.load(Ordering::SeqCst);
            while seen & 3 != POSTED
                && mailbox.state.load(Ordering::SeqCst) == seen
                && !shared.shutdown.load(Ordering::SeqCst)
            {
                guard = shared
                    .wake
                    .wait(guard)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            shared.sleepers.fetch_sub(1, Ordering::SeqCst);
            drop(guard);
            // Spin again from now on: the next job likely follows soon.
            idle_since = Instant::now();
            spins = 0;
        };
        {
            // SAFETY: the mailbox is RUNNING for this post, so the submitter wrote `job` before
            // posting (released by the POSTED store, acquired by the exchange), does not write
            // it again and keeps its closure alive until it sees DONE below.
            let job = unsafe { *mailbox.job.get() };
            // SAFETY: as above, `job.task` points to the live closure of this post.
            let task = unsafe { &*job.task };
            shared.work(task, job.count, index + 1, threads);
            mailbox.state.store(post | DONE, Ordering::Release);
        }
    }
}
