//! pam_jupyter where systemd is PID 1 and logind runs, in the systemd lab (tests/src/lab.rs: a
//! bookworm tree booted with systemd-nspawn): the keeper and pamtester with pam_jupyter and
//! pam_systemd in one stack in either order, and SystemdSpawner from PyPI with a real hub, as
//! docs/systemd.md's recipe says. Each test boots its own container (under a second); the tree is
//! built once per run.
#![forbid(unsafe_code)]

use std::fs;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

use jupyter_session_tests::hub::{self, Installed};
use jupyter_session_tests::lab::{self, Lab, LabUser};
use jupyter_session_tests::require;

fn lab_available(test: &str) -> bool {
    let missing = lab::missing();
    require(test, missing.is_none(), missing.unwrap_or(""))
}

/// A PAM service of the lab: account and session as a keeper's stack, with pam_jupyter (debug)
/// and pam_systemd in the order given.
fn write_stack(lab: &Lab, name: &str, jupyter_first: bool) {
    let jupyter = "session required pam_jupyter.so debug";
    let systemd = "session optional pam_systemd.so";
    let (a, b) = if jupyter_first { (jupyter, systemd) } else { (systemd, jupyter) };
    lab.sh_ok(&format!(
        "printf '%s\\n' 'auth include common-auth' 'account include common-account' \
         'session required pam_loginuid.so' '{a}' '{b}' 'session required pam_unix.so' > /etc/pam.d/{name}"
    ));
}

/// What the session looked like from inside: `key=value` lines.
const PROBE: &str = "echo xdg=$XDG_RUNTIME_DIR; echo session=$XDG_SESSION_ID; echo loginuid=$(cat /proc/self/loginuid); \
     echo mounts=$(findmnt -n --mountpoint \"$XDG_RUNTIME_DIR\" | wc -l); \
     echo fstype=$(findmnt -n -o FSTYPE --mountpoint \"$XDG_RUNTIME_DIR\" | head -n1); \
     echo owner=$(stat -c '%u %a' \"$XDG_RUNTIME_DIR\")";

fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap_or_else(|| panic!("no {key}= in {out}"))
}

fn assert_logind_session(out: &str, user: &LabUser, how: &str) {
    assert_eq!(field(out, "xdg"), format!("/run/user/{}", user.uid), "{how}: {out}");
    assert!(!field(out, "session").is_empty(), "{how}: pam_systemd made a logind session: {out}");
    assert_eq!(field(out, "loginuid"), user.uid.to_string(), "{how}: {out}");
    // One tmpfs, logind's or ours adopted by logind, never a plain dir with a tmpfs over it.
    assert_eq!(field(out, "mounts"), "1", "{how}: one mount at the runtime dir: {out}");
    assert_eq!(field(out, "fstype"), "tmpfs", "{how}: {out}");
    assert_eq!(field(out, "owner"), format!("{} 700", user.uid), "{how}: {out}");
}

/// After the session closed: logind removes the dir (UserStopDelaySec=0 in the lab), pam_jupyter
/// logged that it left it to logind, no record is left, and a later `gc` finds nothing of the
/// user to remove (before: pam_jupyter's marker outlived logind's dir and gc "removed" it).
fn assert_left_to_logind(lab: &Lab, user: &LabUser, since: &str, how: &str) {
    let dir = format!("/run/user/{}", user.uid);
    lab.wait_for(&format!("logind to remove {dir} ({how})"), 10, &format!("! test -e {dir}"));
    let log = lab.journal(&format!("--since '{since}' | grep pam_jupyter"));
    let closed: Vec<&str> =
        log.lines().filter(|l| l.contains("session closed for") && l.contains(&user.name)).collect();
    assert!(!closed.is_empty(), "{how}: pam_jupyter logged its close:\n{log}");
    for line in &closed {
        assert!(line.contains("systemd-logind manages it"), "{how}: the dir was left to logind:\n{log}");
    }
    assert!(!log.contains("plain directory") && !log.contains("plain dir"), "{how}: no plain dir:\n{log}");
    let list = lab.sh_ok("jupyter-session list");
    assert!(!list.contains(&user.name), "{how}: no record left:\n{list}");
    let gc = lab.sh_ok("jupyter-session gc");
    assert!(!gc.contains(&dir), "{how}: gc has nothing of the user to remove or keep:\n{gc}");
}

#[test]
fn keeper_and_pamtester_with_logind_in_either_stack_order() {
    if !lab_available("keeper_and_pamtester_with_logind_in_either_stack_order") {
        return;
    }
    let lab = Lab::boot("st", &[]);
    let user = lab.useradd("sdk", "pw");
    for jupyter_first in [true, false] {
        let order = if jupyter_first { "pam_jupyter before pam_systemd" } else { "pam_systemd before pam_jupyter" };
        // pam_jupyter first: the shipped /etc/pam.d/jupyterhub as install.sh put it (pam_systemd
        // comes after it, from Debian's common-session); the other order, a stack of the test's.
        let service = if jupyter_first { "jupyterhub".to_string() } else { "systemd-lab-sfirst".to_string() };
        if jupyter_first {
            lab.sh_ok("grep -q '^session.*pam_jupyter.so' /etc/pam.d/jupyterhub && grep -q pam_systemd /etc/pam.d/common-session");
        } else {
            write_stack(&lab, &service, false);
        }

        // The keeper, started from a system service as a spawner would be.
        let since = lab.sh_ok("date '+%Y-%m-%d %H:%M:%S'").trim().to_string();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let started = Instant::now();
        let out = lab.sh_ok(&format!(
            "systemd-run --quiet --wait --pipe --service-type=exec -- jupyter-session exec --service {service} --user {} -- sh -c '{}'",
            user.name,
            PROBE.replace('\'', "'\\''")
        ));
        eprintln!("keeper ({order}): {:.2} s", started.elapsed().as_secs_f64());
        assert_logind_session(&out, &user, &format!("keeper, {order}"));
        assert_left_to_logind(&lab, &user, &since, &format!("keeper, {order}"));

        // pamtester: open and close in one process (no command runs in between).
        let since = lab.sh_ok("date '+%Y-%m-%d %H:%M:%S'").trim().to_string();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        lab.sh_ok(&format!(
            "systemd-run --quiet --wait --pipe --service-type=exec -- pamtester {service} {} open_session close_session",
            user.name
        ));
        assert_left_to_logind(&lab, &user, &since, &format!("pamtester, {order}"));
    }

    // Linger switched on while a session is open (`loginctl enable-linger`): logind keeps the
    // dir after the last session; pam_jupyter leaves it, and so does gc.
    let service = "jupyterhub";
    let dir = format!("/run/user/{}", user.uid);
    let since = lab.sh_ok("date '+%Y-%m-%d %H:%M:%S'").trim().to_string();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    lab.sh_ok(&format!(
        "systemd-run --quiet --unit=lab-linger --service-type=exec --property=StandardOutput=file:/tmp/linger.out \
         -- jupyter-session exec --service {service} --user {} -- sh -c '{}; while ! test -e /tmp/go; do sleep 0.05; done'",
        user.name,
        PROBE.replace('\'', "'\\''")
    ));
    lab.wait_for("the lingering session to open", 20, "grep -q owner= /tmp/linger.out");
    let out = lab.sh_ok("cat /tmp/linger.out");
    assert_logind_session(&out, &user, "linger");
    lab.sh_ok(&format!("loginctl enable-linger {} && touch /tmp/go", user.name));
    lab.wait_for("the lingering session to close", 20, "! systemctl is-active -q lab-linger");
    std::thread::sleep(std::time::Duration::from_secs(1));
    lab.sh_ok(&format!("test -d {dir}"));
    let log = lab.journal(&format!("--since '{since}' | grep pam_jupyter"));
    assert!(log.contains("systemd-logind manages it"), "linger: left to logind:\n{log}");
    let gc = lab.sh_ok("jupyter-session gc");
    assert!(!gc.contains("removed"), "linger: gc removes nothing:\n{gc}");
    lab.sh_ok(&format!("test -d {dir}"));
    lab.sh_ok(&format!("loginctl disable-linger {}", user.name));
    lab.wait_for("logind to let the user go after disable-linger", 10, &format!("! test -e {dir}"));
}

#[test]
fn a_pamname_unit_is_closed_by_its_execstoppost() {
    if !lab_available("a_pamname_unit_is_closed_by_its_execstoppost") {
        return;
    }
    let lab = Lab::boot("unit", &[]);
    let user = lab.useradd("sdu", "pw");
    let dir = format!("/run/user/{}", user.uid);
    // The shape SystemdSpawner gives a server unit with docs/systemd.md's properties; the main
    // process ends by itself, so systemd's (sd-pam) runs pam_close_session (as the user; its comm
    // shows truncated, `(sd-pam` or `(sd-`).
    let since = lab.sh_ok("date '+%Y-%m-%d %H:%M:%S'").trim().to_string();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = lab.sh_ok(&format!(
        "systemd-run --quiet --wait --pipe --uid={u} --property=PAMName=jupyterhub-unit \
         '--property=ExecStopPost=+/usr/local/bin/jupyter-session gc --user {u}' \
         -- sh -c 'echo xdg=$XDG_RUNTIME_DIR; stat -c owner=%u:%a $XDG_RUNTIME_DIR; cat /proc/self/cgroup'",
        u = user.name
    ));
    assert!(out.contains(&format!("xdg={dir}")) && out.contains(&format!("owner={}:700", user.uid)), "{out}");
    assert!(!out.contains("session-"), "no logind session scope: {out}");
    lab.wait_for(
        "the unit to be gone",
        10,
        &format!("! test -e {dir} && ! jupyter-session list | grep -q {}", user.name),
    );
    let log =
        lab.sh_out(&format!("journalctl --no-pager -q --since '{since}' | grep -E 'pam_jupyter|jupyter-session'"));
    let closes: Vec<&str> = log.lines().filter(|l| l.contains("(sd-") && l.contains("pam_jupyter")).collect();
    assert_eq!(closes.len(), 1, "(sd-pam) ran pam_jupyter's close once:\n{log}");
    assert!(closes[0].contains("runs without privileges"), "and it says what it left:\n{log}");
    assert!(!log.contains("Permission denied") && !log.contains("failed"), "no failure:\n{log}");
    // (with --pipe, ExecStopPost's output comes back to systemd-run)
    assert!(out.contains(&format!("removed {dir}")), "ExecStopPost's gc removed the dir:\n{out}");
}

// --- SystemdSpawner with a real hub ---------------------------------------------------------

const HUB_ROOT: &str = "/var/tmp/systemd-lab-hub";
const PYTHON_PACKAGES: &[&str] =
    &["jupyterhub>=5,<7", "jupyter_server>=2,<3", "jupyterhub-systemdspawner>=1,<2", "wheel"];

fn installed() -> &'static Installed {
    static ONCE: OnceLock<Installed> = OnceLock::new();
    ONCE.get_or_init(|| {
        hub::install(HUB_ROOT, PYTHON_PACKAGES, "systemd lab", |root, _venv| {
            let image_tar = root.join("bb.tar");
            hub::make_busybox_image(&root.join("bb-rootfs"), &image_tar);
            image_tar
        })
    })
}

const PASSWORD: &str = "lab-pw-1";

/// The recipe: the first ```python block of docs/systemd.md, so the doc is what ran.
fn recipe() -> String {
    let doc = fs::read_to_string(hub::repo_dir().join("docs/systemd.md")).unwrap();
    let start = doc.find("```python\n").expect("docs/systemd.md has a ```python recipe") + "```python\n".len();
    let end = start + doc[start..].find("```").unwrap();
    doc[start..end].to_string()
}

#[test]
fn systemdspawner_recipe_with_a_real_hub() {
    if !lab_available("systemdspawner_recipe_with_a_real_hub") {
        return;
    }
    let inst = installed();
    let lab = Lab::boot("hub", &[Path::new(HUB_ROOT)]);
    let user = lab.useradd("sdh", PASSWORD);
    let dir = lab.shared.join("hub");
    fs::create_dir_all(&dir).unwrap();
    let port = hub::free_port();
    let probe = lab.shared.join("probe");
    fs::create_dir_all(&probe).unwrap();
    hub::set_mode(&probe, 0o1777);

    // The server command: probe what a notebook user would do (rootless podman, allocate past
    // mem_limit), say so on stdout (the unit's journal) and in a file, then the real server.
    let wrapper = lab.shared.join("lab-singleuser");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n\
             echo \"lab-server-start uid=$(id -u)\"\n\
             out={probe}/$(id -un)\n\
             podman unshare true\n\
             podman import -q {tar} localhost/bb >/dev/null 2>$out.podman-import\n\
             echo \"podman=$(podman run --rm --network none localhost/bb id 2>&1 | tr '\\n' ' ')\" | tee $out\n\
             python3 -c 'b = bytearray(b\"x\") * (400 * 1024 * 1024); print(len(b))' >/dev/null 2>&1\n\
             echo \"alloc=$?\" | tee -a $out\n\
             exec {singleuser} \"$@\"\n",
            probe = probe.display(),
            tar = inst.image_tar.display(),
            singleuser = inst.bin("jupyterhub-singleuser").display(),
        ),
    )
    .unwrap();
    hub::set_mode(&wrapper, 0o755);

    let mut config = hub::base_config_for(inst, &dir, port, "jupyterhub", &[&user.name]);
    config.push_str("\n# docs/systemd.md's recipe\n");
    config.push_str(&recipe());
    config.push_str(&format!(
        "\n# the test's own\nc.SystemdSpawner.mem_limit = '200M'\nc.Spawner.cmd = [{:?}]\nc.SystemdSpawner.default_shell = '/bin/sh'\n",
        wrapper.display().to_string()
    ));
    fs::write(dir.join("jupyterhub_config.py"), &config).unwrap();
    let log = dir.join("hub.log");
    lab.sh_ok(&format!(
        "systemd-run --quiet --unit=lab-hub --property=WorkingDirectory={d} --property=StandardOutput=append:{log} \
         --property=StandardError=append:{log} --setenv=PATH={path} --setenv=LANG=C.UTF-8 -- {hubbin} -f {d}/jupyterhub_config.py",
        d = dir.display(),
        log = log.display(),
        path = inst.hub_path(),
        hubbin = inst.bin("jupyterhub").display(),
    ));
    let base = format!("http://127.0.0.1:{port}");
    let client = |args: &[&str]| {
        let out = hub::run_script(&inst.python(), &base, "hubclient.py", args);
        assert!(
            out.status.success(),
            "hubclient {args:?} failed:\n{}\n--- hub log ---\n{}",
            jupyter_session_tests::stdout_and_stderr(&out),
            hub::tail(&fs::read_to_string(&log).unwrap_or_default(), 80)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let started = Instant::now();
    client(&["wait"]);
    eprintln!("systemd lab: hub up in {:.1} s", started.elapsed().as_secs_f64());
    let started = Instant::now();
    let out = client(&["start", &user.name, PASSWORD]);
    eprintln!("systemd lab: logged in, server ready in {:.1} s", started.elapsed().as_secs_f64());
    let token = serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()["token"].as_str().unwrap().to_string();

    let unit = format!("jupyter-{}-singleuser", user.name);
    let pid = lab.sh_ok(&format!("systemctl show -p MainPID --value {unit}")).trim().to_string();
    assert_ne!(pid, "0", "the unit has a main process");
    let env = lab.sh_ok(&format!("tr '\\0' '\\n' < /proc/{pid}/environ"));
    let var = |name: &str| env.lines().find_map(|l| l.strip_prefix(&format!("{name}="))).map(str::to_string);
    let rt = format!("/run/user/{}", user.uid);
    assert_eq!(var("XDG_RUNTIME_DIR").as_deref(), Some(rt.as_str()), "the server's environment:\n{env}");
    assert_eq!(var("PATH").as_deref(), Some(session_lib::config::DEFAULT_PATH), "pam_jupyter's PATH:\n{env}");
    assert_eq!(lab.sh_ok(&format!("stat -c '%u %a %F' {rt}")).trim(), format!("{} 700 directory", user.uid));
    assert_eq!(lab.sh_ok(&format!("cat /proc/{pid}/loginuid")).trim(), user.uid.to_string());
    // The server stays in its unit (no pam_systemd in the recipe's PAM service): the unit's
    // limits, journal and stop apply to it.
    let cgroup = lab.sh_ok(&format!("cat /proc/{pid}/cgroup"));
    assert!(cgroup.contains(&format!("/{unit}.service")), "the server runs in its unit:\n{cgroup}");
    assert!(!cgroup.contains("session-"), "not in a logind session scope:\n{cgroup}");
    let probed = fs::read_to_string(probe.join(&user.name)).unwrap_or_default();
    assert!(
        probed.contains("podman=uid=0(root)"),
        "rootless podman in the server:\n{probed}\n{}",
        fs::read_to_string(probe.join(format!("{}.podman-import", user.name))).unwrap_or_default()
    );
    assert!(probed.contains("alloc=137"), "400 MB past mem_limit = 200M: the allocation is killed:\n{probed}");
    let journal = lab.journal(&format!("-u {unit}"));
    assert!(
        journal.contains("lab-server-start") && journal.contains("podman=uid=0(root)"),
        "the server's output is in the unit's journal:\n{journal}"
    );

    // Stop through the hub: no process, no record, no dir, and the module's close (run by
    // (sd-pam), unprivileged) says what it left to the unit's ExecStopPost, nothing scarier.
    let since = lab.sh_ok("date '+%Y-%m-%d %H:%M:%S'").trim().to_string();
    let stopping = Instant::now();
    client(&["stop", &user.name, &token]);
    lab.wait_for(
        "no process, record or runtime dir of the user after the stop",
        10,
        &format!(
            "! pgrep -u {} >/dev/null && ! test -e {rt} && ! jupyter-session list | grep -q {}",
            user.uid, user.name
        ),
    );
    eprintln!("systemd lab: server stopped and cleaned up in {:.2} s", stopping.elapsed().as_secs_f64());
    // systemd's (sd-pam) closes the PAM session as the user (when it gets to: it skips the close
    // when the stop's SIGTERM reaches it before its parent is gone). Either way pam_jupyter
    // logs no failure, and an unprivileged close says what it left.
    let log =
        lab.sh_out(&format!("journalctl --no-pager -q --since '{since}' | grep -E 'pam_jupyter|jupyter-session'"));
    eprintln!("systemd lab: the stop's log:\n{log}");
    assert!(!log.contains("Permission denied") && !log.contains("failed"), "no failure at the stop:\n{log}");
    for line in log.lines().filter(|l| l.contains("(sd-") && l.contains("pam_jupyter")) {
        assert!(line.contains("runs without privileges"), "the unprivileged close says what it left:\n{log}");
    }
    let journal = lab.journal(&format!("-u {unit} --since '{since}'"));
    assert!(journal.contains(&format!("removed {rt}")), "ExecStopPost's gc removed the dir:\n{journal}");
    lab.sh_ok("systemctl stop lab-hub");
}
