"""%lprun against line_profiler 4.0.2, side by side in one run.

Run: PYROMETER_BUILD=/work/main/build /usr/bin/python3 tests/bench/bench_lprun.py

Three workloads, each run plain, under a bare C trace callback (the floor any
3.11 trace hook pays), under line_profiler.LineProfiler and under
pyrometer.LineProfiler, with the same target functions. Prints medians and
ratios to plain time as a markdown table.
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


def run_bare(fn, args, mode):
    pyrometer._lineprof_bare_trace(mode)
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
            samples["bare"].append(run_bare(fn, args, 1))
            samples["timed"].append(run_bare(fn, args, 2))
            if RefProfiler is not None:
                samples["ref"].append(run_ref(fn, args, targets))
            samples["ours"].append(run_ours(fn, args, targets))
        med = {k: statistics.median(v) if v else float("nan") for k, v in samples.items()}
        rows.append((label, med))

    print("| workload | plain | bare C callback | timed C callback | line_profiler 4.0.2 | pyrometer | "
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
    print(f"- tight loop: {t_ratio:.2f}x plain (target <= 3x: {verdict(t_ratio <= 3.0)}); "
          f"{t_rel:.2f} of line_profiler's overhead (target <= 0.35: {verdict(t_rel <= 0.35)})")
    p_ratio = prog_m["ours"] / prog_m["plain"]
    p_bare = prog_m["bare"] / prog_m["plain"]
    p_rel = p_ratio / (prog_m["ref"] / prog_m["plain"])
    print(f"- call-heavy code outside the target: {p_ratio:.2f}x plain against {p_bare:.2f}x for a bare "
          f"C callback (target <= bare: {verdict(p_ratio <= p_bare * 1.02)}, within 2% noise); "
          f"{p_rel:.2f} of line_profiler's ratio (target <= 0.8: {verdict(p_rel <= 0.8)})")


if __name__ == "__main__":
    main()
