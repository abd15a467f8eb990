//! The one bounded table of IMAP connections, shared by the threads serving IMAP requests
//! under a mutex that is never held across I/O.
//!
//! A connection is in one of three states:
//!
//! - **busy**: a request holds it (its `conn` is out of the table, in a [`Lease`]) for a
//!   command, a login check, a reset. Never reclaimed, never given to anyone else.
//! - **in use**: bound to a session key, between commands.
//! - **parked**: logged out by its session, kept for the same identity's next login.
//!
//! When the table is full, a new connection takes the place of the one idle longest (in
//! use or parked, never busy). Connections idle past the timeout are handed to the reaper.
//!
//! A [`Lease`] and a [`Ticket`] give back what they hold when dropped, as a guard does: a
//! lease dropped without [`Lease::put_back`] or [`Lease::discard`] (a request that
//! panicked mid-command) removes its slot as broken, and a ticket dropped without
//! [`Ticket::opened`] frees its kept place. So nothing stays busy for ever.
//!
//! HUP and FLUSH **retire** connections ([`ConnTable::retire`]): parked ones leave the
//! table at once (the reaper logs them out); those bound to a session are left alone until
//! the session ends, then closed instead of parked, and a new login on their session key
//! opens a new connection. So no command is cut, and every login after the flush is a
//! real IMAP login.

use crate::auth::Digest;
use inlookup_core::admin::ImapStats;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A connection taken out of the table: busy until given back ([`Lease::put_back`]) or
/// dropped from the table ([`Lease::discard`]). It derefs to the connection.
///
/// Dropped without either (a request that panicked, say), it removes its slot from the
/// table, counted as closed broken, and drops the connection.
#[must_use = "a lease keeps its slot busy until put_back() or discard()"]
pub struct Lease<'a, C> {
    /// The table the slot is in.
    table: &'a ConnTable<C>,
    /// The slot it belongs to.
    id: u64,
    /// The connection; `None` only once given back or discarded.
    conn: Option<C>,
}

impl<C: fmt::Debug> fmt::Debug for Lease<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease").field("id", &self.id).field("conn", &self.conn).finish()
    }
}

impl<C> Lease<'_, C> {
    /// The slot it belongs to.
    pub fn id(&self) -> u64 {
        self.id
    }

    fn take(&mut self) -> C {
        self.conn.take().expect("a lease holds its connection until given back")
    }

    /// Returns the connection to the table, in use or parked. A connection retired by a
    /// flush is not parked: its slot goes and it is handed back (counted as closed) for
    /// the caller to log out.
    #[must_use = "a retired connection comes back to be logged out"]
    pub fn put_back(mut self, back: Back) -> Option<C> {
        let conn = self.take();
        self.table.put_back(self.id, conn, back)
    }

    /// Removes the connection's slot from the table, counted by `why`, and hands the
    /// connection over for the caller to close.
    #[must_use = "the caller closes the connection"]
    pub fn discard(mut self, why: Gone) -> C {
        let conn = self.take();
        self.table.remove(self.id, why);
        conn
    }
}

impl<C> Deref for Lease<'_, C> {
    type Target = C;
    fn deref(&self) -> &C {
        self.conn.as_ref().expect("a lease holds its connection until given back")
    }
}

impl<C> DerefMut for Lease<'_, C> {
    fn deref_mut(&mut self) -> &mut C {
        self.conn.as_mut().expect("a lease holds its connection until given back")
    }
}

impl<C> Drop for Lease<'_, C> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.table.remove(self.id, Gone::Broken);
            log::warn!("IMAP: a busy connection was dropped before its request finished; closed");
            drop(conn);
        }
    }
}

/// Leave to open one connection: a place in the table is kept for it until
/// [`Ticket::opened`] or [`Ticket::cancel`], or until the ticket is dropped.
#[must_use = "a ticket holds a place in the table until opened() or cancel()"]
pub struct Ticket<'a, C> {
    table: &'a ConnTable<C>,
}

impl<C> fmt::Debug for Ticket<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ticket")
    }
}

impl<C> Ticket<'_, C> {
    /// A freshly logged-in connection of `user` takes the kept place, in use by `session`.
    pub fn opened(self, identity: Digest, user: Digest, session: &str, conn: C) {
        let table = self.table;
        // The place is taken here, not given up: the ticket's drop must not run.
        std::mem::forget(self);
        table.opened(identity, user, session, conn);
    }

    /// Gives up the kept place (the connection failed, or was only for an auth check).
    pub fn cancel(self) {
        drop(self);
    }
}

impl<C> Drop for Ticket<'_, C> {
    fn drop(&mut self) {
        self.table.lock().opening -= 1;
    }
}

/// What a login should do next.
#[derive(Debug)]
pub enum LoginStep<'a, C> {
    /// A connection logged in for this identity (the session's own, or a parked one now
    /// bound to the session): check it is alive, then [`Lease::put_back`] it in use.
    Reuse(Lease<'a, C>),
    /// The session key is bound to a connection of another identity: reset and park it
    /// (or close it), then ask again.
    Detach(Lease<'a, C>),
    /// Open a connection; quit `evicted` (reclaimed to make room) first.
    Open {
        /// The kept place.
        ticket: Ticket<'a, C>,
        /// The idle connection reclaimed for it, if the table was full.
        evicted: Option<C>,
    },
    /// Nothing free: back off and ask again. It says whose connection is busy.
    Wait(Busy),
    /// The table is shutting down.
    Closing,
}

/// What is busy when a request has to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// The session's own connection is running another command.
    Session,
    /// Every connection of the table is busy (or being opened): nothing to reclaim.
    Table,
}

/// What a command or logout finds for its session key.
#[derive(Debug)]
pub enum SessionStep<'a, C> {
    /// The session's connection, now busy.
    Held(Lease<'a, C>),
    /// No connection is bound to this session key.
    Unknown,
    /// Its connection is running another command.
    Busy,
    /// The table is shutting down.
    Closing,
}

/// Where a connection goes back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Back {
    /// In use by its session.
    InUse,
    /// Parked for its identity's next login (the session key is released).
    Parked,
}

/// Why a connection left the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// Dead or out of step.
    Broken,
    /// On purpose (logout without parking, a session taken over).
    Closed,
}

#[derive(Debug)]
struct Slot<C> {
    id: u64,
    /// user + password + session key + IP, hashed.
    identity: Digest,
    /// The user alone, hashed: what a flush of one user matches.
    user: Digest,
    /// Flushed while bound to a session: closed at logout, never parked or reused.
    retired: bool,
    /// The session key while in use; `None` when parked.
    session: Option<String>,
    /// `None` while busy (a request holds it).
    conn: Option<C>,
    last_used: Instant,
}

#[derive(Debug)]
struct State<C> {
    slots: Vec<Slot<C>>,
    /// Places kept for connections being opened.
    opening: usize,
    next_id: u64,
    counters: ImapStats,
    closing: bool,
    /// Connections retired while parked, for the reaper to log out.
    retired: Vec<C>,
}

impl<C> State<C> {
    fn note_peaks(&mut self) {
        let open = (self.slots.len() + self.opening) as u64;
        let in_use = self.slots.iter().filter(|s| s.session.is_some()).count() as u64;
        let c = &mut self.counters;
        c.peak_open = c.peak_open.max(open);
        c.peak_in_use = c.peak_in_use.max(in_use);
    }

    /// Takes slot `i`'s connection out: the slot is busy.
    fn take(&mut self, i: usize) -> (u64, C) {
        let s = &mut self.slots[i];
        let conn = s.conn.take().expect("taken only when held");
        (s.id, conn)
    }

    fn position(&self, id: u64) -> Option<usize> {
        self.slots.iter().position(|s| s.id == id)
    }
}

/// The connection table, generic over the connection so its rules are tested without a
/// server.
#[derive(Debug)]
pub struct ConnTable<C> {
    state: Mutex<State<C>>,
    /// Wakes the reaper (shutdown).
    reaper: Condvar,
    max: usize,
    idle_timeout: Duration,
}

impl<C> ConnTable<C> {
    /// A table of at most `max` connections (at least 1), each closed after
    /// `idle_timeout` without use.
    pub fn new(max: usize, idle_timeout: Duration) -> ConnTable<C> {
        let state = State {
            slots: Vec::new(),
            opening: 0,
            next_id: 0,
            counters: ImapStats::default(),
            closing: false,
            retired: Vec::new(),
        };
        ConnTable {
            state: Mutex::new(state),
            reaper: Condvar::new(),
            max: max.max(1),
            idle_timeout,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<C>> {
        // A request that panicked left the table consistent (no I/O under the lock).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Slot `i`'s connection, leased.
    fn lease(&self, st: &mut State<C>, i: usize) -> Lease<'_, C> {
        let (id, conn) = st.take(i);
        Lease { table: self, id, conn: Some(conn) }
    }

    /// The next step of a login for `identity` on `session`.
    pub fn login(&self, identity: Digest, session: &str) -> LoginStep<'_, C> {
        let mut st = self.lock();
        if st.closing {
            return LoginStep::Closing;
        }
        if let Some(i) = st.slots.iter().position(|s| s.session.as_deref() == Some(session)) {
            if st.slots[i].conn.is_none() {
                return LoginStep::Wait(Busy::Session);
            }
            let same = st.slots[i].identity == identity && !st.slots[i].retired;
            let lease = self.lease(&mut st, i);
            return if same { LoginStep::Reuse(lease) } else { LoginStep::Detach(lease) };
        }
        let parked = st.slots.iter().position(|s| {
            s.session.is_none() && s.conn.is_some() && s.identity == identity && !s.retired
        });
        if let Some(i) = parked {
            st.slots[i].session = Some(session.to_string());
            let lease = self.lease(&mut st, i);
            st.note_peaks();
            return LoginStep::Reuse(lease);
        }
        self.place(&mut st).map_or(LoginStep::Wait(Busy::Table), |(ticket, evicted)| {
            LoginStep::Open { ticket, evicted }
        })
    }

    /// A place for a new connection: free, or taken from the connection idle longest.
    fn place(&self, st: &mut State<C>) -> Option<(Ticket<'_, C>, Option<C>)> {
        if st.slots.len() + st.opening < self.max {
            st.opening += 1;
            st.note_peaks();
            return Some((Ticket { table: self }, None));
        }
        let (i, _) = st
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.conn.is_some())
            .min_by_key(|(_, s)| s.last_used)?;
        let evicted = st.slots.swap_remove(i).conn;
        st.counters.reclaimed += 1;
        st.opening += 1;
        Some((Ticket { table: self }, evicted))
    }

    /// A place for a connection that is not for a session (an auth check).
    pub fn open_only(&self) -> LoginStep<'_, C> {
        let mut st = self.lock();
        if st.closing {
            return LoginStep::Closing;
        }
        self.place(&mut st).map_or(LoginStep::Wait(Busy::Table), |(ticket, evicted)| {
            LoginStep::Open { ticket, evicted }
        })
    }

    /// A kept place taken by a new connection ([`Ticket::opened`]).
    fn opened(&self, identity: Digest, user: Digest, session: &str, conn: C) {
        let mut st = self.lock();
        st.opening -= 1;
        st.counters.created += 1;
        st.next_id += 1;
        let id = st.next_id;
        st.slots.push(Slot {
            id,
            identity,
            user,
            retired: false,
            session: Some(session.to_string()),
            conn: Some(conn),
            last_used: Instant::now(),
        });
        st.note_peaks();
    }

    /// The connection bound to `session`, for a command or a logout.
    pub fn session(&self, session: &str) -> SessionStep<'_, C> {
        let mut st = self.lock();
        if st.closing {
            return SessionStep::Closing;
        }
        match st.slots.iter().position(|s| s.session.as_deref() == Some(session)) {
            None => SessionStep::Unknown,
            Some(i) if st.slots[i].conn.is_none() => SessionStep::Busy,
            Some(i) => SessionStep::Held(self.lease(&mut st, i)),
        }
    }

    /// A leased connection back ([`Lease::put_back`]).
    fn put_back(&self, id: u64, conn: C, back: Back) -> Option<C> {
        let mut st = self.lock();
        let Some(i) = st.position(id) else {
            // Cannot happen (a leased slot is never removed by others).
            return Some(conn);
        };
        if back == Back::Parked && st.slots[i].retired {
            st.slots.swap_remove(i);
            st.counters.closed += 1;
            return Some(conn);
        }
        let slot = &mut st.slots[i];
        slot.conn = Some(conn);
        slot.last_used = Instant::now();
        if back == Back::Parked {
            slot.session = None;
            st.counters.parked += 1;
        }
        None
    }

    /// Retires the connections of one user ([`crate::auth::Hasher::user`]), or all:
    /// parked ones leave the table now (counted as closed; [`ConnTable::expired`] hands
    /// them to the reaper, which is woken), the others are marked to be closed when their
    /// session ends. Returns how many were parked and how many marked.
    pub fn retire(&self, user: Option<&Digest>) -> (usize, usize) {
        let mut st = self.lock();
        let (mut parked, mut marked) = (0, 0);
        let mut i = 0;
        while i < st.slots.len() {
            let s = &mut st.slots[i];
            if user.is_some_and(|u| *u != s.user) {
                i += 1;
                continue;
            }
            if s.session.is_none() {
                if let Some(c) = st.slots.swap_remove(i).conn {
                    st.retired.push(c);
                }
                st.counters.closed += 1;
                parked += 1;
                continue;
            }
            if !s.retired {
                s.retired = true;
                marked += 1;
            }
            i += 1;
        }
        if parked > 0 {
            self.reaper.notify_all();
        }
        (parked, marked)
    }

    /// Removes a leased connection's slot ([`Lease::discard`], or a lease dropped).
    fn remove(&self, id: u64, why: Gone) {
        let mut st = self.lock();
        if let Some(i) = st.position(id) {
            st.slots.swap_remove(i);
        }
        match why {
            Gone::Broken => st.counters.closed_broken += 1,
            Gone::Closed => st.counters.closed += 1,
        }
    }

    /// Counts something (failures, auth cache results, connections closed by a request).
    pub fn note(&self, f: impl FnOnce(&mut ImapStats)) {
        f(&mut self.lock().counters);
    }

    /// Takes out every connection idle past the timeout (counted as closed for
    /// idleness) and those retired while parked, and says how long until the next one may
    /// expire.
    pub fn expired(&self, now: Instant) -> (Vec<C>, Duration) {
        let mut st = self.lock();
        let mut out = std::mem::take(&mut st.retired);
        let mut next = self.idle_timeout;
        let mut i = 0;
        while i < st.slots.len() {
            let s = &st.slots[i];
            let idle = now.saturating_duration_since(s.last_used);
            if s.conn.is_some() && idle >= self.idle_timeout {
                if let Some(c) = st.slots.swap_remove(i).conn {
                    out.push(c);
                }
                st.counters.closed_idle += 1;
                continue;
            }
            if s.conn.is_some() {
                next = next.min(self.idle_timeout - idle);
            }
            i += 1;
        }
        (out, next)
    }

    /// Stops handing out connections and takes out every one not busy (and any retired
    /// ones the reaper has not logged out yet).
    pub fn close_all(&self) -> Vec<C> {
        let mut st = self.lock();
        st.closing = true;
        let mut out = Vec::new();
        st.slots.retain_mut(|s| match s.conn.take() {
            Some(c) => {
                out.push(c);
                false
            }
            None => true,
        });
        st.counters.closed += out.len() as u64;
        out.append(&mut st.retired);
        self.reaper.notify_all();
        out
    }

    /// True once [`ConnTable::close_all`] ran.
    pub fn closing(&self) -> bool {
        self.lock().closing
    }

    /// Sleeps the reaper until `timeout` passes, connections are retired, or the table
    /// starts closing.
    pub fn wait(&self, timeout: Duration) {
        let st = self.lock();
        if !st.closing && st.retired.is_empty() {
            let _ = self.reaper.wait_timeout(st, timeout);
        }
    }

    /// The counters, with the "now" values filled in.
    pub fn stats(&self) -> ImapStats {
        let st = self.lock();
        let mut s = st.counters.clone();
        s.in_use = st.slots.iter().filter(|s| s.session.is_some()).count() as u64;
        s.busy = st.slots.iter().filter(|s| s.conn.is_none()).count() as u64;
        s.idle = st.slots.iter().filter(|s| s.session.is_none() && s.conn.is_some()).count() as u64;
        s.opening = st.opening as u64;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Hasher;

    /// A stand-in connection: just a name.
    type P = ConnTable<&'static str>;

    fn open(p: &P, id: Digest, session: &str, conn: &'static str) {
        open_as(p, id, id, session, conn);
    }

    fn open_as(p: &P, id: Digest, user: Digest, session: &str, conn: &'static str) {
        match p.login(id, session) {
            LoginStep::Open { ticket, evicted: None } => ticket.opened(id, user, session, conn),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_parked_connection_is_reused_only_for_the_same_identity() {
        let h = Hasher::random().unwrap();
        let p = P::new(4, Duration::from_secs(60));
        let alice = h.identity("alice", "secret", "s1", "");
        open(&p, alice, "s1", "c1");
        let SessionStep::Held(l) = p.session("s1") else { panic!() };
        assert_eq!(l.put_back(Back::Parked), None);
        assert!(matches!(p.session("s1"), SessionStep::Unknown), "logged out");
        let other_pw = h.identity("alice", "other", "s1", "");
        assert!(matches!(p.login(other_pw, "s1"), LoginStep::Open { evicted: None, .. }));
        let other_session = h.identity("alice", "secret", "s2", "");
        assert!(matches!(p.login(other_session, "s2"), LoginStep::Open { evicted: None, .. }));
        match p.login(alice, "s1") {
            LoginStep::Reuse(l) => assert_eq!(*l, "c1"),
            other => panic!("{other:?}"),
        };
    }

    #[test]
    fn a_full_table_reclaims_the_longest_idle_and_never_a_busy_one() {
        let h = Hasher::random().unwrap();
        let p = P::new(3, Duration::from_secs(60));
        let ids: Vec<Digest> = (0..5).map(|i| h.identity("u", "p", &format!("s{i}"), "")).collect();
        for (i, c) in ["c0", "c1", "c2"].into_iter().enumerate() {
            open(&p, ids[i], &format!("s{i}"), c);
            std::thread::sleep(Duration::from_millis(2));
        }
        // c0 is the longest idle, but busy: c1 goes.
        let SessionStep::Held(busy) = p.session("s0") else { panic!() };
        match p.login(ids[3], "s3") {
            LoginStep::Open { ticket, evicted: Some(c) } => {
                assert_eq!(c, "c1");
                ticket.opened(ids[3], ids[3], "s3", "c3");
            }
            other => panic!("{other:?}"),
        }
        // Busy: c0 and (taken now) c2 and c3: nothing to reclaim.
        let SessionStep::Held(_b2) = p.session("s2") else { panic!() };
        let SessionStep::Held(_b3) = p.session("s3") else { panic!() };
        assert!(matches!(p.login(ids[4], "s4"), LoginStep::Wait(Busy::Table)));
        assert!(matches!(p.login(ids[0], "s0"), LoginStep::Wait(Busy::Session)));
        assert!(matches!(p.session("s0"), SessionStep::Busy));
        assert_eq!(busy.put_back(Back::InUse), None);
        let s = p.stats();
        assert_eq!((s.reclaimed, s.busy, s.in_use, s.peak_open), (1, 2, 3, 3));
    }

    #[test]
    fn another_identity_on_a_session_detaches_the_old_connection() {
        let h = Hasher::random().unwrap();
        let p = P::new(2, Duration::from_secs(60));
        let (a, b) = (h.identity("alice", "x", "s", ""), h.identity("bob", "y", "s", ""));
        open(&p, a, "s", "ca");
        let LoginStep::Detach(l) = p.login(b, "s") else { panic!() };
        assert_eq!(l.put_back(Back::Parked), None);
        assert!(matches!(p.login(b, "s"), LoginStep::Open { evicted: None, .. }));
    }

    #[test]
    fn idle_connections_expire_busy_ones_do_not() {
        let h = Hasher::random().unwrap();
        let p = P::new(4, Duration::from_millis(1));
        open(&p, h.identity("a", "", "s1", ""), "s1", "c1");
        open(&p, h.identity("b", "", "s2", ""), "s2", "c2");
        let SessionStep::Held(_busy) = p.session("s2") else { panic!() };
        std::thread::sleep(Duration::from_millis(5));
        let (gone, _) = p.expired(Instant::now());
        assert_eq!(gone, vec!["c1"]);
        let s = p.stats();
        assert_eq!((s.closed_idle, s.busy, s.created), (1, 1, 2));
        assert_eq!(p.close_all(), Vec::<&str>::new(), "the busy one stays with its worker");
        assert!(matches!(p.login(h.identity("c", "", "s3", ""), "s3"), LoginStep::Closing));
    }

    #[test]
    fn a_flush_logs_out_parked_connections_and_closes_in_use_ones_at_logout() {
        let h = Hasher::random().unwrap();
        let p = P::new(4, Duration::from_secs(60));
        let (alice, bob) = (h.user("alice"), h.user("bob"));
        let (a1, a2, b1) = (
            h.identity("alice", "pw", "s1", ""),
            h.identity("alice", "pw", "s2", ""),
            h.identity("bob", "pw", "s3", ""),
        );
        open_as(&p, a1, alice, "s1", "a1");
        open_as(&p, a2, alice, "s2", "a2");
        open_as(&p, b1, bob, "s3", "b1");
        let SessionStep::Held(l) = p.session("s1") else { panic!() };
        assert_eq!(l.put_back(Back::Parked), None);
        let SessionStep::Held(busy) = p.session("s2") else { panic!() };
        // One user: alice's parked connection goes now, her busy one is marked; bob's stays.
        assert_eq!(p.retire(Some(&alice)), (1, 1));
        assert_eq!(p.expired(Instant::now()).0, vec!["a1"], "handed to the reaper");
        assert!(matches!(p.login(a1, "s1"), LoginStep::Open { .. }), "no reuse of a1");
        // The busy command is not disturbed; its session goes on until it ends...
        assert_eq!(busy.put_back(Back::InUse), None);
        let SessionStep::Held(l) = p.session("s2") else { panic!("the session goes on") };
        assert_eq!(l.put_back(Back::InUse), None);
        // ...but a new login on it opens a new connection, and its logout closes it.
        let LoginStep::Detach(l) = p.login(a2, "s2") else { panic!("a retired connection") };
        assert_eq!(l.put_back(Back::Parked), Some("a2"), "closed, not parked");
        assert!(matches!(p.session("s2"), SessionStep::Unknown));
        let SessionStep::Held(l) = p.session("s3") else { panic!("bob's is untouched") };
        assert_eq!(l.put_back(Back::Parked), None);
        // Everyone: bob's parked connection goes too.
        assert_eq!(p.retire(None), (1, 0));
        assert_eq!(p.close_all(), vec!["b1"], "shutdown logs out what the reaper has not");
        let s = p.stats();
        assert_eq!((s.closed, s.parked, s.in_use, s.idle), (3, 2, 0, 0));
    }

    #[test]
    fn a_lease_dropped_in_a_panic_frees_its_slot() {
        let h = Hasher::random().unwrap();
        let p = P::new(1, Duration::from_secs(60));
        let (a, b) = (h.identity("a", "", "s1", ""), h.identity("b", "", "s2", ""));
        open(&p, a, "s1", "c1");
        let SessionStep::Held(lease) = p.session("s1") else { panic!() };
        assert!(matches!(p.login(b, "s2"), LoginStep::Wait(Busy::Table)), "full and busy");
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _held = lease;
            panic!("a request panicked mid-command");
        }));
        assert!(panicked.is_err());
        let s = p.stats();
        assert_eq!((s.busy, s.in_use, s.closed_broken, s.closed), (0, 0, 1, 0));
        assert!(matches!(p.session("s1"), SessionStep::Unknown), "the slot is gone");
        match p.login(b, "s2") {
            LoginStep::Open { ticket, evicted: None } => ticket.opened(b, b, "s2", "c2"),
            other => panic!("the full table of 1 has room again: {other:?}"),
        }
        assert_eq!(p.stats().created, 2);
    }

    #[test]
    fn a_dropped_ticket_frees_its_place() {
        let h = Hasher::random().unwrap();
        let p = P::new(1, Duration::from_secs(60));
        let (a, b) = (h.identity("a", "", "s1", ""), h.identity("b", "", "s2", ""));
        let LoginStep::Open { ticket, evicted: None } = p.login(a, "s1") else { panic!() };
        assert_eq!(p.stats().opening, 1);
        assert!(matches!(p.login(b, "s2"), LoginStep::Wait(Busy::Table)), "the place is kept");
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _kept = ticket;
            panic!("a request panicked while connecting");
        }));
        assert!(panicked.is_err());
        assert_eq!(p.stats().opening, 0);
        let LoginStep::Open { ticket, evicted: None } = p.login(b, "s2") else { panic!() };
        drop(ticket);
        assert_eq!(p.stats().opening, 0, "dropped without cancel()");
        let LoginStep::Open { ticket, evicted: None } = p.open_only() else { panic!() };
        ticket.cancel();
        let s = p.stats();
        assert_eq!((s.opening, s.created, s.peak_open), (0, 0, 1));
    }

    #[test]
    fn a_discarded_lease_leaves_the_table_counted_by_why() {
        let h = Hasher::random().unwrap();
        let p = P::new(2, Duration::from_secs(60));
        open(&p, h.identity("a", "", "s1", ""), "s1", "c1");
        open(&p, h.identity("b", "", "s2", ""), "s2", "c2");
        let SessionStep::Held(l) = p.session("s1") else { panic!() };
        assert_eq!(l.discard(Gone::Closed), "c1");
        let SessionStep::Held(l) = p.session("s2") else { panic!() };
        assert_eq!(l.discard(Gone::Broken), "c2");
        let s = p.stats();
        assert_eq!((s.closed, s.closed_broken, s.busy, s.in_use), (1, 1, 0, 0));
        assert!(matches!(p.session("s1"), SessionStep::Unknown));
    }
}
