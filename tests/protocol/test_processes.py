"""The kernel as a process among others: forked children, interrupts when
the parent passed SIGINT on as ignored, the parent's death, and the command
line that `jupyter run` gives."""
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
