//! `jupyter-session check`: why rootless podman fails here, and what to do.
//!
//! Every check is a pure read over a [`Context`]: the environment, the ids,
//! the configuration and the paths of the system files it reads. By default
//! the context is the calling process ([`Context::current`]) or the session
//! a keeper would give a user ([`Context::for_user`], as root); tests build
//! broken states on temporary directories instead.
//!
//! The catalogue ([`catalogue`]) is in dependency order: a check whose
//! prerequisite failed is skipped with that reason instead of failing a
//! second time. External commands (the user-namespace probe, `podman info`)
//! run with a timeout, as the user being checked.
#![forbid(unsafe_code)]

mod env;
mod explain;
mod identity;
mod kernel;
mod path;
mod podman;
mod selinux;
mod session;
pub(crate) mod subid;
mod system;

pub use explain::{EXPLANATIONS, Explanation, explain};

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::user::UserInfo;

/// Version of the JSON output (`docs/check-schema.json`).
pub const SCHEMA_VERSION: u32 = 1;

/// How bad a failing check is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Podman will not work.
    Fail,
    /// Podman works, degraded or at risk.
    Warn,
    /// For information only.
    Info,
}

impl Severity {
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Fail => "fail",
            Severity::Warn => "warn",
            Severity::Info => "info",
        }
    }
}

/// What a check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    Warn,
    Info,
    /// Not run: a prerequisite failed, it needs root, or it is a deep probe.
    Skipped(String),
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Warn => "warn",
            Status::Info => "info",
            Status::Skipped(_) => "skipped",
        }
    }
}

/// Who can apply a fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    /// The user, in their own session.
    User,
    /// An administrator (needs root).
    Admin,
}

impl Who {
    pub fn as_str(&self) -> &'static str {
        match self {
            Who::User => "user",
            Who::Admin => "admin",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fix {
    pub who: Who,
    pub text: String,
}

/// The result of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub id: &'static str,
    pub severity: Severity,
    pub status: Status,
    pub observed: String,
    pub expected: String,
    /// What was read: the file, syscall or command.
    pub evidence: String,
    pub fix: Option<Fix>,
}

/// What a check function returns; the runner adds id and severity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub status: Status,
    pub observed: String,
    pub expected: String,
    pub evidence: String,
    pub fix: Option<Fix>,
}

impl Verdict {
    pub fn new(
        status: Status,
        observed: impl Into<String>,
        expected: impl Into<String>,
        evidence: impl Into<String>,
    ) -> Verdict {
        Verdict { status, observed: observed.into(), expected: expected.into(), evidence: evidence.into(), fix: None }
    }

    pub fn pass(observed: impl Into<String>, expected: impl Into<String>, evidence: impl Into<String>) -> Verdict {
        Verdict::new(Status::Pass, observed, expected, evidence)
    }

    pub fn skipped(reason: impl Into<String>, evidence: impl Into<String>) -> Verdict {
        Verdict::new(Status::Skipped(reason.into()), "", "", evidence)
    }

    pub fn fix(mut self, who: Who, text: impl Into<String>) -> Verdict {
        self.fix = Some(Fix { who, text: text.into() });
        self
    }
}

/// When a check can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    Nothing,
    /// Only as root (`--user NAME`): reads root-only state.
    Root,
    /// Only with `--deep`: runs podman.
    Deep,
}

/// One entry of the catalogue.
pub struct Check {
    pub id: &'static str,
    /// What is checked, in a few words.
    pub what: &'static str,
    /// Status when it fails at its worst.
    pub severity: Severity,
    /// Checks that must not have failed for this one to mean anything.
    pub requires: &'static [&'static str],
    pub needs: Needs,
    run: fn(&Context) -> Verdict,
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check").field("id", &self.id).finish()
    }
}

/// Every check, in dependency order (a check only requires earlier ones).
pub fn catalogue() -> &'static [Check] {
    use Needs::*;
    use Severity::{Fail as F, Info as I, Warn as W};
    macro_rules! c {
        ($id:literal, $what:literal, $sev:expr, [$($req:literal),*], $needs:expr, $run:path) => {
            Check { id: $id, what: $what, severity: $sev, requires: &[$($req),*], needs: $needs, run: $run }
        };
    }
    static CATALOGUE: &[Check] = &[
        c!("id.user", "not root; resolves; $USER/$LOGNAME match", F, [], Nothing, identity::user),
        c!("id.gid", "gid is the passwd primary gid", F, ["id.user"], Nothing, identity::gid),
        c!("env.home", "HOME = passwd home, exists, owned, writable", F, ["id.user"], Nothing, env::home),
        c!("env.runtime_dir.set", "XDG_RUNTIME_DIR set and absolute", F, [], Nothing, env::runtime_dir_set),
        c!(
            "env.runtime_dir.owner",
            "runtime dir: a dir, owned, 0700",
            F,
            ["env.runtime_dir.set"],
            Nothing,
            env::runtime_dir_owner
        ),
        c!(
            "env.runtime_dir.fs",
            "runtime dir: /run/user/UID on tmpfs, space",
            W,
            ["env.runtime_dir.owner"],
            Nothing,
            env::runtime_dir_fs
        ),
        c!("env.config_dirs", "config and data dirs owned by the user", F, ["env.home"], Nothing, env::config_dirs),
        c!("env.leak", "no variables inherited from another user", W, [], Nothing, env::leak),
        c!("path.tools", "podman, newuidmap, newgidmap, conmon, OCI runtime", F, [], Nothing, path::tools),
        c!("uidmap.privs", "newuidmap/newgidmap setuid root or file caps", F, [], Nothing, path::uidmap_privs),
        c!("proc.nnp", "NoNewPrivs is off", F, [], Nothing, kernel::nnp),
        c!("proc.capbnd", "bounding set keeps SETUID, SETGID, SYS_ADMIN", F, [], Nothing, kernel::capbnd),
        c!("kernel.userns", "unprivileged user namespaces work", F, [], Nothing, kernel::userns),
        c!("subid.ranges", ">= 65536 subuids and subgids", F, ["id.user"], Nothing, subid::ranges),
        c!("subid.overlap", "ranges overlap no other user or real id", F, ["subid.ranges"], Root, subid::overlap),
        c!(
            "subid.live",
            "podman's pause process maps the ranges",
            W,
            ["subid.ranges", "env.runtime_dir.owner"],
            Nothing,
            subid::live
        ),
        c!("session.registered", "a live session record for this uid", W, [], Root, session::registered),
        c!("session.linger", "linger state of the user", I, ["id.user"], Nothing, session::linger),
        c!("session.bus", "a usable D-Bus session bus", W, [], Nothing, session::bus),
        c!("cgroup.v2", "/sys/fs/cgroup is cgroup2", W, [], Nothing, system::cgroup_v2),
        c!(
            "cgroup.controllers",
            "own cgroup delegated with memory, pids",
            W,
            ["cgroup.v2"],
            Nothing,
            system::cgroup_controllers
        ),
        c!("storage.fs", "graphroot on a local filesystem", F, ["env.home"], Nothing, system::storage_fs),
        c!(
            "storage.mountopts",
            "graphroot and HOME not noexec/nodev",
            F,
            ["env.home"],
            Nothing,
            system::storage_mountopts
        ),
        c!(
            "storage.bootid",
            "podman's state is from this boot",
            W,
            ["env.runtime_dir.owner"],
            Nothing,
            system::storage_bootid
        ),
        c!("net.helper", "pasta or slirp4netns; /dev/net/tun usable", F, [], Nothing, system::net_helper),
        c!("mount.shared", "/ is a shared mount", W, [], Nothing, system::mount_shared),
        c!(
            "selinux.runtime_dir",
            "runtime dir has the policy's label",
            W,
            ["env.runtime_dir.owner"],
            Nothing,
            selinux::runtime_dir
        ),
        c!(
            "podman.info",
            "`podman info` works rootless",
            F,
            ["id.user", "path.tools", "env.runtime_dir.owner", "subid.ranges"],
            Deep,
            podman::info
        ),
    ];
    CATALOGUE
}

/// Look a check up by id.
pub fn by_id(id: &str) -> Option<&'static Check> {
    catalogue().iter().find(|c| c.id == id)
}

/// Whose session is being checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The calling process, as the user, in their session.
    Session,
    /// As root, the session a keeper would give this user.
    ForUser,
}

/// The system files and directories the checks read. Defaults are the real
/// ones; tests point them at temporary copies.
#[derive(Clone, Debug)]
pub struct SystemPaths {
    pub subuid: PathBuf,
    pub subgid: PathBuf,
    pub nsswitch: PathBuf,
    pub passwd: PathBuf,
    /// `/proc/self`: status, mountinfo, cgroup.
    pub proc_self: PathBuf,
    pub proc_sys: PathBuf,
    pub cgroup_root: PathBuf,
    pub selinux_root: PathBuf,
    /// `/etc/selinux`: config and the policies' file contexts.
    pub selinux_policy_root: PathBuf,
    pub linger_dir: PathBuf,
    pub dev_tun: PathBuf,
    /// Directories searched for podman's helpers besides PATH.
    pub helper_dirs: Vec<PathBuf>,
}

impl Default for SystemPaths {
    fn default() -> Self {
        SystemPaths {
            subuid: "/etc/subuid".into(),
            subgid: "/etc/subgid".into(),
            nsswitch: "/etc/nsswitch.conf".into(),
            passwd: "/etc/passwd".into(),
            proc_self: "/proc/self".into(),
            proc_sys: "/proc/sys".into(),
            cgroup_root: "/sys/fs/cgroup".into(),
            selinux_root: "/sys/fs/selinux".into(),
            selinux_policy_root: "/etc/selinux".into(),
            linger_dir: "/var/lib/systemd/linger".into(),
            dev_tun: "/dev/net/tun".into(),
            // Where podman looks for conmon and network helpers
            // (containers.conf `helper_binaries_dir`), then where
            // distributions put OCI runtimes.
            helper_dirs: [
                "/usr/local/libexec/podman",
                "/usr/local/lib/podman",
                "/usr/libexec/podman",
                "/usr/lib/podman",
                "/usr/local/bin",
                "/usr/local/sbin",
                "/usr/bin",
                "/usr/sbin",
                "/bin",
                "/sbin",
            ]
            .iter()
            .map(PathBuf::from)
            .collect(),
        }
    }
}

/// Everything a check may look at.
#[derive(Clone, Debug)]
pub struct Context {
    pub mode: Mode,
    pub env: BTreeMap<String, String>,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// The passwd entry of `uid`, if it resolves.
    pub user: Option<UserInfo>,
    pub config: Config,
    pub paths: SystemPaths,
    pub deep: bool,
    /// Time limit of the user-namespace probe.
    pub probe_timeout: Duration,
    /// Time limit of `podman info`.
    pub podman_timeout: Duration,
}

impl Context {
    /// The calling process: its environment and credentials.
    pub fn current(config: Config) -> Context {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let mut groups: Vec<u32> = nix::unistd::getgroups().unwrap_or_default().iter().map(|g| g.as_raw()).collect();
        if !groups.contains(&gid) {
            groups.insert(0, gid);
        }
        Context {
            mode: Mode::Session,
            env: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
            uid,
            gid,
            groups,
            user: UserInfo::by_uid(uid).ok(),
            config,
            paths: SystemPaths::default(),
            deep: false,
            probe_timeout: Duration::from_secs(2),
            podman_timeout: Duration::from_secs(30),
        }
    }

    /// The session a keeper (`jupyter-session exec`) would give `user`: its
    /// ids and groups, and the environment the keeper and pam_jupyter set.
    pub fn for_user(config: Config, user: &UserInfo) -> Context {
        // What the keeper would give: the one builder, not a copy of it.
        let env = crate::session_env::predicted_env(&config, user).to_string_map();
        Context {
            mode: Mode::ForUser,
            env,
            uid: user.uid,
            gid: user.gid,
            groups: user.groups().unwrap_or_else(|_| vec![user.gid]),
            user: Some(user.clone()),
            config,
            paths: SystemPaths::default(),
            deep: false,
            probe_timeout: Duration::from_secs(2),
            podman_timeout: Duration::from_secs(30),
        }
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        self.env.get(name).map(String::as_str)
    }

    /// The user's name for messages: passwd name, else `uid N`.
    pub fn who(&self) -> String {
        self.user.as_ref().map(|u| u.name.clone()).unwrap_or_else(|| format!("uid {}", self.uid))
    }

    pub fn name_or_placeholder(&self) -> String {
        self.user.as_ref().map(|u| u.name.clone()).unwrap_or_else(|| "<user>".into())
    }

    /// Whether the checked user may read/write/search `meta`, by its mode
    /// bits (not `access(2)`, which would answer for root in `--user` mode).
    pub fn may(&self, meta: &std::fs::Metadata, want: u32) -> bool {
        if self.uid == 0 {
            return true;
        }
        let mode = meta.mode();
        let bits = if meta.uid() == self.uid {
            (mode >> 6) & 7
        } else if self.groups.contains(&meta.gid()) {
            (mode >> 3) & 7
        } else {
            mode & 7
        };
        bits & want == want
    }

    /// A command run as the checked user with the checked environment.
    pub fn command(&self, program: &Path) -> Command {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(program);
        cmd.env_clear().envs(&self.env).stdin(Stdio::null());
        if self.mode == Mode::ForUser && nix::unistd::geteuid().is_root() {
            // std drops supplementary groups (setgroups(0)) before setgid/setuid.
            cmd.uid(self.uid).gid(self.gid);
            if let Some(u) = &self.user {
                cmd.current_dir(&u.home);
            }
        }
        cmd
    }

    /// The first `name` in the context's PATH that is a file.
    pub fn which(&self, name: &str) -> Option<PathBuf> {
        let path = self.var("PATH")?;
        path.split(':').filter(|d| d.starts_with('/')).map(|d| Path::new(d).join(name)).find(|p| p.is_file())
    }

    /// `name` in PATH or podman's helper directories.
    pub fn find_helper(&self, name: &str) -> Option<PathBuf> {
        self.which(name).or_else(|| self.paths.helper_dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()))
    }
}

/// Which checks to run.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Only these ids (and what they require); all when empty.
    pub only: Vec<String>,
}

/// Run the selected checks in catalogue order.
pub fn run(ctx: &Context, selection: &Selection) -> Vec<Finding> {
    let wanted = wanted_ids(&selection.only);
    let mut blocked: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut out = Vec::new();
    for check in catalogue() {
        if let Some(w) = &wanted
            && !w.contains(check.id)
        {
            continue;
        }
        let prerequisite = check.requires.iter().find_map(|r| blocked.get(r).map(|why| (*r, why.clone())));
        let verdict = if let Some((req, why)) = &prerequisite {
            Verdict::skipped(format!("{req} {why}"), "")
        } else {
            match check.needs {
                Needs::Root if ctx.mode != Mode::ForUser => {
                    let name = if ctx.uid == 0 { "NAME".to_string() } else { ctx.name_or_placeholder() };
                    Verdict::skipped(format!("needs root: run `sudo jupyter-session check --user {name}`"), "")
                }
                Needs::Deep if !ctx.deep => Verdict::skipped("deep probe: run with --deep", ""),
                _ => (check.run)(ctx),
            }
        };
        match &verdict.status {
            Status::Fail => {
                blocked.insert(check.id, "failed".into());
            }
            Status::Skipped(why) if prerequisite.is_some() => {
                blocked.insert(check.id, format!("was skipped ({why})"));
            }
            _ => {}
        }
        out.push(Finding {
            id: check.id,
            severity: check.severity,
            status: verdict.status,
            observed: verdict.observed,
            expected: verdict.expected,
            evidence: verdict.evidence,
            fix: verdict.fix,
        });
    }
    out
}

/// The ids asked for plus, transitively, what they require.
fn wanted_ids(only: &[String]) -> Option<BTreeSet<&'static str>> {
    if only.is_empty() {
        return None;
    }
    let mut set = BTreeSet::new();
    let mut todo: Vec<&'static str> = only.iter().filter_map(|id| by_id(id)).map(|c| c.id).collect();
    while let Some(id) = todo.pop() {
        if set.insert(id)
            && let Some(c) = by_id(id)
        {
            todo.extend(c.requires.iter().copied());
        }
    }
    Some(set)
}

/// Exit code: 0 all passed, 1 any failed, 2 warnings only.
pub fn exit_code(findings: &[Finding]) -> i32 {
    if findings.iter().any(|f| f.status == Status::Fail) {
        1
    } else if findings.iter().any(|f| f.status == Status::Warn) {
        2
    } else {
        0
    }
}

/// Output of a command run with a time limit.
#[derive(Debug)]
pub struct Ran {
    /// `None` when it was killed at the time limit.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Run `cmd` (stdout and stderr captured) and kill it, by its pid, if it
/// outlives `limit`.
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> std::io::Result<Ran> {
    let start = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let collect = |pipe: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(mut pipe) = pipe {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.read_to_end(&mut buf);
                let _ = tx.send(buf);
            });
        }
        rx
    };
    let out_rx = collect(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err_rx = collect(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let mut pause = Duration::from_micros(200);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if start.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(pause.min(limit.saturating_sub(start.elapsed())));
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    // A grandchild may hold the pipes open: wait for the output only briefly.
    let grace = Duration::from_millis(200);
    let text = |rx: std::sync::mpsc::Receiver<Vec<u8>>| {
        rx.recv_timeout(grace).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    };
    Ok(Ran { status, stdout: text(out_rx), stderr: text(err_rx), elapsed: start.elapsed() })
}

/// Read a small text file; `None` if it cannot be read.
pub(crate) fn read_text(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The `Key:` line of a /proc status file.
pub(crate) fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')).map(str::trim)
}

/// The closest existing ancestor of `path` (itself if it exists).
pub(crate) fn existing_ancestor(path: &Path) -> Option<PathBuf> {
    path.ancestors().find(|p| std::fs::symlink_metadata(p).is_ok()).map(Path::to_path_buf)
}

#[cfg(test)]
pub(crate) mod testutil;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_in_dependency_order_with_unique_ids() {
        let mut seen = BTreeSet::new();
        for c in catalogue() {
            for r in c.requires {
                assert!(seen.contains(r), "{} requires {r}, which is not earlier in the catalogue", c.id);
            }
            assert!(seen.insert(c.id), "duplicate id {}", c.id);
        }
        assert_eq!(seen.len(), 28);
    }

    #[test]
    fn a_failed_prerequisite_skips_its_dependents_transitively() {
        let t = testutil::Fixture::new("skip");
        let mut ctx = t.healthy();
        ctx.env.remove("XDG_RUNTIME_DIR");
        let found = run(&ctx, &Selection { only: vec!["storage.bootid".into(), "subid.live".into()] });
        let status = |id: &str| found.iter().find(|f| f.id == id).map(|f| f.status.clone());
        assert_eq!(status("env.runtime_dir.set"), Some(Status::Fail));
        assert_eq!(status("env.runtime_dir.owner"), Some(Status::Skipped("env.runtime_dir.set failed".into())));
        match status("storage.bootid") {
            Some(Status::Skipped(why)) => assert!(why.contains("env.runtime_dir.owner was skipped"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(status("env.home").is_none(), "only what was asked and its prerequisites run");
        assert_eq!(exit_code(&found), 1);
    }

    #[test]
    fn exit_codes() {
        let f = |status| Finding {
            id: "x",
            severity: Severity::Fail,
            status,
            observed: String::new(),
            expected: String::new(),
            evidence: String::new(),
            fix: None,
        };
        assert_eq!(exit_code(&[f(Status::Pass), f(Status::Info), f(Status::Skipped("r".into()))]), 0);
        assert_eq!(exit_code(&[f(Status::Pass), f(Status::Warn)]), 2);
        assert_eq!(exit_code(&[f(Status::Warn), f(Status::Fail)]), 1);
    }

    #[test]
    fn timeout_kills_the_command() {
        let ran = run_with_timeout(Command::new("sleep").arg("10"), Duration::from_millis(100)).unwrap();
        assert!(ran.status.is_none());
        let ran = run_with_timeout(Command::new("sh").args(["-c", "echo out; echo err >&2"]), Duration::from_secs(10))
            .unwrap();
        assert!(ran.status.unwrap().success());
        assert_eq!((ran.stdout.as_str(), ran.stderr.as_str()), ("out\n", "err\n"));
    }
}
