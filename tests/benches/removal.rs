//! Removing a big plain runtime dir: time and peak memory of the removing
//! process.
//!
//! Builds, for a real user (useradd), a runtime dir holding 300,000 files
//! with 200-byte names — flat in one directory, and spread over 300
//! directories of 1,000 — then removes it the way the last close does
//! (`RuntimeDirs::remove`, plain dir) in a fresh child process, and prints
//! the child's elapsed time and peak RSS (`getrusage` ru_maxrss). When one
//! call stops at the time limit and leaves the dir in place, it calls again
//! (as the next close or `gc` would) until the dir is gone, and prints the
//! number of calls. A child removing an empty dir gives the baseline RSS.
//! First, the everyday case: a small dir (2 subdirs, 10 files, like
//! podman's state) made and removed 300 times, median and p99 of the
//! removal. Nothing is asserted.
//!
//! Run as root: `cargo bench -p jupyter-session-tests --bench removal`
//! (`-- small` for the small-dir row only).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use session_lib::config::Config;
use session_lib::runtime_dir::{Created, Removal, RuntimeDirs};

const FILES: usize = 300_000;

fn dirs(parent: &Path) -> RuntimeDirs {
    let config = Config { runtime_dir_parent: parent.to_path_buf(), tmpfs: false, ..Config::default() };
    RuntimeDirs::new(&config)
}

fn name(i: usize) -> String {
    format!("{i:0>200}")
}

/// Child mode: `removal --child PARENT UID DEV INO`; prints one line.
fn child(args: &[String]) {
    let [parent, uid, dev, ino] = args else { panic!("usage: --child PARENT UID DEV INO") };
    let created = Created::decode(&format!("{dev} {ino} plain")).unwrap();
    let dirs = dirs(Path::new(parent));
    let uid: u32 = uid.parse().unwrap();
    let start = Instant::now();
    let mut calls = 0;
    let mut first = Vec::new();
    let mut last = None;
    loop {
        let t = Instant::now();
        let outcome = dirs.remove(uid, &created).unwrap();
        calls += 1;
        first.push(t.elapsed().as_secs_f64());
        match outcome {
            Removal::Removed | Removal::AlreadyGone | Removal::NotOurs => break,
            Removal::LeftInPlace(why) => {
                last = Some(why);
                if calls >= 100 {
                    break;
                }
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap();
    let longest = first.iter().copied().fold(0.0, f64::max);
    println!(
        "{elapsed:.3} s total | {calls} call(s), longest {longest:.3} s | peak RSS {} KiB{}",
        usage.max_rss(),
        last.map(|w| format!(" | a call left it: {w}")).unwrap_or_default()
    );
}

fn make_tree(path: &Path, per_dir: usize, uid: u32, gid: u32) {
    let mut made = 0;
    let mut d = 0;
    while made < FILES {
        let dir = if per_dir >= FILES { path.to_path_buf() } else { path.join(format!("d{d:04}")) };
        if dir != path {
            std::fs::create_dir(&dir).unwrap();
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        }
        for _ in 0..per_dir.min(FILES - made) {
            std::fs::File::create(dir.join(name(made))).unwrap();
            made += 1;
        }
        d += 1;
    }
}

fn measure(label: &str, parent: &Path, uid: u32, gid: u32, per_dir: Option<usize>) {
    let dirs = dirs(parent);
    let prepared = dirs.ensure(uid, gid).unwrap();
    let created = prepared.created.expect("a fresh runtime dir");
    let t = Instant::now();
    if let Some(per_dir) = per_dir {
        make_tree(&prepared.path, per_dir, uid, gid);
    }
    let built = t.elapsed().as_secs_f64();
    drop(prepared);
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--child",
            parent.to_str().unwrap(),
            &uid.to_string(),
            &created.dev.to_string(),
            &created.ino.to_string(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    println!("{label:<34} | built in {built:>5.1} s | {}", String::from_utf8_lossy(&out.stdout).trim_end());
}

/// User + system CPU time of this process so far (all threads).
fn cpu_seconds() -> f64 {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap();
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    secs(u.user_time()) + secs(u.system_time())
}

fn small(parent: &Path, uid: u32, gid: u32) {
    let dirs = dirs(parent);
    let mut times = Vec::new();
    let mut cpu = 0.0;
    for _ in 0..300 {
        let prepared = dirs.ensure(uid, gid).unwrap();
        let created = prepared.created.expect("a fresh runtime dir");
        for d in ["libpod/tmp", "containers"] {
            let dir = prepared.path.join(d);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..5 {
                std::fs::write(dir.join(format!("f{i}")), "x").unwrap();
            }
        }
        for d in ["libpod/tmp", "libpod", "containers"] {
            std::os::unix::fs::chown(prepared.path.join(d), Some(uid), Some(gid)).unwrap();
        }
        drop(prepared);
        let c = cpu_seconds();
        let t = Instant::now();
        let outcome = dirs.remove(uid, &created).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        cpu += cpu_seconds() - c;
        assert_eq!(outcome, Removal::Removed);
    }
    times.sort_by(f64::total_cmp);
    let at = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    println!(
        "small dir (2 dirs, 10 files) x300 | removal median {:.3} ms | p99 {:.3} ms | CPU {:.3} ms per removal",
        at(0.5),
        at(0.99),
        cpu * 1e3 / 300.0
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        return child(&args[i + 1..]);
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED removal bench: needs root (a real user and their runtime dir)");
        return;
    }
    let user = jupyter_session_tests::TestUser::create("jsrbn");
    let root = PathBuf::from(format!("/var/tmp/removal-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let parent = root.join("user");
    println!("removing a plain runtime dir of {} (uid {}), names of 200 bytes", user.name, user.uid);
    small(&parent, user.uid, user.gid);
    if args.iter().any(|a| a == "small") {
        let _ = std::fs::remove_dir_all(&root);
        return;
    }
    measure("empty dir (baseline)", &parent, user.uid, user.gid, None);
    measure("300,000 files in one dir", &parent, user.uid, user.gid, Some(FILES));
    measure("300,000 files in 300 dirs of 1,000", &parent, user.uid, user.gid, Some(1000));
    let _ = std::fs::remove_dir_all(&root);
}
