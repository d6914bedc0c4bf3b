"""%lprun against line_profiler, side by side in one run.

Run: PYROMETER_BUILD=build /usr/bin/python3 tests/bench/bench_lprun.py
     PYROMETER_BUILD=build-314 python3.14 tests/bench/bench_lprun.py   # in the forky root

Three workloads, each run plain, under bare C callbacks (the floor: on 3.11 a
trace function, which every frame pays for; on 3.12+ sys.monitoring callbacks
on the targets' local events, as %lprun uses), under line_profiler.LineProfiler
and under pyrometer.LineProfiler, with the same target functions. Prints
medians of the thread's CPU time and ratios to plain time as a markdown table.
"""
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("PYROMETER_BUILD", os.path.join(ROOT, "build"))
sys.path.insert(0, os.path.join(BUILD, "ext"))

import pyrometer  # noqa: E402

try:
    from line_profiler import LineProfiler as RefProfiler
except ImportError:  # pragma: no cover
    RefProfiler = None


# ---- workloads (targets live in this file, like a user's module) ----------

def tight(n):
    s = 0
    for i in range(n):
        s += i * i
    return s


def helper_a(x):
    return x + 1


def helper_b(x):
    y = x * 2
    return helper_a(y) - x


def calls(n):
    s = 0
    for i in range(n):
        s += helper_b(i)
    return s


def small_target(x):
    return x * x + 1


def busy_part(n):
    out = []
    for i in range(n):
        d = {"k": i, "v": str(i)}
        out.append(helper_b(d["k"]))
    return sorted(out)[:3]


def program(n):
    total = 0
    for rep in range(4):
        total += sum(busy_part(n // 4))
    for i in range(n // 50):
        total += small_target(i)
    return total


CASES = [
    ("tight 3-line loop (target)", tight, (400_000,), [tight]),
    ("loop calling non-target functions", calls, (150_000,), [calls]),
    ("program, target a small part", program, (120_000,), [small_target]),
]


def run_plain(fn, args):
    t = time.thread_time()
    fn(*args)
    return time.thread_time() - t


def run_bare(fn, args, mode, targets):
    pyrometer._lineprof_bare_trace(mode, tuple(t.__code__ for t in targets))
    try:
        t = time.thread_time()
        fn(*args)
        return time.thread_time() - t
    finally:
        pyrometer._lineprof_bare_trace(0)


def run_ref(fn, args, targets):
    lp = RefProfiler(*targets)
    lp.enable_by_count()
    try:
        t = time.thread_time()
        fn(*args)
        return time.thread_time() - t
    finally:
        lp.disable_by_count()


def run_ours(fn, args, targets):
    lp = pyrometer.LineProfiler(*targets)
    lp.enable()
    try:
        t = time.thread_time()
        fn(*args)
        return time.thread_time() - t
    finally:
        lp.disable()


def main(repeats=9):
    rows = []
    for label, fn, args, targets in CASES:
        samples = {"plain": [], "bare": [], "timed": [], "ref": [], "ours": []}
        for _ in range(repeats):
            # interleave, so drift on a shared machine hits every column alike
            samples["plain"].append(run_plain(fn, args))
            samples["bare"].append(run_bare(fn, args, 1, targets))
            samples["timed"].append(run_bare(fn, args, 2, targets))
            if RefProfiler is not None:
                samples["ref"].append(run_ref(fn, args, targets))
            samples["ours"].append(run_ours(fn, args, targets))
        med = {k: statistics.median(v) if v else float("nan") for k, v in samples.items()}
        rows.append((label, med))

    ref = "line_profiler " + (__import__("line_profiler").__version__ if RefProfiler else "(missing)")
    print(f"pyrometer {pyrometer.__version__}, {ref}, Python {sys.version.split()[0]}\n")
    print(f"| workload | plain | bare C callback | timed C callback | {ref} | pyrometer | "
          "pyrometer / plain | line_profiler / plain | our overhead / line_profiler's |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, m in rows:
        p = m["plain"]
        ours_over = m["ours"] / p - 1
        ref_over = m["ref"] / p - 1
        print(f"| {label} | {p * 1e3:.1f} ms | {m['bare'] / p:.2f}x | {m['timed'] / p:.2f}x | "
              f"{m['ref'] * 1e3:.1f} ms | {m['ours'] * 1e3:.1f} ms | {m['ours'] / p:.2f}x | "
              f"{m['ref'] / p:.2f}x | {ours_over / ref_over:.2f} |")
    print()
    print("Times are thread CPU time (time.thread_time), medians of %d interleaved runs; 'our overhead / "
          "line_profiler's' is (pyrometer/plain - 1) / (line_profiler/plain - 1). The bare C callback "
          "returns 0 on every event; the timed one also reads the clock (the TSC) on line events." % repeats)
    print()
    tight_m, calls_m, prog_m = (m for _, m in rows)

    def verdict(ok):
        return "met" if ok else "NOT met"

    t_ratio = tight_m["ours"] / tight_m["plain"]
    t_rel = (t_ratio - 1) / (tight_m["ref"] / tight_m["plain"] - 1)
    print(f"- tight loop: {t_ratio:.2f}x plain (target <= 3x on 3.11, <= 2x on 3.14: "
          f"{verdict(t_ratio <= (3.0 if sys.version_info < (3, 12) else 2.0))}); "
          f"{t_rel:.2f} of line_profiler's overhead (target <= 0.35: {verdict(t_rel <= 0.35)})")
    p_ratio = prog_m["ours"] / prog_m["plain"]
    p_bare = prog_m["bare"] / prog_m["plain"]
    p_rel = p_ratio / (prog_m["ref"] / prog_m["plain"])
    if sys.version_info < (3, 12):
        print(f"- call-heavy code outside the target: {p_ratio:.2f}x plain against {p_bare:.2f}x for a "
              f"bare C callback (target <= bare: {verdict(p_ratio <= p_bare * 1.02)}, within 2% noise); "
              f"{p_rel:.2f} of line_profiler's ratio (target <= 0.8: {verdict(p_rel <= 0.8)})")
    else:
        print(f"- heavy code outside the target: {p_ratio:.2f}x plain (target <= 1.05x: "
              f"{verdict(p_ratio <= 1.05)}); {p_rel:.2f} of line_profiler's ratio")


if __name__ == "__main__":
    main()
