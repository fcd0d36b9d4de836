//! podman.info (deep): ask podman itself, with a time limit.
#![forbid(unsafe_code)]

use std::path::Path;
use std::time::Duration;

use super::{Context, Status, Verdict, Who, explain, run_with_timeout};

/// The warning lines of podman's stderr (`WARN[0000] ...` or logrus
/// `level=warning msg="..."`).
fn warnings(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("WARN") || l.contains("level=warning")).map(str::trim).collect()
}

pub(super) fn info(ctx: &Context) -> Verdict {
    let evidence = "`podman info --format json` as the user";
    let expected = "podman answers in time: rootless, at least 2 uid map lines, runRoot under XDG_RUNTIME_DIR";
    let Some(podman) = ctx.which("podman") else { return Verdict::skipped("podman not in PATH", evidence) };
    // As root: podman in its own session, killed with us, with only the
    // environment of the checked session (command_with clears the rest).
    let as_root = nix::unistd::geteuid().is_root();
    let setup = crate::ffi::check::ChildSetup { new_session: as_root, die_with_parent: as_root };
    let mut cmd = ctx.command_with(&podman, setup);
    cmd.args(["info", "--format", "json"]);
    let pause_before = live_pause_process(ctx);
    let ran = run_with_timeout(&mut cmd, ctx.podman_timeout);
    // A pause process this run started (none was there before): stop it,
    // as root, so that `check --user` leaves nothing of the user running.
    let stopped = match (as_root && ctx.uid != 0, pause_before, live_pause_process(ctx)) {
        (true, None, Some((pause, claim))) => {
            match crate::liveness::stop_pause_process(pause, ctx.uid, &claim, Duration::from_secs(2)) {
                Ok(()) => format!("; stopped the pause process {} it started", pause.pid),
                Err(e) => format!("; could not stop the pause process it started: {e}"),
            }
        }
        _ => String::new(),
    };
    let ran = match ran {
        Ok(r) => r,
        Err(e) => {
            return Verdict::new(Status::Fail, format!("cannot run {}: {e}", podman.display()), expected, evidence);
        }
    };
    let Some(status) = ran.status else {
        let holders = storage_lock_holders(ctx);
        if !holders.is_empty() {
            return Verdict::new(
                Status::Fail,
                format!("no answer within {:?}: {}{stopped}", ctx.podman_timeout, holders.join("; ")),
                expected,
                evidence,
            )
            .fix(
                Who::User,
                "podman waits for that storage lock: let that process finish, or stop it (`kill PID`; as an admin if it is not yours)",
            );
        }
        return Verdict::new(Status::Fail, format!("no answer within {:?}{stopped}", ctx.podman_timeout), expected, evidence).fix(
            Who::User,
            "podman hangs with no storage lock held by another process: look for storage on a slow or network filesystem (storage.fs), or a stuck pause process (`podman system migrate`)",
        );
    };
    let mut problems = Vec::new();
    let mut related: Vec<&str> = Vec::new();
    for w in warnings(&ran.stderr) {
        let (_, ids) = explain(w);
        for id in &ids {
            if !related.contains(id) {
                related.push(id);
            }
        }
        problems.push(if ids.is_empty() { w.to_string() } else { format!("{w} (see {})", ids.join(", ")) });
    }
    if !status.success() {
        let err = ran.stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        let (_, ids) = explain(&ran.stderr);
        let see = if ids.is_empty() { String::new() } else { format!(" (see {})", ids.join(", ")) };
        let fix = if ids.is_empty() {
            format!(
                "podman's own message above names the cause (`jupyter-session check --explain '{err}'` maps known ones)"
            )
        } else {
            format!(
                "see the fixes of {} in this report (run them without --deep to see them alone), then `podman system migrate`",
                ids.join(", ")
            )
        };
        return Verdict::new(Status::Fail, format!("{status}: {err}{see}{stopped}"), expected, evidence)
            .fix(Who::User, fix);
    }
    let json: serde_json::Value = match serde_json::from_str(&ran.stdout) {
        Ok(v) => v,
        Err(e) => return Verdict::new(Status::Fail, format!("output is not JSON: {e}"), expected, evidence),
    };
    let rootless = json.pointer("/host/security/rootless").and_then(|v| v.as_bool());
    let uidmap_lines = json.pointer("/host/idMappings/uidmap").and_then(|v| v.as_array()).map(Vec::len).unwrap_or(0);
    let run_root = json.pointer("/store/runRoot").and_then(|v| v.as_str()).unwrap_or("");
    let runtime_dir = ctx.var("XDG_RUNTIME_DIR").unwrap_or("");
    let mut fail = Vec::new();
    if rootless != Some(true) {
        fail.push("not rootless".to_string());
    }
    if uidmap_lines < 2 {
        fail.push(format!("{uidmap_lines} uid map line(s): only the user's own uid is mapped (no subuids)"));
        related.push("subid.ranges");
    }
    let observed_base = format!(
        "podman {} in {} ms: rootless={}, {uidmap_lines} uid map lines, runRoot={run_root}{stopped}",
        json.pointer("/version/Version").and_then(|v| v.as_str()).unwrap_or("?"),
        ran.elapsed.as_millis(),
        rootless.map(|r| r.to_string()).unwrap_or_else(|| "?".into())
    );
    if !fail.is_empty() {
        return Verdict::new(Status::Fail, format!("{observed_base}; {}", fail.join("; ")), expected, evidence)
            .fix(Who::User, format!("see {}, then `podman system migrate`", related.join(", ")));
    }
    if runtime_dir.is_empty() || !Path::new(run_root).starts_with(runtime_dir) {
        problems.push(format!("runRoot {run_root} is not under XDG_RUNTIME_DIR={runtime_dir}"));
        related.push("env.runtime_dir.set");
    }
    if problems.is_empty() {
        return Verdict::pass(observed_base, expected, evidence);
    }
    let see = if related.is_empty() { String::new() } else { format!("see {}", related.join(", ")) };
    let v = Verdict::new(Status::Warn, format!("{observed_base}; {}", problems.join("; ")), expected, evidence);
    if see.is_empty() { v } else { v.fix(Who::User, see) }
}

/// Podman's rootless pause process of the checked session, verified as
/// the module verifies it before stopping one (liveness).
fn live_pause_process(ctx: &Context) -> Option<(crate::procfs::ProcessId, crate::liveness::PauseClaim)> {
    crate::liveness::verified_pause_process(&ctx.runtime_dir()?, ctx.uid)
}

/// Processes holding a lock (/proc/locks) on one of podman's storage lock
/// files of this user, as "pid N (comm, uid U) holds FILE".
fn storage_lock_holders(ctx: &Context) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let (graphroot, _) = super::system::graphroot(ctx);
    let mut files = vec![graphroot.join("storage.lock"), graphroot.join("userns.lock")];
    for d in [
        "overlay-layers/layers.lock",
        "overlay-images/images.lock",
        "overlay-containers/containers.lock",
        "vfs-layers/layers.lock",
        "vfs-images/images.lock",
        "vfs-containers/containers.lock",
    ] {
        files.push(graphroot.join(d));
    }
    let inodes: Vec<(u64, std::path::PathBuf)> = files.into_iter().filter_map(|f| fs_ino(&f).map(|i| (i, f))).collect();
    let locks = super::read_text(Path::new("/proc/locks")).unwrap_or_default();
    let mut out = Vec::new();
    for line in locks.lines() {
        // "1: POSIX  ADVISORY  WRITE 1234 08:01:5678 0 EOF" ("->" marks waiters)
        if line.contains("->") {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(pid), Some(dev_ino)) = (f.get(4), f.get(5)) else { continue };
        let Some(ino) = dev_ino.rsplit(':').next().and_then(|i| i.parse::<u64>().ok()) else { continue };
        let Some((_, file)) = inodes.iter().find(|(i, _)| *i == ino) else { continue };
        let comm = super::read_text(Path::new(&format!("/proc/{pid}/comm"))).unwrap_or_default();
        let uid = std::fs::metadata(format!("/proc/{pid}")).map(|m| m.uid().to_string()).unwrap_or_else(|_| "?".into());
        let entry = format!(
            "pid {pid} ({}, uid {uid}) holds {} {}",
            comm.trim(),
            f.get(3).unwrap_or(&"").to_lowercase(),
            file.display()
        );
        if !out.contains(&entry) {
            out.push(entry);
        }
    }
    out
}

fn fs_ino(p: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| m.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warning_lines_are_found_in_both_formats() {
        let err = "WARN[0000] \"/\" is not a shared mount, this could cause issues\n\
                   time=\"2024\" level=warning msg=\"The cgroupv2 manager is set to systemd but there is no systemd user session available\"\n\
                   Error: other";
        let w = warnings(err);
        assert_eq!(w.len(), 2);
        assert_eq!(explain(w[0]).1, ["mount.shared"]);
        assert_eq!(explain(w[1]).1, ["session.bus"]);
    }
}
