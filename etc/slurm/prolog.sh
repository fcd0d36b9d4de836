#!/bin/sh
# Slurm Prolog for jupyter-session (slurmd runs it as root on each node of a
# job, at allocation with PrologFlags=Contain): open the job's session, so
# /run/user/UID exists, the user's and 0700, for every step of the job.
#
# A Prolog that exits non-zero drains the node and requeues the job, so no
# ordinary job makes it fail: jobs jupyter-session does not manage (root,
# system users) exit 0 (--unmanaged-ok), a job id opened again for the same
# user is no error, and one left by another user's job that is gone is
# reaped. What still fails (exit 125, the reason on stderr, which slurmd
# logs) is a node where no session can work: an untrusted or broken config,
# an unsafe /run/user or state dir.
#
# Edit these two lines to match the install:
JUPYTER_SESSION=/usr/local/bin/jupyter-session
CONFIG=
[ -n "$CONFIG" ] && set -- --config "$CONFIG"

# The job's cgroup, made by slurmd right after this script (proctrack/cgroup):
# the session is bound to it, so `jupyter-session gc` ends it when the job is
# gone even if the Epilog never runs (slurmd down when the job ended).
if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
	cgroup=/sys/fs/cgroup/system.slice/slurmstepd.scope/job_$SLURM_JOB_ID
else
	base=/sys/fs/cgroup/freezer/slurm_$SLURMD_NODENAME
	[ -d "$base" ] || base=/sys/fs/cgroup/freezer/slurm
	cgroup=$base/uid_$SLURM_JOB_UID/job_$SLURM_JOB_ID
fi

exec "$JUPYTER_SESSION" open "$@" --user "$SLURM_JOB_USER" --id "slurm-$SLURM_JOB_ID" \
	--service slurm --unmanaged-ok --bind-cgroup "$cgroup"
