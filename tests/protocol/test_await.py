"""Top-level await, async for and async with in a cell (issue 13): the cell
runs as a coroutine on the kernel's own event loop, which is kept between
cells but never left running, so asyncio.run() works in the next cell."""
import re
import time

from kernel_util import execute, of_type, stdout_of


def results(msgs):
    return [m["content"]["data"]["text/plain"] for m in of_type(msgs, "execute_result")]


def ok(kc, code):
    reply, msgs = execute(kc, code)
    assert reply["content"]["status"] == "ok", reply["content"]
    return msgs


def test_await_prints_and_shows_its_value(kernel):
    km, kc = kernel
    msgs = ok(kc, "import asyncio\nawait asyncio.sleep(0.01)\nprint('slept')\n"
                  "await asyncio.sleep(0, 'value')")
    assert stdout_of(msgs) == "slept\n"
    assert results(msgs) == ["'value'"]
    msgs = ok(kc, "_, Out[max(Out)]")
    assert results(msgs) == ["('value', 'value')"]


def test_async_for_and_async_with(kernel):
    km, kc = kernel
    msgs = ok(kc, "import asyncio, contextlib\n"
                  "async def agen():\n    for i in range(3):\n        yield i\n"
                  "@contextlib.asynccontextmanager\n"
                  "async def ctx():\n    print('enter')\n    yield 'in'\n    print('exit')\n"
                  "async with ctx() as v:\n    print(v)\n"
                  "async for i in agen():\n    print(i)\n"
                  "[i async for i in agen()]")
    assert stdout_of(msgs) == "enter\nin\nexit\n0\n1\n2\n"
    assert results(msgs) == ["[0, 1, 2]"]


def test_asyncio_run_works_after_an_await_cell(kernel):
    km, kc = kernel
    ok(kc, "import asyncio\nawait asyncio.sleep(0)")
    msgs = ok(kc, "asyncio.run(asyncio.sleep(0, 'ran'))")
    assert results(msgs) == ["'ran'"]
    # no loop is left running between cells
    reply, msgs = execute(kc, "asyncio.get_running_loop()")
    assert reply["content"]["ename"] == "RuntimeError"
    assert reply["content"]["evalue"] == "no running event loop"
    # and the kernel's loop is still there for the next await cell
    msgs = ok(kc, "await asyncio.sleep(0, 'again')")
    assert results(msgs) == ["'again'"]


def test_tasks_live_on_between_await_cells(kernel):
    km, kc = kernel
    # started before the cell's first await: it must see the running loop
    ok(kc, "import asyncio\nasync def bg():\n    await asyncio.sleep(0.05)\n    return 7\n"
           "t = asyncio.ensure_future(bg())\nloop_a = asyncio.get_running_loop()\n"
           "await asyncio.sleep(0)")
    # a plain cell does not run the loop: the task waits
    assert results(ok(kc, "t.done()")) == ["False"]
    msgs = ok(kc, "print(asyncio.get_running_loop() is loop_a)\nawait t")
    assert stdout_of(msgs) == "True\n"
    assert results(msgs) == ["7"]


def test_error_traceback_has_the_cell_frames_only(kernel):
    km, kc = kernel
    reply, msgs = execute(kc, "import asyncio\nasync def boom():\n    await asyncio.sleep(0)\n"
                              "    raise ValueError('inside')\nawait boom()")
    c = reply["content"]
    assert (c["ename"], c["evalue"]) == ("ValueError", "inside")
    tb = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(c["traceback"]))
    assert "await boom()" in tb and "raise ValueError('inside')" in tb
    assert "asyncio" not in tb.replace("import asyncio", "").replace("asyncio.sleep", "")
    assert "base_events" not in tb


def test_interrupted_await_cancels_its_task(fresh_kernel):
    km, kc = fresh_kernel
    ok(kc, "import asyncio\nstate = []\n"
           "async def slow():\n    try:\n        await asyncio.sleep(60)\n"
           "    finally:\n        state.append('cleaned up')")
    msg_id = kc.execute("await slow()")
    time.sleep(0.5)
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=5)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    msgs = ok(kc, "state")
    assert results(msgs) == ["['cleaned up']"]
    msgs = ok(kc, "await asyncio.sleep(0, 'fine')")
    assert results(msgs) == ["'fine'"]


def test_plain_cells_do_not_import_asyncio(fresh_kernel):
    km, kc = fresh_kernel
    msgs = ok(kc, "import sys\nasync def f(): pass\n'asyncio' in sys.modules")
    assert results(msgs) == ["False"]
