//! `env`: the session's environment for the calling user, as Slurm's
//! TaskProlog reads it (`export NAME=value` lines, taken literally: no
//! quoting). Runs as the user, needs no root: the registry is root's, so
//! what is checked is the runtime dir itself (it exists, is a directory,
//! not a symlink, owned by the caller, no access for group or others).
#![forbid(unsafe_code)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use session_lib::config::Config;
use session_lib::runtime_dir::RuntimeDirs;
use session_lib::session_env::session_env;

#[derive(clap::Args)]
#[command(after_help = "Prints nothing (and exits 0) for root and users the config does not manage; \
XDG_RUNTIME_DIR only for a dir that exists and is the caller's (0700). Exit 125 for a value Slurm cannot \
carry (a newline) or a broken config.

Example (Slurm's TaskProlog, as the job's user; etc/slurm/taskprolog.sh):
  jupyter-session env")]
pub struct Args {
    /// Config file (default /etc/security/jupyter-session.toml if it exists)
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

const FAILED: i32 = session_lib::exit_code::FAILED;

/// Whether `dir` is a runtime dir `uid` may use: a real directory of its own, 0700.
fn usable(dir: &Path, uid: u32) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    if meta.uid() != uid {
        return Err(format!("{} is owned by uid {}, not {uid}", dir.display(), meta.uid()));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!("{} has mode {:04o}, not 0700", dir.display(), meta.mode() & 0o7777));
    }
    Ok(())
}

/// The `export` lines for these variables; a value Slurm cannot carry
/// (a newline ends its line) is refused, naming the variable.
pub fn export_lines(env: &[(String, String)]) -> Result<Vec<String>, String> {
    env.iter()
        .map(|(name, value)| {
            if value.contains(['\n', '\r', '\0']) {
                Err(format!(
                    "{name}'s value holds a newline, which a Slurm TaskProlog cannot pass on: fix the `path` setting (or runtime dir) in the config"
                ))
            } else {
                Ok(format!("export {name}={value}"))
            }
        })
        .collect()
}

pub fn run(args: Args) -> i32 {
    let uid = nix::unistd::getuid().as_raw();
    let config = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("jupyter-session: {e}");
            return FAILED;
        }
    };
    // The same rule as the module's (min_uid, service_users, never root).
    let managed = match session_lib::user::UserInfo::by_uid(uid) {
        Ok(user) => config.manages(&user),
        Err(_) => session_lib::user::managed(uid, config.min_uid),
    };
    if let Err(why) = managed {
        eprintln!("jupyter-session: uid {uid} {why}: no session, nothing to export");
        return 0;
    }
    let dir = RuntimeDirs::new(&config).path_for(uid);
    let runtime_dir = match usable(&dir, uid) {
        Ok(()) => Some(dir.as_path()),
        Err(why) => {
            eprintln!(
                "jupyter-session: no XDG_RUNTIME_DIR exported: {why} (is the session open? see `jupyter-session check`)"
            );
            None
        }
    };
    match export_lines(&session_env(&config, runtime_dir)) {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            0
        }
        Err(e) => {
            eprintln!("jupyter-session: {e}");
            FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_unquoted_and_newlines_refused() {
        let env = vec![("XDG_RUNTIME_DIR".into(), "/run/user/1005".into()), ("PATH".into(), "/usr/bin:/bin".into())];
        assert_eq!(
            export_lines(&env).unwrap(),
            vec!["export XDG_RUNTIME_DIR=/run/user/1005", "export PATH=/usr/bin:/bin"]
        );
        let bad = vec![("PATH".into(), "/usr/bin\nexport EVIL=1".into())];
        assert!(export_lines(&bad).unwrap_err().contains("PATH's value holds a newline"));
    }

    #[test]
    fn only_own_private_dirs_are_usable() {
        use std::os::unix::fs::PermissionsExt;
        let me = nix::unistd::getuid().as_raw();
        let d = std::env::temp_dir().join(format!("js-env-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(usable(&d, me), Ok(()));
        assert!(usable(&d, me + 1).unwrap_err().contains("owned by uid"));
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(usable(&d, me).unwrap_err().contains("not 0700"));
        let link = d.with_extension("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&d, &link).unwrap();
        assert!(usable(&link, me).unwrap_err().contains("not a directory"));
        assert!(usable(&d.join("missing"), me).is_err());
        let _ = std::fs::remove_file(&link);
        let _ = std::fs::remove_dir_all(&d);
    }
}
