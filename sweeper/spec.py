"""The sweep spec: read a YAML file, validate every part, and return a `SweepSpec`.

Validation is complete before anything is sent, and it reports every problem at
once: a `SpecError` whose `problems` holds one line per problem,
`<file>: line L, column C: <field path>: <what is wrong> (got <value>); <what is allowed>`,
in the order they appear in the file. Reading and parsing are bounded
(`sweeper.spec_source`, caps in `sweeper.limits`); structure (top-level keys, the
`run` and `sample` sections) is checked by pydantic; parameter values against the
contract table; local images by one read that hashes and fully decodes them
(`sweeper.image_check`). Common YAML slips (an unquoted `no` read as false, a
missing space after a colon, an empty section) get a hint.
"""

from __future__ import annotations

import datetime
import difflib
import hashlib
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sweeper.contract import (
    ALIASES,
    ASSET_PREFIX,
    IMAGE,
    MODEL,
    PARAMETER_NAMES,
    PARAMS,
    canonical_name,
)
from sweeper.errors import SpecError
from sweeper.image_check import CheckedImage, ImageProblem, check_input_image
from sweeper.job import ImageRef
from sweeper.limits import DEFAULT_LIMITS, MAX_EXCLUDE_ENTRIES, MAX_SAMPLE_N, SpecLimits
from sweeper.ranges import Axis, ListAxis, RangeAxis
from sweeper.spec_source import Document, at, parse_spec_yaml, read_spec_text, shown_path

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
RANGE_KEYS = ("start", "stop", "step")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
PROMPT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
YAML_BOOLEANS = {"yes", "no", "on", "off", "true", "false", "y", "n"}
MISSING_SPACE = re.compile(r"^([\w.-]+):(\S.*)$", re.DOTALL)
SHOWN_CHARS = 60
MAX_PROBLEMS = 1_000
LISTED_PROBLEMS = 30


class RunSettings(BaseModel):
    """The `run` section: how hard to push the API."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    concurrency: int = Field(4, ge=1, le=256)
    # A number, null for no cap, or "auto": learn the account's limit (and concurrency).
    requests_per_minute: float | Literal["auto"] | None = 60
    # Where `auto` starts; default: the rate learned before for this API and key, else 60.
    rpm_start: float | None = Field(None, gt=0, le=60_000, allow_inf_nan=False)
    max_attempts: int = Field(5, ge=1, le=20)
    request_timeout_s: float = Field(300, gt=0, le=3600, allow_inf_nan=False)
    # Money: what may be sent again although it may have been paid for already.
    resend_unanswered: bool = False
    resend_lost: bool = False
    # An input replaced at the same path: run its jobs again as new jobs (else refused).
    accept_changes: bool = False
    # Budget: the run never causes the server to bill past these (see README, Nightly runs).
    max_credits: float | None = Field(None, ge=0, allow_inf_nan=False)
    max_requests: int | None = Field(None, ge=0)
    # Credits per image, when known; else learned from the API's usedCredit.
    credits_per_image: float | None = Field(None, gt=0, allow_inf_nan=False)

    @field_validator("requests_per_minute", mode="before")
    @classmethod
    def _a_rate(cls, value: Any) -> Any:
        """One clear message, rather than one per member of the union."""
        if value is None or value == "auto":
            return value
        number = not isinstance(value, bool) and isinstance(value, int | float)
        if not number or not math.isfinite(value) or value <= 0:
            raise ValueError("must be a number greater than 0, `auto`, or null for no cap")
        return value

    # Caps on what the server may send back (see README, "Limits and safety").
    max_response_mb: float = Field(16, gt=0, le=1024, allow_inf_nan=False)
    max_json_depth: int = Field(64, ge=8, le=10_000)
    max_download_mb: float = Field(64, gt=0, le=4096, allow_inf_nan=False)
    max_image_megapixels: float = Field(50, gt=0, le=1000, allow_inf_nan=False)


class SampleSettings(BaseModel):
    """The `sample` section: a reproducible random subset of the jobs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int = Field(ge=1, le=MAX_SAMPLE_N)
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


def load_spec(path: str | os.PathLike[str], *, limits: SpecLimits = DEFAULT_LIMITS) -> SweepSpec:
    """Read and validate the spec at `path`.

    Raises SpecError listing every problem found (`error.problems`), each with its
    line and column where the YAML tells them.
    """
    path = Path(path)
    text = read_spec_text(path)
    document = parse_spec_yaml(path, text)
    problems = _Problems(path, document)
    spec = _validate(path, text, document.data, problems, limits)
    problems.raise_if_any()
    assert spec is not None
    return spec


class _Invalid(Exception):
    """One problem with one field; raised to skip that field's remaining checks."""

    def __init__(self, where: tuple[Any, ...], message: str) -> None:
        super().__init__(message)
        self.where = where
        self.message = message


class _Reported(Exception):
    """The field's problems are already recorded; skip the field."""


class _Problems:
    """Every problem found in one spec, each placed at its line and column."""

    def __init__(self, path: Path, document: Document) -> None:
        self.path = path
        self.document = document
        self.found: list[tuple[tuple[int, int], str, str]] = []

    def add(self, where: tuple[Any, ...], message: str) -> None:
        if len(self.found) >= MAX_PROBLEMS:
            return
        place = self.document.place_of(where)
        line, column = (place.line, place.column) if place else (None, None)
        label = _dotted(where)
        text = f"{label}: {message}" if label else message
        short = f"line {line}, column {column}: {text}" if place else text
        self.found.append(((line or 0, column or 0), at(self.path, line, column, text), short))

    @contextmanager
    def checking(self) -> Iterator[None]:
        """Record an `_Invalid` raised inside, and carry on with the next field."""
        try:
            yield
        except _Invalid as invalid:
            self.add(invalid.where, invalid.message)
        except _Reported:
            pass

    @property
    def count(self) -> int:
        return len(self.found)

    def raise_if_any(self) -> None:
        if not self.found:
            return
        ordered = sorted(self.found, key=lambda found: found[0])
        lines = [full for _, full, _ in ordered]
        if len(lines) == 1:
            raise SpecError(lines[0], problems=lines)
        listed = [f"  {short}" for _, _, short in ordered[:LISTED_PROBLEMS]]
        if len(lines) > LISTED_PROBLEMS:
            listed.append(f"  ... and {len(lines) - LISTED_PROBLEMS:,} more")
        counted = f"{len(lines):,}" + ("+" if len(lines) >= MAX_PROBLEMS else "")
        summary = f"{shown_path(self.path)}: {counted} problems\n" + "\n".join(listed)
        raise SpecError(summary, problems=lines)


def _validate(
    path: Path, text: str, raw: Any, problems: _Problems, limits: SpecLimits
) -> SweepSpec | None:
    if not isinstance(raw, dict):
        what = "empty" if raw is None else f"a {type(raw).__name__}"
        problems.add(
            (), f"the spec must be a mapping of keys (name, params, grid, ...); this one is {what}"
        )
        return None
    shape, broken = _check_shape(raw, problems)
    if shape is None:
        return None
    if "name" not in broken:
        with problems.checking():
            _check_name(shape.name, limits)
    if shape.model != MODEL:
        problems.add(("model",), f"unsupported model (got {_shown(shape.model)}); use {MODEL}")
    checker = _Checker(path, problems, limits)
    fixed = checker.params(shape.params)
    axes = checker.grid(shape.grid)
    zip_names, zip_rows = checker.zip_group(shape.zip)
    if not broken & {"params", "grid", "zip"}:
        for name in ("prompt", IMAGE):
            if name not in checker.places:
                problems.add((name,), "required parameter is missing; set it under params or grid")
    exclude = checker.exclude_entries(shape.exclude, dict(axes), zip_names, zip_rows)
    if problems.count:
        return None
    for name, param in PARAMS.items():
        if name not in checker.places and param.default is not None:
            fixed[name] = param.default
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
        varied=tuple(name for name, _ in axes) + zip_names,
    )


def _check_shape(raw: dict[str, Any], problems: _Problems) -> tuple[SpecFile | None, set[str]]:
    """The file's shape; sections with a problem are recorded, then left at their defaults."""
    try:
        return SpecFile.model_validate(raw), set()
    except ValidationError as error:
        found = error.errors()
    broken: set[str] = set()
    for problem in found:
        loc = tuple(problem["loc"])
        broken.add(str(loc[0]) if loc else "")
        problems.add(loc, _describe_pydantic(problem, problems.document))
    kept = {k: v for k, v in raw.items() if k in SpecFile.model_fields and k not in broken}
    kept.setdefault("name", "unnamed")
    try:
        return SpecFile.model_validate(kept), broken
    except ValidationError:  # every section was set aside already; cannot happen
        return None, broken


def _describe_pydantic(problem: Any, document: Document) -> str:
    loc = tuple(problem["loc"])
    if problem["type"] == "extra_forbidden":
        key = str(loc[-1])
        if not loc[:-1] and canonical_name(key) in PARAMETER_NAMES:
            return (
                f"unknown key `{key}`; it is a parameter: put it under params (one value) "
                "or grid (a list of values), indented under that key"
            )
        parent_model = _model_at(loc[:-1])
        allowed = list(parent_model.model_fields) if parent_model else []
        return "unknown key" + _did_you_mean(key, allowed)
    if problem["type"] == "missing":
        return "required key is missing"
    message = problem["msg"].replace("Input should be", "must be").replace("Value error, ", "")
    value = problem.get("input")
    hint = _yaml_hint(document, loc, value, wants_text=problem["type"] == "string_type")
    if value is None and problem["type"] in ("dict_type", "list_type", "model_type"):
        hint = hint or f"; nothing is indented under `{loc[-1]}:`: indent its entries under it"
    return f"{message} (got {_shown(value)}){hint}"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    models: dict[tuple[Any, ...], type[BaseModel]] = {
        (): SpecFile,
        ("run",): RunSettings,
        ("sample",): SampleSettings,
    }
    return models.get(tuple(loc))


def _dotted(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    allowed = ", ".join(choices)
    shown = _shown(word)[1:-1]
    return f" `{shown}`; did you mean `{close[0]}`?" if close else f" `{shown}`; allowed: {allowed}"


def _shown(value: Any) -> str:
    """A value as an error message shows it: repr, so control characters are escaped, and short."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def _yaml_hint(document: Document, where: tuple[Any, ...], value: Any, *, wants_text: bool) -> str:
    """A hint when YAML read a plain word as something else, or a colon lacks its space."""
    place = document.places.get(tuple(where))
    if place is None or not place.plain or place.text is None:
        return ""
    written = place.text
    if isinstance(value, bool) and written.lower() in YAML_BOOLEANS:
        return (
            f"; YAML reads an unquoted {written} as {str(value).lower()}: "
            f'write "{written}" in quotes if you mean the word'
        )
    if isinstance(value, datetime.date):
        return f'; YAML reads an unquoted {written} as a date: write "{written}" in quotes'
    if isinstance(value, str):
        found = MISSING_SPACE.match(value)
        if found and not value.startswith(("http:", "https:", "asset:")):
            return f"; a space is missing after the colon: write `{found[1]}: {found[2]}`"
    if wants_text and value is not None and not isinstance(value, str):
        return f'; write "{written}" in quotes to make it text'
    return ""


def _check_name(name: str, limits: SpecLimits) -> None:
    if CONTROL.search(name):
        what = "a line break" if "\n" in name or "\r" in name else "a control character"
        raise _Invalid(
            ("name",),
            f"contains {what} (got {_shown(name)}); use letters, digits, '-' and '_'",
        )
    if len(name) > limits.max_name_chars:
        raise _Invalid(
            ("name",),
            f"is {len(name):,} characters; a name is at most {limits.max_name_chars}",
        )
    if not NAME_PATTERN.fullmatch(name):
        raise _Invalid(
            ("name",),
            f"not a safe folder name (got {_shown(name)}); use letters, digits, '-' and '_'",
        )


class _Checker:
    """Checks the parameter sections of one spec, recording every problem by its field path."""

    def __init__(self, path: Path, problems: _Problems, limits: SpecLimits) -> None:
        self.path = path
        self.folder = path.parent
        self.problems = problems
        self.limits = limits
        self.images: dict[Path, CheckedImage | ImageProblem] = {}
        self.places: dict[str, str] = {}
        self.broken: set[str] = set()
        self.unknown_keys = False

    # -- sections ---------------------------------------------------------------

    def params(self, raw: dict[str, Any]) -> dict[str, Any]:
        fixed: dict[str, Any] = {}
        for key, value in raw.items():
            with self.problems.checking():
                name = self.api_name("params", key)
                fixed[name] = self.checked(name, self.value, value, ("params", key))
        return fixed

    def grid(self, raw: dict[str, Any]) -> tuple[tuple[str, Axis], ...]:
        axes = []
        for key, value in raw.items():
            with self.problems.checking():
                name = self.api_name("grid", key)
                axes.append((name, self.checked(name, self.axis, value, ("grid", key))))
        return tuple(axes)

    def zip_group(self, raw: dict[str, list[Any]]) -> tuple[tuple[str, ...], tuple[tuple, ...]]:
        names, columns, bad = [], [], False
        for key, values in raw.items():
            try:
                name = self.api_name("zip", key)
                column = self.checked(name, self.column, values, ("zip", key))
            except _Invalid as invalid:
                self.problems.add(invalid.where, invalid.message)
                bad = True
                continue
            except _Reported:
                bad = True
                continue
            names.append(name)
            columns.append(column)
        if bad or not names:
            return (), ()
        lengths = {len(column) for column in columns}
        if len(lengths) > 1:
            sizes = ", ".join(f"{k}: {len(c)}" for k, c in zip(raw, columns, strict=True))
            self.problems.add(("zip",), f"lists must have equal lengths (got {sizes})")
            self.broken.update(names)
            return (), ()
        rows = tuple(zip(*columns, strict=True))
        first_seen: dict[tuple[Any, ...], int] = {}
        for number, row in enumerate(rows):
            identity = tuple(v.identity if isinstance(v, ImageRef) else v for v in row)
            if identity in first_seen:
                self.problems.add(
                    ("zip",),
                    f"row {number} repeats row {first_seen[identity]} (got {_shown(row)}); "
                    "list it once",
                )
            first_seen.setdefault(identity, number)
        return tuple(names), rows

    def exclude_entries(
        self,
        raw: list[dict[str, Any]],
        axes: dict[str, Axis],
        zip_names: tuple[str, ...],
        zip_rows: tuple[tuple[Any, ...], ...],
    ) -> tuple[dict[str, Any], ...]:
        if len(raw) > MAX_EXCLUDE_ENTRIES:
            self.problems.add(
                ("exclude",),
                f"{len(raw):,} entries; at most {MAX_EXCLUDE_ENTRIES:,}: exclude whole values "
                "of one parameter, or narrow the grid instead",
            )
            return ()
        present = _Presence(axes, zip_names, zip_rows)
        entries = []
        for i, entry in enumerate(raw):
            with self.problems.checking():
                entries.append(self.exclude_entry(entry, ("exclude", i), present))
        return tuple(entries)

    def exclude_entry(
        self, entry: dict[str, Any], where: tuple[Any, ...], present: _Presence
    ) -> dict[str, Any]:
        if not entry:
            raise _Invalid(where, "empty entry would exclude every job; remove it")
        checked, bad = {}, False
        for key, value in entry.items():
            name = canonical_name(str(key))
            if name in self.broken:
                bad = True  # its own problem is reported where it is set
                continue
            try:
                checked[name] = self.exclude_value(name, value, (*where, key), present)
            except _Invalid as invalid:
                self.problems.add(invalid.where, invalid.message)
                bad = True
            except _Reported:
                bad = True
        if bad:
            raise _Reported
        return checked

    def exclude_value(
        self, name: str, value: Any, where: tuple[Any, ...], present: _Presence
    ) -> Any:
        if not present.varies(name):
            if self.unknown_keys:
                raise _Reported  # what varies is unknown until those keys are fixed
            varied = present.names()
            if not varied:
                raise _Invalid(where, "is not a varied parameter: nothing varies in this sweep")
            raise _Invalid(where, "is not a varied parameter" + _did_you_mean(name, varied))
        value = self.value(name, value, where)
        if not present.holds(name, value):
            raise _Invalid(where, f"value {_shown(value)} never occurs in the sweep")
        return value

    # -- parameters -------------------------------------------------------------

    def api_name(self, section: str, key: Any) -> str:
        name = canonical_name(str(key))
        if name not in PARAMETER_NAMES:
            self.unknown_keys = True
            known = [*PARAMETER_NAMES, *ALIASES]
            raise _Invalid((section, key), "unknown parameter" + _did_you_mean(str(key), known))
        if name in self.places:
            self.unknown_keys = True
            raise _Invalid(
                (section, key),
                f"`{name}` is also set in {self.places[name]}; set each parameter in one place",
            )
        self.places[name] = section
        return name

    def checked(self, name: str, check: Any, raw: Any, where: tuple[Any, ...]) -> Any:
        """`check(name, raw, where)`, remembering `name` as broken when it fails."""
        try:
            return check(name, raw, where)
        except (_Invalid, _Reported):
            self.broken.add(name)
            raise

    def value(self, name: str, value: Any, where: tuple[Any, ...]) -> Any:
        if name == IMAGE:
            return self.image(value, where)
        if isinstance(value, list | dict):
            hint = "; to vary it, list its values under grid" if isinstance(value, list) else ""
            raise _Invalid(where, f"must be a single value (got {_shown(value)}){hint}")
        param = PARAMS[name]
        if isinstance(value, str) and name == "prompt":
            self.prompt_text(value, where)
        try:
            return param.check(value)
        except ValueError as error:
            hint = _yaml_hint(self.problems.document, where, value, wants_text=param.kind is str)
            raise _Invalid(where, f"{error} (got {_shown(value)}){hint}") from None

    def prompt_text(self, value: str, where: tuple[Any, ...]) -> None:
        cap = self.limits.max_prompt_chars
        if len(value) > cap:
            raise _Invalid(
                where,
                f"is {len(value):,} characters; a prompt is at most {cap:,} (got {_shown(value)})",
            )
        found = PROMPT_CONTROL.search(value)
        if found:
            raise _Invalid(
                where,
                f"contains the control character U+{ord(found.group()):04X} (got "
                f"{_shown(value)}); a prompt may hold line breaks and tabs, no other controls",
            )

    def image(self, value: Any, where: tuple[Any, ...]) -> ImageRef:
        if not isinstance(value, str) or not value.strip():
            raise _Invalid(where, f"must be a path to an image file (got {_shown(value)})")
        if len(value) > self.limits.max_path_chars:
            raise _Invalid(
                where,
                f"is {len(value):,} characters; an image path is at most "
                f"{self.limits.max_path_chars:,}",
            )
        if CONTROL.search(value):
            raise _Invalid(
                where, f"contains a control character or line break (got {_shown(value)})"
            )
        if value.startswith("asset:"):
            asset = value.removeprefix("asset:")
            if not asset.strip() or asset.strip() == ASSET_PREFIX.rstrip("/"):
                raise _Invalid(
                    where,
                    f"names no asset (got {_shown(value)}); write asset:PATH with the path "
                    "the API gave the upload",
                )
            return ImageRef(given=value, asset_path=asset)
        if value.startswith(ASSET_PREFIX):
            if not value.removeprefix(ASSET_PREFIX).strip():
                raise _Invalid(where, f"names no file after {ASSET_PREFIX} (got {_shown(value)})")
            return ImageRef(given=value, asset_path=value)
        return self.local_image(value, where)

    def local_image(self, value: str, where: tuple[Any, ...]) -> ImageRef:
        try:
            local = (self.folder / Path(value).expanduser()).resolve()
        except (OSError, RuntimeError, ValueError) as error:  # RuntimeError: a symlink loop
            reason = "a symlink loop" if "loop" in str(error).lower() else str(error)
            raise _Invalid(where, f"{_shown(value)} cannot be resolved ({reason})") from None
        if local not in self.images:
            try:
                self.images[local] = check_input_image(
                    local, max_pixels=self.limits.max_input_pixels
                )
            except ImageProblem as refused:
                self.images[local] = refused
        checked = self.images[local]
        if isinstance(checked, ImageProblem):
            reason = str(checked)
            if reason in ("no such file", "is a directory"):
                raise _Invalid(
                    where,
                    f"{reason} (got {_shown(value)}, looked at {shown_path(local)}); paths are "
                    "relative to the spec's folder, or use asset:PATH for an uploaded asset",
                )
            raise _Invalid(where, f"{_shown(value)} {reason}")
        return ImageRef(given=value, local_path=local, sha256=checked.sha256)

    # -- axes -------------------------------------------------------------------

    def axis(self, name: str, raw: Any, where: tuple[Any, ...]) -> Axis:
        if isinstance(raw, dict):
            return self.range_axis(name, raw, where)
        if not isinstance(raw, list):
            raise _Invalid(
                where,
                f"must be a list of values or {{start, stop, step}} (got {_shown(raw)})"
                + _yaml_hint(self.problems.document, where, raw, wants_text=False),
            )
        if not raw:
            raise _Invalid(where, "empty axis; give at least one value")
        values = self.column(name, raw, where)
        before = self.problems.count
        self.no_duplicates(values, where)
        if self.problems.count > before:
            raise _Reported
        return ListAxis(values)

    def column(self, name: str, raw: list[Any], where: tuple[Any, ...]) -> list[Any]:
        """Every value of a list checked; all its problems recorded, then `_Reported`."""
        if not raw:
            raise _Invalid(where, "empty list; give at least one value")
        values, before = [], self.problems.count
        for i, item in enumerate(raw):
            with self.problems.checking():
                values.append(self.value(name, item, (*where, i)))
        if self.problems.count > before:
            raise _Reported
        return values

    def no_duplicates(self, values: list[Any], where: tuple[Any, ...]) -> None:
        seen: set[Any] = set()
        for i, value in enumerate(values):
            key = value.identity if isinstance(value, ImageRef) else value
            if key in seen:
                self.problems.add(
                    (*where, i), f"duplicate value {_shown(key)}; list each value once"
                )
            seen.add(key)

    def range_axis(self, name: str, raw: dict[str, Any], where: tuple[Any, ...]) -> RangeAxis:
        param = PARAMS.get(name)
        if param is None or param.kind not in (int, float) or param.choices:
            raise _Invalid(where, f"a range needs a numeric parameter; list {name}'s values")
        before = self.problems.count
        for key in raw:
            if key not in RANGE_KEYS:
                self.problems.add(
                    (*where, key), "unknown key" + _did_you_mean(str(key), [*RANGE_KEYS])
                )
        missing = [key for key in RANGE_KEYS if key not in raw]
        if missing:
            self.problems.add(where, f"range needs start, stop and step (missing {missing[0]})")
        if self.problems.count > before:
            raise _Reported
        try:
            axis = RangeAxis.build(
                raw["start"], raw["stop"], raw["step"], integer=param.kind is int
            )
        except ValueError as error:
            raise _Invalid(where, f"{error} (got {_shown(raw)})") from None
        self.value(name, axis[0], (*where, "start"))
        self.value(name, axis[len(axis) - 1], (*where, "stop"))
        return axis


class _Presence:
    """Which values each varied parameter takes, for checking exclude entries fast."""

    def __init__(
        self, axes: dict[str, Axis], zip_names: tuple[str, ...], zip_rows: tuple[tuple, ...]
    ) -> None:
        self.axes = axes
        self.zip_names = zip_names
        self.zip_rows = zip_rows
        self.sets: dict[str, set[Any]] = {}

    def names(self) -> list[str]:
        return [*self.axes, *self.zip_names]

    def varies(self, name: str) -> bool:
        return name in self.axes or name in self.zip_names

    def holds(self, name: str, value: Any) -> bool:
        axis = self.axes.get(name)
        if isinstance(axis, RangeAxis):
            return value in axis
        if name not in self.sets:
            if axis is not None:
                self.sets[name] = set(axis)
            else:
                column = self.zip_names.index(name)
                self.sets[name] = {row[column] for row in self.zip_rows}
        return value in self.sets[name]
