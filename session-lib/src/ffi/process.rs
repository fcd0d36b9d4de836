//! Process primitives the session keeper needs and nix leaves `unsafe` or
//! does not wrap: fork (only when single-threaded), `_exit`, resetting every
//! signal disposition, marking inherited fds close-on-exec, and taking
//! over an inherited fd by number.

use std::ffi::c_int;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::unistd::Pid;

/// Which side of a fork we are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    Parent { child: Pid },
    Child,
}

/// `fork(2)`, refused unless this process has exactly one thread.
///
/// In a single-threaded parent the child is an exact copy with no lock held
/// by a vanished thread, so it may allocate, format and call ordinary Rust
/// code until it execs or exits.
pub fn fork_single_threaded() -> io::Result<Forked> {
    match crate::procfs::thread_count() {
        Some(1) => {}
        Some(n) => {
            return Err(io::Error::other(format!(
                "refusing to fork: the process has {n} threads (the keeper must be single-threaded)"
            )));
        }
        None => return Err(io::Error::other("refusing to fork: cannot read the thread count from /proc/self/status")),
    }
    // SAFETY: we just checked that this process has a single thread, so no
    // other thread can hold a lock (malloc, stdio, NSS) that the child
    // would inherit locked; the child may therefore run arbitrary code.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { child }) => Ok(Forked::Parent { child }),
        Ok(nix::unistd::ForkResult::Child) => Ok(Forked::Child),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// `_exit(2)`: leave at once, without atexit handlers or stdio flushing
/// (which belong to the parent's copy of the process).
pub fn exit_now(code: c_int) -> ! {
    // SAFETY: _exit has no preconditions and does not return.
    unsafe { libc::_exit(code) }
}

/// Take ownership of an fd this process inherited (e.g. `--env-fd 3`):
/// refused for 0-2 and for a number that is not open. Marks it
/// close-on-exec. Call at most once per number, before anything else in
/// the process could have opened or closed it.
pub fn take_inherited_fd(fd: c_int) -> io::Result<OwnedFd> {
    if fd < 3 {
        return Err(io::Error::other("fds 0, 1 and 2 are stdin, stdout and stderr"));
    }
    // SAFETY: F_GETFD on an fd number only reads its flags; EBADF if closed.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd is open (checked above) and, as an inherited number
    // named on the command line, owned by nothing else in this process:
    // the caller takes it once, at startup, before any other code runs
    // that could own that number.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: F_SETFD on a live fd we own only changes its flags.
    unsafe { libc::fcntl(owned.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(owned)
}

/// Set every catchable signal back to SIG_DFL. Ignored signals survive
/// exec (Rust's runtime ignores SIGPIPE, for one), so a child about to exec
/// someone else's program must reset them.
pub fn reset_signal_dispositions() {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for signal in Signal::iterator() {
        if matches!(signal, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing SIG_DFL cannot break memory safety (no Rust
        // handler runs); failures for signals the kernel refuses are fine.
        let _ = unsafe { sigaction(signal, &default) };
    }
    // Real-time signals, which nix's Signal does not list.
    for raw in libc::SIGRTMIN()..=libc::SIGRTMAX() {
        // SAFETY: a zeroed sigaction is SIG_DFL with no flags and an empty
        // mask; a valid pointer is passed for the new action and NULL for
        // the old one.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(raw, &sa, std::ptr::null_mut());
        }
    }
}

/// Mark every fd from `first` up close-on-exec (`close_range` with
/// CLOSE_RANGE_CLOEXEC; Linux ≥ 5.11), falling back to fcntl over
/// /proc/self/fd. Fds stay usable until exec, so a CLOEXEC error pipe
/// still works.
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range only changes flags of this process's fds; with
    // CLOSE_RANGE_CLOEXEC it closes nothing.
    let rc = unsafe { libc::close_range(first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as c_int) };
    if rc == 0 {
        return Ok(());
    }
    let mut fds = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        if let Some(fd) = entry?.file_name().to_str().and_then(|s| s.parse::<c_int>().ok())
            && fd >= first as c_int
        {
            fds.push(fd);
        }
    }
    for fd in fds {
        // SAFETY: F_GETFD/F_SETFD on an fd number only touch its flags; an
        // fd that is gone (the read_dir handle) just returns EBADF.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
    Ok(())
}

/// Whether any task visible in this pid namespace has `uid` as its real
/// uid: `getpriority(PRIO_USER, uid)` as a raw syscall. The kernel first
/// looks the uid up in its table of users with credentials (a hash lookup)
/// and answers ESRCH at once when there is none, so the common "nobody
/// left" answer costs the same at 100 or 10,000 processes; otherwise it
/// walks the task list in the kernel. Zombies count until they are reaped.
/// Needs no privilege. `uid` 0 is refused (the kernel reads 0 as "the
/// caller's own uid").
pub fn any_task_with_real_uid(uid: u32) -> io::Result<bool> {
    if uid == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "uid 0 means the caller to getpriority"));
    }
    // SAFETY: getpriority takes two integers and touches no memory of ours;
    // the raw syscall returns 20 - nice (1..=40) or -1 with errno set,
    // unlike the libc wrapper whose -1 is ambiguous.
    let rc = unsafe { libc::syscall(libc::SYS_getpriority, libc::PRIO_USER as libc::c_long, uid as libc::c_long) };
    if rc >= 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ESRCH) => Ok(false),
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloexec_marks_fds() {
        let f = std::fs::File::open("/proc/self/status").unwrap();
        use std::os::fd::AsRawFd;
        let fd = f.as_raw_fd();
        // std opens with O_CLOEXEC; clear it, then let cloexec_from set it.
        let flags = nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::from_bits_truncate(flags & !1)))
            .unwrap();
        cloexec_from(fd as u32).unwrap();
        let flags = nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
    }

    #[test]
    fn tasks_of_own_uid_and_of_an_unused_uid() {
        let me = nix::unistd::getuid().as_raw();
        if me != 0 {
            assert!(any_task_with_real_uid(me).unwrap());
        }
        // No process runs as this uid (well above any allocated id range).
        assert!(!any_task_with_real_uid(4_000_000_123).unwrap());
        assert!(any_task_with_real_uid(0).is_err());
    }
}
