"""Helpers for driving a kernel: run a cell and collect what it published."""
import queue
import time


def drain_iopub(kc, timeout=0.2):
    while True:
        try:
            kc.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            return


def shell_reply(kc, timeout):
    """The next shell message; when none comes and the kernel (kc.km, which
    start_kernel sets) has exited, an error that says so and how, not a bare
    queue.Empty that reads like a hang (its stderr, e.g. a sanitizer's
    report, is in the test's captured output)."""
    try:
        return kc.get_shell_msg(timeout=timeout)
    except queue.Empty:
        km = getattr(kc, "km", None)
        code = km.provisioner.process.poll() if km is not None and km.provisioner else None
        if code is not None:
            raise AssertionError(f"the kernel exited ({code}) without a reply") from None
        raise


def execute(kc, code, timeout=20, **kw):
    """Runs code; returns (reply, [iopub messages parented to it, status excluded
    except busy/idle which are kept in order])."""
    msg_id = kc.execute(code, **kw)
    reply = shell_reply(kc, timeout)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = shell_reply(kc, timeout)
    msgs = []
    deadline = time.time() + timeout
    while True:
        msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.time()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        msgs.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return reply, msgs


def wait_idle(kc, msg_id, timeout=10):
    """Reads iopub until the idle status parented to msg_id."""
    deadline = time.time() + timeout
    while True:
        m = kc.get_iopub_msg(timeout=max(0.1, deadline - time.time()))
        if (m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "status"
                and m["content"]["execution_state"] == "idle"):
            return


def stdout_of(msgs, name="stdout"):
    return "".join(m["content"]["text"] for m in msgs
                   if m["msg_type"] == "stream" and m["content"]["name"] == name)


def of_type(msgs, t):
    return [m for m in msgs if m["msg_type"] == t]


def wait_for_iopub(kc, tries=20):
    """After a (re)start, waits until iopub delivers: sends kernel_info
    requests until one's status message arrives (a SUB socket drops what is
    published before its subscription reaches the kernel)."""
    for _ in range(tries):
        msg_id = kc.kernel_info()
        kc.get_shell_msg(timeout=5)
        deadline = time.time() + 0.5
        while time.time() < deadline:
            try:
                m = kc.get_iopub_msg(timeout=0.1)
            except queue.Empty:
                continue
            if m["parent_header"].get("msg_id") == msg_id:
                drain_iopub(kc, 0.05)
                return
    raise AssertionError("iopub never delivered")
