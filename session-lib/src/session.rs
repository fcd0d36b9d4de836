//! Opening and closing sessions: the one place that ties the runtime dir,
//! the registry, loginuid and the environment together.
//!
//! [`Sessions`] is used directly by the CLI (`open --id`, `close --id`,
//! `list`, `gc`); [`open_session`] and [`close_session`] are what a PAM
//! module calls, through the small [`PamHost`] trait so that they can be
//! driven by a scripted fake in tests.
#![forbid(unsafe_code)]

use std::fmt;
use std::path::PathBuf;

use crate::binding::Binding;
use crate::config::Config;
use crate::liveness::{self, Liveness};
use crate::logind::Logind;
use crate::loginuid::{self, Loginuid};
use crate::procfs::ProcessId;
use crate::registry::{Closing, Record, RegistryError, SessionRegistry, UserSessions};
use crate::runtime_dir::{Removal, RuntimeDirError, RuntimeDirs};
use crate::session_env::session_env;
use crate::user::{UserError, UserInfo};

/// Severity of a log line (mapped to syslog priorities by the module).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warning,
    Info,
    Debug,
}

/// What the session logic needs from a PAM handle.
pub trait PamHost {
    /// `PAM_USER`.
    fn user(&mut self) -> Result<String, String>;
    /// `PAM_SERVICE`.
    fn service(&self) -> String;
    fn putenv(&mut self, name: &str, value: &str) -> Result<(), String>;
    fn log(&self, level: LogLevel, message: &str);
    /// Keep the registry key from open to close on this handle (`pam_set_data`).
    fn remember_key(&mut self, key: &str);
    fn recalled_key(&self) -> Option<String>;
    /// This handle's session is closed: a later pam_jupyter line of the same
    /// stack must not close it again (an empty key, see [`recalled_key`]).
    fn forget_key(&mut self) {
        self.remember_key("");
    }
}

/// The key of a session this handle opened and has not closed yet.
fn open_key(host: &dyn PamHost) -> Option<String> {
    host.recalled_key().filter(|k| !k.is_empty())
}

/// Who keeps a session open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    Process(ProcessId),
    Id(String),
}

#[derive(Debug)]
pub enum SessionError {
    User(UserError),
    RuntimeDir(RuntimeDirError),
    Registry(RegistryError),
    Loginuid(loginuid::LoginuidError),
    /// The calling process vanished from /proc (should not happen).
    NoProcess,
    /// `ensure` refused the user (not managed, not lingering).
    NotEnsured(String),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::User(e) => e.fmt(f),
            SessionError::RuntimeDir(e) => e.fmt(f),
            SessionError::Registry(e) => e.fmt(f),
            SessionError::Loginuid(e) => e.fmt(f),
            SessionError::NoProcess => f.write_str("cannot read /proc/self/stat; is /proc mounted?"),
            SessionError::NotEnsured(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for SessionError {}

impl From<UserError> for SessionError {
    fn from(e: UserError) -> Self {
        SessionError::User(e)
    }
}
impl From<RuntimeDirError> for SessionError {
    fn from(e: RuntimeDirError) -> Self {
        SessionError::RuntimeDir(e)
    }
}
impl From<RegistryError> for SessionError {
    fn from(e: RegistryError) -> Self {
        SessionError::Registry(e)
    }
}

/// A session that was opened.
#[derive(Debug)]
pub struct Opened {
    pub key: String,
    pub runtime_dir: PathBuf,
    /// The variables the session gets.
    pub env: Vec<(String, String)>,
    /// Log-worthy details (dir created, stale records reaped...).
    pub notes: Vec<String>,
    /// Worth a warning whatever `debug` says (a tmpfs refused: plain dir).
    pub warnings: Vec<String>,
    /// An id session that was already open for this user: opened again
    /// (its binding replaced), not added.
    pub reopened: bool,
}

/// What happened to the runtime dir when a session closed.
#[derive(Debug, PartialEq, Eq)]
pub enum DirFate {
    /// Removed (podman's pause process, when it was all that was left of
    /// the user, was stopped first: its pid).
    Removed {
        stopped_pause: Option<u32>,
    },
    Kept(KeepReason),
}

impl fmt::Display for DirFate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirFate::Removed { stopped_pause: None } => f.write_str("runtime dir removed"),
            DirFate::Removed { stopped_pause: Some(pid) } => write!(
                f,
                "runtime dir removed after stopping podman's pause process (pid {pid}), all that was left of the user"
            ),
            DirFate::Kept(why) => write!(f, "runtime dir kept: {why}"),
        }
    }
}

/// Why a runtime dir stayed after a close.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeepReason {
    OtherSessions {
        uid: u32,
        count: usize,
    },
    RemovalDisabled,
    Lingers(String),
    NotCreatedByUs,
    /// Processes of the user still run (the first few pids).
    ProcessesRun {
        uid: u32,
        pids: Vec<u32>,
    },
    /// Only podman's pause process was left, and stopping it failed.
    PauseNotStopped {
        pid: u32,
        error: String,
    },
    Replaced,
    /// systemd-logind tracks the user (a logind session or linger): the
    /// dir is logind's, which removes it when it lets the user go.
    Logind {
        uid: u32,
    },
    NotEmptied(String),
    Failed(String),
}

impl fmt::Display for KeepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeepReason::OtherSessions { uid, count } => write!(f, "{count} other session(s) of uid {uid} still open"),
            KeepReason::RemovalDisabled => f.write_str("remove_on_last_close = false"),
            KeepReason::Lingers(user) => write!(f, "{user} lingers (linger_users or service_users)"),
            KeepReason::NotCreatedByUs => f.write_str("not created by jupyter-session (logind or an admin made it)"),
            KeepReason::ProcessesRun { uid, pids } => {
                let shown: Vec<String> = pids.iter().map(u32::to_string).collect();
                write!(
                    f,
                    "processes of uid {uid} (or of its subordinate uids) still run (pid {}); it goes at the next close or `jupyter-session gc` after they end",
                    shown.join(", ")
                )
            }
            KeepReason::PauseNotStopped { pid, error } => write!(
                f,
                "only podman's pause process (pid {pid}) was left, but stopping it failed: {error}; `jupyter-session gc` tries again (set stop_pause_process = false to leave it alone)"
            ),
            KeepReason::Replaced => f.write_str("replaced by a directory jupyter-session did not create"),
            KeepReason::Logind { uid } => write!(
                f,
                "systemd-logind manages it (uid {uid} has a logind session or lingers); logind removes it when it lets the user go"
            ),
            KeepReason::NotEmptied(why) => write!(f, "could not be emptied: {why}"),
            KeepReason::Failed(why) => f.write_str(why),
        }
    }
}

/// A session that was closed.
#[derive(Debug)]
pub struct Closed {
    /// False when no record matched (closed twice, or opened elsewhere).
    pub found: bool,
    pub dir: DirFate,
    pub notes: Vec<String>,
}

/// The sessions on this machine under one configuration.
#[derive(Clone, Debug)]
pub struct Sessions {
    pub config: Config,
    pub dirs: RuntimeDirs,
    pub registry: SessionRegistry,
    /// Where to read whether systemd-logind manages a user's runtime dir.
    pub logind: Logind,
}

impl Sessions {
    pub fn new(config: &Config) -> Sessions {
        Sessions {
            config: config.clone(),
            dirs: RuntimeDirs::new(config),
            registry: SessionRegistry::new(&config.state_dir),
            logind: Logind::default(),
        }
    }

    /// Trust `uid` as the owner of the runtime dir parent and the state
    /// dir: for unprivileged tests on temporary roots only.
    pub fn with_trusted_owner(mut self, uid: u32) -> Sessions {
        self.dirs = self.dirs.with_trusted_owner(uid);
        self.registry = self.registry.with_trusted_owner(uid);
        self
    }

    /// Open a session of `user` kept by `holder`: reap stale records,
    /// prepare the runtime dir, register. Nothing is left half-done: if
    /// registering fails, a dir made by this call is removed again.
    pub fn open(&self, user: &UserInfo, service: &str, holder: Holder) -> Result<Opened, SessionError> {
        let record = match &holder {
            Holder::Process(p) => Record::for_process(user.uid, &user.name, service, *p),
            Holder::Id(id) => Record::with_id(user.uid, &user.name, service, id),
        };
        self.open_record(user, record)
    }

    /// Open the id session `id` of `user`, bound to `binding` (see
    /// [`crate::binding`]). Opening an id that is open for the same user
    /// again is no error: the record stays (with the new binding). An id
    /// another user holds is refused, unless that session is stale (what
    /// it was bound to is gone, e.g. a Slurm job id reused after a job whose
    /// Epilog never ran): then it is reaped first.
    pub fn open_id(
        &self,
        user: &UserInfo,
        service: &str,
        id: &str,
        binding: Option<Binding>,
    ) -> Result<Opened, SessionError> {
        if !crate::registry::valid_id(id) {
            return Err(RegistryError::InvalidId(id.to_string()).into());
        }
        let mut notes = Vec::new();
        if let Some(other) = self.registry.uid_of_id(id)?
            && other != user.uid
        {
            // Never two users' locks at once: this one is dropped before ours is taken.
            let theirs = self.registry.lock_user(other)?;
            let pass = theirs.reap_stale()?;
            if !pass.reaped.is_empty() {
                let name = UserInfo::by_uid(other).map(|u| u.name).unwrap_or_default();
                let fate = self.settle(&theirs, pass.live.len(), &name);
                notes.push(format!(
                    "reaped the stale session {id} of uid {other} (what it was bound to is gone); {fate}"
                ));
            }
        }
        let record = Record::with_id(user.uid, &user.name, service, id).bound_to(binding);
        let mut opened = self.open_record(user, record)?;
        notes.append(&mut opened.notes);
        opened.notes = notes;
        Ok(opened)
    }

    fn open_record(&self, user: &UserInfo, record: Record) -> Result<Opened, SessionError> {
        let sessions = self.registry.lock_user(user.uid)?;
        let mut notes = Vec::new();
        let reaped = sessions.reap_stale()?;
        if !reaped.reaped.is_empty() || reaped.unreadable > 0 {
            notes.push(format!(
                "reaped {} stale session record(s) and {} unreadable file(s) of uid {}",
                reaped.reaped.len(),
                reaped.unreadable,
                user.uid
            ));
        }
        // A runtime dir left by an open killed while making it: settle it
        // like any other of ours (removed when nobody needs it).
        if self.adopt_pending_dir(&sessions) && reaped.live.is_empty() {
            let _ = self.settle(&sessions, 0, &user.name);
        }
        let prepared = self.prepare_recorded_dir(&sessions, user)?;
        notes.extend(prepared.notes.iter().cloned());
        if prepared.created.is_some() {
            notes.push(format!("created {}", prepared.path.display()));
        }
        let (added, reopened) = match sessions.reopen_id(&record) {
            Ok(Some(key)) => (Ok(key), true),
            Ok(None) => (sessions.add(&record), false),
            Err(e) => (Err(e), false),
        };
        let key = match added {
            Ok(key) => key,
            Err(e) => {
                if prepared.created.is_some() {
                    drop(prepared.fd);
                    self.settle(&sessions, reaped.live.len(), &user.name);
                }
                return Err(e.into());
            }
        };
        let env = session_env(&self.config, Some(&prepared.path));
        Ok(Opened { key, runtime_dir: prepared.path, env, notes, warnings: prepared.warnings, reopened })
    }

    /// Close the session kept by `process` (`key` if the handle remembers
    /// it, else the oldest of that process) and settle the runtime dir.
    pub fn close_process(
        &self,
        user: &UserInfo,
        process: ProcessId,
        key: Option<&str>,
    ) -> Result<Closed, SessionError> {
        let sessions = self.registry.lock_user(user.uid)?;
        let mut notes = Vec::new();
        let pass = sessions.close_and_reap(Some(Closing { process, preferred: key }))?;
        if !pass.reaped.is_empty() {
            notes.push(format!("reaped {} stale session record(s) of uid {}", pass.reaped.len(), user.uid));
        }
        let dir = self.settle(&sessions, pass.live.len(), &user.name);
        Ok(Closed { found: pass.closed, dir, notes })
    }

    /// Close the session with explicit `id`. An unknown id is an error and
    /// changes nothing.
    pub fn close_id(&self, id: &str) -> Result<(Record, Closed), SessionError> {
        let uid = self.registry.uid_of_id(id)?.ok_or_else(|| RegistryError::UnknownId(id.to_string()))?;
        let sessions = self.registry.lock_user(uid)?;
        let key = format!("id-{id}");
        let (entries, _) = sessions.scan()?;
        let Some(entry) = entries.into_iter().find(|e| e.key == key) else {
            // An index entry without a record (crash between the two): drop it.
            sessions.remove(&key)?;
            return Err(RegistryError::UnknownId(id.to_string()).into());
        };
        sessions.remove(&key)?;
        let live = sessions.reap_stale()?.live.len();
        let dir = self.settle(&sessions, live, &entry.record.user);
        Ok((entry.record, Closed { found: true, dir, notes: Vec::new() }))
    }

    /// Every live session, after reaping stale ones.
    pub fn list(&self) -> Result<Vec<Record>, SessionError> {
        let mut all = Vec::new();
        for uid in self.registry.uids()? {
            let sessions = self.registry.lock_user(uid)?;
            all.extend(sessions.reap_stale()?.live.into_iter().map(|e| e.record));
        }
        Ok(all)
    }

    /// Reap stale records of every user (or of `scope`'s), close id
    /// sessions older than `older_than` seconds (never those of lingering
    /// or service users: reported in `kept_lingering`), and remove runtime
    /// dirs nobody needs any more. Never waits for a user's lock: a user
    /// whose open or close is under way (or stuck) is skipped and reported
    /// in `busy`.
    pub fn gc(&self, older_than: Option<u64>, scope: &GcScope) -> Result<GcReport, SessionError> {
        let mut report = GcReport::default();
        let uids = self.registry.uids()?.into_iter().filter(|uid| scope.uid.is_none_or(|only| only == *uid));
        for uid in uids {
            if let Some(prefix) = &scope.id_prefix {
                // Only users with an id session of that prefix are touched.
                let has = self.registry.peek(uid).is_ok_and(|records| {
                    records.iter().any(|r| r.id.as_deref().is_some_and(|id| id.starts_with(prefix.as_str())))
                });
                if !has {
                    continue;
                }
            }
            let Some(sessions) = self.registry.try_lock_user(uid)? else {
                report.busy.push(uid);
                continue;
            };
            self.gc_locked(&sessions, older_than, scope, &mut report)?;
        }
        Ok(report)
    }

    /// [`Sessions::gc`] of one user, waiting for their lock: the privileged
    /// step at the end of a unit whose PAM close ran unprivileged (systemd's
    /// `(sd-pam)`), `ExecStopPost=+jupyter-session gc --user NAME`, and an
    /// admin settling one account.
    pub fn gc_user(&self, user: &UserInfo, older_than: Option<u64>, scope: &GcScope) -> Result<GcReport, SessionError> {
        let mut report = GcReport::default();
        let sessions = self.registry.lock_user(user.uid)?;
        self.gc_locked(&sessions, older_than, scope, &mut report)?;
        Ok(report)
    }

    fn gc_locked(
        &self,
        sessions: &UserSessions,
        older_than: Option<u64>,
        scope: &GcScope,
        report: &mut GcReport,
    ) -> Result<(), SessionError> {
        let uid = sessions.uid();
        let now = crate::registry::now();
        let pass = sessions.reap_stale()?;
        report.reaped.extend(pass.reaped);
        report.unreadable += pass.unreadable;
        let mut live = 0;
        for entry in pass.live {
            let in_scope = match (&scope.id_prefix, entry.record.id.as_deref()) {
                (Some(prefix), Some(id)) => id.starts_with(prefix.as_str()),
                (Some(_), None) => false,
                (None, id) => id.is_some(),
            };
            let old = older_than.is_some_and(|age| now.saturating_sub(entry.record.since) >= age);
            if in_scope && old && self.config.lingers(&entry.record.user) {
                report.kept_lingering.push(entry.record);
                live += 1;
            } else if in_scope && old {
                sessions.remove(&entry.key)?;
                report.expired.push(entry.record);
            } else {
                live += 1;
            }
        }
        if sessions.runtime_dir_marker().is_some() || sessions.runtime_dir_pending() {
            let name = UserInfo::by_uid(uid).map(|u| u.name).unwrap_or_default();
            match self.settle(sessions, live, &name) {
                DirFate::Removed { stopped_pause } => {
                    report.removed_dirs.push(self.dirs.path_for(uid));
                    report.stopped_pause.extend(stopped_pause);
                }
                DirFate::Kept(why) => report.kept_dirs.push((self.dirs.path_for(uid), why)),
            }
        }
        Ok(())
    }

    /// Make the runtime dir of a lingering or service user without a
    /// session (what logind does at boot for lingering users): idempotent,
    /// recorded as ours (so that it goes by the usual rules once the user
    /// no longer lingers). Refuses users that are not managed or do not
    /// linger.
    pub fn ensure(&self, user: &UserInfo) -> Result<Ensured, SessionError> {
        if let Err(why) = self.config.manages(user) {
            return Err(SessionError::NotEnsured(format!(
                "{} (uid {}) {why}: no runtime dir is managed for it (a service account goes on service_users)",
                user.name, user.uid
            )));
        }
        if !self.config.lingers(&user.name) {
            return Err(SessionError::NotEnsured(format!(
                "{} is neither on linger_users nor on service_users: its runtime dir comes with its sessions, \
                 `ensure` only makes those of lingering and service users",
                user.name
            )));
        }
        let sessions = self.registry.lock_user(user.uid)?;
        self.adopt_pending_dir(&sessions);
        let prepared = self.prepare_recorded_dir(&sessions, user)?;
        Ok(Ensured { path: prepared.path, created: prepared.created.is_some(), warnings: prepared.warnings })
    }

    /// Make sure `user`'s runtime dir is there, recording a dir this call
    /// creates as ours. A "pending" marker goes down before the mkdir, so a
    /// SIGKILL between mkdir and recording the new dir cannot leave a dir
    /// nobody knows is ours; a dir that cannot be recorded is removed again.
    fn prepare_recorded_dir(
        &self,
        sessions: &UserSessions,
        user: &UserInfo,
    ) -> Result<crate::runtime_dir::Prepared, SessionError> {
        let absent = std::fs::symlink_metadata(self.dirs.path_for(user.uid))
            .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
        if absent {
            sessions.mark_runtime_dir_pending()?;
        }
        let prepared = match self.dirs.ensure(user.uid, user.gid) {
            Ok(p) => p,
            Err(e) => {
                if absent {
                    let _ = sessions.set_runtime_dir_marker(None);
                }
                return Err(e.into());
            }
        };
        match &prepared.created {
            None if absent => {
                let _ = sessions.set_runtime_dir_marker(None);
            }
            None => {}
            Some(created) => {
                if let Err(e) = sessions.set_runtime_dir_marker(Some(created)) {
                    let _ = self.dirs.remove(user.uid, created);
                    return Err(e.into());
                }
            }
        }
        Ok(prepared)
    }

    /// A "pending" marker (an open killed while making the runtime dir)
    /// becomes the marker of the dir now there, or goes if there is none.
    /// True if there was one.
    fn adopt_pending_dir(&self, sessions: &UserSessions) -> bool {
        use std::os::unix::fs::MetadataExt;
        if !sessions.runtime_dir_pending() {
            return false;
        }
        let path = self.dirs.path_for(sessions.uid());
        let parent_dev = path.parent().and_then(|p| std::fs::metadata(p).ok()).map(|m| m.dev());
        let adopted = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => Some(crate::runtime_dir::Created {
                dev: m.dev(),
                ino: m.ino(),
                tmpfs: parent_dev.is_some_and(|d| d != m.dev()),
                // Where a killed open mounted it is not known: removal
                // treats it as a record from before this was kept.
                mount: None,
            }),
            _ => None,
        };
        let _ = sessions.set_runtime_dir_marker(adopted.as_ref());
        true
    }

    /// After a close: remove the runtime dir if the policy says so. `live`
    /// is the number of sessions of the user still open.
    fn settle(&self, sessions: &UserSessions, live: usize, user: &str) -> DirFate {
        self.adopt_pending_dir(sessions);
        let uid = sessions.uid();
        if live > 0 {
            return DirFate::Kept(KeepReason::OtherSessions { uid, count: live });
        }
        if self.logind.manages(uid) {
            // pam_jupyter ran before pam_systemd (or the user logged in
            // through logind since): logind adopted the dir and removes it
            // itself. Ours no more.
            if sessions.runtime_dir_marker().is_some() {
                let _ = sessions.set_runtime_dir_marker(None);
            }
            return DirFate::Kept(KeepReason::Logind { uid });
        }
        if !self.config.remove_on_last_close {
            return DirFate::Kept(KeepReason::RemovalDisabled);
        }
        if !user.is_empty() && self.config.lingers(user) {
            return DirFate::Kept(KeepReason::Lingers(user.to_string()));
        }
        let Some(created) = sessions.runtime_dir_marker() else {
            return DirFate::Kept(KeepReason::NotCreatedByUs);
        };
        let mut stopped_pause = None;
        if self.config.keep_while_processes {
            let uids = || {
                let mut set = liveness::UidSet::of_user(uid, user);
                // With `subid: jupyter` shadow asks the provider, not the files.
                let nss = std::path::Path::new("/etc/nsswitch.conf");
                let paths = crate::subid::Paths::default();
                if let Some(r) = crate::subid::provider_uid_ranges(&self.config, nss, &paths, user, &crate::subid::Nss)
                {
                    set.sub = r;
                }
                set
            };
            let hints = liveness::DirHints::read(&self.dirs.path_for(uid), uid);
            match liveness::assess(&liveness::ProcFs, uid, &uids, &hints, self.config.stop_pause_process) {
                Liveness::Unused => {}
                Liveness::Busy(pids) => return DirFate::Kept(KeepReason::ProcessesRun { uid, pids }),
                Liveness::PauseOnly(pause, claim) => {
                    if let Err(error) = liveness::stop_pause_process(pause, uid, &claim, PAUSE_EXIT_WAIT) {
                        return DirFate::Kept(KeepReason::PauseNotStopped { pid: pause.pid, error });
                    }
                    stopped_pause = Some(pause.pid);
                }
            }
        }
        match self.dirs.remove(uid, &created) {
            Ok(Removal::Removed) | Ok(Removal::AlreadyGone) => {
                let _ = sessions.set_runtime_dir_marker(None);
                DirFate::Removed { stopped_pause }
            }
            Ok(Removal::NotOurs) => {
                let _ = sessions.set_runtime_dir_marker(None);
                DirFate::Kept(KeepReason::Replaced)
            }
            Ok(Removal::LeftInPlace(why)) => DirFate::Kept(KeepReason::NotEmptied(why)),
            Err(e) => DirFate::Kept(KeepReason::Failed(e.to_string())),
        }
    }
}

/// How long the last close waits for a stopped pause process to exit.
const PAUSE_EXIT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Which users and sessions [`Sessions::gc`] looks at.
#[derive(Clone, Debug, Default)]
pub struct GcScope {
    /// Only this uid.
    pub uid: Option<u32>,
    /// Only id sessions whose id starts with this (and only users that have one).
    pub id_prefix: Option<String>,
}

/// What [`Sessions::ensure`] did.
#[derive(Debug)]
pub struct Ensured {
    pub path: PathBuf,
    /// False when it was there already.
    pub created: bool,
    pub warnings: Vec<String>,
}

/// What [`Sessions::gc`] did.
#[derive(Debug, Default)]
pub struct GcReport {
    pub reaped: Vec<Record>,
    pub expired: Vec<Record>,
    /// Id sessions older than `--older-than` kept: their user lingers.
    pub kept_lingering: Vec<Record>,
    pub unreadable: usize,
    pub removed_dirs: Vec<PathBuf>,
    pub kept_dirs: Vec<(PathBuf, KeepReason)>,
    /// Pids of podman pause processes stopped so that a dir could go.
    pub stopped_pause: Vec<u32>,
    /// Users whose lock was held by someone else: skipped this time.
    pub busy: Vec<u32>,
}

/// How a PAM open_session ended, mapped to a PAM code by the module.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenOutcome {
    Opened,
    /// Not for us (root, a uid below min_uid): PAM_IGNORE.
    NotApplicable(String),
    /// An earlier pam_jupyter line of the same stack opened this handle's
    /// session already (the module in both /etc/pam.d/jupyterhub and
    /// common-session): PAM_IGNORE, and nothing more is done.
    AlreadyOpen(String),
    UserUnknown(String),
    Refused(String),
}

/// How a PAM close_session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum CloseOutcome {
    Closed,
    NotApplicable(String),
    UserUnknown(String),
    Failed(String),
}

/// Resolve PAM_USER and decide whether the session is ours to manage.
fn applicable_user(host: &mut dyn PamHost, config: &Config) -> Result<UserInfo, (bool, String)> {
    let name = host.user().map_err(|e| (true, format!("cannot get the PAM user: {e}")))?;
    let user = UserInfo::by_name(&name).map_err(|e| {
        let service = if config.is_service_user(&name) {
            format!(" ('{name}' is on service_users: create the account, or remove it from the list)")
        } else {
            String::new()
        };
        (true, format!("{e}{service}"))
    })?;
    match config.manages(&user) {
        Ok(()) => Ok(user),
        Err(why) => Err((false, format!("{} (uid {}) {why}: nothing to do", user.name, user.uid))),
    }
}

/// pam_sm_open_session: prepare the runtime dir, register the session,
/// set loginuid where right, export the environment.
pub fn open_session(host: &mut dyn PamHost, sessions: &Sessions) -> OpenOutcome {
    let config = &sessions.config;
    let user = match applicable_user(host, config) {
        Ok(u) => u,
        Err((true, msg)) => {
            host.log(LogLevel::Error, &msg);
            return OpenOutcome::UserUnknown(msg);
        }
        Err((false, msg)) => {
            if config.debug {
                host.log(LogLevel::Debug, &msg);
            }
            return OpenOutcome::NotApplicable(msg);
        }
    };
    let service = host.service();
    if open_key(host).is_some() {
        let msg = format!(
            "session of {} already opened on this PAM handle by an earlier pam_jupyter line of the {service} stack \
             (the module is listed twice, e.g. also in common-session): nothing more to do",
            user.name
        );
        host.log(LogLevel::Info, &msg);
        return OpenOutcome::AlreadyOpen(msg);
    }
    let Some(me) = ProcessId::current() else {
        let msg = SessionError::NoProcess.to_string();
        host.log(LogLevel::Error, &msg);
        return OpenOutcome::Refused(msg);
    };
    let opened = match sessions.open(&user, &service, Holder::Process(me)) {
        Ok(o) => o,
        Err(e) => {
            let msg = format!("session for {} refused: {e}", user.name);
            host.log(LogLevel::Error, &msg);
            return OpenOutcome::Refused(msg);
        }
    };
    host.remember_key(&opened.key);
    for warning in &opened.warnings {
        host.log(LogLevel::Warning, warning);
    }
    if config.debug {
        for note in &opened.notes {
            host.log(LogLevel::Debug, note);
        }
    }
    let undo = |host: &mut dyn PamHost, msg: String| {
        host.log(LogLevel::Error, &msg);
        let _ = sessions.close_process(&user, me, Some(&opened.key));
        OpenOutcome::Refused(msg)
    };
    match loginuid::apply(config.loginuid, user.uid) {
        Ok(Loginuid::Skipped(why)) if config.debug => host.log(LogLevel::Debug, &format!("loginuid not set: {why}")),
        Ok(_) => {}
        Err(e) => return undo(host, format!("session for {} refused: {e}", user.name)),
    }
    if config.subids == crate::config::SubidMode::Allocate {
        match crate::subid::allocate_for_session(config, &user.name, user.uid) {
            Ok(Some(note)) => host.log(LogLevel::Info, &note),
            Ok(None) => {}
            Err(e) => {
                return undo(
                    host,
                    format!("session for {} refused: subids = \"allocate\" could not give it a range: {e}", user.name),
                );
            }
        }
    }
    for (name, value) in &opened.env {
        if let Err(e) = host.putenv(name, value) {
            return undo(host, format!("session for {} refused: cannot export {name}: {e}", user.name));
        }
    }
    host.log(
        LogLevel::Info,
        &format!(
            "session opened for {} (uid {}), XDG_RUNTIME_DIR={}",
            user.name,
            user.uid,
            opened.runtime_dir.display()
        ),
    );
    OpenOutcome::Opened
}

/// pam_sm_close_session: drop this handle's record and settle the dir.
pub fn close_session(host: &mut dyn PamHost, sessions: &Sessions) -> CloseOutcome {
    close_session_as(host, sessions, nix::unistd::geteuid().as_raw())
}

/// [`close_session`] in a process whose effective uid is `euid` (for tests).
pub fn close_session_as(host: &mut dyn PamHost, sessions: &Sessions, euid: u32) -> CloseOutcome {
    let config = &sessions.config;
    let user = match applicable_user(host, config) {
        Ok(u) => u,
        Err((true, msg)) => {
            host.log(LogLevel::Error, &msg);
            return CloseOutcome::UserUnknown(msg);
        }
        Err((false, msg)) => return CloseOutcome::NotApplicable(msg),
    };
    if !sessions.registry.usable_by(euid) {
        // systemd's `(sd-pam)` drops to the user before pam_close_session:
        // nothing here may touch the registry or the dir, and nothing was
        // done. The record is stale once the session's process (the unit's
        // main process) has exited; the unit's privileged
        // `ExecStopPost=+jupyter-session gc --user NAME` reaps it.
        let msg = format!(
            "close for {} (uid {}) runs without privileges (euid {euid}, as in systemd's (sd-pam)): left to `jupyter-session gc --user {}` as root (ExecStopPost=+ in a systemd unit), which reaps the record once the session's process is gone and settles the runtime dir",
            user.name, user.uid, user.name
        );
        host.log(LogLevel::Info, &msg);
        return CloseOutcome::NotApplicable(msg);
    }
    let Some(me) = ProcessId::current() else {
        return CloseOutcome::Failed(SessionError::NoProcess.to_string());
    };
    let recalled = host.recalled_key();
    if recalled.as_deref() == Some("") {
        let msg = format!(
            "session of {} already closed on this PAM handle by an earlier pam_jupyter line of the stack",
            user.name
        );
        if config.debug {
            host.log(LogLevel::Debug, &msg);
        }
        return CloseOutcome::NotApplicable(msg);
    }
    let key = recalled;
    match sessions.close_process(&user, me, key.as_deref()) {
        Ok(closed) => {
            host.forget_key();
            if config.debug {
                for note in &closed.notes {
                    host.log(LogLevel::Debug, note);
                }
            }
            let level = if matches!(closed.dir, DirFate::Kept(KeepReason::NotEmptied(_))) {
                LogLevel::Warning
            } else {
                LogLevel::Info
            };
            let dir = &closed.dir;
            let found = if closed.found { "" } else { " (no open session was recorded for this process)" };
            host.log(level, &format!("session closed for {} (uid {}){found}; {dir}", user.name, user.uid));
            CloseOutcome::Closed
        }
        Err(e) => {
            let msg = format!("closing the session of {} failed: {e}", user.name);
            host.log(LogLevel::Error, &msg);
            CloseOutcome::Failed(msg)
        }
    }
}
