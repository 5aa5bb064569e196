"""The journal's state machine, crash safety, and the manifest, status and export built on it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from engine_run import journal_job

from sweeper.cli import main
from sweeper.journal import Journal, RemoteOutput
from sweeper.manifest import COLUMNS, manifest_frame, write_manifest

BASE = "http://127.0.0.1:1"

ASSET = "development/images/a.jpg"


def request_json(asset: str = ASSET) -> str:
    return json.dumps({"promptObject": {"imageUrl": asset, "seed": 1}})


def finish(journal: Journal, j, *, outputs: int = 1) -> None:
    journal.mark_submitted(j.job_id, 1, request_json(), 100.0, asset_path=ASSET)
    remote = [
        RemoteOutput(k, f"development/images/{j.job_id}_{k}.webp", "u") for k in range(outputs)
    ]
    journal.mark_generated(j.job_id, "uuid-1", remote, 101.0, 1.0)
    for k in range(outputs):
        journal.mark_output_done(j.job_id, k, f"images/{j.job_id}_{k}.webp", "ff", 10, 4, 4)
    journal.mark_succeeded(j.job_id, 102.0)


def test_add_jobs_is_idempotent(tmp_path):
    with Journal.open(tmp_path) as journal:
        assert journal.add_jobs((journal_job(i) for i in range(10)), BASE) == 10
        assert journal.add_jobs((journal_job(i) for i in range(12)), BASE) == 2
        assert {s: n for s, n in journal.counts().items() if n} == {"planned": 12}


def test_states_move_forward_and_pending_downloads_are_listed(tmp_path):
    with Journal.open(tmp_path) as journal:
        a, b, c = journal_job(1, outputs=2), journal_job(2), journal_job(3)
        journal.add_jobs([a, b, c], BASE)
        finish(journal, a, outputs=2)
        journal.mark_submitted(b.job_id, 1, request_json(), 1.0, asset_path=ASSET)
        journal.mark_generated(b.job_id, "u", [RemoteOutput(0, "r", "url")], 2.0, 0.5)
        journal.mark_submitted(c.job_id, 2, request_json(), 1.0, asset_path=ASSET)
        journal.mark_failed(c.job_id, "400: bad seed", 3.0)
        assert journal.job_states() == {
            a.job_id: "succeeded",
            b.job_id: "generated",
            c.job_id: "failed",
        }
        [pending] = journal.pending_downloads()
        assert (pending.job_id, pending.url, pending.fmt) == (b.job_id, "url", "webp")
        row = journal.job_row(a.job_id)
        assert row["asset_path"] == "development/images/a.jpg"
        assert [o["status"] for o in row["outputs"]] == ["done", "done"]


def test_states_are_looked_up_by_job_id_in_batches(tmp_path, monkeypatch):
    monkeypatch.setattr("sweeper.journal.STATES_BATCH", 3)
    with Journal.open(tmp_path) as journal:
        jobs = [journal_job(i) for i in range(8)]
        journal.add_jobs(jobs, BASE)
        finish(journal, jobs[4])
        asked = [j.job_id for j in jobs[2:]] + ["not-a-job"]
        states = journal.states_of(asked)
        assert states == {j.job_id: "planned" for j in jobs[2:]} | {jobs[4].job_id: "succeeded"}


def test_generated_jobs_with_every_output_done_are_the_downloaded_ones(tmp_path):
    with Journal.open(tmp_path) as journal:
        done, half = journal_job(1, outputs=2), journal_job(2, outputs=2)
        none, finished = journal_job(3), journal_job(4)
        journal.add_jobs([done, half, none, finished], BASE)
        for j, outputs in ((done, 2), (half, 2), (none, 0)):
            journal.mark_submitted(j.job_id, 1, request_json(), 1.0, asset_path=ASSET)
            remote = [RemoteOutput(k, f"r{k}", f"u{k}") for k in range(outputs)]
            journal.mark_generated(j.job_id, "u", remote, 2.0, 0.5)
        for k in (0, 1):
            journal.mark_output_done(done.job_id, k, f"images/{k}.webp", "ff", 10, 4, 4)
        journal.mark_output_done(half.job_id, 0, "images/h.webp", "ff", 10, 4, 4)
        finish(journal, finished)
        assert journal.downloaded_jobs() == [done.job_id, none.job_id]
        assert [p.job_id for p in journal.pending_downloads()] == [half.job_id]


def test_asset_cache_is_per_api_base(tmp_path):
    with Journal.open(tmp_path) as journal:
        journal.remember_asset(BASE, "ab", "development/images/x.jpg")
        assert journal.cached_asset(BASE, "ab") == "development/images/x.jpg"
        assert journal.cached_asset("https://api.1min.ai", "ab") is None


def test_a_journal_from_a_newer_sweeper_is_refused(tmp_path):
    with Journal.open(tmp_path) as journal:
        journal.set_meta("schema_version", 99)
    with pytest.raises(Exception, match="newer sweeper"):
        Journal.open(tmp_path)


WRITER = """
import sys, time
sys.path.insert(0, {tests!r})
from engine_run import journal_job
from test_journal import BASE, finish
from sweeper.journal import Journal
journal = Journal.open(__import__("pathlib").Path({run_dir!r}))
journal.add_jobs((journal_job(i) for i in range(100_000)), BASE)
for i in range(100_000):
    finish(journal, journal_job(i))
    if i % 10 == 9:
        journal.flush()
        print("flushed", i, flush=True)
    print("paid", i, flush=True)
"""


def test_kill_9_keeps_every_durable_change_and_every_flushed_one(tmp_path):
    """Paid-for states are committed at once; downloads done and successes by `flush`."""
    code = WRITER.format(tests=str(Path(__file__).parent), run_dir=str(tmp_path))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    last = {"paid": -1, "flushed": -1}
    while last["paid"] < 50:
        kind, number = child.stdout.readline().split()
        last[kind] = int(number)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with Journal.open(tmp_path) as journal:
        counts = journal.counts()
    assert counts.get("succeeded", 0) >= last["flushed"] + 1
    assert counts.get("succeeded", 0) + counts.get("generated", 0) >= last["paid"] + 1
    assert sum(counts.values()) == 100_000


def test_deferred_changes_wait_for_a_flush_but_reads_see_them(tmp_path):
    with Journal.open(tmp_path) as journal:
        journal.add_jobs([journal_job(1)], BASE)
        finish(journal, journal_job(1))
        other = Journal.open(tmp_path)
        assert other.counts()["generated"] == 1
        assert journal.counts()["succeeded"] == 1
        assert other.counts()["succeeded"] == 1
        other.close()


def test_manifest_columns_types_and_rows(tmp_path):
    with Journal.open(tmp_path) as journal:
        done, failed, planned = journal_job(1, outputs=2), journal_job(2), journal_job(3)
        journal.add_jobs([done, failed, planned], BASE)
        finish(journal, done, outputs=2)
        journal.mark_failed(failed.job_id, "400: nope", 5.0, attempts=1)
        assert write_manifest(journal, tmp_path) == 4
        frame = manifest_frame(journal)
    assert list(frame.columns) == COLUMNS
    assert frame["status"].tolist() == ["succeeded", "succeeded", "failed", "pending"]
    assert frame.loc[2, "error"] == "400: nope" and pd.isna(frame.loc[2, "file"])
    schema = pq.read_schema(tmp_path / "manifest.parquet")
    assert str(schema.field("megapixels").type) in ("string", "large_string")
    assert str(schema.field("seed").type) == "int64"
    assert str(schema.field("go_fast").type) == "bool"
    assert str(schema.field("submitted_at").type) == "timestamp[us, tz=UTC]"
    csv_text = (tmp_path / "manifest.csv").read_text()
    assert csv_text.splitlines()[0] == ",".join(COLUMNS)


def test_manifest_of_100k_rows_is_fast(tmp_path):
    with Journal.open(tmp_path) as journal:
        journal.add_jobs((journal_job(i) for i in range(100_000)), BASE)
        started = time.perf_counter()
        assert write_manifest(journal, tmp_path) == 100_000
        assert time.perf_counter() - started < 10


def test_the_streamed_manifest_files_hold_the_frame_batch_after_batch(tmp_path, monkeypatch):
    monkeypatch.setattr("sweeper.manifest.BATCH_ROWS", 2)
    with Journal.open(tmp_path) as journal:
        done, failed, planned = journal_job(1, outputs=2), journal_job(2), journal_job(3)
        journal.add_jobs([done, failed, planned], BASE)
        finish(journal, done, outputs=2)
        journal.mark_failed(failed.job_id, 'a "quoted", message', 5.1234567, attempts=1)
        write_manifest(journal, tmp_path)
        frame = manifest_frame(journal)
    # One typing for both: the frame is exactly what read_parquet gives back.
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "manifest.parquet"), frame)
    csv_rows = pd.read_csv(tmp_path / "manifest.csv", keep_default_na=False, dtype=str)
    assert csv_rows.loc[2, "error"] == 'a "quoted", message'
    assert csv_rows.loc[2, "finished_at"] == "1970-01-01T00:00:05.123456Z"
    assert csv_rows["go_fast"].tolist() == ["False"] * 4
    assert csv_rows["bytes"].tolist() == ["10", "10", "", ""]


def test_status_and_export_through_the_cli(tmp_path):
    with Journal.open(tmp_path) as journal:
        jobs = [journal_job(i) for i in range(4)]
        journal.add_jobs(jobs, BASE)
        finish(journal, jobs[0])
        journal.mark_failed(jobs[1].job_id, "400: nope", 5.0)
        journal.mark_failed(jobs[2].job_id, "400: nope", 5.0)
        journal.mark_submitted(jobs[3].job_id, 1, request_json(), 1.0, asset_path=ASSET)
    result = CliRunner().invoke(main, ["status", str(tmp_path)])
    assert result.exit_code == 0
    assert "failed x2: 400: nope" in result.stdout
    assert "may have been billed" in result.stdout
    assert "a rerun would send 2 requests" in result.stdout  # not the unanswered one
    for suffix in ("csv", "parquet", "jsonl"):
        target = tmp_path / f"out.{suffix}"
        result = CliRunner().invoke(main, ["export", str(tmp_path), "--to", str(target)])
        assert result.exit_code == 0 and "Wrote 4 rows" in result.stdout
    with Journal.open(tmp_path) as journal:
        assert len(manifest_frame(journal)) == 4


def test_status_of_a_folder_that_is_not_a_run(tmp_path):
    result = CliRunner().invoke(main, ["status", str(tmp_path)])
    assert result.exit_code == 2 and "is this a sweeper run folder" in result.stderr
    result = CliRunner().invoke(main, ["export", str(tmp_path), "--to", "x.txt"])
    assert result.exit_code == 2 and "unknown format .txt" in result.stderr
