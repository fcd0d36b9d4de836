//! id.user, id.gid: who the session runs as.
#![forbid(unsafe_code)]

use super::{Context, Mode, Status, Verdict, Who};

pub(super) fn user(ctx: &Context) -> Verdict {
    let evidence = "geteuid(), getpwuid_r(), $USER, $LOGNAME";
    if ctx.uid == 0 {
        let fix = match ctx.mode {
            Mode::Session => "run the check (and podman) as the user, or as root: `jupyter-session check --user NAME`",
            Mode::ForUser => "rootless podman is for unprivileged users; pick another user",
        };
        return Verdict::new(Status::Fail, "uid 0 (root)", "an unprivileged uid", evidence).fix(Who::User, fix);
    }
    let Some(pw) = &ctx.user else {
        return Verdict::new(
            Status::Fail,
            format!("uid {} has no passwd entry", ctx.uid),
            "a uid that `getent passwd` resolves",
            evidence,
        )
        .fix(
            Who::Admin,
            format!(
                "make uid {} resolvable (local /etc/passwd or a reachable NSS backend such as sssd/LDAP): podman and newuidmap look the user up by name",
                ctx.uid
            ),
        );
    };
    let mut wrong = Vec::new();
    for var in ["USER", "LOGNAME"] {
        match ctx.var(var) {
            Some(v) if v == pw.name => {}
            Some(v) => wrong.push(format!("{var}={v}")),
            None => wrong.push(format!("{var} unset")),
        }
    }
    let expected = format!("USER=LOGNAME={} (uid {})", pw.name, pw.uid);
    if wrong.is_empty() {
        return Verdict::pass(format!("{} (uid {}); USER and LOGNAME match", pw.name, pw.uid), expected, evidence);
    }
    Verdict::new(Status::Fail, format!("{} (uid {}); {}", pw.name, pw.uid, wrong.join(", ")), expected, evidence).fix(
        Who::User,
        format!(
            "podman finds your /etc/subuid line by $USER: `export USER={0} LOGNAME={0}` (a spawner or sudo should set them)",
            pw.name
        ),
    )
}

pub(super) fn gid(ctx: &Context) -> Verdict {
    let evidence = "getegid(), getpwuid_r() pw_gid";
    let Some(pw) = &ctx.user else { return Verdict::skipped("the user does not resolve", evidence) };
    let expected = format!("gid {} ({})", pw.gid, crate::user::group_name(pw.gid));
    let observed = format!("gid {} ({})", ctx.gid, crate::user::group_name(ctx.gid));
    if ctx.gid == pw.gid {
        return Verdict::pass(observed, expected, evidence);
    }
    Verdict::new(Status::Fail, observed, expected, evidence).fix(
        Who::Admin,
        format!(
            "start the session with {}'s primary group (the spawner must setgid({}) and initgroups); otherwise newuidmap refuses with \"Target process is owned by a different user\". A user who ran `newgrp`/`sg` can leave that shell",
            pw.name, pw.gid
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;
    use super::*;

    #[test]
    fn identity_verdicts() {
        let t = Fixture::new("id");
        let ctx = t.healthy();
        assert_eq!(user(&ctx).status, Status::Pass);
        assert_eq!(gid(&ctx).status, Status::Pass);

        let mut wrong = t.healthy();
        wrong.env.insert("USER".into(), "root".into());
        wrong.env.remove("LOGNAME");
        let v = user(&wrong);
        assert_eq!(v.status, Status::Fail);
        assert!(v.observed.contains("USER=root") && v.observed.contains("LOGNAME unset"), "{}", v.observed);
        let fix = v.fix.unwrap();
        assert_eq!(fix.who, Who::User);
        assert!(fix.text.contains(&format!("export USER={}", ctx.user.as_ref().unwrap().name)), "{}", fix.text);

        let mut root = t.healthy();
        root.uid = 0;
        assert_eq!(user(&root).status, Status::Fail);

        let mut other_gid = t.healthy();
        other_gid.gid = ctx.gid + 1;
        let v = gid(&other_gid);
        assert_eq!(v.status, Status::Fail);
        assert_eq!(v.fix.unwrap().who, Who::Admin);

        let mut unknown = t.healthy();
        unknown.user = None;
        assert_eq!(user(&unknown).status, Status::Fail);
    }
}
