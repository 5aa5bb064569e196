"""`sweeper plan SPEC`: validate, count and show a sweep without sending anything.

Prints the job and image counts, each varied axis with its values, the first
jobs, and how long the run should take at the spec's rate limit. `--format csv`
and `json` print the same plan for scripts.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Any

from sweeper.contract import SHORT_NAMES
from sweeper.expand import check_job_count, count_images, expand_jobs, varied_axes
from sweeper.job import Job
from sweeper.spec import SweepSpec, load_spec

SHOWN_VALUES = 8
# Without a rate cap the API's own latency bounds a run; this is our working guess.
ASSUMED_LATENCY_S = 20.0


def print_plan(spec_path: Path, *, max_jobs: int, limit: int, fmt: str) -> None:
    spec = load_spec(spec_path)
    jobs_total = check_job_count(spec, max_jobs)
    plan = {
        "spec": str(spec_path),
        "name": spec.name,
        "jobs": jobs_total,
        "images": count_images(spec),
        "axes": {name: _shown(values) for name, values in varied_axes(spec).items()},
        "estimate": estimate_text(spec, jobs_total),
    }
    listed = list(itertools.islice(expand_jobs(spec), limit))
    rows = [job_row(job, spec) for job in listed]
    if fmt == "json":
        print(json.dumps(plan | {"fixed": _fixed(spec), "listed_jobs": rows}, indent=2))
    elif fmt == "csv":
        _print_csv(rows)
    else:
        _print_table(plan, rows, spec)


def estimate_text(spec: SweepSpec, jobs: int) -> str:
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


def _fixed(spec: SweepSpec) -> dict[str, Any]:
    return {name: _plain(value) for name, value in spec.fixed.items()}


def job_row(job: Job, spec: SweepSpec) -> dict[str, Any]:
    row: dict[str, Any] = {"index": job.index, "job_id": job.job_id}
    for name in spec.varied:
        row[name] = job.image.given if name == "image" else job.params[name]
    return row


def _print_csv(rows: list[dict[str, Any]]) -> None:
    import csv

    if not rows:
        return
    writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)


def _print_table(plan: dict[str, Any], rows: list[dict[str, Any]], spec: SweepSpec) -> None:
    from rich.box import SIMPLE_HEAD
    from rich.console import Console
    from rich.table import Table

    console = Console()
    counts = f"{_counted(plan['jobs'], 'job')}, {_counted(plan['images'], 'image')}"
    console.print(f"[bold]{plan['name']}[/]: {counts}{_sample_note(spec, plan['jobs'])}")
    for name, values in plan["axes"].items():
        console.print(f"  {name}: {', '.join(map(str, values))}")
    fixed = ", ".join(f"{k}={v}" for k, v in _fixed(spec).items() if k not in spec.varied)
    console.print(f"  fixed: {fixed}", soft_wrap=True)
    console.print(f"duration: {plan['estimate']}")
    if not rows:
        return
    table = Table(
        title=f"first {len(rows)} of {_counted(plan['jobs'], 'job')}",
        box=SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1, 0, 0),
    )
    for column in rows[0]:
        # A job id is what a user copies into `sweeper reproduce`: never cut it.
        width = len(str(rows[0][column])) if column == "job_id" else None
        table.add_column(SHORT_NAMES.get(column, column), no_wrap=True, min_width=width)
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)


def _counted(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _sample_note(spec: SweepSpec, jobs: int) -> str:
    if spec.sample is None or spec.sample.n <= jobs:
        return ""
    return f" (sample.n is {spec.sample.n:,}, more than there are: every job runs)"
