//! `jupyter-session check` against real broken and healthy sessions: real
//! users (useradd), real runtime dirs, the check run as the user through
//! setpriv with a controlled environment, a healthy session opened by the
//! real pam_jupyter through libpam, and the JSON output validated against
//! docs/check-schema.json.
#![forbid(unsafe_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use jupyter_session_tests::{PamService, SessionHolder, StateDir, TestUser, cli_path, require_root, run, unique};
use serde_json::Value;

const SESSION_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

// ---- a small JSON Schema validator (the keywords docs/check-schema.json uses)

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        other => panic!("schema uses type {other}, which this validator does not know"),
    }
}

/// Every violation of `schema` by `v`, with its JSON path.
fn validate(schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    let s = schema.as_object().expect("schema node is an object");
    for key in s.keys() {
        let known = [
            "$schema",
            "$id",
            "title",
            "description",
            "type",
            "const",
            "enum",
            "required",
            "properties",
            "additionalProperties",
            "items",
            "oneOf",
            "minimum",
        ];
        assert!(known.contains(&key.as_str()), "schema keyword {key} at {at} is not checked by this validator");
    }
    if let Some(t) = s.get("type") {
        let ok = match t {
            Value::String(t) => type_ok(t, v),
            Value::Array(ts) => ts.iter().any(|t| type_ok(t.as_str().unwrap(), v)),
            _ => panic!("bad type at {at}"),
        };
        if !ok {
            errors.push(format!("{at}: {v} is not of type {t}"));
            return;
        }
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        errors.push(format!("{at}: {v} != const {c}"));
    }
    if let Some(Value::Array(options)) = s.get("enum")
        && !options.contains(v)
    {
        errors.push(format!("{at}: {v} not in {}", Value::Array(options.clone())));
    }
    if let Some(min) = s.get("minimum").and_then(Value::as_f64)
        && v.as_f64().is_some_and(|n| n < min)
    {
        errors.push(format!("{at}: {v} < {min}"));
    }
    if let Some(Value::Array(options)) = s.get("oneOf") {
        let passing = options
            .iter()
            .filter(|o| {
                let mut e = Vec::new();
                validate(o, v, at, &mut e);
                e.is_empty()
            })
            .count();
        if passing != 1 {
            errors.push(format!("{at}: {v} matches {passing} of oneOf"));
        }
    }
    if let Value::Object(obj) = v {
        for r in s.get("required").and_then(Value::as_array).into_iter().flatten() {
            if !obj.contains_key(r.as_str().unwrap()) {
                errors.push(format!("{at}: missing required {r}"));
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (k, child) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(ps) => validate(ps, child, &format!("{at}.{k}"), errors),
                None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    errors.push(format!("{at}: unexpected property {k}"))
                }
                None => {}
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (v, s.get("items")) {
        for (i, item) in items.iter().enumerate() {
            validate(item_schema, item, &format!("{at}[{i}]"), errors);
        }
    }
}

fn schema() -> Value {
    let text = fs::read_to_string(repo_file("docs/check-schema.json")).expect("docs/check-schema.json");
    serde_json::from_str(&text).expect("the schema is JSON")
}

fn assert_valid(doc: &Value) {
    let mut errors = Vec::new();
    validate(&schema(), doc, "$", &mut errors);
    assert!(errors.is_empty(), "output does not match docs/check-schema.json:\n{}\n{doc:#}", errors.join("\n"));
}

#[test]
fn the_validator_rejects_what_the_schema_forbids() {
    let good = serde_json::json!({
        "schema_version": 1, "tool_version": "0", "mode": "session",
        "user": {"name": null, "uid": 1, "gid": 1}, "explain": null, "findings": [],
        "summary": {"pass": 0, "fail": 0, "warn": 0, "info": 0, "skipped": 0}, "exit_code": 0
    });
    assert_valid(&good);
    for (path, bad) in [
        ("/schema_version", serde_json::json!(2)),
        ("/mode", serde_json::json!("root")),
        ("/exit_code", serde_json::json!(3)),
        ("/user/uid", serde_json::json!(-1)),
        ("/findings", serde_json::json!([{"id": "no.such.check"}])),
    ] {
        let mut doc = good.clone();
        *doc.pointer_mut(path).unwrap() = bad;
        let mut errors = Vec::new();
        validate(&schema(), &doc, "$", &mut errors);
        assert!(!errors.is_empty(), "accepted a bad {path}");
    }
}

// ---- running the check

/// Output of one `check --json` run.
struct Report {
    code: i32,
    doc: Value,
}

impl Report {
    fn finding(&self, id: &str) -> &Value {
        self.doc["findings"].as_array().unwrap().iter().find(|f| f["id"] == id).unwrap_or_else(|| {
            panic!("no finding {id} in {:#}", self.doc);
        })
    }

    fn status(&self, id: &str) -> &str {
        self.finding(id)["status"].as_str().unwrap()
    }

    /// Assert `id` has `status`, its observation mentions `observed`, and
    /// (for a problem) its fix is for `who` and mentions `fix`.
    fn expect(&self, id: &str, status: &str, observed: &str, who: &str, fix: &str) {
        let f = self.finding(id);
        assert_eq!(f["status"], status, "{id}: {f:#}");
        assert!(f["observed"].as_str().unwrap().contains(observed), "{id} observed: {f:#}");
        if !who.is_empty() {
            assert_eq!(f["fix"]["who"], who, "{id}: {f:#}");
            assert!(f["fix"]["text"].as_str().unwrap().contains(fix), "{id} fix: {f:#}");
        }
    }
}

fn base_env(user: &TestUser) -> Vec<(String, String)> {
    vec![
        ("XDG_RUNTIME_DIR".into(), user.runtime_dir().display().to_string()),
        ("PATH".into(), SESSION_PATH.into()),
        ("USER".into(), user.name.clone()),
        ("LOGNAME".into(), user.name.clone()),
        ("HOME".into(), user.home.display().to_string()),
    ]
}

fn with(env: &[(String, String)], changes: &[(&str, Option<&str>)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = env.to_vec();
    for (k, v) in changes {
        env.retain(|(n, _)| n != k);
        if let Some(v) = v {
            env.push((k.to_string(), v.to_string()));
        }
    }
    env
}

/// `setpriv [creds] env -i ENV jupyter-session check --json ARGS`: the
/// check as the user, with exactly this environment. `creds` replaces the
/// default `--reuid --regid --init-groups` when given.
fn check_as(user: &TestUser, creds: Option<&[String]>, env: &[(String, String)], args: &[&str]) -> Report {
    let default_creds = vec![format!("--reuid={}", user.uid), format!("--regid={}", user.gid), "--init-groups".into()];
    let mut cmd = Command::new("setpriv");
    cmd.args(creds.unwrap_or(&default_creds)).arg("env").arg("-i");
    for (k, v) in env {
        cmd.arg(format!("{k}={v}"));
    }
    cmd.arg(cli_path()).args(["check", "--json"]).args(args).current_dir("/");
    parse(run(&mut cmd))
}

fn parse(out: std::process::Output) -> Report {
    let text = String::from_utf8_lossy(&out.stdout);
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("check --json printed no JSON ({e}):\n{text}\nstderr: {}", String::from_utf8_lossy(&out.stderr))
    });
    assert_valid(&doc);
    let code = out.status.code().expect("check exited");
    assert_eq!(doc["exit_code"], code, "exit code and JSON agree");
    Report { code, doc }
}

fn make_runtime_dir(user: &TestUser, owner: u32, mode: u32) {
    let dir = user.runtime_dir();
    let _ = fs::create_dir(&dir);
    std::os::unix::fs::chown(&dir, Some(owner), Some(user.gid)).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).unwrap();
}

/// A private directory (removed on drop) the test user can read.
struct TmpDir(PathBuf);

impl TmpDir {
    fn new() -> TmpDir {
        let p = std::env::temp_dir().join(unique("jscheck-"));
        fs::create_dir(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        TmpDir(p)
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn broken_sessions_are_named_with_the_right_fix() {
    if !require_root("broken_sessions_are_named_with_the_right_fix", &["setpriv", "useradd", "podman", "newuidmap"]) {
        return;
    }
    let user = TestUser::create("jsck");
    user.podman_without_network();
    let other = TestUser::create("jsco");
    let env = base_env(&user);

    // No runtime dir yet, XDG_RUNTIME_DIR unset: podman falls back to /tmp
    // (a warning); the admin should give the service a session; everything
    // that needs the dir is skipped.
    let unset = with(&env, &[("XDG_RUNTIME_DIR", None)]);
    let r = check_as(&user, None, &unset, &[]);
    assert_ne!(r.code, 0);
    // The same as text: one line per check, the fix under the failure.
    let mut cmd = Command::new("setpriv");
    cmd.args([format!("--reuid={}", user.uid), format!("--regid={}", user.gid), "--init-groups".into()]);
    cmd.args(["env", "-i"]).args(unset.iter().map(|(k, v)| format!("{k}={v}")));
    let out = run(cmd.arg(cli_path()).arg("check").current_dir("/"));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let at = lines.iter().position(|l| l.starts_with("warn  env.runtime_dir.set ")).expect(&text);
    assert!(lines[at].contains("XDG_RUNTIME_DIR unset and /run/user/"), "{text}");
    assert!(lines[at].contains("podman falls back to /tmp/podman-run-"), "{text}");
    assert!(lines[at + 1].trim_start().starts_with("fix (admin): give the service a session"), "{text}");
    assert!(lines.iter().any(|l| l.starts_with("skip  env.runtime_dir.owner") && l.contains("podman uses /tmp")));
    assert!(lines.last().unwrap().contains("warnings"), "summary line: {text}");
    r.expect("env.runtime_dir.set", "warn", "XDG_RUNTIME_DIR unset", "admin", "session required pam_jupyter.so");
    assert!(r.finding("env.runtime_dir.owner")["skipped_reason"].as_str().unwrap().contains("/tmp/podman-run-"));
    assert_eq!(r.status("storage.bootid"), "skipped");
    r.expect("id.user", "pass", &user.name, "", "");

    // Set, but the dir does not exist (crun's "create directory" failure).
    let r = check_as(&user, None, &env, &[]);
    r.expect("env.runtime_dir.owner", "fail", "does not exist", "admin", "real session");

    // Pointing at another user's dir (a leak through su/sudo).
    make_runtime_dir(&other, other.uid, 0o700);
    let leaked = other.runtime_dir().display().to_string();
    let r = check_as(&user, None, &with(&env, &[("XDG_RUNTIME_DIR", Some(&leaked))]), &[]);
    r.expect("env.runtime_dir.owner", "fail", &format!("owned by uid {}", other.uid), "admin", "another user");

    // Owned by root: only root can repair it.
    make_runtime_dir(&user, 0, 0o700);
    let r = check_as(&user, None, &env, &[]);
    r.expect("env.runtime_dir.owner", "fail", "owned by uid 0", "admin", &format!("chown {}:", user.name));

    // The user's, but mode 0755 (podman works).
    make_runtime_dir(&user, user.uid, 0o755);
    let r = check_as(&user, None, &env, &[]);
    r.expect("env.runtime_dir.owner", "warn", "mode 0755", "user", "chmod 0700");

    // A symlink to the (now correct) dir (podman follows it).
    make_runtime_dir(&user, user.uid, 0o700);
    let links = TmpDir::new();
    let link = links.0.join("rt");
    std::os::unix::fs::symlink(user.runtime_dir(), &link).unwrap();
    let r = check_as(&user, None, &with(&env, &[("XDG_RUNTIME_DIR", Some(link.to_str().unwrap()))]), &[]);
    r.expect("env.runtime_dir.owner", "warn", "symbolic link", "user", "export XDG_RUNTIME_DIR=/run/user/");

    // $USER and $LOGNAME of someone else.
    let r = check_as(&user, None, &with(&env, &[("USER", Some("root")), ("LOGNAME", None)]), &[]);
    r.expect("id.user", "fail", "USER=root", "user", &format!("export USER={}", user.name));
    assert!(r.finding("subid.ranges")["status"] == "skipped", "subid lookups by name depend on id.user");

    // A gid that is not the primary one (as after `sg`).
    let creds = vec![format!("--reuid={}", user.uid), "--regid=100".to_string(), "--clear-groups".to_string()];
    let r = check_as(&user, Some(&creds), &env, &[]);
    r.expect("id.gid", "fail", "gid 100", "admin", "Target process is owned by a different user");

    // no_new_privs: setuid newuidmap cannot work.
    let creds = vec![
        format!("--reuid={}", user.uid),
        format!("--regid={}", user.gid),
        "--init-groups".to_string(),
        "--no-new-privs".to_string(),
    ];
    let r = check_as(&user, Some(&creds), &env, &[]);
    r.expect("proc.nnp", "fail", "NoNewPrivs: 1", "admin", "NoNewPrivileges");
    r.expect("uidmap.privs", "pass", "setuid root", "", "");

    // PATH without newuidmap (installed, only not on PATH: the user's fix).
    let r = check_as(&user, None, &with(&env, &[("PATH", Some("/usr/local/bin:/usr/sbin"))]), &[]);
    r.expect("path.tools", "fail", "newuidmap", "user", "export PATH=/usr/bin");
    assert_eq!(r.status("uidmap.privs"), "skipped");

    // Copies of newuidmap/newgidmap without setuid earlier in PATH.
    let bin = TmpDir::new();
    for tool in ["newuidmap", "newgidmap"] {
        let copy = bin.0.join(tool);
        fs::copy(jupyter_session_tests::which(tool).unwrap(), &copy).unwrap();
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:{SESSION_PATH}", bin.0.display());
    let r = check_as(&user, None, &with(&env, &[("PATH", Some(&path))]), &[]);
    r.expect("uidmap.privs", "fail", "neither setuid root", "user", "shadow the working /usr/bin ones");

    // HOME owned by someone else.
    std::os::unix::fs::chown(&user.home, Some(0), None).unwrap();
    let r = check_as(&user, None, &env, &[]);
    std::os::unix::fs::chown(&user.home, Some(user.uid), None).unwrap();
    r.expect("env.home", "fail", "owned by uid 0", "admin", &format!("chown {}:", user.name));
    assert_eq!(r.status("storage.fs"), "skipped");

    // The user's subuid lines removed from a copy of /etc/subuid.
    let files = TmpDir::new();
    let copy = files.0.join("subuid");
    let kept: String = fs::read_to_string("/etc/subuid")
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with(&format!("{}:", user.name)))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&copy, kept).unwrap();
    let r = check_as(&user, None, &env, &["--subuid-file", copy.to_str().unwrap()]);
    r.expect("subid.ranges", "fail", "subuid none", "admin", "--add-subgids");
    assert!(r.finding("subid.ranges")["fix"]["text"].as_str().unwrap().contains("podman system migrate"));

    // And all of this fixed: nothing fails.
    let r = check_as(&user, None, &env, &[]);
    let failed: Vec<&Value> = r.doc["findings"].as_array().unwrap().iter().filter(|f| f["status"] == "fail").collect();
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn a_user_without_subordinate_ids_is_told_how_to_add_them() {
    if !require_root("a_user_without_subordinate_ids_is_told_how_to_add_them", &["setpriv", "useradd"]) {
        return;
    }
    // Debian 12's useradd skips /etc/subuid and /etc/subgid with a count of 0.
    let user = TestUser::create_with("jscn", &["-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0"]);
    make_runtime_dir(&user, user.uid, 0o700);
    let r = check_as(&user, None, &base_env(&user), &[]);
    assert_eq!(r.code, 1);
    r.expect("subid.ranges", "fail", "subuid none (0), subgid none (0)", "admin", "usermod --add-subuids");
    assert_eq!(r.finding("subid.live")["skipped_reason"], "subid.ranges failed");
    // As root, the same verdict for the session a keeper would give.
    let out = run(Command::new(cli_path()).args(["check", "--json", "--user", &user.name]));
    let r = parse(out);
    assert_eq!(r.doc["mode"], "user");
    r.expect("subid.ranges", "fail", "subuid none", "admin", "--add-subgids");
    assert_eq!(r.finding("subid.overlap")["skipped_reason"], "subid.ranges failed");
}

#[test]
fn a_real_pam_jupyter_session_passes_every_fail_check() {
    if !require_root(
        "a_real_pam_jupyter_session_passes_every_fail_check",
        &["setpriv", "useradd", "podman", "newuidmap", "conmon"],
    ) {
        return;
    }
    let user = TestUser::create("jsch");
    user.podman_without_network();
    let state = StateDir::new();
    let svc = PamService::with_module("jsck", &state, "");
    let session = SessionHolder::open(&svc.name, &user.name);
    let pam_env = session.env.clone();
    let var = |k: &str| pam_env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(var("XDG_RUNTIME_DIR"), Some(user.runtime_dir().display().to_string()));

    // The user's session: the PAM environment plus what a spawner sets.
    let mut env = pam_env.clone();
    env.extend([
        ("USER".to_string(), user.name.clone()),
        ("LOGNAME".to_string(), user.name.clone()),
        ("HOME".to_string(), user.home.display().to_string()),
    ]);
    let r = check_as(&user, None, &env, &["--deep"]);
    let failed: Vec<&Value> = r.doc["findings"].as_array().unwrap().iter().filter(|f| f["status"] == "fail").collect();
    assert!(failed.is_empty(), "a healthy session has failures: {failed:#?}");
    assert_ne!(r.code, 1);
    for id in ["id.user", "id.gid", "env.home", "env.runtime_dir.set", "env.runtime_dir.owner", "path.tools"] {
        assert_eq!(r.status(id), "pass", "{id}");
    }
    for id in ["uidmap.privs", "proc.nnp", "kernel.userns", "subid.ranges", "storage.fs", "podman.info"] {
        assert!(matches!(r.status(id), "pass" | "warn"), "{id}: {:#}", r.finding(id));
    }
    assert_eq!(
        r.finding("session.registered")["skipped_reason"].as_str().map(|s| s.starts_with("needs root")),
        Some(true)
    );

    // podman left its pause process and state: they match this boot and
    // the configured ranges...
    let r = check_as(&user, None, &env, &[]);
    r.expect("subid.live", "pass", "pause process", "", "");
    r.expect("storage.bootid", "pass", "from this boot", "", "");
    // ...until the ranges change (a copy with another range for the user)...
    let files = TmpDir::new();
    let moved = files.0.join("subuid");
    fs::write(&moved, format!("{}:4000000000:65536\n", user.name)).unwrap();
    let r = check_as(&user, None, &env, &["--subuid-file", moved.to_str().unwrap()]);
    r.expect("subid.live", "warn", "configured subuids 4000000000:65536", "user", "podman system migrate");
    // ...or the state predates the boot (podman 4 keeps an empty `alive` file).
    let alive = user.runtime_dir().join("libpod/tmp/alive");
    assert!(alive.exists(), "podman info made {}", alive.display());
    jupyter_session_tests::run_ok(Command::new("touch").args(["-h", "-d", "2000-01-01"]).arg(&alive));
    let r = check_as(&user, None, &env, &[]);
    r.expect("storage.bootid", "warn", "older than the boot", "user", "libpod");
    assert!(r.doc["findings"].as_array().unwrap().iter().all(|f| f["status"] != "fail"));

    // As root: the registry shows the live session, the ranges overlap nobody.
    let config = state.0.with_extension("toml");
    fs::write(&config, format!("state_dir = \"{}\"\n", state.0.display())).unwrap();
    let out = run(Command::new(cli_path()).args(["check", "--json", "--user", &user.name, "--config"]).arg(&config));
    let _ = fs::remove_file(&config);
    let r = parse(out);
    r.expect("session.registered", "pass", &svc.name, "", "");
    r.expect("subid.overlap", "pass", "no overlaps", "", "");
    r.expect("env.runtime_dir.owner", "pass", "mode 0700", "", "");
    assert_eq!(r.status("podman.info"), "skipped", "deep probes only when asked");
    assert_eq!(session.close(), "CLOSED 0");
}

#[test]
fn explain_maps_each_catalogue_message_to_its_checks() {
    // The podman error strings of the catalogue (checks.md), as users paste them.
    let cases: &[(&str, &[&str])] = &[
        (
            "Cannot connect to Podman. dial unix /run/user/999/podman/podman.sock: connect: connection refused",
            &["session.managed"],
        ),
        (
            "requests.exceptions.ConnectionError: ('Connection aborted.', ConnectionRefusedError(111, 'Connection refused'))",
            &["session.managed"],
        ),
        (
            "Error: XDG_RUNTIME_DIR directory \"/run/user/0\" is not owned by the current user",
            &["env.runtime_dir.owner"],
        ),
        (
            "Error: mkdir /run/user/1000: permission denied",
            &["env.runtime_dir.set", "env.runtime_dir.owner", "env.runtime_dir.podman"],
        ),
        (
            "Error: creating tmpdir: mkdir /run/user/1000: permission denied",
            &["env.runtime_dir.set", "env.runtime_dir.owner", "env.runtime_dir.podman"],
        ),
        (
            "crun: create directory `/run/user/1000/crun`: No such file or directory",
            &["env.runtime_dir.set", "env.runtime_dir.owner"],
        ),
        (
            "Error: cannot find UID/GID for user bob: no subuid ranges found for user \"bob\"",
            &["subid.ranges", "id.user"],
        ),
        ("potentially insufficient UIDs or GIDs available in user namespace", &["subid.ranges", "subid.live"]),
        ("there might not be enough IDs available in the namespace", &["subid.ranges", "subid.live"]),
        ("exec: \"newuidmap\": executable file not found in $PATH", &["path.tools"]),
        ("newuidmap: write to uid_map failed: Operation not permitted", &["uidmap.privs", "proc.nnp", "proc.capbnd"]),
        ("newuidmap: Target process 4242 is owned by a different user: uid:1000 pid:4242", &["id.gid"]),
        ("cannot clone: Operation not permitted", &["kernel.userns"]),
        ("Error: user namespaces are not enabled in /proc/sys/user/max_user_namespaces", &["kernel.userns"]),
        ("The cgroupv2 manager is set to systemd but there is no systemd user session available", &["session.bus"]),
        ("WARN[0000] \"/\" is not a shared mount, this could cause issues", &["mount.shared"]),
        ("a network file system with user namespaces is not supported", &["storage.fs"]),
        (
            "Error: current system boot ID differs from cached boot ID; an unhandled reboot has occurred",
            &["storage.bootid", "env.runtime_dir.fs"],
        ),
        ("Error: OCI runtime error: crun: cgroups in hybrid mode not supported", &["cgroup.v2"]),
        ("Error: slirp4netns failed: \"open(\\\"/dev/net/tun\\\"): Permission denied\"", &["net.helper"]),
    ];
    for (text, want) in cases {
        let out = run(Command::new(cli_path()).args(["check", "--json", "--explain", text]));
        let r = parse(out);
        let mut got: Vec<&str> = r.doc["explain"]["matched"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|m| m["checks"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()))
            .collect();
        got.dedup();
        let mut got_sorted = got.clone();
        got_sorted.sort();
        got_sorted.dedup();
        let mut want_sorted = want.to_vec();
        want_sorted.sort();
        assert_eq!(got_sorted, want_sorted, "{text}");
        // The named checks ran (or were skipped with a reason): each is reported.
        for id in *want {
            let f = r.finding(id);
            assert!(f["status"] != "skipped" || f["skipped_reason"].is_string(), "{f:#}");
        }
        // Only those checks and what they require ran.
        assert!(r.doc["findings"].as_array().unwrap().len() < 10, "{text}: ran too much");
    }
    // Text output names the match.
    let out =
        run(Command::new(cli_path()).args(["check", "--explain", "Error: mkdir /run/user/1000: permission denied"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "explain: \"mkdir /run/user/N: permission denied\" → env.runtime_dir.set, env.runtime_dir.owner, env.runtime_dir.podman"
        ),
        "{text}"
    );
    assert!(!text.contains("\x1b["), "no colour when stdout is not a terminal");
}

#[test]
fn the_keeper_session_passes_and_check_user_predicts_it() {
    if !require_root(
        "the_keeper_session_passes_and_check_user_predicts_it",
        &["useradd", "podman", "newuidmap", "conmon"],
    ) {
        return;
    }
    let user = TestUser::create("jsce");
    user.podman_without_network();
    let state = StateDir::new();
    let svc = PamService::with_module("jsce", &state, "");
    // What a spawner runs: the keeper, with an empty environment, running
    // the check as the user inside the session it keeps.
    let out = run(Command::new(cli_path())
        .env_clear()
        .args(["exec", "--service", &svc.name, "--user", &user.name, "--"])
        .arg(cli_path())
        .args(["check", "--json"]));
    let inside = parse(out);
    assert_eq!(inside.doc["mode"], "session");
    let failed: Vec<&Value> =
        inside.doc["findings"].as_array().unwrap().iter().filter(|f| f["status"] == "fail").collect();
    assert!(failed.is_empty(), "the keeper's session has failures: {failed:#?}");
    for id in ["id.user", "id.gid", "env.home", "env.runtime_dir.set", "env.runtime_dir.owner", "subid.ranges"] {
        assert_eq!(inside.status(id), "pass", "{id}: {:#}", inside.finding(id));
    }
    // As root, `--user` predicts the same verdicts for the session's facts.
    let config = state.0.with_extension("toml");
    fs::write(&config, format!("state_dir = \"{}\"\n", state.0.display())).unwrap();
    let out = run(Command::new(cli_path()).args(["check", "--json", "--user", &user.name, "--config"]).arg(&config));
    let _ = fs::remove_file(&config);
    let predicted = parse(out);
    for id in ["id.user", "id.gid", "env.home", "env.runtime_dir.set", "path.tools", "subid.ranges", "kernel.userns"] {
        assert_eq!(
            predicted.status(id),
            inside.status(id),
            "{id}: predicted {:#} inside {:#}",
            predicted.finding(id),
            inside.finding(id)
        );
    }
}
