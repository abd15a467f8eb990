//! The IMAP rows: one command on a session inlookup keeps logged in, against what a
//! program without inlookup does for the same command (connect, LOGIN, the command,
//! LOGOUT), on two Dovecots started with `scripts/dovecot.sh`: Debian's default, which
//! forks a login process and a mail process for every connection, and one that reuses
//! them (`DOVECOT_REUSE=1`: `service_count = 0` for imap-login, 1000 for imap).
//!
//! Each run at every client count of the matrix (and one client, for the latency table),
//! each client a worker process with its own session key or connection, logged in before
//! timing; within each (round, client count) the runs alternate, the order rotating as
//! the matrix's cases do. The command is [`COMMAND`], the user the one `dovecot.sh` seeds.

use crate::plan::absorb;
use crate::results::ImapSetup;
use crate::setup::{root, run_workers, Amount, Db, RunDir, Server, Target};
use crate::stats::{Cell, CellAcc};
use crate::Res;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The command measured, after its tag: a webmail's question on every page view, it reads
/// the mailbox's index but sends no literal.
pub const COMMAND: &str = "STATUS INBOX (MESSAGES UNSEEN)";

/// A user `scripts/dovecot.sh` seeds (with one message in INBOX), and its password.
const USER: (&str, &str) = ("alice", "secret");

/// How a run asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// Through inlookup, on a session it keeps logged in.
    Session,
    /// Connect, log in, ask, log out, straight to Dovecot.
    Fresh,
    /// On a connection of the client's own, logged in before timing: the backend's floor
    /// (as `raw` is for MySQL), for the profile.
    Open,
}

impl How {
    fn arg(self) -> &'static str {
        match self {
            How::Session => "reused",
            How::Fresh => "fresh",
            How::Open => "open",
        }
    }
}

/// The runs, in reporting order: (label, Dovecot reuses processes, how).
pub const RUNS: [(&str, bool, How); 6] = [
    ("inlookup session, forking Dovecot", false, How::Session),
    ("fresh login, forking Dovecot", false, How::Fresh),
    ("inlookup session, process-reusing Dovecot", true, How::Session),
    ("fresh login, process-reusing Dovecot", true, How::Fresh),
    ("own open connection, forking Dovecot", false, How::Open),
    ("own open connection, process-reusing Dovecot", true, How::Open),
];

/// Connect, LOGIN, [`COMMAND`], LOGOUT, as a program without a pool does per request
/// (an [`Open`] used once).
#[derive(Debug)]
pub struct Fresh {
    /// Dovecot's plain IMAP listener.
    pub addr: SocketAddr,
    /// The user.
    pub user: String,
    /// Its password (an atom: the seeded ones are).
    pub pass: String,
}

/// Reads responses until the one tagged `tag`; returns its status word.
fn tagged(r: &mut impl BufRead, tag: &str) -> Result<String, String> {
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) => return Err(format!("connection closed before {tag}'s completion")),
            Ok(_) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
        if let Some(rest) = line.strip_prefix(tag).and_then(|l| l.strip_prefix(' ')) {
            return Ok(rest.split(' ').next().unwrap_or("").trim().to_string());
        }
    }
}

impl Fresh {
    /// One request.
    pub fn ask(&self) -> Result<(), String> {
        let mut o = Open::connect(self)?;
        o.ask()?;
        o.say("LOGOUT").map(drop)
    }
}

/// [`COMMAND`] on a connection logged in once: no inlookup, no login.
#[derive(Debug)]
pub struct Open {
    /// The connection's read side (the write side is its inner stream).
    r: BufReader<TcpStream>,
    /// Commands sent, for the tags.
    n: u64,
}

impl Open {
    /// Connects and logs in.
    pub fn connect(f: &Fresh) -> Result<Open, String> {
        let s = TcpStream::connect_timeout(&f.addr, Duration::from_secs(5))
            .map_err(|e| format!("connect: {e}"))?;
        let _ = s.set_nodelay(true);
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut o = Open { r: BufReader::new(s), n: 0 };
        let mut greeting = String::new();
        o.r.read_line(&mut greeting).map_err(|e| format!("greeting: {e}"))?;
        if !greeting.starts_with("* OK") {
            return Err(format!("greeting {greeting:?}"));
        }
        match o.say(&format!("LOGIN {} {}", f.user, f.pass))?.as_str() {
            "OK" => Ok(o),
            st => Err(format!("LOGIN: {st}")),
        }
    }

    fn say(&mut self, cmd: &str) -> Result<String, String> {
        self.n += 1;
        let tag = format!("o{}", self.n);
        self.r
            .get_mut()
            .write_all(format!("{tag} {cmd}\r\n").as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        tagged(&mut self.r, &tag)
    }

    /// One request.
    pub fn ask(&mut self) -> Result<(), String> {
        match self.say(COMMAND)?.as_str() {
            "OK" => Ok(()),
            st => Err(format!("STATUS: {st}")),
        }
    }
}

/// A Dovecot of this run, stopped when dropped.
#[derive(Debug)]
struct Dovecot {
    dir: PathBuf,
    port: u16,
}

impl Dovecot {
    /// Starts one allowing `max` connections of the user from 127.0.0.1.
    fn start(dir: &Path, reuse: bool, max: usize) -> Res<Dovecot> {
        let out = Command::new(root().join("scripts/dovecot.sh"))
            .arg("start")
            .arg(dir)
            .env("DOVECOT_REUSE", if reuse { "1" } else { "0" })
            .env("DOVECOT_MAX_CONNECTIONS", max.to_string())
            .output()?;
        if !out.status.success() {
            return Err(
                format!("dovecot.sh start: {}", String::from_utf8_lossy(&out.stderr)).into()
            );
        }
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        let port = line
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("dovecot.sh start printed {line:?}"))?;
        Ok(Dovecot { dir: dir.to_path_buf(), port })
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = Command::new(root().join("scripts/dovecot.sh")).arg("stop").arg(&self.dir).status();
    }
}

/// Dovecot's version, for the report.
pub fn dovecot_version() -> String {
    Command::new("dovecot")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// What [`measure`] returns.
#[derive(Debug)]
pub struct Measured {
    /// One client, one cell per run in [`RUNS`] order.
    pub one: Vec<Cell>,
    /// Every client count, run by run in [`RUNS`] order, client counts ascending.
    pub by_clients: Vec<Cell>,
    /// The limits set for it.
    pub setup: ImapSetup,
}

/// Starts both Dovecots and a daemon for each, then runs [`RUNS`] at 1 and each of
/// `clients` client processes, `rounds` times for `secs` seconds each, alternating.
///
/// Limits, so the numbers are not those of a cap: each daemon may keep
/// `pool` = max(15, most clients) IMAP connections with as many workers plus two (sessions
/// of earlier runs stay in its pool, idle, until a new login reclaims them); each Dovecot
/// accepts that many connections of the user from 127.0.0.1 plus twice the most clients
/// (an own-connection run's, and a fresh-login run's still closing) and a margin.
pub fn measure(
    inlookup: &Path,
    run: &RunDir,
    db: &Db,
    rounds: usize,
    secs: f64,
    clients: &[usize],
) -> Res<Measured> {
    let mut counts = clients.to_vec();
    counts.push(1);
    counts.sort_unstable();
    counts.dedup();
    let most = counts.last().copied().unwrap_or(1);
    let pool = most.max(15);
    let dovecot_max = pool + 2 * most + 16;
    let limits =
        [("IMAP_MAX_CONNECTIONS", pool.to_string()), ("IMAP_WORKERS", (pool + 2).to_string())];
    let setup = ImapSetup {
        clients: counts.clone(),
        daemon_env: limits.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "),
        dovecot_env: format!("DOVECOT_MAX_CONNECTIONS={dovecot_max}"),
    };
    let fork = Dovecot::start(&run.0.join("dovecot-fork"), false, dovecot_max)?;
    let reuse = Dovecot::start(&run.0.join("dovecot-reuse"), true, dovecot_max)?;
    let daemon = |label: &str, d: &Dovecot| {
        let mut env =
            vec![("IMAP_HOST", "127.0.0.1".to_string()), ("IMAP_PORT", d.port.to_string())];
        env.extend(limits.iter().cloned());
        Server::daemon(inlookup, run, label, db, &env)
    };
    let (via_fork, via_reuse) = (daemon("imap-fork", &fork)?, daemon("imap-reuse", &reuse)?);
    let target = |reused: bool, how: How| {
        let (d, s) = if reused { (&reuse, &via_reuse) } else { (&fork, &via_fork) };
        let mut args = vec![
            format!("user={}", USER.0),
            format!("pass={}", USER.1),
            format!("imap={}", how.arg()),
            format!("addr=127.0.0.1:{}", d.port),
        ];
        args.extend(Target::fifo(crate::case::Case::Imap, s).args);
        Target { case: crate::case::Case::Imap, args }
    };
    let targets: Vec<Target> = RUNS.iter().map(|&(_, r, t)| target(r, t)).collect();
    // (run, client count) → its rounds.
    let mut acc: BTreeMap<(usize, usize), CellAcc> = BTreeMap::new();
    for round in 0..rounds {
        for (ci, &n) in counts.iter().enumerate() {
            let shift = (round + ci) % RUNS.len();
            for k in 0..RUNS.len() {
                let i = (shift + k) % RUNS.len();
                let outs = run_workers(&targets[i], n, 1, 2, Amount::Secs(secs))?;
                let ok: u64 = outs.iter().map(|o| o.ok).sum();
                eprintln!(
                    "bench: IMAP round {} {:<44} × {n:<2} {:>7.0} req/s",
                    round + 1,
                    RUNS[i].0,
                    ok as f64 / secs
                );
                absorb(acc.entry((i, n)).or_default(), outs);
            }
        }
    }
    drop((via_fork, via_reuse));
    let by_clients: Vec<Cell> = acc.into_iter().map(|((i, n), a)| a.finish(RUNS[i].0, n)).collect();
    let one = by_clients.iter().filter(|c| c.clients == 1).cloned().collect();
    Ok(Measured { one, by_clients, setup })
}
