//! The configuration files rootless podman reads, in its order:
//! containers.conf (engine and network settings) and storage.conf (where
//! the storage is). Later files override earlier ones key by key.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Context, read_text};

/// A value and the file it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Setting {
    pub value: String,
    pub file: PathBuf,
}

/// What `check` needs from containers.conf.
#[derive(Clone, Debug, Default)]
pub(crate) struct ContainersConf {
    /// Files read, in order.
    pub files: Vec<PathBuf>,
    /// Files that exist but do not parse or cannot be read.
    pub errors: Vec<String>,
    pub runtime: Option<Setting>,
    pub cgroup_manager: Option<Setting>,
    pub events_logger: Option<Setting>,
    pub netns: Option<Setting>,
    /// `[engine.runtimes]`: name → candidate paths.
    pub runtimes: BTreeMap<String, Vec<String>>,
}

pub(crate) fn config_home(ctx: &Context) -> PathBuf {
    match ctx.var("XDG_CONFIG_HOME") {
        Some(v) if v.starts_with('/') => PathBuf::from(v),
        _ => PathBuf::from(
            ctx.var("HOME")
                .map(String::from)
                .or_else(|| ctx.user.as_ref().map(|u| u.home.display().to_string()))
                .unwrap_or_default(),
        )
        .join(".config"),
    }
}

fn dropins(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "conf")).collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// containers.conf as rootless podman 4 reads it: `$CONTAINERS_CONF` alone
/// if set; else the distribution's, the admin's, their drop-ins, then the
/// user's file and drop-ins.
pub(crate) fn containers_conf(ctx: &Context) -> ContainersConf {
    let files: Vec<PathBuf> = match ctx.var("CONTAINERS_CONF") {
        Some(f) if !f.is_empty() => vec![PathBuf::from(f)],
        _ => {
            let share = &ctx.paths.containers_share;
            let etc = &ctx.paths.containers_etc;
            let user = config_home(ctx).join("containers");
            let mut v = vec![share.join("containers.conf"), etc.join("containers.conf")];
            v.extend(dropins(&etc.join("containers.conf.d")));
            v.push(user.join("containers.conf"));
            v.extend(dropins(&user.join("containers.conf.d")));
            v
        }
    };
    let mut conf = ContainersConf::default();
    for file in files {
        if !file.exists() {
            continue;
        }
        let Some(text) = read_text(&file) else {
            conf.errors.push(format!("{}: cannot be read", file.display()));
            continue;
        };
        let table = match text.parse::<toml::Table>() {
            Ok(t) => t,
            Err(e) => {
                conf.errors.push(format!("{}: {}", file.display(), e.message()));
                continue;
            }
        };
        let get = |section: &str, key: &str| {
            table.get(section)?.get(key)?.as_str().map(|v| Setting { value: v.to_string(), file: file.clone() })
        };
        if let Some(s) = get("engine", "runtime") {
            conf.runtime = Some(s);
        }
        if let Some(s) = get("engine", "cgroup_manager") {
            conf.cgroup_manager = Some(s);
        }
        if let Some(s) = get("engine", "events_logger") {
            conf.events_logger = Some(s);
        }
        if let Some(s) = get("containers", "netns") {
            conf.netns = Some(s);
        }
        if let Some(rt) = table.get("engine").and_then(|e| e.get("runtimes")).and_then(|r| r.as_table()) {
            for (name, paths) in rt {
                let list = paths.as_array().map(|a| a.iter().filter_map(|p| p.as_str().map(String::from)).collect());
                conf.runtimes.insert(name.clone(), list.unwrap_or_default());
            }
        }
        conf.files.push(file);
    }
    conf
}

/// Where podman keeps this user's storage, and from which setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Storage {
    pub graphroot: PathBuf,
    pub graphroot_source: String,
    /// `runroot` when a storage.conf sets it (else under the runtime dir).
    pub runroot: Option<(PathBuf, String)>,
}

/// storage.conf for a rootless user: `$CONTAINERS_STORAGE_CONF`, else the
/// user's file if it exists (it replaces the system's), else the system's
/// `rootless_storage_path`; default `$XDG_DATA_HOME/containers/storage`.
pub(crate) fn storage(ctx: &Context) -> Storage {
    let home = PathBuf::from(ctx.var("HOME").unwrap_or_default());
    let expand = |s: &str| {
        s.replace("$HOME", &home.display().to_string())
            .replace("$UID", &ctx.uid.to_string())
            .replace("$USER", &ctx.name_or_placeholder())
    };
    let user_file = match ctx.var("CONTAINERS_STORAGE_CONF") {
        Some(f) if !f.is_empty() => Some(PathBuf::from(f)),
        _ => Some(config_home(ctx).join("containers/storage.conf")).filter(|p| p.exists()),
    };
    let read = |file: &Path| read_text(file).and_then(|t| t.parse::<toml::Table>().ok());
    let key = |t: &toml::Table, k: &str| t.get("storage")?.get(k)?.as_str().filter(|v| !v.is_empty()).map(String::from);
    let data_home = match ctx.var("XDG_DATA_HOME") {
        Some(v) if v.starts_with('/') => PathBuf::from(v),
        _ => home.join(".local/share"),
    };
    let default = (data_home.join("containers/storage"), "default".to_string());
    if let Some(file) = user_file {
        let t = read(&file).unwrap_or_default();
        let g = key(&t, "graphroot").map(|g| (PathBuf::from(expand(&g)), format!("graphroot in {}", file.display())));
        let r = key(&t, "runroot").map(|r| (PathBuf::from(expand(&r)), format!("runroot in {}", file.display())));
        let (graphroot, graphroot_source) = g.unwrap_or(default);
        return Storage { graphroot, graphroot_source, runroot: r };
    }
    for file in [ctx.paths.containers_etc.join("storage.conf"), ctx.paths.containers_share.join("storage.conf")] {
        if let Some(t) = read(&file) {
            let g = key(&t, "rootless_storage_path")
                .map(|g| (PathBuf::from(expand(&g)), format!("rootless_storage_path in {}", file.display())));
            let (graphroot, graphroot_source) = g.unwrap_or(default);
            return Storage { graphroot, graphroot_source, runroot: None };
        }
    }
    Storage { graphroot: default.0, graphroot_source: default.1, runroot: None }
}
