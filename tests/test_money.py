"""Money safety: nothing paid for is bought again silently, and every maybe-billed attempt counts.

Each test runs the engine against the simulator with a fault that costs money in
real life, and checks the run against the simulator's own record of what it
billed (its oracle), not against the run's own word.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from engine_run import REPO, feature_requests, manifest, run_sweep, write_spec

from sweeper.errors import InterruptedRun, SpecError
from sweeper.journal import Journal
from sweeper.pool import JournalWriteFailed
from sweeper.repair import repair_journal
from sweeper.simulator import FaultRule, SimulatorConfig, SimulatorThread, run_simulator


def billed_per_job(sim) -> Counter:
    """How many times the simulator billed each (seed, guidance): its own record."""
    records = {
        (i.record_uuid, i.params["seed"], i.params["guidance"]) for i in sim.state.produced.values()
    }
    return Counter((seed, guidance) for _, seed, guidance in records)


def journal_states(run_dir: Path) -> dict[str, int]:
    with sqlite3.connect(run_dir / "journal.sqlite") as db:
        return dict(db.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())


async def test_attempts_billed_without_an_answer_are_counted_and_not_resent(tmp_path):
    spec = write_spec(tmp_path, list(range(1, 7)), outputs=1)  # 12 jobs
    drops = [
        FaultRule("features", "billed_drop", after=2),
        FaultRule("features", "billed_drop", after=3),
    ]
    async with run_simulator(SimulatorConfig(faults=drops)) as sim:
        result = await run_sweep(spec, tmp_path / "run", sim.base_url)
        billed_unanswered = sim.state.counters["billed_unanswered"]
        assert max(billed_per_job(sim).values()) == 1  # none paid twice
    assert billed_unanswered == 2
    assert result.this_run.unanswered_attempts == billed_unanswered
    rows = manifest(tmp_path / "run")
    assert rows["unanswered_attempts"].sum() == billed_unanswered
    assert (rows["status"] == "unanswered").sum() == 2 == result.unanswered
    assert result.exit_code == 1
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["this_run"]["unanswered"] == 2 and record["counts"]["unanswered"] == 2


async def test_resending_unanswered_attempts_is_asked_for_and_still_counted(tmp_path):
    spec = write_spec(tmp_path, list(range(1, 7)), outputs=1)
    drops = [
        FaultRule("features", "billed_drop", after=1),
        FaultRule("features", "billed_drop", after=4),
    ]
    async with run_simulator(SimulatorConfig(faults=drops)) as sim:
        first = await run_sweep(spec, tmp_path / "run", sim.base_url)
        sent = feature_requests(sim)
        plain = await run_sweep(spec, tmp_path / "run", sim.base_url)
        assert feature_requests(sim) == sent  # a plain rerun sends nothing more
        asked = await run_sweep(spec, tmp_path / "run", sim.base_url, resend_unanswered=True)
        assert feature_requests(sim) == sent + 2
        paid_twice = [job for job, times in billed_per_job(sim).items() if times > 1]
    assert first.unanswered == plain.unanswered == 2 and plain.exit_code == 1
    assert asked.exit_code == 0 and asked.this_run.resent_unanswered == 2
    assert len(paid_twice) == 2  # the user's call, and it is on record:
    rows = manifest(tmp_path / "run")
    assert rows["unanswered_attempts"].sum() == 2


async def test_string_shapes_and_credit_worded_429s_are_understood(tmp_path):
    spec = write_spec(tmp_path, [1, 2, 3], outputs=1)
    limited = FaultRule(
        "features",
        "status",
        status=429,
        message="Limit of 100 credits per minute exceeded",
        times=3,
    )
    async with run_simulator(SimulatorConfig(single_strings=True, faults=[limited])) as sim:
        result = await run_sweep(spec, tmp_path / "run", sim.base_url)
        billed = billed_per_job(sim)
    assert result.outcome == "complete" and result.succeeded == 6
    assert sum(billed.values()) == 6 and max(billed.values()) == 1


async def test_dead_links_lose_the_job_and_only_resend_lost_buys_it_again(tmp_path):
    spec = write_spec(tmp_path, [1, 2, 3], outputs=1)  # 6 jobs
    dead = FaultRule("storage", "expired", times=2)  # 2 jobs lost
    async with run_simulator(SimulatorConfig(faults=[dead])) as sim:
        first = await run_sweep(spec, tmp_path / "run", sim.base_url, concurrency=1)
        sent = feature_requests(sim)
        sim.state.faults.append(FaultRule("storage", "expired", times=2))  # the links stay dead
        plain = await run_sweep(spec, tmp_path / "run", sim.base_url)
        assert feature_requests(sim) == sent  # no edit sent, only free downloads tried
        assert sim.state.counters["storage"] == 6 + 2
        rebuy = await run_sweep(spec, tmp_path / "run", sim.base_url, resend_lost=True)
        assert feature_requests(sim) == sent + 2
    assert (first.exit_code, first.lost) == (1, 2)
    assert (plain.exit_code, plain.lost, plain.requests_sent) == (1, 2, 0)
    assert (rebuy.exit_code, rebuy.this_run.rebought, rebuy.lost) == (0, 2, 0)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["counts"]["lost"] == 0


async def test_a_deleted_image_is_fetched_again_for_free_while_its_link_lives(tmp_path):
    spec = write_spec(tmp_path, [1, 2], outputs=1)
    run_dir = tmp_path / "run"
    async with run_simulator(SimulatorConfig()) as sim:
        await run_sweep(spec, run_dir, sim.base_url)
        before = manifest(run_dir)
        victim = before.iloc[1]
        original = (run_dir / victim["file"]).read_bytes()
        (run_dir / victim["file"]).unlink()
        other = before.iloc[2]
        (run_dir / other["file"]).write_bytes(b"not the image")
        sent = feature_requests(sim)
        again = await run_sweep(spec, run_dir, sim.base_url)
        assert feature_requests(sim) == sent
    assert again.exit_code == 0 and again.this_run.images == 2
    assert (run_dir / victim["file"]).read_bytes() == original
    after = manifest(run_dir)
    assert after["sha256"].tolist() == before["sha256"].tolist()
    assert set(after["status"]) == {"succeeded"}


async def test_status_sees_a_missing_or_changed_image_and_verify_hashes_them_all(tmp_path):
    import sweeper

    spec = write_spec(tmp_path, [1], outputs=1)
    run_dir = tmp_path / "run"
    async with run_simulator(SimulatorConfig()) as sim:
        await run_sweep(spec, run_dir, sim.base_url)
    files = manifest(run_dir)["file"].tolist()
    (run_dir / files[0]).unlink()
    path = run_dir / files[1]
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # same size; keep the time so only a hash can tell
    stat = path.stat()
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    cheap = sweeper.open_run(run_dir).status()
    thorough = sweeper.open_run(run_dir).status(verify=True)
    assert [d.problem for d in cheap.damaged] == ["missing"]
    assert sorted(d.problem for d in thorough.damaged) == ["changed", "missing"]


async def test_a_full_disk_mid_run_stops_sending_and_a_rerun_pays_for_nothing_answered(
    tmp_path, monkeypatch
):
    spec = write_spec(tmp_path, list(range(1, 9)), outputs=1)  # 16 jobs
    run_dir = tmp_path / "run"
    # The disk fills up while requests are in flight: each is slow enough (0.3 s) that
    # the 4 workers all hold one when the 3rd answer comes in.
    async with run_simulator(SimulatorConfig(latency_s=0.3)) as sim:

        def disk_fills_up() -> None:
            if sim.state.counters["succeeded"] >= 3:
                raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(Journal, "before_commit", staticmethod(disk_fills_up))
        with pytest.raises(JournalWriteFailed) as stopped:
            await run_sweep(spec, run_dir, sim.base_url)
        assert stopped.value.exit_code == 3
        assert "never answered" not in str(stopped.value)
        sent = feature_requests(sim)
        assert sent < 16  # sending stopped at the first write error
        answered = set(billed_per_job(sim))
        monkeypatch.setattr(Journal, "before_commit", None)  # space freed
        again = await run_sweep(spec, run_dir, sim.base_url)
        billed = billed_per_job(sim)
    assert max(billed.values()) == 1  # no job that had been answered was paid again
    assert set(billed) >= answered
    unrecorded = stopped.value.unrecorded
    assert len(unrecorded) >= 1  # requests were in flight when the disk filled up
    assert len(unrecorded) == again.unanswered  # answered, unrecorded: held, not resent
    assert all(uuid in str(stopped.value) for uuid in unrecorded)


async def test_a_removed_journal_is_refused_and_repair_restores_it_with_no_request(tmp_path):
    spec = write_spec(tmp_path, [1, 2], outputs=1)
    run_dir = tmp_path / "run"
    async with run_simulator(SimulatorConfig()) as sim:
        await run_sweep(spec, run_dir, sim.base_url)
        before = manifest(run_dir)
        for path in run_dir.glob("journal.sqlite*"):
            path.unlink()
        sent = (feature_requests(sim), sim.state.counters["uploads"])
        with pytest.raises(SpecError, match="sweeper repair"):
            await run_sweep(spec, run_dir, sim.base_url)
        assert not (run_dir / "journal.sqlite").exists()
        repaired = repair_journal(run_dir)
        assert repaired.states["succeeded"] == 4
        again = await run_sweep(spec, run_dir, sim.base_url)
        assert (feature_requests(sim), sim.state.counters["uploads"]) == sent
    assert again.exit_code == 0 and again.this_run.skipped == 4
    after = manifest(run_dir)
    for column in ("job_id", "file", "sha256", "record_uuid", "request_json", "seed"):
        assert after[column].tolist() == before[column].tolist()


async def test_an_emptied_journal_is_refused_too(tmp_path):
    spec = write_spec(tmp_path, [1], outputs=1)
    run_dir = tmp_path / "run"
    async with run_simulator(SimulatorConfig()) as sim:
        await run_sweep(spec, run_dir, sim.base_url)
        with sqlite3.connect(run_dir / "journal.sqlite") as db:
            db.execute("DELETE FROM jobs")
        with pytest.raises(SpecError, match="has no jobs"):
            await run_sweep(spec, run_dir, sim.base_url)


async def test_sigterm_while_the_manifest_is_written_ends_stopped(tmp_path, monkeypatch):
    from sweeper import manifest as manifest_module

    spec = write_spec(tmp_path, [1], outputs=1)
    run_dir = tmp_path / "run"
    write = manifest_module.write_manifest

    def signalled_meanwhile(journal, folder):
        os.kill(os.getpid(), signal.SIGTERM)
        return write(journal, folder)

    monkeypatch.setattr(manifest_module, "write_manifest", signalled_meanwhile)
    async with run_simulator(SimulatorConfig()) as sim:
        with pytest.raises(InterruptedRun) as stopped:
            await run_sweep(spec, run_dir, sim.base_url)
    assert stopped.value.result is not None and stopped.value.result.outcome == "stopped"
    record = json.loads((run_dir / "run.json").read_text())
    assert (record["outcome"], record["reason"]) == ("stopped", "signal")
    assert len(pd.read_parquet(run_dir / "manifest.parquet")) == 2


def test_sigterm_during_the_upload_exits_3_stopped_with_nothing_sent(tmp_path):
    spec = write_spec(tmp_path, [1], outputs=1)
    run_dir = tmp_path / "run"
    slow_upload = FaultRule("assets", "latency", delay_s=5)
    with SimulatorThread(SimulatorConfig(faults=[slow_upload])) as sim:
        env = os.environ | {"ONEMIN_API_KEY": "sk-money-test", "ONEMIN_API_BASE": sim.base_url}
        child = subprocess.Popen(
            [sys.executable, "-m", "sweeper", "run", str(spec), "--out", str(run_dir)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        while sim.state.counters["uploads"] == 0:
            assert child.poll() is None
            asyncio.run(asyncio.sleep(0.02))
        child.send_signal(signal.SIGTERM)
        _, errors = child.communicate(timeout=60)
        features = sim.state.counters["features"]
    assert child.returncode == 3, errors
    assert features == 0
    record = json.loads((run_dir / "run.json").read_text())
    assert record["outcome"] == "stopped"
    assert journal_states(run_dir).get("submitted", 0) == 0
