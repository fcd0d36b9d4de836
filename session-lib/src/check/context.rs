//! What the checks look at: the session's environment and ids, the
//! configuration and the system paths (temporary copies in tests).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::config::Config;
use crate::user::UserInfo;

/// Whose session is being checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The calling process, as the user, in their session.
    Session,
    /// As root, the session a keeper would give this user.
    ForUser,
}

/// The system files and directories the checks read. Defaults are the real
/// ones; tests point them at temporary copies.
#[derive(Clone, Debug)]
pub struct SystemPaths {
    pub subuid: PathBuf,
    pub subgid: PathBuf,
    pub nsswitch: PathBuf,
    pub passwd: PathBuf,
    /// `/proc/self`: status, mountinfo, cgroup.
    pub proc_self: PathBuf,
    pub proc_sys: PathBuf,
    pub cgroup_root: PathBuf,
    pub selinux_root: PathBuf,
    /// `/etc/selinux`: config and the policies' file contexts.
    pub selinux_policy_root: PathBuf,
    pub linger_dir: PathBuf,
    pub dev_tun: PathBuf,
    /// Directories searched for podman's helpers besides PATH.
    pub helper_dirs: Vec<PathBuf>,
    /// `/usr/share/containers`: the distribution's containers.conf, storage.conf.
    pub containers_share: PathBuf,
    /// `/etc/containers`: the admin's.
    pub containers_etc: PathBuf,
    /// `/run/systemd/system`: exists where systemd is the init.
    pub systemd_run: PathBuf,
}

impl Default for SystemPaths {
    fn default() -> Self {
        SystemPaths {
            subuid: "/etc/subuid".into(),
            subgid: "/etc/subgid".into(),
            nsswitch: "/etc/nsswitch.conf".into(),
            passwd: "/etc/passwd".into(),
            proc_self: "/proc/self".into(),
            proc_sys: "/proc/sys".into(),
            cgroup_root: "/sys/fs/cgroup".into(),
            selinux_root: "/sys/fs/selinux".into(),
            selinux_policy_root: "/etc/selinux".into(),
            linger_dir: "/var/lib/systemd/linger".into(),
            dev_tun: "/dev/net/tun".into(),
            // Where podman looks for conmon and network helpers
            // (containers.conf `helper_binaries_dir`), then where
            // distributions put OCI runtimes.
            helper_dirs: [
                "/usr/local/libexec/podman",
                "/usr/local/lib/podman",
                "/usr/libexec/podman",
                "/usr/lib/podman",
                "/usr/local/bin",
                "/usr/local/sbin",
                "/usr/bin",
                "/usr/sbin",
                "/bin",
                "/sbin",
            ]
            .iter()
            .map(PathBuf::from)
            .collect(),
            containers_share: "/usr/share/containers".into(),
            containers_etc: "/etc/containers".into(),
            systemd_run: "/run/systemd/system".into(),
        }
    }
}

/// Everything a check may look at.
#[derive(Clone, Debug)]
pub struct Context {
    pub mode: Mode,
    pub env: BTreeMap<String, String>,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// The passwd entry of `uid`, if it resolves.
    pub user: Option<UserInfo>,
    pub config: Config,
    pub paths: SystemPaths,
    pub deep: bool,
    /// Time limit of the user-namespace probe.
    pub probe_timeout: Duration,
    /// Time limit of `podman info`.
    pub podman_timeout: Duration,
}

impl Context {
    /// The calling process: its environment and credentials.
    pub fn current(config: Config) -> Context {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let mut groups: Vec<u32> = nix::unistd::getgroups().unwrap_or_default().iter().map(|g| g.as_raw()).collect();
        if !groups.contains(&gid) {
            groups.insert(0, gid);
        }
        Context {
            mode: Mode::Session,
            env: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
            uid,
            gid,
            groups,
            user: UserInfo::by_uid(uid).ok(),
            config,
            paths: SystemPaths::default(),
            deep: false,
            probe_timeout: Duration::from_secs(2),
            podman_timeout: Duration::from_secs(30),
        }
    }

    /// The session a keeper (`jupyter-session exec`) would give `user`: its
    /// ids and groups, and the environment the keeper and pam_jupyter set.
    pub fn for_user(config: Config, user: &UserInfo) -> Context {
        // What the keeper would give: the one builder, not a copy of it.
        let env = crate::session_env::predicted_env(&config, user).to_string_map();
        Context {
            mode: Mode::ForUser,
            env,
            uid: user.uid,
            gid: user.gid,
            groups: user.groups().unwrap_or_else(|_| vec![user.gid]),
            user: Some(user.clone()),
            config,
            paths: SystemPaths::default(),
            deep: false,
            probe_timeout: Duration::from_secs(2),
            podman_timeout: Duration::from_secs(30),
        }
    }

    /// The runtime dir podman uses: XDG_RUNTIME_DIR when set (relative or
    /// not: env.runtime_dir.set judges that); when unset, /run/user/UID if
    /// it is the user's directory (podman picks it itself); else `None`
    /// (podman falls back to /tmp/podman-run-UID).
    pub fn runtime_dir(&self) -> Option<PathBuf> {
        match self.var("XDG_RUNTIME_DIR") {
            Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
            _ => {
                let own = self.config.runtime_dir_parent.join(self.uid.to_string());
                std::fs::symlink_metadata(&own).is_ok_and(|m| m.is_dir() && m.uid() == self.uid).then_some(own)
            }
        }
    }

    /// Why the runtime-dir checks have nothing to look at (XDG_RUNTIME_DIR
    /// unset and no dir of the user's).
    pub fn no_runtime_dir(&self) -> String {
        format!(
            "XDG_RUNTIME_DIR unset and no {}/{} of the user's: podman uses /tmp/podman-run-{} (see env.runtime_dir.set)",
            self.config.runtime_dir_parent.display(),
            self.uid,
            self.uid
        )
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        self.env.get(name).map(String::as_str)
    }

    /// The user's name for messages: passwd name, else `uid N`.
    pub fn who(&self) -> String {
        self.user.as_ref().map(|u| u.name.clone()).unwrap_or_else(|| format!("uid {}", self.uid))
    }

    pub fn name_or_placeholder(&self) -> String {
        self.user.as_ref().map(|u| u.name.clone()).unwrap_or_else(|| "<user>".into())
    }

    /// Whether the checked user may read/write/search `meta`, by its mode
    /// bits (not `access(2)`, which would answer for root in `--user` mode).
    pub fn may(&self, meta: &std::fs::Metadata, want: u32) -> bool {
        if self.uid == 0 {
            return true;
        }
        let mode = meta.mode();
        let bits = if meta.uid() == self.uid {
            (mode >> 6) & 7
        } else if self.groups.contains(&meta.gid()) {
            (mode >> 3) & 7
        } else {
            mode & 7
        };
        bits & want == want
    }

    /// A command run as the checked user with the checked environment, in
    /// a fresh session keyring.
    pub fn command(&self, program: &Path) -> Command {
        self.command_with(program, crate::ffi::check::ChildSetup::default())
    }

    /// [`Context::command`], with `setup` (a new session, death with `check`).
    pub fn command_with(&self, program: &Path, setup: crate::ffi::check::ChildSetup) -> Command {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(program);
        crate::ffi::check::prepare_child(&mut cmd, setup);
        cmd.env_clear().envs(&self.env).stdin(Stdio::null());
        if self.mode == Mode::ForUser && nix::unistd::geteuid().is_root() {
            // std drops supplementary groups (setgroups(0)) before setgid/setuid.
            cmd.uid(self.uid).gid(self.gid);
            if let Some(u) = &self.user {
                cmd.current_dir(&u.home);
            }
        }
        cmd
    }

    /// The first `name` in the context's PATH that is a file.
    pub fn which(&self, name: &str) -> Option<PathBuf> {
        let path = self.var("PATH")?;
        path.split(':').filter(|d| d.starts_with('/')).map(|d| Path::new(d).join(name)).find(|p| p.is_file())
    }

    /// `name` in PATH or podman's helper directories.
    pub fn find_helper(&self, name: &str) -> Option<PathBuf> {
        self.which(name).or_else(|| self.paths.helper_dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;
    use std::path::Path;
    use std::process::Command;

    /// The serial of the session keyring `cmd` (python3 calling
    /// keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING)) sees.
    fn session_keyring(cmd: &mut Command) -> Option<String> {
        let code = format!("import ctypes; l = ctypes.CDLL(None); print(l.syscall({}, 0, -3, 0))", libc::SYS_keyctl);
        let out = cmd.args(["-c", &code]).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !text.starts_with('-')).then_some(text)
    }

    #[test]
    fn commands_run_in_a_fresh_session_keyring() {
        let python = Path::new("/usr/bin/python3");
        let t = Fixture::new("keys");
        let ctx = t.healthy();
        let ours = session_keyring(&mut Command::new(python)).expect("our session keyring");
        let theirs = session_keyring(&mut ctx.command(python)).expect("the child's session keyring");
        assert_ne!(ours, theirs, "the child must not share this process's session keyring");
        let again = session_keyring(&mut ctx.command(python)).unwrap();
        assert_ne!(theirs, again, "each child gets its own");
    }
}
