//! A self-pipe that wakes the I/O thread's `poll` from other threads.

use nix::fcntl::OFlag;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

/// The read end, polled by the I/O thread.
#[derive(Debug)]
pub struct WakeReceiver {
    fd: OwnedFd,
}

/// The write end; clone it into every thread that needs to wake the I/O thread.
#[derive(Debug, Clone)]
pub struct Waker {
    fd: Arc<OwnedFd>,
}

/// A connected pair.
///
/// # Errors
/// `pipe2` failed (out of descriptors).
pub fn pair() -> nix::Result<(Waker, WakeReceiver)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    Ok((Waker { fd: Arc::new(w) }, WakeReceiver { fd: r }))
}

impl Waker {
    /// Makes the receiver readable. A full pipe already is, so EAGAIN is fine.
    pub fn wake(&self) {
        let _ = nix::unistd::write(&*self.fd, &[1]);
    }
}

impl WakeReceiver {
    /// The descriptor to poll.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Empties the pipe.
    pub fn drain(&self) {
        let mut buf = [0u8; 256];
        while matches!(nix::unistd::read(&self.fd, &mut buf), Ok(n) if n > 0) {}
    }
}
