//! The session registry: who has which sessions open, kept where users can
//! never write.
//!
//! ```text
//! STATE_DIR/                 root 0700
//!   users/UID/               root 0700, one per user ever seen
//!     lock                   flock(LOCK_EX) serializes open/close for UID
//!     runtime-dir            "dev ino plain|tmpfs": the runtime dir we made
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
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag, open};
use nix::sys::stat::{Mode, fchmod, fstat};
use nix::unistd::mkdir;
use serde::{Deserialize, Serialize};

use crate::procfs::ProcessId;
use crate::runtime_dir::Created;

const RECORD_VERSION: u32 = 1;

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

    /// A process-bound session is alive while its very process runs; an
    /// id session is alive until closed.
    pub fn alive(&self) -> bool {
        match self.process() {
            Some(p) => p.alive(),
            None => self.id.is_some(),
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

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> RegistryError + 'a {
    move |e| RegistryError::Io { path: path.to_path_buf(), op, reason: e.to_string() }
}

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

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Create (0700) or validate a private directory: not a symlink, owned
    /// by the trusted owner, no access for group or others.
    fn private_dir(&self, path: &Path, create: bool) -> Result<(), RegistryError> {
        if create {
            match mkdir(path, Mode::from_bits_truncate(0o700)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => {
                    return Err(RegistryError::Io { path: path.into(), op: "mkdir", reason: e.desc().into() });
                }
            }
        }
        let unsafe_dir = |reason: String| RegistryError::Unsafe { path: path.into(), reason };
        let fd: OwnedFd = match open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            // Linux says ENOTDIR, not ELOOP, for a symlink under O_DIRECTORY.
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                let link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
                return Err(unsafe_dir(if link { "it is a symbolic link" } else { "it is not a directory" }.into()));
            }
            Err(e) => return Err(RegistryError::Io { path: path.into(), op: "open", reason: e.desc().into() }),
        };
        let st =
            fstat(&fd).map_err(|e| RegistryError::Io { path: path.into(), op: "fstat", reason: e.desc().into() })?;
        if st.st_uid != self.trusted_owner {
            return Err(unsafe_dir(format!("it is owned by uid {}", st.st_uid)));
        }
        if st.st_mode & 0o077 != 0 {
            if st.st_mode & 0o022 != 0 {
                return Err(unsafe_dir(format!("it is writable by others (mode {:04o})", st.st_mode & 0o7777)));
            }
            // Readable by others only (a umask at creation): tighten.
            fchmod(&fd, Mode::from_bits_truncate(0o700)).map_err(|e| RegistryError::Io {
                path: path.into(),
                op: "fchmod",
                reason: e.desc().into(),
            })?;
        }
        Ok(())
    }

    fn users_dir(&self) -> PathBuf {
        self.root.join("users")
    }

    fn ids_dir(&self) -> PathBuf {
        self.root.join("ids")
    }

    fn ensure_layout(&self) -> Result<(), RegistryError> {
        self.private_dir(&self.root, true)?;
        self.private_dir(&self.users_dir(), true)?;
        self.private_dir(&self.ids_dir(), true)
    }

    /// Take the lock of `uid` (blocking) and return its sessions.
    pub fn lock_user(&self, uid: u32) -> Result<UserSessions, RegistryError> {
        let dir = self.users_dir().join(uid.to_string());
        // Fast path: the user's directory exists and is private (root 0700,
        // not a link), so nobody else can have put anything in it. Anything
        // else goes through the full check of the layout, which says what is
        // wrong.
        if self.private_dir(&dir, false).is_err() {
            self.ensure_layout()?;
            self.private_dir(&dir, true)?;
        }
        let lock_path = dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&lock_path)
            .map_err(io_err(&lock_path, "open"))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| RegistryError::Io {
            path: lock_path.clone(),
            op: "flock",
            reason: e.desc().into(),
        })?;
        Ok(UserSessions { uid, dir, ids_dir: self.ids_dir(), _lock: lock })
    }

    /// Every uid that has a directory in the registry.
    pub fn uids(&self) -> Result<Vec<u32>, RegistryError> {
        let dir = self.users_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir, "read")(e)),
        };
        let mut uids: Vec<u32> =
            entries.flatten().filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok())).collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// The records of `uid` as they stand, without taking the lock and without
    /// creating, reaping or changing anything: for diagnostics. NotFound when
    /// the user never had a session here.
    pub fn peek(&self, uid: u32) -> std::io::Result<Vec<Record>> {
        let mut records = Vec::new();
        for entry in fs::read_dir(self.users_dir().join(uid.to_string()))?.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".json")
                && let Some(record) = parse_record(&entry.path(), uid)
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
        let path = self.ids_dir().join(id);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(text.trim().parse().ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path, "read")(e)),
        }
    }
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
pub struct UserSessions {
    uid: u32,
    dir: PathBuf,
    ids_dir: PathBuf,
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
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir, "read"))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") {
                // Left by a crash mid-write: we hold the lock, nobody writes now.
                bad.push(name);
                continue;
            }
            let Some(key) = name.strip_suffix(".json") else { continue };
            match parse_record(&entry.path(), self.uid) {
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

    /// Live records (call [`reap_stale`](Self::reap_stale) first to drop the rest).
    pub fn live(&self) -> Result<Vec<Entry>, RegistryError> {
        Ok(self.scan()?.0.into_iter().filter(|e| e.record.alive()).collect())
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
                .find(|k| !self.dir.join(format!("{k}.json")).exists())
                .unwrap_or_default(),
            (None, None) => {
                return Err(RegistryError::Io {
                    path: self.dir.clone(),
                    op: "add record to",
                    reason: "record has neither a process nor an id".into(),
                });
            }
        };
        let written = self.write_record(&key, record);
        if written.is_err()
            && let Some(id) = &record.id
        {
            let _ = fs::remove_file(self.ids_dir.join(id));
        }
        written.map(|()| key)
    }

    fn claim_id(&self, id: &str) -> Result<(), RegistryError> {
        let path = self.ids_dir.join(id);
        match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
            Ok(mut f) => f.write_all(format!("{}\n", self.uid).as_bytes()).map_err(io_err(&path, "write")),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let uid = fs::read_to_string(&path).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(u32::MAX);
                // An index entry left by a crash between claim and record: reclaim it.
                if uid == self.uid && !self.dir.join(format!("id-{id}.json")).exists() {
                    return Ok(());
                }
                Err(RegistryError::DuplicateId { id: id.to_string(), uid })
            }
            Err(e) => Err(io_err(&path, "create")(e)),
        }
    }

    fn write_record(&self, key: &str, record: &Record) -> Result<(), RegistryError> {
        let tmp = self.dir.join(format!(".tmp-{key}"));
        let dest = self.dir.join(format!("{key}.json"));
        let json = serde_json::to_vec(record).map_err(|e| RegistryError::Io {
            path: dest.clone(),
            op: "encode",
            reason: e.to_string(),
        })?;
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(io_err(&tmp, "create"))?;
        f.write_all(&json).map_err(io_err(&tmp, "write"))?;
        drop(f);
        fs::rename(&tmp, &dest).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err(&dest, "rename")(e)
        })
    }

    fn remove_file(&self, name: &str) -> Result<(), RegistryError> {
        let path = self.dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path, "remove")(e)),
        }
    }

    /// Remove a record by key (and its id index entry). False if not there.
    pub fn remove(&self, key: &str) -> Result<bool, RegistryError> {
        let path = self.dir.join(format!("{key}.json"));
        let existed = path.exists();
        self.remove_file(&format!("{key}.json"))?;
        if let Some(id) = key.strip_prefix("id-") {
            let index = self.ids_dir.join(id);
            match fs::remove_file(&index) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&index, "remove")(e)),
            }
        }
        Ok(existed)
    }

    fn marker_path(&self) -> PathBuf {
        self.dir.join("runtime-dir")
    }

    /// The runtime dir we created for this uid, if we did.
    pub fn runtime_dir_marker(&self) -> Option<Created> {
        let bytes = read_record(&self.marker_path())?;
        Created::decode(std::str::from_utf8(&bytes).ok()?)
    }

    /// Record (or, with `None`, forget) the runtime dir we created.
    pub fn set_runtime_dir_marker(&self, created: Option<&Created>) -> Result<(), RegistryError> {
        let path = self.marker_path();
        match created {
            Some(c) => {
                let tmp = self.dir.join(".tmp-runtime-dir");
                fs::write(&tmp, c.encode()).map_err(io_err(&tmp, "write"))?;
                fs::rename(&tmp, &path).map_err(io_err(&path, "rename"))
            }
            None => self.remove_file("runtime-dir"),
        }
    }
}

/// A record of `uid` from a record file, if it is one of ours (readable, this
/// version, this uid).
fn parse_record(path: &Path, uid: u32) -> Option<Record> {
    read_record(path)
        .and_then(|bytes| serde_json::from_slice::<Record>(&bytes).ok())
        .filter(|r| r.uid == uid && r.version == RECORD_VERSION)
}

/// A record file's bytes with one `read` (records are ~150 bytes; anything
/// that does not fit is not a record of ours and fails to parse).
fn read_record(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut buf = vec![0u8; 4096];
    let n = File::open(path).ok()?.read(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn ids() {
        assert!(valid_id("slurm-123") && valid_id("a.b_c"));
        for bad in ["", ".hidden", "-x", "a/b", "a b", &"x".repeat(129)] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }
}
