//! The systemd lab: a Debian bookworm tree with systemd as PID 1, logind and pam_systemd, booted
//! with `systemd-nspawn`, so that tests can run what a systemd host runs (units with `PAMName=`,
//! logind sessions, linger, SystemdSpawner) on a CI machine whose PID 1 is not systemd.
//!
//! - [`tree`] builds the OS tree once per run (tests/lab/build-systemd-tree, under a file lock
//!   shared by every test process) in `/var/tmp/systemd-lab-<hash of the build script>/tree`;
//!   tests/run-all removes `/var/tmp/systemd-lab-*` at the end of the run.
//! - [`Lab::boot`] boots one container of it: `--volatile=overlay` (the tree stays read-only, the
//!   container writes to a tmpfs), so several tests boot their own container at once. The repo and
//!   the cargo target dir are bind-mounted read-only at their host paths and the built module, CLI
//!   and PAM services installed with the repo's install.sh at boot. The container shares the
//!   host's network.
//! - [`Lab::sh`] runs a shell script in the container: `nsenter` into its PID 1's namespaces and
//!   cgroup (no machined, no `machinectl shell` needed), with a clean environment.
//! - Dropping the [`Lab`] powers it off (SIGRTMIN+4 to its systemd) and waits for nspawn.
#![forbid(unsafe_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::hub::repo_dir;
use crate::{run, target_dir, which};

/// PATH of commands run in the lab.
pub const LAB_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const BUILD_SCRIPT: &str = "tests/lab/build-systemd-tree";

/// What a lab test needs on the host; `None` when all is there.
pub fn missing() -> Option<&'static str> {
    if !nix::unistd::geteuid().is_root() {
        return Some("root");
    }
    if which("systemd-nspawn").is_none() {
        return Some("systemd-nspawn (apt-get install systemd-container)");
    }
    if which("mmdebstrap").is_none() {
        return Some("mmdebstrap (apt-get install mmdebstrap)");
    }
    None
}

/// The lab's OS tree, built on first use in this run (and by only one of the test processes
/// asking at once). Its directory name carries a hash of the build script: a changed script
/// builds a new tree.
pub fn tree() -> PathBuf {
    let script = repo_dir().join(BUILD_SCRIPT);
    let text = fs::read(&script).unwrap();
    let key = text.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
    let root = PathBuf::from(format!("/var/tmp/systemd-lab-{key:016x}"));
    fs::create_dir_all(&root).unwrap();
    let lock = fs::File::options().create(true).truncate(false).write(true).open(root.join(".lock")).unwrap();
    let _lock = Flock::lock(lock, FlockArg::LockExclusive).map_err(|(_, e)| e).unwrap();
    let tree = root.join("tree");
    if tree.join("usr/lib/systemd/systemd").exists() {
        return tree;
    }
    let building = root.join("tree.building");
    let _ = fs::remove_dir_all(&building);
    let started = Instant::now();
    let out = run(Command::new(&script).arg(&building));
    assert!(
        out.status.success(),
        "{BUILD_SCRIPT} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    fs::rename(&building, &tree).unwrap();
    eprintln!(
        "systemd lab: tree built in {:.1} s ({}; {})",
        started.elapsed().as_secs_f64(),
        tree.display(),
        String::from_utf8_lossy(&out.stdout).trim()
    );
    tree
}

/// A booted container of the lab tree.
pub struct Lab {
    nspawn: Child,
    leader: u32,
    pub name: String,
    log: PathBuf,
    /// A host directory bind-mounted at the same path in the container (for files both sides use).
    pub shared: PathBuf,
}

impl Lab {
    /// Boot a container; `binds` are extra host paths bind-mounted read-only at the same path.
    /// Waits until systemd says the system is up and install.sh has put the built module, CLI and
    /// PAM services in place.
    pub fn boot(label: &str, binds: &[&Path]) -> Lab {
        let tree = tree();
        let name = crate::unique(&format!("lab{label}"));
        let shared = PathBuf::from(format!("/var/tmp/systemd-lab-run-{name}"));
        let _ = fs::remove_dir_all(&shared);
        fs::create_dir_all(&shared).unwrap();
        crate::hub::set_mode(&shared, 0o755);
        let log = shared.join("console.log");
        let started = Instant::now();
        // Each container in cgroups of its own (on this host nspawn would otherwise put every
        // container in its own cgroup, the same for all, and their systemds would collide).
        // (cpuset refuses tasks until its cpus and mems are set: that one is left as it is.)
        let wrap = format!(
            "for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do [ -e \"$h/cgroup.procs\" ] || continue; \
             [ \"$h\" = /sys/fs/cgroup/ ] && [ ! -e /sys/fs/cgroup/cgroup.controllers ] && continue; \
             mkdir -p \"$h/{name}\" && echo $$ > \"$h/{name}/cgroup.procs\" 2>/dev/null; done; exec \"$@\""
        );
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &wrap, "sh", "systemd-nspawn", "--quiet", "--boot", "--register=no", "--keep-unit"]);
        cmd.arg("--system-call-filter=@keyring").arg("--volatile=overlay").arg(format!("--machine={name}"));
        cmd.arg("--console=passive").arg("-D").arg(&tree);
        let mut ro: Vec<PathBuf> = vec![repo_dir(), target_dir()];
        ro.extend(binds.iter().map(|p| p.to_path_buf()));
        for p in ro {
            cmd.arg(format!("--bind-ro={}", p.display()));
        }
        cmd.arg(format!("--bind={}", shared.display()));
        cmd.env_clear().env("PATH", LAB_PATH);
        let console = fs::File::create(&log).unwrap();
        cmd.stdin(Stdio::null()).stdout(console.try_clone().unwrap()).stderr(console);
        let nspawn = cmd.spawn().unwrap();
        let mut lab = Lab { nspawn, leader: 0, name, log, shared };
        lab.leader = lab.find_leader();
        lab.wait_for("systemd's private bus", 60, "test -S /run/systemd/private");
        let out = lab.sh("systemctl is-system-running --wait");
        let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            state == "running" || state == "degraded",
            "the lab did not come up: `systemctl is-system-running` says {state:?}\n{}",
            lab.sh_out("systemctl --failed --no-pager; journalctl -b --no-pager | tail -40")
        );
        // On a hybrid-cgroup host nspawn mounts the v1 controllers read-only: MemoryMax= (mem_limit)
        // would do nothing. The container's memory hierarchy is its own subtree (cgroup
        // namespace): make it writable and let systemd see it.
        if lab.sh("test -d /sys/fs/cgroup/memory && ! test -e /sys/fs/cgroup/cgroup.controllers").status.success() {
            lab.sh_ok("mount -o remount,bind,rw /sys/fs/cgroup/memory && systemctl daemon-reexec");
        }
        eprintln!("systemd lab {}: booted ({state}) in {:.2} s", lab.name, started.elapsed().as_secs_f64());
        let install = format!("{}/install.sh --from {}", repo_dir().display(), target_dir().display());
        lab.sh_ok(&install);
        lab
    }

    /// The container's PID 1 as the host sees it: the descendant of nspawn that is pid 1 in its
    /// own pid namespace.
    fn find_leader(&mut self) -> u32 {
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            if let Ok(Some(status)) = self.nspawn.try_wait() {
                panic!("systemd-nspawn exited ({status}):\n{}", fs::read_to_string(&self.log).unwrap_or_default());
            }
            let mut frontier = vec![self.nspawn.id()];
            while let Some(pid) = frontier.pop() {
                let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let nspid = status.lines().find_map(|l| l.strip_prefix("NSpid:")).unwrap_or("");
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                // Pid 1 of its own namespace, once nspawn's inner child has become systemd.
                if nspid.split_whitespace().count() > 1
                    && nspid.split_whitespace().last() == Some("1")
                    && comm.trim() == "systemd"
                {
                    return pid;
                }
                for task in fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
                    let children = fs::read_to_string(task.path().join("children")).unwrap_or_default();
                    frontier.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no container PID 1 under systemd-nspawn after 30 s:\n{}", fs::read_to_string(&self.log).unwrap());
    }

    /// The host's pid of the container's PID 1.
    pub fn leader(&self) -> u32 {
        self.leader
    }

    /// `nsenter` into the container (all its namespaces, its root and its cgroup) with a clean
    /// environment, running `args`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.leader.to_string(), "-m", "-u", "-i", "-n", "-p", "-C", "-r", "-w", "--"]);
        cmd.args(["env", "-i", &format!("PATH={LAB_PATH}"), "LANG=C.UTF-8", "HOME=/root"]);
        cmd.args(args);
        cmd.env_clear().env("PATH", LAB_PATH);
        cmd
    }

    /// Run a shell script in the container.
    pub fn sh(&self, script: &str) -> Output {
        run(self.command(&["sh", "-c", script]).stdin(Stdio::null()))
    }

    /// Its stdout and stderr, whatever the exit status.
    pub fn sh_out(&self, script: &str) -> String {
        crate::stdout_and_stderr(&self.sh(script))
    }

    /// Run a shell script in the container, which must succeed; its stdout.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "in the lab: {script}\nfailed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A user in the container (`useradd -m`, a password for PAM logins); the lab goes with it.
    pub fn useradd(&self, prefix: &str, password: &str) -> LabUser {
        let name = crate::unique(prefix);
        self.sh_ok(&format!("useradd -m -s /bin/sh {name} && echo '{name}:{password}' | chpasswd"));
        let uid = self.sh_ok(&format!("id -u {name}")).trim().parse().unwrap();
        LabUser { name, uid }
    }

    /// Wait (up to `secs`) until `script` succeeds in the container.
    pub fn wait_for(&self, what: &str, secs: u64, script: &str) {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            if self.sh(script).status.success() {
                return;
            }
            assert!(Instant::now() < end, "gave up after {secs} s waiting for {what} in the lab ({script})");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `journalctl --no-pager -q -o cat ARGS` in the container (ARGS may go on with a pipe).
    pub fn journal(&self, args: &str) -> String {
        self.sh_out(&format!("journalctl --no-pager -q -o cat {args}"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- lab {} journal (last 80 lines) ---\n{}",
                self.name,
                self.sh_out("journalctl -b --no-pager -q | tail -80")
            );
        }
        let started = Instant::now();
        // SIGRTMIN+4: systemd's "poweroff".
        let rtmin4 = libc::SIGRTMIN() + 4;
        let _ = run(Command::new("kill").arg(format!("-{rtmin4}")).arg(self.leader.to_string()));
        let end = Instant::now() + Duration::from_secs(20);
        let mut exited = false;
        while !exited && Instant::now() < end {
            exited = matches!(self.nspawn.try_wait(), Ok(Some(_)));
            if !exited {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if !exited {
            let _ = kill(Pid::from_raw(self.leader as i32), Signal::SIGKILL);
            let _ = self.nspawn.kill();
            let _ = self.nspawn.wait();
        }
        eprintln!("systemd lab {}: powered off in {:.2} s", self.name, started.elapsed().as_secs_f64());
        for h in fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            let _ = remove_cgroup_tree(&h.path().join(&self.name));
        }
        let _ = remove_cgroup_tree(&PathBuf::from("/sys/fs/cgroup").join(&self.name));
        let _ = fs::remove_dir_all(&self.shared);
    }
}

/// rmdir a cgroup and everything under it, deepest first.
fn remove_cgroup_tree(dir: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = remove_cgroup_tree(&entry.path());
        }
    }
    fs::remove_dir(dir)
}

/// A user made in a lab container.
pub struct LabUser {
    pub name: String,
    pub uid: u32,
}
