//! `jupyter-session`: the session keeper, the diagnostic and session
//! management. The work is done by session-lib; this is argument parsing,
//! output and exit codes.
#![forbid(unsafe_code)]

mod check;
mod env;
mod exec;
mod generate;
mod manage;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    long_about = "Login sessions for multi-user Jupyter and rootless containers: `exec` runs a command as a user \
inside a PAM session (the session keeper a JupyterHub spawner puts in front of the user's server), `check` \
diagnoses why rootless podman fails in a session, and `open`, `close`, `list` and `gc` manage sessions not \
bound to a process (Slurm jobs).",
    name = "jupyter-session",
    version,
    about = "Login sessions for multi-user Jupyter and rootless containers",
    after_help = "Exit status 125: jupyter-session itself failed (usage errors included); see each command's --help."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run CMD as USER inside a PAM session kept open for CMD's whole life (run as root)
    Exec(exec::Args),
    /// Diagnose why rootless podman would fail in this (or USER's) session
    Check(check::Args),
    /// Open a session not bound to a process, e.g. from a Slurm prolog (run as root)
    Open(manage::OpenArgs),
    /// Close a session opened with `open --id` (run as root)
    Close(manage::CloseArgs),
    /// List open sessions (run as root)
    List(manage::ListArgs),
    /// Reap stale sessions and remove runtime dirs nobody needs (run as root)
    Gc(manage::GcArgs),
    /// Write the man pages into DIR (for install.sh and the packages)
    #[command(hide = true)]
    GenerateMan(generate::DirArgs),
    /// Write bash, zsh and fish completions into DIR (for install.sh and the packages)
    #[command(hide = true)]
    GenerateCompletions(generate::DirArgs),
    /// Write the commented configuration file the packages ship into DIR
    #[command(hide = true)]
    GenerateConfig(generate::DirArgs),
    /// Regenerate the configuration sections of README.md and docs/configuration.md in the source tree DIR
    #[command(hide = true)]
    GenerateDocs(generate::DirArgs),
    /// Create the runtime dirs of linger_users and service_users without a session, e.g. at boot (run as root)
    Ensure(manage::EnsureArgs),
    /// Print the caller's session environment as `export NAME=value` lines, for a Slurm TaskProlog (run as the user)
    Env(env::Args),
}

/// Usage errors exit 125, like every other failure of jupyter-session
/// itself (clap's own 2 is a status the keeper's CMD or `check` may give).
const EXIT_USAGE: i32 = session_lib::exit_code::FAILED;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            // Help and --version go to stdout, errors (with usage and a
            // pointer to --help) to stderr.
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let code = match cli.command {
        Command::Exec(args) => exec::run(args),
        Command::Check(args) => check::run(args),
        Command::Open(args) => manage::open(args),
        Command::Close(args) => manage::close(args),
        Command::List(args) => manage::list(args),
        Command::Gc(args) => manage::gc(args),
        Command::GenerateMan(args) => generate::man(args),
        Command::GenerateCompletions(args) => generate::completions(args),
        Command::GenerateConfig(args) => generate::config(args),
        Command::GenerateDocs(args) => generate::docs(args),
        Command::Ensure(args) => manage::ensure(args),
        Command::Env(args) => env::run(args),
    };
    std::process::exit(code);
}
