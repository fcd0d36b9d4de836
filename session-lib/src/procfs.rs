//! Facts about processes, read from /proc: a process's identity (pid plus
//! start time, so a reused pid is not mistaken for a live one), thread
//! counts, who runs what.
#![forbid(unsafe_code)]

use std::fs;
use std::path::Path;

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
    // or a kernel thread. Kernel threads (most of them on a typical host)
    // have no executable, and that costs far less to learn than rendering
    // their status.
    if owner == 0
        && let Err(e) = fs::read_link(proc_dir.join("exe"))
        && e.kind() == std::io::ErrorKind::NotFound
    {
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
    fn finds_own_processes() {
        let uid = nix::unistd::geteuid().as_raw();
        assert!(processes_of_uid(uid).contains(&std::process::id()));
        assert!(thread_count().unwrap() >= 1);
    }
}
