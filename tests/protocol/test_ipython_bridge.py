"""IPython on demand, through jupyter_client: the first cell that uses
something only IPython has (one of its magics, %load_ext of an IPython
extension, an InteractiveShell attribute) brings IPython's shell in, bound to
the kernel's namespace; its magics and extensions then work as under
ipykernel, and pyrometer's own magics stay native. A session that never
needs IPython never imports it."""
import base64
import os
import re
import time

import pytest

from kernel_util import execute, of_type, stdout_of
from pyrometer_testing import needs, python_version, start_kernel

pytest.importorskip("IPython")


def ok(kc, code, **kw):
    reply, msgs = execute(kc, code, timeout=60, **kw)
    assert reply["content"]["status"] == "ok", reply["content"]
    return msgs


def value(kc, expr):
    msgs = ok(kc, expr)
    [res] = of_type(msgs, "execute_result")
    return res["content"]["data"]["text/plain"]


def ipython_loaded(kc):
    return value(kc, "import sys as _s; 'IPython' in _s.modules") == "True"


@pytest.fixture(scope="module")
def kc(kernel, tmp_path_factory):
    km, kc = kernel
    d = tmp_path_factory.mktemp("bridge")
    ok(kc, f"import os; os.chdir({str(d)!r})")
    return kc


# ---- a session that never needs IPython --------------------------------------------------


def test_plain_session_never_imports_ipython(fresh_kernel, tmp_path):
    km, kc = fresh_kernel
    ok(kc, f"import os; os.chdir({str(tmp_path)!r})")
    for code in ("x = 1\nx + 1", "def fib(n):\n    return n if n < 2 else fib(n-1) + fib(n-2)",
                 "%prun -q fib(8)", "%lprun -f fib fib(5)", "%memit -q x = [0] * 1000",
                 "%time fib(5)", "%timeit -n 1 -r 1 fib(5)", "%lsmagic", "%magic", "%lprun?",
                 "%prun -h", "%cd .", "%env HOME", "%who", "print('hi')",
                 "get_ipython().events.register('post_run_cell', lambda r: None)",
                 "get_ipython().kernel.implementation", "get_ipython().set_next_input('x')",
                 "?%lprun", "%mprun -f fib fib(3)", "%%mprof\nx = [0] * 1000",
                 "%prun -q -D fib.prof fib(5)", "%pstats fib.prof", "%sample fib(12)",
                 "%autosample on", "%autosample off", "pwd", "    y = 1\n    y + 1",
                 "import asyncio\nawait asyncio.sleep(0)", "asyncio.run(asyncio.sleep(0))",
                 "get_ipython().object_inspect('fib')", "%colors NoColor", "%colors Linux"):
        reply, _ = execute(kc, code, timeout=60)
        assert reply["content"]["status"] == "ok", (code, reply["content"])
    kc.inspect("%lprun -f", cursor_pos=3)
    assert kc.get_shell_msg(timeout=10)["content"]["found"] is True
    kc.complete("fi", cursor_pos=2)
    assert "fib" in kc.get_shell_msg(timeout=10)["content"]["matches"]
    assert not ipython_loaded(kc)
    reply, _ = execute(kc, "1/0")
    assert reply["content"]["ename"] == "ZeroDivisionError"
    assert not ipython_loaded(kc)


# ---- IPython's magics ------------------------------------------------------------------------


def test_ipython_magic_brings_ipython_in(kc):
    msgs = ok(kc, "%%writefile hello.txt\nhello\nworld\n")
    assert stdout_of(msgs) == "Writing hello.txt\n"
    with open(os.path.join(value(kc, "os.getcwd()").strip("'"), "hello.txt")) as f:
        assert f.read() == "hello\nworld\n"
    assert ipython_loaded(kc)
    # IPython's shell shares the kernel's namespace both ways
    ok(kc, "shared = 41")
    assert value(kc, "get_ipython().user_ns['shared'] + 1") == "42"
    assert value(kc, "import IPython; IPython.get_ipython().user_ns is globals()") == "True"


def test_run(kc):
    ok(kc, "%%writefile script.py\nimport sys\nran = 'yes'\nprint('script says', 6 * 7)\n")
    msgs = ok(kc, "%run script.py")
    assert stdout_of(msgs) == "script says 42\n"
    assert value(kc, "ran") == "'yes'"


def test_pip(kc):
    msgs = ok(kc, "%pip --version")
    out = stdout_of(msgs)
    assert re.search(r"^pip \d+\.\d+", out, re.M), out
    assert "Note: you may need to restart the kernel to use updated packages." in out


def test_history(kc):
    ok(kc, "marker_a = 1")
    ok(kc, "marker_b = 2")
    out = stdout_of(ok(kc, "%history -n"))
    lines = out.splitlines()
    # this session's cells, numbered as the kernel counts them, raw as typed
    count = int(value(kc, "len(In) - 1"))
    assert re.search(r"^\s*\d+: marker_a = 1$", out, re.M), out
    assert re.search(r"^\s*\d+: marker_b = 2$", out, re.M), out
    assert lines[-1].endswith("%history -n")
    assert re.match(r"\s*(\d+):", lines[-1]).group(1) == str(count - 1)
    assert "marker_b = 2" in stdout_of(ok(kc, "%hist"))


def test_history_of_earlier_sessions(tmp_path):
    """%history -l and -g and ~1/ ranges read earlier sessions from the
    kernel's own database, as ipykernel's read IPython's; the current
    cell's input is there too."""
    env = dict(os.environ, PYROMETER_HISTORY=str(tmp_path / "history.sqlite"))
    km, kc = start_kernel(env=env)
    try:
        ok(kc, "earlier_a = 'first session'")
        ok(kc, "earlier_b = 2")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    km, kc = start_kernel(env=env)
    try:
        ok(kc, "now_c = 3")
        # the last 3 inputs before this cell: the other session's, then this one's
        assert stdout_of(ok(kc, "%history -l 3")) == \
            "earlier_a = 'first session'\nearlier_b = 2\nnow_c = 3\n"
        out = stdout_of(ok(kc, "%history -g earlier_"))
        assert re.fullmatch(r" *(\d+)/1: earlier_a = 'first session'\n *\1/2: earlier_b = 2\n"
                            r" *3: %history -g earlier_\n", out), out
        assert stdout_of(ok(kc, "%history ~1/1-2")) == \
            "earlier_a = 'first session'\nearlier_b = 2\n"
        # the current session still comes from the kernel's In
        assert stdout_of(ok(kc, "%history -n 1")) == "   1: now_c = 3\n"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_capture(kc):
    msgs = ok(kc, "%%capture cap\nprint('captured text')\n"
                  "from IPython.display import HTML\ndisplay(HTML('<b>captured</b>'))\n")
    assert of_type(msgs, "stream") == [] and of_type(msgs, "display_data") == []
    assert value(kc, "cap.stdout") == "'captured text\\n'"
    assert value(kc, "[o.data['text/html'] for o in cap.outputs]") == "['<b>captured</b>']"
    # shown when asked
    msgs = ok(kc, "cap.show()")
    assert stdout_of(msgs) == "captured text\n"
    [d] = of_type(msgs, "display_data")
    assert d["content"]["data"]["text/html"] == "<b>captured</b>"


@pytest.mark.parametrize("magic", ["bash", "sh", "script bash"])
def test_shell_cell_magics(kc, magic):
    msgs = ok(kc, f"%%{magic}\necho out $((6 * 7))\necho err >&2\n")
    assert stdout_of(msgs) == "out 42\n"
    assert stdout_of(msgs, "stderr") == "err\n"


@pytest.mark.parametrize("magic,mime,body", [
    ("html", "text/html", "<b>bold</b>"),
    ("javascript", "application/javascript", "console.log(1)"),
    ("latex", "text/latex", r"$\alpha$"),
    ("markdown", "text/markdown", "# Title"),
    ("svg", "image/svg+xml", '<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>'),
])
def test_display_cell_magics(kc, magic, mime, body):
    msgs = ok(kc, f"%%{magic}\n{body}")
    [d] = of_type(msgs, "display_data")
    assert d["content"]["data"][mime] == body
    assert of_type(msgs, "execute_result") == [] and stdout_of(msgs) == ""


def test_config(kc):
    ok(kc, "%config InteractiveShell.separate_in = '#'")
    assert value(kc, "get_ipython().config.InteractiveShell.separate_in") == "'#'"
    assert value(kc, "get_ipython().separate_in") == "'#'"
    out = stdout_of(ok(kc, "%config"))
    assert "Available objects for config:" in out


def test_precision_pprint_and_for_type_shape_the_value_once_ipython_is_in(kc):
    """Once IPython's shell is up, a cell's value is formatted by its
    display_formatter, as under ipykernel: %precision, %pprint and
    formatters registered with for_type apply."""
    ok(kc, "%precision 3")
    try:
        assert value(kc, "3.14159265") == "3.142"
        assert value(kc, "[2.71828, 1.0]") == "[2.718, 1.000]"
    finally:
        ok(kc, "%precision")
    assert value(kc, "3.14159265") == "3.14159265"
    ok(kc, "class Money(float): pass\n"
           "_f = get_ipython().display_formatter.formatters['text/plain']\n"
           "_f.for_type(Money, lambda o, p, cycle: p.text('$%.2f' % o))")
    try:
        assert value(kc, "Money(2.5)") == "$2.50"
        assert value(kc, "[Money(1), Money(2)]") == "[$1.00, $2.00]"
    finally:
        ok(kc, "_f.pop(Money)")
    assert value(kc, "Money(2.5)") == "2.5"
    assert stdout_of(ok(kc, "%pprint")) == "Pretty printing has been turned OFF\n"
    try:
        assert value(kc, "list(range(30))") == repr(list(range(30)))
    finally:
        assert stdout_of(ok(kc, "%pprint")) == "Pretty printing has been turned ON\n"
    assert value(kc, "list(range(30))") == "[" + ",\n ".join(map(str, range(30))) + "]"
    # A tuple is the value to format, not the arguments of format().
    assert value(kc, "(True, 'a')") == "(True, 'a')"
    assert value(kc, "(1, 2, 3)") == "(1, 2, 3)"


def test_xmode(kc):
    assert stdout_of(ok(kc, "%xmode Minimal")) == "Exception reporting mode: Minimal\n"
    assert value(kc, "get_ipython().InteractiveTB.mode") == "'Minimal'"
    assert stdout_of(ok(kc, "%xmode Context")) == "Exception reporting mode: Context\n"


def test_conda_is_ipythons(kc):
    """Outside a conda environment, IPython's %conda refuses, as under
    ipykernel (forky and Debian have no conda)."""
    reply, msgs = execute(kc, "%conda --version")
    c = reply["content"]
    assert (c["ename"], c["evalue"]) == (
        "ValueError", "The python kernel does not appear to be a conda environment.  "
        "Please use ``%pip install`` instead.")


def test_await_and_asyncio_run_once_ipython_is_in(kc):
    ok(kc, "%xmode Context")
    msgs = ok(kc, "import asyncio\nasync def agen():\n    yield 1\n    yield 2\n"
                  "async for i in agen():\n    print(i)\nawait asyncio.sleep(0, 'awaited')")
    assert stdout_of(msgs) == "1\n2\n"
    assert [m["content"]["data"]["text/plain"] for m in of_type(msgs, "execute_result")] == \
        ["'awaited'"]
    assert value(kc, "asyncio.run(asyncio.sleep(0, 'ran'))") == "'ran'"


def test_env_is_native(kc):
    ok(kc, "%env BRIDGE_TEST=on")
    assert value(kc, "os.environ['BRIDGE_TEST']") == "'on'"


def test_store(kc, kernel):
    ok(kc, "stored_value = [1, 2, 3]")
    assert stdout_of(ok(kc, "%store stored_value")) == "Stored 'stored_value' (list)\n"
    ok(kc, "del stored_value")
    ok(kc, "%store -r stored_value")
    assert value(kc, "stored_value") == "[1, 2, 3]"
    ok(kc, "%store -d stored_value")


def test_autoreload(kc):
    cwd = value(kc, "os.getcwd()").strip("'")
    path = os.path.join(cwd, "reloadme.py")
    with open(path, "w") as f:
        f.write("def answer():\n    return 1\n")
    ok(kc, f"import sys; sys.path.insert(0, {cwd!r}); import reloadme")
    ok(kc, "%load_ext autoreload")
    ok(kc, "%autoreload 2")
    assert value(kc, "reloadme.answer()") == "1"
    with open(path, "w") as f:
        f.write("def answer():\n    return 2\n")
    t = time.time() + 5
    os.utime(path, (t, t))
    msgs = ok(kc, "reloadme.answer()")
    assert of_type(msgs, "execute_result")[0]["content"]["data"]["text/plain"] == "2"
    assert stdout_of(msgs, "stderr") == ""


def test_debug_post_mortem(kc):
    ok(kc, "def broken(x):\n    y = x + 1\n    return y / 0\n")
    reply, _ = execute(kc, "broken(41)")
    assert reply["content"]["ename"] == "ZeroDivisionError"
    msg_id = kc.execute("%debug", allow_stdin=True)
    prompts = []
    for answer in ("p y", "up", "q"):
        req = kc.get_stdin_msg(timeout=30)
        assert req["msg_type"] == "input_request"
        prompts.append(req["content"]["prompt"])
        kc.input(answer)
    reply = kc.get_shell_msg(timeout=30)
    while reply["parent_header"]["msg_id"] != msg_id:
        reply = kc.get_shell_msg(timeout=30)
    assert reply["content"]["status"] == "ok"
    out = ""
    while True:
        m = kc.get_iopub_msg(timeout=10)
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        if m["msg_type"] == "stream":
            out += m["content"]["text"]
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            break
    assert all("ipdb>" in p for p in prompts), prompts
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    assert re.search(r"^42$", plain, re.M), plain  # p y in broken's frame
    assert "----> 3     return y / 0" in plain, plain
    # `up` reaches the cell's frame (IPython 9) or finds broken's caller is the
    # oldest (IPython 8 starts at the failing frame); no kernel frame either way
    frames = re.findall(r"^> (\S+)\(\d+\)", plain, re.M)
    assert frames and all(f.startswith("<cell-") for f in frames), plain
    assert "*** Oldest frame" in plain or frames[-1] != frames[0], plain


def test_automagic_of_ipython_magics(fresh_kernel, tmp_path):
    """A one-line cell that starts with the name of one of IPython's line
    magics runs it, as IPython's automagic does (bringing IPython in),
    unless a variable shadows the name."""
    km, kc = fresh_kernel
    (tmp_path / "auto.py").write_text("print('auto ran', 6 * 7)\n")
    ok(kc, f"import os; os.chdir({str(tmp_path)!r})")
    assert not ipython_loaded(kc)
    assert stdout_of(ok(kc, "run auto.py")) == "auto ran 42\n"
    assert ipython_loaded(kc)
    assert stdout_of(ok(kc, "xmode Minimal")) == "Exception reporting mode: Minimal\n"
    assert stdout_of(ok(kc, "xmode Context")) == "Exception reporting mode: Context\n"
    out = stdout_of(ok(kc, "pip --version"))
    assert re.search(r"^pip \d+\.\d+", out, re.M), out
    ok(kc, "run = 'mine'")
    assert value(kc, "run") == "'mine'"
    reply, _ = execute(kc, "run auto.py")
    assert reply["content"]["ename"] == "SyntaxError"


def test_no_automagic_of_ipython_magics_without_ipython(fresh_kernel):
    km, kc = fresh_kernel
    ok(kc, "import sys; sys.modules['IPython'] = None  # as if IPython were not installed")
    reply, _ = execute(kc, "xmode")
    assert reply["content"]["ename"] == "NameError"
    assert reply["content"]["evalue"] == "name 'xmode' is not defined"


def test_usage_error_of_an_ipython_magic(kc):
    reply, msgs = execute(kc, "%history --no-such-option")
    c = reply["content"]
    assert c["status"] == "error" and c["ename"] == "UsageError", c
    assert c["evalue"] == "unrecognized arguments: --no-such-option"  # IPython's own parser
    [err] = of_type(msgs, "error")
    assert err["content"]["traceback"] == ["UsageError: unrecognized arguments: --no-such-option"]


def test_unknown_magic_does_not_bring_ipython_in(fresh_kernel):
    km, kc = fresh_kernel
    reply, msgs = execute(kc, "%no_such_magic")
    assert reply["content"]["ename"] == "UsageError"
    assert "Line magic `%no_such_magic` not found" in reply["content"]["evalue"]
    assert not ipython_loaded(kc)
    ok(kc, "%load_ext pyrometer")
    assert not ipython_loaded(kc)


# ---- pyrometer's magics win -----------------------------------------------------------------


def test_own_magics_stay_native(kc):
    ok(kc, "%xmode Context")  # IPython is up
    ok(kc, "def f(n):\n    return sum(range(n))")
    msgs = ok(kc, "%prun -s ncalls f(10)")
    [d] = of_type(msgs, "display_data")
    assert "<table" in d["content"]["data"]["text/html"]  # pyrometer's report, not IPython's
    out = stdout_of(ok(kc, "%time f(10)"))
    assert re.match(r"CPU times: user .*\nWall time: ", out), out
    # the kernel's %timeit and %%timeit, whose -o result is the kernel's type
    ok(kc, "tr = %timeit -o -q -n 1 -r 1 f(10)")
    assert value(kc, "type(tr).__module__") == "'_pyrometer_kernel'"
    msgs = ok(kc, "%%timeit -n 1 -r 1\nf(10)")
    assert re.fullmatch(r"\S+ \S+ ± 0 ns per loop \(mean ± std\. dev\. of 1 run, 1 loop each\)\n",
                        stdout_of(msgs)), stdout_of(msgs)
    msgs = ok(kc, "%lprun -f f f(10)")
    assert "Function: f at line 1" in of_type(msgs, "display_data")[0]["content"]["data"][
        "text/plain"]
    # IPython's own table holds pyrometer's profilers too
    assert value(kc, "import IPython\n"
                     "type(IPython.get_ipython().find_line_magic('prun')).__name__") == \
        "'_IPythonMagic'"


# ---- events, display, tracebacks -----------------------------------------------------------


def test_events_fire_around_every_cell_without_ipython(fresh_kernel):
    km, kc = fresh_kernel
    ok(kc, "seen = []\n"
           "ip = get_ipython()\n"
           "ip.events.register('pre_execute', lambda: seen.append('pre_execute'))\n"
           "ip.events.register('pre_run_cell', lambda info: seen.append(('pre', info.raw_cell,"
           " info.silent, info.store_history)))\n"
           "ip.events.register('post_execute', lambda: seen.append('post_execute'))\n"
           "ip.events.register('post_run_cell', lambda r: seen.append(('post', r.success,"
           " type(r.error_in_exec).__name__, r.result, r.execution_count)))\n")
    ok(kc, "6 * 7")
    execute(kc, "1 / 0")
    execute(kc, "", silent=True)  # a blank cell fires nothing, as in IPython
    execute(kc, "x = 1", silent=True, store_history=False)
    r = stdout_of(ok(kc, "print(seen[:10])")).rstrip("\n")
    n = int(value(kc, "len(In)")) - 1
    # the cell that registers sees its own end, as in IPython
    assert r == ("['post_execute', ('post', True, 'NoneType', None, %d), "
                 "'pre_execute', ('pre', '6 * 7', False, True), 'post_execute', "
                 "('post', True, 'NoneType', 42, %d), "
                 "'pre_execute', ('pre', '1 / 0', False, True), 'post_execute', "
                 "('post', False, 'ZeroDivisionError', None, %d)]" % (n - 4, n - 3, n - 2)), r
    assert value(kc, "seen[10:12]") == "['pre_execute', 'post_execute']"  # the silent cell
    assert not ipython_loaded(kc)


def test_callback_errors_are_reported_and_the_cell_runs(fresh_kernel):
    km, kc = fresh_kernel
    ok(kc, "def bad(info):\n    raise ValueError('oops')\n"
           "get_ipython().events.register('pre_run_cell', bad)")
    msgs = ok(kc, "'still runs'")
    assert of_type(msgs, "execute_result")[0]["content"]["data"]["text/plain"] == "'still runs'"
    err = stdout_of(msgs, "stderr")
    assert err.startswith("Error in callback <function bad at "), err
    assert "(for pre_run_cell):" in err and "ValueError: oops" in err
    ok(kc, "get_ipython().events.unregister('pre_run_cell', bad)")
    assert stdout_of(ok(kc, "1"), "stderr") == ""


def test_extension_sees_events_and_display_routes_through_kernel(kc):
    ok(kc, "%%writefile myext.py\n"
           "calls = []\n"
           "def load_ipython_extension(ip):\n"
           "    ip.events.register('post_run_cell', lambda r: calls.append(r.info.raw_cell))\n"
           "    ip.display_pub.publish({'text/plain': 'from display_pub'})\n")
    msgs = ok(kc, "%load_ext myext")
    [d] = of_type(msgs, "display_data")
    assert d["content"]["data"] == {"text/plain": "from display_pub"}
    ok(kc, "'a cell'")
    assert value(kc, "import myext; myext.calls[:2]") == "['%load_ext myext', \"'a cell'\"]"
    # IPython's display hook publishes an execute_result through the kernel
    msgs = ok(kc, "get_ipython().displayhook(12345)")
    assert [m["content"]["data"]["text/plain"] for m in of_type(msgs, "execute_result")] == \
        ["12345"]


def test_showtraceback_from_ipython_is_an_error_message(kc):
    ok(kc, "%%writefile failing.py\nraise RuntimeError('from a script')\n")
    reply, msgs = execute(kc, "%run failing.py")
    [err] = of_type(msgs, "error")
    assert err["content"]["ename"] == "RuntimeError"
    assert err["content"]["evalue"] == "from a script"
    assert any("failing.py" in line for line in err["content"]["traceback"])


def test_pdb_on_enters_the_debugger_after_an_error(kc):
    ok(kc, "%pdb on")
    try:
        msg_id = kc.execute("def g():\n    local = 'here'\n    raise ValueError(local)\ng()",
                            allow_stdin=True)
        req = kc.get_stdin_msg(timeout=30)
        assert req["content"]["prompt"].endswith("ipdb> ")
        kc.input("p local")
        req = kc.get_stdin_msg(timeout=30)
        kc.input("q")
        reply = kc.get_shell_msg(timeout=30)
        while reply["parent_header"]["msg_id"] != msg_id:
            reply = kc.get_shell_msg(timeout=30)
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "ValueError"
        out = ""
        while True:
            m = kc.get_iopub_msg(timeout=10)
            if m["parent_header"].get("msg_id") != msg_id:
                continue
            if m["msg_type"] == "stream":
                out += m["content"]["text"]
            if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                break
        assert re.search(r"^'here'$", re.sub(r"\x1b\[[0-9;]*m", "", out), re.M), out
    finally:
        ok(kc, "%pdb off")


def test_ipythons_shell_knows_the_kernel(kc):
    ok(kc, "%xmode Context")
    assert value(kc, "IPython.get_ipython().kernel is get_ipython().kernel") == "True"
    assert value(kc, "IPython.get_ipython().kernel.implementation") == "'pyrometer'"


def test_without_ipython_its_magics_say_so(fresh_kernel):
    km, kc = fresh_kernel
    ok(kc, "import sys; sys.modules['IPython'] = None  # as if IPython were not installed")
    reply, msgs = execute(kc, "%run script.py")
    c = reply["content"]
    assert c["ename"] == "UsageError", c
    assert c["evalue"] == (
        "%%run comes from IPython, which Python %d.%d cannot import here: install IPython "
        "(python3-ipython, or pip install ipython) to use it" % python_version()[:2])
    reply, _ = execute(kc, "%load_ext autoreload")
    assert reply["content"]["evalue"].startswith("%load_ext comes from IPython")
    # the kernel's own magics are unaffected
    assert stdout_of(ok(kc, "%time 1")).startswith("CPU times:")


# ---- IPython's own entry points find the kernel's shell ----------------------------------


def test_ipython_get_ipython_and_instance_give_the_kernels_shell(fresh_kernel):
    """IPython.get_ipython() is the kernel's shell, as under ipykernel, and
    InteractiveShell.instance() (which matplotlib_inline and extensions
    call) brings the kernel's IPython shell up instead of making a second
    one that would keep it from ever coming up (%config then failed with
    MultipleInstanceError). Both are named as ipykernel's shell, and its
    config has an IPKernelApp section, which code checks to know it runs in
    a kernel."""
    km, kc = fresh_kernel
    assert value(kc, "import IPython; IPython.get_ipython() is get_ipython()") == "True"
    assert value(kc, "type(get_ipython()).__name__") == "'ZMQInteractiveShell'"
    assert value(kc, "from IPython.core.interactiveshell import InteractiveShell\n"
                     "sh = InteractiveShell.instance(); type(sh).__name__") == "'ZMQInteractiveShell'"
    assert value(kc, "sh is IPython.get_ipython() is InteractiveShell.instance()") == "True"
    assert value(kc, "sh.user_ns is globals()") == "True"
    ok(kc, "%config InteractiveShell.separate_in = '#'")
    assert value(kc, "sh.separate_in") == "'#'"
    assert value(kc, "'IPKernelApp' in get_ipython().config") == "True"


@needs("matplotlib", "matplotlib_inline")
def test_inline_figures_take_inlinebackends_formats(fresh_kernel):
    """As under ipykernel: %config InlineBackend.figure_format(s) and
    set_matplotlib_formats() choose the formats of inline figures; retina
    is a PNG at twice the resolution, shown at the figure's size."""
    km, kc = fresh_kernel

    def figure(code="plt.plot([1, 2, 3]);"):
        [d] = of_type(ok(kc, code), "display_data")
        return d["content"]

    ok(kc, "import matplotlib.pyplot as plt")
    assert sorted(figure()["data"]) == ["image/png", "text/plain"]
    ok(kc, "%config InlineBackend.figure_format = 'svg'")
    c = figure()
    assert sorted(c["data"]) == ["image/svg+xml", "text/plain"]
    assert c["data"]["image/svg+xml"].lstrip().startswith("<?xml")
    ok(kc, "%config InlineBackend.figure_format = 'retina'")
    c = figure("plt.figure(figsize=(4, 3), dpi=100); plt.plot([1]);")
    assert sorted(c["data"]) == ["image/png", "text/plain"]
    png = base64.b64decode(c["data"]["image/png"])
    w, h = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert c["metadata"]["image/png"] == {"width": w // 2, "height": h // 2}
    assert 600 < w <= 800 and 400 < h <= 600  # a 400x300 figure, tight, at twice its dpi
    ok(kc, "%config InlineBackend.figure_formats = ['png', 'jpeg']")
    assert sorted(figure()["data"]) == ["image/jpeg", "image/png", "text/plain"]
    ok(kc, "from matplotlib_inline.backend_inline import set_matplotlib_formats\n"
           "set_matplotlib_formats('pdf')")
    assert sorted(figure()["data"]) == ["application/pdf", "text/plain"]
    # display(fig) of a figure takes them too
    c = figure("fig = plt.figure(); plt.plot([1]); display(fig); plt.close(fig)")
    assert sorted(c["data"]) == ["application/pdf", "text/plain"]


@needs("matplotlib", "matplotlib_inline")
def test_set_matplotlib_formats_in_a_fresh_session(fresh_kernel):
    """The first thing a notebook does: set_matplotlib_formats('svg') before
    IPython's shell is up (it asks InteractiveShell.instance() for it)."""
    km, kc = fresh_kernel
    msgs = ok(kc, "import matplotlib.pyplot as plt\n"
                  "from matplotlib_inline.backend_inline import set_matplotlib_formats\n"
                  "set_matplotlib_formats('svg')\nplt.plot([1, 2]);")
    [d] = of_type(msgs, "display_data")
    assert sorted(d["content"]["data"]) == ["image/svg+xml", "text/plain"]
    ok(kc, "%config InteractiveShell.separate_in = '#'")  # the shell is the kernel's
