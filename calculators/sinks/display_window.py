"""The window process of ``Display``: run as a script, never imported by a graph.

    python display_window.py '{"title": "vpipe", "resizable": false}'

It makes every HighGUI call of one window on its main thread, so Qt is set up fresh for each
window and ends with it. Protocol, all binary on the pipes:

- stdin: frames, each a 12-byte header (height, width, channels as little-endian uint32)
  followed by height*width*channels bytes of BGR (channels 3) or GRAY (channels 1) pixels.
  End of file closes the window and ends the process (SIGINT is ignored: the parent decides).
- stdout: ``ready\\n`` once the window exists, then one line per key pressed (its code 0-255).

It imports only OpenCV and numpy (not vpipe), so it starts in a fraction of a second.
"""

from __future__ import annotations

import json
import os
import select
import signal
import struct
import sys

HEADER = struct.Struct("<III")


def read_exact(fd: int, n: int) -> bytes | None:
    """``n`` bytes from ``fd``, or None at end of file."""
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def main() -> int:
    import cv2
    import numpy as np

    # Ctrl-C reaches the whole process group: the graph's process ends the run and then this
    # process (end of file on stdin), so the window must not die first with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    options = json.loads(sys.argv[1])
    title = options["title"]
    cv2.namedWindow(title, cv2.WINDOW_NORMAL if options.get("resizable") else cv2.WINDOW_AUTOSIZE)
    out = sys.stdout.buffer
    out.write(b"ready\n")
    out.flush()
    fd = sys.stdin.buffer.fileno()
    while True:
        # Wait up to 5 ms for a frame, then let Qt draw and deliver keys.
        if select.select([fd], [], [], 0.005)[0]:
            header = read_exact(fd, HEADER.size)
            if header is None:
                break
            h, w, c = HEADER.unpack(header)
            data = read_exact(fd, h * w * c)
            if data is None:
                break
            frame = np.frombuffer(data, np.uint8).reshape((h, w, c) if c > 1 else (h, w))
            cv2.imshow(title, frame)
        key = cv2.waitKey(1)
        if key != -1:
            out.write(b"%d\n" % (key & 0xFF))
            out.flush()
    cv2.destroyAllWindows()
    cv2.waitKey(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
