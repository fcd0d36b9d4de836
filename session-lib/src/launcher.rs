//! The session keeper behind `jupyter-session exec`: a single-threaded root
//! process that opens a PAM session for a user, runs one command as that
//! user in a forked child, forwards signals to it, waits, and closes the
//! session when the command ends.
//!
//! Order (see the design, "The keeper"): pam_start → PAM_RUSER/PAM_TTY →
//! pam_acct_mgmt → groups (as root) → pam_setcred(ESTABLISH) →
//! pam_open_session → pam_getenvlist → fork. Child: setsid,
//! setgroups → setgid → setuid, PR_SET_PDEATHSIG (after the id change,
//! which clears it), chdir, fds, signals, exec. Parent: forward signals, wait, pam_close_session,
//! pam_setcred(DELETE), pam_end, exit with the child's status.
#![forbid(unsafe_code)]

use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Gid, Pid, Uid};

use crate::config::Config;
use crate::ffi::process::{Forked, cloexec_from, exit_now, fork_single_threaded, reset_signal_dispositions};
use crate::pam::{PamContext, PamError};
use crate::user::{UserError, UserInfo};

/// Exit status when the keeper itself failed (the `env`/`runuser` rule).
pub const EXIT_KEEPER_FAILED: i32 = 125;
/// The command exists but cannot be executed.
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
/// The command was not found.
pub const EXIT_NOT_FOUND: i32 = 127;

/// Signals the keeper passes on to the command.
pub const FORWARDED: [Signal; 6] =
    [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2];

/// PATH for the command when neither the caller nor PAM set one.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What to run, for whom, under which PAM service.
#[derive(Clone, Debug)]
pub struct KeeperOptions {
    pub service: String,
    pub user: String,
    /// Working directory of the command; the user's home when None.
    pub chdir: Option<PathBuf>,
    pub command: Vec<OsString>,
    /// The environment the command starts from (normally the keeper's own).
    pub base_env: Vec<(OsString, OsString)>,
    pub config: Config,
}

/// A step of the child between fork and exec, as reported to the parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ChildStep {
    Setsid = 1,
    DeathSignal = 2,
    ParentGone = 3,
    SetGroups = 4,
    SetGid = 5,
    SetUid = 6,
    VerifyIds = 7,
    Chdir = 8,
    Fds = 9,
    SignalMask = 10,
    Exec = 11,
}

impl ChildStep {
    fn from_u8(b: u8) -> Option<ChildStep> {
        use ChildStep::*;
        [Setsid, DeathSignal, ParentGone, SetGroups, SetGid, SetUid, VerifyIds, Chdir, Fds, SignalMask, Exec]
            .into_iter()
            .find(|s| *s as u8 == b)
    }

    fn describe(self) -> &'static str {
        match self {
            ChildStep::Setsid => "setsid",
            ChildStep::DeathSignal => "prctl(PR_SET_PDEATHSIG)",
            ChildStep::ParentGone => "checking the keeper is still the parent",
            ChildStep::SetGroups => "setgroups",
            ChildStep::SetGid => "setgid",
            ChildStep::SetUid => "setuid",
            ChildStep::VerifyIds => "verifying the new uid/gid/groups",
            ChildStep::Chdir => "chdir",
            ChildStep::Fds => "marking inherited fds close-on-exec",
            ChildStep::SignalMask => "resetting the signal mask",
            ChildStep::Exec => "exec",
        }
    }
}

#[derive(Debug)]
pub enum KeeperError {
    NotRoot {
        euid: u32,
    },
    NoCommand,
    BadService(String),
    MissingService {
        service: String,
        path: PathBuf,
    },
    User(UserError),
    BelowMinUid {
        user: String,
        uid: u32,
        min_uid: u32,
    },
    /// pam_acct_mgmt refused the account (expired, locked...).
    AccountRefused(PamError),
    Pam(PamError),
    Groups(UserError),
    Setup {
        what: String,
        reason: String,
    },
    /// The child failed between fork and exec.
    Child {
        step: ChildStep,
        errno: Errno,
        detail: String,
    },
    /// The command could not be executed (126) or found (127).
    Exec {
        command: String,
        errno: Errno,
        path: String,
    },
}

impl KeeperError {
    /// The exit status for this failure: 126/127 for exec, else 125.
    pub fn exit_code(&self) -> i32 {
        match self {
            KeeperError::Exec { errno: Errno::ENOENT, .. } => EXIT_NOT_FOUND,
            KeeperError::Exec { .. } => EXIT_CANNOT_EXECUTE,
            _ => EXIT_KEEPER_FAILED,
        }
    }
}

impl fmt::Display for KeeperError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeeperError::NotRoot { euid } => write!(
                f,
                "must be run as root (effective uid is {euid}): the keeper opens a PAM session and switches to \
                 the user; run it from the hub running as root, or with sudo"
            ),
            KeeperError::NoCommand => {
                f.write_str("no command given: jupyter-session exec --user NAME -- CMD [ARGS...]")
            }
            KeeperError::BadService(s) => write!(
                f,
                "'{}' is not a valid PAM service name (letters, digits, '.', '_', '-'; no '/')",
                s.escape_debug()
            ),
            KeeperError::MissingService { service, path } => write!(
                f,
                "PAM service '{service}' has no configuration: {} does not exist (install it, e.g. from \
                 etc/pam.d/jupyterhub.debian or .rhel, or pass --service NAME); refusing to fall back to \
                 /etc/pam.d/other",
                path.display()
            ),
            KeeperError::User(e) => write!(f, "{e}"),
            KeeperError::BelowMinUid { user, uid, min_uid } => write!(
                f,
                "user '{user}' has uid {uid}, below min_uid {min_uid}: refusing to start a session for a system \
                 account (lower min_uid in /etc/security/jupyter-session.toml if this user is really meant to log in)"
            ),
            KeeperError::AccountRefused(e) => write!(f, "account refused: {e}"),
            KeeperError::Pam(e) => write!(f, "{e}"),
            KeeperError::Groups(e) => write!(f, "cannot compute the supplementary groups: {e}"),
            KeeperError::Setup { what, reason } => write!(f, "{what} failed: {reason}"),
            KeeperError::Child { step, errno, detail } => {
                write!(f, "the child failed before exec, at {}: {} ({errno:?}){detail}", step.describe(), errno.desc())
            }
            KeeperError::Exec { command, errno: Errno::ENOENT, path } => {
                write!(f, "{command}: command not found (searched PATH={path})")
            }
            KeeperError::Exec { command, errno, path: _ } => {
                write!(f, "{command}: cannot execute: {} ({errno:?})", errno.desc())
            }
        }
    }
}

impl std::error::Error for KeeperError {}

/// How the command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildEnd {
    Exited(i32),
    Signaled(i32),
}

impl ChildEnd {
    /// The shell convention: the exit code, or 128+N for signal N.
    pub fn exit_code(self) -> i32 {
        match self {
            ChildEnd::Exited(c) => c,
            ChildEnd::Signaled(n) => 128 + n,
        }
    }
}

/// Result of a keeper run: how the command ended (or why it never ran) and
/// any error of closing the session afterwards.
#[derive(Debug)]
pub struct KeeperRun {
    pub outcome: Result<ChildEnd, KeeperError>,
    pub close_error: Option<PamError>,
}

impl KeeperRun {
    pub fn exit_code(&self) -> i32 {
        match &self.outcome {
            Ok(end) => end.exit_code(),
            Err(e) => e.exit_code(),
        }
    }
}

/// Whether `name` can be a PAM service name (a file in /etc/pam.d).
pub fn valid_service(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@' | b'+'))
}

/// The file libpam will read for `service`: /etc/pam.d/NAME, or the vendor
/// directory /usr/lib/pam.d/NAME of newer distributions. Err names the
/// /etc path.
pub fn service_file(service: &str) -> Result<PathBuf, KeeperError> {
    if !valid_service(service) {
        return Err(KeeperError::BadService(service.to_string()));
    }
    let etc = Path::new("/etc/pam.d").join(service);
    if etc.is_file() {
        return Ok(etc);
    }
    let vendor = Path::new("/usr/lib/pam.d").join(service);
    if vendor.is_file() {
        return Ok(vendor);
    }
    Err(KeeperError::MissingService { service: service.to_string(), path: etc })
}

/// An ordered environment where a later `set` replaces an earlier value in
/// place.
#[derive(Default, Debug, Clone)]
pub struct EnvList(Vec<(OsString, OsString)>);

impl EnvList {
    pub fn set(&mut self, name: impl Into<OsString>, value: impl Into<OsString>) {
        let (name, value) = (name.into(), value.into());
        if name.is_empty() || name.as_bytes().contains(&b'=') {
            return;
        }
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&OsStr> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_os_str())
    }

    pub fn pairs(&self) -> &[(OsString, OsString)] {
        &self.0
    }

    fn to_c(&self) -> Vec<CString> {
        self.0
            .iter()
            .filter_map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                CString::new(kv).ok()
            })
            .collect()
    }
}

/// The command's environment: `base`, then USER/LOGNAME/HOME/SHELL of the
/// user, then the PAM environment (later wins); PATH defaulted if unset.
pub fn command_env(base: &[(OsString, OsString)], user: &UserInfo, pam_env: &[(String, String)]) -> EnvList {
    let mut env = EnvList::default();
    for (k, v) in base {
        env.set(k.clone(), v.clone());
    }
    env.set("USER", &user.name);
    env.set("LOGNAME", &user.name);
    env.set("HOME", user.home.as_os_str());
    env.set("SHELL", user.shell.as_os_str());
    for (k, v) in pam_env {
        env.set(k, v);
    }
    if env.get("PATH").is_none() {
        env.set("PATH", DEFAULT_PATH);
    }
    env
}

/// Everything decided before the session is opened.
struct Plan {
    user: UserInfo,
    groups: Vec<u32>,
}

fn prepare(opts: &KeeperOptions) -> Result<Plan, KeeperError> {
    let euid = nix::unistd::geteuid();
    if !euid.is_root() {
        return Err(KeeperError::NotRoot { euid: euid.as_raw() });
    }
    if opts.command.is_empty() {
        return Err(KeeperError::NoCommand);
    }
    service_file(&opts.service)?;
    let user = UserInfo::by_name(&opts.user).map_err(KeeperError::User)?;
    if user.uid < opts.config.min_uid {
        return Err(KeeperError::BelowMinUid { user: user.name, uid: user.uid, min_uid: opts.config.min_uid });
    }
    let groups = user.groups().map_err(KeeperError::Groups)?;
    Ok(Plan { user, groups })
}

/// Open the PAM session: start, items, account, credentials, session.
fn open_pam(opts: &KeeperOptions) -> Result<PamContext, KeeperError> {
    let mut pam = PamContext::start(&opts.service, &opts.user).map_err(KeeperError::Pam)?;
    let ruser = UserInfo::by_uid(nix::unistd::getuid().as_raw()).map(|u| u.name).unwrap_or_else(|_| "root".into());
    pam.set_ruser(&ruser).map_err(KeeperError::Pam)?;
    if std::io::IsTerminal::is_terminal(&std::io::stdin())
        && let Ok(tty) = std::fs::read_link("/proc/self/fd/0")
    {
        pam.set_tty(&tty.to_string_lossy()).map_err(KeeperError::Pam)?;
    }
    pam.acct_mgmt()
        .map_err(|e| if e.account_refused() { KeeperError::AccountRefused(e) } else { KeeperError::Pam(e) })?;
    pam.establish_cred().map_err(KeeperError::Pam)?;
    pam.open_session().map_err(KeeperError::Pam)?;
    Ok(pam)
}

/// Run the keeper: open the session, run the command, close the session.
/// Messages about the close are in the result; nothing is printed here
/// except by PAM modules through the conversation.
pub fn run(opts: &KeeperOptions) -> KeeperRun {
    let plan = match prepare(opts) {
        Ok(p) => p,
        Err(e) => return KeeperRun { outcome: Err(e), close_error: None },
    };
    let mut pam = match open_pam(opts) {
        Ok(p) => p,
        // Dropping the context (inside open_pam) deleted creds and ended it.
        Err(e) => return KeeperRun { outcome: Err(e), close_error: None },
    };
    let outcome = pam
        .env()
        .map_err(KeeperError::Pam)
        .and_then(|pam_env| run_child(opts, &plan, &command_env(&opts.base_env, &plan.user, &pam_env)));
    let closed = pam.close_session();
    let deleted = pam.delete_cred();
    let ended = pam.end();
    KeeperRun { outcome, close_error: closed.and(deleted).and(ended).err() }
}

fn setup_err(what: &str, e: impl fmt::Display) -> KeeperError {
    KeeperError::Setup { what: what.to_string(), reason: e.to_string() }
}

/// Fork, run the command in the child, forward signals, wait.
fn run_child(opts: &KeeperOptions, plan: &Plan, env: &EnvList) -> Result<ChildEnd, KeeperError> {
    // Everything the child needs, prepared before fork.
    let argv: Vec<CString> = opts
        .command
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| setup_err("preparing the command", "an argument contains a NUL byte"))?;
    let c_env = env.to_c();
    let path_var = env.get("PATH").map(|p| p.as_bytes().to_vec()).unwrap_or_default();

    // Block the signals we forward, plus SIGCHLD, before fork: they queue
    // on the signalfd instead of killing the keeper, and none is lost
    // between fork and the wait loop. The child unblocks them before exec.
    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(s);
    }
    mask.add(Signal::SIGCHLD);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None).map_err(|e| setup_err("blocking signals", e))?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| setup_err("signalfd", e))?;
    let (report_r, report_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| setup_err("creating the exec report pipe", e))?;

    let keeper = nix::unistd::getpid();
    let child = match fork_single_threaded().map_err(|e| setup_err("fork", e))? {
        Forked::Child => {
            drop(report_r);
            // Never unwind out of here: the child would run the parent's
            // code (close the PAM session) with the user's ids.
            let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                child_main(plan, opts.chdir.as_deref(), &argv, &c_env, &path_var, keeper)
            }));
            let (step, errno, code) = failed.unwrap_or((ChildStep::Exec, Errno::EIO, EXIT_KEEPER_FAILED));
            report(&report_w, step, errno);
            exit_now(code);
        }
        Forked::Parent { child } => child,
    };
    drop(report_w);
    wait_child(child, &sfd, report_r, opts, &path_var)
}

fn report(fd: &OwnedFd, step: ChildStep, errno: Errno) {
    let mut msg = [0u8; 5];
    msg[0] = step as u8;
    msg[1..].copy_from_slice(&(errno as i32).to_le_bytes());
    let _ = nix::unistd::write(fd, &msg);
}

/// The child between fork and exec. Returns only on failure: the step, the
/// errno and the exit status to use.
fn child_main(
    plan: &Plan,
    chdir: Option<&Path>,
    argv: &[CString],
    env: &[CString],
    path_var: &[u8],
    keeper: Pid,
) -> (ChildStep, Errno, i32) {
    let fail = |step, errno| (step, errno, EXIT_KEEPER_FAILED);
    if let Err(e) = nix::unistd::setsid() {
        return fail(ChildStep::Setsid, e);
    }
    let groups: Vec<Gid> = plan.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    let (uid, gid) = (Uid::from_raw(plan.user.uid), Gid::from_raw(plan.user.gid));
    if let Err(e) = nix::unistd::setgroups(&groups) {
        return fail(ChildStep::SetGroups, e);
    }
    if let Err(e) = nix::unistd::setgid(gid) {
        return fail(ChildStep::SetGid, e);
    }
    if let Err(e) = nix::unistd::setuid(uid) {
        return fail(ChildStep::SetUid, e);
    }
    // Verify the switch stuck, and that root cannot be regained.
    let mut have: Vec<Gid> = nix::unistd::getgroups().unwrap_or_default();
    let mut want = groups.clone();
    have.sort_by_key(|g| g.as_raw());
    have.dedup();
    want.sort_by_key(|g| g.as_raw());
    want.dedup();
    let ids = nix::unistd::getresuid().ok().map(|r| (r.real, r.effective, r.saved));
    let gids = nix::unistd::getresgid().ok().map(|r| (r.real, r.effective, r.saved));
    if ids != Some((uid, uid, uid))
        || gids != Some((gid, gid, gid))
        || have != want
        || (!uid.is_root() && nix::unistd::setuid(Uid::from_raw(0)).is_ok())
    {
        return fail(ChildStep::VerifyIds, Errno::EPERM);
    }
    // Only now: the kernel clears the parent-death signal whenever the
    // credentials change (commit_creds), so it must be armed after setuid.
    if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
        return fail(ChildStep::DeathSignal, e);
    }
    // The keeper may have died before the death signal was armed.
    if nix::unistd::getppid() != keeper {
        return fail(ChildStep::ParentGone, Errno::ESRCH);
    }
    match chdir {
        Some(dir) => {
            if let Err(e) = nix::unistd::chdir(dir) {
                return fail(ChildStep::Chdir, e);
            }
        }
        None => {
            if let Err(e) = nix::unistd::chdir(&plan.user.home) {
                // Not eprintln!: it panics when stderr is gone.
                let _ = writeln!(
                    std::io::stderr(),
                    "jupyter-session exec: warning: cannot enter home directory {} ({}); starting in /",
                    plan.user.home.display(),
                    e.desc()
                );
                if let Err(e) = nix::unistd::chdir("/") {
                    return fail(ChildStep::Chdir, e);
                }
            }
        }
    }
    if let Err(e) = cloexec_from(3) {
        return fail(ChildStep::Fds, Errno::from_raw(e.raw_os_error().unwrap_or(libc_eio())));
    }
    reset_signal_dispositions();
    if let Err(e) = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None) {
        return fail(ChildStep::SignalMask, e);
    }
    let errno = exec_search(argv, env, path_var);
    let code = if errno == Errno::ENOENT { EXIT_NOT_FOUND } else { EXIT_CANNOT_EXECUTE };
    (ChildStep::Exec, errno, code)
}

fn libc_eio() -> i32 {
    Errno::EIO as i32
}

/// execvp's search, but over the *command's* PATH (not the keeper's):
/// returns only on failure, with ENOENT when nothing was found and EACCES
/// when something was found but not executable.
fn exec_search(argv: &[CString], env: &[CString], path_var: &[u8]) -> Errno {
    let file = argv[0].as_bytes();
    if file.is_empty() {
        return Errno::ENOENT;
    }
    if file.contains(&b'/') {
        return exec_one(&argv[0], argv, env);
    }
    let mut seen_eacces = false;
    let mut last = Errno::ENOENT;
    for dir in path_var.split(|b| *b == b':') {
        let mut candidate = if dir.is_empty() { b".".to_vec() } else { dir.to_vec() };
        candidate.push(b'/');
        candidate.extend_from_slice(file);
        let Ok(candidate) = CString::new(candidate) else { continue };
        match exec_one(&candidate, argv, env) {
            Errno::EACCES => seen_eacces = true,
            Errno::ENOENT | Errno::ENOTDIR | Errno::ESTALE | Errno::ENODEV | Errno::ETIMEDOUT => {}
            other => {
                last = other;
                break;
            }
        }
    }
    if last != Errno::ENOENT {
        last
    } else if seen_eacces {
        Errno::EACCES
    } else {
        Errno::ENOENT
    }
}

/// execve one path; a file without a `#!` or ELF header (ENOEXEC) is run
/// by /bin/sh, as execvp does.
fn exec_one(path: &CString, argv: &[CString], env: &[CString]) -> Errno {
    let errno = match nix::unistd::execve(path, argv, env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    if errno != Errno::ENOEXEC {
        return errno;
    }
    let mut sh_argv = vec![c"/bin/sh".to_owned(), path.clone()];
    sh_argv.extend(argv.iter().skip(1).cloned());
    match nix::unistd::execve(c"/bin/sh", &sh_argv, env) {
        Err(_) => Errno::ENOEXEC,
        Ok(never) => match never {},
    }
}

/// The parent: watch the report pipe until exec (EOF) or a failure report,
/// forward signals, and reap the child.
fn wait_child(
    child: Pid,
    sfd: &SignalFd,
    report_r: OwnedFd,
    opts: &KeeperOptions,
    path_var: &[u8],
) -> Result<ChildEnd, KeeperError> {
    let mut report_fd = Some(report_r);
    let mut report_buf: Vec<u8> = Vec::new();
    let mut end: Option<ChildEnd> = None;
    while end.is_none() || report_fd.is_some() {
        let (sig_ready, report_ready) = {
            let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
            if let Some(r) = &report_fd {
                fds.push(PollFd::new(r.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    // Cannot watch anything: the best we can do is wait.
                    let _ = writeln!(
                        std::io::stderr(),
                        "jupyter-session exec: poll failed ({e}); waiting for the command without forwarding signals"
                    );
                    if let Some(r) = report_fd.take() {
                        read_to_end(&r, &mut report_buf);
                    }
                    end = Some(blocking_wait(child));
                    break;
                }
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), fds.get(1).is_some_and(ready))
        };
        if report_ready && let Some(r) = &report_fd {
            let mut buf = [0u8; 16];
            match nix::unistd::read(r, &mut buf) {
                Ok(0) => report_fd = None,
                Ok(n) => report_buf.extend_from_slice(&buf[..n]),
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(_) => report_fd = None,
            }
        }
        if sig_ready {
            while let Ok(Some(info)) = sfd.read_signal() {
                let signo = info.ssi_signo as i32;
                if signo == Signal::SIGCHLD as i32 {
                    if end.is_none() {
                        end = reap(child);
                    }
                } else if let Ok(sig) = Signal::try_from(signo)
                    && end.is_none()
                {
                    let _ = kill(child, sig);
                }
            }
        }
    }
    let end = end.unwrap_or_else(|| blocking_wait(child));
    if report_buf.len() >= 5
        && let Some(step) = ChildStep::from_u8(report_buf[0])
    {
        let errno = Errno::from_raw(i32::from_le_bytes([report_buf[1], report_buf[2], report_buf[3], report_buf[4]]));
        let command = opts.command[0].to_string_lossy().into_owned();
        return Err(match step {
            ChildStep::Exec => KeeperError::Exec { command, errno, path: String::from_utf8_lossy(path_var).into() },
            ChildStep::Chdir => KeeperError::Child {
                step,
                errno,
                detail: format!(
                    " entering {}",
                    opts.chdir.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "/".into())
                ),
            },
            _ => KeeperError::Child { step, errno, detail: String::new() },
        });
    }
    Ok(end)
}

fn read_to_end(fd: &OwnedFd, out: &mut Vec<u8>) {
    let mut buf = [0u8; 16];
    loop {
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => return,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

fn status_end(status: WaitStatus) -> Option<ChildEnd> {
    match status {
        WaitStatus::Exited(_, code) => Some(ChildEnd::Exited(code)),
        WaitStatus::Signaled(_, sig, _) => Some(ChildEnd::Signaled(sig as i32)),
        _ => None,
    }
}

fn reap(child: Pid) -> Option<ChildEnd> {
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return None,
            Ok(status) => {
                if let Some(end) = status_end(status) {
                    return Some(end);
                }
            }
            Err(Errno::EINTR) => {}
            // ECHILD: nothing left to wait for (should not happen).
            Err(_) => return Some(ChildEnd::Exited(EXIT_KEEPER_FAILED)),
        }
    }
}

fn blocking_wait(child: Pid) -> ChildEnd {
    loop {
        match waitpid(child, None) {
            Ok(status) => {
                if let Some(end) = status_end(status) {
                    return end;
                }
            }
            Err(Errno::EINTR) => {}
            Err(_) => return ChildEnd::Exited(EXIT_KEEPER_FAILED),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserInfo {
        UserInfo { name: "alice".into(), uid: 1234, gid: 1234, home: "/home/alice".into(), shell: "/bin/bash".into() }
    }

    #[test]
    fn env_later_wins_and_path_defaults() {
        let base = vec![("USER".into(), "root".into()), ("JUPYTERHUB_API_TOKEN".into(), "t".into())];
        let pam = vec![("XDG_RUNTIME_DIR".to_string(), "/run/user/1234".to_string()), ("HOME".into(), "/h".into())];
        let env = command_env(&base, &user(), &pam);
        assert_eq!(env.get("USER"), Some(OsStr::new("alice")));
        assert_eq!(env.get("LOGNAME"), Some(OsStr::new("alice")));
        assert_eq!(env.get("HOME"), Some(OsStr::new("/h")));
        assert_eq!(env.get("SHELL"), Some(OsStr::new("/bin/bash")));
        assert_eq!(env.get("JUPYTERHUB_API_TOKEN"), Some(OsStr::new("t")));
        assert_eq!(env.get("PATH"), Some(OsStr::new(DEFAULT_PATH)));
        // USER keeps its first position (replaced in place).
        assert_eq!(env.pairs()[0].0, "USER");
        let with_path = command_env(&[("PATH".into(), "/opt/bin".into())], &user(), &[]);
        assert_eq!(with_path.get("PATH"), Some(OsStr::new("/opt/bin")));
    }

    #[test]
    fn service_names_and_files() {
        assert!(valid_service("jupyterhub") && valid_service("js-test_1.x"));
        for bad in ["", "..", "a/b", "../passwd", "a b"] {
            assert!(!valid_service(bad), "{bad}");
        }
        let err = service_file("no-such-service-js").unwrap_err();
        assert!(err.to_string().contains("/etc/pam.d/no-such-service-js"), "{err}");
        assert_eq!(err.exit_code(), EXIT_KEEPER_FAILED);
    }

    #[test]
    fn exit_codes() {
        assert_eq!(ChildEnd::Exited(3).exit_code(), 3);
        assert_eq!(ChildEnd::Signaled(15).exit_code(), 143);
        let nf = KeeperError::Exec { command: "x".into(), errno: Errno::ENOENT, path: "/bin".into() };
        assert_eq!(nf.exit_code(), 127);
        let ne = KeeperError::Exec { command: "x".into(), errno: Errno::EACCES, path: "/bin".into() };
        assert_eq!(ne.exit_code(), 126);
        for b in 1..=11u8 {
            assert_eq!(ChildStep::from_u8(b).map(|s| s as u8), Some(b));
        }
    }
}
