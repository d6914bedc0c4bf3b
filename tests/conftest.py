"""Shared fixtures: a temporary JUPYTER_PATH holding a kernelspec for the
built kernel, and started kernels driven through jupyter_client, exactly as
Jupyter would start them."""
import json
import os
import shutil
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("PYROMETER_BUILD", os.path.join(ROOT, "build"))
KERNEL = os.path.join(BUILD, "kernel", "pyrometer-kernel")

_spec_dir = tempfile.mkdtemp(prefix="pyrometer-jupyter-")
for _name, _mode in (("pyrometer", "signal"), ("pyrometer-msg", "message")):
    _kdir = os.path.join(_spec_dir, "kernels", _name)
    os.makedirs(_kdir)
    with open(os.path.join(_kdir, "kernel.json"), "w") as _f:
        json.dump({"argv": [KERNEL, "-f", "{connection_file}"],
                   "display_name": "Python 3 (pyrometer)", "language": "python",
                   "interrupt_mode": _mode}, _f)
os.environ["JUPYTER_PATH"] = _spec_dir
os.environ.setdefault("JUPYTER_DATA_DIR", os.path.join(_spec_dir, "data"))
os.environ["JUPYTER_PLATFORM_DIRS"] = "1"
# Kernels write history under the data dir; keep the user's out of tests.
os.environ["PYROMETER_HISTORY"] = os.path.join(_spec_dir, "history.sqlite")


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_spec_dir, ignore_errors=True)


def start_kernel(name="pyrometer", **kw):
    from jupyter_client.manager import start_new_kernel
    km, kc = start_new_kernel(kernel_name=name, startup_timeout=30, **kw)
    return km, kc


@pytest.fixture(scope="module")
def kernel():
    """A kernel shared by a test module: (manager, blocking client)."""
    km, kc = start_kernel()
    yield km, kc
    kc.stop_channels()
    km.shutdown_kernel(now=False)


@pytest.fixture
def fresh_kernel():
    """A kernel of one's own, for tests that break or restart it."""
    km, kc = start_kernel()
    yield km, kc
    kc.stop_channels()
    if km.is_alive():
        km.shutdown_kernel(now=True)
