"""kernel_info, is_complete, comms, the control channel, interrupts, input(),
shutdown and transports, through jupyter_client against the built kernel."""
import contextlib
import json
import os
import queue
import signal
import subprocess
import tempfile
import time

import pytest
import zmq
from jupyter_client import BlockingKernelClient, KernelManager

from pyrometer_testing import KERNEL, SANITIZED, python_version, start_kernel
from kernel_util import execute, of_type, stdout_of, wait_for_iopub, wait_idle


def test_kernel_info(kernel):
    km, kc = kernel
    msg_id = kc.kernel_info()
    reply = kc.get_shell_msg(timeout=5)
    c = reply["content"]
    assert reply["parent_header"]["msg_id"] == msg_id
    assert c["status"] == "ok"
    assert tuple(int(x) for x in c["protocol_version"].split(".")) >= (5, 3)
    assert c["implementation"] == "pyrometer" and c["implementation_version"]
    li = c["language_info"]
    assert li["name"] == "python" and li["version"] == "%d.%d.%d" % python_version()
    assert li["mimetype"] == "text/x-python" and li["file_extension"] == ".py"
    assert li["pygments_lexer"] == "ipython3" and li["nbconvert_exporter"] == "python"
    assert li["codemirror_mode"] == {"name": "ipython", "version": 3}
    assert "pyrometer" in c["banner"] and c["help_links"]
    hdr = reply["header"]
    assert hdr["version"] == "5.3" and hdr["date"]
    assert reply["metadata"] == {}


@pytest.mark.parametrize("code,status,indent", [
    ("x = 1", "complete", None),
    ("for i in range(3):", "incomplete", "    "),
    ("if x:\n    y = (1,", "incomplete", "    "),
    ("def f(:", "invalid", None),
    ("%time 1", "complete", None),
    ("a = '''abc", "incomplete", ""),
    # A cell magic ends with a blank line, as in IPython (jupyter console
    # goes on reading the body after `%%time` and Enter).
    ("%%time", "incomplete", ""),
    ("%%bash\necho hi", "incomplete", ""),
    ("%%time\nfor i in range(3):\n    x = i\n", "incomplete", "    "),
    ("%%time\nx = 1\n\n", "complete", None),
    ("%%time\nx = 1\n  ", "complete", None),
    ("  %%time\n  x = 1", "incomplete", ""),
])
def test_is_complete(kernel, code, status, indent):
    km, kc = kernel
    kc.is_complete(code)
    c = kc.get_shell_msg(timeout=5)["content"]
    assert c["status"] == status
    if indent is not None:
        assert c["indent"] == indent


def test_comm_info_and_unknown_comm_open(kernel):
    km, kc = kernel
    kc.comm_info()
    assert kc.get_shell_msg(timeout=5)["content"] == {"status": "ok", "comms": {}}
    msg = kc.session.msg("comm_open", {"comm_id": "c0ffee", "target_name": "nope", "data": {}})
    kc.shell_channel.send(msg)
    deadline = time.time() + 5
    while time.time() < deadline:
        m = kc.get_iopub_msg(timeout=5)
        if m["msg_type"] == "comm_close":
            assert m["content"]["comm_id"] == "c0ffee"
            break
    else:
        pytest.fail("no comm_close")


def test_status_around_control_requests(kernel):
    km, kc = kernel
    msg = kc.session.msg("kernel_info_request")
    kc.control_channel.send(msg)
    reply = kc.get_control_msg(timeout=5)
    assert reply["msg_type"] == "kernel_info_reply"
    states = []
    while len(states) < 2:
        m = kc.get_iopub_msg(timeout=5)
        if m["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            states.append(m["content"]["execution_state"])
    assert states == ["busy", "idle"]


def test_control_answers_while_busy(fresh_kernel):
    km, kc = fresh_kernel
    kc.execute("while True: pass")
    time.sleep(0.3)
    msg = kc.session.msg("kernel_info_request")
    t0 = time.time()
    kc.control_channel.send(msg)
    reply = kc.get_control_msg(timeout=5)
    assert reply["msg_type"] == "kernel_info_reply"
    assert time.time() - t0 < 1.0
    # heartbeat stays alive while the GIL is held
    assert km.is_alive()
    assert kc.hb_channel.is_beating()
    # shutdown on control while the loop runs
    km.request_shutdown()
    deadline = time.time() + 10
    while km.is_alive() and time.time() < deadline:
        time.sleep(0.05)
    assert not km.is_alive()
    assert km.provisioner.process.returncode is not None


def _interrupt_case(km, kc, code, wait_for=None):
    kc.execute("marker = 'still here'")
    kc.get_shell_msg(timeout=5)
    msg_id = kc.execute(code, allow_stdin=True)
    if wait_for:
        kc.get_stdin_msg(timeout=5)
    else:
        time.sleep(0.5)
    t0 = time.time()
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=5)
    elapsed = time.time() - t0
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert elapsed < 0.2, elapsed
    r, msgs = execute(kc, "marker")
    assert of_type(msgs, "execute_result")[0]["content"]["data"]["text/plain"] == "'still here'"


@pytest.mark.parametrize("mode", ["pyrometer", "pyrometer-msg"])
@pytest.mark.parametrize("code,stdin", [("while True: pass", False),
                                        ("import time; time.sleep(100)", False),
                                        ("input('say: ')", True)])
def test_interrupt(mode, code, stdin):
    km, kc = start_kernel(mode)
    try:
        assert km.kernel_spec.interrupt_mode == ("signal" if mode == "pyrometer" else "message")
        _interrupt_case(km, kc, code, wait_for=stdin)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_interrupt_while_idle_does_not_break_next_cell(kernel):
    km, kc = kernel
    km.interrupt_kernel()
    time.sleep(0.2)
    reply, msgs = execute(kc, "sum(range(10))")
    assert reply["content"]["status"] == "ok"
    assert of_type(msgs, "execute_result")[0]["content"]["data"]["text/plain"] == "45"


def test_input_roundtrip(kernel):
    km, kc = kernel
    msg_id = kc.execute("name = input('Who? '); print('hi', name)", allow_stdin=True)
    req = kc.get_stdin_msg(timeout=5)
    assert req["msg_type"] == "input_request"
    assert req["content"] == {"prompt": "Who? ", "password": False}
    assert req["parent_header"]["msg_id"] == msg_id
    kc.input("Ada")
    reply = kc.get_shell_msg(timeout=5)
    assert reply["content"]["status"] == "ok"
    r, msgs = execute(kc, "name")
    assert of_type(msgs, "execute_result")[0]["content"]["data"]["text/plain"] == "'Ada'"


def test_getpass_is_hidden(kernel):
    km, kc = kernel
    kc.execute("import getpass; pw = getpass.getpass()", allow_stdin=True)
    req = kc.get_stdin_msg(timeout=5)
    assert req["content"] == {"prompt": "Password: ", "password": True}
    kc.input("s3cret")
    assert kc.get_shell_msg(timeout=5)["content"]["status"] == "ok"
    r, msgs = execute(kc, "len(pw)")
    assert of_type(msgs, "execute_result")[0]["content"]["data"]["text/plain"] == "6"


def test_input_without_stdin(kernel):
    km, kc = kernel
    reply, msgs = execute(kc, "input('x')", allow_stdin=False)
    assert reply["content"]["ename"] == "StdinNotImplementedError"
    assert "does not support input requests" in reply["content"]["evalue"]


def test_shutdown_and_restart(fresh_kernel):
    km, kc = fresh_kernel
    execute(kc, "state = 1")
    pid = km.provisioner.process.pid
    km.restart_kernel(now=False)
    assert km.provisioner.process.pid != pid
    kc.wait_for_ready(timeout=10)
    wait_for_iopub(kc)
    reply, msgs = execute(kc, "'state' in globals()")
    assert of_type(msgs, "execute_result")[0]["content"]["data"]["text/plain"] == "False"
    proc = km.provisioner.process
    kc.shutdown()
    reply = kc.get_control_msg(timeout=5)
    assert reply["msg_type"] == "shutdown_reply"
    assert reply["content"] == {"status": "ok", "restart": False}
    proc.wait(timeout=5)
    assert proc.returncode == 0


def _connection_file(tmp, transport, ip):
    ports = [0] * 5
    if transport == "tcp":
        import socket
        socks = [socket.socket() for _ in range(5)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        ports = [s.getsockname()[1] for s in socks]
        for s in socks:
            s.close()
    else:
        ports = [1, 2, 3, 4, 5]
    info = dict(zip(["shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"], ports),
                transport=transport, ip=ip, key="a-key", signature_scheme="hmac-sha256",
                kernel_name="pyrometer")
    path = os.path.join(tmp, "conn.json")
    with open(path, "w") as f:
        json.dump(info, f)
    return path, info


@pytest.mark.parametrize("transport,ip", [("ipc", None), ("tcp", "0.0.0.0")])
def test_transports(transport, ip):
    with tempfile.TemporaryDirectory() as tmp:
        ip = ip or os.path.join(tmp, "kern")
        path, info = _connection_file(tmp, transport, ip)
        proc = subprocess.Popen([KERNEL, "-f", path], stderr=subprocess.PIPE)
        try:
            kc = BlockingKernelClient()
            kc.load_connection_file(path)
            if transport == "tcp":
                kc.ip = "127.0.0.1"
            kc.start_channels()
            kc.wait_for_ready(timeout=10)
            r, msgs = execute(kc, "print('over', %r)" % transport)
            assert stdout_of(msgs) == f"over {transport}\n"
            if transport == "ipc":
                assert os.path.exists(f"{ip}-{info['shell_port']}")
            else:
                out = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
                assert f"0.0.0.0:{info['shell_port']}" in out
            kc.shutdown()
            proc.wait(timeout=10)
            kc.stop_channels()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_iopub_welcome_on_subscribe(kernel):
    km, kc = kernel
    info = km.get_connection_info()
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.connect(f"tcp://{info['ip']}:{info['iopub_port']}")
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    try:
        assert sub.poll(5000)
        frames = sub.recv_multipart()
        i = frames.index(b"<IDS|MSG>")
        header = json.loads(frames[i + 2])
        assert header["msg_type"] == "iopub_welcome"
        assert json.loads(frames[i + 5]) == {"subscription": ""}
    finally:
        sub.close(0)


def thread_policies(pid):
    """{thread name: set of scheduling policies} of pid's threads (stat field 41)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            name = f.read().strip()
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        out.setdefault(name, set()).add(int(fields[41 - 3]))
    return out


def test_zmq_threads_are_sched_batch_and_the_main_thread_is_not(kernel):
    """libzmq's threads run SCHED_BATCH (they never preempt the thread that
    woke them), taken from the main thread around the first socket; the
    main thread, which runs the cells, is back to SCHED_OTHER."""
    km, kc = kernel
    pid = km.provisioner.process.pid
    policies = thread_policies(pid)
    assert policies["ZMQbg/IO/0"] == {os.SCHED_BATCH}
    assert policies["ZMQbg/Reaper"] == {os.SCHED_BATCH}
    with open(f"/proc/{pid}/stat") as f:  # the main thread
        assert int(f.read().rsplit(")", 1)[1].split()[41 - 3]) == os.SCHED_OTHER


def iopub_frames(sub, timeout_ms=5000):
    """(msg_type, parent msg_id, content) of each message until none comes
    for timeout_ms, as a raw SUB socket receives them."""
    got = []
    while sub.poll(timeout_ms):
        frames = sub.recv_multipart()
        i = frames.index(b"<IDS|MSG>")
        header, parent = json.loads(frames[i + 2]), json.loads(frames[i + 3])
        got.append((header["msg_type"], parent.get("msg_id"), json.loads(frames[i + 5])))
        timeout_ms = 500
    return got


def test_output_waits_for_the_first_subscriber():
    """A client that executes as soon as the kernel answers, before its SUB
    socket has joined IOPub (`jupyter run` does: it waited for ever when
    the output had gone out to nobody), still gets the cell's messages,
    after its iopub_welcome."""
    km = KernelManager(kernel_name="pyrometer")
    km.start_kernel()
    kc = km.client()
    kc.start_channels(iopub=False, stdin=False, hb=False)
    sub = None
    try:
        msg_id = kc.execute("print('before anyone listened')")
        reply = kc.get_shell_msg(timeout=20)
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["status"] == "ok"
        info = km.get_connection_info()
        sub = zmq.Context.instance().socket(zmq.SUB)
        sub.connect(f"tcp://{info['ip']}:{info['iopub_port']}")
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        got = iopub_frames(sub)
        assert got[0] == ("iopub_welcome", None, {"subscription": ""})
        mine = [(t, c) for t, parent, c in got if parent == msg_id]
        assert [t for t, c in mine] == ["status", "execute_input", "stream", "status"]
        assert mine[0][1] == {"execution_state": "busy"}
        assert mine[2][1] == {"name": "stdout", "text": "before anyone listened\n"}
        assert mine[3][1] == {"execution_state": "idle"}
        # later messages go straight out, once each
        msg_id = kc.execute("print('after')")
        kc.get_shell_msg(timeout=20)
        later = [(t, c) for t, parent, c in iopub_frames(sub) if parent == msg_id]
        assert [t for t, c in later] == ["status", "execute_input", "stream", "status"]
    finally:
        if sub is not None:
            sub.close(0)
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def announcements_while_running(kc, msg_id, seconds=0.8):
    """What iopub brings for msg_id within seconds (statuses by state),
    asserting that its reply has not come meanwhile."""
    seen = []
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            m = kc.get_iopub_msg(timeout=max(0.01, deadline - time.time()))
        except queue.Empty:
            break
        if m["parent_header"].get("msg_id") == msg_id:
            seen.append(m["msg_type"] if m["msg_type"] != "status"
                        else m["content"]["execution_state"])
    with pytest.raises(queue.Empty):
        kc.get_shell_msg(timeout=0)
    return seen


def test_announcements_do_not_wait_for_a_long_cell(kernel):
    """busy and execute_input may wait for the next message only briefly:
    while a 1.5 s cell still runs, the frontend has both (and no reply)."""
    km, kc = kernel
    msg_id = kc.execute("import time; time.sleep(1.5)")
    assert announcements_while_running(kc, msg_id) == ["busy", "execute_input"]
    reply = kc.get_shell_msg(timeout=10)
    assert reply["parent_header"]["msg_id"] == msg_id
    wait_idle(kc, msg_id)


def test_announcements_of_a_long_cell_right_after_quick_ones(kernel):
    """The relay's timer, armed by a quick cell's announcements and left
    armed when they left with its reply, fires early for the next cell's:
    a 1.5 s cell queued right behind quick ones still has its busy and
    execute_input out while it runs."""
    km, kc = kernel
    quick = [kc.execute(f"q = {i}") for i in range(10)]
    msg_id = kc.execute("import time; time.sleep(1.5)")
    for _ in quick:
        assert kc.get_shell_msg(timeout=10)["parent_header"]["msg_id"] in quick
    assert announcements_while_running(kc, msg_id) == ["busy", "execute_input"]
    reply = kc.get_shell_msg(timeout=10)
    assert reply["parent_header"]["msg_id"] == msg_id
    wait_idle(kc, msg_id)


def test_quick_cells_publish_in_order(kernel):
    """Announcements held for a quick cell leave before everything after
    them: exactly busy, execute_input, stream, execute_result, idle, and
    for a silent cell busy and idle, each time."""
    km, kc = kernel
    for i in range(20):
        reply, msgs = execute(kc, f"print({i}); {i}")
        assert [m["msg_type"] if m["msg_type"] != "status" else m["content"]["execution_state"]
                for m in msgs] == ["busy", "execute_input", "stream", "execute_result", "idle"]
        assert msgs[2]["content"]["text"] == f"{i}\n"
        reply, msgs = execute(kc, "x = 1", silent=True)
        assert [m["content"].get("execution_state") for m in msgs] == ["busy", "idle"]


def test_input_request_follows_the_announcements(kernel):
    """A cell waiting in input() does not hold back its busy and
    execute_input: the frontend has both while the prompt is open."""
    km, kc = kernel
    msg_id = kc.execute("v = input('? ')", allow_stdin=True)
    req = kc.get_stdin_msg(timeout=5)
    assert req["msg_type"] == "input_request"
    seen = []
    deadline = time.time() + 2
    while len(seen) < 2 and time.time() < deadline:
        try:
            m = kc.get_iopub_msg(timeout=0.1)
        except queue.Empty:
            continue
        if m["parent_header"].get("msg_id") == msg_id:
            seen.append(m["msg_type"])
    assert seen == ["status", "execute_input"]
    kc.input("42")
    reply = kc.get_shell_msg(timeout=5)
    assert reply["content"]["status"] == "ok"
    wait_idle(kc, msg_id)


def test_shutdown_with_a_thread_that_never_ends(fresh_kernel):
    km, kc = fresh_kernel
    execute(kc, "import threading, time\n"
                "threading.Thread(target=lambda: time.sleep(1000)).start()")
    proc = km.provisioner.process
    t0 = time.time()
    kc.shutdown()
    proc.wait(timeout=10)
    assert proc.returncode == 0
    assert time.time() - t0 < 6


@contextlib.contextmanager
def kernel_with_stderr(err, env=None):
    """A kernel whose stderr goes to the file err; stopped, killed if it
    still runs, whatever the test did."""
    km, kc = start_kernel(stderr=open(err, "w"), **({"env": env} if env else {}))
    try:
        yield km, kc
    finally:
        kc.stop_channels()
        if km.is_alive():
            km.shutdown_kernel(now=True)


def test_clean_exit_and_sanitizers_quiet(tmp_path):
    """A typical session ends with status 0 and nothing from the sanitizers
    (under the ASan+UBSan build, LeakSanitizer checks the exit too)."""
    err = tmp_path / "kernel.err"
    with kernel_with_stderr(err) as (km, kc):
        for code in ("print('x'); 41 + 1", "1/0", "def f(n):\n    return n * 2\nf(3)",
                     "%prun f(2)", "%lprun -f f f(2)", "%memit f(2)",
                     "%sample __import__('time').sleep(0.05)", "input('?')",
                     "import threading; t = threading.Thread(target=print, args=(1,))\n"
                     "t.start(); t.join()"):
            execute(kc, code, allow_stdin=False)
        kc.is_complete("for x in y:")
        kc.get_shell_msg(timeout=5)
        proc = km.provisioner.process
        kc.shutdown()
        proc.wait(timeout=15)
    text = err.read_text()
    assert proc.returncode == 0, text
    for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert bad not in text, text



def ubsan_probe(line):
    """A cell that raises a UBSan report by hand, through UBSan's own handler
    of a null passed to a nonnull argument (what a real one at probe.c:LINE:3
    calls), then prints survived."""
    return ("import ctypes\n"
            "class Loc(ctypes.Structure):\n"
            "    _fields_ = [('file', ctypes.c_char_p), ('line', ctypes.c_uint32),\n"
            "                ('column', ctypes.c_uint32)]\n"
            "class Data(ctypes.Structure):\n"
            "    _fields_ = [('loc', Loc), ('attr', Loc), ('arg', ctypes.c_int)]\n"
            f"d = Data(Loc(b'probe.c', {line}, 3), Loc(b'probe.c', 2, 1), 1)\n"
            "ctypes.CDLL(None).__ubsan_handle_nonnull_arg(ctypes.byref(d))\n"
            "print('survived')\n")


def ubsan_report(line):
    return (f"probe.c:{line}:3: runtime error: null pointer passed as argument 1, which is "
            "declared to never be null\nprobe.c:2:1: note: nonnull attribute specified here\n")


def streams_of(kc, msg_id):
    """The stream texts parented to msg_id that reached iopub (until it is
    quiet for a second)."""
    out = []
    while True:
        try:
            m = kc.get_iopub_msg(timeout=1)
        except queue.Empty:
            return out
        if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "stream":
            out.append(m["content"]["text"])


@pytest.mark.skipif(not SANITIZED, reason="needs the sanitizer build's UBSan runtime")
def test_ubsan_report_that_halts_goes_to_stderr(tmp_path):
    """A UBSan report goes whole to the kernel's real stderr, as ASan's do,
    not into the running cell's stream. Under GCC, UBSan is a runtime of its
    own (libubsan) with its own report fd beside ASan's. Before, its first
    line went into the cell as a stderr stream, halt_on_error ended the
    kernel before the rest was published, and the client saw only a request
    with no reply: test_sample_kernel.py's "intermittent hang" under ASan."""
    err = tmp_path / "kernel.err"
    env = dict(os.environ, UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    with kernel_with_stderr(err, env) as (km, kc):
        proc = km.provisioner.process
        msg_id = kc.execute(ubsan_probe(7))
        proc.wait(timeout=60)
        streams = streams_of(kc, msg_id)
    text = err.read_text()
    assert proc.returncode == 1, (proc.returncode, text)
    assert ubsan_report(7) + "    #0 0x" in text, text  # with its stack trace
    assert streams == [], streams


@pytest.mark.skipif(not SANITIZED, reason="needs the sanitizer build's UBSan runtime")
def test_ubsan_reports_that_do_not_halt_go_to_stderr(tmp_path):
    """Without halt_on_error the cell goes on, and this report and the next
    go to the real stderr too: libubsan starts at its first report and then
    closes the report fd ASan had, which must not be the one UBSan writes to
    (nor the kernel's own log fd)."""
    err = tmp_path / "kernel.err"
    env = dict(os.environ, UBSAN_OPTIONS="halt_on_error=0:print_stacktrace=0")
    with kernel_with_stderr(err, env) as (km, kc):
        proc = km.provisioner.process
        for line in (7, 8):
            reply, msgs = execute(kc, ubsan_probe(line))
            assert reply["content"]["status"] == "ok", reply["content"]
            assert [m["content"]["text"] for m in of_type(msgs, "stream")] == ["survived\n"]
        kc.shutdown()
        proc.wait(timeout=15)
    text = err.read_text()
    assert text.startswith(ubsan_report(7) + ubsan_report(8)), text
