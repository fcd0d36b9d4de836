//! PodmanSessionSpawner end to end: a real hub (PAMAuthenticator, configurable-http-proxy), a real
//! user logging in over HTTP, whose server runs in a rootless podman container (`--userns=keep-id`,
//! `--network=host`) started in the foreground by the session keeper. Inspected as root from /proc,
//! through `podman exec`, and through the Jupyter contents API.
//!
//! No registry is reachable: the image is a skeleton rootfs (merged-/usr symlinks, /etc/passwd)
//! imported by the user; the hub bind-mounts the host's /usr and the test venv read-only into the
//! container, so `jupyterhub-singleuser` in it is the venv's, run by the host's Python.
//!
//! The venv (JupyterHub, jupyter_server, this repo's `python/` package) and the proxy are installed
//! once under /var/tmp/jupyter-session-podman-test (readable by the test user). The HTTP steps are
//! tests/jupyterhub/hubclient.py (shared with tests/tests/jupyterhub.rs) and contents_client.py.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use jupyter_session_tests::hub::{
    self, Hub, Installed, all_pids, cmdline, env_var, free_port, live_processes, set_mode, status_field, wait_until,
};
use jupyter_session_tests::{
    PamService, StateDir, TestUser, cli_path, environ_of, keeper_cmd, owner_mode, require_root, run, run_ok, unique,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const ROOT: &str = "/var/tmp/jupyter-session-podman-test";
const PYTHON_PACKAGES: &[&str] = &["jupyterhub>=5,<7", "jupyter_server>=2,<3", "requests", "setuptools>=61", "wheel"];
const PASSWORD: &str = "podman-e2e-Pw1";
const IMAGE: &str = "localhost/jupyter-session-podman-test";
const TOOLS: &[&str] = &["useradd", "chpasswd", "npm", "node", "podman", "runc", "tar"];

/// The venv, the proxy and the image tarball, once per test process (locked across processes).
fn installed() -> &'static Installed {
    static ONCE: OnceLock<Installed> = OnceLock::new();
    ONCE.get_or_init(|| {
        hub::install(ROOT, PYTHON_PACKAGES, "podman_spawner", |root, _venv| {
            let image_tar = root.join("skeleton.tar");
            hub::make_skeleton_image(&root.join("skeleton-rootfs"), &image_tar);
            image_tar
        })
    })
}

fn parent(pid: u32) -> u32 {
    status_field(pid, "PPid").first().and_then(|p| p.parse().ok()).unwrap_or(0)
}

/// The keeper's PAM service: the shipped etc/pam.d/jupyterhub.debian with the built module and a
/// config file naming a private state dir.
fn keeper_service(dir: &Path, state: &StateDir) -> (PamService, PathBuf) {
    let config = dir.join("jupyter-session.toml");
    fs::write(&config, format!("state_dir = \"{}\"\n", state.0.display())).unwrap();
    set_mode(&config, 0o644);
    (hub::shipped_keeper_service("jhp", &config), config)
}

/// A test user, and on drop what rootless podman leaves outside the home (userdel -r removes the
/// home with the user's container storage).
struct PodmanUser(TestUser);

impl Drop for PodmanUser {
    fn drop(&mut self) {
        self.0.kill_processes();
        let uid = self.0.uid;
        let _ = fs::remove_dir_all(format!("/tmp/podman-run-{uid}"));
        let _ = fs::remove_dir_all(format!("/tmp/containers-user-{uid}"));
    }
}

/// Run podman as `user` in a session of its own (the keeper), outside the hub.
fn podman_as(user: &TestUser, service: &str, config: &Path, args: &[&str]) -> Output {
    run(keeper_cmd()
        .args(["exec", "--config"])
        .arg(config)
        .args(["--service", service, "--user", &user.name, "--", "podman", "--runtime", "runc"])
        .args(args)
        .stdin(Stdio::null()))
}

/// Stop the user's rootless pause process (by pid) and let `jupyter-session gc` remove the
/// runtime dir the session kept for it.
fn end_podman_outside_hub(user: &TestUser, config: &Path) {
    for pid in live_processes(user.uid, "catatonit") {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    wait_until("the pause process to exit", || live_processes(user.uid, "").is_empty());
    run_ok(Command::new(cli_path()).arg("gc").arg("--config").arg(config));
    assert!(!user.runtime_dir().exists(), "gc removed {}", user.runtime_dir().display());
}

/// The server: the process of `uid` running jupyterhub-singleuser with a Python interpreter (the
/// wrapper, podman and the container's init have it in their command lines too).
fn container_server(uid: u32) -> u32 {
    let pids: Vec<u32> = live_processes(uid, "jupyterhub-singleuser")
        .into_iter()
        .filter(|pid| fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e.to_string_lossy().contains("python")))
        .collect();
    assert_eq!(pids.len(), 1, "exactly one jupyterhub-singleuser server of uid {uid}: {pids:?}");
    pids[0]
}

/// The server of `user` runs in a container of its own user namespace, where keep-id maps the
/// user's uid to itself, with the user's uid and gid on the host, inside a registered session
/// whose runtime dir holds podman's state.
fn assert_containerized(user: &TestUser, state: &StateDir) -> u32 {
    let pid = container_server(user.uid);
    let uid = user.uid.to_string();
    let who = format!("{} (uid {uid}, server pid {pid})", user.name);
    assert_eq!(status_field(pid, "Uid"), [uid.as_str(); 4], "{who}: uids on the host");
    assert_eq!(status_field(pid, "Gid"), [user.gid.to_string().as_str(); 4], "{who}: gids on the host");
    let ns = |p: &str| fs::read_link(format!("/proc/{p}/ns/user")).unwrap();
    assert_ne!(ns(&pid.to_string()), ns("self"), "{who}: runs in a user namespace of its own (not the host's)");
    let uid_map = fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    assert!(
        uid_map.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == [uid.as_str(), uid.as_str(), "1"]),
        "{who}: keep-id maps the user's uid to itself:\n{uid_map}"
    );
    let rt = user.runtime_dir();
    assert_eq!(owner_mode(&rt), Some((user.uid, user.gid, 0o700)), "{who}: {}", rt.display());
    assert!(rt.join("libpod").is_dir(), "{who}: podman's state is in the session's runtime dir");
    assert_eq!(state.records(user.uid), 1, "{who}: the keeper's session is registered");
    pid
}

/// After the hub stopped the server: no process of the user (server, podman, conmon, pause
/// process), no session record, no runtime dir.
fn assert_nothing_left(user: &TestUser, state: &StateDir, hub: &Hub) {
    let who = format!("{} (uid {})", user.name, user.uid);
    let left: Vec<String> = live_processes(user.uid, "").iter().map(|p| format!("{p}: {}", cmdline(*p))).collect();
    assert!(left.is_empty(), "{who}: nothing of the user runs after the stop:\n{}", left.join("\n"));
    assert_eq!(state.records(user.uid), 0, "{who}: session record removed");
    assert!(!user.runtime_dir().exists(), "{who}: runtime dir removed at stop");
    assert!(!hub.log().contains("Exceeded conmon timeout"), "{who}: podman run saw the container exit");
}

#[test]
fn podman_spawner_runs_each_server_in_a_rootless_container_in_a_session() {
    let test = "podman_spawner_runs_each_server_in_a_rootless_container_in_a_session";
    if !require_root(test, TOOLS) {
        return;
    }
    let inst = installed();
    let state = StateDir::new();
    let dir = PathBuf::from(ROOT).join("runs").join(unique("pod"));
    fs::create_dir_all(&dir).unwrap();
    set_mode(&dir, 0o700);
    let (service, session_config) = keeper_service(&dir, &state);
    let owner = PodmanUser(TestUser::create("jpa"));
    let alice = &owner.0;
    alice.set_password(PASSWORD);
    let uid = alice.uid.to_string();
    let owner_b = PodmanUser(TestUser::create("jpb"));
    let bob = &owner_b.0;
    bob.set_password(PASSWORD);

    // The image, imported by each user into their own storage (no registry here).
    for user in [alice, bob] {
        let out = podman_as(
            user,
            &service.name,
            &session_config,
            &["import", "--quiet", inst.image_tar.to_str().unwrap(), IMAGE],
        );
        assert!(out.status.success(), "podman import as {}: {}", user.name, String::from_utf8_lossy(&out.stderr));
        end_podman_outside_hub(user, &session_config);
    }

    let port = free_port();
    let venv = inst.venv.display().to_string();
    let mut c = hub::base_config(inst, &dir, port, &service.name, &[alice, bob]);
    // The recipe under test, by its entry point name.
    writeln!(c, "c.JupyterHub.spawner_class = 'podman'").unwrap();
    writeln!(c, "c.PodmanSessionSpawner.jupyter_session_path = {:?}", cli_path().display().to_string()).unwrap();
    writeln!(c, "c.PodmanSessionSpawner.pam_service = {:?}", service.name).unwrap();
    writeln!(c, "c.PodmanSessionSpawner.config_file = {:?}", session_config.display().to_string()).unwrap();
    writeln!(c, "c.PodmanSessionSpawner.image = {IMAGE:?}").unwrap();
    writeln!(c, "c.PodmanSessionSpawner.runtime = 'runc'").unwrap();
    writeln!(c, "c.PodmanSessionSpawner.volumes = ['/usr:/usr:ro', '{venv}:{venv}:ro']").unwrap();
    writeln!(c, "c.PodmanSessionSpawner.cmd = ['{venv}/bin/jupyterhub-singleuser']").unwrap();
    let hub = Hub::start(inst, &dir, &c, port, None);

    let started = Instant::now();
    let out = hub.script_ok("hubclient.py", &["start", &alice.name, PASSWORD]);
    eprintln!("podman_spawner: logged in, containerized server ready in {:.1} s", started.elapsed().as_secs_f64());
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("hubclient start prints JSON");
    let token = v["token"].as_str().expect("token").to_string();

    // The server runs in a container: another user namespace, keep-id's mapping of the user's own
    // uid, and on the host as the user's uid and gid.
    let pid = assert_containerized(alice, &state);
    let who = format!("{} (uid {uid}, server pid {pid})", alice.name);
    // The container's init is its parent; the keeper (root) is the ancestor of `podman run`.
    assert!(cmdline(parent(pid)).starts_with("/run/podman-init"), "{who}: parent is podman's init");
    let podman_run: Vec<u32> = live_processes(alice.uid, " run --rm ")
        .into_iter()
        .filter(|p| cmdline(*p).starts_with("/usr/bin/podman"))
        .collect();
    assert!(!podman_run.is_empty(), "{who}: a foreground `podman run` of the user");
    let keepers: Vec<u32> = podman_run
        .iter()
        .map(|p| parent(parent(*p)))
        .filter(|k| cmdline(*k).contains("jupyter-session exec"))
        .collect();
    assert!(!keepers.is_empty(), "{who}: `podman run` runs under the keeper (via the wrapper)");
    assert_eq!(status_field(keepers[0], "Uid")[0], "0", "{who}: the keeper stays root");

    // The server's environment: what the spawner passed, and nothing of the host's paths.
    let env = environ_of(pid);
    assert_eq!(env_var(&env, "JUPYTERHUB_USER"), Some(alice.name.as_str()), "{who}: JUPYTERHUB_USER");
    assert_eq!(env_var(&env, "JUPYTERHUB_API_TOKEN").map(str::is_empty), Some(false), "{who}: API token");
    assert_eq!(env_var(&env, "HOME"), alice.home.to_str(), "{who}: HOME");
    assert_eq!(env_var(&env, "USER"), Some(alice.name.as_str()), "{who}: USER");
    assert_eq!(env_var(&env, "container"), Some("podman"), "{who}: podman's marker");
    for host_only in ["XDG_RUNTIME_DIR", "VIRTUAL_ENV", "CONFIGPROXY_AUTH_TOKEN", "JPY_COOKIE_SECRET"] {
        assert_eq!(env_var(&env, host_only), None, "{who}: {host_only} stays out of the container");
    }
    // The API token was passed by name: no command line on the host shows it.
    let api_token = env_var(&env, "JUPYTERHUB_API_TOKEN").unwrap().to_string();
    let leaks: Vec<u32> = all_pids().into_iter().filter(|p| cmdline(*p).contains(&api_token)).collect();
    assert!(leaks.is_empty(), "{who}: the API token is on the command line of {leaks:?}");

    let rt = alice.runtime_dir();
    let podman_env = environ_of(podman_run[0]);
    assert_eq!(env_var(&podman_env, "XDG_RUNTIME_DIR"), rt.to_str(), "{who}: podman runs in the session");

    // Inside the container, `id` is the user's own uid and name (podman exec, another session).
    let container = format!("jupyter-{}", alice.name);
    let out = podman_as(alice, &service.name, &session_config, &["exec", &container, "id", "-u"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), uid, "{who}: `id -u` in the container");
    let out = podman_as(alice, &service.name, &session_config, &["exec", &container, "id", "-un"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), alice.name, "{who}: `id -un` in the container");
    assert_eq!(state.records(alice.uid), 1, "{who}: podman exec's own session closed again");
    assert!(rt.is_dir(), "{who}: the runtime dir stays while the container runs");
    // The wrapper's last stage for progress() (the image was imported, so no pull), in the
    // session's runtime dir, the user's.
    let stage_file = rt.join(format!("jupyter-session-progress-{container}"));
    assert_eq!(fs::read_to_string(&stage_file).ok().as_deref(), Some("creating\n"), "{who}: progress stage");
    assert_eq!(owner_mode(&stage_file).map(|(u, _, _)| u), Some(alice.uid), "{who}: the stage file is the user's");

    // A file written through the Jupyter contents API lands in the real home, owned by the user.
    let text = format!("written through the contents API by {}\n", alice.name);
    hub.script_ok("contents_client.py", &["put", &alice.name, &token, "podman-e2e.txt", &text]);
    let file = alice.home.join("podman-e2e.txt");
    assert_eq!(fs::read_to_string(&file).ok().as_deref(), Some(text.as_str()), "{who}: file in the home");
    let (fuid, fgid, _) = owner_mode(&file).unwrap();
    assert_eq!((fuid, fgid), (alice.uid, alice.gid), "{who}: the file is the user's on the host");
    let back = hub.script_ok("contents_client.py", &["get", &alice.name, &token, "podman-e2e.txt"]);
    assert_eq!(back, text, "{who}: read back through the server");

    // Stop through the API: the hub's SIGINT reaches the server through the keeper, the wrapper,
    // podman's sig-proxy and the container's init; the container is removed, the pause process
    // stopped, the session closed and its runtime dir removed.
    let started = Instant::now();
    hub.script_ok("hubclient.py", &["stop", &alice.name, &token]);
    eprintln!("podman_spawner: server stopped in {:.1} s", started.elapsed().as_secs_f64());
    assert_nothing_left(alice, &state, &hub);

    // And no container is left in the user's storage.
    let out = podman_as(alice, &service.name, &session_config, &["ps", "--all", "--format", "{{.Names}}"]);
    assert!(out.status.success(), "podman ps: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "", "{who}: no container left");
    end_podman_outside_hub(alice, &session_config);

    // Two users at once, alice again in a fresh session: a container each, in separate user
    // namespaces; stopping one leaves the other's container and session alone.
    let (ta, tb) = std::thread::scope(|s| {
        let a = s.spawn(|| hub.script_ok("hubclient.py", &["start", &alice.name, PASSWORD]));
        let b = s.spawn(|| hub.script_ok("hubclient.py", &["start", &bob.name, PASSWORD]));
        let token = |out: String| {
            let v: serde_json::Value = serde_json::from_str(out.trim()).expect("hubclient start prints JSON");
            v["token"].as_str().expect("token").to_string()
        };
        (token(a.join().unwrap()), token(b.join().unwrap()))
    });
    let pa = assert_containerized(alice, &state);
    let pb = assert_containerized(bob, &state);
    assert_ne!(pa, pid, "alice's second server is a new process");
    let ns = |p: u32| fs::read_link(format!("/proc/{p}/ns/user")).unwrap();
    assert_ne!(ns(pa), ns(pb), "alice's and bob's containers are in different user namespaces");
    hub.script_ok("hubclient.py", &["stop", &alice.name, &ta]);
    assert_nothing_left(alice, &state, &hub);
    assert_eq!(assert_containerized(bob, &state), pb, "bob's server is untouched by alice's stop");
    hub.script_ok("hubclient.py", &["stop", &bob.name, &tb]);
    assert_nothing_left(bob, &state, &hub);
    drop(hub);
}
