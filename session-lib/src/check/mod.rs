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

mod catalogue;
mod context;
mod env;
mod explain;
mod identity;
mod kernel;
mod model;
mod path;
mod podman;
mod podman_conf;
mod runner;
mod selinux;
mod session;
pub(crate) mod subid;
mod subprocess;
mod system;

pub use catalogue::{Check, by_id, catalogue};
pub use context::{Context, Mode, SystemPaths};
pub use explain::{EXPLANATIONS, Explanation, explain};
pub use model::{Finding, Fix, Needs, Severity, SkipReason, Status, Verdict, Who};
pub use runner::{Selection, exit_code, run};
pub use subprocess::{Ran, run_with_timeout};

use std::path::{Path, PathBuf};

/// Version of the JSON output (`docs/check-schema.json`).
pub const SCHEMA_VERSION: u32 = 1;

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
    use std::collections::BTreeSet;
    use std::process::Command;
    use std::time::Duration;

    #[test]
    fn catalogue_is_in_dependency_order_with_unique_ids() {
        let mut seen = BTreeSet::new();
        for c in catalogue() {
            for r in c.requires {
                assert!(seen.contains(r), "{} requires {r}, which is not earlier in the catalogue", c.id);
            }
            assert!(seen.insert(c.id), "duplicate id {}", c.id);
        }
        assert_eq!(seen.len(), 32);
    }

    #[test]
    fn a_failed_prerequisite_skips_its_dependents_transitively() {
        let t = testutil::Fixture::new("skip");
        let mut ctx = t.healthy();
        ctx.env.insert("XDG_RUNTIME_DIR".into(), "run/user/1".into());
        let found = run(&ctx, &Selection { only: vec!["storage.bootid".into(), "subid.live".into()] });
        let status = |id: &str| found.iter().find(|f| f.id == id).map(|f| f.status.clone());
        assert_eq!(status("env.runtime_dir.set"), Some(Status::Fail));
        assert_eq!(
            status("env.runtime_dir.owner"),
            Some(Status::Skipped(SkipReason::PrerequisiteFailed("env.runtime_dir.set")))
        );
        match status("storage.bootid") {
            Some(Status::Skipped(why)) => {
                assert!(why.to_string().contains("env.runtime_dir.owner was skipped"), "{why}")
            }
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
        assert_eq!(exit_code(&[f(Status::Pass), f(Status::Info), f(Status::Skipped(SkipReason::Deep))]), 0);
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
