//! The catalogue: every check, its id, severity and prerequisites, in
//! dependency order.
#![forbid(unsafe_code)]

use std::fmt;

use super::model::{Needs, Severity, Verdict};
use super::{Context, env, identity, kernel, path, podman, selinux, session, subid, system};

/// One entry of the catalogue.
pub struct Check {
    pub id: &'static str,
    /// What is checked, in a few words.
    pub what: &'static str,
    /// Status when it fails at its worst.
    pub severity: Severity,
    /// Checks that must not have failed for this one to mean anything.
    pub requires: &'static [&'static str],
    pub needs: Needs,
    pub(super) run: fn(&Context) -> Verdict,
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check").field("id", &self.id).finish()
    }
}

/// Every check, in dependency order (a check only requires earlier ones).
pub fn catalogue() -> &'static [Check] {
    use Needs::*;
    use Severity::{Fail as F, Info as I, Warn as W};
    macro_rules! c {
        ($id:literal, $what:literal, $sev:expr, [$($req:literal),*], $needs:expr, $run:path) => {
            Check { id: $id, what: $what, severity: $sev, requires: &[$($req),*], needs: $needs, run: $run }
        };
    }
    static CATALOGUE: &[Check] = &[
        c!("id.user", "not root; resolves; $USER/$LOGNAME match", F, [], Nothing, identity::user),
        c!("id.gid", "gid is the passwd primary gid", F, ["id.user"], Nothing, identity::gid),
        c!("env.home", "HOME = passwd home, exists, owned, writable", F, ["id.user"], Nothing, env::home),
        c!("env.runtime_dir.set", "XDG_RUNTIME_DIR set and absolute", F, [], Nothing, env::runtime_dir_set),
        c!(
            "env.runtime_dir.owner",
            "runtime dir: a dir, owned, 0700",
            F,
            ["env.runtime_dir.set"],
            Nothing,
            env::runtime_dir_owner
        ),
        c!(
            "env.runtime_dir.fs",
            "runtime dir: /run/user/UID on tmpfs, space",
            W,
            ["env.runtime_dir.owner"],
            Nothing,
            env::runtime_dir_fs
        ),
        c!(
            "env.runtime_dir.podman",
            "podman's dirs in the runtime dir are the user's",
            F,
            ["env.runtime_dir.owner"],
            Nothing,
            env::runtime_dir_podman
        ),
        c!("env.config_dirs", "config and data dirs owned by the user", F, ["env.home"], Nothing, env::config_dirs),
        c!("env.leak", "no variables inherited from another user", W, [], Nothing, env::leak),
        c!("path.tools", "podman, newuidmap, newgidmap, conmon, OCI runtime", F, [], Nothing, path::tools),
        c!(
            "engine.runtime",
            "the OCI runtime containers.conf names is installed",
            F,
            [],
            Nothing,
            path::engine_runtime
        ),
        c!("uidmap.privs", "newuidmap/newgidmap setuid root or file caps", F, [], Nothing, path::uidmap_privs),
        c!("proc.nnp", "NoNewPrivs is off", F, [], Nothing, kernel::nnp),
        c!("proc.capbnd", "bounding set keeps SETUID, SETGID, SYS_ADMIN", F, [], Nothing, kernel::capbnd),
        c!("kernel.userns", "unprivileged user namespaces work", F, [], Nothing, kernel::userns),
        c!("subid.ranges", ">= 65536 subuids and subgids", F, ["id.user"], Nothing, subid::ranges),
        c!("subid.overlap", "ranges overlap no other user or real id", F, ["subid.ranges"], Root, subid::overlap),
        c!(
            "subid.live",
            "podman's pause process maps the ranges",
            W,
            ["subid.ranges", "env.runtime_dir.owner"],
            Nothing,
            subid::live
        ),
        c!("session.registered", "a live session record for this uid", W, [], Root, session::registered),
        c!("session.managed", "min_uid / service_users manage the user", W, ["id.user"], Nothing, session::managed),
        c!("session.linger", "linger state of the user", I, ["id.user"], Nothing, session::linger),
        c!("session.bus", "a usable D-Bus session bus", W, [], Nothing, session::bus),
        c!("cgroup.v2", "/sys/fs/cgroup is cgroup2", W, [], Nothing, system::cgroup_v2),
        c!(
            "cgroup.controllers",
            "own cgroup delegated with memory, pids",
            W,
            ["cgroup.v2"],
            Nothing,
            system::cgroup_controllers
        ),
        c!("storage.fs", "graphroot on a local filesystem", F, ["env.home"], Nothing, system::storage_fs),
        c!(
            "storage.writable",
            "graphroot/runroot writable by the user",
            F,
            ["env.home"],
            Nothing,
            system::storage_writable
        ),
        c!(
            "storage.mountopts",
            "graphroot and HOME not noexec/nodev",
            F,
            ["env.home"],
            Nothing,
            system::storage_mountopts
        ),
        c!(
            "storage.bootid",
            "podman's state is from this boot",
            W,
            ["env.runtime_dir.owner"],
            Nothing,
            system::storage_bootid
        ),
        c!("net.helper", "pasta or slirp4netns; /dev/net/tun usable", F, [], Nothing, system::net_helper),
        c!("mount.shared", "/ is a shared mount", W, [], Nothing, system::mount_shared),
        c!(
            "selinux.runtime_dir",
            "runtime dir has the policy's label",
            W,
            ["env.runtime_dir.owner"],
            Nothing,
            selinux::runtime_dir
        ),
        c!(
            "podman.info",
            "`podman info` works rootless",
            F,
            ["id.user", "path.tools", "env.runtime_dir.owner", "subid.ranges"],
            Deep,
            podman::info
        ),
    ];
    CATALOGUE
}

/// Look a check up by id.
pub fn by_id(id: &str) -> Option<&'static Check> {
    catalogue().iter().find(|c| c.id == id)
}
