//! Chaos: 1,000 SIGKILLs of real PAM hosts (pamtester over a real
//! /etc/pam.d stack with the built module) at random points of open and
//! close, for several users at once; then `jupyter-session gc` must leave no
//! record, no temporary file, no marker and no runtime dir behind, and a new
//! session must still open and close cleanly.
//!
//! The seed is printed; `CHAOS_SEED=N` replays a run, `CHAOS_KILLS=N`
//! changes the number of kills.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use jupyter_session_tests::*;

/// xorshift64*: small, seedable, good enough to pick kill points.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn sigkilled_pam_hosts_leave_nothing_behind_gc() {
    if !require_root("sigkilled_pam_hosts_leave_nothing_behind_gc", &["pamtester"]) {
        return;
    }
    let seed = env_u64("CHAOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    }) | 1;
    let kills_wanted = env_u64("CHAOS_KILLS").unwrap_or(1000) as usize;
    eprintln!("chaos seed: {seed} (replay with CHAOS_SEED={seed})");

    let users: Vec<TestUser> = (0..3).map(|_| TestUser::create("jsk")).collect();
    let state = StateDir::new();
    let svc = PamService::with_module("jsk", &state, "");
    let config = PathBuf::from(format!("/run/{}.toml", unique("cfg")));
    std::fs::write(&config, format!("state_dir = \"{}\"\n", state.0.display())).unwrap();

    // How long one open+close takes here (the fastest of 5): kill points are
    // spread over it, so nearly every kill lands before the run ends.
    let mut spans: Vec<u64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let ok = run(Command::new("pamtester").args([&svc.name, &users[0].name, "open_session", "close_session"]));
            assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
            t.elapsed().as_micros() as u64
        })
        .collect();
    spans.sort_unstable();
    let span_us = spans[0].clamp(500, 200_000);
    eprintln!("chaos: one open+close takes {span_us} µs; killing at random points in 0..{span_us} µs");
    let runtime_dirs: Vec<PathBuf> = users.iter().map(TestUser::runtime_dir).collect();
    let kills = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..2u64)
        .map(|w| {
            let (kills, finished) = (kills.clone(), finished.clone());
            let names: Vec<String> = users.iter().map(|u| u.name.clone()).collect();
            let runtime_dirs = runtime_dirs.clone();
            let service = svc.name.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(seed ^ (w + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let mut runs = 0;
                while kills.load(Ordering::Relaxed) < kills_wanted && runs < kills_wanted * 3 {
                    runs += 1;
                    let which = rng.below(names.len() as u64) as usize;
                    let delay = Duration::from_micros(rng.below(span_us));
                    // One run in four is killed the moment the user's runtime
                    // dir appears: the steps between making it and recording
                    // it are microseconds wide, and a random time rarely hits them.
                    let on_dir = rng.below(4) == 0 && !runtime_dirs[which].exists();
                    let started = Instant::now();
                    let mut child = Command::new("pamtester")
                        .args([service.as_str(), &names[which], "open_session", "close_session"])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .expect("pamtester runs");
                    if on_dir {
                        let limit = Duration::from_micros(span_us * 2);
                        while !runtime_dirs[which].exists() && started.elapsed() < limit {
                            std::hint::spin_loop();
                        }
                    } else {
                        std::thread::sleep(delay);
                    }
                    if child.try_wait().unwrap().is_none() {
                        child.kill().unwrap();
                        kills.fetch_add(1, Ordering::Relaxed);
                    } else {
                        finished.fetch_add(1, Ordering::Relaxed);
                    }
                    child.wait().unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let (kills, finished) = (kills.load(Ordering::Relaxed), finished.load(Ordering::Relaxed));
    eprintln!("chaos: {kills} pamtester processes SIGKILLed, {finished} finished before their kill point");
    assert!(kills >= kills_wanted, "only {kills} of {kills_wanted} kills landed (seed {seed})");

    // What the kills left, for the failure message: each user's marker, the
    // dir's identity and the mounts on it.
    let before_gc: Vec<String> = users.iter().map(|u| describe(&state.0, u)).collect();
    let out = run(Command::new(cli_path()).args(["gc", "--config"]).arg(&config));
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "gc failed (seed {seed}): {log}");
    for u in &users {
        let dir = state.0.join("users").join(u.uid.to_string());
        let left: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n != "lock").collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "seed {seed}: uid {} left {left:?} in {}; gc said: {log}", u.uid, dir.display());
        assert!(
            !u.runtime_dir().exists(),
            "seed {seed}: {} is still there; gc said: {log}\nbefore gc:\n{}",
            u.runtime_dir().display(),
            before_gc.join("\n")
        );
    }
    let ids: Vec<_> = std::fs::read_dir(state.0.join("ids")).map(|d| d.flatten().count()).into_iter().collect();
    assert!(ids.iter().all(|n| *n == 0), "seed {seed}: ids index not empty");

    // And sessions still work, for every user.
    for u in &users {
        let holder = SessionHolder::open(&svc.name, &u.name);
        assert_eq!(holder.var("XDG_RUNTIME_DIR"), Some(u.runtime_dir().to_str().unwrap()), "seed {seed}");
        assert_eq!(owner_mode(&u.runtime_dir()), Some((u.uid, u.gid, 0o700)), "seed {seed}");
        assert_eq!(state.records(u.uid), 1, "seed {seed}");
        assert_eq!(holder.close(), "CLOSED 0", "seed {seed}");
        assert_eq!(state.records(u.uid), 0, "seed {seed}");
        assert!(!u.runtime_dir().exists(), "seed {seed}");
    }
    let _ = std::fs::remove_file(&config);
}

/// One user's marker, runtime dir identity and the mounts on it.
fn describe(state: &std::path::Path, u: &TestUser) -> String {
    use std::os::unix::fs::MetadataExt;
    let marker = std::fs::read_to_string(state.join("users").join(u.uid.to_string()).join("runtime-dir"))
        .unwrap_or_else(|e| format!("<{e}>"));
    let id = |p: &std::path::Path| std::fs::symlink_metadata(p).map(|m| format!("{} {}", m.dev(), m.ino()));
    let dir = u.runtime_dir();
    let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split(' ').nth(4) == dir.to_str())
        .map(str::to_string)
        .collect();
    format!(
        "uid {}: marker {:?}; dir {:?}; parent {:?}; mounts {:?}",
        u.uid,
        marker.trim(),
        id(&dir).ok(),
        dir.parent().map(|p| id(p).ok()),
        mounts
    )
}
