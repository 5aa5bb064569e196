"""docs/record.md against a real run folder: its tables name every column, its query runs."""

from __future__ import annotations

import re
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pandas as pd
import pytest
from study_run import run_study

from sweeper.manifest import COLUMNS
from sweeper.votes import record_stars

DOC = Path(__file__).resolve().parent.parent / "docs" / "record.md"
EXAMPLE_RUN = "results/portrait-depth-study"


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_study(tmp_path_factory.mktemp("study"))


def section(title: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def documented_columns(text: str) -> set[str]:
    """Every `name` in the first cell of a table row (a cell may name several)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`(\w+)`", line.split("|")[1]))
    return names


def test_every_manifest_column_is_documented_and_nothing_else(study):
    documented = documented_columns(section("The manifest"))
    assert documented == set(COLUMNS)
    assert list(pd.read_parquet(study / "manifest.parquet").columns) == COLUMNS


def test_every_journal_table_and_column_is_documented(study, tmp_path):
    voted = Path(shutil.copytree(study, tmp_path / "voted"))
    first_image = pd.read_parquet(voted / "manifest.parquet")["file"].dropna().iloc[0]
    record_stars(voted, first_image, 4, rater="ana")  # the votes table exists once voted on
    # Each table's part of the section starts with a line "`table`: what it holds."
    parts = re.split(r"^`(\w+)`:", section("The journal"), flags=re.MULTILINE)[1:]
    pairs = zip(parts[::2], parts[1::2], strict=True)
    documented = {table: documented_columns(text) for table, text in pairs}
    with closing(sqlite3.connect(voted / "journal.sqlite")) as db:
        tables = [
            name
            for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
            if not name.startswith("sqlite_")
        ]
        actual = {t: {row[1] for row in db.execute(f"PRAGMA table_info({t})")} for t in tables}
    assert documented == actual


def test_the_duckdb_example_joins_the_manifest_and_the_scores(study):
    duckdb = pytest.importorskip(
        "duckdb", reason="duckdb is a test extra: pip install -e '.[test]'"
    )
    manifest = pd.read_parquet(study / "manifest.parquet")
    done = manifest[manifest["status"] == "succeeded"]
    # scores.parquet as `sweeper score` (issue 12) writes it: one row per image, keyed by file.
    scores = pd.DataFrame(
        {
            "file": done["file"],
            "structure_ssim": [0.5 + i / 100 for i in range(len(done))],
            "sharpness": [100.0 + 3 * i for i in range(len(done))],
        }
    )
    scores.to_parquet(study / "scores.parquet", index=False)
    query = re.search(r"```sql\n(.*?)```", section("Querying with DuckDB"), re.DOTALL)[1]
    assert EXAMPLE_RUN in query
    result = duckdb.sql(query.replace(EXAMPLE_RUN, study.as_posix())).df()

    joined = done.merge(scores, on="file")
    expected = (
        joined.groupby("guidance")
        .agg(
            images=("file", "size"),
            structure_ssim=("structure_ssim", "mean"),
            sharpness=("sharpness", "mean"),
        )
        .reset_index()
    )
    assert result["guidance"].tolist() == expected["guidance"].tolist()
    assert result["images"].tolist() == expected["images"].tolist() == [6, 3]
    assert result["structure_ssim"].tolist() == expected["structure_ssim"].round(3).tolist()
    assert result["sharpness"].tolist() == expected["sharpness"].round(1).tolist()
