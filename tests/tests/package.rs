//! The packages: packaging/build-deb and packaging/build-rpm from a release
//! build. The .deb is installed with `apt-get install ./jupyter-session_*.deb`
//! into a fresh debootstrap root (minbase + pamtester + libpam-runtime + man-db),
//! shows its man pages with `man`, runs
//! the README's Quick start session command from the package, is added to
//! common-session with `pam-auth-update --enable` and driven by pamtester
//! through it, then purged, leaving no file behind. The .rpm (no RHEL machine
//! here) is checked with `rpm -qlp`/`-qip`/`-qcp` and its PAM file's digest.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use jupyter_session_tests::*;

/// Run a package script; its last stdout line is the package's path.
fn build(script: &str) -> PathBuf {
    release_build();
    let out_dir = std::env::temp_dir().join(unique("jspkg"));
    let out = run_ok(Command::new(repo_root().join("packaging").join(script)).arg(&out_dir));
    let text = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(text.lines().last().expect("the package's path").trim())
}

fn lines(out: &std::process::Output) -> BTreeSet<String> {
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().to_string()).collect()
}

/// A debootstrap root under /var/tmp, removed on drop. Commands run in it
/// through `unshare -m` (a private mount namespace with its own /proc), with
/// a clean environment.
struct Chroot(PathBuf);

impl Chroot {
    fn debootstrap() -> Chroot {
        let root = PathBuf::from("/var/tmp").join(unique("pkg-chroot"));
        let root = Chroot(root);
        let mirror = std::env::var("DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".into());
        run_ok(Command::new("debootstrap").args([
            "--variant=minbase",
            "--include=pamtester,libpam-runtime,man-db",
            "bookworm",
            root.0.to_str().unwrap(),
            &mirror,
        ]));
        root
    }

    fn cmd(&self, script: &str) -> Command {
        let mut c = Command::new("unshare");
        c.env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LANG", "C.UTF-8")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount -t proc proc "$0/proc" && exec chroot "$0" sh -c "$1""#)
            .arg(&self.0)
            .arg(script);
        c
    }

    fn sh(&self, script: &str) -> String {
        String::from_utf8_lossy(&run_ok(&mut self.cmd(script)).stdout).into_owned()
    }

    /// Every path in the root but the package manager's own state, logs,
    /// caches and the runtime dirs sessions make and remove.
    fn files(&self) -> BTreeSet<String> {
        let prune = ["/proc", "/sys", "/dev", "/tmp", "/var/lib/dpkg", "/var/lib/apt", "/var/cache", "/var/log"];
        let expr: Vec<String> = prune.iter().map(|p| format!("-path {p} -prune -o")).collect();
        let out = self.sh(&format!("find / {} -print", expr.join(" ")));
        out.lines().filter(|l| !l.starts_with("/run/user/")).map(str::to_string).collect()
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        // Nothing is mounted in it outside the private namespaces.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn deb_installs_into_a_fresh_root_runs_the_quick_start_and_purges_clean() {
    let test = "deb_installs_into_a_fresh_root_runs_the_quick_start_and_purges_clean";
    if !require_root(test, &["debootstrap", "dpkg-deb", "unshare", "chroot"]) {
        return;
    }
    let deb = build("build-deb");
    let name = deb.file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with("jupyter-session_") && name.ends_with(".deb"), "{name}");

    // What is in it, before installing anything.
    let listing = lines(&run_ok(Command::new("dpkg-deb").arg("-c").arg(&deb)));
    let paths: BTreeSet<String> = listing
        .iter()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.').to_string())
        .collect();
    for want in [
        "/usr/lib/x86_64-linux-gnu/security/pam_jupyter.so",
        "/usr/lib/x86_64-linux-gnu/libsubid_jupyter.so",
        "/usr/bin/jupyter-session",
        "/etc/pam.d/jupyterhub",
        "/etc/pam.d/jupyterhub-unit",
        "/usr/lib/jupyter-session/jupyter-session-podman-service",
        "/usr/lib/systemd/system/jupyter-session-podman@.service",
        "/usr/share/jupyter-session/slurm/prolog.sh",
        "/etc/security/jupyter-session.toml",
        "/usr/share/pam-configs/jupyter-session",
        "/usr/share/man/man8/pam_jupyter.8.gz",
        "/usr/share/man/man5/jupyter-session.toml.5.gz",
        "/usr/share/man/man1/jupyter-session.1.gz",
        "/usr/share/man/man1/jupyter-session-exec.1.gz",
        "/usr/share/bash-completion/completions/jupyter-session",
        "/usr/share/zsh/vendor-completions/_jupyter-session",
        "/usr/share/fish/vendor_completions.d/jupyter-session.fish",
        "/usr/share/jupyter-session/selinux/jupyter_session.te",
        "/usr/share/jupyter-session/python/pyproject.toml",
        "/usr/share/jupyter-session/python/jupyterhub_session/spawner.py",
    ] {
        assert!(paths.contains(want), "{name} lacks {want}:\n{listing:#?}");
    }
    let conffiles =
        String::from_utf8_lossy(&run_ok(Command::new("dpkg-deb").arg("-I").arg(&deb).arg("conffiles")).stdout)
            .into_owned();
    assert_eq!(conffiles, "/etc/pam.d/jupyterhub\n/etc/pam.d/jupyterhub-unit\n/etc/security/jupyter-session.toml\n");

    let root = Chroot::debootstrap();
    root.sh("useradd -m alice");
    let before = root.files();
    std::fs::copy(&deb, root.0.join("tmp").join(&name)).unwrap();
    root.sh(&format!("apt-get install -y -q ./tmp/{name} </dev/null"));
    root.sh("test -x /usr/bin/jupyter-session && test -f /usr/lib/x86_64-linux-gnu/security/pam_jupyter.so");
    // `man pam_jupyter` works from the package.
    let page = root.sh("MANPAGER=cat MANWIDTH=100 man pam_jupyter 2>/dev/null");
    assert!(page.contains("PAM_SESSION_ERR") && page.contains("pam-auth-update"), "{page}");
    let found = root.sh("man -w jupyter-session jupyter-session-exec jupyter-session.toml");
    assert!(found.contains("/usr/share/man/man5/jupyter-session.toml.5.gz"), "{found}");
    // Installed but not enabled: the profile is off by default.
    assert!(!root.sh("cat /etc/pam.d/common-session").contains("pam_jupyter"));
    // The shipped config is all comments: the defaults.
    let shipped = root.sh("cat /etc/security/jupyter-session.toml");
    assert!(shipped.lines().all(|l| l.is_empty() || l.starts_with('#')), "{shipped}");
    // A chroot shares pid 1's mount namespace with nothing it creates: the
    // per-user tmpfs would be refused (docs/pam-module.md), so plain dirs.
    root.sh("echo 'tmpfs = false' >> /etc/security/jupyter-session.toml");

    // The Quick start's session command, verbatim, from the package
    // (/usr/bin/jupyter-session, the package's /etc/pam.d/jupyterhub).
    let session_cmd = &quick_start_commands()[1];
    let uid = root.sh("id -u alice").trim().to_string();
    let out = root.sh(session_cmd);
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got.len(), 3, "{out}");
    assert!(got[0].starts_with(&format!("uid={uid}(alice)")), "{out}");
    assert_eq!(got[1], format!("/run/user/{uid}"), "{out}");
    assert!(got[2].starts_with("drwx------") && got[2].contains(" alice "), "{out}");
    root.sh(&format!("test ! -e /run/user/{uid}"));

    // The Debian way into every login: pam-auth-update, then a session
    // through common-session (the `other` service includes it).
    root.sh("pam-auth-update --enable jupyter-session");
    let common = root.sh("cat /etc/pam.d/common-session");
    assert!(common.lines().any(|l| l.contains("pam_jupyter.so") && !l.starts_with('#')), "{common}");
    let opened = root.sh(&format!("pamtester other alice open_session && stat -c '%U %a' /run/user/{uid}"));
    assert!(opened.ends_with("alice 700\n"), "{opened}");
    // pamtester is gone without closing: gc reaps the session and the dir.
    let gc = root.sh(&format!("jupyter-session gc; test ! -e /run/user/{uid} && echo gone"));
    assert!(gc.contains("gone"), "{gc}");
    // With the profile on, the keeper's stack runs the module twice
    // (jupyterhub and common-session): still one correct session.
    let out = root.sh(session_cmd);
    assert!(out.contains(&format!("/run/user/{uid}")), "{out}");
    let left = root.sh("jupyter-session list");
    assert!(!left.contains("alice"), "the doubled module left a record behind:\n{left}");
    root.sh(&format!("test ! -e /run/user/{uid}"));
    // Helpers and units name the packaged binaries, not install.sh's /usr/local.
    let helpers = root.sh(
        "cat /usr/lib/jupyter-session/jupyter-session-podman-loop /usr/lib/systemd/system/jupyter-session-podman@.service \
         /usr/share/jupyter-session/slurm/prolog.sh",
    );
    assert!(helpers.contains("/usr/bin/jupyter-session") && !helpers.contains("/usr/local/"), "{helpers}");

    // Purge: the profile leaves common-session, every file goes.
    root.sh("apt-get purge -y -q jupyter-session </dev/null");
    assert!(!root.sh("cat /etc/pam.d/common-session").contains("pam_jupyter"));
    let after = root.files();
    let added: Vec<_> = after.difference(&before).collect();
    let removed: Vec<_> = before.difference(&after).collect();
    assert!(added.is_empty() && removed.is_empty(), "left behind: {added:#?}\nremoved: {removed:#?}");
    let _ = std::fs::remove_dir_all(deb.parent().unwrap_or(Path::new("/nonexistent")));
}

#[test]
fn rpm_has_the_rhel_layout_and_conffiles() {
    let test = "rpm_has_the_rhel_layout_and_conffiles";
    if !require(test, which("rpmbuild").is_some(), "rpmbuild (apt-get install rpm)") {
        return;
    }
    let rpm = build("build-rpm");
    let name = rpm.file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with("jupyter-session-") && name.ends_with(".x86_64.rpm"), "{name}");
    let files = lines(&run_ok(Command::new("rpm").arg("-qlp").arg(&rpm)));
    for want in [
        "/usr/lib64/security/pam_jupyter.so",
        "/usr/lib64/libsubid_jupyter.so",
        "/usr/bin/jupyter-session",
        "/usr/lib/jupyter-session/jupyter-session-podman-loop",
        "/etc/pam.d/jupyterhub",
        "/etc/security/jupyter-session.toml",
        "/usr/share/man/man8/pam_jupyter.8.gz",
        "/usr/share/man/man5/jupyter-session.toml.5.gz",
        "/usr/share/man/man1/jupyter-session.1.gz",
        "/usr/share/bash-completion/completions/jupyter-session",
        "/usr/share/zsh/site-functions/_jupyter-session",
        "/usr/share/fish/vendor_completions.d/jupyter-session.fish",
        "/usr/share/jupyter-session/selinux/jupyter_session.te",
        "/usr/share/jupyter-session/python/jupyterhub_session/podman.py",
    ] {
        assert!(files.contains(want), "{name} lacks {want}: {files:#?}");
    }
    assert!(!files.iter().any(|f| f.contains("pam-configs") || f.contains("x86_64-linux-gnu")), "{files:#?}");
    let config = lines(&run_ok(Command::new("rpm").arg("-qcp").arg(&rpm)));
    let want: BTreeSet<String> =
        ["/etc/pam.d/jupyterhub", "/etc/pam.d/jupyterhub-unit", "/etc/security/jupyter-session.toml"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    assert_eq!(config, want);
    let info = String::from_utf8_lossy(&run_ok(Command::new("rpm").arg("-qip").arg(&rpm)).stdout).into_owned();
    let version = env!("CARGO_PKG_VERSION");
    assert!(info.lines().any(|l| l.starts_with("Name") && l.ends_with("jupyter-session")), "{info}");
    assert!(info.lines().any(|l| l.starts_with("Version") && l.ends_with(version)), "{info}");
    assert!(info.lines().any(|l| l.starts_with("Architecture") && l.ends_with("x86_64")), "{info}");
    // The PAM file is the RHEL one (password-auth), byte for byte: its
    // SHA-256 in the package's file digests.
    let digests = String::from_utf8_lossy(
        &run_ok(Command::new("rpm").args(["-qp", "--queryformat", "[%{FILENAMES} %{FILEDIGESTS}\n]"]).arg(&rpm)).stdout,
    )
    .into_owned();
    let out = run_ok(Command::new("sha256sum").arg(repo_root().join("etc/pam.d/jupyterhub.rhel")));
    let rhel = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string();
    assert!(digests.lines().any(|l| l == format!("/etc/pam.d/jupyterhub {rhel}")), "{digests}");
    let _ = std::fs::remove_dir_all(rpm.parent().unwrap_or(Path::new("/nonexistent")));
}
