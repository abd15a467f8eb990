//! The worker pool: a bounded queue of lookups and a fixed set of threads, each with its own
//! backend (one persistent MySQL connection). Every result goes back to the I/O thread
//! (woken through the wake pipe), which caches it and answers the clients waiting for the
//! same key, or, when the lookup failed, every client (serve-stale or an error); a found
//! answer the worker also writes to the client whose miss started the lookup itself, right
//! after handing it over: one thread hand-off less on that client's path.

use crate::backend::BackendFactory;
use crate::fifo::DirectReply;
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
    /// The reply path of the request that started the lookup: a worker with a
    /// [`DirectReply`] answers it itself when the lookup succeeds.
    pub reply_to: Box<[u8]>,
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
    /// Set when the worker writes the answer to `reply_to` itself, right after handing
    /// over this result (so the cache holds the answer before its client can ask again):
    /// the answer's reply bytes. The first waiter, the request that started the lookup, is
    /// then not to be answered by the I/O thread.
    pub delivering: Option<Vec<u8>>,
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
        direct: Option<DirectReply>,
    ) -> std::io::Result<Pool> {
        let (jobs_tx, jobs_rx) = bounded::<Job>(queue.max(1));
        let (done_tx, done_rx) = unbounded::<Done>();
        let reset_generation = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::with_capacity(workers);
        for n in 0..workers.max(1) {
            let (rx, tx, waker, factory, direct) =
                (jobs_rx.clone(), done_tx.clone(), waker.clone(), factory.clone(), direct.clone());
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
                    // A found answer that fits one write goes to its client from here.
                    let direct_reply = match (&result, &direct) {
                        (Ok(answer), Some(d)) => {
                            let bytes = answer.encode();
                            (bytes.len() <= inlookup_core::wire::PIPE_BUF).then_some((d, bytes))
                        }
                        _ => None,
                    };
                    let done = Done {
                        key: job.key,
                        kind: job.kind,
                        epoch: job.epoch,
                        result,
                        delivering: direct_reply.as_ref().map(|(_, b)| b.clone()),
                    };
                    // The result first, then the reply: by the time the client can ask
                    // again, the I/O thread has been woken with the answer to cache.
                    if tx.send(done).is_err() {
                        break;
                    }
                    waker.wake();
                    if let Some((d, bytes)) = direct_reply {
                        d.deliver(&job.reply_to, &bytes);
                    }
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
