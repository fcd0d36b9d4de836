//! install.sh: what the README's Quick start runs. Installs the built
//! binaries (`--from target/<profile>`, so the test does not rebuild), first
//! under a DESTDIR, then for real, where a stack naming `pam_jupyter.so`
//! without a path must work and the Quick start command must run.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use jupyter_session_tests::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn install(destdir: Option<&Path>) -> String {
    let mut cmd = Command::new(repo().join("install.sh"));
    cmd.arg("--from").arg(target_dir());
    if let Some(d) = destdir {
        cmd.env("DESTDIR", d);
    }
    let out = run_ok(&mut cmd);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The PAM module directory of this system, as install.sh finds it.
fn module_dir() -> PathBuf {
    let out = run_ok(Command::new("sh").args([
        "-c",
        "find /lib /usr/lib /lib64 /usr/lib64 -name pam_unix.so -path '*security*' 2>/dev/null | head -n 1",
    ]));
    Path::new(String::from_utf8_lossy(&out.stdout).trim()).parent().unwrap().to_path_buf()
}

#[test]
fn destdir_install_lays_out_files_and_never_overwrites_a_changed_pam_file() {
    // Module and CLI must have been built: module_path()/cli_path() say so.
    let (module, cli) = (module_path(), cli_path());
    let dest = std::env::temp_dir().join(unique("jsinst"));
    let log = install(Some(&dest));
    let moddir = module_dir();
    let installed_module = dest.join(moddir.strip_prefix("/").unwrap()).join("pam_jupyter.so");
    let installed_cli = dest.join("usr/local/bin/jupyter-session");
    let service = dest.join("etc/pam.d/jupyterhub");
    assert_eq!(std::fs::read(&installed_module).unwrap(), std::fs::read(&module).unwrap(), "{log}");
    assert_eq!(std::fs::read(&installed_cli).unwrap(), std::fs::read(&cli).unwrap());
    assert_eq!(owner_mode(&installed_module).unwrap().2, 0o644);
    assert_eq!(owner_mode(&installed_cli).unwrap().2, 0o755);
    // The subid NSS provider beside the PAM directory; nsswitch.conf never written.
    let installed_provider = dest.join(moddir.parent().unwrap().strip_prefix("/").unwrap()).join("libsubid_jupyter.so");
    assert_eq!(std::fs::read(&installed_provider).unwrap(), std::fs::read(subid_provider_path()).unwrap(), "{log}");
    assert_eq!(owner_mode(&installed_provider).unwrap().2, 0o644);
    assert!(!dest.join("etc/nsswitch.conf").exists(), "install.sh wrote nsswitch.conf");
    let shipped = std::fs::read_to_string(repo().join("etc/pam.d/jupyterhub.debian")).unwrap();
    assert_eq!(std::fs::read_to_string(&service).unwrap(), shipped);
    assert!(
        shipped.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["session", "required", "pam_jupyter.so"])
    );

    // Again: unchanged. After an admin's edit: kept, the new one beside it.
    assert!(install(Some(&dest)).contains("unchanged"));
    std::fs::write(&service, "# the admin's own stack\n").unwrap();
    let log = install(Some(&dest));
    assert!(log.contains("kept your"), "{log}");
    assert_eq!(std::fs::read_to_string(&service).unwrap(), "# the admin's own stack\n");
    assert_eq!(std::fs::read_to_string(dest.join("etc/pam.d/jupyterhub.jupyter-session-new")).unwrap(), shipped);
    std::fs::remove_dir_all(&dest).unwrap();
}

#[test]
fn install_refuses_bad_input() {
    let out = run(Command::new(repo().join("install.sh")).arg("--frobnicate"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown option '--frobnicate'"));
    let empty = std::env::temp_dir().join(unique("jsempty"));
    std::fs::create_dir_all(&empty).unwrap();
    let out = run(Command::new(repo().join("install.sh")).arg("--from").arg(&empty).env("DESTDIR", &empty));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no libpam_jupyter.so"));
    std::fs::remove_dir_all(&empty).unwrap();
}

/// Put a file back as it was (or remove it) when dropped.
struct Restore(PathBuf, Option<Vec<u8>>);

impl Restore {
    fn save(path: PathBuf) -> Restore {
        let old = std::fs::read(&path).ok();
        Restore(path, old)
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        match &self.1 {
            Some(bytes) => std::fs::write(&self.0, bytes).unwrap(),
            None => {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }
}

#[test]
fn real_install_then_the_quick_start_command() {
    if !require_root("real_install_then_the_quick_start_command", &["pamtester"]) {
        return;
    }
    let mut installed: Vec<PathBuf> = [
        "/usr/local/bin/jupyter-session",
        "/etc/pam.d/jupyterhub",
        "/etc/pam.d/jupyterhub.jupyter-session-new",
        "/etc/pam.d/jupyterhub-unit",
        "/etc/pam.d/jupyterhub-unit.jupyter-session-new",
        "/usr/local/share/man/man5/jupyter-session.toml.5",
        "/usr/local/share/man/man8/pam_jupyter.8",
        "/usr/local/share/bash-completion/completions/jupyter-session",
        "/usr/local/share/zsh/site-functions/_jupyter-session",
        "/usr/local/share/fish/vendor_completions.d/jupyter-session.fish",
        "/usr/local/lib/jupyter-session/jupyter-session-podman-service",
        "/usr/local/lib/jupyter-session/jupyter-session-podman-loop",
        "/usr/local/lib/systemd/system/jupyter-session-podman@.service",
        "/usr/local/share/jupyter-session/slurm/prolog.sh",
        "/usr/local/share/jupyter-session/slurm/epilog.sh",
        "/usr/local/share/jupyter-session/slurm/taskprolog.sh",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    installed.push(module_dir().join("pam_jupyter.so"));
    installed.push(module_dir().parent().unwrap().join("libsubid_jupyter.so"));
    for page in ["", "-exec", "-check", "-open", "-close", "-list", "-gc", "-ensure", "-env"] {
        installed.push(PathBuf::from(format!("/usr/local/share/man/man1/jupyter-session{page}.1")));
    }
    let _restore: Vec<Restore> = installed.iter().cloned().map(Restore::save).collect();

    // The Quick start's install command, verbatim, from the source tree (its
    // release build is the one release_build() made, so cargo has nothing
    // left to do).
    let [install_cmd, session_cmd] = <[String; 2]>::try_from(quick_start_commands()).unwrap();
    release_build();
    let out = run_ok(Command::new("sh").current_dir(repo()).args(["-c", &install_cmd]));
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(log.contains("installed man pages"), "{log}");
    for path in &installed[..2] {
        assert!(path.exists(), "{} not installed by `{install_cmd}`:\n{log}", path.display());
    }
    // `man pam_jupyter` and `man jupyter-session.toml` find the installed pages.
    if which("man").is_some() {
        let out =
            run_ok(Command::new("man").args(["-w", "pam_jupyter", "jupyter-session.toml", "jupyter-session-exec"]));
        let found = String::from_utf8_lossy(&out.stdout);
        // man may name it through Debian's /usr/local/man -> share/man link.
        let page = std::fs::canonicalize("/usr/local/share/man/man8/pam_jupyter.8").unwrap();
        assert!(found.lines().any(|l| std::fs::canonicalize(l).is_ok_and(|p| p == page)), "{found}");
    }
    let user = TestUser::create("jsq");
    let state = StateDir::new();

    // A stack that names the module the way the README does, by name only.
    let svc = PamService::create("jsq", &[&format!("session required pam_jupyter.so {}", state.arg())]);
    let out = run(Command::new("pamtester").args([&svc.name, &user.name, "open_session", "close_session"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The Quick start's session command, verbatim but for the test user in
    // place of alice, with the installed CLI found on a root shell's PATH
    // and the installed /etc/pam.d/jupyterhub (or the admin's own, left in
    // place); without cargo's LD_LIBRARY_PATH, which a root keeper refuses.
    assert_eq!(session_cmd.matches("alice").count(), 1, "{session_cmd}");
    let cmd = session_cmd.replace("alice", &user.name);
    let out = run_ok(
        Command::new("sh")
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .args(["-c", &cmd]),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with(&format!("uid={}({})", user.uid, user.name)), "{text}");
    assert_eq!(lines[1], format!("/run/user/{}", user.uid));
    assert!(lines[2].starts_with("drwx------") && lines[2].contains(&format!(" {} ", user.name)), "{text}");
    assert!(!user.runtime_dir().exists(), "removed when the command ended");
}
