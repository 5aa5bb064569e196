"""`diff`: what changed between two runs of the same study, image by image, offline.

Images are matched by what made them, never by file name or job id: the job's
parameters (model, prompt, input image sha256, seed, guidance, ...) and the
output index. Each match is `identical` (same bytes), `pixel-identical` (same
pixels, other bytes), or `differs`, with the SSIM of the luminances and the
mean absolute pixel difference; an image only one run has is `only_a` or
`only_b`. The rows go to `diff.csv` as they are compared; `diff.html` shows A | B |
a heat-map of the difference for the worst HTML_ROWS differing images.

It streams: one pair of images is decoded at a time, and only the thumbnails
of the worst rows so far are kept (on disk), so memory and disk stay flat
however many images the runs hold.
"""

from __future__ import annotations

import csv
import heapq
import html
import logging
import math
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from sweeper.contract import PARAMS
from sweeper.errors import SpecError
from sweeper.run_folder import MANIFEST_PARQUET, require_output_folder, require_run_folder

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger("sweeper")

# What makes two images the same request's: every parameter, the input by its content.
MATCH_COLUMNS = ("model", *PARAMS, "image_sha256", "output_index")
DIFF_COLUMNS = ["job_id", "output_index", "status", "ssim", "mean_abs_diff"]
STATUSES = ("identical", "pixel-identical", "differs", "only_a", "only_b")
CSV_NAME = "diff.csv"
HTML_NAME = "diff.html"
THUMBS_FOLDER = "thumbs"
THUMB_PX = 256
HTML_ROWS = 200  # differing images shown on the page, worst first; all are in diff.csv
HTML_ONE_SIDED = 500  # images only one run has, listed on the page


@dataclass(frozen=True)
class DiffResult:
    """What `diff_runs` found and where it wrote it."""

    out_dir: Path
    csv_path: Path
    html_path: Path
    counts: dict[str, int]  # status -> rows
    differing: int  # rows that count as a difference: differs (under the threshold) or one-sided
    threshold: float | None
    summary: str

    @property
    def exit_code(self) -> int:
        """0 when nothing differs (pixel-identical counts as the same), 1 otherwise."""
        return 0 if self.differing == 0 else 1


@dataclass(frozen=True)
class Comparison:
    status: str
    ssim: float = math.nan
    mean_abs_diff: float = math.nan


@dataclass(order=True)
class _Shown:
    """A differing image on the page; ordered so the heap's top is the least different."""

    badness: float  # -ssim: the heap keeps the rows with the lowest SSIM
    job_id: str = field(compare=False)
    output_index: int = field(compare=False)
    comparison: Comparison = field(compare=False)
    thumbs: tuple[str, str, str] = field(compare=False)


def diff_runs(
    a_dir: Path, b_dir: Path, out: Path | None = None, threshold: float | None = None
) -> DiffResult:
    """Compare every image of run A with its match in run B; write diff.csv and diff.html.

    `threshold`: a differing pair whose SSIM is at least this counts as the same
    for the exit code and the page (its row still says `differs`).
    """
    a_dir, b_dir = Path(a_dir), Path(b_dir)
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        raise SpecError(f"--threshold {threshold}: an SSIM threshold is between -1 and 1")
    out_dir = Path(out) if out is not None else b_dir / f"diff-vs-{a_dir.resolve().name}"
    require_output_folder(out_dir, "--out")
    pairs = _matched_pairs(_present_images(a_dir, "A"), _present_images(b_dir, "B"))
    shutil.rmtree(out_dir / THUMBS_FOLDER, ignore_errors=True)  # an earlier diff's
    (out_dir / THUMBS_FOLDER).mkdir(parents=True)
    tally = _Tally(out_dir, threshold)
    csv_path = out_dir / CSV_NAME
    with csv_path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(DIFF_COLUMNS)
        for job_id, output_index, a_file, b_file in pairs:
            a_path = a_dir / a_file if a_file else None
            b_path = b_dir / b_file if b_file else None
            comparison = compare_files(a_path, b_path)
            if comparison is not None:
                writer.writerow([job_id, output_index, comparison.status, *_numbers(comparison)])
                tally.add(job_id, output_index, comparison, a_path, b_path)
    counts = {status: tally.counts.get(status, 0) for status in STATUSES}
    summary = _summary(counts, tally.differing, threshold, out_dir)
    html_path = out_dir / HTML_NAME
    page = _page(a_dir, b_dir, summary, sorted(tally.shown, reverse=True), tally.one_sided, counts)
    html_path.write_text(page, encoding="utf-8")
    return DiffResult(out_dir, csv_path, html_path, counts, tally.differing, threshold, summary)


@dataclass
class _Tally:
    """Counts by status, and what the page shows: the worst differing rows, one-sided rows."""

    out_dir: Path
    threshold: float | None
    counts: Counter[str] = field(default_factory=Counter)
    differing: int = 0
    shown: list[_Shown] = field(default_factory=list)  # a heap, least different on top
    one_sided: list[tuple[str, int, str]] = field(default_factory=list)

    def add(
        self,
        job_id: str,
        output_index: int,
        comparison: Comparison,
        a_path: Path | None,
        b_path: Path | None,
    ) -> None:
        self.counts[comparison.status] += 1
        if not _counts_as_difference(comparison, self.threshold):
            return
        self.differing += 1
        if comparison.status == "differs" and a_path and b_path:
            _keep_worst(self.shown, self.out_dir, job_id, output_index, comparison, a_path, b_path)
        elif len(self.one_sided) < HTML_ONE_SIDED:
            self.one_sided.append((job_id, output_index, comparison.status))


def compare_files(a_path: Path | None, b_path: Path | None) -> Comparison | None:
    """How B's image relates to A's; None or a missing file means that run lacks it.

    None when neither file can be read: there is nothing to compare.
    """
    a_data = _read(a_path)
    b_data = _read(b_path)
    if a_data is None or b_data is None:
        if a_data is None and b_data is None:
            return None
        return Comparison("only_b") if a_data is None else Comparison("only_a")
    if a_data == b_data:
        return Comparison("identical", 1.0, 0.0)
    a_pixels, b_pixels = _decode(a_data), _decode(b_data)
    if a_pixels.shape == b_pixels.shape and np.array_equal(a_pixels, b_pixels):
        return Comparison("pixel-identical", 1.0, 0.0)
    b_pixels = _resized_like(b_pixels, a_pixels)
    return Comparison("differs", _ssim(a_pixels, b_pixels), _mean_abs_diff(a_pixels, b_pixels))


def _present_images(run_dir: Path, side: str) -> pd.DataFrame:
    """The run's succeeded images: job_id, file and the match columns (as text)."""
    import pandas as pd

    require_run_folder(run_dir)
    path = run_dir / MANIFEST_PARQUET
    if not path.is_file():
        raise SpecError(f"{side} {run_dir}: no {MANIFEST_PARQUET}; is this a run folder?")
    columns = ["job_id", "status", "file", *MATCH_COLUMNS]
    try:
        frame = pd.read_parquet(path, columns=columns)
    except (KeyError, ValueError) as error:
        raise SpecError(f"{side} {run_dir}: {MANIFEST_PARQUET} lacks a column ({error})") from None
    frame = frame[(frame["status"] == "succeeded") & frame["file"].notna()].drop(columns="status")
    # Compared as text, so an int seed matches whether a manifest typed it int64 or Int64.
    for column in MATCH_COLUMNS:
        frame[column] = frame[column].astype("string")
    duplicated = frame.duplicated(list(MATCH_COLUMNS))
    if duplicated.any():
        logger.warning(
            "%s: %d images repeat another's parameters; using the first", run_dir, duplicated.sum()
        )
        frame = frame[~duplicated]
    return frame.reset_index(drop=True)


def _matched_pairs(
    a: pd.DataFrame, b: pd.DataFrame
) -> Iterator[tuple[str, int, str | None, str | None]]:
    """(job_id, output_index, A's file, B's file) in A's order, then B's images A lacks."""
    a = a.assign(_order_a=range(len(a)))
    b = b.assign(_order_b=range(len(b)))
    merged = a.merge(b, on=list(MATCH_COLUMNS), how="outer", suffixes=("_a", "_b"))
    merged = merged.sort_values(["_order_a", "_order_b"], na_position="last")
    for row in merged[["job_id_a", "job_id_b", "output_index", "file_a", "file_b"]].itertuples(
        index=False
    ):
        job_id = row.job_id_b if isinstance(row.job_id_b, str) else row.job_id_a
        yield job_id, int(row.output_index), _text(row.file_a), _text(row.file_b)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _read(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except FileNotFoundError:
        logger.warning("%s is in the manifest but not on disk; counted as absent", path)
        return None


def _decode(data: bytes) -> np.ndarray:
    with Image.open(BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def _resized_like(pixels: np.ndarray, reference: np.ndarray) -> np.ndarray:
    if pixels.shape == reference.shape:
        return pixels
    size = (reference.shape[1], reference.shape[0])
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS))


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.color import rgb2gray
    from skimage.metrics import structural_similarity

    if min(a.shape[:2]) < 7:  # SSIM's 7 px window does not fit
        return math.nan
    return float(structural_similarity(rgb2gray(a), rgb2gray(b), data_range=1.0))


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def _counts_as_difference(comparison: Comparison, threshold: float | None) -> bool:
    if comparison.status in ("identical", "pixel-identical"):
        return False
    if comparison.status == "differs" and threshold is not None:
        return not comparison.ssim >= threshold  # NaN (too small to tell) counts as differing
    return True


def _keep_worst(
    shown: list[_Shown],
    out_dir: Path,
    job_id: str,
    output_index: int,
    comparison: Comparison,
    a_path: Path,
    b_path: Path,
) -> None:
    """Keep this row's thumbnails if it is among the HTML_ROWS worst so far; drop the evicted."""
    badness = -comparison.ssim if not math.isnan(comparison.ssim) else math.inf
    if len(shown) >= HTML_ROWS and badness <= shown[0].badness:
        return
    thumbs = _write_thumbs(out_dir, f"{job_id}_{output_index}", a_path, b_path)
    entry = _Shown(badness, job_id, output_index, comparison, thumbs)
    if len(shown) < HTML_ROWS:
        heapq.heappush(shown, entry)
        return
    evicted = heapq.heapreplace(shown, entry)
    for name in evicted.thumbs:
        (out_dir / name).unlink(missing_ok=True)


def _write_thumbs(out_dir: Path, stem: str, a_path: Path, b_path: Path) -> tuple[str, str, str]:
    """A's and B's thumbnails and a heat-map of |A - B|; their paths relative to out_dir."""
    a_pixels = _decode(a_path.read_bytes())
    b_pixels = _resized_like(_decode(b_path.read_bytes()), a_pixels)
    names = tuple(f"{THUMBS_FOLDER}/{stem}_{part}.jpg" for part in ("a", "b", "diff"))
    heat = np.abs(a_pixels.astype(np.int16) - b_pixels.astype(np.int16)).mean(axis=2)
    for name, pixels in zip(names, (a_pixels, b_pixels, _heat_map(heat)), strict=True):
        image = Image.fromarray(pixels)
        image.thumbnail((THUMB_PX, THUMB_PX))
        image.save(out_dir / name, "JPEG", quality=85)
    return names  # type: ignore[return-value]


def _heat_map(difference: np.ndarray) -> np.ndarray:
    """|A - B| per pixel in the 'inferno' colours, scaled to this pair's largest difference."""
    from matplotlib import colormaps

    peak = float(difference.max()) or 1.0
    colours = colormaps["inferno"](difference / peak)
    return (colours[..., :3] * 255).astype(np.uint8)


def _numbers(comparison: Comparison) -> list[str]:
    return [
        "" if math.isnan(v) else f"{v:.6f}" for v in (comparison.ssim, comparison.mean_abs_diff)
    ]


def _summary(counts: dict[str, int], differing: int, threshold: float | None, out_dir: Path) -> str:
    matched = counts["identical"] + counts["pixel-identical"] + counts["differs"]
    differs = f"{counts['differs']} differ"
    if threshold is not None:
        under = differing - counts["only_a"] - counts["only_b"]
        differs += f" ({under} below SSIM {threshold:g})"
    verdict = "no differences" if differing == 0 else f"{differing} differences"
    return (
        f"{verdict}: {matched} images matched ({counts['identical']} identical, "
        f"{counts['pixel-identical']} pixel-identical, {differs}), "
        f"{counts['only_a']} only in A, {counts['only_b']} only in B; see {out_dir / HTML_NAME}"
    )


def _page(
    a_dir: Path,
    b_dir: Path,
    summary: str,
    shown: list[_Shown],
    one_sided: list[tuple[str, int, str]],
    counts: dict[str, int],
) -> str:
    escape = html.escape
    rows = []
    for entry in shown:
        c = entry.comparison
        cells = "".join(
            f'<td><img src="{escape(t)}" loading="lazy" alt=""></td>' for t in entry.thumbs
        )
        ssim = "n/a" if math.isnan(c.ssim) else f"{c.ssim:.4f}"
        rows.append(
            f"<tr><td>{escape(entry.job_id)}<br>output {entry.output_index}<br>SSIM {ssim}<br>"
            f"mean |Δ| {c.mean_abs_diff:.2f}</td>{cells}</tr>"
        )
    differing = counts["differs"]
    caption = (
        f"The {len(shown)} most different of {differing} differing images, worst first"
        if differing > len(shown)
        else "Differing images, worst first"
    )
    lonely = "".join(
        f"<li>{escape(job)} output {index}: {escape(status.replace('_', ' in '))}</li>"
        for job, index, status in one_sided
    )
    more = counts["only_a"] + counts["only_b"] - len(one_sided)
    if more > 0:
        lonely += f"<li>and {more} more: see {CSV_NAME}</li>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>diff: {escape(b_dir.name)} vs {escape(a_dir.name)}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 4px; vertical-align: top; }}
img {{ display: block; max-width: {THUMB_PX}px; }}
</style></head><body>
<h1>B vs A</h1>
<p>A: {escape(str(a_dir))}<br>B: {escape(str(b_dir))}</p>
<p>{escape(summary)}</p>
<p>Every image is in <a href="{CSV_NAME}">{CSV_NAME}</a>. The heat-map shows |A − B| per pixel,
scaled to that pair's largest difference.</p>
<h2>{escape(caption)}</h2>
<table><thead><tr><th>image</th><th>A</th><th>B</th><th>|A − B|</th></tr></thead>
<tbody>{"".join(rows) or '<tr><td colspan="4">none</td></tr>'}</tbody></table>
<h2>Images only one run has</h2>
<ul>{lonely or "<li>none</li>"}</ul>
</body></html>
"""
