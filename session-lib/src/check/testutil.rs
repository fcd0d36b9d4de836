//! Unit-test fixtures: a healthy context on a private temporary tree, which
//! each test then breaks in one way.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use super::{Context, Mode, SystemPaths};
use crate::config::Config;
use crate::user::UserInfo;

pub struct Fixture {
    pub root: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub name: String,
}

impl Fixture {
    /// A tree with home/, run/user/UID (0700), etc/subuid and subgid for
    /// the calling user, and a bin/ directory first in PATH.
    pub fn new(tag: &str) -> Fixture {
        use std::os::unix::fs::PermissionsExt;
        let root = std::env::temp_dir().join(format!("js-check-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        // As root, play an unprivileged user that owns the tree (a uid no
        // one has); otherwise the caller itself.
        let (uid, gid, name) = match nix::unistd::geteuid().as_raw() {
            0 => (64_123, 64_123, "jscheckfixture".to_string()),
            uid => (uid, nix::unistd::getegid().as_raw(), format!("jscheck{uid}")),
        };
        for dir in ["home", "etc", "bin", "proc", "sys"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        let rt = root.join(format!("run/user/{uid}"));
        fs::create_dir_all(&rt).unwrap();
        fs::set_permissions(&rt, fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(root.join("etc/subuid"), format!("someone:100000:65536\n{name}:165536:65536\n")).unwrap();
        fs::write(root.join("etc/subgid"), format!("someone:100000:65536\n{uid}:165536:65536\n")).unwrap();
        fs::write(root.join("etc/nsswitch.conf"), "passwd: files\n").unwrap();
        if nix::unistd::geteuid().is_root() {
            for p in [root.join("home"), rt.clone()] {
                std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
            }
        }
        Fixture { root, uid, gid, name }
    }

    pub fn runtime_dir(&self) -> PathBuf {
        self.root.join(format!("run/user/{}", self.uid))
    }

    pub fn healthy(&self) -> Context {
        let mut env = BTreeMap::new();
        env.insert("USER".to_string(), self.name.clone());
        env.insert("LOGNAME".to_string(), self.name.clone());
        env.insert("HOME".to_string(), self.root.join("home").display().to_string());
        env.insert("XDG_RUNTIME_DIR".to_string(), self.runtime_dir().display().to_string());
        env.insert("PATH".to_string(), format!("{}:/usr/bin:/bin", self.root.join("bin").display()));
        let user = UserInfo {
            name: self.name.clone(),
            uid: self.uid,
            gid: self.gid,
            home: self.root.join("home"),
            shell: "/bin/sh".into(),
        };
        let config = Config { runtime_dir_parent: self.root.join("run/user"), ..Config::default() };
        let paths = SystemPaths {
            subuid: self.root.join("etc/subuid"),
            subgid: self.root.join("etc/subgid"),
            nsswitch: self.root.join("etc/nsswitch.conf"),
            linger_dir: self.root.join("linger"),
            containers_share: self.root.join("usr-share-containers"),
            containers_etc: self.root.join("etc/containers"),
            systemd_run: self.root.join("run/systemd/system"),
            ..SystemPaths::default()
        };
        Context {
            mode: Mode::Session,
            env,
            uid: self.uid,
            gid: self.gid,
            groups: vec![self.gid],
            user: Some(user),
            config,
            paths,
            deep: false,
            probe_timeout: Duration::from_secs(5),
            podman_timeout: Duration::from_secs(30),
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}
