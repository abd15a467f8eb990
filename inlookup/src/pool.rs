//! The worker pool, one kind for every job: a bounded queue and a fixed set of threads,
//! each running a [`Handler`] of its own (for lookups, one persistent MySQL connection; for
//! IMAP, the shared session table).
//!
//! A worker takes a job, serves it, and then in this order: sends the I/O thread what it
//! must learn ([`Event::Finished`], waking it through the wake pipe), and writes the reply
//! to the client itself ([`Replier`]); a reply it could not deliver is reported as
//! [`Event::Undelivered`] on the same channel. So a job leaves its worker one way to the
//! I/O thread, and one to its client.
//!
//! A [`JobGuard`] holds every job while it is served. If the handler panics, the guard
//! answers for the job as it unwinds ([`Handler::finish`] with no output: the client gets
//! the error reply and the I/O thread learns the job failed, so its in-flight entry is
//! removed), and the worker replaces its handler with a new one from the factory before
//! taking the next job.

use crate::fifo::{Replier, ReplyFailure};
use crate::wake::Waker;
use crossbeam_channel::{bounded, unbounded, Receiver, Sender, TrySendError};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What a worker thread runs. One handler per thread, made by the pool's factory (again
/// after a panic).
pub trait Handler: Send + 'static {
    /// A request for a worker.
    type Job: Send + 'static;
    /// What [`Handler::handle`] computes.
    type Output;
    /// What the I/O thread learns of a finished job.
    type Report: Send + 'static;

    /// Serves a job. The job stays with the pool's guard meanwhile, so that a panic here
    /// can still be answered for.
    fn handle(&mut self, job: &Self::Job) -> Self::Output;

    /// Turns a job and its output into the report and the reply. `None`: the handler
    /// panicked serving it (or its thread is ending); the client must still get an answer
    /// and the I/O thread must learn that the job is over. Must not panic.
    fn finish(job: Self::Job, output: Option<Self::Output>) -> Finished<Self::Report>;
}

/// A reply for a client: where and what.
#[derive(Debug)]
pub struct Reply {
    /// The client's reply FIFO.
    pub to: Box<[u8]>,
    /// The whole reply.
    pub bytes: Vec<u8>,
}

/// What a finished job leaves: a report for the I/O thread (sent first) and a reply the
/// worker writes itself (after).
#[derive(Debug)]
pub struct Finished<R> {
    /// For the I/O thread, if it must learn anything.
    pub report: Option<R>,
    /// For the client, if the worker answers it.
    pub reply: Option<Reply>,
}

/// What the workers tell the I/O thread.
#[derive(Debug)]
pub enum Event<R> {
    /// A job finished (or was abandoned by a panic).
    Finished(R),
    /// A reply a worker could not deliver: the reply path and why.
    Undelivered(Box<[u8]>, ReplyFailure),
}

/// Why a job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue is full.
    Full,
    /// The pool is shutting down.
    Closed,
}

/// What every worker of a pool shares.
struct Outlet<R> {
    events: Sender<Event<R>>,
    waker: Waker,
    replier: Replier,
    /// Jobs queued or being served; a job counts until its reply is out and its report
    /// sent (so "none pending" at shutdown means every client has been answered or the
    /// I/O thread holds what it needs to answer).
    pending: Arc<AtomicUsize>,
    /// Handlers that panicked.
    panics: Arc<AtomicU64>,
    /// Workers serving a job now.
    busy: Arc<AtomicUsize>,
}

impl<R> Outlet<R> {
    /// Reports, then replies; the job stops counting as pending. False when the I/O thread
    /// is gone.
    ///
    /// The reply FIFO is opened before the report is sent: a client already gone is
    /// reported ahead of the job's result, so the I/O thread has counted it by the time it
    /// has the result (and answers anything after it, a STATS included).
    fn complete(&self, f: Finished<R>) -> bool {
        let Finished { report, reply } = f;
        let (mut alive, mut wake) = (true, false);
        let mut undelivered = |to: &[u8], why| {
            wake = true;
            self.events.send(Event::Undelivered(to.into(), why)).is_ok()
        };
        let opened = match &reply {
            Some(r) => match self.replier.open(&r.to) {
                Ok(fifo) => Some((fifo, r)),
                Err(why) => {
                    alive &= undelivered(&r.to, why);
                    None
                }
            },
            None => None,
        };
        if let Some(report) = report {
            alive &= self.events.send(Event::Finished(report)).is_ok();
            wake = true;
        }
        if wake {
            self.waker.wake();
        }
        if let Some((fifo, r)) = opened {
            if let Err(why) = self.replier.write(fifo, &r.bytes) {
                alive &= self.events.send(Event::Undelivered(r.to.clone(), why)).is_ok();
                self.waker.wake();
            }
        }
        self.pending.fetch_sub(1, Ordering::AcqRel);
        alive
    }
}

/// Holds a job while its handler serves it: if the handler panics, dropping the guard (as
/// the stack unwinds) answers for the job with [`Handler::finish`] and no output.
pub struct JobGuard<'o, H: Handler> {
    job: Option<H::Job>,
    outlet: &'o Outlet<H::Report>,
}

impl<H: Handler> std::fmt::Debug for JobGuard<'_, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JobGuard(armed: {})", self.job.is_some())
    }
}

impl<H: Handler> JobGuard<'_, H> {
    /// The job, for the handler to read.
    fn job(&self) -> &H::Job {
        // Set at creation and taken only by `done` (which consumes the guard).
        self.job.as_ref().unwrap_or_else(|| unreachable!("a guard holds its job until done"))
    }

    /// The job served: finish it with its output.
    fn done(mut self, output: H::Output) -> bool {
        match self.job.take() {
            Some(job) => self.outlet.complete(H::finish(job, Some(output))),
            None => true,
        }
    }
}

impl<H: Handler> Drop for JobGuard<'_, H> {
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            // The handler panicked while it served the job: it no longer does.
            self.outlet.busy.fetch_sub(1, Ordering::Relaxed);
            self.outlet.complete(H::finish(job, None));
        }
    }
}

/// The pool.
pub struct Pool<H: Handler> {
    /// Where jobs go; `None` once closed.
    jobs: Option<Sender<H::Job>>,
    /// What the workers tell the I/O thread.
    events: Receiver<Event<H::Report>>,
    threads: Vec<JoinHandle<()>>,
    pending: Arc<AtomicUsize>,
    panics: Arc<AtomicU64>,
    busy: Arc<AtomicUsize>,
    /// Jobs that may wait for a worker (QUEUE_SIZE).
    queue: usize,
    /// Worker threads.
    workers: usize,
}

impl<H: Handler> std::fmt::Debug for Pool<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({} threads, {} pending)", self.threads.len(), self.pending())
    }
}

impl<H: Handler> Pool<H> {
    /// Starts `workers` threads named `name-N` behind a queue of `queue` jobs; each makes
    /// its handler with `factory` (and makes a new one after a panic).
    ///
    /// # Errors
    /// A thread could not be spawned.
    pub fn start(
        name: &str,
        workers: usize,
        queue: usize,
        factory: Arc<dyn Fn() -> H + Send + Sync>,
        waker: Waker,
        replier: Replier,
    ) -> std::io::Result<Pool<H>> {
        let (queue, workers) = (queue.max(1), workers.max(1));
        // Room for a job per idle worker on its way to it, beside the queue proper
        // (`submit` keeps the queue's own bound).
        let (jobs_tx, jobs_rx) = bounded::<H::Job>(queue + workers);
        let (events_tx, events) = unbounded();
        let pending = Arc::new(AtomicUsize::new(0));
        let panics = Arc::new(AtomicU64::new(0));
        let busy = Arc::new(AtomicUsize::new(0));
        let outlet = Arc::new(Outlet {
            events: events_tx,
            waker,
            replier,
            pending: pending.clone(),
            panics: panics.clone(),
            busy: busy.clone(),
        });
        let mut threads = Vec::with_capacity(workers);
        for n in 0..workers {
            let (rx, outlet, factory) = (jobs_rx.clone(), outlet.clone(), factory.clone());
            let thread = format!("{name}-{n}");
            threads.push(
                std::thread::Builder::new()
                    .name(thread.clone())
                    .spawn(move || work(&thread, &rx, &outlet, &*factory))?,
            );
        }
        Ok(Pool { jobs: Some(jobs_tx), events, threads, pending, panics, busy, queue, workers })
    }

    /// Queues a job without waiting.
    ///
    /// The queue is full when `queue` jobs wait beyond one for each idle worker: a job
    /// handed over while a worker is idle but has not taken it yet does not count against
    /// the queue.
    ///
    /// # Errors
    /// [`Refused::Full`] when the queue is full, [`Refused::Closed`] after [`Pool::close`].
    pub fn submit(&self, job: H::Job) -> Result<(), Refused> {
        let Some(jobs) = &self.jobs else { return Err(Refused::Closed) };
        let idle = self.workers.saturating_sub(self.busy());
        if jobs.len() >= self.queue + idle {
            return Err(Refused::Full);
        }
        // Counted before a worker can finish it (which counts it out), undone if refused.
        self.pending.fetch_add(1, Ordering::AcqRel);
        let sent = jobs.try_send(job);
        if sent.is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
        }
        match sent {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(Refused::Full),
            Err(TrySendError::Disconnected(_)) => Err(Refused::Closed),
        }
    }

    /// What a worker told the I/O thread, if anything is waiting.
    pub fn try_event(&self) -> Option<Event<H::Report>> {
        self.events.try_recv().ok()
    }

    /// Jobs queued or being served.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Jobs waiting for a worker.
    pub fn queued(&self) -> usize {
        self.jobs.as_ref().map_or(0, Sender::len)
    }

    /// Workers serving a job now.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    /// Handlers that panicked (each replaced by a new one).
    pub fn panics(&self) -> u64 {
        self.panics.load(Ordering::Relaxed)
    }

    /// Stops taking jobs; workers exit after the jobs already queued. Threads stuck in a
    /// backend call are left to finish on their own (the process is about to exit).
    pub fn close(&mut self) {
        self.jobs = None;
    }

    /// Joins the workers that have ended; returns how many still run.
    pub fn reap(&mut self) -> usize {
        let (ended, running): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.threads).into_iter().partition(JoinHandle::is_finished);
        for t in ended {
            let _ = t.join();
        }
        self.threads = running;
        self.threads.len()
    }
}

/// A worker thread: serves jobs until the queue closes, with a new handler after a panic.
fn work<H: Handler>(
    thread: &str,
    jobs: &Receiver<H::Job>,
    outlet: &Outlet<H::Report>,
    factory: &(dyn Fn() -> H + Send + Sync),
) {
    loop {
        let served = catch_unwind(AssertUnwindSafe(|| {
            let mut handler = factory();
            for job in jobs {
                let guard = JobGuard::<H> { job: Some(job), outlet };
                outlet.busy.fetch_add(1, Ordering::Relaxed);
                let output = handler.handle(guard.job());
                outlet.busy.fetch_sub(1, Ordering::Relaxed);
                if !guard.done(output) {
                    return;
                }
            }
        }));
        match served {
            Ok(()) => return,
            Err(_) => {
                // The guard has answered for the job; the panic message went to stderr.
                outlet.panics.fetch_add(1, Ordering::Relaxed);
                log::error!("{thread}: a job panicked; its client got an error reply and the worker starts afresh");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fifo::ReplyDir;
    use std::time::Duration;

    /// Doubles numbers; panics on 13.
    struct Doubler;

    impl Handler for Doubler {
        type Job = u32;
        type Output = u32;
        type Report = Result<u32, u32>;

        fn handle(&mut self, job: &u32) -> u32 {
            assert_ne!(*job, 13, "unlucky");
            job * 2
        }

        fn finish(job: u32, output: Option<u32>) -> Finished<Result<u32, u32>> {
            Finished { report: Some(output.ok_or(job)), reply: None }
        }
    }

    fn pool(workers: usize, queue: usize) -> (Pool<Doubler>, crate::wake::WakeReceiver) {
        let (waker, wake) = crate::wake::pair().unwrap();
        let dir = Arc::new(ReplyDir::open(&std::env::temp_dir()).unwrap());
        let replier = Replier::start(dir, Duration::from_secs(1)).unwrap();
        let p = Pool::start("test", workers, queue, Arc::new(|| Doubler), waker, replier).unwrap();
        (p, wake)
    }

    fn next(p: &Pool<Doubler>) -> Result<u32, u32> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(Event::Finished(r)) = p.try_event() {
                return r;
            }
            assert!(std::time::Instant::now() < deadline, "no event");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_panicking_job_is_answered_for_and_the_worker_goes_on() {
        let (p, _wake) = pool(1, 4);
        p.submit(13).unwrap();
        assert_eq!(next(&p), Err(13), "the guard reports the abandoned job");
        // The one worker serves the next job with a new handler.
        p.submit(4).unwrap();
        assert_eq!(next(&p), Ok(8));
        assert_eq!(p.panics(), 1);
        assert_eq!(p.pending(), 0);
    }

    #[test]
    fn a_full_queue_refuses_and_a_closed_pool_too() {
        let (mut p, _wake) = pool(1, 1);
        // Nothing is served until a worker takes it; flood the queue.
        let mut refused = 0;
        for n in 0..1000 {
            if p.submit(n) == Err(Refused::Full) {
                refused += 1;
            }
        }
        assert!(refused > 0, "a one-place queue took 1000 jobs at once");
        p.close();
        assert_eq!(p.submit(1), Err(Refused::Closed));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while p.reap() > 0 {
            assert!(std::time::Instant::now() < deadline, "workers did not end");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(p.pending(), 0, "every accepted job was finished");
    }

    /// Blocks every job until the gate opens.
    struct Gated(Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>);

    impl Handler for Gated {
        type Job = u32;
        type Output = ();
        type Report = u32;

        fn handle(&mut self, _: &u32) {
            let (open, cv) = &*self.0;
            let mut o = open.lock().unwrap();
            while !*o {
                o = cv.wait(o).unwrap();
            }
        }

        fn finish(job: u32, _: Option<()>) -> Finished<u32> {
            Finished { report: Some(job), reply: None }
        }
    }

    #[test]
    fn the_queue_counts_only_what_waits_beyond_the_idle_workers() {
        let gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let (waker, _wake) = crate::wake::pair().unwrap();
        let dir = Arc::new(ReplyDir::open(&std::env::temp_dir()).unwrap());
        let replier = Replier::start(dir, Duration::from_secs(1)).unwrap();
        let g = gate.clone();
        let p =
            Pool::start("gated", 1, 2, Arc::new(move || Gated(g.clone())), waker, replier).unwrap();
        // One worker, a queue of two: three jobs fit at once, whether or not the idle worker
        // has taken the first yet.
        for n in 0..3 {
            assert_eq!(p.submit(n), Ok(()), "job {n}");
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while p.busy() == 0 {
            assert!(std::time::Instant::now() < deadline, "the worker never took a job");
            std::thread::sleep(Duration::from_millis(1));
        }
        // Now one runs and two wait: the fourth finds the queue full.
        assert_eq!(p.submit(3), Err(Refused::Full));
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
    }
}
