//! `statx(2)` on an open fd, for the one thing `fstat` cannot tell: which
//! mount the file is on (its mount id), so that a bind mount of the same
//! filesystem is told apart from the filesystem itself (same `st_dev`).

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

/// What `statx` says about an fd's mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MountInfo {
    /// The mount id (`/proc/self/mountinfo`'s first field); `None` when the
    /// kernel does not report it (before Linux 5.8).
    pub mnt_id: Option<u64>,
    /// The file is the root of a mount (`STATX_ATTR_MOUNT_ROOT`), when the
    /// kernel says so.
    pub mount_root: Option<bool>,
}

/// `statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID)`: needs no permission on the
/// file, only the fd.
pub fn mount_of(fd: BorrowedFd<'_>) -> Result<MountInfo, Errno> {
    // SAFETY: an all-zero `struct statx` is a valid value (plain integers).
    let mut buf: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: the path is a NUL-terminated static empty string, the fd is
    // open for the duration of the borrow, and `buf` is a writable statx
    // struct the kernel fills in.
    let ret = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_TYPE | libc::STATX_MNT_ID,
            &mut buf,
        )
    };
    if ret != 0 {
        return Err(Errno::last());
    }
    let root_bit = libc::STATX_ATTR_MOUNT_ROOT as u64;
    Ok(MountInfo {
        mnt_id: (buf.stx_mask & libc::STATX_MNT_ID != 0).then_some(buf.stx_mnt_id),
        mount_root: (buf.stx_attributes_mask & root_bit != 0).then_some(buf.stx_attributes & root_bit != 0),
    })
}
