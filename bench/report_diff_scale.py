"""Benchmark: time and peak RSS of `score`, the report's statistics and plots, and `diff`,
at IMAGES images (10,000 by default; pass 100000 for the large figure).

Two identical runs A and B come from one spec (seed × 4 guidance values × 5
step counts, tiny images) against the zero-latency simulator; C is a copy of B
with every image brightened, so that `diff A C` decodes and compares every
pair. Each step runs in a child process of its own, which gives its wall time
and its own peak RSS (target: under 1 GB at 100,000 images).

`--replicate K` then makes each run K times larger without sweeping again:
K copies of every manifest row with the seeds shifted past the sweep's, each
pointing at a hard link to the original image, and measures the same steps on
those (sweeping 100,000 jobs twice takes most of an hour on a busy 2-core
machine; the steps read the same kind of files either way).

    python bench/report_diff_scale.py [IMAGES] [--replicate K] [--steps STEP,...]
                                      [--scorer MODULE:FUNCTION]

STEP is score, report, diff-same (A vs B) or diff-differs (A vs C); all by
default, and only on the replicated runs when --replicate is given. `score`
uses the four built-in measures unless --scorer names one cheaper scorer (for
the memory of a large table without an hour of measuring).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from measure import SimulatorProcess, print_header, run_child, run_sweep
from PIL import Image, ImageEnhance

GUIDANCES = (2.5, 3.5, 5.0, 7.5)
STEPS = (20, 28, 40, 50, 60)
TARGET_RSS_MB = 1024.0

CHILD_CODE = {
    "score": (
        "from sweeper.score.scoring import score_run\n"
        "specs = sys.argv[2:]\n"
        "r = score_run(Path(sys.argv[1]), specs, builtin=not specs)\n"
        "assert r.failures == 0, r.first_errors\n"
        "print(r.describe())\n"
    ),
    "report": (
        "import pandas as pd\n"
        "from sweeper.report.plots import write_plots\n"
        "from sweeper.report.stats import default_measures, pivot, summarise\n"
        "from sweeper.score.table import join_scores, measure_columns, read_scores\n"
        "run = Path(sys.argv[1])\n"
        "scores = read_scores(run)\n"
        "frame = join_scores(pd.read_parquet(run / 'manifest.parquet'), scores)\n"
        "measures = default_measures(frame, measure_columns(scores))\n"
        "axes = ['seed', 'guidance', 'num_inference_steps']\n"
        "summary = summarise(frame, axes, measures)\n"
        "cells = pivot(frame, 'guidance', 'num_inference_steps', measures)\n"
        "plots = write_plots(summary, cells, run / 'report' / 'plots',"
        " x='guidance', y='num_inference_steps')\n"
        "print(f'{len(summary)} summary rows, {len(cells)} pivot rows, {len(plots)} plots')\n"
    ),
    "diff": (
        "from sweeper.diff import diff_runs\n"
        "print(diff_runs(Path(sys.argv[1]), Path(sys.argv[2])).summary)\n"
    ),
}


def write_spec(folder: Path, images: int) -> Path:
    seeds = images // (len(GUIDANCES) * len(STEPS))
    spec = folder / "scale.yaml"
    spec.write_text(
        "name: scale\n"
        "params:\n"
        f"  image: {Path(__file__).resolve().parent.parent / 'sweeps/inputs/astronaut.jpg'}\n"
        "  prompt: bench\n"
        "  megapixels: '0.25'\n"
        "  format: png\n"
        "grid:\n"
        f"  seed: {{start: 1, stop: {seeds}, step: 1}}\n"
        f"  guidance: {list(GUIDANCES)}\n"
        f"  num_inference_steps: {list(STEPS)}\n"
        "run:\n"
        "  concurrency: 32\n"
        "  requests_per_minute: null\n"
        "  request_timeout_s: 60\n"
    )
    return spec


def brightened_copy(source: Path, target: Path) -> None:
    shutil.copytree(source, target)
    for path in (target / "images").iterdir():
        with Image.open(path) as image:
            ImageEnhance.Brightness(image).enhance(1.2).save(path)


def replicated(run_dir: Path, target: Path, times: int) -> Path:
    """run_dir with every image `times` times over: new seeds, hard-linked files."""
    import pandas as pd

    (target / "images").mkdir(parents=True)
    shutil.copy2(run_dir / "journal.sqlite", target / "journal.sqlite")  # inputs' paths
    manifest = pd.read_parquet(run_dir / "manifest.parquet")
    seeds = int(manifest["seed"].max())
    copies = []
    for copy in range(times):
        rows = manifest.copy()
        rows["seed"] += copy * seeds
        rows["job_id"] = rows["job_id"] + f"-{copy}"
        rows["file"] = [f"images/{Path(f).stem}-{copy}{Path(f).suffix}" for f in manifest["file"]]
        for source, linked in zip(manifest["file"], rows["file"], strict=True):
            (target / linked).hardlink_to(run_dir / source)
        copies.append(rows)
    pd.concat(copies, ignore_index=True).to_parquet(target / "manifest.parquet")
    return target


BENCH_STEPS = ("score", "report", "diff-same", "diff-differs")


def measure_steps(runs: dict[str, Path], steps: list[str], scorer: list[str]) -> None:
    if "score" in steps:
        step("score", runs["a"], *scorer)
    if "report" in steps:
        step("report", runs["a"])
    if "diff-same" in steps:
        step("diff", runs["a"], runs["b"])
    if "diff-differs" in steps:
        step("diff", runs["a"], runs["c"])


def option(name: str, default: str) -> str:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def step(name: str, *args: Path | str) -> None:
    code = "import sys\nfrom pathlib import Path\n" + CHILD_CODE[name]
    sample = run_child([sys.executable, "-c", code, *map(str, args)])
    if sample.returncode != 0:
        raise SystemExit(f"{name} exited {sample.returncode}")
    verdict = "met" if sample.peak_rss_mb < TARGET_RSS_MB else "OVER"
    print(
        f"  {name} {' '.join(Path(p).name for p in args)}: {sample.seconds:.1f} s, "
        f"peak RSS {sample.peak_rss_mb:.0f} MB ({verdict}) -- {sample.stdout.strip()}",
        flush=True,
    )


def main() -> None:
    images = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 10_000
    times = int(option("--replicate", "1"))
    steps = option("--steps", ",".join(BENCH_STEPS)).split(",")
    scorer = [option("--scorer", "")] if "--scorer" in sys.argv else []
    if unknown := set(steps) - set(BENCH_STEPS):
        raise SystemExit(f"unknown steps {sorted(unknown)}; choose from {', '.join(BENCH_STEPS)}")
    print_header(f"score, report statistics and plots, diff at {images:,} images")
    with (
        SimulatorProcess("--latency", "0", "--tiny-images") as sim,
        tempfile.TemporaryDirectory(dir="/tmp") as folder,
    ):
        spec = write_spec(Path(folder), images)
        runs = {}
        for name in ("a", "b"):
            runs[name] = Path(folder) / name
            run = run_sweep(sim.base_url, spec, runs[name])
            print(f"  sweep {name}: {run.sample.seconds:.0f} s ({run.jobs_per_s:.0f} jobs/s)")
        started = time.perf_counter()
        runs["c"] = Path(folder) / "c"
        brightened_copy(runs["b"], runs["c"])
        print(f"  c = b with every image brightened: {time.perf_counter() - started:.0f} s")
        if times == 1:
            measure_steps(runs, steps, scorer)
        else:
            started = time.perf_counter()
            large = {k: replicated(v, Path(folder) / f"{k}{times}", times) for k, v in runs.items()}
            print(
                f"# the same runs replicated x{times}: {images * times:,} images each "
                f"({time.perf_counter() - started:.0f} s to link)",
                flush=True,
            )
            measure_steps(large, steps, scorer)


if __name__ == "__main__":
    main()
