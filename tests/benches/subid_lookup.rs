//! Cost of a subid lookup through shadow with and without the provider:
//! mean wall time of `getsubids USER` (fork + exec + libsubid + answer), in
//! a private /etc (tests/src/lib.rs PrivateEtc), for a user without a line
//! served by `libsubid_jupyter.so`, and for the files alone, each with a
//! 1-line and a 10,000-line /etc/subuid. `/bin/true` in the same loop is
//! the fork + exec floor.
//!
//! Run as root: `cargo build --release --workspace && cargo bench -p jupyter-session-tests --bench subid_lookup`
#![forbid(unsafe_code)]

use std::process::Command;
use std::time::Instant;

use jupyter_session_tests::{PrivateEtc, TestUser, run_ok};

const RUNS: usize = 300;

/// Mean µs of one `cmd USER` in a shell loop inside `etc`.
fn per_call(etc: &PrivateEtc, cmd: &str, user: &str) -> f64 {
    let script = format!("i=0; while [ $i -lt {RUNS} ]; do {cmd} {user} >/dev/null || exit 1; i=$((i+1)); done");
    let mut c = Command::new("sh");
    c.args(["-c", &script]);
    let start = Instant::now();
    run_ok(&mut etc.wrap(&c));
    start.elapsed().as_secs_f64() * 1e6 / RUNS as f64
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED subid_lookup: needs root (users, mount namespaces)");
        return;
    }
    let u = TestUser::create("subidb");
    let etc = PrivateEtc::new();
    etc.write("security/jupyter-session.toml", "");
    let big: String = (1..=10_000u64).map(|i| format!("u{i}:{}:65536\n", 100_000 + i * 65536)).collect();
    let mine = format!("{}:900000000:65536\n", u.name);
    println!("case | mean µs per call ({RUNS} calls, fork + exec included)");
    println!("/bin/true (floor) | {:.0}", per_call(&etc, "/bin/true", &u.name));
    etc.write("subuid", &mine);
    println!("files, 1-line subuid | {:.0}", per_call(&etc, "getsubids", &u.name));
    etc.write("subuid", &format!("{big}{mine}"));
    println!("files, 10,001-line subuid | {:.0}", per_call(&etc, "getsubids", &u.name));
    etc.use_subid_provider();
    etc.write("subuid", "");
    println!("provider, computed range, empty subuid | {:.0}", per_call(&etc, "getsubids", &u.name));
    etc.write("subuid", &big);
    println!("provider, computed range, 10,000-line subuid | {:.0}", per_call(&etc, "getsubids", &u.name));
    etc.write("subuid", &format!("{big}{mine}"));
    println!("provider, listed line, 10,001-line subuid | {:.0}", per_call(&etc, "getsubids", &u.name));
}
