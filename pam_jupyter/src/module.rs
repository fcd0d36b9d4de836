//! The hooks' logic: parse arguments, build a [`PamHost`] over the handle,
//! and map session-lib's outcomes to PAM codes. Stateless: config and user
//! are re-read in every hook; the only thing carried from open to close is
//! the registry key, on the handle itself (`pam_set_data`).
#![forbid(unsafe_code)]

use std::ffi::CStr;
use std::path::{Path, PathBuf};

use pam::constants::{PamFlag, PamResultCode};
use pam::items::Service;
use pam::module::{PamHandle, PamHooks};
use session_lib::agreement::{self, Outcome};
use session_lib::config::{Config, ModuleArgs};
use session_lib::session::{self, CloseOutcome, LogLevel, OpenOutcome, PamHost, Sessions};

use crate::ffi;

/// Name of our `pam_set_data` slot.
const KEY_DATA: &str = "pam_jupyter_session_key";

pub struct Module;

/// A PAM handle seen through the [`PamHost`] trait.
struct Host<'a> {
    pamh: &'a mut PamHandle,
}

fn priority(level: LogLevel) -> libc::c_int {
    match level {
        LogLevel::Error => libc::LOG_ERR,
        LogLevel::Warning => libc::LOG_WARNING,
        LogLevel::Info => libc::LOG_INFO,
        LogLevel::Debug => libc::LOG_DEBUG,
    }
}

impl PamHost for Host<'_> {
    fn user(&mut self) -> Result<String, String> {
        self.pamh.get_user(None).map_err(|rc| format!("pam_get_user failed ({rc:?})"))
    }

    fn service(&self) -> String {
        match self.pamh.get_item::<Service>() {
            Ok(Some(s)) => String::from_utf8_lossy(s.0.to_bytes()).into_owned(),
            _ => String::from("unknown"),
        }
    }

    fn putenv(&mut self, name: &str, value: &str) -> Result<(), String> {
        ffi::putenv(self.pamh, name, value).map_err(|rc| format!("pam_putenv returned {rc}"))
    }

    fn log(&self, level: LogLevel, message: &str) {
        ffi::syslog(self.pamh, priority(level), message);
    }

    fn remember_key(&mut self, key: &str) {
        let _ = self.pamh.set_data(KEY_DATA, Box::new(key.to_string()));
    }

    fn recalled_key(&self) -> Option<String> {
        ffi::recall_key(self.pamh, KEY_DATA)
    }
}

fn args_as_strings(args: &[&CStr]) -> Result<Vec<String>, String> {
    args.iter()
        .map(|a| a.to_str().map(str::to_string).map_err(|_| format!("module argument {a:?} is not UTF-8")))
        .collect()
}

/// Config from the module arguments, and the file it names (or the
/// default file); a bad one is logged and fails the hook.
fn load_config(pamh: &PamHandle, args: &[&CStr]) -> Option<(Config, PathBuf)> {
    let loaded = args_as_strings(args).and_then(|a| {
        let file = ModuleArgs::parse(&a).map(|m| agreement::config_file(m.config.as_deref()));
        Config::from_module_args(&a).and_then(|c| file.map(|f| (c, f))).map_err(|e| e.to_string())
    });
    match loaded {
        Ok(loaded) => Some(loaded),
        Err(e) => {
            ffi::syslog(pamh, libc::LOG_ERR, &format!("configuration error, session refused: {e}"));
            None
        }
    }
}

/// Under `jupyter-session exec` (its nonce in the PAM environment), tell
/// the keeper which configuration this ran with and what it did (see
/// session_lib::agreement). Other PAM hosts get nothing.
fn report_to_keeper(pamh: &mut PamHandle, outcome: Outcome, config: &Config, file: &Path) {
    let Some(nonce) = ffi::getenv(pamh, agreement::KEEPER_VAR).filter(|n| agreement::valid_nonce(n)) else {
        return;
    };
    let value = agreement::report(&nonce, outcome, config, file);
    if let Err(rc) = ffi::putenv(pamh, agreement::REPORT_VAR, &value) {
        ffi::syslog(pamh, libc::LOG_ERR, &format!("cannot report to the keeper: pam_putenv returned {rc}"));
    }
}

impl PamHooks for Module {
    fn sm_open_session(pamh: &mut PamHandle, args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        let Some((config, file)) = load_config(pamh, &args) else { return PamResultCode::PAM_SESSION_ERR };
        let sessions = Sessions::new(&config);
        let (code, outcome) = match session::open_session(&mut Host { pamh }, &sessions) {
            // The earlier line's report to the keeper stands.
            OpenOutcome::AlreadyOpen(_) => return PamResultCode::PAM_IGNORE,
            OpenOutcome::Opened => (PamResultCode::PAM_SUCCESS, Outcome::Opened),
            OpenOutcome::NotApplicable(_) => (PamResultCode::PAM_IGNORE, Outcome::Ignored),
            OpenOutcome::UserUnknown(_) => (PamResultCode::PAM_USER_UNKNOWN, Outcome::Refused),
            OpenOutcome::Refused(_) => (PamResultCode::PAM_SESSION_ERR, Outcome::Refused),
        };
        report_to_keeper(pamh, outcome, &config, &file);
        code
    }

    fn sm_close_session(pamh: &mut PamHandle, args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        let Some((config, _)) = load_config(pamh, &args) else { return PamResultCode::PAM_SESSION_ERR };
        let sessions = Sessions::new(&config);
        match session::close_session(&mut Host { pamh }, &sessions) {
            CloseOutcome::Closed => PamResultCode::PAM_SUCCESS,
            CloseOutcome::NotApplicable(_) => PamResultCode::PAM_IGNORE,
            CloseOutcome::UserUnknown(_) => PamResultCode::PAM_USER_UNKNOWN,
            CloseOutcome::Failed(_) => PamResultCode::PAM_SESSION_ERR,
        }
    }

    fn sm_setcred(_pamh: &mut PamHandle, _args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        PamResultCode::PAM_SUCCESS
    }
}
