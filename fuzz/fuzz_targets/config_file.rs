//! The config file parser: any text gives a Config or a ConfigError whose
//! message renders, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use session_lib::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::from_toml(text, std::path::Path::new("/etc/security/jupyter-session.toml")) {
        Ok(config) => {
            // Whatever was accepted is usable as it stands.
            let _ = config.tmpfs_size.to_string();
            let _ = config.lingers("root");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
