//! What `jupyter-session check` needs below nix: the set-up of the children
//! it starts (a fresh session keyring, and for `--deep` as root a new
//! session and a parent-death signal), which needs `pre_exec`.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// How a child of `check` is set up between fork and exec.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChildSetup {
    /// `setsid()`: no controlling terminal, its own process group.
    pub new_session: bool,
    /// `PR_SET_PDEATHSIG(SIGKILL)`: dies with `check`.
    pub die_with_parent: bool,
}

/// Make `cmd`'s child join a fresh anonymous session keyring (so no key of
/// the caller, e.g. root's, reaches a command run as a user), and apply
/// `setup`. Runs after std's setgid/setuid, so the new keyring is the
/// user's. A failure aborts the spawn with that error.
pub fn prepare_child(cmd: &mut Command, setup: ChildSetup) {
    // Taken before the fork: in the child, getppid() already answers for
    // a reaper if `check` died in between.
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe system calls (keyctl, setsid, prctl, getppid)
    // without allocating or taking locks.
    unsafe {
        cmd.pre_exec(move || {
            if setup.die_with_parent {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent died before the prctl: go now.
                if libc::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
            }
            if setup.new_session && libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            match super::keyring::join_new_session_keyring() {
                // No keyring support in this kernel (or filtered): nothing to leak.
                Ok(_) | Err(nix::errno::Errno::ENOSYS | nix::errno::Errno::EPERM) => {}
                Err(e) => return Err(e.into()),
            }
            Ok(())
        });
    }
}
