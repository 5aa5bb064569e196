"""What the review shows next: an informative pair of images, or the next image to rate.

A pair differs in exactly one parameter (its axis) and matches on every other
parameter and on the output index. Axes take turns. Within the axis whose turn
it is, the pair of values compared least often so far goes first, then the pair
whose current Bradley–Terry strengths are closest (the vote whose outcome is
least certain), then the pair of images compared least often, then chance.
Skipped pairs and images go behind everything not skipped. Counts come from
every rater's votes, so several raters on one run spread their work.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np

from sweeper.contract import ALIASES
from sweeper.contract import PARAMETER_NAMES as PARAMETER_COLUMNS
from sweeper.errors import SpecError
from sweeper.ranking import axis_outcomes, fit_strengths
from sweeper.report.axis_choice import sort_key
from sweeper.votes import FAVOURITE

if TYPE_CHECKING:
    import pandas as pd

OUTPUT_INDEX = "output_index"


@dataclass(frozen=True)
class Pair:
    """Two images that differ in `axis` alone; a and b in the order they were found."""

    axis: str
    file_a: str
    file_b: str
    value_a: Any
    value_b: Any

    @property
    def files(self) -> frozenset[str]:
        return frozenset((self.file_a, self.file_b))

    @property
    def values(self) -> frozenset[Any]:
        return frozenset((sort_key(self.value_a), sort_key(self.value_b)))


def succeeded_images(manifest_frame: pd.DataFrame) -> pd.DataFrame:
    """One row per image that exists, indexed by `file`."""
    done = manifest_frame[
        (manifest_frame["status"] == "succeeded") & manifest_frame["file"].notna()
    ]
    return done.drop_duplicates("file").set_index("file", drop=False)


def varied_axes(images: pd.DataFrame) -> list[str]:
    return [c for c in PARAMETER_COLUMNS if c in images and images[c].nunique(dropna=False) > 1]


def review_axes(images: pd.DataFrame, axis: str | None) -> list[str]:
    """The axes to compare: `axis` alone (checked), or every varied one."""
    varied = varied_axes(images)
    if axis is None:
        return varied
    resolved = ALIASES.get(axis, axis)
    if resolved not in varied:
        choices = ", ".join(varied) or "none (this run varied nothing)"
        raise SpecError(f"--axis {axis}: not a varied parameter of this run; varied: {choices}")
    return [resolved]


def candidate_pairs(images: pd.DataFrame, axes: list[str]) -> dict[str, list[Pair]]:
    """Every pair of images that differs in exactly one of `axes`, by axis."""
    columns = [c for c in PARAMETER_COLUMNS if c in images]
    found: dict[str, list[Pair]] = {}
    for axis in axes:
        others = [c for c in columns if c != axis] + [OUTPUT_INDEX]
        pairs = []
        for _, group in images.groupby(others, dropna=False, sort=False):
            rows = list(group[["file", axis]].itertuples(index=False, name=None))
            pairs += [
                Pair(axis, file_a, file_b, value_a, value_b)
                for (file_a, value_a), (file_b, value_b) in combinations(rows, 2)
                if sort_key(value_a) != sort_key(value_b)
            ]
        if pairs:
            found[axis] = pairs
    return found


class PairChooser:
    """Picks the next pair to show, axis by axis in turn."""

    def __init__(self, manifest_frame: pd.DataFrame, axis: str | None, rng: random.Random) -> None:
        self._manifest = manifest_frame
        images = succeeded_images(manifest_frame)
        self._pairs = candidate_pairs(images, review_axes(images, axis))
        if not self._pairs:
            raise SpecError(
                "no two images of this run differ in exactly one parameter; "
                "nothing to compare in pairs (try --mode stars)"
            )
        self._rng = rng
        self._order = {axis: rng.sample(pairs, len(pairs)) for axis, pairs in self._pairs.items()}
        self._turn = 0
        self._skipped: Counter[frozenset[str]] = Counter()

    @property
    def axes(self) -> list[str]:
        return list(self._pairs)

    def pair_count(self) -> int:
        return sum(len(pairs) for pairs in self._pairs.values())

    def skip(self, pair: Pair) -> None:
        self._skipped[pair.files] += 1

    def pair_of(self, file_a: str, file_b: str) -> Pair | None:
        """The candidate pair made of these two images, if they are one."""
        wanted = frozenset((file_a, file_b))
        for pairs in self._pairs.values():
            for pair in pairs:
                if pair.files == wanted:
                    return pair
        return None

    def next_pair(self, votes_frame: pd.DataFrame) -> Pair:
        axis = self.axes[self._turn % len(self.axes)]
        self._turn += 1
        pairs_voted = _pairs_voted(votes_frame)
        values_voted, strengths = self._axis_state(axis, votes_frame)

        def informativeness(position: int) -> tuple:
            pair = self._order[axis][position]
            gap = abs(strengths.get(sort_key(pair.value_a), 0.0) - strengths.get(
                sort_key(pair.value_b), 0.0))  # fmt: skip
            return (
                self._skipped[pair.files],
                values_voted[pair.values],
                round(gap, 9),  # equal strengths must tie, whatever the float noise
                pairs_voted[pair.files],
                position,  # the shuffled order breaks the remaining ties
            )

        best = min(range(len(self._order[axis])), key=informativeness)
        return self._order[axis][best]

    def _axis_state(
        self, axis: str, votes_frame: pd.DataFrame
    ) -> tuple[Counter[frozenset[Any]], dict[Any, float]]:
        outcomes = axis_outcomes(self._manifest, votes_frame)
        outcomes = outcomes[outcomes["axis"] == axis]
        values_voted: Counter[frozenset[Any]] = Counter(
            frozenset((sort_key(a), sort_key(b)))
            for a, b in zip(outcomes["value_a"], outcomes["value_b"], strict=True)
        )
        if outcomes.empty:
            return values_voted, {}
        keys = sorted({sort_key(v) for v in (*outcomes["value_a"], *outcomes["value_b"])})
        position = {key: i for i, key in enumerate(keys)}
        strength = fit_strengths(
            len(keys),
            np.array([position[sort_key(v)] for v in outcomes["value_a"]], dtype=int),
            np.array([position[sort_key(v)] for v in outcomes["value_b"]], dtype=int),
            outcomes["score_a"].to_numpy(float),
        )
        return values_voted, dict(zip(keys, strength.tolist(), strict=True))


class ImageQueue:
    """Stars mode: images this rater has not rated first, the least-rated first, else chance."""

    def __init__(self, manifest_frame: pd.DataFrame, rng: random.Random) -> None:
        files = succeeded_images(manifest_frame)["file"].tolist()
        if not files:
            raise SpecError("this run has no images to rate yet")
        self._order = rng.sample(files, len(files))
        self._skipped: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._order)

    def skip(self, file: str) -> None:
        self._skipped[file] += 1

    def rated_by(self, votes_frame: pd.DataFrame, rater: str) -> set[str]:
        mine = votes_frame[(votes_frame["rater"] == rater) & _star_votes(votes_frame)]
        return set(mine["file"])

    def next_image(self, votes_frame: pd.DataFrame, rater: str) -> str:
        mine = self.rated_by(votes_frame, rater)
        everyone = Counter(votes_frame.loc[_star_votes(votes_frame), "file"])

        def priority(position: int) -> tuple:
            file = self._order[position]
            return (self._skipped[file], file in mine, everyone[file], position)

        return self._order[min(range(len(self._order)), key=priority)]


def _star_votes(votes_frame: pd.DataFrame) -> pd.Series:
    return (votes_frame["mode"] == "stars") & (votes_frame["choice"] != FAVOURITE)


def _pairs_voted(votes_frame: pd.DataFrame) -> Counter[frozenset[str]]:
    pairs = votes_frame[votes_frame["mode"] == "pairs"]
    return Counter(
        frozenset((a, b)) for a, b in zip(pairs["file"], pairs["other_file"], strict=True)
    )
