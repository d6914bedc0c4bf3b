"""`pyrometer-kernel install` writes a kernelspec the way
`python -m ipykernel install` does, and Jupyter finds it; bad arguments and
connection files give clear messages and nonzero exits."""
import json
import os
import subprocess

import pytest

from pyrometer_testing import KERNEL, _build_python

XY = subprocess.run([_build_python(), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                    capture_output=True, text=True, check=True).stdout.strip()
DISPLAY = "Python %s (pyrometer)" % XY


def run(*args, env=None):
    return subprocess.run([KERNEL, *args], capture_output=True, text=True, env=env, timeout=30)


def kernelspecs(jupyter_path):
    env = dict(os.environ, JUPYTER_PATH=jupyter_path, JUPYTER_DATA_DIR=jupyter_path + "/none")
    out = subprocess.run(["/usr/bin/python3", "-m", "jupyter_client.kernelspecapp", "list", "--json"],
                         capture_output=True, text=True, env=env, timeout=60)
    if out.returncode != 0:  # older jupyter_client: no __main__ in kernelspecapp
        out = subprocess.run(["jupyter", "kernelspec", "list", "--json"], capture_output=True,
                             text=True, env=env, timeout=60)
    return json.loads(out.stdout)["kernelspecs"]


def test_install_prefix(tmp_path):
    r = run("install", "--embedded", "--prefix", str(tmp_path))
    assert r.returncode == 0, r.stderr
    d = tmp_path / "share/jupyter/kernels/pyrometer"
    spec = json.loads((d / "kernel.json").read_text())
    assert spec["argv"] == [os.path.realpath(KERNEL), "-f", "{connection_file}"]
    assert os.path.isabs(spec["argv"][0])
    assert spec["display_name"] == DISPLAY
    assert spec["language"] == "python" and spec["interrupt_mode"] == "signal"
    for logo, size in (("logo-32x32.png", 32), ("logo-64x64.png", 64)):
        data = (d / logo).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert int.from_bytes(data[16:20], "big") == size
    specs = kernelspecs(str(tmp_path / "share/jupyter"))
    assert specs["pyrometer"]["spec"]["display_name"] == DISPLAY


def test_install_hosted_prefix(tmp_path):  # the executable writes it: fine under sanitizers too
    """The executable writes a kernelspec that the interpreter hosts."""
    r = run("install", "--hosted", "--prefix", str(tmp_path))
    assert r.returncode == 0, r.stderr
    spec = json.loads((tmp_path / "share/jupyter/kernels/pyrometer/kernel.json").read_text())
    assert spec["argv"][1:] == ["-m", "pyrometer_kernel", "-f", "{connection_file}"]
    assert os.path.realpath(spec["argv"][0]) == os.path.realpath(_build_python())
    assert spec["display_name"] == DISPLAY


def test_install_sys_prefix_of_executable(tmp_path):
    """--sys-prefix: the prefix the executable is installed in (<prefix>/bin)."""
    (tmp_path / "bin").mkdir()
    exe = tmp_path / "bin/pyrometer-kernel"
    exe.write_bytes(open(KERNEL, "rb").read())
    exe.chmod(0o755)
    r = subprocess.run([str(exe), "install", "--embedded", "--sys-prefix"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    spec = json.loads((tmp_path / "share/jupyter/kernels/pyrometer/kernel.json").read_text())
    assert spec["argv"] == [str(exe), "-f", "{connection_file}"]


def test_install_user_name_display_mode(tmp_path):
    env = dict(os.environ, JUPYTER_DATA_DIR=str(tmp_path / "data"))
    r = run("install", "--user", "--name", "pyro2", "--display-name", "Pyro Two",
            "--interrupt-mode", "message", env=env)
    assert r.returncode == 0, r.stderr
    spec = json.loads((tmp_path / "data/kernels/pyro2/kernel.json").read_text())
    assert spec["display_name"] == "Pyro Two" and spec["interrupt_mode"] == "message"


@pytest.mark.parametrize("args,msg", [
    (["install", "--user", "--prefix", "/tmp/x"], "--user, --sys-prefix and --prefix exclude each other"),
    (["install", "--sys-prefix", "--prefix", "/tmp/x"], "--user, --sys-prefix and --prefix exclude each other"),
    (["install", "--bogus"], "unknown or incomplete option --bogus"),
    (["install", "--interrupt-mode", "sometimes"], "--interrupt-mode is signal or message"),
    (["install", "--name", "../evil"], "invalid kernel name"),
    (["--frobnicate"], "unknown argument --frobnicate"),
    ([], "missing -f CONNECTION_FILE"),
])
def test_bad_arguments(args, msg):
    r = run(*args)
    assert r.returncode == 2
    assert msg in r.stderr


def test_missing_connection_file(tmp_path):
    r = run("-f", str(tmp_path / "nope.json"))
    assert r.returncode == 2
    assert r.stderr.startswith("pyrometer-kernel: cannot open connection file")
    assert "No such file or directory" in r.stderr


def test_malformed_connection_file(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"shell_port": 1, "key": "sekrit-key-value",')
    r = run("-f", str(p))
    assert r.returncode == 2
    assert "connection file: invalid JSON" in r.stderr
    assert "sekrit" not in r.stderr


def test_version():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("pyrometer-kernel ")
