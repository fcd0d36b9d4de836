//! subid.ranges, subid.overlap, subid.live: subordinate ids.
#![forbid(unsafe_code)]

use std::path::Path;

use super::{Context, Status, Verdict, Who, read_text, run_with_timeout};
use crate::config::SubidMode;
use crate::subid::{Layout, Nss, Paths, Provider};

/// What podman needs for a full 16-bit id space inside the container.
pub const MIN_IDS: u64 = 65536;

/// One line of /etc/subuid or /etc/subgid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Range {
    pub owner: String,
    pub start: u64,
    pub count: u64,
}

impl Range {
    fn end(&self) -> u64 {
        self.start + self.count
    }

    fn overlaps(&self, other: &Range) -> bool {
        self.start < other.end() && other.start < self.end()
    }

    fn contains(&self, id: u64) -> bool {
        self.start <= id && id < self.end()
    }
}

/// Parse `owner:start:count` lines; comments, blanks and junk are ignored.
pub fn parse(text: &str) -> Vec<Range> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let owner = f.next()?.to_string();
            let start = f.next()?.parse().ok()?;
            let count = f.next()?.parse().ok()?;
            (f.next().is_none() && !owner.is_empty() && !owner.starts_with('#') && count > 0).then_some(Range {
                owner,
                start,
                count,
            })
        })
        .collect()
}

fn is_mine(r: &Range, name: &str, uid: u32) -> bool {
    r.owner == name || r.owner == uid.to_string()
}

/// Whether nsswitch.conf names a `subid:` source, so libsubid (and podman)
/// ask it instead of the files.
fn nss_subid_source(ctx: &Context) -> Option<String> {
    let text = read_text(&ctx.paths.nsswitch)?;
    text.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("subid:")?;
        let src = rest.split('#').next()?.trim();
        (!src.is_empty() && src != "files").then(|| src.to_string())
    })
}

/// The computed layout, when something uses it (the provider named in
/// nsswitch.conf, `subid: jupyter`, or `subids = "allocate"`): the same
/// computation libsubid_jupyter.so makes, on the same files.
fn computed_layout(ctx: &Context) -> Option<Result<Layout, String>> {
    let uses = nss_subid_source(ctx).as_deref() == Some(PROVIDER) || ctx.config.subids == SubidMode::Allocate;
    uses.then(|| {
        let paths = Paths { subuid: ctx.paths.subuid.clone(), subgid: ctx.paths.subgid.clone(), ..Paths::default() };
        Provider::load(Ok(&ctx.config), &paths, &Nss).layout
    })
}

/// The provider's name in `subid: NAME` (shadow loads libsubid_NAME.so).
const PROVIDER: &str = "jupyter";

/// The user's ranges: from `getsubids` when an NSS source is configured,
/// else from the files. Returns (uid ranges, gid ranges, evidence).
fn my_ranges(ctx: &Context, name: &str) -> Result<(Vec<Range>, Vec<Range>, String), String> {
    if let Some(source) = nss_subid_source(ctx) {
        let prog = ["/usr/bin/getsubids", "/bin/getsubids"].iter().map(Path::new).find(|p| p.is_file());
        let Some(prog) = prog else {
            return Err(format!("nsswitch.conf names subid source '{source}' but getsubids is not installed"));
        };
        let query = |gid: bool| -> Result<Vec<Range>, String> {
            let mut cmd = std::process::Command::new(prog);
            cmd.stdin(std::process::Stdio::null());
            if gid {
                cmd.arg("-g");
            }
            cmd.arg(name);
            let ran = run_with_timeout(&mut cmd, ctx.probe_timeout).map_err(|e| format!("{}: {e}", prog.display()))?;
            // "0: alice 100000 65536"
            Ok(ran
                .stdout
                .lines()
                .filter_map(|l| {
                    let mut f = l.split_whitespace().skip(1);
                    Some(Range {
                        owner: f.next()?.into(),
                        start: f.next()?.parse().ok()?,
                        count: f.next()?.parse().ok()?,
                    })
                })
                .collect())
        };
        let evidence = format!("getsubids [-g] {name} (nsswitch subid: {source})");
        return Ok((query(false)?, query(true)?, evidence));
    }
    let read = |p: &Path| read_text(p).map(|t| parse(&t)).unwrap_or_default();
    let mine = |v: Vec<Range>| v.into_iter().filter(|r| is_mine(r, name, ctx.uid)).collect();
    let evidence = format!("{}, {}", ctx.paths.subuid.display(), ctx.paths.subgid.display());
    Ok((mine(read(&ctx.paths.subuid)), mine(read(&ctx.paths.subgid)), evidence))
}

/// A free 65536-aligned start above every range in the files.
fn free_start(ctx: &Context) -> u64 {
    let all: Vec<Range> =
        [&ctx.paths.subuid, &ctx.paths.subgid].iter().filter_map(|p| read_text(p)).flat_map(|t| parse(&t)).collect();
    let top = all.iter().map(Range::end).max().unwrap_or(100_000).max(100_000);
    top.div_ceil(MIN_IDS) * MIN_IDS
}

fn total(r: &[Range]) -> u64 {
    r.iter().map(|r| r.count).sum()
}

fn shown(r: &[Range]) -> String {
    if r.is_empty() {
        return "none".into();
    }
    r.iter().map(|r| format!("{}:{}", r.start, r.count)).collect::<Vec<_>>().join(",")
}

pub(super) fn ranges(ctx: &Context) -> Verdict {
    let Some(pw) = &ctx.user else { return Verdict::skipped("the user does not resolve", "") };
    let (uids, gids, evidence) = match my_ranges(ctx, &pw.name) {
        Ok(r) => r,
        Err(e) => {
            return Verdict::new(Status::Fail, e, "subordinate ids for the user", "nsswitch.conf, getsubids")
                .fix(Who::Admin, "install getsubids (package uidmap / shadow-utils-subid) or fix the subid source");
        }
    };
    let expected =
        format!("at least {MIN_IDS} subuids and subgids for {} (by name or uid), not containing its own ids", pw.name);
    let observed = format!("subuid {} ({}), subgid {} ({})", shown(&uids), total(&uids), shown(&gids), total(&gids));
    let start = free_start(ctx);
    let add = format!(
        "`usermod --add-subuids {start}-{} --add-subgids {start}-{} {}`, then as the user `podman system migrate`",
        start + MIN_IDS - 1,
        start + MIN_IDS - 1,
        pw.name
    );
    if (uids.is_empty() || gids.is_empty()) && nss_subid_source(ctx).as_deref() == Some(PROVIDER) {
        let why = match computed_layout(ctx) {
            Some(Err(e)) => e,
            Some(Ok(l)) if !l.manages(ctx.uid) => format!(
                "uid {} is outside subid_uid_min = {} .. subid_uid_max = {} in the config: widen that range (docs/subids.md) or give {} lines in /etc/subuid and /etc/subgid",
                ctx.uid, l.uid_min, l.uid_max, pw.name
            ),
            _ => format!("libsubid_jupyter.so gave no range for {}: see its syslog lines (LOG_AUTHPRIV)", pw.name),
        };
        return Verdict::new(Status::Fail, observed, expected, evidence).fix(Who::Admin, why);
    }
    if uids.is_empty() || gids.is_empty() {
        return Verdict::new(Status::Fail, observed, expected, evidence).fix(
            Who::Admin,
            format!("{add} (podman says \"cannot find UID/GID for user {}: no subuid ranges found\")", pw.name),
        );
    }
    if uids.iter().any(|r| r.contains(ctx.uid as u64)) || gids.iter().any(|r| r.contains(ctx.gid as u64)) {
        return Verdict::new(
            Status::Fail,
            format!("{observed}; a range contains the user's own uid/gid"),
            expected,
            evidence,
        )
        .fix(Who::Admin, format!("remove that range and give one outside real ids: {add}"));
    }
    if total(&uids) < MIN_IDS || total(&gids) < MIN_IDS {
        // Most images own files up to uid 65534 (nobody): podman fails on them.
        return Verdict::new(Status::Fail, format!("{observed}: fewer than {MIN_IDS}"), expected, evidence).fix(
            Who::Admin,
            format!("{add} (images with ids above the range fail with \"potentially insufficient UIDs or GIDs\")"),
        );
    }
    Verdict::pass(observed, expected, evidence)
}

/// Real uids and gids from passwd (as parsed by the test or the system).
fn passwd_ids(ctx: &Context) -> Vec<(String, u64, u64)> {
    read_text(&ctx.paths.passwd)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((f.first()?.to_string(), f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
        })
        .collect()
}

pub(super) fn overlap(ctx: &Context) -> Verdict {
    let Some(pw) = &ctx.user else { return Verdict::skipped("the user does not resolve", "") };
    let evidence =
        format!("{}, {}, {}", ctx.paths.subuid.display(), ctx.paths.subgid.display(), ctx.paths.passwd.display());
    let expected = format!("{}'s ranges overlap no other user's ranges and no uid/gid in passwd", pw.name);
    let users = passwd_ids(ctx);
    let mut clashes = Vec::new();
    for (file, kind) in [(&ctx.paths.subuid, "subuid"), (&ctx.paths.subgid, "subgid")] {
        let all = read_text(file).map(|t| parse(&t)).unwrap_or_default();
        let (mine, others): (Vec<&Range>, Vec<&Range>) = all.iter().partition(|r| is_mine(r, &pw.name, pw.uid));
        for m in &mine {
            for o in &others {
                if m.overlaps(o) {
                    clashes
                        .push(format!("{kind} {}:{} overlaps {}'s {}:{}", m.start, m.count, o.owner, o.start, o.count));
                }
            }
            for (name, uid, gid) in &users {
                let id = if kind == "subuid" { *uid } else { *gid };
                if name != &pw.name && m.contains(id) {
                    clashes.push(format!("{kind} {}:{} contains the real id {id} of {name}", m.start, m.count));
                }
            }
        }
    }
    // The computed ranges (provider or allocate mode): the user's ranges may
    // meet them only as exactly the user's own computed range.
    match computed_layout(ctx) {
        None => {}
        Some(Err(e)) => clashes.push(e),
        Some(Ok(l)) => {
            let own = l.range_of(pw.uid);
            let (uids, gids) = match my_ranges(ctx, &pw.name) {
                Ok((u, g, _)) => (u, g),
                Err(_) => (Vec::new(), Vec::new()),
            };
            for (kind, r) in uids.iter().map(|r| ("subuid", r)).chain(gids.iter().map(|r| ("subgid", r))) {
                if l.intersects(r.start, r.end()) && own != Some((r.start, r.count)) {
                    clashes.push(format!(
                        "{kind} {}:{} overlaps the computed ranges {}-{} of uids {}-{} (subid_base = {}, subid_size = {})",
                        r.start,
                        r.count,
                        l.base,
                        l.end() - 1,
                        l.uid_min,
                        l.uid_max,
                        l.base,
                        l.size
                    ));
                }
            }
        }
    }
    if clashes.is_empty() {
        return Verdict::pass("no overlaps", expected, evidence);
    }
    clashes.truncate(5);
    let start = free_start(ctx);
    Verdict::new(Status::Fail, clashes.join("; "), expected, evidence).fix(
        Who::Admin,
        format!(
            "give {0} a range of its own: edit its lines in /etc/subuid and /etc/subgid to {0}:{start}:{MIN_IDS}, then as {0} `podman system migrate` (overlapping ranges let two users' containers share file ownership)",
            pw.name
        ),
    )
}

pub(super) fn live(ctx: &Context) -> Verdict {
    let Some(runtime) = ctx.runtime_dir() else { return Verdict::skipped(ctx.no_runtime_dir(), "$XDG_RUNTIME_DIR") };
    let runtime = runtime.as_path();
    let pid_file = runtime.join("libpod/tmp/pause.pid");
    let evidence = format!("{}, /proc/PID/uid_map", pid_file.display());
    let Some(pw) = &ctx.user else { return Verdict::skipped("the user does not resolve", evidence) };
    let expected = "the pause process maps the user's uid and its configured subuid range".to_string();
    let Some(pid) = read_text(&pid_file).and_then(|t| t.trim().parse::<u32>().ok()) else {
        return Verdict::pass("no podman pause process yet: nothing to compare", expected, evidence);
    };
    let Some(map) = read_text(Path::new(&format!("/proc/{pid}/uid_map"))) else {
        return Verdict::pass(format!("pause process {pid} is gone: podman starts a new one"), expected, evidence);
    };
    let Ok((uids, _, _)) = my_ranges(ctx, &pw.name) else {
        return Verdict::skipped("subordinate ids cannot be read", evidence);
    };
    // Lines: inside outside count.
    let lines: Vec<(u64, u64, u64)> = map
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().map(|x| x.parse::<u64>().ok());
            Some((f.next()??, f.next()??, f.next()??))
        })
        .collect();
    let mapped_sub: u64 = lines.iter().filter(|(_, out, _)| *out != ctx.uid as u64).map(|(_, _, n)| n).sum();
    let own = lines.iter().any(|(_, out, n)| *out == ctx.uid as u64 && *n >= 1);
    let all_in_ranges = lines
        .iter()
        .filter(|(_, out, _)| *out != ctx.uid as u64)
        .all(|(_, out, n)| uids.iter().any(|r| r.start <= *out && out + n <= r.end()));
    let observed = format!(
        "pause process {pid} maps {}",
        lines.iter().map(|(i, o, n)| format!("{i}:{o}:{n}")).collect::<Vec<_>>().join(" ")
    );
    if own && all_in_ranges && mapped_sub == total(&uids) {
        return Verdict::pass(observed, expected, evidence);
    }
    if mapped_sub == 0 && !uids.is_empty() {
        // Only the user's own uid: every image with other ids fails until
        // the pause process is restarted.
        return Verdict::new(
            Status::Fail,
            format!("{observed}: a single-id mapping although subuids {} are configured", shown(&uids)),
            expected,
            evidence,
        )
        .fix(
            Who::User,
            "`podman system migrate` (stops the pause process, which kept the single-id map of a run before the ranges existed; podman says \"potentially insufficient UIDs or GIDs\")",
        );
    }
    Verdict::new(Status::Warn, format!("{observed}; configured subuids {}", shown(&uids)), expected, evidence).fix(
        Who::User,
        "`podman system migrate` (podman keeps the id map of its first run until its pause process restarts)",
    )
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::testutil::Fixture;
    use super::*;

    #[test]
    fn parses_lines_and_skips_junk() {
        let r = parse("# c\nalice:100000:65536\n\nbad\n1001:165536:1000\nx:1:0\n");
        assert_eq!(r.len(), 2);
        assert_eq!(r[1], Range { owner: "1001".into(), start: 165536, count: 1000 });
    }

    #[test]
    fn ranges_by_name_or_uid_missing_small_and_own_uid() {
        let t = Fixture::new("subid");
        let ctx = t.healthy();
        let v = ranges(&ctx);
        assert_eq!(v.status, Status::Pass, "{v:?}");
        // The user's lines removed from (a copy of) the files.
        fs::write(&ctx.paths.subuid, "someone:100000:65536\n").unwrap();
        let v = ranges(&ctx);
        assert_eq!(v.status, Status::Fail);
        let fix = v.fix.unwrap();
        assert_eq!(fix.who, Who::Admin);
        assert!(
            fix.text.contains(&format!("--add-subuids 262144-327679 --add-subgids 262144-327679 {}", t.name)),
            "{}",
            fix.text
        );
        assert!(fix.text.contains("podman system migrate"));
        fs::write(&ctx.paths.subuid, format!("{}:300000:1000\n", t.name)).unwrap();
        assert_eq!(ranges(&ctx).status, Status::Fail);
        fs::write(&ctx.paths.subuid, format!("{}:{}:65536\n", t.name, t.uid)).unwrap();
        let v = ranges(&ctx);
        assert!(v.status == Status::Fail && v.observed.contains("own uid"), "{v:?}");
    }

    #[test]
    fn overlaps_with_others_and_real_ids() {
        let t = Fixture::new("overlap");
        let ctx = t.healthy();
        fs::write(&ctx.paths.subgid, format!("someone:100000:65536\n{}:165536:65536\n", t.name)).unwrap();
        fs::write(t.root.join("etc/passwd"), "someone:x:1500:1500::/:/bin/sh\n").unwrap();
        let mut ctx = ctx;
        ctx.paths.passwd = t.root.join("etc/passwd");
        assert_eq!(overlap(&ctx).status, Status::Pass, "{:?}", overlap(&ctx));
        fs::write(&ctx.paths.subuid, format!("someone:100000:65536\n{}:150000:65536\n", t.name)).unwrap();
        fs::write(t.root.join("etc/passwd"), "someone:x:1500:1500::/:/bin/sh\nbig:x:170000:170000::/:/bin/sh\n")
            .unwrap();
        let v = overlap(&ctx);
        assert_eq!(v.status, Status::Fail);
        assert!(v.observed.contains("overlaps someone's 100000:65536"), "{}", v.observed);
        assert!(v.observed.contains("real id 170000 of big"), "{}", v.observed);
    }

    #[test]
    fn overlap_considers_the_computed_ranges() {
        use crate::config::SubidMode;
        let t = Fixture::new("overlap-computed");
        let mut ctx = t.healthy();
        fs::write(t.root.join("etc/passwd"), "").unwrap();
        ctx.paths.passwd = t.root.join("etc/passwd");
        ctx.config.subids = SubidMode::Allocate;
        ctx.config.subid_base = 200_000;
        ctx.config.subid_uid_min = 1000;
        ctx.config.subid_uid_max = 1100;
        // The fixture's line 165536:65536 reaches into 200000..: refused.
        let v = overlap(&ctx);
        assert_eq!(v.status, Status::Fail, "{v:?}");
        assert!(v.observed.contains("overlaps the computed subordinate ids 200000-"), "{}", v.observed);
        // Its own computed range (uid 64123 managed) is fine.
        ctx.config.subid_uid_min = t.uid - 1;
        ctx.config.subid_uid_max = t.uid;
        ctx.config.subid_base = 131_072;
        ctx.config.subid_size = 34_464;
        let own = 131_072 + 34_464;
        fs::write(&ctx.paths.subuid, format!("{}:{own}:34464\n", t.uid)).unwrap();
        fs::write(&ctx.paths.subgid, format!("{}:{own}:34464\n", t.uid)).unwrap();
        assert_eq!(overlap(&ctx).status, Status::Pass, "{:?}", overlap(&ctx));
        // Without allocate mode (and no provider) the layout is not consulted.
        ctx.config.subids = SubidMode::Off;
        fs::write(&ctx.paths.subuid, format!("{}:131072:10\n", t.name)).unwrap();
        assert_eq!(overlap(&ctx).status, Status::Pass);
        ctx.config.subids = SubidMode::Allocate;
        let v = overlap(&ctx);
        assert!(v.status == Status::Fail && v.observed.contains("subuid line 1"), "{v:?}");
    }

    #[test]
    fn nss_subid_source_is_detected() {
        let t = Fixture::new("nss");
        let ctx = t.healthy();
        assert_eq!(nss_subid_source(&ctx), None);
        fs::write(&ctx.paths.nsswitch, "passwd: files\nsubid: sss # ldap\n").unwrap();
        assert_eq!(nss_subid_source(&ctx).as_deref(), Some("sss"));
    }
}
