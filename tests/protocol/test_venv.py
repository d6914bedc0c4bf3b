"""The venv route (issue 12): `pip install --no-build-isolation .` from this
checkout into a venv installs the kernel, the pyrometer module and a
kernelspec under the venv; Jupyter run from the venv lists it, and the
kernel runs in the venv (sys.prefix, sys.executable, site-packages, .pth).
`python -m pyrometer_kernel install --sys-prefix` writes the same kernelspec
for an existing install. Slow (it builds the checkout): one venv per module."""
import json
import os
from pathlib import Path
import subprocess
import textwrap

import pytest

from pyrometer_testing import BUILD, ROOT, SANITIZED, _build_python, python_lacks

pytestmark = pytest.mark.skipif(SANITIZED, reason="a sanitizer build: pip builds its own wheel; run once, in the normal build's stage")

PYTHON = _build_python()
XY = subprocess.run([PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                    capture_output=True, text=True, check=True).stdout.strip()


def clean_env(tmp):
    """No JUPYTER_PATH and a private data dir: only the venv's kernelspecs
    and the system's are found, as for a user who runs Jupyter from it."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTER", "PYTHON", "PYROMETER_BUILD", "VIRTUAL_ENV"))}
    env["JUPYTER_DATA_DIR"] = str(tmp / "jupyter-data")
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    env["PYROMETER_HISTORY"] = str(tmp / "history.sqlite")
    env["HOME"] = str(tmp)
    return env


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    # the venv's python runs jupyter_client (and so pyzmq) itself
    if python_lacks("jupyter_client"):
        pytest.skip("needs jupyter_client, which the venv's Python cannot import (%s)"
                    % python_lacks("jupyter_client"))
    tmp = tmp_path_factory.mktemp("venv")
    v = tmp / "env"
    subprocess.run([PYTHON, "-m", "venv", "--system-site-packages", str(v)], check=True,
                   timeout=900)  # ensurepip: minutes on a loaded machine
    r = subprocess.run([str(v / "bin/python"), "-m", "pip", "install", "--no-build-isolation",
                        "--no-index", "--no-deps", ROOT], capture_output=True, text=True,
                       env=clean_env(tmp), timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    site = subprocess.run([str(v / "bin/python"), "-c", "import sysconfig; print(sysconfig.get_path('platlib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # a .pth file in the venv: only a kernel in the venv runs it
    with open(os.path.join(site, "pyrometer_test.pth"), "w") as f:
        f.write("import os; os.environ['PYROMETER_TEST_PTH'] = 'ran'\n")
    return tmp, v, site


def run_in_venv(tmp, v, code, timeout=300):
    """Runs code with the venv's python (Jupyter run from the venv)."""
    r = subprocess.run([str(v / "bin/python"), "-c", textwrap.dedent(code)], capture_output=True,
                       text=True, env=clean_env(tmp), timeout=timeout, cwd=str(tmp))
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


KERNEL_PROBE = """
    import json, sys
    from jupyter_client.manager import start_new_kernel
    km, kc = start_new_kernel(kernel_name=%r, startup_timeout=60)
    out = []
    def hook(m):
        if m["msg_type"] == "stream":
            out.append(m["content"]["text"])
    code = ("import sys, os, site, sysconfig, pyrometer, pyrometer_kernel\\n"
            "print(__import__('json').dumps({'prefix': sys.prefix, 'executable': sys.executable,"
            " 'site': sysconfig.get_path('platlib'), 'path': sys.path,"
            " 'pth': os.environ.get('PYROMETER_TEST_PTH'),"
            " 'launcher': pyrometer_kernel.__file__}))")
    r = kc.execute_interactive(code, output_hook=hook, timeout=60)
    assert r["content"]["status"] == "ok", r["content"]
    r = kc.execute_interactive("%%prun -q sum(range(10))", output_hook=hook, timeout=60)
    assert r["content"]["status"] == "ok", r["content"]
    kc.stop_channels()
    km.shutdown_kernel(now=True)
    print(out[0], end="")
"""


def check_probe(info, v, site):
    assert info["prefix"] == str(v)
    assert info["executable"] == str(v / "bin" / ("python" + XY))
    assert info["site"] == site and site in info["path"]
    assert info["pth"] == "ran"
    assert info["launcher"].startswith(site)
    assert info["path"][0] == ""


def test_pip_install_puts_kernelspec_in_venv(venv):
    tmp, v, site = venv
    spec = json.loads((v / "share/jupyter/kernels/pyrometer/kernel.json").read_text())
    assert spec["argv"] == [str(v / "bin" / ("python" + XY)), "-m", "pyrometer_kernel", "-f",
                            "{connection_file}"]
    assert spec["display_name"] == "Python %s (pyrometer)" % XY
    assert (v / "share/jupyter/kernels/pyrometer/logo-64x64.png").is_file()
    assert os.access(v / "bin/pyrometer-kernel", os.X_OK)
    specs = json.loads(run_in_venv(tmp, v, """
        import json
        from jupyter_client.kernelspec import KernelSpecManager
        print(json.dumps({k: v["resource_dir"] for k, v in KernelSpecManager().get_all_specs().items()}))
    """))
    assert specs["pyrometer"] == str(v / "share/jupyter/kernels/pyrometer")


def test_kernel_runs_in_venv(venv):
    tmp, v, site = venv
    info = json.loads(run_in_venv(tmp, v, KERNEL_PROBE % "pyrometer", timeout=300))
    check_probe(info, v, site)


def probe_wheel(where):
    """A minimal wheel of one module, pyro_pip_probe, that pip installs with
    no index and no build backend. Returns its path."""
    import zipfile
    name = "pyro_pip_probe-1.0-py3-none-any.whl"
    files = {"pyro_pip_probe.py": "WHERE = __file__\n",
             "pyro_pip_probe-1.0.dist-info/METADATA":
                 "Metadata-Version: 2.1\nName: pyro-pip-probe\nVersion: 1.0\n",
             "pyro_pip_probe-1.0.dist-info/WHEEL":
                 "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{n},,\n" for n in files) + "pyro_pip_probe-1.0.dist-info/RECORD,,\n"
    files["pyro_pip_probe-1.0.dist-info/RECORD"] = record
    path = where / name
    with zipfile.ZipFile(path, "w") as z:
        for n, text in files.items():
            z.writestr(n, text)
    return path


def test_pip_magic_installs_into_the_venv(venv):
    """%pip in a kernel of the venv runs the venv's pip (IPython's %pip, the
    kernel's sys.executable -m pip): the package lands in the venv's
    site-packages, importable in the next cell, and nowhere else."""
    tmp, v, site = venv
    if python_lacks("IPython"):
        pytest.skip("%%pip is IPython's, which the venv's Python cannot import (%s)"
                    % python_lacks("IPython"))
    wheel = probe_wheel(tmp)
    out = json.loads(run_in_venv(tmp, v, """
        import json
        from jupyter_client.manager import start_new_kernel
        km, kc = start_new_kernel(kernel_name="pyrometer", startup_timeout=60)
        out = []
        def hook(m):
            if m["msg_type"] == "stream":
                out.append(m["content"]["text"])
        r1 = kc.execute_interactive("%%pip install --no-index --no-deps %s", output_hook=hook,
                                    timeout=600)
        pip_out = "".join(out)
        out.clear()
        r2 = kc.execute_interactive("import pyro_pip_probe; print(pyro_pip_probe.WHERE)",
                                    output_hook=hook, timeout=60)
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        print(json.dumps({"pip": [r1["content"]["status"], pip_out],
                          "import": [r2["content"]["status"], "".join(out)]}))
    """ % wheel, timeout=900))
    assert out["pip"][0] == "ok", out
    assert "Successfully installed pyro-pip-probe-1.0" in out["pip"][1], out
    assert out["import"] == ["ok", os.path.join(site, "pyro_pip_probe.py") + "\n"], out
    assert (Path(site) / "pyro_pip_probe.py").is_file()


@pytest.mark.parametrize("how", ["module", "executable"])
def test_install_sys_prefix(venv, how):
    """An existing install writes its kernelspec into the venv again, under
    another name, and that kernel runs in the venv too."""
    tmp, v, site = venv
    name = "pyro-" + how
    cmd = ([str(v / "bin/python"), "-m", "pyrometer_kernel"] if how == "module"
           else [str(v / "bin/pyrometer-kernel")])
    r = subprocess.run(cmd + ["install", "--sys-prefix", "--name", name], capture_output=True,
                       text=True, env=clean_env(tmp), timeout=300)
    assert r.returncode == 0, r.stderr
    kdir = v / "share/jupyter/kernels" / name
    assert r.stdout.strip() == "Installed kernelspec %s in %s" % (name, kdir)
    spec = json.loads((kdir / "kernel.json").read_text())
    assert spec["argv"] == [str(v / "bin" / ("python" + XY)), "-m", "pyrometer_kernel", "-f",
                            "{connection_file}"]
    info = json.loads(run_in_venv(tmp, v, KERNEL_PROBE % name, timeout=300))
    check_probe(info, v, site)


def test_install_prefix_hosted(tmp_path):
    """--prefix DIR with the interpreter hosting the kernel."""
    env = dict(os.environ, PYTHONPATH=os.path.join(BUILD, "kernel"))
    r = subprocess.run([PYTHON, "-m", "pyrometer_kernel", "install", "--prefix", str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    spec = json.loads((tmp_path / "share/jupyter/kernels/pyrometer/kernel.json").read_text())
    assert spec["argv"][1:] == ["-m", "pyrometer_kernel", "-f", "{connection_file}"]
    assert os.path.realpath(spec["argv"][0]) == os.path.realpath(PYTHON)
    assert spec["display_name"] == "Python %s (pyrometer)" % XY
