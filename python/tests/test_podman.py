"""PodmanSessionSpawner: the podman argv, what enters the container, traits, progress."""

import asyncio
import os
import shlex
import subprocess

import pytest
from traitlets import TraitError

from jupyterhub_session.podman import PROGRESS_STAGES, WRAPPER, PodmanSessionSpawner


def test_run_args_default(podman_spawner, me):
    env = {"JUPYTERHUB_API_TOKEN": "s3cret", "JUPYTERHUB_USER": me.pw_name, "PATH": "/venv/bin", "LANG": "C"}
    args = podman_spawner.run_args(env)
    name = f"jupyter-{me.pw_name}"
    assert args[:5] == ["run", "--rm", "--replace", "--name", name]
    for flag in ["--userns=keep-id", "--network=host", "--sig-proxy=true", "--init"]:
        assert flag in args
    assert args[args.index("--volume") + 1] == f"{me.pw_dir}:{me.pw_dir}"
    assert args[args.index("--workdir") + 1] == me.pw_dir
    assert "--publish" not in args
    # Secrets by name only; host paths not at all.
    token = args.index("JUPYTERHUB_API_TOKEN")
    assert args[token - 1] == "--env"
    assert not any("s3cret" in a for a in args)
    assert "PATH" not in args and not any(a.startswith("PATH=") for a in args)
    assert args[-2:] == ["localhost/bb", "jupyterhub-singleuser"]


def test_run_args_other_network_publishes_the_port_and_listens_everywhere(podman_spawner):
    podman_spawner.network = "slirp4netns"
    args = podman_spawner.run_args({})
    assert args[args.index("--publish") + 1] == "127.0.0.1:12345:12345"
    assert args[-1] == "--ip=0.0.0.0"


def test_run_args_limits_volumes_and_fields(podman_spawner, me):
    podman_spawner.mem_limit = "4G"
    podman_spawner.cpu_limit = 2.0
    podman_spawner.volumes = ["/srv/shared:/srv/shared:ro", "{home}/data:/data"]
    podman_spawner.extra_podman_args = ["--label", "uid={uid}"]
    podman_spawner.home_mount = "/home/jovyan"
    podman_spawner.container_labels = {"b": "2", "a": "1"}
    args = podman_spawner.run_args({})
    assert args[args.index("--memory") + 1] == str(4 * 1024**3)
    assert args[args.index("--cpus") + 1] == "2.0"
    assert f"{me.pw_dir}/data:/data" in args
    assert f"uid={me.pw_uid}" in args
    assert f"{me.pw_dir}:/home/jovyan" in args and "HOME=/home/jovyan" in args
    labels = [args[i + 1] for i, a in enumerate(args) if a == "--label"]
    assert labels[:3] == [f"io.jupyter.hub.user={me.pw_name}", "a=1", "b=2"]


def test_container_env_names_filter(podman_spawner):
    podman_spawner.environment = {"MY_SETTING": "x"}
    env = {
        "JUPYTERHUB_API_TOKEN": "t",
        "JUPYTERHUB_SERVICE_URL": "u",
        "JPY_API_TOKEN": "t",
        "MY_SETTING": "x",
        "LANG": "C.UTF-8",
        "PATH": "/venv/bin",
        "VIRTUAL_ENV": "/venv",
        "XDG_RUNTIME_DIR": "/run/user/0",
        "CONFIGPROXY_AUTH_TOKEN": "secret",
    }
    assert podman_spawner.container_env_names(env) == [
        "JPY_API_TOKEN",
        "JUPYTERHUB_API_TOKEN",
        "JUPYTERHUB_SERVICE_URL",
        "LANG",
        "MY_SETTING",
    ]


def test_podman_command_global_options(podman_spawner):
    podman_spawner.podman_path = "/usr/bin/podman"
    podman_spawner.runtime = "runc"
    podman_spawner.cgroup_manager = "cgroupfs"
    podman_spawner.podman_global_args = ["--events-backend", "file"]
    assert podman_spawner.podman_command() == [
        "/usr/bin/podman",
        "--runtime",
        "runc",
        "--cgroup-manager",
        "cgroupfs",
        "--events-backend",
        "file",
    ]


def test_server_command_is_the_wrapper_with_image_and_progress_file(podman_spawner, me):
    podman_spawner.podman_path = "/usr/bin/podman"
    cmd = podman_spawner.server_command({})
    assert cmd[:2] == ["/bin/sh", "-c"]
    assert "/usr/bin/podman unshare true" in cmd[2]
    assert cmd[3:6] == ["podman-session", "localhost/bb", f"jupyter-session-progress-jupyter-{me.pw_name}"]
    assert cmd[6:8] == ["/usr/bin/podman", "run"]


def test_container_name_is_sanitised_and_named_servers_get_a_suffix(podman_spawner, me):
    from types import SimpleNamespace

    podman_spawner.orm_spawner = SimpleNamespace(name="gpu box", server=None)
    assert podman_spawner.container() == f"jupyter-{me.pw_name}-gpu-box"


@pytest.mark.parametrize(
    "trait, value, message",
    [
        ("image", "", "image must not be empty"),
        ("network", " ", "network must not be empty"),
        ("userns", "", "userns must not be empty"),
        ("podman_path", "bin/podman", "podman_path 'bin/podman'"),
        ("home_mount", "home/jovyan", "home_mount 'home/jovyan' must be an absolute path"),
        ("runtime_dir_parent", "run/user", "runtime_dir_parent"),
        ("volumes", ["/srv/shared"], "volumes entry '/srv/shared'"),
        ("volumes", ["/a:relative"], "volumes entry '/a:relative'"),
        ("volumes", ["{nosuchfield}:/x"], "volumes '{nosuchfield}:/x'"),
        ("container_name", "jupyter-{user}", "container_name 'jupyter-{user}'"),
        ("extra_podman_args", ["--label", "{"], "extra_podman_args '{'"),
    ],
)
def test_bad_traits_are_refused_naming_the_trait(trait, value, message):
    with pytest.raises(TraitError) as e:
        PodmanSessionSpawner(**{trait: value})
    assert message in str(e.value)


def test_good_traits_are_kept():
    s = PodmanSessionSpawner(volumes=["{home}/x:/x:ro", "named:/data"], home_mount="", container_name="c-{uid}")
    assert s.volumes == ["{home}/x:/x:ro", "named:/data"]


# -- the wrapper and progress ------------------------------------------------------------------


def _run_wrapper(tmp_path, image_exists):
    """Run the real wrapper with a fake podman that logs its calls."""
    log = tmp_path / "calls"
    podman = tmp_path / "podman"
    podman.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {shlex.quote(str(log))}\n'
        f'case "$1 $2" in "image exists") exit {0 if image_exists else 1};; esac\n'
        'if [ "$1" = run ]; then cat "$XDG_RUNTIME_DIR/prog" >> ' + shlex.quote(str(log)) + "; fi\n"
    )
    podman.chmod(0o755)
    wrapper = WRAPPER.replace("@PODMAN@", shlex.quote(str(podman)))
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path))
    out = subprocess.run(
        ["/bin/sh", "-c", wrapper, "podman-session", "img:1", "prog", str(podman), "run", "img:1"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=10,
    )
    return out.returncode, log.read_text().splitlines(), (tmp_path / "prog").exists()


def test_wrapper_pulls_a_missing_image_then_creates_and_cleans_up(tmp_path):
    rc, calls, left = _run_wrapper(tmp_path, image_exists=False)
    assert rc == 0
    assert calls == ["unshare true", "image exists img:1", "pull img:1", "run img:1", "creating"]
    assert not left


def test_wrapper_does_not_pull_an_image_it_has(tmp_path):
    rc, calls, _ = _run_wrapper(tmp_path, image_exists=True)
    assert calls == ["unshare true", "image exists img:1", "run img:1", "creating"]


def test_read_stage_only_from_a_regular_file_of_the_user(podman_spawner, me, tmp_path):
    podman_spawner.runtime_dir_parent = str(tmp_path)
    rundir = tmp_path / str(me.pw_uid)
    rundir.mkdir()
    progress = rundir / podman_spawner.progress_name()
    assert podman_spawner.read_stage(me.pw_uid) is None
    progress.write_text("pulling\n")
    assert podman_spawner.read_stage(me.pw_uid) == "pulling"
    # Another uid's file (here: ours read as if for uid+1) and a symlink are not read.
    other = tmp_path / str(me.pw_uid + 1)
    other.mkdir()
    (other / podman_spawner.progress_name()).write_text("creating\n")
    assert podman_spawner.read_stage(me.pw_uid + 1) is None
    progress.unlink()
    progress.symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").write_text("creating\n")
    assert podman_spawner.read_stage(me.pw_uid) is None


def test_progress_yields_each_stage_once_in_order(podman_spawner, me, tmp_path, monkeypatch):
    podman_spawner.runtime_dir_parent = str(tmp_path)
    (tmp_path / str(me.pw_uid)).mkdir()
    stages = iter(["session", "session", "pulling", "pulling", "bogus", "creating"])
    monkeypatch.setattr(podman_spawner, "read_stage", lambda uid: next(stages, "creating"))
    monkeypatch.setattr("jupyterhub_session.podman.asyncio.sleep", _no_sleep)

    async def first(n):
        out = []
        async for event in podman_spawner.progress():
            out.append(event)
            if len(out) == n:
                return out

    events = asyncio.run(asyncio.wait_for(first(3), 5))
    assert [e["progress"] for e in events] == [PROGRESS_STAGES[s][0] for s in ("session", "pulling", "creating")]
    assert "Pulling image localhost/bb" in events[1]["message"]
    assert f"jupyter-{me.pw_name}" in events[2]["message"]


async def _no_sleep(_seconds):
    return None


def test_progress_reads_the_stage_file_the_wrapper_writes(podman_spawner, me, tmp_path):
    podman_spawner.runtime_dir_parent = str(tmp_path)
    rundir = tmp_path / str(me.pw_uid)
    rundir.mkdir()
    (rundir / podman_spawner.progress_name()).write_text("pulling\n")

    async def first():
        async for event in podman_spawner.progress():
            return event

    event = asyncio.run(asyncio.wait_for(first(), 5))
    assert event == {
        "progress": 40,
        "message": "Pulling image localhost/bb (the first start for this user can take minutes)",
    }
