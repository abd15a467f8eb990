//! Passwords never kept: a keyed hash (HMAC-SHA256 under a random key made at start, so
//! the digests mean nothing outside this process), the identities built from it, and the
//! auth cache with a positive and a short negative TTL.

use lru::LruCache;
use ring::hmac;
use std::fmt;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

/// A keyed hash, 32 bytes: a map key whose value means nothing without the process's key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest([u8; 32]);

impl fmt::Debug for Digest {
    /// The first four bytes only: enough to tell digests apart in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}{:02x}{:02x}{:02x}…", self.0[0], self.0[1], self.0[2], self.0[3])
    }
}

/// The process's hashing key.
pub struct Hasher {
    key: hmac::Key,
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hasher(<random key>)")
    }
}

impl Hasher {
    /// A hasher with a fresh random key.
    ///
    /// # Errors
    /// The OS has no randomness to give.
    pub fn random() -> std::io::Result<Hasher> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| std::io::Error::other(format!("getrandom: {e}")))?;
        Ok(Hasher { key: hmac::Key::new(hmac::HMAC_SHA256, &key) })
    }

    /// The digest of several fields, each length-prefixed so that no two different field
    /// lists give the same input (`("ab","c")` is not `("a","bc")`).
    pub fn digest(&self, fields: &[&[u8]]) -> Digest {
        let mut ctx = hmac::Context::with_key(&self.key);
        for f in fields {
            ctx.update(&(f.len() as u64).to_be_bytes());
            ctx.update(f);
        }
        let tag = ctx.sign();
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        Digest(out)
    }

    /// The identity a held connection is reused for: user, password, session key, IP.
    pub fn identity(&self, user: &str, password: &str, session: &str, ip: &str) -> Digest {
        self.digest(&[
            b"login",
            user.as_bytes(),
            password.as_bytes(),
            session.as_bytes(),
            ip.as_bytes(),
        ])
    }

    /// The auth cache's key: user and password.
    pub fn credentials(&self, user: &str, password: &str) -> Digest {
        self.digest(&[b"auth", user.as_bytes(), password.as_bytes()])
    }

    /// The user alone: what FLUSH of one user's IMAP state matches cache entries and
    /// connections by.
    pub fn user(&self, user: &str) -> Digest {
        self.digest(&[b"user", user.as_bytes()])
    }

    /// A short, stable stand-in for a session key in logs (the key itself is a secret).
    pub fn session_label(&self, session: &str) -> String {
        format!("{:?}", self.digest(&[b"session", session.as_bytes()]))
            .trim_end_matches('…')
            .to_string()
    }
}

/// The IMAP server's answer to a user and password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It logged them in.
    Valid,
    /// It refused them.
    Invalid,
}

impl Verdict {
    /// True for [`Verdict::Valid`] (the wire format's `valid`).
    pub fn is_valid(self) -> bool {
        self == Verdict::Valid
    }
}

/// What the cache knows about one user and password.
#[derive(Debug, Clone, Copy)]
struct Known {
    verdict: Verdict,
    expires: Instant,
    /// [`Hasher::user`] of the entry's user, so one user's entries can be forgotten.
    user: Digest,
}

/// Answers to "are these credentials valid?", bounded, with separate TTLs.
#[derive(Debug)]
pub struct AuthCache {
    entries: LruCache<Digest, Known>,
    positive: Duration,
    negative: Duration,
}

impl AuthCache {
    /// A cache of at most `capacity` entries.
    pub fn new(capacity: NonZeroUsize, positive: Duration, negative: Duration) -> AuthCache {
        AuthCache { entries: LruCache::new(capacity), positive, negative }
    }

    /// The cached answer, if fresh.
    pub fn get(&mut self, key: &Digest, now: Instant) -> Option<Verdict> {
        match self.entries.get(key) {
            Some(k) if k.expires > now => Some(k.verdict),
            Some(_) => {
                self.entries.pop(key);
                None
            }
            None => None,
        }
    }

    /// Forgets everything; returns how many entries went.
    pub fn clear(&mut self) -> usize {
        let n = self.entries.len();
        self.entries.clear();
        n
    }

    /// Forgets every entry of one user ([`Hasher::user`]); returns how many went.
    pub fn remove_user(&mut self, user: &Digest) -> usize {
        let keys: Vec<Digest> =
            self.entries.iter().filter(|(_, k)| k.user == *user).map(|(d, _)| *d).collect();
        for k in &keys {
            self.entries.pop(k);
        }
        keys.len()
    }

    /// Records an answer the IMAP server gave for `key` (of `user`). It replaces what was
    /// there: a valid answer removes an invalid one, whatever the TTLs (a zero TTL keeps
    /// nothing).
    pub fn put(&mut self, key: Digest, user: Digest, verdict: Verdict, now: Instant) {
        let ttl = match verdict {
            Verdict::Valid => self.positive,
            Verdict::Invalid => self.negative,
        };
        if ttl.is_zero() {
            self.entries.pop(&key);
            return;
        }
        self.entries.put(key, Known { verdict, expires: now + ttl, user });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_depend_on_every_field_and_on_the_key() {
        let h = Hasher::random().unwrap();
        let a = h.identity("alice", "secret", "s1", "192.0.2.1");
        assert_eq!(a, h.identity("alice", "secret", "s1", "192.0.2.1"));
        assert_ne!(a, h.identity("alice", "secret2", "s1", "192.0.2.1"));
        assert_ne!(a, h.identity("alice", "secret", "s2", "192.0.2.1"));
        assert_ne!(a, h.identity("alice", "secret", "s1", "192.0.2.2"));
        assert_ne!(h.digest(&[b"ab", b"c"]), h.digest(&[b"a", b"bc"]));
        let other = Hasher::random().unwrap();
        assert_ne!(a, other.identity("alice", "secret", "s1", "192.0.2.1"));
        assert!(!format!("{a:?} {h:?}").contains("secret"));
    }

    #[test]
    fn negative_answers_expire_sooner() {
        let h = Hasher::random().unwrap();
        let mut c = AuthCache::new(
            NonZeroUsize::new(4).unwrap(),
            Duration::from_secs(60),
            Duration::from_secs(5),
        );
        let (good, bad) = (h.credentials("alice", "secret"), h.credentials("alice", "wrong"));
        let alice = h.user("alice");
        let t0 = Instant::now();
        c.put(good, alice, Verdict::Valid, t0);
        c.put(bad, alice, Verdict::Invalid, t0);
        assert_eq!(c.get(&good, t0 + Duration::from_secs(4)), Some(Verdict::Valid));
        assert_eq!(c.get(&bad, t0 + Duration::from_secs(4)), Some(Verdict::Invalid));
        assert_eq!(c.get(&bad, t0 + Duration::from_secs(6)), None);
        assert_eq!(c.get(&good, t0 + Duration::from_secs(6)), Some(Verdict::Valid));
        assert_eq!(c.get(&good, t0 + Duration::from_secs(61)), None);
        c.put(good, alice, Verdict::Valid, t0);
        assert_eq!(c.clear(), 1);
        assert_eq!(c.get(&good, t0), None);
    }

    #[test]
    fn a_valid_answer_removes_an_invalid_one_even_with_no_positive_ttl() {
        let h = Hasher::random().unwrap();
        let (bob, pw) = (h.user("bob"), h.credentials("bob", "new-pw"));
        let t0 = Instant::now();
        for positive in [Duration::from_secs(60), Duration::ZERO] {
            let mut c =
                AuthCache::new(NonZeroUsize::new(4).unwrap(), positive, Duration::from_secs(10));
            c.put(pw, bob, Verdict::Invalid, t0);
            assert_eq!(c.get(&pw, t0), Some(Verdict::Invalid));
            c.put(pw, bob, Verdict::Valid, t0);
            let want = if positive.is_zero() { None } else { Some(Verdict::Valid) };
            assert_eq!(c.get(&pw, t0), want, "positive TTL {positive:?}");
        }
    }

    #[test]
    fn one_users_entries_can_be_forgotten() {
        let h = Hasher::random().unwrap();
        let mut c = AuthCache::new(
            NonZeroUsize::new(8).unwrap(),
            Duration::from_secs(60),
            Duration::from_secs(10),
        );
        let t0 = Instant::now();
        c.put(h.credentials("alice", "a1"), h.user("alice"), Verdict::Valid, t0);
        c.put(h.credentials("alice", "a2"), h.user("alice"), Verdict::Invalid, t0);
        c.put(h.credentials("bob", "b1"), h.user("bob"), Verdict::Valid, t0);
        assert_eq!(c.remove_user(&h.user("alice")), 2);
        assert_eq!(c.get(&h.credentials("alice", "a1"), t0), None);
        assert_eq!(c.get(&h.credentials("bob", "b1"), t0), Some(Verdict::Valid));
        assert_eq!(c.remove_user(&h.user("carol")), 0);
    }
}
