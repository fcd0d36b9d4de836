//! Extended attributes (`lgetxattr(2)`), which nix does not wrap: file
//! capabilities (`security.capability`) and SELinux labels
//! (`security.selinux`).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Largest attribute value we read (the kernel's own limit is 64 KiB).
const MAX_VALUE: usize = 64 * 1024;

/// The value of extended attribute `name` of `path`, not following a
/// symlink at `path`. `Ok(None)` when the file has no such attribute or
/// the filesystem has no extended attributes at all.
pub fn lgetxattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let c_name =
        CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"))?;
    let mut size = 256;
    loop {
        let mut buf = vec![0u8; size];
        // SAFETY: both strings are NUL-terminated and live across the call;
        // `buf` is a writable buffer of exactly `buf.len()` bytes, and the
        // kernel writes at most that many.
        let n = unsafe {
            libc::lgetxattr(c_path.as_ptr(), c_name.as_ptr(), buf.as_mut_ptr().cast::<libc::c_void>(), buf.len())
        };
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(Some(buf));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => return Ok(None),
            Some(libc::ERANGE) if size < MAX_VALUE => size = (size * 4).min(MAX_VALUE),
            _ => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_attribute_is_none_and_missing_file_is_an_error() {
        let dir = std::env::temp_dir().join(format!("js-xattr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(lgetxattr(&file, "security.capability").unwrap(), None);
        let err = lgetxattr(&dir.join("missing"), "security.capability").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
