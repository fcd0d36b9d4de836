"""Fixtures for the unit tests: spawners with a real JupyterHub User object for the current
process's own passwd entry (no root, no hub, no database)."""

import os
import pwd
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@pytest.fixture
def me():
    return pwd.getpwuid(os.getuid())


def _user(me):
    # Spawner only reads .name (and .url / .server for get_env); a namespace with those is
    # what JupyterHub's own spawner tests use as well.
    return SimpleNamespace(name=me.pw_name, url="/user/" + me.pw_name + "/", server=None, id=1)


@pytest.fixture
def session_spawner(me):
    from jupyterhub_session.spawner import SessionSpawner

    return SessionSpawner(user=_user(me), cmd=["jupyterhub-singleuser"], port=12345)


@pytest.fixture
def podman_spawner(me):
    from jupyterhub_session.podman import PodmanSessionSpawner

    return PodmanSessionSpawner(user=_user(me), cmd=["jupyterhub-singleuser"], port=12345, image="localhost/bb")
