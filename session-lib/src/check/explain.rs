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
        fragments: &["xdg_runtime_dir directory", "is not owned by the current user"],
        message: "XDG_RUNTIME_DIR directory \"...\" is not owned by the current user",
        checks: &["env.runtime_dir.owner"],
    },
    Explanation {
        fragments: &["mkdir /run/user/", "permission denied"],
        message: "mkdir /run/user/N: permission denied",
        checks: &["env.runtime_dir.set", "env.runtime_dir.owner"],
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
            ("Error: mkdir /run/user/1000: permission denied", &["env.runtime_dir.set", "env.runtime_dir.owner"]),
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
        ];
        for (text, want) in cases {
            assert_eq!(explain(text).1, *want, "{text}");
        }
        assert_eq!(explain("Target process is owned by a different user").1, ["id.gid"]);
    }
}
