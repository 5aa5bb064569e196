"""Thumbnails of every downloaded image, under DIR/report/thumbs/."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:
    import pandas as pd


def make_thumbnails(frame: pd.DataFrame, run_dir: Path, report_dir: Path, size: int) -> dict:
    """Manifest `file` → thumbnail path, for every succeeded row whose image exists."""
    folder = report_dir / "thumbs"
    folder.mkdir(parents=True, exist_ok=True)
    thumbs: dict[str, Path] = {}
    for file in frame.loc[frame["status"] == "succeeded", "file"].dropna().unique():
        source = run_dir / file
        if not source.is_file():
            continue
        target = folder / (Path(file).stem + ".jpg")
        with Image.open(source) as image:
            image.thumbnail((size, size))
            image.convert("RGB").save(target, "JPEG", quality=85)
        thumbs[file] = target
    return thumbs
