"""%memit, %mprun and %%mprof: accuracy of the allocator figures, memory_profiler's
layouts and semantics (checked against memory_profiler 0.61 on the same code),
the mprof .dat format (read back with mprof's own reader), errors, and that every
hook is put back afterwards. Functions are defined both as simulated notebook
cells (linecache) and in files."""
import ctypes
import io
import linecache
import os
import re
import sys
import textwrap
import threading

import pytest

from pyrometer_testing import report_charts

try:
    import numpy as np
except ImportError as e:  # forky's 3.13 has no numpy build
    np, _np_error = None, e
# Tests that allocate through NumPy skip, naming it, where this Python has none.
needs_numpy = pytest.mark.skipif(
    np is None, reason="needs numpy, which Python %d.%d cannot import (%s)"
    % (sys.version_info[:2] + ((_np_error if np is None else ""),)))

MiB = 2**20

# Under AddressSanitizer, freed memory sits in a quarantine and stays
# resident: RSS comparisons on frees mean nothing there.
with open("/proc/self/maps") as _maps:
    UNDER_ASAN = "libasan" in _maps.read()

_cells = iter(range(700, 10_000))


def define_cell(src, ns):
    """Compiles src as notebook cell `<cell-N>` (its source in linecache, as
    the kernel does) and runs it in ns. Returns the cell's filename."""
    n = next(_cells)
    name = f"<cell-{n}>"
    src = textwrap.dedent(src)
    linecache.cache[name] = (len(src), None, src.splitlines(True), name)
    exec(compile(src, name, "exec"), ns)
    return name


def define_file(tmp_path, src, modname):
    """Writes src to a module file, imports it and returns the module."""
    import importlib.util

    path = tmp_path / f"{modname}.py"
    path.write_text(textwrap.dedent(src))
    spec = importlib.util.spec_from_file_location(modname, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def line_of(func, text):
    """Absolute line number of the first source line of func containing text."""
    import inspect

    lines, start = inspect.getsourcelines(func)
    for i, l in enumerate(lines):
        if text in l:
            return start + i
    raise AssertionError(f"{text!r} not in {func.__name__}")


def near(value, expected, rel):
    return abs(value - expected) <= rel * abs(expected)


ALLOC_SRC = """\
def helper(n):
    return bytearray(n)

def alloc():
    a = bytearray(50 * 2**20)
    b = np.ones(10_000_000)
    d = helper(8 * 2**20)
    e = [str(i) for i in range(1000)]
    del b
    return a, d, e
"""


# ---- allocator hooks: the PyMem domains, checked with ctypes --------------------


class PyMemAllocatorEx(ctypes.Structure):
    _fields_ = [("ctx", ctypes.c_void_p), ("malloc", ctypes.c_void_p), ("calloc", ctypes.c_void_p),
                ("realloc", ctypes.c_void_p), ("free", ctypes.c_void_p)]


def allocators():
    out = []
    for domain in range(3):  # RAW, MEM, OBJ
        a = PyMemAllocatorEx()
        ctypes.pythonapi.PyMem_GetAllocator(ctypes.c_int(domain), ctypes.byref(a))
        out.append((a.ctx, a.malloc, a.calloc, a.realloc, a.free))
    return out


def hooks_state():
    return (allocators(), sys.gettrace(), sys.getprofile(), np.core.multiarray.get_handler_name() if np else None)


# ---- %mprun -----------------------------------------------------------------------


@needs_numpy
def test_mprun_cell_function_accuracy(magic):
    ns = {"np": np}
    cell = define_cell(ALLOC_SRC, ns)
    before = hooks_state()
    res = magic("mprun", "-r -f alloc alloc()", ns=ns)
    assert hooks_state() == before
    assert len(magic.bundles) == 1
    (fn,) = res.functions
    assert fn["filename"] == cell and fn["name"] == "alloc"
    lines = fn["lines"]
    f = ns["alloc"]
    ba, ones, call, dele = (line_of(f, t) for t in ("bytearray(50", "np.ones", "helper(8", "del b"))

    # bytearray(50 MiB): +50 MiB allocated and net on its line, within 1%.
    assert near(lines[ba]["allocated"], 50 * MiB, 0.01)
    assert near(lines[ba]["net"], 50 * MiB, 0.01)
    # np.ones(10_000_000): 80,000,000 bytes of NumPy data = 76.29 MiB, within 2%,
    # and `del` gives the matching negative.
    assert near(lines[ones]["net"], 80_000_000, 0.02)
    assert near(lines[dele]["net"], -80_000_000, 0.02)
    assert near(lines[dele]["freed"], lines[ones]["net"], 0.001)
    # The helper's allocation is charged to the line that calls it.
    assert near(lines[call]["net"], 8 * MiB, 0.01)
    assert line_of(f, "helper(8") not in range(1, 3)  # helper's own lines are not shown
    # Peak: the heap's rise within the line.
    assert near(lines[ones]["peak"], 80_000_000, 0.02)
    # RSS columns: the bytearray is written (zeroed), so RSS grows by ~50 MiB.
    assert near(lines[ba]["increment"], 50, 0.05)
    assert lines[ba]["occurrences"] == 1

    text = magic.text
    assert text.startswith(f"Filename: {cell}\n\n")
    header = text.splitlines()[2]
    assert header.startswith("Line #    Mem usage    Increment  Occurrences")
    # memory_profiler's columns, then the allocator's Net (Allocated, Freed and
    # Peak are in the HTML and -r): a terminal's 100 columns hold it.
    assert header.split() == ["Line", "#", "Mem", "usage", "Increment", "Occurrences",
                              "Net", "Line", "Contents"]
    assert max(len(l) for l in text.splitlines()[1:]) <= 100
    row = next(l for l in text.splitlines() if l.lstrip().startswith(f"{ba} "))
    assert "+50.00 MiB" in row and row.rstrip().endswith("a = bytearray(50 * 2**20)")
    row = next(l for l in text.splitlines() if l.lstrip().startswith(f"{dele} "))
    assert "-76.29 MiB" in row
    html = magic.html
    n = cell[len("<cell-"):-1]
    assert f"In [{n}]" in html and "<table" in html
    # Lines that hold memory are marked, those that release it too.
    # Lines whose net allocation passes +-64 KiB are shaded, and the legend
    # says that (not that they "hold" memory: a later line may free it).
    up = r'<tr class="mp-up"><td style="[^"]*background:rgba\(232,116,59,0.18\)[^"]*">%d</td>'
    down = r'<tr class="mp-down"><td style="[^"]*background:rgba\(76,143,214,0.18\)[^"]*">%d</td>'
    assert re.search(up % ba, html)
    assert re.search(down % dele, html)
    assert not re.search(r'<tr class="mp-up"><td[^>]*>%d</td>' % (ba - 1), html)
    assert "Shaded: a Net of at least" in html and "hold" not in html
    assert "<style" not in html and "var(--jp-" not in html
    # Source cells keep their indentation and wrap.
    assert re.search(r'white-space:pre-wrap[^"]*">    a = bytearray\(50 \* 2\*\*20\)</td>', html)


def test_mprun_list_of_small_ints_on_the_comprehension_line(magic):
    ns = {}
    define_cell("""\
        def ints():
            x = 1
            c = [i * 2 for i in range(10**6)]
            return c
        """, ns)
    res = magic("mprun", "-r -f ints ints()", ns=ns)
    lines = res.functions[0]["lines"]
    comp = line_of(ns["ints"], "for i in")
    # Exactly: one 32-byte int per value above the small-int cache (0..256;
    # 0..1024 from 3.15, found here by asking the interpreter), plus the
    # list's final capacity of pointers and its 56-byte object.
    top = 0
    while int(str(top + 1)) is int(str(top + 1)):
        top += 1
    cap, size = 0, 0
    for _ in range(10**6):
        size += 1
        if size > cap:
            cap = (size + (size >> 3) + 6) & ~3
    expected = 32 * (10**6 - len(range(0, top + 1, 2))) + 8 * cap + 56
    # (Up to a few hundred bytes of interpreter bookkeeping: the line tables
    # built for tracing, the comprehension's function object. From 3.14 up
    # to 100 freed ints wait on a free list, Py_ints_MAXFREELIST: those the
    # comprehension takes from it cost no allocation.)
    slack = 32 * 100 if sys.version_info >= (3, 14) else 0
    assert expected - slack - 1024 <= lines[comp]["net"] <= expected + 1024
    assert expected - slack - 1024 <= lines[comp]["peak"] <= expected + 1024
    assert sum(abs(l["net"]) for ln, l in lines.items() if ln != comp) <= 1024
    # The comprehension's iterations are line events, as in memory_profiler:
    # up to 3.11 in the comprehension's own frame (n + 3 of them); from 3.12,
    # where comprehensions are inlined (PEP 709), as sys.settrace reports them,
    # one per jump back to the line's start (n + 1).
    assert lines[comp]["occurrences"] == 10**6 + (3 if sys.version_info < (3, 12) else 1)


@needs_numpy
def test_mprun_matches_memory_profiler(tmp_path, magic):
    """Same file function through memory_profiler and %mprun: same lines, same
    occurrences, same RSS increments on the big lines, same text layout."""
    from memory_profiler import LineProfiler, show_results

    mod = define_file(tmp_path, "import numpy as np\n\n" + ALLOC_SRC + """
def loop(n):
    out = []
    for i in range(n):
        s = str(i) * 10
        out.append(s)
    return out
""", "mp_ref_mod")

    def reference(func, *args):
        prof = LineProfiler()
        prof.add_function(func)
        prof.enable_by_count()
        try:
            func(*args)
        finally:
            prof.disable_by_count()
        s = io.StringIO()
        show_results(prof, s)
        return s.getvalue()

    def rows(text):
        out = {}
        for l in text.splitlines():
            m = re.match(r"\s*(\d+)\s+(-?[\d.]+) MiB\s+(-?[\d.]+) MiB\s+(\d+)", l)
            if m:
                out[int(m.group(1))] = (float(m.group(2)), float(m.group(3)), int(m.group(4)))
            elif re.match(r"\s*(\d+)\s*", l) and l.split()[0].isdigit():
                out[int(l.split()[0])] = None
        return out

    for func, args in ((mod.alloc, ()), (mod.loop, (300,))):
        ref = reference(func, *args)
        magic("mprun", "-f func func(*args)", ns={"func": func, "args": args})
        ours = magic.text
        # Same first lines: Filename, blank, header start.
        assert ours.splitlines()[0] == ref.splitlines()[0] == f"Filename: {func.__code__.co_filename}"
        assert ref.splitlines()[2] == "Line #    Mem usage    Increment  Occurrences   Line Contents"
        assert ours.splitlines()[2].startswith("Line #    Mem usage    Increment  Occurrences ")
        r, o = rows(ref), rows(ours)
        assert sorted(r) == sorted(o)  # the same source lines are listed
        for ln in r:
            assert (r[ln] is None) == (o[ln] is None), ln
            if r[ln] is not None and ln != min(r):
                assert r[ln][2] == o[ln][2], (ln, r[ln], o[ln])  # occurrences
                # Mem usage's column layout: 12 wide, one decimal, " MiB".
        # The memory-heavy lines increase RSS alike (memory_profiler's def line
        # counts the whole RSS as an increment on the first call; ours does not).
        # Only blocks above glibc's largest mmap threshold (32 MiB) are sure
        # to be fresh pages on every run.
        if func is mod.alloc and not UNDER_ASAN:
            for text, mib in (("bytearray(50", 50.0), ("np.ones", 76.3), ("del b", -76.3)):
                ln = line_of(func, text)
                assert abs(r[ln][1] - mib) < 1.5 and abs(o[ln][1] - mib) < 1.5, (text, r[ln], o[ln])


def test_mprun_helper_and_nested_targets(magic):
    ns = {}
    define_cell("""\
        def leaf(n):
            return [0] * n

        def mid():
            x = leaf(10**6)
            y = bytearray(3 * 2**20)
            return x, y

        def top():
            a = mid()
            b = leaf(2 * 10**6)
            return a, b
        """, ns)
    # Only `top` profiled: everything below is charged to top's calling lines.
    res = magic("mprun", "-r -f top top()", ns=ns)
    lines = res.functions[0]["lines"]
    a, b = line_of(ns["top"], "a = mid()"), line_of(ns["top"], "b = leaf")
    assert near(lines[a]["net"], 8 * 10**6 + 3 * MiB, 0.001)
    assert near(lines[b]["net"], 16 * 10**6, 0.001)
    # Both profiled: an allocation goes to the innermost profiled line only.
    res = magic("mprun", "-r -f top -f mid top()", ns=ns)
    top, mid = res.functions
    assert mid["name"] == "mid"
    assert near(mid["lines"][line_of(ns["mid"], "x = leaf")]["net"], 8 * 10**6, 0.001)
    assert near(mid["lines"][line_of(ns["mid"], "y = bytearray")]["net"], 3 * MiB, 0.001)
    assert abs(top["lines"][a]["net"]) < 4096
    assert near(top["lines"][b]["net"], 16 * 10**6, 0.001)


def test_mprun_options_T_and_statement_error(tmp_path, magic):
    ns = {}
    define_cell("""\
        def boom():
            keep = bytearray(5 * 2**20)
            raise KeyError("late")
        """, ns)
    before = hooks_state()
    out = tmp_path / "prof.txt"
    with pytest.raises(KeyError, match="late"):
        magic("mprun", f"-T {out} -f boom boom()", ns=ns)
    # The figures gathered so far were shown, then the error propagated.
    assert hooks_state() == before
    assert "+5.00 MiB" in magic.text
    assert out.read_text().startswith("Filename: <cell-")
    assert "+5.00 MiB" in out.read_text()
    # No -r: returns None.
    assert magic("mprun", "-f boom 1", ns=ns) is None


# ---- %memit -------------------------------------------------------------------------


def test_memit_temporary_peak_and_net(magic):
    from memory_profiler import memory_usage

    ns = {}
    before = hooks_state()
    res = magic("memit", "-o len(bytearray(200 * 2**20))", ns=ns)
    assert hooks_state() == before
    assert ns == {}  # the namespace is left untouched
    # The allocator's peak is exact; the RSS peak comes from the kernel's
    # VmHWM, whose per-CPU counters may lag by a few dozen pages.
    assert res.heap_peak >= 200 * MiB and near(res.heap_peak, 200 * MiB, 0.001)
    assert res.increment >= 199.5 and res.peak >= res.baseline + 199.5
    assert abs(res.heap_net) < 64 * 1024
    assert res.repeat == 1 and res.mem_usage == [res.peak] and res.include_children is False
    first, second = magic.text.splitlines()
    assert re.fullmatch(r"peak memory: \d+\.\d\d MiB, increment: (\d+\.\d\d) MiB", first)
    # (a retained amount that rounds to zero is 0.00, never -0.00)
    assert re.fullmatch(r"heap peak: 200\.0\d MiB above baseline, net retained: (0\.00|[+-]0\.0[1-9]) MiB", second)
    assert str(res) == magic.text and repr(res).startswith("<MemitResult : peak memory:")
    # memory_profiler's own measurement of the same statement agrees.
    # (Its baseline is taken right before, as its %memit does; it samples
    # from another process every 10 ms, so it may catch less of the peak.)
    base = memory_usage(-1, interval=0.01, timeout=0.02)[0]
    ref = memory_usage((exec, ("len(bytearray(200 * 2**20))", {})), max_usage=True, interval=0.01)
    assert 150 <= ref - base <= res.increment + 5


@needs_numpy
def test_memit_cell_mode_repeat_quiet(magic):
    ns = {"np": np}
    # %%memit: the first line is setup (not measured), the body is measured.
    res = magic("memit", "-o -r 3 big = np.ones(5 * 10**6)", "small = big[:10].copy()\n", ns=ns)
    assert ns["big"].shape == (5 * 10**6,)
    assert res.repeat == 3 and len(res.mem_usage) == 3
    assert res.heap_peak < 1 * MiB  # the setup's 38 MiB are not charged
    assert "increment:" in magic.text
    # -q: nothing shown, and without -o nothing returned.
    assert magic("memit", "-q x = 1", ns=ns) is None
    assert magic.bundles == []
    # -t / -i / -c go through the sampling thread.
    res = magic("memit", "-o -c -t 5 -i 0.005 bytearray(30 * 2**20)", ns={})
    assert res.timeout == 5.0 and res.interval == 0.005 and res.include_children is True
    assert near(res.heap_peak, 30 * MiB, 0.01)


def test_memit_statement_raises(magic):
    before = hooks_state()
    with pytest.raises(ZeroDivisionError):
        magic("memit", "x = bytearray(10 * 2**20); 1 / 0", ns={})
    assert hooks_state() == before
    assert "peak memory:" in magic.text and "raised in run 1 of 1" in magic.text
    assert "(the statement raised in run 1 of 1)" in magic.html


@needs_numpy
def test_memit_counts_other_threads_and_numpy(magic):
    ns = {"np": np, "threading": threading}
    res = magic("memit", "-o t = threading.Thread(target=lambda: np.zeros(4 * 10**6).sum()); "
                "t.start(); t.join()", ns=ns)
    # np.zeros in another thread: its context has no handler of ours, so the
    # heap figure stays small; the RSS peak is unaffected (calloc'ed pages).
    assert res.heap_peak < 32 * 10**6
    res = magic("memit", "-o np.ones(4 * 10**6).sum()", ns=ns)
    assert near(res.heap_peak, 32 * 10**6, 0.01)


# ---- %%mprof --------------------------------------------------------------------------


@needs_numpy
def test_mprof_dat_file_read_by_mprof(tmp_path, magic):
    import mprof

    ns = {"np": np}
    define_cell("""\
        def grow(n):
            keep = bytearray(n * 2**20)
            x = np.ones(2 * 10**6)
            return keep

        def driver():
            a = grow(20)
            b = grow(40)
            return a, b
        """, ns)
    dat = tmp_path / "run.dat"
    before = hooks_state()
    magic("mprof", f"-f grow -f driver -i 0.005 --dat {dat}", "r = driver()\ndel r\n", ns=ns)
    assert hooks_state() == before
    prof = mprof.read_mprofile_file(str(dat))
    assert prof["cmd_line"].startswith("%%mprof -f grow")
    assert len(prof["mem_usage"]) == len(prof["timestamp"]) >= 2
    assert prof["timestamp"] == sorted(prof["timestamp"])
    ft = prof["func_timestamp"]
    assert sorted(ft) == ["__main__.driver", "__main__.grow"]
    assert len(ft["__main__.grow"]) == 2 and len(ft["__main__.driver"]) == 1
    (d,) = ft["__main__.driver"]
    g1, g2 = ft["__main__.grow"]
    assert d[4] == 0 and g1[4] == 1 and g2[4] == 1  # stack levels
    assert d[0] <= g1[0] <= g1[1] <= g2[0] <= g2[1] <= d[1]  # nested spans
    assert g2[3] - g2[2] > 35  # RSS grew by ~40 MiB across the second call
    text = magic.text
    assert "__main__.grow: 2 calls" in text
    # Heap peak: 20 + 40 MiB kept, plus the second call's 16 MB array.
    assert re.search(r"Python heap \(\+ NumPy\): peak \+75\.2\d MiB above start, net retained (0\.00|[+-]0\.0[1-9]) MiB", text)
    peak = float(re.search(r"peak ([\d.]+) MiB \(", text).group(1))
    assert peak >= max(max(prof["mem_usage"]), g2[3]) - 0.01
    assert f"written to {dat}" in text
    (svg,) = report_charts(magic.html)
    assert "<polyline" in svg and "__main__.grow" in svg and "var(" not in svg
    # And `mprof plot` draws it, function brackets included.
    try:
        import matplotlib
    except ImportError as e:  # forky builds PIL, which matplotlib needs, not for 3.15
        pytest.skip("the .dat file checks passed; the plot needs matplotlib, which Python %d.%d "
                    "cannot import (%s)" % (sys.version_info[:2] + (e,)))
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import types
    plt.figure()
    mprof.plot_file(str(dat), options=types.SimpleNamespace(xlim=None, slope=False))
    labels = [t.get_text() for t in plt.gca().legend().get_texts()]
    # (mprof shortens the names to what tells them apart.)
    assert sum("grow" in l for l in labels) == 2 and sum("driver" in l for l in labels) == 1
    png = tmp_path / "plot.png"
    plt.savefig(png)
    plt.close("all")
    assert png.stat().st_size > 1000


def test_mprof_statement_raises(magic):
    before = hooks_state()
    with pytest.raises(RuntimeError, match="stop"):
        magic("mprof", "", "x = bytearray(10 * 2**20)\nraise RuntimeError('stop')\n", ns={})
    assert hooks_state() == before
    assert "RSS:" in magic.text and len(report_charts(magic.html)) == 1
    note = "*** The cell raised; the chart and figures run up to that point."
    assert note in magic.text and note in magic.html


# ---- errors -------------------------------------------------------------------------


def test_errors(pyrometer, magic):
    UsageError = pyrometer.UsageError
    ns = {"np": np}
    define_cell("""\
        def f():
            return 1

        class K:
            pass
        """, ns)
    before = hooks_state()
    with pytest.raises(UsageError, match=r"^%mprun: say which functions to profile with -f") as e:
        magic("mprun", "f()", ns=ns)
    assert "Usage: %mprun -f func" in str(e.value)
    with pytest.raises(UsageError, match=r"^%mprun: -f K is a type, not a Python function"):
        magic("mprun", "-f K f()", ns=ns)
    with pytest.raises(UsageError, match=r"^%mprun: -f len is a builtin_function_or_method"):
        magic("mprun", "-f len f()", ns=ns)
    with pytest.raises(UsageError, match=r"^%mprun: could not find function nope \(NameError"):
        magic("mprun", "-f nope f()", ns=ns)
    with pytest.raises(UsageError, match=r"^%mprun: give a statement"):
        magic("mprun", "-f f", ns=ns)
    with pytest.raises(UsageError, match=r"^%mprun: could not find function f\( \(SyntaxError"):
        magic("mprun", "-f f( f()", ns=ns)
    bare = {"f": ns["f"]}  # a namespace without __builtins__ is left as it was
    magic("mprun", "-f f f()", ns=bare)
    assert list(bare) == ["f"]
    with pytest.raises(UsageError, match=r"^%memit: unknown option -z"):
        magic("memit", "-z f()", ns=ns)
    with pytest.raises(UsageError, match=r"^%memit: expected an integer >= 1, got 'x'"):
        magic("memit", "-r x f()", ns=ns)
    with pytest.raises(UsageError, match=r"^%memit: give a statement"):
        magic("memit", "-q", ns=ns)
    with pytest.raises(UsageError, match=r"^%%mprof is a cell magic"):
        magic("mprof", "x = 1", ns=ns)
    with pytest.raises(UsageError, match=r"^%%mprof: option --dat needs a value"):
        magic("mprof", "--dat", "x = 1", ns=ns)
    # Nested memory magics: the inner one refuses, the outer one shows what it
    # had and re-raises; everything is restored.
    ns["inner"] = lambda: pyrometer.MAGICS["memit"][1]("x = 1", None, {}, lambda b: None)
    with pytest.raises(UsageError, match=r"^%memit: another memory magic is already running"):
        magic("mprun", "-f f inner()", ns=ns)
    with pytest.raises(UsageError, match=r"cannot be nested"):
        magic("memit", "inner()", ns=ns)
    with pytest.raises(UsageError, match=r"^%memit: another memory magic"):
        magic("mprof", "", "inner()", ns=ns)
    assert hooks_state() == before
    # And it all still works afterwards.
    assert magic("memit", "-o bytearray(2**20)", ns=ns).heap_peak >= MiB


def test_trace_and_profile_functions_are_restored(magic):
    ns = {}
    define_cell("""\
        def f():
            return [0] * 1000
        """, ns)
    seen = []

    def tracer(frame, event, arg):
        return None

    def profiler(frame, event, arg):
        seen.append(event)

    sys.settrace(tracer)
    sys.setprofile(profiler)
    try:
        magic("mprun", "-f f f()", ns=ns)
        magic("mprof", "-f f", "f()\n", ns=ns)
        assert sys.gettrace() is tracer and sys.getprofile() is profiler
    finally:
        sys.settrace(None)
        sys.setprofile(None)


# ---- through IPython (%load_ext pyrometer) ----------------------------------------------


@needs_numpy
def test_ipython_front_door(ipy, tmp_path):
    from IPython.core.error import UsageError

    ipy.run_cell("import numpy as np")
    r = ipy.run_cell(
        "def ipy_alloc():\n"
        "    a = bytearray(50 * 2**20)\n"
        "    b = np.ones(10_000_000)\n"
        "    del b\n"
        "    return a\n")
    assert r.success
    before = hooks_state()
    r = ipy.run_cell("%mprun -r -f ipy_alloc ipy_alloc()")
    assert r.success, r.error_in_exec
    assert hooks_state() == before
    fn = r.result.functions[0]
    assert fn["filename"].startswith("<ipython-input-")
    lines = fn["lines"]
    first = min(lines)
    assert near(lines[first + 1]["net"], 50 * MiB, 0.01)
    assert near(lines[first + 2]["net"], 80_000_000, 0.02)
    assert near(lines[first + 3]["net"], -80_000_000, 0.02)
    bundle = ipy.published[-1]
    assert bundle["text/plain"].startswith("Filename: <ipython-input-")
    assert re.search(r"In \[\d+\]", bundle["text/html"])

    r = ipy.run_cell("%memit -o len(bytearray(200 * 2**20))")
    assert r.success and r.result.heap_peak >= 200 * MiB and abs(r.result.heap_net) < 64 * 1024
    assert r.result.increment >= 199.5
    r = ipy.run_cell("%%memit tmp = list(range(1000))\nlen(tmp * 1000)\n")
    assert r.success and "peak memory:" in ipy.published[-1]["text/plain"]
    dat = tmp_path / "ipy.dat"
    r = ipy.run_cell(f"%%mprof -f ipy_alloc --dat {dat}\nipy_alloc()\n")
    assert r.success and dat.exists()

    r = ipy.run_cell("%mprun ipy_alloc()")
    assert isinstance(r.error_in_exec, UsageError)
    assert str(r.error_in_exec).startswith("%mprun: say which functions")
    r = ipy.run_cell("%mprun -f np ipy_alloc()")
    assert isinstance(r.error_in_exec, UsageError) and "is a module" in str(r.error_in_exec)
    r = ipy.run_cell("%mprun -f ipy_alloc get_ipython().run_line_magic('memit', 'x=1')")
    assert isinstance(r.error_in_exec, UsageError) and "cannot be nested" in str(r.error_in_exec)
    assert hooks_state() == before


def test_mprun_generators_recursion_and_caught_exceptions(magic):
    ns = {}
    define_cell("""\
        def gen(n):
            for i in range(n):
                block = bytearray(2**20)
                yield block

        def rec(d):
            here = bytearray(2**20)
            if d:
                return [here] + rec(d - 1)
            return [here]

        def guarded():
            try:
                rec(0)[5]
            except IndexError:
                pass
            keep = bytearray(3 * 2**20)
            return keep

        def main():
            blocks = list(gen(4))
            deep = rec(5)
            g = guarded()
            return blocks, deep, g
        """, ns)
    res = magic("mprun", "-r -f gen -f rec -f guarded -f main main()", ns=ns)
    by = {f["name"]: f["lines"] for f in res.functions}
    src = lambda name, text: line_of(ns[name], text)  # noqa: E731
    # The generator's line runs once per item (resumed frames are traced).
    assert by["gen"][src("gen", "bytearray")]["occurrences"] == 4
    assert near(by["gen"][src("gen", "bytearray")]["net"], 4 * MiB, 0.001)
    # Recursion: each level's block is charged to its own (same) line, once:
    # six levels under main, one under guarded (freed in guarded's line).
    assert by["rec"][src("rec", "here = ")]["occurrences"] == 6 + 1
    assert near(by["rec"][src("rec", "here = ")]["net"], 7 * MiB, 0.001)
    assert near(by["guarded"][src("guarded", "rec(0)")]["freed"], MiB, 0.01)
    # A caught exception unwinds rec's frame; attribution continues after.
    assert near(by["guarded"][src("guarded", "keep = ")]["net"], 3 * MiB, 0.001)
    # main's lines hold only what was not charged to a profiled callee.
    assert abs(by["main"][src("main", "deep = rec")]["net"]) < 4096


def test_memit_with_allocating_threads(magic):
    """Other threads allocate through the raw and object domains while the
    statement runs: nothing crashes and the figures stay consistent."""
    import time

    stop = threading.Event()

    def worker():
        while not stop.is_set():
            xs = [bytearray(100) for _ in range(200)]
            del xs
            time.sleep(0)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(5):
            res = magic("memit", "-o x = [str(i) for i in range(20000)]; del x", ns={})
            assert res.heap_peak >= 20000 * 40
            assert abs(res.heap_net) < 2 * MiB
    finally:
        stop.set()
        for t in threads:
            t.join()


def test_memit_children_and_timeout(magic):
    child = ("import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', "
             "'import time; b = bytearray(80 * 2**20); time.sleep(0.4)']); p.wait()")
    # -c adds the children's RSS (sampled): the child's 80 MiB show up...
    res = magic("memit", "-o -c -i 0.01 " + child, ns={})
    assert res.increment >= 70, res
    # ...and without -c they do not.
    res = magic("memit", "-o " + child, ns={})
    assert res.increment < 20, res
    # -t: measure the first T seconds only (the statement still runs to the end).
    ns = {}
    res = magic("memit", "-o -t 0.1 import time; time.sleep(0.3); x = bytearray(40 * 2**20)", ns=ns)
    assert len(ns["x"]) == 40 * MiB
    assert res.heap_peak < 1 * MiB and res.increment < 20, res


# ---- through the kernel (functions defined in cells) ---------------------------------


def _kernel_run(kc, code, timeout=60):
    """Runs code in the kernel; returns (reply content, display datas, result datas)."""
    msg_id = kc.execute(code)
    reply = kc.get_shell_msg(timeout=timeout)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=timeout)
    shown, results = [], []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "display_data":
            shown.append(msg["content"]["data"])
        elif msg["msg_type"] == "execute_result":
            results.append(msg["content"]["data"])
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return reply["content"], shown, results


@needs_numpy
def test_through_the_kernel(tmp_path, monkeypatch):
    import json

    from conftest import BUILD
    from jupyter_client.manager import start_new_kernel

    kernel = os.path.join(BUILD, "kernel", "pyrometer-kernel")
    if not os.path.exists(kernel):
        pytest.skip("the kernel is not built")
    spec = tmp_path / "jupyter" / "kernels" / "pyrometer-memtest"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [kernel, "-f", "{connection_file}"], "display_name": "pyrometer (memprof test)",
        "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("PYROMETER_HISTORY", str(tmp_path / "history.sqlite"))
    km, kc = start_new_kernel(kernel_name="pyrometer-memtest", startup_timeout=30)
    try:
        reply, _, _ = _kernel_run(kc, ALLOC_SRC.replace("def helper", "import numpy as np\n\ndef helper"))
        assert reply["status"] == "ok"
        cell = reply["execution_count"]
        reply, shown, _ = _kernel_run(kc, "%mprun -f alloc alloc()")
        assert reply["status"] == "ok", reply
        text = shown[0]["text/plain"]
        assert text.startswith(f"Filename: <cell-{cell}>")
        rows = {l.split("   ")[-1].strip(): l for l in text.splitlines()}
        assert "+50.00 MiB" in rows["a = bytearray(50 * 2**20)"]
        assert "+76.29 MiB" in rows["b = np.ones(10_000_000)"]
        assert "-76.29 MiB" in rows["del b"]
        assert "+8.00 MiB" in rows["d = helper(8 * 2**20)"]
        assert f"In [{cell}]" in shown[0]["text/html"]

        reply, shown, _ = _kernel_run(kc, "r = %memit -o len(bytearray(200 * 2**20))\n"
                                          "r.heap_peak >= 200 * 2**20, abs(r.heap_net) < 65536, "
                                          "r.increment >= 199.5")
        assert reply["status"] == "ok", reply
        assert "peak memory:" in shown[0]["text/plain"]
        # Shown by its repr, natively: showing it imports nothing of IPython.
        reply, _, results = _kernel_run(kc, "r")
        assert results[0]["text/plain"].startswith("<MemitResult : peak memory: ")
        reply, _, results = _kernel_run(kc, "import sys; 'IPython' in sys.modules")
        assert results[0]["text/plain"] == "False"
        dat = tmp_path / "k.dat"
        reply, shown, _ = _kernel_run(kc, f"%%mprof -f alloc --dat {dat}\nx = alloc()\ndel x\n")
        assert reply["status"] == "ok", reply
        import mprof
        assert list(mprof.read_mprofile_file(str(dat))["func_timestamp"]) == ["__main__.alloc"]

        reply, _, _ = _kernel_run(kc, "%mprun alloc()")
        assert reply["ename"] == "UsageError" and reply["evalue"].startswith("%mprun: say which")
        reply, _, _ = _kernel_run(kc, "%mprun -f np alloc()")
        assert reply["ename"] == "UsageError" and "is a module" in reply["evalue"]
        reply, _, results = _kernel_run(kc, "len(alloc()[0]) // 2**20")
        assert results[0]["text/plain"] == "50"  # the kernel is intact
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the frame-evaluation gate is for 3.11")
def test_mprun_callees_run_untraced(magic):
    """Only target frames are traced: a tracing interpreter creates a 72-byte
    bound method for every list.append call (for the c_call event); those
    would show up in the calling line's allocations if the helper were traced."""
    ns = {}
    define_cell("""\
        def helper(n):
            out = []
            for i in range(n):
                out.append(None)
            return out

        def caller():
            r = helper(5000)
            return r

        def traced():
            out = []
            for i in range(5000):
                out.append(None)
            return out
        """, ns)
    res = magic("mprun", "-r -f caller -f traced caller(); traced()", ns=ns)
    by = {f["name"]: f["lines"] for f in res.functions}
    line = by["caller"][line_of(ns["caller"], "helper(5000)")]
    assert near(line["net"], 8 * 5000, 0.2)
    # The loop's ints (32 bytes each above 256) and the list's growth only.
    assert line["allocated"] < 5000 * 32 + 80_000
    # In a traced (target) frame the interpreter's temporaries are there.
    append = by["traced"][line_of(ns["traced"], "out.append")]
    assert append["allocated"] > 5000 * 48


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring is 3.12+")
def test_tool_id_held_by_another_tool(magic, pyrometer):
    """%mprun and %%mprof take sys.monitoring tool id 4, say who holds it when
    another tool does, and give it back."""
    ns = {}
    define_cell("""\
        def f():
            return [0] * 10
        """, ns)
    sys.monitoring.use_tool_id(4, "coverage")
    try:
        for name, line, cell in (("mprun", "-f f f()", None), ("mprof", "-f f", "f()\n")):
            with pytest.raises(pyrometer.UsageError) as e:
                magic(name, line, cell=cell, ns=ns)
            assert str(e.value).startswith(
                f"%{'%' if cell else ''}{name}: sys.monitoring tool id 4 is held by 'coverage'")
    finally:
        sys.monitoring.free_tool_id(4)
    res = magic("mprun", "-r -f f f()", ns=ns)
    assert res.functions[0]["lines"][line_of(ns["f"], "return")]["occurrences"] == 1
    assert sys.monitoring.get_tool(4) is None


def test_fork_while_profiling(magic):
    """A statement that forks (multiprocessing's default on Linux) while
    another thread allocates: the child neither deadlocks nor crashes."""
    import multiprocessing as mp
    import time

    stop = threading.Event()

    def worker():
        while not stop.is_set():
            bytes(bytearray(100_000))  # raw-domain blocks, taken under the lock
            time.sleep(0)

    t = threading.Thread(target=worker)
    t.start()
    ctx = mp.get_context("fork")
    try:
        ns = {"ctx": ctx, "len": len}
        res = magic("memit", "-o ps = [ctx.Process(target=len, args=('x',)) for _ in range(4)]\n"
                    "[p.start() for p in ps]; [p.join(10) for p in ps]\n"
                    "codes = [p.exitcode for p in ps]", ns=ns)
        assert ns["codes"] == [0, 0, 0, 0]
        assert res.repeat == 1
    finally:
        stop.set()
        t.join()


def test_unwritable_output_files(tmp_path, magic):
    ns = {}
    define_cell("""\
        def f():
            return bytearray(2**20)
        """, ns)
    bad = tmp_path / "no-such-dir" / "out"
    with pytest.raises(FileNotFoundError):
        magic("mprun", f"-T {bad} -f f f()", ns=ns)
    assert "+1.00 MiB" in magic.text  # the table was shown first
    with pytest.raises(FileNotFoundError):
        magic("mprof", f"--dat {bad}", "f()\n", ns=ns)
    assert len(report_charts(magic.html)) == 1


# ---- -f on wrapped functions: the same in every magic ---------------------------------

WRAPPED_SRC = """\
    import functools

    def logged(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            return func(*args, **kwargs)
        return wrapper

    @logged
    def body(n):
        a = bytearray(n)
        return len(a)

    @functools.lru_cache
    def cached(n):
        return bytearray(n)
    """


def test_mprun_f_on_a_wraps_decorated_function_profiles_its_body(magic):
    ns = {}
    define_cell(WRAPPED_SRC, ns)
    res = magic("mprun", "-r -f body body(2**20)", ns=ns)
    (fn,) = res.functions
    # The body's lines, as %lprun -f shows them, not the wrapper's.
    assert fn["name"] == "body" and fn["first_line"] == line_of(ns["body"].__wrapped__, "@logged")
    a = line_of(ns["body"].__wrapped__, "bytearray(n)")
    assert near(fn["lines"][a]["allocated"], 2**20, 0.01)
    magic("mprof", "-f body", "body(2**20)\n", ns=ns)
    assert "__main__.body: 1 call" in magic.text


@pytest.mark.parametrize("name,line,cell", [("mprun", "-f cached cached(10)", None),
                                            ("mprof", "-f cached", "cached(10)\n")])
def test_f_on_lru_cache_suggests_wrapped(magic, pyrometer, name, line, cell):
    ns = {}
    define_cell(WRAPPED_SRC, ns)
    with pytest.raises(pyrometer.UsageError) as err:
        magic(name, line, cell, ns=ns)
    assert "-f cached is a functools._lru_cache_wrapper (a C wrapper around the Python " \
           "function cached" in str(err.value)
    assert "profile the function it wraps: -f cached.__wrapped__" in str(err.value)
    res = magic("mprun", "-r -f cached.__wrapped__ cached(10)", ns=ns)
    assert res.functions[0]["name"] == "cached"


def test_mprun_statement_raises_says_so_in_text_and_html(magic):
    ns = {}
    define_cell("""\
        def boom():
            a = bytearray(2**20)
            raise ValueError("boom")
        """, ns)
    with pytest.raises(ValueError, match="boom"):
        magic("mprun", "-f boom boom()", ns=ns)
    note = "*** The statement raised; these are the figures up to that point."
    assert note in magic.text and note in magic.html
    assert "+1.00 MiB" in magic.text  # the table up to that point
