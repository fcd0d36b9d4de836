//! The SELinux lab: a Debian 12 VM, SELinux enforcing with Debian's refpolicy, booted ONCE per
//! test process under QEMU/TCG (tests/selinux-lab/). The image is this checkout installed with
//! `install.sh --selinux` (binaries, PAM service, policy module, contexts entries, tmpfiles
//! entry) and a hub venv at /opt/jupyterhub; root's login shell on the serial console runs
//! tests/selinux-lab/scenarios.sh from a 9p share and powers off. Each test below asserts one
//! scenario's results from that one boot, and that the project's domains (jupyter_session_t,
//! jupyterhub_t) and types caused no AVC denial in the scenario's window (the `ausearch` output
//! is printed):
//! - `lab_boots_enforcing_with_the_module`: enforcing, module loaded, the registry made at boot
//!   by systemd-tmpfiles as jupyter_session_runtime_t;
//! - `lab_root_shell_registry_keeps_its_label`: a root shell (unconfined_t) makes
//!   /run/jupyter-session first (pamtester, a stack of pam_jupyter alone);
//! - `lab_pamtester_shipped_stack`: pamtester through the shipped etc/pam.d/jupyterhub.debian
//!   as a system service;
//! - `lab_keeper_exec_unconfined_user` / `lab_keeper_exec_user_u_user`: `jupyter-session exec`
//!   as a system service (jupyter_session_t): the command in unconfined_t / user_t, the runtime
//!   dir user_runtime_t, the loginuid set;
//! - `lab_pamname_unit`: a unit with `PAMName=jupyterhub User=` (what SystemdSpawner makes);
//! - `lab_hub_session_spawner`: the hub as a service (jupyterhub_t), HTTP login with curl,
//!   SessionSpawner starts alice's server through the keeper, in unconfined_t;
//! - `lab_no_project_denials_all_boot`: the whole boot's `ausearch -m avc -ts boot`.
//!
//! Needs root, qemu-system-x86_64, debootstrap (and the package mirror), setfiles, semodule,
//! selinux-policy-dev, npm. Cost: see docs/benchmarks.md ("labs").
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use jupyter_session_tests::hub::{self, repo_dir};
use jupyter_session_tests::{require_root, run, stdout_and_stderr, target_dir};
use nix::fcntl::{Flock, FlockArg};

/// The lab's cache and work dir (base tree, image, shares).
const LAB: &str = "/var/tmp/selinux-lab";
/// The hub venv and proxy built on the host, copied into the image.
const HUB_ROOT: &str = "/var/tmp/selinux-lab/hub";
const PYTHON_PACKAGES: &[&str] = &["jupyterhub>=5,<7", "jupyter_server>=2,<3", "setuptools>=61", "wheel"];
/// Boot to poweroff, scenarios included (about 3 minutes under TCG on 2 shared cores).
const BOOT_TIMEOUT_SECONDS: &str = "900";
const TOOLS: &[&str] = &["qemu-system-x86_64", "debootstrap", "mkfs.ext4", "setfiles", "semodule", "make", "npm"];

/// The results of the one boot, or why there are none.
fn lab() -> Option<&'static Result<PathBuf, String>> {
    static ONCE: OnceLock<Option<Result<PathBuf, String>>> = OnceLock::new();
    ONCE.get_or_init(|| {
        if !require_root("selinux_lab", TOOLS) {
            return None;
        }
        Some(boot_once())
    })
    .as_ref()
}

fn step(what: &str, cmd: &mut Command) -> Result<(), String> {
    let started = Instant::now();
    let out = run(cmd);
    let text = stdout_and_stderr(&out);
    eprintln!("selinux_lab: {what}: {:.1} s\n{}", started.elapsed().as_secs_f64(), hub::tail(&text, 15));
    if out.status.success() { Ok(()) } else { Err(format!("{what} failed ({}):\n{text}", out.status)) }
}

fn boot_once() -> Result<PathBuf, String> {
    let lab_dir = repo_dir().join("tests/selinux-lab");
    // One lab build at a time on this machine (the base tree and the image are shared).
    fs::create_dir_all(LAB).unwrap();
    let lock = fs::File::options().create(true).truncate(false).write(true).open(Path::new(LAB).join(".lock")).unwrap();
    let _lock = Flock::lock(lock, FlockArg::LockExclusive).map_err(|(_, e)| e).unwrap();
    let inst = hub::install(HUB_ROOT, PYTHON_PACKAGES, "selinux_lab", |_root, venv| venv.to_path_buf());
    let node = inst.proxy.ancestors().nth(3).expect("node dir of the proxy").to_path_buf();
    step(
        "build the image",
        Command::new(lab_dir.join("build-image")).arg(LAB).arg(target_dir()).arg(&inst.venv).arg(&node),
    )?;
    let share = PathBuf::from(LAB).join(format!("share-{}", std::process::id()));
    let _ = fs::remove_dir_all(&share);
    fs::create_dir_all(&share).unwrap();
    fs::copy(lab_dir.join("scenarios.sh"), share.join("scenarios.sh")).unwrap();
    let booted = step(
        "boot, run the scenarios, power off",
        Command::new(lab_dir.join("boot")).arg(LAB).arg(&share).arg(BOOT_TIMEOUT_SECONDS),
    );
    let console = fs::read_to_string(share.join("console.log")).unwrap_or_default();
    let log = fs::read_to_string(share.join("scenarios.log")).unwrap_or_default();
    if let Err(e) = booted {
        return Err(format!("{e}\nconsole:\n{}\nscenarios.log:\n{log}", hub::tail(&console, 60)));
    }
    if !share.join("results/done").exists() {
        return Err(format!(
            "the VM powered off before the scenarios finished\nconsole:\n{}\nscenarios.log:\n{log}",
            hub::tail(&console, 60)
        ));
    }
    Ok(share.join("results"))
}

/// One scenario's results dir, with its output, its denials and whether it exited 0.
struct Scenario {
    name: &'static str,
    dir: PathBuf,
}

impl Scenario {
    fn get(name: &'static str) -> Option<Scenario> {
        match lab()? {
            Ok(results) => Some(Scenario { name, dir: results.join(name) }),
            Err(e) => panic!("the SELinux lab did not run: {e}"),
        }
    }

    fn file(&self, file: &str) -> String {
        fs::read_to_string(self.dir.join(file)).unwrap_or_else(|e| format!("<{}: {e}>", self.dir.join(file).display()))
    }

    fn out(&self) -> String {
        self.file("out")
    }

    /// `key=value` from a facts file.
    fn fact(&self, key: &str) -> String {
        let facts = self.file("facts");
        facts
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .unwrap_or_else(|| panic!("{}: no {key}= in the facts:\n{facts}\nout:\n{}", self.name, self.out()))
            .to_string()
    }

    fn assert_ok(&self) {
        let rc = self.file("rc");
        eprintln!("{}: {} s, exit {}", self.name, self.file("seconds").trim(), rc.trim());
        assert_eq!(rc.trim(), "0", "{} failed:\n{}", self.name, self.out());
    }

    /// Print the scenario's denials; fail on any from or on the project's domains and types.
    fn assert_no_project_denials(&self) {
        assert_no_project_denials(self.name, &self.file("avc"));
    }
}

fn project_denials(avc: &str) -> Vec<&str> {
    avc.lines().filter(|l| l.contains("avc:") && l.contains("denied") && l.contains("jupyter")).collect()
}

fn assert_no_project_denials(what: &str, avc: &str) {
    eprintln!("{what}: ausearch -m avc,user_avc,selinux_err:\n{avc}");
    // What ausearch says: records, or `<no matches>`; anything else (a bad -ts) proves nothing.
    assert!(
        avc.contains("<no matches>") || avc.contains("type="),
        "{what}: ausearch gave neither records nor `<no matches>`:\n{avc}"
    );
    let denied = project_denials(avc);
    assert!(denied.is_empty(), "{what}: {} AVC denials of the project's domains:\n{}", denied.len(), denied.join("\n"));
}

/// The runtime dir as refpolicy labels it, and the registry's type.
const RUNTIME_TYPE: &str = ":user_runtime_t:";
const REGISTRY_TYPE: &str = ":jupyter_session_runtime_t:";

#[test]
fn lab_boots_enforcing_with_the_module() {
    let Some(s) = Scenario::get("env") else { return };
    s.assert_ok();
    let out = s.out();
    assert!(out.lines().next() == Some("Enforcing"), "not enforcing:\n{out}");
    assert!(out.lines().any(|l| l == "jupyter_session"), "module not loaded:\n{out}");
    let boot = s.file("boot_registry_label");
    assert!(boot.contains(REGISTRY_TYPE), "systemd-tmpfiles made the registry with another label: {boot}");
    s.assert_no_project_denials();
}

#[test]
fn lab_root_shell_registry_keeps_its_label() {
    let Some(s) = Scenario::get("registry_root_shell") else { return };
    s.assert_ok();
    let label = s.file("registry_label");
    assert!(label.contains(REGISTRY_TYPE), "a root shell made /run/jupyter-session as {label}");
    s.assert_no_project_denials();
}

#[test]
fn lab_pamtester_shipped_stack() {
    let Some(s) = Scenario::get("pamtester_shipped_stack") else { return };
    s.assert_ok();
    s.assert_no_project_denials();
}

fn assert_keeper_exec(name: &'static str, context: &str) {
    let Some(s) = Scenario::get(name) else { return };
    s.assert_ok();
    assert_eq!(s.fact("context"), context, "the user's command ran in the wrong context\n{}", s.out());
    let uid = s.fact("uid");
    assert_eq!(s.fact("xdg"), format!("/run/user/{uid}"));
    assert!(s.fact("xdg_label").contains(RUNTIME_TYPE), "runtime dir label: {}", s.fact("xdg_label"));
    assert_eq!(s.fact("xdg_owner"), format!("{uid}:700"));
    assert_eq!(s.fact("loginuid"), uid, "loginuid not set by pam_loginuid in the keeper");
    assert!(s.file("registry_label").contains(REGISTRY_TYPE), "registry: {}", s.file("registry_label"));
    s.assert_no_project_denials();
}

#[test]
fn lab_keeper_exec_unconfined_user() {
    assert_keeper_exec("exec_alice", "unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023");
}

#[test]
fn lab_keeper_exec_user_u_user() {
    assert_keeper_exec("exec_bob", "user_u:user_r:user_t:s0");
}

#[test]
fn lab_pamname_unit() {
    let Some(s) = Scenario::get("pamname_unit") else { return };
    s.assert_ok();
    let uid = s.fact("uid");
    assert_eq!(s.fact("xdg"), format!("/run/user/{uid}"));
    assert!(s.fact("xdg_label").contains(RUNTIME_TYPE), "runtime dir label: {}", s.fact("xdg_label"));
    s.assert_no_project_denials();
}

#[test]
fn lab_hub_session_spawner() {
    let Some(s) = Scenario::get("hub_session_spawner") else { return };
    s.assert_ok();
    let processes = s.file("processes");
    assert!(processes.contains(":jupyterhub_t:"), "the hub is not in jupyterhub_t:\n{processes}\n{}", s.out());
    assert!(
        s.fact("context").starts_with("unconfined_u:unconfined_r:unconfined_t:"),
        "alice's server context: {}\n{processes}",
        s.fact("context")
    );
    assert!(s.fact("xdg_label").contains(RUNTIME_TYPE), "runtime dir label: {}", s.fact("xdg_label"));
    s.assert_no_project_denials();
}

#[test]
fn lab_no_project_denials_all_boot() {
    let Some(Ok(results)) = lab() else {
        if let Some(Err(e)) = lab() {
            panic!("the SELinux lab did not run: {e}");
        }
        return;
    };
    let avc = fs::read_to_string(Path::new(results).join("all-avc")).unwrap();
    assert_no_project_denials("the whole boot", &avc);
}
