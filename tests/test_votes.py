"""The votes table: every vote committed at once, validated against the manifest, undoable."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from vote_study import files_by_cell, make_vote_run

from sweeper.errors import SpecError
from sweeper.votes import (
    list_votes,
    record_favourite,
    record_preference,
    record_stars,
    undo_last,
)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_vote_run(tmp_path)


@pytest.fixture
def cell(run_dir: Path) -> dict[tuple[int, float], str]:
    return files_by_cell(run_dir)


def test_votes_are_listed_in_the_order_cast_with_every_field(run_dir, cell):
    moment = datetime(2026, 11, 2, 9, 14, 3, 271000, tzinfo=UTC)
    first = record_preference(run_dir, cell[1, 5.0], cell[1, 2.5], rater="ana", at=moment)
    second = record_preference(run_dir, cell[2, 5.0], cell[2, 2.5], tie=True, rater="ben")
    third = record_stars(run_dir, cell[1, 5.0], 4, rater="ana")
    fourth = record_favourite(run_dir, cell[1, 7.5], rater="ana")
    assert first < second < third < fourth

    votes = list_votes(run_dir)
    assert votes["id"].tolist() == [first, second, third, fourth]
    assert votes.loc[0, "time"] == pd.Timestamp(moment)
    assert votes.loc[:, "mode"].tolist() == ["pairs", "pairs", "stars", "stars"]
    assert votes["file"].tolist() == [cell[1, 5.0], cell[2, 5.0], cell[1, 5.0], cell[1, 7.5]]
    assert votes["other_file"].tolist() == [cell[1, 2.5], cell[2, 2.5], pd.NA, pd.NA]
    assert votes["choice"].tolist() == ["win", "tie", "4", "favourite"]
    assert list_votes(run_dir, rater="ben")["id"].tolist() == [second]


def test_the_time_is_stored_as_iso_8601_utc(run_dir, cell):
    record_stars(run_dir, cell[1, 5.0], 3, rater="ana")
    with sqlite3.connect(run_dir / "journal.sqlite") as db:
        [(stamp,)] = db.execute("SELECT time FROM votes").fetchall()
    assert stamp.endswith("Z")
    parsed = datetime.fromisoformat(stamp)
    assert parsed.tzinfo is not None
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 60


def test_a_path_to_the_image_is_stored_as_the_manifest_value(run_dir, cell, monkeypatch):
    record_stars(run_dir, str(run_dir / cell[1, 5.0]), 5, rater="ana")
    monkeypatch.chdir(run_dir.parent)
    record_favourite(run_dir, f"run/{cell[2, 5.0]}", rater="ana")
    assert list_votes(run_dir)["file"].tolist() == [cell[1, 5.0], cell[2, 5.0]]


@pytest.mark.parametrize("stars", [0, 6, -1, 2.5, "3", True, None])
def test_stars_outside_one_to_five_are_refused(run_dir, cell, stars):
    with pytest.raises(SpecError, match="stars must be a whole number from 1 to 5"):
        record_stars(run_dir, cell[1, 5.0], stars, rater="ana")
    assert list_votes(run_dir).empty


def test_a_file_not_in_the_manifest_is_refused_in_one_line(run_dir, cell):
    (run_dir / "images" / "stray.png").write_bytes(b"not ours")
    for given in ("images/nope_0.webp", str(run_dir / "images" / "stray.png"), "../etc/passwd"):
        with pytest.raises(SpecError) as caught:
            record_stars(run_dir, given, 3, rater="ana")
        message = str(caught.value)
        assert "\n" not in message and given in message and "images/" in message
    with pytest.raises(SpecError, match="not an image of"):
        record_preference(run_dir, cell[1, 5.0], "images/nope_0.webp", rater="ana")
    assert list_votes(run_dir).empty


def test_an_image_cannot_be_preferred_over_itself(run_dir, cell):
    with pytest.raises(SpecError, match="compared with itself"):
        record_preference(run_dir, cell[1, 5.0], cell[1, 5.0], rater="ana")


@pytest.mark.parametrize("rater", ["", "   ", "a\nb", "x" * 101])
def test_an_unusable_rater_name_is_refused(run_dir, cell, rater):
    with pytest.raises(SpecError, match="not a usable name"):
        record_stars(run_dir, cell[1, 5.0], 3, rater=rater)


def test_without_a_rater_the_login_name_is_recorded(run_dir, cell):
    record_stars(run_dir, cell[1, 5.0], 3)
    [rater] = list_votes(run_dir)["rater"].tolist()
    assert rater.strip() == rater and rater


def test_a_folder_that_is_not_a_run_is_refused(tmp_path, run_dir, cell):
    with pytest.raises(SpecError, match=r"no journal\.sqlite here"):
        record_stars(tmp_path, "images/a_0.png", 3, rater="ana")
    with pytest.raises(SpecError, match=r"no journal\.sqlite here"):
        list_votes(tmp_path)
    (run_dir / "manifest.parquet").unlink()
    with pytest.raises(SpecError, match=r"no manifest\.parquet here"):
        record_stars(run_dir, cell[1, 5.0], 3, rater="ana")


def test_listing_a_run_without_votes_neither_fails_nor_writes(run_dir):
    votes = list_votes(run_dir)
    assert votes.empty and list(votes.columns) == [
        "id", "time", "rater", "mode", "file", "other_file", "choice",
    ]  # fmt: skip
    assert undo_last(run_dir) is None
    with sqlite3.connect(run_dir / "journal.sqlite") as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    assert "votes" not in tables


def test_undo_takes_back_the_latest_vote_of_that_rater(run_dir, cell):
    record_stars(run_dir, cell[1, 5.0], 5, rater="ana")
    kept = record_stars(run_dir, cell[2, 5.0], 5, rater="ben")
    record_stars(run_dir, cell[3, 5.0], 2, rater="ana")
    undone = undo_last(run_dir, rater="ana")
    assert (undone.file, undone.choice, undone.rater) == (cell[3, 5.0], "2", "ana")
    assert list_votes(run_dir)["file"].tolist() == [cell[1, 5.0], cell[2, 5.0]]
    assert undo_last(run_dir).id == kept
    assert undo_last(run_dir, rater="ben") is None
    assert list_votes(run_dir)["file"].tolist() == [cell[1, 5.0]]


def test_a_vote_waits_for_a_run_that_holds_the_journal(run_dir, cell):
    holder = sqlite3.connect(
        run_dir / "journal.sqlite", isolation_level=None, check_same_thread=False
    )
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
    started = time.monotonic()
    release.start()
    try:
        record_stars(run_dir, cell[1, 5.0], 4, rater="ana")
    finally:
        release.join()
        holder.close()
    assert time.monotonic() - started >= 0.45
    assert list_votes(run_dir)["choice"].tolist() == ["4"]


def test_several_raters_voting_at_once_lose_nothing(run_dir, cell):
    def vote(rater: str) -> None:
        for seed in (1, 2, 3):
            for _ in range(5):
                record_preference(run_dir, cell[seed, 5.0], cell[seed, 2.5], rater=rater)

    raters = [threading.Thread(target=vote, args=(f"rater{i}",)) for i in range(4)]
    for thread in raters:
        thread.start()
    for thread in raters:
        thread.join()
    votes = list_votes(run_dir)
    assert len(votes) == 4 * 3 * 5
    assert votes.groupby("rater").size().tolist() == [15] * 4
    assert votes["id"].is_unique
