//! What checks report: severities, statuses, skip reasons, fixes, findings.
#![forbid(unsafe_code)]

use std::fmt;

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
    /// Not run, and why.
    Skipped(SkipReason),
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

    /// Not run: the check cannot say anything here (`reason` says why).
    pub fn skipped(reason: impl Into<String>, evidence: impl Into<String>) -> Verdict {
        Verdict::new(Status::Skipped(SkipReason::Unavailable(reason.into())), "", "", evidence)
    }

    pub fn fix(mut self, who: Who, text: impl Into<String>) -> Verdict {
        self.fix = Some(Fix { who, text: text.into() });
        self
    }
}

/// Why a check was not run. Displayed here, and only here, for the text
/// and JSON outputs alike.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// A prerequisite failed.
    PrerequisiteFailed(&'static str),
    /// A prerequisite was itself skipped.
    PrerequisiteSkipped(&'static str, Box<SkipReason>),
    /// Reads root-only state: needs `--user NAME` as root.
    NeedsRoot { name: String },
    /// Runs podman: needs `--deep`.
    Deep,
    /// The check has nothing to look at here.
    Unavailable(String),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::PrerequisiteFailed(id) => write!(f, "{id} failed"),
            SkipReason::PrerequisiteSkipped(id, why) => write!(f, "{id} was skipped ({why})"),
            SkipReason::NeedsRoot { name } => write!(f, "needs root: run `sudo jupyter-session check --user {name}`"),
            SkipReason::Deep => write!(f, "deep probe: run with --deep"),
            SkipReason::Unavailable(why) => f.write_str(why),
        }
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
