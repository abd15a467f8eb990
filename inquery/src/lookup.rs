//! The typed calls, written once: [`Lookup`] turns one `ask` into the seven classic
//! questions, and [`crate::Client`], [`crate::Direct`] and [`crate::Querier`] each supply
//! only their own `ask`.

use crate::error::Error;
use inlookup_core::{Answer, Limits, MailHost, Passwd, QueryKind, UserStatus};

/// Asks the seven classic questions, typed. Whatever answers them (the daemon over its
/// FIFO, MySQL directly, or either) implements [`Lookup::ask`]; the typed calls are built
/// on it, so they behave alike everywhere. Bring the trait into scope to call them:
///
/// ```no_run
/// use inquery::{Client, Lookup, UserStatus};
/// let c = Client::from_env();
/// if c.user_status("alice@example.com")? == UserStatus::Active {
///     println!("deliver");
/// }
/// # Ok::<(), inquery::Error>(())
/// ```
///
/// Code that should not care which one it was given takes a `&dyn Lookup` or an
/// `impl Lookup`:
///
/// ```no_run
/// use inquery::{Direct, Lookup, Querier};
/// fn may_relay(l: &dyn Lookup, email: &str, ip: &str) -> bool {
///     l.relay_allowed(email, ip).unwrap_or(false)
/// }
/// may_relay(&Querier::from_env(), "alice@example.com", "192.0.2.10");
/// may_relay(&Direct::from_env(), "alice@example.com", "192.0.2.10");
/// ```
///
/// # Errors
/// Each typed call fails as its implementor's `ask` does ([`crate::Client`]'s,
/// [`crate::Direct`]'s, [`crate::Querier`]'s), and with [`Error::Malformed`] should an
/// answer of another kind come back. "Not found" is an answer, never an error.
pub trait Lookup {
    /// Asks a classic kind and decodes the answer; the typed calls below are built on it.
    ///
    /// ```no_run
    /// use inquery::{Client, Lookup, QueryKind};
    /// let a = Client::from_env().ask(QueryKind::Domain, "example.org", "")?;
    /// # Ok::<(), inquery::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::BadArgument`] for what is never sent (not a classic kind, RELAY without an
    /// IP, a NUL byte, too long); the rest depends on the implementor.
    fn ask(&self, kind: QueryKind, email: &str, ip: &str) -> Result<Answer, Error>;

    /// USER: is `email` a local user, and in what state.
    ///
    /// ```no_run
    /// use inquery::{Client, Lookup, UserStatus};
    /// let c = Client::from_env();
    /// if c.user_status("alice@example.com")? == UserStatus::Active {
    ///     println!("deliver");
    /// }
    /// # Ok::<(), inquery::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Lookup::ask`]; from the daemon, `-1` is [`Error::Backend`].
    fn user_status(&self, email: &str) -> Result<UserStatus, Error> {
        match self.ask(QueryKind::User, email, "")? {
            Answer::User { status } => Ok(status),
            other => Err(unexpected(other)),
        }
    }

    /// RELAY: may `email`, connecting from `ip`, relay (POP-before-SMTP)?
    ///
    /// ```no_run
    /// use inquery::Lookup;
    /// let ok = inquery::Client::from_env().relay_allowed("alice@example.com", "192.0.2.10")?;
    /// # Ok::<(), inquery::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::BadArgument`] without an IP; otherwise as [`Lookup::ask`].
    fn relay_allowed(&self, email: &str, ip: &str) -> Result<bool, Error> {
        match self.ask(QueryKind::Relay, email, ip)? {
            Answer::Relay { allowed } => Ok(allowed),
            other => Err(unexpected(other)),
        }
    }

    /// PWD: the passwd record, or `None` for "No such user".
    ///
    /// ```no_run
    /// use inquery::Lookup;
    /// if let Some(pw) = inquery::Client::from_env().passwd("alice@example.com")? {
    ///     println!("{} lives in {}", pw.name, pw.dir);
    /// }
    /// # Ok::<(), inquery::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Lookup::ask`]; from the daemon, a 0 or -1 reply is [`Error::Backend`].
    fn passwd(&self, email: &str) -> Result<Option<Passwd>, Error> {
        match self.ask(QueryKind::Pwd, email, "")? {
            Answer::Pwd { passwd, .. } => Ok(passwd),
            other => Err(unexpected(other)),
        }
    }

    /// HOST: the user's mail store, or `None`.
    ///
    /// ```no_run
    /// use inquery::Lookup;
    /// let h = inquery::Client::from_env().host("alice@example.com")?;
    /// # Ok::<(), inquery::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Lookup::ask`].
    fn host(&self, email: &str) -> Result<Option<MailHost>, Error> {
        match self.ask(QueryKind::Host, email, "")? {
            Answer::Host { host } => Ok(host),
            other => Err(unexpected(other)),
        }
    }

    /// ALIAS: the valias lines of `email` (empty when none).
    ///
    /// ```no_run
    /// use inquery::Lookup;
    /// for line in inquery::Client::from_env().aliases("sales@example.com")? {
    ///     println!("{line}");
    /// }
    /// # Ok::<(), inquery::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Lookup::ask`].
    fn aliases(&self, email: &str) -> Result<Vec<String>, Error> {
        match self.ask(QueryKind::Alias, email, "")? {
            Answer::Alias { lines } => Ok(lines),
            other => Err(unexpected(other)),
        }
    }

    /// LIMIT: the limits of a domain, or of a user's domain; `None` for a bare domain with
    /// no row.
    ///
    /// ```no_run
    /// use inquery::Lookup;
    /// let l = inquery::Client::from_env().limits("example.com")?;
    /// # Ok::<(), inquery::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Lookup::ask`].
    fn limits(&self, email_or_domain: &str) -> Result<Option<Limits>, Error> {
        match self.ask(QueryKind::Limit, email_or_domain, "")? {
            Answer::Limit { limits } => Ok(limits),
            other => Err(unexpected(other)),
        }
    }

    /// DOMAIN: the real domain behind an alias domain, or the input.
    ///
    /// ```no_run
    /// use inquery::Lookup;
    /// let d = inquery::Client::from_env().real_domain("example.org")?;
    /// # Ok::<(), inquery::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Lookup::ask`].
    fn real_domain(&self, domain: &str) -> Result<String, Error> {
        match self.ask(QueryKind::Domain, domain, "")? {
            Answer::Domain { domain, .. } => Ok(domain),
            other => Err(unexpected(other)),
        }
    }
}

/// Refuses what is never asked: a kind that is not one of the seven, or RELAY without an
/// IP. The FIFO client and direct mode both check this first, so both modes fail alike.
pub(crate) fn check_classic(kind: QueryKind, ip: &str) -> Result<(), Error> {
    if !kind.is_classic() {
        return Err(Error::BadArgument(format!("{kind} is not a lookup")));
    }
    if kind == QueryKind::Relay && ip.trim().is_empty() {
        return Err(Error::BadArgument("a relay query needs an IP address".into()));
    }
    Ok(())
}

/// An answer of another kind than asked: `ask` decodes by the kind asked, so never in
/// practice, but a typed call must not panic on it.
fn unexpected(a: Answer) -> Error {
    Error::Malformed(format!("unexpected answer {:?}", a.kind()))
}
