"""Benchmark: how many 1 MP images `score` measures per second per core.

Makes IMAGES real 1 MP outputs with an offline sweep (PNG, the built-in
simulator), then times each built-in measure on its own (ms per image, one
core) and the whole `score_run` with the four built-ins at 1 and at every core.

    python bench/score_throughput.py [IMAGES] [REPEATS]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from measure import REPO, print_header, repeat, sweeper_argv
from PIL import Image, ImageOps

from sweeper.score.measures import BUILTIN_MEASURES
from sweeper.score.scoring import score_run
from sweeper.score.table import SCORES_FILE


def write_spec(folder: Path, images: int) -> Path:
    spec = folder / "score-bench.yaml"
    spec.write_text(
        "name: score-bench\n"
        "params:\n"
        f"  image: {REPO / 'sweeps/inputs/astronaut.jpg'}\n"
        "  prompt: bench\n"
        "  megapixels: '1'\n"
        "  format: png\n"
        "grid:\n"
        f"  seed: {{start: 1, stop: {images}, step: 1}}\n"
        "run:\n"
        "  concurrency: 4\n"
        "  requests_per_minute: null\n"
    )
    return spec


def per_measure_ms(run_dir: Path) -> dict[str, float]:
    source = ImageOps.exif_transpose(Image.open(REPO / "sweeps/inputs/astronaut.jpg"))
    source = source.convert("RGB")
    outputs = [Image.open(p).convert("RGB") for p in sorted((run_dir / "images").iterdir())]
    timings = {}
    for measure in BUILTIN_MEASURES:
        seconds = []
        for output in outputs:
            started = time.perf_counter()
            measure(output, source, {})
            seconds.append(time.perf_counter() - started)
        timings[measure.__name__] = statistics.median(seconds) * 1000
    return timings


def timed_score(run_dir: Path, workers: int, repeats: int) -> float:
    """Median wall seconds of score_run with the built-ins, from an empty scores table."""
    seconds = []
    for _ in range(repeats):
        (run_dir / SCORES_FILE).unlink(missing_ok=True)
        started = time.perf_counter()
        result = score_run(run_dir, workers=workers)
        seconds.append(time.perf_counter() - started)
        assert result.failures == 0, result.first_errors
    return statistics.median(seconds)


def main() -> None:
    images = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    cores = len(os.sched_getaffinity(0))
    print_header(f"score throughput: {images} images of 1 MP, 4 built-in measures")
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        run_dir = Path(folder) / "run"
        argv = sweeper_argv("run", str(write_spec(Path(folder), images)), "--offline")
        repeat([*argv, "--out", str(run_dir)], 1)
        with Image.open(next((run_dir / "images").iterdir())) as sample:
            print(f"  outputs: {images} PNG images of {sample.width}x{sample.height}")
        timings = per_measure_ms(run_dir)
        for name, ms in timings.items():
            print(f"  {name}: {ms:.0f} ms per image (median, one core)")
        print(f"  sum of the four: {sum(timings.values()):.0f} ms per image")
        for workers in sorted({1, cores}):
            seconds = timed_score(run_dir, workers, repeats)
            rate = images / seconds
            print(
                f"  score_run, {workers} worker(s): {seconds:.2f} s for {images} images = "
                f"{rate:.2f} images/s, {rate / workers:.2f} images/s per core "
                f"(median of {repeats})",
                flush=True,
            )


if __name__ == "__main__":
    main()
