//! A full PAM round trip through libpam — pam_start, pam_open_session,
//! pam_close_session, pam_end — with pam_jupyter, against the same stack
//! with pam_permit in its place, measured side by side (interleaved, so load
//! on the machine hits both alike). Sequential, then from parallel processes.
//!
//! Run as root (the module creates /run/user/UID for a real user):
//!   cargo build --release --workspace
//!   cargo bench -p jupyter-session-tests --bench pam_roundtrip
//! `JS_BENCH_N` sets the round trips per stack (default 1000). The "no /proc
//! scan" row runs with keep_while_processes=false, to show what the
//! last-close scan for the user's processes costs on this machine; the
//! "plain dir" row with tmpfs=false, to show what mounting and unmounting
//! the per-user tmpfs (the default) costs.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use jupyter_session_tests::{PamService, StateDir, TestUser};
use session_lib::pam::PamContext;

fn round_trip(service: &str, user: &str) -> f64 {
    let t = Instant::now();
    let mut pam = PamContext::start(service, user).expect("pam_start");
    pam.open_session().expect("pam_open_session");
    pam.close_session().expect("pam_close_session");
    pam.end().expect("pam_end");
    t.elapsed().as_secs_f64() * 1e3
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
    let module_noscan = format!("{module} keep_while_processes=false");
    let module_plain = format!("{module} tmpfs=false");
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
            "bare stack",
            PamService::create("jsbp", &["session required pam_permit.so"]),
            PamService::create("jsbj", &[module.as_str()]),
        ),
        (
            "bare, no /proc scan",
            PamService::create("jsbp", &["session required pam_permit.so"]),
            PamService::create("jsbj", &[module_noscan.as_str()]),
        ),
        (
            "bare, plain dir",
            PamService::create("jsbp", &["session required pam_permit.so"]),
            PamService::create("jsbj", &[module_plain.as_str()]),
        ),
        (
            "jupyterhub-shaped stack",
            PamService::create("jsbp", &[lines(&realistic("session required pam_permit.so")).as_str()]),
            PamService::create("jsbj", &[lines(&realistic(&module)).as_str()]),
        ),
    ];
    println!("PAM round trip (pam_start, open_session, close_session, pam_end), {n} each, interleaved:");
    println!(
        "{:<24} {:>14} {:>14} {:>10} {:>10} {:>7}",
        "stack", "permit p50 ms", "jupyter p50 ms", "permit p99", "jupyter p99", "ratio"
    );
    for (name, permit, jupyter) in &pairs {
        for _ in 0..20 {
            round_trip(&permit.name, &user.name);
            round_trip(&jupyter.name, &user.name);
        }
        let (mut a, mut b) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..n {
            a.push(round_trip(&permit.name, &user.name));
            b.push(round_trip(&jupyter.name, &user.name));
        }
        let (a, b) = (stats(a), stats(b));
        println!(
            "{name:<24} {:>14.3} {:>14.3} {:>10.3} {:>10.3} {:>6.2}x",
            a.median,
            b.median,
            a.p99,
            b.p99,
            b.median / a.median
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
