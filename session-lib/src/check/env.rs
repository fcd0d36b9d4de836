//! env.*: HOME, XDG_RUNTIME_DIR and its directory, config dirs, leaks.
#![forbid(unsafe_code)]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{Context, Mode, Status, Verdict, Who};

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

/// Why `path` (an existing directory) cannot be written by the checked
/// user: a read-only mount, or the mode bits; `None` if it can.
pub(super) fn unwritable(ctx: &Context, path: &Path, meta: &fs::Metadata) -> Option<String> {
    use nix::sys::statvfs::{FsFlags, statvfs};
    if statvfs(path).is_ok_and(|v| v.flags().contains(FsFlags::ST_RDONLY)) {
        return Some(format!("{} is on a read-only mount", path.display()));
    }
    if !ctx.may(meta, W | X) {
        return Some(format!(
            "{} is not writable by uid {} (mode {:04o}, owner uid {})",
            path.display(),
            ctx.uid,
            meta.mode() & 0o7777,
            meta.uid()
        ));
    }
    None
}

pub(super) fn home(ctx: &Context) -> Verdict {
    let evidence = "$HOME, getpwuid_r() pw_dir, lstat, statvfs";
    let Some(pw) = &ctx.user else { return Verdict::skipped("the user does not resolve", evidence) };
    let expected = format!("HOME={} (passwd), a directory owned by {} and writable", pw.home.display(), pw.name);
    let fail = |observed: String, who: Who, fix: String| {
        Verdict::new(Status::Fail, observed, &expected, evidence).fix(who, fix)
    };
    let export = format!("`export HOME={}`", pw.home.display());
    let home = match ctx.var("HOME") {
        None | Some("") => {
            // podman falls back to the passwd home.
            let v = Verdict::new(
                Status::Warn,
                format!("HOME unset (podman uses the passwd home {})", pw.home.display()),
                &expected,
                evidence,
            );
            return match passwd_home_problem(ctx, pw) {
                None => v.fix(Who::User, export),
                Some((obs, who, fix)) => fail(format!("HOME unset; the passwd home: {obs}"), who, fix),
            };
        }
        Some(h) if !h.starts_with('/') => return fail(format!("HOME={h} (relative)"), Who::User, export),
        Some(h) => PathBuf::from(h),
    };
    if home != pw.home {
        // Compare first: a HOME of another user (su -m, sudo -E) is fixed
        // by the variable, never by changing that directory.
        let theirs = fs::metadata(&home).ok().filter(|m| m.uid() != ctx.uid);
        if let Some(m) = theirs {
            return fail(
                format!(
                    "HOME={} (owned by uid {}) but the passwd home is {}",
                    home.display(),
                    m.uid(),
                    pw.home.display()
                ),
                Who::User,
                format!(
                    "{export} (HOME was inherited from another user, e.g. `su -m` or `sudo -E`; podman reads its config and storage there)"
                ),
            );
        }
    }
    let meta = match fs::metadata(&home) {
        Ok(m) => m,
        Err(e) => {
            if home != pw.home && fs::metadata(&pw.home).is_ok_and(|m| m.uid() == ctx.uid) {
                return fail(format!("HOME={}: {e}", home.display()), Who::User, export);
            }
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
    if let Some((obs, who, fix)) = dir_problem(ctx, pw, &home, &meta) {
        return fail(format!("HOME={}: {obs}", home.display()), who, fix);
    }
    if home != pw.home {
        return Verdict::new(
            Status::Warn,
            format!("HOME={} but the passwd home is {}", home.display(), pw.home.display()),
            &expected,
            evidence,
        )
        .fix(Who::User, format!("{export} unless you moved it on purpose"));
    }
    Verdict::pass(format!("HOME={}, owned and writable", home.display()), expected, evidence)
}

fn passwd_home_problem(ctx: &Context, pw: &crate::user::UserInfo) -> Option<(String, Who, String)> {
    match fs::metadata(&pw.home) {
        Ok(m) if m.is_dir() => dir_problem(ctx, pw, &pw.home, &m),
        Ok(m) => Some((
            format!("{} is {}", pw.home.display(), kind(&m)),
            Who::Admin,
            format!("make {} a directory", pw.home.display()),
        )),
        Err(e) => Some((format!("{}: {e}", pw.home.display()), Who::Admin, format!("`mkhomedir_helper {}`", pw.name))),
    }
}

/// A home directory podman cannot use: another owner, read-only, not writable.
fn dir_problem(
    ctx: &Context,
    pw: &crate::user::UserInfo,
    home: &Path,
    meta: &fs::Metadata,
) -> Option<(String, Who, String)> {
    use nix::sys::statvfs::{FsFlags, statvfs};
    if statvfs(home).is_ok_and(|v| v.flags().contains(FsFlags::ST_RDONLY)) {
        return Some((
            "on a read-only mount".into(),
            Who::Admin,
            format!(
                "remount it read-write (`mount -o remount,rw` on the mount holding {0}), or give podman storage elsewhere: graphroot under [storage] in {0}/.config/containers/storage.conf cannot be written either, so set CONTAINERS_STORAGE_CONF to a file on a writable filesystem",
                home.display()
            ),
        ));
    }
    if meta.uid() != ctx.uid {
        return Some((
            format!("owned by uid {}", meta.uid()),
            Who::Admin,
            format!("`chown {}: {}` (podman keeps its storage and config there)", pw.name, home.display()),
        ));
    }
    if !ctx.may(meta, W | X) {
        return Some((
            format!("not writable (mode {:04o})", meta.mode() & 0o7777),
            Who::User,
            format!("`chmod u+rwx {}`", home.display()),
        ));
    }
    None
}

fn expected_runtime_dir(ctx: &Context) -> PathBuf {
    ctx.config.runtime_dir_parent.join(ctx.uid.to_string())
}

pub(super) fn runtime_dir_set(ctx: &Context) -> Verdict {
    let evidence = "$XDG_RUNTIME_DIR; lstat of /run/user/UID";
    let want = expected_runtime_dir(ctx);
    let expected = format!("XDG_RUNTIME_DIR={}", want.display());
    let session_fix = "give the service a session: add `session required pam_jupyter.so` to its PAM stack (e.g. /etc/pam.d/jupyterhub) or start the server through `jupyter-session exec --user NAME -- CMD`";
    match ctx.var("XDG_RUNTIME_DIR") {
        Some(v) if v.starts_with('/') => Verdict::pass(format!("XDG_RUNTIME_DIR={v}"), expected, evidence),
        None | Some("") => {
            // podman picks /run/user/UID itself if it is the user's, else
            // falls back to a directory in /tmp; other tools fail.
            if own_dir_ok(ctx) {
                Verdict::new(
                    Status::Warn,
                    format!("XDG_RUNTIME_DIR unset: podman uses {} (it exists and is yours); D-Bus and systemctl --user fail without it", want.display()),
                    expected,
                    evidence,
                )
                .fix(Who::User, format!("`export XDG_RUNTIME_DIR={}`; for good: {session_fix}", want.display()))
            } else if let Some(db) = recorded_runtime_dir(ctx, &want) {
                // podman keeps the paths of its first run: it will not fall back.
                Verdict::new(
                    Status::Fail,
                    format!("XDG_RUNTIME_DIR unset and {0} missing or not yours, but podman recorded {0} at its first run ({1}): it fails with `mkdir {0}: permission denied`", want.display(), db.display()),
                    expected,
                    evidence,
                )
                .fix(Who::Admin, format!("{session_fix}; that creates {}", want.display()))
            } else {
                Verdict::new(
                    Status::Warn,
                    format!("XDG_RUNTIME_DIR unset and {} is not yours: podman falls back to /tmp/podman-run-{} (kept across logouts, in the shared /tmp)", want.display(), ctx.uid),
                    expected,
                    evidence,
                )
                .fix(Who::Admin, session_fix)
            }
        }
        Some(v) => Verdict::new(Status::Fail, format!("XDG_RUNTIME_DIR={v} (relative)"), expected, evidence).fix(
            Who::User,
            format!(
                "`export XDG_RUNTIME_DIR={}` (podman fails with `temporary directory must be an absolute path` once it has recorded the relative path)",
                want.display()
            ),
        ),
    }
}

/// podman's database, if it recorded `dir` as its runtime dir (podman
/// stores its static and tmp dirs at first use and keeps them).
fn recorded_runtime_dir(ctx: &Context, dir: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let (graphroot, _) = super::system::graphroot(ctx);
    let db = graphroot.join("libpod/bolt_state.db");
    let mut buf = Vec::new();
    fs::File::open(&db).ok()?.take(4 << 20).read_to_end(&mut buf).ok()?;
    let needle = format!("{}/libpod", dir.display());
    buf.windows(needle.len()).any(|w| w == needle.as_bytes()).then_some(db)
}

/// The expected runtime dir exists as it should: a directory, the user's, 0700.
fn own_dir_ok(ctx: &Context) -> bool {
    fs::symlink_metadata(expected_runtime_dir(ctx))
        .is_ok_and(|m| m.is_dir() && m.uid() == ctx.uid && m.mode() & 0o077 == 0)
}

pub(super) fn runtime_dir_owner(ctx: &Context) -> Verdict {
    let evidence = "lstat($XDG_RUNTIME_DIR)";
    let Some(dir) = ctx.runtime_dir() else { return Verdict::skipped(ctx.no_runtime_dir(), "$XDG_RUNTIME_DIR") };
    let want = expected_runtime_dir(ctx);
    let expected = format!("a directory owned by uid {}, mode 0700", ctx.uid);
    let name = ctx.name_or_placeholder();
    let session_fix = format!(
        "give {} a real session: pam_jupyter in the PAM stack of the service that starts it (e.g. /etc/pam.d/jupyterhub), or start it through `jupyter-session exec --user {name} -- CMD`; that creates {} (sudo/su stacks create nothing unless they include pam_jupyter or pam_systemd)",
        ctx.who(),
        want.display()
    );
    let fail = |observed: String, who: Who, fix: String| {
        Verdict::new(Status::Fail, observed, &expected, evidence).fix(who, fix)
    };
    let meta = match fs::symlink_metadata(&dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if ctx.mode == Mode::ForUser && dir == want {
                return Verdict::new(
                    Status::Info,
                    format!(
                        "{} does not exist yet: the keeper (pam_jupyter) creates it when it opens the session",
                        dir.display()
                    ),
                    expected,
                    evidence,
                );
            }
            return fail(
                format!("{} does not exist", dir.display()),
                Who::Admin,
                format!(
                    "{session_fix}; podman fails with `create directory {}` or `mkdir {}: permission denied`",
                    dir.display(),
                    dir.display()
                ),
            );
        }
        Err(e) => return fail(format!("{}: {e}", dir.display()), Who::Admin, session_fix),
    };
    if meta.file_type().is_symlink() {
        let target = fs::read_link(&dir).map(|t| t.display().to_string()).unwrap_or_default();
        // podman follows the link: fine if it ends at the user's own dir.
        let resolved = fs::canonicalize(&dir).ok();
        if resolved.as_deref() == Some(want.as_path()) && own_dir_ok(ctx) {
            return Verdict::new(
                Status::Warn,
                format!(
                    "{} is a symbolic link to {target} (podman follows it; tools that check the path itself may not)",
                    dir.display()
                ),
                expected,
                evidence,
            )
            .fix(Who::User, format!("`export XDG_RUNTIME_DIR={}`", want.display()));
        }
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
        let observed = format!("{} is owned by uid {} ({owner})", dir.display(), meta.uid());
        if dir == want {
            // The user's own path, someone else's dir: only root can repair it.
            return fail(
                observed,
                Who::Admin,
                format!(
                    "`chown {name}: {0} && chmod 0700 {0}` (or `rm -r {0}` when {name} has no session; the next session creates it); podman says `XDG_RUNTIME_DIR directory \"{0}\" is not owned by the current user` and pam_jupyter refuses the session until then",
                    dir.display()
                ),
            );
        }
        if own_dir_ok(ctx) {
            return fail(
                observed,
                Who::User,
                format!(
                    "XDG_RUNTIME_DIR was inherited from another user (su/sudo without a session): `export XDG_RUNTIME_DIR={}` (it exists and is yours)",
                    want.display()
                ),
            );
        }
        return fail(
            format!("{observed}; {} does not exist or is not usable", want.display()),
            Who::Admin,
            format!(
                "XDG_RUNTIME_DIR was inherited from another user and {name} has no runtime dir of their own: {session_fix}"
            ),
        );
    }
    let mode = meta.mode() & 0o7777;
    if mode != 0o700 {
        // podman only needs to own it; others can look inside.
        return Verdict::new(
            Status::Warn,
            format!(
                "{} has mode {mode:04o}: others can enter it (podman works; D-Bus and some tools refuse it)",
                dir.display()
            ),
            expected,
            evidence,
        )
        .fix(Who::User, format!("`chmod 0700 {}`", dir.display()));
    }
    Verdict::pass(format!("{}: directory, uid {}, mode 0700", dir.display(), ctx.uid), expected, evidence)
}

/// Podman's directories inside the runtime dir: each, where it exists,
/// must be the user's (a root-run tool with XDG_RUNTIME_DIR of the user
/// leaves them root-owned).
pub(super) fn runtime_dir_podman(ctx: &Context) -> Verdict {
    let Some(dir) = ctx.runtime_dir() else { return Verdict::skipped(ctx.no_runtime_dir(), "$XDG_RUNTIME_DIR") };
    const SUBDIRS: &[&str] =
        &["libpod", "libpod/tmp", "containers", "crun", "runc", "netns", "podman", "dbus-1", "systemd"];
    let evidence = format!("lstat of {} in {}", SUBDIRS.join(", "), dir.display());
    let expected = format!("each, where it exists, a directory owned by uid {} and writable", ctx.uid);
    let mut bad = Vec::new();
    let mut tops = Vec::new();
    let mut seen = 0;
    for sub in SUBDIRS {
        let p = dir.join(sub);
        let Ok(meta) = fs::symlink_metadata(&p) else { continue };
        seen += 1;
        let problem = if !meta.is_dir() {
            Some(kind(&meta).to_string())
        } else if meta.uid() != ctx.uid {
            Some(format!("owned by uid {}", meta.uid()))
        } else if !ctx.may(&meta, W | X) {
            Some(format!("mode {:04o}", meta.mode() & 0o7777))
        } else {
            None
        };
        if let Some(why) = problem {
            bad.push(format!("{} {why}", p.display()));
            let top = dir.join(sub.split('/').next().unwrap_or(sub));
            if !tops.contains(&top) {
                tops.push(top);
            }
        }
    }
    if bad.is_empty() {
        return Verdict::pass(format!("{seen} of podman's dirs exist, all the user's"), expected, evidence);
    }
    let paths = tops.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" ");
    Verdict::new(Status::Fail, bad.join("; "), expected, evidence).fix(
        Who::Admin,
        format!(
            "with no container of {} running, `rm -rf {paths}` (podman recreates them; they were left by a root-run podman or tool with this XDG_RUNTIME_DIR); podman says `creating runtime static files directory: mkdir ...: permission denied`",
            ctx.who()
        ),
    )
}

pub(super) fn runtime_dir_fs(ctx: &Context) -> Verdict {
    use nix::sys::statfs::{TMPFS_MAGIC, statfs};
    let evidence = "statfs, statvfs, lstat($XDG_RUNTIME_DIR)";
    let Some(dir) = ctx.runtime_dir() else { return Verdict::skipped(ctx.no_runtime_dir(), "$XDG_RUNTIME_DIR") };
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
    if let Ok(meta) = fs::metadata(&dir)
        && !ctx.may(&meta, W | X)
    {
        problems.push("not writable".into());
    }
    let mut full = false;
    if let Ok(vfs) = nix::sys::statvfs::statvfs(&dir) {
        let free = vfs.blocks_available() * vfs.fragment_size();
        let inodes = vfs.files_available();
        // podman writes a few small files (pause.pid, locks, alive): below
        // this it fails with ENOSPC.
        full = free < 64 << 10 || (vfs.files() > 0 && inodes < 32);
        if full || free < 1 << 20 || (vfs.files() > 0 && inodes < 100) {
            let word = if full { "full" } else { "nearly full" };
            problems.insert(0, format!("{word}: {} KiB and {inodes} inodes free", free / 1024));
            fix = Some((
                Who::User,
                format!("remove what you no longer need under {} (`du -sh {}/*`)", dir.display(), dir.display()),
            ));
        }
    }
    // A per-user tmpfs is configured but this dir is a plain one: the
    // module fell back (no privilege to mount), and its size limit is gone.
    if ctx.config.tmpfs && dir == want && crate::runtime_dir::is_mount_root(&dir) == Some(false) {
        problems.push(format!(
            "a plain directory although tmpfs = true: pam_jupyter fell back (mounting was refused), so there is no size limit and a user can fill {} and block every login",
            ctx.config.runtime_dir_parent.parent().unwrap_or(Path::new("/")).display()
        ));
        fix.get_or_insert((
            Who::Admin,
            "give the PAM host CAP_SYS_ADMIN (see the module's warning in the auth log and README: Troubleshooting, \"The runtime dir is a plain directory\"), or set `tmpfs = false` to make plain dirs the explicit choice".into(),
        ));
    }
    if problems.is_empty() {
        return Verdict::pass(format!("{}: tmpfs, writable", dir.display()), expected, evidence);
    }
    let status = if full { Status::Fail } else { Status::Warn };
    let v = Verdict::new(status, problems.join("; "), expected, evidence);
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

/// Home directories of the other login users (uid 0 and uids >= 1000 with
/// a real home), from the passwd file the context reads.
fn other_homes(ctx: &Context) -> Vec<(String, u32, String)> {
    let text = super::read_text(&ctx.paths.passwd).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let uid: u32 = f.get(2)?.parse().ok()?;
            let home = f.get(5)?.trim_end_matches('/');
            let real =
                home.len() > 1 && !["/nonexistent", "/dev/null", "/bin", "/usr/sbin", "/var/empty"].contains(&home);
            (uid != ctx.uid && (uid == 0 || (1000..65534).contains(&uid)) && real)
                .then(|| (f[0].to_string(), uid, home.to_string()))
        })
        .collect()
}

/// `value` (or one of its `:`-separated parts) is `home` or below it.
fn names_path_under(value: &str, home: &str) -> bool {
    value.split([':', ';', '=']).any(|part| part == home || part.strip_prefix(home).is_some_and(|r| r.starts_with('/')))
}

pub(super) fn leak(ctx: &Context) -> Verdict {
    let evidence = "environment: SUDO_*, DBUS_SESSION_BUS_ADDRESS, XDG_* paths, any value naming another login user's home (passwd)";
    let expected = format!("no SUDO_* variables, no paths of another user than uid {}", ctx.uid);
    let homes = other_homes(ctx);
    let mine = ctx.user.as_ref().map(|u| u.home.display().to_string());
    let mut found = Vec::new();
    for (k, v) in &ctx.env {
        if k.starts_with("SUDO_") {
            found.push(format!("{k}={v}"));
            continue;
        }
        if k == "DBUS_SESSION_BUS_ADDRESS" || k.starts_with("XDG_") {
            if let Some(uid) = run_user_uid(v, &ctx.config.runtime_dir_parent)
                && uid != ctx.uid
            {
                found.push(format!("{k}={v} (uid {uid})"));
                continue;
            } else if k.starts_with("XDG_")
                && k.ends_with("_HOME")
                && v.starts_with('/')
                && let Ok(meta) = fs::symlink_metadata(v)
                && meta.uid() != ctx.uid
            {
                found.push(format!("{k}={v} (owned by uid {})", meta.uid()));
                continue;
            }
        }
        // HOME itself is env.home's; a path in another user's home is a
        // leak whatever the variable (PYENV_ROOT, OLDPWD, TF_CLI_CONFIG_FILE...).
        if k == "HOME" {
            continue;
        }
        if let Some((name, uid, _)) = homes
            .iter()
            .filter(|(_, _, h)| mine.as_deref().is_none_or(|m| !names_path_under(m, h)))
            .find(|(_, _, h)| names_path_under(v, h))
        {
            found.push(format!("{k}={v} (home of {name}, uid {uid})"));
        }
    }
    if found.is_empty() {
        return Verdict::pass("none found", expected, evidence);
    }
    let names: Vec<&str> = found.iter().filter_map(|f| f.split('=').next()).collect();
    Verdict::new(Status::Warn, found.join("; "), expected, evidence).fix(
        Who::User,
        format!(
            "this environment was inherited from another user (su/sudo without a login): `unset {}`; for a clean one, start the server through the spawner or `jupyter-session exec --user NAME -- CMD` (`sudo -iu`/`su -` give a runtime dir only where their PAM stacks include pam_jupyter or pam_systemd)",
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
        // Unset: podman uses the passwd home, so only a warning.
        let mut unset = t.healthy();
        unset.env.remove("HOME");
        let v = home(&unset);
        assert_eq!((v.status, v.fix.unwrap().who), (Status::Warn, Who::User));
        // Another user's HOME (su -m): the fix is the variable, never a chown.
        let mut roots = t.healthy();
        let foreign_dir = t.root.join("foreign");
        fs::create_dir(&foreign_dir).unwrap();
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&foreign_dir, Some(0), Some(0)).unwrap();
            roots.env.insert("HOME".into(), foreign_dir.display().to_string());
            let v = home(&roots);
            let fix = v.fix.unwrap();
            assert_eq!((v.status, fix.who), (Status::Fail, Who::User));
            assert!(fix.text.contains(&format!("export HOME={}", t.root.join("home").display())), "{}", fix.text);
        }
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
        assert!(fs_v.observed.contains("a plain directory although tmpfs = true"), "{fs_v:?}");
        assert!(fs_v.fix.as_ref().is_some_and(|f| f.who == Who::Admin), "{fs_v:?}");
        let mut plain = t.healthy();
        plain.config.tmpfs = false;
        assert!(!runtime_dir_fs(&plain).observed.contains("a plain directory although tmpfs = true"));

        // Unset: podman picks the dir itself (or /tmp): a warning.
        let mut unset = t.healthy();
        unset.env.remove("XDG_RUNTIME_DIR");
        let v = runtime_dir_set(&unset);
        assert_eq!(v.status, Status::Warn);
        assert!(v.fix.unwrap().text.contains("export XDG_RUNTIME_DIR="), "dir exists and is ours: user fix");
        assert_eq!(runtime_dir_owner(&unset).status, Status::Pass, "the dir podman picks is checked");
        let mut relative = t.healthy();
        relative.env.insert("XDG_RUNTIME_DIR".into(), "run/user/1".into());
        assert_eq!(runtime_dir_set(&relative).status, Status::Fail);

        let mut other = t.healthy();
        other.uid += 1;
        let v = runtime_dir_owner(&other);
        assert!(v.status == Status::Fail && v.observed.contains("owned by uid"), "{v:?}");
        assert!(v.fix.unwrap().text.contains("another user"));

        // A symlink to the right dir works for podman: a warning.
        let link = t.root.join("run/user/link");
        std::os::unix::fs::symlink(t.runtime_dir(), &link).unwrap();
        let mut linked = t.healthy();
        linked.env.insert("XDG_RUNTIME_DIR".into(), link.display().to_string());
        let v = runtime_dir_owner(&linked);
        assert!(v.status == Status::Warn && v.observed.contains("symbolic link"), "{v:?}");
        // To somewhere else: a failure.
        let elsewhere_link = t.root.join("run/user/link2");
        std::os::unix::fs::symlink(t.root.join("home"), &elsewhere_link).unwrap();
        linked.env.insert("XDG_RUNTIME_DIR".into(), elsewhere_link.display().to_string());
        assert_eq!(runtime_dir_owner(&linked).status, Status::Fail);

        // Mode 0755: podman works, so a warning.
        fs::set_permissions(t.runtime_dir(), fs::Permissions::from_mode(0o755)).unwrap();
        let v = runtime_dir_owner(&ctx);
        assert!(v.status == Status::Warn && v.observed.contains("0755"), "{v:?}");
        assert!(v.fix.unwrap().text.contains("chmod 0700"));
        fs::set_permissions(t.runtime_dir(), fs::Permissions::from_mode(0o700)).unwrap();

        // As root for a user with no session yet: the keeper creates it.
        let mut predicted = t.healthy();
        predicted.mode = super::super::Mode::ForUser;
        predicted.uid = 999_999;
        let want = t.root.join("run/user/999999").display().to_string();
        predicted.env.insert("XDG_RUNTIME_DIR".into(), want);
        let v = runtime_dir_owner(&predicted);
        assert!(v.status == Status::Info && v.observed.contains("keeper"), "{v:?}");

        // podman's subdirs: a foreign libpod/ fails.
        assert_eq!(runtime_dir_podman(&ctx).status, Status::Pass);
        fs::create_dir(t.runtime_dir().join("libpod")).unwrap();
        let mut foreign = t.healthy();
        foreign.uid += 1;
        foreign.env.insert("XDG_RUNTIME_DIR".into(), t.runtime_dir().display().to_string());
        let v = runtime_dir_podman(&foreign);
        assert!(v.status == Status::Fail && v.observed.contains("libpod owned by uid"), "{v:?}");
        assert!(v.fix.unwrap().text.contains("rm -rf"));

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
        // A path in another login user's home, whatever the variable.
        let mut tools = t.healthy();
        fs::write(t.root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nbob:x:1500:1500::/home/bob:/bin/sh\n")
            .unwrap();
        tools.paths.passwd = t.root.join("etc/passwd");
        tools.env.insert("PYENV_ROOT".into(), "/root/.pyenv".into());
        tools.env.insert("OLDPWD".into(), "/home/bob/src".into());
        tools.env.insert("EDITOR".into(), "/usr/bin/vi".into());
        let v = leak(&tools);
        assert_eq!(v.status, Status::Warn);
        assert!(v.observed.contains("PYENV_ROOT=/root/.pyenv") && v.observed.contains("OLDPWD"), "{}", v.observed);
        assert!(!v.observed.contains("EDITOR"), "{}", v.observed);
        assert!(!v.fix.unwrap().text.contains("sudo -iu USER`,"), "no fix that does not create the dir");
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
