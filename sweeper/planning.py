"""What a spec would do, before anything is sent: counts, axes, first jobs, duration.

`make_plan` is `sweeper.plan`: it validates and counts without expanding the
whole sweep. Given a run folder that already holds results, it also says which
jobs are done, new, or would be sent again (`JobTally`, the same arithmetic
a run and `status` use).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
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
    """The spec's jobs by what a run into an existing folder would do with them."""

    done: int = 0
    downloads: int = 0  # paid for, images not all fetched: finished without paying
    new: int = 0  # never sent
    resend: int = 0  # failed, or sent and never answered: sent (and billed) again
    unanswered: int = 0  # of `resend`: sent and never answered, so maybe billed already

    @property
    def to_send(self) -> int:
        return self.new + self.resend


@dataclass(frozen=True)
class Plan:
    """A validated spec, counted: what `sweeper.plan` returns."""

    spec: SweepSpec
    jobs: int
    images: int
    estimate: str
    run_dir: Path | None = None
    tally: JobTally | None = None

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
            "fixed": {name: _plain(value) for name, value in self.spec.fixed.items()},
            "listed_jobs": self.first_jobs(limit),
        }
        if self.tally is not None:
            plan["run_dir"] = str(self.run_dir)
            plan["existing"] = {
                "done": self.tally.done,
                "downloads": self.tally.downloads,
                "new": self.tally.new,
                "resend": self.tally.resend,
                "unanswered": self.tally.unanswered,
            }
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
    return Plan(spec, jobs, count_images(spec), estimate_text(spec, jobs), run_dir, tally)


def tally_jobs(journal: Journal, jobs: Iterable[Job]) -> JobTally:
    """Look up every job's state, a batch at a time, and count what a run would do."""
    counts = dict.fromkeys(("done", "downloads", "new", "resend", "unanswered"), 0)
    iterator = iter(jobs)
    while batch := [job.job_id for job in itertools.islice(iterator, STATES_BATCH)]:
        states = journal.states_of(batch)
        for job_id in batch:
            state = states.get(job_id, "planned")
            if state == "succeeded":
                counts["done"] += 1
            elif state == "generated":
                counts["downloads"] += 1
            elif state == "planned":
                counts["new"] += 1
            else:
                counts["resend"] += 1
                counts["unanswered"] += state == "submitted"
    return JobTally(**counts)


def estimate_text(spec: SweepSpec, jobs: int) -> str:
    """How long `jobs` requests take at the spec's rate and concurrency, in words."""
    rpm = spec.run.requests_per_minute
    concurrency = spec.run.concurrency
    by_latency = jobs * ASSUMED_LATENCY_S / concurrency
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
