"""The README's main job: share/examples/tour.ipynb runs through the kernel
with nbclient, every cell succeeds, and the outputs are the expected kinds."""
import os
import sys

import subprocess

from pyrometer_testing import ROOT, _build_python

PY_XY = tuple(int(x) for x in subprocess.run(
    [_build_python(), "-c", "import sys; print(*sys.version_info[:2])"],
    capture_output=True, text=True, check=True).stdout.split())

sys.path.insert(0, os.path.join(ROOT, "share", "examples"))
import run_tour  # noqa: E402


def outputs(cell):
    text, html = [], []
    for o in cell.get("outputs", []):
        if o["output_type"] == "stream":
            text.append(o["text"])
        elif "data" in o:
            text.append(o["data"].get("text/plain", ""))
            html.append(o["data"].get("text/html", ""))
    return "\n".join(text), "\n".join(html)


def test_tour(tmp_path):
    nb, elapsed = run_tour.run(str(tmp_path), kernel="pyrometer")
    assert (tmp_path / "tour.html").stat().st_size > 10000
    code = [c for c in nb.cells if c.cell_type == "code"]
    by_src = {c.source.splitlines()[0]: outputs(c) for c in code}
    assert by_src["import sys, platform"][0].startswith("Python %d.%d." % PY_XY)
    assert "background:#e8743b" in by_src["class Swatch:"][1]
    assert "Swatch('#4c8fd6')" in by_src["class Swatch:"][0]
    assert "Wall time:" in by_src["%time fib(18)"][0]
    assert "per loop" in by_src["%timeit -n 20 -r 3 fib(12)"][0]
    prun_text, prun_html = by_src["%prun -s cumtime -l 8 fib(18); build(20000)"]
    assert "function calls" in prun_text and "<svg" in prun_html
    lp_text, _ = by_src["%lprun -f build build(200000)"]
    assert "Function: build at line 4" in lp_text and "Line #" in lp_text
    assert "peak memory:" in by_src["%memit build(200000)"][0]
    mp_text, _ = by_src["%mprun -f build build(200000)"]
    assert "blob = bytearray(8 * 2**20)" in mp_text and "8.0" in mp_text
