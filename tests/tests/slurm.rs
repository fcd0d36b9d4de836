//! The Slurm recipe on a real single-node Slurm (Debian's slurm-wlm and munge, started by the
//! harness in tests/src/slurm.rs with the shipped etc/slurm/ Prolog, Epilog and TaskProlog): jobs
//! of real users get their session and lose it when the last one ends, nothing an ordinary job
//! does drains the node, and a session whose Epilog never ran is reaped by `gc`.
//!
//! One cluster per test, one test at a time (starting one takes about a second); in
//! `slurm_recipe` the scenarios run one after another on one cluster on purpose: each checks that
//! the node is idle, i.e. not drained, at its end. Jobs wait for flag files the test writes, never
//! for fixed times.
#![forbid(unsafe_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jupyter_session_tests::hub::{self, Hub, env_var, free_port, live_processes, make_busybox_image, set_mode};
use jupyter_session_tests::slurm::{self, Slurm};
use jupyter_session_tests::{PamService, TestUser, environ_of, require_root, run_ok, stdout_and_stderr};

const LIMIT: Duration = Duration::from_secs(30);

fn wait_file(path: &Path, slurm: &Slurm) {
    let end = Instant::now() + LIMIT;
    while !path.exists() {
        assert!(Instant::now() < end, "{} did not appear in {LIMIT:?}\n{}", path.display(), slurm.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_gone(job: u32, slurm: &Slurm) {
    let end = Instant::now() + LIMIT;
    while !slurm.job_state(job).is_empty() {
        assert!(Instant::now() < end, "job {job} still listed after {LIMIT:?}\n{}", slurm.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A directory where the test and the job's user exchange flag files and outputs.
fn exchange(slurm: &Slurm, user: &TestUser, name: &str) -> PathBuf {
    let d = slurm.dir.join(name);
    fs::create_dir_all(&d).unwrap();
    std::os::unix::fs::chown(&d, Some(user.uid), Some(user.gid)).unwrap();
    d
}

/// `sbatch` as `user` of a job script that writes its environment to `dir/NAME.env`, then runs
/// `body`, touches `dir/NAME.ready` and waits for `dir/NAME.go`.
fn submit_waiting(slurm: &Slurm, user: &TestUser, dir: &Path, name: &str, body: &str) -> u32 {
    let d = dir.display();
    let script = format!(
        "env > {d}/{name}.env; {body} touch {d}/{name}.ready; while [ ! -e {d}/{name}.go ]; do sleep 0.05; done"
    );
    let mut cmd = slurm.cmd_as(user, "sbatch");
    cmd.args(["--no-requeue", "-o", &format!("{d}/{name}.out"), "--wrap", &script]);
    slurm.submit(cmd)
}

fn env_file(path: PathBuf) -> Vec<(String, String)> {
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

fn list_ids(slurm: &Slurm) -> Vec<String> {
    let o = slurm.js(&["list", "--json"]);
    assert!(o.status.success(), "{}", stdout_and_stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["sessions"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap_or("-").to_string()).collect()
}

fn assert_idle(slurm: &Slurm, after: &str) {
    // Drained or down shows at once in sinfo; give a completing job a moment to finish.
    slurm.wait_no_jobs(LIMIT);
    let state = slurm.node_state();
    assert_eq!(state, "idle", "after {after}: node {state} ({})\n{}", slurm.node_reason(), slurm.logs());
}

/// Both tests make cgroups under the node's `slurm_NODE`, named by uid and job id, and each
/// cluster numbers its jobs from 1: one cluster at a time.
fn one_cluster_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn slurm_recipe() {
    if !require_root("slurm_recipe", slurm::TOOLS) || !require_root("slurm_recipe", &["podman", "busybox"]) {
        return;
    }
    let t0 = Instant::now();
    let _one = one_cluster_at_a_time();
    let mut slurm = Slurm::start("", &[]);
    let alice = TestUser::create("jsl");
    let bob = TestUser::create("jsl");
    alice.podman_without_network();

    // 1. A batch job sees its session and runs rootless podman in it; a second job of the same
    // user shares the dir; the dir stays until the last one ends.
    let step = Instant::now();
    let x = exchange(&slurm, &alice, "x-alice");
    let tar = x.join("bb.tar");
    make_busybox_image(&slurm.dir.join("bb-rootfs"), &tar);
    set_mode(&tar, 0o644);
    let podman = format!(
        "podman import --quiet {tar} localhost/bb >/dev/null && podman run --rm --network none --runtime runc localhost/bb id > {x}/pod.out 2>&1;",
        tar = tar.display(),
        x = x.display()
    );
    let job1 = submit_waiting(&slurm, &alice, &x, "one", &podman);
    let job2 = submit_waiting(&slurm, &alice, &x, "two", "");
    wait_file(&x.join("one.ready"), &slurm);
    wait_file(&x.join("two.ready"), &slurm);
    let rt = alice.runtime_dir();
    for name in ["one", "two"] {
        let env = env_file(x.join(format!("{name}.env")));
        assert_eq!(env_var(&env, "XDG_RUNTIME_DIR"), rt.to_str(), "job {name}: XDG_RUNTIME_DIR");
        assert_eq!(env_var(&env, "PATH"), Some(slurm.path.as_str()), "job {name}: PATH from the config");
    }
    assert_eq!(jupyter_session_tests::owner_mode(&rt), Some((alice.uid, alice.gid, 0o700)));
    let pod = fs::read_to_string(x.join("pod.out")).unwrap_or_default();
    assert!(pod.contains("uid=0(root)"), "rootless podman in the job: {pod}");
    let ids = list_ids(&slurm);
    assert!(ids.contains(&format!("slurm-{job1}")) && ids.contains(&format!("slurm-{job2}")), "{ids:?}");
    fs::write(x.join("one.go"), "").unwrap();
    wait_gone(job1, &slurm);
    assert!(rt.is_dir(), "the second job still runs: the dir stays");
    assert_eq!(list_ids(&slurm), vec![format!("slurm-{job2}")]);
    fs::write(x.join("two.go"), "").unwrap();
    wait_gone(job2, &slurm);
    assert!(!rt.exists(), "the last job ended: {} removed", rt.display());
    assert!(list_ids(&slurm).is_empty());
    assert_idle(&slurm, "two jobs of one user");
    eprintln!("slurm: two jobs, podman, last removes: {:.1} s", step.elapsed().as_secs_f64());

    // 2. scancel of a running job ends its session.
    let step = Instant::now();
    let job = submit_waiting(&slurm, &alice, &x, "cancel", "");
    wait_file(&x.join("cancel.ready"), &slurm);
    assert!(rt.is_dir());
    run_ok(slurm.cmd("scancel").arg(job.to_string()));
    wait_gone(job, &slurm);
    assert!(!rt.exists(), "scancel: {} removed", rt.display());
    assert!(list_ids(&slurm).is_empty());
    assert_idle(&slurm, "scancel");
    eprintln!("slurm: scancel: {:.1} s", step.elapsed().as_secs_f64());

    // 3. A root job: no session (no /run/user/0), no PATH from the config, and no drain.
    let step = Instant::now();
    let rootx = slurm.dir.join("x-root");
    fs::create_dir_all(&rootx).unwrap();
    let job = slurm.submit({
        let mut c = slurm.cmd("sbatch");
        c.current_dir(&rootx);
        c.args(["--no-requeue", "-o", "/dev/null", "--wrap", &format!("env > {}/root.env", rootx.display())]);
        c
    });
    wait_gone(job, &slurm);
    let env = env_file(rootx.join("root.env"));
    assert_eq!(env_var(&env, "XDG_RUNTIME_DIR"), None, "a root job gets no XDG_RUNTIME_DIR");
    assert_ne!(env_var(&env, "PATH"), Some(slurm.path.as_str()), "the TaskProlog prints nothing for root");
    assert!(!Path::new("/run/user/0").exists());
    assert_idle(&slurm, "a root job");
    eprintln!("slurm: root job: {:.1} s", step.elapsed().as_secs_f64());

    // 4. A step-less allocation (salloc --no-shell: the Prolog and Epilog run, no step ever does).
    let step = Instant::now();
    let o = run_ok(slurm.cmd_as(&bob, "salloc").args(["--no-shell", "-N1"]));
    let text = stdout_and_stderr(&o);
    let alloc: u32 = text
        .split_whitespace()
        .skip_while(|w| *w != "allocation")
        .nth(1)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("salloc said: {text}"));
    let end = Instant::now() + LIMIT;
    while !list_ids(&slurm).contains(&format!("slurm-{alloc}")) {
        assert!(Instant::now() < end, "no session for the allocation {alloc}\n{}", slurm.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    run_ok(slurm.cmd("scancel").arg(alloc.to_string()));
    wait_gone(alloc, &slurm);
    assert!(!bob.runtime_dir().exists() && list_ids(&slurm).is_empty());
    assert_idle(&slurm, "a step-less allocation");
    eprintln!("slurm: step-less allocation: {:.1} s", step.elapsed().as_secs_f64());

    // 5. Reused job ids (a record left by an earlier life of the cluster, whose Epilog never
    // ran): the same user's is opened again, another user's whose cgroup is gone is reaped.
    let step = Instant::now();
    let next = alloc + 1;
    let o = slurm.js(&["open", "--user", &alice.name, "--id", &format!("slurm-{next}"), "--service", "slurm"]);
    assert!(o.status.success(), "{}", stdout_and_stderr(&o));
    let job = submit_waiting(&slurm, &alice, &x, "reuse", "");
    assert_eq!(job, next, "Slurm numbers jobs one after another");
    wait_file(&x.join("reuse.ready"), &slurm);
    assert_eq!(list_ids(&slurm), vec![format!("slurm-{job}")]);
    fs::write(x.join("reuse.go"), "").unwrap();
    wait_gone(job, &slurm);
    assert!(!rt.exists() && list_ids(&slurm).is_empty(), "the reused id closed with its job");
    assert_idle(&slurm, "a job id open for the same user");
    let next = job + 1;
    let dead = slurm.job_cgroup(bob.uid, next);
    let o = slurm.js(&[
        "open",
        "--user",
        &bob.name,
        "--id",
        &format!("slurm-{next}"),
        "--bind-cgroup",
        dead.to_str().unwrap(),
        "--appear-within",
        "0",
    ]);
    assert!(o.status.success(), "{}", stdout_and_stderr(&o));
    assert!(bob.runtime_dir().is_dir());
    let job = submit_waiting(&slurm, &alice, &x, "reuse2", "");
    assert_eq!(job, next);
    wait_file(&x.join("reuse2.ready"), &slurm);
    assert_eq!(list_ids(&slurm), vec![format!("slurm-{job}")], "bob's stale record was reaped");
    assert!(!bob.runtime_dir().exists(), "and bob's dir went with it");
    fs::write(x.join("reuse2.go"), "").unwrap();
    wait_gone(job, &slurm);
    assert_idle(&slurm, "a job id left by another user's job");
    eprintln!("slurm: reused ids: {:.1} s", step.elapsed().as_secs_f64());

    // 6. A job that ends while slurmd is down: once slurmd is back, the session is gone (slurmd
    // finds the job's slurmstepd, learns the job is over and runs the Epilog) and gc has nothing
    // left to do.
    let step = Instant::now();
    let job = submit_waiting(&slurm, &alice, &x, "down", "");
    wait_file(&x.join("down.ready"), &slurm);
    let cgroup = slurm.job_cgroup(alice.uid, job);
    assert!(cgroup.is_dir(), "{} is the job's cgroup", cgroup.display());
    slurm.kill_slurmd();
    fs::write(x.join("down.go"), "").unwrap();
    // The batch step ends and tells slurmctld; the job waits in COMPLETING for slurmd.
    let end = Instant::now() + LIMIT;
    while slurm.job_state(job) != "COMPLETING" {
        assert!(Instant::now() < end, "job {job}: {}\n{}", slurm.job_state(job), slurm.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(list_ids(&slurm).contains(&format!("slurm-{job}")), "no Epilog without slurmd");
    slurm.start_slurmd();
    slurm.wait_state("idle", LIMIT);
    let end = Instant::now() + LIMIT;
    while !list_ids(&slurm).is_empty() || rt.exists() {
        assert!(
            Instant::now() < end,
            "session {:?} / {} still there\n{}",
            list_ids(&slurm),
            rt.display(),
            slurm.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_idle(&slurm, "a job that ended while slurmd was down");
    eprintln!("slurm: slurmd down, job ended: {:.1} s", step.elapsed().as_secs_f64());

    // 7. slurmd and the job's slurmstepds die (SIGKILL, as by the OOM killer) and the job's
    // processes end: no Epilog ever runs for it, its cgroup is left behind empty. Plain `gc`
    // (no age limit) reaps the session; a running job's session stays.
    let step = Instant::now();
    let keep = submit_waiting(&slurm, &bob, &exchange(&slurm, &bob, "x-bob"), "keep", "");
    let job = submit_waiting(&slurm, &alice, &x, "crash", "");
    wait_file(&x.join("crash.ready"), &slurm);
    wait_file(&slurm.dir.join("x-bob/keep.ready"), &slurm);
    // The admin's periodic gc while both jobs run: both keep their sessions.
    let o = slurm.js(&["gc"]);
    assert!(o.status.success() && !stdout_and_stderr(&o).contains("reaped"), "{}", stdout_and_stderr(&o));
    assert_eq!(list_ids(&slurm).len(), 2);
    slurm.kill_slurmd();
    let stepds = slurm.stepds_of(job);
    assert!(!stepds.is_empty(), "job {job} has slurmstepds");
    let kill = |pid: u32| {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::SIGKILL);
    };
    stepds.into_iter().for_each(kill);
    alice.kill_processes();
    // SIGKILL is asynchronous: until every process has left the job's cgroup.
    let end = Instant::now() + LIMIT;
    loop {
        let pids = slurm.cgroup_pids(&slurm.job_cgroup(alice.uid, job));
        if pids.is_empty() {
            break;
        }
        assert!(Instant::now() < end, "processes {pids:?} stay in job {job}'s cgroup");
        pids.into_iter().for_each(kill);
        std::thread::sleep(Duration::from_millis(20));
    }
    slurm.start_slurmd();
    // Both jobs still allocated to the node, which answers again.
    slurm.wait_state("allocated", LIMIT);
    // No Epilog ran for it: its record is left (read from the state dir: `list` would reap it).
    assert_eq!(slurm.state.records(alice.uid), 1, "job {job}'s record is left");
    let o = slurm.js(&["gc"]);
    let gc = stdout_and_stderr(&o);
    assert!(o.status.success(), "{gc}");
    assert!(gc.contains(&format!("reaped session slurm-{job} of {}", alice.name)), "{gc}");
    assert!(!rt.exists(), "gc removed {}: {gc}", rt.display());
    assert_eq!(list_ids(&slurm), vec![format!("slurm-{keep}")], "the running job keeps its session");
    fs::write(slurm.dir.join("x-bob/keep.go"), "").unwrap();
    wait_gone(keep, &slurm);
    run_ok(slurm.cmd("scancel").arg(job.to_string()));
    wait_gone(job, &slurm);
    assert_idle(&slurm, "a job whose slurmstepds were killed");
    eprintln!("slurm: slurmd and stepds killed, gc: {:.1} s", step.elapsed().as_secs_f64());

    // 8. A time limit (`--time=1`, Slurm's floor: killed 60 to 90 s after the start) ends the job
    // and its session like scancel: the Epilog runs at the job's end, whatever ended it.
    let step = Instant::now();
    let d = x.display();
    let script = format!("touch {d}/limit.ready; while :; do sleep 0.2; done");
    let mut cmd = slurm.cmd_as(&alice, "sbatch");
    cmd.args(["--no-requeue", "--time=1", "-o", &format!("{d}/limit.out"), "--wrap", &script]);
    let job = slurm.submit(cmd);
    wait_file(&x.join("limit.ready"), &slurm);
    assert!(rt.is_dir(), "the time-limited job has its session");
    let end = Instant::now() + Duration::from_secs(180);
    while !slurm.job_state(job).is_empty() {
        assert!(Instant::now() < end, "job {job} outlived its one-minute limit by far\n{}", slurm.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = fs::read_to_string(x.join("limit.out")).unwrap_or_default();
    assert!(out.contains("TIME LIMIT"), "job {job} did not end by its time limit: {out}");
    assert!(!rt.exists(), "time limit: {} removed", rt.display());
    assert!(list_ids(&slurm).is_empty());
    assert_idle(&slurm, "a job ended by its time limit");
    eprintln!("slurm: time limit: {:.1} s", step.elapsed().as_secs_f64());

    eprintln!("slurm_recipe: {:.1} s in all", t0.elapsed().as_secs_f64());
}

/// Where batchspawner's hub venv lives (0755, readable by the job's user, who runs the server
/// from it); not the jupyterhub tests' venv, which holds other packages.
const HUB_ROOT: &str = "/var/tmp/slurm-jupyter-session-hub-test";
const HUB_PACKAGES: &[&str] =
    &["jupyterhub>=5,<7", "jupyter_server>=2,<3", "batchspawner==1.3.0", "requests", "setuptools>=61", "wheel"];

/// batchspawner 1.3.0's SlurmSpawner from a real hub (PAMAuthenticator, HTTP login): the server
/// runs in a Slurm job (`sudo -E -u USER sbatch`, then `srun` for the server step) and has its
/// session and the config's PATH (from the TaskProlog); stopping it (scancel) removes the dir.
#[test]
fn batchspawner_slurm_spawner() {
    let tools = [slurm::TOOLS, &["npm", "node", "chpasswd"]].concat();
    if !require_root("batchspawner_slurm_spawner", &tools) {
        return;
    }
    let inst = hub::install(HUB_ROOT, HUB_PACKAGES, "batchspawner", |root, _| {
        let tar = root.join("bb.tar");
        make_busybox_image(&root.join("bb-rootfs"), &tar);
        tar
    });
    let _one = one_cluster_at_a_time();
    let slurm = Slurm::start("", &[&inst.venv.join("bin")]);
    let erin = TestUser::create("jsb");
    let password = "jupyter-slurm-Pw1";
    erin.set_password(password);
    let login = PamService::create("jsbl", &["auth include common-auth", "account include common-account"]);
    let dir = slurm.dir.join("hub");
    fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let mut config = hub::base_config(&inst, &dir, port, &login.name, &[&erin]);
    // SLURM_CONF reaches sbatch (through `sudo -E`) and the job (`--export`) as a variable the
    // spawner keeps; the one node is this host, reached at 127.0.0.1 whatever its name resolves to.
    config += &format!(
        "import os\n\
         os.environ['SLURM_CONF'] = {conf:?}\n\
         c.JupyterHub.spawner_class = 'batchspawner.SlurmSpawner'\n\
         c.Spawner.env_keep = ['SLURM_CONF']\n\
         c.SlurmSpawner.state_exechost_exp = '127.0.0.1'\n\
         c.SlurmSpawner.batchspawner_singleuser_cmd = {bs:?}\n\
         c.Spawner.cmd = [{su:?}]\n",
        conf = slurm.conf.display().to_string(),
        bs = inst.bin("batchspawner-singleuser").display().to_string(),
        su = inst.bin("jupyterhub-singleuser").display().to_string(),
    );
    let started = Instant::now();
    let hub = Hub::start(&inst, &dir, &config, port, None);
    let token = hub.login_and_start(&erin, password);
    // The server (batchspawner-singleuser runs jupyterhub-singleuser in its own process), not
    // `srun` and its helper, whose command lines name it too.
    let pids: Vec<u32> = live_processes(erin.uid, "jupyterhub-singleuser")
        .into_iter()
        .filter(|&p| !hub::cmdline(p).starts_with("srun"))
        .collect();
    let cmdlines: Vec<String> = pids.iter().map(|&p| hub::cmdline(p)).collect();
    assert_eq!(pids.len(), 1, "one server of {}: {cmdlines:?}\n{}", erin.name, slurm.logs());
    let env = environ_of(pids[0]);
    let rt = erin.runtime_dir();
    assert_eq!(env_var(&env, "XDG_RUNTIME_DIR"), rt.to_str(), "the server's XDG_RUNTIME_DIR");
    assert_eq!(env_var(&env, "PATH"), Some(slurm.path.as_str()), "the server's PATH is the config's");
    assert!(env_var(&env, "SLURM_JOB_ID").is_some(), "the server runs in a Slurm job");
    assert_eq!(jupyter_session_tests::owner_mode(&rt), Some((erin.uid, erin.gid, 0o700)));
    eprintln!(
        "batchspawner: server in its job with its session {:.1} s after the hub started",
        started.elapsed().as_secs_f64()
    );
    hub.stop_server(&erin, &token);
    slurm.wait_no_jobs(LIMIT);
    let end = Instant::now() + LIMIT;
    while rt.exists() {
        assert!(Instant::now() < end, "{} still there after the server stopped\n{}", rt.display(), slurm.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(list_ids(&slurm).is_empty());
    assert_idle(&slurm, "a SlurmSpawner server");
    drop(hub);
}
