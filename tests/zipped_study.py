"""The study of issue 12, run offline: two photos, each zipped with its own prompt, × 3 seeds
× 2 guidance values = 12 images.

It runs through `sweeper run --offline` (the built-in simulator on loopback), once
per test session; `zipped_run` hands each caller a private copy to write into.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner
from PIL import Image, ImageDraw

from sweeper.cli import main

REPO = Path(__file__).resolve().parent.parent
ASTRONAUT = REPO / "sweeps" / "inputs" / "astronaut.jpg"
PROMPTS = ("deep fog over the street", "neon rain at night")
SEEDS = (1, 2, 3)
GUIDANCES = (2.5, 5.0)
IMAGES = len(PROMPTS) * len(SEEDS) * len(GUIDANCES)

_pristine: dict[str, Path] = {}


def make_street_photo(path: Path) -> Path:
    """A second input photo, drawn: sky, road, a few lit windows."""
    image = Image.new("RGB", (320, 240), (90, 120, 170))
    draw = ImageDraw.Draw(image)
    draw.polygon([(0, 240), (320, 240), (190, 120), (130, 120)], fill=(60, 60, 64))
    for left in range(10, 300, 60):
        draw.rectangle([left, 60, left + 40, 150], fill=(140, 110, 80))
        draw.rectangle([left + 10, 80, left + 25, 100], fill=(250, 220, 120))
    image.save(path)
    return path


def write_zipped_spec(folder: Path) -> Path:
    street = make_street_photo(folder / "street.png")
    spec = folder / "zipped.yaml"
    spec.write_text(
        "name: zipped\n"
        "params:\n"
        "  megapixels: '0.25'\n"
        "  format: png\n"
        "grid:\n"
        f"  seed: {json.dumps(SEEDS)}\n"
        f"  guidance: {json.dumps(GUIDANCES)}\n"
        "zip:\n"
        f"  image: {json.dumps([str(ASTRONAUT), str(street)])}\n"
        f"  prompt: {json.dumps(PROMPTS)}\n"
        "run:\n"
        "  concurrency: 4\n"
        "  requests_per_minute: null\n",
        encoding="utf-8",
    )
    return spec


def run_spec_offline(spec: Path, out: Path) -> Path:
    result = CliRunner().invoke(main, ["run", str(spec), "--offline", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _pristine_run(folder: Path) -> Path:
    if "run" not in _pristine:
        source = Path(folder).parent / "zipped-study-pristine"
        source.mkdir(exist_ok=True)
        _pristine["run"] = run_spec_offline(write_zipped_spec(source), source / "run")
    return _pristine["run"]


def zipped_run(folder: Path, name: str = "run") -> Path:
    """A private copy, at folder/name, of the zipped study's finished run folder."""
    return Path(shutil.copytree(_pristine_run(folder), folder / name))


def zipped_rerun(folder: Path, name: str = "rerun") -> Path:
    """The same spec run again, from scratch, into folder/name (a second simulator, same bytes)."""
    spec = _pristine_run(folder).parent / "zipped.yaml"
    return run_spec_offline(spec, folder / name)
