"""complete_request and inspect_request, black box: exact matches and
cursor ranges (in code points), magics, dict keys, paths, the fallback
without jedi, that completing calls nothing, and obj? / obj?? pages."""
import os
import queue
import re
import tempfile

import pytest

import conftest
from pyrometer_testing import needs
from kernel_util import drain_iopub, execute, stdout_of

SETUP = '''\
import os
d = {'key': 1, 'kez': 2, 'other': 3}
class Pt:
    """A point."""
    def __init__(self):
        self.x1 = 1
        self.x2 = 2
pt = Pt()
def f(x, y=2):
    """Add."""
    return x + y
calls = []
def g():
    calls.append('g')
    return "s"
class Spy:
    @property
    def p(self):
        calls.append('p')
        return "s"
    def __getitem__(self, k):
        calls.append('getitem')
        return "s"
    def __call__(self):
        calls.append('call')
        return "s"
spy = Spy()
'''

# The file-name fixture for path completion.
TREE = tempfile.mkdtemp(prefix="pyrometer-paths-")
for _name in ("alpha.txt", "alpine", "beta.txt", ".alhidden"):
    if _name == "alpine":
        os.mkdir(os.path.join(TREE, _name))
    else:
        open(os.path.join(TREE, _name), "w").close()


def start_setup(env_extra=None):
    from jupyter_client.manager import start_new_kernel
    env = dict(os.environ)
    env.update(env_extra or {})
    km, kc = start_new_kernel(kernel_name="pyrometer", startup_timeout=30, env=env)
    reply, _ = execute(kc, SETUP)
    assert reply["content"]["status"] == "ok"
    return km, kc


@pytest.fixture(scope="module")
def k():
    km, kc = start_setup()
    yield kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def k_plain():
    """A kernel that completes without jedi (rlcompleter)."""
    km, kc = start_setup({"PYROMETER_NO_JEDI": "1"})
    yield kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def complete(kc, code, pos=None):
    msg_id = kc.complete(code, pos)
    reply = kc.get_shell_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == msg_id
    c = reply["content"]
    assert c["status"] == "ok"
    return c["matches"], c["cursor_start"], c["cursor_end"], c


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def inspect(kc, code, pos=None, level=0, raw=False):
    """The inspect_reply's content; its text/plain without the labels' ANSI
    colour unless raw (test_inspect_labels_are_coloured checks those)."""
    msg_id = kc.inspect(code, pos, level)
    reply = kc.get_shell_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "ok"
    c = reply["content"]
    if not raw and "text/plain" in c.get("data", {}):
        c["data"]["text/plain"] = ANSI.sub("", c["data"]["text/plain"])
    return c


# ---- completion -----------------------------------------------------------

BOTH = [
    # code, cursor (None: end), matches, cursor_start, cursor_end
    ("zi", None, ["zip"], 0, 2),
    ("str.upp", None, ["str.upper"], 0, 7),
    ("import os.pa", None, ["os.path"], 7, 12),
    ("from os import pa", None, ["pardir", "path", "pathconf", "pathconf_names", "pathsep"],
     15, 17),
    ("pt.x", None, ["pt.x1", "pt.x2"], 0, 4),
    ("os.path.jo", None, ["os.path.join"], 0, 10),
    ("x = 1\nstr.upp", None, ["str.upper"], 6, 13),
    # cursor_pos counts code points: é and 😀 are one each
    ('s = "é😀"; str.upp', None, ["str.upper"], 10, 17),
    ("str.upp(1)", 7, ["str.upper"], 0, 7),
    ('d["ke', None, ["key", "kez"], 3, 5),
    ("d['o", None, ["other"], 3, 4),
    ("d[", None, ["'key'", "'kez'", "'other'"], 2, 2),
    ("%lpr", None, ["%%lprun", "%lprun"], 0, 4),
    ("%ti", None, ["%%time", "%%timeit", "%time", "%timeit"], 0, 3),
    ("%%ti", None, ["%%time", "%%timeit"], 0, 4),
    ("%%timeit -n 3\nstr.up", None, ["str.upper"], 14, 20),
    ("%pst", None, ["%pstats"], 0, 4),
    ("%%mpr", None, ["%%mprof", "%%mprun"], 0, 5),
    ("%%pst", None, [], 0, 5),
    ("y = %lpr", None, ["%lprun"], 4, 8),
    ("%prun -s time str.upp", None, ["str.upper"], 14, 21),
    ("# zi", None, [], 4, 4),
    ("imp", None, ["import"], 0, 3),
]


@pytest.mark.parametrize("code,pos,matches,start,end", BOTH)
def test_complete_jedi(k, code, pos, matches, start, end):
    got, s, e, _ = complete(k, code, pos)
    assert (sorted(got), s, e) == (sorted(matches), start, end)


@pytest.mark.parametrize("code,pos,matches,start,end", BOTH)
def test_complete_without_jedi(k_plain, code, pos, matches, start, end):
    got, s, e, _ = complete(k_plain, code, pos)
    assert (sorted(got), s, e) == (sorted(matches), start, end)


def test_complete_magics_sorted(k):
    got = complete(k, "%")[0]
    assert got == sorted(got) and {"%lprun", "%time", "%pwd"} <= set(got)
    # at the start of a cell, the cell magics too, as IPython offers them
    assert {"%%time", "%%mprof"} <= set(got) and "%%pwd" not in got
    assert complete(k, "%ti")[0] == ["%%time", "%%timeit", "%time", "%timeit"]
    assert complete(k, "  %ti")[0] == ["%%time", "%%timeit", "%time", "%timeit"]
    # where a cell magic could not run, line magics only
    assert complete(k, "x = 1\n%ti")[0] == ["%time", "%timeit"]
    assert complete(k, "y = %ti")[0] == ["%time", "%timeit"]
    got = complete(k, "%%")[0]
    assert got == sorted(got) and {"%%time", "%%mprof"} <= set(got)
    assert "%%pwd" not in got


def test_complete_paths(k):
    q = 'open("' + TREE + "/al"
    got, s, e, _ = complete(k, q)
    assert (got, s, e) == ([TREE + "/alpha.txt", TREE + "/alpine/"], 6, len(q))
    # hidden files only when asked for
    got, s, e, _ = complete(k, "open('" + TREE + "/.al")
    assert got == [TREE + "/.alhidden"]
    q = "!ls " + TREE + "/b"
    assert complete(k, q)[:3] == ([TREE + "/beta.txt"], 4, len(q))
    q = "%cd " + TREE + "/al"  # directories only
    assert complete(k, q)[:3] == ([TREE + "/alpine/"], 4, len(q))
    q = 'x = "' + TREE + '/nothing'
    assert complete(k, q)[:3] == ([], 5, len(q))


@needs("numpy", "pandas")
def test_complete_pandas_numpy(k):
    execute(k, "import numpy as np, pandas as pd\n"
               "df = pd.DataFrame({'alpha': [1], 'beta': [2], 'alps': [3]})\n"
               "rec = np.zeros(2, dtype=[('xa', 'i4'), ('xb', 'f8')])\n")
    assert complete(k, "df['al")[:3] == (["alpha", "alps"], 4, 6)
    assert complete(k, "df[")[:3] == (["'alpha'", "'beta'", "'alps'"], 3, 3)
    assert complete(k, "rec['x")[:3] == (["xa", "xb"], 5, 6)
    # a column reached through DataFrame.__getattr__: jedi finds nothing, the
    # attributes of df.alpha (a Series) come from getattr along the name
    assert complete(k, "df.alpha.to_num")[:3] == (["df.alpha.to_numpy"], 0, 15)
    assert complete(k, "df.alp")[:3] == (["df.alpha", "df.alps"], 0, 6)


def test_complete_type_metadata(k):
    _, _, _, c = complete(k, "str.upp")
    assert c["metadata"]["_jupyter_types_experimental"] == [
        {"start": 0, "end": 7, "text": "str.upper", "type": "function", "signature": ""}]


def test_complete_type_metadata_without_jedi(k_plain):
    types = {t["text"]: t["type"] for t in
             complete(k_plain, "p")[3]["metadata"]["_jupyter_types_experimental"]}
    assert (types["pt"], types["print"], types["pass"]) == ("instance", "function", "keyword")
    assert complete(k_plain, "Pt")[3]["metadata"]["_jupyter_types_experimental"] == [
        {"start": 0, "end": 2, "text": "Pt", "type": "class", "signature": ""}]


def test_complete_in_fstring(k):
    assert complete(k, 'f"{str.upp')[:3] == (["str.upper"], 3, 10)
    assert complete(k, 'f"a {pt.x')[:3] == (["pt.x1", "pt.x2"], 5, 9)
    assert complete(k, 'f"{{str.upp')[:3] == ([], 2, 11)  # {{ is text, not a field


def test_completion_is_quiet(k):
    """Warnings raised while completing or inspecting are not published."""
    execute(k, "import warnings\n"
               "class Noisy:\n"
               "    def __getattr__(self, n):\n"
               "        warnings.warn('touched ' + n)\n"
               "        raise AttributeError(n)\n"
               "noisy = Noisy()\n")
    drain_iopub(k)
    complete(k, "noisy.")
    complete(k, "noisy.a.")
    assert inspect(k, "noisy.zz")["found"] is False
    published = []
    while True:
        try:
            published.append(k.get_iopub_msg(timeout=0.5)["msg_type"])
        except queue.Empty:
            break
    assert published == ["status", "status"] * 3  # busy, idle for each request


def test_complete_private_names_only_when_typed(k):
    got = complete(k, "pt.")[0]
    assert sorted(got) == ["pt.x1", "pt.x2"]
    assert "pt.__class__" in complete(k, "pt.__")[0]


@pytest.mark.parametrize("kc_name", ["k", "k_plain"])
def test_complete_calls_nothing(request, kc_name):
    kc = request.getfixturevalue(kc_name)
    execute(kc, "calls.clear()")
    for code in ("g().up", "g().upper().", "spy().up", "spy[0].up", "spy['a'].", "f(g()).",
                 "[g()][0].up", "g().__class__.", "spy.p", "spy.", "sp"):
        complete(kc, code)
    reply, msgs = execute(kc, "print(calls)")
    assert stdout_of(msgs) == "[]\n"
    # Attribute access along the dotted name being completed is all it does.
    assert complete(kc, "spy.p.up")[:3] == (["spy.p.upper"], 0, 8)
    reply, msgs = execute(kc, "print(calls)")
    assert stdout_of(msgs) == "['p']\n"


def test_complete_out_of_range_cursor(k):
    assert complete(k, "zi", 99)[:3] == (["zip"], 0, 2)
    assert complete(k, "", 0)[1:3] == (0, 0)


# ---- inspection ---------------------------------------------------------------

def cell_of(kc, code):
    reply, _ = execute(kc, code)
    assert reply["content"]["status"] == "ok"
    return reply["content"]["execution_count"]


def test_inspect_cell_function(k):
    n = cell_of(k, 'def h(a, *, b=1):\n    """Multiply.\n\n    Twice."""\n    return a * b\n')
    want0 = ("Signature: h(a, *, b=1)\n"
             "Docstring:\nMultiply.\n\nTwice.\n"
             f"File:      <cell-{n}>\n"
             "Type:      function")
    r = inspect(k, "h")
    assert r["found"] is True
    assert r["data"] == {"text/plain": want0}
    want1 = ("Signature: h(a, *, b=1)\n"
             "Docstring:\nMultiply.\n\nTwice.\n"
             'Source:\ndef h(a, *, b=1):\n    """Multiply.\n\n    Twice."""\n    return a * b\n'
             f"File:      <cell-{n}>\n"
             "Type:      function")
    assert inspect(k, "h", level=1)["data"]["text/plain"] == want1
    # the same text as obj? / obj?? pages
    for code, want in (("h?", want0), ("h??", want1)):
        reply, msgs = execute(k, code)
        [page] = reply["content"]["payload"]
        page["data"]["text/plain"] = ANSI.sub("", page["data"]["text/plain"])
        assert page == {"source": "page", "data": {"text/plain": want}, "start": 0}


def test_inspect_cell_class_source(k):
    n = cell_of(k, "class Box:\n    'A box.'\n    size = 3\n\nbox = Box()\n")
    text = inspect(k, "Box", level=1)["data"]["text/plain"]
    assert text == ("Init signature: Box()\n"
                    "Docstring:      A box.\n"
                    "Source:\nclass Box:\n    'A box.'\n    size = 3\n"
                    f"File:           <cell-{n}>\n"
                    "Type:           type")
    assert inspect(k, "Box")["data"]["text/plain"] == (
        "Init signature: Box()\n"
        "Docstring:      A box.\n"
        f"File:           <cell-{n}>\n"
        "Type:           type")


def test_inspect_value(k):
    assert inspect(k, "pt.x2")["data"]["text/plain"] == (
        "Type:        int\nString form: 2\nDocstring:\n" + int.__doc__.strip("\n"))
    text = inspect(k, "d")["data"]["text/plain"]
    assert text.startswith("Type:        dict\n"
                           "String form: {'key': 1, 'kez': 2, 'other': 3}\n"
                           "Length:      3\n"
                           "Docstring:\ndict() -> new empty dictionary\n")


def test_inspect_a_tuple(k):
    """A tuple is one object to look at, not the arguments of a call."""
    execute(k, "pair = (1, 'two')")
    assert inspect(k, "pair")["data"]["text/plain"] == (
        "Type:        tuple\nString form: (1, 'two')\nLength:      2\nDocstring:\n"
        + tuple.__doc__.strip("\n"))


def test_inspect_labels_are_coloured(k):
    """As IPython 9 shows them under ipykernel 7: each label in red, the
    padding after it; none after `%colors NoColor`, back with Linux; the
    `obj?` page the same."""
    execute(k, "seven = 7")
    t = inspect(k, "seven", raw=True)["data"]["text/plain"]
    assert t.startswith("\x1b[31mType:\x1b[39m        int\n"
                        "\x1b[31mString form:\x1b[39m 7\n\x1b[31mDocstring:\x1b[39m\n")
    reply, _ = execute(k, "seven?")
    [page] = reply["content"]["payload"]
    assert page["data"]["text/plain"] == t
    execute(k, "%colors NoColor")
    try:
        t = inspect(k, "seven", raw=True)["data"]["text/plain"]
        assert t.startswith("Type:        int\nString form: 7\nDocstring:\n")
    finally:
        execute(k, "%colors Linux")
    assert inspect(k, "seven", raw=True)["data"]["text/plain"].startswith("\x1b[31mType:")


def test_inspect_huge_container(k):
    execute(k, "big = list(range(5000))")
    assert inspect(k, "big")["data"]["text/plain"].startswith(
        "Type:        list\n"
        "String form: [0, 1, 2, 3, 4, 5, ...]\n"
        "Length:      5000\n")


def test_inspect_cursor_positions(k):
    # inside a name, at its end, in a call's arguments, dotted
    assert inspect(k, "f(1, 2)", 1)["data"]["text/plain"].startswith("Signature: f(x, y=2)\n")
    assert inspect(k, "x = f(1, ", 9)["data"]["text/plain"].startswith("Signature: f(x, y=2)\n")
    t = inspect(k, "os.path.join('a')", 10)["data"]["text/plain"]
    # the signature as the kernel's Python has it (3.15 writes (a, /, *p))
    _, msgs = execute(k, "import inspect as _i, os; print(_i.signature(os.path.join))")
    assert t.startswith("Signature: os.path.join%s\n" % stdout_of(msgs).strip())
    t = inspect(k, "é😀 = 1; os.path.join", 14)["data"]["text/plain"]
    assert t.startswith("Type:      module\n")  # cursor in "path": os.path


def test_inspect_not_found(k):
    execute(k, "calls.clear()")
    for code in ("no_such_name", "pt.nope", "", "1 + ", "g().upper", "spy[0]"):
        r = inspect(k, code)
        assert (r["found"], r["data"]) == (False, {}), code
    reply, msgs = execute(k, "no_such_name?")
    assert reply["content"]["payload"] == []
    assert stdout_of(msgs) == "Object `no_such_name` not found.\n"
    reply, msgs = execute(k, "print(calls)")
    assert stdout_of(msgs) == "[]\n"
