//! session-lib: everything jupyter-session does, as an ordinary library.
//!
//! The PAM module (`pam_jupyter`) and the CLI (`jupyter-session`) are thin
//! front ends over this crate. Code here may run inside someone else's PAM
//! host (sshd, sudo, a multi-threaded JupyterHub), so nothing in this crate
//! changes process-global state on the module's paths: no set*id, umask,
//! chdir, environment, signal handlers or threads (the one exception:
//! [`as_user::run_as`]'s short-lived helper thread, joined before it
//! returns, with per-thread credentials), and no panics by design
//! (the FFI layer in `pam_jupyter` still catches any that slip through).
//!
//! All `unsafe_code` lives in the crate-private `ffi` module; every other
//! module forbids it. What other crates need of it is re-exported as safe
//! functions ([`lgetxattr`]) or wrapped ([`pam`], [`keeper`]).
#![deny(unsafe_code)]

pub mod agreement;
pub mod as_user;
pub mod binding;
pub mod check;
pub mod config;
pub mod config_doc;
pub mod exit_code;
pub(crate) mod ffi;
pub mod keeper;
pub mod liveness;
pub mod logind;
pub mod loginuid;
pub mod pam;
pub mod pam_codes;
pub mod procfs;
pub mod registry;
pub mod runtime_dir;
pub mod selinux;
pub mod session;
pub mod session_env;
pub mod subid;
mod tmpfs;
pub mod trust;
pub mod user;

pub use config::Config;
/// `lgetxattr(2)` of one attribute (e.g. `security.selinux`), for callers
/// outside this crate (the integration tests); `Ok(None)` when unset.
pub use ffi::xattr::lgetxattr;
pub use session::{CloseOutcome, OpenOutcome, PamHost};
