//! A full PAM round trip through libpam — pam_start, pam_open_session,
//! pam_close_session, pam_end — with pam_jupyter, against the same stack
//! with pam_permit in its place, measured side by side (interleaved, so load
//! on the machine hits both alike). Sequential, then from parallel processes.
//!
//! Run as root (the module creates /run/user/UID for a real user):
//!   cargo build --release --workspace
//!   cargo bench -p jupyter-session-tests --bench pam_roundtrip
//! `JS_BENCH_N` sets the round trips per stack (default 1000). The "no
//! liveness check" row runs with keep_while_processes=false, to show what
//! the last-close check for the user's processes costs on this machine.
//! Every stack is measured twice: with the processes the host has (~100 on
//! the CI VM), then with 10,000 more (`JS_BENCH_HOST_PROCS`), sleeping
//! children of one helper run as another user, killed afterwards.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use jupyter_session_tests::{PamService, StateDir, TestUser};
use session_lib::pam::PamContext;

fn thread_cpu() -> f64 {
    use nix::time::{ClockId, clock_gettime};
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).expect("CLOCK_THREAD_CPUTIME_ID");
    t.tv_sec() as f64 * 1e3 + t.tv_nsec() as f64 / 1e6
}

/// One round trip: (wall ms, CPU ms of this thread, user + kernel). The CPU
/// time is what the stack itself costs, whatever else the machine runs.
fn timed_round_trip(service: &str, user: &str) -> (f64, f64) {
    let (t, cpu) = (Instant::now(), thread_cpu());
    let mut pam = PamContext::start(service, user).expect("pam_start");
    pam.open_session().expect("pam_open_session");
    pam.close_session().expect("pam_close_session");
    pam.end().expect("pam_end");
    (t.elapsed().as_secs_f64() * 1e3, thread_cpu() - cpu)
}

fn round_trip(service: &str, user: &str) -> f64 {
    timed_round_trip(service, user).0
}

struct Stats {
    median: f64,
    p99: f64,
}

fn stats(mut ms: Vec<f64>) -> Stats {
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    Stats { median: at(0.5), p99: at(0.99) }
}

/// Worker mode: `JS_BENCH_WORKER=service:user:count` runs round trips and
/// prints one latency (ms) per line.
fn worker(spec: &str) {
    let mut parts = spec.split(':');
    let (service, user, count) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
    let mut out = std::io::stdout().lock();
    for _ in 0..count.parse::<usize>().unwrap() {
        writeln!(out, "{}", round_trip(service, user)).unwrap();
    }
}

/// `procs` processes doing `each` round trips at once: (sessions/s, stats).
fn parallel(service: &str, user: &str, procs: usize, each: usize) -> (f64, Stats) {
    let exe = std::env::current_exe().unwrap();
    let t = Instant::now();
    let children: Vec<_> = (0..procs)
        .map(|_| {
            Command::new(&exe)
                .env("JS_BENCH_WORKER", format!("{service}:{user}:{each}"))
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut all = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "a worker failed");
        all.extend(String::from_utf8_lossy(&out.stdout).lines().map(|l| l.parse::<f64>().unwrap()));
    }
    let wall = t.elapsed().as_secs_f64();
    (all.len() as f64 / wall, stats(all))
}

/// Processes on the host now (numeric entries of /proc).
fn host_processes() -> usize {
    std::fs::read_dir("/proc")
        .map(|d| d.flatten().filter(|e| e.file_name().to_str().is_some_and(|n| n.parse::<u32>().is_ok())).count())
        .unwrap_or(0)
}

/// `count` sleeping processes of `user` (children of one perl, in a
/// process group of their own), there once this returns.
struct Crowd(Child);

impl Crowd {
    fn spawn(user: &TestUser, count: usize) -> Crowd {
        let script = r#"$| = 1; my $n = shift;
            for (1 .. $n) { my $p = fork; die "fork: $!" unless defined $p; if (!$p) { sleep 1e6 while 1 } }
            print "ready\n"; sleep 1e6 while 1;"#;
        let mut child = Command::new("setpriv")
            .args(["--reuid", &user.uid.to_string(), "--regid", &user.gid.to_string(), "--clear-groups"])
            .args(["perl", "-e", script, &count.to_string()])
            .process_group(0)
            .stdout(Stdio::piped())
            .spawn()
            .expect("setpriv perl");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the helper could not fork {count} processes");
        Crowd(child)
    }
}

impl Drop for Crowd {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(-(self.0.id() as i32));
        let _ = nix::sys::signal::kill(pgid, nix::sys::signal::SIGKILL);
        let _ = self.0.wait();
    }
}

fn main() {
    if let Ok(spec) = std::env::var("JS_BENCH_WORKER") {
        return worker(&spec);
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("pam_roundtrip: needs root (pam_jupyter creates /run/user/UID for a real user); skipped");
        return;
    }
    let n: usize = std::env::var("JS_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let user = TestUser::create("jsbench");
    let state = StateDir::new();
    let module = state.module_line("");
    // tmpfs explicit: the bare rows must not change meaning with the default.
    let module_plain = format!("{module} tmpfs=false");
    let module_noscan = format!("{module} tmpfs=false keep_while_processes=false");
    let module_tmpfs = format!("{module} tmpfs=true");
    let crowd_size: usize = std::env::var("JS_BENCH_HOST_PROCS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    // The bare pair, and a JupyterHub-shaped stack (the shipped
    // /etc/pam.d/jupyterhub's session part) with either module in its slot.
    let realistic = |slot: &str| {
        vec![
            "session required pam_loginuid.so".to_string(),
            "session optional pam_keyinit.so force revoke".to_string(),
            "session required pam_limits.so".to_string(),
            slot.to_string(),
            "session required pam_unix.so".to_string(),
        ]
    };
    let lines = |v: &[String]| v.iter().map(String::as_str).collect::<Vec<_>>().join("\n");
    let pairs = [
        (
            "bare (tmpfs=false)",
            PamService::create("jsbp", &["session required pam_permit.so"]),
            PamService::create("jsbj", &[module_plain.as_str()]),
        ),
        (
            "bare, tmpfs=true",
            PamService::create("jsbp", &["session required pam_permit.so"]),
            PamService::create("jsbj", &[module_tmpfs.as_str()]),
        ),
        (
            "bare, no liveness check",
            PamService::create("jsbp", &["session required pam_permit.so"]),
            PamService::create("jsbj", &[module_noscan.as_str()]),
        ),
        (
            "jupyterhub-shaped (default tmpfs)",
            PamService::create("jsbp", &[lines(&realistic("session required pam_permit.so")).as_str()]),
            PamService::create("jsbj", &[lines(&realistic(&module)).as_str()]),
        ),
    ];
    println!("PAM round trip (pam_start, open_session, close_session, pam_end), {n} each, interleaved:");
    println!("wall: p50/p99 ms; cpu: p50 ms of the calling thread (user + kernel), the same round trips");
    println!(
        "{:<33} {:>6} {:>12} {:>12} {:>7} {:>10} {:>10} {:>7} {:>10} {:>10} {:>7}",
        "stack",
        "procs",
        "permit p50",
        "jupyter p50",
        "ratio",
        "permit p99",
        "jupyter p99",
        "ratio",
        "permit cpu",
        "jupyter cpu",
        "ratio"
    );
    let host_user = TestUser::create("jsbhost");
    // Per stack and level: (procs, [permit p50, jupyter p50, permit cpu p50, jupyter cpu p50]).
    let mut seen: Vec<Vec<(usize, [f64; 4])>> = vec![Vec::new(); pairs.len()];
    for level in 0..2 {
        let _crowd = (level == 1).then(|| Crowd::spawn(&host_user, crowd_size));
        let procs = host_processes();
        for (i, (name, permit, jupyter)) in pairs.iter().enumerate() {
            for _ in 0..20 {
                round_trip(&permit.name, &user.name);
                round_trip(&jupyter.name, &user.name);
            }
            let (mut a, mut b, mut ca, mut cb) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for _ in 0..n {
                let (wall, cpu) = timed_round_trip(&permit.name, &user.name);
                a.push(wall);
                ca.push(cpu);
                let (wall, cpu) = timed_round_trip(&jupyter.name, &user.name);
                b.push(wall);
                cb.push(cpu);
            }
            let (a, b, ca, cb) = (stats(a), stats(b), stats(ca), stats(cb));
            println!(
                "{name:<33} {procs:>6} {:>12.3} {:>12.3} {:>6.2}x {:>10.3} {:>10.3} {:>6.2}x {:>10.3} {:>10.3} {:>6.2}x",
                a.median,
                b.median,
                b.median / a.median,
                a.p99,
                b.p99,
                b.p99 / a.p99,
                ca.median,
                cb.median,
                cb.median / ca.median
            );
            seen[i].push((procs, [a.median, b.median, ca.median, cb.median]));
        }
    }
    println!("from the first to the second process count (p50 at the larger / p50 at the smaller, wall and cpu):");
    for ((name, _, _), levels) in pairs.iter().zip(&seen) {
        let ((p0, [a0, b0, c0, d0]), (p1, [a1, b1, c1, d1])) = (levels[0], levels[1]);
        println!(
            "  {name:<33} {p0} -> {p1} processes: pam_permit {:.2}x / {:.2}x, pam_jupyter {:.2}x / {:.2}x",
            a1 / a0,
            c1 / c0,
            b1 / b0,
            d1 / d0
        );
    }
    let (_, permit, jupyter) = &pairs[0];
    println!("parallel, bare stack, 8 processes x {} round trips each (one user: all contend for one lock):", n / 4);
    for (label, svc) in [("pam_permit", permit), ("pam_jupyter", jupyter)] {
        let (rate, s) = parallel(&svc.name, &user.name, 8, n / 4);
        println!("  {label:<12} {rate:>8.0} sessions/s   p50 {:.3} ms   p99 {:.3} ms", s.median, s.p99);
    }
    assert!(!user.runtime_dir().exists(), "every session closed: the runtime dir is gone");
}
