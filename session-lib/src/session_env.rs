//! The one builder of a session's environment, used by the PAM module
//! (what pam_jupyter exports), the keeper (what the user's command gets)
//! and `check --user` (what the keeper would give), so the three cannot
//! drift apart.
//!
//! `XDG_RUNTIME_DIR` only for the session's own uid and only once the
//! directory validated; `PATH` from the configuration; the D-Bus address
//! only when `$XDG_RUNTIME_DIR/bus` exists. Nothing of another user's
//! environment is ever carried over.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::config::{Config, DEFAULT_PATH};
use crate::runtime_dir::RuntimeDirs;
use crate::user::UserInfo;

/// Variables only PAM may set for the command: a value handed over by the
/// caller (e.g. root's `/run/user/0`) is dropped, so a stack without
/// pam_jupyter leaves them unset instead of pointing at someone else's.
pub const PAM_ONLY: [&str; 2] = ["XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS"];

/// The variables pam_jupyter exports for a session, in order.
pub fn session_env(config: &Config, runtime_dir: Option<&Path>) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if let Some(dir) = runtime_dir {
        env.push(("XDG_RUNTIME_DIR".to_string(), dir.display().to_string()));
        if is_socket(&dir.join("bus")) {
            env.push(("DBUS_SESSION_BUS_ADDRESS".to_string(), format!("unix:path={}/bus", dir.display())));
        }
    }
    if !config.path.is_empty() {
        env.push(("PATH".to_string(), config.path.clone()));
    }
    env
}

fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// An ordered environment where a later `set` replaces an earlier value in
/// place. Names are non-empty and contain no `=` or NUL; values no NUL.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct EnvList(Vec<(OsString, OsString)>);

impl EnvList {
    /// Set `name`; an invalid name or value (empty, `=` or NUL in the name,
    /// NUL in the value) is ignored: it could not reach execve anyway.
    pub fn set(&mut self, name: impl Into<OsString>, value: impl Into<OsString>) {
        let (name, value) = (name.into(), value.into());
        if name.is_empty() || name.as_bytes().iter().any(|b| matches!(b, b'=' | 0)) || value.as_bytes().contains(&0) {
            return;
        }
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(k, _)| k != name);
    }

    pub fn get(&self, name: &str) -> Option<&OsStr> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_os_str())
    }

    pub fn pairs(&self) -> &[(OsString, OsString)] {
        &self.0
    }

    /// `NAME=value` byte strings, sorted: the form to compare two
    /// environments byte for byte.
    pub fn sorted_entries(&self) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = self.0.iter().map(|(k, v)| entry(k, v)).collect();
        out.sort();
        out
    }

    /// As a map of (lossily converted) strings.
    pub fn to_string_map(&self) -> BTreeMap<String, String> {
        self.0.iter().map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned())).collect()
    }

    /// For execve: `NAME=value` C strings in order (`set` guarantees no NUL).
    pub fn to_c(&self) -> Vec<CString> {
        self.0.iter().filter_map(|(k, v)| CString::new(entry(k, v)).ok()).collect()
    }
}

fn entry(k: &OsStr, v: &OsStr) -> Vec<u8> {
    let mut kv = k.as_bytes().to_vec();
    kv.push(b'=');
    kv.extend_from_slice(v.as_bytes());
    kv
}

/// The environment of the user's command in a session: `handed` (what the
/// caller handed over explicitly; never the keeper's own environment)
/// without [`PAM_ONLY`], then USER/LOGNAME/HOME/SHELL of the user, then the
/// PAM environment (later wins); PATH [`DEFAULT_PATH`] if still unset.
pub fn command_env(handed: &[(OsString, OsString)], user: &UserInfo, pam_env: &[(String, String)]) -> EnvList {
    let mut env = EnvList::default();
    for (k, v) in handed {
        env.set(k.clone(), v.clone());
    }
    for name in PAM_ONLY {
        env.remove(name);
    }
    env.set("USER", &user.name);
    env.set("LOGNAME", &user.name);
    env.set("HOME", user.home.as_os_str());
    env.set("SHELL", user.shell.as_os_str());
    for (k, v) in pam_env {
        env.set(k, v);
    }
    if env.get("PATH").is_none() {
        env.set("PATH", DEFAULT_PATH);
    }
    env
}

/// What the keeper gives `user`'s command when nothing is handed over and
/// pam_jupyter (configured by `config`) is the only module that exports
/// variables: the prediction `check --user` works with.
pub fn predicted_env(config: &Config, user: &UserInfo) -> EnvList {
    let dir = RuntimeDirs::new(config).path_for(user.uid);
    command_env(&[], user, &session_env(config, Some(&dir)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserInfo {
        UserInfo { name: "alice".into(), uid: 1234, gid: 1234, home: "/home/alice".into(), shell: "/bin/bash".into() }
    }

    #[test]
    fn runtime_dir_path_and_bus() {
        let dir = std::env::temp_dir().join(format!("js-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = Config::default();
        let env = session_env(&config, Some(&dir));
        assert_eq!(env[0], ("XDG_RUNTIME_DIR".into(), dir.display().to_string()));
        assert_eq!(env[1], ("PATH".into(), crate::config::DEFAULT_PATH.into()));
        assert_eq!(env.len(), 2, "no bus socket, no DBUS address");
        std::fs::write(dir.join("bus"), "").unwrap();
        assert_eq!(session_env(&config, Some(&dir)).len(), 2, "a plain file is not a bus");
        std::fs::remove_file(dir.join("bus")).unwrap();
        let _l = std::os::unix::net::UnixListener::bind(dir.join("bus")).unwrap();
        let env = session_env(&config, Some(&dir));
        assert_eq!(env[1].0, "DBUS_SESSION_BUS_ADDRESS");
        let none = session_env(&Config { path: String::new(), ..Config::default() }, None);
        assert!(none.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn command_env_order_and_pam_only() {
        let handed = vec![
            ("USER".into(), "root".into()),
            ("JUPYTERHUB_API_TOKEN".into(), "t".into()),
            ("XDG_RUNTIME_DIR".into(), "/run/user/0".into()),
            ("DBUS_SESSION_BUS_ADDRESS".into(), "unix:path=/run/user/0/bus".into()),
        ];
        let env = command_env(&handed, &user(), &[("HOME".into(), "/h".into())]);
        assert_eq!(env.get("USER"), Some(OsStr::new("alice")));
        assert_eq!(env.get("LOGNAME"), Some(OsStr::new("alice")));
        assert_eq!(env.get("HOME"), Some(OsStr::new("/h")), "PAM wins");
        assert_eq!(env.get("SHELL"), Some(OsStr::new("/bin/bash")));
        assert_eq!(env.get("JUPYTERHUB_API_TOKEN"), Some(OsStr::new("t")));
        assert_eq!(env.get("XDG_RUNTIME_DIR"), None, "only PAM sets it");
        assert_eq!(env.get("DBUS_SESSION_BUS_ADDRESS"), None, "only PAM sets it");
        assert_eq!(env.get("PATH"), Some(OsStr::new(DEFAULT_PATH)));
        assert_eq!(env.pairs()[0].0, "USER", "replaced in place");
        let pam = [("XDG_RUNTIME_DIR".to_string(), "/run/user/1234".to_string())];
        let env = command_env(&handed, &user(), &pam);
        assert_eq!(env.get("XDG_RUNTIME_DIR"), Some(OsStr::new("/run/user/1234")));
        let with_path = command_env(&[("PATH".into(), "/opt/bin".into())], &user(), &[]);
        assert_eq!(with_path.get("PATH"), Some(OsStr::new("/opt/bin")));
    }

    #[test]
    fn invalid_entries_are_dropped() {
        let mut env = EnvList::default();
        env.set("", "x");
        env.set("A=B", "x");
        env.set("A\0", "x");
        env.set("B", "x\0y");
        assert!(env.pairs().is_empty(), "{env:?}");
    }

    #[test]
    fn prediction_is_the_module_env_over_the_user() {
        let config = Config { runtime_dir_parent: "/nonexistent-js/user".into(), ..Config::default() };
        let env = predicted_env(&config, &user());
        let want: Vec<Vec<u8>> = vec![
            b"HOME=/home/alice".to_vec(),
            b"LOGNAME=alice".to_vec(),
            format!("PATH={DEFAULT_PATH}").into_bytes(),
            b"SHELL=/bin/bash".to_vec(),
            b"USER=alice".to_vec(),
            b"XDG_RUNTIME_DIR=/nonexistent-js/user/1234".to_vec(),
        ];
        assert_eq!(env.sorted_entries(), want);
    }
}
