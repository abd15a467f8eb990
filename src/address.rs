//! Email addresses as the lookups see them, and cache keys that compare the way MySQL does.

use crate::kind::QueryKind;

/// A `user@domain` split into its parts, both lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The local part.
    pub user: String,
    /// The domain (DEFAULT_DOMAIN when the input had none).
    pub domain: String,
}

/// MySQL's default collations ignore case and trailing spaces (PAD SPACE): fold them away.
fn fold(s: &str) -> String {
    s.trim_end_matches(' ').to_lowercase()
}

impl Address {
    /// Splits at the first `@`, as IndiMail's parse_email does. With no `@` the domain is
    /// `default_domain`; an empty user or domain is no address.
    ///
    /// ```
    /// use inlookup_core::Address;
    /// let a = Address::parse("Alice@Example.COM", None).unwrap();
    /// assert_eq!((a.user.as_str(), a.domain.as_str()), ("alice", "example.com"));
    /// assert_eq!(Address::parse("bob", Some("example.org")).unwrap().domain, "example.org");
    /// assert!(Address::parse("bob", None).is_none());
    /// ```
    pub fn parse(email: &str, default_domain: Option<&str>) -> Option<Address> {
        let email = fold(email.trim_start());
        let (user, domain) = match email.split_once('@') {
            Some((u, d)) => (u.to_string(), d.to_string()),
            None => (email, default_domain?.to_lowercase()),
        };
        (!user.is_empty() && !domain.is_empty()).then_some(Address { user, domain })
    }
}

/// The cache key of a classic request: the kind, the folded email (with DEFAULT_DOMAIN
/// applied, so `alice` and `alice@example.com` share an entry) and, for RELAY, the IP.
///
/// ```
/// use inlookup_core::{cache_key, QueryKind};
/// let a = cache_key(QueryKind::Pwd, "Alice@Example.com ", "", Some("example.com"));
/// let b = cache_key(QueryKind::Pwd, "alice", "", Some("example.com"));
/// assert_eq!(a, b);
/// assert_ne!(cache_key(QueryKind::Relay, "a@x", "10.0.0.1", None),
///            cache_key(QueryKind::Relay, "a@x", "10.0.0.2", None));
/// ```
pub fn cache_key(kind: QueryKind, email: &str, ip: &str, default_domain: Option<&str>) -> String {
    let mut key = String::new();
    cache_key_into(&mut key, kind, email, ip, default_domain);
    key
}

/// [`cache_key`] into a buffer the caller reuses (the daemon builds one key per request).
///
/// ```
/// use inlookup_core::{address::cache_key_into, cache_key, QueryKind};
/// let mut buf = String::from("left over");
/// cache_key_into(&mut buf, QueryKind::User, " Bob@X.org", "", None);
/// assert_eq!(buf, cache_key(QueryKind::User, "bob@x.org", "", None));
/// ```
pub fn cache_key_into(
    key: &mut String,
    kind: QueryKind,
    email: &str,
    ip: &str,
    default_domain: Option<&str>,
) {
    key.clear();
    if !(email.is_ascii() && default_domain.is_none_or(str::is_ascii)) {
        return cache_key_unicode(key, kind, email, ip, default_domain);
    }
    // ASCII: the same folding as `Address::parse` without its allocations. Splitting at the
    // first `@` and joining again gives the folded email back, so the subject is the folded
    // email, plus `@DEFAULT_DOMAIN` when it has no `@` and is an address.
    let folded = email.trim_start().trim_end_matches(' ');
    key.reserve(2 + folded.len() + default_domain.map_or(0, str::len) + ip.len());
    key.push(kind.byte() as char);
    key.extend(folded.chars().map(|c| c.to_ascii_lowercase()));
    let domain_kind = matches!(kind, QueryKind::Domain | QueryKind::Limit);
    if !domain_kind && !folded.is_empty() && !folded.contains('@') {
        if let Some(d) = default_domain.filter(|d| !d.is_empty()) {
            key.push('@');
            key.extend(d.chars().map(|c| c.to_ascii_lowercase()));
        }
    }
    push_ip(key, kind, ip);
}

/// The general case (any Unicode): fold through [`Address::parse`].
fn cache_key_unicode(
    key: &mut String,
    kind: QueryKind,
    email: &str,
    ip: &str,
    default_domain: Option<&str>,
) {
    let subject = match kind {
        QueryKind::Domain | QueryKind::Limit if !email.contains('@') => fold(email.trim_start()),
        _ => match Address::parse(email, default_domain) {
            Some(a) => format!("{}@{}", a.user, a.domain),
            None => fold(email.trim_start()),
        },
    };
    key.reserve(2 + subject.len() + ip.len());
    key.push(kind.byte() as char);
    key.push_str(&subject);
    push_ip(key, kind, ip);
}

fn push_ip(key: &mut String, kind: QueryKind, ip: &str) {
    if kind == QueryKind::Relay {
        key.push('\0');
        key.push_str(ip.trim());
    }
}

/// A cache key ([`cache_key`]) as a type: built once per miss, it names the in-flight
/// lookup and the cache entry, and says which kind and subject it is about.
///
/// ```
/// use inlookup_core::{CacheKey, QueryKind};
/// let k = CacheKey::new(QueryKind::Relay, "Bob@X.org", "10.0.0.1", None);
/// assert_eq!((k.kind(), k.subject()), (Some(QueryKind::Relay), "bob@x.org"));
/// assert_eq!(k, CacheKey::from(inlookup_core::cache_key(QueryKind::Relay, "bob@x.org", "10.0.0.1", None)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(Box<str>);

impl CacheKey {
    /// The key of a classic request, as [`cache_key`] folds it.
    pub fn new(kind: QueryKind, email: &str, ip: &str, default_domain: Option<&str>) -> CacheKey {
        CacheKey(cache_key(kind, email, ip, default_domain).into_boxed_str())
    }

    /// The key's text (what the cache stores it under).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The kind it was built for.
    pub fn kind(&self) -> Option<QueryKind> {
        key_kind(&self.0)
    }

    /// The subject (email or domain), without the kind and the IP.
    pub fn subject(&self) -> &str {
        key_subject(&self.0)
    }
}

impl From<String> for CacheKey {
    /// A key built by [`cache_key`] or [`cache_key_into`].
    fn from(s: String) -> CacheKey {
        CacheKey(s.into_boxed_str())
    }
}

impl std::borrow::Borrow<str> for CacheKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// The kind a key was built for.
pub fn key_kind(key: &str) -> Option<QueryKind> {
    key.bytes().next().and_then(QueryKind::from_byte)
}

/// The subject (email or domain) inside a key, without the kind and the IP.
pub fn key_subject(key: &str) -> &str {
    let rest = key.get(1..).unwrap_or("");
    rest.split('\0').next().unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fold_case_and_trailing_spaces_but_not_leading_content() {
        let k = |e: &str| cache_key(QueryKind::User, e, "", None);
        assert_eq!(k("ALICE@EXAMPLE.COM"), k("alice@example.com"));
        assert_eq!(k("alice@example.com   "), k("alice@example.com"));
        assert_ne!(k("alice@example.com"), k("alice@example.co"));
        assert_ne!(
            cache_key(QueryKind::User, "a@x", "", None),
            cache_key(QueryKind::Pwd, "a@x", "", None)
        );
    }

    #[test]
    fn key_parts_come_back() {
        let k = cache_key(QueryKind::Relay, "A@x", "1.2.3.4", None);
        assert_eq!(key_kind(&k), Some(QueryKind::Relay));
        assert_eq!(key_subject(&k), "a@x");
        let k = cache_key(QueryKind::Domain, "Example.ORG", "", Some("d"));
        assert_eq!(key_subject(&k), "example.org");
    }

    /// Every classic kind (the first seven of `ALL`), for the property test.
    const KINDS: [QueryKind; 7] = {
        let a = QueryKind::ALL;
        [a[0], a[1], a[2], a[3], a[4], a[5], a[6]]
    };

    #[test]
    fn the_first_seven_kinds_are_the_classic_ones() {
        assert!(KINDS.iter().all(|k| k.is_classic()));
        assert_eq!(QueryKind::ALL.iter().filter(|k| k.is_classic()).count(), 7);
    }

    fn unicode_key(kind: QueryKind, email: &str, ip: &str, dd: Option<&str>) -> String {
        let mut k = String::new();
        cache_key_unicode(&mut k, kind, email, ip, dd);
        k
    }

    #[test]
    fn ascii_fast_path_edge_cases_agree_with_the_general_path() {
        let emails =
            ["", " ", "@", "@x", "a@", "a@b@C", "\t\x0bBob ", "bob  \t", " A@B ", "x", "ab@cd \n"];
        for kind in KINDS {
            for e in emails {
                for dd in [None, Some(""), Some("Example.COM")] {
                    assert_eq!(
                        cache_key(kind, e, " 1.2.3.4 ", dd),
                        unicode_key(kind, e, " 1.2.3.4 ", dd),
                        "{kind:?} {e:?} {dd:?}"
                    );
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn fast_and_general_paths_agree(
            kind in 0..KINDS.len(),
            email in "[ \t\n\x0b\x0c\ra-zA-Z0-9@._+-]{0,24}",
            ip in "[ 0-9.:]{0,16}",
            dd in proptest::option::of("[a-zA-Z0-9.@ -]{0,12}"),
        ) {
            let kind = KINDS[kind];
            proptest::prop_assert_eq!(
                cache_key(kind, &email, &ip, dd.as_deref()),
                unicode_key(kind, &email, &ip, dd.as_deref())
            );
        }

        #[test]
        fn any_input_gets_the_general_paths_key(
            kind in 0..KINDS.len(),
            email in "\\PC{0,16}",
            dd in proptest::option::of("\\PC{0,8}"),
        ) {
            let kind = KINDS[kind];
            proptest::prop_assert_eq!(
                cache_key(kind, &email, "", dd.as_deref()),
                unicode_key(kind, &email, "", dd.as_deref())
            );
        }
    }

    #[test]
    fn addresses() {
        assert!(Address::parse("@x", None).is_none());
        assert!(Address::parse("a@", None).is_none());
        assert_eq!(Address::parse("a@b@c", None).unwrap().domain, "b@c");
    }
}
