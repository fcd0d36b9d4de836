//! The only place in session-lib with `unsafe` code: thin wrappers over C
//! interfaces that nix does not cover. Each block carries a `// SAFETY:` note.
#![allow(unsafe_code)]

pub mod check;
pub mod pam;
pub mod process;
pub mod selinux;
pub mod xattr;
