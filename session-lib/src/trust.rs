//! Trusted paths, like sshd's StrictModes: a file or directory is opened
//! from `/` one component at a time through file descriptors (`openat` with
//! `O_NOFOLLOW`), and the target and every directory above it must be owned
//! by root and not writable by group or others. What is read is read through
//! the fd that was checked, so nothing can be swapped in between.
//!
//! Two things are accepted on the way:
//! - a directory owned by root that is world-writable but sticky (`/tmp`):
//!   in a sticky directory only the owner of an entry (or root) may rename
//!   or remove it, so a root-owned entry below it cannot be replaced by a
//!   user (the rule systemd's `chase()` uses; sshd refuses such paths);
//! - a symbolic link owned by root (or the trusted owner), which is
//!   resolved by the same walk; one owned by anyone else is refused.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat};

/// What the target must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    File,
    Dir,
}

/// Why a path is not trusted, or could not be walked.
#[derive(Debug, PartialEq, Eq)]
pub enum TrustError {
    /// A component does not exist.
    NotFound { path: PathBuf, missing: PathBuf },
    /// A component is owned by someone other than root, or writable by
    /// group or others, or not what it should be.
    Untrusted { path: PathBuf, culprit: PathBuf, uid: u32, mode: u32, reason: &'static str },
    /// Any other failure (EACCES for an unprivileged caller, ELOOP...).
    Io { path: PathBuf, culprit: PathBuf, errno: Errno },
}

impl TrustError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, TrustError::NotFound { .. })
    }
}

impl fmt::Display for TrustError {
    /// The part after "refusing <what> <path>: ".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustError::NotFound { missing, .. } => write!(f, "{} does not exist", missing.display()),
            TrustError::Untrusted { culprit, uid, mode, reason, .. } => {
                let owner = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(*uid))
                    .ok()
                    .flatten()
                    .map_or_else(|| format!("uid {uid}"), |u| format!("{} (uid {uid})", u.name));
                write!(
                    f,
                    "{} {reason} (owner {owner}, mode {mode:04o}); it and every directory above it must be owned \
                     by root and not writable by group or others: fix with `chown root:root {c}` and \
                     `chmod go-w {c}`, or move it to a root-owned directory such as /etc/security",
                    culprit.display(),
                    c = culprit.display(),
                )
            }
            TrustError::Io { culprit, errno, .. } => write!(f, "cannot open {}: {}", culprit.display(), errno.desc()),
        }
    }
}

const MAX_SYMLINKS: usize = 32;

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// Open `path` for reading (a file) or as a directory fd (a dir) after
/// checking it and every directory above it: owned by root or `owner` (tests
/// pass their own uid; production passes 0), not writable by group or others.
pub fn open_trusted(path: &Path, want: Want, owner: u32) -> Result<OwnedFd, TrustError> {
    let untrusted = |culprit: &Path, st: &FileStat, reason: &'static str| TrustError::Untrusted {
        path: path.to_path_buf(),
        culprit: culprit.to_path_buf(),
        uid: st.st_uid,
        mode: st.st_mode & 0o7777,
        reason,
    };
    let io = |culprit: &Path, errno: Errno| TrustError::Io {
        path: path.to_path_buf(),
        culprit: culprit.to_path_buf(),
        errno,
    };
    let trusted_uid = |uid: u32| uid == 0 || uid == owner;
    if !path.is_absolute() {
        return Err(io(path, Errno::EINVAL));
    }
    let root_flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let root = || open("/", root_flags, Mode::empty()).map_err(|e| io(Path::new("/"), e));
    let check_dir = |at: &Path, st: &FileStat| -> Result<(), TrustError> {
        if !trusted_uid(st.st_uid) {
            return Err(untrusted(at, st, "is not owned by root"));
        }
        let sticky_root = st.st_uid == 0 && st.st_mode & libc::S_ISVTX != 0;
        if st.st_mode & 0o022 != 0 && !sticky_root {
            return Err(untrusted(at, st, "is writable by group or others"));
        }
        Ok(())
    };
    let mut dir = root()?;
    let mut at = PathBuf::from("/");
    check_dir(&at, &fstat(&dir).map_err(|e| io(&at, e))?)?;
    let mut todo: VecDeque<OsString> = components(path).ok_or_else(|| io(path, Errno::EINVAL))?;
    let mut hops = 0;
    loop {
        let Some(name) = todo.pop_front() else {
            // The path was "/" (or resolved to it).
            return match want {
                Want::Dir => open("/", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                    .map_err(|e| io(&at, e)),
                Want::File => Err(io(&at, Errno::EISDIR)),
            };
        };
        let here = at.join(&name);
        let fd =
            match openat(&dir, name.as_os_str(), OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => return Err(TrustError::NotFound { path: path.to_path_buf(), missing: here }),
                Err(e) => return Err(io(&here, e)),
            };
        let st = fstat(&fd).map_err(|e| io(&here, e))?;
        match kind(&st) {
            SFlag::S_IFLNK => {
                if !trusted_uid(st.st_uid) {
                    return Err(untrusted(&here, &st, "is a symbolic link not owned by root"));
                }
                hops += 1;
                if hops > MAX_SYMLINKS {
                    return Err(io(&here, Errno::ELOOP));
                }
                let target = readlinkat(&dir, name.as_os_str()).map_err(|e| io(&here, e))?;
                let target = Path::new(&target);
                let mut more = components(target).ok_or_else(|| io(&here, Errno::EINVAL))?;
                if target.is_absolute() {
                    dir = root()?;
                    at = PathBuf::from("/");
                }
                more.extend(todo);
                todo = more;
            }
            SFlag::S_IFDIR if !todo.is_empty() => {
                check_dir(&here, &st)?;
                dir = fd;
                at = here;
            }
            _ if !todo.is_empty() => return Err(io(&here, Errno::ENOTDIR)),
            found => {
                if !trusted_uid(st.st_uid) {
                    return Err(untrusted(&here, &st, "is not owned by root"));
                }
                if st.st_mode & 0o022 != 0 {
                    return Err(untrusted(&here, &st, "is writable by group or others"));
                }
                let flags = match (want, found) {
                    (Want::Dir, SFlag::S_IFDIR) => OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                    (Want::File, SFlag::S_IFREG) => OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
                    (Want::Dir, _) => return Err(io(&here, Errno::ENOTDIR)),
                    (Want::File, SFlag::S_IFDIR) => return Err(io(&here, Errno::EISDIR)),
                    (Want::File, _) => return Err(untrusted(&here, &st, "is not a regular file")),
                };
                // Reopen for real and make sure it is still the one checked.
                let real = openat(&dir, name.as_os_str(), flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
                    .map_err(|e| io(&here, e))?;
                let again = fstat(&real).map_err(|e| io(&here, e))?;
                if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino)
                    || again.st_uid != st.st_uid
                    || again.st_mode != st.st_mode
                {
                    return Err(io(&here, Errno::EAGAIN));
                }
                return Ok(real);
            }
        }
    }
}

/// The normal components of a path; None if it has a `..` (never needed
/// for what we open, and it would make "every directory above" ambiguous).
fn components(path: &Path) -> Option<VecDeque<OsString>> {
    let mut out = VecDeque::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push_back(n.to_os_string()),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Read a whole (small) file from an fd opened by [`open_trusted`].
pub fn read_to_string(fd: OwnedFd, limit: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::from(fd).take(limit).read_to_string(&mut text)?;
    Ok(text)
}

/// Whether a name is one path component (no '/', not '.' or '..').
pub fn single_component(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.as_bytes().contains(&b'/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn tmp(tag: &str) -> Tmp {
        let dir = std::env::temp_dir().join(format!("js-trust-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        Tmp(dir)
    }

    fn me() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    #[test]
    fn accepts_private_file_and_reads_it() {
        let t = tmp("ok");
        let file = t.0.join("c.toml");
        fs::write(&file, "x = 1\n").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let fd = open_trusted(&file, Want::File, me()).unwrap();
        assert_eq!(read_to_string(fd, 1 << 20).unwrap(), "x = 1\n");
        open_trusted(&t.0, Want::Dir, me()).unwrap();
        assert!(open_trusted(&t.0.join("missing"), Want::File, me()).unwrap_err().is_not_found());
    }

    #[test]
    fn refuses_writable_file_writable_dir_and_foreign_owner() {
        let t = tmp("bad");
        let file = t.0.join("c.toml");
        fs::write(&file, "").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o664)).unwrap();
        let err = open_trusted(&file, Want::File, me()).unwrap_err();
        assert!(err.to_string().contains("writable by group or others") && err.to_string().contains("0664"), "{err}");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(&t.0, fs::Permissions::from_mode(0o757)).unwrap();
        let err = open_trusted(&file, Want::File, me()).unwrap_err();
        assert!(matches!(&err, TrustError::Untrusted { culprit, .. } if *culprit == t.0), "{err}");
        // Sticky and world-writable is accepted only when root owns it.
        fs::set_permissions(&t.0, fs::Permissions::from_mode(0o1777)).unwrap();
        let sticky = open_trusted(&file, Want::File, me());
        assert_eq!(sticky.is_ok(), me() == 0, "{sticky:?}");
        fs::set_permissions(&t.0, fs::Permissions::from_mode(0o755)).unwrap();
        let err = if me() == 0 {
            std::os::unix::fs::chown(&file, Some(65534), None).unwrap();
            open_trusted(&file, Want::File, 0).unwrap_err()
        } else {
            open_trusted(&file, Want::File, me() + 1).unwrap_err()
        };
        assert!(err.to_string().contains("is not owned by root"), "{err}");
    }

    #[test]
    fn symlinks_are_followed_through_the_same_checks() {
        let t = tmp("link");
        let real = t.0.join("real");
        fs::create_dir(&real).unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(real.join("c.toml"), "y").unwrap();
        std::os::unix::fs::symlink("real", t.0.join("rel")).unwrap();
        std::os::unix::fs::symlink(&real, t.0.join("abs")).unwrap();
        for via in ["rel/c.toml", "abs/c.toml"] {
            let fd = open_trusted(&t.0.join(via), Want::File, me()).unwrap();
            assert_eq!(read_to_string(fd, 10).unwrap(), "y");
        }
        fs::set_permissions(&real, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(open_trusted(&t.0.join("rel/c.toml"), Want::File, me()).is_err());
        std::os::unix::fs::symlink("loop", t.0.join("loop")).unwrap();
        assert!(matches!(open_trusted(&t.0.join("loop"), Want::File, me()), Err(TrustError::Io { .. })));
        assert!(open_trusted(Path::new("relative"), Want::File, me()).is_err());
        assert!(open_trusted(&t.0.join("../x"), Want::File, me()).is_err());
    }
}
