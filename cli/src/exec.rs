//! `jupyter-session exec`: the session keeper. Opens a PAM session for the
//! user, runs the command as the user for its whole life, forwards signals,
//! closes the session when it ends. The work is in session_lib::launcher.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use session_lib::Config;
use session_lib::launcher::{self, EXIT_KEEPER_FAILED, KeeperOptions};

#[derive(clap::Args)]
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
    /// Configuration file (default: /etc/security/jupyter-session.toml if it exists); only min_uid is used here
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, required = true, value_name = "CMD", value_parser = clap::value_parser!(OsString))]
    pub command: Vec<OsString>,
}

pub fn run(args: Args) -> i32 {
    let config = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "jupyter-session exec: {e}");
            return EXIT_KEEPER_FAILED;
        }
    };
    let opts = KeeperOptions {
        service: args.service,
        user: args.user,
        chdir: args.chdir,
        command: args.command,
        base_env: std::env::vars_os().collect(),
        config,
    };
    let result = launcher::run(&opts);
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
