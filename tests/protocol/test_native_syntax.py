"""Cell syntax the kernel handles itself, with no IPython (issue 13): pasted
indented code, automagic, and exit/quit (ask_exit payload, the kernel ends;
a real jupyter console quits)."""
import os
import re
import shutil
import sys
import time

import pytest

from kernel_util import execute, of_type, stdout_of
from pyrometer_testing import start_kernel


def results(msgs):
    return [m["content"]["data"]["text/plain"] for m in of_type(msgs, "execute_result")]


def ok(kc, code):
    reply, msgs = execute(kc, code)
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply, msgs


# ---- pasted indented code ---------------------------------------------------

def test_uniformly_indented_code_runs(kernel):
    km, kc = kernel
    reply, msgs = ok(kc, "    def f(x):\n        return x * 2\n\n    print(f(21))\n    f(4)")
    assert stdout_of(msgs) == "42\n"
    assert results(msgs) == ["8"]


def test_indented_code_after_blank_lines_with_a_magic(kernel):
    km, kc = kernel
    reply, msgs = ok(kc, "\n\n        x = 5\n        %time y = x + 1\n        y")
    assert results(msgs) == ["6"]
    assert "Wall time" in stdout_of(msgs)


def test_indented_error_points_at_the_cell_line(kernel):
    km, kc = kernel
    reply, msgs = execute(kc, "    a = 1\n    b = a / 0")
    c = reply["content"]
    assert c["ename"] == "ZeroDivisionError"
    tb = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(c["traceback"]))
    # linecache holds the dedented cell, so the line and its columns agree
    assert f"Cell In[{c['execution_count']}], line 2\n      1 a = 1\n----> 2 b = a / 0\n" in tb


def test_is_complete_on_indented_code(kernel):
    km, kc = kernel
    kc.is_complete("    x = 1\n")
    assert kc.get_shell_msg(timeout=5)["content"]["status"] == "complete"
    kc.is_complete("    if x:")
    c = kc.get_shell_msg(timeout=5)["content"]
    assert c == {"status": "incomplete", "indent": "        "}


def test_inconsistent_indent_is_still_an_error(kernel):
    km, kc = kernel
    reply, msgs = execute(kc, "    a = 1\n  b = 2")
    assert reply["content"]["ename"] == "IndentationError"


# ---- automagic ------------------------------------------------------------------

def test_automagic_pwd_and_cd(kernel, tmp_path):
    km, kc = kernel
    reply, msgs = ok(kc, "pwd")
    start = results(msgs)[0]
    ok(kc, f"cd {tmp_path}")
    reply, msgs = ok(kc, "pwd")
    assert results(msgs) == [repr(str(tmp_path))]
    ok(kc, f"cd {eval(start)}")


def test_automagic_with_options(kernel):
    km, kc = kernel
    reply, msgs = ok(kc, "time z = 3 * 3")
    assert "Wall time" in stdout_of(msgs)
    assert results(ok(kc, "z")[1]) == ["9"]


def test_a_variable_shadows_the_magic(kernel):
    km, kc = kernel
    cwd = results(ok(kc, "%pwd")[1])
    ok(kc, "pwd = 'mine'")
    assert results(ok(kc, "pwd")[1]) == ["'mine'"]
    ok(kc, "del pwd")
    assert results(ok(kc, "pwd")[1]) == cwd


def test_builtins_and_keywords_are_never_automagic(kernel):
    km, kc = kernel
    # `time` is a magic; once imported, the module wins
    ok(kc, "import time")
    reply, msgs = execute(kc, "time 1")
    assert reply["content"]["ename"] == "SyntaxError"
    ok(kc, "del time")


def test_automagic_only_for_one_line_cells(kernel):
    km, kc = kernel
    reply, msgs = execute(kc, "x = 1\npwd")
    assert reply["content"]["ename"] == "NameError"


def test_assignment_to_a_magic_name_is_an_assignment(kernel):
    km, kc = kernel
    ok(kc, "who = 3")
    assert results(ok(kc, "who")[1]) == ["3"]
    ok(kc, "del who")


def test_unknown_name_is_still_a_name_error(kernel):
    km, kc = kernel
    reply, msgs = execute(kc, "nosuchmagic")
    assert reply["content"]["ename"] == "NameError"


# ---- exit and quit ----------------------------------------------------------------

def _exits(code):
    km, kc = start_kernel()
    try:
        reply, msgs = execute(kc, code)
        c = reply["content"]
        assert c["status"] == "ok", c
        assert c["payload"] == [{"source": "ask_exit", "keepkernel": False}]
        assert of_type(msgs, "execute_result") == [] and of_type(msgs, "error") == []
        deadline = time.time() + 10
        while km.is_alive() and time.time() < deadline:
            time.sleep(0.05)
        assert not km.is_alive()
        assert km.provisioner.process.returncode == 0
    finally:
        kc.stop_channels()
        if km.is_alive():
            km.shutdown_kernel(now=True)


@pytest.mark.parametrize("code", ["exit", "quit", "exit()", "quit()", "x = 1\nexit"])
def test_exit_ends_the_kernel(code):
    _exits(code)


def test_exit_keep_kernel(kernel):
    km, kc = kernel
    reply, msgs = ok(kc, "exit(keep_kernel=True)")
    assert reply["content"]["payload"] == [{"source": "ask_exit", "keepkernel": True}]
    time.sleep(0.6)
    assert km.is_alive()
    assert results(ok(kc, "1 + 1")[1]) == ["2"]


def test_exit_named_but_not_last_does_nothing(kernel):
    km, kc = kernel
    reply, msgs = ok(kc, "e = exit\nprint(type(e).__name__)")
    assert reply["content"]["payload"] == []
    assert stdout_of(msgs) == "ExitAutocall\n"
    time.sleep(0.6)
    assert km.is_alive()


@pytest.mark.skipif(shutil.which("jupyter-console") is None, reason="jupyter-console not installed")
@pytest.mark.parametrize("code", ["exit", "exit()", "quit()"])
def test_jupyter_console_quits_on_exit(code):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(shutil.which("jupyter-console"), ["--kernel", "pyrometer", "--simple-prompt"],
                          env=dict(os.environ, TERM="dumb"), encoding="utf-8", timeout=30)
    try:
        child.expect(r"In \[1\]: ")
        child.sendline("6 * 7")
        child.expect(r"Out\[1\]: 42")
        child.expect(r"In \[2\]: ")
        child.sendline(code)
        child.expect(pexpect.EOF, timeout=20)
        assert "Shutting down kernel" in child.before
        assert "In [3]" not in child.before
        assert "SystemExit" not in child.before and "Traceback" not in child.before
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
