//! JupyterHub end to end: a real hub (PAMAuthenticator, configurable-http-proxy), real users
//! logging in over HTTP, real single-user servers, inspected from /proc as root, and rootless
//! podman run with each server's exact environment and credentials.
//!
//! One hub per spawner configuration, several users and assertions per hub:
//! - `session_spawner_*`: hub as root, `c.JupyterHub.spawner_class = "session"` (the keeper).
//! - `sudo_spawner_*`: hub as an unprivileged account, SudoSpawner, pam_jupyter in sudo's stack.
//! - `profiles_spawner_*`: wrapspawner.ProfilesSpawner with a SessionSpawner profile and the stock
//!   LocalProcessSpawner as the negative control, what the recipes fix.
//!
//! The venv (JupyterHub, jupyter_server, sudospawner, wrapspawner, this repo's `python/` package) and the
//! proxy are installed once under /var/tmp/jupyter-session-hub-test (readable by the test users).
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use jupyter_session_tests::hub::{
    self, Hub, Installed, env_var, free_port, is_command, live_processes, set_mode, status_field, wait_until,
};
use jupyter_session_tests::{
    PamService, StateDir, TestUser, cli_path, environ_of, keeper_cmd, owner_mode, require_root, run, run_ok, unique,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Where the venv, the proxy and the test image live (0755, readable by the test users).
const ROOT: &str = "/var/tmp/jupyter-session-hub-test";
/// What the venv holds; a change here rebuilds it.
const PYTHON_PACKAGES: &[&str] = &[
    "jupyterhub>=5,<7",
    "jupyter_server>=2,<3",
    "sudospawner>=1,<2",
    "wrapspawner>=1,<2",
    "requests",
    "setuptools>=61",
    "wheel",
];
const PASSWORD: &str = "jupyter-e2e-Pw1";
const TOOLS: &[&str] = &["useradd", "chpasswd", "npm", "node", "podman", "setpriv", "busybox"];

/// Install everything once per test process, under a lock shared with other test processes.
fn installed() -> &'static Installed {
    static ONCE: OnceLock<Installed> = OnceLock::new();
    ONCE.get_or_init(|| {
        hub::install(ROOT, PYTHON_PACKAGES, "jupyterhub", |root, venv| {
            // The SudoSpawner hook: sudospawner runs `sudospawner-singleuser` from its own directory.
            let hook = venv.join("bin/sudospawner-singleuser");
            let _ = fs::remove_file(&hook);
            std::os::unix::fs::symlink("jupyterhub-session-sudospawner-singleuser", &hook).unwrap();
            let image_tar = root.join("bb.tar");
            hub::make_busybox_image(&root.join("bb-rootfs"), &image_tar);
            image_tar
        })
    })
}

/// The one single-user server process of `user`.
fn server_pid(user: &TestUser) -> u32 {
    let pids = live_processes(user.uid, "jupyterhub-singleuser");
    assert_eq!(pids.len(), 1, "{}: expected exactly one jupyterhub-singleuser process of uid {}", user.name, user.uid);
    pids[0]
}

fn expected_groups(user: &TestUser) -> BTreeSet<u32> {
    let name = std::ffi::CString::new(user.name.clone()).unwrap();
    nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(user.gid))
        .unwrap()
        .into_iter()
        .map(|g| g.as_raw())
        .collect()
}

/// What a server of the recipe under test must look like.
struct Expect<'a> {
    /// The PATH the server must have.
    path: &'a str,
    /// Whether the session is registered while the server runs (the keeper holds it; with
    /// SudoSpawner, sudo's session ends when the mediator returns).
    registered: Option<&'a StateDir>,
}

/// Everything a correct login session gives the server, read from /proc as root.
fn assert_session(user: &TestUser, pid: u32, expect: &Expect) {
    let who = format!("{} (uid {}, server pid {pid})", user.name, user.uid);
    let u = user.uid.to_string();
    let g = user.gid.to_string();
    assert_eq!(status_field(pid, "Uid"), [u.as_str(); 4], "{who}: real/effective/saved/fs uid");
    assert_eq!(status_field(pid, "Gid"), [g.as_str(); 4], "{who}: primary gid everywhere");
    let groups: BTreeSet<u32> = status_field(pid, "Groups").iter().map(|s| s.parse().unwrap()).collect();
    assert_eq!(groups, expected_groups(user), "{who}: supplementary groups");
    let users = nix::unistd::Group::from_name("users").unwrap().expect("group `users`").gid.as_raw();
    assert!(groups.contains(&users), "{who}: the test made the user a member of `users`");

    let env = environ_of(pid);
    let rt = user.runtime_dir();
    assert_eq!(env_var(&env, "XDG_RUNTIME_DIR"), Some(rt.to_str().unwrap()), "{who}: XDG_RUNTIME_DIR");
    assert_eq!(owner_mode(&rt), Some((user.uid, user.gid, 0o700)), "{who}: {} owner and mode", rt.display());
    assert!(fs::symlink_metadata(&rt).unwrap().is_dir(), "{who}: runtime dir is a directory");
    assert_eq!(env_var(&env, "USER"), Some(user.name.as_str()), "{who}: USER");
    assert_eq!(env_var(&env, "LOGNAME"), Some(user.name.as_str()), "{who}: LOGNAME");
    assert_eq!(env_var(&env, "HOME"), user.home.to_str(), "{who}: HOME");
    assert_eq!(env_var(&env, "PATH"), Some(expect.path), "{who}: PATH");
    // What the spawner passed reaches the server.
    assert_eq!(env_var(&env, "JUPYTERHUB_USER"), Some(user.name.as_str()), "{who}: JUPYTERHUB_USER");
    assert!(env_var(&env, "JUPYTERHUB_API_TOKEN").is_some_and(|t| !t.is_empty()), "{who}: JUPYTERHUB_API_TOKEN");
    assert_eq!(fs::read_link(format!("/proc/{pid}/cwd")).ok(), Some(user.home.clone()), "{who}: cwd");
    let loginuid = fs::read_to_string(format!("/proc/{pid}/loginuid")).unwrap();
    assert_eq!(loginuid.trim(), u, "{who}: loginuid");
    if let Some(state) = expect.registered {
        assert_eq!(state.records(user.uid), 1, "{who}: one registered session while the server runs");
    }
}

/// Run a command as the server runs: its uid, gid, groups, environment and cwd.
fn as_server(pid: u32, program: &str) -> Command {
    let uid = status_field(pid, "Uid")[0].clone();
    let gid = status_field(pid, "Gid")[0].clone();
    let groups = status_field(pid, "Groups").join(",");
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}")).arg(format!("--regid={gid}"));
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        cmd.arg(format!("--groups={groups}"));
    }
    cmd.arg("--").arg(program);
    cmd.env_clear().envs(environ_of(pid));
    cmd.current_dir(fs::read_link(format!("/proc/{pid}/cwd")).unwrap());
    cmd.stdin(Stdio::null());
    cmd
}

/// Rootless podman works in the server's session: import the local image, run `id` in it.
fn assert_podman_works(inst: &Installed, user: &TestUser, pid: u32) {
    run_ok(as_server(pid, "podman").arg("import").arg("--quiet").arg(&inst.image_tar).arg("localhost/bb"));
    let out = run(as_server(pid, "podman")
        .args(["run", "--rm", "--network", "none", "--runtime", "runc"])
        .args(["localhost/bb", "id"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("uid=0(root)"),
        "{}: rootless podman in the server's session failed ({}):\n{stdout}\n{}",
        user.name,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // podman's state went where the session says, not to its /tmp fallback.
    assert!(user.runtime_dir().join("libpod").exists(), "{}: podman used $XDG_RUNTIME_DIR/libpod", user.name);
    assert!(!fallback_runtime_dir(user.uid).exists(), "{}: podman did not fall back to /tmp", user.name);
    kill_pause_process(user);
}

/// Rootless podman leaves a `catatonit -P` pause process per user: kill it, by pid.
fn kill_pause_process(user: &TestUser) {
    for pid in live_processes(user.uid, "catatonit") {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    wait_until(&format!("{}'s podman pause process to exit", user.name), || {
        live_processes(user.uid, "catatonit").is_empty()
    });
}

/// After the hub stopped the server: nothing of the session is left.
fn assert_session_closed(user: &TestUser, state: &StateDir) {
    assert!(live_processes(user.uid, "jupyterhub-singleuser").is_empty(), "{}: server gone", user.name);
    assert_eq!(state.records(user.uid), 0, "{}: session record removed at stop", user.name);
    // Under SudoSpawner the dir goes in the hub's post-stop hook (`gc_after_stop`), which the
    // API's DELETE need not have waited for: wait for it, bounded.
    wait_until(&format!("{}: runtime dir removed at stop", user.name), || !user.runtime_dir().exists());
}

/// Log `alice` and `bob` in at once (their servers start concurrently); their API tokens.
fn login_and_start_both(hub: &Hub, alice: &TestUser, bob: &TestUser) -> (String, String) {
    std::thread::scope(|s| {
        let a = s.spawn(|| hub.login_and_start(alice, PASSWORD));
        let b = s.spawn(|| hub.login_and_start(bob, PASSWORD));
        (a.join().unwrap(), b.join().unwrap())
    })
}

/// The second half of a two-user hub test: stopping alice's server closes her session and bob's
/// is untouched; alice again gets a new server in a new session; stopping both closes both.
fn stop_one_restart_alice_stop_both(
    hub: &Hub,
    inst: &Installed,
    state: &StateDir,
    expect: &Expect,
    [alice, bob]: [&TestUser; 2],
    [ta, tb]: [&str; 2],
) {
    // Stopping alice's server closes her session; bob's is untouched.
    hub.stop_server(alice, ta);
    assert_session_closed(alice, state);
    assert_session(bob, server_pid(bob), expect);

    // Alice again: a new server, a new session.
    let ta = hub.login_and_start(alice, PASSWORD);
    let pid = server_pid(alice);
    assert_session(alice, pid, expect);
    assert_podman_works(inst, alice, pid);

    hub.stop_server(alice, &ta);
    hub.stop_server(bob, tb);
    assert_session_closed(alice, state);
    assert_session_closed(bob, state);
}

/// A test user with a password, in the group `users`. Podman state in /tmp left by an earlier,
/// deleted user with the same uid is removed first (the harness removes the new user's on drop).
fn login_user(prefix: &str) -> TestUser {
    let u = TestUser::create_with(prefix, &["-G", "users"]);
    u.set_password(PASSWORD);
    u.podman_without_network();
    let _ = fs::remove_dir_all(fallback_runtime_dir(u.uid));
    let _ = fs::remove_dir_all(format!("/tmp/containers-user-{}", u.uid));
    u
}

/// Where podman keeps its runtime state when XDG_RUNTIME_DIR is unset.
fn fallback_runtime_dir(uid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/podman-run-{uid}"))
}

/// The pam_jupyter config file of one test (a private state dir).
fn session_config(dir: &Path, state: &StateDir) -> PathBuf {
    let path = dir.join("jupyter-session.toml");
    fs::write(&path, format!("state_dir = \"{}\"\n", state.0.display())).unwrap();
    set_mode(&path, 0o644);
    path
}

/// A private directory for one hub's files.
fn hub_dir(name: &str, mode: u32) -> PathBuf {
    let dir = PathBuf::from(ROOT).join("runs").join(unique(name));
    fs::create_dir_all(&dir).unwrap();
    set_mode(&dir, mode);
    dir
}

/// `jupyter-session exec` must be the real keeper for the SessionSpawner test to mean anything.
fn keeper_is_built(user: &TestUser, service: &str, config: &Path) {
    let config = config.display().to_string();
    let args = ["exec", "--config", &config, "--service", service, "--user", &user.name, "--", "/bin/true"];
    let out = run(keeper_cmd().args(args));
    assert!(
        out.status.success(),
        "`jupyter-session exec` does not work yet ({}): {}\nThe SessionSpawner recipe needs the keeper.",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// The PAM service the keeper runs: the file install.sh ships (etc/pam.d/jupyterhub.debian), with
/// the built module and a private state dir.
fn keeper_service(dir: &Path, state: &StateDir) -> PamService {
    hub::shipped_keeper_service("jhs", &session_config(dir, state))
}

#[test]
fn session_spawner_gives_each_server_a_real_session() {
    let test = "session_spawner_gives_each_server_a_real_session";
    if !require_root(test, TOOLS) {
        return;
    }
    let inst = installed();
    let state = StateDir::new();
    let dir = hub_dir("sess", 0o700);
    let service = keeper_service(&dir, &state);
    let alice = login_user("jha");
    let bob = login_user("jhb");
    keeper_is_built(&alice, &service.name, &dir.join("jupyter-session.toml"));

    let port = free_port();
    let mut config = hub::base_config(inst, &dir, port, &service.name, &[&alice, &bob]);
    writeln!(config, "c.JupyterHub.spawner_class = 'session'").unwrap();
    writeln!(config, "c.SessionSpawner.jupyter_session_path = {:?}", cli_path().display().to_string()).unwrap();
    writeln!(config, "c.SessionSpawner.pam_service = {:?}", service.name).unwrap();
    let keeper_config = dir.join("jupyter-session.toml").display().to_string();
    writeln!(config, "c.SessionSpawner.config_file = {keeper_config:?}").unwrap();
    // A variable glibc acts on in a root process: it must reach the server
    // (handed over on the keeper's --env-fd), never the keeper itself.
    writeln!(config, "c.Spawner.environment = {{'GCONV_PATH': '/nonexistent-keeper-gconv'}}").unwrap();
    let hub = Hub::start(inst, &dir, &config, port, None);
    let expect = Expect { path: session_lib::config::DEFAULT_PATH, registered: Some(&state) };

    // Two users log in and start at once.
    let (ta, tb) = login_and_start_both(&hub, &alice, &bob);
    for user in [&alice, &bob] {
        let pid = server_pid(user);
        // The keeper (root) is the server's parent: the spawner's pid.
        let keeper: u32 = status_field(pid, "PPid")[0].parse().unwrap();
        assert!(is_command(keeper, "jupyter-session"), "{}: the server's parent is the keeper", user.name);
        assert_eq!(status_field(keeper, "Uid")[0], "0", "{}: the keeper stays root", user.name);
        assert_eq!(
            environ_of(keeper),
            vec![("PATH".to_string(), "/usr/sbin:/usr/bin:/sbin:/bin".to_string())],
            "{}: the root keeper starts with a minimal environment",
            user.name
        );
        let server_env = environ_of(pid);
        assert!(
            server_env.contains(&("GCONV_PATH".to_string(), "/nonexistent-keeper-gconv".to_string())),
            "{}: the spawner's environment reaches the server: {server_env:?}",
            user.name
        );
        let cmdline = fs::read(format!("/proc/{keeper}/cmdline")).unwrap();
        let token = server_env.iter().find(|(k, _)| k == "JUPYTERHUB_API_TOKEN").map(|(_, v)| v.clone()).unwrap();
        assert!(!String::from_utf8_lossy(&cmdline).contains(&token), "{}: the token is on no command line", user.name);
        assert_session(user, pid, &expect);
        assert_podman_works(inst, user, pid);
    }

    stop_one_restart_alice_stop_both(&hub, inst, &state, &expect, [&alice, &bob], [&ta, &tb]);
}

#[test]
fn sudo_spawner_with_an_unprivileged_hub() {
    let test = "sudo_spawner_with_an_unprivileged_hub";
    if !require_root(test, &[TOOLS, &["sudo", "visudo"]].concat()) {
        return;
    }
    let inst = installed();
    let state = StateDir::new();
    // The hub account: may read /etc/shadow (PAM login as non-root), may sudo to the users.
    let hub_user = TestUser::create_with("jhh", &["-G", "shadow"]);
    let other = TestUser::create("jho");
    let alice = login_user("jsa");
    let bob = login_user("jsb");
    let dir = hub_dir("sudo", 0o755);
    run_ok(Command::new("chown").arg(format!("{}:{}", hub_user.uid, hub_user.gid)).arg(&dir));
    // The config file in a root-owned dir: the module refuses one the hub account could change.
    let config = session_config(&hub_dir("sudoconf", 0o755), &state);
    let cli = cli_path().display().to_string();

    // Login (the hub authenticates with this service) ...
    let login = PamService::create("jhl", &["auth include common-auth", "account include common-account"]);
    // ... and sudo's own stack, pam_jupyter confined to the hub account's calls.
    let sudo_service = PamService::create(
        "jhsudo",
        &[
            "auth     include   common-auth",
            "account  include   common-account",
            &format!("session  [success=2 default=ignore]  pam_succeed_if.so quiet ruser != {}", hub_user.name),
            "session  required  pam_loginuid.so",
            // sudo's session ends when the mediator returns, long before the server: the dir stays
            // while the server runs (keep_while_processes); the post_stop_hook's
            // `jupyter-session gc` removes it once the server is gone.
            &format!("session  required  @MODULE@ config={}", config.display()),
            "session  include   common-session-noninteractive",
        ],
    );
    let gc = format!("{cli} gc --config {}", config.display());
    let sudoers = SudoersFile::create(&format!(
        "Defaults:{hub},{other} pam_service={svc}\n\
         {hub} ALL=({a},{b}) NOPASSWD: {sudospawner}\n\
         {hub} ALL=(root) NOPASSWD: {gc}\n\
         {other} ALL=({a}) NOPASSWD: /usr/bin/env\n",
        hub = hub_user.name,
        other = other.name,
        svc = sudo_service.name,
        a = alice.name,
        b = bob.name,
        sudospawner = inst.bin("sudospawner").display(),
    ));

    // The guard: another account's sudo through the same stack gets no session.
    let out = run_ok(Command::new("setpriv").args([
        &format!("--reuid={}", other.uid),
        &format!("--regid={}", other.gid),
        "--init-groups",
        "sudo",
        "-n",
        "-u",
        &alice.name,
        "/usr/bin/env",
    ]));
    let env = String::from_utf8_lossy(&out.stdout);
    assert!(!env.contains("XDG_RUNTIME_DIR="), "pam_jupyter ran for a sudo call not by the hub account:\n{env}");
    assert!(!alice.runtime_dir().exists(), "no runtime dir from another account's sudo");

    let port = free_port();
    let mut hub_config = hub::base_config(inst, &dir, port, &login.name, &[&alice, &bob]);
    writeln!(hub_config, "c.JupyterHub.spawner_class = 'sudospawner.SudoSpawner'").unwrap();
    writeln!(hub_config, "c.SudoSpawner.sudospawner_path = {:?}", inst.bin("sudospawner").display().to_string())
        .unwrap();
    // The hook runs `jupyter-session check` in the server's environment; strict: a failed check
    // stops the start.
    writeln!(
        hub_config,
        "c.Spawner.environment = {{'JUPYTER_SESSION_PATH': {cli:?}, 'JUPYTER_SESSION_CHECK': 'strict'}}"
    )
    .unwrap();
    writeln!(hub_config, "from jupyterhub_session import gc_after_stop").unwrap();
    writeln!(hub_config, "c.Spawner.post_stop_hook = gc_after_stop({cli:?}, gc_args=['--config', {:?}])", {
        config.display().to_string()
    })
    .unwrap();
    let hub = Hub::start(inst, &dir, &hub_config, port, Some(&hub_user));
    // The hub really is unprivileged.
    assert_eq!(status_field(hub.pid(), "Uid")[0], hub_user.uid.to_string());
    // SudoSpawner's servers get the hub's environment (PATH included) from the mediator.
    let hub_path = inst.hub_path();
    let expect = Expect { path: &hub_path, registered: None };

    let (ta, tb) = login_and_start_both(&hub, &alice, &bob);
    for user in [&alice, &bob] {
        let pid = server_pid(user);
        assert_session(user, pid, &expect);
        // The check ran (and passed, or the server would not have started).
        let header = format!("jupyter-session check: {} (uid {}", user.name, user.uid);
        assert!(hub.log().contains(&header), "sudospawner-singleuser ran `jupyter-session check` for {}", user.name);
        assert_podman_works(inst, user, pid);
    }

    stop_one_restart_alice_stop_both(&hub, inst, &state, &expect, [&alice, &bob], [&ta, &tb]);
    drop(hub);
    drop(sudoers);
}

/// ProfilesSpawner with two profiles on one hub: the SessionSpawner recipe, and the stock
/// LocalProcessSpawner as the negative control (same hub, same login, only the spawner differs).
#[test]
fn profiles_spawner_session_profile_and_stock_negative_control() {
    let test = "profiles_spawner_session_profile_and_stock_negative_control";
    if !require_root(test, TOOLS) {
        return;
    }
    let inst = installed();
    let state = StateDir::new();
    let dir = hub_dir("prof", 0o700);
    let service = keeper_service(&dir, &state);
    let carol = login_user("jhc");
    let dave = login_user("jhd");
    let port = free_port();
    let mut config = hub::base_config(inst, &dir, port, &service.name, &[&carol, &dave]);
    // The keeper reads the config file pam_jupyter in the test's service reads.
    let session_profile = format!(
        "{{'jupyter_session_path': {:?}, 'pam_service': {:?}, 'config_file': {:?}}}",
        cli_path().display().to_string(),
        service.name,
        dir.join("jupyter-session.toml").display().to_string()
    );
    writeln!(config, "c.JupyterHub.spawner_class = 'wrapspawner.ProfilesSpawner'").unwrap();
    writeln!(config, "c.ProfilesSpawner.profiles = [").unwrap();
    // wrapspawner links the wrapper's env_keep (the base Spawner's, without PATH) over its
    // child's; give the stock child what LocalProcessSpawner keeps on its own.
    let stock_profile = "{'env_keep': ['PATH', 'LANG', 'LC_ALL', 'VIRTUAL_ENV', 'JUPYTERHUB_SINGLEUSER_APP']}";
    writeln!(config, "    ('Stock', 'stock', 'jupyterhub.spawner.LocalProcessSpawner', {stock_profile}),").unwrap();
    writeln!(config, "    ('Session', 'session', 'jupyterhub_session.SessionSpawner', {session_profile}),").unwrap();
    writeln!(config, "]").unwrap();
    let hub = Hub::start(inst, &dir, &config, port, None);

    // The recipe as a profile.
    let td = hub.login_and_start_profile(&dave, PASSWORD, Some("session"));
    let pid = server_pid(&dave);
    assert_session(&dave, pid, &Expect { path: session_lib::config::DEFAULT_PATH, registered: Some(&state) });
    assert_podman_works(inst, &dave, pid);
    hub.stop_server(&dave, &td);
    assert_session_closed(&dave, &state);

    // The negative control.
    let token = hub.login_and_start_profile(&carol, PASSWORD, Some("stock"));
    let pid = server_pid(&carol);

    // The same inspection as for the recipes: identity is right ...
    let u = carol.uid.to_string();
    assert_eq!(status_field(pid, "Uid"), [u.as_str(); 4]);
    let env = environ_of(pid);
    assert_eq!(env_var(&env, "USER"), Some(carol.name.as_str()));
    assert_eq!(env_var(&env, "HOME"), carol.home.to_str());
    // ... but there is no session: no runtime dir, no XDG_RUNTIME_DIR, no loginuid, no LOGNAME.
    assert_eq!(env_var(&env, "XDG_RUNTIME_DIR"), None, "stock spawner: XDG_RUNTIME_DIR");
    assert!(!carol.runtime_dir().exists(), "stock spawner: nothing creates {}", carol.runtime_dir().display());
    let loginuid = fs::read_to_string(format!("/proc/{pid}/loginuid")).unwrap();
    assert_ne!(loginuid.trim(), u, "stock spawner: loginuid is not the user's");
    assert_eq!(env_var(&env, "LOGNAME"), None, "stock spawner: LOGNAME");
    // podman, in exactly that environment, silently falls back to /tmp/podman-run-UID: state
    // outside any session, never cleaned up.
    let fallback = fallback_runtime_dir(carol.uid);
    assert!(!fallback.exists());
    run_ok(as_server(pid, "podman").arg("import").arg("--quiet").arg(&inst.image_tar).arg("localhost/bb"));
    assert!(fallback.exists(), "stock spawner: podman fell back to {}", fallback.display());
    // The usual hand fix, c.Spawner.environment = {"XDG_RUNTIME_DIR": "/run/user/<uid>"}, and
    // podman fails: nothing created the directory and the user cannot.
    let out = run(as_server(pid, "podman").env("XDG_RUNTIME_DIR", carol.runtime_dir()).args([
        "run",
        "--rm",
        "--network",
        "none",
        "--runtime",
        "runc",
        "localhost/bb",
        "id",
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!("mkdir /run/user/{}: permission denied", carol.uid);
    eprintln!("jupyterhub: stock spawner + XDG_RUNTIME_DIR by hand: podman exit {}, {want:?}", out.status);
    assert!(!out.status.success() && err.contains(&want), "podman without a session dir, expected {want:?}:\n{err}");
    // The failed run leaves conmon and a cleanup process behind besides the pause process: kill
    // every process of carol but her server, by pid.
    for other in live_processes(carol.uid, "").into_iter().filter(|p| *p != pid) {
        let _ = kill(Pid::from_raw(other as i32), Signal::SIGKILL);
    }
    hub.stop_server(&carol, &token);
}

/// A drop-in in /etc/sudoers.d, checked with visudo, removed on drop.
struct SudoersFile(PathBuf);

impl SudoersFile {
    fn create(text: &str) -> SudoersFile {
        let path = PathBuf::from("/etc/sudoers.d").join(unique("jstest"));
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, text).unwrap();
        set_mode(&tmp, 0o440);
        let check = run(Command::new("visudo").arg("-cf").arg(&tmp));
        if !check.status.success() {
            let _ = fs::remove_file(&tmp);
            panic!("sudoers drop-in refused by visudo:\n{text}\n{}", String::from_utf8_lossy(&check.stdout));
        }
        // sudo ignores names with a dot: the rename makes it live.
        fs::rename(&tmp, &path).unwrap();
        SudoersFile(path)
    }
}

impl Drop for SudoersFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}
