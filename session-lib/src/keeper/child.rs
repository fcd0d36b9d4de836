//! The child between fork and exec: new session, gid and uid (the groups
//! were set up in the parent, by initgroups and pam_setcred), verified;
//! the death signal; a session keyring of its own; chdir, fds, signals,
//! exec over the command's PATH.
#![forbid(unsafe_code)]

use std::ffi::CString;
use std::io::Write;
use std::path::Path;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::unistd::{Gid, Pid, Uid};

use super::error::{ChildStep, EXIT_CANNOT_EXECUTE, EXIT_KEEPER_FAILED, EXIT_NOT_FOUND};
use crate::ffi::keyring;
use crate::ffi::process::{cloexec_from, reset_signal_dispositions};
use crate::user::UserInfo;

/// What the child needs, all prepared before fork.
pub(super) struct ChildPlan<'a> {
    pub user: &'a UserInfo,
    /// The supplementary groups the keeper has after pam_setcred.
    pub groups: &'a [u32],
    /// The keeper's session keyring before PAM ran: None when the kernel
    /// has no keyrings or keyctl is forbidden (seccomp), Some(0) when it
    /// could not be read (a fresh keyring is joined regardless).
    pub keyring_before: Option<i32>,
    pub chdir: Option<&'a Path>,
    pub argv: &'a [CString],
    pub env: &'a [CString],
    pub path_var: &'a [u8],
    pub keeper: Pid,
}

fn sorted(mut v: Vec<u32>) -> Vec<u32> {
    v.sort_unstable();
    v.dedup();
    v
}

/// Returns only on failure: the step, the errno and the exit status to use.
pub(super) fn child_main(plan: &ChildPlan) -> (ChildStep, Errno, i32) {
    let fail = |step, errno| (step, errno, EXIT_KEEPER_FAILED);
    if let Err(e) = nix::unistd::setsid() {
        return fail(ChildStep::Setsid, e);
    }
    let (uid, gid) = (Uid::from_raw(plan.user.uid), Gid::from_raw(plan.user.gid));
    if let Err(e) = nix::unistd::setgid(gid) {
        return fail(ChildStep::SetGid, e);
    }
    if let Err(e) = nix::unistd::setuid(uid) {
        return fail(ChildStep::SetUid, e);
    }
    // Verify the switch stuck, the groups are the ones PAM left, and root
    // cannot be regained.
    let have = nix::unistd::getgroups().map(|g| sorted(g.into_iter().map(Gid::as_raw).collect()));
    let ids = nix::unistd::getresuid().ok().map(|r| (r.real, r.effective, r.saved));
    let gids = nix::unistd::getresgid().ok().map(|r| (r.real, r.effective, r.saved));
    if ids != Some((uid, uid, uid))
        || gids != Some((gid, gid, gid))
        || have.ok() != Some(sorted(plan.groups.to_vec()))
        || (!uid.is_root() && nix::unistd::setuid(Uid::from_raw(0)).is_ok())
    {
        return fail(ChildStep::VerifyIds, Errno::EPERM);
    }
    // No root keyring may reach the user's code: if PAM (pam_keyinit) did
    // not give the session a keyring of its own, the child still holds the
    // keeper's caller's one, whose keys it would possess. Join a fresh one,
    // owned by the user (we are the user now).
    if let Some(before) = plan.keyring_before {
        let replaced_by_pam = matches!(keyring::session_keyring(), Ok(now) if now != before);
        if !replaced_by_pam && let Err(e) = keyring::join_new_session_keyring() {
            return fail(ChildStep::Keyring, e);
        }
    }
    // Only now: the kernel clears the parent-death signal whenever the
    // credentials change (commit_creds), so it must be armed after setuid.
    if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
        return fail(ChildStep::DeathSignal, e);
    }
    // The keeper may have died before the death signal was armed.
    if nix::unistd::getppid() != plan.keeper {
        return fail(ChildStep::ParentGone, Errno::ESRCH);
    }
    match plan.chdir {
        Some(dir) => {
            if let Err(e) = nix::unistd::chdir(dir) {
                return fail(ChildStep::Chdir, e);
            }
        }
        None => {
            if let Err(e) = nix::unistd::chdir(&plan.user.home) {
                // Not eprintln!: it panics when stderr is gone.
                let _ = writeln!(
                    std::io::stderr(),
                    "jupyter-session exec: warning: cannot enter home directory {} ({}); starting in /",
                    plan.user.home.display(),
                    e.desc()
                );
                if let Err(e) = nix::unistd::chdir("/") {
                    return fail(ChildStep::Chdir, e);
                }
            }
        }
    }
    if let Err(e) = cloexec_from(3) {
        return fail(ChildStep::Fds, Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32)));
    }
    reset_signal_dispositions();
    if let Err(e) = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None) {
        return fail(ChildStep::SignalMask, e);
    }
    let errno = exec_search(plan.argv, plan.env, plan.path_var);
    let code = if errno == Errno::ENOENT { EXIT_NOT_FOUND } else { EXIT_CANNOT_EXECUTE };
    (ChildStep::Exec, errno, code)
}

/// execvp's search, but over the *command's* PATH (not the keeper's):
/// returns only on failure, with ENOENT when nothing was found and EACCES
/// when something was found but not executable.
fn exec_search(argv: &[CString], env: &[CString], path_var: &[u8]) -> Errno {
    let file = argv[0].as_bytes();
    if file.is_empty() {
        return Errno::ENOENT;
    }
    if file.contains(&b'/') {
        return exec_one(&argv[0], argv, env);
    }
    let mut seen_eacces = false;
    let mut last = Errno::ENOENT;
    for dir in path_var.split(|b| *b == b':') {
        let mut candidate = if dir.is_empty() { b".".to_vec() } else { dir.to_vec() };
        candidate.push(b'/');
        candidate.extend_from_slice(file);
        let Ok(candidate) = CString::new(candidate) else { continue };
        match exec_one(&candidate, argv, env) {
            Errno::EACCES => seen_eacces = true,
            Errno::ENOENT | Errno::ENOTDIR | Errno::ESTALE | Errno::ENODEV | Errno::ETIMEDOUT => {}
            other => {
                last = other;
                break;
            }
        }
    }
    if last != Errno::ENOENT {
        last
    } else if seen_eacces {
        Errno::EACCES
    } else {
        Errno::ENOENT
    }
}

/// execve one path; a file without a `#!` or ELF header (ENOEXEC) is run
/// by /bin/sh, as execvp does.
fn exec_one(path: &CString, argv: &[CString], env: &[CString]) -> Errno {
    let errno = match nix::unistd::execve(path, argv, env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    if errno != Errno::ENOEXEC {
        return errno;
    }
    let mut sh_argv = vec![c"/bin/sh".to_owned(), path.clone()];
    sh_argv.extend(argv.iter().skip(1).cloned());
    match nix::unistd::execve(c"/bin/sh", &sh_argv, env) {
        Err(_) => Errno::ENOEXEC,
        Ok(never) => match never {},
    }
}
