"""Display: shows frames in an OpenCV window; ``q`` or Esc ends the run cleanly.

All HighGUI calls happen on one GUI thread per process (Qt allows no other way): it shows
each window's newest frame and polls the keyboard, so a slow screen never slows the graph
(frames that arrive while one is drawn are skipped, counted in ``dropped``).

Ports: IMAGE (Image) in. Nothing out.
Timestamps: none emitted; the overlay's fps is measured from the input timestamps.

Example node:
    - calculator: Display
      inputs: {IMAGE: annotated}
      options: {title: "face detection", show_fps: true}
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading

from pydantic import BaseModel, Field

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


def check_display() -> None:
    """Raises MediaError, saying why, when no window can be opened here.

    Qt aborts the whole process when it cannot reach the display, so this is checked before
    OpenCV is asked for a window.
    """
    import cv2

    info = cv2.getBuildInformation()
    gui = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.strip().startswith("GUI:")), "")
    if gui.upper() in ("", "NONE"):
        raise MediaError("Display: this OpenCV build has no GUI support (a headless build); "
                         "install opencv-contrib-python, or use WebPreview")
    if sys.platform.startswith(("win", "darwin")):
        return
    if os.environ.get("QT_QPA_PLATFORM", "").startswith(("offscreen", "minimal", "vnc")):
        return
    display = os.environ.get("DISPLAY")
    if not display:
        if os.environ.get("WAYLAND_DISPLAY"):
            return
        raise MediaError("Display: no display: the DISPLAY environment variable is not set "
                         "(run on a desktop or under Xvfb, or use WebPreview to watch in a browser)")
    host, _, rest = display.rpartition(":")
    number = rest.split(".")[0]
    if not number.isdigit():
        raise MediaError(f"Display: DISPLAY={display!r} is not a valid X display name")
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
        raise MediaError(f"Display: cannot connect to the X display {display!r}: {e.strerror or e} "
                         "(is the X server running?)") from e


class _GuiThread:
    """The one thread that makes every HighGUI call in this process.

    Qt binds its application object to the thread that first opens a window, for the life of
    the process: a window opened later from any other thread hangs. So vpipe keeps one GUI
    thread, started with the first Display and parked (blocked on its command queue, touching
    neither Qt nor the CPU) while no window is open. It is the only thread vpipe lets outlive a
    run, and only once a Display has been used.
    """

    _instance: "_GuiThread | None" = None
    _lock = threading.Lock()

    @classmethod
    def get(cls) -> "_GuiThread":
        with cls._lock:
            if cls._instance is None or not cls._instance.thread.is_alive():
                cls._instance = cls()
            return cls._instance

    def __init__(self) -> None:
        import queue

        self.commands: "queue.Queue" = queue.Queue()
        self.windows: list[DisplayWindow] = []
        self.thread = threading.Thread(target=self._run, name="vpipe-gui", daemon=True)
        self.thread.start()

    def call(self, op: str, window: "DisplayWindow", timeout: float) -> bool:
        done = threading.Event()
        self.commands.put((op, window, done))
        return done.wait(timeout)

    def _run(self) -> None:
        import queue

        import cv2

        while True:
            try:
                cmd = self.commands.get(timeout=None if not self.windows else 0.005)
            except queue.Empty:
                cmd = None
            if cmd is not None:
                op, window, done = cmd
                try:
                    if op == "open":
                        flags = cv2.WINDOW_NORMAL if window.o.resizable else cv2.WINDOW_AUTOSIZE
                        cv2.namedWindow(window.o.title, flags)
                        self.windows.append(window)
                    elif op == "close" and window in self.windows:
                        self.windows.remove(window)
                        cv2.destroyWindow(window.o.title)
                        cv2.waitKey(1)
                except BaseException as e:  # noqa: BLE001 - reported to the node
                    window.error = e
                finally:
                    done.set()
            if not self.windows:
                continue
            for window in list(self.windows):
                try:
                    window._draw(cv2)
                except BaseException as e:  # noqa: BLE001 - reported by the node's next process()
                    window.error = e
            key = cv2.waitKey(1)
            if key != -1:
                for window in list(self.windows):
                    window._key(key & 0xFF)


class DisplayWindow:
    """One window, drawn by the process' GUI thread; no graph involved.

    ``show`` only swaps the newest frame into a one-slot mailbox, so it never waits for the
    screen. ``on_quit`` runs (on the GUI thread) when a quit key is hit.
    """

    def __init__(self, options: DisplayOptions, on_quit=None) -> None:
        self.o = options
        self.on_quit = on_quit
        self.slot = LatestFrame()
        self.quit = threading.Event()
        self.error: BaseException | None = None
        self.shown = 0
        self.fps = 0.0
        self._last_ts: int | None = None
        self._gui: _GuiThread | None = None

    def open(self, timeout: float = 10.0) -> None:
        check_display()
        self._gui = _GuiThread.get()
        if not self._gui.call("open", self, timeout):
            raise MediaError(f"Display: the window {self.o.title!r} did not open within {timeout} s")
        if self.error is not None:
            raise MediaError(f"Display: cannot open the window {self.o.title!r}: {self.error}") from self.error

    def show(self, image: Image, timestamp_us: int) -> None:
        if self._last_ts is not None and timestamp_us > self._last_ts:
            inst = 1e6 / (timestamp_us - self._last_ts)
            self.fps = inst if self.fps == 0 else 0.9 * self.fps + 0.1 * inst
        self._last_ts = timestamp_us
        self.slot.put((image, self.fps))

    def _draw(self, cv2) -> None:
        item = self.slot.take(0)
        if item is None:
            return
        image, fps = item
        bgr = image_to_bgr(image)
        if self.o.show_fps:
            bgr = bgr.copy() if bgr is image.data else bgr  # never draw on a received payload
            text = f"{fps:5.1f} fps"
            cv2.putText(bgr, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(bgr, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 1, cv2.LINE_AA)
        cv2.imshow(self.o.title, bgr)
        self.shown += 1

    def _key(self, key: int) -> None:
        if chr(key) in self.o.quit_keys and not self.quit.is_set():
            self.quit.set()
            log.info("Display %r: quit key pressed; ending the run", self.o.title)
            if self.on_quit is not None:
                self.on_quit()

    @property
    def dropped(self) -> int:
        return self.slot.dropped

    def close(self) -> None:
        self.slot.close()
        if self._gui is not None:
            if not self._gui.call("close", self, 10.0):
                log.error("Display %r: the window did not close within 10 s", self.o.title)
            self._gui = None


@register
class Display(Calculator):
    """Shows frames in an OpenCV window; ``q`` or Esc ends the run cleanly (``ctx.stop_run()``).

    Ports:
        IMAGE (Image): frames to show.
    Options:
        title (default "vpipe"); show_fps: draw the input rate; resizable; quit_keys (default q, Esc).
    Behaviour: the window is drawn by the process' single GUI thread (Qt binds itself to one
    thread for the life of the process; that thread parks between runs), newest frame only;
    a slow screen skips frames instead of slowing the graph.
    Errors: no display (DISPLAY unset, X server unreachable) or an OpenCV without GUI fail in
    ``open`` with the reason, before Qt is touched (Qt would abort the process).
    Example:
        - calculator: Display
          inputs: {IMAGE: annotated}
          options: {title: webcam, show_fps: true}
    """

    inputs = {"IMAGE": Input(Image)}
    outputs: dict = {}
    Options = DisplayOptions

    def open(self, ctx):
        self.window = DisplayWindow(ctx.options, on_quit=ctx.stop_run)
        try:
            self.window.open()
        except MediaError as e:
            self.window.close()
            raise MediaError(f"{ctx.calculator} {ctx.node!r}: {str(e).removeprefix('Display: ')}") from e

    def process(self, ctx):
        if self.window.error is not None:
            raise MediaError(f"{ctx.calculator} {ctx.node!r}: the window failed: {self.window.error}") from self.window.error
        image = ctx.get("IMAGE")
        if image is not None:
            self.window.show(image, ctx.timestamp)

    def close(self, ctx):
        if getattr(self, "window", None) is not None:
            self.window.close()
