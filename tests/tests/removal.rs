//! Removal of a plain runtime dir at the user's last close, in real PAM
//! sessions (the hold-session driver through libpam, pam_wrapper showing
//! the module's log lines), for real users: it deletes only what the user
//! could delete, and never crosses a mount. `tmpfs=false` explicitly: the
//! walk is what a plain dir gets.
#![forbid(unsafe_code)]

use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::Command;

use jupyter_session_tests::*;

/// A PAM session held open by hold-session under pam_wrapper, with the
/// module alone (plain dirs) in a private service dir; the module's
/// pam_syslog lines are read at close.
fn open_logged(state: &StateDir, user: &str) -> (WrappedService, SessionHolder) {
    let service =
        WrappedService::new(&format!("session required {} {} tmpfs=false", module_path().display(), state.arg()));
    let holder = SessionHolder::open_logged(&service, user);
    (service, holder)
}

/// A scratch dir under /run, the filesystem /run/user is on (so that `mv`
/// into the runtime dir is a rename), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = PathBuf::from("/run").join(unique("removal-"));
        std::fs::create_dir_all(&dir).unwrap();
        set_mode(&dir, 0o755);
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Unmounts (lazily) on drop, so a failing test leaves no mount behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn can_run(test: &str) -> bool {
    require_root(test, &["setpriv", "mount"]) && require_pam_wrapper(test)
}

/// Run a shell command as `user` with their groups (setpriv --init-groups).
fn as_user(user: &TestUser, script: &str) -> std::process::Output {
    run(Command::new("setpriv").args([
        "--reuid",
        &user.uid.to_string(),
        "--regid",
        &user.gid.to_string(),
        "--init-groups",
        "sh",
        "-c",
        script,
    ]))
}

/// The module's log line that names `what`, which must be a warning
/// (`pam_syslog` priority 4, LOG_WARNING, as pam_wrapper shows it).
fn warning_naming<'a>(log: &'a str, what: &str) -> &'a str {
    let line = log.lines().find(|l| l.contains(what)).unwrap_or_else(|| panic!("no log line names {what}:\n{log}"));
    assert!(line.contains("SYSLOG(4)") && line.contains("session closed"), "not a warning at close: {line}");
    line
}

#[test]
fn another_users_tree_moved_in_survives_the_last_close() {
    if !can_run("another_users_tree_moved_in_survives_the_last_close") {
        return;
    }
    let bob = TestUser::create("jsrb");
    let alice = TestUser::create_with("jsra", &["-G", &bob.name]);
    let scratch = Scratch::new();
    // bob's project: group-writable (2775) for his group, which alice is in;
    // results/ is bob's alone (2755), so alice cannot delete paper.tex.
    let proj = scratch.0.join("proj");
    let data = proj.join("data");
    std::fs::create_dir_all(data.join("results")).unwrap();
    std::fs::write(data.join("results/paper.tex"), "bob's paper").unwrap();
    std::fs::write(data.join("scratch.csv"), "group data").unwrap();
    for p in [&proj, &data, &data.join("results"), &data.join("results/paper.tex"), &data.join("scratch.csv")] {
        chown(p, Some(bob.uid), Some(bob.gid)).unwrap();
    }
    set_mode(&proj, 0o2775);
    set_mode(&data, 0o2775);
    set_mode(&data.join("results"), 0o2755);
    set_mode(&data.join("scratch.csv"), 0o664);
    // As alice, rm of bob's paper is refused: the premise of the test.
    let rm = as_user(&alice, &format!("rm -f {}", data.join("results/paper.tex").display()));
    assert!(!rm.status.success() && data.join("results/paper.tex").exists(), "alice must not be able to rm it");

    let state = StateDir::new();
    let (_service, session) = open_logged(&state, &alice.name);
    let rt = PathBuf::from(session.var("XDG_RUNTIME_DIR").expect("XDG_RUNTIME_DIR set"));
    assert_eq!(rt, alice.runtime_dir());
    let mv = as_user(
        &alice,
        &format!("mv {} \"$0\"/ && touch \"$0\"/own-file", data.display()).replace("$0", rt.to_str().unwrap()),
    );
    assert!(mv.status.success(), "mv as alice: {}", String::from_utf8_lossy(&mv.stderr));
    assert!(rt.join("data/results/paper.tex").exists());

    let (status, log) = session.close_with_log();
    assert_eq!(status, "CLOSED 0", "{log}");
    assert_eq!(
        std::fs::read_to_string(rt.join("data/results/paper.tex")).ok().as_deref(),
        Some("bob's paper"),
        "bob's file survives alice's last close; log:\n{log}"
    );
    // What alice could delete is gone; the dir stays, and the log says why.
    assert!(!rt.join("own-file").exists() && !rt.join("data/scratch.csv").exists(), "{log}");
    assert!(rt.is_dir());
    let line = warning_naming(&log, "data/results/paper.tex");
    assert!(line.contains("not the user's to delete"), "{line}");

    // The admin moves bob's tree back (README, Troubleshooting); gc finishes.
    std::fs::rename(rt.join("data"), &data).unwrap();
    let config = PathBuf::from(format!("/run/{}.toml", unique("removal-cfg")));
    std::fs::write(&config, format!("state_dir = \"{}\"\ntmpfs = false\n", state.0.display())).unwrap();
    let gc = run(Command::new(cli_path()).arg("gc").arg("--config").arg(&config));
    let _ = std::fs::remove_file(&config);
    let out = String::from_utf8_lossy(&gc.stdout).to_string() + &String::from_utf8_lossy(&gc.stderr);
    assert!(gc.status.success() && out.contains(&format!("removed {}", rt.display())), "{out}");
    assert!(!rt.exists());
    assert_eq!(std::fs::read_to_string(data.join("results/paper.tex")).unwrap(), "bob's paper");
}

#[test]
fn a_same_filesystem_bind_mount_inside_is_not_crossed() {
    if !can_run("a_same_filesystem_bind_mount_inside_is_not_crossed") {
        return;
    }
    let alice = TestUser::create("jsrm");
    let scratch = Scratch::new();
    // A shared dir anyone may write to (0777, no sticky bit), holding
    // root's files: even alice could delete them there, so only the mount
    // check keeps them.
    let shared = scratch.0.join("shared");
    std::fs::create_dir_all(shared.join("sub")).unwrap();
    std::fs::write(shared.join("root-file"), "root's").unwrap();
    std::fs::write(shared.join("sub/deeper"), "root's too").unwrap();
    set_mode(&shared, 0o777);
    set_mode(&shared.join("sub"), 0o777);

    let state = StateDir::new();
    let (_service, session) = open_logged(&state, &alice.name);
    let rt = PathBuf::from(session.var("XDG_RUNTIME_DIR").expect("XDG_RUNTIME_DIR set"));
    let target = rt.join("data");
    std::fs::create_dir(&target).unwrap();
    chown(&target, Some(alice.uid), Some(alice.gid)).unwrap();
    run_ok(Command::new("mount").arg("--bind").arg(&shared).arg(&target));
    let mounted = Mounted(target.clone());
    assert_eq!(
        std::fs::metadata(&shared).map(|m| std::os::unix::fs::MetadataExt::dev(&m)).unwrap(),
        std::fs::metadata(&rt).map(|m| std::os::unix::fs::MetadataExt::dev(&m)).unwrap(),
        "the premise: the same filesystem, the same st_dev"
    );

    let (status, log) = session.close_with_log();
    assert_eq!(status, "CLOSED 0", "{log}");
    assert_eq!(std::fs::read_to_string(shared.join("root-file")).ok().as_deref(), Some("root's"), "{log}");
    assert_eq!(std::fs::read_to_string(shared.join("sub/deeper")).ok().as_deref(), Some("root's too"), "{log}");
    let line = warning_naming(&log, "data is a mount point");
    assert!(line.contains("never crossed"), "{line}");
    drop(mounted);

    // With the mount gone, the next last close finishes the job.
    let (_service, session) = open_logged(&state, &alice.name);
    let (status, log) = session.close_with_log();
    assert_eq!(status, "CLOSED 0", "{log}");
    assert!(!rt.exists(), "{log}");
    assert!(shared.join("root-file").exists());
}
