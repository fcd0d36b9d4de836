//! The SELinux policy module against the real toolchain: it is built with
//! the installed refpolicy development files (Debian's selinux-policy-dev),
//! linked into a full copy of the system policy with `semodule -p` (the
//! system store is never touched), and the linked binary policy is queried
//! with setools (sesearch's library, one policy load for all queries). The runtime-dir labelling code is checked against
//! that linked policy's real file_contexts.
//!
//! Linking takes ≈9 s, so it happens once for all the checks.
#![forbid(unsafe_code)]

use std::collections::{BTreeSet, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;

use jupyter_session_tests::{require_root, run, run_ok, unique};
use session_lib::Config;
use session_lib::runtime_dir::RuntimeDirs;
use session_lib::selinux::{Labeler, dir_label_in};

const TOOLS: &[&str] = &["make", "m4", "checkmodule", "semodule_package", "semodule", "sesearch", "seinfo"];

fn sources() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../selinux")
}

/// A scratch copy of selinux/ (the devel Makefile writes tmp/ and the .pp
/// next to the sources), built with `make` plus `args`.
struct Build {
    dir: PathBuf,
}

impl Build {
    fn new(tag: &str, edit_te: impl FnOnce(&str) -> String) -> Build {
        let dir = std::env::temp_dir().join(unique(&format!("js-sepol-{tag}-")));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["Makefile", "jupyter_session.te", "jupyter_session.if", "jupyter_session.fc"] {
            std::fs::copy(sources().join(f), dir.join(f)).unwrap();
        }
        let te = std::fs::read_to_string(dir.join("jupyter_session.te")).unwrap();
        std::fs::write(dir.join("jupyter_session.te"), edit_te(&te)).unwrap();
        Build { dir }
    }

    fn make(&self, args: &[&str]) -> std::process::Output {
        run(Command::new("make").arg("-C").arg(&self.dir).args(args))
    }

    fn pp(&self) -> PathBuf {
        self.dir.join("jupyter_session.pp")
    }
}

impl Drop for Build {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A copy of the system policy store with a module linked in.
struct Linked {
    root: PathBuf,
    /// Answers to [`QUERIES`], fetched with one load of the policy.
    cache: HashMap<Vec<String>, Vec<String>>,
}

/// Every query the tests ask (sesearch arguments, or `--attrs TYPE`,
/// `--bool NAME`), answered up front by tests/fixtures/sepolicy_query.py
/// with one load of the policy: sesearch reloads it (≈1.3 s) per call. A
/// query missing here still works, through sesearch itself.
const QUERIES: &[&[&str]] = &[
    &["-T", "-s", "jupyterhub_t", "-t", "jupyter_session_exec_t", "-c", "process"],
    &["-T", "-s", "init_t", "-t", "jupyter_session_exec_t", "-c", "process"],
    &["-T", "-s", "user_t", "-t", "jupyter_session_exec_t", "-c", "process"],
    &["-T", "-s", "unconfined_t", "-t", "jupyter_session_exec_t", "-c", "process"],
    &["-T", "-s", "sshd_t", "-t", "jupyter_session_exec_t", "-c", "process"],
    &["-A", "-s", "jupyterhub_t", "-t", "jupyter_session_t", "-c", "process"],
    &["-A", "-s", "init_t", "-t", "jupyter_session_t", "-c", "process"],
    &["-A", "-s", "jupyterhub_t", "-t", "jupyter_session_exec_t", "-c", "file"],
    &["-A", "-s", "init_t", "-t", "jupyter_session_exec_t", "-c", "file"],
    &["-A", "-s", "jupyter_session_t", "-t", "jupyter_session_exec_t", "-c", "file"],
    &["-A", "-s", "jupyterhub_t", "-t", "jupyterhub_exec_t", "-c", "file"],
    &["-A", "-s", "init_t", "-t", "jupyterhub_t", "-c", "process"],
    &["-A", "-s", "jupyterhub_t", "-t", "chkpwd_t", "-c", "process"],
    &["-A", "-s", "jupyterhub_t", "-t", "jupyterhub_port_t", "-c", "tcp_socket"],
    &["-T", "-s", "jupyter_session_t", "-t", "var_run_t", "-c", "dir"],
    &["-T", "-s", "sshd_t", "-t", "var_run_t", "-c", "dir"],
    &["-T", "-s", "init_t", "-t", "var_run_t", "-c", "dir"],
    &["-T", "-s", "local_login_t", "-t", "var_run_t", "-c", "dir"],
    &["-T", "-s", "jupyter_session_t", "-t", "user_runtime_root_t", "-c", "dir"],
    &["-T", "-s", "sshd_t", "-t", "user_runtime_root_t", "-c", "dir"],
    &["-T", "-s", "init_t", "-t", "user_runtime_root_t", "-c", "dir"],
    &["-T", "-s", "local_login_t", "-t", "user_runtime_root_t", "-c", "dir"],
    &["-T", "-s", "sudodomain", "-t", "user_runtime_root_t", "-c", "dir"],
    &["-A", "-s", "jupyter_session_t", "-t", "user_runtime_root_t", "-c", "dir"],
    &["-A", "-s", "sshd_t", "-t", "user_runtime_root_t", "-c", "dir"],
    &["-A", "-s", "init_t", "-t", "user_runtime_root_t", "-c", "dir"],
    &["-A", "-s", "local_login_t", "-t", "user_runtime_root_t", "-c", "dir"],
    &["-A", "-s", "jupyter_session_t", "-t", "user_runtime_t", "-c", "dir"],
    &["-A", "-s", "sshd_t", "-t", "user_runtime_t", "-c", "dir"],
    &["-A", "-s", "init_t", "-t", "user_runtime_t", "-c", "dir"],
    &["-A", "-s", "local_login_t", "-t", "user_runtime_t", "-c", "dir"],
    &["-A", "-s", "jupyter_session_t", "-t", "tmpfs_t", "-c", "filesystem"],
    &["-A", "-s", "sshd_t", "-t", "tmpfs_t", "-c", "filesystem"],
    &["-A", "-s", "init_t", "-t", "tmpfs_t", "-c", "filesystem"],
    &["-A", "-s", "local_login_t", "-t", "tmpfs_t", "-c", "filesystem"],
    &["-A", "-s", "user_runtime_t", "-t", "tmpfs_t", "-c", "filesystem"],
    &["-A", "-s", "jupyter_session_t", "-t", "jupyter_session_runtime_t", "-c", "dir"],
    &["-A", "-s", "sshd_t", "-t", "jupyter_session_runtime_t", "-c", "dir"],
    &["-A", "-s", "init_t", "-t", "jupyter_session_runtime_t", "-c", "dir"],
    &["-A", "-s", "jupyter_session_t", "-t", "jupyter_session_runtime_t", "-c", "file"],
    &["-A", "-s", "sshd_t", "-t", "jupyter_session_runtime_t", "-c", "file"],
    &["-A", "-s", "init_t", "-t", "jupyter_session_runtime_t", "-c", "file"],
    &["-A", "-s", "user_t", "-t", "jupyter_session_runtime_t", "-c", "file"],
    &["-A", "-s", "jupyter_session_t", "-t", "jupyter_session_conf_t", "-c", "file"],
    &["-A", "-s", "sshd_t", "-t", "jupyter_session_conf_t", "-c", "file"],
    &["-A", "-s", "init_t", "-t", "jupyter_session_conf_t", "-c", "file"],
    &["-A", "-s", "jupyter_session_t", "-t", "jupyter_session_t", "-c", "capability"],
    &["-A", "-s", "jupyter_session_t", "-t", "jupyter_session_t", "-c", "netlink_audit_socket"],
    &["-A", "-s", "jupyter_session_t", "-t", "jupyter_session_t", "-c", "process"],
    &["-A", "-s", "jupyter_session_t", "-t", "user_t", "-c", "process"],
    &["-A", "-s", "jupyter_session_t", "-t", "staff_t", "-c", "process"],
    &["-A", "-s", "jupyter_session_t", "-t", "unconfined_t", "-c", "process"],
    &["-A", "-s", "user_t", "-t", "jupyter_session_t", "-c", "fd"],
    &["-A", "-s", "staff_t", "-t", "jupyter_session_t", "-c", "fd"],
    &["-A", "-s", "unconfined_t", "-t", "jupyter_session_t", "-c", "fd"],
    &["-A", "-s", "user_t", "-t", "bin_t", "-c", "file"],
    &["-A", "-s", "staff_t", "-t", "bin_t", "-c", "file"],
    &["-A", "-s", "unconfined_t", "-t", "bin_t", "-c", "file"],
    &["-T", "-s", "jupyter_session_t", "-c", "process"],
    &["-T", "-s", "jupyter_session_t", "-t", "bin_t", "-c", "process"],
    &["-A", "-s", "jupyter_session_t", "-t", "bin_t", "-c", "file"],
    &["-A", "-s", "jupyter_session_t", "-t", "shell_exec_t", "-c", "file"],
    &["--bool", "jupyter_session_unconfined_fallback"],
    &["--attrs", "jupyter_session_t"],
    &["--attrs", "jupyterhub_t"],
    &["-A", "-ds", "-s", "jupyter_session_t"],
    &["-A", "-ds", "-s", "jupyterhub_t"],
    &["-A", "-s", "jupyter_session_t", "-t", "user_tmp_t", "-c", "dir"],
];

impl Linked {
    fn link(pp: &Path) -> Linked {
        let root = std::env::temp_dir().join(unique("js-sepol-root-"));
        std::fs::create_dir_all(root.join("var/lib/selinux")).unwrap();
        std::fs::create_dir_all(root.join("etc/selinux")).unwrap();
        run_ok(Command::new("cp").arg("-a").arg("/var/lib/selinux/default").arg(root.join("var/lib/selinux/")));
        run_ok(Command::new("cp").arg("-a").arg("/etc/selinux/default").arg(root.join("etc/selinux/")));
        let mut linked = Linked { root, cache: HashMap::new() };
        run_ok(Command::new("semodule").arg("-p").arg(&linked.root).args(["-s", "default", "-n", "-i"]).arg(pp));
        linked.cache = linked.query_all(QUERIES);
        linked
    }

    /// Answer `queries` with one run of the query helper.
    fn query_all(&self, queries: &[&[&str]]) -> HashMap<Vec<String>, Vec<String>> {
        use std::io::Write;
        let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sepolicy_query.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(helper)
            .arg(self.policy())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run the policy query helper");
        let input = serde_json::to_vec(queries).unwrap();
        child.stdin.take().unwrap().write_all(&input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "policy query helper failed: {}", out.status);
        let answers: Vec<Vec<String>> = serde_json::from_slice(&out.stdout).expect("helper output");
        assert_eq!(answers.len(), queries.len());
        queries.iter().map(|q| q.iter().map(|s| s.to_string()).collect()).zip(answers).collect()
    }

    /// The answer to one query: from the cache, else by the tools.
    fn ask(&self, args: &[&str]) -> Vec<String> {
        let key: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        if let Some(hit) = self.cache.get(&key) {
            return hit.clone();
        }
        eprintln!("policy query not in QUERIES (slow path): {args:?}");
        self.query_all(&[args]).remove(&key).unwrap()
    }

    fn policy(&self) -> PathBuf {
        let dir = self.root.join("etc/selinux/default/policy");
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        found.sort();
        found.pop().unwrap_or_else(|| panic!("no policy.NN in {}", dir.display()))
    }

    fn file_contexts(&self) -> PathBuf {
        self.root.join("etc/selinux/default/contexts/files/file_contexts")
    }

    /// The rules sesearch prints for `args`, one per line.
    fn sesearch(&self, args: &[&str]) -> Vec<String> {
        self.ask(args)
    }

    /// The permissions `source` has on `target:class` (direct rules for
    /// `source`, unconditional ones only).
    fn perms(&self, source: &str, target: &str, class: &str) -> BTreeSet<String> {
        let mut perms = BTreeSet::new();
        for rule in self.sesearch(&["-A", "-s", source, "-t", target, "-c", class]) {
            if rule.contains("]:") {
                continue; // conditional (a boolean), not granted by default
            }
            perms.extend(rule_perms(&rule));
        }
        perms
    }
}

impl Drop for Linked {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// `allow a b:c { p q };` or `allow a b:c p;` → {p, q}.
fn rule_perms(rule: &str) -> Vec<String> {
    let body = rule.split_once(':').map_or("", |(_, rest)| rest);
    let body = body.split_once(' ').map_or("", |(_, rest)| rest);
    body.trim_end_matches(';').replace(['{', '}'], " ").split_whitespace().map(String::from).collect()
}

fn assert_has(have: &BTreeSet<String>, want: &[&str], what: &str) {
    let missing: Vec<_> = want.iter().filter(|p| !have.contains(**p)).collect();
    assert!(missing.is_empty(), "{what}: missing {missing:?}; has {have:?}");
}

#[test]
fn build_fails_on_an_unknown_interface_or_type() {
    if !require_root("build_fails_on_an_unknown_interface_or_type", TOOLS) {
        return;
    }
    let iface = Build::new("iface", |te| format!("{te}\njupyter_session_no_such_interface(jupyter_session_t)\n"));
    let out = iface.make(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && !iface.pp().exists(), "an unknown interface built:\n{err}");
    assert!(err.contains("jupyter_session_no_such_interface"), "the error names the interface:\n{err}");

    let ty = Build::new("type", |te| format!("{te}\nallow jupyter_session_t jupyter_session_no_such_t:file read;\n"));
    let out = ty.make(&[]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success() && !ty.pp().exists(), "an unknown type built:\n{text}");
    assert!(text.contains("jupyter_session_no_such_t"), "the error names the type:\n{text}");

    // The control: the same copy without the bad line builds.
    let good = Build::new("good", str::to_string);
    let out = good.make(&[]);
    assert!(out.status.success() && good.pp().is_file(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn hub_and_init_enter_the_keeper_domain_on_its_binary(p: &Linked) {
    for source in ["jupyterhub_t", "init_t"] {
        let t = p.sesearch(&["-T", "-s", source, "-t", "jupyter_session_exec_t", "-c", "process"]);
        assert!(
            t.iter()
                .any(|r| r == &format!("type_transition {source} jupyter_session_exec_t:process jupyter_session_t;")),
            "{source}: {t:?}"
        );
        assert_has(&p.perms(source, "jupyter_session_t", "process"), &["transition"], source);
        assert_has(&p.perms(source, "jupyter_session_exec_t", "file"), &["execute", "read", "open"], source);
    }
    assert_has(&p.perms("jupyter_session_t", "jupyter_session_exec_t", "file"), &["entrypoint"], "entrypoint");
    assert_has(&p.perms("jupyterhub_t", "jupyterhub_exec_t", "file"), &["entrypoint"], "hub entrypoint");
    assert_has(&p.perms("init_t", "jupyterhub_t", "process"), &["transition"], "init runs the hub");
    // The hub stops the keeper; the hub checks passwords through unix_chkpwd.
    assert_has(&p.perms("jupyterhub_t", "jupyter_session_t", "process"), &["signal", "sigkill", "signull"], "stop");
    assert_has(&p.perms("jupyterhub_t", "chkpwd_t", "process"), &["transition"], "unix_chkpwd");
    assert_has(&p.perms("jupyterhub_t", "jupyterhub_port_t", "tcp_socket"), &["name_bind"], "hub port");
    // Nobody else lands in the keeper domain by running it: a user's
    // `jupyter-session check` stays in the user's domain.
    for source in ["user_t", "unconfined_t", "sshd_t"] {
        let t = p.sesearch(&["-T", "-s", source, "-t", "jupyter_session_exec_t", "-c", "process"]);
        assert!(t.is_empty(), "{source} must not enter the keeper: {t:?}");
    }
}

fn keeper_and_pam_hosts_create_runtime_dirs_with_the_user_runtime_type(p: &Linked) {
    for host in ["jupyter_session_t", "sshd_t", "init_t", "local_login_t"] {
        let t = p.sesearch(&["-T", "-s", host, "-t", "user_runtime_root_t", "-c", "dir"]);
        assert!(
            t.iter().any(|r| r == &format!("type_transition {host} user_runtime_root_t:dir user_runtime_t;")),
            "{host}: {t:?}"
        );
        let t = p.sesearch(&["-T", "-s", host, "-t", "var_run_t", "-c", "dir"]);
        assert!(
            t.iter().any(|r| r == &format!("type_transition {host} var_run_t:dir user_runtime_root_t user;")),
            "{host} creating a missing /run/user: {t:?}"
        );
        assert_has(
            &p.perms(host, "user_runtime_root_t", "dir"),
            &["search", "add_name", "remove_name", "write"],
            &format!("{host} in /run/user"),
        );
        assert_has(
            &p.perms(host, "user_runtime_t", "dir"),
            &["create", "setattr", "mounton", "rmdir", "open", "read"],
            &format!("{host} on /run/user/UID"),
        );
        assert_has(&p.perms(host, "tmpfs_t", "filesystem"), &["mount", "unmount", "relabelfrom"], host);
    }
    // The sudo domains (sudo_role_template) carry the attribute.
    let t = p.sesearch(&["-T", "-s", "sudodomain", "-t", "user_runtime_root_t", "-c", "dir"]);
    assert!(!t.is_empty(), "sudo hosts: {t:?}");
    // The tmpfs root labelled with rootcontext= is allowed on tmpfs.
    assert_has(&p.perms("user_runtime_t", "tmpfs_t", "filesystem"), &["associate"], "rootcontext");
}

fn keeper_manages_its_state_dir_and_reads_its_config(p: &Linked) {
    let t = p.sesearch(&["-T", "-s", "jupyter_session_t", "-t", "var_run_t", "-c", "dir"]);
    assert!(
        t.iter()
            .any(|r| r == "type_transition jupyter_session_t var_run_t:dir jupyter_session_runtime_t jupyter-session;"),
        "{t:?}"
    );
    for host in ["jupyter_session_t", "sshd_t", "init_t"] {
        assert_has(
            &p.perms(host, "jupyter_session_runtime_t", "dir"),
            &["create", "add_name", "remove_name", "write", "search", "rmdir"],
            host,
        );
        assert_has(
            &p.perms(host, "jupyter_session_runtime_t", "file"),
            &["create", "open", "read", "write", "lock", "unlink"],
            host,
        );
        assert_has(&p.perms(host, "jupyter_session_conf_t", "file"), &["open", "read"], host);
    }
    // init_t may write any config file (base policy); ours may not.
    for host in ["jupyter_session_t", "sshd_t"] {
        assert!(!p.perms(host, "jupyter_session_conf_t", "file").contains("write"), "{host} writes the config");
    }
    // Nobody but root's session machinery writes the registry.
    assert!(p.perms("user_t", "jupyter_session_runtime_t", "file").is_empty());
}

fn keeper_sets_loginuid_and_starts_the_user_command_in_the_user_domain(p: &Linked) {
    assert_has(&p.perms("jupyter_session_t", "jupyter_session_t", "capability"), &["audit_control"], "loginuid");
    assert_has(
        &p.perms("jupyter_session_t", "jupyter_session_t", "netlink_audit_socket"),
        &["create", "nlmsg_relay"],
        "audit",
    );
    assert_has(&p.perms("jupyter_session_t", "jupyter_session_t", "process"), &["setexec", "setkeycreate"], "pam");
    assert_has(
        &p.perms("jupyter_session_t", "jupyter_session_t", "capability"),
        &["setuid", "setgid", "kill", "chown", "fowner"],
        "drop to the user",
    );
    // pam_selinux's exec context: explicit transitions into user domains,
    // entered through a shell or a bin_t program.
    for user in ["user_t", "staff_t", "unconfined_t"] {
        assert_has(&p.perms("jupyter_session_t", user, "process"), &["transition", "signal"], user);
        assert_has(&p.perms(user, "jupyter_session_t", "fd"), &["use"], user);
        assert_has(&p.perms(user, "bin_t", "file"), &["entrypoint"], user);
    }
    // No automatic transition by default, and no running programs in the
    // keeper's own domain: without pam_selinux the exec fails closed.
    let auto: Vec<String> = p
        .sesearch(&["-T", "-s", "jupyter_session_t", "-c", "process"])
        .into_iter()
        .filter(|r| !r.contains("]:") && !r.contains("chkpwd_t") && !r.contains("updpwd_t"))
        .collect();
    assert!(auto.is_empty(), "automatic process transitions: {auto:?}");
    let fallback = p.sesearch(&["-T", "-s", "jupyter_session_t", "-t", "bin_t", "-c", "process"]);
    assert!(
        fallback.iter().all(|r| r.contains("[ jupyter_session_unconfined_fallback ]:True")),
        "the unconfined fallback is behind its boolean: {fallback:?}"
    );
    assert!(!fallback.is_empty(), "the boolean's rule exists: {fallback:?}");
    for t in ["bin_t", "shell_exec_t"] {
        let perms = p.perms("jupyter_session_t", t, "file");
        assert!(!perms.contains("execute_no_trans") && !perms.contains("entrypoint"), "{t}: {perms:?}");
    }
    assert_eq!(p.ask(&["--bool", "jupyter_session_unconfined_fallback"]), ["false"], "the fallback is off");
}

/// Attributes that stand for (nearly) every domain or file: a rule from our
/// types to one of them would be a blanket grant.
const BROAD: &[&str] = &[
    "domain",
    "file_type",
    "non_security_file_type",
    "non_auth_file_type",
    "filesystem_type",
    "exec_type",
    "entry_type",
    "userdomain",
    "unpriv_userdomain",
    "security_file_type",
    "configfile",
    "port_type",
    "defined_port_type",
    "unreserved_port_type",
    "reserved_port_type",
    "node_type",
    "netif_type",
    "dev_node",
    "device_node",
    "proc_type",
    "sysctl_type",
];

fn module_grants_nothing_broad(p: &Linked) {
    for ours in ["jupyter_session_t", "jupyterhub_t"] {
        // The domain's own attributes: nothing unconfined or privileged.
        let attrs = p.ask(&["--attrs", ours]);
        assert!(attrs.iter().any(|a| a == "domain"), "{ours}: {attrs:?}");
        for bad in ["unconfined", "can_relabelto_shadow", "kern_unconfined", "files_unconfined", "userdomain"] {
            let hit: Vec<&String> = attrs.iter().filter(|a| a.contains(bad)).collect();
            assert!(hit.is_empty(), "{ours} has {hit:?}");
        }
        // Direct rules from our type to broad attributes.
        for rule in p.sesearch(&["-A", "-ds", "-s", ours]) {
            let target = rule.split_whitespace().nth(2).and_then(|t| t.split(':').next()).unwrap_or("");
            if !BROAD.contains(&target) {
                continue;
            }
            let class = rule.split_whitespace().nth(2).and_then(|t| t.split(':').nth(1)).unwrap_or("");
            let perms: BTreeSet<String> = rule_perms(&rule).into_iter().collect();
            let read_only: BTreeSet<String> =
                ["getattr", "ioctl", "lock", "open", "read", "search"].iter().map(|s| s.to_string()).collect();
            // The one exception: reading process state in /proc (the
            // registry's liveness check and keep_while_processes), for
            // the keeper only; and the inherited-fd/signal rules of the
            // spec transition into user domains.
            let allowed = match (ours, target, class) {
                ("jupyter_session_t", "domain", "dir" | "file" | "lnk_file") => perms.is_subset(&read_only),
                (_, "userdomain", "process") => perms
                    .iter()
                    .all(|p| ["transition", "signal", "sigkill", "signull", "getattr"].contains(&p.as_str())),
                (_, "userdomain", "dir" | "file" | "lnk_file") => perms.is_subset(&read_only),
                // pam_keyinit's session keyring, made in the keeper after
                // pam_selinux set the key-create context to the user's.
                ("jupyter_session_t", "userdomain", "key") => perms
                    .iter()
                    .all(|p| ["create", "link", "search", "view", "read", "write", "setattr"].contains(&p.as_str())),
                // Name resolution etc. from base interfaces (sockets on
                // nodes, generic port connects) stay network-only.
                (_, "node_type" | "port_type" | "unreserved_port_type" | "reserved_port_type", _) => {
                    !perms.iter().any(|p| p == "name_bind" && target != "node_type")
                }
                _ => false,
            };
            assert!(allowed, "{ours}: broad rule {rule}");
        }
    }
}

fn labels_from_the_linked_policy_file_contexts(p: &Linked) {
    let fc = p.file_contexts();
    // The host policy's entries for runtime dirs, read from the files:
    // the generic one in file_contexts, and genhomedircon's template for
    // numeric names in file_contexts.homedirs (the default SELinux user
    // of logins, unconfined_u on Debian), which restorecon prefers.
    let entry_in = |file: &Path, spec: &str| -> Option<String> {
        let text = std::fs::read_to_string(file).ok()?;
        let line = text.lines().find(|l| l.split_whitespace().next() == Some(spec) && l.contains("\t-d\t"))?;
        line.split_whitespace().last().map(String::from)
    };
    let generic = entry_in(&fc, "/run/user/[^/]+").expect("a /run/user/[^/]+ -d entry");
    assert_eq!(generic, "system_u:object_r:user_runtime_t:s0", "Debian refpolicy's runtime dir label");
    let homedirs = entry_in(&fc.with_file_name("file_contexts.homedirs"), "/run/user/[0-9]+");
    let expected = homedirs.clone().unwrap_or_else(|| generic.clone());
    assert_eq!(expected.split(':').nth(2), Some("user_runtime_t"), "{expected}");
    assert_eq!(dir_label_in(&fc, Path::new("/run/user/1234")).unwrap(), Some(expected.clone()), "{homedirs:?}");
    // A non-numeric name matches only the generic entry.
    assert_eq!(dir_label_in(&fc, Path::new("/run/user/abc")).unwrap(), Some(generic.clone()));
    assert_eq!(
        dir_label_in(&fc, Path::new("/run/user")).unwrap().as_deref(),
        Some("system_u:object_r:user_runtime_root_t:s0")
    );
    // Deeper paths get no runtime dir label.
    let deeper = dir_label_in(&fc, Path::new("/run/user/1234/podman")).unwrap();
    assert!(deeper.as_deref().is_none_or(|l| !l.contains(":user_runtime_t:")), "{deeper:?}");
    // The module's own file contexts are in the linked policy.
    assert_eq!(
        dir_label_in(&fc, Path::new("/run/jupyter-session")).unwrap().as_deref(),
        Some("system_u:object_r:jupyter_session_runtime_t:s0")
    );
    // /var/run is an alias of /run (file_contexts.subs_dist).
    assert_eq!(dir_label_in(&fc, Path::new("/var/run/user/1234")).unwrap(), Some(expected));
}

fn runtime_dir_created_by_session_lib_carries_the_policy_label(p: &Linked) {
    let fc = p.file_contexts();
    let expected = dir_label_in(&fc, Path::new("/run/user/1234")).unwrap().unwrap();
    // A uid no account has, so that no real session is touched.
    let uid = 3_900_000_000 + std::process::id() % 1_000_000;
    // A plain dir, labelled through its fd (no tmpfs: rootcontext= needs an SELinux kernel).
    let config = Config { tmpfs: false, ..Config::default() };
    let dirs = RuntimeDirs::new(&config).with_selinux_labels(Labeler::with_file_contexts(&fc));
    let path = dirs.path_for(uid);
    assert!(!path.exists(), "{} exists already", path.display());
    let prepared = dirs.ensure(uid, uid).expect("create the runtime dir");
    let created = prepared.created.expect("created by this call");
    let label = session_lib::lgetxattr(&path, "security.selinux").unwrap();
    let notes = prepared.notes.clone();
    drop(prepared);
    let removed = dirs.remove(uid, &created);
    assert!(!path.exists(), "{} left behind: {removed:?}", path.display());
    // This kernel has no SELinux LSM but stores security.selinux as a
    // plain extended attribute (as root), so the label is visible.
    let label = label.map(|v| String::from_utf8_lossy(&v).trim_end_matches('\0').to_string());
    assert_eq!(label.as_deref(), Some(expected.as_str()), "notes: {notes:?}");
    assert!(notes.is_empty(), "{notes:?}");

    // The system labeler on this host (SELinux disabled) sets nothing.
    if !session_lib::selinux::enabled() {
        let plain = RuntimeDirs::new(&config);
        let prepared = plain.ensure(uid, uid).unwrap();
        let created = prepared.created.unwrap();
        let label = session_lib::lgetxattr(&path, "security.selinux").unwrap();
        drop(prepared);
        let _ = plain.remove(uid, &created);
        assert!(!path.exists());
        assert_eq!(label, None, "labelled although SELinux is disabled");
    }
}

/// A named check against the linked policy.
type Check = (&'static str, fn(&Linked));

/// The module built from selinux/ and linked once into a copy of the system
/// policy (≈9 s); every check runs against it, a failing check does not
/// stop the others, and the copy is removed however they end.
#[test]
fn linked_policy() {
    if !require_root("linked_policy", TOOLS) {
        return;
    }
    let build = Build::new("main", str::to_string);
    let out = build.make(&[]);
    assert!(out.status.success(), "make -C selinux failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let linked = Linked::link(&build.pp());
    let checks: &[Check] = &[
        ("hub_and_init_enter_the_keeper_domain_on_its_binary", hub_and_init_enter_the_keeper_domain_on_its_binary),
        (
            "keeper_and_pam_hosts_create_runtime_dirs_with_the_user_runtime_type",
            keeper_and_pam_hosts_create_runtime_dirs_with_the_user_runtime_type,
        ),
        ("keeper_manages_its_state_dir_and_reads_its_config", keeper_manages_its_state_dir_and_reads_its_config),
        (
            "keeper_sets_loginuid_and_starts_the_user_command_in_the_user_domain",
            keeper_sets_loginuid_and_starts_the_user_command_in_the_user_domain,
        ),
        ("module_grants_nothing_broad", module_grants_nothing_broad),
        ("labels_from_the_linked_policy_file_contexts", labels_from_the_linked_policy_file_contexts),
        (
            "runtime_dir_created_by_session_lib_carries_the_policy_label",
            runtime_dir_created_by_session_lib_carries_the_policy_label,
        ),
    ];
    let failed: Vec<&str> = checks
        .iter()
        .filter(|(name, check)| {
            eprintln!("check {name}");
            catch_unwind(AssertUnwindSafe(|| check(&linked))).is_err()
        })
        .map(|(name, _)| *name)
        .collect();
    assert!(failed.is_empty(), "failed checks (messages above): {failed:?}");
}

#[test]
fn fedora_style_branch_builds_and_links() {
    if !require_root("fedora_style_branch_builds_and_links", TOOLS) {
        return;
    }
    // The branch taken where the policy has no user_runtime_t (Fedora/RHEL:
    // /run/user/UID is user_tmp_t), forced here, linked against Debian's
    // types; it must not depend on the refpolicy-only interfaces.
    let build = Build::new("fedora", str::to_string);
    let out = build.make(&["USER_TMP_RUNTIME=1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let linked = Linked::link(&build.pp());
    let t = linked.sesearch(&["-T", "-s", "jupyter_session_t", "-t", "user_runtime_root_t", "-c", "dir"]);
    assert!(t.is_empty(), "refpolicy-only transition in the Fedora branch: {t:?}");
    let t = linked.sesearch(&["-T", "-s", "jupyter_session_t", "-t", "var_run_t", "-c", "dir"]);
    assert!(t.iter().any(|r| r == "type_transition jupyter_session_t var_run_t:dir user_tmp_t user;"), "{t:?}");
    assert_has(
        &linked.perms("jupyter_session_t", "user_tmp_t", "dir"),
        &["create", "setattr", "rmdir", "mounton", "relabelto"],
        "user_tmp_t runtime dirs",
    );
}
