"""A spec file's text and YAML: a bounded read, a strict parse, and where each value sits.

`read_spec_text` refuses what is not a small regular UTF-8 file (a FIFO or a device
is refused before it is opened, so nothing hangs). `parse_spec_yaml` builds plain
Python data straight from the YAML parser's events, so that it can:
- refuse duplicate keys, naming both lines (PyYAML's own loader keeps the last);
- count every value as it is built, an alias as a full copy of its anchor, and stop
  past `MAX_YAML_NODES` without ever expanding anything (billion laughs);
- stop past `MAX_YAML_DEPTH` without recursion;
- remember the line and column of every key and list item (`Document.places`).
Mapping keys are kept as the text written (`1:` is the key "1"), since every key of a
spec is a name. A YAML syntax error comes with a hint for the usual mistakes: tabs,
a missing space after a colon, bad indentation.

libyaml parses when it is installed (a 1 MB document in milliseconds). A small spec
it refuses is read again with PyYAML's pure-Python parser, which `yaml.safe_load`
used before, so a spec that loaded then still loads.
"""

from __future__ import annotations

import codecs
import errno
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweeper.atomic import special_file_kind
from sweeper.errors import SpecError
from sweeper.limits import MAX_SPEC_BYTES, MAX_YAML_DEPTH, MAX_YAML_NODES

LENIENT_REPARSE_BYTES = 16 * 1024
"""A spec libyaml refuses is re-read with PyYAML's parser when at most this big."""

MERGE_TAG = "tag:yaml.org,2002:merge"
NESTED_TOO_DEEP = f"the YAML nests deeper than {MAX_YAML_DEPTH} levels; a spec is a few levels deep"
PLAIN_TAGS = {"map": "tag:yaml.org,2002:map", "seq": "tag:yaml.org,2002:seq"}
MISSING_SPACE = re.compile(r"^\s*(?:-\s+)?([\w.-]+):([^\s:/].*)$")
CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class Place:
    """Where a key or list item sits (1-based), and the scalar written there, if one was."""

    line: int
    column: int
    text: str | None = None
    plain: bool = False


@dataclass
class Document:
    """A parsed spec: plain data, and the place of each key path such as ("grid", "seed", 1)."""

    data: Any
    places: dict[tuple[Any, ...], Place] = field(default_factory=dict)

    def place_of(self, where: tuple[Any, ...]) -> Place | None:
        """The place of `where`, or of its nearest ancestor that has one (data from an alias)."""
        for end in range(len(where), 0, -1):
            found = self.places.get(tuple(where[:end]))
            if found is not None:
                return found
        return None


def shown_path(path: Path) -> str:
    """The path as a message shows it: a control character in a file name cannot break the line."""
    text = str(path)
    return repr(text)[1:-1] if CONTROL_CHARACTER.search(text) or "\n" in text else text


def at(path: Path, line: int | None, column: int | None, text: str) -> str:
    """One problem line: `<file>: line L, column C: <text>`."""
    where = f"line {line}, column {column}: " if line is not None else ""
    return f"{shown_path(path)}: {where}{text}"


def read_spec_text(path: Path) -> str:
    """The spec's text; a SpecError if it is not a regular UTF-8 file of at most 1 MB."""
    try:
        before = path.stat()
    except OSError as error:
        raise SpecError(f"{shown_path(path)}: {_stat_problem(error)}") from None
    _require_regular(path, before)
    try:
        # O_NONBLOCK: if a FIFO replaced the file since the stat, opening it cannot hang.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise SpecError(f"{shown_path(path)}: cannot read the spec ({error.strerror})") from None
    with os.fdopen(descriptor, "rb") as stream:
        _require_regular(path, os.fstat(stream.fileno()))
        data = stream.read(MAX_SPEC_BYTES + 1)
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(_too_big(path, len(data)))
    return _decode(path, data)


def _stat_problem(error: OSError) -> str:
    if error.errno == errno.ENOENT:
        return "no such spec file"
    if error.errno == errno.ELOOP:
        return "is a symlink loop; give the path of a .yaml spec file"
    return f"cannot read the spec ({error.strerror})"


def _require_regular(path: Path, status: os.stat_result) -> None:
    mode = status.st_mode
    if stat.S_ISDIR(mode):
        raise SpecError(f"{shown_path(path)}: is a directory; give the path of a .yaml spec file")
    kind = special_file_kind(mode)
    if kind is not None:
        raise SpecError(
            f"{shown_path(path)}: is {kind}, not a regular file; give the path of a .yaml spec file"
        )
    if status.st_size > MAX_SPEC_BYTES:
        raise SpecError(_too_big(path, status.st_size))


def _too_big(path: Path, size: int) -> str:
    return (
        f"{shown_path(path)}: is {size / 2**20:.1f} MB or more; a spec is at most "
        f"{MAX_SPEC_BYTES / 2**20:.0f} MB (list values under grid, not one job per line)"
    )


def _decode(path: Path, data: bytes) -> str:
    try:
        return codecs.decode(data, "utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise SpecError(
            f"{shown_path(path)}: line {line}: not UTF-8 text (byte "
            f"0x{data[error.start]:02x} at offset {error.start}); save the spec as UTF-8"
        ) from None


def parse_spec_yaml(path: Path, text: str) -> Document:
    """The YAML document in `text` as plain data with places; a SpecError on any YAML problem."""
    import yaml

    loaders: list[type[Any]] = [yaml.CSafeLoader] if yaml.__with_libyaml__ else []
    if not loaders or len(text) <= LENIENT_REPARSE_BYTES:
        loaders.append(yaml.SafeLoader)
    first_error: SpecError | None = None
    for loader_class in loaders:
        try:
            return _Builder(path, loader_class(text)).document()
        except yaml.constructor.ConstructorError as error:
            mark = error.problem_mark
            line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
            raise SpecError(at(path, line, column, _constructor_problem(error))) from None
        except yaml.MarkedYAMLError as error:
            first_error = first_error or SpecError(_describe_yaml_error(path, text, error))
            if "nesting depth" in str(error.problem):
                break  # the pure-Python parser takes quadratic time on deep nesting
        except yaml.YAMLError as error:  # a ReaderError: a character YAML forbids
            first_error = first_error or SpecError(_describe_reader_error(path, text, error))
    assert first_error is not None
    raise first_error


class _Refused(Exception):
    """A structural refusal (duplicate key, alias budget, depth) with its place."""

    def __init__(self, mark: Any, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


@dataclass
class _Open:
    """A mapping or list being built."""

    path: tuple[Any, ...]
    value: dict[str, Any] | list[Any]
    anchor: str | None
    mark: Any
    size: int = 1
    key: str | None = None
    key_mark: Any = None
    is_merge: bool = False
    merges: list[Any] = field(default_factory=list)
    key_lines: dict[str, int] = field(default_factory=dict)


class _Builder:
    """Builds plain data from parser events, with an explicit stack (no recursion)."""

    def __init__(self, path: Path, loader: Any) -> None:
        self.path = path
        self.loader = loader
        self.places: dict[tuple[Any, ...], Place] = {}
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.stack: list[_Open] = []
        self.total = 0
        self.root: Any = None
        self.done = False

    def document(self) -> Document:
        import yaml.events as ev

        try:
            try:
                while self.loader.check_event():
                    event = self.loader.get_event()
                    if isinstance(event, ev.DocumentStartEvent) and self.done:
                        raise _Refused(
                            event.start_mark,
                            "a spec is one YAML document; remove the second `---` and what "
                            "follows, or split it into two spec files",
                        )
                    self.handle(event, ev)
            finally:
                self.loader.dispose()
        except _Refused as refused:
            mark = refused.mark
            raise SpecError(
                at(self.path, mark.line + 1, mark.column + 1, refused.message)
            ) from None
        return Document(self.root, self.places)

    def handle(self, event: Any, ev: Any) -> None:
        if isinstance(event, ev.ScalarEvent):
            value, tag = self.scalar(event)
            self.count(1, event.start_mark)
            plain = not event.style  # PyYAML says None for a plain scalar, libyaml ""
            self.attach(value, 1, event.anchor, event.start_mark, event.value, plain, tag)
        elif isinstance(event, ev.MappingStartEvent | ev.SequenceStartEvent):
            self.open(event, isinstance(event, ev.MappingStartEvent))
        elif isinstance(event, ev.MappingEndEvent | ev.SequenceEndEvent):
            self.close()
        elif isinstance(event, ev.AliasEvent):
            if event.anchor not in self.anchors:
                raise _Refused(
                    event.start_mark,
                    f"alias *{event.anchor} has no anchor &{event.anchor} before it "
                    "(an alias cannot point into its own list or mapping)",
                )
            value, size = self.anchors[event.anchor]
            self.count(size, event.start_mark)
            text = value if isinstance(value, str) else None
            self.attach(value, size, None, event.start_mark, text, False, None)
        elif isinstance(event, ev.DocumentEndEvent):
            self.done = True

    def scalar(self, event: Any) -> tuple[Any, str]:
        from yaml.nodes import ScalarNode

        tag = event.tag
        if tag is None or tag == "!":
            tag = self.loader.resolve(ScalarNode, event.value, event.implicit)
        if tag == MERGE_TAG:
            return event.value, tag
        node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
        value = self.loader.construct_object(node)
        self.loader.constructed_objects.clear()
        return value, tag

    def open(self, event: Any, is_map: bool) -> None:
        expected = PLAIN_TAGS["map" if is_map else "seq"]
        if event.tag not in (None, "!", expected):
            tag = str(event.tag).replace("tag:yaml.org,2002:", "!!")
            raise _Refused(event.start_mark, f"YAML tag {tag} is not allowed in a spec")
        if len(self.stack) >= MAX_YAML_DEPTH:
            raise _Refused(
                event.start_mark,
                NESTED_TOO_DEEP,
            )
        self.count(1, event.start_mark)
        self.stack.append(
            _Open(self.child_path(), {} if is_map else [], event.anchor, event.start_mark)
        )

    def close(self) -> None:
        done = self.stack.pop()
        value = done.value
        if done.merges:
            merged: dict[str, Any] = {}
            for source in done.merges:
                for key, item in source.items():
                    merged.setdefault(key, item)  # the earlier merge wins, as YAML says
            value = merged | value  # type: ignore[operator]
        self.attach(value, done.size, done.anchor, done.mark, None, False, None)

    def count(self, size: int, mark: Any) -> None:
        self.total += size
        if self.total > MAX_YAML_NODES:
            raise _Refused(
                mark,
                f"the YAML holds more than {MAX_YAML_NODES:,} values once its aliases are "
                "expanded; a spec is far smaller (is an alias repeated inside another?)",
            )

    def child_path(self) -> tuple[Any, ...]:
        if not self.stack:
            return ()
        top = self.stack[-1]
        if isinstance(top.value, list):
            return (*top.path, len(top.value))
        return (*top.path, top.key) if top.key is not None else top.path

    def attach(
        self,
        value: Any,
        size: int,
        anchor: str | None,
        mark: Any,
        text: str | None,
        plain: bool,
        tag: str | None,
    ) -> None:
        if anchor is not None:
            self.anchors[anchor] = (value, size)
        if not self.stack:
            self.root = value
            return
        top = self.stack[-1]
        top.size += size
        if isinstance(top.value, list):
            place = Place(mark.line + 1, mark.column + 1, text, plain)
            self.places[(*top.path, len(top.value))] = place
            top.value.append(value)
        elif top.key is None and not top.is_merge:
            self.take_key(top, value, mark, text, tag == MERGE_TAG)
        else:
            self.take_value(top, value, mark, text, plain)

    def take_key(self, top: _Open, value: Any, mark: Any, text: str | None, merge: bool) -> None:
        if isinstance(value, dict | list):
            raise _Refused(mark, "a key must be a name, not a list or a mapping")
        if merge:
            top.is_merge = True
            return
        key = text if text is not None else str(value)
        if key in top.key_lines:
            raise _Refused(
                mark,
                f"duplicate key `{key}` (first on line {top.key_lines[key]}, again on line "
                f"{mark.line + 1}); give each key once",
            )
        top.key_lines[key] = mark.line + 1
        top.key, top.key_mark = key, mark

    def take_value(self, top: _Open, value: Any, mark: Any, text: str | None, plain: bool) -> None:
        if top.is_merge:
            top.is_merge = False
            sources = value if isinstance(value, list) else [value]
            if not all(isinstance(source, dict) for source in sources):
                raise _Refused(mark, "`<<` merges a mapping or a list of mappings")
            top.merges.extend(sources)
            return
        assert isinstance(top.value, dict) and top.key is not None
        key_mark = top.key_mark
        self.places[(*top.path, top.key)] = Place(
            key_mark.line + 1, key_mark.column + 1, text, plain
        )
        top.value[top.key] = value
        top.key = None


def _describe_yaml_error(path: Path, text: str, error: Any) -> str:
    mark = error.problem_mark
    problem = (error.problem or str(error).splitlines()[0]).rstrip(".")
    line = mark.line + 1 if mark else None
    column = mark.column + 1 if mark else None
    hint = _yaml_hint(text, error)
    if "nesting depth" in problem:
        return at(path, line, column, NESTED_TOO_DEEP)
    if "expected a single document" in str(error.context or ""):
        problem = "a spec is one YAML document; remove the second `---` and what follows"
        return at(path, line, column, problem)
    return at(path, line, column, f"YAML syntax error: {problem}{hint}")


def _constructor_problem(error: Any) -> str:
    problem = str(error.problem)
    found = re.search(r"tag '([^']*)'", problem)
    if found:
        tag = found.group(1).replace("tag:yaml.org,2002:", "!!")
        return f"YAML tag {tag} is not allowed in a spec; write a plain value"
    return f"YAML error: {problem}"


def _yaml_hint(text: str, error: Any) -> str:
    """A hint for the usual mistakes, from the lines around the error."""
    mark = error.problem_mark
    if mark is None:
        return ""
    context = error.context_mark
    lines = text.splitlines()
    first = max(0, min(context.line if context is not None else mark.line, mark.line) - 1)
    nearby = list(enumerate(lines[first : mark.line + 1], start=first + 1))
    problem, where = str(error.problem), str(error.context or "")
    if (
        "tab" in problem
        or "'\\t'" in problem
        or any("\t" in line[: len(line) - len(line.lstrip())] for _, line in nearby)
    ):
        return "; YAML does not allow tabs for indentation: indent with spaces"
    if "quoted scalar" in where and context is not None:
        return f"; the quote opened on line {context.line + 1} is never closed"
    if "flow sequence" in where or "flow mapping" in where:
        bracket = "[" if "sequence" in where else "{"
        line = context.line + 1 if context is not None else mark.line + 1
        return f"; the `{bracket}` opened on line {line} is never closed, or a comma is missing"
    for number, line in reversed(nearby):
        found = MISSING_SPACE.match(line.split(" #", 1)[0]) if '"' not in line else None
        if found:
            fixed = f"{found.group(1)}: {found.group(2).strip()}"
            return f"; put a space after the colon on line {number}: `{fixed}`"
    if any(p in problem for p in ("mapping values are not allowed", "expected key", "<block end>")):
        return (
            "; check the indentation: the keys of one section start in the same column, "
            "and a section's entries are indented under it"
        )
    return ""


def _describe_reader_error(path: Path, text: str, error: Any) -> str:
    found = CONTROL_CHARACTER.search(text) or re.search(r"[\x80-\x9f\ufffe\uffff]", text)
    if found is None:
        return f"{shown_path(path)}: YAML error: {str(error).splitlines()[0]}"
    before = text[: found.start()]
    line = before.count("\n") + 1
    column = found.start() - (before.rfind("\n") + 1) + 1
    return at(
        path,
        line,
        column,
        f"control character U+{ord(found.group()):04X} is not allowed in YAML; "
        'remove it, or write it as an escape inside double quotes ("\\x..")',
    )
