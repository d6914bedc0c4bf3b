"""The builds that others make compile cleanly, without --werror: meson's
release buildtype (-O3), and buildtype=plain with Debian's own flags
(dpkg-buildflags), as a distribution package builds. werror=true used to be
a default option, so GCC's -Wstringop-overflow under -O3 in transform.c
stopped every release build; -Werror is now for the project's own CI builds
only (the Makefile passes --werror)."""
import json
import os
import shutil
import subprocess

import pytest

from pyrometer_testing import ROOT


def debian_flags():
    env = {}
    for var in ("CFLAGS", "CPPFLAGS", "LDFLAGS"):
        env[var] = subprocess.run(["dpkg-buildflags", "--get", var], capture_output=True,
                                  text=True, check=True).stdout.strip()
    return env


@pytest.mark.parametrize("kind", ["release", "debian"])
def test_build_has_no_warnings(kind, tmp_path):
    if kind == "debian" and shutil.which("dpkg-buildflags") is None:
        pytest.skip("dpkg-buildflags (dpkg-dev) is not installed")
    env = dict(os.environ)
    args = ["meson", "setup", str(tmp_path / "b"), "-Db_colorout=never"]
    if kind == "release":
        args.append("-Dbuildtype=release")
    else:
        env.update(debian_flags())
        args.append("-Dbuildtype=plain")
    setup = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    options = json.loads(subprocess.run(["meson", "introspect", "--buildoptions",
                                         str(tmp_path / "b")], capture_output=True, text=True,
                                        check=True).stdout)
    assert [o["value"] for o in options if o["name"] == "werror"] == [False]
    build = subprocess.run(["ninja", "-C", str(tmp_path / "b")], env=env, capture_output=True,
                           text=True)
    out = build.stdout + build.stderr
    assert build.returncode == 0, out[-4000:]
    assert [l for l in out.splitlines() if "warning:" in l] == []
