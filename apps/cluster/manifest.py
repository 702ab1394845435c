"""The batch manifest: one JSON line per input, written by the driver as each run ends.

A record: ``{"input", "index", "status": "ok" | "failed", "frames", "seconds", "node", "pid",
"cpus", "capped", "models_loaded", "attempts", "outputs": {side packet: final path}, "error",
"error_type", "finished"}``. Lines are appended and
flushed one by one, so a batch that is killed keeps every record written so far.

``--resume`` keeps the records of inputs that succeeded and whose output files are all still
there, drops the rest (failed, or outputs gone), and runs only the inputs not kept; each input
stays in the manifest exactly once. Without ``--resume`` a batch starts a new manifest.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any


class Manifest:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def read(self) -> list[dict[str, Any]]:
        """Every record, the last one per input winning; a truncated last line is ignored."""
        if not self.path.is_file():
            return []
        by_input: dict[str, dict] = {}
        for line in self.path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short when the batch was killed
            if isinstance(rec, dict) and "input" in rec:
                by_input[rec["input"]] = rec
        return list(by_input.values())

    def start(self, resume: bool) -> dict[str, dict[str, Any]]:
        """Opens the manifest for a batch; returns {input: record} of what is done already."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = [r for r in self.read() if resume and done(r)]
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as f:
            for r in kept:
                f.write(json.dumps(r) + "\n")
        os.replace(tmp, self.path)
        return {r["input"]: r for r in kept}

    def append(self, record: dict[str, Any]) -> None:
        record = {**record, "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())


def done(record: dict[str, Any]) -> bool:
    """A run that ended well and whose output files all still exist."""
    return record.get("status") == "ok" and all(Path(p).is_file() for p in (record.get("outputs") or {}).values())
