//! selinux.runtime_dir: the runtime dir's label under an enforcing policy.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use super::{Context, Status, Verdict, Who, read_text};

/// The type the policy's file contexts give the runtime dir of `uid`,
/// looked up by libselinux itself (the same answer `restorecon` gives:
/// file_contexts with its .homedirs and .local companions and the policy's
/// own ordering rules); Fedora's user_tmp_t where the policy has no entry.
fn expected_type(policy_root: &Path, uid: u32) -> (String, String) {
    let config = read_text(&policy_root.join("config")).unwrap_or_default();
    let name = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("SELINUXTYPE="))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "targeted".into());
    let file_contexts = policy_root.join(&name).join("contexts/files/file_contexts");
    let dir = PathBuf::from(format!("/run/user/{uid}"));
    match crate::selinux::dir_label_in(&file_contexts, &dir) {
        Ok(Some(label)) => match label_type(&label) {
            Some(t) => (t.to_string(), file_contexts.display().to_string()),
            None => ("user_tmp_t".into(), "default user_tmp_t".into()),
        },
        _ => ("user_tmp_t".into(), "default user_tmp_t".into()),
    }
}

/// `user:role:type:level` → `type`.
fn label_type(label: &str) -> Option<&str> {
    label.trim_end_matches('\0').split(':').nth(2)
}

pub(super) fn runtime_dir(ctx: &Context) -> Verdict {
    let enforce = ctx.paths.selinux_root.join("enforce");
    let Some(dir) = ctx.runtime_dir() else { return Verdict::skipped(ctx.no_runtime_dir(), "$XDG_RUNTIME_DIR") };
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
    let (want, source) = expected_type(&ctx.paths.selinux_policy_root, ctx.uid);
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
    fn expected_type_from_the_policy_file_contexts() {
        let t = Fixture::new("sepolicy");
        let root = t.root.join("etc/selinux");
        let files = root.join("default/contexts/files");
        std::fs::create_dir_all(&files).unwrap();
        std::fs::write(root.join("config"), "SELINUX=enforcing\nSELINUXTYPE=default\n").unwrap();
        assert_eq!(expected_type(&root, 1000).0, "user_tmp_t", "no file_contexts: the Fedora default");
        // Debian's refpolicy, as shipped in selinux-policy-default.
        std::fs::write(
            files.join("file_contexts"),
            "/run/user/[^/]+\t-d\tsystem_u:object_r:user_runtime_t:s0\n/run/user/[^/]+/.+\t-d\t<<none>>\n/run/user\t-d\tsystem_u:object_r:user_runtime_root_t:s0\n",
        )
        .unwrap();
        assert_eq!(expected_type(&root, 1000).0, "user_runtime_t");
        std::fs::write(files.join("file_contexts.homedirs"), "/run/user/1000\t-d\tstaff_u:object_r:user_tmp_t:s0\n")
            .unwrap();
        assert_eq!(expected_type(&root, 1000).0, "user_tmp_t");
    }

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
