//! `jupyter-session exec`: the session keeper. Opens a PAM session for the
//! user, runs the command as the user for its whole life, forwards signals,
//! closes the session when it ends. The work is in session_lib::keeper.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use session_lib::Config;
use session_lib::keeper::{self, EXIT_KEEPER_FAILED, KeeperError, KeeperOptions, env};

#[derive(clap::Args)]
#[command(after_help = "\
The command's environment: the NAME=value entries read from --env-fd (each ended by a NUL byte, as \
/proc/PID/environ), or without --env-fd only TERM of the keeper's own; then USER, LOGNAME, HOME and SHELL \
of the user; then the PAM environment (XDG_RUNTIME_DIR, PATH... from pam_jupyter). Nothing else of the \
keeper's environment reaches CMD, and XDG_RUNTIME_DIR / DBUS_SESSION_BUS_ADDRESS come only from PAM. \
The keeper refuses to start with LD_* or other loader variables in its own environment.

Groups: initgroups, then what pam_setcred adds (pam_group). Keys: CMD never gets the caller's session keyring \
(a fresh one, unless PAM, e.g. pam_keyinit, set one up for the session).

Signals: SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to the keeper are forwarded to CMD; the \
session is closed once CMD exits. If the keeper itself is killed (SIGKILL), CMD gets SIGKILL as its parent-death \
signal and the session record is reaped at the user's next session open or close, or by `jupyter-session gc`.

Exit status: CMD's status (128+N if killed by signal N); 125 the keeper failed (usage errors included, an \
unknown user, no /etc/pam.d/SERVICE, a refused account or a failed PAM step, each named); 126 CMD cannot be \
executed; 127 CMD not found.

Example (as root; a hub's spawner adds --chdir and --env-fd):
  jupyter-session exec --user alice -- sh -c 'id; echo $XDG_RUNTIME_DIR'")]
pub struct Args {
    /// PAM service (a file in /etc/pam.d) whose session stack to run
    #[arg(long, default_value = "jupyterhub")]
    pub service: String,
    /// The user to run CMD as
    #[arg(long)]
    pub user: String,
    /// Working directory of CMD (default: the user's home)
    #[arg(long, value_name = "DIR")]
    pub chdir: Option<PathBuf>,
    /// Read CMD's environment from this inherited fd (NAME=value entries, each ended by NUL)
    #[arg(long, value_name = "FD")]
    pub env_fd: Option<i32>,
    /// Configuration file (default: /etc/security/jupyter-session.toml if it exists); pam_jupyter in the
    /// service's stack must read the same file (config=PATH on its line), or the session is refused
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, required = true, value_name = "CMD", value_parser = clap::value_parser!(OsString))]
    pub command: Vec<OsString>,
}

fn fail(e: impl std::fmt::Display) -> i32 {
    let _ = writeln!(std::io::stderr(), "jupyter-session exec: {e}");
    EXIT_KEEPER_FAILED
}

pub fn run(args: Args) -> i32 {
    // First: a root process started with LD_PRELOAD & co. has already been
    // acted on by the loader; refuse before doing anything as root.
    let own: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let loader = env::loader_variables(&own);
    if !loader.is_empty() && nix::unistd::geteuid().is_root() {
        return fail(KeeperError::LoaderVariables(loader));
    }
    let handed_env = match args.env_fd {
        Some(fd) => match session_lib::keeper::take_inherited_fd(fd) {
            Ok(owned) => match env::read_handed(fd, owned) {
                Ok(e) => e,
                Err(e) => return fail(e),
            },
            Err(e) => return fail(KeeperError::HandedEnv { fd, reason: format!("not usable: {e}") }),
        },
        None => env::from_terminal(&own),
    };
    let config = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let opts = KeeperOptions {
        service: args.service,
        user: args.user,
        chdir: args.chdir,
        command: args.command,
        handed_env,
        config,
        config_file: session_lib::agreement::config_file(args.config.as_deref()),
    };
    let result = keeper::run(&opts);
    // writeln! and not eprintln!, which panics when stderr is gone: the
    // exit status must still be the command's.
    let mut stderr = std::io::stderr();
    if let Err(e) = &result.outcome {
        let _ = writeln!(stderr, "jupyter-session exec: {e}");
    }
    if let Some(e) = &result.close_error {
        let _ = writeln!(stderr, "jupyter-session exec: closing the session: {e}");
    }
    result.exit_code()
}
