"""A batch as a list of jobs: one whole run of the graph per input, with its side packets.

- ``expand_inputs(["videos/*.mp4", "rtsp://cam/1"])``: glob patterns (sorted), paths and URIs, in
  order, each once; a pattern that matches nothing is an error naming it.
- Side packet values may be templates with the fields ``{stem}`` (``clip`` for ``videos/clip.mp4``),
  ``{name}`` (``clip.mp4``), ``{parent}`` (``videos``) and ``{index}`` (the input's position, from 0).
  The input itself is the ``source`` side packet.
- Output files are the side packets that feed a sink's ``path`` option (``VideoWriter``,
  ``JsonlWriter``). They are written under a temporary name in the same folder, with the same
  extension (``out/.clip.vpipe-part-<attempt>.mp4``), and renamed when the run ends well, so a
  file at its final name is always complete. Every input must get its own output files: a value
  without a field would have every run overwrite the same file, and is refused.
"""

from __future__ import annotations

import glob
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the fields a templated side packet may use
FIELDS = ("stem", "name", "parent", "index")
#: the part of a temporary output's name that marks it (a leftover is recognisable)
TEMP_MARK = ".vpipe-part-"


class PlanError(ValueError):
    """A batch that cannot be planned (no input, a bad template, outputs that collide)."""


@dataclass(frozen=True)
class Job:
    """One run of the graph: its input, its side packets and its output files (final names)."""

    index: int
    input: str
    side_packets: dict[str, Any]
    outputs: dict[str, str] = field(default_factory=dict)

    def temp_outputs(self, attempt: str) -> dict[str, str]:
        """The output side packets under this attempt's temporary names."""
        return {name: temp_name(path, attempt) for name, path in self.outputs.items()}


def temp_name(path: str, attempt: str) -> str:
    p = Path(path)
    return str(p.with_name(f".{p.stem}{TEMP_MARK}{attempt}{p.suffix}"))


def is_uri(text: str) -> bool:
    return "://" in text or text.startswith("sample:")


def expand_inputs(patterns: list[str]) -> list[str]:
    """Paths (absolute), URIs and the sorted matches of glob patterns, each once, in order."""
    out: list[str] = []
    for pattern in patterns:
        if is_uri(pattern):
            found = [pattern]
        elif glob.has_magic(pattern):
            found = sorted(str(Path(p).resolve()) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
            if not found:
                raise PlanError(f"--inputs '{pattern}' matches no file")
        else:
            p = Path(pattern)
            if not p.is_file():
                raise PlanError(f"--inputs '{pattern}': no such file")
            found = [str(p.resolve())]
        out.extend(f for f in found if f not in out)
    if not out:
        raise PlanError("no inputs: give --inputs PATTERN (a glob such as 'videos/*.mp4', a path or a URI)")
    return out


def template_fields(value: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]


def fields_for(source: str, index: int) -> dict[str, Any]:
    if is_uri(source):
        tail = source.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0] or f"input{index}"
        name, parent = tail.replace(":", "_"), ""
    else:
        p = Path(source)
        name, parent = p.name, str(p.parent)
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return {"stem": stem, "name": name, "parent": parent, "index": index}


def fill(key: str, value: Any, values: dict[str, Any]) -> Any:
    """``value`` with its fields filled in (non-strings and plain strings as they are)."""
    if not isinstance(value, str) or "{" not in value:
        return value
    try:
        unknown = [f for f in template_fields(value) if f.split(".")[0].split("[")[0] not in FIELDS]
    except ValueError as e:
        raise PlanError(f"--set {key}='{value}': bad template ({e}); fields: {', '.join(FIELDS)}") from None
    if unknown:
        raise PlanError(f"--set {key}='{value}': unknown field {{{unknown[0]}}}; fields: "
                        + ", ".join("{" + f + "}" for f in FIELDS))
    return value.format(**values)


def output_side_packets(spec) -> list[str]:
    """The side packets that name a sink's output file: referenced by the ``path`` option of a node
    with no output streams."""
    from pipeline.config import option_refs

    names = []
    for node in spec.nodes:
        if node.outputs:
            continue
        for key, name in option_refs(dict(node.options)).items():
            if key == "path" and name not in names:
                names.append(name)
    return names


def plan(spec, inputs: list[str], side_packets: dict[str, Any], input_key: str = "source") -> list[Job]:
    """One job per input; refuses a graph without the input side packet and colliding outputs."""
    declared = dict(spec.side_packets)
    if input_key not in declared:
        raise PlanError(f"{spec.file}: the graph declares no side packet '{input_key}' to take each input "
                        f"(it declares {', '.join(declared) or 'none'})")
    if input_key in side_packets:
        raise PlanError(f"--set {input_key}=... and --inputs both give the input; use --inputs only")
    outputs = output_side_packets(spec)
    jobs = []
    seen: dict[str, tuple[str, str]] = {}
    for index, source in enumerate(inputs):
        values = fields_for(source, index)
        sides = {k: fill(k, v, values) for k, v in side_packets.items()}
        sides[input_key] = source
        outs = {}
        for name in outputs:
            value = sides.get(name, declared.get(name))
            if isinstance(value, str) and value:
                final = str(Path(value).resolve())
                if final in seen:
                    other_input, _ = seen[final]
                    raise PlanError(f"--set {name}='{side_packets.get(name, value)}' writes {final} for both "
                                    f"{other_input} and {source}; put a field in it such as out/{{stem}}"
                                    f"{Path(value).suffix}")
                seen[final] = (source, name)
                outs[name] = final
                sides[name] = final
        jobs.append(Job(index, source, sides, outs))
    return jobs
