//! IndiMail's control files and environment conventions, shared by the daemon and clients.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// IndiMail's SYSCONFDIR: a relative CONTROLDIR is taken from here.
pub const SYSCONFDIR: &str = "/etc/indimail";
/// CONTROLDIR when unset.
pub const DEFAULT_CONTROLDIR: &str = "control";
/// `timeoutread` / `timeoutwrite` when their control file is absent: 4 seconds, as IndiMail.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(4);

/// A variable from the environment, treating unset as `None`. An envdir's `echo > file`
/// defines a variable as empty, which is a value (IndiMail counts it as "on").
pub fn env_var(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

/// The control directory: CONTROLDIR (absolute as given, relative under [`SYSCONFDIR`]).
pub fn controldir(value: Option<&str>) -> PathBuf {
    let v = value.filter(|s| !s.is_empty()).unwrap_or(DEFAULT_CONTROLDIR);
    if v.starts_with('/') {
        PathBuf::from(v)
    } else {
        Path::new(SYSCONFDIR).join(v)
    }
}

/// The first line of a control file, trimmed; `None` when absent or empty.
pub fn read_line(dir: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(name)).ok()?;
    let line = text.lines().next()?.trim().to_string();
    (!line.is_empty()).then_some(line)
}

/// A control file holding whole seconds (`timeoutread`), or `default`.
///
/// ```
/// use inlookup_core::control::{read_secs, DEFAULT_TIMEOUT};
/// let d = std::env::temp_dir().join(format!("ctl-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&d).unwrap();
/// std::fs::write(d.join("timeoutread"), "9\n").unwrap();
/// assert_eq!(read_secs(&d, "timeoutread", DEFAULT_TIMEOUT).as_secs(), 9);
/// assert_eq!(read_secs(&d, "timeoutwrite", DEFAULT_TIMEOUT), DEFAULT_TIMEOUT);
/// std::fs::remove_dir_all(&d).unwrap();
/// ```
pub fn read_secs(dir: &Path, name: &str, default: Duration) -> Duration {
    read_line(dir, name)
        .and_then(|l| l.parse::<u64>().ok())
        .filter(|n| *n > 0)
        .map(Duration::from_secs)
        .unwrap_or(default)
}

/// The read and write timeouts both ends use, from `timeoutread` and `timeoutwrite`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// How long to wait for a reply (client) or the rest of a request (server).
    pub read: Duration,
    /// How long a write may block.
    pub write: Duration,
}

impl Timeouts {
    /// Reads both control files in `dir`; each defaults to [`DEFAULT_TIMEOUT`].
    pub fn from_controldir(dir: &Path) -> Timeouts {
        Timeouts {
            read: read_secs(dir, "timeoutread", DEFAULT_TIMEOUT),
            write: read_secs(dir, "timeoutwrite", DEFAULT_TIMEOUT),
        }
    }
}

/// DEFAULT_DOMAIN, else the `defaultdomain` control file: the domain for a bare user name.
pub fn default_domain(dir: &Path) -> Option<String> {
    default_domain_from(dir, &env_var)
}

/// As [`default_domain`], reading DEFAULT_DOMAIN through `get`.
pub fn default_domain_from(dir: &Path, get: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    get("DEFAULT_DOMAIN")
        .filter(|d| !d.is_empty())
        .or_else(|| read_line(dir, "defaultdomain"))
        .map(|d| d.to_ascii_lowercase())
}

/// The local host's IP as IndiMail's `get_local_ip` finds it: the first line of
/// `control/hostip`, else the first IPv4 address the host name resolves to (through the
/// system resolver: `/etc/hosts` first, as configured).
pub fn local_ip(dir: &Path) -> Option<String> {
    if let Some(ip) = read_line(dir, "hostip") {
        return Some(ip);
    }
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    use std::net::ToSocketAddrs;
    (name, 0)
        .to_socket_addrs()
        .ok()?
        .find(std::net::SocketAddr::is_ipv4)
        .map(|a| a.ip().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controldir_is_relative_to_sysconfdir() {
        assert_eq!(controldir(None), PathBuf::from("/etc/indimail/control"));
        assert_eq!(controldir(Some("")), PathBuf::from("/etc/indimail/control"));
        assert_eq!(controldir(Some("ctl")), PathBuf::from("/etc/indimail/ctl"));
        assert_eq!(controldir(Some("/x/y")), PathBuf::from("/x/y"));
    }

    #[test]
    fn hostip_names_the_local_ip_else_the_host_name_does() {
        let d = std::env::temp_dir().join(format!("ctl-hostip-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("hostip"), "192.0.2.7\n").unwrap();
        assert_eq!(local_ip(&d).as_deref(), Some("192.0.2.7"));
        std::fs::remove_file(d.join("hostip")).unwrap();
        // Without the file: whatever the host name resolves to, an IPv4 address if any.
        if let Some(ip) = local_ip(&d) {
            assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{ip}");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bad_timeouts_fall_back_to_the_default() {
        let d = std::env::temp_dir().join(format!("ctl-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("timeoutread"), "zero\n").unwrap();
        std::fs::write(d.join("timeoutwrite"), "0\n").unwrap();
        let t = Timeouts::from_controldir(&d);
        assert_eq!(t, Timeouts { read: DEFAULT_TIMEOUT, write: DEFAULT_TIMEOUT });
        std::fs::remove_dir_all(&d).unwrap();
    }
}
