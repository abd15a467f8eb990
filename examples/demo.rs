//! Asks a running inlookup every kind of question twice — first answered from MySQL, then
//! from the cache — and prints each answer with the time it took. `scripts/demo.sh` starts
//! the services and the daemon and runs this.
//!
//! With IMAP_DEMO=user:password set (and inlookup pointed at an IMAP server), it then logs
//! in to IMAP through inlookup twice, to show the second login reusing the connection, and
//! checks the password (from the auth cache the logins filled). With a second
//! `,user2:password2`, that user's password is checked twice too: first at the IMAP server
//! (a miss), then from the cache.
//!
//! Usage: demo FIFO FIFOTMPDIR

use inquery::{Answer, Client, Lookup, QueryKind};
use std::time::{Duration, Instant};

fn show(a: &Answer) -> String {
    match a {
        Answer::User { status } => format!("{} ({})", *status as i32, status.describe()),
        Answer::Relay { allowed } => {
            if *allowed { "1 (may relay)" } else { "0 (may not relay)" }.into()
        }
        Answer::Pwd { email, passwd: None } => format!("No such user {email}"),
        Answer::Pwd { passwd: Some(p), .. } => format!(
            "{}@{} uid {} gid {} dir {} quota {}{} (hash not shown)",
            p.name,
            p.domain,
            p.uid,
            p.gid,
            p.dir,
            p.shell,
            if p.inactive { " INACTIVE" } else { "" }
        ),
        Answer::Host { host: None } => "(no mail store)".into(),
        Answer::Host { host: Some(h) } => format!("{}:{}:{}", h.domain, h.host, h.port),
        Answer::Alias { lines } if lines.is_empty() => "(no aliases)".into(),
        Answer::Alias { lines } => lines.join(" "),
        Answer::Limit { limits: None } => "(no limits row)".into(),
        Answer::Limit { limits: Some(l) } => format!(
            "maxpopaccounts {} maxaliases {} diskquota {} disable_imap {}",
            l.maxpopaccounts, l.maxaliases, l.diskquota, l.disable_imap
        ),
        Answer::Domain { domain, was_alias } => {
            format!("{domain}{}", if *was_alias { " (alias domain resolved)" } else { "" })
        }
    }
}

/// Width of the question column: the longest question (a relay question with its IP) fits.
const Q: usize = 36;

fn us(d: Duration) -> String {
    format!("{:>6} µs", d.as_micros())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: demo FIFO FIFOTMPDIR");
        std::process::exit(100);
    }
    let mut c = Client::for_fifo(&args[1]);
    c.tmpdir = args[2].clone().into();
    let questions: [(QueryKind, &str, &str); 14] = [
        (QueryKind::User, "testuser@example.com", ""),
        (QueryKind::User, "olduser@example.com", ""),
        (QueryKind::User, "nobody@example.com", ""),
        (QueryKind::Relay, "alice@example.com", "192.0.2.10"),
        (QueryKind::Relay, "alice@example.com", "198.51.100.7"),
        (QueryKind::Pwd, "alice@example.com", ""),
        (QueryKind::Pwd, "nobody@example.com", ""),
        (QueryKind::Host, "testuser@example.com", ""),
        (QueryKind::Host, "nobody@example.com", ""),
        (QueryKind::Alias, "sales@example.com", ""),
        (QueryKind::Limit, "example.com", ""),
        (QueryKind::Limit, "example.net", ""),
        (QueryKind::Domain, "example.org", ""),
        (QueryKind::Domain, "example.net", ""),
    ];
    // The same client asking over the FIFO only, and (`c`) reading hits from the daemon's
    // shared-memory cache first.
    let fifo = c.clone().with_shared(None);
    println!(
        "{:<7} {:<Q$} {:>10} {:>10} {:>10}  answer",
        "kind", "question", "MySQL", "FIFO hit", "mapped"
    );
    let mut failed = false;
    for (kind, email, ip) in questions {
        let q = if ip.is_empty() { email.to_string() } else { format!("{email} from {ip}") };
        let t = Instant::now();
        let first = fifo.ask(kind, email, ip);
        let t1 = t.elapsed();
        let t = Instant::now();
        let second = fifo.ask(kind, email, ip);
        let t2 = t.elapsed();
        let t = Instant::now();
        let third = c.ask(kind, email, ip);
        let t3 = t.elapsed();
        match (first, second, third) {
            (Ok(a), Ok(b), Ok(m)) if a == b && b == m => println!(
                "{:<7} {:<Q$} {} {} {}  {}",
                kind.name(),
                q,
                us(t1),
                us(t2),
                us(t3),
                show(&a)
            ),
            (a, b, m) => {
                failed = true;
                println!("{:<7} {:<Q$} FAILED: {a:?} / {b:?} / {m:?}", kind.name(), q);
            }
        }
    }
    // Many hits from the mapping: what each costs, and that the daemon never saw them.
    let before = fifo.stats().map(|s| s.totals().requests).unwrap_or(0);
    let n = 10_000u32;
    let t = Instant::now();
    let all_found = (0..n).all(|_| matches!(c.passwd("alice@example.com"), Ok(Some(_))));
    let each = t.elapsed() / n;
    let after = fifo.stats().map(|s| s.totals().requests).unwrap_or(0);
    let reached = after.saturating_sub(before + 1);
    failed |= !all_found;
    println!(
        "\n{n} PWD hits from the shared cache ({}): {} ns each; {reached} of them reached the daemon",
        c.shared.as_ref().map_or("off".into(), |p| p.display().to_string()),
        each.as_nanos()
    );
    let t = Instant::now();
    match c.ping() {
        Ok(p) => println!(
            "{:<7} {:<Q$} {:>10} {}  version {} pid {} up {} s",
            "ping",
            "(inlookup's own kind)",
            "",
            us(t.elapsed()),
            p.version,
            p.pid,
            p.uptime_secs
        ),
        Err(e) => {
            failed = true;
            println!("ping    FAILED: {e}");
        }
    }
    if let Ok(spec) = std::env::var("IMAP_DEMO") {
        failed |= !imap(&c, &spec);
    }
    match c.stats() {
        Ok(s) => {
            let t = s.totals();
            println!(
                "\ninlookup {}: {} requests, {} hits, {} negative hits, {} misses; {} MySQL connections for all of it",
                s.version, t.requests, t.hits, t.negative_hits, t.misses, s.mysql_connects
            );
            if std::env::var_os("IMAP_DEMO").is_some() {
                let i = &s.imap;
                println!(
                    "IMAP: {} connections opened, {} logins reused, {} parked, {} auth checks from the cache",
                    i.created, i.reused, i.parked, i.auth_hits
                );
            }
        }
        Err(e) => {
            failed = true;
            eprintln!("stats: {e}");
        }
    }
    std::process::exit(i32::from(failed));
}

/// Two web "page views" of one user: log in, SELECT INBOX, log out; the second login gets
/// the connection parked at the first logout. Then a password check, twice. True when all
/// went as expected.
fn imap(c: &Client, spec: &str) -> bool {
    let pairs: Option<Vec<(&str, &str)>> = spec.split(',').map(|u| u.split_once(':')).collect();
    let Some(pairs) = pairs.filter(|p| p.len() <= 2) else {
        eprintln!("IMAP_DEMO must be user:password[,user2:password2]");
        return false;
    };
    let (user, password) = pairs[0];
    let second = pairs.get(1).copied();
    println!("\n{:<7} {:<Q$} {:>10}  answer", "IMAP", "request", "time");
    let mut ok = true;
    let mut step = |what: &str, r: Result<String, String>, t: Duration| match r {
        Ok(a) => println!("{:<7} {:<Q$} {}  {}", "imap", what, us(t), a),
        Err(e) => {
            ok = false;
            println!("{:<7} {:<Q$} FAILED: {e}", "imap", what);
        }
    };
    for page in 1..=2 {
        let t = Instant::now();
        let r = c.imap_login(user, password, "demo-web-session", "192.0.2.7");
        let r = r.map(|l| {
            if l.reused {
                "ok, reused a parked connection".into()
            } else {
                "ok, new connection and login".into()
            }
        });
        step(&format!("login {user} (page {page})"), r.map_err(|e| e.to_string()), t.elapsed());
        let t = Instant::now();
        let r = c.imap_command("demo-web-session", "p1 SELECT INBOX");
        let r = r.map(|x| {
            let exists = String::from_utf8_lossy(&x.response)
                .lines()
                .find(|l| l.ends_with(" EXISTS"))
                .map(|l| l.trim_start_matches("* ").to_string())
                .unwrap_or_default();
            // The status as IMAP writes it (OK, NO, BAD).
            let status = format!("{:?}", x.status).to_uppercase();
            format!("{status} {} ({exists})", x.text)
        });
        step("SELECT INBOX", r.map_err(|e| e.to_string()), t.elapsed());
        let t = Instant::now();
        let r = c.imap_logout("demo-web-session");
        let r = r.map(|parked| {
            if parked {
                "ok, parked for the next login".into()
            } else {
                "ok, closed".into()
            }
        });
        step("logout", r.map_err(|e| e.to_string()), t.elapsed());
    }
    // Password checks: the second user's twice (the IMAP server, then the auth cache), then
    // the first user's (in the cache since the logins).
    let mut checks = Vec::new();
    if let Some((user2, password2)) = second {
        checks.extend([(user2, password2), (user2, password2)]);
    }
    checks.push((user, password));
    for (u, p) in checks {
        let t = Instant::now();
        let r = c.imap_auth(u, p, "192.0.2.7").map(|a| {
            format!(
                "{}{}",
                if a.valid { "valid" } else { "invalid" },
                if a.cached { " (auth cache)" } else { " (a login at the IMAP server)" }
            )
        });
        step(&format!("auth {u}"), r.map_err(|e| e.to_string()), t.elapsed());
    }
    ok
}
