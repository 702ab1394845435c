"""Display under a real X server (Xvfb): a screenshot shows the frame; q ends the run cleanly;
runs one after another each get a window; nothing (thread or process) outlives a run; no display
and a window process that dies are clear errors."""

from __future__ import annotations

import os
import re
import signal
import subprocess

import cv2
import numpy as np
import pytest

from calculators.sources import synthetic_frame
from calculators.types import Image
from pipeline import GraphRunError

from .conftest import graph, need, wait_for


def window_processes() -> list[int]:
    """Pids of this process' children running the Display window script."""
    me, found = os.getpid(), []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if ppid == me and b"display_window.py" in cmd:
            found.append(int(pid))
    return found


def screenshot(display: str) -> np.ndarray | None:
    """The whole X screen as a BGR array (ImageMagick's ``import -window root``)."""
    exe = need("import", "imagemagick")
    out = subprocess.run([exe, "-display", display, "-window", "root", "png:-"], capture_output=True, timeout=20)
    if out.returncode != 0 or not out.stdout:
        return None
    return cv2.imdecode(np.frombuffer(out.stdout, np.uint8), cv2.IMREAD_COLOR)


def frame_on_screen(display: str, frame_bgr: np.ndarray) -> float:
    shot = screenshot(display)
    if shot is None:
        return 0.0
    score = cv2.matchTemplate(shot, frame_bgr, cv2.TM_CCOEFF_NORMED).max()
    return float(score)


def _explain_screen(display: str, xdotool: str, title: str, frame: np.ndarray, folder) -> None:
    """On a failure: what X shows (saved), where the window is and how well the frame matches."""
    shot = screenshot(display)
    ids = subprocess.run([xdotool, "search", "--name", title], capture_output=True, text=True).stdout.split()
    geometry = [subprocess.run([xdotool, "getwindowgeometry", i], capture_output=True, text=True).stdout.strip()
                for i in ids]
    score = -1.0 if shot is None else float(cv2.matchTemplate(shot, frame, cv2.TM_CCOEFF_NORMED).max())
    if shot is not None:
        cv2.imwrite(str(folder / "screen.png"), shot)
    print(f"\nX screen saved to {folder / 'screen.png'}; best template match {score:.3f}; "
          f"windows named {title!r}: {geometry}")


@pytest.mark.parametrize("run", [1, 2])
def test_display_window_shows_the_frame(xvfb, no_leaked_threads, run, tmp_path):
    """Run twice: in-process Qt would hang opening the second run's window from a new thread."""
    xdotool = need("xdotool", "xdotool")
    frame = synthetic_frame(7 + run, 320, 240)  # BGR
    title = f"vpipe display test {run}"
    g = graph({"calculator": "Display", "inputs": {"IMAGE": "in"}, "options": {"title": title}}, inputs=["in"])
    g.start()
    try:
        assert len(window_processes()) == 1
        # Screenshots taken while Qt maps a window can leave it unpainted (seen under Xvfb with
        # in-process windows too): look only once the window is on screen.
        wait_for(lambda: subprocess.run([xdotool, "search", "--onlyvisible", "--name", title], capture_output=True,
                                        text=True).stdout.split(), 20, "the window to be mapped")
        image = Image(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), "RGB")
        t = 0

        def shown() -> bool:
            # Keep feeding, as a live source would: a window that Qt mapped unpainted (a known
            # Qt/Xvfb race when the screen is read during mapping) is painted by the next frame.
            nonlocal t
            g.add_packet("in", image, t)
            t += 1
            return frame_on_screen(xvfb, frame) > 0.99

        try:
            if not wait_for(shown, 5, "", fail=False):
                # Qt 5 on a bare X server (no window manager) sometimes loses the first Expose of a
                # new window and then never paints it (reproduced here: ~1 window in 8 with both
                # cores busy, with the window process drawing every frame; an unmap and map - what
                # any window manager does - paints it at once). Do what the window manager would.
                win = subprocess.run([xdotool, "search", "--onlyvisible", "--name", title], capture_output=True,
                                     text=True).stdout.split()[0]
                subprocess.run([xdotool, "windowunmap", "--sync", win], check=True, timeout=20)
                subprocess.run([xdotool, "windowmap", "--sync", win], check=True, timeout=20)
                wait_for(shown, 20, "the frame to appear on the X screen (template match > 0.99)")
        except BaseException:
            _explain_screen(xvfb, xdotool, title, frame, tmp_path)
            raise
    finally:
        g.close_input("in")
        g.wait(20)
    assert window_processes() == [], "the window process ends with the run"


def test_a_window_process_that_dies_is_a_clear_error(xvfb, no_leaked_threads):
    g = graph({"calculator": "Display", "name": "screen", "inputs": {"IMAGE": "in"}}, inputs=["in"])
    g.start()
    [pid] = window_processes()
    os.kill(pid, signal.SIGKILL)
    image = Image(synthetic_frame(0, 64, 48), "BGR")
    t = 0

    def feed() -> GraphRunError | None:
        nonlocal t
        t += 1
        try:
            g.add_packet("in", image, t)
        except GraphRunError as e:
            return e
        return None

    err = wait_for(feed, 20, "the node to fail after its window process was killed")
    assert re.search(r"node 'screen' \(Display\) failed in process at timestamp \d+: .*"
                     r"Display 'screen': window 'vpipe' failed: the window process exited with code -9", str(err)), str(err)
    with pytest.raises(GraphRunError):
        g.wait(20)
    assert window_processes() == []


def test_q_key_ends_the_run_cleanly(xvfb, no_leaked_threads):
    xdotool = need("xdotool", "xdotool")
    title = "vpipe quit test"
    g = graph({"calculator": "SyntheticSource", "outputs": {"FRAMES": "f"},
               "options": {"size": [160, 120], "num_frames": None, "pace": "realtime"}},
              {"calculator": "Display", "inputs": {"IMAGE": "f"}, "options": {"title": title, "show_fps": True}})
    g.start()
    try:
        wid = wait_for(lambda: subprocess.run([xdotool, "search", "--name", title], capture_output=True,
                                              text=True, env=os.environ).stdout.split(), 20, "the window to exist")[0]
        subprocess.run([xdotool, "windowfocus", "--sync", wid], check=True, timeout=10, env=os.environ)
        subprocess.run([xdotool, "key", "--window", wid, "q"], check=True, timeout=10, env=os.environ)
        g.wait(20)  # returns normally: q is a clean end, not an error
    except BaseException:
        g.cancel()
        g.wait(20)
        raise
    assert g.stats()["Display"]["count"] > 0


@pytest.mark.parametrize("display, message", [
    (None, r"no display: the DISPLAY environment variable is not set"),
    (":87", r"cannot connect to the X display ':87'"),
])
def test_no_display_is_a_clear_error(monkeypatch, display, message):
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    if display is None:
        monkeypatch.delenv("DISPLAY", raising=False)
    else:
        assert not os.path.exists("/tmp/.X11-unix/X87")
        monkeypatch.setenv("DISPLAY", display)
    g = graph({"calculator": "SyntheticSource", "outputs": {"FRAMES": "f"}, "options": {"num_frames": 1}},
              {"calculator": "Display", "name": "screen", "inputs": {"IMAGE": "f"}})
    with pytest.raises(GraphRunError, match=rf"node 'screen' \(Display\) failed in open: .*{message}"):
        g.run()
