"""`diff`: two runs compared image by image, matched on parameters, offline.

Run A is the offline zipped study (tests/zipped_study.py); run B is the same
spec run again from scratch against a second simulator, which renders the same
bytes. Tests that need B to differ edit copies of its images on disk.
"""

from __future__ import annotations

import csv
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image, ImageEnhance
from zipped_study import IMAGES, zipped_rerun, zipped_run

from sweeper import diff as diff_module
from sweeper.diff import DIFF_COLUMNS, diff_runs
from sweeper.errors import SpecError


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("diff")
    return zipped_run(folder, "a"), zipped_rerun(folder, "b")


@pytest.fixture
def run_a(runs: tuple[Path, Path]) -> Path:
    return runs[0]


@pytest.fixture
def run_b(runs: tuple[Path, Path], tmp_path: Path) -> Path:
    """A private copy of run B, to edit."""
    return Path(shutil.copytree(runs[1], tmp_path / "b", ignore=shutil.ignore_patterns("diff-*")))


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def manifest(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "manifest.parquet")


class ImageSources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs)["src"] or "")


def page_images(path: Path) -> list[str]:
    parser = ImageSources()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.sources


def brighten_every_image(run_dir: Path) -> None:
    for step, file in enumerate(manifest(run_dir)["file"]):
        path = run_dir / file
        with Image.open(path) as image:
            ImageEnhance.Brightness(image).enhance(1.1 + 0.05 * step).save(path)


def test_two_runs_of_the_same_spec_are_identical(run_a: Path, runs: tuple[Path, Path]) -> None:
    run_b = runs[1]
    result = diff_runs(run_a, run_b)

    assert result.exit_code == 0
    assert result.out_dir == run_b / "diff-vs-a"
    table = rows(result.csv_path)
    assert list(table[0]) == DIFF_COLUMNS
    assert len(table) == IMAGES
    assert {r["status"] for r in table} == {"identical"}
    assert {(r["job_id"], int(r["output_index"])) for r in table} == set(
        zip(manifest(run_b)["job_id"], manifest(run_b)["output_index"], strict=True)
    )
    assert result.counts["identical"] == IMAGES
    assert result.summary.startswith(f"no differences: {IMAGES} images matched ({IMAGES} identical")
    assert "\n" not in result.summary
    assert page_images(result.html_path) == []


def test_a_run_rendered_differently_differs_on_every_row(run_a: Path, run_b: Path) -> None:
    brighten_every_image(run_b)
    result = diff_runs(run_a, run_b, out=run_b / "out")

    assert result.exit_code == 1
    table = rows(run_b / "out" / "diff.csv")
    assert [r["status"] for r in table] == ["differs"] * IMAGES
    assert all(0 < float(r["ssim"]) < 1 and float(r["mean_abs_diff"]) > 1 for r in table)
    assert result.summary.startswith(f"{IMAGES} differences: {IMAGES} images matched")

    shown = page_images(result.html_path)
    assert len(shown) == 3 * IMAGES  # A | B | heat-map for every differing row
    assert all((result.out_dir / src).is_file() for src in shown)
    worst_first = sorted(table, key=lambda r: float(r["ssim"]))
    expected = [f"thumbs/{r['job_id']}_{r['output_index']}_a.jpg" for r in worst_first]
    assert shown[::3] == expected


def test_same_pixels_in_other_bytes_count_as_the_same(run_a: Path, run_b: Path) -> None:
    file = manifest(run_b)["file"].iloc[4]
    with Image.open(run_b / file) as image:
        image.save(run_b / file, compress_level=9)  # the run wrote it with level 1
    result = diff_runs(run_a, run_b)
    assert (result.counts["pixel-identical"], result.counts["identical"]) == (1, IMAGES - 1)
    assert result.exit_code == 0


def test_images_are_matched_by_parameters_not_by_file_name_or_job_id(
    run_a: Path, run_b: Path
) -> None:
    frame = manifest(run_b).sample(frac=1.0, random_state=3).reset_index(drop=True)
    for index in frame.index:  # new names and ids, new order
        renamed = f"images/renamed-{index}.png"
        (run_b / frame.loc[index, "file"]).rename(run_b / renamed)
        frame.loc[index, ["file", "job_id"]] = [renamed, f"other-{index}"]
    frame.to_parquet(run_b / "manifest.parquet")

    result = diff_runs(run_a, run_b)
    assert result.counts["identical"] == IMAGES
    assert {r["job_id"] for r in rows(result.csv_path)} == {f"other-{i}" for i in range(IMAGES)}


def test_an_image_with_other_parameters_is_only_on_one_side(run_a: Path, run_b: Path) -> None:
    frame = manifest(run_b)
    frame.loc[0, "seed"] = 99
    missing = frame.loc[5, "file"]
    frame.to_parquet(run_b / "manifest.parquet")
    (run_b / missing).unlink()  # listed by the manifest but gone from the disk

    result = diff_runs(run_a, run_b)
    assert (result.counts["only_a"], result.counts["only_b"]) == (2, 1)
    assert result.counts["identical"] == IMAGES - 2
    assert result.exit_code == 1
    statuses = [r["status"] for r in rows(result.csv_path)]
    assert statuses[-1] == "only_b"  # B's extra images come after A's
    assert "2 only in A, 1 only in B" in result.summary


def test_a_threshold_lets_a_near_identical_image_pass(run_a: Path, run_b: Path) -> None:
    file = manifest(run_b)["file"].iloc[2]
    with Image.open(run_b / file) as image:
        image.putpixel((10, 10), (0, 0, 0))
        image.save(run_b / file)

    strict = diff_runs(run_a, run_b)
    assert (strict.counts["differs"], strict.exit_code) == (1, 1)
    lenient = diff_runs(run_a, run_b, threshold=0.99)
    assert (lenient.counts["differs"], lenient.exit_code) == (1, 0)
    assert "(0 below SSIM 0.99)" in lenient.summary
    assert page_images(lenient.html_path) == []


def test_the_page_keeps_only_the_worst_rows(
    run_a: Path, run_b: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(diff_module, "HTML_ROWS", 3)
    brighten_every_image(run_b)
    result = diff_runs(run_a, run_b)

    worst = sorted(rows(result.csv_path), key=lambda r: float(r["ssim"]))[:3]
    shown = page_images(result.html_path)
    assert shown[::3] == [f"thumbs/{r['job_id']}_{r['output_index']}_a.jpg" for r in worst]
    on_disk = sorted(p.name for p in (result.out_dir / "thumbs").iterdir())
    assert on_disk == sorted(Path(src).name for src in shown)  # evicted thumbnails deleted
    assert f"The 3 most different of {IMAGES} differing images" in result.html_path.read_text()


def test_user_mistakes_are_spec_errors(run_a: Path, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"^B .*: no manifest.parquet; is this a run folder\?$"):
        diff_runs(run_a, tmp_path)
    with pytest.raises(SpecError, match=r"--threshold 2.0: an SSIM threshold is between -1 and 1"):
        diff_runs(run_a, run_a, threshold=2.0)
