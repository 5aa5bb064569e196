"""The built-in measures: how much of the input's structure an edit kept, and how it looks.

Each is a scorer, `fn(output, input, row) -> float`, computed with scikit-image
and NumPy on the output and, where it compares, on the input resized to the
output's size. Luminance is scikit-image's `rgb2gray` (Rec. 709 weights).

Most outputs of a run share one input, so the input's resized luminance and its
edges are cached per process (keyed by its pixels): that halves the cost of
`edge_f1`, the dearest measure.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image
from skimage.color import rgb2gray
from skimage.feature import canny
from skimage.filters import laplace
from skimage.metrics import structural_similarity
from skimage.morphology import dilation, disk

# The version every built-in measure reports; bump it when a measure's numbers change,
# so that `score` computes that measure again for every image.
__version__ = "1"

# Gaussian sigma of the Canny detector, in pixels: 2 ignores film grain and JPEG noise.
CANNY_SIGMA = 2.0
# An output edge within this many pixels of an input edge counts as the same edge.
EDGE_TOLERANCE_PX = 2


def structure_ssim(output: Image.Image, input: Image.Image, row: dict[str, Any]) -> float:
    """SSIM of the output's luminance against the input's, in [-1, 1] (1 = same structure)."""
    in_luma = _input_luminance(*_input_key(input, output.size))
    return float(structural_similarity(_luminance(output), in_luma, data_range=1.0))


def edge_f1(output: Image.Image, input: Image.Image, row: dict[str, Any]) -> float:
    """F1 of the output's Canny edges against the input's, within EDGE_TOLERANCE_PX pixels.

    1.0 when neither image has an edge; 0.0 when only one of them has.
    """
    out_edges = canny(_luminance(output), sigma=CANNY_SIGMA)
    in_edges = _input_edges(*_input_key(input, output.size))
    if not out_edges.any() and not in_edges.any():
        return 1.0
    near = disk(EDGE_TOLERANCE_PX)
    precision = _share_covered(out_edges, dilation(in_edges, near))
    recall = _share_covered(in_edges, dilation(out_edges, near))
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def sharpness(output: Image.Image, input: Image.Image, row: dict[str, Any]) -> float:
    """Variance of the Laplacian of the output's luminance on a 0–255 scale (higher = crisper).

    The same scale as OpenCV's usual `Laplacian(gray).var()` blur check.
    """
    luma = _luminance(output) * 255.0
    return float(laplace(luma, ksize=3).var())


def colorfulness(output: Image.Image, input: Image.Image, row: dict[str, Any]) -> float:
    """Hasler and Süsstrunk's (2003) colourfulness of the output: 0 for grey, ~100+ for vivid."""
    rgb = np.asarray(output.convert("RGB"), dtype=np.float64)
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg = red - green
    yb = 0.5 * (red + green) - blue
    spread = np.hypot(rg.std(), yb.std())
    centre = np.hypot(rg.mean(), yb.mean())
    return float(spread + 0.3 * centre)


BUILTIN_MEASURES = (structure_ssim, edge_f1, sharpness, colorfulness)


def _luminance(image: Image.Image) -> np.ndarray:
    return rgb2gray(np.asarray(image.convert("RGB")))


InputKey = tuple[bytes, str, tuple[int, int], tuple[int, int]]


def _input_key(input: Image.Image, size: tuple[int, int]) -> InputKey:
    """The input's pixels, mode and size, and the size to resize it to: a cache key."""
    return input.tobytes(), input.mode, input.size, size


@lru_cache(maxsize=4)
def _input_luminance(
    data: bytes, mode: str, own_size: tuple[int, int], size: tuple[int, int]
) -> np.ndarray:
    """The input's luminance in [0, 1] at `size`."""
    image = Image.frombytes(mode, own_size, data)
    if own_size != size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    luma = _luminance(image)
    luma.flags.writeable = False  # shared by every call that hits the cache
    return luma


@lru_cache(maxsize=4)
def _input_edges(
    data: bytes, mode: str, own_size: tuple[int, int], size: tuple[int, int]
) -> np.ndarray:
    edges = canny(_input_luminance(data, mode, own_size, size), sigma=CANNY_SIGMA)
    edges.flags.writeable = False
    return edges


def _share_covered(edges: np.ndarray, covered: np.ndarray) -> float:
    total = int(edges.sum())
    return float((edges & covered).sum() / total) if total else 0.0
