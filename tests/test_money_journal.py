"""The journal's promises pinned: states, outputs, durability, meta, migrations, read-only use."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from engine_run import STAND_IN_IMAGE, journal_job

from sweeper.errors import SpecError
from sweeper.job import RemoteOutput
from sweeper.journal import (
    MAX_DEFERRED,
    NO_URL,
    Journal,
    has_jobs,
    link_expiry,
)
from sweeper.run_folder import JOURNAL_FILE

SHA = STAND_IN_IMAGE.sha256
BASE = "http://127.0.0.1:1"
ASSET = "development/images/a.jpg"
SIGNED_AT = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
# A presigned link, signed at SIGNED_AT for an hour.
SIGNED_URL = (
    "https://bucket.s3.amazonaws.com/out/x.webp?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Date=20240102T030405Z&X-Amz-Expires=3600&X-Amz-Signature=beef"
)
EXPIRES = SIGNED_AT + 3600
ORPHANED = "sent before the last run stopped, and never answered"


def planned(journal: Journal, count: int) -> list[str]:
    """Add `count` one-output jobs; their ids, in order."""
    jobs = [journal_job(i) for i in range(count)]
    journal.add_jobs(jobs, BASE)
    return [j.job_id for j in jobs]


def generate(journal: Journal, job_id: str, *urls: str) -> None:
    """Submit and answer `job_id` with one output per url, committed."""
    journal.mark_submitted(job_id, 1, "{}", 10.0, asset_path=ASSET)
    outputs = [
        RemoteOutput(k, f"development/images/{job_id}_{k}.webp", u) for k, u in enumerate(urls)
    ]
    journal.mark_generated(job_id, "uuid-1", outputs, 11.0, 1.0)


def committed(run_dir: Path, sql: str, args: tuple = ()) -> list[tuple]:
    """What another process (or a rerun after kill -9) reads from the journal file now."""
    with closing(sqlite3.connect(run_dir / JOURNAL_FILE)) as db:
        return db.execute(sql, args).fetchall()


def job_state(run_dir: Path, job_id: str) -> list[tuple]:
    return committed(run_dir, "SELECT state FROM jobs WHERE job_id = ?", (job_id,))


def in_thread(call):
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result()


# presigned links


def test_a_presigned_link_dies_at_its_signing_time_plus_its_lifetime():
    assert link_expiry(SIGNED_URL) == EXPIRES
    assert link_expiry("https://cdn.example/x.webp") is None
    assert link_expiry("https://s/x?X-Amz-Date=20240102T030405Z") is None
    assert link_expiry("https://s/x?X-Amz-Date=yesterday&X-Amz-Expires=60") is None


# opening, schema, migrations


def test_a_new_journal_is_made_in_missing_folders_at_the_current_schema(tmp_path):
    run_dir = tmp_path / "results" / "sweep"
    with Journal.open(run_dir) as journal:
        assert journal.path == run_dir / JOURNAL_FILE
        assert journal.get_meta("schema_version") == 2
        planned(journal, 2)
    with Journal.open(run_dir) as journal:
        assert journal.get_meta("schema_version") == 2
        assert journal.job_count() == 2
    assert committed(run_dir, "PRAGMA journal_mode") == [("wal",)]


def test_a_file_that_is_no_database_is_refused_as_an_unusable_journal(tmp_path):
    (tmp_path / JOURNAL_FILE).write_text("not a database, just text " * 100)
    with pytest.raises(SpecError, match="not a usable sweeper journal"):
        Journal.open(tmp_path)


def test_a_journal_from_a_newer_sweeper_is_refused_naming_its_schema(tmp_path):
    with Journal.open(tmp_path) as journal:
        journal.set_meta("schema_version", 3)
    with pytest.raises(SpecError) as refused:
        Journal.open(tmp_path)
    assert str(refused.value) == (
        f"{tmp_path / JOURNAL_FILE}: written by a newer sweeper (journal schema 3); upgrade sweeper"
    )


def make_schema_1(run_dir: Path, version: int | None) -> str:
    """A journal as sweeper 1 wrote it: one generated job, without the columns added since."""
    with Journal.open(run_dir) as journal:
        [job_id] = planned(journal, 1)
        generate(journal, job_id, "u0")
    with closing(sqlite3.connect(run_dir / JOURNAL_FILE)) as db:
        for table, column in (
            ("jobs", "unanswered_attempts"),
            ("jobs", "in_spec"),
            ("outputs", "expires_at"),
            ("outputs", "mtime_ns"),
        ):
            db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        db.execute("DELETE FROM meta WHERE key = 'schema_version'")
        if version is not None:
            db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(version),))
        db.commit()
    return job_id


@pytest.mark.parametrize("version", [None, 1])
def test_a_schema_1_journal_gains_the_new_columns_and_keeps_its_jobs(tmp_path, version):
    job_id = make_schema_1(tmp_path, version)
    with Journal.open(tmp_path) as journal:
        assert journal.get_meta("schema_version") == 2
        journal.count_unanswered(job_id)
        journal.note_mtime(job_id, 0, 123)
        row = journal.job_row(job_id)
    assert (row["state"], row["in_spec"], row["unanswered_attempts"]) == ("generated", 1, 1)
    assert [(o["url"], o["expires_at"], o["mtime_ns"]) for o in row["outputs"]] == [
        ("u0", None, 123)
    ]


def test_a_journal_is_usable_from_a_worker_thread(tmp_path):
    with Journal.open(tmp_path) as journal:
        assert in_thread(lambda: journal.add_jobs([journal_job(1)], BASE)) == 1
        assert journal.job_count() == 1


# opening an existing run folder, read-only where it must be


def test_open_existing_refuses_a_folder_without_a_journal(tmp_path):
    with pytest.raises(SpecError) as refused:
        Journal.open_existing(tmp_path)
    assert str(refused.value) == (
        f"{tmp_path}: no {JOURNAL_FILE} here; is this a sweeper run folder?"
    )
    with pytest.raises(SpecError, match="no such run folder"):
        Journal.open_existing(tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()


def test_open_existing_of_a_writable_folder_writes(tmp_path):
    with Journal.open(tmp_path) as journal:
        planned(journal, 1)
    with Journal.open_existing(tmp_path) as journal:
        journal.set_meta("note", "kept")
    with Journal.open(tmp_path) as journal:
        assert journal.get_meta("note") == "kept"


@pytest.fixture
def not_writable(monkeypatch):
    """Make the paths it is given unwritable as an unprivileged user sees them: the tests run
    as root, for whom os.access always says yes. Their mode bits go read-only as well."""

    real_access = os.access
    denied: set[Path] = set()

    def access(path, mode):
        allowed = real_access(path, mode)
        return allowed and not (mode & os.W_OK and Path(path) in denied)

    def deny(*paths: Path) -> None:
        for path in paths:
            path.chmod(stat.S_IMODE(path.stat().st_mode) & ~0o222)
            denied.add(path)

    monkeypatch.setattr(os, "access", access)
    yield deny
    for path in denied:
        path.chmod(stat.S_IMODE(path.stat().st_mode) | 0o200)


def a_finished_run(run_dir: Path) -> list[str]:
    with Journal.open(run_dir) as journal:
        ids = planned(journal, 3)
        journal.mark_failed(ids[0], "400: bad", 5.0)
    return ids


@pytest.mark.parametrize("locked", ["folder", "journal file"])
def test_a_run_folder_we_may_not_write_is_opened_read_only(tmp_path, not_writable, locked):
    ids = a_finished_run(tmp_path)
    not_writable(tmp_path if locked == "folder" else tmp_path / JOURNAL_FILE)
    with Journal.open_existing(tmp_path) as journal:
        assert in_thread(journal.job_states) == {
            ids[0]: "failed",
            ids[1]: "planned",
            ids[2]: "planned",
        }
        assert journal.path == tmp_path / JOURNAL_FILE
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            journal.set_meta("note", "x")


def test_a_read_only_folder_where_sqlite_cannot_make_its_files_is_read_immutable(
    tmp_path, not_writable
):
    ids = a_finished_run(tmp_path)
    # Root may write anywhere: a directory in the -wal file's place stops SQLite as a
    # read-only folder would stop an unprivileged user.
    (tmp_path / f"{JOURNAL_FILE}-wal").mkdir()
    not_writable(tmp_path)
    with Journal.open_existing(tmp_path) as journal:
        assert in_thread(journal.counts)["failed"] == 1
        assert journal.reader().execute("SELECT count(*) FROM jobs").fetchone() == (len(ids),)


@pytest.mark.parametrize("version", [None, 1])
def test_an_old_journal_in_a_read_only_folder_is_refused_with_the_fix(
    tmp_path, not_writable, version
):
    make_schema_1(tmp_path, version)
    not_writable(tmp_path)
    with pytest.raises(SpecError) as refused:
        Journal.open_existing(tmp_path)
    assert str(refused.value) == (
        f"{tmp_path / JOURNAL_FILE}: journal schema 1, and the folder is read-only so it "
        "cannot be brought up to date; copy the folder somewhere writable"
    )


def test_an_unreadable_journal_in_a_read_only_folder_is_refused(tmp_path, not_writable):
    (tmp_path / JOURNAL_FILE).write_text("not a database, just text " * 100)
    not_writable(tmp_path)
    with pytest.raises(SpecError, match=r"journal.sqlite: cannot read this journal \(file is"):
        Journal.open_existing(tmp_path)


# durability: committed at once, staged, deferred


def test_a_submitted_job_is_committed_before_mark_submitted_returns(tmp_path):
    with Journal.open(tmp_path) as journal:
        [job_id] = planned(journal, 1)
        journal.mark_failed(job_id, "503: busy", 4.0)
        journal.mark_submitted(job_id, 2, '{"seed": 0}', 12.5, asset_path=ASSET)
        assert committed(
            tmp_path,
            "SELECT state, attempts, request_json, submitted_at, asset_path, error FROM jobs",
        ) == [("submitted", 2, '{"seed": 0}', 12.5, ASSET, None)]
        journal.count_unanswered(job_id)
        assert committed(tmp_path, "SELECT unanswered_attempts FROM jobs") == [(1,)]


def test_staged_submissions_and_answers_wait_for_flush_and_land_together(tmp_path):
    with Journal.open(tmp_path) as journal:
        [job_id] = planned(journal, 1)
        journal.mark_submitted(job_id, 1, "{}", 1.0, asset_path=ASSET, commit=False)
        journal.count_unanswered(job_id, commit=False)
        assert job_state(tmp_path, job_id) == [("planned",)]
        journal.flush()
        assert committed(tmp_path, "SELECT state, unanswered_attempts FROM jobs") == [
            ("submitted", 1)
        ]
        outputs = [RemoteOutput(0, "development/images/r0.webp", "u0")]
        journal.mark_generated(job_id, "uuid-7", outputs, 2.0, 1.0, commit=False)
        assert journal.unrecorded_answers() == ["uuid-7"]
        assert job_state(tmp_path, job_id) == [("submitted",)]
        assert committed(tmp_path, "SELECT count(*) FROM outputs") == [(0,)]
        journal.flush()
        assert journal.unrecorded_answers() == []
        assert job_state(tmp_path, job_id) == [("generated",)]


def test_an_answer_is_committed_with_its_outputs_pending_or_failed_without_a_url(tmp_path):
    with Journal.open(tmp_path) as journal:
        [job_id] = planned(journal, 1)
        journal.mark_submitted(job_id, 1, "{}", 1.0, asset_path=ASSET)
        outputs = [RemoteOutput(0, "development/images/r0.webp", SIGNED_URL)]
        outputs.append(RemoteOutput(1, "development/images/r1.webp", ""))
        journal.mark_generated(job_id, "uuid-2", outputs, 2.5, 1.5)
        assert committed(
            tmp_path, "SELECT state, record_uuid, latency_s, finished_at, error FROM jobs"
        ) == [("generated", "uuid-2", 1.5, 2.5, None)]
        assert committed(
            tmp_path,
            "SELECT output_index, remote_path, url, expires_at, status, error FROM outputs "
            "ORDER BY output_index",
        ) == [
            (0, "development/images/r0.webp", SIGNED_URL, EXPIRES, "pending", None),
            (1, "development/images/r1.webp", "", None, "failed", NO_URL),
        ]


def test_deferred_changes_are_committed_once_max_deferred_of_them_pile_up(tmp_path):
    with Journal.open(tmp_path) as journal:
        [job_id] = planned(journal, 1)
        generate(journal, job_id, "u0")
        for mtime in range(MAX_DEFERRED - 1):
            journal.note_mtime(job_id, 0, mtime)
        assert len(journal.uncommitted) == MAX_DEFERRED - 1
        assert committed(tmp_path, "SELECT mtime_ns FROM outputs") == [(None,)]
        journal.note_mtime(job_id, 0, MAX_DEFERRED)
        assert journal.uncommitted == []
        assert committed(tmp_path, "SELECT mtime_ns FROM outputs") == [(MAX_DEFERRED,)]


FULL_DISK = [
    sqlite3.OperationalError("database or disk is full"),
    OSError(28, "No space left on device"),
]


def fail_with(error: BaseException):
    def before_commit() -> None:
        raise error

    return before_commit


@pytest.mark.parametrize("error", FULL_DISK, ids=["sqlite", "os"])
def test_reads_go_on_while_a_full_disk_refuses_the_deferred_changes(tmp_path, error):
    with Journal.open(tmp_path) as journal:
        [job_id] = planned(journal, 1)
        generate(journal, job_id, "u0")
        journal.mark_succeeded(job_id, 3.0)
        journal.before_commit = fail_with(error)
        assert journal.job_states() == {job_id: "generated"}
        assert len(journal.uncommitted) == 1
        journal.before_commit = None
        assert journal.job_states() == {job_id: "succeeded"}


@pytest.mark.parametrize("error", FULL_DISK, ids=["sqlite", "os"])
def test_a_with_block_left_on_an_error_keeps_it_when_the_last_flush_fails(tmp_path, error):
    with pytest.raises(KeyError, match="the real problem"), Journal.open(tmp_path) as journal:
        [job_id] = planned(journal, 1)
        generate(journal, job_id, "u0")
        journal.mark_succeeded(job_id, 3.0)
        journal.before_commit = fail_with(error)
        raise KeyError("the real problem")
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        journal.query("SELECT 1")
    assert job_state(tmp_path, job_id) == [("generated",)]


@pytest.mark.parametrize("error", FULL_DISK, ids=["sqlite", "os"])
def test_a_with_block_left_normally_raises_a_failing_last_flush(tmp_path, error):
    with pytest.raises(type(error)), Journal.open(tmp_path) as journal:
        [job_id] = planned(journal, 1)
        generate(journal, job_id, "u0")
        journal.mark_succeeded(job_id, 3.0)
        journal.before_commit = fail_with(error)
    assert job_state(tmp_path, job_id) == [("generated",)]


# meta, assets, jobs


def test_meta_values_round_trip_as_json_and_a_missing_key_gives_the_default(tmp_path):
    with Journal.open(tmp_path) as journal:
        journal.set_meta("input:" + SHA, {"path": "/data/a.jpg", "bytes": 10})
        assert journal.get_meta("input:" + SHA) == {"path": "/data/a.jpg", "bytes": 10}
        assert journal.get_meta("input:cd") is None
        assert journal.get_meta("input:cd", "absent") == "absent"


def test_an_upload_is_remembered_per_api_base_across_reopening_until_forgotten(tmp_path):
    with Journal.open(tmp_path) as journal:
        journal.remember_asset(BASE, SHA, ASSET)
        assert journal.cached_asset(BASE, SHA) == ASSET
    with Journal.open(tmp_path) as journal:
        journal.forget_asset(BASE, "cd" * 32)  # never uploaded: nothing to forget
        assert journal.cached_asset(BASE, SHA) == ASSET
        assert journal.cached_asset("https://api.1min.ai", SHA) is None
        assert journal.cached_asset(BASE, "cd" * 32) is None
        journal.forget_asset(BASE, SHA)
        assert journal.cached_asset(BASE, SHA) is None
    with Journal.open(tmp_path) as journal:
        assert journal.cached_asset(BASE, SHA) is None


def test_adding_jobs_counts_new_ones_and_flags_those_the_spec_dropped(tmp_path, monkeypatch):
    monkeypatch.setattr("sweeper.journal.BATCH", 2)
    first, kept = journal_job(0), [journal_job(1), journal_job(2)]
    with Journal.open(tmp_path) as journal:
        assert journal.add_jobs([first, *kept], BASE) == 3
        journal.mark_failed(kept[0].job_id, "400: bad", 1.0)
        assert journal.add_jobs([*kept, journal_job(3)], BASE) == 1
        rows = {j: journal.job_row(j) for j in journal.job_states()}
    assert {j: (r["in_spec"], r["state"]) for j, r in rows.items()} == {
        first.job_id: (0, "planned"),
        kept[0].job_id: (1, "failed"),
        kept[1].job_id: (1, "planned"),
        journal_job(3).job_id: (1, "planned"),
    }
    row = rows[first.job_id]
    assert (row["api_base"], row["image_given"], row["image_sha256"], row["seed"]) == (
        BASE,
        "inputs/a.jpg",
        SHA,
        0,
    )


def test_a_replaced_input_is_named_with_its_settled_jobs_only(tmp_path):
    with Journal.open(tmp_path) as journal:
        ids = planned(journal, 4)
        generate(journal, ids[0], "u0")
        journal.mark_lost(ids[1], "dead link", 2.0)
        journal.mark_failed(ids[2], "400: bad", 2.0)
        assert journal.changed_inputs([("inputs/a.jpg", "cd" * 32), ("inputs/b.jpg", SHA)]) == [
            ("inputs/a.jpg", 2)
        ]
        assert journal.changed_inputs([("inputs/a.jpg", SHA)]) == []


def test_the_run_history_keeps_how_each_run_began_and_ended(tmp_path):
    record = {
        "finished_at": "2026-01-01T00:01:00Z",
        "outcome": "completed",
        "reason": "all done",
        "this_run": {"requests": 7},
        "credits": {"spent": 12.5},
        "duration_s": 60.0,
    }
    with Journal.open(tmp_path) as journal:
        assert journal.start_run("2026-01-01T00:00:00Z", {"n": 1}) == 1
        assert journal.start_run("2026-01-02T00:00:00Z", {"n": 2}) == 2
        journal.finish_run(1, record)
        journal.finish_run(2, {"outcome": "stopped"})
    columns = "started_at, finished_at, outcome, reason, requests, credits, duration_s, record"
    assert committed(tmp_path, f"SELECT n, {columns} FROM runs ORDER BY n") == [
        (
            1,
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:01:00Z",
            "completed",
            "all done",
            7,
            12.5,
            60.0,
            json.dumps(record),
        ),
        (
            2,
            "2026-01-02T00:00:00Z",
            None,
            "stopped",
            None,
            None,
            None,
            None,
            '{"outcome": "stopped"}',
        ),
    ]


def test_a_started_run_is_recorded_as_running_with_its_record(tmp_path):
    with Journal.open(tmp_path) as journal:
        journal.start_run("2026-01-01T00:00:00Z", {"n": 1})
    assert committed(tmp_path, "SELECT outcome, record FROM runs") == [("running", '{"n": 1}')]


def test_states_are_counted_per_state_and_looked_up_in_batches(tmp_path, monkeypatch):
    monkeypatch.setattr("sweeper.journal.STATES_BATCH", 2)
    with Journal.open(tmp_path) as journal:
        ids = planned(journal, 5)
        journal.mark_failed(ids[0], "400: bad", 1.0)
        journal.mark_unanswered(ids[4], "timed out", 1.0)
        assert journal.job_count() == 5
        assert journal.states_of([*ids, "not-a-job"]) == {
            ids[0]: "failed",
            ids[1]: "planned",
            ids[2]: "planned",
            ids[3]: "planned",
            ids[4]: "unanswered",
        }
        assert journal.states_of([ids[1], ids[0]]) == {ids[0]: "failed", ids[1]: "planned"}
        assert journal.counts() == {
            "planned": 3,
            "submitted": 0,
            "generated": 0,
            "succeeded": 0,
            "failed": 1,
            "unanswered": 1,
            "lost": 0,
        }


# every state a job ends in


def test_each_end_state_is_recorded_with_its_error_and_time(tmp_path):
    with Journal.open(tmp_path) as journal:
        ids = planned(journal, 4)
        for job_id in ids:
            journal.mark_submitted(job_id, 2, "{}", 1.0, asset_path=ASSET)
        journal.mark_failed(ids[0], "400: bad seed", 3.0)
        journal.mark_failed(ids[1], "never got through", 3.5, attempts=0)
        journal.mark_unanswered(ids[2], "timed out", 4.0)
        journal.mark_lost(ids[3], "dead link", 5.0)
        assert committed(
            tmp_path, "SELECT state, error, finished_at, attempts FROM jobs ORDER BY idx"
        ) == [
            ("failed", "400: bad seed", 3.0, 2),
            ("failed", "never got through", 3.5, 0),
            ("unanswered", "timed out", 4.0, 2),
            ("lost", "dead link", 5.0, 2),
        ]
        # A rerun fetched the lost job's images after all.
        journal.mark_succeeded(ids[3], 6.0)
        assert job_state(tmp_path, ids[3]) == [("lost",)]
        row = journal.job_row(ids[3])
        assert (row["state"], row["error"], row["finished_at"]) == ("succeeded", None, 6.0)


def test_jobs_a_dead_run_left_submitted_become_unanswered_once(tmp_path):
    with Journal.open(tmp_path) as journal:
        ids = planned(journal, 3)
        for job_id in ids[:2]:
            journal.mark_submitted(job_id, 1, "{}", 1.0, asset_path=ASSET)
        journal.count_unanswered(ids[1])
        assert journal.settle_orphans() == 2
        assert journal.settle_orphans() == 0
    assert committed(
        tmp_path, "SELECT state, unanswered_attempts, error FROM jobs ORDER BY idx"
    ) == [
        ("unanswered", 1, ORPHANED),
        ("unanswered", 2, ORPHANED),
        ("planned", 0, None),
    ]


# outputs


OUTPUT_COLUMNS = ("status", "error", "file", "sha256", "bytes", "width", "height", "mtime_ns")


def output_columns(journal: Journal, job_id: str) -> list[tuple]:
    return [tuple(o[c] for c in OUTPUT_COLUMNS) for o in journal.job_row(job_id)["outputs"]]


def test_an_output_moves_through_pending_failed_and_done_keeping_why(tmp_path):
    with Journal.open(tmp_path) as journal:
        [job_id] = planned(journal, 1)
        generate(journal, job_id, "u0", "u1")
        journal.mark_output_failed(job_id, 0, "404 from the bucket")
        assert committed(tmp_path, "SELECT status, error FROM outputs ORDER BY output_index") == [
            ("failed", "404 from the bucket"),
            ("pending", None),
        ]
        journal.mark_output_pending(job_id, 0, "timed out, try again")
        journal.mark_output_done(job_id, 1, "images/b.webp", "ff", 10, 4, 3, mtime_ns=77)
        assert output_columns(journal, job_id) == [
            ("pending", "timed out, try again", None, None, None, None, None, None),
            ("done", None, "images/b.webp", "ff", 10, 4, 3, 77),
        ]
        journal.mark_output_done(job_id, 0, "images/a.webp", "ee", 20, 8, 6)
        journal.note_mtime(job_id, 0, 99)
        assert output_columns(journal, job_id)[0] == (
            "done",
            None,
            "images/a.webp",
            "ee",
            20,
            8,
            6,
            99,
        )


@pytest.mark.parametrize(
    ("state", "error"),
    [
        ("generated", None),
        ("lost", "the image file went missing or changed on disk, and its link is dead"),
    ],
)
def test_a_missing_image_is_reopened_for_download_or_its_job_is_lost(tmp_path, state, error):
    with Journal.open(tmp_path) as journal:
        [job_id] = planned(journal, 1)
        generate(journal, job_id, "u0")
        journal.mark_output_done(job_id, 0, "images/a.webp", "ff", 10, 4, 4)
        journal.mark_succeeded(job_id, 3.0)
        journal.reopen_output(job_id, 0, state)
    assert committed(tmp_path, "SELECT state, error FROM jobs") == [(state, error)]
    assert committed(tmp_path, "SELECT status, error FROM outputs") == [
        ("pending", "the image file went missing or changed on disk")
    ]


def test_pending_downloads_are_paid_images_not_on_disk_whose_link_may_live(tmp_path):
    with Journal.open(tmp_path) as journal:
        two, lost, no_url, planned_only = planned(journal, 4)
        generate(journal, two, "u0", "u1", "u2")
        journal.mark_output_done(two, 0, "images/a.webp", "ff", 10, 4, 4)
        generate(journal, lost, SIGNED_URL, "u1")
        journal.mark_output_failed(lost, 0, "403")
        journal.mark_output_failed(lost, 1, "403")
        journal.mark_lost(lost, "dead links", 3.0)
        generate(journal, no_url, "")

        def listed(now: float | None = None) -> list[tuple]:
            return [
                (p.job_id, p.output_index, p.url, p.fmt, p.state, p.missing)
                for p in journal.pending_downloads(now)
            ]

        live_ones = [
            (two, 1, "u1", "webp", "generated", 2),
            (two, 2, "u2", "webp", "generated", 2),
        ]
        never_dies = (lost, 1, "u1", "webp", "lost", 2)
        assert listed(EXPIRES) == [*live_ones, (lost, 0, SIGNED_URL, "webp", "lost", 2), never_dies]
        assert listed(EXPIRES + 1) == [*live_ones, never_dies]
        assert listed() == [*live_ones, never_dies]
        assert journal.pending_downloads()[0].remote_path == f"development/images/{two}_1.webp"
        assert planned_only not in {p.job_id for p in journal.pending_downloads()}


def test_generated_jobs_with_every_image_on_disk_are_the_downloaded_ones(tmp_path):
    with Journal.open(tmp_path) as journal:
        done, half, finished = planned(journal, 3)
        generate(journal, done, "u0", "u1")
        generate(journal, half, "u0", "u1")
        generate(journal, finished, "u0")
        for k in (0, 1):
            journal.mark_output_done(done, k, f"images/{k}.webp", "ff", 10, 4, 4)
        journal.mark_output_done(half, 0, "images/h.webp", "ff", 10, 4, 4)
        journal.mark_output_done(finished, 0, "images/f.webp", "ff", 10, 4, 4)
        journal.mark_succeeded(finished, 3.0)
        assert journal.downloaded_jobs() == [done]


# rebuilding, reading


def test_restore_writes_rebuilt_jobs_and_outputs_and_their_uploads(tmp_path):
    with Journal.open(tmp_path / "old") as old:
        [job_id] = planned(old, 1)
        generate(old, job_id, "u0", "u1")
        original = old.job_row(job_id)
    outputs = original.pop("outputs")
    with Journal.open(tmp_path / "new") as new:
        new.restore(
            list(original),
            [tuple(original.values())],
            list(outputs[0]),
            [tuple(o.values()) for o in outputs],
        )
        assert new.job_row(job_id) == original | {"outputs": outputs}
        assert new.cached_asset(BASE, SHA) == ASSET
        assert new.job_row("not-a-job") is None


def test_a_reader_connection_sees_every_change_the_journal_made(tmp_path):
    with Journal.open(tmp_path) as journal:
        [job_id] = planned(journal, 1)
        generate(journal, job_id, "u0")
        journal.mark_succeeded(job_id, 3.0)
        with closing(journal.reader()) as reader:
            assert reader.execute("SELECT state FROM jobs").fetchall() == [("succeeded",)]
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                reader.execute("DELETE FROM jobs")
        assert journal.query("SELECT idx FROM jobs WHERE job_id = ?", (job_id,)) == [(0,)]


def test_has_jobs_says_whether_a_journal_records_any_job(tmp_path):
    empty, full, broken = tmp_path / "empty", tmp_path / "full", tmp_path / "broken"
    Journal.open(empty).close()
    with Journal.open(full) as journal:
        planned(journal, 1)
    broken.mkdir()
    (broken / JOURNAL_FILE).write_text("not a database, just text " * 100)
    assert [has_jobs(d / JOURNAL_FILE) for d in (empty, full, broken)] == [False, True, False]
