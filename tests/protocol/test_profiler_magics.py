"""The pyrometer profilers as kernel magics: registered with no import, run on
functions defined in cells, answered with display_data (text/plain +
text/html), with clear usage errors that leave the namespace intact."""
import re

import pytest

from kernel_util import execute, of_type
from pyrometer_testing import report_charts


def displays(msgs):
    return [m["content"]["data"] for m in of_type(msgs, "display_data")]


@pytest.fixture(scope="module")
def kc(kernel):
    km, kc = kernel
    reply, _ = execute(kc, "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\n"
                           "def grow():\n    blob = bytearray(20 * 2**20)\n    small = [0] * 10\n"
                           "    return len(blob)\n\n"
                           "def boom():\n    fib(5)\n    raise ValueError('late')\n"
                           "keep = 'intact'")
    assert reply["content"]["status"] == "ok"
    kc.cell_no = reply["content"]["execution_count"]
    return kc


def assert_intact(kc):
    reply, msgs = execute(kc, "keep, fib(10)")
    assert of_type(msgs, "execute_result")[0]["content"]["data"]["text/plain"] == "('intact', 55)"


def test_lsmagic_lists_profilers(kc):
    reply, msgs = execute(kc, "%lsmagic")
    out = "".join(m["content"]["text"] for m in of_type(msgs, "stream"))
    for name in ("%prun", "%pstats", "%lprun", "%memit", "%mprun", "%%prun", "%%memit", "%%mprof"):
        assert re.search(rf"(^|\s){re.escape(name)}(\s|$)", out), name


def test_prun_on_cell_function(kc):
    reply, msgs = execute(kc, "%prun -s ncalls fib(12)")
    assert reply["content"]["status"] == "ok"
    [data] = displays(msgs)
    text = data["text/plain"]
    # fib(12) is 465 calls (464 recursive), plus the statement's <module>
    assert re.search(r"466 function calls \(2 primitive calls\) in [0-9.]+ seconds", text), text
    assert "Ordered by: call count" in text
    assert re.search(r"\s465/1\s.*<cell-%d>:1\(fib\)" % kc.cell_no, text), text
    html = data["text/html"]
    assert "In [%d]" % kc.cell_no in html and "<table" in html
    assert len(report_charts(html)) == 1  # the call graph, an <img> that survives sanitizers


def test_cell_prun_and_return_value(kc):
    reply, msgs = execute(kc, "%%prun -q -r\nfib(8)\nfib(9)")
    [res] = of_type(msgs, "execute_result")
    assert displays(msgs) == []
    reply, msgs = execute(kc, "import pstats\nst = pstats.Stats(_)\n"
                              "[v[1] for k, v in st.stats.items() if k[2] == 'fib']")
    assert of_type(msgs, "execute_result")[0]["content"]["data"]["text/plain"] == "[176]"  # 67 + 109 calls


def test_prun_bad_option(kc):
    reply, msgs = execute(kc, "%prun -Q fib(3)")
    c = reply["content"]
    assert c["ename"] == "UsageError" and c["evalue"].startswith("%prun: ")
    assert c["traceback"] == ["UsageError: " + c["evalue"]]
    assert_intact(kc)


def test_prun_shows_stats_then_error(kc):
    reply, msgs = execute(kc, "%prun boom()")
    assert reply["content"]["ename"] == "ValueError"
    kinds = [m["msg_type"] for m in msgs if m["msg_type"] in ("display_data", "error")]
    assert kinds == ["display_data", "error"]
    assert "<cell-%d>:1(fib)" % kc.cell_no in displays(msgs)[0]["text/plain"]
    assert_intact(kc)


def test_lprun_on_cell_function(kc):
    reply, msgs = execute(kc, "%lprun -f fib fib(6)")
    assert reply["content"]["status"] == "ok"
    [data] = displays(msgs)
    text = data["text/plain"]
    assert "Timer unit:" in text and "Function: fib at line 1" in text
    assert "File: <cell-%d>" % kc.cell_no in text
    assert re.search(r"^\s+2\s+25\s+[0-9.]+\s+[0-9.]+\s+100\.0\s+return n if", text, re.M), text
    assert "In [%d]" % kc.cell_no in data["text/html"]


def test_lprun_forgotten_call_form(kc):
    reply, msgs = execute(kc, "%lprun -f fib() fib(3)")
    c = reply["content"]
    assert c["ename"] == "UsageError" and c["evalue"].startswith("%lprun: ")
    assert "-f fib" in c["evalue"]
    assert_intact(kc)


def test_memit(kc):
    reply, msgs = execute(kc, "%memit bytearray(30 * 2**20)")
    assert reply["content"]["status"] == "ok"
    text = displays(msgs)[0]["text/plain"] if displays(msgs) else \
        "".join(m["content"]["text"] for m in of_type(msgs, "stream"))
    m = re.search(r"peak memory: ([0-9.]+) MiB, increment: ([0-9.]+) MiB", text)
    assert m and float(m.group(2)) >= 29.5, text


def test_mprun_on_cell_function(kc):
    reply, msgs = execute(kc, "%mprun -f grow grow()")
    assert reply["content"]["status"] == "ok"
    [data] = displays(msgs)
    text = data["text/plain"]
    assert "Filename: <cell-%d>" % kc.cell_no in text
    line = [l for l in text.splitlines() if "bytearray(20 * 2**20)" in l][0]
    assert "20.0 MiB" in line or "20.00 MiB" in line, line


def test_mprun_missing_f(kc):
    reply, msgs = execute(kc, "%mprun grow()")
    c = reply["content"]
    assert c["ename"] == "UsageError" and c["evalue"].startswith("%mprun: ")
    assert_intact(kc)
