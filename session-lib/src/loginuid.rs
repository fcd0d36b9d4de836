//! loginuid: the audit login uid of the session's process.
//!
//! Written only where it is right: in a single-threaded process that will
//! become the user's session (the keeper, su, sshd's session child), only
//! if it differs, through `O_NOFOLLOW|O_RDWR`. No audit support or a
//! remapping user namespace: skipped. A multi-threaded host (JupyterHub
//! itself): not written and not a failure — the kernel refuses the write
//! from a non-main thread, which is what breaks pam_loginuid in the hub.
//!
//! Under `auto`, only an *unset* loginuid is written: a process that already
//! belongs to someone's login (an admin running `sudo -u alice`) keeps its
//! audit identity. Services started by init (the hub, its keepers) have it
//! unset and get the user's. `always` overwrites any different value.
#![forbid(unsafe_code)]

use std::fmt;
use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::config::LoginuidPolicy;
use crate::procfs;

const LOGINUID: &str = "/proc/self/loginuid";
/// (uid_t)-1: no login has set it.
const UNSET: u32 = u32::MAX;

/// What [`apply`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Loginuid {
    Written,
    AlreadySet,
    /// Not written, and rightly so; the reason is for the debug log.
    Skipped(&'static str),
    /// `auto` and the process already has another login's uid: kept.
    KeptOther(u32),
}

#[derive(Debug, PartialEq, Eq)]
pub struct LoginuidError {
    pub uid: u32,
    pub reason: String,
}

impl fmt::Display for LoginuidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot set loginuid to {}: {}; use loginuid=auto to skip where the kernel refuses it",
            self.uid, self.reason
        )
    }
}

impl std::error::Error for LoginuidError {}

/// Apply the loginuid policy for `uid` in the calling process.
pub fn apply(policy: LoginuidPolicy, uid: u32) -> Result<Loginuid, LoginuidError> {
    apply_at(policy, uid, Path::new(LOGINUID), || procfs::thread_count().unwrap_or(1))
}

fn apply_at(
    policy: LoginuidPolicy,
    uid: u32,
    file: &Path,
    threads: impl FnOnce() -> u32,
) -> Result<Loginuid, LoginuidError> {
    let fail = |reason: String| LoginuidError { uid, reason };
    if policy == LoginuidPolicy::Never {
        return Ok(Loginuid::Skipped("loginuid=never"));
    }
    let mut f = match OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOFOLLOW).open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Loginuid::Skipped("the kernel has no audit support (no /proc/self/loginuid)"));
        }
        Err(e) if policy == LoginuidPolicy::Auto => {
            let _ = e;
            return Ok(Loginuid::Skipped("/proc/self/loginuid cannot be opened for writing"));
        }
        Err(e) => return Err(fail(format!("open {}: {e}", file.display()))),
    };
    let mut buf = [0u8; 16];
    let current = match f.read(&mut buf) {
        Ok(n) => std::str::from_utf8(&buf[..n]).ok().and_then(|t| t.trim().parse::<u32>().ok()),
        Err(_) => None,
    };
    match current {
        Some(c) if c == uid => return Ok(Loginuid::AlreadySet),
        Some(c) if c != UNSET && policy == LoginuidPolicy::Auto => return Ok(Loginuid::KeptOther(c)),
        _ => {}
    }
    if !procfs::identity_user_namespace() {
        return match policy {
            LoginuidPolicy::Always => Err(fail("running in a user namespace that remaps uids".into())),
            _ => Ok(Loginuid::Skipped("running in a user namespace that remaps uids")),
        };
    }
    let threads = threads();
    if threads > 1 {
        return match policy {
            LoginuidPolicy::Always => Err(fail(format!("the process has {threads} threads"))),
            _ => Ok(Loginuid::Skipped("the host process is multi-threaded")),
        };
    }
    // At offset 0: the kernel refuses a write to loginuid at any other
    // position, and we have just read from it.
    match f
        .write_at(uid.to_string().as_bytes(), 0)
        .and_then(|n| if n == 0 { Err(std::io::Error::from(std::io::ErrorKind::WriteZero)) } else { Ok(()) })
    {
        Ok(()) => Ok(Loginuid::Written),
        Err(e) if policy == LoginuidPolicy::Auto && e.raw_os_error() == Some(libc::EPERM) => Ok(Loginuid::Skipped(
            "the kernel refused the write (EPERM: no CAP_AUDIT_CONTROL, or loginuid is immutable)",
        )),
        Err(e) => Err(fail(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_does_nothing() {
        assert_eq!(apply(LoginuidPolicy::Never, 1).unwrap(), Loginuid::Skipped("loginuid=never"));
    }

    #[test]
    fn missing_file_is_skipped_without_failing() {
        let missing = Path::new("/nonexistent/loginuid");
        assert!(matches!(apply_at(LoginuidPolicy::Auto, 5, missing, || 1), Ok(Loginuid::Skipped(_))));
        assert!(matches!(apply_at(LoginuidPolicy::Always, 5, missing, || 1), Ok(Loginuid::Skipped(_))));
    }

    #[test]
    fn same_value_is_not_rewritten_and_threads_block_the_write() {
        let dir = std::env::temp_dir().join(format!("js-luid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("loginuid");
        std::fs::write(&file, "1234").unwrap();
        assert_eq!(apply_at(LoginuidPolicy::Auto, 1234, &file, || 8).unwrap(), Loginuid::AlreadySet);
        std::fs::write(&file, "4294967295").unwrap();
        assert!(matches!(apply_at(LoginuidPolicy::Auto, 1234, &file, || 8), Ok(Loginuid::Skipped(_))));
        assert!(apply_at(LoginuidPolicy::Always, 1234, &file, || 8).is_err());
        assert_eq!(apply_at(LoginuidPolicy::Auto, 1234, &file, || 1).unwrap(), Loginuid::Written);
        assert!(std::fs::read_to_string(&file).unwrap().contains("1234"));
        // Another login's uid is kept under auto, replaced under always.
        std::fs::write(&file, "1000").unwrap();
        assert_eq!(apply_at(LoginuidPolicy::Auto, 1234, &file, || 1).unwrap(), Loginuid::KeptOther(1000));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "1000");
        assert_eq!(apply_at(LoginuidPolicy::Always, 1234, &file, || 1).unwrap(), Loginuid::Written);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
