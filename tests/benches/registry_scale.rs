//! Per-session cost against the number of registered users.
//!
//! Fills a private registry with N users, each holding one live session
//! (kept by this process), then times open+close of one more user's session
//! through session-lib — the exact work pam_jupyter does in a hook, minus
//! libpam — for N = 10, 100, 1000, 10000. The cost must stay flat: every
//! user has its own directory and lock, so nothing scans other users.
//!
//! Run: `cargo bench -p jupyter-session-tests --bench registry_scale`
//! (as root the runtime dirs are chowned to a fake uid; unprivileged, to you).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Instant;

use session_lib::config::Config;
use session_lib::procfs::ProcessId;
use session_lib::session::{Holder, Sessions};
use session_lib::user::UserInfo;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let me = nix::unistd::geteuid().as_raw();
    // JS_BENCH_ROOT: where the private roots go (default /tmp), e.g. a
    // tmpfs, to tell the registry's cost from the filesystem's.
    let base = std::env::var_os("JS_BENCH_ROOT").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    let root = base.join(format!("js-bench-scale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("run")).unwrap();
    let config = Config {
        runtime_dir_parent: root.join("run/user"),
        state_dir: root.join("state"),
        keep_while_processes: false,
        // The registry's cost, not mount(2)'s.
        tmpfs: false,
        ..Config::default()
    };
    let sessions = Sessions::new(&config).with_trusted_owner(me);
    let process = ProcessId::current().unwrap();
    let user = |uid: u32| UserInfo {
        name: format!("u{uid}"),
        uid: if me == 0 { uid } else { me },
        gid: if me == 0 { uid } else { nix::unistd::getegid().as_raw() },
        home: PathBuf::from("/nonexistent"),
        shell: PathBuf::from("/bin/sh"),
    };
    if me != 0 {
        eprintln!("note: unprivileged run: every registered user maps to your own uid's runtime dir");
    }
    println!("registered users | open+close median µs | p99 µs | sessions/s");
    let mut registered = 0u32;
    for target in [10u32, 100, 1000, 10_000] {
        while registered < target {
            // Distinct registry entries even unprivileged: the registry is keyed by uid.
            let mut u = user(100_000 + registered);
            u.uid = 100_000 + registered;
            if me != 0 {
                u.gid = nix::unistd::getegid().as_raw();
            }
            let s = sessions.registry.lock_user(u.uid).unwrap();
            s.add(&session_lib::registry::Record::for_process(u.uid, &u.name, "bench", process)).unwrap();
            registered += 1;
        }
        let probe = user(90_000);
        let mut times = Vec::new();
        for _ in 0..2000 {
            let t = Instant::now();
            let opened = sessions.open(&probe, "bench", Holder::Process(process)).unwrap();
            sessions.close_process(&probe, process, Some(&opened.key)).unwrap();
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
        times.sort_by(f64::total_cmp);
        let median = percentile(&times, 0.5);
        println!("{target:>16} | {median:>20.1} | {:>6.1} | {:>10.0}", percentile(&times, 0.99), 1e6 / median);
    }
    let _ = std::fs::remove_dir_all(&root);
}
