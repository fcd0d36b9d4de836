//! Subordinate ids (subuid/subgid) for users who have no line in
//! `/etc/subuid`/`/etc/subgid`: directory (LDAP/SSSD) and on-the-fly users.
//!
//! A managed uid `U` (from `subid_uid_min` to `subid_uid_max`) owns the
//! computed range `subid_base + (U - subid_uid_min) * subid_size`, `subid_size`
//! ids long, for both subuids and subgids: the same on every node, with no
//! shared state, and disjoint between users by construction (the map from
//! uid to slot is injective and the slots are consecutive). The layout is
//! refused when it would pass 2^32 - 1, reach down to a managed uid, or
//! overlap any range listed in the files — except a line that is exactly its
//! owner's computed range (what `subids = "allocate"` appends).
//!
//! Two consumers: the NSS provider `libsubid_jupyter.so` (crate
//! `nss_subid`, which shadow's newuidmap/newgidmap/getsubids and podman load
//! for `subid: jupyter` in nsswitch.conf) answers from [`Provider`]; and
//! pam_jupyter with `subids = "allocate"` appends the computed range to the
//! files with shadow's locking protocol ([`allocate`]).
#![forbid(unsafe_code)]

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, FcntlArg, OFlag, fcntl, openat};
use nix::sys::stat::{Mode, fstat};

use crate::config::{Config, ConfigError};

/// The last valid id: 2^32 - 1 is `(uid_t) -1`, "no id".
pub const LAST_ID: u64 = u32::MAX as u64 - 1;

/// Subuids or subgids (shadow's `enum subid_type`: 1 and 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Uid,
    Gid,
}

impl Kind {
    pub fn file_name(self) -> &'static str {
        match self {
            Kind::Uid => "subuid",
            Kind::Gid => "subgid",
        }
    }
}

/// Where the provider and the allocator look (the real paths, or a
/// temporary root in unit tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    pub subuid: PathBuf,
    pub subgid: PathBuf,
    /// glibc's `lckpwdf(3)` lock file, which every shadow tool takes first.
    pub pwd_lock: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths { subuid: "/etc/subuid".into(), subgid: "/etc/subgid".into(), pwd_lock: "/etc/.pwd.lock".into() }
    }
}

impl Paths {
    pub fn file(&self, kind: Kind) -> &Path {
        match kind {
            Kind::Uid => &self.subuid,
            Kind::Gid => &self.subgid,
        }
    }
}

/// The computed layout: validated settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub base: u64,
    pub size: u64,
    pub uid_min: u32,
    pub uid_max: u32,
}

/// One line of `/etc/subuid` or `/etc/subgid`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Range {
    pub owner: String,
    pub start: u64,
    pub count: u64,
    /// 1-based line number in its file.
    pub line: usize,
}

impl Range {
    pub fn end(&self) -> u64 {
        self.start + self.count
    }
}

impl Layout {
    /// The layout of these settings, or why it is refused (naming the keys
    /// and what to change).
    pub fn new(base: u64, size: u64, uid_min: u32, uid_max: u32) -> Result<Layout, String> {
        if size == 0 {
            return Err("subid_size = 0: each user needs at least 1 subordinate id (podman wants 65536)".into());
        }
        if uid_min > uid_max {
            return Err(format!(
                "subid_uid_min = {uid_min} is above subid_uid_max = {uid_max}: set subid_uid_min <= subid_uid_max"
            ));
        }
        if base <= uid_max as u64 {
            return Err(format!(
                "subid_base = {base} is not above subid_uid_max = {uid_max}: the computed ranges would contain real uids; set subid_base above {uid_max}"
            ));
        }
        let users = uid_max as u64 - uid_min as u64 + 1;
        let end = users.checked_mul(size).and_then(|n| n.checked_add(base));
        match end {
            Some(end) if end - 1 <= LAST_ID => Ok(Layout { base, size, uid_min, uid_max }),
            _ => {
                let room = (LAST_ID + 1).saturating_sub(base);
                Err(format!(
                    "subid_base = {base} + {users} uids (subid_uid_min = {uid_min} to subid_uid_max = {uid_max}) x subid_size = {size} passes the last id {LAST_ID} (2^32 - 2): lower subid_size to at most {} or narrow the uid range to {} uids",
                    room / users,
                    room / size
                ))
            }
        }
    }

    /// The layout the config's `subid_*` keys describe.
    pub fn from_config(config: &Config) -> Result<Layout, String> {
        Layout::new(config.subid_base, config.subid_size, config.subid_uid_min, config.subid_uid_max)
    }

    /// First id past the last computed range.
    pub fn end(&self) -> u64 {
        self.base + (self.uid_max as u64 - self.uid_min as u64 + 1) * self.size
    }

    pub fn manages(&self, uid: u32) -> bool {
        (self.uid_min..=self.uid_max).contains(&uid)
    }

    /// `(start, count)` of a managed uid's range.
    pub fn range_of(&self, uid: u32) -> Option<(u64, u64)> {
        self.manages(uid).then(|| (self.base + (uid - self.uid_min) as u64 * self.size, self.size))
    }

    /// The uid whose computed range contains `id`.
    pub fn owner_of(&self, id: u64) -> Option<u32> {
        if id < self.base || id >= self.end() {
            return None;
        }
        Some(self.uid_min + ((id - self.base) / self.size) as u32)
    }

    /// Whether `start..end` meets any computed range.
    pub fn intersects(&self, start: u64, end: u64) -> bool {
        start < self.end() && self.base < end
    }
}

/// Parse a subuid/subgid file as shadow does (`owner:start:count`, blank
/// lines skipped); a line that does not parse is left out with a warning
/// naming the file and line (shadow ignores it too).
pub fn parse_file(text: &str, path: &Path) -> (Vec<Range>, Vec<String>) {
    let mut ranges = Vec::new();
    let mut warnings = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = l.split(':').collect();
        let parsed = match f.as_slice() {
            [owner, start, count] if !owner.is_empty() => match (start.parse::<u64>(), count.parse::<u64>()) {
                (Ok(s), Ok(c)) if c > 0 && s.checked_add(c).is_some_and(|e| e - 1 <= LAST_ID) => {
                    Some(Range { owner: owner.to_string(), start: s, count: c, line: i + 1 })
                }
                _ => None,
            },
            _ => None,
        };
        match parsed {
            Some(r) => ranges.push(r),
            None => warnings.push(format!(
                "{} line {}: '{}' is not owner:start:count with start + count <= 2^32 - 1; line ignored, fix or remove it",
                path.display(),
                i + 1,
                l.chars().take(80).collect::<String>()
            )),
        }
    }
    (ranges, warnings)
}

/// Resolves user names and uids (NSS in production, a table in tests).
pub trait Users {
    fn uid_of(&self, name: &str) -> Option<u32>;
    fn name_of(&self, uid: u32) -> Option<String>;
}

/// The passwd database through reentrant NSS calls.
pub struct Nss;

impl Users for Nss {
    fn uid_of(&self, name: &str) -> Option<u32> {
        nix::unistd::User::from_name(name).ok().flatten().map(|u| u.uid.as_raw())
    }
    fn name_of(&self, uid: u32) -> Option<String> {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten().map(|u| u.name)
    }
}

/// The uid an owner field stands for: a user name, or a numeric uid.
fn owner_uid(owner: &str, users: &dyn Users) -> Option<u32> {
    users.uid_of(owner).or_else(|| owner.parse().ok())
}

/// Whether a file line is allowed to sit inside the computed span: only
/// when it is exactly its owner's computed range.
fn clash(layout: &Layout, r: &Range, users: &dyn Users) -> bool {
    if !layout.intersects(r.start, r.end()) {
        return false;
    }
    let own = owner_uid(&r.owner, users).and_then(|u| layout.range_of(u));
    own != Some((r.start, r.count))
}

/// Check the layout against the files' ranges.
pub fn check_against_files(layout: &Layout, files: &[(&Path, &[Range])], users: &dyn Users) -> Result<(), String> {
    for (path, ranges) in files {
        if let Some(r) = ranges.iter().find(|r| clash(layout, r, users)) {
            return Err(format!(
                "{} line {} ({}:{}:{}) overlaps the computed subordinate ids {}-{} (subid_base = {}, subid_size = {}, subid_uid_min = {}, subid_uid_max = {}): set subid_base to at least {} or move that range below {}",
                path.display(),
                r.line,
                r.owner,
                r.start,
                r.count,
                layout.base,
                layout.end() - 1,
                layout.base,
                layout.size,
                layout.uid_min,
                layout.uid_max,
                files.iter().flat_map(|(_, rs)| rs.iter()).map(Range::end).max().unwrap_or(0),
                layout.base
            ));
        }
    }
    Ok(())
}

/// Why a lookup has no answer (shadow's `enum subid_status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LookupError {
    UnknownUser,
}

/// What the NSS provider answers from: the files' ranges and, unless
/// refused, the computed layout. Built afresh for every call.
#[derive(Debug)]
pub struct Provider {
    pub layout: Result<Layout, String>,
    pub uids: Vec<Range>,
    pub gids: Vec<Range>,
    /// Malformed file lines (each logged; they are ignored).
    pub warnings: Vec<String>,
}

fn read_small(path: &Path) -> Result<String, String> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

impl Provider {
    /// Files from `paths`, settings from `config` (an error from loading it
    /// refuses the computed ranges; the files are still served).
    pub fn load(config: Result<&Config, &ConfigError>, paths: &Paths, users: &dyn Users) -> Provider {
        let mut warnings = Vec::new();
        let mut read = |path: &Path| match read_small(path) {
            Ok(t) => {
                let (r, w) = parse_file(&t, path);
                warnings.extend(w);
                Ok(r)
            }
            Err(e) => Err(e),
        };
        let uids = read(&paths.subuid);
        let gids = read(&paths.subgid);
        let refused = |what: String| format!("computed subordinate ids refused: {what}");
        let layout = match (config, &uids, &gids) {
            (Err(e), _, _) => Err(refused(e.to_string())),
            (_, Err(e), _) | (_, _, Err(e)) => Err(refused(e.clone())),
            (Ok(c), Ok(u), Ok(g)) => Layout::from_config(c)
                .and_then(|l| check_against_files(&l, &[(&paths.subuid, u), (&paths.subgid, g)], users).map(|()| l))
                .map_err(refused),
        };
        Provider { layout, uids: uids.unwrap_or_default(), gids: gids.unwrap_or_default(), warnings }
    }

    fn file(&self, kind: Kind) -> &[Range] {
        match kind {
            Kind::Uid => &self.uids,
            Kind::Gid => &self.gids,
        }
    }

    /// The ranges of `owner` (a user name, or a uid in digits): its lines
    /// in the file if it has any, else its computed range if it is managed.
    /// Name lookups: one or two per call, never one per file line.
    pub fn ranges(&self, owner: &str, kind: Kind, users: &dyn Users) -> Result<Vec<(u64, u64)>, LookupError> {
        let user = match users.uid_of(owner) {
            Some(uid) => Some((owner.to_string(), uid)),
            None => owner.parse::<u32>().ok().and_then(|uid| users.name_of(uid).map(|n| (n, uid))),
        };
        let listed: Vec<(u64, u64)> = match &user {
            Some((name, uid)) => self.lines_of(kind, name, *uid).map(|r| (r.start, r.count)).collect(),
            None => self.file(kind).iter().filter(|r| r.owner == owner).map(|r| (r.start, r.count)).collect(),
        };
        if !listed.is_empty() {
            return Ok(listed);
        }
        let Some((_, uid)) = user else { return Err(LookupError::UnknownUser) };
        Ok(self.layout.as_ref().ok().and_then(|l| l.range_of(uid)).into_iter().collect())
    }

    /// The file lines of a user, by name or by uid.
    fn lines_of<'a>(&'a self, kind: Kind, name: &'a str, uid: u32) -> impl Iterator<Item = &'a Range> + 'a {
        let digits = uid.to_string();
        self.file(kind).iter().filter(move |r| r.owner == name || r.owner == digits)
    }

    /// Whether `owner` owns all of `start..start+count`.
    pub fn has_range(&self, owner: &str, start: u64, count: u64, kind: Kind, users: &dyn Users) -> bool {
        let Some(end) = start.checked_add(count) else { return false };
        self.ranges(owner, kind, users).is_ok_and(|rs| rs.iter().any(|(s, c)| *s <= start && end <= s + c))
    }

    /// The uids owning `id`: owners of file lines containing it, and the
    /// managed user whose computed range contains it (if that user exists).
    pub fn owners(&self, id: u64, kind: Kind, users: &dyn Users) -> Vec<u32> {
        let mut out: Vec<u32> = self
            .file(kind)
            .iter()
            .filter(|r| r.start <= id && id < r.end())
            .filter_map(|r| owner_uid(&r.owner, users))
            .collect();
        if let Some(uid) = self.layout.as_ref().ok().and_then(|l| l.owner_of(id)) {
            // The computed owner, if that user exists and has no line here.
            if let Some(name) = users.name_of(uid) {
                if self.lines_of(kind, &name, uid).next().is_none() {
                    out.push(uid);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The `subid:` source nsswitch.conf names, read as shadow's `nss_init`
/// does: the first line starting `subid:` (any case), its first word;
/// `None` for no line or `files`.
pub fn nss_source(nsswitch: &str) -> Option<String> {
    let rest = nsswitch.lines().find_map(|l| {
        let (head, rest) = (l.get(..6)?, l.get(6..)?);
        head.eq_ignore_ascii_case("subid:").then_some(rest)
    })?;
    let first = rest.split_whitespace().next()?;
    (first != "files").then(|| first.to_string())
}

/// The subuid ranges shadow's tools get for `name` when `nsswitch` names
/// this provider (`subid: jupyter`); `None` when it does not (the files
/// then are what counts) or the user is unknown.
pub fn provider_uid_ranges(
    config: &Config,
    nsswitch: &Path,
    paths: &Paths,
    name: &str,
    users: &dyn Users,
) -> Option<Vec<(u64, u64)>> {
    let text = std::fs::read_to_string(nsswitch).ok()?;
    if nss_source(&text).as_deref() != Some(PROVIDER_NAME) {
        return None;
    }
    Provider::load(Ok(config), paths, users).ranges(name, Kind::Uid, users).ok()
}

/// The name in `subid: NAME` for this provider (shadow loads
/// `libsubid_NAME.so`).
pub const PROVIDER_NAME: &str = "jupyter";

/// What [`allocate`] did for each file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allocated {
    /// The uid is outside `subid_uid_min`..`subid_uid_max`.
    NotManaged,
    /// Lines appended (file names), empty when both files had one already.
    Appended(Vec<&'static str>),
}

/// The lock protocol of shadow's commonio: `lckpwdf()` (a write lock on
/// `/etc/.pwd.lock`, taken here as an open-file-description lock so that
/// threads of one PAM host exclude each other too; it conflicts with the
/// classic lock glibc takes), then `FILE.lock` made by linking a
/// `FILE.PID` file holding our pid (a lock whose pid is dead is stale and
/// removed). Everything through the directories' fds, never following a
/// symlink. Released on drop, in reverse order.
struct ShadowLock {
    _pwd: File,
    links: Vec<(OwnedFd, OsString)>,
}

/// A non-blocking whole-file write lock on the open file description
/// (`F_OFD_SETLK`): it conflicts with `lckpwdf`'s classic `fcntl` lock in
/// other processes and with other descriptions in this one.
fn ofd_write_lock(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    let lock = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    fcntl(fd, FcntlArg::F_OFD_SETLK(&lock)).map(drop)
}

const LOCK_WAIT: Duration = Duration::from_secs(15);

/// The directory of `path` (opened `O_DIRECTORY`) and the file's name in it.
fn parent_fd(path: &Path) -> Result<(OwnedFd, OsString), String> {
    let name = path.file_name().ok_or_else(|| format!("{} has no file name", path.display()))?.to_owned();
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("/"));
    let fd = nix::fcntl::open(dir, OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| format!("cannot open {}: {}", dir.display(), e.desc()))?;
    Ok((fd, name))
}

fn suffixed(name: &OsStr, suffix: &str) -> OsString {
    let mut s = name.to_owned();
    s.push(suffix);
    s
}

impl ShadowLock {
    fn take(paths: &Paths, files: &[&Path]) -> Result<ShadowLock, String> {
        let (dir, name) = parent_fd(&paths.pwd_lock)?;
        let pwd = openat(
            &dir,
            name.as_os_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map(File::from)
        .map_err(|e| format!("cannot open {}: {}", paths.pwd_lock.display(), e.desc()))?;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match ofd_write_lock(pwd.as_fd()) {
                Ok(()) => break,
                Err(Errno::EAGAIN | Errno::EACCES) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => {
                    return Err(format!(
                        "cannot lock {} (held by another passwd/shadow tool for {} s?): {}",
                        paths.pwd_lock.display(),
                        LOCK_WAIT.as_secs(),
                        e.desc()
                    ));
                }
            }
        }
        let mut lock = ShadowLock { _pwd: pwd, links: Vec::new() };
        for file in files {
            let l = lock_link(file)?;
            lock.links.push(l);
        }
        Ok(lock)
    }
}

impl Drop for ShadowLock {
    fn drop(&mut self) {
        for (dir, name) in self.links.iter().rev() {
            let _ = nix::unistd::unlinkat(dir, name.as_os_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
        }
    }
}

/// `FILE.lock` by shadow's link protocol; returns its directory and name.
fn lock_link(file: &Path) -> Result<(OwnedFd, OsString), String> {
    use nix::unistd::{UnlinkatFlags, linkat, unlinkat};
    let me = std::process::id();
    let (dir, name) = parent_fd(file)?;
    let tmp = suffixed(&name, &format!(".{me}"));
    let lock = suffixed(&name, ".lock");
    let shown = |n: &OsStr| file.with_file_name(n).display().to_string();
    let f = openat(
        &dir,
        tmp.as_os_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| format!("cannot create {}: {}", shown(&tmp), e.desc()))?;
    let mut f = File::from(f);
    let written = f.write_all(format!("{me}\0").as_bytes()).and_then(|()| f.sync_data());
    drop(f);
    let unlink_tmp = || unlinkat(&dir, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
    if let Err(e) = written {
        let _ = unlink_tmp();
        return Err(format!("cannot write {}: {e}", shown(&tmp)));
    }
    let result = (|| {
        for _ in 0..2 {
            match linkat(&dir, tmp.as_os_str(), &dir, lock.as_os_str(), AtFlags::empty()) {
                // As shadow: the link must have made exactly two names.
                Ok(()) => {
                    let st = nix::sys::stat::fstatat(&dir, tmp.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                        .map_err(|e| format!("cannot stat {}: {}", shown(&tmp), e.desc()))?;
                    if st.st_nlink != 2 {
                        let _ = unlinkat(&dir, lock.as_os_str(), UnlinkatFlags::NoRemoveDir);
                        return Err(format!("{}: lock file already used (nlink {})", shown(&tmp), st.st_nlink));
                    }
                    return Ok(());
                }
                Err(Errno::EEXIST) => {}
                Err(e) => return Err(format!("cannot create {}: {}", shown(&lock), e.desc())),
            }
            let mut text = String::new();
            if let Ok(fd) =
                openat(&dir, lock.as_os_str(), OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
            {
                let _ = File::from(fd).take(64).read_to_string(&mut text);
            }
            let holder: Option<i32> = text.trim_end_matches('\0').trim().parse().ok();
            let dead = holder.is_some_and(|p| {
                p > 0 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None) == Err(Errno::ESRCH)
            });
            if !dead {
                return Err(format!(
                    "{} is held by pid {} (a running passwd/shadow tool?); try again, or remove it if no such tool runs",
                    shown(&lock),
                    holder.map_or_else(|| format!("'{text}'"), |p| p.to_string())
                ));
            }
            let _ = unlinkat(&dir, lock.as_os_str(), UnlinkatFlags::NoRemoveDir);
        }
        Err(format!("{} keeps reappearing; try again", shown(&lock)))
    })();
    let _ = unlink_tmp();
    result.map(|()| (dir, lock))
}

/// Append `line` to `path` the way shadow's commonio writes: a new file
/// `PATH+` with the old file's owner and mode, synced, renamed over it.
fn append_line(path: &Path, line: &str) -> Result<(), String> {
    let err = |what: &str, e: &dyn fmt::Display| format!("cannot {what} {}: {e}", path.display());
    let dir_path = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().ok_or_else(|| err("use", &"no file name"))?;
    let dir: OwnedFd =
        nix::fcntl::open(dir_path, OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| err("open the directory of", &e))?;
    let (old, mode, uid, gid) =
        match openat(&dir, name, OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()) {
            Ok(fd) => {
                let st = fstat(&fd).map_err(|e| err("stat", &e))?;
                let mut text = String::new();
                File::from(fd).read_to_string(&mut text).map_err(|e| err("read", &e))?;
                (text, st.st_mode & 0o7777, Some(st.st_uid), Some(st.st_gid))
            }
            Err(Errno::ENOENT) => (String::new(), 0o644, None, None),
            Err(e) => return Err(err("open", &e)),
        };
    let mut new_name = name.to_owned();
    new_name.push("+");
    let _ = nix::unistd::unlinkat(&dir, new_name.as_os_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
    let fd = openat(
        &dir,
        new_name.as_os_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| err("create a new copy of", &e))?;
    let result = (|| {
        nix::unistd::fchown(&fd, uid.map(nix::unistd::Uid::from_raw), gid.map(nix::unistd::Gid::from_raw))
            .map_err(|e| err("chown the new copy of", &e))?;
        nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(mode)).map_err(|e| err("chmod the new copy of", &e))?;
        let mut f = File::from(fd.try_clone().map_err(|e| err("dup", &e))?);
        let mut text = old;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(line);
        f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(|e| err("write the new copy of", &e))?;
        nix::fcntl::renameat(&dir, new_name.as_os_str(), &dir, name).map_err(|e| err("replace", &e))
    })();
    if result.is_err() {
        let _ = nix::unistd::unlinkat(&dir, new_name.as_os_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
    }
    result
}

/// `subids = "allocate"`: give `name` (uid `uid`) its computed range in
/// `/etc/subuid` and `/etc/subgid` where it has no line, under shadow's
/// locks. Idempotent; refuses (naming the line) when the layout overlaps
/// what the files hold.
pub fn allocate(layout: &Layout, paths: &Paths, name: &str, uid: u32, users: &dyn Users) -> Result<Allocated, String> {
    let Some((start, count)) = layout.range_of(uid) else { return Ok(Allocated::NotManaged) };
    let _lock = ShadowLock::take(paths, &[&paths.subuid, &paths.subgid])?;
    let mut read = Vec::new();
    for kind in [Kind::Uid, Kind::Gid] {
        let path = paths.file(kind);
        let (ranges, _) = parse_file(&read_small(path)?, path);
        read.push((kind, ranges));
    }
    let files: Vec<(&Path, &[Range])> = read.iter().map(|(k, r)| (paths.file(*k), r.as_slice())).collect();
    check_against_files(layout, &files, users)?;
    let mut appended = Vec::new();
    for (kind, ranges) in &read {
        let mine = ranges.iter().any(|r| r.owner == name || r.owner == uid.to_string());
        if !mine {
            append_line(paths.file(*kind), &format!("{name}:{start}:{count}\n"))?;
            appended.push(kind.file_name());
        }
    }
    Ok(Allocated::Appended(appended))
}

/// [`allocate`] for a session's user with the config's layout and the real
/// files; `Ok(Some(note))` when lines were written.
pub fn allocate_for_session(config: &Config, name: &str, uid: u32) -> Result<Option<String>, String> {
    let layout = Layout::from_config(config)?;
    match allocate(&layout, &Paths::default(), name, uid, &Nss)? {
        Allocated::Appended(files) if !files.is_empty() => {
            let (s, c) = layout.range_of(uid).unwrap_or_default();
            Ok(Some(format!("subids: appended {name}:{s}:{c} to /etc/{}", files.join(" and /etc/"))))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Table(HashMap<String, u32>);
    impl Users for Table {
        fn uid_of(&self, name: &str) -> Option<u32> {
            self.0.get(name).copied()
        }
        fn name_of(&self, uid: u32) -> Option<String> {
            self.0.iter().find(|(_, u)| **u == uid).map(|(n, _)| n.clone())
        }
    }
    fn users(list: &[(&str, u32)]) -> Table {
        Table(list.iter().map(|(n, u)| (n.to_string(), *u)).collect())
    }

    fn layout() -> Layout {
        Layout::new(1_000_000_000, 65536, 1000, 50000).unwrap()
    }

    /// 10,000 managed uids: every computed range is inside the layout,
    /// above every managed uid, below 2^32 - 1, and no two overlap; owner_of
    /// inverts range_of at both ends of each range.
    #[test]
    fn ten_thousand_uids_get_disjoint_ranges() {
        for l in [layout(), Layout::new(4_294_967_295 - 10_000 * 7 - 1, 7, 70_000, 79_999).unwrap()] {
            let first = l.uid_min;
            let mut ranges: Vec<(u64, u64, u32)> = (first..first + 10_000)
                .map(|u| {
                    let (s, c) = l.range_of(u).unwrap();
                    (s, s + c, u)
                })
                .collect();
            ranges.sort();
            for w in ranges.windows(2) {
                assert!(w[0].1 <= w[1].0, "{:?} overlaps {:?}", w[0], w[1]);
            }
            for (s, e, u) in &ranges {
                assert!(*s > l.uid_max as u64 && *e - 1 <= LAST_ID, "uid {u}: {s}..{e}");
                assert_eq!(l.owner_of(*s), Some(*u));
                assert_eq!(l.owner_of(*e - 1), Some(*u));
            }
        }
    }

    #[test]
    fn layouts_that_overflow_or_touch_uids_are_refused() {
        let e = Layout::new(1_000_000_000, 65536, 1000, 60000).unwrap_err();
        assert!(e.contains("passes the last id") && e.contains("subid_size to at most"), "{e}");
        assert!(Layout::new(4_294_967_295, 1, 5, 5).is_err(), "2^32 - 1 is not an id");
        assert!(Layout::new(4_294_967_294, 1, 5, 5).is_ok());
        let e = Layout::new(50000, 65536, 1000, 60000).unwrap_err();
        assert!(e.contains("contain real uids"), "{e}");
        assert!(Layout::new(1_000_000, 0, 1000, 1000).is_err());
        assert!(Layout::new(1_000_000, 1, 2000, 1000).is_err());
        // The largest uid: u32::MAX - 1 managed needs a base above it.
        assert!(Layout::new(u32::MAX as u64, 1, u32::MAX - 1, u32::MAX - 1).is_err());
    }

    #[test]
    fn config_keys_are_parsed_and_bad_values_named() {
        use crate::config::SubidMode;
        let file = |t: &str| Config::from_toml(t, Path::new("/etc/security/jupyter-session.toml"));
        let c = file("subids = \"allocate\"\nsubid_base = 2000000000\nsubid_size = 4096\nsubid_uid_min = 5000\nsubid_uid_max = 9000\n")
            .unwrap();
        assert_eq!(c.subids, SubidMode::Allocate);
        assert_eq!(
            Layout::from_config(&c),
            Ok(Layout { base: 2_000_000_000, size: 4096, uid_min: 5000, uid_max: 9000 })
        );
        assert_eq!(Config::default().subids, SubidMode::Off, "off by default");
        assert!(Layout::from_config(&Config::default()).is_ok(), "the defaults are a valid layout");
        for bad in [
            "subids = \"sometimes\"",
            "subids = true",
            "subid_size = 0",
            "subid_base = -1",
            "subid_base = 4294967296",
            "subid_uid_max = 4294967295",
            "subid_uid_min = \"1000\"",
        ] {
            let e = file(bad).unwrap_err().to_string();
            let key = bad.split(' ').next().unwrap();
            assert!(e.contains(&format!("'{key}'")) && e.contains("line 1"), "{bad}: {e}");
        }
    }

    #[test]
    fn uids_outside_the_managed_range_get_nothing() {
        let l = layout();
        assert_eq!(l.range_of(999), None);
        assert_eq!(l.range_of(50001), None);
        assert_eq!(l.range_of(u32::MAX - 1), None);
        assert_eq!(l.owner_of(999_999_999), None);
        assert_eq!(l.owner_of(l.end()), None);
        assert_eq!(l.range_of(1000), Some((1_000_000_000, 65536)));
    }

    #[test]
    fn malformed_lines_are_named_and_ignored() {
        let (r, w) =
            parse_file("a:100000:65536\n\nb:1:x\nc:1\n:5:5\nd:4294967295:1\ne:5:0\n", Path::new("/etc/subuid"));
        assert_eq!(r.len(), 1);
        assert_eq!(w.len(), 5, "{w:?}");
        assert!(w[0].contains("/etc/subuid line 3") && w[0].contains("'b:1:x'"), "{}", w[0]);
    }

    #[test]
    fn files_overlapping_the_layout_refuse_it_except_own_computed_lines() {
        let l = layout();
        let u = users(&[("alice", 1000), ("bob", 1001)]);
        let p = Path::new("/etc/subuid");
        let ok = parse_file("x:100000:65536\nalice:1000000000:65536\n1001:1000065536:65536\n", p).0;
        assert_eq!(check_against_files(&l, &[(p, &ok)], &u), Ok(()));
        let bad = parse_file("x:100000:65536\nbob:1000000000:65536\n", p).0;
        let e = check_against_files(&l, &[(p, &bad)], &u).unwrap_err();
        assert!(e.contains("/etc/subuid line 2 (bob:1000000000:65536) overlaps"), "{e}");
        let bad = parse_file("x:999999999:2\n", p).0;
        assert!(check_against_files(&l, &[(p, &bad)], &u).is_err());
    }

    fn provider(uid_text: &str, gid_text: &str, u: &Table) -> Provider {
        let (uids, _) = parse_file(uid_text, Path::new("/etc/subuid"));
        let (gids, _) = parse_file(gid_text, Path::new("/etc/subgid"));
        let l = layout();
        let layout =
            check_against_files(&l, &[(Path::new("/etc/subuid"), &uids), (Path::new("/etc/subgid"), &gids)], u)
                .map(|()| l);
        Provider { layout, uids, gids, warnings: vec![] }
    }

    #[test]
    fn listed_users_keep_their_lines_others_get_computed_ranges() {
        let u = users(&[("listed", 1005), ("dir", 1007), ("old", 70000)]);
        let p = provider("listed:100000:65536\n", "listed:100000:65536\n", &u);
        assert_eq!(p.ranges("listed", Kind::Uid, &u), Ok(vec![(100000, 65536)]));
        assert_eq!(p.ranges("dir", Kind::Uid, &u), Ok(vec![(1_000_000_000 + 7 * 65536, 65536)]));
        assert_eq!(p.ranges("dir", Kind::Gid, &u), Ok(vec![(1_000_000_000 + 7 * 65536, 65536)]));
        assert_eq!(p.ranges("1007", Kind::Uid, &u), Ok(vec![(1_000_000_000 + 7 * 65536, 65536)]));
        assert_eq!(p.ranges("old", Kind::Uid, &u), Ok(vec![]), "unmanaged uid");
        assert_eq!(p.ranges("nobody-here", Kind::Uid, &u), Err(LookupError::UnknownUser));
        assert!(p.has_range("dir", 1_000_000_000 + 7 * 65536 + 1, 65535, Kind::Uid, &u));
        assert!(!p.has_range("dir", 1_000_000_000 + 7 * 65536 + 1, 65536, Kind::Uid, &u));
        assert!(!p.has_range("dir", 100000, 1, Kind::Uid, &u));
        assert!(p.has_range("listed", 100000, 65536, Kind::Uid, &u));
        assert!(!p.has_range("listed", 1_000_000_000 + 5 * 65536, 1, Kind::Uid, &u), "listed: no computed");
        assert_eq!(p.owners(1_000_000_000 + 7 * 65536 + 65535, Kind::Uid, &u), vec![1007]);
        assert_eq!(p.owners(100001, Kind::Gid, &u), vec![1005]);
        assert_eq!(p.owners(1_000_000_000 + 5 * 65536, Kind::Uid, &u), Vec::<u32>::new(), "listed elsewhere");
        assert_eq!(p.owners(1_000_000_000 + 6 * 65536, Kind::Uid, &u), Vec::<u32>::new(), "no such user");
        assert_eq!(p.owners(99, Kind::Uid, &u), Vec::<u32>::new());
    }

    #[test]
    fn a_refused_layout_still_serves_the_files() {
        let u = users(&[("listed", 1005), ("dir", 1007)]);
        let p = provider("listed:1000000000:10\n", "", &u);
        assert!(p.layout.is_err());
        assert_eq!(p.ranges("listed", Kind::Uid, &u), Ok(vec![(1_000_000_000, 10)]));
        assert_eq!(p.ranges("dir", Kind::Uid, &u), Ok(vec![]));
    }

    #[test]
    fn provider_ranges_only_when_nsswitch_names_it() {
        assert_eq!(nss_source("passwd: files\nsubid:   jupyter sss\n").as_deref(), Some("jupyter"));
        assert_eq!(nss_source("SUBID: files\n"), None);
        assert_eq!(nss_source("#subid: jupyter\n"), None);
        assert_eq!(nss_source("é€x\nsubid:\n"), None, "no panic on a non-ASCII line, none for an empty source");
        let dir = std::env::temp_dir().join(format!("js-subid-nss-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let paths = Paths { subuid: dir.join("subuid"), subgid: dir.join("subgid"), pwd_lock: dir.join("l") };
        std::fs::write(&paths.subuid, "listed:100000:65536\n").unwrap();
        let nss = dir.join("nsswitch.conf");
        let u = users(&[("dir", 1007), ("listed", 1001)]);
        let c = Config::default();
        std::fs::write(&nss, "passwd: files\n").unwrap();
        assert_eq!(provider_uid_ranges(&c, &nss, &paths, "dir", &u), None);
        std::fs::write(&nss, "subid: jupyter\n").unwrap();
        assert_eq!(provider_uid_ranges(&c, &nss, &paths, "dir", &u), Some(vec![(1_000_000_000 + 7 * 65536, 65536)]));
        assert_eq!(provider_uid_ranges(&c, &nss, &paths, "listed", &u), Some(vec![(100000, 65536)]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn allocation_appends_once_under_the_locks() {
        let dir = std::env::temp_dir().join(format!("js-subid-alloc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let paths = Paths { subuid: dir.join("subuid"), subgid: dir.join("subgid"), pwd_lock: dir.join(".pwd.lock") };
        std::fs::write(&paths.subuid, "x:100000:65536").unwrap();
        let u = users(&[("dir", 1007), ("x", 1001)]);
        let l = layout();
        assert_eq!(allocate(&l, &paths, "dir", 1007, &u), Ok(Allocated::Appended(vec!["subuid", "subgid"])));
        assert_eq!(allocate(&l, &paths, "dir", 1007, &u), Ok(Allocated::Appended(vec![])));
        assert_eq!(allocate(&l, &paths, "big", 90000, &u), Ok(Allocated::NotManaged));
        let want = format!("dir:{}:65536\n", 1_000_000_000u64 + 7 * 65536);
        assert_eq!(std::fs::read_to_string(&paths.subuid).unwrap(), format!("x:100000:65536\n{want}"));
        assert_eq!(std::fs::read_to_string(&paths.subgid).unwrap(), want);
        assert!(!dir.join("subuid.lock").exists() && !dir.join("subuid+").exists());
        // A live holder of subuid.lock (our own pid) blocks, naming it.
        std::fs::write(dir.join("subuid.lock"), format!("{}\0", std::process::id())).unwrap();
        let e = allocate(&l, &paths, "x", 1001, &u).unwrap_err();
        assert!(e.contains("subuid.lock is held by pid"), "{e}");
        // A stale one (a dead pid) is taken over.
        std::fs::write(dir.join("subuid.lock"), "999999999\0").unwrap();
        assert!(allocate(&l, &paths, "x", 1001, &u).is_ok());
        // A line overlapping the layout refuses allocation.
        std::fs::write(&paths.subgid, "y:1000000001:5\n").unwrap();
        let u = users(&[("dir", 1007), ("x", 1001), ("z", 1009)]);
        let e = allocate(&l, &paths, "z", 1009, &u).unwrap_err();
        assert!(e.contains("subgid line 1 (y:1000000001:5) overlaps"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
