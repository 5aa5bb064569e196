"""The Python API as a script or a notebook meets it: `import sweeper`, in and out of a loop.

Scripts run in a child process, so that what the library prints (nothing, with
progress=False) and how it handles a real SIGINT are what a user would see.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import sweeper
from sweeper.errors import SpecError

REPO = Path(__file__).resolve().parent.parent
PHOTO = REPO / "sweeps" / "inputs" / "astronaut.jpg"
JOBS = 6


def write_spec(folder: Path) -> Path:
    spec = folder / "api.yaml"
    spec.write_text(
        "name: api\n"
        "params:\n"
        f"  image: {PHOTO}\n"
        "  prompt: a quiet study of depth\n"
        "  megapixels: '0.25'\n"
        "  format: png\n"
        "grid:\n"
        "  seed: [1, 2, 3]\n"
        "  guidance: [2.5, 5]\n"
        "run:\n"
        "  concurrency: 3\n"
        "  requests_per_minute: null\n"
    )
    return spec


def run_script(body: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    script = cwd / "script.py"
    script.write_text(textwrap.dedent(CHECKS) + textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


CHECKS = """
    def facts(result):
        return {
            "exit_code": result.exit_code,
            "outcome": result.outcome,
            "requests_sent": result.requests_sent,
            "succeeded": result.succeeded,
            "failed": result.failed,
            "pending": result.pending,
        }

    def manifest_facts(out):
        frame = sweeper.open_run(out).manifest()
        return {
            "rows": len(frame),
            "seed": str(frame["seed"].dtype),
            "guidance": str(frame["guidance"].dtype),
            "statuses": sorted(set(frame["status"])),
        }
"""


def check_facts(facts: dict) -> None:
    first, again, manifest = facts["first"], facts["again"], facts["manifest"]
    assert first == {
        "exit_code": 0,
        "outcome": "complete",
        "requests_sent": JOBS,
        "succeeded": JOBS,
        "failed": 0,
        "pending": 0,
    }
    assert again["requests_sent"] == 0 and again["succeeded"] == JOBS
    assert again["exit_code"] == 0
    assert manifest == {
        "rows": JOBS,
        "seed": "int64",
        "guidance": "float64",
        "statuses": ["succeeded"],
    }


def test_inside_a_running_loop_run_blocks_and_run_async_awaits_printing_nothing(tmp_path):
    spec = write_spec(tmp_path)
    out = tmp_path / "run"
    done = run_script(
        f"""
        import asyncio, json
        import sweeper
        async def main():
            first = sweeper.run({str(spec)!r}, out={str(out)!r}, offline=True, progress=False)
            again = await sweeper.run_async(
                {str(spec)!r}, out={str(out)!r}, offline=True, progress=False
            )
            facts_file = {str(tmp_path / "facts.json")!r}
            with open(facts_file, "w") as file:
                json.dump(
                    {{"first": facts(first), "again": facts(again),
                      "manifest": manifest_facts({str(out)!r})}},
                    file,
                )

        asyncio.run(main())
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""
    check_facts(json.loads((tmp_path / "facts.json").read_text()))


def test_from_a_plain_script_run_needs_no_loop_and_prints_nothing(tmp_path):
    spec = write_spec(tmp_path)
    out = tmp_path / "run"
    done = run_script(
        f"""
        import json
        import sweeper
        first = sweeper.run({str(spec)!r}, out={str(out)!r}, offline=True, progress=False)
        again = sweeper.run({str(spec)!r}, out={str(out)!r}, offline=True, progress=False)
        with open({str(tmp_path / "facts.json")!r}, "w") as file:
            json.dump(
                {{"first": facts(first), "again": facts(again),
                  "manifest": manifest_facts({str(out)!r})}},
                file,
            )
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""
    check_facts(json.loads((tmp_path / "facts.json").read_text()))


def test_ctrl_c_inside_a_running_loop_stops_the_worker_thread_cleanly(tmp_path):
    spec = write_spec(tmp_path)
    out = tmp_path / "run"
    done = run_script(
        f"""
        import asyncio, json, os, signal, threading, time
        import sweeper
        from sweeper.errors import InterruptedRun
        from sweeper.simulator import SimulatorConfig, SimulatorThread

        def interrupt_once_a_request_is_in_flight(sim):
            while sim.state.counters["features"] == 0:
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGINT)

        async def main():
            with SimulatorThread(SimulatorConfig(latency_s=1.0)) as sim:
                os.environ["ONEMIN_API_KEY"] = "sk-api-test"
                os.environ["ONEMIN_API_BASE"] = sim.base_url
                threading.Thread(target=interrupt_once_a_request_is_in_flight, args=(sim,)).start()
                try:
                    sweeper.run({str(spec)!r}, out={str(out)!r}, progress=False)
                except InterruptedRun as stopped:
                    result = stopped.result
                answered = sim.state.counters["succeeded"]
            with open({str(tmp_path / "facts.json")!r}, "w") as file:
                json.dump({{"outcome": result.outcome, "sent": result.requests_sent,
                           "succeeded": result.succeeded, "answered": answered}}, file)

        asyncio.run(main())
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    facts = json.loads((tmp_path / "facts.json").read_text())
    # Stopped after the first requests left: they were let finish, nothing more was sent.
    assert facts["outcome"] == "stopped"
    assert 0 < facts["sent"] < JOBS
    assert facts["succeeded"] == facts["sent"] == facts["answered"]
    record = json.loads((out / "run.json").read_text())
    assert record["outcome"] == "stopped" and record["reason"] == "signal"
    states = sweeper.open_run(out).status().counts
    assert states["submitted"] == 0  # no request in flight was abandoned unrecorded


def test_load_spec_takes_a_str_and_plan_tallies_a_folder(tmp_path):
    spec = sweeper.load_spec(str(write_spec(tmp_path)))
    assert isinstance(spec, sweeper.Spec) and spec.name == "api"
    fresh = sweeper.plan(spec)
    assert (fresh.jobs, fresh.images, fresh.tally) == (JOBS, JOBS, None)
    sweeper.run(spec, tmp_path / "run", offline=True, progress=False)
    tallied = sweeper.plan(spec, tmp_path / "run")
    assert tallied.tally is not None
    assert (tallied.tally.done, tallied.tally.to_send) == (JOBS, 0)


def test_open_run_reads_a_folder_back(tmp_path):
    spec = write_spec(tmp_path)
    result = sweeper.run(spec, tmp_path / "run", offline=True, progress=False)
    folder = sweeper.open_run(result.run_dir)
    frame = folder.manifest()
    pd.testing.assert_frame_equal(frame, pd.read_parquet(folder.manifest_path))
    assert folder.spec["name"] == "api"
    assert [path.name for path in folder.images()] == frame["file"].map(
        lambda file: Path(file).name
    ).tolist()
    assert all(path.is_file() for path in folder.images())
    assert folder.status().counts["succeeded"] == JOBS
    pd.testing.assert_frame_equal(result.manifest(), frame)


def test_a_mistake_is_a_spec_error_before_anything_is_sent(tmp_path):
    spec = write_spec(tmp_path)
    with pytest.raises(SpecError, match="did you mean `requests_per_minute`"):
        sweeper.run(spec, tmp_path / "run", offline=True, progress=False, request_per_minute=5)
    with pytest.raises(SpecError, match="concurrency"):
        sweeper.run(spec, tmp_path / "run", offline=True, progress=False, concurrency=0)
    assert not (tmp_path / "run").exists()
    with pytest.raises(SpecError, match="no such run folder"):
        sweeper.open_run(tmp_path / "nowhere")


def test_the_public_names_are_listed_documented_and_typed():
    for name in sweeper.__all__:
        value = getattr(sweeper, name)
        if callable(value):
            assert value.__doc__, name
    assert sweeper.run.__annotations__["return"] == "RunResult"
