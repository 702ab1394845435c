import threading

import pytest

from tests.pipeline import calcs  # noqa: F401 - registers the Test* calculators


@pytest.fixture(params=[1, 4], ids=["1thread", "4threads"])
def threads(request):
    return request.param


@pytest.fixture
def no_thread_leak():
    before = set(threading.enumerate())
    yield
    after = set(threading.enumerate())
    leaked = [t.name for t in after - before if t.is_alive()]
    assert not leaked, f"threads outlived the run: {leaked}"
