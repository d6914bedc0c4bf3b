"""End-to-end check of the kernel in Jupyter Notebook's web UI, in a real
browser: a headless Chromium (Selenium) drives a classic Notebook 6 server
(Debian's jupyter-notebook) whose JUPYTER_PATH holds the built kernel.

It proves what a user sees: the New menu and the kernelspec API offer
"Python 3 (pyrometer)"; a notebook on that kernel starts it and goes idle;
cells typed and run with Shift+Enter render print output, a traceback naming
ValueError, %prun's HTML table and SVG flame graph, an input() box that takes
typed text, and the toolbar's interrupt button stops `while True: pass` with
KeyboardInterrupt while the namespace survives.

Needs Debian's chromium, chromium-driver and python3-selenium (skipped, with
the reason, when one is missing). Run it alone with
  PYROMETER_BUILD=build /usr/bin/python3 -m pytest tests/browser -q
A screenshot of the finished notebook is left at /tmp/pyrometer-notebook.png
(or $PYROMETER_SCREENSHOT)."""
import json
import os
import re
import time

import pytest

NB_NAME = "pyrometer-ui.ipynb"
DISPLAY = "Python 3 (pyrometer)"
SCREENSHOT = os.environ.get("PYROMETER_SCREENSHOT", "/tmp/pyrometer-notebook.png")
TIMEOUT = 30


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


def test_kernelspec_api_lists_pyrometer(notebook_server):
    specs = notebook_server.api("/api/kernelspecs")["kernelspecs"]
    assert specs["pyrometer"]["spec"]["display_name"] == DISPLAY
    assert specs["pyrometer"]["spec"]["language"] == "python"


def test_new_menu_offers_pyrometer(notebook_server, driver):
    """New > Python 3 (pyrometer) on the file browser opens a new notebook
    in a new tab, on a pyrometer kernel that starts and goes idle."""
    from selenium.webdriver.common.by import By

    driver.get("%s/tree?token=%s" % (notebook_server.url, notebook_server.token))
    wait_for("the kernel list in the New menu",
             lambda: driver.find_elements(By.CSS_SELECTOR, "#new-menu #kernel-pyrometer"))
    driver.find_element(By.ID, "new-dropdown-button").click()
    item = wait_for("a visible New > Python 3 (pyrometer) entry",
                    lambda: [e for e in driver.find_elements(
                        By.CSS_SELECTOR, "#new-menu #kernel-pyrometer a") if e.is_displayed()])
    assert item[0].text == DISPLAY
    assert len(driver.find_elements(By.CSS_SELECTOR, "#new-menu #kernel-pyrometer")) == 1

    tree = driver.current_window_handle
    item[0].click()
    wait_for("the new notebook's tab", lambda: len(driver.window_handles) == 2)
    driver.switch_to.window([h for h in driver.window_handles if h != tree][0])
    try:
        p = Page(driver)
        p.wait_loaded()
        assert p.js("return Jupyter.notebook.kernel.name;") == "pyrometer"
        assert p.js("return Jupyter.notebook.metadata.kernelspec.display_name;") == DISPLAY
        # Close and Halt: the session and its kernel go
        p.js("Jupyter.notebook.session.delete();")
        wait_for("the new notebook's session to end", lambda: not [
            s for s in notebook_server.api("/api/sessions") if s["path"] != NB_NAME])
    finally:
        driver.close()
        driver.switch_to.window(tree)


class Page:
    """The open notebook: runs cells the way a user does and reads the DOM."""

    def __init__(self, driver):
        self.driver = driver

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def wait_loaded(self):
        """Waits for the notebook page and its kernel to be ready and idle."""
        wait_for("the notebook to load", lambda: self.js(
            "return !!(window.Jupyter && Jupyter.notebook && Jupyter.notebook._fully_loaded);"), 60)
        wait_for("the kernel to connect", lambda: self.js(
            "var k = Jupyter.notebook.kernel; return !!(k && k.is_connected());"), 60)
        wait_for("the kernel to be idle", self.kernel_idle, 60)

    def kernel_idle(self):
        return self.js("var i = document.getElementById('kernel_indicator_icon');"
                       "return !!i && i.classList.contains('kernel_idle_icon');")

    def new_cell(self):
        """Appends an empty code cell, selected and in edit mode; its index."""
        return self.js("var nb = Jupyter.notebook;"
                       "var last = nb.get_cell(nb.ncells() - 1);"
                       "var i = (last.cell_type === 'code' && last.get_text() === '')"
                       "        ? nb.ncells() - 1 : (nb.insert_cell_at_bottom('code'), nb.ncells() - 1);"
                       "nb.select(i); nb.edit_mode(); return i;")

    def run(self, code, typed=False):
        """Enters code into a new cell (typed key by key, or set through
        CodeMirror for multi-line code, whose auto-indent would mangle typed
        text), presses Shift+Enter, and returns the cell's index."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        i = self.new_cell()
        if typed:
            wait_for("the cell editor to take focus", lambda: self.js(
                "return Jupyter.notebook.get_cell(arguments[0]).code_mirror.hasFocus();", i))
            ActionChains(self.driver).send_keys(code).perform()
            wait_for("the typed text", lambda: self.js(
                "return Jupyter.notebook.get_cell(arguments[0]).get_text();", i) == code)
        else:
            self.js("var c = Jupyter.notebook.get_cell(arguments[0]);"
                    "c.set_text(arguments[1]); c.focus_editor();", i, code)
        (ActionChains(self.driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER)
         .key_up(Keys.SHIFT).perform())
        wait_for("cell %d to start" % i, lambda: self.js(
            "return Jupyter.notebook.get_cell(arguments[0]).input_prompt_number != null;", i))
        return i

    def prompt(self, i):
        return self.js("return Jupyter.notebook.get_cell(arguments[0]).input_prompt_number;", i)

    def finished(self, i):
        """True once the page has both the execute_reply and the iopub idle
        status of cell i's own request (the kernel's per-request bookkeeping)."""
        return self.js("var c = Jupyter.notebook.get_cell(arguments[0]);"
                       "var cb = c.last_msg_id && Jupyter.notebook.kernel._msg_callbacks[c.last_msg_id];"
                       "return typeof c.input_prompt_number === 'number'"
                       "    && !!cb && cb.shell_done && cb.iopub_done;", i)

    def wait_done(self, i, timeout=TIMEOUT):
        """Waits for cell i to finish and the kernel indicator to show idle."""
        wait_for("cell %d to finish" % i, lambda: self.finished(i) and self.kernel_idle(), timeout)

    def output(self, i):
        """The cell's rendered output area element."""
        from selenium.webdriver.common.by import By
        cells = self.driver.find_elements(By.CSS_SELECTOR, "#notebook-container > .cell")
        return cells[i].find_element(By.CSS_SELECTOR, ".output")

    def text(self, i):
        return self.output(i).text


@pytest.fixture(scope="module")
def page(notebook_server, driver):
    """The notebook NB_NAME, on the pyrometer kernel, open and idle."""
    nb = {"nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "pyrometer", "display_name": DISPLAY,
                                      "language": "python"},
                       "language_info": {"name": "python"}},
          "cells": [{"cell_type": "code", "id": "first", "metadata": {},
                     "execution_count": None, "outputs": [], "source": ""}]}
    with open(os.path.join(notebook_server.notebook_dir, NB_NAME), "w") as f:
        json.dump(nb, f)
    driver.get("%s/notebooks/%s?token=%s" % (notebook_server.url, NB_NAME,
                                             notebook_server.token))
    p = Page(driver)
    p.wait_loaded()
    yield p
    driver.execute_script("window.scrollTo(0, 0);")
    driver.save_screenshot(SCREENSHOT)
    # Close and Halt: end the session and its kernel (the server's teardown
    # shuts down any kernel still running).
    driver.execute_script("Jupyter.notebook.session.delete();")


def test_notebook_runs_on_pyrometer(page, notebook_server):
    assert page.js("return Jupyter.notebook.kernel.name;") == "pyrometer"
    assert page.js("return document.querySelector('.kernel_indicator_name').textContent;") == DISPLAY
    [session] = [s for s in notebook_server.api("/api/sessions") if s["path"] == NB_NAME]
    assert session["kernel"]["name"] == "pyrometer"


def test_print_typed_with_shift_enter(page):
    i = page.run("print('hello')", typed=True)
    page.wait_done(i)
    assert page.text(i) == "hello"
    assert page.prompt(i) == 1
    # the kernel answering is ours, not ipykernel
    j = page.run("print(__pyrometer__.__name__)", typed=True)
    page.wait_done(j)
    assert page.text(j) == "_pyrometer_kernel"
    assert page.prompt(j) == 2


def test_exception_traceback(page):
    i = page.run("x = 1\nraise ValueError('bad value %d' % x)")
    page.wait_done(i)
    from selenium.webdriver.common.by import By
    err = page.output(i).find_elements(By.CSS_SELECTOR, ".output_error")
    assert len(err) == 1
    # the cell's own lines, nothing of the kernel's, laid out as IPython does
    assert [l.rstrip() for l in err[0].text.splitlines()] == [
        "-" * 75,
        "ValueError                                Traceback (most recent call last)",
        "Cell In[%d], line 2" % page.prompt(i),
        "      1 x = 1",
        "----> 2 raise ValueError('bad value %d' % x)",
        "",
        "ValueError: bad value 1"]
    # in colour: the exception's name is red (IPython's ansi-red)
    reds = err[0].find_elements(By.CSS_SELECTOR, ".ansi-red-fg")
    assert [r.text for r in reds][-1] == "ValueError"


def test_prun_renders_table_and_flame_graph(page):
    from selenium.webdriver.common.by import By
    i = page.run("def f(n):\n    return n if n < 2 else f(n - 1) + f(n - 2)")
    page.wait_done(i)
    j = page.run("%prun f(20)", typed=True)
    page.wait_done(j)
    out = page.output(j)
    tables = wait_for("the %prun table", lambda: out.find_elements(By.CSS_SELECTOR, ".output_html table"))
    svgs = out.find_elements(By.CSS_SELECTOR, ".output_html svg")
    assert len(svgs) >= 1
    assert svgs[0].size["width"] > 50 and svgs[0].size["height"] > 10, svgs[0].size
    # f(20) makes 21891 calls, 1 of them primitive; plus the statement's <module>
    assert re.match(r"21892 function calls \(2 primitive calls\) in ", out.text), out.text
    assert re.search(r"^21891/1 .* f In \[%d\]:1$" % page.prompt(i), tables[0].text, re.M), tables[0].text


def test_input_box(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    i = page.run("name = input('Your name? ')\nprint('hello,', name)")
    box = wait_for("the input box", lambda: [
        e for e in page.output(i).find_elements(By.CSS_SELECTOR, "input.raw_input") if e.is_displayed()])
    assert page.output(i).find_element(By.CSS_SELECTOR, ".raw_input_prompt").text == "Your name? "
    box[0].click()
    box[0].send_keys("pyrometer" + Keys.ENTER)
    page.wait_done(i)
    assert page.text(i).splitlines() == ["Your name? pyrometer", "hello, pyrometer"]


def test_interrupt_button_stops_loop(page):
    from selenium.webdriver.common.by import By
    i = page.run("keep = 'intact'\nwhile True: pass")
    wait_for("the kernel to be busy", lambda: page.js(
        "return document.getElementById('kernel_indicator_icon')"
        ".classList.contains('kernel_busy_icon');"))
    time.sleep(0.5)
    assert page.prompt(i) == "*"
    page.driver.find_element(
        By.CSS_SELECTOR, "button[data-jupyter-action='jupyter-notebook:interrupt-kernel']").click()
    page.wait_done(i)
    err = page.output(i).find_elements(By.CSS_SELECTOR, ".output_error")
    assert len(err) == 1, page.text(i)
    assert err[0].text.splitlines() == [
        "Traceback (most recent call last):",
        '  File "<cell-%d>", line 2, in <module>' % page.prompt(i),
        "    while True: pass",
        "KeyboardInterrupt"]
    j = page.run("print(keep, f(10))", typed=True)
    page.wait_done(j)
    assert page.text(j) == "intact 55"
