//! Emptying a plain runtime dir so that it can only delete what the user
//! could have deleted.
//!
//! A user can `mv` another user's tree into their runtime dir (a
//! group-writable project dir they may rename but whose files they may not
//! delete), or an admin can bind-mount something into it. Root walking that
//! tree would delete all of it. So the walk:
//! - runs with the user's filesystem credentials
//!   ([`crate::as_user::run_with_fs_creds`]: fs uid, fs gid and groups, no
//!   capabilities), never root's: whatever the user could not delete stays,
//!   and the runtime dir is left in place with the reason. The helper
//!   thread keeps root's real and effective uid, so the user cannot signal
//!   it (a SIGKILL or SIGSTOP to it would hit the whole PAM host) or
//!   ptrace it;
//! - never crosses a mount: every directory it opens is checked, on the fd
//!   after `openat`, to be on the same mount (mount id from `statx`) as the
//!   runtime dir; `st_dev` is not enough (a bind mount of the same
//!   filesystem has the same device);
//! - never follows a symlink (`O_NOFOLLOW`, `unlinkat` through the parent's
//!   fd);
//! - uses bounded memory: no list of names is kept; it iterates each
//!   directory's stream, unlinking as it goes, and scans a directory again
//!   until a pass removes nothing (a stream may skip entries while they are
//!   being deleted); it stops early at a directory holding something it
//!   cannot remove, since another pass cannot change that. Depth is bounded
//!   ([`MAX_DEPTH`]: at most two fds and one directory buffer per level);
//! - takes bounded time: after [`TIME_LIMIT`] it stops, and what is left
//!   stays in place for the next close or `jupyter-session gc` to continue.
#![forbid(unsafe_code)]

use std::ffi::CStr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fstatat};
use nix::unistd::{UnlinkatFlags, dup, unlinkat};

use crate::as_user::{Creds, run_with_fs_creds};
use crate::ffi::statx::mount_of;
use crate::user::UserInfo;

/// Deepest directory tree we descend into. A user can build deeper trees;
/// those are left in place (and logged) rather than risking the PAM host's
/// fd table.
pub const MAX_DEPTH: usize = 64;

/// Longest one removal may take, inside a PAM host's close and under the
/// user's registry lock. A bigger tree is removed over several closes or
/// `jupyter-session gc` runs.
pub const TIME_LIMIT: Duration = Duration::from_secs(2);

/// How a walk ended early.
enum Fail {
    /// Something here cannot be removed; siblings were still tried.
    Problem(String),
    /// Out of time: stop everything at once.
    Stop(String),
}

/// The credentials the walk of uid's runtime dir runs with: the user's, as
/// a login gets them. A user no longer in the passwd database gets the
/// dir's group and no supplementary groups (never more than the user had).
/// Without root (a close run by the user, e.g. from systemd's `(sd-pam)`)
/// the process cannot change credentials and keeps its own: no more than
/// it could delete anyway.
pub fn creds_for(uid: u32, dir_gid: u32) -> Creds {
    let euid = nix::unistd::geteuid();
    if !euid.is_root() {
        return Creds {
            uid: euid.as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            groups: nix::unistd::getgroups().map(|g| g.into_iter().map(|g| g.as_raw()).collect()).unwrap_or_default(),
        };
    }
    UserInfo::by_uid(uid).ok().and_then(|u| Creds::of_user(&u).ok()).unwrap_or(Creds {
        uid,
        gid: dir_gid,
        groups: vec![dir_gid],
    })
}

/// Empty the runtime dir of `uid` open at `dir` (its group `dir_gid`) with
/// the user's credentials ([`creds_for`]), within [`TIME_LIMIT`].
pub fn empty_for_user(dir: &OwnedFd, uid: u32, dir_gid: u32) -> Result<(), String> {
    // The common case, an empty dir, needs no user lookup and no helper
    // thread: listing it (as whoever we are) deletes nothing.
    let mut listing = Dir::from_fd(dup_of(dir)?).map_err(|e| format!("cannot list the directory: {}", e.desc()))?;
    let empty = listing.iter().all(|e| e.is_ok_and(|e| matches!(e.file_name().to_bytes(), b"." | b"..")));
    drop(listing);
    if empty {
        return Ok(());
    }
    empty_as(dir, &creds_for(uid, dir_gid), TIME_LIMIT)
}

fn dup_of(dir: &OwnedFd) -> Result<OwnedFd, String> {
    dup(dir).map_err(|e| format!("cannot duplicate the directory's fd: {}", e.desc()))
}

/// Empty the directory open at `dir` as `creds`, within `time_limit`.
/// `Ok(())` when it is empty; otherwise the first thing that stayed and
/// why (everything else removable was removed).
pub fn empty_as(dir: &OwnedFd, creds: &Creds, time_limit: Duration) -> Result<(), String> {
    let top = dup_of(dir)?;
    let uid = creds.uid;
    let walked = run_with_fs_creds(creds, move || {
        let mut walk =
            Walk { mnt_id: 0, deadline: Instant::now() + time_limit, time_limit, removed: 0, uid, at: PathBuf::new() };
        walk.top(top)
    });
    match walked {
        Ok(Ok(())) => Ok(()),
        Ok(Err(Fail::Problem(p) | Fail::Stop(p))) => Err(p),
        Err(e) => Err(e.to_string()),
    }
}

struct Walk {
    /// The runtime dir's mount: nothing on another is touched.
    mnt_id: u64,
    deadline: Instant,
    time_limit: Duration,
    removed: u64,
    uid: u32,
    /// Where we are, relative to the runtime dir, for messages.
    at: PathBuf,
}

impl Walk {
    fn top(&mut self, top: OwnedFd) -> Result<(), Fail> {
        let info = mount_of(top.as_fd()).map_err(|e| Fail::Problem(format!("statx failed: {}", e.desc())))?;
        let Some(mnt_id) = info.mnt_id else {
            return Err(Fail::Problem(
                "this kernel does not report mount ids (statx STATX_MNT_ID, Linux 5.8 or later), so mounts inside cannot be told apart; not emptied".into(),
            ));
        };
        self.mnt_id = mnt_id;
        self.clear(top, 0)
    }

    /// The directory being emptied, relative to the runtime dir.
    fn here(&self) -> String {
        if self.at.as_os_str().is_empty() { ".".to_string() } else { self.at.display().to_string() }
    }

    fn shown(&self, name: &CStr) -> String {
        self.at.join(name.to_string_lossy().as_ref()).display().to_string()
    }

    fn check_time(&self) -> Result<(), Fail> {
        if Instant::now() < self.deadline {
            return Ok(());
        }
        Err(Fail::Stop(format!(
            "stopped after {} s with entries left ({} removed); the next close or `jupyter-session gc` continues",
            self.time_limit.as_secs_f64(),
            self.removed
        )))
    }

    /// Empty the directory open at `dir`.
    fn clear(&mut self, dir: OwnedFd, depth: usize) -> Result<(), Fail> {
        let stream_fd = dup(&dir)
            .map_err(|e| Fail::Problem(format!("cannot duplicate the fd of {}: {}", self.here(), e.desc())))?;
        // A dup shares the file offset: start the stream at the beginning.
        let _ = nix::unistd::lseek(&stream_fd, 0, nix::unistd::Whence::SeekSet);
        let mut stream =
            Dir::from_fd(stream_fd).map_err(|e| Fail::Problem(format!("cannot list {}: {}", self.here(), e.desc())))?;
        loop {
            let mut progress = false;
            let mut problem = None;
            for entry in stream.iter() {
                self.check_time()?;
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(e) => {
                        problem.get_or_insert(format!("cannot list {}: {}", self.here(), e.desc()));
                        break;
                    }
                };
                let name = entry.file_name();
                if matches!(name.to_bytes(), b"." | b"..") {
                    continue;
                }
                match self.remove_entry(&dir, name, entry.file_type(), depth) {
                    Ok(removed) => progress |= removed,
                    Err(Fail::Problem(p)) => {
                        problem.get_or_insert(p);
                    }
                    Err(stop) => return Err(stop),
                }
            }
            if let Some(p) = problem {
                return Err(Fail::Problem(p));
            }
            if !progress {
                return Ok(());
            }
        }
    }

    /// Remove one entry of `dir`. `Ok(true)` when something was removed
    /// (or must be looked at again), `Ok(false)` when it was already gone.
    fn remove_entry(&mut self, dir: &OwnedFd, name: &CStr, hint: Option<Type>, depth: usize) -> Result<bool, Fail> {
        let is_dir = match hint {
            Some(t) => t == Type::Directory,
            None => match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits(),
                Err(Errno::ENOENT) => return Ok(false),
                Err(e) => return Err(Fail::Problem(format!("cannot stat {}: {}", self.shown(name), e.desc()))),
            },
        };
        if !is_dir {
            match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
                Ok(()) => {
                    self.removed += 1;
                    return Ok(true);
                }
                Err(Errno::ENOENT) => return Ok(false),
                // Replaced by a directory since it was listed.
                Err(Errno::EISDIR) => {}
                Err(e) => return Err(self.cannot_remove(name, e)),
            }
        }
        if depth + 1 >= MAX_DEPTH {
            return Err(Fail::Problem(format!(
                "{} is deeper than {MAX_DEPTH} levels; not descended into",
                self.shown(name)
            )));
        }
        let sub = match openat(
            dir,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(false),
            // Replaced by a symlink or a file since it was listed.
            Err(Errno::ENOTDIR | Errno::ELOOP) => {
                return match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
                    Ok(()) => Ok(true),
                    Err(Errno::ENOENT) => Ok(false),
                    Err(e) => Err(self.cannot_remove(name, e)),
                };
            }
            Err(e) => {
                return Err(Fail::Problem(format!(
                    "cannot open {} as uid {}: {}; it is not the user's to delete (an admin can move it out, then run `jupyter-session gc`)",
                    self.shown(name),
                    self.uid,
                    e.desc()
                )));
            }
        };
        // The check that counts: on the fd we opened, so no swap between a
        // check and the open can lead us onto another mount.
        match mount_of(sub.as_fd()) {
            Ok(info) if info.mnt_id == Some(self.mnt_id) && info.mount_root != Some(true) => {}
            Ok(_) => {
                return Err(Fail::Problem(format!(
                    "{} is a mount point (another filesystem or a bind mount) and mounts are never crossed; unmount it, then run `jupyter-session gc`",
                    self.shown(name)
                )));
            }
            Err(e) => return Err(Fail::Problem(format!("statx {} failed: {}", self.shown(name), e.desc()))),
        }
        self.at.push(name.to_string_lossy().as_ref());
        let cleared = self.clear(sub, depth + 1);
        self.at.pop();
        cleared?;
        match unlinkat(dir, name, UnlinkatFlags::RemoveDir) {
            Ok(()) => {
                self.removed += 1;
                Ok(true)
            }
            Err(Errno::ENOENT) => Ok(false),
            // Refilled meanwhile: the next pass looks again.
            Err(Errno::ENOTEMPTY | Errno::EEXIST) => Ok(true),
            Err(e) => Err(self.cannot_remove(name, e)),
        }
    }

    fn cannot_remove(&self, name: &CStr, e: Errno) -> Fail {
        let what = self.shown(name);
        Fail::Problem(match e {
            Errno::EBUSY => {
                format!(
                    "{what} is a mount point and mounts are never crossed; unmount it, then run `jupyter-session gc`"
                )
            }
            Errno::EACCES | Errno::EPERM => format!(
                "cannot remove {what} as uid {}: {}; it is not the user's to delete (an admin can move it out, then run `jupyter-session gc`)",
                self.uid,
                e.desc()
            ),
            _ => format!("cannot remove {what}: {}", e.desc()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{give_to, root};
    use super::super::{Removal, RuntimeDirs};
    use super::*;
    use std::os::unix::fs::{PermissionsExt, chown};
    use std::path::Path;

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    fn skip(name: &str) -> bool {
        if is_root() {
            return false;
        }
        assert!(std::env::var_os("CI").is_none(), "{name} needs root in CI");
        eprintln!("SKIPPED {name}: needs root");
        true
    }

    fn mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn made(dirs: &RuntimeDirs, uid: u32, gid: u32) -> (PathBuf, super::super::Created) {
        let p = dirs.ensure(uid, gid).unwrap();
        (p.path, p.created.unwrap())
    }

    #[test]
    fn another_users_files_moved_in_survive_and_the_dir_stays() {
        if skip("another_users_files_moved_in_survive_and_the_dir_stays") {
            return;
        }
        let r = root("moved");
        let (path, created) = made(&r.dirs, r.uid, r.gid);
        let bob = 54322;
        // bob's project dir, group-writable for the user's group (2775), and
        // in it a dir of bob's only he may write to.
        let data = path.join("data");
        std::fs::create_dir_all(data.join("results")).unwrap();
        std::fs::write(data.join("results/paper.tex"), "bob's").unwrap();
        std::fs::write(data.join("notes.txt"), "deletable by the group").unwrap();
        for p in [&data, &data.join("results"), &data.join("results/paper.tex"), &data.join("notes.txt")] {
            chown(p, Some(bob), Some(r.gid)).unwrap();
        }
        mode(&data, 0o2775);
        mode(&data.join("results"), 0o2755);
        std::fs::write(path.join("own"), "").unwrap();
        give_to(&path.join("own"), r.uid, r.gid);

        let outcome = r.dirs.remove(r.uid, &created).unwrap();
        let Removal::LeftInPlace(why) = outcome else { panic!("{outcome:?}") };
        assert!(why.contains("data/results/paper.tex") && why.contains("not the user's"), "{why}");
        assert_eq!(std::fs::read_to_string(data.join("results/paper.tex")).unwrap(), "bob's");
        // What the user could delete is gone.
        assert!(!data.join("notes.txt").exists());
        assert!(!path.join("own").exists());
    }

    #[test]
    fn a_bind_mount_of_the_same_filesystem_is_not_crossed() {
        if skip("a_bind_mount_of_the_same_filesystem_is_not_crossed") {
            return;
        }
        let r = root("bind");
        let (path, created) = made(&r.dirs, r.uid, r.gid);
        // A shared dir anyone may write to, holding root's file: the user
        // could delete it there, but not through a mount in the runtime dir.
        let shared = r.dir.join("shared");
        std::fs::create_dir(&shared).unwrap();
        mode(&shared, 0o777);
        std::fs::write(shared.join("root-file"), "root's").unwrap();
        let target = path.join("data");
        std::fs::create_dir(&target).unwrap();
        give_to(&target, r.uid, r.gid);
        nix::mount::mount(Some(&shared), &target, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>).unwrap();
        let outcome = r.dirs.remove(r.uid, &created);
        nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH).unwrap();
        let outcome = outcome.unwrap();
        assert!(
            matches!(outcome, Removal::LeftInPlace(ref why) if why.contains("data is a mount point")),
            "{outcome:?}"
        );
        assert_eq!(std::fs::read_to_string(shared.join("root-file")).unwrap(), "root's");
        // Once the mount is gone the next removal finishes.
        assert_eq!(r.dirs.remove(r.uid, &created).unwrap(), Removal::Removed);
    }

    #[test]
    fn stops_at_the_time_limit_and_a_later_call_finishes() {
        let r = root("time");
        let (path, created) = made(&r.dirs, r.uid, r.gid);
        // Nested dirs of many long names (more than one getdents buffer
        // each) and links, which must not be followed.
        for d in 0..4 {
            let sub = path.join(format!("dir{d}/inner"));
            std::fs::create_dir_all(&sub).unwrap();
            for f in 0..1500 {
                std::fs::write(sub.join(format!("{f:0>200}")), "").unwrap();
            }
            std::os::unix::fs::symlink("/etc", sub.join("link")).unwrap();
            give_to(&path.join(format!("dir{d}")), r.uid, r.gid);
        }
        let fd = nix::fcntl::open(&path, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        let err = empty_as(&fd, &creds_for(r.uid, r.gid), Duration::ZERO).unwrap_err();
        assert!(err.contains("stopped after 0 s") && err.contains("jupyter-session gc"), "{err}");
        assert!(path.join("dir0/inner/link").symlink_metadata().is_ok(), "nothing removed after the deadline");
        drop(fd);
        // The next close (or gc) with the normal limit finishes.
        assert_eq!(r.dirs.remove(r.uid, &created).unwrap(), Removal::Removed);
        assert!(!path.exists());
        assert!(Path::new("/etc/passwd").exists());
    }
}
