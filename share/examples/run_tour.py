#!/usr/bin/python3
"""run_tour.py - executes tour.ipynb through the installed pyrometer kernel
with nbclient and writes OUTDIR/tour.ipynb and OUTDIR/tour.html.

usage: run_tour.py OUTDIR [--kernel NAME]
Exits nonzero if any cell raises.
"""
import argparse
import os
import sys
import time

import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter

HERE = os.path.dirname(os.path.abspath(__file__))


def run(outdir, kernel="pyrometer"):
    nb = nbformat.read(os.path.join(HERE, "tour.ipynb"), as_version=4)
    t0 = time.time()
    NotebookClient(nb, kernel_name=kernel, timeout=300, allow_errors=False).execute()
    elapsed = time.time() - t0
    os.makedirs(outdir, exist_ok=True)
    nbformat.write(nb, os.path.join(outdir, "tour.ipynb"))
    html, _ = HTMLExporter().from_notebook_node(nb)
    with open(os.path.join(outdir, "tour.html"), "w") as f:
        f.write(html)
    return nb, elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--kernel", default="pyrometer")
    args = ap.parse_args()
    nb, elapsed = run(args.outdir, args.kernel)
    cells = sum(1 for c in nb.cells if c.cell_type == "code")
    print(f"ran {cells} code cells of tour.ipynb on kernel {args.kernel} in {elapsed:.1f} s")
    print(f"wrote {os.path.join(args.outdir, 'tour.ipynb')} and "
          f"{os.path.join(args.outdir, 'tour.html')}")


if __name__ == "__main__":
    sys.exit(main())
