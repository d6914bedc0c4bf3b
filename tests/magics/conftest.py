"""Fixtures for the magic tests: the built `pyrometer` module, a direct magic
caller, and an IPython shell with `%load_ext pyrometer`."""
import os
import sys

import pytest

# Re-exported: a test module that says `from conftest import BUILD` gets the
# same names whichever conftest Python imported first.
from pyrometer_testing import BUILD, KERNEL, ROOT, start_kernel  # noqa: F401,E402

sys.path.insert(0, os.path.join(BUILD, "ext"))


@pytest.fixture(scope="session")
def pyrometer():
    import pyrometer as mod
    assert os.path.dirname(mod.__file__) == os.path.join(BUILD, "ext"), mod.__file__
    return mod


class MagicCall:
    """Calls pyrometer.MAGICS[name] directly, collecting displayed bundles."""

    def __init__(self, module):
        self.module = module
        self.bundles = []

    def __call__(self, name, line, cell=None, ns=None):
        kinds, fn = self.module.MAGICS[name]
        self.bundles = []
        ns = {} if ns is None else ns
        return fn(line, cell, ns, self.bundles.append)

    @property
    def text(self):
        return "\n".join(b["text/plain"] for b in self.bundles)

    @property
    def html(self):
        return "\n".join(b["text/html"] for b in self.bundles)


@pytest.fixture
def magic(pyrometer):
    return MagicCall(pyrometer)


@pytest.fixture(scope="session")
def ipython_shell(pyrometer):
    from IPython.testing.globalipapp import start_ipython
    shell = start_ipython()
    shell.run_line_magic("load_ext", "pyrometer")
    return shell


@pytest.fixture
def ipy(ipython_shell):
    """The shell, with every display it publishes recorded in ipy.published."""
    shell = ipython_shell
    published = []
    orig = shell.display_pub.publish

    def publish(data, metadata=None, **kw):
        published.append(data)

    shell.display_pub.publish = publish
    shell.published = published
    yield shell
    shell.display_pub.publish = orig
