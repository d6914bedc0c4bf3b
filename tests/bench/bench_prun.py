"""%prun against cProfile, side by side in one process.

Runs each statement plain, under cProfile.Profile().runctx, under
pyrometer.Profile().runctx (what %prun uses) and under empty C callbacks (the
floor: on 3.11 a PyEval_SetProfile hook, on 3.12+ sys.monitoring callbacks on
the events %prun uses), interleaved, and prints the medians of the thread's
CPU time and ratios as a markdown table. The figure that matters is
pyrometer's overhead over plain time divided by cProfile's (target on 3.14:
at most 0.7 on recursive fib).

    PYROMETER_BUILD=build /usr/bin/python3 tests/bench/bench_prun.py [--reps N]
    PYROMETER_BUILD=build-314 python3.14 tests/bench/bench_prun.py   # in the forky root
"""
import argparse
import cProfile
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("PYROMETER_BUILD", os.path.join(ROOT, "build"))
sys.path.insert(0, os.path.join(BUILD, "ext"))

import pyrometer  # noqa: E402

SETUP = r'''
import collections, difflib, json, re, statistics as st, textwrap

def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)

class Vec:
    __slots__ = ("x", "y")
    def __init__(self, x, y):
        self.x = x
        self.y = y
    def add(self, o):
        return Vec(self.x + o.x, self.y + o.y)
    def norm2(self):
        return self.x * self.x + self.y * self.y

def methods(n):
    acc = Vec(0, 0)
    out = []
    seen = {}
    for i in range(n):
        v = Vec(i % 7, len(out) % 5)
        acc = acc.add(v)
        out.append(abs(acc.norm2() - i))
        seen[i % 13] = seen.get(i % 13, 0) + 1
        if isinstance(v, Vec) and min(i, 3) == 3:
            out.append(max(v.x, v.y))
    return sum(out), sorted(seen.items())

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho "
         "sigma tau upsilon phi chi psi omega").split()
TEXT = " ".join(WORDS[(i * 7) % len(WORDS)] for i in range(1500))
RECORDS = [{"id": i, "name": WORDS[i % len(WORDS)], "score": (i * 37) % 101} for i in range(400)]

def mixed():
    # text processing, parsing, stats and diffs: what a notebook cell does
    counts = collections.Counter(re.findall(r"\w+", TEXT))
    wrapped = textwrap.fill(TEXT[:3000], width=60)
    rows = json.loads(json.dumps(RECORDS))
    by_name = collections.defaultdict(list)
    for r in rows:
        by_name[r["name"]].append(r["score"])
    means = {k: st.mean(v) for k, v in by_name.items()}
    best = sorted(rows, key=lambda r: (-r["score"], r["name"]))[:10]
    a = wrapped.splitlines()
    b = [line.replace("a", "A") for line in a]
    ratio = difflib.SequenceMatcher(None, a[:40], b[:40]).ratio()
    return len(counts), round(sum(means.values()), 3), best[0]["id"], round(ratio, 3)
'''

CASES = [
    ("recursive fib(22) (call-heavy)", "fib(22)"),
    ("methods and builtins", "methods(6000)"),
    ("mixed workload (re, json, textwrap, statistics, difflib)", "mixed()"),
]


def time_one(fn):
    # CPU time: the machines this runs on are shared, and wall time there
    # measures the neighbours.
    t0 = time.thread_time()
    fn()
    return time.thread_time() - t0


def empty_hook(code, ns):
    pyrometer._empty_profile_hook(True)
    try:
        exec(code, ns)
    finally:
        pyrometer._empty_profile_hook(False)


def bench(stmt, ns, reps):
    code = compile(stmt, "<string>", "exec")
    runners = {
        "plain": lambda: exec(code, ns),
        "cProfile": lambda: cProfile.Profile().runctx(code, ns, ns),
        "pyrometer": lambda: pyrometer.Profile().runctx(code, ns, ns),
        "empty": lambda: empty_hook(code, ns),
    }
    for run in runners.values():  # warm up
        run()
    times = {k: [] for k in runners}
    for _ in range(reps):
        for k, run in runners.items():
            times[k].append(time_one(run))
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=21)
    args = ap.parse_args(argv)
    ns = {}
    exec(SETUP, ns)
    print("pyrometer %s (%s clock), Python %s, %d reps, medians\n"
          % (pyrometer.__version__, pyrometer.Profile().clock, sys.version.split()[0], args.reps))
    floor = "empty C hook" if sys.version_info < (3, 12) else "empty sys.monitoring callbacks"
    print("| workload | plain | cProfile | pyrometer | overhead: pyrometer / cProfile "
          "| %s (floor) | floor / cProfile |" % floor)
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    fib = None
    for name, stmt in CASES:
        m = bench(stmt, ns, args.reps)
        p, c, y, e = m["plain"], m["cProfile"], m["pyrometer"], m["empty"]
        print("| %s | %.2f ms | %.2fx | %.2fx | **%.2f** | %.2fx | %.2f |"
              % (name, p * 1e3, c / p, y / p, (y - p) / (c - p), e / p, (e - p) / (c - p)))
        fib = (y - p) / (c - p) if fib is None else fib
    print("\nTimes are the thread's CPU time. overhead = (profiled - plain) / (cProfile - plain); "
          "the floor is what the interpreter's hook machinery costs with callbacks that do nothing.")
    print("\n- recursive fib: our overhead is %.2f of cProfile's (target <= 0.7: %s)"
          % (fib, "met" if fib <= 0.7 else "NOT met"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
