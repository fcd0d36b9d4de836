//! Run a piece of work with a user's kernel credentials, on a thread of its
//! own, without touching the rest of the process.
//!
//! Linux keeps credentials (uids, gids, supplementary groups, capabilities)
//! per thread. glibc's `setuid`/`setgid`/`setgroups` broadcast the change to
//! every thread of the process, which inside a PAM host (sshd, sudo, a
//! multi-threaded JupyterHub) would be a process-global change. So
//! [`run_as`] starts one short-lived thread, and in that thread alone calls
//! the raw `setgroups`, `setresgid`, `setresuid` system calls (in that
//! order: the gid calls need the privilege the uid call gives up), clears
//! every capability set, and verifies all of it before running the work.
//!
//! **Threads.** This is the one place where session-lib starts a thread on a
//! PAM host's path, and only for this purpose: the thread is joined before
//! [`run_as`] returns, and nothing global is left behind. One side effect is
//! process-wide in the kernel: a credential change clears the process's
//! "dumpable" flag (`prctl(PR_SET_DUMPABLE)`); [`run_as`] puts the flag back
//! as it was once the thread is joined.
//!
//! Work run this way must not use `/proc/self/...` magic links: with the
//! user's credentials, the thread may not look into its own (root) process.
#![forbid(unsafe_code)]

use std::fmt;

use nix::errno::Errno;
use nix::unistd::{getgroups, getresgid, getresuid};

use crate::ffi::thread_creds;
use crate::user::{UserError, UserInfo};

/// Kernel credentials to run as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the primary gid may be among them).
    pub groups: Vec<u32>,
}

#[derive(Debug)]
pub enum AsUserError {
    /// The user's group list could not be looked up.
    Groups(UserError),
    /// The helper thread could not be started.
    Spawn(String),
    /// A credential system call failed in the helper thread.
    Syscall { what: &'static str, errno: Errno },
    /// The helper thread's credentials are not what was asked for after the
    /// calls succeeded (e.g. a securebits setting kept capabilities).
    Verify { what: &'static str, expected: String, found: String },
    /// The work panicked on the helper thread.
    Panicked(String),
}

impl fmt::Display for AsUserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AsUserError::Groups(e) => write!(f, "cannot take on the user's credentials: {e}"),
            AsUserError::Spawn(e) => write!(f, "cannot start a thread to run as the user: {e}"),
            AsUserError::Syscall { what, errno } => {
                write!(f, "cannot take on the user's credentials: {what} failed: {}", errno.desc())
            }
            AsUserError::Verify { what, expected, found } => write!(
                f,
                "cannot take on the user's credentials: after the change the thread's {what} is {found}, not {expected}; nothing was run as the user"
            ),
            AsUserError::Panicked(msg) => write!(f, "work run as the user panicked: {msg}"),
        }
    }
}

impl std::error::Error for AsUserError {}

impl Creds {
    /// The credentials a login of `user` gets: uid, primary gid and the
    /// groups `initgroups` would set (from the group database).
    pub fn of_user(user: &UserInfo) -> Result<Creds, AsUserError> {
        let groups = user.groups().map_err(AsUserError::Groups)?;
        Ok(Creds { uid: user.uid, gid: user.gid, groups })
    }
}

/// Run `f` on a short-lived thread whose kernel credentials (real/effective/
/// saved/fs uid and gid, and the supplementary groups) are `creds`, with no
/// capabilities left; the calling thread and the rest of the process are
/// never changed; the thread is joined before this returns. Errors name
/// what failed.
pub fn run_as<T: Send>(creds: &Creds, f: impl FnOnce() -> T + Send) -> Result<T, AsUserError> {
    let dumpable = nix::sys::prctl::get_dumpable().ok();
    let outcome = std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("js-as-user".into())
            .spawn_scoped(scope, move || -> Result<T, AsUserError> {
                become_user(creds)?;
                Ok(f())
            })
            .map_err(|e| AsUserError::Spawn(e.to_string()))?;
        handle.join().unwrap_or_else(|payload| {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(AsUserError::Panicked(msg))
        })
    });
    // The credential change cleared the process's dumpable flag; restore it.
    if let Some(before) = dumpable
        && nix::sys::prctl::get_dumpable().ok() != Some(before)
    {
        let _ = nix::sys::prctl::set_dumpable(before);
    }
    outcome
}

/// On the helper thread: switch to `creds` and check the result.
fn become_user(creds: &Creds) -> Result<(), AsUserError> {
    let sys = |what| move |errno| AsUserError::Syscall { what, errno };
    // setgroups needs CAP_SETGID even for the list the thread already has;
    // skip it then, so that an unprivileged caller can run as itself.
    let current = getgroups().map_err(sys("getgroups"))?.into_iter().map(|g| g.as_raw()).collect();
    if sorted(current) != sorted(creds.groups.clone()) {
        thread_creds::thread_setgroups(&creds.groups).map_err(sys("setgroups"))?;
    }
    thread_creds::thread_setresgid(creds.gid).map_err(sys("setresgid"))?;
    thread_creds::thread_setresuid(creds.uid).map_err(sys("setresuid"))?;
    // A uid change away from 0 clears the capabilities unless securebits say
    // otherwise; clear them explicitly so that it does not depend on that.
    thread_creds::thread_drop_caps().map_err(sys("capset"))?;
    verify(creds)
}

fn verify(creds: &Creds) -> Result<(), AsUserError> {
    let mismatch = |what, expected: String, found: String| Err(AsUserError::Verify { what, expected, found });
    let sys = |what| move |errno| AsUserError::Syscall { what, errno };
    let r = getresuid().map_err(sys("getresuid"))?;
    let g = getresgid().map_err(sys("getresgid"))?;
    let (fsuid, fsgid) = thread_creds::thread_fs_ids();
    let uids = [r.real.as_raw(), r.effective.as_raw(), r.saved.as_raw(), fsuid];
    if uids.iter().any(|&u| u != creds.uid) {
        return mismatch("real/effective/saved/fs uid", format!("{0}/{0}/{0}/{0}", creds.uid), format!("{uids:?}"));
    }
    let gids = [g.real.as_raw(), g.effective.as_raw(), g.saved.as_raw(), fsgid];
    if gids.iter().any(|&x| x != creds.gid) {
        return mismatch("real/effective/saved/fs gid", format!("{0}/{0}/{0}/{0}", creds.gid), format!("{gids:?}"));
    }
    let have = sorted(getgroups().map_err(sys("getgroups"))?.into_iter().map(|g| g.as_raw()).collect());
    let want = sorted(creds.groups.clone());
    if have != want {
        return mismatch("supplementary groups", format!("{want:?}"), format!("{have:?}"));
    }
    let (eff, prm, inh) = thread_creds::thread_caps().map_err(sys("capget"))?;
    if (eff, prm, inh) != (0, 0, 0) {
        return mismatch(
            "capabilities (effective/permitted/inheritable)",
            "none".into(),
            format!("{eff:#x}/{prm:#x}/{inh:#x}"),
        );
    }
    Ok(())
}

fn sorted(mut groups: Vec<u32>) -> Vec<u32> {
    groups.sort_unstable();
    groups.dedup();
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn me() -> Creds {
        Creds {
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            groups: getgroups().unwrap().into_iter().map(|g| g.as_raw()).collect(),
        }
    }

    #[test]
    fn running_as_self_works_and_returns_the_value() {
        if nix::unistd::geteuid().is_root() {
            // As root "self" keeps nothing to drop to; covered below.
            let out = run_as(&Creds { uid: 0, gid: 0, groups: vec![0] }, || 41 + 1);
            // Root without capabilities is still uid 0: fine.
            assert_eq!(out.unwrap(), 42);
            return;
        }
        let creds = me();
        let seen = run_as(&creds, || (getresuid().unwrap().effective.as_raw(), 7)).unwrap();
        assert_eq!(seen, (creds.uid, 7));
    }

    #[test]
    fn unprivileged_cannot_become_someone_else_and_says_which_call() {
        if nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED unprivileged_cannot_become_someone_else: runs only without root");
            return;
        }
        let mut creds = me();
        creds.groups = vec![creds.gid, 54329];
        let err = run_as(&creds, || ()).unwrap_err();
        assert!(err.to_string().contains("setgroups failed"), "{err}");
    }

    #[test]
    fn as_root_the_thread_has_the_creds_and_the_caller_keeps_root() {
        if !nix::unistd::geteuid().is_root() {
            if std::env::var_os("CI").is_some() {
                panic!("as_root_the_thread_has_the_creds_and_the_caller_keeps_root needs root in CI");
            }
            eprintln!("SKIPPED as_root_the_thread_has_the_creds_and_the_caller_keeps_root: needs root");
            return;
        }
        let dir = std::env::temp_dir().join(format!("js-as-user-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, "root only").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let dumpable_before = nix::sys::prctl::get_dumpable().unwrap();
        let caps_before = thread_creds::thread_caps().unwrap();

        let creds = Creds { uid: 54331, gid: 54332, groups: vec![54332, 54333] };
        let (ids, groups, fs, caps, read) = run_as(&creds, || {
            let r = getresuid().unwrap();
            let g = getresgid().unwrap();
            let mut groups: Vec<u32> = getgroups().unwrap().into_iter().map(|g| g.as_raw()).collect();
            groups.sort_unstable();
            (
                [r.real, r.effective, r.saved]
                    .map(|u| u.as_raw())
                    .to_vec()
                    .into_iter()
                    .chain([g.real, g.effective, g.saved].map(|x| x.as_raw()))
                    .collect::<Vec<_>>(),
                groups,
                thread_creds::thread_fs_ids(),
                thread_creds::thread_caps().unwrap(),
                std::fs::read(&secret).map_err(|e| e.kind()),
            )
        })
        .unwrap();
        assert_eq!(ids, vec![54331, 54331, 54331, 54332, 54332, 54332]);
        assert_eq!(groups, vec![54332, 54333]);
        assert_eq!(fs, (54331, 54332));
        assert_eq!(caps, (0, 0, 0));
        assert_eq!(read, Err(std::io::ErrorKind::PermissionDenied));

        // The calling thread, and a thread started afterwards, are still root.
        let r = getresuid().unwrap();
        assert_eq!([r.real, r.effective, r.saved].map(|u| u.as_raw()), [0, 0, 0]);
        assert_eq!(thread_creds::thread_caps().unwrap(), caps_before);
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "root only");
        let other = std::thread::spawn(|| getresuid().unwrap().effective.as_raw()).join().unwrap();
        assert_eq!(other, 0);
        assert_eq!(nix::sys::prctl::get_dumpable().unwrap(), dumpable_before);

        // A panic on the helper thread comes back as an error, not a crash.
        let err = run_as(&creds, || panic!("boom")).unwrap_err();
        assert!(matches!(err, AsUserError::Panicked(ref m) if m == "boom"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
