//! The per-user tmpfs, the default: real PAM stacks (libpam loading the
//! built module), real users, real mounts and mount namespaces. A user
//! filling her runtime dir must not stop anyone else's login (finding 1 of
//! issue 10); a PAM host in its own mount namespace must mount it where pid
//! 1 (everyone) sees it (finding 10); a mount refused for lack of privilege
//! falls back to a plain dir with a warning.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use jupyter_session_tests::*;

/// The mountinfo lines of `pid` whose mount point is `path`.
fn mounts_at(pid: &str, path: &Path) -> Vec<String> {
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    info.lines().filter(|l| l.split_whitespace().nth(4) == Some(path.to_str().unwrap())).map(str::to_string).collect()
}

fn mount_ns(pid: &str) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap()
}

/// The mount namespace pid 1 runs in: pid 1's own, or where root may not
/// read that (some VM inits), the kernel's (kthreadd's), as the module does.
fn pid1_mount_ns() -> PathBuf {
    std::fs::read_link("/proc/1/ns/mnt").unwrap_or_else(|_| mount_ns("2"))
}

/// `path` as the mount namespace of `pid` resolves it.
fn seen_by(pid: &str, path: &Path) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/root")).join(path.strip_prefix("/").unwrap())
}

/// A small tmpfs standing in for /run, lazily unmounted and removed on drop.
struct SmallRun(PathBuf);

impl SmallRun {
    fn new(size: &str) -> SmallRun {
        let dir = PathBuf::from(format!("/run/{}", unique("tmpfs-run")));
        std::fs::create_dir(&dir).unwrap();
        run_ok(Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"]).arg(&dir));
        SmallRun(dir)
    }
}

impl Drop for SmallRun {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_user_filling_her_runtime_dir_does_not_stop_other_logins() {
    if !require_root("a_user_filling_her_runtime_dir_does_not_stop_other_logins", &["runuser", "dd", "mount"]) {
        return;
    }
    let small = SmallRun::new("16M");
    let parent = small.0.join("user");
    let state = StateDir(small.0.join("state"));
    // The shipped defaults otherwise: no tmpfs setting at all.
    let svc = PamService::with_module("jst", &state, &format!("runtime_dir_parent={}", parent.display()));
    let alice = TestUser::create("jsf");
    let bob = TestUser::create("jsf");
    let a = SessionHolder::open(&svc.name, &alice.name);
    let rt = parent.join(alice.uid.to_string());
    // Alice writes 32 MiB, twice what the whole "/run" holds.
    let dd = run(Command::new("runuser")
        .args(["-u", &alice.name, "--", "dd", "if=/dev/zero", "bs=1M", "count=32"])
        .arg(format!("of={}/fill", rt.display())));
    let dd_text = String::from_utf8_lossy(&dd.stderr).to_string();
    eprintln!("alice's dd: {dd_text}");
    // Bob's real open_session (the registry on the same small "/run").
    let b = SessionHolder::open(&svc.name, &bob.name);
    assert!(dd.status.success(), "alice's own tmpfs holds 32 MiB: {dd_text}");
    assert_eq!(std::fs::metadata(rt.join("fill")).unwrap().len(), 32 << 20);
    assert_eq!(b.close(), "CLOSED 0");
    assert_eq!(a.close(), "CLOSED 0");
    assert!(!rt.exists(), "alice's dir removed at her last close");
}

#[test]
fn a_host_in_its_own_mount_namespace_mounts_where_everyone_sees_it() {
    if !require_root("a_host_in_its_own_mount_namespace_mounts_where_everyone_sees_it", &["unshare", "nsenter"]) {
        return;
    }
    assert_eq!(mount_ns("self"), pid1_mount_ns(), "the test runs in pid 1's mount namespace");
    for propagation in ["private", "slave"] {
        let user = TestUser::create("jsn");
        let state = StateDir::new();
        let svc = PamService::with_module("jst", &state, "tmpfs=true tmpfs_size=8M tmpfs_inodes=1000");
        let flag = format!("--propagation={propagation}");
        let mut h = SessionHolder::start_under(&["unshare", "-m", &flag], &svc.name, &user.name);
        h.wait_open(&user.name);
        let host = h.child.id().to_string();
        assert_ne!(mount_ns(&host), mount_ns("self"), "{propagation}: the PAM host has its own mount namespace");
        let rt = user.runtime_dir();
        let outside = mounts_at("self", &rt);
        let inside = mounts_at(&host, &rt);
        for (who, m) in [("the test's (pid 1's)", &outside), ("the host's", &inside)] {
            assert_eq!(m.len(), 1, "{propagation}: one mount at {} in {who} namespace: {m:?}", rt.display());
            assert!(m[0].contains(" - tmpfs tmpfs "), "{propagation}: {who}: {m:?}");
            assert!(m[0].contains("size=8192k") && m[0].contains("nr_inodes=1000"), "{propagation}: {who}: {m:?}");
            assert!(m[0].contains("nosuid") && m[0].contains("nodev"), "{propagation}: {who}: {m:?}");
        }
        let dev = |line: &str| line.split_whitespace().nth(2).unwrap().to_string();
        assert_eq!(dev(&outside[0]), dev(&inside[0]), "{propagation}: the same tmpfs in both");
        std::fs::write(rt.join("seen"), "x").unwrap();
        assert_eq!(std::fs::read_to_string(seen_by(&host, &rt).join("seen")).unwrap(), "x", "{propagation}");
        assert_eq!(owner_mode(&seen_by(&host, &rt)), Some((user.uid, user.gid, 0o700)), "{propagation}");
        // Something else keeps the host's namespace alive past the close.
        let mut witness =
            Command::new("nsenter").args(["-t", &host, "-m", "--", "sleep", "60"]).spawn().expect("nsenter runs");
        std::thread::sleep(std::time::Duration::from_millis(200));
        let witness_pid = witness.id().to_string();
        assert_eq!(mount_ns(&witness_pid), mount_ns(&host));
        assert_eq!(h.close(), "CLOSED 0");
        assert!(mounts_at("self", &rt).is_empty(), "{propagation}: unmounted in the test's (pid 1's) namespace");
        assert!(mounts_at(&witness_pid, &rt).is_empty(), "{propagation}: unmounted in the host's namespace");
        assert!(!rt.exists(), "{propagation}: dir removed");
        let _ = witness.kill();
        let _ = witness.wait();
    }
}

/// pamtester under pam_wrapper (which shows the pam_syslog lines with their
/// priority), started through `wrapper`.
fn wrapped(wrapper: &[&str], module_args: &str, user: &str) -> (bool, String) {
    wrapped_pamtester(wrapper, module_args, user, &["open_session", "close_session"])
}

#[test]
fn a_mount_refused_for_lack_of_privilege_falls_back_with_a_warning() {
    if !require_root(
        "a_mount_refused_for_lack_of_privilege_falls_back_with_a_warning",
        &["pamtester", "setpriv", "unshare"],
    ) {
        return;
    }
    let user = TestUser::create("jsp");
    let state = StateDir::new();
    let rt = user.runtime_dir();
    let no_sys_admin = ["setpriv", "--bounding-set", "-sys_admin"];
    // In pid 1's namespace, without CAP_SYS_ADMIN: mount(2) says EPERM.
    // In its own namespace (made before the capability is dropped): setns
    // into pid 1's is refused.
    let own_ns: Vec<&str> = ["unshare", "-m"].into_iter().chain(no_sys_admin).collect();
    for (what, wrapper, expect) in [
        ("pid 1's namespace", &no_sys_admin[..], "refused for lack of privilege"),
        ("its own namespace", &own_ns[..], "may not enter pid 1's (setns: Operation not permitted)"),
    ] {
        // No `debug`: the warning must show without it.
        let (ok, log) = wrapped(wrapper, &format!("{} tmpfs=true", state.arg()), &user.name);
        assert!(ok, "{what}: {log}");
        let warning =
            log.lines().find(|l| l.contains(expect)).unwrap_or_else(|| panic!("{what}: no fallback line: {log}"));
        assert!(warning.contains("using a plain directory"), "{what}: {warning}");
        // pam_wrapper prints the pam_syslog priority: LOG_WARNING is 4.
        assert!(
            warning.contains("SYSLOG(4)") || warning.contains("PWRAP_LOG_WARN"),
            "{what}: not a warning: {warning}"
        );
        assert!(!rt.exists(), "{what}: the plain dir is removed at the close");
    }
}

#[test]
fn a_bad_mount_option_refuses_the_dir_instead_of_falling_back() {
    use session_lib::config::Config;
    use session_lib::runtime_dir::{RuntimeDirError, RuntimeDirs};
    use session_lib::selinux::Labeler;
    if !require_root("a_bad_mount_option_refuses_the_dir_instead_of_falling_back", &[]) {
        return;
    }
    if session_lib::selinux::enabled() {
        eprintln!("SKIPPED a_bad_mount_option_refuses_the_dir_instead_of_falling_back: needs a kernel without SELinux");
        return;
    }
    // A label from file contexts makes the module pass rootcontext=, which
    // tmpfs refuses (EINVAL) on a kernel without SELinux: a bad option.
    let root = PathBuf::from(format!("/run/{}", unique("badopt")));
    std::fs::create_dir(&root).unwrap();
    let fc = root.join("file_contexts");
    std::fs::write(&fc, format!("{}/user/[0-9]+\t-d\tsystem_u:object_r:user_runtime_t:s0\n", root.display())).unwrap();
    let config = Config { runtime_dir_parent: root.join("user"), tmpfs: true, ..Config::default() };
    let dirs = RuntimeDirs::new(&config).with_selinux_labels(Labeler::with_file_contexts(&fc));
    let outcome = dirs.ensure(54329, 54329);
    let left = dirs.path_for(54329).exists();
    if let Ok(p) = &outcome
        && let Some(c) = p.created
    {
        let _ = dirs.remove(54329, &c);
    }
    std::fs::remove_dir_all(&root).unwrap();
    let err = outcome.expect_err("a mount option tmpfs refuses must refuse the dir, not fall back");
    assert!(matches!(err, RuntimeDirError::Mount { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("rootcontext=") && msg.contains("Invalid argument") && msg.contains("tmpfs = false"), "{msg}");
    assert!(!left, "nothing left behind");
}

#[test]
fn gc_after_a_killed_private_namespace_host_unmounts_everywhere() {
    if !require_root("gc_after_a_killed_private_namespace_host_unmounts_everywhere", &["unshare", "nsenter"]) {
        return;
    }
    let user = TestUser::create("jsg");
    let state = StateDir::new();
    let svc = PamService::with_module("jst", &state, "tmpfs=true tmpfs_size=8M");
    let config = PathBuf::from(format!("/run/{}.toml", unique("cfg")));
    std::fs::write(&config, format!("state_dir = \"{}\"\ntmpfs = true\n", state.0.display())).unwrap();
    let mut h = SessionHolder::start_under(&["unshare", "-m", "--propagation=private"], &svc.name, &user.name);
    h.wait_open(&user.name);
    let host = h.child.id().to_string();
    let rt = user.runtime_dir();
    let mut witness =
        Command::new("nsenter").args(["-t", &host, "-m", "--", "sleep", "60"]).spawn().expect("nsenter runs");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let witness_pid = witness.id().to_string();
    assert_eq!(mounts_at("self", &rt).len(), 1, "mounted in pid 1's namespace");
    assert_eq!(mounts_at(&witness_pid, &rt).len(), 1, "and in the host's");
    // The host dies without closing: its record goes stale, the host's
    // namespace lives on (the witness).
    h.kill();
    let gc = run(Command::new(cli_path()).args(["gc", "--config"]).arg(&config));
    let gc_text = format!("{}{}", String::from_utf8_lossy(&gc.stdout), String::from_utf8_lossy(&gc.stderr));
    let left_here = mounts_at("self", &rt);
    let left_there = mounts_at(&witness_pid, &rt);
    let _ = witness.kill();
    let _ = witness.wait();
    let _ = std::fs::remove_file(&config);
    assert!(gc.status.success(), "{gc_text}");
    assert!(left_here.is_empty(), "gc unmounted it in pid 1's namespace: {left_here:?}\n{gc_text}");
    assert!(left_there.is_empty(), "and in the dead host's namespace: {left_there:?}\n{gc_text}");
    assert!(!rt.exists(), "{gc_text}");
    assert_eq!(state.records(user.uid), 0);
}

#[test]
fn a_host_with_its_own_run_user_is_refused_not_given_a_private_tmpfs() {
    if !require_root("a_host_with_its_own_run_user_is_refused_not_given_a_private_tmpfs", &["pamtester", "unshare"]) {
        return;
    }
    let user = TestUser::create("jsr");
    let state = StateDir::new();
    // The host's namespace has its own /run/user (like TemporaryFileSystem=):
    // the dir it creates does not exist in pid 1's namespace.
    let own_run_user = [
        "unshare",
        "-m",
        "--propagation=private",
        "sh",
        "-c",
        "mount -t tmpfs -o mode=0755 tmpfs /run/user && exec \"$0\" \"$@\"",
    ];
    let (ok, log) = wrapped(&own_run_user, &format!("{} tmpfs=true", state.arg()), &user.name);
    assert!(!ok, "{log}");
    assert!(log.contains("is not the directory this PAM host created") && log.contains("tmpfs = false"), "{log}");
    assert!(mounts_at("self", &user.runtime_dir()).is_empty());
    assert!(!user.runtime_dir().exists());
    assert_eq!(state.records(user.uid), 0, "nothing registered");
}
