//! The session keeper behind `jupyter-session exec`: a single-threaded root
//! process that opens a PAM session for a user, runs one command as that
//! user in a forked child, forwards signals to it, waits, and closes the
//! session when the command ends.
//!
//! Order (see the design, "The keeper"), as util-linux su: pam_start →
//! PAM_RUSER/PAM_TTY → pam_acct_mgmt → initgroups (in this process, as
//! root) → pam_setcred(ESTABLISH) → pam_open_session → pam_getenvlist →
//! fork. Child ([`child`]): setsid, setgid → setuid keeping the groups PAM
//! left, verified; a fresh session keyring unless PAM gave it one;
//! PR_SET_PDEATHSIG (after the id change, which clears it), chdir, fds,
//! signals, exec. Parent ([`wait`]): forward signals, wait,
//! pam_close_session, pam_setcred(DELETE), pam_end, exit with the child's
//! status.
//!
//! The command's environment is built by [`crate::session_env::command_env`]
//! from what the caller handed over ([`env`]), never from the keeper's own.
#![forbid(unsafe_code)]

mod child;
pub mod env;
pub mod error;
mod pam_sequence;
mod wait;

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};

pub use crate::ffi::process::take_inherited_fd;
pub use error::{ChildEnd, ChildStep, EXIT_CANNOT_EXECUTE, EXIT_KEEPER_FAILED, EXIT_NOT_FOUND, KeeperError};
pub use pam_sequence::{service_file, valid_service};

use crate::agreement;
use crate::config::Config;
use crate::ffi::keyring;
use crate::ffi::process::{Forked, exit_now, fork_single_threaded};
use crate::pam::PamError;
use crate::session_env::{EnvList, command_env};

/// Signals the keeper passes on to the command.
pub const FORWARDED: [Signal; 6] =
    [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2];

/// What to run, for whom, under which PAM service.
#[derive(Clone, Debug)]
pub struct KeeperOptions {
    pub service: String,
    pub user: String,
    /// Working directory of the command; the user's home when None.
    pub chdir: Option<PathBuf>,
    pub command: Vec<OsString>,
    /// The environment the caller handed over for the command (see
    /// [`env`]); USER/LOGNAME/HOME/SHELL and the PAM environment go over it.
    pub handed_env: Vec<(OsString, OsString)>,
    pub config: Config,
    /// The file `config` was read from (`--config`, else the default file,
    /// whether it exists or not): pam_jupyter must have read the same.
    pub config_file: PathBuf,
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

/// The keeper's session keyring as the child compares it (see
/// [`child::ChildPlan::keyring_before`]).
fn keyring_before() -> Option<i32> {
    match keyring::session_keyring() {
        Ok(id) => Some(id),
        Err(Errno::ENOSYS | Errno::EPERM) => None,
        Err(_) => Some(0),
    }
}

/// Run the keeper: open the session, run the command, close the session.
/// Messages about the close are in the result; nothing is printed here
/// except by PAM modules through the conversation.
pub fn run(opts: &KeeperOptions) -> KeeperRun {
    let user = match pam_sequence::prepare(opts) {
        Ok(u) => u,
        Err(e) => return KeeperRun { outcome: Err(e), close_error: None },
    };
    let keyring_before = keyring_before();
    let mut open = match pam_sequence::open(opts, &user) {
        Ok(o) => o,
        // Dropping the context (inside `open`) deleted creds and ended it.
        Err(e) => return KeeperRun { outcome: Err(e), close_error: None },
    };
    let outcome = open.pam.env().map_err(KeeperError::Pam).and_then(|pam_env| {
        let expected = agreement::Expected {
            nonce: &open.nonce,
            config: &opts.config,
            file: &opts.config_file,
            service_file: &open.service_file,
            user: &user.name,
        };
        agreement::verify(&expected, &pam_env).map_err(KeeperError::ConfigMismatch)?;
        let pam_env: Vec<(String, String)> =
            pam_env.into_iter().filter(|(k, _)| k != agreement::KEEPER_VAR && k != agreement::REPORT_VAR).collect();
        let env = command_env(&opts.handed_env, &user, &pam_env);
        run_child(opts, &user, &open.groups, keyring_before, &env)
    });
    let closed = open.pam.close_session();
    let deleted = open.pam.delete_cred();
    let ended = open.pam.end();
    KeeperRun { outcome, close_error: closed.and(deleted).and(ended).err() }
}

fn setup_err(what: &str, e: impl std::fmt::Display) -> KeeperError {
    KeeperError::Setup { what: what.to_string(), reason: e.to_string() }
}

/// Fork, run the command in the child, forward signals, wait.
fn run_child(
    opts: &KeeperOptions,
    user: &crate::user::UserInfo,
    groups: &[u32],
    keyring_before: Option<i32>,
    env: &EnvList,
) -> Result<ChildEnd, KeeperError> {
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

    let plan = child::ChildPlan {
        user,
        groups,
        keyring_before,
        chdir: opts.chdir.as_deref(),
        argv: &argv,
        env: &c_env,
        path_var: &path_var,
        keeper: nix::unistd::getpid(),
    };
    let child = match fork_single_threaded().map_err(|e| setup_err("fork", e))? {
        Forked::Child => {
            drop(report_r);
            // Never unwind out of here: the child would run the parent's
            // code (close the PAM session) with the user's ids.
            let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| child::child_main(&plan)));
            let (step, errno, code) = failed.unwrap_or((ChildStep::Exec, Errno::EIO, EXIT_KEEPER_FAILED));
            wait::report(&report_w, step, errno);
            exit_now(code);
        }
        Forked::Parent { child } => child,
    };
    drop(report_w);
    wait::wait_child(child, &sfd, report_r, opts, &path_var)
}
