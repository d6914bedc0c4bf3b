"""End-to-end check of the kernel in JupyterLab 4 and Notebook 7, in a real
browser: a headless Chromium (Selenium) drives each app, started with
expose_app_in_browser so the test can read the page's own state
(window.jupyterapp) besides what it shows.

It proves what a user sees, in each app:
- JupyterLab: the launcher offers "Python 3 (pyrometer)" under Notebook, and
  picking it opens a notebook whose kernel is the built pyrometer kernel;
- Notebook 7: a notebook saved with the pyrometer kernelspec opens on it;
- a function defined in one cell and `%lprun -f` on it in the next render as
  an HTML table with the exact hits of each line;
- the toolbar's interrupt button stops `while True: pass` with
  KeyboardInterrupt, and the namespace survives;
- `input()` shows its prompt and box, takes typed text and the cell goes on.

These apps are in the Debian forky root, not on the Debian 12 host, so
tests/run_suite.py --forky runs this file there on Python 3.14; elsewhere it
skips, naming what is missing. Screenshots of each step are saved under
$PYROMETER_ARTIFACTS (out/test-artifacts/STAGE), else /tmp/pyrometer-artifacts:
  tests/platforms/forky_root.sh run env PYROMETER_BUILD=$PWD/build-py3.14 \\
      python3 -m pytest -p no:cacheprovider -q tests/browser/test_jupyter_ui.py
"""
import json
import os
import re
import time

import pytest

SPEC = os.path.join(os.environ.get("JUPYTER_PATH", ""), "kernels", "pyrometer", "kernel.json")
KERNEL = "pyrometer"
TIMEOUT = 30
NB_NAME = "pyrometer-ui.ipynb"

# The function the line-profile test defines, and the hits CPython's line
# events give each of its lines for f(10): the def line never runs in the
# call, the loop header runs once more than its body.
FUNC = ("def f(n):\n"
        "    total = 0\n"
        "    for i in range(n):\n"
        "        total += i\n"
        "    return total")
FUNC_HITS = {1: "", 2: "1", 3: "11", 4: "10", 5: "1"}


def display_name():
    with open(SPEC) as f:
        return json.load(f)["display_name"]


def wait_for(what, fn, timeout=TIMEOUT, interval=0.1):
    """Polls fn() until it returns something truthy; returns that value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except Exception as e:  # stale elements, page still loading
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


# Defines panel: the notebook panel showing `path` (arguments[0]) in the main
# area, found through the app's own shell. JupyterLab and Notebook 7 share
# these notebook widgets, so the same lines serve both.
PRELUDE = """
const app = window.jupyterapp;
let panel = null;
for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === arguments[0]) { panel = w; break; }
}
const cellAt = (i) => panel.content.widgets[i];
"""


class NotebookPage:
    """One open notebook in JupyterLab or Notebook 7: runs cells the way a
    user does (editor focused, Shift+Enter, toolbar buttons) and reads the
    page's state and DOM."""

    def __init__(self, driver, app, path, artifact):
        self.driver = driver
        self.app = app
        self.path = path
        self.artifact = artifact

    def js(self, body, *args):
        return self.driver.execute_script(PRELUDE + body, self.path, *args)

    def screenshot(self, step):
        path = self.artifact("%s-%s.png" % (self.app, step))
        self.driver.save_screenshot(path)
        return path

    def status(self):
        return self.js("return panel ? panel.sessionContext.kernelDisplayStatus : null;")

    def wait_ready(self, timeout=60):
        """Waits for the panel, its kernel's session and an idle kernel."""
        wait_for("the notebook panel of %s" % self.path,
                 lambda: self.js("return !!panel && panel.context.isReady;"), timeout)
        wait_for("the kernel to start", lambda: self.js(
            "const k = panel.sessionContext.session && panel.sessionContext.session.kernel;"
            "return !!k && k.connectionStatus === 'connected';"), timeout)
        wait_for("the kernel to be idle", lambda: self.status() == "idle", timeout)

    def new_cell(self):
        """An empty code cell at the bottom, active and in edit mode; its index."""
        return self.js("""
            const nb = panel.content;
            let n = nb.widgets.length;
            const last = nb.widgets[n - 1];
            if (!(last.model.type === 'code' && last.model.sharedModel.getSource() === ''
                  && last.model.executionCount === null)) {
                panel.model.sharedModel.insertCell(n, {cell_type: 'code', source: ''});
                n += 1;
            }
            nb.activeCellIndex = n - 1;
            nb.mode = 'edit';
            nb.activeCell.editor.focus();
            return n - 1;""")

    def run(self, code, typed=False):
        """Enters code in a new cell (typed key by key, or set in the cell's
        model for multi-line code, which the editor's auto-indent would
        mangle), runs it as Shift+Enter does and waits for the run to start;
        the cell's index."""
        from selenium.webdriver.common.action_chains import ActionChains

        i = self.new_cell()
        wait_for("cell %d's editor to take focus" % i,
                 lambda: self.js("return cellAt(arguments[1]).editor.hasFocus();", i))
        if typed:
            ActionChains(self.driver).send_keys(code).perform()
            wait_for("the typed text", lambda: self.js(
                "return cellAt(arguments[1]).model.sharedModel.getSource();", i) == code)
        else:
            self.js("cellAt(arguments[1]).model.sharedModel.setSource(arguments[2]);", i, code)
        # What Shift+Enter is bound to. The command's promise settles only
        # when the cell ends: not awaited.
        self.js("app.commands.execute('notebook:run-cell-and-select-next'); return true;")
        wait_for("cell %d to start" % i, lambda: self.started(i))
        return i

    def prompt(self, i):
        """The cell's input prompt as shown: '[3]:', '[*]:', '[ ]:'."""
        return self.js("return cellAt(arguments[1]).node.querySelector('.jp-InputPrompt')"
                       ".textContent.trim();", i)

    def execution_count(self, i):
        return self.js("return cellAt(arguments[1]).model.executionCount;", i)

    def started(self, i):
        return "*" in self.prompt(i) or self.execution_count(i) is not None

    def finished(self, i):
        """True once cell i has its execution count (from its execute_reply)
        and the kernel shows idle."""
        return (self.execution_count(i) is not None and "*" not in self.prompt(i)
                and self.status() == "idle")

    def wait_done(self, i, timeout=TIMEOUT):
        wait_for("cell %d to finish" % i, lambda: self.finished(i), timeout)

    def outputs(self, i):
        """[(mime type, rendered text)] of each rendered output of cell i (not
        the input box, which has no MIME type)."""
        return self.js("""
            return Array.from(cellAt(arguments[1]).node.querySelectorAll(
                    '.jp-OutputArea-output[data-mime-type]'))
                .map(o => [o.getAttribute('data-mime-type'), o.innerText]);""", i)

    def text(self, i):
        return "\n".join(t.rstrip("\n") for _, t in self.outputs(i))

    def tables(self, i):
        """Each HTML table in cell i's outputs: [header texts, [row texts...]]."""
        return self.js("""
            const out = cellAt(arguments[1]).node.querySelector('.jp-Cell-outputArea');
            return Array.from(out.querySelectorAll('.jp-RenderedHTMLCommon table')).map(t => [
                Array.from(t.querySelectorAll('thead th')).map(c => c.innerText.trim()),
                Array.from(t.querySelectorAll('tbody tr')).map(
                    r => Array.from(r.children).map(c => c.innerText))]);""", i)

    def scroll_to(self, i):
        self.js("cellAt(arguments[1]).node.scrollIntoView({block: 'start'});", i)

    def toolbar_button(self, command):
        """The panel's toolbar button for command, as the user clicks it."""
        return wait_for("the toolbar button " + command, lambda: self.js(
            "return panel.toolbar.node.querySelector('[data-command=\"' + arguments[1] + '\"]');",
            command))


# (Notebook 7's page used to stop answering chromedriver, "script timeout",
# for minutes: its cell toolbar, which tests/browser/conftest.py now turns
# off there, sent forky's build into an endless recursion.)
@pytest.fixture(scope="module", params=["lab", "notebook7"])
def page(request, driver, goto, artifact):
    """A notebook on the pyrometer kernel, open and idle: in JupyterLab picked
    from the launcher, in Notebook 7 a saved notebook opened from its URL."""
    app = request.param
    server = request.getfixturevalue("lab_server" if app == "lab" else "notebook7_server")
    display = display_name()
    if app == "lab":
        goto("%s/lab?token=%s" % (server.url, server.token))
        card = wait_for("the launcher's %r card under Notebook" % display, lambda: [
            c for c in driver.find_elements("css selector", ".jp-LauncherCard[data-category='Notebook']")
            if c.get_attribute("title") == display and c.is_displayed()], 60)
        assert len(card) == 1
        driver.save_screenshot(artifact("lab-launcher.png"))
        card[0].click()
        # the notebook it opens: the app's current widget, once it has a file
        path = wait_for("the new notebook", lambda: driver.execute_script(
            "const w = window.jupyterapp.shell.currentWidget;"
            "return w && w.context && w.context.path.endsWith('.ipynb') && w.context.path;"))
    else:
        path = NB_NAME
        nb = {"nbformat": 4, "nbformat_minor": 5,
              "metadata": {"kernelspec": {"name": KERNEL, "display_name": display,
                                          "language": "python"},
                           "language_info": {"name": "python"}},
              "cells": [{"cell_type": "code", "id": "first", "metadata": {},
                         "execution_count": None, "outputs": [], "source": ""}]}
        with open(os.path.join(server.notebook_dir, path), "w") as f:
            json.dump(nb, f)
        goto("%s/notebooks/%s?token=%s" % (server.url, path, server.token))
    p = NotebookPage(driver, app, path, artifact)
    p.server = server
    try:
        p.wait_ready()
    except AssertionError:
        driver.save_screenshot(artifact("%s-not-ready.png" % app))
        print(server.server_log()[-4000:])
        raise
    yield p
    p.screenshot("final")
    # Shut the kernel down (the server's teardown ends any that remain).
    p.js("return panel.sessionContext.shutdown();")


def test_notebook_runs_on_pyrometer(page):
    """The notebook's session runs the built kernel under its display name."""
    assert page.js("return panel.sessionContext.session.kernel.name;") == KERNEL
    assert page.js("return panel.sessionContext.kernelDisplayName;") == display_name()
    [session] = wait_for("the notebook's session", lambda: [
        s for s in page.server.api("/api/sessions") if s["path"] == page.path])
    assert session["kernel"]["name"] == KERNEL
    # the toolbar names it too
    assert page.js("const e = panel.toolbar.node.querySelector('.jp-KernelName');"
                   "return e && e.innerText.trim();") == display_name()
    # and the kernel answering is ours, not ipykernel
    i = page.run("print(__pyrometer__.__name__)", typed=True)
    page.wait_done(i)
    assert page.text(i) == "_pyrometer_kernel"


def test_lprun_renders_a_table(page):
    i = page.run(FUNC)
    page.wait_done(i)
    assert page.outputs(i) == []
    j = page.run("%lprun -f f f(10)", typed=True)
    page.wait_done(j)
    page.scroll_to(j)
    page.screenshot("lprun")
    kinds = [kind for kind, _ in page.outputs(j)]
    assert kinds == ["text/html"], page.outputs(j)
    [(head, rows)] = page.tables(j)
    col = {name.lower(): k for k, name in enumerate(head)}
    line, hits, src = col["line"], col["hits"], col["line contents"]
    assert {int(r[line]): r[hits] for r in rows} == FUNC_HITS, rows
    assert [r[src].strip() for r in rows] == [s.strip() for s in FUNC.splitlines()]


def test_interrupt_button_stops_a_spinning_cell(page):
    i = page.run("keep = 'intact'\nwhile True: pass")
    wait_for("the kernel to be busy", lambda: page.status() == "busy")
    time.sleep(0.5)
    assert page.prompt(i) == "[*]:"
    page.toolbar_button("notebook:interrupt-kernel").click()
    page.wait_done(i)
    page.scroll_to(i)
    page.screenshot("interrupted")
    [(kind, text)] = page.outputs(i)
    assert kind == "application/vnd.jupyter.stderr"
    # the traceback ends with the exception and shows the line it stopped in
    # ("KeyboardInterrupt", or "KeyboardInterrupt: " as IPython prints it)
    lines = text.strip().splitlines()
    assert re.fullmatch(r"KeyboardInterrupt:?\s*", lines[-1]), text
    assert "while True: pass" in text, text
    j = page.run("print(keep)", typed=True)
    page.wait_done(j)
    assert page.text(j) == "intact"  # the namespace survived


def test_input_box_takes_an_answer(page):
    i = page.run("name = input('Your name? ')\nprint('hello,', name)")
    box = wait_for("the input box", lambda: page.js(
        "return cellAt(arguments[1]).node.querySelector('input.jp-Stdin-input');", i))
    assert page.js("return cellAt(arguments[1]).node.querySelector('.jp-Stdin-prompt')"
                   ".innerText;", i) == "Your name? "
    page.scroll_to(i)
    page.screenshot("input")
    box.click()
    box.send_keys("pyrometer\n")
    page.wait_done(i)
    # The app echoes prompt and answer as a stream (JupyterLab puts a space
    # of its own between them), then comes the cell's print.
    lines = page.text(i).splitlines()
    assert len(lines) == 2 and re.fullmatch(r"Your name\? +pyrometer", lines[0]), lines
    assert lines[1] == "hello, pyrometer"


def test_help_page_and_a_long_value_as_users_see_them(page):
    """`len?` shows its help with the labels in red (ANSI, rendered as
    coloured spans), and a long list shows one item a line, as IPython lays
    it out under ipykernel."""
    i = page.run("len?", typed=True)
    page.wait_done(i)
    page.scroll_to(i)
    page.screenshot("help-page")
    text = page.text(i)
    assert text.startswith("Signature: len(obj, /)\nDocstring: "), text
    reds = page.js("""
        return Array.from(cellAt(arguments[1]).node.querySelectorAll(
                '.jp-Cell-outputArea .ansi-red-fg'))
            .map(e => [e.innerText, getComputedStyle(e).color]);""", i)
    assert [t for t, _ in reds] == ["Signature:", "Docstring:", "Type:"], reds
    assert len({c for _, c in reds}) == 1 and reds[0][1] != page.js(
        "return getComputedStyle(cellAt(arguments[1]).node.querySelector("
        "'.jp-Cell-outputArea pre')).color;", i)  # red, not the text's colour
    j = page.run("list(range(30))", typed=True)
    page.wait_done(j)
    page.scroll_to(j)
    page.screenshot("long-value")
    assert page.text(j) == "[" + ",\n ".join(map(str, range(30))) + "]"
