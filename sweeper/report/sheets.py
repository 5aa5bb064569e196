"""Contact sheets: an X × Y grid of thumbnails per combination of the other axes.

Like the X/Y/Z plot of the Stable Diffusion web UIs: X values head the columns,
Y values label the rows, and every other varied axis gives one sheet per
combination, named in the sheet's title. A failed or missing cell is drawn as a
labelled placeholder, never skipped.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw, ImageFont

from sweeper.report.axes import OUTPUT_AXIS, axis_values

if TYPE_CHECKING:
    import pandas as pd

BACKGROUND = (255, 255, 255)
PLACEHOLDER = (96, 96, 96)
TEXT = (20, 20, 20)
PADDING = 8
FONT_SIZE = 16


@dataclass(frozen=True)
class SheetLayout:
    """Pixel geometry of one sheet; pure, so tests can check it without drawing."""

    columns: int
    rows: int
    cell: int
    label_width: int = 140
    header_height: int = 28
    title_height: int = 36

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
class Sheet:
    file: str
    title: str


def font(size: int = FONT_SIZE) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


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
    words, line, lines = text.split(), "", []
    for word in words:
        if len(line) + len(word) > max(8, size // 9):
            lines.append(line)
            line = ""
        line = f"{line} {word}".strip()
    lines.append(line)
    for number, text_line in enumerate(lines[:6]):
        draw.text((6, 6 + number * 18), text_line, fill=(240, 240, 240), font=font(14))
    return tile


def _tile(row: Any, thumbs: dict[str, Path], size: int) -> Image.Image:
    if row is None:
        return _placeholder(size, "missing")
    if row["status"] != "succeeded" or row["file"] not in thumbs:
        reason = str(row["error"] or row["status"])[:80]
        return _placeholder(size, f"{row['status']}: {reason}")
    with Image.open(thumbs[row["file"]]) as thumb:
        tile = Image.new("RGB", (size, size), BACKGROUND)
        tile.paste(thumb, ((size - thumb.width) // 2, (size - thumb.height) // 2))
        return tile


def draw_sheet(
    rows: pd.DataFrame,
    x: str | None,
    y: str | None,
    title: str,
    thumbs: dict[str, Path],
    cell: int,
) -> Image.Image:
    x_values = axis_values(rows, x) if x else [None]
    y_values = axis_values(rows, y) if y else [None]
    layout = SheetLayout(columns=len(x_values), rows=len(y_values), cell=cell)
    sheet = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    draw.text((PADDING, PADDING), title, fill=TEXT, font=font(20))
    output_is_axis = OUTPUT_AXIS in (x, y)
    for column, x_value in enumerate(x_values):
        left, top = layout.cell_origin(column, 0)
        draw.text(
            (left, top - layout.header_height + 4), _label(x, x_value), fill=TEXT, font=font()
        )
    for row_number, y_value in enumerate(y_values):
        left, top = layout.cell_origin(0, row_number)
        draw.text((PADDING, top + cell // 2 - 8), _label(y, y_value), fill=TEXT, font=font())
        for column, x_value in enumerate(x_values):
            match = rows
            if x:
                match = match[match[x] == x_value]
            if y:
                match = match[match[y] == y_value]
            tile = _tile(_cell_row(match, output_is_axis), thumbs, cell)
            sheet.paste(tile, layout.cell_origin(column, row_number))
    return sheet


def write_sheets(
    frame: pd.DataFrame,
    x: str | None,
    y: str | None,
    z: list[str],
    thumbs: dict[str, Path],
    report_dir: Path,
    cell: int,
) -> list[Sheet]:
    """One PNG per combination of Z values: report/sheet-001.png, ..."""
    for old in report_dir.glob("sheet-*.png"):
        old.unlink()
    combos = itertools.product(*(axis_values(frame, c) for c in z)) if z else [()]
    sheets = []
    for number, combo in enumerate(combos, start=1):
        rows = frame
        for column, value in zip(z, combo, strict=True):
            rows = rows[rows[column] == value]
        title = ", ".join(_label(c, v) for c, v in zip(z, combo, strict=True)) or "all jobs"
        name = f"sheet-{number:03d}.png"
        draw_sheet(rows, x, y, title, thumbs, cell).save(report_dir / name)
        sheets.append(Sheet(name, title))
    return sheets
