//! User lookup through reentrant NSS calls (`getpwnam_r`, `getgrouplist`)
//! via nix, so it is safe inside a multi-threaded PAM host.
#![forbid(unsafe_code)]

use std::ffi::CString;
use std::fmt;
use std::path::PathBuf;

use nix::unistd::{Gid, Group, Uid, User};

/// The facts about a user that a session needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub shell: PathBuf,
}

#[derive(Debug)]
pub enum UserError {
    /// The name cannot be a user name at all.
    InvalidName(String),
    /// No such user in the passwd database (files, LDAP, SSSD...).
    Unknown(String),
    /// The lookup itself failed (NSS backend down, out of memory...).
    Lookup { what: String, reason: String },
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserError::InvalidName(name) => write!(
                f,
                "'{}' is not a valid user name (letters, digits, '.', '_', '-', '@', '$'; at most 256 bytes; not starting with '-')",
                name.escape_debug()
            ),
            UserError::Unknown(name) => write!(f, "no such user '{name}' (check `getent passwd {name}`)"),
            UserError::Lookup { what, reason } => {
                write!(f, "looking up {what} failed: {reason} (is the NSS backend, e.g. sssd or LDAP, reachable?)")
            }
        }
    }
}

impl std::error::Error for UserError {}

/// Names we accept: what useradd, SSSD and LDAP produce, nothing that could
/// be a path, an option or carry control characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && !name.starts_with('-')
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@' | b'$'))
}

impl UserInfo {
    fn from_nix(u: User) -> UserInfo {
        UserInfo { name: u.name, uid: u.uid.as_raw(), gid: u.gid.as_raw(), home: u.dir, shell: u.shell }
    }

    /// Look a user up by name.
    pub fn by_name(name: &str) -> Result<UserInfo, UserError> {
        if !valid_name(name) {
            return Err(UserError::InvalidName(name.to_string()));
        }
        match User::from_name(name) {
            Ok(Some(u)) => Ok(UserInfo::from_nix(u)),
            Ok(None) => Err(UserError::Unknown(name.to_string())),
            Err(e) => Err(UserError::Lookup { what: format!("user '{name}'"), reason: e.desc().into() }),
        }
    }

    /// Look a user up by uid.
    pub fn by_uid(uid: u32) -> Result<UserInfo, UserError> {
        match User::from_uid(Uid::from_raw(uid)) {
            Ok(Some(u)) => Ok(UserInfo::from_nix(u)),
            Ok(None) => Err(UserError::Unknown(format!("uid {uid}"))),
            Err(e) => Err(UserError::Lookup { what: format!("uid {uid}"), reason: e.desc().into() }),
        }
    }

    /// The user's groups: the primary gid first, then every supplementary
    /// group from the group database. Compute this as root, before dropping
    /// privileges.
    pub fn groups(&self) -> Result<Vec<u32>, UserError> {
        let name = CString::new(self.name.as_bytes()).map_err(|_| UserError::InvalidName(self.name.clone()))?;
        let groups = nix::unistd::getgrouplist(&name, Gid::from_raw(self.gid))
            .map_err(|e| UserError::Lookup { what: format!("groups of '{}'", self.name), reason: e.desc().into() })?;
        let mut out = vec![self.gid];
        out.extend(groups.into_iter().map(|g| g.as_raw()).filter(|g| *g != self.gid));
        Ok(out)
    }
}

/// Why jupyter-session leaves a user's sessions alone: the one rule the
/// module, the keeper and `check` share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unmanaged {
    Root,
    BelowMinUid { min_uid: u32 },
}

impl fmt::Display for Unmanaged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unmanaged::Root => f.write_str("is root"),
            Unmanaged::BelowMinUid { min_uid } => write!(f, "has a uid below min_uid {min_uid}"),
        }
    }
}

/// Whether sessions of `uid` are managed with `min_uid` in force: never
/// root, never a uid below `min_uid` (system accounts).
pub fn managed(uid: u32, min_uid: u32) -> Result<(), Unmanaged> {
    if uid == 0 {
        Err(Unmanaged::Root)
    } else if uid < min_uid {
        Err(Unmanaged::BelowMinUid { min_uid })
    } else {
        Ok(())
    }
}

/// The name of a group, for messages; the number if it has none.
pub fn group_name(gid: u32) -> String {
    match Group::from_gid(Gid::from_raw(gid)) {
        Ok(Some(g)) => g.name,
        _ => gid.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_users() {
        assert_eq!(managed(0, 0), Err(Unmanaged::Root));
        assert_eq!(managed(999, 1000), Err(Unmanaged::BelowMinUid { min_uid: 1000 }));
        assert_eq!(managed(1000, 1000), Ok(()));
    }

    #[test]
    fn names() {
        for ok in ["alice", "a.b-c_d", "user@example.org", "machine$", "u1000"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-rf", "..", ".", "a/b", "a b", "a\nb", "ü", &"x".repeat(257)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn root_resolves_with_groups() {
        let root = UserInfo::by_name("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(root.groups().unwrap()[0], 0);
        assert_eq!(UserInfo::by_uid(0).unwrap().name, "root");
    }

    #[test]
    fn unknown_and_invalid_are_distinct() {
        assert!(matches!(UserInfo::by_name("no-such-user-js"), Err(UserError::Unknown(_))));
        let err = UserInfo::by_name("../etc").unwrap_err();
        assert!(matches!(err, UserError::InvalidName(_)));
        assert!(err.to_string().contains("not a valid user name"));
    }
}
