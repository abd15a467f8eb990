//! Alias domains recorded the way IndiMail's `vaddaliasdomain` records them: the alias
//! domain's directory is a symlink to the real domain's, and both have an entry in qmail's
//! `users/cdb`; no `aliasdomain` row. Every kind answers for an address in the alias domain
//! as IndiMail's inlookup does, and a change of the files is seen without a restart.

use crate::harness::{Daemon, Opts, TempDir, TestDb};
use inquery::{Lookup, UserStatus};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A site's files: `users/cdb` and the domain directories.
struct Site {
    dir: TempDir,
}

impl Site {
    /// example.com is a real domain (a directory), example.net an alias of it (a symlink),
    /// gone.example a domain whose directory is missing.
    fn new() -> Site {
        let site = Site { dir: TempDir::new("alias-site") };
        std::fs::create_dir_all(site.users()).unwrap();
        std::fs::create_dir_all(site.domains().join("example.com")).unwrap();
        site.link("example.net", "example.com");
        site.assign(&["example.com", "example.net", "gone.example"]);
        site
    }

    fn users(&self) -> PathBuf {
        self.dir.join("users")
    }

    fn domains(&self) -> PathBuf {
        self.dir.join("domains")
    }

    fn link(&self, alias: &str, real: &str) {
        std::os::unix::fs::symlink(self.domains().join(real), self.domains().join(alias)).unwrap();
    }

    /// `users/assign` and its compiled `users/cdb`, as qmail-newu writes them: for each
    /// `+domain-:domain:uid:gid:dir:-::` line a `!domain-` key whose value is the user,
    /// uid, gid, directory, dash and extension fields, each ending in NUL; written to a
    /// temporary file and renamed over the old one.
    fn assign(&self, domains: &[&str]) {
        let mut text = String::new();
        let tmp = self.users().join("cdb.tmp");
        let mut cdb = cdb2::CDBMake::new(std::fs::File::create(&tmp).unwrap()).unwrap();
        for d in domains {
            let dir = self.domains().join(d);
            text.push_str(&format!("+{d}-:{d}:555:555:{}:-::\n", dir.display()));
            let value = format!("{d}\0555\0555\0{}\0-\0\0", dir.display());
            cdb.add(format!("!{d}-").as_bytes(), value.as_bytes()).unwrap();
        }
        text.push_str(".\n");
        cdb.finish().unwrap();
        std::fs::write(self.users().join("assign"), text).unwrap();
        std::fs::rename(tmp, self.users().join("cdb")).unwrap();
    }

    fn opts(&self) -> Opts {
        Opts::default().env("ASSIGNDIR", self.users().to_str().unwrap())
    }
}

/// Waits (past the daemon's once-a-second look at the files) until `check` holds.
fn eventually(what: &str, d: &Daemon, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(6);
    while !check() {
        assert!(Instant::now() < deadline, "{what} never held:\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_kind_answers_for_an_alias_domain_of_the_assign_cdb_as_indimail_does() {
    let db = TestDb::new();
    // No aliasdomain table at all: the files alone resolve example.net, and a lookup that
    // ran the aliasdomain SELECT would fail (-1).
    db.exec("RENAME TABLE aliasdomain TO aliasdomain_away");
    let site = Site::new();
    let d = Daemon::start(&db, site.opts());
    let c = d.client();
    // DOMAIN: the real domain.
    assert_eq!(c.raw(7, "example.net", "").unwrap(), (12, b"example.com\0".to_vec()));
    assert_eq!(c.real_domain("Example.NET").unwrap(), "example.com");
    // USER: the real domain's user, active.
    assert_eq!(c.user_status("alice@example.net").unwrap(), UserStatus::Active);
    assert_eq!(c.user_status("nobody@example.net").unwrap(), UserStatus::Absent);
    // PWD: the record, with the domain as asked.
    let (n, body) = c.raw(3, "alice@example.net", "").unwrap();
    let want = "PWSTRUCT=alice@example.net:{SCRAM-SHA-256}4096$c2FsdA==$c3RvcmVk$c2VydmVy,$5$demo$alicehash:1:0:Alice:/home/mail/example.com/alice:100000000:0\0";
    assert_eq!(String::from_utf8_lossy(&body), want);
    assert_eq!(n as usize, want.len());
    // HOST: the real domain's mail store, the domain as asked (findmdahost's reply).
    let (n, body) = c.raw(4, "alice@example.net", "").unwrap();
    assert_eq!((n, body.as_slice()), (24, &b"example.net:10.0.0.5:25\0"[..]));
    // ALIAS: the real domain's valias lines.
    assert_eq!(
        c.aliases("sales@example.net").unwrap(),
        vec!["&alice@example.com", "&testuser@example.com"]
    );
    assert_eq!(c.user_status("sales@example.net").unwrap(), UserStatus::Alias);
    // LIMIT: the real domain's vlimits row, for the bare domain and for a user.
    let real = c.limits("example.com").unwrap().expect("example.com has a row");
    assert_eq!(c.limits("example.net").unwrap(), Some(real));
    assert_eq!(c.limits("alice@example.net").unwrap(), Some(real));
    // RELAY: the relay row of user@real domain (IndiMail's RelayInLookup).
    assert!(c.relay_allowed("alice@example.net", "192.0.2.10").unwrap());
    assert!(!c.relay_allowed("alice@example.net", "192.0.2.11").unwrap());
    // The real domain itself, also in the cdb, answers as ever.
    assert_eq!(c.user_status("alice@example.com").unwrap(), UserStatus::Active);
    assert_eq!(c.raw(7, "example.com", "").unwrap(), (12, b"example.com\0".to_vec()));
    // A domain of the cdb whose directory is missing: not found, and DOMAIN echoes it.
    assert_eq!(c.user_status("alice@gone.example").unwrap(), UserStatus::Absent);
    let (_, body) = c.raw(3, "alice@gone.example", "").unwrap();
    assert_eq!(body, b"PWSTRUCT=No such user alice@gone.example\0");
    assert_eq!(c.host("alice@gone.example").unwrap(), None);
    assert_eq!(c.raw(6, "gone.example", "").unwrap(), (0, vec![]));
    assert!(c.aliases("sales@gone.example").unwrap().is_empty());
    assert!(!c.relay_allowed("alice@gone.example", "192.0.2.10").unwrap());
    assert_eq!(c.real_domain("gone.example").unwrap(), "gone.example");
    // And a domain the files do not know goes to aliasdomain, which is gone here: an error,
    // as it should be; nothing above asked it.
    assert!(c.user_status("alice@example.org").is_err());
    db.exec("RENAME TABLE aliasdomain_away TO aliasdomain");
    assert_eq!(c.user_status("alice@example.org").unwrap(), UserStatus::Active);
}

#[test]
fn a_removed_alias_is_seen_without_a_restart_and_a_hup_rereads_the_files() {
    let db = TestDb::new();
    let site = Site::new();
    std::fs::create_dir_all(site.domains().join("example.edu")).unwrap();
    let d = Daemon::start(&db, site.opts());
    let c = d.client();
    assert_eq!(c.real_domain("example.net").unwrap(), "example.com");
    assert_eq!(c.user_status("alice@example.net").unwrap(), UserStatus::Active);
    // vdeldomain's way: the symlink and the assign entry go. The answers above were cached;
    // the daemon sees the files change within about a second and forgets them.
    std::fs::remove_file(site.domains().join("example.net")).unwrap();
    site.assign(&["example.com", "example.edu"]);
    eventually("example.net echoed", &d, || c.real_domain("example.net").unwrap() == "example.net");
    assert_eq!(c.user_status("alice@example.net").unwrap(), UserStatus::Absent);
    assert!(d.log_text().contains("domain files changed: flushed"), "{}", d.log_text());
    // Added back, the same way: seen again.
    site.link("example.net", "example.com");
    site.assign(&["example.com", "example.edu", "example.net"]);
    eventually("example.net an alias again", &d, || {
        c.real_domain("example.net").unwrap() == "example.com"
    });
    // A change the once-a-second look cannot see (the symlink re-pointed, the directory's
    // mtime put back, the cdb untouched) is read on HUP.
    let domains = site.domains();
    let mtime = std::fs::metadata(&domains).unwrap().modified().unwrap();
    std::fs::remove_file(domains.join("example.net")).unwrap();
    site.link("example.net", "example.edu");
    set_mtime(&domains, mtime);
    std::thread::sleep(Duration::from_millis(1500));
    c.flush(None, None).unwrap();
    assert_eq!(c.real_domain("example.net").unwrap(), "example.com", "not re-read yet");
    d.signal(nix::sys::signal::Signal::SIGHUP);
    d.wait_log("HUP: flushed");
    eventually("example.net re-read on HUP", &d, || {
        c.real_domain("example.net").unwrap() == "example.edu"
    });
}

fn set_mtime(dir: &Path, t: std::time::SystemTime) {
    let f = std::fs::File::open(dir).unwrap();
    f.set_times(std::fs::FileTimes::new().set_modified(t)).unwrap();
}
