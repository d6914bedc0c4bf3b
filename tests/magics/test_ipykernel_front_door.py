"""The third front door: inside Debian's ipykernel, `%load_ext pyrometer`
registers the same magics, and they answer with the same MIME bundles."""
import json
import os
import re
import sys

import pytest

from pyrometer_testing import (BUILD, PYTHON, ROOT, SPEC_DIR, import_or_skip, python_lacks,
                               python_version, report_charts)

sys.path.insert(0, os.path.join(ROOT, "tests", "protocol"))
from kernel_util import execute, of_type  # noqa: E402


@pytest.fixture(scope="module")
def ipk():
    """ipykernel on the Python the module was built for (not whatever the
    system's "python3" kernelspec names: in the forky root that is 3.14)."""
    import_or_skip("jupyter_client.manager")
    if python_lacks("ipykernel"):
        pytest.skip("needs ipykernel, which Python %d.%d cannot import (%s)"
                    % (python_version()[:2] + (python_lacks("ipykernel"),)))
    from jupyter_client.manager import start_new_kernel
    kdir = os.path.join(SPEC_DIR, "kernels", "ipykernel-under-test")
    os.makedirs(kdir, exist_ok=True)
    with open(os.path.join(kdir, "kernel.json"), "w") as f:
        json.dump({"argv": [PYTHON, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                   "display_name": "ipykernel", "language": "python"}, f)
    env = dict(os.environ, PYTHONPATH=os.path.join(BUILD, "ext"),
               PYDEVD_DISABLE_FILE_VALIDATION="1")
    km, kc = start_new_kernel(kernel_name="ipykernel-under-test", startup_timeout=60, env=env)
    kc.km = km
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
    assert len(report_charts(data["text/html"])) == 1
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


def test_sample_and_autosample_in_ipykernel(ipk):
    import time
    run_ok(ipk, "%load_ext pyrometer")
    run_ok(ipk, "import time\ndef spinner(t):\n    end = time.perf_counter() + t\n"
                "    while time.perf_counter() < end:\n        pass")
    [data] = [m["content"]["data"]
              for m in of_type(run_ok(ipk, "%sample spinner(0.2)"), "display_data")]
    assert re.search(r"└─ spinner  In \[\d+\]:2$", data["text/plain"], re.M), data["text/plain"]
    assert "data:image/svg+xml;base64," in data["text/html"]
    run_ok(ipk, "%autosample on")
    try:
        # stop_on_error off: ipykernel aborts what follows an error for a moment
        msg_id = ipk.execute("while True: spinner(0.01)", stop_on_error=False)
        time.sleep(1.0)
        ipk.km.interrupt_kernel()
        reply = ipk.get_shell_msg(timeout=10)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = ipk.get_shell_msg(timeout=10)
        c = reply["content"]
        assert c["status"] == "error" and c["ename"] == "KeyboardInterrupt", c
        assert any("%sample --last shows where this cell spent its time." in line
                   for line in c["traceback"]), c["traceback"]
        [data] = [m["content"]["data"]
                  for m in of_type(run_ok(ipk, "%sample --last"), "display_data")]
        text = data["text/plain"]
        # every sample in the cell's code is under <module>, the one root;
        # samples that fell in ipykernel's own work before and after the
        # cell are left out (a note names them from 1%), never a root
        total = float(re.match(r"%sample --last: (\d+\.\d+) s sampled", text).group(1))
        roots = re.findall(r"^(\d\.\d{3})\s+\d+%  (\S+)  ", text, re.M)
        assert [name for _, name in roots] == ["<module>"], text
        assert re.search(r"^\d\.\d{3}\s+\d+%  <module>  In \[\d+\]:1\n"
                         r"\d\.\d{3}\s+\d+%  └─ spinner  In \[\d+\]:2$", text, re.M), text
        outside = total - float(roots[0][0])
        note = re.search(r"^(\d\.\d{3}) s \(\d+%\) outside the cell's code", text, re.M)
        assert outside < 0.1 * total, text
        if note:
            assert abs(float(note.group(1)) - outside) <= 0.002, text
        else:
            assert outside < 0.01 * total + 0.001, text
    finally:
        run_ok(ipk, "%autosample off")


def test_magic_help_is_pyrometers(ipk):
    """%lprun?, ?%lprun, Shift-Tab and %lprun -h under ipykernel show the
    help the kernel shows (pyrometer.MAGIC_HELP), not the wrapper type's
    docstring."""
    run_ok(ipk, "%load_ext pyrometer")
    run_ok(ipk, "import pyrometer")
    msgs = run_ok(ipk, "print(pyrometer.MAGIC_HELP['lprun'], end='')")
    expected = "".join(m["content"]["text"] for m in of_type(msgs, "stream"))
    assert expected.startswith("%lprun [-f func]") and "\nExample:\n  %lprun " in expected
    assert re.search(r"-f FUNC +profile this function", expected), expected
    pages = []
    for code in ("%lprun?", "?%lprun"):
        reply, msgs = execute(ipk, code, timeout=60)
        [p] = reply["content"]["payload"]
        pages.append(re.sub(r"\x1b\[[0-9;]*m", "", p["data"]["text/plain"]))
    assert pages[0] == pages[1]
    assert "A pyrometer magic bound to an IPython shell" not in pages[0]
    # IPython's page: the docstring whole (its final newline dropped)
    assert "Docstring:\n" + expected.rstrip("\n") + "\n" in pages[0] + "\n", pages[0]
    ipk.inspect("%lprun -f", cursor_pos=3, detail_level=0)
    reply = ipk.get_shell_msg(timeout=10)
    assert reply["content"]["found"] is True
    tip = re.sub(r"\x1b\[[0-9;]*m", "", reply["content"]["data"]["text/plain"])
    assert expected.rstrip("\n") in tip, tip
    msgs = run_ok(ipk, "%lprun -h")
    out = "".join(m["content"]["text"] for m in of_type(msgs, "stream"))
    assert out == expected
