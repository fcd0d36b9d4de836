//! The C interface shadow's `lib/nss.c` looks up with dlsym (4.13:
//! `shadow_subid_has_range`, `shadow_subid_list_owner_ranges`,
//! `shadow_subid_find_subid_owners`; later versions also
//! `shadow_subid_has_any_range` and `shadow_subid_free`). Arrays handed out
//! are `malloc`ed: shadow 4.13 and libsubid's callers release them with
//! `free(3)`, newer shadow through `shadow_subid_free`. Every entry point
//! catches panics and answers `SUBID_STATUS_ERROR` instead.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_ulong, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::Status;

/// shadow's `struct subid_range`.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct SubidRange {
    pub start: c_ulong,
    pub count: c_ulong,
}

const ERROR: c_int = Status::Error as c_int;

/// One syslog line (LOG_AUTHPRIV), prefixed with the provider's name;
/// never openlog (the host's ident and options are its own).
pub fn log(priority: c_int, message: &str) {
    let line = format!("libsubid_jupyter: {message}").replace('\0', "?");
    let Ok(line) = CString::new(line) else { return };
    // SAFETY: a constant "%s" format with one valid NUL-terminated string
    // argument; syslog(3) is thread-safe and only reads them.
    unsafe { libc::syslog(libc::LOG_AUTHPRIV | priority, c"%s".as_ptr(), line.as_ptr()) };
}

fn guarded(f: impl FnOnce() -> c_int) -> c_int {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        log(libc::LOG_ERR, "internal error (a panic was caught); answering SUBID_STATUS_ERROR");
        ERROR
    })
}

/// The owner name shadow passes, or None for NULL / not UTF-8.
///
/// # Safety
/// `owner` is NULL or a valid NUL-terminated string for the call.
unsafe fn owner_str<'a>(owner: *const c_char) -> Option<&'a str> {
    if owner.is_null() {
        return None;
    }
    // SAFETY: non-NULL, and shadow passes a NUL-terminated user name that
    // outlives the call (the caller's promise above).
    unsafe { CStr::from_ptr(owner) }.to_str().ok()
}

/// Copy `items` into a `malloc`ed array; NULL for none. None when out of memory.
fn malloc_array<T: Copy>(items: &[T]) -> Option<*mut T> {
    if items.is_empty() {
        return Some(std::ptr::null_mut());
    }
    let bytes = std::mem::size_of_val(items);
    // SAFETY: malloc with a non-zero size; the result is checked for NULL.
    let p = unsafe { libc::malloc(bytes) } as *mut T;
    if p.is_null() {
        return None;
    }
    // SAFETY: p is a fresh allocation of exactly items.len() T (malloc's
    // alignment suits any scalar), not overlapping items.
    unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), p, items.len()) };
    Some(p)
}

/// # Safety
/// `owner` is NULL or a NUL-terminated string; `result` is NULL or valid
/// for a write of one bool (as shadow's `has_range` callers pass).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shadow_subid_has_range(
    owner: *const c_char,
    start: c_ulong,
    count: c_ulong,
    idtype: c_int,
    result: *mut bool,
) -> c_int {
    guarded(|| {
        if result.is_null() {
            return ERROR;
        }
        // SAFETY: result is non-NULL and valid for a write (caller's promise).
        unsafe { result.write(false) };
        // SAFETY: the caller's promise on owner.
        let (Some(owner), Some(kind)) = (unsafe { owner_str(owner) }, crate::kind(idtype)) else { return ERROR };
        let found = crate::has_range(owner, start, count, kind);
        // SAFETY: as above.
        unsafe { result.write(found) };
        Status::Success as c_int
    })
}

/// # Safety
/// `owner` is NULL or a NUL-terminated string; `result` is NULL or valid
/// for a write of one bool.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shadow_subid_has_any_range(owner: *const c_char, idtype: c_int, result: *mut bool) -> c_int {
    guarded(|| {
        if result.is_null() {
            return ERROR;
        }
        // SAFETY: result is non-NULL and valid for a write (caller's promise).
        unsafe { result.write(false) };
        // SAFETY: the caller's promise on owner.
        let (Some(owner), Some(kind)) = (unsafe { owner_str(owner) }, crate::kind(idtype)) else { return ERROR };
        match crate::has_any_range(owner, kind) {
            Ok(found) => {
                // SAFETY: as above.
                unsafe { result.write(found) };
                Status::Success as c_int
            }
            Err(s) => s as c_int,
        }
    })
}

/// # Safety
/// `owner` is NULL or a NUL-terminated string; `ranges` and `count` are NULL
/// or valid for a write of one pointer / one int. `*ranges` is then a
/// `malloc`ed array (or NULL) the caller frees.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shadow_subid_list_owner_ranges(
    owner: *const c_char,
    idtype: c_int,
    ranges: *mut *mut SubidRange,
    count: *mut c_int,
) -> c_int {
    guarded(|| {
        if ranges.is_null() || count.is_null() {
            return ERROR;
        }
        // SAFETY: both non-NULL and valid for writes (caller's promise).
        unsafe {
            ranges.write(std::ptr::null_mut());
            count.write(0);
        }
        // SAFETY: the caller's promise on owner.
        let (Some(owner), Some(kind)) = (unsafe { owner_str(owner) }, crate::kind(idtype)) else { return ERROR };
        let found = match crate::list_owner_ranges(owner, kind) {
            Ok(r) => r,
            Err(s) => return s as c_int,
        };
        let items: Vec<SubidRange> =
            found.iter().map(|(s, c)| SubidRange { start: *s as c_ulong, count: *c as c_ulong }).collect();
        let Ok(n) = c_int::try_from(items.len()) else { return ERROR };
        let Some(p) = malloc_array(&items) else { return ERROR };
        // SAFETY: as above; ownership of p passes to the caller.
        unsafe {
            ranges.write(p);
            count.write(n);
        }
        Status::Success as c_int
    })
}

/// # Safety
/// `uids` and `count` are NULL or valid for a write of one pointer / one
/// int. `*uids` is then a `malloc`ed array (or NULL) the caller frees.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shadow_subid_find_subid_owners(
    id: c_ulong,
    idtype: c_int,
    uids: *mut *mut libc::uid_t,
    count: *mut c_int,
) -> c_int {
    guarded(|| {
        if uids.is_null() || count.is_null() {
            return ERROR;
        }
        // SAFETY: both non-NULL and valid for writes (caller's promise).
        unsafe {
            uids.write(std::ptr::null_mut());
            count.write(0);
        }
        let Some(kind) = crate::kind(idtype) else { return ERROR };
        let found: Vec<libc::uid_t> = crate::find_subid_owners(id, kind);
        let Ok(n) = c_int::try_from(found.len()) else { return ERROR };
        let Some(p) = malloc_array(&found) else { return ERROR };
        // SAFETY: as above; ownership of p passes to the caller.
        unsafe {
            uids.write(p);
            count.write(n);
        }
        Status::Success as c_int
    })
}

/// Release an array this provider handed out (newer shadow calls it).
///
/// # Safety
/// `ptr` is NULL or an array returned by this provider, not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shadow_subid_free(ptr: *mut c_void) {
    // SAFETY: ptr came from libc::malloc in malloc_array (or is NULL),
    // per the caller's promise; free(NULL) is a no-op.
    unsafe { libc::free(ptr) }
}
