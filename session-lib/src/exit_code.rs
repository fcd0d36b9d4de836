//! Exit statuses of `jupyter-session` itself, for every subcommand (the
//! `env`/`runuser` convention), kept apart from the statuses of the
//! commands it runs.
#![forbid(unsafe_code)]

/// jupyter-session itself failed: bad usage, bad configuration, not root,
/// a PAM step, the keeper before exec... (the message says which).
pub const FAILED: i32 = 125;
/// The keeper's command exists but cannot be executed.
pub const CANNOT_EXECUTE: i32 = 126;
/// The keeper's command was not found.
pub const NOT_FOUND: i32 = 127;
