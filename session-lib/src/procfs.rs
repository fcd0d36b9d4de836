//! Facts about processes, read from /proc: a process's identity (pid plus
//! start time, so a reused pid is not mistaken for a live one), thread
//! counts, who runs what.
#![forbid(unsafe_code)]

use std::fs;
use std::path::{Path, PathBuf};

/// A process, identified so that pid reuse is detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessId {
    pub pid: u32,
    /// Field 22 of /proc/PID/stat: start time in clock ticks since boot.
    pub start_time: u64,
}

impl ProcessId {
    /// The calling process.
    pub fn current() -> Option<ProcessId> {
        ProcessId::of(std::process::id())
    }

    /// The process with this pid, if it runs now.
    pub fn of(pid: u32) -> Option<ProcessId> {
        let mut buf = [0u8; 1024];
        let stat = read_small(Path::new(&format!("/proc/{pid}/stat")), &mut buf)?;
        Some(ProcessId { pid, start_time: start_time_from_stat(stat)? })
    }

    /// Whether this very process (not just its pid) still runs. A zombie
    /// counts as gone: it will never close its session.
    pub fn alive(&self) -> bool {
        let mut buf = [0u8; 1024];
        match read_small(Path::new(&format!("/proc/{}/stat", self.pid)), &mut buf) {
            Some(stat) => {
                start_time_from_stat(stat) == Some(self.start_time)
                    && state_from_stat(stat).is_some_and(|s| s != 'Z' && s != 'X')
            }
            None => false,
        }
    }
}

/// Split /proc/PID/stat after the command name, which may itself hold
/// spaces and parentheses: the last ')' ends it.
fn fields_after_comm(stat: &str) -> Option<std::str::SplitWhitespace<'_>> {
    let end = stat.rfind(')')?;
    Some(stat[end + 1..].split_whitespace())
}

fn state_from_stat(stat: &str) -> Option<char> {
    fields_after_comm(stat)?.next()?.chars().next()
}

fn start_time_from_stat(stat: &str) -> Option<u64> {
    // Field 3 is the state; field 22 is starttime: index 19 after the state.
    fields_after_comm(stat)?.nth(19)?.parse().ok()
}

/// `PF_KTHREAD` in the flags of /proc/PID/stat (field 9).
const PF_KTHREAD: u64 = 0x0020_0000;

fn flags_from_stat(stat: &str) -> Option<u64> {
    // Field 9 is the flags: index 6 after the state.
    fields_after_comm(stat)?.nth(6)?.parse().ok()
}

/// Whether the task behind /proc/PID is a kernel thread, from its stat's
/// flags. Not from a readlink of /proc/PID/exe (which fails for kernel
/// threads): that readlink is a ptrace access check, which for another
/// user's non-dumpable process needs CAP_SYS_PTRACE, a denial SELinux
/// audits in every PAM host; stat's check is a silent one.
fn is_kernel_thread(proc_dir: &Path) -> bool {
    let mut buf = [0u8; 1024];
    read_small(&proc_dir.join("stat"), &mut buf).and_then(flags_from_stat).is_some_and(|f| f & PF_KTHREAD != 0)
}

/// Number of threads of the calling process (the `Threads:` line).
pub fn thread_count() -> Option<u32> {
    let mut buf = [0u8; 4096];
    let status = read_small(Path::new("/proc/self/status"), &mut buf)?;
    status.lines().find_map(|l| l.strip_prefix("Threads:"))?.trim().parse().ok()
}

/// Read a small /proc file with one `read` (they are generated whole on
/// the first read): open, read, close, no allocation.
fn read_small<'a>(path: &Path, buf: &'a mut [u8]) -> Option<&'a str> {
    use std::io::Read;
    let n = fs::File::open(path).ok()?.read(buf).ok()?;
    // A full buffer may end inside a multi-byte character: keep what is whole.
    match std::str::from_utf8(&buf[..n]) {
        Ok(s) => Some(s),
        Err(e) => std::str::from_utf8(&buf[..e.valid_up_to()]).ok(),
    }
}

/// Whether the process behind /proc/PID has `uid` as its real, effective,
/// saved or filesystem uid, and is not a zombie.
fn process_has_uid(proc_dir: &Path, uid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/PID belongs to the process's effective uid while it is dumpable,
    // to root otherwise: one stat settles most processes.
    let Ok(meta) = fs::symlink_metadata(proc_dir) else { return false };
    let owner = meta.uid();
    if owner != uid && owner != 0 {
        // Another user's process; its real uid could still be ours only if
        // it switched between two unprivileged uids, which needs privilege.
        return false;
    }
    // Root-owned: root's own process, a non-dumpable process of any user,
    // or a kernel thread (most of them on a typical host): those are told
    // by their stat's flags, cheaper than rendering their status.
    if owner == 0 && is_kernel_thread(proc_dir) {
        return false;
    }
    let mut buf = [0u8; 2048];
    let Some(status) = read_small(&proc_dir.join("status"), &mut buf) else { return false };
    let mut zombie = false;
    for line in status.lines() {
        if let Some(state) = line.strip_prefix("State:") {
            zombie = state.trim_start().starts_with('Z');
        } else if let Some(ids) = line.strip_prefix("Uid:") {
            return !zombie && ids.split_whitespace().any(|id| id.parse() == Ok(uid));
        }
    }
    false
}

/// Pids of processes whose real, effective, saved or filesystem uid is
/// `uid`, other than zombies; at most `limit` of them. O(processes).
pub fn processes_of_uid_up_to(uid: u32, limit: usize) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if process_has_uid(&entry.path(), uid) {
            pids.push(pid);
            if pids.len() >= limit {
                break;
            }
        }
    }
    pids
}

/// Every process of `uid` (see [`processes_of_uid_up_to`]).
pub fn processes_of_uid(uid: u32) -> Vec<u32> {
    processes_of_uid_up_to(uid, usize::MAX)
}

/// What the liveness decision needs to know about one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    pub real_uid: u32,
    pub effective_uid: u32,
    pub saved_uid: u32,
    pub zombie: bool,
    /// Field 22 of /proc/PID/stat (clock ticks since boot).
    pub start_time: u64,
    /// The file name of /proc/PID/exe (None for kernel threads, or when it
    /// cannot be read).
    pub exe_name: Option<String>,
    /// Whether it runs in a user namespace other than the caller's.
    pub other_user_ns: bool,
}

/// Parse the `State:` and `Uid:` lines of /proc/PID/status: (zombie,
/// real, effective, saved).
fn uids_from_status(status: &str) -> Option<(bool, u32, u32, u32)> {
    let mut zombie = false;
    for line in status.lines() {
        if let Some(state) = line.strip_prefix("State:") {
            zombie = matches!(state.trim_start().chars().next(), Some('Z') | Some('X'));
        } else if let Some(ids) = line.strip_prefix("Uid:") {
            let mut ids = ids.split_whitespace().map(|id| id.parse::<u32>());
            let (Some(Ok(r)), Some(Ok(e)), Some(Ok(s))) = (ids.next(), ids.next(), ids.next()) else { return None };
            return Some((zombie, r, e, s));
        }
    }
    None
}

/// The uids and state of the process behind `proc_dir` (/proc/PID).
fn status_of(proc_dir: &Path) -> Option<(bool, u32, u32, u32)> {
    let mut buf = [0u8; 2048];
    uids_from_status(read_small(&proc_dir.join("status"), &mut buf)?)
}

impl ProcInfo {
    /// Everything about process `pid`, or None if it does not run.
    pub fn of(pid: u32) -> Option<ProcInfo> {
        let dir = PathBuf::from(format!("/proc/{pid}"));
        let (zombie, real_uid, effective_uid, saved_uid) = status_of(&dir)?;
        let mut buf = [0u8; 1024];
        let start_time = start_time_from_stat(read_small(&dir.join("stat"), &mut buf)?)?;
        let exe_name =
            fs::read_link(dir.join("exe")).ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        let other_user_ns = match (fs::read_link(dir.join("ns/user")), fs::read_link("/proc/self/ns/user")) {
            (Ok(theirs), Ok(ours)) => theirs != ours,
            _ => false,
        };
        Some(ProcInfo { pid, real_uid, effective_uid, saved_uid, zombie, start_time, exe_name, other_user_ns })
    }
}

/// Walk /proc once and hand `visit` every process that `wanted` may claim
/// (by real or saved uid), until `visit` returns true. One `fstatat` per
/// entry (the owner of /proc/PID is the process's effective uid while it is
/// dumpable, root otherwise); the status file is read only for entries
/// owned by a wanted uid or by root (kernel threads, which have no
/// executable, are skipped by a failing readlink first). O(processes on the
/// host): only for the cases a cheaper test cannot settle. The `ProcInfo`
/// handed over carries uids and state only (no exe, start time or
/// namespace).
pub fn scan_processes(wanted: &dyn Fn(u32) -> bool, visit: &mut dyn FnMut(&ProcInfo) -> bool) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = fs::read_dir("/proc") else { return };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        // DirEntry::metadata is an fstatat on the directory's fd, no path walk.
        let Ok(meta) = entry.metadata() else { continue };
        let owner = meta.uid();
        if owner != 0 && !wanted(owner) {
            // Another user's process: its real or saved uid could still be
            // a wanted one only if it switched between unprivileged uids,
            // which needs privilege.
            continue;
        }
        let path = entry.path();
        if owner == 0 && is_kernel_thread(&path) {
            continue;
        }
        let Some((zombie, real_uid, effective_uid, saved_uid)) = status_of(&path) else { continue };
        let info = ProcInfo {
            pid,
            real_uid,
            effective_uid,
            saved_uid,
            zombie,
            start_time: 0,
            exe_name: None,
            other_user_ns: false,
        };
        if visit(&info) {
            return;
        }
    }
}

/// Boot time in seconds since the epoch (`btime` in /proc/stat).
pub fn boot_time() -> Option<u64> {
    fs::read_to_string("/proc/stat").ok()?.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

/// Whether the calling process sees the identity uid mapping (not inside a
/// user namespace that remaps ids).
pub fn identity_user_namespace() -> bool {
    match fs::read_to_string("/proc/self/uid_map") {
        Ok(map) => {
            let fields: Vec<&str> = map.split_whitespace().collect();
            fields == ["0", "0", "4294967295"]
        }
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_hostile_comm() {
        let stat =
            "1234 (a) b) (c) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 200 18446744073709551615";
        assert_eq!(start_time_from_stat(stat), Some(98765));
        assert_eq!(state_from_stat(stat), Some('S'));
        assert_eq!(flags_from_stat(stat), Some(4194560));
    }

    #[test]
    fn kernel_threads_are_told_by_their_flags() {
        let kthread = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 3 0 0";
        assert_eq!(flags_from_stat(kthread).map(|f| f & PF_KTHREAD != 0), Some(true));
        assert!(!is_kernel_thread(Path::new("/proc/self")));
        // kthreadd is pid 2 where this runs in the host's pid namespace.
        if fs::read_to_string("/proc/2/comm").is_ok_and(|c| c.trim() == "kthreadd") {
            assert!(is_kernel_thread(Path::new("/proc/2")));
        }
    }

    #[test]
    fn current_process_is_alive_and_reuse_is_detected() {
        let me = ProcessId::current().unwrap();
        assert!(me.alive());
        let reused = ProcessId { start_time: me.start_time + 1, ..me };
        assert!(!reused.alive());
    }

    #[test]
    fn dead_child_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        // Until reaped the child is at least a zombie, still in /proc.
        let id = ProcessId::of(child.id()).expect("an unreaped child has a /proc entry");
        child.wait().unwrap();
        assert!(!id.alive());
    }

    #[test]
    fn status_uids_and_zombies() {
        let status = "Name:\tx\nState:\tZ (zombie)\nTgid:\t5\nUid:\t1000\t1001\t1002\t1003\n";
        assert_eq!(uids_from_status(status), Some((true, 1000, 1001, 1002)));
        assert_eq!(uids_from_status("State:\tS (sleeping)\nUid:\t7\t7\t7\t7\n"), Some((false, 7, 7, 7)));
        assert_eq!(uids_from_status("Uid:\t7\n"), None);
    }

    #[test]
    fn process_info_and_scan_find_this_process() {
        let me = ProcInfo::of(std::process::id()).unwrap();
        let uid = nix::unistd::getuid().as_raw();
        assert_eq!((me.real_uid, me.zombie, me.other_user_ns), (uid, false, false));
        assert_eq!(me.start_time, ProcessId::current().unwrap().start_time);
        assert!(me.exe_name.is_some());
        let mut seen = false;
        scan_processes(&|owner| owner == uid, &mut |p| {
            seen |= p.pid == std::process::id();
            seen
        });
        assert!(seen);
        assert!(boot_time().unwrap() > 1_000_000_000);
    }

    #[test]
    fn finds_own_processes() {
        let uid = nix::unistd::geteuid().as_raw();
        assert!(processes_of_uid(uid).contains(&std::process::id()));
        assert!(thread_count().unwrap() >= 1);
    }
}
