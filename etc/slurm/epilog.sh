#!/bin/sh
# Slurm Epilog for jupyter-session (slurmd runs it as root on each node when
# the job ends): close the job's session; the runtime dir goes with the
# user's last session on the node.
#
# An Epilog that exits non-zero drains the node, so a job that never opened a
# session (root, system users, an allocation whose Prolog did not run) is no
# error (--missing-ok). What still fails (exit 125, reason on stderr) is a
# node where sessions cannot work (a broken config, an unsafe state dir).
#
# Edit these two lines to match the install:
JUPYTER_SESSION=/usr/local/bin/jupyter-session
CONFIG=
[ -n "$CONFIG" ] && set -- --config "$CONFIG"

exec "$JUPYTER_SESSION" close "$@" --id "slurm-$SLURM_JOB_ID" --missing-ok
