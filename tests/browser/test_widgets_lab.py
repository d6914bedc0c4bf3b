"""ipywidgets 8 in JupyterLab 4 on the pyrometer kernel (issue 13): a slider
renders from the kernel's comm_open, and moving it in the page runs its
observer in the kernel, whose change comes back to the page. Needs
JupyterLab, ipywidgets 8 and jupyterlab_widgets (the forky root has them;
Debian 12 has neither JupyterLab nor ipywidgets 8, so it skips there)."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import pytest

# The kernelspecs tests/conftest.py made (importing a conftest by name could
# find another folder's).
SPEC_DIR = os.environ.get("JUPYTER_PATH", "")

pytest.importorskip("jupyterlab")
pytest.importorskip("jupyterlab_widgets")
ipywidgets = pytest.importorskip("ipywidgets")
if int(ipywidgets.__version__.split(".")[0]) < 8:
    pytest.skip("ipywidgets %s: the test needs 8" % ipywidgets.__version__,
                allow_module_level=True)

NOTEBOOKS = {
    "slider": ("import ipywidgets as w\n"
               "s = w.IntSlider(value=3, min=0, max=10, description='n')\n"
               "lab = w.Label('waiting')\n"
               "s.observe(lambda ch: setattr(lab, 'value', 'observer saw %d' % ch['new']),"
               " names='value')\n"
               "w.VBox([s, lab])"),
    "output": ("import ipywidgets as w\n"
               "out = w.Output()\n"
               "b = w.Button(description='go')\n"
               "def click(_):\n"
               "    with out:\n"
               "        print('clicked, in the kernel')\n"
               "b.on_click(click)\n"
               "with out:\n"
               "    print('captured by the widget')\n"
               "print('printed under the cell')\n"
               "w.VBox([b, out])"),
}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """`python3 -m jupyterlab` on a free localhost port, offering the kernelspecs
    of tests/conftest.py, with one notebook per NOTEBOOKS entry on pyrometer."""

    def __init__(self, root):
        self.root = root
        self.token = uuid.uuid4().hex
        self.port = _free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        os.makedirs(os.path.join(root, "nb"))
        for name, cell in NOTEBOOKS.items():
            with open(os.path.join(root, "nb", name + ".ipynb"), "w") as f:
                json.dump({"nbformat": 4, "nbformat_minor": 5,
                           "metadata": {"kernelspec": {"name": "pyrometer", "language": "python",
                                                       "display_name": "Python 3 (pyrometer)"}},
                           "cells": [{"cell_type": "code", "id": name, "metadata": {},
                                      "execution_count": None, "outputs": [],
                                      "source": cell}]}, f)
        env = dict(os.environ, JUPYTER_PATH=SPEC_DIR, BROWSER="true", JUPYTER_PLATFORM_DIRS="1",
                   JUPYTER_CONFIG_DIR=os.path.join(root, "config"),
                   JUPYTER_RUNTIME_DIR=os.path.join(root, "runtime"),
                   PYROMETER_HISTORY=os.path.join(root, "history.sqlite"))
        self.log_path = os.path.join(root, "server.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
             "--port=%d" % self.port, "--port-retries=0", "--ServerApp.token=" + self.token,
             "--ServerApp.root_dir=" + os.path.join(root, "nb"),
             "--LabApp.workspaces_dir=" + os.path.join(root, "workspaces"),
             "--LabApp.news_url=", "--LabApp.check_for_updates_class="
             "jupyterlab.handlers.announcements.NeverCheckForUpdate"]
            + (["--allow-root"] if os.geteuid() == 0 else []),
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def api(self, path, method="GET"):
        req = urllib.request.Request(self.url + path, method=method,
                                     headers={"Authorization": "token " + self.token})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def wait_ready(self, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                self.api("/api/status")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.3)
        raise RuntimeError("jupyterlab did not start:\n" + self.server_log())

    def server_log(self):
        self.log.flush()
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            try:
                for k in self.api("/api/kernels"):
                    self.api("/api/kernels/" + k["id"], method="DELETE")
            except (urllib.error.URLError, OSError):
                pass
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def lab():
    root = tempfile.mkdtemp(prefix="pyrometer-lab-")
    server = LabServer(root)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def wait_for(what, fn, timeout=60, server=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = fn()
        if r:
            return r
        time.sleep(0.2)
    raise AssertionError("timed out waiting for %s%s" % (
        what, "\n" + server.server_log()[-3000:] if server else ""))


PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden) "  # the notebook in front
OUT = PANEL + ".jp-Notebook .jp-Cell .jp-OutputArea-output"


def open_and_run(lab, driver, goto, name):
    """Opens NOTEBOOKS[name] in JupyterLab and runs its cell once the kernel
    is idle."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    before = {k["id"] for k in kernels(lab)}
    # ?reset: a fresh workspace, without the tabs of the test before (and
    # goto passes by a blank page: see tests/browser/conftest.py)
    goto("%s/lab/tree/%s.ipynb?reset&token=%s" % (lab.url, name, lab.token))
    # the first page load is slow on a busy machine (the test ran beside others)
    wait_for("the pyrometer kernel", lambda: {k["id"] for k in kernels(lab)} - before,
             timeout=180, server=lab)

    def focus_cell():  # JupyterLab may render the cell again while it loads
        try:
            found = driver.find_elements(By.CSS_SELECTOR, PANEL + ".jp-Notebook .jp-Cell .cm-content")
            if found:
                found[0].click()
                return True
        except StaleElementReferenceException:
            pass
        return False

    def kernel_idle():
        bar = driver.find_elements(By.CSS_SELECTOR, "#jp-main-statusbar")
        return bar and "Python 3 (pyrometer) | Idle" in bar[0].text

    wait_for("the kernel's idle status", kernel_idle, timeout=120, server=lab)
    wait_for("the notebook's cell", focus_cell, server=lab)
    ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()


def kernels(lab):
    try:
        return lab.api("/api/kernels")
    except (urllib.error.URLError, OSError):  # a 500 while it starts
        return []


def test_slider_renders_and_moving_it_runs_its_observer(lab, driver, goto, artifact):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    open_and_run(lab, driver, goto, "slider")
    out, shot = OUT, artifact("widgets-slider-%s.png")
    try:
        handle = wait_for("the slider", lambda: driver.find_elements(
            By.CSS_SELECTOR, out + " .widget-slider .noUi-handle"), server=lab)[0]
    finally:
        driver.save_screenshot(shot % "before")
    readout = driver.find_element(By.CSS_SELECTOR, out + " .widget-readout")
    assert readout.text == "3"
    assert "waiting" in driver.find_element(By.CSS_SELECTOR, out).text

    # Move it one step with the keyboard, as noUiSlider allows. (Forky's
    # jupyterlab-widgets 3.0.13 build names no style module, so JupyterLab
    # loads none of the widgets' CSS, for ipykernel alike: the handle has no
    # size to click or drag, but it takes focus and keys.)
    driver.execute_script("arguments[0].focus()", handle)
    ActionChains(driver).send_keys(Keys.ARROW_RIGHT).perform()
    try:
        wait_for("the observer's change on the page", lambda: "observer saw 4" in
                 driver.find_element(By.CSS_SELECTOR, out).text, timeout=30, server=lab)
    finally:
        driver.save_screenshot(shot % "after")
    assert readout.text == "4"


def test_output_widget_captures_the_cell_and_a_click(lab, driver, goto, artifact):
    from selenium.webdriver.common.by import By

    open_and_run(lab, driver, goto, "output")
    widget = OUT + " .widget-output"
    shot = artifact("widgets-output-%s.png")
    try:
        wait_for("the Output widget's text", lambda: "captured by the widget" in "".join(
            e.text for e in driver.find_elements(By.CSS_SELECTOR, widget)), server=lab)
    finally:
        driver.save_screenshot(shot % "before")
    # what the cell printed outside `with out:` is the cell's own output
    plain = [e.text for e in driver.find_elements(By.CSS_SELECTOR, OUT)
             if "printed under the cell" in e.text]
    assert plain and all("captured by the widget" not in t for t in plain)

    driver.find_element(By.CSS_SELECTOR, OUT + " button.widget-button").click()
    try:
        wait_for("the click's output inside the widget", lambda: "clicked, in the kernel" in
                 driver.find_element(By.CSS_SELECTOR, widget).text, timeout=30, server=lab)
    finally:
        driver.save_screenshot(shot % "after")
