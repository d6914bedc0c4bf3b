"""Rich display through jupyter_client: MIME bundles from the _repr_*_
methods in execute_result and display_data, pandas, the builtin and
IPython.display display()/clear_output() with display ids, and matplotlib
figures shown inline with no set-up line."""
import base64
import os

import pytest

from kernel_util import execute, of_type, stdout_of
from pyrometer_testing import needs

PNG = b"\x89PNG\r\n\x1a\n"

# The kernel respects a backend chosen through MPLBACKEND (as ipykernel
# does); these tests are about the default, so kernels started from here on
# do not inherit one from the environment of the test run.
os.environ.pop("MPLBACKEND", None)


def ok(kc, code, **kw):
    reply, msgs = execute(kc, code, **kw)
    assert reply["content"]["status"] == "ok", reply["content"]
    return msgs


def test_nothing_heavy_imported_at_start(kernel):
    """Must run first in this module: the display hooks import neither
    IPython nor matplotlib until the user does."""
    km, kc = kernel
    msgs = ok(kc, "import sys\nsorted(m for m in ('IPython', 'matplotlib', 'pandas', 'numpy') "
                  "if m in sys.modules)")
    [res] = of_type(msgs, "execute_result")
    assert res["content"]["data"]["text/plain"] == "[]"


@pytest.mark.parametrize("cell", [
    "v = 7; v;", "v;  # shown? no", "(v,\n 2) ;", "v;\n\n# after", "v ; ", "seen.append(v) or v;",
])
def test_trailing_semicolon_hides_the_value(kernel, cell):
    """As in IPython: a cell whose last expression ends with `;` shows no
    value, and neither _ nor Out takes it; the expression still runs."""
    km, kc = kernel
    ok(kc, "v = 7; seen = []; _ = 'before'")
    reply, msgs = execute(kc, cell)
    assert reply["content"]["status"] == "ok"
    assert of_type(msgs, "execute_result") == []
    n = reply["content"]["execution_count"]
    msgs = ok(kc, "(_, %d in Out, seen)" % n)
    [res] = of_type(msgs, "execute_result")
    ran = "[7]" if cell.startswith("seen") else "[]"
    assert res["content"]["data"]["text/plain"] == "('before', False, %s)" % ran


@pytest.mark.parametrize("cell, shown", [
    ("v = 7\nv  # a ; in a comment", "7"),
    ("'a;b'", "'a;b'"),
    ("v;v", "7"),
    ("[v,\n v]", "[7, 7]"),
])
def test_a_semicolon_elsewhere_keeps_the_value(kernel, cell, shown):
    km, kc = kernel
    ok(kc, "v = 7")
    msgs = ok(kc, cell)
    [res] = of_type(msgs, "execute_result")
    assert res["content"]["data"]["text/plain"] == shown


def test_semicolon_after_an_await_hides_the_value(kernel):
    km, kc = kernel
    msgs = ok(kc, "import asyncio\nasync def seven():\n    return 7\nx = await seven();")
    assert of_type(msgs, "execute_result") == []
    msgs = ok(kc, "await seven();")
    assert of_type(msgs, "execute_result") == []
    msgs = ok(kc, "await seven()")
    [res] = of_type(msgs, "execute_result")
    assert res["content"]["data"]["text/plain"] == "7"


REPRS = [
    ("_repr_html_", "text/html", "'<b>html</b>'", "<b>html</b>"),
    ("_repr_markdown_", "text/markdown", "'# md'", "# md"),
    ("_repr_latex_", "text/latex", "r'$\\alpha$'", "$\\alpha$"),
    ("_repr_svg_", "image/svg+xml", "'<svg xmlns=\"http://www.w3.org/2000/svg\"/>'",
     '<svg xmlns="http://www.w3.org/2000/svg"/>'),
    ("_repr_png_", "image/png", "b'\\x89PNG\\r\\n\\x1a\\nxyz'",
     base64.b64encode(PNG + b"xyz").decode()),
    ("_repr_jpeg_", "image/jpeg", "b'\\xff\\xd8\\xff\\xe0jpg'",
     base64.b64encode(b"\xff\xd8\xff\xe0jpg").decode()),
    ("_repr_json_", "application/json", "{'a': [1, 2], 'b': None}", {"a": [1, 2], "b": None}),
    ("_repr_javascript_", "application/javascript", "'console.log(1)'", "console.log(1)"),
]


@pytest.mark.parametrize("method,mime,ret,expected", REPRS, ids=[r[1] for r in REPRS])
def test_repr_methods(kernel, method, mime, ret, expected):
    km, kc = kernel
    cls = (f"class R:\n    def {method}(self):\n        return {ret}\n"
           f"    def __repr__(self):\n        return 'R-plain'\n")
    msgs = ok(kc, cls + "R()")
    [res] = of_type(msgs, "execute_result")
    assert res["content"]["data"] == {"text/plain": "R-plain", mime: expected}
    msgs = ok(kc, "display(R())")
    [dd] = of_type(msgs, "display_data")
    assert dd["content"]["data"] == {"text/plain": "R-plain", mime: expected}
    assert of_type(msgs, "execute_result") == []


def test_repr_mimebundle(kernel):
    km, kc = kernel
    msgs = ok(kc, "class B:\n"
                  "    def _repr_mimebundle_(self, include=None, exclude=None):\n"
                  "        return {'text/plain': 'B!', 'application/vnd.x+json': {'k': 1}}, "
                  "{'application/vnd.x+json': {'m': 2}}\n"
                  "    def _repr_html_(self):\n"
                  "        return '<i>B</i>'\n"
                  "B()")
    [res] = of_type(msgs, "execute_result")
    c = res["content"]
    assert c["data"] == {"text/plain": "B!", "application/vnd.x+json": {"k": 1},
                         "text/html": "<i>B</i>"}
    assert c["metadata"] == {"application/vnd.x+json": {"m": 2}}


def test_failing_repr_falls_back_to_plain(kernel):
    km, kc = kernel
    msgs = ok(kc, "class F:\n    def _repr_html_(self):\n        raise RuntimeError('no')\n"
                  "    def __repr__(self):\n        return 'F'\nF()")
    [res] = of_type(msgs, "execute_result")
    assert res["content"]["data"] == {"text/plain": "F"}
    # its error shown as under ipykernel: an error output with its traceback
    [err] = of_type(msgs, "error")
    assert (err["content"]["ename"], err["content"]["evalue"]) == ("RuntimeError", "no")
    assert "raise RuntimeError('no')" in "".join(err["content"]["traceback"])


def test_an_object_that_displays_itself(kernel):
    """_ipython_display_ is called instead of showing a bundle, by the
    display hook and by display(), as under IPython; `_` still takes the
    value. When it raises, its error shows and the bundle follows."""
    km, kc = kernel
    msgs = ok(kc, "class Self:\n    def _ipython_display_(self):\n"
                  "        display({'text/html': '<b>me</b>', 'text/plain': 'me'}, raw=True)\n"
                  "    def __repr__(self):\n        return 'Self()'\ns = Self()\ns")
    assert of_type(msgs, "execute_result") == []
    [d] = of_type(msgs, "display_data")
    assert d["content"]["data"] == {"text/html": "<b>me</b>", "text/plain": "me"}
    msgs = ok(kc, "display(s, 5)")
    assert [m["content"]["data"]["text/plain"] for m in of_type(msgs, "display_data")] == ["me", "5"]
    msgs = ok(kc, "_ is s")
    [res] = of_type(msgs, "execute_result")
    assert res["content"]["data"]["text/plain"] == "True"
    msgs = ok(kc, "class Broken:\n    def _ipython_display_(self):\n        raise ValueError('nope')\n"
                  "    def __repr__(self):\n        return 'Broken()'\nBroken()")
    [err] = of_type(msgs, "error")
    assert err["content"]["evalue"] == "nope"
    [res] = of_type(msgs, "execute_result")
    assert res["content"]["data"] == {"text/plain": "Broken()"}


def test_an_object_that_answers_any_attribute_shows_its_repr(kernel):
    """A Mock has every _repr_*_ method; as IPython does, the kernel asks for
    a canary attribute first and then trusts none of them."""
    km, kc = kernel
    msgs = ok(kc, "from unittest import mock\nm = mock.MagicMock()\nm.__repr__ = lambda self: 'M'\nm")
    [res] = of_type(msgs, "execute_result")
    assert res["content"]["data"] == {"text/plain": "M"}
    assert of_type(msgs, "error") == []


@needs("pandas")
def test_pandas_dataframe_html(kernel):
    km, kc = kernel
    msgs = ok(kc, "import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})")
    [res] = of_type(msgs, "execute_result")
    data = res["content"]["data"]
    assert "<table" in data["text/html"] and "<td>x</td>" in data["text/html"]
    assert data["text/plain"] == "   a  b\n0  1  x\n1  2  y"


def test_builtin_display_and_clear_output(kernel):
    km, kc = kernel
    msgs = ok(kc, "display({'text/plain': 'raw!', 'text/html': '<p>raw</p>'}, raw=True)\n"
                  "clear_output(wait=True)\nclear_output()")
    [dd] = of_type(msgs, "display_data")
    assert dd["content"]["data"] == {"text/plain": "raw!", "text/html": "<p>raw</p>"}
    waits = [m["content"]["wait"] for m in of_type(msgs, "clear_output")]
    assert waits == [True, False]


def test_builtin_display_id_update(kernel):
    km, kc = kernel
    msgs = ok(kc, "display('one', display_id='d-1')\ndisplay('two', display_id='d-1', update=True)")
    types = [m["msg_type"] for m in msgs if m["msg_type"] in ("display_data", "update_display_data")]
    assert types == ["display_data", "update_display_data"]
    dd, ud = [m["content"] for m in msgs if m["msg_type"] in ("display_data",
                                                                  "update_display_data")]
    assert dd["transient"] == {"display_id": "d-1"} and dd["data"] == {"text/plain": "'one'"}
    assert ud["transient"] == {"display_id": "d-1"} and ud["data"] == {"text/plain": "'two'"}
    # an update may come from a later cell
    msgs = ok(kc, "display('three', display_id='d-1', update=True)")
    [ud] = of_type(msgs, "update_display_data")
    assert ud["content"]["data"] == {"text/plain": "'three'"}


def test_kernel_display_handle(kernel):
    km, kc = kernel
    msgs = ok(kc, "h = __pyrometer__.DisplayHandle('dh-9')\nh.display('a')\nh.update('b')\n"
                  "h.update({'text/plain': 'c'}, raw=True)\nh")
    kinds = [(m["msg_type"], m["content"]["data"]["text/plain"]) for m in msgs
             if m["msg_type"] in ("display_data", "update_display_data", "execute_result")]
    assert kinds == [("display_data", "'a'"), ("update_display_data", "'b'"),
                     ("update_display_data", "c"),
                     ("execute_result", "<DisplayHandle display_id=dh-9>")]
    assert all(m["content"]["transient"] == {"display_id": "dh-9"} for m in msgs
               if m["msg_type"] in ("display_data", "update_display_data"))


def test_ipython_display(kernel):
    km, kc = kernel
    msgs = ok(kc, "from IPython.display import display, HTML, Markdown, clear_output, Image\n"
                  "display(HTML('<b>x</b>'))\n"
                  "clear_output()\n"
                  "display(Markdown('*m*'), metadata={'k': 1})\n"
                  "clear_output(wait=True)")
    types = [m["msg_type"] for m in msgs if m["msg_type"] in ("display_data", "clear_output")]
    assert types == ["display_data", "clear_output", "display_data", "clear_output"]
    d1, c1, d2, c2 = [m["content"] for m in msgs
                      if m["msg_type"] in ("display_data", "clear_output")]
    assert d1["data"]["text/html"] == "<b>x</b>"
    assert d1["data"]["text/plain"] == "<IPython.core.display.HTML object>"
    assert c1 == {"wait": False} and c2 == {"wait": True}
    assert d2["data"]["text/markdown"] == "*m*" and d2["metadata"] == {"k": 1}


def test_ipython_display_handle_update(kernel):
    km, kc = kernel
    msgs = ok(kc, "from IPython.display import display, DisplayHandle, HTML, update_display\n"
                  "h = display(HTML('<i>1</i>'), display_id=True)\n"
                  "h.update(HTML('<i>2</i>'))\n"
                  "update_display(HTML('<i>3</i>'), display_id=h.display_id)\n"
                  "isinstance(h, DisplayHandle)")
    dd = of_type(msgs, "display_data")
    ud = of_type(msgs, "update_display_data")
    assert len(dd) == 1 and len(ud) == 2
    did = dd[0]["content"]["transient"]["display_id"]
    assert did and all(u["content"]["transient"] == {"display_id": did} for u in ud)
    assert [u["content"]["data"]["text/html"] for u in ud] == ["<i>2</i>", "<i>3</i>"]
    [res] = of_type(msgs, "execute_result")
    assert res["content"]["data"]["text/plain"] == "True"


def test_ipython_display_objects(kernel):
    km, kc = kernel
    msgs = ok(kc, "import IPython.display as d\n"
                  "png = b'\\x89PNG\\r\\n\\x1a\\n' + b'0' * 20\n"
                  "d.display(d.Image(data=png, format='png'), d.JSON({'a': 1}), d.Latex('$x$'))\n"
                  "d.display_html('<u>u</u>', raw=True)\n"
                  "d.display({'text/plain': 'p', 'text/csv': 'a,b'}, raw=True)\n"
                  "d.display(d.HTML('<s>s</s>'), include=['text/html'])\n"
                  "d.display(d.HTML('<s>s</s>'), exclude=['text/html'])")
    dd = [m["content"]["data"] for m in of_type(msgs, "display_data")]
    assert len(dd) == 7
    assert base64.b64decode(dd[0]["image/png"]).startswith(PNG)
    assert dd[1]["application/json"] == {"a": 1}
    assert dd[2]["text/latex"] == "$x$"
    assert dd[3] == {"text/html": "<u>u</u>"}
    assert dd[4] == {"text/plain": "p", "text/csv": "a,b"}
    assert dd[5] == {"text/html": "<s>s</s>"}
    assert list(dd[6]) == ["text/plain"]


# ---- matplotlib ---------------------------------------------------------------------


def figures(msgs):
    out = []
    for m in of_type(msgs, "display_data"):
        data = m["content"]["data"]
        if "image/png" in data:
            out.append(data)
    return out


@needs("matplotlib")
def test_matplotlib_inline_without_setup(kernel):
    km, kc = kernel
    msgs = ok(kc, "import matplotlib.pyplot as plt\n"
                  "f1 = plt.figure(); plt.plot([1, 2, 3])\n"
                  "f2, axes = plt.subplots(1, 2)\n"
                  "None")
    figs = figures(msgs)
    assert len(figs) == 2
    for f in figs:
        assert base64.b64decode(f["image/png"]).startswith(PNG)
    assert [f["text/plain"] for f in figs] == ["<Figure size 640x480 with 1 Axes>",
                                               "<Figure size 640x480 with 2 Axes>"]
    assert stdout_of(msgs, "stderr") == ""
    # shown figures are closed: the next cell shows nothing
    msgs = ok(kc, "len(plt.get_fignums())")
    assert figures(msgs) == []
    assert of_type(msgs, "execute_result")[0]["content"]["data"]["text/plain"] == "0"


@needs("matplotlib")
def test_plt_show_displays_in_place(kernel):
    km, kc = kernel
    msgs = ok(kc, "import matplotlib.pyplot as plt\n"
                  "plt.plot([3, 1]); plt.show()\n"
                  "print('after show')\n"
                  "plt.plot([1, 3])")
    kinds = [m["msg_type"] for m in msgs if m["msg_type"] in ("display_data", "stream",
                                                               "execute_result")]
    assert kinds == ["display_data", "stream", "execute_result", "display_data"]
    assert len(figures(msgs)) == 2
    assert stdout_of(msgs) == "after show\n"
    assert stdout_of(msgs, "stderr") == ""  # no "non-GUI backend" warning


@needs("matplotlib")
def test_matplotlib_figure_repr_and_errors(kernel):
    km, kc = kernel
    msgs = ok(kc, "import matplotlib.pyplot as plt\nfig, ax = plt.subplots(); ax.plot([1])\n"
                  "plt.close(fig)\nfig")
    [res] = of_type(msgs, "execute_result")
    assert base64.b64decode(res["content"]["data"]["image/png"]).startswith(PNG)
    assert figures(msgs) == []  # closed: not shown again
    # a cell that fails still shows its figure, before the error
    reply, msgs = execute(kc, "plt.plot([2, 2])\nraise ValueError('after plot')")
    assert reply["content"]["ename"] == "ValueError"
    assert len(figures(msgs)) == 1
    kinds = [m["msg_type"] for m in msgs if m["msg_type"] in ("display_data", "error")]
    assert kinds == ["display_data", "error"]


@needs("matplotlib")
def test_matplotlib_silent_request_keeps_figures(kernel):
    km, kc = kernel
    ok(kc, "import matplotlib.pyplot as plt")
    reply, msgs = execute(kc, "plt.plot([5, 6])", silent=True)
    assert msgs and figures(msgs) == []
    msgs = ok(kc, "pass")
    assert len(figures(msgs)) == 1


def test_builtin_display_id_true_returns_handle(kernel):
    km, kc = kernel
    msgs = ok(kc, "h = display('first', display_id=True)\nh.update('second')\n"
                  "type(h).__name__")
    shown = [(m["msg_type"], m["content"]["data"]["text/plain"]) for m in msgs
             if m["msg_type"] in ("display_data", "update_display_data", "execute_result")]
    assert shown == [("display_data", "'first'"), ("update_display_data", "'second'"),
                     ("execute_result", "'DisplayHandle'")]
    ids = {m["content"]["transient"]["display_id"] for m in msgs
           if m["msg_type"] in ("display_data", "update_display_data")}
    assert len(ids) == 1 and ids.pop()
