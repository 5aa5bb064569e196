"""A hostile server: redirects, bombs, deep JSON, odd answers; the key never leaves the API host.

Every case runs the engine against the simulator over real HTTP, with the fault
a hostile or broken server (or anything on the path) could produce, and checks
that the run goes on with a clear, recorded reason.
"""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys

import pytest
from aiohttp import web
from engine_run import KEY, REPO, feature_requests, manifest, run_sweep, write_spec
from loopback import serve

from sweeper.errors import ApiRedirected
from sweeper.simulator import FaultRule, SimulatorConfig, SimulatorThread, run_simulator


class Recorder:
    """A second HTTP server that records every request and the headers it came with."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(dict(request.headers))
        return web.json_response({"message": "got it"})


@pytest.mark.parametrize("endpoint", ["features", "assets"])
async def test_a_redirecting_api_gets_no_second_request_carrying_the_key(tmp_path, endpoint):
    spec = write_spec(tmp_path, [1], outputs=1)
    recorder = Recorder()
    async with serve(recorder.handle) as elsewhere:
        redirect = FaultRule(endpoint, "redirect", status=307, location=f"{elsewhere}/steal")
        async with run_simulator(SimulatorConfig(faults=[redirect])) as sim:
            with pytest.raises(ApiRedirected) as refused:
                await run_sweep(spec, tmp_path / "run", sim.base_url)
    assert recorder.requests == []  # not followed at all, so the key went nowhere
    assert "127.0.0.1" in str(refused.value) and "redirect" in str(refused.value)
    assert refused.value.exit_code == 3 and refused.value.result.reason == "redirect"


async def test_a_download_may_follow_a_redirect_but_only_a_few_and_only_to_http(tmp_path):
    from sweeper.downloads import download_output

    hops = {"n": 0}

    async def bounce(request: web.Request) -> web.StreamResponse:
        hops["n"] += 1
        raise web.HTTPFound(location=request.query.get("to", "/again"))

    import aiohttp

    from sweeper.errors import JobError

    async with serve(bounce) as base, aiohttp.ClientSession() as session:
        with pytest.raises(JobError, match="redirected more than 5 times"):
            await download_output(session, f"{base}/again", tmp_path, "images/a.png", "png")
        assert hops["n"] == 6  # the first answer and the 5 redirects followed: bounded
        with pytest.raises(JobError, match="not http"):
            await download_output(
                session, f"{base}/file?to=file:///etc/passwd", tmp_path, "images/b.png", "png"
            )


async def test_a_gzip_bomb_answer_stops_at_the_cap_and_counts_as_unanswered(tmp_path):
    spec = write_spec(tmp_path, [1, 2], outputs=1)
    bomb = FaultRule("features", "gzip_bomb", size_mb=64)
    async with run_simulator(SimulatorConfig(faults=[bomb])) as sim:
        result = await run_sweep(spec, tmp_path / "run", sim.base_url, max_response_mb=1)
    assert result.this_run.unanswered_attempts == 1 and result.unanswered == 1
    assert result.succeeded == 3  # the run went on
    [row] = manifest(tmp_path / "run").query("status == 'unanswered'").to_dict("records")
    assert "over 1,048,576 bytes" in row["error"]


@pytest.mark.parametrize(("status", "outcome"), [(500, "retried"), (200, "unanswered")])
async def test_deeply_nested_json_never_crashes_the_run(tmp_path, status, outcome):
    spec = write_spec(tmp_path, [1], outputs=1)
    deep = FaultRule("features", "deep_json", status=status)
    async with run_simulator(SimulatorConfig(faults=[deep])) as sim:
        result = await run_sweep(spec, tmp_path / "run", sim.base_url)
    if outcome == "retried":  # an error status is an answer: retried as a 500 is
        assert result.succeeded == 2 and result.this_run.unanswered_attempts == 0
    else:
        assert result.unanswered == 1 and result.succeeded == 1


async def test_a_decompression_bomb_image_loses_its_job_and_the_run_goes_on(tmp_path):
    spec = write_spec(tmp_path, [1, 2], outputs=1)
    bomb = FaultRule("storage", "bomb_image", times=4)  # every try of the first download
    async with run_simulator(SimulatorConfig(faults=[bomb])) as sim:
        result = await run_sweep(spec, tmp_path / "run", sim.base_url, concurrency=1)
        rerun = await run_sweep(spec, tmp_path / "run", sim.base_url)
    assert (result.lost, result.succeeded) == (1, 3)
    assert rerun.lost == 0 and rerun.exit_code == 0  # its link lives: fetched on the rerun
    lost = manifest(tmp_path / "run")
    assert set(lost["status"]) == {"succeeded"}


async def test_garbage_bytes_are_never_kept_and_are_fetched_again(tmp_path):
    spec = write_spec(tmp_path, [1], outputs=1)
    garbage = FaultRule("storage", "garbage", times=1)
    async with run_simulator(SimulatorConfig(faults=[garbage])) as sim:
        result = await run_sweep(spec, tmp_path / "run", sim.base_url, concurrency=1)
        assert sim.state.counters["storage"] == 3  # the garbage, again, and the other image
    assert result.exit_code == 0
    for row in manifest(tmp_path / "run").itertuples():
        from PIL import Image

        with Image.open(tmp_path / "run" / row.file) as image:
            image.load()


async def test_a_download_that_is_always_garbage_loses_the_job_with_its_reason(tmp_path):
    spec = write_spec(tmp_path, [1], outputs=1)
    garbage = FaultRule("storage", "garbage", times=4)
    async with run_simulator(SimulatorConfig(faults=[garbage])) as sim:
        result = await run_sweep(spec, tmp_path / "run", sim.base_url, concurrency=1)
    assert result.lost == 1
    [row] = manifest(tmp_path / "run").query("status == 'lost'").to_dict("records")
    assert "is not an image file" in row["error"]
    assert not list((tmp_path / "run" / "images").glob("*_0.png"))[1:]


async def test_the_answer_is_committed_before_its_download_starts(tmp_path):
    spec = write_spec(tmp_path, [1], outputs=1)
    seen: list[tuple] = []
    run_dir = tmp_path / "run"

    slow = FaultRule("storage", "latency", delay_s=0.5, times=1)
    async with run_simulator(SimulatorConfig(faults=[slow])) as sim:
        import asyncio

        async def look_while_downloading() -> None:
            while sim.state.counters["storage"] == 0:  # noqa: ASYNC110 (a counter, no event)
                await asyncio.sleep(0.005)
            uri = f"{(run_dir / 'journal.sqlite').as_uri()}?mode=ro"
            with sqlite3.connect(uri, uri=True) as db:  # another connection: only what is committed
                seen.extend(
                    db.execute(
                        "SELECT j.state, j.record_uuid, o.url FROM jobs j JOIN outputs o "
                        "USING (job_id) WHERE o.status = 'pending'"
                    ).fetchall()
                )

        watcher = asyncio.ensure_future(look_while_downloading())
        await run_sweep(spec, run_dir, sim.base_url, concurrency=1)
        await watcher
    assert seen and all(state == "generated" and uuid and url for state, uuid, url in seen)


async def test_more_results_than_asked_keep_exactly_num_outputs_rows(tmp_path, caplog):
    spec = write_spec(tmp_path, [1, 2], outputs=1)  # 4 jobs
    extra = FaultRule("features", "extra_results", extra=9, times=4)
    async with run_simulator(SimulatorConfig(faults=[extra])) as sim:
        with caplog.at_level(logging.WARNING, logger="sweeper"):
            result = await run_sweep(spec, tmp_path / "run", sim.base_url)
    assert len(manifest(tmp_path / "run")) == 4 and result.succeeded == 4
    assert sum("9 more images than the 1 asked for" in r.message for r in caplog.records) == 4


async def test_fewer_urls_than_images_loses_the_missing_one(tmp_path):
    spec = write_spec(tmp_path, [1], outputs=2)
    missing = FaultRule("features", "missing_url", times=1)
    async with run_simulator(SimulatorConfig(faults=[missing])) as sim:
        result = await run_sweep(spec, tmp_path / "run", sim.base_url, concurrency=1)
        sent = feature_requests(sim)
    assert (result.lost, result.succeeded, sent) == (1, 1, 2)
    rows = manifest(tmp_path / "run")
    [lost] = rows.query("status == 'lost'").to_dict("records")  # the image without a URL
    assert lost["output_index"] == 1 and "no URL" in lost["error"]
    assert (rows["status"] == "succeeded").sum() == 3


async def test_a_forgotten_upload_is_uploaded_again_once_and_the_job_retried(tmp_path):
    spec = write_spec(tmp_path, [1], outputs=1)
    forget = FaultRule("features", "forget_assets", after=1, times=1)
    async with run_simulator(SimulatorConfig(faults=[forget])) as sim:
        result = await run_sweep(spec, tmp_path / "run", sim.base_url, concurrency=1)
        uploads = sim.state.counters["uploads"]
    assert result.exit_code == 0 and uploads == 2


async def test_the_key_appears_in_no_file_and_no_output_whatever_fails(tmp_path, caplog):
    spec = write_spec(tmp_path, [1, 2], outputs=1)
    faults = [
        FaultRule("features", "echo_key", status=400),
        FaultRule("features", "echo_key", status=500),
        FaultRule("features", "billed_drop"),
        FaultRule("storage", "expired"),
        FaultRule("assets", "echo_key", status=503),
    ]
    caplog.set_level(logging.DEBUG)
    async with run_simulator(SimulatorConfig(api_key=KEY, faults=faults)) as sim:
        await run_sweep(spec, tmp_path / "run", sim.base_url)
        assert sim.state.counters["storage_requests_with_key"] == 0
    async with run_simulator(SimulatorConfig(api_key="another-key")) as sim:
        from sweeper.errors import AuthError

        with pytest.raises(AuthError) as rejected:
            await run_sweep(spec, tmp_path / "other", sim.base_url)
    assert KEY not in str(rejected.value)
    assert KEY not in caplog.text
    for path in [*(tmp_path / "run").rglob("*"), *(tmp_path / "other").rglob("*")]:
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_a_key_with_a_line_break_is_refused_before_any_request(tmp_path):
    spec = write_spec(tmp_path, [1], outputs=1)
    with SimulatorThread(SimulatorConfig()) as sim:
        env = {"ONEMIN_API_KEY": "sk-abc\ndef", "ONEMIN_API_BASE": sim.base_url, "PATH": ""}
        done = subprocess.run(
            [sys.executable, "-m", "sweeper", "run", str(spec), "--out", str(tmp_path / "r")],
            env=env,
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
        requests = sim.state.counters["uploads"] + sim.state.counters["features"]
    assert done.returncode == 2, done.stderr
    assert (
        done.stderr.strip()
        == "sweeper: error: the API key contains a line break; check ONEMIN_API_KEY"
    )
    assert requests == 0 and not (tmp_path / "r").exists()


def test_a_closed_pipe_exits_quietly(tmp_path):
    done = subprocess.run(
        f"{sys.executable} -m sweeper plan {REPO / 'sweeps' / 'portrait-depth-study.yaml'} "
        "--limit 1000 --max-jobs 1000 | head -c 10",
        shell=True,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.stderr == "" and done.returncode == 0
