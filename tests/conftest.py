"""Suite-wide guard: a test that leaves the process's C locale changed is named, and the locale put back.

Seen once in a whole-suite run (2026-12-01): from some point in tests/landmarks on, the C locale's
LC_CTYPE was "C", so `locale.getpreferredencoding()` was ASCII and every later subprocess read
with ``text=True`` failed to decode vpipe's UTF-8 output (ten tests in four folders). The change
came from native code (libraries that call setlocale: OpenVINO, OpenCV, Qt, FFmpeg's GnuTLS,
FreeType) and did not come back in reruns. This fixture names the test during which the locale
changed (a warning in the summary) and restores it, so one such change cannot fail unrelated tests;
scripts/test.sh also runs the suite in Python's UTF-8 mode (PYTHONUTF8=1) for the same reason.
"""

from __future__ import annotations

import locale
import warnings

import pytest


@pytest.fixture(autouse=True)
def _locale_is_left_as_found(request):
    before = locale.setlocale(locale.LC_ALL)
    yield
    after = locale.setlocale(locale.LC_ALL)
    if after != before:
        locale.setlocale(locale.LC_ALL, before)
        warnings.warn(f"{request.node.nodeid} changed the C locale: {before!r} -> {after!r} (restored)",
                      RuntimeWarning, stacklevel=1)
