"""Contact sheets: an X × Y grid of thumbnails per combination of the other axes.

Like the X/Y/Z plot of the Stable Diffusion web UIs: X values head the columns,
Y values label the rows, and every other varied axis gives one sheet per
combination, named in the sheet's title. Every sheet has the run's whole X × Y
grid, so a failed or missing cell is drawn as a labelled placeholder, never
skipped. Labels wrap to fit their boxes instead of running into the images.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw, ImageFont

from sweeper.report.axis_choice import OUTPUT_AXIS, axis_values

if TYPE_CHECKING:
    import pandas as pd

BACKGROUND = (255, 255, 255)
PLACEHOLDER = (96, 96, 96)
TEXT = (20, 20, 20)
PADDING = 8
FONT_SIZE = 16
LINE_HEIGHT = 20
TITLE_SIZE = 20
TITLE_LINE_HEIGHT = 26
PLACEHOLDER_SIZE = 14
PLACEHOLDER_LINE_HEIGHT = 18
MAX_LABEL_WIDTH = 240
MAX_HEADER_LINES = 6
# Where a label may break besides spaces: "num_inference_steps=20" has none.
BREAK_AFTER = re.compile(r"[^\s=_,/]*[=_,/]?\s*")


@dataclass(frozen=True)
class SheetLayout:
    """Pixel geometry of one sheet; pure, so tests can check it without drawing."""

    columns: int
    rows: int
    cell: int
    label_width: int = PADDING
    header_height: int = LINE_HEIGHT + PADDING
    title_height: int = TITLE_LINE_HEIGHT + PADDING

    @property
    def size(self) -> tuple[int, int]:
        width = self.label_width + self.columns * (self.cell + PADDING) + PADDING
        height = self.title_height + self.header_height + self.rows * (self.cell + PADDING)
        return width, height + PADDING

    def cell_origin(self, column: int, row: int) -> tuple[int, int]:
        x = self.label_width + PADDING + column * (self.cell + PADDING)
        y = self.title_height + self.header_height + row * (self.cell + PADDING)
        return x, y


@dataclass(frozen=True)
class SheetText:
    """A sheet's title and axis labels, broken into lines that fit their boxes."""

    title: list[str]
    columns: list[list[str]]
    rows: list[list[str]]


@dataclass(frozen=True)
class Sheet:
    file: str
    title: str
    layout: SheetLayout


def font(size: int = FONT_SIZE) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def wrap(text: str, width: float, size: int = FONT_SIZE, max_lines: int = 0) -> list[str]:
    """Lines of `text` no wider than `width` pixels; the last ends in … if cut short."""
    face = font(size)
    lines = [""]
    for token in BREAK_AFTER.findall(text):
        if face.getlength((lines[-1] + token).rstrip()) <= width:
            lines[-1] += token
            continue
        if lines[-1]:
            lines.append("")
        for char in token:  # a word too wide for a line of its own is split anywhere
            if lines[-1] and face.getlength((lines[-1] + char).rstrip()) > width:
                lines.append("")
            lines[-1] += char
    lines = [line.strip() for line in lines]
    if max_lines and len(lines) > max_lines:
        lines = lines[:max_lines]
        while lines[-1] and face.getlength(lines[-1] + "…") > width:
            lines[-1] = lines[-1][:-1]
        lines[-1] += "…"
    return lines


def lay_out(
    title: str, x_labels: list[str], y_labels: list[str], cell: int
) -> tuple[SheetLayout, SheetText]:
    """Geometry that fits every label: row labels as wide as the widest needs (up to a cap),
    headers as tall as the longest needs, the title as tall as it wraps to."""
    face = font()
    widest = max((face.getlength(label) for label in y_labels), default=0)
    label_width = PADDING + min(int(widest) + 1, MAX_LABEL_WIDTH)
    row_lines = max(1, cell // LINE_HEIGHT)
    rows = [wrap(label, label_width - PADDING, max_lines=row_lines) for label in y_labels]
    columns = [wrap(label, cell, max_lines=MAX_HEADER_LINES) for label in x_labels]
    header_lines = max((len(lines) for lines in columns), default=1)
    sheet_width = label_width + len(x_labels) * (cell + PADDING) + PADDING
    title_lines = wrap(title, sheet_width - 2 * PADDING, TITLE_SIZE)
    layout = SheetLayout(
        columns=len(x_labels),
        rows=len(y_labels),
        cell=cell,
        label_width=label_width,
        header_height=header_lines * LINE_HEIGHT + PADDING,
        title_height=len(title_lines) * TITLE_LINE_HEIGHT + PADDING,
    )
    return layout, SheetText(title_lines, columns, rows)


def _label(column: str | None, value: Any) -> str:
    return "" if column is None else f"{column}={value}"


def _cell_row(rows: pd.DataFrame, output_is_axis: bool) -> Any:
    """The manifest row shown in a cell: output 0 unless outputs are an axis."""
    if rows.empty:
        return None
    if not output_is_axis:
        first = rows[rows[OUTPUT_AXIS] == 0]
        rows = first if not first.empty else rows
    done = rows[rows["status"] == "succeeded"]
    return (done if not done.empty else rows).iloc[0]


def _placeholder(size: int, text: str) -> Image.Image:
    tile = Image.new("RGB", (size, size), PLACEHOLDER)
    draw = ImageDraw.Draw(tile)
    room = max(1, (size - 12) // PLACEHOLDER_LINE_HEIGHT)
    lines = wrap(text, size - 12, PLACEHOLDER_SIZE, max_lines=room)
    for number, line in enumerate(lines):
        top = 6 + number * PLACEHOLDER_LINE_HEIGHT
        draw.text((6, top), line, fill=(240, 240, 240), font=font(PLACEHOLDER_SIZE))
    return tile


HOLE_HEADINGS = {
    "failed": "failed",
    "lost": "lost (paid; its image could not be fetched)",
    "unanswered": "no answer (may have been billed)",
    "pending": "not finished",
}


def hole_label(row: Any) -> str:
    """What stands in for a manifest row that has no image to show, and why."""
    import pandas as pd

    status = str(row["status"])
    if status == "succeeded":
        return f"image file missing: {row['file']}"
    if status == "pending" and (pd.isna(row.get("attempts")) or not row.get("attempts")):
        return "not yet run"
    heading = HOLE_HEADINGS.get(status, status)
    error = row.get("error")
    # A null error comes back from Parquet as NaN, which must not read "nan".
    if error is None or pd.isna(error) or not str(error):
        return heading
    return f"{heading}: {str(error)[:200]}"


WhyMissing = Callable[[dict[str, Any]], str]


def _tile(
    row: Any, thumbs: dict[str, Path], size: int, cell: dict[str, Any], why_missing: WhyMissing
) -> Image.Image:
    if row is None:
        return _placeholder(size, why_missing(cell))
    if row["status"] != "succeeded" or row["file"] not in thumbs:
        return _placeholder(size, hole_label(row))
    with Image.open(thumbs[row["file"]]) as thumb:
        tile = Image.new("RGB", (size, size), BACKGROUND)
        tile.paste(thumb, ((size - thumb.width) // 2, (size - thumb.height) // 2))
        return tile


def draw_sheet(
    rows: pd.DataFrame,
    x: str | None,
    y: str | None,
    grid: tuple[list[Any], list[Any]],
    title: str,
    thumbs: dict[str, Path],
    cell: int,
    where: dict[str, Any] | None = None,
    why_missing: WhyMissing = lambda _cell: "not in this run",
) -> tuple[Image.Image, SheetLayout]:
    """One sheet of `rows`; `grid` is the X and Y values of the whole run, not just these rows.

    `where` is the sheet's own axis values (its Z combination); a cell with no row
    says why through `why_missing(values of its axes)`.
    """
    x_values, y_values = grid
    layout, text = lay_out(
        title, [_label(x, v) for v in x_values], [_label(y, v) for v in y_values], cell
    )
    sheet = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for number, line in enumerate(text.title):
        draw.text(
            (PADDING, PADDING // 2 + number * TITLE_LINE_HEIGHT), line, TEXT, font(TITLE_SIZE)
        )
    for column, lines in enumerate(text.columns):
        left, _ = layout.cell_origin(column, 0)
        for number, line in enumerate(lines):
            draw.text((left, layout.title_height + number * LINE_HEIGHT), line, TEXT, font())
    output_is_axis = OUTPUT_AXIS in (x, y)
    for row_number, (y_value, lines) in enumerate(zip(y_values, text.rows, strict=True)):
        _, top = layout.cell_origin(0, row_number)
        first = top + (cell - len(lines) * LINE_HEIGHT) // 2
        for number, line in enumerate(lines):
            draw.text((PADDING, first + number * LINE_HEIGHT), line, TEXT, font())
        for column, x_value in enumerate(x_values):
            match = rows
            if x:
                match = match[match[x] == x_value]
            if y:
                match = match[match[y] == y_value]
            values = {**(where or {}), **({x: x_value} if x else {}), **({y: y_value} if y else {})}
            tile = _tile(_cell_row(match, output_is_axis), thumbs, cell, values, why_missing)
            sheet.paste(tile, layout.cell_origin(column, row_number))
    return sheet, layout


def write_sheets(
    frame: pd.DataFrame,
    x: str | None,
    y: str | None,
    z: list[str],
    thumbs: dict[str, Path],
    report_dir: Path,
    cell: int,
    why_missing: WhyMissing = lambda _cell: "not in this run",
) -> list[Sheet]:
    """One PNG per combination of Z values: report/sheet-001.png, ..."""
    for old in report_dir.glob("sheet-*.png"):
        old.unlink()
    grid = (axis_values(frame, x) if x else [None], axis_values(frame, y) if y else [None])
    combos = itertools.product(*(axis_values(frame, c) for c in z)) if z else [()]
    sheets = []
    for number, combo in enumerate(combos, start=1):
        rows = frame
        for column, value in zip(z, combo, strict=True):
            rows = rows[rows[column] == value]
        title = ", ".join(_label(c, v) for c, v in zip(z, combo, strict=True)) or "all jobs"
        name = f"sheet-{number:03d}.png"
        where = dict(zip(z, combo, strict=True))
        image, layout = draw_sheet(rows, x, y, grid, title, thumbs, cell, where, why_missing)
        image.save(report_dir / name)
        sheets.append(Sheet(name, title, layout))
    return sheets
