//! Before the fork: the checks that need no PAM, then the PAM open
//! sequence in su's order — pam_start, items, pam_acct_mgmt, initgroups,
//! pam_setcred(ESTABLISH), pam_open_session — and the groups it left.
#![forbid(unsafe_code)]

use std::ffi::CString;
use std::path::{Path, PathBuf};

use nix::unistd::Gid;

use super::KeeperOptions;
use super::error::KeeperError;
use crate::pam::{PamContext, StringItem};
use crate::user::UserInfo;

/// Whether `name` can be a PAM service name (a file in /etc/pam.d).
pub fn valid_service(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@' | b'+'))
}

/// The file libpam will read for `service`: /etc/pam.d/NAME, or the vendor
/// directory /usr/lib/pam.d/NAME of newer distributions. Err names the
/// /etc path.
pub fn service_file(service: &str) -> Result<PathBuf, KeeperError> {
    if !valid_service(service) {
        return Err(KeeperError::BadService(service.to_string()));
    }
    let etc = Path::new("/etc/pam.d").join(service);
    if etc.is_file() {
        return Ok(etc);
    }
    let vendor = Path::new("/usr/lib/pam.d").join(service);
    if vendor.is_file() {
        return Ok(vendor);
    }
    Err(KeeperError::MissingService { service: service.to_string(), path: etc })
}

/// Everything decided before PAM runs.
pub(super) fn prepare(opts: &KeeperOptions) -> Result<UserInfo, KeeperError> {
    let euid = nix::unistd::geteuid();
    if !euid.is_root() {
        return Err(KeeperError::NotRoot { euid: euid.as_raw() });
    }
    if opts.command.is_empty() {
        return Err(KeeperError::NoCommand);
    }
    service_file(&opts.service)?;
    let user = UserInfo::by_name(&opts.user).map_err(KeeperError::User)?;
    if let Err(why) = opts.config.manages(&user) {
        return Err(KeeperError::NotManaged {
            user: user.name,
            uid: user.uid,
            why,
            config_file: opts.config_file.clone(),
        });
    }
    Ok(user)
}

/// An open PAM session and the supplementary groups the keeper process
/// has after it (initgroups plus what pam_setcred added, e.g. pam_group):
/// the child keeps exactly these.
pub(super) struct OpenSession {
    pub pam: PamContext,
    pub groups: Vec<u32>,
    /// What pam_jupyter must echo back (see [`crate::agreement`]).
    pub nonce: String,
    pub service_file: PathBuf,
}

/// Open the PAM session: start, items, account, groups, credentials,
/// session.
pub(super) fn open(opts: &KeeperOptions, user: &UserInfo) -> Result<OpenSession, KeeperError> {
    let mut pam = PamContext::start(&opts.service, &opts.user).map_err(KeeperError::Pam)?;
    let ruser = UserInfo::by_uid(nix::unistd::getuid().as_raw()).map(|u| u.name).unwrap_or_else(|_| "root".into());
    pam.set_item(StringItem::Ruser, &ruser).map_err(KeeperError::Pam)?;
    if std::io::IsTerminal::is_terminal(&std::io::stdin())
        && let Ok(tty) = std::fs::read_link("/proc/self/fd/0")
    {
        pam.set_item(StringItem::Tty, &tty.to_string_lossy()).map_err(KeeperError::Pam)?;
    }
    pam.acct_mgmt()
        .map_err(|e| if e.account_refused() { KeeperError::AccountRefused(e) } else { KeeperError::Pam(e) })?;
    // As util-linux su: the user's groups in this (root) process before
    // pam_setcred, so that what modules add there (pam_group) is kept and
    // inherited by the child, which only changes gid and uid.
    let name = CString::new(user.name.as_bytes())
        .map_err(|_| KeeperError::Setup { what: "initgroups".into(), reason: "the user name has a NUL byte".into() })?;
    nix::unistd::initgroups(&name, Gid::from_raw(user.gid))
        .map_err(|errno| KeeperError::Groups { user: user.name.clone(), errno })?;
    pam.establish_cred().map_err(KeeperError::Pam)?;
    let nonce = crate::agreement::new_nonce()
        .map_err(|e| KeeperError::Setup { what: "reading /dev/urandom".into(), reason: e.to_string() })?;
    pam.putenv(crate::agreement::KEEPER_VAR, &nonce).map_err(KeeperError::Pam)?;
    pam.open_session().map_err(KeeperError::Pam)?;
    let groups = nix::unistd::getgroups()
        .map_err(|e| KeeperError::Setup { what: "getgroups after pam_setcred".into(), reason: e.desc().into() })?
        .into_iter()
        .map(Gid::as_raw)
        .collect();
    let service_file = service_file(&opts.service)?;
    Ok(OpenSession { pam, groups, nonce, service_file })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keeper::error::EXIT_KEEPER_FAILED;

    #[test]
    fn service_names_and_files() {
        assert!(valid_service("jupyterhub") && valid_service("js-test_1.x"));
        for bad in ["", "..", "a/b", "../passwd", "a b"] {
            assert!(!valid_service(bad), "{bad}");
        }
        let err = service_file("no-such-service-js").unwrap_err();
        assert!(err.to_string().contains("/etc/pam.d/no-such-service-js"), "{err}");
        assert_eq!(err.exit_code(), EXIT_KEEPER_FAILED);
    }
}
