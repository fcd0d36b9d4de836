//! The parent after fork: watch the child's exec report, forward signals,
//! reap the child, and turn a failure report into a [`KeeperError`].
#![forbid(unsafe_code)]

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::KeeperOptions;
use super::error::{ChildEnd, ChildStep, EXIT_KEEPER_FAILED, KeeperError};

/// The child's failure report: the step and the errno (5 bytes).
pub(super) fn report(fd: &OwnedFd, step: ChildStep, errno: Errno) {
    let mut msg = [0u8; 5];
    msg[0] = step as u8;
    msg[1..].copy_from_slice(&(errno as i32).to_le_bytes());
    let _ = nix::unistd::write(fd, &msg);
}

/// Watch the report pipe until exec (EOF) or a failure report, forward
/// signals, and reap the child.
pub(super) fn wait_child(
    child: Pid,
    sfd: &SignalFd,
    report_r: OwnedFd,
    opts: &KeeperOptions,
    path_var: &[u8],
) -> Result<ChildEnd, KeeperError> {
    let mut report_fd = Some(report_r);
    let mut report_buf: Vec<u8> = Vec::new();
    let mut end: Option<ChildEnd> = None;
    while end.is_none() || report_fd.is_some() {
        let (sig_ready, report_ready) = {
            let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
            if let Some(r) = &report_fd {
                fds.push(PollFd::new(r.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    // Cannot watch anything: the best we can do is wait.
                    let _ = writeln!(
                        std::io::stderr(),
                        "jupyter-session exec: poll failed ({e}); waiting for the command without forwarding signals"
                    );
                    if let Some(r) = report_fd.take() {
                        read_to_end(&r, &mut report_buf);
                    }
                    end = Some(blocking_wait(child));
                    break;
                }
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), fds.get(1).is_some_and(ready))
        };
        if report_ready && let Some(r) = &report_fd {
            let mut buf = [0u8; 16];
            match nix::unistd::read(r, &mut buf) {
                Ok(0) => report_fd = None,
                Ok(n) => report_buf.extend_from_slice(&buf[..n]),
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(_) => report_fd = None,
            }
        }
        if sig_ready {
            while let Ok(Some(info)) = sfd.read_signal() {
                let signo = info.ssi_signo as i32;
                if signo == Signal::SIGCHLD as i32 {
                    if end.is_none() {
                        end = reap(child);
                    }
                } else if let Ok(sig) = Signal::try_from(signo)
                    && end.is_none()
                {
                    let _ = kill(child, sig);
                }
            }
        }
    }
    let end = end.unwrap_or_else(|| blocking_wait(child));
    if report_buf.len() >= 5
        && let Some(step) = ChildStep::from_u8(report_buf[0])
    {
        let errno = Errno::from_raw(i32::from_le_bytes([report_buf[1], report_buf[2], report_buf[3], report_buf[4]]));
        let command = opts.command[0].to_string_lossy().into_owned();
        return Err(match step {
            ChildStep::Exec => KeeperError::Exec { command, errno, path: String::from_utf8_lossy(path_var).into() },
            ChildStep::Chdir => KeeperError::Child {
                step,
                errno,
                detail: format!(
                    " entering {}",
                    opts.chdir.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "/".into())
                ),
            },
            _ => KeeperError::Child { step, errno, detail: String::new() },
        });
    }
    Ok(end)
}

fn read_to_end(fd: &OwnedFd, out: &mut Vec<u8>) {
    let mut buf = [0u8; 16];
    loop {
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => return,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

fn status_end(status: WaitStatus) -> Option<ChildEnd> {
    match status {
        WaitStatus::Exited(_, code) => Some(ChildEnd::Exited(code)),
        WaitStatus::Signaled(_, sig, _) => Some(ChildEnd::Signaled(sig as i32)),
        _ => None,
    }
}

fn reap(child: Pid) -> Option<ChildEnd> {
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return None,
            Ok(status) => {
                if let Some(end) = status_end(status) {
                    return Some(end);
                }
            }
            Err(Errno::EINTR) => {}
            // ECHILD: nothing left to wait for (should not happen).
            Err(_) => return Some(ChildEnd::Exited(EXIT_KEEPER_FAILED)),
        }
    }
}

fn blocking_wait(child: Pid) -> ChildEnd {
    loop {
        match waitpid(child, None) {
            Ok(status) => {
                if let Some(end) = status_end(status) {
                    return end;
                }
            }
            Err(Errno::EINTR) => {}
            Err(_) => return ChildEnd::Exited(EXIT_KEEPER_FAILED),
        }
    }
}
