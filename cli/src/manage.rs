//! `open`, `close`, `list`, `gc`: sessions not bound to a process (a Slurm
//! job opened by a prolog and closed by an epilog), and housekeeping.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use serde::Serialize;
use session_lib::binding::Binding;
use session_lib::config::Config;
use session_lib::registry::{self, Record, RegistryError};
use session_lib::session::{GcScope, SessionError, Sessions};
use session_lib::user::UserInfo;

#[derive(clap::Args)]
pub struct Common {
    /// Config file (default /etc/security/jupyter-session.toml if it exists)
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
#[command(after_help = "Example (a Slurm prolog, as root):
  jupyter-session open --user \"$SLURM_JOB_USER\" --id \"slurm-$SLURM_JOB_ID\"")]
pub struct OpenArgs {
    /// The user the session is for
    #[arg(long)]
    user: String,
    /// The session's id, e.g. slurm-$SLURM_JOB_ID. Opening an id already open for the same user is no error
    #[arg(long)]
    id: String,
    /// End the session when this cgroup directory is gone (e.g. the Slurm job's cgroup): `gc` reaps it
    #[arg(long, value_name = "PATH", conflicts_with = "bind_pid")]
    bind_cgroup: Option<PathBuf>,
    /// How long the --bind-cgroup directory may take to appear (Slurm makes it after the Prolog)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5m", requires = "bind_cgroup")]
    appear_within: u64,
    /// End the session when this process exits (e.g. the job's slurmstepd): `gc` reaps it
    #[arg(long, value_name = "PID")]
    bind_pid: Option<u32>,
    /// Exit 0 (saying so) for a user jupyter-session does not manage (root, uid below min_uid), as a Slurm Prolog must
    #[arg(long)]
    unmanaged_ok: bool,
    /// Recorded as the session's service
    #[arg(long, default_value = "jupyter-session")]
    service: String,
    /// Print the session's environment as `export NAME=value` lines (for a Slurm TaskProlog)
    #[arg(long)]
    print_env: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args)]
#[command(after_help = "Example (a Slurm epilog, as root):
  jupyter-session close --id \"slurm-$SLURM_JOB_ID\"")]
pub struct CloseArgs {
    /// The id given to `open --id`
    #[arg(long)]
    id: String,
    /// Exit 0 (saying so) when no session has this id, as a Slurm Epilog must (a job that never opened one)
    #[arg(long)]
    missing_ok: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args)]
#[command(after_help = "Output: USER UID SERVICE ID PID SINCE, one line per open session; --json prints \
{\"version\":1,\"sessions\":[...]}.

Example (as root):
  jupyter-session list --json")]
pub struct ListArgs {
    /// Machine-readable output
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args)]
#[command(after_help = "Example (as root, e.g. from a timer or cron):
  jupyter-session gc --older-than 7d")]
pub struct GcArgs {
    /// Also close id sessions older than this (e.g. 90s, 30m, 12h, 7d); never those of linger_users or service_users
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    older_than: Option<u64>,
    /// Only this user's sessions and runtime dir, waiting for their lock (the privileged step at a systemd
    /// unit's stop: `ExecStopPost=+jupyter-session gc --user NAME`)
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Only id sessions whose id starts with this (e.g. slurm-), and only users that have one
    #[arg(long, value_name = "PREFIX")]
    id_prefix: Option<String>,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args)]
#[command(after_help = "\
Safe to run at boot (a boot script, a systemd oneshot unit, cron @reboot) and again at any time: a dir \
that is there already is checked and left alone. Exit status 0 when every dir is there, 125 when one \
could not be made (each failure is named; the others are still made).

Example (as root, at boot, for every lingering and service user; then one account):
  jupyter-session ensure
  jupyter-session ensure --user jupyterhub")]
pub struct EnsureArgs {
    /// Only this user (must be on linger_users or service_users); default: all of them
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    #[command(flatten)]
    common: Common,
}

/// Exit code for errors of this tool itself (the `env`/`runuser` convention).
const FAILED: i32 = session_lib::exit_code::FAILED;

fn fail(msg: impl std::fmt::Display) -> i32 {
    eprintln!("jupyter-session: {msg}");
    FAILED
}

/// Load config and insist on root (the registry and /run/user are root's).
fn setup(common: &Common, what: &str) -> Result<Sessions, i32> {
    if !nix::unistd::geteuid().is_root() {
        return Err(fail(format!("`{what}` must be run as root (it manages /run/user and the session registry)")));
    }
    Config::load(common.config.as_deref()).map(|c| Sessions::new(&c)).map_err(fail)
}

fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

pub fn open(args: OpenArgs) -> i32 {
    let sessions = match setup(&args.common, "open") {
        Ok(s) => s,
        Err(code) => return code,
    };
    if !registry::valid_id(&args.id) {
        return fail(registry::RegistryError::InvalidId(args.id));
    }
    let user = match UserInfo::by_name(&args.user) {
        Ok(u) => u,
        Err(e) => return fail(e),
    };
    if let Err(why) = sessions.config.manages(&user) {
        let msg = format!("{} (uid {}) {why}: no session is managed for it", user.name, user.uid);
        if args.unmanaged_ok {
            eprintln!("jupyter-session: {msg}; nothing to do (--unmanaged-ok)");
            return 0;
        }
        return fail(format!(
            "{msg} (a service account goes on service_users; pass --unmanaged-ok to make this no error, as in a \
             Slurm Prolog)"
        ));
    }
    let binding = match (&args.bind_cgroup, args.bind_pid) {
        (Some(path), _) => Binding::cgroup(path, args.appear_within).map(Some),
        (None, Some(pid)) => Binding::process(pid).map(Some),
        (None, None) => Ok(None),
    };
    let binding = match binding {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    match sessions.open_id(&user, &args.service, &args.id, binding.clone()) {
        Ok(opened) => {
            for warning in &opened.warnings {
                eprintln!("jupyter-session: warning: {warning}");
            }
            for note in &opened.notes {
                eprintln!("jupyter-session: {note}");
            }
            let again = if opened.reopened { " again (it was already open for this user)" } else { "" };
            let bound = binding.map(|b| format!(", bound to {b}")).unwrap_or_default();
            if args.print_env {
                for (name, value) in &opened.env {
                    println!("export {name}={}", shell_quote(value));
                }
            } else {
                eprintln!(
                    "jupyter-session: opened session {}{again} for {} (uid {}){bound}, XDG_RUNTIME_DIR={}",
                    args.id,
                    user.name,
                    user.uid,
                    opened.runtime_dir.display()
                );
            }
            0
        }
        Err(e) => fail(format!("cannot open session {} for {}: {e}", args.id, user.name)),
    }
}

pub fn close(args: CloseArgs) -> i32 {
    let sessions = match setup(&args.common, "close") {
        Ok(s) => s,
        Err(code) => return code,
    };
    match sessions.close_id(&args.id) {
        Ok((record, closed)) => {
            let dir = closed.dir;
            eprintln!("jupyter-session: closed session {} of {} (uid {}); {dir}", args.id, record.user, record.uid);
            0
        }
        Err(SessionError::Registry(RegistryError::UnknownId(id))) if args.missing_ok => {
            eprintln!("jupyter-session: no open session has id '{id}': nothing to close (--missing-ok)");
            0
        }
        Err(e) => fail(e),
    }
}

/// One row of `list --json`.
#[derive(Serialize)]
struct Row<'a> {
    user: &'a str,
    uid: u32,
    service: &'a str,
    since: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bound: Option<&'a Binding>,
    alive: bool,
}

impl<'a> From<&'a Record> for Row<'a> {
    fn from(r: &'a Record) -> Self {
        Row {
            user: &r.user,
            uid: r.uid,
            service: &r.service,
            since: r.since,
            pid: r.pid,
            id: r.id.as_deref(),
            bound: r.bound.as_ref(),
            alive: r.alive(),
        }
    }
}

pub fn list(args: ListArgs) -> i32 {
    let sessions = match setup(&args.common, "list") {
        Ok(s) => s,
        Err(code) => return code,
    };
    let records = match sessions.list() {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if args.json {
        let rows: Vec<Row> = records.iter().map(Row::from).collect();
        println!("{}", serde_json::json!({ "version": 1, "sessions": rows }));
        return 0;
    }
    println!("{:<16} {:>8} {:<16} {:<24} {:>8} SINCE", "USER", "UID", "SERVICE", "ID", "PID");
    let now = registry::now();
    for r in &records {
        println!(
            "{:<16} {:>8} {:<16} {:<24} {:>8} {} ago",
            r.user,
            r.uid,
            r.service,
            r.id.as_deref().unwrap_or("-"),
            r.pid.map_or("-".to_string(), |p| p.to_string()),
            human(now.saturating_sub(r.since))
        );
    }
    0
}

pub fn gc(args: GcArgs) -> i32 {
    let sessions = match setup(&args.common, "gc") {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut scope = GcScope::default();
    let mut only = None;
    if let Some(name) = &args.user {
        match UserInfo::by_name(name) {
            Ok(u) => {
                scope.uid = Some(u.uid);
                only = Some(u);
            }
            Err(e) => return fail(format!("gc --user: {e}")),
        }
    }
    if let Some(prefix) = &args.id_prefix {
        if prefix.is_empty() || !registry::valid_id(prefix) {
            return fail(format!(
                "gc --id-prefix: '{}' cannot begin a session id (letters, digits, '.', '_', '-'; not empty)",
                prefix.escape_debug()
            ));
        }
        scope.id_prefix = Some(prefix.clone());
    }
    let result = match &only {
        None => sessions.gc(args.older_than, &scope),
        Some(user) => sessions.gc_user(user, args.older_than, &scope),
    };
    match result {
        Ok(report) => {
            for r in &report.kept_lingering {
                println!(
                    "kept session {} of {} (uid {}): older than --older-than, but {} lingers (linger_users or service_users)",
                    r.id.as_deref().unwrap_or("?"),
                    r.user,
                    r.uid,
                    r.user
                );
            }
            for r in &report.reaped {
                match (&r.id, r.pid, &r.bound) {
                    (Some(id), _, Some(b)) => {
                        println!("reaped session {id} of {} (uid {}): its {b} is gone", r.user, r.uid)
                    }
                    _ => println!("reaped stale session of {} (uid {}, pid {:?})", r.user, r.uid, r.pid),
                }
            }
            for r in &report.expired {
                println!("closed expired session {} of {} (uid {})", r.id.as_deref().unwrap_or("?"), r.user, r.uid);
            }
            if report.unreadable > 0 {
                println!("removed {} unreadable record file(s)", report.unreadable);
            }
            for pid in &report.stopped_pause {
                println!("stopped podman's pause process {pid}: it was all that was left of its user");
            }
            for dir in &report.removed_dirs {
                println!("removed {}", dir.display());
            }
            for (dir, why) in &report.kept_dirs {
                println!("kept {}: {why}", dir.display());
            }
            for uid in &report.busy {
                println!("uid {uid} busy, skipped (an open or close of it holds its lock; run gc again later)");
            }
            0
        }
        Err(e) => fail(e),
    }
}

pub fn ensure(args: EnsureArgs) -> i32 {
    let sessions = match setup(&args.common, "ensure") {
        Ok(s) => s,
        Err(code) => return code,
    };
    let config = &sessions.config;
    let names: Vec<String> = match &args.user {
        Some(name) => vec![name.clone()],
        None => {
            let mut all = config.linger_users.clone();
            all.extend(config.service_users.iter().filter(|n| !config.linger_users.contains(n)).cloned());
            all
        }
    };
    if names.is_empty() {
        eprintln!("jupyter-session: ensure: no linger_users or service_users in the configuration: nothing to do");
        return 0;
    }
    let mut failed = false;
    for name in &names {
        let user = match UserInfo::by_name(name) {
            Ok(u) => u,
            Err(e) => {
                let listed = if config.is_service_user(name) {
                    " (it is on service_users)"
                } else if config.lingers(name) {
                    " (it is on linger_users)"
                } else {
                    ""
                };
                eprintln!("jupyter-session: ensure: {e}{listed}");
                failed = true;
                continue;
            }
        };
        match sessions.ensure(&user) {
            Ok(done) => {
                for warning in &done.warnings {
                    eprintln!("jupyter-session: warning: {warning}");
                }
                let what = if done.created { "created" } else { "present" };
                println!("{what} {} ({} uid {})", done.path.display(), user.name, user.uid);
            }
            Err(e) => {
                eprintln!("jupyter-session: ensure: {e}");
                failed = true;
            }
        }
    }
    if failed { FAILED } else { 0 }
}

fn human(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// "90s", "30m", "12h", "7d", or plain seconds.
fn parse_duration(s: &str) -> Result<u64, String> {
    let bad = || format!("'{s}' is not a duration: use a number with s, m, h or d, e.g. 12h");
    let (digits, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/run/user/1000"), "'/run/user/1000'");
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }
}
