#!/usr/bin/python3
"""bench_ipython.py - both paths of IPython on demand, pyrometer against
ipykernel, side by side in one run:

- start to the first execute_reply of `pass`, and RSS after 20 plain cells
  (pyrometer's plain path, which never imports IPython);
- showing a 1000-item list of dicts as text/plain (pyrometer's own printer,
  IPython's layout, against IPython's printer under ipykernel): the cell's
  round trip less that of a cell whose value is None;
- the first cell that needs IPython (`%xmode Plain`: pyrometer brings
  IPython's shell in), start to that cell's reply, the same magic once more,
  and RSS after it;
- the floor for that first cell: a plain `python3 -c` that imports
  IPython's InteractiveShell and makes one, timed in the same run.

Kernels are started in turn through jupyter_client; medians of --runs starts.
usage: bench_ipython.py [--runs N]   (PYROMETER_BUILD selects the build)
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "protocol"))

from pyrometer_testing import cleanup  # noqa: E402  (kernelspecs for the build)
from kernel_util import execute  # noqa: E402


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def timed(kc, code):
    t = time.perf_counter()
    reply, _ = execute(kc, code, timeout=120)
    dt = time.perf_counter() - t
    assert reply["content"]["status"] == "ok", reply["content"]
    return dt


def one(name):
    from jupyter_client.manager import KernelManager
    km = KernelManager(kernel_name=name)
    os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    t0 = time.perf_counter()
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    timed(kc, "pass")
    start = time.perf_counter() - t0
    pid = km.provisioner.process.pid
    for i in range(20):
        timed(kc, f"x{i} = {i}")
    r = {"start": start * 1e3, "rss_plain": rss_mib(pid)}
    # A value's text/plain, laid out as IPython lays it out: pyrometer's C
    # printer (before IPython is in) against IPython's under ipykernel.
    timed(kc, "v = [{'id': i, 'name': 'item%d' % i, 'tags': ['a', 'b'], 'score': i / 7}"
              " for i in range(1000)]")
    r["show_value"] = statistics.median(timed(kc, "v") for _ in range(7)) * 1e3
    r["show_empty"] = statistics.median(timed(kc, "None") for _ in range(7)) * 1e3
    r["show_value"] -= r["show_empty"]
    reply, msgs = execute(kc, "import sys; 'IPython' in sys.modules", timeout=60)
    r["ipython_loaded_plain"] = any(
        m["msg_type"] == "execute_result" and m["content"]["data"]["text/plain"] == "True"
        for m in msgs)
    r["first_magic"] = timed(kc, "%xmode Plain") * 1e3
    r["start_to_magic"] = r["start"] + r["first_magic"]
    r["next_magic"] = timed(kc, "%xmode Context") * 1e3
    r["rss_ipython"] = rss_mib(pid)
    kc.stop_channels()
    km.shutdown_kernel(now=True)
    return r


FLOOR = ("import time; t = time.perf_counter()\n"
         "from IPython.core.interactiveshell import InteractiveShell\n"
         "InteractiveShell.instance()\n"
         "print((time.perf_counter() - t) * 1e3)")


def floor():
    out = subprocess.run([sys.executable, "-c", FLOOR], capture_output=True, text=True,
                         env=dict(os.environ, IPYTHONDIR=os.environ["IPYTHONDIR"]))
    return float(out.stdout.split()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    results = {"pyrometer": [], "python3": []}
    floors = []
    try:
        for _ in range(args.runs):
            for name in results:
                results[name].append(one(name))
            floors.append(floor())
    finally:
        cleanup()
    rows = [("start to first execute_reply", "start", "ms"),
            ("RSS after 20 plain cells", "rss_plain", "MiB"),
            ("showing a 1000-item list of dicts (over a None cell)", "show_value", "ms"),
            ("first cell needing IPython (%xmode Plain)", "first_magic", "ms"),
            ("start to the first IPython cell's reply", "start_to_magic", "ms"),
            ("the next IPython magic", "next_magic", "ms"),
            ("RSS once IPython is in", "rss_ipython", "MiB")]
    print(f"{args.runs} starts of each kernel, medians\n")
    print("| measure | ipykernel | pyrometer | pyrometer / ipykernel |")
    print("| --- | ---: | ---: | ---: |")
    for label, key, unit in rows:
        ipk = statistics.median(r[key] for r in results["python3"])
        pyr = statistics.median(r[key] for r in results["pyrometer"])
        print(f"| {label} | {ipk:.1f} {unit} | {pyr:.1f} {unit} | {pyr / ipk:.3f} |")
    plain = {r["ipython_loaded_plain"] for r in results["pyrometer"]}
    print(f"\nfloor: python3 -c importing IPython's InteractiveShell and making one: "
          f"{statistics.median(floors):.1f} ms")
    print(f"IPython imported by pyrometer's plain cells: {plain}; "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
