"""What every test checks on the way out: each run.json it made follows the record's schema."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from sweeper.run_record import record_schema


@pytest.fixture(autouse=True)
def private_user_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """Learned rates and prices go to a folder of the test's own, never the user's cache
    (child processes inherit it through the environment)."""
    monkeypatch.setenv("SWEEPER_CACHE_DIR", str(tmp_path_factory.mktemp("user-cache")))


@pytest.fixture(autouse=True)
def every_run_record_follows_its_schema(tmp_path: Path) -> Iterator[None]:
    """After the test: validate every run.json and runs/<n>.json written under its tmp_path."""
    yield
    import jsonschema

    validator = jsonschema.Draft202012Validator(record_schema())
    for record in [*tmp_path.rglob("run.json"), *tmp_path.rglob("runs/*.json")]:
        try:
            document = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a test that damaged it on purpose
        if isinstance(document, dict) and document.get("tool") == "sweeper":
            errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
            assert not errors, f"{record}: {errors[0].message} at {list(errors[0].path)}"
