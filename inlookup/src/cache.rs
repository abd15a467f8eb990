//! The result cache: an LRU bounded by entries, with a positive and a negative TTL per kind,
//! holding each answer as its ready-to-send reply bytes.
//!
//! Expired entries stay until evicted, so that when MySQL fails an expired answer can still
//! be served (serve-stale, as Dovecot's auth cache does) up to a maximum age.

use inlookup_core::address::{key_kind, key_subject};
use inlookup_core::QueryKind;
use lru::LruCache;
use std::num::NonZeroUsize;
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

/// One cached answer.
#[derive(Debug)]
pub struct Entry {
    /// The reply exactly as written to the client.
    reply: Box<[u8]>,
    /// When it stops being fresh.
    expires: Instant,
    /// True for "not found".
    negative: bool,
}

/// What the cache holds for a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Found<'a> {
    /// A fresh answer.
    Fresh { reply: &'a [u8], negative: bool },
    /// An answer past its TTL (kept for serve-stale).
    Expired,
    /// Nothing.
    Absent,
}

/// The cache. Owned by the I/O thread alone, so it needs no lock.
#[derive(Debug)]
pub struct Cache {
    /// `None` when caching is off (capacity 0).
    lru: Option<LruCache<Box<str>, Entry>>,
    /// TTLs per kind.
    ttls: Ttls,
    /// Expired answers older than this are never served, even when MySQL is down.
    max_stale: Duration,
}

impl Cache {
    /// A cache of `capacity` entries (0 turns caching off).
    pub fn new(capacity: usize, ttls: Ttls, max_stale: Duration) -> Cache {
        Cache { lru: NonZeroUsize::new(capacity).map(LruCache::new), ttls, max_stale }
    }

    /// Capacity in entries (0: off).
    pub fn capacity(&self) -> usize {
        self.lru.as_ref().map_or(0, |l| l.cap().get())
    }

    /// Entries held now, fresh or expired.
    pub fn len(&self) -> usize {
        self.lru.as_ref().map_or(0, LruCache::len)
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Looks a key up; a fresh hit becomes the most recently used.
    pub fn get(&mut self, key: &str, now: Instant) -> Found<'_> {
        let Some(lru) = self.lru.as_mut() else { return Found::Absent };
        match lru.get(key) {
            Some(e) if e.expires > now => Found::Fresh { reply: &e.reply, negative: e.negative },
            Some(_) => Found::Expired,
            None => Found::Absent,
        }
    }

    /// An expired answer young enough to serve while the backend fails.
    pub fn stale(&mut self, key: &str, now: Instant) -> Option<&[u8]> {
        let max = self.max_stale;
        let e = self.lru.as_mut()?.peek(key)?;
        (now.saturating_duration_since(e.expires) <= max).then_some(&*e.reply)
    }

    /// Stores an answer. Returns the kind of the entry pushed out to make room, if any.
    /// Kinds whose TTL is zero are not stored.
    pub fn insert(
        &mut self,
        key: &str,
        reply: &[u8],
        negative: bool,
        now: Instant,
    ) -> Option<QueryKind> {
        let kind = key_kind(key)?;
        let t = self.ttls.get(kind);
        let ttl = if negative { t.negative } else { t.positive };
        let lru = self.lru.as_mut()?;
        if ttl.is_zero() {
            lru.pop(key);
            return None;
        }
        let entry = Entry { reply: reply.into(), expires: now + ttl, negative };
        match lru.push(key.into(), entry) {
            Some((old, _)) if &*old != key => key_kind(&old),
            _ => None,
        }
    }

    /// Drops everything; returns how many entries went.
    pub fn clear(&mut self) -> usize {
        let Some(lru) = self.lru.as_mut() else { return 0 };
        let n = lru.len();
        lru.clear();
        n
    }

    /// Drops one key; returns 1 if it was there.
    pub fn remove(&mut self, key: &str) -> usize {
        self.lru.as_mut().and_then(|l| l.pop(key)).map_or(0, |_| 1)
    }

    /// Drops every entry of one kind about one subject (for RELAY: every IP).
    pub fn remove_subject(&mut self, kind: QueryKind, subject: &str) -> usize {
        self.remove_where(|k| key_kind(k) == Some(kind) && key_subject(k) == subject)
    }

    fn remove_where(&mut self, pred: impl Fn(&str) -> bool) -> usize {
        let Some(lru) = self.lru.as_mut() else { return 0 };
        let keys: Vec<Box<str>> =
            lru.iter().filter(|(k, _)| pred(k)).map(|(k, _)| k.clone()).collect();
        for k in &keys {
            lru.pop(k);
        }
        keys.len()
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
        c.insert(&k, b"reply", false, t0);
        assert_eq!(c.get(&k, t0), Found::Fresh { reply: b"reply", negative: false });
        let later = t0 + Duration::from_secs(301);
        assert_eq!(c.get(&k, later), Found::Expired);
        assert_eq!(c.stale(&k, later), Some(&b"reply"[..]));
        assert_eq!(c.stale(&k, t0 + Duration::from_secs(300 + 101)), None);
    }

    #[test]
    fn negative_answers_use_the_negative_ttl() {
        let mut c = Cache::new(10, Ttls::default(), Duration::ZERO);
        let t0 = Instant::now();
        let k = key(QueryKind::User, "n@x");
        c.insert(&k, b"1", true, t0);
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
        c.insert(&a, b"a", false, t0);
        c.insert(&b, b"b", false, t0);
        assert!(matches!(c.get(&a, t0), Found::Fresh { .. })); // a is now most recent
        assert_eq!(c.insert(&d, b"d", false, t0), Some(QueryKind::User));
        assert_eq!(c.get(&b, t0), Found::Absent);
        assert_eq!(c.insert(&d, b"d2", false, t0), None, "replacing a key evicts nothing");
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn zero_capacity_is_off_and_zero_ttl_is_not_cached() {
        let mut c = Cache::new(0, Ttls::default(), Duration::ZERO);
        let k = key(QueryKind::Pwd, "a@x");
        c.insert(&k, b"r", false, Instant::now());
        assert_eq!(c.get(&k, Instant::now()), Found::Absent);
        let mut c = Cache::new(5, "pwd=0/0".parse().unwrap(), Duration::ZERO);
        c.insert(&k, b"r", false, Instant::now());
        assert!(c.is_empty());
    }

    #[test]
    fn flushes_by_key_kind_and_all() {
        let mut c = Cache::new(10, Ttls::default(), Duration::ZERO);
        let t0 = Instant::now();
        for e in ["a@x", "b@x"] {
            c.insert(&key(QueryKind::Pwd, e), b"r", false, t0);
            c.insert(&key(QueryKind::User, e), b"r", false, t0);
        }
        assert_eq!(c.remove(&key(QueryKind::Pwd, "a@x")), 1);
        assert_eq!(c.remove(&key(QueryKind::Pwd, "a@x")), 0);
        assert_eq!(c.remove_kind(QueryKind::User), 2);
        assert_eq!(c.clear(), 1);
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
