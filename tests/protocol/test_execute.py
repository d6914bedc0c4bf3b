"""execute_request through jupyter_client: streams, results, errors,
execution counts, output history, linecache, stop_on_error, user_expressions."""
import os
import re
import time

import pytest

from kernel_util import execute, of_type, stdout_of


def test_print_and_result(kernel):
    km, kc = kernel
    reply, msgs = execute(kc, "print('hello'); print('oops', file=__import__('sys').stderr); 6*7")
    assert reply["content"]["status"] == "ok"
    assert stdout_of(msgs) == "hello\n"
    assert stdout_of(msgs, "stderr") == "oops\n"
    [res] = of_type(msgs, "execute_result")
    assert res["content"]["data"] == {"text/plain": "42"}
    assert res["content"]["execution_count"] == reply["content"]["execution_count"]
    [inp] = of_type(msgs, "execute_input")
    assert inp["content"]["execution_count"] == reply["content"]["execution_count"]
    types = [m["msg_type"] for m in msgs]
    assert types[0] == "status" and msgs[0]["content"]["execution_state"] == "busy"
    assert types[-1] == "status" and msgs[-1]["content"]["execution_state"] == "idle"
    assert types.index("execute_result") > types.index("stream")


def test_stream_order_many_writes(kernel):
    km, kc = kernel
    reply, msgs = execute(kc, "for i in range(2000): print(i)")
    assert stdout_of(msgs) == "".join(f"{i}\n" for i in range(2000))
    # batched: far fewer messages than writes
    assert len(of_type(msgs, "stream")) < 200


def test_fd_level_output(kernel):
    km, kc = kernel
    reply, msgs = execute(kc, "import os\nos.system('echo from-shell; echo to-err >&2')\n"
                              "os.write(1, b'raw fd\\n'); print('after')")
    assert stdout_of(msgs) == "from-shell\nraw fd\nafter\n"
    assert stdout_of(msgs, "stderr") == "to-err\n"


def test_c_level_printf(kernel):
    km, kc = kernel
    reply, msgs = execute(kc, "import ctypes\nctypes.CDLL(None).printf(b'from C %d\\n', 7)\n"
                              "print('py')")
    assert stdout_of(msgs) == "from C 7\npy\n"


def test_error_reply_and_traceback(kernel):
    km, kc = kernel
    execute(kc, "keep = 'me'")
    reply, msgs = execute(kc, "x = 1\nraise ValueError('bad thing')")
    c = reply["content"]
    assert c["status"] == "error"
    assert c["ename"] == "ValueError" and c["evalue"] == "bad thing"
    [err] = of_type(msgs, "error")
    assert err["content"]["ename"] == "ValueError"
    tb = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(err["content"]["traceback"]))
    n = c["execution_count"]
    assert f"Cell In[{n}], line 2" in tb
    assert "raise ValueError('bad thing')" in tb
    for internal in ("interp", "pyrometer-kernel", "_pyrometer_kernel", "codeop"):
        assert internal not in tb
    reply, msgs = execute(kc, "keep, x")
    assert of_type(msgs, "execute_result")[0]["content"]["data"]["text/plain"] == "('me', 1)"


def test_syntax_error(kernel):
    km, kc = kernel
    reply, msgs = execute(kc, "a = 1\nb = (")
    assert reply["content"]["ename"] == "SyntaxError"
    tb = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(reply["content"]["traceback"]))
    assert f'Cell In[{reply["content"]["execution_count"]}], line 2' in tb


def test_execution_count_rules(kernel):
    km, kc = kernel
    r1, _ = execute(kc, "1")
    n = r1["content"]["execution_count"]
    r2, msgs = execute(kc, "print('quiet'); 5", silent=True)
    assert msgs and [m["msg_type"] for m in msgs] == ["status", "status"]  # busy, idle only
    r3, msgs = execute(kc, "2", store_history=False)
    assert of_type(msgs, "execute_result")[0]["content"]["data"]["text/plain"] == "2"
    r4, _ = execute(kc, "3")
    assert r4["content"]["execution_count"] == n + 1
    r5, msgs = execute(kc, "_")
    assert of_type(msgs, "execute_result")[0]["content"]["data"]["text/plain"] == "3"


def test_output_history_names(kernel):
    km, kc = kernel
    r1, _ = execute(kc, "'a'")
    r2, _ = execute(kc, "'b'")
    r3, _ = execute(kc, "'c'")
    n = r3["content"]["execution_count"]
    reply, msgs = execute(kc, f"(_, __, ___, _{n - 1}, Out[{n}], In[{n}], _i{n})")
    text = of_type(msgs, "execute_result")[0]["content"]["data"]["text/plain"]
    assert text == "('c', 'b', 'a', 'b', 'c', \"'c'\", \"'c'\")"


def test_getsource_of_cell_function(kernel):
    km, kc = kernel
    execute(kc, "def cell_fn(a):\n    return a + 1\n")
    reply, msgs = execute(kc, "import inspect; print(inspect.getsource(cell_fn), end='')")
    assert stdout_of(msgs) == "def cell_fn(a):\n    return a + 1\n"
    reply, msgs = execute(kc, "cell_fn.__code__.co_filename")
    text = of_type(msgs, "execute_result")[0]["content"]["data"]["text/plain"]
    assert text.startswith("'<cell-") and text.endswith(">'")


def test_main_module(kernel):
    km, kc = kernel
    reply, msgs = execute(kc, "import __main__; zz = 3; print(__name__, __main__.zz)")
    assert stdout_of(msgs) == "__main__ 3\n"


def test_user_expressions(kernel):
    km, kc = kernel
    reply, _ = execute(kc, "ue = 10", user_expressions={"a": "ue * 2", "b": "1/0"})
    ue = reply["content"]["user_expressions"]
    assert ue["a"]["status"] == "ok" and ue["a"]["data"]["text/plain"] == "20"
    assert ue["b"]["status"] == "error" and ue["b"]["ename"] == "ZeroDivisionError"


def test_stop_on_error_aborts_queue(kernel):
    km, kc = kernel
    ids = [kc.execute("import time; time.sleep(0.3); raise RuntimeError('first')"),
           kc.execute("print('must not run')"),
           kc.execute("print('nor this')")]
    replies = {}
    while len(replies) < 3:
        m = kc.get_shell_msg(timeout=10)
        replies[m["parent_header"]["msg_id"]] = m["content"]["status"]
    assert [replies[i] for i in ids] == ["error", "aborted", "aborted"]
    # and without stop_on_error the next one runs
    i1 = kc.execute("raise RuntimeError('again')", stop_on_error=False)
    i2 = kc.execute("'ran'")
    got = {}
    while len(got) < 2:
        m = kc.get_shell_msg(timeout=10)
        got[m["parent_header"]["msg_id"]] = m["content"]["status"]
    assert got[i1] == "error" and got[i2] == "ok"
    time.sleep(0.2)


def error_then_queue(kc):
    """Queues a failing cell, two cells and an is_complete_request behind
    it. Returns (shell replies in arrival order, iopub events of those
    requests in order), the requests named e1, e2, k3, e4."""
    ids = {kc.execute("import time; time.sleep(0.5); raise RuntimeError('first')"): "e1",
           kc.execute("print('must not run')"): "e2",
           kc.is_complete("x = ("): "k3",
           kc.execute("print('nor this')"): "e4"}
    replies = []
    while len(replies) < 4:
        m = kc.get_shell_msg(timeout=20)
        name = ids.get(m["parent_header"].get("msg_id"))
        if name:
            c = m["content"]
            replies.append((name, m["msg_type"], c if c["status"] != "error" else
                            {"status": "error", "ename": c["ename"],
                             "has_count": "execution_count" in c}, m["metadata"].get("status")))
    events = []
    while ("e4", "status", "idle") not in events:
        m = kc.get_iopub_msg(timeout=20)
        name = ids.get(m["parent_header"].get("msg_id"))
        if name:
            state = m["content"].get("execution_state") if m["msg_type"] == "status" else None
            events.append((name, m["msg_type"], state))
    return replies, events


def test_stop_on_error_reply_order(kernel):
    """After an error with stop_on_error, as in ipykernel 6.17 (compared in
    the same run): the failing cell's reply and idle come first, then an
    aborted reply for each cell queued behind it, each with its own busy and
    idle, while other requests queued among them are answered in their
    place. An aborted reply is {"status": "aborted"} alone: no execution
    count for a cell that never ran (it was [aborted, ok, aborted, error])."""
    km, kc = kernel
    replies, events = error_then_queue(kc)
    aborted = {"status": "aborted"}
    assert replies == [
        ("e1", "execute_reply", {"status": "error", "ename": "RuntimeError", "has_count": True},
         "error"),
        ("e2", "execute_reply", aborted, "aborted"),
        ("k3", "is_complete_reply", {"status": "incomplete", "indent": ""}, None),
        ("e4", "execute_reply", aborted, "aborted")]
    assert events == [
        ("e1", "status", "busy"), ("e1", "execute_input", None), ("e1", "error", None),
        ("e1", "status", "idle"),
        ("e2", "status", "busy"), ("e2", "status", "idle"),
        ("k3", "status", "busy"), ("k3", "status", "idle"),
        ("e4", "status", "busy"), ("e4", "status", "idle")]
    reply, _ = execute(kc, "'ran'")
    assert reply["content"]["status"] == "ok"

    from jupyter_client.manager import start_new_kernel
    ikm, ikc = start_new_kernel(kernel_name="python3", startup_timeout=60,
                                env=dict(os.environ, PYDEVD_DISABLE_FILE_VALIDATION="1"))
    try:
        ireplies, ievents = error_then_queue(ikc)
    finally:
        ikc.stop_channels()
        ikm.shutdown_kernel(now=True)
    assert [r[:2] + (r[3],) for r in replies] == [r[:2] + (r[3],) for r in ireplies]
    assert [r[2] for r in replies if r[2] == aborted] == [r[2] for r in ireplies if r[2] == aborted]
    assert events == ievents


def test_threads_print_into_their_cell(kernel):
    km, kc = kernel
    r1, msgs1 = execute(kc, "import threading, time\n"
                            "ev = threading.Event()\n"
                            "def worker():\n"
                            "    ev.wait(); print('from thread')\n"
                            "t = threading.Thread(target=worker); t.start()")
    id2 = kc.execute("ev.set(); t.join(); print('second cell')")
    first, second = [], []
    while True:
        m = kc.get_iopub_msg(timeout=10)
        parent = m["parent_header"].get("msg_id")
        if m["msg_type"] == "stream":
            (first if parent == r1["parent_header"]["msg_id"] else second).append(
                (parent, m["content"]["text"]))
        if parent == id2 and m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            break
    kc.get_shell_msg(timeout=10)
    assert "".join(t for _, t in first) == "from thread\n"
    assert second == [(id2, "second cell\n")]


def test_deferred_imports_connect_when_imported(fresh_kernel):
    """The kernel does not import linecache, getpass or threading itself (an
    idle kernel would pay about 1 MiB for them and for re, enum, tokenize);
    its import hook connects them when a cell imports them, and cells run
    before that are still in linecache."""
    km, kc = fresh_kernel
    reply, msgs = execute(kc, "import sys\n"
                              "print(sorted(m for m in ('linecache', 'getpass', 'threading', 're',"
                              " 'enum', 'tokenize') if m in sys.modules))")
    assert stdout_of(msgs) == "[]\n"
    execute(kc, "def early(a):\n    return 1 / a\n")
    reply, msgs = execute(kc, "early(0)")
    tb = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(of_type(msgs, "error")[0]["content"]["traceback"]))
    assert "return 1 / a" in tb
    reply, msgs = execute(kc, "import inspect, getpass, threading\n"
                              "print(inspect.getsource(early), end='')\n"
                              "print(getpass.getpass.__module__, "
                              "(getattr(threading, '_start_joinable_thread', None)"
                              " or threading._start_new_thread).__self__.__name__)")
    assert stdout_of(msgs) == ("def early(a):\n    return 1 / a\n"
                               "_pyrometer_kernel _pyrometer_kernel\n")


def test_output_from_forked_children(kernel):
    km, kc = kernel
    reply, msgs = execute(kc, "import multiprocessing as mp\n"
                              "def work(i):\n    print('child', i, flush=True)\n    return i * i\n"
                              "with mp.get_context('fork').Pool(2) as pool:\n"
                              "    res = pool.map(work, range(4))\n"
                              "print(res)")
    assert reply["content"]["status"] == "ok"
    out = stdout_of(msgs)
    assert sorted(l for l in out.splitlines() if l.startswith("child")) == \
        ["child 0", "child 1", "child 2", "child 3"]
    assert out.rstrip().endswith("[0, 1, 4, 9]")


def test_get_ipython_shim(kernel):
    """Code exported by nbconvert calls get_ipython().run_line_magic(...)."""
    km, kc = kernel
    reply, msgs = execute(kc, "ip = get_ipython()\n"
                              "ip.run_line_magic('env', 'PYRO_SHIM=1')\n"
                              "ip.system('echo $PYRO_SHIM')\n"
                              "print(ip.getoutput('echo a; echo b'))\n"
                              "ip.user_ns['shim_seen'] = 7\n"
                              "ip.run_cell_magic('time', '', 'q = 2')\n"
                              "print(type(ip).__name__, shim_seen, q)")
    assert reply["content"]["status"] == "ok", reply["content"]
    out = stdout_of(msgs)
    assert out.startswith("env: PYRO_SHIM=1\n1\n['a', 'b']\n")
    assert "Wall time:" in out
    assert out.endswith("Shell 7 2\n")
    reply, msgs = execute(kc, "get_ipython().run_line_magic('nosuch', '')")
    assert reply["content"]["ename"] == "UsageError"


def test_unstored_cells_do_not_pile_up_in_linecache(fresh_kernel):
    """Frontends send cells with store_history false all the time (VS Code's
    variable view, widgets). Each used to leave its source in linecache for
    good, about 500 bytes a cell (10,000 such cells: +4.9 MiB of RSS in
    tests/bench/bench_soak.py). Only the last 256 stay; a recent one's source
    is still there for tracebacks and inspect."""
    km, kc = fresh_kernel
    for i in range(600):
        reply, _ = execute(kc, f"u_{i} = {i}", store_history=False)
        assert reply["content"]["status"] == "ok"
    reply, _ = execute(kc, "def recent():\n    return 'recent'\n", store_history=False)
    reply, msgs = execute(kc, "import linecache, inspect\n"
                              "print(sum(1 for k in linecache.cache if k.startswith('<cell-')"
                              " and '.' in k))\n"
                              "print(inspect.getsource(recent).splitlines()[1].strip())")
    assert reply["content"]["status"] == "ok", reply["content"]
    assert stdout_of(msgs) == "256\nreturn 'recent'\n"
