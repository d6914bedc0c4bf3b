"""The option parser every pyrometer magic shares (ext/options.c).

Each case runs a real magic through pyrometer.MAGICS and checks what the
options did (the value the magic returned, the files it wrote, the text it
showed) or the exact UsageError it raised.
"""
import os
import pstats

import pytest

SRC = "def f(n):\n    return sum(range(n))\n\ndef g(n):\n    return f(n) + 1\n"


@pytest.fixture
def ns():
    ns = {}
    exec(compile(SRC, "<options-test>", "exec"), ns)
    return ns


def first_line(err):
    return str(err.value).splitlines()[0]


# ---- accepted forms ---------------------------------------------------------------


@pytest.mark.parametrize("line", [
    "-r -l 3 -s cumtime g(100)",
    "-rq -scumtime -l3 g(100)",
    "-r -s cumtime -l 3 -- g(100)",
    "-r   -s 'cumtime'   -l \"3\"   g(100)",
])
def test_prun_forms(magic, ns, line):
    st = magic("prun", line, ns=ns)
    assert isinstance(st, pstats.Stats)
    assert "due to restriction <3>" in magic.text or magic.bundles == []
    assert ns["g"](1) == 1


def test_prun_cell_options_on_first_line(magic, ns, tmp_path):
    out = tmp_path / "t.txt"
    assert magic("prun", "-q -T %s" % out, "x = g(10)\n", ns=ns) is None
    assert ns["x"] == 46 and "function calls" in out.read_text()


def test_prun_threads_and_repeated_keys(magic, ns):
    st = magic("prun", "--threads -r -s calls -s name g(10)", ns=ns)
    assert st.sort_type == "call count, function name"


def test_lprun_repeatable_f(magic, ns):
    st = magic("lprun", "-f f -f g -r g(10)", ns=ns)
    names = sorted(k[2] for k in st.timings)
    assert names == ["f", "g"]


def test_lprun_expression_target(magic, ns):
    ns["d"] = {"a b": ns["f"]}
    st = magic("lprun", "-r -f d['a b'] f(3)", ns=ns)
    assert [k[2] for k in st.timings] == ["f"]


def test_lprun_unit_and_clustered(magic, ns):
    st = magic("lprun", "-rz -u 1e-3 -ff g(2)", ns=ns)
    assert "Timer unit: 0.001 s" in st.text


def test_memit_values(magic, ns):
    res = magic("memit", "-o -q -r 3 -t 5 -i 0.02 f(10)", ns=ns)
    assert (res.repeat, res.timeout, res.interval) == (3, 5.0, 0.02)
    res = magic("memit", "-oqr2 f(10)", ns=ns)
    assert res.repeat == 2 and magic.bundles == []


def test_mprof_dat_forms(magic, ns, tmp_path):
    for i, form in enumerate(["--dat %s", "--dat=%s"]):
        dat = tmp_path / ("m%d.dat" % i)
        magic("mprof", (form % dat) + " -i 0.01", "g(1000)\n", ns=ns)
        assert dat.read_text().startswith("CMDLINE")


def test_a_dash_word_that_is_not_an_option_starts_the_statement(magic, ns):
    magic("memit", "-q -1", ns=ns)
    st = magic("prun", "-r -1", ns=ns)
    assert isinstance(st, pstats.Stats)


# ---- errors -------------------------------------------------------------------------


@pytest.mark.parametrize("name,line,cell,msg", [
    ("prun", "-x f(1)", None,
     "%prun: unknown option -x; the options are -l -s -r -T -D -q --threads"),
    ("prun", "--threads=1 f(1)", None, "%prun: option --threads takes no value"),
    ("prun", "-s", None, "%prun: option -s needs a value, e.g. -s cumulative"),
    ("pstats", "--nope", None,
     "%pstats: unknown option --nope; the options are -l -s --callers --callees"),
    ("lprun", "-f", None, "%lprun: option -f needs a function, e.g. %lprun -f f f(10)"),
    ("lprun", "-u -1 -f f f(1)", None,
     "%lprun: -u takes a time unit in seconds, such as -u 1e-3 for milliseconds; got -1"),
    ("lprun", "-qf f f(1)", None,
     "%lprun: unknown option -q; the options are -f -m -u -z -s -T -D -r"),
    ("memit", "-r 0 f(1)", None, "%memit: expected an integer >= 1, got '0'"),
    ("memit", "-t abc f(1)", None, "%memit: expected a number of seconds, got 'abc'"),
    ("memit", "-r", None, "%memit: option -r needs a value"),
    ("mprun", "-f f -Z f(1)", None,
     "%mprun: unknown option -Z; the options are -f -T -r -c"),
    ("mprof", "--dat=", "f(1)\n", "%%mprof: option --dat needs a value"),
    ("mprof", "--data x", "f(1)\n",
     "%%mprof: unknown option --data; the options are -f -i --dat"),
])
def test_errors(magic, pyrometer, ns, name, line, cell, msg):
    with pytest.raises(pyrometer.UsageError) as err:
        magic(name, line, cell, ns=ns)
    assert first_line(err) == msg
    assert magic.bundles == []
