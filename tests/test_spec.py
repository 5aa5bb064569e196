"""Every spec validation rule, through the CLI: one bad spec each, one line, exit 2."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from sweeper.cli import main
from sweeper.spec import load_spec

PHOTO = Path(__file__).resolve().parent.parent / "sweeps" / "inputs" / "astronaut.jpg"

GOOD = f"""
name: study
params:
  image: {PHOTO}
  prompt: depth
grid:
  seed: [1, 2]
"""


def plan_of(tmp_path: Path, text: str):
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent(text))
    return CliRunner().invoke(main, ["plan", str(spec)])


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not a crash
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("sweeper: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def with_image(text: str) -> str:
    return textwrap.dedent(text).replace("IMAGE", str(PHOTO))


BAD_SPECS = {
    "yaml syntax": ("name: [unclosed\n", ["line 2", "YAML syntax error"]),
    "not a mapping": ("- just\n- a list\n", ["must be a mapping"]),
    "unknown top-level key": (GOOD + "gird: {}\n", ["gird", "did you mean `grid`?"]),
    "unknown parameter": (
        with_image("name: s\nparams: {image: IMAGE, prompt: p, guidence: 3}\n"),
        ["params.guidence", "did you mean `guidance`?"],
    ),
    "wrong type": (
        with_image("name: s\nparams: {image: IMAGE, prompt: p, seed: abc}\n"),
        ["params.seed", "must be an integer", "'abc'"],
    ),
    "out of range in a list": (
        with_image("name: s\nparams: {image: IMAGE, prompt: p}\ngrid: {guidance: [3, 25]}\n"),
        ["grid.guidance[1]", "from 1 to 20", "25"],
    ),
    "bad megapixels": (
        with_image("name: s\nparams: {image: IMAGE, prompt: p, megapixels: '2'}\n"),
        ["params.megapixels", '"1", "0.25"'],
    ),
    "parameter in two places": (
        with_image("name: s\nparams: {image: IMAGE, prompt: p, seed: 1}\ngrid: {seed: [1]}\n"),
        ["grid.seed", "also set in params"],
    ),
    "alias in two places": (
        with_image(
            "name: s\nparams: {image: IMAGE, prompt: p, steps: 20}\n"
            "grid: {num_inference_steps: [1]}\n"
        ),
        ["num_inference_steps", "also set in params"],
    ),
    "empty axis": (
        with_image("name: s\nparams: {image: IMAGE, prompt: p}\ngrid: {seed: []}\n"),
        ["grid.seed", "empty axis"],
    ),
    "unequal zip": (
        with_image(
            "name: s\nparams: {image: IMAGE, prompt: p}\n"
            "zip: {seed: [1, 2], output_quality: [50]}\n"
        ),
        ["zip", "equal lengths", "seed: 2", "output_quality: 1"],
    ),
    "backwards range": (
        with_image(
            "name: s\nparams: {image: IMAGE, prompt: p}\n"
            "grid: {guidance: {start: 5, stop: 2, step: 1}}\n"
        ),
        ["grid.guidance", "backwards range"],
    ),
    "non-integer range for an integer": (
        with_image(
            "name: s\nparams: {image: IMAGE, prompt: p}\n"
            "grid: {seed: {start: 1, stop: 2, step: 0.5}}\n"
        ),
        ["grid.seed", "integer"],
    ),
    "range on a choice": (
        with_image(
            "name: s\nparams: {image: IMAGE, prompt: p}\n"
            "grid: {format: {start: 1, stop: 2, step: 1}}\n"
        ),
        ["grid.format", "numeric parameter"],
    ),
    "unsafe name": (GOOD.replace("name: study", "name: ../etc"), ["name", "safe folder name"]),
    "missing image file": (
        "name: s\nparams: {image: nowhere.jpg, prompt: p}\n",
        ["params.image", "no such file", "nowhere.jpg"],
    ),
    "image that is not an image": (
        "name: s\nparams: {image: spec.yaml, prompt: p}\n",
        ["params.image", "'spec.yaml' is not an image file"],
    ),
    "missing prompt": (with_image("name: s\nparams: {image: IMAGE}\n"), ["prompt", "required"]),
    "missing image": ("name: s\nparams: {prompt: p}\n", ["image", "required"]),
    "missing name": (with_image("params: {image: IMAGE, prompt: p}\n"), ["name", "missing"]),
    "run value out of range": (GOOD + "run: {concurrency: 0}\n", ["run.concurrency", "0"]),
    "unknown run key": (GOOD + "run: {concurency: 2}\n", ["run.concurency", "`concurrency`"]),
    "exclude names a fixed parameter": (
        GOOD + "exclude: [{prompt: p}]\n",
        ["exclude[0].prompt", "not a varied parameter"],
    ),
    "exclude value never present": (
        GOOD + "exclude: [{seed: 9}]\n",
        ["exclude[0].seed", "never occurs"],
    ),
    "sample n below 1": (GOOD + "sample: {n: 0}\n", ["sample.n", "0"]),
    "everything excluded": (GOOD + "exclude: [{seed: 1}, {seed: 2}]\n", ["every job"]),
    "unsupported model": (GOOD + "model: other/model\n", ["model", "unsupported"]),
    "list where a value belongs": (
        with_image("name: s\nparams: {image: IMAGE, prompt: p, seed: [1, 2]}\n"),
        ["params.seed", "single value", "under grid"],
    ),
    "duplicate zip row": (
        with_image(
            "name: s\nparams: {image: IMAGE, prompt: p}\n"
            "zip: {seed: [1, 1], output_quality: [50, 50]}\n"
        ),
        ["zip", "row 1 repeats row 0"],
    ),
    "duplicate axis value": (
        with_image("name: s\nparams: {image: IMAGE, prompt: p}\ngrid: {seed: [1, 1]}\n"),
        ["grid.seed[1]", "duplicate"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_a_bad_spec_is_one_line_naming_the_field(tmp_path, case):
    text, fragments = BAD_SPECS[case]
    assert_one_line_error(plan_of(tmp_path, text), "spec.yaml", *fragments)


def test_a_missing_spec_file_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["plan", str(tmp_path / "absent.yaml")])
    assert_one_line_error(result, "absent.yaml", "no such spec file")


def test_too_many_jobs_is_refused_instantly_with_a_hint(tmp_path):
    huge = GOOD.replace("seed: [1, 2]", "seed: {start: 0, stop: 999999, step: 1}")
    huge += "  guidance: {start: 1, stop: 20, step: 0.00001}\n"
    spec = tmp_path / "spec.yaml"
    spec.write_text(huge)
    result = CliRunner().invoke(main, ["plan", str(spec)])
    assert_one_line_error(result, "1,900,001,000,000 jobs", "--max-jobs", "sample")


def test_the_image_is_resolved_beside_the_spec_and_hashed(tmp_path):
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "in.jpg").write_bytes(PHOTO.read_bytes())
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: s\nparams: {image: inputs/in.jpg, prompt: p, quality: 90}\n")
    loaded = load_spec(spec)
    assert loaded.fixed["image"].local_path == (tmp_path / "inputs" / "in.jpg").resolve()
    assert loaded.fixed["output_quality"] == 90
    assert loaded.fixed["guidance"] == 3.5  # contract default filled in


def test_an_asset_path_is_taken_as_already_uploaded(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: s\nparams: {image: 'development/images/a.jpg', prompt: p}\n")
    image = load_spec(spec).fixed["image"]
    assert image.asset_path == "development/images/a.jpg" and not image.is_local


def test_unquoted_megapixels_become_the_strings_the_api_wants(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(GOOD + "  megapixels: [0.25, 1]\n")
    assert list(dict(load_spec(spec).axes)["megapixels"]) == ["0.25", "1"]


def test_an_image_over_the_upload_cap_is_refused_before_anything_is_sent(tmp_path):
    with (tmp_path / "huge.jpg").open("wb") as sparse:
        sparse.truncate(50 * 1024 * 1024 + 1)
    result = plan_of(tmp_path, "name: s\nparams: {image: huge.jpg, prompt: p}\n")
    assert_one_line_error(result, "params.image", "'huge.jpg' is 50.0 MB", "up to 50 MB")
