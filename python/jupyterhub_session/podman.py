"""PodmanSessionSpawner: each user's server in a rootless podman container, inside a real session.

The hub (as root) runs, for each server::

    jupyter-session exec --service jupyterhub --user NAME --env-fd N -- \\
        /bin/sh -c <wrapper> podman-session podman run --rm --replace --name jupyter-NAME \\
            --userns=keep-id --network=host --init --sig-proxy=true \\
            --volume HOME:HOME --workdir HOME --env JUPYTERHUB_API_TOKEN ... IMAGE jupyterhub-singleuser ...

in the foreground. The keeper opens the user's PAM session (pam_jupyter makes /run/user/UID and
exports XDG_RUNTIME_DIR), drops privileges and runs podman as the user; the keeper's pid is the
spawner's pid, so poll and stop work as for SessionSpawner: the hub's SIGINT/SIGTERM reach the keeper,
which passes them to the wrapper, which passes them to `podman run`, whose --sig-proxy passes them to
the container's init, which passes them to the server. When the server exits the container is removed
(--rm); then the keeper closes the session, and pam_jupyter stops the user's rootless pause process if
nothing else of the user runs (its `stop_pause_process` setting) and removes the runtime dir.

What this does differently from a detached `podman run -d` spawner: the runtime dir lives exactly as
long as the container (it is the session's); the environment (XDG_RUNTIME_DIR, PATH, USER...) comes
from the session, not from hard-coded values; the API token and other JUPYTERHUB_* values are passed
by name (`--env NAME`, the value taken from podman's environment), never on a command line that every
local user can read in /proc; and with --userns=keep-id the user's own uid owns the mounted home
inside the container as outside.
"""

import os
import re
import shlex

from traitlets import Bool, Dict, List, Unicode

from .spawner import SessionSpawner

# Runs as the user inside the session, as `sh -c WRAPPER podman-session PODMAN-RUN-ARGV...`.
# @PODMAN@ is replaced by the quoted podman command with its global options.
#  - First `podman unshare true`: it makes the user namespace and its pause process. The `podman run`
#    that makes them itself (podman 4.3.1, seen here) exits at once with status 1 when it gets
#    SIGINT or SIGTERM, leaving its re-executed child to run and remove the container on its own; a
#    `podman run` that joins an existing namespace waits for the container and returns its status.
#  - `podman run` runs as a background job so that the traps run at once; each forwarded signal
#    goes to podman, whose --sig-proxy passes it on. A non-interactive sh starts background jobs with
#    SIGINT ignored (podman's sig-proxy installs handlers for every signal, which undoes that) and
#    stdin from /dev/null: podman's stdin is given back explicitly (with sh's /dev/null, podman run
#    on this podman 4.3 waited out its 20 s conmon timeout after the container exited).
#  - The rootless pause process podman leaves is not the wrapper's business: at the session's close
#    pam_jupyter stops it when it is all that is left of the user (`stop_pause_process`).
WRAPPER = r"""
@PODMAN@ unshare true >/dev/null 2>&1
exec 3<&0
"$@" 0<&3 3<&- &
child=$!
exec 3<&-
for sig in INT TERM HUP QUIT USR1 USR2; do
    trap "kill -$sig $child 2>/dev/null" $sig
done
while :; do
    wait "$child"
    rc=$?
    # wait returns early when a trapped signal arrives; the job is then still there.
    kill -0 "$child" 2>/dev/null || break
done
trap - INT TERM HUP QUIT USR1 USR2
exit "$rc"
"""

_NAME_BAD = re.compile(r"[^a-zA-Z0-9_.-]")


class PodmanSessionSpawner(SessionSpawner):
    """SessionSpawner whose server is `podman run --rm` (rootless, in the foreground) in the session."""

    image = Unicode(
        "quay.io/jupyter/base-notebook:latest",
        help="""The image the server runs in. It must have `jupyterhub-singleuser` (or whatever
        `cmd` names) on its PATH, with a jupyterhub version compatible with the hub's. With
        `--userns=keep-id` the server runs as the user's own uid, not the image's user: its files
        must be readable by any uid (true of the Jupyter docker-stacks images).""",
    ).tag(config=True)

    podman_path = Unicode(
        "podman",
        help="""The podman binary (a name looked up in the hub's PATH, or an absolute path).""",
    ).tag(config=True)

    runtime = Unicode(
        "",
        help="""OCI runtime (`podman --runtime`), e.g. "runc" where crun refuses the host's cgroup
        layout ("cgroups in hybrid mode not supported"). Empty: podman's default
        (containers.conf).""",
    ).tag(config=True)

    storage_driver = Unicode(
        "",
        help="""Storage driver (`podman --storage-driver`), e.g. "overlay" (native rootless overlay,
        kernel 5.13+), "fuse-overlayfs" is selected via overlay's mount_program in storage.conf,
        "vfs" works everywhere but copies every layer. Empty: podman's default. Changing it for a
        user who already has images requires `podman system reset` for that user.""",
    ).tag(config=True)

    cgroup_manager = Unicode(
        "",
        help="""`podman --cgroup-manager`: "cgroupfs" on hosts without a systemd user session
        (podman otherwise warns and falls back to it). Empty: podman's default.""",
    ).tag(config=True)

    podman_global_args = List(
        Unicode(),
        help="""More global podman options, before `run` (e.g. ["--events-backend", "file"]).""",
    ).tag(config=True)

    network = Unicode(
        "host",
        help="""`--network` of the container. "host" (the default): the server listens on the
        host's loopback like a process spawner's server, the proxy reaches it and it reaches the
        hub's API without any forwarding; rootless podman needs neither slirp4netns nor
        /dev/net/tun for it. Anything else ("slirp4netns", "pasta", a network name) publishes the
        server's port on 127.0.0.1 of the host and makes the server listen on all addresses of the
        container; the hub's API must then be reachable from inside the container (set
        c.JupyterHub.hub_connect_ip, or slirp4netns:allow_host_loopback=true).""",
    ).tag(config=True)

    userns = Unicode(
        "keep-id",
        help="""`--userns` of the container. "keep-id": the container runs as the user's own uid
        and gid (the rest of the container's ids map to the user's subordinate ids), so the mounted
        home is owned by the server's user inside as outside. For images whose user is jovyan (uid
        1000, gid 100), "keep-id:uid=1000,gid=100" (podman 4.3+) makes jovyan the host user.""",
    ).tag(config=True)

    home_mount = Unicode(
        "",
        help="""Where the user's home is mounted (read-write) in the container; also the working
        directory and HOME there. Empty: the same path as on the host. "/home/jovyan" for the
        Jupyter docker-stacks images. Set `mount_home = False` to mount nothing.""",
    ).tag(config=True)

    mount_home = Bool(True, help="""Mount the user's home into the container.""").tag(config=True)

    volumes = List(
        Unicode(),
        help="""More `--volume` specs, "SRC:DST[:OPTIONS]". {username}, {home} and {uid} are
        replaced (e.g. "/srv/shared:/srv/shared:ro").""",
    ).tag(config=True)

    extra_podman_args = List(
        Unicode(),
        help="""More `podman run` options, before the image (e.g. ["--pids-limit", "512"]).
        {username}, {home} and {uid} are replaced.""",
    ).tag(config=True)

    container_name = Unicode(
        "jupyter-{username}{servername_suffix}",
        help="""The container's name ({username}, {servername}, {servername_suffix} = "-NAME" for
        named servers). A container of that name left by an earlier, killed server is replaced
        (--replace).""",
    ).tag(config=True)

    init = Bool(
        True,
        help="""`--init`: a minimal init (catatonit) as the container's pid 1 passes signals on to
        the server and reaps orphaned processes (kernels' children).""",
    ).tag(config=True)

    container_env = List(
        Unicode(),
        ["LANG", "LC_ALL", "TZ", "MEM_LIMIT", "CPU_LIMIT", "MEM_GUARANTEE", "CPU_GUARANTEE"],
        help="""Names from the spawner's environment passed into the container besides every
        JUPYTERHUB_* variable, JPY_API_TOKEN and the keys of `environment`. Nothing else of the
        hub's or the session's environment enters the container (PATH, VIRTUAL_ENV and the like
        are host paths).""",
    ).tag(config=True)

    container_labels = Dict(
        {},
        help="""More `--label` key/value pairs for the container.""",
    ).tag(config=True)

    # -- the command --------------------------------------------------------------------------

    def _fields(self):
        import pwd

        user = pwd.getpwnam(self.user.name)
        servername = self.name or ""
        return {
            "username": self.user.name,
            "uid": str(user.pw_uid),
            "home": user.pw_dir,
            "servername": servername,
            "servername_suffix": f"-{servername}" if servername else "",
        }

    def podman_command(self):
        """podman with its global options."""
        base = [self._resolve(self.podman_path, os.environ.get("PATH"), os.defpath)]
        for option, value in (
            ("--runtime", self.runtime),
            ("--storage-driver", self.storage_driver),
            ("--cgroup-manager", self.cgroup_manager),
        ):
            if value:
                base += [option, value]
        return base + list(self.podman_global_args)

    def container_env_names(self, env):
        """The environment variables (names only) that go into the container."""
        keep = set(self.container_env) | set(self.environment)
        return sorted(
            k for k in env if k.startswith("JUPYTERHUB_") or k == "JPY_API_TOKEN" or k in keep
        )

    def singleuser_command(self):
        """The server's argv inside the container (resolved on the image's PATH, not the hub's)."""
        command = list(self.cmd) + list(self.get_args())
        if self.network != "host":
            # Reached through the published port: listen on the container's own interfaces.
            command.append("--ip=0.0.0.0")
        if self.shell_cmd:
            command = list(self.shell_cmd) + [shlex.join(command)]
        return command

    def run_args(self, env):
        """`podman run` and its options, the image and the server's command."""
        f = self._fields()
        home = f["home"]
        target = self.home_mount or home
        name = _NAME_BAD.sub("-", self.container_name.format(**f))
        args = [
            "run",
            "--rm",
            "--replace",
            "--name",
            name,
            f"--userns={self.userns}",
            f"--network={self.network}",
            "--sig-proxy=true",
            "--label",
            f"io.jupyter.hub.user={self.user.name}",
        ]
        for key, value in sorted(self.container_labels.items()):
            args += ["--label", f"{key}={value}"]
        if self.init:
            args.append("--init")
        if self.network != "host":
            args += ["--publish", f"127.0.0.1:{self.port}:{self.port}"]
        if self.mount_home:
            args += ["--volume", f"{home}:{target}", "--workdir", target]
        for spec in self.volumes:
            args += ["--volume", spec.format(**f)]
        if self.mem_limit:
            args += ["--memory", str(int(self.mem_limit))]
        if self.mem_guarantee:
            args += ["--memory-reservation", str(int(self.mem_guarantee))]
        if self.cpu_limit:
            args += ["--cpus", str(self.cpu_limit)]
        # HOME and USER by value (not secret); everything else by name: podman takes the value from
        # its own environment, which the keeper gives it, so no secret is on a command line.
        args += ["--env", f"HOME={target}", "--env", f"USER={self.user.name}"]
        for key in self.container_env_names(env):
            if key not in ("HOME", "USER"):
                args += ["--env", key]
        args += [arg.format(**f) for arg in self.extra_podman_args]
        return args + [self.image] + self.singleuser_command()

    def server_command(self, env):
        wrapper = WRAPPER.replace("@PODMAN@", shlex.join(self.podman_command()))
        return ["/bin/sh", "-c", wrapper, "podman-session"] + self.podman_command() + self.run_args(env)

    async def start(self):
        ip, port = await super().start()
        # The hub reaches the server on the host's loopback, with --network=host directly and
        # otherwise through the published port.
        return ("127.0.0.1" if self.network != "host" else ip, port)
