"""Nightly runs: drift is noticed, history is kept, machines read the outcome, people get told.

Each run goes through the real CLI in a child process against a simulator whose
counters say what was sent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from sweeper.simulator import FaultRule, SimulatorConfig, SimulatorThread

REPO = Path(__file__).resolve().parent.parent
PHOTO = REPO / "sweeps" / "inputs" / "astronaut.jpg"


def write_spec(folder: Path, seeds: str = "[1, 2]") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "photo.png").exists():
        with Image.open(PHOTO) as image:
            image.save(folder / "photo.png")
    spec = folder / "nightly.yaml"
    spec.write_text(
        "name: nightly\n"
        "params:\n"
        "  image: photo.png\n"
        "  prompt: the same study every night\n"
        "  megapixels: '0.25'\n"
        "  format: webp\n"
        "grid:\n"
        f"  seed: {seeds}\n"
        "  guidance: [2.5, 5]\n"
        "run:\n"
        "  concurrency: 2\n"
        "  requests_per_minute: null\n"
    )
    return spec


def sweeper(*argv: str, base: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"ONEMIN_API_KEY": "sk-nightly-test", "ONEMIN_API_BASE": base}
    env.pop("SWEEPER_NOTIFY", None)
    return subprocess.run(
        [sys.executable, "-m", "sweeper", *argv],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_replaced_input_is_refused_until_accepted_and_then_only_its_jobs_run(tmp_path):
    spec = write_spec(tmp_path)
    with SimulatorThread(SimulatorConfig()) as sim:
        first = sweeper("run", str(spec), "--out", "run", base=sim.base_url, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        with Image.open(tmp_path / "photo.png") as image:
            image.putpixel((0, 0), (255, 0, 255))  # one pixel
            image.save(tmp_path / "photo.png")
        sent = (sim.state.counters["uploads"], sim.state.counters["features"])
        refused = sweeper("run", str(spec), "--out", "run", base=sim.base_url, cwd=tmp_path)
        assert refused.returncode == 2, refused.stderr
        [line] = refused.stderr.strip().splitlines()[-1:]
        assert "photo.png" in line and "--accept-changes" in line
        assert (sim.state.counters["uploads"], sim.state.counters["features"]) == sent
        accepted = sweeper(
            "run", str(spec), "--out", "run", "--accept-changes", base=sim.base_url, cwd=tmp_path
        )
        assert accepted.returncode == 0, accepted.stderr
        assert sim.state.counters["features"] == sent[1] + 4  # exactly the changed photo's jobs
    rows = pd.read_parquet(tmp_path / "run" / "manifest.parquet")
    assert len(rows) == 8 and rows["in_spec"].sum() == 4  # the old jobs kept, out of the spec


def test_an_edited_spec_keeps_old_rows_out_of_the_report_unless_all(tmp_path):
    spec = write_spec(tmp_path, seeds="[1, 2, 3]")
    with SimulatorThread(SimulatorConfig()) as sim:
        assert sweeper("run", str(spec), "--out", "run", base=sim.base_url,
                       cwd=tmp_path).returncode == 0  # fmt: skip
        write_spec(tmp_path, seeds="[1, 2]")  # seed 3 dropped
        again = sweeper("run", str(spec), "--out", "run", base=sim.base_url, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
    rows = pd.read_parquet(tmp_path / "run" / "manifest.parquet")
    assert rows.loc[rows["seed"] == 3, "in_spec"].tolist() == [False, False]
    assert rows.loc[rows["seed"] != 3, "in_spec"].all()
    for flags, seeds in (([], "1, 2"), (["--all"], "1, 2, 3")):
        report = sweeper("report", "run", "--thumb", "32", *flags, base="", cwd=tmp_path)
        assert report.returncode == 0, report.stderr
        summary = pd.read_csv(tmp_path / "run" / "report" / "summary.csv", dtype={"value": str})
        shown = summary.loc[(summary["axis"] == "seed") & (summary["measure"] == "bytes"), "value"]
        assert ", ".join(map(str, shown)) == seeds


def test_plan_status_and_the_run_agree_on_what_is_done_and_what_a_rerun_sends(tmp_path):
    spec = write_spec(tmp_path, seeds="[1, 2, 3]")
    faults = [
        FaultRule("features", "status", status=422, message="refused"),
        FaultRule("features", "billed_drop", after=1),
        FaultRule("storage", "expired", after=1),
    ]
    with SimulatorThread(SimulatorConfig(faults=faults)) as sim:
        ran = sweeper("run", str(spec), "--out", "run", "--json", base=sim.base_url, cwd=tmp_path)
    assert ran.returncode == 1, ran.stderr
    record = json.loads(ran.stdout)  # nothing else on stdout
    jobs = record["jobs"]
    assert (jobs["failed"], jobs["unanswered"], jobs["lost"]) == (1, 1, 1)
    plan = sweeper("plan", str(spec), "--out", "run", "--json", base="", cwd=tmp_path)
    existing = json.loads(plan.stdout)["existing"]
    status = sweeper("status", "run", "--spec", str(spec), "--json", base="", cwd=tmp_path)
    tally = json.loads(status.stdout)["spec"]
    for counts in (existing, tally):
        assert counts["done"] == jobs["succeeded"] == 3
        assert (counts["failed"], counts["unanswered"], counts["lost"]) == (1, 1, 1)
    assert existing["to_send"] == json.loads(status.stdout)["to_send"] == 1
    text = sweeper("status", "run", "--spec", str(spec), base="", cwd=tmp_path).stdout
    assert "a rerun would send 1 request" in text


def test_every_run_is_kept_in_the_history(tmp_path):
    spec = write_spec(tmp_path)
    with SimulatorThread(SimulatorConfig()) as sim:
        for _ in range(2):
            done = sweeper("run", str(spec), "--out", "run", base=sim.base_url, cwd=tmp_path)
            assert done.returncode == 0, done.stderr
    records = [json.loads((tmp_path / "run" / "runs" / f"{n}.json").read_text()) for n in (1, 2)]
    assert [r["this_run"]["requests"] for r in records] == [4, 0]
    assert [r["run_number"] for r in records] == [1, 2]
    assert records[0]["command"].startswith("sweeper run ")
    assert records[0]["cwd"] == str(tmp_path) and records[0]["spec_path"] == str(spec)
    listed = sweeper("history", "run", base="", cwd=tmp_path)
    assert listed.returncode == 0
    lines = listed.stdout.strip().splitlines()
    assert len(lines) == 3 and "complete" in lines[1] and "complete" in lines[2]
    as_json = json.loads(sweeper("history", "run", "--json", base="", cwd=tmp_path).stdout)
    assert [r["run_number"] for r in as_json] == [1, 2]


class Receiver:
    """A local HTTP server that keeps every POSTed JSON body."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/secret-token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_notify_posts_the_record_once_and_a_dead_url_changes_nothing(tmp_path):
    spec = write_spec(tmp_path)
    receiver = Receiver()
    try:
        with SimulatorThread(SimulatorConfig()) as sim:
            told = sweeper("run", str(spec), "--out", "run", "--notify", receiver.url,
                           base=sim.base_url, cwd=tmp_path)  # fmt: skip
            nobody = "http://127.0.0.1:9/nobody"
            dead = sweeper("run", str(spec), "--out", "run", "--notify", nobody,
                           base=sim.base_url, cwd=tmp_path)  # fmt: skip
    finally:
        receiver.close()
    assert told.returncode == 0, told.stderr
    [body] = receiver.bodies
    assert body["outcome"] == "complete" and body["text"].startswith("sweeper nightly: complete")
    assert "secret-token" not in told.stderr + told.stdout
    assert dead.returncode == 0, dead.stderr
    assert "could not notify 127.0.0.1" in dead.stderr and "/nobody" not in dead.stderr


@pytest.mark.parametrize("url", ["ftp://example.com/x", "not a url"])
def test_a_notify_url_that_cannot_work_is_refused_before_anything_is_sent(tmp_path, url):
    spec = write_spec(tmp_path)
    refused = sweeper("run", str(spec), "--offline", "--out", "run", "--notify", url,
                      base="", cwd=tmp_path)  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert not (tmp_path / "run").exists()
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_max_credits_is_never_passed_and_the_run_stops_with_reason_budget(tmp_path):
    spec = write_spec(tmp_path, seeds="[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]")  # 20 jobs, 14,000
    concurrency = 2
    with SimulatorThread(SimulatorConfig(credits_per_image=700)) as sim:
        ran = sweeper("run", str(spec), "--out", "run", "--max-credits", "10000", "--concurrency",
                      str(concurrency), base=sim.base_url, cwd=tmp_path)  # fmt: skip
        billed = sim.state.counters["billed_images"] * 700
    assert ran.returncode == 3, ran.stderr
    assert 10_000 - (concurrency + 1) * 700 <= billed <= 10_000
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (record["outcome"], record["reason"]) == ("stopped", "budget")
    assert record["credits"]["spent"] == billed and record["credits"]["price"] == 700
    assert record["credits"]["price_source"] == "learned"
    plan = sweeper("plan", str(spec), "--json", base=sim.base_url, cwd=tmp_path)
    assert json.loads(plan.stdout)["credits"] == 20 * 700  # the price is remembered


def test_max_requests_counts_what_was_sent(tmp_path):
    spec = write_spec(tmp_path, seeds="[1, 2, 3]")
    with SimulatorThread(SimulatorConfig()) as sim:
        ran = sweeper("run", str(spec), "--out", "run", "--max-requests", "4",
                      base=sim.base_url, cwd=tmp_path)  # fmt: skip
        sent = sim.state.counters["features"]
    assert ran.returncode == 3 and sent == 4
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["reason"] == "max_requests" and record["jobs"]["pending"] == 2


def test_auto_rate_finds_a_concurrency_cap_and_every_job_succeeds(tmp_path):
    spec = write_spec(tmp_path, seeds="[1, 2, 3, 4, 5, 6]")
    # Fast enough from the start that 8 would be in flight: the server allows 2.
    spec.write_text(spec.read_text().replace("concurrency: 2", "concurrency: 8\n  rpm_start: 3000"))
    config = SimulatorConfig(max_concurrent=2, latency_s=0.3, rate_limit_retry_after_s=0.1)
    with SimulatorThread(config) as sim:
        ran = sweeper("run", str(spec), "--out", "run", "--rpm", "auto",
                      base=sim.base_url, cwd=tmp_path)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["rate"]["adaptive"] is True and record["rate"]["concurrency"] <= 2
    assert record["jobs"]["succeeded"] == 12
