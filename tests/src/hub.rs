//! The JupyterHub harness shared by tests/tests/jupyterhub.rs and tests/tests/podman_spawner.rs:
//! the venv and the proxy installed once under a directory of each test's own, a hub started on
//! free loopback ports and stopped (with its proxy) on drop, the HTTP steps through the Python
//! clients in tests/jupyterhub/, and the /proc readings both tests inspect servers with.

use std::fmt::Write as _;
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{PamService, TestUser, run, run_ok};

pub const PROXY_PACKAGE: &str = "configurable-http-proxy@5";
/// The hub's PATH (besides the venv): no root-only directories like /root/.cargo.
pub const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What [`install`] set up.
pub struct Installed {
    pub venv: PathBuf,
    pub proxy: PathBuf,
    pub image_tar: PathBuf,
}

impl Installed {
    pub fn python(&self) -> PathBuf {
        self.venv.join("bin/python3")
    }
    pub fn bin(&self, name: &str) -> PathBuf {
        self.venv.join("bin").join(name)
    }
    pub fn hub_path(&self) -> String {
        format!("{}:{SYSTEM_PATH}", self.venv.join("bin").display())
    }
}

pub fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Install, under `root` (0755, readable by the test users) and a lock shared with other test
/// processes: a venv of Debian's python with `python_packages` (rebuilt when they change), this
/// repo's `python/` package (fresh every time, built from a copy: no build/ in the repo) and the
/// proxy. Then `finish(root, venv)` (still under the lock) makes the test's image tarball and
/// returns its path. Everything is made readable by the test users; `label` names the test in
/// the log line. Call it once per test process (from a `OnceLock`).
pub fn install(
    root: &str,
    python_packages: &[&str],
    label: &str,
    finish: impl FnOnce(&Path, &Path) -> PathBuf,
) -> Installed {
    let root = PathBuf::from(root);
    fs::create_dir_all(&root).unwrap();
    set_mode(&root, 0o755);
    let lock = fs::File::options().create(true).truncate(false).write(true).open(root.join(".lock")).unwrap();
    let _lock = Flock::lock(lock, FlockArg::LockExclusive).map_err(|(_, e)| e).unwrap();
    let started = Instant::now();

    let venv = root.join("venv");
    let key = python_packages.join(" ");
    let stamp = venv.join(".jupyter-session-stamp");
    if fs::read_to_string(&stamp).ok().as_deref() != Some(key.as_str()) {
        let _ = fs::remove_dir_all(&venv);
        // Debian's python (python3-venv), not whatever `python3` is first on root's PATH: its
        // interpreter and stdlib live under /usr, which the podman test's container mounts.
        run_ok(Command::new("/usr/bin/python3").args(["-m", "venv"]).arg(&venv));
        run_ok(
            Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "--disable-pip-version-check"])
                .args(python_packages),
        );
        fs::write(&stamp, &key).unwrap();
    }
    let src = root.join("src");
    let _ = fs::remove_dir_all(&src);
    run_ok(Command::new("cp").arg("-r").arg(repo_dir().join("python")).arg(&src));
    for junk in ["build", "jupyterhub_session.egg-info"] {
        let _ = fs::remove_dir_all(src.join(junk));
    }
    run_ok(
        Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check", "--no-deps", "--no-build-isolation"])
            .args(["--force-reinstall"])
            .arg(&src),
    );

    let node = root.join("node");
    let proxy = node.join("node_modules/.bin/configurable-http-proxy");
    let node_stamp = node.join(".jupyter-session-stamp");
    if fs::read_to_string(&node_stamp).ok().as_deref() != Some(PROXY_PACKAGE) || !proxy.exists() {
        let _ = fs::remove_dir_all(&node);
        fs::create_dir_all(&node).unwrap();
        run_ok(
            Command::new("npm")
                .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
                .arg(&node)
                .arg(PROXY_PACKAGE),
        );
        fs::write(&node_stamp, PROXY_PACKAGE).unwrap();
    }

    let image_tar = finish(&root, &venv);
    // Everything readable (and the programs executable) by the test users and the hub account.
    for path in [&venv, &node, &image_tar] {
        run_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(path));
    }
    eprintln!("{label}: test environment ready in {:.1} s", started.elapsed().as_secs_f64());
    Installed { venv, proxy, image_tar }
}

/// A rootfs with nothing of its own: Debian's merged-/usr symlinks (the host's /usr is mounted
/// over /usr read-only), an /etc/passwd podman adds the keep-id user to, and the usual empty dirs.
pub fn make_skeleton_image(rootfs: &Path, tar: &Path) {
    let _ = fs::remove_dir_all(rootfs);
    for dir in ["usr", "etc", "tmp", "var/tmp", "home", "proc", "sys", "dev", "run", "root"] {
        fs::create_dir_all(rootfs.join(dir)).unwrap();
    }
    for dir in ["tmp", "var/tmp"] {
        set_mode(&rootfs.join(dir), 0o1777);
    }
    for link in ["bin", "sbin", "lib", "lib64"] {
        std::os::unix::fs::symlink(format!("usr/{link}"), rootfs.join(link)).unwrap();
    }
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
    run_ok(Command::new("tar").arg("-C").arg(rootfs).arg("-cf").arg(tar).arg("."));
}

/// A one-binary image for rootless podman (no registry is reachable): busybox, `id`, `sh`.
pub fn make_busybox_image(rootfs: &Path, tar: &Path) {
    let _ = fs::remove_dir_all(rootfs);
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::create_dir_all(rootfs.join("etc")).unwrap();
    let busybox = crate::which("busybox").expect("busybox");
    fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "id", "true"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
    set_mode(rootfs, 0o755);
    run_ok(Command::new("tar").arg("-C").arg(rootfs).arg("-cf").arg(tar).arg("."));
}

/// Config common to every hub: loopback ports, the local proxy, PAM login with `service`.
pub fn base_config(inst: &Installed, dir: &Path, port: u16, service: &str, users: &[&TestUser]) -> String {
    let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
    base_config_for(inst, dir, port, service, &names)
}

/// [`base_config`] for users given by name (users of a lab container, not of this host).
pub fn base_config_for(inst: &Installed, dir: &Path, port: u16, service: &str, users: &[&str]) -> String {
    let mut c = String::new();
    let allowed: Vec<String> = users.iter().map(|u| format!("{u:?}")).collect();
    writeln!(c, "c = get_config()  # noqa").unwrap();
    writeln!(c, "c.JupyterHub.bind_url = 'http://127.0.0.1:{port}/'").unwrap();
    writeln!(c, "c.JupyterHub.hub_bind_url = 'http://127.0.0.1:{}'", free_port()).unwrap();
    writeln!(c, "c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{}'", free_port()).unwrap();
    writeln!(c, "c.ConfigurableHTTPProxy.command = [{:?}]", inst.proxy.display().to_string()).unwrap();
    writeln!(c, "c.ConfigurableHTTPProxy.pid_file = {:?}", dir.join("proxy.pid").display().to_string()).unwrap();
    writeln!(c, "c.JupyterHub.db_url = 'sqlite:///{}'", dir.join("jupyterhub.sqlite").display()).unwrap();
    writeln!(c, "c.JupyterHub.cookie_secret_file = {:?}", dir.join("cookie_secret").display().to_string()).unwrap();
    writeln!(c, "c.JupyterHub.authenticator_class = 'pam'").unwrap();
    writeln!(c, "c.PAMAuthenticator.service = {service:?}").unwrap();
    writeln!(c, "c.PAMAuthenticator.open_sessions = False").unwrap();
    writeln!(c, "c.Authenticator.allowed_users = {{{}}}", allowed.join(", ")).unwrap();
    writeln!(c, "c.Spawner.start_timeout = 90").unwrap();
    writeln!(c, "c.Spawner.http_timeout = 90").unwrap();
    writeln!(c, "c.JupyterHub.log_level = 'DEBUG'").unwrap();
    c
}

/// The keeper's PAM service `prefix`-NNN: the shipped etc/pam.d/jupyterhub.debian with the built
/// module and `config=CONFIG` in pam_jupyter's line.
pub fn shipped_keeper_service(prefix: &str, config: &Path) -> PamService {
    let shipped = fs::read_to_string(repo_dir().join("etc/pam.d/jupyterhub.debian")).unwrap();
    let lines: Vec<String> = shipped
        .lines()
        .map(|l| {
            if l.split_whitespace().nth(2) == Some("pam_jupyter.so") {
                l.replace("pam_jupyter.so", &format!("@MODULE@ config={}", config.display()))
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(lines.iter().any(|l| l.contains("@MODULE@")), "etc/pam.d/jupyterhub.debian names pam_jupyter.so");
    PamService::create(prefix, &lines.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Run tests/jupyterhub/`script` with the venv's `python`: `args[0]`, the hub's URL `base`, then
/// the rest of `args` (also for hubs that are not a [`Hub`], e.g. one in the systemd lab).
pub fn run_script(python: &Path, base: &str, script: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(python);
    cmd.arg(repo_dir().join("tests/jupyterhub").join(script)).arg(args[0]).arg(base).args(&args[1..]);
    cmd.env_clear().env("PATH", SYSTEM_PATH).env("NO_PROXY", "*");
    run(&mut cmd)
}

/// A running hub; on drop: SIGTERM (the hub stops its servers and its proxy), then SIGKILL of
/// whatever of it is left, and its directory removed. On a failing test, prints the hub's log.
pub struct Hub {
    child: Child,
    dir: PathBuf,
    base: String,
    python: PathBuf,
}

impl Hub {
    /// Start `jupyterhub -f <dir>/jupyterhub_config.py` in `dir`, as root or (with `as_user`) as
    /// that account, and wait until it answers on `port`.
    pub fn start(inst: &Installed, dir: &Path, config: &str, port: u16, as_user: Option<&TestUser>) -> Hub {
        let cfg = dir.join("jupyterhub_config.py");
        fs::write(&cfg, config).unwrap();
        let log = fs::File::create(dir.join("hub.log")).unwrap();
        let mut cmd = match as_user {
            None => Command::new(inst.bin("jupyterhub")),
            Some(u) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={}", u.uid)).arg(format!("--regid={}", u.gid)).arg("--init-groups");
                c.arg(inst.bin("jupyterhub"));
                c
            }
        };
        cmd.arg("-f").arg(&cfg).current_dir(dir).env_clear();
        cmd.env("PATH", inst.hub_path()).env("LANG", "C.UTF-8");
        let home = as_user.map(|u| u.home.clone()).unwrap_or_else(|| PathBuf::from("/root"));
        cmd.env("HOME", home);
        if let Some(u) = as_user {
            cmd.env("USER", &u.name).env("LOGNAME", &u.name);
        }
        cmd.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log).process_group(0);
        let child = cmd.spawn().unwrap();
        let hub =
            Hub { child, dir: dir.to_path_buf(), base: format!("http://127.0.0.1:{port}"), python: inst.python() };
        let started = Instant::now();
        hub.client_ok(&["wait"]);
        eprintln!("jupyterhub: hub up in {:.1} s ({})", started.elapsed().as_secs_f64(), dir.display());
        hub
    }

    /// The hub's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("hub.log")).unwrap_or_default()
    }

    /// Run tests/jupyterhub/`script` with `args[0]`, the hub's URL, then the rest of `args`.
    pub fn script(&self, script: &str, args: &[&str]) -> Output {
        run_script(&self.python, &self.base, script, args)
    }

    /// [`Hub::script`], which must succeed (else the failure and the end of the hub log); its stdout.
    pub fn script_ok(&self, script: &str, args: &[&str]) -> String {
        let out = self.script(script, args);
        assert!(
            out.status.success(),
            "{script} {args:?} failed:\n{}{}\n--- hub log (last 80 lines) ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(), 80)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// tests/jupyterhub/hubclient.py.
    pub fn client(&self, args: &[&str]) -> Output {
        self.script("hubclient.py", args)
    }

    /// tests/jupyterhub/hubclient.py, which must succeed.
    pub fn client_ok(&self, args: &[&str]) -> String {
        self.script_ok("hubclient.py", args)
    }

    /// Log `user` in over HTTP with `password` (which starts the server); the user's API token.
    pub fn login_and_start(&self, user: &TestUser, password: &str) -> String {
        self.login_and_start_profile(user, password, None)
    }

    /// The same, choosing `profile` in ProfilesSpawner's spawn form.
    pub fn login_and_start_profile(&self, user: &TestUser, password: &str, profile: Option<&str>) -> String {
        let started = Instant::now();
        let mut args = vec!["start", &user.name, password];
        args.extend(profile);
        let out = self.client_ok(&args);
        eprintln!("jupyterhub: {} logged in, server ready in {:.1} s", user.name, started.elapsed().as_secs_f64());
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("hubclient start prints JSON");
        v["token"].as_str().expect("token").to_string()
    }

    pub fn stop_server(&self, user: &TestUser, token: &str) {
        let started = Instant::now();
        self.client_ok(&["stop", &user.name, token]);
        eprintln!("jupyterhub: {}'s server stopped in {:.1} s", user.name, started.elapsed().as_secs_f64());
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- hub log ({}) ---\n{}", self.dir.display(), tail(&self.log(), 200));
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(30);
        let mut exited = false;
        while !exited && Instant::now() < end {
            exited = matches!(self.child.try_wait(), Ok(Some(_)));
            if !exited {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if !exited {
            // Still our (unreaped) child, so its process group is still ours to kill.
            let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
            let _ = self.child.wait();
        }
        // The proxy (in its own session) if the hub did not stop it, by its pid file.
        if let Some(proxy) = fs::read_to_string(self.dir.join("proxy.pid")).ok().and_then(|s| s.trim().parse().ok()) {
            if is_command(proxy, "configurable-http-proxy") {
                let _ = kill(Pid::from_raw(proxy as i32), Signal::SIGKILL);
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The last `lines` lines of a hub log, without the noise of the test's own polling.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> =
        text.lines().filter(|l| !l.contains("GET /hub/api/users/") && !l.contains(" scopes:")).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub fn cmdline(pid: u32) -> String {
    fs::read(format!("/proc/{pid}/cmdline")).map(|b| String::from_utf8_lossy(&b).replace('\0', " ")).unwrap_or_default()
}

pub fn is_command(pid: u32, needle: &str) -> bool {
    cmdline(pid).contains(needle)
}

/// `Name:` field of /proc/PID/status, split into words.
pub fn status_field(pid: u32, name: &str) -> Vec<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The pids in /proc.
pub fn all_pids() -> Vec<u32> {
    fs::read_dir("/proc").unwrap().flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect()
}

/// Live (not zombie) processes whose real uid is `uid` and whose command line contains `needle`.
pub fn live_processes(uid: u32, needle: &str) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&pid| {
            status_field(pid, "Uid").first().map(String::as_str) == Some(uid.to_string().as_str())
                && status_field(pid, "State").first().map(String::as_str) != Some("Z")
                && is_command(pid, needle)
        })
        .collect()
}

/// The value of `name` in an environment as [`crate::environ_of`] reads it.
pub fn env_var<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Poll a condition (a bound against hangs, not a timing assertion).
pub fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(60);
    while !ok() {
        assert!(Instant::now() < end, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
