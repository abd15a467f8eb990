//! What an administrator ships: the service directory installed by
//! `scripts/install-service.sh` and run by runit's `runsv` (start, a query, `sv hup`,
//! `sv down`, `sv up`, a crash restarted, logs through the log service), and the man pages
//! (`man -l` renders each without a warning; the generated ones match the binaries).

// The helpers below are test code too: a failed setup step is a failed test.
#![allow(clippy::unwrap_used)]

use crate::harness::{bin, is_root, root, TestDb};
use inquery::{Client, Lookup, UserStatus};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Generous: runsv restarts a service at most once a second, and the machine is shared.
const WAIT: Duration = Duration::from_secs(30);

/// A fresh directory of the test's own, traversable by the unprivileged service user.
fn scratch(what: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("inl-{what}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// The user the service runs as: nobody when the test is root (as CI is), else ourselves.
fn service_user() -> String {
    if is_root() {
        return "nobody".into();
    }
    nix::unistd::User::from_uid(nix::unistd::getuid()).unwrap().expect("a user name").name
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/deps.sh installs the tools)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool, context: impl Fn() -> String) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}\n{}", context());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True while `pid` runs. A killed process stays a zombie (state Z) until reaped, and
/// `kill(pid, 0)` still succeeds on it: read its state instead.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
            !matches!(state, Some("Z" | "X" | "x") | None)
        }
        Err(_) => false,
    }
}

/// The service installed in a directory of its own, and the `runsv` supervising it.
struct Supervised {
    base: PathBuf,
    /// The service directory (what `sv` is given).
    dir: PathBuf,
    /// The request FIFO.
    fifo: PathBuf,
    /// FIFOTMPDIR.
    tmp: PathBuf,
    runsv: Option<Child>,
}

impl Supervised {
    /// Installs the service with MySQL pointing at `db`, and a test-only `finish` script
    /// that records how each run ended (runsv passes the exit code and the wait status).
    fn install(db: &TestDb) -> Supervised {
        // Build first: a failed build must not leave a directory behind.
        let bindir = bin("inlookup").parent().unwrap().to_path_buf();
        let base = scratch("svc");
        let (dir, fifo_dir, tmp, control) =
            (base.join("inlookup"), base.join("fifo"), base.join("replies"), base.join("control"));
        // From here on, dropping `s` removes `base`, whatever fails.
        let s = Supervised {
            fifo: fifo_dir.join("infifo"),
            base: base.clone(),
            dir: dir.clone(),
            tmp: tmp.clone(),
            runsv: None,
        };
        std::fs::create_dir_all(&control).unwrap();
        std::fs::write(control.join("timeoutread"), "2\n").unwrap();
        std::fs::write(control.join("timeoutwrite"), "2\n").unwrap();
        let mut cmd = Command::new(root().join("scripts/install-service.sh"));
        cmd.args(["--user", &service_user()])
            .arg("--fifo-dir")
            .arg(&fifo_dir)
            .arg("--tmp-dir")
            .arg(&tmp)
            .arg("--controldir")
            .arg(&control)
            .arg("--bindir")
            .arg(&bindir)
            .args(["--set", &format!("MYSQL_HOST={}", db.host)])
            .args(["--set", &format!("MYSQL_VPORT={}", db.port)])
            .args(["--set", "MYSQL_USER=root"])
            // An empty line: the password is set, to "" (an empty file would unset it).
            .args(["--set", "MYSQL_PASSWD="])
            .args(["--set", &format!("MYSQL_DATABASE={}", db.name)])
            .args(["--set", "THREAD_COUNT=2"])
            // The template's door port is fixed; tests run side by side.
            .args(["--unset", "IMAP_LISTEN"])
            .arg(&dir);
        run(&mut cmd);
        let finish =
            format!("#!/bin/sh\necho \"$1 $2\" >> {}\n", base.join("finish.log").display());
        std::fs::write(dir.join("finish"), finish).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("finish"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        s
    }

    fn start(&mut self) {
        let out = std::fs::File::create(self.base.join("runsv.out")).unwrap();
        let child = Command::new("runsv")
            .arg(&self.dir)
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("runsv (Debian's runit package: scripts/deps.sh runit)");
        self.runsv = Some(child);
    }

    fn sv(&self, command: &str) -> String {
        let out = run(Command::new("sv").args(["-w", "30", "-v", command]).arg(&self.dir));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The pid runsv reports for the service (0 when down).
    fn pid(&self) -> i32 {
        std::fs::read_to_string(self.dir.join("supervise/pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0)
    }

    fn client(&self) -> Client {
        let mut c = Client::for_fifo(&self.fifo);
        c.tmpdir = self.tmp.clone();
        c.fifo_mode = 0o660;
        c.timeouts.read = Duration::from_secs(2);
        c.timeouts.write = Duration::from_secs(2);
        c
    }

    /// Waits for a running inlookup that answers; returns its pid.
    fn wait_serving(&self) -> i32 {
        wait_until(
            "inlookup serving under runsv",
            || self.fifo.exists() && alive(self.pid()) && self.client().ping().is_ok(),
            || self.context(),
        );
        self.pid()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log/main/current")).unwrap_or_default()
    }

    fn finishes(&self) -> Vec<String> {
        std::fs::read_to_string(self.base.join("finish.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn context(&self) -> String {
        format!(
            "--- log/main/current ---\n{}--- runsv ---\n{}--- finish ---\n{:?}",
            self.log(),
            std::fs::read_to_string(self.base.join("runsv.out")).unwrap_or_default(),
            self.finishes()
        )
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.context());
        }
        if let Some(mut child) = self.runsv.take() {
            // `sv exit`: runsv stops the service, then the log service, then itself.
            let _ = Command::new("sv").arg("exit").arg(&self.dir).output();
            let deadline = Instant::now() + WAIT;
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let pid = self.pid();
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                let _ = child.wait();
                if pid > 0 && alive(pid) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

#[test]
fn runsv_runs_the_service_through_hup_down_up_and_a_crash() {
    let db = TestDb::new();
    let mut s = Supervised::install(&db);
    s.start();

    // Start: the FIFO appears and queries are answered, by the unprivileged user.
    let pid = s.wait_serving();
    let c = s.client();
    assert_eq!(c.user_status("testuser@example.com").unwrap(), UserStatus::Active);
    assert!(c.passwd("testuser@example.com").unwrap().is_some());
    assert!(c.stats().unwrap().cache_entries >= 2);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap().to_string();
    assert!(!uid_line.split_whitespace().skip(1).any(|u| u == "0"), "runs as root: {uid_line}");
    let tmp_mode = std::fs::metadata(&s.tmp).map(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o7777
    });
    assert_eq!(tmp_mode.unwrap(), 0o2770, "FIFOTMPDIR mode");

    // A log line came through the log service (multilog or svlogd) into log/main.
    wait_until(
        "the start line in log/main/current",
        || s.log().contains("inlookup: info: started: serving"),
        || s.context(),
    );

    // sv hup: the same process flushes its cache.
    s.sv("hup");
    wait_until(
        "STATS shows an empty cache after sv hup",
        || c.stats().is_ok_and(|st| st.cache_entries == 0),
        || s.context(),
    );
    assert_eq!(s.pid(), pid, "HUP must not restart the daemon");
    wait_until("the HUP line in the log", || s.log().contains("HUP: flushed"), || s.context());
    assert_eq!(c.user_status("testuser@example.com").unwrap(), UserStatus::Active);

    // sv down: TERM; inlookup removes its FIFO and exits 0 (runsv hands finish "0 0").
    let out = s.sv("down");
    assert!(out.starts_with("ok: down"), "{out}");
    assert!(!s.fifo.exists(), "the FIFO is left behind after sv down");
    assert!(!alive(pid));
    wait_until("finish records the exit", || !s.finishes().is_empty(), || s.context());
    assert_eq!(s.finishes(), vec!["0 0"], "exit code and wait status after sv down");
    assert!(matches!(c.ping(), Err(inquery::Error::NotRunning(_))), "a client sees no daemon");

    // sv up: a new process serves again.
    let out = s.sv("up");
    assert!(out.starts_with("ok: run"), "{out}");
    let pid2 = s.wait_serving();
    assert_ne!(pid2, pid);
    assert_eq!(c.user_status("olduser@example.com").unwrap(), UserStatus::Inactive);

    // A crash (SIGKILL leaves the FIFO behind): runsv starts a new process, which reuses
    // the FIFO and answers.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid2), nix::sys::signal::Signal::SIGKILL)
        .unwrap();
    wait_until("the killed inlookup is gone", || !alive(pid2), || s.context());
    wait_until("runsv restarts inlookup", || s.pid() != pid2 && alive(s.pid()), || s.context());
    let pid3 = s.wait_serving();
    assert_ne!(pid3, pid2);
    assert_eq!(c.user_status("testuser@example.com").unwrap(), UserStatus::Active);
    assert_eq!(s.finishes(), vec!["0 0", "-1 9"], "finish after the SIGKILL");
    wait_until(
        "three start lines in the log",
        || s.log().matches("inlookup: info: started: serving").count() == 3,
        || s.context(),
    );
}

#[test]
fn install_is_idempotent_and_keeps_the_operators_edits() {
    let base = scratch("install");
    let dir = base.join("svc");
    let install = |extra: &[&str]| {
        run(Command::new(root().join("scripts/install-service.sh"))
            .args(["--user", &service_user(), "--set", "MYSQL_PASSWD=secret"])
            .args(extra)
            .arg(&dir));
    };
    install(&[]);
    let vars = dir.join("variables");
    let read = |name: &str| std::fs::read(vars.join(name)).unwrap();
    // Every variable of the template is there, at its default; the password is private.
    let template = root().join("service/inlookup/variables");
    for e in std::fs::read_dir(&template).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if !["INLOOKUP_USER", "MYSQL_PASSWD"].contains(&name.as_str()) {
            assert_eq!(read(&name), std::fs::read(template.join(&name)).unwrap(), "{name}");
        }
    }
    assert_eq!(read("MYSQL_PASSWD"), b"secret\n");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&vars.join("MYSQL_PASSWD")), 0o600);
    assert_eq!(mode(&dir.join("run")), 0o755);
    assert_eq!(mode(&dir.join("log/run")), 0o755);

    // An operator's edit survives a second install; options given again are applied again.
    std::fs::write(vars.join("CACHE_ENTRIES"), "500\n").unwrap();
    std::fs::remove_file(vars.join("MAX_STALE")).unwrap();
    install(&["--unset", "SERVE_STALE", "--set", "DEFAULT_DOMAIN="]);
    assert_eq!(read("CACHE_ENTRIES"), b"500\n");
    assert_eq!(read("MAX_STALE"), b"3600\n", "a missing variable comes back at its default");
    assert_eq!(read("SERVE_STALE"), b"", "--unset leaves an empty file");
    assert_eq!(read("DEFAULT_DOMAIN"), b"\n", "an empty value is an empty line");
    assert_eq!(read("MYSQL_PASSWD"), b"secret\n");
    let listing = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(listing(&vars), listing(&template), "no leftovers from the atomic writes");
    let _ = std::fs::remove_dir_all(&base);
}

/// The variables inlookup reads: each option's environment name, from the clap definitions
/// (through `--generate-man`) with its default, and the names the code reads directly
/// (`env_var("X")`, MysqlSettings' `get("X")`, LookupConfig's `set(&mut …, "X")`).
fn inlookup_variables() -> (Vec<(String, Option<String>)>, Vec<String>) {
    let out = run(Command::new(bin("inlookup")).arg("--generate-man"));
    let man = String::from_utf8(out.stdout).unwrap();
    let mut options = Vec::new();
    for block in man.split("\n.TP\n").skip(1) {
        let Some((_, rest)) = block.split_once("specified with the \\fB") else { continue };
        let name = rest.split("\\fR").next().unwrap().to_string();
        let head = block.lines().next().unwrap();
        let default =
            head.split_once("[default: ").map(|(_, d)| d.trim_end_matches(']').replace("\\-", "-"));
        options.push((name, default));
    }
    let mut direct = Vec::new();
    for dir in ["src", "inlookup/src"] {
        let mut stack = vec![root().join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                for line in text.lines() {
                    for pat in ["env_var(\"", "get(\"", ", \""] {
                        if pat == ", \"" && !line.contains("set(&mut") {
                            continue;
                        }
                        for (_, tail) in
                            line.match_indices(pat).map(|(i, _)| line.split_at(i + pat.len()))
                        {
                            let name: String = tail
                                .chars()
                                .take_while(|c| {
                                    c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_'
                                })
                                .collect();
                            if name.len() > 2
                                && tail[name.len()..].starts_with("\")")
                                && !direct.contains(&name)
                            {
                                direct.push(name);
                            }
                        }
                    }
                }
            }
        }
    }
    (options, direct)
}

#[test]
fn the_template_has_every_variable_at_its_default_and_documented() {
    let vars = root().join("service/inlookup/variables");
    let readme = std::fs::read_to_string(vars.join("README")).unwrap();
    let file = |name: &str| {
        std::fs::read_to_string(vars.join(name))
            .unwrap_or_else(|e| panic!("service/inlookup/variables/{name}: {e}"))
    };
    let documented = |name: &str| readme.lines().any(|l| l.split_whitespace().next() == Some(name));
    let (options, direct) = inlookup_variables();
    assert!(options.len() >= 16 && direct.len() >= 16, "{options:?} {direct:?}");
    // Where the service deliberately differs from inlookup's own default, and why.
    let service_defaults = [
        ("FIFOTMPDIR", "/run/indimail/inquery\n"), // private, mode 2770, as IndiMail's svctool
        ("INLOOKUP_USER", "inlookup\n"),           // required when started as root
        ("CONTROLDIR", "control\n"),               // the same as unset, said explicitly
        ("IMAP_LISTEN", "127.0.0.1:1144\n"),       // the IMAP front door on (not imapproxy's 1143)
    ];
    for (name, default) in &options {
        let want = match service_defaults.iter().find(|(n, _)| n == name) {
            Some((_, v)) => v.to_string(),
            None => default
                .as_ref()
                .filter(|d| !d.is_empty())
                .map(|d| format!("{d}\n"))
                .unwrap_or_default(),
        };
        assert_eq!(file(name), want, "variables/{name} (inlookup's default: {default:?})");
        assert!(documented(name), "variables/README does not document {name}");
    }
    for name in &direct {
        file(name);
        assert!(documented(name), "variables/README does not document {name}");
    }
}

/// Every page under docs/man.
fn man_pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root().join("docs/man"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| {
                e.len() == 1 && e.to_string_lossy().chars().all(|c| c.is_ascii_digit())
            })
        })
        .collect();
    pages.sort();
    pages
}

#[test]
fn man_pages_render_without_warnings() {
    let pages = man_pages();
    let names: Vec<String> =
        pages.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    for want in ["inlookup.8", "inquery.3", "inquerytest.1"] {
        assert!(names.iter().any(|n| n == want), "docs/man/{want} is missing: {names:?}");
    }
    for page in pages {
        let out = Command::new("man")
            .args(["-l", "--warnings"])
            .arg(&page)
            .env("MANWIDTH", "80")
            .stdin(Stdio::null())
            .output()
            .expect("man (Debian's man-db: scripts/deps.sh man)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {}\n{stderr}", page.display(), out.status);
        assert!(stderr.trim().is_empty(), "{} warns:\n{stderr}", page.display());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("NAME") && text.contains("SYNOPSIS"), "{}:\n{text}", page.display());
    }
}

#[test]
fn generated_man_pages_match_the_binaries() {
    let bindir = bin("inlookup").parent().unwrap().to_path_buf();
    let out = Command::new(root().join("scripts/gen-man.sh"))
        .arg("--check")
        .arg("--bindir")
        .arg(&bindir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docs/man is stale: run scripts/gen-man.sh\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
