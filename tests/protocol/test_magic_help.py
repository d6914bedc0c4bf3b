"""Help for every magic: %name?, ?%name, %name -h and Shift-Tab (an
inspect_request on the magic) show the same text: the usage, a summary,
every option the parser accepts with its meaning, and an example. %magic and
%lsmagic give one-line summaries."""
import re

import pytest

from kernel_util import execute, of_type, stdout_of

PROFILERS = ["prun", "pstats", "lprun", "memit", "mprun", "%mprof", "sample", "autosample"]


def ok(kc, code, **kw):
    reply, msgs = execute(kc, code, timeout=60, **kw)
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply, msgs


def page(kc, code):
    reply, msgs = ok(kc, code)
    [p] = reply["content"]["payload"]
    assert p["source"] == "page"
    return p["data"]["text/plain"]


def accepted_options(kc, name):
    """The options the magic's parser accepts, as its own error lists them."""
    line = {"pstats": "f.prof -Z", "autosample": "on -Z"}.get(name, "-Z")
    code = f"%%{name[1:]} {line}\npass" if name.startswith("%") else f"%{name} {line}"
    reply, _ = execute(kc, code)
    m = re.search(r"unknown option -Z; the options are (.*)\n", reply["content"]["evalue"])
    assert m, reply["content"]
    return m.group(1).split()


@pytest.fixture(scope="module")
def kc(kernel):
    return kernel[1]


@pytest.mark.parametrize("name", PROFILERS)
def test_profiler_help_lists_every_option(kc, name):
    sigil = "%" + name
    text = page(kc, sigil + "?")
    assert text.startswith(sigil + " ") or text.startswith(sigil + "\n"), text
    paragraphs = text.split("\n\n")
    assert len(paragraphs[1].splitlines()) == 1  # the one-line summary
    assert "\nOptions:\n" in text and "\nExample:\n  %" in text
    options = text.split("\nOptions:\n")[1].split("\n\n")[0]
    for opt in accepted_options(kc, name):
        m = re.search(rf"^  (?:-\w, )?{re.escape(opt)}(?: [A-Z]+)?\s+(\S.*)$", options, re.M)
        assert m and len(m.group(1)) > 10, (opt, options)
    assert "(line, cell, ns, display)" not in text
    # the text IPython and ipykernel show under %load_ext pyrometer
    key = name.lstrip("%")
    reply, msgs = ok(kc, f"import pyrometer\nprint(pyrometer.MAGIC_HELP[{key!r}], end='')")
    assert stdout_of(msgs) == text
    # the other ways of asking give the same text
    assert page(kc, "?" + sigil) == text
    assert page(kc, sigil + "??") == text
    if not name.startswith("%"):
        assert stdout_of(ok(kc, f"%{name} -h")[1]) == text
    code = sigil + " -x"
    reply = kc.inspect(code, cursor_pos=3, detail_level=0)
    reply = kc.get_shell_msg(timeout=10)
    assert reply["content"]["found"] is True
    assert reply["content"]["data"]["text/plain"] == text


def test_every_kernel_magic_has_help(kc):
    out = stdout_of(ok(kc, "%lsmagic")[1]).split("IPython's")[0]
    names = re.findall(r"^  (%%?\w+) ", out, re.M)
    assert "%time" in names and "%%prun" in names and "%lprun" in names
    for sigil in names:
        text = page(kc, sigil + "?")
        first = text.splitlines()[0]
        assert first.startswith(sigil.replace("%%", "%")) or first.startswith(sigil), text
        assert "\nExample:\n  " in text, text


def test_lsmagic_and_magic_give_one_line_summaries(kc):
    out = stdout_of(ok(kc, "%lsmagic")[1]).split("IPython's")[0]
    rows = re.findall(r"^  (%%?\w+) +(.*)$", out, re.M)
    assert len(rows) >= 25
    summaries = dict(rows)
    assert summaries["%lprun"] == "Profile chosen functions line by line: hits and time per line."
    assert summaries["%%mprof"] == "Record memory over time while the cell runs, drawn as a chart."
    for name, summary in rows:
        assert summary and "(line, cell" not in summary and not summary.startswith("%"), name
    out = stdout_of(ok(kc, "%magic")[1])
    assert "\n%prun, %%prun\n    Profile a statement with pyrometer's native function profiler.\n" \
        in out
    assert "\n%timeit, %%timeit\n    Time a statement: " in out
    assert "(line, cell, ns, display)" not in out


def test_help_of_an_ipython_magic(kc):
    pytest.importorskip("IPython")
    text = page(kc, "%run?")
    assert "Run the named file inside IPython as a program." in text


def test_unknown_magic_help(kc):
    reply, msgs = ok(kc, "%no_such_magic?")
    assert reply["content"]["payload"] == []
    assert stdout_of(msgs) == "Object `%no_such_magic` not found.\n"
