"""One review session: which images it may serve, what it showed, and the votes it records.

The browser never sees a file name or a parameter before it has voted: images
are named by random ids made for this session, pairs by ids the session issued,
and the parameters come back only in the answer to a vote (unless stars mode
shows them on purpose). Each vote is written to the journal before the answer
leaves, by `sweeper.votes`.
"""

from __future__ import annotations

import logging
import random
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import pandas as pd

from sweeper import votes
from sweeper.errors import SpecError
from sweeper.review.pairing import (
    ImageQueue,
    Pair,
    PairChooser,
    succeeded_images,
    varied_axes,
)

logger = logging.getLogger("sweeper")
MODES = ("pairs", "stars")
Mode = Literal["pairs", "stars"]
CHOICES = ("left", "right", "tie")


@dataclass(frozen=True)
class ReviewSettings:
    """What `sweeper review` was asked for."""

    run_dir: Path
    mode: Mode = "pairs"
    axis: str | None = None
    rater: str | None = None
    blind: bool = False


@dataclass(frozen=True)
class ShownPair:
    pair: Pair
    left: str
    right: str


class ReviewSession:
    """The state behind one review server; its methods are called one at a time."""

    def __init__(self, settings: ReviewSettings, rng: random.Random | None = None) -> None:
        if settings.mode not in MODES:
            raise SpecError(f"--mode {settings.mode}: choose pairs or stars")
        self.settings = settings
        self.run_dir = settings.run_dir
        self.rater = votes.check_rater(settings.rater)
        self._rng = rng or random.Random(secrets.randbits(64))
        manifest = _read_manifest(settings.run_dir)
        self._ids = _image_ids(settings.run_dir, succeeded_images(manifest)["file"].tolist())
        manifest = manifest[manifest["file"].isin(self._ids)]
        images = succeeded_images(manifest)
        self._files = {image_id: file for file, image_id in self._ids.items()}
        self._parameters = _parameters(images, varied_axes(images))
        self._shown: dict[str, ShownPair] = {}
        self._pairs: PairChooser | None = None
        self._queue: ImageQueue | None = None
        if settings.mode == "pairs":
            self._pairs = PairChooser(manifest, settings.axis, self._rng)
        else:
            self._queue = ImageQueue(manifest, self._rng)

    def image_path(self, image_id: str) -> Path | None:
        file = self._files.get(image_id)
        return self.run_dir / file if file is not None else None

    def next_item(self) -> dict[str, Any]:
        all_votes = votes.list_votes(self.run_dir)
        if self._pairs is not None:
            return self._show_pair(self._pairs.next_pair(all_votes), all_votes)
        assert self._queue is not None
        return self._show_image(self._queue.next_image(all_votes, self.rater), all_votes)

    def vote(self, body: dict[str, Any]) -> dict[str, Any]:
        if self._pairs is not None:
            shown = self._shown_pair(body)
            choice = body.get("choice")
            if choice not in CHOICES:
                raise SpecError(f"choice must be one of {', '.join(CHOICES)}")
            winner, loser = shown.left, shown.right
            if choice == "right":
                winner, loser = loser, winner
            vote_id = votes.record_preference(
                self.run_dir, winner, loser, tie=choice == "tie", rater=self.rater
            )
            reveal = {
                "axis": shown.pair.axis,
                "choice": choice,
                "left": self._parameters[shown.left],
                "right": self._parameters[shown.right],
            }
            return {"vote": vote_id, "reveal": reveal}
        file = self._image_file(body)
        if body.get("favourite") is True:
            vote_id = votes.record_favourite(self.run_dir, file, rater=self.rater)
        else:
            stars = cast(int, body.get("stars"))  # record_stars refuses anything but 1-5
            vote_id = votes.record_stars(self.run_dir, file, stars, rater=self.rater)
        return {"vote": vote_id, "reveal": {"parameters": self._parameters[file]}}

    def skip(self, body: dict[str, Any]) -> dict[str, Any]:
        if self._pairs is not None:
            self._pairs.skip(self._shown_pair(body).pair)
        else:
            assert self._queue is not None
            self._queue.skip(self._image_file(body))
        return {"skipped": True}

    def undo(self) -> dict[str, Any]:
        """Take back this rater's latest vote and show its images again."""
        undone = votes.undo_last(self.run_dir, rater=self.rater)
        if undone is None:
            return {"undone": None}
        all_votes = votes.list_votes(self.run_dir)
        if undone.mode == "pairs" and self._pairs is not None and undone.other_file is not None:
            again = self._pairs.pair_of(undone.file, undone.other_file)
            item = self._show_pair(again, all_votes) if again is not None else None
        elif undone.mode == "stars" and self._queue is not None:
            item = self._show_image(undone.file, all_votes)
        else:
            item = None
        return {"undone": {"mode": undone.mode, "choice": undone.choice}, "next": item}

    def _show_pair(self, pair: Pair, all_votes: pd.DataFrame) -> dict[str, Any]:
        left, right = (pair.file_a, pair.file_b)
        if self._rng.random() < 0.5:
            left, right = right, left
        pair_id = secrets.token_urlsafe(9)
        self._shown[pair_id] = ShownPair(pair, left, right)
        mine = all_votes[(all_votes["rater"] == self.rater) & (all_votes["mode"] == "pairs")]
        assert self._pairs is not None
        return {
            "mode": "pairs",
            "pair": pair_id,
            "left": self._image_url(left),
            "right": self._image_url(right),
            "progress": {"votes": len(mine), "pairs": self._pairs.pair_count()},
        }

    def _show_image(self, file: str, all_votes: pd.DataFrame) -> dict[str, Any]:
        assert self._queue is not None
        return {
            "mode": "stars",
            "image": self._ids[file],
            "src": self._image_url(file),
            "parameters": None if self.settings.blind else self._parameters[file],
            "progress": {
                "rated": len(self._queue.rated_by(all_votes, self.rater)),
                "images": len(self._queue),
            },
        }

    def _image_url(self, file: str) -> str:
        return f"/image/{self._ids[file]}"

    def _shown_pair(self, body: dict[str, Any]) -> ShownPair:
        """The pair the body names; it is answered once (a vote or a skip), then forgotten."""
        shown = self._shown.pop(str(body.get("pair")), None)
        if shown is None:
            raise SpecError("unknown pair; reload the page")
        return shown

    def _image_file(self, body: dict[str, Any]) -> str:
        file = self._files.get(str(body.get("image")))
        if file is None:
            raise SpecError("unknown image; reload the page")
        return file


def _read_manifest(run_dir: Path) -> pd.DataFrame:
    votes.manifest_files(run_dir)  # says in one line what is missing
    return pd.read_parquet(run_dir / votes.MANIFEST_FILE)


def _image_ids(run_dir: Path, files: list[str]) -> dict[str, str]:
    """A random id per image file inside the run folder; anything pointing outside is left out."""
    root = run_dir.resolve()
    ids = {}
    for file in files:
        path = (run_dir / file).resolve()
        if path.is_relative_to(root) and path.is_file():
            ids[file] = secrets.token_urlsafe(12)
        else:
            logger.warning("review: %s is not an image inside %s; not shown", file, run_dir)
    return ids


def _parameters(images: pd.DataFrame, axes: list[str]) -> dict[str, dict[str, Any]]:
    """The varied parameters of each image, as JSON-ready values."""
    # Column by column: a row of mixed columns would turn an int seed into a float.
    columns = {axis: [_plain(value) for value in images[axis].tolist()] for axis in axes}
    return {
        file: {axis: columns[axis][i] for axis in axes}
        for i, file in enumerate(images["file"].tolist())
    }


def _plain(value: Any) -> Any:
    if pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else value
