//! Why the keeper failed, and the exit status each failure maps to.
#![forbid(unsafe_code)]

use std::fmt;
use std::path::PathBuf;

use nix::errno::Errno;

use crate::pam::PamError;
use crate::user::UserError;

/// Exit status when the keeper itself failed, usage errors included (the
/// `env`/`runuser` rule): a spawner can tell it from CMD's own status.
pub const EXIT_KEEPER_FAILED: i32 = crate::exit_code::FAILED;
/// The command exists but cannot be executed.
pub const EXIT_CANNOT_EXECUTE: i32 = crate::exit_code::CANNOT_EXECUTE;
/// The command was not found.
pub const EXIT_NOT_FOUND: i32 = crate::exit_code::NOT_FOUND;

/// A step of the child between fork and exec, as reported to the parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ChildStep {
    Setsid = 1,
    DeathSignal = 2,
    ParentGone = 3,
    Keyring = 4,
    SetGid = 5,
    SetUid = 6,
    VerifyIds = 7,
    Chdir = 8,
    Fds = 9,
    SignalMask = 10,
    Exec = 11,
}

impl ChildStep {
    pub(crate) fn from_u8(b: u8) -> Option<ChildStep> {
        use ChildStep::*;
        [Setsid, DeathSignal, ParentGone, Keyring, SetGid, SetUid, VerifyIds, Chdir, Fds, SignalMask, Exec]
            .into_iter()
            .find(|s| *s as u8 == b)
    }

    fn describe(self) -> &'static str {
        match self {
            ChildStep::Setsid => "setsid",
            ChildStep::DeathSignal => "prctl(PR_SET_PDEATHSIG)",
            ChildStep::ParentGone => "checking the keeper is still the parent",
            ChildStep::Keyring => "joining a fresh session keyring (keyctl)",
            ChildStep::SetGid => "setgid",
            ChildStep::SetUid => "setuid",
            ChildStep::VerifyIds => "verifying the new uid/gid and the groups set up by PAM",
            ChildStep::Chdir => "chdir",
            ChildStep::Fds => "marking inherited fds close-on-exec",
            ChildStep::SignalMask => "resetting the signal mask",
            ChildStep::Exec => "exec",
        }
    }
}

#[derive(Debug)]
pub enum KeeperError {
    NotRoot {
        euid: u32,
    },
    NoCommand,
    /// The keeper's own environment holds variables the dynamic loader or
    /// libc act on (LD_PRELOAD...): a root process must not start so.
    LoaderVariables(Vec<String>),
    /// `--env-fd`: the environment handed over could not be read.
    HandedEnv {
        fd: i32,
        reason: String,
    },
    BadService(String),
    MissingService {
        service: String,
        path: PathBuf,
    },
    User(UserError),
    /// The keeper's config does not manage the user (root, or below
    /// min_uid and not on service_users).
    NotManaged {
        user: String,
        uid: u32,
        why: crate::user::Unmanaged,
        config_file: PathBuf,
    },
    /// pam_jupyter ran with another configuration than the keeper, ignored
    /// the user, or did not run at all: the session was closed again.
    ConfigMismatch(String),
    /// pam_acct_mgmt refused the account (expired, locked...).
    AccountRefused(PamError),
    Pam(PamError),
    /// initgroups (before pam_setcred) failed.
    Groups {
        user: String,
        errno: Errno,
    },
    Setup {
        what: String,
        reason: String,
    },
    /// The child failed between fork and exec.
    Child {
        step: ChildStep,
        errno: Errno,
        detail: String,
    },
    /// The command could not be executed (126) or found (127).
    Exec {
        command: String,
        errno: Errno,
        path: String,
    },
}

impl KeeperError {
    /// The exit status for this failure: 126/127 for exec, else 125.
    pub fn exit_code(&self) -> i32 {
        match self {
            KeeperError::Exec { errno: Errno::ENOENT, .. } => EXIT_NOT_FOUND,
            KeeperError::Exec { .. } => EXIT_CANNOT_EXECUTE,
            _ => EXIT_KEEPER_FAILED,
        }
    }
}

impl fmt::Display for KeeperError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeeperError::NotRoot { euid } => write!(
                f,
                "must be run as root (effective uid is {euid}): the keeper opens a PAM session and switches to \
                 the user; run it from the hub running as root, or with sudo"
            ),
            KeeperError::NoCommand => {
                f.write_str("no command given: jupyter-session exec --user NAME -- CMD [ARGS...]")
            }
            KeeperError::LoaderVariables(names) => write!(
                f,
                "refusing to run as root with {} in the keeper's own environment (the dynamic loader and libc act \
                 on them before any check); start the keeper with a minimal environment, e.g. `env -i \
                 PATH=/usr/sbin:/usr/bin:/sbin:/bin jupyter-session exec ...`, and hand the command's environment \
                 over with --env-fd",
                names.join(", ")
            ),
            KeeperError::HandedEnv { fd, reason } => write!(
                f,
                "--env-fd {fd}: {reason} (the fd must be open, readable and hold NAME=value entries each ended by a \
                 NUL byte, as /proc/PID/environ)"
            ),
            KeeperError::BadService(s) => write!(
                f,
                "'{}' is not a valid PAM service name (letters, digits, '.', '_', '-'; no '/')",
                s.escape_debug()
            ),
            KeeperError::MissingService { service, path } => write!(
                f,
                "PAM service '{service}' has no configuration: {} does not exist (install it, e.g. from \
                 etc/pam.d/jupyterhub.debian or .rhel, or pass --service NAME); refusing to fall back to \
                 /etc/pam.d/other",
                path.display()
            ),
            KeeperError::User(e) => write!(f, "{e}"),
            KeeperError::NotManaged { user, uid, why: crate::user::Unmanaged::Root, config_file: _ } => {
                write!(f, "user '{user}' has uid {uid} (root): the keeper never starts a session for root")
            }
            KeeperError::NotManaged { user, uid, why, config_file } => write!(
                f,
                "user '{user}' (uid {uid}) {why} of {}: refusing to start a session for a system account (add \
                 service_users = [\"{user}\"] to {} if it is a service account meant to run this, and give \
                 pam_jupyter the same file: config={} on its line in the service's PAM file, or no config= when it \
                 is the default file; if pam_jupyter reads another file, give the keeper that file with --config)",
                config_file.display(),
                config_file.display(),
                config_file.display()
            ),
            KeeperError::ConfigMismatch(msg) => f.write_str(msg),
            KeeperError::AccountRefused(e) => write!(f, "account refused: {e}"),
            KeeperError::Pam(e) => write!(f, "{e}"),
            KeeperError::Groups { user, errno } => write!(
                f,
                "initgroups for '{user}' failed: {} ({errno:?}); check the user's groups with `id {user}` and \
                 /etc/group (or the NSS source in /etc/nsswitch.conf)",
                errno.desc()
            ),
            KeeperError::Setup { what, reason } => write!(f, "{what} failed: {reason}"),
            KeeperError::Child { step, errno, detail } => {
                write!(f, "the child failed before exec, at {}: {} ({errno:?}){detail}", step.describe(), errno.desc())
            }
            KeeperError::Exec { command, errno: Errno::ENOENT, path } => {
                write!(f, "{command}: command not found (searched PATH={path})")
            }
            KeeperError::Exec { command, errno, path: _ } => {
                write!(f, "{command}: cannot execute: {} ({errno:?})", errno.desc())
            }
        }
    }
}

impl std::error::Error for KeeperError {}

/// How the command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildEnd {
    Exited(i32),
    Signaled(i32),
}

impl ChildEnd {
    /// The shell convention: the exit code, or 128+N for signal N.
    pub fn exit_code(self) -> i32 {
        match self {
            ChildEnd::Exited(c) => c,
            ChildEnd::Signaled(n) => 128 + n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(ChildEnd::Exited(3).exit_code(), 3);
        assert_eq!(ChildEnd::Signaled(15).exit_code(), 143);
        let nf = KeeperError::Exec { command: "x".into(), errno: Errno::ENOENT, path: "/bin".into() };
        assert_eq!(nf.exit_code(), 127);
        let ne = KeeperError::Exec { command: "x".into(), errno: Errno::EACCES, path: "/bin".into() };
        assert_eq!(ne.exit_code(), 126);
        assert_eq!(KeeperError::NoCommand.exit_code(), 125);
        for b in 1..=11u8 {
            assert_eq!(ChildStep::from_u8(b).map(|s| s as u8), Some(b));
        }
        assert_eq!(ChildStep::from_u8(0), None);
        assert_eq!(ChildStep::from_u8(12), None);
    }
}
