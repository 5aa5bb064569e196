"""The user cache of learned rates and prices: keyed safely, written atomically, never fatal."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from sweeper.user_cache import CACHE_DIR_ENV, UserCache, default_cache_dir, key_fingerprint

KEY = "sk-live-SENTINEL-0123456789abcdef"
BASE = "https://api.1min.ai"
MODEL = "black-forest-labs/flux-depth-dev"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> UserCache:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    return UserCache()


def test_the_cache_folder_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    assert default_cache_dir() == tmp_path
    assert UserCache().path == tmp_path / "learned.json"
    monkeypatch.delenv(CACHE_DIR_ENV)
    assert default_cache_dir().name == "sweeper"


def test_a_learned_rate_comes_back_for_the_same_base_and_key_only(cache):
    cache.remember_rate(BASE + "/", KEY, rpm=216.5, concurrency=4, capped=True)
    learned = cache.learned_rate(BASE, KEY)
    assert learned is not None
    assert (learned.rpm, learned.concurrency, learned.capped) == (216.5, 4, True)
    assert learned.updated_at.endswith("Z")
    assert cache.learned_rate(BASE, KEY + "x") is None
    assert cache.learned_rate("http://127.0.0.1:8765", KEY) is None


def test_the_file_holds_a_fingerprint_never_the_key(cache):
    cache.remember_rate(BASE, KEY, rpm=100, concurrency=None, capped=False)
    text = cache.path.read_text()
    assert KEY not in text
    assert key_fingerprint(KEY) in text
    assert len(key_fingerprint(KEY)) == 16
    assert key_fingerprint(KEY) == key_fingerprint(KEY) != key_fingerprint(KEY[:-1])


def test_a_learned_price_is_kept_per_api_base_and_model(cache):
    cache.remember_price(BASE, MODEL, 700.0)
    cache.remember_rate(BASE, KEY, rpm=60, concurrency=None, capped=False)
    assert cache.learned_price(BASE, MODEL) == 700.0
    assert cache.learned_price("http://127.0.0.1:8765", MODEL) is None
    assert cache.learned_price(BASE, "other/model") is None
    assert cache.learned_rate(BASE, KEY) is not None  # one update never drops the other


def test_a_missing_cache_is_empty_and_silent(cache, caplog):
    with caplog.at_level(logging.WARNING, logger="sweeper"):
        assert cache.learned_rate(BASE, KEY) is None
        assert cache.learned_price(BASE, MODEL) is None
    assert caplog.records == []


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        json.dumps({"schema": 99, "rates": {}, "prices": {}}),
        json.dumps({"schema": 1, "rates": [], "prices": "x"}),
        "\udcff".encode("utf-8", "surrogateescape").decode("latin-1"),
    ],
)
def test_a_corrupt_cache_is_a_warning_and_is_replaced_on_the_next_write(cache, caplog, content):
    cache.path.parent.mkdir(parents=True)
    cache.path.write_text(content, encoding="latin-1")
    with caplog.at_level(logging.WARNING, logger="sweeper"):
        assert cache.learned_rate(BASE, KEY) is None
        assert cache.learned_price(BASE, MODEL) is None
        cache.remember_price(BASE, MODEL, 12.5)
    assert UserCache(cache.path.parent).learned_price(BASE, MODEL) == 12.5
    if content.startswith("{not") or content == "[]" or "99" in content:
        assert len(caplog.records) == 1  # warned once, not on every look-up
        assert "learned.json" in caplog.records[0].getMessage()


@pytest.mark.parametrize(
    "entry", [{"rpm": "fast"}, {"rpm": -5}, {"rpm": float("inf")}, {"rpm": 60, "concurrency": 0}]
)
def test_a_malformed_entry_is_ignored_with_a_warning(cache, caplog, entry):
    cache.remember_rate(BASE, KEY, rpm=60, concurrency=None, capped=False)
    data = json.loads(cache.path.read_text())
    (rate_key,) = data["rates"]
    data["rates"][rate_key] = entry
    data["prices"][f"{BASE} {MODEL}"] = {"credits_per_image": True}
    cache.path.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="sweeper"):
        assert cache.learned_rate(BASE, KEY) is None
        assert cache.learned_price(BASE, MODEL) is None
    assert caplog.records


def test_an_unwritable_cache_is_a_warning_not_a_crash(tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cache = UserCache(blocker / "cache")
    with caplog.at_level(logging.WARNING, logger="sweeper"):
        cache.remember_rate(BASE, KEY, rpm=60, concurrency=None, capped=False)
        cache.remember_price(BASE, MODEL, 700)
    assert len(caplog.records) == 1  # one warning per cache, however often it is used
    assert "Not a directory" in caplog.text
    assert cache.learned_rate(BASE, KEY) is None


def test_a_write_that_fails_halfway_leaves_the_old_file_whole(cache, monkeypatch, caplog):
    cache.remember_price(BASE, MODEL, 700)
    before = cache.path.read_text()

    write = Path.write_text

    def disk_fills_halfway(path: Path, text: str, **kwargs) -> int:
        write(path, text[: len(text) // 2], **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_fills_halfway)
    with caplog.at_level(logging.WARNING, logger="sweeper"):
        cache.remember_price(BASE, MODEL, 1.0)
    assert cache.path.read_text() == before
    assert sorted(p.name for p in cache.path.parent.iterdir()) == ["learned.json"]
    assert "No space left" in caplog.text
