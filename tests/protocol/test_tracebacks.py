"""Tracebacks as IPython shows them in Jupyter (issue 13): a list of
entries, ANSI-coloured, with the lines around each frame's current line;
the cell's own frames, nothing of the kernel. The structure is compared
exactly with the colours stripped, and the colours where they matter."""
import re

import pytest

from kernel_util import execute
from pyrometer_testing import start_kernel

ANSI = re.compile(r"\x1b\[[0-9;]*m")
RULE = "-" * 75


def strip(tb):
    return [ANSI.sub("", entry) for entry in tb]


def error_of(kc, code):
    reply, msgs = execute(kc, code)
    c = reply["content"]
    assert c["status"] == "error"
    [err] = [m for m in msgs if m["msg_type"] == "error"]
    assert err["content"]["traceback"] == c["traceback"]
    return c


def test_frames_with_context_lines(kernel):
    km, kc = kernel
    c = error_of(kc, "def f(x):\n    y = x + 1\n    return 1 / (y - y)\n\na = 5\nb = 6\nf(a)\nc = 7")
    n = c["execution_count"]
    assert strip(c["traceback"]) == [
        RULE,
        "ZeroDivisionError                         Traceback (most recent call last)",
        f"Cell In[{n}], line 7\n      5 a = 5\n      6 b = 6\n----> 7 f(a)\n      8 c = 7\n",
        f"Cell In[{n}], line 3, in f(x)\n      1 def f(x):\n      2     y = x + 1\n"
        "----> 3     return 1 / (y - y)\n",
        "ZeroDivisionError: division by zero",
    ]
    tb = c["traceback"]
    # IPython's colours: red rule and names, green locations and arrows,
    # the running expression on a yellow background
    assert tb[0] == "\x1b[0;31m" + RULE + "\x1b[0m"
    assert tb[1].startswith("\x1b[0;31mZeroDivisionError\x1b[0m ")
    assert tb[2].startswith(f"Cell \x1b[0;32mIn[{n}], line 7\x1b[0m\n\x1b[1;32m      5\x1b[0m a = 5\n")
    assert "\x1b[0;32m----> 7\x1b[0m \x1b[43mf(a)\x1b[49m\n" in tb[2]
    assert f"\x1b[0;36mf\x1b[0;34m(x)\x1b[0m\n" in tb[3]
    assert "    return \x1b[43m1 / (y - y)\x1b[49m\n" in tb[3]
    assert tb[4] == "\x1b[0;31mZeroDivisionError\x1b[0m: division by zero"


def test_library_frames_name_file_and_signature(kernel):
    km, kc = kernel
    c = error_of(kc, "import json\njson.loads('{')")
    tb = strip(c["traceback"])
    assert tb[2] == f"Cell In[{c['execution_count']}], line 2\n      1 import json\n" \
                    "----> 2 json.loads('{')\n"
    # json as the kernel's Python has it (the test process may run another)
    reply, msgs = execute(kc, "print(json.__file__, json.loads.__code__.co_firstlineno)")
    out = "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream").split()
    json_file, first = out[0], int(out[1])
    assert tb[3].startswith(f"File {json_file}:")
    # the parameters (3.15's json.loads has more, so its list ends in "...")
    assert ", in loads(s, cls, object_hook, parse_float, parse_int, parse_constant, " in tb[3]
    assert [e.split("\n")[0].split(", in ")[1] for e in tb[4:-1]] == \
        ["JSONDecoder.decode(self, s, _w)", "JSONDecoder.raw_decode(self, s, idx)"]
    assert tb[-1] == "JSONDecodeError: Expecting property name enclosed in double quotes: " \
                     "line 1 column 2 (char 1)"
    assert first > 0


def test_chained_exceptions_oldest_first(kernel):
    km, kc = kernel
    c = error_of(kc, "try:\n    1/0\nexcept Exception as e:\n    raise KeyError('k') from e")
    n = c["execution_count"]
    assert strip(c["traceback"]) == [
        RULE,
        "ZeroDivisionError                         Traceback (most recent call last)",
        f"Cell In[{n}], line 2\n      1 try:\n----> 2     1/0\n      3 except Exception as e:\n"
        "      4     raise KeyError('k') from e\n",
        "ZeroDivisionError: division by zero",
        "\nThe above exception was the direct cause of the following exception:\n",
        RULE,
        "KeyError                                  Traceback (most recent call last)",
        f"Cell In[{n}], line 4\n      2     1/0\n      3 except Exception as e:\n"
        "----> 4     raise KeyError('k') from e\n",
        "KeyError: 'k'",
    ]
    c = error_of(kc, "try:\n    {}['a']\nexcept KeyError:\n    int('x')")
    tb = strip(c["traceback"])
    assert tb[4] == "\nDuring handling of the above exception, another exception occurred:\n"
    assert tb[-1] == "ValueError: invalid literal for int() with base 10: 'x'"
    c = error_of(kc, "try:\n    {}['a']\nexcept KeyError:\n    raise ValueError('v') from None")
    assert len(strip(c["traceback"])) == 4


def test_syntax_error_is_one_entry(kernel):
    km, kc = kernel
    c = error_of(kc, "a = 1\nx = (1,\n")
    n = c["execution_count"]
    assert strip(c["traceback"]) == [
        f"  Cell In[{n}], line 2\n    x = (1,\n        ^\nSyntaxError: '(' was never closed"]
    c = error_of(kc, "a = 1 +* 2")
    assert strip(c["traceback"])[0].endswith("\n    a = 1 +* 2\n           ^\nSyntaxError: invalid syntax")


def test_message_less_exception_and_no_kernel_frames(kernel):
    km, kc = kernel
    c = error_of(kc, "raise KeyboardInterrupt")
    n = c["execution_count"]
    assert strip(c["traceback"]) == [
        RULE, "KeyboardInterrupt                         Traceback (most recent call last)",
        f"Cell In[{n}], line 1\n----> 1 raise KeyboardInterrupt\n", "KeyboardInterrupt"]


def test_magic_usage_error_stays_one_line(kernel):
    km, kc = kernel
    c = error_of(kc, "%prun -l")
    assert c["traceback"] == ["UsageError: " + c["evalue"]]


def test_colors_magic_turns_colour_off_and_on(kernel):
    km, kc = kernel
    execute(kc, "%colors NoColor")
    c = error_of(kc, "1/0")
    assert "\x1b" not in "".join(c["traceback"])
    assert c["traceback"][-1] == "ZeroDivisionError: division by zero"
    execute(kc, "%colors Linux")
    c = error_of(kc, "1/0")
    assert c["traceback"][-1] == "\x1b[0;31mZeroDivisionError\x1b[0m: division by zero"
    c = error_of(kc, "%colors Purple")
    assert c["ename"] == "UsageError"
    assert "NoColor, Linux, LightBG, Neutral" in c["evalue"]


def test_no_color_environment():
    import os
    km, kc = start_kernel(env=dict(os.environ, NO_COLOR="1"))
    try:
        c = error_of(kc, "def g():\n    raise ValueError('plain')\ng()")
        tb = c["traceback"]
        assert "\x1b" not in "".join(tb)
        assert tb[-1] == "ValueError: plain"
        assert tb[3] == f"Cell In[{c['execution_count']}], line 2, in g()\n" \
                        "      1 def g():\n----> 2     raise ValueError('plain')\n"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_error_does_not_import_linecache_for_cells(fresh_kernel):
    km, kc = fresh_kernel
    c = error_of(kc, "def h():\n    return 1 / 0\nh()")
    assert "return 1 / 0" in strip(c["traceback"])[3]
    reply, msgs = execute(kc, "import sys\nprint('linecache' in sys.modules, 'traceback' in sys.modules)")
    assert [m["content"]["text"] for m in msgs if m["msg_type"] == "stream"] == ["False False\n"]
