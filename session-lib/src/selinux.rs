//! SELinux labels for runtime directories.
//!
//! A runtime dir made by a process whose domain has no type transition for
//! it, or a tmpfs mounted without `rootcontext=`, gets the wrong type and
//! podman/pasta are denied. So when SELinux is enabled a new `/run/user/UID`
//! gets the label the loaded policy's file contexts give it (`user_tmp_t`
//! on Fedora, `user_runtime_t` on refpolicy): through `rootcontext=` for a
//! tmpfs, through `fsetxattr` on the directory's fd otherwise — never
//! `setfscreatecon` (per-thread state of the PAM host) and never by path.
//! The lookup is libselinux's own (`selabel_lookup_raw`), the one
//! `restorecon` uses, so the label cannot drift from what an admin's
//! `restorecon` would set. With SELinux disabled nothing is looked up and
//! nothing is set.
#![forbid(unsafe_code)]

use std::fmt;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use crate::ffi::selinux as ffi;

/// `S_IFDIR`: runtime dirs are looked up as directories (file_contexts
/// entries carry a file type, e.g. `/run/user/[^/]+ -d`).
const S_IFDIR: u32 = 0o040000;

/// Whether SELinux is enabled in this kernel: selinuxfs says so
/// (`/sys/fs/selinux/enforce` exists) or libselinux does.
pub fn enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists() || ffi::selinux_enabled()
}

/// The label the file contexts at `file_contexts` give a directory at
/// `path`, e.g. `system_u:object_r:user_runtime_t:s0` for `/run/user/1234`
/// under Debian's refpolicy. `Ok(None)` when no entry matches. Works with
/// SELinux disabled (the contexts are not validated against a kernel).
pub fn dir_label_in(file_contexts: &Path, path: &Path) -> Result<Option<String>, LabelError> {
    ffi::lookup_file_label(Some(file_contexts), path, S_IFDIR).map_err(|e| LabelError {
        op: "look up the label of",
        path: path.into(),
        error: e.to_string(),
    })
}

/// Where runtime-dir labels come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labeler {
    /// `None`: the loaded policy's file contexts, and only when SELinux is
    /// enabled. `Some`: this file_contexts, always (tests, other roots).
    file_contexts: Option<PathBuf>,
}

/// What [`Labeler::apply`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// The directory already had the label (e.g. the policy's type
    /// transition gave it): nothing written, no relabel permission needed.
    AlreadyLabelled,
    /// The label was written, replacing `previous`.
    Set { previous: Option<String> },
}

#[derive(Debug, PartialEq, Eq)]
pub struct LabelError {
    op: &'static str,
    path: PathBuf,
    error: String,
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SELinux: cannot {} {}: {}", self.op, self.path.display(), self.error)
    }
}

impl std::error::Error for LabelError {}

impl Labeler {
    /// Labels from the loaded policy, when SELinux is enabled.
    pub fn system() -> Labeler {
        Labeler { file_contexts: None }
    }

    /// Labels from an explicit file_contexts, whether or not SELinux is
    /// enabled here.
    pub fn with_file_contexts(path: impl Into<PathBuf>) -> Labeler {
        Labeler { file_contexts: Some(path.into()) }
    }

    /// The label a new runtime dir at `path` must get; `Ok(None)` when
    /// SELinux is disabled (system labeler) or no file context applies.
    pub fn runtime_dir_label(&self, path: &Path) -> Result<Option<String>, LabelError> {
        match &self.file_contexts {
            Some(fc) => dir_label_in(fc, path),
            None if !enabled() => Ok(None),
            None => ffi::lookup_file_label(None, path, S_IFDIR).map_err(|e| LabelError {
                op: "look up the label of",
                path: path.into(),
                error: e.to_string(),
            }),
        }
    }

    /// Give the directory behind `fd` the label `label`, unless it has it
    /// already. Through the fd only.
    pub fn apply(&self, fd: impl AsFd, path: &Path, label: &str) -> Result<Applied, LabelError> {
        let err = |op, e: std::io::Error| LabelError { op, path: path.into(), error: e.to_string() };
        let previous = ffi::fget_label(fd.as_fd()).map_err(|e| err("read the label of", e))?;
        if previous.as_deref() == Some(label) {
            return Ok(Applied::AlreadyLabelled);
        }
        ffi::fset_label(fd.as_fd(), label).map_err(|e| err("set the label of", e))?;
        Ok(Applied::Set { previous })
    }
}

/// The tmpfs mount option that labels the new tmpfs's root: contexts hold
/// `:` and, with MCS categories, `,`, so the value is quoted.
pub fn rootcontext_option(label: &str) -> Option<String> {
    // A label with a quote or a NUL cannot be passed safely: leave it out
    // (the dir is labelled through the fd instead, if the mount is refused).
    (!label.is_empty() && !label.contains(['"', '\0'])).then(|| format!(",rootcontext=\"{label}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("js-selinux-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn lookup_follows_file_contexts_order_type_and_none() {
        let dir = scratch("fc");
        let fc = dir.join("file_contexts");
        // libselinux's rules: the last matching entry wins, entries with a
        // file type apply only to that type, <<none>> means no label.
        std::fs::write(
            &fc,
            "/run(/.*)?\tsystem_u:object_r:var_run_t:s0\n\
             /run/user\t-d\tsystem_u:object_r:user_runtime_root_t:s0\n\
             /run/user/[^/]+\t-d\tsystem_u:object_r:user_runtime_t:s0\n\
             /run/user/[^/]+/.+\t-d\t<<none>>\n\
             /run/user/[^/]+\t--\tsystem_u:object_r:etc_t:s0\n",
        )
        .unwrap();
        let label = |p: &str| dir_label_in(&fc, Path::new(p)).unwrap();
        assert_eq!(label("/run/user/1234").as_deref(), Some("system_u:object_r:user_runtime_t:s0"));
        assert_eq!(label("/run/user").as_deref(), Some("system_u:object_r:user_runtime_root_t:s0"));
        assert_eq!(label("/run/other").as_deref(), Some("system_u:object_r:var_run_t:s0"));
        assert_eq!(label("/run/user/1234/sub"), None);
        assert_eq!(label("/srv"), None);
        let missing = dir_label_in(&dir.join("missing"), Path::new("/run/user/1")).unwrap_err();
        assert!(missing.to_string().contains("/run/user/1"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rootcontext_is_quoted_and_refuses_quotes() {
        assert_eq!(
            rootcontext_option("system_u:object_r:user_tmp_t:s0:c1,c2").as_deref(),
            Some(",rootcontext=\"system_u:object_r:user_tmp_t:s0:c1,c2\"")
        );
        assert_eq!(rootcontext_option("a\"b"), None);
        assert_eq!(rootcontext_option(""), None);
    }

    #[test]
    fn system_labeler_follows_whether_selinux_is_enabled() {
        let got = Labeler::system().runtime_dir_label(Path::new("/run/user/1234"));
        if enabled() {
            // The loaded policy has a file context for /run/user/UID.
            assert!(matches!(got, Ok(Some(_))), "SELinux is enabled, yet no label: {got:?}");
        } else {
            assert_eq!(got, Ok(None), "SELinux is disabled: nothing to label");
        }
    }
}
