"""SessionSpawner: single-user servers inside a PAM session kept by `jupyter-session exec`.

The hub (as root) starts the keeper, not the server: the keeper opens a PAM session for the user
(service `pam_service`), forks, drops privileges in its child and runs the server there, forwards
signals, and closes the session when the server exits. So nothing here may drop privileges in the
hub's fork, and the keeper's pid is the spawner's pid: LocalProcessSpawner's poll and stop
(SIGINT, SIGTERM, SIGKILL) act on the keeper, which passes the signals on.
"""

import os
import pwd
import shlex
import shutil
from subprocess import Popen

from jupyterhub.spawner import LocalProcessSpawner
from jupyterhub.utils import random_port
from traitlets import Unicode


class SessionSpawner(LocalProcessSpawner):
    """LocalProcessSpawner whose servers run through `jupyter-session exec`."""

    jupyter_session_path = Unicode(
        "jupyter-session",
        help="""The `jupyter-session` binary (a name looked up in the hub's PATH, or an absolute path).""",
    ).tag(config=True)

    pam_service = Unicode(
        "jupyterhub",
        help="""PAM service the keeper opens the user's session with (/etc/pam.d/<name>; put
        `session required pam_jupyter.so` in it).""",
    ).tag(config=True)

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

    def keeper_command(self, command, env):
        """The argv that runs `command` (a list) as this spawner's user through the keeper."""
        user = pwd.getpwnam(self.user.name)
        keeper = [
            self._resolve(self.jupyter_session_path, os.environ.get("PATH"), os.defpath),
            "exec",
            "--service",
            self.pam_service,
            "--user",
            self.user.name,
        ]
        if user.pw_dir and os.path.isdir(user.pw_dir):
            # Where LocalProcessSpawner's preexec would have gone; the keeper does it as the user.
            keeper += ["--chdir", user.pw_dir]
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
        argv = self.keeper_command(self.server_command(env), env)
        self.log.info("Spawning %s", shlex.join(argv))
        kwargs = dict(start_new_session=True, cwd="/")
        kwargs.update(self.popen_kwargs)
        kwargs["env"] = env
        kwargs["preexec_fn"] = None
        try:
            self.proc = Popen(argv, **kwargs)
        except OSError as e:
            self.log.error("Cannot start the session keeper %r: %s", argv[0], e)
            raise
        self.pid = self.proc.pid
        return (self.ip or "127.0.0.1", self.port)
