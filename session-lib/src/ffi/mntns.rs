//! Mount work in another mount namespace (pid 1's) without moving the PAM
//! host: a short-lived child made with a raw `clone` (like fork, but with no
//! exit signal, so the host's SIGCHLD handler never sees it) `setns()`es into
//! the target namespace, checks that the directory it reaches by path is the
//! very one the parent created (device and inode through an fd), mounts or
//! unmounts there, and reports back over a socketpair — with, after a mount,
//! a detached clone of the new mount (`open_tree(OPEN_TREE_CLONE)`) passed as
//! SCM_RIGHTS, so that the parent can attach the same tmpfs in its own
//! namespace with `move_mount`.
//!
//! The child may be a copy of a multi-threaded process: it makes only raw
//! system calls on data prepared before the clone (no allocation, no locks)
//! and leaves with `_exit`.

use std::ffi::{CStr, c_int, c_uint, c_ulong, c_void};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

// From <linux/mount.h>; not exported by the libc crate on every target.
const OPEN_TREE_CLONE: c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: c_uint = 0x04;
const MOVE_MOUNT_T_EMPTY_PATH: c_uint = 0x40;

/// What the child does in the target namespace.
pub enum Job<'a> {
    /// Mount `fstype` with `flags` and `data` on `parent/name`, which must
    /// be (`dev`, `ino`); reply with the new mount's root and a clone of it.
    Mount { parent: &'a CStr, name: &'a CStr, expect: (u64, u64), flags: c_ulong, data: &'a CStr },
    /// Lazily unmount the mount whose root `parent/name` is, if that root
    /// is (`dev`, `ino`).
    Umount { parent: &'a CStr, name: &'a CStr, expect: (u64, u64) },
}

/// How far the child got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Setns,
    OpenParent,
    Open,
    /// The dir found is not the one expected; `found` says what it is.
    Verify,
    Mount,
    Reopen,
    Clone,
    Umount,
    Done,
}

impl Stage {
    fn from_raw(raw: i32) -> Stage {
        match raw {
            0 => Stage::Setns,
            1 => Stage::OpenParent,
            2 => Stage::Open,
            3 => Stage::Verify,
            4 => Stage::Mount,
            5 => Stage::Reopen,
            6 => Stage::Clone,
            7 => Stage::Umount,
            _ => Stage::Done,
        }
    }
}

/// The child's answer.
#[derive(Debug)]
pub struct Reply {
    pub stage: Stage,
    /// The failing call's errno (`Errno::UnknownErrno` when none).
    pub errno: Errno,
    /// After `Verify`: what was found; after a mount: the new root.
    pub found: (u64, u64),
    /// After a mount: a detached clone of it (O_CLOEXEC).
    pub tree: Option<OwnedFd>,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Wire {
    stage: i32,
    errno: i32,
    dev: u64,
    ino: u64,
}

#[repr(C, align(8))]
struct CmsgBuf([u8; 64]);

fn dir_flags() -> c_int {
    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC
}

/// `/proc/self/fd/N` into a stack buffer (no allocation in the child).
fn fd_path(fd: RawFd, buf: &mut [u8; 40]) {
    let prefix = b"/proc/self/fd/";
    buf[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 12];
    let mut n = fd.max(0) as u32;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[prefix.len() + i] = digits[len - 1 - i];
    }
    buf[prefix.len() + len] = 0;
}

fn errno_now() -> i32 {
    Errno::last_raw()
}

/// The child's work; fills `wire` and, after a mount, `pass`.
fn child_work(ns: RawFd, job: &Job, wire: &mut Wire, pass: &mut RawFd) {
    let (parent, name, expect) = match job {
        Job::Mount { parent, name, expect, .. } | Job::Umount { parent, name, expect } => (*parent, *name, *expect),
    };
    macro_rules! fail {
        ($stage:expr) => {{
            wire.stage = $stage as i32;
            wire.errno = errno_now();
            return;
        }};
    }
    // SAFETY: setns on an fd we own; it changes only this child (which
    // shares nothing with the parent: no CLONE_FS, no CLONE_VM).
    if unsafe { libc::setns(ns, libc::CLONE_NEWNS) } != 0 {
        fail!(Stage::Setns as i32);
    }
    // SAFETY: NUL-terminated paths from CStr; the returned fds are ours.
    let p = unsafe { libc::open(parent.as_ptr(), dir_flags()) };
    if p < 0 {
        fail!(Stage::OpenParent as i32);
    }
    // SAFETY: as above, relative to the parent fd.
    let d = unsafe { libc::openat(p, name.as_ptr(), dir_flags()) };
    if d < 0 {
        fail!(Stage::Open as i32);
    }
    // SAFETY: a zeroed stat is a valid out-buffer for fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: d is an open fd and st a valid buffer.
    if unsafe { libc::fstat(d, &mut st) } != 0 {
        fail!(Stage::Open as i32);
    }
    wire.dev = st.st_dev;
    wire.ino = st.st_ino;
    if (st.st_dev, st.st_ino) != expect {
        wire.stage = Stage::Verify as i32;
        return;
    }
    let mut path = [0u8; 40];
    match job {
        Job::Umount { .. } => {
            fd_path(d, &mut path);
            // SAFETY: path is NUL-terminated; it names the mount root d is on.
            if unsafe { libc::umount2(path.as_ptr().cast(), libc::MNT_DETACH) } != 0 {
                fail!(Stage::Umount as i32);
            }
        }
        Job::Mount { flags, data, .. } => {
            fd_path(d, &mut path);
            // SAFETY: all pointers are NUL-terminated strings that outlive the call.
            let rc = unsafe {
                libc::mount(
                    c"tmpfs".as_ptr(),
                    path.as_ptr().cast(),
                    c"tmpfs".as_ptr(),
                    *flags,
                    data.as_ptr().cast::<c_void>(),
                )
            };
            if rc != 0 {
                fail!(Stage::Mount as i32);
            }
            // SAFETY: as for the first openat.
            let r = unsafe { libc::openat(p, name.as_ptr(), dir_flags()) };
            if r < 0 {
                fail!(Stage::Reopen as i32);
            }
            let mut rst: libc::stat = st;
            // SAFETY: r is an open fd and rst a valid buffer.
            let ok = unsafe { libc::fstat(r, &mut rst) } == 0 && rst.st_dev != st.st_dev;
            fd_path(r, &mut path);
            if !ok {
                wire.stage = Stage::Reopen as i32;
                wire.errno = libc::EIO;
                return;
            }
            wire.dev = rst.st_dev;
            wire.ino = rst.st_ino;
            // SAFETY: open_tree(2) with an fd we own, an empty NUL-terminated
            // path and AT_EMPTY_PATH; returns a new fd or -1.
            let t = unsafe {
                libc::syscall(
                    libc::SYS_open_tree,
                    r,
                    c"".as_ptr(),
                    (OPEN_TREE_CLONE | libc::O_CLOEXEC as c_uint | libc::AT_EMPTY_PATH as c_uint) as c_ulong,
                )
            };
            if t < 0 {
                let e = errno_now();
                // Undo: this namespace must not keep a mount the caller
                // cannot use.
                // SAFETY: path names the new mount's root.
                unsafe { libc::umount2(path.as_ptr().cast(), libc::MNT_DETACH) };
                wire.stage = Stage::Clone as i32;
                wire.errno = e;
                return;
            }
            *pass = t as RawFd;
        }
    }
    wire.stage = Stage::Done as i32;
    wire.errno = 0;
}

/// Send `wire` (and `pass` if ≥ 0) on `sock`.
fn child_send(sock: RawFd, wire: &Wire, pass: RawFd) {
    let mut iov = libc::iovec { iov_base: (wire as *const Wire).cast_mut().cast(), iov_len: size_of::<Wire>() };
    let mut cmsg = CmsgBuf([0; 64]);
    // SAFETY: a zeroed msghdr is valid; every pointer set below points at
    // live stack data of the right size.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if pass >= 0 {
            let space = libc::CMSG_SPACE(size_of::<c_int>() as u32) as usize;
            msg.msg_control = cmsg.0.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let hdr = libc::CMSG_FIRSTHDR(&msg);
            (*hdr).cmsg_level = libc::SOL_SOCKET;
            (*hdr).cmsg_type = libc::SCM_RIGHTS;
            (*hdr).cmsg_len = libc::CMSG_LEN(size_of::<c_int>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(hdr).cast::<c_int>(), pass);
        }
        libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL);
    }
}

/// Run `job` in the mount namespace `ns` (an fd on `/proc/1/ns/mnt`) from a
/// child process; the calling process stays where it is.
pub fn run_in(ns: BorrowedFd, job: &Job) -> Result<Reply, Errno> {
    let mut sv = [-1 as c_int; 2];
    // SAFETY: sv is a valid 2-int buffer.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) } != 0 {
        return Err(Errno::last());
    }
    // SAFETY: socketpair returned two fresh fds that nothing else owns.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) };
    let ns_raw = ns.as_raw_fd();
    let theirs_raw = theirs.as_raw_fd();
    // SAFETY: clone with no flags and no exit signal is fork without
    // SIGCHLD: the child gets a copy of the address space and only this
    // thread. It runs child_work (raw syscalls on data that already
    // exists: no allocation, no locks another thread could hold) and
    // leaves with _exit, never returning into the caller's code.
    let pid =
        unsafe { libc::syscall(libc::SYS_clone, 0 as c_ulong, 0 as c_ulong, 0 as c_ulong, 0 as c_ulong, 0 as c_ulong) };
    if pid == 0 {
        let mut wire = Wire::default();
        let mut pass = -1;
        child_work(ns_raw, job, &mut wire, &mut pass);
        child_send(theirs_raw, &wire, pass);
        // SAFETY: _exit ends the child without running the parent's atexit
        // handlers or flushing its stdio.
        unsafe { libc::_exit(0) }
    }
    if pid < 0 {
        return Err(Errno::last());
    }
    drop(theirs);
    let mut wire = Wire::default();
    let mut iov = libc::iovec { iov_base: (&mut wire as *mut Wire).cast(), iov_len: size_of::<Wire>() };
    let mut cmsg = CmsgBuf([0; 64]);
    let mut tree = None;
    // SAFETY: msghdr points at live buffers of the stated sizes; the
    // received fd (if any) is new and owned by us from here on.
    let got = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.0.as_mut_ptr().cast();
        msg.msg_controllen = cmsg.0.len() as _;
        let n = loop {
            let n = libc::recvmsg(ours.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
            if n >= 0 || Errno::last() != Errno::EINTR {
                break n;
            }
        };
        let mut hdr = libc::CMSG_FIRSTHDR(&msg);
        while !hdr.is_null() {
            if (*hdr).cmsg_level == libc::SOL_SOCKET && (*hdr).cmsg_type == libc::SCM_RIGHTS {
                let fd = std::ptr::read_unaligned(libc::CMSG_DATA(hdr).cast::<c_int>());
                tree = Some(OwnedFd::from_raw_fd(fd));
            }
            hdr = libc::CMSG_NXTHDR(&msg, hdr);
        }
        n
    };
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child; __WALL because it has no
        // exit signal.
        let rc = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::__WALL) };
        if rc >= 0 || Errno::last() != Errno::EINTR {
            break;
        }
    }
    if got != size_of::<Wire>() as isize {
        return Err(Errno::EIO);
    }
    Ok(Reply {
        stage: Stage::from_raw(wire.stage),
        errno: Errno::from_raw(wire.errno),
        found: (wire.dev, wire.ino),
        tree,
    })
}

/// Attach the detached mount `tree` on the directory `dir` in the
/// caller's mount namespace (`move_mount(2)`).
pub fn move_mount_onto(tree: BorrowedFd, dir: BorrowedFd) -> Result<(), Errno> {
    // SAFETY: both fds are open; the paths are empty NUL-terminated strings.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            dir.as_raw_fd(),
            c"".as_ptr(),
            (MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) as c_ulong,
        )
    };
    if rc == 0 { Ok(()) } else { Err(Errno::last()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_paths() {
        let mut buf = [0u8; 40];
        fd_path(7, &mut buf);
        assert_eq!(CStr::from_bytes_until_nul(&buf).unwrap(), c"/proc/self/fd/7");
        fd_path(1234567, &mut buf);
        assert_eq!(CStr::from_bytes_until_nul(&buf).unwrap(), c"/proc/self/fd/1234567");
    }
}
