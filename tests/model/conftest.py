import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Artefact caches and the record of artefacts built here go to the test's folder, never to
    the user's ~/.cache/hcdp."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
