"""Every cap on what a spec and its input images may hold, in one place, with its reason.

A spec is user input: it may be a FIFO, a billion-laughs YAML document, a 1 MB
prompt or a range with a step of 1e-300. Each cap here turns such a file into one
clear `SpecError` line, in well under a second, before anything is sent or written.
The numbers are far above what a real sweep needs; `SpecLimits` lets a caller (a
test, or the Python API) change the ones a spec could legitimately outgrow.

The API's own cap on an uploaded image, 50 MB, is part of the contract
(`sweeper.contract.MAX_UPLOAD_BYTES`), not a choice of ours, so it lives there.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_SPEC_BYTES = 1024 * 1024
"""A spec file is at most 1 MB: the largest real one is a few kilobytes."""

MAX_YAML_NODES = 100_000
"""Values, keys and collections in the parsed YAML, counting each alias as a copy of
what it points to; this is what stops a billion-laughs document, and it is checked
while parsing, so no expansion ever happens."""

MAX_YAML_DEPTH = 32
"""Nesting depth of the YAML: a spec is four levels deep (grid > guidance > start)."""

MAX_EXCLUDE_ENTRIES = 1_000
"""Entries under `exclude`; counting and expansion stay fast up to here."""

EXCLUDE_COUNT_BUDGET = 200_000
"""Steps (about a microsecond each) the exact count of excluded combinations may take. Counting
the union of exclude entries is #P-hard in general: entries that pin several shared
parameters to many different values can need more, and such a spec is refused with a
hint instead of hanging. Entries that name the same parameters, or disjoint ones,
count in a few thousand steps however many there are."""

MAX_RANGE_VALUES = 10**12
"""Values one `{start, stop, step}` range may produce (all seeds are 4.3e9)."""

RANGE_NUMBER_DIGITS = 24
"""Significant digits of a range's start, stop or step; with the magnitudes below,
every value of a range is computed exactly."""

RANGE_NUMBER_MAGNITUDE = 12
"""A range's start, stop and step are 0 or between 1e-12 and 1e12 in size."""

MAX_SAMPLE_N = 1_000_000
"""`sample.n` at most. The draws are held in memory (Python's `random.sample`, which
keeps today's job sets), about 150 MB at this cap; a million jobs is months of API time."""


@dataclass(frozen=True)
class SpecLimits:
    """The caps a spec could legitimately outgrow; `load_spec(path, limits=...)` changes them."""

    max_prompt_chars: int = 10_000
    """Characters in one prompt. Line breaks and tabs are allowed in prompts; other
    control characters (escape sequences, NUL) never are."""

    max_name_chars: int = 100
    """Characters in the spec's `name`, which becomes a folder name."""

    max_path_chars: int = 4096
    """Characters in an image path or an `asset:` path."""

    max_input_pixels: int = 100_000_000
    """Pixels (width x height) of one input image: 100 megapixels. A larger image is
    refused as a decompression bomb before it is decoded; the API makes 1 MP outputs."""


DEFAULT_LIMITS = SpecLimits()
