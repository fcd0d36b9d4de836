//! pam_jupyter: a PAM session module that gives any PAM stack a correct
//! login session for rootless containers — `/run/user/UID` with the right
//! owner, a registered session, loginuid where right, `XDG_RUNTIME_DIR` and
//! `PATH` exported.
//!
//! The hooks are exported by [`ffi`] (the only module allowed `unsafe_code`); the
//! work is done by `session_lib::session`.
#![deny(unsafe_code)]

mod ffi;
mod module;
