//! From parsed arguments to output and an exit code.

use crate::cli::{self, Cli, Command, FlushKind};
use crate::exit::{fail, print, query_failed, to_json, Fail};
use crate::exit::{EXIT_FAILURE, EXIT_OK, EXIT_SYSTEM, EXIT_USAGE};
use crate::imap;
use crate::output;
use crate::private::PrivateServer;
use inquery::resolve::Target;
use inquery::{Client, Direct, Lookup, QueryKind};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long the `imap` subcommands wait for a reply at least, without `-t`.
const IMAP_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// clap's message on one line: its text before the usage, lines joined.
fn usage_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let msg: Vec<&str> = text
        .lines()
        .take_while(|l| !l.starts_with("Usage:"))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .collect();
    let msg = msg.join(" ");
    format!("{} (try --help)", msg.strip_prefix("error: ").unwrap_or(&msg))
}

/// Runs inquerytest with these arguments (the first is the program name), printing to
/// stdout and stderr; returns the exit code.
pub fn main_with<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match cli::parse(args) {
        Ok(c) => c,
        Err(e) if e.exit_code() == 0 => {
            // --help, --version.
            let _ = e.print();
            return EXIT_OK;
        }
        Err(e) => {
            eprintln!("inquerytest: {}", usage_line(&e));
            return EXIT_USAGE;
        }
    };
    match run(&cli) {
        Ok(code) => code,
        Err(f) => {
            eprintln!("inquerytest: {}", f.msg);
            f.code
        }
    }
}

fn run(cli: &Cli) -> Result<i32, Fail> {
    if cli.generate_man {
        let mut out = std::io::stdout().lock();
        cli::write_man(&mut out).map_err(|e| fail(EXIT_SYSTEM, format!("stdout: {e}")))?;
        return Ok(EXIT_OK);
    }
    match &cli.command {
        Some(cmd) => admin(cli, cmd),
        None => query(cli),
    }
}

/// `-i NAME`: absolute or `./relative` as given, else NAME inside INFIFODIR, with no
/// instance suffix (IndiMail's inquerytest).
fn infifo_path(name: &str) -> PathBuf {
    let v = |n: &str| std::env::var(n).ok();
    match Target::from_values(Some(name), v("INFIFODIR").as_deref(), v("INDIMAILDIR").as_deref()) {
        Target::Exact(p) => p,
        Target::Instances { dir, name } => dir.join(name),
    }
}

fn describe(target: &Target) -> String {
    match target {
        Target::Exact(p) => p.display().to_string(),
        Target::Instances { .. } => {
            let mut c: Vec<String> =
                target.candidates().iter().map(|p| p.display().to_string()).collect();
            c.sort();
            if c.len() == 1 {
                c.remove(0)
            } else {
                format!("one of {}", c.join(", "))
            }
        }
    }
}

/// Whether a query may start a private inlookup when `-i` names a FIFO that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    /// It may (classic queries, as IndiMail's inquerytest).
    MayStart,
    /// It must find a running daemon (inlookup's own requests).
    MustRun,
}

/// The client for `-i` (or the environment), and a private server when `-i` names a FIFO
/// that does not exist and `server` allows one.
fn client(cli: &Cli, server: Server) -> Result<(Client, Option<PrivateServer>), Fail> {
    let (mut client, server) = match cli.infifo.as_deref().filter(|s| !s.is_empty()) {
        None => (Client::from_env(), None),
        Some(name) => {
            let path = infifo_path(name);
            if server == Server::MayStart && std::fs::symlink_metadata(&path).is_err() {
                let server =
                    PrivateServer::start(&path, cli.verbose).map_err(|e| fail(EXIT_SYSTEM, e))?;
                // A mistyped -i must not pass unnoticed (a failed start says so itself).
                eprintln!(
                    "inquerytest: no daemon at {}: started a private one for this query",
                    path.display()
                );
                if cli.verbose {
                    eprintln!(
                        "inquerytest: started a private inlookup (pid {}) on {}",
                        server.pid(),
                        path.display()
                    );
                }
                (server.client(), Some(server))
            } else {
                (Client::for_fifo(path), None)
            }
        }
    };
    if let Some(t) = cli.timeout {
        client.timeouts.read = Duration::from_secs(t);
        client.timeouts.write = Duration::from_secs(t);
    } else if matches!(cli.command, Some(Command::Imap(_))) {
        // An IMAP login or command can take seconds (Dovecot delays a failed login by 2 s).
        client.timeouts.read = client.timeouts.read.max(IMAP_READ_TIMEOUT);
    }
    if cli.verbose {
        eprintln!(
            "inquerytest: asking {} (reply FIFO in {}, timeouts write {} s, read {} s)",
            describe(&client.target),
            client.tmpdir.display(),
            client.timeouts.write.as_secs(),
            client.timeouts.read.as_secs()
        );
    }
    Ok((client, server))
}

fn query(cli: &Cli) -> Result<i32, Fail> {
    let kind = cli.query.ok_or_else(|| fail(EXIT_USAGE, "-q is required"))?;
    let email = cli.email.as_deref().ok_or_else(|| fail(EXIT_USAGE, "the email is required"))?;
    let ip = cli.ipaddr.as_deref().unwrap_or("");
    if kind == QueryKind::Relay && ip.is_empty() {
        return Err(fail(EXIT_USAGE, "a relay query needs ipaddr (try --help)"));
    }
    let mut started = Instant::now();
    let answer = if cli.direct {
        let d = Direct::from_env();
        if cli.verbose {
            eprintln!("inquerytest: asking MySQL directly ({:?})", d.settings());
        }
        d.ask(kind, email, ip)
    } else {
        // The private server, if any, lives until the answer is in.
        let (client, _server) = client(cli, Server::MayStart)?;
        started = Instant::now();
        client.ask(kind, email, ip)
    };
    let answer = answer.map_err(|e| query_failed(email, &e))?;
    if cli.verbose {
        eprintln!("inquerytest: answered in {} µs", started.elapsed().as_micros());
    }
    let shown = output::human(&answer, email, ip);
    if cli.json {
        print(format!("{}\n", output::json(kind, email, ip, &answer)))?;
    } else {
        print(&shown.stdout)?;
    }
    if let Some(note) = &shown.stderr {
        eprintln!("inquerytest: {note}");
    }
    Ok(if shown.not_found { EXIT_FAILURE } else { EXIT_OK })
}

fn admin(cli: &Cli, cmd: &Command) -> Result<i32, Fail> {
    let name = match cmd {
        Command::Ping => "ping",
        Command::Stats => "stats",
        Command::Flush { .. } => "flush",
        Command::Top { .. } => "top",
        Command::Imap(_) => "imap",
    };
    if cli.direct {
        return Err(fail(EXIT_USAGE, format!("{name} asks the daemon; --direct has no daemon")));
    }
    if cli.query.is_some() || cli.email.is_some() {
        let hint = format!("an email named {name:?} goes after --");
        return Err(fail(EXIT_USAGE, format!("-q/EMAIL and {name} do not go together ({hint})")));
    }
    let (client, _) = client(cli, Server::MustRun)?;
    let out = match cmd {
        Command::Imap(imap) => return imap::run(cli, &client, imap),
        Command::Top { once, interval } => {
            let every = std::time::Duration::from_secs(*interval);
            return crate::top::run(&client, *once, every);
        }
        Command::Ping => {
            let p = client.ping().map_err(|e| query_failed(name, &e))?;
            print(if cli.json { to_json(&p)? } else { output::ping(&p) })?;
            // The daemon answers, but no backend does: every miss fails.
            return Ok(if p.no_backend_up() { EXIT_FAILURE } else { EXIT_OK });
        }
        Command::Stats => {
            let s = client.stats().map_err(|e| query_failed(name, &e))?;
            if cli.json {
                to_json(&s)?
            } else {
                output::stats(&s)
            }
        }
        Command::Flush { kind, key } => {
            let kind = match kind {
                Some(FlushKind::Kind(k)) => Some(*k),
                _ => None,
            };
            let n = client.flush(kind, key.as_deref()).map_err(|e| query_failed(name, &e))?;
            if cli.json {
                to_json(&inlookup_core::admin::FlushReply { flushed: n })?
            } else {
                let what = match (kind, key) {
                    (None, _) => "the cache".to_string(),
                    (Some(k), None) if k.is_imap() => {
                        "the IMAP auth cache and parked connections".to_string()
                    }
                    (Some(k), Some(key)) if k.is_imap() => {
                        format!("the IMAP auth cache and parked connections of {key}")
                    }
                    (Some(k), None) => format!("every {k} entry"),
                    (Some(k), Some(key)) => format!("{k} for {key}"),
                };
                let entries = if n == 1 { "entry" } else { "entries" };
                format!("flushed {n} {entries} ({what})\n")
            }
        }
    };
    print(&out)?;
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_fit_on_one_line() {
        let e = cli::parse(["inquerytest"]).unwrap_err();
        let line = usage_line(&e);
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("--query") && line.contains("EMAIL"), "{line}");
    }

    #[test]
    fn exit_codes_follow_indimail() {
        assert_eq!(main_with(["inquerytest", "-q", "9", "a@x"]), EXIT_USAGE);
        assert_eq!(
            main_with(["inquerytest", "-q", "2", "a@x"]),
            EXIT_USAGE,
            "relay without ipaddr"
        );
        assert_eq!(main_with(["inquerytest", "--help"]), EXIT_OK);
        assert_eq!(
            main_with(["inquerytest", "-q", "1", "stats"]),
            EXIT_USAGE,
            "a query and a subcommand"
        );
        assert_eq!(main_with(["inquerytest", "--direct", "ping"]), EXIT_USAGE);
        let gone = format!("/nonexistent-{}/infifo", std::process::id());
        assert_eq!(
            main_with(["inquerytest", "-i", gone.as_str(), "ping"]),
            EXIT_FAILURE,
            "not running"
        );
    }

    #[test]
    fn a_relative_infifo_is_inside_infifodir_without_a_suffix() {
        assert_eq!(infifo_path("/x/f"), PathBuf::from("/x/f"));
        assert_eq!(infifo_path("./f"), PathBuf::from("./f"));
        assert!(infifo_path("f").ends_with("f"));
    }
}
