"""The worker pool: send jobs concurrently under the rate limit and see each one through.

This is the only module that knows about concurrency. A producer walks the lazy job
sequence into a small bounded queue (memory stays flat at any sweep size); at most
`concurrency` workers each take a job, upload its input if needed, submit it with
retries, and download its outputs. Every state change goes to the journal first:
a job is marked submitted *before* its request leaves, and generated (with its
remote paths) before its downloads start. Changes a rerun can redo for free are
committed together once per tick (see `Journal`), off the event loop.

What a paid request never gets without being asked: sent again. A job whose
attempt went unanswered (it may have been billed) is not resent unless
`resend_unanswered`; a job paid for whose images could not be fetched (lost) has
its live links tried again for free, and is bought again only with `resend_lost`.

A rejected key or exhausted credits stops the pool at once (no new requests); a
graceful stop (Ctrl-C), a failing feeder or a journal that cannot be written lets
the requests in flight finish, since the server bills them either way.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import aiohttp

from sweeper.budget import Budget
from sweeper.client import ApiClient, EditResult, UnknownAsset
from sweeper.downloads import (
    BadDownload,
    DownloadedImage,
    DownloadLimits,
    download_output,
    kept_output,
    output_file_name,
)
from sweeper.errors import (
    AbortError,
    ApiUnavailable,
    BudgetReached,
    InterruptedRun,
    JobError,
    RecordFailed,
    RequestLimitReached,
    SpecError,
    SweeperError,
    Unanswered,
    is_environment_error,
)
from sweeper.job import Job
from sweeper.journal import Journal, PendingDownload
from sweeper.progress import NoProgress, ProgressListener, RunCounts
from sweeper.retry import Attempts, GaveUp
from sweeper.uploads import AssetUploader

Work = Callable[[], Awaitable[None]]
# Jobs whose journal states the feeder looks up at once (it yields to the loop after each).
FEED_BATCH = 500
# Jobs in a row that may give up after all their attempts before the run stops (at least).
GAVE_UP_LIMIT = 3
# How often deferred journal changes (downloads done, jobs succeeded) are committed.
FLUSH_EVERY_S = 0.2

logger = logging.getLogger("sweeper")


def budget_stop(budget: Budget) -> InterruptedRun:
    """The stop a spent budget calls for, saying which cap and what was spent."""
    spent = budget.spent_credits
    if budget.stop_reason == "max_requests":
        return RequestLimitReached(
            f"the next request would pass run.max_requests ({budget.max_requests}); "
            f"{budget.spent_requests} were sent. Raise it to go on"
        )
    spent_text = "unknown" if spent is None else f"{spent:g}"
    return BudgetReached(
        f"the next request could pass run.max_credits ({budget.max_credits:g}); "
        f"{spent_text} credits may have been billed. Raise it to go on"
    )


def encode_request(body: dict) -> str:
    """The exact text sent; it is also what the journal and manifest keep."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class PoolOptions:
    """What the pool may spend money on again, how much, and how big a download may be."""

    resend_unanswered: bool = False
    resend_lost: bool = False
    download_limits: DownloadLimits = field(default_factory=DownloadLimits)
    budget: Budget = field(default_factory=Budget)


class JournalWriteFailed(AbortError):
    """The journal could not be written (a full disk): nothing more is sent.

    `unrecorded` holds the record uuids of answered (paid) jobs whose answer could
    not be written down.
    """

    def __init__(self, message: str, unrecorded: list[str] | None = None) -> None:
        super().__init__(message)
        self.unrecorded = unrecorded or []


class JobRunner:
    """Runs jobs through upload → submit → download with bounded concurrency."""

    def __init__(
        self,
        *,
        client: ApiClient,
        session: aiohttp.ClientSession,
        journal: Journal,
        attempts: Attempts,
        run_dir: Path,
        concurrency: int,
        request_timeout_s: float,
        progress: ProgressListener | None = None,
        options: PoolOptions | None = None,
    ) -> None:
        self._client = client
        self._session = session
        self._journal = journal
        self._attempts = attempts
        self._run_dir = run_dir
        self._concurrency = concurrency
        self._timeout_s = request_timeout_s
        self._progress = progress or NoProgress()
        self._options = options or PoolOptions()
        self._uploader = AssetUploader(client, journal, attempts)
        self._stopping = False
        self._commit_waiters: list[asyncio.Future[None]] | None = None
        self._write_error: BaseException | None = None
        self.counts = RunCounts()
        self._gave_up_in_a_row = 0
        self.abort_error: BaseException | None = None
        attempts.stopping = lambda: self._stopping

    def stop(self) -> None:
        """Send nothing more; jobs already in flight are allowed to finish."""
        self._stopping = True

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def run(self, jobs: Iterable[Job], total: int) -> RunCounts:
        """Finish downloads a previous run left behind, then every unsettled job."""
        self.counts.total = total
        queue: asyncio.Queue[Work | None] = asyncio.Queue(maxsize=self._concurrency * 2)
        tasks = [asyncio.create_task(self._work(queue)) for _ in range(self._concurrency)]
        tasks.append(asyncio.create_task(self._feed(queue, jobs)))
        flusher = asyncio.create_task(self._flush_periodically())
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in (*tasks, flusher):
                task.cancel()
            await self._final_flush()
        if self.abort_error is not None:
            raise self.abort_error
        return self.counts

    async def _final_flush(self) -> None:
        try:
            await asyncio.to_thread(self._journal.flush)
        except Exception as error:
            if not is_environment_error(error):
                raise
            self._journal_failed(error)

    async def _feed(self, queue: asyncio.Queue[Work | None], jobs: Iterable[Job]) -> None:
        """Queue every job that needs work; a failure here stops sending, never the workers."""
        try:
            await self._feed_jobs(queue, jobs)
        except Exception as error:
            self._stop_for(error)
        finally:
            for _ in range(self._concurrency):
                await queue.put(None)

    async def _feed_jobs(self, queue: asyncio.Queue[Work | None], jobs: Iterable[Job]) -> None:
        resumed = self._resumed_downloads()
        for work in resumed.values():
            await queue.put(work)
        # States are looked up a batch of jobs at a time, so memory stays flat at any size.
        remaining = iter(jobs)
        while not self._stopping and (batch := list(islice(remaining, FEED_BATCH))):
            states = await asyncio.to_thread(self._journal.states_of, [job.job_id for job in batch])
            for job in batch:
                if self._stopping:
                    break
                if job.job_id in resumed:
                    # Paid for already: its downloads are queued above, and if they fail
                    # meanwhile (an expired link), sending it again here would pay twice.
                    continue
                job_work = self._work_for(job, states.get(job.job_id))
                if job_work is not None:
                    await queue.put(job_work)
            self._changed()
            await asyncio.sleep(0)

    def _work_for(self, job: Job, state: str | None) -> Work | None:
        """What this run does with a job in `state`: send it, or only count it."""
        if state == "succeeded":
            self.counts.skipped += 1
        elif state == "unanswered" and not self._options.resend_unanswered:
            self.counts.unanswered += 1  # may have been billed: not sent again unasked
        elif state == "lost" and not self._options.resend_lost:
            self.counts.lost += 1  # paid for; its live links, if any, were tried above
        elif state == "generated":
            # Paid for, and no live link is left to fetch its missing images from.
            self._journal.mark_lost(
                job.job_id, "its download links expired before its images were fetched", time.time()
            )
            self.counts.lost += 1
        else:
            if state == "unanswered":
                self.counts.resent_unanswered += 1
            elif state == "lost":
                self.counts.rebought += 1
            return lambda: self._process(job)
        return None

    async def _flush_periodically(self) -> None:
        """One journal transaction per tick for every change that is safe to lose.

        After a write error it keeps trying, so that answers held in memory are
        written as soon as the disk has room again.
        """
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            try:
                await asyncio.to_thread(self._journal.flush)
            except Exception as error:
                if not is_environment_error(error):
                    self._stop_for(error)
                    return
                self._journal_failed(error)

    async def _committed(self) -> None:
        """Return once everything staged in the journal is committed.

        Group commit: the first caller of a tick schedules one commit after every
        callback already ready has run, so the workers that stage a change in the
        same tick share one transaction; none goes on before it is durable. The
        commit (an fsync) runs in a worker thread, so the loop keeps serving the
        requests in flight.
        """
        loop = asyncio.get_running_loop()
        if self._commit_waiters is None:
            self._commit_waiters = []
            loop.call_soon(lambda: asyncio.ensure_future(self._commit_staged()))
        waiter = loop.create_future()
        self._commit_waiters.append(waiter)
        await waiter

    async def _commit_staged(self) -> None:
        waiters, self._commit_waiters = self._commit_waiters or [], None
        try:
            await asyncio.to_thread(self._journal.flush)
        except BaseException as error:
            if isinstance(error, Exception) and is_environment_error(error):
                self._journal_failed(error)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(error)
            return
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _journal_failed(self, error: BaseException) -> None:
        """The first write error stops sending; answers already held stay in memory."""
        if self._write_error is None:
            self._write_error = error
            self._stop_for(
                JournalWriteFailed(f"cannot write the journal {self._journal.path} ({error})")
            )

    def unrecorded_answers(self) -> list[str]:
        """Record uuids of answered jobs the journal could not write down."""
        return self._journal.unrecorded_answers()

    def _resumed_downloads(self) -> dict[str, Work]:
        """Downloads a previous run left unfinished, by job id: paid for, links still live."""
        by_job: dict[str, list[PendingDownload]] = {}
        resend_lost = self._options.resend_lost
        for pending in self._journal.pending_downloads():
            if pending.state == "lost" and resend_lost:
                continue  # bought again below, as asked
            by_job.setdefault(pending.job_id, []).append(pending)
        for job_id in self._journal.downloaded_jobs():
            self._journal.mark_succeeded(job_id, time.time())
        return {job_id: self._downloads_work(job_id, outputs) for job_id, outputs in by_job.items()}

    def _downloads_work(self, job_id: str, outputs: list[PendingDownload]) -> Work:
        pairs = [(o.output_index, o.url) for o in outputs]
        unfetchable = outputs[0].missing - len(outputs)
        return lambda: self._download_all(
            job_id, outputs[0].fmt, pairs, resumed=True, unfetchable=unfetchable
        )

    async def _work(self, queue: asyncio.Queue[Work | None]) -> None:
        """Take work until told to stop; never die while siblings have requests in flight.

        An unexpected failure (a full disk, a journal that cannot commit, a bug) stops
        the run like an abort: raising here would cancel the other workers' requests,
        which the server finishes and bills anyway, and a rerun would pay for them again.
        """
        while (work := await queue.get()) is not None:
            if self._stopping:
                continue
            try:
                await work()
            except Exception as error:
                self._stop_for(error)

    async def _process(self, job: Job, *, uploaded_again: bool = False) -> None:
        try:
            asset_path = await self._uploader.asset_path(job.image)
            request_json = encode_request(job.request_body(asset_path))
            result, latency = await self._attempts.call(
                lambda attempt: self._send(job, request_json, asset_path, attempt),
                paced=True,
                resend_unanswered=self._options.resend_unanswered,
            )
        except InterruptedRun:
            return
        except Unanswered as error:
            self._unanswered(job, error)
            return
        except GaveUp as error:
            if isinstance(error.last, Unanswered):
                self._unanswered(job, error)
            else:
                self._fail(job.job_id, str(error))
                self._note_gave_up(error)
            return
        except UnknownAsset as error:
            if uploaded_again or not job.image.is_local:
                self._fail(job.job_id, str(error))
                return
            # The server forgot the upload: upload it again once, then retry the job once.
            self._uploader.forget(job.image)
            await self._process(job, uploaded_again=True)
            return
        except JobError as error:
            self._fail(job.job_id, str(error))
            return
        except SweeperError as error:
            self._abort(job, error)
            return
        self._gave_up_in_a_row = 0
        await self._answered(job, result, latency)

    async def _answered(self, job: Job, result: EditResult, latency: float) -> None:
        """A SUCCESS: paid for. Write it down, then fetch its images."""
        if result.surplus:
            logger.warning(
                "job %s: the API listed %d more images than the %d asked for; kept %d",
                job.job_id,
                result.surplus,
                job.image_count,
                job.image_count,
            )
        self._journal.mark_generated(
            job.job_id, result.record_uuid, result.outputs, time.time(), latency, commit=False
        )
        await self._committed()  # paid for: durable before any download
        pairs = [(o.index, o.url) for o in result.outputs if o.url]
        unfetchable = len(result.outputs) - len(pairs)
        await self._download_all(job.job_id, job.params["format"], pairs, unfetchable=unfetchable)

    async def _send(
        self, job: Job, request_json: str, asset_path: str, attempt: int
    ) -> tuple[EditResult, float]:
        """One paid attempt: reserved in the budget, journalled, sent, its cost settled."""
        budget = self._options.budget
        reservation = await budget.reserve(job.image_count)
        if reservation is None:
            self._stop_for(budget_stop(budget))
            raise InterruptedRun("the budget allows no more requests")
        try:
            result = await self._send_reserved(job, request_json, asset_path, attempt)
        except Unanswered:
            reservation.unanswered()
            raise
        except RecordFailed as error:
            reservation.failed_record(error.used_credit)
            raise
        except BaseException:
            reservation.refused()
            raise
        edit = result[0]
        # Images listed beyond those asked for were made, so billed; such an answer says
        # nothing sure about the price of one image, so it teaches none.
        learn = edit.used_credit if not edit.surplus else None
        reservation.settle(len(edit.outputs) + edit.surplus, learn)
        return result

    async def _send_reserved(
        self, job: Job, request_json: str, asset_path: str, attempt: int
    ) -> tuple[EditResult, float]:
        self._journal.mark_submitted(
            job.job_id, attempt, request_json, time.time(), asset_path=asset_path, commit=False
        )
        await self._committed()  # durable before the request leaves
        if self._stopping and self.abort_error is not None:
            # Never sent: say so, or the rerun would warn that it may have been billed.
            self._fail(job.job_id, f"run aborted before this request was sent: {self.abort_error}")
            raise InterruptedRun("the run is stopping")
        self.counts.in_flight += 1
        self.counts.requests += 1
        self._changed()
        started = time.monotonic()
        try:
            result = await self._client.run_edit(request_json, job.image_count)
        except Unanswered:
            self.counts.unanswered_attempts += 1
            self._journal.count_unanswered(job.job_id, commit=False)
            raise
        except SweeperError as refusal:
            # Answered (or never sent): not maybe billed, even if the run stops before a retry.
            self._journal.mark_refused(job.job_id, str(refusal))
            raise
        finally:
            self.counts.in_flight -= 1
        return result, time.monotonic() - started

    def _unanswered(self, job: Job, error: Exception) -> None:
        """The last attempt went unanswered: it may be billed, so it is not sent again."""
        self._journal.mark_unanswered(job.job_id, str(error), time.time())
        self.counts.unanswered += 1
        self._changed()
        self._note_gave_up(error)

    async def _download_all(
        self,
        job_id: str,
        fmt: str,
        outputs: list[tuple[int, str]],
        *,
        resumed: bool = False,
        unfetchable: int = 0,
    ) -> None:
        """Fetch a paid job's images; then it has succeeded, is lost, or waits for a rerun."""
        outcomes = await asyncio.gather(
            *(self._download_one(job_id, index, url, fmt, resumed) for index, url in outputs)
        )
        lost = [error for status, error in outcomes if status == "lost"]
        if lost or unfetchable:
            reason = lost[0] if lost else "the API's answer carried no URL for it"
            count = len(lost) + unfetchable
            self._journal.mark_lost(
                job_id,
                f"{count} of {len(outputs) + unfetchable} images lost: {reason}",
                time.time(),
            )
            self.counts.lost += 1
        elif all(status == "done" for status, _ in outcomes):
            self._journal.mark_succeeded(job_id, time.time())
            self.counts.succeeded += 1
        else:
            self.counts.pending += 1
        self._changed()

    async def _download_one(
        self, job_id: str, index: int, url: str, fmt: str, resumed: bool
    ) -> tuple[str, str]:
        file = output_file_name(job_id, index, fmt)
        limits = self._options.download_limits
        # Only a resumed run can find its image on disk already: don't fetch it again.
        kept = (
            await asyncio.to_thread(kept_output, self._run_dir, file, fmt, limits)
            if resumed
            else None
        )
        try:
            image = kept or await self._fetch(url, file, fmt)
        except JobError as error:
            self._journal.mark_output_failed(job_id, index, str(error))
            return "lost", str(error)
        except GaveUp as error:
            if isinstance(error.last, BadDownload):
                self._journal.mark_output_failed(job_id, index, str(error))
                return "lost", str(error)
            self._journal.mark_output_pending(job_id, index, str(error))
            return "pending", str(error)
        except InterruptedRun as error:
            return "pending", str(error)
        except AbortError as error:  # the image cannot be written: a rerun fetches it
            self._stop_for(error)
            return "pending", str(error)
        self._journal.mark_output_done(
            job_id,
            index,
            image.file,
            image.sha256,
            image.size,
            image.width,
            image.height,
            image.mtime_ns,
        )
        self.counts.images += 1
        return "done", ""

    async def _fetch(self, url: str, file: str, fmt: str) -> DownloadedImage:
        return await self._attempts.call(
            lambda _attempt: download_output(
                self._session,
                url,
                self._run_dir,
                file,
                fmt,
                timeout_s=self._timeout_s,
                limits=self._options.download_limits,
            ),
            paced=False,
        )

    def _fail(self, job_id: str, error: str) -> None:
        self._journal.mark_failed(job_id, error, time.time())
        self.counts.failed += 1
        self._changed()

    def _abort(self, job: Job, error: SweeperError) -> None:
        """Stop the whole pool; the job that saw it was not billed, so it is marked failed."""
        self._stop_for(error)
        self._fail(job.job_id, f"run aborted: {error}")

    def _note_gave_up(self, error: Exception) -> None:
        """Stop when the API has stopped answering, rather than fail every job in turn.

        One job giving up is that job's bad luck; `concurrency` of them in a row, with
        no edit answered in between, is an outage, and the rest would only repeat it.
        """
        self._gave_up_in_a_row += 1
        if self._gave_up_in_a_row >= max(GAVE_UP_LIMIT, self._concurrency):
            self._stop_for(
                ApiUnavailable(
                    f"the API at {self._client.api_base} gave no answer to "
                    f"{self._gave_up_in_a_row} jobs in a row (last: {error}); nothing more "
                    "is sent. Run the same command again when it is back"
                )
            )

    def _stop_for(self, error: BaseException) -> None:
        """Send nothing more and end the run with `error` (the first one wins).

        A spec problem found mid-run is no longer "nothing was sent" (exit 2): it ends
        the run as an abort. A bug keeps its own type and traceback (exit 4).
        """
        if self.abort_error is None:
            if isinstance(error, SpecError):
                wrapped = AbortError(f"stopped mid-run: {error}")
                wrapped.__cause__ = error
                error = wrapped
            elif isinstance(error, Exception) and is_environment_error(error):
                wrapped = AbortError(f"stopped: {type(error).__name__}: {error}")
                wrapped.__cause__ = error
                error = wrapped
            self.abort_error = error
            # Requests in flight can take minutes: say why the run has not ended yet.
            logger.warning(
                "stopping: %s; no new requests, waiting for the %d in flight "
                "(Ctrl-C twice to stop now)",
                error,
                self.counts.in_flight,
            )
        self._stopping = True

    def _changed(self) -> None:
        rpm = self._attempts.limiter.snapshot().get("requests_per_minute")
        self.counts.requests_per_minute = rpm if isinstance(rpm, int | float) else None
        self._progress.changed(self.counts)
