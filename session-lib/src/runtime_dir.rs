//! The per-user runtime directory, `/run/user/UID`.
//!
//! Every step goes through file descriptors: `mkdirat`, `openat` with
//! `O_NOFOLLOW|O_DIRECTORY`, `fstat`, `fchown`, `fchmod` on that fd. Nothing
//! is ever chowned or chmodded by path and no symlink is ever followed below
//! the parent, so a user who plants a link or a file at `/run/user/UID`
//! gets a refusal, not root's help.
//!
//! What is already there is validated and, if correct, left alone (logind
//! or another session made it). We remove only what we made, identified by
//! device and inode, without following symlinks or crossing mounts, and a
//! plain dir only with the user's own credentials (`removal`).
#![forbid(unsafe_code)]

use std::fmt;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, open, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, unlinkat};

use crate::config::{Config, TmpfsSize};

mod removal;
pub use removal::{MAX_DEPTH, TIME_LIMIT as REMOVAL_TIME_LIMIT};

/// Identity of a runtime dir we created, kept in the registry so that only
/// that very directory (or tmpfs) is ever removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Created {
    pub dev: u64,
    pub ino: u64,
    /// We mounted a tmpfs on it; (`dev`, `ino`) are its root's.
    pub tmpfs: bool,
    /// For a tmpfs: where it went. `None` in records written before this
    /// was kept (and for plain dirs).
    pub mount: Option<TmpfsMount>,
}

/// Where a per-user tmpfs was mounted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TmpfsMount {
    /// (dev, ino) of the directory under the tmpfs.
    pub dir: (u64, u64),
    pub ns: MountNs,
}

/// The mount namespace(s) holding a per-user tmpfs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MountNs {
    /// pid 1's (the opening host shared it, or receives its mounts).
    Pid1,
    /// pid 1's and a clone in the opening host's own namespace (its inode).
    Pid1And(u64),
    /// The opening host's only; whether that is pid 1's was not known.
    Local,
}

impl Created {
    /// A plain directory (no tmpfs).
    pub fn plain(dev: u64, ino: u64) -> Created {
        Created { dev, ino, tmpfs: false, mount: None }
    }

    /// The one-line form stored in the registry: `dev ino plain`, or
    /// `dev ino tmpfs DIRDEV DIRINO NS` with NS `pid1`, `pid1+mnt:INO` or
    /// `local` (`dev ino tmpfs` alone in older records).
    pub fn encode(&self) -> String {
        match (self.tmpfs, &self.mount) {
            (false, _) => format!("{} {} plain\n", self.dev, self.ino),
            (true, None) => format!("{} {} tmpfs\n", self.dev, self.ino),
            (true, Some(m)) => {
                let ns = match m.ns {
                    MountNs::Pid1 => "pid1".to_string(),
                    MountNs::Pid1And(ino) => format!("pid1+mnt:{ino}"),
                    MountNs::Local => "local".to_string(),
                };
                format!("{} {} tmpfs {} {} {ns}\n", self.dev, self.ino, m.dir.0, m.dir.1)
            }
        }
    }

    pub fn decode(text: &str) -> Option<Created> {
        let mut it = text.split_whitespace();
        let dev = it.next()?.parse().ok()?;
        let ino = it.next()?.parse().ok()?;
        let tmpfs = match it.next()? {
            "tmpfs" => true,
            "plain" => false,
            _ => return None,
        };
        let mount = match (tmpfs, it.next()) {
            (_, None) => None,
            (false, Some(_)) => return None,
            (true, Some(dir_dev)) => {
                let dir = (dir_dev.parse().ok()?, it.next()?.parse().ok()?);
                let ns = match it.next()? {
                    "pid1" => MountNs::Pid1,
                    "local" => MountNs::Local,
                    other => MountNs::Pid1And(other.strip_prefix("pid1+mnt:")?.parse().ok()?),
                };
                Some(TmpfsMount { dir, ns })
            }
        };
        it.next().is_none().then_some(Created { dev, ino, tmpfs, mount })
    }
}

/// The result of [`RuntimeDirs::ensure`].
#[derive(Debug)]
pub struct Prepared {
    pub path: PathBuf,
    /// `Some` when this call created the directory.
    pub created: Option<Created>,
    /// An fd on the validated directory.
    pub fd: OwnedFd,
    /// Things worth a debug log line (a mode tightened).
    pub notes: Vec<String>,
    /// Things worth a warning (a tmpfs refused for lack of privilege: a
    /// plain directory without a size limit is used instead).
    pub warnings: Vec<String>,
}

/// What [`RuntimeDirs::remove`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Removal {
    Removed,
    /// Nothing there any more.
    AlreadyGone,
    /// Something else stands there now (another dir, a link): left alone.
    NotOurs,
    /// Could not be emptied (a mount inside it, a tree too deep, an error):
    /// left in place, with the reason.
    LeftInPlace(String),
}

#[derive(Debug, PartialEq, Eq)]
pub enum RuntimeDirError {
    /// The parent (`/run/user`) is not something we may create dirs in.
    UnsafeParent { path: PathBuf, reason: String },
    /// Something that is not a directory, or a symlink, is in the way.
    NotADirectory { path: PathBuf, found: &'static str },
    /// A directory of another owner is in the way.
    WrongOwner { path: PathBuf, owner: u32, uid: u32 },
    /// A system call failed.
    Io { path: PathBuf, op: &'static str, errno: Errno },
    /// The per-user tmpfs could not be mounted (not for lack of privilege).
    Mount { path: PathBuf, reason: String },
}

impl fmt::Display for RuntimeDirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeDirError::UnsafeParent { path, reason } => write!(
                f,
                "refusing to create runtime directories in {}: {reason}; it must be a real directory owned by root, mode 0755",
                path.display()
            ),
            RuntimeDirError::NotADirectory { path, found } => write!(
                f,
                "refusing runtime directory {}: it is {found}, not a directory; left untouched — an admin must remove it",
                path.display()
            ),
            RuntimeDirError::WrongOwner { path, owner, uid } => write!(
                f,
                "refusing runtime directory {}: it is owned by uid {owner}, not by uid {uid}; left untouched — an admin must remove it",
                path.display()
            ),
            RuntimeDirError::Io { path, op, errno } => {
                write!(f, "{op} {} failed: {}", path.display(), errno.desc())
            }
            RuntimeDirError::Mount { reason, .. } => f.write_str(reason),
        }
    }
}

impl std::error::Error for RuntimeDirError {}

/// Per-user tmpfs settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TmpfsOptions {
    pub size: TmpfsSize,
    pub inodes: u64,
}

/// Creates, validates and removes runtime directories under one parent.
#[derive(Clone, Debug)]
pub struct RuntimeDirs {
    parent: PathBuf,
    /// Who must own the parent: root, except in unprivileged tests.
    trusted_owner: u32,
    tmpfs: Option<TmpfsOptions>,
    /// Where a new dir's SELinux label comes from (the loaded policy).
    selinux: crate::selinux::Labeler,
}

impl RuntimeDirs {
    pub fn new(config: &Config) -> RuntimeDirs {
        RuntimeDirs {
            parent: config.runtime_dir_parent.clone(),
            trusted_owner: 0,
            tmpfs: config.tmpfs.then(|| TmpfsOptions { size: config.tmpfs_size.clone(), inodes: config.tmpfs_inodes }),
            selinux: crate::selinux::Labeler::system(),
        }
    }

    /// Take new dirs' SELinux labels from `labeler` instead of the loaded
    /// policy (tests against a policy that is not loaded here).
    pub fn with_selinux_labels(mut self, labeler: crate::selinux::Labeler) -> RuntimeDirs {
        self.selinux = labeler;
        self
    }

    /// Trust a parent owned by `uid` instead of root. For tests on
    /// temporary roots run without privileges; never from configuration.
    pub fn with_trusted_owner(mut self, uid: u32) -> RuntimeDirs {
        self.trusted_owner = uid;
        self
    }

    /// `/run/user/UID`.
    pub fn path_for(&self, uid: u32) -> PathBuf {
        self.parent.join(uid.to_string())
    }

    /// Make sure the runtime dir of `uid` exists, is a directory owned by
    /// `uid` with mode 0700, and return an fd on it.
    pub fn ensure(&self, uid: u32, gid: u32) -> Result<Prepared, RuntimeDirError> {
        let path = self.path_for(uid);
        let name = uid.to_string();
        let parent = self.open_parent(true)?;
        let io = |op, errno| RuntimeDirError::Io { path: path.clone(), op, errno };
        let mut notes = Vec::new();

        let created = match mkdirat(&parent, name.as_str(), Mode::from_bits_truncate(0o700)) {
            Ok(()) => true,
            Err(Errno::EEXIST) => false,
            Err(e) => return Err(io("mkdir", e)),
        };
        let fd = open_dir_nofollow(&parent, &name, &path)?;
        let st = fstat(&fd).map_err(|e| io("fstat", e))?;

        if !created {
            if st.st_uid != uid {
                return Err(RuntimeDirError::WrongOwner { path, owner: st.st_uid, uid });
            }
            if st.st_mode & 0o7777 != 0o700 {
                // The user's own directory with a loose mode: tighten it
                // through the fd (never by path).
                fchmod(&fd, Mode::from_bits_truncate(0o700)).map_err(|e| io("fchmod", e))?;
                notes.push(format!("{} had mode {:04o}; set it to 0700", path.display(), st.st_mode & 0o7777));
            }
            return Ok(Prepared { path, created: None, fd, notes, warnings: Vec::new() });
        }

        // We made it a moment ago in a parent only root can write to.
        let mut warnings = Vec::new();
        let result = self.finish_new_dir(&parent, &name, &path, fd, st, uid, gid, &mut notes, &mut warnings);
        if result.is_err() {
            // Leave nothing half-made behind.
            let _ = unlinkat(&parent, name.as_str(), UnlinkatFlags::RemoveDir);
        }
        result.map(|(fd, created)| Prepared { path, created: Some(created), fd, notes, warnings })
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_new_dir(
        &self,
        parent: &OwnedFd,
        name: &str,
        path: &Path,
        fd: OwnedFd,
        st: FileStat,
        uid: u32,
        gid: u32,
        notes: &mut Vec<String>,
        warnings: &mut Vec<String>,
    ) -> Result<(OwnedFd, Created), RuntimeDirError> {
        let io = |op, errno| RuntimeDirError::Io { path: path.to_path_buf(), op, errno };
        // SELinux: the label the policy gives this path (None when disabled).
        let label = self.selinux.runtime_dir_label(path).unwrap_or_else(|e| {
            notes.push(e.to_string());
            None
        });
        if let Some(tmpfs) = &self.tmpfs {
            let dir = (st.st_dev, st.st_ino);
            match crate::tmpfs::mount(parent, name, path, &fd, dir, tmpfs, uid, gid, label.as_deref()) {
                Ok(mounted) => {
                    warnings.extend(mounted.warnings);
                    return Ok((mounted.root, mounted.created));
                }
                Err(crate::tmpfs::MountError::NoPrivilege(why)) => warnings.push(why),
                Err(crate::tmpfs::MountError::Failed(reason)) => {
                    return Err(RuntimeDirError::Mount { path: path.to_path_buf(), reason });
                }
            }
        }
        fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).map_err(|e| io("fchown", e))?;
        fchmod(&fd, Mode::from_bits_truncate(0o700)).map_err(|e| io("fchmod", e))?;
        if let Some(Err(e)) = label.as_deref().map(|l| self.selinux.apply(&fd, path, l)) {
            notes.push(e.to_string());
        }
        Ok((fd, Created::plain(st.st_dev, st.st_ino)))
    }

    /// Remove the runtime dir of `uid` if it is still the one we created.
    pub fn remove(&self, uid: u32, created: &Created) -> Result<Removal, RuntimeDirError> {
        let path = self.path_for(uid);
        let name = uid.to_string();
        let io = |op, errno| RuntimeDirError::Io { path: path.clone(), op, errno };
        let parent = match self.open_parent(false) {
            Ok(p) => p,
            Err(RuntimeDirError::Io { errno: Errno::ENOENT, .. }) => return Ok(Removal::AlreadyGone),
            Err(e) => return Err(e),
        };
        if created.tmpfs {
            return crate::tmpfs::remove(&parent, &name, &path, created);
        }
        let fd = match open_dir_nofollow(&parent, &name, &path) {
            Ok(fd) => fd,
            Err(RuntimeDirError::Io { errno: Errno::ENOENT, .. }) => return Ok(Removal::AlreadyGone),
            Err(RuntimeDirError::NotADirectory { .. }) => return Ok(Removal::NotOurs),
            Err(e) => return Err(e),
        };
        let st = fstat(&fd).map_err(|e| io("fstat", e))?;
        if (st.st_dev, st.st_ino) != (created.dev, created.ino) {
            return Ok(Removal::NotOurs);
        }
        if let Err(reason) = removal::empty_for_user(&fd, uid, st.st_gid) {
            // Emptied with the user's credentials, never root's: see removal.rs.
            return Ok(Removal::LeftInPlace(reason));
        }
        match unlinkat(&parent, name.as_str(), UnlinkatFlags::RemoveDir) {
            Ok(()) => Ok(Removal::Removed),
            Err(Errno::ENOENT) => Ok(Removal::AlreadyGone),
            Err(e) => Ok(Removal::LeftInPlace(format!("rmdir failed: {}", e.desc()))),
        }
    }

    /// Open the parent, creating it (root:root 0755) when `create`.
    fn open_parent(&self, create: bool) -> Result<OwnedFd, RuntimeDirError> {
        let unsafe_parent = |reason: String| RuntimeDirError::UnsafeParent { path: self.parent.clone(), reason };
        let (Some(grand), Some(name)) = (self.parent.parent(), self.parent.file_name()) else {
            return Err(unsafe_parent("it has no parent directory".into()));
        };
        let io = |op, errno| RuntimeDirError::Io { path: self.parent.clone(), op, errno };
        let grand_fd = open(grand, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| RuntimeDirError::Io { path: grand.to_path_buf(), op: "open", errno: e })?;
        let mut made = false;
        let mut opened = openat(&grand_fd, name, dir_flags(), Mode::empty());
        if create && matches!(opened, Err(Errno::ENOENT)) {
            match mkdirat(&grand_fd, name, Mode::from_bits_truncate(0o755)) {
                Ok(()) => made = true,
                Err(Errno::EEXIST) => {}
                Err(e) => return Err(io("mkdir", e)),
            }
            opened = openat(&grand_fd, name, dir_flags(), Mode::empty());
        }
        let fd = match opened {
            Ok(fd) => fd,
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                let found =
                    fstatat(&grand_fd, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_or("not a directory", |st| kind_of(&st));
                return Err(unsafe_parent(format!("it is {found}, not a directory")));
            }
            Err(e) => return Err(io("open", e)),
        };
        if made {
            fchmod(&fd, Mode::from_bits_truncate(0o755)).map_err(|e| io("fchmod", e))?;
        }
        let st = fstat(&fd).map_err(|e| io("fstat", e))?;
        if st.st_uid != self.trusted_owner {
            return Err(unsafe_parent(format!("it is owned by uid {}, not root", st.st_uid)));
        }
        if st.st_mode & 0o022 != 0 {
            return Err(unsafe_parent(format!("it is writable by group or others (mode {:04o})", st.st_mode & 0o7777)));
        }
        Ok(fd)
    }
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// `openat(parent, name, O_DIRECTORY|O_NOFOLLOW)`, telling a symlink or a
/// file apart from other failures.
pub(crate) fn open_dir_nofollow(parent: &OwnedFd, name: &str, path: &Path) -> Result<OwnedFd, RuntimeDirError> {
    match openat(parent, name, dir_flags(), Mode::empty()) {
        Ok(fd) => Ok(fd),
        // Linux says ENOTDIR, not ELOOP, for a symlink under O_DIRECTORY.
        Err(Errno::ELOOP | Errno::ENOTDIR) => {
            let found = match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => kind_of(&st),
                Err(_) => "not a directory",
            };
            Err(RuntimeDirError::NotADirectory { path: path.into(), found })
        }
        Err(e) => Err(RuntimeDirError::Io { path: path.into(), op: "open", errno: e }),
    }
}

/// Whether `path` (not followed if a link) is the root of a mount: the
/// statx mount-root attribute (Linux 5.8), else a mount id different from
/// its parent's; `None` if neither can be read. Unlike `st_dev`, this sees
/// a bind mount of the same filesystem. (`check` uses it to tell a per-user
/// tmpfs from the plain-dir fallback.)
pub(crate) fn is_mount_root(path: &Path) -> Option<bool> {
    use crate::ffi::statx::mount_of;
    use std::os::fd::AsFd;
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = open(path, flags, Mode::empty()).ok()?;
    let info = mount_of(fd.as_fd()).ok()?;
    if let Some(root) = info.mount_root {
        return Some(root);
    }
    let parent = openat(&fd, "..", flags, Mode::empty()).ok()?;
    Some(info.mnt_id? != mount_of(parent.as_fd()).ok()?.mnt_id?)
}

fn kind_of(st: &FileStat) -> &'static str {
    match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFLNK => "a symbolic link",
        SFlag::S_IFREG => "a regular file",
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFCHR | SFlag::S_IFBLK => "a device node",
        _ => "not a directory",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    pub(super) struct Root {
        pub(super) dir: PathBuf,
        pub(super) dirs: RuntimeDirs,
        pub(super) uid: u32,
        pub(super) gid: u32,
    }

    impl Drop for Root {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// A private root with `<root>/user` as the parent. As root, the target
    /// uid is an unused one; unprivileged, our own (chown to self works).
    pub(super) fn root(tag: &str) -> Root {
        let me = nix::unistd::geteuid().as_raw();
        let dir = std::env::temp_dir().join(format!("js-rt-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Plain directories: these tests are about plain-dir behaviour.
        let config = Config { runtime_dir_parent: dir.join("user"), tmpfs: false, ..Config::default() };
        let dirs = RuntimeDirs::new(&config).with_trusted_owner(me);
        let (uid, gid) = if me == 0 { (54321, 54321) } else { (me, nix::unistd::getegid().as_raw()) };
        Root { dir, dirs, uid, gid }
    }

    /// `chown -hR uid:gid path`: what the user made in their dir is theirs.
    pub(super) fn give_to(path: &Path, uid: u32, gid: u32) {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
        if std::fs::symlink_metadata(path).unwrap().is_dir() {
            for entry in std::fs::read_dir(path).unwrap() {
                give_to(&entry.unwrap().path(), uid, gid);
            }
        }
    }

    #[test]
    fn creates_parent_and_dir_with_right_owner_and_mode() {
        let r = root("create");
        let p = r.dirs.ensure(r.uid, r.gid).unwrap();
        let created = p.created.expect("created");
        let parent = std::fs::metadata(r.dir.join("user")).unwrap();
        assert_eq!(parent.mode() & 0o7777, 0o755);
        let md = std::fs::symlink_metadata(&p.path).unwrap();
        assert!(md.is_dir());
        assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (r.uid, r.gid, 0o700));
        assert_eq!((md.dev(), md.ino()), (created.dev, created.ino));
        // A second session finds it and leaves it alone.
        let again = r.dirs.ensure(r.uid, r.gid).unwrap();
        assert!(again.created.is_none());
        // Removal removes contents too, including nested dirs and links.
        std::fs::create_dir_all(p.path.join("a/b/c")).unwrap();
        std::fs::write(p.path.join("a/b/file"), "x").unwrap();
        symlink("/etc/passwd", p.path.join("a/link")).unwrap();
        // The user's own files (removal runs with the user's credentials).
        give_to(&p.path.join("a"), r.uid, r.gid);
        assert_eq!(r.dirs.remove(r.uid, &created).unwrap(), Removal::Removed);
        assert!(!p.path.exists());
        assert!(std::fs::metadata("/etc/passwd").is_ok());
        assert_eq!(r.dirs.remove(r.uid, &created).unwrap(), Removal::AlreadyGone);
    }

    #[test]
    fn symlink_is_refused_and_target_untouched() {
        let r = root("symlink");
        std::fs::create_dir(r.dir.join("user")).unwrap();
        let victim = r.dir.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let before = std::fs::metadata(&victim).unwrap();
        symlink(&victim, r.dirs.path_for(r.uid)).unwrap();
        let err = r.dirs.ensure(r.uid, r.gid).unwrap_err();
        assert!(matches!(err, RuntimeDirError::NotADirectory { found: "a symbolic link", .. }), "{err}");
        assert!(err.to_string().contains("symbolic link"));
        let after = std::fs::metadata(&victim).unwrap();
        assert_eq!((before.uid(), before.mode()), (after.uid(), after.mode()));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        // A symlink to a directory is refused the same way.
        std::fs::remove_file(r.dirs.path_for(r.uid)).unwrap();
        symlink(&r.dir, r.dirs.path_for(r.uid)).unwrap();
        assert!(matches!(r.dirs.ensure(r.uid, r.gid), Err(RuntimeDirError::NotADirectory { .. })));
    }

    #[test]
    fn file_in_the_way_is_refused() {
        let r = root("file");
        std::fs::create_dir(r.dir.join("user")).unwrap();
        std::fs::write(r.dirs.path_for(r.uid), "x").unwrap();
        let err = r.dirs.ensure(r.uid, r.gid).unwrap_err();
        assert!(matches!(err, RuntimeDirError::NotADirectory { found: "a regular file", .. }), "{err}");
    }

    #[test]
    fn other_owner_is_refused_and_not_chowned() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED other_owner_is_refused_and_not_chowned: needs root to make a dir of another owner");
            return;
        }
        let r = root("owner");
        std::fs::create_dir(r.dir.join("user")).unwrap();
        let path = r.dirs.path_for(r.uid);
        std::fs::create_dir(&path).unwrap();
        std::os::unix::fs::chown(&path, Some(54322), Some(54322)).unwrap();
        let err = r.dirs.ensure(r.uid, r.gid).unwrap_err();
        assert!(matches!(err, RuntimeDirError::WrongOwner { owner: 54322, .. }), "{err}");
        assert_eq!(std::fs::metadata(&path).unwrap().uid(), 54322);
    }

    #[test]
    fn loose_mode_of_own_dir_is_tightened() {
        let r = root("mode");
        std::fs::create_dir(r.dir.join("user")).unwrap();
        let path = r.dirs.path_for(r.uid);
        std::fs::create_dir(&path).unwrap();
        std::os::unix::fs::chown(&path, Some(r.uid), Some(r.gid)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let p = r.dirs.ensure(r.uid, r.gid).unwrap();
        assert!(p.created.is_none());
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o700);
        assert!(p.notes[0].contains("0755"), "{:?}", p.notes);
    }

    #[test]
    fn unsafe_parents_are_refused() {
        let r = root("parent");
        // group/other writable
        std::fs::create_dir(r.dir.join("user")).unwrap();
        std::fs::set_permissions(r.dir.join("user"), std::fs::Permissions::from_mode(0o1777)).unwrap();
        let err = r.dirs.ensure(r.uid, r.gid).unwrap_err();
        assert!(err.to_string().contains("writable by group or others"), "{err}");
        assert!(!r.dirs.path_for(r.uid).exists());
        // a symlink to a good directory
        std::fs::remove_dir(r.dir.join("user")).unwrap();
        std::fs::create_dir(r.dir.join("elsewhere")).unwrap();
        symlink(r.dir.join("elsewhere"), r.dir.join("user")).unwrap();
        let err = r.dirs.ensure(r.uid, r.gid).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_dir(r.dir.join("elsewhere")).unwrap().count(), 0);
        // not a directory
        std::fs::remove_file(r.dir.join("user")).unwrap();
        std::fs::write(r.dir.join("user"), "").unwrap();
        let err = r.dirs.ensure(r.uid, r.gid).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        // not owned by the trusted owner
        std::fs::remove_file(r.dir.join("user")).unwrap();
        std::fs::create_dir(r.dir.join("user")).unwrap();
        let strict = r.dirs.clone().with_trusted_owner(4242);
        let err = strict.ensure(r.uid, r.gid).unwrap_err();
        assert!(err.to_string().contains("not root"), "{err}");
    }

    #[test]
    fn removal_leaves_a_replaced_dir_alone() {
        let r = root("replaced");
        let p = r.dirs.ensure(r.uid, r.gid).unwrap();
        let created = p.created.unwrap();
        drop(p);
        // Keep the original alive elsewhere so the replacement cannot reuse
        // its inode number: identity is (dev, ino), and only root can
        // replace a dir in the root-owned parent.
        std::fs::rename(r.dirs.path_for(r.uid), r.dir.join("original")).unwrap();
        std::fs::create_dir(r.dirs.path_for(r.uid)).unwrap();
        std::fs::write(r.dirs.path_for(r.uid).join("keep"), "").unwrap();
        assert_eq!(r.dirs.remove(r.uid, &created).unwrap(), Removal::NotOurs);
        assert!(r.dirs.path_for(r.uid).join("keep").exists());
    }

    #[test]
    fn too_deep_tree_is_left_in_place() {
        let r = root("deep");
        let p = r.dirs.ensure(r.uid, r.gid).unwrap();
        let mut deep = p.path.clone();
        for _ in 0..MAX_DEPTH + 2 {
            deep.push("d");
        }
        std::fs::create_dir_all(&deep).unwrap();
        give_to(&p.path.join("d"), r.uid, r.gid);
        let outcome = r.dirs.remove(r.uid, &p.created.unwrap()).unwrap();
        assert!(matches!(outcome, Removal::LeftInPlace(ref why) if why.contains("deeper")), "{outcome:?}");
    }

    #[test]
    fn mount_roots_are_told_from_plain_dirs() {
        assert_eq!(is_mount_root(Path::new("/")), Some(true));
        assert_eq!(is_mount_root(Path::new("/proc")), Some(true));
        let r = root("mountroot");
        std::fs::create_dir_all(r.dir.join("sub")).unwrap();
        assert_eq!(is_mount_root(&r.dir.join("sub")), Some(false));
        assert_eq!(is_mount_root(&r.dir.join("missing")), None);
    }

    #[test]
    fn created_round_trips() {
        let c = Created { dev: 2049, ino: 77, tmpfs: true, mount: None };
        assert_eq!(Created::decode(&c.encode()), Some(c));
        assert_eq!(Created::decode("2049 77 tmpfs\n"), Some(c), "records before the namespace was kept");
        assert_eq!(Created::decode(&Created::plain(1, 2).encode()), Some(Created::plain(1, 2)));
        for ns in [MountNs::Pid1, MountNs::Pid1And(4026532281), MountNs::Local] {
            let c = Created { mount: Some(TmpfsMount { dir: (2049, 12), ns }), ..c };
            assert_eq!(Created::decode(&c.encode()), Some(c), "{}", c.encode());
        }
        assert_eq!(Created::decode("1 2 tmpfs 3 4 pid1+mnt:x"), None);
        assert_eq!(Created::decode("1 2 tmpfs 3 4"), None);
        assert_eq!(Created::decode("1 2 plain 3 4 pid1"), None);
        assert_eq!(Created::decode("1 2 weird"), None);
        assert_eq!(Created::decode("1 2 plain extra"), None);
    }
}
