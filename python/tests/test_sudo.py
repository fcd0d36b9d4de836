"""The SudoSpawner pieces: the runtime dir's validation, the server's environment, gc_after_stop."""

import asyncio
import os
import threading
from types import SimpleNamespace

import pytest

from jupyterhub_session import sudo


def test_runtime_dir_problem(tmp_path):
    uid = os.getuid()
    good = tmp_path / "good"
    good.mkdir(mode=0o700)
    good.chmod(0o700)
    assert sudo.runtime_dir_problem(str(good), uid) is None
    assert "not absolute" in sudo.runtime_dir_problem("run/user/1", uid)
    assert "No such file" in sudo.runtime_dir_problem(str(tmp_path / "missing"), uid)
    f = tmp_path / "file"
    f.write_text("")
    assert "is not a directory" in sudo.runtime_dir_problem(str(f), uid)
    link = tmp_path / "link"
    link.symlink_to(good)
    assert "is not a directory" in sudo.runtime_dir_problem(str(link), uid)
    assert f"not {uid + 1}" in sudo.runtime_dir_problem(str(good), uid + 1)
    good.chmod(0o755)
    assert "mode 755, not 700" in sudo.runtime_dir_problem(str(good), uid)


def test_session_environment_takes_the_sessions_dir_and_drops_a_leaked_one(tmp_path, monkeypatch):
    uid = os.getuid()
    rundir = tmp_path / "rundir"
    rundir.mkdir()
    rundir.chmod(0o700)
    monkeypatch.setattr(sudo, "_parent_env", lambda name: str(rundir) if name == "XDG_RUNTIME_DIR" else None)
    env = sudo.session_environment({"XDG_RUNTIME_DIR": "/run/user/0", "JUPYTERHUB_USER": "a"}, uid, "alice")
    assert env == {"XDG_RUNTIME_DIR": str(rundir), "JUPYTERHUB_USER": "a", "USER": "alice", "LOGNAME": "alice"}


def test_session_environment_without_a_usable_dir_sets_none(tmp_path, monkeypatch, capsys):
    uid = os.getuid()
    monkeypatch.setattr(sudo, "_parent_env", lambda name: str(tmp_path / "missing"))
    env = sudo.session_environment({"XDG_RUNTIME_DIR": "/run/user/0"}, uid, "alice")
    assert "XDG_RUNTIME_DIR" not in env
    assert "no usable runtime dir" in capsys.readouterr().err


def test_parent_env_reads_the_parents_environ(monkeypatch):
    monkeypatch.setattr(os, "getppid", os.getpid)
    monkeypatch.setenv("JS_UNIT_PROBE", "here")
    # /proc/self/environ is the environment the process started with, not os.environ: a variable
    # set now is not in it, one inherited is.
    assert sudo._parent_env("JS_UNIT_PROBE") is None
    assert sudo._parent_env("PATH") == os.environ.get("PATH") or sudo._parent_env("PATH") is None


def test_live_mediators_finds_a_live_process_of_the_uid_by_marker_and_not_a_zombie():
    import subprocess
    import time

    marker = b"js-unit-mediator-%d" % os.getpid()
    proc = subprocess.Popen(["sh", "-c", "sleep 30", marker.decode()])
    try:
        deadline = time.monotonic() + 5
        while proc.pid not in sudo._live_mediators(os.getuid(), (marker,)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.pid in sudo._live_mediators(os.getuid(), (marker,))
        assert proc.pid not in sudo._live_mediators(os.getuid() + 1, (marker,))
        assert proc.pid not in sudo._live_mediators(os.getuid(), (b"no-such-marker-anywhere",))
        proc.kill()
        # Dead but not yet reaped: a zombie does not count.
        while open(f"/proc/{proc.pid}/stat").read().split(") ")[1][0] != "Z":
            time.sleep(0.01)
        assert proc.pid not in sudo._live_mediators(os.getuid(), (marker,))
    finally:
        proc.kill()
        proc.wait()


def test_gc_after_stop_scans_off_the_event_loop_then_runs_sudo_gc(monkeypatch):
    threads = []
    scans = iter([[4242], []])

    def fake_scan(uid, markers):
        threads.append(threading.current_thread())
        assert markers == (b"sudospawner", b"jupyterhub-singleuser")
        return next(scans, [])

    calls = []

    class Proc:
        returncode = 0

        async def communicate(self):
            return b"removed /run/user/1001\n", None

    async def fake_exec(*argv, **kwargs):
        calls.append(argv)
        return Proc()

    monkeypatch.setattr(sudo, "_live_mediators", fake_scan)
    monkeypatch.setattr(sudo.asyncio, "create_subprocess_exec", fake_exec)
    logged = []
    log = SimpleNamespace(info=lambda *a: logged.append(a), warning=lambda *a: logged.append(("warn",) + a))
    spawner = SimpleNamespace(user=SimpleNamespace(name=__import__("pwd").getpwuid(os.getuid()).pw_name), log=log)
    hook = sudo.gc_after_stop("/usr/local/bin/jupyter-session", gc_args=("--older-than", "7d"))
    asyncio.run(hook(spawner))
    assert len(threads) == 2
    assert all(t is not threading.main_thread() for t in threads), "the /proc scan ran on the event loop"
    assert calls == [("sudo", "-n", "/usr/local/bin/jupyter-session", "gc", "--older-than", "7d")]
    assert "removed /run/user/1001" in logged[0][-1]


def test_all_is_complete_and_resolvable():
    import jupyterhub_session

    assert set(jupyterhub_session.__all__) == {
        "SessionSpawner",
        "PodmanSessionSpawner",
        "gc_after_stop",
        "singleuser_main",
    }
    for name in jupyterhub_session.__all__:
        assert getattr(jupyterhub_session, name) is not None
    from jupyterhub_session.podman import PodmanSessionSpawner

    assert jupyterhub_session.PodmanSessionSpawner is PodmanSessionSpawner
    with pytest.raises(AttributeError):
        jupyterhub_session.NoSuchThing  # noqa: B018
