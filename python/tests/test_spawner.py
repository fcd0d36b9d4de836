"""SessionSpawner: the keeper's argv, the server's argv, the env memfd, trait validation."""

import os

import pytest
from traitlets import TraitError

from jupyterhub_session.spawner import KEEPER_ENV, SessionSpawner, env_memfd


def test_keeper_command_runs_exec_for_the_user_with_env_fd(session_spawner, me):
    session_spawner.jupyter_session_path = "/usr/bin/jupyter-session"
    argv = session_spawner.keeper_command(["/abs/jupyterhub-singleuser", "--debug"], {}, env_fd=7)
    want = ["/usr/bin/jupyter-session", "exec", "--service", "jupyterhub", "--user", me.pw_name]
    if me.pw_dir and os.path.isdir(me.pw_dir):
        want += ["--chdir", me.pw_dir]
    assert argv == want + ["--env-fd", "7", "--", "/abs/jupyterhub-singleuser", "--debug"]


def test_keeper_command_without_env_fd_and_another_service(session_spawner, me):
    session_spawner.pam_service = "jupyterhub-gpu"
    argv = session_spawner.keeper_command(["/bin/true"], {})
    assert argv[argv.index("--service") + 1] == "jupyterhub-gpu"
    assert "--env-fd" not in argv
    assert argv[-2:] == ["--", "/bin/true"]


def test_server_command_resolves_the_program_on_the_spawners_path(session_spawner, tmp_path):
    prog = tmp_path / "jupyterhub-singleuser"
    prog.write_text("#!/bin/sh\n")
    prog.chmod(0o755)
    cmd = session_spawner.server_command({"PATH": str(tmp_path)})
    assert cmd[0] == str(prog)
    # Not found anywhere: left as it is, for the keeper to report (exit 127).
    session_spawner.cmd = ["no-such-program-anywhere"]
    assert session_spawner.server_command({"PATH": str(tmp_path)})[0] == "no-such-program-anywhere"


def test_server_command_with_shell_cmd_quotes_the_command(session_spawner):
    session_spawner.cmd = ["/opt/hub/bin/jupyterhub-singleuser"]
    session_spawner.args = ["--notebook-dir=/srv/my notebooks"]
    session_spawner.shell_cmd = ["/bin/bash", "-l", "-c"]
    cmd = session_spawner.server_command({})
    assert cmd[:3] == ["/bin/bash", "-l", "-c"]
    assert cmd[3].startswith("/opt/hub/bin/jupyterhub-singleuser ")
    assert "'--notebook-dir=/srv/my notebooks'" in cmd[3]


def test_env_memfd_is_the_proc_environ_layout_and_close_on_exec():
    fd = env_memfd({"A": "1", "JUPYTERHUB_API_TOKEN": "s3cret", "": "dropped", "B=C": "dropped", "U": "ü"})
    try:
        assert not os.get_inheritable(fd)
        data = os.read(fd, 1 << 16)
    finally:
        os.close(fd)
    assert data == b"A=1\0JUPYTERHUB_API_TOKEN=s3cret\0U=\xc3\xbc\0"


def test_keeper_env_is_only_path():
    assert KEEPER_ENV == {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def test_make_preexec_fn_keeps_the_keeper_root(session_spawner):
    assert session_spawner.make_preexec_fn("anyone") is None


@pytest.mark.parametrize("bad", ["", "/etc/pam.d/jupyterhub", "..", "a/b"])
def test_pam_service_must_be_a_service_name(bad):
    with pytest.raises(TraitError, match="pam_service .* is not a PAM service name"):
        SessionSpawner(pam_service=bad)


@pytest.mark.parametrize("bad", ["", "bin/jupyter-session"])
def test_jupyter_session_path_must_be_a_name_or_absolute(bad):
    with pytest.raises(TraitError, match="jupyter_session_path"):
        SessionSpawner(jupyter_session_path=bad)


def test_good_traits_are_kept():
    s = SessionSpawner(pam_service="jupyterhub-sudo", jupyter_session_path="/usr/local/bin/jupyter-session")
    assert (s.pam_service, s.jupyter_session_path) == ("jupyterhub-sudo", "/usr/local/bin/jupyter-session")
