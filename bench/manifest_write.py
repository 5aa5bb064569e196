"""Benchmark: write_manifest of a ROWS-row journal as CSV and Parquet (target < 15 s).

Builds a journal of ROWS finished jobs (one output each) once: the jobs come from
a real spec through Journal.add_jobs, then one SQL statement marks them done with
a realistic request_json and output row. Then times `write_manifest` (both files)
in a fresh child process RUNS times, as `sweeper run` does at the end of a run.

    python bench/manifest_write.py [ROWS] [RUNS]
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from measure import REPO, median, print_header, repeat
from plan_scale import write_spec

TARGET_S = 15.0

FINISH_JOBS = """
UPDATE jobs SET state = 'succeeded', attempts = 1, asset_path = 'development/images/a.jpg',
    record_uuid = lower(hex(randomblob(16))), submitted_at = 1.7e9 + idx,
    finished_at = 1.7e9 + idx + 20, latency_s = 20.0,
    request_json = json_object('type', 'IMAGE_EDITOR', 'model', model,
        'promptObject', json_object('imageUrl', 'development/images/a.jpg', 'prompt', prompt,
            'num_inference_steps', num_inference_steps, 'guidance', guidance, 'seed', seed,
            'output_quality', output_quality, 'megapixels', megapixels, 'format', format,
            'num_outputs', num_outputs, 'go_fast', json(iif(go_fast, 'true', 'false')),
            'disable_safety_checker', json(iif(disable_safety_checker, 'true', 'false'))))
"""
ADD_OUTPUTS = """
INSERT INTO outputs
SELECT job_id, 0, 'development/images/2025_10_27_' || job_id || '.webp',
    'https://storage.example/development/images/' || job_id || '.webp?X-Amz-Signature=x',
    'done', 'images/' || job_id || '_0.webp', lower(hex(randomblob(32))), 48213, 1024, 1024,
    NULL
FROM jobs
"""
CHILD = """
import json, sys, time
from pathlib import Path
started = time.perf_counter()
from sweeper.journal import Journal
from sweeper.manifest import write_manifest
run_dir = Path(sys.argv[1])
imported = time.perf_counter()
with Journal.open_existing(run_dir) as journal:
    rows = write_manifest(journal, run_dir)
print(json.dumps({"rows": rows, "import_s": imported - started,
                  "write_s": time.perf_counter() - imported}))
"""


def build_journal(run_dir: Path, rows: int) -> None:
    from sweeper.expand import expand_jobs
    from sweeper.journal import Journal
    from sweeper.spec import load_spec

    spec = load_spec(write_spec(run_dir, rows // 100))
    with Journal.open(run_dir) as journal:
        journal.add_jobs(expand_jobs(spec), "http://127.0.0.1:1")
    with sqlite3.connect(run_dir / "journal.sqlite", isolation_level=None) as db:
        db.execute("BEGIN")
        db.execute(FINISH_JOBS)
        db.execute(ADD_OUTPUTS)
        db.execute("COMMIT")


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    print_header(f"manifest write of {rows:,} rows, CSV + Parquet, {runs} runs")
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        started = time.perf_counter()
        build_journal(Path(folder), rows)
        print(f"  built the journal in {time.perf_counter() - started:.0f} s", flush=True)
        samples = repeat([sys.executable, "-c", CHILD, folder], runs)
    phases = [json.loads(s.stdout) for s in samples]
    seconds = median([s.seconds for s in samples])
    for name in ("import_s", "write_s"):
        print(f"  {name[:-2]}: median {median([p[name] for p in phases]):.2f} s")
    rss = median([s.peak_rss_mb for s in samples])
    print(f"median of {runs}: {seconds:.2f} s wall for the child, peak RSS {rss:.0f} MB")
    print(f"target < {TARGET_S:.0f} s: {'met' if seconds < TARGET_S else 'MISSED'}")


if __name__ == "__main__":
    main()
