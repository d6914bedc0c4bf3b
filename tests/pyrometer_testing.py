"""Shared test support: the build under test, a temporary JUPYTER_PATH with
kernelspecs for the built kernel, and starting kernels through
jupyter_client exactly as Jupyter does. Imported (not a conftest) so that
test modules can `from pyrometer_testing import ...` unambiguously."""
import json
import os
import shutil
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("PYROMETER_BUILD", os.path.join(ROOT, "build"))
KERNEL = os.path.join(BUILD, "kernel", "pyrometer-kernel")

SPEC_DIR = tempfile.mkdtemp(prefix="pyrometer-jupyter-")
for _name, _mode, _display in (
        ("pyrometer", "signal", "Python 3 (pyrometer)"),
        ("pyrometer-msg", "message", "Python 3 (pyrometer, message interrupt)")):
    _kdir = os.path.join(SPEC_DIR, "kernels", _name)
    os.makedirs(_kdir)
    with open(os.path.join(_kdir, "kernel.json"), "w") as _f:
        json.dump({"argv": [KERNEL, "-f", "{connection_file}"], "display_name": _display,
                   "language": "python", "interrupt_mode": _mode}, _f)
os.environ["JUPYTER_PATH"] = SPEC_DIR
os.environ.setdefault("JUPYTER_DATA_DIR", os.path.join(SPEC_DIR, "data"))
os.environ["JUPYTER_PLATFORM_DIRS"] = "1"
# Kernels write history under the data dir; keep the user's out of tests.
os.environ["PYROMETER_HISTORY"] = os.path.join(SPEC_DIR, "history.sqlite")


def cleanup():
    shutil.rmtree(SPEC_DIR, ignore_errors=True)


def start_kernel(name="pyrometer", **kw):
    """Starts a kernel from the temporary kernelspecs: (manager, client)."""
    from jupyter_client.manager import start_new_kernel
    km, kc = start_new_kernel(kernel_name=name, startup_timeout=30, **kw)
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
