//! podman.info (deep): ask podman itself, with a time limit.
#![forbid(unsafe_code)]

use std::path::Path;

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
    let mut cmd = ctx.command(&podman);
    cmd.args(["info", "--format", "json"]);
    let ran = match run_with_timeout(&mut cmd, ctx.podman_timeout) {
        Ok(r) => r,
        Err(e) => {
            return Verdict::new(Status::Fail, format!("cannot run {}: {e}", podman.display()), expected, evidence);
        }
    };
    let Some(status) = ran.status else {
        return Verdict::new(Status::Fail, format!("no answer within {:?}", ctx.podman_timeout), expected, evidence).fix(
            Who::User,
            "podman hangs: look for a stuck pause process (`pkill -u $USER catatonit` ends it) or storage on a slow or network filesystem (storage.fs)",
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
        return Verdict::new(Status::Fail, format!("{status}: {err}{see}"), expected, evidence)
            .fix(Who::User, "fix the checks named above, then `podman system migrate`");
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
        "podman {} in {} ms: rootless={}, {uidmap_lines} uid map lines, runRoot={run_root}",
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
