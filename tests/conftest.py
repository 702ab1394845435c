"""Suite-wide guard: a test that leaves the process's C locale changed is named, and the locale put back.

Found this way (2026-12-01): OpenVINO's cached compile (`ov::Core::compile_model(path, ...)` with
CACHE_DIR) sets the C locale to "C" and back; two at once, as a graph opens its models, left the
process in "C" and every later subprocess read with ``text=True`` failed to decode UTF-8 (ten tests
in four folders). calculators/inference/openvino_engine.py now runs those compiles one at a time
(tests/inference/test_openvino_compile_cache.py). This fixture names any test during which the
locale changes (a warning in the summary) and restores it, so such a change cannot fail unrelated
tests; scripts/test.sh also runs the suite in Python's UTF-8 mode (PYTHONUTF8=1).
"""

from __future__ import annotations

import locale
import signal
import warnings

import pytest

# A suite started in the background by a shell without job control (`cmd &` in a script, nohup)
# inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler: the tests of
# Ctrl-C (in-process, and the subprocesses they start, which inherit the disposition) waited for
# a signal that never came (seen 2026-12-02: test_errors.py's Ctrl-C during wait(), the Ray
# cluster's Ctrl-C of `vpipe run --streams`). Python's own handler is put back, as an
# interactive shell would have left it; a handler somebody installed is left alone.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _locale_is_left_as_found(request):
    before = locale.setlocale(locale.LC_ALL)
    yield
    after = locale.setlocale(locale.LC_ALL)
    if after != before:
        locale.setlocale(locale.LC_ALL, before)
        warnings.warn(f"{request.node.nodeid} changed the C locale: {before!r} -> {after!r} (restored)",
                      RuntimeWarning, stacklevel=1)
