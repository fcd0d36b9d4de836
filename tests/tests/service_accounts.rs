//! Service accounts (`service_users`): a real `useradd --system` account
//! below min_uid, real /etc/pam.d stacks, the built keeper and CLI, a
//! private state dir and config file per test. One config for the keeper
//! and the module (the keeper refuses and closes the session otherwise),
//! `ensure`, and `gc --user` / `--id-prefix` / `--older-than` scoping.
#![forbid(unsafe_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use jupyter_session_tests::*;

/// A root-owned 0644 config file in /run (root's 0755 dir), removed on drop.
pub struct ConfigFile(pub PathBuf);

impl ConfigFile {
    fn new(state: &StateDir, extra: &str) -> ConfigFile {
        let path = PathBuf::from(format!("/run/{}.toml", unique("svccfg")));
        fs::write(&path, format!("state_dir = \"{}\"\n{extra}", state.0.display())).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        ConfigFile(path)
    }

    fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn out(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `jupyter-session exec [--config FILE] --service SVC --user USER -- CMD...`.
fn keeper(config: Option<&ConfigFile>, svc: &PamService, user: &str, cmd: &[&str]) -> Output {
    let mut c = keeper_cmd();
    c.arg("exec");
    if let Some(config) = config {
        c.args(["--config", config.arg()]);
    }
    c.args(&exec_args(&svc.name, user, cmd)[1..]);
    run(&mut c)
}

fn cli(config: &ConfigFile, args: &[&str]) -> Output {
    run(Command::new(cli_path()).arg(args[0]).args(["--config", config.arg()]).args(&args[1..]))
}

fn records(state: &StateDir, uid: u32) -> usize {
    state.records(uid)
}

fn no_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).is_err()
}

#[test]
fn keeper_and_module_use_one_config_for_a_service_account() {
    if !require_root("keeper_and_module_use_one_config_for_a_service_account", &["useradd", "usermod"]) {
        return;
    }
    let svc = TestUser::create_system("svca");
    assert!(svc.uid < 1000, "useradd --system gives a uid below min_uid: {}", svc.uid);
    let state = StateDir::new();
    let config = ConfigFile::new(&state, &format!("service_users = [\"{}\"]\n", svc.name));

    // Agreement: the module reads the keeper's file. The session opens, the
    // account gets its dir and XDG_RUNTIME_DIR; the report variables do
    // not reach the command; the dir outlives the session (lingering).
    let agreeing = PamService::create(
        "svcs",
        &["account required pam_permit.so", &format!("session required @MODULE@ config={}", config.arg())],
    );
    let o = keeper(Some(&config), &agreeing, &svc.name, &["env"]);
    assert!(o.status.success(), "{}", out(&o));
    let env = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(env.contains(&format!("XDG_RUNTIME_DIR=/run/user/{}\n", svc.uid)), "{env}");
    assert!(!env.contains("JUPYTER_SESSION_"), "the keeper's nonce and the module's report stay out: {env}");
    assert_eq!(owner_mode(&svc.runtime_dir()), Some((svc.uid, svc.gid, 0o700)));
    assert_eq!(records(&state, svc.uid), 0, "closed");
    assert!(svc.runtime_dir().is_dir(), "a service user's dir is never removed by a close");

    // The module reads the default file, the keeper was given another:
    // refused (125), naming both files; nothing is left of it.
    run_ok(Command::new("umount").arg(svc.runtime_dir()));
    fs::remove_dir(svc.runtime_dir()).unwrap();
    let default_module = PamService::create(
        "svcs",
        &[
            "account required pam_permit.so",
            &format!("session required @MODULE@ {}", state.arg()),
            // As in a real stack (pam_unix...): a PAM_IGNORE of the module alone is no failure.
            "session optional pam_permit.so",
        ],
    );
    let ran = PathBuf::from(format!("/tmp/{}", unique("svc-ran")));
    let o = keeper(Some(&config), &default_module, &svc.name, &["touch", ran.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(125), "{}", out(&o));
    let msg = out(&o);
    assert!(
        msg.contains("/etc/security/jupyter-session.toml")
            && msg.contains(config.arg())
            && msg.contains(&format!("config={}", config.arg())),
        "{msg}"
    );
    let ran_anyway = !no_dir(&ran);
    let _ = fs::remove_file(&ran);
    assert!(!ran_anyway, "the command did not run");
    assert!(no_dir(&svc.runtime_dir()));

    // The same for a user both configs manage: the module opened a session
    // (dir, record) with its config; the keeper refuses and closes it again.
    let alice = TestUser::create("svcu");
    let o = keeper(Some(&config), &default_module, &alice.name, &["true"]);
    assert_eq!(o.status.code(), Some(125), "{}", out(&o));
    assert!(out(&o).contains("the session was closed again"), "{}", out(&o));
    assert_eq!(records(&state, alice.uid), 0, "nothing half-done: no record");
    assert!(no_dir(&alice.runtime_dir()), "nothing half-done: no runtime dir");

    // No pam_jupyter in the stack at all: refused, not a session without a dir.
    let bare = PamService::create("svcs", &["account required pam_permit.so", "session required pam_permit.so"]);
    let o = keeper(Some(&config), &bare, &svc.name, &["true"]);
    assert_eq!(o.status.code(), Some(125), "{}", out(&o));
    assert!(out(&o).contains("pam_jupyter did not run") && out(&o).contains(&bare.path.display().to_string()));
    let o = keeper(None, &bare, &alice.name, &["true"]);
    assert_eq!(o.status.code(), Some(125), "{}", out(&o));

    // The module's arguments override who is managed: the two disagree.
    let overriding = PamService::create(
        "svcs",
        &["account required pam_permit.so", &format!("session required @MODULE@ config={} min_uid=500", config.arg())],
    );
    let o = keeper(Some(&config), &overriding, &alice.name, &["true"]);
    assert_eq!(o.status.code(), Some(125), "{}", out(&o));
    assert!(out(&o).contains("module arguments override min_uid"), "{}", out(&o));
    assert_eq!(records(&state, alice.uid), 0);
    assert!(no_dir(&alice.runtime_dir()));

    // The reverse: the module has the file, the keeper not: the hint names
    // the keeper's (default) file, service_users, config= and --config.
    let o = keeper(None, &agreeing, &svc.name, &["true"]);
    assert_eq!(o.status.code(), Some(125), "{}", out(&o));
    let msg = out(&o);
    assert!(msg.contains("below min_uid 1000 of /etc/security/jupyter-session.toml"), "{msg}");
    assert!(msg.contains(&format!("service_users = [\"{}\"]", svc.name)) && msg.contains("--config"), "{msg}");
    assert!(no_dir(&svc.runtime_dir()));

    // check --user reports what decides it and what the keeper would do.
    let o = cli(&config, &["check", "--user", &svc.name, "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", out(&o)));
    let finding =
        |id: &str| doc["findings"].as_array().unwrap().iter().find(|f| f["id"] == id).cloned().unwrap_or_default();
    let managed = finding("session.managed");
    assert_eq!(managed["status"], "pass", "{managed:#}");
    let observed = managed["observed"].as_str().unwrap();
    assert!(observed.contains("on service_users") && observed.contains("opens a session"), "{observed}");
    assert!(managed["evidence"].as_str().unwrap().contains("min_uid = 1000"), "{managed:#}");
    let registered = finding("session.registered");
    assert_eq!(registered["status"], "pass", "linger-aware: {registered:#}");
    let o = run(Command::new(cli_path()).args(["check", "--user", &svc.name, "--json"]));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", out(&o)));
    let managed = doc["findings"].as_array().unwrap().iter().find(|f| f["id"] == "session.managed").unwrap();
    assert_eq!(managed["status"], "warn", "{managed:#}");
    assert!(managed["observed"].as_str().unwrap().contains("below min_uid"), "{managed:#}");
}

#[test]
fn service_users_root_and_unknown_names_are_refused_clearly() {
    if !require_root("service_users_root_and_unknown_names_are_refused_clearly", &[]) {
        return;
    }
    let state = StateDir::new();
    // Root, by name: refused at load by every command and by the module.
    let root = ConfigFile::new(&state, "service_users = [\"root\"]\n");
    for args in [vec!["gc"], vec!["ensure"], vec!["check", "--user", "root"]] {
        let o = cli(&root, &args);
        assert_eq!(o.status.code(), Some(125), "{args:?}: {}", out(&o));
        assert!(out(&o).contains("'service_users'") && out(&o).contains("without root"), "{args:?}: {}", out(&o));
    }
    // A name not in passwd loads (LDAP may be down) but is an error where it is used.
    let alice = TestUser::create("svcn");
    let unknown = ConfigFile::new(&state, "service_users = [\"no-such-svc-js\"]\n");
    let o = cli(&unknown, &["ensure"]);
    assert_eq!(o.status.code(), Some(125), "{}", out(&o));
    assert!(out(&o).contains("no such user 'no-such-svc-js'") && out(&o).contains("service_users"), "{}", out(&o));
    let o = cli(&unknown, &["check", "--user", &alice.name, "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", out(&o)));
    let managed = doc["findings"].as_array().unwrap().iter().find(|f| f["id"] == "session.managed").unwrap();
    assert_eq!(managed["status"], "warn", "{managed:#}");
    assert!(managed["observed"].as_str().unwrap().contains("no-such-svc-js not in passwd"), "{managed:#}");
    if require_pam_wrapper("service_users_root_and_unknown_names_are_refused_clearly") {
        let args = format!("config={}", unknown.arg());
        let (ok, log) = wrapped_pamtester(&[], &args, "no-such-svc-js", &["open_session"]);
        assert!(!ok, "{log}");
        assert!(log.contains("no such user 'no-such-svc-js'") && log.contains("is on service_users"), "{log}");
        assert!(no_dir(&state.0.join("users")), "nothing registered");
    }
}

#[test]
fn ensure_makes_lingering_dirs_and_gc_is_scoped() {
    if !require_root("ensure_makes_lingering_dirs_and_gc_is_scoped", &["useradd", "usermod"]) {
        return;
    }
    let svc = TestUser::create_system("svce");
    let lingering = TestUser::create("svcl");
    let alice = TestUser::create("svcg");
    let state = StateDir::new();
    let config = ConfigFile::new(
        &state,
        &format!("service_users = [\"{}\"]\nlinger_users = [\"{}\"]\n", svc.name, lingering.name),
    );

    // Bad input: unknown, root, managed but not lingering, not managed.
    for (user, expected) in [
        ("no-such-user-js", "no such user 'no-such-user-js'".to_string()),
        ("root", "(uid 0) is root".to_string()),
        (alice.name.as_str(), format!("{} is neither on linger_users nor on service_users", alice.name)),
        ("daemon", "below min_uid 1000".to_string()),
    ] {
        let o = cli(&config, &["ensure", "--user", user]);
        assert_eq!(o.status.code(), Some(125), "{user}: {}", out(&o));
        assert!(out(&o).contains(&expected), "{user}: {expected}\n{}", out(&o));
    }
    assert!(no_dir(&alice.runtime_dir()));

    // At boot: every lingering and service user's dir, without a session; again: idempotent.
    let o = cli(&config, &["ensure"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains(&format!("created /run/user/{}", svc.uid)), "{}", out(&o));
    for u in [&svc, &lingering] {
        assert_eq!(owner_mode(&u.runtime_dir()), Some((u.uid, u.gid, 0o700)), "{}", u.name);
        assert_eq!(records(&state, u.uid), 0);
    }
    let o = cli(&config, &["ensure", "--user", &svc.name]);
    assert!(o.status.success() && out(&o).contains("present"), "{}", out(&o));
    let o = cli(&config, &["gc"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(svc.runtime_dir().is_dir() && lingering.runtime_dir().is_dir(), "gc keeps lingering dirs: {}", out(&o));

    // Id sessions: the service's never expire; scoping by user and by prefix.
    let api = unique("svc-api-");
    let job = unique("slurm-");
    for (user, id) in [(&svc, &api), (&alice, &job)] {
        let o = cli(&config, &["open", "--user", &user.name, "--id", id]);
        assert!(o.status.success(), "{}", out(&o));
    }
    let o = cli(&config, &["gc", "--older-than", "0", "--user", &svc.name]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains(&format!("kept session {api} of {}", svc.name)), "{}", out(&o));
    assert_eq!((records(&state, svc.uid), records(&state, alice.uid)), (1, 1), "--user touched only its user");
    let o = cli(&config, &["gc", "--older-than", "0", "--id-prefix", "svc-api-"]);
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!((records(&state, svc.uid), records(&state, alice.uid)), (1, 1), "{}", out(&o));
    let o = cli(&config, &["gc", "--older-than", "0", "--id-prefix", "slurm-"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains(&format!("closed expired session {job}")), "{}", out(&o));
    assert_eq!((records(&state, svc.uid), records(&state, alice.uid)), (1, 0));
    assert!(no_dir(&alice.runtime_dir()));
    let o = cli(&config, &["gc", "--older-than", "0"]);
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(records(&state, svc.uid), 1, "never expired: {}", out(&o));
    assert!(svc.runtime_dir().is_dir());

    // Bad scopes.
    let o = cli(&config, &["gc", "--user", "no-such-user-js"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(out(&o).contains("gc --user: no such user 'no-such-user-js'"), "{}", out(&o));
    let o = cli(&config, &["gc", "--id-prefix", "../x"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(out(&o).contains("gc --id-prefix: '../x' cannot begin a session id"), "{}", out(&o));
    let o = cli(&config, &["close", "--id", &api]);
    assert!(o.status.success(), "{}", out(&o));
}
