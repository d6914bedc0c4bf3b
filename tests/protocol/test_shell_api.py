"""get_ipython() in the kernel: events, kernel, set_next_input (a payload),
showtraceback (an error message), object_inspect, and IPython's other
InteractiveShell attributes through the bridge. None of them imports IPython
unless it is asked for something only IPython has."""
import re

import pytest

from kernel_util import execute, of_type, stdout_of


def ok(kc, code, **kw):
    reply, msgs = execute(kc, code, timeout=60, **kw)
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply, msgs


def value(kc, expr):
    reply, msgs = ok(kc, expr)
    [res] = of_type(msgs, "execute_result")
    return res["content"]["data"]["text/plain"]


def ipython_loaded(kc):
    return value(kc, "import sys as _s; 'IPython' in _s.modules") == "True"


@pytest.fixture
def kc(fresh_kernel):
    return fresh_kernel[1]


def test_set_next_input_is_a_payload(kc):
    reply, _ = ok(kc, "get_ipython().set_next_input('print(42)')")
    assert reply["content"]["payload"] == [
        {"source": "set_next_input", "text": "print(42)", "replace": False}]
    reply, _ = ok(kc, "get_ipython().set_next_input('x = 1', replace=True)")
    assert reply["content"]["payload"] == [
        {"source": "set_next_input", "text": "x = 1", "replace": True}]
    reply, _ = ok(kc, "1")
    assert reply["content"]["payload"] == []
    assert not ipython_loaded(kc)


def test_showtraceback_publishes_an_error(kc):
    reply, msgs = ok(kc, "def f():\n    raise KeyError('k')\n"
                         "try:\n    f()\nexcept KeyError:\n    get_ipython().showtraceback()\n"
                         "print('after')")
    [err] = of_type(msgs, "error")
    c = err["content"]
    assert c["ename"] == "KeyError" and c["evalue"] == "'k'"
    # the kernel's own traceback layout, as for a cell's error: both frames
    plain = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(c["traceback"]))
    assert re.search(r"^----> 4 +f\(\)$", plain, re.M), plain
    assert re.search(r"^----> 2 +raise KeyError\('k'\)$", plain, re.M), plain
    assert plain.endswith("KeyError: 'k'")
    assert stdout_of(msgs) == "after\n"
    assert reply["content"]["status"] == "ok"  # as in ipykernel: shown, not raised
    # with an explicit exc_tuple
    reply, msgs = ok(kc, "import sys\ntry:\n    1/0\nexcept Exception:\n    t = sys.exc_info()\n"
                         "get_ipython().showtraceback(t)")
    [err] = of_type(msgs, "error")
    assert err["content"]["ename"] == "ZeroDivisionError"
    # nothing to show
    reply, msgs = ok(kc, "get_ipython().showtraceback()")
    assert of_type(msgs, "error") == []
    assert stdout_of(msgs, "stderr") == "No traceback available to show.\n"
    assert not ipython_loaded(kc)


def test_kernel(kc):
    assert value(kc, "get_ipython().kernel.implementation") == "'pyrometer'"
    assert value(kc, "get_ipython().kernel.language_info['name']") == "'python'"
    assert value(kc, "get_ipython().kernel is get_ipython().kernel") == "True"
    assert not ipython_loaded(kc)


def test_object_inspect(kc):
    ok(kc, "def documented(a, b=2):\n    'Adds things.'\n    return a + b\nnumber = 5")
    info = eval(value(kc, "{k: v for k, v in get_ipython().object_inspect('documented').items()"
                          " if k != 'text/plain'}"))
    assert info["found"] is True and info["name"] == "documented"
    assert info["type_name"] == "function" and info["docstring"] == "Adds things."
    assert info["ismagic"] is False and info["namespace"] == "Interactive"
    assert value(kc, "get_ipython().object_inspect('number')['string_form']") == "'5'"
    assert value(kc, "get_ipython().object_inspect('nothing_here')['found']") == "False"
    info = eval(value(kc, "get_ipython().object_inspect('%lprun')"))
    assert info["found"] is True and info["ismagic"] is True
    assert info["docstring"].startswith("%lprun ")
    assert not ipython_loaded(kc)


def test_events_object(kc):
    assert value(kc, "sorted(get_ipython().events.callbacks)") == (  # IPython's layout
        "['post_execute',\n 'post_run_cell',\n 'pre_execute',\n 'pre_run_cell',\n"
        " 'shell_initialized']")
    reply, msgs = execute(kc, "get_ipython().events.register('no_such_event', print)")
    assert reply["content"]["ename"] == "KeyError"
    reply, msgs = execute(kc, "get_ipython().events.register('pre_execute', 3)")
    assert reply["content"]["ename"] == "TypeError"
    reply, msgs = execute(kc, "get_ipython().events.unregister('pre_execute', print)")
    assert reply["content"]["ename"] == "ValueError"
    assert "is not registered as a pre_execute callback" in reply["content"]["evalue"]
    assert not ipython_loaded(kc)


def test_ipython_attributes_bring_ipython_in(kc):
    pytest.importorskip("IPython")
    assert value(kc, "'lprun' in get_ipython().magics_manager.magics['line']") == "True"
    assert ipython_loaded(kc)
    ok(kc, "def hello(line):\n    return 'hello ' + line\n"
           "get_ipython().register_magic_function(hello)")
    assert value(kc, "%hello world") == "'hello world'"
    reply, _ = execute(kc, "get_ipython().no_such_attribute")
    assert reply["content"]["ename"] == "AttributeError"
