"""The kernel as a process among others: forked children, interrupts when
the parent passed SIGINT on as ignored, the parent's death, and the command
line that `jupyter run` gives."""
import os
import signal
import subprocess

from kernel_util import execute, stdout_of


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
