//! Where the command's environment comes from: handed over by the caller
//! on an inherited fd (`--env-fd`), or, from a shell, only `TERM` of the
//! keeper's own environment (as `su -l` keeps it). The keeper's own
//! environment is otherwise ignored, and refused when it holds variables
//! the dynamic loader or libc act on in a root process.
#![forbid(unsafe_code)]

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use super::error::KeeperError;

/// Largest environment accepted on `--env-fd` (execve's own limit on
/// argv+envp is a quarter of the stack rlimit, 2 MiB by default).
pub const MAX_HANDED_ENV: usize = 2 << 20;

/// Names the dynamic loader or libc act on in a process that is not
/// setuid (a root keeper started by root gets no secure-execution mode):
/// glibc's list of "unsecure" variables, every `LD_*`, and GLIBC_TUNABLES.
pub fn is_loader_variable(name: &OsStr) -> bool {
    const NAMES: [&str; 12] = [
        "GCONV_PATH",
        "GETCONF_DIR",
        "GLIBC_TUNABLES",
        "HOSTALIASES",
        "LOCALDOMAIN",
        "LOCPATH",
        "MALLOC_TRACE",
        "NIS_PATH",
        "NLSPATH",
        "RESOLV_HOST_CONF",
        "RES_OPTIONS",
        "TZDIR",
    ];
    let b = name.as_bytes();
    b.starts_with(b"LD_") || NAMES.iter().any(|n| n.as_bytes() == b)
}

/// The loader variables present in `own` (the keeper's own environment),
/// sorted; empty when it is safe to go on.
pub fn loader_variables(own: &[(OsString, OsString)]) -> Vec<String> {
    let mut names: Vec<String> =
        own.iter().filter(|(k, _)| is_loader_variable(k)).map(|(k, _)| k.to_string_lossy().into_owned()).collect();
    names.sort();
    names.dedup();
    names
}

/// The base environment when nothing is handed over: only `TERM`.
pub fn from_terminal(own: &[(OsString, OsString)]) -> Vec<(OsString, OsString)> {
    own.iter().filter(|(k, _)| k == "TERM").cloned().collect()
}

/// Parse `NAME=value\0NAME=value\0...` (the /proc/PID/environ layout; a
/// missing last NUL is accepted).
pub fn parse_handed(fd: i32, bytes: &[u8]) -> Result<Vec<(OsString, OsString)>, KeeperError> {
    let err = |reason: String| KeeperError::HandedEnv { fd, reason };
    let mut out = Vec::new();
    let body = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    if body.is_empty() {
        return Ok(out);
    }
    for (i, entry) in body.split(|b| *b == 0).enumerate() {
        let Some(eq) = entry.iter().position(|b| *b == b'=') else {
            return Err(err(format!("entry {} ({:?}) has no '='", i + 1, String::from_utf8_lossy(entry))));
        };
        if eq == 0 {
            return Err(err(format!("entry {} has an empty name", i + 1)));
        }
        out.push((OsString::from_vec(entry[..eq].to_vec()), OsString::from_vec(entry[eq + 1..].to_vec())));
    }
    Ok(out)
}

/// Read and parse the environment handed over on `fd` (already taken
/// over as `owned`); the fd is closed afterwards.
pub fn read_handed(fd: i32, owned: OwnedFd) -> Result<Vec<(OsString, OsString)>, KeeperError> {
    let mut file = std::fs::File::from(owned);
    let mut bytes = Vec::new();
    (&mut file)
        .take(MAX_HANDED_ENV as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| KeeperError::HandedEnv { fd, reason: format!("cannot read it: {e}") })?;
    if bytes.len() > MAX_HANDED_ENV {
        return Err(KeeperError::HandedEnv { fd, reason: format!("more than {MAX_HANDED_ENV} bytes") });
    }
    parse_handed(fd, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        list.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect()
    }

    #[test]
    fn loader_variables_are_named() {
        let own = pairs(&[("PATH", "/bin"), ("LD_PRELOAD", "x.so"), ("GCONV_PATH", "/tmp"), ("LD_AUDIT", "a")]);
        assert_eq!(loader_variables(&own), ["GCONV_PATH", "LD_AUDIT", "LD_PRELOAD"]);
        assert!(loader_variables(&pairs(&[("PATH", "/bin"), ("OLD_LD", "x")])).is_empty());
    }

    #[test]
    fn only_term_from_a_shell() {
        let own = pairs(&[("TERM", "xterm"), ("HOME", "/root"), ("PYENV_ROOT", "/root/.pyenv")]);
        assert_eq!(from_terminal(&own), pairs(&[("TERM", "xterm")]));
    }

    #[test]
    fn handed_env_parses_and_names_bad_entries() {
        let got = parse_handed(3, b"A=1\0B=x=y\0EMPTY=\0").unwrap();
        assert_eq!(got, pairs(&[("A", "1"), ("B", "x=y"), ("EMPTY", "")]));
        assert_eq!(parse_handed(3, b"A=1").unwrap(), pairs(&[("A", "1")]));
        assert!(parse_handed(3, b"").unwrap().is_empty());
        let e = parse_handed(7, b"A=1\0NOEQUALS\0").unwrap_err().to_string();
        assert!(e.contains("--env-fd 7") && e.contains("entry 2") && e.contains("NOEQUALS"), "{e}");
        assert!(parse_handed(3, b"=v\0").unwrap_err().to_string().contains("empty name"));
    }
}
