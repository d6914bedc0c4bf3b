"""Interpreter upgrades (issue 11): a kernel whose interpreter changed since
it was built says so in one line on stderr and exits 1, before it binds a
socket, instead of crashing or hanging."""
import glob
import json
import os
import subprocess

import pytest

from pyrometer_testing import BUILD, KERNEL, SANITIZED, _build_python

PYTHON = _build_python()
XY = subprocess.run([PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                    capture_output=True, text=True, check=True).stdout.strip()


def conn_file(tmp_path):
    from jupyter_client.connect import write_connection_file
    path, _ = write_connection_file(str(tmp_path / "conn.json"), ip="127.0.0.1")
    return path


def test_embedded_stdlib_gone(tmp_path):
    """The executable's Python finds no standard library of its version
    where it looks (here PYTHONHOME points at a prefix without one, as after
    an upgrade removed it)."""
    (tmp_path / "prefix/lib").mkdir(parents=True)
    env = dict(os.environ, PYTHONHOME=str(tmp_path / "prefix"))
    r = subprocess.run([KERNEL, "-f", conn_file(tmp_path)], capture_output=True, text=True,
                       env=env, timeout=30)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("pyrometer-kernel: Python %s's standard library is not where this "
                               "kernel expects it (%s/prefix/lib/python%s/os.py is missing): was "
                               "the interpreter upgraded" % (XY, tmp_path, XY)), r.stderr


def other_pythons():
    found = []
    for exe in sorted(glob.glob("/usr/bin/python3.[0-9]*")):
        v = os.path.basename(exe)[len("python"):]
        if v.replace(".", "").isdigit() and v != XY and int(v.split(".")[1]) >= 11:
            found.append(exe)
    return found


@pytest.mark.parametrize("other", other_pythons() or [pytest.param(None, marks=pytest.mark.skip(
    reason="no other /usr/bin/python3.X here (the forky root has 3.13-3.15)"))])
@pytest.mark.skipif(SANITIZED, reason="a sanitizer build's module does not load into python")
def test_hosted_other_python(tmp_path, other):
    """python -m pyrometer_kernel run by another Python than the one it was
    built for (a venv's python3 repointed by an upgrade)."""
    env = dict(os.environ, PYTHONPATH=os.path.join(BUILD, "kernel"))
    r = subprocess.run([other, "-m", "pyrometer_kernel", "-f", conn_file(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=30)
    v = os.path.basename(other)[len("python"):]
    assert r.returncode == 1
    assert r.stderr == ("pyrometer_kernel: built for Python %s, but %s runs Python %s: reinstall "
                        "pyrometer for this interpreter\n" % (XY, other, v)), r.stderr
