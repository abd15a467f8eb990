//! # door: a webmail page view through the IMAP front door, Dovecot and imapproxy
//!
//! Issue 12's benchmark. One page view is what a stateless webmail does per page: connect,
//! `LOGIN`, `SELECT INBOX`, `FETCH 1:20 (FLAGS ENVELOPE)`, `LOGOUT`, on a new TCP
//! connection each time. Side by side, the order rotating every round, one client:
//!
//! - **door**: inlookup's IMAP front door (IMAP_LISTEN), in front of a forking Dovecot;
//! - **Dovecot, forking**: straight to Dovecot as Debian ships it (a login process and an
//!   imap process per connection);
//! - **Dovecot, process-reusing**: straight to a Dovecot with `service_count = 0` and a
//!   client limit (scripts/dovecot.sh's DOVECOT_REUSE=1): its fastest login;
//! - **imapproxy**: Debian's `imapproxy` (up-imapproxy) in front of a forking Dovecot.
//!
//! Each case has its own Dovecot, so each Dovecot's log counts that case's logins. Every
//! INBOX holds 20 messages. `scripts/bench.sh --only door` runs it (about a minute) and
//! writes `docs/bench/door.md`.
//!
//! Arguments: `--mysql HOST:PORT` (required: the daemon's database, `inl_bench_door`,
//! created and dropped), `--rounds N` (300 page views per case), `--out DIR` (docs/bench).

#[path = "common.rs"]
#[allow(dead_code)]
mod common;

use common::{
    admin_conn, arg, cmd, is_root, pct, release_inlookup, root, spawn_inlookup, CommonRes,
};
use mysql::prelude::Queryable;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DB: &str = "inl_bench_door";

fn free_port() -> CommonRes<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A throwaway Dovecot (scripts/dovecot.sh), stopped when dropped.
struct Dovecot {
    dir: PathBuf,
    port: u16,
}

impl Dovecot {
    fn start(dir: &Path, reuse: bool) -> CommonRes<Dovecot> {
        let mut cmd = Command::new(root().join("scripts/dovecot.sh"));
        cmd.arg("start").arg(dir);
        if reuse {
            cmd.env("DOVECOT_REUSE", "1");
        }
        let out = cmd.output()?;
        if !out.status.success() {
            return Err(
                format!("dovecot.sh start: {}", String::from_utf8_lossy(&out.stderr)).into()
            );
        }
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        let port = line.split_whitespace().nth(1).and_then(|p| p.parse().ok()).ok_or("port")?;
        let d = Dovecot { dir: dir.to_path_buf(), port };
        d.seed()?;
        Ok(d)
    }

    /// 19 more messages in alice's INBOX (20 in all), appended over IMAP.
    fn seed(&self) -> CommonRes<()> {
        let mut c = Imap::connect(self.port)?;
        c.cmd("s0", "LOGIN alice secret")?;
        for i in 1..20 {
            let msg = format!(
                "From: Bob <bob@example.com>\r\nTo: Alice <alice@example.com>\r\nSubject: bench message {i}\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\nMessage-ID: <bench-{i}@example.com>\r\n\r\nBody {i}.\r\n"
            );
            c.send(&format!("s{i} APPEND INBOX {{{}+}}\r\n{msg}\r\n", msg.len()))?;
            c.until(&format!("s{i}"))?;
        }
        c.cmd("s99", "LOGOUT")?;
        Ok(())
    }

    fn logins(&self) -> usize {
        std::fs::read_to_string(self.dir.join("dovecot.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("Login: user=<alice>"))
            .count()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = Command::new(root().join("scripts/dovecot.sh")).arg("stop").arg(&self.dir).output();
    }
}

/// A minimal IMAP client: lines, tagged completions.
struct Imap {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Imap {
    fn connect(port: u16) -> CommonRes<Imap> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut c = Imap { r: BufReader::new(s.try_clone()?), w: s };
        let mut greeting = String::new();
        c.r.read_line(&mut greeting)?;
        if !greeting.starts_with("* OK") {
            return Err(format!("greeting: {greeting:?}").into());
        }
        Ok(c)
    }
    fn send(&mut self, s: &str) -> CommonRes<()> {
        self.w.write_all(s.as_bytes())?;
        Ok(())
    }
    /// Reads to the completion of `tag`; an error unless it is OK.
    fn until(&mut self, tag: &str) -> CommonRes<()> {
        let want = format!("{tag} ");
        let mut line = String::new();
        loop {
            line.clear();
            if self.r.read_line(&mut line)? == 0 {
                return Err(format!("closed before {tag}").into());
            }
            if let Some(rest) = line.strip_prefix(&want) {
                return if rest.starts_with("OK") { Ok(()) } else { Err(line.clone().into()) };
            }
        }
    }
    fn cmd(&mut self, tag: &str, c: &str) -> CommonRes<()> {
        self.send(&format!("{tag} {c}\r\n"))?;
        self.until(tag)
    }
}

/// One page view on a new connection; its time.
fn page_view(port: u16) -> CommonRes<Duration> {
    let t = Instant::now();
    let mut c = Imap::connect(port)?;
    c.cmd("a1", "LOGIN alice secret")?;
    c.cmd("a2", "SELECT INBOX")?;
    c.cmd("a3", "FETCH 1:20 (FLAGS ENVELOPE)")?;
    c.cmd("a4", "LOGOUT")?;
    Ok(t.elapsed())
}

/// Debian's imapproxy in the foreground, in front of `server`, on `port`.
fn imapproxy(dir: &Path, server: u16, port: u16) -> CommonRes<Child> {
    let conf = dir.join("imapproxy.conf");
    let user = if is_root() { "nobody" } else { "" };
    let mut text = format!(
        "server_hostname 127.0.0.1\nserver_port {server}\nlisten_address 127.0.0.1\nlisten_port {port}\n\
         connect_retries 10\nconnect_delay 5\ncache_size 3072\ncache_expiration_time 300\n\
         stat_filename {}\nprotocol_log_filename {}\nsyslog_facility LOG_MAIL\n\
         send_tcp_keepalives no\nenable_select_cache no\nforeground_mode yes\nforce_tls no\n\
         enable_admin_commands no\n",
        dir.join("pimpstats").display(),
        dir.join("protocol.log").display()
    );
    if !user.is_empty() {
        text.push_str("proc_username nobody\nproc_groupname nogroup\n");
    }
    std::fs::write(&conf, text)?;
    let child = Command::new("/usr/sbin/imapproxyd")
        .arg("-f")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("imapproxy.err"))?)
        .spawn()
        .map_err(|e| format!("imapproxyd (scripts/deps.sh imapproxy): {e}"))?;
    Ok(child)
}

/// Waits until something accepts on the port.
fn wait_port(port: u16, what: &str) -> CommonRes<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("{what} never listened on {port}").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

struct Case {
    label: &'static str,
    port: u16,
    dovecot: Dovecot,
    times: Vec<f64>,
    errors: usize,
    logins: usize,
}

fn main() -> CommonRes<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let mysql = arg(&args, "mysql").ok_or("--mysql HOST:PORT is required")?;
    let (host, port) = mysql.rsplit_once(':').ok_or("--mysql HOST:PORT")?;
    let port: u16 = port.parse()?;
    let rounds: usize = arg(&args, "rounds").unwrap_or("300").parse()?;
    let out = arg(&args, "out").map_or_else(|| root().join("docs/bench"), PathBuf::from);
    let bin = release_inlookup()?;
    let base = std::env::temp_dir().join(format!("inl-door-bench-{}", std::process::id()));
    std::fs::create_dir_all(&base)?;
    let mut admin = admin_conn(host, port)?;
    admin.query_drop(format!("DROP DATABASE IF EXISTS {DB}"))?;
    admin.query_drop(format!("CREATE DATABASE {DB}"))?;
    admin.query_drop(format!("USE {DB}"))?;
    admin.query_drop(std::fs::read_to_string(root().join("sql/schema.sql"))?)?;
    let mut children: Vec<Child> = Vec::new();
    let result = (|| -> CommonRes<String> {
        eprintln!("door bench: starting four Dovecots, inlookup and imapproxy");
        let door_dv = Dovecot::start(&base.join("dv-door"), false)?;
        let fork_dv = Dovecot::start(&base.join("dv-fork"), false)?;
        let reuse_dv = Dovecot::start(&base.join("dv-reuse"), true)?;
        let proxy_dv = Dovecot::start(&base.join("dv-proxy"), false)?;
        let door_port = free_port()?;
        let spawned = spawn_inlookup(
            &bin,
            &base.join("inlookup"),
            (host, port, DB),
            &[
                ("IMAP_HOST", "127.0.0.1".to_string()),
                ("IMAP_PORT", door_dv.port.to_string()),
                ("IMAP_LISTEN", format!("127.0.0.1:{door_port}")),
            ],
        )?;
        children.push(spawned.child);
        wait_port(door_port, "inlookup's door")?;
        let proxy_port = free_port()?;
        let proxy_dir = base.join("imapproxy");
        std::fs::create_dir_all(&proxy_dir)?;
        children.push(imapproxy(&proxy_dir, proxy_dv.port, proxy_port)?);
        wait_port(proxy_port, "imapproxy")?;
        let (fork_port, reuse_port) = (fork_dv.port, reuse_dv.port);
        let mut cases = vec![
            Case {
                label: "door (inlookup, IMAP_LISTEN)",
                port: door_port,
                dovecot: door_dv,
                times: vec![],
                errors: 0,
                logins: 0,
            },
            Case {
                label: "Dovecot, forking (Debian's default)",
                port: fork_port,
                dovecot: fork_dv,
                times: vec![],
                errors: 0,
                logins: 0,
            },
            Case {
                label: "Dovecot, process-reusing (service_count=0)",
                port: reuse_port,
                dovecot: reuse_dv,
                times: vec![],
                errors: 0,
                logins: 0,
            },
            Case {
                label: "imapproxy (Debian's, cache on)",
                port: proxy_port,
                dovecot: proxy_dv,
                times: vec![],
                errors: 0,
                logins: 0,
            },
        ];
        // Warm-up, not measured: processes forked, caches filled, the pool's connection made.
        for c in &cases {
            for _ in 0..5 {
                page_view(c.port)?;
            }
        }
        // The floor: the page's commands alone on a connection already open and logged in
        // (the door's own reset, UNSELECT, included), on the door's Dovecot, before its
        // logins are counted.
        let mut floor = Vec::with_capacity(rounds);
        let mut open = Imap::connect(cases[0].dovecot.port)?;
        open.cmd("f0", "LOGIN alice secret")?;
        for _ in 0..rounds {
            let t = Instant::now();
            open.cmd("f1", "SELECT INBOX")?;
            open.cmd("f2", "FETCH 1:20 (FLAGS ENVELOPE)")?;
            open.cmd("f3", "UNSELECT")?;
            floor.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        open.cmd("f4", "LOGOUT")?;
        floor.sort_by(f64::total_cmp);
        let floor_mean = floor.iter().sum::<f64>() / floor.len().max(1) as f64;
        let before: Vec<usize> = cases.iter().map(|c| c.dovecot.logins()).collect();
        for r in 0..rounds {
            for k in 0..cases.len() {
                let i = (k + r) % cases.len();
                match page_view(cases[i].port) {
                    Ok(t) => cases[i].times.push(t.as_secs_f64() * 1000.0),
                    Err(e) => {
                        cases[i].errors += 1;
                        eprintln!("door bench: {}: {e}", cases[i].label);
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        for (i, c) in cases.iter_mut().enumerate() {
            c.logins = c.dovecot.logins() - before[i];
            c.times.sort_by(f64::total_cmp);
        }
        let mean = |c: &Case| c.times.iter().sum::<f64>() / c.times.len().max(1) as f64;
        let door_mean = mean(&cases[0]);
        let door_p50 = pct(&cases[0].times, 0.5);
        let mut md =
            String::from("# A webmail page view: the IMAP front door, Dovecot and imapproxy\n\n");
        md.push_str(&format!(
            "`scripts/bench.sh --only door` ({}). One page view: a new TCP connection, `LOGIN`, \
             `SELECT INBOX`, `FETCH 1:20 (FLAGS ENVELOPE)`, `LOGOUT`, as a stateless webmail does \
             per page; one client, {rounds} page views per case after 5 unmeasured ones, the \
             order of the cases rotating every round. Each case has a Dovecot 2.3 of its own \
             (scripts/dovecot.sh, 20 messages in the INBOX), so its log counts that case's \
             logins (`Login: user=<alice>` lines during the measured page views). The door and \
             imapproxy stand in front of a forking Dovecot. Load average at the end: {} \
             (another build or test on the machine slows every case alike; the ratios are \
             what counts).\n\n",
            cmd("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        ));
        md.push_str(
            "| case | mean ms | p50 ms | p90 ms | p99 ms | page views/s | mean / door's | p50 / door's | Dovecot logins | errors |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        );
        for c in &cases {
            let m = mean(c);
            md.push_str(&format!(
                "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {:.1}x | {:.1}x | {} | {} |\n",
                c.label,
                m,
                pct(&c.times, 0.5),
                pct(&c.times, 0.9),
                pct(&c.times, 0.99),
                1000.0 / m.max(1e-9),
                m / door_mean.max(1e-9),
                pct(&c.times, 0.5) / door_p50.max(1e-9),
                c.logins,
                c.errors
            ));
        }
        md.push_str(&format!(
            "| floor: `SELECT`, `FETCH 1:20`, `UNSELECT` alone on an open, logged-in connection (the door's forking Dovecot) | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {:.1}x | {:.1}x | 0 | 0 |\n",
            floor_mean,
            pct(&floor, 0.5),
            pct(&floor, 0.9),
            pct(&floor, 0.99),
            1000.0 / floor_mean.max(1e-9),
            floor_mean / door_mean.max(1e-9),
            pct(&floor, 0.5) / door_p50.max(1e-9),
        ));
        md.push_str(
            "\nGoal (issue 12): the door at least 10x faster than straight to the forking \
             Dovecot and than imapproxy, 3x faster than the process-reusing Dovecot. \
             \"mean / door's\" and \"p50 / door's\" say how many times longer a page view takes than \
             through the door (the p50 one is less moved by a busy machine's stalls). \
             The floor is what Dovecot itself spends on the page's commands with no connect \
             and no login: no relay can be faster than it, so a third of the process-reusing \
             Dovecot's time is out of reach whenever that third is below the floor.\n",
        );
        Ok(md)
    })();
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    let _ = admin.query_drop(format!("DROP DATABASE IF EXISTS {DB}"));
    let _ = std::fs::remove_dir_all(&base);
    let md = result?;
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("door.md"), &md)?;
    println!("{md}");
    eprintln!("door bench: wrote {}", out.join("door.md").display());
    Ok(())
}
