"""\\u0000 is a valid JSON escape: a message holding one in any string is
answered, and the NUL reaches Python intact (before, Jansson refused the
message and it vanished: "\\u0000 is not allowed without JSON_ALLOW_NUL")."""
from kernel_util import execute, of_type, stdout_of


def test_input_reply_with_nul_reaches_input(kernel):
    """As in ipykernel: input() returns the value with its NUL, and a prompt
    holding one is sent whole."""
    km, kc = kernel
    msg_id = kc.execute("s = input('a\\x00b: '); print(repr(s), len(s))", allow_stdin=True)
    req = kc.get_stdin_msg(timeout=5)
    assert req["content"]["prompt"] == "a\x00b: "
    kc.input("p\x00q")
    reply = kc.get_shell_msg(timeout=5)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "ok"
    r, msgs = execute(kc, "print(repr(s), len(s))")
    assert stdout_of(msgs) == "'p\\x00q' 3\n"


def test_code_with_nul_gets_pythons_error(kernel):
    """A cell holding a NUL is answered with the error Python's compile()
    gives for it (ValueError on 3.11, SyntaxError from 3.12), and
    execute_input echoes it whole; ipykernel sends no reply at all."""
    km, kc = kernel
    r, msgs = execute(kc, "try:\n    compile('x = 1\\x00', 'c', 'exec')\n"
                          "except Exception as e:\n    print(type(e).__name__, '|', e)")
    ename, evalue = stdout_of(msgs).rstrip("\n").split(" | ")
    reply, msgs = execute(kc, "x = 1\x00", timeout=5)
    assert reply["content"]["status"] == "error"
    assert (reply["content"]["ename"], reply["content"]["evalue"]) == (ename, evalue)
    assert of_type(msgs, "execute_input")[0]["content"]["code"] == "x = 1\x00"
    reply, _ = execute(kc, "1")  # the kernel goes on
    assert reply["content"]["status"] == "ok"


def test_nul_in_header_and_user_expressions(kernel):
    """A NUL in the header (msg_id, session) comes back whole in the reply's
    parent_header; user expressions see their whole text."""
    km, kc = kernel
    msg = kc.session.msg("execute_request", {
        "code": "z = 'z'", "silent": False, "store_history": True, "allow_stdin": False,
        "user_expressions": {"a": "len('x\\x00y')", "b": "1\x00"}, "stop_on_error": True})
    msg["header"]["msg_id"] += "\x00tail"
    msg["header"]["session"] += "\x00"
    kc.shell_channel.send(msg)
    reply = kc.get_shell_msg(timeout=5)
    assert reply["parent_header"]["msg_id"] == msg["header"]["msg_id"]
    assert reply["parent_header"]["session"] == msg["header"]["session"]
    ue = reply["content"]["user_expressions"]
    assert ue["a"]["data"]["text/plain"] == "3"
    assert ue["b"]["status"] == "error"
    assert ue["b"]["ename"] in ("ValueError", "SyntaxError")
    assert "null bytes" in ue["b"]["evalue"]


def test_stream_text_with_nul(kernel):
    km, kc = kernel
    reply, msgs = execute(kc, "print('a\\x00b')")
    assert stdout_of(msgs) == "a\x00b\n"
