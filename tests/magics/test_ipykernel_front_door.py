"""The third front door: inside Debian's ipykernel, `%load_ext pyrometer`
registers the same magics, and they answer with the same MIME bundles."""
import os
import re
import sys

import pytest

from pyrometer_testing import BUILD, ROOT

sys.path.insert(0, os.path.join(ROOT, "tests", "protocol"))
from kernel_util import execute, of_type  # noqa: E402


@pytest.fixture(scope="module")
def ipk():
    from jupyter_client.manager import start_new_kernel
    env = dict(os.environ, PYTHONPATH=os.path.join(BUILD, "ext"),
               PYDEVD_DISABLE_FILE_VALIDATION="1")
    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=60, env=env)
    yield kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def run_ok(kc, code):
    reply, msgs = execute(kc, code, timeout=60)
    assert reply["content"]["status"] == "ok", reply["content"]
    return msgs


def test_load_ext_and_profile_a_cell_function(ipk):
    msgs = run_ok(ipk, "%load_ext pyrometer\nimport pyrometer\npyrometer.__file__")
    path = of_type(msgs, "execute_result")[0]["content"]["data"]["text/plain"]
    assert path.strip("'").startswith(os.path.join(BUILD, "ext"))
    run_ok(ipk, "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)")
    [data] = [m["content"]["data"] for m in of_type(run_ok(ipk, "%prun fib(10)"), "display_data")]
    assert re.search(r"178 function calls \(2 primitive calls\)", data["text/plain"])
    assert "<svg" in data["text/html"]
    [data] = [m["content"]["data"]
              for m in of_type(run_ok(ipk, "%lprun -f fib fib(5)"), "display_data")]
    assert "Function: fib at line 1" in data["text/plain"]
    [data] = [m["content"]["data"]
              for m in of_type(run_ok(ipk, "%memit bytearray(10 * 2**20)"), "display_data")]
    assert "peak memory:" in data["text/plain"]


def test_usage_error_is_ipythons(ipk):
    run_ok(ipk, "%load_ext pyrometer")
    reply, msgs = execute(ipk, "%prun -Q 1")
    c = reply["content"]
    assert c["ename"] == "UsageError"
    assert c["evalue"].startswith("%prun: unknown option -Q")


def test_magic_help_is_pyrometers(ipk):
    """%lprun? under ipykernel shows the help the kernel shows, not the
    wrapper type's docstring; %lprun -h prints it."""
    run_ok(ipk, "%load_ext pyrometer")
    run_ok(ipk, "import pyrometer")
    reply, msgs = execute(ipk, "%lprun?", timeout=60)
    [p] = reply["content"]["payload"]
    text = p["data"]["text/plain"]
    assert "A pyrometer magic bound to an IPython shell" not in text
    assert "Profile chosen functions line by line: hits and time per line." in text
    assert re.search(r"-f FUNC +profile this function", text), text
    msgs = run_ok(ipk, "%lprun -h")
    out = "".join(m["content"]["text"] for m in of_type(msgs, "stream"))
    msgs = run_ok(ipk, "print(pyrometer.MAGIC_HELP['lprun'])")
    expected = "".join(m["content"]["text"] for m in of_type(msgs, "stream"))
    assert out == expected and out.startswith("%lprun [-f func]")
