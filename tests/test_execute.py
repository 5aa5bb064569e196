"""End-to-end runs of the engine against the simulator over real HTTP on loopback.

Each test starts the simulator on an ephemeral port, runs a small sweep through
`execute_sweep` (the same code `sweeper run` uses) and checks what landed on disk
against what the simulator says it produced and was asked.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sqlite3
from pathlib import Path

import pytest
from engine_run import FAST_RETRIES, KEY, feature_requests, manifest, run_sweep, write_spec

from sweeper.errors import AbortError, ApiUnavailable, AuthError, CreditsError, UploadFailed
from sweeper.journal import Journal
from sweeper.simulator import FaultRule, SimulatorConfig, run_simulator


async def test_faulty_run_keeps_exactly_what_the_simulator_produced(tmp_path):
    spec = write_spec(tmp_path, [1, 2, 3])
    faults = [
        FaultRule("features", "status", status=500),
        FaultRule("features", "rate_limit", retry_after="0"),
        FaultRule("features", "reset"),
        FaultRule("features", "html_502"),
        FaultRule("storage", "truncated"),
        FaultRule("assets", "status", status=503),
    ]
    async with run_simulator(SimulatorConfig(faults=faults)) as sim:
        # The reset may have been billed: sent again only because this run says so.
        summary = await run_sweep(spec, tmp_path / "run", sim.base_url, resend_unanswered=True)
        produced = dict(sim.state.produced)
    assert summary.outcome == "complete"
    assert summary.unanswered_attempts == 1 and summary.this_run.resent_unanswered == 0
    rows = manifest(tmp_path / "run")
    assert len(rows) == 12 and set(rows["status"]) == {"succeeded"}
    for row in rows.itertuples():
        image = produced[row.remote_path]
        data = (tmp_path / "run" / row.file).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row.sha256 == image.sha256
        assert image.params["seed"] == row.seed
        assert image.params["guidance"] == row.guidance
        assert image.output_index == row.output_index
        assert json.loads(row.request_json)["promptObject"]["seed"] == row.seed
    assert not list((tmp_path / "run" / "tmp").glob("*"))


async def test_rerun_of_a_finished_sweep_sends_nothing(tmp_path):
    spec = write_spec(tmp_path, [1, 2])
    async with run_simulator(SimulatorConfig()) as sim:
        await run_sweep(spec, tmp_path / "run", sim.base_url)
        sent = (feature_requests(sim), sim.state.counters["uploads"])
        again = await run_sweep(spec, tmp_path / "run", sim.base_url)
        assert (feature_requests(sim), sim.state.counters["uploads"]) == sent
    assert again.requests_sent == 0 and again.this_run.skipped == 4
    assert len(manifest(tmp_path / "run")) == 8


async def test_a_rerun_looks_up_states_batch_by_batch_not_all_at_once(tmp_path, monkeypatch):
    """A dict of every job's state would grow with the sweep; the feeder asks per batch."""
    spec = write_spec(tmp_path, list(range(1, 8)))  # 14 jobs
    async with run_simulator(SimulatorConfig()) as sim:
        await run_sweep(spec, tmp_path / "run", sim.base_url)
        monkeypatch.setattr("sweeper.pool.FEED_BATCH", 4)
        asked: list[int] = []
        states_of = Journal.states_of

        def spy(journal, job_ids):
            asked.append(len(job_ids))
            return states_of(journal, job_ids)

        monkeypatch.setattr(Journal, "states_of", spy)
        monkeypatch.setattr(Journal, "job_states", None)  # not called during a run
        sent = feature_requests(sim)
        again = await run_sweep(spec, tmp_path / "run", sim.base_url)
        assert feature_requests(sim) == sent
    assert asked == [4, 4, 4, 2]
    assert again.requests_sent == 0 and again.this_run.skipped == 14 and again.outcome == "complete"


async def test_a_rerun_redoes_deferred_changes_lost_in_a_crash_without_paying(tmp_path):
    """Downloads done and successes are committed once per tick; a crash can lose that tail."""
    spec, run_dir = write_spec(tmp_path, [1, 2]), tmp_path / "run"
    async with run_simulator(SimulatorConfig()) as sim:
        await run_sweep(spec, run_dir, sim.base_url)
        with sqlite3.connect(run_dir / "journal.sqlite") as db:  # what kill -9 may leave
            db.execute("UPDATE jobs SET state = 'generated'")
            db.execute("UPDATE outputs SET status = 'pending' WHERE output_index = 1")
        sent = feature_requests(sim)
        again = await run_sweep(spec, run_dir, sim.base_url)
        assert feature_requests(sim) == sent
    assert again.requests_sent == 0 and again.outcome == "complete"
    rows = manifest(run_dir)
    assert len(rows) == 8 and set(rows["status"]) == {"succeeded"}


async def test_every_request_the_server_saw_was_committed_as_submitted_first(tmp_path):
    """Workers share one commit per tick; none sends before its 'submitted' is durable."""
    spec, run_dir = write_spec(tmp_path, list(range(1, 9))), tmp_path / "run"
    async with run_simulator(SimulatorConfig(latency_s=0.05)) as sim:
        run = asyncio.ensure_future(run_sweep(spec, run_dir, sim.base_url))
        checks = 0
        while not run.done():
            await asyncio.sleep(0.005)
            seen = feature_requests(sim)
            if not (run_dir / "journal.sqlite").is_file():
                continue
            with sqlite3.connect(f"file:{run_dir / 'journal.sqlite'}?mode=ro", uri=True) as db:
                sent = db.execute("SELECT count(*) FROM jobs WHERE state != 'planned'").fetchone()
            assert sent[0] >= seen
            checks += 1
        assert (await run).outcome == "complete"
    assert checks > 5


async def test_extending_a_spec_runs_only_the_new_jobs(tmp_path):
    async with run_simulator(SimulatorConfig()) as sim:
        await run_sweep(write_spec(tmp_path, [1, 2]), tmp_path / "run", sim.base_url)
        before = feature_requests(sim)
        extended = await run_sweep(write_spec(tmp_path, [1, 2, 3]), tmp_path / "run", sim.base_url)
        assert feature_requests(sim) - before == 2
    assert extended.this_run.skipped == 4 and extended.this_run.succeeded == 2
    assert len(manifest(tmp_path / "run")) == 12


async def test_an_image_on_disk_whose_journal_entry_was_lost_is_kept_not_fetched(tmp_path):
    spec = write_spec(tmp_path, [1, 2])
    run_dir = tmp_path / "run"
    async with run_simulator(SimulatorConfig()) as sim:
        await run_sweep(spec, run_dir, sim.base_url)
        before = manifest(run_dir)
        # What kill -9 can leave: images renamed into place, their "done" not yet committed.
        with sqlite3.connect(run_dir / "journal.sqlite") as db:
            db.execute("UPDATE jobs SET state = 'generated'")
            db.execute("UPDATE outputs SET status = 'pending', file = NULL, sha256 = NULL")
        # Every URL has expired by now: only the disk can settle these jobs.
        sim.state.faults.append(FaultRule("storage", "expired", times=1000))
        sent, fetched = feature_requests(sim), sim.state.counters["storage"]
        again = await run_sweep(spec, run_dir, sim.base_url)
        assert (feature_requests(sim), sim.state.counters["storage"]) == (sent, fetched)
    assert again.this_run.succeeded == 4 and again.requests_sent == 0
    after = manifest(run_dir)
    assert after["sha256"].tolist() == before["sha256"].tolist()
    assert set(after["status"]) == {"succeeded"}


@pytest.mark.parametrize("seeds", [2, 12])  # 4 and 24 resumed jobs: fewer and more than fit
async def test_a_resumed_job_whose_link_expired_is_never_sent_again_in_that_run(tmp_path, seeds):
    spec = write_spec(tmp_path, list(range(1, seeds + 1)), outputs=1)
    run_dir = tmp_path / "run"
    async with run_simulator(SimulatorConfig()) as sim:
        await run_sweep(spec, run_dir, sim.base_url)
        # As if killed after every answer and before any download.
        with sqlite3.connect(run_dir / "journal.sqlite") as db:
            db.execute("UPDATE jobs SET state = 'generated'")
            db.execute("UPDATE outputs SET status = 'pending', file = NULL, sha256 = NULL")
        for image in (run_dir / "images").iterdir():
            image.unlink()
        sim.state.faults.append(FaultRule("storage", "expired", times=1000))
        before = feature_requests(sim)
        again = await run_sweep(spec, run_dir, sim.base_url)
        assert feature_requests(sim) == before
    # Lost, and said so; paying again is the user's call (a later rerun), not a side effect.
    counts = again.this_run
    assert counts.lost == counts.total == again.jobs == again.lost == 2 * seeds
    assert counts.skipped == counts.succeeded == counts.pending == counts.failed == 0  # once each
    assert again.exit_code == 1


async def wait_until(condition, timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the simulator never got there")


def journal_states(run_dir: Path) -> dict[str, int]:
    with sqlite3.connect(run_dir / "journal.sqlite") as db:
        return dict(db.execute("SELECT state, count(*) FROM jobs GROUP BY state"))


async def test_an_image_that_cannot_be_written_stops_the_run_but_keeps_every_answer(tmp_path):
    spec = write_spec(tmp_path, [1, 2, 3, 4], outputs=1)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "images").write_text("a file where the folder belongs, as good as a full disk")
    # Sends 0.25 s apart, each edit 0.6 s: when the first image fails to land, others are out.
    async with run_simulator(SimulatorConfig(latency_s=0.6)) as sim:
        with pytest.raises(AbortError, match="cannot write"):
            await run_sweep(spec, run_dir, sim.base_url, rpm=240)
        billed = sim.state.counters["succeeded"]
    states = journal_states(run_dir)
    assert billed >= 2
    # Every edit the server billed was waited for and recorded, so a rerun only downloads.
    assert states.get("generated", 0) == billed and "submitted" not in states, states


async def test_one_ctrl_c_after_an_abort_still_waits_for_billed_requests_and_exits_3(tmp_path):
    spec = write_spec(tmp_path, [1, 2], outputs=1)
    fault = FaultRule("features", "status", status=401, times=1)
    async with run_simulator(SimulatorConfig(latency_s=1.0, faults=[fault])) as sim:
        run = asyncio.ensure_future(run_sweep(spec, tmp_path / "run", sim.base_url))
        await wait_until(lambda: feature_requests(sim) >= 4)
        await asyncio.sleep(0.1)  # the 401 has stopped the pool; three edits are running
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(AuthError):
            await run
        billed = sim.state.counters["succeeded"]
    # The three billed edits were waited for and their images kept; only the 401 failed.
    assert billed == 3
    assert journal_states(tmp_path / "run") == {"failed": 1, "succeeded": 3}


async def test_a_rejected_key_aborts_before_more_than_concurrency_requests(tmp_path):
    spec = write_spec(tmp_path, list(range(1, 11)))
    async with run_simulator(SimulatorConfig(api_key="the-right-key")) as sim:
        with pytest.raises(AuthError) as raised:
            await run_sweep(spec, tmp_path / "run", sim.base_url, key=KEY)
        sent = sim.state.counters["features"] + sim.state.counters["uploads"]
    assert sent <= 4
    assert KEY not in str(raised.value)
    assert (tmp_path / "run" / "manifest.csv").is_file()


async def test_a_key_rejected_mid_run_stops_new_requests(tmp_path):
    spec = write_spec(tmp_path, list(range(1, 21)), outputs=1)
    fault = FaultRule("features", "status", status=401, times=1000, after=5)
    async with run_simulator(SimulatorConfig(faults=[fault])) as sim:
        with pytest.raises(AuthError):
            await run_sweep(spec, tmp_path / "run", sim.base_url)
        assert feature_requests(sim) <= 5 + 4
    rows = manifest(tmp_path / "run")
    assert (rows["status"] == "succeeded").sum() >= 1


async def test_exhausted_credits_abort_and_keep_what_was_paid_for(tmp_path):
    spec = write_spec(tmp_path, list(range(1, 9)), outputs=1)
    async with run_simulator(SimulatorConfig(credit_limit=5)) as sim:
        with pytest.raises(CreditsError):
            await run_sweep(spec, tmp_path / "run", sim.base_url)
    rows = manifest(tmp_path / "run")
    assert (rows["status"] == "succeeded").sum() == 5
    for row in rows[rows["status"] == "succeeded"].itertuples():
        assert (tmp_path / "run" / row.file).is_file()


async def test_an_upload_that_never_succeeds_stops_the_run_before_any_edit(tmp_path):
    spec = write_spec(tmp_path, list(range(1, 11)), outputs=1)
    fault = FaultRule("assets", "status", status=503, times=1000)
    async with run_simulator(SimulatorConfig(faults=[fault])) as sim:
        with pytest.raises(UploadFailed, match="no edit was sent"):
            await run_sweep(spec, tmp_path / "run", sim.base_url)
        assert feature_requests(sim) == 0
        assert sim.state.counters["uploads"] <= FAST_RETRIES.max_attempts
    assert set(manifest(tmp_path / "run")["status"]) <= {"failed", "pending"}


async def test_an_api_that_stops_answering_stops_the_run_instead_of_failing_every_job(tmp_path):
    spec = write_spec(tmp_path, list(range(1, 11)), outputs=1)  # 20 jobs
    fault = FaultRule("features", "status", status=503, times=1000)
    async with run_simulator(SimulatorConfig(faults=[fault])) as sim:
        with pytest.raises(ApiUnavailable, match="gave no answer to 4 jobs in a row"):
            await run_sweep(spec, tmp_path / "run", sim.base_url)
        # About two rounds of the pool (4 workers x 4 attempts), not 20 jobs x 4 attempts.
        assert feature_requests(sim) <= 2 * 4 * FAST_RETRIES.max_attempts
    assert "succeeded" not in journal_states(tmp_path / "run")


async def test_jobs_that_give_up_between_answered_ones_do_not_stop_the_run(tmp_path):
    spec = write_spec(tmp_path, list(range(1, 5)), outputs=1)  # 8 jobs, sent one at a time
    # Jobs 1-2 give up (4 failed attempts each), job 3 is answered, jobs 4-5 give up.
    faults = [
        FaultRule("features", "status", status=503, times=8),
        FaultRule("features", "status", status=503, times=8, after=1),
    ]
    async with run_simulator(SimulatorConfig(faults=faults)) as sim:
        summary = await run_sweep(spec, tmp_path / "run", sim.base_url, concurrency=1)
    assert (summary.failed, summary.succeeded) == (4, 4)


async def test_a_bad_request_fails_that_job_only(tmp_path):
    spec = write_spec(tmp_path, [1, 2, 3], outputs=1)
    fault = FaultRule("features", "status", status=422, message="guidance is not allowed")
    async with run_simulator(SimulatorConfig(faults=[fault])) as sim:
        summary = await run_sweep(spec, tmp_path / "run", sim.base_url)
        assert feature_requests(sim) == 6
    assert (summary.succeeded, summary.failed) == (5, 1)
    failed = manifest(tmp_path / "run").query("status == 'failed'")
    assert "guidance is not allowed" in failed["error"].iloc[0]


async def test_an_expired_download_link_loses_the_job_without_resending(tmp_path):
    spec = write_spec(tmp_path, [1], outputs=1)
    async with run_simulator(SimulatorConfig(faults=[FaultRule("storage", "expired")])) as sim:
        summary = await run_sweep(spec, tmp_path / "run", sim.base_url)
        assert feature_requests(sim) == 2
    assert (summary.succeeded, summary.lost, summary.failed) == (1, 1, 0)
    assert summary.exit_code == 1
    lost = manifest(tmp_path / "run").query("status == 'lost'")
    assert "link is dead" in lost["error"].iloc[0]


async def test_the_key_never_reaches_disk_output_or_storage(tmp_path, capsys):
    spec = write_spec(tmp_path, [1, 2])
    fault = FaultRule("features", "status", status=400, message="bad seed")
    async with run_simulator(SimulatorConfig(faults=[fault])) as sim:
        await run_sweep(spec, tmp_path / "run", sim.base_url)
        assert sim.state.counters["storage_requests_with_key"] == 0
    captured = capsys.readouterr()
    assert KEY not in captured.out + captured.err
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
