"""Every profiler report, sanitized as JupyterLab 4.4 sanitizes an untrusted
output (and as VS Code and GitHub treat notebooks), loses nothing: no tag,
no attribute, no inline style and no text. So the code lines keep their
whitespace, the function names and numbers stay, and every chart stays a
picture.

The sanitizer is JupyterLab's own: the Sanitizer of @jupyterlab/apputils 4.5
(the version JupyterLab 4.4 ships), run with node. It is installed with npm
into $PYROMETER_NPM_DIR (default ~/.cache/pyrometer/jupyterlab-sanitizer) the
first time; without node or npm access the test skips, saying so."""
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from pyrometer_testing import import_or_skip, report_charts
from report_notebook import REPORTS, report_html, report_notebook

APPUTILS = "@jupyterlab/apputils@~4.5.0"  # JupyterLab 4.4's
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def sanitize():
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to run JupyterLab's Sanitizer (apt-get install npm)")
    d = os.environ.get("PYROMETER_NPM_DIR") or os.path.expanduser(
        "~/.cache/pyrometer/jupyterlab-sanitizer")
    lib = os.path.join(d, "node_modules", "@jupyterlab", "apputils", "lib", "sanitizer.js")
    if not os.path.exists(lib):
        os.makedirs(d, exist_ok=True)
        r = subprocess.run([npm, "install", "--prefix", d, "--no-audit", "--no-fund", APPUTILS],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0 or not os.path.exists(lib):
            pytest.skip("could not npm install %s: %s" % (APPUTILS, r.stderr[-500:]))
    script = os.path.join(d, "jupyterlab_sanitize.mjs")
    shutil.copyfile(os.path.join(HERE, "jupyterlab_sanitize.mjs"), script)

    def run(htmls):
        r = subprocess.run([node, script], input=json.dumps(htmls), capture_output=True,
                           text=True, timeout=120, check=True)
        return json.loads(r.stdout)
    # The sanitizer does sanitize: what untrusted outputs lose is lost here.
    assert run(['<style>p{}</style><svg><text>t</text></svg><p style="color:var(--x)">a</p>']) \
        == ['t<p>a</p>']
    return run


@pytest.fixture(scope="module")
def notebook():
    # nbformat needs jsonschema, whose rpds has no compiled part for 3.13 in forky
    import_or_skip("nbformat")
    import_or_skip("nbclient")
    return report_notebook()


class Events(HTMLParser):
    """The document as a list of (start, tag, attributes) / (end, tag) /
    (text, str) events, attributes sorted and inline styles split into their
    declarations, so two serializations of one tree compare equal."""

    def __init__(self, html):
        super().__init__(convert_charrefs=True)
        self.events = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        norm = []
        for k, v in sorted(attrs):
            if k == "style":
                v = tuple(sorted(d.strip().replace(" ", "") for d in (v or "").split(";") if d.strip()))
            norm.append((k, v))
        self.events.append(("start", tag, tuple(norm)))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in ("img", "br", "hr"):
            self.events.append(("end", tag))

    def handle_endtag(self, tag):
        self.events.append(("end", tag))

    def handle_data(self, data):
        if self.events and self.events[-1][0] == "text":
            self.events[-1] = ("text", self.events[-1][1] + data)
        else:
            self.events.append(("text", data))


def text_of(html):
    return "".join(e[1] for e in Events(html).events if e[0] == "text")


@pytest.mark.parametrize("name", list(REPORTS))
def test_report_survives_jupyterlab_sanitizer(notebook, sanitize, name):
    (cell,) = [c for c in notebook.cells if c.metadata.get("report") == name]
    htmls = report_html(cell)
    assert htmls, cell.outputs
    for html, clean in zip(htmls, sanitize(htmls)):
        before, after = Events(html).events, Events(clean).events
        lost = [e for e in before if e not in after]
        assert before == after, "the sanitizer dropped %r" % lost[:5]
        # What a reader needs, said outright: the charts are the same pictures,
        # and the text (code, names, numbers) is all there.
        assert report_charts(clean) == report_charts(html)
        assert text_of(clean) == text_of(html)


def test_the_reports_hold_what_the_sanitizer_must_keep(notebook):
    """The comparison above means something: each report has code lines with
    their indentation, function names, numbers and its charts."""
    cells = {c.metadata.get("report"): "\n".join(report_html(c)) for c in notebook.cells}
    assert len(report_charts(cells["prun"])) == 1 and len(report_charts(cells["mprof"])) == 1
    assert len(report_charts(cells["pstats"])) == 1
    for name in ("prun", "pstats"):
        assert "fib" in text_of(cells[name]) and "long_line" in text_of(cells[name])
        # times with their unit (a fast Python runs this fib in under 1 ms: µs)
        assert re.search(r"\d+\.\d+ (?:s|ms|µs)\b", text_of(cells[name]))
    lp = text_of(cells["lprun"])
    assert "        total += (i * 3 + 1) % 7" in lp and "        parts.append(str(i) * 3)" in lp
    mp = text_of(cells["mprun"])
    assert "    a = bytearray(30 * 2**20)" in mp and "30.00 MiB" in mp
    assert "peak" in text_of(cells["memit"]) and "MiB" in text_of(cells["memit"])
    assert "__main__.grow" in report_charts(cells["mprof"])[0]


def test_text_fits_a_terminal(notebook):
    """jupyter console shows text/plain: every report's text fits 100
    columns (file-name notes apart), long source lines wrapped."""
    for c in notebook.cells:
        name = c.metadata.get("report")
        if not name:
            continue
        texts = [o["data"]["text/plain"] for o in c.outputs if o.get("output_type") == "display_data"]
        assert texts, name
        for t in texts:
            wide = [l for l in t.splitlines() if len(l) > 100 and not l.startswith("***")]
            assert not wide, (name, wide)
            assert not re.search(r"-0\.0+ (MiB|KiB)", t), (name, t)  # never "-0.0 MiB"
    (lp,) = [c for c in notebook.cells if c.metadata.get("report") == "lprun"]
    assert "\u21aa " in lp.outputs[0]["data"]["text/plain"]  # (long_line's long line wrapped)
