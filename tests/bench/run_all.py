#!/usr/bin/python3
"""run_all.py - `make bench`: every benchmark of tests/bench, one after the
other, each printing its markdown table of medians and ratios against the
reference tool measured in the same run. Not part of the test suite: these
are timings on a shared machine, reported, never asserted.

usage: run_all.py [--forky] [NAME...]
  (host)    the Debian 12 set, each script run by /usr/bin/python3 (3.11)
  --forky   the set for the forky root's Python 3.14 (make bench runs it there
            with PYROMETER_BUILD=build-py3.14): each script run by this
            interpreter, against ipykernel 7.2, cProfile, line_profiler 5.0.2
            and memory_profiler of the same Python
  NAME...   only these"""
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHES = ["bench_kernel.py", "bench_usercode.py", "bench_ipython.py", "bench_prun.py",
           "bench_lprun.py", "bench_memprof.py", "bench_sample.py", "bench_soak.py", "fuzz"]
# In the root: no soak (a host-side leak check) and no fuzzing (clang's
# libFuzzer is a host tool here); the rest measure the kernel and profilers
# built for 3.14 against the reference tools of 3.14.
FORKY_BENCHES = ["bench_kernel.py", "bench_usercode.py", "bench_prun.py", "bench_lprun.py",
                 "bench_memprof.py", "bench_sample.py"]
# "fuzz": each libFuzzer target of tests/fuzz for 10 million executions.
FUZZ = [os.path.join(HERE, "..", "fuzz", "run.sh"), "--runs", "10000000"]


def main():
    args = sys.argv[1:]
    forky = "--forky" in args
    args = [a for a in args if a != "--forky"]
    python = sys.executable if forky else "/usr/bin/python3"
    only = args or (FORKY_BENCHES if forky else BENCHES)
    print(f"# tests/bench: {python}, build {os.environ.get('PYROMETER_BUILD', 'build')}", flush=True)
    for name in only:
        print(f"\n## {name}  ({time.strftime('%Y-%m-%d %H:%M:%S')}, load {os.getloadavg()[0]:.2f})\n",
              flush=True)
        cmd = FUZZ if name == "fuzz" else [python, os.path.join(HERE, name)]
        rc = subprocess.call(cmd)
        if rc != 0:
            print(f"{name} exited with {rc}")


if __name__ == "__main__":
    main()
