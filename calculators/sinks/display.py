"""Display: shows frames in an OpenCV window; ``q`` or Esc ends the run cleanly.

Each Display node runs its window in a child process (``display_window.py``) started in
``open`` and ended in ``close``. Qt binds itself, for the life of a process, to the first
thread that opens a window: a window opened later from another thread hangs, even after
``destroyAllWindows``. A GUI thread in the graph's process would therefore have to outlive the
run; a window process ends with it, and a Qt abort (display lost) ends only that process.

A per-node thread sends each newest frame down the child's stdin and reads the keys it reports,
so a slow screen never slows the graph (frames that arrive while one is sent are skipped,
counted in ``dropped``). The thread is joined and the process waited for in ``close``.

Ports: IMAGE (Image) in. Nothing out.
Timestamps: none emitted; the overlay's fps is measured from the input timestamps.

Example node:
    - calculator: Display
      inputs: {IMAGE: annotated}
      options: {title: "face detection", show_fps: true}
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from calculators.sinks.display_window import HEADER
from calculators.sources.camera import LatestFrame
from calculators.sources.common import MediaError, image_to_bgr
from calculators.types import Image
from pipeline import Calculator, Input, register

log = logging.getLogger("vpipe.sinks.display")


class DisplayOptions(BaseModel):
    title: str = Field("vpipe", min_length=1, description="window title")
    show_fps: bool = Field(False, description="draw the input frame rate in the top left corner")
    resizable: bool = Field(False, description="a resizable window (default: sized to the frames)")
    quit_keys: str = Field("q\x1b", description="keys that end the run (default q and Esc)")


def check_display(who: str = "Display") -> None:
    """Raises MediaError, saying why, when no window can be opened here.

    Qt aborts the window process when it cannot reach the display, so this is checked before
    one is started, for a clearer message.
    """
    import cv2

    info = cv2.getBuildInformation()
    gui = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.strip().startswith("GUI:")), "")
    if gui.upper() in ("", "NONE"):
        raise MediaError(f"{who}: this OpenCV build has no GUI support (a headless build); "
                         "install opencv-contrib-python, or use WebPreview")
    if sys.platform.startswith(("win", "darwin")):
        return
    if os.environ.get("QT_QPA_PLATFORM", "").startswith(("offscreen", "minimal", "vnc")):
        return
    display = os.environ.get("DISPLAY")
    if not display:
        if os.environ.get("WAYLAND_DISPLAY"):
            return
        raise MediaError(f"{who}: no display: the DISPLAY environment variable is not set "
                         "(run on a desktop or under Xvfb, or use WebPreview to watch in a browser)")
    host, _, rest = display.rpartition(":")
    number = rest.split(".")[0]
    if not number.isdigit():
        raise MediaError(f"{who}: DISPLAY={display!r} is not a valid X display name")
    try:
        if host in ("", "unix") or host.startswith("/"):
            path = host if host.startswith("/") else f"/tmp/.X11-unix/X{number}"
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2.0)
                s.connect(path)
        else:
            with socket.create_connection((host, 6000 + int(number)), timeout=2.0):
                pass
    except OSError as e:
        raise MediaError(f"{who}: cannot connect to the X display {display!r}: {e.strerror or e} "
                         "(is the X server running?)") from e


WINDOW_SCRIPT = str(Path(__file__).with_name("display_window.py"))


class DisplayWindow:
    """One window in its own process, fed by one thread; no graph involved.

    ``show`` only swaps the newest frame into a one-slot mailbox, so it never waits for the
    screen. ``on_quit`` runs (on the feeding thread) when a quit key is hit. ``close`` ends
    the thread and the process.
    """

    def __init__(self, options: DisplayOptions, on_quit=None, name: str = "Display") -> None:
        self.o = options
        self.on_quit = on_quit
        self.name = name
        self.slot = LatestFrame()
        self.quit = threading.Event()
        self.error: BaseException | None = None
        self.shown = 0
        self.fps = 0.0
        self._last_ts: int | None = None
        self.proc: subprocess.Popen | None = None
        self.thread: threading.Thread | None = None
        self._stderr = None
        self._keys = b""

    def _where(self) -> str:
        return f"{self.name}: window {self.o.title!r}"

    def _why(self, settle: float = 2.0) -> str:
        """How the window process ended, with the end of what it wrote to stderr. Its pipes close
        a moment before it can be reaped: wait up to ``settle`` s for its exit code."""
        rc = None
        if self.proc is not None:
            try:
                rc = self.proc.wait(settle)
            except subprocess.TimeoutExpired:
                rc = None
        text = ""
        if self._stderr is not None:
            self._stderr.seek(0)
            text = self._stderr.read().decode(errors="replace").strip()[-600:]
        state = "is still running" if rc is None else f"exited with code {rc}"
        return f"the window process {state}" + (f": {text}" if text else "")

    def open(self, timeout: float = 10.0) -> None:
        check_display(self.name)
        self._stderr = tempfile.TemporaryFile()
        config = json.dumps({"title": self.o.title, "resizable": self.o.resizable})
        try:
            self.proc = subprocess.Popen([sys.executable, WINDOW_SCRIPT, config], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=self._stderr)
        except OSError as e:
            raise MediaError(f"{self._where()}: cannot start the window process: {e.strerror or e}") from e
        if not self._read_keys(timeout) or not self._keys.startswith(b"ready\n"):
            why = self._why(settle=0)
            self.proc.kill()
            raise MediaError(f"{self._where()}: did not open within {timeout} s: {why}")
        self._keys = self._keys[len(b"ready\n"):]
        self.thread = threading.Thread(target=self._run, name=f"{self.name} window", daemon=True)
        self.thread.start()

    def _read_keys(self, timeout: float) -> bool | None:
        """Reads what the process reported within ``timeout``: True when something came, False
        when nothing did, None at end of file (the process ended)."""
        fd = self.proc.stdout.fileno()
        if not select.select([fd], [], [], timeout)[0]:
            return False
        data = os.read(fd, 4096)
        if not data:
            return None
        self._keys += data
        return True

    def show(self, image: Image, timestamp_us: int) -> None:
        if self._last_ts is not None and timestamp_us > self._last_ts:
            inst = 1e6 / (timestamp_us - self._last_ts)
            self.fps = inst if self.fps == 0 else 0.9 * self.fps + 0.1 * inst
        self._last_ts = timestamp_us
        self.slot.put((image, self.fps))

    def _run(self) -> None:
        import cv2

        try:
            while True:
                got = self._read_keys(0)
                if got is None:
                    raise MediaError(self._why())
                *lines, self._keys = self._keys.split(b"\n")
                for line in lines:
                    self._key(int(line))
                item = self.slot.take(0.02)  # also the key polling interval while no frame comes
                if item is None:
                    if self.slot.closed:
                        return
                    continue
                image, fps = item
                bgr = image_to_bgr(image)
                if self.o.show_fps:
                    bgr = bgr.copy() if bgr is image.data else bgr  # never draw on a received payload
                    text = f"{fps:5.1f} fps"
                    cv2.putText(bgr, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 3, cv2.LINE_AA)
                    cv2.putText(bgr, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 1, cv2.LINE_AA)
                bgr = np.ascontiguousarray(bgr)
                channels = 1 if bgr.ndim == 2 else bgr.shape[2]
                self.proc.stdin.write(HEADER.pack(bgr.shape[0], bgr.shape[1], channels))
                self.proc.stdin.write(bgr.data)
                self.proc.stdin.flush()
                self.shown += 1
        except BrokenPipeError:
            self.error = MediaError(self._why())
        except BaseException as e:  # noqa: BLE001 - reported by the node's next process()
            self.error = e
        finally:
            try:
                self.proc.stdin.close()  # end of file: the window closes and the process ends
            except OSError:
                pass

    def _key(self, key: int) -> None:
        if chr(key) in self.o.quit_keys and not self.quit.is_set():
            self.quit.set()
            log.info("%s: quit key pressed; ending the run", self._where())
            if self.on_quit is not None:
                self.on_quit()

    @property
    def dropped(self) -> int:
        return self.slot.dropped

    def close(self, timeout: float = 10.0) -> None:
        """Ends the feeding thread and the window process; safe to call more than once."""
        self.slot.close()
        if self.thread is not None:
            self.thread.join(timeout)
            if self.thread.is_alive():  # blocked writing to a process that no longer reads
                log.error("%s: the window process stopped reading; killing it", self._where())
                self.proc.kill()
                self.thread.join()
            self.thread = None
        if self.proc is not None:
            if self.proc.stdin is not None and not self.proc.stdin.closed:
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.error("%s: the window process did not end within %.0f s; killing it", self._where(), timeout)
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()
            self.proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


@register
class Display(Calculator):
    """Shows frames in an OpenCV window; ``q`` or Esc ends the run cleanly (``ctx.stop_run()``).

    Ports:
        IMAGE (Image): frames to show.
    Options:
        title (default "vpipe"); show_fps: draw the input rate; resizable; quit_keys (default q, Esc).
    Behaviour: the window lives in a child process started in ``open`` and ended in ``close``
    (Qt binds itself to one thread for the life of a process, so an in-process window would
    need a thread outliving the run); newest frame only: a slow screen skips frames instead of
    slowing the graph.
    Errors: no display (DISPLAY unset, X server unreachable) or an OpenCV without GUI fail in
    ``open`` with the reason; a window process that dies fails the next ``process`` with its
    exit code and the end of its stderr.
    Known limit: on a bare X server with no window manager (Xvfb), Qt 5 sometimes loses a new
    window's first expose and leaves it black (about one window in eight with both cores busy);
    any window manager's map, or ``xdotool windowunmap``/``windowmap``, paints it at once.
    Example:
        - calculator: Display
          inputs: {IMAGE: annotated}
          options: {title: webcam, show_fps: true}
    """

    inputs = {"IMAGE": Input(Image)}
    outputs: dict = {}
    Options = DisplayOptions

    def open(self, ctx):
        self.window = DisplayWindow(ctx.options, on_quit=ctx.stop_run, name=f"{ctx.calculator} {ctx.node!r}")
        try:
            self.window.open()
        except BaseException:
            self.window.close()
            raise

    def process(self, ctx):
        if self.window.error is not None:
            raise MediaError(f"{self.window._where()} failed: {self.window.error}") from self.window.error
        image = ctx.get("IMAGE")
        if image is not None:
            self.window.show(image, ctx.timestamp)

    def close(self, ctx):
        self.window.close()
