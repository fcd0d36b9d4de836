//! Hold a PAM session open: the integration tests' session driver.
//!
//! usage: hold-session SERVICE USER
//!
//! Opens a session through libpam with session-lib's PAM client (pam_start,
//! pam_open_session, pam_getenvlist), prints "OPEN <rc>" and the PAM
//! environment (one NAME=value per line, then "END"), waits for a line (or
//! EOF) on stdin, then closes it (pam_close_session, pam_end) and prints
//! "CLOSED <rc>". Killed with SIGKILL in between, it leaves a stale registry
//! record: that is what the tests use it for.
#![forbid(unsafe_code)]

use std::io::{BufRead, Write};

use session_lib::pam::PamContext;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, service, user] = args.as_slice() else {
        eprintln!("usage: hold-session SERVICE USER");
        std::process::exit(2);
    };
    let mut out = std::io::stdout().lock();
    let mut pam = match PamContext::start(service, user) {
        Ok(pam) => pam,
        Err(e) => {
            let _ = writeln!(out, "START {}", e.code);
            std::process::exit(2);
        }
    };
    if let Err(e) = pam.open_session() {
        let _ = writeln!(out, "OPEN {}", e.code);
        std::process::exit(1);
    }
    let _ = writeln!(out, "OPEN 0");
    for (name, value) in pam.env().unwrap_or_default() {
        let _ = writeln!(out, "{name}={value}");
    }
    let _ = writeln!(out, "END");
    let _ = out.flush();
    let _ = std::io::stdin().lock().read_line(&mut String::new());
    let code = match pam.close_session() {
        Ok(()) => 0,
        Err(e) => e.code,
    };
    let _ = pam.end();
    let _ = writeln!(out, "CLOSED {code}");
    std::process::exit(if code == 0 { 0 } else { 1 });
}
