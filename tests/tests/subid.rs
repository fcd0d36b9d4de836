//! Issue 16: subordinate ids for users without a line in /etc/subuid and
//! /etc/subgid — the NSS provider `libsubid_jupyter.so` as shadow's own
//! tools (getsubids, libsubid, newuidmap) and rootless podman load it for
//! `subid: jupyter`, and pam_jupyter's `subids = "allocate"`.
//!
//! Real users from useradd, real shadow 4.13 binaries and libsubid, real
//! podman through the keeper. Every command runs in its own mount namespace
//! over a private copy of /etc ([`PrivateEtc`]): the real nsswitch.conf,
//! subuid, subgid and jupyter-session.toml are never touched.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

use jupyter_session_tests::*;

const BASE: u64 = 1_000_000_000;
const SIZE: u64 = 65536;
const LAYOUT: &str = "subid_base = 1000000000\nsubid_size = 65536\nsubid_uid_min = 1000\nsubid_uid_max = 50000\n";

fn computed(uid: u32) -> u64 {
    BASE + (uid as u64 - 1000) * SIZE
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// `getsubids [-g] USER` inside `etc`: its stdout lines, or its stderr.
fn getsubids(etc: &PrivateEtc, gid: bool, user: &str) -> Result<Vec<String>, String> {
    let mut c = Command::new("getsubids");
    if gid {
        c.arg("-g");
    }
    let o = run(&mut etc.wrap(c.arg(user)));
    let (out, err) = text(&o);
    if o.status.success() && !out.is_empty() { Ok(out.lines().map(str::to_string).collect()) } else { Err(err) }
}

/// libsubid's owner lookup (`subid_get_uid_owners` / `subid_get_gid_owners`,
/// what shadow's get_subid_owners does; 4.13's getsubids has no `-o`),
/// through Debian's python3 ctypes inside `etc`: the owning uids of `id`.
fn owners(etc: &PrivateEtc, gid: bool, id: u64) -> Vec<u32> {
    let script = "import ctypes, sys\n\
                  l = ctypes.CDLL('libsubid.so.4')\n\
                  f = l.subid_get_gid_owners if sys.argv[1] == 'g' else l.subid_get_uid_owners\n\
                  p = ctypes.POINTER(ctypes.c_uint)()\n\
                  n = f(ctypes.c_uint(int(sys.argv[2])), ctypes.byref(p))\n\
                  print(n, *[p[i] for i in range(max(n, 0))])\n";
    let mut c = Command::new("/usr/bin/python3");
    c.args(["-c", script, if gid { "g" } else { "u" }, &id.to_string()]);
    let o = run_ok(&mut etc.wrap(&c));
    let out = text(&o).0;
    let mut f = out.split_whitespace().map(|x| x.parse::<i64>().unwrap());
    let n = f.next().unwrap();
    assert!(n >= 0, "lookup of {id} failed: {out}");
    f.map(|u| u as u32).collect()
}

fn require_shadow(test: &str) -> bool {
    require_root(test, &["getsubids", "unshare", "newuidmap"])
        && require(test, std::path::Path::new("/usr/bin/python3").exists(), "/usr/bin/python3 (ctypes)")
}

/// A private /etc with the provider on and the test layout, where `bare`
/// users have no line in the files.
fn provider_etc(bare: &[&TestUser]) -> PrivateEtc {
    let etc = PrivateEtc::new();
    for u in bare {
        etc.drop_subid_lines(u);
    }
    etc.use_subid_provider();
    etc.write("security/jupyter-session.toml", LAYOUT);
    etc
}

#[test]
fn getsubids_and_owner_lookups_answer_computed_and_listed_ranges() {
    if !require_shadow("getsubids_and_owner_lookups_answer_computed_and_listed_ranges") {
        return;
    }
    let a = TestUser::create("subida");
    let b = TestUser::create("subidb");
    let listed = TestUser::create("subidl");
    let etc = provider_etc(&[&a, &b]);
    let line = etc.read("subuid").lines().find(|l| l.starts_with(&format!("{}:", listed.name))).unwrap().to_string();
    let listed_start: u64 = line.split(':').nth(1).unwrap().parse().unwrap();

    for (u, gid) in [(&a, false), (&a, true), (&b, false), (&b, true)] {
        let got = getsubids(&etc, gid, &u.name).unwrap_or_else(|e| panic!("getsubids {} -g={gid}: {e}", u.name));
        assert_eq!(got, vec![format!("0: {} {} {SIZE}", u.name, computed(u.uid))]);
    }
    // Two users: disjoint (different slots of one layout).
    let (sa, sb) = (computed(a.uid), computed(b.uid));
    assert!(sa + SIZE <= sb || sb + SIZE <= sa, "{sa} and {sb} overlap");
    // A user listed in the files keeps exactly the listed line.
    assert_eq!(getsubids(&etc, false, &listed.name).unwrap(), vec![format!("0: {} {listed_start} 65536", listed.name)]);
    // Owner lookups map ids back to the right user, at both ends of a range.
    assert_eq!(owners(&etc, false, sa), vec![a.uid]);
    assert_eq!(owners(&etc, false, sa + SIZE - 1), vec![a.uid]);
    assert_eq!(owners(&etc, true, sb + 7), vec![b.uid]);
    assert_eq!(owners(&etc, false, listed_start + 1), vec![listed.uid]);
    // The listed user's slot in the layout is not also theirs.
    assert_eq!(owners(&etc, false, computed(listed.uid)), Vec::<u32>::new());
    // Ids near 2^32: nobody's, and no crash at the boundary.
    assert_eq!(owners(&etc, false, u32::MAX as u64 - 1), Vec::<u32>::new());
    assert_eq!(owners(&etc, true, u32::MAX as u64), Vec::<u32>::new());

    // Negative control: the same private /etc without the nsswitch line.
    let plain = PrivateEtc::new();
    plain.drop_subid_lines(&a);
    assert!(getsubids(&plain, false, &a.name).is_err(), "files alone know no range for {}", a.name);
}

/// A busybox image whose rootfs has a file owned by uid/gid 2000: unpacking
/// it needs a subordinate range of at least 2001 ids.
fn image_tar() -> PathBuf {
    let root = PathBuf::from(format!("/tmp/{}", unique("subid-bb")));
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "id", "stat", "cat", "sleep"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(root.join("owned"), "by 2000\n").unwrap();
    std::os::unix::fs::chown(root.join("owned"), Some(2000), Some(2000)).unwrap();
    run_ok(Command::new("chmod").arg("0755").arg(&root));
    let tar = root.with_extension("tar");
    run_ok(Command::new("tar").arg("-C").arg(&root).arg("--numeric-owner").arg("-cf").arg(&tar).arg("."));
    fs::remove_dir_all(&root).unwrap();
    tar
}

#[test]
fn rootless_podman_in_a_keeper_session_uses_the_computed_range() {
    if !require_shadow("rootless_podman_in_a_keeper_session_uses_the_computed_range")
        || !require_root("rootless_podman_in_a_keeper_session_uses_the_computed_range", &["podman", "runc", "busybox"])
    {
        return;
    }
    let state = StateDir::new();
    let svc = PamService::create("subidk", &["account required pam_permit.so", &state.module_line("")]);
    let u = TestUser::create("subidp");
    u.podman_without_network();
    let tar = image_tar();
    let etc = provider_etc(&[&u]);
    let go = |etc: &PrivateEtc, cmd: &[&str]| -> Output {
        let mut k = keeper_cmd();
        k.args(exec_args(&svc.name, &u.name, cmd));
        run(&mut etc.wrap(&k))
    };
    let podman = |rest: &[&str]| -> Vec<String> {
        ["podman", "--runtime", "runc"].iter().chain(rest).map(|s| s.to_string()).collect()
    };
    let call = |etc: &PrivateEtc, v: Vec<String>| {
        let r: Vec<&str> = v.iter().map(String::as_str).collect();
        go(etc, &r)
    };

    // Negative control first: no provider, no line: podman cannot map 2000.
    let plain = PrivateEtc::new();
    plain.drop_subid_lines(&u);
    let o = call(&plain, podman(&["import", tar.to_str().unwrap(), "localhost/subid-bb"]));
    let (out, err) = text(&o);
    assert!(!o.status.success(), "import without subids worked?\n{out}{err}");
    eprintln!("without subids: {err}");
    let _ = call(&plain, podman(&["system", "migrate"]));
    u.kill_processes();

    let o = call(&etc, podman(&["import", tar.to_str().unwrap(), "localhost/subid-bb"]));
    assert!(o.status.success(), "podman import: {}", text(&o).1);
    let o = call(&etc, podman(&["run", "--rm", "--network", "none", "localhost/subid-bb", "id"]));
    let (out, err) = text(&o);
    assert!(o.status.success() && out.contains("uid=0(root)"), "podman run id: {out}\n{err}");
    let o = call(
        &etc,
        podman(&["run", "--rm", "--network", "none", "localhost/subid-bb", "stat", "-c", "%u:%g", "/owned"]),
    );
    let (out, err) = text(&o);
    assert_eq!(out.trim(), "2000:2000", "{err}");
    // The user namespace maps exactly the computed range (newuidmap asked the provider).
    let o = call(&etc, podman(&["unshare", "cat", "/proc/self/uid_map", "/proc/self/gid_map"]));
    let (out, err) = text(&o);
    let want = format!("1 {} {SIZE}", computed(u.uid));
    let maps: Vec<String> = out.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    assert_eq!(maps.iter().filter(|l| **l == want).count(), 2, "uid_map and gid_map: {out}\n{err}");

    // A detached container running as a computed subuid, conmon and the
    // pause process killed: the last close still sees it (the liveness
    // check asks the provider for the user's subuids) and keeps the dir.
    let o = call(
        &etc,
        podman(&["run", "-d", "--user", "1000:1000", "--network", "none", "localhost/subid-bb", "sleep", "600"]),
    );
    assert!(o.status.success(), "podman run -d: {}", text(&o).1);
    let id = text(&o).0.trim().to_string();
    let o = call(&etc, podman(&["inspect", "--format", "{{.State.Pid}} {{.State.ConmonPid}}", &id]));
    let pids: Vec<i32> = text(&o).0.split_whitespace().map(|p| p.parse().unwrap()).collect();
    let (container, conmon) = (pids[0], pids[1]);
    if container <= 0 {
        let o = call(&etc, podman(&["ps", "-a"]));
        let o2 = call(&etc, podman(&["logs", &id]));
        let o3 = call(&etc, podman(&["inspect", &id]));
        panic!(
            "not running: {:?} {:?} {}",
            text(&o),
            text(&o2),
            text(&o3)
                .0
                .lines()
                .filter(|l| l.contains("Error") || l.contains("Exit") || l.contains("Status"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let _reap = KillOnDrop(container);
    let status = fs::read_to_string(format!("/proc/{container}/status")).unwrap();
    let real: u64 =
        status.lines().find(|l| l.starts_with("Uid:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(real, computed(u.uid) + 999, "container uid 1000 is the computed range's 1000th id");
    kill_and_wait(conmon);
    if let Some(pause) =
        fs::read_to_string(u.runtime_dir().join("libpod/tmp/pause.pid")).ok().and_then(|t| t.trim().parse().ok())
    {
        kill_and_wait(pause);
    }
    let o = go(&etc, &["true"]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(u.runtime_dir().join("libpod").is_dir(), "the last close removed the dir under a running container");
    let _ = fs::remove_file(&tar);
}

/// SIGKILL a process by pid when dropped (a container's process runs as a
/// subuid, which TestUser's cleanup does not cover).
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill_and_wait(self.0);
    }
}

fn kill_and_wait(pid: i32) {
    if pid <= 0 {
        return; // never a process group
    }
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    for _ in 0..200 {
        let state = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if state.is_empty() || state.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn refused_layouts_bad_lines_and_unmanaged_uids_are_logged_and_files_still_served() {
    if !require_shadow("refused_layouts_bad_lines_and_unmanaged_uids_are_logged_and_files_still_served") {
        return;
    }
    let a = TestUser::create("subidr");
    let listed = TestUser::create("subids");
    let etc = provider_etc(&[&a]);
    let sink = SyslogSink::new();
    let logged_getsubids = |user: &str| -> (bool, String) {
        let mut c = Command::new("getsubids");
        let o = run(&mut etc.wrap_logged(c.arg(user), &sink));
        (o.status.success(), text(&o).0)
    };
    let listed_line =
        etc.read("subuid").lines().find(|l| l.starts_with(&format!("{}:", listed.name))).unwrap().to_string();
    let listed_start = listed_line.split(':').nth(1).unwrap();

    // A layout overlapping useradd's ranges in the files is refused, with a
    // log line naming the file line; listed users are still served.
    etc.write("security/jupyter-session.toml", "subid_base = 100000\nsubid_uid_min = 1000\nsubid_uid_max = 2000\n");
    assert!(!logged_getsubids(&a.name).0, "computed ranges served despite the overlap");
    let log = sink.drain();
    assert!(
        log.contains("libsubid_jupyter: computed subordinate ids refused: /etc/subuid line")
            && log.contains("overlaps the computed subordinate ids 100000-")
            && log.contains("set subid_base to at least"),
        "{log}"
    );
    let (ok, out) = logged_getsubids(&listed.name);
    assert!(ok && out.contains(&format!("{} {listed_start} 65536", listed.name)), "{out}");
    sink.drain();

    // Overflowing 2^32 is refused too.
    etc.write(
        "security/jupyter-session.toml",
        "subid_base = 4294000000\nsubid_uid_min = 1000\nsubid_uid_max = 50000\n",
    );
    assert!(!logged_getsubids(&a.name).0);
    let log = sink.drain();
    assert!(log.contains("passes the last id 4294967294") && log.contains("lower subid_size to at most"), "{log}");

    // A uid outside the managed range gets nothing (and nothing is refused).
    etc.write("security/jupyter-session.toml", &format!("subid_uid_min = 1000\nsubid_uid_max = {}\n", a.uid - 1));
    assert!(!logged_getsubids(&a.name).0, "uid {} is not managed", a.uid);
    assert!(!sink.drain().contains("refused"));

    // A malformed line is named in the log and ignored; the rest is served.
    etc.write("security/jupyter-session.toml", LAYOUT);
    let subuid = etc.read("subuid");
    etc.write("subuid", &format!("broken:12x:65536\n{subuid}"));
    let (ok, out) = logged_getsubids(&a.name);
    assert!(ok && out.contains(&format!("{} {} {SIZE}", a.name, computed(a.uid))), "{out}");
    let (ok, out) = logged_getsubids(&listed.name);
    assert!(ok && out.contains(listed_start), "{out}");
    let log = sink.drain();
    assert!(log.contains("/etc/subuid line 1: 'broken:12x:65536' is not owner:start:count"), "{log}");

    // An untrusted (group-writable) config refuses the computed ranges.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(etc.etc("security/jupyter-session.toml"), fs::Permissions::from_mode(0o664)).unwrap();
    assert!(!logged_getsubids(&a.name).0);
    let log = sink.drain();
    assert!(log.contains("refusing config file /etc/security/jupyter-session.toml"), "{log}");
}

#[test]
fn allocate_mode_in_32_parallel_sessions_writes_exactly_one_line() {
    if !require_root("allocate_mode_in_32_parallel_sessions_writes_exactly_one_line", &["pamtester", "unshare"]) {
        return;
    }
    let state = StateDir::new();
    // tmpfs=false: 32 hosts in 32 private mount namespaces do not see each
    // other's per-user tmpfs (not what this test is about).
    let svc = PamService::create("subidal", &[&state.module_line("subids=allocate tmpfs=false")]);
    let u = TestUser::create("subidal");
    let other = TestUser::create("subido");
    let etc = PrivateEtc::new();
    etc.drop_subid_lines(&u);
    etc.write("security/jupyter-session.toml", LAYOUT);
    let before_uid = etc.read("subuid");
    let before_gid = etc.read("subgid");

    let sink = SyslogSink::new();
    let mut children: Vec<std::process::Child> = (0..32)
        .map(|_| {
            let mut c = Command::new("pamtester");
            c.args([&svc.name, &u.name, "open_session", "close_session"]);
            etc.wrap_logged(&c, &sink)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut failed = Vec::new();
    for c in children.drain(..) {
        let o = c.wait_with_output().unwrap();
        if !o.status.success() {
            failed.push(format!("{:?}", text(&o)));
        }
    }
    assert!(failed.is_empty(), "{} sessions failed: {:?}\n{}", failed.len(), failed.first(), sink.drain());
    let want = format!("{}:{}:{SIZE}", u.name, computed(u.uid));
    for (f, before) in [("subuid", &before_uid), ("subgid", &before_gid)] {
        let after = etc.read(f);
        let mine: Vec<&str> = after.lines().filter(|l| l.starts_with(&format!("{}:", u.name))).collect();
        assert_eq!(mine, vec![want.as_str()], "{f}:\n{after}");
        assert_eq!(after, format!("{before}{want}\n"), "{f}: everything else kept, one line appended");
        // No overlap with any other line.
        let (s, e) = (computed(u.uid), computed(u.uid) + SIZE);
        for l in after.lines().filter(|l| !l.starts_with(&format!("{}:", u.name))) {
            let v: Vec<u64> = l.split(':').skip(1).map(|x| x.parse().unwrap()).collect();
            assert!(v[0] + v[1] <= s || e <= v[0], "{f}: {l} overlaps {want}");
        }
        assert!(!etc.etc(&format!("{f}.lock")).exists() && !etc.etc(&format!("{f}+")).exists(), "locks left");
    }
    // Idempotent: another session (of a user who has lines) changes nothing.
    let again = etc.read("subuid");
    let mut c = Command::new("pamtester");
    c.args([&svc.name, &other.name, "open_session", "close_session"]);
    run_ok(&mut etc.wrap(&c));
    assert_eq!(etc.read("subuid"), again);

    // A file line inside the layout (not the owner's computed range): refused, the session fails and says why.
    etc.drop_subid_lines(&other);
    etc.write("subgid", &format!("{}intruder:{}:10\n", etc.read("subgid"), computed(other.uid) + 5));
    let sink = SyslogSink::new();
    let mut c = Command::new("pamtester");
    c.args([&svc.name, &other.name, "open_session", "close_session"]);
    let o = run(&mut etc.wrap_logged(&c, &sink));
    let log = sink.drain();
    assert!(
        log.contains(&format!("session for {} refused: subids = \"allocate\" could not give it a range", other.name))
            && log.contains("/etc/subgid line")
            && log.contains("intruder"),
        "{log}"
    );
    assert!(!o.status.success(), "session opened despite the overlapping line");
    assert!(!etc.read("subuid").contains(&format!("{}:", other.name)), "nothing half-done: no subuid line either");
}

/// `jupyter-session check --json --user NAME` inside `etc`: the finding `id`.
fn check_finding(etc: &PrivateEtc, user: &str, id: &str) -> serde_json::Value {
    let mut c = Command::new(cli_path());
    c.args(["check", "--json", "--user", user]);
    let o = run(&mut etc.wrap(&c));
    let doc: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("check printed no JSON ({e}): {}", text(&o).1));
    doc["findings"].as_array().unwrap().iter().find(|f| f["id"] == id).cloned().unwrap()
}

#[test]
fn check_sees_ranges_through_the_provider_and_overlaps_with_computed_ranges() {
    if !require_shadow("check_sees_ranges_through_the_provider_and_overlaps_with_computed_ranges") {
        return;
    }
    let a = TestUser::create("subidc");
    let listed = TestUser::create("subidm");
    let etc = provider_etc(&[&a]);
    let f = check_finding(&etc, &a.name, "subid.ranges");
    let want = format!("{}:{SIZE}", computed(a.uid));
    assert_eq!(f["status"], "pass", "{f:#}");
    assert_eq!(f["observed"], format!("subuid {want} ({SIZE}), subgid {want} ({SIZE})"), "{f:#}");
    assert!(f["evidence"].as_str().unwrap().contains("nsswitch subid: jupyter"), "{f:#}");
    assert_eq!(check_finding(&etc, &a.name, "subid.overlap")["status"], "pass");

    // A listed line inside another user's computed range: the provider
    // refuses the layout, and check says which line and why.
    let intruder = format!("{}:{}:{SIZE}\n", listed.name, computed(a.uid));
    let kept: String =
        etc.read("subuid").lines().filter(|l| !l.starts_with(&listed.name)).map(|l| format!("{l}\n")).collect();
    etc.write("subuid", &format!("{kept}{intruder}"));
    let f = check_finding(&etc, &listed.name, "subid.overlap");
    assert_eq!(f["status"], "fail", "{f:#}");
    assert!(f["observed"].as_str().unwrap().contains("overlaps the computed subordinate ids 1000000000-"), "{f:#}");
    let f = check_finding(&etc, &a.name, "subid.ranges");
    assert_eq!(f["status"], "fail", "{f:#}");
    assert!(f["fix"]["text"].as_str().unwrap().contains("computed subordinate ids refused"), "{f:#}");

    // An unmanaged uid: the fix names the uid range.
    etc.write("subuid", &kept);
    etc.write("security/jupyter-session.toml", &format!("subid_uid_min = 1000\nsubid_uid_max = {}\n", a.uid - 1));
    let f = check_finding(&etc, &a.name, "subid.ranges");
    assert_eq!(f["status"], "fail", "{f:#}");
    assert!(f["fix"]["text"].as_str().unwrap().contains(&format!("uid {} is outside subid_uid_min", a.uid)), "{f:#}");
}
