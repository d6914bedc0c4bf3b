"""Fixtures for the browser tests: a headless Jupyter Notebook server whose
JUPYTER_PATH offers the built kernel (the one tests/conftest.py creates), and a
headless Chromium driven by Selenium. Everything is local: the server listens
on 127.0.0.1 with a random token, and the browser is told not to go online."""
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

# tests/conftest.py has already run (pytest loads a parent directory's conftest
# first): it made a temporary JUPYTER_PATH whose kernels/pyrometer/kernel.json
# starts the built kernel, and exported it. Reuse that directory. (Importing
# it as `conftest` here would find this very module, so read the environment.)
SPEC_DIR = os.environ.get("JUPYTER_PATH", "")
SPEC = os.path.join(SPEC_DIR, "kernels", "pyrometer", "kernel.json")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
PACKAGES = "apt-get install chromium chromium-driver python3-selenium"


def _missing_browser():
    """The reason the browser tests cannot run, or None when they can."""
    missing = []
    if CHROMIUM is None:
        missing.append("chromium")
    if CHROMEDRIVER is None:
        missing.append("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium")
    if missing:
        return "%s not installed (%s)" % (", ".join(missing), PACKAGES)
    return None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NotebookServer:
    """A `python3 -m notebook` child process on a free localhost port."""

    def __init__(self, root):
        self.root = root
        self.notebook_dir = os.path.join(root, "notebooks")
        os.makedirs(self.notebook_dir)
        self.token = uuid.uuid4().hex
        self.port = _free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log_path = os.path.join(root, "server.log")
        env = dict(os.environ)
        env.update(JUPYTER_PATH=SPEC_DIR,
                   JUPYTER_CONFIG_DIR=os.path.join(root, "config"),
                   JUPYTER_RUNTIME_DIR=os.path.join(root, "runtime"),
                   JUPYTER_DATA_DIR=os.path.join(root, "data"),
                   JUPYTER_PLATFORM_DIRS="1",
                   PYROMETER_HISTORY=os.path.join(root, "history.sqlite"),
                   BROWSER="true")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "notebook", "--no-browser",
             "--ip=127.0.0.1", "--port=%d" % self.port, "--port-retries=0",
             "--NotebookApp.token=" + self.token,
             "--NotebookApp.notebook_dir=" + self.notebook_dir,
             "--NotebookApp.open_browser=False"]
            + (["--allow-root"] if os.geteuid() == 0 else []),
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def api(self, path, method="GET"):
        """The JSON answer of a REST call, authenticated with the token."""
        req = urllib.request.Request(self.url + path, method=method,
                                     headers={"Authorization": "token " + self.token})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                self.api("/api/status")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.2)
        raise RuntimeError("notebook server did not start:\n" + self.server_log())

    def server_log(self):
        self.log.flush()
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            try:  # shut the kernels down cleanly before the server goes
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


@pytest.fixture(scope="session")
def notebook_server():
    """A running notebook server offering the `pyrometer` kernelspec."""
    if not os.path.exists(SPEC):
        pytest.fail("no kernelspec from tests/conftest.py at %r" % SPEC)
    with open(SPEC) as f:
        kernel = json.load(f)["argv"][0]
    if not os.access(kernel, os.X_OK):
        pytest.fail("kernel not built: %s (set PYROMETER_BUILD)" % kernel)
    root = tempfile.mkdtemp(prefix="pyrometer-nbserver-")
    server = NotebookServer(root)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def driver():
    """A headless Chromium under Selenium, with a throwaway profile."""
    reason = _missing_browser()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="pyrometer-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--window-size=1280,1600",
                "--user-data-dir=" + profile):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        drv.set_page_load_timeout(60)
        drv.set_script_timeout(30)
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)
