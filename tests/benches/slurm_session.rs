//! Time from a Slurm job's start to a usable session in the job: what the shipped scripts add to
//! every job's start, on a real single-node Slurm (tests/src/slurm.rs).
//!
//! 1. The Prolog alone (etc/slurm/prolog.sh as slurmd runs it: root, the job's SLURM_* variables;
//!    `open --bind-cgroup`, which makes the user's tmpfs), then the Epilog (`close`, which removes
//!    it), N times each, interleaved.
//! 2. The TaskProlog alone (etc/slurm/taskprolog.sh as the job's user: `jupyter-session env`).
//! 3. End to end, N jobs one after another: from `sbatch` returning to the job's first command
//!    running with `XDG_RUNTIME_DIR` usable (it writes a timestamp), which includes Slurm's own
//!    scheduling and launch, and the same with the job only reading the clock (Prolog and
//!    TaskProlog still run: they are configured; the difference is the job's own check).
//!
//! Run as root: `cargo build --release --workspace && cargo bench -p jupyter-session-tests
//! --bench slurm_session` (SLURM_BENCH_N sets N, default 20).
#![forbid(unsafe_code)]

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jupyter_session_tests::slurm::{self, Slurm};
use jupyter_session_tests::*;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(what: &str, mut ms: Vec<f64>) {
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{what:<58} n={:<3} median {:>7.1} ms  p90 {:>7.1} ms  min {:>7.1} ms  max {:>7.1} ms",
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.9),
        ms[0],
        ms[ms.len() - 1]
    );
}

fn timed(cmd: &mut Command) -> f64 {
    let start = Instant::now();
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    assert!(out.status.success(), "{cmd:?}: {}", stdout_and_stderr(&out));
    ms
}

fn now_s() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

fn main() {
    let tools = [slurm::TOOLS, &["setpriv"]].concat();
    if !nix::unistd::geteuid().is_root() || tools.iter().any(|t| which(t).is_none()) {
        eprintln!("SKIPPED slurm_session bench: needs root and {tools:?}");
        return;
    }
    let n: usize = std::env::var("SLURM_BENCH_N").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let slurm = Slurm::start("", &[]);
    let user = TestUser::create("jsbn");
    let job_env = |job: u32| {
        let mut c = Command::new(slurm.dir.join("prolog.sh"));
        c.env_clear()
            .env("SLURM_JOB_ID", job.to_string())
            .env("SLURM_JOB_USER", &user.name)
            .env("SLURM_JOB_UID", user.uid.to_string())
            .env("SLURMD_NODENAME", &slurm.node)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        c
    };

    // 1. Prolog and Epilog, by hand (job ids far above what Slurm hands out here).
    let (mut prolog, mut epilog) = (Vec::new(), Vec::new());
    for i in 0..n as u32 {
        let job = 900_000 + i;
        prolog.push(timed(&mut job_env(job)));
        assert!(user.runtime_dir().is_dir());
        let mut e = Command::new(slurm.dir.join("epilog.sh"));
        e.env_clear().env("SLURM_JOB_ID", job.to_string()).env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        epilog.push(timed(&mut e));
        assert!(!user.runtime_dir().exists());
    }
    report("Prolog (open, tmpfs made, bound to the job cgroup)", prolog);
    report("Epilog (close, tmpfs removed)", epilog);

    // 2. TaskProlog as the user, with the session open.
    assert!(job_env(899_999).output().unwrap().status.success());
    let mut task = Vec::new();
    for _ in 0..n {
        let mut c = Command::new("setpriv");
        c.args(["--reuid", &user.uid.to_string(), "--regid", &user.gid.to_string(), "--init-groups"]);
        c.arg(slurm.dir.join("taskprolog.sh")).env_clear().env("PATH", "/usr/bin:/bin");
        task.push(timed(&mut c));
    }
    report("TaskProlog (jupyter-session env, as the user)", task);
    let _ = slurm.js(&["close", "--id", "slurm-899999"]);

    // 3. End to end through Slurm.
    let x = slurm.dir.join("bench");
    fs::create_dir_all(&x).unwrap();
    std::os::unix::fs::chown(&x, Some(user.uid), Some(user.gid)).unwrap();
    for (what, check) in [
        ("sbatch -> job's first command, session usable", "test -O \"$XDG_RUNTIME_DIR\" -a -d \"$XDG_RUNTIME_DIR\" &&"),
        ("sbatch -> job's first command, no check", ""),
    ] {
        let mut ms = Vec::new();
        for i in 0..n {
            let stamp = x.join(format!("t{i}"));
            let _ = fs::remove_file(&stamp);
            let script = format!("{check} date +%s.%N > {}", stamp.display());
            let mut cmd = slurm.cmd_as(&user, "sbatch");
            cmd.args(["-o", "/dev/null", "--wrap", &script]);
            let job = slurm.submit(cmd);
            let submitted = now_s();
            let end = Instant::now() + Duration::from_secs(60);
            while !stamp.exists() || fs::read_to_string(&stamp).unwrap_or_default().trim().is_empty() {
                assert!(Instant::now() < end, "job {job} wrote no timestamp\n{}", slurm.logs());
                std::thread::sleep(Duration::from_millis(5));
            }
            let t: f64 = fs::read_to_string(&stamp).unwrap().trim().parse().unwrap();
            ms.push((t - submitted) * 1000.0);
            slurm.wait_no_jobs(Duration::from_secs(60));
        }
        report(what, ms);
    }
}
