"""SudoSpawner recipe pieces (hub as an unprivileged account).

sudo runs the mediator inside its own PAM session, opened as root; with pam_jupyter in that stack
the session creates /run/user/UID and sudo gives the mediator XDG_RUNTIME_DIR. But the mediator
starts the server with the environment the hub sent, not its own, and returns (ending sudo's
session) about a second later while the server runs on (pam_jupyter keeps the runtime dir at
that close because the server, a process of the user, still runs). Two pieces close the gaps:

- `singleuser_main`, installed as `sudospawner-singleuser` next to `sudospawner`: takes the
  session's runtime dir from the mediator (its parent, started by sudo), validates it, exports it,
  optionally runs `jupyter-session check`, then execs `jupyterhub-singleuser`.
- `gc_after_stop`, a `post_stop_hook`: once the mediator that reaped the stopped server has
  exited, runs `sudo -n jupyter-session gc`, which removes the runtime dir when no process of the
  user is left.
"""

import asyncio
import os
import stat
import subprocess
import sys


def _log(msg):
    print(f"sudospawner-singleuser: {msg}", file=sys.stderr, flush=True)


def _parent_env(name):
    """`name` from the environment the parent (the mediator, run by sudo) was started with."""
    try:
        with open(f"/proc/{os.getppid()}/environ", "rb") as f:
            for entry in f.read().split(b"\0"):
                key, _, value = entry.partition(b"=")
                if key == name.encode():
                    return os.fsdecode(value)
    except OSError:
        pass
    return None


def runtime_dir_problem(path, uid):
    """Why `path` is not a usable runtime dir for `uid`, or None when it is."""
    if not os.path.isabs(path):
        return f"{path!r} is not absolute"
    try:
        st = os.lstat(path)
    except OSError as e:
        return f"{path}: {e.strerror}"
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory"
    if st.st_uid != uid:
        return f"{path} is owned by uid {st.st_uid}, not {uid}"
    if stat.S_IMODE(st.st_mode) != 0o700:
        return f"{path} has mode {stat.S_IMODE(st.st_mode):o}, not 700"
    return None


def session_environment(environ, uid, user_name):
    """The environment the server gets: `environ` (from the hub) with the session's
    XDG_RUNTIME_DIR (validated) and LOGNAME; a leaked or stale XDG_RUNTIME_DIR is dropped."""
    env = dict(environ)
    env.pop("XDG_RUNTIME_DIR", None)
    candidate = _parent_env("XDG_RUNTIME_DIR") or f"/run/user/{uid}"
    problem = runtime_dir_problem(candidate, uid)
    if problem is None:
        env["XDG_RUNTIME_DIR"] = candidate
    else:
        _log(
            f"no usable runtime dir ({problem}); is pam_jupyter in the PAM stack sudo runs for the hub account?"
        )
    env["USER"] = user_name
    env["LOGNAME"] = user_name
    return env


def singleuser_main():
    import pwd

    uid = os.getuid()
    name = pwd.getpwuid(uid).pw_name
    env = session_environment(os.environ, uid, name)
    # JUPYTER_SESSION_CHECK: "log" (default: run the check, log its report), "strict" (a failed
    # check stops the start), "off". Set it with c.Spawner.environment.
    mode = env.get("JUPYTER_SESSION_CHECK", "log")
    checker = env.get("JUPYTER_SESSION_PATH", "jupyter-session")
    if mode != "off":
        try:
            code = subprocess.run([checker, "check"], env=env, stdout=sys.stderr, timeout=30).returncode
        except (OSError, subprocess.TimeoutExpired) as e:
            _log(f"`{checker} check` did not run: {e}")
            code = None
        if code == 1 and mode == "strict":
            _log("`jupyter-session check` failed and JUPYTER_SESSION_CHECK=strict: not starting")
            sys.exit(1)
    # Like sudospawner itself: only the jupyterhub-singleuser installed next to this script.
    server = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), "jupyterhub-singleuser")
    os.execve(server, [server] + sys.argv[1:], env)


def _live_mediators(uid, markers=(b"sudospawner",)):
    """Pids of `uid`'s processes (not zombies) whose command line holds one of `markers`:
    by default the sudospawner mediator."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if status.get("State", "").strip().startswith("Z"):
            continue
        if int(status.get("Uid", "-1").split()[0]) == uid and any(m in cmdline for m in markers):
            pids.append(int(entry))
    return pids


def gc_after_stop(jupyter_session_path="jupyter-session", gc_args=(), wait_seconds=10.0):
    """A SudoSpawner `post_stop_hook`: wait (at most `wait_seconds`) for the mediator and the
    server it reaped to be gone, then run `sudo -n <jupyter_session_path> gc <gc_args>`, which
    removes the runtime dir once no process of the user is left (a server still exiting would
    keep it). The sudoers line must allow exactly that command for the hub account."""

    async def hook(spawner):
        import pwd

        loop = asyncio.get_running_loop()
        # Off the hub's event loop: the passwd lookup (NSS, maybe LDAP) and each /proc scan (one
        # open per process on the host) run in the default executor's threads.
        uid = (await loop.run_in_executor(None, pwd.getpwnam, spawner.user.name)).pw_uid
        deadline = loop.time() + wait_seconds
        markers = (b"sudospawner", b"jupyterhub-singleuser")
        while await loop.run_in_executor(None, _live_mediators, uid, markers) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        argv = ["sudo", "-n", jupyter_session_path, "gc", *gc_args]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await proc.communicate()
        text = out.decode(errors="replace").strip()
        if proc.returncode:
            spawner.log.warning("%s failed (%s): %s", " ".join(argv), proc.returncode, text)
        else:
            spawner.log.info("%s: %s", " ".join(argv), text)

    return hook
