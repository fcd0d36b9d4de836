//! `jupyter-session open/close/list/gc`: sessions with explicit ids (a Slurm
//! prolog and epilog), run as the built CLI against real users and the real
//! /run/user, with a private state dir per test.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

use jupyter_session_tests::*;

/// The CLI with `--config` pointing at a file that sets a private state dir.
struct Cli {
    state: StateDir,
    config: PathBuf,
}

impl Cli {
    fn new() -> Cli {
        let state = StateDir::new();
        let config = PathBuf::from(format!("/run/{}.toml", unique("cfg")));
        std::fs::write(&config, format!("state_dir = \"{}\"\n", state.0.display())).unwrap();
        Cli { state, config }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(cli_path());
        cmd.arg(args[0]).arg("--config").arg(&self.config).args(&args[1..]);
        run(&mut cmd)
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}

fn out(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn slurm_style_lifecycle() {
    if !require_root("slurm_style_lifecycle", &[]) {
        return;
    }
    let cli = Cli::new();
    let alice = TestUser::create("jsm");
    let id = unique("slurm-");

    // Prolog: open, printing the environment for the job.
    let o = cli.run(&["open", "--user", &alice.name, "--id", &id, "--print-env"]);
    assert!(o.status.success(), "{}", out(&o));
    let env = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(env.contains(&format!("export XDG_RUNTIME_DIR='/run/user/{}'", alice.uid)), "{env}");
    assert!(env.contains("export PATH='/usr/local/bin:/usr/bin:/bin'"), "{env}");
    assert_eq!(owner_mode(&alice.runtime_dir()), Some((alice.uid, alice.gid, 0o700)));

    // The same id again for the same user (a Prolog run twice): no error, still one session.
    let o = cli.run(&["open", "--user", &alice.name, "--id", &id]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("again (it was already open for this user)"), "{}", out(&o));
    assert_eq!(cli.state.records(alice.uid), 1);
    // For another user: refused, nothing changed.
    let bob = TestUser::create("jsm");
    let o = cli.run(&["open", "--user", &bob.name, "--id", &id]);
    assert_eq!(o.status.code(), Some(125));
    assert!(out(&o).contains(&format!("a session with id '{id}' is already open")), "{}", out(&o));
    assert_eq!((cli.state.records(alice.uid), cli.state.records(bob.uid)), (1, 0));
    assert!(!bob.runtime_dir().exists(), "the refused open left no dir");

    // list, as text and JSON.
    let o = cli.run(&["list"]);
    assert!(out(&o).contains(&alice.name) && out(&o).contains(&id), "{}", out(&o));
    let o = cli.run(&["list", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("list --json is JSON");
    assert_eq!(json["version"], 1);
    let rows = json["sessions"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["user"], alice.name.as_str());
    assert_eq!(rows[0]["uid"], alice.uid);
    assert_eq!(rows[0]["id"], id.as_str());
    assert_eq!(rows[0]["alive"], true);

    // Epilog: close removes the dir; a second close is an error.
    let o = cli.run(&["close", "--id", &id]);
    assert!(o.status.success() && out(&o).contains("runtime dir removed"), "{}", out(&o));
    assert!(!alice.runtime_dir().exists());
    let o = cli.run(&["close", "--id", &id]);
    assert_eq!(o.status.code(), Some(125));
    assert!(out(&o).contains(&format!("no open session has id '{id}'")), "{}", out(&o));
}

#[test]
fn two_jobs_of_one_user_share_the_dir_and_gc_expires_old_ones() {
    if !require_root("two_jobs_of_one_user_share_the_dir_and_gc_expires_old_ones", &[]) {
        return;
    }
    let cli = Cli::new();
    let bob = TestUser::create("jsn");
    let (a, b) = (unique("job-"), unique("job-"));
    assert!(cli.run(&["open", "--user", &bob.name, "--id", &a]).status.success());
    assert!(cli.run(&["open", "--user", &bob.name, "--id", &b]).status.success());
    let o = cli.run(&["close", "--id", &a]);
    assert!(out(&o).contains("runtime dir kept: 1 other session(s)"), "{}", out(&o));
    assert!(bob.runtime_dir().exists());
    // Younger than the limit: kept.
    let o = cli.run(&["gc", "--older-than", "1h"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(bob.runtime_dir().exists() && cli.state.records(bob.uid) == 1);
    // An age limit of zero expires every id session and settles the dir.
    let o = cli.run(&["gc", "--older-than", "0s"]);
    assert!(out(&o).contains(&format!("closed expired session {b}")), "{}", out(&o));
    assert!(!bob.runtime_dir().exists());
    assert_eq!(cli.state.records(bob.uid), 0);
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    if !require_root("bad_input_is_refused_and_changes_nothing", &["setpriv"]) {
        return;
    }
    let cli = Cli::new();
    let carol = TestUser::create("jso");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["open", "--user", "no-such-user-js", "--id", "x1"], "no such user 'no-such-user-js'"),
        (vec!["open", "--user", "bad name", "--id", "x1"], "not a valid user name"),
        (vec!["open", "--user", &carol.name, "--id", "../etc"], "not a valid session id"),
        (vec!["open", "--user", "root", "--id", "x1"], "(uid 0) is root"),
        (vec!["close", "--id", "never-opened"], "no open session has id 'never-opened'"),
        (vec!["gc", "--older-than", "soon"], "is not a duration"),
    ];
    for (args, expected) in cases {
        let o = cli.run(&args);
        assert_ne!(o.status.code(), Some(0), "{args:?}");
        assert!(out(&o).contains(expected), "{args:?}: {}", out(&o));
    }
    assert!(!carol.runtime_dir().exists());
    assert!(!cli.state.0.join("ids").exists() || std::fs::read_dir(cli.state.0.join("ids")).unwrap().count() == 0);

    // Not root: refused before touching anything.
    let o = run(Command::new("setpriv")
        .args(["--reuid", &carol.uid.to_string(), "--regid", &carol.gid.to_string(), "--clear-groups"])
        .arg(cli_path())
        .args(["open", "--user", &carol.name, "--id", "x2"]));
    assert_eq!(o.status.code(), Some(125));
    assert!(out(&o).contains("must be run as root"), "{}", out(&o));
    assert!(!carol.runtime_dir().exists());

    // A broken config file names the key and line.
    let broken = PathBuf::from(format!("/run/{}.toml", unique("cfg")));
    std::fs::write(&broken, "state_dir = \"/run/x\"\nlinger = true\n").unwrap();
    let o = run(Command::new(cli_path()).args(["list", "--config"]).arg(&broken));
    assert_eq!(o.status.code(), Some(125));
    assert!(out(&o).contains("unknown setting 'linger'") && out(&o).contains("line 2"), "{}", out(&o));
    std::fs::remove_file(&broken).unwrap();
}

/// `Command` for the built CLI as `user` (setpriv, no root).
fn as_user(user: &TestUser) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid", &user.uid.to_string(), "--regid", &user.gid.to_string(), "--init-groups"]).arg(cli_path());
    c
}

#[test]
fn slurm_safe_open_close_bindings_and_env() {
    if !require_root("slurm_safe_open_close_bindings_and_env", &["setpriv", "sleep"]) {
        return;
    }
    let cli = Cli::new();
    let dave = TestUser::create("jsq");

    // Unmanaged users and unknown ids: exit 0 when told to, saying so; nothing made.
    let o = cli.run(&["open", "--user", "root", "--id", "r1", "--unmanaged-ok"]);
    assert!(o.status.success() && out(&o).contains("nothing to do (--unmanaged-ok)"), "{}", out(&o));
    assert!(!std::path::Path::new("/run/user/0").exists());
    let o = cli.run(&["open", "--user", "root", "--id", "r1"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(out(&o).contains("pass --unmanaged-ok"), "{}", out(&o));
    let o = cli.run(&["close", "--id", "r1", "--missing-ok"]);
    assert!(o.status.success() && out(&o).contains("nothing to close (--missing-ok)"), "{}", out(&o));

    // Bound to a process: alive while it runs, reaped by plain gc (no age limit) once it is gone.
    let mut job = Command::new("sleep").arg("60").spawn().unwrap();
    let o = cli.run(&["open", "--user", &dave.name, "--id", "j1", "--bind-pid", &job.id().to_string()]);
    assert!(o.status.success() && out(&o).contains(&format!("bound to process {}", job.id())), "{}", out(&o));
    let o = cli.run(&["gc"]);
    assert!(o.status.success() && !out(&o).contains("reaped"), "{}", out(&o));
    assert_eq!(cli.state.records(dave.uid), 1);

    // `env` as the user: unquoted lines, the dir and PATH; the same as root gives nothing.
    let o = run(as_user(&dave).args(["env", "--config"]).arg(&cli.config));
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("export XDG_RUNTIME_DIR=/run/user/{}\nexport PATH=/usr/local/bin:/usr/bin:/bin\n", dave.uid)
    );
    let o = cli.run(&["env"]);
    assert!(o.status.success() && o.stdout.is_empty(), "root: {}", out(&o));

    job.kill().unwrap();
    job.wait().unwrap();
    let o = cli.run(&["gc"]);
    assert!(out(&o).contains(&format!("reaped session j1 of {}", dave.name)), "{}", out(&o));
    assert!(!dave.runtime_dir().exists(), "gc removed the dir: {}", out(&o));
    assert_eq!(cli.state.records(dave.uid), 0);

    // No dir: `env` exports PATH only, and says why.
    let o = run(as_user(&dave).args(["env", "--config"]).arg(&cli.config));
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "export PATH=/usr/local/bin:/usr/bin:/bin\n");
    assert!(out(&o).contains("no XDG_RUNTIME_DIR exported"), "{}", out(&o));

    // Bad bindings are refused, naming what to give.
    for (args, expected) in [
        (vec!["--bind-cgroup", "/etc"], "is not below /sys/fs/cgroup"),
        (vec!["--bind-cgroup", "/sys/fs/cgroup/../etc"], "without '.' or '..'"),
        (vec!["--bind-pid", "999999999"], "no such process runs"),
    ] {
        let mut all = vec!["open", "--user", &dave.name, "--id", "j2"];
        all.extend(args);
        let o = cli.run(&all);
        assert_eq!(o.status.code(), Some(125), "{all:?}");
        assert!(out(&o).contains(expected), "{all:?}: {}", out(&o));
    }
    assert!(!dave.runtime_dir().exists());
}
