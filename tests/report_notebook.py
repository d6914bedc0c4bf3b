"""A notebook holding one of every profiler report, executed through the
built kernel with nbclient, as a user would save it. The sanitizer test
(tests/magics/test_report_sanitized.py) and the browser test
(tests/browser/test_report_rendering.py) both read it.

REPORTS maps a report's name to its cell; SETUP defines what they profile,
including a source line longer than any page, a function behind
functools.wraps and enough small functions to pass %prun's default rows."""
import textwrap

SETUP = textwrap.dedent('''\
    import functools

    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    def build(n):
        parts = []
        for i in range(n):
            parts.append(str(i) * 3)
        return "".join(parts)

    def long_line(n):
        total = 0
        for i in range(n):
            total += (i * 3 + 1) % 7 + (i * 5 + 2) % 11 + (i * 7 + 3) % 13 + (i * 11 + 4) % 17 + (i * 13 + 5) % 19
        return total

    ''') + "".join("def small%d(x):\n    return x + %d\n\n" % (i, i) for i in range(40)) + textwrap.dedent('''\
    def main():
        fib(16)
        build(3000)
        long_line(500)
        for f in [%s]:
            f(1)

    def logged(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            return func(*args, **kwargs)
        return wrapper

    @logged
    def alloc():
        a = bytearray(30 * 2**20)
        b = [0] * 2_000_000
        del a
        c = bytes(4 * 2**20)
        return len(b) + len(c)

    def grow(n):
        return bytearray(n * 2**20)
    ''') % ", ".join("small%d" % i for i in range(40))

REPORTS = {
    "prun": "%prun -s cumulative main()",
    "pstats": "%prun -q -D /tmp/pyrometer-report-nb.prof main()\n"
              "%pstats /tmp/pyrometer-report-nb.prof -s cumulative -l 12 --callers",
    "lprun": "%lprun -f long_line -f build main()",
    "memit": "%memit -r 2 x = bytearray(20 * 2**20)",
    "mprun": "%mprun -f alloc alloc()",
    "mprof": "%%mprof -f grow\nkeep = grow(20)\nfor i in range(3):\n    grow(10)\n",
    "sample": "%%sample\nfor _ in range(60):\n    main()\n",
}


def report_notebook(kernel_name="pyrometer", timeout=120):
    """Returns the executed notebook (nbformat v4): the setup cell, then one
    cell per entry of REPORTS, in order; cell.metadata.report names it."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": kernel_name, "display_name": "Python 3 (pyrometer)",
                                 "language": "python"}
    nb.cells.append(nbformat.v4.new_code_cell(SETUP))
    for name, src in REPORTS.items():
        c = nbformat.v4.new_code_cell(src)
        c.metadata["report"] = name
        nb.cells.append(c)
    NotebookClient(nb, timeout=timeout, kernel_name=kernel_name).execute()
    return nb


def report_html(cell):
    """The text/html of each display_data output of a report cell."""
    return [o["data"]["text/html"] for o in cell.outputs
            if o.get("output_type") == "display_data" and "text/html" in o.get("data", {})]


if __name__ == "__main__":
    # python3 tests/report_notebook.py OUT.ipynb: executes the notebook with
    # the kernel of $PYROMETER_BUILD (default build/) and saves it, e.g. for
    # PYROMETER_REPORT_NOTEBOOK in the forky root's JupyterLab test.
    import sys

    import nbformat

    import pyrometer_testing  # noqa: F401  (a JUPYTER_PATH offering the built kernel)
    try:
        nbformat.write(report_notebook(), sys.argv[1])
    finally:
        pyrometer_testing.cleanup()
