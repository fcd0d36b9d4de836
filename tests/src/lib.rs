//! Shared harness for the integration tests: real users, real PAM service
//! files, the built module and CLI, and cleanup of everything a test makes.
//!
//! Tests that need root or a real component call [`require`]: outside CI
//! they skip loudly, naming what they need; in CI (`CI=true`) they fail.
#![forbid(unsafe_code)]

pub mod hub;
pub mod lab;
pub mod slurm;

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::fcntl::{Flock, FlockArg};

/// Whether we run in CI, where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Check a precondition. Returns false (and says so loudly) when the test
/// must skip; panics in CI, where skipping is a failure.
#[must_use]
pub fn require(test: &str, ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    assert!(!in_ci(), "{test}: needs {what}, and in CI nothing may be skipped");
    eprintln!("SKIPPED {test}: needs {what}");
    false
}

/// `require(test, euid == 0, "root")` plus the given commands on PATH.
#[must_use]
pub fn require_root(test: &str, commands: &[&str]) -> bool {
    if !require(test, nix::unistd::geteuid().is_root(), "root") {
        return false;
    }
    commands.iter().all(|c| require(test, which(c).is_some(), &format!("the command `{c}`")))
}

pub fn which(command: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).map(|d| d.join(command)).find(|p| p.is_file())
}

/// `target/<profile>`: where cargo put the module and the CLI.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test-binary>
    exe.parent().and_then(Path::parent).expect("target dir").to_path_buf()
}

/// The built `libpam_jupyter.so` (run `cargo build --workspace` first).
pub fn module_path() -> PathBuf {
    let p = target_dir().join("libpam_jupyter.so");
    assert!(p.is_file(), "{} missing: run `cargo build --workspace` before the tests", p.display());
    p
}

/// The built `jupyter-session` binary.
pub fn cli_path() -> PathBuf {
    let p = target_dir().join("jupyter-session");
    assert!(p.is_file(), "{} missing: run `cargo build --workspace` before the tests", p.display());
    p
}

/// `Command` for the built CLI as the keeper (`exec`) is started: without
/// the `LD_LIBRARY_PATH` cargo gives test processes, which a root keeper
/// refuses like every variable the dynamic loader acts on.
pub fn keeper_cmd() -> Command {
    let mut c = Command::new(cli_path());
    c.env_remove("LD_LIBRARY_PATH");
    c
}

/// The keeper's arguments: `exec --service SERVICE --user USER -- CMD...`
/// (for `Command::new(cli_path()).args(..)`).
pub fn exec_args<'a>(service: &'a str, user: &'a str, cmd: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["exec", "--service", service, "--user", user, "--"];
    args.extend_from_slice(cmd);
    args
}

/// A name unique to this test process: `prefix` + pid + counter, short
/// enough for useradd (32 chars).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}{}x{}", std::process::id() % 100_000, N.fetch_add(1, Ordering::Relaxed))
}

/// Serialize edits of /etc/passwd across test processes (useradd refuses
/// to run while another holds its lock).
fn passwd_lock() -> Flock<File> {
    let f = File::options().create(true).truncate(false).write(true).open("/run/jupyter-session-tests.lock").unwrap();
    Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| e).unwrap()
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Run and insist on success, showing output otherwise.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A real user made with `useradd -m`; removed with everything it had
/// (processes, home, runtime dir) on drop.
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl TestUser {
    pub fn create(prefix: &str) -> TestUser {
        Self::create_with(prefix, &[])
    }

    /// The host as documented: /dev/net/tun is 0600 on these machines, so
    /// the user's containers.conf says `netns = "none"` (else podman's
    /// default network cannot start, and `check`'s net.helper rightly FAILs).
    pub fn podman_without_network(&self) {
        let dir = self.home.join(".config/containers");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("containers.conf"), "[containers]\nnetns = \"none\"\n").unwrap();
        for p in [self.home.join(".config"), dir.clone(), dir.join("containers.conf")] {
            std::os::unix::fs::chown(&p, Some(self.uid), Some(self.gid)).unwrap();
        }
    }

    /// `useradd -m` with extra arguments (e.g. `["-G", "audio"]`).
    pub fn create_with(prefix: &str, extra: &[&str]) -> TestUser {
        let name = unique(prefix);
        {
            let _lock = passwd_lock();
            run_ok(Command::new("useradd").args(["-m", "-s", "/bin/sh"]).args(extra).arg(&name));
        }
        let u = session_lib::user::UserInfo::by_name(&name).expect("new user resolves");
        TestUser { name, uid: u.uid, gid: u.gid, home: u.home }
    }

    /// A service account as an admin makes one: `useradd --system` (a uid
    /// below 1000, home /var/lib/NAME), then subordinate ids with
    /// `usermod --add-subuids/--add-subgids` (useradd gives system accounts
    /// none) above every range already in /etc/subuid and /etc/subgid.
    pub fn create_system(prefix: &str) -> TestUser {
        let name = unique(prefix);
        {
            let _lock = passwd_lock();
            let home = format!("/var/lib/{name}");
            run_ok(Command::new("useradd").args(["--system", "-m", "-d", &home, "-s", "/bin/sh"]).arg(&name));
            let top = |file: &str| {
                fs::read_to_string(file)
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| {
                        let mut f = l.split(':').skip(1);
                        Some(f.next()?.parse::<u64>().ok()? + f.next()?.parse::<u64>().ok()?)
                    })
                    .max()
                    .unwrap_or(100_000)
            };
            let start = top("/etc/subuid").max(top("/etc/subgid")).max(100_000);
            let range = format!("{start}-{}", start + 65_535);
            run_ok(Command::new("usermod").args(["--add-subuids", &range, "--add-subgids", &range]).arg(&name));
        }
        let u = session_lib::user::UserInfo::by_name(&name).expect("new user resolves");
        TestUser { name, uid: u.uid, gid: u.gid, home: u.home }
    }

    pub fn runtime_dir(&self) -> PathBuf {
        PathBuf::from(format!("/run/user/{}", self.uid))
    }

    /// Set a password (for PAM authentication by the hub).
    pub fn set_password(&self, password: &str) {
        use std::io::Write;
        let mut child = Command::new("chpasswd").stdin(std::process::Stdio::piped()).spawn().unwrap();
        writeln!(child.stdin.take().unwrap(), "{}:{password}", self.name).unwrap();
        assert!(child.wait().unwrap().success());
    }

    /// Kill every process of this user, by pid.
    pub fn kill_processes(&self) {
        for _ in 0..50 {
            let pids = session_lib::procfs::processes_of_uid(self.uid);
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::SIGKILL);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        self.kill_processes();
        let rt = self.runtime_dir();
        if rt.exists() {
            let _ = Command::new("umount").arg("-l").arg(&rt).output();
            let _ = fs::remove_dir_all(&rt);
        }
        // Rootless podman's state outside the home (userdel -r leaves it, and a later user
        // with the same uid would inherit it).
        // Podman falls back to $TMPDIR, /tmp or /var/tmp depending on how it was started.
        for tmp in ["/tmp", "/var/tmp"] {
            for dir in [format!("{tmp}/podman-run-{}", self.uid), format!("{tmp}/containers-user-{}", self.uid)] {
                let _ = fs::remove_dir_all(dir);
            }
        }
        let _lock = passwd_lock();
        let _ = Command::new("userdel").arg("-r").arg(&self.name).output();
    }
}

/// A PAM service file in /etc/pam.d, removed on drop.
pub struct PamService {
    pub name: String,
    pub path: PathBuf,
}

impl PamService {
    /// Write `/etc/pam.d/<unique name>` with these lines. `@MODULE@` in a
    /// line stands for the absolute path of the built pam_jupyter.
    pub fn create(prefix: &str, lines: &[&str]) -> PamService {
        let name = unique(prefix);
        let path = PathBuf::from("/etc/pam.d").join(&name);
        let module = module_path().display().to_string();
        let text: String = lines.iter().map(|l| format!("{}\n", l.replace("@MODULE@", &module))).collect();
        fs::write(&path, text).unwrap();
        PamService { name, path }
    }
}

impl PamService {
    /// A service whose session stack is only pam_jupyter, with `state`'s dir and `extra` arguments.
    pub fn with_module(prefix: &str, state: &StateDir, extra: &str) -> PamService {
        PamService::create(prefix, &[&state.module_line(extra)])
    }
}

impl Drop for PamService {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A private state dir under /run for one test, removed on drop. Pass
/// `state_dir=<path>` to the module so tests do not see each other.
pub struct StateDir(pub PathBuf);

impl StateDir {
    pub fn new() -> StateDir {
        StateDir(PathBuf::from(format!("/run/js-test-{}", unique("s"))))
    }

    pub fn arg(&self) -> String {
        format!("state_dir={}", self.0.display())
    }

    /// `session required @MODULE@ state_dir=<this> <extra>`: pam_jupyter with this state dir.
    pub fn module_line(&self, extra: &str) -> String {
        format!("session required @MODULE@ {} {extra}", self.arg()).trim_end().to_string()
    }

    /// Number of session records of `uid`.
    pub fn records(&self, uid: u32) -> usize {
        fs::read_dir(self.0.join("users").join(uid.to_string()))
            .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".json")).count())
            .unwrap_or(0)
    }
}

impl Default for StateDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// (uid, gid, mode) of a path, not following symlinks.
pub fn owner_mode(path: &Path) -> Option<(u32, u32, u32)> {
    fs::symlink_metadata(path).ok().map(|m| (m.uid(), m.gid(), m.mode() & 0o7777))
}

/// The environment of a running process, from /proc (as root).
pub fn environ_of(pid: u32) -> Vec<(String, String)> {
    let raw = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// The built `hold-session` driver (tests/src/bin/hold-session.rs).
pub fn holder_path() -> PathBuf {
    let p = target_dir().join("hold-session");
    assert!(p.is_file(), "{} missing: run `cargo build --workspace` before the tests", p.display());
    p
}

/// A process holding a PAM session open through libpam (the `hold-session`
/// driver over session-lib's PAM client). Closed on drop if still open.
pub struct SessionHolder {
    pub child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    pub env: Vec<(String, String)>,
}

impl SessionHolder {
    /// Start the driver without waiting for its "OPEN" line (to open many at once).
    pub fn start(service: &str, user: &str) -> SessionHolder {
        SessionHolder::start_under(&[], service, user)
    }

    /// Like [`start`](Self::start), with the driver run by `wrapper`
    /// (e.g. `["unshare", "-m"]`; empty: run it directly). The wrapper must
    /// exec the driver, so that the child is the PAM host.
    pub fn start_under(wrapper: &[&str], service: &str, user: &str) -> SessionHolder {
        let holder = holder_path();
        let mut command = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&holder);
                c
            }
            None => Command::new(&holder),
        };
        SessionHolder::spawn(command.args([service, user]))
    }

    /// Open a session of `user` through pam_wrapper's private `service`
    /// (the module's pam_syslog lines go to the driver's stderr, read by
    /// [`close_with_log`](Self::close_with_log)); panics if it fails to open.
    pub fn open_logged(service: &WrappedService, user: &str) -> SessionHolder {
        let mut command = Command::new(holder_path());
        service.env(&mut command).args([WrappedService::NAME, user]).stderr(std::process::Stdio::piped());
        let mut h = SessionHolder::spawn(&mut command);
        h.wait_open(user);
        h
    }

    fn spawn(command: &mut Command) -> SessionHolder {
        use std::process::Stdio;
        let mut child =
            command.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("the hold-session driver runs");
        let stdin = child.stdin.take();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        SessionHolder { child, stdin, stdout, env: Vec::new() }
    }

    /// Open a session and read its PAM environment; panics if it fails to open.
    pub fn open(service: &str, user: &str) -> SessionHolder {
        let mut h = SessionHolder::start(service, user);
        h.wait_open(user);
        h
    }

    /// Read the "OPEN 0" line and the environment after [`start`](Self::start).
    pub fn wait_open(&mut self, user: &str) {
        assert_eq!(self.line(), "OPEN 0", "pam_open_session for {user} failed");
        loop {
            let line = self.line();
            if line == "END" || line.is_empty() {
                break;
            }
            let (k, v) = line.split_once('=').expect("NAME=value");
            self.env.push((k.to_string(), v.to_string()));
        }
    }

    /// The next line the driver printed ("" at EOF).
    pub fn line(&mut self) -> String {
        use std::io::BufRead;
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim_end().to_string()
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        self.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Ask for pam_close_session + pam_end without waiting (to close many at once).
    pub fn request_close(&mut self) {
        use std::io::Write;
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin);
        }
    }

    /// Close the session; returns the driver's "CLOSED <rc>".
    pub fn close(mut self) -> String {
        self.request_close();
        let status = self.line();
        let _ = self.child.wait();
        status
    }

    /// Close a session opened by [`open_logged`](Self::open_logged);
    /// returns the driver's "CLOSED <rc>" and everything the module logged.
    pub fn close_with_log(mut self) -> (String, String) {
        use std::io::Read;
        self.request_close();
        let status = self.line();
        let mut log = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            stderr.read_to_string(&mut log).unwrap();
        }
        let _ = self.child.wait();
        (status, log)
    }

    /// SIGKILL the holder between open and close: its record goes stale.
    pub fn kill(mut self) {
        // Kill before stdin closes: EOF on stdin means "close the session".
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.stdin.take();
    }
}

impl Drop for SessionHolder {
    fn drop(&mut self) {
        self.request_close();
        let _ = self.child.wait();
    }
}

/// A private service directory for cwrap's pam_wrapper holding one service,
/// `jstest`; removed on drop. Processes started through [`Self::env`] load
/// their PAM services from it, and pam_wrapper prints the module's
/// pam_syslog lines with their priority (`SYSLOG(N): ...`) on stderr.
pub struct WrappedService {
    pub dir: PathBuf,
}

impl WrappedService {
    pub const NAME: &'static str = "jstest";

    pub fn new(lines: &str) -> WrappedService {
        let dir = std::env::temp_dir().join(unique("pamw"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(Self::NAME), format!("{lines}\n")).unwrap();
        WrappedService { dir }
    }

    /// `session required <module> <module_args>` then pam_permit.
    pub fn with_module(module_args: &str) -> WrappedService {
        WrappedService::new(&format!(
            "session required {} {module_args}\nsession optional pam_permit.so",
            module_path().display()
        ))
    }

    /// Point `cmd` at this service dir through pam_wrapper.
    pub fn env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("LD_PRELOAD", "libpam_wrapper.so")
            .env("PAM_WRAPPER", "1")
            .env("PAM_WRAPPER_SERVICE_DIR", &self.dir)
            .env("PAM_WRAPPER_DEBUGLEVEL", "2")
    }
}

impl Drop for WrappedService {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Whether pam_wrapper is installed (skips loudly, or fails in CI, if not).
pub fn require_pam_wrapper(test: &str) -> bool {
    require(
        test,
        Path::new("/usr/lib/x86_64-linux-gnu/libpam_wrapper.so").exists() || which("pam_wrapper").is_some(),
        "pam_wrapper (apt libpam-wrapper)",
    )
}

/// `pamtester jstest USER OPS...` under pam_wrapper with the built module
/// (`module_args`), started through `wrapper` (e.g. `["unshare", "-m"]`, or
/// nothing): whether it succeeded, and its output with the module's log.
pub fn wrapped_pamtester(wrapper: &[&str], module_args: &str, user: &str, ops: &[&str]) -> (bool, String) {
    let service = WrappedService::with_module(module_args);
    let mut cmd = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg("pamtester");
            c
        }
        None => Command::new("pamtester"),
    };
    let out = run(service.env(&mut cmd).arg(WrappedService::NAME).arg(user).args(ops));
    (out.status.success(), stdout_and_stderr(&out))
}

/// A command's stdout followed by its stderr, as text.
pub fn stdout_and_stderr(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The source tree (the workspace root).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// The README's Quick start commands, verbatim: the lines of the first
/// ```sh block under "## Quick start" (the install command, then the
/// session command). Tests run them as they are, so the README cannot go
/// stale.
pub fn quick_start_commands() -> Vec<String> {
    let readme = fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let section = readme.split("\n## Quick start\n").nth(1).expect("README.md has a '## Quick start' section");
    let block = section.split("```sh\n").nth(1).expect("the Quick start has a ```sh block");
    let block = block.split("```").next().unwrap_or("");
    let commands: Vec<String> = block.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect();
    assert_eq!(commands.len(), 2, "the Quick start's sh block must hold two commands: {commands:?}");
    commands
}

/// `target/release`, built once per run (`cargo build --release --workspace
/// --locked`) under a lock, for the tests that install or package release
/// binaries as a user would.
pub fn release_build() -> PathBuf {
    static DONE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(std::env::temp_dir().join("jupyter-session-release-build.lock"))
            .unwrap();
        let _lock = Flock::lock(lock, FlockArg::LockExclusive).map_err(|(_, e)| e).unwrap();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        run_ok(Command::new(cargo).current_dir(repo_root()).args(["build", "--release", "--workspace", "--locked"]));
        target_dir().parent().expect("target").join("release")
    })
    .clone()
}

/// The built subid NSS provider `libsubid_jupyter.so` (crate nss_subid).
pub fn subid_provider_path() -> PathBuf {
    let p = target_dir().join("libsubid_jupyter.so");
    assert!(p.is_file(), "{} missing: run `cargo build --workspace` before the tests", p.display());
    p
}

/// Where shadow's `dlopen("libsubid_jupyter.so")` finds the provider (a
/// trusted directory; even the setuid newuidmap searches it). Inert on its
/// own: nothing loads it without `subid: jupyter` in nsswitch.conf, which
/// only a [`PrivateEtc`] has. install.sh puts it in the same place.
pub const SUBID_PROVIDER_INSTALLED: &str = "/usr/lib/x86_64-linux-gnu/libsubid_jupyter.so";

/// Install the built provider at [`SUBID_PROVIDER_INSTALLED`], once per
/// test process, atomically (a copy renamed into place).
pub fn install_subid_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let tmp = format!("{SUBID_PROVIDER_INSTALLED}.{}", unique("t"));
        fs::copy(subid_provider_path(), &tmp).unwrap();
        fs::rename(&tmp, SUBID_PROVIDER_INSTALLED).unwrap();
    });
}

/// A private copy of /etc (under /var/tmp/subid-*) that commands see at
/// /etc through [`PrivateEtc::wrap`]: each runs in its own mount namespace
/// with the copy bind-mounted over /etc, so a test can change nsswitch.conf,
/// /etc/subuid, /etc/subgid and /etc/security/jupyter-session.toml without
/// touching the real ones. Make users and PAM services first: the copy is
/// taken when this is created. Removed on drop.
pub struct PrivateEtc {
    pub root: PathBuf,
}

impl PrivateEtc {
    pub fn new() -> PrivateEtc {
        let root = PathBuf::from(format!("/var/tmp/{}", unique("subid-etc")));
        fs::create_dir_all(&root).unwrap();
        {
            let _lock = passwd_lock();
            run_ok(Command::new("cp").arg("-a").arg("/etc").arg(root.join("etc")));
        }
        PrivateEtc { root }
    }

    /// A path inside the copy, e.g. `etc("subuid")`.
    pub fn etc(&self, rel: &str) -> PathBuf {
        self.root.join("etc").join(rel)
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.etc(rel)).unwrap_or_default()
    }

    /// Write a file of the copy, root-owned 0644 like the real one.
    pub fn write(&self, rel: &str, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        let p = self.etc(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    }

    /// Append `subid: jupyter` to the copy's nsswitch.conf.
    pub fn use_subid_provider(&self) {
        install_subid_provider();
        let text = self.read("nsswitch.conf");
        self.write("nsswitch.conf", &format!("{text}subid:          jupyter\n"));
    }

    /// Drop `user`'s lines (by name or uid) from the copy's subuid and subgid.
    pub fn drop_subid_lines(&self, user: &TestUser) {
        for f in ["subuid", "subgid"] {
            let kept: String = self
                .read(f)
                .lines()
                .filter(|l| {
                    let owner = l.split(':').next().unwrap_or("");
                    owner != user.name && owner != user.uid.to_string()
                })
                .map(|l| format!("{l}\n"))
                .collect();
            self.write(f, &kept);
        }
    }

    /// `cmd`, run in a fresh mount namespace with the copy over /etc (and
    /// with `cmd`'s environment changes, e.g. keeper_cmd's).
    pub fn wrap(&self, cmd: &Command) -> Command {
        self.wrap_with(cmd, "")
    }

    /// As [`wrap`](Self::wrap), with /dev replaced by a minimal one whose
    /// `/dev/log` is `sink`'s socket, so syslog(3) lines reach the test.
    pub fn wrap_logged(&self, cmd: &Command, sink: &SyslogSink) -> Command {
        let dev = self.root.join("dev");
        fs::create_dir_all(&dev).unwrap();
        for n in ["null", "zero", "urandom"] {
            if !dev.join(n).exists() {
                run_ok(Command::new("cp").arg("-a").arg(format!("/dev/{n}")).arg(&dev));
            }
        }
        let _ = File::create(dev.join("log")).unwrap();
        let extra = format!(" && mount --bind {} /dev && mount --bind {} /dev/log", dev.display(), sink.path.display());
        self.wrap_with(cmd, &extra)
    }

    fn wrap_with(&self, cmd: &Command, extra: &str) -> Command {
        let script = format!("mount --bind {} /etc{extra} && exec \"$@\"", self.root.join("etc").display());
        let mut c = Command::new("unshare");
        c.args(["-m", "--propagation", "private", "--", "sh", "-c", &script, "sh"]);
        c.arg(cmd.get_program()).args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if let Some(d) = cmd.get_current_dir() {
            c.current_dir(d);
        }
        c
    }
}

impl Default for PrivateEtc {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PrivateEtc {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// A datagram socket standing in for /dev/log (see [`PrivateEtc::wrap_logged`]),
/// read continuously by a thread (a full socket queue would block every
/// process that logs).
pub struct SyslogSink {
    pub path: PathBuf,
    lines: std::sync::Arc<std::sync::Mutex<String>>,
}

impl SyslogSink {
    pub fn new() -> SyslogSink {
        let path = PathBuf::from(format!("/var/tmp/{}.log", unique("subid-syslog")));
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let into = lines.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 8192];
            // Ends with the test process (the socket file is removed on drop).
            while let Ok(n) = socket.recv(&mut buf) {
                let mut l = into.lock().unwrap();
                l.push_str(&String::from_utf8_lossy(&buf[..n]));
                l.push('\n');
            }
        });
        SyslogSink { path, lines }
    }

    /// Every message received since the last call, one per line (waits a
    /// moment for messages still in flight).
    pub fn drain(&self) -> String {
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::mem::take(&mut *self.lines.lock().unwrap())
    }
}

impl Default for SyslogSink {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SyslogSink {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}
