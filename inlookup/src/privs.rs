//! Dropping root: inlookup serves as an unprivileged user, never as root.

use crate::error::PrivsError;
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
pub fn target(name: Option<&str>) -> Result<Option<Target>, PrivsError> {
    let uid = getuid();
    match (uid.is_root(), name) {
        (true, None) => Err(PrivsError::RootWithoutUser),
        (true, Some(n)) => {
            let user = User::from_name(n)
                .map_err(|e| PrivsError::UserLookup(n.into(), e))?
                .ok_or_else(|| PrivsError::NoSuchUser(n.into()))?;
            if user.uid.is_root() {
                return Err(PrivsError::RootTarget(n.into()));
            }
            Ok(Some(Target { user }))
        }
        (false, Some(n)) => {
            let me = User::from_uid(uid).ok().flatten().map(|u| u.name);
            if me.as_deref() == Some(n) {
                Ok(None)
            } else {
                Err(PrivsError::NotRoot(n.into()))
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
    pub fn drop_root(&self) -> Result<(), PrivsError> {
        let name = CString::new(self.user.name.clone()).map_err(|_| PrivsError::NulInName)?;
        initgroups(&name, self.user.gid).map_err(|e| PrivsError::Call("initgroups", e))?;
        setgid(self.user.gid).map_err(|e| PrivsError::Call("setgid", e))?;
        setuid(self.user.uid).map_err(|e| PrivsError::Call("setuid", e))?;
        if getuid().is_root() || nix::unistd::geteuid().is_root() {
            return Err(PrivsError::StillRoot);
        }
        log::info!("running as {} (uid {}, gid {})", self.user.name, self.user.uid, self.user.gid);
        Ok(())
    }
}
