//! Configuration: embedded defaults, an optional TOML file, and PAM module
//! arguments (`key=value`) that override the file.
//!
//! Nothing needs a config file. The file is `/etc/security/jupyter-session.toml`
//! unless `config=PATH` names another; a missing default file is fine, a
//! missing explicitly named one is an error. The file is trusted only if it
//! and every directory above it are owned by root and not writable by group
//! or others (see [`crate::trust`]); it is read through the fd that was
//! checked. Every error names the key, the value and where it came from
//! (file and line, or "module argument").
#![forbid(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};

/// Where the config file is read from unless `config=PATH` says otherwise.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/security/jupyter-session.toml";

/// The PATH a session gets unless `path` says otherwise. Debian's and
/// Fedora's login PATH for ordinary users, without the games directories.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// When to write `/proc/self/loginuid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginuidPolicy {
    /// Only in a single-threaded caller, only if different, skipping quietly
    /// where there is no audit support or in a non-identity user namespace.
    Auto,
    /// As `Auto`, but a failure to write fails the session.
    Always,
    /// Never touch loginuid.
    Never,
}

/// Size of the per-user tmpfs, as mount(8) takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TmpfsSize {
    /// A share of physical memory, 1 to 100.
    Percent(u8),
    /// An absolute size in bytes.
    Bytes(u64),
}

impl fmt::Display for TmpfsSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TmpfsSize::Percent(p) => write!(f, "{p}%"),
            TmpfsSize::Bytes(b) => write!(f, "{b}"),
        }
    }
}

/// The effective configuration.
///
/// Every field's `///` comment is its documentation for sysadmins: one or
/// two sentences, then "Default:" and the value as TOML in backticks. The man page
/// jupyter-session.toml(5), `docs/configuration.md` and the README's key
/// table are generated from these comments ([`crate::config_doc`]), and a
/// test checks each stated default against [`Config::default`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The directory in which each user's runtime dir (`XDG_RUNTIME_DIR`) is made, as `PARENT/UID`; it must be
    /// root's and not writable by group or others. Default: `"/run/user"`.
    pub runtime_dir_parent: PathBuf,
    /// The session registry: one record per open session, root only (mode 0700); every directory above it must
    /// be root's and not writable by group or others. Default: `"/run/jupyter-session"`.
    pub state_dir: PathBuf,
    /// Users with a uid below this, and root, are left alone: the module returns `PAM_IGNORE` for them.
    /// Default: `1000`.
    pub min_uid: u32,
    /// Mount a per-user tmpfs on the runtime dir, like logind, visible in pid 1's mount namespace, so one user
    /// cannot fill `/run`; falls back to a plain directory (with a warning) only where mounting is refused for
    /// lack of privilege. `false`: plain directories. Default: `true`.
    pub tmpfs: bool,
    /// Size of the per-user tmpfs: a share of RAM like `"10%"` or a size like `"256M"`. Default: `"10%"`.
    pub tmpfs_size: TmpfsSize,
    /// Inode limit of the per-user tmpfs, a count (`"400k"` works too). Default: `400000`.
    pub tmpfs_inodes: u64,
    /// Remove the runtime dir when the user's last session closes. Default: `true`.
    pub remove_on_last_close: bool,
    /// Never remove the runtime dir while a process of the user runs (real or saved uid the user's, or one of
    /// the user's subordinate uids from `/etc/subuid` or the `subid: jupyter` provider: a rootless
    /// container's); it goes at the next close or `jupyter-session gc` after they end. Default: `true`.
    pub keep_while_processes: bool,
    /// When podman's rootless pause process (`catatonit -P`, pid in `libpod/tmp/pause.pid`) is all that is
    /// left of the user, the last close and `gc` stop it and remove the dir; `false`: it keeps the dir like
    /// any process. Default: `true`.
    pub stop_pause_process: bool,
    /// Users whose runtime dir is never removed (as a module argument: `linger_users=a,b`). Default: `[]`.
    pub linger_users: Vec<String>,
    /// Service accounts (e.g. `["jupyterhub"]`) managed whatever their uid, even below
    /// `min_uid`, and lingering: their runtime dir is never removed and their id sessions
    /// never expire. Root is refused. Default: `[]`.
    pub service_users: Vec<String>,
    /// When to set the loginuid: `auto` sets an unset one in a single-threaded process and skips quietly
    /// elsewhere, `always` sets it whenever it differs and fails the session if the kernel refuses, `never`.
    /// Default: `"auto"`.
    pub loginuid: LoginuidPolicy,
    /// The `PATH` the session gets: absolute directories separated by `:`; `""` leaves `PATH` alone.
    /// Default: `"/usr/local/bin:/usr/bin:/bin"`.
    pub path: String,
    /// Log every decision at debug level (a bare `debug` module argument means `debug=true`).
    /// Default: `false`.
    pub debug: bool,
    /// Subordinate id ranges in the files: `"allocate"` makes pam_jupyter append the user's computed range to
    /// /etc/subuid and /etc/subgid at session open where they have no line (under shadow's locks); `"off"`
    /// leaves the files alone. Default: `"off"`.
    pub subids: SubidMode,
    /// First id of the computed subordinate id ranges (the NSS provider `subid: jupyter` and
    /// `subids = "allocate"`); must be above `subid_uid_max` and clear of every range in the files.
    /// Default: `1000000000`.
    pub subid_base: u64,
    /// Subordinate ids per user (both subuids and subgids). Default: `65536`.
    pub subid_size: u64,
    /// Lowest uid that gets a computed range. Default: `1000`.
    pub subid_uid_min: u32,
    /// Highest uid that gets a computed range; `subid_base + (subid_uid_max - subid_uid_min + 1) * subid_size`
    /// must stay below 2^32 - 1. Default: `50000`.
    pub subid_uid_max: u32,
}

/// Whether pam_jupyter writes subordinate id ranges into the files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubidMode {
    Off,
    Allocate,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            runtime_dir_parent: PathBuf::from("/run/user"),
            state_dir: PathBuf::from("/run/jupyter-session"),
            min_uid: 1000,
            tmpfs: true,
            tmpfs_size: TmpfsSize::Percent(10),
            tmpfs_inodes: 400_000,
            remove_on_last_close: true,
            keep_while_processes: true,
            stop_pause_process: true,
            linger_users: Vec::new(),
            service_users: Vec::new(),
            loginuid: LoginuidPolicy::Auto,
            path: DEFAULT_PATH.to_string(),
            debug: false,
            subids: SubidMode::Off,
            subid_base: 1_000_000_000,
            subid_size: 65536,
            subid_uid_min: 1000,
            subid_uid_max: 50000,
        }
    }
}

/// Where a setting came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    File { path: PathBuf, line: usize },
    Argument,
    CommandLine,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File { path, line } => write!(f, "{} line {line}", path.display()),
            Source::Argument => f.write_str("PAM module argument"),
            Source::CommandLine => f.write_str("command-line option"),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The file, or a directory above it, may be changed by someone other
    /// than root: refused, not read.
    Untrusted {
        path: PathBuf,
        reason: String,
    },
    /// The file could not be read (other than a missing default file).
    Read {
        path: PathBuf,
        reason: String,
    },
    /// Not valid TOML at all.
    Syntax {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    UnknownKey {
        key: String,
        source: Source,
    },
    BadValue {
        key: String,
        value: String,
        source: Source,
        expected: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Untrusted { path, reason } => {
                write!(f, "refusing config file {}: {reason}", path.display())
            }
            ConfigError::Read { path, reason } => write!(
                f,
                "cannot read config file {}: {reason}; fix its permissions or remove config= from the PAM line",
                path.display()
            ),
            ConfigError::Syntax { path, line, reason } => {
                write!(f, "config file {} line {line} is not valid TOML: {reason}", path.display())
            }
            ConfigError::UnknownKey { key, source } => {
                write!(f, "unknown setting '{key}' ({source}); known settings: {}", KEYS.join(", "))
            }
            ConfigError::BadValue { key, value, source, expected } => {
                write!(f, "invalid value {value} for '{key}' ({source}): expected {expected}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every key the file and the module arguments accept.
pub const KEYS: &[&str] = &[
    "runtime_dir_parent",
    "state_dir",
    "min_uid",
    "tmpfs",
    "tmpfs_size",
    "tmpfs_inodes",
    "remove_on_last_close",
    "keep_while_processes",
    "stop_pause_process",
    "linger_users",
    "service_users",
    "loginuid",
    "path",
    "debug",
    "subids",
    "subid_base",
    "subid_size",
    "subid_uid_min",
    "subid_uid_max",
];

/// A value before it is checked: from TOML, or a `key=value` string.
#[derive(Clone, Debug)]
pub enum RawValue {
    Toml(toml::Value),
    Text(String),
}

impl RawValue {
    fn shown(&self) -> String {
        match self {
            RawValue::Toml(v) => v.to_string(),
            RawValue::Text(s) => format!("'{s}'"),
        }
    }
}

/// The largest config file read (anything longer is cut there and then
/// fails to parse, naming the line).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// PAM module arguments, parsed but not yet applied: `config=PATH` and the
/// `key=value` pairs that override the file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModuleArgs {
    pub config: Option<PathBuf>,
    pub pairs: Vec<(String, String)>,
}

impl ModuleArgs {
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<ModuleArgs, ConfigError> {
        let mut out = ModuleArgs::default();
        for arg in args {
            let arg = arg.as_ref();
            let (key, value) = match arg.split_once('=') {
                Some((k, v)) => (k, v),
                None if arg == "debug" => ("debug", "true"),
                None => {
                    return Err(ConfigError::BadValue {
                        key: arg.to_string(),
                        value: String::from("(none)"),
                        source: Source::Argument,
                        expected: String::from("key=value (or the bare word 'debug')"),
                    });
                }
            };
            if key == "config" {
                if value.is_empty() || !value.starts_with('/') {
                    return Err(ConfigError::BadValue {
                        key: key.into(),
                        value: format!("'{value}'"),
                        source: Source::Argument,
                        expected: "an absolute path to a TOML file".into(),
                    });
                }
                out.config = Some(PathBuf::from(value));
            } else {
                out.pairs.push((key.to_string(), value.to_string()));
            }
        }
        Ok(out)
    }

    /// Apply the `key=value` pairs over `config`.
    pub fn apply(&self, config: &mut Config) -> Result<(), ConfigError> {
        for (key, value) in &self.pairs {
            config.set(key, RawValue::Text(value.clone()), Source::Argument)?;
        }
        Ok(())
    }
}

impl Config {
    /// The configuration a PAM module with these arguments runs with:
    /// defaults, then the file (`config=PATH` or the default file), then the
    /// other arguments. A bare `debug` argument means `debug=true`.
    pub fn from_module_args<S: AsRef<str>>(args: &[S]) -> Result<Config, ConfigError> {
        let parsed = ModuleArgs::parse(args)?;
        let mut config = Config::load(parsed.config.as_deref())?;
        parsed.apply(&mut config)?;
        config.check_service_users(&Source::Argument)?;
        Ok(config)
    }

    /// Defaults overlaid with `path` if given (which must then exist), else
    /// with the default file if it exists. Either must be trusted (root's,
    /// not writable by group or others, nor any directory above it).
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_trusting(path, 0)
    }

    /// As [`load`](Self::load), also trusting files and directories owned
    /// by `owner`: for unprivileged tests on temporary roots only.
    pub fn load_trusting(path: Option<&Path>, owner: u32) -> Result<Config, ConfigError> {
        match path {
            Some(path) => Config::read_trusted(path, owner, false),
            None => Config::read_trusted(Path::new(DEFAULT_CONFIG_FILE), owner, true),
        }
    }

    /// Defaults overlaid with the default file, if it exists.
    pub fn from_default_file() -> Result<Config, ConfigError> {
        Config::load(None)
    }

    /// Defaults overlaid with this file, which must exist.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        Config::load(Some(path))
    }

    fn read_trusted(path: &Path, owner: u32, missing_ok: bool) -> Result<Config, ConfigError> {
        use crate::trust::{TrustError, Want, open_trusted};
        let fd = match open_trusted(path, Want::File, owner) {
            Ok(fd) => fd,
            Err(e) if missing_ok && e.is_not_found() => return Ok(Config::default()),
            Err(e @ TrustError::Untrusted { .. }) => {
                return Err(ConfigError::Untrusted { path: path.into(), reason: e.to_string() });
            }
            Err(e @ TrustError::NotFound { .. }) => {
                return Err(ConfigError::Read { path: path.into(), reason: e.to_string() });
            }
            Err(TrustError::Io { culprit, errno, .. }) => {
                let reason = if culprit == path {
                    errno.desc().to_string()
                } else {
                    format!("{}: {}", culprit.display(), errno.desc())
                };
                return Err(ConfigError::Read { path: path.into(), reason });
            }
        };
        let text = crate::trust::read_to_string(fd, MAX_CONFIG_BYTES)
            .map_err(|e| ConfigError::Read { path: path.into(), reason: e.to_string() })?;
        let config = Config::from_toml(&text, path)?;
        let line = text.lines().position(|l| l.trim_start().starts_with("service_users")).map_or(1, |i| i + 1);
        config.check_service_users(&Source::File { path: path.into(), line })?;
        Ok(config)
    }

    /// Defaults overlaid with TOML text; `path` is only used in messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        use std::collections::BTreeMap;
        use toml::Spanned;
        let table: BTreeMap<Spanned<String>, Spanned<toml::Value>> =
            toml::from_str(text).map_err(|e| ConfigError::Syntax {
                path: path.into(),
                line: e.span().map(|s| line_of(text, s.start)).unwrap_or(1),
                reason: e.message().to_string(),
            })?;
        let mut config = Config::default();
        for (key, value) in table {
            let source = Source::File { path: path.into(), line: line_of(text, key.span().start) };
            config.set(key.get_ref(), RawValue::Toml(value.into_inner()), source)?;
        }
        Ok(config)
    }

    /// Set one key from a raw value, checking it.
    pub fn set(&mut self, key: &str, value: RawValue, source: Source) -> Result<(), ConfigError> {
        let bad = |expected: &str| ConfigError::BadValue {
            key: key.to_string(),
            value: value.shown(),
            source: source.clone(),
            expected: expected.to_string(),
        };
        match key {
            "runtime_dir_parent" => {
                self.runtime_dir_parent =
                    absolute_path(&value).ok_or_else(|| bad("an absolute path without '..'"))?
            }
            "state_dir" => {
                self.state_dir =
                    absolute_path(&value).ok_or_else(|| bad("an absolute path without '..'"))?
            }
            "min_uid" => {
                self.min_uid = integer(&value)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| bad("a uid, a whole number from 0 to 4294967294"))?
            }
            "tmpfs" => self.tmpfs = boolean(&value).ok_or_else(|| bad("true or false"))?,
            "tmpfs_size" => {
                self.tmpfs_size = text(&value)
                    .and_then(|s| parse_size(&s))
                    .ok_or_else(|| bad("a percentage of RAM like \"10%\" or a size like \"256M\""))?
            }
            "tmpfs_inodes" => {
                self.tmpfs_inodes = match &value {
                    RawValue::Toml(toml::Value::Integer(n)) => u64::try_from(*n).ok(),
                    other => text(other).and_then(|s| parse_count(&s)),
                }
                .filter(|n| *n > 0)
                .ok_or_else(|| bad("a positive count like 400000 or \"400k\""))?
            }
            "remove_on_last_close" => {
                self.remove_on_last_close = boolean(&value).ok_or_else(|| bad("true or false"))?
            }
            "keep_while_processes" => {
                self.keep_while_processes = boolean(&value).ok_or_else(|| bad("true or false"))?
            }
            "stop_pause_process" => {
                self.stop_pause_process = boolean(&value).ok_or_else(|| bad("true or false"))?
            }
            "linger_users" => {
                self.linger_users = user_list(&value)
                    .ok_or_else(|| bad("a list of user names (comma-separated as an argument)"))?
            }
            "service_users" => {
                let names = user_list(&value)
                    .ok_or_else(|| bad("a list of user names (comma-separated as an argument)"))?;
                if names.iter().any(|n| n == "root") {
                    return Err(bad("a list of service accounts without root: root's sessions are never managed"));
                }
                self.service_users = names
            }
            "loginuid" => {
                self.loginuid = match text(&value).as_deref() {
                    Some("auto") => LoginuidPolicy::Auto,
                    Some("always") => LoginuidPolicy::Always,
                    Some("never") => LoginuidPolicy::Never,
                    _ => return Err(bad("one of auto, always, never")),
                }
            }
            "path" => {
                self.path = text(&value)
                    .filter(|p| valid_path_var(p))
                    .ok_or_else(|| {
                        bad("absolute directories separated by ':' (no empty, relative or '..' entries), or \"\" to leave PATH alone")
                    })?
            }
            "debug" => self.debug = boolean(&value).ok_or_else(|| bad("true or false"))?,
            "subids" => {
                self.subids = match text(&value).as_deref() {
                    Some("off") => SubidMode::Off,
                    Some("allocate") => SubidMode::Allocate,
                    _ => return Err(bad("\"off\" or \"allocate\"")),
                }
            }
            "subid_base" | "subid_size" => {
                let n = integer(&value)
                    .and_then(|n| u64::try_from(n).ok())
                    .filter(|n| (1..=u32::MAX as u64).contains(n))
                    .ok_or_else(|| bad("a whole number from 1 to 4294967295"))?;
                if key == "subid_base" { self.subid_base = n } else { self.subid_size = n }
            }
            "subid_uid_min" | "subid_uid_max" => {
                let n = integer(&value)
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n < u32::MAX)
                    .ok_or_else(|| bad("a uid, a whole number from 0 to 4294967294"))?;
                if key == "subid_uid_min" { self.subid_uid_min = n } else { self.subid_uid_max = n }
            }
            _ => return Err(ConfigError::UnknownKey { key: key.to_string(), source }),
        }
        Ok(())
    }

    /// Whether `user` lingers: on `linger_users` or `service_users` (their
    /// runtime dir is never removed, their id sessions never expire).
    pub fn lingers(&self, user: &str) -> bool {
        self.linger_users.iter().any(|u| u == user) || self.is_service_user(user)
    }

    /// Whether `user` is on `service_users`.
    pub fn is_service_user(&self, user: &str) -> bool {
        self.service_users.iter().any(|u| u == user)
    }

    /// Whether sessions of `user` are managed: never root (uid 0, whatever
    /// the name); a service user whatever its uid; else uid >= `min_uid`.
    pub fn manages(&self, user: &crate::user::UserInfo) -> Result<(), crate::user::Unmanaged> {
        if user.uid == 0 {
            return Err(crate::user::Unmanaged::Root);
        }
        if self.is_service_user(&user.name) {
            return Ok(());
        }
        crate::user::managed(user.uid, self.min_uid)
    }

    /// Refuse a service user that resolves to uid 0 (a second name of
    /// root). A name that does not resolve is not an error here (LDAP may
    /// be down at load): it is one where it is used (open, `ensure`, `check`).
    pub fn check_service_users(&self, source: &Source) -> Result<(), ConfigError> {
        for name in &self.service_users {
            if let Ok(user) = crate::user::UserInfo::by_name(name)
                && user.uid == 0
            {
                return Err(ConfigError::BadValue {
                    key: "service_users".into(),
                    value: format!("'{name}'"),
                    source: source.clone(),
                    expected: format!(
                        "service accounts other than root: '{name}' has uid 0, and root's sessions are never managed; remove it"
                    ),
                });
            }
        }
        Ok(())
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

fn text(value: &RawValue) -> Option<String> {
    match value {
        RawValue::Text(s) => Some(s.clone()),
        RawValue::Toml(toml::Value::String(s)) => Some(s.clone()),
        RawValue::Toml(_) => None,
    }
}

fn boolean(value: &RawValue) -> Option<bool> {
    match value {
        RawValue::Toml(toml::Value::Boolean(b)) => Some(*b),
        RawValue::Toml(_) => None,
        RawValue::Text(s) => match s.as_str() {
            "true" | "yes" | "1" | "on" => Some(true),
            "false" | "no" | "0" | "off" => Some(false),
            _ => None,
        },
    }
}

fn integer(value: &RawValue) -> Option<i64> {
    match value {
        RawValue::Toml(toml::Value::Integer(n)) => Some(*n),
        RawValue::Toml(_) => None,
        RawValue::Text(s) => s.parse().ok(),
    }
}

fn absolute_path(value: &RawValue) -> Option<PathBuf> {
    let s = text(value)?;
    let path = PathBuf::from(&s);
    let clean = path.is_absolute()
        && path.components().all(|c| !matches!(c, std::path::Component::ParentDir))
        && path.parent().is_some();
    clean.then_some(path)
}

fn user_list(value: &RawValue) -> Option<Vec<String>> {
    let names: Vec<String> = match value {
        RawValue::Toml(toml::Value::Array(items)) => {
            items.iter().map(|v| v.as_str().map(str::to_string)).collect::<Option<Vec<_>>>()?
        }
        RawValue::Toml(_) => return None,
        RawValue::Text(s) if s.is_empty() => Vec::new(),
        RawValue::Text(s) => s.split(',').map(|n| n.trim().to_string()).collect(),
    };
    names.iter().all(|n| crate::user::valid_name(n)).then_some(names)
}

fn valid_path_var(path: &str) -> bool {
    path.is_empty()
        || path
            .split(':')
            .all(|dir| dir.starts_with('/') && !dir.split('/').any(|part| part == "..") && !dir.contains('\0'))
}

/// "10%" → Percent(10); "256M", "1G", "4096", "512k" → Bytes.
pub fn parse_size(s: &str) -> Option<TmpfsSize> {
    if let Some(p) = s.strip_suffix('%') {
        let p: u8 = p.parse().ok()?;
        return (1..=100).contains(&p).then_some(TmpfsSize::Percent(p));
    }
    let (digits, mult) = split_suffix(s, 1024)?;
    let n: u64 = digits.parse().ok()?;
    let bytes = n.checked_mul(mult)?;
    (bytes >= 4096).then_some(TmpfsSize::Bytes(bytes))
}

fn parse_count(s: &str) -> Option<u64> {
    let (digits, mult) = split_suffix(s, 1000)?;
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

fn split_suffix(s: &str, base: u64) -> Option<(&str, u64)> {
    let last = s.chars().last()?;
    let mult = match last.to_ascii_lowercase() {
        'k' => base,
        'm' => base * base,
        'g' => base * base * base,
        c if c.is_ascii_digit() => return Some((s, 1)),
        _ => return None,
    };
    Some((&s[..s.len() - 1], mult))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("/etc/security/jupyter-session.toml"))
    }

    #[test]
    fn defaults_need_no_file() {
        let c = Config::default();
        assert_eq!(c.runtime_dir_parent, Path::new("/run/user"));
        assert_eq!(c.state_dir, Path::new("/run/jupyter-session"));
        assert_eq!(c.min_uid, 1000);
        assert_eq!(c.loginuid, LoginuidPolicy::Auto);
        assert!(c.remove_on_last_close && c.keep_while_processes && c.tmpfs);
        assert_eq!(c.path, DEFAULT_PATH);
    }

    #[test]
    fn file_values_are_applied() {
        let c = file(
            "min_uid = 500\ntmpfs = true\ntmpfs_size = \"256M\"\ntmpfs_inodes = \"10k\"\n\
             linger_users = [\"alice\", \"bob\"]\nloginuid = \"never\"\npath = \"/opt/bin:/usr/bin\"\n",
        )
        .unwrap();
        assert_eq!(c.min_uid, 500);
        assert!(c.tmpfs);
        assert_eq!(c.tmpfs_size, TmpfsSize::Bytes(256 * 1024 * 1024));
        assert_eq!(c.tmpfs_inodes, 10_000);
        assert!(c.lingers("bob") && !c.lingers("carol"));
        assert_eq!(c.loginuid, LoginuidPolicy::Never);
        assert_eq!(c.path, "/opt/bin:/usr/bin");
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = file("debug = true\n\nruntime_dir = \"/tmp\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("'runtime_dir'") && msg.contains("line 3"), "{msg}");
        assert!(msg.contains("runtime_dir_parent"), "lists known keys: {msg}");
    }

    #[test]
    fn wrong_type_names_key_value_and_line() {
        let msg = file("min_uid = \"lots\"\n").unwrap_err().to_string();
        assert!(msg.contains("'min_uid'") && msg.contains("\"lots\"") && msg.contains("line 1"), "{msg}");
        let msg = file("\ntmpfs = 1\n").unwrap_err().to_string();
        assert!(msg.contains("'tmpfs'") && msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn invalid_values_are_refused() {
        for bad in [
            "path = \"bin:/usr/bin\"",
            "path = \"/usr/bin::/bin\"",
            "path = \"/usr/../bin\"",
            "runtime_dir_parent = \"run/user\"",
            "state_dir = \"/run/../tmp\"",
            "runtime_dir_parent = \"/\"",
            "tmpfs_size = \"0%\"",
            "tmpfs_size = \"101%\"",
            "tmpfs_size = \"12Q\"",
            "tmpfs_inodes = 0",
            "min_uid = -1",
            "loginuid = \"sometimes\"",
            "linger_users = [\"ok\", \"bad name\"]",
        ] {
            assert!(matches!(file(bad), Err(ConfigError::BadValue { .. })), "accepted: {bad}");
        }
    }

    #[test]
    fn service_users_are_managed_lingering_and_never_root() {
        use crate::user::{Unmanaged, UserInfo};
        let c = file("service_users = [\"jupyterhub\"]\n").unwrap();
        let user = |name: &str, uid| UserInfo {
            name: name.into(),
            uid,
            gid: uid,
            home: "/var/lib/x".into(),
            shell: "/bin/sh".into(),
        };
        assert_eq!(c.manages(&user("jupyterhub", 999)), Ok(()), "an allow-list, whatever the uid");
        assert_eq!(c.manages(&user("daemon2", 999)), Err(Unmanaged::BelowMinUid { min_uid: 1000 }), "not a floor");
        assert_eq!(c.manages(&user("alice", 1000)), Ok(()));
        let mut toor = c.clone();
        toor.service_users.push("toor".into());
        assert_eq!(toor.manages(&user("toor", 0)), Err(Unmanaged::Root), "uid 0 under any name");
        assert!(c.lingers("jupyterhub") && !c.lingers("alice"));
        let err = file("\nservice_users = [\"jupyterhub\", \"root\"]\n").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ConfigError::BadValue { .. }), "{msg}");
        assert!(msg.contains("'service_users'") && msg.contains("line 2") && msg.contains("without root"), "{msg}");
        let msg = Config::from_module_args(&["service_users=root"]).unwrap_err().to_string();
        assert!(msg.contains("PAM module argument") && msg.contains("without root"), "{msg}");
        // Not in passwd: fine at load (LDAP may be down), an error where used.
        assert!(file("service_users = [\"no-such-user-js\"]\n").is_ok());
    }

    #[test]
    fn syntax_error_names_line() {
        let msg = file("debug = true\nmin_uid = = 3\n").unwrap_err().to_string();
        assert!(msg.contains("line 2") && msg.contains("not valid TOML"), "{msg}");
    }

    #[test]
    fn module_args_override_file_and_parse() {
        let dir = std::env::temp_dir().join(format!("js-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "min_uid = 2000\ndebug = false\n").unwrap();
        let config_arg = format!("config={}", path.display());
        // What from_module_args does, trusting our own files when unprivileged.
        let args = |a: &[&str]| {
            let parsed = ModuleArgs::parse(a)?;
            let mut c = Config::load_trusting(parsed.config.as_deref(), me())?;
            parsed.apply(&mut c).map(|()| c)
        };
        let c = args(&[config_arg.as_str(), "debug", "linger_users=a,b"]).unwrap();
        assert_eq!(c.min_uid, 2000);
        assert!(c.debug);
        assert_eq!(c.linger_users, vec!["a", "b"]);
        let c = args(&[config_arg.as_str(), "min_uid=3000"]).unwrap();
        assert_eq!(c.min_uid, 3000);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn load_reads_the_given_file_and_requires_it() {
        let dir = std::env::temp_dir().join(format!("js-config-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("given.toml");
        std::fs::write(&path, "min_uid = 700\n").unwrap();
        let c = Config::load_trusting(Some(&path), me()).unwrap();
        assert_eq!(c.min_uid, 700);
        let missing = dir.join("missing.toml");
        let err = Config::load_trusting(Some(&missing), me()).unwrap_err();
        assert!(matches!(err, ConfigError::Read { ref path, .. } if *path == missing), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
        // (Config::load(None) reads /etc/security/jupyter-session.toml; a
        // test comparing it with from_default_file, which it calls, could
        // not fail and was removed.)
    }

    fn me() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    #[test]
    fn untrusted_files_are_refused_not_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("js-config-trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "min_uid = 700\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
        let err = Config::load_trusting(Some(&path), me()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ConfigError::Untrusted { .. }), "{msg}");
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains("0664") && msg.contains("chmod go-w"),
            "{msg}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o775)).unwrap();
        let msg = Config::load_trusting(Some(&path), me()).unwrap_err().to_string();
        assert!(msg.contains(&format!("{} is writable by group or others", dir.display())), "{msg}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Another owner than root (or the trusted test owner) is refused too.
        if me() != 0 {
            let msg = Config::load(Some(&path)).unwrap_err().to_string();
            assert!(msg.contains("is not owned by root"), "{msg}");
        }
        assert_eq!(Config::load_trusting(Some(&path), me()).unwrap().min_uid, 700);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_module_args_are_named() {
        let msg = Config::from_module_args(&["min_uid=abc"]).unwrap_err().to_string();
        assert!(msg.contains("'min_uid'") && msg.contains("'abc'") && msg.contains("PAM module argument"), "{msg}");
        let msg = Config::from_module_args(&["frobnicate=1"]).unwrap_err().to_string();
        assert!(msg.contains("'frobnicate'"), "{msg}");
        let msg = Config::from_module_args(&["nodebug"]).unwrap_err().to_string();
        assert!(msg.contains("nodebug"), "{msg}");
        let msg = Config::from_module_args(&["config=relative.toml"]).unwrap_err().to_string();
        assert!(msg.contains("absolute path"), "{msg}");
        let err = Config::from_module_args(&["config=/nonexistent/js.toml"]).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10%"), Some(TmpfsSize::Percent(10)));
        assert_eq!(parse_size("1G"), Some(TmpfsSize::Bytes(1 << 30)));
        assert_eq!(parse_size("512k"), Some(TmpfsSize::Bytes(512 * 1024)));
        assert_eq!(parse_size("100"), None, "below one page");
        assert_eq!(parse_count("400k"), Some(400_000));
    }
}
