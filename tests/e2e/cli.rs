//! inquerytest end to end: every kind against the real daemon, its exit codes, --json,
//! ping/stats/flush, --direct, and the private server for a FIFO that does not exist.

use crate::harness::{bin, entries, Daemon, Opts, TempDir, TestDb};
use inlookup_core::admin::{PingReply, StatsReport};
use inquery::{Answer, Lookup, QueryKind};
use std::path::Path;
use std::process::{Command, Output};

/// Runs inquerytest as an administrator would, with only the variables given.
fn inquerytest(d: &Daemon, args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(bin("inquerytest"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FIFOTMPDIR", &d.tmp)
        .env("CONTROLDIR", &d.control)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(args)
        .output()
        .expect("run inquerytest")
}

/// inquerytest asking this daemon's FIFO with `-i`.
fn ask(d: &Daemon, args: &[&str]) -> Output {
    let fifo = d.fifos[0].to_string_lossy().into_owned();
    let mut all = vec!["-i", fifo.as_str()];
    all.extend_from_slice(args);
    inquerytest(d, &all, &[])
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit code and stdout; stderr shown when the code is not the one wanted.
fn expect(o: &Output, code: i32) -> String {
    assert_eq!(o.status.code(), Some(code), "stdout:\n{}\nstderr:\n{}", out(o), err(o));
    out(o)
}

/// An error is one line on stderr, prefixed, with no panic or backtrace.
fn one_error_line(o: &Output) -> String {
    let e = err(o);
    assert_eq!(e.lines().count(), 1, "want one line: {e:?}");
    assert!(e.starts_with("inquerytest: "), "{e}");
    assert!(!e.contains("panicked") && !e.contains("backtrace"), "{e}");
    e
}

#[test]
fn every_kind_prints_its_answer_with_indimails_exit_codes() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    let cases: [(&[&str], i32, &str); 9] = [
        (
            &["-q", "1", "testuser@example.com"],
            0,
            "testuser@example.com: active, all services enabled\n",
        ),
        (
            &["-q", "user", "nobody@example.com"],
            0,
            "nobody@example.com: absent on this domain (#5.1.1)\n",
        ),
        (
            &["-q", "1", "olduser@example.com"],
            0,
            "olduser@example.com: inactive on this domain (#5.2.1)\n",
        ),
        (
            &["-q", "2", "alice@example.com", "192.0.2.10"],
            0,
            "alice@example.com from 192.0.2.10: authenticated, may relay\n",
        ),
        (
            &["-q", "2", "alice@example.com", "192.0.2.99"],
            0,
            "alice@example.com from 192.0.2.99: not authenticated\n",
        ),
        (
            &["-q", "4", "testuser@example.com"],
            0,
            "testuser@example.com: SMTPROUTE is example.com:127.0.0.1:25\n",
        ),
        (
            &["-q", "5", "sales@example.com"],
            0,
            "Alias list for sales@example.com:\n  &alice@example.com\n  &testuser@example.com\n",
        ),
        (
            &["-q", "7", "example.org"],
            0,
            "example.org: real domain is example.com (alias domain)\n",
        ),
        (&["-q", "7", "example.net"], 0, "example.net: real domain is example.net\n"),
    ];
    for (args, code, want) in cases {
        assert_eq!(expect(&ask(&d, args), code), want, "{args:?}");
    }

    let pwd = expect(&ask(&d, &["-q", "3", "olduser@example.com"]), 0);
    for line in [
        "pw_name   : olduser\n",
        "pw_passwd : $5$demo$oldhash\n",
        "pw_dir    : /home/mail/example.com/olduser\n",
        "table     : inactive (indibak)\n",
    ] {
        assert!(pwd.contains(line), "{line:?} in\n{pwd}");
    }
    let limits = expect(&ask(&d, &["-q", "6", "example.com"]), 0);
    for line in [
        "Limits for example.com (vlimits row):",
        "POP accounts          : 100",
        "Aliases               : 50",
        "Services disabled     : IMAP",
        "domain quota        : deny create, deny modify, allow delete",
    ] {
        assert!(limits.contains(line), "{line:?} in\n{limits}");
    }

    // Not found: PWD, HOST and LIMIT exit 1 as IndiMail's NULL; no aliases is an answer.
    for (args, note) in [
        (&["-q", "3", "nobody@example.com"][..], "inquerytest: nobody@example.com: no such user\n"),
        (
            &["-q", "4", "nobody@example.com"],
            "inquerytest: nobody@example.com: no mail store (no such user)\n",
        ),
        (&["-q", "6", "example.net"], "inquerytest: example.net: no limits record\n"),
    ] {
        let o = ask(&d, args);
        assert_eq!(expect(&o, 1), "", "{args:?}");
        assert_eq!(err(&o), note);
    }
    let o = ask(&d, &["-q", "5", "alice@example.com"]);
    assert_eq!(
        (expect(&o, 0), err(&o)),
        (String::new(), "inquerytest: alice@example.com: no aliases\n".into())
    );
    assert!(entries(&d.tmp).is_empty(), "no reply FIFO left");
}

#[test]
fn json_gives_the_same_typed_answer_as_the_rust_client() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    let c = d.client();
    for (kind, email, ip) in [
        (QueryKind::User, "full@example.com", ""),
        (QueryKind::Relay, "alice@example.com", "192.0.2.10"),
        (QueryKind::Pwd, "alice@example.com", ""),
        (QueryKind::Pwd, "nobody@example.com", ""),
        (QueryKind::Host, "alice@example.com", ""),
        (QueryKind::Alias, "sales@example.com", ""),
        (QueryKind::Limit, "example.com", ""),
        (QueryKind::Domain, "example.org", ""),
    ] {
        let mut args = vec!["--json", "-q", kind.name(), email];
        if !ip.is_empty() {
            args.push(ip);
        }
        let o = ask(&d, &args);
        let v: serde_json::Value =
            serde_json::from_str(&out(&o)).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", out(&o)));
        assert_eq!((v["query"].as_str(), v["email"].as_str()), (Some(kind.name()), Some(email)));
        let answer: Answer = serde_json::from_value(v["answer"].clone()).unwrap();
        assert_eq!(answer, c.ask(kind, email, ip).unwrap(), "{args:?}");
        assert_eq!(
            o.status.code(),
            Some(if answer.is_negative() && kind == QueryKind::Pwd { 1 } else { 0 })
        );
    }
}

#[test]
fn ping_stats_and_flush_talk_to_the_daemon() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    let ping = expect(&ask(&d, &["ping"]), 0);
    assert!(
        ping.starts_with("inlookup ") && ping.contains(&format!("(pid {})", d.pid())),
        "{ping}"
    );
    let p: PingReply = serde_json::from_str(&expect(&ask(&d, &["--json", "ping"]), 0)).unwrap();
    assert_eq!(p.pid as i32, d.pid());

    expect(&ask(&d, &["-q", "3", "alice@example.com"]), 0);
    expect(&ask(&d, &["-q", "3", "alice@example.com"]), 0);
    let s: StatsReport = serde_json::from_str(&expect(&ask(&d, &["stats", "--json"]), 0)).unwrap();
    assert_eq!((s.kinds["pwd"].requests, s.kinds["pwd"].hits), (2, 1));
    let table = expect(&ask(&d, &["stats"]), 0);
    assert!(
        table.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
            == ["pwd", "2", "1", "0", "1", "0", "0", "0", "0"]),
        "{table}"
    );

    let f = expect(&ask(&d, &["flush", "pwd", "alice@example.com"]), 0);
    assert_eq!(f, "flushed 1 entry (pwd for alice@example.com)\n");
    expect(&ask(&d, &["-q", "1", "testuser@example.com"]), 0);
    assert_eq!(expect(&ask(&d, &["--json", "flush"]), 0), "{\"flushed\":1}\n");
    assert_eq!(expect(&ask(&d, &["flush", "all"]), 0), "flushed 0 entries (the cache)\n");
    let s = d.client().stats().unwrap();
    assert_eq!(s.cache_entries, 0);
}

#[test]
fn errors_are_one_line_with_the_right_exit_code() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    // Usage: 100.
    for args in [
        &["-q", "1"][..],
        &["-q", "8", "a@x"],
        &["-q", "2", "alice@example.com"],
        &["--bogus"],
        &["-q", "1", "stats"],
    ] {
        let o = ask(&d, args);
        assert_eq!(o.status.code(), Some(100), "{args:?}: {}", err(&o));
        one_error_line(&o);
    }
    // A FIFO nobody reads: the query failed, 1.
    let t = TempDir::new("cli-err");
    let dead = t.join("dead-fifo");
    nix::unistd::mkfifo(&dead, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let o = inquerytest(&d, &["-i", &dead.to_string_lossy(), "-q", "1", "a@x"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(one_error_line(&o).contains("inlookup is not running"), "{}", err(&o));
    // A daemon that does not answer within -t: 1.
    d.signal(nix::sys::signal::Signal::SIGSTOP);
    let o = ask(&d, &["-t", "1", "-q", "3", "alice@example.com"]);
    d.signal(nix::sys::signal::Signal::SIGCONT);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        one_error_line(&o),
        "inquerytest: alice@example.com: timed out after 1000 ms waiting for the reply\n"
    );
    // No FIFOTMPDIR to make a reply FIFO in: a system error, 111.
    let fifo = d.fifos[0].to_string_lossy().into_owned();
    let env = vec![("FIFOTMPDIR".to_string(), t.join("missing").to_string_lossy().into_owned())];
    let o = inquerytest(&d, &["-i", &fifo, "-q", "1", "testuser@example.com"], &env);
    assert_eq!(o.status.code(), Some(111), "{}", err(&o));
    assert!(one_error_line(&o).contains("mkfifo"));
    assert!(entries(&d.tmp).is_empty());
}

#[test]
fn direct_mode_prints_what_the_daemon_prints() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    for args in [
        &["-q", "3", "alice@example.com"][..],
        &["-q", "1", "sales@example.com"],
        &["--json", "-q", "6", "example.com"],
        &["-q", "5", "sales@example.com"],
        &["-q", "4", "nobody@example.com"],
    ] {
        let via_daemon = ask(&d, args);
        let mut direct_args = vec!["--direct"];
        direct_args.extend_from_slice(args);
        let direct = inquerytest(&d, &direct_args, &db.mysql_env());
        assert_eq!(
            (out(&direct), direct.status.code()),
            (out(&via_daemon), via_daemon.status.code()),
            "{args:?}: {}",
            err(&direct)
        );
    }
    // MySQL unreachable in direct mode: the query failed, 1, one line.
    let env = vec![
        ("MYSQL_HOST".to_string(), "127.0.0.1".to_string()),
        ("MYSQL_VPORT".to_string(), "1".to_string()),
    ];
    let o = inquerytest(&d, &["--direct", "-q", "1", "a@example.com"], &env);
    assert_eq!(o.status.code(), Some(1));
    assert!(one_error_line(&o).contains("mysql"), "{}", err(&o));
}

#[test]
fn a_missing_fifo_gets_a_private_server_for_one_query() {
    let db = TestDb::new();
    // The harness daemon only lends its FIFOTMPDIR and CONTROLDIR to the helper.
    let d = Daemon::start(&db, Opts::default());
    let t = TempDir::new("cli-private");
    let fifo = t.join("private/infifo");
    let o = inquerytest(
        &d,
        &["-v", "-q", "3", "-i", &fifo.to_string_lossy(), "alice@example.com"],
        &db.mysql_env(),
    );
    let stdout = expect(&o, 0);
    assert!(stdout.contains("pw_name   : alice\n"), "{stdout}");
    let stderr = err(&o);
    let pid: i32 = stderr
        .split("started a private inlookup (pid ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {stderr}"));
    let tmp =
        stderr.split("reply FIFO in ").nth(1).and_then(|s| s.split(',').next()).expect("reply dir");
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "the private inlookup {pid} was stopped");
    assert!(!fifo.exists(), "its FIFO was removed");
    assert!(!Path::new(tmp).exists(), "its reply directory {tmp} was removed");
    if crate::harness::is_root() {
        assert!(stderr.contains("running as nobody"), "as root, it ran as nobody:\n{stderr}");
    }

    // A private server that cannot start: a system error, 111, with its reason.
    let o = inquerytest(
        &d,
        &["-q", "1", "-i", "/proc/no/such/dir/infifo", "a@example.com"],
        &db.mysql_env(),
    );
    assert_eq!(o.status.code(), Some(111), "{}", err(&o));
    assert!(one_error_line(&o).contains("exited at start"), "{}", err(&o));
}

#[test]
fn help_shows_every_option_and_the_man_page_renders() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    let help = expect(&inquerytest(&d, &["--help"], &[]), 0);
    for opt in [
        "-v",
        "-q",
        "-i",
        "--json",
        "--direct",
        "--timeout",
        "ping",
        "stats",
        "flush",
        "Exit codes",
    ] {
        assert!(help.contains(opt), "{opt} missing from --help:\n{help}");
    }
    let man = expect(&inquerytest(&d, &["--generate-man"], &[]), 0);
    assert!(man.starts_with(".ie") && man.contains(".TH inquerytest 1"), "{man}");
    // The README shows both help texts verbatim: they must be the program's current ones.
    let readme = std::fs::read_to_string(crate::harness::root().join("README.md")).unwrap();
    let imap_help = expect(&inquerytest(&d, &["imap", "--help"], &[]), 0);
    for (what, text) in [("--help", &help), ("imap --help", &imap_help)] {
        assert!(
            readme.contains(text.trim_end()),
            "README.md does not show the current `inquerytest {what}`:\n{text}"
        );
    }
}
