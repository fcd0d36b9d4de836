//! The environment a session gets.
//!
//! `XDG_RUNTIME_DIR` only for the session's own uid and only once the
//! directory validated; `PATH` from the configuration; the D-Bus address
//! only when `$XDG_RUNTIME_DIR/bus` exists. Nothing of another user's
//! environment is ever carried over.
#![forbid(unsafe_code)]

use std::path::Path;

use crate::config::Config;

/// Variables to export, in order.
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
