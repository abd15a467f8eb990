//! The daemon's side of the shared-memory cache: a file it creates beside the request FIFO,
//! maps and keeps as the mirror of its cache ([`crate::cache::Cache`] publishes, removes and
//! clears through [`SharedCache`]). The format and the sequence locks are in
//! [`inlookup_core::shared`]; here are the file, its permissions and its replacement.
//!
//! # The file
//!
//! Created as `NAME.tmp.PID` (exclusive, never through a symlink), mode 0640 with the
//! request FIFO's group (whoever may ask may read: the same trust as the FIFO; PWD answers
//! carry hashes, `SHARED_KINDS` leaves them out), sized, written, then renamed over `NAME`.
//! A predecessor's file is marked retired after the rename, so its readers move to the new
//! one at once, even when the old daemon was killed. At exit the table is retired and its
//! name removed (if it is still ours).

use inlookup_core::admin::SharedCacheStats;
use inlookup_core::shared::{self, Words, Writer};
use inlookup_core::QueryKind;
use memmap2::MmapMut;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

/// A writable mapping as the table's words.
#[derive(Debug)]
pub struct Mapping(MmapMut);

impl Words for Mapping {
    fn words(&self) -> &[AtomicU64] {
        let len = self.0.len() / 8;
        // SAFETY: the mapping is page-aligned, `len` whole words long and lives as long as
        // `self`; `AtomicU64` has `u64`'s layout, and every access through it is atomic.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast::<AtomicU64>(), len) }
    }
}

/// What to publish: which kinds, and how much room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedSettings {
    /// The file (`SHARED_CACHE`).
    pub path: PathBuf,
    /// The kinds published (`SHARED_KINDS`), by type byte 1..=7.
    pub kinds: [bool; 7],
    /// Slots in the table.
    pub slots: usize,
}

impl SharedSettings {
    /// Parses `SHARED_KINDS`: a comma-separated list of the seven classic kinds.
    ///
    /// # Errors
    /// An unknown or uncached kind.
    pub fn parse_kinds(s: &str) -> Result<[bool; 7], String> {
        let mut kinds = [false; 7];
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let k: QueryKind = item.parse().map_err(|e| format!("SHARED_KINDS: {e}"))?;
            if !k.is_classic() {
                return Err(format!("SHARED_KINDS: {k} answers are not cached"));
            }
            kinds[usize::from(k.byte()) - 1] = true;
        }
        Ok(kinds)
    }

    /// Slots for `entries` cache entries within `budget` bytes: a quarter more slots than
    /// entries (a key can only live in its bucket), fewer if the budget says so.
    pub fn slots_for(entries: usize, budget: usize) -> usize {
        let want = entries.saturating_add(entries / 4);
        let room = budget.saturating_sub(shared::HEADER_WORDS * 8) / (shared::SLOT_WORDS * 8);
        let room = room / shared::WAYS * shared::WAYS;
        shared::round_slots(want).min(room).max(shared::WAYS)
    }
}

/// The daemon's published table.
#[derive(Debug)]
pub struct SharedCache {
    writer: Writer<Mapping>,
    path: PathBuf,
    kinds: [bool; 7],
    /// The file's identity, to remove only our own at exit.
    ino: (u64, u64),
    published: u64,
    too_big: u64,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {what}: {e}", path.display()))
}

impl SharedCache {
    /// Creates the file (replacing a predecessor's), with `group`'s group (the request
    /// FIFO's) when given, and maps it.
    ///
    /// # Errors
    /// The file could not be created, sized, mapped or renamed.
    pub fn create(
        s: &SharedSettings,
        default_domain: Option<&str>,
        group: Option<&Path>,
    ) -> std::io::Result<SharedCache> {
        let dd = default_domain.unwrap_or("");
        if dd.len() > shared::MAX_DEFAULT_DOMAIN {
            return Err(std::io::Error::other(format!(
                "DEFAULT_DOMAIN is longer than the {} bytes the shared cache's header holds",
                shared::MAX_DEFAULT_DOMAIN
            )));
        }
        let mut tmp = s.path.clone().into_os_string();
        tmp.push(format!(".tmp.{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp); // our own pid's leftover, from a reused pid
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o640)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(|e| io("create", &tmp, e))?;
        let made = (|| {
            use std::os::unix::fs::PermissionsExt;
            // The umask may have narrowed the mode: set it exactly.
            file.set_permissions(std::fs::Permissions::from_mode(0o640))?;
            if let Some(g) = group {
                let gid = std::fs::metadata(g)?.gid();
                std::os::unix::fs::fchown(&file, None, Some(gid))?;
            }
            let bytes = shared::words_for(s.slots) * 8;
            file.set_len(bytes as u64)?;
            // SAFETY: the file is ours, just created with O_EXCL; nobody truncates it while
            // mapped (readers map it read-only, and a new daemon replaces it by rename).
            let map = unsafe { MmapMut::map_mut(&file)? };
            let writer = Writer::init(Mapping(map), s.slots, dd, std::process::id())
                .map_err(std::io::Error::other)?;
            let md = file.metadata()?;
            Ok::<_, std::io::Error>((writer, (md.dev(), md.ino())))
        })();
        let (writer, ino) = match made {
            Ok(x) => x,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(io("prepare", &tmp, e));
            }
        };
        let old = predecessor(&s.path);
        if let Err(e) = std::fs::rename(&tmp, &s.path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io("rename into place", &s.path, e));
        }
        if let Some(old) = old {
            shared::retire(old.words());
            log::info!("{}: replaced a predecessor's shared cache", s.path.display());
        }
        Ok(SharedCache {
            writer,
            path: s.path.clone(),
            kinds: s.kinds,
            ino,
            published: 0,
            too_big: 0,
        })
    }

    fn wanted(&self, key: &str) -> bool {
        key.as_bytes()
            .first()
            .and_then(|b| self.kinds.get(usize::from(*b).wrapping_sub(1)))
            .copied()
            .unwrap_or(false)
    }

    /// Publishes a cached reply until `expires_ms` (CLOCK_MONOTONIC).
    pub fn publish(&mut self, key: &str, reply: &[u8], expires_ms: u64) {
        if !self.wanted(key) {
            return;
        }
        if self.writer.publish(key.as_bytes(), reply, expires_ms) {
            self.published += 1;
        } else {
            self.too_big += 1;
        }
    }

    /// Publishes a reply again if its key is not in the table (pushed out of a full bucket);
    /// a key already there is left alone (one lookup in its bucket).
    pub fn republish(&mut self, key: &str, reply: &[u8], expires_ms: u64) {
        if self.wanted(key) && !self.writer.contains(key.as_bytes()) {
            self.publish(key, reply, expires_ms);
        }
    }

    /// Removes a key (evicted, flushed, or no longer cached).
    pub fn remove(&mut self, key: &[u8]) {
        self.writer.remove(key);
    }

    /// Hides everything (FLUSH, HUP).
    pub fn clear(&mut self) {
        self.writer.clear();
    }

    /// For STATS.
    pub fn stats(&self) -> SharedCacheStats {
        let c = self.writer.counts();
        SharedCacheStats {
            path: self.path.display().to_string(),
            slots: self.writer.slots() as u64,
            entries: c.entries,
            bytes: c.bytes,
            generation: c.generation,
            published: self.published,
            too_big: self.too_big,
        }
    }
}

impl Drop for SharedCache {
    fn drop(&mut self) {
        self.writer.retire();
        let ours =
            std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.ino);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A predecessor's table at `path`, mapped to be retired: only a regular file of ours (never
/// through a symlink) with the table's magic.
fn predecessor(path: &Path) -> Option<Mapping> {
    let file: File = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let md = file.metadata().ok()?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    // Root (starting before it drops to its user) retires its user's file too.
    let owner_ok = md.uid() == me || me == 0;
    if !md.is_file() || !owner_ok || md.len() < (shared::HEADER_WORDS * 8) as u64 {
        return None;
    }
    // SAFETY: a regular file of ours; only its header words are touched, through atomics.
    let map = unsafe { MmapMut::map_mut(&file).ok()? };
    let m = Mapping(map);
    (m.words()[0].load(std::sync::atomic::Ordering::Acquire) == shared::MAGIC).then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use inlookup_core::shared::{Lookup, Reader};

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("inl-shared-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    struct Ro(memmap2::Mmap);

    impl Words for Ro {
        fn words(&self) -> &[AtomicU64] {
            // SAFETY: as for `Mapping`, read only.
            unsafe {
                std::slice::from_raw_parts(self.0.as_ptr().cast::<AtomicU64>(), self.0.len() / 8)
            }
        }
    }

    fn reader(path: &Path) -> Reader<Ro> {
        let f = File::open(path).unwrap();
        // SAFETY: the test's own file.
        Reader::open(Ro(unsafe { memmap2::Mmap::map(&f).unwrap() })).unwrap()
    }

    #[test]
    fn a_new_table_replaces_and_retires_the_old_and_exit_removes_it() {
        use std::os::unix::fs::PermissionsExt;
        let d = dir("replace");
        let s = SharedSettings {
            path: d.join("infifo.cache"),
            kinds: SharedSettings::parse_kinds("user,pwd").unwrap(),
            slots: 8,
        };
        let mut first = SharedCache::create(&s, Some("x.org"), None).unwrap();
        let md = std::fs::metadata(&s.path).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o640);
        first.publish("\u{3}a@x.org", b"reply", u64::MAX);
        first.publish("\u{2}a@x.org\u{0}1.2.3.4", b"relay", u64::MAX);
        let old = reader(&s.path);
        let mut out = Vec::new();
        assert_eq!(old.get("\u{3}a@x.org".as_bytes(), 0, &mut out), Lookup::Hit);
        out.clear();
        assert_eq!(
            old.get("\u{2}a@x.org\u{0}1.2.3.4".as_bytes(), 0, &mut out),
            Lookup::Miss,
            "not a shared kind"
        );
        assert_eq!(first.stats().published, 1);
        let second = SharedCache::create(&s, Some("x.org"), None).unwrap();
        assert!(old.retired(), "the predecessor's readers are told");
        assert!(!reader(&s.path).retired());
        drop(first);
        assert!(s.path.exists(), "the old daemon leaves the new file alone");
        drop(second);
        assert!(!s.path.exists());
        assert!(std::fs::read_dir(&d).unwrap().next().is_none(), "no temp file left");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_symlink_in_place_is_replaced_not_followed() {
        let d = dir("symlink");
        let victim = d.join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        let path = d.join("infifo.cache");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let s = SharedSettings { path: path.clone(), kinds: [true; 7], slots: 4 };
        let c = SharedCache::create(&s, None, None).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
        drop(c);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn kinds_and_slots() {
        assert!(SharedSettings::parse_kinds("user, domain").unwrap()[0]);
        assert!(SharedSettings::parse_kinds("ping").is_err());
        assert!(SharedSettings::parse_kinds("nope").is_err());
        assert_eq!(SharedSettings::slots_for(100_000, usize::MAX), 125_000);
        assert_eq!(SharedSettings::slots_for(100_000, 1 << 20), 2044, "within the budget");
        assert_eq!(SharedSettings::slots_for(0, 1 << 20), 4);
    }
}
