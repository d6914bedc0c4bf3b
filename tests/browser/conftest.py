"""Fixtures for the browser tests: a headless Jupyter server (classic Notebook
6 on the host; JupyterLab 4 or Notebook 7 in the forky root) whose
JUPYTER_PATH offers the built kernel (the one tests/conftest.py creates), and a
headless Chromium driven by Selenium. Everything is local: the server listens
on 127.0.0.1 with a random token, and neither it nor the browser is told to go
online."""
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


def _die_with_parent():
    """In the server child: SIGTERM when the test process dies, so a killed
    or timed-out run leaves no server (or its kernels) behind."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _notebook_major():
    """The major version of this Python's `notebook` package, or None."""
    try:
        import notebook
    except ImportError:
        return None
    return int(notebook.__version__.split(".")[0])


def _artifact(name):
    """A path for a file the tests leave for people to look at (screenshots):
    under $PYROMETER_ARTIFACTS (tests/run_suite.py sets it to
    out/test-artifacts/STAGE), else under /tmp/pyrometer-artifacts."""
    folder = os.environ.get("PYROMETER_ARTIFACTS") or "/tmp/pyrometer-artifacts"
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, name)


@pytest.fixture(scope="session")
def artifact():
    """artifact(name) -> the path to save a screenshot or other artifact at."""
    return _artifact


class JupyterServer:
    """A Jupyter server child process on a free localhost port, with config,
    data and runtime dirs of its own. app is "classic" (Notebook 6,
    `python3 -m notebook` on the Debian 12 host), "lab" (JupyterLab 4) or
    "notebook7" (Notebook 7); the last two run on jupyter_server and expose
    their frontend as window.jupyterapp, so the tests can read its state."""

    def __init__(self, root, app="classic"):
        self.root = root
        self.app = app
        self.notebook_dir = os.path.join(root, "notebooks")
        os.makedirs(self.notebook_dir)
        self.token = uuid.uuid4().hex
        self.port = _free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log_path = os.path.join(root, "server.log")
        config = os.path.join(root, "config")
        env = dict(os.environ)
        env.update(JUPYTER_PATH=SPEC_DIR,
                   JUPYTER_CONFIG_DIR=config,
                   JUPYTER_RUNTIME_DIR=os.path.join(root, "runtime"),
                   JUPYTER_DATA_DIR=os.path.join(root, "data"),
                   JUPYTER_PLATFORM_DIRS="1",
                   PYROMETER_HISTORY=os.path.join(root, "history.sqlite"),
                   BROWSER="true")
        common = ["--no-browser", "--ip=127.0.0.1", "--port=%d" % self.port, "--port-retries=0"]
        if os.geteuid() == 0:
            common.append("--allow-root")
        if app == "classic":
            argv = [sys.executable, "-m", "notebook"] + common + [
                "--NotebookApp.token=" + self.token,
                "--NotebookApp.notebook_dir=" + self.notebook_dir,
                "--NotebookApp.open_browser=False"]
        else:
            # No news or update checks (their pop-up would cover the page) and
            # no extension manager: nothing asks the network.
            settings = os.path.join(config, "lab", "user-settings", "@jupyterlab",
                                    "apputils-extension")
            os.makedirs(settings)
            with open(os.path.join(settings, "notification.jupyterlab-settings"), "w") as f:
                json.dump({"fetchNews": "false", "checkForUpdates": False}, f)
            argv = [sys.executable, "-m", "jupyterlab" if app == "lab" else "notebook"] + common + [
                "--IdentityProvider.token=" + self.token,
                "--ServerApp.root_dir=" + self.notebook_dir]
            if app == "lab":
                argv += ["--LabApp.expose_app_in_browser=True", "--LabApp.extension_manager=readonly"]
            else:  # (a trait Notebook 7 lacks fails its whole configuration)
                argv += ["--JupyterNotebookApp.expose_app_in_browser=True"]
                # No cell toolbar. In forky's Notebook 7.4 build, disposing
                # one (each time the active cell changes, as running a cell
                # moves it) runs the web components' design-token teardown
                # into an endless mutual recursion: thousands of caught
                # "Maximum call stack size exceeded" errors, each logged, and
                # the page stops answering for minutes (chromedriver's
                # "script timeout"). The toolbar's buttons (move, copy,
                # delete a cell) are nothing the kernel tests use.
                labconfig = os.path.join(config, "labconfig")
                os.makedirs(labconfig)
                with open(os.path.join(labconfig, "page_config.json"), "w") as f:
                    json.dump({"disabledExtensions":
                               {"@jupyterlab/cell-toolbar-extension": True}}, f)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=_die_with_parent)

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
        raise RuntimeError("%s server did not start:\n%s" % (self.app, self.server_log()))

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


def _serve(app):
    """A running server of app offering the `pyrometer` kernelspec."""
    if not os.path.exists(SPEC):
        pytest.fail("no kernelspec from tests/conftest.py at %r" % SPEC)
    with open(SPEC) as f:
        kernel = json.load(f)["argv"][0]
    if not os.access(kernel, os.X_OK):
        pytest.fail("kernel not built: %s (set PYROMETER_BUILD)" % kernel)
    root = tempfile.mkdtemp(prefix="pyrometer-%s-" % app)
    server = JupyterServer(root, app)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def notebook_server():
    """The classic Notebook 6 (Debian 12's jupyter-notebook)."""
    major = _notebook_major()
    if major is None:
        pytest.skip("notebook not installed (apt-get install jupyter-notebook)")
    if major >= 7:
        pytest.skip("the classic Notebook 6 test runs on the Debian 12 host; this Python has "
                    "Notebook %d, which test_jupyter_ui.py drives" % major)
    yield from _serve("classic")


@pytest.fixture(scope="session")
def lab_server():
    """JupyterLab 4 (the forky root's jupyterlab)."""
    try:
        import jupyterlab
    except ImportError:
        pytest.skip("jupyterlab not installed: the JupyterLab 4 test runs in the forky root "
                    "(tests/run_suite.py --forky)")
    if int(jupyterlab.__version__.split(".")[0]) < 4:
        pytest.skip("JupyterLab %s installed: the test is for JupyterLab 4" % jupyterlab.__version__)
    yield from _serve("lab")


@pytest.fixture(scope="session")
def notebook7_server():
    """Notebook 7 (the forky root's jupyter-notebook)."""
    major = _notebook_major()
    if major is None or major < 7:
        pytest.skip("Notebook 7 not installed (this Python has %s): its test runs in the forky "
                    "root (tests/run_suite.py --forky)"
                    % ("no notebook" if major is None else "Notebook %d" % major))
    yield from _serve("notebook7")


@pytest.fixture(scope="session")
def driver():
    """A headless Chromium under Selenium, with a throwaway profile."""
    reason = _missing_browser()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.remote.remote_connection import RemoteConnection

    # A page that stops answering fails its command after 2 minutes,
    # instead of hanging the suite (chromedriver's calls have no timeout).
    RemoteConnection.set_timeout(120)
    profile = tempfile.mkdtemp(prefix="pyrometer-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    # Commands do not wait for page loads: every test polls for the state it
    # needs.
    opts.page_load_strategy = "none"
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


@pytest.fixture(scope="session")
def goto(driver):
    """goto(url): opens url in the browser by way of a blank page. A
    JupyterLab page loaded straight over another Jupyter page (another
    notebook of the same server, or another server's app) came up blank now
    and then: its scripts all loaded, yet it never asked the server for
    anything, so no kernel ever started ("timed out waiting for the kernel").
    Leaving the old page for about:blank first, and waiting until it is gone,
    gives each app a fresh start."""
    def go(url):
        driver.get("about:blank")
        deadline = time.monotonic() + 30
        while True:
            try:
                if driver.execute_script("return location.href;") == "about:blank":
                    break
            except Exception:  # the old page is still unloading
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the browser did not leave %s" % driver.current_url)
            time.sleep(0.1)
        driver.get(url)
    return go
