"""Deterministic stand-in for the model: an image per (input, parameters, output index).

A pseudo-depth map (brightness plus height in the frame) drives a depth-of-field
blur whose strength follows `guidance`, as do saturation and contrast; the seed
and output index pick a light direction, a tint and a film grain;
`num_inference_steps` sets how crisp the in-focus part is; the prompt shifts the
colour. Same inputs, same bytes, in any process.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from functools import lru_cache
from typing import Any

from PIL import Image, ImageChops, ImageEnhance, ImageFilter, ImageOps

from sweeper.contract import PIL_FORMATS, image_size

TINY_SIZE = (64, 64)


@lru_cache(maxsize=16)
def _decoded_input(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


def output_size(input_data: bytes, megapixels: str, tiny: bool) -> tuple[int, int]:
    if tiny:
        return TINY_SIZE
    source = _decoded_input(input_data)
    return image_size(megapixels, source.width / source.height)


def _rng(params: dict[str, Any], output_index: int) -> random.Random:
    key = f"{params['seed']}:{output_index}:{params['prompt']}".encode()
    return random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))


def _depth_mask(image: Image.Image) -> Image.Image:
    """Near = white. Bright and low in the frame counts as near."""
    brightness = image.convert("L").filter(ImageFilter.GaussianBlur(4))
    height_ramp = Image.linear_gradient("L").resize(image.size)
    return ImageChops.add(brightness, height_ramp, scale=2.0)


def _light(size: tuple[int, int], rng: random.Random) -> Image.Image:
    ramp = Image.linear_gradient("L").rotate(rng.uniform(0, 360), fillcolor=128).resize(size)
    return ImageOps.autocontrast(ramp).point(lambda v: 150 + v * 105 // 255)


def _grain(size: tuple[int, int], rng: random.Random, strength: int) -> Image.Image:
    noise = Image.frombytes("L", size, rng.randbytes(size[0] * size[1]))
    return noise.point(lambda v: 128 + (v - 128) * strength // 128)


@lru_cache(maxsize=16)
def _render_cached(input_data: bytes, params_json: str, output_index: int, tiny: bool) -> bytes:
    params = json.loads(params_json)
    size = output_size(input_data, params["megapixels"], tiny)
    rng = _rng(params, output_index)
    sharp = _decoded_input(input_data).resize(size, Image.Resampling.BILINEAR)
    crisp = 0.6 + params["num_inference_steps"] / 60
    sharp = ImageEnhance.Sharpness(sharp).enhance(crisp)
    blurred = sharp.filter(ImageFilter.GaussianBlur(params["guidance"] * 0.8))
    image = Image.composite(sharp, blurred, _depth_mask(sharp))
    # Stronger guidance, bolder look: so a demo's guidance axis is visible at thumbnail size.
    image = ImageEnhance.Color(image).enhance(0.4 + params["guidance"] * 0.2)
    image = ImageEnhance.Contrast(image).enhance(0.8 + params["guidance"] * 0.06)
    image = ImageChops.multiply(image, Image.merge("RGB", [_light(size, rng)] * 3))
    prompt_hue = hashlib.sha256(params["prompt"].encode()).digest()
    tint = tuple((prompt_hue[i] + rng.randrange(64)) % 256 for i in range(3))
    image = Image.blend(image, Image.new("RGB", size, tint), 0.18)
    grain = _grain(size, rng, 24)
    image = ImageChops.overlay(image, Image.merge("RGB", [grain] * 3))
    return _encode(image, params["format"], params["output_quality"])


def _encode(image: Image.Image, fmt: str, quality: int) -> bytes:
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, "PNG", compress_level=1)
    else:
        image.save(buffer, PIL_FORMATS[fmt], quality=quality)
    return buffer.getvalue()


def render(input_data: bytes, params: dict[str, Any], output_index: int, tiny: bool) -> bytes:
    """The encoded output image for these inputs; identical every time."""
    params_json = json.dumps(params, sort_keys=True)
    return _render_cached(input_data, params_json, output_index, tiny)


def read_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size
