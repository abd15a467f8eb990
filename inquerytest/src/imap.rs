//! `inquerytest imap login|cmd|logout|auth`: the IMAP sessions inlookup keeps, for
//! diagnosis. Passwords come from a file or standard input, never from the command line
//! (anyone can read another process's arguments in `ps`), and are never printed.

use crate::cli::{Cli, ImapCommand, PasswordSource};
use crate::exit::{fail, print, query_failed, to_json, Fail, EXIT_FAILURE, EXIT_OK};
use crate::exit::{EXIT_SYSTEM, EXIT_USAGE};
use crate::output;
use inlookup_core::admin::{
    ImapAuthReply, ImapCommandReply, ImapFailure, ImapLoginReply, ImapLogoutReply,
};
use inquery::imap::{ImapError, ImapStatus};
use inquery::Client;
use std::io::{BufRead, IsTerminal};
use std::process::{Command, Stdio};

/// Runs one `imap` subcommand; the exit code.
pub(crate) fn run(cli: &Cli, c: &Client, cmd: &ImapCommand) -> Result<i32, Fail> {
    match cmd {
        ImapCommand::Login { user, session, ip, password } => {
            let what = format!("imap login {user}");
            let password = password.read(user)?;
            let login = match c.imap_login(user, &password, session, ip) {
                Ok(l) => l,
                Err(e) => {
                    return failed(cli, &what, e, |error| ImapLoginReply {
                        error,
                        ..Default::default()
                    })
                }
            };
            print(&if cli.json {
                to_json(&ImapLoginReply {
                    ok: true,
                    reused: login.reused,
                    capabilities: login.capabilities,
                    error: None,
                })?
            } else {
                output::imap_login(user, &login)
            })?;
            Ok(EXIT_OK)
        }
        ImapCommand::Cmd { session, command } => {
            let what = format!("imap cmd {}", first_words(command));
            let r = match c.imap_command(session, command) {
                Ok(r) => r,
                Err(e) => {
                    return failed(cli, &what, e, |error| ImapCommandReply {
                        error,
                        ..Default::default()
                    })
                }
            };
            let code = if r.status == ImapStatus::Ok { EXIT_OK } else { EXIT_FAILURE };
            if cli.json {
                let (response, base64) = match String::from_utf8(r.response) {
                    Ok(s) => (s, false),
                    Err(e) => (base64(e.as_bytes()), true),
                };
                let reply = ImapCommandReply {
                    ok: true,
                    tag: r.tag,
                    status: r.status,
                    text: r.text,
                    response,
                    base64,
                    error: None,
                };
                print(&to_json(&reply)?)?;
            } else {
                print(&r.response)?;
            }
            Ok(code)
        }
        ImapCommand::Logout { session } => {
            let parked = match c.imap_logout(session) {
                Ok(p) => p,
                Err(e) => {
                    return failed(cli, "imap logout", e, |error| ImapLogoutReply {
                        error,
                        ..Default::default()
                    })
                }
            };
            print(&if cli.json {
                to_json(&ImapLogoutReply { ok: true, parked, error: None })?
            } else {
                output::imap_logout(parked)
            })?;
            Ok(EXIT_OK)
        }
        ImapCommand::Auth { user, ip, password } => {
            let what = format!("imap auth {user}");
            let password = password.read(user)?;
            let a = match c.imap_auth(user, &password, ip) {
                Ok(a) => a,
                Err(e) => {
                    return failed(cli, &what, e, |error| ImapAuthReply {
                        error,
                        ..Default::default()
                    })
                }
            };
            let (line, to_stderr) = output::imap_auth(user, &a);
            if cli.json {
                print(&to_json(&ImapAuthReply {
                    ok: true,
                    valid: a.valid,
                    cached: a.cached,
                    error: None,
                })?)?;
            } else if !to_stderr {
                print(&line)?;
            }
            if to_stderr {
                eprintln!("inquerytest: {line}");
            }
            Ok(if a.valid { EXIT_OK } else { EXIT_FAILURE })
        }
    }
}

/// A failed IMAP request: one line on stderr (the daemon's code and message), and with
/// --json the daemon's failure reply on stdout; exit 1. A request that got no reply is
/// reported as any query's.
fn failed<R: serde::Serialize>(
    cli: &Cli,
    what: &str,
    e: ImapError,
    reply: impl FnOnce(Option<ImapFailure>) -> R,
) -> Result<i32, Fail> {
    let f = match e {
        ImapError::Failed(f) => f,
        ImapError::Query(e) => return Err(query_failed(what, &e)),
        other => return Err(fail(EXIT_FAILURE, format!("{what}: {other}"))),
    };
    let code = serde_json::to_value(f.code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{:?}", f.code));
    if cli.json {
        print(&to_json(&reply(Some(f.clone())))?)?;
    }
    Err(fail(EXIT_FAILURE, format!("{what}: {code}: {}", f.message)))
}

/// Standard base64 with padding, as the daemon's `imap-cmd` reply carries bytes that are
/// not UTF-8.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The tag and command name, for messages (arguments may be secrets).
fn first_words(command: &str) -> String {
    command.split([' ', '\r', '\n']).take(2).collect::<Vec<_>>().join(" ")
}

impl PasswordSource {
    /// The password for `user`: an argument is refused first, then the file (or standard
    /// input) is read.
    fn read(&self, user: &str) -> Result<String, Fail> {
        no_password_argument(self.password_argument.as_deref())?;
        read_password(&self.password_file, user)
    }
}

/// A password given as an argument is refused (without repeating it): every user sees a
/// process's arguments in `ps`.
fn no_password_argument(arg: Option<&str>) -> Result<(), Fail> {
    match arg {
        None => Ok(()),
        Some(_) => Err(fail(
            EXIT_USAGE,
            "a password is not taken from the command line (ps shows it to every user): \
             give it on standard input or with --password-file FILE",
        )),
    }
}

/// The password: the first line of `file`, or of standard input for `-` (asked for without
/// echo on a terminal). Its line end is removed; nothing else is.
fn read_password(file: &str, user: &str) -> Result<String, Fail> {
    let mut line = String::new();
    if file == "-" {
        let stdin = std::io::stdin();
        let terminal = stdin.is_terminal();
        let echo_off = terminal && {
            eprint!("Password for {user}: ");
            stty("-echo")
        };
        let read = stdin.lock().read_line(&mut line);
        if echo_off {
            stty("echo");
            eprintln!();
        }
        read.map_err(|e| fail(EXIT_SYSTEM, format!("reading the password from stdin: {e}")))?;
    } else {
        let text = std::fs::read(file)
            .map_err(|e| fail(EXIT_SYSTEM, format!("reading the password from {file}: {e}")))?;
        let text = String::from_utf8(text)
            .map_err(|_| fail(EXIT_USAGE, format!("the password in {file} is not UTF-8")))?;
        line = text.lines().next().unwrap_or("").to_string();
    }
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        let from = if file == "-" { "standard input" } else { file };
        return Err(fail(EXIT_USAGE, format!("no password on the first line of {from}")));
    }
    Ok(password.to_string())
}

/// Runs `stty ARG` on our terminal; true when it worked.
fn stty(arg: &str) -> bool {
    Command::new("stty")
        .arg(arg)
        .stdin(Stdio::inherit())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_command_not_its_arguments() {
        assert_eq!(first_words("a1 SELECT INBOX"), "a1 SELECT");
        assert_eq!(first_words("a2 APPEND\r\nsecret"), "a2 APPEND");
    }

    #[test]
    fn a_password_argument_is_a_usage_error_before_anything_is_asked() {
        let gone = format!("/nonexistent-{}/infifo", std::process::id());
        let args = ["inquerytest", "-i", gone.as_str(), "imap", "login", "alice", "s1", "pw"];
        assert_eq!(crate::run::main_with(args), EXIT_USAGE);
        let args = ["inquerytest", "-i", gone.as_str(), "imap", "auth", "alice", "pw"];
        assert_eq!(crate::run::main_with(args), EXIT_USAGE);
    }

    #[test]
    fn base64_is_the_standard_padded_one() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"caf\xe9"), "Y2Fm6Q==");
    }

    #[test]
    fn a_password_file_gives_its_first_line() {
        let dir = std::env::temp_dir().join(format!("inquerytest-pw-{}", std::process::id()));
        std::fs::write(&dir, "pass word \r\nsecond\n").unwrap();
        let pw = read_password(dir.to_str().unwrap(), "u").map_err(|f| f.msg);
        std::fs::write(&dir, "\n").unwrap();
        let empty = read_password(dir.to_str().unwrap(), "u").map_err(|f| f.code);
        let _ = std::fs::remove_file(&dir);
        assert_eq!(pw.as_deref(), Ok("pass word "), "spaces are part of it");
        assert_eq!(empty, Err(EXIT_USAGE));
    }
}
