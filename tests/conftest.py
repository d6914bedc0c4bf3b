"""Fixtures shared by every test folder: started kernels driven through
jupyter_client (the set-up lives in pyrometer_testing)."""
import pytest

from pyrometer_testing import BUILD, KERNEL, ROOT, cleanup, start_kernel  # noqa: F401


def pytest_sessionfinish(session, exitstatus):
    cleanup()


@pytest.fixture(scope="module")
def kernel():
    """A kernel shared by a test module: (manager, blocking client)."""
    km, kc = start_kernel()
    yield km, kc
    kc.stop_channels()
    km.shutdown_kernel(now=False)


@pytest.fixture
def fresh_kernel():
    """A kernel of one's own, for tests that break or restart it."""
    km, kc = start_kernel()
    yield km, kc
    kc.stop_channels()
    if km.is_alive():
        km.shutdown_kernel(now=True)
