//! The PAM *application* interface of Linux-PAM (`libpam`), declared by
//! hand: the handful of calls a session keeper makes, a conversation
//! function that answers no prompts, and [`Handle`], an owned `pam_handle_t`
//! with one safe method per call. The RAII rules (what to close on drop,
//! which error to report) live in [`crate::pam`]; this file only makes the
//! calls sound.
//!
//! Every C return value is a `c_int` status, compared with the constants
//! below; nothing from C is trusted as a Rust enum.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;

/// Opaque `pam_handle_t`.
#[repr(C)]
pub struct PamHandleT {
    _private: [u8; 0],
}

/// `struct pam_message`.
#[repr(C)]
pub struct PamMessage {
    pub msg_style: c_int,
    pub msg: *const c_char,
}

/// `struct pam_response`.
#[repr(C)]
pub struct PamResponse {
    pub resp: *mut c_char,
    pub resp_retcode: c_int,
}

type ConvFn = unsafe extern "C" fn(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int;

/// `struct pam_conv`.
#[repr(C)]
pub struct PamConv {
    pub conv: Option<ConvFn>,
    pub appdata_ptr: *mut c_void,
}

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_start(
        service_name: *const c_char,
        user: *const c_char,
        pam_conversation: *const PamConv,
        pamh: *mut *mut PamHandleT,
    ) -> c_int;
    fn pam_end(pamh: *mut PamHandleT, pam_status: c_int) -> c_int;
    fn pam_set_item(pamh: *mut PamHandleT, item_type: c_int, item: *const c_void) -> c_int;
    fn pam_acct_mgmt(pamh: *mut PamHandleT, flags: c_int) -> c_int;
    fn pam_setcred(pamh: *mut PamHandleT, flags: c_int) -> c_int;
    fn pam_open_session(pamh: *mut PamHandleT, flags: c_int) -> c_int;
    fn pam_close_session(pamh: *mut PamHandleT, flags: c_int) -> c_int;
    fn pam_getenvlist(pamh: *mut PamHandleT) -> *mut *mut c_char;
    fn pam_putenv(pamh: *mut PamHandleT, name_value: *const c_char) -> c_int;
    fn pam_strerror(pamh: *mut PamHandleT, errnum: c_int) -> *const c_char;
}

use crate::pam_codes::{
    PAM_BUF_ERR, PAM_CONV_ERR, PAM_ERROR_MSG, PAM_RHOST, PAM_RUSER, PAM_SUCCESS, PAM_SYSTEM_ERR, PAM_TEXT_INFO, PAM_TTY,
};

/// The string-valued PAM items this client sets. `pam_set_item` takes a
/// `const void *` whose type depends on the item (a `struct pam_conv *`
/// for PAM_CONV, a delay callback for PAM_FAIL_DELAY...): only for these
/// is a C string the right type, so only these can be named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StringItem {
    /// PAM_RUSER: the user asking for the session.
    Ruser,
    /// PAM_TTY: the terminal.
    Tty,
    /// PAM_RHOST: the remote host.
    Rhost,
}

impl StringItem {
    fn code(self) -> c_int {
        match self {
            StringItem::Ruser => PAM_RUSER,
            StringItem::Tty => PAM_TTY,
            StringItem::Rhost => PAM_RHOST,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StringItem::Ruser => "PAM_RUSER",
            StringItem::Tty => "PAM_TTY",
            StringItem::Rhost => "PAM_RHOST",
        }
    }
}

/// What a module said through the conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    Error,
    Info,
}

/// Receives the text of PAM_ERROR_MSG / PAM_TEXT_INFO messages.
pub type MessageSink = Box<dyn FnMut(MessageKind, &str)>;

/// The conversation's private data.
struct ConvData {
    sink: MessageSink,
}

/// Owns the [`ConvData`] whose address libpam keeps as `appdata_ptr`.
///
/// Held as a raw pointer from `Box::into_raw`, not as a `Box`: moving a
/// `Box` asserts unique access to its contents, which would invalidate the
/// pointer libpam holds (Stacked Borrows); a raw pointer can be moved
/// freely. Freed exactly once, by `Drop`, which the owner runs only after
/// `pam_end` (see [`Handle`]).
struct ConvBox(*mut ConvData);

impl ConvBox {
    fn new(sink: MessageSink) -> ConvBox {
        ConvBox(Box::into_raw(Box::new(ConvData { sink })))
    }

    /// The `struct pam_conv` to give libpam (which copies it).
    fn pam_conv(&self) -> PamConv {
        PamConv { conv: Some(conversation), appdata_ptr: self.0.cast::<c_void>() }
    }
}

impl Drop for ConvBox {
    fn drop(&mut self) {
        // SAFETY: the pointer came from Box::into_raw in `new`, is freed
        // only here (once), and no conversation call can be running: the
        // owner ends the PAM handle before dropping this.
        drop(unsafe { Box::from_raw(self.0) });
    }
}

/// The conversation function: shows error/info text, refuses every prompt
/// (PAM_CONV_ERR: nobody is there to answer), never unwinds into C.
unsafe extern "C" fn conversation(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int {
    let result = catch_unwind(AssertUnwindSafe(|| {
        if num_msg <= 0 || msg.is_null() || resp.is_null() || appdata_ptr.is_null() {
            return PAM_CONV_ERR;
        }
        // SAFETY: appdata_ptr is the pointer of a live `ConvBox` (set in
        // `Handle::start`; freed only after pam_end), and libpam calls the
        // conversation only from within calls on that handle, which
        // `Handle` makes through `&mut self`, so this is the only reference
        // to the data for the duration of the call.
        let data = unsafe { &mut *appdata_ptr.cast::<ConvData>() };
        let n = num_msg as usize;
        let mut texts = Vec::with_capacity(n);
        for i in 0..n {
            // SAFETY: Linux-PAM passes an array of `num_msg` pointers to
            // messages (the Linux layout, not Solaris' pointer to an array).
            let m = unsafe { *msg.add(i) };
            if m.is_null() {
                return PAM_CONV_ERR;
            }
            // SAFETY: `m` points to a valid pam_message for this call.
            let (style, text) = unsafe { ((*m).msg_style, (*m).msg) };
            let text = if text.is_null() {
                String::new()
            } else {
                // SAFETY: msg is a NUL-terminated string owned by the module.
                unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned()
            };
            match style {
                PAM_ERROR_MSG => texts.push((MessageKind::Error, text)),
                PAM_TEXT_INFO => texts.push((MessageKind::Info, text)),
                // Prompts (echo on/off), radio, binary: nobody can answer.
                _ => return PAM_CONV_ERR,
            }
        }
        for (kind, text) in &texts {
            (data.sink)(*kind, text);
        }
        // Informational messages still need a response array (all NULL);
        // libpam frees it with free(3), so it must come from calloc.
        // SAFETY: calloc has no preconditions; the result is checked for
        // NULL below and ownership passes to libpam through `*resp`.
        let array = unsafe { libc::calloc(n, std::mem::size_of::<PamResponse>()) }.cast::<PamResponse>();
        if array.is_null() {
            return PAM_BUF_ERR;
        }
        // SAFETY: `resp` is a valid out-pointer provided by libpam.
        unsafe { *resp = array };
        PAM_SUCCESS
    }));
    result.unwrap_or(PAM_CONV_ERR)
}

/// Writes module messages to stderr, prefixed; the default sink.
pub fn stderr_sink() -> MessageSink {
    Box::new(|_kind, text| {
        use std::io::Write;
        // Not eprintln!, which panics when stderr is closed.
        let _ = writeln!(std::io::stderr(), "PAM: {text}");
    })
}

/// An owned `pam_handle_t`: `pam_end` runs exactly once, on [`Handle::end`]
/// or drop, with the last status seen.
pub struct Handle {
    pamh: *mut PamHandleT,
    last_status: c_int,
    // Freed by its own Drop, which runs after `Handle::drop` (pam_end):
    // libpam may call the conversation until then.
    _conv: ConvBox,
}

impl Handle {
    /// `pam_start(service, user, conv)`. Err carries the return code.
    pub fn start(service: &CStr, user: &CStr, sink: MessageSink) -> Result<Handle, c_int> {
        let conv_box = ConvBox::new(sink);
        let conv = conv_box.pam_conv();
        let mut pamh: *mut PamHandleT = ptr::null_mut();
        // SAFETY: both strings are NUL-terminated and outlive the call;
        // libpam copies `conv` (the struct) and keeps only `appdata_ptr`,
        // which stays valid until `conv_box` is dropped — after pam_end.
        let rc = unsafe { pam_start(service.as_ptr(), user.as_ptr(), &conv, &mut pamh) };
        if rc != PAM_SUCCESS || pamh.is_null() {
            if !pamh.is_null() {
                // SAFETY: libpam returned a handle along with the error; end
                // it (before `conv_box` drops at the end of this scope).
                unsafe { pam_end(pamh, rc) };
            }
            return Err(if rc == PAM_SUCCESS { PAM_SYSTEM_ERR } else { rc });
        }
        Ok(Handle { pamh, last_status: PAM_SUCCESS, _conv: conv_box })
    }

    fn record(&mut self, rc: c_int) -> Result<(), c_int> {
        self.last_status = rc;
        if rc == PAM_SUCCESS { Ok(()) } else { Err(rc) }
    }

    /// `pam_set_item` for a string-valued item.
    pub fn set_string_item(&mut self, item: StringItem, value: &CStr) -> Result<(), c_int> {
        // SAFETY: the handle is live; `item` is one of the items whose value
        // is a C string (StringItem admits no other), which libpam copies;
        // `value` is NUL-terminated and outlives the call.
        let rc = unsafe { pam_set_item(self.pamh, item.code(), value.as_ptr().cast::<c_void>()) };
        self.record(rc)
    }

    pub fn acct_mgmt(&mut self, flags: c_int) -> Result<(), c_int> {
        // SAFETY: the handle is live and used from this thread only (&mut).
        let rc = unsafe { pam_acct_mgmt(self.pamh, flags) };
        self.record(rc)
    }

    pub fn setcred(&mut self, flags: c_int) -> Result<(), c_int> {
        // SAFETY: as for acct_mgmt.
        let rc = unsafe { pam_setcred(self.pamh, flags) };
        self.record(rc)
    }

    pub fn open_session(&mut self, flags: c_int) -> Result<(), c_int> {
        // SAFETY: as for acct_mgmt.
        let rc = unsafe { pam_open_session(self.pamh, flags) };
        self.record(rc)
    }

    pub fn close_session(&mut self, flags: c_int) -> Result<(), c_int> {
        // SAFETY: as for acct_mgmt.
        let rc = unsafe { pam_close_session(self.pamh, flags) };
        self.record(rc)
    }

    /// `pam_putenv("NAME=value")`, or `"NAME"` to delete.
    pub fn putenv(&mut self, name_value: &CStr) -> Result<(), c_int> {
        // SAFETY: the handle is live; libpam copies the string.
        let rc = unsafe { pam_putenv(self.pamh, name_value.as_ptr()) };
        self.record(rc)
    }

    /// `pam_getenvlist`, copied out as raw `NAME=value` byte strings; the
    /// C list is freed here. Err(PAM_BUF_ERR) when libpam returns NULL.
    pub fn getenvlist(&mut self) -> Result<Vec<Vec<u8>>, c_int> {
        // SAFETY: the handle is live; the result is NULL or a malloc'd,
        // NULL-terminated array of malloc'd strings that we now own.
        let list = unsafe { pam_getenvlist(self.pamh) };
        if list.is_null() {
            return Err(PAM_BUF_ERR);
        }
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            // SAFETY: the array is NULL-terminated; i never passes the NULL.
            let entry = unsafe { *list.add(i) };
            if entry.is_null() {
                break;
            }
            // SAFETY: each entry is a NUL-terminated string we own; copy it,
            // then free it once.
            out.push(unsafe { CStr::from_ptr(entry) }.to_bytes().to_vec());
            // SAFETY: allocated by libpam with malloc, freed exactly once.
            unsafe { libc::free(entry.cast::<c_void>()) };
            i += 1;
        }
        // SAFETY: the array itself, malloc'd by libpam, freed exactly once.
        unsafe { libc::free(list.cast::<c_void>()) };
        Ok(out)
    }

    /// The status `pam_end` will be given.
    pub fn set_last_status(&mut self, status: c_int) {
        self.last_status = status;
    }

    /// `pam_strerror` for a code, copied out.
    pub fn strerror(&mut self, code: c_int) -> String {
        strerror_of(self.pamh, code)
    }

    /// `pam_end` with the last status (or `status` if given).
    pub fn end(mut self, status: Option<c_int>) -> c_int {
        if let Some(s) = status {
            self.last_status = s;
        }
        self.end_now()
        // Drop then sees a NULL handle and does nothing.
    }

    fn end_now(&mut self) -> c_int {
        if self.pamh.is_null() {
            return PAM_SUCCESS;
        }
        // SAFETY: the handle is live and ended exactly once (set to NULL).
        let rc = unsafe { pam_end(self.pamh, self.last_status) };
        self.pamh = ptr::null_mut();
        rc
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.end_now();
    }
}

/// `pam_strerror` without a handle (Linux-PAM ignores the handle argument).
pub fn strerror(code: c_int) -> String {
    strerror_of(ptr::null_mut(), code)
}

fn strerror_of(pamh: *mut PamHandleT, code: c_int) -> String {
    // SAFETY: Linux-PAM's pam_strerror only maps the code to a static
    // string and does not dereference the handle (NULL is fine).
    let s = unsafe { pam_strerror(pamh, code) };
    if s.is_null() {
        return format!("PAM error {code}");
    }
    // SAFETY: non-NULL results are static NUL-terminated strings.
    unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
}

/// A C string for PAM, rejecting interior NULs.
pub fn c_string(s: &str) -> Option<CString> {
    CString::new(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pam_codes::{PAM_ACCT_EXPIRED, PAM_PROMPT_ECHO_OFF};
    use std::cell::RefCell;
    use std::rc::Rc;

    #[test]
    fn strerror_maps_codes() {
        assert_eq!(strerror(PAM_SUCCESS), "Success");
        assert!(strerror(PAM_ACCT_EXPIRED).to_lowercase().contains("expired"), "{}", strerror(PAM_ACCT_EXPIRED));
    }

    type Seen = Rc<RefCell<Vec<(MessageKind, String)>>>;

    fn recording_sink() -> (Seen, MessageSink) {
        let seen: Seen = Rc::default();
        let seen2 = seen.clone();
        (seen, Box::new(move |k, t| seen2.borrow_mut().push((k, t.to_string()))))
    }

    /// Call a `struct pam_conv` the way libpam does, through its function
    /// pointer and `appdata_ptr`; returns the code and frees the response.
    fn call(conv: &PamConv, msgs: &[&PamMessage]) -> c_int {
        let mut ptrs: Vec<*const PamMessage> = msgs.iter().map(|m| *m as *const PamMessage).collect();
        let mut resp: *mut PamResponse = ptr::null_mut();
        let f = conv.conv.expect("a conversation function");
        // SAFETY: a valid array of `ptrs.len()` message pointers, a valid
        // out-pointer, and the appdata the conversation was built with.
        let rc = unsafe { f(ptrs.len() as c_int, ptrs.as_mut_ptr(), &mut resp, conv.appdata_ptr) };
        assert_eq!(rc == PAM_SUCCESS, !resp.is_null(), "a response array exactly on success");
        if !resp.is_null() {
            // SAFETY: the conversation returned a calloc'd array we now own.
            unsafe { libc::free(resp.cast()) };
        }
        rc
    }

    #[test]
    fn conversation_refuses_prompts_and_passes_messages() {
        let (seen, sink) = recording_sink();
        let owner = ConvBox::new(sink);
        let conv = owner.pam_conv();
        let info = PamMessage { msg_style: PAM_TEXT_INFO, msg: c"hello".as_ptr() };
        let err = PamMessage { msg_style: PAM_ERROR_MSG, msg: c"hello".as_ptr() };
        let prompt = PamMessage { msg_style: PAM_PROMPT_ECHO_OFF, msg: c"Password: ".as_ptr() };
        assert_eq!(call(&conv, &[&info, &err]), PAM_SUCCESS);
        assert_eq!(seen.borrow().len(), 2);
        assert_eq!(seen.borrow()[1], (MessageKind::Error, "hello".to_string()));
        assert_eq!(call(&conv, &[&info, &prompt]), PAM_CONV_ERR);
        assert_eq!(seen.borrow().len(), 2, "nothing shown from a refused batch");
        let null_text = PamMessage { msg_style: PAM_TEXT_INFO, msg: ptr::null() };
        assert_eq!(call(&conv, &[&null_text]), PAM_SUCCESS);
        assert_eq!(seen.borrow()[2], (MessageKind::Info, String::new()));
    }

    /// The ownership pattern of [`Handle`], without libpam, so that Miri
    /// can check it (`cargo +nightly miri test -p session-lib ffi::pam`,
    /// with Stacked and with Tree Borrows); it runs as a normal test too.
    /// As in `Handle::start`: the data is made, its pointer given to "C"
    /// (a copied `PamConv`), then the owner is *moved* into the handle
    /// struct, C calls back through the pointer several times, and the
    /// owner is dropped after "pam_end". With the data held as a `Box`
    /// moved after the pointer was taken, Stacked Borrows reports the
    /// callbacks as UB; with `ConvBox`'s raw pointer it is clean.
    #[test]
    fn conversation_ownership_model() {
        struct FakeLibpam {
            conv: PamConv,
        }
        struct FakeHandle {
            pam: Option<FakeLibpam>,
            _conv: ConvBox,
        }
        impl Drop for FakeHandle {
            fn drop(&mut self) {
                // "pam_end": C forgets the pointer before the data goes.
                self.pam = None;
            }
        }
        let (seen, sink) = recording_sink();
        let owner = ConvBox::new(sink);
        let c_side = FakeLibpam { conv: owner.pam_conv() };
        let mut handle = FakeHandle { pam: Some(c_side), _conv: owner };
        let moved = handle.pam.take();
        handle.pam = moved;
        let info = PamMessage { msg_style: PAM_TEXT_INFO, msg: c"one".as_ptr() };
        for _ in 0..3 {
            let conv = &handle.pam.as_ref().unwrap().conv;
            assert_eq!(call(conv, &[&info]), PAM_SUCCESS);
        }
        let boxed = Box::new(handle); // and moved once more
        assert_eq!(call(&boxed.pam.as_ref().unwrap().conv, &[&info]), PAM_SUCCESS);
        drop(boxed);
        assert_eq!(seen.borrow().len(), 4);
        assert_eq!(Rc::strong_count(&seen), 1, "the sink (and its clone of `seen`) was freed");
    }
}
