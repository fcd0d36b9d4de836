"""JupyterHub recipes for jupyter-session: every single-user server in a real login session."""

from .spawner import SessionSpawner
from .sudo import gc_after_stop

__all__ = ["SessionSpawner", "gc_after_stop"]
__version__ = "0.1.0"
