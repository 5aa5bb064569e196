"""Inputs kept in the run folder, and a frozen spec that runs from there as it stands."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from sweeper import inputs
from sweeper.errors import SpecError
from sweeper.expand import expand_jobs
from sweeper.inputs import copy_inputs, local_images, rewrite_frozen_spec
from sweeper.spec import load_spec

REPO = Path(__file__).resolve().parent.parent
PHOTO = REPO / "sweeps" / "inputs" / "astronaut.jpg"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def photos(tmp_path: Path) -> dict[str, Path]:
    """Two different photos and a copy of the first under another name."""
    folder = tmp_path / "photos"
    folder.mkdir()
    first = Path(shutil.copyfile(PHOTO, folder / "Astronaut.JPG"))
    second = folder / "other.jpg"
    second.write_bytes(PHOTO.read_bytes() + b"\0")  # another sha, still a readable JPEG
    same = Path(shutil.copyfile(PHOTO, folder / "same-as-first.jpeg"))
    return {"first": first, "second": second, "same": same}


# --- copy_inputs ----------------------------------------------------------------------


def test_each_input_is_kept_once_by_its_sha256_as_a_hard_link(tmp_path, photos):
    run_dir = tmp_path / "run"
    images = [(path, sha256(path)) for path in photos.values()]
    kept = copy_inputs(run_dir, images)
    first, second = sha256(photos["first"]), sha256(photos["second"])
    assert kept == {first: f"inputs/{first}.jpg", second: f"inputs/{second}.jpg"}
    assert sorted(p.name for p in (run_dir / "inputs").iterdir()) == sorted(
        [f"{first}.jpg", f"{second}.jpg"]
    )
    for sha, relative in kept.items():
        assert sha256(run_dir / relative) == sha
    # Same file system: a hard link, so a big input costs no space.
    assert (run_dir / kept[first]).stat().st_ino == photos["first"].stat().st_ino


def test_where_links_fail_the_input_is_copied(tmp_path, photos, monkeypatch):
    def no_links(*args, **kwargs):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(inputs.os, "link", no_links)
    digest = sha256(photos["first"])
    kept = copy_inputs(tmp_path / "run", [(photos["first"], digest)])
    copy = tmp_path / "run" / kept[digest]
    assert sha256(copy) == digest
    assert copy.stat().st_ino != photos["first"].stat().st_ino


def test_an_input_already_kept_is_left_alone_and_a_damaged_one_replaced(tmp_path, photos):
    run_dir = tmp_path / "run"
    digest = sha256(photos["first"])
    kept = run_dir / copy_inputs(run_dir, [(photos["first"], digest)])[digest]
    before = kept.stat()
    copy_inputs(run_dir, [(photos["first"], digest)])
    assert kept.stat().st_ino == before.st_ino and kept.stat().st_mtime_ns == before.st_mtime_ns

    kept.unlink()
    kept.write_bytes(b"damaged")
    copy_inputs(run_dir, [(photos["first"], digest)])
    assert sha256(kept) == digest
    assert photos["first"].read_bytes() == PHOTO.read_bytes()  # the link was replaced, not written


def test_an_input_changed_since_the_spec_was_read_is_refused_and_nothing_is_left(tmp_path, photos):
    stale = sha256(photos["second"])
    with pytest.raises(SpecError, match=r"Astronaut\.JPG: changed since the spec was read"):
        copy_inputs(tmp_path / "run", [(photos["first"], stale)])
    assert list((tmp_path / "run" / "inputs").iterdir()) == []


def test_a_file_without_a_suffix_is_named_by_its_image_format(tmp_path):
    bare = Path(shutil.copyfile(PHOTO, tmp_path / "photo"))
    digest = sha256(bare)
    assert copy_inputs(tmp_path / "run", [(bare, digest)]) == {digest: f"inputs/{digest}.jpg"}


# --- rewrite_frozen_spec --------------------------------------------------------------

SPEC = """\
# A study of two photos.
name: frozen   # the run folder's name
params:
  prompt: "Create dramatic depth effects"
  megapixels: '0.25'
grid:
  image: [../photos/Astronaut.JPG, "../photos/other.jpg"]   # both photos
  seed: [1, 2]
exclude:
  - {image: "../photos/other.jpg", seed: 2}
"""

ZIP_SPEC = """\
name: zipped
params:
  prompt: p
zip:
  image:
    - ../photos/Astronaut.JPG
    - 'asset:development/images/remote.jpg'
  seed: [1, 2]
"""


def mapping_for(photos: dict[str, Path]) -> dict[str, str]:
    return {
        "../photos/Astronaut.JPG": f"inputs/{sha256(photos['first'])}.jpg",
        "../photos/other.jpg": f"inputs/{sha256(photos['second'])}.jpg",
    }


def test_every_image_path_is_rewritten_and_comments_and_layout_survive(photos):
    mapping = mapping_for(photos)
    frozen = rewrite_frozen_spec(SPEC, mapping)
    data = yaml.safe_load(frozen)
    new_first, new_second = mapping.values()
    assert data["grid"]["image"] == [new_first, new_second]
    assert data["exclude"] == [{"image": new_second, "seed": 2}]
    assert data["params"] == yaml.safe_load(SPEC)["params"]
    # Only the paths changed: the user's own text is all still there, in order.
    body = frozen.split("\n\n", 1)[1]
    expected = SPEC
    for given, new in mapping.items():
        expected = expected.replace(given, new)
    assert body == expected
    assert "# the run folder's name" in frozen and "# both photos" in frozen


def test_the_original_paths_are_kept_in_comments_at_the_top(photos):
    mapping = mapping_for(photos)
    header = rewrite_frozen_spec(SPEC, mapping).split("\n\n", 1)[0]
    assert all(line.startswith("#") for line in header.splitlines())
    for given, new in mapping.items():
        assert f'"{given}" -> {new}' in header


def test_zip_images_are_rewritten_and_an_asset_reference_is_left_alone(photos, tmp_path):
    spec_path = tmp_path / "specs" / "zipped.yaml"
    spec_path.parent.mkdir()
    spec_path.write_text(ZIP_SPEC, encoding="utf-8")
    assert list(local_images(load_spec(spec_path))) == ["../photos/Astronaut.JPG"]
    frozen = rewrite_frozen_spec(ZIP_SPEC, mapping_for(photos))
    assert yaml.safe_load(frozen)["zip"]["image"] == [
        f"inputs/{sha256(photos['first'])}.jpg",
        "asset:development/images/remote.jpg",
    ]


def test_freezing_a_frozen_spec_changes_nothing(photos):
    mapping = mapping_for(photos)
    frozen = rewrite_frozen_spec(SPEC, mapping)
    identity = {new: new for new in mapping.values()}
    assert rewrite_frozen_spec(frozen, identity) == frozen
    assert rewrite_frozen_spec(SPEC, {}) == SPEC


def test_a_construct_the_in_place_edit_cannot_handle_falls_back_to_load_and_dump(photos):
    # A folded block scalar spans lines; the edit would break it, so the spec is re-dumped.
    spec = "name: odd\nparams:\n  image: >-\n    ../photos/Astronaut.JPG\n  prompt: p\n"
    new = f"inputs/{sha256(photos['first'])}.jpg"
    frozen = rewrite_frozen_spec(spec, {"../photos/Astronaut.JPG": new})
    assert yaml.safe_load(frozen) == {"name": "odd", "params": {"image": new, "prompt": "p"}}
    assert "#     ../photos/Astronaut.JPG" in frozen  # the original text, kept as comments


def test_the_frozen_spec_runs_from_the_run_folder_with_the_same_job_ids(
    tmp_path, photos, monkeypatch
):
    original = tmp_path / "specs" / "study.yaml"
    original.parent.mkdir()
    original.write_text(SPEC, encoding="utf-8")
    spec = load_spec(original)
    run_dir = tmp_path / "elsewhere" / "run"
    images = local_images(spec)
    assert images.keys() == {job.image.given for job in expand_jobs(spec)}
    kept = copy_inputs(run_dir, [(ref.local_path, ref.sha256) for ref in images.values()])
    mapping = {given: kept[ref.sha256] for given, ref in images.items()}
    (run_dir / "spec.yaml").write_text(rewrite_frozen_spec(SPEC, mapping), encoding="utf-8")

    shutil.rmtree(tmp_path / "photos")  # the originals are gone
    monkeypatch.chdir("/")  # and the working folder is elsewhere
    frozen = load_spec(run_dir / "spec.yaml")
    assert [j.job_id for j in expand_jobs(frozen)] == [j.job_id for j in expand_jobs(spec)]
    assert len(list(expand_jobs(frozen))) == 3  # the exclusion still matches its image
