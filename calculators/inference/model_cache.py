"""The process-wide shared model cache: one loaded model per (resolved path, checksum, engine,
options, batching), shared by every node and stream that names it, refcounted, and closed when the
last user releases it (``acquire``/``release``; ``stats.loads`` counts loads)."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .batcher import Batcher
from .engine import Engine, EngineOptions, InferenceError, ModelLoadError, log
from .selection import check_format, engine_class, model_suffix

_hash_cache: dict[tuple[str, int, int], str] = {}


def model_files(path: Path) -> list[Path]:
    """The files a model consists of (IR .xml+.bin, ncnn .param+.bin)."""
    suffix = model_suffix(path)
    if suffix in (".xml", ".param"):
        return [path, path.with_suffix(".bin")]
    return [path]


def checksum(path: Path) -> str:
    """sha256 of the model's files (memoized by path, size and mtime)."""
    h = hashlib.sha256()
    for f in model_files(path):
        st = f.stat()
        key = (str(f), st.st_size, st.st_mtime_ns)
        digest = _hash_cache.get(key)
        if digest is None:
            from models.catalog import sha256_file

            digest = _hash_cache[key] = sha256_file(f)
        h.update(digest.encode())
    return h.hexdigest()


@dataclass
class SharedModel:
    """One loaded engine (and its batcher) shared by every user of the same key."""

    key: tuple
    engine: Engine
    batcher: Batcher | None
    refs: int = 0


@dataclass
class _CacheStats:
    loads: int = 0
    releases: int = 0
    load_keys: list = field(default_factory=list)


_cache: dict[tuple, SharedModel] = {}
_cache_lock = threading.Lock()
_key_locks: dict[tuple, threading.Lock] = {}
stats = _CacheStats()


def acquire(path: Path, engine: str, options: EngineOptions, batch_size: int = 1,
            batch_timeout_ms: float = 0.0) -> SharedModel:
    """The shared loaded model for this key, loading it on first use (refcount + 1)."""
    for f in model_files(path):
        if not f.is_file():
            raise ModelLoadError(f"model file not found: {f}")
    check_format(engine, path)
    key = (str(path.resolve()), checksum(path), engine, options, batch_size, float(batch_timeout_ms))
    with _cache_lock:
        shared = _cache.get(key)
        if shared is not None:
            shared.refs += 1
            return shared
        key_lock = _key_locks.setdefault(key, threading.Lock())
    # Load outside the global lock (loads take seconds) but only once per key.
    with key_lock:
        with _cache_lock:
            shared = _cache.get(key)
            if shared is not None:
                shared.refs += 1
                return shared
        cls = engine_class(engine)
        t0 = time.perf_counter()
        try:
            eng = cls(path, options)
        except (InferenceError, ImportError):
            raise
        except Exception as e:  # the runtime's own parse/compile errors
            raise ModelLoadError(f"{engine} could not load {path}: {type(e).__name__}: {e}") from e
        log.info("loaded %s with %s on %s in %.1f ms", path.name, engine, eng.device,
                 (time.perf_counter() - t0) * 1e3)
        batcher = None
        if batch_size > 1:
            if not eng.dynamic_batch:
                eng.close()
                raise ModelLoadError(
                    f"batch_size {batch_size} needs a model whose inputs have a dynamic first (batch) "
                    f"dim; {path.name} has " + ", ".join(f"{s.name} {s.describe()}" for s in eng.inputs)
                )
            batcher = Batcher(eng, batch_size, batch_timeout_ms / 1e3)
        shared = SharedModel(key, eng, batcher, refs=1)
        with _cache_lock:
            _cache[key] = shared
            _key_locks.pop(key, None)
            stats.loads += 1
            stats.load_keys.append(key)
        return shared


def release(shared: SharedModel) -> None:
    """Drops one reference; the last one closes the engine."""
    with _cache_lock:
        shared.refs -= 1
        if shared.refs > 0:
            return
        _cache.pop(shared.key, None)
        stats.releases += 1
    shared.engine.close()


def loaded_models() -> list[tuple[str, str, int]]:
    """(path, engine, refs) of every model currently loaded (for tests and stats)."""
    with _cache_lock:
        return [(k[0], k[2], s.refs) for k, s in _cache.items()]
