//! Running the selected checks in catalogue order, skipping what a failed
//! prerequisite makes meaningless; the exit code.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};

use super::catalogue::{by_id, catalogue};
use super::model::{Finding, Needs, SkipReason, Status, Verdict};
use super::{Context, Mode};

/// Which checks to run.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Only these ids (and what they require); all when empty.
    pub only: Vec<String>,
}

/// Run the selected checks in catalogue order.
pub fn run(ctx: &Context, selection: &Selection) -> Vec<Finding> {
    let wanted = wanted_ids(&selection.only);
    // Failed (None) or skipped for a prerequisite (Some(why)).
    let mut blocked: BTreeMap<&'static str, Option<SkipReason>> = BTreeMap::new();
    let mut out = Vec::new();
    for check in catalogue() {
        if let Some(w) = &wanted
            && !w.contains(check.id)
        {
            continue;
        }
        let prerequisite = check.requires.iter().find_map(|r| blocked.get(r).map(|why| (*r, why.clone())));
        let skip = |why: SkipReason| Verdict::new(Status::Skipped(why), "", "", "");
        let verdict = if let Some((req, why)) = &prerequisite {
            skip(match why {
                None => SkipReason::PrerequisiteFailed(req),
                Some(inner) => SkipReason::PrerequisiteSkipped(req, Box::new(inner.clone())),
            })
        } else {
            match check.needs {
                Needs::Root if ctx.mode != Mode::ForUser => {
                    let name = if ctx.uid == 0 { "NAME".to_string() } else { ctx.name_or_placeholder() };
                    skip(SkipReason::NeedsRoot { name })
                }
                Needs::Deep if !ctx.deep => skip(SkipReason::Deep),
                _ => (check.run)(ctx),
            }
        };
        match &verdict.status {
            Status::Fail => {
                blocked.insert(check.id, None);
            }
            Status::Skipped(why) if prerequisite.is_some() => {
                blocked.insert(check.id, Some(why.clone()));
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
