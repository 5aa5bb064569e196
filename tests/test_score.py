"""`score`: built-in measures, plugin scorers and the incremental DIR/scores.parquet.

Runs on the offline zipped study of issue 12 (tests/zipped_study.py: 12 images);
plugins are real modules written into the test's folder and imported by spec.
"""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter, ImageStat
from zipped_study import ASTRONAUT, IMAGES, make_street_photo, zipped_run

from sweeper.errors import SpecError
from sweeper.score.measures import colorfulness, edge_f1, sharpness, structure_ssim
from sweeper.score.plugins import Scorer, load_scorer, scorer_version
from sweeper.score.scoring import score_run
from sweeper.score.table import join_scores, measure_columns, read_scores

BUILTIN_COLUMNS = ["structure_ssim", "edge_f1", "sharpness", "colorfulness"]


def image_width(output: Image.Image, input: Image.Image, row: dict) -> float:
    return float(output.width)


# A cheap scorer handed over loaded, for tests about the table rather than the measures.
WIDTH = Scorer("image_width", "1", "tests:image_width", image_width)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return zipped_run(tmp_path)


@pytest.fixture
def plugin_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test's folder as the current folder; sys.path is restored afterwards."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return folder


def write_module(folder: Path, name: str, source: str) -> str:
    (folder / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    sys.modules.pop(name, None)
    return name


def manifest(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "manifest.parquet")


def red_mean_by_hand(path: Path) -> float:
    with Image.open(path) as image:
        return ImageStat.Stat(image.convert("RGB")).mean[0]


def test_plugin_values_on_the_zipped_study_match_a_hand_computation(
    run_dir: Path, plugin_folder: Path
) -> None:
    module = write_module(
        plugin_folder,
        "red_scores",
        """
        import numpy as np

        def red_mean(output, input, row):
            return float(np.asarray(output)[..., 0].mean())
        """,
    )
    result = score_run(run_dir, [f"{module}:red_mean"], workers=2)

    scores = read_scores(run_dir)
    assert len(scores) == IMAGES == result.images == result.scored
    assert sorted(scores["file"]) == sorted(manifest(run_dir)["file"])
    assert measure_columns(scores) == [*BUILTIN_COLUMNS, "red_mean"]
    for file, value in zip(scores["file"], scores["red_mean"], strict=True):
        assert value == pytest.approx(red_mean_by_hand(run_dir / file), abs=1e-9)
    assert scores["errors"].isna().all()
    assert result.failures == 0


def test_builtin_measures_are_in_range_on_every_image(run_dir: Path) -> None:
    score_run(run_dir, workers=1)
    scores = read_scores(run_dir)
    assert len(scores) == IMAGES
    assert scores["structure_ssim"].between(0.05, 0.99).all()  # edited, yet the same scene
    assert scores["edge_f1"].between(0.05, 1.0).all()
    assert (scores["sharpness"] > 0).all()
    assert (scores["colorfulness"] > 0).all()


def test_a_second_score_scores_nothing_and_a_new_version_scores_again(run_dir: Path) -> None:
    calls: list[str] = []

    def redness(output: Image.Image, input: Image.Image, row: dict) -> float:
        calls.append(row["file"])
        return 1.0

    first = score_run(
        run_dir, [WIDTH, Scorer("redness", "1", "t:r", redness)], builtin=False, workers=1
    )
    again = score_run(
        run_dir, [WIDTH, Scorer("redness", "1", "t:r", redness)], builtin=False, workers=1
    )
    assert (first.scored, again.scored, again.up_to_date) == (IMAGES, 0, IMAGES)
    assert len(calls) == IMAGES

    newer = score_run(
        run_dir, [WIDTH, Scorer("redness", "2", "t:r", redness)], builtin=False, workers=1
    )
    assert newer.scored == IMAGES
    assert len(calls) == 2 * IMAGES
    versions = read_scores(run_dir)["scorer_versions"].map(json.loads)
    assert all(v == {"image_width": "1", "redness": "2"} for v in versions)


def test_only_images_new_to_the_manifest_are_scored(run_dir: Path) -> None:
    full = manifest(run_dir)
    full.iloc[:5].to_parquet(run_dir / "manifest.parquet")  # as if the run had 5 images then
    assert score_run(run_dir, [WIDTH], builtin=False, workers=1).scored == 5
    before = read_scores(run_dir).set_index("file")

    full.to_parquet(run_dir / "manifest.parquet")
    result = score_run(run_dir, [WIDTH], builtin=False, workers=1)
    assert (result.scored, result.up_to_date, result.images) == (IMAGES - 5, 5, IMAGES)
    after = read_scores(run_dir).set_index("file")
    pd.testing.assert_frame_equal(after.loc[before.index], before)


def test_a_scorer_failing_on_one_image_leaves_nan_and_its_reason(
    run_dir: Path, plugin_folder: Path
) -> None:
    module = write_module(
        plugin_folder,
        "picky_scores",
        """
        def picky(output, input, row):
            if row["seed"] == 2:
                raise RuntimeError("seed 2 is\\nnot allowed")
            return 0.5

        def steady(output, input, row):
            return 1.0
        """,
    )
    result = score_run(run_dir, [f"{module}:picky", f"{module}:steady"], builtin=False, workers=2)
    scores = read_scores(run_dir).merge(manifest(run_dir)[["file", "seed"]], on="file")
    failed = scores[scores["seed"] == 2]
    assert result.failures == len(failed) == 4
    assert failed["picky"].isna().all()
    assert (failed["errors"] == "picky: RuntimeError: seed 2 is not allowed").all()
    assert (failed["steady"] == 1.0).all()  # the other scorer still ran on those images
    assert (scores.loc[scores["seed"] != 2, "picky"] == 0.5).all()

    # A rerun retries the failed images only.
    retried = score_run(run_dir, [f"{module}:picky", f"{module}:steady"], builtin=False, workers=1)
    assert (retried.scored, retried.failures) == (4, 4)


def test_a_dict_result_adds_one_column_per_key(run_dir: Path, plugin_folder: Path) -> None:
    module = write_module(
        plugin_folder,
        "channel_scores",
        """
        import numpy as np

        version = "3"

        def channels(output, input, row):
            pixels = np.asarray(output, dtype=float)
            return {"mean_red": pixels[..., 0].mean(), "mean_green": pixels[..., 1].mean()}

        def clashing(output, input, row):
            return {"seed": 1.0}
        """,
    )
    result = score_run(
        run_dir, [f"{module}:channels", f"{module}:clashing"], builtin=False, workers=1
    )
    scores = read_scores(run_dir)
    # A scorer that never succeeded still shows: one column of NaN, named after it.
    assert measure_columns(scores) == ["mean_red", "mean_green", "clashing"]
    assert scores["clashing"].isna().all()
    first = run_dir / scores["file"].iloc[0]
    assert scores["mean_red"].iloc[0] == pytest.approx(red_mean_by_hand(first))
    assert result.failures == IMAGES
    assert scores["errors"].str.startswith("clashing: column 'seed' is taken").all()


def test_the_input_copy_in_the_run_folder_comes_first(run_dir: Path) -> None:
    row = manifest(run_dir).iloc[0]
    sha, kept = row["image_sha256"], run_dir / row["input_file"]
    kept.unlink()  # it may be a hard link to the photo: do not write through it
    Image.new("RGB", (7, 5), "white").save(kept, "PNG")

    def input_width(output: Image.Image, input: Image.Image, row: dict) -> float:
        return float(input.width)

    score_run(run_dir, [Scorer("input_width", "1", "t:w", input_width)], builtin=False, workers=1)
    joined = join_scores(manifest(run_dir), read_scores(run_dir))
    widths = joined.groupby("image_sha256")["input_width"].unique()
    assert widths[sha].tolist() == [7.0]
    assert next(w for s, w in widths.items() if s != sha).tolist() == [320.0]  # street.png


def test_an_input_that_cannot_be_found_is_an_error_per_image(run_dir: Path) -> None:
    shutil.rmtree(run_dir / "inputs")
    with sqlite3.connect(run_dir / "journal.sqlite") as journal:
        journal.execute("UPDATE meta SET value = '\"/nowhere/gone.jpg\"' WHERE key LIKE 'input:%'")
    result = score_run(run_dir, workers=1)
    scores = read_scores(run_dir)
    assert result.failures == IMAGES * len(BUILTIN_COLUMNS)
    assert scores[BUILTIN_COLUMNS].isna().all().all()
    first_error = scores["errors"].iloc[0].splitlines()[0]
    assert first_error.startswith("structure_ssim: input image ")
    assert first_error.endswith("not found: not in inputs/ nor at /nowhere/gone.jpg")


def test_a_missing_output_image_is_an_error_not_an_abort(run_dir: Path) -> None:
    gone = manifest(run_dir)["file"].iloc[3]
    (run_dir / gone).unlink()
    result = score_run(run_dir, [WIDTH], builtin=False, workers=1)
    scores = read_scores(run_dir).set_index("file")
    assert result.failures == 1
    assert scores.loc[gone, "errors"] == f"image_width: output image {gone} is missing"
    assert scores.drop(gone)["image_width"].notna().all()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "no_such_module_xyz:fn",
            "--scorer no_such_module_xyz:fn: cannot import no_such_module_xyz",
        ),
        ("math:no_such_fn", "--scorer math:no_such_fn: math has no no_such_fn"),
        ("math:pi", "--scorer math:pi: pi is not a function"),
        (":fn", "--scorer :fn: expected MODULE:FUNCTION"),
        ("not_a_plugin", "--scorer not_a_plugin: not MODULE:FUNCTION and not an installed"),
    ],
)
def test_a_bad_scorer_spec_is_one_line(spec: str, message: str) -> None:
    with pytest.raises(SpecError) as raised:
        load_scorer(spec)
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_nothing_to_score_is_a_spec_error(run_dir: Path) -> None:
    with pytest.raises(SpecError, match="nothing to score"):
        score_run(run_dir, builtin=False)


def test_two_scorers_with_one_name_are_refused_before_scoring(run_dir: Path) -> None:
    twin = Scorer("sharpness", "1", "mine:sharpness", image_width)
    with pytest.raises(SpecError, match="are both named 'sharpness'; rename one"):
        score_run(run_dir, [twin])
    assert not (run_dir / "scores.parquet").exists()


def test_a_folder_without_a_manifest_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"no manifest.parquet; is this a run folder\?"):
        score_run(tmp_path)


def test_entry_point_plugins_load_by_name(plugin_folder: Path) -> None:
    write_module(
        plugin_folder, "lab_scores", "__version__ = '7'\ndef glow(o, i, r):\n    return 2.0\n"
    )
    dist = plugin_folder / "lab_scores-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lab-scores\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[sweeper.scorers]\nlab_glow = lab_scores:glow\n")
    sys.path.insert(0, str(plugin_folder))

    scorer = load_scorer("lab_glow")
    assert (scorer.name, scorer.version, scorer.spec) == ("lab_glow", "7", "lab_glow")
    assert scorer.function(None, None, {}) == 2.0


def test_a_scorer_version_comes_from_the_function_then_the_module() -> None:
    def plain(o: object, i: object, r: dict) -> float:
        return 0.0

    assert scorer_version(plain) == "1"  # this test module has no __version__
    plain.version = 4  # type: ignore[attr-defined]
    assert scorer_version(plain) == "4"
    assert scorer_version(structure_ssim) == "1"  # sweeper.score.measures.__version__


# The measures themselves, on images whose answer is known.


def test_ssim_and_edge_f1_are_one_for_the_input_itself_at_another_size(tmp_path: Path) -> None:
    photo = Image.open(ASTRONAUT)
    smaller = photo.resize((photo.width // 2, photo.height // 2), Image.Resampling.LANCZOS)
    assert structure_ssim(smaller, photo, {}) == pytest.approx(1.0, abs=0.02)
    assert edge_f1(smaller, photo, {}) == pytest.approx(1.0, abs=0.05)
    other_scene = Image.open(make_street_photo(tmp_path / "street.png"))
    assert structure_ssim(other_scene, photo, {}) < 0.3
    assert edge_f1(other_scene, photo, {}) < 0.3


def test_sharpness_drops_with_blur_and_is_zero_on_flat_grey() -> None:
    photo = Image.open(ASTRONAUT)
    blurred = photo.filter(ImageFilter.GaussianBlur(3))
    assert sharpness(blurred, photo, {}) < sharpness(photo, photo, {}) / 5
    grey = Image.new("RGB", (32, 32), (128, 128, 128))
    assert sharpness(grey, grey, {}) == 0.0


def test_colorfulness_matches_hasler_and_susstrunk_by_hand() -> None:
    image = Image.new("RGB", (2, 2), (255, 0, 0))
    image.paste((0, 0, 255), (0, 1, 2, 2))  # half red, half blue
    # rg: 255 | 0 -> mean 127.5, std 127.5; yb: 127.5 | -255 -> mean -63.75, std 191.25
    expected = math.hypot(127.5, 191.25) + 0.3 * math.hypot(127.5, 63.75)
    assert colorfulness(image, image, {}) == pytest.approx(expected)
    grey = Image.new("RGB", (4, 4), (90, 90, 90))
    assert colorfulness(grey, grey, {}) == 0.0
    assert np.isfinite(colorfulness(image.convert("L"), image, {}))


def test_a_worker_that_dies_fails_its_images_and_the_rest_are_scored(
    run_dir: Path, plugin_folder: Path
) -> None:
    module = write_module(
        plugin_folder,
        "crashing_scores",
        """
        import os

        def crashing(output, input, row):
            if row["seed"] == 3 and row["guidance"] == 5.0:
                os._exit(1)  # as a segfault or the OOM killer would
            return 1.0
        """,
    )
    result = score_run(run_dir, [f"{module}:crashing"], builtin=False, workers=2)
    scores = read_scores(run_dir).merge(manifest(run_dir)[["file", "seed", "guidance"]])
    crashed = (scores["seed"] == 3) & (scores["guidance"] == 5.0)
    assert (scores.loc[crashed, "errors"] == "crashing: the scoring process died").all()
    assert (
        scores["crashing"].notna() | (scores["errors"] == "crashing: the scoring process died")
    ).all()
    assert result.images == IMAGES and result.failures >= 2
    # A rerun tries the lost images again, and only those.
    again = score_run(run_dir, [f"{module}:crashing"], builtin=False, workers=2)
    assert again.scored == result.failures
