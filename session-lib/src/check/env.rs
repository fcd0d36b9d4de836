//! env.*: HOME, XDG_RUNTIME_DIR and its directory, config dirs, leaks.
#![forbid(unsafe_code)]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{Context, Status, Verdict, Who};

const W: u32 = 2;
const X: u32 = 1;

fn kind(meta: &fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a regular file"
    } else {
        "a special file"
    }
}

pub(super) fn home(ctx: &Context) -> Verdict {
    let evidence = "$HOME, getpwuid_r() pw_dir, lstat";
    let Some(pw) = &ctx.user else { return Verdict::skipped("the user does not resolve", evidence) };
    let expected = format!("HOME={} (passwd), a directory owned by {} and writable", pw.home.display(), pw.name);
    let fail = |observed: String, who: Who, fix: String| {
        Verdict::new(Status::Fail, observed, &expected, evidence).fix(who, fix)
    };
    let home = match ctx.var("HOME") {
        None | Some("") => {
            return fail("HOME unset".into(), Who::User, format!("`export HOME={}`", pw.home.display()));
        }
        Some(h) if !h.starts_with('/') => {
            return fail(format!("HOME={h} (relative)"), Who::User, format!("`export HOME={}`", pw.home.display()));
        }
        Some(h) => PathBuf::from(h),
    };
    let meta = match fs::metadata(&home) {
        Ok(m) => m,
        Err(e) => {
            return fail(
                format!("HOME={}: {}", home.display(), e),
                Who::Admin,
                format!(
                    "create the home directory: `mkhomedir_helper {0}` or `install -d -o {0} -g {1} -m 0700 {2}`",
                    pw.name,
                    crate::user::group_name(pw.gid),
                    home.display()
                ),
            );
        }
    };
    if !meta.is_dir() {
        return fail(
            format!("HOME={} is {}", home.display(), kind(&meta)),
            Who::Admin,
            format!("make {} the user's home directory", home.display()),
        );
    }
    if meta.uid() != ctx.uid {
        return fail(
            format!("HOME={} is owned by uid {}", home.display(), meta.uid()),
            Who::Admin,
            format!("`chown {}: {}` (podman keeps its storage and config there)", pw.name, home.display()),
        );
    }
    if !ctx.may(&meta, W | X) {
        return fail(
            format!("HOME={} is not writable (mode {:04o})", home.display(), meta.mode() & 0o7777),
            Who::User,
            format!("`chmod u+rwx {}`", home.display()),
        );
    }
    if home != pw.home {
        return Verdict::new(
            Status::Warn,
            format!("HOME={} but the passwd home is {}", home.display(), pw.home.display()),
            &expected,
            evidence,
        )
        .fix(Who::User, format!("`export HOME={}` unless you moved it on purpose", pw.home.display()));
    }
    Verdict::pass(format!("HOME={}, owned and writable", home.display()), expected, evidence)
}

fn expected_runtime_dir(ctx: &Context) -> PathBuf {
    ctx.config.runtime_dir_parent.join(ctx.uid.to_string())
}

pub(super) fn runtime_dir_set(ctx: &Context) -> Verdict {
    let evidence = "$XDG_RUNTIME_DIR";
    let want = expected_runtime_dir(ctx);
    let expected = format!("XDG_RUNTIME_DIR={}", want.display());
    match ctx.var("XDG_RUNTIME_DIR") {
        Some(v) if v.starts_with('/') => Verdict::pass(format!("XDG_RUNTIME_DIR={v}"), expected, evidence),
        other => {
            let observed = match other {
                None | Some("") => "XDG_RUNTIME_DIR unset".to_string(),
                Some(v) => format!("XDG_RUNTIME_DIR={v} (relative)"),
            };
            let fix = if fs::symlink_metadata(&want).is_ok_and(|m| m.is_dir() && m.uid() == ctx.uid) {
                (
                    Who::User,
                    format!(
                        "`export XDG_RUNTIME_DIR={}` (it exists and is yours); for good, have the spawner open a session (below)",
                        want.display()
                    ),
                )
            } else {
                (
                    Who::Admin,
                    "give the service a session: add `session required pam_jupyter.so` to its PAM stack (e.g. /etc/pam.d/jupyterhub) or start the server through `jupyter-session exec --user NAME -- CMD`; without it podman falls back to /tmp/podman-run-UID or fails with `mkdir /run/user/UID: permission denied`".to_string(),
                )
            };
            Verdict::new(Status::Fail, observed, expected, evidence).fix(fix.0, fix.1)
        }
    }
}

pub(super) fn runtime_dir_owner(ctx: &Context) -> Verdict {
    let evidence = "lstat($XDG_RUNTIME_DIR)";
    let dir = PathBuf::from(ctx.var("XDG_RUNTIME_DIR").unwrap_or_default());
    let expected = format!("a directory owned by uid {}, mode 0700", ctx.uid);
    let session_fix = format!(
        "open a real session for {} (pam_jupyter, or `jupyter-session exec`), which creates {} correctly; if the variable leaked through su/sudo, log in as the user instead",
        ctx.who(),
        expected_runtime_dir(ctx).display()
    );
    let fail = |observed: String, who: Who, fix: String| {
        Verdict::new(Status::Fail, observed, &expected, evidence).fix(who, fix)
    };
    let meta = match fs::symlink_metadata(&dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return fail(
                format!("{} does not exist", dir.display()),
                Who::Admin,
                format!("{session_fix}; podman (crun) fails with `create directory {}`", dir.display()),
            );
        }
        Err(e) => return fail(format!("{}: {e}", dir.display()), Who::Admin, session_fix),
    };
    if meta.file_type().is_symlink() {
        let target = fs::read_link(&dir).map(|t| t.display().to_string()).unwrap_or_default();
        return fail(
            format!("{} is a symbolic link to {target}", dir.display()),
            Who::Admin,
            format!("remove the link (`rm {}`), then {session_fix}", dir.display()),
        );
    }
    if !meta.is_dir() {
        return fail(
            format!("{} is {}", dir.display(), kind(&meta)),
            Who::Admin,
            format!("remove it (`rm {}`), then {session_fix}", dir.display()),
        );
    }
    if meta.uid() != ctx.uid {
        let owner = crate::user::UserInfo::by_uid(meta.uid()).map(|u| u.name).unwrap_or_else(|_| "?".into());
        return fail(
            format!("{} is owned by uid {} ({owner})", dir.display(), meta.uid()),
            Who::User,
            format!(
                "XDG_RUNTIME_DIR belongs to another user (leaked from su/sudo?): `export XDG_RUNTIME_DIR={}` if that is yours, else an admin should {session_fix}",
                expected_runtime_dir(ctx).display()
            ),
        );
    }
    let mode = meta.mode() & 0o7777;
    if mode != 0o700 {
        return fail(
            format!("{} has mode {mode:04o}", dir.display()),
            Who::User,
            format!("`chmod 0700 {}` (podman and D-Bus refuse a runtime dir others can enter)", dir.display()),
        );
    }
    Verdict::pass(format!("{}: directory, uid {}, mode 0700", dir.display(), ctx.uid), expected, evidence)
}

pub(super) fn runtime_dir_fs(ctx: &Context) -> Verdict {
    use nix::sys::statfs::{TMPFS_MAGIC, statfs};
    let evidence = "statfs, statvfs, lstat($XDG_RUNTIME_DIR)";
    let dir = PathBuf::from(ctx.var("XDG_RUNTIME_DIR").unwrap_or_default());
    let want = expected_runtime_dir(ctx);
    let expected = format!("{} on tmpfs, writable, with free space and inodes", want.display());
    let mut problems = Vec::new();
    let mut fix = None;
    if dir != want {
        problems.push(format!("path is {}, not {}", dir.display(), want.display()));
        fix = Some((Who::User, format!("`export XDG_RUNTIME_DIR={}`", want.display())));
    }
    let on_tmpfs = statfs(&dir).map(|s| s.filesystem_type() == TMPFS_MAGIC);
    match on_tmpfs {
        Ok(true) => {}
        Ok(false) => {
            problems.push("not on tmpfs (it survives a reboot: podman then reports an unhandled reboot)".into());
            fix.get_or_insert((
                Who::Admin,
                "mount /run (or the per-user dir: `tmpfs = true` in /etc/security/jupyter-session.toml) as tmpfs"
                    .into(),
            ));
        }
        Err(e) => problems.push(format!("statfs failed: {}", e.desc())),
    }
    // With `tmpfs = true` the dir is its own tmpfs (ours or logind's): on
    // the same device as its parent it is a plain dir, the fallback taken
    // when mounting was refused for lack of privilege.
    if ctx.config.tmpfs
        && dir == want
        && let (Ok(meta), Some(Ok(up))) = (fs::metadata(&dir), dir.parent().map(fs::metadata))
        && meta.dev() == up.dev()
    {
        problems.push(format!(
            "a plain directory on {}'s filesystem, not a per-user tmpfs (tmpfs = true: pam_jupyter fell back, see its warning in the auth log); it has no size limit of its own",
            ctx.config.runtime_dir_parent.display()
        ));
        fix.get_or_insert((
            Who::Admin,
            "give the PAM host CAP_SYS_ADMIN (README: Troubleshooting, \"The runtime dir is a plain directory\"), or set `tmpfs = false` to make plain dirs the explicit choice".into(),
        ));
    }
    if let Ok(meta) = fs::metadata(&dir)
        && !ctx.may(&meta, W | X)
    {
        problems.push("not writable".into());
    }
    if let Ok(vfs) = nix::sys::statvfs::statvfs(&dir) {
        let free = vfs.blocks_available() * vfs.fragment_size();
        let inodes = vfs.files_available();
        if free < 1 << 20 || (vfs.files() > 0 && inodes < 100) {
            problems.push(format!("nearly full: {} KiB and {inodes} inodes free", free / 1024));
            fix.get_or_insert((Who::User, format!("remove what you no longer need under {}", dir.display())));
        }
    }
    if problems.is_empty() {
        return Verdict::pass(format!("{}: tmpfs, writable", dir.display()), expected, evidence);
    }
    let v = Verdict::new(Status::Warn, problems.join("; "), expected, evidence);
    match fix {
        Some((who, text)) => v.fix(who, text),
        None => v,
    }
}

/// Where podman keeps config and data: XDG_CONFIG_HOME, XDG_DATA_HOME and
/// their containers/ subdirectories.
pub(super) fn config_dirs(ctx: &Context) -> Verdict {
    let evidence =
        "lstat of $XDG_CONFIG_HOME, $XDG_DATA_HOME (default ~/.config, ~/.local/share) and containers/ in them";
    let home = PathBuf::from(ctx.var("HOME").unwrap_or_default());
    let xdg = |var: &str, default: &str| match ctx.var(var) {
        Some(v) if v.starts_with('/') => PathBuf::from(v),
        _ => home.join(default),
    };
    let mut dirs = Vec::new();
    for base in [xdg("XDG_CONFIG_HOME", ".config"), xdg("XDG_DATA_HOME", ".local/share")] {
        dirs.push(base.join("containers"));
        dirs.push(base);
    }
    dirs.push(home.join(".local"));
    let expected = format!("each, where it exists, owned by uid {}", ctx.uid);
    let mut bad = Vec::new();
    let mut checked = 0;
    for d in &dirs {
        if let Ok(meta) = fs::symlink_metadata(d) {
            checked += 1;
            if meta.uid() != ctx.uid {
                bad.push((d.clone(), meta.uid()));
            }
        }
    }
    if bad.is_empty() {
        return Verdict::pass(format!("{checked} of {} exist, all owned", dirs.len()), expected, evidence);
    }
    let observed = bad.iter().map(|(d, u)| format!("{} owned by uid {u}", d.display())).collect::<Vec<_>>().join("; ");
    let name = ctx.name_or_placeholder();
    let paths = bad.iter().map(|(d, _)| d.display().to_string()).collect::<Vec<_>>().join(" ");
    Verdict::new(Status::Fail, observed, expected, evidence).fix(
        Who::Admin,
        format!("`sudo chown -R {name}: {paths}` (often left by `sudo podman` or a root-run tool with HOME unchanged)"),
    )
}

/// A uid named by a `/run/user/N` prefix in a value.
fn run_user_uid(value: &str, parent: &Path) -> Option<u32> {
    let parent = parent.to_str()?;
    let mut rest = value;
    while let Some(i) = rest.find(parent) {
        let after = &rest[i + parent.len()..];
        if let Some(num) = after.strip_prefix('/') {
            let digits: String = num.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(uid) = digits.parse() {
                return Some(uid);
            }
        }
        rest = after;
    }
    None
}

pub(super) fn leak(ctx: &Context) -> Verdict {
    let evidence = "environment: SUDO_*, DBUS_SESSION_BUS_ADDRESS, XDG_* paths";
    let expected = format!("no SUDO_* variables, no paths of another uid than {}", ctx.uid);
    let mut found = Vec::new();
    for (k, v) in &ctx.env {
        if k.starts_with("SUDO_") {
            found.push(format!("{k}={v}"));
        } else if k == "DBUS_SESSION_BUS_ADDRESS" || k.starts_with("XDG_") {
            if let Some(uid) = run_user_uid(v, &ctx.config.runtime_dir_parent)
                && uid != ctx.uid
            {
                found.push(format!("{k}={v} (uid {uid})"));
            } else if k.starts_with("XDG_")
                && k.ends_with("_HOME")
                && v.starts_with('/')
                && let Ok(meta) = fs::symlink_metadata(v)
                && meta.uid() != ctx.uid
            {
                found.push(format!("{k}={v} (owned by uid {})", meta.uid()));
            }
        }
    }
    if found.is_empty() {
        return Verdict::pass("none found", expected, evidence);
    }
    let names: Vec<&str> = found.iter().filter_map(|f| f.split('=').next()).collect();
    Verdict::new(Status::Warn, found.join("; "), expected, evidence).fix(
        Who::User,
        format!(
            "this environment was inherited from another user (su/sudo without a login): `unset {}`, or start a login session (`sudo -iu USER`, `su - USER`, or through the spawner)",
            names.join(" ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::super::testutil::Fixture;
    use super::*;

    #[test]
    fn home_states() {
        let t = Fixture::new("home");
        let ctx = t.healthy();
        assert_eq!(home(&ctx).status, Status::Pass, "{:?}", home(&ctx));
        let mut unset = t.healthy();
        unset.env.remove("HOME");
        let v = home(&unset);
        assert_eq!((v.status, v.fix.unwrap().who), (Status::Fail, Who::User));
        let mut elsewhere = t.healthy();
        let other = t.root.join("other-home");
        fs::create_dir(&other).unwrap();
        std::os::unix::fs::chown(&other, Some(t.uid), Some(t.gid)).unwrap_or(());
        elsewhere.env.insert("HOME".into(), other.display().to_string());
        assert_eq!(home(&elsewhere).status, Status::Warn);
        let mut missing = t.healthy();
        missing.env.insert("HOME".into(), t.root.join("nope").display().to_string());
        assert_eq!(home(&missing).status, Status::Fail);
        // Owned by someone else.
        let mut foreign = t.healthy();
        foreign.uid += 1;
        let v = home(&foreign);
        assert!(v.status == Status::Fail && v.observed.contains("owned by uid"), "{v:?}");
        assert_eq!(v.fix.unwrap().who, Who::Admin);
    }

    #[test]
    fn runtime_dir_states() {
        let t = Fixture::new("rtd");
        let ctx = t.healthy();
        assert_eq!(runtime_dir_set(&ctx).status, Status::Pass);
        assert_eq!(runtime_dir_owner(&ctx).status, Status::Pass, "{:?}", runtime_dir_owner(&ctx));
        // Not on tmpfs (a temp dir on disk), so warn, naming it.
        let fs_v = runtime_dir_fs(&ctx);
        if fs_v.status == Status::Warn {
            assert!(fs_v.observed.contains("tmpfs"), "{fs_v:?}");
        }
        // tmpfs = true (the default) but a plain dir: the fallback is reported.
        assert!(ctx.config.tmpfs);
        assert_eq!(fs_v.status, Status::Warn);
        assert!(fs_v.observed.contains("not a per-user tmpfs"), "{fs_v:?}");
        assert!(fs_v.fix.as_ref().is_some_and(|f| f.who == Who::Admin), "{fs_v:?}");
        let mut plain = t.healthy();
        plain.config.tmpfs = false;
        assert!(!runtime_dir_fs(&plain).observed.contains("not a per-user tmpfs"));

        let mut unset = t.healthy();
        unset.env.remove("XDG_RUNTIME_DIR");
        let v = runtime_dir_set(&unset);
        assert_eq!(v.status, Status::Fail);
        assert!(v.fix.unwrap().text.contains("export XDG_RUNTIME_DIR="), "dir exists and is ours: user fix");
        let mut relative = t.healthy();
        relative.env.insert("XDG_RUNTIME_DIR".into(), "run/user/1".into());
        assert_eq!(runtime_dir_set(&relative).status, Status::Fail);

        let mut other = t.healthy();
        other.uid += 1;
        let v = runtime_dir_owner(&other);
        assert!(v.status == Status::Fail && v.observed.contains("owned by uid"), "{v:?}");
        assert!(v.fix.unwrap().text.contains("another user"));

        fs::set_permissions(t.runtime_dir(), fs::Permissions::from_mode(0o755)).unwrap();
        let v = runtime_dir_owner(&ctx);
        assert!(v.status == Status::Fail && v.observed.contains("0755"), "{v:?}");
        assert!(v.fix.unwrap().text.contains("chmod 0700"));

        let link = t.root.join("run/user/link");
        std::os::unix::fs::symlink(t.runtime_dir(), &link).unwrap();
        let mut linked = t.healthy();
        linked.env.insert("XDG_RUNTIME_DIR".into(), link.display().to_string());
        let v = runtime_dir_owner(&linked);
        assert!(v.status == Status::Fail && v.observed.contains("symbolic link"), "{v:?}");

        let mut missing = t.healthy();
        missing.env.insert("XDG_RUNTIME_DIR".into(), t.root.join("run/user/999999").display().to_string());
        let v = runtime_dir_owner(&missing);
        assert!(v.status == Status::Fail && v.observed.contains("does not exist"), "{v:?}");

        let mut elsewhere = t.healthy();
        elsewhere.env.insert("XDG_RUNTIME_DIR".into(), t.root.join("home").display().to_string());
        let v = runtime_dir_fs(&elsewhere);
        assert!(v.status == Status::Warn && v.observed.contains("not "), "{v:?}");
    }

    #[test]
    fn config_dirs_and_leaks() {
        let t = Fixture::new("cfg");
        let ctx = t.healthy();
        assert_eq!(config_dirs(&ctx).status, Status::Pass);
        let cfg = t.root.join("home/.config/containers");
        fs::create_dir_all(&cfg).unwrap();
        std::os::unix::fs::chown(t.root.join("home/.config"), Some(t.uid), Some(t.gid)).unwrap_or(());
        std::os::unix::fs::chown(&cfg, Some(t.uid), Some(t.gid)).unwrap_or(());
        let mut other = t.healthy();
        other.uid += 1;
        let v = config_dirs(&other);
        assert!(v.status == Status::Fail && v.observed.contains(".config"), "{v:?}");
        assert!(v.fix.unwrap().text.contains("chown -R"));

        assert_eq!(leak(&ctx).status, Status::Pass);
        let mut leaked = t.healthy();
        leaked.env.insert("SUDO_USER".into(), "admin".into());
        let bus = format!("unix:path={}/0/bus", t.root.join("run/user").display());
        leaked.env.insert("DBUS_SESSION_BUS_ADDRESS".into(), bus);
        let v = leak(&leaked);
        assert_eq!(v.status, Status::Warn);
        assert!(v.observed.contains("SUDO_USER") && v.observed.contains("(uid 0)"), "{}", v.observed);
        assert!(v.fix.unwrap().text.contains("unset DBUS_SESSION_BUS_ADDRESS SUDO_USER"));
    }
}
