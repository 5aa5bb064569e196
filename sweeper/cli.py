"""The `sweeper` command line: each command parses options, calls the Python API, shows the result.

Heavy modules (pandas, aiohttp, Pillow, rich) are imported inside each command so
that `sweeper --help` starts fast. Exit codes: 0 all done, 1 some failed, 2 a
user mistake (nothing sent), 3 aborted or stopped early, 4 an internal error
(its traceback goes to crash.log).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, cast

import click

from sweeper import __version__
from sweeper.atomic import write_text_atomically
from sweeper.contract import API_KEY_ENV
from sweeper.errors import AbortError, InterruptedRun, SweeperError, is_environment_error

INTERNAL_ERROR_EXIT = 4
CRASH_LOG = "crash.log"
# The spec loader says in one line what is wrong with a folder, a FIFO or a missing file.
SPEC_ARG = click.Path(path_type=Path)
# A folder is checked by the command itself, which names the path and what to do in one
# line; click's own check would print a usage block for a file given as DIR.
RUN_DIR_ARG = click.Path(path_type=Path)
max_jobs_option = click.option(
    "--max-jobs",
    default=100_000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Refuse a spec that expands to more jobs than this (counted before expanding).",
)

offline_option = click.option(
    "--offline",
    is_flag=True,
    help="Send to the built-in simulator on loopback instead of the API; needs no API key.",
)


def _rate(value: str | None) -> float | str | None:
    """--rpm: `auto`, or a positive finite number of requests per minute."""
    if value is None or value == "auto":
        return value
    try:
        number = float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number or `auto`") from None
    if not number > 0:
        raise click.BadParameter("must be greater than 0, or `auto`")
    return _finite(number)


def _finite(value: float | None) -> float | None:
    import math

    if value is not None and not math.isfinite(value):
        raise click.BadParameter("must be a finite number")
    return value


def reports_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn every failure into one line on stderr and its exit code.

    A mistake or an abort is its own message; a bug writes its traceback to
    crash.log (in the run folder when there is one) and names that file.
    """

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except SweeperError as error:
            if error.result is not None:
                from sweeper.display import print_summary

                print_summary(error.result)
            click.echo(f"sweeper: error: {error}", err=True)
            sys.exit(error.exit_code)
        except KeyboardInterrupt:
            click.echo("\nsweeper: interrupted; finished work is kept", err=True)
            sys.exit(InterruptedRun.exit_code)
        except BrokenPipeError:
            _quiet_closed_pipe()
            sys.exit(0)
        except Exception as error:
            if is_environment_error(error):
                click.echo(
                    f"sweeper: error: {error}; what was committed is kept. "
                    "Fix this and run the same command again to go on",
                    err=True,
                )
                sys.exit(AbortError.exit_code)
            log = _write_crash_log(kwargs.get("run_dir") or kwargs.get("out_dir"))
            click.echo(
                f"sweeper: internal error: {type(error).__name__}: {_scrubbed(str(error))}; "
                f"the traceback is in {log}; please report it",
                err=True,
            )
            sys.exit(INTERNAL_ERROR_EXIT)

    return wrapper


def _write_crash_log(run_dir: Path | None) -> Path:
    """The current exception's full chained traceback, in DIR/crash.log or a temp file."""
    text = _scrubbed(traceback.format_exc())
    if run_dir is not None and Path(run_dir).is_dir():
        target = Path(run_dir) / CRASH_LOG
        try:
            write_text_atomically(target, text)
            return target
        except (OSError, SweeperError):  # a FIFO there would block a plain write
            pass
    handle, name = tempfile.mkstemp(prefix="sweeper-crash-", suffix=".log")
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.write(text)
    return Path(name)


def _scrubbed(text: str) -> str:
    key = os.environ.get(API_KEY_ENV, "").strip()
    return text.replace(key, "***") if key else text


def _quiet_closed_pipe() -> None:
    """The reader went away (`sweeper plan ... | head`): say nothing, flush nothing more."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sweeper")
def main() -> None:
    """Run parameter sweeps on the 1min.ai Flux Depth Dev image editor.

    Write a YAML sweep spec, check it with `sweeper plan`, run it with
    `sweeper run`, then look at the results with `sweeper report`.

    \b
    Example:
      sweeper plan sweeps/demo.yaml
      sweeper run sweeps/demo.yaml --offline
      sweeper report results/demo
    """
    import shlex

    from sweeper.display import configure_logging
    from sweeper.run_record import RUN_COMMAND

    configure_logging()
    RUN_COMMAND.set(shlex.join(["sweeper", *sys.argv[1:]]))


@main.command()
@click.argument("spec_path", metavar="SPEC", type=SPEC_ARG)
@click.option(
    "--out",
    "out_dir",
    type=RUN_DIR_ARG,
    default=None,
    help="A run folder that already holds results: also say which jobs are done or new.",
)
@max_jobs_option
@click.option(
    "--limit",
    default=20,
    show_default=True,
    type=click.IntRange(min=0),
    help="How many jobs to list.",
)
@click.option(
    "--format",
    "fmt",
    default="table",
    show_default=True,
    type=click.Choice(["table", "csv", "json"]),
    help="How to print the plan.",
)
@click.option("--json", "as_json", is_flag=True, help="The same as --format json.")
@reports_errors
def plan(
    spec_path: Path, out_dir: Path | None, max_jobs: int, limit: int, fmt: str, as_json: bool
) -> None:
    """Validate SPEC and show the jobs it expands to, without sending anything.

    Prints the number of jobs and images, each axis and its values, the first
    jobs, and how long the run should take at the spec's rate limit.

    \b
    Example:
      sweeper plan sweeps/demo.yaml --limit 5
    """
    import sweeper

    the_plan = sweeper.plan(spec_path, out_dir, max_jobs=max_jobs)
    if fmt == "json" or as_json:
        click.echo(json.dumps(the_plan.to_dict(limit), indent=2))
    elif fmt == "csv":
        _echo_csv(the_plan.first_jobs(limit))
    else:
        from sweeper.display import print_plan_table

        print_plan_table(the_plan, limit)


def _echo_csv(rows: list[dict[str, Any]]) -> None:
    import csv

    if rows:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@main.command()
@click.argument("spec_path", metavar="SPEC", type=SPEC_ARG)
@click.option(
    "--out",
    "out_dir",
    type=RUN_DIR_ARG,
    default=None,
    help="Run directory. Default: results/<spec name>/. Rerunning into it resumes.",
)
@offline_option
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=None,
    help="Requests in flight at most (overrides run.concurrency).",
)
@click.option(
    "--rpm",
    default=None,
    callback=lambda _ctx, _param, value: _rate(value),
    help="Requests per minute at most, or `auto` to learn the account's limit "
    "(overrides run.requests_per_minute).",
)
@click.option(
    "--max-credits",
    type=click.FloatRange(min=0),
    default=None,
    callback=lambda _ctx, _param, value: _finite(value),
    help="Never cause the server to bill more than this many credits (run.max_credits).",
)
@click.option(
    "--max-requests",
    type=click.IntRange(min=0),
    default=None,
    help="Never send more than this many edit requests (run.max_requests).",
)
@click.option(
    "--resend-unanswered",
    is_flag=True,
    help="Send again the jobs whose last request got no answer. Each may already have been "
    "billed, so this may pay twice (run.resend_unanswered).",
)
@click.option(
    "--resend-lost",
    is_flag=True,
    help="Buy again the jobs that were paid for but whose images could not be fetched "
    "(run.resend_lost).",
)
@click.option(
    "--accept-changes",
    is_flag=True,
    help="An input photo was replaced at the same path: run its jobs again as new jobs "
    "(without this the run refuses, and sends nothing).",
)
@click.option(
    "--notify",
    metavar="URL",
    default=None,
    envvar="SWEEPER_NOTIFY",
    help="POST the run's record (run.json, with a one-line `text`) to this URL at the end; "
    "Slack-compatible. Default: $SWEEPER_NOTIFY.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the run's record (run.json) on stdout, and nothing else there.",
)
@max_jobs_option
@reports_errors
def run(
    spec_path: Path,
    out_dir: Path | None,
    offline: bool,
    concurrency: int | None,
    rpm: float | str | None,
    max_credits: float | None,
    max_requests: int | None,
    resend_unanswered: bool,
    resend_lost: bool,
    accept_changes: bool,
    notify: str | None,
    as_json: bool,
    max_jobs: int,
) -> None:
    """Run every job of SPEC, download the images and write the manifest.

    The API key is read from ONEMIN_API_KEY and the API address from
    ONEMIN_API_BASE (default https://api.1min.ai). Running the same spec into
    the same directory again resumes: finished jobs are never sent twice.

    A request that got no answer may have been billed, and a job paid for whose
    images could not be fetched is lost: neither is sent again unless you ask
    (--resend-unanswered, --resend-lost). A rerun tries a lost job's live
    links again for free.

    With --max-credits or --max-requests the run never causes the server to
    bill past the cap: it stops sending when the next request could pass it
    and exits 3 (reason: budget). --rpm auto learns the account's rate and
    concurrency limits from its 429s.

    Exit codes: 0 all jobs succeeded, 1 some failed, were lost or got no answer,
    2 spec or usage error (nothing sent), 3 aborted or stopped (key rejected,
    out of credits, budget reached, interrupted), 4 internal error.

    \b
    Example:
      export ONEMIN_API_KEY=...
      sweeper run sweeps/demo.yaml --out results/demo-nightly
    """
    import sweeper
    from sweeper.display import print_summary

    result = sweeper.run(
        spec_path,
        out_dir,
        offline=offline,
        concurrency=concurrency,
        requests_per_minute=rpm,
        max_credits=max_credits,
        max_requests=max_requests,
        resend_unanswered=resend_unanswered or None,
        resend_lost=resend_lost or None,
        accept_changes=accept_changes or None,
        max_jobs=max_jobs,
        notify=notify,
    )
    print_summary(result)
    if as_json:
        click.echo(json.dumps(sweeper.open_run(result.run_dir).record, indent=2, sort_keys=True))
    else:
        click.echo(f"Images and manifest: {result.run_dir}/ (manifest.csv, manifest.parquet)")
    sys.exit(result.exit_code)


@main.command()
@click.argument("run_dir", metavar="DIR", type=RUN_DIR_ARG)
@click.option(
    "--verify",
    is_flag=True,
    help="Hash every image instead of checking sizes and times (slower, thorough).",
)
@click.option(
    "--spec",
    "spec_path",
    type=SPEC_ARG,
    default=None,
    help="Also count this spec's jobs: done, new, to send again, lost, unanswered "
    "(the same numbers `plan --out` and a run give).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON, nothing else.")
@reports_errors
def status(run_dir: Path, verify: bool, spec_path: Path | None, as_json: bool) -> None:
    """Show how far the run in DIR got: counts, failures by error, what a rerun sends.

    Also checks that every downloaded image is still on disk as recorded.
    Works on a read-only folder and while a run is going.

    \b
    Example:
      sweeper status results/demo --verify
    """
    import sweeper

    found = sweeper.open_run(run_dir).status(verify=verify, spec=spec_path)
    if as_json:
        click.echo(json.dumps(found.to_dict(), indent=2, sort_keys=True))
        return
    click.echo(f"run: {run_dir}")
    for line in found.lines():
        click.echo(line)


@main.command()
@click.argument("run_dir", metavar="DIR", type=RUN_DIR_ARG)
@reports_errors
def repair(run_dir: Path) -> None:
    """Rebuild the journal of DIR from its manifest.parquet, so nothing is bought again.

    For a folder whose journal.sqlite was deleted or emptied: finished jobs are
    done again, paid jobs whose image is gone are lost, and uploads are known.

    \b
    Example:
      sweeper repair results/demo
    """
    from sweeper.repair import repair_journal

    click.echo(repair_journal(run_dir).describe())


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--latency",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds each edit takes.",
)
@click.option(
    "--rpm-limit",
    default=None,
    type=click.FloatRange(min=0, min_open=True),
    help="Answer 429 past this many requests per minute (strict sliding window).",
)
@click.option(
    "--api-key",
    default=None,
    help="Only accept this key (default: accept any non-empty key).",
)
@click.option(
    "--credit-limit",
    default=None,
    type=click.IntRange(min=0),
    help="Answer 402 once this many images have been made.",
)
@click.option(
    "--max-concurrent",
    default=None,
    type=click.IntRange(min=1),
    help="Answer 429 past this many edits being processed at once.",
)
@click.option(
    "--credits-per-image",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="What each image costs, as usedCredit reports it.",
)
@click.option("--tiny-images", is_flag=True, help="Make 64x64 images (for throughput tests).")
@reports_errors
def serve(
    host: str,
    port: int,
    latency: float,
    rpm_limit: float | None,
    api_key: str | None,
    credit_limit: int | None,
    max_concurrent: int | None,
    credits_per_image: int,
    tiny_images: bool,
) -> None:
    """Serve the offline API simulator, which speaks the 1min.ai contract.

    Point sweeper at it with ONEMIN_API_BASE=http://HOST:PORT.

    \b
    Example:
      sweeper serve --port 8765 --latency 0.5
    """
    from sweeper.simulator import SimulatorConfig, serve_forever

    config = SimulatorConfig(
        latency_s=latency,
        rpm_limit=rpm_limit,
        api_key=api_key,
        credit_limit=credit_limit,
        max_concurrent=max_concurrent,
        credits_per_image=credits_per_image,
        tiny_images=tiny_images,
    )

    def ready(base_url: str) -> None:
        click.echo(f"Simulator listening on {base_url}")
        click.echo(f"Point sweeper at it: ONEMIN_API_BASE={base_url}", err=True)

    serve_forever(host, port, config, ready)


@main.command()
@click.argument("run_dir", metavar="DIR", type=RUN_DIR_ARG)
@click.option(
    "--x", "x_axis", default=None, help="Axis across the sheets' columns (a zip group or a member)."
)
@click.option("--y", "y_axis", default=None, help="Axis down the contact sheets' rows.")
@click.option(
    "--where",
    default=None,
    help="Only the images matching this pandas query, e.g. 'guidance>=3 and format==\"png\"'.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the report here instead of DIR/report/ (for a read-only run folder, say).",
)
@click.option(
    "--all",
    "include_all",
    is_flag=True,
    help="Also show jobs of earlier versions of the spec, no longer in it.",
)
@click.option(
    "--thumb",
    default=256,
    show_default=True,
    type=click.IntRange(32, 2048),
    help="Thumbnail size in pixels.",
)
@reports_errors
def report(
    run_dir: Path,
    x_axis: str | None,
    y_axis: str | None,
    where: str | None,
    out: Path | None,
    include_all: bool,
    thumb: int,
) -> None:
    """Write contact sheets, plots, rankings and a gallery for the run in DIR.

    Measures (from `sweeper score`, plus latency and bytes) are averaged per
    value of each axis with a bootstrap 95 % interval (summary.csv), and per
    --x/--y cell (pivot.csv); votes give ranking.csv. Zipped parameters form
    one axis.

    \b
    Example:
      sweeper report results/demo --x guidance --y seed --where 'steps == 20'
    """
    from sweeper.report import write_report

    index = write_report(
        run_dir,
        x_axis=x_axis,
        y_axis=y_axis,
        thumb=thumb,
        where=where,
        out=out,
        include_all=include_all,
    )
    click.echo(f"Report written to {index}")


@main.command()
@click.argument("run_dir", metavar="DIR", type=RUN_DIR_ARG)
@click.option("--job", "job_id", required=True, help="The job_id to run again.")
@click.option(
    "--output-index",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Which output of the job to compare.",
)
@offline_option
@reports_errors
def reproduce(run_dir: Path, job_id: str, output_index: int, offline: bool) -> None:
    """Resend the exact recorded request of one job and compare the new image.

    Exit 0 when the new image is identical, 1 when it differs, 3 when no new
    image could be made (the request kept failing, or the key was rejected).

    \b
    Example:
      sweeper reproduce results/demo --job 3f2a9c0d1e4b5a67 --offline
    """
    from sweeper.reproduce import reproduce_job

    reproduction = reproduce_job(run_dir, job_id, output_index=output_index, offline=offline)
    for line in reproduction.lines():
        click.echo(line)
    sys.exit(reproduction.exit_code)


@main.command()
@click.argument("run_dir", metavar="DIR", type=RUN_DIR_ARG)
@click.option(
    "--to",
    "target",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output file; .csv, .parquet or .jsonl.",
)
@reports_errors
def export(run_dir: Path, target: Path) -> None:
    """Rebuild the manifest of DIR from its journal and write it to a file.

    Useful when a run was interrupted before its manifest was written.

    \b
    Example:
      sweeper export results/demo --to demo.parquet
    """
    from sweeper.manifest import export_manifest

    rows = export_manifest(run_dir, target)
    click.echo(f"Wrote {rows} rows to {target}")


rater_option = click.option(
    "--rater", default=None, help="Your name in the votes table (default: your login name)."
)


@main.command()
@click.argument("run_dir", metavar="DIR", type=RUN_DIR_ARG)
@click.option(
    "--mode",
    type=click.Choice(["pairs", "stars"]),
    default="pairs",
    show_default=True,
    help="pairs: choose the better of two images that differ in one parameter; "
    "stars: rate one image at a time.",
)
@click.option(
    "--axis", help="Compare along this parameter only (default: each varied one in turn)."
)
@rater_option
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    help="Port on 127.0.0.1 (default: any free port).",
)
@click.option("--no-browser", is_flag=True, help="Print the address but do not open a browser.")
@click.option("--blind", is_flag=True, help="Stars mode: hide the parameters until you have voted.")
@reports_errors
def review(
    run_dir: Path,
    mode: str,
    axis: str | None,
    rater: str | None,
    port: int,
    no_browser: bool,
    blind: bool,
) -> None:
    """Vote on a run's images in your browser; every vote goes to DIR/journal.sqlite at once.

    Pairs mode shows two images that differ in exactly one parameter, sides at
    random and parameters hidden until you vote: keys ← / → choose, ↓ tie,
    space skip, z undo. Stars mode shows one image: keys 1-5, f favourite,
    space skip, z undo. The server listens on 127.0.0.1 only, and the address
    it prints carries a secret token that every request must present.

    \b
    Example:
      sweeper review results/demo --mode pairs --axis guidance --rater ana
    """
    import asyncio
    import contextlib

    from sweeper.review import serve_review
    from sweeper.votes import Mode

    def announce(url: str) -> None:
        click.echo(f"Reviewing {run_dir} ({mode}); open {url}")
        click.echo("Press Ctrl-C to stop. Every vote is already saved.", err=True)

    chosen = cast("Mode", mode)  # click.Choice allows nothing else
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve_review(
                run_dir, chosen, axis, rater, port, blind, not no_browser, announce=announce
            )
        )


@main.command()
@click.argument("run_dir", metavar="DIR", type=RUN_DIR_ARG)
@click.argument("file", metavar="FILE")
@click.option("--stars", type=int, default=None, help="A rating from 1 to 5.")
@click.option("--favourite", is_flag=True, help="Mark the image as a favourite.")
@rater_option
@reports_errors
def rate(run_dir: Path, file: str, stars: int | None, favourite: bool, rater: str | None) -> None:
    """Rate one image of DIR (FILE is its manifest `file` value or its path).

    \b
    Example:
      sweeper rate results/demo images/683f0a8fd07d3e97_0.webp --stars 4 --rater ana
    """
    from sweeper.errors import SpecError
    from sweeper.votes import record_favourite, record_stars

    if (stars is None) == (not favourite):
        raise SpecError("give either --stars N (1 to 5) or --favourite")
    if stars is not None:
        record_stars(run_dir, file, stars, rater)
    else:
        record_favourite(run_dir, file, rater)
    _rewrite_manifest(run_dir)
    click.echo(f"Recorded: {file} {'favourite' if favourite else f'{stars} stars'}")


@main.command()
@click.argument("run_dir", metavar="DIR", type=RUN_DIR_ARG)
@click.argument("winner", metavar="WINNER_FILE")
@click.argument("loser", metavar="LOSER_FILE")
@click.option("--tie", is_flag=True, help="The two images are as good as each other.")
@rater_option
@reports_errors
def prefer(run_dir: Path, winner: str, loser: str, tie: bool, rater: str | None) -> None:
    """Record that WINNER_FILE is better than LOSER_FILE (or, with --tie, as good).

    The vote counts for the ranking of the one parameter the two images differ
    in; images that differ in several parameters count for none.

    \b
    Example:
      sweeper prefer results/demo images/a_0.webp images/b_0.webp --rater ana
    """
    import sweeper
    from sweeper.ranking import pair_axis
    from sweeper.votes import record_preference

    record_preference(run_dir, winner, loser, tie=tie, rater=rater)
    axis = pair_axis(sweeper.open_run(run_dir).manifest(), winner, loser)
    _rewrite_manifest(run_dir)
    relation = "ties with" if tie else "beats"
    counts = (
        f"counts for the ranking of {axis}"
        if axis
        else "differs in several parameters, so it counts for no ranking"
    )
    click.echo(f"Recorded: {winner} {relation} {loser}; the vote {counts}")


@main.command()
@click.argument("run_dir", metavar="DIR", type=RUN_DIR_ARG)
@rater_option
@click.option("--undo", is_flag=True, help="Take back the latest vote (of --rater, if given).")
@reports_errors
def votes(run_dir: Path, rater: str | None, undo: bool) -> None:
    """List the votes cast on DIR's images, or take back the latest one.

    \b
    Example:
      sweeper votes results/demo --rater ana --undo
    """
    from sweeper.votes import list_votes, undo_last

    if undo:
        removed = undo_last(run_dir, rater)
        if removed is None:
            click.echo("no vote to undo")
            return
        _rewrite_manifest(run_dir)
        click.echo(
            f"Took back vote {removed.id}: {removed.mode} {removed.choice} on {removed.file}"
        )
        return
    frame = list_votes(run_dir, rater)
    if frame.empty:
        click.echo("no votes yet")
        return
    click.echo(frame.to_string(index=False))


def _rewrite_manifest(run_dir: Path) -> None:
    """The manifest carries the vote columns: bring it up to date with the journal."""
    from sweeper.journal import Journal
    from sweeper.manifest import write_manifest

    with Journal.open_existing(run_dir) as journal:
        write_manifest(journal, run_dir)


@main.command()
@click.argument("run_dir", metavar="DIR", type=RUN_DIR_ARG)
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The .tar.gz to write (default: DIR.tar.gz beside DIR).",
)
@reports_errors
def pack(run_dir: Path, out: Path | None) -> None:
    """Pack the run in DIR into one verified .tar.gz, even while it runs.

    The journal is copied consistently and each image is included only if it
    matches its recorded sha256; MANIFEST.sha256 inside lists every file.

    \b
    Example:
      sweeper pack results/demo -o demo-2026-12-01.tar.gz
    """
    from sweeper.pack import pack_run

    click.echo(f"Packed {run_dir} into {pack_run(run_dir, out)}")


@main.command()
@click.argument("archive", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("dest", metavar="DIR", type=RUN_DIR_ARG)
@reports_errors
def unpack(archive: Path, dest: Path) -> None:
    """Unpack a pack into DIR (new or empty), checking every file against its sha256.

    A pack with a missing, extra or changed file, or an unsafe path, is refused
    and nothing is written.

    \b
    Example:
      sweeper unpack demo-2026-12-01.tar.gz results/demo-copy
    """
    from sweeper.pack import unpack_run

    click.echo(f"Unpacked and verified {archive} into {unpack_run(archive, dest)}")


@main.command()
@click.argument("run_dir", metavar="DIR", type=RUN_DIR_ARG)
@click.argument("url", metavar="URL")
@reports_errors
def push(run_dir: Path, url: str) -> None:
    """Copy the run in DIR to object storage at URL (s3://bucket/path, file://, ...).

    Only files the remote lacks are sent; an interrupted push resumes where it
    stopped. Credentials come from the backend's usual environment and config
    (for S3: AWS_* variables, AWS_ENDPOINT_URL included) and are never shown.
    S3 needs the extra: pip install 'sweeper[s3]'.

    \b
    Example:
      sweeper push results/demo s3://team-sweeps/demo
    """
    from sweeper.display import count_progress
    from sweeper.remote import display_url, push_run

    with count_progress("push", in_bytes=True) as progress:
        result = push_run(run_dir, url, progress=lambda t: progress(t.bytes_done, t.bytes_total))
    click.echo(
        f"Pushed {run_dir} to {display_url(url)}: {len(result.sent)} files sent "
        f"({result.bytes_sent / 1e6:.1f} MB), {result.unchanged} already there, "
        f"{len(result.removed)} removed"
    )


@main.command()
@click.argument("url", metavar="URL")
@click.argument("dest", metavar="DIR", type=RUN_DIR_ARG)
@click.option("--force", is_flag=True, help="Pull into a folder that is not empty.")
@reports_errors
def pull(url: str, dest: Path, force: bool) -> None:
    """Copy a run pushed to URL into DIR, checking every file against its sha256.

    The result is a normal run folder: status, report, score, diff, and a rerun
    that sends nothing if the run was finished.

    \b
    Example:
      sweeper pull s3://team-sweeps/demo results/demo
    """
    from sweeper.display import count_progress
    from sweeper.remote import display_url, pull_run

    with count_progress("pull", in_bytes=True) as bar:
        result = pull_run(
            url, dest, force=force, progress=lambda t: bar(t.bytes_done, t.bytes_total)
        )
    click.echo(
        f"Pulled {display_url(url)} into {dest}: {result.files} files "
        f"({result.bytes / 1e6:.1f} MB), every one verified"
    )


@main.command()
@click.argument("run_dir", metavar="DIR", type=RUN_DIR_ARG)
@click.option(
    "--scorer",
    "scorers",
    multiple=True,
    metavar="MODULE:FUNCTION",
    help="A scorer to run as well: module:function (importable from the current folder or "
    "PYTHONPATH) or the name of an installed sweeper.scorers plugin. Repeatable.",
)
@click.option("--no-builtin", is_flag=True, help="Skip the four built-in measures.")
@reports_errors
def score(run_dir: Path, scorers: tuple[str, ...], no_builtin: bool) -> None:
    """Measure every image of DIR into DIR/scores.parquet, one row per image.

    Built in: structure_ssim (how much of the input's structure the edit kept),
    edge_f1, sharpness and colorfulness. Only images not yet scored by a
    scorer's current version are scored; a scorer failing on one image leaves
    NaN and its reason, and the run goes on. See docs/scoring.md.

    \b
    Example:
      sweeper score results/demo --scorer my_measures:red_mean
    """
    from sweeper.display import count_progress
    from sweeper.score.scoring import score_run

    with count_progress("score") as progress:
        result = score_run(run_dir, list(scorers), builtin=not no_builtin, progress=progress)
    click.echo(result.describe())
    for line in result.first_errors:
        click.echo(f"  {line}", err=True)
    sys.exit(1 if result.failures else 0)


@main.command()
@click.argument("a", metavar="A", type=RUN_DIR_ARG)
@click.argument("b", metavar="B", type=RUN_DIR_ARG)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write diff.csv and diff.html (default: B/diff-vs-<A's name>/).",
)
@click.option(
    "--threshold",
    type=float,
    default=None,
    metavar="SSIM",
    help="Count images at or above this SSIM as the same (the exit code and the page).",
)
@reports_errors
def diff(a: Path, b: Path, out: Path | None, threshold: float | None) -> None:
    """Compare the images of two runs, matched by their parameters, never by file name.

    Exit 0 when nothing differs (pixel-identical counts as the same), 1 when
    anything differs or is only in one run. Never contacts the API.

    \b
    Example:
      sweeper diff results/nightly-11-30 results/nightly-12-01
    """
    from sweeper.diff import diff_runs

    result = diff_runs(a, b, out=out, threshold=threshold)
    click.echo(result.summary)
    sys.exit(result.exit_code)


@main.command()
@click.argument("run_dir", metavar="DIR", type=RUN_DIR_ARG)
@click.option("--json", "as_json", is_flag=True, help="Every run's record, as a JSON list.")
@reports_errors
def history(run_dir: Path, as_json: bool) -> None:
    """List every run into DIR: when, how it ended, requests, credits and duration.

    Each line's whole record is DIR/runs/<n>.json.

    \b
    Example:
      sweeper history results/nightly
    """
    import sweeper

    runs = sweeper.open_run(run_dir).history()
    if as_json:
        click.echo(json.dumps([json.loads(r) for r in runs["record"]], indent=2))
        return
    if runs.empty:
        click.echo("no runs recorded yet")
        return
    shown = runs.drop(columns="record").fillna("")
    click.echo(shown.to_string(index=False))
