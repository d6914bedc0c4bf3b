"""The profiler reports as JupyterLab 4 shows them: light and dark theme,
trusted and untrusted, in headless Chromium.

The notebook of tests/report_notebook.py (one cell per report, executed
through the built kernel with nbclient) is saved twice: signed, so JupyterLab
trusts it, and unsigned, so JupyterLab sanitizes its outputs as it does for a
notebook someone else sent. JupyterLab shows saved outputs without a kernel.
For each theme and trust, the test proves from the page:
- every chart <img> decoded and is shown, and each text of each chart
  contrasts with what is behind it (its box, or the page) by at least 3:1;
- every source cell keeps its whitespace (white-space: pre-wrap), is
  left-aligned and ends inside the output area at 1000 px: nothing is cut
  and nothing scrolls sideways;
- every <summary> shows its disclosure triangle (display: list-item);
- the dark theme is dark and the light theme light, so the checks mean it.
Screenshots of each report in each mode are saved under $PYROMETER_ARTIFACTS
(else tests/browser/artifacts/reports/, not committed): look at them.

JupyterLab 4.4 is in the Debian forky root, so this runs there (elsewhere it
skips, naming what is missing):
  tests/platforms/forky_root.sh run env PYROMETER_BUILD=$PWD/build-py3.14 \\
      python3 -m pytest -p no:cacheprovider -q tests/browser/test_report_rendering.py
PYROMETER_REPORT_NOTEBOOK=FILE.ipynb uses an executed notebook instead (from
another build, e.g. the host's 3.11 one)."""
import base64
import colorsys
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import xml.etree.ElementTree as ET

import pytest

from report_notebook import REPORTS, report_notebook

TIMEOUT = 60
WIDTH = 1000  # the width at which the issue found source columns cut
HERE = os.path.dirname(os.path.abspath(__file__))


def _artifacts():
    d = os.environ.get("PYROMETER_ARTIFACTS")
    d = os.path.join(d, "reports") if d else os.path.join(HERE, "artifacts", "reports")
    os.makedirs(d, exist_ok=True)
    return d


def _missing():
    try:
        import jupyterlab
    except ImportError:
        return "jupyterlab not installed (it is in the forky root: tests/platforms/forky_root.sh)"
    if int(jupyterlab.__version__.split(".")[0]) < 4:
        return "JupyterLab %s: this test is for JupyterLab 4" % jupyterlab.__version__
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed"
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return "chromium and chromedriver not installed"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a notebook folder holding reports.ipynb (signed,
    trusted) and reports-untrusted.ipynb; set_theme(name) picks the theme."""
    import nbformat
    from nbformat.sign import NotebookNotary

    root = str(tmp_path_factory.mktemp("lab"))
    nbdir, data, config = (os.path.join(root, d) for d in ("notebooks", "data", "config"))
    settings = os.path.join(root, "settings")
    for d in (nbdir, data, config, settings):
        os.makedirs(d)
    src = os.environ.get("PYROMETER_REPORT_NOTEBOOK")
    nb = nbformat.read(src, as_version=4) if src else report_notebook()
    NotebookNotary(data_dir=data).sign(nb)
    # (A signature is kept by content, so the unsigned copy must differ.)
    copy = nbformat.from_dict(json.loads(json.dumps(nb)))
    copy.metadata["pyrometer_test"] = "an unsigned copy"
    nbformat.write(copy, os.path.join(nbdir, "reports-untrusted.ipynb"))
    nbformat.write(nb, os.path.join(nbdir, "reports.ipynb"))

    def write_setting(plugin, values):
        folder = os.path.join(settings, "@jupyterlab", plugin.split(":")[0])
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, plugin.split(":")[1] + ".jupyterlab-settings"), "w") as f:
            json.dump(values, f)
    # Every cell rendered (no windowing), and no pop-ups over the page.
    write_setting("notebook-extension:tracker", {"windowingMode": "none"})
    write_setting("apputils-extension:notification", {"fetchNews": "false",
                                                      "checkForUpdates": False})
    token, port = uuid.uuid4().hex, _free_port()
    env = dict(os.environ, JUPYTER_DATA_DIR=data, JUPYTER_CONFIG_DIR=config,
               JUPYTER_RUNTIME_DIR=os.path.join(root, "runtime"),
               JUPYTERLAB_SETTINGS_DIR=settings,
               JUPYTERLAB_WORKSPACES_DIR=os.path.join(root, "workspaces"), BROWSER="true")
    log = open(os.path.join(root, "server.log"), "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
         "--port=%d" % port, "--port-retries=0", "--IdentityProvider.token=" + token,
         "--ServerApp.root_dir=" + nbdir, "--LabApp.expose_app_in_browser=True",
         "--LabApp.extension_manager=readonly"] + (["--allow-root"] if os.geteuid() == 0 else []),
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = "http://127.0.0.1:%d" % port
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            urllib.request.urlopen(url + "/api/status?token=" + token, timeout=5).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.close()
                raise RuntimeError(open(os.path.join(root, "server.log")).read())
            time.sleep(0.3)

    class Lab:
        pass
    lab = Lab()
    lab.url, lab.token = url, token
    lab.set_theme = lambda theme: write_setting("apputils-extension:themes", {"theme": theme})
    yield lab
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.close()


@pytest.fixture(scope="module")
def driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="pyrometer-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--no-first-run",
                "--force-device-scale-factor=1", "--user-data-dir=" + profile,
                "--window-size=%d,1400" % (WIDTH + 300)):
        opts.add_argument(arg)
    d = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    yield d
    d.quit()
    shutil.rmtree(profile, ignore_errors=True)


def wait_for(what, fn, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # the page still loading
            last = e
        time.sleep(0.2)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


# ---- colours ----------------------------------------------------------------------


def parse_colour(s, opacity=1.0):
    """(r, g, b, a) in 0..1 from CSS/SVG colour syntax: #rgb, #rrggbb,
    rgb()/rgba(), hsl()."""
    s = s.strip().lower()
    if s.startswith("#"):
        h = s[1:]
        if len(h) in (3, 4):
            h = "".join(c * 2 for c in h)
        a = int(h[6:8], 16) / 255 if len(h) == 8 else 1.0
        return tuple(int(h[i:i + 2], 16) / 255 for i in (0, 2, 4)) + (a * opacity,)
    m = re.fullmatch(r"rgba?\(([^)]*)\)", s)
    if m:
        p = [float(x) for x in re.split(r"[,\s/]+", m.group(1).strip())]
        return (p[0] / 255, p[1] / 255, p[2] / 255, (p[3] if len(p) > 3 else 1.0) * opacity)
    m = re.fullmatch(r"hsl\(([\d.]+),\s*([\d.]+)%,\s*([\d.]+)%\)", s)
    if m:
        r, g, b = colorsys.hls_to_rgb(float(m.group(1)) / 360, float(m.group(3)) / 100,
                                      float(m.group(2)) / 100)
        return (r, g, b, opacity)
    raise ValueError("colour %r" % s)


def over(fg, bg):
    """fg (with alpha) composited over the opaque bg."""
    a = fg[3]
    return tuple(fg[i] * a + bg[i] * (1 - a) for i in range(3)) + (1.0,)


def luminance(c):
    f = lambda v: v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2])


def contrast(a, b):
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


SVG = "{http://www.w3.org/2000/svg}"


def chart_texts(svg, page):
    """[(text, text colour, colour behind it)] for every <text> of an SVG
    chart drawn on the page colour: behind a text is the last rect drawn
    before it that contains its baseline start, composited on the page."""
    root = ET.fromstring(svg)
    out, rects = [], []

    def walk(el, fill):
        fill = el.get("fill", fill)
        for child in el:
            tag = child.tag.replace(SVG, "")
            if tag == "rect":
                x, y = float(child.get("x", 0)), float(child.get("y", 0))
                rects.append((x, y, x + float(child.get("width")), y + float(child.get("height")),
                              parse_colour(child.get("fill"), float(child.get("fill-opacity", 1)))))
            elif tag == "text":
                x, y = float(child.get("x", 0)), float(child.get("y", 0))
                anchor = child.get("text-anchor", "start")
                bg = page
                for x0, y0, x1, y1, c in rects:
                    if x0 <= x <= x1 and y0 <= y - 3 <= y1 and anchor == "start":
                        bg = over(c, bg)
                out.append(("".join(child.itertext()), parse_colour(child.get("fill", fill)), bg))
            else:
                walk(child, fill)
    walk(root, root.get("fill", "#000000"))
    return out


# ---- the page ------------------------------------------------------------------------

# What the test reads from the page for each report cell, in one script:
# the page's own background under each chart, each chart's state, source
# cells' computed style and extent, summaries' display.
PROBE = """
const app = window.jupyterapp;
let panel = null;
for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === arguments[0]) { panel = w; break; }
}
if (!panel || !panel.context.isReady) return null;
const bgOf = (el) => {
    for (let e = el; e; e = e.parentElement) {
        const c = getComputedStyle(e).backgroundColor;
        if (c && c !== 'transparent' && !/rgba\\(.*,\\s*0\\)$/.test(c)) return c;
    }
    return getComputedStyle(document.body).backgroundColor;
};
const out = [];
for (const cell of panel.content.widgets) {
    const report = cell.model.getMetadata ? cell.model.getMetadata('report') : null;
    if (!report) continue;
    const pyros = [...cell.node.querySelectorAll('.jp-OutputArea-output .pyro')];
    if (!pyros.length) return null;
    const all = (sel) => pyros.flatMap(p => [...p.querySelectorAll(sel)]);
    const areaOf = (el) => el.closest('.jp-OutputArea-output');
    out.push({
        report: report, trusted: cell.model.trusted,
        page: bgOf(pyros[0]),
        charts: all('img').map(i => ({
            src: i.getAttribute('src'), complete: i.complete, w: i.naturalWidth,
            shownW: i.getBoundingClientRect().width, page: bgOf(i)})),
        sources: all('td').filter(
            td => getComputedStyle(td).whiteSpace.startsWith('pre')).map(td => ({
            ws: getComputedStyle(td).whiteSpace, align: getComputedStyle(td).textAlign,
            right: td.getBoundingClientRect().right,
            areaRight: areaOf(td).getBoundingClientRect().right, text: td.textContent})),
        scroll: pyros.map(p => [areaOf(p).scrollWidth, areaOf(p).clientWidth]),
        summaries: all('summary').map(s => getComputedStyle(s).display),
        styleTags: cell.node.querySelectorAll('.jp-OutputArea-output style').length,
    });
}
return out;
"""

MODES = [("light", "JupyterLab Light", "reports.ipynb"),
         ("dark", "JupyterLab Dark", "reports.ipynb"),
         ("untrusted-light", "JupyterLab Light", "reports-untrusted.ipynb"),
         ("untrusted-dark", "JupyterLab Dark", "reports-untrusted.ipynb")]


@pytest.mark.parametrize("mode,theme,path", MODES, ids=[m[0] for m in MODES])
def test_reports_in_jupyterlab(lab, driver, mode, theme, path):
    from selenium.webdriver.common.by import By

    lab.set_theme(theme)
    driver.get("%s/lab/tree/%s?token=%s&reset" % (lab.url, path, lab.token))
    cells = wait_for("the report outputs of %s" % path,
                     lambda: driver.execute_script(PROBE, path), timeout=90)
    assert [c["report"] for c in cells] == list(REPORTS)
    # Screenshots for a reviewer's eyes (taken first, so a failure has them).
    outs = driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell .jp-Cell-outputArea")[1:]
    assert len(outs) == len(REPORTS)
    for name, el in zip(REPORTS, outs):
        driver.execute_script("arguments[0].scrollIntoView()", el)
        el.screenshot(os.path.join(_artifacts(), "%s-%s.png" % (name, mode)))
    page = parse_colour(cells[0]["page"])
    dark = luminance(page) < 0.1
    assert dark == theme.endswith("Dark"), (theme, cells[0]["page"])
    trusted = not mode.startswith("untrusted")
    failures = []
    for c in cells:
        name = c["report"]
        assert c["trusted"] == trusted, name
        assert c["styleTags"] == 0, name
        # Charts: shown, and every label readable on this page.
        want = {"prun": 1, "pstats": 1, "mprof": 1, "lprun": 0, "memit": 0, "mprun": 0}
        if name in want:  # (reports to come check their own count)
            assert len(c["charts"]) == want[name], (name, c["charts"])
        for ch in c["charts"]:
            assert ch["complete"] and ch["w"] > 0 and ch["shownW"] > 100, (name, ch["w"])
            svg = base64.b64decode(ch["src"].split(",", 1)[1]).decode()
            texts = chart_texts(svg, parse_colour(ch["page"]))
            assert texts, name
            for text, fg, bg in texts:
                r = contrast(over(fg, bg), bg)
                if r < 3:
                    failures.append("%s %s: %r contrasts %.2f:1" % (mode, name, text, r))
        # Source cells: whitespace kept, left-aligned, not cut, no sideways scroll.
        for s in c["sources"]:
            assert s["ws"] == "pre-wrap" and s["align"] == "left", (name, s)
            assert s["right"] <= s["areaRight"] + 1, (name, s["text"], s["right"], s["areaRight"])
        if name in ("lprun", "mprun"):
            assert c["sources"], name
            assert any(s["text"].startswith("    ") and s["text"].strip() for s in c["sources"]), name
        # Nothing scrolls sideways at this width: no column is cut.
        assert all(sw <= cw + 1 for sw, cw in c["scroll"]), (name, c["scroll"])
        assert all(d == "list-item" for d in c["summaries"]), (name, c["summaries"])
    assert not failures, "\n".join(failures)
