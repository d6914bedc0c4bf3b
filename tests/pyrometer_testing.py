"""Shared test support: the build under test, a temporary JUPYTER_PATH with
kernelspecs for the built kernel, and starting kernels through
jupyter_client exactly as Jupyter does. Imported (not a conftest) so that
test modules can `from pyrometer_testing import ...` unambiguously."""
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("PYROMETER_BUILD", os.path.join(ROOT, "build"))
KERNEL = os.path.join(BUILD, "kernel", "pyrometer-kernel")

def _build_mode():
    """embedded (the executable) or hosted (python3.X -m pyrometer_kernel):
    $PYROMETER_MODE, else what the build's own kernelspec starts."""
    mode = os.environ.get("PYROMETER_MODE")
    if mode:
        return mode
    try:
        with open(os.path.join(BUILD, "kernelspec", "kernel.json")) as f:
            return "hosted" if json.load(f)["argv"][1:3] == ["-m", "pyrometer_kernel"] else "embedded"
    except (OSError, ValueError, KeyError, IndexError):
        return "embedded"


def _build_python():
    """The interpreter the build is for (the hosted kernelspec's argv[0])."""
    try:
        with open(os.path.join(BUILD, "kernelspec", "kernel.json")) as f:
            argv = json.load(f)["argv"]
    except (OSError, ValueError, KeyError):
        argv = []
    if argv[1:3] == ["-m", "pyrometer_kernel"]:
        return argv[0]
    python = _build_option("python", "/usr/bin/python3")
    return shutil.which(python) or python


def _build_option(name, default=None):
    try:
        with open(os.path.join(BUILD, "meson-info", "intro-buildoptions.json")) as f:
            return {o["name"]: o["value"] for o in json.load(f)}.get(name, default)
    except (OSError, ValueError):
        return default


# A sanitizer build's modules cannot load into a plain python: its tests of
# the hosted kernel and of pip installs skip.
SANITIZED = _build_option("b_sanitize", "none") not in ("none", "", [], ["none"])  # meson 1.8+: a list
MODE = _build_mode()
# The argv and environment of the kernelspec under test. Hosted, the build's
# kernel/ folder (the launcher and _pyrometer_host) goes on PYTHONPATH.
if MODE == "hosted":
    KERNEL_ARGV = [_build_python(), "-m", "pyrometer_kernel", "-f", "{connection_file}"]
    KERNEL_ENV = {"PYTHONPATH": os.path.join(BUILD, "kernel")}
else:
    KERNEL_ARGV = [KERNEL, "-f", "{connection_file}"]
    KERNEL_ENV = {}
# The Python the build under test was made for, and so the one its kernel
# runs, in either form: $PYROMETER_PYTHON, else the build's own. It may not
# be this process's: the forky root's 3.13 has no pyzmq, so python3.14
# drives the kernel built for 3.13 (tests/run_suite.py --forky).
PYTHON = os.environ.get("PYROMETER_PYTHON") or _build_python()

SPEC_DIR = tempfile.mkdtemp(prefix="pyrometer-jupyter-")
for _name, _mode, _display in (
        ("pyrometer", "signal", "Python 3 (pyrometer)"),
        ("pyrometer-msg", "message", "Python 3 (pyrometer, message interrupt)")):
    _kdir = os.path.join(SPEC_DIR, "kernels", _name)
    os.makedirs(_kdir)
    with open(os.path.join(_kdir, "kernel.json"), "w") as _f:
        json.dump({"argv": KERNEL_ARGV, "display_name": _display, "env": KERNEL_ENV,
                   "language": "python", "interrupt_mode": _mode}, _f)
os.environ["JUPYTER_PATH"] = SPEC_DIR
os.environ.setdefault("JUPYTER_DATA_DIR", os.path.join(SPEC_DIR, "data"))
os.environ["JUPYTER_PLATFORM_DIRS"] = "1"
# IPython, brought in on demand, keeps its profile (%store's db) here.
os.environ.setdefault("IPYTHONDIR", os.path.join(SPEC_DIR, "ipython"))
# Kernels write history under the data dir; keep the user's out of tests.
os.environ["PYROMETER_HISTORY"] = os.path.join(SPEC_DIR, "history.sqlite")


@functools.lru_cache(maxsize=None)
def python_version():
    """(major, minor, micro) of PYTHON."""
    if os.path.realpath(PYTHON) == os.path.realpath(sys.executable):
        return tuple(sys.version_info[:3])
    out = subprocess.run([PYTHON, "-c", "import sys; print(*sys.version_info[:3])"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return tuple(int(x) for x in out.split())


@functools.lru_cache(maxsize=None)
def python_lacks(module):
    """None when PYTHON imports module, or why it cannot (its last error line).
    Imported for real: a forky package can have its pure-Python part shared
    by every version and its compiled part built only for some."""
    if os.path.realpath(PYTHON) == os.path.realpath(sys.executable):
        import importlib
        try:
            importlib.import_module(module)
            return None
        except Exception as e:  # noqa: BLE001 - any failure to import is the reason
            return "%s: %s" % (type(e).__name__, e)
    p = subprocess.run([PYTHON, "-c", "import " + module], capture_output=True, text=True,
                       timeout=120)
    if p.returncode == 0:
        return None
    return (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1]


def needs(*modules):
    """A pytest mark: skip, naming the package, unless the kernel's Python
    (PYTHON) can import every one of modules. For code the kernel runs; what
    the test process itself imports is pytest.importorskip's job."""
    import pytest
    missing = [m for m in modules if python_lacks(m)]
    reason = "; ".join("needs %s, which Python %s cannot import (%s)"
                       % (m, ".".join(map(str, python_version()[:2])), python_lacks(m))
                       for m in missing)
    return pytest.mark.skipif(bool(missing), reason=reason or "-")


def import_or_skip(module):
    """The module, imported into this test process, or a skip naming it and
    the error. Unlike pytest.importorskip, any ImportError skips: forky's
    pure-Python half of a package imports on 3.13 and then fails on its
    missing compiled half (pyzmq's "Cython backend ... not compiled"), and
    pytest 9 no longer skips on such errors."""
    import importlib
    import pytest
    try:
        return importlib.import_module(module)
    except ImportError as e:
        pytest.skip("needs %s, which Python %d.%d cannot import (%s)"
                    % (module, *sys.version_info[:2], str(e).strip().splitlines()[0]))


def cleanup():
    shutil.rmtree(SPEC_DIR, ignore_errors=True)


def start_kernel(name="pyrometer", **kw):
    """Starts a kernel from the temporary kernelspecs: (manager, client).
    Skips the test, naming the package, when this Python has no
    jupyter_client (the forky root's 3.13 lacks pyzmq)."""
    start_new_kernel = import_or_skip("jupyter_client.manager").start_new_kernel
    km, kc = start_new_kernel(kernel_name=name, startup_timeout=30, **kw)
    kc.km = km  # kernel_util tells a kernel that exited from one that is slow
    return km, kc


def report_charts(html):
    """The SVG documents of the charts in a report's HTML: each is an <img>
    whose src is a base64 SVG data URI (the house style of ext/report.h).
    Each must be well-formed XML, or a browser shows a broken image."""
    import base64
    import re
    import xml.etree.ElementTree as ET
    svgs = [base64.b64decode(m).decode("utf-8")
            for m in re.findall(r'<img [^>]*src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', html)]
    for svg in svgs:
        assert ET.fromstring(svg).tag == "{http://www.w3.org/2000/svg}svg", svg[:200]
    return svgs
