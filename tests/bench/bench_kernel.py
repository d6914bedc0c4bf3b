#!/usr/bin/python3
"""bench_kernel.py - pyrometer-kernel against ipykernel, side by side in one
run: start to first kernel_info_reply, `pass` execute round trip (a lean
raw-zmq client, and jupyter_client's blocking client), and idle RSS.

The lean round trip is also measured against echo_kernel (built from
echo_kernel.c), which answers on the same libraries and runs no code: the
floor that this client, libzmq and this machine allow.

usage: bench_kernel.py [--runs N] [--rounds N]   (PYROMETER_BUILD selects the build)
Prints a markdown table of medians and ratios (pyrometer / ipykernel).
"""
import argparse
import hashlib
import hmac
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import zmq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("PYROMETER_BUILD", os.path.join(ROOT, "build"))


def build_kernelspec():
    """(form, python) of the build's own kernelspec: hosted (python3.X -m
    pyrometer_kernel, the form on 3.12+) or embedded (pyrometer-kernel,
    Debian 12's 3.11), and the Python it runs."""
    try:
        with open(os.path.join(BUILD, "kernelspec", "kernel.json")) as f:
            argv = json.load(f)["argv"]
    except (OSError, ValueError, KeyError):
        argv = []
    if argv[1:3] == ["-m", "pyrometer_kernel"]:
        return "hosted", argv[0]
    return "embedded", "/usr/bin/python3"


# pyrometer in the form its kernelspec starts, and ipykernel on the same Python.
FORM, PYTHON = build_kernelspec()
KERNELS = {
    "pyrometer": ([os.path.join(BUILD, "kernel", "pyrometer-kernel"), "-f"] if FORM == "embedded"
                  else [PYTHON, "-m", "pyrometer_kernel", "-f"]),
    "ipykernel": [PYTHON, "-m", "ipykernel_launcher", "-f"],
    "echo": [os.path.join(BUILD, "tests", "echo_kernel"), "-f"],
}
if FORM == "hosted":  # where the launcher and _pyrometer_host are
    os.environ["PYTHONPATH"] = os.path.join(BUILD, "kernel")


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class LeanClient:
    """A minimal signed client on raw pyzmq: no threads, no queues, no poll
    before a receive, and nothing decoded that it does not need. Its own cost
    is part of every round trip it measures, for both kernels alike, so it
    is kept small: the header is one string template, HMAC is keyed once,
    and a message is decoded only once its raw frames show it is the one
    awaited."""

    def __init__(self, info):
        self.key = info["key"].encode()
        self.mac = hmac.new(self.key, digestmod=hashlib.sha256)  # keyed once, copied per message
        self.session = str(uuid.uuid4())
        # The session is a UUID and msg_type one of ours: nothing to escape.
        self.header = ('{"msg_id": "%s", "session": "' + self.session + '", "username": "bench",'
                       ' "date": "2026-01-01T00:00:00.000000Z", "msg_type": "%s", "version": "5.3"}')
        self.count = 0
        self.timeouts = {}  # socket -> RCVTIMEO last set
        self.contents = {}  # code -> its encoded execute_request content
        self.ctx = zmq.Context()
        # The kernel binds after we connect: retry every millisecond rather
        # than zmq's default 100 ms, so the retry policy is not measured.
        self.ctx.setsockopt(zmq.RECONNECT_IVL, 1)
        ip = info["ip"]
        self.shell = self.ctx.socket(zmq.DEALER)
        self.shell.connect(f"tcp://{ip}:{info['shell_port']}")
        self.iopub = self.ctx.socket(zmq.SUB)
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
        self.iopub.connect(f"tcp://{ip}:{info['iopub_port']}")

    def send(self, msg_type, content):
        self.count += 1
        msg_id = "%s-%d" % (self.session, self.count)  # unique, as the protocol asks
        if not isinstance(content, bytes):
            content = json.dumps(content).encode()
        parts = [(self.header % (msg_id, msg_type)).encode(), b"{}", b"{}", content]
        mac = self.mac.copy()
        for p in parts:
            mac.update(p)
        self.shell.send_multipart([b"<IDS|MSG>", mac.hexdigest().encode()] + parts)
        return msg_id

    def set_timeout(self, sock, timeout):
        ms = int(timeout * 1000)
        if self.timeouts.get(sock) != ms:
            sock.setsockopt(zmq.RCVTIMEO, ms)
            self.timeouts[sock] = ms

    # Frames after <IDS|MSG>: signature, header, parent, metadata, content;
    # counted from the end, so identities need no search.
    def wait_reply(self, msg_id, timeout=30):
        """The raw content frame of the reply to msg_id."""
        key = msg_id.encode()
        self.set_timeout(self.shell, timeout)
        while True:
            try:
                frames = self.shell.recv_multipart()
            except zmq.Again:
                raise TimeoutError from None
            if key in frames[-3]:
                return frames[-1]

    def wait_idle(self, msg_id, timeout=30):
        key = msg_id.encode()
        self.set_timeout(self.iopub, timeout)
        while True:
            try:
                frames = self.iopub.recv_multipart()
            except zmq.Again:
                raise TimeoutError from None
            if (key in frames[-3] and b'"status"' in frames[-4] and b"idle" in frames[-1]
                    and json.loads(frames[-1]).get("execution_state") == "idle"
                    and json.loads(frames[-4])["msg_type"] == "status"):
                return

    def execute(self, code, timeout=30):
        """Runs code; returns the raw content frame of its reply."""
        content = self.contents.get(code)
        if content is None:
            content = self.contents[code] = json.dumps(
                {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                 "allow_stdin": False, "stop_on_error": True}).encode()
        mid = self.send("execute_request", content)
        reply = self.wait_reply(mid, timeout)
        self.wait_idle(mid, timeout)
        return reply

    def close(self):
        self.shell.close(0)
        self.iopub.close(0)
        self.ctx.term()


def start(name, tmp):
    ports = free_ports(5)
    info = dict(zip(["shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"], ports),
                transport="tcp", ip="127.0.0.1", key=str(uuid.uuid4()),
                signature_scheme="hmac-sha256", kernel_name=name)
    path = os.path.join(tmp, f"{name}-{uuid.uuid4().hex[:6]}.json")
    with open(path, "w") as f:
        json.dump(info, f)
    t0 = time.perf_counter()
    proc = subprocess.Popen(KERNELS[name] + [path], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    client = LeanClient(info)
    mid = client.send("kernel_info_request", {})
    client.wait_reply(mid)
    startup = time.perf_counter() - t0
    mid = client.send("execute_request", {"code": "pass", "silent": True, "store_history": False,
                                          "user_expressions": {}, "allow_stdin": False})
    client.wait_reply(mid)
    first_exec = time.perf_counter() - t0
    return proc, client, info, path, (startup, first_exec)


def stop(proc, client):
    client.close()
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_ns(pid):
    """CPU time of each of pid's threads, in ns (/proc/PID/task/*/schedstat)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[tid] = int(f.read().split()[0])
        except OSError:
            pass  # the thread ended
    return out


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024


def measure_once(name, rounds, tmp, res):
    """One start of kernel `name`: appends its figures to res's lists."""
    from jupyter_client import BlockingKernelClient
    proc, client, info, path, startup = start(name, tmp)
    res["startup"].append(startup[0])
    res["first"].append(startup[1])
    # let iopub subscribe, then warm up (untimed, the same for both kernels)
    for _ in range(50):
        try:
            client.execute("pass", timeout=1)
            break
        except TimeoutError:
            continue
    for _ in range(20):
        reply = json.loads(client.execute("pass"))
    if reply.get("status") != "ok" or reply.get("execution_count") is None:
        sys.exit(f"{name}: unexpected execute_reply {reply}")
    time.sleep(0.5)
    res["rss"].append(rss_mib(proc.pid))  # idle, started and warmed up
    cpu0 = cpu_ns(proc.pid)
    for _ in range(rounds):
        t = time.perf_counter()
        client.execute("pass")
        res["lean"].append(time.perf_counter() - t)
    cpu1 = cpu_ns(proc.pid)
    res["cpu"].append(sum(cpu1[t] - cpu0.get(t, 0) for t in cpu1) / rounds / 1e9)
    if name == "echo":  # no heartbeat for jupyter_client; its RSS says nothing
        stop(proc, client)
        return
    kc = BlockingKernelClient()
    kc.load_connection_file(path)
    kc.start_channels()
    kc.wait_for_ready(timeout=30)
    for _ in range(rounds):
        t = time.perf_counter()
        kc.execute_interactive("pass", timeout=30)
        res["jc"].append(time.perf_counter() - t)
    kc.stop_channels()
    time.sleep(0.5)
    res["rss_after"].append(rss_mib(proc.pid))  # In, _iN and linecache keep every cell
    stop(proc, client)


def measure(runs, rounds, tmp):
    """Starts the two kernels in turn, runs times each, so that a slow
    stretch of this shared machine weighs on both alike; returns medians."""
    names = ("pyrometer", "ipykernel", "echo")
    res = {n: {k: [] for k in ("startup", "first", "lean", "cpu", "jc", "rss", "rss_after")}
           for n in names}
    res["bare"] = []
    for _ in range(runs):
        for n in names:
            measure_once(n, rounds, tmp, res[n])
        # the interpreter alone, which starts every hosted kernel and ipykernel
        t = time.perf_counter()
        subprocess.run([PYTHON, "-c", "pass"], check=True)
        res["bare"].append(time.perf_counter() - t)
    bare = statistics.median(res.pop("bare"))
    out = {n: {k: statistics.median(v) for k, v in r.items() if v} for n, r in res.items()}
    out["bare"] = bare
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        res = measure(args.runs, args.rounds, tmp)
    p, i, e = res["pyrometer"], res["ipykernel"], res["echo"]
    version = subprocess.run([PYTHON, "-c", "import sys, ipykernel; print(sys.version.split()[0], "
                              "ipykernel.__version__)"], capture_output=True, text=True).stdout.split()
    print(f"kernel benchmark: median of {args.runs} starts of each kernel, taken in turn, "
          f"{args.rounds} round trips each; Python {version[0]}, pyrometer {FORM} "
          f"({' '.join(KERNELS['pyrometer'][:3])}), ipykernel {version[1]}\n")
    print("| measure | ipykernel | pyrometer | pyrometer / ipykernel |")
    print("| --- | --- | --- | --- |")
    print(f"| start to first kernel_info_reply | {i['startup']*1e3:.0f} ms | {p['startup']*1e3:.1f} ms "
          f"| {p['startup']/i['startup']:.3f} (1/{i['startup']/p['startup']:.0f}) |")
    b = res["bare"]
    print(f"| the interpreter alone, `{os.path.basename(PYTHON)} -c pass`, start to exit | "
          f"{b*1e3:.1f} ms | {b*1e3:.1f} ms | {b/i['startup']:.3f} (1/{i['startup']/b:.0f}) of "
          f"ipykernel's start: the floor of a hosted kernel's ratio |")
    print(f"| start to first execute_reply | {i['first']*1e3:.0f} ms | {p['first']*1e3:.1f} ms "
          f"| {p['first']/i['first']:.3f} (1/{i['first']/p['first']:.0f}) |")
    print(f"| `pass` round trip, lean raw-zmq client | {i['lean']*1e3:.2f} ms | {p['lean']*1e3:.3f} ms "
          f"| {p['lean']/i['lean']:.3f} (1/{i['lean']/p['lean']:.0f}) |")
    print(f"| `pass` round trip, lean client, C echo kernel (the floor) | {i['lean']*1e3:.2f} ms "
          f"| {e['lean']*1e3:.3f} ms (echo) | {e['lean']/i['lean']:.3f} (echo / ipykernel); "
          f"pyrometer / echo {p['lean']/e['lean']:.2f} |")
    print(f"| kernel CPU per lean round trip, all threads | {i['cpu']*1e6:.0f} µs | {p['cpu']*1e6:.0f} µs "
          f"| {p['cpu']/i['cpu']:.3f}; echo {e['cpu']*1e6:.0f} µs |")
    print(f"| `pass` round trip, jupyter_client | {i['jc']*1e3:.2f} ms | {p['jc']*1e3:.2f} ms "
          f"| {p['jc']/i['jc']:.2f} |")
    print(f"| idle RSS, after start and 21 warm-up cells | {i['rss']:.1f} MiB | {p['rss']:.1f} MiB "
          f"| {p['rss']/i['rss']:.3f} (1/{i['rss']/p['rss']:.1f}) |")
    print(f"| RSS after {2 * args.rounds} more cells | {i['rss_after']:.1f} MiB | {p['rss_after']:.1f} MiB "
          f"| {p['rss_after']/i['rss_after']:.3f} (1/{i['rss_after']/p['rss_after']:.1f}) |")


if __name__ == "__main__":
    main()
