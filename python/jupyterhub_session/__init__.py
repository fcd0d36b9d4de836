"""JupyterHub recipes for jupyter-session: every single-user server in a real login session."""

__all__ = ["SessionSpawner", "PodmanSessionSpawner", "gc_after_stop", "singleuser_main"]
__version__ = "0.1.0"


def __getattr__(name):
    # Lazy: the sudospawner-singleuser hook imports .sudo and must start fast (it has about a
    # second before sudospawner's mediator returns), without importing JupyterHub.
    if name == "SessionSpawner":
        from .spawner import SessionSpawner

        return SessionSpawner
    if name == "PodmanSessionSpawner":
        from .podman import PodmanSessionSpawner

        return PodmanSessionSpawner
    if name == "gc_after_stop":
        from .sudo import gc_after_stop

        return gc_after_stop
    if name == "singleuser_main":
        from .sudo import singleuser_main

        return singleuser_main
    raise AttributeError(f"module 'jupyterhub_session' has no attribute {name!r}")
