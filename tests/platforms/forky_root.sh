#!/bin/sh
# forky_root.sh - makes (or reuses) the Debian forky root in which the suite
# runs on Python 3.13, 3.14 and 3.15 with JupyterLab 4.4 and Notebook 7.4.
#
#   tests/platforms/forky_root.sh            make the root if needed, print its path
#   tests/platforms/forky_root.sh run CMD..  run CMD inside it, as root, in this checkout
#                                            (bind-mounted at the same path inside the root)
#
# The root lives outside the work tree: $PYROMETER_FORKY_ROOT, by default
# /var/lib/pyrometer/forky. It is reused when its stamp names the same package
# list; otherwise the missing packages are added. About 5 minutes and 4.5 GB
# the first time.
set -eu

ROOT=${PYROMETER_FORKY_ROOT:-/var/lib/pyrometer/forky}
MIRROR=${PYROMETER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SRC=$(cd "$(dirname "$0")/../.." && pwd)

# What the suite needs in the root: the three Pythons and their headers, the
# build tools and libraries, Jupyter's frontends and the reference tools.
PACKAGES="python3 python3-dev python3.13 python3.13-dev python3.13-venv python3.15 python3.15-dev python3.15-venv
  gcc meson ninja-build pkg-config libzmq3-dev libsodium-dev libjansson-dev libsqlite3-dev
  python3-mesonpy python3-venv python3-pip
  python3-jupyter-client jupyter-client jupyter-console python3-nbclient python3-nbconvert
  jupyterlab jupyter-notebook python3-notebook python3-ipykernel python3-ipython
  python3-ipywidgets python3-jupyterlab-widgets python3-comm python3-tqdm
  python3-pytest python3-numpy python3-pandas python3-psutil python3-zmq python3-jedi python3-pygments
  python3-matplotlib python3-selenium chromium chromium-driver fonts-dejavu-core
  python3-line-profiler python3-memory-profiler python3-memray python3-pyinstrument procps iproute2 ca-certificates"
# From trixie: jupyter_kernel_test is not in forky (pure Python, arch all).
TRIXIE_PACKAGES="python3-jupyter-kernel-test"

stamp() { printf '%s\n%s\n' "$PACKAGES" "$TRIXIE_PACKAGES" | tr -s ' \n' '\n' | sort | sha256sum | cut -c1-16; }

mount_all() {
    for d in proc sys dev dev/pts dev/shm; do
        mkdir -p "$ROOT/$d"
        mountpoint -q "$ROOT/$d" && continue
        case $d in
            proc) mount -t proc proc "$ROOT/proc" ;;
            dev/shm) mount -t tmpfs -o mode=1777 shm "$ROOT/dev/shm" ;;
            *) mount --bind "/$d" "$ROOT/$d" ;;
        esac
    done
    # The checkout appears at its own path inside the root, so several
    # checkouts (worktrees) can use one root at once.
    # A mount left by an earlier checkout at the same path (removed and
    # cloned again, as CI does) still shows the removed folder: the build
    # then fails in a cwd that no longer exists. Such a mount is replaced.
    mkdir -p "$ROOT$SRC"
    if mountpoint -q "$ROOT$SRC" &&
        [ "$(stat -c %d:%i "$ROOT$SRC" 2>/dev/null)" != "$(stat -c %d:%i "$SRC")" ]; then
        echo "forky_root: $ROOT$SRC showed a removed checkout; mounting $SRC again" >&2
        umount -l "$ROOT$SRC"
    fi
    mountpoint -q "$ROOT$SRC" || mount --bind "$SRC" "$ROOT$SRC"
    cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
}

# apt waits for another apt in the same root instead of failing.
APT="apt-get -o DPkg::Lock::Timeout=900"

in_root() { chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }

make_root() {
    want=$(stamp)
    if [ -f "$ROOT/.pyrometer-stamp" ] && [ "$(cat "$ROOT/.pyrometer-stamp")" = "$want" ]; then
        return 0
    fi
    if ! command -v debootstrap >/dev/null; then
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap
    fi
    if [ ! -x "$ROOT/usr/bin/apt-get" ]; then
        echo "forky_root: debootstrap into $ROOT" >&2
        mkdir -p "$ROOT"
        # Debian 12's debootstrap has no forky script; sid's fits.
        debootstrap --variant=minbase forky "$ROOT" "$MIRROR" /usr/share/debootstrap/scripts/sid >&2
    fi
    # The archive here may be older than its Release files' Valid-Until.
    echo 'Acquire::Check-Valid-Until "false";' > "$ROOT/etc/apt/apt.conf.d/99pyrometer"
    echo 'APT::Install-Recommends "false";' >> "$ROOT/etc/apt/apt.conf.d/99pyrometer"
    printf 'deb %s forky main\ndeb %s trixie main\n' "$MIRROR" "$MIRROR" > "$ROOT/etc/apt/sources.list"
    printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' > "$ROOT/etc/apt/preferences.d/trixie"
    mount_all
    echo "forky_root: installing packages" >&2
    in_root $APT update -q >&2
    # shellcheck disable=SC2086
    in_root $APT install -y -q $PACKAGES >&2
    for p in $TRIXIE_PACKAGES; do in_root $APT install -y -q "$p/trixie" >&2; done
    in_root $APT clean
    echo "$want" > "$ROOT/.pyrometer-stamp"
}

case ${1:-make} in
    make) make_root; echo "$ROOT" ;;
    run) shift; make_root; mount_all; cd /; in_root sh -c 'cd "$0" && exec "$@"' "$SRC" "$@" ;;
    *) echo "usage: $0 [make | run CMD...]" >&2; exit 2 ;;
esac
