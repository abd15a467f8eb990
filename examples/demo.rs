//! Asks a running inlookup every kind of question twice — first answered from MySQL, then
//! from the cache — and prints each answer with the time it took. `scripts/demo.sh` starts
//! the services and the daemon and runs this.
//!
//! Usage: demo FIFO FIFOTMPDIR

use inquery::{Answer, Client, QueryKind};
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
    println!("{:<7} {:<34} {:>10} {:>10}  answer", "kind", "question", "MySQL", "cache");
    let mut failed = false;
    for (kind, email, ip) in questions {
        let q = if ip.is_empty() { email.to_string() } else { format!("{email} from {ip}") };
        let t = Instant::now();
        let first = c.ask(kind, email, ip);
        let t1 = t.elapsed();
        let t = Instant::now();
        let second = c.ask(kind, email, ip);
        let t2 = t.elapsed();
        match (first, second) {
            (Ok(a), Ok(b)) if a == b => {
                println!("{:<7} {:<34} {} {}  {}", kind.name(), q, us(t1), us(t2), show(&a))
            }
            (a, b) => {
                failed = true;
                println!("{:<7} {:<34} FAILED: {a:?} / {b:?}", kind.name(), q);
            }
        }
    }
    match c.stats() {
        Ok(s) => {
            let t = s.totals();
            println!(
                "\ninlookup {}: {} requests, {} hits, {} negative hits, {} misses; {} MySQL connections for all of it",
                s.version, t.requests, t.hits, t.negative_hits, t.misses, s.mysql_connects
            );
        }
        Err(e) => {
            failed = true;
            eprintln!("stats: {e}");
        }
    }
    std::process::exit(i32::from(failed));
}
