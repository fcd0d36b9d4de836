//! Kernel key retention service (`keyctl(2)`), the two calls the keeper's
//! child needs; libc has no wrapper, so through `syscall(SYS_keyctl)`.
//! Constants from `<linux/keyctl.h>`.

use std::ffi::c_long;

use nix::errno::Errno;

const KEYCTL_GET_KEYRING_ID: c_long = 0;
const KEYCTL_JOIN_SESSION_KEYRING: c_long = 1;
const KEY_SPEC_SESSION_KEYRING: c_long = -3;

fn result(rc: c_long) -> Result<i32, Errno> {
    if rc < 0 { Err(Errno::last()) } else { Ok(rc as i32) }
}

/// The serial of this process's session keyring (without creating one:
/// with none attached, the kernel answers with the user-session keyring).
pub fn session_keyring() -> Result<i32, Errno> {
    // SAFETY: KEYCTL_GET_KEYRING_ID takes two integer arguments (the
    // special id and "create" = 0) and touches no memory of ours.
    result(unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0 as c_long) })
}

/// Join a new anonymous session keyring (`KEYCTL_JOIN_SESSION_KEYRING`
/// with a NULL name), owned by the caller's current uid; returns its serial.
pub fn join_new_session_keyring() -> Result<i32, Errno> {
    // SAFETY: the name argument is NULL, which the kernel takes as "a new
    // anonymous keyring"; no memory of ours is read or written.
    result(unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, std::ptr::null::<u8>()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joining_gives_a_new_keyring() {
        // Session keyrings are per thread (credentials): this changes only
        // the test's own thread.
        let before = session_keyring().unwrap();
        let joined = join_new_session_keyring().unwrap();
        assert_ne!(joined, before);
        assert_eq!(session_keyring().unwrap(), joined);
    }
}
