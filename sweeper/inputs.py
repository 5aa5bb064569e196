"""Input images kept inside the run folder, and a frozen spec that points at them.

A record must still run when the folder has moved and the original photo is
gone. `copy_inputs` keeps every input image at `DIR/inputs/<sha256>.<ext>` (a
hard link when the file system allows, else a copy; written under a temporary
name and renamed, so the folder never holds half an input, and checked against
the sha256 the spec loader computed). `rewrite_frozen_spec` points the image
paths of the frozen spec at those copies, relative to the spec file, and keeps
the paths as written in a comment block at the top: the spec loader refuses
unknown keys, and comments are the one place it never looks.

The rewrite edits the spec's text in place, path by path, at the positions
PyYAML's composer reports, so the user's comments, key order, quoting and
layout survive; the result is parsed again and must equal the original with
only those paths replaced. When it does not (an odd construct such as a
block scalar), the spec is loaded and dumped instead, which is always right but
loses comments and layout, so the original text is then kept below as comments.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper.atomic import replacing
from sweeper.errors import SpecError
from sweeper.integrity import file_sha256
from sweeper.run_folder import INPUTS_DIR

if TYPE_CHECKING:
    from sweeper.job import ImageRef
    from sweeper.spec import SweepSpec

IMAGE_KEY = "image"
SECTIONS = ("params", "grid", "zip", "exclude")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
EXTENSION_PATTERN = re.compile(r"^[a-z0-9]{1,10}$")
PILLOW_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "TIFF": "tiff"}
# An anchor (&name) or tag (!tag) written before a scalar is kept in front of the new value.
NODE_PROPERTIES = re.compile(r"^(?:[&!]\S*\s+)*")
# PyYAML also breaks lines at these, so they must not appear raw inside a comment.
YAML_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}
HEADER = (
    "# Frozen by sweeper: the image paths below point into inputs/, copies of the\n"
    "# original images named by their sha256, so this spec runs as it stands.\n"
    "# The paths as originally written:\n"
)


def local_images(spec: SweepSpec) -> dict[str, ImageRef]:
    """Every local input image of a validated spec, by its path as written (not expanded)."""
    refs: list[Any] = [spec.fixed.get(IMAGE_KEY)]
    refs += [ref for name, axis in spec.axes if name == IMAGE_KEY for ref in axis]
    if IMAGE_KEY in spec.zip_names:
        column = spec.zip_names.index(IMAGE_KEY)
        refs += [row[column] for row in spec.zip_rows]
    return {ref.given: ref for ref in refs if ref is not None and ref.is_local}


def copy_inputs(run_dir: Path, images: Iterable[tuple[Path, str]]) -> dict[str, str]:
    """Keep each (local path, sha256) at DIR/inputs/<sha256>.<ext>; returns {sha256: path in DIR}.

    An input already there with the right content is left as it is. Raises
    SpecError when a file no longer has the sha256 given for it (it changed
    after the spec was read).
    """
    folder = Path(run_dir) / INPUTS_DIR
    kept: dict[str, str] = {}
    for local, sha256 in images:
        if not SHA256_PATTERN.match(sha256):
            raise ValueError(f"not a lowercase hex sha256: {sha256!r}")
        if sha256 not in kept:
            kept[sha256] = f"{INPUTS_DIR}/{_keep_input(folder, Path(local), sha256).name}"
    return kept


def _keep_input(folder: Path, local: Path, sha256: str) -> Path:
    for present in sorted(folder.glob(f"{sha256}.*")):
        if present.is_file() and not present.is_symlink() and file_sha256(present) == sha256:
            return present
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{sha256}.{input_extension(local)}"
    # A private partial name: two runs may keep the same input at once.
    with replacing(target, partial=folder / f".{target.name}.{uuid.uuid4().hex}.part") as partial:
        try:
            os.link(local, partial)
        except OSError:  # another file system, or links not allowed: copy instead
            shutil.copyfile(local, partial)
        found = file_sha256(partial)
        if found != sha256:
            raise SpecError(
                f"{local}: changed since the spec was read (sha256 {found[:12]}…, "
                f"expected {sha256[:12]}…); run again"
            )
    return target


def input_extension(local: Path) -> str:
    """The file's own suffix, lowercased; Pillow's name for its format when it has none."""
    suffix = local.suffix.lower().removeprefix(".")
    if EXTENSION_PATTERN.match(suffix):
        return suffix
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(local) as image:
            return PILLOW_EXTENSIONS.get(image.format or "", "img")
    except (UnidentifiedImageError, OSError):
        return "img"


def rewrite_frozen_spec(spec_text: str, mapping: Mapping[str, str]) -> str:
    """The spec with each image path in `mapping` (as written -> "inputs/...") replaced.

    Image values are found under params.image, grid.image, zip.image and
    exclude[*].image. A path not in `mapping` (an `asset:` reference, say) is
    left alone; a spec with nothing to replace comes back unchanged, so
    freezing an already frozen spec changes nothing.
    """
    import yaml

    replace = {given: new for given, new in mapping.items() if given != new}
    nodes = [node for node in _image_nodes(spec_text) if node.value in replace]
    if not nodes:
        return spec_text
    used = {node.value: replace[node.value] for node in nodes}
    expected = _replaced_data(yaml.safe_load(spec_text), replace)
    edited = _header(used) + _edit_in_place(spec_text, nodes, replace)
    if _loads_or_none(edited) == expected:
        return edited
    dumped = yaml.safe_dump(expected, sort_keys=False, allow_unicode=True)
    return _header(used) + dumped + _as_comments("The spec as originally written:", spec_text)


def _image_nodes(spec_text: str) -> Iterator[Any]:
    """Each distinct scalar node holding an image value, in the order written."""
    import yaml

    root = yaml.compose(spec_text, Loader=yaml.SafeLoader)
    seen: set[int] = set()
    for node in _image_values(root):
        if isinstance(node, yaml.ScalarNode) and id(node) not in seen:
            seen.add(id(node))
            yield node


def _image_values(root: Any) -> Iterator[Any]:
    import yaml

    for section_name in SECTIONS:
        section = _mapping_get(root, section_name)
        holders = section.value if isinstance(section, yaml.SequenceNode) else [section]
        for holder in holders:  # exclude is a list of mappings; the others are one mapping
            value = _mapping_get(holder, IMAGE_KEY)
            yield from value.value if isinstance(value, yaml.SequenceNode) else [value]


def _mapping_get(node: Any, key: str) -> Any:
    import yaml

    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                return value_node
    return None


def _edit_in_place(text: str, nodes: list[Any], replace: Mapping[str, str]) -> str:
    """Replace each node's text from the end backwards, so earlier positions stay valid."""
    for node in sorted(nodes, key=lambda n: n.start_mark.index, reverse=True):
        start, end = node.start_mark.index, node.end_mark.index
        written = text[start:end]
        properties = NODE_PROPERTIES.match(written)
        keep = properties.group(0) if properties else ""
        quote = node.style if node.style in ("'", '"') else ""
        text = f"{text[:start]}{keep}{quote}{replace[node.value]}{quote}{text[end:]}"
    return text


def _replaced_data(data: Any, replace: Mapping[str, str]) -> Any:
    """The loaded spec with the same image values replaced, to check the edited text against."""
    if not isinstance(data, dict):
        return data
    for section_name in SECTIONS:
        section = data.get(section_name)
        holders = section if isinstance(section, list) else [section]
        for holder in holders:
            if isinstance(holder, dict) and IMAGE_KEY in holder:
                value = holder[IMAGE_KEY]
                if isinstance(value, list):
                    holder[IMAGE_KEY] = [_swap(item, replace) for item in value]
                else:
                    holder[IMAGE_KEY] = _swap(value, replace)
    return data


def _swap(value: Any, replace: Mapping[str, str]) -> Any:
    return replace.get(value, value) if isinstance(value, str) else value


def _loads_or_none(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


def _header(used: Mapping[str, str]) -> str:
    lines = (
        f"#   {_comment_text(json.dumps(given, ensure_ascii=False))} -> {new}\n"
        for given, new in used.items()
    )
    return HEADER + "".join(lines) + "\n"


def _as_comments(title: str, text: str) -> str:
    body = "".join(f"# {_comment_text(line)}\n" for line in text.splitlines())
    return f"\n# {title}\n{body}"


def _comment_text(text: str) -> str:
    for raw, escaped in YAML_LINE_BREAKS.items():
        text = text.replace(raw, escaped)
    return text
