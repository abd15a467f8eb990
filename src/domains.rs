//! Which domain a domain really is, from the files IndiMail records it in, in the order of
//! IndiMail's `get_real_domain`:
//!
//! 1. REAL_DOMAINS and ALIAS_DOMAINS (colon-separated lists in the environment): a listed
//!    domain is its own real domain.
//! 2. qmail's assign cdb, `ASSIGNDIR/cdb` (`/etc/indimail/users/cdb` by default): a domain
//!    with a `!domain-` entry is the basename of its directory's symlink target (how
//!    `vaddaliasdomain` records an alias domain), or itself when the directory is not a
//!    symlink. A domain whose directory is missing is "not found".
//! 3. The `aliasdomain` table: the caller's SQL ([`resolve`] takes it as a closure, run only
//!    when the files leave the domain open).
//! 4. `control/rcpthosts` and `control/morercpthosts` (text, as IndiMail reads them): a
//!    listed domain is its own real domain; any other is unknown, which every kind answers
//!    as IndiMail's `findmdahost` does: with the domain itself.
//!
//! The files are read once into memory ([`DomainFiles`]) and watched ([`DomainWatch`]): a
//! change of their mtime, size or inode (checked at most once a second) or a HUP reloads
//! them; a lookup never touches the filesystem. A file that cannot be read is logged and
//! leaves what was loaded before in place.

use crate::control::SYSCONFDIR;
use std::collections::{HashMap, HashSet};
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// ASSIGNDIR when unset: qmail's `users` under IndiMail's SYSCONFDIR.
pub const DEFAULT_ASSIGNDIR: &str = "/etc/indimail/users";

/// How often [`DomainWatch::check`] looks at the files at most.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Where the domain files are, and the listed domains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSources {
    /// ASSIGNDIR: the directory of qmail's `assign` and its compiled `cdb`.
    pub assign_dir: PathBuf,
    /// CONTROLDIR, for `rcpthosts` and `morercpthosts`.
    pub controldir: PathBuf,
    /// REAL_DOMAINS, then ALIAS_DOMAINS, split at `:` (lower case).
    pub listed: Vec<String>,
}

impl Default for DomainSources {
    fn default() -> Self {
        DomainSources {
            assign_dir: PathBuf::from(DEFAULT_ASSIGNDIR),
            controldir: Path::new(SYSCONFDIR).join(crate::control::DEFAULT_CONTROLDIR),
            listed: Vec::new(),
        }
    }
}

impl DomainSources {
    /// From ASSIGNDIR (used as given, as IndiMail's `get_assign` does), REAL_DOMAINS and
    /// ALIAS_DOMAINS read through `get`, with the control directory given.
    ///
    /// ```
    /// use inlookup_core::domains::DomainSources;
    /// let env = |n: &str| match n {
    ///     "REAL_DOMAINS" => Some("Example.com:example.org".to_string()),
    ///     "ALIAS_DOMAINS" => Some("example.net".to_string()),
    ///     _ => None,
    /// };
    /// let s = DomainSources::from_lookup("/etc/indimail/control".as_ref(), &env);
    /// assert_eq!(s.listed, ["example.com", "example.org", "example.net"]);
    /// assert_eq!(s.assign_dir.to_str(), Some("/etc/indimail/users"));
    /// ```
    pub fn from_lookup(controldir: &Path, get: &dyn Fn(&str) -> Option<String>) -> DomainSources {
        let mut listed = Vec::new();
        for name in ["REAL_DOMAINS", "ALIAS_DOMAINS"] {
            if let Some(v) = get(name) {
                listed.extend(v.split(':').filter(|d| !d.is_empty()).map(str::to_lowercase));
            }
        }
        let assign_dir = get("ASSIGNDIR")
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_ASSIGNDIR), PathBuf::from);
        DomainSources { assign_dir, controldir: controldir.to_path_buf(), listed }
    }

    /// The assign cdb.
    pub fn assign_cdb(&self) -> PathBuf {
        self.assign_dir.join("cdb")
    }

    fn rcpthosts(&self) -> [PathBuf; 2] {
        [self.controldir.join("rcpthosts"), self.controldir.join("morercpthosts")]
    }
}

/// What the files say of a domain (steps 1 and 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed {
    /// The files name its real domain (itself, or an alias domain's target).
    Real(String),
    /// In the assign cdb, but its directory is missing: "not found" (IndiMail's
    /// userNotFound).
    Missing,
    /// Not in the lists nor the assign cdb: ask `aliasdomain`.
    Open,
}

/// Where a domain's real domain came from, in [`resolve`]'s order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// REAL_DOMAINS or ALIAS_DOMAINS.
    Lists,
    /// The assign cdb and the domain directory.
    Assign,
    /// The `aliasdomain` table.
    AliasTable,
    /// rcpthosts or morercpthosts.
    RcptHosts,
    /// Nowhere: the domain itself, as IndiMail's `findmdahost` falls back to.
    Unknown,
}

/// A domain resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Its real domain, and where that came from.
    Real(String, Source),
    /// A domain of the assign cdb whose directory is missing: every kind answers "not
    /// found" (DOMAIN echoes it, as IndiMail's does).
    NotFound,
}

/// Resolves `domain` (lower case) in IndiMail's order: the lists and the assign cdb from
/// `files`, then `alias_table` (the `aliasdomain` SELECT, run only when the files leave
/// the domain open), then rcpthosts.
///
/// # Errors
/// Whatever `alias_table` returns.
///
/// ```
/// use inlookup_core::domains::{resolve, DomainFiles, Resolution, Source};
/// let files = DomainFiles::empty();
/// let r = resolve::<()>(&files, "example.org", || Ok(Some("example.com".into())));
/// assert_eq!(r, Ok(Resolution::Real("example.com".into(), Source::AliasTable)));
/// let r = resolve::<()>(&files, "example.net", || Ok(None));
/// assert_eq!(r, Ok(Resolution::Real("example.net".into(), Source::Unknown)));
/// ```
pub fn resolve<E>(
    files: &DomainFiles,
    domain: &str,
    alias_table: impl FnOnce() -> Result<Option<String>, E>,
) -> Result<Resolution, E> {
    match files.listed(domain) {
        Listed::Real(real) => {
            let source = if files.lists.contains(domain) { Source::Lists } else { Source::Assign };
            return Ok(Resolution::Real(real, source));
        }
        Listed::Missing => return Ok(Resolution::NotFound),
        Listed::Open => {}
    }
    if let Some(real) = alias_table()? {
        return Ok(Resolution::Real(real.to_lowercase(), Source::AliasTable));
    }
    let source = if files.rcpthosts.contains(domain) { Source::RcptHosts } else { Source::Unknown };
    Ok(Resolution::Real(domain.to_string(), source))
}

/// A domain of the assign cdb, as its directory says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Assigned {
    Real(String),
    Missing,
}

/// The domain files as loaded: what lookups read, never the filesystem.
#[derive(Debug, Clone, Default)]
pub struct DomainFiles {
    /// REAL_DOMAINS and ALIAS_DOMAINS.
    lists: HashSet<String>,
    /// The assign cdb's domains, resolved through their directories at load.
    assign: HashMap<String, Assigned>,
    /// rcpthosts and morercpthosts.
    rcpthosts: HashSet<String>,
    /// What the files were when loaded, to notice a change.
    stamp: Vec<(PathBuf, Option<Stamp>)>,
}

/// What tells a file changed: mtime (with nanoseconds), size, inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime: (i64, i64),
    size: u64,
    ino: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp { mtime: (m.mtime(), m.mtime_nsec()), size: m.size(), ino: m.ino() })
}

impl DomainFiles {
    /// No files: every domain is open (step 3 decides), as before inlookup read them.
    pub fn empty() -> DomainFiles {
        DomainFiles::default()
    }

    /// Reads the files `sources` names. Never fails: a file that is absent counts as
    /// empty; one that cannot be read or parsed is logged as an error, and what `previous`
    /// had from it is kept (nothing, at start).
    pub fn load(sources: &DomainSources, previous: Option<&DomainFiles>) -> DomainFiles {
        let lists: HashSet<String> = sources.listed.iter().cloned().collect();
        let cdb = sources.assign_cdb();
        let cdb_stamp = stamp(&cdb);
        let (assign, parents) = match read_assign(&cdb) {
            Ok(a) => a,
            Err(e) => {
                log::error!(
                    "{}: {e}; alias domains keep {} until it is fixed",
                    cdb.display(),
                    if previous.is_some() { "what was read before" } else { "none of it" }
                );
                let kept = previous.map(|p| p.assign.clone()).unwrap_or_default();
                (kept, Vec::new())
            }
        };
        // A symlink made or removed in a domains directory changes that directory: watch
        // it too, so an alias added or removed without a new cdb is noticed.
        let mut stamps = vec![(cdb, cdb_stamp)];
        let mut rcpthosts = HashSet::new();
        for path in sources.rcpthosts() {
            stamps.push((path.clone(), stamp(&path)));
            match read_lines(&path) {
                Ok(names) => rcpthosts.extend(names),
                Err(e) => {
                    log::error!("{}: {e}; its domains are not read", path.display());
                }
            }
        }
        for p in parents {
            let s = stamp(&p);
            stamps.push((p, s));
        }
        DomainFiles { lists, assign, rcpthosts, stamp: stamps }
    }

    /// What the lists and the assign cdb say of `domain` (lower case).
    pub fn listed(&self, domain: &str) -> Listed {
        if self.lists.contains(domain) {
            return Listed::Real(domain.to_string());
        }
        match self.assign.get(domain) {
            Some(Assigned::Real(r)) => Listed::Real(r.clone()),
            Some(Assigned::Missing) => Listed::Missing,
            None => Listed::Open,
        }
    }

    /// True when a watched file changed since it was loaded.
    pub fn changed(&self) -> bool {
        self.stamp.iter().any(|(p, s)| stamp(p) != *s)
    }

    /// Domains known from the assign cdb.
    pub fn assigned(&self) -> usize {
        self.assign.len()
    }
}

/// The domain entries of a qmail assign cdb (`!domain-` keys; the value's fields are
/// user, uid, gid, directory, dash, extension, each ending in NUL, as qmail-newu writes
/// them), each resolved through its directory, and the directories holding those
/// directories. An absent file has none.
fn read_assign(path: &Path) -> Result<(HashMap<String, Assigned>, Vec<PathBuf>), String> {
    let mut out = HashMap::new();
    let mut parents = Vec::new();
    for (domain, dir) in assign_entries(path)? {
        if let Some(p) = dir.parent() {
            parents.push(p.to_path_buf());
        }
        let resolved = match std::fs::symlink_metadata(&dir) {
            Err(e) if e.kind() == ErrorKind::NotFound => Assigned::Missing,
            Err(e) => {
                log::warn!("{}: {e}; {domain} is taken as its own real domain", dir.display());
                Assigned::Real(domain.clone())
            }
            Ok(m) if m.file_type().is_symlink() => match std::fs::read_link(&dir) {
                Ok(target) => {
                    let t = target.to_string_lossy();
                    let base = t.trim_end_matches('/').rsplit('/').next().unwrap_or("");
                    if base.is_empty() {
                        Assigned::Real(domain.clone())
                    } else {
                        Assigned::Real(base.to_lowercase())
                    }
                }
                Err(_) => Assigned::Real(domain.clone()),
            },
            Ok(_) => Assigned::Real(domain.clone()),
        };
        out.insert(domain, resolved);
    }
    parents.sort();
    parents.dedup();
    Ok((out, parents))
}

/// The (domain, directory) pairs of an assign cdb's domain entries.
fn assign_entries(path: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    use std::os::unix::ffi::OsStrExt;
    match std::fs::metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
        Ok(_) => {}
    }
    let cdb = cdb2::CDB::open(path).map_err(|e| format!("not a cdb: {e}"))?;
    let mut out = Vec::new();
    for record in cdb.iter() {
        let (key, value) = record.map_err(|e| format!("not a cdb: {e}"))?;
        let Some(name) = key.strip_prefix(b"!").and_then(|k| k.strip_suffix(b"-")) else {
            continue;
        };
        let Ok(domain) = std::str::from_utf8(name) else { continue };
        if domain.is_empty() {
            continue;
        }
        // user, uid, gid, dir, …
        let Some(dir) = value.split(|b| *b == 0).nth(3).filter(|d| !d.is_empty()) else {
            continue;
        };
        out.push((domain.to_lowercase(), PathBuf::from(std::ffi::OsStr::from_bytes(dir))));
    }
    Ok(out)
}

/// The names of a control file such as rcpthosts, as IndiMail reads it: `#` starts a
/// comment, leading white space is skipped, empty lines are skipped. An absent file has
/// none.
fn read_lines(path: &Path) -> Result<Vec<String>, std::io::Error> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(String::from_utf8_lossy(&text)
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim_start())
        .filter(|l| !l.is_empty())
        .map(str::to_lowercase)
        .collect())
}

/// The domain files, shared by every lookup and reloaded when they change.
#[derive(Debug)]
pub struct DomainWatch {
    sources: DomainSources,
    current: RwLock<Arc<DomainFiles>>,
    /// When the files were last looked at.
    checked: Mutex<Instant>,
}

impl DomainWatch {
    /// Loads the files.
    pub fn new(sources: DomainSources) -> DomainWatch {
        let files = DomainFiles::load(&sources, None);
        DomainWatch {
            sources,
            current: RwLock::new(Arc::new(files)),
            checked: Mutex::new(Instant::now()),
        }
    }

    /// Where the files are.
    pub fn sources(&self) -> &DomainSources {
        &self.sources
    }

    /// The files as last loaded.
    pub fn current(&self) -> Arc<DomainFiles> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// At most once per [`CHECK_EVERY`]: reloads the files if one changed. Returns true
    /// when it reloaded (the caller then forgets answers made from the old ones).
    pub fn check(&self, now: Instant) -> bool {
        {
            let mut at = self.checked.lock().unwrap_or_else(|e| e.into_inner());
            if now.saturating_duration_since(*at) < CHECK_EVERY {
                return false;
            }
            *at = now;
        }
        if !self.current().changed() {
            return false;
        }
        self.reload();
        true
    }

    /// Reloads the files now (HUP, or a change noticed).
    pub fn reload(&self) {
        let old = self.current();
        let files = DomainFiles::load(&self.sources, Some(&old));
        log::info!(
            "domain files read: {} domains in {}, {} in rcpthosts and morercpthosts",
            files.assign.len(),
            self.sources.assign_cdb().display(),
            files.rcpthosts.len()
        );
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(files);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tempdir(what: &str) -> Dir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("dom-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    /// An assign cdb as qmail-newu writes it, for `(domain, dir)` pairs.
    fn write_cdb(path: &Path, domains: &[(&str, &Path)]) {
        let tmp = path.with_extension("tmp");
        let mut w = cdb2::CDBMake::new(std::fs::File::create(&tmp).unwrap()).unwrap();
        for (d, dir) in domains {
            let value = format!("{d}\x00555\x00555\x00{}\x00-\x00\x00", dir.display());
            w.add(format!("!{d}-").as_bytes(), value.as_bytes()).unwrap();
        }
        w.finish().unwrap();
        std::fs::rename(tmp, path).unwrap();
    }

    /// Domain directories: example.com real, example.net a symlink to it, gone.example
    /// assigned but missing.
    fn site(d: &Path) -> DomainSources {
        let (users, control, domains) = (d.join("users"), d.join("control"), d.join("domains"));
        for p in [&users, &control, &domains] {
            std::fs::create_dir_all(p).unwrap();
        }
        std::fs::create_dir(domains.join("example.com")).unwrap();
        std::os::unix::fs::symlink(domains.join("example.com"), domains.join("example.net"))
            .unwrap();
        write_cdb(
            &users.join("cdb"),
            &[
                ("example.com", &domains.join("example.com")),
                ("example.net", &domains.join("example.net")),
                ("gone.example", &domains.join("gone.example")),
            ],
        );
        std::fs::write(control.join("rcpthosts"), "# local\n  local.example\nexample.org \n")
            .unwrap();
        DomainSources {
            assign_dir: users,
            controldir: control,
            listed: vec!["listed.example".into()],
        }
    }

    #[test]
    fn resolution_follows_indimails_order() {
        let d = tempdir("order");
        let files = DomainFiles::load(&site(&d.0), None);
        let never = || -> Result<Option<String>, ()> { panic!("the SELECT ran") };
        // 1. Listed: itself, without SQL.
        assert_eq!(
            resolve(&files, "listed.example", never),
            Ok(Resolution::Real("listed.example".into(), Source::Lists))
        );
        // 2. The assign cdb: a symlinked directory names the real domain, a plain one is
        //    its own, a missing one is not found; none of them runs the SELECT.
        assert_eq!(
            resolve(&files, "example.net", never),
            Ok(Resolution::Real("example.com".into(), Source::Assign))
        );
        assert_eq!(
            resolve(&files, "example.com", never),
            Ok(Resolution::Real("example.com".into(), Source::Assign))
        );
        assert_eq!(resolve(&files, "gone.example", never), Ok(Resolution::NotFound));
        // 3. aliasdomain, before rcpthosts.
        let table = || Ok::<_, ()>(Some("Example.COM".to_string()));
        assert_eq!(
            resolve(&files, "local.example", table),
            Ok(Resolution::Real("example.com".into(), Source::AliasTable))
        );
        // 4. rcpthosts (comments and leading blanks skipped), else unknown: itself both.
        let none = || Ok::<_, ()>(None);
        assert_eq!(
            resolve(&files, "local.example", none),
            Ok(Resolution::Real("local.example".into(), Source::RcptHosts))
        );
        assert_eq!(
            resolve(&files, "elsewhere.example", none),
            Ok(Resolution::Real("elsewhere.example".into(), Source::Unknown))
        );
        // The SELECT's error is the lookup's.
        assert_eq!(resolve(&files, "x.example", || Err::<Option<String>, _>("down")), Err("down"));
    }

    #[test]
    fn a_changed_file_is_reloaded_after_the_check_interval() {
        let d = tempdir("reload");
        let sources = site(&d.0);
        let w = DomainWatch::new(sources.clone());
        assert_eq!(w.current().listed("example.net"), Listed::Real("example.com".into()));
        let start = Instant::now() + CHECK_EVERY;
        assert!(!w.check(start), "nothing changed");
        // The alias removed as vdeldomain does: symlink and cdb entry.
        let domains = d.0.join("domains");
        std::fs::remove_file(domains.join("example.net")).unwrap();
        write_cdb(&sources.assign_cdb(), &[("example.com", &domains.join("example.com"))]);
        assert!(!w.check(start), "checked less than a second ago");
        assert_eq!(w.current().listed("example.net"), Listed::Real("example.com".into()));
        assert!(w.check(start + CHECK_EVERY));
        assert_eq!(w.current().listed("example.net"), Listed::Open);
        // A symlink added without a new cdb: the domains directory changed.
        std::os::unix::fs::symlink(domains.join("example.com"), domains.join("gone.example"))
            .unwrap();
        write_cdb(
            &sources.assign_cdb(),
            &[
                ("example.com", &domains.join("example.com")),
                ("gone.example", &domains.join("gone.example")),
            ],
        );
        assert!(w.check(start + CHECK_EVERY * 2));
        assert_eq!(w.current().listed("gone.example"), Listed::Real("example.com".into()));
        // rcpthosts is watched too.
        std::fs::write(sources.controldir.join("morercpthosts"), "more.example\n").unwrap();
        assert!(w.check(start + CHECK_EVERY * 3));
        let r = resolve::<()>(&w.current(), "more.example", || Ok(None));
        assert_eq!(r, Ok(Resolution::Real("more.example".into(), Source::RcptHosts)));
    }

    #[test]
    fn a_corrupt_cdb_is_an_error_that_keeps_what_was_read_before() {
        let d = tempdir("corrupt");
        let sources = site(&d.0);
        let w = DomainWatch::new(sources.clone());
        // Too short to be a cdb, then a cdb whose record runs past its end.
        std::fs::write(sources.assign_cdb(), b"garbage").unwrap();
        assert!(w.check(Instant::now() + CHECK_EVERY));
        assert_eq!(w.current().listed("example.net"), Listed::Real("example.com".into()));
        let mut bad = vec![0u8; 2048 + 16];
        bad[0..4].copy_from_slice(&(2048u32 + 16).to_le_bytes());
        bad[2048..2052].copy_from_slice(&1000u32.to_le_bytes());
        std::fs::write(sources.assign_cdb(), &bad).unwrap();
        assert!(w.check(Instant::now() + CHECK_EVERY * 2));
        assert_eq!(w.current().listed("example.net"), Listed::Real("example.com".into()));
        // At start, with nothing before it: no domains from it, no crash.
        let fresh = DomainFiles::load(&sources, None);
        assert_eq!((fresh.assigned(), fresh.listed("example.net")), (0, Listed::Open));
        // An absent cdb is no error: no domains.
        std::fs::remove_file(sources.assign_cdb()).unwrap();
        assert_eq!(DomainFiles::load(&sources, None).assigned(), 0);
    }
}
