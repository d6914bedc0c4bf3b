"""%sample, %%sample and %autosample through `import pyrometer` (the magic
called directly) and through IPython's `%load_ext pyrometer`: where the time
goes, measured against known spins and sleeps; threads, asyncio tasks, the
export formats; and that nothing keeps running afterwards."""
import base64
import json
import os
import xml.etree.ElementTree as ET
import re
import textwrap
import time

import pytest

DRIVER = textwrap.dedent("""\
    import time, threading, asyncio

    def spin(t):
        end = time.perf_counter() + t
        while time.perf_counter() < end:
            pass

    def burn(t):
        end = time.thread_time() + t
        while time.thread_time() < end:
            pass

    def six():
        spin(0.6)

    def three():
        spin(0.3)

    def one():
        spin(0.1)

    # what each phase took, measured by the driver itself: the ground truth
    # (on a loaded machine a 0.6 s spin can take longer to return)
    wall = {}
    cpu = {}

    def driver():
        t0 = time.perf_counter()
        six()
        t1 = time.perf_counter()
        three()
        t2 = time.perf_counter()
        one()
        t3 = time.perf_counter()
        wall.update(six=t1 - t0, three=t2 - t1, one=t3 - t2)

    def cpu_six():
        burn(0.6)

    def cpu_three():
        time.sleep(0.3)

    def cpu_one():
        burn(0.1)

    def cpu_driver():
        c0, t0 = time.thread_time(), time.perf_counter()
        cpu_six()
        c1, t1 = time.thread_time(), time.perf_counter()
        cpu_three()
        c2, t2 = time.thread_time(), time.perf_counter()
        cpu_one()
        c3 = time.thread_time()
        cpu.update(cpu_six=c1 - c0, cpu_three=c2 - c1, cpu_one=c3 - c2)
        wall["cpu_three"] = t2 - t1

    def worker_spin():
        spin(0.4)

    def threaded():
        t = threading.Thread(target=worker_spin, name="worker")
        t.start()
        spin(0.2)
        t.join()

    async def inner():
        spin(0.2)
        await asyncio.sleep(0.3)

    async def task_body():
        await inner()

    async def amain():
        await asyncio.gather(task_body(), asyncio.sleep(0.05))

    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)
    """)


@pytest.fixture
def ns():
    ns = {}
    exec(compile(DRIVER, "driver.py", "exec"), ns)
    return ns


def tasks():
    return len(os.listdir("/proc/self/task"))


def test_wall_shares_match_the_spins(magic, ns):
    before = tasks()
    p = magic("sample", "-r driver()", ns=ns)
    assert tasks() == before  # the sampler thread is gone
    took = ns["wall"]
    assert all(took[k] >= t for k, t in (("six", 0.6), ("three", 0.3), ("one", 0.1)))
    for name in ("six", "three", "one"):
        want = took[name] / sum(took.values())
        assert abs(p.share(name) - want) < 0.05, (name, p.share(name), took, magic.text)
    assert p.mode == "wall"
    assert abs(p.seconds - sum(took.values())) < 0.05, (p.seconds, took)
    text = magic.text
    assert text.startswith("%sample: ")
    # the condensed tree: driver, then its three callees by time
    lines = text.splitlines()
    order = [n for n in ("driver", "six", "three", "one")
             for line in lines if re.search(rf"\b{n}  driver.py:\d+$", line)]
    assert order == ["driver", "six", "three", "one"], text
    # the total is 1.0 s of spins, give or take a sample: 0.999 or 1.0xx
    assert re.search(r"^[01]\.\d{3} 100%  <module>  <sample>:1\n[01]\.\d{3} 100%  └─ driver  driver\.py:27\n"
                     r"0\.\d{3}  \d\d%     ├─ six  driver\.py:13\n"
                     r"0\.\d{3}  \d\d%     │  └─ spin  driver\.py:3\n", text, re.M), text


def test_cpu_mode_leaves_out_sleep(magic, ns):
    p = magic("sample", "--mode cpu -r cpu_driver()", ns=ns)
    assert p.mode == "cpu"
    # 0.6 and 0.1 s of CPU; the 0.3 s sleep costs (almost) none
    used = ns["cpu"]
    assert used["cpu_six"] >= 0.6 and used["cpu_one"] >= 0.1 and used["cpu_three"] < 0.01, used
    for name in ("cpu_six", "cpu_three", "cpu_one"):
        want = used[name] / sum(used.values())
        assert abs(p.share(name) - want) < 0.05, (name, p.share(name), used, magic.text)
    assert abs(p.seconds - sum(used.values())) < 0.05, (p.seconds, used)
    # the same driver in wall mode shows the sleep as waiting, as long as
    # it took (on a loaded machine, the wake-up can come late)
    w = magic("sample", "-r cpu_driver()", ns=ns)
    assert abs(w.inclusive()["cpu_three"] - ns["wall"]["cpu_three"]) < 0.05, magic.text


def test_threads_sees_the_worker(magic, ns):
    p = magic("sample", "--threads -r threaded()", ns=ns)
    labels = {label for label, frames, _, _ in p.stacks
              if any(f[1] == "worker_spin" for f in frames)}
    assert labels and all(not label.startswith("MainThread") for label in labels), p.stacks
    assert any(label.startswith("MainThread") for label, *_ in p.stacks)
    assert "worker_spin" in magic.text
    # without --threads, only the thread running the statement
    p = magic("sample", "-r threaded()", ns=ns)
    assert not any(f[1] == "worker_spin" for _, frames, _, _ in p.stacks for f in frames)


def test_async_shows_the_tasks_coroutine_stack(magic, ns):
    p = magic("sample", "--async -r asyncio.run(amain())", ns=ns)
    chains = [[f[1] for f in frames] for _, frames, _, _ in p.stacks]
    spin = [c for c in chains if c[-1] == "spin"]
    assert spin, chains
    # the event loop's frames give way to the task and its coroutine chain
    for c in spin:
        i = c.index("[task] task_body")
        assert c[i + 1:] == ["task_body", "inner", "spin"], c
        assert not any(n in ("BaseEventLoop.run_forever", "BaseEventLoop._run_once",
                             "Handle._run") for n in c), c
    assert abs(p.inclusive()["inner"] - 0.2) < 0.05, magic.text
    assert any(c[-1] == "[await]" for c in chains), chains
    assert "[task] task_body" in magic.text
    # without --async, the loop is there: asyncio's BaseEventLoop._run_once,
    # or nest_asyncio's own _run_once once jupyter_client (imported by an
    # earlier test in this process) has applied it
    p = magic("sample", "-r asyncio.run(amain())", ns=ns)
    assert any(f[1].split(".")[-1] == "_run_once" for _, frames, _, _ in p.stacks
               for f in frames), p.stacks


def test_async_under_nest_asyncio(tmp_path):
    """jupyter_client applies nest_asyncio, which replaces asyncio.run and the
    loop's methods with its own: those are the event loop's frames too."""
    pytest.importorskip("nest_asyncio")
    import subprocess
    import sys
    script = tmp_path / "nest.py"
    script.write_text(DRIVER + textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[1])
        import nest_asyncio, pyrometer
        nest_asyncio.apply()
        p = pyrometer.MAGICS["sample"][1]("--async -r asyncio.run(amain())", None, globals(),
                                           lambda b: None)
        chains = [[f[1] for f in frames] for _, frames, _, _ in p.stacks]
        print(any(c[-1] == "[await]" for c in chains),
              all("[task] task_body" in c for c in chains if c[-1] == "spin"))
        """))
    from conftest import BUILD
    r = subprocess.run([sys.executable, str(script), os.path.join(BUILD, "ext")],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["True", "True"], (r.stdout, r.stderr)


# flamegraph.pl reads each line as /^(.*)\s+?(\d+(?:\.\d*)?)$/ and splits the
# stack on ';'
FLAMEGRAPH_LINE = re.compile(r"^(.*)\s+?(\d+(?:\.\d*)?)$")


def test_collapsed_file_is_flamegraph_format(magic, ns, tmp_path):
    out = tmp_path / "stacks.txt"
    p = magic("sample", f"--collapsed {out} -r driver()", ns=ns)
    assert f"*** Collapsed stacks written to '{out}'." in magic.text
    body = out.read_text()
    assert body.endswith("\n")
    total = 0
    stacks = set()
    for line in body.splitlines():
        m = FLAMEGRAPH_LINE.match(line)
        assert m, line
        stack, count = m.group(1), int(m.group(2))
        assert count > 0 and stack not in stacks
        stacks.add(stack)
        frames = stack.split(";")
        assert all(frames), line
        assert frames[0] == "<module> (<sample>:1)", line
        total += count
        for f in frames:
            assert re.fullmatch(r"\S.* \(.+:\d+\)", f), f
    assert total == sum(s[2] for s in p.stacks if s[1])
    assert any(";six (driver.py:" in s and s.endswith(";spin (driver.py:6)") for s in stacks) \
        or any(";six (driver.py:" in s for s in stacks)
    assert body == p.collapsed()


def test_speedscope_file(magic, ns, tmp_path):
    out = tmp_path / "p.speedscope.json"
    p = magic("sample", f"--speedscope {out} -r driver()", ns=ns)
    doc = json.loads(out.read_text())
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    frames = doc["shared"]["frames"]
    [prof] = doc["profiles"]
    assert prof["type"] == "sampled" and prof["unit"] == "seconds"
    assert len(prof["samples"]) == len(prof["weights"])
    assert all(0 <= i < len(frames) for s in prof["samples"] for i in s)
    assert abs(sum(prof["weights"]) - p.seconds) < 1e-6
    assert abs(prof["endValue"] - p.seconds) < 1e-6
    assert {"six", "three", "one", "driver"} <= {f["name"] for f in frames}


def test_html_has_tree_flame_image_and_heat(magic, ns):
    # line 2 never runs, and line 1 runs within microseconds of the start,
    # long before the first tick one interval in: only line 3 takes samples
    # (a line run after driver() could take one on the way out, when the
    # sampler thread woke late)
    magic("sample", "", cell="def later():\n    return 1\ndriver()\n", ns=ns)
    html = magic.html
    [img] = re.findall(r'<img [^>]*src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', html)
    svg = base64.b64decode(img).decode()
    ET.fromstring(svg)  # well-formed
    assert ">six<" in svg and ">driver<" in svg
    # house style: a sanitizer strips <style> and inline SVG; the image survives
    assert "<svg" not in html and "<style" not in html
    assert re.search(r"<td style=\"[^\"]*\">(&nbsp;)*\u2514\u2500&nbsp;<b>driver</b>", html), html
    assert "&nbsp;&nbsp;&nbsp;\u251c\u2500&nbsp;<b>six</b>" in html
    # line heat of the %%sample body: line 1 took the time
    assert re.search(r"Line heat: <module>  <sample>:1\n\s+share  seconds  line\n"
                     r"\s+1  def later\(\):\n\s+2      return 1\n"
                     r"\s+100\.0%\s+\d\.\d{3}\s+3  driver\(\)\n", magic.text), magic.text
    assert callable(ns["later"])


def test_library_frames_fold(magic, ns):
    ns["json"] = __import__("json")
    ns["big"] = [{"k": list(range(50))} for _ in range(3000)]
    magic("sample", "for _ in range(20): json.dumps(big)", ns=ns)
    text = magic.text
    # the entry into the library stays, with its time; the frames between it
    # and the hot one are folded
    assert re.search(r"^\d\.\d{3}\s+\d+%  └─ dumps  __init__\.py:\d+\n"
                     r"\d\.\d{3}\s+\d+%     └─ \[1 frame hidden\]  json\n"
                     r"\d\.\d{3}\s+\d+%        └─ JSONEncoder\.iterencode  encoder\.py:\d+\n", text, re.M), text


def test_recursion_is_one_row(magic, ns):
    p = magic("sample", "-r fib(24)", ns=ns)
    depth = max(sum(f[1] == "fib" for f in frames) for _, frames, _, _ in p.stacks)
    assert depth > 5
    rows = [line for line in magic.text.splitlines() if " fib" in line and "driver.py" in line]
    # the recursion, as deep as it holds 1% of the samples, folded into one row
    m = re.search(r"└─ fib \(x(\d+), recursive\)  driver\.py:\d+$", rows[0])
    assert len(rows) == 1 and m and 5 <= int(m.group(1)) <= depth, magic.text


def test_names_beyond_ascii(magic, ns):
    # names are copied from the interpreter's memory: latin-1, UCS-2 and
    # UCS-4 strings each have their own layout
    src = ("def größe():\n    spin(0.1)\n\n"
           "def 计算():\n    spin(0.1)\n\n"
           "def 𠀀𠀁():\n    spin(0.1)\n")
    exec(compile(src, "ünïcode_计算.py", "exec"), ns)
    p = magic("sample", "-r größe(); 计算(); 𠀀𠀁()", ns=ns)
    names = {f[1] for _, frames, _, _ in p.stacks for f in frames}
    files = {f[0] for _, frames, _, _ in p.stacks for f in frames}
    assert {"größe", "计算", "𠀀𠀁"} <= names, names
    assert "ünïcode_计算.py" in files
    assert "计算  ünïcode_计算.py:4" in magic.text


def test_exception_shows_profile_then_raises(magic, ns):
    with pytest.raises(ZeroDivisionError):
        magic("sample", "six(); 1/0", ns=ns)
    assert "six" in magic.text


def test_usage_errors(magic, pyrometer, ns):
    with pytest.raises(pyrometer.UsageError, match=r"^%sample: --mode fast: the mode is wall"):
        magic("sample", "--mode fast driver()", ns=ns)
    with pytest.raises(pyrometer.UsageError, match=r"^%sample: nothing to sample"):
        magic("sample", "-i 0.01", ns=ns)
    with pytest.raises(pyrometer.UsageError, match=r"^%sample: --last needs a sampler"):
        magic("sample", "--last", ns=ns)
    with pytest.raises(pyrometer.UsageError, match=r"^%sample: -i 0: "):
        magic("sample", "-i 0 driver()", ns=ns)
    with pytest.raises(pyrometer.UsageError, match=r"^%autosample: say on or off"):
        magic("autosample", "maybe", ns=ns)


def test_autosample_hooks_and_last(magic, pyrometer, ns):
    before = tasks()
    magic("autosample", "on -i 0.002", ns=ns)
    try:
        assert tasks() == before + 1
        assert magic("autosample", "", ns=ns) == "autosample is on (every 2 ms, wall)"
        t0 = time.perf_counter()
        pyrometer._pre_cell()
        exec("three()", ns)
        pyrometer._post_cell(None)
        took = time.perf_counter() - t0
        pyrometer._pre_cell()
        p = magic("sample", "--last -r", ns=ns)
        again = magic("sample", "--last -r", ns=ns)  # twice in one cell: the same cell
        pyrometer._post_cell(None)
        assert p.share("three") > 0.9 and abs(p.seconds - took) < 0.05, (took, magic.text)
        assert again.stacks == p.stacks
        assert magic.text.startswith("%sample --last: ")
        # an interrupted cell: the KeyboardInterrupt gets the note
        pyrometer._pre_cell()
        try:
            # a code object, not a string: CPython marks a KeyboardInterrupt
            # out of exec(str) as unhandled, and `python -m pytest` then
            # ends with SIGINT (exit 130) although every test passed
            exec(compile("six(); raise KeyboardInterrupt", "<string>", "exec"), ns)
        except KeyboardInterrupt as e:
            pyrometer._post_cell(e)
            assert e.__notes__ == ["%sample --last shows where this cell spent its time."]
        pyrometer._pre_cell()
        p = magic("sample", "--last -r", ns=ns)
        pyrometer._post_cell(None)
        assert p.share("six") > 0.9, magic.text
    finally:
        magic("autosample", "off", ns=ns)
    assert tasks() == before
    assert magic("autosample", "", ns=ns) == "autosample is off"


def test_no_note_without_autosample(pyrometer):
    e = KeyboardInterrupt()
    pyrometer._pre_cell()
    pyrometer._post_cell(e)
    assert not hasattr(e, "__notes__")


# ---- the IPython front door ------------------------------------------------


def test_ipython_sample_and_autosample(ipy):
    ipy.run_cell(DRIVER)
    r = ipy.run_cell("%sample -r three()")
    assert r.success, r.error_in_exec
    assert abs(r.result.share("three") - 1.0) < 0.05
    text = ipy.published[-1]["text/plain"]
    assert re.search(r"three  ", text), text
    ipy.run_line_magic("autosample", "on")
    try:
        # a pre_run_cell hook after ours: 0.2 s of the shell's own work
        # before the cell, in Python frames that are not the cell's
        def slow_hook(info):
            time.sleep(0.2)
        ipy.events.register("pre_run_cell", slow_hook)
        try:
            r = ipy.run_cell("six()")
        finally:
            ipy.events.unregister("pre_run_cell", slow_hook)
        assert r.success
        r = ipy.run_cell("p = %sample --last -r\np")
        assert r.success, r.error_in_exec
        p = ipy.user_ns["p"]
        text = ipy.published[-1]["text/plain"]
        assert 0.70 < p.share("six") < 0.80, text
        # the cell is the outermost frame: IPython's own frames are cut, and
        # the hook's time has no frame, with a note that says whose it was
        assert all(frames[0][0].startswith("<ipython-input-") for _, frames, _, _ in p.stacks
                   if frames), [f for _, f, _, _ in p.stacks if f][:3]
        outside = sum(s for _, frames, _, s in p.stacks if not frames)
        assert 0.18 < outside < 0.3, p.stacks
        note = re.search(r"^(\d\.\d{3}) s \((\d+)%\) outside the cell's code \(the shell's own "
                         r"work before and after it\)$", text, re.M)
        assert note and abs(float(note[1]) - outside) < 0.0015, (outside, text)
        assert int(note[2]) == round(100 * outside / p.seconds), (outside, text)
        r = ipy.run_cell("one(); raise KeyboardInterrupt")
        assert isinstance(r.error_in_exec, KeyboardInterrupt)
        r = ipy.run_cell("q = %sample --last -r")
        assert ipy.user_ns["q"].share("one") > 0.9
    finally:
        ipy.run_line_magic("autosample", "off")
    n = len(ipy.events.callbacks["pre_run_cell"])
    assert not any("_ipython_pre" in repr(cb) for cb in ipy.events.callbacks["pre_run_cell"]), n
    assert ipy.custom_exceptions == ()
