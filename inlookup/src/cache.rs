//! The result cache: an LRU bounded by entries, with a positive and a negative TTL per kind,
//! holding each answer as its ready-to-send reply bytes.
//!
//! Expired entries stay until evicted, so that when MySQL fails an expired answer can still
//! be served (serve-stale, as Dovecot's auth cache does) up to a maximum age.
//!
//! # Memory
//!
//! The order and the bound come from the `lru` crate; what it holds is kept small, since a
//! million cached PWD answers should fit in about 300 bytes each: an entry's key and reply
//! share one allocation ([`Slot`]), its value is an 8-byte [`Meta`] (expiry as whole
//! seconds since the cache started), and the map is created unbounded, growing with the
//! entries instead of being sized for the capacity up front; the bound is enforced here.

use crate::shared::SharedCache;
use inlookup_core::address::{key_kind, key_subject};
use inlookup_core::admin::SharedCacheStats;
use inlookup_core::QueryKind;
use lru::LruCache;
use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// How long answers of one kind stay fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl {
    /// For answers that found something.
    pub positive: Duration,
    /// For "not found" answers.
    pub negative: Duration,
}

/// TTLs for the seven classic kinds. A zero TTL means "do not cache".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ttls([Ttl; 7]);

const fn ttl(p: u64, n: u64) -> Ttl {
    Ttl { positive: Duration::from_secs(p), negative: Duration::from_secs(n) }
}

impl Default for Ttls {
    /// nscd-like defaults: minutes for what exists, seconds for what does not, and short for
    /// RELAY, whose rows appear the moment a user logs in by POP or IMAP.
    fn default() -> Self {
        Ttls([
            ttl(300, 20),   // user
            ttl(60, 5),     // relay
            ttl(300, 20),   // pwd
            ttl(600, 20),   // host
            ttl(300, 20),   // alias
            ttl(600, 60),   // limit
            ttl(3600, 300), // domain
        ])
    }
}

impl Ttls {
    /// The TTLs of a classic kind.
    pub fn get(&self, kind: QueryKind) -> Ttl {
        self.0[(kind.byte() as usize).saturating_sub(1).min(6)]
    }

    /// Sets one kind's TTLs.
    pub fn set(&mut self, kind: QueryKind, t: Ttl) {
        if kind.is_classic() {
            self.0[kind.byte() as usize - 1] = t;
        }
    }
}

impl FromStr for Ttls {
    type Err = String;

    /// `kind=POS[/NEG],…` in seconds over the defaults, e.g. `pwd=60/5,relay=30/0`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut t = Ttls::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (k, v) = item.split_once('=').ok_or(format!("{item:?}: want kind=POS[/NEG]"))?;
            let kind: QueryKind = k.parse().map_err(|e| format!("{e}"))?;
            if !kind.is_classic() {
                return Err(format!(
                    "{k}: only user, relay, pwd, host, alias, limit and domain are cached"
                ));
            }
            let num = |x: &str| {
                x.trim()
                    .parse::<u64>()
                    .map(Duration::from_secs)
                    .map_err(|_| format!("{item:?}: bad seconds {x:?}"))
            };
            let old = t.get(kind);
            let new = match v.split_once('/') {
                Some((p, n)) => Ttl { positive: num(p)?, negative: num(n)? },
                None => Ttl { positive: num(v)?, negative: old.negative },
            };
            t.set(kind, new);
        }
        Ok(t)
    }
}

/// Whether an answer found something: each sign has its own TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    /// It found something.
    Positive,
    /// "Not found".
    Negative,
}

/// What the cache holds for a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Found<'a> {
    /// A fresh answer, with the milliseconds it has left.
    Fresh { reply: &'a [u8], negative: bool, left_ms: u64 },
    /// An answer past its TTL (kept for serve-stale).
    Expired,
    /// Nothing.
    Absent,
}

/// One entry's key and reply in one allocation: the key's length (2 bytes, native order),
/// the key, then the reply exactly as written to the client. It is the map's key: hashing
/// and comparing look at the key part only, so a lookup borrows it as the key's bytes.
struct Slot(Box<[u8]>);

impl Slot {
    /// `key` must be at most `u16::MAX` bytes (the caller checks).
    fn new(key: &[u8], reply: &[u8]) -> Slot {
        let len = u16::try_from(key.len()).unwrap_or(u16::MAX);
        let mut v = Vec::with_capacity(2 + key.len() + reply.len());
        v.extend_from_slice(&len.to_ne_bytes());
        v.extend_from_slice(&key[..usize::from(len)]);
        v.extend_from_slice(reply);
        Slot(v.into_boxed_slice())
    }

    fn key_len(&self) -> usize {
        usize::from(u16::from_ne_bytes([self.0[0], self.0[1]]))
    }

    fn key(&self) -> &[u8] {
        &self.0[2..2 + self.key_len()]
    }

    fn reply(&self) -> &[u8] {
        &self.0[2 + self.key_len()..]
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The reply may hold a password hash: never print it.
        write!(
            f,
            "Slot({:?}, {} reply bytes)",
            String::from_utf8_lossy(self.key()),
            self.reply().len()
        )
    }
}

impl PartialEq for Slot {
    fn eq(&self, other: &Slot) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Slot {}

impl Hash for Slot {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl Borrow<[u8]> for Slot {
    fn borrow(&self) -> &[u8] {
        self.key()
    }
}

/// What an entry knows besides its key and reply.
#[derive(Debug, Clone, Copy)]
struct Meta {
    /// When it stops being fresh, in whole seconds since the cache started.
    expires: u32,
    /// True for "not found".
    negative: bool,
}

/// The map and its bound (the map itself is unbounded so that it is not sized up front).
#[derive(Debug)]
struct Lru {
    map: LruCache<Slot, Meta>,
    cap: usize,
}

impl Lru {
    /// Stores an entry; returns the one evicted to make room, if any.
    fn insert(&mut self, key: &[u8], reply: &[u8], meta: Meta) -> Option<Slot> {
        // A key's new reply is a new slot: the old entry goes, and only a new key can need
        // room.
        let mut evicted = None;
        if self.map.pop(key).is_none() && self.map.len() >= self.cap {
            evicted = self.map.pop_lru().map(|(old, _)| old);
        }
        self.map.push(Slot::new(key, reply), meta);
        evicted
    }
}

/// The cache. Owned by the I/O thread alone, so it needs no lock.
#[derive(Debug)]
pub struct Cache {
    /// `None` when caching is off (capacity 0).
    lru: Option<Lru>,
    /// TTLs per kind.
    ttls: Ttls,
    /// Expired answers older than this (whole seconds) are never served, even when MySQL
    /// is down.
    max_stale: u32,
    /// Expiry times count seconds from here.
    born: Instant,
    /// `born` on CLOCK_MONOTONIC in milliseconds (read just before it, so an expiry
    /// published from it is never later than the cache's own).
    born_mono_ms: u64,
    /// The shared-memory mirror clients read hits from, if on.
    shared: Option<SharedCache>,
}

/// Whole seconds, saturating at `u32::MAX` (136 years).
fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

impl Cache {
    /// A cache of `capacity` entries (0 turns caching off; at most `u32::MAX - 1`).
    pub fn new(capacity: usize, ttls: Ttls, max_stale: Duration) -> Cache {
        let born_mono_ms = inlookup_core::shared::now_ms();
        Cache {
            lru: (capacity > 0).then(|| Lru { map: LruCache::unbounded(), cap: capacity }),
            ttls,
            max_stale: secs(max_stale),
            born: Instant::now(),
            born_mono_ms,
            shared: None,
        }
    }

    /// Mirrors every entry stored from now on in `shared` (nothing is stored yet when the
    /// daemon starts it).
    pub fn with_shared(mut self, shared: SharedCache) -> Cache {
        self.shared = Some(shared);
        self
    }

    /// The shared mirror's counters, if it is on.
    pub fn shared_stats(&self) -> Option<SharedCacheStats> {
        self.shared.as_ref().map(SharedCache::stats)
    }

    /// Whole seconds since the cache started. An entry stored with TTL `t` is fresh while
    /// `now_s < stored_s + t`: at most `t` seconds, at least `t - 1`.
    fn now_s(&self, now: Instant) -> u32 {
        secs(now.saturating_duration_since(self.born))
    }

    /// The TTLs of a kind.
    pub fn ttl(&self, kind: QueryKind) -> Ttl {
        self.ttls.get(kind)
    }

    /// Capacity in entries (0: off).
    pub fn capacity(&self) -> usize {
        self.lru.as_ref().map_or(0, |l| l.cap)
    }

    /// Entries held now, fresh or expired.
    pub fn len(&self) -> usize {
        self.lru.as_ref().map_or(0, |l| l.map.len())
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Looks a key up; a fresh hit becomes the most recently used.
    pub fn get(&mut self, key: &str, now: Instant) -> Found<'_> {
        let now_s = self.now_s(now);
        let Some(lru) = self.lru.as_mut() else { return Found::Absent };
        // One lookup; an expired entry becomes the most recent too, which is harmless: its
        // refreshed answer replaces it, or serve-stale wants it kept.
        match lru.map.get_key_value(key.as_bytes()) {
            None => Found::Absent,
            Some((_, meta)) if meta.expires <= now_s => Found::Expired,
            Some((slot, meta)) => {
                // Asked over the FIFO although fresh: a client that reads the mapping did not
                // find it there (its bucket was full when it was stored). Publish it again,
                // so hot keys come back to the mapping.
                if let Some(sh) = self.shared.as_mut() {
                    let expires = self.born_mono_ms + u64::from(meta.expires) * 1000;
                    sh.republish(key, slot.reply(), expires);
                }
                let age_ms = now.saturating_duration_since(self.born).as_millis();
                let left_ms = (u128::from(meta.expires) * 1000).saturating_sub(age_ms);
                let left_ms = u64::try_from(left_ms).unwrap_or(u64::MAX);
                Found::Fresh { reply: slot.reply(), negative: meta.negative, left_ms }
            }
        }
    }

    /// An expired answer young enough to serve while the backend fails.
    pub fn stale(&mut self, key: &str, now: Instant) -> Option<&[u8]> {
        let (now_s, max) = (self.now_s(now), self.max_stale);
        let lru = self.lru.as_mut()?;
        let (slot, meta) = lru.map.get_key_value(key.as_bytes())?;
        // Whole seconds past expiry, so strictly under `max`: a `max` of 0 serves nothing.
        (now_s.saturating_sub(meta.expires) < max).then(|| slot.reply())
    }

    /// Stores an answer. Returns the kind of the entry pushed out to make room, if any.
    /// Kinds whose TTL is zero are not stored, nor keys longer than 65,535 bytes.
    pub fn insert(
        &mut self,
        key: &str,
        reply: &[u8],
        sign: Sign,
        now: Instant,
    ) -> Option<QueryKind> {
        let kind = key_kind(key)?;
        let t = self.ttls.get(kind);
        let (ttl, negative) = match sign {
            Sign::Positive => (t.positive, false),
            Sign::Negative => (t.negative, true),
        };
        let now_s = self.now_s(now);
        let lru = self.lru.as_mut()?;
        if ttl.is_zero() || key.len() > usize::from(u16::MAX) {
            lru.map.pop(key.as_bytes());
            if let Some(sh) = self.shared.as_mut() {
                sh.remove(key.as_bytes());
            }
            return None;
        }
        // A TTL under a second still caches for the rest of the current second.
        let expires = now_s.saturating_add(secs(ttl).max(1));
        let evicted = lru.insert(key.as_bytes(), reply, Meta { expires, negative });
        if let Some(sh) = self.shared.as_mut() {
            if let Some(old) = &evicted {
                sh.remove(old.key());
            }
            sh.publish(key, reply, self.born_mono_ms + u64::from(expires) * 1000);
        }
        evicted.and_then(|old| std::str::from_utf8(old.key()).ok().and_then(key_kind))
    }

    /// Drops everything; returns how many entries went.
    pub fn clear(&mut self) -> usize {
        let Some(lru) = self.lru.as_mut() else { return 0 };
        let n = lru.map.len();
        // A new map, not `clear()`: give the memory of a large cache back.
        lru.map = LruCache::unbounded();
        if let Some(sh) = self.shared.as_mut() {
            sh.clear();
        }
        n
    }

    /// Drops one key; returns 1 if it was there.
    pub fn remove(&mut self, key: &str) -> usize {
        let Some(lru) = self.lru.as_mut() else { return 0 };
        if let Some(sh) = self.shared.as_mut() {
            sh.remove(key.as_bytes());
        }
        usize::from(lru.map.pop(key.as_bytes()).is_some())
    }

    /// Drops every entry of one kind about one subject (for RELAY: every IP).
    pub fn remove_subject(&mut self, kind: QueryKind, subject: &str) -> usize {
        self.remove_where(|k| key_kind(k) == Some(kind) && key_subject(k) == subject)
    }

    /// Drops every entry whose key satisfies `pred` (a scan of the whole cache).
    pub fn remove_where(&mut self, pred: impl Fn(&str) -> bool) -> usize {
        let Some(lru) = self.lru.as_mut() else { return 0 };
        let doomed: Vec<Vec<u8>> = lru
            .map
            .iter()
            .map(|(slot, _)| slot.key())
            .filter(|k| std::str::from_utf8(k).is_ok_and(&pred))
            .map(<[u8]>::to_vec)
            .collect();
        for k in &doomed {
            lru.map.pop(k.as_slice());
            if let Some(sh) = self.shared.as_mut() {
                sh.remove(k);
            }
        }
        doomed.len()
    }

    /// Drops every entry of one kind.
    pub fn remove_kind(&mut self, kind: QueryKind) -> usize {
        self.remove_where(|k| key_kind(k) == Some(kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inlookup_core::cache_key;

    fn key(kind: QueryKind, e: &str) -> String {
        cache_key(kind, e, "", None)
    }

    #[test]
    fn fresh_then_expired_then_stale_window() {
        let mut c = Cache::new(10, Ttls::default(), Duration::from_secs(100));
        let t0 = Instant::now();
        let k = key(QueryKind::Pwd, "a@x");
        c.insert(&k, b"reply", Sign::Positive, t0);
        assert!(matches!(c.get(&k, t0), Found::Fresh { reply: b"reply", negative: false, .. }));
        let later = t0 + Duration::from_secs(301);
        assert_eq!(c.get(&k, later), Found::Expired);
        assert_eq!(c.stale(&k, later), Some(&b"reply"[..]));
        assert_eq!(c.stale(&k, t0 + Duration::from_secs(300 + 101)), None);
        // Serve-stale off: an entry expired this very second is not served either.
        let mut c = Cache::new(10, Ttls::default(), Duration::ZERO);
        let t1 = Instant::now();
        c.insert(&k, b"reply", Sign::Positive, t1);
        assert_eq!(c.get(&k, t1 + Duration::from_secs(300)), Found::Expired);
        assert_eq!(c.stale(&k, t1 + Duration::from_secs(300)), None);
    }

    #[test]
    fn negative_answers_use_the_negative_ttl() {
        let mut c = Cache::new(10, Ttls::default(), Duration::ZERO);
        let t0 = Instant::now();
        let k = key(QueryKind::User, "n@x");
        c.insert(&k, b"1", Sign::Negative, t0);
        assert!(matches!(
            c.get(&k, t0 + Duration::from_secs(19)),
            Found::Fresh { negative: true, .. }
        ));
        assert_eq!(c.get(&k, t0 + Duration::from_secs(21)), Found::Expired);
    }

    #[test]
    fn evicts_the_least_recently_used_and_says_which_kind() {
        let mut c = Cache::new(2, Ttls::default(), Duration::ZERO);
        let t0 = Instant::now();
        let (a, b, d) =
            (key(QueryKind::Pwd, "a@x"), key(QueryKind::User, "b@x"), key(QueryKind::Host, "d@x"));
        c.insert(&a, b"a", Sign::Positive, t0);
        c.insert(&b, b"b", Sign::Positive, t0);
        assert!(matches!(c.get(&a, t0), Found::Fresh { .. })); // a is now most recent
        assert_eq!(c.insert(&d, b"d", Sign::Positive, t0), Some(QueryKind::User));
        assert_eq!(c.get(&b, t0), Found::Absent);
        assert_eq!(c.insert(&d, b"d2", Sign::Positive, t0), None, "replacing a key evicts nothing");
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn zero_capacity_is_off_and_zero_ttl_is_not_cached() {
        let mut c = Cache::new(0, Ttls::default(), Duration::ZERO);
        let k = key(QueryKind::Pwd, "a@x");
        c.insert(&k, b"r", Sign::Positive, Instant::now());
        assert_eq!(c.get(&k, Instant::now()), Found::Absent);
        let mut c = Cache::new(5, "pwd=0/0".parse().unwrap(), Duration::ZERO);
        c.insert(&k, b"r", Sign::Positive, Instant::now());
        assert!(c.is_empty());
    }

    #[test]
    fn flushes_by_key_kind_and_all() {
        let mut c = Cache::new(10, Ttls::default(), Duration::ZERO);
        let t0 = Instant::now();
        for e in ["a@x", "b@x"] {
            c.insert(&key(QueryKind::Pwd, e), b"r", Sign::Positive, t0);
            c.insert(&key(QueryKind::User, e), b"r", Sign::Positive, t0);
        }
        assert_eq!(c.remove(&key(QueryKind::Pwd, "a@x")), 1);
        assert_eq!(c.remove(&key(QueryKind::Pwd, "a@x")), 0);
        assert_eq!(c.remove_kind(QueryKind::User), 2);
        assert_eq!(c.clear(), 1);
    }

    proptest::proptest! {
        /// The LRU against a model (a vector in recency order): same answers, same
        /// evictions, whatever the mix of inserts, lookups and removals.
        #[test]
        fn behaves_like_a_recency_list(
            cap in 1usize..6,
            ops in proptest::collection::vec((0u8..4, 0u8..9), 0..200),
        ) {
            let mut c = Cache::new(cap, Ttls::default(), Duration::ZERO);
            let t0 = Instant::now();
            let mut model: Vec<(String, Vec<u8>)> = Vec::new(); // oldest first
            for (n, (op, k)) in ops.into_iter().enumerate() {
                let kind = if k % 2 == 0 { QueryKind::Pwd } else { QueryKind::User };
                let k = key(kind, &format!("u{k}@x"));
                let at = model.iter().position(|(m, _)| *m == k);
                match op {
                    0 | 1 => {
                        let reply = format!("r{n}").into_bytes();
                        let evicted = c.insert(&k, &reply, Sign::Positive, t0);
                        if let Some(at) = at {
                            model.remove(at);
                            proptest::prop_assert_eq!(evicted, None);
                        } else if model.len() == cap {
                            let (old, _) = model.remove(0);
                            proptest::prop_assert_eq!(evicted, key_kind(&old));
                        } else {
                            proptest::prop_assert_eq!(evicted, None);
                        }
                        model.push((k, reply));
                    }
                    2 => match at {
                        Some(at) => {
                            let e = model.remove(at);
                            let found = c.get(&e.0, t0);
                            proptest::prop_assert!(
                                matches!(found, Found::Fresh { reply, negative: false, .. } if reply == &e.1[..]),
                                "{found:?}"
                            );
                            model.push(e);
                        }
                        None => proptest::prop_assert_eq!(c.get(&k, t0), Found::Absent),
                    },
                    _ => {
                        proptest::prop_assert_eq!(c.remove(&k), usize::from(at.is_some()));
                        if let Some(at) = at {
                            model.remove(at);
                        }
                    }
                }
                proptest::prop_assert_eq!(c.len(), model.len());
            }
        }
    }

    #[test]
    fn sixty_thousand_into_fifty_thousand_keeps_the_newest() {
        let mut c = Cache::new(50_000, Ttls::default(), Duration::ZERO);
        let t0 = Instant::now();
        for i in 0..60_000 {
            c.insert(
                &key(QueryKind::Pwd, &format!("u{i}@x")),
                format!("{i}").as_bytes(),
                Sign::Positive,
                t0,
            );
        }
        assert_eq!(c.len(), 50_000);
        for i in (0..60_000).step_by(7) {
            let k = key(QueryKind::Pwd, &format!("u{i}@x"));
            let want = format!("{i}");
            match c.get(&k, t0) {
                Found::Fresh { reply, .. } => assert!(i >= 10_000 && reply == want.as_bytes()),
                Found::Absent => assert!(i < 10_000),
                Found::Expired => panic!("{k}: expired"),
            }
        }
        assert_eq!(c.remove_kind(QueryKind::Pwd), 50_000);
        assert!(c.is_empty());
    }

    /// The shared mirror follows the cache: what it stores, evicts, drops and flushes.
    #[test]
    fn the_shared_mirror_follows_the_cache() {
        use crate::shared::{SharedCache, SharedSettings};
        use inlookup_core::shared::{Lookup, Reader, Words};
        struct Ro(memmap2::Mmap);
        impl Words for Ro {
            fn words(&self) -> &[std::sync::atomic::AtomicU64] {
                // SAFETY: the test's own file, read only.
                unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast(), self.0.len() / 8) }
            }
        }
        let d = std::env::temp_dir().join(format!("inl-cache-shared-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let s = SharedSettings { path: d.join("c"), kinds: [true; 7], slots: 64 };
        let shared = SharedCache::create(&s, None, None).unwrap();
        let mut c = Cache::new(2, "user=0/0".parse().unwrap(), Duration::ZERO).with_shared(shared);
        let f = std::fs::File::open(&s.path).unwrap();
        // SAFETY: the test's own file.
        let r = Reader::open(Ro(unsafe { memmap2::Mmap::map(&f).unwrap() })).unwrap();
        let now_ms = inlookup_core::shared::now_ms();
        let hit = |k: &str, at: u64| {
            let mut out = Vec::new();
            (r.get(k.as_bytes(), at, &mut out) == Lookup::Hit).then_some(out)
        };
        let t0 = Instant::now();
        let (a, b, d2) =
            (key(QueryKind::Pwd, "a@x"), key(QueryKind::Pwd, "b@x"), key(QueryKind::Host, "d@x"));
        c.insert(&a, b"ra", Sign::Positive, t0);
        assert_eq!(hit(&a, now_ms).as_deref(), Some(&b"ra"[..]));
        assert_eq!(hit(&a, now_ms + 301_000), None, "expires with the cache's TTL (300 s)");
        assert!(hit(&a, now_ms + 298_000).is_some());
        c.insert(&b, b"rb", Sign::Negative, t0);
        assert_eq!(hit(&b, now_ms + 21_000), None, "a negative answer has the negative TTL");
        c.insert(&d2, b"rd", Sign::Positive, t0);
        assert_eq!(hit(&a, now_ms), None, "evicted from the cache, gone from the mirror");
        let u = key(QueryKind::User, "u@x");
        c.insert(&u, b"ru", Sign::Positive, t0);
        assert_eq!(hit(&u, now_ms), None, "a kind with TTL 0 is not cached, nor published");
        assert_eq!(c.remove_kind(QueryKind::Host), 1);
        assert_eq!(hit(&d2, now_ms), None);
        assert!(hit(&b, now_ms).is_some());
        assert_eq!(c.shared_stats().unwrap().entries, 1);
        c.clear();
        assert_eq!(hit(&b, now_ms), None, "a flush hides it");
        assert_eq!(c.shared_stats().unwrap().generation, 2);
        drop(c);
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// A key pushed out of a full bucket of the mirror comes back when it is asked over the
    /// FIFO (a cache hit the mapping could not give).
    #[test]
    fn a_hit_the_mirror_lost_is_published_again() {
        use crate::shared::{SharedCache, SharedSettings};
        let d = std::env::temp_dir().join(format!("inl-cache-republish-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        // One bucket of four slots, a cache of ten.
        let s = SharedSettings { path: d.join("c"), kinds: [true; 7], slots: 4 };
        let shared = SharedCache::create(&s, None, None).unwrap();
        let mut c = Cache::new(10, Ttls::default(), Duration::ZERO).with_shared(shared);
        let t0 = Instant::now();
        let keys: Vec<String> = (0..6).map(|i| key(QueryKind::Pwd, &format!("u{i}@x"))).collect();
        for k in &keys {
            c.insert(k, b"r", Sign::Positive, t0);
        }
        assert_eq!(c.shared_stats().unwrap().entries, 4, "two did not fit");
        let published = c.shared_stats().unwrap().published;
        for k in &keys {
            assert!(matches!(c.get(k, t0), Found::Fresh { .. }));
        }
        let again = c.shared_stats().unwrap().published - published;
        assert!(again >= 2, "the lost ones were published again ({again})");
        let before = c.shared_stats().unwrap().published;
        assert!(matches!(c.get(&keys[5], t0), Found::Fresh { .. }));
        assert_eq!(c.shared_stats().unwrap().published, before, "one already there is left alone");
        drop(c);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn ttl_specs() {
        let t: Ttls = "pwd=60/5, relay=30".parse().unwrap();
        assert_eq!(t.get(QueryKind::Pwd), ttl(60, 5));
        assert_eq!(t.get(QueryKind::Relay), ttl(30, 5));
        assert_eq!(t.get(QueryKind::User), Ttls::default().get(QueryKind::User));
        assert!("pwd".parse::<Ttls>().is_err());
        assert!("ping=5".parse::<Ttls>().is_err());
        assert!("pwd=x".parse::<Ttls>().is_err());
    }
}
