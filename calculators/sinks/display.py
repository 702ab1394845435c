"""Display: shows frames in an OpenCV window; ``q`` or Esc ends the run cleanly.

A GUI thread owned by the node creates the window, shows the newest frame and polls the
keyboard, so all HighGUI calls come from one thread and a slow screen never slows the graph
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


class DisplayWindow:
    """The window and its GUI thread; no graph involved. ``on_quit`` runs when a quit key is hit."""

    def __init__(self, options: DisplayOptions, on_quit=None) -> None:
        self.o = options
        self.on_quit = on_quit
        self.slot = LatestFrame()
        self.ready = threading.Event()
        self.quit = threading.Event()
        self.error: BaseException | None = None
        self.shown = 0
        self.fps = 0.0
        self._last_ts: int | None = None
        self.thread: threading.Thread | None = None

    def open(self, timeout: float = 10.0) -> None:
        check_display()
        self.thread = threading.Thread(target=self._run, name=f"Display {self.o.title!r}", daemon=True)
        self.thread.start()
        if not self.ready.wait(timeout):
            raise MediaError(f"Display: the window {self.o.title!r} did not open within {timeout} s")
        if self.error is not None:
            raise MediaError(f"Display: cannot open the window {self.o.title!r}: {self.error}") from self.error

    def show(self, image: Image, timestamp_us: int) -> None:
        if self._last_ts is not None and timestamp_us > self._last_ts:
            inst = 1e6 / (timestamp_us - self._last_ts)
            self.fps = inst if self.fps == 0 else 0.9 * self.fps + 0.1 * inst
        self._last_ts = timestamp_us
        self.slot.put((image, self.fps))

    def _run(self) -> None:
        import cv2

        title = self.o.title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL if self.o.resizable else cv2.WINDOW_AUTOSIZE)
        except BaseException as e:
            self.error = e
            self.ready.set()
            return
        self.ready.set()
        keys = {ord(k) for k in self.o.quit_keys}
        try:
            while not self.slot.closed:
                item = self.slot.take(0.02)
                if item is not None:
                    image, fps = item
                    bgr = image_to_bgr(image)
                    if self.o.show_fps:
                        bgr = bgr.copy() if bgr is image.data else bgr  # never draw on a received payload
                        cv2.putText(bgr, f"{fps:5.1f} fps", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 3, cv2.LINE_AA)
                        cv2.putText(bgr, f"{fps:5.1f} fps", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 1, cv2.LINE_AA)
                    cv2.imshow(title, bgr)
                    self.shown += 1
                key = cv2.waitKey(1)
                if key != -1 and (key & 0xFF) in keys and not self.quit.is_set():
                    self.quit.set()
                    log.info("Display %r: quit key pressed; ending the run", title)
                    if self.on_quit is not None:
                        self.on_quit()
        except BaseException as e:  # reported by the next show()/close()
            self.error = e
        finally:
            try:
                cv2.destroyWindow(title)
                cv2.waitKey(1)
            except Exception:  # noqa: BLE001 - the window may already be gone
                pass

    @property
    def dropped(self) -> int:
        return self.slot.dropped

    def close(self) -> None:
        self.slot.close()
        if self.thread is not None:
            self.thread.join(5.0)
            if self.thread.is_alive():
                log.error("Display %r: GUI thread did not stop within 5 s", self.o.title)
            self.thread = None


@register
class Display(Calculator):
    """Shows frames in an OpenCV window; ``q`` or Esc ends the run cleanly (``ctx.stop_run()``).

    Ports:
        IMAGE (Image): frames to show.
    Options:
        title (default "vpipe"); show_fps: draw the input rate; resizable; quit_keys (default q, Esc).
    Behaviour: the window lives on its own GUI thread and shows the newest frame; a slow
    screen skips frames instead of slowing the graph.
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
