"""push and pull against a real S3 API: moto's standalone server on loopback, s3fs pointed at it.

Nothing of s3fs or botocore is mocked: requests go over HTTP to moto, found by
`AWS_ENDPOINT_URL` alone, exactly as a user's configuration would be.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import socket
import sqlite3
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner
from study_run import run_study

from sweeper import remote
from sweeper.cli import main
from sweeper.errors import SpecError, StorageError
from sweeper.journal import Journal
from sweeper.remote import (
    INDEX_NAME,
    Transfer,
    display_url,
    pull_run,
    push_run,
    scrub,
    secret_values,
)

REPO = Path(__file__).resolve().parent.parent
SECRET = "sweeper-test-secret-Zq81vX0pL2"
ACCESS_KEY = "AKIASWEEPERTEST0001"


class Interrupted(Exception):
    """What the progress callback raises to stop a push halfway, as Ctrl-C would."""


def free_port() -> int:
    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """One moto S3 server for the whole session, on a free loopback port."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as error:
        pytest.skip(f"moto[server] is not installed ({error}); pip install -e '.[test]'")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=10).close()
    except OSError as error:
        server.stop()
        pytest.skip(f"moto's S3 server did not answer on {endpoint}: {error}")
    yield endpoint
    server.stop()


@pytest.fixture(scope="module")
def aws_env(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """AWS_* as a user would set them, and no ~/.aws files to fall back on."""
    nowhere = tmp_path_factory.mktemp("no-aws")
    env = {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(nowhere / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(nowhere / "credentials"),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
            patch.delenv(name, raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        yield env


@pytest.fixture(scope="module")
def s3(aws_env):
    """The test's own view of the bucket, for checking and for damaging objects."""
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True)


@pytest.fixture
def bucket(aws_env, s3) -> str:
    name = f"runs-{uuid.uuid4().hex[:12]}"
    s3.mkdir(name)
    return name


@pytest.fixture
def url(bucket: str) -> str:
    return f"s3://{bucket}/nightly/study"


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_study(tmp_path_factory.mktemp("study"))


@pytest.fixture
def run_dir(study: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(study, tmp_path / "study-run"))


def record_files(folder: Path) -> dict[str, bytes]:
    skipped = ("tmp/", ".lock", "journal.sqlite-")
    return {
        name: p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not (name := p.relative_to(folder).as_posix()).startswith(skipped)
    }


def recorded_mtimes(run_dir: Path, on_disk: bool = False) -> dict[str, int]:
    """Each recorded image's mtime as the journal has it, or as the file has it now."""
    with closing(sqlite3.connect(run_dir / "journal.sqlite")) as db:
        rows = db.execute("SELECT file, mtime_ns FROM outputs WHERE status = 'done'").fetchall()
    assert rows and all(mtime_ns for _, mtime_ns in rows)
    return {f: (run_dir / f).stat().st_mtime_ns if on_disk else m for f, m in rows}


def remote_index(s3, url: str) -> dict:
    return json.loads(s3.cat_file(f"{url}/{INDEX_NAME}"))


def status_lines(run_dir: Path) -> list[str]:
    result = CliRunner().invoke(main, ["status", str(run_dir)])
    assert result.exit_code == 0, result.output
    return result.output.splitlines()[1:]  # all but the "run: DIR" line


# --- push, wipe, pull -----------------------------------------------------------------


def test_push_wipe_and_pull_gives_back_a_normal_run_folder(run_dir, url, tmp_path):
    before = record_files(run_dir)
    status_before = status_lines(run_dir)
    seen: list[Transfer] = []
    pushed = push_run(run_dir, url, progress=seen.append)
    assert sorted(pushed.sent) == sorted(before)
    assert [t.files_done for t in seen] == list(range(1, len(before) + 1))
    assert seen[-1].bytes_done == seen[-1].bytes_total == pushed.bytes_sent

    shutil.rmtree(run_dir)
    pulled = tmp_path / "pulled" / "study"
    result = pull_run(url, pulled)
    assert result.files == len(before)
    after = record_files(pulled)
    assert set(after) == set(before)
    for name in before:
        if name != "journal.sqlite":  # a backup copy: the same rows, not the same bytes
            assert after[name] == before[name], name
    assert status_lines(pulled) == status_before
    with Journal.open_existing(pulled) as journal:
        counts = journal.counts()
    assert (counts["succeeded"], counts["failed"]) == (9, 1)
    assert recorded_mtimes(pulled) == recorded_mtimes(pulled, on_disk=True)


@pytest.mark.parametrize("scheme", ["memory", "file"])
def test_memory_and_local_urls_work_without_extras(run_dir, tmp_path, scheme):
    remote_dir = (tmp_path / "remote").as_uri()
    url = f"memory://sweeper-tests/{uuid.uuid4().hex}" if scheme == "memory" else remote_dir
    pushed = push_run(run_dir, url)
    assert push_run(run_dir, url).sent == ()
    assert pull_run(url, tmp_path / "pulled").files == len(pushed.sent)
    assert record_files(tmp_path / "pulled").keys() == record_files(run_dir).keys()


def test_big_files_go_through_private_copies_both_ways(run_dir, tmp_path, monkeypatch):
    from sweeper import snapshot

    monkeypatch.setattr(snapshot, "IN_MEMORY_BYTES", 1000)  # every image counts as big
    monkeypatch.setattr(remote, "IN_MEMORY_BYTES", 1000)
    url = f"memory://sweeper-tests/{uuid.uuid4().hex}"
    push_run(run_dir, url)
    pull_run(url, tmp_path / "pulled")
    pulled, original = record_files(tmp_path / "pulled"), record_files(run_dir)
    assert pulled.keys() == original.keys()
    assert all(pulled[name] == original[name] for name in original if name != "journal.sqlite")


# --- incremental and resumable --------------------------------------------------------


def test_a_second_push_sends_only_what_changed_and_drops_what_is_gone(run_dir, url, s3):
    push_run(run_dir, url)
    assert push_run(run_dir, url).sent == ()
    (run_dir / "report").mkdir()
    (run_dir / "report" / "index.html").write_text("<html></html>", encoding="utf-8")
    (run_dir / "manifest.csv").unlink()
    again = push_run(run_dir, url)
    assert again.sent == ("report/index.html",) and again.removed == ("manifest.csv",)
    assert not s3.exists(f"{url}/manifest.csv")
    index = remote_index(s3, url)
    assert index["complete"] and "manifest.csv" not in index["files"]


def test_an_interrupted_push_resumes_with_only_the_files_that_did_not_land(
    run_dir, url, s3, tmp_path, monkeypatch
):
    monkeypatch.setattr(remote, "BATCH_FILES", 2)
    total = len(record_files(run_dir))

    def stop_after_three(transfer: Transfer) -> None:
        if transfer.files_done == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        push_run(run_dir, url, progress=stop_after_three)
    index = remote_index(s3, url)
    landed = set(index["files"])
    assert not index["complete"] and len(landed) == 4  # two batches of two had landed
    with pytest.raises(SpecError, match="the last push there did not finish"):
        pull_run(url, tmp_path / "too-early")
    assert not (tmp_path / "too-early").exists()

    resumed = push_run(run_dir, url)
    assert set(resumed.sent) == set(record_files(run_dir)) - landed
    assert len(resumed.sent) == total - 4
    pull_run(url, tmp_path / "pulled")
    assert record_files(tmp_path / "pulled").keys() == record_files(run_dir).keys()


KILLED_PUSH = """
import os, signal, sys
from pathlib import Path
from sweeper import remote
remote.BATCH_FILES, remote.INDEX_EVERY_S = 2, 0.0  # list each batch as soon as it lands
def die(transfer):
    if transfer.files_done == 5:
        os.kill(os.getpid(), signal.SIGKILL)
remote.push_run(Path(sys.argv[1]), sys.argv[2], progress=die)
"""


def test_a_push_killed_outright_resumes_too(run_dir, url, s3, aws_env):
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_PUSH, str(run_dir), url], capture_output=True, check=False
    )
    assert killed.returncode == -9, killed.stderr.decode()
    landed = set(remote_index(s3, url)["files"])
    assert len(landed) == 6  # the kill came at file 5, after the third batch was listed
    resumed = push_run(run_dir, url)
    assert set(resumed.sent) == set(record_files(run_dir)) - landed


# --- pull refuses what is not right ---------------------------------------------------


def test_a_corrupted_or_missing_remote_object_is_detected_on_pull(run_dir, url, s3, tmp_path):
    push_run(run_dir, url)
    images = sorted(name for name in record_files(run_dir) if name.startswith("images/"))
    s3.pipe_file(f"{url}/{images[0]}", b"bit rot")
    s3.rm_file(f"{url}/{images[1]}")
    with pytest.raises(SpecError) as refusal:
        pull_run(url, tmp_path / "pulled")
    message = str(refusal.value)
    assert f"1 missing: {images[1]}" in message
    assert f"1 corrupted (sha256 differs): {images[0]}" in message
    assert not (tmp_path / "pulled").exists()


def test_pull_into_a_folder_with_files_needs_force_and_then_replaces_them(run_dir, url, tmp_path):
    push_run(run_dir, url)
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine", encoding="utf-8")
    (occupied / "journal.sqlite-wal").write_bytes(b"a stale WAL of another journal")
    (occupied / "run.json").write_text("{}", encoding="utf-8")
    with pytest.raises(SpecError, match=r"is not empty; .* --force"):
        pull_run(url, occupied)
    assert (occupied / "run.json").read_text(encoding="utf-8") == "{}"

    pull_run(url, occupied, force=True)
    assert (occupied / "run.json").read_bytes() == (run_dir / "run.json").read_bytes()
    assert (occupied / "notes.txt").exists()  # files the remote does not list are kept
    assert not (occupied / "journal.sqlite-wal").exists()
    with closing(sqlite3.connect(occupied / "journal.sqlite")) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_an_index_listing_scratch_is_refused_before_anything_is_fetched(run_dir, url, s3, tmp_path):
    push_run(run_dir, url)
    index = remote_index(s3, url)
    index["files"]["journal.sqlite-wal"] = index["files"]["run.json"]
    s3.pipe_file(f"{url}/{INDEX_NAME}", json.dumps(index).encode())
    with pytest.raises(SpecError, match=r"not a usable sweeper index .*journal\.sqlite-wal"):
        pull_run(url, tmp_path / "pulled")
    assert not (tmp_path / "pulled").exists()


def test_push_refuses_a_place_holding_other_files_or_another_run(run_dir, bucket, s3):
    s3.pipe_file(f"{bucket}/data/someone-elses.csv", b"a,b\n")
    with pytest.raises(SpecError, match=r"holds files but no \.sweeper-index\.json"):
        push_run(run_dir, f"s3://{bucket}/data")
    push_run(run_dir, f"s3://{bucket}/mine")
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    (run_dir / "run.json").write_text(json.dumps(record | {"spec_name": "other"}), "utf-8")
    with pytest.raises(SpecError, match="holds a push of run 'study', not 'other'"):
        push_run(run_dir, f"s3://{bucket}/mine")


def test_a_storage_failure_is_one_line_naming_the_url(run_dir, aws_env):
    with pytest.raises(StorageError) as failure:
        push_run(run_dir, "s3://no-such-bucket-for-sweeper/run")
    message = str(failure.value)
    assert message.startswith("s3://no-such-bucket-for-sweeper/run: ")
    assert "bucket does not exist" in message and "\n" not in message
    assert failure.value.exit_code == 2


# --- secrets --------------------------------------------------------------------------

PUSH_PULL_AND_FAIL = """
import logging, sys
from pathlib import Path
from sweeper.remote import pull_run, push_run
from sweeper.errors import SweeperError
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)  # every library's debug log too
run_dir, url, dest = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
print(push_run(run_dir, url, progress=print))
print(pull_run(url, dest, progress=print))
try:
    push_run(run_dir, "s3://no-such-bucket-for-sweeper/run")
except SweeperError as error:
    print(error)
"""


def test_the_secret_key_appears_in_no_output_no_log_and_no_file(
    run_dir, url, aws_env, s3, tmp_path
):
    dest = tmp_path / "pulled"
    done = subprocess.run(
        [sys.executable, "-c", PUSH_PULL_AND_FAIL, str(run_dir), url, str(dest)],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    output = done.stdout + done.stderr
    assert b"bucket does not exist" in output and b"PUT" in output  # it did log, and fail
    assert SECRET.encode() not in output
    for folder in (run_dir, dest):
        for path in folder.rglob("*"):
            assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path
    for key in s3.find(url):
        assert SECRET.encode() not in s3.cat_file(key), key


def test_messages_are_scrubbed_of_secrets_from_the_environment_and_the_url(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "AccountKey=abc123secret")
    url = "https://user:hunter22@example.org/runs?sig=SAS-TOKEN-VALUE"
    secrets = secret_values(url)
    text = f"failed for {SECRET} with AccountKey=abc123secret via {url}\nTraceback..."
    cleaned = scrub(text, secrets)
    for secret in (SECRET, "abc123secret", "hunter22", "SAS-TOKEN-VALUE"):
        assert secret not in cleaned
    assert "\n" not in cleaned
    assert display_url(url) == "https://example.org/runs"


def test_an_uninstalled_backend_is_named_with_how_to_get_it(run_dir):
    if importlib.util.find_spec("gcsfs"):
        pytest.skip("gcsfs is installed here")
    with pytest.raises(StorageError, match=r"gs:// needs gcsfs"):
        push_run(run_dir, "gs://bucket/run")


def test_the_index_holds_paths_hashes_and_sizes_only(run_dir, url, s3):
    push_run(run_dir, url)
    index = remote_index(s3, url)
    assert set(index) == {"format", "version", "complete", "spec_name", "updated_at", "files"}
    manifest = (run_dir / "manifest.csv").read_bytes()
    assert index["files"]["manifest.csv"] == {
        "sha256": hashlib.sha256(manifest).hexdigest(),
        "size": len(manifest),
    }


def test_push_wipe_pull_and_the_original_spec_reruns_with_no_edit(aws_env, url, tmp_path):
    """Issue 15's done-when: the pulled folder is the run, and it is finished."""
    import os
    import subprocess
    import sys

    from sweeper.simulator import SimulatorConfig, SimulatorThread

    spec = REPO / "sweeps" / "demo.yaml"
    run_dir, pulled = tmp_path / "run", tmp_path / "pulled"

    def cli(*argv: str, base: str) -> subprocess.CompletedProcess[str]:
        env = os.environ | {"ONEMIN_API_KEY": "sk-s3-travel", "ONEMIN_API_BASE": base}
        return subprocess.run(
            [sys.executable, "-m", "sweeper", *argv],
            env=env,
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=180,
        )

    with SimulatorThread(SimulatorConfig()) as sim:
        outputs = [cli("run", str(spec), "--out", str(run_dir), base=sim.base_url)]
        assert outputs[-1].returncode == 0, outputs[-1].stderr
        outputs.append(cli("push", str(run_dir), url, base=sim.base_url))
        assert outputs[-1].returncode == 0, outputs[-1].stderr
        shutil.rmtree(run_dir)
        outputs.append(cli("pull", url, str(pulled), base=sim.base_url))
        assert outputs[-1].returncode == 0, outputs[-1].stderr
        edits = sim.state.counters["features"]
        outputs.append(cli("run", str(spec), "--out", str(pulled), base=sim.base_url))
        assert outputs[-1].returncode == 0, outputs[-1].stderr
        assert sim.state.counters["features"] == edits
    for done in outputs:
        assert SECRET not in done.stdout + done.stderr
    for path in pulled.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
