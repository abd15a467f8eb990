//! `inquerytest top`: one frame for scripts, and the live view on a real terminal (a pty)
//! that ends on `q` or Ctrl-C with the terminal's settings restored. The README's frame is
//! checked against a real one.

use crate::harness::*;
use inquery::{Lookup, UserStatus};
use nix::sys::termios::{tcgetattr, LocalFlags};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn top(d: &Daemon) -> Command {
    let mut c = Command::new(bin("inquerytest"));
    c.env("FIFOTMPDIR", &d.tmp).args(["-i", d.fifos[0].to_str().unwrap(), "top"]);
    c
}

/// The first word of each line: what a frame shows, whatever the numbers.
fn labels(frame: &str) -> Vec<String> {
    frame.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect()
}

#[test]
fn top_once_prints_one_frame_and_the_readme_shows_a_true_one() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    let c = d.client();
    assert!(c.passwd("alice@example.com").unwrap().is_some());
    // Traffic during the frame's interval, so its rates are rates.
    let busy = std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < until {
            assert_eq!(c.user_status("alice@example.com").unwrap(), UserStatus::Active);
            assert!(c.passwd("alice@example.com").unwrap().is_some());
        }
    });
    let out = top(&d).arg("--once").output().unwrap();
    busy.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let frame = String::from_utf8(out.stdout).unwrap();
    assert!(!frame.contains('\x1b'), "no terminal codes when not on a terminal: {frame:?}");
    for want in [
        "lookups ",
        "cache ",
        "workers  0 of 4 busy",
        "backend mysql://",
        " up for ",
        "IMAP ",
        "\nuser ",
    ] {
        assert!(frame.contains(want), "{want:?} in:\n{frame}");
    }
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let shown = readme
        .split("$ inquerytest top --once\n")
        .nth(1)
        .and_then(|r| r.split("```").next())
        .expect("README shows `inquerytest top --once`");
    assert_eq!(labels(shown), labels(&frame), "README's frame:\n{shown}\nreal:\n{frame}");
}

/// Reads from a pty's master until `needle` shows up.
fn read_until(master: &OwnedFd, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "never saw {needle:?}:\n{}",
            String::from_utf8_lossy(&seen)
        );
        let mut fds = [nix::poll::PollFd::new(master.as_fd(), nix::poll::PollFlags::POLLIN)];
        if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u8)).unwrap_or(0) > 0 {
            match nix::unistd::read(master, &mut buf) {
                Ok(n) => seen.extend_from_slice(&buf[..n]),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

fn wait_exit(child: &mut std::process::Child) -> Option<i32> {
    // Generous: one interval of 1 s at most should pass before it sees the key or signal.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn top_on_a_terminal_redraws_ends_on_q_or_ctrl_c_and_restores_the_terminal() {
    let db = TestDb::new();
    let d = Daemon::start(&db, Opts::default());
    for end in ["q", "ctrl-c"] {
        let pty = nix::pty::openpty(None, None).unwrap();
        let before = tcgetattr(pty.slave.as_fd()).unwrap();
        assert!(before.local_flags.contains(LocalFlags::ICANON));
        let io = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
        let mut child = top(&d)
            .stdin(io(&pty.slave))
            .stdout(io(&pty.slave))
            .stderr(io(&pty.slave))
            .spawn()
            .unwrap();
        let screen = read_until(&pty.master, "(q to quit)");
        assert!(screen.contains("\x1b[H\x1b[2J"), "the screen is redrawn: {screen:?}");
        read_until(&pty.master, "(q to quit)"); // a second frame
        match end {
            "q" => {
                nix::unistd::write(&pty.master, b"q").unwrap();
            }
            _ => nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGINT,
            )
            .unwrap(),
        }
        assert_eq!(wait_exit(&mut child), Some(0), "{end} ends it cleanly");
        let after = tcgetattr(pty.slave.as_fd()).unwrap();
        assert!(
            after.local_flags.contains(LocalFlags::ICANON | LocalFlags::ECHO),
            "{end}: restored"
        );
    }
}
