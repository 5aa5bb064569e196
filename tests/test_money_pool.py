"""The worker pool's money promises: what is sent, counted, journalled and stopped, exactly."""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from engine_run import FAST_RETRIES, KEY, write_spec

from sweeper.budget import Budget
from sweeper.client import ApiClient
from sweeper.downloads import DownloadLimits
from sweeper.errors import (
    AbortError,
    ApiUnavailable,
    BudgetReached,
    CreditsError,
    RequestLimitReached,
    SpecError,
)
from sweeper.expand import expand_jobs
from sweeper.job import Job
from sweeper.journal import Journal
from sweeper.pacing import RateLimiter
from sweeper.pool import JobRunner, JournalWriteFailed, PoolOptions, budget_stop
from sweeper.progress import RunCounts
from sweeper.retry import Attempts
from sweeper.simulator import FaultRule, SimulatorConfig, run_simulator
from sweeper.spec import load_spec


async def stopped_budget(**caps: Any) -> Budget:
    """A budget whose next reservation was refused, after one answered request of 1 image."""
    budget = Budget(**caps)
    first = await budget.reserve()
    assert first is not None
    first.settle(1)
    assert await budget.reserve() is None
    return budget


async def test_a_request_cap_stop_names_the_cap_and_the_requests_sent():
    stop = budget_stop(await stopped_budget(max_requests=1, max_credits=100))
    assert type(stop) is RequestLimitReached
    assert str(stop) == (
        "the next request would pass run.max_requests (1); 1 were sent. Raise it to go on"
    )


async def test_a_credit_cap_stop_names_the_cap_and_what_may_have_been_billed():
    budget = await stopped_budget(max_credits=2.5, price=1.5, price_source="spec")
    stop = budget_stop(budget)
    assert type(stop) is BudgetReached
    assert str(stop) == (
        "the next request could pass run.max_credits (2.5); "
        "1.5 credits may have been billed. Raise it to go on"
    )


def test_a_credit_cap_stop_without_a_known_price_says_the_spend_is_unknown():
    budget = Budget(max_credits=10)
    budget.stop_reason = "budget"
    stop = budget_stop(budget)
    assert type(stop) is BudgetReached
    assert str(stop) == (
        "the next request could pass run.max_credits (10); "
        "unknown credits may have been billed. Raise it to go on"
    )


@dataclass
class PoolRun:
    """What one `JobRunner.run` left: its tallies, the error it ended with, the journal's states."""

    counts: RunCounts
    error: BaseException | None
    states: dict[str, int]
    errors: dict[int, str]  # by job index: the error the journal keeps
    unfetched: dict[tuple[int, int], tuple[str, str]]  # (job, image): status and why


class StopAfter:
    """A progress listener that asks the runner to stop once `requests` requests were sent."""

    def __init__(self, requests: int) -> None:
        self.requests = requests
        self.runner: JobRunner | None = None

    def started(self, total: int) -> None:
        pass

    def changed(self, counts: RunCounts) -> None:
        if self.runner is not None and counts.requests >= self.requests:
            self.runner.stop()

    def finished(self, counts: RunCounts) -> None:
        pass


async def run_pool(
    base_url: str,
    run_dir: Path,
    spec_path: Path,
    *,
    concurrency: int = 1,
    options: PoolOptions | None = None,
    jobs: Iterable[Job] | None = None,
    stop_after: int | None = None,
    pacer: RateLimiter | None = None,
    timeout_s: float = 5,
) -> PoolRun:
    """One `JobRunner.run` over the spec's jobs (or `jobs`), as the engine wires it up."""
    spec = load_spec(spec_path)
    listener = StopAfter(stop_after) if stop_after is not None else None
    journal = Journal.open(run_dir)
    try:
        journal.settle_orphans()
        journal.add_jobs(expand_jobs(spec), base_url)
        async with aiohttp.ClientSession() as session:
            client = ApiClient(session, base_url, KEY, request_timeout_s=5)
            pacer = pacer or RateLimiter(None)
            attempts = Attempts(FAST_RETRIES, pacer, rng=random.Random(7))
            runner = JobRunner(
                client=client,
                session=session,
                journal=journal,
                attempts=attempts,
                run_dir=run_dir,
                concurrency=concurrency,
                request_timeout_s=timeout_s,
                progress=listener,
                options=options,
            )
            if listener is not None:
                listener.runner = runner
            error: BaseException | None = None
            try:
                await runner.run(expand_jobs(spec) if jobs is None else jobs, journal.job_count())
            except Exception as raised:
                error = raised
        states = {state: n for state, n in journal.counts().items() if n}
        errors = dict(journal.query("SELECT idx, error FROM jobs WHERE error IS NOT NULL"))
        unfetched = journal.query(
            "SELECT idx, output_index, status, o.error FROM outputs o JOIN jobs USING (job_id) "
            "WHERE status != 'done'"
        )
    finally:
        with suppress(sqlite3.Error):  # a full disk, on purpose
            journal.close()
    return PoolRun(
        runner.counts, error, states, errors, {(j, o): (s, e) for j, o, s, e in unfetched}
    )


def tallies(counts: RunCounts) -> dict[str, int]:
    """The settled-job tallies of a run, without the ones that are zero."""
    names = ("skipped", "succeeded", "failed", "pending", "lost", "unanswered", "images")
    return {name: getattr(counts, name) for name in names if getattr(counts, name)}


async def test_a_stop_lets_the_request_in_flight_finish_and_sends_nothing_more(tmp_path):
    spec = write_spec(tmp_path, [1, 2, 3], outputs=1)  # 6 jobs
    async with run_simulator(SimulatorConfig()) as sim:
        run = await run_pool(sim.base_url, tmp_path / "run", spec, stop_after=1)
        assert sim.state.counters["features"] == 1
    assert run.error is None
    assert (run.counts.requests, tallies(run.counts)) == (1, {"succeeded": 1, "images": 1})
    assert (run.counts.total, run.counts.done) == (6, 1)
    assert run.states == {"succeeded": 1, "planned": 5}


async def test_every_job_that_fails_or_goes_unanswered_is_counted_once(tmp_path):
    spec = write_spec(tmp_path, [1, 2, 3], outputs=1)  # 6 jobs, sent one at a time
    faults = [
        FaultRule("features", "status", status=422, message="no", times=2),
        FaultRule("features", "billed_drop", times=2),
    ]
    async with run_simulator(SimulatorConfig(faults=faults)) as sim:
        run = await run_pool(sim.base_url, tmp_path / "run", spec)
    assert run.error is None
    assert tallies(run.counts) == {"failed": 2, "unanswered": 2, "succeeded": 2, "images": 2}
    assert (run.counts.requests, run.counts.unanswered_attempts) == (6, 2)
    assert run.states == {"failed": 2, "unanswered": 2, "succeeded": 2}


async def test_an_api_that_gives_no_answer_stops_the_run_and_says_to_run_it_again(tmp_path):
    spec = write_spec(tmp_path, [1, 2, 3], outputs=1)  # 6 jobs, sent one at a time
    fault = FaultRule("features", "status", status=503, message="down", times=1000)
    async with run_simulator(SimulatorConfig(faults=[fault])) as sim:
        run = await run_pool(sim.base_url, tmp_path / "run", spec)
        assert sim.state.counters["features"] == 3 * FAST_RETRIES.max_attempts
    assert type(run.error) is ApiUnavailable
    message = str(run.error)
    assert message.startswith(
        f"the API at {sim.base_url} gave no answer to 3 jobs in a row (last: gave up after 4 "
    )
    assert message.endswith("; nothing more is sent. Run the same command again when it is back")
    assert tallies(run.counts) == {"failed": 3}
    assert run.states == {"failed": 3, "planned": 3}
    assert len(run.errors) == 3
    assert all(error.startswith("gave up after 4 attempts") for error in run.errors.values())
    assert all("down" in error for error in run.errors.values())


async def test_each_answer_keeps_how_long_its_request_took(tmp_path):
    spec = write_spec(tmp_path, [1], outputs=1)  # 2 jobs
    async with run_simulator(SimulatorConfig(latency_s=0.2)) as sim:
        run = await run_pool(sim.base_url, tmp_path / "run", spec)
    assert run.error is None and tallies(run.counts) == {"succeeded": 2, "images": 2}
    with Journal.open(tmp_path / "run") as journal:
        latencies = [latency for (latency,) in journal.query("SELECT latency_s FROM jobs")]
    assert len(latencies) == 2
    assert all(0.2 <= latency < 5 for latency in latencies)


def failing_after(jobs: Iterator[Job], count: int, error: Exception) -> Iterator[Job]:
    """The first `count` jobs, then `error`: a feeder that breaks mid-run."""
    for _ in range(count):
        yield next(jobs)
    raise error


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        (SpecError("the input image vanished"), "stopped mid-run: the input image vanished"),
        (
            OSError(28, "No space left on device"),
            "stopped: OSError: [Errno 28] No space left on device",
        ),
    ],
)
async def test_a_feeder_that_breaks_ends_the_run_as_an_abort_with_its_cause(
    tmp_path, caplog, problem, message
):
    spec = write_spec(tmp_path, [1, 2, 3], outputs=1)
    jobs = failing_after(expand_jobs(load_spec(spec)), 0, problem)
    async with run_simulator(SimulatorConfig()) as sim:
        with caplog.at_level(logging.WARNING, logger="sweeper"):
            run = await run_pool(sim.base_url, tmp_path / "run", spec, jobs=jobs)
        assert sim.state.counters["features"] == 0
    assert type(run.error) is AbortError
    assert str(run.error) == message
    assert run.error.__cause__ is problem
    assert caplog.messages == [
        f"stopping: {message}; no new requests, waiting for the 0 in flight "
        "(Ctrl-C twice to stop now)"
    ]
    assert run.states == {"planned": 6}


async def test_a_resumed_job_whose_answer_lacked_a_url_stays_lost_after_its_free_fetch(tmp_path):
    spec = write_spec(tmp_path, [1], outputs=2)  # 2 jobs of 2 images
    run_dir = tmp_path / "run"
    faults = [
        FaultRule("features", "missing_url"),  # job 1's 2nd image has no URL
        FaultRule("storage", "status", status=503, times=FAST_RETRIES.max_attempts),
    ]
    async with run_simulator(SimulatorConfig(faults=faults)) as sim:
        first = await run_pool(sim.base_url, run_dir, spec)
        again = await run_pool(sim.base_url, run_dir, spec)
        assert sim.state.counters["features"] == 2
    assert tallies(first.counts) == {"lost": 1, "succeeded": 1, "images": 2}
    assert tallies(again.counts) == {"lost": 1, "skipped": 1, "images": 1}
    assert again.states == {"lost": 1, "succeeded": 1}
    no_url = "1 of 2 images lost: the API's answer carried no URL for it"
    assert first.errors == again.errors == {0: no_url}
    assert first.unfetched == {
        (0, 0): ("pending", "gave up after 4 attempts: download failed: HTTP 503"),
        (0, 1): ("failed", "the API's answer carried no URL for this image"),
    }
    assert again.unfetched == {(0, 1): first.unfetched[0, 1]}


async def test_a_budget_counts_every_image_billed_and_learns_only_from_exact_answers(
    tmp_path, caplog
):
    spec = write_spec(tmp_path, [1, 2], outputs=1)  # 4 jobs, sent one at a time
    # The 2nd answer lists 9 images more than asked for: all made, so billed (the
    # simulator's running total only grows by 1, so learning from it would say 0.1).
    extra = FaultRule("features", "extra_results", extra=9, after=1)
    budget = Budget(max_credits=1000)
    async with run_simulator(SimulatorConfig(faults=[extra])) as sim:
        with caplog.at_level(logging.WARNING, logger="sweeper"):
            run = await run_pool(
                sim.base_url, tmp_path / "run", spec, options=PoolOptions(budget=budget)
            )
    assert run.error is None and tallies(run.counts) == {"succeeded": 4, "images": 4}
    snapshot = budget.snapshot()
    assert (snapshot["spent_images"], snapshot["spent_requests"]) == (1 + 10 + 1 + 1, 4)
    assert (budget.learned_price, budget.price_source) == (1, "learned")
    second = list(expand_jobs(load_spec(spec)))[1].job_id
    assert caplog.messages == [
        f"job {second}: the API listed 9 more images than the 1 asked for; kept 1"
    ]


async def test_a_request_cap_stops_sending_at_the_cap_and_says_which(tmp_path):
    spec = write_spec(tmp_path, [1, 2, 3], outputs=1)  # 6 jobs
    budget = Budget(max_requests=2)
    async with run_simulator(SimulatorConfig()) as sim:
        run = await run_pool(
            sim.base_url, tmp_path / "run", spec, options=PoolOptions(budget=budget)
        )
        assert sim.state.counters["features"] == 2
    assert type(run.error) is RequestLimitReached
    assert str(run.error) == (
        "the next request would pass run.max_requests (2); 2 were sent. Raise it to go on"
    )
    assert tallies(run.counts) == {"succeeded": 2, "images": 2}
    assert run.states == {"succeeded": 2, "planned": 4}


async def test_a_job_bought_again_fetches_every_image_of_its_new_answer(tmp_path):
    spec = write_spec(tmp_path, [1], outputs=2)  # 2 jobs of 2 images
    run_dir = tmp_path / "run"
    dead = FaultRule("storage", "expired")  # one image of job 1 is lost, one kept
    async with run_simulator(SimulatorConfig(faults=[dead])) as sim:
        first = await run_pool(sim.base_url, run_dir, spec)
        rebuy = await run_pool(sim.base_url, run_dir, spec, options=PoolOptions(resend_lost=True))
        assert sim.state.counters["features"] == 2 + 1
        assert sim.state.counters["storage"] == 4 + 2  # the kept image is not the new answer's
    assert tallies(first.counts) == {"lost": 1, "succeeded": 1, "images": 3}
    assert first.errors == {
        0: "1 of 2 images lost: the download link is dead (HTTP 403); "
        "the image is lost unless the job is run again"
    }
    assert rebuy.errors == {}
    dead_link = (
        "failed",
        "the download link is dead (HTTP 403); the image is lost unless the job is run again",
    )
    assert list(first.unfetched.values()) == [dead_link]
    assert rebuy.unfetched == {}
    assert tallies(rebuy.counts) == {"succeeded": 1, "skipped": 1, "images": 2}
    assert rebuy.counts.rebought == 1


def forget_downloads(
    run_dir: Path, job_indexes: list[int], *, links_expired: bool, files_kept: bool = False
) -> None:
    """What a crash right after the answers were committed leaves (then maybe a week)."""
    with sqlite3.connect(run_dir / "journal.sqlite") as db:
        for index in job_indexes:
            (job_id,) = db.execute("SELECT job_id FROM jobs WHERE idx = ?", (index,)).fetchone()
            for (file,) in db.execute("SELECT file FROM outputs WHERE job_id = ?", (job_id,)):
                if not files_kept:
                    (run_dir / file).unlink()
            db.execute("UPDATE jobs SET state = 'generated' WHERE job_id = ?", (job_id,))
            db.execute("UPDATE outputs SET status = 'pending' WHERE job_id = ?", (job_id,))
            if links_expired:
                db.execute("UPDATE outputs SET expires_at = 0 WHERE job_id = ?", (job_id,))


async def test_a_rerun_counts_what_may_be_billed_and_resends_it_only_when_asked(tmp_path):
    spec = write_spec(tmp_path, [1, 2, 3, 4], outputs=1)  # 8 jobs, sent one at a time
    run_dir = tmp_path / "run"
    faults = [
        FaultRule("features", "billed_drop", times=2),  # jobs 0-1: unanswered
        FaultRule("features", "missing_url", times=2),  # jobs 2-3: lost, no URL
    ]
    async with run_simulator(SimulatorConfig(faults=faults)) as sim:
        await run_pool(sim.base_url, run_dir, spec)
        forget_downloads(run_dir, [4, 5], links_expired=True)  # jobs 4-5: links dead
        plain = await run_pool(sim.base_url, run_dir, spec)
        assert sim.state.counters["features"] == 8
        asked = await run_pool(
            sim.base_url,
            run_dir,
            spec,
            options=PoolOptions(resend_unanswered=True, resend_lost=True),
        )
        assert sim.state.counters["features"] == 8 + 6
    assert tallies(plain.counts) == {"skipped": 2, "unanswered": 2, "lost": 4}
    assert plain.counts.requests == 0
    expired = "its download links expired before its images were fetched"
    no_url = "1 of 1 images lost: the API's answer carried no URL for it"
    assert {i: e for i, e in plain.errors.items() if i > 1} == {
        2: no_url,
        3: no_url,
        4: expired,
        5: expired,
    }
    assert tallies(asked.counts) == {"skipped": 2, "succeeded": 6, "images": 6}
    assert (asked.counts.resent_unanswered, asked.counts.rebought) == (2, 4)
    assert asked.states == {"succeeded": 8}


async def test_images_that_cannot_be_fetched_now_leave_their_jobs_pending_for_a_free_rerun(
    tmp_path,
):
    spec = write_spec(tmp_path, [1], outputs=1)  # 2 jobs, sent one at a time
    run_dir = tmp_path / "run"
    down = FaultRule("storage", "status", status=503, times=2 * FAST_RETRIES.max_attempts)
    async with run_simulator(SimulatorConfig(faults=[down])) as sim:
        first = await run_pool(sim.base_url, run_dir, spec)
        again = await run_pool(sim.base_url, run_dir, spec)
        assert sim.state.counters["features"] == 2
    assert tallies(first.counts) == {"pending": 2}
    assert first.states == {"generated": 2}
    assert tallies(again.counts) == {"succeeded": 2, "images": 2}
    assert (again.counts.requests, again.states) == (0, {"succeeded": 2})


async def test_a_request_not_yet_sent_when_the_run_aborts_is_failed_as_never_sent(
    tmp_path, monkeypatch
):
    spec = write_spec(tmp_path, [1], outputs=1)  # 2 jobs, both sent at once
    # One is refused at once (503) and sent again; the other is refused for credits
    # (an abort) 0.3 s later, while the retry's "submitted" is still being committed.
    commits: list[str] = []

    def slow_disk(journal: Journal) -> None:  # a method: it sees what is being committed
        if any("state = 'submitted'" in sql for sql, _ in journal.uncommitted):
            commits.append("submitted")
            if len(commits) > 1:
                time.sleep(1.0)

    monkeypatch.setattr(Journal, "before_commit", slow_disk)
    refused = FaultRule("features", "status", status=503)
    config = SimulatorConfig(faults=[refused], credit_limit=0, latency_s=0.3)
    async with run_simulator(config) as sim:
        run = await run_pool(sim.base_url, tmp_path / "run", spec, concurrency=2)
        assert sim.state.counters["features"] == 2
    assert type(run.error) is CreditsError
    assert sorted(run.errors.values()) == [
        f"run aborted before this request was sent: {run.error}",
        f"run aborted: {run.error}",
    ]
    assert tallies(run.counts) == {"failed": 2}
    assert run.counts.requests == 2


async def test_a_stop_still_sends_the_requests_already_committed_as_submitted(tmp_path):
    spec = write_spec(tmp_path, [1], outputs=1)  # 2 jobs, committed as submitted together
    async with run_simulator(SimulatorConfig()) as sim:
        run = await run_pool(sim.base_url, tmp_path / "run", spec, concurrency=2, stop_after=1)
        assert sim.state.counters["features"] == 2
    assert (run.error, run.errors, run.counts.in_flight) == (None, {}, 0)
    assert tallies(run.counts) == {"succeeded": 2, "images": 2}


async def test_resend_lost_buys_only_lost_jobs_and_fetches_live_links_for_free(tmp_path):
    spec = write_spec(tmp_path, [1, 2], outputs=1)  # 4 jobs, sent one at a time
    run_dir = tmp_path / "run"
    dead = FaultRule("storage", "expired", after=1)  # job 1 lost (its link says it is dead)
    async with run_simulator(SimulatorConfig(faults=[dead])) as sim:
        await run_pool(sim.base_url, run_dir, spec)
        forget_downloads(run_dir, [0, 2], links_expired=False)  # links still live
        again = await run_pool(sim.base_url, run_dir, spec, options=PoolOptions(resend_lost=True))
        assert sim.state.counters["features"] == 4 + 1
        assert sim.state.counters["storage"] == 4 + 3
    assert tallies(again.counts) == {"succeeded": 3, "skipped": 1, "images": 3}
    assert (again.counts.rebought, again.counts.requests) == (1, 1)
    assert again.states == {"succeeded": 4}


async def test_changes_safe_to_lose_are_committed_within_a_tick_while_requests_are_in_flight(
    tmp_path,
):
    spec = write_spec(tmp_path, [1], outputs=1)  # 2 jobs, sent at once
    run_dir = tmp_path / "run"
    slow = FaultRule("features", "latency", delay_s=1.5)  # one answer comes 1.5 s late
    async with run_simulator(SimulatorConfig(faults=[slow])) as sim:
        run = asyncio.ensure_future(run_pool(sim.base_url, run_dir, spec, concurrency=2))
        await asyncio.sleep(1.0)  # the other job succeeded: nothing else commits meanwhile
        with sqlite3.connect(f"file:{run_dir / 'journal.sqlite'}?mode=ro", uri=True) as db:
            durable = dict(db.execute("SELECT state, count(*) FROM jobs GROUP BY state"))
        assert (await run).states == {"succeeded": 2}
    assert durable == {"succeeded": 1, "submitted": 1}


class CountingPacer(RateLimiter):
    """A pacer that counts the send slots it hands out."""

    slots = 0

    async def acquire(self) -> None:
        self.slots += 1
        await super().acquire()


async def test_every_paid_attempt_takes_a_send_slot_and_the_pace_is_shown(tmp_path):
    spec = write_spec(tmp_path, [1], outputs=2)  # 2 jobs of 2 images, one at a time
    refused = FaultRule("features", "status", status=503)  # job 0 is sent twice
    pacer = CountingPacer(6000)

    async with run_simulator(SimulatorConfig(faults=[refused])) as sim:
        run = await run_pool(sim.base_url, tmp_path / "run", spec, pacer=pacer)
        assert (sim.state.counters["features"], sim.state.counters["storage"]) == (3, 4)
    assert pacer.slots == 3  # downloads of images paid for take none
    assert run.counts.requests_per_minute == 6000
    assert tallies(run.counts) == {"succeeded": 2, "images": 4}


async def test_a_download_that_hangs_is_cut_at_the_request_timeout_and_fetched_again(tmp_path):
    spec = write_spec(tmp_path, [1], outputs=1)  # 2 jobs
    hang = FaultRule("storage", "hang")
    async with run_simulator(SimulatorConfig(faults=[hang])) as sim:
        run = await run_pool(sim.base_url, tmp_path / "run", spec, timeout_s=0.3)
        assert (sim.state.counters["features"], sim.state.counters["storage"]) == (2, 3)
    assert tallies(run.counts) == {"succeeded": 2, "images": 2}


async def test_the_download_limits_given_refuse_a_bigger_image_and_lose_its_job(tmp_path):
    spec = write_spec(tmp_path, [1], outputs=1)  # 2 jobs of 0.25 megapixels
    small = PoolOptions(download_limits=DownloadLimits(max_pixels=1000))
    async with run_simulator(SimulatorConfig()) as sim:
        run = await run_pool(sim.base_url, tmp_path / "run", spec, options=small)
        assert sim.state.counters["features"] == 2
    assert tallies(run.counts) == {"lost": 2}
    too_big = (
        "1 of 1 images lost: gave up after 4 attempts: the downloaded image has more pixels "
        "(496 x 496) than the cap of 0.001 megapixels; it may be a decompression bomb, "
        "or scale it down first"
    )
    assert run.errors == {0: too_big, 1: too_big}


async def test_an_image_found_on_disk_by_a_rerun_is_kept_only_within_the_limits(tmp_path):
    spec = write_spec(tmp_path, [1], outputs=1)  # 2 jobs of 0.25 megapixels
    run_dir = tmp_path / "run"
    async with run_simulator(SimulatorConfig()) as sim:
        await run_pool(sim.base_url, run_dir, spec)
        forget_downloads(run_dir, [0, 1], links_expired=False, files_kept=True)
        kept = await run_pool(sim.base_url, run_dir, spec)
        assert sim.state.counters["storage"] == 2  # found on disk: not fetched again
        forget_downloads(run_dir, [0, 1], links_expired=False, files_kept=True)
        small = PoolOptions(download_limits=DownloadLimits(max_pixels=1000))
        refused = await run_pool(sim.base_url, run_dir, spec, options=small)
        assert sim.state.counters["storage"] == 2 + 2 * FAST_RETRIES.max_attempts
    assert tallies(kept.counts) == {"succeeded": 2, "images": 2}
    assert tallies(refused.counts) == {"lost": 2}


async def test_a_stop_sends_no_retry_of_a_refused_request(tmp_path):
    spec = write_spec(tmp_path, [1], outputs=1)  # 2 jobs, both sent at once
    refused = FaultRule("features", "status", status=503)  # one is refused, to be retried
    async with run_simulator(SimulatorConfig(faults=[refused])) as sim:
        run = await run_pool(sim.base_url, tmp_path / "run", spec, concurrency=2, stop_after=2)
        assert sim.state.counters["features"] == 2
    assert (run.error, tallies(run.counts)) == (None, {"succeeded": 1, "images": 1})


async def test_a_refused_request_stopped_before_its_retry_is_sent_by_the_next_run(tmp_path):
    spec = write_spec(tmp_path, [1], outputs=1)  # 2 jobs, both sent at once
    refused = FaultRule("features", "status", status=503)
    async with run_simulator(SimulatorConfig(faults=[refused])) as sim:
        first = await run_pool(sim.base_url, tmp_path / "run", spec, concurrency=2, stop_after=2)
        again = await run_pool(sim.base_url, tmp_path / "run", spec, concurrency=2)
        assert sim.state.counters["features"] == 3
    assert tallies(again.counts) == {"skipped": 1, "succeeded": 1, "images": 1}
    assert list(first.errors.values()) == ["HTTP 503: simulated failure"]


def full_disk_for(monkeypatch, change: str) -> None:
    """Every commit that carries `change` fails as a full disk fails it."""

    def disk_is_full(journal: Journal) -> None:  # a method: it sees what is being committed
        if any(change in sql for sql, _ in journal.uncommitted):
            raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Journal, "before_commit", disk_is_full)


async def test_a_full_disk_at_a_periodic_commit_stops_sending_as_a_journal_failure(
    tmp_path, monkeypatch
):
    spec = write_spec(tmp_path, [1], outputs=1)  # 2 jobs, sent at once
    run_dir = tmp_path / "run"
    full_disk_for(monkeypatch, "state = 'succeeded'")  # first met by the periodic commit
    slow = FaultRule("features", "latency", delay_s=0.5)
    async with run_simulator(SimulatorConfig(faults=[slow])) as sim:
        run = await run_pool(sim.base_url, run_dir, spec, concurrency=2)
        assert sim.state.counters["features"] == 2
    assert type(run.error) is JournalWriteFailed
    assert str(run.error) == (
        f"cannot write the journal {run_dir / 'journal.sqlite'} (database or disk is full)"
    )


async def test_a_full_disk_at_the_last_commit_ends_the_run_as_a_journal_failure(
    tmp_path, monkeypatch
):
    spec = write_spec(tmp_path, [1], outputs=1)
    run_dir = tmp_path / "run"
    monkeypatch.setattr("sweeper.pool.FLUSH_EVERY_S", 60)  # only the last commit carries it
    full_disk_for(monkeypatch, "state = 'succeeded'")
    async with run_simulator(SimulatorConfig()) as sim:
        one_job = islice(expand_jobs(load_spec(spec)), 1)
        run = await run_pool(sim.base_url, run_dir, spec, jobs=one_job)
        assert sim.state.counters["features"] == 1
    assert type(run.error) is JournalWriteFailed
    assert str(run.error) == (
        f"cannot write the journal {run_dir / 'journal.sqlite'} (database or disk is full)"
    )
    assert tallies(run.counts) == {"succeeded": 1, "images": 1}


async def test_a_bug_in_a_worker_ends_the_run_with_that_very_error(tmp_path, monkeypatch):
    spec = write_spec(tmp_path, [1], outputs=1)
    bug = RuntimeError("a progress listener broke")

    def broken(self: StopAfter, counts: RunCounts) -> None:
        if counts.requests >= 1:  # called by the worker about to send
            raise bug

    monkeypatch.setattr(StopAfter, "changed", broken)
    async with run_simulator(SimulatorConfig()) as sim:
        run = await run_pool(sim.base_url, tmp_path / "run", spec, stop_after=1)
        assert sim.state.counters["features"] == 0
    assert run.error is bug


async def test_an_upload_the_server_forgets_again_is_sent_once_more_then_the_job_fails(tmp_path):
    spec = write_spec(tmp_path, [1], outputs=1)  # 2 jobs, one at a time
    forget = FaultRule("features", "forget_assets", times=2)  # job 0, and its one retry
    async with run_simulator(SimulatorConfig(faults=[forget])) as sim:
        run = await run_pool(sim.base_url, tmp_path / "run", spec)
        sent = (sim.state.counters["features"], sim.state.counters["uploads"])
    assert sent == (4, 3)  # job 1 finds the upload forgotten too, and uploads it again
    assert tallies(run.counts) == {"failed": 1, "succeeded": 1, "images": 1}
    assert run.errors == {
        0: "the API no longer knows the input image "
        "(HTTP 400: imageUrl not found: upload it with /api/assets first)"
    }
