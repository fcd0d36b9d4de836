//! The service-account recipe end to end (docs/service-accounts.md): a `useradd --system`
//! account on `service_users`, its rootless podman API service under the keeper
//! (etc/podman-service/jupyter-session-podman-service) on /run/user/UID/podman/podman.sock, a real
//! hub run as the account with DockerSpawner (from PyPI) pointed at that socket, network `host`,
//! a user logging in over HTTP, the user's container serving, a file written through the contents
//! API landing in the named volume in the account's storage, stop removing the container and
//! keeping the volume, the account's dir and service surviving the user's stop. Then the service's
//! lifecycle: SIGTERM to its keeper stops it and closes the session; a SIGKILLed service is noticed
//! by `check` and restarted by etc/podman-service/jupyter-session-podman-loop, which SIGTERM stops.
//!
//! No registry is reachable: the image is the skeleton rootfs of tests/tests/podman_spawner.rs
//! (hub::make_skeleton_image), imported by the account; the host's /usr and the test venv are
//! bind-mounted read-only, so `jupyterhub-singleuser` in it is the venv's.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use jupyter_session_tests::hub::{self, Hub, Installed, cmdline, free_port, live_processes, set_mode, wait_until};
use jupyter_session_tests::{StateDir, TestUser, cli_path, keeper_cmd, owner_mode, require_root, run, unique};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const ROOT: &str = "/var/tmp/svc-jupyter-session-test";
const PYTHON_PACKAGES: &[&str] =
    &["jupyterhub>=5,<7", "jupyter_server>=2,<3", "dockerspawner>=13,<15", "requests", "setuptools>=61", "wheel"];
const IMAGE: &str = "localhost/svc-jupyter-session-test";
const PASSWORD: &str = "svc-e2e-Pw1";
const TOOLS: &[&str] = &["useradd", "usermod", "npm", "node", "podman", "runc", "tar"];

fn installed() -> &'static Installed {
    static ONCE: OnceLock<Installed> = OnceLock::new();
    ONCE.get_or_init(|| {
        hub::install(ROOT, PYTHON_PACKAGES, "service_podman", |root, _venv| {
            let tar = root.join("skeleton.tar");
            hub::make_skeleton_image(&root.join("skeleton-rootfs"), &tar);
            tar
        })
    })
}

fn etc(name: &str) -> PathBuf {
    hub::repo_dir().join("etc/podman-service").join(name)
}

/// An HTTP/1.0 GET over a unix socket: the answer (headers and body), or why not.
fn get(socket: &Path, path: &str) -> Result<String, String> {
    let mut s = UnixStream::connect(socket).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: d\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

fn answers(socket: &Path) -> bool {
    get(socket, "/_ping").is_ok_and(|a| a.starts_with("HTTP/1.") && a.ends_with("OK"))
}

/// A process started by the test (a keeper or the loop): SIGTERM, then SIGKILL, on drop.
struct Started(Child);

impl Started {
    fn spawn(cmd: &mut Command, log: &Path) -> Started {
        let log = fs::File::create(log).unwrap();
        Started(cmd.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap())
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// SIGTERM and wait (bounded): the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGTERM);
        self.wait_exit()
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                return status;
            }
            assert!(Instant::now() < end, "pid {} did not end within 30 s", self.0.id());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGTERM);
            std::thread::sleep(Duration::from_millis(500));
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A directory of the test's own, removed on drop (also when the test fails).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The account's `podman system service` processes.
fn services(uid: u32) -> Vec<u32> {
    live_processes(uid, " system service ")
}

/// `check --user ACCOUNT --json`'s session.managed finding: (status, observed).
fn managed_finding(config: &Path, user: &str) -> (String, String) {
    let out = run(Command::new(cli_path()).arg("check").arg("--config").arg(config).args(["--user", user, "--json"]));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("check --json prints JSON");
    let f = doc["findings"].as_array().unwrap().iter().find(|f| f["id"] == "session.managed").cloned().unwrap();
    (f["status"].as_str().unwrap().to_string(), f["observed"].as_str().unwrap().to_string())
}

#[test]
fn service_account_runs_the_hub_with_dockerspawner_over_its_podman_socket() {
    let test = "service_account_runs_the_hub_with_dockerspawner_over_its_podman_socket";
    if !require_root(test, TOOLS) {
        return;
    }
    let begun = Instant::now();
    let inst = installed();
    let account = TestUser::create_system("svch");
    let uid = account.uid;
    let who = format!("{} (uid {uid})", account.name);
    let state = StateDir::new();
    let scratch = Scratch(PathBuf::from(ROOT).join("runs").join(unique("svc")));
    let dir = scratch.0.clone();
    fs::create_dir_all(&dir).unwrap();
    set_mode(&dir, 0o755);
    let config = dir.join("jupyter-session.toml");
    fs::write(&config, format!("state_dir = \"{}\"\nservice_users = [\"{}\"]\n", state.0.display(), account.name))
        .unwrap();
    set_mode(&config, 0o644);
    let service = hub::shipped_keeper_service("svcp", &config);
    let keeper = |args: &[&str]| {
        let mut c = keeper_cmd();
        c.arg("exec").arg("--config").arg(&config).args(["--service", &service.name, "--user", &account.name]);
        c.arg("--").args(args);
        c
    };

    // Boot: the account's runtime dir without a session.
    let out = run(Command::new(cli_path()).arg("ensure").arg("--config").arg(&config));
    assert!(out.status.success(), "ensure: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(owner_mode(&account.runtime_dir()), Some((uid, account.gid, 0o700)), "{who}: ensure made the dir");

    // The image, in the account's storage.
    let out =
        run(keeper(&["podman", "--runtime", "runc", "import", "--quiet", inst.image_tar.to_str().unwrap(), IMAGE])
            .stdin(Stdio::null()));
    assert!(out.status.success(), "podman import: {}", String::from_utf8_lossy(&out.stderr));

    // The service, under the keeper, with the shipped helper.
    let socket = account.runtime_dir().join("podman/podman.sock");
    let helper = etc("jupyter-session-podman-service");
    let mut svc = Started::spawn(
        keeper(&[helper.to_str().unwrap(), "--runtime", "runc"]).current_dir("/"),
        &dir.join("service.log"),
    );
    wait_until("the podman API socket to answer", || answers(&socket));
    assert_eq!(owner_mode(&socket).map(|(u, _, _)| u), Some(uid), "{who}: the socket is the account's");
    assert_eq!(state.records(uid), 1, "{who}: the service runs in a session");
    let service_pids = services(uid);
    assert_eq!(service_pids.len(), 1, "{who}: one service process: {service_pids:?}");
    let ppid = hub::status_field(service_pids[0], "PPid")[0].parse::<u32>().unwrap();
    assert_eq!(ppid, svc.pid(), "{who}: the primed service is the keeper's own child (no re-exec left behind)");

    // The hub, as the account, spawning through DockerSpawner over the socket, network host.
    let hub_dir = dir.join("hub");
    fs::create_dir_all(&hub_dir).unwrap();
    set_mode(&hub_dir, 0o700);
    std::os::unix::fs::chown(&hub_dir, Some(uid), Some(account.gid)).unwrap();
    let port = free_port();
    let server_port = free_port();
    let venv = inst.venv.display().to_string();
    let person = "svcuser";
    let mut c = hub::base_config(inst, &hub_dir, port, "unused", &[]);
    writeln!(c, "c.JupyterHub.authenticator_class = 'dummy'").unwrap();
    writeln!(c, "c.DummyAuthenticator.password = {PASSWORD:?}").unwrap();
    writeln!(c, "c.Authenticator.allowed_users = {{{person:?}}}").unwrap();
    writeln!(
        c,
        r#"
from dockerspawner import DockerSpawner
class HostNetworkDockerSpawner(DockerSpawner):
    # network host: the server listens on the host's loopback, on the spawner's port
    async def get_ip_and_port(self):
        return self.ip, self.port
c.JupyterHub.spawner_class = HostNetworkDockerSpawner
c.DockerSpawner.client_kwargs = {{"base_url": "unix://{socket}"}}
c.DockerSpawner.image = "{IMAGE}:latest"
c.DockerSpawner.pull_policy = "never"
c.DockerSpawner.network_name = "host"
c.DockerSpawner.use_internal_ip = True  # no port bindings: they are refused with network host
c.DockerSpawner.ip = "127.0.0.1"
c.DockerSpawner.port = {server_port}
c.DockerSpawner.remove = True
c.DockerSpawner.name_template = "jupyter-{{username}}"
c.DockerSpawner.volumes = {{
    "jupyterhub-user-{{username}}": "/home/jovyan/work",
    "/usr": {{"bind": "/usr", "mode": "ro"}},
    "{venv}": {{"bind": "{venv}", "mode": "ro"}},
}}
c.DockerSpawner.notebook_dir = "/home/jovyan/work"
c.DockerSpawner.cmd = ["{venv}/bin/jupyterhub-singleuser"]
c.DockerSpawner.args = ["--allow-root"]
"#,
        socket = socket.display()
    )
    .unwrap();
    let hub = Hub::start(inst, &hub_dir, &c, port, Some(&account));
    assert_eq!(hub::status_field(hub.pid(), "Uid")[0], uid.to_string(), "the hub runs as the account");

    let started = Instant::now();
    let out = hub.script_ok("hubclient.py", &["start", person, PASSWORD]);
    eprintln!("service_podman: logged in, container server ready in {:.1} s", started.elapsed().as_secs_f64());
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("hubclient start prints JSON");
    let token = v["token"].as_str().unwrap().to_string();
    let container = format!("jupyter-{person}");
    let listed = get(&socket, "/containers/json").unwrap();
    assert!(listed.contains(&format!("\"/{container}\"")), "{who}: the container runs: {listed}");
    let servers = live_processes(uid, "jupyterhub-singleuser");
    assert!(!servers.is_empty(), "{who}: the server runs as the account on the host (container root)");
    let ns = |p: &str| fs::read_link(format!("/proc/{p}/ns/user")).unwrap();
    assert_ne!(ns(&servers[0].to_string()), ns("self"), "{who}: in the account's user namespace");

    // A file through the contents API lands in the named volume in the account's storage.
    let text = format!("written through the contents API for {person}\n");
    hub.script_ok("contents_client.py", &["put", person, &token, "svc-e2e.txt", &text]);
    let volume = account.home.join(format!(".local/share/containers/storage/volumes/jupyterhub-user-{person}/_data"));
    let file = volume.join("svc-e2e.txt");
    assert_eq!(fs::read_to_string(&file).ok().as_deref(), Some(text.as_str()), "{who}: {}", file.display());
    assert_eq!(owner_mode(&file).map(|(u, _, _)| u), Some(uid), "{who}: the file is the account's on the host");

    // Stop: the container goes, the volume stays, the account's dir and service survive.
    hub.script_ok("hubclient.py", &["stop", person, &token]);
    wait_until("the container to be removed", || {
        get(&socket, "/containers/json?all=true").is_ok_and(|l| !l.contains(&format!("\"/{container}\"")))
    });
    let volumes = get(&socket, "/volumes").unwrap();
    assert!(volumes.contains(&format!("jupyterhub-user-{person}")), "{who}: the volume stays: {volumes}");
    assert_eq!(fs::read_to_string(&file).ok().as_deref(), Some(text.as_str()), "{who}: its data stays");
    assert!(answers(&socket) && account.runtime_dir().is_dir(), "{who}: service and dir survive the user's stop");
    assert_eq!(services(uid), service_pids, "{who}: the same service process");
    drop(hub);

    // SIGTERM to the service's keeper: the service stops, the session closes, the lingering dir stays.
    let status = svc.terminate();
    assert!(services(uid).is_empty(), "{who}: no service left after SIGTERM (keeper: {status})");
    assert!(!answers(&socket), "{who}: nothing answers on the socket");
    assert_eq!(state.records(uid), 0, "{who}: the session is closed");
    assert!(account.runtime_dir().is_dir(), "{who}: the service account's dir is never removed by a close");

    // Supervised: the loop starts it; a SIGKILLed service is noticed by check and restarted.
    let mut looped = Started::spawn(
        Command::new(etc("jupyter-session-podman-loop"))
            .arg(&account.name)
            .arg("--config")
            .arg(&config)
            .args(["--service", &service.name, "--", "--runtime", "runc"])
            .env_clear()
            .env("PATH", hub::SYSTEM_PATH)
            .env("JUPYTER_SESSION", cli_path())
            .env("PODMAN_SERVICE", etc("jupyter-session-podman-service"))
            .env("RESTART_DELAY", "3")
            .current_dir("/"),
        &dir.join("loop.log"),
    );
    wait_until("the looped service to answer", || answers(&socket));
    let (status, observed) = managed_finding(&config, &account.name);
    assert_eq!(status, "pass", "{observed}");
    assert!(observed.contains("listens on"), "{observed}");
    let first = services(uid);
    assert_eq!(first.len(), 1, "{first:?}");
    kill(Pid::from_raw(first[0] as i32), Signal::SIGKILL).unwrap();
    wait_until("the killed service's keeper to close its session", || state.records(uid) == 0);
    let (status, observed) = managed_finding(&config, &account.name);
    assert_eq!(status, "warn", "check notices the dead service: {observed}");
    assert!(observed.contains("nothing listens"), "{observed}");
    wait_until("the loop to restart the service", || answers(&socket));
    let second = services(uid);
    assert!(second.len() == 1 && second != first, "{who}: a new service process: {first:?} -> {second:?}");
    assert!(fs::read_to_string(dir.join("loop.log")).unwrap().contains("restarting"), "the loop says why");
    let status = looped.terminate();
    assert!(status.success(), "the loop ends cleanly on SIGTERM: {status}");
    assert!(services(uid).is_empty() && !answers(&socket), "{who}: SIGTERM to the loop stops the service");
    assert_eq!(state.records(uid), 0);
    let left: Vec<String> = live_processes(uid, "").iter().map(|p| format!("{p}: {}", cmdline(*p))).collect();
    assert!(
        left.iter().all(|l| l.contains("catatonit")),
        "{who}: only podman's pause process (lingering) is left:\n{}",
        left.join("\n")
    );
    eprintln!("service_podman: whole test {:.1} s", begun.elapsed().as_secs_f64());
}
