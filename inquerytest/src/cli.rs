//! The command line: IndiMail's `inquerytest [-v] -q type -i infifo email [ipaddr]` first,
//! then inlookup's own subcommands and flags.

use clap::{Args, CommandFactory, Parser, Subcommand};
use inlookup_core::QueryKind;

const AFTER_HELP: &str = "\
Query types (-q): 1 user, 2 relay, 3 pwd, 4 host, 5 alias, 6 limit, 7 domain.

-i: an existing FIFO is asked (absolute or ./relative as given, else a name in INFIFODIR,
with no .N suffix). A FIFO that does not exist gets a private inlookup for this one query
(the `inlookup` next to this program, with this environment's MYSQL_* settings; as root it
runs as INLOOKUP_USER or nobody), stopped and removed afterwards. Without -i (or -i \"\"),
INFIFO and INFIFODIR decide, and instances INFIFO.1..N are spread over at random.

imap: the IMAP sessions inlookup keeps (docs/protocol.md §7), for diagnosis. `imap login USER
SESSION` logs in for SESSION, a key of your choosing; the password is the first line of
--password-file FILE or of standard input (the default; on a terminal it is asked for
without echo), never an argument. `imap cmd SESSION COMMAND` runs one command with its own
tag ('a1 SELECT INBOX'; a literal as in bash's $'a2 APPEND INBOX {5}\\r\\nhello') and prints
the responses as the server sent them. `imap logout SESSION` parks the connection for the
same login, or closes it. `imap auth USER` checks a password. Without -t they wait 30 s for
the reply (an IMAP login can take seconds); with --json each prints the daemon's JSON reply.

Exit codes: 0 answered; 1 not found (PWD, HOST, LIMIT) or the query failed (daemon not
running, timed out, error reply), and for ping: no backend (MySQL) is up; 100 usage; 111
system error (reply FIFO, private server).
imap: 0 done (cmd: tagged OK; auth: valid); 1 failed (wrong password, no session, the
server unreachable...; cmd: tagged NO or BAD; auth: invalid); 100 usage; 111 system error.

An email that is also a subcommand's name (stats, flush, ping, imap) goes after `--`.";

/// The man page's DESCRIPTION (and `--help`'s opening).
const LONG_ABOUT: &str = "Asks a running inlookup (or IndiMail's) one question and shows the \
answer: one of IndiMail's seven lookups with its options and exit codes, inlookup's own \
ping, stats, flush and live view (top), or a request of the IMAP sessions it keeps; with \
--direct, MySQL itself, with the daemon's SQL.";

/// Ask inlookup (or IndiMail's inlookup) one question and show the answer.
#[derive(Debug, Parser)]
#[command(
    name = "inquerytest",
    version,
    override_usage = "inquerytest [-v] [--json] [-t SECS] [-i INFIFO | --direct] -q TYPE EMAIL [IPADDR]\n       \
        inquerytest [-v] [--json] [-t SECS] [-i INFIFO] ping | stats | flush [KIND [KEY]]\n       \
        inquerytest [-t SECS] [-i INFIFO] top [--once] [--interval SECS]\n       \
        inquerytest [-v] [--json] [-t SECS] [-i INFIFO] imap login | cmd | logout | auth ...",
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    subcommand_negates_reqs = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Say on stderr which FIFO is asked, and how long the answer took.
    #[arg(short = 'v', long, global = true)]
    pub verbose: bool,

    /// Query type: 1-7 (IndiMail's digits; only the first is read) or a name
    /// (user, relay, pwd, host, alias, limit, domain).
    #[arg(
        short = 'q',
        long = "query",
        value_name = "TYPE",
        value_parser = parse_query_type,
        required_unless_present = "generate_man"
    )]
    pub query: Option<QueryKind>,

    /// Request FIFO to ask; one that does not exist gets a private server for this query.
    #[arg(short = 'i', long = "infifo", value_name = "INFIFO", global = true)]
    pub infifo: Option<String>,

    /// Print the answer as JSON.
    #[arg(long, global = true)]
    pub json: bool,

    /// Ask MySQL directly with the daemon's SQL (MYSQL_*, CONTROLDIR/host.mysql), not the
    /// daemon: compare its answer with the daemon's.
    #[arg(long, global = true)]
    pub direct: bool,

    /// Wait at most SECS for the daemon (both timeoutwrite and timeoutread; default: the
    /// control files, else 4).
    #[arg(short = 't', long, value_name = "SECS", global = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,

    /// Print the man page (roff) and exit.
    #[arg(long, hide = true)]
    pub generate_man: bool,

    /// The email (or, for limit and domain, a domain) to ask about.
    #[arg(value_name = "EMAIL", required_unless_present = "generate_man")]
    pub email: Option<String>,

    /// The client's IP address (relay queries need it).
    #[arg(value_name = "IPADDR")]
    pub ipaddr: Option<String>,

    /// inlookup's own requests.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// inlookup's own requests, beyond IndiMail's seven queries.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Is the daemon alive: its version, pid, uptime and each backend's health.
    Ping,
    /// The daemon's counters: per query kind and overall.
    Stats,
    /// Drop cache entries: all, one kind's, or one key of one kind.
    Flush {
        /// A query type (as -q), `imap` (the IMAP auth cache and parked connections), or `all`.
        #[arg(value_name = "KIND", value_parser = parse_flush_kind)]
        kind: Option<FlushKind>,
        /// An email or domain, as a client would ask it (for `imap`: an IMAP user).
        #[arg(value_name = "KEY", requires = "kind")]
        key: Option<String>,
    },
    /// A live view of the daemon: rates, hit ratio, queue, workers, backends, IMAP (q or
    /// Ctrl-C ends it).
    Top {
        /// Print one frame (rates over one interval) and exit, for scripts.
        #[arg(long)]
        once: bool,
        /// Seconds between frames.
        #[arg(long, value_name = "SECS", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=3600))]
        interval: u64,
    },
    /// IMAP sessions kept by inlookup: log in, run a command, log out, check a password.
    #[command(subcommand)]
    Imap(ImapCommand),
}

/// `inquerytest imap ...`: the four IMAP kinds (40-43).
#[derive(Debug, Subcommand)]
pub enum ImapCommand {
    /// Log in for a session key, or get the connection inlookup keeps for the same user,
    /// password, session key and IP. The password is read from FILE or standard input.
    Login {
        /// The IMAP user name.
        #[arg(value_name = "USER")]
        user: String,
        /// A session key of your choosing; cmd and logout name it.
        #[arg(value_name = "SESSION")]
        session: String,
        /// The end user's IP address (part of the session's identity).
        #[arg(long, value_name = "IP", default_value = "")]
        ip: String,
        /// Where the password comes from.
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Run one IMAP command with its own tag on the session's connection and print the
    /// responses as the server sent them.
    Cmd {
        /// The session key given at login.
        #[arg(value_name = "SESSION")]
        session: String,
        /// One command with its tag, e.g. 'a1 SELECT INBOX'.
        #[arg(value_name = "COMMAND")]
        command: String,
    },
    /// Log out: inlookup parks the connection for the next login, or closes it.
    Logout {
        /// The session key given at login.
        #[arg(value_name = "SESSION")]
        session: String,
    },
    /// Check a user's password (inlookup's auth cache, or a login at the IMAP server).
    Auth {
        /// The IMAP user name.
        #[arg(value_name = "USER")]
        user: String,
        /// The end user's IP address.
        #[arg(long, value_name = "IP", default_value = "")]
        ip: String,
        /// Where the password comes from.
        #[command(flatten)]
        password: PasswordSource,
    },
}

/// Where `imap login` and `imap auth` read the password: a file or standard input, never
/// an argument.
#[derive(Debug, Args)]
pub struct PasswordSource {
    /// Read the password from the first line of FILE (`-`: standard input).
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub password_file: String,
    /// Refused with a clear message: a password on the command line shows in `ps`.
    #[arg(value_name = "PASSWORD", hide = true)]
    pub password_argument: Option<String>,
}

/// FLUSH's scope: every kind, or one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushKind {
    /// Every kind.
    All,
    /// One classic kind, or an IMAP kind (all IMAP kinds share one auth cache).
    Kind(QueryKind),
}

/// `-q`: IndiMail reads only the first character of a digit; a name is read whole.
fn parse_query_type(s: &str) -> Result<QueryKind, String> {
    let t = s.trim();
    let parsed = match t.chars().next() {
        Some(c) if c.is_ascii_digit() => c.to_string().parse::<QueryKind>(),
        _ => t.parse::<QueryKind>(),
    };
    parsed.ok().filter(|k| k.is_classic()).ok_or_else(|| {
        format!("invalid query type {s:?}: use 1-7 or user, relay, pwd, host, alias, limit, domain")
    })
}

fn parse_flush_kind(s: &str) -> Result<FlushKind, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("all") {
        return Ok(FlushKind::All);
    }
    // Any IMAP kind names the IMAP auth cache and parked connections (of one user with KEY).
    if t.eq_ignore_ascii_case("imap") {
        return Ok(FlushKind::Kind(QueryKind::ImapAuth));
    }
    if let Ok(k) = t.parse::<QueryKind>() {
        if k.is_imap() {
            return Ok(FlushKind::Kind(k));
        }
    }
    parse_query_type(s).map(FlushKind::Kind)
}

/// The command-line definition, for the man page and for tests.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Parses arguments (the first is the program name).
///
/// # Errors
/// clap's error for a usage mistake, `--help` and `--version` (print it; its `exit_code`
/// is 0 for the latter two).
pub fn parse<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::try_parse_from(args)?;
    // --direct has no daemon to ask: an -i with a FIFO conflicts with it, but `-i ""` is
    // IndiMail's scripts' way of saying "no -i", and goes with it.
    if cli.direct && cli.infifo.as_deref().is_some_and(|i| !i.is_empty()) {
        return Err(Cli::command().error(
            clap::error::ErrorKind::ArgumentConflict,
            "the argument '--direct' cannot be used with '--infifo <INFIFO>'",
        ));
    }
    Ok(cli)
}

/// The man page, in roff.
///
/// # Errors
/// Writing to `out` failed.
pub fn write_man(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    clap_mangen::Man::new(command()).render(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn indimails_form_parses() {
        let c = parse(["inquerytest", "-v", "-q", "3", "-i", "/run/x/infifo", "alice@example.com"])
            .unwrap();
        assert_eq!((c.query, c.verbose), (Some(QueryKind::Pwd), true));
        assert_eq!(
            (c.infifo.as_deref(), c.email.as_deref()),
            (Some("/run/x/infifo"), Some("alice@example.com"))
        );
        let c = parse(["inquerytest", "-q", "2", "a@x", "192.0.2.1"]).unwrap();
        assert_eq!((c.query, c.ipaddr.as_deref()), (Some(QueryKind::Relay), Some("192.0.2.1")));
        let c = parse(["inquerytest", "-q", "7x", "-i", "", "example.org"]).unwrap();
        assert_eq!(
            (c.query, c.infifo.as_deref()),
            (Some(QueryKind::Domain), Some("")),
            "first digit only"
        );
        assert_eq!(
            parse(["inquerytest", "-q", "alias", "s@x"]).unwrap().query,
            Some(QueryKind::Alias)
        );
    }

    #[test]
    fn usage_mistakes_are_errors() {
        for args in [
            &["inquerytest", "a@x"][..],
            &["inquerytest", "-q", "1"],
            &["inquerytest", "-q", "8", "a@x"],
            &["inquerytest", "-q", "ping", "a@x"],
            &["inquerytest", "-q", "1", "--direct", "-i", "/f", "a@x"],
            &["inquerytest", "flush", "bogus"],
        ] {
            assert!(parse(args.iter().copied()).is_err(), "{args:?}");
        }
    }

    #[test]
    fn an_empty_infifo_goes_with_direct() {
        let c = parse(["inquerytest", "-q", "1", "--direct", "-i", "", "a@x"]).unwrap();
        assert!(c.direct);
        let e = parse(["inquerytest", "-q", "1", "--direct", "-i", "/f", "a@x"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn subcommands_take_global_flags_anywhere() {
        let c = parse(["inquerytest", "--json", "stats", "-i", "/f"]).unwrap();
        assert!(matches!(c.command, Some(Command::Stats)));
        assert!(c.json && c.infifo.as_deref() == Some("/f"));
        for imap in ["imap", "IMAP", "imap-auth"] {
            match parse(["inquerytest", "flush", imap, "alice"]).unwrap().command {
                Some(Command::Flush { kind, .. }) => {
                    assert_eq!(kind, Some(FlushKind::Kind(QueryKind::ImapAuth)));
                }
                other => panic!("{other:?}"),
            }
        }
        let c = parse(["inquerytest", "flush", "pwd", "alice@example.com"]).unwrap();
        match c.command {
            Some(Command::Flush { kind, key }) => {
                assert_eq!(kind, Some(FlushKind::Kind(QueryKind::Pwd)));
                assert_eq!(key.as_deref(), Some("alice@example.com"));
            }
            other => panic!("{other:?}"),
        }
        let c = parse(["inquerytest", "-q", "1", "--", "stats"]).unwrap();
        assert_eq!(c.email.as_deref(), Some("stats"), "after --, a name is an email");
    }

    #[test]
    fn imap_subcommands_parse_and_take_no_password_argument() {
        let c =
            parse(["inquerytest", "imap", "login", "alice", "s1", "--ip", "192.0.2.7"]).unwrap();
        match c.command {
            Some(Command::Imap(ImapCommand::Login { user, session, ip, password })) => {
                assert_eq!((user.as_str(), session.as_str()), ("alice", "s1"));
                assert_eq!((ip.as_str(), password.password_file.as_str()), ("192.0.2.7", "-"));
                assert_eq!(password.password_argument, None);
            }
            other => panic!("{other:?}"),
        }
        let c = parse(["inquerytest", "imap", "cmd", "s1", "a1 SELECT INBOX", "--json"]).unwrap();
        assert!(c.json && matches!(c.command, Some(Command::Imap(ImapCommand::Cmd { .. }))));
        assert!(parse(["inquerytest", "imap", "auth"]).is_err());
        assert!(parse(["inquerytest", "imap", "bogus"]).is_err());
    }

    #[test]
    fn the_man_page_renders() {
        let mut out = Vec::new();
        write_man(&mut out).unwrap();
        let man = String::from_utf8(out).unwrap();
        assert!(man.contains(".TH inquerytest"), "{man}");
        assert!(man.contains("infifo"));
    }
}
