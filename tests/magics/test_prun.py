"""%prun, %%prun and %pstats: counts against cProfile key by key, the pstats
dump, every option and its errors (directly and through IPython), nesting,
exceptions, threads, and that the previous profile hook comes back."""
import cProfile
import linecache
import marshal
import os
import pstats
import re
import sys
import threading

import pytest

from pyrometer_testing import report_charts

PROGRAM = '''\
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)

def even(n):
    return True if n == 0 else odd(n - 1)

def odd(n):
    return False if n == 0 else even(n - 1)

def gen(n):
    for i in range(n):
        yield i * i

def deleg(n):
    yield from gen(n)

def squares(n):
    try:
        for i in range(n):
            yield i * i
    finally:
        abs(-n)

def catching():
    try:
        yield 1
    except KeyError:
        yield 2

def gen_control():
    g = squares(10)
    next(g), next(g)
    g.close()
    t = catching()
    next(t)
    t.throw(KeyError)

class Shape:
    def __init__(self, k):
        self.k = k
    def area(self):
        return abs(-self.k) * len([self.k, 1])
    @property
    def size(self):
        return self.area()
    def __repr__(self):
        return "Shape(%d)" % self.k

def boom(n):
    if n == 0:
        raise ValueError("boom")
    return boom(n - 1)

def catcher():
    for i in range(3):
        try:
            boom(i)
        except ValueError:
            pass
    try:
        int("nope")
    except ValueError:
        pass

async def coro(n):
    return n + 1

def run_coro():
    c = coro(1)
    try:
        c.send(None)
    except StopIteration as e:
        return e.value

def main():
    fib(14)
    even(25)
    total = sum(gen(20)) + sum(deleg(5)) + len(list(gen(3)))
    shapes = [Shape(k) for k in range(6)]
    areas = sorted(s.size for s in shapes)
    names = ", ".join(map(repr, shapes))
    items = []
    for i in range(10):
        items.append(i)
    items.sort(key=lambda v: -v)
    catcher()
    run_coro()
    gen_control()
    return total, areas, names, max(items), isinstance(items, list)
'''

# Profiler bookkeeping that only cProfile.runctx shows.
ARTIFACTS = ("exec", "disable")


def cell(ns, src, n):
    """Defines src in ns as kernel cell n would: filename <cell-N>, source in linecache."""
    name = "<cell-%d>" % n
    linecache.cache[name] = (len(src), None, src.splitlines(True), name)
    exec(compile(src, name, "exec"), ns)


def is_artifact(label):
    return label[0] == "~" and any(a in label[2] for a in ARTIFACTS)


def counts(stats):
    """{label: (cc, nc, {caller: (nc, cc)})} without the profilers' own rows."""
    out = {}
    for label, (cc, nc, tt, ct, callers) in stats.items():
        if is_artifact(label):
            continue
        out[label] = (cc, nc, {c: v[:2] for c, v in callers.items() if not is_artifact(c)})
    return out


def cprofile_stats(stmt, ns):
    prof = cProfile.Profile()
    prof.runctx(stmt, ns, ns)
    prof.create_stats()
    return prof.stats


@pytest.fixture
def ns():
    ns = {}
    cell(ns, PROGRAM, 7)
    return ns


def run_prun(magic, line, ns, cell_src=None):
    prof = magic("prun", "-r -q " + line, cell_src, ns=ns)
    return pstats.Stats(prof).stats


# ---- accuracy against cProfile ------------------------------------------------


def test_counts_equal_cprofile_key_by_key(magic, ns):
    ours = counts(run_prun(magic, "main()", ns))
    theirs = counts(cprofile_stats("main()", ns))
    assert set(ours) == set(theirs)
    for label in theirs:
        assert ours[label] == theirs[label], label
    names = {label[2] for label in ours}
    # the program covers what cProfile counts specially
    for want in ("fib", "even", "odd", "gen", "deleg", "squares", "catching", "area", "size", "boom", "coro", "<lambda>",
                 "<built-in method builtins.len>", "<method 'append' of 'list' objects>",
                 "<method 'sort' of 'list' objects>", "<built-in method builtins.sorted>"):
        assert want in names, want
    assert ours[("<cell-7>", 17, "squares")][1] == 3  # two resumptions and the close
    fib = ("<cell-7>", 1, "fib")
    assert ours[fib][:2] == (1, 1219)  # primitive / total calls, as cProfile
    gen = ("<cell-7>", 10, "gen")
    assert ours[gen][1] == theirs[gen][1] == 21 + 6 + 4  # every resumption is a call


def test_counts_in_a_prun_cell(magic, ns):
    body = "def local(n):\n    return [fib(k) for k in range(n)]\n\nlocal(8)\nmain()\n"
    ours = counts(run_prun(magic, "", ns, body))
    theirs = counts(cprofile_stats(body, dict(ns)))
    assert ours == theirs


def test_total_is_sum_of_tottimes(magic, ns):
    prof = magic("prun", "-r main()", ns=ns)
    stats = pstats.Stats(prof).stats
    total = sum(v[2] for v in stats.values())
    m = re.search(r"function calls \(\d+ primitive calls\) in ([0-9.]+) seconds", magic.text)
    assert m, magic.text
    assert abs(float(m.group(1)) - total) <= 0.0005 + 1e-9
    # and cumtime of the statement is the whole run
    module = [v for k, v in stats.items() if k[2] == "<module>"][0]
    assert module[3] == pytest.approx(total, rel=1e-6, abs=1e-9)


def test_api_profile_matches_cprofile(pyrometer, ns):
    prof = pyrometer.Profile()
    prof.runctx("main()", ns, ns)
    assert counts(pstats.Stats(prof).stats) == counts(cprofile_stats("main()", ns))
    # pstats.Stats(prof) works again (it empties .stats, as with cProfile)
    assert len(pstats.Stats(prof).stats) > 10


# ---- text and HTML -------------------------------------------------------------


def test_text_layout(magic, ns):
    magic("prun", "main()", ns=ns)
    text = magic.text
    lines = text.splitlines()
    assert re.match(r"^ +\d+ function calls \(\d+ primitive calls\) in \d+\.\d{3} seconds$", lines[0])
    assert "   Ordered by: internal time" in lines
    assert "   ncalls  tottime  percall  cumtime  percall filename:lineno(function)" in lines
    assert "{built-in method builtins.len}" in text
    assert "{method 'append' of 'list' objects}" in text
    assert re.search(r"^ +1219/1 +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ <cell-7>:1\(fib\)$", text, re.M)
    assert not text.endswith("\n")


def test_html_report(magic, ns):
    magic("prun", "-s cumulative main()", ns=ns)
    html = magic.html
    assert "<script" not in html.lower()
    # No layout through a <style> block or inline <svg>: sanitizers drop both.
    assert "<style" not in html and "<svg" not in html and "var(--jp-" not in html
    assert "<table" in html and html.count('class="pyro-bar"') >= 2
    assert "background:#e8743b" in html and "background:#4c8fd6" in html  # tottime, cumtime bars
    assert "In [7]:1" in html                       # named by its cell
    assert "&lt;cell-7&gt;" not in html
    assert "Callers and callees" in html and "called by" in html
    # classic Notebook's CSS hides the disclosure triangle of a plain <summary>
    assert html.count("<summary") == html.count('<summary style="display:list-item')
    (svg,) = report_charts(html)                    # the call graph is a picture
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg"')
    # (labels go where they fit: the statement and main() span the width)
    assert svg.count("<rect") >= 5 and ">&lt;module&gt; 100%" in svg and ">main" in svg
    assert "var(" not in svg and 'fill="#111111"' in svg  # dark text on its light boxes


def test_html_shows_the_top_rows_and_says_how_to_see_more(magic):
    ns = {}
    src = "".join("def f%d():\n    return %d\n" % (i, i) for i in range(80))
    src += "def main():\n" + "".join("    f%d()\n" % i for i in range(80))
    exec(compile(src, "<cell-3>", "exec"), ns)
    magic("prun", "main()", ns=ns)
    rows = lambda html: html.split("</table>")[0].count("<tr>") - 1
    # The text has every function; the HTML the top 30 and a footer.
    assert magic.text.count("<cell-3>:") == 81
    assert rows(magic.html) == 30
    assert "Showing the top 30 of 8" in magic.html and "%prun -l 100 shows 100 rows" in magic.html
    magic("prun", "-l 50 main()", ns=ns)
    assert rows(magic.html) == 50 and "Showing the top" not in magic.html
    magic("prun", "-l 40 main()", ns=ns)
    assert rows(magic.html) == 40


def test_sort_and_limits(magic, ns):
    magic("prun", "-s calls -s name -l 3 main()", ns=ns)
    assert "Ordered by: call count, function name" in magic.text
    assert "List reduced from" in magic.text and "due to restriction <3>" in magic.text
    body = magic.text.split("filename:lineno(function)\n")[1].strip().splitlines()
    assert len(body) == 3
    magic("prun", "-s cumt -l 0.5 -l fib main()", ns=ns)
    assert "Ordered by: cumulative time" in magic.text
    assert "restriction <'fib'>" in magic.text and "restriction <0.5>" in magic.text
    magic("prun", "-scumulative -l1 main()", ns=ns)
    assert "restriction <1>" in magic.text


def test_every_sort_key_and_prefix(magic, ns):
    for key in ("calls", "ncalls", "cumulative", "cumtime", "file", "filename", "module", "line", "name",
                "nfl", "pcalls", "stdname", "time", "tottime", "tot", "std"):
        magic("prun", "-s %s fib(5)" % key, ns=ns)
        assert "Ordered by:" in magic.text


def test_dump_and_text_files(magic, ns, tmp_path):
    dump = tmp_path / "out.prof"
    txt = tmp_path / "out.txt"
    magic("prun", "-D %s -T %s main()" % (dump, txt), ns=ns)
    assert "*** Profile stats marshalled to file %r." % str(dump) in magic.text
    assert "*** Profile printout saved to text file %r." % str(txt) in magic.text
    with open(dump, "rb") as f:
        raw = marshal.load(f)
    label, row = next(iter(raw.items()))
    assert isinstance(label, tuple) and len(label) == 3 and len(row) == 5
    st = pstats.Stats(str(dump))
    assert counts(st.stats) == counts(cprofile_stats("main()", ns))
    import io
    st.stream = io.StringIO()
    st.sort_stats("cumulative").print_stats(5)
    st.print_callers("fib")
    assert "fib" in st.stream.getvalue()
    assert txt.read_text().splitlines()[0] == magic.text.splitlines()[0]
    assert "Ordered by: internal time" in txt.read_text()


def test_dump_readable_by_gprof2dot(magic, ns, tmp_path):
    gprof2dot = pytest.importorskip("gprof2dot")
    dump = tmp_path / "g.prof"
    magic("prun", "-q -D %s main()" % dump, ns=ns)
    profile = gprof2dot.PstatsParser(str(dump)).parse()
    assert any(f.name.endswith("fib") for f in profile.functions.values())


def test_quiet(magic, ns, tmp_path):
    assert magic("prun", "-q main()", ns=ns) is None
    assert magic.bundles == []
    magic("prun", "-q -D %s main()" % (tmp_path / "q.prof"), ns=ns)
    assert len(magic.bundles) == 1 and "marshalled" in magic.text and "ncalls" not in magic.text


def test_return_value_is_a_pstats_stats(magic, ns):
    import io
    res = magic("prun", "-r -s calls fib(10)", ns=ns)
    # as IPython's -r: a sorted pstats.Stats to sort and print further
    assert isinstance(res, pstats.Stats)
    assert res.sort_type == "call count"
    res.stream = io.StringIO()
    res.sort_stats("cumulative").print_stats(1)
    assert "Ordered by: cumulative time" in res.stream.getvalue()
    # and pstats.Stats(obj) accepts it, without emptying it
    st = pstats.Stats(res)
    assert st.stats[("<cell-7>", 1, "fib")][:2] == (1, 177)
    assert res.stats[("<cell-7>", 1, "fib")][:2] == (1, 177)
    assert pstats.Stats(res).total_calls == st.total_calls
    assert magic("prun", "fib(3)", ns=ns) is None


def test_namespace_untouched_and_assignments_visible(magic):
    ns = {"a": 2}
    magic("prun", "-q", "b = a * 21\n", ns=ns)
    assert ns == {"a": 2, "b": 42}


def test_cell_statement_on_first_line(magic, ns):
    magic("prun", "-q -r x = fib(6)", "y = x + 1\n", ns=ns)
    assert ns["y"] == 9


def test_exception_shows_stats_then_raises(magic, ns):
    with pytest.raises(ValueError, match="boom"):
        magic("prun", "fib(6); boom(2)", ns=ns)
    assert len(magic.bundles) == 1
    assert "<cell-7>:1(fib)" in magic.text and "3/1" in magic.text


def test_keyboard_interrupt_shows_stats_then_raises(magic, ns):
    with pytest.raises(KeyboardInterrupt):
        magic("prun", "", "fib(7)\nraise KeyboardInterrupt\n", ns=ns)
    assert "<cell-7>:1(fib)" in magic.text
    assert sys.getprofile() is None


def test_system_exit_is_reported_like_ipython(magic, ns):
    assert magic("prun", "fib(3); raise SystemExit(3)", ns=ns) is None
    assert "*** SystemExit exception caught in code being profiled." in magic.text
    assert "*** SystemExit exception caught in code being profiled." in magic.html


def test_syntax_error_is_not_profiled(magic, ns):
    with pytest.raises(SyntaxError):
        magic("prun", "fib(", ns=ns)
    assert magic.bundles == []


def test_nested_prun_is_a_clear_error(magic, ns, pyrometer):
    ns["inner"] = lambda: pyrometer.MAGICS["prun"][1]("fib(3)", None, ns, lambda b: None)
    with pytest.raises(pyrometer.UsageError, match="already profiling"):
        magic("prun", "fib(4); inner()", ns=ns)
    assert len(magic.bundles) == 1  # the outer stats were still shown
    assert sys.getprofile() is None
    magic("prun", "-q fib(3)", ns=ns)   # and the next %prun works


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring is 3.12+")
def test_tool_id_held_by_cprofile(magic, ns, pyrometer):
    """On 3.12+ %prun takes sys.monitoring's PROFILER_ID, as cProfile does:
    while cProfile runs, %prun says who holds it, and gives it back after."""
    cp = cProfile.Profile()
    cp.enable()
    try:
        with pytest.raises(pyrometer.UsageError) as e:
            magic("prun", "-q fib(3)", ns=ns)
    finally:
        cp.disable()
    assert str(e.value).startswith("%prun: sys.monitoring tool id 2 is held by 'cProfile'")
    assert sys.monitoring.get_tool(2) is None
    magic("prun", "-q fib(3)", ns=ns)
    assert sys.monitoring.get_tool(2) is None


def test_previous_profile_hook_restored(magic, ns):
    seen = []

    def hook(frame, event, arg):
        seen.append(event)

    sys.setprofile(hook)
    try:
        magic("prun", "-q fib(4)", ns=ns)
        assert sys.getprofile() is hook
    finally:
        sys.setprofile(None)
    assert sys.getprofile() is None
    assert threading.getprofile() is None if hasattr(threading, "getprofile") else True


def test_threads(magic, ns):
    src = ("import threading\n"
           "def work():\n    return fib(9)\n"
           "t = threading.Thread(target=work)\nt.start(); t.join()\n")
    plain = run_prun(magic, "", dict(ns), src)
    assert ("<cell-7>", 1, "fib") not in plain
    threaded = run_prun(magic, "--threads", dict(ns), src)
    assert threaded[("<cell-7>", 1, "fib")][:2] == (1, 109)
    assert sys.getprofile() is None and threading.getprofile() is None


def test_threads_already_running(magic, ns):
    ns["go"] = threading.Event()
    ns["done"] = threading.Event()
    src = "def spin():\n    while not go.is_set():\n        fib(3)\n    done.set()\n"
    exec(src, ns)
    t = threading.Thread(target=ns["spin"])
    t.start()
    try:
        stats = run_prun(magic, "--threads", ns, "import time\ntime.sleep(0.05)\n")
    finally:
        ns["go"].set()
        t.join()
    assert stats[("<cell-7>", 1, "fib")][1] > 0
    assert sys.getprofile() is None


# ---- option errors ----------------------------------------------------------------

BAD = [
    ("-s nope f()", "-s nope is not a sort key"),
    ("-x f()", "unknown option -x"),
    ("--bogus f()", "unknown option --bogus"),
    ("-l", "option -l needs a value"),
    ("-s", "option -s needs a value"),
    ("-T", "option -T needs a value"),
    ("-l 1.5 f()", "a fraction must be between 0 and 1"),
    ("-l -3 f()", "a row count cannot be negative"),
    ("-l '(' f()", "is not an int, a fraction or a valid regular expression"),
    ("", "nothing to profile"),
    ("-q -s time", "nothing to profile"),
]


@pytest.mark.parametrize("line,msg", BAD)
def test_bad_options(magic, pyrometer, line, msg):
    ran = []
    with pytest.raises(pyrometer.UsageError) as err:
        magic("prun", line, ns={"f": lambda: ran.append(1)})
    assert str(err.value).startswith("%prun: ")
    assert msg in str(err.value)
    assert "Usage: %prun" in str(err.value)
    assert ran == []


# ---- %pstats ---------------------------------------------------------------------


def test_pstats_reads_our_dump_and_cprofiles(magic, ns, tmp_path):
    ours = tmp_path / "ours.prof"
    magic("prun", "-q -D %s main()" % ours, ns=ns)
    theirs = tmp_path / "theirs.prof"
    prof = cProfile.Profile()
    prof.runctx("main()", ns, ns)
    prof.dump_stats(str(theirs))
    for path in (ours, theirs):
        magic("pstats", "%s -s cumulative -l 4" % path, ns=ns)
        assert "Ordered by: cumulative time" in magic.text
        assert "due to restriction <4>" in magic.text
        assert len(report_charts(magic.html)) == 1 and "In [7]:1" in magic.html
    magic("pstats", "'%s' --callers -l fib" % ours, ns=ns)
    assert "was called by..." in magic.text
    assert "<details open><summary style=\"display:list-item;cursor:pointer;margin:6px 0 2px 0;font-weight:600\">Callers and callees" in magic.html
    magic("pstats", "%s --callees -s calls" % theirs, ns=ns)
    assert "called..." in magic.text and "Ordered by: call count" in magic.text


def test_pstats_text_fits_a_terminal(magic, tmp_path):
    """A dump of library code: the text names files as %prun does (dirs
    stripped), so it fits 100 columns; the HTML keeps each full path."""
    import email.parser, email.policy, json
    dump = tmp_path / "lib.prof"
    prof = cProfile.Profile()
    prof.runcall(lambda: (json.dumps([{"a": [1, 2, 3]}] * 200),
                          email.parser.Parser(policy=email.policy.default).parsestr("From: a\n\nhi")))
    prof.dump_stats(str(dump))
    encoder = json.encoder.__file__
    assert len(encoder) > 20  # a real directory to strip
    magic("pstats", "%s -l 30 --callers --callees" % dump)
    wide = [l for l in magic.text.splitlines() if len(l) > 100]
    assert wide == [], wide
    assert re.search(r"^\s+\d+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+ encoder\.py:\d+\(iterencode\)$",
                     magic.text, re.M), magic.text
    assert encoder not in magic.text
    assert 'title="%s"' % encoder in magic.html


@pytest.mark.parametrize("line,msg", [
    ("", "which dump?"),
    ("a b", "one dump at a time"),
    ("/nonexistent/x.prof", "cannot read"),
    ("%s -s bogus" % __file__, "-s bogus is not a sort key"),
    ("%s --nope" % __file__, "unknown option --nope"),
    (__file__, "is not a pstats dump"),
])
def test_pstats_errors(magic, pyrometer, line, msg):
    with pytest.raises(pyrometer.UsageError) as err:
        magic("pstats", line)
    assert str(err.value).startswith("%pstats: ") and msg in str(err.value)


# ---- through IPython (%load_ext pyrometer) -----------------------------------------


def test_ipython_line_and_cell(ipy, tmp_path):
    ipy.run_cell(PROGRAM)
    dump = tmp_path / "ip.prof"
    res = ipy.run_line_magic("prun", "-r -s cumulative -l 5 -D %s main()" % dump)
    assert ipy.published, "nothing displayed"
    text = ipy.published[-1]["text/plain"]
    assert "Ordered by: cumulative time" in text and "marshalled" in text
    assert len(report_charts(ipy.published[-1]["text/html"])) == 1
    theirs = counts(cprofile_stats("main()", ipy.user_ns))
    assert counts(pstats.Stats(res).stats) == theirs
    assert counts(pstats.Stats(str(dump)).stats) == theirs
    ipy.run_cell_magic("prun", "-q -T %s" % (tmp_path / "t.txt"), "z = fib(8)\n")
    assert ipy.user_ns["z"] == 21 and (tmp_path / "t.txt").exists()
    ipy.run_line_magic("pstats", "%s -s calls --callers" % dump)
    assert "was called by..." in ipy.published[-1]["text/plain"]


def test_ipython_cell_named_by_input(ipy):
    ipy.run_cell("def sq(x):\n    return x * x\n", store_history=True)
    ipy.run_line_magic("prun", "[sq(i) for i in range(5)]")
    html = ipy.published[-1]["text/html"]
    assert re.search(r"In \[\d+\]:1", html)
    assert "ipython-input" not in html.split("title=")[0]


@pytest.mark.parametrize("line,msg", BAD[:6])
def test_ipython_bad_options(ipy, line, msg):
    from IPython.core.error import UsageError
    with pytest.raises(UsageError) as err:
        ipy.run_line_magic("prun", line)
    assert msg in str(err.value)


def test_ipython_nested_and_errors(ipy):
    from IPython.core.error import UsageError
    ipy.run_cell("def f(n):\n    return n\n")
    with pytest.raises(UsageError, match="already profiling"):
        ipy.run_line_magic("prun", "get_ipython().run_line_magic('prun', 'f(1)')")
    with pytest.raises(ZeroDivisionError):
        ipy.run_line_magic("prun", "f(1); 1/0")
    assert sys.getprofile() is None
    with pytest.raises(UsageError, match="which dump"):
        ipy.run_line_magic("pstats", "")


def test_call_graph_when_every_function_has_a_caller(magic):
    """Code the statement runs may eval other "<string>" code, which pstats
    merges with the statement's own <module>: then nothing is caller-less,
    and the graph starts from the function with the most cumulative time."""
    ns = {}
    exec(compile("def work():\n    for i in range(50):\n        eval('i * 2')\n", "<cell-4>", "exec"), ns)
    st = magic("prun", "-r work()", ns=ns)
    assert all(v[4] for v in st.stats.values())  # every function has a caller
    (svg,) = report_charts(magic.html)
    assert ">&lt;module&gt;" in svg and ">work" in svg
