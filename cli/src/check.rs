//! `jupyter-session check`: the diagnostic. Runs session-lib's checks on
//! this session (as the user) or, as root with `--user NAME`, on the
//! session a keeper would give that user; prints one line per check, a fix
//! under each problem, or a versioned JSON document (docs/check-schema.json).
//!
//! Exit codes: 0 all passed, 1 a check failed, 2 warnings only, 125 the
//! check itself could not run (bad option, unknown user, bad config).
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::path::PathBuf;

use serde_json::{Value, json};
use session_lib::check::{self, Context, Finding, Mode, Selection, Status};
use session_lib::config::{Config, ConfigError};
use session_lib::user::UserInfo;

#[derive(clap::Args)]
#[command(
    after_help = "Exit status: 0 all checks passed, 1 a check failed, 2 warnings only, 125 the check could not run.

Examples:
  jupyter-session check                      # as the user, where podman runs
  jupyter-session check --deep               # also `podman info`
  jupyter-session check --user alice         # as root: the session a keeper would give alice
  jupyter-session check --explain 'Error: mkdir /run/user/1001: permission denied'"
)]
pub struct Args {
    /// As root: check the session a keeper would give USER (adds root-only checks)
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Print a JSON document (schema: docs/check-schema.json, schema_version 1)
    #[arg(long)]
    json: bool,
    /// Paste a podman error message: names the checks it points to and runs only those
    #[arg(long, value_name = "TEXT")]
    explain: Option<String>,
    /// Also run `podman info` (slower; starts podman's pause process)
    #[arg(long)]
    deep: bool,
    /// Config file (default /etc/security/jupyter-session.toml if it exists)
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Read subordinate uids from this file instead of /etc/subuid (to test an edited copy)
    #[arg(long, value_name = "PATH")]
    subuid_file: Option<PathBuf>,
    /// Read subordinate gids from this file instead of /etc/subgid
    #[arg(long, value_name = "PATH")]
    subgid_file: Option<PathBuf>,
    /// Time limit of `podman info` with --deep, in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    podman_timeout: u64,
}

const FAILED: i32 = session_lib::exit_code::FAILED;

fn fail(msg: impl std::fmt::Display) -> i32 {
    eprintln!("jupyter-session check: {msg}");
    FAILED
}

pub fn run(args: Args) -> i32 {
    let config = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        // A user may not be allowed to read the admin's default file: check
        // with the defaults rather than not at all, and say so.
        Err(e @ ConfigError::Read { .. }) if args.config.is_none() && args.user.is_none() => {
            eprintln!("jupyter-session check: note: {e}; checking with the built-in defaults");
            Config::default()
        }
        Err(e) => return fail(e),
    };
    let mut ctx = match &args.user {
        Some(name) => {
            if !nix::unistd::geteuid().is_root() {
                return fail(format!(
                    "--user needs root (it reads root-only state and runs probes as {name}); as {name}, run `jupyter-session check` in their session"
                ));
            }
            match UserInfo::by_name(name) {
                Ok(user) => Context::for_user(config, &user),
                Err(e) => return fail(e),
            }
        }
        None => Context::current(config),
    };
    ctx.deep = args.deep;
    ctx.podman_timeout = std::time::Duration::from_secs(args.podman_timeout.max(1));
    if let Some(p) = args.subuid_file {
        ctx.paths.subuid = p;
    }
    if let Some(p) = args.subgid_file {
        ctx.paths.subgid = p;
    }

    let explained = args.explain.as_deref().map(check::explain);
    let selection = match &explained {
        Some((_, ids)) => Selection { only: ids.iter().map(|s| s.to_string()).collect() },
        None => Selection::default(),
    };
    let findings = check::run(&ctx, &selection);
    let code = check::exit_code(&findings);
    if args.json {
        let doc = to_json(&ctx, &findings, args.explain.as_deref(), explained.as_ref().map(|e| e.0.as_slice()), code);
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        print!("{}", to_text(&ctx, &findings, explained.as_ref().map(|e| e.0.as_slice()), colour));
    }
    code
}

fn subject(ctx: &Context) -> String {
    let where_ = match ctx.mode {
        Mode::Session => "this session",
        Mode::ForUser => "the session a keeper would give them",
    };
    format!("{} (uid {}, gid {}), {where_}", ctx.who(), ctx.uid, ctx.gid)
}

fn to_text(ctx: &Context, findings: &[Finding], explained: Option<&[&check::Explanation]>, colour: bool) -> String {
    let paint = |code: &str, s: &str| if colour { format!("\x1b[{code}m{s}\x1b[0m") } else { s.to_string() };
    let mut out = format!("jupyter-session check: {}\n", subject(ctx));
    if let Some(matched) = explained {
        if matched.is_empty() {
            out.push_str("explain: no known podman message in that text; running every check\n");
        }
        for e in matched {
            out.push_str(&format!("explain: \"{}\" → {}\n", e.message, e.checks.join(", ")));
        }
    }
    let width = findings.iter().map(|f| f.id.len()).max().unwrap_or(0);
    for f in findings {
        let label = match &f.status {
            Status::Pass => paint("32", "ok  "),
            Status::Fail => paint("1;31", "FAIL"),
            Status::Warn => paint("33", "warn"),
            Status::Info => paint("36", "info"),
            Status::Skipped(_) => paint("2", "skip"),
        };
        let detail = match &f.status {
            Status::Pass | Status::Info => f.observed.clone(),
            Status::Skipped(why) => format!("skipped: {why}"),
            Status::Fail | Status::Warn => format!("{} (expected: {})", f.observed, f.expected),
        };
        out.push_str(&format!("{label}  {:width$}  {detail}\n", f.id));
        if let Some(fix) = &f.fix
            && matches!(f.status, Status::Fail | Status::Warn)
        {
            let who = match fix.who {
                check::Who::User => "you",
                check::Who::Admin => "admin",
            };
            let text = fix.text.replace('\n', &format!("\n{:pad$}", "", pad = width + 8));
            out.push_str(&format!("      {:width$}  fix ({who}): {text}\n", ""));
        }
    }
    let count = |s: &str| findings.iter().filter(|f| f.status.as_str() == s).count();
    out.push_str(&format!(
        "{} failed, {} warnings, {} passed, {} info, {} skipped\n",
        count("fail"),
        count("warn"),
        count("pass"),
        count("info"),
        count("skipped")
    ));
    out
}

fn to_json(
    ctx: &Context,
    findings: &[Finding],
    input: Option<&str>,
    explained: Option<&[&check::Explanation]>,
    code: i32,
) -> Value {
    let count = |s: &str| findings.iter().filter(|f| f.status.as_str() == s).count();
    let items: Vec<Value> = findings
        .iter()
        .map(|f| {
            json!({
                "id": f.id,
                "what": check::by_id(f.id).map(|c| c.what).unwrap_or(""),
                "severity": f.severity.as_str(),
                "status": f.status.as_str(),
                "skipped_reason": match &f.status { Status::Skipped(why) => Value::from(why.to_string()), _ => Value::Null },
                "observed": f.observed,
                "expected": f.expected,
                "evidence": f.evidence,
                "fix": f.fix.as_ref().map(|x| json!({"who": x.who.as_str(), "text": x.text})),
            })
        })
        .collect();
    json!({
        "schema_version": check::SCHEMA_VERSION,
        "tool_version": env!("CARGO_PKG_VERSION"),
        "mode": match ctx.mode { Mode::Session => "session", Mode::ForUser => "user" },
        "user": {
            "name": ctx.user.as_ref().map(|u| u.name.clone()),
            "uid": ctx.uid,
            "gid": ctx.gid,
        },
        "explain": input.map(|text| json!({
            "input": text,
            "matched": explained.unwrap_or(&[]).iter().map(|e| json!({"message": e.message, "checks": e.checks})).collect::<Vec<_>>(),
        })),
        "findings": items,
        "summary": {
            "pass": count("pass"),
            "fail": count("fail"),
            "warn": count("warn"),
            "info": count("info"),
            "skipped": count("skipped"),
        },
        "exit_code": code,
    })
}
