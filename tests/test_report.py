"""`sweeper report` on a real run: contact sheets, the gallery page and the A/B summary.

One small sweep (tests/study_run.py: prompt × seed × guidance, one refused job,
one excluded grid point) runs once against the simulator for the whole module;
tests that write a report of their own work on a copy of it.
"""

from __future__ import annotations

import math
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image
from study_run import EXCLUDED, FAILURE, GUIDANCES, JOBS, PROMPTS, SEEDS, run_study

from sweeper.cli import main
from sweeper.report.axis_choice import StudyAxes, choose_axes, varied_parameters
from sweeper.report.sheets import PADDING, PLACEHOLDER, write_sheets
from sweeper.report.sheets import _placeholder as placeholder
from sweeper.report.stats import summarise
from sweeper.report.thumbs import make_thumbnails

CELL = 128
ROWS = sorted(PROMPTS)  # axis values go in sorted order, not the spec's


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_study(tmp_path_factory.mktemp("study"))


@pytest.fixture(scope="module")
def report(study: Path) -> Path:
    """DIR/report/ as `sweeper report DIR` writes it with the default axes."""
    result = CliRunner().invoke(main, ["report", str(study)])
    assert result.exit_code == 0, result.output
    assert str(study / "report" / "index.html") in result.stdout
    return study / "report"


@pytest.fixture
def run_copy(study: Path, tmp_path: Path) -> Path:
    """A private copy of the study run, for tests that write into it."""
    return Path(shutil.copytree(study, tmp_path / "run", ignore=shutil.ignore_patterns("report")))


def manifest(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "manifest.parquet")


def report_cli(*args: str):
    return CliRunner().invoke(main, ["report", *args])


# --- contact sheets -------------------------------------------------------------------


def has_text(image: Image.Image) -> bool:
    """Dark pixels on the white sheet: something was written here."""
    return image.convert("L").getextrema()[0] < 100


def is_blank(image: Image.Image) -> bool:
    return image.convert("L").getextrema() == (255, 255)


def is_placeholder(tile: Image.Image) -> bool:
    """Mostly the placeholder grey, with light lettering on it."""
    colours = tile.getcolors(maxcolors=tile.width * tile.height)
    _, commonest = max(colours)
    return commonest == PLACEHOLDER and tile.convert("L").getextrema()[1] > 200


def draw_sheets(run_dir: Path, folder: Path, x: str | None = None, y: str | None = None):
    """Sheets of the chosen axes drawn at CELL pixels, with the manifest, axes and thumbnails."""
    frame = manifest(run_dir)
    thumbs = make_thumbnails(frame, run_dir, folder, CELL)
    x, y, z = choose_axes(frame, StudyAxes(varied_parameters(frame)), x, y)
    return frame, (x, y, z), thumbs, folder, write_sheets(frame, x, y, z, thumbs, folder, CELL)


@pytest.fixture(scope="module")
def sheets(study: Path, tmp_path_factory: pytest.TempPathFactory):
    """The sheets of the default axes."""
    return draw_sheets(study, tmp_path_factory.mktemp("sheets"))


def test_default_axes_are_the_two_with_most_values(sheets):
    _, axes, *_ = sheets
    # seed has 3 values; prompt and guidance tie at 2 and keep manifest column order.
    assert axes == ("seed", "prompt", ["guidance"])


def test_a_sheet_per_z_value_with_a_column_per_x_and_a_row_per_y(sheets):
    frame, _, thumbs, folder, drawn = sheets
    assert [s.title for s in drawn] == [f"guidance={g}" for g in GUIDANCES]
    for sheet, guidance in zip(drawn, GUIDANCES, strict=True):
        layout = sheet.layout
        # The excluded seed still gets its column: every sheet has the whole grid.
        assert (layout.columns, layout.rows) == (len(SEEDS), len(ROWS))
        with Image.open(folder / sheet.file) as image:
            assert image.size == layout.size
            assert image.width == layout.label_width + len(SEEDS) * (CELL + PADDING) + PADDING
            below_headers = layout.title_height + layout.header_height
            assert image.height == below_headers + len(ROWS) * (CELL + PADDING) + PADDING
            for column, seed in enumerate(SEEDS):
                for row, prompt in enumerate(ROWS):
                    left, top = layout.cell_origin(column, row)
                    tile = image.crop((left, top, left + CELL, top + CELL)).convert("RGB")
                    match = frame.query("seed == @seed and prompt == @prompt")
                    match = match[match["guidance"] == guidance]
                    if match.empty or match["status"].iloc[0] != "succeeded":
                        assert is_placeholder(tile), (seed, prompt, guidance)
                        continue
                    with Image.open(thumbs[match["file"].iloc[0]]) as thumb:
                        assert max(thumb.size) <= CELL
                        offset = ((CELL - thumb.width) // 2, (CELL - thumb.height) // 2)
                        box = (*offset, offset[0] + thumb.width, offset[1] + thumb.height)
                        assert tile.crop(box).tobytes() == thumb.convert("RGB").tobytes()


def test_failed_and_missing_cells_are_labelled_placeholders(sheets):
    frame, _, _, folder, drawn = sheets
    [failed] = frame[frame["status"] == "failed"].itertuples()
    assert FAILURE in failed.error

    def tile(guidance: float, seed: int, prompt: str) -> Image.Image:
        sheet = drawn[GUIDANCES.index(guidance)]
        left, top = sheet.layout.cell_origin(SEEDS.index(seed), ROWS.index(prompt))
        with Image.open(folder / sheet.file) as image:
            return image.crop((left, top, left + CELL, top + CELL)).convert("RGB")

    refused = tile(failed.guidance, failed.seed, failed.prompt)
    missing = [tile(EXCLUDED["guidance"], EXCLUDED["seed"], p) for p in PROMPTS]
    assert is_placeholder(refused)
    assert all(is_placeholder(t) for t in missing)
    # Labelled with what happened: the status and the server's message, not just "missing".
    assert refused.tobytes() == placeholder(CELL, f"failed: {failed.error}").tobytes()
    assert refused.tobytes() != missing[0].tobytes()
    assert missing[0].tobytes() == missing[1].tobytes()


def test_an_image_gone_from_disk_is_a_labelled_hole(run_copy, tmp_path):
    frame = manifest(run_copy)
    row = frame[frame["status"] == "succeeded"].iloc[0]
    (run_copy / row["file"]).unlink()
    label = f"image file missing: {row['file']}"

    _, _, thumbs, folder, drawn = draw_sheets(run_copy, tmp_path)
    assert row["file"] not in thumbs
    sheet = drawn[GUIDANCES.index(row["guidance"])]
    left, top = sheet.layout.cell_origin(SEEDS.index(row["seed"]), ROWS.index(row["prompt"]))
    with Image.open(folder / sheet.file) as image:
        tile = image.crop((left, top, left + CELL, top + CELL)).convert("RGB")
    assert tile.tobytes() == placeholder(CELL, label).tobytes()

    assert report_cli(str(run_copy), "--thumb", "64").exit_code == 0
    page = parse_page((run_copy / "report" / "index.html").read_text(encoding="utf-8"))
    holes = {page.params(c)["job_id"]: c.get("hole") for c in page.cards}
    assert holes[row["job_id"]] == label
    # No hole may show a null error as "nan".
    assert all("nan" not in hole for hole in holes.values() if hole)


@pytest.mark.parametrize("axes", [(None, None), ("prompt", "guidance")])
def test_every_label_is_written_distinct_and_inside_its_box(study, tmp_path, axes):
    # With prompts across the top, each header is far wider than its column and must wrap.
    _, _, _, folder, drawn = draw_sheets(study, tmp_path, *axes)
    titles = []
    for sheet in drawn:
        layout = sheet.layout
        with Image.open(folder / sheet.file) as image:
            title = image.crop((0, 0, image.width, layout.title_height))
            assert has_text(title)
            titles.append(title.tobytes())
            band = (layout.title_height, layout.title_height + layout.header_height)
            headers = []
            for column in range(layout.columns):
                left, _ = layout.cell_origin(column, 0)
                headers.append(image.crop((left, band[0], left + CELL, band[1])))
                gap = image.crop((left + CELL, band[0], left + CELL + PADDING, band[1]))
                assert is_blank(gap), f"header {column} runs into the next column"
            row_labels = []
            for row in range(layout.rows):
                left, top = layout.cell_origin(0, row)
                row_labels.append(image.crop((0, top, left, top + CELL)))
        for strips in (headers, row_labels):
            assert all(has_text(s) for s in strips)
            # Two labels that look the same would make the sheet unreadable.
            assert len({s.tobytes() for s in strips}) == len(strips)
    assert len(set(titles)) == len(drawn)


def test_the_cli_writes_one_sheet_file_per_z_value_all_the_same_size(report):
    files = sorted(report.glob("sheet-*.png"))
    assert [f.name for f in files] == [f"sheet-{n:03d}.png" for n in (1, 2)]
    sizes = set()
    for file in files:
        with Image.open(file) as image:
            sizes.add(image.size)
    assert len(sizes) == 1


def test_x_and_y_can_be_chosen_and_the_rest_become_z(run_copy):
    result = report_cli(str(run_copy), "--x", "guidance", "--y", "seed", "--thumb", "64")
    assert result.exit_code == 0, result.output
    frame = manifest(run_copy)
    x, y, z = choose_axes(frame, StudyAxes(varied_parameters(frame)), "guidance", "seed")
    assert (x, y, z) == ("guidance", "seed", ["prompt"])
    sheets = sorted((run_copy / "report").glob("sheet-*.png"))
    assert len(sheets) == len(PROMPTS)
    page = (run_copy / "report" / "index.html").read_text(encoding="utf-8")
    for prompt in PROMPTS:
        assert parse_page(page).has_text(f"prompt={prompt}")
    # The thumbnails follow --thumb.
    with Image.open(next((run_copy / "report" / "thumbs").iterdir())) as thumb:
        assert max(thumb.size) == 64


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--x", "colour"],
            "--x colour: not a varied axis of this run; varied: prompt, guidance, seed",
        ),
        (["--y", "steps"], "--y steps: not a varied axis"),
        (["--x", "seed", "--y", "seed"], "--x and --y are both seed"),
        (["--x", "output_index"], "--x output_index: not a varied axis"),
    ],
)
def test_a_wrong_axis_is_one_line_and_exit_2(run_copy, args, message):
    result = report_cli(str(run_copy), *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert isinstance(result.exception, SystemExit), result.exception  # not a crash
    assert not (run_copy / "report").exists()


def test_report_of_a_folder_that_is_not_a_run(tmp_path):
    result = report_cli(str(tmp_path))
    assert result.exit_code == 2
    assert "is this a sweeper run" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "report").exists()


def test_report_of_an_interrupted_run_reads_the_journal(run_copy):
    (run_copy / "manifest.parquet").unlink()
    (run_copy / "manifest.csv").unlink()
    result = report_cli(str(run_copy), "--thumb", "64")
    assert result.exit_code == 0, result.output
    page = parse_page((run_copy / "report" / "index.html").read_text(encoding="utf-8"))
    assert len(page.cards) == JOBS


# --- the page ---------------------------------------------------------------------------


class Page(HTMLParser):
    """Every tag with its attributes, the text, and each gallery card's table as a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.cards: list[dict[str, Any]] = []
        self.inline: list[str] = []  # contents of <style> and <script>
        self._card_depth = 0
        self._in: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        self.tags.append((tag, attributes))
        self._in.append(tag)
        if self._card_depth:
            card = self.cards[-1]
            self._card_depth += tag == "div"
            if tag == "a":
                card["links"].append(attributes["href"])
            if tag == "img":
                card["images"].append(attributes["src"])
        elif tag == "div" and "card" in attributes.get("class", "").split():
            self.cards.append({"attrs": attributes, "cells": [], "links": [], "images": []})
            self._card_depth = 1

    def handle_endtag(self, tag: str) -> None:
        if self._in and self._in[-1] == tag:
            self._in.pop()
        if self._card_depth and tag == "div":
            self._card_depth -= 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in and self._in[-1] in ("style", "script"):
            self.inline.append(data)
        if self._card_depth:
            card = self.cards[-1]
            if self._in and self._in[-1] == "td":
                card["cells"].append(data)
            elif self._in and self._in[-1] == "div":
                card["hole"] = card.get("hole", "") + data

    def has_text(self, wanted: str) -> bool:
        return any(wanted in piece for piece in self.text)

    def params(self, card: dict[str, Any]) -> dict[str, str]:
        cells = card["cells"]
        return dict(zip(cells[::2], cells[1::2], strict=True))


def parse_page(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


@pytest.fixture(scope="module")
def page(report: Path) -> Page:
    return parse_page((report / "index.html").read_text(encoding="utf-8"))


def test_the_gallery_has_a_card_for_every_manifest_row(study, report, page):
    frame = manifest(study)
    assert len(page.cards) == len(frame) == JOBS
    shown = {(page.params(c)["job_id"], page.params(c)["output_index"]): c for c in page.cards}
    for row in frame.itertuples():
        card = shown[(row.job_id, str(row.output_index))]
        params = page.params(card)
        # Full parameters, unescaped back to exactly what the manifest holds.
        assert params["prompt"] == row.prompt
        assert card["attrs"]["data-p0"] == row.prompt  # filters key axes by position
        assert (params["seed"], params["guidance"]) == (str(row.seed), str(row.guidance))
        if row.status == "succeeded":
            assert card["links"] == [f"../{row.file}"]
            assert (report / card["links"][0]).resolve() == (study / row.file).resolve()
            [thumb] = card["images"]
            assert (report / thumb).is_file()
        else:
            assert "failed" in card["attrs"]["class"].split()
            assert not card["images"]
            assert FAILURE in card["hole"]


def test_failures_are_listed_with_their_errors(study, page):
    failed = manifest(study).query("status == 'failed'")
    assert page.has_text("Failures (1)")
    for row in failed.itertuples():
        assert page.has_text(row.job_id)
        assert page.has_text(row.error)


def test_the_page_is_self_contained(report, page):
    assert not any(tag in ("link", "iframe", "object", "embed") for tag, _ in page.tags)
    references = [
        value
        for _, attributes in page.tags
        for name, value in attributes.items()
        if name in ("src", "href", "srcset", "poster", "data")
    ]
    assert references, "the page links nothing"
    for reference in references:
        assert "://" not in reference and not reference.startswith("//"), reference
        assert (report / reference).is_file(), f"{reference} is not in the run directory"
    scripts = [a for tag, a in page.tags if tag == "script"]
    assert scripts and not any("src" in a for a in scripts)
    inline = "".join(page.inline)
    assert "http" not in inline and "@import" not in inline and "url(" not in inline


def test_the_page_escapes_what_it_shows(report):
    html = (report / "index.html").read_text(encoding="utf-8")
    assert "<b>neon</b>" not in html
    assert "&lt;b&gt;neon&lt;/b&gt; &amp; &quot;rain&quot;" in html


def test_the_page_shows_the_run_and_the_spec(study, page):
    assert page.has_text("study")  # spec name
    spec_text = (study / "spec.yaml").read_text(encoding="utf-8")
    assert page.has_text(spec_text)
    assert page.has_text("images succeeded") and page.has_text("images failed")


# --- A/B summary ------------------------------------------------------------------------


def test_summary_csv_is_long_form_and_its_means_match_a_pandas_groupby(study, report):
    frame = manifest(study)
    done = frame[frame["status"] == "succeeded"]
    summary = pd.read_csv(report / "summary.csv", dtype={"value": str}, keep_default_na=False)
    assert list(summary.columns) == ["axis", "value", "measure", "n", "mean", "ci_low", "ci_high"]
    assert list(dict.fromkeys(summary["axis"])) == ["prompt", "guidance", "seed"]
    assert set(summary["measure"]) == {"latency_s", "bytes"}  # nothing scored yet
    for axis in ("prompt", "seed", "guidance"):
        got = summary[(summary["axis"] == axis) & (summary["measure"] == "bytes")]
        want = done.groupby(axis)["bytes"].agg(["size", "mean"])
        assert got["value"].tolist() == [str(v) for v in want.index]
        assert got["n"].tolist() == want["size"].tolist()
        for mean, expected in zip(got["mean"], want["mean"], strict=True):
            assert math.isclose(float(mean), expected, rel_tol=1e-9)
        latency = summary[(summary["axis"] == axis) & (summary["measure"] == "latency_s")]
        per_request = done.drop_duplicates("job_id").groupby(axis)["latency_s"].size()
        assert latency["n"].tolist() == per_request.tolist()  # latency counts requests
    pivot = pd.read_csv(report / "pivot.csv")
    assert list(pivot.columns) == ["x", "y", "measure", "n", "mean", "ci_low", "ci_high"]


def test_summary_values_keep_their_type(study):
    # Only numeric axes: an int seed must not come out as 1.0 next to a float guidance.
    summary = summarise(manifest(study), ["seed", "guidance"], ["bytes"])
    assert [str(v) for v in summary["value"]] == [*map(str, SEEDS), *map(str, GUIDANCES)]


def test_the_page_shows_the_summary_and_its_plots(study, report, page):
    for prompt in PROMPTS:
        assert page.has_text(prompt)
    assert page.has_text("latency_s") and page.has_text("ci_low")
    plots = sorted(p.name for p in (report / "plots").glob("*.png"))
    assert "seed--bytes.png" in plots and "pivot--bytes.png" in plots
    for name in plots:
        assert f"plots/{name}" in (report / "index.html").read_text(encoding="utf-8")
