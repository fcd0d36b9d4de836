//! One configuration for the keeper and the module: how `jupyter-session
//! exec` learns which configuration pam_jupyter ran with in its session
//! stack, and what it did, so that the two can never silently disagree.
//!
//! Before `pam_open_session` the keeper puts a fresh random nonce into the
//! PAM environment ([`KEEPER_VAR`]). pam_jupyter, seeing it, answers in
//! [`REPORT_VAR`] with the nonce, what it did (opened, ignored, refused),
//! the file it read and a fingerprint of the settings that decide who is
//! managed and where. The keeper compares that with its own configuration
//! ([`verify`]); without the nonce (the module did not run) or on any
//! difference it refuses and closes the session again. Other PAM hosts
//! (sshd, sudo) never set the nonce, so the module reports nothing there;
//! a user's `~/.pam_environment` cannot forge a report (the nonce is new
//! for every keeper and never reaches the user). Both variables are
//! removed from the command's environment.
#![forbid(unsafe_code)]

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::config::{Config, DEFAULT_CONFIG_FILE};

/// Set by the keeper in the PAM environment before pam_open_session.
pub const KEEPER_VAR: &str = "JUPYTER_SESSION_KEEPER";
/// Set by pam_jupyter in answer: `NONCE:OUTCOME:FINGERPRINT:PATH`.
pub const REPORT_VAR: &str = "JUPYTER_SESSION_CONFIG";

/// What the module did in open_session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Opened,
    Ignored,
    Refused,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Opened => "opened",
            Outcome::Ignored => "ignored",
            Outcome::Refused => "refused",
        }
    }

    fn parse(s: &str) -> Option<Outcome> {
        match s {
            "opened" => Some(Outcome::Opened),
            "ignored" => Some(Outcome::Ignored),
            "refused" => Some(Outcome::Refused),
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The file a component reads: the one named, else the default file.
pub fn config_file(named: Option<&Path>) -> PathBuf {
    named.map_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE), Path::to_path_buf)
}

/// FNV-1a 64 over the settings that decide whom the keeper and the module
/// manage (`min_uid`, `service_users`); others given as module arguments
/// (`debug`, `state_dir`...) are the module's alone and no disagreement.
pub fn fingerprint(config: &Config) -> String {
    let text = format!("min_uid={}\nservice_users={}\n", config.min_uid, config.service_users.join(","));
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// A nonce is 32 lowercase hex digits.
pub fn valid_nonce(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A fresh nonce from /dev/urandom (the keeper only; not a PAM-host path).
pub fn new_nonce() -> std::io::Result<String> {
    let mut buf = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// The module's answer, as the value of [`REPORT_VAR`].
pub fn report(nonce: &str, outcome: Outcome, config: &Config, file: &Path) -> String {
    format!("{nonce}:{outcome}:{}:{}", fingerprint(config), file.display())
}

/// A parsed answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Report {
    pub nonce: String,
    pub outcome: Outcome,
    pub fingerprint: String,
    pub file: PathBuf,
}

pub fn parse_report(value: &str) -> Option<Report> {
    let mut parts = value.splitn(4, ':');
    let nonce = parts.next()?.to_string();
    let outcome = Outcome::parse(parts.next()?)?;
    let fingerprint = parts.next()?.to_string();
    let file = PathBuf::from(parts.next()?);
    Some(Report { nonce, outcome, fingerprint, file })
}

/// The same file? Compared resolved where both resolve, else as written.
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// What the keeper needs to judge the module's answer.
pub struct Expected<'a> {
    pub nonce: &'a str,
    pub config: &'a Config,
    pub file: &'a Path,
    pub service_file: &'a Path,
    pub user: &'a str,
}

/// The keeper's verdict on the PAM environment after pam_open_session:
/// Ok when pam_jupyter opened the session with the keeper's configuration,
/// else the reason, naming both files and what to change.
pub fn verify(expected: &Expected, pam_env: &[(String, String)]) -> Result<(), String> {
    let Expected { nonce, config, file, service_file, user } = expected;
    let (file, service_file) = (file.display(), service_file.display());
    let answer = pam_env.iter().find(|(k, _)| k == REPORT_VAR).and_then(|(_, v)| parse_report(v));
    let Some(answer) = answer.filter(|r| r.nonce == *nonce) else {
        return Err(format!(
            "pam_jupyter did not run in the session stack of {service_file} (it left no report): {user} is managed by \
             {file}, and without the module the session would have no runtime dir and no XDG_RUNTIME_DIR; add \
             `session required pam_jupyter.so` (with config={file} unless that is the default file) to \
             {service_file}; the session was closed again"
        ));
    };
    if !same_file(&answer.file, expected.file) {
        return Err(format!(
            "pam_jupyter in {service_file} read {} but the keeper was given {file}: they must use one \
             configuration; put config={file} on pam_jupyter's line in {service_file} (or give the keeper --config {}); \
             the session was closed again",
            answer.file.display(),
            answer.file.display()
        ));
    }
    if answer.fingerprint != fingerprint(config) {
        return Err(format!(
            "pam_jupyter in {service_file} read {file} like the keeper, but its module arguments override min_uid \
             or service_users there, so the two disagree on whom they manage; move those settings into {file}; the \
             session was closed again"
        ));
    }
    match answer.outcome {
        Outcome::Opened => Ok(()),
        other => Err(format!(
            "pam_jupyter in {service_file} {other} the session of {user} (its reason is in the system log, \
             LOG_AUTHPRIV); the keeper does not start the command without a session; the session was closed again"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(value: String) -> Vec<(String, String)> {
        vec![("PATH".into(), "/bin".into()), (REPORT_VAR.into(), value)]
    }

    #[test]
    fn reports_round_trip_and_verify() {
        let nonce = new_nonce().unwrap();
        assert!(valid_nonce(&nonce), "{nonce}");
        let config = Config::default();
        let file = Path::new("/nonexistent/js-a.toml");
        let svc = Path::new("/etc/pam.d/x");
        let exp = Expected { nonce: &nonce, config: &config, file, service_file: svc, user: "hub" };
        let ok = report(&nonce, Outcome::Opened, &config, file);
        assert_eq!(parse_report(&ok).unwrap().file, file);
        assert_eq!(verify(&exp, &env(ok)), Ok(()));

        let err = verify(&exp, &[]).unwrap_err();
        assert!(err.contains("did not run") && err.contains("/etc/pam.d/x"), "{err}");
        // A report with another nonce (forged, or of another keeper) is no report.
        let forged = report(&"0".repeat(32), Outcome::Opened, &config, file);
        assert!(verify(&exp, &env(forged)).unwrap_err().contains("did not run"));

        let other = report(&nonce, Outcome::Opened, &config, Path::new("/etc/security/jupyter-session.toml"));
        let err = verify(&exp, &env(other)).unwrap_err();
        assert!(err.contains("/etc/security/jupyter-session.toml") && err.contains("js-a.toml"), "{err}");

        let mut overridden = config.clone();
        overridden.min_uid = 500;
        let err = verify(&exp, &env(report(&nonce, Outcome::Opened, &overridden, file))).unwrap_err();
        assert!(err.contains("module arguments override"), "{err}");
        let mut debug = config.clone();
        debug.debug = true;
        debug.state_dir = "/run/js-elsewhere".into();
        assert_eq!(verify(&exp, &env(report(&nonce, Outcome::Opened, &debug, file))), Ok(()));

        let err = verify(&exp, &env(report(&nonce, Outcome::Ignored, &config, file))).unwrap_err();
        assert!(err.contains("ignored the session of hub"), "{err}");
    }
}
