"""Expansion properties (hypothesis) and `sweeper plan` on the shipped specs."""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweeper.cli import main
from sweeper.expand import check_job_count, count_images, count_jobs, expand_jobs
from sweeper.spec import load_spec

REPO = Path(__file__).resolve().parent.parent
PHOTO = REPO / "sweeps" / "inputs" / "astronaut.jpg"
AXIS_VALUES = {
    "seed": st.lists(st.integers(0, 10_000), min_size=1, max_size=4, unique=True),
    "guidance": st.lists(
        st.sampled_from([1.0, 2.5, 3.5, 5.0, 7.5, 12.0]), min_size=1, max_size=3, unique=True
    ),
    "num_inference_steps": st.lists(st.integers(1, 100), min_size=1, max_size=3, unique=True),
    "megapixels": st.lists(st.sampled_from(["1", "0.25"]), min_size=1, max_size=2, unique=True),
}


@st.composite
def sweep_specs(draw):
    names = draw(st.lists(st.sampled_from(list(AXIS_VALUES)), min_size=1, max_size=4, unique=True))
    grid = {name: draw(AXIS_VALUES[name]) for name in names}
    zip_rows = draw(st.integers(0, 3))
    zipped = {}
    if zip_rows:
        zipped = {
            "output_quality": draw(
                st.lists(st.integers(1, 100), min_size=zip_rows, max_size=zip_rows, unique=True)
            ),
            "format": draw(
                st.lists(
                    st.sampled_from(["webp", "jpg", "png"]), min_size=zip_rows, max_size=zip_rows
                )
            ),
        }
    exclude = []
    for _ in range(draw(st.integers(0, 2))):
        keys = draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
        exclude.append({k: draw(st.sampled_from(grid[k])) for k in keys})
    spec = {
        "name": "prop",
        "params": {"image": str(PHOTO), "prompt": "p"},
        "grid": grid,
    }
    if zipped:
        spec["zip"] = zipped
    if exclude:
        spec["exclude"] = exclude
    return spec


def write(tmp_path: Path, spec: dict, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def brute_force(spec: dict) -> list[dict]:
    grid = spec["grid"]
    rows = [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]
    zipped = spec.get("zip")
    if zipped:
        zip_rows = [dict(zip(zipped, r, strict=True)) for r in zip(*zipped.values(), strict=True)]
        rows = [row | z for row in rows for z in zip_rows]
    return [
        row
        for row in rows
        if not any(all(row[k] == v for k, v in e.items()) for e in spec.get("exclude", []))
    ]


PROPERTY = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPERTY
@given(spec=sweep_specs())
def test_count_matches_the_product_minus_exclusions_and_the_expansion(tmp_path, spec):
    expected = brute_force(spec)
    loaded = load_spec(write(tmp_path, spec))
    jobs = list(expand_jobs(loaded))
    assert count_jobs(loaded) == len(jobs) == len(expected)
    if not spec.get("exclude") and not spec.get("zip"):
        assert len(jobs) == math.prod(len(v) for v in spec["grid"].values())
    for job, row in zip(jobs, expected, strict=True):
        for name, value in row.items():
            assert job.params[name] == value
    assert [job.index for job in jobs] == list(range(len(jobs)))


@PROPERTY
@given(spec=sweep_specs())
def test_ids_are_unique_and_do_not_depend_on_key_order(tmp_path, spec):
    ids = [job.job_id for job in expand_jobs(load_spec(write(tmp_path, spec)))]
    assert len(set(ids)) == len(ids)
    shuffled = dict(reversed(list(spec.items())))
    shuffled["params"] = dict(reversed(list(spec["params"].items())))
    again = {job.job_id for job in expand_jobs(load_spec(write(tmp_path, shuffled, "b.yaml")))}
    assert again == set(ids)


@PROPERTY
@given(spec=sweep_specs(), n=st.integers(1, 30), seed=st.integers(0, 1000))
def test_sample_is_a_reproducible_ordered_subset(tmp_path, spec, n, seed):
    full = [job.job_id for job in expand_jobs(load_spec(write(tmp_path, spec)))]
    spec["sample"] = {"n": n, "seed": seed}
    path = write(tmp_path, spec, "sampled.yaml")
    first = [job.job_id for job in expand_jobs(load_spec(path))]
    second = [job.job_id for job in expand_jobs(load_spec(path))]
    assert first == second
    assert len(first) == min(n, len(full)) == count_jobs(load_spec(path))
    positions = [full.index(job_id) for job_id in first]
    assert positions == sorted(positions)


@PROPERTY
@given(spec=sweep_specs())
def test_zip_values_move_together(tmp_path, spec):
    if "zip" not in spec:
        return
    pairs = set(zip(spec["zip"]["output_quality"], spec["zip"]["format"], strict=True))
    for job in expand_jobs(load_spec(write(tmp_path, spec))):
        assert (job.params["output_quality"], job.params["format"]) in pairs


def test_ranges_are_exact_and_inclusive(tmp_path):
    spec = {
        "name": "r",
        "params": {"image": str(PHOTO), "prompt": "p"},
        "grid": {"guidance": {"start": 1.1, "stop": 1.5, "step": 0.1}},
    }
    values = [job.params["guidance"] for job in expand_jobs(load_spec(write(tmp_path, spec)))]
    assert values == [1.1, 1.2, 1.3, 1.4, 1.5]


def test_a_trillion_job_grid_is_counted_and_refused_in_milliseconds(tmp_path):
    spec = {
        "name": "huge",
        "params": {"image": str(PHOTO), "prompt": "p"},
        "grid": {
            "seed": {"start": 0, "stop": 999_999, "step": 1},
            "guidance": {"start": 1, "stop": 20, "step": 0.000019},
        },
        "exclude": [{"guidance": 1.0}],
    }
    started = time.perf_counter()
    loaded = load_spec(write(tmp_path, spec))
    assert count_jobs(loaded) == 10**6 * 1_000_001 - 10**6  # minus the excluded guidance 1.0
    result = CliRunner().invoke(main, ["plan", str(write(tmp_path, spec))])
    assert result.exit_code == 2 and "--max-jobs" in result.stderr
    assert time.perf_counter() - started < 1.0


def test_plan_of_a_million_jobs_lists_the_first_without_expanding_all(tmp_path):
    spec = {
        "name": "million",
        "params": {"image": str(PHOTO), "prompt": "p"},
        "grid": {
            "seed": {"start": 1, "stop": 10_000, "step": 1},
            "guidance": {"start": 1, "stop": 10.9, "step": 0.1},
        },
    }
    path = write(tmp_path, spec)
    started = time.perf_counter()
    result = CliRunner().invoke(
        main, ["plan", str(path), "--max-jobs", "2000000", "--limit", "3", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["jobs"] == 1_000_000 and len(plan["listed_jobs"]) == 3
    assert time.perf_counter() - started < 5.0


def test_plan_of_the_demo_spec(tmp_path):
    result = CliRunner().invoke(main, ["plan", str(REPO / "sweeps" / "demo.yaml")])
    assert result.exit_code == 0
    assert "18 jobs, 18 images" in result.stdout
    assert "guidance: 2.5, 5.0, 7.5" in result.stdout


def test_plan_of_the_portrait_study_counts_by_hand():
    # 3 seeds x 3 guidance x 2 steps x 2 megapixels x 2 zip rows = 72;
    # excluded: megapixels 1 with 50 steps = 3 x 3 x 2 = 18 → 54; sample 20 → 20 jobs, 40 images.
    spec = load_spec(REPO / "sweeps" / "portrait-depth-study.yaml")
    assert check_job_count(spec, 100) == 20 and count_images(spec) == 40
    result = CliRunner().invoke(
        main, ["plan", str(REPO / "sweeps" / "portrait-depth-study.yaml"), "--format", "csv"]
    )
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("index,job_id,seed,guidance") and len(lines) == 21
