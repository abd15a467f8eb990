//! # inlookup-core
//!
//! What can be asked of inlookup and what an answer is: the query kinds, the
//! IndiMail-compatible wire codec, typed answers with their exact reply bytes, the
//! `struct vlimits` layout, cache keys, and the SQL lookups that answer each kind over a
//! MySQL connection. The daemon (`inlookup`) and the client's direct mode (`inquery`) share
//! these, so both give the same answer for the same data.
//!
//! # Layout
//!
//! - [`kind`]: the query kinds and their type bytes.
//! - [`wire`]: request frames (encode, decode with resync) and reply framing. Pure.
//! - [`answer`]: typed answers and their IndiMail reply bytes, both ways.
//! - [`limits`]: the LIMIT reply's `struct vlimits` layout.
//! - [`address`]: `user@domain` parsing and cache keys folded as MySQL compares.
//! - [`cluster`]: IndiMail's clustered layout (host.cntrl, mcdinfo, automatic entries), read
//!   only, and which database each lookup goes to.
//! - [`admin`]: JSON payloads of inlookup's own kinds (PING, STATS, FLUSH).
//! - [`control`]: IndiMail's control files and CONTROLDIR, timeouts, DEFAULT_DOMAIN.
//! - [`domains`]: real domains from REAL_DOMAINS/ALIAS_DOMAINS, qmail's assign cdb and
//!   rcpthosts, watched for changes (IndiMail's `get_real_domain` order).
//! - [`mysqlconf`]: MYSQL_* variables and `host.mysql` into connection options.
//! - [`lookup`]: the SQL for each kind, with bound parameters only.
//! - [`shared`]: the shared-memory cache's format, its one writer and its readers.

pub mod address;
pub mod admin;
pub mod answer;
pub mod cluster;
pub mod control;
pub mod domains;
pub mod kind;
pub mod limits;
pub mod lookup;
pub mod mysqlconf;
pub mod shared;
pub mod wire;

pub use address::{cache_key, Address, CacheKey};
pub use answer::{Answer, MailHost, Passwd, ReplyError, UserStatus};
pub use kind::QueryKind;
pub use limits::Limits;
pub use lookup::{LookupConfig, LookupError, Lookups, RealDomain, Tables};
pub use mysqlconf::MysqlSettings;
