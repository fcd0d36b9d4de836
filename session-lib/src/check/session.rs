//! session.registered, session.managed, session.linger, session.bus.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use super::{Context, Status, Verdict, Who};
use crate::registry::SessionRegistry;

/// Read-only look at the registry (no lock, nothing created): the records
/// of this uid whose keeper still runs.
pub(super) fn registered(ctx: &Context) -> Verdict {
    let registry = SessionRegistry::new(&ctx.config.state_dir);
    let dir = registry.root().join("users").join(ctx.uid.to_string());
    let evidence = format!("{}/*.json, /proc/PID/stat of each keeper", dir.display());
    let expected = "at least one live session record (or a lingering user)".to_string();
    let lingers = ctx.user.as_ref().is_some_and(|pw| ctx.config.lingers(&pw.name));
    let lingering = |what: String| {
        Verdict::pass(
            format!(
                "{what}; the user lingers (linger_users or service_users): its runtime dir is kept without a session, `jupyter-session ensure` makes it"
            ),
            expected.clone(),
            evidence.clone(),
        )
    };
    let records = match registry.peek(ctx.uid) {
        Ok(records) => records,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && lingers => {
            return lingering("no sessions recorded for this uid".into());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Verdict::new(Status::Warn, "no sessions recorded for this uid", expected, evidence).fix(
                Who::Admin,
                "start the user's server through a session (pam_jupyter in the service's PAM stack, or `jupyter-session exec`): without one, nothing keeps the runtime dir and gc may remove it",
            );
        }
        Err(e) => return Verdict::skipped(format!("cannot read {}: {e}", dir.display()), evidence),
    };
    let mut live = Vec::new();
    let mut stale = 0;
    for record in records {
        if record.alive() {
            let holder = match (&record.id, record.pid) {
                (Some(id), _) => format!("id {id}"),
                (None, Some(pid)) => format!("pid {pid}"),
                _ => "?".into(),
            };
            live.push(format!("{} ({holder})", record.service));
        } else {
            stale += 1;
        }
    }
    if live.is_empty() && lingers {
        return lingering(format!("no live session ({stale} stale records)"));
    }
    if live.is_empty() {
        return Verdict::new(Status::Warn, format!("no live session ({stale} stale records)"), expected, evidence).fix(
            Who::Admin,
            "the runtime dir may be removed under running containers: keep the server inside a session (`jupyter-session exec`), or put the user on `linger_users`",
        );
    }
    Verdict::pass(format!("{} live: {}", live.len(), live.join(", ")), expected, evidence)
}

/// Whether the configuration manages the user (min_uid, service_users),
/// whether it lingers, and what `jupyter-session exec --user` would do;
/// service_users names that are not in passwd are reported here.
pub(super) fn managed(ctx: &Context) -> Verdict {
    let Some(pw) = &ctx.user else { return Verdict::skipped("the user does not resolve", "") };
    let c = &ctx.config;
    let evidence = format!(
        "min_uid = {}, service_users = [{}], linger_users = [{}] of the configuration; passwd",
        c.min_uid,
        c.service_users.join(", "),
        c.linger_users.join(", ")
    );
    let expected = "managed, and every service_users name resolves".to_string();
    let unknown: Vec<&str> = c
        .service_users
        .iter()
        .filter(|n| {
            **n != pw.name && matches!(crate::user::UserInfo::by_name(n), Err(crate::user::UserError::Unknown(_)))
        })
        .map(String::as_str)
        .collect();
    let who = format!("{} (uid {})", pw.name, pw.uid);
    let verdict = match c.manages(pw) {
        Err(why) => Verdict::new(
            Status::Warn,
            format!(
                "{who} {why}, not on service_users: not managed; `jupyter-session exec --user {}` refuses it (exit 125) and pam_jupyter ignores its sessions (PAM_IGNORE: no runtime dir)",
                pw.name
            ),
            expected,
            evidence,
        )
        .fix(
            Who::Admin,
            format!("if {} is a service account meant to run containers, add service_users = [\"{}\"] to the config file (pam_jupyter and the keeper must read the same file)", pw.name, pw.name),
        ),
        Ok(()) => {
            let how = if c.is_service_user(&pw.name) {
                format!("on service_users (managed whatever min_uid {}; lingering)", c.min_uid)
            } else if c.lingers(&pw.name) {
                format!("uid >= min_uid {}; on linger_users", c.min_uid)
            } else {
                format!("uid >= min_uid {}", c.min_uid)
            };
            let dir = if c.lingers(&pw.name) {
                "its runtime dir is never removed by a close or gc, its id sessions never expire"
            } else {
                "its runtime dir goes at the last close when nothing of it runs"
            };
            Verdict::pass(
                format!("{who} is managed ({how}): `jupyter-session exec --user {}` opens a session; {dir}", pw.name),
                expected,
                evidence,
            )
        }
    };
    if verdict.status != Status::Pass {
        return verdict;
    }
    let verdict = match podman_service(ctx, pw) {
        Some(Err(stale)) => {
            return Verdict::new(
                Status::Warn,
                format!("{}; but {stale}", verdict.observed),
                "managed, and every service_users name resolves",
                verdict.evidence,
            )
            .fix(
                Who::Admin,
                format!("restart the account's podman API service (`systemctl restart jupyter-session-podman@{}`, or its jupyter-session-podman-loop); see docs/service-accounts.md", pw.name),
            );
        }
        Some(Ok(listening)) => Verdict { observed: format!("{}; {listening}", verdict.observed), ..verdict },
        None => verdict,
    };
    if unknown.is_empty() {
        return verdict;
    }
    Verdict::new(
        Status::Warn,
        format!("{}; but service_users names {} not in passwd", verdict.observed, unknown.join(", ")),
        "managed, and every service_users name resolves",
        verdict.evidence,
    )
    .fix(
        Who::Admin,
        format!(
            "create the account(s) {} or remove them from service_users (check `getent passwd NAME`)",
            unknown.join(", ")
        ),
    )
}

/// A service user's podman API socket (`$XDG_RUNTIME_DIR/podman/podman.sock`):
/// None when there is none, Ok when something accepts on it, Err when
/// nothing does (the service died: SIGKILL leaves the socket file).
fn podman_service(ctx: &Context, pw: &crate::user::UserInfo) -> Option<Result<String, String>> {
    if !ctx.config.is_service_user(&pw.name) {
        return None;
    }
    let socket = ctx.config.runtime_dir_parent.join(pw.uid.to_string()).join("podman/podman.sock");
    std::fs::symlink_metadata(&socket).ok()?;
    Some(match std::os::unix::net::UnixStream::connect(&socket) {
        Ok(_) => Ok(format!("its podman API service listens on {}", socket.display())),
        Err(e) => Err(format!(
            "nothing listens on its podman API socket {} ({e}): the service is not running (it died or was killed); clients get ConnectionRefusedError",
            socket.display()
        )),
    })
}

pub(super) fn linger(ctx: &Context) -> Verdict {
    let Some(pw) = &ctx.user else { return Verdict::skipped("the user does not resolve", "") };
    let systemd = ctx.paths.linger_dir.join(&pw.name);
    let evidence = format!("linger_users and service_users in the config, {}", systemd.display());
    let mut why = Vec::new();
    if ctx.config.is_service_user(&pw.name) {
        why.push("on service_users");
    } else if ctx.config.lingers(&pw.name) {
        why.push("on linger_users");
    }
    if systemd.exists() {
        why.push("systemd linger enabled");
    }
    let observed = if why.is_empty() {
        "not lingering: the runtime dir goes when the last session ends and no process of the user runs".to_string()
    } else {
        format!("lingering ({}): the runtime dir is kept", why.join(", "))
    };
    Verdict::new(Status::Info, observed, "either (information)", evidence)
}

/// A socket path from a D-Bus address (`unix:path=...`), if it has one.
fn bus_socket(address: &str) -> Option<PathBuf> {
    address.split(';').find_map(|a| {
        let params = a.strip_prefix("unix:")?;
        params.split(',').find_map(|p| p.strip_prefix("path=")).map(PathBuf::from)
    })
}

pub(super) fn bus(ctx: &Context) -> Verdict {
    let evidence = "$DBUS_SESSION_BUS_ADDRESS or $XDG_RUNTIME_DIR/bus: lstat, connect";
    let expected = "a session bus podman can reach (for the systemd cgroup manager)";
    let socket = match (ctx.var("DBUS_SESSION_BUS_ADDRESS"), ctx.var("XDG_RUNTIME_DIR")) {
        (Some(addr), _) => match bus_socket(addr) {
            Some(p) => p,
            None => {
                return Verdict::pass(
                    format!("DBUS_SESSION_BUS_ADDRESS={addr} (not a unix path: not probed)"),
                    expected,
                    evidence,
                );
            }
        },
        (None, Some(rt)) => PathBuf::from(rt).join("bus"),
        (None, None) => PathBuf::new(),
    };
    let conf = super::podman_conf::containers_conf(ctx);
    let explicit_systemd = conf.cgroup_manager.as_ref().filter(|s| s.value == "systemd");
    if !ctx.paths.systemd_run.is_dir() && explicit_systemd.is_none() {
        // Nothing to connect to and nothing that needs it: podman picks
        // cgroupfs and the file events logger by itself.
        return Verdict::new(
            Status::Info,
            format!(
                "no systemd on this host ({} missing): podman uses the cgroupfs manager and the file events logger, no session bus needed",
                ctx.paths.systemd_run.display()
            ),
            expected,
            evidence,
        );
    }
    let fallback = "without a session bus podman uses the cgroupfs manager and warns \"The cgroupv2 manager is set to systemd but there is no systemd user session available\": set `cgroup_manager = \"cgroupfs\"` and `events_logger = \"file\"` under [engine] in ~/.config/containers/containers.conf to make that explicit";
    let why = explicit_systemd
        .map(|s| {
            format!(" (cgroup_manager = \"systemd\" in {}: podman warns and falls back to cgroupfs)", s.file.display())
        })
        .unwrap_or_default();
    if socket.as_os_str().is_empty() {
        return Verdict::new(Status::Warn, format!("no bus address and no XDG_RUNTIME_DIR{why}"), expected, evidence)
            .fix(Who::User, fallback);
    }
    match std::os::unix::net::UnixStream::connect(&socket) {
        Ok(_) => Verdict::pass(format!("{} accepts connections", socket.display()), expected, evidence),
        Err(e) => Verdict::new(Status::Warn, format!("{}: {e}{why}", socket.display()), expected, evidence)
            .fix(Who::User, fallback),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;
    use super::*;

    #[test]
    fn bus_address_forms() {
        assert_eq!(bus_socket("unix:path=/run/user/1/bus"), Some(PathBuf::from("/run/user/1/bus")));
        assert_eq!(bus_socket("unix:guid=x,path=/b;tcp:host=h"), Some(PathBuf::from("/b")));
        assert_eq!(bus_socket("unix:abstract=/tmp/x"), None);
    }

    #[test]
    fn bus_and_linger() {
        let t = Fixture::new("bus");
        let ctx = t.healthy();
        // No systemd on the (fixture's) host: nothing needs a bus.
        let v = bus(&ctx);
        assert!(v.status == Status::Info && v.observed.contains("cgroupfs"), "{v:?}");
        // With systemd, or cgroup_manager = "systemd" configured: a warning.
        std::fs::create_dir_all(&ctx.paths.systemd_run).unwrap();
        let v = bus(&ctx);
        assert_eq!(v.status, Status::Warn);
        assert!(v.fix.unwrap().text.contains("cgroup_manager"));
        let _listener = std::os::unix::net::UnixListener::bind(t.runtime_dir().join("bus")).unwrap();
        assert_eq!(bus(&ctx).status, Status::Pass, "{:?}", bus(&ctx));

        let v = linger(&ctx);
        assert!(v.status == Status::Info && v.observed.starts_with("not lingering"));
        let mut service = t.healthy();
        service.config.service_users = vec![t.name.clone()];
        assert!(linger(&service).observed.contains("lingering (on service_users"), "service users linger");
        let mut lingering = t.healthy();
        lingering.config.linger_users = vec![t.name.clone()];
        assert!(linger(&lingering).observed.contains("linger_users"));
    }

    #[test]
    fn registry_records() {
        use crate::registry::Record;
        use std::fs;
        let t = Fixture::new("reg");
        let mut ctx = t.healthy();
        ctx.config.state_dir = t.root.join("state");
        assert_eq!(registered(&ctx).status, Status::Warn);
        let dir = ctx.config.state_dir.join("users").join(ctx.uid.to_string());
        fs::create_dir_all(&dir).unwrap();
        let me = crate::procfs::ProcessId::current().unwrap();
        let dead = crate::procfs::ProcessId { start_time: me.start_time + 1, ..me };
        let stale = Record::for_process(ctx.uid, &t.name, "jupyterhub", dead);
        fs::write(dir.join("p1.json"), serde_json::to_vec(&stale).unwrap()).unwrap();
        let v = registered(&ctx);
        assert!(v.status == Status::Warn && v.observed.contains("1 stale"), "{v:?}");
        let live = Record::for_process(ctx.uid, &t.name, "jupyterhub", me);
        fs::write(dir.join("p2.json"), serde_json::to_vec(&live).unwrap()).unwrap();
        let v = registered(&ctx);
        assert!(v.status == Status::Pass && v.observed.contains("jupyterhub"), "{v:?}");
        // A lingering user needs no session: no warning that gc may remove its dir.
        fs::remove_file(dir.join("p2.json")).unwrap();
        assert_eq!(registered(&ctx).status, Status::Warn);
        ctx.config.service_users = vec![t.name.clone()];
        let v = registered(&ctx);
        assert!(v.status == Status::Pass && v.observed.contains("lingers"), "{v:?}");
    }

    #[test]
    fn managed_reports_min_uid_service_users_and_the_keeper() {
        let t = Fixture::new("managed");
        let mut ctx = t.healthy();
        ctx.config.min_uid = ctx.uid + 1;
        let v = managed(&ctx);
        assert_eq!(v.status, Status::Warn, "{v:?}");
        assert!(v.observed.contains("below min_uid") && v.observed.contains("refuses"), "{v:?}");
        assert!(v.fix.as_ref().unwrap().text.contains("service_users"), "{v:?}");
        ctx.config.service_users = vec![t.name.clone()];
        let v = managed(&ctx);
        assert!(v.status == Status::Pass && v.observed.contains("on service_users"), "{v:?}");
        assert!(v.observed.contains("opens a session") && v.evidence.contains("min_uid ="), "{v:?}");
        // A podman API socket nobody listens on (a SIGKILLed service), then a live one.
        let podman = ctx.config.runtime_dir_parent.join(ctx.uid.to_string()).join("podman");
        std::fs::create_dir_all(&podman).unwrap();
        drop(std::os::unix::net::UnixListener::bind(podman.join("podman.sock")).unwrap());
        let v = managed(&ctx);
        assert!(v.status == Status::Warn && v.observed.contains("nothing listens"), "{v:?}");
        assert!(v.fix.as_ref().unwrap().text.contains("restart"), "{v:?}");
        std::fs::remove_file(podman.join("podman.sock")).unwrap();
        let _live = std::os::unix::net::UnixListener::bind(podman.join("podman.sock")).unwrap();
        let v = managed(&ctx);
        assert!(v.status == Status::Pass && v.observed.contains("listens on"), "{v:?}");
        ctx.config.service_users.push("no-such-user-js".into());
        let v = managed(&ctx);
        assert!(v.status == Status::Warn && v.observed.contains("no-such-user-js not in passwd"), "{v:?}");
    }
}
