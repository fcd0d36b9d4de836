//! cgroup.*, storage.*, net.helper, mount.shared: the host podman runs on.
#![forbid(unsafe_code)]

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, statfs};
use nix::sys::statvfs::{FsFlags, statvfs};

use super::{Context, Mode, Status, Verdict, Who, existing_ancestor, read_text};

pub(super) fn cgroup_v2(ctx: &Context) -> Verdict {
    let root = &ctx.paths.cgroup_root;
    let evidence = format!("statfs({})", root.display());
    let expected = format!("{} is a cgroup2 filesystem (unified hierarchy)", root.display());
    match statfs(root) {
        Ok(s) if s.filesystem_type() == CGROUP2_SUPER_MAGIC => Verdict::pass("cgroup2", expected, evidence),
        Ok(_) => {
            let hybrid = root.join("unified").exists();
            let observed = if hybrid { "hybrid (cgroup v1 with a unified/ subtree)" } else { "cgroup v1" };
            Verdict::new(Status::Warn, observed, expected, evidence).fix(
                Who::Admin,
                "boot with `systemd.unified_cgroup_hierarchy=1` for cgroup v2; until then rootless podman cannot set resource limits, and crun refuses hybrid layouts (\"cgroups in hybrid mode not supported\"): users can set `runtime = \"runc\"` under [engine] in ~/.config/containers/containers.conf",
            )
        }
        Err(e) => Verdict::new(Status::Warn, format!("statfs failed: {}", e.desc()), expected, evidence)
            .fix(Who::Admin, "mount the cgroup2 filesystem on /sys/fs/cgroup"),
    }
}

pub(super) fn cgroup_controllers(ctx: &Context) -> Verdict {
    let self_cgroup = ctx.paths.proc_self.join("cgroup");
    let evidence = format!("{}, cgroup.controllers and owner of the cgroup dir", self_cgroup.display());
    let expected = "the session's cgroup is delegated to the user (owned) with memory and pids controllers";
    if statfs(&ctx.paths.cgroup_root).map(|s| s.filesystem_type()) != Ok(CGROUP2_SUPER_MAGIC) {
        return Verdict::skipped("no cgroup v2 hierarchy at the root (see cgroup.v2)", evidence);
    }
    let Some(rel) =
        read_text(&self_cgroup).and_then(|t| t.lines().find_map(|l| l.strip_prefix("0::").map(str::to_string)))
    else {
        return Verdict::skipped(format!("no cgroup2 entry in {}", self_cgroup.display()), evidence);
    };
    let dir = ctx.paths.cgroup_root.join(rel.trim_start_matches('/'));
    let controllers = read_text(&dir.join("cgroup.controllers")).unwrap_or_default();
    let have: Vec<&str> = controllers.split_whitespace().collect();
    let missing: Vec<&str> = ["memory", "pids"].into_iter().filter(|c| !have.contains(c)).collect();
    let owner = fs::metadata(&dir).map(|m| m.uid()).ok();
    let note = if ctx.mode == Mode::ForUser { " (of this root process)" } else { "" };
    let observed = format!(
        "{}{note}: controllers [{}], owner uid {}",
        dir.display(),
        have.join(" "),
        owner.map(|u| u.to_string()).unwrap_or_else(|| "?".into())
    );
    if missing.is_empty() && owner == Some(ctx.uid) {
        return Verdict::pass(observed, expected, evidence);
    }
    Verdict::new(Status::Warn, observed, expected, evidence).fix(
        Who::Admin,
        "resource limits (--memory, --pids-limit) need a delegated cgroup: with systemd, `Delegate=memory pids cpu cpuset` in user@.service (a drop-in under /etc/systemd/system/user@.service.d/); without it podman runs containers without limits",
    )
}

/// Podman's storage location for this user (storage.conf, in podman's order).
pub(super) fn graphroot(ctx: &Context) -> (PathBuf, String) {
    let s = super::podman_conf::storage(ctx);
    (s.graphroot, s.graphroot_source)
}

/// graphroot (and a configured runroot) can be written by the user: the
/// directory, or where it does not exist yet its closest existing parent.
pub(super) fn storage_writable(ctx: &Context) -> Verdict {
    let storage = super::podman_conf::storage(ctx);
    let mut paths = vec![(storage.graphroot.clone(), storage.graphroot_source.clone())];
    if let Some(r) = &storage.runroot {
        paths.push(r.clone());
    }
    let evidence =
        "lstat and statvfs of graphroot/runroot (storage.conf in podman's order) or their closest existing parent";
    let expected = format!(
        "graphroot {} (and runroot) writable by uid {}: owned, or creatable in a writable parent",
        storage.graphroot.display(),
        ctx.uid
    );
    let name = ctx.name_or_placeholder();
    let mut problems = Vec::new();
    let mut chown = Vec::new();
    for (path, source) in &paths {
        let Some(at) = existing_ancestor(path) else { continue };
        let Ok(meta) = fs::metadata(&at) else { continue };
        let what = if &at == path {
            format!("{} ({source})", path.display())
        } else {
            format!("{} (parent of {}, {source})", at.display(), path.display())
        };
        if &at == path && meta.uid() != ctx.uid {
            problems.push(format!("{what} is owned by uid {}", meta.uid()));
            chown.push(at.display().to_string());
        } else if let Some(why) = super::env::unwritable(ctx, &at, &meta) {
            problems.push(format!("{what}: {why}"));
            if !why.contains("read-only") {
                chown.push(at.display().to_string());
            }
        }
    }
    if problems.is_empty() {
        return Verdict::pass(format!("{}: writable", storage.graphroot.display()), expected, evidence);
    }
    let fix = if chown.is_empty() {
        format!(
            "put graphroot on a writable filesystem: graphroot = \"/var/tmp/{name}-containers/storage\" under [storage] in ~/.config/containers/storage.conf"
        )
    } else {
        format!(
            "`chown -R {name}: {}` (left by a root-run podman or tool; podman says `mkdir ...: permission denied`), or point graphroot in ~/.config/containers/storage.conf at a directory of {name}'s",
            chown.join(" ")
        )
    };
    Verdict::new(Status::Fail, problems.join("; "), expected, evidence).fix(Who::Admin, fix)
}

/// Network and cluster filesystems rootless overlay storage does not work on.
const NETWORK_FS: &[(i64, &str)] = &[
    (0x6969, "NFS"),
    (0xFF53_4D42, "CIFS"),
    (0xFE53_4D42, "SMB2"),
    (0x517B, "SMB"),
    (0x4750_4653, "GPFS"),
    (0x0BD0_0BD0, "Lustre"),
    (0x00C3_6400, "Ceph"),
    (0x5346_414F, "AFS"),
    (0x1983_0326, "BeeGFS"),
];

fn fs_name(path: &Path) -> Result<(i64, Option<&'static str>), String> {
    let magic =
        statfs(path).map_err(|e| format!("statfs {}: {}", path.display(), e.desc()))?.filesystem_type().0 as i64;
    Ok((magic, NETWORK_FS.iter().find(|(m, _)| *m == magic).map(|(_, n)| *n)))
}

pub(super) fn storage_fs(ctx: &Context) -> Verdict {
    let (root, source) = graphroot(ctx);
    let evidence = format!("statfs of {} (graphroot, {source}) or its closest existing parent", root.display());
    let expected = "graphroot on a local filesystem (not NFS, CIFS, GPFS, Lustre, Ceph...)";
    let Some(at) = existing_ancestor(&root) else {
        return Verdict::skipped("no existing parent of graphroot", evidence);
    };
    match fs_name(&at) {
        Ok((_, Some(name))) => Verdict::new(Status::Fail, format!("{} is on {name}", at.display()), expected, evidence).fix(
            Who::User,
            format!(
                "put podman's storage on local disk: in ~/.config/containers/storage.conf set\n[storage]\ndriver = \"overlay\"\ngraphroot = \"/var/tmp/{}-containers/storage\"\n(podman says \"a network file system with user namespaces is not supported\"); admins can set rootless_storage_path in /etc/containers/storage.conf",
                ctx.name_or_placeholder()
            ),
        ),
        Ok((magic, None)) => Verdict::pass(format!("{} (fs magic {magic:#x}), local", root.display()), expected, evidence),
        Err(e) => Verdict::skipped(e, evidence),
    }
}

pub(super) fn storage_mountopts(ctx: &Context) -> Verdict {
    let (root, source) = graphroot(ctx);
    let home = PathBuf::from(ctx.var("HOME").unwrap_or_default());
    let evidence = format!("statvfs of graphroot {} ({source}) and HOME", root.display());
    let expected = "graphroot and HOME mounted without noexec and nodev";
    let mut noexec = Vec::new();
    let mut nodev = Vec::new();
    for p in [&root, &home] {
        let Some(at) = existing_ancestor(p) else { continue };
        if let Ok(v) = statvfs(&at) {
            if v.flags().contains(FsFlags::ST_NOEXEC) {
                noexec.push(at.display().to_string());
            }
            if v.flags().contains(FsFlags::ST_NODEV) {
                nodev.push(at.display().to_string());
            }
        }
    }
    noexec.dedup();
    nodev.dedup();
    if noexec.is_empty() && nodev.is_empty() {
        return Verdict::pass(format!("{} and {}: exec, dev", root.display(), home.display()), expected, evidence);
    }
    let mut observed = Vec::new();
    if !noexec.is_empty() {
        observed.push(format!("noexec: {}", noexec.join(", ")));
    }
    if !nodev.is_empty() {
        observed.push(format!("nodev: {}", nodev.join(", ")));
    }
    // podman works (overlay mounts of the layers carry their own flags) but
    // volumes and `podman cp`'d programs under graphroot cannot be executed.
    Verdict::new(Status::Warn, observed.join("; "), expected, evidence).fix(
        Who::User,
        format!(
            "podman works, but programs in volumes and build steps on that mount may not run: move graphroot to a filesystem mounted exec (graphroot = \"/var/tmp/{}-containers/storage\" under [storage] in ~/.config/containers/storage.conf), or an admin remounts it without noexec/nodev",
            ctx.name_or_placeholder()
        ),
    )
}

fn boot_time(ctx: &Context) -> Option<i64> {
    let stat = read_text(&ctx.paths.proc_self.join("../stat")).or_else(|| read_text(Path::new("/proc/stat")))?;
    stat.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

pub(super) fn storage_bootid(ctx: &Context) -> Verdict {
    let Some(runtime) = ctx.runtime_dir() else { return Verdict::skipped(ctx.no_runtime_dir(), "$XDG_RUNTIME_DIR") };
    let alive = runtime.join("libpod/tmp/alive");
    let boot_id_path = ctx.paths.proc_sys.join("kernel/random/boot_id");
    let evidence = format!("{} (content and mtime), {}, btime in /proc/stat", alive.display(), boot_id_path.display());
    let expected = "podman's runtime state was made during this boot";
    let meta = match fs::metadata(&alive) {
        Ok(m) => m,
        Err(_) => return Verdict::pass("no podman runtime state yet", expected, evidence),
    };
    let cached = read_text(&alive).map(|t| t.trim().to_string()).unwrap_or_default();
    let current = read_text(&boot_id_path).map(|t| t.trim().to_string()).unwrap_or_default();
    let stale = if !cached.is_empty() && !current.is_empty() {
        (cached != current).then(|| format!("cached boot id {cached}, this boot {current}"))
    } else {
        boot_time(ctx)
            .filter(|bt| meta.mtime() < *bt)
            .map(|bt| format!("{} is older than the boot ({} < {bt})", alive.display(), meta.mtime()))
    };
    match stale {
        None => Verdict::pass("state is from this boot", expected, evidence),
        Some(observed) => Verdict::new(Status::Warn, observed, expected, evidence).fix(
            Who::User,
            format!(
                "the runtime dir survived a reboot (podman: \"unhandled reboot has occurred\"): with no containers running, `rm -rf {0}/libpod {0}/containers`; admins: keep runtime dirs on tmpfs",
                runtime.display()
            ),
        ),
    }
}

pub(super) fn net_helper(ctx: &Context) -> Verdict {
    let tun = &ctx.paths.dev_tun;
    let evidence = format!("pasta/slirp4netns in PATH or podman's helper dirs; stat {}", tun.display());
    let expected = format!("pasta or slirp4netns installed; {} a character device the user can open", tun.display());
    let helper = ["pasta", "slirp4netns"].iter().find_map(|h| ctx.find_helper(h));
    let Some(helper) = helper else {
        return Verdict::new(Status::Fail, "neither pasta nor slirp4netns found", expected, evidence).fix(
            Who::Admin,
            "install a rootless network helper: `apt-get install passt` (or slirp4netns); containers with `--network none` work without one",
        );
    };
    let tun_state = match fs::metadata(tun) {
        Ok(m) if m.file_type().is_char_device() && ctx.may(&m, 6) => Ok(()),
        Ok(m) => Err(format!(
            "{} is mode {:04o} uid {}: not readable and writable by the user",
            tun.display(),
            m.mode() & 0o7777,
            m.uid()
        )),
        Err(e) => Err(format!("{}: {e}", tun.display())),
    };
    match tun_state {
        Ok(()) => Verdict::pass(format!("{}; {} usable", helper.display(), tun.display()), expected, evidence),
        Err(why) => {
            let conf = super::podman_conf::containers_conf(ctx);
            let netns = conf.netns.as_ref().map(|s| s.value.as_str());
            let (status, note) = match netns {
                Some("none") | Some("host") => (
                    Status::Warn,
                    format!(
                        "; netns = \"{}\" in {}, so containers do not use it by default",
                        netns.unwrap_or(""),
                        conf.netns.as_ref().map(|s| s.file.display().to_string()).unwrap_or_default()
                    ),
                ),
                // The default network of a rootless container is slirp4netns (or pasta).
                _ => (Status::Fail, "; podman's default network needs it".to_string()),
            };
            Verdict::new(status, format!("{}; {why}{note}", helper.display()), expected, evidence).fix(
            Who::Admin,
            format!(
                "`chmod 0666 {}` (the usual mode; the tun driver checks access itself) — otherwise slirp4netns fails with 'open(\"/dev/net/tun\"): Permission denied'; `--network none` works meanwhile",
                tun.display()
            ),
        )
        }
    }
}

pub(super) fn mount_shared(ctx: &Context) -> Verdict {
    let path = ctx.paths.proc_self.join("mountinfo");
    let evidence = format!("{} (the mount at /)", path.display());
    let expected = "/ is a shared mount (propagation shared:N)";
    let Some(text) = read_text(&path) else {
        return Verdict::skipped(format!("cannot read {}", path.display()), evidence);
    };
    // The last entry for "/" is the one on top.
    let root = text.lines().rfind(|l| l.split_whitespace().nth(4) == Some("/"));
    let Some(line) = root else { return Verdict::skipped("no mount at / in mountinfo", evidence) };
    let optional: Vec<&str> = line.split_whitespace().skip(6).take_while(|f| *f != "-").collect();
    if optional.iter().any(|f| f.starts_with("shared:")) {
        return Verdict::pass(format!("/ propagation: {}", optional.join(" ")), expected, evidence);
    }
    let shown = if optional.is_empty() { "private".to_string() } else { optional.join(" ") };
    Verdict::new(Status::Warn, format!("/ propagation: {shown}"), expected, evidence).fix(
        Who::Admin,
        "`mount --make-rshared /` (systemd does this at boot); podman only warns ('\"/\" is not a shared mount'), but volumes with shared propagation need it",
    )
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;
    use super::*;

    #[test]
    fn mountinfo_propagation() {
        let t = Fixture::new("mnt");
        let dir = t.root.join("proc/self");
        fs::create_dir_all(&dir).unwrap();
        let mut ctx = t.healthy();
        ctx.paths.proc_self = dir.clone();
        fs::write(dir.join("mountinfo"), "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n").unwrap();
        let v = mount_shared(&ctx);
        assert!(v.status == Status::Warn && v.observed.contains("private"), "{v:?}");
        fs::write(dir.join("mountinfo"), "27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n").unwrap();
        assert_eq!(mount_shared(&ctx).status, Status::Pass);
    }

    #[test]
    fn graphroot_from_storage_conf_and_default() {
        let t = Fixture::new("graph");
        let ctx = t.healthy();
        let (root, source) = graphroot(&ctx);
        assert_eq!(root, t.root.join("home/.local/share/containers/storage"));
        assert_eq!(source, "default");
        let conf = t.root.join("home/.config/containers");
        fs::create_dir_all(&conf).unwrap();
        fs::write(conf.join("storage.conf"), "[storage]\ndriver = \"overlay\"\ngraphroot = \"$HOME/graph\"\n").unwrap();
        assert_eq!(graphroot(&ctx).0, t.root.join("home/graph"));
        assert_eq!(storage_fs(&ctx).status, Status::Pass, "a temp dir is local");
    }

    #[test]
    fn bootid_and_tun() {
        let t = Fixture::new("boot");
        let mut ctx = t.healthy();
        let sys = t.root.join("sys");
        fs::create_dir_all(sys.join("kernel/random")).unwrap();
        fs::write(sys.join("kernel/random/boot_id"), "aaaa\n").unwrap();
        ctx.paths.proc_sys = sys;
        assert_eq!(storage_bootid(&ctx).status, Status::Pass, "no state yet");
        let tmp = t.runtime_dir().join("libpod/tmp");
        fs::create_dir_all(&tmp).unwrap();
        fs::write(tmp.join("alive"), "bbbb\n").unwrap();
        let v = storage_bootid(&ctx);
        assert!(v.status == Status::Warn && v.observed.contains("cached boot id bbbb"), "{v:?}");
        fs::write(tmp.join("alive"), "aaaa\n").unwrap();
        assert_eq!(storage_bootid(&ctx).status, Status::Pass);

        // A regular file is no tun device.
        ctx.paths.dev_tun = t.root.join("etc/subuid");
        let v = net_helper(&ctx);
        if v.status != Status::Fail {
            assert!(v.status == Status::Warn && v.observed.contains("not readable and writable"), "{v:?}");
        }
    }
}
