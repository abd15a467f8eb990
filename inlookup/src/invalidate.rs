//! From a changed row of an IndiMail table to the cache keys it makes stale (INVALIDATE):
//! pure functions, fed by the binlog reader ([`crate::binlog`]) and carried out by the
//! dispatcher ([`crate::dispatch::Dispatcher::invalidate`]).
//!
//! Each row image (before and after, so an UPDATE that moves a row evicts both places)
//! names the keys whose answers read it:
//!
//! | table | evicts |
//! |---|---|
//! | indimail, indibak | USER, PWD, HOST, LIMIT of `pw_name@pw_domain` |
//! | valias | ALIAS and USER (its answer 4) of `alias@domain` |
//! | relay | RELAY of `email`, every IP |
//! | hostcntrl | HOST of `pw_name@pw_domain` |
//! | host_table, smtp_port | every HOST answer |
//! | vlimits | LIMIT of the user, or of the whole domain (`user@domain` and `domain` keys) |
//! | aliasdomain | everything under the alias domain, its DOMAIN answer included |
//!
//! A row it cannot read (no such column, a value that is not text) and a statement on one
//! of these tables (DDL, TRUNCATE, or DML logged as a statement) evict every answer of the
//! table's kinds ([`table_kinds`]).

use inlookup_core::QueryKind;

/// What to evict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The key of this kind about this subject (`user@domain`, or a domain); for RELAY,
    /// of every IP. Also the same user in every alias domain of its domain.
    Subject(QueryKind, String),
    /// Every key of this kind whose subject is this domain or an address in it.
    InDomain(QueryKind, String),
    /// Every key whose subject is this domain or an address in it, of any kind (an alias
    /// domain changed: every answer reached through it).
    Under(String),
    /// Every key of this kind.
    Kind(QueryKind),
    /// Everything.
    All,
}

/// The IndiMail tables whose rows answers are made from.
pub const TABLES: [&str; 9] = [
    "indimail",
    "indibak",
    "valias",
    "relay",
    "hostcntrl",
    "host_table",
    "smtp_port",
    "vlimits",
    "aliasdomain",
];

/// Whether a table's changes matter to the cache.
pub fn watched(table: &str) -> bool {
    TABLES.contains(&table)
}

/// The columns each watched table is keyed by, in IndiMail's schema order (they are the
/// first ones): used by name when the binlog carries names (`binlog_row_metadata=FULL`),
/// by position when it does not.
fn key_columns(table: &str) -> &'static [&'static str] {
    match table {
        "indimail" | "indibak" | "hostcntrl" => &["pw_name", "pw_domain"],
        "valias" => &["alias", "domain"],
        "relay" => &["email", "ipaddr"],
        "vlimits" => &["domain"],
        "aliasdomain" => &["alias", "domain"],
        _ => &[],
    }
}

/// One row image: each column's name (`@N` when the binlog has no names) and its value as
/// text (`None`: NULL or not text).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row(pub Vec<(String, Option<String>)>);

impl Row {
    /// The value of a key column of `table`, by name, else by its schema position when the
    /// row has no names.
    fn get(&self, table: &str, column: &str) -> Option<&str> {
        if let Some((_, v)) = self.0.iter().find(|(n, _)| n.eq_ignore_ascii_case(column)) {
            return v.as_deref();
        }
        let unnamed = self.0.iter().all(|(n, _)| n.starts_with('@'));
        let at = key_columns(table).iter().position(|c| *c == column)?;
        if unnamed {
            self.0.get(at).and_then(|(_, v)| v.as_deref())
        } else {
            None
        }
    }
}

/// Every answer of the kinds a table feeds: what a change that cannot be read row by row
/// evicts.
pub fn table_kinds(table: &str) -> Vec<Target> {
    use QueryKind::*;
    let kinds: &[QueryKind] = match table {
        "indimail" | "indibak" => &[User, Pwd, Host, Limit],
        "valias" => &[Alias, User],
        "relay" => &[Relay],
        "hostcntrl" | "host_table" | "smtp_port" => &[Host],
        "vlimits" => &[Limit],
        "aliasdomain" => return vec![Target::All],
        _ => &[],
    };
    kinds.iter().map(|k| Target::Kind(*k)).collect()
}

/// A folded `user@domain`, or `None` when a part is missing or empty.
fn address(user: Option<&str>, domain: Option<&str>) -> Option<String> {
    let fold = |s: &str| s.trim().to_lowercase();
    let (u, d) = (fold(user?), fold(domain?));
    (!u.is_empty() && !d.is_empty()).then(|| format!("{u}@{d}"))
}

/// What one row image of `table` makes stale; `None` when the row cannot be read (the
/// caller then evicts [`table_kinds`]).
pub fn row_targets(table: &str, row: &Row) -> Option<Vec<Target>> {
    use QueryKind::*;
    let get = |c: &str| row.get(table, c);
    let fold = |s: &str| s.trim().to_lowercase();
    Some(match table {
        "indimail" | "indibak" => {
            let a = address(get("pw_name"), get("pw_domain"))?;
            [User, Pwd, Host, Limit].iter().map(|k| Target::Subject(*k, a.clone())).collect()
        }
        "valias" => {
            let a = address(get("alias"), get("domain"))?;
            vec![Target::Subject(Alias, a.clone()), Target::Subject(User, a)]
        }
        "relay" => {
            let e = fold(get("email")?);
            if e.is_empty() {
                return None;
            }
            vec![Target::Subject(Relay, e)]
        }
        "hostcntrl" => vec![Target::Subject(Host, address(get("pw_name"), get("pw_domain"))?)],
        "host_table" | "smtp_port" => vec![Target::Kind(Host)],
        "vlimits" => {
            let d = fold(get("domain")?);
            match d.split_once('@') {
                Some((u, dom)) if !u.is_empty() && !dom.is_empty() => {
                    vec![Target::Subject(Limit, d.clone())]
                }
                _ if !d.is_empty() => vec![Target::InDomain(Limit, d)],
                _ => return None,
            }
        }
        "aliasdomain" => {
            let a = fold(get("alias")?);
            if a.is_empty() {
                return None;
            }
            vec![Target::Under(a)]
        }
        _ => Vec::new(),
    })
}

/// The watched tables a statement names (a word of the query equal to a table's name,
/// ignoring case and quotes): a statement the reader cannot map row by row. Transaction
/// control (BEGIN, COMMIT, …) names none.
pub fn statement_tables(query: &str) -> Vec<&'static str> {
    let q = query.trim_start();
    let first = q.split(|c: char| !c.is_ascii_alphabetic()).next().unwrap_or("");
    if ["begin", "commit", "rollback", "xa", "savepoint", "release"]
        .iter()
        .any(|w| first.eq_ignore_ascii_case(w))
    {
        return Vec::new();
    }
    let mut found = Vec::new();
    for word in q.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if let Some(t) = TABLES.iter().find(|t| word.eq_ignore_ascii_case(t)) {
            if !found.contains(t) {
                found.push(*t);
            }
        }
    }
    found
}

/// The targets of a statement (every answer of the kinds of each table it names).
pub fn statement_targets(query: &str) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    for t in statement_tables(query) {
        for target in table_kinds(t) {
            if !out.contains(&target) {
                out.push(target);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use QueryKind::*;

    fn row(cols: &[(&str, Option<&str>)]) -> Row {
        Row(cols.iter().map(|(n, v)| (n.to_string(), v.map(str::to_string))).collect())
    }

    #[test]
    fn a_user_row_evicts_the_four_kinds_of_its_address() {
        let r = row(&[
            ("pw_name", Some("Alice")),
            ("pw_domain", Some("Example.COM ")),
            ("pw_passwd", Some("x")),
        ]);
        let t = row_targets("indimail", &r).unwrap();
        assert_eq!(
            t,
            [User, Pwd, Host, Limit].map(|k| Target::Subject(k, "alice@example.com".into()))
        );
        assert_eq!(row_targets("indibak", &r).unwrap(), t);
    }

    #[test]
    fn rows_without_names_are_read_by_position() {
        let r = row(&[("@0", Some("bob")), ("@1", Some("x.org")), ("@2", Some("hash"))]);
        assert_eq!(
            row_targets("hostcntrl", &r).unwrap(),
            vec![Target::Subject(Host, "bob@x.org".into())]
        );
        let r = row(&[("@0", Some("b@x.org")), ("@1", Some("10.0.0.1")), ("@2", None)]);
        assert_eq!(
            row_targets("relay", &r).unwrap(),
            vec![Target::Subject(Relay, "b@x.org".into())]
        );
        // Names present but not the one wanted: unreadable, not a guess by position.
        let r = row(&[("user", Some("bob")), ("dom", Some("x.org"))]);
        assert_eq!(row_targets("indimail", &r), None);
    }

    #[test]
    fn aliases_limits_and_alias_domains() {
        let r = row(&[
            ("alias", Some("info")),
            ("domain", Some("x.org")),
            ("valias_line", Some("&a@x.org")),
        ]);
        assert_eq!(
            row_targets("valias", &r).unwrap(),
            vec![
                Target::Subject(Alias, "info@x.org".into()),
                Target::Subject(User, "info@x.org".into())
            ]
        );
        let r = row(&[("domain", Some("X.org"))]);
        assert_eq!(
            row_targets("vlimits", &r).unwrap(),
            vec![Target::InDomain(Limit, "x.org".into())]
        );
        let r = row(&[("domain", Some("u@x.org"))]);
        assert_eq!(
            row_targets("vlimits", &r).unwrap(),
            vec![Target::Subject(Limit, "u@x.org".into())]
        );
        let r = row(&[("alias", Some("Alias.org")), ("domain", Some("x.org"))]);
        assert_eq!(
            row_targets("aliasdomain", &r).unwrap(),
            vec![Target::Under("alias.org".into())]
        );
        assert_eq!(row_targets("host_table", &Row::default()).unwrap(), vec![Target::Kind(Host)]);
    }

    #[test]
    fn unreadable_rows_fall_back_to_the_tables_kinds() {
        let r = row(&[("pw_name", None), ("pw_domain", Some("x.org"))]);
        assert_eq!(row_targets("indimail", &r), None);
        assert_eq!(row_targets("relay", &row(&[("email", Some(" "))])), None);
        assert_eq!(table_kinds("valias"), vec![Target::Kind(Alias), Target::Kind(User)]);
        assert_eq!(table_kinds("aliasdomain"), vec![Target::All]);
        assert!(table_kinds("lastauth").is_empty());
        assert!(!watched("lastauth") && watched("hostcntrl"));
    }

    #[test]
    fn statements_name_their_tables() {
        assert!(statement_tables("BEGIN").is_empty());
        assert!(statement_tables("COMMIT /* indimail */").is_empty());
        assert_eq!(statement_tables("TRUNCATE TABLE `valias`"), vec!["valias"]);
        assert_eq!(
            statement_tables(
                "update indimail set pw_passwd='x' where pw_name in (select alias from valias)"
            ),
            vec!["indimail", "valias"]
        );
        assert!(statement_tables("UPDATE indimail_log SET x=1").is_empty());
        assert_eq!(
            statement_targets("DELETE FROM hostcntrl; DELETE FROM host_table"),
            vec![Target::Kind(Host)]
        );
        assert_eq!(statement_targets("ALTER TABLE aliasdomain ADD x int"), vec![Target::All]);
    }
}
