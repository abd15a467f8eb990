//! What inquerytest prints: one human-readable form per kind, or JSON.

use inlookup_core::admin::{PingReply, StatsReport};
use inlookup_core::{Answer, Limits, QueryKind, UserStatus};
use serde_json::json;
use std::fmt::Write as _;

/// How an answer ends the program: found, or "not found" (exit 1, as IndiMail's NULL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// For stdout.
    pub stdout: String,
    /// A note for stderr ("no aliases", "no such user").
    pub stderr: Option<String>,
    /// True when the answer is IndiMail's NULL-with-userNotFound: exit 1.
    pub not_found: bool,
}

/// An answer for people.
pub fn human(answer: &Answer, email: &str, ip: &str) -> Shown {
    let mut out = String::new();
    let mut note = None;
    let mut not_found = false;
    match answer {
        Answer::User { status } => {
            let what = match status {
                UserStatus::Active => "active, all services enabled",
                UserStatus::Absent => "absent on this domain (#5.1.1)",
                UserStatus::Inactive => "inactive on this domain (#5.2.1)",
                UserStatus::OverQuota => "over quota on this domain (#5.2.2)",
                UserStatus::Alias => "an alias (deliverable)",
            };
            let _ = writeln!(out, "{email}: {what}");
        }
        Answer::Relay { allowed } => {
            let what = if *allowed { "authenticated, may relay" } else { "not authenticated" };
            let _ = writeln!(out, "{email} from {ip}: {what}");
        }
        Answer::Pwd { passwd: None, email } => {
            note = Some(format!("{email}: no such user"));
            not_found = true;
        }
        Answer::Pwd { passwd: Some(p), .. } => {
            let table = if p.inactive { "inactive (indibak)" } else { "active (indimail)" };
            for (k, v) in [
                ("pw_name", p.name.as_str()),
                ("domain", p.domain.as_str()),
                ("pw_passwd", p.passwd.as_str()),
                ("pw_uid", &p.uid.to_string()),
                ("pw_gid", &format!("{} (0x{:x})", p.gid, p.gid)),
                ("pw_gecos", p.gecos.as_str()),
                ("pw_dir", p.dir.as_str()),
                ("pw_shell", p.shell.as_str()),
                ("table", table),
            ] {
                let _ = writeln!(out, "{k:<10}: {v}");
            }
        }
        Answer::Host { host: None } => {
            note = Some(format!("{email}: no mail store (no such user)"));
            not_found = true;
        }
        Answer::Host { host: Some(h) } => {
            let _ = writeln!(out, "{email}: SMTPROUTE is {}:{}:{}", h.domain, h.host, h.port);
        }
        Answer::Alias { lines } if lines.is_empty() => note = Some(format!("{email}: no aliases")),
        Answer::Alias { lines } => {
            let _ = writeln!(out, "Alias list for {email}:");
            for l in lines {
                let _ = writeln!(out, "  {l}");
            }
        }
        Answer::Limit { limits: None } => {
            note = Some(format!("{email}: no limits record"));
            not_found = true;
        }
        Answer::Limit { limits: Some(l) } => out = limits(email, l),
        Answer::Domain { domain, was_alias } => {
            let how = if *was_alias { " (alias domain)" } else { "" };
            let _ = writeln!(out, "{email}: real domain is {domain}{how}");
        }
    }
    Shown { stdout: out, stderr: note, not_found }
}

fn expiry(t: i64) -> String {
    if t < 0 {
        "never".into()
    } else {
        format!("{t} (unix time)")
    }
}

fn count(n: i64) -> String {
    if n < 0 {
        "unlimited".into()
    } else {
        n.to_string()
    }
}

/// IndiMail's VLIMIT_DISABLE_{CREATE,MODIFY,DELETE} bits, spelled out.
fn perms(bits: i16) -> String {
    let word =
        |bit: i16, what: &str| format!("{} {what}", if bits & bit != 0 { "deny" } else { "allow" });
    format!("{}, {}, {}", word(1, "create"), word(2, "modify"), word(4, "delete"))
}

fn limits(domain: &str, l: &Limits) -> String {
    let mut out = String::new();
    let source = if l.limit_type == 0 { "defaults, no vlimits row" } else { "vlimits row" };
    let _ = writeln!(out, "Limits for {domain} ({source}):");
    let rows: [(&str, String); 11] = [
        ("Domain expiry", expiry(l.domain_expiry)),
        ("Password expiry", expiry(l.passwd_expiry)),
        ("Domain quota", format!("{} bytes", l.diskquota)),
        ("Domain messages", l.maxmsgcount.to_string()),
        ("Default user quota", format!("{} bytes", l.defaultquota as i64)),
        ("Default user messages", l.defaultmaxmsgcount.to_string()),
        ("POP accounts", count(l.maxpopaccounts)),
        ("Aliases", count(l.maxaliases)),
        ("Forwards", count(l.maxforwards)),
        ("Autoresponders", count(l.maxautoresponders)),
        ("Mailing lists", count(l.maxmailinglists)),
    ];
    for (k, v) in rows {
        let _ = writeln!(out, "  {k:<22}: {v}");
    }
    let services = [
        ("IMAP", l.disable_imap),
        ("SMTP", l.disable_smtp),
        ("POP3", l.disable_pop),
        ("webmail", l.disable_webmail),
        ("password change", l.disable_passwordchanging),
        ("relay", l.disable_relay),
        ("dialup", l.disable_dialup),
    ];
    let list = |on: bool| {
        let v: Vec<&str> =
            services.iter().filter(|(_, d)| (*d != 0) != on).map(|(n, _)| *n).collect();
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let _ = writeln!(out, "  {:<22}: {}", "Services enabled", list(true));
    let _ = writeln!(out, "  {:<22}: {}", "Services disabled", list(false));
    let _ = writeln!(out, "  Permissions of non-postmaster accounts:");
    for (k, v) in [
        ("POP account", l.perm_account),
        ("alias", l.perm_alias),
        ("forward", l.perm_forward),
        ("autoresponder", l.perm_autoresponder),
        ("mailing list", l.perm_maillist),
        ("mailing list users", l.perm_maillist_users),
        ("list moderators", l.perm_maillist_moderators),
        ("domain quota", l.perm_quota),
        ("default quota", l.perm_defaultquota),
    ] {
        let _ = writeln!(out, "    {k:<20}: {}", perms(v));
    }
    out
}

/// An answer as one JSON object: the query, what was asked, and the answer.
pub fn json(kind: QueryKind, email: &str, ip: &str, answer: &Answer) -> String {
    let mut v = json!({ "query": kind.name(), "email": email, "answer": answer });
    if !ip.is_empty() {
        v["ip"] = json!(ip);
    }
    v.to_string()
}

/// PING for people.
/// PING for people: the daemon, then one line per backend server.
pub fn ping(p: &PingReply) -> String {
    let mut out = format!("inlookup {} (pid {}) up {} s\n", p.version, p.pid, p.uptime_secs);
    for b in &p.backends {
        out.push_str(&b.line());
        out.push('\n');
    }
    if let Some(inv) = &p.invalidation {
        out.push_str(&inv.line());
        out.push('\n');
    }
    for s in &p.servers {
        out.push_str(&s.line());
        out.push('\n');
    }
    out
}

/// STATS for people: the totals, then one row per kind.
pub fn stats(s: &StatsReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "inlookup {} (pid {}) up {} s", s.version, s.pid, s.uptime_secs);
    let _ = writeln!(
        out,
        "cache {} / {} entries; {} workers, {} in flight; {} MySQL connects; debug {}",
        s.cache_entries,
        s.cache_capacity,
        s.workers,
        s.in_flight,
        s.mysql_connects,
        if s.debug { "on" } else { "off" }
    );
    let _ = writeln!(
        out,
        "bad frames {}, bad requests {}, refused reply paths {}, vanished clients {}, failed replies {}, swept reply FIFOs {}",
        s.bad_frames,
        s.bad_requests,
        s.refused_reply_paths,
        s.vanished_clients,
        s.failed_replies,
        s.swept_reply_fifos
    );
    for b in &s.backends {
        let _ = writeln!(out, "{}", b.line());
    }
    let _ = writeln!(
        out,
        "{:<12}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
        "kind", "requests", "hits", "neg.hits", "misses", "coalesced", "expired", "errors", "stale"
    );
    let mut row = |name: &str, k: &inlookup_core::admin::KindStats| {
        let _ = writeln!(
            out,
            "{name:<12}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
            k.requests,
            k.hits,
            k.negative_hits,
            k.misses,
            k.coalesced,
            k.expirations,
            k.backend_errors,
            k.stale_served
        );
    };
    // The lookup kinds, whose requests are hits + negative hits + misses + refused (the
    // last listed below the table).
    let lookup = |name: &str| name.parse::<QueryKind>().is_ok_and(|k| k.answers().is_some());
    for (name, k) in s.kinds.iter().filter(|(n, _)| lookup(n)) {
        row(name, k);
    }
    row("lookups", &s.lookup_totals());
    let refused: Vec<String> = s
        .kinds
        .iter()
        .filter(|(n, k)| lookup(n) && k.refused > 0)
        .map(|(n, k)| format!("{n} {}", k.refused))
        .collect();
    if !refused.is_empty() {
        let _ = writeln!(out, "refused as bad: {}", refused.join(", "));
    }
    let others: Vec<String> = s
        .kinds
        .iter()
        .filter(|(n, _)| !lookup(n))
        .map(|(n, k)| format!("{n} {}", k.requests))
        .collect();
    let _ = writeln!(out, "other requests: {}", others.join(", "));
    let _ = writeln!(out, "{}", s.imap.line());
    if let Some(sh) = &s.shared_cache {
        let _ = writeln!(out, "{}", sh.line());
    }
    if let Some(inv) = &s.invalidation {
        let _ = writeln!(out, "{}", inv.line());
    }
    for sv in &s.servers {
        let _ = writeln!(out, "{}", sv.line());
    }
    out
}

/// An IMAP login for people: new or reused connection, and the capabilities.
pub fn imap_login(user: &str, login: &inquery::imap::ImapLogin) -> String {
    let how = if login.reused {
        "reusing the connection inlookup kept (no new IMAP login)"
    } else {
        "on a new IMAP connection"
    };
    format!("{user}: logged in, {how}\ncapabilities: {}\n", login.capabilities.join(" "))
}

/// An IMAP logout for people.
pub fn imap_logout(parked: bool) -> String {
    if parked {
        "logged out; the connection is parked for the same login\n".into()
    } else {
        "logged out; the connection was closed\n".into()
    }
}

/// An IMAP auth check for people: the line, and whether it is for stderr (invalid).
pub fn imap_auth(user: &str, auth: &inquery::imap::ImapAuth) -> (String, bool) {
    let source = if auth.cached { "inlookup's auth cache" } else { "the IMAP server" };
    if auth.valid {
        (format!("{user}: valid password (from {source})\n"), false)
    } else {
        (format!("{user}: invalid user or password (from {source})"), true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inlookup_core::{MailHost, Passwd};

    #[test]
    fn each_kind_reads_well_and_not_found_is_marked() {
        let s = human(&Answer::User { status: UserStatus::Inactive }, "o@x", "");
        assert_eq!(s.stdout, "o@x: inactive on this domain (#5.2.1)\n");
        assert!(!s.not_found, "an absent user is an answer, exit 0 as IndiMail");
        let s = human(&Answer::Relay { allowed: true }, "a@x", "192.0.2.1");
        assert_eq!(s.stdout, "a@x from 192.0.2.1: authenticated, may relay\n");
        let s = human(&Answer::Pwd { email: "n@x".into(), passwd: None }, "n@x", "");
        assert!(s.not_found && s.stdout.is_empty());
        assert_eq!(s.stderr.as_deref(), Some("n@x: no such user"));
        let p = Passwd {
            name: "a".into(),
            domain: "x".into(),
            passwd: "h".into(),
            uid: 1,
            gid: 16,
            gecos: "A".into(),
            dir: "/d".into(),
            shell: "9".into(),
            inactive: true,
        };
        let s = human(&Answer::Pwd { email: "a@x".into(), passwd: Some(p) }, "a@x", "");
        assert!(
            s.stdout.contains("pw_gid    : 16 (0x10)") && s.stdout.contains("inactive (indibak)"),
            "{}",
            s.stdout
        );
        let h = MailHost { domain: "x".into(), host: "10.0.0.5".into(), port: "25".into() };
        assert_eq!(
            human(&Answer::Host { host: Some(h) }, "a@x", "").stdout,
            "a@x: SMTPROUTE is x:10.0.0.5:25\n"
        );
        let s = human(&Answer::Alias { lines: vec![] }, "a@x", "");
        assert!(!s.not_found && s.stderr.is_some(), "no aliases: exit 0 with a note");
        assert!(human(&Answer::Limit { limits: None }, "x", "").not_found);
        let l = Limits { perm_quota: 3, disable_imap: 1, ..Limits::default() };
        let out = human(&Answer::Limit { limits: Some(l) }, "x", "").stdout;
        assert!(out.contains("deny create, deny modify, allow delete"), "{out}");
        assert!(out.contains("Services disabled     : IMAP"), "{out}");
    }

    #[test]
    fn imap_answers_read_well() {
        let l = inquery::imap::ImapLogin { reused: true, capabilities: vec!["IMAP4REV1".into()] };
        assert_eq!(
            imap_login("bob", &l),
            "bob: logged in, reusing the connection inlookup kept (no new IMAP login)\n\
             capabilities: IMAP4REV1\n"
        );
        assert!(imap_logout(true).contains("parked"));
        let (line, to_stderr) =
            imap_auth("bob", &inquery::imap::ImapAuth { valid: false, cached: true });
        assert!(to_stderr && line.contains("invalid") && line.contains("cache"), "{line}");
    }

    #[test]
    fn json_carries_the_query_and_the_typed_answer() {
        let j = json(QueryKind::User, "a@x", "", &Answer::User { status: UserStatus::Alias });
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["query"], "user");
        assert_eq!(v["answer"]["status"], "alias");
        assert!(v.get("ip").is_none());
    }
}
