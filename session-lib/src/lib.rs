//! session-lib: everything jupyter-session does, as an ordinary library.
//!
//! The PAM module (`pam_jupyter`) and the CLI (`jupyter-session`) are thin
//! front ends over this crate. Code here may run inside someone else's PAM
//! host (sshd, sudo, a multi-threaded JupyterHub), so nothing in this crate
//! changes process-global state on the module's paths: no set*id, umask,
//! chdir, environment, signal handlers or threads, and no panics by design
//! (the FFI layer in `pam_jupyter` still catches any that slip through).
//!
//! All `unsafe_code` lives in [`ffi`]; every other module forbids it.
#![deny(unsafe_code)]

pub mod check;
pub mod config;
pub mod ffi;
pub mod launcher;
pub mod loginuid;
pub mod pam;
pub mod procfs;
pub mod registry;
pub mod runtime_dir;
pub mod selinux;
pub mod session;
pub mod session_env;
pub mod trust;
pub mod user;

pub use config::Config;
pub use session::{CloseOutcome, OpenOutcome, PamHost};
