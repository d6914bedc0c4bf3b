"""%sample and %autosample through the kernel: functions defined in cells get
their line heat, %sample --last shows the previous cell after a normal and an
interrupted cell, the interrupt's error says so, and %autosample off leaves
no thread behind."""
import os
import re
import time

import pytest

from kernel_util import execute, of_type

CELL = ("import time\n"
        "def spinner(t):\n"
        "    end = time.perf_counter() + t\n"
        "    while time.perf_counter() < end:\n"
        "        pass\n"
        "def stuck():\n"
        "    while True:\n"
        "        spinner(0.01)\n")


def displays(msgs):
    return [m["content"]["data"] for m in of_type(msgs, "display_data")]


def threads(km):
    return len(os.listdir(f"/proc/{km.provisioner.process.pid}/task"))


@pytest.fixture
def kc(fresh_kernel):
    km, kc = fresh_kernel
    reply, _ = execute(kc, CELL)
    assert reply["content"]["status"] == "ok"
    kc.km = km
    kc.defs = reply["content"]["execution_count"]
    return kc


def test_sample_cell_function_line_heat(kc):
    reply, msgs = execute(kc, "%sample spinner(0.3)")
    assert reply["content"]["status"] == "ok", reply["content"]
    [data] = displays(msgs)
    text = data["text/plain"]
    n = kc.defs
    assert re.search(rf"^\d\.\d{{3}}\s+\d+%  └─ spinner  In \[{n}\]:2$", text, re.M), text
    # where the samples fell in the cell's function: the loop
    assert re.search(rf"Line heat: spinner  In \[{n}\]:2\n    share  seconds  line\n"
                     r"(.*\n)*\s+\d+\.\d%\s+0\.\d{3}     4      while time\.perf_counter\(\) < end:\n",
                     text), text
    assert "Line heat:" in data["text/html"] and "data:image/svg+xml;base64," in data["text/html"]


def test_last_after_a_normal_and_an_interrupted_cell(kc):
    km = kc.km
    before = threads(km)
    reply, _ = execute(kc, "%autosample on")
    assert reply["content"]["status"] == "ok"
    assert threads(km) == before + 1
    reply, _ = execute(kc, "spinner(0.3)")
    n = reply["content"]["execution_count"]
    reply, msgs = execute(kc, "%sample --last")
    assert reply["content"]["status"] == "ok", reply["content"]
    [data] = displays(msgs)
    text = data["text/plain"]
    assert text.startswith("%sample --last: "), text
    # spinner holds (a rounded) 100% of the cell, not every sample: on a busy
    # machine one can fall in <module> on the way in or out of the call
    assert re.search(rf"^0\.\d{{3}} 100%  <module>  In \[{n}\]:1\n0\.\d{{3}} 100%  └─ spinner  In \[{kc.defs}\]:2$",
                     text, re.M), text

    # the stuck cell, interrupted
    msg_id = kc.execute("stuck()")
    time.sleep(1.0)
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=10)
    assert reply["parent_header"]["msg_id"] == msg_id
    c = reply["content"]
    assert c["status"] == "error" and c["ename"] == "KeyboardInterrupt"
    assert c["traceback"][-1] == "%sample --last shows where this cell spent its time.", c
    stuck_no = c["execution_count"]
    reply, msgs = execute(kc, "%sample --last -r")
    assert reply["content"]["status"] == "ok", reply["content"]
    [data] = displays(msgs)
    text = data["text/plain"]
    assert re.search(rf"^\d\.\d{{3}} 100%  <module>  In \[{stuck_no}\]:1\n"
                     rf"\d\.\d{{3}}\s+\d+%  └─ stuck  In \[{kc.defs}\]:6\n"
                     rf"\d\.\d{{3}}\s+\d+%     └─ spinner  In \[{kc.defs}\]:2$", text, re.M), text
    secs = float(text.split("%sample --last: ")[1].split(" s")[0])
    assert secs >= 0.9, text
    # the stuck function's loop line holds the time
    assert re.search(rf"Line heat: stuck  In \[{kc.defs}\]:6\n(.*\n)*\s+\d+\.\d%\s+\d\.\d{{3}}     8          spinner\(0\.01\)\n",
                     text), text

    reply, _ = execute(kc, "%autosample off")
    assert reply["content"]["status"] == "ok"
    assert threads(km) == before
    reply, msgs = execute(kc, "%sample --last")
    assert reply["content"]["ename"] == "UsageError"
    assert reply["content"]["evalue"].startswith("%sample: --last needs a sampler under every cell")


def test_no_note_without_autosample(kc):
    km = kc.km
    msg_id = kc.execute("stuck()")
    time.sleep(0.5)
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=10)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert not any("%sample" in line for line in reply["content"]["traceback"])


def test_exception_notes_are_shown(kc):
    """PEP 678 notes follow the exception in the kernel's traceback, one
    entry each, as Python prints them (the autosample note is one)."""
    reply, _ = execute(kc, "e = ValueError('bad')\ne.add_note('first note')\n"
                           "e.add_note('second')\nraise e")
    tb = reply["content"]["traceback"]
    assert tb[-2:] == ["first note", "second"], tb
    assert "ValueError" in tb[-3] and "bad" in tb[-3]
