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

import asyncio
import os
import re
import shlex
import stat

from traitlets import Bool, Dict, List, TraitError, Unicode, validate

from .spawner import SessionSpawner

# Runs as the user inside the session, as `sh -c WRAPPER podman-session IMAGE PROGRESS PODMAN-RUN-ARGV...`.
# @PODMAN@ is replaced by the quoted podman command with its global options.
#  - It writes its stage (session, pulling, creating) into $XDG_RUNTIME_DIR/PROGRESS, which the
#    spawner's `progress()` reads as root; an image not in the user's storage is pulled first, so a
#    long pull shows on the spawn page instead of running silently into start_timeout.
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
image=$1
progress=${XDG_RUNTIME_DIR:+$XDG_RUNTIME_DIR/$2}
shift 2
say() { if [ -n "$progress" ]; then printf '%s\n' "$1" >"$progress" 2>/dev/null; fi; :; }
say session
@PODMAN@ unshare true >/dev/null 2>&1
if ! @PODMAN@ image exists "$image" >/dev/null 2>&1; then
    say pulling
    @PODMAN@ pull "$image" >&2 || :
fi
say creating
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
if [ -n "$progress" ]; then rm -f "$progress"; fi
exit "$rc"
"""

# What `progress()` reports for each stage the wrapper writes into its progress file.
PROGRESS_STAGES = {
    "session": (20, "Session opened for {username}; starting podman"),
    "pulling": (40, "Pulling image {image} (the first start for this user can take minutes)"),
    "creating": (70, "Creating container {container}"),
}

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

    runtime_dir_parent = Unicode(
        "/run/user",
        help="""Where pam_jupyter makes runtime dirs (its `runtime_dir_parent`): `progress()` reads
        the start's stage from the user's runtime dir there.""",
    ).tag(config=True)

    # -- validation ---------------------------------------------------------------------------

    @validate("image", "network", "userns", "podman_path")
    def _valid_not_empty(self, proposal):
        value = proposal["value"]
        name = proposal["trait"].name
        if not value.strip():
            raise TraitError(f"PodmanSessionSpawner.{name} must not be empty")
        if name == "podman_path" and os.sep in value and not os.path.isabs(value):
            raise TraitError(
                f"PodmanSessionSpawner.podman_path {value!r}: give a name looked up on the hub's "
                "PATH ('podman') or an absolute path"
            )
        return value

    @validate("home_mount", "runtime_dir_parent")
    def _valid_absolute(self, proposal):
        value = proposal["value"]
        name = proposal["trait"].name
        if name == "home_mount" and value == "":
            return value
        if not os.path.isabs(value):
            raise TraitError(f"PodmanSessionSpawner.{name} {value!r} must be an absolute path")
        return value

    @staticmethod
    def _check_volumes(specs):
        for spec in specs:
            parts = spec.split(":")
            if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/"):
                raise TraitError(
                    f"PodmanSessionSpawner.volumes entry {spec!r}: expected 'SRC:DST' or "
                    "'SRC:DST:OPTIONS' with an absolute DST, e.g. '/srv/shared:/srv/shared:ro'"
                )

    @validate("container_name", "volumes", "extra_podman_args")
    def _valid_fields(self, proposal):
        value = proposal["value"]
        name = proposal["trait"].name
        fields = {k: "x" for k in ("username", "uid", "home", "servername", "servername_suffix")}
        for text in [value] if isinstance(value, str) else value:
            try:
                text.format(**fields)
            except (KeyError, IndexError, ValueError) as e:
                raise TraitError(
                    f"PodmanSessionSpawner.{name} {text!r}: {e!r}; the fields are "
                    "{username}, {uid}, {home}, {servername}, {servername_suffix} (write {{ and }} "
                    "for literal braces)"
                ) from None
        if name == "volumes":
            self._check_volumes(value)
        return value

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
        name = self.container()
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

    def container(self):
        """The container's name."""
        return _NAME_BAD.sub("-", self.container_name.format(**self._fields()))

    def progress_name(self):
        """The progress file's name in the user's runtime dir."""
        return f"jupyter-session-progress-{self.container()}"

    def server_command(self, env):
        wrapper = WRAPPER.replace("@PODMAN@", shlex.join(self.podman_command()))
        return (
            ["/bin/sh", "-c", wrapper, "podman-session", self.image, self.progress_name()]
            + self.podman_command()
            + self.run_args(env)
        )

    # -- progress -----------------------------------------------------------------------------

    def read_stage(self, uid):
        """The stage the wrapper last wrote, or None. Read as root from a directory the user owns:
        no symlink followed, only a regular file of the user's, at most 64 bytes."""
        path = os.path.join(self.runtime_dir_parent, str(uid), self.progress_name())
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != uid:
                return None
            return os.read(fd, 64).decode(errors="replace").strip() or None
        finally:
            os.close(fd)

    def progress_events(self, stages):
        """The events for a sequence of stages: one per new known stage, in order."""
        fields = {"username": self.user.name, "image": self.image, "container": self.container()}
        events = []
        for stage in stages:
            if stage in PROGRESS_STAGES and (not events or events[-1][0] != stage):
                percent, message = PROGRESS_STAGES[stage]
                events.append((stage, {"progress": percent, "message": message.format(**fields)}))
        return [event for _, event in events]

    async def progress(self):
        """Spawn progress for the hub's spawn page: the session opened, the image being pulled (on
        a user's first start), the container being created. JupyterHub stops iterating once the
        server is up."""
        import pwd

        loop = asyncio.get_running_loop()
        uid = (await loop.run_in_executor(None, pwd.getpwnam, self.user.name)).pw_uid
        seen = []
        while True:
            stage = await loop.run_in_executor(None, self.read_stage, uid)
            if stage is not None and (not seen or seen[-1] != stage) and stage in PROGRESS_STAGES:
                seen.append(stage)
                yield self.progress_events(seen)[-1]
            await asyncio.sleep(0.5)

    async def start(self):
        ip, port = await super().start()
        # The hub reaches the server on the host's loopback, with --network=host directly and
        # otherwise through the published port.
        return ("127.0.0.1" if self.network != "host" else ip, port)
