//! `--explain`: which checks a podman error message points to.
#![forbid(unsafe_code)]

/// One known podman (or crun, slirp4netns, newuidmap) message.
#[derive(Debug)]
pub struct Explanation {
    /// Every fragment must occur in the message (case-insensitive).
    pub fragments: &'static [&'static str],
    /// A readable form of the message, for output.
    pub message: &'static str,
    pub checks: &'static [&'static str],
}

/// The catalogue's table of error strings.
pub const EXPLANATIONS: &[Explanation] = &[
    Explanation {
        fragments: &["podman.sock", "connection refused"],
        message: "dial unix /run/user/N/podman/podman.sock: connect: connection refused",
        checks: &["session.managed"],
    },
    Explanation {
        fragments: &["connectionrefusederror"],
        message: "ConnectionRefusedError (a client of podman's API socket, e.g. DockerSpawner, and the service is down)",
        checks: &["session.managed"],
    },
    Explanation {
        fragments: &["xdg_runtime_dir directory", "is not owned by the current user"],
        message: "XDG_RUNTIME_DIR directory \"...\" is not owned by the current user",
        checks: &["env.runtime_dir.owner"],
    },
    Explanation {
        fragments: &["mkdir /run/user/", "permission denied"],
        message: "mkdir /run/user/N: permission denied",
        checks: &["env.runtime_dir.set", "env.runtime_dir.owner", "env.runtime_dir.podman"],
    },
    Explanation {
        fragments: &["temporary directory must be an absolute path"],
        message: "temporary directory must be an absolute path",
        checks: &["env.runtime_dir.set"],
    },
    Explanation {
        fragments: &["set sticky bit on: chmod"],
        message: "set sticky bit on: chmod $XDG_RUNTIME_DIR/libpod: operation not permitted",
        checks: &["env.runtime_dir.podman"],
    },
    Explanation {
        fragments: &["creating runtime static files directory", "permission denied"],
        message: "creating runtime static files directory: mkdir ...: permission denied",
        checks: &["storage.writable", "env.home"],
    },
    Explanation {
        fragments: &["read-only file system"],
        message: "...: read-only file system",
        checks: &["env.home", "storage.writable"],
    },
    Explanation {
        fragments: &["no space left on device"],
        message: "no space left on device",
        checks: &["env.runtime_dir.fs", "storage.writable"],
    },
    Explanation {
        fragments: &["libpod/tmp/pause.pid: no such file or directory"],
        message: "open $XDG_RUNTIME_DIR/libpod/tmp/pause.pid: no such file or directory (a full runtime dir)",
        checks: &["env.runtime_dir.fs", "env.runtime_dir.podman"],
    },
    Explanation {
        fragments: &["/.config/containers/storage.conf: permission denied"],
        message: "stat ~/.config/containers/storage.conf: permission denied",
        checks: &["env.home", "env.config_dirs"],
    },
    Explanation {
        fragments: &["default oci runtime", "not found"],
        message: "default OCI runtime \"NAME\" not found",
        checks: &["engine.runtime"],
    },
    Explanation {
        fragments: &["should have setuid or have filecaps setuid"],
        message: "newuidmap should have setuid or have filecaps setuid",
        checks: &["uidmap.privs"],
    },
    Explanation {
        fragments: &["cannot set up namespace using", "newuidmap"],
        message: "cannot set up namespace using \".../newuidmap\": exit status 1",
        checks: &["uidmap.privs", "proc.nnp", "proc.capbnd", "id.gid", "subid.ranges"],
    },
    Explanation {
        fragments: &["cannot re-exec process"],
        message: "cannot re-exec process",
        checks: &["kernel.userns", "uidmap.privs", "proc.nnp"],
    },
    Explanation {
        fragments: &["includes the user uid"],
        message: "subuid range includes the user UID",
        checks: &["subid.ranges"],
    },
    Explanation {
        fragments: &["\"xdg_runtime_dir\" is not set"],
        message: "dbus-daemon: \"XDG_RUNTIME_DIR\" is not set",
        checks: &["env.runtime_dir.set"],
    },
    Explanation {
        fragments: &["is owned by uid", "not our uid"],
        message: "dbus-daemon: $XDG_RUNTIME_DIR is owned by uid 0, not our uid N",
        checks: &["env.runtime_dir.owner"],
    },
    Explanation {
        fragments: &["failed to connect to bus: no medium found"],
        message: "systemctl --user: Failed to connect to bus: No medium found",
        checks: &["env.runtime_dir.set", "session.bus"],
    },
    Explanation {
        fragments: &["create directory", "/run/user/"],
        message: "crun: create directory /run/user/N",
        checks: &["env.runtime_dir.set", "env.runtime_dir.owner"],
    },
    Explanation {
        fragments: &["creating tmpdir"],
        message: "creating tmpdir",
        checks: &["env.runtime_dir.set", "env.runtime_dir.owner"],
    },
    Explanation {
        fragments: &["cannot find uid/gid for user"],
        message: "cannot find UID/GID for user",
        checks: &["subid.ranges", "id.user"],
    },
    Explanation {
        fragments: &["no subuid ranges found"],
        message: "no subuid ranges found",
        checks: &["subid.ranges", "id.user"],
    },
    Explanation {
        fragments: &["potentially insufficient uids or gids"],
        message: "potentially insufficient UIDs or GIDs",
        checks: &["subid.ranges", "subid.live"],
    },
    Explanation {
        fragments: &["there might not be enough ids"],
        message: "there might not be enough IDs",
        checks: &["subid.ranges", "subid.live"],
    },
    Explanation {
        fragments: &["newuidmap", "executable file not found in $path"],
        message: "\"newuidmap\": executable file not found in $PATH",
        checks: &["path.tools"],
    },
    Explanation {
        fragments: &["newgidmap", "executable file not found in $path"],
        message: "\"newgidmap\": executable file not found in $PATH",
        checks: &["path.tools"],
    },
    Explanation {
        fragments: &["write to uid_map failed", "operation not permitted"],
        message: "newuidmap: write to uid_map failed: Operation not permitted",
        checks: &["uidmap.privs", "proc.nnp", "proc.capbnd"],
    },
    Explanation {
        fragments: &["write to gid_map failed", "operation not permitted"],
        message: "newgidmap: write to gid_map failed: Operation not permitted",
        checks: &["uidmap.privs", "proc.nnp", "proc.capbnd"],
    },
    Explanation {
        fragments: &["target process", "is owned by a different user"],
        message: "Target process is owned by a different user",
        checks: &["id.gid"],
    },
    Explanation {
        fragments: &["cannot clone: operation not permitted"],
        message: "cannot clone: Operation not permitted",
        checks: &["kernel.userns"],
    },
    Explanation {
        fragments: &["user namespaces are not enabled"],
        message: "user namespaces are not enabled",
        checks: &["kernel.userns"],
    },
    Explanation {
        fragments: &["there is no systemd user session"],
        message: "cgroupv2 manager is set to systemd but there is no systemd user session",
        checks: &["session.bus"],
    },
    Explanation {
        fragments: &["is not a shared mount"],
        message: "\"/\" is not a shared mount",
        checks: &["mount.shared"],
    },
    Explanation {
        fragments: &["network file system with user namespaces is not supported"],
        message: "a network file system with user namespaces is not supported",
        checks: &["storage.fs"],
    },
    Explanation {
        fragments: &["unhandled reboot has occurred"],
        message: "unhandled reboot has occurred",
        checks: &["storage.bootid", "env.runtime_dir.fs"],
    },
    Explanation {
        fragments: &["cgroups in hybrid mode not supported"],
        message: "cgroups in hybrid mode not supported",
        checks: &["cgroup.v2"],
    },
    Explanation {
        fragments: &["/dev/net/tun", "permission denied"],
        message: "slirp4netns failed: open(\"/dev/net/tun\"): Permission denied",
        checks: &["net.helper"],
    },
];

/// The known messages found in `text` (several lines may each match) and
/// the check ids they point to, without duplicates, in table order.
pub fn explain(text: &str) -> (Vec<&'static Explanation>, Vec<&'static str>) {
    let lower = text.to_lowercase();
    let matched: Vec<&Explanation> =
        EXPLANATIONS.iter().filter(|e| e.fragments.iter().all(|f| lower.contains(f))).collect();
    let mut ids = Vec::new();
    for e in &matched {
        for id in e.checks {
            if !ids.contains(id) {
                ids.push(*id);
            }
        }
    }
    (matched, ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mapped_id_is_a_check() {
        for e in EXPLANATIONS {
            for id in e.checks {
                assert!(super::super::by_id(id).is_some(), "{id} in {:?}", e.message);
            }
        }
    }

    #[test]
    fn real_messages_map_to_their_checks() {
        let cases: &[(&str, &[&str])] = &[
            (
                "Error: error creating runtime static files: XDG_RUNTIME_DIR directory \"/run/user/0\" is not owned by the current user",
                &["env.runtime_dir.owner"],
            ),
            (
                "Error: mkdir /run/user/1000: permission denied",
                &["env.runtime_dir.set", "env.runtime_dir.owner", "env.runtime_dir.podman"],
            ),
            (
                "Error: cannot find UID/GID for user alice: no subuid ranges found for user \"alice\" in /etc/subuid - check rootless mode in man pages.",
                &["subid.ranges", "id.user"],
            ),
            (
                "Error: command required for rootless mode with multiple IDs: exec: \"newuidmap\": executable file not found in $PATH",
                &["path.tools"],
            ),
            (
                "newuidmap: write to uid_map failed: Operation not permitted",
                &["uidmap.privs", "proc.nnp", "proc.capbnd"],
            ),
            ("newuidmap: Target process 123 is owned by a different user: uid:1000 pid:123", &["id.gid"]),
            ("Error: slirp4netns failed: \"open(\\\"/dev/net/tun\\\"): Permission denied\"", &["net.helper"]),
            ("something else entirely", &[]),
            (
                "Error: cannot set up namespace using \"/tmp/x/newuidmap\": should have setuid or have filecaps setuid: exit status 1",
                &["uidmap.privs", "proc.nnp", "proc.capbnd", "id.gid", "subid.ranges"],
            ),
            ("Error: cannot re-exec process", &["kernel.userns", "uidmap.privs", "proc.nnp"]),
            ("Error: subuid range 1000:65536 includes the user UID 1000", &["subid.ranges"]),
            (
                "Error: open /run/user/1000/libpod/tmp/events/events.log: no space left on device",
                &["env.runtime_dir.fs", "storage.writable"],
            ),
            (
                "Error: creating runtime static files directory: mkdir /home/a/.local: read-only file system",
                &["env.home", "storage.writable"],
            ),
            (
                "time=\"x\" level=error msg=\"stat /root/.config/containers/storage.conf: permission denied\"",
                &["env.home", "env.config_dirs"],
            ),
            ("Error: default OCI runtime \"crun\" not found: invalid argument", &["engine.runtime"]),
            ("set sticky bit on: chmod /run/user/1000/libpod: operation not permitted", &["env.runtime_dir.podman"]),
            ("dbus-daemon[12]: Failed to start message bus: \"XDG_RUNTIME_DIR\" is not set", &["env.runtime_dir.set"]),
            (
                "Failed to start message bus: /run/user/0 is owned by uid 0, not our uid 1000",
                &["env.runtime_dir.owner"],
            ),
            ("Failed to connect to bus: No medium found", &["env.runtime_dir.set", "session.bus"]),
        ];
        for (text, want) in cases {
            assert_eq!(explain(text).1, *want, "{text}");
        }
        assert_eq!(explain("Target process is owned by a different user").1, ["id.gid"]);
    }
}
