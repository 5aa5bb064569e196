"""What a run checks and settles in its folder before it sends anything.

In order: a folder holding results without a journal is refused (a run would
pay for every job again; `sweeper repair` rebuilds it); an input photo replaced
at the same path is refused unless the changes are accepted (it would silently
buy every job again); the inputs are kept in DIR/inputs/ and a spec that points
at them is frozen; requests a dead run left in flight become unanswered (they
may have been billed), and images missing or changed on disk are fetched again
or, their links dead, their jobs lost.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sweeper.errors import SpecError
from sweeper.journal import INPUT_FILE_META, Journal
from sweeper.run_folder import freeze_spec
from sweeper.spec import SweepSpec

logger = logging.getLogger("sweeper")


def refuse_results_without_journal(run_dir: Path) -> None:
    from sweeper.repair import results_without_journal

    problem = results_without_journal(run_dir)
    if problem is not None:
        raise SpecError(problem)


def refuse_changed_inputs(journal: Journal, spec: SweepSpec, *, accept: bool) -> None:
    """An input replaced at the same path: refuse (exit 2, nothing sent) unless accepted.

    Accepted, the changed photo's jobs are new jobs (a job's id names its input's
    content); the old ones stay in the journal, no longer in the spec.
    """
    from sweeper.inputs import local_images

    images = local_images(spec)
    changed = journal.changed_inputs(
        (given, ref.sha256) for given, ref in images.items() if ref.sha256
    )
    if not changed or accept:
        for given, jobs in changed:
            logger.warning("%s changed since %d of its jobs ran: they are run again", given, jobs)
        return
    named = ", ".join(f"{given} ({jobs} jobs done with the old one)" for given, jobs in changed)
    raise SpecError(
        f"{spec.source_path}: input changed at the same path: {named}; nothing was sent. "
        "Pass --accept-changes to run its jobs again as new jobs, or restore the file"
    )


def keep_inputs_and_spec(run_dir: Path, spec: SweepSpec, journal: Journal) -> None:
    """Copy every input image into DIR/inputs/, and freeze a spec that points at them.

    So the run folder is a record that travels: moved, packed or pulled elsewhere,
    `sweeper run DIR/spec.yaml --out DIR` runs as it stands, and finds every job done.
    """
    from sweeper.inputs import copy_inputs, local_images, rewrite_frozen_spec

    images = local_images(spec)
    files = [
        (ref.local_path, ref.sha256) for ref in images.values() if ref.local_path and ref.sha256
    ]
    kept = copy_inputs(run_dir, files)
    for sha256, relative in kept.items():
        journal.set_meta(f"{INPUT_FILE_META}{sha256}", relative)
    mapping = {given: kept[ref.sha256] for given, ref in images.items() if ref.sha256}
    freeze_spec(run_dir, rewrite_frozen_spec(spec.source_text, mapping))


def settle_what_the_last_run_left(journal: Journal, run_dir: Path) -> None:
    """Requests a dead run left in flight, and images gone from disk, before anything is sent."""
    from sweeper.integrity import find_damaged_images, reopen_damaged

    orphans = journal.settle_orphans()
    if orphans:
        one = orphans == 1
        logger.warning(
            "%d job%s sent before the last run stopped got no answer: %s may have been "
            "billed, so %s not sent again (pass --resend-unanswered to send %s)",
            orphans,
            "" if one else "s",
            "it" if one else "they",
            "it is" if one else "they are",
            "it" if one else "them",
        )
    damaged = find_damaged_images(journal, run_dir)
    if damaged:
        reopen_damaged(journal, damaged)
        fetchable = sum(image.fetchable for image in damaged)
        logger.warning(
            "%d image%s went missing or changed on disk: %d fetched again from a live link, "
            "%d lost (their links are dead)",
            len(damaged),
            "" if len(damaged) == 1 else "s",
            fetchable,
            len(damaged) - fetchable,
        )
