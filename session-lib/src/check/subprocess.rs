//! Commands `check` runs (the user-namespace probe, `podman info`): with a
//! time limit, killed by pid when they outlive it.
#![forbid(unsafe_code)]

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Output of a command run with a time limit.
#[derive(Debug)]
pub struct Ran {
    /// `None` when it was killed at the time limit.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Run `cmd` (stdout and stderr captured) and kill it, by its pid, if it
/// outlives `limit`.
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> std::io::Result<Ran> {
    let start = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let collect = |pipe: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(mut pipe) = pipe {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.read_to_end(&mut buf);
                let _ = tx.send(buf);
            });
        }
        rx
    };
    let out_rx = collect(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err_rx = collect(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let mut pause = Duration::from_micros(200);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if start.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(pause.min(limit.saturating_sub(start.elapsed())));
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    // A grandchild may hold the pipes open: wait for the output only briefly.
    let grace = Duration::from_millis(200);
    let text = |rx: std::sync::mpsc::Receiver<Vec<u8>>| {
        rx.recv_timeout(grace).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    };
    Ok(Ran { status, stdout: text(out_rx), stderr: text(err_rx), elapsed: start.elapsed() })
}
