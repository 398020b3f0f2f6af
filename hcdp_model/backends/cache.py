"""On-disk cache of built artefacts (ONNX graphs, TensorRT programs): one directory per key.

The key hashes everything the artefact depends on; the manifest inside repeats those fields and is
checked again on load, so a stale, mismatched or corrupt entry is rebuilt (with a warning), never used.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Callable, TypeVar

from .base import BackendError
from .manifest import Manifest, manifest_path

log = logging.getLogger(__name__)
T = TypeVar("T")


def cache_root() -> Path:
    """$XDG_CACHE_HOME/hcdp (default ~/.cache/hcdp)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hcdp"


def cache_key(fields: dict[str, object]) -> str:
    """A short stable hash of the fields (order-independent); any changed field gives a new key."""
    text = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cached_artefact(kind: str, fields: dict[str, object], filename: str, expected: dict[str, object],
                    build: Callable[[Path], Manifest], load: Callable[[Path], T]) -> T:
    """Load `<cache>/<kind>/<key>/<filename>` if its manifest matches `expected` and it loads, else
    (re)build it with `build(path)` (which writes the artefact and returns its manifest) and load that."""
    folder = cache_root() / kind / cache_key(fields)
    artefact = folder / filename
    if artefact.exists():
        try:
            problems = Manifest.load(manifest_path(artefact)).mismatches(expected)
            if not problems:
                return load(artefact)
            log.warning("%s: cached %s artefact does not match (%s); rebuilding", artefact, kind,
                        "; ".join(problems))
        except BackendError as err:
            log.warning("%s: cached %s artefact is unusable (%s); rebuilding", artefact, kind, err)
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        manifest = build(artefact)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # never leave a half-built entry behind
        raise
    manifest.save(manifest_path(artefact))
    return load(artefact)
