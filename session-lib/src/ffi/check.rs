//! What `jupyter-session check` needs below nix: `statx(2)` for the
//! mount-root attribute, and the set-up of the children it starts (a fresh
//! session keyring, and for `--deep` as root a new session and a
//! parent-death signal), which needs `pre_exec`.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

const STATX_MNT_ID: u32 = 0x0000_1000;
const STATX_ATTR_MOUNT_ROOT: u64 = 0x0000_2000;
const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;

fn statx(path: &Path, mask: u32) -> Option<libc::statx> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero `statx` is a valid value of this plain C struct.
    let mut buf: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path that outlives the call, `buf` is
    // a valid, writable `statx`; AT_SYMLINK_NOFOLLOW keeps a link a link.
    let rc = unsafe { libc::statx(libc::AT_FDCWD, c.as_ptr(), libc::AT_SYMLINK_NOFOLLOW, mask, &mut buf) };
    (rc == 0).then_some(buf)
}

/// Whether `path` is the root of a mount: the statx mount-root attribute
/// (Linux 5.8), else a mount id different from its parent's; `None` if
/// neither can be read. Unlike `st_dev`, this sees bind mounts of the same
/// filesystem.
pub fn is_mount_root(path: &Path) -> Option<bool> {
    let st = statx(path, STATX_MNT_ID)?;
    if st.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT != 0 {
        return Some(st.stx_attributes & STATX_ATTR_MOUNT_ROOT != 0);
    }
    if st.stx_mask & STATX_MNT_ID == 0 {
        return None;
    }
    let parent = statx(&path.join(".."), STATX_MNT_ID)?;
    Some(parent.stx_mnt_id != st.stx_mnt_id)
}

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
            let null: *const libc::c_char = std::ptr::null();
            if libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, null) < 0 {
                let e = std::io::Error::last_os_error();
                // No keyring support in this kernel (or filtered): nothing to leak.
                if !matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM)) {
                    return Err(e);
                }
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_roots_are_told_from_plain_dirs() {
        assert_eq!(is_mount_root(Path::new("/")), Some(true));
        assert_eq!(is_mount_root(Path::new("/proc")), Some(true));
        let dir = std::env::temp_dir().join(format!("js-ffi-check-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        assert_eq!(is_mount_root(&dir.join("sub")), Some(false));
        assert_eq!(is_mount_root(&dir.join("missing")), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
