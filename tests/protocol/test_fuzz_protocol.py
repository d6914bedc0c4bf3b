"""Protocol fuzzing through the real kernel: correctly signed messages whose
contents are mutated from real ones (wrong types, missing and extra fields,
huge strings, deep nesting, surrogates and NULs), for every msg_type the
kernel knows and for unknown ones, on shell and control.

Each mutated message is followed by a valid kernel_info_request on the same
socket. Before that marker's reply, the mutated message must have got at most
one reply, and if it got none, exactly one new line on the kernel's stderr
(it was dropped, with its reason). Messages the protocol never answers
(comm_open, comm_msg, comm_close) must get no reply and at most one line. The kernel must never crash or hang, and
after every batch an execute_request must answer with the namespace intact.

The run is bounded and seeded: PYROMETER_FUZZ_SEED (default 1) and
PYROMETER_FUZZ_MESSAGES (default 1500) replay a failure exactly; the
failure message names the seed and the message's index.
"""
import copy
import json
import os
import random
import time

import pytest

from test_bad_input import DELIM, header, raw_kernel

SEED = int(os.environ.get("PYROMETER_FUZZ_SEED", "1"))
COUNT = int(os.environ.get("PYROMETER_FUZZ_MESSAGES", "1500"))
BATCH = 250

# Code that a mutated execute_request may run: harmless, quick, and never
# touching the sentinel. Mutations may also replace it by any JSON value.
CODES = ["1+1", "pass", "", "   ", "z = 1", "print('fuzz')", "import sys", "raise ValueError('fuzz')",
         "'\\x00'", "%pwd", "def f(:", "x" * 3000, "\u00e9\u20ac\U0001f600 = 1", "1/0"]

REAL = {  # msg_type -> (channel, content), as real clients send them
    "execute_request": ("shell", {"code": "1+1", "silent": False, "store_history": False,
                                  "user_expressions": {"a": "1+1"}, "allow_stdin": False,
                                  "stop_on_error": False}),
    "kernel_info_request": ("shell", {}),
    "is_complete_request": ("shell", {"code": "for i in range(3):"}),
    "complete_request": ("shell", {"code": "import o", "cursor_pos": 8}),
    "inspect_request": ("shell", {"code": "len", "cursor_pos": 3, "detail_level": 0}),
    "history_request": ("shell", {"output": False, "raw": True, "hist_access_type": "tail",
                                  "n": 5}),
    "comm_info_request": ("shell", {"target_name": "jupyter.widget"}),
    "comm_open": ("shell", {"comm_id": "c1", "target_name": "nothing", "data": {}}),
    "comm_msg": ("shell", {"comm_id": "c1", "data": {"x": 1}}),
    "comm_close": ("shell", {"comm_id": "c1", "data": {}}),
    "interrupt_request": ("control", {}),
    "kernel_info_request@control": ("control", {}),
    "debug_request": ("control", {"seq": 1, "type": "request", "command": "initialize"}),
    "usage_request": ("control", {}),
}
NO_REPLY = {"comm_open", "comm_msg", "comm_close"}
UNKNOWN = ["", "x" * 300, "execute_reply", "shutdown", "EXECUTE_REQUEST", "\u00e9_request",
           "input_reply", "apply_request", "clear_request"]


def rand_value(r, depth=0):
    k = r.randrange(14)
    if k == 0:
        return None
    if k == 1:
        return r.choice([True, False])
    if k == 2:
        return r.choice([0, -1, 1, 2 ** 31, -2 ** 63, 2 ** 63 - 1, 10 ** 30])
    if k == 3:
        return r.choice([0.5, -0.0, 1e300, 1e-300])
    if k == 4:
        return "A" * r.choice([1, 100, 65536, 1 << 20])  # up to a 1 MiB string
    if k == 5:
        return r.choice(["\ud800", "a\udfffb", "\udbff\udc00"])  # surrogates, lone and paired
    if k == 6:
        return r.choice(["\x00", "a\x00b", "\x00" * 10])
    if k == 7:
        nest = r.choice([10, 500, 3000])  # past Jansson's depth limit too
        v = []
        for _ in range(nest):
            v = [v]
        return v
    if k == 8:
        return [] if depth > 2 else [rand_value(r, depth + 1) for _ in range(r.randrange(4))]
    if k == 9:
        return {} if depth > 2 else {rand_key(r): rand_value(r, depth + 1)
                                     for _ in range(r.randrange(4))}
    if k == 10:
        return r.choice(CODES)
    if k == 11:
        return "".join(chr(r.randrange(1, 0x3000)) for _ in range(r.randrange(40)))
    if k == 12:
        return r.choice(["execute_request", "5.3", "", "tail", "range", "search"])
    return r.randrange(-5, 100)


def rand_key(r):
    return r.choice(["code", "cursor_pos", "n", "session", "msg_id", "extra", "", "\x00",
                     "\ud800", "user_expressions", "silent", "target_name", "data", "comm_id",
                     "hist_access_type", "detail_level", "pattern", "unique", "buffers",
                     "k" * 200])


def mutate(r, parts):
    """Applies one mutation to one of header, parent_header, metadata,
    content (a list of four JSON values)."""
    i = r.choice([0, 1, 2, 3, 3, 3])  # content most often
    d = parts[i]
    op = r.randrange(6)
    if op == 0 and isinstance(d, dict) and d:
        key = r.choice(sorted(d))
        if not (i == 0 and key == "msg_type" and r.random() < 0.8):
            del d[key]
    elif op == 1 and isinstance(d, dict) and d:
        d[r.choice(sorted(d))] = rand_value(r)
    elif op == 2 and isinstance(d, dict):
        d[rand_key(r)] = rand_value(r)
    elif op == 3 and r.random() < 0.1:
        parts[i] = rand_value(r)  # not an object at all
    elif op == 4 and isinstance(d, dict) and isinstance(d.get("user_expressions"), dict):
        d["user_expressions"][rand_key(r)] = rand_value(r)
    elif op == 5 and i == 3 and isinstance(d, dict) and "code" in d:
        d["code"] = r.choice(CODES) if r.random() < 0.7 else rand_value(r)


def message(r, raw):
    """A mutated message: (channel, its msg_type if its header still names
    one, frames)."""
    if r.random() < 0.08:
        msg_type, channel, content = r.choice(UNKNOWN), r.choice(["shell", "control"]), {}
    else:
        name = r.choice(sorted(REAL))
        channel, content = REAL[name]
        msg_type = name.split("@")[0]
        if r.random() < 0.05:  # a shell request on control, or the reverse
            channel = "control" if channel == "shell" else "shell"
    h = header(msg_type, session="fuzz-" + str(SEED))
    parts = [h, {}, {}, copy.deepcopy(content)]
    for _ in range(r.randrange(1, 4)):
        mutate(r, parts)
    if isinstance(parts[0], dict) and parts[0].get("msg_type") == "shutdown_request":
        parts[0]["msg_type"] = "kernel_info_request"  # an answered shutdown ends the run
    raw_parts = []
    for p in parts:
        try:
            raw_parts.append(json.dumps(p, separators=(",", ":")).encode())
        except (ValueError, RecursionError):
            raw_parts.append(b"[]")
    # json.dumps writes lone surrogates as \\udXXX escapes and NUL as \\u0000.
    frames = [DELIM, raw.sign(raw_parts)] + raw_parts
    msg_type = parts[0].get("msg_type") if isinstance(parts[0], dict) else None
    if not isinstance(msg_type, str):
        msg_type = None
    return channel, msg_type, frames


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    yield from raw_kernel(tmp_path_factory, "fuzz")


def drain_iopub(raw):
    while raw.iopub.poll(0):
        raw.iopub.recv_multipart()


def execute_sentinel(raw, code):
    msg_id, frames = raw.frames("execute_request", {
        "code": code, "silent": False, "store_history": False,
        "user_expressions": {"v": "fuzz_sentinel"}, "allow_stdin": False, "stop_on_error": False})
    raw.send(frames)
    deadline = time.time() + 30
    while time.time() < deadline:
        reply = raw.recv("shell", timeout=max(0.01, deadline - time.time()))
        assert reply is not None, "the kernel did not answer an execute_request"
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply
    raise AssertionError("no execute_reply")


def test_mutated_messages_answered_or_dropped(fuzzed):
    raw = fuzzed
    r = random.Random(SEED)
    reply = execute_sentinel(raw, "fuzz_sentinel = 'intact-%d'" % SEED)
    assert reply["content"]["status"] == "ok"
    answered = dropped = 0
    for index in range(COUNT):
        where = f"(seed {SEED}, message {index}; replay with PYROMETER_FUZZ_SEED={SEED})"
        channel, msg_type, frames = message(r, raw)
        raw.log.new_lines()
        raw.send(frames, channel)
        marker = raw.request(channel)
        others = []
        deadline = time.time() + 30
        while True:
            got = raw.recv(channel, timeout=max(0.01, deadline - time.time()))
            assert got is not None, f"no reply to the marker: the kernel hung or died {where}"
            if got["parent_header"].get("msg_id") == marker:
                break
            others.append(got)
        assert raw.km.is_alive(), f"the kernel died {where}"
        assert len(others) <= 1, f"{len(others)} replies to one message {where}"
        if msg_type in NO_REPLY and channel == "shell":
            assert not others, f"a reply to {msg_type} {where}"
            assert len(raw.log.new_lines()) <= 1, where
        elif others:
            answered += 1
        else:
            lines = raw.log.new_lines()
            assert len(lines) == 1, f"dropped with log {lines!r} instead of one line {where}"
            dropped += 1
        if index % 50 == 0:
            drain_iopub(raw)
        if (index + 1) % BATCH == 0 or index == COUNT - 1:
            reply = execute_sentinel(raw, "pass")
            assert reply["content"]["status"] == "ok", where
            v = reply["content"]["user_expressions"]["v"]
            assert v["status"] == "ok" and v["data"]["text/plain"] == "'intact-%d'" % SEED, where
    # Both kinds happened: the mutations reach the handlers and the parser.
    assert answered > COUNT // 10 and dropped > COUNT // 20, (answered, dropped)
    print(f"fuzz seed {SEED}: {answered} answered, {dropped} dropped with one log line")
