//! The per-user tmpfs on `/run/user/UID`, mounted where everyone sees it.
//!
//! A PAM host can run in its own mount namespace (`unshare -m`, a systemd
//! unit with PrivateTmp= or ProtectSystem=). A tmpfs mounted there exists
//! only there: pid 1's namespace, and every later login, would see the
//! plain directory under it, on /run, without a size limit. So when
//! `/proc/self/ns/mnt` differs from `/proc/1/ns/mnt`, the tmpfs is mounted
//! in pid 1's namespace by a short-lived child (`ffi::mntns`), on the very
//! directory this process created (checked by device and inode there), and
//! the same mount (a clone of it, same superblock) is attached here too, so
//! the session's own processes see the files everybody else sees. When the
//! host's namespace already receives pid 1's mounts (slave or shared
//! propagation, as systemd sets up for its units), nothing is attached twice.
//!
//! Mounting falls back to a plain directory only when it is refused for
//! lack of privilege (EPERM, EACCES: a container, a host without
//! CAP_SYS_ADMIN, a host in a user namespace); any other failure (a bad
//! option, the directory not reachable in pid 1's namespace) refuses the
//! session.
#![forbid(unsafe_code)]

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::{Mode, fstat, stat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::ffi::mntns::{self, Job, Stage};
use crate::runtime_dir::{Created, MountNs, Removal, RuntimeDirError, TmpfsMount, TmpfsOptions, open_dir_nofollow};

/// How this process's mount namespace relates to pid 1's.
pub(crate) enum Namespaces {
    Same,
    /// Different: `pid1` is an fd on pid 1's namespace, `own` our
    /// namespace's inode number.
    Private {
        pid1: OwnedFd,
        own: u64,
    },
    /// Cannot tell (no /proc, or pid 1's namespace not readable).
    Unknown(String),
}

/// Compare ours with pid 1's mount namespace. Where pid 1's cannot be
/// opened even by root (some VM inits are not ptrace-readable), the kernel's
/// own threads stand in for it: kthreadd always runs in the initial mount
/// namespace, which is pid 1's on every ordinary system.
pub(crate) fn namespaces() -> Namespaces {
    let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let pid1 = match open("/proc/1/ns/mnt", flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(e @ (Errno::EACCES | Errno::EPERM)) => match kthreadd_stat() {
            Some(()) => match open("/proc/2/ns/mnt", flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(e2) => {
                    return Namespaces::Unknown(format!(
                        "cannot open /proc/1/ns/mnt ({}) nor /proc/2/ns/mnt ({})",
                        e.desc(),
                        e2.desc()
                    ));
                }
            },
            None => return Namespaces::Unknown(format!("cannot open /proc/1/ns/mnt: {}", e.desc())),
        },
        Err(e) => return Namespaces::Unknown(format!("cannot open /proc/1/ns/mnt: {}", e.desc())),
    };
    let (init, own) = match (fstat(&pid1), stat("/proc/self/ns/mnt")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            return Namespaces::Unknown(format!("cannot stat a mount namespace: {}", e.desc()));
        }
    };
    if (init.st_dev, init.st_ino) == (own.st_dev, own.st_ino) {
        Namespaces::Same
    } else {
        Namespaces::Private { pid1, own: own.st_ino }
    }
}

/// `Some` when pid 2 is the kernel's kthreadd (parent 0), not a process of
/// a container's own pid namespace.
fn kthreadd_stat() -> Option<()> {
    let stat = std::fs::read_to_string("/proc/2/stat").ok()?;
    let rest = stat.strip_prefix("2 (kthreadd) ")?;
    (rest.split_whitespace().nth(1) == Some("0")).then_some(())
}

/// Why no tmpfs was mounted.
#[derive(Debug)]
pub(crate) enum MountError {
    /// Refused for lack of privilege: use a plain directory, with this warning.
    NoPrivilege(String),
    /// Anything else: the session is refused with this message.
    Failed(String),
}

/// `ERRNO_IS_PRIVILEGE` in systemd's terms.
fn is_privilege(e: Errno) -> bool {
    matches!(e, Errno::EPERM | Errno::EACCES)
}

/// A mounted tmpfs: an fd on its root and what to record.
pub(crate) struct Mounted {
    pub root: OwnedFd,
    pub created: Created,
    pub warnings: Vec<String>,
}

/// The magic-link path of an fd, for the calls (mount, umount) that take
/// only paths: resolving it cannot be redirected by a symlink swap.
fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())
}

fn options(opts: &TmpfsOptions, uid: u32, gid: u32, label: Option<&str>) -> String {
    let mut data = format!("mode=0700,uid={uid},gid={gid},size={},nr_inodes={}", opts.size, opts.inodes);
    data.extend(label.and_then(crate::selinux::rootcontext_option));
    data
}

const FIX: &str = "fix tmpfs_size/tmpfs_inodes, or set `tmpfs = false` to use plain directories";

/// Mount the per-user tmpfs on `dir` (`parent/name`, just created by us,
/// with stat `dir_st`) and return its root.
#[allow(clippy::too_many_arguments)]
pub(crate) fn mount(
    parent: &OwnedFd,
    name: &str,
    path: &Path,
    dir: &OwnedFd,
    dir_st: (u64, u64),
    opts: &TmpfsOptions,
    uid: u32,
    gid: u32,
    label: Option<&str>,
) -> Result<Mounted, MountError> {
    let data = options(opts, uid, gid, label);
    let mut warnings = Vec::new();
    let (tree, ns) = match namespaces() {
        Namespaces::Private { pid1, own } => {
            let (tree, root) = mount_in_pid1(&pid1, path, name, dir_st, &data)?;
            (Some((tree, root, pid1)), MountNs::Pid1And(own))
        }
        other => {
            if let Namespaces::Unknown(why) = &other {
                warnings.push(format!(
                    "cannot tell whether this PAM host shares pid 1's mount namespace ({why}); the tmpfs on {} is mounted in the host's namespace only",
                    path.display()
                ));
            }
            use nix::mount::{MsFlags, mount};
            let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
            if let Err(e) = mount(Some("tmpfs"), fd_path(dir).as_str(), Some("tmpfs"), flags, Some(data.as_str())) {
                return Err(refused(path, "", e, &data));
            }
            (None, if matches!(other, Namespaces::Same) { MountNs::Pid1 } else { MountNs::Local })
        }
    };
    let mut ns = ns;
    if let Some((tree, (tdev, tino), pid1)) = tree {
        // Attach the same mount here unless pid 1's mounts propagate to us.
        let undo = |why: MountError| {
            let _ = umount_in(&pid1, path, name, (tdev, tino));
            why
        };
        let here = open_dir_nofollow(parent, name, path).map_err(|e| undo(MountError::Failed(e.to_string())))?;
        let st =
            fstat(&here).map_err(|e| undo(MountError::Failed(format!("fstat {}: {}", path.display(), e.desc()))))?;
        if (st.st_dev, st.st_ino) == (tdev, tino) {
            ns = MountNs::Pid1;
        } else if let Err(e) = mntns::move_mount_onto(tree.as_fd(), here.as_fd()) {
            let msg = format!(
                "the tmpfs was mounted on {} in pid 1's mount namespace, but attaching it in this PAM host's own namespace failed (move_mount: {})",
                path.display(),
                e.desc()
            );
            return Err(undo(if is_privilege(e) { MountError::NoPrivilege(msg) } else { MountError::Failed(msg) }));
        }
    }
    // Whatever namespace it went to, this host must now see the tmpfs.
    let root = open_dir_nofollow(parent, name, path).map_err(|e| MountError::Failed(e.to_string()))?;
    let rst = fstat(&root).map_err(|e| MountError::Failed(format!("fstat {}: {}", path.display(), e.desc())))?;
    if rst.st_dev == dir_st.0 || rst.st_uid != uid {
        let _ = nix::mount::umount2(fd_path(&root).as_str(), nix::mount::MntFlags::MNT_DETACH);
        return Err(MountError::Failed(format!(
            "the tmpfs mounted on {} is not what this host sees there afterwards (uid {}, device {}); refusing it",
            path.display(),
            rst.st_uid,
            rst.st_dev
        )));
    }
    let created =
        Created { dev: rst.st_dev, ino: rst.st_ino, tmpfs: true, mount: Some(TmpfsMount { dir: dir_st, ns }) };
    Ok(Mounted { root, created, warnings })
}

fn refused(path: &Path, where_: &str, e: Errno, data: &str) -> MountError {
    if is_privilege(e) {
        MountError::NoPrivilege(format!(
            "mounting the per-user tmpfs on {}{where_} was refused for lack of privilege ({}); using a plain directory without a size limit",
            path.display(),
            e.desc()
        ))
    } else {
        MountError::Failed(format!(
            "mounting the per-user tmpfs on {}{where_} with options {data} failed: {}; {FIX}",
            path.display(),
            e.desc()
        ))
    }
}

fn cstrings(path: &Path, name: &str) -> Result<(CString, CString), String> {
    let parent = path.parent().ok_or_else(|| format!("{} has no parent", path.display()))?;
    let p =
        CString::new(parent.as_os_str().as_encoded_bytes()).map_err(|_| format!("{} contains NUL", path.display()))?;
    let n = CString::new(name).map_err(|_| format!("{name} contains NUL"))?;
    Ok((p, n))
}

/// Mount in pid 1's namespace; returns a clone of the mount and its root.
fn mount_in_pid1(
    pid1: &OwnedFd,
    path: &Path,
    name: &str,
    dir_st: (u64, u64),
    data: &str,
) -> Result<(OwnedFd, (u64, u64)), MountError> {
    const IN_PID1: &str = " in pid 1's mount namespace";
    let (p, n) = cstrings(path, name).map_err(MountError::Failed)?;
    let d = CString::new(data).map_err(|_| MountError::Failed(format!("tmpfs options {data:?} contain NUL")))?;
    let flags = (libc::MS_NOSUID | libc::MS_NODEV) as libc::c_ulong;
    let job = Job::Mount { parent: &p, name: &n, expect: dir_st, flags, data: &d };
    let reply = mntns::run_in(pid1.as_fd(), &job).map_err(|e| {
        MountError::Failed(format!("cannot run the helper that mounts {}{IN_PID1}: {}", path.display(), e.desc()))
    })?;
    let e = reply.errno;
    match reply.stage {
        Stage::Done => match reply.tree {
            Some(tree) => Ok((tree, reply.found)),
            None => Err(MountError::Failed(format!("the helper mounting {}{IN_PID1} sent no mount", path.display()))),
        },
        Stage::Setns if is_privilege(e) => Err(MountError::NoPrivilege(format!(
            "this PAM host runs in its own mount namespace and may not enter pid 1's (setns: {}), so a tmpfs on {} would be seen by this host only; using a plain directory without a size limit",
            e.desc(),
            path.display()
        ))),
        Stage::Mount => Err(refused(path, IN_PID1, e, data)),
        Stage::OpenParent | Stage::Open | Stage::Verify => Err(MountError::Failed(format!(
            "{} as pid 1's mount namespace sees it is not the directory this PAM host created ({}); the host sees a different /run than the rest of the system (a private /run?): run it without one, or set `tmpfs = false`",
            path.display(),
            if reply.stage == Stage::Verify { "another inode".to_string() } else { e.desc().to_string() }
        ))),
        Stage::Clone if e == Errno::ENOSYS || e == Errno::EINVAL => Err(MountError::Failed(format!(
            "cannot share the tmpfs on {} between pid 1's mount namespace and this PAM host's (open_tree: {}; needs Linux 5.2 or later): run the host in pid 1's mount namespace, or set `tmpfs = false`",
            path.display(),
            e.desc()
        ))),
        stage => Err(MountError::Failed(format!(
            "mounting the per-user tmpfs on {}{IN_PID1} failed at {stage:?}: {}",
            path.display(),
            e.desc()
        ))),
    }
}

/// Unmount the tmpfs with root (`dev`, `ino`) at `path` in pid 1's
/// namespace. Ok(true) when it was there and is gone.
fn umount_in(pid1: &OwnedFd, path: &Path, name: &str, root: (u64, u64)) -> Result<bool, String> {
    let (p, n) = cstrings(path, name)?;
    let reply = mntns::run_in(pid1.as_fd(), &Job::Umount { parent: &p, name: &n, expect: root })
        .map_err(|e| format!("cannot run the helper that unmounts it in pid 1's mount namespace: {}", e.desc()))?;
    match reply.stage {
        Stage::Done => Ok(true),
        Stage::Verify | Stage::Open => Ok(false),
        stage => Err(format!("unmounting it in pid 1's mount namespace failed at {stage:?}: {}", reply.errno.desc())),
    }
}

/// Remove our tmpfs at `parent/name`: unmount it here and in pid 1's
/// namespace, then remove the directory it was mounted on. Removing that
/// directory also detaches any copy left in another namespace (the kernel
/// dissolves mounts on a removed dentry), e.g. that of a private-namespace
/// host which opened the session while this one closes it.
pub(crate) fn remove(parent: &OwnedFd, name: &str, path: &Path, created: &Created) -> Result<Removal, RuntimeDirError> {
    let io = |op, errno| RuntimeDirError::Io { path: path.to_path_buf(), op, errno };
    let under = created.mount.as_ref().map(|m| m.dir);
    let fd = match open_dir_nofollow(parent, name, path) {
        Ok(fd) => fd,
        Err(RuntimeDirError::Io { errno: Errno::ENOENT, .. }) => return Ok(Removal::AlreadyGone),
        Err(RuntimeDirError::NotADirectory { .. }) => return Ok(Removal::NotOurs),
        Err(e) => return Err(e),
    };
    let st = fstat(&fd).map_err(|e| io("fstat", e))?;
    let found = (st.st_dev, st.st_ino);
    let mounted_here = found == (created.dev, created.ino);
    // A record that does not say what the tmpfs was mounted on (written
    // before that was kept, or adopted after an open was killed mid-way):
    // once the tmpfs is gone, a directory on the parent's own filesystem
    // is the one it was mounted on (only root makes entries in the parent).
    let under = match under {
        None if !mounted_here && fstat(parent).is_ok_and(|p| p.st_dev == st.st_dev) => Some(found),
        under => under,
    };
    if !mounted_here && under != Some(found) {
        return Ok(Removal::NotOurs);
    }
    if mounted_here {
        nix::mount::umount2(fd_path(&fd).as_str(), nix::mount::MntFlags::MNT_DETACH).map_err(|e| io("umount", e))?;
    }
    drop(fd);
    let mut problem = None;
    if let Namespaces::Private { pid1, .. } = namespaces()
        && let Err(why) = umount_in(&pid1, path, name, (created.dev, created.ino))
    {
        problem = Some(why);
    }
    // What is left must be the directory the tmpfs was mounted on.
    let fd = match open_dir_nofollow(parent, name, path) {
        Ok(fd) => fd,
        Err(RuntimeDirError::Io { errno: Errno::ENOENT, .. }) => return Ok(Removal::AlreadyGone),
        Err(e) => return Ok(Removal::LeftInPlace(e.to_string())),
    };
    let st = fstat(&fd).map_err(|e| io("fstat", e))?;
    let now = (st.st_dev, st.st_ino);
    if now == (created.dev, created.ino) || under.is_some_and(|u| u != now) {
        return Ok(Removal::LeftInPlace("another mount is still on it after unmounting the tmpfs".into()));
    }
    drop(fd);
    match unlinkat(parent, name, UnlinkatFlags::RemoveDir) {
        Ok(()) => Ok(Removal::Removed),
        Err(Errno::ENOENT) => Ok(Removal::AlreadyGone),
        Err(e) => Ok(Removal::LeftInPlace(match problem {
            Some(p) => format!("rmdir failed: {}; {p}", e.desc()),
            None => format!("rmdir failed: {}", e.desc()),
        })),
    }
}
