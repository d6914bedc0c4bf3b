#!/usr/bin/python3
"""bench_sample.py - %sample and %autosample against plain runs and the
sampling profilers a user would otherwise pick, side by side in one run.

In process, interleaved, on recursive fib (call-heavy) and a tight loop:
plain; %sample at the default 1 ms interval (the whole magic, report
included); a cell under %autosample on (the kernel's pre/post-cell hooks
around it); pyinstrument at 1 ms (start, run, stop, its text report), when
installed. Out of process, on Python 3.15: `python3.15 -m profiling.sampling
run -r 1khz --collapsed` against the same script run plain (each run reports
its own timings). Through the kernel: `pass` and a short cell with
%autosample off and on, in alternating blocks.

usage: bench_sample.py [--reps N] [--rounds N]   (PYROMETER_BUILD selects the build)
Prints markdown tables of medians and ratios to plain.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("PYROMETER_BUILD", os.path.join(ROOT, "build"))
sys.path.insert(0, os.path.join(BUILD, "ext"))

import pyrometer  # noqa: E402

SETUP = r'''
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)

def loop(n):
    s = 0
    for i in range(n):
        s += i * i % 7
    return s
'''

CASES = [("recursive fib(27) (call-heavy)", "fib(27)"),
         ("tight loop, 3M iterations", "loop(3_000_000)")]


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def in_process(reps):
    ns = {}
    exec(SETUP, ns)
    _, sample = pyrometer.MAGICS["sample"]
    _, autosample = pyrometer.MAGICS["autosample"]
    try:
        import pyinstrument
    except ImportError:
        pyinstrument = None
    rows = []
    for name, stmt in CASES:
        code = compile(stmt, "<cell-1>", "exec")
        shown = []
        run_only = []  # %sample's statement alone, begin to end of the recording

        def run_sample():
            r = sample("-r " + stmt, None, ns, shown.append)
            shown.clear()
            run_only.append(r.duration)

        def run_auto():
            pyrometer._pre_cell()
            exec(code, ns)
            pyrometer._post_cell(None)

        def run_pyinstrument():
            p = pyinstrument.Profiler(interval=0.001)
            p.start()
            exec(code, ns)
            p.stop()
            p.output_text()

        def run_autosampled():
            autosample("on", None, ns, print)
            try:
                return timed(run_auto)
            finally:
                autosample("off", None, ns, print)

        runners = {"plain": lambda: timed(lambda: exec(code, ns)),
                   "%sample": lambda: timed(run_sample), "%autosample": run_autosampled}
        if pyinstrument is not None:
            runners["pyinstrument"] = lambda: timed(run_pyinstrument)
        times = {k: [] for k in runners}
        for run in runners.values():
            run()  # warm up
        order = list(runners)
        for rep in range(reps):
            # a different runner goes first each time: on a busy machine the
            # first of a round was measurably faster
            for k in order[rep % len(order):] + order[:rep % len(order)]:
                times[k].append(runners[k]())
        med = {k: statistics.median(v) for k, v in times.items()}
        med["run"] = statistics.median(run_only[1:])
        r = sample("-r " + stmt, None, ns, shown.append)
        med["cost"] = r.sampler_cpu / max(1, r.samples)
        rows.append((name, med))
    print("| workload | plain | %sample: the run | %sample with its report | %autosample "
          "| pyinstrument 1 ms | sampler CPU per sample |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, m in rows:
        p = m["plain"]
        pi = "%.2fx" % (m["pyinstrument"] / p) if "pyinstrument" in m else "not installed"
        print("| %s | %.0f ms | %.3fx | %.3fx | %.3fx | %s | %.0f us |"
              % (name, p * 1e3, m["run"] / p, m["%sample"] / p, m["%autosample"] / p, pi,
                 m["cost"] * 1e6))
    print("\n(each a median of %d interleaved runs; pyinstrument %s)"
          % (reps, pyinstrument.__version__ if pyinstrument else "-"))


SCRIPT = SETUP + r'''
import sys, time
stmt, reps = sys.argv[1], int(sys.argv[2])
code = compile(stmt, "<bench>", "exec")
exec(code)
out = []
for _ in range(reps):
    t0 = time.perf_counter()
    exec(code)
    out.append(time.perf_counter() - t0)
print("TIMES " + " ".join("%.6f" % t for t in out))
'''


def out_of_process(reps):
    """CPython 3.15's own sampler, attached from outside, against plain."""
    if sys.version_info < (3, 15):
        return
    try:
        import profiling.sampling  # noqa: F401
    except ImportError:
        return
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "work.py")
        with open(script, "w") as f:
            f.write(SCRIPT)
        print("\n| workload (3.15, out of process) | plain | profiling.sampling -r 1khz |")
        print("| --- | ---: | ---: |")
        for name, stmt in CASES:
            res = {"plain": [], "sampling": []}
            for _ in range(reps):
                for k in res:
                    cmd = [sys.executable, script, stmt, "3"]
                    if k == "sampling":
                        cmd = [sys.executable, "-m", "profiling.sampling", "run", "-r", "1khz",
                               "--collapsed", "-o", os.path.join(tmp, "out.txt"), script, stmt,
                               "3"]
                    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
                    [line] = [x for x in r.stdout.splitlines() if x.startswith("TIMES ")]
                    res[k].extend(float(t) for t in line.split()[1:])
            p, s = statistics.median(res["plain"]), statistics.median(res["sampling"])
            print("| %s | %.0f ms | %.3fx |" % (name, p * 1e3, s / p))


def through_kernel(rounds, blocks):
    """Round trips of two cells with %autosample off and on, alternating."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_kernel
    if not os.path.exists(bench_kernel.KERNELS["pyrometer"][0]):
        return
    cells = [("pass", "pass"), ("fib(18), about 1 ms of work", "fib(18)")]
    with tempfile.TemporaryDirectory() as tmp:
        proc, client, *_ = bench_kernel.start("pyrometer", tmp)
        try:
            for _ in range(50):
                try:
                    client.execute("pass", timeout=1)
                    break
                except TimeoutError:
                    continue
            client.execute(SETUP)
            res = {(c, m): [] for _, c in cells for m in ("off", "on")}
            for _ in range(blocks):
                for mode in ("off", "on"):
                    client.execute("%autosample " + mode)
                    for _, c in cells:
                        for _ in range(rounds):
                            t = time.perf_counter()
                            client.execute(c)
                            res[(c, mode)].append(time.perf_counter() - t)
            client.execute("%autosample off")
        finally:
            bench_kernel.stop(proc, client)
    print("\n| cell through the kernel | autosample off | autosample on | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for name, c in cells:
        off = statistics.median(res[(c, "off")])
        on = statistics.median(res[(c, "on")])
        print("| %s | %.1f us | %.1f us | %.3fx |" % (name, off * 1e6, on * 1e6, on / off))
    print("\n(medians of %d round trips in %d alternating blocks)" % (rounds * blocks, blocks))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--blocks", type=int, default=6)
    args = ap.parse_args(argv)
    print("pyrometer %s, Python %s, load %.1f\n"
          % (pyrometer.__version__, sys.version.split()[0], os.getloadavg()[0]))
    in_process(args.reps)
    out_of_process(max(3, args.reps // 3))
    through_kernel(args.rounds, args.blocks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
