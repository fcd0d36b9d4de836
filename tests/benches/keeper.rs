//! The session keeper's cost, side by side with util-linux runuser.
//!
//! 1. Latency, N runs each, interleaved (so drift hits all alike), wall
//!    time of the whole process:
//!    - `jupyter-session exec --service <shipped Debian stack with
//!      pam_jupyter> --user U -- true`
//!    - the same with pam_loginuid left out of the stack (its write of
//!      /proc/self/loginuid goes through the audit subsystem)
//!    - `jupyter-session exec --service <runuser-l's stack + pam_jupyter>
//!      --user U -- true` (the PAM stack runuser -l uses, plus the module
//!      the keeper requires: it refuses a stack without pam_jupyter)
//!    - `runuser -l U -c true` (a PAM session too, plus a login shell)
//! 2. Burst: 200 keepers for 50 users started at once, each checking its
//!    runtime dir; errors (must be 0) and the time until all are done.
//!
//! Run as root: `cargo build --release --workspace && cargo bench -p
//! jupyter-session-tests --bench keeper` (set KEEPER_BENCH_N to change N).
#![forbid(unsafe_code)]

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use jupyter_session_tests::*;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The shipped stack, with `drop` lines left out.
fn shipped_stack(state: &StateDir, drop: &str) -> PamService {
    let text = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../etc/pam.d/jupyterhub.debian"))
        .expect("etc/pam.d/jupyterhub.debian");
    let module = format!("@MODULE@ {}", state.arg());
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .filter(|l| drop.is_empty() || !l.contains(drop))
        .map(|l| l.replace("pam_jupyter.so", &module))
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    PamService::create("jskb", &refs)
}

fn time_ms(cmd: &mut Command) -> f64 {
    let start = Instant::now();
    let status = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).output().unwrap();
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    assert!(status.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&status.stderr));
    ms
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED keeper bench: needs root (real users and PAM sessions)");
        return;
    }
    let n: usize = std::env::var("KEEPER_BENCH_N").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    let cli = cli_path();
    let state = StateDir::new();
    let svc = shipped_stack(&state, "");
    let no_loginuid = shipped_stack(&state, "pam_loginuid");
    let u = TestUser::create("jskb");
    let uname = String::from_utf8_lossy(&run(Command::new("uname").arg("-sr")).stdout).trim().to_string();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!("machine: {uname}, {cpus} CPUs; binary {}", cli.display());
    let has_runuser_l = Path::new("/etc/pam.d/runuser-l").is_file();
    // runuser -l's own stack plus pam_jupyter (the keeper refuses a session pam_jupyter did not open).
    let runuser_stack = has_runuser_l.then(|| {
        let text = fs::read_to_string("/etc/pam.d/runuser-l").unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.push(state.module_line(""));
        PamService::create("jskr", &lines.iter().map(String::as_str).collect::<Vec<_>>())
    });

    // Warm-up (page cache, NSS).
    for _ in 0..5 {
        time_ms(keeper_cmd().args(exec_args(&svc.name, &u.name, &["true"])));
        time_ms(Command::new("runuser").args(["-l", &u.name, "-c", "true"]));
    }
    let mut keeper = Vec::with_capacity(n);
    let mut keeper_same = Vec::with_capacity(n);
    let mut keeper_no_loginuid = Vec::with_capacity(n);
    let mut runuser = Vec::with_capacity(n);
    for _ in 0..n {
        keeper.push(time_ms(keeper_cmd().args(exec_args(&svc.name, &u.name, &["true"]))));
        keeper_no_loginuid.push(time_ms(keeper_cmd().args(exec_args(&no_loginuid.name, &u.name, &["true"]))));
        if let Some(same) = &runuser_stack {
            keeper_same.push(time_ms(keeper_cmd().args(exec_args(&same.name, &u.name, &["true"]))));
        }
        runuser.push(time_ms(Command::new("runuser").args(["-l", &u.name, "-c", "true"])));
    }
    assert_eq!(state.records(u.uid), 0, "every keeper closed its session");
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (percentile(v, 0.5), percentile(v, 0.9))
    };
    let (k50, k90) = stats(&mut keeper);
    let (r50, r90) = stats(&mut runuser);
    println!("\nlatency, N={n} each, interleaved (wall ms of the whole process)");
    println!("| command | median ms | p90 ms |");
    println!("| --- | ---: | ---: |");
    println!("| `jupyter-session exec --user U -- true` (shipped stack, pam_jupyter) | {k50:.2} | {k90:.2} |");
    let (l50, l90) = stats(&mut keeper_no_loginuid);
    println!("| the same without pam_loginuid | {l50:.2} | {l90:.2} |");
    if has_runuser_l {
        let (s50, s90) = stats(&mut keeper_same);
        println!(
            "| `jupyter-session exec --service <runuser-l + pam_jupyter> --user U -- true` | {s50:.2} | {s90:.2} |"
        );
    }
    println!("| `runuser -l U -c true` | {r50:.2} | {r90:.2} |");
    println!("ratio exec/runuser: median {:.2}, p90 {:.2}", k50 / r50, k90 / r90);
    drop(u);

    // Burst: 200 keepers for 50 users at once.
    let users: Vec<TestUser> = (0..50).map(|_| TestUser::create("jskb")).collect();
    let check = r#"test -O "$XDG_RUNTIME_DIR" && test "$(stat -c %a "$XDG_RUNTIME_DIR")" = 700 && test "$(id -u)" = "${XDG_RUNTIME_DIR##*/}""#;
    let start = Instant::now();
    let children: Vec<_> = (0..200)
        .map(|i| {
            let user = &users[i % users.len()];
            keeper_cmd()
                .args(exec_args(&svc.name, &user.name, &["sh", "-c", check]))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut errors = 0;
    for c in children {
        let o = c.wait_with_output().unwrap();
        if !o.status.success() {
            errors += 1;
            eprintln!("keeper failed ({}): {}", o.status, String::from_utf8_lossy(&o.stderr));
        }
    }
    let all_done = start.elapsed().as_secs_f64() * 1000.0;
    let leftovers = users.iter().filter(|u| state.records(u.uid) > 0 || u.runtime_dir().exists()).count();
    println!("\nburst: 200 keepers for 50 users started at once");
    println!("errors: {errors}; users with a record or runtime dir left after all exited: {leftovers}");
    println!("time until all done: {all_done:.0} ms ({:.1} sessions/s)", 200.0 / (all_done / 1000.0));
}
