//! Arguments: `key=value` for the internal `worker` and `echo` modes, `--key value` (or
//! `--key=value`, or a bare `--flag`) for `run`. Both end up in one map.

use crate::Res;
use std::collections::BTreeMap;
use std::str::FromStr;

/// Parsed arguments.
#[derive(Debug, Default)]
pub struct Args {
    /// Name → value; a bare flag maps to `"1"`.
    map: BTreeMap<String, String>,
}

impl Args {
    /// Parses `key=value`, `--key value`, `--key=value` and `--flag`.
    pub fn parse(args: &[String]) -> Res<Args> {
        let mut map = BTreeMap::new();
        let mut it = args.iter().peekable();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                if let Some((k, v)) = name.split_once('=') {
                    map.insert(k.to_string(), v.to_string());
                } else if it.peek().is_some_and(|n| !n.starts_with("--")) {
                    let v = it.next().cloned().unwrap_or_default();
                    map.insert(name.to_string(), v);
                } else {
                    map.insert(name.to_string(), "1".to_string());
                }
            } else if let Some((k, v)) = a.split_once('=') {
                map.insert(k.to_string(), v.to_string());
            } else {
                return Err(format!("unexpected argument {a:?} (see `compare help`)").into());
            }
        }
        Ok(Args { map })
    }

    /// A string value, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    /// A required string value.
    pub fn need(&self, key: &str) -> Res<&str> {
        self.get(key).ok_or_else(|| format!("missing {key}").into())
    }

    /// A required `HOST:PORT` value.
    pub fn host_port(&self, key: &str) -> Res<(String, u16)> {
        let v = self.need(key)?;
        let (h, p) = v.rsplit_once(':').ok_or_else(|| format!("{key}: want HOST:PORT"))?;
        Ok((h.to_string(), p.parse()?))
    }

    /// A parsed value, or `default` when absent.
    pub fn or<T: FromStr>(&self, key: &str, default: T) -> Res<T> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("{key}: cannot parse {v:?}").into()),
        }
    }

    /// True for a bare `--flag` (or `flag=1`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("1" | "true" | "yes"))
    }

    /// A comma-separated list of parsed values, or `default` when absent.
    pub fn list<T: FromStr + Clone>(&self, key: &str, default: &[T]) -> Res<Vec<T>> {
        match self.get(key) {
            None => Ok(default.to_vec()),
            Some(v) => v
                .split(',')
                .map(|x| x.trim().parse().map_err(|_| format!("{key}: cannot parse {x:?}").into()))
                .collect(),
        }
    }
}
