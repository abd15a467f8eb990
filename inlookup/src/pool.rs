//! The worker pool: a bounded queue of lookups and a fixed set of threads, each with its own
//! backend (one persistent MySQL connection). Results go back to the I/O thread, which is
//! woken through the wake pipe.

use crate::backend::BackendFactory;
use crate::wake::Waker;
use crossbeam_channel::{bounded, unbounded, Receiver, Sender, TrySendError};
use inlookup_core::{Answer, QueryKind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A lookup for a worker.
#[derive(Debug)]
pub struct Job {
    /// The cache key; waiters for the same key share the result.
    pub key: Box<str>,
    /// The kind.
    pub kind: QueryKind,
    /// The email or domain as asked.
    pub email: String,
    /// The IP (RELAY).
    pub ip: String,
    /// The cache generation when queued: a result from before a flush is not cached.
    pub epoch: u64,
}

/// A finished lookup.
#[derive(Debug)]
pub struct Done {
    /// The job's key.
    pub key: Box<str>,
    /// The job's kind.
    pub kind: QueryKind,
    /// The job's epoch.
    pub epoch: u64,
    /// The answer, or a message saying why the backend failed.
    pub result: Result<Answer, String>,
}

/// The pool.
#[derive(Debug)]
pub struct Pool {
    /// Where jobs go; `None` once shut down.
    jobs: Option<Sender<Job>>,
    /// Where results come from.
    done: Receiver<Done>,
    /// The threads.
    threads: Vec<JoinHandle<()>>,
    /// Bumped on HUP: workers drop their connections before their next job.
    reset_generation: Arc<AtomicU64>,
}

/// Why a job was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue is full.
    Full,
    /// The pool is shutting down.
    Closed,
}

impl Pool {
    /// Starts `workers` threads behind a queue of `queue` jobs.
    ///
    /// # Errors
    /// A thread could not be spawned.
    pub fn start(
        workers: usize,
        queue: usize,
        factory: BackendFactory,
        waker: Waker,
    ) -> std::io::Result<Pool> {
        let (jobs_tx, jobs_rx) = bounded::<Job>(queue.max(1));
        let (done_tx, done_rx) = unbounded::<Done>();
        let reset_generation = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::with_capacity(workers);
        for n in 0..workers.max(1) {
            let (rx, tx, waker, factory) =
                (jobs_rx.clone(), done_tx.clone(), waker.clone(), factory.clone());
            let generation = reset_generation.clone();
            let t = std::thread::Builder::new().name(format!("worker-{n}")).spawn(move || {
                let mut backend = factory();
                let mut seen = generation.load(Ordering::Acquire);
                for job in rx {
                    let g = generation.load(Ordering::Acquire);
                    if g != seen {
                        backend.reset();
                        seen = g;
                    }
                    let result = backend.answer(job.kind, &job.email, &job.ip);
                    let done = Done { key: job.key, kind: job.kind, epoch: job.epoch, result };
                    if tx.send(done).is_err() {
                        break;
                    }
                    waker.wake();
                }
            })?;
            threads.push(t);
        }
        Ok(Pool { jobs: Some(jobs_tx), done: done_rx, threads, reset_generation })
    }

    /// Queues a job without waiting.
    pub fn submit(&self, job: Job) -> Result<(), Refused> {
        match self.jobs.as_ref().map(|j| j.try_send(job)) {
            Some(Ok(())) => Ok(()),
            Some(Err(TrySendError::Full(_))) => Err(Refused::Full),
            Some(Err(TrySendError::Disconnected(_))) | None => Err(Refused::Closed),
        }
    }

    /// A finished job, if one is ready.
    pub fn try_done(&self) -> Option<Done> {
        self.done.try_recv().ok()
    }

    /// Asks every worker to reconnect before its next job.
    pub fn reset_backends(&self) {
        self.reset_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.threads.len()
    }

    /// Stops taking jobs; workers exit after the jobs already queued. Threads stuck in a
    /// backend call are left to finish on their own (the process is about to exit).
    pub fn close(&mut self) {
        self.jobs = None;
    }

    /// Waits for the workers that have finished; returns how many are still running.
    pub fn reap(&mut self) -> usize {
        let (done, running): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.threads).into_iter().partition(|t| t.is_finished());
        for t in done {
            let _ = t.join();
        }
        self.threads = running;
        self.threads.len()
    }
}
