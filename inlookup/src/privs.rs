//! Dropping root: inlookup serves as an unprivileged user, never as root.

use nix::unistd::{getuid, initgroups, setgid, setuid, User};
use std::ffi::CString;
use std::path::Path;

/// The user to become, looked up before anything is created so files can be chowned to it.
#[derive(Debug, Clone)]
pub struct Target {
    user: User,
}

/// Decides whom to run as. As root, `name` is required; as anyone else it must be absent
/// or name the current user.
///
/// # Errors
/// Root without `--user`, an unknown user, or a non-root process asked to switch.
pub fn target(name: Option<&str>) -> Result<Option<Target>, String> {
    let uid = getuid();
    match (uid.is_root(), name) {
        (true, None) => Err(
            "refusing to run as root: pass --user (INLOOKUP_USER) or start under setuidgid/chpst"
                .into(),
        ),
        (true, Some(n)) => {
            let user = User::from_name(n)
                .map_err(|e| format!("user {n}: {e}"))?
                .ok_or(format!("no such user {n:?}"))?;
            if user.uid.is_root() {
                return Err(format!("--user {n} is root; name an unprivileged user"));
            }
            Ok(Some(Target { user }))
        }
        (false, Some(n)) => {
            let me = User::from_uid(uid).ok().flatten().map(|u| u.name);
            if me.as_deref() == Some(n) {
                Ok(None)
            } else {
                Err(format!("--user {n}: only root can switch users"))
            }
        }
        (false, None) => Ok(None),
    }
}

impl Target {
    /// Gives a path we created to the target user.
    pub fn chown(&self, p: &Path) {
        if let Err(e) = nix::unistd::chown(p, Some(self.user.uid), Some(self.user.gid)) {
            log::warn!("{}: chown to {}: {e}", p.display(), self.user.name);
        }
    }

    /// Becomes the user for good: supplementary groups, group, then user.
    ///
    /// # Errors
    /// Any of the calls failed; the process must not go on as root.
    pub fn drop_root(&self) -> Result<(), String> {
        let name =
            CString::new(self.user.name.clone()).map_err(|_| "user name has a NUL".to_string())?;
        initgroups(&name, self.user.gid).map_err(|e| format!("initgroups: {e}"))?;
        setgid(self.user.gid).map_err(|e| format!("setgid: {e}"))?;
        setuid(self.user.uid).map_err(|e| format!("setuid: {e}"))?;
        if getuid().is_root() || nix::unistd::geteuid().is_root() {
            return Err("still root after setuid".into());
        }
        log::info!("running as {} (uid {}, gid {})", self.user.name, self.user.uid, self.user.gid);
        Ok(())
    }
}
