//! libselinux (`libselinux.so.1`, on every Debian and Fedora base system):
//! whether SELinux is enabled, and the file-context lookup that `restorecon`
//! uses (`selabel_open(SELABEL_CTX_FILE)` + `selabel_lookup_raw`). Plus
//! `fgetxattr`/`fsetxattr` of `security.selinux` on an fd, which nix does
//! not wrap.
//!
//! Nothing here changes process-global state: no `setfscreatecon`, no log
//! callback; each lookup opens and closes its own handle.

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const SELABEL_CTX_FILE: c_uint = 0;
const SELABEL_OPT_VALIDATE: c_int = 1;
const SELABEL_OPT_PATH: c_int = 3;

/// `struct selinux_opt` from `<selinux/selinux.h>`.
#[repr(C)]
struct SelinuxOpt {
    kind: c_int,
    value: *const c_char,
}

/// Opaque `struct selabel_handle`.
#[repr(C)]
struct SelabelHandle {
    _private: [u8; 0],
}

#[link(name = "selinux")]
unsafe extern "C" {
    fn is_selinux_enabled() -> c_int;
    fn selabel_open(backend: c_uint, opts: *const SelinuxOpt, nopts: c_uint) -> *mut SelabelHandle;
    fn selabel_lookup_raw(handle: *mut SelabelHandle, con: *mut *mut c_char, key: *const c_char, kind: c_int) -> c_int;
    fn selabel_close(handle: *mut SelabelHandle);
    fn freecon(con: *mut c_char);
}

/// libselinux's answer: SELinux is enabled in this kernel (selinuxfs is
/// mounted and the policy is loaded).
pub fn selinux_enabled() -> bool {
    // SAFETY: no arguments; libselinux only reads its own state (the
    // selinuxfs mount point found at library load).
    unsafe { is_selinux_enabled() > 0 }
}

/// A file-contexts labelling handle, closed on drop.
struct Handle(*mut SelabelHandle);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the pointer came from a successful selabel_open and is
        // closed exactly once, here.
        unsafe { selabel_close(self.0) }
    }
}

/// The label the file contexts at `file_contexts` (or the loaded policy's,
/// when `None`) give `path` as a file of type `mode` (`S_IFDIR`...), like
/// `matchpathcon`/`restorecon`: `.subs`, `.local` and `.homedirs` apply.
/// `Ok(None)` when no entry matches or the entry says `<<none>>`.
pub fn lookup_file_label(file_contexts: Option<&Path>, path: &Path, mode: u32) -> io::Result<Option<String>> {
    let nul = |_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte");
    let c_key = CString::new(path.as_os_str().as_bytes()).map_err(nul)?;
    let c_spec = file_contexts.map(|p| CString::new(p.as_os_str().as_bytes())).transpose().map_err(nul)?;
    // No validation against the kernel's policy: a lookup in an explicit
    // file (a policy not loaded here) must work with SELinux disabled.
    let mut opts = vec![SelinuxOpt { kind: SELABEL_OPT_VALIDATE, value: std::ptr::null() }];
    if let Some(spec) = &c_spec {
        opts.push(SelinuxOpt { kind: SELABEL_OPT_PATH, value: spec.as_ptr() });
    }
    // SAFETY: `opts` is an array of `opts.len()` initialised selinux_opt
    // whose strings (`c_spec`) outlive the call; libselinux copies what it
    // keeps. A null return is an error, checked below.
    let raw = unsafe { selabel_open(SELABEL_CTX_FILE, opts.as_ptr(), opts.len() as c_uint) };
    if raw.is_null() {
        return Err(io::Error::last_os_error());
    }
    let handle = Handle(raw);
    let mut con: *mut c_char = std::ptr::null_mut();
    // SAFETY: the handle is open; `con` is a valid out-pointer; `c_key` is
    // NUL-terminated and lives across the call. The file type is a c_int
    // holding S_IF* bits.
    let rc = unsafe { selabel_lookup_raw(handle.0, &mut con, c_key.as_ptr(), mode as c_int) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ENOENT) => Ok(None),
            _ => Err(err),
        };
    }
    // SAFETY: on success libselinux stored a NUL-terminated string it
    // allocated; we copy it and free it with freecon exactly once.
    let label = unsafe {
        let text = CStr::from_ptr(con).to_string_lossy().into_owned();
        freecon(con);
        text
    };
    Ok(Some(label))
}

const XATTR_NAME: &CStr = c"security.selinux";

/// The `security.selinux` attribute of the file behind `fd`, without the
/// trailing NUL. `Ok(None)` when it has none (or xattrs are unsupported).
pub fn fget_label(fd: impl AsFd) -> io::Result<Option<String>> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: the fd is open for the duration (borrowed), the name is a
    // NUL-terminated constant, and `buf` is writable for `buf.len()` bytes.
    let n = unsafe {
        libc::fgetxattr(fd.as_fd().as_raw_fd(), XATTR_NAME.as_ptr(), buf.as_mut_ptr().cast::<c_void>(), buf.len())
    };
    if n < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => Ok(None),
            _ => Err(err),
        };
    }
    buf.truncate(n as usize);
    while buf.last() == Some(&0) {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// Set the `security.selinux` attribute of the file behind `fd` to `label`
/// (stored NUL-terminated, as libselinux's `fsetfilecon_raw` does).
pub fn fset_label(fd: impl AsFd, label: &str) -> io::Result<()> {
    let value = CString::new(label).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "label with a NUL"))?;
    let bytes = value.as_bytes_with_nul();
    // SAFETY: the fd is open (borrowed), the name is a NUL-terminated
    // constant, `bytes` is readable for `bytes.len()` bytes; flags 0.
    let rc = unsafe {
        libc::fsetxattr(fd.as_fd().as_raw_fd(), XATTR_NAME.as_ptr(), bytes.as_ptr().cast::<c_void>(), bytes.len(), 0)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
