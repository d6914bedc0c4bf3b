"""Bad input, black box: raw pyzmq against a kernel started by jupyter_client.

Each bad message sent on shell (or control) must be dropped with no reply and
no status on iopub, leave exactly one line with its reason on the kernel's
stderr, and the next valid kernel_info_request must be answered normally.
The key never appears in that log. A missing or malformed connection file
stops the kernel binary with a clear message and exit status 2.
"""
import hashlib
import hmac
import json
import subprocess
import time
import uuid

import pytest
import zmq

from conftest import KERNEL, start_kernel

DELIM = b"<IDS|MSG>"


def header(msg_type, msg_id=None, session="bad-input-test"):
    return {"msg_id": msg_id or uuid.uuid4().hex, "session": session, "username": "test",
            "date": "2026-01-01T00:00:00.000000Z", "msg_type": msg_type, "version": "5.3"}


def dumps(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


class LogTail:
    """Reads the kernel's stderr file from where the last read stopped."""

    def __init__(self, path):
        self.path = path
        self.offset = 0

    def new_lines(self):
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        return data.decode("utf-8", "replace").splitlines()

    def all_text(self):
        with open(self.path, "rb") as f:
            return f.read().decode("utf-8", "replace")


class RawClient:
    """A lean client on raw pyzmq: DEALER sockets on shell and control, a SUB
    on iopub. It signs exactly what it is told to and nothing else."""

    def __init__(self, info):
        self.key = info["key"]
        self.ctx = zmq.Context()
        ep = (lambda port: f"ipc://{info['ip']}-{port}") if info["transport"] == "ipc" \
            else (lambda port: f"tcp://{info['ip']}:{port}")
        self.socks = {}
        for name in ("shell", "control"):
            s = self.ctx.socket(zmq.DEALER)
            s.linger = 0
            s.connect(ep(info[name + "_port"]))
            self.socks[name] = s
        self.iopub = self.ctx.socket(zmq.SUB)
        self.iopub.linger = 0
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
        self.iopub.connect(ep(info["iopub_port"]))

    def close(self):
        self.ctx.destroy(linger=0)

    def sign(self, parts, key=None):
        return hmac.new(self.key if key is None else key, b"".join(parts),
                        hashlib.sha256).hexdigest().encode()

    def frames(self, msg_type="kernel_info_request", content=None, msg_id=None):
        """Returns (msg_id, a correctly signed message as a list of frames)."""
        h = header(msg_type, msg_id)
        parts = [dumps(h), b"{}", b"{}", dumps(content or {})]
        return h["msg_id"], [DELIM, self.sign(parts)] + parts

    def send(self, frames, channel="shell"):
        self.socks[channel].send_multipart(frames)

    def request(self, channel="shell", msg_type="kernel_info_request", content=None):
        msg_id, frames = self.frames(msg_type, content)
        self.send(frames, channel)
        return msg_id

    @staticmethod
    def parse(frames):
        i = frames.index(DELIM)
        h, p, m, c = (json.loads(f) for f in frames[i + 2:i + 6])
        return {"signature": frames[i + 1], "header": h, "parent_header": p, "metadata": m,
                "content": c, "parts": frames[i + 2:i + 6]}

    def recv(self, channel="shell", timeout=10.0):
        """The next message on channel, or None after timeout seconds."""
        sock = self.socks[channel] if channel != "iopub" else self.iopub
        if not sock.poll(int(timeout * 1000)):
            return None
        msg = self.parse(sock.recv_multipart())
        assert msg["signature"] == self.sign(msg["parts"]), "kernel's signature is wrong"
        return msg

    def iopub_until_idle(self, msg_id, timeout=10.0):
        """iopub messages up to the idle status parented to msg_id."""
        got, deadline = [], time.time() + timeout
        while time.time() < deadline:
            msg = self.recv("iopub", timeout=max(0.01, deadline - time.time()))
            if msg is None:
                break
            got.append(msg)
            if (msg["parent_header"].get("msg_id") == msg_id
                    and msg["header"]["msg_type"] == "status"
                    and msg["content"]["execution_state"] == "idle"):
                return got
        raise AssertionError(f"no idle status for {msg_id}; got {got}")

    def wait_for_iopub(self):
        """Sends kernel_info requests until one's status arrives on iopub (a
        SUB socket misses what is published before its subscription lands)."""
        for _ in range(50):
            msg_id = self.request()
            assert self.recv("shell") is not None
            deadline = time.time() + 0.2
            while time.time() < deadline:
                msg = self.recv("iopub", timeout=0.05)
                if msg is not None and msg["parent_header"].get("msg_id") == msg_id:
                    while self.recv("iopub", timeout=0.05) is not None:
                        pass
                    return
        raise AssertionError("iopub never delivered")


def raw_kernel(tmp_path_factory, name):
    """Yields a raw client on a kernel of its own whose stderr is in a file
    (client.log), then shuts the kernel down. For module fixtures."""
    err = tmp_path_factory.mktemp(name) / "kernel.err"
    km, kc = start_kernel(stderr=open(err, "w"))
    client = RawClient(km.get_connection_info())
    client.km, client.kc, client.log = km, kc, LogTail(err)
    client.wait_for_iopub()
    yield client
    client.close()
    kc.stop_channels()
    if km.is_alive():
        km.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """A kernel of this module's own, its stderr in a file, and a raw client."""
    yield from raw_kernel(tmp_path_factory, "bad-input")


def assert_dropped(raw, bad_frames, log_line, bad_id=None, channel="shell"):
    """Sends bad_frames, then a valid kernel_info_request on the same socket.
    The first reply must be the one to the valid request (so the bad message
    got none), nothing else may follow, the bad message must have no status
    on iopub, and the log must have gained exactly log_line."""
    raw.log.new_lines()
    raw.send(bad_frames, channel)
    good_id = raw.request(channel)
    reply = raw.recv(channel)
    assert reply is not None, "no reply to the valid request after a bad one"
    assert reply["parent_header"]["msg_id"] == good_id
    assert reply["header"]["msg_type"] == "kernel_info_reply"
    assert reply["content"]["status"] == "ok"
    assert reply["content"]["implementation"] == "pyrometer"
    assert raw.recv(channel, timeout=0.1) is None, "a second reply arrived"
    iopub = raw.iopub_until_idle(good_id)
    parents = [m["parent_header"].get("msg_id") for m in iopub]
    if bad_id is not None:
        assert bad_id not in parents, "the dropped message got a status on iopub"
    # Only the valid request's busy and idle.
    assert [(m["header"]["msg_type"], m["content"].get("execution_state")) for m in iopub
            if m["parent_header"].get("msg_id") == good_id] == [("status", "busy"),
                                                                 ("status", "idle")]
    assert raw.log.new_lines() == [log_line]


def signed(raw, h, p=b"{}", m=b"{}", c=b"{}"):
    return [DELIM, raw.sign([h, p, m, c]), h, p, m, c]


DROPPED = "[pyrometer] shell: dropped a message: "


def case_bad_signature(raw):
    bad_id, frames = raw.frames()
    frames[1] = b"0123456789abcdef" * 4
    return frames, DROPPED + "bad signature: HMAC mismatch", bad_id


def case_signed_with_another_key(raw):
    bad_id, frames = raw.frames()
    frames[1] = raw.sign(frames[2:6], key=b"not-the-kernel-key")
    return frames, DROPPED + "bad signature: HMAC mismatch", bad_id


def case_tampered_content(raw):
    bad_id, frames = raw.frames("execute_request", {"code": "1", "silent": False})
    frames[5] = dumps({"code": "import os; os._exit(1)", "silent": False})
    return frames, DROPPED + "bad signature: HMAC mismatch", bad_id


MISSING = ("missing frames: %d of the 5 after <IDS|MSG> "
           "(signature, header, parent_header, metadata, content)")


def case_missing_signature(raw):
    bad_id, frames = raw.frames()
    frames[1] = b""
    return frames, DROPPED + "bad signature: missing (empty frame)", bad_id


def case_signature_not_hex(raw):
    bad_id, frames = raw.frames()
    frames[1] = b"z" * 64
    return frames, DROPPED + "bad signature: not hex digits", bad_id


def case_signature_truncated(raw):
    bad_id, frames = raw.frames()
    frames[1] = frames[1][:32]
    return frames, DROPPED + "bad signature: 32 characters, not 64 hex digits", bad_id


def case_malformed_json_content(raw):
    h = header("kernel_info_request")
    return (signed(raw, dumps(h), c=b'{"a":1'),
            DROPPED + "malformed JSON in content: '}' expected near end of file", h["msg_id"])


def case_malformed_json_header(raw):
    # A fresh msg_id in each: the same bytes twice would be a replay.
    h = b'{"msg_id":"%s","msg_type":"kernel_info_request",' % uuid.uuid4().hex.encode()
    return (signed(raw, h),
            DROPPED + "malformed JSON in header: string or '}' expected near end of file", None)


def case_malformed_json_metadata(raw):
    h = header("kernel_info_request")
    return (signed(raw, dumps(h), m=b"{} {}"),
            DROPPED + "malformed JSON in metadata: end of file expected near '{'", h["msg_id"])


def case_missing_content_frame(raw):
    bad_id, frames = raw.frames()
    return frames[:-1], DROPPED + MISSING % 4, bad_id


def case_only_the_delimiter(raw):
    return [DELIM], DROPPED + MISSING % 0, None


def case_missing_delimiter(raw):
    bad_id, frames = raw.frames()
    return frames[1:], DROPPED + "missing <IDS|MSG> delimiter", bad_id


def case_non_object_header(raw):
    h = b'["kernel_info_request","%s"]' % uuid.uuid4().hex.encode()
    return signed(raw, h), DROPPED + "header is not a JSON object", None


def case_header_without_msg_type(raw):
    h = header("kernel_info_request")
    del h["msg_type"]
    return signed(raw, dumps(h)), DROPPED + "header has no msg_type string", h["msg_id"]


def case_unknown_msg_type(raw):
    bad_id, frames = raw.frames("bogus_request")
    return frames, '[pyrometer] shell: ignored unknown message type "bogus_request"', bad_id


def case_invalid_utf8_content(raw):
    h = header("execute_request")
    return (signed(raw, dumps(h), c=b'{"code":"print(\xff)","silent":false}'),
            DROPPED + "malformed JSON in content: unable to decode byte 0xff near '\"print('",
            h["msg_id"])


def case_invalid_utf8_header(raw):
    h = dumps(header("kernel_info_request")).replace(b'"test"', b'"te\xc3\x28st"')
    return (signed(raw, h),
            DROPPED + "malformed JSON in header: unable to decode byte 0xc3 near '\"te'", None)


CASES = [f for name, f in sorted(globals().items()) if name.startswith("case_")]


@pytest.mark.parametrize("make", CASES, ids=[f.__name__[5:] for f in CASES])
def test_bad_input_dropped(raw, make):
    frames, line, bad_id = make(raw)
    assert_dropped(raw, frames, line, bad_id)


def test_replayed_message(raw):
    msg_id, frames = raw.frames()
    raw.send(frames)
    reply = raw.recv()
    assert reply["parent_header"]["msg_id"] == msg_id
    raw.iopub_until_idle(msg_id)
    assert_dropped(raw, frames, DROPPED + "replayed signature", msg_id)


def test_replayed_message_from_another_socket(raw):
    """The replay guard is per kernel, not per connection."""
    msg_id, frames = raw.frames()
    raw.send(frames)
    assert raw.recv()["parent_header"]["msg_id"] == msg_id
    raw.iopub_until_idle(msg_id)
    other = raw.ctx.socket(zmq.DEALER)
    other.linger = 0
    other.connect(raw.socks["shell"].getsockopt_string(zmq.LAST_ENDPOINT))
    raw.log.new_lines()
    other.send_multipart(frames)
    good_id, good = raw.frames()
    other.send_multipart(good)
    assert other.poll(10000)
    reply = RawClient.parse(other.recv_multipart())
    assert reply["parent_header"]["msg_id"] == good_id
    assert raw.log.new_lines() == [DROPPED + "replayed signature"]
    other.close()
    raw.iopub_until_idle(good_id)


def test_bad_input_on_control(raw):
    bad_id, frames = raw.frames()
    frames[1] = b"f" * 64
    assert_dropped(raw, frames, "[pyrometer] control: dropped a message: bad signature: "
                   "HMAC mismatch", bad_id, channel="control")


def test_unknown_msg_type_on_control(raw):
    bad_id, frames = raw.frames("execute_request", {"code": "1"})
    assert_dropped(raw, frames, '[pyrometer] control: ignored unknown message type '
                   '"execute_request"', bad_id, channel="control")


def test_bad_input_burst_then_execute(raw):
    """Many bad messages in a row, then real work: the kernel's state is
    untouched (execution_count still counts only real executions)."""
    raw.log.new_lines()
    first = raw.request(msg_type="execute_request",
                        content={"code": "x = 41", "silent": False, "store_history": True})
    n0 = raw.recv()["content"]["execution_count"]
    raw.iopub_until_idle(first)
    lines = []
    for make in CASES:
        frames, line, _ = make(raw)
        raw.send(frames)
        lines.append(line)
    msg_id = raw.request(msg_type="execute_request",
                         content={"code": "x + 1", "silent": False, "store_history": True})
    reply = raw.recv()
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "ok"
    assert reply["content"]["execution_count"] == n0 + 1
    results = [m for m in raw.iopub_until_idle(msg_id)
               if m["header"]["msg_type"] == "execute_result"]
    assert [m["content"]["data"]["text/plain"] for m in results] == ["42"]
    assert raw.log.new_lines() == lines


def test_jupyter_client_still_works(raw):
    kc = raw.kc
    msg_id = kc.kernel_info()
    reply = kc.get_shell_msg(timeout=10)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "ok"


def test_key_never_logged_and_clean_exit(raw):
    """Runs last in this module: shuts the kernel down, then reads its whole
    stderr: every line is one of ours, the key is nowhere, and nothing came
    from the sanitizers (under the ASan build LeakSanitizer runs at exit)."""
    key = raw.key.decode()
    assert len(key) >= 16
    proc = raw.km.provisioner.process
    raw.kc.shutdown()
    proc.wait(timeout=15)
    text = raw.log.all_text()
    assert proc.returncode == 0, text
    assert key not in text and key[:8] not in text
    for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert bad not in text, text
    assert text.count("dropped a message") >= len(CASES)


def kernel_has_asan():
    with open(KERNEL, "rb") as f:
        return b"__asan_init" in f.read()


def test_too_many_frames(tmp_path):
    """A message of more than 64 frames is dropped whole, and costs nothing
    afterwards: under the ASan build the exit is checked for leaks. A kernel
    of its own, so that its exit tells about this case alone."""
    err = tmp_path / "kernel.err"
    km, kc = start_kernel(stderr=open(err, "w"))
    client = RawClient(km.get_connection_info())
    client.km, client.kc, client.log = km, kc, LogTail(err)
    try:
        client.wait_for_iopub()
        bad_id, frames = client.frames()
        assert_dropped(client, frames + [b"b" * 100] * 70,
                       "[pyrometer] shell: dropped a message of more than 64 frames", bad_id)
        proc = km.provisioner.process
        kc.shutdown()
        proc.wait(timeout=15)
    finally:
        client.close()
        kc.stop_channels()
        if km.is_alive():
            km.shutdown_kernel(now=True)
    text = client.log.all_text()
    assert proc.returncode == 0, (proc.returncode, text)
    for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert bad not in text, text


# ---- the kernel binary with a missing or malformed connection file ----

GOOD = {"shell_port": 50101, "iopub_port": 50102, "stdin_port": 50103, "control_port": 50104,
        "hb_port": 50105, "ip": "127.0.0.1", "transport": "tcp",
        "signature_scheme": "hmac-sha256", "kernel_name": "pyrometer",
        "key": "a0436f6c-1916-498b-8eb9-e81ab9368e84"}


def run_kernel(*args):
    return subprocess.run([KERNEL, *args], capture_output=True, text=True, timeout=20)


def test_missing_connection_file(tmp_path):
    path = str(tmp_path / "kernel-nope.json")
    r = run_kernel("-f", path)
    assert r.returncode == 2
    assert r.stderr == f"pyrometer-kernel: cannot open connection file {path}: " \
                       "No such file or directory\n"
    assert r.stdout == ""


def with_(**kw):
    d = dict(GOOD)
    for k, v in kw.items():
        if v is None:
            del d[k]
        else:
            d[k] = v
    return json.dumps(d, indent=1)


@pytest.mark.parametrize("text,message", [
    (with_().rsplit(",", 1)[0] + ",",
     "connection file: invalid JSON at line 10: string or '}' expected"),
    (with_()[:-3], "connection file: invalid JSON at line 11: premature end of input"),
    ("", "connection file: invalid JSON at line 1: '[' or '{' expected"),
    ("[]", "connection file: top level must be an object"),
    (with_(ip=None), 'connection file: missing "ip"'),
    (with_(shell_port=70000), 'connection file: "shell_port" must be an integer in 1..65535'),
    (with_(hb_port="50105"), 'connection file: "hb_port" must be an integer in 1..65535'),
    (with_(transport="udp"), 'connection file: unsupported transport "udp" (tcp or ipc)'),
    (with_(signature_scheme="hmac-sha1"),
     'connection file: unsupported signature_scheme "hmac-sha1"'),
    (with_(key=1234), 'connection file: "key" must be a string'),
], ids=["truncated", "unterminated-key", "empty", "array", "no-ip", "port-range", "port-string",
        "transport", "scheme", "key-type"])
def test_malformed_connection_file(tmp_path, text, message):
    path = tmp_path / "kernel.json"
    path.write_text(text)
    r = run_kernel("-f", str(path))
    assert r.returncode == 2
    # Jansson's " near '...'" context may follow a JSON error; nothing else.
    assert r.stderr.startswith(f"pyrometer-kernel: {message}")
    assert r.stderr.count("\n") == 1 and r.stderr.endswith("\n")
    if "invalid JSON" not in message:
        assert r.stderr == f"pyrometer-kernel: {message}\n"
    assert GOOD["key"] not in r.stderr and GOOD["key"][:8] not in r.stderr


def test_short_key_not_in_json_error(tmp_path):
    path = tmp_path / "kernel.json"
    path.write_text('{"ip": "127.0.0.1", "key" "s3cr3t-k3y"}')
    r = run_kernel("-f", str(path))
    assert r.returncode == 2
    assert r.stderr.startswith("pyrometer-kernel: connection file: invalid JSON")
    assert "s3cr3t" not in r.stderr


def test_connection_file_is_a_directory(tmp_path):
    r = run_kernel("-f", str(tmp_path))
    assert r.returncode == 2
    assert "Is a directory" in r.stderr
