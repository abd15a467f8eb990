//! The LIMIT reply: IndiMail's `struct vlimits` (vlimits.h) as raw bytes.
//!
//! Layout on x86-64 Linux (LP64: `long` is 8 bytes, `short` 2, `umdir_t` a 64-bit unsigned),
//! native byte order, 128 bytes in all:
//!
//! | offset | C type | fields |
//! | --- | --- | --- |
//! | 0 | 7 × `long` | domain_expiry, passwd_expiry, maxpopaccounts, maxaliases, maxforwards, maxautoresponders, maxmailinglists |
//! | 56 | 4 × `umdir_t` | diskquota, maxmsgcount, defaultquota, defaultmaxmsgcount |
//! | 88 | 17 × `short` | disable_pop, disable_imap, disable_dialup, disable_passwordchanging, disable_webmail, disable_relay, disable_smtp, perm_account, perm_alias, perm_forward, perm_autoresponder, perm_maillist, perm_maillist_users, perm_maillist_moderators, perm_quota, perm_defaultquota, limit_type |
//! | 122 | 6 bytes | padding to the struct's 8-byte alignment |
//!
//! The table keeps `defaultquota` signed and the others unsigned; in the struct all four
//! are `umdir_t`, so a negative `defaultquota` travels as its two's-complement bits, as in C.

use serde::{Deserialize, Serialize};

/// Size of `struct vlimits` on x86-64 Linux.
pub const VLIMITS_SIZE: usize = 128;

/// Where a limits record came from (`limit_type`).
pub const LIMIT_TYPE_DEFAULT: i16 = 0;
/// The record is the domain's row in `vlimits`.
pub const LIMIT_TYPE_DOMAIN: i16 = 1;

/// A domain's limits, field for field as IndiMail's `struct vlimits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Limits {
    pub domain_expiry: i64,
    pub passwd_expiry: i64,
    pub maxpopaccounts: i64,
    pub maxaliases: i64,
    pub maxforwards: i64,
    pub maxautoresponders: i64,
    pub maxmailinglists: i64,
    pub diskquota: u64,
    pub maxmsgcount: u64,
    pub defaultquota: u64,
    pub defaultmaxmsgcount: u64,
    pub disable_pop: i16,
    pub disable_imap: i16,
    pub disable_dialup: i16,
    pub disable_passwordchanging: i16,
    pub disable_webmail: i16,
    pub disable_relay: i16,
    pub disable_smtp: i16,
    pub perm_account: i16,
    pub perm_alias: i16,
    pub perm_forward: i16,
    pub perm_autoresponder: i16,
    pub perm_maillist: i16,
    pub perm_maillist_users: i16,
    pub perm_maillist_moderators: i16,
    pub perm_quota: i16,
    pub perm_defaultquota: i16,
    pub limit_type: i16,
}

impl Default for Limits {
    /// The limits of a domain with no `vlimits` row: every count unlimited (-1), no quotas,
    /// nothing disabled (the table's column defaults).
    fn default() -> Self {
        Limits {
            domain_expiry: -1,
            passwd_expiry: -1,
            maxpopaccounts: -1,
            maxaliases: -1,
            maxforwards: -1,
            maxautoresponders: -1,
            maxmailinglists: -1,
            diskquota: 0,
            maxmsgcount: 0,
            defaultquota: 0,
            defaultmaxmsgcount: 0,
            disable_pop: 0,
            disable_imap: 0,
            disable_dialup: 0,
            disable_passwordchanging: 0,
            disable_webmail: 0,
            disable_relay: 0,
            disable_smtp: 0,
            perm_account: 0,
            perm_alias: 0,
            perm_forward: 0,
            perm_autoresponder: 0,
            perm_maillist: 0,
            perm_maillist_users: 0,
            perm_maillist_moderators: 0,
            perm_quota: 0,
            perm_defaultquota: 0,
            limit_type: LIMIT_TYPE_DEFAULT,
        }
    }
}

impl Limits {
    fn longs(&self) -> [i64; 7] {
        [
            self.domain_expiry,
            self.passwd_expiry,
            self.maxpopaccounts,
            self.maxaliases,
            self.maxforwards,
            self.maxautoresponders,
            self.maxmailinglists,
        ]
    }

    fn quotas(&self) -> [u64; 4] {
        [self.diskquota, self.maxmsgcount, self.defaultquota, self.defaultmaxmsgcount]
    }

    fn shorts(&self) -> [i16; 17] {
        [
            self.disable_pop,
            self.disable_imap,
            self.disable_dialup,
            self.disable_passwordchanging,
            self.disable_webmail,
            self.disable_relay,
            self.disable_smtp,
            self.perm_account,
            self.perm_alias,
            self.perm_forward,
            self.perm_autoresponder,
            self.perm_maillist,
            self.perm_maillist_users,
            self.perm_maillist_moderators,
            self.perm_quota,
            self.perm_defaultquota,
            self.limit_type,
        ]
    }

    /// The C struct's bytes (see the module docs for the layout).
    ///
    /// ```
    /// use inlookup_core::Limits;
    /// let l = Limits { maxaliases: 50, ..Limits::default() };
    /// let b = l.to_bytes();
    /// assert_eq!(b.len(), 128);
    /// assert_eq!(Limits::from_bytes(&b), Some(l));
    /// ```
    pub fn to_bytes(&self) -> [u8; VLIMITS_SIZE] {
        let mut out = [0u8; VLIMITS_SIZE];
        let mut at = 0;
        for v in self.longs() {
            out[at..at + 8].copy_from_slice(&v.to_ne_bytes());
            at += 8;
        }
        for v in self.quotas() {
            out[at..at + 8].copy_from_slice(&v.to_ne_bytes());
            at += 8;
        }
        for v in self.shorts() {
            out[at..at + 2].copy_from_slice(&v.to_ne_bytes());
            at += 2;
        }
        out
    }

    /// Reads the C struct's bytes; `None` unless exactly [`VLIMITS_SIZE`] bytes.
    pub fn from_bytes(b: &[u8]) -> Option<Limits> {
        if b.len() != VLIMITS_SIZE {
            return None;
        }
        let l = |i: usize| i64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        let q =
            |i: usize| u64::from_ne_bytes(b[56 + i * 8..64 + i * 8].try_into().unwrap_or([0; 8]));
        let s = |i: usize| i16::from_ne_bytes([b[88 + i * 2], b[89 + i * 2]]);
        Some(Limits {
            domain_expiry: l(0),
            passwd_expiry: l(1),
            maxpopaccounts: l(2),
            maxaliases: l(3),
            maxforwards: l(4),
            maxautoresponders: l(5),
            maxmailinglists: l(6),
            diskquota: q(0),
            maxmsgcount: q(1),
            defaultquota: q(2),
            defaultmaxmsgcount: q(3),
            disable_pop: s(0),
            disable_imap: s(1),
            disable_dialup: s(2),
            disable_passwordchanging: s(3),
            disable_webmail: s(4),
            disable_relay: s(5),
            disable_smtp: s(6),
            perm_account: s(7),
            perm_alias: s(8),
            perm_forward: s(9),
            perm_autoresponder: s(10),
            perm_maillist: s(11),
            perm_maillist_users: s(12),
            perm_maillist_moderators: s(13),
            perm_quota: s(14),
            perm_defaultquota: s(15),
            limit_type: s(16),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_match_the_c_struct_on_x86_64() {
        let l = Limits {
            domain_expiry: 0x0102,
            maxmailinglists: 7,
            diskquota: 0xAABB,
            defaultmaxmsgcount: 9,
            disable_pop: 1,
            disable_smtp: 2,
            perm_defaultquota: 3,
            limit_type: 4,
            ..Limits::default()
        };
        let b = l.to_bytes();
        assert_eq!(i64::from_ne_bytes(b[0..8].try_into().unwrap()), 0x0102);
        assert_eq!(i64::from_ne_bytes(b[48..56].try_into().unwrap()), 7);
        assert_eq!(u64::from_ne_bytes(b[56..64].try_into().unwrap()), 0xAABB);
        assert_eq!(u64::from_ne_bytes(b[80..88].try_into().unwrap()), 9);
        assert_eq!(i16::from_ne_bytes([b[88], b[89]]), 1);
        assert_eq!(i16::from_ne_bytes([b[100], b[101]]), 2);
        assert_eq!(i16::from_ne_bytes([b[118], b[119]]), 3);
        assert_eq!(i16::from_ne_bytes([b[120], b[121]]), 4);
        assert_eq!(&b[122..], &[0u8; 6]);
        assert_eq!(Limits::from_bytes(&b), Some(l));
        assert_eq!(Limits::from_bytes(&b[..127]), None);
    }
}
