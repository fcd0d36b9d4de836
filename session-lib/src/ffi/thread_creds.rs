//! Per-thread credential changes through the raw system calls.
//!
//! glibc's `setgroups`/`setresgid`/`setresuid` change *every* thread of the
//! process (they signal all threads to follow, the POSIX semantics). The
//! kernel keeps credentials per thread, so calling the system calls directly
//! changes only the calling thread. These wrappers are meant for a
//! short-lived thread made for that purpose ([`crate::as_user`]); calling
//! them on any other thread changes that thread for good.

use nix::errno::Errno;

#[cfg(any(target_arch = "x86", target_arch = "arm"))]
mod nr {
    // The 16-bit-id variants are the plain names on these; use the 32-bit ones.
    pub const SETGROUPS: libc::c_long = libc::SYS_setgroups32;
    pub const SETRESGID: libc::c_long = libc::SYS_setresgid32;
    pub const SETRESUID: libc::c_long = libc::SYS_setresuid32;
    pub const SETFSUID: libc::c_long = libc::SYS_setfsuid32;
    pub const SETFSGID: libc::c_long = libc::SYS_setfsgid32;
}
#[cfg(not(any(target_arch = "x86", target_arch = "arm")))]
mod nr {
    pub const SETGROUPS: libc::c_long = libc::SYS_setgroups;
    pub const SETRESGID: libc::c_long = libc::SYS_setresgid;
    pub const SETRESUID: libc::c_long = libc::SYS_setresuid;
    pub const SETFSUID: libc::c_long = libc::SYS_setfsuid;
    pub const SETFSGID: libc::c_long = libc::SYS_setfsgid;
}

fn check(ret: libc::c_long) -> Result<(), Errno> {
    if ret == -1 { Err(Errno::last()) } else { Ok(()) }
}

/// `setgroups(2)` for the calling thread only.
pub fn thread_setgroups(groups: &[u32]) -> Result<(), Errno> {
    let list: Vec<libc::gid_t> = groups.iter().map(|&g| g as libc::gid_t).collect();
    // SAFETY: `list` is a live array of exactly `list.len()` gid_t values that
    // the kernel only reads; the raw syscall touches no libc state.
    check(unsafe { libc::syscall(nr::SETGROUPS, list.len() as libc::size_t, list.as_ptr()) })
}

/// `setresgid(2)` (real, effective and saved gid; the fs gid follows) for
/// the calling thread only.
pub fn thread_setresgid(gid: u32) -> Result<(), Errno> {
    let g = gid as libc::gid_t;
    // SAFETY: plain integer arguments; the raw syscall touches no libc state.
    check(unsafe { libc::syscall(nr::SETRESGID, g, g, g) })
}

/// `setresuid(2)` (real, effective and saved uid; the fs uid follows) for
/// the calling thread only.
pub fn thread_setresuid(uid: u32) -> Result<(), Errno> {
    let u = uid as libc::uid_t;
    // SAFETY: plain integer arguments; the raw syscall touches no libc state.
    check(unsafe { libc::syscall(nr::SETRESUID, u, u, u) })
}

/// `setfsgid(2)` for the calling thread (raw: no broadcast). The call
/// reports no error; check with [`thread_fs_ids`].
pub fn thread_setfsgid(gid: u32) {
    // SAFETY: a plain integer argument; the raw syscall touches no libc state.
    unsafe { libc::syscall(nr::SETFSGID, gid as libc::gid_t) };
}

/// `setfsuid(2)` for the calling thread (raw: no broadcast). The call
/// reports no error; check with [`thread_fs_ids`].
pub fn thread_setfsuid(uid: u32) {
    // SAFETY: a plain integer argument; the raw syscall touches no libc state.
    unsafe { libc::syscall(nr::SETFSUID, uid as libc::uid_t) };
}

/// The calling thread's fs uid and fs gid (`setfsuid(-1)` changes nothing
/// and returns the current value).
pub fn thread_fs_ids() -> (u32, u32) {
    let none = u32::MAX as libc::uid_t;
    // SAFETY: an invalid id (-1) makes these raw calls change nothing; they
    // only return the calling thread's current fs uid / fs gid.
    unsafe { (libc::syscall(nr::SETFSUID, none) as u32, libc::syscall(nr::SETFSGID, none) as u32) }
}

const CAP_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Capability sets of the calling thread as (effective, permitted,
/// inheritable), 64 bits each.
pub fn thread_caps() -> Result<(u64, u64, u64), Errno> {
    let mut header = CapHeader { version: CAP_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: version 3 takes a header and an array of two data structs,
    // both live and correctly laid out (#[repr(C)] mirrors the kernel's
    // structs); pid 0 means the calling thread.
    check(unsafe { libc::syscall(libc::SYS_capget, &mut header as *mut CapHeader, data.as_mut_ptr()) })?;
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok((
        join(data[0].effective, data[1].effective),
        join(data[0].permitted, data[1].permitted),
        join(data[0].inheritable, data[1].inheritable),
    ))
}

/// Clear the effective, permitted and inheritable capability sets of the
/// calling thread (the ambient set follows: it must be a subset of both).
pub fn thread_drop_caps() -> Result<(), Errno> {
    let mut header = CapHeader { version: CAP_VERSION_3, pid: 0 };
    let data = [CapData::default(); 2];
    // SAFETY: as in `thread_caps`; the kernel only reads `data` here.
    check(unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, data.as_ptr()) })
}
