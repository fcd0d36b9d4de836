//! The registry's record parser (and the runtime-dir marker's): any bytes
//! in a record file give a record or nothing, never a panic; a record that
//! parses survives a write and a re-read unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use session_lib::registry::Record;
use session_lib::runtime_dir::Created;

fuzz_target!(|data: &[u8]| {
    let (uid, bytes) = match data.split_first_chunk::<4>() {
        Some((uid, rest)) => (u32::from_le_bytes(*uid), rest),
        None => (1000, data),
    };
    if let Some(record) = Record::parse(bytes, uid) {
        assert_eq!(record.uid, uid);
        let written = serde_json::to_vec(&record).expect("a parsed record encodes");
        assert_eq!(Record::parse(&written, uid).as_ref(), Some(&record));
        let _ = record.process();
    }
    if let Ok(text) = std::str::from_utf8(bytes)
        && let Some(created) = Created::decode(text)
    {
        assert_eq!(Created::decode(&created.encode()), Some(created));
    }
});
