//! What an id session (one opened with `open --id`, not kept by a process)
//! stands for, so that it ends when that thing is gone even if nobody
//! runs `close --id`: a Slurm Epilog that never ran (the job ended while
//! slurmd was down), an admin who forgot.
//!
//! Two kinds, chosen at open:
//! - a cgroup directory (a Slurm job's `job_ID` cgroup, a systemd unit's
//!   cgroup): alive while a process runs in it or below it (a cgroup left
//!   behind empty, e.g. by a slurmstepd killed with the job's processes
//!   ended, is gone). It need not exist yet when the session opens — Slurm
//!   22.05 runs the Prolog before the job's extern step makes the job
//!   cgroup — so until `appear_by` (seconds since the epoch) a missing or
//!   empty cgroup counts as "not started yet"; after that, as "gone". Once
//!   a registry pass (`gc`, `list`, an open or close of the user) has seen
//!   it populated, [`Binding::seen`] turns the grace off (`appear_by` 0): a
//!   cgroup that empties after that is gone at once.
//!   A job id is never running twice at once on a node, so the path alone
//!   names the job; a later job with the same id opens its own session
//!   (see [`crate::session::Sessions::open_id`]).
//! - a process (pid plus start time, so a reused pid is not taken for it):
//!   alive while it runs.
//!
//! An id session bound to nothing is alive until `close --id` or
//! `gc --older-than`.
#![forbid(unsafe_code)]

use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::procfs::ProcessId;

/// Where cgroup hierarchies are mounted; a bound cgroup must lie below.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// What keeps an id session alive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Binding {
    /// Alive while this cgroup directory exists, or, until `appear_by`
    /// (seconds since the epoch), while it has not been made yet.
    Cgroup { path: PathBuf, appear_by: u64 },
    /// Alive while this process runs.
    Process { pid: u32, start_time: u64 },
}

/// Why a binding cannot be made.
#[derive(Debug, PartialEq, Eq)]
pub enum BindError {
    NotACgroup { path: PathBuf, reason: String },
    NoProcess(u32),
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::NotACgroup { path, reason } => write!(
                f,
                "cannot bind the session to cgroup {}: {reason}; give the job's cgroup directory under {CGROUP_ROOT} (e.g. {CGROUP_ROOT}/freezer/slurm/uid_UID/job_ID), or leave --bind-cgroup out",
                path.display()
            ),
            BindError::NoProcess(pid) => write!(
                f,
                "cannot bind the session to process {pid}: no such process runs; give the pid of a process that lives as long as the session (e.g. the job's slurmstepd)"
            ),
        }
    }
}

impl std::error::Error for BindError {}

impl Binding {
    /// Bind to the cgroup directory at `path`: an absolute path below
    /// [`CGROUP_ROOT`] without `..`, a directory if it exists; if it does not
    /// yet, it must appear within `grace` seconds.
    pub fn cgroup(path: &Path, grace: u64) -> Result<Binding, BindError> {
        Binding::cgroup_under(path, Path::new(CGROUP_ROOT), grace)
    }

    /// As [`cgroup`](Self::cgroup) with another root: for tests on temporary roots.
    pub fn cgroup_under(path: &Path, root: &Path, grace: u64) -> Result<Binding, BindError> {
        let bad = |reason: &str| BindError::NotACgroup { path: path.to_path_buf(), reason: reason.to_string() };
        if !path.is_absolute() || path.components().any(|c| matches!(c, Component::ParentDir | Component::CurDir)) {
            return Err(bad("it must be an absolute path without '.' or '..'"));
        }
        if !path.starts_with(root) || path == root {
            return Err(bad(&format!("it is not below {}", root.display())));
        }
        if !std::fs::symlink_metadata(root).is_ok_and(|m| m.is_dir()) {
            return Err(bad(&format!("{} is not there: no cgroups on this host?", root.display())));
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if !m.is_dir() => return Err(bad("it is not a directory")),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(bad(&e.to_string())),
        }
        Ok(Binding::Cgroup { path: path.to_path_buf(), appear_by: crate::registry::now().saturating_add(grace) })
    }

    /// Bind to the running process `pid`.
    pub fn process(pid: u32) -> Result<Binding, BindError> {
        let p = ProcessId::of(pid).filter(ProcessId::alive).ok_or(BindError::NoProcess(pid))?;
        Ok(Binding::Process { pid: p.pid, start_time: p.start_time })
    }

    /// The binding to record instead of this one, if it changed: a cgroup
    /// still in its grace time that now has processes is "seen" (grace off).
    pub fn seen(&self) -> Option<Binding> {
        match self {
            Binding::Cgroup { path, appear_by } if *appear_by != 0 && populated(path, CGROUP_DEPTH) == Some(true) => {
                Some(Binding::Cgroup { path: path.clone(), appear_by: 0 })
            }
            _ => None,
        }
    }

    /// Whether what the session stands for is still there.
    pub fn alive(&self) -> bool {
        match self {
            Binding::Cgroup { path, appear_by } => match populated(path, CGROUP_DEPTH) {
                Some(true) => true,
                Some(false) => crate::registry::now() < *appear_by,
                // Cannot tell (EACCES, EIO): keep it rather than close a running job's session.
                None => true,
            },
            Binding::Process { pid, start_time } => ProcessId { pid: *pid, start_time: *start_time }.alive(),
        }
    }
}

/// How deep below a bound cgroup processes are looked for (Slurm: job_ID/step_N/task_M).
const CGROUP_DEPTH: usize = 3;

/// Whether any process runs in the cgroup at `dir` or below it (down to
/// `depth` levels): `Some(false)` for a missing or empty one, `None` when
/// that cannot be read. cgroup v2's `cgroup.events` says it directly; on v1
/// the `cgroup.procs` files are read.
fn populated(dir: &Path, depth: usize) -> Option<bool> {
    use std::io::ErrorKind::NotFound;
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Some(false),
        Err(e) if e.kind() == NotFound => return Some(false),
        Err(_) => return None,
    }
    if let Ok(events) = std::fs::read_to_string(dir.join("cgroup.events")) {
        return Some(events.lines().any(|l| l.trim() == "populated 1"));
    }
    match std::fs::read_to_string(dir.join("cgroup.procs")) {
        Ok(procs) if !procs.trim().is_empty() => return Some(true),
        Ok(_) => {}
        // Removed under us: the cgroup is going.
        Err(e) if e.kind() == NotFound => return Some(false),
        Err(_) => return None,
    }
    if depth == 0 {
        return Some(false);
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == NotFound => return Some(false),
        Err(_) => return None,
    };
    let mut unknown = false;
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            match populated(&entry.path(), depth - 1) {
                Some(true) => return Some(true),
                Some(false) => {}
                None => unknown = true,
            }
        }
    }
    if unknown { None } else { Some(false) }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Binding::Cgroup { path, .. } => write!(f, "cgroup {}", path.display()),
            Binding::Process { pid, .. } => write!(f, "process {pid}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_binding_lives_with_its_directory() {
        let root = std::env::temp_dir().join(format!("js-bind-{}", std::process::id()));
        let job = root.join("slurm/uid_1000/job_7");
        let step = job.join("step_extern");
        std::fs::create_dir_all(&step).unwrap();
        // A tempdir stands in for cgroup v1 files: the job's processes are in its steps.
        std::fs::write(job.join("cgroup.procs"), "").unwrap();
        std::fs::write(step.join("cgroup.procs"), "4242\n").unwrap();
        let b = Binding::cgroup_under(&job, &root, 0).unwrap();
        assert!(b.alive(), "a process runs in a step");
        std::fs::write(step.join("cgroup.procs"), "").unwrap();
        assert!(!b.alive(), "left behind empty: gone");
        // In its grace time, empty is "not started yet" until a pass has seen it populated.
        let young = Binding::cgroup_under(&job, &root, 600).unwrap();
        assert!(young.alive() && young.seen().is_none());
        std::fs::write(step.join("cgroup.procs"), "4242\n").unwrap();
        let seen = young.seen().expect("populated now");
        assert!(matches!(seen, Binding::Cgroup { appear_by: 0, .. }) && seen.seen().is_none());
        std::fs::write(step.join("cgroup.procs"), "").unwrap();
        assert!(young.alive() && !seen.alive(), "seen once, empty now: gone");
        std::fs::write(job.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        assert!(b.alive(), "cgroup v2 says populated");
        std::fs::write(job.join("cgroup.events"), "populated 0\nfrozen 0\n").unwrap();
        assert!(!b.alive());
        std::fs::remove_dir_all(&job).unwrap();
        assert!(!b.alive(), "gone with the directory");
        // Not made yet: alive within the grace time, gone after it.
        let later = Binding::cgroup_under(&job, &root, 600).unwrap();
        assert!(later.alive());
        let Binding::Cgroup { path, .. } = later else { panic!() };
        assert!(!Binding::Cgroup { path, appear_by: crate::registry::now() - 1 }.alive());
        for bad in [root.join("slurm/../etc"), PathBuf::from("relative"), root.clone(), PathBuf::from("/etc")] {
            let e = Binding::cgroup_under(&bad, &root, 60).unwrap_err();
            assert!(e.to_string().contains("--bind-cgroup"), "{e}");
        }
        std::fs::write(root.join("file"), "").unwrap();
        let e = Binding::cgroup_under(&root.join("file"), &root, 60).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
        let e = Binding::cgroup_under(&root.join("x/y"), &root.join("x"), 60).unwrap_err();
        assert!(e.to_string().contains("no cgroups on this host"), "{e}");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn process_binding_ends_with_the_process() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let b = Binding::process(child.id()).unwrap();
        assert!(b.alive());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!b.alive());
        assert_eq!(Binding::process(child.id()).unwrap_err(), BindError::NoProcess(child.id()));
        let Binding::Process { pid, start_time } = Binding::process(std::process::id()).unwrap() else { panic!() };
        assert!(!Binding::Process { pid, start_time: start_time + 1 }.alive(), "a reused pid is not the process");
    }

    #[test]
    fn serialized_form() {
        let b = Binding::Cgroup { path: "/sys/fs/cgroup/x".into(), appear_by: 5 };
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(json, r#"{"kind":"cgroup","path":"/sys/fs/cgroup/x","appear_by":5}"#);
        assert_eq!(serde_json::from_str::<Binding>(&json).unwrap(), b);
    }
}
