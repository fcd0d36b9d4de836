"""SessionSpawner: single-user servers inside a PAM session kept by `jupyter-session exec`.

The hub (as root) starts the keeper, not the server: the keeper opens a PAM session for the user
(service `pam_service`), forks, drops privileges in its child and runs the server there, forwards
signals, and closes the session when the server exits. So nothing here may drop privileges in the
hub's fork, and the keeper's pid is the spawner's pid: LocalProcessSpawner's poll and stop
(SIGINT, SIGTERM, SIGKILL) act on the keeper, which passes the signals on.

The server's environment (`get_env()`, with the API token) goes to the keeper on an inherited
memfd (`--env-fd`), never on a command line; the keeper itself, a root process, starts with
KEEPER_ENV only, so no LD_PRELOAD or the like from `c.Spawner.environment` reaches it.
"""

import os
import pwd
import shlex
import shutil
from subprocess import Popen

from jupyterhub.spawner import LocalProcessSpawner
from jupyterhub.utils import random_port
from traitlets import TraitError, Unicode, validate


# The keeper's own environment: nothing the dynamic loader or libc would act on as root.
KEEPER_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def env_memfd(env):
    """A memfd holding `env` as NAME=value entries each ended by NUL (the /proc/PID/environ
    layout `jupyter-session exec --env-fd` reads), positioned at its start. Close-on-exec, so no
    other process the hub starts meanwhile inherits it: pass it with `pass_fds` (which makes it
    inheritable in that child only) and close it after the fork."""
    data = b"".join(
        os.fsencode(k) + b"=" + os.fsencode(v) + b"\0" for k, v in env.items() if k and "=" not in k
    )
    fd = os.memfd_create("jupyter-session-env", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


class SessionSpawner(LocalProcessSpawner):
    """LocalProcessSpawner whose servers run through `jupyter-session exec`."""

    jupyter_session_path = Unicode(
        "jupyter-session",
        help="""The `jupyter-session` binary (a name looked up in the hub's PATH, or an absolute path).""",
    ).tag(config=True)

    config_file = Unicode(
        "",
        help="""The jupyter-session config file the keeper is given (`exec --config`); empty: the default
        /etc/security/jupyter-session.toml. pam_jupyter in `pam_service` must read the same file
        (`config=` on its line, or none for the default): the keeper refuses a session otherwise.""",
    ).tag(config=True)

    pam_service = Unicode(
        "jupyterhub",
        help="""PAM service the keeper opens the user's session with (/etc/pam.d/<name>; put
        `session required pam_jupyter.so` in it).""",
    ).tag(config=True)

    @validate("pam_service")
    def _valid_pam_service(self, proposal):
        name = proposal["value"]
        if not name or "/" in name or name in (".", ".."):
            raise TraitError(
                f"SessionSpawner.pam_service {name!r} is not a PAM service name: name a file in "
                "/etc/pam.d (e.g. 'jupyterhub'), without a path"
            )
        return name

    @validate("jupyter_session_path")
    def _valid_jupyter_session_path(self, proposal):
        path = proposal["value"]
        if not path or (os.sep in path and not os.path.isabs(path)):
            raise TraitError(
                f"SessionSpawner.jupyter_session_path {path!r}: give a name looked up on the hub's "
                "PATH ('jupyter-session') or an absolute path ('/usr/bin/jupyter-session')"
            )
        return path

    def make_preexec_fn(self, name):
        # The keeper must start as root: it opens the PAM session and drops privileges itself.
        return None

    def _resolve(self, command, *paths):
        """An absolute path for `command`, from the first of `paths` (PATH strings) that has it.
        The keeper searches the session's PATH, which need not contain the hub's virtualenv."""
        if os.sep in command:
            return command
        for path in paths:
            found = shutil.which(command, path=path) if path else None
            if found:
                return found
        return command

    def keeper_command(self, command, env, env_fd=None):
        """The argv that runs `command` (a list) as this spawner's user through the keeper; the
        command's environment is read from `env_fd` (see `env_memfd`)."""
        user = pwd.getpwnam(self.user.name)
        keeper = [
            self._resolve(self.jupyter_session_path, os.environ.get("PATH"), os.defpath),
            "exec",
            "--service",
            self.pam_service,
            "--user",
            self.user.name,
        ]
        if self.config_file:
            keeper += ["--config", self.config_file]
        if user.pw_dir and os.path.isdir(user.pw_dir):
            # Where LocalProcessSpawner's preexec would have gone; the keeper does it as the user.
            keeper += ["--chdir", user.pw_dir]
        if env_fd is not None:
            keeper += ["--env-fd", str(env_fd)]
        return keeper + ["--"] + command

    def server_command(self, env):
        """The single-user command as LocalProcessSpawner would run it, its program made absolute."""
        command = list(self.cmd) + list(self.get_args())
        if self.shell_cmd:
            command = list(self.shell_cmd) + [shlex.join(command)]
        # The spawner's PATH first; then the hub's own (a wrapper such as ProfilesSpawner may hand
        # its child an env_keep without PATH).
        command[0] = self._resolve(command[0], env.get("PATH"), os.environ.get("PATH"))
        return command

    async def start(self):
        if self.port == 0:
            self.port = random_port()
        env = self.get_env()
        env_fd = env_memfd(env)
        try:
            argv = self.keeper_command(self.server_command(env), env, env_fd)
            self.log.info("Spawning %s", shlex.join(argv))
            kwargs = dict(start_new_session=True, cwd="/")
            kwargs.update(self.popen_kwargs)
            kwargs["env"] = dict(KEEPER_ENV)
            kwargs["preexec_fn"] = None
            kwargs["pass_fds"] = tuple(kwargs.get("pass_fds", ())) + (env_fd,)
            try:
                self.proc = Popen(argv, **kwargs)
            except OSError as e:
                self.log.error("Cannot start the session keeper %r: %s", argv[0], e)
                raise
        finally:
            os.close(env_fd)
        self.pid = self.proc.pid
        return (self.ip or "127.0.0.1", self.port)
