"""The kernel's standard magics through jupyter_client: %time, %timeit (with
the TimeitResult object), %cd, %env, %who, %who_ls, %whos, %reset, %magic,
%matplotlib. Bad options give a UsageError and leave the namespace alone."""
import ast
import base64
import os
import queue
import re
import tempfile

import pytest

from kernel_util import execute, of_type, stdout_of
from pyrometer_testing import needs

UNIT = r"[0-9.]+(?:e[+-]?\d+)? (?:ns|µs|ms|s)"
TIME_OUT = re.compile(rf"^CPU times: user {UNIT}, sys: {UNIT}, total: {UNIT}\nWall time: {UNIT}\n$")


def ok(kc, code, **kw):
    reply, msgs = execute(kc, code, **kw)
    assert reply["content"]["status"] == "ok", reply["content"]
    return msgs


def result(msgs):
    [res] = of_type(msgs, "execute_result")
    return res["content"]["data"]["text/plain"]


def value(kc, expr):
    """The repr of expr in the kernel, evaluated with user_expressions (no
    side effects on the output history)."""
    reply, _ = execute(kc, "", silent=True, store_history=False, user_expressions={"v": expr})
    v = reply["content"]["user_expressions"]["v"]
    assert v["status"] == "ok", v
    return v["data"]["text/plain"]


def usage_error(kc, code):
    reply, msgs = execute(kc, code)
    c = reply["content"]
    assert c["status"] == "error" and c["ename"] == "UsageError", c
    [err] = of_type(msgs, "error")
    assert len(err["content"]["traceback"]) == 1
    assert err["content"]["traceback"][0].startswith("UsageError: ")
    return c["evalue"]


# ---- %time ---------------------------------------------------------------------------


def test_time_expression_returns_value(kernel):
    km, kc = kernel
    msgs = ok(kc, "%time sum(range(10))")
    assert TIME_OUT.match(stdout_of(msgs)), stdout_of(msgs)
    assert result(msgs) == "45"


def test_time_statement_runs_in_user_namespace(kernel):
    km, kc = kernel
    msgs = ok(kc, "%time tvar = 6 * 7")
    assert TIME_OUT.match(stdout_of(msgs))
    assert of_type(msgs, "execute_result") == []
    assert value(kc, "tvar") == "42"


def test_cell_time_shows_last_expression(kernel):
    km, kc = kernel
    msgs = ok(kc, "%%time\ntc = 2\nfor i in range(3):\n    tc += 1\ntc * 8")
    assert TIME_OUT.match(stdout_of(msgs))
    assert result(msgs) == "40"


def test_time_measures_wall_time(kernel):
    km, kc = kernel
    msgs = ok(kc, "import time\n%time time.sleep(0.12)")
    wall = re.search(r"Wall time: ([0-9.]+) (ms|s)\n", stdout_of(msgs))
    assert wall, stdout_of(msgs)
    secs = float(wall.group(1)) / (1000 if wall.group(2) == "ms" else 1)
    assert 0.12 <= secs < 2


def test_time_error_propagates(kernel):
    km, kc = kernel
    reply, msgs = execute(kc, "%time 1/0")
    assert reply["content"]["ename"] == "ZeroDivisionError"


def test_cell_time_rejects_statement_on_first_line(kernel):
    km, kc = kernel
    assert "%%time" in usage_error(kc, "%%time x = 1\ny = 2")


def test_time_format_units(kernel):
    """IPython's unit choice: 3 significant digits in s, ms, µs or ns, and
    1min 30s style from a minute up (seen through TimeitResult's text)."""
    km, kc = kernel
    msgs = ok(kc, "R = __pyrometer__.TimeitResult\n"
                  "for runs, loops in [([0.001, 0.003], 10), ([2.5], 1), ([5e-7, 5e-7], 1000),\n"
                  "                    ([90.0, 90.0], 1), ([1.5e-3] * 3, 1234567)]:\n"
                  "    print(R(loops, len(runs), min(runs) / loops, max(runs) / loops, runs, 0.0))")
    assert stdout_of(msgs) == (
        "200 µs ± 100 µs per loop (mean ± std. dev. of 2 runs, 10 loops each)\n"
        "2.5 s ± 0 ns per loop (mean ± std. dev. of 1 run, 1 loop each)\n"
        "0.5 ns ± 0 ns per loop (mean ± std. dev. of 2 runs, 1,000 loops each)\n"
        "1min 30s ± 0 ns per loop (mean ± std. dev. of 2 runs, 1 loop each)\n"
        "1.22 ns ± 0 ns per loop (mean ± std. dev. of 3 runs, 1,234,567 loops each)\n")


# ---- %timeit -------------------------------------------------------------------------


def test_timeit_n_r_o(kernel):
    km, kc = kernel
    msgs = ok(kc, "r = %timeit -n 3 -r 2 -o sum(range(10))")
    out = stdout_of(msgs)
    # As IPython does, a slowest run over 4 times the fastest (a loaded
    # machine can make one) is reported first, with the ratio of r's runs.
    warning = value(kc, "'The slowest run took %0.2f times longer than the fastest. This could "
                        "mean that an intermediate result is being cached.\\n' % (r.worst / r.best)"
                        " if r.worst > 4 * r.best and r.worst > 1e-6 else ''")
    warning = ast.literal_eval(warning)  # the repr of a str
    assert out.startswith(warning), out
    assert re.match(rf"^{UNIT} ± {UNIT} per loop \(mean ± std. dev. of 2 runs, 3 loops each\)\n$",
                    out[len(warning):]), out
    checks = ("(r.loops, r.repeat, len(r.all_runs), len(r.timings), "
              "all(abs(t - a / 3) < 1e-15 for t, a in zip(r.timings, r.all_runs)), "
              "r.best == min(r.timings), r.worst == max(r.timings), "
              "r.best <= r.average <= r.worst, r.stdev >= 0, type(r).__name__)")
    assert value(kc, checks) == "(3, 2, 2, 2, True, True, True, True, True, 'TimeitResult')"
    assert value(kc, "str(r) in repr(r)") == "True"


def test_timeit_runs_statement_n_times_r_runs(kernel):
    km, kc = kernel
    ok(kc, "calls = 0\ndef bump():\n    global calls\n    calls += 1")
    msgs = ok(kc, "%timeit -q -n 4 -r 3 bump()")
    assert stdout_of(msgs) == "" and of_type(msgs, "execute_result") == []
    assert value(kc, "calls") == "12"


def test_cell_timeit_first_line_is_setup(kernel):
    km, kc = kernel
    ok(kc, "setups = []")
    msgs = ok(kc, "%%timeit -n 5 -r 3 -o setups.append(1); data = [3, 1, 2]\nsorted(data)")
    assert "3 runs, 5 loops each" in stdout_of(msgs)
    assert result(msgs).startswith("<TimeitResult : ")
    assert value(kc, "len(setups)") == "3"


def test_timeit_calibrates_loops(kernel):
    """Loops grow 1, 2, 5, 10, 20, ... until one run takes >= 0.2 s."""
    km, kc = kernel
    ok(kc, "import time")
    ok(kc, "rs = %timeit -q -o -r 1 time.sleep(0.03)")
    assert value(kc, "rs.loops") in ("2", "5", "10")
    assert value(kc, "rs.repeat, rs.all_runs[0] >= 0.18") == "(1, True)"
    ok(kc, "rf = %timeit -q -o -r 2 -p 4 pass")
    loops = int(value(kc, "rf.loops"))
    assert loops >= 10000 and str(loops).strip("0") in ("1", "2", "5")


def test_timeit_precision_and_statement_error(kernel):
    km, kc = kernel
    msgs = ok(kc, "%timeit -n1 -r1 -p 6 x_ = 1")
    assert re.match(r"^[0-9.]+ (ns|µs) ± 0 ns per loop \(mean ± std. dev. of 1 run, 1 loop each\)\n$",
                    stdout_of(msgs)), stdout_of(msgs)
    reply, _ = execute(kc, "%timeit -n 1 -r 1 1/0")
    assert reply["content"]["ename"] == "ZeroDivisionError"
    reply, _ = execute(kc, "%timeit -n 1 -r 1 return 5")
    assert reply["content"]["ename"] == "SyntaxError"


@pytest.mark.parametrize("code", ["%timeit -n abc 1", "%timeit -r 0 1", "%timeit -z 1",
                                  "%timeit", "%timeit -n -1 newvar = 1",
                                  "%timeit -k newvar = 1"])
def test_timeit_bad_options(kernel, code):
    km, kc = kernel
    msg = usage_error(kc, code)
    assert "%timeit" in msg
    assert value(kc, "'newvar' in dir()") == "False"


# ---- %cd, %pwd -------------------------------------------------------------------------


def test_cd(kernel):
    km, kc = kernel
    start = ast.literal_eval(value(kc, "__import__('os').getcwd()"))
    with tempfile.TemporaryDirectory() as d:
        d = os.path.realpath(d)
        msgs = ok(kc, f"%cd {d}")
        assert stdout_of(msgs) == d + "\n"
        assert ast.literal_eval(value(kc, "__import__('os').getcwd()")) == d
        assert result(ok(kc, "%pwd")) == repr(d)
        msgs = ok(kc, "%cd -")
        assert stdout_of(msgs) == start + "\n"
        msgs = ok(kc, "%cd")
        assert stdout_of(msgs) == os.path.expanduser("~") + "\n"
        ok(kc, f"%cd -q '{d}'")
        assert ast.literal_eval(value(kc, "__import__('os').getcwd()")) == d
        assert "No such file or directory" in usage_error(kc, "%cd /no/such/dir/here")
        assert ast.literal_eval(value(kc, "__import__('os').getcwd()")) == d
        assert "unknown option" in usage_error(kc, "%cd -z")
        ok(kc, f"%cd -q {start}")


# ---- %env --------------------------------------------------------------------------------


def test_env(kernel):
    km, kc = kernel
    msgs = ok(kc, "%env PYRO_T=abc def")
    assert stdout_of(msgs) == "env: PYRO_T=abc def\n"
    assert result(ok(kc, "%env PYRO_T")) == "'abc def'"
    assert value(kc, "__import__('os').environ['PYRO_T']") == "'abc def'"
    msgs = ok(kc, "%env PYRO_U 1 2")
    assert stdout_of(msgs) == "env: PYRO_U=1 2\n"
    assert value(kc, "__import__('os').environ['PYRO_U']") == "'1 2'"
    ok(kc, "import os; os.environ['PYRO_API_TOKEN'] = 's3cret'")
    ok(kc, "envd = %env")
    assert value(kc, "type(envd).__name__, envd['PYRO_T'], envd['PYRO_API_TOKEN']") == \
        "('dict', 'abc def', '<hidden>')"
    assert usage_error(kc, "%env PYRO_NOT_SET_X") == "Environment does not have key: PYRO_NOT_SET_X"


# ---- %who, %whos, %reset ----------------------------------------------------------------


def test_who_whos_reset(kernel):
    km, kc = kernel
    ok(kc, "%reset -f")
    assert stdout_of(ok(kc, "%who")) == "Interactive namespace is empty.\n"
    ok(kc, "alpha = 1\nbeta = 'b'\nimport os\n_hidden = 3")
    assert stdout_of(ok(kc, "%who")) == "alpha\t beta\t os\t \n"
    assert stdout_of(ok(kc, "%who int")) == "alpha\t \n"
    assert stdout_of(ok(kc, "%who float")) == "No variables match your requested type.\n"
    assert result(ok(kc, "%who_ls")) == "['alpha', 'beta', 'os']"
    assert stdout_of(ok(kc, "%whos")) == (
        "Variable   Type      Data/Info\n"
        "------------------------------\n"
        "alpha      int       1\n"
        "beta       str       b\n"
        "os         module    <module 'os' (frozen)>\n")
    ok(kc, "gamma = list(range(5)); delta = 'x' * 80 + 'END'")
    out = stdout_of(ok(kc, "%whos list str"))
    assert out.splitlines()[1:] == ["-" * (11 + 7 + 10),
                                    "beta       str     b",
                                    "delta      str     " + "x" * 25 + "<...>" + "x" * 22 + "END",
                                    "gamma      list    n=5"]

    # bad options change nothing
    assert "unknown argument" in usage_error(kc, "%reset -x")
    assert "unknown argument" in usage_error(kc, "%reset -f everything")
    assert result(ok(kc, "%who_ls")) == "['alpha', 'beta', 'delta', 'gamma', 'os']"

    # without -f and without stdin: a usage error, nothing deleted
    reply, msgs = execute(kc, "%reset", allow_stdin=False)
    assert reply["content"]["ename"] == "UsageError"
    assert "%reset -f" in reply["content"]["evalue"]
    assert result(ok(kc, "%who_ls")) == "['alpha', 'beta', 'delta', 'gamma', 'os']"

    msgs = ok(kc, "%reset -f")
    assert stdout_of(msgs) == ""
    assert stdout_of(ok(kc, "%who")) == "Interactive namespace is empty.\n"
    assert value(kc, "'_hidden' in dir(), type(In).__name__, Out") == "(False, 'list', {})"
    msgs = ok(kc, "x = 1\nx + 1")
    assert result(msgs) == "2"
    assert value(kc, "_") == "2"


def answer_input(kc, code, answer):
    msg_id = kc.execute(code, allow_stdin=True)
    req = kc.get_stdin_msg(timeout=10)
    assert req["msg_type"] == "input_request"
    kc.input(answer)
    reply = kc.get_shell_msg(timeout=10)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=10)
    return req, reply


def test_reset_asks_through_input(kernel):
    km, kc = kernel
    ok(kc, "keep_me = 1")
    req, reply = answer_input(kc, "%reset", "n")
    assert "Proceed (y/[n])?" in req["content"]["prompt"]
    assert reply["content"]["status"] == "ok"
    assert value(kc, "keep_me") == "1"
    req, reply = answer_input(kc, "%reset", "y")
    assert reply["content"]["status"] == "ok"
    assert value(kc, "'keep_me' in dir()") == "False"


# ---- %magic, %matplotlib ------------------------------------------------------------


def test_magic_lists_help(kernel):
    km, kc = kernel
    out = stdout_of(ok(kc, "%magic"))
    for name in ("%time, %%time", "%timeit, %%timeit", "%cd", "%env", "%who", "%whos",
                 "%reset", "%matplotlib", "%pwd", "%lsmagic"):
        assert "\n" + name + "\n    " in out, name
    # one line each; %timeit? has the whole help
    assert "\n%timeit, %%timeit\n    Time a statement: the mean and standard deviation of R " \
        "runs of N loops each.\n\n" in out


@needs("matplotlib")
def test_matplotlib_magic(kernel):
    km, kc = kernel
    msgs = ok(kc, "%matplotlib inline")
    assert stdout_of(msgs) == "" and of_type(msgs, "error") == []
    assert stdout_of(ok(kc, "%matplotlib")) == "Using matplotlib backend: inline\n"
    assert stdout_of(ok(kc, "%matplotlib --list")) == "Available matplotlib backends: ['inline']\n"
    assert "inline only" in usage_error(kc, "%matplotlib qt")
    assert value(kc, "__import__('matplotlib').get_backend()") == "'module://_pyrometer_kernel_mpl'"


def test_reset_out_flushes_output_history_only(kernel):
    km, kc = kernel
    ok(kc, "kept_var = 5")
    ok(kc, "41 + 1")
    msgs = ok(kc, "%reset -f out")
    assert stdout_of(msgs) == "Flushing output cache\n"
    assert value(kc, "kept_var, Out, _, [k for k in dir() if k[1:].isdigit()]") == "(5, {}, '', [])"
