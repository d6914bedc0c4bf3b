"""ipywidgets 8 over the kernel's comms (issue 13), with jupyter_client
playing the frontend's widget manager: a slider's model opens, moving it
runs its observer, the Output widget captures a cell's output and a
callback's, tqdm.notebook's bar reaches its end, and the control comm
returns every widget's state. Needs ipywidgets 8 in the kernel's Python
(the forky root's python3-ipywidgets 8.1.5; Debian 12 has only 6)."""
import time

import pytest

from kernel_util import execute, of_type, stdout_of

ipywidgets = pytest.importorskip("ipywidgets")
if int(ipywidgets.__version__.split(".")[0]) < 8:
    pytest.skip(f"ipywidgets {ipywidgets.__version__}: 8 or later uses the comm package",
                allow_module_level=True)

VIEW = "application/vnd.jupyter.widget-view+json"


def ok(kc, code):
    reply, msgs = execute(kc, code)
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply, msgs


def send(kc, msg_type, content, metadata=None):
    msg = kc.session.msg(msg_type, content, metadata=metadata)
    kc.shell_channel.send(msg)
    return msg["header"]["msg_id"]


def collect(kc, msg_id, timeout=10):
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


def opened(msgs, model):
    return [m for m in msgs if m["msg_type"] == "comm_open"
            and m["content"]["data"]["state"].get("_model_name") == model]


def updates(msgs, comm_id):
    return [m["content"]["data"] for m in msgs
            if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id]


def test_slider_renders_and_moving_it_runs_its_observer(kernel):
    km, kc = kernel
    reply, msgs = ok(kc, "import ipywidgets as w\nseen = []\n"
                         "s = w.IntSlider(value=3, min=0, max=10, description='n')\n"
                         "s.observe(lambda ch: seen.append(ch['new']), names='value')\ns")
    [op] = opened(msgs, "IntSliderModel")
    sid = op["content"]["comm_id"]
    assert op["content"]["target_name"] == "jupyter.widget"
    assert op["metadata"]["version"].split(".")[0] == "2"
    state = op["content"]["data"]["state"]
    assert (state["value"], state["min"], state["max"], state["description"]) == (3, 0, 10, "n")
    # its layout and style models opened first, and the view names the model
    assert state["layout"].startswith("IPY_MODEL_") and state["style"].startswith("IPY_MODEL_")
    [res] = of_type(msgs, "execute_result")
    assert res["content"]["data"][VIEW]["model_id"] == sid
    assert res["content"]["data"][VIEW]["version_major"] == 2

    mid = send(kc, "comm_msg", {"comm_id": sid, "data": {"method": "update",
                                                         "state": {"value": 7},
                                                         "buffer_paths": []}})
    msgs = collect(kc, mid)
    # ipywidgets 8 echoes the accepted value back to every frontend
    assert {"method": "echo_update", "state": {"value": 7}, "buffer_paths": []} in updates(msgs, sid)
    reply, msgs = ok(kc, "print(seen, s.value)")
    assert stdout_of(msgs) == "[7] 7\n"

    # and a value set in the kernel reaches the frontend
    reply, msgs = ok(kc, "s.value = 9")
    assert {"method": "update", "state": {"value": 9}, "buffer_paths": []} in updates(msgs, sid)


def test_output_widget_captures_a_cell_and_a_callback(kernel):
    km, kc = kernel
    reply, msgs = ok(kc, "import ipywidgets as w\nout = w.Output()\n"
                         "b = w.Button(description='go')\n"
                         "def click(_):\n    with out:\n        print('clicked')\n"
                         "b.on_click(click)\nout")
    [op] = opened(msgs, "OutputModel")
    oid = op["content"]["comm_id"]
    [bop] = opened(msgs, "ButtonModel")
    bid = bop["content"]["comm_id"]

    reply, msgs = ok(kc, "with out:\n    print('captured')\nprint('not captured')")
    cell = reply["parent_header"]["msg_id"]
    order = [(m["msg_type"], m["content"].get("data", {}).get("state", {}).get("msg_id"),
              m["content"].get("text")) for m in msgs
             if (m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == oid)
             or m["msg_type"] == "stream"]
    # the frontend routes messages of msg_id into the widget while it is set
    assert order[0] == ("comm_msg", cell, None)
    assert ("stream", None, "captured\n") in order
    assert order.index(("stream", None, "captured\n")) < order.index(("comm_msg", "", None))
    assert stdout_of(msgs) == "captured\nnot captured\n"
    assert all(m["parent_header"]["msg_id"] == cell for m in msgs)

    mid = send(kc, "comm_msg", {"comm_id": bid, "data": {"method": "custom",
                                                         "content": {"event": "click"}}})
    msgs = collect(kc, mid)
    ids = [d["state"]["msg_id"] for d in updates(msgs, oid) if "msg_id" in d.get("state", {})]
    assert ids[0] == mid and ids[-1] == ""
    assert stdout_of(msgs) == "clicked\n"


def test_tqdm_notebook_bar(kernel):
    km, kc = kernel
    pytest.importorskip("tqdm")
    reply, msgs = ok(kc, "from tqdm.notebook import tqdm\nfor i in tqdm(range(5), desc='work'):\n"
                         "    pass")
    [bar] = opened(msgs, "FloatProgressModel")
    bid = bar["content"]["comm_id"]
    assert bar["content"]["data"]["state"]["max"] == 5
    values = [d["state"]["value"] for d in updates(msgs, bid) if "value" in d.get("state", {})]
    assert values[-1] == 5
    [hbox] = opened(msgs, "HBoxModel")
    shown = [m for m in of_type(msgs, "display_data") if VIEW in m["content"]["data"]]
    assert [m["content"]["data"][VIEW]["model_id"] for m in shown] == [hbox["content"]["comm_id"]]


def test_control_comm_returns_every_state(kernel):
    km, kc = kernel
    reply, msgs = ok(kc, "import ipywidgets as w\nt = w.Text(value='hello')")
    [op] = opened(msgs, "TextModel")
    tid = op["content"]["comm_id"]
    kc.comm_info("jupyter.widget")
    listed = kc.get_shell_msg(timeout=5)["content"]["comms"]
    assert listed[tid] == {"target_name": "jupyter.widget"}

    # as JupyterLab's widget manager opens it, with the control protocol's version
    mid = send(kc, "comm_open", {"comm_id": "ctl", "target_name": "jupyter.widget.control",
                                 "data": {}}, metadata={"version": "1.0.0"})
    msgs = collect(kc, mid)
    assert not [m for m in msgs if m["msg_type"] == "comm_close"]
    mid = send(kc, "comm_msg", {"comm_id": "ctl", "data": {"method": "request_states"}})
    msgs = collect(kc, mid)
    [reply] = updates(msgs, "ctl")
    assert reply["method"] == "update_states"
    assert reply["states"][tid]["state"]["value"] == "hello"


def test_output_widget_captures_once_ipython_is_up(fresh_kernel):
    """IPython.get_ipython() is the kernel's shell, and its .kernel has
    get_parent() as ipykernel's does: the Output widget, which asks it for
    the request to capture, captures with IPython's shell up too."""
    km, kc = fresh_kernel
    ok(kc, "%config InteractiveShell.separate_in = ''")  # IPython's shell comes up
    reply, msgs = ok(kc, "import ipywidgets as w\nout = w.Output()\nout")
    [op] = opened(msgs, "OutputModel")
    oid = op["content"]["comm_id"]
    reply, msgs = ok(kc, "with out:\n    print('captured')")
    cell = reply["parent_header"]["msg_id"]
    ids = [d["state"]["msg_id"] for d in updates(msgs, oid) if "msg_id" in d.get("state", {})]
    assert ids == [cell, ""]
    assert stdout_of(msgs) == "captured\n"

