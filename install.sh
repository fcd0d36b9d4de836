#!/usr/bin/env bash
# Build and install jupyter-session: the PAM module, the CLI, the subid NSS
# provider and the PAM service file for JupyterHub. Run as root from the
# source tree:
#
#   sudo ./install.sh                 # build (release) and install
#   sudo ./install.sh --from DIR      # install binaries already built in DIR
#
# DESTDIR=/some/root installs below that root instead (packaging, tests).
# An existing /etc/pam.d/jupyterhub that differs is never overwritten: the
# new file is written next to it as jupyterhub.jupyter-session-new.
# /etc/nsswitch.conf is never written: the provider is used only once you
# add `subid: jupyter` to it (docs/subids.md).
set -euo pipefail
cd "$(dirname "$0")"
destdir=${DESTDIR:-}
from=""
while [ $# -gt 0 ]; do
  case "$1" in
    --from) from=${2:?--from needs a directory}; shift 2 ;;
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
[ -f "$from/libsubid_jupyter.so" ] || die "$from has no libsubid_jupyter.so (crate nss_subid): build the whole workspace first"

# Where this system's PAM modules live (Debian multiarch, Fedora lib64...).
unix=$(find /lib /usr/lib /lib64 /usr/lib64 -name pam_unix.so -path '*security*' 2>/dev/null | head -n 1)
[ -n "$unix" ] || die "cannot find the PAM module directory (no pam_unix.so): is libpam installed?"
moddir=$(dirname "$unix")
if [ -e /etc/redhat-release ] || [ -e /etc/fedora-release ]; then flavour=rhel; else flavour=debian; fi

install -D -m 0644 "$from/libpam_jupyter.so" "$destdir$moddir/pam_jupyter.so"
install -D -m 0755 "$from/jupyter-session" "$destdir/usr/local/bin/jupyter-session"
echo "installed $destdir$moddir/pam_jupyter.so"
echo "installed $destdir/usr/local/bin/jupyter-session"
# shadow dlopens "libsubid_NAME.so" by name: the library directory above the
# PAM modules (/usr/lib/x86_64-linux-gnu, /usr/lib64) is on its search path.
libdir=$(dirname "$moddir")
install -D -m 0644 "$from/libsubid_jupyter.so" "$destdir$libdir/libsubid_jupyter.so"
echo "installed $destdir$libdir/libsubid_jupyter.so (inactive until /etc/nsswitch.conf says subid: jupyter; see docs/subids.md)"

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
echo "done. Try: jupyter-session exec --user USER -- sh -c 'echo \$XDG_RUNTIME_DIR; ls -ld \$XDG_RUNTIME_DIR'"
