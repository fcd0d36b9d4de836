//! path.tools, uidmap.privs: the programs rootless podman runs.
#![forbid(unsafe_code)]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{Context, Status, Verdict, Who};

/// OCI runtimes podman can use, in its order of preference.
const RUNTIMES: &[&str] = &["crun", "runc", "youki", "krun"];

pub(super) fn tools(ctx: &Context) -> Verdict {
    let evidence = "search of $PATH (and podman's helper dirs for conmon and the runtime)";
    let expected = "podman, newuidmap, newgidmap in PATH; conmon and crun or runc installed".to_string();
    let mut found = Vec::new();
    let mut missing_path = Vec::new();
    for name in ["podman", "newuidmap", "newgidmap"] {
        match ctx.which(name) {
            Some(p) => found.push(p.display().to_string()),
            None => missing_path.push(name),
        }
    }
    let mut missing_pkg = Vec::new();
    match ctx.find_helper("conmon") {
        Some(p) => found.push(p.display().to_string()),
        None => missing_pkg.push("conmon"),
    }
    match RUNTIMES.iter().find_map(|r| ctx.find_helper(r)) {
        Some(p) => found.push(p.display().to_string()),
        None => missing_pkg.push("crun or runc"),
    }
    if missing_path.is_empty() && missing_pkg.is_empty() {
        return Verdict::pass(found.join(", "), expected, evidence);
    }
    let path = ctx.var("PATH").unwrap_or("(unset)");
    let mut observed = Vec::new();
    if !missing_path.is_empty() {
        observed.push(format!("not in PATH={path}: {}", missing_path.join(", ")));
    }
    if !missing_pkg.is_empty() {
        observed.push(format!("not installed: {}", missing_pkg.join(", ")));
    }
    // Installed, only PATH lacks them: the user can fix it.
    let elsewhere: Vec<String> = missing_path
        .iter()
        .filter_map(|n| ctx.paths.helper_dirs.iter().map(|d| d.join(n)).find(|p| p.is_file()))
        .filter_map(|p| p.parent().map(|d| d.display().to_string()))
        .collect();
    let v = Verdict::new(Status::Fail, observed.join("; "), expected, evidence);
    if missing_pkg.is_empty() && elsewhere.len() == missing_path.len() {
        let mut dirs = elsewhere;
        dirs.dedup();
        v.fix(Who::User, format!("`export PATH={}:$PATH` (podman runs newuidmap from PATH)", dirs.join(":")))
    } else {
        v.fix(
            Who::Admin,
            "install the tools: `apt-get install podman uidmap conmon crun` (Debian/Ubuntu) or `dnf install podman shadow-utils` (Fedora/RHEL); keep /usr/bin in the session's PATH (`path` in /etc/security/jupyter-session.toml)",
        )
    }
}

/// The OCI runtime containers.conf names (`[engine] runtime`), found in
/// its `[engine.runtimes]` paths, podman's helper dirs or PATH.
pub(super) fn engine_runtime(ctx: &Context) -> Verdict {
    let conf = super::podman_conf::containers_conf(ctx);
    let files = if conf.files.is_empty() {
        "none".to_string()
    } else {
        conf.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
    };
    let evidence = format!("containers.conf files read: {files}; [engine.runtimes], PATH, podman's helper dirs");
    let expected = "the configured OCI runtime (default crun, else runc) is installed";
    if !conf.errors.is_empty() {
        return Verdict::new(
            Status::Fail,
            format!("containers.conf does not parse: {}", conf.errors.join("; ")),
            expected,
            evidence,
        )
        .fix(Who::User, "fix the TOML syntax of that file (podman refuses to start on it)");
    }
    let find = |name: &str| -> Option<std::path::PathBuf> {
        if name.starts_with('/') {
            return Some(Path::new(name).to_path_buf()).filter(|p| p.is_file());
        }
        conf.runtimes
            .get(name)
            .into_iter()
            .flatten()
            .map(Path::new)
            .find(|p| p.is_file())
            .map(Path::to_path_buf)
            .or_else(|| ctx.find_helper(name))
    };
    match &conf.runtime {
        None => match RUNTIMES.iter().find_map(|r| find(r).map(|p| (*r, p))) {
            Some((name, p)) => {
                Verdict::pass(format!("not set: podman uses {name} ({})", p.display()), expected, evidence)
            }
            None => Verdict::new(Status::Fail, "not set, and neither crun nor runc is installed", expected, evidence)
                .fix(Who::Admin, "`apt-get install crun` (or runc)"),
        },
        Some(set) => match find(&set.value) {
            Some(p) => Verdict::pass(
                format!("runtime = \"{}\" ({}): {}", set.value, set.file.display(), p.display()),
                expected,
                evidence,
            ),
            None => {
                let observed = format!(
                    "runtime = \"{}\" in {}: not installed (podman: `default OCI runtime \"{}\" not found`)",
                    set.value,
                    set.file.display(),
                    set.value
                );
                let other = RUNTIMES.iter().filter(|r| **r != set.value).find(|r| find(r).is_some());
                let v = Verdict::new(Status::Fail, observed, expected, evidence);
                match other {
                    Some(r) => v.fix(Who::User, format!("set `runtime = \"{r}\"` under [engine] in {} (installed here), or ask an admin to install {}", set.file.display(), set.value)),
                    None => v.fix(Who::Admin, format!("install {0} (`apt-get install {0}`) or set another runtime in {1}", set.value, set.file.display())),
                }
            }
        },
    }
}

/// Permitted capability bits of a `security.capability` value, if its
/// effective flag is set (what makes them apply at exec).
fn file_caps(value: &[u8]) -> Option<u64> {
    if value.len() < 12 {
        return None;
    }
    let word = |i: usize| u32::from_le_bytes([value[i], value[i + 1], value[i + 2], value[i + 3]]);
    let magic_etc = word(0);
    let revision = magic_etc & 0xFF00_0000;
    let effective = magic_etc & 1 == 1;
    let low = word(4) as u64;
    let high = match revision {
        0x0100_0000 => 0,
        // v2 and v3 (v3 adds a root uid): permitted, inheritable, per 32 bits.
        0x0200_0000 | 0x0300_0000 if value.len() >= 20 => word(12) as u64,
        _ => return None,
    };
    effective.then_some(low | high << 32)
}

const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;

/// How `path` gets the privilege to map ids, or why it cannot.
fn privs_problem(path: &Path, cap: u32, cap_name: &str) -> Result<String, String> {
    let meta = fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let real = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if let Ok(vfs) = nix::sys::statvfs::statvfs(&real)
        && vfs.flags().contains(nix::sys::statvfs::FsFlags::ST_NOSUID)
    {
        return Err(format!("{} is on a nosuid mount (setuid and file caps are ignored)", path.display()));
    }
    let setuid_root = meta.mode() & 0o4000 != 0 && meta.uid() == 0;
    if setuid_root {
        return Ok(format!("{} setuid root", path.display()));
    }
    match crate::ffi::xattr::lgetxattr(&real, "security.capability") {
        Ok(Some(v)) => match file_caps(&v) {
            Some(bits) if bits & (1 << cap) != 0 => Ok(format!("{} has {cap_name}+ep", path.display())),
            _ => Err(format!("{} has file caps without {cap_name}+ep", path.display())),
        },
        Ok(None) => Err(format!(
            "{} is neither setuid root (mode {:04o}, owner uid {}) nor has file capabilities",
            path.display(),
            meta.mode() & 0o7777,
            meta.uid()
        )),
        Err(e) => Err(format!("{}: reading security.capability: {e}", path.display())),
    }
}

pub(super) fn uidmap_privs(ctx: &Context) -> Verdict {
    let evidence = "stat, lgetxattr(security.capability), statvfs of newuidmap/newgidmap found in PATH";
    let expected = "newuidmap setuid root or cap_setuid+ep; newgidmap setuid root or cap_setgid+ep".to_string();
    let (Some(uidmap), Some(gidmap)) = (ctx.which("newuidmap"), ctx.which("newgidmap")) else {
        return Verdict::skipped("newuidmap/newgidmap not in PATH (see path.tools)", evidence);
    };
    let results = [privs_problem(&uidmap, CAP_SETUID, "cap_setuid"), privs_problem(&gidmap, CAP_SETGID, "cap_setgid")];
    let bad: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    if bad.is_empty() {
        let good: Vec<&String> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        return Verdict::pass(good.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("; "), expected, evidence);
    }
    let observed = bad.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("; ");
    // A copy earlier in PATH than the system one: the user can drop it.
    let system = ["/usr/bin/newuidmap", "/usr/bin/newgidmap"];
    let shadowed = (uidmap != Path::new(system[0]) || gidmap != Path::new(system[1]))
        && privs_problem(Path::new(system[0]), CAP_SETUID, "cap_setuid").is_ok()
        && privs_problem(Path::new(system[1]), CAP_SETGID, "cap_setgid").is_ok();
    let v = Verdict::new(Status::Fail, observed, expected, evidence);
    if shadowed {
        v.fix(
            Who::User,
            format!(
                "{} and {} shadow the working /usr/bin ones: remove them or put /usr/bin first: `export PATH=/usr/bin:$PATH` (podman says `should have setuid or have filecaps setuid`)",
                uidmap.display(),
                gidmap.display()
            ),
        )
    } else {
        v.fix(
            Who::Admin,
            format!(
                "`chmod u+s {0} {1}` (owned by root) or `setcap cap_setuid+ep {0}` and `setcap cap_setgid+ep {1}`; reinstalling the uidmap/shadow-utils package restores them",
                uidmap.display(),
                gidmap.display()
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;
    use super::*;

    #[test]
    fn file_capability_values() {
        // v2, effective, permitted = cap_setuid.
        let mut v2 = vec![0u8; 20];
        v2[..4].copy_from_slice(&0x0200_0001u32.to_le_bytes());
        v2[4..8].copy_from_slice(&(1u32 << CAP_SETUID).to_le_bytes());
        assert_eq!(file_caps(&v2), Some(1 << CAP_SETUID));
        // Not effective: caps are not raised at exec.
        v2[..4].copy_from_slice(&0x0200_0000u32.to_le_bytes());
        assert_eq!(file_caps(&v2), None);
        assert_eq!(file_caps(&[1, 2, 3]), None);
    }

    #[test]
    fn missing_tools_and_a_shadowing_copy() {
        let t = Fixture::new("path");
        let mut ctx = t.healthy();
        ctx.env.insert("PATH".into(), t.root.join("bin").display().to_string());
        let v = tools(&ctx);
        assert_eq!(v.status, Status::Fail);
        assert!(v.observed.contains("newuidmap"), "{}", v.observed);
        assert_eq!(
            uidmap_privs(&ctx).status,
            Status::Skipped(crate::check::SkipReason::Unavailable(
                "newuidmap/newgidmap not in PATH (see path.tools)".into()
            ))
        );
        // A plain copy of newuidmap first in PATH: no setuid, no caps.
        if Path::new("/usr/bin/newuidmap").exists() {
            for n in ["newuidmap", "newgidmap"] {
                use std::os::unix::fs::PermissionsExt;
                let copy = t.root.join("bin").join(n);
                fs::copy(format!("/usr/bin/{n}"), &copy).unwrap();
                fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
            }
            let healthy = t.healthy();
            let v = uidmap_privs(&healthy);
            assert_eq!(v.status, Status::Fail, "{v:?}");
            assert!(v.observed.contains("neither setuid root"), "{}", v.observed);
            let fix = v.fix.unwrap();
            assert!(fix.who == Who::User && fix.text.contains("shadow the working /usr/bin ones"), "{fix:?}");
        }
    }
}
