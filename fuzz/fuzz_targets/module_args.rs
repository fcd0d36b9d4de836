//! The PAM module argument parser: the input split at NUL bytes into
//! arguments (as libpam hands them over, each a C string), parsed and
//! applied over the defaults. Any input gives a Config or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use session_lib::config::{Config, ModuleArgs};

fuzz_target!(|data: &[u8]| {
    let args: Vec<String> = data.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    match ModuleArgs::parse(&args) {
        Ok(parsed) => {
            let mut config = Config::default();
            if let Err(e) = parsed.apply(&mut config) {
                let _ = e.to_string();
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
