//! pidfds (Linux ≥ 5.3): a file descriptor for one process, so that a
//! signal can never reach another process that later got the same pid.
//! libc has the syscall numbers but no wrappers.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `pidfd_open(pid, 0)`.
pub fn open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1;
    // it touches no memory of ours.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_long, 0 as libc::c_long) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(rc).map_err(|_| io::Error::other("pidfd_open returned an impossible fd"))?;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_send_signal(fd, sig, NULL, 0)`; signal 0 checks that the process
/// still runs (ESRCH once it has exited, even if not yet reaped).
pub fn send_signal(fd: &OwnedFd, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid fd we own, a signal number, a NULL siginfo (the
    // kernel fills in a kill()-like one) and no flags; no memory of ours is
    // written.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd() as libc::c_long,
            sig as libc::c_long,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_long,
        )
    };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_zero_then_kill_a_child() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let fd = open(child.id()).unwrap();
        send_signal(&fd, 0).unwrap();
        send_signal(&fd, libc::SIGKILL).unwrap();
        child.wait().unwrap();
        assert_eq!(send_signal(&fd, 0).unwrap_err().raw_os_error(), Some(libc::ESRCH));
    }
}
