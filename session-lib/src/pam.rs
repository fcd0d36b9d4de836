//! A minimal PAM *client*: start a handle for a service and user, check the
//! account, establish credentials, open a session, read the PAM environment,
//! and close everything in the right order — also when dropped early.
//!
//! No authentication and no prompts: the conversation refuses every prompt
//! (a keeper has nobody to ask) and shows module messages through a sink
//! (stderr by default).
//!
//! ```no_run
//! use session_lib::pam::{PamContext, StringItem};
//! let mut pam = PamContext::start("jupyterhub", "alice")?;
//! pam.set_item(StringItem::Ruser, "root")?;
//! pam.acct_mgmt()?;
//! pam.establish_cred()?;
//! pam.open_session()?;
//! let env = pam.env()?;
//! // ... run the user's process ...
//! pam.close_session()?;
//! pam.delete_cred()?;
//! pam.end();
//! # Ok::<(), session_lib::pam::PamError>(())
//! ```
#![forbid(unsafe_code)]

use std::ffi::c_int;
use std::fmt;

use crate::ffi::pam as sys;
pub use crate::ffi::pam::{MessageKind, MessageSink, StringItem};
use crate::pam_codes as codes;

/// The PAM call that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PamStep {
    Start,
    SetItem(&'static str),
    AcctMgmt,
    EstablishCred,
    DeleteCred,
    OpenSession,
    CloseSession,
    GetEnvList,
    PutEnv,
}

impl fmt::Display for PamStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PamStep::Start => f.write_str("pam_start"),
            PamStep::SetItem(item) => write!(f, "pam_set_item({item})"),
            PamStep::AcctMgmt => f.write_str("pam_acct_mgmt (account check)"),
            PamStep::EstablishCred => f.write_str("pam_setcred(PAM_ESTABLISH_CRED)"),
            PamStep::DeleteCred => f.write_str("pam_setcred(PAM_DELETE_CRED)"),
            PamStep::OpenSession => f.write_str("pam_open_session"),
            PamStep::CloseSession => f.write_str("pam_close_session"),
            PamStep::GetEnvList => f.write_str("pam_getenvlist"),
            PamStep::PutEnv => f.write_str("pam_putenv"),
        }
    }
}

/// A failed PAM call: which step, libpam's code and its `pam_strerror`
/// text, for which service and user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PamError {
    pub step: PamStep,
    pub code: c_int,
    pub text: String,
    pub service: String,
    pub user: String,
}

impl PamError {
    /// The account itself was refused (expired, locked, not allowed here):
    /// not a fault of the system or the PAM configuration.
    pub fn account_refused(&self) -> bool {
        self.step == PamStep::AcctMgmt
            && matches!(
                self.code,
                codes::PAM_ACCT_EXPIRED
                    | codes::PAM_NEW_AUTHTOK_REQD
                    | codes::PAM_PERM_DENIED
                    | codes::PAM_AUTH_ERR
                    | codes::PAM_USER_UNKNOWN
            )
    }

    fn hint(&self) -> String {
        let (svc, user) = (&self.service, &self.user);
        match (self.step, self.code) {
            (PamStep::AcctMgmt, codes::PAM_ACCT_EXPIRED) => {
                format!(
                    "the account '{user}' has expired; see `chage -l {user}` (e.g. `chage -E -1 {user}` to lift it)"
                )
            }
            (PamStep::AcctMgmt, codes::PAM_NEW_AUTHTOK_REQD) => {
                format!("the password of '{user}' has expired and must be changed first (`chage -l {user}`)")
            }
            (PamStep::AcctMgmt, codes::PAM_PERM_DENIED | codes::PAM_AUTH_ERR) => format!(
                "the account stack of /etc/pam.d/{svc} refuses '{user}' (locked with `passwd -l`, pam_access, \
                 pam_nologin, pam_deny...); see the messages above and the auth log"
            ),
            (_, codes::PAM_USER_UNKNOWN) => {
                format!("PAM does not know the user '{user}' (check `getent passwd {user}`)")
            }
            (_, codes::PAM_OPEN_ERR | codes::PAM_SYMBOL_ERR) => {
                format!("a module in /etc/pam.d/{svc} could not be loaded; check the module paths (and the auth log)")
            }
            (PamStep::Start, _) => format!("cannot start PAM for service '{svc}'; check /etc/pam.d/{svc}"),
            (PamStep::OpenSession | PamStep::CloseSession, _) => {
                format!("a session module in /etc/pam.d/{svc} failed; see the messages above and the auth log (syslog)")
            }
            (PamStep::EstablishCred | PamStep::DeleteCred, _) => {
                format!("an auth module's setcred in /etc/pam.d/{svc} failed; see the auth log (syslog)")
            }
            _ => format!("see the auth log (syslog) and /etc/pam.d/{svc}"),
        }
    }
}

impl fmt::Display for PamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PAM {} failed for user '{}' (service '{}'): {} (PAM code {}); {}",
            self.step,
            self.user,
            self.service,
            self.text,
            self.code,
            self.hint()
        )
    }
}

impl std::error::Error for PamError {}

/// One PAM handle for one user and service. Dropping it closes the session
/// if it is open, deletes credentials if they were established, and ends
/// the handle with the last status.
pub struct PamContext {
    handle: Option<sys::Handle>,
    service: String,
    user: String,
    flags: c_int,
    session_open: bool,
    cred_established: bool,
}

impl PamContext {
    /// `pam_start(service, user)` with messages going to stderr.
    pub fn start(service: &str, user: &str) -> Result<PamContext, PamError> {
        Self::start_with(service, user, sys::stderr_sink())
    }

    /// `pam_start(service, user)`; module messages (PAM_ERROR_MSG,
    /// PAM_TEXT_INFO) go to `sink`.
    pub fn start_with(service: &str, user: &str, sink: MessageSink) -> Result<PamContext, PamError> {
        let err = |code, text: String| PamError {
            step: PamStep::Start,
            code,
            text,
            service: service.to_string(),
            user: user.to_string(),
        };
        let c_service =
            sys::c_string(service).ok_or_else(|| err(codes::PAM_BUF_ERR, "service name contains a NUL byte".into()))?;
        let c_user =
            sys::c_string(user).ok_or_else(|| err(codes::PAM_BUF_ERR, "user name contains a NUL byte".into()))?;
        let handle = sys::Handle::start(&c_service, &c_user, sink).map_err(|code| err(code, sys::strerror(code)))?;
        Ok(PamContext {
            handle: Some(handle),
            service: service.to_string(),
            user: user.to_string(),
            flags: 0,
            session_open: false,
            cred_established: false,
        })
    }

    /// Pass PAM_SILENT to every later call (modules print nothing).
    pub fn set_silent(&mut self, silent: bool) {
        self.flags = if silent { codes::PAM_SILENT } else { 0 };
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn session_open(&self) -> bool {
        self.session_open
    }

    fn handle(&mut self) -> &mut sys::Handle {
        self.handle.as_mut().expect("PamContext used after end()")
    }

    fn check(&mut self, step: PamStep, rc: Result<(), c_int>) -> Result<(), PamError> {
        rc.map_err(|code| {
            let text = self.handle().strerror(code);
            PamError { step, code, text, service: self.service.clone(), user: self.user.clone() }
        })
    }

    /// `pam_set_item` for a string-valued item (PAM_RUSER: the user asking
    /// for the session; PAM_TTY: e.g. `/dev/pts/3`; PAM_RHOST).
    pub fn set_item(&mut self, item: StringItem, value: &str) -> Result<(), PamError> {
        let step = PamStep::SetItem(item.name());
        let Some(value) = sys::c_string(value) else {
            return self.check(step, Err(codes::PAM_BUF_ERR));
        };
        let rc = self.handle().set_string_item(item, &value);
        self.check(step, rc)
    }

    /// `pam_acct_mgmt`: is the account allowed in now (not expired, locked,
    /// or refused by pam_access/pam_nologin...)?
    pub fn acct_mgmt(&mut self) -> Result<(), PamError> {
        let flags = self.flags;
        let rc = self.handle().acct_mgmt(flags);
        self.check(PamStep::AcctMgmt, rc)
    }

    /// `pam_setcred(PAM_ESTABLISH_CRED)`; undone by `delete_cred` or drop.
    pub fn establish_cred(&mut self) -> Result<(), PamError> {
        let flags = self.flags | codes::PAM_ESTABLISH_CRED;
        let rc = self.handle().setcred(flags);
        self.check(PamStep::EstablishCred, rc)?;
        self.cred_established = true;
        Ok(())
    }

    /// `pam_setcred(PAM_DELETE_CRED)`, if established.
    pub fn delete_cred(&mut self) -> Result<(), PamError> {
        if !self.cred_established {
            return Ok(());
        }
        self.cred_established = false;
        let flags = self.flags | codes::PAM_DELETE_CRED;
        let rc = self.handle().setcred(flags);
        self.check(PamStep::DeleteCred, rc)
    }

    /// `pam_open_session`; closed by `close_session` or drop.
    ///
    /// When it fails, modules earlier in the stack may already have opened
    /// their part (a runtime dir, a session record) and libpam does not
    /// undo them; so a failed open is followed by a best-effort
    /// `pam_close_session` on the same handle (modules must tolerate a
    /// close without a full open, and Linux-PAM's do). The error returned
    /// is the open's, and `pam_end` still gets the open's status.
    pub fn open_session(&mut self) -> Result<(), PamError> {
        let flags = self.flags;
        let rc = self.handle().open_session(flags);
        if let Err(code) = rc {
            let err = self.check(PamStep::OpenSession, Err(code));
            let _ = self.handle().close_session(flags | codes::PAM_SILENT);
            self.handle().set_last_status(code);
            return err;
        }
        self.session_open = true;
        Ok(())
    }

    /// `pam_close_session`, if open.
    pub fn close_session(&mut self) -> Result<(), PamError> {
        if !self.session_open {
            return Ok(());
        }
        self.session_open = false;
        let flags = self.flags;
        let rc = self.handle().close_session(flags);
        self.check(PamStep::CloseSession, rc)
    }

    /// `pam_putenv("NAME=value")`.
    pub fn putenv(&mut self, name: &str, value: &str) -> Result<(), PamError> {
        let Some(pair) = sys::c_string(&format!("{name}={value}")) else {
            return self.check(PamStep::PutEnv, Err(codes::PAM_BUF_ERR));
        };
        let rc = self.handle().putenv(&pair);
        self.check(PamStep::PutEnv, rc)
    }

    /// The PAM environment (`pam_getenvlist`) as (name, value) pairs, in
    /// libpam's order. Entries that are not UTF-8 are converted lossily.
    pub fn env(&mut self) -> Result<Vec<(String, String)>, PamError> {
        let raw = match self.handle().getenvlist() {
            Ok(raw) => raw,
            Err(code) => return self.check(PamStep::GetEnvList, Err(code)).map(|()| Vec::new()),
        };
        Ok(raw
            .iter()
            .filter_map(|kv| {
                let kv = String::from_utf8_lossy(kv);
                kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect())
    }

    /// Close what is open, then `pam_end` with the last status. Errors of
    /// the closing steps are returned (the handle is ended regardless).
    pub fn end(mut self) -> Result<(), PamError> {
        let closed = self.close_session();
        let deleted = self.delete_cred();
        if let Some(h) = self.handle.take() {
            h.end(None);
        }
        closed.and(deleted)
    }
}

impl Drop for PamContext {
    fn drop(&mut self) {
        if self.handle.is_none() {
            return;
        }
        let _ = self.close_session();
        let _ = self.delete_cred();
        if let Some(h) = self.handle.take() {
            h.end(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_step_user_service_and_hint() {
        let e = PamError {
            step: PamStep::AcctMgmt,
            code: codes::PAM_ACCT_EXPIRED,
            text: sys::strerror(codes::PAM_ACCT_EXPIRED),
            service: "jupyterhub".into(),
            user: "alice".into(),
        };
        let msg = e.to_string();
        assert!(msg.contains("pam_acct_mgmt") && msg.contains("'alice'") && msg.contains("'jupyterhub'"), "{msg}");
        assert!(msg.contains("chage -l alice"), "{msg}");
        assert!(e.account_refused());
    }
}
