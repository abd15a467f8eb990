//! The floor: a trivial FIFO server. One thread polls its request FIFO, as the daemon's I/O
//! thread does, decodes frames with the daemon's own decoder, and answers every one with
//! the same fixed PWD-sized reply: open the reply FIFO, write, close. No cache, no checks,
//! no logging: what is left is the transport.
//!
//! `echo fifo=PATH body=TEXT` prints `ready` once it listens, and exits when its stdin
//! closes. With `checks=DIR` (for the profile only, never in the matrix) it also does what
//! the daemon does around each reply (`ReplyDir::open_reply`, `Replier::send`): check that
//! the reply path's directory is DIR as spelled (else `stat` it and compare device and
//! inode), `openat` the name under a descriptor of DIR with `O_NOFOLLOW`, `fstat` the
//! descriptor, write (the name is left to the client, as the daemon leaves it).

use crate::cli::Args;
use crate::Res;
use inlookup_core::wire::{self, Decoded};
use nix::errno::Errno;
use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::stat::Mode;
use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

/// The reply: `body` NUL-terminated behind its length, as a PWD reply is framed.
pub fn reply_bytes(body: &str) -> Vec<u8> {
    let mut b = body.as_bytes().to_vec();
    b.push(0);
    wire::body_reply(&b)
}

pub fn main(args: &[String]) -> Res<()> {
    let a = Args::parse(args)?;
    let path = a.need("fifo")?;
    let reply = reply_bytes(a.need("body")?);
    let checks = match a.get("checks") {
        Some(d) => {
            let fd =
                open(d, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
            let st = nix::sys::stat::fstat(&fd)?;
            Some(Checks {
                spelled: d.trim_end_matches('/').to_string(),
                fd,
                id: (st.st_dev, st.st_ino),
            })
        }
        None => None,
    };
    match nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o666)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(format!("mkfifo {path}: {e}").into()),
    }
    // As the daemon: our own write end means no EOF when the last client closes.
    let fifo = open(path, OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC, Mode::empty())?;
    fcntl(&fifo, FcntlArg::F_SETPIPE_SZ(1 << 20))?;
    let stdin = std::io::stdin();
    {
        let mut out = std::io::stdout().lock();
        out.write_all(b"ready\n")?;
        out.flush()?;
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let mut fds = [
            PollFd::new(fifo.as_fd(), PollFlags::POLLIN),
            PollFd::new(stdin.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::from(1000u16)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            return Ok(()); // stdin closed (or written to): the run is over
        }
        if !fds[0].revents().is_some_and(|r| r.contains(PollFlags::POLLIN)) {
            continue;
        }
        loop {
            match nix::unistd::read(&fifo, &mut buf) {
                Ok(0) | Err(Errno::EAGAIN) => break,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut at = 0;
        loop {
            match wire::decode(&pending[at..]) {
                Decoded::Frame { frame, used } => {
                    at += used;
                    match &checks {
                        Some(dir) => answer_checked(dir, frame.reply_path, &reply),
                        None => answer(frame.reply_path, &reply),
                    }
                }
                Decoded::Bad { skip, .. } => at += skip,
                Decoded::NeedMore => break,
            }
        }
        pending.drain(..at);
    }
}

fn answer(path: &[u8], reply: &[u8]) {
    let flags = OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    if let Ok(fd) = open(OsStr::from_bytes(path), flags, Mode::empty()) {
        let _ = nix::unistd::write(&fd, reply);
    }
}

/// The daemon's reply path, syscall for syscall (see the module comment).
fn answer_checked(dir: &Checks, path: &[u8], reply: &[u8]) {
    use nix::sys::stat::{fstat, stat};
    let p = std::path::Path::new(OsStr::from_bytes(path));
    let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else { return };
    if parent.as_os_str().as_bytes() != dir.spelled.as_bytes() {
        match stat(parent) {
            Ok(st) if (st.st_dev, st.st_ino) == dir.id => {}
            _ => return,
        }
    }
    let flags = OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let Ok(fd) = nix::fcntl::openat(&dir.fd, name, flags, Mode::empty()) else { return };
    if !fstat(&fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFIFO) {
        return;
    }
    let _ = nix::unistd::write(&fd, reply);
}

/// FIFOTMPDIR as the daemon holds it.
struct Checks {
    /// The path as given.
    spelled: String,
    /// A descriptor of it.
    fd: std::os::fd::OwnedFd,
    /// Its device and inode.
    id: (u64, u64),
}
