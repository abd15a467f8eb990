//! The shared-memory cache's format: a table the daemon publishes its cached replies in and
//! clients read without a round trip (nscd's `shared yes`, sssd's memory cache). Pure code
//! over a slice of 64-bit words, so the daemon's writable mapping, a client's read-only
//! mapping, the tests' plain memory and the fuzzer's corrupt images all go through the same
//! functions.
//!
//! # Layout (all words native-endian `u64`)
//!
//! ```text
//! header: 64 words
//!   0 magic "INLKSHC1"    1 version (1)       2 slots        3 words per slot (64)
//!   4 generation          5 retired (0 or 1)  6 daemon pid   7 created (Unix seconds)
//!   8 DEFAULT_DOMAIN's length, 9..41 its bytes (at most 255)
//! slots: `slots` × 64 words, in buckets of WAYS slots
//!   0 sequence (odd while written)  1 key hash  2 generation  3 expiry (CLOCK_MONOTONIC ms;
//!   0: empty)  4 key length | reply length << 32  5.. key bytes, then reply bytes (472)
//! ```
//!
//! # Who writes, who reads
//!
//! The daemon is the only writer ([`Writer`]); every slot is guarded by a sequence lock, so a
//! reader ([`Reader`]) copies a slot, checks that its sequence did not move, and otherwise
//! retries or gives up (the caller then asks over the FIFO). An entry is served only if its
//! generation is the header's, its expiry is in the future and its key is the key asked:
//! a flush bumps the header's generation and so hides every entry at once. A reader checks
//! every length it reads against the slot, so a corrupt image can make it miss, never read
//! out of bounds.
//!
//! Every access is an atomic load or store of a whole word: on the 64-bit targets inlookup
//! builds for, a relaxed atomic load is a plain load, which works on a read-only mapping.

use std::sync::atomic::{fence, AtomicU64, Ordering};

/// The first header word: `INLKSHC1`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"INLKSHC1");
/// The format's version; a reader refuses any other.
pub const VERSION: u64 = 1;
/// Words before the first slot.
pub const HEADER_WORDS: usize = 64;
/// Words per slot (512 bytes).
pub const SLOT_WORDS: usize = 64;
/// Slots per bucket: a key lives in one of the `WAYS` slots of its bucket.
pub const WAYS: usize = 4;
/// Words of a slot before its bytes.
const SLOT_META: usize = 5;
/// The most bytes a slot holds (key and reply together).
pub const SLOT_PAYLOAD: usize = (SLOT_WORDS - SLOT_META) * 8;
/// The longest DEFAULT_DOMAIN the header holds.
pub const MAX_DEFAULT_DOMAIN: usize = 255;
/// How often a reader retries a slot that is being written before giving up.
const RETRIES: usize = 64;

const H_MAGIC: usize = 0;
const H_VERSION: usize = 1;
const H_SLOTS: usize = 2;
const H_SLOT_WORDS: usize = 3;
const H_GENERATION: usize = 4;
const H_RETIRED: usize = 5;
const H_PID: usize = 6;
const H_CREATED: usize = 7;
const H_DD_LEN: usize = 8;
const H_DD: usize = 9;

const S_SEQ: usize = 0;
const S_HASH: usize = 1;
const S_GEN: usize = 2;
const S_EXPIRES: usize = 3;
const S_LENS: usize = 4;

/// Memory holding a table: a mapping, or plain memory in tests.
pub trait Words {
    /// The table's words.
    fn words(&self) -> &[AtomicU64];
}

impl Words for Vec<AtomicU64> {
    fn words(&self) -> &[AtomicU64] {
        self
    }
}

impl Words for Box<[AtomicU64]> {
    fn words(&self) -> &[AtomicU64] {
        self
    }
}

impl<W: Words + ?Sized> Words for &W {
    fn words(&self) -> &[AtomicU64] {
        (**self).words()
    }
}

/// Words a table of `slots` slots needs (`slots` a multiple of [`WAYS`]).
pub fn words_for(slots: usize) -> usize {
    HEADER_WORDS + slots * SLOT_WORDS
}

/// `n` rounded up to a whole number of buckets (at least one).
pub fn round_slots(n: usize) -> usize {
    n.max(1).div_ceil(WAYS) * WAYS
}

/// Zeroed plain memory for a table of `slots` slots (tests, fuzzing).
pub fn zeroed(slots: usize) -> Vec<AtomicU64> {
    (0..words_for(slots)).map(|_| AtomicU64::new(0)).collect()
}

/// An image of bytes as words (the fuzzer's way in); a tail shorter than a word is dropped.
pub fn from_bytes(bytes: &[u8]) -> Vec<AtomicU64> {
    bytes
        .chunks_exact(8)
        .map(|c| AtomicU64::new(u64::from_ne_bytes(c.try_into().unwrap_or_default())))
        .collect()
}

/// FNV-1a, 64 bits: both sides must agree on it, so it is spelled out here.
pub fn hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // 0 marks an empty slot's hash: never a key's.
    h.max(1)
}

/// Milliseconds of CLOCK_MONOTONIC, the clock expiries are written in (one clock for every
/// process on the machine; read through the vDSO, without a system call).
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1000) + (ts.tv_nsec as u64) / 1_000_000
}

/// A time no earlier than [`now_ms`], for readers: CLOCK_MONOTONIC_COARSE (the same clock
/// as of the last tick, a plain memory read in the vDSO) plus twice its resolution. An
/// entry may so look expired a few milliseconds early (and is asked of the daemon), never
/// fresh after its expiry.
pub fn reader_now_ms() -> u64 {
    use std::sync::OnceLock;
    static SLACK_MS: OnceLock<u64> = OnceLock::new();
    let slack = *SLACK_MS.get_or_init(|| {
        let mut res = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `res` is a valid, writable timespec.
        let ok = unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut res) } == 0;
        let ns = (res.tv_sec as u64).saturating_mul(1_000_000_000) + res.tv_nsec as u64;
        // Unknown or coarser than 100 ms: not worth it, use the exact clock.
        if ok && ns <= 100_000_000 {
            2 * ns.div_ceil(1_000_000)
        } else {
            u64::MAX
        }
    });
    if slack == u64::MAX {
        return now_ms();
    }
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1000) + (ts.tv_nsec as u64) / 1_000_000 + slack
}

fn load(w: &[AtomicU64], i: usize) -> u64 {
    w.get(i).map_or(0, |x| x.load(Ordering::Relaxed))
}

/// Packs the bytes of `parts`, one run after the other, into words from `at`
/// (little-endian within a word, so the bytes read back in order).
fn store_bytes(w: &[AtomicU64], at: usize, parts: &[&[u8]]) {
    let (mut word, mut n, mut i) = ([0u8; 8], 0, at);
    for b in parts.iter().flat_map(|p| p.iter()) {
        word[n] = *b;
        n += 1;
        if n == 8 {
            w[i].store(u64::from_le_bytes(word), Ordering::Relaxed);
            (word, n, i) = ([0u8; 8], 0, i + 1);
        }
    }
    if n > 0 {
        w[i].store(u64::from_le_bytes(word), Ordering::Relaxed);
    }
}

/// Whether the words from `at` hold `bytes` (compared in place, without a copy).
fn bytes_equal(w: &[AtomicU64], at: usize, bytes: &[u8]) -> bool {
    bytes.chunks(8).enumerate().all(|(i, c)| load(w, at + i).to_le_bytes()[..c.len()] == *c)
}

/// Unpacks `n` bytes from the words at `at` into `out` (appended).
fn load_bytes(w: &[AtomicU64], at: usize, n: usize, out: &mut Vec<u8>) {
    let words = n.div_ceil(8);
    out.reserve(words * 8);
    for i in 0..words {
        let b = load(w, at + i).to_le_bytes();
        let take = (n - i * 8).min(8);
        out.extend_from_slice(&b[..take]);
    }
}

/// Why an image is not a table a reader can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Corrupt {
    /// Shorter than its header or than the slots it claims.
    Truncated {
        /// Words there are.
        have: usize,
        /// Words the header claims.
        want: usize,
    },
    /// Not `INLKSHC1`.
    BadMagic,
    /// Another version of the format.
    Version(u64),
    /// A slot size or count this reader does not know.
    BadGeometry,
    /// DEFAULT_DOMAIN's length or bytes are wrong.
    BadDefaultDomain,
}

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Corrupt::Truncated { have, want } => {
                write!(f, "truncated: {} bytes, the header says {}", have * 8, want * 8)
            }
            Corrupt::BadMagic => f.write_str("not an inlookup shared cache"),
            Corrupt::Version(v) => write!(f, "format version {v}, this reader knows {VERSION}"),
            Corrupt::BadGeometry => f.write_str("bad slot size or count"),
            Corrupt::BadDefaultDomain => f.write_str("bad DEFAULT_DOMAIN in the header"),
        }
    }
}

impl std::error::Error for Corrupt {}

/// The table's geometry, from a header that was checked.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    slots: usize,
}

impl Geometry {
    fn buckets(self) -> usize {
        self.slots / WAYS
    }

    /// The first word of the `way`th slot of `h`'s bucket.
    fn slot(self, h: u64, way: usize) -> usize {
        let bucket = (h % self.buckets() as u64) as usize;
        HEADER_WORDS + (bucket * WAYS + way) * SLOT_WORDS
    }
}

/// What the writer wrote, for STATS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Slots holding an entry of the current generation (fresh or expired).
    pub entries: u64,
    /// Their key and reply bytes.
    pub bytes: u64,
    /// The current generation.
    pub generation: u64,
}

/// The daemon's side: the only writer of a table.
#[derive(Debug)]
pub struct Writer<M: Words> {
    mem: M,
    geo: Geometry,
    generation: u64,
    counts: Counts,
}

impl<M: Words> Writer<M> {
    /// Writes a fresh header over `mem` (zeroed, of [`words_for`] `slots` words) and takes
    /// it.
    ///
    /// # Errors
    /// The memory is too small for `slots`, `slots` is not a whole number of buckets, or
    /// `default_domain` is longer than [`MAX_DEFAULT_DOMAIN`].
    pub fn init(
        mem: M,
        slots: usize,
        default_domain: &str,
        pid: u32,
    ) -> Result<Writer<M>, Corrupt> {
        let w = mem.words();
        if slots == 0 || slots % WAYS != 0 {
            return Err(Corrupt::BadGeometry);
        }
        if w.len() < words_for(slots) {
            return Err(Corrupt::Truncated { have: w.len(), want: words_for(slots) });
        }
        if default_domain.len() > MAX_DEFAULT_DOMAIN {
            return Err(Corrupt::BadDefaultDomain);
        }
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for (i, v) in [
            (H_VERSION, VERSION),
            (H_SLOTS, slots as u64),
            (H_SLOT_WORDS, SLOT_WORDS as u64),
            (H_GENERATION, 1),
            (H_RETIRED, 0),
            (H_PID, u64::from(pid)),
            (H_CREATED, created),
            (H_DD_LEN, default_domain.len() as u64),
        ] {
            w[i].store(v, Ordering::Relaxed);
        }
        store_bytes(w, H_DD, &[default_domain.as_bytes()]);
        // The magic last: a reader that sees it sees the rest.
        w[H_MAGIC].store(MAGIC, Ordering::Release);
        let counts = Counts { generation: 1, ..Counts::default() };
        Ok(Writer { mem, geo: Geometry { slots }, generation: 1, counts })
    }

    /// The memory (for the daemon's mapping).
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Slots in the table.
    pub fn slots(&self) -> usize {
        self.geo.slots
    }

    /// What is published now.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Whether the slot at `s` holds an entry of the current generation.
    fn current(&self, s: usize) -> bool {
        let w = self.mem.words();
        load(w, s + S_EXPIRES) != 0 && load(w, s + S_GEN) == self.generation
    }

    fn holds(&self, s: usize, h: u64, key: &[u8]) -> bool {
        let w = self.mem.words();
        if !self.current(s) || load(w, s + S_HASH) != h {
            return false;
        }
        let lens = load(w, s + S_LENS);
        if (lens & 0xffff_ffff) as usize != key.len() {
            return false;
        }
        bytes_equal(w, s + SLOT_META, key)
    }

    fn find(&self, h: u64, key: &[u8]) -> Option<usize> {
        (0..WAYS).map(|way| self.geo.slot(h, way)).find(|&s| self.holds(s, h, key))
    }

    /// Drops the accounting of whatever the slot at `s` holds now.
    fn forget(&mut self, s: usize) {
        if self.current(s) {
            let lens = load(self.mem.words(), s + S_LENS);
            self.counts.entries -= 1;
            self.counts.bytes -= (lens & 0xffff_ffff) + (lens >> 32);
        }
    }

    /// Writes one slot under its sequence lock.
    fn write(&self, s: usize, h: u64, expires: u64, key: &[u8], reply: &[u8]) {
        let w = self.mem.words();
        let seq = load(w, s + S_SEQ);
        w[s + S_SEQ].store(seq.wrapping_add(1) | 1, Ordering::Relaxed);
        fence(Ordering::Release);
        w[s + S_HASH].store(h, Ordering::Relaxed);
        w[s + S_GEN].store(self.generation, Ordering::Relaxed);
        w[s + S_EXPIRES].store(expires, Ordering::Relaxed);
        w[s + S_LENS].store(key.len() as u64 | ((reply.len() as u64) << 32), Ordering::Relaxed);
        store_bytes(w, s + SLOT_META, &[key, reply]);
        let next = (seq | 1).wrapping_add(1);
        w[s + S_SEQ].store(next, Ordering::Release);
    }

    /// Publishes `reply` for `key` until `expires_ms` (CLOCK_MONOTONIC). Returns false when
    /// key and reply do not fit a slot ([`SLOT_PAYLOAD`]): the key is then not published
    /// (and an older entry of it is removed), so readers ask the daemon.
    pub fn publish(&mut self, key: &[u8], reply: &[u8], expires_ms: u64) -> bool {
        let h = hash(key);
        if key.len() + reply.len() > SLOT_PAYLOAD || expires_ms == 0 {
            self.remove(key);
            return false;
        }
        let slot = self.find(h, key).unwrap_or_else(|| {
            // A free way (empty, flushed or expired), else the one that expires first.
            let ways = (0..WAYS).map(|way| self.geo.slot(h, way));
            let now = now_ms();
            let w = self.mem.words();
            ways.clone()
                .find(|&s| !self.current(s) || load(w, s + S_EXPIRES) <= now)
                .unwrap_or_else(|| {
                    ways.min_by_key(|&s| load(w, s + S_EXPIRES)).unwrap_or(self.geo.slot(h, 0))
                })
        });
        self.forget(slot);
        self.write(slot, h, expires_ms, key, reply);
        self.counts.entries += 1;
        self.counts.bytes += (key.len() + reply.len()) as u64;
        true
    }

    /// Whether `key` has an entry of the current generation.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.find(hash(key), key).is_some()
    }

    /// Removes `key`'s entry, if published. Returns whether it was.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        let h = hash(key);
        let Some(slot) = self.find(h, key) else { return false };
        self.forget(slot);
        self.write(slot, 0, 0, &[], &[]);
        true
    }

    /// Hides every entry at once (a FLUSH or HUP): the next generation.
    pub fn clear(&mut self) {
        self.generation += 1;
        self.mem.words()[H_GENERATION].store(self.generation, Ordering::Release);
        self.counts = Counts { generation: self.generation, ..Counts::default() };
    }

    /// Marks the table as given up: readers stop using it and look for a new one.
    pub fn retire(&self) {
        retire(self.mem.words());
    }
}

/// Marks any table as retired (a new daemon does it to its predecessor's file).
pub fn retire(w: &[AtomicU64]) {
    if let Some(x) = w.get(H_RETIRED) {
        x.store(1, Ordering::Release);
    }
    // A flush too, for a reader that does not look at the flag between two lookups.
    if let Some(g) = w.get(H_GENERATION) {
        g.fetch_add(1, Ordering::Release);
    }
}

/// What a reader found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// A fresh entry: its reply was appended to `out`.
    Hit,
    /// Nothing fresh for the key (or a slot that kept changing): ask the daemon.
    Miss,
}

/// A client's side: reads a table it did not write.
#[derive(Debug)]
pub struct Reader<M: Words> {
    mem: M,
    geo: Geometry,
    default_domain: String,
}

impl<M: Words> Reader<M> {
    /// Checks the header of `mem` and takes it.
    ///
    /// # Errors
    /// The image is not a table of this version, or is shorter than it claims.
    pub fn open(mem: M) -> Result<Reader<M>, Corrupt> {
        let w = mem.words();
        if w.len() < HEADER_WORDS {
            return Err(Corrupt::Truncated { have: w.len(), want: HEADER_WORDS });
        }
        if w[H_MAGIC].load(Ordering::Acquire) != MAGIC {
            return Err(Corrupt::BadMagic);
        }
        match load(w, H_VERSION) {
            VERSION => {}
            v => return Err(Corrupt::Version(v)),
        }
        let slots = usize::try_from(load(w, H_SLOTS)).map_err(|_| Corrupt::BadGeometry)?;
        if load(w, H_SLOT_WORDS) != SLOT_WORDS as u64 || slots == 0 || slots % WAYS != 0 {
            return Err(Corrupt::BadGeometry);
        }
        let want = slots
            .checked_mul(SLOT_WORDS)
            .and_then(|n| n.checked_add(HEADER_WORDS))
            .ok_or(Corrupt::BadGeometry)?;
        if w.len() < want {
            return Err(Corrupt::Truncated { have: w.len(), want });
        }
        let dd_len = load(w, H_DD_LEN) as usize;
        if dd_len > MAX_DEFAULT_DOMAIN {
            return Err(Corrupt::BadDefaultDomain);
        }
        let mut dd = Vec::with_capacity(dd_len);
        load_bytes(w, H_DD, dd_len, &mut dd);
        let default_domain = String::from_utf8(dd).map_err(|_| Corrupt::BadDefaultDomain)?;
        Ok(Reader { mem, geo: Geometry { slots }, default_domain })
    }

    /// The daemon's DEFAULT_DOMAIN (for cache keys), if it has one.
    pub fn default_domain(&self) -> Option<&str> {
        Some(self.default_domain.as_str()).filter(|d| !d.is_empty())
    }

    /// True once the daemon gave the table up (it stopped, or a new one replaced it).
    pub fn retired(&self) -> bool {
        self.mem.words()[H_RETIRED].load(Ordering::Acquire) != 0
    }

    /// The pid of the daemon that wrote the table.
    pub fn pid(&self) -> u64 {
        load(self.mem.words(), H_PID)
    }

    /// Looks `key` up at `now_ms` (CLOCK_MONOTONIC); on a hit, appends the reply to `out`
    /// (which may also be left holding scratch bytes on a miss).
    pub fn get(&self, key: &[u8], now_ms: u64, out: &mut Vec<u8>) -> Lookup {
        let w = self.mem.words();
        let h = hash(key);
        let base = out.len();
        for way in 0..WAYS {
            let s = self.geo.slot(h, way);
            'retry: for _ in 0..RETRIES {
                out.truncate(base);
                let seq = w[s + S_SEQ].load(Ordering::Acquire);
                if seq & 1 == 1 {
                    std::hint::spin_loop();
                    continue 'retry;
                }
                if load(w, s + S_HASH) != h {
                    break 'retry;
                }
                let gen = load(w, s + S_GEN);
                let expires = load(w, s + S_EXPIRES);
                let lens = load(w, s + S_LENS);
                let (klen, rlen) = ((lens & 0xffff_ffff) as usize, (lens >> 32) as usize);
                let fits = klen == key.len() && klen + rlen <= SLOT_PAYLOAD;
                if fits {
                    load_bytes(w, s + SLOT_META, klen + rlen, out);
                }
                fence(Ordering::Acquire);
                if w[s + S_SEQ].load(Ordering::Relaxed) != seq {
                    continue 'retry;
                }
                // A steady slot: is it the key, current and fresh?
                if !fits || &out[base..base + klen] != key {
                    break 'retry;
                }
                if expires <= now_ms || gen != w[H_GENERATION].load(Ordering::Acquire) {
                    break 'retry;
                }
                out.drain(base..base + klen);
                return Lookup::Hit;
            }
        }
        out.truncate(base);
        Lookup::Miss
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn table(slots: usize) -> Writer<Arc<Vec<AtomicU64>>> {
        Writer::init(Arc::new(zeroed(slots)), slots, "example.com", 7).unwrap()
    }

    impl Words for Arc<Vec<AtomicU64>> {
        fn words(&self) -> &[AtomicU64] {
            self
        }
    }

    fn get<M: Words>(r: &Reader<M>, key: &[u8], now: u64) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        (r.get(key, now, &mut out) == Lookup::Hit).then_some(out)
    }

    #[test]
    fn the_readers_clock_is_never_behind() {
        for _ in 0..1000 {
            let exact = now_ms();
            assert!(reader_now_ms() >= exact);
        }
        assert!(reader_now_ms() < now_ms() + 1000, "and only a little ahead");
    }

    #[test]
    fn publish_read_replace_remove() {
        let mut w = table(8);
        let r = Reader::open(w.memory().clone()).unwrap();
        assert_eq!(r.default_domain(), Some("example.com"));
        assert_eq!(r.pid(), 7);
        let now = now_ms();
        assert!(w.publish(b"\x03alice@example.com", b"\x05\0\0\0hello", now + 1000));
        assert_eq!(
            get(&r, b"\x03alice@example.com", now).as_deref(),
            Some(&b"\x05\0\0\0hello"[..])
        );
        assert_eq!(get(&r, b"\x03alice@example.co", now), None, "another key");
        assert_eq!(get(&r, b"\x03alice@example.com", now + 1000), None, "expired");
        assert!(w.publish(b"\x03alice@example.com", b"x", now + 1000));
        assert_eq!(get(&r, b"\x03alice@example.com", now).as_deref(), Some(&b"x"[..]));
        assert_eq!(w.counts().entries, 1, "a replaced entry is still one");
        assert!(w.remove(b"\x03alice@example.com"));
        assert!(!w.remove(b"\x03alice@example.com"));
        assert_eq!(get(&r, b"\x03alice@example.com", now), None);
        assert_eq!(w.counts(), Counts { entries: 0, bytes: 0, generation: 1 });
    }

    #[test]
    fn every_length_round_trips() {
        let mut w = table(4);
        let r = Reader::open(w.memory().clone()).unwrap();
        let now = now_ms();
        for klen in [0usize, 1, 7, 8, 9, 15, 16, 100] {
            for rlen in [0usize, 1, 3, 8, 13, 64, SLOT_PAYLOAD - klen] {
                let key: Vec<u8> = (0..klen).map(|i| (i * 7 + klen) as u8).collect();
                let reply: Vec<u8> = (0..rlen).map(|i| (i * 13 + rlen) as u8).collect();
                assert!(w.publish(&key, &reply, now + 10));
                assert_eq!(get(&r, &key, now), Some(reply), "key {klen}, reply {rlen}");
            }
        }
        let key = b"k".to_vec();
        assert!(!w.publish(&key, &[0u8; SLOT_PAYLOAD], now + 10), "one byte too many");
        assert_eq!(get(&r, &key, now), None);
    }

    #[test]
    fn a_flush_hides_everything_and_a_retired_table_says_so() {
        let mut w = table(16);
        let r = Reader::open(w.memory().clone()).unwrap();
        let now = now_ms();
        for i in 0..10u8 {
            w.publish(&[b'k', i], &[i], now + 1000);
        }
        assert!(w.counts().entries > 0);
        w.clear();
        assert_eq!(w.counts().entries, 0);
        for i in 0..10u8 {
            assert_eq!(get(&r, &[b'k', i], now), None);
        }
        w.publish(b"k\x01", b"new", now + 1000);
        assert_eq!(get(&r, b"k\x01", now).as_deref(), Some(&b"new"[..]));
        assert!(!r.retired());
        w.retire();
        assert!(r.retired());
        assert_eq!(get(&r, b"k\x01", now), None, "retiring flushes too");
    }

    #[test]
    fn a_full_bucket_evicts_the_entry_that_expires_first() {
        // One bucket: every key shares it.
        let mut w = table(WAYS);
        let r = Reader::open(w.memory().clone()).unwrap();
        let now = now_ms();
        for i in 0..WAYS as u8 {
            w.publish(&[i], &[i], now + 1000 + u64::from(i));
        }
        w.publish(b"new", b"n", now + 5000);
        assert_eq!(get(&r, &[0], now), None, "the soonest to expire went");
        for i in 1..WAYS as u8 {
            assert_eq!(get(&r, &[i], now), Some(vec![i]));
        }
        assert_eq!(w.counts().entries, WAYS as u64);
    }

    #[test]
    fn corrupt_headers_are_refused() {
        let w = table(4);
        let words: Vec<u64> = w.memory().iter().map(|x| x.load(Ordering::Relaxed)).collect();
        let image = |f: &dyn Fn(&mut Vec<u64>)| {
            let mut v = words.clone();
            f(&mut v);
            v.into_iter().map(AtomicU64::new).collect::<Vec<_>>()
        };
        assert_eq!(Reader::open(image(&|v| v[0] = 1)).unwrap_err(), Corrupt::BadMagic);
        assert_eq!(Reader::open(image(&|v| v[1] = 2)).unwrap_err(), Corrupt::Version(2));
        assert_eq!(Reader::open(image(&|v| v[2] = 3)).unwrap_err(), Corrupt::BadGeometry);
        assert_eq!(
            Reader::open(image(&|v| v[2] = u64::MAX - 3)).unwrap_err(),
            Corrupt::BadGeometry
        );
        assert!(matches!(Reader::open(image(&|v| v[2] = 8)), Err(Corrupt::Truncated { .. })));
        assert!(matches!(
            Reader::open(image(&|v| v.truncate(100))),
            Err(Corrupt::Truncated { .. })
        ));
        assert_eq!(Reader::open(image(&|v| v[8] = 256)).unwrap_err(), Corrupt::BadDefaultDomain);
        assert_eq!(
            Reader::open(image(&|v| v[9] = 0xffff_ffff)).unwrap_err(),
            Corrupt::BadDefaultDomain
        );
        // A slot claiming more bytes than it has is a miss, not a panic.
        let r = Reader::open(image(&|v| {
            let s = HEADER_WORDS;
            v[s + S_HASH] = hash(b"k");
            v[s + S_GEN] = 1;
            v[s + S_EXPIRES] = u64::MAX;
            v[s + S_LENS] = 1 | (10_000 << 32);
        }))
        .unwrap();
        let mut out = Vec::new();
        assert_eq!(r.get(b"k", 0, &mut out), Lookup::Miss);
    }

    /// One writer rewriting a few keys as fast as it can, readers checking every hit: a
    /// reply is the key's counter repeated, so a torn one shows. (Without the sequence
    /// checks in `Reader::get` this fails within the default 1.5 s.)
    #[test]
    fn concurrent_readers_never_see_a_torn_reply() {
        let mem = Arc::new(zeroed(WAYS));
        let mut w = Writer::init(mem.clone(), WAYS, "", 1).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (mem, stop) = (mem.clone(), stop.clone());
                std::thread::spawn(move || {
                    let r = Reader::open(mem).unwrap();
                    let (mut hits, mut out) = (0u64, Vec::new());
                    while !stop.load(Ordering::Relaxed) {
                        for k in 0..6u8 {
                            out.clear();
                            if r.get(&[b'k', k], 0, &mut out) == Lookup::Hit {
                                hits += 1;
                                let n = out.len();
                                assert!(n > 0 && n % 8 == 0, "length {n}");
                                let first = &out[..8];
                                assert_eq!(first[0], k, "another key's reply");
                                assert!(out.chunks(8).all(|c| c == first), "torn reply");
                            }
                        }
                    }
                    hits
                })
            })
            .collect();
        // 1.5 s in the suite; the long run (docs/fuzz.md): INLOOKUP_SEQLOCK_SECS=600.
        let secs: f64 =
            std::env::var("INLOOKUP_SEQLOCK_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(1.5);
        let t0 = std::time::Instant::now();
        let mut n = 0u64;
        // At least `secs` and 20,000 writes (a loaded machine is slow), at most 60 s more.
        let enough =
            |n: u64| t0.elapsed() >= std::time::Duration::from_secs_f64(secs) && n >= 20_000;
        while !enough(n) && t0.elapsed() < std::time::Duration::from_secs_f64(secs + 60.0) {
            n += 1;
            let k = (n % 6) as u8;
            let word = [k, (n >> 8) as u8, (n >> 16) as u8, n as u8, 0, 0, 0, 1];
            let reply: Vec<u8> = word.repeat(1 + (n % 50) as usize);
            w.publish(&[b'k', k], &reply, u64::MAX);
            if n % 1000 == 0 {
                w.clear();
            }
            if n % 777 == 0 {
                w.remove(&[b'k', k]);
            }
        }
        stop.store(true, Ordering::Relaxed);
        let hits: u64 = readers.into_iter().map(|t| t.join().unwrap()).sum();
        assert!(n >= 20_000, "the writer ran ({n} writes)");
        assert!(hits > 100, "the readers hit ({hits})");
    }
}
