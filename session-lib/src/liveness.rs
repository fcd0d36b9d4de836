//! Whether anything of a user still runs that needs their runtime dir, and
//! podman's rootless pause process, which never exits on its own.
//!
//! "A process of the user" is one whose real or saved uid is the user's, or
//! one of the user's subordinate uids (/etc/subuid): a process in a user
//! namespace the user owns runs as one of those (newuidmap maps no others),
//! and rootless containers run as exactly those.
//!
//! Cost, at a last close (see docs/benchmarks.md):
//! - `getpriority(PRIO_USER, uid)` first: O(1) in the kernel when no task
//!   has the uid as its real uid (the usual last close), whatever the number
//!   of processes on the host.
//! - A /proc scan (one `fstatat` per entry, the status file only of the
//!   user's own and root's processes) only when that cannot settle it: the
//!   uid still has tasks (the scan skips zombies and podman's pause process,
//!   and stops at the first few live processes), or the dir holds podman or
//!   buildah state (`libpod`, `containers`) and the user has subordinate
//!   uids, so that a container whose every process runs as a subordinate uid
//!   is found. That trigger is in the user's own dir: a user can defeat it
//!   only for their own containers. A process whose saved uid alone is the
//!   user's (someone else running the user's setuid program) is seen only
//!   when the scan runs.
//!
//! Why not `kill(-1, 0)` from a thread with the user's credentials (whose
//! permission rule is exactly "real or saved uid, or CAP_KILL in the target's
//! user namespace"): Linux's kill_something_info ignores EPERM from every
//! target and returns 0 whenever any process other than the caller and init
//! exists, so the call says nothing about the user (seen on 6.18: 0 for a
//! uid that no process has).
#![forbid(unsafe_code)]

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use nix::fcntl::{AtFlags, OFlag, open, openat};
use nix::sys::stat::{Mode, SFlag, fstat, fstatat};

use crate::procfs::{self, ProcInfo, ProcessId};

/// The user's uid and subordinate uid ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UidSet {
    pub uid: u32,
    /// (start, count) from /etc/subuid.
    pub sub: Vec<(u64, u64)>,
}

impl UidSet {
    /// `uid` and the ranges /etc/subuid gives `name` or `uid`.
    pub fn of_user(uid: u32, name: &str) -> UidSet {
        let text = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
        UidSet::from_subuid(uid, name, &text)
    }

    pub fn from_subuid(uid: u32, name: &str, text: &str) -> UidSet {
        let sub = crate::check::subid::parse(text)
            .into_iter()
            .filter(|r| r.owner == name || r.owner == uid.to_string())
            .map(|r| (r.start, r.count))
            .collect();
        UidSet { uid, sub }
    }

    pub fn contains(&self, id: u32) -> bool {
        let id64 = u64::from(id);
        id == self.uid || self.sub.iter().any(|&(start, count)| start <= id64 && id64 < start.saturating_add(count))
    }
}

/// What podman left in the runtime dir: the pid it wrote to
/// `libpod/tmp/pause.pid` (a file the user can write: a claim to check,
/// never a fact) and when the file was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PauseClaim {
    pub pid: u32,
    /// mtime of pause.pid, seconds since the epoch.
    pub written: i64,
}

/// What the runtime dir tells about container use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirHints {
    pub pause: Option<PauseClaim>,
    /// `libpod` or `containers` exists in the dir (podman, buildah).
    pub container_state: bool,
}

impl DirHints {
    /// Read the hints from `dir` (owned by `uid`) through fds, never
    /// following a symlink and reading nothing but a small regular file
    /// owned by the user.
    pub fn read(dir: &Path, uid: u32) -> DirHints {
        let Ok(top) = open(dir, dir_flags(), Mode::empty()) else { return DirHints::default() };
        let exists = |name: &str| fstatat(&top, name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok();
        let libpod = exists("libpod");
        let container_state = libpod || exists("containers");
        let pause = if libpod { read_pause_pid(&top, uid) } else { None };
        DirHints { pause, container_state }
    }
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

fn read_pause_pid(top: &OwnedFd, uid: u32) -> Option<PauseClaim> {
    let libpod = openat(top, "libpod", dir_flags(), Mode::empty()).ok()?;
    let tmp = openat(&libpod, "tmp", dir_flags(), Mode::empty()).ok()?;
    // O_NONBLOCK: a FIFO planted there must not hang the PAM host.
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
    let fd = openat(&tmp, "pause.pid", flags, Mode::empty()).ok()?;
    let st = fstat(&fd).ok()?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG || st.st_uid != uid {
        return None;
    }
    let mut buf = [0u8; 32];
    let n = std::fs::File::from(fd).read(&mut buf).ok()?;
    let pid = std::str::from_utf8(&buf[..n]).ok()?.trim().parse::<u32>().ok()?;
    (pid > 1).then_some(PauseClaim { pid, written: st.st_mtime })
}

/// The process facts the decision reads; [`ProcFs`] is the real one, tests
/// use a table of their own.
pub trait ProcessTable {
    /// Whether any task has `uid` as its real uid (zombies too); None when
    /// that cannot be told.
    fn any_with_real_uid(&self, uid: u32) -> Option<bool>;
    /// Everything about one process, if it runs.
    fn process(&self, pid: u32) -> Option<ProcInfo>;
    /// Processes that may have a wanted uid, until `visit` returns true.
    fn scan(&self, wanted: &dyn Fn(u32) -> bool, visit: &mut dyn FnMut(&ProcInfo) -> bool);
    /// A start time (clock ticks since boot) in seconds since the epoch.
    fn started_at(&self, start_time: u64) -> Option<i64>;
}

/// The running system.
pub struct ProcFs;

impl ProcessTable for ProcFs {
    fn any_with_real_uid(&self, uid: u32) -> Option<bool> {
        crate::ffi::process::any_task_with_real_uid(uid).ok()
    }
    fn process(&self, pid: u32) -> Option<ProcInfo> {
        ProcInfo::of(pid)
    }
    fn scan(&self, wanted: &dyn Fn(u32) -> bool, visit: &mut dyn FnMut(&ProcInfo) -> bool) {
        procfs::scan_processes(wanted, visit)
    }
    fn started_at(&self, start_time: u64) -> Option<i64> {
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().filter(|&h| h > 0)?;
        let boot = procfs::boot_time()?;
        i64::try_from(boot + start_time / hz as u64).ok()
    }
}

/// The verdict on a user whose last session closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Nothing of the user runs.
    Unused,
    /// Only podman's pause process is left (with `stop_pause_process`), as
    /// pause.pid claimed.
    PauseOnly(ProcessId, PauseClaim),
    /// These processes of the user run (the first few found).
    Busy(Vec<u32>),
}

/// How many live processes the scan looks for before it stops.
const SHOWN: usize = 3;

/// Whether `p` is the podman pause process `claim` names: the user's
/// (every uid), a `catatonit` or `podman` executable, in a user namespace
/// of its own (it is what holds podman's), started no later than pause.pid
/// was written (a process that got the pid later did not write it).
pub fn is_pause_process(table: &dyn ProcessTable, p: &ProcInfo, uid: u32, claim: &PauseClaim) -> bool {
    let exe_ok = matches!(p.exe_name.as_deref(), Some("catatonit") | Some("podman"));
    let uids_ok = p.real_uid == uid && p.effective_uid == uid && p.saved_uid == uid;
    let started_ok = table.started_at(p.start_time).is_some_and(|t| t <= claim.written + 1);
    p.pid == claim.pid && !p.zombie && exe_ok && uids_ok && p.other_user_ns && started_ok
}

/// The pause process that `dir`'s pause.pid names, if it checks out
/// ([`is_pause_process`]), with what [`stop_pause_process`] needs.
pub fn verified_pause_process(dir: &Path, uid: u32) -> Option<(ProcessId, PauseClaim)> {
    let claim = DirHints::read(dir, uid).pause?;
    let table = ProcFs;
    let p = table.process(claim.pid).filter(|p| is_pause_process(&table, p, uid, &claim))?;
    Some((ProcessId { pid: p.pid, start_time: p.start_time }, claim))
}

/// Decide whether anything of user `uid` still runs; `uids` gives the
/// user's uid set (read only when needed: /etc/subuid can be long).
/// `stop_pause` lets a verified pause process alone count as nothing.
pub fn assess(
    table: &dyn ProcessTable,
    uid: u32,
    uids: &dyn Fn() -> UidSet,
    hints: &DirHints,
    stop_pause: bool,
) -> Liveness {
    let real = table.any_with_real_uid(uid);
    if real == Some(false) && !hints.container_state {
        return Liveness::Unused;
    }
    let uids = uids();
    if real == Some(false) && uids.sub.is_empty() {
        return Liveness::Unused;
    }
    let pause = match (stop_pause, hints.pause) {
        (true, Some(claim)) => {
            table.process(claim.pid).filter(|p| is_pause_process(table, p, uids.uid, &claim)).map(|p| (p, claim))
        }
        _ => None,
    };
    let mut busy = Vec::new();
    table.scan(&|owner| uids.contains(owner), &mut |p| {
        let theirs = uids.contains(p.real_uid) || uids.contains(p.saved_uid);
        if theirs && !p.zombie && pause.as_ref().is_none_or(|(q, _)| q.pid != p.pid) {
            busy.push(p.pid);
        }
        busy.len() >= SHOWN
    });
    match pause {
        _ if !busy.is_empty() => Liveness::Busy(busy),
        Some((p, claim)) => Liveness::PauseOnly(ProcessId { pid: p.pid, start_time: p.start_time }, claim),
        None => Liveness::Unused,
    }
}

/// Kill the pause process `target` (checked again through a pidfd, so no
/// other process that got its pid can be hit) and wait up to `wait` for it
/// to exit.
pub fn stop_pause_process(target: ProcessId, uid: u32, claim: &PauseClaim, wait: Duration) -> Result<(), String> {
    use crate::ffi::pidfd;
    let fd = match pidfd::open(target.pid) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(()),
        Err(e) => return Err(format!("pidfd_open({}): {e}", target.pid)),
    };
    // The pidfd pins the process: if what /proc shows now is still the
    // pause process and the pidfd's process is still alive after that read,
    // both are the same process.
    let table = ProcFs;
    let same = table
        .process(target.pid)
        .is_some_and(|p| p.start_time == target.start_time && is_pause_process(&table, &p, uid, claim));
    if pidfd::send_signal(&fd, 0).is_err() {
        return Ok(()); // exited meanwhile: nothing to stop
    }
    if !same {
        return Err(format!("pid {} is no longer the pause process it was a moment ago", target.pid));
    }
    pidfd::send_signal(&fd, libc::SIGKILL).map_err(|e| format!("SIGKILL to pid {}: {e}", target.pid))?;
    // A pidfd polls readable once its process has exited (zombie or reaped).
    let mut fds = [nix::poll::PollFd::new(std::os::fd::AsFd::as_fd(&fd), nix::poll::PollFlags::POLLIN)];
    let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
    match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)) {
        Ok(n) if n > 0 => Ok(()),
        Ok(_) => Err(format!("pid {} did not exit within {} ms of SIGKILL", target.pid, ms)),
        Err(e) => Err(format!("waiting for pid {} to exit: {e}", target.pid)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const U: u32 = 1000;
    const BOOT: i64 = 1_700_000_000;

    /// A process table on paper; start times are seconds after BOOT.
    #[derive(Default)]
    struct Table {
        procs: BTreeMap<u32, ProcInfo>,
        real_uid_answer: Option<Option<bool>>,
        scans: std::cell::Cell<usize>,
    }

    fn proc(pid: u32, uid: u32) -> ProcInfo {
        ProcInfo {
            pid,
            real_uid: uid,
            effective_uid: uid,
            saved_uid: uid,
            zombie: false,
            start_time: 10,
            exe_name: Some("sleep".into()),
            other_user_ns: false,
        }
    }

    fn pause(pid: u32) -> ProcInfo {
        ProcInfo { exe_name: Some("catatonit".into()), other_user_ns: true, ..proc(pid, U) }
    }

    impl Table {
        fn with(procs: Vec<ProcInfo>) -> Table {
            Table { procs: procs.into_iter().map(|p| (p.pid, p)).collect(), ..Table::default() }
        }
    }

    impl ProcessTable for Table {
        fn any_with_real_uid(&self, uid: u32) -> Option<bool> {
            self.real_uid_answer.unwrap_or_else(|| Some(self.procs.values().any(|p| p.real_uid == uid)))
        }
        fn process(&self, pid: u32) -> Option<ProcInfo> {
            self.procs.get(&pid).cloned()
        }
        fn scan(&self, wanted: &dyn Fn(u32) -> bool, visit: &mut dyn FnMut(&ProcInfo) -> bool) {
            self.scans.set(self.scans.get() + 1);
            for p in self.procs.values() {
                if (wanted(p.effective_uid) || p.effective_uid == 0) && visit(p) {
                    return;
                }
            }
        }
        fn started_at(&self, start_time: u64) -> Option<i64> {
            Some(BOOT + start_time as i64)
        }
    }

    fn uids() -> UidSet {
        UidSet::from_subuid(U, "alice", "bob:100000:65536\nalice:165536:65536\n")
    }

    fn claim(pid: u32) -> DirHints {
        DirHints { pause: Some(PauseClaim { pid, written: BOOT + 11 }), container_state: true }
    }

    #[test]
    fn subuid_ranges_are_the_users_own() {
        let u = uids();
        assert!(u.contains(U) && u.contains(165536) && u.contains(231071));
        assert!(!u.contains(100000) && !u.contains(231072) && !u.contains(0));
        assert_eq!(UidSet::from_subuid(U, "alice", "1000:5:1\n").sub, vec![(5, 1)]);
    }

    #[test]
    fn nothing_of_the_user_and_no_containers_needs_no_scan() {
        let t = Table::with(vec![proc(2, 0), proc(3, 2000)]);
        let unread = || -> UidSet { unreachable!("/etc/subuid is not read when the kernel settles it") };
        assert_eq!(assess(&t, U, &unread, &DirHints::default(), true), Liveness::Unused);
        assert_eq!(t.scans.get(), 0, "the O(1) answer settles it");
    }

    #[test]
    fn a_process_with_the_users_real_or_saved_uid_keeps_it() {
        let t = Table::with(vec![proc(2, 0), proc(7, U)]);
        assert_eq!(assess(&t, U, &uids, &DirHints::default(), true), Liveness::Busy(vec![7]));
        // A setuid program of the user run by someone else: saved uid only.
        let odd = ProcInfo { real_uid: 2000, effective_uid: U, saved_uid: U, ..proc(8, U) };
        let t = Table { real_uid_answer: Some(Some(false)), ..Table::with(vec![odd]) };
        let hints = DirHints { container_state: true, ..DirHints::default() };
        assert_eq!(assess(&t, U, &uids, &hints, true), Liveness::Busy(vec![8]));
    }

    #[test]
    fn zombies_do_not_count() {
        let t = Table::with(vec![ProcInfo { zombie: true, ..proc(7, U) }]);
        assert_eq!(assess(&t, U, &uids, &DirHints::default(), true), Liveness::Unused);
    }

    #[test]
    fn a_container_running_as_a_subuid_keeps_it_when_conmon_and_pause_are_gone() {
        // The container's process runs as the user's subuid 165536+1000;
        // no task has the user's own uid any more.
        let t = Table::with(vec![proc(40, 166536), proc(41, 100500)]);
        assert_eq!(assess(&t, U, &uids, &claim(30), true), Liveness::Busy(vec![40]));
        // Another user's subuid does not count.
        let t = Table::with(vec![proc(41, 100500)]);
        assert_eq!(assess(&t, U, &uids, &claim(30), true), Liveness::Unused);
    }

    #[test]
    fn only_the_pause_process_left_is_stoppable_unless_turned_off() {
        let t = Table::with(vec![pause(30), proc(2, 0)]);
        let p = ProcessId { pid: 30, start_time: 10 };
        let hints = claim(30);
        assert_eq!(assess(&t, U, &uids, &hints, true), Liveness::PauseOnly(p, hints.pause.unwrap()));
        assert_eq!(assess(&t, U, &uids, &claim(30), false), Liveness::Busy(vec![30]));
        // Two of them: one is not claimed by pause.pid and keeps the dir.
        let t = Table::with(vec![pause(30), pause(31)]);
        assert_eq!(assess(&t, U, &uids, &claim(30), true), Liveness::Busy(vec![31]));
    }

    #[test]
    fn running_containers_keep_it_besides_the_pause_process() {
        let conmon = ProcInfo { exe_name: Some("conmon".into()), ..proc(31, U) };
        let t = Table::with(vec![pause(30), conmon, proc(32, 165536)]);
        assert_eq!(assess(&t, U, &uids, &claim(30), true), Liveness::Busy(vec![31, 32]));
    }

    #[test]
    fn a_false_pause_claim_stops_nothing() {
        let cases = [
            ProcInfo { exe_name: Some("sleep".into()), ..pause(30) },
            ProcInfo { other_user_ns: false, ..pause(30) },
            ProcInfo { effective_uid: 0, ..pause(30) },
            ProcInfo { real_uid: 2000, effective_uid: 2000, saved_uid: 2000, ..pause(30) },
            // Started after pause.pid was written: a reused pid.
            ProcInfo { start_time: 20, ..pause(30) },
        ];
        for p in cases {
            let own = p.real_uid == U;
            let t = Table::with(vec![p.clone()]);
            let want = if own { Liveness::Busy(vec![30]) } else { Liveness::Unused };
            assert_eq!(assess(&t, U, &uids, &claim(30), true), want, "{p:?}");
        }
        // pause.pid names a pid that is not running.
        let t = Table::with(vec![proc(7, U)]);
        assert_eq!(assess(&t, U, &uids, &claim(30), true), Liveness::Busy(vec![7]));
    }

    #[test]
    fn the_scan_stops_at_the_first_few() {
        let t = Table::with((10..100).map(|pid| proc(pid, U)).collect());
        assert_eq!(assess(&t, U, &uids, &DirHints::default(), true), Liveness::Busy(vec![10, 11, 12]));
    }

    #[test]
    fn unknown_real_uid_answer_falls_back_to_the_scan() {
        let t = Table { real_uid_answer: Some(None), ..Table::with(vec![proc(7, U)]) };
        assert_eq!(assess(&t, U, &uids, &DirHints::default(), true), Liveness::Busy(vec![7]));
    }

    #[test]
    fn pause_pid_is_read_only_from_a_regular_file_of_the_user() {
        let dir = std::env::temp_dir().join(format!("liveness-hints-{}", std::process::id()));
        let tmp = dir.join("libpod/tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let me = nix::unistd::getuid().as_raw();
        assert_eq!(DirHints::read(&dir, me).pause, None);
        assert!(DirHints::read(&dir, me).container_state);
        std::fs::write(tmp.join("pause.pid"), "4242").unwrap();
        let hints = DirHints::read(&dir, me);
        assert_eq!(hints.pause.map(|c| c.pid), Some(4242));
        assert_eq!(DirHints::read(&dir, me + 1).pause, None, "not the user's file");
        std::fs::remove_file(tmp.join("pause.pid")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", tmp.join("pause.pid")).unwrap();
        assert_eq!(DirHints::read(&dir, me).pause, None, "a symlink is not followed");
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(DirHints::read(&dir, me), DirHints::default());
    }
}
