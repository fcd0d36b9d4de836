//! The only place in session-lib with `unsafe` code: thin wrappers over C
//! interfaces that nix does not cover. Each block carries a `// SAFETY:` note.
#![allow(unsafe_code)]

pub mod check;
pub mod keyring;
pub mod mntns;
pub mod pam;
pub mod pidfd;
pub mod process;
pub mod selinux;
pub mod statx;
pub mod thread_creds;
pub mod xattr;
