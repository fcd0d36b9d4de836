//! Whether systemd-logind manages a user's runtime dir.
//!
//! Where logind runs, `/run/user/UID` belongs to it for as long as it
//! tracks the user (a session of the user through `pam_systemd`, or
//! linger): its `user-runtime-dir@UID.service` mounted the tmpfs, or
//! adopted the one pam_jupyter mounted when pam_jupyter ran first in the
//! stack, and it unmounts and removes it when it lets the user go. What it
//! manages, pam_jupyter never removes. Read from logind's own state files
//! (`/run/systemd/seats/` exists while logind runs; `/run/systemd/users/UID`
//! while it tracks the user), so nothing here talks D-Bus or blocks.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

/// logind's state, under `/run/systemd` (another root for tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logind {
    root: PathBuf,
}

impl Default for Logind {
    fn default() -> Self {
        Logind::at(Path::new("/run/systemd"))
    }
}

impl Logind {
    /// logind's runtime state under `root` instead of `/run/systemd`.
    pub fn at(root: &Path) -> Logind {
        Logind { root: root.to_path_buf() }
    }

    /// logind runs on this machine (systemd's own `logind_running()` check:
    /// its seats directory exists).
    pub fn running(&self) -> bool {
        self.root.join("seats").is_dir()
    }

    /// logind tracks `uid` (a session or linger) and so owns its runtime
    /// dir: it removes the dir when it lets the user go.
    pub fn manages(&self, uid: u32) -> bool {
        self.running() && self.root.join("users").join(uid.to_string()).is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manages_only_users_logind_tracks_while_it_runs() {
        let dir = std::env::temp_dir().join(format!("logind-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("users")).unwrap();
        std::fs::write(dir.join("users/1000"), "NAME=alice\n").unwrap();
        let logind = Logind::at(&dir);
        assert!(!logind.running() && !logind.manages(1000), "no seats dir: logind is not running");
        std::fs::create_dir(dir.join("seats")).unwrap();
        assert!(logind.running() && logind.manages(1000) && !logind.manages(1001));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
