"""Hostile specs and input files: each is one clear SpecError line (exit 2), fast, never a hang.

Also: every problem of a spec at once with its line and column, hints for the usual
YAML mistakes, and a property-based fuzz (random YAML, mutated real specs) in which
every input gives a spec or a SpecError, never another exception. The fuzz runs 50
examples per property; `make fuzz` (HYPOTHESIS_PROFILE=long) runs thousands.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweeper.cli import main
from sweeper.errors import SpecError
from sweeper.expand import check_job_count, count_jobs, expand_jobs
from sweeper.limits import SpecLimits
from sweeper.spec import SweepSpec, load_spec
from sweeper.spec_source import parse_spec_yaml

REPO = Path(__file__).resolve().parent.parent
PHOTO = REPO / "sweeps" / "inputs" / "astronaut.jpg"
SHIPPED = [REPO / "sweeps" / "demo.yaml", REPO / "sweeps" / "portrait-depth-study.yaml"]
FAST_S = 1.0

GOOD = f"""\
name: study
params:
  image: {PHOTO}
  prompt: depth
grid:
  seed: [1, 2]
"""


def write(folder: Path, text: str | bytes, name: str = "spec.yaml") -> Path:
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


@contextlib.contextmanager
def under_a_second() -> Iterator[None]:
    started = time.perf_counter()
    yield
    assert time.perf_counter() - started < FAST_S


def refused(path: Path, *fragments: str, limits: SpecLimits | None = None) -> SpecError:
    """load_spec raises one SpecError line holding every fragment, in under a second."""
    with under_a_second(), pytest.raises(SpecError) as caught:
        load_spec(path, **({"limits": limits} if limits else {}))
    error = caught.value
    message = str(error)
    assert len(error.problems) == 1, error.problems
    assert message == error.problems[0] and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return error


def plan_exit(path: Path | str, *extra: str) -> Any:
    """`sweeper plan` in-process: exit 2, no exception other than SystemExit, one stderr line."""
    with under_a_second():
        result = CliRunner().invoke(main, ["plan", str(path), *extra])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result


def plan_subprocess(path: Path | str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sweeper", "plan", str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


def assert_clean_refusal(process: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert process.returncode == 2, process.stderr
    assert "Traceback" not in process.stderr
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sweeper: error: "), lines
    assert process.stdout == ""
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --- the spec file itself ------------------------------------------------------------------


def test_a_fifo_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    refused(fifo, "is a FIFO (named pipe), not a regular file")
    started = time.perf_counter()
    assert_clean_refusal(plan_subprocess(fifo, timeout=10), "FIFO")
    assert time.perf_counter() - started < 10


def test_a_device_is_refused():
    refused(Path("/dev/zero"), "/dev/zero", "is a device, not a regular file")
    plan_exit("/dev/zero")


def test_a_folder_is_refused(tmp_path):
    refused(tmp_path, "is a directory")
    # click's own check answers first at the CLI, with exit 2 and no traceback
    result = CliRunner().invoke(main, ["plan", str(tmp_path)])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)


def test_a_spec_over_one_megabyte_is_refused(tmp_path):
    path = write(tmp_path, GOOD + "#" * (1024 * 1024) + "\n")
    refused(path, "at most 1 MB")
    assert_clean_refusal(plan_subprocess(path), "at most 1 MB")


def test_a_spec_that_is_not_utf8_is_refused(tmp_path):
    path = write(tmp_path, GOOD.encode() + b"  prompt: caf\xe9\n")
    refused(path, "line 7", "not UTF-8", "0xe9")


def test_a_symlink_loop_as_spec_is_refused(tmp_path):
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    refused(tmp_path / "a.yaml", "symlink loop")


def test_duplicate_keys_are_refused_naming_both_lines(tmp_path):
    path = write(tmp_path, GOOD + "  guidance: [3]\n  seed: [4, 5]\n")
    refused(path, "line 8, column 3", "duplicate key `seed`", "first on line 6", "line 8")
    top = write(tmp_path, GOOD + "name: other\n", "top.yaml")
    refused(top, "duplicate key `name`", "first on line 1, again on line 7")


def billion_laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in itertools.pairwise("abcdefghij"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_a_billion_laughs_document_is_refused_without_expanding(tmp_path):
    path = write(tmp_path, billion_laughs())
    refused(path, "more than 100,000 values once its aliases are expanded")
    assert_clean_refusal(plan_subprocess(path), "aliases")


def test_a_recursive_alias_and_deep_nesting_are_refused(tmp_path):
    refused(write(tmp_path, "name: &x [*x]\n"), "alias *x has no anchor &x before it")
    for depth in (40, 5000):  # ours, then libyaml's own limit, with the same message
        deep = "name: " + "[" * depth + "]" * depth + "\n"
        refused(write(tmp_path, deep, f"{depth}.yaml"), "nests deeper than 32")


def test_aliases_within_the_cap_still_work(tmp_path):
    text = GOOD.replace("seed: [1, 2]", "seed: &seeds [1, 2]") + "exclude:\n  - {seed: 1}\n"
    assert count_jobs(load_spec(write(tmp_path, text))) == 1
    merged = (
        f"name: merged\nparams:\n  <<: {{image: {PHOTO}, prompt: a}}\n  prompt: b\n"
        "grid: {seed: [1]}\n"
    )
    assert load_spec(write(tmp_path, merged, "m.yaml")).fixed["prompt"] == "b"


def test_python_tags_are_refused(tmp_path):
    refused(write(tmp_path, "name: !!python/object/apply:os.system [ls]\n"), "YAML tag", "!!python")


# --- names, assets, prompts ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ('"a\\nb"', "contains a line break"),
        ("|\n  trailing\n", "contains a line break"),  # `$` let a final newline through
        ('"esc\\x1b[31m"', "contains a control character"),
        ("x" * 101, "a name is at most 100"),
    ],
)
def test_a_name_must_be_a_safe_single_line(tmp_path, name, fragment):
    path = write(tmp_path, GOOD.replace("name: study", f"name: {name}"))
    refused(path, "name:", fragment)


@pytest.mark.parametrize("image", ['"asset:"', '"asset:   "', "development/images/"])
def test_an_asset_must_name_something(tmp_path, image):
    path = write(tmp_path, f"name: s\nparams: {{image: {image}, prompt: p}}\n")
    refused(path, "params.image", "names no")


def test_a_prompt_over_the_cap_is_refused_in_one_short_line(tmp_path):
    path = write(tmp_path, GOOD.replace("prompt: depth", "prompt: " + "w" * 10_001))
    error = refused(path, "params.prompt", "10,001 characters", "at most 10,000")
    assert len(str(error)) < 400
    fine = write(tmp_path, GOOD.replace("prompt: depth", "prompt: " + "w" * 10_000), "ok.yaml")
    assert load_spec(fine).fixed["prompt"] == "w" * 10_000
    refused(fine, "at most 50", limits=SpecLimits(max_prompt_chars=50))


def test_a_prompt_may_hold_line_breaks_but_no_escape_sequences(tmp_path):
    multi = GOOD.replace("prompt: depth", "prompt: |\n    line one\n    \tline two")
    assert load_spec(write(tmp_path, multi)).fixed["prompt"] == "line one\n\tline two\n"
    escape = GOOD.replace("prompt: depth", 'prompt: "red \\e[31m text"')
    refused(write(tmp_path, escape, "esc.yaml"), "U+001B", "line breaks and tabs")


# --- numbers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("axis", "fragment"),
    [
        ("guidance: {start: 1, stop: 1e308, step: 1e-300}", "stop is out of range"),
        ("seed: {start: 0, stop: 1e400, step: 1}", "stop is out of range"),
        ("guidance: {start: 1, stop: 20, step: 0.000000000001}", "the step is too small"),
        ("guidance: {start: .nan, stop: 2, step: 1}", "start must be a finite number"),
        ("guidance: {start: 1, stop: .inf, step: 1}", "stop must be a finite number"),
        ("guidance: {start: 1, stop: 2, step: -.inf}", "step must be a finite number"),
        ("seed: {start: 0, stop: 100000000000000000000000000000000, step: 1}", "out of range"),
        ("guidance: [1, .nan]", "guidance[1]"),
        ("guidance: [.inf]", "guidance[0]"),
    ],
)
def test_hostile_numbers_in_a_grid_are_refused(tmp_path, axis, fragment):
    path = write(tmp_path, GOOD.replace("seed: [1, 2]", axis))
    refused(path, "grid.", fragment)
    plan_exit(path)


@pytest.mark.parametrize(
    "run",
    [
        "requests_per_minute: .nan",
        "requests_per_minute: .inf",
        "requests_per_minute: -1",
        "request_timeout_s: .inf",
        "request_timeout_s: 0",
        "request_timeout_s: 100000",
        "concurrency: 0",
        "concurrency: 100000",
        "max_attempts: 0",
    ],
)
def test_run_settings_out_of_range_are_refused(tmp_path, run):
    refused(write(tmp_path, GOOD + f"run: {{{run}}}\n"), "run." + run.split(":")[0])


def test_a_sample_of_a_huge_range_finds_its_jobs_without_walking_it(tmp_path):
    text = GOOD.replace(
        "seed: [1, 2]",
        "seed: {start: 0, stop: 4294967295, step: 1}\n"
        "  guidance: {start: 1, stop: 20, step: 0.001}",
    )
    path = write(tmp_path, text + "sample: {n: 20, seed: 1}\n")
    with under_a_second():
        spec = load_spec(path)
        assert check_job_count(spec, 100) == 20
        jobs = list(expand_jobs(spec))
    assert len(jobs) == 20 and len({job.job_id for job in jobs}) == 20
    seeds = [job.params["seed"] for job in jobs]
    assert seeds == sorted(seeds) and seeds[-1] > 10**8  # spread over the whole range
    refused(write(tmp_path, text + "sample: {n: 1000001}\n", "n.yaml"), "sample.n", "1000000")


# --- exclude ------------------------------------------------------------------------------


def exclude_spec(entries: list[dict[str, Any]]) -> str:
    grid = (
        "grid:\n  seed: {start: 0, stop: 999, step: 1}\n"
        "  guidance: {start: 1, stop: 10.99, step: 0.01}\n"
        "  steps: {start: 1, stop: 100, step: 1}\n  quality: {start: 1, stop: 100, step: 1}\n"
    )
    head = f"name: s\nparams: {{image: {PHOTO}, prompt: p}}\n{grid}"
    return head + yaml.safe_dump({"exclude": entries}, default_flow_style=None)


def test_a_thousand_exclude_entries_count_fast(tmp_path):
    entries = [{"seed": i // 10, "steps": 1 + i % 10} for i in range(1000)]
    with under_a_second():
        spec = load_spec(write(tmp_path, exclude_spec(entries)))
        assert count_jobs(spec) == 1000 * 1000 * 100 * 100 - 1000 * 1000 * 100
    singles = [{"seed": i} for i in range(24)] + [
        {"guidance": round(1 + i / 100, 2)} for i in range(24)
    ]
    with under_a_second():
        spec = load_spec(write(tmp_path, exclude_spec(singles), "b.yaml"))
        assert count_jobs(spec) == 976 * 976 * 100 * 100


def test_more_than_a_thousand_exclude_entries_are_refused(tmp_path):
    entries = [{"seed": i % 1000, "steps": 1 + i // 1000} for i in range(1001)]
    refused(write(tmp_path, exclude_spec(entries)), "exclude", "1,001 entries", "at most 1,000")


def test_intricate_exclude_entries_are_refused_not_counted_forever(tmp_path):
    entries = (
        [{"seed": i, "steps": 1 + i % 100, "quality": 1 + i % 3} for i in range(333)]
        + [{"guidance": round(1 + i / 100, 2), "steps": 1 + i % 2} for i in range(333)]
        + [{"seed": i, "guidance": round(1.01 + i / 100, 2)} for i in range(334)]
    )
    spec = load_spec(write(tmp_path, exclude_spec(entries)))
    with under_a_second(), pytest.raises(SpecError, match="too many different values"):
        count_jobs(spec)


# --- input images ---------------------------------------------------------------------


def png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0" * (width * 3 + 1) * 4)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def image_spec(folder: Path, image: str) -> Path:
    return write(folder, f"name: s\nparams: {{image: {image}, prompt: p}}\n")


def test_a_truncated_jpeg_is_refused(tmp_path):
    (tmp_path / "cut.jpg").write_bytes(PHOTO.read_bytes()[:-2000])
    refused(image_spec(tmp_path, "cut.jpg"), "params.image", "'cut.jpg'", "truncated")


@pytest.mark.parametrize(("width", "height"), [(12_000, 12_000), (60_000, 60_000)])
def test_a_decompression_bomb_is_refused_before_decoding(tmp_path, width, height):
    (tmp_path / "bomb.png").write_bytes(png_claiming(width, height))
    refused(image_spec(tmp_path, "bomb.png"), "decompression bomb", "100 megapixels")


def test_a_symlink_loop_and_a_fifo_as_image_are_refused(tmp_path):
    (tmp_path / "a.jpg").symlink_to(tmp_path / "b.jpg")
    (tmp_path / "b.jpg").symlink_to(tmp_path / "a.jpg")
    refused(image_spec(tmp_path, "a.jpg"), "params.image", "symlink loop")
    os.mkfifo(tmp_path / "pipe.jpg")
    refused(image_spec(tmp_path, "pipe.jpg"), "params.image", "not a regular file")


def test_an_image_that_changes_while_it_is_read_is_refused(tmp_path, monkeypatch):
    from sweeper import image_check

    image = tmp_path / "in.jpg"
    image.write_bytes(PHOTO.read_bytes())
    read_all = image_check._read_all

    def read_while_someone_appends(descriptor: int, limit: int) -> bytes:
        with image.open("ab") as writer:
            writer.write(b"more")
        return read_all(descriptor, limit)

    monkeypatch.setattr(image_check, "_read_all", read_while_someone_appends)
    refused(image_spec(tmp_path, "in.jpg"), "'in.jpg' changed while it was being read")


def test_the_image_hash_is_of_the_bytes_that_were_decoded(tmp_path):
    import hashlib

    spec = load_spec(image_spec(tmp_path, str(PHOTO)))
    assert spec.fixed["image"].sha256 == hashlib.sha256(PHOTO.read_bytes()).hexdigest()


# --- every problem at once, with places and hints -----------------------------------------

MANY_PROBLEMS = f"""\
name: study
params:
  image: {PHOTO}
  prompt: no
  seed: abc
grid:
  guidence: [1, 2]
  steps: [10, 200]
run:
  concurency: 3
"""


def test_an_unindented_section_gets_both_hints(tmp_path):
    path = write(tmp_path, GOOD.replace("  seed: [1, 2]", "seed: [1, 2]"))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    grid, seed = caught.value.problems
    assert "line 5, column 1: grid: must be a valid dictionary (got None)" in grid
    assert "nothing is indented under `grid:`" in grid
    assert "line 6, column 1: seed: unknown key `seed`; it is a parameter" in seed


def test_every_problem_is_reported_at_once_with_its_line_and_column(tmp_path):
    path = write(tmp_path, MANY_PROBLEMS)
    with pytest.raises(SpecError) as caught:
        load_spec(str(path))  # a str path works too
    problems = caught.value.problems
    assert len(problems) == 5, problems
    expected = [
        ("line 4, column 3", "params.prompt", 'write "no" in quotes'),
        ("line 5, column 3", "params.seed", "must be an integer"),
        ("line 7, column 3", "grid.guidence", "did you mean `guidance`?"),
        ("line 8, column 15", "grid.steps[1]", "from 1 to 100"),
        ("line 10, column 3", "run.concurency", "did you mean `concurrency`?"),
    ]
    for problem, fragments in zip(problems, expected, strict=True):
        assert problem.startswith(f"{path}: ")
        for fragment in fragments:
            assert fragment in problem, problem
    lines = str(caught.value).splitlines()
    assert lines[0] == f"{path}: 5 problems"
    assert lines[1].startswith("  line 4, column 3: params.prompt")


def test_the_cli_prints_every_problem_and_no_traceback(tmp_path):
    process = plan_subprocess(write(tmp_path, MANY_PROBLEMS))
    assert process.returncode == 2 and "Traceback" not in process.stderr
    lines = process.stderr.strip().splitlines()
    assert lines[0].startswith("sweeper: error: ") and lines[0].endswith("5 problems")
    assert len(lines) == 6


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (GOOD.replace("  prompt", "\tprompt"), ["line 4", "tabs", "indent with spaces"]),
        (GOOD.replace("  seed: [1, 2]", "seed:[1,2]"), ["space after the colon", "`seed: [1,2]`"]),
        (GOOD.replace("name: study", "name:study"), ["space after the colon", "`name: study`"]),
        (GOOD.replace("  prompt: depth", " prompt: depth"), ["check the indentation"]),
        (GOOD + "seed: [1, 2]\n", ["unknown key `seed`", "a parameter: put it under params"]),
        (GOOD.replace("prompt: depth", 'prompt: "unclosed'), ["quote opened on line 4"]),
        (GOOD.replace("[1, 2]", "[1, 2"), ["`[` opened on line 6 is never closed"]),
        (GOOD.replace("prompt: depth", "prompt: off"), ["YAML reads an unquoted off as false"]),
        (GOOD.replace("prompt: depth", "prompt: 2024-01-01"), ["as a date"]),
        (GOOD.replace("prompt: depth", "prompt: 42"), ['write "42" in quotes']),
        (GOOD.replace("name: study", "name: no"), ["name: must be a valid string", "as false"]),
        (GOOD + "  format: [jpg, yes]\n", ["grid.format[1]", "unquoted yes"]),
        (GOOD.replace("  seed", "  sede"), ["grid.sede", "did you mean `seed`?"]),
        (GOOD.replace("grid:", "gird:"), ["unknown key `gird`", "did you mean `grid`?"]),
        (GOOD + "a: 1\n---\nb: 2\n", ["one YAML document"]),
        ("", ["the spec must be a mapping", "empty"]),
    ],
)
def test_the_usual_yaml_mistakes_get_a_hint(tmp_path, text, fragments):
    refused(write(tmp_path, text), *fragments)


# --- job sets do not change ---------------------------------------------------------------


def legacy_positions(sizes: list[int], excluded: Any, sample: tuple[int, int] | None) -> list:
    """What expansion chose before: walk the grid, skip excluded, take the sampled numbers."""
    kept = [p for p in itertools.product(*(range(s) for s in sizes)) if not excluded(p)]
    if sample is None or sample[0] >= len(kept):
        return kept
    chosen = sorted(random.Random(sample[1]).sample(range(len(kept)), sample[0]))
    return [kept[i] for i in chosen]


@settings(max_examples=60, deadline=None)
@given(
    seeds=st.integers(1, 6),
    guidances=st.integers(1, 4),
    zip_rows=st.integers(0, 3),
    excluded_seeds=st.lists(st.integers(0, 5), max_size=3, unique=True),
    pairs=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3)), max_size=3, unique=True),
    sample=st.one_of(st.none(), st.tuples(st.integers(1, 30), st.integers(0, 99))),
)
def test_sampled_and_excluded_job_sets_are_those_of_before(
    seeds, guidances, zip_rows, excluded_seeds, pairs, sample
):
    grid = {"seed": list(range(seeds)), "guidance": [1.0 + g for g in range(guidances)]}
    spec: dict[str, Any] = {"name": "same", "params": {"image": str(PHOTO), "prompt": "p"}}
    spec["grid"] = grid
    if zip_rows:
        spec["zip"] = {"output_quality": list(range(1, zip_rows + 1))}
    exclude = [{"seed": s} for s in excluded_seeds if s < seeds]
    exclude += [{"seed": s, "guidance": 1.0 + g} for s, g in pairs if s < seeds and g < guidances]
    if exclude:
        spec["exclude"] = exclude
    if sample:
        spec["sample"] = {"n": sample[0], "seed": sample[1]}
    sizes = [seeds, guidances] + ([zip_rows] if zip_rows else [])

    def excluded(position: tuple[int, ...]) -> bool:
        values = {"seed": position[0], "guidance": 1.0 + position[1]}
        return any(all(values[k] == v for k, v in entry.items()) for entry in exclude)

    expected = legacy_positions(sizes, excluded, sample)
    with tempfile.TemporaryDirectory() as folder:
        loaded = load_spec(write(Path(folder), yaml.safe_dump(spec, sort_keys=False)))
        jobs = list(expand_jobs(loaded)) if expected else []
    got = [(j.params["seed"], j.params["guidance"]) for j in jobs]
    assert got == [(p[0], 1.0 + p[1]) for p in expected]


# Recorded on main before the new parser, counter and sampler (commit f8a9ab8).
SHIPPED_JOB_IDS = {
    "demo.yaml": (
        "683f0a8fd07d3e97 5568ba1f48e462f1 de87d731e8a96aff 94b2254cfc486e8b a2a44a91174f49ae "
        "32bee79a9cc945b5 d80523465e0b31a3 094091570d3cd75f 254dd623ac22f6c1 3e18d99309b5f159 "
        "22b8ec6506aa9704 7057b3cfa7fc2fcb b897c2eb0cb1fd00 d306b843279b0378 abaf41f3d7585308 "
        "6944dd809cbfae1d 6ea35dc6b0f573d3 56b9a0f1b0da21de"
    ),
    "portrait-depth-study.yaml": (
        "10b86879c9f99e98 03bc7b864bfa73db 001fe72cbed1e60c ee8d56d12caf1b78 918939eac3b04b68 "
        "42b0a27f8b1fc0df 3bb343ff795bd6f2 2eea1895056d177d 473f815a7129ce03 402b562aa49608b2 "
        "a61fed04d02db299 dc169c351bd95970 d240b24cb348b714 a9e7bf48e7d969a5 a06ca2a6288a90dc "
        "05518aceb01f204b 3cc02e9ad728a462 3524c4bdc9663e40 2f072a2f8b8f6783 f996de69db155d1d"
    ),
}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.name)
def test_the_shipped_specs_keep_their_job_ids(path):
    ids = [job.job_id for job in expand_jobs(load_spec(path))]
    assert ids == SHIPPED_JOB_IDS[path.name].split()


# --- fuzz ---------------------------------------------------------------------------------

LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
FUZZ = settings(
    max_examples=3000 if LONG else 50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
KEYS = [
    "name", "params", "grid", "zip", "exclude", "sample", "run", "model", "version", "image",
    "prompt", "seed", "guidance", "steps", "num_inference_steps", "quality", "megapixels",
    "format", "num_outputs", "go_fast", "start", "stop", "step", "n", "concurrency",
    "requests_per_minute", "request_timeout_s", "max_attempts", "<<", "x",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "1", "0.25", "jpg", "webp", "p", str(PHOTO), "asset:", "asset:x",
                     "development/images/a.jpg", "1e308", "1e-300", "no", "x\ny", "\x1b[31m"]),
    st.text(max_size=20),
)  # fmt: skip
DOCUMENTS = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.sampled_from(KEYS), children, max_size=6),
    ),
    max_leaves=30,
)
SHIPPED_TEXTS = [path.read_text() for path in SHIPPED]
INSERTS = [":", ": ", "-", " ", "  ", "\t", "\n", "[", "]", "{", "}", ",", "&a ", "*a",
           "!!str ", "'", '"', "#", "0", "9", "1e400", ".nan", "yes", "no", "<<: ", "~", "|",
           ">", "x"]  # fmt: skip


def outcome(folder: Path, text: str) -> SweepSpec | SpecError:
    """load_spec, count and expand a little: a spec or a SpecError, anything else fails."""
    path = write(folder, text)
    try:
        spec = load_spec(path)
        if count_jobs(spec) <= 10_000:
            list(itertools.islice(expand_jobs(spec), 50))
        return spec
    except SpecError as error:
        assert error.problems and all(isinstance(p, str) and p for p in error.problems)
        return error


def fuzz_folder() -> tempfile.TemporaryDirectory[str]:
    folder = tempfile.TemporaryDirectory()
    shutil.copytree(REPO / "sweeps" / "inputs", Path(folder.name) / "inputs")
    return folder


@FUZZ
@given(document=DOCUMENTS)
def test_fuzz_random_yaml_documents(document):
    text = yaml.safe_dump(document, allow_unicode=True)
    with fuzz_folder() as folder:
        outcome(Path(folder), text)


@FUZZ
@given(document=st.dictionaries(st.sampled_from(KEYS), DOCUMENTS, max_size=8))
def test_fuzz_spec_shaped_documents(document):
    with fuzz_folder() as folder:
        outcome(Path(folder), yaml.safe_dump(document, allow_unicode=True))


@FUZZ
@given(
    which=st.sampled_from(SHIPPED_TEXTS),
    edits=st.lists(
        st.tuples(st.floats(0, 1), st.integers(0, 6), st.sampled_from(INSERTS)),
        min_size=1,
        max_size=4,
    ),
)
def test_fuzz_mutated_shipped_specs(which, edits):
    text = which
    for where, cut, insert in edits:
        at = int(where * len(text))
        text = text[:at] + insert + text[at + cut :]
    with fuzz_folder() as folder:
        outcome(Path(folder), text)
        result = CliRunner().invoke(
            main, ["plan", str(Path(folder) / "spec.yaml"), "--max-jobs", "2000"]
        )
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception


@FUZZ
@given(
    which=st.sampled_from(SHIPPED),
    path=st.lists(st.integers(0, 20), min_size=1, max_size=4),
    value=DOCUMENTS,
)
def test_fuzz_values_replaced_in_shipped_specs(which, path, value):
    document = yaml.safe_load(which.read_text())
    node = document
    for step in path[:-1]:
        children = list(node) if isinstance(node, dict) else node
        if not isinstance(children, list) or not children:
            break
        key = children[step % len(children)]
        nxt = node[key] if isinstance(node, dict) else key
        if not isinstance(nxt, dict | list):
            break
        node = nxt
    if isinstance(node, dict) and node:
        node[list(node)[path[-1] % len(node)]] = value
    elif isinstance(node, list) and node:
        node[path[-1] % len(node)] = value
    with fuzz_folder() as folder:
        outcome(Path(folder), yaml.safe_dump(document, allow_unicode=True))


@FUZZ
@given(document=st.dictionaries(st.text(max_size=8), DOCUMENTS, max_size=6))
def test_fuzz_the_parser_reads_what_safe_load_reads(document):
    text = yaml.safe_dump(document, allow_unicode=True)
    ours = parse_spec_yaml(Path("x.yaml"), text).data
    assert ours == yaml.safe_load(text) or _nan_in(document)


def _nan_in(value: Any) -> bool:
    if isinstance(value, float):
        return value != value
    if isinstance(value, dict):
        return any(_nan_in(v) for v in value.values())
    if isinstance(value, list):
        return any(_nan_in(v) for v in value)
    return False
