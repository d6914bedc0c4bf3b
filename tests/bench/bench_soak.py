#!/usr/bin/python3
"""bench_soak.py - what the kernel survives under long use (issue 16's soak).
Reported, never asserted by the suite: each part prints its figures and
whether the target held.

  requests   10,000 execute_requests with store_history false: RSS after
             them against RSS after warm-up (target: within 2 MiB)
  restarts   500 start/shutdown cycles through jupyter_client: kernel
             processes, the client's threads and fds, and /dev/shm entries
             left behind (target: none)
  history    a kill -9 loop while cells are being written to history: the
             file must open and pass PRAGMA integrity_check every time
  heartbeat  a cell that holds the GIL in C for 60 s (sum over a huge range):
             the heartbeat must answer every ping meanwhile

usage: bench_soak.py [requests] [restarts] [history] [heartbeat]
       [--requests N] [--restarts N] [--kills N] [--hold SECONDS]
PYROMETER_BUILD selects the build (default: build/).
"""
import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
from pyrometer_testing import KERNEL, cleanup, start_kernel  # noqa: E402


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def kernel_pids():
    out = subprocess.run(["pgrep", "-f", KERNEL], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def soak_requests(n):
    km, kc = start_kernel()
    try:
        pid = km.provisioner.pid
        body = "x = [i * i for i in range(200)]; d = {str(i): i for i in range(50)}"

        def run(count):
            for _ in range(count):
                reply = kc.execute_interactive(body, store_history=False, timeout=30,
                                               output_hook=lambda m: None)
                if reply["content"]["status"] != "ok":
                    raise SystemExit(f"cell failed: {reply['content']}")

        run(500)  # warm-up
        before = rss_kib(pid)
        t0 = time.time()
        run(n)
        elapsed = time.time() - t0
        after = rss_kib(pid)
        delta = (after - before) / 1024
        print(f"| requests | {n} execute_requests, store_history false, {elapsed:.1f} s | "
              f"RSS after warm-up {before / 1024:.1f} MiB, after {after / 1024:.1f} MiB, "
              f"growth {delta:+.2f} MiB | target within 2 MiB: "
              f"{'met' if abs(delta) <= 2 else 'NOT met'} |")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def fds():
    return len(os.listdir("/proc/self/fd"))


def shm():
    return set(os.listdir("/dev/shm"))


def soak_restarts(n):
    from jupyter_client.manager import KernelManager
    before_pids, before_shm = kernel_pids(), shm()
    # One cycle first, so the client's own lazily made state (zmq context,
    # loggers) is not counted as a leak of the kernel's.
    for i in range(n + 1):
        if i == 1:
            fd0, th0 = fds(), threading.active_count()
        km = KernelManager(kernel_name="pyrometer")
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=30)
        kc.stop_channels()
        km.shutdown_kernel(now=False)
        km.cleanup_resources()
    time.sleep(0.5)
    left = kernel_pids() - before_pids
    fd1, th1 = fds(), threading.active_count()
    shm_left = shm() - before_shm
    ok = not left and fd1 == fd0 and th1 == th0 and not shm_left
    print(f"| restarts | {n} start/shutdown cycles | kernel processes left {len(left)}, "
          f"client fds {fd0} -> {fd1}, client threads {th0} -> {th1}, /dev/shm entries left "
          f"{len(shm_left)} | target none left: {'met' if ok else 'NOT met'} |")


def soak_history(kills):
    path = os.environ["PYROMETER_HISTORY"]
    bad, rows = 0, []
    rng = random.Random(16)
    for i in range(kills):
        km, kc = start_kernel()
        pid = km.provisioner.pid
        stop = threading.Event()

        def writer():
            j = 0
            while not stop.is_set():
                try:
                    kc.execute(f"v{j} = {j}  # cell {i}.{j} " + "x" * rng.randrange(2000))
                except Exception:
                    return
                j += 1
                time.sleep(0.001)

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        time.sleep(rng.uniform(0.05, 0.6))
        os.kill(pid, signal.SIGKILL)
        stop.set()
        t.join(2)
        kc.stop_channels()
        km.cleanup_resources()
        try:
            con = sqlite3.connect(path)
            check = con.execute("PRAGMA integrity_check").fetchone()[0]
            rows.append(con.execute("SELECT count(*) FROM history").fetchone()[0])
            con.close()
        except sqlite3.Error as e:
            check = str(e)
        if check != "ok":
            bad += 1
            print(f"  kill {i}: history file not readable: {check}")
    print(f"| history | {kills} kill -9 during history writes | unreadable files {bad}, rows "
          f"kept {rows[0] if rows else 0} -> {rows[-1] if rows else 0} | target always readable: "
          f"{'met' if bad == 0 else 'NOT met'} |")


def soak_heartbeat(hold):
    km, kc = start_kernel()
    try:
        # Calibrate sum(range(n)) (one C call holding the GIL) to `hold` s.
        probe = 10 ** 7
        t0 = time.time()
        kc.execute_interactive(f"sum(range({probe}))", timeout=60, output_hook=lambda m: None)
        per = max((time.time() - t0) / probe, 1e-10)
        n = int(hold / per)
        info = km.get_connection_info()
        ctx = zmq.Context()
        hb = ctx.socket(zmq.REQ)
        hb.linger = 0
        hb.connect(f"tcp://{info['ip']}:{info['hb_port']}")
        msg_id = kc.execute(f"sum(range({n}))")
        t0, pings, missed, worst = time.time(), 0, 0, 0.0
        time.sleep(0.5)
        busy = True
        while busy:
            s = time.time()
            hb.send(b"ping")
            if hb.poll(3000):
                hb.recv()
                worst = max(worst, time.time() - s)
            else:
                missed += 1
                hb.close()
                hb = ctx.socket(zmq.REQ)
                hb.linger = 0
                hb.connect(f"tcp://{info['ip']}:{info['hb_port']}")
            pings += 1
            time.sleep(1)
            try:
                reply = kc.get_shell_msg(timeout=0.01)
                busy = reply["parent_header"].get("msg_id") != msg_id
            except Exception:
                pass
        held = time.time() - t0
        ctx.destroy(linger=0)
        print(f"| heartbeat | one C call holding the GIL for {held:.0f} s | {pings} pings, "
              f"{missed} unanswered, slowest answer {worst * 1000:.1f} ms | target all answered: "
              f"{'met' if missed == 0 else 'NOT met'} |")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("parts", nargs="*", default=["requests", "restarts", "history", "heartbeat"])
    ap.add_argument("--requests", type=int, default=10000)
    ap.add_argument("--restarts", type=int, default=500)
    ap.add_argument("--kills", type=int, default=100)
    ap.add_argument("--hold", type=float, default=60.0)
    a = ap.parse_args()
    os.environ["PYROMETER_HISTORY"] = os.path.join(tempfile.mkdtemp(prefix="soak-"), "history.sqlite")
    print("| soak | what | figures | target |\n| --- | --- | --- | --- |")
    try:
        for part in a.parts:
            {"requests": lambda: soak_requests(a.requests),
             "restarts": lambda: soak_restarts(a.restarts),
             "history": lambda: soak_history(a.kills),
             "heartbeat": lambda: soak_heartbeat(a.hold)}[part]()
    finally:
        cleanup()


if __name__ == "__main__":
    main()
