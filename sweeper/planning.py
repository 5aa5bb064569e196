"""What a spec would do, before anything is sent: counts, axes, first jobs, duration.

`make_plan` is `sweeper.plan`: it validates and counts without expanding the
whole sweep. Given a run folder that already holds results, it also says which
jobs are done, new, or would be sent again (`JobTally`, the same arithmetic
a run and `status` use).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sweeper.contract import IMAGE
from sweeper.expand import check_job_count, count_images, expand_jobs, varied_axes
from sweeper.job import Job
from sweeper.journal import STATES_BATCH, Journal
from sweeper.run_folder import JOURNAL_FILE
from sweeper.spec import SweepSpec

SHOWN_VALUES = 8
DEFAULT_MAX_JOBS = 100_000
# Without a rate cap the API's own latency bounds a run; this is our working guess.
ASSUMED_LATENCY_S = 20.0


@dataclass(frozen=True)
class JobTally:
    """The spec's jobs by what a run into their folder would do with them.

    The one count of done, new, to send again, lost and unanswered that `plan
    --out`, `status --spec` and a run's own result all use.
    """

    done: int = 0
    downloads: int = 0  # paid for, images still to fetch: finished without paying
    new: int = 0  # never sent
    failed: int = 0  # refused, or never got through: sent again
    lost: int = 0  # paid for, an image could not be fetched: bought again only if asked
    unanswered: int = 0  # sent, no answer, may have been billed: sent again only if asked

    @property
    def total(self) -> int:
        return self.done + self.downloads + self.new + self.failed + self.lost + self.unanswered

    @property
    def to_send(self) -> int:
        """What a plain rerun sends (and may pay for)."""
        return self.new + self.failed


@dataclass(frozen=True)
class Plan:
    """A validated spec, counted: what `sweeper.plan` returns."""

    spec: SweepSpec
    jobs: int
    images: int
    estimate: str
    run_dir: Path | None = None
    tally: JobTally | None = None
    price: float | None = None  # credits per image, when known
    price_source: str | None = None

    @property
    def credits(self) -> float | None:
        """What the images cost, jobs × outputs × price; None until a price is known."""
        return None if self.price is None else self.images * self.price

    @property
    def axes(self) -> dict[str, list[Any]]:
        """Each varied parameter with its first values (a long axis ends with a count)."""
        return {name: _shown(values) for name, values in varied_axes(self.spec).items()}

    @property
    def fixed(self) -> dict[str, Any]:
        """The parameters every job shares."""
        return {
            name: _plain(value)
            for name, value in self.spec.fixed.items()
            if name not in self.spec.varied
        }

    def first_jobs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The first `limit` jobs: index, job id and the varied parameters."""
        return [job_row(job, self.spec) for job in itertools.islice(expand_jobs(self.spec), limit)]

    def to_dict(self, limit: int = 20) -> dict[str, Any]:
        """The plan as plain data (what `plan --format json` prints)."""
        plan: dict[str, Any] = {
            "spec": str(self.spec.source_path),
            "name": self.spec.name,
            "jobs": self.jobs,
            "images": self.images,
            "axes": self.axes,
            "estimate": self.estimate,
            "credits": self.credits,
            "price_per_image": self.price,
            "price_source": self.price_source,
            "fixed": {name: _plain(value) for name, value in self.spec.fixed.items()},
            "listed_jobs": self.first_jobs(limit),
        }
        if self.tally is not None:
            plan["run_dir"] = str(self.run_dir)
            plan["existing"] = asdict(self.tally) | {"to_send": self.tally.to_send}
        return plan


def make_plan(
    spec: SweepSpec, run_dir: Path | None = None, *, max_jobs: int = DEFAULT_MAX_JOBS
) -> Plan:
    """Count `spec` (refusing one over `max_jobs`) and, given a run folder, tally its jobs."""
    jobs = check_job_count(spec, max_jobs)
    tally = None
    if run_dir is not None and (run_dir / JOURNAL_FILE).is_file():
        with Journal.open_existing(run_dir) as journal:
            tally = tally_jobs(journal, expand_jobs(spec))
    price, source = known_price(spec)
    return Plan(
        spec, jobs, count_images(spec), estimate_text(spec, jobs), run_dir, tally, price, source
    )


def known_price(spec: SweepSpec) -> tuple[float | None, str | None]:
    """Credits per image: the spec's `run.credits_per_image`, else the one learned before
    from the API in ONEMIN_API_BASE (the user cache), else unknown."""
    if spec.run.credits_per_image is not None:
        return spec.run.credits_per_image, "spec"
    import os

    from sweeper.contract import API_BASE_ENV, DEFAULT_API_BASE
    from sweeper.user_cache import UserCache

    base = (os.environ.get(API_BASE_ENV, "").strip() or DEFAULT_API_BASE).rstrip("/")
    learned = UserCache().learned_price(base, spec.model)
    return (learned, "cache") if learned is not None else (None, None)


# A job's state, as what a run does with it. `submitted` outside a live run was in
# flight when its run died: it becomes unanswered when the next run starts.
TALLY_OF_STATE = {
    "succeeded": "done",
    "generated": "downloads",
    "planned": "new",
    "failed": "failed",
    "lost": "lost",
    "unanswered": "unanswered",
    "submitted": "unanswered",
}


def tally_jobs(journal: Journal, jobs: Iterable[Job]) -> JobTally:
    """Look up every job's state, a batch at a time, and count what a run would do."""
    counts = dict.fromkeys(TALLY_OF_STATE.values(), 0)
    iterator = iter(jobs)
    while batch := [job.job_id for job in itertools.islice(iterator, STATES_BATCH)]:
        states = journal.states_of(batch)
        for job_id in batch:
            counts[TALLY_OF_STATE[states.get(job_id, "planned")]] += 1
    return JobTally(**counts)


def estimate_text(spec: SweepSpec, jobs: int) -> str:
    """How long `jobs` requests take at the spec's rate and concurrency, in words."""
    rpm = spec.run.requests_per_minute
    concurrency = spec.run.concurrency
    by_latency = jobs * ASSUMED_LATENCY_S / concurrency
    if rpm == "auto":
        return (
            f"at least {_duration(by_latency)}: the rate is learned as the run goes "
            f"(assuming {ASSUMED_LATENCY_S:.0f} s per request, {concurrency} in flight)"
        )
    if rpm is None:
        return (
            f"about {_duration(by_latency)}: no rate cap, so bounded by the API's latency "
            f"(assuming {ASSUMED_LATENCY_S:.0f} s per request, {concurrency} in flight)"
        )
    by_rate = jobs * 60 / rpm
    return (
        f"at least {_duration(max(by_rate, by_latency))} at {rpm:g} requests/minute "
        f"(assuming {ASSUMED_LATENCY_S:.0f} s per request, {concurrency} in flight)"
    )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _shown(values: Any) -> list[Any]:
    shown = [_plain(v) for v in itertools.islice(values, SHOWN_VALUES)]
    if len(values) > SHOWN_VALUES:
        shown.append(f"... ({len(values):,} values)")
    return shown


def _plain(value: Any) -> Any:
    return getattr(value, "given", value)


def job_row(job: Job, spec: SweepSpec) -> dict[str, Any]:
    """One job as a plan lists it: index, job id, and its value of each varied parameter."""
    row: dict[str, Any] = {"index": job.index, "job_id": job.job_id}
    for name in spec.varied:
        row[name] = job.image.given if name == IMAGE else job.params[name]
    return row
