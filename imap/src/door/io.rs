//! The client's side of the front door: its socket (TCP, Unix, or TLS on TCP), buffered
//! reading of lines and literals before login, and the poll the relay waits in.

use rustls::{ServerConfig, ServerConnection, StreamOwned};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

/// A client's connection.
pub enum ClientStream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// A Unix socket.
    Unix(UnixStream),
    /// TLS on TCP (implicit, or after STARTTLS).
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl std::fmt::Debug for ClientStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientStream::Tcp(_) => "ClientStream(tcp)",
            ClientStream::Unix(_) => "ClientStream(unix)",
            ClientStream::Tls(_) => "ClientStream(tls)",
        })
    }
}

impl ClientStream {
    /// The descriptor, for poll.
    pub fn raw_fd(&self) -> RawFd {
        match self {
            ClientStream::Tcp(s) => s.as_raw_fd(),
            ClientStream::Unix(s) => s.as_raw_fd(),
            ClientStream::Tls(s) => s.sock.as_raw_fd(),
        }
    }

    /// Is this TLS already?
    pub fn is_tls(&self) -> bool {
        matches!(self, ClientStream::Tls(_))
    }

    /// Is STARTTLS possible on this (plain TCP)?
    pub fn can_starttls(&self) -> bool {
        matches!(self, ClientStream::Tcp(_))
    }

    /// Decrypted bytes waiting that poll would not show.
    pub fn has_buffered(&mut self) -> bool {
        match self {
            ClientStream::Tls(s) => {
                s.conn.process_new_packets().map_or(true, |st| st.plaintext_bytes_to_read() > 0)
            }
            _ => false,
        }
    }

    /// Read and write timeouts.
    pub fn set_timeouts(&self, read: Duration, write: Duration) -> io::Result<()> {
        match self {
            ClientStream::Tcp(s) => {
                s.set_read_timeout(Some(read))?;
                s.set_write_timeout(Some(write))
            }
            ClientStream::Unix(s) => {
                s.set_read_timeout(Some(read))?;
                s.set_write_timeout(Some(write))
            }
            ClientStream::Tls(s) => {
                s.sock.set_read_timeout(Some(read))?;
                s.sock.set_write_timeout(Some(write))
            }
        }
    }

    /// TLS on a plain TCP connection, the handshake done (within the socket's timeouts).
    ///
    /// # Errors
    /// Not TCP, or the handshake failed.
    pub fn into_tls(self, config: Arc<ServerConfig>) -> io::Result<ClientStream> {
        let ClientStream::Tcp(mut sock) = self else {
            return Err(io::Error::other("TLS only on a plain TCP connection"));
        };
        let mut conn = ServerConnection::new(config).map_err(io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)?;
        }
        Ok(ClientStream::Tls(Box::new(StreamOwned::new(conn, sock))))
    }

    /// Sends what is buffered and closes both ways.
    pub fn close(&mut self) {
        let _ = self.flush();
        match self {
            ClientStream::Tcp(s) => {
                let _ = s.shutdown(Shutdown::Both);
            }
            ClientStream::Unix(s) => {
                let _ = s.shutdown(Shutdown::Both);
            }
            ClientStream::Tls(s) => {
                s.conn.send_close_notify();
                let _ = s.conn.complete_io(&mut s.sock);
                let _ = s.sock.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Read for ClientStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ClientStream::Tcp(s) => s.read(buf),
            ClientStream::Unix(s) => s.read(buf),
            ClientStream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for ClientStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ClientStream::Tcp(s) => s.write(buf),
            ClientStream::Unix(s) => s.write(buf),
            ClientStream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            ClientStream::Tcp(s) => s.flush(),
            ClientStream::Unix(s) => s.flush(),
            ClientStream::Tls(s) => s.flush(),
        }
    }
}

/// Which of two descriptors can be read, waiting at most `timeout` (a hang-up or an error
/// counts as readable: the read then tells). `watch_a` false: only `b` is watched.
pub fn poll2(a: RawFd, watch_a: bool, b: RawFd, timeout: Duration) -> io::Result<(bool, bool)> {
    let mut fds = [
        libc::pollfd { fd: if watch_a { a } else { -1 }, events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: b, events: libc::POLLIN, revents: 0 },
    ];
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    loop {
        // SAFETY: fds is a valid array of two pollfd for the call's duration.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if n >= 0 {
            let ready = |p: &libc::pollfd| p.revents != 0;
            return Ok((watch_a && ready(&fds[0]), ready(&fds[1])));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Was this read error only the short read timeout (nothing came)?
pub fn nothing_yet(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
