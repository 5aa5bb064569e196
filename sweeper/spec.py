"""The sweep spec: read a YAML file, validate every part, and return a `SweepSpec`.

Validation is complete before anything is sent. Structure (top-level keys, the
`run` and `sample` sections) is checked by pydantic; parameter values are checked
against the contract table. Every problem becomes one `SpecError` line:
`<file>: <field path>: <what is wrong> (got <value>); <what is allowed>`.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sweeper.contract import (
    ALIASES,
    ASSET_PREFIX,
    IMAGE,
    MAX_UPLOAD_BYTES,
    MODEL,
    PARAMETER_NAMES,
    PARAMS,
)
from sweeper.errors import SpecError
from sweeper.job import ImageRef
from sweeper.ranges import Axis, ListAxis, RangeAxis

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
RANGE_KEYS = ("start", "stop", "step")


class RunSettings(BaseModel):
    """The `run` section: how hard to push the API."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    concurrency: int = Field(4, ge=1, le=256)
    requests_per_minute: float | None = Field(60, gt=0, allow_inf_nan=False)
    max_attempts: int = Field(5, ge=1, le=20)
    request_timeout_s: float = Field(300, gt=0, le=3600, allow_inf_nan=False)
    # Money: what may be sent again although it may have been paid for already.
    resend_unanswered: bool = False
    resend_lost: bool = False
    # Caps on what the server may send back (see README, "Limits and safety").
    max_response_mb: float = Field(16, gt=0, le=1024, allow_inf_nan=False)
    max_json_depth: int = Field(64, ge=8, le=10_000)
    max_download_mb: float = Field(64, gt=0, le=4096, allow_inf_nan=False)
    max_image_megapixels: float = Field(50, gt=0, le=1000, allow_inf_nan=False)


class SampleSettings(BaseModel):
    """The `sample` section: a reproducible random subset of the jobs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int = Field(ge=1)
    seed: int = 0


class SpecFile(BaseModel):
    """The file's shape; parameter values are checked separately against the contract."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(1, ge=1, le=1)
    name: str
    model: str = MODEL
    params: dict[str, Any] = {}
    grid: dict[str, Any] = {}
    zip: dict[str, list[Any]] = {}
    exclude: list[dict[str, Any]] = []
    sample: SampleSettings | None = None
    run: RunSettings = RunSettings()


@dataclass(frozen=True)
class SweepSpec:
    """A validated spec: fixed parameters, axes in expansion order, and run settings."""

    name: str
    model: str
    source_path: Path
    source_text: str
    sha256: str
    run: RunSettings
    fixed: dict[str, Any]
    axes: tuple[tuple[str, Axis], ...]
    zip_names: tuple[str, ...]
    zip_rows: tuple[tuple[Any, ...], ...]
    exclude: tuple[dict[str, Any], ...] = ()
    sample: SampleSettings | None = None
    varied: tuple[str, ...] = field(default=())


Spec = SweepSpec
"""The public name of a validated spec."""


def load_spec(path: Path) -> SweepSpec:
    """Read and validate the spec at `path`; raises SpecError with one line on any mistake."""
    text = _read(path)
    raw = _parse_yaml(path, text)
    shape = _check_shape(path, raw)
    return _build(path, text, shape)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file") from None
    except IsADirectoryError:
        raise SpecError(f"{path}: is a directory; give the path of a .yaml spec file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(f"{path}: cannot read the spec ({error})") from None


def _parse_yaml(path: Path, text: str) -> Any:
    import yaml

    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise SpecError(f"{path}: {where}YAML syntax error: {problem}") from None
    if not isinstance(raw, dict):
        raise SpecError(
            f"{path}: the spec must be a mapping of keys (name, params, grid, ...), "
            f"got {type(raw).__name__}"
        )
    return raw


def _check_shape(path: Path, raw: dict) -> SpecFile:
    try:
        return SpecFile.model_validate(raw)
    except ValidationError as error:
        raise SpecError(_describe_pydantic(path, error.errors()[0])) from None


def _describe_pydantic(path: Path, problem: dict) -> str:
    location = _dotted(problem["loc"])
    if problem["type"] == "extra_forbidden":
        parent_model = _model_at(problem["loc"][:-1])
        allowed = list(parent_model.model_fields) if parent_model else []
        return f"{path}: {location}: unknown key{_did_you_mean(str(problem['loc'][-1]), allowed)}"
    if problem["type"] == "missing":
        return f"{path}: {location}: required key is missing"
    message = problem["msg"].replace("Input should be", "must be").replace("Value error, ", "")
    return f"{path}: {location}: {message} (got {problem.get('input')!r})"


def _model_at(loc: tuple) -> type[BaseModel] | None:
    return {(): SpecFile, ("run",): RunSettings, ("sample",): SampleSettings}.get(tuple(loc))


def _dotted(loc: tuple) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    allowed = ", ".join(choices)
    return f" `{word}`; did you mean `{close[0]}`?" if close else f" `{word}`; allowed: {allowed}"


class _Checker:
    """Checks parameter sections of one spec file, naming fields by their path."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.folder = path.parent
        self.hashes: dict[Path, str] = {}
        self.places: dict[str, str] = {}

    def fail(self, where: str, message: str) -> SpecError:
        return SpecError(f"{self.path}: {where}: {message}")

    def api_name(self, section: str, key: Any) -> str:
        name = ALIASES.get(str(key), str(key))
        if name not in PARAMETER_NAMES:
            known = [*PARAMETER_NAMES, *ALIASES]
            raise self.fail(
                f"{section}.{key}", "unknown parameter" + _did_you_mean(str(key), known)
            )
        if name in self.places:
            raise self.fail(
                f"{section}.{key}",
                f"`{name}` is also set in {self.places[name]}; set each parameter in one place",
            )
        self.places[name] = section
        return name

    def value(self, name: str, value: Any, where: str) -> Any:
        if name == IMAGE:
            return self.image(value, where)
        if isinstance(value, list | dict):
            hint = "; to vary it, list its values under grid" if isinstance(value, list) else ""
            raise self.fail(where, f"must be a single value (got {value!r}){hint}")
        try:
            return PARAMS[name].check(value)
        except ValueError as error:
            raise self.fail(where, f"{error} (got {value!r})") from None

    def image(self, value: Any, where: str) -> ImageRef:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, f"must be a path to an image file (got {value!r})")
        if value.startswith("asset:"):
            return ImageRef(given=value, asset_path=value.removeprefix("asset:"))
        if value.startswith(ASSET_PREFIX):
            return ImageRef(given=value, asset_path=value)
        local = (self.folder / Path(value).expanduser()).resolve()
        if not local.is_file():
            problem = "is a directory" if local.is_dir() else "no such file"
            raise self.fail(
                where,
                f"{problem} (got {value!r}, looked at {local}); paths are relative to the "
                "spec's folder, or use asset:PATH for an uploaded asset",
            )
        if local not in self.hashes:
            self.check_image_file(local, value, where)
            self.hashes[local] = hashlib.sha256(local.read_bytes()).hexdigest()
        return ImageRef(given=value, local_path=local, sha256=self.hashes[local])

    def check_image_file(self, local: Path, value: str, where: str) -> None:
        """Refuse now what the API would refuse on every job: too big, or not an image."""
        from PIL import Image, UnidentifiedImageError

        size = local.stat().st_size
        if size > MAX_UPLOAD_BYTES:
            raise self.fail(
                where, f"{value!r} is {size / 2**20:.1f} MB; the API accepts images up to 50 MB"
            )
        try:
            with Image.open(local) as image:
                image.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
            raise self.fail(
                where, f"{value!r} is not an image file Pillow can read ({error})"
            ) from None

    def axis(self, name: str, raw: Any, where: str) -> Axis:
        if isinstance(raw, dict):
            return self.range_axis(name, raw, where)
        if not isinstance(raw, list):
            raise self.fail(
                where, f"must be a list of values or {{start, stop, step}} (got {raw!r})"
            )
        if not raw:
            raise self.fail(where, "empty axis; give at least one value")
        values = [self.value(name, item, f"{where}[{i}]") for i, item in enumerate(raw)]
        self.no_duplicates(values, where)
        return ListAxis(values)

    def no_duplicates(self, values: list[Any], where: str) -> None:
        seen: set[Any] = set()
        for i, value in enumerate(values):
            key = value.identity if isinstance(value, ImageRef) else value
            if key in seen:
                raise self.fail(f"{where}[{i}]", f"duplicate value {key!r}; list each value once")
            seen.add(key)

    def range_axis(self, name: str, raw: dict, where: str) -> RangeAxis:
        param = PARAMS.get(name)
        if param is None or param.kind not in (int, float) or param.choices:
            raise self.fail(where, f"a range needs a numeric parameter; list {name}'s values")
        for key in raw:
            if key not in RANGE_KEYS:
                raise self.fail(f"{where}.{key}", "unknown key" + _did_you_mean(key, [*RANGE_KEYS]))
        missing = [key for key in RANGE_KEYS if key not in raw]
        if missing:
            raise self.fail(where, f"range needs start, stop and step (missing {missing[0]})")
        try:
            axis = RangeAxis.build(
                raw["start"], raw["stop"], raw["step"], integer=param.kind is int
            )
        except ValueError as error:
            raise self.fail(where, f"{error} (got {raw!r})") from None
        self.value(name, axis[0], f"{where}.start")
        self.value(name, axis[len(axis) - 1], f"{where}.stop")
        return axis


def _build(path: Path, text: str, shape: SpecFile) -> SweepSpec:
    if not NAME_PATTERN.match(shape.name):
        raise SpecError(
            f"{path}: name: not a safe folder name (got {shape.name!r}); "
            "use letters, digits, '-' and '_'"
        )
    if shape.model != MODEL:
        raise SpecError(f"{path}: model: unsupported model (got {shape.model!r}); use {MODEL}")
    checker = _Checker(path)
    fixed = {
        (name := checker.api_name("params", key)): checker.value(name, value, f"params.{key}")
        for key, value in shape.params.items()
    }
    axes = tuple(
        (name, checker.axis(name, raw, f"grid.{key}"))
        for key, raw in shape.grid.items()
        for name in [checker.api_name("grid", key)]
    )
    zip_names, zip_rows = _zip_group(checker, shape.zip)
    _require(checker, ("prompt", IMAGE))
    for name, param in PARAMS.items():
        if name not in checker.places and param.default is not None:
            fixed[name] = param.default
    varied = tuple(name for name, _ in axes) + zip_names
    exclude = _exclude_entries(checker, shape.exclude, dict(axes), zip_names, zip_rows)
    return SweepSpec(
        name=shape.name,
        model=shape.model,
        source_path=path,
        source_text=text,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        run=shape.run,
        fixed=fixed,
        axes=axes,
        zip_names=zip_names,
        zip_rows=zip_rows,
        exclude=exclude,
        sample=shape.sample,
        varied=varied,
    )


def _zip_group(checker: _Checker, raw: dict[str, list[Any]]) -> tuple[tuple, tuple]:
    if not raw:
        return (), ()
    names, columns = [], []
    for key, values in raw.items():
        name = checker.api_name("zip", key)
        if not values:
            raise checker.fail(f"zip.{key}", "empty list; give at least one value")
        names.append(name)
        columns.append([checker.value(name, v, f"zip.{key}[{i}]") for i, v in enumerate(values)])
    lengths = {len(column) for column in columns}
    if len(lengths) > 1:
        sizes = ", ".join(f"{k}: {len(c)}" for k, c in zip(raw, columns, strict=True))
        raise checker.fail("zip", f"lists must have equal lengths (got {sizes})")
    rows = tuple(zip(*columns, strict=True))
    first_seen: dict[tuple, int] = {}
    for number, row in enumerate(rows):
        key = tuple(v.identity if isinstance(v, ImageRef) else v for v in row)
        if key in first_seen:
            raise checker.fail(
                "zip", f"row {number} repeats row {first_seen[key]} (got {row!r}); list it once"
            )
        first_seen[key] = number
    return tuple(names), rows


def _require(checker: _Checker, names: tuple[str, ...]) -> None:
    for name in names:
        if name not in checker.places:
            raise checker.fail(name, "required parameter is missing; set it under params or grid")


def _exclude_entries(
    checker: _Checker,
    raw: list[dict[str, Any]],
    axes: dict[str, Axis],
    zip_names: tuple[str, ...],
    zip_rows: tuple[tuple[Any, ...], ...],
) -> tuple[dict[str, Any], ...]:
    entries = []
    for i, entry in enumerate(raw):
        where = f"exclude[{i}]"
        if not entry:
            raise checker.fail(where, "empty entry would exclude every job; remove it")
        checked = {}
        for key, value in entry.items():
            name = ALIASES.get(str(key), str(key))
            if name not in axes and name not in zip_names:
                varied = ", ".join([*axes, *zip_names]) or "none"
                raise checker.fail(f"{where}.{key}", f"is not a varied parameter; varied: {varied}")
            value = checker.value(name, value, f"{where}.{key}")
            present = (
                value in axes[name]
                if name in axes
                else any(row[zip_names.index(name)] == value for row in zip_rows)
            )
            if not present:
                raise checker.fail(f"{where}.{key}", f"value {value!r} never occurs in the sweep")
            checked[name] = value
        entries.append(checked)
    return tuple(entries)
