//! Wall time of a default `jupyter-session check` (every check but the deep
//! `podman info`, including the user-namespace probe in a child).
//!
//! As root: a fresh user with a correct runtime dir; times
//! (1) `jupyter-session check` as that user, started through
//!     `setpriv ... env -i ...` (the setpriv and env execs are included), and
//! (2) `jupyter-session check --user NAME` as root.
//! Unprivileged: (1) as yourself in your own environment.
//!
//! Run: `cargo build --release --workspace && cargo bench -p jupyter-session-tests --bench check_latency`
#![forbid(unsafe_code)]

use std::process::{Command, Stdio};
use std::time::Instant;

use jupyter_session_tests::{TestUser, cli_path};

const RUNS: usize = 200;

fn time(mut make: impl FnMut() -> Command) -> (f64, f64, f64) {
    let mut ms = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let mut cmd = make();
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let start = Instant::now();
        let status = cmd.status().expect("check runs");
        ms.push(start.elapsed().as_secs_f64() * 1000.0);
        assert!(status.code().is_some_and(|c| (0..=2).contains(&c)), "check itself failed: {status}");
    }
    ms.sort_by(f64::total_cmp);
    (ms[0], ms[RUNS / 2], ms[RUNS * 9 / 10])
}

fn main() {
    let cli = cli_path();
    println!("mode | min ms | median ms | p90 ms  ({RUNS} runs each)");
    if !nix::unistd::geteuid().is_root() {
        let (min, med, p90) = time(|| {
            let mut c = Command::new(&cli);
            c.arg("check");
            c
        });
        println!("check (as you) | {min:.2} | {med:.2} | {p90:.2}");
        return;
    }
    let user = TestUser::create("jscb");
    let rt = user.runtime_dir();
    std::fs::create_dir(&rt).unwrap();
    std::os::unix::fs::chown(&rt, Some(user.uid), Some(user.gid)).unwrap();
    let env = [
        format!("XDG_RUNTIME_DIR={}", rt.display()),
        "PATH=/usr/local/bin:/usr/bin:/bin".to_string(),
        format!("USER={}", user.name),
        format!("LOGNAME={}", user.name),
        format!("HOME={}", user.home.display()),
    ];
    let (min, med, p90) = time(|| {
        let mut c = Command::new("setpriv");
        c.args([format!("--reuid={}", user.uid), format!("--regid={}", user.gid), "--init-groups".into()])
            .args(["env", "-i"])
            .args(&env)
            .arg(&cli)
            .arg("check")
            .current_dir("/");
        c
    });
    println!("check as the user (incl. setpriv + env exec) | {min:.2} | {med:.2} | {p90:.2}");
    let (min, med, p90) = time(|| {
        let mut c = Command::new(&cli);
        c.args(["check", "--user", &user.name]);
        c
    });
    println!("check --user NAME as root | {min:.2} | {med:.2} | {p90:.2}");
    let (min, med, p90) = time(|| {
        let mut c = Command::new("setpriv");
        c.args([format!("--reuid={}", user.uid), format!("--regid={}", user.gid), "--init-groups".into()])
            .args(["env", "-i"])
            .args(&env)
            .arg("/bin/true")
            .current_dir("/");
        c
    });
    println!("baseline: setpriv + env + /bin/true | {min:.2} | {med:.2} | {p90:.2}");
}
