"""On-disk cache of built artefacts (ONNX graphs, TensorRT programs), one directory per key.

Also the record of the artefacts this machine built itself.

The key hashes everything the artefact depends on; the manifest inside repeats those fields and is
checked again on load, so a stale, mismatched or corrupt entry is rebuilt (with a warning), never
used.

Trust: a torch.export program (.pt2) or a Torch-TensorRT program (.ep) is loaded with
`torch.export.load`, which can unpickle, i.e. run code from the file. Every such artefact that
`hcdp export` (or a cached build) writes is recorded as `<cache>/trusted/<sha256>.json`; the loader
hashes the bytes it is about to load and loads them only if that record exists (or the caller says
it trusts the file). The record lives outside the artefact, its folder and its manifest, so a file
from elsewhere cannot vouch for itself (docs/security.md).
"""
from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
from pathlib import Path
import shutil
from typing import Callable, TypeVar

from .base import BackendError
from .manifest import Manifest, manifest_path

log = logging.getLogger(__name__)
T = TypeVar("T")


def cache_root() -> Path:
    """$XDG_CACHE_HOME/hcdp (default ~/.cache/hcdp)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hcdp"


def cache_key(fields: dict[str, object]) -> str:
    """Hash the fields into a short stable key (order-independent).

    Any changed field gives a new key.
    """
    text = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cached_artefact(kind: str, fields: dict[str, object], filename: str,
                    expected: dict[str, object],
                    build: Callable[[Path], Manifest], load: Callable[[Path], T]) -> T:
    """Load `<cache>/<kind>/<key>/<filename>` if its manifest matches `expected` and it loads.

    Else (re)build it with `build(path)` (which writes the artefact and returns its manifest) and
    load that.
    """
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


def content_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _trust_record(digest: str) -> Path:
    return cache_root() / "trusted" / f"{digest}.json"


def record_trusted(artefact: Path) -> str:
    """Record that this machine built `artefact` (its sha256); returns the digest."""
    digest = content_digest(Path(artefact).read_bytes())
    record = _trust_record(digest)
    built = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"artefact": str(Path(artefact).resolve()),
                                      "built": built}) + "\n")
    except OSError as err:
        raise BackendError(f"cannot record {artefact} as built here in {record.parent} ({err}); "
                           "without that record it cannot be loaded later: set XDG_CACHE_HOME to "
                           "a writable folder") from err
    return digest


def forget_trusted(digest: str) -> None:
    _trust_record(digest).unlink(missing_ok=True)


def is_trusted(digest: str) -> bool:
    """Whether bytes with this sha256 were written by an export on this machine."""
    return _trust_record(digest).is_file()
