//! Where MySQL is and how to connect: IndiMail's MYSQL_* variables and `control/host.mysql`.

use crate::control::{env_var, read_line};
use mysql::{Opts, OptsBuilder, SslOpts};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Connection settings for the users database.
#[derive(Clone, PartialEq, Eq)]
pub struct MysqlSettings {
    /// Host name or IP (MYSQL_HOST; `localhost` by default).
    pub host: String,
    /// TCP port (MYSQL_VPORT; 3306).
    pub port: u16,
    /// Unix socket, used instead of TCP when set (MYSQL_SOCKET).
    pub socket: Option<String>,
    /// User (MYSQL_USER; IndiMail's default `indimail`).
    pub user: String,
    /// Password (MYSQL_PASSWD; IndiMail's default `ssh-1.5-`). Never logged.
    pub password: String,
    /// Database (MYSQL_DATABASE; `indimail`).
    pub database: String,
    /// Connect timeout (MYSQL_OPT_CONNECT_TIMEOUT seconds; 3 here, not IndiMail's 120,
    /// so a dead server costs a client an error reply, not its own timeout).
    pub connect_timeout: Duration,
    /// Read timeout (MYSQL_OPT_READ_TIMEOUT; 20 s).
    pub read_timeout: Duration,
    /// Write timeout (MYSQL_OPT_WRITE_TIMEOUT; 20 s).
    pub write_timeout: Duration,
    /// TCP keepalive idle time before probes (TCP_KEEPALIVE_IDLE; 30 s).
    pub keepalive_idle: Duration,
    /// Interval between keepalive probes (TCP_KEEPALIVE_INTVL; 10 s).
    pub keepalive_interval: Duration,
    /// Unanswered probes before the peer is declared dead (TCP_KEEPALIVE_CNT; 3).
    pub keepalive_count: u32,
    /// TLS to the server: IndiMail's `ssl` fifth field of host.mysql, host.cntrl or
    /// MYSQL_HOST's colon form, mcdinfo's `use_ssl 1`. Never over a Unix socket.
    pub tls: bool,
    /// The CA certificates (PEM) the server's certificate must chain to, besides the
    /// public roots (MYSQL_TLS_CA).
    pub tls_ca: Option<PathBuf>,
    /// Whether the server's certificate is checked (MYSQL_TLS_VERIFY; off only by name:
    /// 0, no, off or false).
    pub tls_verify: bool,
}

impl fmt::Debug for MysqlSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Default for MysqlSettings {
    fn default() -> Self {
        MysqlSettings {
            host: "localhost".into(),
            port: 3306,
            socket: None,
            user: "indimail".into(),
            password: "ssh-1.5-".into(),
            database: "indimail".into(),
            connect_timeout: Duration::from_secs(3),
            read_timeout: Duration::from_secs(20),
            write_timeout: Duration::from_secs(20),
            keepalive_idle: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(10),
            keepalive_count: 3,
            tls: false,
            tls_ca: None,
            tls_verify: true,
        }
    }
}

fn secs(v: Option<String>) -> Option<Duration> {
    v.and_then(|s| s.trim().parse::<u64>().ok()).filter(|n| *n > 0).map(Duration::from_secs)
}

impl MysqlSettings {
    /// Applies IndiMail's `host:user:pass:socket-or-port[:ssl]` form (host.mysql, or a
    /// MYSQL_HOST with colons). A field left empty keeps its current value.
    pub fn apply_host_line(&mut self, line: &str) {
        let f: Vec<&str> = line.trim().split(':').collect();
        let set = |dst: &mut String, i: usize| {
            if let Some(v) = f.get(i).filter(|v| !v.is_empty()) {
                *dst = v.to_string();
            }
        };
        set(&mut self.host, 0);
        set(&mut self.user, 1);
        set(&mut self.password, 2);
        if let Some(v) = f.get(3).filter(|v| !v.is_empty()) {
            match v.parse::<u16>() {
                Ok(p) => self.port = p,
                Err(_) => self.socket = Some(v.to_string()),
            }
        }
        // IndiMail: TLS only if the fifth field is exactly `ssl`.
        self.tls = f.get(4) == Some(&"ssl");
    }

    /// Settings from the environment and `controldir/host.mysql`, in IndiMail's precedence:
    /// MYSQL_HOST (a host, or the whole colon form) over host.mysql; then MYSQL_USER,
    /// MYSQL_PASSWD, MYSQL_SOCKET, MYSQL_VPORT and MYSQL_DATABASE each over both.
    pub fn from_env(controldir: &Path) -> MysqlSettings {
        Self::from_lookup(controldir, &env_var)
    }

    /// As [`MysqlSettings::from_env`], reading variables through `get` (for tests and for
    /// callers with their own configuration source).
    pub fn from_lookup(controldir: &Path, get: &dyn Fn(&str) -> Option<String>) -> Self {
        let mut s = MysqlSettings::default();
        match get("MYSQL_HOST").filter(|h| !h.is_empty()) {
            Some(h) if h.contains(':') => s.apply_host_line(&h),
            Some(h) => s.host = h,
            None => {
                if let Some(line) = read_line(controldir, "host.mysql") {
                    s.apply_host_line(&line);
                }
            }
        }
        if let Some(v) = get("MYSQL_USER").filter(|v| !v.is_empty()) {
            s.user = v;
        }
        if let Some(v) = get("MYSQL_PASSWD") {
            s.password = v;
        }
        if let Some(v) = get("MYSQL_SOCKET").filter(|v| !v.is_empty()) {
            s.socket = Some(v);
        }
        if let Some(p) = get("MYSQL_VPORT").and_then(|v| v.trim().parse().ok()) {
            s.port = p;
        }
        if let Some(v) = get("MYSQL_DATABASE").filter(|v| !v.is_empty()) {
            s.database = v;
        }
        if let Some(d) = secs(get("MYSQL_OPT_CONNECT_TIMEOUT")) {
            s.connect_timeout = d;
        }
        if let Some(d) = secs(get("MYSQL_OPT_READ_TIMEOUT")) {
            s.read_timeout = d;
        }
        if let Some(d) = secs(get("MYSQL_OPT_WRITE_TIMEOUT")) {
            s.write_timeout = d;
        }
        if let Some(d) = secs(get("TCP_KEEPALIVE_IDLE")) {
            s.keepalive_idle = d;
        }
        if let Some(d) = secs(get("TCP_KEEPALIVE_INTVL")) {
            s.keepalive_interval = d;
        }
        if let Some(n) = get("TCP_KEEPALIVE_CNT").and_then(|v| v.trim().parse().ok()) {
            s.keepalive_count = n;
        }
        s.tls_ca = get("MYSQL_TLS_CA").filter(|v| !v.is_empty()).map(PathBuf::from);
        s.tls_verify = !get("MYSQL_TLS_VERIFY").is_some_and(|v| {
            matches!(v.trim().to_ascii_lowercase().as_str(), "0" | "no" | "off" | "false")
        });
        s
    }

    /// Connection options: TCP to host:port (never silently switching to the socket the
    /// server advertises), or the socket when one is set; timeouts; TCP keepalive.
    pub fn opts(&self) -> Opts {
        let b = OptsBuilder::new()
            .user(Some(&self.user))
            .pass(Some(&self.password))
            .db_name(Some(&self.database))
            .prefer_socket(false)
            .max_allowed_packet(Some(16 * 1024 * 1024))
            .tcp_connect_timeout(Some(self.connect_timeout))
            .read_timeout(Some(self.read_timeout))
            .write_timeout(Some(self.write_timeout))
            .tcp_keepalive_time_ms(Some(self.keepalive_idle.as_millis() as u32))
            .tcp_keepalive_probe_interval_secs(Some(self.keepalive_interval.as_secs() as u32))
            .tcp_keepalive_probe_count(Some(self.keepalive_count));
        let b = match &self.socket {
            Some(sock) => b.socket(Some(sock)),
            None => b.ip_or_hostname(Some(&self.host)).tcp_port(self.port),
        };
        let b = if self.tls && self.socket.is_none() {
            b.ssl_opts(Some(
                SslOpts::default()
                    .with_root_cert_path(self.tls_ca.clone())
                    .with_danger_accept_invalid_certs(!self.tls_verify),
            ))
        } else {
            b
        };
        Opts::from(b)
    }

    /// Where and as whom, for logs: never the password.
    pub fn describe(&self) -> String {
        let at = match &self.socket {
            Some(s) => format!("socket {s}"),
            None => format!("{}:{}", self.host, self.port),
        };
        let tls = if self.tls && self.socket.is_none() { " (TLS)" } else { "" };
        format!("mysql://{}@{}/{}{tls}", self.user, at, self.database)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)], dir: &Path) -> MysqlSettings {
        let m: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        MysqlSettings::from_lookup(dir, &move |k| m.get(k).cloned())
    }

    #[test]
    fn the_ssl_field_and_the_tls_variables() {
        let none = Path::new("/nonexistent");
        let s = from(&[], none);
        assert!(!s.tls && s.tls_verify && s.tls_ca.is_none());
        assert!(s.opts().get_ssl_opts().is_none());
        let s = from(&[("MYSQL_HOST", "db:u:p:3306:ssl"), ("MYSQL_TLS_CA", "/ca.pem")], none);
        assert!(s.tls && s.tls_verify);
        let ssl = s.opts().get_ssl_opts().cloned().unwrap();
        assert_eq!(ssl.root_cert_path(), Some(Path::new("/ca.pem")));
        assert!(!ssl.accept_invalid_certs());
        assert!(s.describe().ends_with("(TLS)"), "{}", s.describe());
        // Exactly `ssl`, as IndiMail compares it.
        assert!(!from(&[("MYSQL_HOST", "db:u:p:3306:SSL")], none).tls);
        let s = from(&[("MYSQL_HOST", "db::::ssl"), ("MYSQL_TLS_VERIFY", "off")], none);
        assert!(s.opts().get_ssl_opts().unwrap().accept_invalid_certs());
        // Never over a Unix socket.
        let s = from(&[("MYSQL_HOST", "db:u:p:/run/my.sock:ssl")], none);
        assert!(s.tls && s.opts().get_ssl_opts().is_none());
    }

    #[test]
    fn defaults_are_indimails() {
        let s = from(&[], Path::new("/nonexistent"));
        assert_eq!((s.user.as_str(), s.database.as_str(), s.port), ("indimail", "indimail", 3306));
    }

    #[test]
    fn host_mysql_then_variables_override() {
        let d = std::env::temp_dir().join(format!("hm-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("host.mysql"), "db1:u1:p1:3307\n").unwrap();
        let s = from(&[], &d);
        assert_eq!(
            (s.host.as_str(), s.user.as_str(), s.password.as_str(), s.port),
            ("db1", "u1", "p1", 3307)
        );
        let s = from(&[("MYSQL_USER", "u2"), ("MYSQL_VPORT", "3308")], &d);
        assert_eq!((s.host.as_str(), s.user.as_str(), s.port), ("db1", "u2", 3308));
        let s = from(&[("MYSQL_HOST", "db2")], &d);
        assert_eq!(
            (s.host.as_str(), s.user.as_str()),
            ("db2", "indimail"),
            "MYSQL_HOST wins over host.mysql"
        );
        let s = from(&[("MYSQL_HOST", "db3:u3::/run/my.sock")], &d);
        assert_eq!(s.socket.as_deref(), Some("/run/my.sock"));
        assert_eq!(s.password, "ssh-1.5-", "an empty field keeps the default");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn describe_never_shows_the_password() {
        let s = MysqlSettings { password: "hunter2".into(), ..MysqlSettings::default() };
        assert!(!s.describe().contains("hunter2"));
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
