#!/bin/sh
# forky_build.sh - builds this checkout for one of the forky root's Pythons,
# inside the root, into its own build dir: build-py3.13, build-py3.14, build-py3.15.
#
#   tests/platforms/forky_build.sh 3.14          -> build-py3.14 (configured once, then ninja)
#   tests/platforms/forky_build.sh 3.14 DIR      -> DIR instead
#
# The one place that says how the suite builds for a forky Python: run_suite.py
# (make test) and make bench both call it. Makes the root first if needed.
set -eu

VERSION=${1:?usage: $0 3.13|3.14|3.15 [BUILD_DIR]}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${2:-$SRC/build-py$VERSION}

exec "$SRC/tests/platforms/forky_root.sh" run sh -c '
    set -e
    if [ ! -f "$1/build.ninja" ]; then
        meson setup "$1" -Dpython="python$2"
    fi
    ninja -C "$1"
' forky_build "$BUILD" "$VERSION"
