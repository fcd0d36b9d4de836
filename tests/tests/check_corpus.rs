//! The `check` corpus: real broken and degraded states, each built as root
//! for a fresh real user (useradd), with real podman 4.3.1 run in it (runc,
//! `--network none` unless the state is about the network) and
//! `jupyter-session check --json` run in the same state, as the user.
//!
//! For every state the test asserts what the issue asks of `check`:
//! - podman fails → FAIL with the check that names the cause;
//! - podman works (degraded, or falls back) → that check warns or informs, and
//!   nothing FAILs;
//! - the printed fix, applied where that is safe, makes podman work;
//! - `check --explain` with podman's exact stderr → that check.
//!
//! podman's stderr of each state is kept, with the user's uid, name and home
//! replaced by `$UID`, `$USER` and `$HOME`, in tests/fixtures/check-corpus/
//! NAME.stderr. The test compares podman's last line with the fixture's, so
//! a podman that changes its messages fails here; `tests/fixtures/check-corpus/
//! recapture.sh` (JS_CORPUS_CAPTURE=1) writes them again. JS_CORPUS_ONLY=a,b
//! runs only the named states.
#![forbid(unsafe_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use jupyter_session_tests::{PamService, StateDir, TestUser, cli_path, require_root, run, run_ok, unique};
use serde_json::Value;

const SESSION_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The image the corpus runs: busybox, plus a directory owned by uid 1000
/// as most real images have (so it needs subordinate ids).
struct Image {
    tar: PathBuf,
    root: PathBuf,
}

impl Image {
    fn build() -> Image {
        let root = std::env::temp_dir().join(unique("jscorpus-rootfs-"));
        for d in ["bin", "etc", "home/app", "tmp"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        let busybox = jupyter_session_tests::which("busybox").expect("busybox-static installed");
        fs::copy(&busybox, root.join("bin/busybox")).unwrap();
        let list = run_ok(Command::new(&busybox).arg("--list"));
        for applet in String::from_utf8_lossy(&list.stdout).lines().filter(|a| *a != "busybox") {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
        fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n").unwrap();
        std::os::unix::fs::chown(root.join("home/app"), Some(1000), Some(1000)).unwrap();
        let tar = root.with_extension("tar");
        run_ok(Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg("."));
        fs::set_permissions(&tar, fs::Permissions::from_mode(0o644)).unwrap();
        Image { tar, root }
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
        let _ = fs::remove_file(&self.tar);
    }
}

/// Undo steps, run in reverse order when the state is done.
type Undo = Box<dyn FnOnce()>;

/// One state being built: the user, the environment and credentials the
/// user's processes get, and what podman runs.
struct Lab {
    user: TestUser,
    env: Vec<(String, String)>,
    /// setpriv credential options; default `--reuid --regid --init-groups`.
    creds: Vec<String>,
    /// podman's arguments.
    podman: Vec<String>,
    /// Extra `check` arguments (e.g. `--config`).
    check_args: Vec<String>,
    /// Run `check --user NAME` as root instead of `check` as the user.
    as_root_for_user: bool,
    /// podman was never used by this user before the state was built.
    first_time: bool,
    /// podman runs in a session the keeper opens (`jupyter-session exec`).
    podman_via_keeper: bool,
    keeper: Option<(PamService, StateDir)>,
    /// Seconds podman may take before it counts as hanging.
    podman_limit: u32,
    undo: Vec<Undo>,
    tar: PathBuf,
    scratch: PathBuf,
}

impl Lab {
    fn new(user: TestUser, tar: &Path) -> Lab {
        let env = vec![
            ("XDG_RUNTIME_DIR".to_string(), user.runtime_dir().display().to_string()),
            ("PATH".into(), SESSION_PATH.into()),
            ("USER".into(), user.name.clone()),
            ("LOGNAME".into(), user.name.clone()),
            ("HOME".into(), user.home.display().to_string()),
        ];
        let creds = vec![format!("--reuid={}", user.uid), format!("--regid={}", user.gid), "--init-groups".into()];
        let scratch = std::env::temp_dir().join(unique("jscorpus-"));
        fs::create_dir(&scratch).unwrap();
        fs::set_permissions(&scratch, fs::Permissions::from_mode(0o755)).unwrap();
        // No network: /dev/net/tun is 0600 on these hosts, so the user's
        // containers.conf says `netns = "none"` (see containers_conf).
        let podman = ["run", "--rm", "localhost/bb", "true"].map(String::from).to_vec();
        let lab = Lab {
            user,
            env,
            creds,
            podman,
            check_args: Vec::new(),
            as_root_for_user: false,
            first_time: false,
            podman_via_keeper: false,
            keeper: None,
            podman_limit: 45,
            undo: Vec::new(),
            tar: tar.to_path_buf(),
            scratch,
        };
        lab.user_file(".config/containers/containers.conf", NO_NETWORK);
        lab
    }

    fn rt(&self) -> PathBuf {
        self.user.runtime_dir()
    }

    fn set(&mut self, k: &str, v: Option<&str>) {
        self.env.retain(|(n, _)| n != k);
        if let Some(v) = v {
            self.env.push((k.to_string(), v.to_string()));
        }
    }

    /// The correct runtime dir, as a keeper makes it (a plain dir here).
    fn make_rt(&self) {
        let rt = self.rt();
        let _ = fs::create_dir(&rt);
        std::os::unix::fs::chown(&rt, Some(self.user.uid), Some(self.user.gid)).unwrap();
        fs::set_permissions(&rt, fs::Permissions::from_mode(0o700)).unwrap();
    }

    /// A command as the user, with exactly the lab's environment.
    fn as_user(&self, program: &Path) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.args(&self.creds).arg("env").arg("-i");
        for (k, v) in &self.env {
            cmd.arg(format!("{k}={v}"));
        }
        cmd.arg(program).current_dir("/");
        cmd
    }

    /// A root shell command (building the state).
    fn root_sh(&self, script: &str) {
        run_ok(Command::new("sh").arg("-ec").arg(script).env("U", &self.user.name).env("H", &self.user.home));
    }

    /// `podman ARGS` as the user, killed after `limit` seconds.
    fn podman_with(&mut self, args: &[String], limit: u32) -> (bool, String) {
        if self.podman_via_keeper {
            let (svc, _) = self.keeper.get_or_insert_with(|| {
                let state = StateDir::new();
                (PamService::with_module("jsqk", &state, ""), state)
            });
            let mut cmd = Command::new("timeout");
            cmd.args(["-s", "KILL", &limit.to_string()]).arg(cli_path()).env_clear();
            cmd.args(["exec", "--service", &svc.name, "--user", &self.user.name, "--", "podman"]).args(args);
            let out = run(&mut cmd);
            return (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let mut cmd = Command::new("timeout");
        cmd.args(["-s", "KILL", &limit.to_string(), "setpriv"]).args(&self.creds).arg("env").arg("-i");
        for (k, v) in &self.env {
            cmd.arg(format!("{k}={v}"));
        }
        cmd.arg("podman").args(args).current_dir("/");
        let out = run(&mut cmd);
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// The state's podman attempt. A first-time user's imports the image
    /// first (podman records its paths at first use).
    fn podman(&mut self) -> (bool, String) {
        if self.first_time {
            let tar = self.tar.display().to_string();
            let (ok, err) = self.podman_with(&["import".into(), "-q".into(), tar, "localhost/bb".into()], 60);
            if !ok {
                return (ok, err);
            }
            self.first_time = false;
        }
        let args = self.podman.clone();
        let limit = self.podman_limit;
        self.podman_with(&args, limit)
    }

    /// podman has been used in the healthy session: the image is in the
    /// store and podman has recorded its paths.
    fn use_podman(&mut self) {
        let tar = self.tar.display().to_string();
        let (ok, err) = self.podman_with(&["import".into(), "-q".into(), tar, "localhost/bb".into()], 60);
        assert!(ok, "import in the healthy state failed: {err}");
        let (ok, err) = self.podman();
        assert!(ok, "podman in the healthy state failed: {err}");
    }

    fn check(&self, extra: &[&str]) -> Report {
        let out = if self.as_root_for_user {
            run(Command::new(cli_path())
                .args(["check", "--json", "--user", &self.user.name])
                .args(&self.check_args)
                .args(extra))
        } else {
            let mut cmd = self.as_user(&cli_path());
            cmd.args(["check", "--json"]).args(&self.check_args).args(extra);
            run(&mut cmd)
        };
        Report::parse(out)
    }

    /// Write a file of the user's (e.g. ~/.config/containers/containers.conf).
    fn user_file(&self, rel: &str, text: &str) {
        let p = self.user.home.join(rel);
        let mut created = Vec::new();
        for a in p.parent().unwrap().ancestors() {
            if a == self.user.home || a.exists() {
                break;
            }
            created.push(a.to_path_buf());
        }
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
        for q in created.iter().chain([&p]) {
            std::os::unix::fs::chown(q, Some(self.user.uid), Some(self.user.gid)).unwrap();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        while let Some(undo) = self.undo.pop() {
            undo();
        }
        let _ = fs::remove_dir_all(&self.scratch);
    }
}

/// Output of one `check --json` run.
struct Report {
    code: i32,
    doc: Value,
}

impl Report {
    fn parse(out: std::process::Output) -> Report {
        let text = String::from_utf8_lossy(&out.stdout);
        let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("check --json printed no JSON ({e}):\n{text}\nstderr: {}", String::from_utf8_lossy(&out.stderr))
        });
        Report { code: out.status.code().unwrap_or(-1), doc }
    }

    fn findings(&self) -> &[Value] {
        self.doc["findings"].as_array().map(Vec::as_slice).unwrap_or(&[])
    }

    fn finding(&self, id: &str) -> Option<&Value> {
        self.findings().iter().find(|f| f["id"] == id)
    }

    fn status(&self, id: &str) -> &str {
        self.finding(id).and_then(|f| f["status"].as_str()).unwrap_or("absent")
    }

    fn failed(&self) -> Vec<String> {
        self.findings()
            .iter()
            .filter(|f| f["status"] == "fail")
            .map(|f| format!("{}: {}", f["id"].as_str().unwrap_or("?"), f["observed"].as_str().unwrap_or("")))
            .collect()
    }

    fn explained(&self) -> Vec<String> {
        let matched = self.doc["explain"]["matched"].as_array().cloned().unwrap_or_default();
        matched
            .iter()
            .flat_map(|m| m["checks"].as_array().cloned().unwrap_or_default())
            .filter_map(|c| c.as_str().map(String::from))
            .collect()
    }
}

/// What the state must give.
#[derive(Clone, Copy)]
enum Want {
    /// podman fails; `check` FAILs with this id.
    Fail(&'static str),
    /// podman works; this id has this status ("warn" or "info") and
    /// nothing FAILs.
    Works(&'static str, &'static str),
}

struct State {
    name: &'static str,
    /// The class.
    class: &'static str,
    useradd: &'static [&'static str],
    /// No podman use before the state is built.
    first_time: bool,
    build: fn(&mut Lab),
    want: Want,
    /// The finding's observation mentions this.
    observed: &'static str,
    /// The fix is for this party ("user"/"admin"; "" = not asserted) and mentions this.
    fix: (&'static str, &'static str),
    /// Apply the printed fix; podman must work after it.
    apply: Option<fn(&mut Lab)>,
}

const MISS: &str = "miss";
const AS_WARN: &str = "failure reported as warning";
const WORKS: &str = "FAIL where podman works";
const HARM: &str = "harmful fix";
const LEAK: &str = "env.leak too narrow";
const FAILS: &str = "failure named";

fn rm_rt(l: &mut Lab) {
    let _ = fs::remove_dir_all(l.rt());
}

/// The user's containers.conf on a host without a usable /dev/net/tun.
const NO_NETWORK: &str = "[containers]\nnetns = \"none\"\n";

/// The user's containers.conf: `text` (an [engine] section) after NO_NETWORK.
fn containers_conf(l: &mut Lab, text: &str) {
    l.user_file(".config/containers/containers.conf", &format!("{NO_NETWORK}{text}"));
}

/// A root-owned path of this run under /run (trusted like the admin's config).
fn run_file(tag: &str) -> PathBuf {
    PathBuf::from("/run").join(unique(&format!("check-corpus-{tag}-")))
}

/// A free subordinate range for this uid (far above useradd's).
fn spare_range(uid: u32) -> (u64, u64) {
    let start = 2_000_000_000 + u64::from(uid % 10_000) * 65_536;
    (start, start + 65_535)
}

fn states() -> Vec<State> {
    vec![
        // ---- the runtime directory
        State {
            name: "rt_missing",
            class: FAILS,
            useradd: &[],
            first_time: false,
            build: rm_rt,
            want: Want::Fail("env.runtime_dir.owner"),
            observed: "does not exist",
            fix: ("admin", "session"),
            apply: Some(|l| l.make_rt()),
        },
        State {
            name: "rt_missing_first_time",
            class: FAILS,
            useradd: &[],
            first_time: true,
            build: rm_rt,
            want: Want::Fail("env.runtime_dir.owner"),
            observed: "does not exist",
            fix: ("admin", "session"),
            apply: Some(|l| l.make_rt()),
        },
        State {
            name: "rt_root_owned",
            class: HARM,
            useradd: &[],
            first_time: false,
            build: |l| std::os::unix::fs::chown(l.rt(), Some(0), Some(0)).unwrap(),
            want: Want::Fail("env.runtime_dir.owner"),
            observed: "owned by uid 0",
            fix: ("admin", "chown"),
            apply: Some(|l| {
                let cmd = format!("chown {0}: {1}", l.user.name, l.rt().display());
                l.root_sh(&cmd)
            }),
        },
        State {
            name: "rt_root_owned_first_time",
            class: HARM,
            useradd: &[],
            first_time: true,
            build: |l| std::os::unix::fs::chown(l.rt(), Some(0), Some(0)).unwrap(),
            want: Want::Fail("env.runtime_dir.owner"),
            observed: "owned by uid 0",
            fix: ("admin", "chown"),
            apply: Some(|l| {
                let cmd = format!("chown {0}: {1}", l.user.name, l.rt().display());
                l.root_sh(&cmd)
            }),
        },
        State {
            name: "rt_leaked_root_xdg",
            class: FAILS,
            useradd: &[],
            first_time: false,
            build: |l| {
                leak_root_xdg(l);
            },
            want: Want::Fail("env.runtime_dir.owner"),
            observed: "owned by uid 0",
            fix: ("user", "export XDG_RUNTIME_DIR=/run/user/"),
            apply: Some(|l| {
                let own = l.rt().display().to_string();
                l.set("XDG_RUNTIME_DIR", Some(&own));
            }),
        },
        State {
            name: "rt_leaked_root_xdg_own_missing",
            class: HARM,
            useradd: &[],
            first_time: false,
            build: |l| {
                leak_root_xdg(l);
                rm_rt(l);
            },
            want: Want::Fail("env.runtime_dir.owner"),
            observed: "owned by uid 0",
            fix: ("admin", "session"),
            apply: Some(|l| {
                // What a session does: the keeper creates the dir and sets the variable.
                l.make_rt();
                let own = l.rt().display().to_string();
                l.set("XDG_RUNTIME_DIR", Some(&own));
            }),
        },
        State {
            name: "rt_other_users_dir",
            class: FAILS,
            useradd: &[],
            first_time: false,
            build: |l| {
                let d = l.scratch.join("rt-of-daemon");
                fs::create_dir(&d).unwrap();
                std::os::unix::fs::chown(&d, Some(1), Some(1)).unwrap();
                fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
                l.set("XDG_RUNTIME_DIR", Some(d.to_str().unwrap()));
            },
            want: Want::Fail("env.runtime_dir.owner"),
            observed: "owned by uid 1",
            fix: ("user", "export XDG_RUNTIME_DIR=/run/user/"),
            apply: Some(|l| {
                let own = l.rt().display().to_string();
                l.set("XDG_RUNTIME_DIR", Some(&own));
            }),
        },
        State {
            name: "rt_unset_dir_present",
            class: WORKS,
            useradd: &[],
            first_time: false,
            build: |l| l.set("XDG_RUNTIME_DIR", None),
            want: Want::Works("env.runtime_dir.set", "warn"),
            observed: "unset",
            fix: ("user", "export XDG_RUNTIME_DIR="),
            apply: None,
        },
        State {
            name: "rt_unset_dir_present_first_time",
            class: WORKS,
            useradd: &[],
            first_time: true,
            build: |l| l.set("XDG_RUNTIME_DIR", None),
            want: Want::Works("env.runtime_dir.set", "warn"),
            observed: "unset",
            fix: ("user", "export XDG_RUNTIME_DIR="),
            apply: None,
        },
        State {
            name: "rt_unset_dir_missing_first_time",
            class: WORKS,
            useradd: &[],
            first_time: true,
            build: |l| {
                l.set("XDG_RUNTIME_DIR", None);
                rm_rt(l);
            },
            want: Want::Works("env.runtime_dir.set", "warn"),
            observed: "/tmp/podman-run-",
            fix: ("admin", "session"),
            apply: None,
        },
        State {
            name: "rt_unset_dir_missing_used_before",
            class: FAILS,
            useradd: &[],
            first_time: false,
            build: |l| {
                l.user.kill_processes();
                l.set("XDG_RUNTIME_DIR", None);
                rm_rt(l);
            },
            want: Want::Fail("env.runtime_dir.set"),
            observed: "recorded",
            fix: ("admin", "session"),
            apply: Some(|l| {
                l.make_rt();
                let own = l.rt().display().to_string();
                l.set("XDG_RUNTIME_DIR", Some(&own));
            }),
        },
        State {
            name: "rt_mode_0755",
            class: WORKS,
            useradd: &[],
            first_time: false,
            build: |l| fs::set_permissions(l.rt(), fs::Permissions::from_mode(0o755)).unwrap(),
            want: Want::Works("env.runtime_dir.owner", "warn"),
            observed: "mode 0755",
            fix: ("user", "chmod 0700"),
            apply: None,
        },
        State {
            name: "rt_mode_0755_first_time",
            class: WORKS,
            useradd: &[],
            first_time: true,
            build: |l| fs::set_permissions(l.rt(), fs::Permissions::from_mode(0o755)).unwrap(),
            want: Want::Works("env.runtime_dir.owner", "warn"),
            observed: "mode 0755",
            fix: ("user", "chmod 0700"),
            apply: None,
        },
        State {
            name: "rt_symlink_to_own_dir",
            class: WORKS,
            useradd: &[],
            first_time: false,
            build: |l| {
                let link = l.scratch.join("rt-link");
                std::os::unix::fs::symlink(l.rt(), &link).unwrap();
                l.set("XDG_RUNTIME_DIR", Some(link.to_str().unwrap()));
            },
            want: Want::Works("env.runtime_dir.owner", "warn"),
            observed: "symbolic link",
            fix: ("user", "export XDG_RUNTIME_DIR=/run/user/"),
            apply: None,
        },
        State {
            name: "rt_relative_used_before",
            class: FAILS,
            useradd: &[],
            first_time: false,
            build: |l| {
                let rel = l.rt().display().to_string().trim_start_matches('/').to_string();
                l.set("XDG_RUNTIME_DIR", Some(&rel));
            },
            want: Want::Fail("env.runtime_dir.set"),
            observed: "relative",
            fix: ("user", "export XDG_RUNTIME_DIR=/run/user/"),
            apply: Some(|l| {
                let own = l.rt().display().to_string();
                l.set("XDG_RUNTIME_DIR", Some(&own));
            }),
        },
        State {
            name: "rt_root_owned_libpod",
            class: MISS,
            useradd: &[],
            first_time: false,
            build: |l| l.root_sh(&format!("chown -R root: {}/libpod", l.rt().display())),
            want: Want::Fail("env.runtime_dir.podman"),
            observed: "libpod",
            fix: ("admin", "rm -rf"),
            apply: Some(|l| l.root_sh(&format!("rm -rf {}/libpod", l.rt().display()))),
        },
        State {
            name: "rt_root_owned_containers",
            class: MISS,
            useradd: &[],
            first_time: false,
            build: |l| l.root_sh(&format!("chown -R root: {}/containers", l.rt().display())),
            want: Want::Fail("env.runtime_dir.podman"),
            observed: "containers",
            fix: ("admin", "rm -rf"),
            apply: Some(|l| l.root_sh(&format!("rm -rf {}/containers", l.rt().display()))),
        },
        State {
            name: "rt_root_owned_libpod_first_time",
            class: MISS,
            useradd: &[],
            first_time: true,
            build: |l| l.root_sh(&format!("mkdir -m 0755 {}/libpod", l.rt().display())),
            want: Want::Fail("env.runtime_dir.podman"),
            observed: "libpod",
            fix: ("admin", "rm -rf"),
            apply: Some(|l| l.root_sh(&format!("rm -rf {}/libpod", l.rt().display()))),
        },
        State {
            name: "rt_full_tmpfs",
            class: AS_WARN,
            useradd: &[],
            first_time: true,
            build: |l| {
                let rt = l.rt();
                l.root_sh(&format!(
                    "mount -t tmpfs -o size=256k,mode=0700,uid={1},gid={2} tmpfs {0}",
                    rt.display(),
                    l.user.uid,
                    l.user.gid
                ));
                let undo_rt = rt.clone();
                l.undo.push(Box::new(move || {
                    let _ = Command::new("umount").arg("-l").arg(&undo_rt).status();
                }));
                let mut dd = l.as_user(Path::new("/bin/sh"));
                dd.args(["-c", &format!("dd if=/dev/zero of={}/filler bs=4k 2>/dev/null; true", rt.display())]);
                run_ok(&mut dd);
            },
            want: Want::Fail("env.runtime_dir.fs"),
            observed: "full",
            fix: ("user", "remove"),
            apply: Some(|l| fs::remove_file(l.rt().join("filler")).unwrap()),
        },
        State {
            name: "rt_plain_dir_where_tmpfs_configured",
            class: MISS,
            useradd: &[],
            first_time: false,
            build: |l| {
                let conf = run_file("conf");
                fs::write(&conf, "tmpfs = true\n").unwrap();
                l.check_args = vec!["--config".into(), conf.display().to_string()];
                l.undo.push(Box::new(move || {
                    let _ = fs::remove_file(&conf);
                }));
            },
            want: Want::Works("env.runtime_dir.fs", "warn"),
            observed: "fill /run",
            fix: ("admin", ""),
            apply: None,
        },
        // ---- HOME
        State {
            name: "home_unset",
            class: WORKS,
            useradd: &[],
            first_time: false,
            build: |l| l.set("HOME", None),
            want: Want::Works("env.home", "warn"),
            observed: "HOME unset",
            fix: ("user", "export HOME="),
            apply: None,
        },
        State {
            name: "home_of_root_after_su_m",
            class: HARM,
            useradd: &[],
            first_time: false,
            build: |l| l.set("HOME", Some("/root")),
            want: Want::Fail("env.home"),
            observed: "/root",
            fix: ("user", "export HOME=/home/"),
            apply: Some(|l| {
                let h = l.user.home.display().to_string();
                l.set("HOME", Some(&h));
            }),
        },
        State {
            name: "home_read_only_mount",
            class: MISS,
            useradd: &[],
            first_time: false,
            build: ro_home,
            want: Want::Fail("env.home"),
            observed: "read-only",
            fix: ("admin", "remount"),
            apply: None,
        },
        State {
            name: "home_read_only_mount_first_time",
            class: MISS,
            useradd: &[],
            first_time: true,
            build: ro_home,
            want: Want::Fail("env.home"),
            observed: "read-only",
            fix: ("admin", "remount"),
            apply: None,
        },
        State {
            name: "home_owned_by_root",
            class: FAILS,
            useradd: &[],
            first_time: true,
            build: |l| l.root_sh("chown root: $H"),
            want: Want::Fail("env.home"),
            observed: "owned by uid 0",
            fix: ("admin", "chown"),
            apply: Some(|l| l.root_sh("chown $U: $H")),
        },
        // ---- storage
        State {
            name: "graphroot_in_storage_conf_not_writable",
            class: MISS,
            useradd: &[],
            first_time: true,
            build: |l| {
                let g = run_file("graph");
                fs::create_dir(&g).unwrap();
                fs::set_permissions(&g, fs::Permissions::from_mode(0o755)).unwrap();
                l.user_file(
                    ".config/containers/storage.conf",
                    &format!("[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\n", g.display()),
                );
                l.undo.push(Box::new(move || {
                    let _ = fs::remove_dir_all(&g);
                }));
            },
            want: Want::Fail("storage.writable"),
            observed: "owned by uid 0",
            fix: ("", "chown"),
            apply: Some(|l| {
                let conf = fs::read_to_string(l.user.home.join(".config/containers/storage.conf")).unwrap();
                let g = conf.lines().find_map(|x| x.strip_prefix("graphroot = \"")).unwrap().trim_end_matches('"');
                l.root_sh(&format!("chown $U: {g}"));
            }),
        },
        State {
            name: "default_storage_owned_by_root",
            class: MISS,
            useradd: &[],
            first_time: false,
            build: |l| l.root_sh("chown root: $H/.local/share/containers/storage"),
            want: Want::Fail("storage.writable"),
            observed: "owned by uid 0",
            fix: ("admin", "chown"),
            apply: Some(|l| l.root_sh("chown $U: $H/.local/share/containers/storage")),
        },
        State {
            name: "graphroot_on_noexec_tmpfs",
            class: WORKS,
            useradd: &[],
            first_time: true,
            build: |l| {
                let g = run_file("noexec");
                fs::create_dir(&g).unwrap();
                l.root_sh(&format!(
                    "mount -t tmpfs -o noexec,nosuid,size=64m,mode=0700,uid={1},gid={2} tmpfs {0}",
                    g.display(),
                    l.user.uid,
                    l.user.gid
                ));
                l.user_file(
                    ".config/containers/storage.conf",
                    &format!("[storage]\ndriver = \"overlay\"\ngraphroot = \"{}/storage\"\n", g.display()),
                );
                l.undo.push(Box::new(move || {
                    let _ = Command::new("umount").arg("-l").arg(&g).status();
                    let _ = fs::remove_dir(&g);
                }));
            },
            want: Want::Works("storage.mountopts", "warn"),
            observed: "noexec",
            fix: ("", ""),
            apply: None,
        },
        State {
            name: "storage_lock_held_by_another_process",
            class: MISS,
            useradd: &[],
            first_time: false,
            build: |l| {
                // A root process holds write locks on the user's storage (as
                // a stuck `podman` or backup job would): podman waits forever.
                let g = l.user.home.join(".local/share/containers/storage");
                let script = "import fcntl, os, sys, time\nfs = [open(p, 'a') for p in sys.argv[1:] if os.path.exists(p)]\nfor f in fs: fcntl.lockf(f, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(600)\n";
                let mut child = Command::new("/usr/bin/python3")
                    .arg("-c")
                    .arg(script)
                    .arg(g.join("storage.lock"))
                    .arg(g.join("overlay-layers/layers.lock"))
                    .arg(g.join("overlay-images/images.lock"))
                    .arg(g.join("overlay-containers/containers.lock"))
                    .arg(g.join("vfs-layers/layers.lock"))
                    .arg(g.join("vfs-images/images.lock"))
                    .arg(g.join("vfs-containers/containers.lock"))
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                let mut line = String::new();
                std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line)
                    .unwrap();
                assert_eq!(line.trim(), "locked");
                l.undo.push(Box::new(move || {
                    let _ = child.kill();
                    let _ = child.wait();
                }));
                l.podman_limit = 5;
                l.check_args = vec!["--deep".into(), "--podman-timeout".into(), "4".into()];
            },
            want: Want::Fail("podman.info"),
            observed: "python3, uid 0) holds",
            fix: ("user", "kill PID"),
            apply: None,
        },
        // ---- podman's configuration files
        State {
            name: "oci_runtime_in_containers_conf_missing",
            class: MISS,
            useradd: &[],
            first_time: false,
            build: |l| containers_conf(l, "[engine]\nruntime = \"crun\"\n"),
            want: Want::Fail("engine.runtime"),
            observed: "crun",
            fix: ("user", "runc"),
            apply: Some(|l| containers_conf(l, "[engine]\nruntime = \"runc\"\n")),
        },
        State {
            name: "cgroup_manager_systemd_without_systemd",
            class: WORKS,
            useradd: &[],
            first_time: false,
            build: |l| containers_conf(l, "[engine]\ncgroup_manager = \"systemd\"\n"),
            want: Want::Works("session.bus", "warn"),
            observed: "systemd",
            fix: ("user", "cgroupfs"),
            apply: None,
        },
        State {
            name: "healthy_host_without_systemd",
            class: WORKS,
            useradd: &[],
            first_time: false,
            build: |_| {},
            want: Want::Works("session.bus", "info"),
            observed: "cgroupfs",
            fix: ("", ""),
            apply: None,
        },
        // ---- privileges and tools
        State {
            name: "no_new_privs",
            class: FAILS,
            useradd: &[],
            first_time: true,
            build: |l| l.creds.push("--no-new-privs".into()),
            want: Want::Fail("proc.nnp"),
            observed: "NoNewPrivs: 1",
            fix: ("admin", "NoNewPrivileges"),
            apply: None,
        },
        State {
            name: "newuidmap_copies_without_setuid",
            class: FAILS,
            useradd: &[],
            first_time: true,
            build: |l| {
                for tool in ["newuidmap", "newgidmap"] {
                    let copy = l.scratch.join(tool);
                    fs::copy(jupyter_session_tests::which(tool).unwrap(), &copy).unwrap();
                    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
                }
                let path = format!("{}:{SESSION_PATH}", l.scratch.display());
                l.set("PATH", Some(&path));
            },
            want: Want::Fail("uidmap.privs"),
            observed: "setuid",
            fix: ("user", "export PATH="),
            apply: Some(|l| l.set("PATH", Some(SESSION_PATH))),
        },
        State {
            name: "path_without_newuidmap",
            class: FAILS,
            useradd: &[],
            first_time: true,
            build: |l| {
                std::os::unix::fs::symlink("/usr/bin/podman", l.scratch.join("podman")).unwrap();
                let path = format!("{}:/usr/sbin", l.scratch.display());
                l.set("PATH", Some(&path));
            },
            want: Want::Fail("path.tools"),
            observed: "newuidmap",
            fix: ("user", "export PATH="),
            apply: Some(|l| l.set("PATH", Some(SESSION_PATH))),
        },
        State {
            name: "gid_not_primary",
            class: FAILS,
            useradd: &[],
            first_time: true,
            build: |l| l.creds = vec![format!("--reuid={}", l.user.uid), "--regid=100".into(), "--clear-groups".into()],
            want: Want::Fail("id.gid"),
            observed: "gid 100",
            fix: ("admin", ""),
            apply: None,
        },
        // ---- subordinate ids
        State {
            name: "no_subordinate_ids",
            class: FAILS,
            useradd: &["-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0"],
            first_time: true,
            build: |_| {},
            want: Want::Fail("subid.ranges"),
            observed: "none",
            fix: ("admin", "usermod --add-subuids"),
            apply: Some(|l| {
                add_spare_range(l);
                let (ok, err) = l.podman_with(&["system".into(), "migrate".into()], 30);
                assert!(ok, "podman system migrate: {err}");
            }),
        },
        State {
            name: "subuid_range_too_small",
            class: AS_WARN,
            useradd: &["-K", "SUB_UID_COUNT=500", "-K", "SUB_GID_COUNT=500"],
            first_time: true,
            build: |_| {},
            want: Want::Fail("subid.ranges"),
            observed: "500",
            fix: ("admin", "usermod"),
            apply: None,
        },
        State {
            name: "pause_process_with_single_id_mapping",
            class: AS_WARN,
            useradd: &["-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0"],
            first_time: true,
            build: |l| {
                let (ok, err) = l.podman_with(&["unshare".into(), "true".into()], 30);
                assert!(ok, "podman unshare: {err}");
                add_spare_range(l);
            },
            want: Want::Fail("subid.live"),
            observed: "pause process",
            fix: ("user", "podman system migrate"),
            apply: Some(|l| {
                let (ok, err) = l.podman_with(&["system".into(), "migrate".into()], 30);
                assert!(ok, "podman system migrate: {err}");
            }),
        },
        // ---- network
        State {
            name: "slirp4netns_without_tun_default_network",
            class: AS_WARN,
            useradd: &[],
            first_time: false,
            build: |l| {
                tun_denied(l);
                fs::remove_file(l.user.home.join(".config/containers/containers.conf")).unwrap();
            },
            want: Want::Fail("net.helper"),
            observed: "/dev/net/tun",
            fix: ("admin", "chmod 0666 /dev/net/tun"),
            apply: None,
        },
        State {
            name: "tun_denied_but_network_none_configured",
            class: WORKS,
            useradd: &[],
            first_time: false,
            build: |l| {
                tun_denied(l);
            },
            want: Want::Works("net.helper", "warn"),
            observed: "netns",
            fix: ("admin", "/dev/net/tun"),
            apply: None,
        },
        // ---- leaks
        State {
            name: "leak_of_roots_tool_variables",
            class: LEAK,
            useradd: &[],
            first_time: false,
            build: |l| {
                l.set("PYENV_ROOT", Some("/root/.pyenv"));
                l.set("TF_CLI_CONFIG_FILE", Some("/root/.terraformrc"));
                l.set("OLDPWD", Some("/root"));
            },
            want: Want::Works("env.leak", "warn"),
            observed: "PYENV_ROOT=/root/.pyenv",
            fix: ("user", "unset"),
            apply: None,
        },
        State {
            name: "leak_of_sudo_variables",
            class: LEAK,
            useradd: &[],
            first_time: false,
            build: |l| {
                l.set("SUDO_USER", Some("root"));
                l.set("SUDO_UID", Some("0"));
            },
            want: Want::Works("env.leak", "warn"),
            observed: "SUDO_USER",
            fix: ("user", "unset"),
            apply: None,
        },
        // ---- `check --user` for a user with no session yet
        State {
            name: "user_mode_before_first_session",
            class: WORKS,
            useradd: &[],
            first_time: true,
            build: |l| {
                rm_rt(l);
                l.as_root_for_user = true;
                l.podman_via_keeper = true;
            },
            want: Want::Works("env.runtime_dir.owner", "info"),
            observed: "keeper",
            fix: ("", ""),
            apply: None,
        },
    ]
}

fn leak_root_xdg(l: &mut Lab) {
    let root_rt = PathBuf::from("/run/user/0");
    if fs::create_dir(&root_rt).is_ok() {
        fs::set_permissions(&root_rt, fs::Permissions::from_mode(0o700)).unwrap();
        l.undo.push(Box::new(move || {
            let _ = fs::remove_dir(&root_rt);
        }));
    }
    l.set("XDG_RUNTIME_DIR", Some("/run/user/0"));
}

fn ro_home(l: &mut Lab) {
    // A new login: podman's pause process (which keeps the mount namespace
    // of its start, before the remount) is gone.
    l.user.kill_processes();
    let h = l.user.home.clone();
    l.root_sh("mount --bind $H $H && mount -o remount,bind,ro $H");
    l.undo.push(Box::new(move || {
        let _ = Command::new("umount").arg("-l").arg(&h).status();
    }));
}

fn add_spare_range(l: &mut Lab) {
    let (a, b) = spare_range(l.user.uid);
    l.root_sh(&format!("usermod --add-subuids {a}-{b} --add-subgids {a}-{b} $U"));
}

/// /dev/net/tun unusable by the user: on these hosts it is 0600 root already.
fn tun_denied(_l: &mut Lab) {
    let mode = fs::metadata("/dev/net/tun").map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
    assert!(mode & 0o006 == 0, "cannot build: /dev/net/tun is mode {mode:o}, usable by every user on this host");
}

// ---- fixtures

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/check-corpus")
}

/// `s` with every whole occurrence of the number `n` replaced.
fn replace_number(s: &str, n: &str, with: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(n) {
        let before = rest[..i].chars().next_back();
        let after = rest[i + n.len()..].chars().next();
        out.push_str(&rest[..i]);
        if before.is_some_and(|c| c.is_ascii_digit()) || after.is_some_and(|c| c.is_ascii_digit()) {
            out.push_str(n);
        } else {
            out.push_str(with);
        }
        rest = &rest[i + n.len()..];
    }
    out.push_str(rest);
    out
}

/// podman's stderr without what differs from run to run.
fn normalize(l: &Lab, stderr: &str) -> String {
    let mut s = stderr.replace(&l.scratch.display().to_string(), "$SCRATCH");
    s = s.replace(&l.user.home.display().to_string(), "$HOME").replace(&l.user.name, "$USER");
    s = replace_number(&s, &l.user.uid.to_string(), "$UID");
    let (a, b) = spare_range(l.user.uid);
    s = replace_number(&replace_number(&s, &a.to_string(), "$SPARE"), &b.to_string(), "$SPARE_END");
    // /run/check-corpus-* paths, hex ids and pids.
    let mut out = String::new();
    for line in s.lines() {
        let line = match line.strip_prefix("time=\"") {
            Some(rest) => format!("time=$T{}", rest.find('"').map(|e| &rest[e + 1..]).unwrap_or(rest)),
            None => line.to_string(),
        };
        let words: Vec<String> = line
            .split(' ')
            .map(|w| {
                if let Some(i) = w.find("check-corpus-") {
                    let end = w[i..].find(['/', '"', ':']).map(|e| i + e).unwrap_or(w.len());
                    format!("{}$RUNFILE{}", &w[..i], &w[end..])
                } else if w.len() >= 12 && w.chars().all(|c| c.is_ascii_hexdigit()) {
                    "$ID".into()
                } else {
                    w.to_string()
                }
            })
            .collect();
        out.push_str(&words.join(" "));
        out.push('\n');
    }
    out
}

fn last_line(s: &str) -> &str {
    s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim()
}

/// The last line that is not one of podman's warnings: what the fixture
/// comparison looks at. Warnings such as `"/" is not a shared mount` come
/// and go with the host's mount propagation, not with the state.
fn last_message(s: &str) -> &str {
    s.lines().rev().find(|l| !l.trim().is_empty() && !l.contains("level=warning")).unwrap_or("").trim()
}

/// The shape of a message: runs of 2+ digits (timestamps) and of 12+ hex digits (pids,
/// id ranges, digests) replaced, to compare a live message with a fixture.
fn shape(line: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let hex = chars[i..].iter().take_while(|c| c.is_ascii_hexdigit()).count();
        let dec = chars[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if hex >= 12 {
            out.push_str("<hex>");
            i += hex;
        } else if dec >= 2 {
            out.push('#');
            i += dec;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

// ---- the run

#[test]
fn corpus_of_real_states() {
    if !require_root(
        "corpus_of_real_states",
        &["setpriv", "useradd", "usermod", "podman", "runc", "busybox", "timeout"],
    ) {
        return;
    }
    let capture = std::env::var_os("JS_CORPUS_CAPTURE").is_some();
    let only: Vec<String> = std::env::var("JS_CORPUS_ONLY")
        .map(|v| v.split(',').filter(|s| !s.is_empty()).map(String::from).collect())
        .unwrap_or_default();
    let image = Image::build();
    let all = states();
    let mut problems = Vec::new();
    let mut table = Vec::new();
    let mut ran = 0;
    for st in all.iter().filter(|s| only.is_empty() || only.iter().any(|o| o == s.name)) {
        ran += 1;
        let mut p = Vec::new();
        let user = TestUser::create_with("jsq", st.useradd);
        let mut lab = Lab::new(user, &image.tar);
        lab.make_rt();
        if st.first_time {
            lab.first_time = true;
        } else {
            lab.use_podman();
        }
        (st.build)(&mut lab);
        // The user asks `check` first, then tries podman.
        let r = lab.check(&[]);
        let (works, stderr) = lab.podman();
        let (id, want_works) = match st.want {
            Want::Fail(id) => (id, false),
            Want::Works(id, _) => (id, true),
        };
        let f = r.finding(id).cloned().unwrap_or(Value::Null);
        if works != want_works {
            p.push(format!(
                "podman {} (expected it to {}): {}",
                if works { "works" } else { "fails" },
                if want_works { "work" } else { "fail" },
                last_line(&stderr)
            ));
        }
        match st.want {
            Want::Fail(id) => {
                if r.status(id) != "fail" {
                    p.push(format!("{id} is {} (want fail): {}", r.status(id), f["observed"]));
                }
            }
            Want::Works(id, status) => {
                if r.status(id) != status {
                    p.push(format!("{id} is {} (want {status}): {}", r.status(id), f["observed"]));
                }
                let failed = r.failed();
                if !failed.is_empty() {
                    p.push(format!("FAIL where podman works: {}", failed.join("; ")));
                }
            }
        }
        if !f["observed"].as_str().unwrap_or("").contains(st.observed) {
            p.push(format!("{id} observed {} does not mention {:?}", f["observed"], st.observed));
        }
        let (who, text) = st.fix;
        if !who.is_empty() && f["fix"]["who"] != who {
            p.push(format!("{id} fix is for {} (want {who}): {}", f["fix"]["who"], f["fix"]["text"]));
        }
        if !text.is_empty() && !f["fix"]["text"].as_str().unwrap_or("").contains(text) {
            p.push(format!("{id} fix {} does not mention {text:?}", f["fix"]["text"]));
        }
        // podman's exact message, pasted into --explain, names the check.
        // (A podman killed while hanging printed nothing to explain.)
        if !works && !want_works && !last_line(&stderr).is_empty() {
            let e = lab.check(&["--explain", &stderr]);
            if !e.explained().iter().any(|x| x == id) {
                p.push(format!("--explain does not map {:?} to {id} (got {:?})", last_line(&stderr), e.explained()));
            }
        }
        // The fixture: podman's stderr as captured here.
        let normalized = normalize(&lab, &stderr);
        let fixture = fixture_dir().join(format!("{}.stderr", st.name));
        if capture {
            fs::create_dir_all(fixture_dir()).unwrap();
            fs::write(&fixture, &normalized).unwrap();
        } else {
            match fs::read_to_string(&fixture) {
                Ok(kept) => {
                    if shape(last_message(&kept)) != shape(last_message(&normalized)) {
                        p.push(format!(
                            "podman's message changed: fixture {:?}, now {:?} (re-capture: tests/fixtures/check-corpus/recapture.sh)",
                            last_message(&kept),
                            last_message(&normalized)
                        ));
                    }
                    if !want_works && !last_line(&kept).is_empty() {
                        let e = lab.check(&["--explain", &kept]);
                        if !e.explained().iter().any(|x| x == id) {
                            p.push(format!("--explain does not map the fixture's {:?} to {id}", last_line(&kept)));
                        }
                    }
                }
                Err(e) => {
                    p.push(format!("{}: {e} (capture: tests/fixtures/check-corpus/recapture.sh)", fixture.display()))
                }
            }
        }
        // The fix, applied, makes podman work and clears the check.
        let mut fixed = "";
        if let Some(apply) = st.apply {
            apply(&mut lab);
            let (ok, err) = lab.podman();
            if !ok {
                p.push(format!("after the fix podman still fails: {}", last_line(&err)));
            }
            let again = lab.check(&[]);
            if again.status(id) == "fail" {
                p.push(format!(
                    "after the fix {id} still fails: {}",
                    again.finding(id).map(|f| f["observed"].clone()).unwrap_or_default()
                ));
            }
            fixed = if ok { ", fix verified" } else { ", fix FAILED" };
        }
        let others: Vec<String> = r
            .failed()
            .into_iter()
            .filter(|f| !f.starts_with(&format!("{id}:")))
            .map(|f| f.split(':').next().unwrap_or("").to_string())
            .collect();
        table.push(format!(
            "{:<45} {:<28} podman {:<5} {id} {}{fixed} (exit {}{})",
            st.name,
            st.class,
            if works { "works" } else { "fails" },
            r.status(id),
            r.code,
            if others.is_empty() { String::new() } else { format!("; also fail: {}", others.join(" ")) }
        ));
        if !p.is_empty() {
            problems.push(format!("{}:\n    {}", st.name, p.join("\n    ")));
        }
        drop(lab);
    }
    eprintln!("{}", table.join("\n"));
    eprintln!("{} states, {} as wanted", ran, ran - problems.len());
    assert!(problems.is_empty(), "{} of {ran} states are not as wanted:\n{}", problems.len(), problems.join("\n"));
    if only.is_empty() {
        let classes: std::collections::BTreeSet<&str> = all.iter().map(|s| s.class).collect();
        assert_eq!(classes.len(), 6, "every class of the issue is represented");
        assert!(all.len() >= 40, "the corpus has {} states", all.len());
    }
}

/// `check --deep --user NAME` as root: podman runs in its own session with
/// a parent-death signal and the session's environment only, and the pause
/// process it started is stopped: nothing of the user is left running.
#[test]
fn deep_check_as_root_leaves_no_process_of_the_user() {
    if !require_root("deep_check_as_root_leaves_no_process_of_the_user", &["useradd", "podman", "runc"]) {
        return;
    }
    let image = Image::build();
    let lab = Lab::new(TestUser::create("jsqd"), &image.tar);
    lab.make_rt();
    assert!(session_lib::procfs::processes_of_uid(lab.user.uid).is_empty());
    let out = run(Command::new(cli_path()).args(["check", "--json", "--deep", "--user", &lab.user.name]));
    let r = Report::parse(out);
    let f = r.finding("podman.info").cloned().unwrap_or_default();
    assert!(matches!(f["status"].as_str(), Some("pass" | "warn")), "{f:#}");
    assert!(f["observed"].as_str().unwrap().contains("stopped the pause process"), "{f:#}");
    // The pause process is gone (a SIGKILLed process may take a moment to be reaped by init).
    let mut left = session_lib::procfs::processes_of_uid(lab.user.uid);
    for _ in 0..50 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        left = session_lib::procfs::processes_of_uid(lab.user.uid);
    }
    assert!(left.is_empty(), "processes of the user left behind: {left:?}");
}
