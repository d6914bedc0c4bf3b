"""Debian's jupyter_kernel_test conformance suite against the built kernel,
with every attribute the suite offers set (it validates each message against
the v5 message spec as it goes)."""
import unittest

import jupyter_kernel_test

# (importing it sets JUPYTER_PATH to the built kernel's spec)
from pyrometer_testing import python_lacks, python_version

# The one sample that needs a package some Pythons lack (forky's 3.15 has no
# matplotlib): run when the kernel's Python has it, else reported as a skip.
MATPLOTLIB_SAMPLE = {"code": "import matplotlib.pyplot as plt; plt.plot([1, 2]); plt.show()",
                     "mime": "image/png"}


class PyrometerKernelTests(jupyter_kernel_test.KernelTests):
    kernel_name = "pyrometer"
    language_name = "python"
    file_extension = ".py"

    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('test', file=sys.stderr)"
    code_generate_error = "raise ValueError('boom')"
    code_execute_result = [
        {"code": "1+2+3", "result": "6"},
        {"code": "[n**2 for n in range(4)]", "result": "[0, 1, 4, 9]"},
        {"code": "'py' * 2", "result": "'pypy'"},
    ]

    complete_code_samples = ["1", "print('hello, world')", "def f(x):\n    return x*2\n\n"]
    incomplete_code_samples = ["print('''hello", "def f(x):\n    x += 1", "for i in range(3):"]
    invalid_code_samples = ["def f(:", "1 +* 2", "x = )"]

    completion_samples = [
        {"text": "zi", "matches": {"zip"}},
        {"text": "import os.pa", "matches": {"os.path"}},
        {"text": "str.upp", "matches": {"str.upper"}},
        {"text": "from os import pa",
         "matches": {"pardir", "path", "pathconf", "pathconf_names", "pathsep"}},
        {"text": "%lpr", "matches": {"%%lprun", "%lprun"}},  # a cell's start: both
        {"text": "%%ti", "matches": {"%%time", "%%timeit"}},
        {"text": "import json.dec", "matches": {"json.decoder"}},
    ]

    code_page_something = "print?"
    code_inspect_sample = "print"

    supported_history_operations = ("tail", "range", "search")
    code_history_pattern = "1?2*"

    code_display_data = [
        {"code": "from IPython.display import HTML, display; display(HTML('<b>test</b>'))",
         "mime": "text/html"},
        {"code": "display({'text/markdown': '**bold**', 'text/plain': 'bold'}, raw=True)",
         "mime": "text/markdown"},
        {"code": "class Svg:\n    def _repr_svg_(self): return '<svg></svg>'\ndisplay(Svg())",
         "mime": "image/svg+xml"},
        {"code": "from IPython.display import Math, display; display(Math('x^2'))",
         "mime": "text/latex"},
    ] + ([] if python_lacks("matplotlib") else [MATPLOTLIB_SAMPLE])

    def test_display_data(self):
        super().test_display_data()  # every other sample is checked first
        if python_lacks("matplotlib"):
            self.skipTest("the image/png sample needs matplotlib, which Python %d.%d cannot "
                          "import (%s)" % (python_version()[:2] + (python_lacks("matplotlib"),)))

    code_clear_output = "clear_output()"


if __name__ == "__main__":
    unittest.main()
