#!/usr/bin/python3
"""bench_usercode.py - user code at the interpreter's full speed (issue 11):
the same Python code in pyrometer (embedded: the pyrometer-kernel
executable; hosted: python3.X -m pyrometer_kernel) and in ipykernel, on the
same interpreter, side by side and interleaved in one run. Two forms:
  next    functions defined in one cell, timed with timeit in the next;
  inline  defined and timed within one cell.
Also each kernel's start to first kernel_info_reply and idle RSS.

usage: bench_usercode.py [--rounds N] [--starts N] [--modes embedded,hosted]
(PYROMETER_BUILD selects the build; the Python is the build's.)
Prints markdown tables: best times (min over rounds) and kernel / ipykernel.
"""
import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
import bench_kernel  # noqa: E402  (LeanClient, start, stop, rss_mib)
from pyrometer_testing import BUILD, KERNEL, _build_python  # noqa: E402

PYTHON = _build_python()

# The workload: a loop, a dict build plus sort, and repr.
WORK = '''
def loop(n=400000):
    s = 0
    for i in range(n):
        s += i * i % 7
    return s

def dict_sort(n=40000):
    d = {"k%d" % i: (i * 7919) % n for i in range(n)}
    return sorted(d.items(), key=lambda kv: kv[1])[-1]

def reprs(n=4000):
    return len(repr([{i: (str(i), float(i), [i])} for i in range(n)]))
'''
TIMER = '''
import timeit as _timeit, json as _json, time as _time
_r = _json.dumps({f.__name__: min(_timeit.repeat(f, number=1, repeat=5, timer=_time.thread_time))
                  for f in (loop, dict_sort, reprs)})
'''
FUNCS = ("loop", "dict_sort", "reprs")


def run(client, code):
    """Executes code; returns _r from the user namespace (a JSON str)."""
    mid = client.send("execute_request", {
        "code": code, "silent": False, "store_history": True, "allow_stdin": False,
        "user_expressions": {"r": "_r"}, "stop_on_error": True})
    reply = json.loads(client.wait_reply(mid, timeout=300))
    client.wait_idle(mid, timeout=300)
    if reply.get("status") != "ok":
        sys.exit(f"cell failed: {reply}")
    text = reply["user_expressions"]["r"]["data"]["text/plain"]
    return json.loads(eval(text))  # the repr of a str


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--starts", type=int, default=5)
    ap.add_argument("--modes", default="embedded,hosted")
    args = ap.parse_args()
    modes = args.modes.split(",")
    bench_kernel.KERNELS.update({
        "ipykernel": [PYTHON, "-m", "ipykernel_launcher", "-f"],
        "embedded": [KERNEL, "-f"],
        "hosted": [PYTHON, "-m", "pyrometer_kernel", "-f"],
    })
    os.environ["PYTHONPATH"] = os.path.join(BUILD, "kernel")  # the hosted launcher
    names = ["ipykernel"] + modes
    version = os.popen(f"{PYTHON} -c 'import sys; print(sys.version.split()[0])'").read().strip()
    best = {n: {form: {f: math.inf for f in FUNCS} for form in ("next", "inline")} for n in names}
    start = {n: [] for n in names}
    rss = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        # start-up and idle RSS: kernels started in turn
        for _ in range(args.starts):
            for n in names:
                proc, client, info, path, (startup, first) = bench_kernel.start(n, tmp)
                start[n].append(startup)
                for _ in range(20):
                    client.execute("pass")
                time.sleep(0.5)
                rss[n].append(bench_kernel.rss_mib(proc.pid))
                bench_kernel.stop(proc, client)
        # user code: all kernels up at once, rounds interleaved
        kernels = {}
        for n in names:
            proc, client, *_ = bench_kernel.start(n, tmp)
            client.execute("pass")
            run(client, "_r = '{}'\n" + WORK)  # cell 1 defines the functions
            kernels[n] = (proc, client)
        for _ in range(args.rounds):
            for n in names:
                client = kernels[n][1]
                for form, code in (("next", TIMER), ("inline", WORK + TIMER)):
                    for f, t in run(client, code).items():
                        best[n][form][f] = min(best[n][form][f], t)
        for proc, client in kernels.values():
            bench_kernel.stop(proc, client)
    print(f"Python {version} ({PYTHON}); {args.rounds} interleaved rounds, best of 5 timeit "
          f"runs each (thread CPU time); {args.starts} starts of each kernel\n")
    print("| form | function | ipykernel | " + " | ".join(f"pyrometer {m} | {m} / ipykernel" for m in modes) + " |")
    print("| --- | --- | ---: | " + " | ".join("---: | ---:" for _ in modes) + " |")
    for form in ("next", "inline"):
        for f in FUNCS:
            i = best["ipykernel"][form][f]
            cells = " | ".join(f"{best[m][form][f]*1e3:.2f} ms | {best[m][form][f]/i:.3f}" for m in modes)
            print(f"| {form} | {f} | {i*1e3:.2f} ms | {cells} |")
    print()
    print("| measure | ipykernel | " + " | ".join(f"pyrometer {m} | {m} / ipykernel" for m in modes) + " |")
    print("| --- | ---: | " + " | ".join("---: | ---:" for _ in modes) + " |")
    si, ri = statistics.median(start["ipykernel"]), statistics.median(rss["ipykernel"])
    print(f"| start to first kernel_info_reply | {si*1e3:.0f} ms | " + " | ".join(
        f"{statistics.median(start[m])*1e3:.1f} ms | 1/{si/statistics.median(start[m]):.0f}" for m in modes) + " |")
    print(f"| idle RSS after 20 cells | {ri:.1f} MiB | " + " | ".join(
        f"{statistics.median(rss[m]):.1f} MiB | 1/{ri/statistics.median(rss[m]):.1f}" for m in modes) + " |")


if __name__ == "__main__":
    main()
