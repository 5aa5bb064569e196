"""`sweeper reproduce` and `sweeper export` on a real run made against the simulator.

The simulator renders deterministically, so resending a job's recorded request
must give the same bytes; to see a difference measured, a test changes the kept
image on disk and checks the reported numbers against its own numpy arithmetic.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw
from study_run import KEY, run_study

from sweeper.cli import main
from sweeper.errors import AbortError
from sweeper.manifest import COLUMNS
from sweeper.reproduce import reproduce_job
from sweeper.retry import RetryPolicy
from sweeper.simulator import FaultRule, SimulatorConfig, SimulatorThread

FAST_RETRIES = RetryPolicy(max_attempts=4, base_delay_s=0.01, max_delay_s=0.05)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_study(tmp_path_factory.mktemp("study"))


@pytest.fixture
def run_copy(study: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(study, tmp_path / "run"))


def manifest(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "manifest.parquet")


def a_succeeded_row(run_dir: Path) -> Any:
    frame = manifest(run_dir)
    return next(frame[frame["status"] == "succeeded"].itertuples())


def reproduce(run_dir: Path, *args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, ["reproduce", str(run_dir), *args], env=env)


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


# --- reproduce --------------------------------------------------------------------------


def test_the_recorded_request_gives_the_same_bytes_again(run_copy):
    row = a_succeeded_row(run_copy)
    original = (run_copy / row.file).read_bytes()
    result = reproduce(run_copy, "--job", row.job_id, "--offline")
    assert result.exit_code == 0, result.output
    assert "byte-identical to the original" in result.stdout
    new = run_copy / "reproduce" / f"{row.job_id}_0.webp"
    assert str(new) in result.stdout
    assert new.read_bytes() == original
    assert (run_copy / row.file).read_bytes() == original  # the kept image is left alone


def test_reproduce_against_the_api_sends_the_recorded_request(run_copy):
    row = a_succeeded_row(run_copy)
    recorded = json.loads(row.request_json)["promptObject"]
    with SimulatorThread(SimulatorConfig()) as sim:
        # The real API keeps uploaded assets; this fresh server needs telling.
        sim.state.register_asset(row.asset_path, Path(row.image).read_bytes())
        env = {"ONEMIN_API_KEY": KEY, "ONEMIN_API_BASE": sim.base_url}
        result = reproduce(run_copy, "--job", row.job_id, env=env)
        produced = list(sim.state.produced.values())
        assert sim.state.counters["uploads"] == 0
    assert result.exit_code == 0, result.output
    assert "byte-identical" in result.stdout
    assert f"now sending to {sim.base_url}" in result.stderr
    assert KEY not in result.output
    [image] = produced
    assert {"imageUrl": row.asset_path, **image.params} == recorded


def test_reproduce_retries_what_the_contract_calls_transient(run_copy, monkeypatch, capsys):
    row = a_succeeded_row(run_copy)
    faults = [
        FaultRule("features", "html_502"),
        FaultRule("features", "status", status=503),
        FaultRule("storage", "truncated"),
    ]
    with SimulatorThread(SimulatorConfig(faults=faults)) as sim:
        sim.state.register_asset(row.asset_path, Path(row.image).read_bytes())
        monkeypatch.setenv("ONEMIN_API_KEY", KEY)
        monkeypatch.setenv("ONEMIN_API_BASE", sim.base_url)
        reproduction = reproduce_job(run_copy, row.job_id, offline=False, retry_policy=FAST_RETRIES)
        sent, downloads = sim.state.counters["features"], sim.state.counters["storage"]
    assert reproduction.exit_code == 0
    assert (sent, downloads) == (3, 2)
    assert "byte-identical" in reproduction.lines()[0]
    assert not list((run_copy / "tmp").glob("*"))


def test_a_refused_request_is_exit_3_not_the_exit_1_of_a_difference(run_copy):
    row = a_succeeded_row(run_copy)
    fault = FaultRule("features", "status", status=422, message="seed is not allowed")
    with SimulatorThread(SimulatorConfig(faults=[fault])) as sim:
        sim.state.register_asset(row.asset_path, Path(row.image).read_bytes())
        env = {"ONEMIN_API_KEY": KEY, "ONEMIN_API_BASE": sim.base_url}
        result = reproduce(run_copy, "--job", row.job_id, env=env)
    assert result.exit_code == 3, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not a crash
    [line] = result.stderr.strip().splitlines()[-1:]
    assert f"could not reproduce job {row.job_id}" in line and "seed is not allowed" in line


def test_a_request_that_keeps_failing_gives_up_with_exit_3(run_copy, monkeypatch):
    row = a_succeeded_row(run_copy)
    fault = FaultRule("features", "status", status=503, times=100)
    with SimulatorThread(SimulatorConfig(faults=[fault])) as sim:
        sim.state.register_asset(row.asset_path, Path(row.image).read_bytes())
        monkeypatch.setenv("ONEMIN_API_KEY", KEY)
        monkeypatch.setenv("ONEMIN_API_BASE", sim.base_url)
        with pytest.raises(AbortError, match="gave up after 4 attempts") as raised:
            reproduce_job(run_copy, row.job_id, offline=False, retry_policy=FAST_RETRIES)
        assert sim.state.counters["features"] == 4
    assert raised.value.exit_code == 3


def test_a_changed_image_is_measured(run_copy):
    row = a_succeeded_row(run_copy)
    kept = run_copy / row.file
    with Image.open(kept) as image:
        changed = image.convert("RGB")
    ImageDraw.Draw(changed).rectangle((10, 20, 109, 69), fill=(255, 0, 255))
    changed.save(kept, "WEBP", lossless=True)

    result = reproduce(run_copy, "--job", row.job_id, "--offline")

    assert result.exit_code == 1, result.output
    new = run_copy / "reproduce" / f"{row.job_id}_0.webp"
    difference = np.abs(pixels(kept) - pixels(new))
    mean = difference.mean()
    share = (difference.max(axis=2) > 0).mean()
    assert 0 < share <= 100 * 50 / (row.width * row.height)  # at most the painted box
    assert f"mean absolute pixel difference {mean:.3f} (of 255)" in result.stdout
    assert f"{share:.2%} of pixels differ" in result.stdout


def test_the_same_pixels_in_other_bytes_are_pixel_identical(run_copy):
    row = a_succeeded_row(run_copy)
    kept = run_copy / row.file
    before = pixels(kept)
    with Image.open(kept) as image:
        image.save(kept, "WEBP", lossless=True)
    assert np.array_equal(pixels(kept), before)

    result = reproduce(run_copy, "--job", row.job_id, "--offline")

    assert result.exit_code == 0, result.output
    assert "pixel-identical to the original (the encoded bytes differ)" in result.stdout


def test_an_image_of_another_size_differs(run_copy):
    row = a_succeeded_row(run_copy)
    kept = run_copy / row.file
    with Image.open(kept) as image:
        image.resize((row.width // 2, row.height // 2)).save(kept, "WEBP")

    result = reproduce(run_copy, "--job", row.job_id, "--offline")

    assert result.exit_code == 1, result.output
    expected = f"size {row.width}x{row.height} instead of {row.width // 2}x{row.height // 2}"
    assert expected in result.stdout


def failed_job(run_dir: Path) -> str:
    return manifest(run_dir).query("status == 'failed'")["job_id"].iloc[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (lambda run: ["--job", "0123456789abcdef"], "no job '0123456789abcdef'"),
        (lambda run: ["--job", failed_job(run)], "has no downloaded output 0"),
        (
            lambda run: ["--job", a_succeeded_row(run).job_id, "--output-index", "1"],
            "has no downloaded output 1",
        ),
    ],
    ids=["unknown job", "failed job", "no such output"],
)
def test_nothing_to_reproduce_is_one_line_and_exit_2(run_copy, args, message):
    result = reproduce(run_copy, *args(run_copy), "--offline")
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert isinstance(result.exception, SystemExit), result.exception  # not a crash
    assert not (run_copy / "reproduce").exists()


def test_reproduce_in_a_folder_that_is_not_a_run(tmp_path):
    result = reproduce(tmp_path, "--job", "0123456789abcdef", "--offline")
    assert result.exit_code == 2
    assert "is this a sweeper run folder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# --- export -----------------------------------------------------------------------------


def same(got: Any, want: Any) -> bool:
    """`got` read back from a text export means exactly `want` from the typed manifest."""
    if (
        want is None
        or want is pd.NA
        or want is pd.NaT
        or (isinstance(want, float) and math.isnan(want))
    ):
        return got in (None, "")
    if isinstance(want, pd.Timestamp):
        return pd.Timestamp(got) == want
    if isinstance(want, bool):
        return str(got) == str(want)
    if isinstance(want, float):
        return math.isclose(float(got), want, rel_tol=1e-12, abs_tol=1e-15)
    if isinstance(want, int):
        return int(got) == want
    return got == want  # text stays text: megapixels "0.25" must not become a number


def read_back(target: Path) -> list[dict[str, Any]]:
    """The exported rows, as plain values with no type guessing by a reader."""
    if target.suffix == ".jsonl":  # the request is nested there: compare it as its text
        rows = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
        for row in rows:
            request = row.pop("request")
            row["request_json"] = json.dumps(request, separators=(",", ":"), ensure_ascii=False)
        return [{name: row[name] for name in COLUMNS} for row in rows]
    text = pd.read_csv(target, dtype=str, keep_default_na=False)
    return text.to_dict("records")


def test_export_rebuilds_an_interrupted_runs_manifest_in_every_format(run_copy, tmp_path):
    written = manifest(run_copy)
    for name in ("manifest.csv", "manifest.parquet"):
        (run_copy / name).unlink()  # as if the run was killed before writing them
    for suffix in ("csv", "parquet", "jsonl"):
        target = tmp_path / "exports" / f"rows.{suffix}"
        result = CliRunner().invoke(main, ["export", str(run_copy), "--to", str(target)])
        assert result.exit_code == 0, result.output
        assert f"Wrote {len(written)} rows to {target}" in result.stdout
        if suffix == "parquet":
            pd.testing.assert_frame_equal(pd.read_parquet(target), written)
            continue
        rows = read_back(target)
        assert len(rows) == len(written)
        for got, want in zip(rows, written.to_dict("records"), strict=True):
            assert list(got) == COLUMNS
            for column in COLUMNS:
                assert same(got[column], want[column]), (suffix, column, got[column])
