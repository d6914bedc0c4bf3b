"""The kernel as a process among others: forked children, interrupts when
the parent passed SIGINT on as ignored, the parent's death, and the command
line that `jupyter run` gives."""
import os
import queue
import signal
import subprocess
import time

import pytest

from kernel_util import execute, of_type, stdout_of
from pyrometer_testing import start_kernel


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
    finally:
        for pid in kernels_with(str(runtime)):
            os.kill(pid, signal.SIGKILL)
    assert rc == 0, err.read_text()
    assert out.read_text() == "ran 42\n"
    warnings = [l for l in err.read_text().splitlines() if "extra argument" in l]
    assert warnings == [f"pyrometer-kernel: ignoring extra argument {script}"]


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
