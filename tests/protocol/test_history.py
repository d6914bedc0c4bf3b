"""history_request, black box: tail, range and search with and without
output, raw and translated input, session numbers, and the SQLite file
surviving restarts, a SIGKILL during and after a cell, damage and an unusable
path. Each test uses a history file of its own (PYROMETER_HISTORY)."""
import os
import signal
import sqlite3
import time

import pytest

import conftest  # noqa: F401
from kernel_util import execute


def start(db, **extra):
    from jupyter_client.manager import start_new_kernel
    env = dict(os.environ, PYROMETER_HISTORY=str(db), **extra)
    return start_new_kernel(kernel_name="pyrometer", startup_timeout=30, env=env)


def stop(km, kc):
    kc.stop_channels()
    if km.is_alive():
        km.shutdown_kernel(now=False)


def run(kc, *cells, **kw):
    for code in cells:
        reply, _ = execute(kc, code, **kw)
        assert reply["content"]["status"] in ("ok", "error")


def history_after_kill(km, kc, db):
    """SIGKILLs the kernel, starts a new one on db and returns the killed
    session's history (the new session is empty)."""
    os.kill(km.provisioner.process.pid, signal.SIGKILL)
    km.provisioner.process.wait()
    stop(km, kc)
    km, kc = start(db)  # recovers the WAL
    try:
        assert history(kc, hist_access_type="range", session=0)["history"] == []
        return history(kc, hist_access_type="range", session=-1)["history"]
    finally:
        stop(km, kc)


def history(kc, **kw):
    kw.setdefault("raw", True)
    kw.setdefault("output", False)
    msg_id = kc.history(**kw)
    reply = kc.get_shell_msg(timeout=10)
    assert reply["parent_header"]["msg_id"] == msg_id
    return reply["content"]


@pytest.fixture
def one(tmp_path):
    """A kernel on a fresh history file with four cells run: session 1."""
    km, kc = start(tmp_path / "h.sqlite")
    run(kc, "a = 1", "a + 1", "print('x')", "a + 41")
    yield kc
    stop(km, kc)


def test_tail(one):
    assert history(one, hist_access_type="tail", n=2) == {
        "status": "ok", "history": [[1, 3, "print('x')"], [1, 4, "a + 41"]]}
    assert history(one, hist_access_type="tail", n=3, output=True)["history"] == [
        [1, 2, ["a + 1", "2"]], [1, 3, ["print('x')", None]], [1, 4, ["a + 41", "42"]]]
    assert len(history(one, hist_access_type="tail", n=100)["history"]) == 4


def test_range(one):
    assert history(one, hist_access_type="range", session=0, start=2, stop=4)["history"] == [
        [1, 2, "a + 1"], [1, 3, "print('x')"]]
    # no stop: to the end; session given by number
    assert history(one, hist_access_type="range", session=1, start=3)["history"] == [
        [1, 3, "print('x')"], [1, 4, "a + 41"]]
    assert history(one, hist_access_type="range", session=-1, start=1)["history"] == []


def test_search(one):
    run(one, "a + 1", "b = 2")
    # glob: * and ?, over input; every match, oldest first
    assert history(one, hist_access_type="search", pattern="a ? 1")["history"] == [
        [1, 1, "a = 1"], [1, 2, "a + 1"], [1, 5, "a + 1"]]
    assert history(one, hist_access_type="search", pattern="a + 1")["history"] == [
        [1, 2, "a + 1"], [1, 5, "a + 1"]]
    assert history(one, hist_access_type="search", pattern="a*")["history"] == [
        [1, 1, "a = 1"], [1, 2, "a + 1"], [1, 4, "a + 41"], [1, 5, "a + 1"]]
    # unique keeps the latest of equal inputs; n the last n matches
    assert history(one, hist_access_type="search", pattern="a*", unique=True)["history"] == [
        [1, 1, "a = 1"], [1, 4, "a + 41"], [1, 5, "a + 1"]]
    assert history(one, hist_access_type="search", pattern="a*", n=2)["history"] == [
        [1, 4, "a + 41"], [1, 5, "a + 1"]]
    assert history(one, hist_access_type="search", pattern="a*", n=2, unique=True,
                   output=True)["history"] == [[1, 4, ["a + 41", "42"]], [1, 5, ["a + 1", "2"]]]
    assert history(one, hist_access_type="search", pattern="zzz*")["history"] == []


def test_raw_and_translated(one):
    run(one, "a?", "!true")
    got = history(one, hist_access_type="tail", n=2, raw=True)["history"]
    assert [h[2] for h in got] == ["a?", "!true"]
    got = history(one, hist_access_type="tail", n=2, raw=False)["history"]
    assert [h[2] for h in got] == ["__pyrometer__.inspect('a', 0)",
                                   "__pyrometer__.system('true')"]


def test_not_stored(one):
    run(one, "c = 3", store_history=False)
    run(one, "d = 4", silent=True)
    assert history(one, hist_access_type="tail", n=1)["history"] == [[1, 4, "a + 41"]]


def test_bad_request(one):
    r = history(one, hist_access_type="sideways")
    assert (r["status"], r["ename"], r["history"]) == ("error", "ValueError", [])


def test_sessions_across_restart_and_kill(tmp_path):
    db = tmp_path / "h.sqlite"
    km, kc = start(db)
    run(kc, "first = 1", "first + 1")
    km.restart_kernel(now=False)
    kc.wait_for_ready(timeout=30)
    run(kc, "second = 2")
    assert history(kc, hist_access_type="range", session=0)["history"] == [[2, 1, "second = 2"]]
    assert history(kc, hist_access_type="range", session=-1, output=True)["history"] == [
        [1, 1, ["first = 1", None]], [1, 2, ["first + 1", "2"]]]
    assert history(kc, hist_access_type="tail", n=2)["history"] == [
        [1, 2, "first + 1"], [2, 1, "second = 2"]]

    # Killed 0.2 s after a cell, with no request since: rows are committed
    # within 10 ms, so the cell is there for the next kernel.
    run(kc, "killed = 3")
    time.sleep(0.2)
    assert history_after_kill(km, kc, db) == [
        [2, 1, "second = 2"], [2, 2, "killed = 3"]]

    # The file is IPython's shape; sessions that ended cleanly say so.
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    rows = con.execute("SELECT session, num_cmds, end IS NOT NULL FROM sessions").fetchall()
    assert rows == [(1, 2, 1), (2, None, 0), (3, 0, 1)]
    assert con.execute("SELECT source_raw FROM history WHERE session = 2 ORDER BY line"
                       ).fetchall() == [("second = 2",), ("killed = 3",)]
    con.close()


def test_killed_while_a_cell_runs(tmp_path):
    """The running cell's input is committed while it runs: a kernel killed
    half a second into a long cell has it in history."""
    db = tmp_path / "h.sqlite"
    km, kc = start(db)
    run(kc, "a = 1")
    kc.execute("import time; time.sleep(30)")
    time.sleep(0.5)
    assert history_after_kill(km, kc, db) == [
        [1, 1, "a = 1"], [1, 2, "import time; time.sleep(30)"]]


def test_committed_without_another_request(tmp_path):
    """A row waits at most 10 ms for others to share its commit: another
    reader of the file sees the cell 0.2 s after its reply, though the
    kernel has had no request since."""
    db = tmp_path / "h.sqlite"
    km, kc = start(db)
    try:
        run(kc, "x = 42", "x + 1")
        time.sleep(0.2)
        con = sqlite3.connect(db)
        try:
            assert con.execute("SELECT line, source_raw FROM history ORDER BY line").fetchall() == [
                (1, "x = 42"), (2, "x + 1")]
            assert con.execute("SELECT line, output FROM output_history").fetchall() == [(2, "43")]
        finally:
            con.close()
    finally:
        stop(km, kc)


def test_killed_while_writing(tmp_path):
    """SIGKILL while cells are being recorded as fast as they come: the file
    stays sound and holds every cell up to some point, in order."""
    db = tmp_path / "h.sqlite"
    km, kc = start(db)
    for i in range(300):
        kc.execute(f"v{i} = {i}")
    for _ in range(50):  # 50 have run; 0.3 s later, they are committed
        kc.get_shell_msg(timeout=10)
    time.sleep(0.3)
    got = history_after_kill(km, kc, db)
    assert 50 <= len(got) <= 300, len(got)
    assert got == [[1, i + 1, f"v{i} = {i}"] for i in range(len(got))]
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    con.close()


def test_two_kernels_share_the_file(tmp_path):
    db = tmp_path / "h.sqlite"
    (km1, kc1), (km2, kc2) = start(db), start(db)
    try:
        run(kc1, "one = 1")
        run(kc2, "two = 2")
        run(kc1, "one + 1")
        s1 = history(kc1, hist_access_type="range", session=0)["history"]
        s2 = history(kc2, hist_access_type="range", session=0)["history"]
        assert [h[1:] for h in s1] == [[1, "one = 1"], [2, "one + 1"]]
        assert [h[1:] for h in s2] == [[1, "two = 2"]]
        assert {s1[0][0], s2[0][0]} == {1, 2}
        assert history(kc2, hist_access_type="search", pattern="one*")["history"] == s1
    finally:
        stop(km1, kc1)
        stop(km2, kc2)


def test_damaged_file_is_set_aside(tmp_path):
    db = tmp_path / "h.sqlite"
    db.write_bytes(b"this is not a database" * 100)
    km, kc = start(db)
    try:
        run(kc, "z = 1")
        assert history(kc, hist_access_type="tail", n=5)["history"] == [[1, 1, "z = 1"]]
    finally:
        stop(km, kc)
    aside = [p.name for p in tmp_path.iterdir() if p.name.startswith("h.sqlite-corrupt-")]
    assert len(aside) == 1
    con = sqlite3.connect(db)
    assert con.execute("SELECT source_raw FROM history").fetchall() == [("z = 1",)]
    con.close()


def test_unusable_path_keeps_history_in_memory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    km, kc = start(blocker / "sub" / "h.sqlite")  # a directory under a file
    try:
        run(kc, "w = 5", "w * 2")
        assert history(kc, hist_access_type="tail", n=5, output=True)["history"] == [
            [1, 1, ["w = 5", None]], [1, 2, ["w * 2", "10"]]]
    finally:
        stop(km, kc)


def test_directory_of_the_file_is_created(tmp_path):
    db = tmp_path / "new" / "dir" / "h.sqlite"
    km, kc = start(db)
    try:
        run(kc, "v = 1")
    finally:
        stop(km, kc)
    con = sqlite3.connect(db)
    assert con.execute("SELECT source_raw FROM history").fetchall() == [("v = 1",)]
    con.close()


def test_default_location_under_jupyter_data_dir(tmp_path):
    from jupyter_client.manager import start_new_kernel
    env = dict(os.environ, JUPYTER_DATA_DIR=str(tmp_path / "data"))
    env.pop("PYROMETER_HISTORY", None)
    km, kc = start_new_kernel(kernel_name="pyrometer", startup_timeout=30, env=env)
    try:
        run(kc, "here = 1")
    finally:
        stop(km, kc)
    con = sqlite3.connect(tmp_path / "data" / "pyrometer" / "history.sqlite")
    assert con.execute("SELECT session, line, source_raw FROM history").fetchall() == [
        (1, 1, "here = 1")]
    con.close()


def test_tail_with_two_kernels_on_one_file(tmp_path):
    """Two kernels on one history file (two notebooks open): tail gives this
    session's last n inputs, made up from the others' latest only when this
    one has fewer, the others' first, as IPython's get_tail does (it gave
    whichever kernel wrote last; jupyter_kernel_test's history test fails
    on that)."""
    db = tmp_path / "h.sqlite"
    km1, kc1 = start(db)
    km2, kc2 = start(db)
    try:
        run(kc1, "a = 1", "a + 1")
        run(kc2, "b = 1")
        s1 = history(kc1, hist_access_type="range", session=0)["history"][0][0]
        s2 = history(kc2, hist_access_type="range", session=0)["history"][0][0]
        assert s1 != s2
        run(kc1, "a + 2")
        run(kc2, "b + 1", "b + 2")
        assert history(kc1, hist_access_type="tail", n=3)["history"] == [
            [s1, 1, "a = 1"], [s1, 2, "a + 1"], [s1, 3, "a + 2"]]
        assert history(kc2, hist_access_type="tail", n=2, output=True)["history"] == [
            [s2, 2, ["b + 1", "2"]], [s2, 3, ["b + 2", "3"]]]
        # fewer than n in this session: the latest of the others, before it
        assert history(kc2, hist_access_type="tail", n=5)["history"] == [
            [s1, 2, "a + 1"], [s1, 3, "a + 2"], [s2, 1, "b = 1"], [s2, 2, "b + 1"],
            [s2, 3, "b + 2"]]
    finally:
        stop(km1, kc1)
        stop(km2, kc2)
