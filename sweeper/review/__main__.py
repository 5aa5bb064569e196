"""`python -m sweeper.review DIR ...`: the `sweeper review` command until the CLI mounts it."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import click

from sweeper.cli import RUN_DIR_ARG, reports_errors


@click.command("review")
@click.argument("run_dir", type=RUN_DIR_ARG)
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
@click.option("--rater", help="Your name in the votes table (default: your login name).")
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
    from sweeper.review import serve_review

    def announce(url: str) -> None:
        click.echo(f"Reviewing {run_dir} ({mode}); open {url}", err=False)
        click.echo("Press Ctrl-C to stop. Every vote is already saved.", err=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve_review(run_dir, mode, axis, rater, port, blind, not no_browser, announce=announce)
        )


if __name__ == "__main__":
    review()
