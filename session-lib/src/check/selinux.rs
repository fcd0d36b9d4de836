//! selinux.runtime_dir: the runtime dir's label under an enforcing policy.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use super::{Context, Status, Verdict, Who, read_text};

/// The type the policy's file contexts give `/run/user/UID`: the entry for
/// the runtime dirs in file_contexts, else the refpolicy/Fedora default.
fn expected_type(policy_root: &Path) -> (String, String) {
    let config = read_text(Path::new("/etc/selinux/config")).unwrap_or_default();
    let name = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("SELINUXTYPE="))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "targeted".into());
    let fc = policy_root.join(&name).join("contexts/files/file_contexts");
    let from_policy = read_text(&fc).and_then(|text| {
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let spec = *f.first()?;
            if !(spec.starts_with("/run/user/") && !spec["/run/user/".len()..].contains('/') && spec.len() > 10) {
                return None;
            }
            label_type(f.last()?).map(str::to_string)
        })
    });
    match from_policy {
        Some(t) => (t, fc.display().to_string()),
        None => ("user_tmp_t".into(), "default user_tmp_t".into()),
    }
}

/// `user:role:type:level` → `type`.
fn label_type(label: &str) -> Option<&str> {
    label.trim_end_matches('\0').split(':').nth(2)
}

pub(super) fn runtime_dir(ctx: &Context) -> Verdict {
    let enforce = ctx.paths.selinux_root.join("enforce");
    let dir = PathBuf::from(ctx.var("XDG_RUNTIME_DIR").unwrap_or_default());
    let evidence =
        format!("{}, lgetxattr(security.selinux) of {}, the policy's file_contexts", enforce.display(), dir.display());
    match read_text(&enforce).map(|t| t.trim().to_string()) {
        None => return Verdict::new(Status::Info, "SELinux not enabled", "labels only matter under SELinux", evidence),
        Some(v) if v != "1" => {
            return Verdict::new(
                Status::Info,
                "SELinux permissive: labels are not enforced",
                "enforcing or not",
                evidence,
            );
        }
        Some(_) => {}
    }
    let (want, source) = expected_type(Path::new("/etc/selinux"));
    let expected = format!("type {want} ({source})");
    let label = match crate::ffi::xattr::lgetxattr(&dir, "security.selinux") {
        Ok(Some(v)) => String::from_utf8_lossy(&v).trim_end_matches('\0').to_string(),
        Ok(None) => String::from("(no label)"),
        Err(e) => return Verdict::skipped(format!("cannot read the label of {}: {e}", dir.display()), evidence),
    };
    if label_type(&label) == Some(want.as_str()) {
        return Verdict::pass(label, expected, evidence);
    }
    Verdict::new(Status::Warn, label, expected, evidence).fix(
        Who::Admin,
        format!("`restorecon -v {}` (and load the jupyter_session policy module so new dirs get it)", dir.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;
    use super::*;

    #[test]
    fn labels_and_disabled_selinux() {
        assert_eq!(label_type("unconfined_u:object_r:user_tmp_t:s0\0"), Some("user_tmp_t"));
        let t = Fixture::new("selinux");
        let mut ctx = t.healthy();
        ctx.paths.selinux_root = t.root.join("no-selinux");
        let v = runtime_dir(&ctx);
        assert_eq!((v.status, v.observed.as_str()), (Status::Info, "SELinux not enabled"));
        std::fs::create_dir_all(t.root.join("selinux")).unwrap();
        std::fs::write(t.root.join("selinux/enforce"), "0").unwrap();
        ctx.paths.selinux_root = t.root.join("selinux");
        assert!(runtime_dir(&ctx).observed.contains("permissive"));
        // "Enforcing" on a kernel without SELinux: the dir has no label.
        if !Path::new("/sys/fs/selinux").exists() {
            std::fs::write(t.root.join("selinux/enforce"), "1").unwrap();
            let v = runtime_dir(&ctx);
            assert!(v.status == Status::Warn && v.observed == "(no label)", "{v:?}");
            assert!(v.fix.unwrap().text.contains("restorecon -v"));
        }
    }
}
