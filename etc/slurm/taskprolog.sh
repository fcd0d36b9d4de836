#!/bin/sh
# Slurm TaskProlog for jupyter-session (slurmstepd runs it as the job's user
# before each task; Slurm reads `export NAME=value` lines from its stdout,
# literally, without shell quoting): XDG_RUNTIME_DIR when the user's runtime
# dir is there and theirs, DBUS_SESSION_BUS_ADDRESS when its bus socket is,
# and PATH from the config. Nothing for root and system users.
#
# Edit these two lines to match the install:
JUPYTER_SESSION=/usr/local/bin/jupyter-session
CONFIG=
[ -n "$CONFIG" ] && set -- --config "$CONFIG"

"$JUPYTER_SESSION" env "$@"
exit 0
