#!/usr/bin/python3
"""run_all.py - `make bench`: every benchmark of tests/bench, one after the
other, each printing its markdown table of medians and ratios against the
reference tool measured in the same run. Not part of the test suite: these
are timings on a shared machine, reported, never asserted."""
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHES = ["bench_kernel.py", "bench_ipython.py", "bench_prun.py", "bench_lprun.py",
           "bench_memprof.py", "bench_soak.py", "fuzz"]
# "fuzz": each libFuzzer target of tests/fuzz for 10 million executions.


def main():
    only = sys.argv[1:] or BENCHES
    for name in only:
        print(f"\n## {name}  ({time.strftime('%Y-%m-%d %H:%M:%S')}, load {os.getloadavg()[0]:.2f})\n",
              flush=True)
        cmd = FUZZ if name == "fuzz" else ["/usr/bin/python3", os.path.join(HERE, name)]
        rc = subprocess.call(cmd)
        if rc != 0:
            print(f"{name} exited with {rc}")


if __name__ == "__main__":
    main()
