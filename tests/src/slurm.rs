//! A real single-node Slurm for the tests: Debian's munge, slurmctld and slurmd, started by the
//! test with a one-node slurm.conf of its own (free loopback ports, `SlurmUser=root`, state, spool,
//! logs and munge's key and socket under a fresh directory below /run), the shipped Prolog,
//! Epilog and TaskProlog from etc/slurm/ pointed at a copy of the built CLI and a private
//! jupyter-session config; torn down (daemons by pid, the job cgroups Slurm left, the directory)
//! on drop.
//!
//! The directory is below /run, not /tmp: the jupyter-session config must be trusted (no
//! group- or world-writable directory above it), and the job's user must reach the CLI copy and
//! munge's socket in it.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::hub::{free_port, repo_dir, set_mode};
use crate::{StateDir, cli_path, run, run_ok, unique};

/// The commands a Slurm test needs.
pub const TOOLS: &[&str] =
    &["setpriv", "munged", "slurmctld", "slurmd", "sbatch", "sinfo", "squeue", "scancel", "sudo"];

pub struct Slurm {
    pub dir: PathBuf,
    pub conf: PathBuf,
    /// The jupyter-session config the scripts use (state dir: `state`).
    pub js_config: PathBuf,
    pub state: StateDir,
    /// The copy of the built CLI the scripts run.
    pub cli: PathBuf,
    pub node: String,
    /// The PATH the jupyter-session config gives sessions: its first entry is the test's own, so a
    /// job (or a server) that has it got it from the config.
    pub path: String,
    munged: Option<u32>,
    ctld: Option<Child>,
    slurmd: Option<Child>,
}

impl Slurm {
    /// Start munged, slurmctld and slurmd; return once the node is idle. `extra_conf` lines are
    /// appended to slurm.conf; `path` directories go into the sessions' PATH after the test's own.
    pub fn start(extra_conf: &str, path: &[&Path]) -> Slurm {
        let started = Instant::now();
        let dir = PathBuf::from(format!("/run/js-slurm-{}", unique("c")));
        fs::create_dir_all(&dir).unwrap();
        set_mode(&dir, 0o755);
        for d in ["state", "spool", "log", "munge", "bin", "session-bin"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        set_mode(&dir.join("state"), 0o700);
        let munge = nix::unistd::User::from_name("munge").unwrap().expect("the munge user (Debian's munge package)");
        let munge_dir = dir.join("munge");
        let key = munge_dir.join("key");
        run_ok(
            Command::new("dd").arg("if=/dev/urandom").arg(format!("of={}", key.display())).args(["bs=1024", "count=1"]),
        );
        set_mode(&key, 0o400);
        nix::unistd::chown(&munge_dir, Some(munge.uid), Some(munge.gid)).unwrap();
        nix::unistd::chown(&key, Some(munge.uid), Some(munge.gid)).unwrap();
        let node = nix::unistd::gethostname().unwrap().to_string_lossy().into_owned();

        // The CLI where every user can run it (the TaskProlog runs as the job's user).
        let cli = dir.join("bin/jupyter-session");
        fs::copy(cli_path(), &cli).unwrap();
        set_mode(&cli, 0o755);
        let state = StateDir::new();
        let js_config = dir.join("jupyter-session.toml");
        let mut dirs = vec![dir.join("session-bin").display().to_string()];
        dirs.extend(path.iter().map(|p| p.display().to_string()));
        let path = format!("{}:/usr/local/bin:/usr/bin:/bin", dirs.join(":"));
        fs::write(&js_config, format!("state_dir = \"{}\"\npath = \"{path}\"\n", state.0.display())).unwrap();
        set_mode(&js_config, 0o644);
        for script in ["prolog.sh", "epilog.sh", "taskprolog.sh"] {
            let shipped = fs::read_to_string(repo_dir().join("etc/slurm").join(script)).unwrap();
            let mut replaced = 0;
            let text: String = shipped
                .lines()
                .map(|l| {
                    let l = if l.starts_with("JUPYTER_SESSION=") {
                        replaced += 1;
                        format!("JUPYTER_SESSION={}", cli.display())
                    } else if l.starts_with("CONFIG=") {
                        replaced += 1;
                        format!("CONFIG={}", js_config.display())
                    } else {
                        l.to_string()
                    };
                    l + "\n"
                })
                .collect();
            assert_eq!(replaced, 2, "etc/slurm/{script} sets JUPYTER_SESSION= and CONFIG= on lines of their own");
            fs::write(dir.join(script), text).unwrap();
            set_mode(&dir.join(script), 0o755);
        }

        let d = dir.display();
        let conf = dir.join("slurm.conf");
        fs::write(
            &conf,
            format!(
                "ClusterName=jstest\n\
                 SlurmctldHost={node}(127.0.0.1)\n\
                 SlurmctldPort={ctld_port}\n\
                 SlurmdPort={slurmd_port}\n\
                 SlurmUser=root\n\
                 AuthType=auth/munge\n\
                 AuthInfo=socket={d}/munge/sock\n\
                 StateSaveLocation={d}/state\n\
                 SlurmdSpoolDir={d}/spool\n\
                 SlurmctldPidFile={d}/slurmctld.pid\n\
                 SlurmdPidFile={d}/slurmd.pid\n\
                 SlurmctldLogFile={d}/log/slurmctld.log\n\
                 SlurmdLogFile={d}/log/slurmd.log\n\
                 SlurmdDebug=debug\n\
                 ProctrackType=proctrack/cgroup\n\
                 TaskPlugin=task/none\n\
                 PrologFlags=Contain\n\
                 Prolog={d}/prolog.sh\n\
                 Epilog={d}/epilog.sh\n\
                 TaskProlog={d}/taskprolog.sh\n\
                 SchedulerType=sched/builtin\n\
                 SchedulerParameters=batch_sched_delay=0,sched_min_interval=0\n\
                 SelectType=select/cons_tres\n\
                 SelectTypeParameters=CR_Core\n\
                 ReturnToService=2\n\
                 MpiDefault=none\n\
                 KillWait=2\n\
                 NodeName={node} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN\n\
                 PartitionName=test Nodes={node} Default=YES MaxTime=INFINITE State=UP\n\
                 {extra_conf}\n",
                ctld_port = free_port(),
                slurmd_port = free_port(),
            ),
        )
        .unwrap();
        fs::write(dir.join("cgroup.conf"), "CgroupPlugin=cgroup/v1\n").unwrap();

        // As the munge user, as its service runs it.
        let mut munged = Command::new("setpriv");
        munged.arg(format!("--reuid={}", munge.uid)).arg(format!("--regid={}", munge.gid)).arg("--clear-groups");
        munged.arg("munged").arg(format!("--key-file={}", key.display()));
        munged.arg(format!("--socket={}/munge/sock", d)).arg(format!("--pid-file={}/munge/pid", d));
        munged.arg(format!("--log-file={}/munge/log", d)).arg(format!("--seed-file={}/munge/seed", d));
        run_ok(&mut munged);
        let munged_pid = fs::read_to_string(munge_dir.join("pid")).unwrap().trim().parse().unwrap();

        let mut slurm =
            Slurm { dir, conf, js_config, state, cli, node, path, munged: Some(munged_pid), ctld: None, slurmd: None };
        slurm.ctld = Some(slurm.daemon("slurmctld", &["-D", "-i"]));
        slurm.start_slurmd();
        slurm.wait_state("idle", Duration::from_secs(30));
        eprintln!("slurm: node {} idle {:.1} s after starting", slurm.node, started.elapsed().as_secs_f64());
        slurm
    }

    fn daemon(&self, name: &str, args: &[&str]) -> Child {
        let log = fs::File::create(self.dir.join("log").join(format!("{name}.out"))).unwrap();
        Command::new(name)
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"))
    }

    /// Start slurmd (again).
    pub fn start_slurmd(&mut self) {
        assert!(self.slurmd.is_none(), "slurmd already runs");
        self.slurmd = Some(self.daemon("slurmd", &["-D"]));
    }

    /// Stop slurmd (SIGKILL: as if it crashed; the job's slurmstepds go on).
    pub fn kill_slurmd(&mut self) {
        if let Some(mut child) = self.slurmd.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// A Slurm client command as root.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", &self.conf);
        c
    }

    /// A Slurm client command as `user`, as batchspawner runs it (`sudo -u USER`), from their home.
    pub fn cmd_as(&self, user: &crate::TestUser, program: &str) -> Command {
        let mut c = Command::new("sudo");
        c.arg("-u").arg(&user.name).arg("env").arg(format!("SLURM_CONF={}", self.conf.display())).arg(program);
        c.current_dir(&user.home);
        c
    }

    /// `sbatch --parsable ...` with `cmd`: the job id.
    pub fn submit(&self, mut cmd: Command) -> u32 {
        let out = run_ok(cmd.arg("--parsable"));
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim().split(';').next().unwrap().parse().unwrap_or_else(|_| panic!("sbatch printed {text:?}"))
    }

    /// The node's state as `sinfo` says it (`idle`, `mixed`, `drained`...).
    pub fn node_state(&self) -> String {
        let out = run(self.cmd("sinfo").args(["-h", "-N", "-o", "%T"]));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Why the node is drained or down, if it is (`sinfo -R`).
    pub fn node_reason(&self) -> String {
        let out = run(self.cmd("sinfo").args(["-h", "-R", "-o", "%E"]));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn wait_state(&self, want: &str, limit: Duration) {
        let end = Instant::now() + limit;
        loop {
            let state = self.node_state();
            if state == want {
                return;
            }
            assert!(
                Instant::now() < end,
                "node state {state:?} (reason {:?}), not {want:?}, after {limit:?}\n{}",
                self.node_reason(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The job's state (`squeue`), or "" once Slurm no longer lists it.
    pub fn job_state(&self, job: u32) -> String {
        let out = run(self.cmd("squeue").args(["-h", "-o", "%T", "-j", &job.to_string()]));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Wait until no job is listed any more (completed and gone through the Epilog).
    pub fn wait_no_jobs(&self, limit: Duration) {
        let end = Instant::now() + limit;
        loop {
            let out = run(self.cmd("squeue").args(["-h", "-o", "%i %T"]));
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if text.is_empty() {
                return;
            }
            assert!(Instant::now() < end, "jobs still listed after {limit:?}: {text}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The slurmstepds of `job` (`slurmstepd: [JOB.STEP]`).
    pub fn stepds_of(&self, job: u32) -> Vec<u32> {
        let prefix = format!("slurmstepd: [{job}.");
        crate::hub::all_pids().into_iter().filter(|&p| crate::hub::cmdline(p).starts_with(&prefix)).collect()
    }

    /// Every pid in the cgroup at `dir` and below (cgroup v1 `cgroup.procs`).
    pub fn cgroup_pids(&self, dir: &Path) -> Vec<u32> {
        let mut pids: Vec<u32> = fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pids.extend(self.cgroup_pids(&entry.path()));
            }
        }
        pids
    }

    /// The CLI (as root) with the test's config: `jupyter-session ARGS[0] --config CONFIG ARGS[1..]`.
    pub fn js(&self, args: &[&str]) -> Output {
        run(Command::new(&self.cli).arg(args[0]).arg("--config").arg(&self.js_config).args(&args[1..]))
    }

    /// The job cgroup the shipped Prolog binds a session to (cgroup v1, as on these hosts).
    pub fn job_cgroup(&self, uid: u32, job: u32) -> PathBuf {
        PathBuf::from(format!("/sys/fs/cgroup/freezer/slurm_{}/uid_{uid}/job_{job}", self.node))
    }

    /// The last lines of the daemons' logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for log in ["slurmctld.log", "slurmd.log"] {
            let text = fs::read_to_string(self.dir.join("log").join(log)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().filter(|l| !l.contains("pmix")).collect();
            s += &format!("--- {log} (last 30 lines) ---\n{}\n", lines[lines.len().saturating_sub(30)..].join("\n"));
        }
        s
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        let _ = run(self.cmd("scancel").args(["--full", "-u", "root"]));
        self.kill_slurmd();
        if let Some(mut ctld) = self.ctld.take() {
            let _ = kill(Pid::from_raw(ctld.id() as i32), Signal::SIGTERM);
            let end = Instant::now() + Duration::from_secs(5);
            while Instant::now() < end && !matches!(ctld.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = kill(Pid::from_raw(ctld.id() as i32), Signal::SIGKILL);
            let _ = ctld.wait();
        }
        // What this cluster's slurmd started and is left: slurmstepds and their children (the
        // extern step's `sleep`, root's), which carry its SLURM_CONF; then wait for them to go,
        // so their cgroups can be removed.
        let ours = format!("SLURM_CONF={}", self.conf.display());
        let left = || -> Vec<u32> {
            crate::hub::all_pids()
                .into_iter()
                .filter(|&pid| crate::environ_of(pid).iter().any(|(k, v)| format!("{k}={v}") == ours))
                .collect()
        };
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let pids = left();
            if pids.is_empty() || Instant::now() > end {
                break;
            }
            for pid in pids {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(pid) = self.munged.take() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        // Job cgroups Slurm left behind (leaves first; the node's own slurm_NODE dir stays).
        let base = PathBuf::from(format!("/sys/fs/cgroup/freezer/slurm_{}", self.node));
        if let Ok(users) = fs::read_dir(&base) {
            for u in users.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("uid_")) {
                for job in fs::read_dir(u.path()).into_iter().flatten().flatten() {
                    for step in fs::read_dir(job.path()).into_iter().flatten().flatten() {
                        let _ = fs::remove_dir(step.path());
                    }
                    let _ = fs::remove_dir(job.path());
                }
                let _ = fs::remove_dir(u.path());
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
