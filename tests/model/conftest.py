import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Send artefact caches and the record of artefacts built here to the test's folder.

    They never go to the user's ~/.cache/hcdp.
    """
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
