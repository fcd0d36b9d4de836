//! `libsubid_jupyter.so`: the subid NSS provider shadow (≥ 4.9) loads for
//! `subid: jupyter` in `/etc/nsswitch.conf` — in the setuid newuidmap and
//! newgidmap, in getsubids, and in podman through libsubid.
//!
//! Every call reads the root-owned config (session-lib's trust rules, no
//! environment variables) and `/etc/subuid`/`/etc/subgid` afresh and answers
//! from [`session_lib::subid::Provider`]: users listed in the files keep
//! their lines; other managed users get their computed range. A layout that
//! is refused (overflow, overlap with the files, untrusted config) is logged
//! to syslog (LOG_AUTHPRIV) at every call, and only the files are served.
//! The C entry points, each guarded against panics, are in [`ffi`].
#![deny(unsafe_code)]

mod ffi;

use session_lib::config::Config;
use session_lib::subid::{Kind, LookupError, Nss, Paths, Provider};

/// shadow's `enum subid_status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Success = 0,
    UnknownUser = 1,
    Error = 3,
}

/// shadow's `enum subid_type`: `ID_TYPE_UID = 1`, `ID_TYPE_GID = 2`.
pub fn kind(raw: i32) -> Option<Kind> {
    match raw {
        1 => Some(Kind::Uid),
        2 => Some(Kind::Gid),
        _ => None,
    }
}

fn provider() -> Provider {
    let config = Config::load(None);
    let p = Provider::load(config.as_ref(), &Paths::default(), &Nss);
    for w in &p.warnings {
        ffi::log(libc::LOG_WARNING, w);
    }
    if let Err(e) = &p.layout {
        ffi::log(libc::LOG_ERR, e);
    }
    p
}

/// `shadow_subid_list_owner_ranges`.
pub fn list_owner_ranges(owner: &str, kind: Kind) -> Result<Vec<(u64, u64)>, Status> {
    provider().ranges(owner, kind, &Nss).map_err(|LookupError::UnknownUser| Status::UnknownUser)
}

/// `shadow_subid_has_range`.
pub fn has_range(owner: &str, start: u64, count: u64, kind: Kind) -> bool {
    provider().has_range(owner, start, count, kind, &Nss)
}

/// `shadow_subid_has_any_range` (newer shadow; not called by 4.13).
pub fn has_any_range(owner: &str, kind: Kind) -> Result<bool, Status> {
    list_owner_ranges(owner, kind).map(|r| !r.is_empty())
}

/// `shadow_subid_find_subid_owners`.
pub fn find_subid_owners(id: u64, kind: Kind) -> Vec<u32> {
    provider().owners(id, kind, &Nss)
}
