"""Packs: a consistent snapshot of a run folder in, the same files out, tampering refused."""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
import sqlite3
import tarfile
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
from study_run import run_study

from sweeper.errors import SpecError
from sweeper.journal import Journal
from sweeper.pack import pack_run, unpack_run

Members = list[tuple[tarfile.TarInfo, bytes]]
RECORD = {"journal.sqlite", "manifest.csv", "manifest.parquet", "run.json", "spec.yaml"}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_study(tmp_path_factory.mktemp("study"))


@pytest.fixture
def run_dir(study: Path, tmp_path: Path) -> Path:
    """A private copy of the finished study run, with scratch a record must not carry."""
    copy = Path(shutil.copytree(study, tmp_path / "study-run"))
    (copy / "tmp").mkdir(exist_ok=True)
    (copy / "tmp" / "x.webp.part").write_bytes(b"half a download")
    (copy / "report").mkdir()
    (copy / "report" / "index.html").write_text("<html></html>", encoding="utf-8")
    return copy


@pytest.fixture
def pack(run_dir: Path, tmp_path: Path) -> Path:
    return pack_run(run_dir, tmp_path / "packs" / "study.tar.gz")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_under(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def recorded_images(run_dir: Path) -> dict[str, str]:
    with closing(sqlite3.connect(run_dir / "journal.sqlite")) as db:
        return dict(db.execute("SELECT file, sha256 FROM outputs WHERE status = 'done'"))


def read_members(archive: Path) -> Members:
    with tarfile.open(archive, "r:gz") as tar:
        return [(m, tar.extractfile(m).read() if m.isreg() else b"") for m in tar.getmembers()]


def write_members(archive: Path, members: Members) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        for info, data in members:
            if info.isreg():
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return archive


def tampered(pack: Path, change: Callable[[Members], Members]) -> Path:
    return write_members(pack.with_name("tampered.tar.gz"), change(read_members(pack)))


# --- round trip -----------------------------------------------------------------------


def test_pack_then_unpack_gives_back_every_file_of_the_record(run_dir, pack, tmp_path):
    dest = unpack_run(pack, tmp_path / "unpacked")
    unpacked = files_under(dest)
    images = recorded_images(run_dir)
    inputs = {p.relative_to(run_dir).as_posix() for p in (run_dir / "inputs").iterdir()}
    assert inputs  # a run keeps its input photo
    assert set(unpacked) == RECORD | set(images) | inputs | {"report/index.html"}
    for name, data in unpacked.items():
        if name != "journal.sqlite":  # a backup copy: the same rows, not the same bytes
            assert data == (run_dir / name).read_bytes(), name
    with Journal.open_existing(dest) as copy, Journal.open_existing(run_dir) as original:
        assert copy.job_states() == original.job_states()
    # Each image keeps the mtime its journal recorded, so a rerun need not hash it again.
    with closing(sqlite3.connect(dest / "journal.sqlite")) as db:
        recorded = dict(db.execute("SELECT file, mtime_ns FROM outputs WHERE status = 'done'"))
    assert recorded and all(recorded.values())
    assert {name: (dest / name).stat().st_mtime_ns for name in recorded} == recorded
    # The scratch, the lock and the journal's side files never travel.
    assert not {".lock", "tmp/x.webp.part", "journal.sqlite-wal"} & set(unpacked)


def test_the_manifest_inside_is_sha256sum_format_and_lists_every_file(pack):
    members = {info.name: data for info, data in read_members(pack)}
    listing = members.pop("study-run/MANIFEST.sha256").decode()
    lines = dict(reversed(line.split("  ", 1)) for line in listing.splitlines())
    assert {f"study-run/{name}" for name in lines} == set(members)
    for name, digest in lines.items():
        assert sha256(members[f"study-run/{name}"]) == digest


def test_big_files_are_packed_through_private_copies(run_dir, tmp_path, monkeypatch):
    from sweeper import snapshot

    monkeypatch.setattr(snapshot, "IN_MEMORY_BYTES", 1000)  # every image counts as big
    dest = unpack_run(pack_run(run_dir, tmp_path / "big.tar.gz"), tmp_path / "unpacked")
    for name in recorded_images(run_dir):
        assert (dest / name).read_bytes() == (run_dir / name).read_bytes()


def test_the_default_pack_is_named_after_the_folder_beside_it(run_dir):
    assert pack_run(run_dir) == run_dir.parent / "study-run.tar.gz"
    assert (run_dir.parent / "study-run.tar.gz").is_file()


def test_a_pack_inside_the_folder_it_packs_is_refused(run_dir):
    with pytest.raises(SpecError, match="outside the run folder"):
        pack_run(run_dir, run_dir / "self.tar.gz")


def test_a_folder_without_a_journal_is_not_packed(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpecError, match=r"no journal\.sqlite here"):
        pack_run(tmp_path / "empty")


# --- a live run -----------------------------------------------------------------------


def test_a_live_runs_pack_holds_committed_rows_only_and_images_it_recorded(
    run_dir, tmp_path, caplog
):
    images = recorded_images(run_dir)
    damaged, *_ = sorted(images)
    (run_dir / damaged).write_bytes(b"overwritten after it was recorded")
    (run_dir / "images" / "downloading_0.webp").write_bytes(b"not recorded yet")
    with closing(sqlite3.connect(run_dir / "journal.sqlite", isolation_level=None)) as writer:
        writer.execute("PRAGMA wal_autocheckpoint = 0")  # committed rows stay in the -wal file
        writer.execute("INSERT INTO meta VALUES ('committed', '1')")
        writer.execute("BEGIN IMMEDIATE")  # the run is in the middle of a transaction
        writer.execute("INSERT INTO meta VALUES ('uncommitted', '1')")
        with caplog.at_level(logging.WARNING, logger="sweeper"):
            pack = pack_run(run_dir, tmp_path / "live.tar.gz")
        writer.execute("ROLLBACK")
    dest = unpack_run(pack, tmp_path / "unpacked")
    with closing(sqlite3.connect(dest / "journal.sqlite")) as copy:
        keys = {key for (key,) in copy.execute("SELECT key FROM meta")}
    assert "committed" in keys and "uncommitted" not in keys
    unpacked_images = {name for name in files_under(dest) if name.startswith("images/")}
    assert unpacked_images == set(images) - {damaged}
    assert f"{damaged} does not match the sha256 recorded for it" in caplog.text


# --- refusals -------------------------------------------------------------------------


def first_image(members: Members) -> str:
    return next(info.name for info, _ in members if "/images/" in info.name)


def change_an_image(members: Members) -> Members:
    target = first_image(members)
    return [(i, d + b"!" if i.name == target else d) for i, d in members]


def drop_an_image(members: Members) -> Members:
    target = first_image(members)
    return [(i, d) for i, d in members if i.name != target]


def add_a_file(members: Members) -> Members:
    return [*members, (tarfile.TarInfo("study-run/images/extra.webp"), b"unlisted")]


def change_an_image_and_its_listing(members: Members) -> Members:
    """A careful forger: the manifest agrees, but the journal recorded another image."""
    target = first_image(members)
    new = b"a different picture"
    old = dict((i.name, d) for i, d in members)[target]
    changed = []
    for info, data in members:
        if info.name == target:
            data = new
        elif info.name.endswith("MANIFEST.sha256"):
            data = data.replace(sha256(old).encode(), sha256(new).encode())
        changed.append((info, data))
    return changed


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (change_an_image, r"1 changed \(sha256 differs\): images/\w+_0\.webp"),
        (drop_an_image, r"1 missing: images/\w+_0\.webp"),
        (add_a_file, r"1 not listed in MANIFEST\.sha256: images/extra\.webp"),
        (change_an_image_and_its_listing, r"1 not as the journal recorded: images/\w+_0\.webp"),
    ],
)
def test_a_pack_with_missing_extra_or_changed_files_is_refused_naming_them(
    pack, tmp_path, change, message
):
    bad = tampered(pack, change)
    with pytest.raises(SpecError, match=message) as refusal:
        unpack_run(bad, tmp_path / "unpacked")
    assert refusal.value.exit_code == 2
    assert not (tmp_path / "unpacked").exists() or not any((tmp_path / "unpacked").iterdir())
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".unpacked")] == []


def special_member(name: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (special_member("study-run/images/a.webp", tarfile.SYMTYPE, "/etc/passwd"), "is a link"),
        (special_member("study-run/run2.json", tarfile.LNKTYPE, "study-run/run.json"), "is a link"),
        (special_member("study-run/dev", tarfile.CHRTYPE), "device or special file"),
        (special_member("study-run/fifo", tarfile.FIFOTYPE), "device or special file"),
        (tarfile.TarInfo("/tmp/sweeper-escaped"), "absolute or escaping path"),
        (tarfile.TarInfo("study-run/../../sweeper-escaped"), "absolute or escaping path"),
        (tarfile.TarInfo("other-folder/x"), "outside the pack's folder"),
        (tarfile.TarInfo("study-run/journal.sqlite-wal"), "is scratch, not part of a record"),
        (tarfile.TarInfo("study-run/images/.x.webp.part"), "is scratch, not part of a record"),
    ],
)
def test_links_devices_and_escaping_paths_are_refused(pack, tmp_path, member, message):
    members = read_members(pack)
    bad = write_members(tmp_path / "bad.tar.gz", [*members[:2], (member, b"x"), *members[2:]])
    with pytest.raises(SpecError, match=message):
        unpack_run(bad, tmp_path / "deep" / "unpacked")
    assert not Path("/tmp/sweeper-escaped").exists()
    assert not (tmp_path / "sweeper-escaped").exists()
    assert list((tmp_path / "deep").iterdir()) == []


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: b"not a gzip file at all", "not a readable .tar.gz pack"),
        (lambda data: data[: len(data) // 2], "not a readable .tar.gz pack"),
    ],
)
def test_a_damaged_or_foreign_file_is_refused(pack, tmp_path, damage, message):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(damage(pack.read_bytes()))
    with pytest.raises(SpecError, match=message):
        unpack_run(bad, tmp_path / "unpacked")


def test_a_pack_without_its_manifest_is_refused(pack, tmp_path):
    bad = tampered(pack, lambda m: [(i, d) for i, d in m if not i.name.endswith("MANIFEST.sha256")])
    with pytest.raises(SpecError, match=r"no MANIFEST\.sha256 inside"):
        unpack_run(bad, tmp_path / "unpacked")


def test_unpacking_into_a_folder_that_holds_anything_is_refused(pack, tmp_path):
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(SpecError, match="is not empty"):
        unpack_run(pack, occupied)
    assert [p.name for p in occupied.iterdir()] == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (unpack_run(pack, empty) / "journal.sqlite").is_file()
