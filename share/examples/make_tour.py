#!/usr/bin/python3
"""make_tour.py - writes tour.ipynb, the notebook the README's main command
runs. Edit the cells here, then run this script; both files are committed."""
import os

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    ("md", "# A tour of pyrometer\n\nA Python kernel written in C, with native profilers "
           "that work on functions defined right here in the notebook: no decorator, "
           "no extra package."),
    ("code", "import sys, platform\nprint('Python', platform.python_version())\n"
             "sum(i * i for i in range(10))"),
    ("md", "## Rich output\n\nThe last expression is displayed with its richest "
           "representation; `display()` is built in."),
    ("code", "class Swatch:\n    def __init__(self, color):\n        self.color = color\n"
             "    def _repr_html_(self):\n        return f'<div style=\"width:4em;height:1em;"
             "background:{self.color}\"></div>'\n    def __repr__(self):\n"
             "        return f'Swatch({self.color!r})'\n\n"
             "display(Swatch('#e8743b'))\nSwatch('#4c8fd6')"),
    ("md", "## Functions defined in a cell\n\nThese are the targets of the profilers below."),
    ("code", "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\n"
             "def build(n):\n    squares = [i * i for i in range(n)]\n"
             "    text = ','.join(str(s) for s in squares)\n"
             "    blob = bytearray(8 * 2**20)\n    total = sum(squares)\n"
             "    del blob\n    return total, len(text)\n\n"
             "build(1000)"),
    ("md", "## Timing"),
    ("code", "%time fib(18)"),
    ("code", "%timeit -n 20 -r 3 fib(12)"),
    ("md", "## `%prun`: which functions take the time"),
    ("code", "%prun -s cumtime -l 8 fib(18); build(20000)"),
    ("md", "## `%lprun`: which lines take the time"),
    ("code", "%lprun -f build build(200000)"),
    ("md", "## `%memit` and `%mprun`: where the memory goes"),
    ("code", "%memit build(200000)"),
    ("code", "%mprun -f build build(200000)"),
]


def main():
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "pyrometer", "display_name": "Python 3 (pyrometer)",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for kind, src in CELLS:
        nb.cells.append(new_markdown_cell(src) if kind == "md" else new_code_cell(src))
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tour.ipynb")
    nbformat.write(nb, out)


if __name__ == "__main__":
    main()
