//! The session registry: who has which sessions open, kept where users can
//! never write.
//!
//! ```text
//! STATE_DIR/                 root 0700
//!   users/UID/               root 0700, one per user ever seen
//!     lock                   flock(LOCK_EX) serializes open/close for UID
//!     runtime-dir            "dev ino plain|tmpfs": the runtime dir we made
//!                            ("pending" while making it)
//!     p<pid>-<start>-<n>.json  a session kept by a process
//!     id-<ID>.json           a session with an explicit id (Slurm, admins)
//!   ids/ID                   "UID": which user an explicit id belongs to
//! ```
//!
//! Records are written to a temporary file and renamed into place, so a
//! crash leaves either the old state or the new one; anything unreadable
//! (a torn or planted file) is ignored and removed under the lock. Different
//! users never contend: each has its own lock and directory, so the cost of
//! a session does not grow with the number of users.
#![forbid(unsafe_code)]

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, Flock, FlockArg, OFlag, openat, renameat};
use nix::sys::stat::{Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use serde::{Deserialize, Serialize};

use crate::binding::Binding;
use crate::procfs::ProcessId;
use crate::runtime_dir::Created;
use crate::trust::{TrustError, Want, open_trusted};

const RECORD_VERSION: u32 = 1;

/// The runtime-dir marker's content while a runtime dir is being made.
const PENDING: &[u8] = b"pending\n";

/// One open session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub version: u32,
    pub uid: u32,
    pub user: String,
    pub service: String,
    /// Seconds since the epoch when the session opened.
    pub since: u64,
    /// The process that keeps the session, for process-bound sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
    /// The explicit id, for sessions not bound to a process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What an id session stands for (a job's cgroup, a process): it ends
    /// when that is gone. None: alive until closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound: Option<Binding>,
}

impl Record {
    fn new(uid: u32, user: &str, service: &str) -> Record {
        Record {
            version: RECORD_VERSION,
            uid,
            user: user.to_string(),
            service: service.to_string(),
            since: now(),
            pid: None,
            start_time: None,
            id: None,
            bound: None,
        }
    }

    /// A session kept by `process`.
    pub fn for_process(uid: u32, user: &str, service: &str, process: ProcessId) -> Record {
        Record { pid: Some(process.pid), start_time: Some(process.start_time), ..Record::new(uid, user, service) }
    }

    /// A session with an explicit id, ended only by `close --id` or `gc`.
    pub fn with_id(uid: u32, user: &str, service: &str, id: &str) -> Record {
        Record { id: Some(id.to_string()), ..Record::new(uid, user, service) }
    }

    pub fn process(&self) -> Option<ProcessId> {
        Some(ProcessId { pid: self.pid?, start_time: self.start_time? })
    }

    /// The same record bound to `binding` (id sessions).
    pub fn bound_to(self, binding: Option<Binding>) -> Record {
        Record { bound: binding, ..self }
    }

    /// A process-bound session is alive while its very process runs; an
    /// id session while what it is bound to is there, or until closed if
    /// it is bound to nothing.
    pub fn alive(&self) -> bool {
        match (self.process(), &self.bound) {
            (Some(p), _) => p.alive(),
            (None, Some(binding)) => self.id.is_some() && binding.alive(),
            (None, None) => self.id.is_some(),
        }
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[derive(Debug)]
pub enum RegistryError {
    /// The state dir is not a root-only directory.
    Unsafe {
        path: PathBuf,
        reason: String,
    },
    Io {
        path: PathBuf,
        op: &'static str,
        reason: String,
    },
    InvalidId(String),
    DuplicateId {
        id: String,
        uid: u32,
    },
    UnknownId(String),
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::Unsafe { path, reason } => write!(
                f,
                "refusing session state directory {}: {reason}; it must be a directory owned by root, mode 0700",
                path.display()
            ),
            RegistryError::Io { path, op, reason } => write!(f, "{op} {} failed: {reason}", path.display()),
            RegistryError::InvalidId(id) => write!(
                f,
                "'{}' is not a valid session id: use 1-128 letters, digits, '.', '_', '-', not starting with '.' or '-'",
                id.escape_debug()
            ),
            RegistryError::DuplicateId { id, uid } => write!(
                f,
                "a session with id '{id}' is already open (uid {uid}); close it first with `jupyter-session close --id {id}`"
            ),
            RegistryError::UnknownId(id) => {
                write!(f, "no open session has id '{id}' (see `jupyter-session list`)")
            }
        }
    }
}

impl std::error::Error for RegistryError {}

/// Explicit session ids: safe as file names and in logs.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && !id.starts_with('-')
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The registry under one state directory.
#[derive(Clone, Debug)]
pub struct SessionRegistry {
    root: PathBuf,
    trusted_owner: u32,
}

/// `O_RDONLY|O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC`.
fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

fn errno_err(path: &Path, op: &'static str, e: Errno) -> RegistryError {
    RegistryError::Io { path: path.to_path_buf(), op, reason: e.desc().into() }
}

impl SessionRegistry {
    pub fn new(state_dir: &Path) -> SessionRegistry {
        SessionRegistry { root: state_dir.to_path_buf(), trusted_owner: 0 }
    }

    /// Accept a state dir owned by `uid` instead of root: unprivileged
    /// tests on temporary roots only, never from configuration.
    pub fn with_trusted_owner(mut self, uid: u32) -> SessionRegistry {
        self.trusted_owner = uid;
        self
    }

    /// Whether a process running with effective uid `euid` can work on the
    /// registry at all (root, or the trusted owner of a test root).
    pub fn usable_by(&self, euid: u32) -> bool {
        euid == 0 || euid == self.trusted_owner
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Open the state dir through a checked walk from `/` (every directory
    /// above it root's and not writable by group or others, see
    /// [`crate::trust`]), creating it when `create`. `Ok(None)`: it does
    /// not exist and `create` is false.
    fn open_root(&self, create: bool) -> Result<Option<OwnedFd>, RegistryError> {
        let (Some(parent), Some(name)) = (self.root.parent(), self.root.file_name().and_then(|n| n.to_str())) else {
            return Err(RegistryError::Unsafe { path: self.root.clone(), reason: "it has no parent directory".into() });
        };
        let parent_fd = match open_trusted(parent, Want::Dir, self.trusted_owner) {
            Ok(fd) => fd,
            Err(e @ TrustError::Untrusted { .. }) => {
                return Err(RegistryError::Unsafe { path: self.root.clone(), reason: e.to_string() });
            }
            Err(e) => return Err(RegistryError::Io { path: self.root.clone(), op: "open", reason: e.to_string() }),
        };
        self.private_dir(&parent_fd, name, &self.root, create)
    }

    /// Create (0700, whatever the umask) or validate the private directory
    /// `name` in `parent`: not a symlink, owned by the trusted owner, no
    /// write access for group or others (read access is taken away).
    fn private_dir(
        &self,
        parent: &OwnedFd,
        name: &str,
        path: &Path,
        create: bool,
    ) -> Result<Option<OwnedFd>, RegistryError> {
        if create {
            match mkdirat(parent, name, Mode::from_bits_truncate(0o700)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(errno_err(path, "mkdir", e)),
            }
        }
        let unsafe_dir = |reason: String| RegistryError::Unsafe { path: path.into(), reason };
        let fd = match openat(parent, name, dir_flags(), Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if !create => return Ok(None),
            // Linux says ENOTDIR, not ELOOP, for a symlink under O_DIRECTORY.
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                let link = fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFLNK.bits());
                return Err(unsafe_dir(if link { "it is a symbolic link" } else { "it is not a directory" }.into()));
            }
            Err(e) => return Err(errno_err(path, "open", e)),
        };
        let st = fstat(&fd).map_err(|e| errno_err(path, "fstat", e))?;
        if st.st_uid != self.trusted_owner {
            return Err(unsafe_dir(format!("it is owned by uid {}", st.st_uid)));
        }
        if st.st_mode & 0o022 != 0 {
            return Err(unsafe_dir(format!("it is writable by others (mode {:04o})", st.st_mode & 0o7777)));
        }
        if st.st_mode & 0o7777 != 0o700 {
            // Made under a umask, or readable by others: exactly 0700.
            fchmod(&fd, Mode::from_bits_truncate(0o700)).map_err(|e| errno_err(path, "fchmod", e))?;
        }
        Ok(Some(fd))
    }

    fn users_path(&self) -> PathBuf {
        self.root.join("users")
    }

    fn ids_path(&self) -> PathBuf {
        self.root.join("ids")
    }

    /// The state dir and its `ids` and `users/UID` dirs, created as needed.
    fn open_user_dirs(&self, uid: u32) -> Result<(OwnedFd, OwnedFd, PathBuf), RegistryError> {
        let missing = || errno_err(&self.root, "open", Errno::ENOENT);
        let root = self.open_root(true)?.ok_or_else(missing)?;
        let users = self.private_dir(&root, "users", &self.users_path(), true)?.ok_or_else(missing)?;
        let ids = self.private_dir(&root, "ids", &self.ids_path(), true)?.ok_or_else(missing)?;
        let path = self.users_path().join(uid.to_string());
        let dir = self.private_dir(&users, &uid.to_string(), &path, true)?.ok_or_else(missing)?;
        Ok((dir, ids, path))
    }

    /// Take the lock of `uid` (blocking) and return its sessions.
    pub fn lock_user(&self, uid: u32) -> Result<UserSessions, RegistryError> {
        self.lock(uid, FlockArg::LockExclusive).map(|s| s.expect("a blocking lock is always taken"))
    }

    /// Take the lock of `uid` if nobody holds it; `Ok(None)` if busy.
    pub fn try_lock_user(&self, uid: u32) -> Result<Option<UserSessions>, RegistryError> {
        self.lock(uid, FlockArg::LockExclusiveNonblock)
    }

    fn lock(&self, uid: u32, how: FlockArg) -> Result<Option<UserSessions>, RegistryError> {
        let (dir, ids, path) = self.open_user_dirs(uid)?;
        let lock_path = path.join("lock");
        let fd = openat(
            &dir,
            "lock",
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| errno_err(&lock_path, "open", e))?;
        let st = fstat(&fd).map_err(|e| errno_err(&lock_path, "fstat", e))?;
        if st.st_mode & SFlag::S_IFMT.bits() != SFlag::S_IFREG.bits() {
            return Err(RegistryError::Unsafe { path: lock_path, reason: "it is not a regular file".into() });
        }
        if st.st_mode & 0o7777 != 0o600 {
            fchmod(&fd, Mode::from_bits_truncate(0o600)).map_err(|e| errno_err(&lock_path, "fchmod", e))?;
        }
        let lock = match Flock::lock(File::from(fd), how) {
            Ok(lock) => lock,
            Err((_, Errno::EWOULDBLOCK)) if how == FlockArg::LockExclusiveNonblock => return Ok(None),
            Err((_, e)) => return Err(errno_err(&lock_path, "flock", e)),
        };
        Ok(Some(UserSessions { uid, dir, path, ids, ids_path: self.ids_path(), _lock: lock }))
    }

    /// Every uid that has a directory in the registry.
    pub fn uids(&self) -> Result<Vec<u32>, RegistryError> {
        let Some(root) = self.open_root(false)? else { return Ok(Vec::new()) };
        let Some(users) = self.private_dir(&root, "users", &self.users_path(), false)? else { return Ok(Vec::new()) };
        let mut uids: Vec<u32> = names_in(&users, &self.users_path())?.iter().filter_map(|n| n.parse().ok()).collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// The records of `uid` as they stand, without taking the lock and without
    /// creating, reaping or changing anything: for diagnostics. NotFound when
    /// the user never had a session here.
    pub fn peek(&self, uid: u32) -> std::io::Result<Vec<Record>> {
        let other = |e: RegistryError| std::io::Error::other(e.to_string());
        let not_found = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let root = self.open_root(false).map_err(other)?.ok_or_else(not_found)?;
        let users =
            self.private_dir(&root, "users", &self.users_path(), false).map_err(other)?.ok_or_else(not_found)?;
        let path = self.users_path().join(uid.to_string());
        let dir = self.private_dir(&users, &uid.to_string(), &path, false).map_err(other)?.ok_or_else(not_found)?;
        let mut records = Vec::new();
        for name in names_in(&dir, &path).map_err(other)? {
            if name.ends_with(".json")
                && let Some(record) = read_at(&dir, &name).and_then(|b| Record::parse(&b, uid))
            {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// Which uid holds the explicit session `id`, if any.
    pub fn uid_of_id(&self, id: &str) -> Result<Option<u32>, RegistryError> {
        if !valid_id(id) {
            return Err(RegistryError::InvalidId(id.to_string()));
        }
        let Some(root) = self.open_root(false)? else { return Ok(None) };
        let Some(ids) = self.private_dir(&root, "ids", &self.ids_path(), false)? else { return Ok(None) };
        Ok(read_at(&ids, id).and_then(|b| std::str::from_utf8(&b).ok()?.trim().parse().ok()))
    }
}

/// The names in a directory fd (without `.` and `..`).
fn names_in(dir: &OwnedFd, path: &Path) -> Result<Vec<String>, RegistryError> {
    let mut listing =
        nix::dir::Dir::openat(dir, ".", dir_flags(), Mode::empty()).map_err(|e| errno_err(path, "read", e))?;
    let mut names = Vec::new();
    for entry in listing.iter() {
        let entry = entry.map_err(|e| errno_err(path, "read", e))?;
        let name = entry.file_name().to_string_lossy();
        if name != "." && name != ".." {
            names.push(name.into_owned());
        }
    }
    Ok(names)
}

/// A small file's bytes with one `read`, through `dir` without following
/// a symlink (records are ~150 bytes; anything that does not fit is not a
/// record of ours and fails to parse).
fn read_at(dir: &OwnedFd, name: &str) -> Option<Vec<u8>> {
    use std::io::Read;
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
    let fd = openat(dir, name, flags, Mode::empty()).ok()?;
    let mut buf = vec![0u8; 4096];
    let n = File::from(fd).read(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

fn exists_at(dir: &OwnedFd, name: &str) -> bool {
    fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok()
}

/// Create `name` in `dir` with `O_CREAT|O_EXCL|O_NOFOLLOW` and exactly mode
/// 0600 (whatever the umask), holding `bytes`.
fn create_exclusive(dir: &OwnedFd, name: &str, bytes: &[u8]) -> Result<(), Errno> {
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(dir, name, flags, Mode::from_bits_truncate(0o600))?;
    let written = fchmod(&fd, Mode::from_bits_truncate(0o600)).and_then(|()| {
        let mut f = File::from(fd);
        f.write_all(bytes).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
    });
    if let Err(e) = written {
        let _ = unlinkat(dir, name, UnlinkatFlags::NoRemoveDir);
        return Err(e);
    }
    Ok(())
}

/// One record in a user's directory.
#[derive(Clone, Debug)]
pub struct Entry {
    pub key: String,
    pub record: Record,
}

/// Which record a close removes: the one of `process`, `preferred` (the key
/// the PAM handle remembers) if it is one of them, else the oldest.
#[derive(Clone, Copy, Debug)]
pub struct Closing<'a> {
    pub process: ProcessId,
    pub preferred: Option<&'a str>,
}

/// What a pass over a user's records did.
#[derive(Debug, Default)]
pub struct Reaped {
    /// A record of the closing process was found and removed.
    pub closed: bool,
    pub reaped: Vec<Record>,
    pub unreadable: usize,
    pub live: Vec<Entry>,
}

/// The sessions of one uid, held under that uid's lock (released on drop).
/// Everything goes through the fds of the user's dir and the ids dir.
pub struct UserSessions {
    uid: u32,
    dir: OwnedFd,
    path: PathBuf,
    ids: OwnedFd,
    ids_path: PathBuf,
    _lock: Flock<File>,
}

impl UserSessions {
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// Every readable record. Anything else in the directory that looks like
    /// a record but cannot be read is returned in the second list.
    pub fn scan(&self) -> Result<(Vec<Entry>, Vec<String>), RegistryError> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for name in names_in(&self.dir, &self.path)? {
            if name.starts_with(".tmp-") {
                // Left by a crash mid-write: we hold the lock, nobody writes now.
                bad.push(name);
                continue;
            }
            let Some(key) = name.strip_suffix(".json") else { continue };
            match read_at(&self.dir, &name).and_then(|b| Record::parse(&b, self.uid)) {
                Some(record) => good.push(Entry { key: key.to_string(), record }),
                None => bad.push(name),
            }
        }
        good.sort_by(|a, b| (a.record.since, &a.key).cmp(&(b.record.since, &b.key)));
        Ok((good, bad))
    }

    /// Remove records whose process is gone (or whose pid was reused) and
    /// unreadable files. Returns what was reaped, how many bad files, and
    /// the live records that remain.
    pub fn reap_stale(&self) -> Result<Reaped, RegistryError> {
        self.close_and_reap(None)
    }

    /// One pass over the user's records: remove the record `closing` names
    /// (if any), every stale record and every unreadable file.
    pub fn close_and_reap(&self, closing: Option<Closing<'_>>) -> Result<Reaped, RegistryError> {
        let (entries, bad) = self.scan()?;
        let closed_key = closing.and_then(|c| {
            let mine = entries.iter().filter(|e| e.record.process() == Some(c.process));
            let mut mine: Vec<&Entry> = mine.collect();
            match c.preferred.and_then(|p| mine.iter().position(|e| e.key == p)) {
                Some(i) => Some(mine.swap_remove(i).key.clone()),
                None => mine.first().map(|e| e.key.clone()),
            }
        });
        let mut out = Reaped { closed: closed_key.is_some(), ..Reaped::default() };
        for entry in entries {
            if Some(&entry.key) == closed_key.as_ref() {
                self.remove(&entry.key)?;
            } else if entry.record.alive() {
                let seen = entry.record.bound.as_ref().and_then(Binding::seen);
                let entry = match seen {
                    Some(binding) => self.rebind(entry, binding)?,
                    None => entry,
                };
                out.live.push(entry);
            } else {
                self.remove(&entry.key)?;
                out.reaped.push(entry.record);
            }
        }
        for name in &bad {
            self.remove_file(name)?;
        }
        out.unreadable = bad.len();
        Ok(out)
    }

    /// Record what a live session is bound to anew (see [`Binding::seen`]).
    fn rebind(&self, entry: Entry, binding: Binding) -> Result<Entry, RegistryError> {
        let record = entry.record.bound_to(Some(binding));
        let name = format!("{}.json", entry.key);
        let json = serde_json::to_vec(&record).map_err(|e| RegistryError::Io {
            path: self.path.join(&name),
            op: "encode",
            reason: e.to_string(),
        })?;
        self.replace(&name, &json)?;
        Ok(Entry { key: entry.key, record })
    }

    /// Live records (call [`reap_stale`](Self::reap_stale) first to drop the rest).
    pub fn live(&self) -> Result<Vec<Entry>, RegistryError> {
        Ok(self.scan()?.0.into_iter().filter(|e| e.record.alive()).collect())
    }

    /// Open an id session again (the same user, e.g. a Slurm Prolog run
    /// twice for one job): if the live record `id-ID` is there, replace it
    /// with `record` (keeping when it opened) and return its key; `None`
    /// if there is no such record.
    pub fn reopen_id(&self, record: &Record) -> Result<Option<String>, RegistryError> {
        let Some(id) = &record.id else { return Ok(None) };
        if !valid_id(id) {
            return Err(RegistryError::InvalidId(id.clone()));
        }
        let key = format!("id-{id}");
        let name = format!("{key}.json");
        let Some(old) = read_at(&self.dir, &name).and_then(|b| Record::parse(&b, self.uid)) else { return Ok(None) };
        if !old.alive() {
            return Ok(None);
        }
        let owner = read_at(&self.ids, id).and_then(|b| std::str::from_utf8(&b).ok()?.trim().parse::<u32>().ok());
        if owner != Some(self.uid) {
            return Ok(None);
        }
        let new = Record { since: old.since, ..record.clone() };
        let json = serde_json::to_vec(&new).map_err(|e| RegistryError::Io {
            path: self.path.join(&name),
            op: "encode",
            reason: e.to_string(),
        })?;
        self.replace(&name, &json)?;
        Ok(Some(key))
    }

    /// Add a record; returns its key.
    pub fn add(&self, record: &Record) -> Result<String, RegistryError> {
        let key = match (&record.id, record.process()) {
            (Some(id), _) => {
                if !valid_id(id) {
                    return Err(RegistryError::InvalidId(id.clone()));
                }
                self.claim_id(id)?;
                format!("id-{id}")
            }
            (None, Some(p)) => (0u32..)
                .map(|n| format!("p{}-{}-{n}", p.pid, p.start_time))
                .find(|k| !exists_at(&self.dir, &format!("{k}.json")))
                .unwrap_or_default(),
            (None, None) => {
                return Err(RegistryError::Io {
                    path: self.path.clone(),
                    op: "add record to",
                    reason: "record has neither a process nor an id".into(),
                });
            }
        };
        let json = serde_json::to_vec(record).map_err(|e| RegistryError::Io {
            path: self.path.join(format!("{key}.json")),
            op: "encode",
            reason: e.to_string(),
        })?;
        let written = self.replace(&format!("{key}.json"), &json);
        if written.is_err()
            && let Some(id) = &record.id
        {
            let _ = unlinkat(&self.ids, id.as_str(), UnlinkatFlags::NoRemoveDir);
        }
        written.map(|()| key)
    }

    fn claim_id(&self, id: &str) -> Result<(), RegistryError> {
        let path = self.ids_path.join(id);
        match create_exclusive(&self.ids, id, format!("{}\n", self.uid).as_bytes()) {
            Ok(()) => Ok(()),
            Err(Errno::EEXIST) => {
                let uid = read_at(&self.ids, id)
                    .and_then(|b| std::str::from_utf8(&b).ok()?.trim().parse().ok())
                    .unwrap_or(u32::MAX);
                // An index entry left by a crash between claim and record: reclaim it.
                if uid == self.uid && !exists_at(&self.dir, &format!("id-{id}.json")) {
                    return Ok(());
                }
                Err(RegistryError::DuplicateId { id: id.to_string(), uid })
            }
            Err(e) => Err(errno_err(&path, "create", e)),
        }
    }

    /// Atomically replace `name` in the user's dir: a fresh `.tmp-NAME`
    /// (`O_EXCL`, mode 0600) renamed over it.
    fn replace(&self, name: &str, bytes: &[u8]) -> Result<(), RegistryError> {
        let tmp = format!(".tmp-{name}");
        let tmp_path = self.path.join(&tmp);
        // One left by a crash: we hold the lock, nobody else writes it.
        self.remove_file(&tmp)?;
        create_exclusive(&self.dir, &tmp, bytes).map_err(|e| errno_err(&tmp_path, "create", e))?;
        renameat(&self.dir, tmp.as_str(), &self.dir, name).map_err(|e| {
            let _ = unlinkat(&self.dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
            errno_err(&self.path.join(name), "rename", e)
        })
    }

    fn remove_file(&self, name: &str) -> Result<(), RegistryError> {
        match unlinkat(&self.dir, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(errno_err(&self.path.join(name), "remove", e)),
        }
    }

    /// Remove a record by key (and its id index entry). False if not there.
    pub fn remove(&self, key: &str) -> Result<bool, RegistryError> {
        let name = format!("{key}.json");
        let existed = exists_at(&self.dir, &name);
        self.remove_file(&name)?;
        if let Some(id) = key.strip_prefix("id-") {
            match unlinkat(&self.ids, id, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(errno_err(&self.ids_path.join(id), "remove", e)),
            }
        }
        Ok(existed)
    }

    /// The runtime dir we created for this uid, if we did.
    pub fn runtime_dir_marker(&self) -> Option<Created> {
        let bytes = read_at(&self.dir, "runtime-dir")?;
        Created::decode(std::str::from_utf8(&bytes).ok()?)
    }

    /// Whether the marker says "about to create": an open that was killed
    /// between deciding to create the runtime dir and recording what it made.
    pub fn runtime_dir_pending(&self) -> bool {
        read_at(&self.dir, "runtime-dir").is_some_and(|b| b == PENDING)
    }

    /// Say "about to create the runtime dir" before creating it, so that a
    /// crash before [`set_runtime_dir_marker`](Self::set_runtime_dir_marker)
    /// leaves a trace the next open, close or gc of the user settles.
    pub fn mark_runtime_dir_pending(&self) -> Result<(), RegistryError> {
        self.replace("runtime-dir", PENDING)
    }

    /// Record (or, with `None`, forget) the runtime dir we created.
    pub fn set_runtime_dir_marker(&self, created: Option<&Created>) -> Result<(), RegistryError> {
        match created {
            Some(c) => self.replace("runtime-dir", c.encode().as_bytes()),
            None => self.remove_file("runtime-dir"),
        }
    }
}

impl Record {
    /// A record of `uid` from a record file's bytes, if it is one of ours
    /// (this version, this uid). Never panics, whatever the bytes.
    pub fn parse(bytes: &[u8], uid: u32) -> Option<Record> {
        serde_json::from_slice::<Record>(bytes).ok().filter(|r| r.uid == uid && r.version == RECORD_VERSION)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn owner_and_mode(path: &Path) -> Option<(u32, u32)> {
        use std::os::unix::fs::MetadataExt;
        fs::symlink_metadata(path).ok().map(|m| (m.uid(), m.mode() & 0o7777))
    }

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn registry(tag: &str) -> (Tmp, SessionRegistry) {
        let dir = std::env::temp_dir().join(format!("js-reg-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let me = nix::unistd::geteuid().as_raw();
        (Tmp(dir.clone()), SessionRegistry::new(&dir.join("state")).with_trusted_owner(me))
    }

    #[test]
    fn add_list_remove_and_layout_is_private() {
        let (_t, reg) = registry("basic");
        let me = ProcessId::current().unwrap();
        let s = reg.lock_user(1234).unwrap();
        let a = s.add(&Record::for_process(1234, "alice", "jupyterhub", me)).unwrap();
        let b = s.add(&Record::for_process(1234, "alice", "sudo", me)).unwrap();
        assert_ne!(a, b);
        assert_eq!(s.live().unwrap().len(), 2);
        assert_eq!(owner_and_mode(reg.root()).unwrap().1, 0o700);
        assert_eq!(owner_and_mode(&reg.root().join("users/1234")).unwrap().1, 0o700);
        // The remembered key is closed first; without one, the oldest.
        let r = s.close_and_reap(Some(Closing { process: me, preferred: Some(&b) })).unwrap();
        assert!(r.closed);
        assert_eq!(r.live.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(), vec![a.as_str()]);
        let c = s.add(&Record::for_process(1234, "alice", "sudo", me)).unwrap();
        let r = s.close_and_reap(Some(Closing { process: me, preferred: Some("nope") })).unwrap();
        assert!(r.closed);
        assert_eq!(r.live.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(), vec![c.as_str()]);
        assert!(s.remove(&c).unwrap());
        assert!(!s.remove(&c).unwrap());
        let other = ProcessId { pid: me.pid, start_time: me.start_time + 1 };
        assert!(!s.close_and_reap(Some(Closing { process: other, preferred: None })).unwrap().closed);
        s.add(&Record::for_process(1234, "alice", "x", me)).unwrap();
        assert_eq!(s.live().unwrap().len(), 1);
        drop(s);
        assert_eq!(reg.uids().unwrap(), vec![1234]);
        // peek reads the same records without the lock and changes nothing.
        assert_eq!(reg.peek(1234).unwrap().len(), 1);
        assert_eq!(reg.peek(999).unwrap_err().kind(), std::io::ErrorKind::NotFound);
        assert!(!reg.root().join("users/999").exists());
    }

    #[test]
    fn stale_and_reused_pids_and_garbage_are_reaped() {
        let (_t, reg) = registry("stale");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = ProcessId::of(child.id()).unwrap_or(ProcessId { pid: child.id(), start_time: 1 });
        child.wait().unwrap();
        let me = ProcessId::current().unwrap();
        let reused = ProcessId { start_time: me.start_time + 7, ..me };
        let s = reg.lock_user(1234).unwrap();
        s.add(&Record::for_process(1234, "alice", "x", dead)).unwrap();
        s.add(&Record::for_process(1234, "alice", "x", reused)).unwrap();
        let live = s.add(&Record::for_process(1234, "alice", "x", me)).unwrap();
        let dir = reg.root().join("users/1234");
        fs::write(dir.join("torn.json"), "{\"version\":1,\"uid\":12").unwrap();
        fs::write(dir.join("other-user.json"), serde_json::to_vec(&Record::for_process(99, "eve", "x", me)).unwrap())
            .unwrap();
        fs::write(dir.join(".tmp-crashed"), "partial").unwrap();
        let r = s.reap_stale().unwrap();
        assert_eq!((r.reaped.len(), r.unreadable, r.closed), (2, 3, false));
        let left: Vec<String> = r.live.into_iter().map(|e| e.key).collect();
        assert_eq!(left, vec![live]);
        assert!(!dir.join("torn.json").exists() && !dir.join(".tmp-crashed").exists());
    }

    #[test]
    fn explicit_ids_are_unique_and_indexed() {
        let (_t, reg) = registry("ids");
        let s = reg.lock_user(1234).unwrap();
        let key = s.add(&Record::with_id(1234, "alice", "slurm", "slurm-42")).unwrap();
        assert_eq!(key, "id-slurm-42");
        drop(s);
        assert_eq!(reg.uid_of_id("slurm-42").unwrap(), Some(1234));
        let other = reg.lock_user(1235).unwrap();
        let err = other.add(&Record::with_id(1235, "bob", "slurm", "slurm-42")).unwrap_err();
        assert!(matches!(err, RegistryError::DuplicateId { uid: 1234, .. }), "{err}");
        assert!(err.to_string().contains("close --id slurm-42"));
        assert!(matches!(other.add(&Record::with_id(1235, "bob", "x", "../etc")), Err(RegistryError::InvalidId(_))));
        drop(other);
        let s = reg.lock_user(1234).unwrap();
        assert!(s.live().unwrap()[0].record.alive(), "id sessions live until closed");
        assert!(s.remove(&key).unwrap());
        drop(s);
        assert_eq!(reg.uid_of_id("slurm-42").unwrap(), None);
        assert!(matches!(reg.uid_of_id("a/b"), Err(RegistryError::InvalidId(_))));
    }

    #[test]
    fn marker_round_trip() {
        let (_t, reg) = registry("marker");
        let s = reg.lock_user(7).unwrap();
        assert_eq!(s.runtime_dir_marker(), None);
        let c = Created::plain(1, 2);
        s.set_runtime_dir_marker(Some(&c)).unwrap();
        assert_eq!(s.runtime_dir_marker(), Some(c));
        s.set_runtime_dir_marker(None).unwrap();
        assert_eq!(s.runtime_dir_marker(), None);
    }

    #[test]
    fn unsafe_state_dirs_are_refused() {
        let (t, _) = registry("refused");
        let me = nix::unistd::geteuid().as_raw();
        let target = t.0.join("real");
        fs::create_dir(&target).unwrap();
        std::os::unix::fs::symlink(&target, t.0.join("link")).unwrap();
        let err = SessionRegistry::new(&t.0.join("link")).with_trusted_owner(me).lock_user(1).err().unwrap();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&target, fs::Permissions::from_mode(0o777)).unwrap();
        let err = SessionRegistry::new(&target).with_trusted_owner(me).lock_user(1).err().unwrap();
        assert!(err.to_string().contains("writable by others"), "{err}");
        let err = SessionRegistry::new(&target).with_trusted_owner(me + 1).lock_user(1).err().unwrap();
        assert!(err.to_string().contains("owned by uid"), "{err}");
    }

    #[test]
    fn state_dir_below_a_writable_dir_is_refused() {
        let (t, _) = registry("below");
        use std::os::unix::fs::PermissionsExt;
        let me = nix::unistd::geteuid().as_raw();
        let open = t.0.join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let err = SessionRegistry::new(&open.join("state")).with_trusted_owner(me).lock_user(1).err().unwrap();
        let msg = err.to_string();
        assert!(msg.contains(&format!("{} is writable by group or others", open.display())), "{msg}");
        assert!(!open.join("state").exists(), "nothing created below it");
        fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
        SessionRegistry::new(&open.join("state")).with_trusted_owner(me).lock_user(1).unwrap();
    }

    #[test]
    fn files_and_dirs_get_exact_modes() {
        let (_t, reg) = registry("modes");
        let me = ProcessId::current().unwrap();
        let s = reg.lock_user(55).unwrap();
        let key = s.add(&Record::for_process(55, "u", "x", me)).unwrap();
        s.add(&Record::with_id(55, "u", "x", "job-1")).unwrap();
        s.set_runtime_dir_marker(Some(&Created::plain(1, 2))).unwrap();
        let dir = reg.root().join("users/55");
        for f in [format!("{key}.json"), "id-job-1.json".into(), "lock".into(), "runtime-dir".into()] {
            assert_eq!(owner_and_mode(&dir.join(&f)).unwrap().1, 0o600, "{f}");
        }
        assert_eq!(owner_and_mode(&reg.root().join("ids/job-1")).unwrap().1, 0o600);
        for d in ["", "users", "ids", "users/55"] {
            assert_eq!(owner_and_mode(&reg.root().join(d)).unwrap().1, 0o700, "{d}");
        }
        let names: Vec<String> =
            fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name().into_string().unwrap()).collect();
        assert!(!names.iter().any(|n| n.starts_with(".tmp-")), "{names:?}");
    }

    #[test]
    fn try_lock_reports_a_busy_user() {
        let (_t, reg) = registry("busy");
        let held = reg.lock_user(77).unwrap();
        assert!(reg.try_lock_user(77).unwrap().is_none());
        assert!(reg.try_lock_user(78).unwrap().is_some());
        drop(held);
        assert!(reg.try_lock_user(77).unwrap().is_some());
    }

    #[test]
    fn record_parser_takes_only_our_records() {
        let me = ProcessId::current().unwrap();
        let bytes = serde_json::to_vec(&Record::for_process(9, "u", "s", me)).unwrap();
        assert_eq!(Record::parse(&bytes, 9).map(|r| r.uid), Some(9));
        assert_eq!(Record::parse(&bytes, 8), None);
        for junk in [
            &b""[..],
            b"{",
            b"\xff\xfe",
            b"[]",
            b"{\"version\":2,\"uid\":9,\"user\":\"u\",\"service\":\"s\",\"since\":1}",
        ] {
            assert_eq!(Record::parse(junk, 9), None);
        }
    }

    #[test]
    fn ids() {
        assert!(valid_id("slurm-123") && valid_id("a.b_c"));
        for bad in ["", ".hidden", "-x", "a/b", "a b", &"x".repeat(129)] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }
}
