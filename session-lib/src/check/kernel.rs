//! proc.nnp, proc.capbnd, kernel.userns: what the process and the kernel
//! allow.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use super::{Context, Mode, Status, Verdict, Who, read_text, run_with_timeout, status_field};

fn status_file(ctx: &Context) -> (PathBuf, Option<String>) {
    let path = ctx.paths.proc_self.join("status");
    let text = read_text(&path);
    (path, text)
}

fn inherited_note(ctx: &Context) -> &'static str {
    match ctx.mode {
        Mode::Session => "",
        Mode::ForUser => " (of this root process, which a keeper started from here would pass on)",
    }
}

pub(super) fn nnp(ctx: &Context) -> Verdict {
    let (path, text) = status_file(ctx);
    let evidence = format!("{} NoNewPrivs", path.display());
    match text.as_deref().and_then(|t| status_field(t, "NoNewPrivs")) {
        Some("0") => Verdict::pass(format!("NoNewPrivs: 0{}", inherited_note(ctx)), "NoNewPrivs: 0", evidence),
        Some(v) => Verdict::new(Status::Fail, format!("NoNewPrivs: {v}{}", inherited_note(ctx)), "NoNewPrivs: 0", evidence)
            .fix(
                Who::Admin,
                "the session was started with no_new_privs, so setuid newuidmap cannot gain privileges: remove NoNewPrivileges=yes (or a seccomp/sandbox option implying it) from the systemd unit or container that starts it, or `--no-new-privs` from its setpriv",
            ),
        None => Verdict::skipped(format!("cannot read {}", path.display()), evidence),
    }
}

const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;
const CAP_SYS_ADMIN: u32 = 21;

pub(super) fn capbnd(ctx: &Context) -> Verdict {
    let (path, text) = status_file(ctx);
    let evidence = format!("{} CapBnd", path.display());
    let expected = "CapBnd includes cap_setuid, cap_setgid, cap_sys_admin";
    let Some(bits) =
        text.as_deref().and_then(|t| status_field(t, "CapBnd")).and_then(|v| u64::from_str_radix(v, 16).ok())
    else {
        return Verdict::skipped(format!("cannot read {}", path.display()), evidence);
    };
    let missing: Vec<&str> = [(CAP_SETUID, "cap_setuid"), (CAP_SETGID, "cap_setgid"), (CAP_SYS_ADMIN, "cap_sys_admin")]
        .iter()
        .filter(|(bit, _)| bits & (1 << bit) == 0)
        .map(|(_, n)| *n)
        .collect();
    if missing.is_empty() {
        return Verdict::pass(format!("CapBnd: {bits:016x}{}", inherited_note(ctx)), expected, evidence);
    }
    Verdict::new(
        Status::Fail,
        format!("CapBnd: {bits:016x}, lacks {}{}", missing.join(", "), inherited_note(ctx)),
        expected,
        evidence,
    )
    .fix(
        Who::Admin,
        format!(
            "newuidmap and the user namespace need {}: remove CapabilityBoundingSet= limits from the unit (or --cap-drop from the container) that starts the session",
            missing.join(", ")
        ),
    )
}

fn read_number(path: &Path) -> Option<i64> {
    read_text(path)?.trim().parse().ok()
}

pub(super) fn userns(ctx: &Context) -> Verdict {
    let sys = &ctx.paths.proc_sys;
    let max = sys.join("user/max_user_namespaces");
    let clone = sys.join("kernel/unprivileged_userns_clone");
    let apparmor = sys.join("kernel/apparmor_restrict_unprivileged_userns");
    let evidence = format!(
        "{}, {}, {}, `unshare --user --map-root-user true` as the user",
        max.display(),
        clone.display(),
        apparmor.display()
    );
    let expected =
        "max_user_namespaces > 0, unprivileged_userns_clone = 1 where it exists, and a user namespace can be created";
    let fail =
        |observed: String, fix: String| Verdict::new(Status::Fail, observed, expected, &evidence).fix(Who::Admin, fix);
    let mut facts = Vec::new();
    match read_number(&max) {
        Some(0) => {
            return fail(
                "user.max_user_namespaces = 0".into(),
                "`sysctl -w user.max_user_namespaces=28633` and set it in /etc/sysctl.d/ to persist".into(),
            );
        }
        Some(n) => facts.push(format!("max_user_namespaces = {n}")),
        None => {
            return fail(
                format!("{} missing: the kernel has no user namespaces", max.display()),
                "use a kernel built with CONFIG_USER_NS=y".into(),
            );
        }
    }
    if let Some(v) = read_number(&clone) {
        if v == 0 {
            return fail(
                "kernel.unprivileged_userns_clone = 0".into(),
                "`sysctl -w kernel.unprivileged_userns_clone=1` and set it in /etc/sysctl.d/ to persist".into(),
            );
        }
        facts.push(format!("unprivileged_userns_clone = {v}"));
    }
    let restricted = read_number(&apparmor) == Some(1);
    if restricted {
        facts.push("apparmor_restrict_unprivileged_userns = 1".into());
    }
    // The real probe, in a child, as the user: never unshare here.
    let unshare = ["/usr/bin/unshare", "/bin/unshare"].iter().map(Path::new).find(|p| p.is_file());
    let Some(unshare) = unshare else {
        return Verdict::new(
            Status::Info,
            format!("{}; probe not run: unshare(1) not found", facts.join(", ")),
            expected,
            evidence,
        );
    };
    let mut cmd = ctx.command(unshare);
    // By absolute path: the probe is of the kernel, not of the PATH.
    let truth = ["/usr/bin/true", "/bin/true"].into_iter().find(|p| Path::new(p).is_file()).unwrap_or("/bin/true");
    cmd.args(["--user", "--map-root-user", truth]);
    match run_with_timeout(&mut cmd, ctx.probe_timeout) {
        Ok(ran) if ran.status.is_some_and(|s| s.success()) => {
            facts.push("unshare --user works".into());
            let v = Verdict::pass(facts.join(", "), expected, evidence);
            if restricted {
                // Creating works, but AppArmor may strip capabilities in it.
                return Verdict { status: Status::Warn, ..v }.fix(
                    Who::Admin,
                    "AppArmor restricts unprivileged user namespaces: make sure podman's AppArmor profile is loaded (`aa-status | grep podman`), or `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`",
                );
            }
            v
        }
        Ok(ran) => {
            let why = match ran.status {
                None => format!("timed out after {:?}", ctx.probe_timeout),
                Some(s) => format!("{s}: {}", ran.stderr.trim()),
            };
            fail(
                format!("{}; unshare --user failed: {why}", facts.join(", ")),
                "unprivileged user namespaces are blocked (a seccomp filter, a container runtime or a security module): allow unshare(CLONE_NEWUSER) for the session — e.g. run the hub without a seccomp profile that blocks it, or `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`".into(),
            )
        }
        Err(e) => Verdict::new(
            Status::Info,
            format!("{}; probe not run: {}: {e}", facts.join(", "), unshare.display()),
            expected,
            evidence,
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::testutil::Fixture;
    use super::*;

    fn fake_proc(t: &Fixture, status: &str) -> Context {
        let dir = t.root.join("proc/self");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("status"), status).unwrap();
        let mut ctx = t.healthy();
        ctx.paths.proc_self = dir;
        ctx
    }

    #[test]
    fn nnp_and_bounding_set() {
        let t = Fixture::new("proc");
        let ctx = fake_proc(&t, "Name:\tx\nCapBnd:\t000001ffffffffff\nNoNewPrivs:\t0\n");
        assert_eq!(nnp(&ctx).status, Status::Pass);
        assert_eq!(capbnd(&ctx).status, Status::Pass);
        let ctx = fake_proc(&t, "CapBnd:\t0000000000000000\nNoNewPrivs:\t1\n");
        let v = nnp(&ctx);
        assert_eq!(v.status, Status::Fail);
        assert!(v.fix.unwrap().text.contains("NoNewPrivileges"));
        let v = capbnd(&ctx);
        assert!(v.status == Status::Fail && v.observed.contains("cap_setuid, cap_setgid, cap_sys_admin"), "{v:?}");
        let ctx = fake_proc(&t, "garbage");
        assert!(matches!(nnp(&ctx).status, Status::Skipped(_)));
    }

    #[test]
    fn userns_sysctls() {
        let t = Fixture::new("userns");
        let sys = t.root.join("sys");
        fs::create_dir_all(sys.join("user")).unwrap();
        fs::create_dir_all(sys.join("kernel")).unwrap();
        let mut ctx = t.healthy();
        ctx.paths.proc_sys = sys.clone();
        fs::write(sys.join("user/max_user_namespaces"), "0\n").unwrap();
        let v = userns(&ctx);
        assert!(v.status == Status::Fail && v.observed.contains("max_user_namespaces = 0"), "{v:?}");
        fs::write(sys.join("user/max_user_namespaces"), "1000\n").unwrap();
        fs::write(sys.join("kernel/unprivileged_userns_clone"), "0\n").unwrap();
        let v = userns(&ctx);
        assert!(v.status == Status::Fail && v.fix.unwrap().text.contains("unprivileged_userns_clone=1"));
    }
}
