"""Comms through the `comm` package (issue 13): comm.create_comm and
comm.get_comm_manager reach the kernel; comm_open, comm_msg and comm_close
go both ways with data, metadata and buffers; comm_info_request lists the
open comms (by target too); targets are registered from Python; output of
a comm callback is parented to the comm message. A kernel that never
imported comm answers comm_open with comm_close and imports nothing."""
import queue
import time

import pytest

from kernel_util import execute, of_type, stdout_of


@pytest.fixture(scope="module")
def kernel(kernel):
    """The module's kernel, for the tests that need the comm package (the
    kernel's Python must have it too: python3-comm)."""
    pytest.importorskip("comm")
    return kernel


def ok(kc, code):
    reply, msgs = execute(kc, code)
    assert reply["content"]["status"] == "ok", reply["content"]
    return msgs


def send(kc, msg_type, content, buffers=None):
    msg = kc.session.msg(msg_type, content)
    kc.shell_channel.send(msg) if not buffers else \
        kc.session.send(kc.shell_channel.socket, msg, buffers=buffers)
    return msg["header"]["msg_id"]


def collect(kc, msg_id, timeout=10):
    """iopub messages parented to msg_id, up to its idle."""
    out, deadline = [], time.time() + timeout
    while True:
        m = kc.get_iopub_msg(timeout=max(0.1, deadline - time.time()))
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        if m["msg_type"] == "status":
            if m["content"]["execution_state"] == "idle":
                return out
            continue
        out.append(m)


def comm_info(kc, target=None):
    kc.comm_info(target)
    return kc.get_shell_msg(timeout=5)["content"]


def test_before_comm_is_imported_comm_open_is_closed(fresh_kernel):
    km, kc = fresh_kernel
    assert comm_info(kc) == {"status": "ok", "comms": {}}
    mid = send(kc, "comm_open", {"comm_id": "c0", "target_name": "nobody", "data": {}})
    msgs = collect(kc, mid)
    assert [(m["msg_type"], m["content"]) for m in msgs] == [
        ("comm_close", {"comm_id": "c0", "data": {}})]
    msgs = ok(kc, "import sys\nprint([m for m in ('comm', 'IPython') if m in sys.modules])")
    assert stdout_of(msgs) == "[]\n"


def test_kernel_opens_sends_and_closes(kernel):
    km, kc = kernel
    reply, msgs = execute(kc, "import comm\n"
                              "c = comm.create_comm(target_name='t1', data={'a': 1}, "
                              "metadata={'version': '2.1.0'}, buffers=[b'\\x00\\x01', memoryview(b'zz')])\n"
                              "c.send({'x': [1, 2.5, None, True]}, buffers=[bytearray(b'ab')])\n"
                              "c.close({'bye': 1})\n"
                              "print(type(c).__module__, type(c).__mro__[1].__name__)")
    mid = reply["parent_header"]["msg_id"]
    opened, sent, closed = [m for m in msgs if m["msg_type"].startswith("comm_")]
    cid = opened["content"]["comm_id"]
    assert len(cid) == 32
    assert opened["content"] == {"data": {"a": 1}, "comm_id": cid, "target_name": "t1",
                                 "target_module": None}
    assert opened["metadata"] == {"version": "2.1.0"}
    assert [bytes(b) for b in opened["buffers"]] == [b"\x00\x01", b"zz"]
    assert sent["content"] == {"data": {"x": [1, 2.5, None, True]}, "comm_id": cid}
    assert [bytes(b) for b in sent["buffers"]] == [b"ab"]
    assert closed["content"] == {"data": {"bye": 1}, "comm_id": cid}
    assert all(m["parent_header"]["msg_id"] == mid for m in (opened, sent, closed))
    assert stdout_of(msgs) == "_pyrometer_kernel BaseComm\n"
    assert cid not in comm_info(kc)["comms"]


def test_comm_info_lists_open_comms_by_target(kernel):
    km, kc = kernel
    ok(kc, "import comm\na = comm.create_comm(target_name='ta')\n"
           "b = comm.create_comm(target_name='tb')\nb2 = comm.create_comm(target_name='tb')")
    ids = {t: [] for t in ("ta", "tb")}
    for v in ("a", "b", "b2"):
        cid = stdout_of(ok(kc, f"print({v}.comm_id)")).strip()
        ids["ta" if v == "a" else "tb"].append(cid)
    allc = comm_info(kc)["comms"]
    for t, cids in ids.items():
        for cid in cids:
            assert allc[cid] == {"target_name": t}
    assert comm_info(kc, "tb")["comms"] == {cid: {"target_name": "tb"} for cid in ids["tb"]}
    assert comm_info(kc, "none")["comms"] == {}
    ok(kc, "a.close(); b.close(); b2.close()")
    assert not set(comm_info(kc)["comms"]) & set(ids["ta"] + ids["tb"])


def test_frontend_opens_a_registered_target(kernel):
    km, kc = kernel
    ok(kc, "import comm, sys\nlog = []\n"
           "def target(c, msg):\n"
           "    log.append(('open', msg['content']['data'], msg['metadata']))\n"
           "    def on_msg(m):\n"
           "        log.append(('msg', m['content']['data'], [bytes(b) for b in m['buffers']]))\n"
           "        print('echoing', m['content']['data'])\n"
           "        display({'text/plain': 'shown'}, raw=True)\n"
           "        c.send({'echo': m['content']['data']}, buffers=m['buffers'])\n"
           "    c.on_msg(on_msg)\n"
           "    c.on_close(lambda m: log.append(('close', m['content']['data'])))\n"
           "comm.get_comm_manager().register_target('echo', target)")
    mid = send(kc, "comm_open", {"comm_id": "f1", "target_name": "echo", "data": {"hi": 1}})
    assert collect(kc, mid) == []  # accepted: no comm_close
    assert comm_info(kc, "echo")["comms"] == {"f1": {"target_name": "echo"}}

    mid = send(kc, "comm_msg", {"comm_id": "f1", "data": {"n": 7}}, buffers=[b"\x01\x02\x03"])
    msgs = collect(kc, mid)
    assert stdout_of(msgs) == "echoing {'n': 7}\n"
    [disp] = of_type(msgs, "display_data")
    assert disp["content"]["data"] == {"text/plain": "shown"}
    [echo] = of_type(msgs, "comm_msg")
    assert echo["content"] == {"comm_id": "f1", "data": {"echo": {"n": 7}}}
    assert [bytes(b) for b in echo["buffers"]] == [b"\x01\x02\x03"]
    # everything the callback did belongs to the comm message
    assert all(m["parent_header"]["msg_id"] == mid for m in msgs)

    mid = send(kc, "comm_close", {"comm_id": "f1", "data": {"done": True}})
    assert collect(kc, mid) == []
    assert comm_info(kc, "echo")["comms"] == {}
    msgs = ok(kc, "print(log)\nprint('IPython' in sys.modules)")
    assert stdout_of(msgs) == ("[('open', {'hi': 1}, {}), ('msg', {'n': 7}, [b'\\x01\\x02\\x03']), "
                               "('close', {'done': True})]\nFalse\n")


def test_unknown_target_after_import_is_closed(kernel):
    km, kc = kernel
    ok(kc, "import comm")
    mid = send(kc, "comm_open", {"comm_id": "u1", "target_name": "nope", "data": {}})
    msgs = collect(kc, mid)
    assert [(m["msg_type"], m["content"]["comm_id"]) for m in msgs
            if m["msg_type"].startswith("comm_")] == [("comm_close", "u1")]
    assert "u1" not in comm_info(kc)["comms"]


def test_error_in_a_callback_reaches_stderr_and_kernel_lives(kernel):
    km, kc = kernel
    ok(kc, "import comm\n"
           "def t(c, msg):\n    c.on_msg(lambda m: 1 / 0)\n"
           "comm.get_comm_manager().register_target('bad', t)")
    send(kc, "comm_open", {"comm_id": "b1", "target_name": "bad", "data": {}})
    mid = send(kc, "comm_msg", {"comm_id": "b1", "data": {}})
    msgs = collect(kc, mid)
    assert "ZeroDivisionError" in stdout_of(msgs, "stderr")
    assert stdout_of(ok(kc, "print('alive')")) == "alive\n"


def test_get_parent_is_the_request_being_handled(kernel):
    km, kc = kernel
    reply, msgs = execute(kc, "import comm\nc = comm.create_comm(target_name='p')\n"
                              "print(c.kernel.get_parent()['header']['msg_id'])\nc.close()")
    assert stdout_of(msgs) == reply["parent_header"]["msg_id"] + "\n"
