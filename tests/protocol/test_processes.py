"""The kernel as a process among others: forked children, interrupts when
the parent passed SIGINT on as ignored, the parent's death, and the command
line that `jupyter run` gives."""
import json
import os
import pty
import queue
import select
import signal
import subprocess
import time

import pytest

from kernel_util import execute, of_type, stdout_of
from pyrometer_testing import KERNEL_ARGV, KERNEL_ENV, MODE, SPEC_DIR, start_kernel


def test_forked_child_writes_empty_string(kernel):
    """A forked child that writes '' must not free its line buffer (it
    died with `free(): double free`, exit -6, and ASan saw the same)."""
    km, kc = kernel
    reply, msgs = execute(kc, "import multiprocessing as mp, sys\n"
                              "def work():\n"
                              "    print('one')\n"
                              "    sys.stdout.write('')\n"
                              "    sys.stdout.write('')\n"
                              "    print('two', end='')\n"
                              "    sys.stdout.write('')\n"
                              "    print(' three')\n"
                              "    sys.stderr.write(''); sys.stderr.write('err\\n')\n"
                              "p = mp.get_context('fork').Process(target=work)\n"
                              "p.start(); p.join()\n"
                              "print('exit', p.exitcode)")
    assert reply["content"]["status"] == "ok"
    assert stdout_of(msgs) == "one\ntwo three\nexit 0\n"
    assert stdout_of(msgs, "stderr") == "err\n"


def kernels_with(fragment):
    """Pids of processes whose command line holds fragment."""
    pids = []
    for d in os.listdir("/proc"):
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if fragment.encode() in f.read():
                    pids.append(int(d))
        except (OSError, ValueError):
            pass
    return pids


def test_jupyter_run_extra_argument(tmp_path):
    """`jupyter run` appends the script's name to the kernel's argv: the
    kernel ignores it with a one-line warning and runs the script (it exited
    2, and `jupyter run` then waited forever)."""
    script = tmp_path / "hello.py"
    script.write_text("print('ran', 6 * 7)\n")
    runtime = tmp_path / "runtime"
    out, err = tmp_path / "out", tmp_path / "err"
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(runtime))
    try:
        with open(out, "w") as o, open(err, "w") as e:
            p = subprocess.Popen(["/usr/bin/python3", "-m", "jupyter", "run", "--kernel=pyrometer",
                                  str(script)], stdout=o, stderr=e, stdin=subprocess.DEVNULL,
                                 cwd=tmp_path, env=env)
            try:
                rc = p.wait(timeout=30)
            finally:
                p.kill()
                p.wait()
        # jupyter run leaves its kernel to go with it (JPY_PARENT_PID)
        deadline = time.time() + 3
        while kernels_with(str(runtime)) and time.time() < deadline:
            time.sleep(0.05)
        left = kernels_with(str(runtime))
    finally:
        for pid in kernels_with(str(runtime)):
            os.kill(pid, signal.SIGKILL)
    assert rc == 0, err.read_text()
    assert out.read_text() == "ran 42\n"
    warnings = [l for l in err.read_text().splitlines() if "extra argument" in l]
    prog = "python -m pyrometer_kernel" if MODE == "hosted" else "pyrometer-kernel"
    assert warnings == [f"{prog}: ignoring extra argument {script}"]
    assert left == [], "jupyter run left its kernel behind"


@pytest.mark.parametrize("mode", ["pyrometer", "pyrometer-msg"])
@pytest.mark.parametrize("code", ["while True: pass", "%lprun -f spin spin()"])
def test_interrupt_when_launched_with_sigint_ignored(mode, code):
    """A server started in the background (`jupyter lab &`, nohup) passes
    SIGINT on as ignored; the kernel takes it anyway, in both interrupt
    modes, and a loop (under %lprun too) stops at once (it ran on: %lprun
    for 104 s after the click; ipykernel stops in 0.33 s)."""
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited through exec
    try:
        km, kc = start_kernel(mode)
    finally:
        signal.signal(signal.SIGINT, old)
    try:
        reply, _ = execute(kc, "marker = 'still here'\n"
                               "def spin():\n    n = 0\n    while True:\n        n += 1\n")
        assert reply["content"]["status"] == "ok"
        # the report's first rendering imports what it needs: not what is timed
        reply, _ = execute(kc, "def once():\n    return 1\n%lprun -f once once()")
        assert reply["content"]["status"] == "ok"
        msg_id = kc.execute(code)
        time.sleep(0.5)
        t0 = time.time()
        km.interrupt_kernel()
        try:
            reply = kc.get_shell_msg(timeout=5)
        except queue.Empty:
            raise AssertionError("the cell did not stop within 5 s of the interrupt") from None
        elapsed = time.time() - t0
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        assert elapsed < 1.0, elapsed  # ipykernel: 0.33 s; the machine is shared
        r, msgs = execute(kc, "marker")
        assert of_type(msgs, "execute_result")[0]["content"]["data"]["text/plain"] == \
            "'still here'"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


PARENT = r"""
import sys, time
from jupyter_client.manager import KernelManager
km = KernelManager(kernel_name=sys.argv[1])
km.start_kernel()
kc = km.client()
kc.start_channels()
kc.wait_for_ready(timeout=30)
if sys.argv[2] == "busy":
    kc.execute("while True: pass")
    time.sleep(0.3)
print(km.provisioner.process.pid, flush=True)
time.sleep(600)
"""


def children_of(pid):
    kids = []
    for d in os.listdir("/proc"):
        try:
            with open(f"/proc/{d}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(d))
        except (OSError, ValueError):
            pass
    return kids


def gone(pid):
    """True once pid has exited (reaped, or a zombie waiting for it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.fixture(scope="module")
def wrapped_spec():
    """A kernelspec whose argv starts the kernel under a shell that stays its
    parent (as wrapper scripts and `conda run` do), so that the process named
    by JPY_PARENT_PID is its grandparent."""
    kdir = os.path.join(SPEC_DIR, "kernels", "pyrometer-wrapped")
    os.makedirs(kdir, exist_ok=True)
    with open(os.path.join(kdir, "kernel.json"), "w") as f:
        json.dump({"argv": ["/bin/sh", "-c", '"$@"; exit $?', "sh"] + KERNEL_ARGV,
                   "env": KERNEL_ENV, "display_name": "wrapped", "language": "python"}, f)
    return "pyrometer-wrapped"


@pytest.mark.parametrize("busy", ["idle", "busy"])
@pytest.mark.parametrize("spec", ["pyrometer", "wrapped"])
def test_exits_when_parent_dies(spec, busy, wrapped_spec):
    """jupyter_client sets JPY_PARENT_PID; when that process dies, the kernel
    exits within about a second, idle or running a loop, whether that process
    is its parent or an ancestor further up (it ran on as an orphan;
    ipykernel exits within its 1 s poll)."""
    name = wrapped_spec if spec == "wrapped" else spec
    pid = None
    parent = subprocess.Popen(["/usr/bin/python3", "-c", PARENT, name, busy],
                              stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())
        procs = [pid] + children_of(pid)  # the kernel, or the shell and the kernel
        assert len(procs) == (2 if spec == "wrapped" else 1)
        time.sleep(0.5)
        assert not any(gone(p) for p in procs)  # a living parent keeps its kernel
        parent.kill()
        parent.wait()
        t0 = time.time()
        while not all(gone(p) for p in procs) and time.time() - t0 < 5:
            time.sleep(0.02)
        elapsed = time.time() - t0
        assert all(gone(p) for p in procs), "the kernel outlived its parent by 5 s"
        assert elapsed < 2.0, elapsed  # normal build: 0.06-0.15 s; ASan exits in ~1 s
    finally:
        parent.kill()
        for p in [pid] + children_of(pid) if pid else []:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_closing_jupyter_console_ends_its_kernel():
    """Closing the terminal of `jupyter console` (SIGHUP) kills the console
    before it can shut its kernel down; the kernel, in a session of its own,
    must follow its parent rather than stay behind."""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execv("/usr/bin/python3", ["python3", "-m", "jupyter", "console",
                                          "--kernel=pyrometer"])
        finally:
            os._exit(127)
    kids = []
    try:
        seen, deadline = b"", time.time() + 30
        while b"In [" not in seen and time.time() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                seen += os.read(fd, 4096)
        assert b"In [" in seen, seen[-500:]
        kids = children_of(pid)
        assert len(kids) == 1 and not gone(kids[0])
        os.close(fd)  # the terminal closes: SIGHUP to the console
        fd = None
        os.waitpid(pid, 0)
        t0 = time.time()
        while not gone(kids[0]) and time.time() - t0 < 5:
            time.sleep(0.02)
        elapsed = time.time() - t0
        assert gone(kids[0]), "the kernel outlived jupyter console by 5 s"
        assert elapsed < 2.0, elapsed  # normal build: 0.06-0.15 s; ASan exits in ~1 s
    finally:
        if fd is not None:
            os.close(fd)
        for p in [pid] + kids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
