#!/usr/bin/env bash
# Build and install jupyter-session: the PAM module, the CLI and the PAM
# service file for JupyterHub. Run as root from the source tree:
#
#   sudo ./install.sh                 # build (release) and install
#   sudo ./install.sh --from DIR      # install binaries already built in DIR
#   sudo ./install.sh --selinux       # also the SELinux policy module, the keeper's
#                                     # contexts entries and the registry's tmpfiles entry
#
# DESTDIR=/some/root installs below that root instead (packaging, tests).
# An existing /etc/pam.d/jupyterhub that differs is never overwritten: the
# new file is written next to it as jupyterhub.jupyter-session-new.
set -euo pipefail
cd "$(dirname "$0")"
destdir=${DESTDIR:-}
from=""
selinux=0
while [ $# -gt 0 ]; do
  case "$1" in
    --from) from=${2:?--from needs a directory}; shift 2 ;;
    --selinux) selinux=1; shift ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
die() { echo "install.sh: $*" >&2; exit 1; }
[ -n "$destdir" ] || [ "$(id -u)" = 0 ] || die "run as root (it installs a PAM module), or set DESTDIR"

if [ -z "$from" ]; then
  command -v cargo >/dev/null || die "cargo not found: install Rust 1.85 or newer (https://rustup.rs), then run again"
  [ -e /usr/include/security/pam_modules.h ] || die "PAM headers missing: apt-get install libpam0g-dev (Debian/Ubuntu) or dnf install pam-devel (Fedora/RHEL)"
  [ -e /usr/include/selinux/selinux.h ] || die "SELinux headers missing: apt-get install libselinux1-dev (Debian/Ubuntu) or dnf install libselinux-devel (Fedora/RHEL)"
  cargo build --release --workspace --locked 2>/dev/null || cargo build --release --workspace
  from=target/release
fi
[ -f "$from/libpam_jupyter.so" ] && [ -f "$from/jupyter-session" ] || die "$from has no libpam_jupyter.so and jupyter-session: build first"

# Where this system's PAM modules live (Debian multiarch, Fedora lib64...).
unix=$(find /lib /usr/lib /lib64 /usr/lib64 -name pam_unix.so -path '*security*' 2>/dev/null | head -n 1)
[ -n "$unix" ] || die "cannot find the PAM module directory (no pam_unix.so): is libpam installed?"
moddir=$(dirname "$unix")
if [ -e /etc/redhat-release ] || [ -e /etc/fedora-release ]; then flavour=rhel; else flavour=debian; fi

install -D -m 0644 "$from/libpam_jupyter.so" "$destdir$moddir/pam_jupyter.so"
install -D -m 0755 "$from/jupyter-session" "$destdir/usr/local/bin/jupyter-session"
echo "installed $destdir$moddir/pam_jupyter.so"
echo "installed $destdir/usr/local/bin/jupyter-session"

service_src=etc/pam.d/jupyterhub.$flavour
service_dst=$destdir/etc/pam.d/jupyterhub
if [ -f "$service_src" ]; then
  mkdir -p "$(dirname "$service_dst")"
  if [ ! -e "$service_dst" ]; then
    install -m 0644 "$service_src" "$service_dst"
    echo "installed $service_dst"
  elif cmp -s "$service_src" "$service_dst"; then
    echo "unchanged $service_dst"
  else
    install -m 0644 "$service_src" "$service_dst.jupyter-session-new"
    echo "kept your $service_dst; the shipped version is $service_dst.jupyter-session-new —"
    echo "  make sure your file has: session required pam_jupyter.so"
  fi
fi
if [ "$selinux" = 1 ]; then
  command -v semodule >/dev/null || die "--selinux: semodule not found: apt-get install semodule-utils policycoreutils (Debian/Ubuntu) or dnf install policycoreutils (Fedora/RHEL)"
  config=$destdir/etc/selinux/config
  [ -f "$config" ] || die "--selinux: $config missing: install and configure an SELinux policy first"
  type=$(sed -n 's/^[[:space:]]*SELINUXTYPE[[:space:]]*=[[:space:]]*//p' "$config" | tail -n 1)
  [ -n "$type" ] && [ -d "$destdir/etc/selinux/$type/contexts" ] \
    || die "--selinux: no SELINUXTYPE in $config, or no $destdir/etc/selinux/$type/contexts: is the policy installed?"
  # The module, built against this system's policy development files.
  make -s -C selinux jupyter_session.pp >/dev/null \
    || die "--selinux: building selinux/jupyter_session.pp failed: install selinux-policy-dev (Debian/Ubuntu) or selinux-policy-devel (Fedora/RHEL)"
  install -D -m 0644 selinux/jupyter_session.pp "$destdir/usr/share/selinux/packages/jupyter_session.pp"
  # Below DESTDIR: that root's own semodule (its users' home dirs, its tools' versions).
  if [ -n "$destdir" ]; then semodule=(chroot "$destdir" semodule); else semodule=(semodule); fi
  "${semodule[@]}" -s "$type" -i /usr/share/selinux/packages/jupyter_session.pp \
    || die "--selinux: semodule -i selinux/jupyter_session.pp failed (see its message above)"
  echo "loaded SELinux module jupyter_session into policy $type"
  # pam_selinux in the keeper (system_r:jupyter_session_t) looks up the user's context in
  # default_contexts and contexts/users/SEUSER; a policy module cannot ship those entries.
  # Each file gets the roles it gives a console login (its system_r:local_login_t line).
  for f in "$destdir/etc/selinux/$type/contexts/default_contexts" "$destdir/etc/selinux/$type/contexts/users/"*; do
    [ -f "$f" ] || continue
    grep -Eq '^[[:space:]]*system_r:jupyter_session_t[:[:space:]]' "$f" && { echo "unchanged $f"; continue; }
    # system_r:local_login_t[:LEVEL] ROLE:TYPE[:LEVEL]... -> system_r:jupyter_session_t[:LEVEL] ...
    line=$(sed -En 's/^[[:space:]]*system_r:local_login_t((:[^[:space:]]*)?[[:space:]])/system_r:jupyter_session_t\1/p' "$f" | head -n 1)
    [ -n "$line" ] || continue
    printf '%s\n' "$line" >>"$f"
    echo "added system_r:jupyter_session_t to $f"
  done
  # /run/jupyter-session made at boot with its label, before any root shell can make it.
  install -D -m 0644 etc/tmpfiles.d/jupyter-session.conf "$destdir/etc/tmpfiles.d/jupyter-session.conf"
  echo "installed $destdir/etc/tmpfiles.d/jupyter-session.conf"
  if [ -z "$destdir" ]; then
    restorecon -F "$moddir/pam_jupyter.so" /usr/local/bin/jupyter-session
    [ ! -e /etc/security/jupyter-session.toml ] || restorecon -F /etc/security/jupyter-session.toml
    if command -v systemd-tmpfiles >/dev/null; then systemd-tmpfiles --create /etc/tmpfiles.d/jupyter-session.conf; fi
    [ ! -e /run/jupyter-session ] || restorecon -RF /run/jupyter-session
  fi
fi
echo "done. Try: jupyter-session exec --user USER -- sh -c 'echo \$XDG_RUNTIME_DIR; ls -ld \$XDG_RUNTIME_DIR'"
