//! pam_jupyter in real PAM stacks: libpam loading the built module from
//! /etc/pam.d (pamtester, a session-holding driver) and from a private
//! service dir under pam_wrapper, which also shows the module's pam_syslog
//! lines. Real users from useradd, the real /run/user.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use jupyter_session_tests::*;

const OBSERVER: &str = "tests/fixtures/observe_session.sh";

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join(rel)
}

fn pamtester(service: &str, user: &str, ops: &[&str]) -> Output {
    run(Command::new("pamtester").arg(service).arg(user).args(ops))
}

fn text(out: &Output) -> String {
    stdout_and_stderr(out)
}

/// pamtester under pam_wrapper with a private service dir; returns the
/// output, which includes the module's pam_syslog lines (`SYSLOG(N): ...`).
fn wrapped(module_args: &str, user: &str, ops: &[&str]) -> (bool, String) {
    wrapped_pamtester(&[], module_args, user, ops)
}

fn can_wrap(test: &str) -> bool {
    require_root(test, &["pamtester"]) && require_pam_wrapper(test)
}

/// A service with pam_jupyter (private state dir) and the observer after it.
fn service(state: &StateDir, extra: &str) -> PamService {
    PamService::create(
        "jst",
        &[&state.module_line(extra), &format!("session optional pam_exec.so stdout {}", fixture(OBSERVER).display())],
    )
}

#[test]
fn open_close_creates_exports_and_removes() {
    if !require_root("open_close_creates_exports_and_removes", &["pamtester"]) {
        return;
    }
    let user = TestUser::create("jsa");
    let state = StateDir::new();
    let svc = service(&state, "");
    let out = pamtester(&svc.name, &user.name, &["open_session", "close_session"]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    let rt = user.runtime_dir();
    // What the observer (pam_exec after the module) saw between open and close.
    assert!(log.contains(&format!("open XDG_RUNTIME_DIR={} ", rt.display())), "{log}");
    assert!(log.contains("PATH=/usr/local/bin:/usr/bin:/bin"), "{log}");
    assert!(log.contains(&format!("open dir={}:{}:700:directory", user.uid, user.gid)), "{log}");
    assert!(log.contains(&format!("open loginuid={}", user.uid)), "loginuid set in a single-threaded host: {log}");
    assert!(log.contains("close dir=missing"), "removed at the last close: {log}");
    assert!(!rt.exists());
    assert_eq!(state.records(user.uid), 0);
}

#[test]
fn parallel_sessions_share_the_dir_and_the_last_close_removes_it() {
    if !require_root("parallel_sessions_share_the_dir_and_the_last_close_removes_it", &[]) {
        return;
    }
    let user = TestUser::create("jsb");
    let state = StateDir::new();
    let svc = PamService::with_module("jst", &state, "");
    let a = SessionHolder::open(&svc.name, &user.name);
    let b = SessionHolder::open(&svc.name, &user.name);
    let rt = user.runtime_dir();
    assert_eq!(a.var("XDG_RUNTIME_DIR"), Some(rt.to_str().unwrap()));
    assert_eq!(b.var("XDG_RUNTIME_DIR"), a.var("XDG_RUNTIME_DIR"));
    assert_eq!(owner_mode(&rt), Some((user.uid, user.gid, 0o700)));
    std::fs::write(rt.join("podman-marker"), "x").unwrap();
    assert_eq!(state.records(user.uid), 2);
    assert_eq!(a.close(), "CLOSED 0");
    assert!(rt.join("podman-marker").exists(), "another session is open: dir kept as it was");
    assert_eq!(state.records(user.uid), 1);
    assert_eq!(b.close(), "CLOSED 0");
    assert!(!rt.exists());
    assert_eq!(state.records(user.uid), 0);
}

#[test]
fn hostile_runtime_dir_states_are_refused_and_left_untouched() {
    if !can_wrap("hostile_runtime_dir_states_are_refused_and_left_untouched") {
        return;
    }
    let user = TestUser::create("jsc");
    let state = StateDir::new();
    let rt = user.runtime_dir();
    let args = state.arg();

    // A symlink planted at /run/user/UID pointing at a root-owned file.
    let victim = PathBuf::from(format!("/run/{}", unique("victim")));
    std::fs::write(&victim, "root's").unwrap();
    let before = owner_mode(&victim);
    std::os::unix::fs::symlink(&victim, &rt).unwrap();
    let (ok, log) = wrapped(&args, &user.name, &["open_session"]);
    assert!(!ok, "{log}");
    assert!(log.contains(&format!("refusing runtime directory {}: it is a symbolic link", rt.display())), "{log}");
    assert_eq!(owner_mode(&victim), before, "link target untouched");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's");
    assert_eq!(state.records(user.uid), 0, "nothing registered for a refused session");
    std::fs::remove_file(&rt).unwrap();
    std::fs::remove_file(&victim).unwrap();

    // A symlink to a directory.
    std::os::unix::fs::symlink("/etc", &rt).unwrap();
    let (ok, log) = wrapped(&args, &user.name, &["open_session"]);
    assert!(!ok && log.contains("it is a symbolic link"), "{log}");
    std::fs::remove_file(&rt).unwrap();

    // A regular file.
    std::fs::write(&rt, "").unwrap();
    let (ok, log) = wrapped(&args, &user.name, &["open_session"]);
    assert!(!ok && log.contains("it is a regular file"), "{log}");
    std::fs::remove_file(&rt).unwrap();

    // A directory of another owner (root): refused, never chowned.
    std::fs::create_dir(&rt).unwrap();
    let (ok, log) = wrapped(&args, &user.name, &["open_session"]);
    assert!(!ok && log.contains(&format!("owned by uid 0, not by uid {}", user.uid)), "{log}");
    assert_eq!(owner_mode(&rt).unwrap().0, 0, "not chowned");
    std::fs::remove_dir(&rt).unwrap();

    // The healthy state works with the same stack.
    let (ok, log) = wrapped(&args, &user.name, &["open_session", "close_session"]);
    assert!(ok, "{log}");
    assert!(!rt.exists());
}

#[test]
fn runtime_dir_parent_is_created_or_refused() {
    if !can_wrap("runtime_dir_parent_is_created_or_refused") {
        return;
    }
    let user = TestUser::create("jsd");
    let state = StateDir::new();
    let root = PathBuf::from(format!("/run/{}", unique("rt")));
    std::fs::create_dir(&root).unwrap();
    let parent = root.join("user");
    // Plain dirs: the sessions are left open and the tree removed by path.
    let args = format!("{} runtime_dir_parent={} tmpfs=false", state.arg(), parent.display());

    // Missing: created root:root 0755.
    let (ok, log) = wrapped(&args, &user.name, &["open_session"]);
    assert!(ok, "{log}");
    assert_eq!(owner_mode(&parent), Some((0, 0, 0o755)));
    assert_eq!(owner_mode(&parent.join(user.uid.to_string())), Some((user.uid, user.gid, 0o700)));
    std::fs::remove_dir_all(&parent).unwrap();

    // World-writable: refused.
    std::fs::create_dir(&parent).unwrap();
    std::fs::set_permissions(&parent, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    let (ok, log) = wrapped(&args, &user.name, &["open_session"]);
    assert!(!ok && log.contains("writable by group or others (mode 1777)"), "{log}");
    assert!(!parent.join(user.uid.to_string()).exists());
    std::fs::remove_dir(&parent).unwrap();

    // A symlink to a good directory: refused, nothing created behind it.
    let elsewhere = root.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &parent).unwrap();
    let (ok, log) = wrapped(&args, &user.name, &["open_session"]);
    assert!(!ok && log.contains(&format!("refusing to create runtime directories in {}", parent.display())), "{log}");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn users_it_does_not_manage() {
    if !can_wrap("users_it_does_not_manage") {
        return;
    }
    let user = TestUser::create("jse");
    let state = StateDir::new();
    // Below min_uid: ignored, nothing created.
    let (ok, log) = wrapped(&format!("{} min_uid={} debug", state.arg(), user.uid + 1), &user.name, &["open_session"]);
    assert!(ok && log.contains("below min_uid"), "{log}");
    assert!(!user.runtime_dir().exists());
    // Root: ignored.
    let (ok, log) = wrapped(&format!("{} debug", state.arg()), "root", &["open_session"]);
    assert!(ok && log.contains("is root: nothing to do"), "{log}");
    assert!(!Path::new("/run/user/0").exists());
    // Unknown user: PAM_USER_UNKNOWN with a log line.
    let (ok, log) = wrapped(&state.arg(), "no-such-user-js", &["open_session"]);
    assert!(!ok && log.contains("no such user 'no-such-user-js'"), "{log}");
}

#[test]
fn bad_configuration_is_refused_naming_the_key() {
    if !can_wrap("bad_configuration_is_refused_naming_the_key") {
        return;
    }
    let user = TestUser::create("jsf");
    let state = StateDir::new();
    let file = PathBuf::from(format!("/run/{}.toml", unique("cfg")));
    std::fs::write(&file, "debug = true\nruntime_dir = \"/tmp\"\n").unwrap();
    let cases = [
        (format!("{} config={}", state.arg(), file.display()), "unknown setting 'runtime_dir'".to_string()),
        (format!("{} min_uid=lots", state.arg()), "invalid value 'lots' for 'min_uid'".into()),
        (format!("{} frobnicate=1", state.arg()), "unknown setting 'frobnicate'".into()),
        (format!("{} config=/nonexistent.toml", state.arg()), "cannot read config file /nonexistent.toml".into()),
    ];
    for (args, expected) in cases {
        let (ok, log) = wrapped(&args, &user.name, &["open_session"]);
        assert!(!ok, "{args}: {log}");
        assert!(log.contains("configuration error, session refused") && log.contains(&expected), "{args}: {log}");
        if args.contains(".toml") && expected.contains("runtime_dir") {
            assert!(log.contains("line 2"), "{log}");
        }
        assert!(!user.runtime_dir().exists());
    }
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn killed_host_leaves_a_stale_record_that_the_next_session_reaps() {
    if !require_root("killed_host_leaves_a_stale_record_that_the_next_session_reaps", &[]) {
        return;
    }
    let user = TestUser::create("jsg");
    let state = StateDir::new();
    let svc = PamService::with_module("jst", &state, "");
    let killed = SessionHolder::open(&svc.name, &user.name);
    assert_eq!(state.records(user.uid), 1);
    killed.kill();
    // The record is stale now; the dir stays until a session settles it.
    assert!(user.runtime_dir().exists());
    assert_eq!(state.records(user.uid), 1);
    let next = SessionHolder::open(&svc.name, &user.name);
    assert_eq!(state.records(user.uid), 1, "the stale record was reaped by the next open");
    assert_eq!(next.close(), "CLOSED 0");
    assert_eq!(state.records(user.uid), 0);
    assert!(!user.runtime_dir().exists(), "removed at the real last close");

    // Killed again, then only `gc` runs: it reaps and removes.
    SessionHolder::open(&svc.name, &user.name).kill();
    let config = PathBuf::from(format!("/run/{}.toml", unique("cfg")));
    std::fs::write(&config, format!("state_dir = \"{}\"\n", state.0.display())).unwrap();
    let out = run_ok(Command::new(cli_path()).arg("gc").arg("--config").arg(&config));
    let log = text(&out);
    assert!(log.contains("reaped stale session") && log.contains("removed /run/user/"), "{log}");
    assert!(!user.runtime_dir().exists());
    std::fs::remove_file(&config).unwrap();
}

#[test]
fn a_running_user_process_keeps_a_used_dir_until_it_ends() {
    if !require_root("a_running_user_process_keeps_a_used_dir_until_it_ends", &["setpriv"]) {
        return;
    }
    let user = TestUser::create("jsh");
    let state = StateDir::new();
    let svc = PamService::with_module("jst", &state, "");
    let as_user = |script: &str| {
        let (uid, gid) = (user.uid.to_string(), user.gid.to_string());
        Command::new("setpriv")
            .args(["--reuid", &uid, "--regid", &gid, "--clear-groups", "sh", "-c", script])
            .spawn()
            .unwrap()
    };
    // A process of the user outliving the session that keeps state in the
    // dir (think `podman run -d`: conmon, the container's runtime files).
    let h = SessionHolder::open(&svc.name, &user.name);
    let rt = user.runtime_dir().display().to_string();
    let mut straggler = as_user(&format!("echo $$ > {rt}/conmon.pid && exec sleep 60"));
    while !user.runtime_dir().join("conmon.pid").exists() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(h.close(), "CLOSED 0");
    assert!(user.runtime_dir().join("conmon.pid").exists(), "kept, with its contents, while a process of the uid runs");
    straggler.kill().unwrap();
    straggler.wait().unwrap();
    // The next session's close settles it.
    let h = SessionHolder::open(&svc.name, &user.name);
    assert_eq!(h.close(), "CLOSED 0");
    assert!(!user.runtime_dir().exists());

    // Kept even while still empty: a server started in the session (sudo's
    // session closes as soon as the server is launched) uses it later.
    let h = SessionHolder::open(&svc.name, &user.name);
    let mut idle = as_user("exec sleep 60");
    while session_lib::procfs::processes_of_uid(user.uid).is_empty() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(h.close(), "CLOSED 0");
    assert!(user.runtime_dir().exists(), "kept while the user's server runs, empty or not");
    idle.kill().unwrap();
    idle.wait().unwrap();
    let config = PathBuf::from(format!("/run/{}.toml", unique("cfg")));
    std::fs::write(&config, format!("state_dir = \"{}\"\n", state.0.display())).unwrap();
    let out = run_ok(Command::new(cli_path()).arg("gc").arg("--config").arg(&config));
    assert!(text(&out).contains("removed /run/user/"), "gc settles it once the process ended: {}", text(&out));
    assert!(!user.runtime_dir().exists());
    std::fs::remove_file(&config).unwrap();
}

#[test]
fn torn_or_planted_records_do_not_break_the_user() {
    if !require_root("torn_or_planted_records_do_not_break_the_user", &["pamtester"]) {
        return;
    }
    let user = TestUser::create("jsi");
    let state = StateDir::new();
    let svc = PamService::with_module("jst", &state, "");
    run_ok(Command::new("pamtester").args([&svc.name, &user.name, "open_session"]));
    let dir = state.0.join("users").join(user.uid.to_string());
    std::fs::write(dir.join("p1-2-0.json"), "{\"version\":1,\"ui").unwrap();
    std::fs::write(dir.join("garbage.json"), [0xff, 0xfe, 0x00]).unwrap();
    let out = pamtester(&svc.name, &user.name, &["open_session", "close_session"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!dir.join("p1-2-0.json").exists() && !dir.join("garbage.json").exists());
    assert!(!user.runtime_dir().exists());
}

/// Start `n` holders at once (in parallel processes) and wait until all opened.
fn open_all(service: &str, users: &[&str]) -> Vec<SessionHolder> {
    let mut starting: Vec<SessionHolder> = users.iter().map(|u| SessionHolder::start(service, u)).collect();
    for (h, user) in starting.iter_mut().zip(users) {
        h.wait_open(user);
    }
    starting
}

fn close_all(mut holders: Vec<SessionHolder>) {
    for h in &mut holders {
        h.request_close();
    }
    for mut h in holders {
        assert_eq!(h.line(), "CLOSED 0");
        h.child.wait().unwrap();
    }
}

#[test]
fn sixty_four_sessions_of_one_user_in_parallel() {
    if !require_root("sixty_four_sessions_of_one_user_in_parallel", &[]) {
        return;
    }
    let user = TestUser::create("jsj");
    let state = StateDir::new();
    let svc = PamService::with_module("jst", &state, "");
    let names = vec![user.name.as_str(); 64];
    let holders = open_all(&svc.name, &names);
    assert_eq!(state.records(user.uid), 64);
    assert_eq!(owner_mode(&user.runtime_dir()), Some((user.uid, user.gid, 0o700)));
    close_all(holders);
    assert_eq!(state.records(user.uid), 0);
    assert!(!user.runtime_dir().exists());
}

#[test]
fn thirty_two_users_at_once() {
    if !require_root("thirty_two_users_at_once", &[]) {
        return;
    }
    let users: Vec<TestUser> = (0..32).map(|_| TestUser::create("jsk")).collect();
    let state = StateDir::new();
    let svc = PamService::with_module("jst", &state, "");
    let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
    let holders = open_all(&svc.name, &names);
    for u in &users {
        assert_eq!(state.records(u.uid), 1);
        assert_eq!(owner_mode(&u.runtime_dir()), Some((u.uid, u.gid, 0o700)));
    }
    close_all(holders);
    for u in &users {
        assert_eq!(state.records(u.uid), 0);
        assert!(!u.runtime_dir().exists());
    }
}

/// The mount entry (fstype and options) at `path`, from /proc/self/mountinfo.
fn mount_at(path: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().find(|l| l.split_whitespace().nth(4) == Some(path.to_str().unwrap())).map(str::to_string)
}

#[test]
fn per_user_tmpfs_is_mounted_and_unmounted() {
    if !require_root("per_user_tmpfs_is_mounted_and_unmounted", &[]) {
        return;
    }
    let user = TestUser::create("jsl");
    let state = StateDir::new();
    let svc = PamService::with_module("jst", &state, "tmpfs=true tmpfs_size=8M tmpfs_inodes=1000");
    let h = SessionHolder::open(&svc.name, &user.name);
    let rt = user.runtime_dir();
    let mount = mount_at(&rt).expect("a tmpfs is mounted on the runtime dir");
    assert!(mount.contains(" - tmpfs tmpfs "), "{mount}");
    assert!(mount.contains("nosuid") && mount.contains("nodev"), "{mount}");
    assert!(mount.contains("size=8192k") && mount.contains("nr_inodes=1000"), "{mount}");
    assert!(mount.contains(&format!("uid={}", user.uid)) && mount.contains("mode=700"), "{mount}");
    assert_eq!(owner_mode(&rt), Some((user.uid, user.gid, 0o700)));
    // The user's files live in the tmpfs and vanish with it.
    std::fs::write(rt.join("state"), "x").unwrap();
    let second = SessionHolder::open(&svc.name, &user.name);
    assert_eq!(mount_at(&rt).map(|_| ()), Some(()), "one mount shared by both sessions");
    assert_eq!(second.close(), "CLOSED 0");
    assert!(rt.join("state").exists());
    assert_eq!(h.close(), "CLOSED 0");
    assert!(mount_at(&rt).is_none(), "unmounted at the last close");
    assert!(!rt.exists());
}
