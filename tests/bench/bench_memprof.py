"""%mprun and %memit against memory_profiler 0.61, side by side in one process.

%mprun: an allocation-heavy loop in a file, run plain, under memory_profiler's
LineProfiler (runctx + show_results: what its %mprun does, minus the pager)
and under pyrometer's %mprun. %memit: statements run plain, through
memory_profiler's own %memit magic method (with -q) and through pyrometer's
%memit -q. Runs are interleaved; the table shows medians of the process's CPU
time and ratios to plain (target on 3.14: %mprun at most 2x plain on the
allocation loop).

    PYROMETER_BUILD=build /usr/bin/python3 tests/bench/bench_memprof.py [--reps N]
    PYROMETER_BUILD=build-314 python3.14 tests/bench/bench_memprof.py   # in the forky root
"""
import argparse
import contextlib
import gc
import io
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("PYROMETER_BUILD", os.path.join(ROOT, "build"))
sys.path.insert(0, os.path.join(BUILD, "ext"))

import pyrometer  # noqa: E402

MODULE = '''
def buffers(n):
    chunks = []
    for i in range(n):
        b = bytearray(512 + i % 4096)
        s = bytes(b[:256]).hex()
        chunks.append((s, b))
        if len(chunks) > 500:
            chunks.clear()
    return len(chunks)


def _fmt(rec):
    parts = []
    for k, v in rec.items():
        parts.append(f"{k}={v!r}")
    return ", ".join(parts)


def report(n):
    lines = []
    for i in range(n):
        rec = {"id": i, "name": "x" * (i % 30), "score": i * 0.5}
        lines.append(_fmt(rec))
        if len(lines) > 1000:
            lines = lines[500:]
    return len(lines)


def churn(n):
    out = []
    total = 0
    for i in range(n):
        s = str(i) * 3
        row = [s, i, float(i)]
        out.append(row)
        if len(out) > 1000:
            total += len(out)
            out = out[500:]
    return total + len(out)
'''

# (label, profiled function, statement)
MPRUN_CASES = [
    ("allocation-heavy loop: buffers(20_000)", "buffers", "buffers(20_000)"),
    ("loop calling a Python helper: report(10_000)", "report", "report(10_000)"),
    ("worst case, tight loop of tiny objects: churn(20_000)", "churn", "churn(20_000)"),
]

MEMIT_CASES = [
    ("200 MiB temporary: len(bytearray(200 * 2**20))", "len(bytearray(200 * 2**20))"),
    ("NumPy: np.ones(10**7).sum()", "np.ones(10**7).sum()"),
    ("many small objects: sorted(str(i) for i in range(300_000))",
     "sorted(str(i) for i in range(300_000))"),
]


def load_module():
    d = tempfile.mkdtemp(prefix="bench_memprof_")
    with open(os.path.join(d, "bench_mem_mod.py"), "w") as f:
        f.write(MODULE)
    sys.path.insert(0, d)
    import bench_mem_mod
    return bench_mem_mod


def timed(fn):
    # CPU time of every thread (%memit samples RSS from a thread): the
    # machines this runs on are shared, and wall time there measures the
    # neighbours.
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def run_interleaved(runners, reps):
    """runners: name -> (callable, reps); the slow reference runs fewer reps."""
    for fn, _ in runners.values():  # warm up
        fn()
    times = {k: [] for k in runners}
    for i in range(reps):
        for k, (fn, n) in runners.items():
            if i < n:
                gc.collect()
                times[k].append(timed(fn))
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=11)
    ap.add_argument("--mp-reps", type=int, default=3, help="reps of memory_profiler's %%mprun (slow)")
    args = ap.parse_args(argv)

    import memory_profiler
    import numpy as np
    from IPython.testing.globalipapp import start_ipython
    from memory_profiler import LineProfiler, MemoryProfilerMagics, show_results

    mod = load_module()
    with contextlib.redirect_stdout(io.StringIO()):  # IPython sets the terminal title
        shell = start_ipython()
    ns = shell.user_ns
    ns.update({"np": np, "buffers": mod.buffers, "report": mod.report, "churn": mod.churn})
    mp_magics = MemoryProfilerMagics(shell=shell)
    drop = lambda bundle: None  # noqa: E731
    mprun = pyrometer.MAGICS["mprun"][1]
    memit = pyrometer.MAGICS["memit"][1]

    print("pyrometer %s, memory_profiler %s, NumPy %s, Python %s; medians of %d reps "
          "(memory_profiler's %%mprun: %d)\n"
          % (pyrometer.__version__, memory_profiler.__version__, np.__version__,
             sys.version.split()[0], args.reps, args.mp_reps))
    print("| magic | workload | plain | memory_profiler | pyrometer | speed-up |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")

    for name, fname, stmt in MPRUN_CASES:
        code = compile(stmt, "<bench>", "exec")
        func = getattr(mod, fname)

        def mp_mprun():
            prof = LineProfiler()
            prof(func)
            prof.runctx(code, ns, ns)
            show_results(prof, io.StringIO())

        m = run_interleaved({
            "plain": (lambda: exec(code, ns), args.reps),
            "mp": (mp_mprun, args.mp_reps),
            "ours": (lambda: mprun("-f %s %s" % (fname, stmt), None, ns, drop), args.reps),
        }, args.reps)
        p = m["plain"]
        print("| %%mprun | %s | %.1f ms | %.0fx | %.2fx | %.0fx |"
              % (name, p * 1e3, m["mp"] / p, m["ours"] / p, m["mp"] / m["ours"]))
        if fname == "buffers":
            alloc_loop = m["ours"] / p

    for name, stmt in MEMIT_CASES:
        code = compile(stmt, "<bench>", "exec")
        m = run_interleaved({
            "plain": (lambda: exec(code, ns), args.reps),
            "mp": (lambda: mp_magics.memit("-q " + stmt), args.reps),
            "ours": (lambda: memit("-q " + stmt, None, ns, drop), args.reps),
        }, args.reps)
        p = m["plain"]
        print("| %%memit | %s | %.1f ms | %.2fx | %.2fx | %.1fx |"
              % (name, p * 1e3, m["mp"] / p, m["ours"] / p, m["mp"] / m["ours"]))
    print("\nTimes are the process's CPU time.")
    print("\n- %%mprun on the allocation loop: %.2fx plain (target <= 2x: %s)"
          % (alloc_loop, "met" if alloc_loop <= 2 else "NOT met"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
