//! What root trusts: config files (sshd StrictModes-like ownership rules,
//! through a real /etc/pam.d stack and through the CLI), the registry's
//! files under a hostile umask, a state dir below a user-writable dir, and
//! `gc` with one user's lock held by another process.
#![forbid(unsafe_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use jupyter_session_tests::*;

fn text(out: &Output) -> String {
    stdout_and_stderr(out)
}

fn pamtester(service: &str, user: &str, ops: &[&str]) -> Output {
    run(Command::new("pamtester").arg(service).arg(user).args(ops))
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), None).unwrap();
}

/// A file or dir under /run removed on drop.
struct Scratch(PathBuf);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(&self.0);
    }
}

/// pamtester under pam_wrapper with a private service dir: the real libpam
/// and module, and the module's pam_syslog lines in the output.
fn wrapped(module_args: &str, user: &str, ops: &[&str]) -> (bool, String) {
    wrapped_pamtester(&[], module_args, user, ops)
}

/// A directory entry's name, and its (uid, gid, mode).
type Listed = (String, Option<(u32, u32, u32)>);

/// Each entry of a directory.
fn files_in(dir: &Path) -> Vec<Listed> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), owner_mode(&e.path())))
        .collect()
}

fn cli(args: &[&str]) -> Output {
    run(keeper_cmd().args(args))
}

#[test]
fn untrusted_config_files_are_refused_by_the_module_and_the_cli() {
    if !require_root("untrusted_config_files_are_refused_by_the_module_and_the_cli", &["pamtester"]) {
        return;
    }
    let user = TestUser::create("jsct");
    let state = StateDir::new();
    let body = format!("state_dir = \"{}\"\n", state.0.display());

    // 1. A file the user owns (0644).
    let owned = Scratch(PathBuf::from(format!("/run/{}.toml", unique("cfg"))));
    std::fs::write(&owned.0, &body).unwrap();
    chmod(&owned.0, 0o644);
    chown(&owned.0, user.uid);
    // 2. Root's, but group-writable (0664).
    let group = Scratch(PathBuf::from(format!("/run/{}.toml", unique("cfg"))));
    std::fs::write(&group.0, &body).unwrap();
    chmod(&group.0, 0o664);
    // 3. Root's 0644, in a directory the user owns (she can replace it).
    let dir = Scratch(PathBuf::from(format!("/run/{}", unique("cfgd"))));
    std::fs::create_dir(&dir.0).unwrap();
    chmod(&dir.0, 0o755);
    chown(&dir.0, user.uid);
    let below = dir.0.join("c.toml");
    std::fs::write(&below, &body).unwrap();
    chmod(&below, 0o644);

    let cases = [
        (
            &owned.0,
            owned.0.clone(),
            format!("is not owned by root (owner {} (uid {}), mode 0644)", user.name, user.uid),
        ),
        (&group.0, group.0.clone(), "is writable by group or others (owner root (uid 0), mode 0664)".to_string()),
        (&below, dir.0.clone(), format!("is not owned by root (owner {} (uid {}), mode 0755)", user.name, user.uid)),
    ];
    for (file, culprit, why) in &cases {
        let file = file.as_path();
        let expected = format!("refusing config file {}: {} {why}", file.display(), culprit.display());
        // A real /etc/pam.d stack: the session is refused, nothing is made.
        let svc = PamService::create("jsct", &[&format!("session required @MODULE@ config={}", file.display())]);
        let out = pamtester(&svc.name, &user.name, &["open_session", "close_session"]);
        assert!(!out.status.success(), "{}: accepted: {}", file.display(), text(&out));
        assert!(!user.runtime_dir().exists(), "{}", file.display());
        assert!(!state.0.exists(), "{}: the untrusted file's state_dir was used", file.display());
        // The module's log line (pam_syslog, shown by pam_wrapper) names it.
        let (ok, log) = wrapped(&format!("config={}", file.display()), &user.name, &["open_session"]);
        assert!(!ok, "{log}");
        assert!(log.contains("configuration error, session refused") && log.contains(&expected), "{expected}\n{log}");
        assert!(log.contains(&format!("chown root:root {}", culprit.display())), "{log}");
        // The CLI: every subcommand that loads the file exits 125, saying the same.
        let f = file.to_str().unwrap();
        for args in [
            vec!["gc", "--config", f],
            vec!["list", "--config", f],
            vec!["open", "--config", f, "--user", &user.name, "--id", "x1"],
            vec!["close", "--config", f, "--id", "x1"],
            vec!["check", "--config", f],
            vec!["exec", "--config", f, "--user", &user.name, "--", "true"],
        ] {
            let out = cli(&args);
            assert_eq!(out.status.code(), Some(125), "{args:?}: {}", text(&out));
            assert!(text(&out).contains(&expected), "{args:?}: {expected}\n{}", text(&out));
        }
        assert!(!state.0.exists());
    }

    // A root-owned 0644 file in root's directories is accepted.
    let good = Scratch(PathBuf::from(format!("/run/{}.toml", unique("cfg"))));
    std::fs::write(&good.0, &body).unwrap();
    chmod(&good.0, 0o644);
    let svc = PamService::create("jsct", &[&format!("session required @MODULE@ config={}", good.0.display())]);
    let out = pamtester(&svc.name, &user.name, &["open_session", "close_session"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(state.0.join("users").join(user.uid.to_string()).is_dir(), "the trusted file's state_dir was used");
    let out = cli(&["gc", "--config", good.0.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn registry_files_have_exact_modes_under_umask_000() {
    if !require_root("registry_files_have_exact_modes_under_umask_000", &["pamtester"]) {
        return;
    }
    let user = TestUser::create("jscu");
    let state = StateDir::new();
    let svc = PamService::with_module("jscu", &state, "");
    // open_session only: pamtester exits with the session open, so its
    // record (stale now), the lock and the runtime-dir marker stay to look at.
    let out = run(Command::new("sh")
        .arg("-c")
        .arg(format!("umask 000; exec pamtester {} {} open_session", svc.name, user.name)));
    assert!(out.status.success(), "{}", text(&out));
    let udir = state.0.join("users").join(user.uid.to_string());
    let pam_files = files_in(&udir);
    // An id session too, for the ids index (the CLI under umask 000; its
    // open reaps the stale record above, which is why that was listed first).
    let config = Scratch(PathBuf::from(format!("/run/{}.toml", unique("cfg"))));
    std::fs::write(&config.0, format!("state_dir = \"{}\"\n", state.0.display())).unwrap();
    let out = run(Command::new("sh").arg("-c").arg(format!(
        "umask 000; exec {} open --config {} --user {} --id umask-test",
        cli_path().display(),
        config.0.display(),
        user.name
    )));
    assert!(out.status.success(), "{}", text(&out));
    let files: Vec<Listed> =
        pam_files.into_iter().chain(files_in(&udir)).chain(files_in(&state.0.join("ids"))).collect();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    for want in ["lock", "runtime-dir", "id-umask-test.json", "umask-test"] {
        assert!(names.contains(&want), "{want} missing in {names:?}");
    }
    assert!(names.iter().any(|n| n.starts_with('p') && n.ends_with(".json")), "{names:?}");
    for (name, mode) in &files {
        assert_eq!(*mode, Some((0, 0, 0o600)), "{name}");
    }
    for d in [state.0.clone(), state.0.join("users"), state.0.join("ids"), udir] {
        assert_eq!(owner_mode(&d), Some((0, 0, 0o700)), "{}", d.display());
    }
    let out =
        run(Command::new(cli_path()).args(["close", "--config", config.0.to_str().unwrap(), "--id", "umask-test"]));
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn state_dir_below_a_user_writable_dir_is_refused() {
    if !require_root("state_dir_below_a_user_writable_dir_is_refused", &["pamtester"]) {
        return;
    }
    let user = TestUser::create("jscw");
    let dir = Scratch(PathBuf::from(format!("/run/{}", unique("stw"))));
    std::fs::create_dir(&dir.0).unwrap();
    chmod(&dir.0, 0o755);
    chown(&dir.0, user.uid);
    let state = dir.0.join("state");
    let line = format!("session required @MODULE@ state_dir={}", state.display());
    let svc = PamService::create("jscw", &[&line]);
    let out = pamtester(&svc.name, &user.name, &["open_session", "close_session"]);
    assert!(!out.status.success(), "accepted: {}", text(&out));
    assert!(!state.exists(), "the registry was made where the user can swap it");
    assert!(!user.runtime_dir().exists());
    let (ok, log) = wrapped(&format!("state_dir={}", state.display()), &user.name, &["open_session"]);
    assert!(!ok, "{log}");
    let expected =
        format!("refusing session state directory {}: {} is not owned by root", state.display(), dir.0.display());
    assert!(log.contains(&expected), "{expected}\n{log}");
}

#[test]
fn gc_skips_a_user_whose_lock_is_held_and_settles_the_others() {
    if !require_root("gc_skips_a_user_whose_lock_is_held_and_settles_the_others", &["pamtester", "flock"]) {
        return;
    }
    let busy = TestUser::create("jscb");
    let other = TestUser::create("jsco");
    let state = StateDir::new();
    let svc = PamService::with_module("jscg", &state, "");
    for u in [&busy, &other] {
        // pamtester exits with the session open: a stale record and a dir to remove.
        let out = pamtester(&svc.name, &u.name, &["open_session"]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(state.records(u.uid), 1);
        assert!(u.runtime_dir().is_dir());
    }
    let config = Scratch(PathBuf::from(format!("/run/{}.toml", unique("cfg"))));
    std::fs::write(&config.0, format!("state_dir = \"{}\"\n", state.0.display())).unwrap();
    // Another process holds the busy user's lock (as a stuck open would).
    let lock = state.0.join("users").join(busy.uid.to_string()).join("lock");
    // -o: the lock is flock's own (not inherited by sleep), so killing flock frees it.
    let mut holder =
        Command::new("flock").arg("-o").arg(&lock).args(["sleep", "120"]).stdout(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while run(Command::new("flock").args(["-n"]).arg(&lock).arg("true")).status.success() {
        assert!(Instant::now() < deadline, "flock never took the lock");
        std::thread::sleep(Duration::from_millis(10));
    }
    // gc must come back by itself; a watchdog kills it if it blocks.
    let mut gc = Command::new(cli_path())
        .args(["gc", "--config", config.0.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = gc.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            gc.kill().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = gc.wait_with_output().unwrap();
    let log = text(&out);
    let Some(status) = status else { panic!("gc blocked on the held lock (killed after 30 s): {log}") };
    assert!(status.success(), "gc failed: {status}: {log}");
    assert!(log.contains(&format!("uid {} busy, skipped", busy.uid)), "{log}");
    assert_eq!(state.records(other.uid), 0, "{log}");
    assert!(!other.runtime_dir().exists(), "{log}");
    assert_eq!(state.records(busy.uid), 1, "the busy user was left alone: {log}");
    assert!(busy.runtime_dir().is_dir());
    // Once the lock is free, the next gc settles the busy user too.
    holder.kill().unwrap();
    holder.wait().unwrap();
    let out = cli(&["gc", "--config", config.0.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(state.records(busy.uid), 0, "{}", text(&out));
    assert!(!busy.runtime_dir().exists(), "{}", text(&out));
}
