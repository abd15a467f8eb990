//! The daemon's wiring of the IMAP sessions ([`inlookup_imap`]): their requests run on a
//! worker pool of their own ([`crate::pool`], the same kind as the lookups'), each worker
//! writing its reply itself; a user's mail store comes from the HOST lookup; an idle
//! reaper thread logs out of connections unused too long.

use crate::backend::{Backend, BackendFactory, Backends};
use crate::error::Error;
use crate::fifo::Replier;
use crate::pool::{Event, Finished, Handler, Pool, Refused, Reply};
use crate::wake::Waker;
use inlookup_core::admin::ImapStats;
use inlookup_core::wire::ERROR_REPLY;
use inlookup_imap::{Forgotten, ImapConfig, MailStore, Request, Sessions};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Host lookup backends kept between logins.
const SPARE_HOST_BACKENDS: usize = 4;

/// An IMAP request for a worker.
#[derive(Debug)]
pub struct ImapJob {
    /// Which of the four.
    pub request: Request,
    /// The JSON payload (holds a password or a session key: never logged).
    pub payload: String,
    /// The client's reply FIFO.
    pub reply_to: Box<[u8]>,
}

/// The IMAP pool's handler: every worker serves from the one session table.
#[derive(Debug)]
struct ImapWorker(Arc<Sessions>);

impl Handler for ImapWorker {
    type Job = ImapJob;
    type Output = Vec<u8>;
    /// The I/O thread learns nothing of an IMAP request: its worker answers it.
    type Report = Infallible;

    fn handle(&mut self, job: &ImapJob) -> Vec<u8> {
        self.0.serve(job.request, &job.payload)
    }

    fn finish(job: ImapJob, output: Option<Vec<u8>>) -> Finished<Infallible> {
        let bytes = output.unwrap_or_else(|| ERROR_REPLY.to_vec());
        Finished { report: None, reply: Some(Reply { to: job.reply_to, bytes }) }
    }
}

/// Finds a user's mail store with the HOST lookup (a few backends kept between logins).
struct HostLookups {
    factory: BackendFactory,
    spare: Mutex<Vec<Box<dyn Backend>>>,
}

impl MailStore for HostLookups {
    fn mail_store(
        &self,
        user: &str,
    ) -> Result<Option<String>, Box<dyn std::error::Error + Send + Sync>> {
        let spare = self.spare.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut b = spare.unwrap_or_else(|| (self.factory)());
        let r = b.mail_store(user);
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        if spare.len() < SPARE_HOST_BACKENDS {
            spare.push(b);
        }
        Ok(r?.filter(|h| !h.is_empty()))
    }
}

/// The IMAP side of a running daemon: the sessions, their worker pool and reaper.
#[derive(Debug)]
pub struct ImapSide {
    sessions: Arc<Sessions>,
    pool: Pool<ImapWorker>,
    reaper: Option<JoinHandle<()>>,
}

impl ImapSide {
    /// Starts the IMAP workers and the idle reaper. No connection is made until a request
    /// needs one.
    ///
    /// # Errors
    /// A thread could not be spawned, or the random key could not be made. (TLS settings
    /// that cannot be used are logged and fail each IMAP login instead.)
    pub fn start(
        cfg: &ImapConfig,
        backends: &Backends,
        waker: Waker,
        replier: Replier,
    ) -> Result<ImapSide, Error> {
        log::info!("{}", cfg.describe());
        let factory = backends.factory.clone();
        let stores = HostLookups { factory, spare: Mutex::default() };
        let sessions = Arc::new(
            Sessions::new(cfg.clone(), Arc::new(stores)).map_err(Error::io("IMAP sessions"))?,
        );
        let s = sessions.clone();
        let pool = Pool::start(
            "imap",
            cfg.workers,
            cfg.queue,
            Arc::new(move || ImapWorker(s.clone())),
            waker,
            replier,
        )
        .map_err(Error::io("IMAP worker threads"))?;
        let s = sessions.clone();
        let reaper = std::thread::Builder::new()
            .name("imap-reaper".into())
            .spawn(move || s.reap())
            .map_err(Error::io("IMAP reaper thread"))?;
        Ok(ImapSide { sessions, pool, reaper: Some(reaper) })
    }

    /// Queues a request without waiting.
    ///
    /// # Errors
    /// [`Refused::Full`] when the queue is full, [`Refused::Closed`] after shutdown.
    pub fn submit(&self, job: ImapJob) -> Result<(), Refused> {
        self.pool.submit(job)
    }

    /// What the workers reported (only replies they could not deliver).
    pub fn try_event(&self) -> Option<Event<Infallible>> {
        self.pool.try_event()
    }

    /// Requests queued or being served.
    pub fn pending(&self) -> usize {
        self.pool.pending()
    }

    /// Forgets one user's IMAP state, or everyone's (HUP, FLUSH): see [`Sessions::forget`].
    pub fn forget(&self, user: Option<&str>) -> Forgotten {
        self.sessions.forget(user)
    }

    /// The sessions, for the IMAP front door.
    pub fn sessions(&self) -> Arc<Sessions> {
        self.sessions.clone()
    }

    /// The sessions' counters.
    pub fn stats(&self) -> ImapStats {
        self.sessions.stats()
    }

    /// Stops taking requests, logs out of every connection not running a command, and
    /// waits a little (at most about two seconds) for the threads. Threads stuck in a
    /// server call are left to end with the process.
    pub fn shutdown(&mut self) {
        self.pool.close();
        let deadline = Instant::now() + Duration::from_secs(2);
        self.sessions.close_all(deadline);
        loop {
            let running = self.pool.reap();
            if self.reaper.as_ref().is_some_and(JoinHandle::is_finished) {
                let _ = self.reaper.take().map(JoinHandle::join);
            }
            if (running == 0 && self.reaper.is_none()) || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
