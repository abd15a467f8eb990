//! Which request FIFO to write to, as IndiMail's inquery() finds it, but choosing among
//! instances uniformly at random and skipping missing ones.

use std::path::{Path, PathBuf};

/// INFIFODIR when unset.
pub const DEFAULT_INFIFODIR: &str = "/run/indimail/inlookup";
/// INDIMAILDIR when unset (a relative INFIFODIR lives under it).
pub const DEFAULT_INDIMAILDIR: &str = "/var/indimail";
/// The most instances probed (`infifo.1` … `infifo.64`).
pub const MAX_INSTANCES: usize = 64;

/// Where the daemon listens, before instances are probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A path used as given (an INFIFO starting with `/` or `.`).
    Exact(PathBuf),
    /// A name inside a directory: `dir/name.1..N` when instances exist, else `dir/name`.
    Instances { dir: PathBuf, name: String },
}

impl Target {
    /// IndiMail's rules: INFIFO (default `infifo`) absolute or `./relative` as given;
    /// otherwise inside INFIFODIR (default `/run/indimail/inlookup`; relative: under
    /// INDIMAILDIR).
    pub fn from_values(
        infifo: Option<&str>,
        infifodir: Option<&str>,
        indimaildir: Option<&str>,
    ) -> Target {
        let infifo = infifo.filter(|s| !s.is_empty()).unwrap_or("infifo");
        if infifo.starts_with('/') || infifo.starts_with('.') {
            return Target::Exact(PathBuf::from(infifo));
        }
        let dir = infifodir.filter(|s| !s.is_empty()).unwrap_or(DEFAULT_INFIFODIR);
        let dir = if dir.starts_with('/') {
            PathBuf::from(dir)
        } else {
            Path::new(indimaildir.filter(|s| !s.is_empty()).unwrap_or(DEFAULT_INDIMAILDIR))
                .join(dir)
        };
        Target::Instances { dir, name: infifo.to_string() }
    }

    /// The request FIFO's name before instance numbers: the path given, or `dir/name`.
    /// The daemon's shared cache is named after it.
    pub fn base(&self) -> PathBuf {
        match self {
            Target::Exact(p) => p.clone(),
            Target::Instances { dir, name } => dir.join(name),
        }
    }

    /// From the process environment.
    pub fn from_env() -> Target {
        let v = |n: &str| std::env::var(n).ok();
        Target::from_values(
            v("INFIFO").as_deref(),
            v("INFIFODIR").as_deref(),
            v("INDIMAILDIR").as_deref(),
        )
    }

    /// The candidate FIFOs, in the order to try them: one instance chosen uniformly at
    /// random first, then the others; the bare name when no instance exists.
    pub fn candidates(&self) -> Vec<PathBuf> {
        match self {
            Target::Exact(p) => vec![p.clone()],
            Target::Instances { dir, name } => {
                let mut found: Vec<PathBuf> = (1..=MAX_INSTANCES)
                    .map(|n| dir.join(format!("{name}.{n}")))
                    .filter(|p| p.exists())
                    .collect();
                if found.is_empty() {
                    return vec![dir.join(name)];
                }
                let start = crate::random_index(found.len());
                found.rotate_left(start);
                found
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indimails_resolution_rules() {
        assert_eq!(Target::from_values(Some("/x/f"), None, None), Target::Exact("/x/f".into()));
        assert_eq!(Target::from_values(Some("./f"), None, None), Target::Exact("./f".into()));
        assert_eq!(
            Target::from_values(None, None, None),
            Target::Instances { dir: "/run/indimail/inlookup".into(), name: "infifo".into() }
        );
        assert_eq!(
            Target::from_values(Some("q"), Some("run/fifo"), Some("/home/indi")),
            Target::Instances { dir: "/home/indi/run/fifo".into(), name: "q".into() }
        );
    }

    #[test]
    fn instances_are_found_past_gaps_and_spread_at_random() {
        let d = std::env::temp_dir().join(format!("inq-res-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let t = Target::Instances { dir: d.clone(), name: "infifo".into() };
        assert_eq!(t.candidates(), vec![d.join("infifo")], "no instances: the bare name");
        for n in [1, 2, 4] {
            std::fs::write(d.join(format!("infifo.{n}")), b"").unwrap();
        }
        let mut firsts = std::collections::HashSet::new();
        for _ in 0..200 {
            let c = t.candidates();
            assert_eq!(c.len(), 3, "instance 3 is missing and skipped, 4 still found");
            firsts.insert(c[0].clone());
        }
        assert_eq!(firsts.len(), 3, "every instance gets chosen first sometimes");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
