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
//! [`run_with_fs_creds`] changes only what file access is checked with (the
//! raw `setgroups`, `setfsgid`, `setfsuid`), keeping the caller's real,
//! effective and saved ids.
//!
//! **Signals.** A thread whose real or effective uid is the user's can be
//! sent signals by the user (`tgkill` to its thread id, permitted by the
//! thread's own credentials), and a fatal one, or SIGSTOP, acts on the
//! whole process: the PAM host. Keep work under [`run_as`] short; work that
//! only needs file access (removal) uses [`run_with_fs_creds`], whose
//! thread the user cannot signal or ptrace.
//!
//! **Threads.** This is the one place where session-lib starts a thread on a
//! PAM host's path, and only for this purpose: the thread is joined before
//! the call returns, and nothing global is left behind. One side effect is
//! process-wide in the kernel: a credential change clears the process's
//! "dumpable" flag (`prctl(PR_SET_DUMPABLE)`), which also keeps the user
//! from ptracing the process meanwhile; it is put back as it was once the
//! thread is joined.
//!
//! Work run this way must not use `/proc/self/...` magic links: with the
//! user's credentials, the thread may not look into its own (root) process.
#![forbid(unsafe_code)]

use std::fmt;

use nix::errno::Errno;
use nix::unistd::{ResGid, ResUid, getgroups, getresgid, getresuid};

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
    run_scoped(creds, Scope::All, f)
}

/// Like [`run_as`], but only the credentials the kernel checks file access
/// with change: fs uid, fs gid and the supplementary groups are `creds`,
/// every capability is gone, and the real/effective/saved uid and gid stay
/// the caller's. For work that only touches files (emptying a runtime dir):
/// the user cannot signal or ptrace such a thread, whereas a thread whose
/// real or effective uid is the user's can be sent a fatal signal by the
/// user (`tgkill`), which kills the whole PAM host.
pub fn run_with_fs_creds<T: Send>(creds: &Creds, f: impl FnOnce() -> T + Send) -> Result<T, AsUserError> {
    run_scoped(creds, Scope::Filesystem, f)
}

/// Which credentials a helper thread takes on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Real/effective/saved/fs ids and groups.
    All,
    /// fs ids and groups only.
    Filesystem,
}

fn run_scoped<T: Send>(creds: &Creds, scope: Scope, f: impl FnOnce() -> T + Send) -> Result<T, AsUserError> {
    let guard = DumpableGuard::enter();
    let outcome = std::thread::scope(|threads| {
        let handle = std::thread::Builder::new()
            .name("js-as-user".into())
            .spawn_scoped(threads, move || -> Result<T, AsUserError> {
                become_user(creds, scope)?;
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
    drop(guard);
    outcome
}

/// Helper threads running in this process, and the dumpable flag from
/// before the first of them: the flag is process-wide, so it is put back
/// only when the last concurrent helper has been joined (a helper with the
/// user's uid must never run in a dumpable process: the user could ptrace
/// it). This is the one static here; it guards a process-wide kernel flag
/// and holds nothing between calls.
static HELPERS: std::sync::Mutex<(usize, Option<bool>)> = std::sync::Mutex::new((0, None));

struct DumpableGuard;

impl DumpableGuard {
    fn enter() -> DumpableGuard {
        let mut helpers = HELPERS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if helpers.0 == 0 {
            helpers.1 = nix::sys::prctl::get_dumpable().ok();
        }
        helpers.0 += 1;
        DumpableGuard
    }
}

impl Drop for DumpableGuard {
    fn drop(&mut self) {
        let mut helpers = HELPERS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        helpers.0 -= 1;
        if helpers.0 == 0
            && let Some(before) = helpers.1.take()
            && nix::sys::prctl::get_dumpable().ok() != Some(before)
        {
            let _ = nix::sys::prctl::set_dumpable(before);
        }
    }
}

/// On the helper thread: switch to `creds` and check the result.
fn become_user(creds: &Creds, scope: Scope) -> Result<(), AsUserError> {
    let sys = |what| move |errno| AsUserError::Syscall { what, errno };
    let ids_before = (getresuid().map_err(sys("getresuid"))?, getresgid().map_err(sys("getresgid"))?);
    // setgroups needs CAP_SETGID even for the list the thread already has;
    // skip it then, so that an unprivileged caller can run as itself.
    let current = getgroups().map_err(sys("getgroups"))?.into_iter().map(|g| g.as_raw()).collect();
    if sorted(current) != sorted(creds.groups.clone()) {
        thread_creds::thread_setgroups(&creds.groups).map_err(sys("setgroups"))?;
    }
    match scope {
        Scope::All => {
            thread_creds::thread_setresgid(creds.gid).map_err(sys("setresgid"))?;
            thread_creds::thread_setresuid(creds.uid).map_err(sys("setresuid"))?;
        }
        Scope::Filesystem => {
            thread_creds::thread_setfsgid(creds.gid);
            thread_creds::thread_setfsuid(creds.uid);
        }
    }
    // A uid change away from 0 clears (some) capabilities unless securebits
    // say otherwise; clear them all explicitly so that it does not depend on
    // that.
    thread_creds::thread_drop_caps().map_err(sys("capset"))?;
    verify(creds, scope, ids_before)
}

fn verify(creds: &Creds, scope: Scope, (uids_before, gids_before): (ResUid, ResGid)) -> Result<(), AsUserError> {
    let mismatch = |what, expected: String, found: String| Err(AsUserError::Verify { what, expected, found });
    let sys = |what| move |errno| AsUserError::Syscall { what, errno };
    let r = getresuid().map_err(sys("getresuid"))?;
    let g = getresgid().map_err(sys("getresgid"))?;
    let (fsuid, fsgid) = thread_creds::thread_fs_ids();
    let (want_uids, want_gids) = match scope {
        Scope::All => ([creds.uid; 3], [creds.gid; 3]),
        Scope::Filesystem => (
            [uids_before.real, uids_before.effective, uids_before.saved].map(|u| u.as_raw()),
            [gids_before.real, gids_before.effective, gids_before.saved].map(|g| g.as_raw()),
        ),
    };
    let uids = [r.real.as_raw(), r.effective.as_raw(), r.saved.as_raw(), fsuid];
    let want = [want_uids[0], want_uids[1], want_uids[2], creds.uid];
    if uids != want {
        return mismatch("real/effective/saved/fs uid", format!("{want:?}"), format!("{uids:?}"));
    }
    let gids = [g.real.as_raw(), g.effective.as_raw(), g.saved.as_raw(), fsgid];
    let want = [want_gids[0], want_gids[1], want_gids[2], creds.gid];
    if gids != want {
        return mismatch("real/effective/saved/fs gid", format!("{want:?}"), format!("{gids:?}"));
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

        // A panic on the helper thread comes back as an error, not a crash.
        let err = run_as(&creds, || panic!("boom")).unwrap_err();
        assert!(matches!(err, AsUserError::Panicked(ref m) if m == "boom"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn needs_root(name: &str) -> bool {
        if nix::unistd::geteuid().is_root() {
            return true;
        }
        assert!(std::env::var_os("CI").is_none(), "{name} needs root in CI");
        eprintln!("SKIPPED {name}: needs root");
        false
    }

    #[test]
    fn fs_creds_only_change_file_access_and_the_caller_keeps_root() {
        if !needs_root("fs_creds_only_change_file_access_and_the_caller_keeps_root") {
            return;
        }
        let dir = std::env::temp_dir().join(format!("js-as-user-fs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, "root only").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let creds = Creds { uid: 54334, gid: 54335, groups: vec![54335, 54336] };
        let (res, fs, groups, caps, read) = run_with_fs_creds(&creds, || {
            let r = getresuid().unwrap();
            let mut groups: Vec<u32> = getgroups().unwrap().into_iter().map(|g| g.as_raw()).collect();
            groups.sort_unstable();
            (
                [r.real, r.effective, r.saved].map(|u| u.as_raw()),
                thread_creds::thread_fs_ids(),
                groups,
                thread_creds::thread_caps().unwrap(),
                std::fs::read(&secret).map_err(|e| e.kind()),
            )
        })
        .unwrap();
        assert_eq!(res, [0, 0, 0], "real/effective/saved uid stay root's");
        assert_eq!(fs, (54334, 54335));
        assert_eq!(groups, vec![54335, 54336]);
        assert_eq!(caps, (0, 0, 0));
        assert_eq!(read, Err(std::io::ErrorKind::PermissionDenied));
        assert_eq!(thread_creds::thread_fs_ids(), (0, 0));
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "root only");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Whether uid 54337 can `kill -0` the helper thread while it runs.
    fn user_can_signal_the_helper(fs_only: bool) -> bool {
        use std::sync::mpsc::channel;
        let creds = Creds { uid: 54337, gid: 54337, groups: vec![54337] };
        let (tid_tx, tid_rx) = channel();
        let (go_tx, go_rx) = channel::<()>();
        let helper = std::thread::spawn(move || {
            let work = move || {
                tid_tx.send(nix::unistd::gettid().as_raw()).unwrap();
                let _ = go_rx.recv();
            };
            if fs_only { run_with_fs_creds(&creds, work) } else { run_as(&creds, work) }.unwrap();
        });
        let tid = tid_rx.recv().unwrap();
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=54337", "--regid=54337", "--clear-groups", "sh", "-c", &format!("kill -0 {tid}")])
            .output()
            .unwrap();
        go_tx.send(()).unwrap();
        helper.join().unwrap();
        out.status.success()
    }

    #[test]
    fn the_user_cannot_signal_a_thread_with_only_fs_creds() {
        if !needs_root("the_user_cannot_signal_a_thread_with_only_fs_creds") {
            return;
        }
        assert!(!user_can_signal_the_helper(true), "the user could signal the fs-creds helper thread");
        // What run_with_fs_creds avoids: with the user's real uid the user
        // can (and SIGKILL would take the whole process).
        assert!(user_can_signal_the_helper(false));
    }

    #[test]
    fn the_dumpable_flag_is_cleared_while_a_helper_runs_and_restored_after_the_last() {
        if !needs_root("the_dumpable_flag_is_cleared_while_a_helper_runs_and_restored_after_the_last") {
            return;
        }
        // The flag is process-wide and other tests run helpers in parallel:
        // the probe below runs alone in a child process.
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "as_user::tests::dumpable_probe", "--test-threads=1"])
            .env("JS_AS_USER_DUMPABLE_PROBE", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && text.contains("1 passed"), "{text}");
    }

    /// The body of the test above, in its own process (a no-op when run
    /// any other way).
    #[test]
    fn dumpable_probe() {
        use nix::sys::prctl::{get_dumpable, set_dumpable};
        use std::sync::mpsc::channel;
        if std::env::var_os("JS_AS_USER_DUMPABLE_PROBE").is_none() {
            return;
        }
        set_dumpable(true).unwrap();
        let creds = Creds { uid: 54338, gid: 54338, groups: vec![54338] };
        // Inside, the kernel has cleared it (so the user cannot ptrace us).
        assert!(!run_as(&creds, || get_dumpable().unwrap()).unwrap());
        assert!(get_dumpable().unwrap(), "restored after the helper");
        // Overlapping helpers, the first to start ends first: the flag must
        // stay cleared while the second (with the user's uid) still runs,
        // and come back after it.
        let (a_started_tx, a_started_rx) = channel();
        let (a_go_tx, a_go_rx) = channel::<()>();
        let a = std::thread::spawn(move || {
            run_with_fs_creds(&creds, move || {
                a_started_tx.send(()).unwrap();
                let _ = a_go_rx.recv();
            })
            .unwrap()
        });
        a_started_rx.recv().unwrap();
        let (b_started_tx, b_started_rx) = channel();
        let (b_go_tx, b_go_rx) = channel::<()>();
        let b = std::thread::spawn(move || {
            let creds = Creds { uid: 54339, gid: 54339, groups: vec![54339] };
            run_as(&creds, move || {
                b_started_tx.send(()).unwrap();
                let _ = b_go_rx.recv();
            })
            .unwrap()
        });
        b_started_rx.recv().unwrap();
        a_go_tx.send(()).unwrap();
        a.join().unwrap();
        assert!(!get_dumpable().unwrap(), "a helper with the user's uid still runs: the flag must stay cleared");
        b_go_tx.send(()).unwrap();
        b.join().unwrap();
        assert!(get_dumpable().unwrap(), "restored after the last helper");
    }
}
